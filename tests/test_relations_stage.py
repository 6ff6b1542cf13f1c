"""Stage relations: a short run learns a relation, and the CLI gives the motion relations their own step count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from nlrd.checkpoint import read_metadata
from nlrd.priors import MotionPrior, PosePrior
from nlrd.stages.relations import RelationStage, RelationStageConfig
from nlrd.trainer import DistInfo, Trainer, TrainerConfig


def test_short_run_learns_the_flip_relation(priors: tuple[PosePrior, MotionPrior]) -> None:
    pose, motion = priors
    # Plausible poses without the mocap files: the shipped prior's decoding of random latents.
    train = np.asarray(pose.decode(pose.sample(2048, seed=0)), dtype=np.float32)
    val = np.asarray(pose.decode(pose.sample(256, seed=1)), dtype=np.float32)
    cfg = RelationStageConfig(batch=128, steps=300, val_items=256, amp=False)
    stage = RelationStage("pose-flip", train, val, pose, motion, cfg, torch.device("cpu"), DistInfo())
    before = stage.evaluate()
    Trainer(stage, TrainerConfig(steps=cfg.steps, val_every=0, ckpt_every=0, progress=False, out="unused"), DistInfo(),
            torch.device("cpu")).fit()  # fmt: skip
    after = stage.evaluate()
    # The flip moves a latent far (d about 4). The untrained network is the identity (its residual
    # starts at zero, relative error 1); trained, it lands much nearer the counterpart (about 0.33).
    assert after["val_distance"] > 2.0
    assert after["val_relative_error"] < 0.5, after
    assert after["val_error"] < 0.5 * before["val_error"], (before, after)


def test_motion_relations_take_their_own_steps(prepared_data: Path, tmp_path: Path) -> None:
    from training.train_relations import main as train_relations

    out, run = tmp_path / "relations", tmp_path / "run"
    summary = train_relations(["--data", str(prepared_data), "--relations", "inplane-10,flip-backward", "--steps", "6",
                               "--motion-steps", "3", "--val-every", "0", "--out-dir", str(out), "--run-dir", str(run),
                               "--no-progress"])  # fmt: skip
    steps = {name: read_metadata(out / f"{name}.safetensors")["config"]["stage"]["steps"] for name in summary["relations"]}
    assert steps == {"inplane-10": 6, "flip-backward": 3}
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"inplane-10", "flip-backward"}
    assert all(np.isfinite(r["nonlocalness"]) and r["nonlocalness"] > 0 for r in report.values())
    # Each network had its own resume folder, and a finished network leaves no resume state behind.
    assert sorted(p.name for p in run.iterdir()) == ["flip-backward", "inplane-10"]
    assert not list(run.rglob("resume.safetensors"))
