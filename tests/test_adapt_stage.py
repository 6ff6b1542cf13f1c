"""Stage adapt: every term type runs, only layer2 moves, and frozen BatchNorm statistics stay put."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlrd.data.synthetic import demo_poses
from nlrd.models.image_encoder import ImageEncoderConfig, build_image_encoder
from nlrd.models.relation_net import RelationNet, RelationNetConfig
from nlrd.priors import MotionPrior, PosePrior
from nlrd.stages.adapt import AdaptStage, AdaptStageConfig, RelationBank
from nlrd.trainer import DistInfo

TERMS = ("lcr", "hcr", "pose-flip", "inplane-10", "flip-backward", "slow-backward")


def test_every_term_steps_and_only_layer2_changes(priors: tuple[PosePrior, MotionPrior]) -> None:
    torch.manual_seed(0)
    pose, motion = priors
    g = build_image_encoder(ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=48), seed=0)
    bank = RelationBank({name: RelationNet(RelationNetConfig(latent_dim=pose.latent_dim if "backward" not in name
                                                             else motion.latent_dim)) for name in TERMS[2:]})  # fmt: skip
    windows = demo_poses.random_windows(4, np.random.default_rng(0), length=60)
    cfg = AdaptStageConfig(terms=TERMS, clips=2, frames=8, workers=0, val_images=8, lr_contrastive=1e-3, lr_relation=1e-3,
                           trainable=("layer2",))  # fmt: skip
    before = {k: v.detach().clone() for k, v in g.state_dict().items()}
    stage = AdaptStage(g, pose, motion, bank, cfg, torch.device("cpu"), DistInfo(), train_windows=windows,
                       val_poses=windows[:, 0])  # fmt: skip
    logs = [stage.train_step(step) for step in range(len(TERMS))]
    assert [next(iter(d)) for d in logs] == [f"loss/{t}" for t in TERMS]
    assert all(np.isfinite(next(iter(d.values()))) for d in logs)
    after = g.state_dict()
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"layer2"}, changed  # weights and BN running stats of every other stage are untouched
    assert np.isfinite(stage.evaluate()["val_mpjpe_mm"])


def test_unknown_term_is_rejected(priors: tuple[PosePrior, MotionPrior]) -> None:
    pose, motion = priors
    g = build_image_encoder(ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=48), seed=0)
    with pytest.raises(ValueError, match="unknown or unloaded"):
        AdaptStage(g, pose, motion, RelationBank(), AdaptStageConfig(terms=("lcr", "teleport"), workers=0),
                   torch.device("cpu"), DistInfo(), train_windows=np.zeros((2, 30, 17, 3)))  # fmt: skip


def _tiny_stage(priors: tuple[PosePrior, MotionPrior], **cfg_fields: object) -> AdaptStage:
    pose, motion = priors
    g = build_image_encoder(ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=48), seed=0)
    pool = np.random.default_rng(0).integers(0, 255, (3, 30, 48, 48, 3), dtype=np.uint8)
    bank = RelationBank({"pose-flip": RelationNet(RelationNetConfig(latent_dim=pose.latent_dim))})
    cfg = AdaptStageConfig(**{"terms": ("pose-flip",), "frames": 16, "workers": 0, "val_images": 8, **cfg_fields})
    return AdaptStage(g, pose, motion, bank, cfg, torch.device("cpu"), DistInfo(), pool=pool)


def test_teacher_stays_frozen_and_anchor_starts_at_zero(priors: tuple[PosePrior, MotionPrior]) -> None:
    stage = _tiny_stage(priors, lr_relation=1e-3)
    assert stage.teacher is not None
    teacher_before = {k: v.clone() for k, v in stage.teacher.state_dict().items()}
    x = torch.rand(8, 3, 48, 48)
    stage.g.train(False)  # what train_step does: BatchNorm keeps the source statistics
    with torch.no_grad():
        assert float(stage._anchor(x, stage._g(x))) == pytest.approx(0.0, abs=1e-6)  # G == Gs at the start
    for step in range(5):
        stage.train_step(step)
    assert all(torch.equal(teacher_before[k], v) for k, v in stage.teacher.state_dict().items())
    with torch.no_grad():
        assert float(stage._anchor(x, stage._g(x))) > 0.0  # G has moved away from the teacher


def test_exact_flip_energy_falls(priors: tuple[PosePrior, MotionPrior]) -> None:
    """A short run on a fixed pool lowers the (exact) pose-flip energy it optimises."""
    torch.manual_seed(0)
    stage = _tiny_stage(priors, teacher=False, relation_space="exact", lr_relation=3e-3, trainable=("layer2", "layer3", "head"))
    clips = stage.next_clips()
    fixed = torch.Generator().manual_seed(5)

    def energy() -> float:
        stage.gen = torch.Generator().manual_seed(fixed.initial_seed())
        with torch.no_grad():
            return float(stage.term_loss("pose-flip", clips))

    before = energy()
    stage.gen = torch.Generator().manual_seed(1)
    for step in range(40):
        stage.train_step(step)
    assert energy() < 0.8 * before


def test_bad_pool_is_rejected(priors: tuple[PosePrior, MotionPrior]) -> None:
    pose, motion = priors
    g = build_image_encoder(ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=48), seed=0)
    with pytest.raises(ValueError, match="adaptation pool"):
        AdaptStage(g, pose, motion, RelationBank(), AdaptStageConfig(terms=("lcr",), workers=0), torch.device("cpu"),
                   DistInfo(), pool=np.zeros((2, 10, 48, 48, 3), np.float32))  # fmt: skip
