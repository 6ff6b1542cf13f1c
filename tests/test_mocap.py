"""Mocap readers: synthetic BVH round trips, bad inputs, and real CMU / Bandai Namco data checks."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from nlrd.data.mocap import (
    _Y_UP_TO_CAMERA,
    _Z_UP_TO_CAMERA,
    BANDAI_JOINT_MAP,
    guess_unit_mm,
    parse_bvh,
    read_bvh,
    read_cmu,
    read_mocap,
    resample,
)
from nlrd.data.poses import convert_files, list_mocap_files
from nlrd.kinematics import bone_lengths, relength
from nlrd.skeleton import H36M_17

# ----------------------------------------------------------------------------- a synthetic BVH
# (name, parent, offset in cm, channels); non-default rotation orders, 3- and 6-channel joints.
# The body stands Y-up facing +z (toes point +z) with its left side at +x.
_JOINTS: list[tuple[str, str | None, tuple[float, float, float], tuple[str, ...]]] = [
    ("Pelvis", None, (0, 0, 0), ("Xposition", "Yposition", "Zposition", "Yrotation", "Xrotation", "Zrotation")),
    ("LHip", "Pelvis", (10, -3, 0), ("Xrotation", "Zrotation", "Yrotation")),
    ("LKnee", "LHip", (0, -40, 2), ("Xrotation", "Zrotation", "Yrotation")),
    ("LAnkle", "LKnee", (0, -42, -2), ("Zrotation", "Xrotation", "Yrotation")),
    ("RHip", "Pelvis", (-10, -3, 0), ("Yrotation", "Zrotation", "Xrotation")),
    ("RKnee", "RHip", (0, -40, 2), ("Xrotation", "Yrotation", "Zrotation")),
    ("RAnkle", "RKnee", (0, -42, -2), ("Zrotation", "Yrotation", "Xrotation")),
    # position channels replace the OFFSET (as in the Bandai files): the offset here is a decoy
    ("Spine", "Pelvis", (0, 99, 0), ("Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation")),
    ("Chest", "Spine", (0, 25, 0), ("Zrotation", "Yrotation", "Xrotation")),
    ("Neck", "Chest", (0, 10, 1), ("Yrotation", "Xrotation", "Zrotation")),
    ("Head", "Neck", (0, 10, 0), ("Xrotation", "Yrotation", "Zrotation")),
    ("LShoulder", "Chest", (16, 5, 0), ("Yrotation", "Xrotation", "Zrotation")),
    ("LElbow", "LShoulder", (26, 0, 0), ("Zrotation", "Xrotation", "Yrotation")),
    ("LWrist", "LElbow", (24, 0, 0), ("Xrotation", "Zrotation", "Yrotation")),
    ("RShoulder", "Chest", (-16, 5, 0), ("Xrotation", "Yrotation", "Zrotation")),
    ("RElbow", "RShoulder", (-26, 0, 0), ("Yrotation", "Zrotation", "Xrotation")),
    ("RWrist", "RElbow", (-24, 0, 0), ("Zrotation", "Xrotation", "Yrotation")),
]
_END_SITES = {
    "LAnkle": (0, -6, 12), "RAnkle": (0, -6, 12), "Head": (0, 12, 2), "LWrist": (6, 0, 0), "RWrist": (-6, 0, 0),
}  # fmt: skip
_SPINE_POS = (0.5, 18.0, -1.0)  # the Spine's position channels, cm

SYN_MAP = {
    "pelvis": "Pelvis", "r_hip": "RHip", "r_knee": "RKnee", "r_ankle": "RAnkle", "l_hip": "LHip",
    "l_knee": "LKnee", "l_ankle": "LAnkle", "spine": "Spine", "thorax": "Chest", "neck": "Neck",
    "head": "Head_End", "l_shoulder": "LShoulder", "l_elbow": "LElbow", "l_wrist": "LWrist",
    "r_shoulder": "RShoulder", "r_elbow": "RElbow", "r_wrist": "RWrist",
}  # fmt: skip


def _bvh_text(values: np.ndarray, frame_time: float) -> str:
    """BVH text for _JOINTS with motion ``values`` (T, C)."""
    children: dict[str | None, list[int]] = {}
    for i, (_, parent, _, _) in enumerate(_JOINTS):
        children.setdefault(parent, []).append(i)
    lines = ["HIERARCHY"]

    def emit(i: int, depth: int) -> None:
        name, parent, off, chans = _JOINTS[i]
        pad = "\t" * depth
        lines.append(f"{pad}{'ROOT' if parent is None else 'JOINT'} {name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}\tOFFSET {off[0]} {off[1]} {off[2]}")
        lines.append(f"{pad}\tCHANNELS {len(chans)} {' '.join(chans)}")
        for c in children.get(name, []):
            emit(c, depth + 1)
        if name in _END_SITES:
            e = _END_SITES[name]
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\tOFFSET {e[0]} {e[1]} {e[2]}", f"{pad}\t}}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    lines += ["MOTION", f"Frames: {len(values)}", f"Frame Time: {frame_time}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    return "\n".join(lines) + "\n"


def _random_motion(n_frames: int, seed: int = 0) -> np.ndarray:
    """(T, C) channel values: root translation, Spine positions, and random angles up to 60 degrees."""
    rng = np.random.default_rng(seed)
    cols = []
    for name, _, _, chans in _JOINTS:
        for ch in chans:
            if ch.endswith("position"):
                if name == "Spine":
                    base = _SPINE_POS["XYZ".index(ch[0])]
                    cols.append(np.full(n_frames, base))
                else:
                    cols.append(rng.uniform(-100, 100, n_frames))
            else:
                cols.append(rng.uniform(-60, 60, n_frames))
    return np.stack(cols, axis=1)


def _expected_world(values: np.ndarray) -> dict[str, np.ndarray]:
    """Independent FK (scipy Euler angles, intrinsic order as listed) -> {name: (T, 3) cm}."""
    pos: dict[str, np.ndarray] = {}
    rot: dict[str, np.ndarray] = {}
    col = 0
    for name, parent, off, chans in _JOINTS:
        t = np.tile(np.asarray(off, dtype=float), (len(values), 1))
        order, angles = "", []
        for ch in chans:
            if ch.endswith("position"):
                t[:, "XYZ".index(ch[0])] = values[:, col]
            else:
                order += ch[0]
                angles.append(values[:, col])
            col += 1
        local = Rotation.from_euler(order, np.stack(angles, 1), degrees=True).as_matrix()  # upper case: intrinsic
        if parent is None:
            pos[name], rot[name] = t, local
        else:
            pos[name] = pos[parent] + np.einsum("tij,tj->ti", rot[parent], t)
            rot[name] = rot[parent] @ local
    for name, e in _END_SITES.items():
        pos[f"{name}_End"] = pos[name] + np.einsum("tij,j->ti", rot[name], np.asarray(e, dtype=float))
    return pos


def _to_camera_mm(world_cm: np.ndarray) -> np.ndarray:
    # Y-up world -> camera (x right, y down, z forward): 180 degrees about x, cm -> mm.
    return world_cm * 10.0 * np.array([1.0, -1.0, -1.0])


@pytest.fixture()
def synthetic_bvh(tmp_path: Path) -> tuple[Path, np.ndarray]:
    values = _random_motion(5)
    values[0, :] = 0.0  # frame 0: rest pose, root at the origin
    spine_cols = [i for i, c in enumerate(_channel_names()) if c.startswith("Spine.") and c.endswith("position")]
    values[0, spine_cols] = _SPINE_POS
    path = tmp_path / "synthetic.bvh"
    path.write_text(_bvh_text(values, 1.0 / 30.0))
    return path, values


def _channel_names() -> list[str]:
    return [f"{name}.{ch}" for name, _, _, chans in _JOINTS for ch in chans]


# ----------------------------------------------------------------------------- synthetic tests
def test_bvh_round_trip_channel_orders(synthetic_bvh: tuple[Path, np.ndarray]) -> None:
    path, values = synthetic_bvh
    seq = read_bvh(path, SYN_MAP, unit_mm=10.0, relength_bones=False)
    assert seq.joints.shape == (5, 17, 3) and seq.joints.dtype == np.float32
    assert seq.root.shape == (5, 3) and seq.fps == 30.0
    world = _expected_world(values)
    expected = np.stack([_to_camera_mm(world[SYN_MAP[n]]) for n in H36M_17.joint_names], axis=1)
    np.testing.assert_allclose(seq.root, expected[:, 0], atol=1e-3)
    np.testing.assert_allclose(seq.joints, expected - expected[:, :1], atol=1e-3)
    # Hand-checked rest pose (frame 0): the Spine sits at its position channels, not its OFFSET;
    # the left hip at +x, the head up (-y), the toes towards the camera (-z).
    j0 = seq.joints[0]
    np.testing.assert_allclose(j0[H36M_17.index("spine")], np.array(_SPINE_POS) * [10, -10, -10], atol=1e-3)
    np.testing.assert_allclose(j0[H36M_17.index("l_hip")], [100.0, 30.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(j0[H36M_17.index("head")], [5.0, -(180 + 250 + 100 + 100 + 120), -20.0], atol=1e-3)


def test_bvh_root_rotation_by_hand(tmp_path: Path) -> None:
    # Root Yrotation 90: the left hip's offset (10, -3, 0) cm turns to (0, -3, -10) in the world,
    # then (0, 30, 100) mm in the camera frame.
    values = np.zeros((2, len(_channel_names())))
    names = _channel_names()
    values[:, [names.index(f"Spine.{a}position") for a in "XYZ"]] = _SPINE_POS
    values[1, names.index("Pelvis.Yrotation")] = 90.0
    values[1, names.index("Pelvis.Xposition")] = 50.0
    path = tmp_path / "yaw.bvh"
    path.write_text(_bvh_text(values, 1.0 / 30.0))
    seq = read_bvh(path, SYN_MAP, unit_mm=10.0, relength_bones=False)
    np.testing.assert_allclose(seq.joints[1, H36M_17.index("l_hip")], [0.0, 30.0, 100.0], atol=1e-3)
    np.testing.assert_allclose(seq.root[1], [500.0, 0.0, 0.0], atol=1e-3)


def test_world_to_camera_rotations_are_proper_and_chirality_kept(synthetic_bvh: tuple[Path, np.ndarray]) -> None:
    for m in (_Y_UP_TO_CAMERA, _Z_UP_TO_CAMERA):
        np.testing.assert_allclose(m @ m.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(m) == pytest.approx(1.0)
    path, _ = synthetic_bvh
    j = read_bvh(path, SYN_MAP, unit_mm=10.0).joints[0]  # rest pose: faces +z in the BVH world
    left = j[H36M_17.index("l_hip")] - j[H36M_17.index("r_hip")]
    up = j[H36M_17.index("thorax")] - j[H36M_17.index("pelvis")]
    facing = np.cross(left, up)
    assert left[0] > 0 and up[1] < 0  # subject's left is +x, up is -y
    assert facing[2] / np.linalg.norm(facing) < -0.99  # faces the camera (-z), like the toes
    toes = _to_camera_mm(np.asarray(_END_SITES["LAnkle"], dtype=float))
    assert toes[2] < 0


def test_bvh_derived_joints_and_unit_guess(synthetic_bvh: tuple[Path, np.ndarray]) -> None:
    path, values = synthetic_bvh
    world = _expected_world(values)
    jmap = dict(SYN_MAP)
    jmap["neck"] = ("mid", "Neck", "Head")
    jmap["head"] = ("extend", "Neck", "Head", 1.5)
    jmap["l_wrist"] = ("local", "LWrist", _END_SITES["LWrist"])
    seq = read_bvh(path, jmap, unit_mm=10.0, relength_bones=False)
    cam = {k: _to_camera_mm(v) for k, v in world.items()}
    rel = {k: v - cam["Pelvis"] for k, v in cam.items()}
    np.testing.assert_allclose(seq.joints[:, H36M_17.index("neck")], (rel["Neck"] + rel["Head"]) / 2, atol=1e-3)
    np.testing.assert_allclose(seq.joints[:, H36M_17.index("head")], rel["Head"] + 1.5 * (rel["Head"] - rel["Neck"]), atol=1e-3)
    np.testing.assert_allclose(seq.joints[:, H36M_17.index("l_wrist")], rel["LWrist_End"], atol=1e-3)
    # Unit guess from the rest-pose legs: these are cm; the same file in metres reads as metres.
    motion = parse_bvh(path.read_text())
    assert guess_unit_mm(motion, SYN_MAP) == 10.0

    def to_metres(m: re.Match) -> str:
        return "OFFSET " + " ".join(str(float(v) / 100) for v in m.group(1).split())

    metres = re.sub(r"OFFSET ([-\d.e ]+)", to_metres, path.read_text())
    assert guess_unit_mm(parse_bvh(metres), SYN_MAP) == 1000.0


def test_bvh_resampling_and_gzip(tmp_path: Path) -> None:
    values = _random_motion(13, seed=1)
    names = _channel_names()
    values[:, names.index("Pelvis.Xposition")] = np.arange(13) * 10.0  # 10 cm per source frame
    for frame_time, expected_x in ((1 / 120, np.arange(0, 13, 4) * 100.0), (1 / 50, None)):
        path = tmp_path / f"ft{int(round(1 / frame_time))}.bvh.gz"
        with gzip.open(path, "wt") as fh:
            fh.write(_bvh_text(values, frame_time))
        seq = read_bvh(path, SYN_MAP, unit_mm=10.0)
        if expected_x is not None:  # 120 -> 30 fps: every 4th frame, exactly
            np.testing.assert_allclose(seq.root[:, 0], expected_x, atol=1e-3)
        else:  # 50 -> 30 fps: linear interpolation at t = 0, 1/30, ... <= 12/50 s
            t = np.arange(0, 12 / 50 + 1e-9, 1 / 30)
            np.testing.assert_allclose(seq.root[:, 0], t * 50 * 100.0, atol=1e-2)
            assert seq.joints.shape[0] == len(t)
    x = np.arange(10.0)[:, None]
    np.testing.assert_allclose(resample(x, 60.0, 30.0)[:, 0], [0, 2, 4, 6, 8])


# ----------------------------------------------------------------------------- bad inputs
def test_truncated_bvh_raises(synthetic_bvh: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, _ = synthetic_bvh
    text = path.read_text()
    bad = tmp_path / "truncated.bvh"
    bad.write_text(text[: len(text) - 200])  # cut inside the last frame
    with pytest.raises(ValueError, match=r"truncated\.bvh.*truncated"):
        read_bvh(bad, SYN_MAP)
    bad.write_text(text[: text.index("MOTION") - 40])  # cut inside the hierarchy
    with pytest.raises(ValueError, match=r"truncated\.bvh.*(truncated|MOTION)"):
        read_bvh(bad, SYN_MAP)


def test_bvh_with_unknown_joints_raises(synthetic_bvh: tuple[Path, np.ndarray]) -> None:
    path, _ = synthetic_bvh
    with pytest.raises(ValueError, match=r"synthetic\.bvh.*does not have.*Hips"):
        read_bvh(path)  # the default (Bandai Namco) map names joints this file lacks
    with pytest.raises(ValueError, match=r"no entry for \['head'\]"):
        read_bvh(path, {k: v for k, v in SYN_MAP.items() if k != "head"})


def test_empty_files_raise(tmp_path: Path) -> None:
    bvh, txt = tmp_path / "empty.bvh", tmp_path / "empty.txt"
    bvh.write_text("")
    txt.write_text("\n")
    with pytest.raises(ValueError, match=r"empty\.bvh: empty"):
        read_bvh(bvh, SYN_MAP)
    with pytest.raises(ValueError, match=r"empty\.txt: empty"):
        read_cmu(txt, _cmu_json(tmp_path))


def test_non_numeric_cmu_line_raises(tmp_path: Path) -> None:
    good = ",".join(["0.0"] * 117)
    path = tmp_path / "walking_9.txt"
    path.write_text("\n".join([good, good, ",".join(["0.0"] * 116 + ["abc"]), good]) + "\n")
    with pytest.raises(ValueError, match=r"walking_9\.txt: line 3 is not numeric"):
        read_cmu(path, _cmu_json(tmp_path))
    path.write_text("\n".join([good, ",".join(["0.0"] * 50)]) + "\n")
    with pytest.raises(ValueError, match=r"walking_9\.txt: line 2 has 50 values"):
        read_cmu(path, _cmu_json(tmp_path))
    with pytest.raises(ValueError, match="unknown mocap file type"):
        read_mocap(tmp_path / "clip.fbx")


def _cmu_json(tmp_path: Path) -> Path:
    """A stand-in CMU skeleton table (38 joints) for tests that never reach FK."""
    import json

    path = tmp_path / "cmu38_skeleton.json"
    parents = [-1] + list(range(37))
    spec = {"parents": parents, "offsets_asf_units": [[0.0, 1.0, 0.0]] * 38,
            "h36m17_from_cmu38": {"indices": list(range(17))}}  # fmt: skip
    path.write_text(json.dumps(spec))
    return path


# ----------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def converted(data_root: Path) -> dict:
    """Every CMU and Bandai Namco file, converted once (not re-lengthed), with its listing."""
    files = list_mocap_files(data_root)
    seqs = convert_files(files, workers=2, progress=False)
    return {"files": files, "seqs": seqs}


def _select(converted: dict, pattern: str) -> list:
    return [s for f, s in zip(converted["files"], converted["seqs"], strict=True) if re.search(pattern, f.name)]


def test_all_files_convert_with_expected_frame_counts(converted: dict, data_root: Path) -> None:
    cmu_paths = sorted((data_root / "cmu_mocap").glob("*/*/*.txt*"))
    bvh_paths = sorted((data_root / "bandai_namco").glob("*/data/*.bvh*"))
    assert len(converted["seqs"]) == len(cmu_paths) + len(bvh_paths) and len(cmu_paths) == 96
    for seq in converted["seqs"]:
        assert seq.joints.ndim == 3 and seq.joints.shape[1:] == (17, 3) and seq.joints.dtype == np.float32
        assert seq.root.shape == (seq.num_frames, 3) and seq.num_frames > 0 and np.isfinite(seq.joints).all()
        np.testing.assert_allclose(seq.joints[:, 0], 0.0, atol=1e-4)
    frames = {"cmu": 0, "bandai": 0}
    for f, s in zip(converted["files"], converted["seqs"], strict=True):
        frames[f.source] += s.num_frames
    # CMU: drop the T-pose frame 0, then every 4th of the 120 Hz frames.
    n_lines = [sum(1 for ln in gzip.open(p, "rt") if ln.strip()) for p in cmu_paths]
    assert frames["cmu"] == sum(len(range(1, n, 4)) for n in n_lines)
    assert 16_500 < frames["cmu"] < 17_500
    # Bandai Namco is 30 fps already: every frame of the header count is kept.
    headers = [re.search(r"Frames:\s*(\d+)", gzip.open(p, "rt").read(20_000)) for p in bvh_paths]
    assert frames["bandai"] == sum(int(m.group(1)) for m in headers) and frames["bandai"] > 90_000


def test_bone_lengths_constant_and_symmetric_after_relength(converted: dict) -> None:
    canon = H36M_17.bone_lengths
    for left, right in H36M_17.left_right_pairs:
        assert canon[left] == canon[right]
    for seq in converted["seqs"]:
        lens = bone_lengths(relength(seq.joints))
        assert np.abs(lens - canon).max() < 0.1, seq.name


def test_feet_below_pelvis_when_walking(converted: dict) -> None:
    walks = _select(converted, r"^cmu/.*/walking|^bandai/.*_walk_")
    j = np.concatenate([s.joints for s in walks])
    ankles_down = (j[:, H36M_17.index("l_ankle"), 1] > 0) & (j[:, H36M_17.index("r_ankle"), 1] > 0)
    assert ankles_down.mean() > 0.95
    assert (j[:, H36M_17.index("head"), 1] < j[:, H36M_17.index("thorax"), 1]).mean() > 0.95


def _horizontal_speed(root: np.ndarray, fps: float) -> np.ndarray:
    v = np.gradient(root.astype(np.float64), axis=0) * fps
    return np.linalg.norm(v[:, [0, 2]], axis=1)  # y is vertical


def test_cmu_walking_speed(converted: dict) -> None:
    for seq in _select(converted, r"^cmu/[a-z]+/walking/"):  # the straight walks of the 8-action subset
        speed = np.median(_horizontal_speed(seq.root, seq.fps))
        assert 800 < speed < 2000, (seq.name, speed)
    extra = np.concatenate([_horizontal_speed(s.root, s.fps) for s in _select(converted, r"walking_extra")])
    assert 800 < np.median(extra) < 2000


def _facing_agrees(seq) -> np.ndarray:
    """Per moving frame: does the horizontal root velocity point along cross(left, up)?"""
    j = seq.joints
    left = j[:, H36M_17.index("l_hip")] - j[:, H36M_17.index("r_hip")]
    up = j[:, H36M_17.index("thorax")] - j[:, H36M_17.index("pelvis")]
    facing = np.cross(left, up)[:, [0, 2]]
    v = np.gradient(seq.root.astype(np.float64), axis=0)[:, [0, 2]] * seq.fps
    moving = np.linalg.norm(v, axis=1) > 300  # mm/s: ignore standing frames
    return ((facing * v).sum(1) > 0)[moving]


def test_chirality_walkers_move_where_they_face(converted: dict) -> None:
    # A mirrored conversion (a reflection anywhere) makes every walker walk backwards.
    cmu = np.concatenate([_facing_agrees(s) for s in _select(converted, r"^cmu/.*/walking")])
    assert cmu.mean() > 0.85  # a few turning walks have glitches in the source root yaw
    for seq in _select(converted, r"^cmu/[a-z]+/walking/"):
        assert _facing_agrees(seq).mean() > 0.95, seq.name
    bandai = np.concatenate([_facing_agrees(s) for s in _select(converted, r"^bandai/.*_walk_")])
    assert bandai.mean() > 0.95
    backwards = np.concatenate([_facing_agrees(s) for s in _select(converted, r"^bandai/.*_walk-back_")])
    assert backwards.mean() < 0.1  # the control: walking backwards is detected as such


def test_bandai_map_and_reader_defaults(data_root: Path) -> None:
    path = sorted((data_root / "bandai_namco").glob("dataset-1/data/*_walk_*.bvh*"))[0]
    seq = read_bvh(path)  # default map, unit guessed (cm), re-lengthed
    assert set(BANDAI_JOINT_MAP) == set(H36M_17.joint_names)
    np.testing.assert_allclose(read_bvh(path, unit_mm=10.0).joints, seq.joints, atol=1e-3)
    np.testing.assert_allclose(bone_lengths(seq.joints), np.broadcast_to(H36M_17.bone_lengths, (seq.num_frames, 17)),
                               atol=0.01)  # fmt: skip
    cmu = read_mocap(sorted((data_root / "cmu_mocap").glob("test/walking/*.txt*"))[0])
    assert cmu.fps == 30.0 and cmu.joints.shape[1:] == (17, 3)
