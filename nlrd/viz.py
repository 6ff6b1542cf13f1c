"""Plotly figures of poses, sequences and latent maps, and skeleton overlays on images.

Input poses are root-relative joints in millimetres in the camera frame (x right, y down, z
forward): a pose is (J, 3), a sequence (T, J, 3). They are *displayed* upright in a right-handed
frame whose axes are

    display x = x (right),   display y = z (depth, away from the camera),   display z = -y (up),

so the head is up and the default view looks at the person from the camera's side. Every 3D scene
uses equal-length axis ranges with ``aspectmode="cube"`` (metric: nothing is squashed), and
animations keep one fixed range for all frames. Hover labels show joint names and the original
camera-frame coordinates.

Colours follow :meth:`Skeleton.side`: left blue, right red, centre dark grey. Several overlaid
poses get one base colour each (left a darker, right a lighter shade of it). Bones are drawn as one
line trace per side with ``None`` separators, so a pose is always four traces in this order:
left bones, right bones, centre bones, joints.

Figures set ``layout.uirevision``: when a figure is re-sent with the same value (as Gradio does
through ``Plotly.react``), plotly keeps the user's camera / zoom; pass a new value to reset it.

This module imports no model code: only numpy, plotly, OpenCV and :mod:`nlrd.skeleton`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from nlrd.skeleton import H36M_17, Skeleton

__all__ = [
    "SIDE_COLOURS",
    "axis_ranges",
    "bar_table_figure",
    "figure_to_html",
    "image_with_skeleton",
    "joint_influence_figure",
    "latent_pca_figure",
    "loss_curves_figure",
    "pca_2d",
    "PoseFigureTemplate",
    "pose_comparison_figure",
    "pose_figure",
    "pose_grid",
    "poses_side_by_side",
    "sequence_figure",
    "sequences_side_by_side",
    "to_display",
]

Range3 = tuple[tuple[float, float], tuple[float, float], tuple[float, float]]

SIDES: tuple[str, ...] = ("left", "right", "centre")
SIDE_COLOURS: dict[str, str] = {"left": "#1f77b4", "right": "#d62728", "centre": "#404040"}
# Base colours of the 2nd, 3rd, ... overlaid pose (the 1st uses SIDE_COLOURS unless colours are given).
POSE_COLOURS: tuple[str, ...] = ("#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf")
HIGHLIGHT_COLOURS: tuple[str, ...] = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf")
SIDE_COLOURS_RGB: dict[str, tuple[int, int, int]] = {
    "left": (31, 119, 180),
    "right": (214, 39, 40),
    "centre": (255, 200, 0),
}
BOX_COLOUR_RGB: tuple[int, int, int] = (0, 220, 0)

MAX_SCENES = 16  # browsers keep about 16 live WebGL contexts per page; plotly uses one per 3D scene
DEFAULT_HEIGHT = 420
ANIMATION_HEIGHT = 470
_ROUND = 2  # decimals (mm) kept in the figure JSON
_EYE = {"x": 0.55, "y": -1.75, "z": 0.45}  # in front of the person (display y = depth < 0), slightly above


# ----------------------------------------------------------------------------- validation
def _float_array(a: Any, what: str, expected: str) -> np.ndarray:
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a numeric array of shape {expected}") from None


def _check_pose(joints: Any, skeleton: Skeleton, what: str = "joints") -> np.ndarray:
    """(J, 3) float64 mm, or ValueError naming the expected shape."""
    expected = f"(J, 3) = ({skeleton.num_joints}, 3)"
    arr = _float_array(joints, what, expected)
    if arr.shape != (skeleton.num_joints, 3):
        raise ValueError(f"{what} must have shape {expected} for skeleton {skeleton.name!r}, got {arr.shape}")
    return arr


def _check_poses(poses: Any, skeleton: Skeleton, what: str = "poses") -> np.ndarray:
    """(N, J, 3) float64 mm, N >= 1."""
    expected = f"(N, J, 3) = (N, {skeleton.num_joints}, 3)"
    if isinstance(poses, (list, tuple)):
        if len(poses) == 0:
            raise ValueError(f"{what} must hold at least one pose of shape ({skeleton.num_joints}, 3)")
        return np.stack([_check_pose(p, skeleton, f"{what}[{i}]") for i, p in enumerate(poses)])
    arr = _float_array(poses, what, expected)
    if arr.ndim != 3 or arr.shape[1:] != (skeleton.num_joints, 3) or arr.shape[0] == 0:
        raise ValueError(f"{what} must have shape {expected} with N >= 1, got {arr.shape}")
    return arr


def _check_pose_or_poses(joints: Any, skeleton: Skeleton, what: str = "joints") -> np.ndarray:
    """One pose (J, 3) or several ((N, J, 3) or a list of (J, 3)) -> (N, J, 3) float64 mm."""
    if isinstance(joints, (list, tuple)):
        return _check_poses(joints, skeleton, what)
    j = skeleton.num_joints
    arr = _float_array(joints, what, f"({j}, 3) or (N, {j}, 3)")
    if arr.ndim == 2 and arr.shape == (j, 3):
        return arr[None]
    if arr.ndim == 3 and arr.shape[1:] == (j, 3) and arr.shape[0] > 0:
        return arr
    raise ValueError(f"{what} must have shape (J, 3) = ({j}, 3) or (N, J, 3) = (N, {j}, 3), got {arr.shape}")


def _check_sequence(seq: Any, skeleton: Skeleton, what: str = "seq") -> np.ndarray:
    """(T, J, 3) float64 mm, T >= 1."""
    expected = f"(T, J, 3) = (T, {skeleton.num_joints}, 3)"
    arr = _float_array(seq, what, expected)
    if arr.ndim != 3 or arr.shape[1:] != (skeleton.num_joints, 3) or arr.shape[0] == 0:
        raise ValueError(f"{what} must have shape {expected} with T >= 1, got {arr.shape}")
    return arr


def _names(values: str | Sequence[str] | None, n: int, default: Sequence[str], what: str) -> list[str]:
    if values is None:
        return list(default)
    if isinstance(values, str):
        values = [values]
    values = [str(v) for v in values]
    if len(values) != n:
        raise ValueError(f"{what} must hold {n} entries (one per pose), got {len(values)}")
    return values


# ----------------------------------------------------------------------------- geometry helpers
def to_display(points: np.ndarray) -> np.ndarray:
    """Camera-frame points (..., 3) (x right, y down, z forward) -> display (x, z, -y), mm."""
    p = np.asarray(points, dtype=np.float64)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def axis_ranges(*arrays: np.ndarray, pad: float = 0.08, min_half_mm: float = 250.0) -> Range3:
    """Equal-length display-axis ranges (mm) that hold every finite point of ``arrays``.

    Each array is camera-frame points (..., 3) (poses, sequences, trajectories). The result is
    ((x lo, x hi), (depth lo, depth hi), (up lo, up hi)) in *display* coordinates (see
    :func:`to_display`), all of the same length, so a scene with ``aspectmode="cube"`` is metric.
    Pass it to :func:`pose_figure` (``axis_range=``) to keep one range while stepping through frames.
    """
    pts = [to_display(np.asarray(a, dtype=np.float64)).reshape(-1, 3) for a in arrays]
    allp = np.concatenate(pts, axis=0) if pts else np.zeros((0, 3))
    allp = allp[np.isfinite(allp).all(axis=1)]
    if len(allp) == 0:
        allp = np.zeros((1, 3))
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    centre = (lo + hi) / 2.0
    half = max(float((hi - lo).max()) / 2.0 * (1.0 + pad), min_half_mm)
    return tuple((float(c - half), float(c + half)) for c in centre)  # type: ignore[return-value]


def _clean(values: np.ndarray) -> list[float | None]:
    """Rounded floats for the figure JSON; non-finite -> None (a gap)."""
    return [round(float(v), _ROUND) if math.isfinite(v) else None for v in np.asarray(values, dtype=np.float64)]


def _hex_to_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"colours must be '#rrggbb' strings, got {colour!r}")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _mix(colour: str, other: tuple[int, int, int], t: float) -> str:
    r, g, b = _hex_to_rgb(colour)
    m = [round(a + (o - a) * t) for a, o in zip((r, g, b), other, strict=True)]
    return "#{:02x}{:02x}{:02x}".format(*m)


def _palette(base: str | None) -> dict[str, str]:
    """Side colours: the default left/right/centre palette, or shades of one base colour."""
    if base is None:
        return dict(SIDE_COLOURS)
    return {"left": _mix(base, (0, 0, 0), 0.35), "right": _mix(base, (255, 255, 255), 0.4), "centre": base}


def _bone_sides(skeleton: Skeleton) -> dict[str, list[tuple[int, int]]]:
    """Bones (parent, child) grouped by the side of the child joint."""
    groups: dict[str, list[tuple[int, int]]] = {s: [] for s in SIDES}
    for p, c in skeleton.edges:
        groups[skeleton.side(c)].append((p, c))
    return groups


# ----------------------------------------------------------------------------- traces
def _pose_xyz(pose: np.ndarray, skeleton: Skeleton) -> dict[str, dict[str, list[float | None]]]:
    """Display coordinates of the bone polylines (one per side) and of the joints of one pose (J, 3)."""
    d = to_display(pose)
    out: dict[str, dict[str, list[float | None]]] = {}
    for side, bones in _bone_sides(skeleton).items():
        idx: list[int | None] = []
        for p, c in bones:
            idx += [p, c, None]
        coords = {}
        for k, axis in enumerate("xyz"):
            vals = np.array([d[i, k] if i is not None else np.nan for i in idx], dtype=np.float64)
            coords[axis] = _clean(vals)
        out[side] = coords
    out["joints"] = {axis: _clean(d[:, k]) for k, axis in enumerate("xyz")}
    out["joints"]["customdata"] = [[round(float(v), 1) if math.isfinite(v) else None for v in row] for row in pose]
    return out


def _pose_traces(
    pose: np.ndarray,
    skeleton: Skeleton,
    *,
    label: str,
    palette: dict[str, str],
    side_legend: bool,
    showlegend: bool,
    scene: str = "scene",
    marker_size: float = 4.0,
    line_width: float = 6.0,
) -> list[go.Scatter3d]:
    """Four traces for one pose (J, 3) mm: left, right, centre bones (lines), joints (markers)."""
    xyz = _pose_xyz(pose, skeleton)
    group = f"{scene}:{label}" if not side_legend else None
    traces: list[go.Scatter3d] = []
    for side in SIDES:
        traces.append(
            go.Scatter3d(
                **xyz[side],
                mode="lines",
                name=side if side_legend else f"{label} {side}",
                line={"color": palette[side], "width": line_width},
                hoverinfo="skip",
                legendgroup=side if side_legend else group,
                showlegend=showlegend and side_legend,
                scene=scene,
            )
        )
    colours = [palette[skeleton.side(j)] for j in range(skeleton.num_joints)]
    traces.append(
        go.Scatter3d(
            **xyz["joints"],
            mode="markers",
            name=label if not side_legend else "joints",
            marker={"size": marker_size, "color": colours, "line": {"width": 0}},
            text=list(skeleton.joint_names),
            hovertemplate=(
                "<b>%{text}</b><br>x %{customdata[0]} mm<br>y %{customdata[1]} mm"
                "<br>z %{customdata[2]} mm<extra>" + label + "</extra>"
            ),
            legendgroup=group if not side_legend else "joints",
            showlegend=showlegend,
            scene=scene,
        )
    )
    return traces


def _frame_traces(pose: np.ndarray, skeleton: Skeleton) -> list[go.Scatter3d]:
    """The coordinates-only update of the four traces of :func:`_pose_traces` (for animation frames)."""
    xyz = _pose_xyz(pose, skeleton)
    return [go.Scatter3d(**xyz[side]) for side in SIDES] + [go.Scatter3d(**xyz["joints"])]


def _scene_layout(ranges: Range3, *, ticks: bool = True) -> dict[str, Any]:
    titles = ("x (mm)", "depth z (mm)", "up −y (mm)") if ticks else ("", "", "")
    axes = {}
    for name, rng, title in zip(("xaxis", "yaxis", "zaxis"), ranges, titles, strict=True):
        axes[name] = {
            "range": list(rng),
            "autorange": False,
            "title": {"text": title, "font": {"size": 10}},
            "showbackground": False,
            "showgrid": True,
            "gridcolor": "#ececec",
            "zeroline": False,
            "showline": True,
            "linecolor": "#c8c8c8",
            "showspikes": False,
            "showticklabels": ticks,
            "tickfont": {"size": 9, "color": "#888"},
            "nticks": 5,
        }
    return {
        **axes,
        "aspectmode": "cube",
        "camera": {"eye": dict(_EYE), "up": {"x": 0, "y": 0, "z": 1}},
        "dragmode": "orbit",
    }


def _base_layout(title: str | None, height: int, uirevision: Any, *, bottom: int = 0) -> dict[str, Any]:
    return {
        "title": {"text": title, "x": 0.5, "font": {"size": 14}} if title else None,
        "height": height,
        "margin": {"l": 0, "r": 0, "t": 36 if title else 8, "b": bottom},
        "template": "plotly_white",
        "uirevision": uirevision,
        "legend": {
            "x": 0.0,
            "y": 1.0,
            "xanchor": "left",
            "yanchor": "top",
            "bgcolor": "rgba(255,255,255,0.6)",
            "font": {"size": 11},
        },
    }


def _scene_names(n: int) -> list[str]:
    return ["scene" if i == 0 else f"scene{i + 1}" for i in range(n)]


def _animation_controls(n_frames: int, fps: float) -> dict[str, Any]:
    """Play / pause buttons and a frame slider with one step per frame (frames named '0'..'T-1')."""
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    frame_ms = 1000.0 / fps
    play = {
        "frame": {"duration": frame_ms, "redraw": True},
        "fromcurrent": True,
        "transition": {"duration": 0},
        "mode": "immediate",
    }
    pause = {"frame": {"duration": 0, "redraw": False}, "transition": {"duration": 0}, "mode": "immediate"}
    steps = [
        {
            "method": "animate",
            "label": str(t),
            "args": [
                [str(t)],
                {"frame": {"duration": 0, "redraw": True}, "mode": "immediate", "transition": {"duration": 0}},
            ],
        }
        for t in range(n_frames)
    ]
    return {
        "updatemenus": [
            {
                "type": "buttons",
                "direction": "left",
                "showactive": False,
                "x": 0.0,
                "y": 0.0,
                "xanchor": "left",
                "yanchor": "top",
                "pad": {"t": 8, "r": 8},
                "buttons": [
                    {"label": "▶ play", "method": "animate", "args": [None, play]},
                    {"label": "❚❚ pause", "method": "animate", "args": [[None], pause]},
                ],
            }
        ],
        "sliders": [
            {
                "active": 0,
                "steps": steps,
                "x": 0.2,
                "len": 0.8,
                "y": 0.0,
                "xanchor": "left",
                "yanchor": "top",
                "pad": {"t": 8, "b": 0},
                "currentvalue": {"prefix": "frame ", "font": {"size": 11}},
                "transition": {"duration": 0},
                "font": {"size": 9},
            }
        ],
    }


# ----------------------------------------------------------------------------- pose figures
def pose_figure(
    joints: np.ndarray | Sequence[np.ndarray],
    labels: str | Sequence[str] | None = None,
    colours: Sequence[str] | None = None,
    *,
    title: str | None = None,
    skeleton: Skeleton = H36M_17,
    axis_range: Range3 | None = None,
    uirevision: Any = "pose",
    height: int = DEFAULT_HEIGHT,
) -> go.Figure:
    """One pose, or several overlaid (prediction vs ground truth, anchor vs counterpart), in one 3D scene.

    Args:
        joints: one pose (J, 3), a stack (N, J, 3) or a list of N poses (J, 3); mm, root-relative,
            camera frame (x right, y down, z forward).
        labels: one name per pose (legend and hover); default "pose" / "pose 1", "pose 2", ...
        colours: one '#rrggbb' base colour per pose. Default: a single pose is drawn in the
            left/right/centre palette; with several poses the first keeps it and the others get
            shades of :data:`POSE_COLOURS`.
        title: figure title.
        skeleton: the joints' skeleton.
        axis_range: fixed display ranges from :func:`axis_ranges` (e.g. over a whole sequence when
            stepping through its frames); default: fitted to these poses.
        uirevision: kept in ``layout.uirevision``; re-sending a figure with the same value keeps the
            user's camera.
        height: pixels.

    Returns:
        A figure with 4 traces per pose (left, right, centre bones, joints).
    """
    poses = _check_pose_or_poses(joints, skeleton)
    n = len(poses)
    default = ["pose"] if n == 1 else [f"pose {i + 1}" for i in range(n)]
    names = _names(labels, n, default, "labels")
    if colours is not None and len(colours) != n:
        raise ValueError(f"colours must hold {n} entries (one per pose), got {len(colours)}")
    fig = go.Figure()
    for i, pose in enumerate(poses):
        base = colours[i] if colours is not None else (None if i == 0 else POSE_COLOURS[(i - 1) % len(POSE_COLOURS)])
        fig.add_traces(_pose_traces(pose, skeleton, label=names[i], palette=_palette(base), side_legend=n == 1, showlegend=True))
    ranges = axis_range if axis_range is not None else axis_ranges(poses)
    fig.update_layout(**_base_layout(title, height, uirevision), scene=_scene_layout(ranges))
    return fig


def poses_side_by_side(
    poses: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    *,
    title: str | None = None,
    skeleton: Skeleton = H36M_17,
    uirevision: Any = "pair",
    height: int = DEFAULT_HEIGHT,
) -> go.Figure:
    """A row of 3D scenes, one pose (J, 3) mm each (e.g. a relation's anchor and counterpart).

    All scenes share one axis range and camera, so sizes and positions compare directly.
    Returns a figure with 4 traces per pose; scene i is ``scene``, ``scene2``, ...
    """
    arr = _check_poses(poses, skeleton, "poses")
    n = len(arr)
    if n > MAX_SCENES:
        raise ValueError(f"poses must hold at most {MAX_SCENES} poses (one WebGL scene each), got {n}")
    names = _names(titles, n, [""] * n, "titles")
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "scene"}] * n], subplot_titles=names, horizontal_spacing=0.01)
    for i, (pose, scene) in enumerate(zip(arr, _scene_names(n), strict=True)):
        fig.add_traces(
            _pose_traces(
                pose,
                skeleton,
                label=names[i] or f"pose {i + 1}",
                palette=_palette(None),
                side_legend=True,
                showlegend=i == 0,
                scene=scene,
            )
        )
    fig.update_layout(**_base_layout(title, height, uirevision))
    fig.update_layout(margin={"t": 48 if title else 28})
    fig.update_scenes(**_scene_layout(axis_ranges(arr)))
    return fig


def pose_grid(
    poses: np.ndarray | Sequence[np.ndarray],
    cols: int = 5,
    titles: Sequence[str] | None = None,
    *,
    title: str | None = None,
    skeleton: Skeleton = H36M_17,
    uirevision: Any = "grid",
    row_height: int = 210,
) -> go.Figure:
    """A grid of small 3D scenes, one pose each (e.g. random samples of the latent prior).

    Args:
        poses: (N, J, 3) mm, or a list of N poses (J, 3); N <= :data:`MAX_SCENES` (browsers keep about
            16 live WebGL contexts per page and plotly uses one per 3D scene).
        cols: scenes per row.
        titles: N short captions, or None.
        row_height: pixels per row of scenes.

    Returns:
        A figure with 4 traces per pose and one shared axis range.
    """
    arr = _check_poses(poses, skeleton, "poses")
    n = len(arr)
    if n > MAX_SCENES:
        raise ValueError(f"poses must hold at most {MAX_SCENES} poses (one WebGL scene each), got {n}")
    if int(cols) < 1:
        raise ValueError(f"cols must be a positive integer, got {cols}")
    cols = min(int(cols), n)
    rows = math.ceil(n / cols)
    names = _names(titles, n, [""] * n, "titles")
    specs = [[{"type": "scene"} if r * cols + c < n else None for c in range(cols)] for r in range(rows)]
    fig = make_subplots(
        rows=rows,
        cols=cols,
        specs=specs,
        subplot_titles=names if titles is not None else None,
        horizontal_spacing=0.005,
        vertical_spacing=0.03 if titles is None else 0.06,
    )
    for i, (pose, scene) in enumerate(zip(arr, _scene_names(n), strict=True)):
        fig.add_traces(
            _pose_traces(
                pose,
                skeleton,
                label=names[i] or f"sample {i}",
                palette=_palette(None),
                side_legend=True,
                showlegend=i == 0,
                scene=scene,
                marker_size=2.5,
                line_width=4.0,
            )
        )
    fig.update_layout(**_base_layout(title, rows * row_height + (36 if title else 8), uirevision))
    fig.update_layout(
        legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"} if title is None else {},
        margin={"t": 50 if title else 28},
    )
    fig.update_scenes(**_scene_layout(axis_ranges(arr), ticks=False))
    return fig


def pose_comparison_figure(
    groups: Sequence[Sequence[np.ndarray]],
    labels: Sequence[str],
    colours: Sequence[str] | None = None,
    *,
    titles: Sequence[str] | None = None,
    title: str | None = None,
    skeleton: Skeleton = H36M_17,
    uirevision: Any = "comparison",
    height: int = DEFAULT_HEIGHT,
) -> go.Figure:
    """A row of 3D scenes, each overlaying the same kinds of pose for one frame (e.g. ground truth,
    before and after adaptation).

    Args:
        groups: one entry per scene (frame), each a list of K poses (J, 3) mm in the order of ``labels``.
        labels: the K pose kinds; one legend entry each, which toggles that kind in every scene.
        colours: K '#rrggbb' base colours (default: dark grey, then :data:`POSE_COLOURS`).
        titles: one caption per scene.
        uirevision: see :func:`pose_figure`.

    Returns:
        A figure with 4 traces per pose (scene by scene, kinds in order) and one axis range shared
        by all scenes, so sizes compare directly.
    """
    n, k = len(groups), len(labels)
    if n == 0 or n > MAX_SCENES:
        raise ValueError(f"groups must hold 1 to {MAX_SCENES} scenes (one WebGL scene each), got {n}")
    arrs = [_check_poses(list(g), skeleton, f"groups[{i}]") for i, g in enumerate(groups)]
    if any(len(a) != k for a in arrs):
        raise ValueError(f"every group must hold {k} poses (one per label), got {[len(a) for a in arrs]}")
    cols = list(colours) if colours is not None else ["#404040", *POSE_COLOURS][:k]
    if len(cols) != k:
        raise ValueError(f"colours must hold {k} entries (one per label), got {len(cols)}")
    names = _names(titles, n, [""] * n, "titles")
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "scene"}] * n], subplot_titles=names, horizontal_spacing=0.01)
    for i, (poses, scene) in enumerate(zip(arrs, _scene_names(n), strict=True)):
        for pose, label, colour in zip(poses, labels, cols, strict=True):
            traces = _pose_traces(pose, skeleton, label=str(label), palette=_palette(colour), side_legend=False,
                                  showlegend=i == 0, scene=scene, marker_size=3.0, line_width=5.0)  # fmt: skip
            for tr in traces:
                tr.legendgroup = str(label)  # one legend entry toggles this kind in every scene
            fig.add_traces(traces)
    fig.update_layout(**_base_layout(title, height, uirevision))
    fig.update_layout(margin={"t": 48 if title else 28},
                      legend={"orientation": "h", "x": 0.0, "y": 0.0, "yanchor": "top"})  # fmt: skip
    fig.update_scenes(**_scene_layout(axis_ranges(*arrs), ticks=False))
    return fig


class PoseFigureTemplate:
    """The JSON of :func:`pose_figure` for one pose in a fixed layout, written without plotly objects.

    Building plotly objects validates every property (tens of milliseconds per figure); a view that
    redraws one pose per slider move only needs new coordinates. The figure is built once with
    :func:`pose_figure` and its layout serialised once; :meth:`to_json` then writes the four traces
    of a new pose (left, right, centre bones and joints, as :func:`pose_figure` draws them) around
    that layout in well under a millisecond. The result equals ``pose_figure(...).to_json()``.

    Args:
        label: legend / hover name of the pose.
        axis_range: the fixed display ranges (:func:`axis_ranges`); a template cannot refit them.
        title, skeleton, uirevision, height: as :func:`pose_figure`.
    """

    def __init__(self, label: str = "pose", *, axis_range: Range3, title: str | None = None, skeleton: Skeleton = H36M_17,
                 uirevision: Any = "pose", height: int = DEFAULT_HEIGHT) -> None:  # fmt: skip
        self.skeleton = skeleton
        fig = pose_figure(np.zeros((skeleton.num_joints, 3)), labels=label, title=title, skeleton=skeleton,
                          axis_range=axis_range, uirevision=uirevision, height=height)  # fmt: skip
        doc = json.loads(fig.to_json())
        self._traces: list[dict[str, Any]] = doc["data"]
        self._layout = json.dumps(doc["layout"], separators=(",", ":"))

    def to_json(self, joints: np.ndarray) -> str:
        """Plotly figure JSON (``{"data": [...], "layout": {...}}``) of one pose (J, 3) mm, camera frame."""
        xyz = _pose_xyz(_check_pose(joints, self.skeleton), self.skeleton)
        data = [{**trace, **xyz[key]} for trace, key in zip(self._traces, (*SIDES, "joints"), strict=True)]
        return '{"data":' + json.dumps(data, separators=(",", ":")) + ',"layout":' + self._layout + "}"


# ----------------------------------------------------------------------------- sequence figures
def sequence_figure(
    seq: np.ndarray,
    fps: float = 30.0,
    title: str | None = None,
    *,
    other: np.ndarray | None = None,
    labels: Sequence[str] = ("sequence", "other"),
    trajectory: np.ndarray | None = None,
    skeleton: Skeleton = H36M_17,
    uirevision: Any = "sequence",
    height: int = ANIMATION_HEIGHT,
) -> go.Figure:
    """An animated 3D sequence with play / pause buttons and a frame slider.

    Args:
        seq: (T, J, 3) mm, root-relative, camera frame.
        fps: playback rate, frames per second.
        title: figure title.
        other: optional second sequence (T, J, 3) overlaid in another colour (e.g. ground truth).
        labels: legend names of ``seq`` and ``other``.
        trajectory: optional (T, 3) root positions, mm, camera frame. The poses (both sequences) are
            drawn at ``joints + trajectory[t]`` and the root's path is shown as a thin line.
        uirevision: see :func:`pose_figure`.

    Returns:
        A figure with T frames named '0'..'T-1' (each updating only the pose traces: 4, or 8 with
        ``other``), a slider with T steps and one fixed axis range for all frames; the root path,
        when given, is the last trace and stays static.

    Note: Gradio's ``gr.Plot`` (6.x) passes only data and layout to ``Plotly.react`` and drops the
    frames, so the animation plays in notebooks and in :func:`figure_to_html` pages but not there.
    """
    s = _check_sequence(seq, skeleton, "seq")
    t_len = len(s)
    seqs = [s]
    if other is not None:
        o = _check_sequence(other, skeleton, "other")
        if len(o) != t_len:
            raise ValueError(f"other must have the same number of frames as seq ({t_len}), got {len(o)}")
        seqs.append(o)
    if isinstance(labels, str) or len(labels) != 2:
        raise ValueError(f"labels must hold 2 names (seq, other), got {labels!r}")
    names = [str(v) for v in labels]
    traj = None
    if trajectory is not None:
        traj = _float_array(trajectory, "trajectory", f"(T, 3) = ({t_len}, 3)")
        if traj.shape != (t_len, 3):
            raise ValueError(f"trajectory must have shape (T, 3) = ({t_len}, 3), got {traj.shape}")
        seqs = [q + traj[:, None, :] for q in seqs]
    palettes = [_palette(None), _palette(POSE_COLOURS[0])]
    side_legend = len(seqs) == 1
    fig = go.Figure()
    for k, q in enumerate(seqs):
        fig.add_traces(
            _pose_traces(q[0], skeleton, label=names[k], palette=palettes[k], side_legend=side_legend, showlegend=True)
        )
    n_dyn = 4 * len(seqs)
    if traj is not None:
        path = to_display(traj)
        fig.add_trace(
            go.Scatter3d(
                x=_clean(path[:, 0]),
                y=_clean(path[:, 1]),
                z=_clean(path[:, 2]),
                mode="lines",
                name="root path",
                line={"color": "#7f7f7f", "width": 2},
                hoverinfo="skip",
            )
        )
    frames = []
    for t in range(t_len):
        data: list[go.Scatter3d] = []
        for q in seqs:
            data += _frame_traces(q[t], skeleton)
        frames.append(go.Frame(data=data, name=str(t), traces=list(range(n_dyn))))
    fig.frames = frames
    extra = [traj] if traj is not None else []
    fig.update_layout(
        **_base_layout(title, height, uirevision, bottom=64),
        scene=_scene_layout(axis_ranges(*seqs, *extra)),
        **_animation_controls(t_len, fps),
    )
    return fig


def sequences_side_by_side(
    seqs: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    fps: float = 30.0,
    *,
    title: str | None = None,
    skeleton: Skeleton = H36M_17,
    uirevision: Any = "sequence-pair",
    height: int = ANIMATION_HEIGHT,
) -> go.Figure:
    """Animated 3D scenes in a row, played in sync (e.g. a motion relation's anchor and counterpart).

    Args:
        seqs: sequences (T_i, J, 3) mm; the animation has max(T_i) frames and a shorter sequence
            holds its last frame.
        titles: one caption per sequence.
        fps: playback rate.

    Returns:
        A figure with 4 traces per sequence, max(T_i) frames (each updating every pose trace), a
        slider with one step per frame and one axis range shared by all scenes and frames.
    """
    if isinstance(seqs, np.ndarray):
        seqs = list(seqs) if seqs.ndim == 4 else [seqs]
    if len(seqs) == 0:
        raise ValueError(f"seqs must hold at least one sequence of shape (T, {skeleton.num_joints}, 3)")
    arrs = [_check_sequence(q, skeleton, f"seqs[{i}]") for i, q in enumerate(seqs)]
    n = len(arrs)
    if n > MAX_SCENES:
        raise ValueError(f"seqs must hold at most {MAX_SCENES} sequences (one WebGL scene each), got {n}")
    names = _names(titles, n, [""] * n, "titles")
    t_len = max(len(q) for q in arrs)
    fig = make_subplots(rows=1, cols=n, specs=[[{"type": "scene"}] * n], subplot_titles=names, horizontal_spacing=0.01)
    for i, (q, scene) in enumerate(zip(arrs, _scene_names(n), strict=True)):
        fig.add_traces(
            _pose_traces(
                q[0],
                skeleton,
                label=names[i] or f"sequence {i + 1}",
                palette=_palette(None),
                side_legend=True,
                showlegend=i == 0,
                scene=scene,
            )
        )
    frames = []
    for t in range(t_len):
        data: list[go.Scatter3d] = []
        for q in arrs:
            data += _frame_traces(q[min(t, len(q) - 1)], skeleton)
        frames.append(go.Frame(data=data, name=str(t), traces=list(range(4 * n))))
    fig.frames = frames
    fig.update_layout(**_base_layout(title, height, uirevision, bottom=64), **_animation_controls(t_len, fps))
    fig.update_layout(margin={"t": 48 if title else 28})
    fig.update_scenes(**_scene_layout(axis_ranges(*arrs)))
    return fig


# ----------------------------------------------------------------------------- latent maps
def pca_2d(z_bank: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fit a 2D PCA to a latent bank with numpy's SVD.

    Args:
        z_bank: (N, D) latents, N >= 2, D >= 2.

    Returns:
        ``mean`` (D,), ``components`` (2, D) orthonormal rows, ``explained`` (2,) fraction of the
        bank's variance on each component. Signs are fixed so each component's largest-magnitude
        entry is positive (deterministic). Project with ``(z - mean) @ components.T``.
    """
    z = _float_array(z_bank, "z_bank", "(N, D)")
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[1] < 2:
        raise ValueError(f"z_bank must have shape (N, D) with N >= 2 and D >= 2, got {z.shape}")
    if not np.isfinite(z).all():
        raise ValueError("z_bank must be finite")
    mean = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - mean, full_matrices=False)
    comps = vt[:2].copy()
    for k in range(2):
        if comps[k, np.argmax(np.abs(comps[k]))] < 0:
            comps[k] = -comps[k]
    total = float((s**2).sum())
    explained = (s[:2] ** 2) / total if total > 0 else np.zeros(2)
    return mean, comps, explained


def latent_pca_figure(
    z_bank: np.ndarray,
    highlights: Mapping[str, np.ndarray] | None = None,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    *,
    title: str | None = None,
    bank_name: str = "latent bank",
    uirevision: Any = "latent-pca",
    height: int = DEFAULT_HEIGHT,
    max_arrows: int = 100,
) -> go.Figure:
    """2D PCA map of a latent bank with highlighted points and arrows joining pairs.

    Like the paper's figure of relations in latent space: the bank in grey, e.g. anchors,
    counterparts and predicted counterparts highlighted, and an arrow from each pair's first to
    its second latent.

    Args:
        z_bank: (N, D) latents the PCA is fitted on.
        highlights: name -> (K, D) (or (D,)) latents drawn as coloured markers, one trace each.
        pairs: (start (D,), end (D,)) latents, joined by one line trace (None separators) and, for
            the first ``max_arrows``, arrowheads.

    Returns:
        A figure with traces [bank, one per highlight, pairs (if any)]; axes PC1 / PC2 with the
        explained variance, equal scale on both axes.
    """
    mean, comps, explained = pca_2d(z_bank)
    d = comps.shape[1]
    proj = (np.asarray(z_bank, dtype=np.float64) - mean) @ comps.T
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=_clean(proj[:, 0]),
            y=_clean(proj[:, 1]),
            mode="markers",
            name=bank_name,
            marker={"size": 4, "color": "#b0b0b0", "opacity": 0.5},
            hovertemplate=bank_name + " #%{pointNumber}<extra></extra>",
        )
    )
    symbols = ("circle", "diamond", "x", "square", "cross", "triangle-up")
    for i, (name, pts) in enumerate((highlights or {}).items()):
        h = _float_array(pts, f"highlights[{name!r}]", f"(K, {d})")
        h = h[None] if h.ndim == 1 else h
        if h.ndim != 2 or h.shape[1] != d:
            raise ValueError(f"highlights[{name!r}] must have shape (K, D) = (K, {d}), got {h.shape}")
        hp = (h - mean) @ comps.T
        fig.add_trace(
            go.Scatter(
                x=_clean(hp[:, 0]),
                y=_clean(hp[:, 1]),
                mode="markers",
                name=str(name),
                marker={
                    "size": 9,
                    "color": HIGHLIGHT_COLOURS[i % len(HIGHLIGHT_COLOURS)],
                    "symbol": symbols[i % 6],
                    "line": {"width": 1, "color": "white"},
                },
                hovertemplate=str(name) + " #%{pointNumber}<extra></extra>",
            )
        )
    if pairs:
        starts, ends = [], []
        for i, pair in enumerate(pairs):
            if len(pair) != 2:
                raise ValueError(f"pairs[{i}] must be a (start, end) tuple of latents of shape ({d},)")
            a = _float_array(pair[0], f"pairs[{i}][0]", f"({d},)")
            b = _float_array(pair[1], f"pairs[{i}][1]", f"({d},)")
            if a.shape != (d,) or b.shape != (d,):
                raise ValueError(f"pairs[{i}] latents must have shape (D,) = ({d},), got {a.shape} and {b.shape}")
            starts.append(a)
            ends.append(b)
        ps, pe = (np.stack(starts) - mean) @ comps.T, (np.stack(ends) - mean) @ comps.T
        xs = np.stack([ps[:, 0], pe[:, 0], np.full(len(ps), np.nan)], axis=1).ravel()
        ys = np.stack([ps[:, 1], pe[:, 1], np.full(len(ps), np.nan)], axis=1).ravel()
        fig.add_trace(
            go.Scatter(
                x=_clean(xs),
                y=_clean(ys),
                mode="lines",
                name="pairs",
                line={"color": "#555", "width": 1},
                hoverinfo="skip",
            )
        )
        for a, b in list(zip(ps, pe, strict=True))[:max_arrows]:
            fig.add_annotation(
                x=float(b[0]),
                y=float(b[1]),
                ax=float(a[0]),
                ay=float(a[1]),
                xref="x",
                yref="y",
                axref="x",
                ayref="y",
                showarrow=True,
                arrowhead=2,
                arrowsize=1,
                arrowwidth=1,
                arrowcolor="#555",
                text="",
                opacity=0.8,
            )
    fig.update_layout(**_base_layout(title, height, uirevision))
    fig.update_layout(margin={"l": 50, "r": 10, "t": 36 if title else 10, "b": 40}, legend={"x": 1.0, "xanchor": "right"})
    fig.update_xaxes(title={"text": f"PC1 ({100 * explained[0]:.0f}% var.)"}, zeroline=False)
    fig.update_yaxes(title={"text": f"PC2 ({100 * explained[1]:.0f}% var.)"}, zeroline=False, scaleanchor="x", scaleratio=1)
    return fig


def joint_influence_figure(
    influence: np.ndarray,
    joint_names: Sequence[str] | None = None,
    *,
    title: str | None = None,
    skeleton: Skeleton = H36M_17,
    colorbar_title: str = "mm",
    uirevision: Any = "influence",
) -> go.Figure:
    """Heatmap of how much each latent dimension moves each joint.

    Args:
        influence: (D, J) non-negative scores, e.g. mean joint displacement in mm when latent
            dimension d is perturbed.
        joint_names: J names; default: the skeleton's.

    Returns:
        A figure with one heatmap trace, rows z0..z{D-1} (top to bottom), columns the joints.
    """
    names = list(joint_names) if joint_names is not None else list(skeleton.joint_names)
    inf = _float_array(influence, "influence", f"(D, J) = (D, {len(names)})")
    if inf.ndim != 2 or inf.shape[1] != len(names) or inf.shape[0] == 0:
        raise ValueError(f"influence must have shape (D, J) = (D, {len(names)}), got {inf.shape}")
    dims = [f"z{d}" for d in range(inf.shape[0])]
    fig = go.Figure(
        go.Heatmap(
            z=[_clean(r) for r in inf],
            x=names,
            y=dims,
            colorscale="Blues",
            colorbar={"title": {"text": colorbar_title}, "thickness": 12},
            hovertemplate="%{y} → %{x}: %{z:.3g}<extra></extra>",
        )
    )
    height = int(min(900, max(300, 14 * inf.shape[0] + 130)))
    fig.update_layout(**_base_layout(title, height, uirevision))
    fig.update_layout(margin={"l": 40, "r": 10, "t": 36 if title else 10, "b": 80})
    fig.update_yaxes(autorange="reversed", tickfont={"size": 9})
    fig.update_xaxes(tickangle=-45, tickfont={"size": 10})
    return fig


# ----------------------------------------------------------------------------- charts
def loss_curves_figure(
    history: Mapping[str, Sequence[tuple[int, float]]],
    title: str | None = None,
    log_y: bool = False,
    *,
    x_title: str = "step",
    y_title: str | None = None,
    uirevision: Any = "curves",
    height: int = 320,
) -> go.Figure:
    """Line chart of named curves over steps (training / adaptation progress).

    Args:
        history: name -> [(step, value), ...]; one trace per name (an empty list gives an empty trace).
        log_y: logarithmic y axis (non-positive values are not shown).

    Returns:
        A figure with one line trace per name; ``uirevision`` keeps the user's zoom across live updates.
    """
    fig = go.Figure()
    for name, points in history.items():
        try:
            pts = np.asarray(list(points), dtype=np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
        except (TypeError, ValueError):
            raise ValueError(f"history[{name!r}] must be a list of (step, value) pairs") from None
        if pts.ndim != 2 or pts.shape[1] != 2 or (len(points) and len(pts) != len(points)):
            raise ValueError(f"history[{name!r}] must be a list of (step, value) pairs")
        ys = [float(f"{v:.6g}") if math.isfinite(v) else None for v in pts[:, 1]]
        fig.add_trace(
            go.Scatter(
                x=_clean(pts[:, 0]),
                y=ys,
                mode="lines+markers" if len(pts) <= 30 else "lines",
                name=str(name),
                marker={"size": 5},
                line={"width": 2},
            )
        )
    fig.update_layout(**_base_layout(title, height, uirevision))
    fig.update_layout(
        margin={"l": 50, "r": 10, "t": 36 if title else 10, "b": 40},
        legend={"x": 1.0, "xanchor": "right"},
        hovermode="x unified",
    )
    fig.update_xaxes(title={"text": x_title})
    fig.update_yaxes(title={"text": y_title} if y_title else None, type="log" if log_y else "linear")
    return fig


def bar_table_figure(
    rows: Sequence[Mapping[str, Any]],
    x: str,
    y: str,
    title: str | None = None,
    *,
    group: str | None = None,
    text_format: str = ".1f",
    uirevision: Any = "table",
    height: int = 360,
) -> go.Figure:
    """A bar chart of a table given as rows (dicts), e.g. an ablation's errors per variant.

    Args:
        rows: one dict per row; every row needs the keys ``x``, ``y`` (numeric) and ``group`` if set.
        x: column of the bar categories; y: column of the bar heights.
        group: optional column that splits the bars into grouped series (one trace per value).
        text_format: d3 format of the value printed on each bar.

    Returns:
        A figure with one bar trace (or one per group value).
    """
    keys = [x, y] + ([group] if group is not None else [])
    series: dict[str, tuple[list[str], list[float]]] = {}
    for i, row in enumerate(rows):
        missing = [k for k in keys if k not in row]
        if missing:
            raise ValueError(f"rows[{i}] lacks the column(s) {missing}; it has {sorted(row)}")
        try:
            val = float(row[y])
        except (TypeError, ValueError):
            raise ValueError(f"rows[{i}][{y!r}] must be a number, got {row[y]!r}") from None
        key = str(row[group]) if group is not None else y
        series.setdefault(key, ([], []))
        series[key][0].append(str(row[x]))
        series[key][1].append(val)
    fig = go.Figure()
    for i, (name, (xs, ys)) in enumerate(series.items()):
        fig.add_trace(
            go.Bar(
                x=xs,
                y=ys,
                name=name,
                text=ys,
                texttemplate="%{text:" + text_format + "}",
                textposition="outside",
                marker={"color": HIGHLIGHT_COLOURS[(i + 1) % 6]},
                cliponaxis=False,
            )
        )
    fig.update_layout(**_base_layout(title, height, uirevision))
    fig.update_layout(
        barmode="group",
        showlegend=group is not None,
        margin={"l": 50, "r": 10, "t": 40 if title else 20, "b": 40},
        legend={"x": 1.0, "xanchor": "right"},
    )
    fig.update_xaxes(title={"text": x})
    fig.update_yaxes(title={"text": y})
    return fig


# ----------------------------------------------------------------------------- images
def image_with_skeleton(
    image: np.ndarray,
    joints2d: np.ndarray,
    box: Sequence[float] | np.ndarray | None = None,
    visible: Sequence[bool] | np.ndarray | None = None,
    *,
    skeleton: Skeleton = H36M_17,
    thickness: int | None = None,
    radius: int | None = None,
) -> np.ndarray:
    """Draw a 2D skeleton (and a box) onto a copy of an RGB image with OpenCV.

    Args:
        image: (H, W, 3) uint8 RGB; not modified.
        joints2d: (J, 2) pixel coordinates (x right, y down).
        box: optional (4,) (x0, y0, x1, y1) pixels, drawn in green.
        visible: optional (J,) bools; hidden or non-finite joints and their bones are not drawn.
        thickness / radius: bone width and joint radius in pixels; default scales with the image.

    Returns:
        (H, W, 3) uint8 copy with bones coloured by side (left blue, right red, centre amber).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be a uint8 array of shape (H, W, 3), got {img.dtype} {img.shape}")
    j = skeleton.num_joints
    pts = _float_array(joints2d, "joints2d", f"(J, 2) = ({j}, 2)")
    if pts.shape != (j, 2):
        raise ValueError(f"joints2d must have shape (J, 2) = ({j}, 2), got {pts.shape}")
    vis = np.isfinite(pts).all(axis=1)
    if visible is not None:
        v = np.asarray(visible)
        if v.shape != (j,):
            raise ValueError(f"visible must have shape (J,) = ({j},), got {v.shape}")
        vis &= v.astype(bool)
    h, w = img.shape[:2]
    scale = max(h, w) / 256.0
    thick = int(thickness) if thickness is not None else max(1, round(2 * scale))
    rad = int(radius) if radius is not None else max(2, round(3 * scale))
    out = np.ascontiguousarray(img.copy())
    shift = 2  # quarter-pixel precision
    lim = 4 * max(h, w) + 64
    fixed = np.round(np.clip(np.nan_to_num(pts), -lim, lim) * (1 << shift)).astype(np.int64)

    def pt(i: int) -> tuple[int, int]:
        return int(fixed[i, 0]), int(fixed[i, 1])

    if box is not None:
        b = _float_array(box, "box", "(4,) = (x0, y0, x1, y1)")
        if b.shape != (4,) or not np.isfinite(b).all():
            raise ValueError(f"box must have shape (4,) = (x0, y0, x1, y1), got {b.shape}")
        bf = np.round(np.clip(b, -lim, lim) * (1 << shift)).astype(np.int64)
        cv2.rectangle(
            out,
            (int(bf[0]), int(bf[1])),
            (int(bf[2]), int(bf[3])),
            BOX_COLOUR_RGB,
            max(1, thick // 2 + 1),
            cv2.LINE_AA,
            shift,
        )
    for p, c in skeleton.edges:
        if vis[p] and vis[c]:
            cv2.line(out, pt(p), pt(c), SIDE_COLOURS_RGB[skeleton.side(c)], thick, cv2.LINE_AA, shift)
    for i in range(j):
        if vis[i]:
            cv2.circle(out, pt(i), rad << shift, SIDE_COLOURS_RGB[skeleton.side(i)], -1, cv2.LINE_AA, shift)
            cv2.circle(out, pt(i), rad << shift, (255, 255, 255), 1, cv2.LINE_AA, shift)
    return out


# ----------------------------------------------------------------------------- export
def figure_to_html(fig: go.Figure, path: str | os.PathLike[str]) -> Path:
    """Write a standalone HTML page with plotly.js inlined (works offline); returns the path.

    Animations do not start on their own: use the play button.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(out, include_plotlyjs=True, full_html=True, auto_play=False)
    return out
