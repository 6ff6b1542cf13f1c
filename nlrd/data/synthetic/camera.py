"""Pinhole camera around the person and the person-centred crop.

Frames: the pose comes in a *world* frame with camera-style axes (x right, y DOWN, z forward, mm),
root-relative, with y the vertical. A camera at azimuth ``a`` and elevation ``e`` (positive: above
the person, looking down) sees the world through ``R = rot_x(e) @ rot_y(a)``: camera-frame joints
are ``joints @ R.T`` and the root sits on the optical axis at depth ``distance``, i.e. at
``(0, 0, distance)``. So the label (root-relative joints in the camera frame) is ``joints @ R.T``,
the root projects exactly onto the principal point, and the crop's principal point is its centre
``((W-1)/2, (H-1)/2)`` (pixel centres at integer coordinates). That makes the image-side flip and
in-plane rotation of :mod:`nlrd.transforms` exact counterparts of the pose-side ones.

The crop's focal length is chosen so the person fills the crop: from the joints' projected extent
about the root plus a body-volume pad, times a margin. The *full-frame* focal length ``focal_full``
(pixels of a notional 1000-px-wide camera image) only sets how many real pixels the person covers;
a style may use it to degrade resolution (small, far-away people are blurry).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from nlrd.transforms import rot_x, rot_y, rot_z


@dataclass(frozen=True)
class CameraRanges:
    """Ranges a style samples cameras from (degrees, mm, pixels)."""

    azimuth: tuple[float, float] = (0.0, 360.0)
    # The views people are photographed from (the pose prior covers the same, nlrd.views): from 30 degrees
    # below (a camera on the floor) to 60 above (a phone held over someone lying or seated), frames turned
    # up to 15 degrees either way (hand-held cameras).
    elevation: tuple[float, float] = (-30.0, 60.0)
    roll: tuple[float, float] = (-15.0, 15.0)
    distance: tuple[float, float] = (3500.0, 7000.0)
    focal_full: tuple[float, float] = (900.0, 1400.0)
    margin: float = 1.12  # crop half-size = margin * (max projected extent about the root + pad)
    pad_mm: float = 130.0  # body volume beyond the joints (hands, feet, hair)
    # slow drift of clips, per second (30 frames): |azimuth rate|, |elevation rate| (deg/s)
    azimuth_rate: tuple[float, float] = (0.0, 20.0)
    elevation_rate: tuple[float, float] = (0.0, 4.0)


# The cameras of test-set version 1: level frames, elevation -15..+35. Models built on a pose prior trained on
# upright people only (``views = "azimuth"``) cannot output the steeper or rolled views; renders made to show
# what such a model does (the app's relation previews and built-in target clips) stay inside these.
UPRIGHT_ELEVATION, UPRIGHT_ROLL = (-15.0, 35.0), (0.0, 0.0)


def cameras_for_prior(ranges: CameraRanges, views: str) -> CameraRanges:
    """``ranges`` narrowed to the views a pose prior trained with ``views`` can hold ("azimuth": upright people,
    version-1 cameras; any other: unchanged)."""
    if views != "azimuth":
        return ranges
    lo, hi = ranges.elevation
    return replace(ranges, elevation=(max(lo, UPRIGHT_ELEVATION[0]), min(hi, UPRIGHT_ELEVATION[1])), roll=UPRIGHT_ROLL)


@dataclass(frozen=True)
class Camera:
    """One view. ``R`` (3, 3) world -> camera rotation; the root is at (0, 0, distance) mm in the
    camera frame; ``K`` (3, 3) crop intrinsics in pixels for a ``size`` x ``size`` crop."""

    R: np.ndarray
    distance: float
    K: np.ndarray
    size: int
    azimuth: float
    elevation: float
    roll: float
    focal_full: float

    @property
    def translation(self) -> np.ndarray:
        """(3,) mm camera-frame position of the root."""
        return np.array([0.0, 0.0, self.distance])

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(..., 3) root-relative world points -> root-relative camera-frame points (mm)."""
        return np.asarray(points_world) @ self.R.T

    def project(self, points_cam_rel: np.ndarray) -> np.ndarray:
        """(..., 3) root-relative camera-frame points (mm) -> (..., 2) crop pixels."""
        return project(points_cam_rel + self.translation, self.K)

    @property
    def person_pixels(self) -> float:
        """Roughly how many full-frame pixels tall a 1.8 m person is: the resolution cue."""
        return self.focal_full * 1800.0 / self.distance


def look_rotation(azimuth_deg: float, elevation_deg: float, roll_deg: float = 0.0) -> np.ndarray:
    """World -> camera rotation (3, 3) for a camera at the given azimuth/elevation around the root.

    Azimuth turns the person about the vertical (y) axis; positive elevation tilts about the camera
    x axis so the head comes nearer the camera (camera above, looking down); roll turns the image.
    """
    return rot_z(roll_deg) @ rot_x(elevation_deg) @ rot_y(azimuth_deg)


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points (mm, z > 0) -> (..., 2) pixels with intrinsics K (3, 3)."""
    p = np.asarray(points_cam, dtype=np.float64)
    z = p[..., 2:3]
    return np.concatenate([K[0, 0] * p[..., 0:1] / z + K[0, 2], K[1, 1] * p[..., 1:2] / z + K[1, 2]], axis=-1)


def crop_intrinsics(focal: float, size: int) -> np.ndarray:
    """(3, 3) intrinsics of a size x size crop whose principal point is its centre."""
    c = (size - 1) / 2.0
    return np.array([[focal, 0.0, c], [0.0, focal, c], [0.0, 0.0, 1.0]])


def fit_focal(joints_cam_rel: np.ndarray, distance: float, size: int, margin: float, pad_mm: float) -> float:
    """Crop focal length (px) so all joints (plus ``pad_mm``) fit a square crop centred on the root.

    ``joints_cam_rel`` (..., J, 3) root-relative camera-frame joints (several frames allowed: the
    focal length then fits all of them, as a clip's fixed zoom).
    """
    p = np.asarray(joints_cam_rel, dtype=np.float64).reshape(-1, 3)
    z = np.maximum(p[:, 2] + distance, 1.0)
    # normalised image-plane extent about the root, padded by the body volume at the joint's depth
    ext = np.max((np.maximum(np.abs(p[:, 0]), np.abs(p[:, 1])) + pad_mm) / z)
    return (size / 2.0) / (margin * ext)


def sample_camera(joints: np.ndarray, ranges: CameraRanges, rng: np.random.Generator, size: int) -> Camera:
    """Draw a view of a (J, 3) root-relative world pose (mm) and fit the crop to it."""
    az = float(rng.uniform(*ranges.azimuth))
    el = float(rng.uniform(*ranges.elevation))
    roll = float(rng.uniform(*ranges.roll))
    dist = float(rng.uniform(*ranges.distance))
    ff = float(rng.uniform(*ranges.focal_full))
    R = look_rotation(az, el, roll)
    f = fit_focal(joints @ R.T, dist, size, ranges.margin, ranges.pad_mm)
    return Camera(R, dist, crop_intrinsics(f, size), size, az, el, roll, ff)


def sample_camera_path(
    poses: np.ndarray, ranges: CameraRanges, rng: np.random.Generator, size: int, fps: float = 30.0
) -> list[Camera]:
    """A slowly drifting camera for a (T, J, 3) motion: azimuth and elevation change at constant
    rates, distance and zoom stay fixed (the crop focal length fits every frame)."""
    poses = np.asarray(poses)
    T = poses.shape[0]
    az0 = float(rng.uniform(*ranges.azimuth))
    el0 = float(rng.uniform(*ranges.elevation))
    roll = float(rng.uniform(*ranges.roll))
    dist = float(rng.uniform(*ranges.distance))
    ff = float(rng.uniform(*ranges.focal_full))
    az_rate = float(rng.uniform(*ranges.azimuth_rate)) * (1 if rng.random() < 0.5 else -1)
    el_rate = float(rng.uniform(*ranges.elevation_rate)) * (1 if rng.random() < 0.5 else -1)
    t = np.arange(T) / fps
    az = az0 + az_rate * t
    el = np.clip(el0 + el_rate * t, *ranges.elevation)
    Rs = [look_rotation(a, e, roll) for a, e in zip(az, el, strict=True)]
    cam_poses = np.stack([p @ R.T for p, R in zip(poses, Rs, strict=True)])
    K = crop_intrinsics(fit_focal(cam_poses, dist, size, ranges.margin, ranges.pad_mm), size)
    return [Camera(R, dist, K, size, float(a), float(e), roll, ff) for R, a, e in zip(Rs, az, el, strict=True)]
