"""A minimal glTF 2.0 binary (GLB) writer for an animated stick skeleton.

The skeleton is one node per joint (a low-poly sphere) and one node per bone (a unit cylinder along +Y
from y = 0 to y = 1, placed by translation, rotation and a Y scale equal to the bone's length). A clip is
a glTF animation of those nodes' transforms sampled at the clip's frame times with linear interpolation,
so any standard viewer (Blender, three.js, Babylon.js as in the app's preview) plays it in real time.
trimesh has no writer for animations, hence this file; the geometry still comes from trimesh.

Units and axes are glTF's: metres, Y up, +Z the front (see :data:`nlrd.export.CAMERA_TO_Y_UP`).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import numpy as np

from nlrd.skeleton import Skeleton

# glTF constants (spec 2.0, section 5)
_FLOAT, _UINT16, _UINT32 = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963

_SIDE_RGBA: dict[str, tuple[float, float, float, float]] = {
    "left": (31 / 255, 119 / 255, 180 / 255, 1.0),
    "right": (214 / 255, 39 / 255, 40 / 255, 1.0),
    "centre": (90 / 255, 90 / 255, 90 / 255, 1.0),
}


@dataclass(frozen=True)
class SkeletonTrack:
    """Per-frame node transforms of the stick skeleton (T frames, J joints, E bones).

    Attributes:
        joint_translation: (T, J, 3) float32 metres, Y up.
        bone_translation: (T, E, 3) float32 metres: the bone's parent joint.
        bone_rotation: (T, E, 4) float32 unit quaternions (x, y, z, w) turning +Y onto the bone.
        bone_scale: (T, E, 3) float32: (1, length in metres, 1).
        edges: the (parent, child) joint pairs of the E bones.
    """

    joint_translation: np.ndarray
    bone_translation: np.ndarray
    bone_rotation: np.ndarray
    bone_scale: np.ndarray
    edges: tuple[tuple[int, int], ...]


def _quat_from_y(v: np.ndarray) -> np.ndarray:
    """(..., 3) unit vectors -> (..., 4) quaternions (x, y, z, w) of the shortest rotation +Y -> v."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    # cross((0, 1, 0), v) = (z, 0, -x); w = 1 + dot = 1 + y
    q = np.stack([z, np.zeros_like(y), -x, 1.0 + y], axis=-1)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    flipped = n[..., 0] < 1e-6  # v = -Y: any half turn about a horizontal axis
    q = np.where(flipped[..., None], np.array([1.0, 0.0, 0.0, 0.0]), q / np.maximum(n, 1e-12))
    return q


def skeleton_track(poses_m: np.ndarray, skeleton: Skeleton) -> SkeletonTrack:
    """Node transforms for (T, J, 3) finite poses in metres (Y up)."""
    edges = tuple((int(p), int(c)) for p, c in skeleton.edges)
    par = np.array([p for p, _ in edges])
    chi = np.array([c for _, c in edges])
    vec = poses_m[:, chi] - poses_m[:, par]
    length = np.linalg.norm(vec, axis=-1)
    unit = vec / np.maximum(length, 1e-9)[..., None]
    unit[length < 1e-9] = (0.0, 1.0, 0.0)
    rot = _quat_from_y(unit)
    # Linear interpolation of quaternions takes the short way only when consecutive keys agree in sign.
    for t in range(1, len(rot)):
        flip = np.sum(rot[t] * rot[t - 1], axis=-1) < 0
        rot[t, flip] *= -1.0
    scale = np.ones_like(vec)
    scale[..., 1] = length
    f32 = np.float32
    return SkeletonTrack(poses_m.astype(f32), poses_m[:, par].astype(f32), rot.astype(f32), scale.astype(f32), edges)


class _Builder:
    """Accumulates buffer views and accessors into one binary buffer."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.views: list[dict] = []
        self.accessors: list[dict] = []

    def add(self, data: np.ndarray, kind: str, target: int | None = None, minmax: bool = False) -> int:
        """Append ``data`` (float32 or uint) as one accessor of type ``kind`` ('SCALAR', 'VEC3', ...)."""
        while len(self.blob) % 4:
            self.blob.append(0)
        raw = np.ascontiguousarray(data).tobytes()
        view: dict = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(raw)}
        if target is not None:
            view["target"] = target
        self.blob.extend(raw)
        self.views.append(view)
        comp = {np.dtype(np.float32): _FLOAT, np.dtype(np.uint16): _UINT16, np.dtype(np.uint32): _UINT32}[data.dtype]
        width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[kind]
        acc: dict = {"bufferView": len(self.views) - 1, "componentType": comp, "count": int(data.size // width),
                     "type": kind}  # fmt: skip
        if minmax:
            flat = data.reshape(-1, width)
            acc["min"] = [float(v) for v in flat.min(axis=0)]
            acc["max"] = [float(v) for v in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _primitive_mesh(builder: _Builder, mesh, material: int) -> dict:
    pos = np.asarray(mesh.vertices, dtype=np.float32)
    nrm = np.asarray(mesh.vertex_normals, dtype=np.float32)
    idx = np.asarray(mesh.faces, dtype=np.uint32).reshape(-1)
    if idx.max() < 65536:
        idx = idx.astype(np.uint16)
    attrs = {"POSITION": builder.add(pos, "VEC3", _ARRAY_BUFFER, minmax=True),
             "NORMAL": builder.add(nrm, "VEC3", _ARRAY_BUFFER)}  # fmt: skip
    return {"primitives": [{"attributes": attrs, "indices": builder.add(idx, "SCALAR", _ELEMENT_ARRAY_BUFFER),
                            "material": material}]}  # fmt: skip


def skeleton_glb(
    track: SkeletonTrack,
    skeleton: Skeleton,
    fps: float,
    bone_radius_m: float = 0.02,
    joint_radius_m: float = 0.03,
    sections: int = 8,
) -> bytes:
    """The GLB bytes of the stick skeleton; animated when the track has more than one frame."""
    import trimesh  # lazily: importing it costs most of a second

    b = _Builder()
    sides = list(_SIDE_RGBA)
    materials = [{"name": s, "pbrMetallicRoughness": {"baseColorFactor": list(_SIDE_RGBA[s]), "metallicFactor": 0.0,
                                                       "roughnessFactor": 0.8}} for s in sides]  # fmt: skip
    sphere = trimesh.creation.icosphere(subdivisions=1, radius=joint_radius_m)
    cyl = trimesh.creation.cylinder(radius=bone_radius_m, segment=np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]]),
                                    sections=sections)  # fmt: skip
    meshes = [_primitive_mesh(b, sphere, i) for i in range(len(sides))]
    meshes += [_primitive_mesh(b, cyl, i) for i in range(len(sides))]
    nodes: list[dict] = []
    for j in range(skeleton.num_joints):
        nodes.append({"name": f"joint_{skeleton.joint_names[j]}", "mesh": sides.index(skeleton.side(j)),
                      "translation": [float(v) for v in track.joint_translation[0, j]]})  # fmt: skip
    for e, (p, c) in enumerate(track.edges):
        nodes.append({"name": f"bone_{skeleton.joint_names[p]}_{skeleton.joint_names[c]}",
                      "mesh": len(sides) + sides.index(skeleton.side(c)),
                      "translation": [float(v) for v in track.bone_translation[0, e]],
                      "rotation": [float(v) for v in track.bone_rotation[0, e]],
                      "scale": [float(v) for v in track.bone_scale[0, e]]})  # fmt: skip
    doc: dict = {
        "asset": {"version": "2.0", "generator": "nlrd"},
        "scene": 0,
        "scenes": [{"name": "skeleton", "nodes": list(range(len(nodes)))}],
        "nodes": nodes,
        "meshes": meshes,
        "materials": materials,
    }
    frames = track.joint_translation.shape[0]
    if frames > 1:
        times = b.add((np.arange(frames, dtype=np.float32) / np.float32(fps)), "SCALAR", minmax=True)
        samplers: list[dict] = []
        channels: list[dict] = []

        def animate(node: int, path: str, values: np.ndarray) -> None:
            out = b.add(np.ascontiguousarray(values, dtype=np.float32), "VEC4" if path == "rotation" else "VEC3")
            samplers.append({"input": times, "output": out, "interpolation": "LINEAR"})
            channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": path}})

        nj = skeleton.num_joints
        for j in range(nj):
            animate(j, "translation", track.joint_translation[:, j])
        for e in range(len(track.edges)):
            animate(nj + e, "translation", track.bone_translation[:, e])
            animate(nj + e, "rotation", track.bone_rotation[:, e])
            animate(nj + e, "scale", track.bone_scale[:, e])
        doc["animations"] = [{"name": "clip", "samplers": samplers, "channels": channels}]
    while len(b.blob) % 4:
        b.blob.append(0)
    doc["buffers"] = [{"byteLength": len(b.blob)}]
    doc["bufferViews"] = b.views
    doc["accessors"] = b.accessors
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    total = 12 + 8 + len(js) + 8 + len(b.blob)
    return (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(js), b"JSON") + js
            + struct.pack("<I4s", len(b.blob), b"BIN\x00") + bytes(b.blob))  # fmt: skip


def read_glb(data: bytes) -> tuple[dict, bytes]:
    """Split GLB bytes into the JSON document and the binary chunk (for tests and tools)."""
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2 or total != len(data):
        raise ValueError("not a glTF 2.0 binary")
    n, kind = struct.unpack_from("<I4s", data, 12)
    if kind != b"JSON":
        raise ValueError("the first GLB chunk is not JSON")
    doc = json.loads(data[20 : 20 + n])
    off = 20 + n
    m, kind = struct.unpack_from("<I4s", data, off)
    return doc, data[off + 8 : off + 8 + m] if kind == b"BIN\x00" else b""


def accessor_array(doc: dict, blob: bytes, index: int) -> np.ndarray:
    """An accessor's data as a (count, width) float32/uint array."""
    acc = doc["accessors"][index]
    view = doc["bufferViews"][acc["bufferView"]]
    dtype = {_FLOAT: np.float32, _UINT16: np.uint16, _UINT32: np.uint32}[acc["componentType"]]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4}[acc["type"]]
    start = view["byteOffset"] + acc.get("byteOffset", 0)
    return np.frombuffer(blob, dtype=dtype, count=acc["count"] * width, offset=start).reshape(acc["count"], width)
