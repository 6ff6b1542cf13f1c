"""Render labelled images and clips of synthetic people: :func:`render_sample`, :func:`render_clip`.

One sample is: a person (body shape + appearance), a camera around the person, a scene (background
view, lights, camera effects), then per frame: pose the body, move it into the camera frame,
rasterise, composite over the background, apply effects, and read off the labels.

Labels (see :mod:`nlrd.data.synthetic.camera` for the frames): ``joints3d`` are the root-relative
joints in the camera frame (mm); the root sits at ``(0, 0, distance)``, so
``project(joints3d + (0, 0, distance), K) == joints2d`` and the crop's principal point is its
centre. ``visible`` says whether a joint's own body part is what the camera sees at its pixel
(z-buffer test with a per-joint depth tolerance), it lies inside the crop and no occluder covers it.
"""

from __future__ import annotations

import colorsys
import os
from dataclasses import dataclass, replace

import cv2
import numpy as np

from nlrd.data.synthetic import anny_body
from nlrd.data.synthetic.anny_body import AnnyFreeParams, AnnyShape
from nlrd.data.synthetic.appearance import Appearance, sample_appearance
from nlrd.data.synthetic.backgrounds import (
    BackgroundBank,
    BackgroundView,
    PanoramaView,
    photo_view,
    procedural_view,
    resolve_bank,
)
from nlrd.data.synthetic.body import BodyShape, body_template, build_body, joint_depth_tolerance, sample_body_shape
from nlrd.data.synthetic.camera import Camera, project, sample_camera, sample_camera_path
from nlrd.data.synthetic.effects import Effects, apply_effects, occluder_alpha, sample_effects
from nlrd.data.synthetic.raster import Lights, rasterize
from nlrd.data.synthetic.styles import Style, get_style
from nlrd.data.synthetic.threads import opencv_single_threaded

BackgroundsArg = BackgroundBank | str | os.PathLike[str] | list | None


@dataclass
class RenderedSample:
    """One rendered image and its labels.

    ``image`` (H, W, 3) uint8 RGB; ``joints3d`` (17, 3) float32 mm, root-relative, camera frame;
    ``joints2d`` (17, 2) float32 crop pixels (pixel centres at integers); ``visible`` (17,) bool;
    ``box`` (4,) float32 x0, y0, x1, y1 crop pixels around the body's silhouette (pixel edges);
    ``K`` (3, 3) float32 crop intrinsics; ``mask`` (H, W) bool body silhouette (before occluders);
    ``distance`` float mm, the root's depth (camera-frame root = (0, 0, distance)).
    """

    image: np.ndarray
    joints3d: np.ndarray
    joints2d: np.ndarray
    visible: np.ndarray
    box: np.ndarray
    K: np.ndarray
    mask: np.ndarray
    distance: float


@dataclass
class RenderedClip:
    """A rendered clip: the fields of :class:`RenderedSample` with a leading time axis T
    (``image`` (T, H, W, 3), ..., ``K`` (T, 3, 3), ``distance`` (T,))."""

    image: np.ndarray
    joints3d: np.ndarray
    joints2d: np.ndarray
    visible: np.ndarray
    box: np.ndarray
    K: np.ndarray
    mask: np.ndarray
    distance: np.ndarray


@dataclass
class Person:
    """Who is rendered: body shape and appearance (with its per-face material rows).

    ``shape`` is the capsule body's shape; its ``height_scale`` scales the pose (and the label) for
    either body model. Anny bodies (``style.body == "anny"``) also carry their phenotype
    ``anny_shape`` and the pose's free parameters ``anny_free`` (palm roll, head yaw, ankle flexion;
    fixed over a clip); ``face_material`` then has one row per face of the Anny mesh.
    """

    shape: BodyShape
    appearance: Appearance
    face_material: np.ndarray  # (F,) int32
    anny_shape: AnnyShape | None = None
    anny_free: AnnyFreeParams | None = None


@dataclass
class Scene:
    """Where and how: background view, lights in the world frame, shadow strength, effects."""

    view: BackgroundView
    light_dirs_world: np.ndarray  # (L, 3) towards the lights
    light_colors: np.ndarray  # (L, 3)
    ambient_sky: np.ndarray  # (3,) ambient light on surfaces facing up
    ambient_ground: np.ndarray  # (3,) ... and facing down
    shadow: float  # darkening of the contact shadow, 0 = none
    effects: Effects


def sample_person(style: Style, rng: np.random.Generator) -> Person:
    """Draw a body shape and an appearance for ``style`` (capsule or Anny body, ``style.body``)."""
    if style.body == "anny":
        shape = BodyShape(height_scale=float(rng.uniform(*style.height_range)))
        anny_shape = anny_body.sample_anny_shape(rng)
        app = sample_appearance(rng, style.skin_tones, style.realistic_clothes, style.pattern_prob, style.hat_prob)
        free = anny_body.sample_anny_free_params(rng)
        return Person(shape, app, app.face_material(anny_body.anny_template().face_part), anny_shape, free)
    if style.body != "capsule":
        raise ValueError(f"unknown body model {style.body!r}; expected 'capsule' or 'anny'")
    shape = sample_body_shape(rng, style.height_range)
    app = sample_appearance(rng, style.skin_tones, style.realistic_clothes, style.pattern_prob, style.hat_prob)
    return Person(shape, app, app.face_material(body_template().face_part))


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _front_key_light(rng: np.random.Generator) -> np.ndarray:
    """A camera-frame direction towards a light above and roughly in front of the subject."""
    return _unit(np.array([rng.uniform(-0.9, 0.9), rng.uniform(-1.0, -0.15), rng.uniform(-1.0, -0.1)]))


def _hemisphere_ambient(sky_rgb: np.ndarray, ground_rgb: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Sky and ground ambient colours whose mean luminance is ``level``, keeping their tints and
    (within a factor of 3) their relative brightness."""
    lum = np.array([0.2126, 0.7152, 0.0722])
    ls, lg = max(float(sky_rgb @ lum), 1e-3), max(float(ground_rgb @ lum), 1e-3)
    ratio = float(np.clip(ls / lg, 1 / 3, 3))
    s_level, g_level = 2 * level * ratio / (1 + ratio), 2 * level / (1 + ratio)
    return np.asarray(sky_rgb) / ls * s_level, np.asarray(ground_rgb) / lg * g_level


def _sample_scene(
    style: Style, bank: BackgroundBank | None, rng: np.random.Generator, cam: Camera, joints2d: np.ndarray, pan_room: float
) -> Scene:
    """Background, lights and effects of one image or clip, given its first camera."""
    size = cam.size
    R0 = cam.R
    key_frac = 0.5
    texture = None
    if style.background == "procedural" or bank is None:
        view: BackgroundView = procedural_view(rng, R0, cam.K, size, pan_room)
    else:
        use_pano = bool(bank.panoramas) and (not bank.photos or rng.random() < style.panorama_prob)
        if use_pano:
            pano = bank.panoramas[int(rng.integers(len(bank.panoramas)))]
            view = PanoramaView(pano, float(rng.uniform(0, 360)))
        else:
            view = photo_view(bank.photos[int(rng.integers(len(bank.photos)))], rng, R0, cam.K, size)
        pool = bank.photos if bank.photos else tuple(p.image for p in bank.panoramas)
        texture = pool[int(rng.integers(len(pool)))]

    if style.lighting == "scene" and isinstance(view, PanoramaView):
        # the panorama lights the person: its brightest region is the key light, its upper and
        # lower hemispheres the sky and ground ambient
        pano = view.pano
        key_frac = float(np.clip(pano.key_fraction, 0.0, 0.8))
        bright = float(np.clip(pano.brightness / 0.4, 0.65, 1.25))
        dirs = [view.pano_to_world(pano.key_direction)]
        cols = [pano.key_color * (0.3 + 0.9 * key_frac) * bright]
        sky, ground = _hemisphere_ambient(pano.sky_color, pano.ground_color, (0.72 - 0.3 * key_frac) * bright)
    elif style.lighting == "scene":
        # a flat photo: a key light from the front, ambient tinted by the top and bottom of the view
        bg0 = view.render(R0, cam.K, size).astype(np.float32) / 255.0
        bright = float(np.clip(bg0.mean() / 0.4, 0.65, 1.25))
        temp = rng.normal(0, 0.08)
        dirs = [R0.T @ _front_key_light(rng)]
        cols = [np.array([1 + temp, 1.0, 1 - temp]) * rng.uniform(0.45, 0.8) * bright]
        top, bottom = bg0[: size // 2].mean(axis=(0, 1)), bg0[size // 2 :].mean(axis=(0, 1))
        sky, ground = _hemisphere_ambient(0.5 * top + 0.25, 0.5 * bottom + 0.25, rng.uniform(0.35, 0.55) * bright)
    else:
        dirs = [R0.T @ _front_key_light(rng)]
        cols = [np.full(3, rng.uniform(0.55, 0.85))]
        sky = ground = np.full(3, rng.uniform(0.3, 0.5))
    for _ in range(int(rng.integers(style.extra_lights[0], style.extra_lights[1] + 1))):
        d = _unit(rng.normal(size=3))
        if rng.random() < style.coloured_light_prob:
            col = np.array(colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.3, 0.8), 1.0))
        else:
            col = np.ones(3)
        dirs.append(d)
        cols.append(col * rng.uniform(0.12, 0.35))
    effects = sample_effects(style.effects, rng, size, lowres_factor=cam.focal_full / cam.K[0, 0],
                             occluder_near=joints2d, texture=texture)  # fmt: skip
    shadow = float(rng.uniform(0.25, 0.5) * (0.5 + key_frac)) if style.effects.contact_shadow else 0.0
    return Scene(view, np.asarray(dirs, dtype=np.float64), np.asarray(cols, dtype=np.float64),
                 np.asarray(sky, dtype=np.float64), np.asarray(ground, dtype=np.float64), shadow, effects)  # fmt: skip


def _contact_shadow(joints_world: np.ndarray, cam: Camera, view: BackgroundView, size: int) -> np.ndarray | None:
    """(H, W) float32 soft blob under the feet on the ground plane, or None when it would not
    land on the floor of the background (only panoramas tell where their floor is)."""
    if not isinstance(view, PanoramaView):
        return None
    ground = float(max(joints_world[3, 1], joints_world[6, 1])) + 70.0  # ankles sit ~70 mm above the sole
    cx, cz = 0.5 * (joints_world[3, [0, 2]] + joints_world[6, [0, 2]])
    t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = np.stack([cx + 380.0 * np.cos(t), np.full_like(t, ground), cz + 300.0 * np.sin(t)], axis=1)
    pc = cam.to_camera(ring) + cam.translation
    if np.any(pc[:, 2] < 100.0):
        return None
    uv = project(pc, cam.K)
    if not view.below_horizon(cam.R, cam.K, uv.mean(axis=0)):
        return None
    mask = np.zeros((size, size), dtype=np.float32)
    cv2.fillPoly(mask, [np.round(uv * 16).astype(np.int32)], 1.0, cv2.LINE_AA, shift=4)
    return cv2.GaussianBlur(mask, (0, 0), max(size / 40.0, 1.0))


def render_frame(
    joints_world: np.ndarray, person: Person, cam: Camera, scene: Scene, style: Style, rng: np.random.Generator
) -> RenderedSample:
    """Render one frame of a (17, 3) root-relative world pose (mm) for a fixed person/camera/scene."""
    size = cam.size
    joints_world = np.asarray(joints_world, dtype=np.float64) * person.shape.height_scale
    if style.body == "anny":
        if person.anny_shape is None:
            raise ValueError("render_frame: an Anny style needs a person sampled for it (person.anny_shape is None)")
        body_cam = anny_body.build_anny_body(joints_world, person.anny_shape, person.anny_free, cam.R, cam.translation)
        tolerance = anny_body.anny_joint_depth_tolerance(person.anny_shape, joints_world)
    else:
        body_cam = build_body(joints_world, replace(person.shape, height_scale=1.0), cam.R, cam.translation)
        tolerance = joint_depth_tolerance(person.shape)
    lights = Lights(
        scene.light_dirs_world @ cam.R.T,
        scene.light_colors,
        scene.ambient_sky,
        scene.ambient_ground,
        up=cam.R @ np.array([0.0, -1.0, 0.0]),
    )
    ras = rasterize(body_cam.vertices, body_cam.normals, body_cam.uv, body_cam.faces, person.face_material,
                    person.appearance.materials, lights, cam.K, (size, size), style.supersample)  # fmt: skip

    bg = scene.view.render(cam.R, cam.K, size).astype(np.float32) * (1.0 / 255.0)
    if scene.effects.background_blur > 0:
        bg = cv2.GaussianBlur(bg, (0, 0), scene.effects.background_blur)
    if scene.shadow > 0:
        sh = _contact_shadow(joints_world, cam, scene.view, size)
        if sh is not None:
            bg = bg * (1.0 - scene.shadow * sh)[..., None]
    img = bg * (1.0 - ras.alpha)[..., None] + np.minimum(ras.color, 1.0)
    image = apply_effects(img, scene.effects, rng)

    joints3d = cam.to_camera(joints_world)
    z = joints3d[:, 2] + cam.distance
    joints2d = cam.project(joints3d)
    pix = np.round(joints2d).astype(np.int64)
    inside = np.all((pix >= 0) & (pix < size), axis=1)
    pc = np.clip(pix, 0, size - 1)
    surface = ras.depth[pc[:, 1], pc[:, 0]]
    visible = inside & (surface >= z - tolerance)
    if scene.effects.occluders:
        visible &= occluder_alpha(scene.effects, size)[pc[:, 1], pc[:, 0]] < 0.5
    mask = ras.alpha > 0.5
    return RenderedSample(
        image=image,
        joints3d=joints3d.astype(np.float32),
        joints2d=joints2d.astype(np.float32),
        visible=visible,
        box=_box(mask, joints2d),
        K=cam.K.astype(np.float32),
        mask=mask,
        distance=float(cam.distance),
    )


def _box(mask: np.ndarray, joints2d: np.ndarray) -> np.ndarray:
    """(4,) float32 x0, y0, x1, y1 pixel-edge box of the silhouette (of the joints if empty)."""
    cols = np.flatnonzero(mask.any(axis=0))
    rows = np.flatnonzero(mask.any(axis=1))
    if len(cols) == 0:
        lo, hi = joints2d.min(axis=0), joints2d.max(axis=0)
        return np.array([lo[0], lo[1], hi[0], hi[1]], dtype=np.float32)
    return np.array([cols[0] - 0.5, rows[0] - 0.5, cols[-1] + 0.5, rows[-1] + 0.5], dtype=np.float32)


def _check_poses(poses: np.ndarray, ndim: int, what: str) -> np.ndarray:
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != ndim or p.shape[-2:] != (17, 3):
        raise ValueError(f"{what}: expected shape {'(T, 17, 3)' if ndim == 3 else '(17, 3)'} in mm, got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{what}: the pose contains NaN or inf")
    return p - p[..., :1, :]  # root-relative, whatever the caller's root


def bank_for_style(style: Style, backgrounds: BackgroundsArg) -> BackgroundBank | None:
    """The background bank a style needs (photo styles: its ``background_pool`` of the bank), or None
    (procedural styles)."""
    return resolve_bank(backgrounds).pool(style.background_pool) if style.background == "photo" else None


def render_sample(
    pose: np.ndarray, style: str | Style, rng: np.random.Generator, size: int = 128, backgrounds: BackgroundsArg = None
) -> RenderedSample:
    """Render one labelled image of a (17, 3) root-relative pose in mm (x right, y down = gravity,
    z forward) in a ``style`` ("source", "target" or a :class:`Style`).

    ``backgrounds``: for photo styles, a :class:`BackgroundBank`, a folder (or list of folders) of
    panoramas/photos, or None for ``<data root>/backgrounds``. Deterministic given ``rng``'s state.
    """
    st = get_style(style)
    p = _check_poses(pose, 2, "render_sample")
    bank = bank_for_style(st, backgrounds)
    with opencv_single_threaded():
        person = sample_person(st, rng)
        cam = sample_camera(p * person.shape.height_scale, st.camera, rng, size)
        joints2d = cam.project(cam.to_camera(p * person.shape.height_scale))
        scene = _sample_scene(st, bank, rng, cam, joints2d, pan_room=1.0)
        return render_frame(p, person, cam, scene, st, rng)


def render_clip(
    poses: np.ndarray,
    style: str | Style,
    rng: np.random.Generator,
    size: int = 128,
    backgrounds: BackgroundsArg = None,
    fps: float = 30.0,
) -> RenderedClip:
    """Render a (T, 17, 3) motion (mm) as a clip: the same person, background and lights in every
    frame, a camera that drifts slowly in azimuth and elevation at a fixed distance and zoom."""
    st = get_style(style)
    p = _check_poses(poses, 3, "render_clip")
    bank = bank_for_style(st, backgrounds)
    with opencv_single_threaded():
        person = sample_person(st, rng)
        cams = sample_camera_path(p * person.shape.height_scale, st.camera, rng, size, fps)
        joints2d = cams[0].project(cams[0].to_camera(p[0] * person.shape.height_scale))
        # procedural and photo canvases need room for the pan: the drift's angle times the focal length
        drift = np.degrees(np.arccos(np.clip((np.trace(cams[0].R.T @ cams[-1].R) - 1) / 2, -1, 1)))
        pan_room = 1.0 + 2.0 * cams[0].K[0, 0] * np.tan(np.radians(drift)) / size + 0.05
        scene = _sample_scene(st, bank, rng, cams[0], joints2d, pan_room=pan_room)
        frames = [render_frame(pt, person, c, scene, st, rng) for pt, c in zip(p, cams, strict=True)]
    return RenderedClip(
        image=np.stack([f.image for f in frames]),
        joints3d=np.stack([f.joints3d for f in frames]),
        joints2d=np.stack([f.joints2d for f in frames]),
        visible=np.stack([f.visible for f in frames]),
        box=np.stack([f.box for f in frames]),
        K=np.stack([f.K for f in frames]),
        mask=np.stack([f.mask for f in frames]),
        distance=np.array([f.distance for f in frames], dtype=np.float32),
    )
