"""Render-matched crops of real people from their keypoints (nlrd.vision.framing)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlrd.data.poses import load_split
from nlrd.data.synthetic import fixed_test_set
from nlrd.vision.framing import keypoint_frames, smooth_frames


def test_reproduces_the_renderers_crop(prepared_data: Path) -> None:
    """From a render's true 2D joints and 3D pose, the framing gives back the render's own crop:
    centred on the root and 128 px wide (perspective vs weak perspective: within a few percent)."""
    poses = load_split(prepared_data, "test").joints
    for style in ("source", "target"):
        d = fixed_test_set(poses, style, 24, seed=5, size=128)
        f = keypoint_frames(d["joints2d"], d["joints3d"])
        np.testing.assert_allclose(f[:, :2], d["joints2d"][:, 0], atol=1e-4)
        assert np.median(f[:, 2]) == pytest.approx(128.0, rel=0.02)
        assert np.all(np.abs(f[:, 2] / 128.0 - 1.0) < 0.08)


def test_scales_and_shifts_with_the_person() -> None:
    rng = np.random.default_rng(0)
    kp = rng.uniform(-100, 100, (5, 17, 2))
    w = rng.uniform(-500, 500, (5, 17, 3))
    w -= w[:, :1]
    base = keypoint_frames(kp, w)
    moved = keypoint_frames(2.0 * kp + np.array([30.0, -7.0]), w)
    np.testing.assert_allclose(moved[:, 2], 2.0 * base[:, 2], rtol=1e-9)
    np.testing.assert_allclose(moved[:, :2], 2.0 * base[:, :2] + np.array([30.0, -7.0]), rtol=1e-9)
    single = keypoint_frames(kp[0], w[0])
    np.testing.assert_allclose(single, base[0])
    # Without the metric cue the pad is a fixed fraction of the extent; the crop still holds every joint.
    nocue = keypoint_frames(kp)
    assert np.all(nocue[:, 2] / 2 > np.abs(kp - kp[:, :1]).max(axis=(1, 2)))


def test_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="joints2d"):
        keypoint_frames(np.full((17, 2), np.nan))
    with pytest.raises(ValueError, match="world3d"):
        keypoint_frames(np.zeros((2, 17, 2)), np.zeros((3, 17, 3)))
    with pytest.raises(ValueError, match="smooth_frames"):
        smooth_frames(np.zeros((4, 3)), np.zeros(4, bool))


def test_smoothing_fills_gaps_and_keeps_a_steady_crop() -> None:
    t = np.arange(40)
    truth = np.stack([100 + t, 50 + 0 * t, 200 + 0 * t], 1).astype(float)
    noisy = truth + np.random.default_rng(1).normal(0, 3, truth.shape)
    found = np.ones(40, bool)
    found[10:15] = False
    noisy[10:15] = 1e6  # ignored rows
    out = smooth_frames(noisy, found, radius=2)
    inner = slice(3, 37)
    assert np.abs(out[inner] - truth[inner]).std() < 0.7 * np.abs(noisy[found] - truth[found]).std()
    assert np.abs(out[10:15] - truth[10:15]).max() < 10
