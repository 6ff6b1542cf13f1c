"""Figures of nlrd.viz: trace and frame counts, bone segments, upright display, fixed ranges, PCA, overlays."""

from __future__ import annotations

import re

import numpy as np
import plotly.graph_objects as go
import pytest

from nlrd import viz
from nlrd.skeleton import H36M_17

J = H36M_17.num_joints
N_BONES = len(H36M_17.edges)  # 16
HEAD, R_ANKLE, L_ANKLE = H36M_17.index("head"), H36M_17.index("r_ankle"), H36M_17.index("l_ankle")


def standing_pose() -> np.ndarray:
    """(17, 3) mm, camera frame (y down): a person standing upright, facing the camera."""
    p = np.zeros((J, 3))
    set_ = {
        "r_hip": (-130, 0, 0),
        "r_knee": (-130, 440, 0),
        "r_ankle": (-130, 890, 0),
        "l_hip": (130, 0, 0),
        "l_knee": (130, 440, 0),
        "l_ankle": (130, 890, 0),
        "spine": (0, -230, 0),
        "thorax": (0, -490, 0),
        "neck": (0, -610, -20),
        "head": (0, -720, 0),
        "l_shoulder": (150, -480, 0),
        "l_elbow": (180, -220, 0),
        "l_wrist": (190, 20, 0),
        "r_shoulder": (-150, -480, 0),
        "r_elbow": (-180, -220, 0),
        "r_wrist": (-190, 20, 0),
    }
    for name, xyz in set_.items():
        p[H36M_17.index(name)] = xyz
    return p


def walking(t: int = 12, seed: int = 0) -> np.ndarray:
    """(T, 17, 3) mm: the standing pose with moving limbs."""
    rng = np.random.default_rng(seed)
    base = standing_pose()
    seq = base[None] + rng.normal(scale=40.0, size=(t, J, 3)) * np.linspace(0.2, 1.5, t)[:, None, None]
    return seq - seq[:, :1]


def segments(trace) -> int:
    """Number of 2-point segments in a None-separated line trace."""
    xs = list(trace.x)
    count, run = 0, 0
    for v in xs + [None]:
        if v is None:
            count += run == 2
            assert run in (0, 2)
            run = 0
        else:
            run += 1
    return count


def line_traces(fig: go.Figure) -> list:
    return [t for t in fig.data if t.type == "scatter3d" and t.mode == "lines" and t.name != "root path"]


def test_pose_figure_single_and_overlay() -> None:
    fig = viz.pose_figure(standing_pose())
    assert isinstance(fig, go.Figure)
    assert len(fig.data) == 4
    assert sum(segments(t) for t in line_traces(fig)) == N_BONES
    assert fig.layout.uirevision == "pose"
    assert fig.layout.scene.aspectmode == "cube"
    lengths = [r[1] - r[0] for r in (fig.layout.scene.xaxis.range, fig.layout.scene.yaxis.range, fig.layout.scene.zaxis.range)]
    assert np.allclose(lengths, lengths[0])

    two = viz.pose_figure([standing_pose(), standing_pose() + 10.0], labels=["pred", "gt"], uirevision="u1")
    assert len(two.data) == 8
    assert sum(segments(t) for t in line_traces(two)) == 2 * N_BONES
    assert two.layout.uirevision == "u1"
    # different poses get different colours
    assert two.data[0].line.color != two.data[4].line.color
    assert {two.data[3].name, two.data[7].name} == {"pred", "gt"}
    # an (N, J, 3) stack works too, and hover text names joints
    stack = viz.pose_figure(np.stack([standing_pose()] * 3), colours=["#112233", "#445566", "#778899"])
    assert len(stack.data) == 12
    assert list(stack.data[3].text) == list(H36M_17.joint_names)


def test_display_is_upright() -> None:
    fig = viz.pose_figure(standing_pose())
    joints = fig.data[3]
    z = np.asarray(joints.z, dtype=float)  # display vertical axis = -y
    assert z[HEAD] > z[R_ANKLE] + 1000 and z[HEAD] > z[L_ANKLE] + 1000
    assert np.allclose(z, -standing_pose()[:, 1], atol=0.01)
    assert np.allclose(np.asarray(joints.y, dtype=float), standing_pose()[:, 2], atol=0.01)  # depth
    # left joints (x > 0 in the camera frame) stay on the display's +x side: no mirror
    assert np.asarray(joints.x, dtype=float)[H36M_17.index("l_wrist")] > 0


def test_poses_side_by_side_and_grid() -> None:
    a, b = standing_pose(), standing_pose() * np.array([-1.0, 1.0, 1.0])
    fig = viz.poses_side_by_side([a, b * 1.5], titles=["anchor", "counterpart"])
    assert len(fig.data) == 8
    assert sum(segments(t) for t in line_traces(fig)) == 2 * N_BONES
    assert {t.scene for t in fig.data} == {"scene", "scene2"}
    assert fig.layout.scene.xaxis.range == fig.layout.scene2.xaxis.range
    assert fig.layout.scene.zaxis.range == fig.layout.scene2.zaxis.range

    grid = viz.pose_grid(walking(7), cols=3, titles=[f"s{i}" for i in range(7)])
    assert len(grid.data) == 4 * 7
    assert len({t.scene for t in grid.data}) == 7
    assert sum(segments(t) for t in line_traces(grid)) == 7 * N_BONES
    with pytest.raises(ValueError, match="at most"):
        viz.pose_grid(np.zeros((viz.MAX_SCENES + 1, J, 3)))


def _ranges(layout_scene) -> tuple:
    return tuple(tuple(ax.range) for ax in (layout_scene.xaxis, layout_scene.yaxis, layout_scene.zaxis))


def test_sequence_figure_animation() -> None:
    t = 12
    seq = walking(t)
    fig = viz.sequence_figure(seq, fps=25, title="walk")
    assert len(fig.frames) == t
    assert [f.name for f in fig.frames] == [str(i) for i in range(t)]
    slider = fig.layout.sliders[0]
    assert len(slider.steps) == t
    assert [s.args[0][0] for s in slider.steps] == [str(i) for i in range(t)]
    buttons = fig.layout.updatemenus[0].buttons
    assert buttons[0].args[0] is None and list(buttons[1].args[0]) == [None]  # play, pause
    assert buttons[0].args[1]["frame"]["duration"] == pytest.approx(40.0)
    assert fig.layout.uirevision == "sequence"
    # ranges are fixed (no autorange), equal in length, hold every frame, and no frame changes them
    rng = _ranges(fig.layout.scene)
    assert fig.layout.scene.xaxis.autorange is False
    assert len({hi - lo for lo, hi in rng}) == 1
    for frame in fig.frames:
        assert frame.layout.scene.xaxis.range is None
        assert len(frame.data) == 4 and list(frame.traces) == [0, 1, 2, 3]
        assert sum(segments(tr) for tr in frame.data[:3]) == N_BONES
        j = frame.data[3]
        for k, vals in enumerate((j.x, j.y, j.z)):
            assert rng[k][0] <= min(vals) and max(vals) <= rng[k][1]
    # the last frame shows the last pose, upright
    last = np.asarray(fig.frames[-1].data[3].z, dtype=float)
    assert np.allclose(last, -seq[-1, :, 1], atol=0.01)


def test_sequence_figure_other_and_trajectory() -> None:
    t = 6
    seq, other = walking(t, 1), walking(t, 2)
    traj = np.stack([np.linspace(0, 1000, t), np.zeros(t), np.full(t, 4000.0)], axis=1)
    fig = viz.sequence_figure(seq, other=other, trajectory=traj)
    assert len(fig.data) == 9  # 2 poses x 4 + root path
    assert fig.data[-1].name == "root path"
    assert all(list(f.traces) == list(range(8)) for f in fig.frames)
    assert sum(segments(tr) for tr in fig.frames[0].data if tr.z is not None and None in tr.z) == 2 * N_BONES
    x_last = np.asarray(fig.frames[-1].data[3].x, dtype=float)
    assert np.allclose(x_last, seq[-1, :, 0] + 1000.0, atol=0.01)
    rng = _ranges(fig.layout.scene)
    assert rng[1][0] <= 4000.0 <= rng[1][1]  # depth of the trajectory is inside the fixed range
    with pytest.raises(ValueError, match=r"\(T, 3\)"):
        viz.sequence_figure(seq, trajectory=traj[:-1])
    with pytest.raises(ValueError, match="same number of frames"):
        viz.sequence_figure(seq, other=other[:-1])


def test_sequences_side_by_side_in_sync() -> None:
    a, b = walking(10, 3), walking(8, 4)
    fig = viz.sequences_side_by_side([a, b], titles=["anchor", "counterpart"], fps=30)
    assert len(fig.data) == 8
    assert len(fig.frames) == 10
    assert len(fig.layout.sliders[0].steps) == 10
    assert all(len(f.data) == 8 for f in fig.frames)
    assert _ranges(fig.layout.scene) == _ranges(fig.layout.scene2)
    # the shorter sequence holds its last frame
    assert np.allclose(np.asarray(fig.frames[9].data[7].z, dtype=float), -b[-1, :, 1], atol=0.01)


def test_pca_recovers_known_embedding() -> None:
    rng = np.random.default_rng(0)
    n, d = 300, 16
    emb = rng.normal(size=(n, 2))
    emb -= emb.mean(axis=0)
    q_emb, _ = np.linalg.qr(emb)
    emb = q_emb * np.array([50.0, 20.0])  # uncorrelated axes with distinct variances
    basis, _ = np.linalg.qr(rng.normal(size=(d, 2)))
    offset = rng.normal(size=d)
    bank = emb @ basis.T + offset
    mean, comps, explained = viz.pca_2d(bank)
    proj = (bank - mean) @ comps.T
    for k in range(2):
        assert np.allclose(np.abs(proj[:, k]), np.abs(emb[:, k]), atol=1e-8)
        sign = np.sign(proj[0, k] * emb[0, k])
        assert np.allclose(proj[:, k], sign * emb[:, k], atol=1e-8)
    assert explained.sum() == pytest.approx(1.0)

    anchors, counterparts = bank[:5], bank[5:10]
    fig = viz.latent_pca_figure(
        bank,
        highlights={"anchor": anchors, "counterpart": counterparts, "predicted": counterparts + 0.1},
        pairs=list(zip(anchors, counterparts, strict=True)),
    )
    assert [t.name for t in fig.data] == ["latent bank", "anchor", "counterpart", "predicted", "pairs"]
    assert np.allclose(np.asarray(fig.data[0].x, dtype=float), proj[:, 0], atol=0.01)
    assert segments(fig.data[-1]) == 5
    assert len(fig.layout.annotations) == 5
    with pytest.raises(ValueError, match=r"\(K, D\)"):
        viz.latent_pca_figure(bank, highlights={"bad": np.zeros((3, d + 1))})
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        viz.pca_2d(np.zeros(5))


def test_image_with_skeleton_draws_only_near_bones() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(240, 320, 3), dtype=np.uint8)
    before = img.copy()
    pose = standing_pose()
    j2d = pose[:, :2] * 0.15 + np.array([100.0, 120.0])  # person in the left half of the image
    out = viz.image_with_skeleton(img, j2d, box=(60.0, 5.0, 140.0, 260.0))
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(img, before)  # input untouched
    assert not np.array_equal(out, img)
    assert np.array_equal(out[:, 200:], img[:, 200:])  # far from every joint, bone and the box: unchanged
    hx, hy = np.round(j2d[HEAD]).astype(int)
    assert not np.array_equal(out[hy, hx], img[hy, hx])
    # hidden joints are skipped
    hidden = viz.image_with_skeleton(img, j2d, visible=np.arange(J) != HEAD)
    assert np.array_equal(hidden[hy - 3 : hy + 4, hx - 3 : hx + 4], img[hy - 3 : hy + 4, hx - 3 : hx + 4])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        viz.image_with_skeleton(img[..., 0], j2d)
    with pytest.raises(ValueError, match=r"\(J, 2\)"):
        viz.image_with_skeleton(img, j2d[:-1])


def test_charts() -> None:
    hist = {"loss": [(0, 1.0), (10, 0.5), (20, 0.25)], "mpjpe": [(0, 120.0), (20, 80.0)], "empty": []}
    fig = viz.loss_curves_figure(hist, title="adaptation", log_y=True)
    assert [t.name for t in fig.data] == ["loss", "mpjpe", "empty"]
    assert list(fig.data[0].x) == [0, 10, 20] and fig.layout.yaxis.type == "log"
    assert fig.layout.uirevision == "curves"
    with pytest.raises(ValueError, match="pairs"):
        viz.loss_curves_figure({"bad": [(1, 2, 3)]})

    rows = [
        {"variant": "full", "mpjpe": 70.1, "set": "a"},
        {"variant": "no-rel", "mpjpe": 90.3, "set": "a"},
        {"variant": "full", "mpjpe": 75.0, "set": "b"},
    ]
    bars = viz.bar_table_figure(rows, x="variant", y="mpjpe", title="ablation")
    assert len(bars.data) == 1 and list(bars.data[0].y) == [70.1, 90.3, 75.0]
    grouped = viz.bar_table_figure(rows, x="variant", y="mpjpe", group="set")
    assert [t.name for t in grouped.data] == ["a", "b"]
    with pytest.raises(ValueError, match="lacks"):
        viz.bar_table_figure([{"variant": "x"}], x="variant", y="mpjpe")

    inf = np.abs(np.random.default_rng(0).normal(size=(32, J)))
    heat = viz.joint_influence_figure(inf, H36M_17.joint_names)
    assert len(heat.data) == 1 and heat.data[0].type == "heatmap"
    assert list(heat.data[0].x) == list(H36M_17.joint_names) and len(heat.data[0].y) == 32
    with pytest.raises(ValueError, match=r"\(D, J\)"):
        viz.joint_influence_figure(inf[:, :-1], H36M_17.joint_names)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda: viz.pose_figure(np.zeros((16, 3))), r"\(J, 3\) = \(17, 3\)"),
        (lambda: viz.pose_figure([np.zeros((17, 3)), np.zeros((17, 2))]), r"\(J, 3\) = \(17, 3\)"),
        (lambda: viz.pose_figure(np.zeros((17, 3)), labels=["a", "b"]), "labels"),
        (lambda: viz.poses_side_by_side([np.zeros((17,))]), r"\(J, 3\)"),
        (lambda: viz.sequence_figure(np.zeros((17, 3))), r"\(T, J, 3\)"),
        (lambda: viz.sequence_figure(np.zeros((4, 17, 3)), fps=0), "fps"),
        (lambda: viz.sequences_side_by_side([np.zeros((4, 16, 3))]), r"\(T, J, 3\)"),
        (lambda: viz.pose_grid(np.zeros((3, 17))), r"\(N, J, 3\)"),
    ],
)
def test_bad_shapes_raise(call, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        call()


def test_figure_to_html_is_standalone(tmp_path) -> None:
    path = viz.figure_to_html(viz.sequence_figure(walking(3)), tmp_path / "out" / "seq.html")
    text = path.read_text(encoding="utf-8")
    assert path.exists() and "<html" in text
    assert re.findall(r"<script[^>]*\bsrc=", text) == []  # no external script: works offline
    assert len(text) > 1_000_000  # plotly.js inlined
