"""Animated example: a synthetic person on the left, the 3D pose PosePredictor reads from it on the right.

Usage::

    python demos/animated_example.py --out docs/animated_example.gif
    python demos/animated_example.py --out out/example.gif --frames 24 --seed 3

Everything is generated here, no data folder is needed: a short motion is eased through a few key
poses built with :mod:`nlrd.data.synthetic.demo_poses` (joint angles, forward kinematics), the
project's renderer draws it in the ``source`` style (procedural background) with a camera that
orbits slowly around the person, and ``PosePredictor.from_pretrained()`` predicts the 3D joints of
every rendered frame. The right panel draws the prediction as an orthographic view that turns once
around the person over the clip: left limbs blue, right limbs orange, a ground grid under the feet.
The caption gives the frame's error against the renderer's label (MPJPE, root-relative, mm).

The output is deterministic for a seed (the prediction runs on the CPU by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from PIL import Image

from nlrd.data.synthetic import RenderedClip, demo_poses, get_style, render_clip
from nlrd.metrics import mpjpe
from nlrd.skeleton import H36M_17
from nlrd.transforms import rot_x, rot_y

if TYPE_CHECKING:
    from nlrd.inference import PosePredictor

# Key poses of the motion (joint angles in degrees, see demo_poses.pose_from_angles): everyday
# movements (steps, a punch, a wave); the motion eases from each to the next and back to the first,
# so it loops.
KEY_POSES: tuple[dict[str, float], ...] = (
    {"l_sh_abd": 10, "r_sh_abd": 10, "l_elbow": 15, "r_elbow": 15},
    {"l_hip_flex": 25, "r_hip_flex": -15, "l_knee": 20, "r_knee": 30, "r_sh_flex": 30, "l_sh_flex": -25,
     "l_elbow": 30, "r_elbow": 40, "l_sh_abd": 8, "r_sh_abd": 8},
    {"r_hip_flex": 25, "l_hip_flex": -15, "r_knee": 20, "l_knee": 30, "l_sh_flex": 30, "r_sh_flex": -25,
     "l_elbow": 40, "r_elbow": 30, "l_sh_abd": 8, "r_sh_abd": 8},
    {"r_sh_flex": 90, "r_elbow": 5, "l_sh_flex": 50, "l_elbow": 120, "twist": -25, "l_hip_flex": 20, "l_knee": 25,
     "r_knee": 10},
    {"l_hip_flex": 45, "l_knee": 60, "r_sh_abd": 110, "r_elbow": 100, "r_elbow_axis": 80, "l_sh_flex": 40,
     "l_elbow": 60, "twist": 20, "lean_fwd": 5},
)  # fmt: skip
ANGLE_JITTER_DEG = 5.0  # per-seed variation of the key poses

PANEL = 320  # px, each panel is PANEL x PANEL
CAPTION_H = 28  # px, caption bar under the panels
VIEW_TILT_DEG = 18.0  # the 3D view looks down on the person by this much
VIEW_SCALE = 0.72 * PANEL / 1900.0  # px per mm in the 3D view (a 1.9 m tall span fills 72% of the panel)
SOLE_MM = 70.0  # the ground lies this far below the lower ankle
GRID_STEP_MM, GRID_HALF_MM = 250.0, 1000.0  # ground grid: line spacing and half extent around the root
COLOURS_BGR = {"left": (235, 140, 40), "right": (40, 140, 250), "centre": (215, 215, 215)}  # OpenCV draws BGR
BG_BGR = (38, 30, 26)


def make_motion(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, 17, 3) float32 mm, root-relative world poses (y down), looping through KEY_POSES.

    Each key pose's angles get Gaussian jitter (``ANGLE_JITTER_DEG``); consecutive keys are joined by
    a cosine ease in joint-angle space, and the last segment returns to the first key.
    """
    if n_frames < 2:
        raise ValueError(f"the motion needs at least 2 frames, got {n_frames}")
    names = sorted({k for key in KEY_POSES for k in key})
    keys = [{k: float(key.get(k, 0.0)) + float(rng.normal(0.0, ANGLE_JITTER_DEG)) for k in names} for key in KEY_POSES]
    for key in keys:  # flexion angles stay non-negative
        for k in ("l_knee", "r_knee", "l_elbow", "r_elbow"):
            key[k] = max(key[k], 0.0)
    keys.append(keys[0])
    n_seg = len(keys) - 1
    out = np.empty((n_frames, 17, 3), np.float32)
    for t in range(n_frames):
        u = n_seg * t / n_frames  # position along the loop, in segments
        i = min(int(u), n_seg - 1)
        s = 0.5 - 0.5 * np.cos(np.pi * (u - i))
        out[t] = demo_poses.pose_from_angles({k: (1 - s) * keys[i][k] + s * keys[i + 1][k] for k in names})
    return out


def render_orbit(poses: np.ndarray, seed: int, fps: float, orbit_deg: float, size: int = PANEL) -> RenderedClip:
    """Render (T, 17, 3) mm poses in the source style, the camera orbiting ``orbit_deg`` degrees over the clip.

    The source style is kept (procedural background, its clothes, lights and distances); only its
    camera ranges change: a start at a three-quarter view of the person, a fixed azimuth rate, a slight elevation.
    """
    src = get_style("source")
    rate = orbit_deg * fps / max(len(poses) - 1, 1)  # deg/s
    camera = dataclasses.replace(src.camera, azimuth=(50.0, 80.0), elevation=(4.0, 14.0),
                                 azimuth_rate=(rate, rate), elevation_rate=(0.0, 0.0))  # fmt: skip
    style = dataclasses.replace(src, camera=camera)
    return render_clip(poses, style, np.random.default_rng(seed), size=size, backgrounds=None, fps=fps)


def camera_rotations(world: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations R with ``cam ~ world @ R.T`` (Kabsch), from (T, J, 3) root-relative poses.

    The renderer's label is the world pose seen by its camera (scaled by the person's height), so
    this recovers each frame's world -> camera rotation; scale does not change the best rotation.
    """
    h = np.einsum("tji,tjk->tik", world.astype(np.float64), cam.astype(np.float64))  # (T, 3, 3) = W^T C
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, -1] *= d[:, None]
    return np.transpose(u @ vt, (0, 2, 1))  # world @ (U V^T) ~ cam, so R = (U V^T)^T


def predict(predictor: PosePredictor, clip: RenderedClip) -> np.ndarray:
    """(T, 17, 3) float32 mm predicted root-relative joints in the camera frame of each render.

    The renders are already person-centred crops with the training framing, so the box given to
    ``predict_clip`` is the one whose crop square is exactly the whole render.
    """
    from nlrd.inference import CROP_MARGIN

    size = clip.image.shape[2]
    c, half = (size - 1) / 2.0, size / (2.0 * CROP_MARGIN)
    result = predictor.predict_clip(clip.image, box=(c - half, c - half, c + half, c + half))
    return result.joints3d


def draw_skeleton_view(joints: np.ndarray, spin_deg: float, size: int = PANEL) -> np.ndarray:
    """(size, size, 3) uint8 BGR orthographic view of one (17, 3) mm root-relative world pose (y down).

    The view turns the pose by ``spin_deg`` about the vertical and tilts it by ``VIEW_TILT_DEG``;
    a ground grid lies ``SOLE_MM`` under the lower ankle; bones are drawn far to near.
    """
    img = np.full((size, size, 3), BG_BGR, np.uint8)
    view = rot_x(-VIEW_TILT_DEG) @ rot_y(spin_deg)
    ground = float(max(joints[3, 1], joints[6, 1])) + SOLE_MM
    centre = np.array([size / 2.0, size / 2.0 + 0.03 * size])  # the root; the body spans ~-800 .. +950 mm
    shift = 16.0  # cv2 sub-pixel drawing: 4 fractional bits

    def to_px(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(p, np.float64) @ view.T
        xy = centre + VIEW_SCALE * q[..., :2]
        return np.round(xy * shift).astype(np.int64), q[..., 2]

    g = GRID_HALF_MM
    for v in np.arange(-g, g + 1e-6, GRID_STEP_MM):
        for a, b in (((v, ground, -g), (v, ground, g)), ((-g, ground, v), (g, ground, v))):
            (pa, pb), _ = to_px(np.array([a, b]))
            col = (95, 95, 95) if abs(v) < 1e-6 else (70, 62, 58)
            cv2.line(img, tuple(pa), tuple(pb), col, 1, cv2.LINE_AA, 4)
    pts, depth = to_px(joints)
    edges = sorted(H36M_17.edges, key=lambda e: -(depth[e[0]] + depth[e[1]]))  # far first
    for parent, child in edges:
        cv2.line(img, tuple(pts[parent]), tuple(pts[child]), COLOURS_BGR[H36M_17.side(child)], 4, cv2.LINE_AA, 4)
    for j in np.argsort(-depth):
        cv2.circle(img, tuple(pts[j]), int(4 * shift), COLOURS_BGR[H36M_17.side(int(j))], -1, cv2.LINE_AA, 4)
    return img


def compose_frame(render_rgb: np.ndarray, view_bgr: np.ndarray, caption: str) -> np.ndarray:
    """(PANEL + CAPTION_H, 2 * PANEL, 3) uint8 RGB: the render, the 3D view and a caption bar."""
    left = cv2.cvtColor(cv2.resize(render_rgb, (PANEL, PANEL), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR)
    frame = np.full((PANEL + CAPTION_H, 2 * PANEL, 3), (20, 20, 20), np.uint8)
    frame[:PANEL, :PANEL] = left
    frame[:PANEL, PANEL:] = view_bgr
    font = cv2.FONT_HERSHEY_SIMPLEX
    for x, text in ((0, "synthetic render (source style)"), (PANEL, "predicted 3D pose")):
        (w, _), _ = cv2.getTextSize(text, font, 0.5, 1)
        label = frame[:26, x : x + w + 16]
        label[:] = (0.45 * label).astype(np.uint8)  # darken under the label
        cv2.putText(frame, text, (x + 8, 18), font, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    x = 2 * PANEL - 8
    for side in ("right", "left"):  # a colour key in the 3D view's top-right corner
        (w, _), _ = cv2.getTextSize(side, font, 0.45, 1)
        x -= w
        cv2.putText(frame, side, (x, 18), font, 0.45, COLOURS_BGR[side], 1, cv2.LINE_AA)
        x -= 10
    cv2.putText(frame, caption, (8, PANEL + 19), font, 0.45, (230, 230, 230), 1, cv2.LINE_AA)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def make_frames(n_frames: int = 48, seed: int = 0, fps: float = 10.0, orbit_deg: float = 40.0,
                predictor: PosePredictor | None = None) -> list[np.ndarray]:  # fmt: skip
    """The animation: ``n_frames`` (PANEL + CAPTION_H, 2 * PANEL, 3) uint8 RGB frames."""
    if predictor is None:
        from nlrd.inference import PosePredictor

        predictor = PosePredictor.from_pretrained(device="cpu")
    rng = np.random.default_rng(seed)
    world = make_motion(n_frames, rng)
    clip = render_orbit(world, seed, fps, orbit_deg)
    pred_cam = predict(predictor, clip)
    # back into the world frame (y = gravity) with the renderer's camera: label = world @ R.T
    pred_world = np.einsum("tjc,tck->tjk", pred_cam.astype(np.float64), camera_rotations(world, clip.joints3d))
    errors = np.asarray(mpjpe(pred_cam, clip.joints3d, reduce=False))
    frames = []
    for t in range(n_frames):
        spin = 25.0 + 360.0 * t / n_frames
        caption = f"nlrd PosePredictor on a rendered person  |  frame {t + 1:2d}/{n_frames}  |  MPJPE {errors[t]:5.0f} mm"
        frames.append(compose_frame(clip.image[t], draw_skeleton_view(pred_world[t], spin), caption))
    return frames


def save_gif(frames: list[np.ndarray], path: Path, fps: float) -> None:
    """Write RGB frames (T, H, W, 3) as a looping GIF with one shared 255-colour palette, no dithering.

    GIF frame delays are whole centiseconds, so the delay is 1 / ``fps`` rounded to 10 ms.
    """
    step = max(1, len(frames) // 8)
    sample = Image.fromarray(np.concatenate(frames[::step], axis=0))
    palette = sample.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=10 * round(100.0 / fps), loop=0, optimize=True,
                   disposal=1)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("docs/animated_example.gif"))
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--orbit", type=float, default=40.0, help="degrees the render camera orbits over the clip")
    args = ap.parse_args(argv)
    if args.frames < 2 or args.fps <= 0:
        ap.error("--frames must be >= 2 and --fps > 0")
    frames = make_frames(args.frames, args.seed, args.fps, args.orbit)
    save_gif(frames, args.out, args.fps)
    h, w = frames[0].shape[:2]
    print(f"wrote {args.out}: {len(frames)} frames, {w}x{h}, {args.out.stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
