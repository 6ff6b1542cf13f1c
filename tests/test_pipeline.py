"""training.pipeline: the stage list follows the recipe, and timings of partial runs add up."""

from __future__ import annotations

import json
from pathlib import Path

from training.pipeline import MOTION_RELATION_STEPS, ORACLE_STEPS, POSE_STEPS, RELATION_STEPS, record_timings, stages


def test_stage_order_and_scaled_steps(tmp_path: Path) -> None:
    listed = stages(tmp_path, "data", [], scale=0.5)
    names = [name for name, _ in listed]
    assert names == ["prepare_data", "pose_aae", "pose_decoder_finetune", "motion_ae", "motion_ae_finetune", "source",
                     "oracle", "relations", "adapt", "ablation", "keypoint_start", "real_adapt", "evaluate"]  # fmt: skip
    cmd = dict(listed)["pose_aae"]
    assert cmd[cmd.index("--steps") + 1] == str(round(POSE_STEPS * 0.5))
    # The motion prior starts against the base decoder and is fine-tuned against the final one.
    base, final = str(tmp_path / "pose_aae_base.safetensors"), str(tmp_path / "pose_aae.safetensors")
    motion, motion_ft = dict(listed)["motion_ae"], dict(listed)["motion_ae_finetune"]
    assert motion[motion.index("--pose") + 1] == base
    assert motion_ft[motion_ft.index("--pose") + 1] == final
    assert motion_ft[motion_ft.index("--stage-init-from") + 1] == motion[motion.index("--out") + 1]
    # The oracle and both kinds of relation network get their own step counts.
    oracle, relations = dict(listed)["oracle"], dict(listed)["relations"]
    assert oracle[oracle.index("--steps") + 1] == str(round(ORACLE_STEPS * 0.5))
    assert relations[relations.index("--steps") + 1] == str(round(RELATION_STEPS * 0.5))
    assert relations[relations.index("--motion-steps") + 1] == str(round(MOTION_RELATION_STEPS * 0.5))
    # Every later stage reads the final priors, never the base decoder.
    for name in ("source", "oracle", "relations", "adapt"):
        cmd = dict(listed)[name]
        assert cmd[cmd.index("--pose") + 1] == final, name


def test_partial_runs_add_up(tmp_path: Path) -> None:
    record = tmp_path / "pipeline.json"
    assert record_timings(record, {"pose_aae": 10.0, "motion_ae": 5.0}, 1.0)["total"] == 15.0
    merged = record_timings(record, {"source": 7.5, "motion_ae": 6.0}, 1.0)  # a rerun replaces its stage
    assert merged == {"pose_aae": 10.0, "motion_ae": 6.0, "source": 7.5, "total": 23.5}
    assert json.loads(record.read_text()) == {"seconds": merged, "scale": 1.0}
    # Another scale, or a damaged record, starts afresh.
    assert record_timings(record, {"source": 1.0}, 0.1) == {"source": 1.0, "total": 1.0}
    record.write_text("{not json")
    assert record_timings(record, {"adapt": 2.0}, 1.0) == {"adapt": 2.0, "total": 2.0}
