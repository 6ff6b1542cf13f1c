"""Motion-capture readers: CMU exp-map text files and BVH files -> H36M_17 poses at 30 fps.

Every reader returns a :class:`MocapSequence`:

- ``joints`` (T, 17, 3) float32, millimetres, root-relative (pelvis at the origin), in the order of
  :data:`nlrd.skeleton.H36M_17`, bones re-lengthed to the canonical skeleton (directions kept);
- ``root`` (T, 3) float32, millimetres: the pelvis trajectory in the same axes (kept aside so that
  speed and heading can still be measured);
- ``fps``: the output frame rate (30 by default).

Output axes (the project's camera-style frame): x right, y DOWN (gravity points +y), z forward.
Each source's world axes are turned into these by a proper rotation (determinant +1), never by a
reflection, so the subject's left stays the subject's left. With ``left = l_hip - r_hip`` and
``up = thorax - pelvis`` the subject faces ``cross(left, up)``: a person facing the camera has
left = +x, up = -y and faces -z = cross(+x, -y).

Sources:

- CMU exp-map text (``*.txt`` / ``*.txt.gz``, 117 comma-separated floats per line, 120 Hz) on the
  38-joint ASF tree of ``cmu_mocap/cmu38_skeleton.json``; forward kinematics follows that file's note
  (row-vector convention) in the ASF's own y-up world, which is then rotated (not reflected) to the
  camera frame; see :func:`cmu_forward_kinematics` for why the note's final axis reorder and root
  column order are not used. Frame 0 (a T-pose) is dropped.
- BVH (``*.bvh`` / ``*.bvh.gz``): any hierarchy, any rotation channel order, joints with 3 or 6
  channels (a joint's position channels replace its OFFSET, as in the Bandai Namco files), End Sites,
  any length unit, Y-up (or Z-up) worlds. A joint map names the BVH joint (or a derived point) used
  for each H36M joint; the Bandai Namco skeleton has a built-in map (:data:`BANDAI_JOINT_MAP`).
"""

from __future__ import annotations

import gzip
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from nlrd.kinematics import relength
from nlrd.skeleton import H36M_17, Skeleton

TARGET_FPS = 30.0
CMU_FPS = 120.0
CMU_ASF_UNIT_MM = 56.44  # CMU ASF length unit: (1 / 0.45) inch = 0.05644 m
CMU_NUM_COLUMNS = 117

# World -> camera rotations (proper: det = +1). Camera: x right, y down, z forward.
# Y-up world: rotate 180 degrees about x, (x, y, z) -> (x, -y, -z). A subject facing the world's +z
# (the usual BVH rest facing) then faces the camera (-z).
_Y_UP_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
# Z-up world: rotate -90 degrees about x, (x, y, z) -> (x, -z, y).
_Z_UP_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass
class MocapSequence:
    """One converted motion.

    Attributes:
        joints: (T, J, 3) float32 mm, root-relative, camera-style axes (x right, y down, z forward).
        root: (T, 3) float32 mm, the root (pelvis) trajectory in the same axes.
        fps: frame rate of ``joints`` and ``root``.
        name: where it came from (the file name).
    """

    joints: np.ndarray
    root: np.ndarray
    fps: float
    name: str

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])


# ----------------------------------------------------------------------------- shared helpers
def _read_text(path: Path) -> str:
    """Whole file as text; gzip-compressed when the name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rt", encoding="utf-8", errors="replace") as fh:
                return fh.read()
        return path.read_text(encoding="utf-8", errors="replace")
    except (OSError, EOFError) as exc:  # EOFError: a truncated .gz stream
        raise ValueError(f"{path}: cannot read file ({exc})") from exc


def resample(x: np.ndarray, src_fps: float, dst_fps: float = TARGET_FPS) -> np.ndarray:
    """Resample a sequence (T, ...) from ``src_fps`` to ``dst_fps`` along axis 0.

    An integer ratio keeps every k-th frame (exact samples, no smoothing); any other ratio linearly
    interpolates at times 0, 1/dst, 2/dst, ... up to the last source frame.
    """
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive, got {src_fps} -> {dst_fps}")
    ratio = src_fps / dst_fps
    if abs(ratio - round(ratio)) < 1e-3 and round(ratio) >= 1:
        return x[:: int(round(ratio))]
    n = x.shape[0]
    if n < 2:
        return x.copy()
    t_src = np.arange(n) / src_fps
    t_dst = np.arange(0.0, t_src[-1] + 1e-9, 1.0 / dst_fps)
    pos = t_dst * src_fps
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 2)
    w = (pos - i0).reshape(-1, *([1] * (x.ndim - 1)))
    return ((1.0 - w) * x[i0] + w * x[i0 + 1]).astype(x.dtype, copy=False)


def _finish(world_mm: np.ndarray, fps: float, name: str, skeleton: Skeleton, relength_bones: bool) -> MocapSequence:
    """Camera-frame joints (T, J, 3) mm -> root-relative, optionally re-lengthed, float32."""
    root = world_mm[:, 0, :].copy()
    rel = world_mm - root[:, None, :]
    if relength_bones:
        rel = relength(rel, skeleton)
    return MocapSequence(rel.astype(np.float32), root.astype(np.float32), float(fps), name)


def _rodrigues(rotvec: np.ndarray) -> np.ndarray:
    """Exponential map (..., 3) -> rotation matrices (..., 3, 3), R = I + sin(t) K + (1 - cos(t)) K^2."""
    theta = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    axis = rotvec / (theta + np.finfo(np.float32).eps)  # as the reference code: no division by zero
    x, y, z = axis[..., 0], axis[..., 1], axis[..., 2]
    zero = np.zeros_like(x)
    k = np.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(*rotvec.shape[:-1], 3, 3)
    s = np.sin(theta)[..., None]
    c = np.cos(theta)[..., None]
    eye = np.broadcast_to(np.eye(3), k.shape)
    return eye + s * k + (1.0 - c) * (k @ k)


# ----------------------------------------------------------------------------- CMU exp-map text
@dataclass(frozen=True)
class CmuSkeleton:
    """The 38-joint CMU ASF tree used by the exp-map text files.

    Attributes:
        parents: (38,) parent index per joint, -1 for the root.
        offsets_mm: (38, 3) bone offsets in mm (row-vector FK convention of the reference code).
        h36m_indices: (17,) CMU joint index for each H36M_17 joint.
    """

    parents: tuple[int, ...]
    offsets_mm: np.ndarray
    h36m_indices: tuple[int, ...]


def default_cmu_skeleton_path(data_root: str | Path) -> Path:
    """Where the CMU skeleton table lives inside the data folder."""
    return Path(data_root) / "cmu_mocap" / "cmu38_skeleton.json"


@lru_cache(maxsize=8)
def load_cmu_skeleton(path: str | Path) -> CmuSkeleton:
    """Read ``cmu38_skeleton.json`` (parents, offsets in ASF units, H36M index map)."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
        parents = tuple(int(p) for p in spec["parents"])
        offsets = np.asarray(spec["offsets_asf_units"], dtype=np.float64) * CMU_ASF_UNIT_MM
        indices = tuple(int(i) for i in spec["h36m17_from_cmu38"]["indices"])
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a CMU skeleton table ({exc})") from exc
    if offsets.shape != (len(parents), 3) or len(indices) != H36M_17.num_joints:
        raise ValueError(f"{path}: expected {len(parents)} offsets of 3 values and 17 H36M indices")
    return CmuSkeleton(parents, offsets, indices)


def _parse_cmu_text(text: str, path: Path) -> np.ndarray:
    """CSV text -> (N, 117) float64; ValueError naming the file and the first bad line."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError(f"{path}: empty CMU exp-map file (expected lines of {CMU_NUM_COLUMNS} comma-separated floats)")
    try:
        values = np.array(",".join(lines).split(","), dtype=np.float64)
    except ValueError:
        values = None
    if values is None or values.size != len(lines) * CMU_NUM_COLUMNS:
        # Slow path, only to say which line is wrong.
        for i, ln in enumerate(lines):
            fields = ln.split(",")
            if len(fields) != CMU_NUM_COLUMNS:
                raise ValueError(
                    f"{path}: line {i + 1} has {len(fields)} values, expected {CMU_NUM_COLUMNS} comma-separated floats"
                )
            try:
                np.array(fields, dtype=np.float64)
            except ValueError:
                raise ValueError(f"{path}: line {i + 1} is not numeric: {ln[:80]!r}") from None
    if values is None:  # unreachable unless the per-line checks above missed something
        raise ValueError(f"{path}: not a CMU exp-map file (expected {CMU_NUM_COLUMNS} comma-separated floats per line)")
    values = values.reshape(len(lines), CMU_NUM_COLUMNS)
    if not np.all(np.isfinite(values)):
        bad = int(np.nonzero(~np.isfinite(values).all(axis=1))[0][0])
        raise ValueError(f"{path}: line {bad + 1} holds a non-finite value")
    return values


def cmu_forward_kinematics(frames: np.ndarray, skel: CmuSkeleton) -> np.ndarray:
    """CMU exp-map rows (T, 117) -> all 38 joint positions (T, 38, 3) in mm, the ASF world (y up).

    The body follows the note of ``cmu38_skeleton.json`` (the reference ``fkl``) exactly: joint i's
    position is the end of bone i, ``x_i = offset_i @ R_parent + x_parent`` and
    ``R_i = expmap(r_i) @ R_parent`` (row vectors). Two deliberate differences, both checked on the
    data (see ``tests/test_mocap.py``):

    - the note's final axis reorder [0, 2, 1] is a reflection (det -1): it mirrors the body, so that
      the toes point opposite to ``cross(left, up)``. We stay in the ASF world (x = subject's left in
      the rest pose, y up, z = toes' direction), a right-handed frame, and rotate it to the camera
      frame later with a proper rotation;
    - the root translation is columns (c0, c1, c2) = ASF (x, y, z); the reference's (c2, c1, c0)
      moves walkers sideways (90 degrees from where their toes point), while (c0, c1, c2) makes the
      pelvis travel where the toes point in every straight walk of the subset. (A few turning walks,
      e.g. walking_extra/walking_24-26, have a jump in the source root exp-map after which the root
      yaw is mirrored relative to the trajectory; that is in the data, not in this conversion.)
    """
    t = frames.shape[0]
    rot = _rodrigues(frames[:, 3:].reshape(t, -1, 3))  # (T, 38, 3, 3)
    n = len(skel.parents)
    pos = np.zeros((t, n, 3))
    glob = np.zeros((t, n, 3, 3))
    for i, p in enumerate(skel.parents):
        if p < 0:
            pos[:, i] = skel.offsets_mm[i] + frames[:, 0:3] * CMU_ASF_UNIT_MM
            glob[:, i] = rot[:, i]
        else:
            pos[:, i] = np.einsum("j,tjk->tk", skel.offsets_mm[i], glob[:, p]) + pos[:, p]
            glob[:, i] = rot[:, i] @ glob[:, p]
    return pos


def read_cmu(
    path: str | Path,
    skeleton_path: str | Path | None = None,
    *,
    src_fps: float = CMU_FPS,
    fps: float = TARGET_FPS,
    drop_first: int = 1,
    relength_bones: bool = True,
    skeleton: Skeleton = H36M_17,
) -> MocapSequence:
    """Read a CMU exp-map text file (``.txt`` or ``.txt.gz``) into H36M_17 poses.

    Args:
        path: the file; one frame per line, 117 comma-separated floats.
        skeleton_path: ``cmu38_skeleton.json``; by default ``../cmu38_skeleton.json`` relative to the
            file's split folder (``cmu_mocap/<split>/<action>/<file>``), searched upwards.
        src_fps: frame rate of the file (120 Hz for the CMU subset).
        fps: output frame rate (every 4th frame for 120 -> 30; linear interpolation otherwise).
        drop_first: leading frames to drop (frame 0 is a T-pose).
        relength_bones: re-length bones to ``skeleton``'s canonical lengths (directions kept).
        skeleton: the output skeleton (H36M_17).

    Returns:
        MocapSequence with joints (T, 17, 3) mm root-relative and root (T, 3) mm, camera axes.
    """
    path = Path(path)
    skel = load_cmu_skeleton(str(skeleton_path) if skeleton_path is not None else str(_find_cmu_skeleton(path)))
    frames = _parse_cmu_text(_read_text(path), path)[drop_first:]
    if frames.shape[0] == 0:
        raise ValueError(f"{path}: no frames left after dropping the first {drop_first}")
    ratio = src_fps / fps
    if abs(ratio - round(ratio)) < 1e-3:
        # Integer ratio: only the kept frames go through FK (4x less work at 120 -> 30 Hz).
        frames = frames[:: int(round(ratio))]
        world = cmu_forward_kinematics(frames, skel)
    else:
        world = resample(cmu_forward_kinematics(frames, skel), src_fps, fps)
    world = world[:, list(skel.h36m_indices)] @ _Y_UP_TO_CAMERA.T
    return _finish(world, fps, path.name, skeleton, relength_bones)


def _find_cmu_skeleton(path: Path) -> Path:
    for parent in path.resolve().parents:
        cand = parent / "cmu38_skeleton.json"
        if cand.is_file():
            return cand
    raise ValueError(f"{path}: no cmu38_skeleton.json found in its parent folders; pass skeleton_path")


# ----------------------------------------------------------------------------- BVH
@dataclass(frozen=True)
class BvhJoint:
    """One node of a BVH hierarchy (End Sites are nodes without channels, named ``<parent>_End``)."""

    name: str
    parent: int
    offset: tuple[float, float, float]
    channels: tuple[str, ...]
    is_end_site: bool = False


@dataclass
class BvhMotion:
    """A parsed BVH file.

    Attributes:
        joints: hierarchy nodes, parents before children.
        frame_time: seconds per frame.
        values: (T, C) float64 channel values, C = total channels in hierarchy order.
    """

    joints: list[BvhJoint]
    frame_time: float
    values: np.ndarray

    @property
    def names(self) -> list[str]:
        return [j.name for j in self.joints]

    @property
    def fps(self) -> float:
        return 1.0 / self.frame_time


_CHANNEL_RE = re.compile(r"^([XYZ])(position|rotation)$", re.IGNORECASE)


def parse_bvh(text: str, source: str = "<bvh>") -> BvhMotion:
    """Parse BVH text; ValueError naming ``source`` and what is wrong."""
    if not text.strip():
        raise ValueError(f"{source}: empty BVH file")
    parts = re.split(r"^\s*MOTION\s*$", text, maxsplit=1, flags=re.MULTILINE)
    if len(parts) != 2:
        raise ValueError(f"{source}: truncated or not a BVH file: no MOTION section")
    head, motion = parts
    tokens = head.replace("{", " { ").replace("}", " } ").split()
    if not tokens or tokens[0].upper() != "HIERARCHY":
        raise ValueError(f"{source}: not a BVH file: it must start with HIERARCHY")
    joints: list[BvhJoint] = []
    stack: list[int] = []  # indices of open joints
    pending: tuple[str, bool] | None = None  # name of a joint whose '{' is next
    i = 1

    def need(n: int) -> list[str]:
        if i + n > len(tokens):
            raise ValueError(f"{source}: truncated hierarchy")
        return tokens[i : i + n]

    try:
        while i < len(tokens):
            tok = tokens[i]
            key = tok.upper()
            if key in ("ROOT", "JOINT"):
                (name,) = need(2)[1:]
                if key == "ROOT" and stack:
                    raise ValueError(f"{source}: ROOT inside another joint")
                pending = (name, False)
                i += 2
            elif key == "END":
                need(2)
                parent_name = joints[stack[-1]].name if stack else "root"
                n_ends = sum(1 for j in joints if j.is_end_site and j.name.startswith(f"{parent_name}_End"))
                pending = (f"{parent_name}_End" + (f"{n_ends + 1}" if n_ends else ""), True)
                i += 2
            elif key == "{":
                if pending is None:
                    raise ValueError(f"{source}: '{{' without a joint")
                joints.append(BvhJoint(pending[0], stack[-1] if stack else -1, (0.0, 0.0, 0.0), (), pending[1]))
                stack.append(len(joints) - 1)
                pending = None
                i += 1
            elif key == "}":
                if not stack:
                    raise ValueError(f"{source}: unbalanced '}}' in the hierarchy")
                stack.pop()
                i += 1
            elif key == "OFFSET":
                vals = need(4)[1:]
                j = joints[stack[-1]]
                joints[stack[-1]] = BvhJoint(j.name, j.parent, tuple(float(v) for v in vals), j.channels, j.is_end_site)
                i += 4
            elif key == "CHANNELS":
                n = int(need(2)[1])
                chans = tuple(need(2 + n)[2:])
                for c in chans:
                    if not _CHANNEL_RE.match(c):
                        raise ValueError(f"{source}: unknown channel {c!r}")
                j = joints[stack[-1]]
                joints[stack[-1]] = BvhJoint(j.name, j.parent, j.offset, chans, j.is_end_site)
                i += 2 + n
            else:
                raise ValueError(f"{source}: unexpected token {tok!r} in the hierarchy")
    except IndexError:
        raise ValueError(f"{source}: malformed hierarchy (a token outside any joint)") from None
    if stack or pending is not None:
        raise ValueError(f"{source}: truncated hierarchy (unclosed joint)")
    if not joints:
        raise ValueError(f"{source}: the hierarchy has no joints")

    m_frames = re.search(r"Frames:\s*(\d+)", motion)
    m_time = re.search(r"Frame\s+Time:\s*([-+0-9.eE]+)", motion)
    if m_frames is None or m_time is None:
        raise ValueError(f"{source}: truncated MOTION section (no 'Frames:' / 'Frame Time:' header)")
    n_frames = int(m_frames.group(1))
    frame_time = float(m_time.group(1))
    if not frame_time > 0:
        raise ValueError(f"{source}: Frame Time must be positive, got {frame_time}")
    body = motion[m_time.end() :]
    n_chan = sum(len(j.channels) for j in joints)
    try:
        values = np.array(body.split(), dtype=np.float64)
    except ValueError:
        bad = next(ln for ln in body.splitlines() if not _all_floats(ln))
        raise ValueError(f"{source}: non-numeric motion data: {bad.strip()[:80]!r}") from None
    if n_frames == 0:
        raise ValueError(f"{source}: the MOTION section has no frames")
    if values.size != n_frames * n_chan:
        raise ValueError(
            f"{source}: truncated or inconsistent motion data: header says {n_frames} frames x {n_chan} channels "
            f"= {n_frames * n_chan} values, found {values.size} ({values.size / max(n_chan, 1):.1f} frames)"
        )
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{source}: the motion data holds non-finite values")
    return BvhMotion(joints, frame_time, values.reshape(n_frames, n_chan))


def _all_floats(line: str) -> bool:
    try:
        [float(v) for v in line.split()]
    except ValueError:
        return False
    return True


def _axis_rotations(axis: str, deg: np.ndarray) -> np.ndarray:
    """Elementary rotations (T, 3, 3) about 'X', 'Y' or 'Z' by ``deg`` degrees (column vectors)."""
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    one, zero = np.ones_like(a), np.zeros_like(a)
    if axis == "X":
        m = [one, zero, zero, zero, c, -s, zero, s, c]
    elif axis == "Y":
        m = [c, zero, s, zero, one, zero, -s, zero, c]
    else:
        m = [c, -s, zero, s, c, zero, zero, zero, one]
    return np.stack(m, axis=-1).reshape(*a.shape, 3, 3)


def bvh_forward_kinematics(motion: BvhMotion) -> tuple[np.ndarray, np.ndarray]:
    """Global joint positions (T, N, 3) in BVH units and rotations (T, N, 3, 3), world axes.

    Column-vector convention: a joint's local rotation is the product of its rotation channels in
    the listed order (``Zrotation Xrotation Yrotation`` -> Rz Rx Ry); its local translation is its
    OFFSET, each component replaced by the matching position channel when it has one; and
    ``R_j = R_parent R_local``, ``p_j = p_parent + R_parent t_local``.
    """
    t = motion.values.shape[0]
    n = len(motion.joints)
    pos = np.zeros((t, n, 3))
    glob = np.zeros((t, n, 3, 3))
    col = 0
    for i, j in enumerate(motion.joints):
        trans = np.broadcast_to(np.asarray(j.offset, dtype=np.float64), (t, 3)).copy()
        local = None
        for ch in j.channels:
            axis, kind = ch[0].upper(), ch[1:].lower()
            v = motion.values[:, col]
            col += 1
            if kind == "position":
                trans[:, "XYZ".index(axis)] = v
            else:
                r = _axis_rotations(axis, v)
                local = r if local is None else local @ r
        if local is None:
            local = np.broadcast_to(np.eye(3), (t, 3, 3))
        if j.parent < 0:
            pos[:, i] = trans
            glob[:, i] = local
        else:
            pos[:, i] = pos[:, j.parent] + np.einsum("tij,tj->ti", glob[:, j.parent], trans)
            glob[:, i] = glob[:, j.parent] @ local
    return pos, glob


# A joint-map entry: a BVH joint name, or a derived point:
#   ("mid", a, b)                 midpoint of joints a and b
#   ("extend", a, b, f)           b + f * (b - a): extrapolated beyond b along a -> b
#   ("local", joint, (x, y, z))   a point fixed in the joint's own frame, offset in BVH units
#                                 (like an End Site; it turns with the joint)
JointSpec = str | tuple

# Bandai Namco Research Motion Dataset skeleton (22 joints, cm). Its chain Hips -> Spine (16 cm)
# -> Chest (9 cm) -> Neck (16 cm) -> Head (6.5 cm) has no head-top, and the shoulders hang off the
# Chest at the height of the Neck. We take:
#   spine  = midpoint of Spine and Chest (~20 cm above Hips: about half way to the neck base, like
#            the H36M spine joint);
#   thorax = Neck (the base of the neck, level with the shoulders, where H36M's thorax sits);
#   neck   = the H36M "neck/nose" point, on the head's axis one neck-bone length beyond Head
#            (~12 cm above the neck base, like H36M and like CMU's upper neck);
#   head   = the head top, extrapolated along Neck -> Head in the head's own frame (so it follows
#            the head's rotation) to 2.7 neck-bone lengths beyond Head (~24 cm above the neck base,
#            the adult C7-to-vertex height).
# The head points are End-Site-like offsets along the Head's local +x axis, the axis every bone of
# this skeleton's spine chain points along (Head's OFFSET from Neck is (6.45672, 0, 0) cm).
_BANDAI_NECK_CM = 6.45672
BANDAI_JOINT_MAP: dict[str, JointSpec] = {
    "pelvis": "Hips",
    "r_hip": "UpperLeg_R",
    "r_knee": "LowerLeg_R",
    "r_ankle": "Foot_R",
    "l_hip": "UpperLeg_L",
    "l_knee": "LowerLeg_L",
    "l_ankle": "Foot_L",
    "spine": ("mid", "Spine", "Chest"),
    "thorax": "Neck",
    "neck": ("local", "Head", (1.0 * _BANDAI_NECK_CM, 0.0, 0.0)),
    "head": ("local", "Head", (2.7 * _BANDAI_NECK_CM, 0.0, 0.0)),
    "l_shoulder": "UpperArm_L",
    "l_elbow": "LowerArm_L",
    "l_wrist": "Hand_L",
    "r_shoulder": "UpperArm_R",
    "r_elbow": "LowerArm_R",
    "r_wrist": "Hand_R",
}

# Candidate length units, mm per BVH unit: mm, cm, inch, CMU ASF unit, dm, m.
_UNIT_CANDIDATES_MM = (1.0, 10.0, 25.4, CMU_ASF_UNIT_MM, 100.0, 1000.0)


def _spec_joints(spec: JointSpec) -> list[str]:
    if isinstance(spec, str):
        return [spec]
    if isinstance(spec, tuple) and len(spec) >= 2:
        kind = spec[0]
        if kind == "mid" and len(spec) == 3:
            return [spec[1], spec[2]]
        if kind == "extend" and len(spec) == 4:
            return [spec[1], spec[2]]
        if kind == "local" and len(spec) == 3 and len(spec[2]) == 3:
            return [spec[1]]
    raise ValueError(
        f"bad joint-map entry {spec!r}; expected a BVH joint name, ('mid', a, b), ('extend', a, b, factor) "
        f"or ('local', joint, (x, y, z))"
    )


def _check_map(names: Sequence[str], joint_map: Mapping[str, JointSpec], skeleton: Skeleton, source: str) -> None:
    missing_keys = [n for n in skeleton.joint_names if n not in joint_map]
    if missing_keys:
        raise ValueError(f"{source}: the joint map has no entry for {missing_keys} (keys are {skeleton.name} names)")
    known = set(names)
    unknown = sorted({b for h in skeleton.joint_names for b in _spec_joints(joint_map[h]) if b not in known})
    if unknown:
        raise ValueError(
            f"{source}: the joint map names BVH joints that the file does not have: {unknown}; "
            f"the file's joints are {list(names)}. Pass joint_map={{h36m_name: bvh_joint_name}}."
        )


def _rest_positions(motion: BvhMotion) -> np.ndarray:
    """(N, 3) rest-pose positions from OFFSETs alone (no rotations), BVH units."""
    pos = np.zeros((len(motion.joints), 3))
    for i, j in enumerate(motion.joints):
        pos[i] = np.asarray(j.offset) + (pos[j.parent] if j.parent >= 0 else 0.0)
    return pos


def guess_unit_mm(motion: BvhMotion, joint_map: Mapping[str, JointSpec], skeleton: Skeleton = H36M_17) -> float:
    """Guess mm per BVH unit from the rest-pose leg (hip -> knee -> ankle), which is ~0.85 m in adults."""
    names = motion.names
    rest = _rest_positions(motion)
    total = 0.0
    for a, b in (("r_hip", "r_knee"), ("r_knee", "r_ankle"), ("l_hip", "l_knee"), ("l_knee", "l_ankle")):
        sa, sb = joint_map[a], joint_map[b]
        if not (isinstance(sa, str) and isinstance(sb, str)):
            continue
        total += float(np.linalg.norm(rest[names.index(sb)] - rest[names.index(sa)])) / 2.0
    if total <= 0:
        raise ValueError("cannot guess the BVH length unit (no leg bones in the joint map); pass unit_mm")
    return min(_UNIT_CANDIDATES_MM, key=lambda u: abs(math.log(total * u / 850.0)))


def bvh_to_h36m(motion: BvhMotion, joint_map: Mapping[str, JointSpec], skeleton: Skeleton = H36M_17) -> np.ndarray:
    """H36M joints (T, J, 3) in BVH units and world axes, from a parsed BVH and a joint map."""
    pos, glob = bvh_forward_kinematics(motion)
    index = {n: i for i, n in enumerate(motion.names)}
    out = np.zeros((pos.shape[0], skeleton.num_joints, 3))
    for k, h in enumerate(skeleton.joint_names):
        spec = joint_map[h]
        if isinstance(spec, str):
            out[:, k] = pos[:, index[spec]]
        elif spec[0] == "mid":
            out[:, k] = 0.5 * (pos[:, index[spec[1]]] + pos[:, index[spec[2]]])
        elif spec[0] == "extend":
            a, b = pos[:, index[spec[1]]], pos[:, index[spec[2]]]
            out[:, k] = b + float(spec[3]) * (b - a)
        else:  # "local"
            j = index[spec[1]]
            out[:, k] = pos[:, j] + np.einsum("tij,j->ti", glob[:, j], np.asarray(spec[2], dtype=np.float64))
    return out


def read_bvh(
    path: str | Path,
    joint_map: Mapping[str, JointSpec] | None = None,
    *,
    unit_mm: float | None = None,
    up_axis: Literal["y", "z"] = "y",
    fps: float = TARGET_FPS,
    drop_first: int = 0,
    relength_bones: bool = True,
    skeleton: Skeleton = H36M_17,
) -> MocapSequence:
    """Read a BVH file (``.bvh`` or ``.bvh.gz``) into H36M_17 poses.

    Args:
        path: the file.
        joint_map: H36M joint name -> BVH joint name or derived point (see :data:`JointSpec`);
            :data:`BANDAI_JOINT_MAP` by default. End Sites are addressable as ``<parent>_End``.
        unit_mm: millimetres per BVH length unit (10 for the Bandai Namco files, which are in cm);
            guessed from the rest-pose leg length when None.
        up_axis: the world's up axis ("y" for standard BVH).
        fps: output frame rate; the file's Frame Time is resampled to it (positions are linearly
            interpolated when the ratio is not an integer).
        drop_first: leading frames to drop.
        relength_bones: re-length bones to ``skeleton``'s canonical lengths (directions kept).
        skeleton: the output skeleton (H36M_17).

    Returns:
        MocapSequence with joints (T, 17, 3) mm root-relative and root (T, 3) mm, camera axes.
    """
    path = Path(path)
    motion = parse_bvh(_read_text(path), str(path))
    jmap = BANDAI_JOINT_MAP if joint_map is None else joint_map
    _check_map(motion.names, jmap, skeleton, str(path))
    if drop_first:
        motion = BvhMotion(motion.joints, motion.frame_time, motion.values[drop_first:])
        if motion.values.shape[0] == 0:
            raise ValueError(f"{path}: no frames left after dropping the first {drop_first}")
    scale = guess_unit_mm(motion, jmap, skeleton) if unit_mm is None else float(unit_mm)
    if not scale > 0:
        raise ValueError(f"unit_mm must be positive, got {unit_mm}")
    if up_axis not in ("y", "z"):
        raise ValueError(f"up_axis must be 'y' or 'z', got {up_axis!r}")
    world = bvh_to_h36m(motion, jmap, skeleton) * scale
    world = world @ (_Y_UP_TO_CAMERA if up_axis == "y" else _Z_UP_TO_CAMERA).T
    world = resample(world, motion.fps, fps)
    return _finish(world, fps, path.name, skeleton, relength_bones)


# ----------------------------------------------------------------------------- dispatch
def is_mocap_file(path: str | Path) -> bool:
    """True for the file kinds :func:`read_mocap` understands."""
    name = Path(path).name.lower()
    return name.endswith((".bvh", ".bvh.gz", ".txt", ".txt.gz"))


def read_mocap(path: str | Path, **kwargs) -> MocapSequence:
    """Read a CMU exp-map text (.txt[.gz]) or BVH (.bvh[.gz]) file; keyword arguments go to the reader."""
    name = Path(path).name.lower()
    if name.endswith((".bvh", ".bvh.gz")):
        return read_bvh(path, **kwargs)
    if name.endswith((".txt", ".txt.gz")):
        return read_cmu(path, **kwargs)
    raise ValueError(f"{path}: unknown mocap file type; expected .bvh, .bvh.gz, .txt or .txt.gz")
