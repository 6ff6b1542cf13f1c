"""Stage adapt: every term type runs, only layer2 moves, and frozen BatchNorm statistics stay put."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nlrd.data.synthetic import demo_poses
from nlrd.models.image_encoder import ImageEncoderConfig, build_image_encoder
from nlrd.models.relation_net import RelationNet, RelationNetConfig
from nlrd.priors import MotionPrior, PosePrior
from nlrd.stages.adapt import AdaptStage, AdaptStageConfig, RelationBank
from nlrd.trainer import DistInfo
from nlrd.transforms import flip_image, flip_pose

TERMS = ("lcr", "hcr", "pose-flip", "inplane-10", "flip-backward", "slow-backward")


def test_every_term_steps_and_only_layer2_changes(priors: tuple[PosePrior, MotionPrior], data_root: Path) -> None:
    """(Target-style clips render over the data folder's photo backgrounds: skipped without it.)"""
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
                       val_poses=windows[:, 0], data_root=data_root)  # fmt: skip
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


def test_ensemble_target_averages_the_views_and_is_mirror_equivariant(priors: tuple[PosePrior, MotionPrior]) -> None:
    """The ensemble term's target is the mean of the teacher's mapped-back views, and mirroring the frame mirrors it."""
    stage = _tiny_stage(priors, terms=("ensemble",))
    assert [v[0] for v in stage.views] == ["identity", "flip", "inplane+10", "flip+inplane+10", "inplane-10", "flip+inplane-10"]
    x = torch.rand(6, 3, 48, 48, generator=torch.Generator().manual_seed(3))
    target = stage.ensemble_target(x)
    assert target.shape == (6, 17, 3)
    with torch.no_grad():
        manual = torch.stack([back(stage.pose.decoder(stage._teacher(fn(x)))) for _, fn, back in stage.views]).mean(0)
    torch.testing.assert_close(target, manual)
    # The views of the mirrored frame are the mirrored views of the frame, so the ensemble commutes with the mirror.
    torch.testing.assert_close(stage.ensemble_target(flip_image(x)), flip_pose(target), atol=1e-3, rtol=0)
    # And it is not the plain prediction: the views disagree for an untrained teacher.
    with torch.no_grad():
        plain = stage.pose.decoder(stage._teacher(x))
    assert float((plain - target).norm(dim=-1).mean()) > 1.0


def test_ensemble_term_moves_g_towards_its_target(priors: tuple[PosePrior, MotionPrior]) -> None:
    torch.manual_seed(0)
    stage = _tiny_stage(priors, terms=("ensemble",), lr_ensemble=3e-3, steps=40, augment_strength=0.0,
                        trainable=("layer2", "layer3", "head"))  # fmt: skip
    x = stage._frames(stage.next_clips())
    target = stage.ensemble_target(x)

    def error() -> float:
        with torch.no_grad():
            return float((stage.pose.decoder(stage._g(x)) - target).abs().mean())

    before = error()
    logs = [stage.train_step(step) for step in range(40)]
    assert all(np.isfinite(d["loss/ensemble"]) for d in logs)
    assert error() < 0.7 * before
    assert stage.opts["ensemble"].param_groups[0]["lr"] < 3e-3 * 0.01  # the cosine has decayed to ~0 by the last step


def test_frame_pool_feeds_the_frame_terms(priors: tuple[PosePrior, MotionPrior]) -> None:
    pose, motion = priors
    g = build_image_encoder(ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=48), seed=0)
    clips = np.zeros((2, 30, 48, 48, 3), np.uint8)  # black clip frames
    extra = np.full((50, 48, 48, 3), 255, np.uint8)  # white extra frames
    cfg = AdaptStageConfig(terms=("lcr",), frames=400, workers=0)
    stage = AdaptStage(g, pose, motion, RelationBank(), cfg, torch.device("cpu"), DistInfo(), pool=clips, frame_pool=extra)
    assert stage.frame_pool is not None and stage.frame_pool.shape[0] == 60 + 50
    white = stage._frames(stage.next_clips()).mean(dim=(1, 2, 3))
    share = float((white > 0.5).float().mean())
    assert set(torch.unique(white).tolist()) <= {0.0, 1.0} and 0.35 < share < 0.55  # 50 of the 110 frames are white
    with pytest.raises(ValueError, match="frame pool"):
        AdaptStage(g, pose, motion, RelationBank(), cfg, torch.device("cpu"), DistInfo(), pool=clips,
                   frame_pool=np.zeros((4, 32, 32, 3), np.uint8))  # fmt: skip
