"""Camera and rigid-body geometry for the pose fit, batched torch (camera frame: x right, y down, z forward, mm).

A pinhole camera with focal length ``f`` px and principal point ``c`` px maps a camera-frame point
``X`` to ``f * X[:2] / X[2] + c``. Poses are (B, J, 3) mm; rotations (B, 3, 3) act on column vectors,
so a pose is rotated by ``joints @ R.transpose(-1, -2)``.
"""

from __future__ import annotations

import numpy as np
import torch

from nlrd.skeleton import Skeleton

MIN_DEPTH_MM = 100.0  # depths below this are clamped inside the projection (a point at the camera has no image)


def default_focal(height: float, width: float) -> float:
    """The assumed focal length in px when none is given: max(H, W), a ~53 degree field of view."""
    return float(max(height, width))


def axis_angle_to_matrix(omega: torch.Tensor) -> torch.Tensor:
    """(B, 3) axis-angle (radians) -> (B, 3, 3) rotation (Rodrigues), smooth at omega = 0."""
    theta2 = (omega * omega).sum(-1, keepdim=True)
    theta = torch.sqrt(theta2 + 1e-12)
    # sin(t)/t and (1-cos t)/t^2 through their Taylor series near 0, so gradients stay finite there.
    small = theta2 < 1e-6
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-12))
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(k)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def kabsch(src: torch.Tensor, dst: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Best proper rotation R and scale s with ``s * src @ R.T ~ dst`` (both centred on their weighted means).

    Args:
        src, dst: (B, J, 3). weights: (B, J) >= 0 or None (uniform).

    Returns:
        R (B, 3, 3) with det +1 (reflections excluded: the depth-mirrored twin is not a rotation) and
        s (B,) >= 0.
    """
    w = torch.ones(src.shape[:2], dtype=src.dtype, device=src.device) if weights is None else weights
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
    mu_s = (w[..., None] * src).sum(1, keepdim=True)
    mu_d = (w[..., None] * dst).sum(1, keepdim=True)
    a, b = src - mu_s, dst - mu_d
    cov = torch.einsum("bj,bji,bjk->bik", w, b, a)  # sum_j w b_j a_j^T
    u, sv, vh = torch.linalg.svd(cov)
    d = torch.sign(torch.linalg.det(u @ vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    fix = torch.ones_like(sv)
    fix[:, -1] = d
    rot = u @ torch.diag_embed(fix) @ vh
    var = (w * (a * a).sum(-1)).sum(-1)
    scale = (sv * fix).sum(-1) / var.clamp_min(1e-12)
    return rot, scale


def project(points: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (B, J, 3) mm -> pixels (B, J, 2); focal (B,) px, principal (B, 2) px."""
    depth = points[..., 2:].clamp_min(MIN_DEPTH_MM)
    return focal[:, None, None] * points[..., :2] / depth + principal[:, None, :]


def solve_translation(
    pose: torch.Tensor, joints2d: torch.Tensor, weights: torch.Tensor, focal: torch.Tensor, principal: torch.Tensor
) -> torch.Tensor:
    """Root position t (B, 3) mm that best projects the root-relative camera-frame ``pose`` onto ``joints2d``.

    Linear least squares on the cross-multiplied projection equations ``(u - c) (Z + tz) = f (X + tx)``
    (exact for noise-free keypoints, a good start otherwise); ``weights`` (B, J) are the confidences.
    Depth is clamped to at least 10 cm in front of the camera.
    """
    uv = joints2d - principal[:, None, :]  # (B, J, 2)
    f = focal[:, None]
    w = weights.clamp_min(0.0)
    zeros, ones = torch.zeros_like(uv[..., 0]), torch.ones_like(uv[..., 0])
    # Rows for u: [f, 0, -u] t = u Z - f X; rows for v: [0, f, -v] t = v Z - f Y.
    a_u = torch.stack([f.expand_as(zeros) * ones, zeros, -uv[..., 0]], dim=-1)
    a_v = torch.stack([zeros, f.expand_as(zeros) * ones, -uv[..., 1]], dim=-1)
    a = torch.cat([a_u, a_v], dim=1)  # (B, 2J, 3)
    rhs = torch.cat([uv[..., 0] * pose[..., 2] - f * pose[..., 0], uv[..., 1] * pose[..., 2] - f * pose[..., 1]], dim=1)
    ww = torch.cat([w, w], dim=1)
    ata = torch.einsum("bn,bni,bnk->bik", ww, a, a) + 1e-6 * torch.eye(3, dtype=a.dtype, device=a.device)
    atb = torch.einsum("bn,bni,bn->bi", ww, a, rhs)
    t = torch.linalg.solve(ata, atb)
    return torch.cat([t[:, :2], t[:, 2:].clamp_min(MIN_DEPTH_MM)], dim=-1)


def ancestor_matrix(skeleton: Skeleton) -> np.ndarray:
    """(J, J) float32 A with A[j, k] = 1 when bone k (ending at joint k) lies on the path root -> j.

    Root-relative joints are ``A @ offsets`` for bone offsets (J, 3) (offset 0 of the root is zero),
    one matrix product instead of a walk over the tree.
    """
    n = skeleton.num_joints
    a = np.zeros((n, n), dtype=np.float32)
    for j in range(1, n):
        k = j
        while k > 0:
            a[j, k] = 1.0
            k = skeleton.parents[k]
    return a


BONE_GROUP_NAMES: tuple[str, ...] = ("legs", "arms", "torso")


def bone_groups(skeleton: Skeleton) -> np.ndarray:
    """(J,) int64 group of the bone ending at each joint: 0 legs (knees, ankles), 1 arms (elbows,
    wrists), 2 torso (everything else, including hips, shoulders, neck and head); the root gets 2.

    Read from the joint names, so another skeleton with the usual names gets the same grouping and one
    without them gets a single torso group (a uniform scale).
    """
    out = np.full(skeleton.num_joints, 2, dtype=np.int64)
    for j, name in enumerate(skeleton.joint_names):
        low = name.lower()
        if "knee" in low or "ankle" in low or "foot" in low:
            out[j] = 0
        elif "elbow" in low or "wrist" in low or "hand" in low:
            out[j] = 1
    return out


def torso_normal(joints3d: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """(B, J, 3) -> (B, 3) unit chest direction (the way the torso faces) in the same frame.

    lateral = (l_hip - r_hip) + (l_shoulder - r_shoulder) points to the subject's left, up = mid-shoulders
    - mid-hips, and the chest faces ``lateral x up`` (for a person upright and facing the camera:
    x cross -y = -z, towards the camera).
    """
    lh, rh = skeleton.index("l_hip"), skeleton.index("r_hip")
    ls, rs = skeleton.index("l_shoulder"), skeleton.index("r_shoulder")
    lateral = (joints3d[:, lh] - joints3d[:, rh]) + (joints3d[:, ls] - joints3d[:, rs])
    up = 0.5 * (joints3d[:, ls] + joints3d[:, rs]) - 0.5 * (joints3d[:, lh] + joints3d[:, rh])
    n = torch.linalg.cross(lateral, up, dim=-1)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-9)


__all__ = [
    "BONE_GROUP_NAMES",
    "MIN_DEPTH_MM",
    "ancestor_matrix",
    "axis_angle_to_matrix",
    "bone_groups",
    "default_focal",
    "kabsch",
    "project",
    "solve_translation",
    "torso_normal",
]
