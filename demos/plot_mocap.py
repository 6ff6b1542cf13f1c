"""Animated 3D view of a few real mocap sequences as converted for training (H36M_17, 30 fps, mm).

Usage::

    python demos/plot_mocap.py --data-root ../shared/data --out mocap.html
    python demos/plot_mocap.py --files path/to/a.bvh path/to/b.txt.gz --seconds 6 --global

Writes one self-contained plotly HTML page: the skeletons side by side (or moving along their root
trajectories with ``--global``), a play button and a frame slider. The subject's left side is blue,
the right side red. The view looks along the camera's z axis, so what you see is what a camera in
the project's frame (x right, y down, z forward) sees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from nlrd.data.mocap import MocapSequence, read_mocap
from nlrd.data.paths import resolve_data_root
from nlrd.skeleton import H36M_17, Skeleton

# A walk, a dribble and a dance from CMU and Bandai Namco (paths relative to the data folder).
DEFAULT_FILES = (
    "cmu_mocap/test/walking/walking_1.txt.gz",
    "cmu_mocap/test/basketball/basketball_1.txt.gz",
    "bandai_namco/dataset-1/data/dataset-1_walk_active_001.bvh.gz",
    "bandai_namco/dataset-1/data/dataset-1_dance-short_normal_001.bvh.gz",
)
COLOURS = {"left": "#1f77b4", "right": "#d62728", "centre": "#444444"}


def to_display(points: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) mm (x right, y down, z forward) -> plotly axes (x, z, -y), z up.

    A proper rotation (det +1), so left and right stay where they are.
    """
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def _bone_traces(pose: np.ndarray, skeleton: Skeleton) -> list[go.Scatter3d]:
    """One line trace per body side for a display-frame pose (J, 3), plus the joints."""
    traces = []
    for side, colour in COLOURS.items():
        xs: list[float | None] = []
        ys: list[float | None] = []
        zs: list[float | None] = []
        for p, j in skeleton.edges:
            if skeleton.side(j) != side:
                continue
            for k in (p, j):
                xs.append(float(pose[k, 0]))
                ys.append(float(pose[k, 1]))
                zs.append(float(pose[k, 2]))
            xs.append(None)  # break the line between bones
            ys.append(None)
            zs.append(None)
        traces.append(
            go.Scatter3d(
                x=xs, y=ys, z=zs, mode="lines", line={"color": colour, "width": 6}, hoverinfo="skip", showlegend=False
            )  # fmt: skip
        )
    traces.append(
        go.Scatter3d(
            x=pose[:, 0],
            y=pose[:, 1],
            z=pose[:, 2],
            mode="markers",
            marker={"size": 3, "color": "#222"},
            text=list(skeleton.joint_names),
            hoverinfo="text",
            showlegend=False,
        )  # fmt: skip
    )
    return traces


def sequences_figure(
    seqs: list[MocapSequence], skeleton: Skeleton = H36M_17, global_motion: bool = False, spacing_mm: float = 1500.0
) -> go.Figure:
    """Animated figure of several sequences (each (T, J, 3) mm, camera frame) played together.

    Args:
        seqs: the sequences; the animation lasts as long as the longest, shorter ones hold their last frame.
        skeleton: joint names and bones.
        global_motion: add each root trajectory (relative to its first frame) instead of pinning the pelvis.
        spacing_mm: sideways distance between the sequences.
    """
    n_frames = max(s.num_frames for s in seqs)
    poses = []  # (T, J, 3) display frame, each sequence shifted sideways
    for i, s in enumerate(seqs):
        j = s.joints.astype(np.float64)
        if global_motion:
            j = j + (s.root - s.root[:1])[:, None, :]
        j = j + np.array([(i - (len(seqs) - 1) / 2) * spacing_mm, 0.0, 0.0])
        j = np.concatenate([j, np.repeat(j[-1:], n_frames - len(j), axis=0)])
        poses.append(to_display(j))
    allp = np.concatenate([p.reshape(-1, 3) for p in poses])
    lo, hi = allp.min(0) - 100, allp.max(0) + 100

    def frame_traces(t: int) -> list[go.Scatter3d]:
        out = []
        for p in poses:
            out += _bone_traces(p[t], skeleton)
        return out

    labels = go.Scatter3d(
        x=[p[0, 0, 0] for p in poses], y=[p[0, 0, 1] for p in poses], z=[hi[2] + 50] * len(poses), mode="text",
        text=[s.name for s in seqs], hoverinfo="skip", showlegend=False,
    )  # fmt: skip
    frames = [go.Frame(data=frame_traces(t), name=str(t)) for t in range(n_frames)]
    fig = go.Figure(data=[*frame_traces(0), labels], frames=frames)
    fps = seqs[0].fps
    play = {"frame": {"duration": 1000.0 / fps, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    fig.update_layout(
        title=f"{len(seqs)} mocap sequences, H36M_17, {fps:g} fps (left side blue, right side red)",
        scene={
            "xaxis": {"range": [lo[0], hi[0]], "title": "x (mm, right)"},
            "yaxis": {"range": [lo[1], hi[1]], "title": "z (mm, forward)"},
            "zaxis": {"range": [lo[2], hi[2] + 100], "title": "-y (mm, up)"},
            "aspectmode": "data",
            "camera": {"eye": {"x": 0.0, "y": -1.8, "z": 0.5}, "up": {"x": 0, "y": 0, "z": 1}},
        },
        updatemenus=[{
            "type": "buttons", "showactive": False, "x": 0.05, "y": 0.05,
            "buttons": [{"label": "Play", "method": "animate", "args": [None, play]},
                        {"label": "Pause", "method": "animate", "args": [[None], pause]}],
        }],
        sliders=[{
            "active": 0, "x": 0.15, "len": 0.8, "y": 0.05, "currentvalue": {"prefix": "frame "},
            "steps": [{"label": str(t), "method": "animate", "args": [[str(t)], pause]} for t in range(n_frames)],
        }],
        margin={"l": 0, "r": 0, "t": 40, "b": 0},
    )  # fmt: skip
    return fig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", default=None, help="real data folder (default: $NLRD_DATA or ../shared/data)")
    p.add_argument("--files", nargs="*", default=None, help="mocap files (.bvh[.gz], CMU .txt[.gz]) to show")
    p.add_argument("--seconds", type=float, default=4.0, help="length of each clip to show (default 4)")
    p.add_argument("--global", dest="global_motion", action="store_true", help="move along the root trajectories")
    p.add_argument("--out", default="mocap.html", help="output HTML file (default mocap.html)")
    args = p.parse_args(argv)
    try:
        if args.files:
            paths = [Path(f) for f in args.files]
        else:
            root = resolve_data_root(args.data_root)
            paths = [root / f for f in DEFAULT_FILES if (root / f).is_file()]
            if not paths:
                raise ValueError(f"none of the default files is under {str(root)!r}; pass --files")
        seqs = []
        for path in paths:
            s = read_mocap(path)
            n = max(1, int(round(args.seconds * s.fps)))
            seqs.append(MocapSequence(s.joints[:n], s.root[:n], s.fps, s.name))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    fig = sequences_figure(seqs, global_motion=args.global_motion)
    fig.write_html(args.out, include_plotlyjs=True, auto_play=False)
    print(f"wrote {args.out} ({len(seqs)} sequences, {max(s.num_frames for s in seqs)} frames)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
