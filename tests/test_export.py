"""Exports: JSON schema, NPZ arrays, BVH round trip through the project's BVH reader, GLB reload."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import trimesh

from nlrd.data.mocap import parse_bvh, read_bvh
from nlrd.export import (
    BVH_JOINT_NAMES,
    CAMERA_TO_Y_UP,
    _euler_zxy,
    to_json_dict,
    write_bvh,
    write_glb,
    write_json,
    write_npz,
)
from nlrd.kinematics import bone_lengths, forward_kinematics, joints_to_bones
from nlrd.skeleton import H36M_17

# An upright person facing the camera (camera frame: x right, y down, z forward; mm). The subject's
# left is +x, so the left joints have positive x.
_STANDING = np.array(
    [
        [0, 0, 0], [-105, 10, 0], [-110, 420, 10], [-110, 830, 30], [105, 10, 0], [110, 420, 10], [110, 830, 30],
        [0, -160, -10], [0, -365, -20], [0, -470, -40], [0, -570, -20], [156, -360, -10], [170, -100, 0],
        [175, 105, 30], [-156, -360, -10], [-170, -100, 0], [-175, 105, 30],
    ],
    dtype=np.float64,
)  # fmt: skip


def _random_poses(n: int, seed: int = 0) -> np.ndarray:
    """Plausible random poses with canonical bone lengths: the standing pose's bone vectors perturbed,
    then forward kinematics (random view: the torso directions are perturbed too)."""
    rng = np.random.default_rng(seed)
    bones = np.asarray(joints_to_bones(_STANDING))
    noisy = bones[None] + rng.normal(0.0, 0.35, (n, 17, 3))
    return np.asarray(forward_kinematics(noisy))


def _real_poses(prepared: Path) -> np.ndarray:
    """200 test-split poses (mm) spread over the prepared real mocap."""
    from nlrd.data.poses import load_split

    split = load_split(prepared, "test")
    return split.joints[:: max(1, split.num_frames // 200)][:200].astype(np.float64)


def test_camera_to_y_up_is_a_proper_rotation():
    assert abs(np.linalg.det(CAMERA_TO_Y_UP) - 1.0) < 1e-12
    np.testing.assert_allclose(CAMERA_TO_Y_UP @ CAMERA_TO_Y_UP.T, np.eye(3))


# ----------------------------------------------------------------------------- JSON / NPZ
def test_json_schema(tmp_path):
    poses = _random_poses(4)
    poses[2, 5, 1] = np.nan  # a missing joint
    boxes = np.array([[1, 2, 30, 40]] * 4, float)
    z = np.random.default_rng(0).normal(size=(4, 32))
    path = write_json(tmp_path / "pose.json", poses, 25.0, boxes=boxes, scores=[0.9, 0.8, np.nan, 0.5], z=z)
    text = path.read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert doc["format"] == "nlrd-pose" and doc["version"] == 1 and doc["units"] == "mm"
    assert doc["frame"] == "camera: x right, y down, z forward; root-relative"
    assert doc["fps"] == 25.0 and doc["num_frames"] == 4 and doc["skeleton"] == "h36m_17"
    assert doc["joint_names"] == list(H36M_17.joint_names) and doc["parents"] == list(H36M_17.parents)
    assert [f["index"] for f in doc["frames"]] == [0, 1, 2, 3]
    f0 = doc["frames"][0]
    assert set(f0) == {"index", "valid", "box", "score", "joints3d"}
    assert f0["valid"] is True and f0["box"] == [1, 2, 30, 40] and f0["score"] == 0.9
    np.testing.assert_allclose(np.array(f0["joints3d"]), poses[0], atol=0.006)
    f2 = doc["frames"][2]
    assert f2["valid"] is False and f2["score"] is None and f2["joints3d"][5][1] is None
    assert doc["latent_dim"] == 32 and np.allclose(doc["latents"], z, atol=1e-5)
    bare = to_json_dict(poses[0])  # one pose, nothing else
    assert bare["num_frames"] == 1 and bare["frames"][0]["box"] is None and "latents" not in bare


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"joints3d": np.zeros((3, 16, 3))}, "shape"),
        ({"joints3d": np.full((2, 17, 3), np.inf)}, "infinite"),
        ({"joints3d": np.zeros((2, 17, 3)), "fps": 0}, "fps"),
        ({"joints3d": np.zeros((2, 17, 3)), "boxes": np.zeros((3, 4))}, "boxes"),
        ({"joints3d": np.zeros((2, 17, 3)), "z": np.zeros((3, 32))}, "latents"),
    ],
)
def test_bad_inputs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        to_json_dict(**kwargs)


def test_npz(tmp_path):
    poses = _random_poses(5)
    path = write_npz(tmp_path / "pose.result", poses, 30, scores=np.linspace(0, 1, 5), z=np.ones((5, 32)))
    assert path.name == "pose.result"  # the name is kept as given
    with np.load(path, allow_pickle=False) as z:
        assert {"joints3d", "fps", "joint_names", "parents", "valid", "scores", "latents", "format_version"} <= set(z.files)
        np.testing.assert_allclose(z["joints3d"], poses, atol=1e-3)
        assert z["joints3d"].dtype == np.float32 and float(z["fps"]) == 30.0
        assert z["joint_names"].tolist() == list(H36M_17.joint_names) and z["valid"].all()
        assert z["latents"].shape == (5, 32)


# ----------------------------------------------------------------------------- BVH
def _read_back(path, fps: float = 30.0):
    return read_bvh(path, BVH_JOINT_NAMES, unit_mm=10.0, relength_bones=False, fps=fps)


def test_euler_zxy_round_trip():
    rng = np.random.default_rng(3)
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    r = np.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        -1,
    ).reshape(-1, 3, 3)  # fmt: skip
    zxy = np.radians(_euler_zxy(r))

    def rot(axis: int, a: np.ndarray) -> np.ndarray:
        c, s = np.cos(a), np.sin(a)
        m = np.zeros((a.size, 3, 3))
        i, j = ((1, 2), (2, 0), (0, 1))[axis]  # cyclic order: right-handed rotations
        m[:, axis, axis] = 1
        m[:, i, i], m[:, j, j] = c, c
        m[:, i, j], m[:, j, i] = -s, s
        return m

    rebuilt = rot(2, zxy[:, 0]) @ rot(0, zxy[:, 1]) @ rot(1, zxy[:, 2])
    np.testing.assert_allclose(rebuilt, r, atol=1e-9)


def test_bvh_round_trip_random_poses(tmp_path):
    poses = _random_poses(60, seed=1)
    np.testing.assert_allclose(
        np.asarray(bone_lengths(poses))[:, 1:], np.broadcast_to(H36M_17.bone_lengths[1:], (60, 16)), rtol=1e-4
    )
    root = np.cumsum(np.random.default_rng(2).normal(0, 5, (60, 3)), axis=0)
    path = write_bvh(tmp_path / "random.bvh", poses, 30.0, root=root)
    seq = _read_back(path)
    assert seq.joints.shape == (60, 17, 3) and seq.fps == 30.0
    assert np.abs(seq.joints - poses).max() < 1.0
    assert np.abs(seq.root - root).max() < 1.0
    # left stays left: the subject's left hip is on the camera's +x side in the standing pose
    one = _read_back(write_bvh(tmp_path / "one.bvh", _STANDING))
    assert one.joints[0, 4, 0] > 0 > one.joints[0, 1, 0]


def test_bvh_round_trip_real_poses(tmp_path, prepared_data):
    poses = _real_poses(prepared_data)
    seq = _read_back(write_bvh(tmp_path / "real.bvh", poses, 30.0))
    assert np.abs(seq.joints - poses).max() < 1.0


def test_bvh_syntax_and_invalid_frames(tmp_path):
    poses = _random_poses(5, seed=4)
    poses[2] = np.nan  # a missing frame holds the previous pose
    path = write_bvh(tmp_path / "gap.bvh", poses, fps=24.0)
    text = path.read_text()
    assert text.startswith("HIERARCHY\nROOT Hips\n") and "End Site" in text and "\nMOTION\nFrames: 5\n" in text
    assert "Frame Time: 0.04166667" in text
    motion = parse_bvh(text, str(path))
    names = motion.names
    for name in ("Hips", "LeftUpLeg", "RightUpLeg", "Spine", "Spine1", "Neck", "Head", "LeftArm", "RightHand"):
        assert name in names
    assert motion.joints[0].channels[:3] == ("Xposition", "Yposition", "Zposition")
    assert all(j.channels[-3:] == ("Zrotation", "Xrotation", "Yrotation") for j in motion.joints if not j.is_end_site)
    seq = _read_back(path, fps=24.0)
    np.testing.assert_allclose(seq.joints[2], seq.joints[1], atol=1e-6)
    assert np.abs(seq.joints[[0, 1, 3, 4]] - poses[[0, 1, 3, 4]]).max() < 1.0


def test_bvh_rest_offsets_are_canonical_centimetres(tmp_path):
    motion = parse_bvh(write_bvh(tmp_path / "a.bvh", _STANDING).read_text())
    offsets = {j.name: np.asarray(j.offset) for j in motion.joints}
    assert math.isclose(np.linalg.norm(offsets["LeftLeg"]), H36M_17.bone_lengths_mm[5] / 10.0, rel_tol=1e-6)
    assert offsets["LeftUpLeg"][0] > 0 > offsets["RightUpLeg"][0]  # T-pose facing +Z: left is +X
    assert offsets["Spine"][1] > 0 and offsets["LeftLeg"][1] < 0


# ----------------------------------------------------------------------------- GLB
def _node_world(doc: dict, blob: bytes, name: str, frame: int) -> dict[str, np.ndarray]:
    """A node's transform at key ``frame`` read back from the GLB's animation channels."""
    from nlrd.gltf import accessor_array

    idx = next(i for i, n in enumerate(doc["nodes"]) if n["name"] == name)
    out = {}
    for ch in doc["animations"][0]["channels"]:
        if ch["target"]["node"] == idx:
            sampler = doc["animations"][0]["samplers"][ch["sampler"]]
            out[ch["target"]["path"]] = accessor_array(doc, blob, sampler["output"])[frame].astype(np.float64)
    return out


def _rotate(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    u = np.array([x, y, z])
    return v + 2.0 * np.cross(u, np.cross(u, v) + w * v)


def test_glb_clip_is_an_animation_that_reproduces_every_frame(tmp_path):
    """A clip's GLB is one skeleton animated at the clip's rate: reading the key frames back gives every
    joint and every bone's end of every frame (metres, Y up); a NaN frame holds the previous pose."""
    from nlrd.export import CAMERA_TO_Y_UP
    from nlrd.gltf import accessor_array, read_glb

    poses = _random_poses(6, seed=5)
    poses[3] = np.nan
    path = write_glb(tmp_path / "clip.glb", poses, fps=25.0)
    assert path.stat().st_size < 60_000
    doc, blob = read_glb(path.read_bytes())
    assert len(doc["nodes"]) == 17 + 16 and len(doc["animations"]) == 1
    times = accessor_array(doc, blob, doc["animations"][0]["samplers"][0]["input"])[:, 0]
    np.testing.assert_allclose(times, np.arange(6) / 25.0, atol=1e-6)
    expect = poses.copy()
    expect[3] = poses[2]
    expect_m = expect @ CAMERA_TO_Y_UP.T / 1000.0
    names = H36M_17.joint_names
    for t in range(6):
        for j in range(17):
            got = _node_world(doc, blob, f"joint_{names[j]}", t)["translation"]
            np.testing.assert_allclose(got, expect_m[t, j], atol=1e-5)
        for p, c in H36M_17.edges:
            tr = _node_world(doc, blob, f"bone_{names[p]}_{names[c]}", t)
            tip = tr["translation"] + _rotate(tr["rotation"], np.array([0.0, tr["scale"][1], 0.0]))
            np.testing.assert_allclose(tip, expect_m[t, c], atol=1e-4)
    # trimesh (a standard glTF reader) loads it: the rest pose is frame 0, metres, head above feet.
    scene = trimesh.load(path)
    assert isinstance(scene, trimesh.Scene) and len(scene.graph.nodes_geometry) == 33
    standing = trimesh.load(write_glb(tmp_path / "one.glb", _STANDING))
    lo, hi = standing.bounds
    assert 1.4 < hi[1] - lo[1] < 1.6 and hi[1] > 0.5 and lo[1] < -0.8  # joints span 1.4 m, plus the spheres
    assert "animations" not in read_glb((tmp_path / "one.glb").read_bytes())[0]  # one pose: nothing to play
    with pytest.raises(ValueError, match="no valid frame"):
        write_glb(tmp_path / "none.glb", np.full((2, 17, 3), np.nan))


def test_predict_image_reports_boxes_in_input_pixels_for_huge_images() -> None:
    """A 20-megapixel input is downscaled inside; boxes and 2D joints come back in its own pixels."""
    from nlrd.inference import PosePredictor

    predictor = PosePredictor.from_pretrained(device="cpu")
    big = np.zeros((4000, 5000, 3), np.uint8)
    big[1000:3400, 2000:2800] = 180  # a bright upright block where the user says the person is
    res = predictor.predict_image(big, box=(2000, 1000, 2800, 3400))
    np.testing.assert_allclose(res.boxes[0], [2000, 1000, 2800, 3400], atol=4.0)
    centre = res.joints2d[0].mean(axis=0)
    assert 1800 < centre[0] < 3000 and 800 < centre[1] < 3600
