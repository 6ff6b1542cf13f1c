"""What a synthetic person wears: materials (skin, hair, clothes, shoes) and which part uses which.

An :class:`Appearance` is a small material table (rows of :data:`nlrd.data.synthetic.raster.MAT_COLS`
floats: two albedos, a procedural pattern and its scale) plus a map from body :class:`Part` to
material row. Left and right parts always share materials, so a mirrored person is just as
plausible as the original (the flip relation relies on that). Albedos are display (sRGB) values in
[0, 1]; the renderer multiplies them by the light.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from nlrd.data.synthetic.body import NUM_PARTS, Part
from nlrd.data.synthetic.raster import (
    MAT_COLS,
    PATTERN_CHECKS,
    PATTERN_NOISE,
    PATTERN_PLAID,
    PATTERN_SOLID,
    PATTERN_STRIPES,
)


class Material(IntEnum):
    SKIN = 0
    HAIR = 1
    TOP = 2
    BOTTOM = 3
    SHOES = 4
    ACCENT = 5  # a hat or cap


NUM_MATERIALS = len(Material)

# Skin albedos from light to dark (sRGB), spanning the Fitzpatrick range.
SKIN_TONES: tuple[tuple[float, float, float], ...] = (
    (0.96, 0.80, 0.70), (0.93, 0.74, 0.62), (0.87, 0.66, 0.53), (0.80, 0.58, 0.44),
    (0.70, 0.49, 0.35), (0.58, 0.40, 0.28), (0.45, 0.30, 0.21), (0.34, 0.23, 0.16),
)  # fmt: skip
HAIR_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.06, 0.05, 0.05), (0.16, 0.10, 0.07), (0.30, 0.19, 0.11), (0.55, 0.40, 0.24),
    (0.80, 0.66, 0.42), (0.55, 0.25, 0.12), (0.62, 0.62, 0.60),
)  # fmt: skip
# Everyday garment colours: greys, navy, denim, khaki, olive, maroon, white, black, ...
GARMENT_COLOURS: tuple[tuple[float, float, float], ...] = (
    (0.08, 0.08, 0.09), (0.85, 0.85, 0.83), (0.45, 0.46, 0.48), (0.16, 0.20, 0.34), (0.25, 0.35, 0.52),
    (0.62, 0.55, 0.40), (0.33, 0.36, 0.22), (0.45, 0.14, 0.16), (0.70, 0.20, 0.18), (0.20, 0.40, 0.30),
    (0.90, 0.78, 0.35), (0.55, 0.60, 0.70), (0.40, 0.28, 0.20), (0.75, 0.55, 0.60), (0.30, 0.30, 0.32),
)  # fmt: skip


@dataclass
class Appearance:
    """``materials`` (NUM_MATERIALS, MAT_COLS) float32; ``part_material`` (NUM_PARTS,) int32."""

    materials: np.ndarray
    part_material: np.ndarray

    def face_material(self, face_part: np.ndarray) -> np.ndarray:
        """(F,) int32 material row of each face from its (F,) part id."""
        return self.part_material[face_part]


def _material(
    a: tuple[float, ...] | np.ndarray, b=None, pattern: int = PATTERN_SOLID, freq: float = 0.0, angle: float = 0.0
) -> np.ndarray:
    row = np.zeros(MAT_COLS, dtype=np.float32)
    row[0:3] = a
    row[3:6] = a if b is None else b
    row[6], row[7], row[8] = pattern, freq, angle
    return row


def _jitter(rgb, rng: np.random.Generator, amount: float) -> np.ndarray:
    return np.clip(np.asarray(rgb) * rng.uniform(1 - amount, 1 + amount, 3), 0.0, 1.0)


def _bright_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, arbitrary hue: the plain look of the source domain."""
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.35, 1.0), rng.uniform(0.35, 1.0)))


def _garment_colour(rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.75:
        return _jitter(GARMENT_COLOURS[rng.integers(len(GARMENT_COLOURS))], rng, 0.12)
    return np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.7), rng.uniform(0.2, 0.9)))


def _garment(rng: np.random.Generator, realistic: bool, pattern_prob: float) -> np.ndarray:
    a = _garment_colour(rng) if realistic else _bright_colour(rng)
    if rng.random() >= pattern_prob:
        return _material(a)
    kind = int(rng.choice([PATTERN_STRIPES, PATTERN_CHECKS, PATTERN_NOISE, PATTERN_PLAID], p=[0.35, 0.2, 0.25, 0.2]))
    if kind == PATTERN_NOISE:
        # heather / camouflage / washed denim: B is a lighter or darker shade of A, or a second colour
        b = np.clip(a * rng.uniform(0.5, 1.5), 0, 1) if rng.random() < 0.6 else _garment_colour(rng)
        freq = rng.uniform(1 / 120, 1 / 40)
    else:
        b = _garment_colour(rng)
        freq = rng.uniform(1 / 90, 1 / 25)  # one period every 25-90 mm
    angle = 0.0 if kind == PATTERN_STRIPES and rng.random() < 0.7 else float(rng.uniform(0, np.pi))
    return _material(a, b, kind, float(freq), angle)


def sample_appearance(
    rng: np.random.Generator,
    skin_tones: tuple[int, int] = (0, len(SKIN_TONES)),
    realistic_clothes: bool = True,
    pattern_prob: float = 0.5,
    hat_prob: float = 0.0,
) -> Appearance:
    """Draw one person's look.

    Args:
        skin_tones: half-open index range into :data:`SKIN_TONES` to draw from.
        realistic_clothes: everyday garment colours (else arbitrary saturated hues).
        pattern_prob: chance that the top and (independently) the bottom carry a pattern.
        hat_prob: chance of a cap covering the hair.
    """
    mats = np.zeros((NUM_MATERIALS, MAT_COLS), dtype=np.float32)
    tone = np.asarray(SKIN_TONES[int(rng.integers(*skin_tones))])
    mats[Material.SKIN] = _material(_jitter(tone, rng, 0.05))
    mats[Material.HAIR] = _material(_jitter(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))], rng, 0.1))
    mats[Material.TOP] = _garment(rng, realistic_clothes, pattern_prob)
    mats[Material.BOTTOM] = _garment(rng, realistic_clothes, pattern_prob * 0.5)
    shoe = _garment_colour(rng) * rng.uniform(0.3, 1.0) if realistic_clothes else _bright_colour(rng)
    mats[Material.SHOES] = _material(shoe)
    mats[Material.ACCENT] = _material(_garment_colour(rng) if realistic_clothes else _bright_colour(rng))

    pm = np.zeros(NUM_PARTS, dtype=np.int32)
    sleeves = rng.choice(["long", "short", "none"], p=[0.45, 0.4, 0.15])
    legs = rng.choice(["long", "knee", "short"], p=[0.6, 0.15, 0.25])
    hair = rng.choice(["full", "balding", "bald"], p=[0.88, 0.06, 0.06])
    pm[Part.TORSO_UP] = Material.TOP
    pm[Part.TORSO_LOW] = Material.BOTTOM
    pm[Part.NECK] = Material.SKIN
    pm[Part.CLAVICLE] = Material.SKIN if sleeves == "none" and rng.random() < 0.5 else Material.TOP
    pm[Part.UPPER_ARM_PROX] = Material.SKIN if sleeves == "none" else Material.TOP
    pm[Part.UPPER_ARM_DIST] = Material.TOP if sleeves == "long" else Material.SKIN
    pm[Part.FOREARM] = Material.TOP if sleeves == "long" else Material.SKIN
    pm[Part.HAND] = Material.SKIN
    pm[Part.THIGH_PROX] = Material.BOTTOM
    pm[Part.THIGH_DIST] = Material.SKIN if legs == "short" else Material.BOTTOM
    pm[Part.SHIN] = Material.BOTTOM if legs == "long" else Material.SKIN
    pm[Part.FOOT] = Material.SHOES
    pm[Part.FACE] = Material.SKIN
    pm[Part.HAIR_TOP] = Material.HAIR if hair == "full" else Material.SKIN
    pm[Part.HAIR_BACK] = Material.SKIN if hair == "bald" else Material.HAIR
    if hat_prob > 0 and rng.random() < hat_prob:
        pm[Part.HAIR_TOP] = Material.ACCENT
    return Appearance(mats, pm)
