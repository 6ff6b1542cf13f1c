"""Pose metrics on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlrd.metrics import (
    acceleration_error,
    auc,
    mean_joint_acceleration,
    mpjpe,
    pa_mpjpe,
    pck,
    per_joint_error,
    procrustes_align,
)


def _poses(n: int = 8, j: int = 17, seed: int = 0) -> np.ndarray:
    """Random root-relative-ish poses (n, j, 3) in mm with a typical body spread."""
    rng = np.random.default_rng(seed)
    return rng.normal(scale=300.0, size=(n, j, 3))


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def test_identical_is_zero() -> None:
    y = _poses()
    assert mpjpe(y, y) == 0.0
    assert pa_mpjpe(y, y) == pytest.approx(0.0, abs=1e-9)
    assert pck(y, y) == 1.0
    assert auc(y, y) == 1.0
    np.testing.assert_array_equal(per_joint_error(y, y), np.zeros(17))


def test_known_offsets_and_root_relative() -> None:
    gt = _poses(4)
    pred = gt + np.array([100.0, -50.0, 7.0])  # a global translation: no error root-relatively
    assert mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-9)
    pred = gt.copy()
    pred[:, 5] += np.array([30.0, 40.0, 0.0])  # one joint off by 50 mm
    assert mpjpe(pred, gt) == pytest.approx(50.0 / 17)
    np.testing.assert_allclose(mpjpe(pred, gt, reduce=False), np.full(4, 50.0 / 17))
    expected = np.zeros(17)
    expected[5] = 50.0
    np.testing.assert_allclose(per_joint_error(pred, gt), expected)
    assert per_joint_error(pred, gt, reduce=False).shape == (4, 17)
    # Moving the root moves every other joint relative to it.
    pred = gt.copy()
    pred[:, 0] += np.array([0.0, 0.0, 10.0])
    assert mpjpe(pred, gt) == pytest.approx(10.0 * 16 / 17)


def test_batched_leading_dims() -> None:
    gt = _poses(24).reshape(2, 3, 4, 17, 3)
    pred = gt + np.random.default_rng(1).normal(scale=20.0, size=gt.shape)
    for fn in (mpjpe, pa_mpjpe, pck, auc):
        per = fn(pred, gt, reduce=False)
        assert per.shape == (2, 3, 4)
        assert fn(pred, gt) == pytest.approx(per.mean())
        flat = fn(pred.reshape(-1, 17, 3), gt.reshape(-1, 17, 3), reduce=False)
        np.testing.assert_allclose(per.reshape(-1), flat)


def test_pa_mpjpe_invariant_to_similarity_transform() -> None:
    rng = np.random.default_rng(3)
    gt = _poses(6)
    pred = np.stack([2.5 * g @ _rotation(rng).T + rng.normal(scale=500.0, size=3) for g in gt])
    assert mpjpe(pred, gt) > 100.0
    assert pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(procrustes_align(pred, gt), gt, atol=1e-6)
    # With noise, the transform of the prediction does not change the PA error.
    noisy = gt + rng.normal(scale=30.0, size=gt.shape)
    moved = np.stack([0.7 * p @ _rotation(rng).T + 123.0 for p in noisy])
    np.testing.assert_allclose(pa_mpjpe(moved, gt, reduce=False), pa_mpjpe(noisy, gt, reduce=False), rtol=1e-9)


def test_pa_mpjpe_excludes_reflections() -> None:
    gt = _poses(5, seed=4)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a reflection is not a similarity transform we allow
    assert pa_mpjpe(mirrored, gt) > 10.0
    aligned = procrustes_align(mirrored, gt)
    # The alignment applied to the centred prediction is a proper rotation times a positive scale.
    for a, m in zip(aligned, mirrored, strict=True):
        a0, m0 = a - a.mean(0), m - m.mean(0)
        mat, *_ = np.linalg.lstsq(m0, a0, rcond=None)
        assert np.linalg.det(mat) > 0


def test_pa_le_mpjpe() -> None:
    rng = np.random.default_rng(5)
    gt = _poses(32, seed=6)
    pred = gt + rng.normal(scale=60.0, size=gt.shape)
    pred = pred @ _rotation(rng).T  # also misaligned
    assert np.all(pa_mpjpe(pred, gt, reduce=False) <= mpjpe(pred, gt, reduce=False) + 1e-9)


def test_pck_and_auc_constructed() -> None:
    gt = np.zeros((2, 4, 3))
    pred = np.zeros((2, 4, 3))
    # Root stays at 0; other joints off by 50, 100 and 200 mm along x.
    pred[:, 1:, 0] = [50.0, 100.0, 200.0]
    assert pck(pred, gt) == pytest.approx(3 / 4)  # root, 50, 100 are within 150
    assert pck(pred, gt, threshold=100.0) == pytest.approx(3 / 4)  # "within" includes equality
    assert pck(pred, gt, threshold=99.0) == pytest.approx(2 / 4)
    np.testing.assert_allclose(pck(pred, gt, reduce=False), [0.75, 0.75])
    # AUC over thresholds 0..150 step 5: root correct at all 31, 50 mm at 21 (50..150), 100 mm at 11, 200 never.
    assert auc(pred, gt) == pytest.approx((31 + 21 + 11 + 0) / (4 * 31))
    assert auc(pred, gt, thresholds=[0.0, 100.0]) == pytest.approx((1 + 3) / 8)
    with pytest.raises(ValueError, match="thresholds"):
        auc(pred, gt, thresholds=[])


def test_torch_and_numpy_agree() -> None:
    rng = np.random.default_rng(7)
    gt = _poses(10, seed=8)
    pred = gt + rng.normal(scale=40.0, size=gt.shape)
    tp = torch.tensor(pred, dtype=torch.float32, requires_grad=True)
    tg = torch.tensor(gt, dtype=torch.float32)
    for fn in (mpjpe, pa_mpjpe, pck, auc):
        assert isinstance(fn(tp, tg), float)
        assert fn(tp, tg) == pytest.approx(fn(pred.astype(np.float32), gt.astype(np.float32)), rel=1e-6)
        np.testing.assert_allclose(fn(tp, tg, reduce=False), fn(pred, gt, reduce=False), rtol=1e-4, atol=1e-3)
    seq = torch.tensor(pred)
    assert mean_joint_acceleration(seq) == pytest.approx(mean_joint_acceleration(pred))


def test_acceleration() -> None:
    t = np.arange(10, dtype=np.float64)
    seq = np.zeros((10, 3, 3))
    seq[:, 1, 0] = 5.0 * t  # constant velocity: no acceleration
    assert mean_joint_acceleration(seq) == 0.0
    seq[:, 2, 1] = 2.0 * t**2  # x'' = 4 mm/frame^2 on one of three joints
    assert mean_joint_acceleration(seq) == pytest.approx(4.0 / 3)
    assert mean_joint_acceleration(seq, fps=30.0) == pytest.approx(4.0 / 3 * 900.0)
    batch = np.stack([seq, 2 * seq])
    np.testing.assert_allclose(mean_joint_acceleration(batch, reduce=False), [4.0 / 3, 8.0 / 3])
    assert acceleration_error(seq, seq) == 0.0
    assert acceleration_error(seq, np.zeros_like(seq)) == pytest.approx(4.0 / 3)
    with pytest.raises(ValueError, match="T >= 3"):
        mean_joint_acceleration(seq[:2])


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="same shape"):
        mpjpe(np.zeros((2, 17, 3)), np.zeros((2, 16, 3)))
    with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
        pa_mpjpe(np.zeros((2, 17, 2)), np.zeros((2, 17, 2)))


def test_degenerate_pose_does_not_crash() -> None:
    gt = _poses(2)
    pred = np.zeros_like(gt)  # collapsed to a point
    out = pa_mpjpe(pred, gt, reduce=False)
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(out, np.linalg.norm(gt - gt.mean(1, keepdims=True), axis=-1).mean(-1))
