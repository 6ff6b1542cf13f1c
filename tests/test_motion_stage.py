"""Stage motion_ae: a short run against the shipped pose prior lowers the window error with either joint loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlrd.models.motion_ae import MotionAEConfig
from nlrd.priors import PosePrior
from nlrd.stages.motion_ae import MotionAEStage, MotionAEStageConfig
from nlrd.trainer import DistInfo, Trainer, TrainerConfig

SMALL = MotionAEConfig(hidden=32, layers=1, motion_latent_dim=32, time_embed_dim=8)


def smooth_windows(prior: PosePrior, n: int, seed: int, length: int = 30) -> np.ndarray:
    """Windows (n, length, 17, 3) mm: the prior's decoding of straight latent walks between two random z."""
    ends = prior.sample(2 * n, seed=seed).reshape(n, 2, -1)
    t = np.linspace(0.0, 1.0, length, dtype=np.float32)[None, :, None]
    z = ends[:, :1] * (1 - t) + ends[:, 1:] * t
    return np.asarray(prior.decode(z), dtype=np.float32)


@pytest.fixture(scope="module")
def pose_prior() -> PosePrior:
    return PosePrior.from_pretrained()


def make_stage(pose_prior: PosePrior, joint_loss: str, steps: int = 250) -> MotionAEStage:
    cfg = MotionAEStageConfig(batch=16, steps=steps, val_windows=32, joint_loss=joint_loss, amp=False, window_stride=1,
                              views=pose_prior.views)  # windows seen as the prior sees poses
    # The stage warms its learning rate up over 100 steps, so the run is longer than that.
    train, val = smooth_windows(pose_prior, 256, 0), smooth_windows(pose_prior, 32, 1)
    return MotionAEStage(train, val, pose_prior.encoder, pose_prior.decoder, SMALL, cfg, torch.device("cpu"), DistInfo())


@pytest.mark.parametrize("joint_loss", ["l2", "mse"])
def test_short_motion_run_lowers_the_error(pose_prior: PosePrior, joint_loss: str) -> None:
    stage = make_stage(pose_prior, joint_loss)
    before = stage.evaluate()["val_mpjpe_mm"]
    Trainer(stage, TrainerConfig(steps=stage.cfg.steps, val_every=0, ckpt_every=0, progress=False, out="unused"), DistInfo(),
            torch.device("cpu")).fit()  # fmt: skip
    after = stage.evaluate()["val_mpjpe_mm"]
    assert np.isfinite(after) and after < 0.8 * before, (joint_loss, before, after)


def test_unknown_joint_loss_is_rejected(pose_prior: PosePrior) -> None:
    with pytest.raises(ValueError, match="joint_loss"):
        make_stage(pose_prior, "huber")
