"""Evaluation metrics for 3D poses: MPJPE, PA-MPJPE, PCK, AUC, per-joint error and jitter.

All functions take numpy arrays or torch tensors (any device, with or without grad) of joints
``(..., J, 3)`` in millimetres with any number of leading (batch / time) dimensions, and compute in
float64 numpy: these are evaluation numbers, not losses (differentiable losses live in
``nlrd.losses``). With ``reduce=True`` (the default) they return a Python float, the mean over all
poses; with ``reduce=False`` a numpy array of per-pose values of shape ``(...)``.

Conventions (Human3.6M / MPI-INF-3DHP):

- MPJPE, PCK and AUC are root-relative: joint 0 (the pelvis) is subtracted from prediction and ground
  truth first, so a global translation is not an error. The root joint is included in the average
  (with zero error), as in the common Human3.6M protocol; slice the joint axis before calling to
  use another joint subset (e.g. MPI-INF-3DHP's 14 joints).
- PA-MPJPE aligns each predicted pose to its ground truth with the best similarity transform
  (rotation, translation, uniform scale; reflections excluded) before measuring MPJPE.
- PCK counts a joint as correct when its error is at most ``threshold`` mm (150 mm in MPI-INF-3DHP);
  AUC is the mean PCK over thresholds 0, 5, ..., 150 mm.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

DEFAULT_PCK_THRESHOLD_MM = 150.0
DEFAULT_AUC_THRESHOLDS_MM: np.ndarray = np.linspace(0.0, 150.0, 31)

ArrayLike = np.ndarray | torch.Tensor


def _as_numpy(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., J, 3) in mm, got {arr.shape}")
    return arr


def _pair(pred: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_numpy(pred, "pred"), _as_numpy(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt must have the same shape (..., J, 3), got {p.shape} and {g.shape}")
    return p, g


def _root_relative(joints: np.ndarray) -> np.ndarray:
    return joints - joints[..., :1, :]


def _reduce(values: np.ndarray, reduce: bool) -> float | np.ndarray:
    return float(values.mean()) if reduce else values


def _joint_errors(pred: Any, gt: Any) -> np.ndarray:
    """Root-relative Euclidean error per joint, ``(..., J)`` mm."""
    p, g = _pair(pred, gt)
    return np.linalg.norm(_root_relative(p) - _root_relative(g), axis=-1)


def mpjpe(pred: ArrayLike, gt: ArrayLike, *, reduce: bool = True) -> float | np.ndarray:
    """Mean per-joint position error after subtracting the root joint, mm.

    Args:
        pred, gt: ``(..., J, 3)`` joints in mm.
        reduce: mean over everything (float) or per pose (array of shape ``(...)``).
    """
    return _reduce(_joint_errors(pred, gt).mean(axis=-1), reduce)


def per_joint_error(pred: ArrayLike, gt: ArrayLike, *, reduce: bool = True) -> np.ndarray:
    """Root-relative error of each joint, mm: ``(J,)`` averaged over all poses, or ``(..., J)`` unreduced."""
    err = _joint_errors(pred, gt)
    return err.reshape(-1, err.shape[-1]).mean(axis=0) if reduce else err


def procrustes_align(pred: ArrayLike, gt: ArrayLike) -> np.ndarray:
    """Align each predicted pose to its ground truth with the best similarity transform.

    Solves ``min_{s, R, t} sum_j || s R p_j + t - g_j ||^2`` per pose (Umeyama / Kabsch with scale), with
    ``R`` a proper rotation: if the optimal orthogonal matrix is a reflection, the sign of the singular
    vector of the smallest singular value is flipped. Vectorised over all leading dimensions.

    Args:
        pred, gt: ``(..., J, 3)`` joints in mm.

    Returns:
        ``(..., J, 3)`` float64 aligned prediction in mm (in the ground truth's frame).
    """
    p, g = _pair(pred, gt)
    shape = p.shape
    p = p.reshape(-1, shape[-2], 3)
    g = g.reshape(-1, shape[-2], 3)
    mu_p = p.mean(axis=1, keepdims=True)
    mu_g = g.mean(axis=1, keepdims=True)
    p0, g0 = p - mu_p, g - mu_g
    # Cross-covariance H = P0^T G0 (N, 3, 3); with SVD H = U S V^T the optimal rotation acting on row
    # vectors (p R) is R = U V^T.
    h = np.einsum("nji,njk->nik", p0, g0)
    u, s, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    d[d == 0] = 1.0  # degenerate (e.g. collinear joints): any sign is optimal; keep a rotation
    # Reflection fix: flip the last singular direction where det(U V^T) = -1.
    u[:, :, -1] *= d[:, None]
    s[:, -1] *= d
    rot = u @ vt
    var_p = (p0**2).sum(axis=(1, 2))
    # Optimal scale trace(S D) / ||P0||^2; a pose collapsed to a point gets scale 0 (then it maps to
    # the ground truth's centroid), never a division by zero.
    scale = np.where(var_p > 0, s.sum(axis=1) / np.where(var_p > 0, var_p, 1.0), 0.0)
    aligned = scale[:, None, None] * (p0 @ rot) + mu_g
    return aligned.reshape(shape)


def pa_mpjpe(pred: ArrayLike, gt: ArrayLike, *, reduce: bool = True) -> float | np.ndarray:
    """MPJPE after per-pose Procrustes alignment (rotation, translation, scale), mm.

    Args:
        pred, gt: ``(..., J, 3)`` joints in mm.
        reduce: mean over everything (float) or per pose (array of shape ``(...)``).
    """
    p, g = _pair(pred, gt)
    aligned = procrustes_align(p, g)
    return _reduce(np.linalg.norm(aligned - g, axis=-1).mean(axis=-1), reduce)


def pck(
    pred: ArrayLike, gt: ArrayLike, threshold: float = DEFAULT_PCK_THRESHOLD_MM, *, reduce: bool = True
) -> float | np.ndarray:
    """Percentage of correct keypoints as a fraction in [0, 1]: root-relative error <= ``threshold`` mm.

    Args:
        pred, gt: ``(..., J, 3)`` joints in mm.
        threshold: distance in mm (150 in the MPI-INF-3DHP protocol).
        reduce: fraction over all joints of all poses (float) or per pose (array ``(...)``).
    """
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0 mm, got {threshold}")
    return _reduce((_joint_errors(pred, gt) <= threshold).mean(axis=-1), reduce)


def auc(pred: ArrayLike, gt: ArrayLike, thresholds: ArrayLike | None = None, *, reduce: bool = True) -> float | np.ndarray:
    """Area under the PCK curve: mean PCK over ``thresholds`` (default 0..150 mm in 31 steps), in [0, 1].

    Args:
        pred, gt: ``(..., J, 3)`` joints in mm.
        thresholds: 1-D thresholds in mm.
        reduce: mean over all poses (float) or per pose (array ``(...)``).
    """
    th = DEFAULT_AUC_THRESHOLDS_MM if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if th.ndim != 1 or th.size == 0 or (th < 0).any():
        raise ValueError(f"thresholds must be a non-empty 1-D array of mm >= 0, got shape {th.shape}")
    err = _joint_errors(pred, gt)
    per_pose = (err[..., None] <= th).mean(axis=(-2, -1))  # (...,): mean over joints and thresholds
    return _reduce(per_pose, reduce)


def mean_joint_acceleration(seq: ArrayLike, fps: float | None = None, *, reduce: bool = True) -> float | np.ndarray:
    """Jitter: mean norm of the per-joint second difference of a pose sequence.

    ``a_t = x_{t+1} - 2 x_t + x_{t-1}``, averaged over joints and frames. Joints are used as given (no
    root subtraction), so pass root-relative poses to measure articulation jitter only.

    Args:
        seq: ``(..., T, J, 3)`` joints in mm with ``T >= 3`` frames.
        fps: None returns **mm/frame^2** (the default, frame-rate independent of timing metadata);
            a frame rate returns **mm/s^2** (= mm/frame^2 * fps^2).
        reduce: mean over everything (float) or per sequence (array ``(...)``).
    """
    x = _as_numpy(seq, "seq")
    if x.ndim < 3 or x.shape[-3] < 3:
        raise ValueError(f"seq must have shape (..., T, J, 3) with T >= 3, got {x.shape}")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    acc = x[..., 2:, :, :] - 2.0 * x[..., 1:-1, :, :] + x[..., :-2, :, :]
    values = np.linalg.norm(acc, axis=-1).mean(axis=(-2, -1))
    if fps is not None:
        values = values * float(fps) ** 2
    return _reduce(values, reduce)


def acceleration_error(pred: ArrayLike, gt: ArrayLike, fps: float | None = None, *, reduce: bool = True) -> float | np.ndarray:
    """Mean norm of the difference of second differences of ``pred`` and ``gt`` (3DPW "Accel").

    Args:
        pred, gt: ``(..., T, J, 3)`` joints in mm, ``T >= 3``; both made root-relative first.
        fps: None for mm/frame^2, a frame rate for mm/s^2.
        reduce: mean over everything (float) or per sequence (array ``(...)``).
    """
    p, g = _pair(pred, gt)
    return mean_joint_acceleration(_root_relative(p) - _root_relative(g), fps, reduce=reduce)


__all__ = [
    "DEFAULT_AUC_THRESHOLDS_MM",
    "DEFAULT_PCK_THRESHOLD_MM",
    "acceleration_error",
    "auc",
    "mean_joint_acceleration",
    "mpjpe",
    "pa_mpjpe",
    "pck",
    "per_joint_error",
    "procrustes_align",
]
