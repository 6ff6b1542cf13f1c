"""The one person-crop convention shared by training renders and inference.

Coordinates: continuous image coordinates in pixels, x right and y down, with the *centre* of
pixel (row i, column j) at (x, y) = (j, i) (OpenCV's ``warpAffine`` convention and the synthetic
renderer's). A box (x0, y0, x1, y1) is a region in these coordinates, so the whole W x H image is
(-0.5, -0.5, W - 0.5, H - 0.5); detection boxes follow the same rule.

A person box becomes a square (:func:`square_box`): centred on the box centre, side ``margin *
max(w, h)``. The square is resampled to a ``size x size`` crop (:func:`crop_square`) so that its
edges land on the crop's outer pixel edges: the square's centre maps to the crop's centre
``((size - 1) / 2, (size - 1) / 2)`` (the crop camera's principal point) and one crop pixel spans
``side / size`` image pixels. Outside the image the crop is black (zero padding). The 2 x 3 affine
``A`` returned with every crop maps image pixels to crop pixels, ``p_crop = A @ (x, y, 1)``;
:func:`uncrop_points` applies its inverse, so 2D predictions in the crop go back to the image.

Strong downscaling (the square many times larger than the crop) first shrinks the region with area
averaging and then warps bilinearly, so crops are not aliased; the returned affine accounts for
both steps exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from nlrd.data.images import as_rgb_uint8

DEFAULT_MARGIN = 1.25
DEFAULT_SIZE = 128
_AREA_PRESHRINK = 2.0  # pre-shrink with area averaging when one crop pixel spans more image pixels than this


def _boxes(box: Sequence[float] | np.ndarray, what: str = "box") -> np.ndarray:
    b = np.asarray(box, dtype=np.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"{what} must have shape (..., 4) = (x0, y0, x1, y1), got {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"{what} holds NaN or infinite values")
    if np.any(b[..., 2] <= b[..., 0]) or np.any(b[..., 3] <= b[..., 1]):
        raise ValueError(f"{what} must have x1 > x0 and y1 > y0 (x0, y0, x1, y1), got {b.tolist()}")
    return b


def square_box(box: Sequence[float] | np.ndarray, margin: float = DEFAULT_MARGIN) -> tuple:
    """Square around a box: ``(cx, cy, side)`` with side = margin * max(width, height).

    Args:
        box: (4,) or (..., 4) boxes (x0, y0, x1, y1) in image pixels.
        margin: > 0; 1.25 leaves a 12.5% border around the longer side of the box.

    Returns:
        (cx, cy, side): floats for one box, else arrays of the batch shape.
    """
    if not (np.isfinite(margin) and margin > 0):
        raise ValueError(f"margin must be a positive number, got {margin!r}")
    b = _boxes(box)
    cx = 0.5 * (b[..., 0] + b[..., 2])
    cy = 0.5 * (b[..., 1] + b[..., 3])
    side = margin * np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])
    if b.ndim == 1:
        return float(cx), float(cy), float(side)
    return cx, cy, side


def crop_affine(cx: float, cy: float, side: float, size: int = DEFAULT_SIZE) -> np.ndarray:
    """(2, 3) affine taking image pixels to the pixels of the ``size`` crop of the square (cx, cy, side)."""
    if not (np.isfinite([cx, cy, side]).all() and side > 0):
        raise ValueError(f"the crop square needs finite cx, cy and a positive side, got {(cx, cy, side)}")
    s = size / float(side)
    c = (size - 1) / 2.0
    return np.array([[s, 0.0, c - s * cx], [0.0, s, c - s * cy]])


def _compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine ``a o b`` (apply b first), both (2, 3)."""
    a3 = np.vstack([a, [0.0, 0.0, 1.0]])
    b3 = np.vstack([b, [0.0, 0.0, 1.0]])
    return (a3 @ b3)[:2]


def crop_square(image: np.ndarray, cx: float, cy: float, side: float, size: int = DEFAULT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Crop the square (cx, cy, side) out of an image and resample it to size x size.

    Args:
        image: (H, W, 3) uint8 RGB (other layouts are converted by ``as_rgb_uint8``).
        cx, cy: square centre in image pixels; side: its side in image pixels.
        size: crop side in pixels.

    Returns:
        crop: (size, size, 3) uint8 RGB, black where the square leaves the image;
        affine: (2, 3) float64, image pixels -> crop pixels.
    """
    if int(size) != size or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    size = int(size)
    img = (
        image if (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3) else None
    )
    if img is None:
        img = as_rgb_uint8(image, max_pixels=None)
    affine = crop_affine(float(cx), float(cy), float(side), size)
    h, w = img.shape[:2]
    src = img
    pre = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    factor = float(side) / size  # image pixels per crop pixel
    if factor > _AREA_PRESHRINK:
        # Area-average the part of the image the square covers down to ~1 crop pixel per pixel, so the
        # bilinear warp does not alias. The ROI is in whole pixels, 1 px wider than the square.
        half = 0.5 * side + 1.0
        x0, x1 = max(0, int(np.floor(cx - half))), min(w, int(np.ceil(cx + half)) + 1)
        y0, y1 = max(0, int(np.floor(cy - half))), min(h, int(np.ceil(cy + half)) + 1)
        if x1 - x0 < 2 or y1 - y0 < 2:  # the square does not meet the image: all black
            return np.zeros((size, size, 3), np.uint8), affine
        roi = img[y0:y1, x0:x1]
        nw = max(2, round((x1 - x0) / factor))
        nh = max(2, round((y1 - y0) / factor))
        src = cv2.resize(roi, (nw, nh), interpolation=cv2.INTER_AREA)
        # resize maps pixel edges to pixel edges: x' + 0.5 = (x - x0 + 0.5) * nw / (x1 - x0)
        sx, sy = nw / (x1 - x0), nh / (y1 - y0)
        pre = np.array([[sx, 0.0, (0.5 - x0) * sx - 0.5], [0.0, sy, (0.5 - y0) * sy - 0.5]])
    warp = _compose(affine, np.linalg.inv(np.vstack([pre, [0.0, 0.0, 1.0]]))[:2])
    crop = cv2.warpAffine(src, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, affine


def apply_affine(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map points (..., 2) through a (2, 3) affine (or (..., 2, 3) affines broadcast over points)."""
    p = np.asarray(points, dtype=np.float64)
    a = np.asarray(affine, dtype=np.float64)
    if p.shape[-1:] != (2,):
        raise ValueError(f"points must have shape (..., 2), got {p.shape}")
    if a.shape[-2:] != (2, 3):
        raise ValueError(f"affine must have shape (..., 2, 3), got {a.shape}")
    lin = a[..., :, :2]
    if a.ndim == 2:
        return p @ lin.T + a[:, 2]
    # batched affines (T, 2, 3) with points (T, ..., 2)
    extra = p.ndim - a.ndim + 1
    lin_b = lin.reshape(lin.shape[:-2] + (1,) * extra + (2, 2))
    off_b = a[..., :, 2].reshape(a.shape[:-2] + (1,) * extra + (2,))
    return np.einsum("...ij,...j->...i", lin_b, p) + off_b


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """Inverse of (2, 3) or (..., 2, 3) affines."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape[-2:] != (2, 3):
        raise ValueError(f"affine must have shape (..., 2, 3), got {a.shape}")
    lin_inv = np.linalg.inv(a[..., :, :2])
    off = -np.einsum("...ij,...j->...i", lin_inv, a[..., :, 2])
    return np.concatenate([lin_inv, off[..., None]], axis=-1)


def uncrop_points(points_crop: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Crop pixels (..., 2) -> image pixels, inverting the affine :func:`crop_square` returned.

    ``affine`` may be (2, 3), or (T, 2, 3) with points (T, ..., 2) (the output of :func:`crop_clip`).
    """
    return apply_affine(points_crop, invert_affine(affine))


def crop_clip(
    frames: np.ndarray,
    boxes: np.ndarray,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop every frame of a clip around its box.

    Args:
        frames: (T, H, W, 3) uint8 RGB.
        boxes: (T, 4) person boxes (x0, y0, x1, y1) in image pixels.
        size: crop side in pixels; margin: as :func:`square_box`.

    Returns:
        crops (T, size, size, 3) uint8 RGB and affines (T, 2, 3) image px -> crop px.
    """
    f = np.asarray(frames)
    if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8:
        raise ValueError(f"frames must be a uint8 array (T, H, W, 3), got {f.dtype} {f.shape}")
    b = _boxes(boxes, "boxes")
    if b.shape != (f.shape[0], 4):
        raise ValueError(f"boxes must have shape (T, 4) = ({f.shape[0]}, 4), got {b.shape}")
    cx, cy, side = square_box(b, margin)
    crops = np.empty((f.shape[0], size, size, 3), np.uint8)
    affines = np.empty((f.shape[0], 2, 3))
    for t in range(f.shape[0]):  # warpAffine is per image; the square maths above is vectorised
        crops[t], affines[t] = crop_square(f[t], cx[t], cy[t], side[t], size)
    return crops, affines
