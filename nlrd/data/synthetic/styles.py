"""Rendering styles: the labelled *source* domain and the held-out *target* domain.

A :class:`Style` bundles every choice that defines a domain: camera ranges, background kind,
clothing and skin palettes, lighting and camera effects, body model. Two are registered:

- ``source``: plain, clearly synthetic renders: procedural backgrounds (flat colours, gradients,
  smooth noise, random shapes), solid saturated clothing colours, a narrower range of skin tones,
  one white key light plus ambient, hard (aliased) silhouettes, no camera effects.
- ``target``: people in real places: perspective crops of real HDR panoramas lit by the panorama's
  own key light and ambient tint (or crops of real photos), everyday clothing with stripes,
  checks, plaid and noise patterns, the full range of skin tones, caps, extra coloured lights, a
  contact shadow, wider distances and a lower full-frame focal range (small far people lose
  resolution), depth-of-field background blur, defocus, motion blur, colour response, sensor noise,
  JPEG compression and random partial occluders.

Two more, ``source_anny`` and ``target_anny``, are the same domains with Anny body meshes instead of
capsules, over disjoint halves of the real background bank (``source_anny`` puts the plain source
look over real photos).

Use :func:`get_style` with a name, or build a ``Style`` (e.g. ``dataclasses.replace(get_style(
"target"), ...)``) and pass it wherever a style is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from nlrd.data.synthetic.appearance import SKIN_TONES
from nlrd.data.synthetic.camera import CameraRanges
from nlrd.data.synthetic.effects import EffectRanges


@dataclass(frozen=True)
class Style:
    """Everything that defines a rendering domain (see the module docstring)."""

    name: str
    camera: CameraRanges = field(default_factory=CameraRanges)
    background: Literal["procedural", "photo"] = "procedural"
    panorama_prob: float = 0.65  # photo backgrounds: chance of a panorama rather than a flat photo
    supersample: int = 1
    skin_tones: tuple[int, int] = (0, len(SKIN_TONES))
    realistic_clothes: bool = False
    pattern_prob: float = 0.0
    hat_prob: float = 0.0
    height_range: tuple[float, float] = (1.0, 1.0)  # scales the pose and therefore the label
    lighting: Literal["key", "scene"] = "key"
    extra_lights: tuple[int, int] = (0, 0)
    coloured_light_prob: float = 0.0
    effects: EffectRanges = field(default_factory=EffectRanges)
    # body model: tapered capsules (nlrd.data.synthetic.body) or Anny meshes (nlrd.data.synthetic.anny_body)
    body: Literal["capsule", "anny"] = "capsule"
    # photo backgrounds: the whole bank, or one of its two disjoint halves (split by file name; see
    # nlrd.data.synthetic.backgrounds.BackgroundBank.pool), so a source style over real photos never
    # shares a background with the target style
    background_pool: Literal["all", "source", "target"] = "all"


SOURCE = Style(
    name="source",
    camera=CameraRanges(distance=(3500.0, 6500.0), focal_full=(1000.0, 1500.0)),
    background="procedural",
    supersample=1,
    skin_tones=(1, 6),
    realistic_clothes=False,
    pattern_prob=0.0,
    lighting="key",
)

TARGET = Style(
    name="target",
    camera=CameraRanges(distance=(2500.0, 9000.0), focal_full=(250.0, 1200.0), azimuth_rate=(0.0, 25.0)),
    background="photo",
    supersample=2,
    skin_tones=(0, len(SKIN_TONES)),
    realistic_clothes=True,
    pattern_prob=0.55,
    hat_prob=0.12,
    lighting="scene",
    extra_lights=(0, 2),
    coloured_light_prob=0.5,
    effects=EffectRanges(
        background_blur_prob=0.5,
        defocus_prob=0.35,
        motion_blur_prob=0.25,
        lowres=True,
        grade_prob=0.8,
        noise_prob=0.85,
        jpeg_prob=0.8,
        occluder_prob=0.3,
        contact_shadow=True,
    ),
)

# Trial styles with Anny bodies (see nlrd.data.synthetic.anny_body): the source settings over the
# source half of the real background bank (plain key lighting, no effects), and the target settings
# over the other half.
SOURCE_ANNY = replace(SOURCE, name="source_anny", body="anny", background="photo", background_pool="source",
                      lighting="key")  # fmt: skip
TARGET_ANNY = replace(TARGET, name="target_anny", body="anny", background_pool="target")

STYLES: dict[str, Style] = {s.name: s for s in (SOURCE, TARGET, SOURCE_ANNY, TARGET_ANNY)}


def get_style(style: str | Style) -> Style:
    """A registered style by name (or the given Style itself); ValueError for unknown names."""
    if isinstance(style, Style):
        return style
    if style not in STYLES:
        raise ValueError(f"unknown rendering style {style!r}; known: {sorted(STYLES)}")
    return STYLES[style]
