"""Stage relations: a short run learns a relation, and the CLI gives the motion relations their own step count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from nlrd.checkpoint import read_metadata
from nlrd.priors import MotionPrior, PosePrior
from nlrd.stages.common import augment_view
from nlrd.stages.relations import BANK_SEED_OFFSET, RelationStage, RelationStageConfig
from nlrd.trainer import DistInfo, Trainer, TrainerConfig
from nlrd.transforms import flip_pose


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


def test_bank_holds_exact_latent_pairs_and_trains(priors: tuple[PosePrior, MotionPrior]) -> None:
    """A bank is the priors' encoding of seeded item/view draws: the same seed gives the same bank, its
    pairs are the latents of an item and of its exact relation, and a short run on it learns the relation."""
    pose, motion = priors
    train = np.asarray(pose.decode(pose.sample(2048, seed=0)), dtype=np.float32)
    val = np.asarray(pose.decode(pose.sample(256, seed=1)), dtype=np.float32)
    cfg = RelationStageConfig(batch=128, steps=300, val_items=256, amp=False, bank=4096)
    stage = RelationStage("pose-flip", train, val, pose, motion, cfg, torch.device("cpu"), DistInfo())
    again = RelationStage("pose-flip", train, val, pose, motion, cfg, torch.device("cpu"), DistInfo())
    za, zc = stage.bank
    assert za.shape == zc.shape == (4096, pose.latent_dim)
    torch.testing.assert_close(za, again.bank[0], rtol=0, atol=0)
    # Its first pairs are the priors' latents of the items and views the seed draws, through the exact relation.
    g = torch.Generator().manual_seed(cfg.seed + BANK_SEED_OFFSET)
    items = augment_view(stage.train[torch.randint(len(train), (512,), generator=g)], g, flip_prob=0.5)
    with torch.no_grad():
        torch.testing.assert_close(za[:512], pose.encoder(items), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(zc[:512], pose.encoder(flip_pose(items)), rtol=1e-5, atol=1e-5)
    assert stage.bank_seconds > 0
    before = stage.evaluate()
    Trainer(stage, TrainerConfig(steps=cfg.steps, val_every=0, ckpt_every=0, progress=False, out="unused"), DistInfo(),
            torch.device("cpu")).fit()  # fmt: skip
    after = stage.evaluate()
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
