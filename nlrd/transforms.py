"""Exact relations on poses, sequences, images and clips, and the registry that names them.

Pose side: arrays or tensors of root-relative joints in mm, camera frame (x right, y down,
z forward); a pose is (..., J, 3), a sequence (..., T, J, 3). Image side: numpy images (H, W, C)
and clips (T, H, W, C), or torch batches (..., C, H, W). The image-side operation of each relation
is the exact counterpart of its pose-side operation for a pinhole camera whose principal point is
the image centre (crops are centred on the person's root): a horizontal flip negates x, and a
rotation of the pose by theta about the optical axis is a rotation of the image by theta about
its centre (clockwise on screen for theta > 0, since y points down).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from nlrd.skeleton import H36M_17, Skeleton

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

MOTION_LENGTH = 30  # frames per motion window (1 s at 30 fps)


# ----------------------------------------------------------------------------- pose side
def _rot_apply(x: ArrayT, rot: np.ndarray) -> ArrayT:
    """Apply a 3x3 rotation to (..., 3) points."""
    if isinstance(x, torch.Tensor):
        return x @ torch.as_tensor(rot.T, dtype=x.dtype, device=x.device)
    return (np.asarray(x) @ rot.T.astype(np.asarray(x).dtype, copy=False)).astype(np.asarray(x).dtype, copy=False)


def rot_z(theta_deg: float) -> np.ndarray:
    """Rotation about the optical axis (z), in the x-y image plane."""
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(theta_deg: float) -> np.ndarray:
    """Rotation about the vertical axis (camera y, which points down)."""
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(theta_deg: float) -> np.ndarray:
    """Rotation about the camera x axis (tilt)."""
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def flip_pose(joints: ArrayT, skeleton: Skeleton = H36M_17) -> ArrayT:
    """Mirror left-right: negate x and swap left/right joints. (..., J, 3) -> (..., J, 3)."""
    perm = skeleton.flip_permutation
    if isinstance(joints, torch.Tensor):
        out = joints[..., torch.as_tensor(perm, device=joints.device), :].clone()
        out[..., 0] = -out[..., 0]
        return out
    out = np.array(joints)[..., perm, :]
    out[..., 0] = -out[..., 0]
    return out


def inplane_pose(joints: ArrayT, theta_deg: float) -> ArrayT:
    """Rotate by theta (deg) about the optical axis through the root. (..., J, 3)."""
    return _rot_apply(joints, rot_z(theta_deg))


def azimuth_pose(joints: ArrayT, theta_deg: float) -> ArrayT:
    """Rotate by theta (deg) about the vertical axis through the root. (..., J, 3)."""
    return _rot_apply(joints, rot_y(theta_deg))


def tilt_pose(joints: ArrayT, theta_deg: float) -> ArrayT:
    """Rotate by theta (deg) about the camera x axis through the root. (..., J, 3)."""
    return _rot_apply(joints, rot_x(theta_deg))


def flip_inplane_pose(joints: ArrayT, theta_deg: float, skeleton: Skeleton = H36M_17) -> ArrayT:
    """Flip, then rotate by theta about the optical axis."""
    return inplane_pose(flip_pose(joints, skeleton), theta_deg)


def backward(seq: ArrayT, time_axis: int = -3) -> ArrayT:
    """Reverse time of a sequence (..., T, J, 3) (or a clip, with ``time_axis`` set)."""
    if isinstance(seq, torch.Tensor):
        return torch.flip(seq, dims=[time_axis])
    return np.flip(np.asarray(seq), axis=time_axis).copy()


def slow_pair(window: ArrayT, length: int = MOTION_LENGTH, time_axis: int = -3) -> tuple[ArrayT, ArrayT]:
    """The 60 -> 30 frame construction of the slow relations.

    ``window`` holds 2*length consecutive frames along ``time_axis``. The anchor takes every second
    frame (the motion played at double speed); the counterpart is the middle ``length`` frames at
    full rate (the same motion, half as fast, around the same instant).
    """
    n = window.shape[time_axis]
    if n != 2 * length:
        raise ValueError(f"slow relations need windows of {2 * length} frames, got {n}")
    idx_anchor = list(range(0, 2 * length, 2))
    start = length // 2
    idx_mid = list(range(start, start + length))
    if isinstance(window, torch.Tensor):
        return (
            window.index_select(time_axis, torch.tensor(idx_anchor, device=window.device)),
            window.index_select(time_axis, torch.tensor(idx_mid, device=window.device)),
        )
    w = np.asarray(window)
    return np.take(w, idx_anchor, axis=time_axis), np.take(w, idx_mid, axis=time_axis)


# ----------------------------------------------------------------------------- image side
def flip_image(img: ArrayT) -> ArrayT:
    """Horizontal flip: numpy (..., H, W, C) or torch (..., C, H, W)."""
    if isinstance(img, torch.Tensor):
        return torch.flip(img, dims=[-1])
    return np.ascontiguousarray(np.asarray(img)[..., :, ::-1, :])


def inplane_image(img: ArrayT, theta_deg: float) -> ArrayT:
    """Rotate about the image centre, matching :func:`inplane_pose` (clockwise on screen for theta>0).

    numpy (H, W, C) or (T, H, W, C), any dtype cv2 warps; torch (..., C, H, W) float, bilinear.
    Corners that come from outside the image are black (zero).
    """
    if isinstance(img, torch.Tensor):
        lead = img.shape[:-3]
        flat = img.reshape(-1, *img.shape[-3:])
        angles = torch.full((flat.shape[0],), float(theta_deg), dtype=flat.dtype, device=flat.device)
        return rotate_images(flat, angles).reshape(*lead, *img.shape[-3:])
    arr = np.asarray(img)
    if arr.ndim == 4:
        return np.stack([inplane_image(f, theta_deg) for f in arr])
    h, w = arr.shape[:2]
    # cv2's positive angle is counter-clockwise on screen; ours is clockwise (y down).
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), -theta_deg, 1.0)
    out = cv2.warpAffine(arr, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape(arr.shape)


def rotate_images(images: torch.Tensor, theta_deg: torch.Tensor) -> torch.Tensor:
    """Rotate each image of a batch (B, C, H, W) by its own angle (B,) degrees about its centre.

    Same convention as :func:`inplane_image` (clockwise on screen for theta > 0), bilinear, zero fill.
    """
    if images.ndim != 4 or theta_deg.shape != (images.shape[0],):
        raise ValueError(f"rotate_images: expected (B, C, H, W) and (B,), got {tuple(images.shape)} and {tuple(theta_deg.shape)}")
    theta = rotation_sampling_matrix(theta_deg.to(images.dtype), *images.shape[-2:])[:, :2]
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotation_sampling_matrix(theta_deg: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 3, 3) homogeneous map from output to input coordinates (``affine_grid``'s normalised units)
    of the in-plane rotation :func:`rotate_images` applies, so it can be composed with other warps."""
    t = theta_deg * (math.pi / 180.0)
    c, s = torch.cos(t), torch.sin(t)
    ar = w / h
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    # affine_grid maps output coords to input coords in normalised units; the aspect-ratio terms keep
    # the rotation rigid in pixels. Output pixel p samples input R^-1 p.
    rows = [torch.stack([c, s / ar, zero], dim=-1), torch.stack([-s * ar, c, zero], dim=-1), torch.stack([zero, zero, one], -1)]
    return torch.stack(rows, dim=1)


def inplane_points2d(points: np.ndarray, theta_deg: float, center: tuple[float, float]) -> np.ndarray:
    """Rotate 2D pixel points (..., 2) about ``center`` exactly as :func:`inplane_image` moves pixels."""
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    p = np.asarray(points, dtype=np.float64) - np.asarray(center)
    out = np.stack([c * p[..., 0] - s * p[..., 1], s * p[..., 0] + c * p[..., 1]], axis=-1)
    return out + np.asarray(center)


def ensemble_views(angles: tuple[float, ...] = (10.0, -10.0)) -> list[tuple[str, Callable, Callable]]:
    """The views of a relation ensemble as (name, image map, pose map back): the identity, the mirror, and
    each in-plane rotation by ``angles`` (degrees) with and without the mirror.

    The image map takes numpy (..., H, W, C) or torch (..., C, H, W) images; the pose map back takes the
    pose (..., J, 3) mm a model predicts for the mapped image to the pose of the original image (the
    exact inverse of the relation's pose map), so a model that obeys the relations exactly predicts the
    same pose from every view, and the mean over views is the relation-consistent test-time ensemble.
    """
    views: list[tuple[str, Callable, Callable]] = [("identity", lambda x: x, lambda p: p), ("flip", flip_image, flip_pose)]
    for a in angles:
        views.append((f"inplane{a:+g}", lambda x, a=a: inplane_image(x, a), lambda p, a=a: inplane_pose(p, -a)))
        # Image: mirror, then rotate (the flip+inplane relation); pose: undo the rotation, then the mirror.
        views.append((f"flip+inplane{a:+g}", lambda x, a=a: inplane_image(flip_image(x), a),
                      lambda p, a=a: flip_pose(inplane_pose(p, -a))))  # fmt: skip
    return views


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Relation:
    """A named relation: an exact pose-side map and its exact image-side counterpart.

    ``pose_pair(x)`` and ``image_pair(x)`` both return ``(anchor, counterpart)``.
    Lower-order (``order == "pose"``) relations take one pose (..., J, 3) or one image; higher-order
    (``"motion"``) relations take a window of ``window`` frames (..., window, J, 3) or a clip
    (window, H, W, C) / torch (..., window, C, H, W) and return 30-frame anchors and counterparts.
    """

    name: str
    order: Literal["pose", "motion"]
    window: int
    pose_pair: Callable
    image_pair: Callable
    description: str


RELATIONS: dict[str, Relation] = {}


def register(rel: Relation) -> Relation:
    if rel.name in RELATIONS:
        raise ValueError(f"relation {rel.name!r} is registered twice")
    RELATIONS[rel.name] = rel
    return rel


def get_relation(name: str) -> Relation:
    if name not in RELATIONS:
        raise ValueError(f"unknown relation {name!r}; known: {sorted(RELATIONS)}")
    return RELATIONS[name]


# numpy clips are (T, H, W, C) and torch clips (..., T, C, H, W): time is axis -4 for both.
CLIP_TIME_AXIS = -4


def _pose_relation(name: str, pose_fn: Callable, image_fn: Callable, description: str) -> Relation:
    return register(Relation(name, "pose", 1, lambda y: (y, pose_fn(y)), lambda x: (x, image_fn(x)), description))


def _motion_relation(name: str, frame_pose_fn: Callable, frame_image_fn: Callable, description: str) -> Relation:
    def pose_pair(seq):
        return seq, backward(frame_pose_fn(seq), time_axis=-3)

    def image_pair(clip):
        return clip, backward(frame_image_fn(clip), time_axis=CLIP_TIME_AXIS)

    return register(Relation(name, "motion", MOTION_LENGTH, pose_pair, image_pair, description))


_pose_relation("pose-flip", flip_pose, flip_image,
               "Mirror the body left-right (the image flipped horizontally): same articulation, "
               "other side; the two latents usually lie far apart.")  # fmt: skip
for _theta in (10, 25, 50):
    _pose_relation(f"inplane-{_theta}", lambda y, t=_theta: inplane_pose(y, t),
                   lambda x, t=_theta: inplane_image(x, t),
                   f"Rotate the pose by {_theta} degrees about the camera's optical axis (the image "
                   f"rotated about its centre).")  # fmt: skip
_pose_relation("flip+inplane-50", lambda y: flip_inplane_pose(y, 50), lambda x: inplane_image(flip_image(x), 50),
               "Mirror, then rotate by 50 degrees in the image plane.")  # fmt: skip
_motion_relation("backward", lambda s: s, lambda c: c,
                 "The same 30 frames played in reverse.")  # fmt: skip
_motion_relation("flip-backward", flip_pose, flip_image,
                 "Mirror every frame and play the clip in reverse.")  # fmt: skip
_motion_relation("flip+inplane-50-backward", lambda s: flip_inplane_pose(s, 50),
                 lambda c: inplane_image(flip_image(c), 50),
                 "Mirror and rotate every frame by 50 degrees, then reverse time.")  # fmt: skip


def _slow_backward_pose(window):
    anchor, mid = slow_pair(window, time_axis=-3)
    return anchor, backward(mid, time_axis=-3)


def _slow_backward_image(clip):
    anchor, mid = slow_pair(clip, time_axis=CLIP_TIME_AXIS)
    return anchor, backward(mid, time_axis=CLIP_TIME_AXIS)


def _slow_pose(window):
    return slow_pair(window, time_axis=-3)


def _slow_image(clip):
    return slow_pair(clip, time_axis=CLIP_TIME_AXIS)


register(Relation("slow", "motion", 2 * MOTION_LENGTH, _slow_pose, _slow_image,
                  "Anchor: 60 frames sampled every second frame (double speed); counterpart: the "
                  "middle 30 frames at full rate."))  # fmt: skip
register(Relation("slow-backward", "motion", 2 * MOTION_LENGTH, _slow_backward_pose, _slow_backward_image,
                  "Like slow, with the counterpart played in reverse."))  # fmt: skip
