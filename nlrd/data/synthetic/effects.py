"""Camera and scene effects applied to a composited frame: what makes the target style look shot
with a real camera (blur, noise, compression, colour response, low resolution, occluders).

Effect parameters are drawn once per image or clip (:func:`sample_effects`) and applied per frame
(:func:`apply_effects`), so a clip keeps one camera character while its noise changes every frame.
Images are float32 (H, W, 3) in [0, 1] unless stated otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from numba import njit


@dataclass(frozen=True)
class EffectRanges:
    """How often and how strongly a style applies each effect (probabilities and ranges)."""

    background_blur_prob: float = 0.0
    background_blur_sigma: tuple[float, float] = (0.5, 2.0)  # px; depth of field behind the person
    defocus_prob: float = 0.0
    defocus_sigma: tuple[float, float] = (0.3, 0.9)
    motion_blur_prob: float = 0.0
    motion_blur_length: tuple[float, float] = (2.0, 6.0)  # px
    lowres: bool = False  # blur small far-away people to their real pixel count
    grade_prob: float = 0.0  # white balance, contrast, saturation, gamma
    noise_prob: float = 0.0
    noise_sigma: tuple[float, float] = (0.004, 0.025)  # in [0, 1] units
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (30, 90)
    occluder_prob: float = 0.0
    occluders: tuple[int, int] = (1, 1)
    max_occluded_fraction: float = 0.4  # of the joints an image's occluders may hide together
    contact_shadow: bool = False


@dataclass
class Occluder:
    """A static object in front of the person: ``alpha`` (H, W) float32 in [0, 1] and ``rgb``
    (H, W, 3) float32 colour where it covers."""

    alpha: np.ndarray
    rgb: np.ndarray


@dataclass
class Effects:
    """Effect parameters of one image or clip (0 / None = off)."""

    background_blur: float = 0.0
    lowres_factor: float = 1.0
    defocus: float = 0.0
    motion_kernel: np.ndarray | None = None
    gains: np.ndarray = field(default_factory=lambda: np.ones(3, dtype=np.float32))
    contrast: float = 1.0
    saturation: float = 1.0
    gamma: float = 1.0
    noise_sigma: float = 0.0
    jpeg_quality: int = 0
    occluders: list[Occluder] = field(default_factory=list)


def motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """(k, k) float32 line kernel of ``length`` px at ``angle_deg`` (camera shake / fast motion)."""
    k = int(np.ceil(length)) | 1
    ker = np.zeros((k, k), dtype=np.float32)
    c = (k - 1) / 2
    dx, dy = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    for t in np.linspace(-length / 2, length / 2, 4 * k):
        ker[int(round(c + t * dy)), int(round(c + t * dx))] = 1.0
    return ker / ker.sum()


def make_occluder(rng: np.random.Generator, size: int, near: np.ndarray, texture: np.ndarray | None) -> Occluder:
    """A random polygon, box or disc near the 2D point ``near`` (2,), 15-40% of the crop side
    across, filled with a patch of ``texture`` (uint8 photo) or a shaded flat colour."""
    cx, cy = near + rng.normal(0, size * 0.08, 2)
    r = rng.uniform(0.08, 0.2) * size
    mask = np.zeros((size, size), dtype=np.uint8)
    kind = rng.integers(3)
    if kind == 0:  # irregular polygon (a bush, a bag, a chair back)
        n = int(rng.integers(5, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = r * rng.uniform(0.6, 1.0, n)
        pts = np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    elif kind == 1:
        if rng.random() < 0.5:  # a post or tree trunk, from the top or part-way down to the bottom
            half = 0.5 * r * rng.uniform(0.3, 0.8)
            x0, x1, y0, y1 = cx - half, cx + half, (0.0 if rng.random() < 0.5 else cy - r), float(size)
        else:  # a low wall, table or railing covering the lower body
            y0, y1 = cy - 0.5 * r * rng.uniform(0.4, 1.0), float(size)
            x0, x1 = (0.0, float(size)) if rng.random() < 0.5 else (cx - r, cx + r)
        cv2.rectangle(mask, (int(x0), int(y0)), (int(x1), int(y1)), 255, -1)
    else:
        cv2.ellipse(
            mask,
            (int(cx), int(cy)),
            (int(r), int(r * rng.uniform(0.5, 1.0))),
            float(rng.uniform(0, 180)),
            0,
            360,
            255,
            -1,
            cv2.LINE_AA,
        )
    alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 0.6)
    if texture is not None and rng.random() < 0.8:
        th, tw = texture.shape[:2]
        win = int(rng.uniform(0.15, 0.5) * min(th, tw))
        x, y = int(rng.integers(0, tw - win + 1)), int(rng.integers(0, th - win + 1))
        rgb = cv2.resize(texture[y : y + win, x : x + win], (size, size), interpolation=cv2.INTER_LINEAR)
        rgb = rgb.astype(np.float32) / 255.0 * rng.uniform(0.6, 1.0)
    else:
        col = rng.uniform(0.05, 0.9, 3).astype(np.float32)
        ramp = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0), size, dtype=np.float32)
        rgb = col[None, None, :] * (ramp[:, None, None] if rng.random() < 0.5 else ramp[None, :, None])
        rgb = np.broadcast_to(rgb, (size, size, 3)).astype(np.float32)
    return Occluder(alpha, rgb)


def sample_effects(
    ranges: EffectRanges,
    rng: np.random.Generator,
    size: int,
    lowres_factor: float = 1.0,
    occluder_near: np.ndarray | None = None,
    texture: np.ndarray | None = None,
) -> Effects:
    """Draw the effects of one image or clip. ``occluder_near`` (N, 2) candidate 2D points
    (e.g. projected joints) to place occluders over; ``texture`` uint8 image to fill them with."""
    e = Effects()
    if rng.random() < ranges.background_blur_prob:
        e.background_blur = float(rng.uniform(*ranges.background_blur_sigma))
    if ranges.lowres:
        e.lowres_factor = float(np.clip(lowres_factor, 0.5, 1.0))
    if rng.random() < ranges.defocus_prob:
        e.defocus = float(rng.uniform(*ranges.defocus_sigma))
    if rng.random() < ranges.motion_blur_prob:
        e.motion_kernel = motion_kernel(float(rng.uniform(*ranges.motion_blur_length)), float(rng.uniform(0, 180)))
    if rng.random() < ranges.grade_prob:
        # white balance (warm/cool), contrast, saturation and tone curve of a consumer camera
        temp = rng.normal(0.0, 0.06)
        e.gains = np.array([1 + temp, 1.0, 1 - temp], dtype=np.float32) * rng.uniform(0.85, 1.15)
        e.contrast = float(rng.uniform(0.8, 1.2))
        e.saturation = float(rng.uniform(0.6, 1.25))
        e.gamma = float(rng.uniform(0.85, 1.15))
    if rng.random() < ranges.noise_prob:
        e.noise_sigma = float(rng.uniform(*ranges.noise_sigma))
    if rng.random() < ranges.jpeg_prob:
        e.jpeg_quality = int(rng.integers(ranges.jpeg_quality[0], ranges.jpeg_quality[1] + 1))
    if occluder_near is not None and len(occluder_near) and rng.random() < ranges.occluder_prob:
        pts = np.clip(np.round(np.asarray(occluder_near)).astype(np.int64), 0, size - 1)
        covered = np.zeros(len(pts), dtype=bool)
        for _ in range(int(rng.integers(ranges.occluders[0], ranges.occluders[1] + 1))):
            # partial occlusion only: redraw an occluder that would hide too many of the points
            for _attempt in range(4):
                near = np.asarray(occluder_near[int(rng.integers(len(occluder_near)))], dtype=np.float64)
                occ = make_occluder(rng, size, near, texture)
                hides = covered | (occ.alpha[pts[:, 1], pts[:, 0]] > 0.5)
                if hides.mean() <= ranges.max_occluded_fraction:
                    e.occluders.append(occ)
                    covered = hides
                    break
    return e


def occluder_alpha(effects: Effects, size: int) -> np.ndarray:
    """(H, W) float32 combined coverage of the occluders (0 where none)."""
    a = np.zeros((size, size), dtype=np.float32)
    for occ in effects.occluders:
        a = np.maximum(a, occ.alpha)
    return a


@njit(cache=True, nogil=True, fastmath=True)
def _grade(img, gains, saturation, contrast, gamma):  # pragma: no cover - jitted
    """In place on (H, W, 3) float32: white balance, saturation about grey, contrast about 0.5, gamma."""
    h, w = img.shape[:2]
    n = 256  # the tone curve as a table: a pow per pixel would cost more than everything else here
    lut = np.empty(n + 2, dtype=np.float32)
    for k in range(n + 1):
        lut[k] = (k / n) ** gamma
    lut[n + 1] = 1.0
    for i in range(h):
        for j in range(w):
            r = img[i, j, 0] * gains[0]
            g = img[i, j, 1] * gains[1]
            b = img[i, j, 2] * gains[2]
            grey = 0.299 * r + 0.587 * g + 0.114 * b
            for c, v in ((0, r), (1, g), (2, b)):
                x = 0.5 + contrast * (grey + saturation * (v - grey) - 0.5)
                x = min(max(x, 0.0), 1.0) * n
                k = int(x)
                img[i, j, c] = lut[k] + (x - k) * (lut[k + 1] - lut[k])


def apply_effects(img: np.ndarray, effects: Effects, rng: np.random.Generator) -> np.ndarray:
    """Occluders, low resolution, blur, colour response, noise and JPEG on a composited frame.

    ``img`` (H, W, 3) float32 in [0, 1] -> (H, W, 3) uint8.
    """
    h, w = img.shape[:2]
    for occ in effects.occluders:
        a = occ.alpha[..., None]
        img = img * (1 - a) + occ.rgb * a
    if effects.lowres_factor < 0.95:
        sw, sh = max(int(round(w * effects.lowres_factor)), 8), max(int(round(h * effects.lowres_factor)), 8)
        img = cv2.resize(cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA), (w, h),
                         interpolation=cv2.INTER_LINEAR)  # fmt: skip
    if effects.defocus > 0:
        img = cv2.GaussianBlur(img, (0, 0), effects.defocus)
    if effects.motion_kernel is not None:
        img = cv2.filter2D(img, -1, effects.motion_kernel, borderType=cv2.BORDER_REFLECT_101)
    if effects.contrast != 1.0 or effects.saturation != 1.0 or effects.gamma != 1.0 or np.any(effects.gains != 1):
        img = np.ascontiguousarray(img, dtype=np.float32)
        _grade(img, np.asarray(effects.gains, dtype=np.float32), np.float32(effects.saturation),
               np.float32(effects.contrast), np.float32(effects.gamma))  # fmt: skip
    if effects.noise_sigma > 0:
        # sensor noise after demosaicing: full-resolution luminance grain plus blotchier chroma noise
        # at half resolution, growing with brightness (shot noise) over a read-noise floor
        luma = rng.standard_normal((h, w, 1), dtype=np.float32)
        chroma = rng.standard_normal(((h + 1) // 2, (w + 1) // 2, 3), dtype=np.float32)
        chroma = cv2.resize(chroma, (w, h), interpolation=cv2.INTER_LINEAR)
        sig = effects.noise_sigma * (0.5 + 0.5 * np.sqrt(np.clip(img, 0.0, 1.0)))
        img = img + sig * (0.8 * luma + 0.6 * chroma)
    out = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if effects.jpeg_quality > 0:
        # cv2 codes BGR: convert so the chroma subsampling acts on the right channels
        ok, buf = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, effects.jpeg_quality])
        if ok:
            out = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return out
