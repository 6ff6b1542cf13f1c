"""Exports of a pose result: JSON, NPZ, BVH (motion capture) and GLB (3D skeleton meshes).

Every writer takes ``joints3d`` (T, J, 3) (or one pose (J, 3)) in millimetres, root-relative, in the
camera frame (x right, y down, z forward), the skeleton :data:`nlrd.skeleton.H36M_17` by default.
Frames may be NaN where a pose is missing (JSON writes ``null``, NPZ keeps NaN, BVH holds the last
valid pose, GLB skips the frame's mesh); infinite values are refused.

JSON schema (``format`` "nlrd-pose", ``version`` 1)::

    {
      "format": "nlrd-pose",
      "version": 1,
      "units": "mm",
      "frame": "camera: x right, y down, z forward; root-relative",
      "fps": 30.0,
      "skeleton": "h36m_17",
      "joint_names": ["pelvis", "r_hip", ...],          # J names, the order of every joints3d
      "parents": [-1, 0, 1, ...],                        # J parent indices (-1: root)
      "num_frames": T,
      "frames": [
        {
          "index": 0,                                    # frame number in the clip
          "valid": true,                                 # false: no usable pose in this frame
          "box": [x0, y0, x1, y1] | null,                # person box, image pixels
          "score": 0.93 | null,                          # detection confidence in [0, 1]
          "joints3d": [[x, y, z], ...]                   # J rows, mm; null entries where NaN
        }, ...
      ],
      "latent_dim": D,                                   # only with latents
      "latents": [[z_0, ..., z_{D-1}], ...]              # only with latents: T rows
    }

Non-finite numbers are written as ``null`` (the file is strict JSON).

NPZ (:func:`write_npz`): arrays ``joints3d`` (T, J, 3) float32 mm, ``fps`` (), ``joint_names`` (J,)
str, ``parents`` (J,) int, ``valid`` (T,) bool, and when given ``boxes`` (T, 4), ``scores`` (T,),
``latents`` (T, D); plus ``format_version``. It loads with ``np.load(path)`` (no pickle).

BVH (:func:`write_bvh`): a hierarchy named like common rigs (Hips, LeftUpLeg, Spine, Neck, Head,
LeftArm, ...; :data:`BVH_JOINT_NAMES`), with zero-length helper joints (``LHipJoint``,
``RHipJoint``, ``LowerBack``, ``Neck``, ``LeftShoulder``, ``RightShoulder``, as in the CMU BVH
conversions) so that every bone has its own rotation and the positions are reproduced exactly. The
root has position channels, every joint ``Zrotation Xrotation Yrotation``. The rest pose is a
T-pose in a Y-up world, facing +Z, offsets from the skeleton's canonical bone lengths in
centimetres (import into Blender with scale 0.01 for metres). Rotations are solved from the joints:
the hips and the thorax get a full frame from two directions (spine and hip line; neck and shoulder
line), every other bone the minimal-twist rotation that turns its rest direction into the observed
one. The camera frame is turned into the Y-up world by a proper rotation (180 degrees about x: x,
-y, -z), never a mirror, so the subject's left stays left; :func:`nlrd.data.mocap.read_bvh` applies
the inverse, so a written file reads back to the same joints.

GLB (:func:`write_glb`, written by :mod:`nlrd.gltf`): a stick skeleton of low-poly cylinders per bone and
spheres per joint, coloured by side (left blue, right red, centre grey), in metres, in glTF's Y-up frame
(the same proper rotation as the BVH); a clip is a glTF animation of the skeleton at the clip's frame rate,
which standard viewers play.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlrd.skeleton import H36M_17, Skeleton

FORMAT = "nlrd-pose"
VERSION = 1
FRAME_DESCRIPTION = "camera: x right, y down, z forward; root-relative"

# Camera frame (x right, y down, z forward) -> Y-up world (BVH, glTF): rotation by 180 degrees about
# x, det +1. A subject facing the camera (-z) faces +Z, the BVH / glTF front.
CAMERA_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])


# ----------------------------------------------------------------------------- validation
@dataclass(frozen=True)
class _Inputs:
    joints3d: np.ndarray  # (T, J, 3) float64
    fps: float
    boxes: np.ndarray | None
    scores: np.ndarray | None
    valid: np.ndarray  # (T,) bool
    z: np.ndarray | None


def _check(
    joints3d: Any,
    fps: float = 30.0,
    boxes: Any = None,
    scores: Any = None,
    valid: Any = None,
    z: Any = None,
    skeleton: Skeleton = H36M_17,
) -> _Inputs:
    j = skeleton.num_joints
    try:
        x = np.asarray(joints3d, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"joints3d must be a numeric array of shape (T, {j}, 3)") from None
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (j, 3) or x.shape[0] == 0:
        raise ValueError(f"joints3d must have shape (T, {j}, 3) or ({j}, 3) in mm, got {x.shape}")
    if np.isinf(x).any():
        raise ValueError("joints3d holds infinite values")
    if not (isinstance(fps, int | float) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    t = x.shape[0]

    def opt(a: Any, shape: tuple[int, ...], name: str, dtype: Any = np.float64) -> np.ndarray | None:
        if a is None:
            return None
        try:
            arr = np.asarray(a, dtype=dtype)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a numeric array of shape {shape}") from None
        if arr.shape != shape:
            raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
        return arr

    b = opt(boxes, (t, 4), "boxes")
    s = opt(scores, (t,), "scores")
    v = opt(valid, (t,), "valid", bool)
    zz = None
    if z is not None:
        zz = np.asarray(z, dtype=np.float64)
        if zz.ndim == 1 and t == 1:
            zz = zz[None]
        if zz.ndim != 2 or zz.shape[0] != t:
            raise ValueError(f"z (latents) must have shape (T, D) = ({t}, D), got {zz.shape}")
    finite = np.isfinite(x).all(axis=(1, 2))
    valid_out = finite if v is None else (v & finite)
    return _Inputs(x, float(fps), b, s, valid_out, zz)


def _json_value(v: Any, decimals: int | None) -> Any:
    """Nested lists of floats with NaN/inf -> None and optional rounding."""
    if isinstance(v, list):
        return [_json_value(e, decimals) for e in v]
    if isinstance(v, float):
        if not math.isfinite(v):
            return None
        return round(v, decimals) if decimals is not None else v
    return v


# ----------------------------------------------------------------------------- JSON / NPZ
def to_json_dict(
    joints3d: Any,
    fps: float = 30.0,
    *,
    boxes: Any = None,
    scores: Any = None,
    valid: Any = None,
    z: Any = None,
    skeleton: Skeleton = H36M_17,
    decimals: int | None = 2,
) -> dict[str, Any]:
    """The JSON document of the module docstring's schema, as a dict (strict-JSON serialisable).

    Args:
        joints3d: (T, J, 3) or (J, 3) mm, root-relative camera frame.
        fps: frames per second.
        boxes: optional (T, 4) person boxes (x0, y0, x1, y1) in image pixels.
        scores: optional (T,) confidences.
        valid: optional (T,) bools; frames with NaN joints are invalid in any case.
        z: optional (T, D) latent codes.
        decimals: round floats to this many decimals (None: full precision).
    """
    inp = _check(joints3d, fps, boxes, scores, valid, z, skeleton)
    frames = []
    for i in range(inp.joints3d.shape[0]):
        frames.append(
            {
                "index": i,
                "valid": bool(inp.valid[i]),
                "box": None if inp.boxes is None else _json_value(inp.boxes[i].tolist(), decimals),
                "score": None if inp.scores is None else _json_value(float(inp.scores[i]), 4),
                "joints3d": _json_value(inp.joints3d[i].tolist(), decimals),
            }
        )
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "units": "mm",
        "frame": FRAME_DESCRIPTION,
        "fps": inp.fps,
        "skeleton": skeleton.name,
        "joint_names": list(skeleton.joint_names),
        "parents": list(skeleton.parents),
        "num_frames": int(inp.joints3d.shape[0]),
        "frames": frames,
    }
    if inp.z is not None:
        doc["latent_dim"] = int(inp.z.shape[1])
        doc["latents"] = _json_value(inp.z.tolist(), 5)
    return doc


def write_json(path: str | os.PathLike[str], joints3d: Any, fps: float = 30.0, **kwargs: Any) -> Path:
    """Write :func:`to_json_dict` to ``path`` (strict JSON, no NaN); returns the path."""
    doc = to_json_dict(joints3d, fps, **kwargs)
    p = Path(path)
    p.write_text(json.dumps(doc, allow_nan=False, separators=(",", ":")))
    return p


def write_npz(
    path: str | os.PathLike[str],
    joints3d: Any,
    fps: float = 30.0,
    *,
    boxes: Any = None,
    scores: Any = None,
    valid: Any = None,
    z: Any = None,
    skeleton: Skeleton = H36M_17,
) -> Path:
    """Write named arrays (see the module docstring) with ``np.savez_compressed``; returns the path."""
    inp = _check(joints3d, fps, boxes, scores, valid, z, skeleton)
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(VERSION),
        "joints3d": inp.joints3d.astype(np.float32),
        "fps": np.array(inp.fps),
        "joint_names": np.array(skeleton.joint_names),
        "parents": np.array(skeleton.parents, dtype=np.int64),
        "valid": inp.valid,
    }
    if inp.boxes is not None:
        arrays["boxes"] = inp.boxes.astype(np.float32)
    if inp.scores is not None:
        arrays["scores"] = inp.scores.astype(np.float32)
    if inp.z is not None:
        arrays["latents"] = inp.z.astype(np.float32)
    p = Path(path)
    with p.open("wb") as fh:  # a file object: numpy would otherwise append ".npz" to other names
        np.savez_compressed(fh, **arrays)
    return p


# ----------------------------------------------------------------------------- BVH
# H36M_17 joint -> BVH joint name (common rig naming; the H36M "neck" point sits at the head's
# base / nose level, so it is the Head joint, and "head" is the head top).
BVH_JOINT_NAMES: dict[str, str] = {
    "pelvis": "Hips",
    "r_hip": "RightUpLeg",
    "r_knee": "RightLeg",
    "r_ankle": "RightFoot",
    "l_hip": "LeftUpLeg",
    "l_knee": "LeftLeg",
    "l_ankle": "LeftFoot",
    "spine": "Spine",
    "thorax": "Spine1",
    "neck": "Head",
    "head": "HeadTop",
    "l_shoulder": "LeftArm",
    "l_elbow": "LeftForeArm",
    "l_wrist": "LeftHand",
    "r_shoulder": "RightArm",
    "r_elbow": "RightForeArm",
    "r_wrist": "RightHand",
}
# Zero-length helper joints inserted between a joint with several children and each child bone.
_HELPERS: dict[str, str] = {
    "r_hip": "RHipJoint",
    "l_hip": "LHipJoint",
    "spine": "LowerBack",
    "neck": "Neck",
    "l_shoulder": "LeftShoulder",
    "r_shoulder": "RightShoulder",
}
# Rest (T-pose) direction of the bone ending at each H36M joint, Y-up world facing +Z (left = +X).
_REST_DIRS: dict[str, tuple[float, float, float]] = {
    "r_hip": (-1, 0, 0),
    "r_knee": (0, -1, 0),
    "r_ankle": (0, -1, 0),
    "l_hip": (1, 0, 0),
    "l_knee": (0, -1, 0),
    "l_ankle": (0, -1, 0),
    "spine": (0, 1, 0),
    "thorax": (0, 1, 0),
    "neck": (0, 1, 0),
    "head": (0, 1, 0),
    "l_shoulder": (1, 0, 0),
    "l_elbow": (1, 0, 0),
    "l_wrist": (1, 0, 0),
    "r_shoulder": (-1, 0, 0),
    "r_elbow": (-1, 0, 0),
    "r_wrist": (-1, 0, 0),
}
# End Sites of leaf joints (mm, in the leaf's frame): feet point forward, hands and head continue.
_END_SITES_MM: dict[str, tuple[float, float, float]] = {
    "r_ankle": (0.0, -40.0, 120.0),
    "l_ankle": (0.0, -40.0, 120.0),
    "head": (0.0, 50.0, 0.0),
    "l_wrist": (80.0, 0.0, 0.0),
    "r_wrist": (-80.0, 0.0, 0.0),
}


@dataclass(frozen=True)
class _BvhNode:
    name: str
    parent: int  # index into the node list, -1 for the root
    offset_mm: np.ndarray  # (3,)
    h36m: int  # the H36M joint this node sits at
    child_h36m: int  # the H36M joint its (single) bone points to; -1: none (leaf / multi-child frame)


def _bvh_nodes(skeleton: Skeleton, lengths: np.ndarray) -> list[_BvhNode]:
    """BVH nodes in hierarchy (depth-first) order for the H36M_17 tree with helper joints."""
    names = skeleton.joint_names
    if names != H36M_17.joint_names or skeleton.parents != H36M_17.parents:
        raise ValueError(f"BVH export supports the {H36M_17.name} skeleton only, got {skeleton.name!r}")
    nodes: list[_BvhNode] = []

    def add(name: str, parent: int, offset: np.ndarray, at: int, child: int) -> int:
        nodes.append(_BvhNode(name, parent, offset, at, child))
        return len(nodes) - 1

    def walk(j: int, node: int) -> None:
        for c in [k for k, p in enumerate(skeleton.parents) if p == j]:
            host = node
            if names[c] in _HELPERS:  # a zero-length joint of its own turns this one bone
                host = add(_HELPERS[names[c]], node, np.zeros(3), j, c)
            kids = [k for k, p in enumerate(skeleton.parents) if p == c]
            # A joint with one child bone turns that bone; several children: a full frame (-1).
            bone_to = kids[0] if len(kids) == 1 and names[kids[0]] not in _HELPERS else -1
            rest = np.asarray(_REST_DIRS[names[c]], dtype=np.float64) * float(lengths[c])
            walk(c, add(BVH_JOINT_NAMES[names[c]], host, rest, c, bone_to))

    walk(0, add(BVH_JOINT_NAMES[names[0]], -1, np.zeros(3), 0, -1))
    return nodes


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(n, 1e-12)


def _swing(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Minimal rotations (T, 3, 3) taking unit vectors a (T, 3) to b (T, 3) (about a x b)."""
    a, b = _unit(a), _unit(b)
    axis = np.cross(a, b)
    s = np.linalg.norm(axis, axis=-1)
    c = np.clip((a * b).sum(-1), -1.0, 1.0)
    # Opposite vectors: any axis perpendicular to a works; pick one robustly.
    anti = (s < 1e-9) & (c < 0)
    if anti.any():
        helper = np.where(np.abs(a[anti, :1]) < 0.9, np.array([[1.0, 0.0, 0.0]]), np.array([[0.0, 1.0, 0.0]]))
        axis[anti] = np.cross(a[anti], helper)
        s = np.where(anti, 0.0, s)
    k = _unit(axis)
    theta = np.arctan2(s, c)
    theta = np.where(anti, np.pi, theta)
    kx, ky, kz = k[:, 0], k[:, 1], k[:, 2]
    zero = np.zeros_like(kx)
    kmat = np.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(-1, 3, 3)
    st, ct = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3) + st * kmat + (1 - ct) * (kmat @ kmat)


def _frame(primary: np.ndarray, secondary: np.ndarray) -> np.ndarray:
    """Orthonormal frames (T, 3, 3), columns (e_x, e_y, e_z), with e_y = primary, e_x ~ secondary."""
    ey = _unit(primary)
    ex = _unit(secondary - (secondary * ey).sum(-1, keepdims=True) * ey)
    ez = np.cross(ex, ey)
    return np.stack([ex, ey, ez], axis=-1)


def _euler_zxy(r: np.ndarray) -> np.ndarray:
    """Rotation matrices (T, 3, 3) -> degrees (T, 3) as (z, x, y) with R = Rz(z) Rx(x) Ry(y)."""
    sx = np.clip(r[:, 2, 1], -1.0, 1.0)
    x = np.arcsin(sx)
    cx = np.cos(x)
    ok = cx > 1e-6
    z = np.where(ok, np.arctan2(-r[:, 0, 1], r[:, 1, 1]), np.arctan2(r[:, 1, 0], r[:, 0, 0]))
    y = np.where(ok, np.arctan2(-r[:, 2, 0], r[:, 2, 2]), 0.0)
    return np.degrees(np.stack([z, x, y], axis=1))


def _fill_invalid(x: np.ndarray, valid: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Replace invalid frames by the last valid one (the first valid one before it; rest if none)."""
    out = x.copy()
    if not valid.any():
        out[:] = rest
        return out
    last = int(np.argmax(valid))
    for t in range(out.shape[0]):
        if valid[t]:
            last = t
        else:
            out[t] = x[last]
    return out


def write_bvh(
    path: str | os.PathLike[str],
    joints3d: Any,
    fps: float = 30.0,
    *,
    root: Any = None,
    bone_lengths: Sequence[float] | np.ndarray | None = None,
    unit_mm: float = 10.0,
    skeleton: Skeleton = H36M_17,
) -> Path:
    """Write a BVH motion file (hierarchy and method in the module docstring); returns the path.

    Args:
        joints3d: (T, J, 3) or (J, 3) mm, root-relative camera frame. NaN frames hold the last valid pose.
        fps: frame rate (Frame Time = 1 / fps).
        root: optional (T, 3) mm pelvis trajectory in the camera frame (zeros: in place).
        bone_lengths: (J,) mm bone lengths for the OFFSETs; the skeleton's canonical ones by
            default. Joints are reproduced exactly when their bone lengths equal these (true for
            every pose the model decodes); otherwise directions are kept and lengths become these.
        unit_mm: millimetres per BVH length unit (10: centimetres).
    """
    inp = _check(joints3d, fps, skeleton=skeleton)
    if not (math.isfinite(unit_mm) and unit_mm > 0):
        raise ValueError(f"unit_mm must be positive, got {unit_mm!r}")
    lengths = np.asarray(skeleton.bone_lengths_mm if bone_lengths is None else bone_lengths, dtype=np.float64)
    if lengths.shape != (skeleton.num_joints,) or not np.isfinite(lengths).all() or (lengths[1:] <= 0).any():
        raise ValueError(f"bone_lengths must be {skeleton.num_joints} positive mm values, got {lengths}")
    nodes = _bvh_nodes(skeleton, lengths)
    t = inp.joints3d.shape[0]
    root_tr = np.zeros((t, 3)) if root is None else np.asarray(root, dtype=np.float64)
    if root_tr.shape != (t, 3) or not np.isfinite(root_tr).all():
        raise ValueError(f"root must be a finite (T, 3) = ({t}, 3) mm trajectory, got {root_tr.shape}")

    # Rest pose in the camera frame, for frames without any valid pose.
    rest_world = np.zeros((skeleton.num_joints, 3))
    for j in range(1, skeleton.num_joints):
        rest_world[j] = rest_world[skeleton.parents[j]] + np.asarray(_REST_DIRS[skeleton.joint_names[j]]) * lengths[j]
    x = _fill_invalid(inp.joints3d, inp.valid, rest_world @ CAMERA_TO_Y_UP.T)
    world = (x - x[:, :1]) @ CAMERA_TO_Y_UP.T  # (T, J, 3) Y-up, root-relative, mm
    names = skeleton.joint_names
    ji = {n: i for i, n in enumerate(names)}

    def bone(a: str, b: str) -> np.ndarray:
        return world[:, ji[b]] - world[:, ji[a]]

    # Global rotations of every node (T, 3, 3), parents first.
    glob: list[np.ndarray] = []
    for nd in nodes:
        parent_g = np.broadcast_to(np.eye(3), (t, 3, 3)) if nd.parent < 0 else glob[nd.parent]
        if nd.parent < 0:
            # Hips: full frame, up = pelvis -> spine, x = right hip -> left hip (rest: +Y, +X).
            g = _frame(bone("pelvis", "spine"), bone("r_hip", "l_hip"))
        elif names[nd.h36m] == "thorax" and nd.child_h36m < 0:
            # Thorax: full frame, up = thorax -> neck, x = right shoulder -> left shoulder.
            g = _frame(bone("thorax", "neck"), world[:, ji["l_shoulder"]] - world[:, ji["r_shoulder"]])
        elif nd.child_h36m >= 0:
            rest_dir = np.asarray(_REST_DIRS[names[nd.child_h36m]], dtype=np.float64)
            cur = np.einsum("tij,j->ti", parent_g, rest_dir)
            obs = world[:, nd.child_h36m] - world[:, nd.h36m]
            g = _swing(cur, obs) @ parent_g
        else:  # leaf: keep the parent's orientation
            g = np.array(parent_g)
        glob.append(g)

    lines = ["HIERARCHY"]
    depth_of: list[int] = []
    children = {i: [k for k, m in enumerate(nodes) if m.parent == i] for i in range(len(nodes))}

    def fmt(v: np.ndarray) -> str:
        return " ".join(f"{c / unit_mm:.6f}" for c in v)

    def emit(i: int, depth: int) -> None:
        nd = nodes[i]
        pad = "  " * depth
        lines.append(f"{pad}{'ROOT' if nd.parent < 0 else 'JOINT'} {nd.name}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {fmt(nd.offset_mm)}")
        if nd.parent < 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation")
        else:
            lines.append(f"{pad}  CHANNELS 3 Zrotation Xrotation Yrotation")
        depth_of.append(depth)
        if children[i]:
            for k in children[i]:
                emit(k, depth + 1)
        else:
            end = np.asarray(_END_SITES_MM.get(names[nd.h36m], (0.0, 50.0, 0.0)))
            lines.extend([f"{pad}  End Site", f"{pad}  {{", f"{pad}    OFFSET {fmt(end)}", f"{pad}  }}"])
        lines.append(f"{pad}}}")

    emit(0, 0)
    # Channel values in hierarchy (depth-first) order, which is the node order built above.
    cols = [(root_tr @ CAMERA_TO_Y_UP.T) / unit_mm]
    for i, nd in enumerate(nodes):
        local = glob[i] if nd.parent < 0 else np.swapaxes(glob[nd.parent], 1, 2) @ glob[i]
        angles = _euler_zxy(local)
        cols.append(np.unwrap(angles, period=360.0, axis=0))  # no 360-degree jumps between frames
    values = np.concatenate(cols, axis=1)
    lines += ["MOTION", f"Frames: {t}", f"Frame Time: {1.0 / inp.fps:.8f}"]
    lines += [" ".join(f"{v:.6f}" for v in row) for row in values]
    p = Path(path)
    p.write_text("\n".join(lines) + "\n")
    return p


# ----------------------------------------------------------------------------- GLB
def write_glb(
    path: str | os.PathLike[str],
    joints3d: Any,
    *,
    fps: float = 30.0,
    root: Any = None,
    bone_radius_m: float = 0.02,
    joint_radius_m: float = 0.03,
    sections: int = 8,
    skeleton: Skeleton = H36M_17,
) -> Path:
    """Write the skeleton as GLB (:mod:`nlrd.gltf`); a clip becomes a glTF animation at ``fps``. Returns the path.

    Args:
        joints3d: (T, J, 3) or (J, 3) mm, root-relative camera frame; a frame holding NaN (no person)
            repeats the last valid one, so the animation holds still instead of jumping.
        fps: frames per second of the clip (the animation's key times are t / fps seconds).
        root: optional (T, 3) mm pelvis trajectory in the camera frame.
        bone_radius_m, joint_radius_m: sizes in metres; sections: sides of each bone cylinder.
    """
    from nlrd.gltf import skeleton_glb, skeleton_track

    inp = _check(joints3d, fps=fps, skeleton=skeleton)
    t = inp.joints3d.shape[0]
    root_tr = np.zeros((t, 3)) if root is None else np.asarray(root, dtype=np.float64)
    if root_tr.shape != (t, 3) or not np.isfinite(root_tr).all():
        raise ValueError(f"root must be a finite (T, 3) = ({t}, 3) mm trajectory, got {root_tr.shape}")
    if not (int(sections) == sections and sections >= 3):
        raise ValueError("sections must be an integer >= 3")
    if not inp.valid.any():
        raise ValueError("no valid frame to export (every frame holds NaN)")
    poses = _fill_invalid(inp.joints3d + root_tr[:, None], inp.valid, np.zeros((skeleton.num_joints, 3)))
    poses_m = poses @ CAMERA_TO_Y_UP.T / 1000.0
    data = skeleton_glb(skeleton_track(poses_m, skeleton), skeleton, inp.fps, bone_radius_m, joint_radius_m, int(sections))
    p = Path(path)
    p.write_bytes(data)
    return p
