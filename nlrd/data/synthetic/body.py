"""A posed human body mesh from a 17-joint pose: tapered capsules, a tapered torso, head, hands, feet.

Every vertex of the body belongs to one or two *frames*: a frame is a 3x3 linear map plus a
translation (an affine matrix) that places a unit primitive in space. The primitives are built once
per process (:func:`body_template`, cached) and each pose only computes ~40 small frames and applies
them to all vertices in a few vectorised numpy operations, so building a posed body takes well under
a millisecond.

- Limbs (thighs, shins, upper arms, forearms, clavicles, neck) are sphere-swept tapered capsules:
  vertex ``p = (1 - w) * (A x + a) + w * (B x + b)`` with ``A = ra * F``, ``B = rb * F`` for the limb
  frame ``F = [e1, e2, axis]`` and end radii ``ra``, ``rb``; ``w`` is 0 on the hemisphere at the
  parent joint, 1 on the one at the child joint and in between on interior rings.
- The torso is a stack of elliptical rings between the hips and the shoulders whose lateral axis
  turns from the hip line to the shoulder line (so the torso twists with the pose).
- The head, hands and feet are ellipsoids (trimesh icospheres scaled per axis).

Coordinates: millimetres, camera-style axes (x right, y DOWN, z forward); the pose is root-relative
and ``y`` is taken as the vertical (gravity points along +y).

Per-face part ids (:class:`Part`) let an appearance give each part a material (skin, hair, top,
bottom, shoes), e.g. short sleeves make the distal upper arm and the forearm skin. Per-vertex
texture coordinates ``uv`` are in millimetres (around the part, along the part) so procedural
clothing patterns keep a physical scale on every part.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from nlrd.skeleton import H36M_17, Skeleton

if TYPE_CHECKING:  # trimesh is imported where it is used: importing it costs most of a second
    import trimesh


class Part(IntEnum):
    """Body parts that an appearance can colour separately (one id per face)."""

    TORSO_LOW = 0  # hips and belly below the waistline: covered by the bottom garment
    TORSO_UP = 1  # chest and shoulders
    NECK = 2
    CLAVICLE = 3
    UPPER_ARM_PROX = 4  # shoulder half of the upper arm (short sleeves end here)
    UPPER_ARM_DIST = 5
    FOREARM = 6
    HAND = 7
    THIGH_PROX = 8  # hip half of the thigh (shorts end here)
    THIGH_DIST = 9
    SHIN = 10
    FOOT = 11
    FACE = 12
    HAIR_TOP = 13
    HAIR_BACK = 14


NUM_PARTS = len(Part)


@dataclass(frozen=True)
class BodyShape:
    """Body-shape parameters of one person (all multipliers of a canonical adult).

    The label is the given pose, so the skeleton's bone lengths are not changed by default;
    ``height_scale`` scales the pose itself (and therefore the label) when a style asks for it.
    """

    girth: float = 1.0  # torso width and depth
    limb_thickness: float = 1.0  # radii of arms and legs
    head_scale: float = 1.0
    hip_width: float = 1.0  # lower torso width relative to the chest
    belly: float = 1.0  # waist depth
    extremity_scale: float = 1.0  # hands and feet
    height_scale: float = 1.0


def sample_body_shape(rng: np.random.Generator, height_range: tuple[float, float] = (1.0, 1.0)) -> BodyShape:
    """Draw one person's body shape. Ranges cover slim to heavy adults."""
    girth = float(rng.uniform(0.85, 1.25))
    return BodyShape(
        girth=girth,
        # heavier people tend to have thicker limbs; keep some independence
        limb_thickness=float(np.clip(0.5 * girth + rng.uniform(0.35, 0.65), 0.8, 1.3)),
        head_scale=float(rng.uniform(0.92, 1.08)),
        hip_width=float(rng.uniform(0.9, 1.15)),
        belly=float(rng.uniform(0.9, 1.0 + 0.6 * (girth - 0.85))),
        extremity_scale=float(rng.uniform(0.9, 1.1)),
        height_scale=float(rng.uniform(*height_range)),
    )


@dataclass
class BodyMesh:
    """A posed body. V vertices, F faces.

    Attributes:
        vertices: (V, 3) float32 mm, in the frame of the pose it was built from.
        normals: (V, 3) float32 unit outward normals.
        uv: (V, 2) float32 mm texture coordinates (around the part, along the part).
        faces: (F, 3) int32 vertex indices.
        face_part: (F,) int16 :class:`Part` id per face.
    """

    vertices: np.ndarray
    normals: np.ndarray
    uv: np.ndarray
    faces: np.ndarray
    face_part: np.ndarray

    def transformed(self, rot: np.ndarray, trans: np.ndarray | None = None) -> BodyMesh:
        """The same mesh rotated by ``rot`` (3, 3) and shifted by ``trans`` (3,) mm."""
        v = self.vertices @ rot.T.astype(np.float32)
        if trans is not None:
            v = v + np.asarray(trans, dtype=np.float32)
        return BodyMesh(
            v.astype(np.float32),
            (self.normals @ rot.T.astype(np.float32)).astype(np.float32),
            self.uv,
            self.faces,
            self.face_part,
        )

    def to_trimesh(self, face_colors: np.ndarray | None = None) -> trimesh.Trimesh:
        """A trimesh of the body (e.g. for GLB export); ``face_colors`` (F, 3|4) uint8 optional."""
        import trimesh

        mesh = trimesh.Trimesh(self.vertices.astype(np.float64), self.faces, process=False)
        if face_colors is not None:
            mesh.visual.face_colors = face_colors
        return mesh


# ----------------------------------------------------------------------------- template
# Limb capsules: (parent joint, child joint, radius at parent, radius at child) in mm for a
# canonical adult, H36M_17 indices. The neck runs from the thorax to a point under the head centre
# (filled in at pose time), marked by child -1.
_CAPSULES: tuple[tuple[int, int, float, float, Part, Part], ...] = (
    (1, 2, 82.0, 52.0, Part.THIGH_PROX, Part.THIGH_DIST),  # right thigh
    (4, 5, 82.0, 52.0, Part.THIGH_PROX, Part.THIGH_DIST),  # left thigh
    (2, 3, 52.0, 36.0, Part.SHIN, Part.SHIN),
    (5, 6, 52.0, 36.0, Part.SHIN, Part.SHIN),
    (14, 15, 46.0, 37.0, Part.UPPER_ARM_PROX, Part.UPPER_ARM_DIST),
    (11, 12, 46.0, 37.0, Part.UPPER_ARM_PROX, Part.UPPER_ARM_DIST),
    (15, 16, 36.0, 27.0, Part.FOREARM, Part.FOREARM),
    (12, 13, 36.0, 27.0, Part.FOREARM, Part.FOREARM),
    (8, 14, 58.0, 50.0, Part.CLAVICLE, Part.CLAVICLE),
    (8, 11, 58.0, 50.0, Part.CLAVICLE, Part.CLAVICLE),
    (8, -1, 52.0, 48.0, Part.NECK, Part.NECK),
)  # fmt: skip
_CAP_AROUND = 12  # vertices around a capsule ring (plus one seam duplicate)
_CAP_LATS = (45.0, 75.0)  # hemisphere ring latitudes (deg); the equator ring is shared with the body
_CAP_BODY_W = (0.0, 0.5, 1.0)  # interior ring positions along the limb (prox/dist split at 0.5)

# Torso rings: (where along the pelvis->spine->thorax path, half-width, half-depth, lateral
# blend from hip line (0) to shoulder line (1), extra offset along the body's up axis in mm).
# Path position: 0 = pelvis, 1 = spine, 2 = thorax.
_TORSO_RINGS: tuple[tuple[float, float, float, float, float], ...] = (
    (0.0, 150.0, 92.0, 0.0, -85.0),  # buttocks, below the hip joints
    (0.0, 178.0, 108.0, 0.0, 0.0),  # hips
    (0.55, 160.0, 104.0, 0.2, 0.0),  # waistline (bottom garment ends below this ring)
    (1.0, 148.0, 102.0, 0.35, 0.0),  # waist
    (1.4, 162.0, 110.0, 0.6, 0.0),  # chest
    (1.75, 170.0, 104.0, 0.85, 0.0),  # upper chest
    (2.0, 168.0, 84.0, 1.0, -10.0),  # shoulder line
    (2.0, 112.0, 66.0, 1.0, 30.0),  # top, closing towards the neck
)  # fmt: skip
_TORSO_AROUND = 16
_TORSO_LOW_BANDS = 2  # bands (ring k -> k+1) with k < this are TORSO_LOW
_TORSO_CAP = (-22.0, 28.0)  # bottom / top cap centre offsets along the axis (mm)

# Ellipsoids: semi-axes (mm) along the frame columns; head frame = [lateral, forward, up],
# hand frame = [e1, e2, wrist direction], foot frame = [lateral, up, forward].
_HEAD_AXES = (76.0, 92.0, 112.0)
_HAND_AXES = (40.0, 20.0, 78.0)
_FOOT_AXES = (46.0, 36.0, 118.0)


@dataclass(frozen=True)
class BodyTemplate:
    """Unposed primitives of the whole body, concatenated. V vertices, F faces, K frames.

    ``local`` (V, 3) are unit-primitive coordinates; vertex v is ``(1-w) M[ia] local + w M[ib] local``
    (plus the frames' translations). ``theta`` (V,) is the angle around the part (for texture u),
    ``faces`` (F, 3) int32 and ``face_part`` (F,) int16.
    """

    local: np.ndarray
    ia: np.ndarray
    ib: np.ndarray
    w: np.ndarray
    theta: np.ndarray
    faces: np.ndarray
    face_part: np.ndarray
    num_frames: int
    n_capsules: int
    n_rings: int

    @property
    def num_vertices(self) -> int:
        return int(self.local.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])


def _ring_band_faces(r0: int, r1: int, n: int) -> list[tuple[int, int, int]]:
    """Quads between two rings of n+1 vertices (with seam duplicate) as triangles."""
    out = []
    for k in range(n):
        a, b, c, d = r0 + k, r0 + k + 1, r1 + k, r1 + k + 1
        out.append((a, c, b))
        out.append((b, c, d))
    return out


def _fan_faces(centre: int, ring: int, n: int) -> list[tuple[int, int, int]]:
    return [(centre, ring + k, ring + k + 1) for k in range(n)]


def _capsule_primitive() -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """One capsule: local unit-sphere coords (V, 3), blend weight w (V,) (0 at the parent joint, 1 at
    the child), theta (V,) around the axis, faces, and a per-face flag (0 proximal, 1 distal half)."""
    n = _CAP_AROUND
    th = np.linspace(0.0, 2.0 * np.pi, n + 1)  # seam duplicate at 2*pi keeps texture u continuous
    rings: list[tuple[np.ndarray, float]] = []  # (local (n+1, 3), w), from the parent pole to the child pole
    for lat in reversed(_CAP_LATS):  # parent hemisphere
        c, s = np.cos(np.radians(lat)), np.sin(np.radians(lat))
        rings.append((np.stack([c * np.cos(th), c * np.sin(th), -s * np.ones_like(th)], 1), 0.0))
    for wv in _CAP_BODY_W:  # straight (tapered) part: the same unit circle, blended between the ends
        rings.append((np.stack([np.cos(th), np.sin(th), np.zeros_like(th)], 1), wv))
    for lat in _CAP_LATS:  # child hemisphere
        c, s = np.cos(np.radians(lat)), np.sin(np.radians(lat))
        rings.append((np.stack([c * np.cos(th), c * np.sin(th), s * np.ones_like(th)], 1), 1.0))
    local = [np.array([[0.0, 0.0, -1.0]])] + [loc for loc, _ in rings] + [np.array([[0.0, 0.0, 1.0]])]
    w = [np.array([0.0])] + [np.full(n + 1, wv) for _, wv in rings] + [np.array([1.0])]
    thetas = [np.array([0.0])] + [th for _ in rings] + [np.array([0.0])]
    ring_start = [1 + i * (n + 1) for i in range(len(rings))]
    faces: list[tuple[int, int, int]] = [(a, c, b) for a, b, c in _fan_faces(0, ring_start[0], n)]
    distal: list[int] = [0] * n
    for i in range(len(rings) - 1):
        faces += _ring_band_faces(ring_start[i], ring_start[i + 1], n)
        distal += [int(rings[i][1] + rings[i + 1][1] > 1.0)] * (2 * n)  # band centre beyond mid-limb
    faces += _fan_faces(ring_start[-1] + n + 1, ring_start[-1], n)
    distal += [1] * n
    return np.concatenate(local), np.concatenate(w), np.concatenate(thetas), faces, distal


def _torso_primitive() -> tuple[np.ndarray, np.ndarray, np.ndarray, list, list]:
    """Torso rings: local coords, ring index per vertex (frame), theta, faces, per-face 'low' flag."""
    n = _TORSO_AROUND
    # the seam (first angle) points backwards: local y = -1 is the back (see _pose_frames)
    th = np.linspace(0.0, 2.0 * np.pi, n + 1) - 0.5 * np.pi
    nr = len(_TORSO_RINGS)
    local = [np.array([[0.0, 0.0, 1.0]])]  # bottom cap centre (frame nr)
    ring_of = [np.array([nr])]
    thetas = [np.array([0.0])]
    for k in range(nr):
        local.append(np.stack([np.cos(th), np.sin(th), np.zeros_like(th)], 1))
        ring_of.append(np.full(n + 1, k))
        thetas.append(th + 0.5 * np.pi)
    local.append(np.array([[0.0, 0.0, 1.0]]))  # top cap centre (frame nr + 1)
    ring_of.append(np.array([nr + 1]))
    thetas.append(np.array([0.0]))
    faces: list[tuple[int, int, int]] = []
    low: list[int] = []
    starts = [1 + k * (n + 1) for k in range(nr)]
    faces += [(a, c, b) for a, b, c in _fan_faces(0, starts[0], n)]
    low += [1] * n
    for k in range(nr - 1):
        faces += _ring_band_faces(starts[k], starts[k + 1], n)
        low += [int(k < _TORSO_LOW_BANDS)] * (2 * n)
    top = 1 + nr * (n + 1)
    faces += _fan_faces(top, starts[-1], n)
    low += [0] * n
    return np.concatenate(local), np.concatenate(ring_of), np.concatenate(thetas), faces, low


@lru_cache(maxsize=1)
def body_template() -> BodyTemplate:
    """Build (once per process) the concatenated unit primitives of the body."""
    import trimesh  # for its icospheres (head, hands, feet)

    locals_, ia_, ib_, w_, th_, faces_, parts_ = [], [], [], [], [], [], []
    nv = 0
    frame = 0
    # capsules: frames 2c (parent end) and 2c+1 (child end)
    cap_loc, cap_w, cap_th, cap_faces, cap_distal = _capsule_primitive()
    for c, (_, _, _, _, prox, dist) in enumerate(_CAPSULES):
        locals_.append(cap_loc)
        ia_.append(np.full(len(cap_loc), 2 * c))
        ib_.append(np.full(len(cap_loc), 2 * c + 1))
        w_.append(cap_w)
        th_.append(cap_th)
        faces_.append(np.asarray(cap_faces) + nv)
        parts_.append(np.where(np.asarray(cap_distal) == 1, int(dist), int(prox)))
        nv += len(cap_loc)
    frame = 2 * len(_CAPSULES)
    # torso rings + two cap frames
    t_loc, t_ring, t_th, t_faces, t_low = _torso_primitive()
    locals_.append(t_loc)
    ia_.append(frame + t_ring)
    ib_.append(frame + t_ring)
    w_.append(np.zeros(len(t_loc)))
    th_.append(t_th)
    faces_.append(np.asarray(t_faces) + nv)
    parts_.append(np.where(np.asarray(t_low) == 1, int(Part.TORSO_LOW), int(Part.TORSO_UP)))
    nv += len(t_loc)
    n_rings = len(_TORSO_RINGS)
    frame += n_rings + 2
    # ellipsoids: head, right hand, left hand, right foot, left foot
    for kind in ("head", "hand", "hand", "foot", "foot"):
        sphere = trimesh.creation.icosphere(subdivisions=2 if kind == "head" else 1)
        loc = np.asarray(sphere.vertices, dtype=np.float64)
        fcs = np.asarray(sphere.faces, dtype=np.int64)
        locals_.append(loc)
        ia_.append(np.full(len(loc), frame))
        ib_.append(np.full(len(loc), frame))
        w_.append(np.zeros(len(loc)))
        th_.append(np.arctan2(loc[:, 1], loc[:, 0]))
        faces_.append(fcs + nv)
        if kind == "head":
            cen = loc[fcs].mean(axis=1)  # face centroids in (lateral, forward, up)
            part = np.full(len(fcs), int(Part.FACE))
            back = (cen[:, 1] < -0.3) & (cen[:, 2] > -0.45)
            part[back] = int(Part.HAIR_BACK)
            part[(cen[:, 2] > 0.3) | ((cen[:, 2] > 0.05) & (cen[:, 1] < 0.55))] = int(Part.HAIR_TOP)
            parts_.append(part)
        else:
            parts_.append(np.full(len(fcs), int(Part.HAND if kind == "hand" else Part.FOOT)))
        nv += len(loc)
        frame += 1
    return BodyTemplate(
        local=np.concatenate(locals_).astype(np.float32),
        ia=np.concatenate(ia_).astype(np.int64),
        ib=np.concatenate(ib_).astype(np.int64),
        w=np.concatenate(w_).astype(np.float32),
        theta=np.concatenate(th_).astype(np.float32),
        faces=np.concatenate(faces_).astype(np.int32),
        face_part=np.concatenate(parts_).astype(np.int16),
        num_frames=frame,
        n_capsules=len(_CAPSULES),
        n_rings=n_rings,
    )


# ----------------------------------------------------------------------------- posing
# The posing runs in numba: it is ~40 tiny 3-vector computations plus one pass over the vertices,
# which numpy would spend almost entirely in per-call overhead.
@njit(cache=True, nogil=True, fastmath=True)
def _dot(a, b):  # pragma: no cover - jitted
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(cache=True, nogil=True, fastmath=True)
def _unit(v):  # pragma: no cover - jitted
    n = np.sqrt(_dot(v, v))
    return v / max(n, 1e-9)


@njit(cache=True, nogil=True, fastmath=True)
def _cross(a, b):  # pragma: no cover - jitted
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


@njit(cache=True, nogil=True, fastmath=True)
def _perp(ref, axis, fallback):  # pragma: no cover - jitted
    """Unit component of ``ref`` orthogonal to unit ``axis``; ``fallback``'s where ref is (anti)parallel."""
    p = ref - _dot(ref, axis) * axis
    n = np.sqrt(_dot(p, p))
    if n > 1e-3:
        return p / n
    return _unit(fallback - _dot(fallback, axis) * axis)


@njit(cache=True, nogil=True, fastmath=True)
def _set_frame(lin, nrm, k, c0, c1, c2, s0, s1, s2):  # pragma: no cover - jitted
    """Frame k: linear map with columns c_i * s_i; normal map with columns c_i / s_i (s_i = 0 -> c_i)."""
    for r in range(3):
        lin[k, r, 0] = c0[r] * s0
        lin[k, r, 1] = c1[r] * s1
        lin[k, r, 2] = c2[r] * s2
        nrm[k, r, 0] = c0[r] / s0 if s0 != 0.0 else c0[r]
        nrm[k, r, 1] = c1[r] / s1 if s1 != 0.0 else c1[r]
        nrm[k, r, 2] = c2[r] / s2 if s2 != 0.0 else c2[r]


@njit(cache=True, nogil=True, fastmath=True)
def _pose_frames(
    J, shp, caps_idx, caps_r, rings, head_axes, hand_axes, foot_axes, torso_cap, lin, nrm, trans, uscale, voff
):  # pragma: no cover - jitted
    """Fill the K frames for pose J (17, 3). shp = (girth, limb, head, hip, belly, extremity)."""
    girth, limb, hs, hip_w, belly, es = shp[0], shp[1], shp[2], shp[3], shp[4], shp[5]
    # body directions: up (pelvis -> thorax), lateral (to the left), forward (chest), back
    up = _unit(J[8] - J[0])
    lat = _perp((J[4] - J[1]) + (J[11] - J[14]), up, np.array([1.0, 0.0, 0.0]))
    fwd = _cross(lat, up)  # x right / y down / z forward is right-handed: facing the camera gives -z
    back = -fwd
    # head first: the neck capsule ends under the head centre
    head_up = _unit(J[10] - J[8])
    head_fwd = _perp(fwd, head_up, back)
    head_lat = _cross(head_up, head_fwd)
    head_c = J[10] - head_up * (head_axes[2] * hs - 12.0) + head_fwd * 8.0
    neck_top = head_c - head_up * (55.0 * hs) - head_fwd * 15.0
    # capsules
    nc = caps_idx.shape[0]
    for c in range(nc):
        a = J[caps_idx[c, 0]]
        b = J[caps_idx[c, 1]] if caps_idx[c, 1] >= 0 else neck_top
        g = np.sqrt(girth) if caps_r[c, 2] > 0 else 1.0
        ra = caps_r[c, 0] * limb * g
        rb = caps_r[c, 1] * limb * g
        ax = _unit(b - a)
        e1 = _perp(back, ax, lat)
        e2 = _cross(ax, e1)
        _set_frame(lin, nrm, 2 * c, e1, e2, ax, ra, ra, ra)
        _set_frame(lin, nrm, 2 * c + 1, e1, e2, ax, rb, rb, rb)
        trans[2 * c] = a
        trans[2 * c + 1] = b
        uscale[2 * c] = ra
        uscale[2 * c + 1] = rb
        voff[2 * c] = 0.0
        voff[2 * c + 1] = np.sqrt(_dot(b - a, b - a))
    # torso rings along pelvis -> spine -> thorax; the lateral axis turns from hips to shoulders
    base = 2 * nc
    nr = rings.shape[0]
    seg_dir0 = _unit(J[7] - J[0])
    seg_dir1 = _unit(J[8] - J[7])
    hip_line = _unit(J[4] - J[1])
    sh_line = _unit(J[11] - J[14])
    prev = np.zeros(3)
    zero = np.zeros(3)
    for k in range(nr):
        pos = rings[k, 0]
        if pos < 1.0:
            centre = J[0] * (1.0 - pos) + J[7] * pos
            d = seg_dir0 + (seg_dir1 if pos > 0.7 else zero)
        else:
            centre = J[7] * (2.0 - pos) + J[8] * (pos - 1.0)
            d = seg_dir1 + (seg_dir0 if pos < 1.3 else zero)
        rax = _unit(_unit(d) + up)  # lean with the spine, but never kink at the spine joint
        centre = centre + rings[k, 4] * rax
        lb = rings[k, 3]
        rl = _perp(hip_line * (1.0 - lb) + sh_line * lb, rax, lat)
        rf = _cross(rl, rax)
        hw = rings[k, 1] * girth * (hip_w if lb < 0.5 else 1.0)
        hd = rings[k, 2] * girth * (belly if abs(pos - 1.0) < 0.5 else 1.0)
        _set_frame(lin, nrm, base + k, rl, rf, rax, hw, hd, 0.0)
        trans[base + k] = centre
        uscale[base + k] = 0.5 * (hw + hd)
        voff[base + k] = 0.0 if k == 0 else voff[base + k - 1] + np.sqrt(_dot(centre - prev, centre - prev))
        prev = centre
        if k == 0:
            _set_frame(lin, nrm, base + nr, zero, zero, rax, 0.0, 0.0, torso_cap[0])
            for r in range(3):
                nrm[base + nr, r, 2] = -rax[r]
            trans[base + nr] = centre
            uscale[base + nr] = uscale[base]
            voff[base + nr] = 0.0
        if k == nr - 1:
            _set_frame(lin, nrm, base + nr + 1, zero, zero, rax, 0.0, 0.0, torso_cap[1])
            for r in range(3):
                nrm[base + nr + 1, r, 2] = rax[r]
            trans[base + nr + 1] = centre
            uscale[base + nr + 1] = uscale[base + k]
            voff[base + nr + 1] = voff[base + k]
    ell = base + nr + 2
    # head ellipsoid
    _set_frame(lin, nrm, ell, head_lat, head_fwd, head_up, head_axes[0] * hs, head_axes[1] * hs, head_axes[2] * hs)
    trans[ell] = head_c
    uscale[ell] = 90.0 * hs
    voff[ell] = 0.0
    # hands: right (wrist 16, elbow 15), left (13, 12)
    for k in range(2):
        wr = 16 if k == 0 else 13
        d = _unit(J[wr] - J[wr - 1])
        h1 = _perp(lat, d, back)
        h2 = _cross(d, h1)
        _set_frame(lin, nrm, ell + 1 + k, h1, h2, d, hand_axes[0] * es, hand_axes[1] * es, hand_axes[2] * es)
        trans[ell + 1 + k] = J[wr] + d * (hand_axes[2] * es - 10.0)
        uscale[ell + 1 + k] = 40.0
        voff[ell + 1 + k] = 0.0
    # feet: right (ankle 3, knee 2), left (6, 5); the foot points where the chest faces
    for k in range(2):
        an = 3 if k == 0 else 6
        shin = _unit(J[an] - J[an - 1])
        ff = _perp(fwd, shin, fwd)
        fl = _cross(-shin, ff)
        _set_frame(lin, nrm, ell + 3 + k, fl, -shin, ff, foot_axes[0] * es, foot_axes[1] * es, foot_axes[2] * es)
        trans[ell + 3 + k] = J[an] + shin * (38.0 * es) + ff * (foot_axes[2] * es - 62.0)
        uscale[ell + 3 + k] = 45.0
        voff[ell + 3 + k] = 0.0


@njit(cache=True, nogil=True, fastmath=True)
def _apply_frames(
    local, ia, ib, w, theta, lin, nrm, trans, uscale, voff, rot, shift, verts, normals, uv
):  # pragma: no cover - jitted
    """Per vertex: p = (1-w)(L[ia] x + t[ia]) + w (L[ib] x + t[ib]), then rot @ p + shift; same for
    normals (normalised); uv = (theta * radius, position along the part) in mm."""
    for v in range(local.shape[0]):
        a, b, wv = ia[v], ib[v], w[v]
        x0, x1, x2 = local[v, 0], local[v, 1], local[v, 2]
        p = np.zeros(3)
        n = np.zeros(3)
        for r in range(3):
            pa = lin[a, r, 0] * x0 + lin[a, r, 1] * x1 + lin[a, r, 2] * x2 + trans[a, r]
            pb = lin[b, r, 0] * x0 + lin[b, r, 1] * x1 + lin[b, r, 2] * x2 + trans[b, r]
            p[r] = pa + wv * (pb - pa)
            na = nrm[a, r, 0] * x0 + nrm[a, r, 1] * x1 + nrm[a, r, 2] * x2
            nb = nrm[b, r, 0] * x0 + nrm[b, r, 1] * x1 + nrm[b, r, 2] * x2
            n[r] = na + wv * (nb - na)
        nn = np.sqrt(_dot(n, n)) + 1e-12
        for r in range(3):
            verts[v, r] = rot[r, 0] * p[0] + rot[r, 1] * p[1] + rot[r, 2] * p[2] + shift[r]
            normals[v, r] = (rot[r, 0] * n[0] + rot[r, 1] * n[1] + rot[r, 2] * n[2]) / nn
        us = uscale[a] + wv * (uscale[b] - uscale[a])
        uv[v, 0] = theta[v] * us
        uv[v, 1] = voff[a] + wv * (voff[b] - voff[a]) + x2 * us


_CAPS_IDX = np.asarray([(a, b) for a, b, *_ in _CAPSULES], dtype=np.int64)
# radius at parent, radius at child, 1 if the radius also follows the girth (neck, clavicles)
_CAPS_R = np.asarray([(ra, rb, 1.0 if (a == 8) else 0.0) for a, b, ra, rb, *_ in _CAPSULES], dtype=np.float64)
_RINGS = np.asarray(_TORSO_RINGS, dtype=np.float64)


def build_body(
    joints: np.ndarray,
    shape: BodyShape | None = None,
    rotation: np.ndarray | None = None,
    translation: np.ndarray | None = None,
    skeleton: Skeleton = H36M_17,
) -> BodyMesh:
    """Pose the body template with a (J, 3) root-relative pose in mm (x right, y down, z forward).

    The mesh is returned in the pose's frame, or mapped by ``rotation`` (3, 3) then ``translation``
    (3,) mm (e.g. into a camera frame) when given. ``shape.height_scale`` scales the pose first
    (callers apply it to the label too).
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape != (skeleton.num_joints, 3) or skeleton.num_joints != 17:
        raise ValueError(f"build_body: expected a (17, 3) H36M_17 pose, got shape {joints.shape}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("build_body: the pose contains NaN or inf")
    shape = shape or BodyShape()
    if shape.height_scale != 1.0:
        joints = joints * shape.height_scale
    tpl = body_template()
    K = tpl.num_frames
    lin = np.zeros((K, 3, 3))
    nrm = np.zeros((K, 3, 3))
    trans = np.zeros((K, 3))
    uscale = np.zeros(K)
    voff = np.zeros(K)
    shp = np.array([shape.girth, shape.limb_thickness, shape.head_scale, shape.hip_width, shape.belly,
                    shape.extremity_scale])  # fmt: skip
    _pose_frames(np.ascontiguousarray(joints), shp, _CAPS_IDX, _CAPS_R, _RINGS, np.asarray(_HEAD_AXES),
                 np.asarray(_HAND_AXES), np.asarray(_FOOT_AXES), np.asarray(_TORSO_CAP), lin, nrm, trans,
                 uscale, voff)  # fmt: skip
    rot = np.eye(3) if rotation is None else np.ascontiguousarray(rotation, dtype=np.float64)
    shift = np.zeros(3) if translation is None else np.asarray(translation, dtype=np.float64).reshape(3)
    V = tpl.num_vertices
    verts = np.empty((V, 3), dtype=np.float32)
    normals = np.empty((V, 3), dtype=np.float32)
    uv = np.empty((V, 2), dtype=np.float32)
    _apply_frames(tpl.local, tpl.ia, tpl.ib, tpl.w, tpl.theta, lin, nrm, trans, uscale, voff, rot, shift,
                  verts, normals, uv)  # fmt: skip
    return BodyMesh(verts, normals, uv, tpl.faces, tpl.face_part)


def joint_depth_tolerance(shape: BodyShape | None = None) -> np.ndarray:
    """(17,) mm: how far in front of a joint the visible body surface may lie for the joint to count
    as visible (about the radius of the body part around the joint, plus slack)."""
    shape = shape or BodyShape()
    lt, g = shape.limb_thickness, shape.girth
    r = np.array([
        110 * g, 85 * lt, 55 * lt, 45 * lt, 85 * lt, 55 * lt, 45 * lt,  # pelvis, legs
        105 * g, 95 * g, 95 * shape.head_scale, 115 * shape.head_scale,  # spine, thorax, neck, head
        60 * lt, 40 * lt, 35 * lt, 60 * lt, 40 * lt, 35 * lt,  # arms
    ])  # fmt: skip
    return (r + 45.0).astype(np.float32)
