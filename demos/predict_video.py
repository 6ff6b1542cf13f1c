"""3D poses predicted from a video, played back beside the video with the 2D projection overlaid.

Usage::

    python demos/predict_video.py --out squat.html                      # the data folder's squat.mp4
    python demos/predict_video.py --video my_clip.mp4 --out my_clip.html --refine
    python demos/predict_video.py --video long.mp4 --frames 150 --max-frames 150 --width 400

Runs ``PosePredictor.predict_clip`` on the video (person tracked, crops batched through G) and
writes one self-contained plotly HTML page (plotly.js inlined, works offline): on the left the
video frame with the tracked person box (green) and the predicted pose drawn back into the image
(left side blue, right side red), on the right the 3D skeleton in the camera's view (x right,
depth, up), with play / pause buttons and a frame slider. Frames are stored as base64 JPEGs
downscaled to ``--width`` pixels on the long side; clips longer than ``--max-frames`` are
subsampled evenly, so the page stays at a few MB (~10 MB for 213 frames at 480 px).
"""

from __future__ import annotations

import argparse
import base64
import itertools
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nlrd.data.paths import default_data_root
from nlrd.data.video import iter_video, probe_video
from nlrd.inference import PosePredictor, PoseResult
from nlrd.skeleton import H36M_17, Skeleton
from nlrd.viz import SIDE_COLOURS, axis_ranges, figure_to_html, image_with_skeleton, to_display

JPEG_QUALITY = 75


def jpeg_data_uri(rgb: np.ndarray) -> str:
    """uint8 (H, W, 3) RGB -> 'data:image/jpeg;base64,...'."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def skeleton_xyz(pose: np.ndarray, skeleton: Skeleton) -> dict[str, dict[str, list[float | None]]]:
    """Display coordinates (x, depth, up) of one pose (J, 3) mm: bone polylines per side (None
    between bones) and the joints."""
    d = to_display(pose)
    out: dict[str, dict[str, list[float | None]]] = {}
    for side in SIDE_COLOURS:
        xs: list[float | None] = []
        ys: list[float | None] = []
        zs: list[float | None] = []
        for p, c in skeleton.edges:
            if skeleton.side(c) == side:
                xs += [round(float(d[p, 0]), 1), round(float(d[c, 0]), 1), None]
                ys += [round(float(d[p, 1]), 1), round(float(d[c, 1]), 1), None]
                zs += [round(float(d[p, 2]), 1), round(float(d[c, 2]), 1), None]
        out[side] = {"x": xs, "y": ys, "z": zs}
    out["joints"] = {k: [round(float(v), 1) for v in d[:, i]] for i, k in enumerate("xyz")}
    return out


def overlay_frames(frames: list[np.ndarray], result: PoseResult, index: list[int], width: int) -> list[str]:
    """JPEG data URIs of the chosen frames, downscaled to ``width`` px on the long side, with the box
    and the 2D skeleton drawn in (result boxes and joints2d are in the frames' pixels)."""
    uris = []
    for frame, t in zip(frames, index, strict=True):
        h, w = frame.shape[:2]
        s = min(1.0, width / float(max(h, w)))
        small = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        # pixel centres at integer coordinates: x_small + 0.5 = (x + 0.5) * s
        j2 = (result.joints2d[t] + 0.5) * s - 0.5
        box = (result.boxes[t] + 0.5) * s - 0.5
        uris.append(jpeg_data_uri(image_with_skeleton(small, j2, box if result.valid[t] else None)))
    return uris


def build_figure(uris: list[str], result: PoseResult, index: list[int], fps: float, title: str,
                 skeleton: Skeleton = H36M_17) -> go.Figure:  # fmt: skip
    """Image subplot + 3D scene, one animation frame per entry of ``index`` (frames of ``result``)."""
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], specs=[[{"type": "xy"}, {"type": "scene"}]],
                        horizontal_spacing=0.02)  # fmt: skip
    first = skeleton_xyz(result.joints3d[index[0]], skeleton)
    fig.add_trace(go.Image(source=uris[0], hoverinfo="skip"), row=1, col=1)
    for side, colour in SIDE_COLOURS.items():
        fig.add_trace(go.Scatter3d(**first[side], mode="lines", line={"color": colour, "width": 6}, hoverinfo="skip",
                                   showlegend=False), row=1, col=2)  # fmt: skip
    fig.add_trace(go.Scatter3d(**first["joints"], mode="markers", marker={"size": 3, "color": "#222"},
                               text=list(skeleton.joint_names), hoverinfo="text", showlegend=False), row=1, col=2)  # fmt: skip
    frames = []
    for k, (uri, t) in enumerate(zip(uris, index, strict=True)):
        xyz = skeleton_xyz(result.joints3d[t], skeleton)
        data = [go.Image(source=uri)] + [go.Scatter3d(**xyz[side]) for side in SIDE_COLOURS] + [go.Scatter3d(**xyz["joints"])]
        found = "person found" if result.valid[t] else "person not found (whole frame)"
        frames.append(go.Frame(data=data, traces=list(range(len(data))), name=str(k),
                               layout={"title": {"text": f"{title} — frame {t} ({found})"}}))  # fmt: skip
    fig.frames = frames
    ranges = axis_ranges(result.joints3d[index])
    frame_ms = 1000.0 / fps
    play = {"frame": {"duration": frame_ms, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    steps = [{"method": "animate", "label": str(t),
              "args": [[str(k)], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate", "transition": {"duration": 0}}]}
             for k, t in enumerate(index)]  # fmt: skip
    axis = {"showbackground": False, "gridcolor": "#ececec", "autorange": False, "tickfont": {"size": 9}}
    fig.update_layout(
        title={"text": f"{title} — frame {index[0]}", "x": 0.5, "font": {"size": 14}},
        height=560, margin={"l": 10, "r": 10, "t": 40, "b": 70}, template="plotly_white",
        scene={"xaxis": {**axis, "range": list(ranges[0]), "title": "x (mm)"},
               "yaxis": {**axis, "range": list(ranges[1]), "title": "depth (mm)"},
               "zaxis": {**axis, "range": list(ranges[2]), "title": "up (mm)"},
               "aspectmode": "cube", "camera": {"eye": {"x": 0.4, "y": -1.8, "z": 0.35}, "up": {"x": 0, "y": 0, "z": 1}}},
        updatemenus=[{"type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "y": -0.02, "xanchor": "left",
                      "yanchor": "top", "buttons": [{"label": "▶ play", "method": "animate", "args": [None, play]},
                                                    {"label": "❚❚ pause", "method": "animate", "args": [[None], pause]}]}],
        sliders=[{"active": 0, "steps": steps, "x": 0.15, "len": 0.85, "y": -0.02, "yanchor": "top",
                  "currentvalue": {"prefix": "frame "}, "transition": {"duration": 0}, "font": {"size": 9}}],
    )  # fmt: skip
    fig.update_xaxes(visible=False, row=1, col=1)
    fig.update_yaxes(visible=False, row=1, col=1)
    return fig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", default=None, help="video file (default: the data folder's media/squat.mp4)")
    ap.add_argument("--out", default="squat.html", help="output HTML file (default squat.html)")
    ap.add_argument("--frames", type=int, default=None, help="use only the first N frames of the video")
    ap.add_argument("--max-frames", type=int, default=300, help="frames in the animation (subsampled evenly beyond)")
    ap.add_argument("--width", type=int, default=480, help="long side of the frames in the page, pixels")
    ap.add_argument("--refine", action="store_true", help="smooth the poses through the motion prior")
    ap.add_argument("--flip-test", action="store_true", help="average with the mirrored prediction")
    ap.add_argument("--checkpoints", default=None, help="weights folder (default: the shipped checkpoints/)")
    args = ap.parse_args(argv)
    video = Path(args.video) if args.video else default_data_root() / "media" / "squat.mp4"
    try:
        if args.frames is not None and args.frames < 1:
            raise ValueError(f"--frames must be >= 1, got {args.frames}")
        if args.max_frames < 1 or args.width < 32:
            raise ValueError("--max-frames must be >= 1 and --width >= 32")
        info = probe_video(video)
        predictor = PosePredictor.from_pretrained(args.checkpoints)
        # 640 px on the long side is plenty for tracking and 128 px crops, and keeps the frames in memory small.
        frames = list(itertools.islice(iter_video(video, max_side=max(640, args.width)), args.frames))
        result = predictor.predict_clip(np.stack(frames), fps=info.fps, flip_test=args.flip_test, refine=args.refine)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stride = max(1, math.ceil(len(frames) / args.max_frames))
    index = list(range(0, len(frames), stride))
    uris = overlay_frames([frames[t] for t in index], result, index, args.width)
    fig = build_figure(uris, result, index, info.fps / stride, video.name)
    out = figure_to_html(fig, args.out)
    found = float(np.mean(result.valid))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB): {len(index)} of {len(frames)} frames, person found in "
          f"{100 * found:.0f}%, model {predictor.meta.get('image_checkpoint')}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
