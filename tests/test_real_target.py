"""Real-target adaptation: the data rows (nlrd.vision.target, training.real_target) and the stage's
keypoints / fit3d / source terms (nlrd.stages.adapt)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nlrd.data.synthetic import demo_poses, fixed_test_set
from nlrd.inference import project_to_image
from nlrd.models.image_encoder import ImageEncoderConfig, build_image_encoder
from nlrd.priors import MotionPrior, PosePrior
from nlrd.stages.adapt import AdaptStage, AdaptStageConfig, RelationBank, real_agreement
from nlrd.trainer import DistInfo
from nlrd.vision.target import RealTarget, project_crop


def _render_target(n: int, size: int = 48, videos: int = 0) -> RealTarget:
    """A RealTarget whose 'keypoints' and 'fits' are the renders' own labels (exact, so terms can reach 0)."""
    poses = demo_poses.random_windows(max(n // 30 + 1, 1), np.random.default_rng(0), length=30).reshape(-1, 17, 3)[:n]
    d = fixed_test_set(poses, "source", n, seed=3, size=size)
    half = size / 2.0
    clip_id = np.full(n, -1)
    clip_id[: videos * 30] = np.repeat(np.arange(videos), 30)
    return RealTarget(
        frames=d["images"], keypoints=((d["joints2d"] - (half - 0.5)) / half).astype(np.float32),
        conf=np.ones((n, 17), np.float32), pck_radius=np.full(n, 0.2, np.float32), fit3d=d["joints3d"],
        keypoints_px=d["joints2d"], image_hw=np.full((n, 2), size, np.float32), world3d=d["joints3d"],
        clip_id=clip_id, clip_frame=np.where(clip_id >= 0, np.arange(n) % 30, 0), val=np.arange(n) % 4 == 0,
        names=np.array([f"r{i}" for i in range(n)]),
    )  # fmt: skip


def test_project_crop_is_the_predictors_projection() -> None:
    j = torch.from_numpy(np.random.default_rng(0).normal(0, 300, (5, 17, 3)).astype(np.float32))
    cx, cy, side = np.array([10.0, 200, 3, 4, 5]), np.array([7.0, 8, 9, 10, 11]), np.array([100.0, 50, 300, 80, 64])
    px = project_to_image(j.numpy(), cx, cy, side)
    np.testing.assert_allclose(px, np.stack([cx, cy], 1)[:, None] + project_crop(j).numpy() * side[:, None, None] / 2,
                               rtol=1e-5, atol=1e-3)  # fmt: skip


def test_save_load_round_trip_and_clips(tmp_path: Path) -> None:
    t = _render_target(70, videos=2)
    t.save(tmp_path / "t.npz")
    back = RealTarget.load(tmp_path / "t.npz")
    for k in ("frames", "keypoints", "fit3d", "val", "names", "clip_id"):
        np.testing.assert_array_equal(getattr(back, k), getattr(t, k))
    clips = back.clips()
    assert [c.shape[0] for c in clips] == [30, 30]
    np.testing.assert_array_equal(clips[1][0], t.frames[30])
    np.savez(tmp_path / "bad.npz", frames=t.frames)
    with pytest.raises(ValueError, match="not a real-target file"):
        RealTarget.load(tmp_path / "bad.npz")
    # Which prior made the fits travels with them; a file from before that field loads as unknown ("").
    assert back.fit_prior == ""
    t.fit_prior = "camera-0123abcd"
    t.save(tmp_path / "t2.npz")
    assert RealTarget.load(tmp_path / "t2.npz").fit_prior == "camera-0123abcd"


def test_agreement_is_perfect_on_the_labels_and_falls_with_noise() -> None:
    t = _render_target(40)
    rows = np.arange(40)
    # The render's weak-perspective framing equals the renderer's perspective crop to a few percent.
    assert real_agreement(t.fit3d, t, rows)["real_val_pck"] > 0.95
    noisy = t.fit3d + np.random.default_rng(0).normal(0, 250, t.fit3d.shape).astype(np.float32)
    assert real_agreement(noisy, t, rows)["real_val_pck"] < 0.7


def _stage(priors: tuple[PosePrior, MotionPrior], terms: tuple[str, ...], target: RealTarget, **cfg: object) -> AdaptStage:
    pose, motion = priors
    g = build_image_encoder(ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=48), seed=0)
    src = fixed_test_set(target.fit3d, "source", 16, seed=9, size=48)
    c = AdaptStageConfig(**{"terms": terms, "frames": 16, "workers": 0, "steps": 60, "augment_strength": 0.0,
                            "trainable": ("stem", "layer1", "layer2", "layer3", "head"), "lr_labelled": 3e-3, **cfg})  # fmt: skip
    return AdaptStage(g, pose, motion, RelationBank(), c, torch.device("cpu"), DistInfo(), real=target, source_set=src)


@pytest.mark.parametrize("term", ["keypoints", "fit3d", "source"])
def test_each_labelled_term_descends_on_its_batch(priors: tuple[PosePrior, MotionPrior], term: str) -> None:
    """Stepping a term on one fixed batch (same rows, same mirroring) lowers that batch's loss: the term's
    target, weights and gradient path are wired the right way round."""
    torch.manual_seed(0)
    target = _render_target(48)
    stage = _stage(priors, (term,), target, lr_labelled=3e-3, steps=1000, bn_train=True)

    def loss_on_batch() -> float:
        stage.gen.manual_seed(7)
        with torch.no_grad():
            return float(stage.term_loss(term, None))

    before = loss_on_batch()
    for s in range(25):
        stage.gen.manual_seed(7)
        stage.train_step(s)
    after = loss_on_batch()
    assert after < 0.6 * before, (before, after)


def test_real_rows_feed_the_frame_pool_and_validation(priors: tuple[PosePrior, MotionPrior]) -> None:
    target = _render_target(48)
    stage = _stage(priors, ("keypoints", "fit3d", "source"), target)
    assert stage.frame_pool is not None and len(stage.frame_pool) == int((~target.val).sum())
    logs = [stage.train_step(s) for s in range(3)]
    assert [next(iter(d)) for d in logs] == ["loss/keypoints", "loss/fit3d", "loss/source"]
    m = stage.evaluate()
    assert 0.0 <= m["real_val_pck"] <= 1.0 and np.isfinite(m["real_val_kp_err"])


def test_mirrored_rows_keep_keypoints_on_the_image(priors: tuple[PosePrior, MotionPrior]) -> None:
    """A mirrored batch row is the flipped image with the flipped labels: its keypoints still land on the
    same pixels of the flipped image (checked against the unflipped row through the flip permutation)."""
    target = _render_target(20)
    stage = _stage(priors, ("keypoints",), target, frames=64)
    torch.manual_seed(0)
    x, y, w = stage._labelled_batch("keypoints")
    flat = x.flatten(1)
    perm = stage.pose.skeleton.flip_permutation
    seen_mirror = 0
    for i in range(len(x)):
        for r in np.flatnonzero(~target.val):
            img = torch.from_numpy(target.frames[r]).permute(2, 0, 1).float() / 255
            if torch.allclose(flat[i], img.flatten()):
                np.testing.assert_allclose(y[i].numpy(), target.keypoints[r], atol=1e-6)
            elif torch.allclose(flat[i], img.flip(-1).flatten()):
                seen_mirror += 1
                expect = target.keypoints[r][perm] * np.array([-1.0, 1.0])
                np.testing.assert_allclose(y[i].numpy(), expect, atol=1e-6)
    assert seen_mirror > 10


def test_refused_without_the_data_a_term_needs(priors: tuple[PosePrior, MotionPrior]) -> None:
    pose, motion = priors
    g = build_image_encoder(ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=48), seed=0)
    pool = np.zeros((2, 30, 48, 48, 3), np.uint8)
    with pytest.raises(ValueError, match="real target"):
        AdaptStage(g, pose, motion, RelationBank(), AdaptStageConfig(terms=("keypoints",), workers=0),
                   torch.device("cpu"), DistInfo(), pool=pool)  # fmt: skip
    with pytest.raises(ValueError, match="source term"):
        AdaptStage(g, pose, motion, RelationBank(), AdaptStageConfig(terms=("source",), workers=0),
                   torch.device("cpu"), DistInfo(), pool=pool)  # fmt: skip


def test_real_photos_become_rows_and_held_out_ones_never_do(data_root: Path) -> None:
    from nlrd.vision import heldout_exercise_photos, tuning_exercise_photos
    from nlrd.vision.target import collect

    held = heldout_exercise_photos(data_root)[:3]
    tune = tuning_exercise_photos(data_root)[:4]
    rows = collect(held + tune, [], 64, exclude=set(held), log=False)
    names = set(rows["names"].tolist())
    assert names and names <= {p.name for p in tune}
    assert rows["frames"].shape[1:] == (64, 64, 3) and rows["frames"].dtype == np.uint8
    # The crop is centred on the root joint: its keypoint sits at the crop centre.
    np.testing.assert_allclose(rows["keypoints"][:, 0], 0.0, atol=1e-5)
    ok = rows["conf"] >= 0.5
    assert np.abs(rows["keypoints"][ok]).max() < 1.0  # every confident joint lies inside the crop
    assert np.all(rows["clip_id"] == -1)
