"""Synthetic keypoint observations of mocap poses, for training the fit's start network and measuring the fit.

A root-relative world pose (mocap axes: x right, y down = gravity, z forward, mm, canonical bone
lengths) is scaled (people differ in size), turned by a body orientation and a camera view, placed
at a distance in front of a pinhole camera (focal = max(H, W)) and projected. The 2D keypoints get
noise proportional to the person's box (2D detectors err by a few per cent of the box), a few
outliers and missing joints; the 3D cue gets MediaPipe-like errors (per-joint noise, worse in depth,
a small global rotation and scale error).

People differ in size (a scale) and a little in proportions (legs, arms, torso). The view model
follows :mod:`nlrd.views` (azimuth all round, elevation -30..+60 degrees, roll up to
+-30 in half of the draws, a fifth of the bodies lying down, a tenth turned freely) but also returns
the camera azimuth, which the start network's targets need.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nlrd.fit.geometry import ancestor_matrix, bone_groups
from nlrd.skeleton import H36M_17, Skeleton
from nlrd.transforms import rot_x, rot_y, rot_z


@dataclass(frozen=True)
class ViewSampling:
    """Random views and bodies (degrees, mm); see the module doc."""

    elevation: tuple[float, float] = (-30.0, 60.0)
    roll_max_deg: float = 30.0
    roll_prob: float = 0.5
    lying_prob: float = 0.2
    lying_slack_deg: float = 25.0
    free_prob: float = 0.1


@dataclass(frozen=True)
class ObservationNoise:
    """How people are placed and observed.

    Attributes:
        distance_mm: range of the root's depth.
        scale: range of the person's size relative to the canonical skeleton.
        bone_jitter: std of the log length factor of each bone group (legs, arms, torso; see
            ``nlrd.fit.geometry.bone_groups``): people differ in proportions, not only in size.
        image_sizes: (H, W) px choices; focal = max(H, W).
        kp_noise: range of the per-person 2D noise std as a fraction of the box size.
        outlier_prob: per-joint chance of a gross 2D error (10-25% of the box, confidence lowered).
        missing_prob: per-joint chance of a missing keypoint (conf 0, coordinates garbage).
        world_noise_mm: range of the per-person std (per axis) of the 3D cue's per-joint noise.
        world_depth_factor: the cue's noise along the optical axis is this times larger.
        world_rot_deg: std of the cue's global rotation error.
        world_scale: range of the cue's global scale error.
    """

    distance_mm: tuple[float, float] = (2500.0, 8000.0)
    scale: tuple[float, float] = (0.85, 1.25)
    bone_jitter: float = 0.04
    image_sizes: tuple[tuple[int, int], ...] = ((480, 640), (640, 480), (720, 1280), (1280, 720), (1080, 1080))
    kp_noise: tuple[float, float] = (0.015, 0.03)
    outlier_prob: float = 0.02
    missing_prob: float = 0.03
    world_noise_mm: tuple[float, float] = (30.0, 45.0)
    world_depth_factor: float = 1.5
    world_rot_deg: float = 5.0
    world_scale: tuple[float, float] = (0.9, 1.1)


@dataclass
class Observations:
    """N synthetic observations (float32 numpy).

    Attributes:
        joints2d: (N, J, 2) px, noisy. conf: (N, J) in [0, 1], 0 = missing.
        image_size: (N, 2) int (H, W) px; focal: (N,) px; the principal point is the image centre.
        world3d: (N, J, 3) mm root-relative camera frame, the noisy 3D cue.
        joints3d: (N, J, 3) mm root-relative camera frame, the truth at the person's own size and proportions.
        canonical: (N, J, 3) mm, the same pose with canonical bone lengths (scale 1, the mocap's own).
        translation: (N, 3) mm, the root in the camera frame.
        scale: (N,) the person's size factor.
        rotation: (N, 3, 3) world -> camera (camera view times body orientation).
        upright: (N, 3, 3) the part of ``rotation`` an azimuth-only pose prior covers, a rotation about
            the vertical by the camera azimuth: ``rotation @ upright.T`` is the rest (tilt, roll, lying).
    """

    joints2d: np.ndarray
    conf: np.ndarray
    image_size: np.ndarray
    focal: np.ndarray
    world3d: np.ndarray
    joints3d: np.ndarray
    canonical: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    rotation: np.ndarray
    upright: np.ndarray


def sample_views(n: int, rng: np.random.Generator, dist: ViewSampling = ViewSampling()) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3, 3) world -> camera rotations and (n, 3, 3) their azimuth parts (see :class:`Observations`)."""
    rot = np.empty((n, 3, 3))
    up = np.empty((n, 3, 3))
    for i in range(n):
        az = rng.uniform(0.0, 360.0)
        el = rng.uniform(*dist.elevation)
        roll = rng.uniform(-dist.roll_max_deg, dist.roll_max_deg) if rng.random() < dist.roll_prob else 0.0
        pick = rng.random()
        if pick < dist.lying_prob:
            angle = rng.choice([-1.0, 1.0]) * (90.0 + rng.uniform(-dist.lying_slack_deg, dist.lying_slack_deg))
            body = rot_x(angle) if rng.random() < 0.5 else rot_z(angle)
        elif pick < dist.lying_prob + dist.free_prob:
            q = rng.normal(size=4)
            w, x, y, z = q / np.linalg.norm(q)
            body = np.array([
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ])  # fmt: skip
        else:
            body = np.eye(3)
        rot[i] = rot_z(roll) @ rot_x(el) @ rot_y(az) @ body
        up[i] = rot_y(az)
    return rot, up


def _small_rotations(n: int, std_deg: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) rotations about random axes by N(0, std_deg) degrees."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    ang = np.deg2rad(rng.normal(0.0, std_deg, size=n))
    k = np.zeros((n, 3, 3))
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    k = k - k.transpose(0, 2, 1)
    s, c = np.sin(ang)[:, None, None], np.cos(ang)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def observe(
    world_joints: np.ndarray,
    rotation: np.ndarray,
    rng: np.random.Generator,
    noise: ObservationNoise = ObservationNoise(),
    upright: np.ndarray | None = None,
    skeleton: Skeleton = H36M_17,
) -> Observations:
    """Place, project and corrupt N posed people (see the module doc).

    Args:
        world_joints: (N, J, 3) mm root-relative world poses (canonical bone lengths).
        rotation: (N, 3, 3) world -> camera rotations (e.g. :func:`sample_views` or ``nlrd.views``).
        rng: the randomness (a seeded generator gives the same observations).
        noise: placement and corruption.
        upright: (N, 3, 3) azimuth parts to pass through (identity if None).
        skeleton: the joints' skeleton (bone groups for the proportions).
    """
    world_joints = np.asarray(world_joints, np.float64)
    n, j, _ = world_joints.shape
    canonical = np.einsum("nik,njk->nji", rotation, world_joints - world_joints[:, :1])
    scale = rng.uniform(*noise.scale, size=n)
    groups = bone_groups(skeleton)
    factors = np.exp(rng.normal(0.0, noise.bone_jitter, size=(n, groups.max() + 1)))[:, groups]  # (N, J)
    parents = np.maximum(np.asarray(skeleton.parents), 0)
    offsets = (canonical - canonical[:, parents]) * factors[..., None]
    joints3d = np.einsum("jk,nkc->njc", ancestor_matrix(skeleton), offsets) * scale[:, None, None]
    sizes = np.asarray(noise.image_sizes, dtype=np.float64)[rng.integers(0, len(noise.image_sizes), size=n)]
    focal = sizes.max(axis=1)
    principal = sizes[:, ::-1] / 2.0  # (cx, cy) = (W/2, H/2)
    depth = rng.uniform(*noise.distance_mm, size=n)
    # The root's pixel anywhere in the middle 60% of the image.
    pix = principal * (1.0 + rng.uniform(-0.6, 0.6, size=(n, 2)))
    translation = np.concatenate([(pix - principal) / focal[:, None] * depth[:, None], depth[:, None]], axis=1)
    cam = joints3d + translation[:, None]
    clean = focal[:, None, None] * cam[..., :2] / np.maximum(cam[..., 2:], 1.0) + principal[:, None]
    box = (clean.max(axis=1) - clean.min(axis=1)).max(axis=1)
    sigma = rng.uniform(*noise.kp_noise, size=n) * box
    joints2d = clean + rng.normal(size=clean.shape) * sigma[:, None, None]
    conf = rng.uniform(0.6, 1.0, size=(n, j))
    outlier = rng.random((n, j)) < noise.outlier_prob
    direction = rng.normal(size=(n, j, 2))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    jump = direction * (rng.uniform(0.1, 0.25, (n, j)) * box[:, None])[..., None]
    joints2d = np.where(outlier[..., None], joints2d + jump, joints2d)
    conf = np.where(outlier, conf * 0.5, conf)
    missing = rng.random((n, j)) < noise.missing_prob
    missing[:, 0] &= False  # keep the pelvis so every person has a box and a root
    conf = np.where(missing, 0.0, conf)
    joints2d = np.where(missing[..., None], rng.uniform(0, 1, (n, j, 2)) * sizes[:, None, ::-1], joints2d)
    # The 3D cue: a small global rotation and scale error, then per-joint noise (worse in depth).
    wsig = rng.uniform(*noise.world_noise_mm, size=n)[:, None, None] * np.array([1.0, 1.0, noise.world_depth_factor])
    wrot = _small_rotations(n, noise.world_rot_deg, rng)
    world3d = np.einsum("nik,njk->nji", wrot, joints3d) * rng.uniform(*noise.world_scale, size=n)[:, None, None]
    wnoise = rng.normal(size=world3d.shape) * wsig
    wnoise[:, 0] = 0.0  # the cue is root-relative: the pelvis is exact by definition
    world3d = world3d + wnoise
    f32 = np.float32
    return Observations(
        joints2d=joints2d.astype(f32), conf=conf.astype(f32), image_size=sizes.astype(np.int64), focal=focal.astype(f32),
        world3d=world3d.astype(f32), joints3d=joints3d.astype(f32), canonical=canonical.astype(f32),
        translation=translation.astype(f32), scale=scale.astype(f32), rotation=rotation.astype(f32),
        upright=(np.broadcast_to(np.eye(3), rotation.shape) if upright is None else upright).astype(f32),
    )  # fmt: skip


__all__ = ["ObservationNoise", "Observations", "ViewSampling", "observe", "sample_views"]
