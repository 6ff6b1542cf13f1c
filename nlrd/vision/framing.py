"""Crops of real people framed the way the renders frame their people, from 2D keypoints.

The image network G learned from renders whose crop is a square centred on the root joint (pelvis),
with half-side ``margin * (max projected extent about the root + pad)`` (``nlrd.data.synthetic.camera``:
margin 1.12, pad 130 mm). A crop around a person box instead centres the box, not the pelvis, and
scales by the box, so G sees people off-centre and at another size than it was trained on. Framing
real crops from MediaPipe's keypoints the renders' way raised G's 2D agreement with MediaPipe on the
tuning photos from 0.533 to 0.616 PCK@0.2 (docs/experiments.md, 2026-12-03), before any adaptation.

The pad is 130 mm of body volume; its size in pixels comes from the person's own scale, the ratio of the
keypoints' spread about the root (px) to the world landmarks' spread (mm).
"""

from __future__ import annotations

import numpy as np

# The renderer's crop fit (nlrd.data.synthetic.camera.CameraRanges: margin, pad_mm).
RENDER_MARGIN = 1.12
RENDER_PAD_MM = 130.0
# Without a metric 3D cue the pad is this fraction of the extent (130 mm over a typical ~900 mm extent).
PAD_FRACTION = 0.14


def keypoint_frames(joints2d: np.ndarray, world3d: np.ndarray | None = None) -> np.ndarray:
    """Render-matched square crops for people given by their joints.

    Args:
        joints2d: (N, J, 2) or (J, 2) px, root (pelvis) first, all finite.
        world3d: optional (N, J, 3) or (J, 3) mm root-relative camera-frame joints of the same people
            (MediaPipe's world landmarks mapped to the skeleton): they set the pad's size in pixels.

    Returns:
        (N, 3) or (3,) float64 ``cx, cy, side`` px: the crop centred on the root joint.
    """
    kp = np.asarray(joints2d, np.float64)
    single = kp.ndim == 2
    kp = kp[None] if single else kp
    if kp.ndim != 3 or kp.shape[-1] != 2 or not np.isfinite(kp).all():
        raise ValueError(f"joints2d: expected finite (N, J, 2) px, got shape {np.shape(joints2d)}")
    d = kp - kp[:, :1]
    ext = np.abs(d).max(axis=(1, 2))  # (N,) px: the largest projected coordinate about the root
    pad = PAD_FRACTION * ext
    if world3d is not None:
        w = np.asarray(world3d, np.float64)
        w = w[None] if w.ndim == 2 else w
        if w.shape[:2] != kp.shape[:2] or w.shape[-1] != 3:
            raise ValueError(f"world3d: expected {kp.shape[:2] + (3,)}, got {np.shape(world3d)}")
        spread_mm = np.abs(w[..., :2] - w[:, :1, :2]).sum(axis=(1, 2))
        spread_px = np.abs(d).sum(axis=(1, 2))
        ok = np.isfinite(spread_mm) & (spread_mm > 1e-3)
        px_per_mm = np.where(ok, spread_px / np.where(ok, spread_mm, 1.0), 0.0)
        pad = np.where(ok, RENDER_PAD_MM * px_per_mm, pad)
    side = 2.0 * RENDER_MARGIN * np.maximum(ext + pad, 1.0)
    out = np.stack([kp[:, 0, 0], kp[:, 0, 1], side], axis=1)
    return out[0] if single else out


def clip_frames(joints2d: np.ndarray, world3d: np.ndarray, found: np.ndarray, radius: int = 2) -> np.ndarray:
    """A clip's render-matched crops, steadied over time: :func:`keypoint_frames` of the frames where the
    person was found (``found`` (T,) bool; other rows of ``joints2d`` (T, J, 2) and ``world3d`` (T, J, 3) are
    ignored, NaN included), then :func:`smooth_frames` -> (T, 3) cx, cy, side px."""
    m = np.asarray(found, bool)
    frames = keypoint_frames(np.where(m[:, None, None], joints2d, 0.0), np.where(m[:, None, None], world3d, 0.0))
    return smooth_frames(frames, m, radius)


def smooth_frames(frames: np.ndarray, found: np.ndarray, radius: int = 2) -> np.ndarray:
    """Steady crops for a clip: frames of the found rows interpolated over the others, then a centred
    moving average of ``2 * radius + 1`` frames (MediaPipe's per-frame keypoints jitter by a few px).

    Args:
        frames: (T, 3) cx, cy, side px (rows where ``found`` is False are ignored).
        found: (T,) bool, at least one True.
    """
    f = np.asarray(frames, np.float64)
    m = np.asarray(found, bool)
    if f.ndim != 2 or f.shape[1] != 3 or m.shape != (len(f),) or not m.any():
        raise ValueError(f"smooth_frames: expected (T, 3) frames and (T,) found with a True, got {f.shape}, {m.shape}")
    t = np.arange(len(f))
    known = np.flatnonzero(m)
    filled = np.stack([np.interp(t, known, f[known, k]) for k in range(3)], axis=1)
    if radius <= 0 or len(f) < 2:
        return filled
    padded = np.pad(filled, ((radius, radius), (0, 0)), mode="edge")
    kernel = np.ones(2 * radius + 1) / (2 * radius + 1)
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(3)], axis=1)
