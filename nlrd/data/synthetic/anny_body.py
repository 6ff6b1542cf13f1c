"""Realistic body meshes from the Anny parametric human model, posed from a 17-joint pose.

`Anny <https://github.com/naver/anny>`_ (PyPI ``anny``, code Apache-2.0, assets CC0) is a rigged,
skinned human mesh with phenotype blend shapes (gender, age, muscle, weight, height, proportions).
This module uses its decimated topology ``notoes_collapse10pc`` (1229 vertices, 2454 triangles, the
same 104-bone skeleton) as a second body model of the renderer, next to the capsule body of
:mod:`nlrd.data.synthetic.body`, and returns the same :class:`~nlrd.data.synthetic.body.BodyMesh`.

Posing (:func:`build_anny_body`): the label is the given pose, so the mesh is fitted to it, not the
other way round. The rest mesh is scaled uniformly so that its leg + torso + neck/head chain has the
pose's length, then every driven bone group (a *segment*: thigh, shin, upper arm, ...) gets one
affine transform ``x -> J_start + R S (x - A_start)``: ``A_start`` is the segment's rest anchor,
``J_start`` the target joint, ``S`` stretches along the rest segment axis to the target bone length
(so anchors land exactly on the joints) and ``R`` is the *swing* from the parent segment's rotation
(the smallest rotation taking the parent-rotated rest axis onto the target axis). Pure swing makes a
bent elbow or knee hinge sideways, so thighs and upper arms also get a *twist* about their own axis
that puts the rest hinge axis along the normal of the limb plane (hip-knee-ankle, shoulder-elbow-
wrist); no joint moves. The torso's two segments turn from the hip line to the shoulder line, the
head is rigid (its axis along neck -> head) and the neck stretches to reach it. What the 17 joints
leave free (palm roll, head yaw, ankle flexion) comes from :class:`AnnyFreeParams`. Vertices follow
their bones by Anny's own skinning weights (linear blend skinning with these affine transforms, in
numba, ~1 ms a body with a new person's rest mesh); normals are recomputed from the posed faces.
Anny's own forward pass, fed the same bone transforms, gives the same vertices and puts its joints
on the pose (tests/test_anny_body.py).

The mocap skeleton's proportions differ from Anny's (its torso and neck are short for its legs), so
the segments stretch along their axes; on the canonical skeleton, over sampled adults (median, 5-95%):
thighs 1.20 (1.11-1.30), shins 1.04, upper arms 1.12, forearms 0.99, torso 0.84 (0.81-0.88), neck
0.88, after a uniform scale of 0.91 (0.81-1.01). The H36M head joint is put 60 mm (Anny units) below
the top of the skull, about the upper forehead.

Anny's frame is metres, z up, facing -y (its left is +x); ours is millimetres, x right, y down
(gravity +y), z forward (away from the camera: a person facing the camera faces -z). Rest data are
converted once: ``ours = 1000 * (x, -z, y)``.

Clothing regions: each face gets the :class:`~nlrd.data.synthetic.body.Part` of the bone group its
vertices follow (summed skinning weights), refined by planes (waistline, mid-thigh, knee, ankle,
mid-upper-arm, wrist: the triangles they cross are split, so hems are straight) and on the head by
direction (face / hair), so the materials, patterns and sleeve lengths of
:mod:`nlrd.data.synthetic.appearance` apply unchanged. Texture coordinates are cylindrical per part
in mm (around the part, along its axis), like the capsule body's, so patterns keep a physical scale;
vertices on a part boundary or on a part's texture seam are duplicated so no face mixes two (u, v)
charts.

The Anny model is built lazily, once per process (:func:`anny_model`); its first build in a fresh
cache folder takes one to a few minutes and ~1.8 GB of memory, later ones load the cache in well
under a second. The cache folder is ``$NLRD_ANNY_CACHE`` or ``<repo>/.cache/anny``. Nothing is
downloaded: only Anny's SMPL paths would, and they are never used. NVIDIA Warp (an optional Anny
dependency) is not needed: skinning runs in numpy here, and the one Warp routine the decimated
topology's build calls (closest point on a mesh) is replaced by :func:`_closest_points_on_mesh`.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numba import njit

from nlrd.data.synthetic.body import BodyMesh, Part

if TYPE_CHECKING:  # torch and anny are imported where they are used
    import torch

ANNY_VERSION = "0.6.2"
TOPOLOGY = "notoes_collapse10pc"
REPO_ROOT = Path(__file__).resolve().parents[3]

# Anny (metres, x left, y back, z up) -> ours (mm, x right-of-image = person's left, y down, z away).
_TO_OURS = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
_UP = np.array([0.0, -1.0, 0.0])  # our up
_FWD = np.array([0.0, 0.0, -1.0])  # the rest mesh faces the camera (-z)


def anny_cache_dir() -> Path:
    """Where Anny's built model data are cached: ``$NLRD_ANNY_CACHE`` or ``<repo>/.cache/anny``."""
    env = os.environ.get("NLRD_ANNY_CACHE")
    return Path(env).expanduser() if env else REPO_ROOT / ".cache" / "anny"


def anny_available() -> bool:
    """Whether the ``anny`` package is installed (building the model may still take a while)."""
    import importlib.util

    return importlib.util.find_spec("anny") is not None


# ----------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class AnnyShape:
    """Anny phenotype parameters of one person, each in [0, 1]; the default is an average adult.

    ``age``: Anny's age axis (1/3 child, 2/3 young adult, 1 old; adults of 18-75 years are about
    0.77-0.85); ``gender``: 0 male, 1 female; ``muscle``, ``weight``: low to high; ``height``: short to
    tall (the rendered size comes from the pose: the mesh is scaled to the skeleton, so height acts on
    proportions); ``proportions``: ideal to uncommon.
    """

    gender: float = 0.5
    age: float = 0.8
    muscle: float = 0.5
    weight: float = 0.5
    height: float = 0.5
    proportions: float = 0.5


@dataclass(frozen=True)
class AnnyFreeParams:
    """What the 17 joints do not determine, in degrees. Each moves no joint.

    ``palm_roll``: (left, right) forearm roll (pronation + / supination -) about the elbow-wrist
    axis, spread over the forearm's two twist bones and the hand; ``head_yaw``: head turn about the
    neck-head axis (+ towards the person's left); ``ankle_flex``: (left, right) foot rotation about the
    knee hinge axis (+ toes up).
    """

    palm_roll: tuple[float, float] = (0.0, 0.0)
    head_yaw: float = 0.0
    ankle_flex: tuple[float, float] = (0.0, 0.0)


def sample_anny_free_params(rng: np.random.Generator) -> AnnyFreeParams:
    """Random palm roll (+-70 deg), head yaw (sd 20 deg, within +-50) and ankle flexion (-15..20 deg)."""
    return AnnyFreeParams(
        palm_roll=(float(rng.uniform(-70, 70)), float(rng.uniform(-70, 70))),
        head_yaw=float(np.clip(rng.normal(0.0, 20.0), -50.0, 50.0)),
        ankle_flex=(float(rng.uniform(-15, 20)), float(rng.uniform(-15, 20))),
    )


def _interp(x: float, xa: np.ndarray, ya: np.ndarray, extrapolate: bool) -> float:
    """Piecewise-linear ``ya(x)`` on increasing anchors ``xa`` as Anny's
    ``linear_interpolation_coefficients`` weighs them (clamped, or extended by the end segments)."""
    i, t = _interp_at(x, xa, extrapolate)
    return float((1.0 - t) * ya[i - 1] + t * ya[i])


def _interp_at(x: float, xa: np.ndarray, extrapolate: bool) -> tuple[int, float]:
    """(i, t): ``x`` lies at ``(1 - t) xa[i-1] + t xa[i]`` (scalar Python math: called per person)."""
    lo, hi = float(xa[0]), float(xa[-1])
    if not extrapolate:
        x = min(max(x, lo), hi)
    i = min(max(bisect.bisect_left(xa.tolist(), x), 1), len(xa) - 1)
    return i, (x - float(xa[i - 1])) / (float(xa[i]) - float(xa[i - 1]))


@lru_cache(maxsize=1)
def _shape_tables() -> dict[str, np.ndarray]:
    """The anchors of Anny's ``SimpleShapeDistribution`` (WHO-calibrated height, weight, muscle and
    proportions given age and gender) as numpy arrays; loads its data without building the mesh."""
    import torch
    from anny.shape_distribution import SimpleShapeDistribution

    stub = types.SimpleNamespace(dtype=torch.float64, device=torch.device("cpu"),
                                 phenotype_labels=[f.name for f in fields(AnnyShape)])  # fmt: skip
    dist = SimpleShapeDistribution(stub)
    tables = {"morph_age": dist.morphological_age_mapping.morphological_age_anchors.numpy(),
              "anny_age": dist.morphological_age_mapping.anny_age_anchors.numpy()}  # fmt: skip
    for sex in ("boys", "girls"):
        for name in ("height", "weight", "muscle", "proportions"):
            cond = getattr(dist, f"{sex}_conditional_{name}_distribution")
            for key in ("age_anchors", "alpha_anchors", "beta_anchors"):
                tables[f"{sex}.{name}.{key}"] = getattr(cond, key).numpy().astype(np.float64)
    return tables


def sample_anny_shape(rng: np.random.Generator, age_years: tuple[float, float] = (18.0, 75.0)) -> AnnyShape:
    """Draw an adult's phenotype as Anny's ``SimpleShapeDistribution`` does, but from ``rng``.

    The morphological age is uniform in ``age_years``, the gender uniform in [0, 1]; height, weight,
    muscle and proportions come from Anny's age- and gender-conditional Beta distributions.
    Deterministic given ``rng``'s state (torch's global generator is not used).
    """
    t = _shape_tables()
    morph_age = float(rng.uniform(*age_years))
    gender = float(rng.random())
    age = _interp(morph_age, t["morph_age"], t["anny_age"], extrapolate=True)
    sex = "boys" if gender <= 0.5 else "girls"
    values = {}
    for name in ("height", "weight", "muscle", "proportions"):
        xa = t[f"{sex}.{name}.age_anchors"]
        a = _interp(age, xa, t[f"{sex}.{name}.alpha_anchors"], extrapolate=False)
        b = _interp(age, xa, t[f"{sex}.{name}.beta_anchors"], extrapolate=False)
        values[name] = float(rng.beta(a, b))
    return AnnyShape(gender=gender, age=age, **values)


# ----------------------------------------------------------------------------- the Anny model
def _closest_points_on_mesh(points: torch.Tensor, vertices: torch.Tensor, faces: torch.Tensor, max_dist: float):
    """Drop-in for ``anny.utils.warp_mesh_utils.point_to_mesh_distance_and_face_uvs`` (NVIDIA Warp),
    which the decimated topology's build uses once to re-attach its vertices to the full mesh.

    Brute force in float64 chunks (Ericson's closest point on a triangle). Args: points (N, 3),
    vertices (V, 3), faces (F, 3). Returns distances (N,) float32 (clamped to ``max_dist``), face ids
    (N,) int32 and (u, v) (N, 2) float32 with closest point ``u a + v b + (1 - u - v) c``, as Warp's
    ``mesh_query_point`` reports it.
    """
    import torch

    pts = points.to(torch.float64)
    V = vertices.to(torch.float64)
    F = faces.long()
    a, b, c = V[F[:, 0]][None], V[F[:, 1]][None], V[F[:, 2]][None]
    ab, ac = b - a, c - a
    tiny = 1e-30

    def safe(x: torch.Tensor) -> torch.Tensor:
        return torch.where(x.abs() < tiny, torch.full_like(x, tiny), x)

    dists, ids, uvs = [], [], []
    for s in range(0, len(pts), 32):
        p = pts[s : s + 32, None, :]
        ap, bp, cp = p - a, p - b, p - c
        d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
        d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
        d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
        va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
        den = safe(va + vb + vc)
        wb, wc = vb / den, vc / den  # interior
        wa = 1.0 - wb - wc
        zero, one = torch.zeros_like(d1), torch.ones_like(d1)
        t_ab, t_ac = d1 / safe(d1 - d3), d2 / safe(d2 - d6)
        t_bc = (d4 - d3) / safe((d4 - d3) + (d5 - d6))
        regions = (  # in Ericson's order: the first region that holds wins
            ((d1 <= 0) & (d2 <= 0), one, zero, zero),
            ((d3 >= 0) & (d4 <= d3), zero, one, zero),
            ((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, zero),
            ((d6 >= 0) & (d5 <= d6), zero, zero, one),
            ((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, zero, t_ac),
            ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), zero, 1 - t_bc, t_bc),
        )
        for mask, ra, rb, rc in reversed(regions):
            wa, wb, wc = torch.where(mask, ra, wa), torch.where(mask, rb, wb), torch.where(mask, rc, wc)
        q = wa[..., None] * a + wb[..., None] * b + wc[..., None] * c
        d = ((q - p) ** 2).sum(-1)
        best = d.argmin(1)
        r = torch.arange(len(best))
        dists.append(d[r, best].sqrt())
        ids.append(best)
        uvs.append(torch.stack([wa[r, best], wb[r, best]], 1))
    return (torch.cat(dists).clamp(max=max_dist).float(), torch.cat(ids).int(), torch.cat(uvs).float())


@contextlib.contextmanager
def _warp_free_build() -> Iterator[None]:
    """Let Anny build its decimated topology without NVIDIA Warp (and identically with it)."""
    name = "anny.utils.warp_mesh_utils"
    shim = types.ModuleType(name)
    shim.point_to_mesh_distance_and_face_uvs = _closest_points_on_mesh  # type: ignore[attr-defined]
    saved = sys.modules.get(name)
    sys.modules[name] = shim
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved


_BUILD_LOCK = threading.RLock()  # one build per process even when threads render (the app does)


def anny_model() -> Any:
    """The Anny model (``anny.Anny``, topology ``notoes_collapse10pc``, plain torch skinning), built
    once per process. Raises ImportError when the ``anny`` package is missing."""
    with _BUILD_LOCK:
        return _anny_model()


@lru_cache(maxsize=1)
def _anny_model() -> Any:
    cache = anny_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["ANNY_CACHE_DIR"] = str(cache)  # read by anny.paths at import time
    import anny
    import anny.paths
    import torch

    anny.paths.set_anny_cache_path(cache)  # in case anny was imported before
    with _warp_free_build(), torch.no_grad():
        return anny.Anny(topology=TOPOLOGY, skinning_method="lbs")


# ----------------------------------------------------------------------------- skeleton map
# Segments: groups of Anny bones that share one transform: (name, bones, parent segment whose rotation
# the swing starts from). Bones not listed follow their nearest listed ancestor (fingers the hand, toes
# the foot, eyes the head). The posing kernel (_pose_kernel) indexes them in this order.
_SEGMENTS: tuple[tuple[str, tuple[str, ...], str | None], ...] = (
    ("torso_low", ("root", "spine05", "spine04", "spine03"), None),
    ("torso_up", ("spine02", "spine01"), "torso_low"),
    ("pelvis.L", ("pelvis.L",), "torso_low"),
    ("pelvis.R", ("pelvis.R",), "torso_low"),
    ("thigh.L", ("upperleg01.L", "upperleg02.L"), "torso_low"),
    ("thigh.R", ("upperleg01.R", "upperleg02.R"), "torso_low"),
    ("shin.L", ("lowerleg01.L", "lowerleg02.L"), "thigh.L"),
    ("shin.R", ("lowerleg01.R", "lowerleg02.R"), "thigh.R"),
    ("foot.L", ("foot.L",), "shin.L"),
    ("foot.R", ("foot.R",), "shin.R"),
    ("clavicle.L", ("clavicle.L", "shoulder01.L"), "torso_up"),
    ("clavicle.R", ("clavicle.R", "shoulder01.R"), "torso_up"),
    ("upperarm.L", ("upperarm01.L", "upperarm02.L"), "clavicle.L"),
    ("upperarm.R", ("upperarm01.R", "upperarm02.R"), "clavicle.R"),
    ("forearm.L", ("lowerarm01.L", "lowerarm02.L"), "upperarm.L"),
    ("forearm.R", ("lowerarm01.R", "lowerarm02.R"), "upperarm.R"),
    ("hand.L", ("wrist.L",), "forearm.L"),
    ("hand.R", ("wrist.R",), "forearm.R"),
    ("neck", ("neck01", "neck02", "neck03"), "torso_up"),
    ("head", ("head",), "neck"),
)
# Torso: how far each bone's lateral axis turns from the hip line (0) to the shoulder line (1).
_TORSO_LATERAL = {"root": 0.0, "spine05": 0.0, "spine04": 0.15, "spine03": 0.3, "spine02": 0.6, "spine01": 1.0}
# Forearm roll: the share of the palm roll each bone takes (the hand takes all of it).
_ROLL_SHARE = {"lowerarm01": 1.0 / 3.0, "lowerarm02": 2.0 / 3.0, "wrist": 1.0}
# The thorax anchor: above the shoulder joints by this fraction of the shoulder -> neck01 height, and
# this far (m, Anny units) in front of them; the spine joint at the mocap's share of pelvis -> thorax.
_THORAX_UP_FRACTION = 0.35
_THORAX_FORWARD_M = 0.02
_SPINE_FRACTION = 159.2 / (159.2 + 206.2)
# The head joint (H36M "head", index 10) lies this far (m, Anny units) below the top of the skull.
_HEAD_TOP_DROP_M = 0.06

# Coarse groups of bones for clothing regions.
_GROUPS = ("torso", "clavicle", "upperarm", "forearm", "hand", "thigh", "shin", "foot", "neck", "head")


def _bone_group(label: str) -> str:
    base = label.split(".")[0]
    if base in ("root", "pelvis") or base.startswith("spine"):
        return "torso"
    if base in ("clavicle", "shoulder01"):
        return "clavicle"
    if base.startswith("upperarm"):
        return "upperarm"
    if base.startswith("lowerarm"):
        return "forearm"
    if base == "wrist" or base.startswith(("finger", "metacarpal")):
        return "hand"
    if base.startswith("upperleg"):
        return "thigh"
    if base.startswith("lowerleg"):
        return "shin"
    if base == "foot" or base.startswith("toe"):
        return "foot"
    if base.startswith("neck"):
        return "neck"
    return "head"  # head, eyes


@dataclass(frozen=True)
class AnnyTemplate:
    """Shape-independent data of the Anny body, in the renderer's layout.

    The mesh is Anny's (V vertices) with the triangles crossing a clothing hem (waistline, mid-thigh,
    mid-upper-arm, knees, ankles, wrists) split along the hem's plane, so garments end on a
    straight line rather than on the coarse mesh's zigzag: Vs >= V *skin vertices*, the first V being
    Anny's own, the others points on Anny edges. Rendering then duplicates vertices on part boundaries
    and texture seams: V2 >= Vs *render vertices*. F faces, B bones, N kinds of bones.

    Attributes:
        faces: (F, 3) int32 into the render vertices.
        skin_faces: (F, 3) int64 the same faces into the skin vertices (for normals).
        src: (V2,) int64 the skin vertex of each render vertex.
        uv: (V2, 2) float32 mm texture coordinates (around the part, along the part).
        face_part: (F,) int16 :class:`~nlrd.data.synthetic.body.Part` per face.
        combo_index, combo_weight: (Vs, C) each skin vertex as a weighted sum of Anny vertices.
        vertex_kind, vertex_weight: (Vs, K) int64 / float64 skinning weights per kind of bone.
        kinds: the N distinct (segment index, share) pairs; bones of one kind move alike. ``share``
            is a torso bone's lateral blend (hip line 0 -> shoulder line 1) or a forearm / hand
            bone's share of the palm roll.
        bone_kind: (B,) int64 kind of each Anny bone; ``bone_labels`` their names; ``segment_names``
            the segments of :data:`_SEGMENTS`.
        radius_sets: per joint, the skin vertices whose distance to it gives the body's thickness
            there (:func:`_radius_sets`, chosen on the average body).
    """

    faces: np.ndarray
    skin_faces: np.ndarray
    src: np.ndarray
    uv: np.ndarray
    face_part: np.ndarray
    combo_index: np.ndarray
    combo_weight: np.ndarray
    vertex_kind: np.ndarray
    vertex_weight: np.ndarray
    kinds: tuple[tuple[int, float], ...]
    bone_kind: np.ndarray
    bone_labels: tuple[str, ...]
    segment_names: tuple[str, ...]
    radius_sets: tuple[np.ndarray, ...]

    @property
    def num_vertices(self) -> int:
        return int(self.src.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @property
    def kind_segment(self) -> np.ndarray:
        return np.array([k for k, _ in self.kinds], dtype=np.int64)

    @property
    def kind_share(self) -> np.ndarray:
        return np.array([sh for _, sh in self.kinds], dtype=np.float64)


@dataclass(frozen=True)
class AnnyRest:
    """One person's rest (unposed) body, ours axes, mm, Anny's root bone head at the origin.

    ``vertices`` (Vs, 3) float64 skin vertices (:class:`AnnyTemplate`); ``heads`` (B, 3) bone heads;
    ``anchors`` (17, 3) the rest points that play our 17 joints (bone heads of hips, knees, ankles,
    shoulders, elbows, wrists; the root head; spine and thorax points on the torso's midline; the
    head joint on the skull's axis below its top, and a point 100 mm below that); ``head_axis`` (3,)
    unit rest neck -> head direction; ``elbow_normal`` (2, 3) unit rest elbow hinge axes (left, right)
    = upper arm x forearm; ``radius`` (17,) mm the body's half-thickness around each joint.
    """

    vertices: np.ndarray
    heads: np.ndarray
    anchors: np.ndarray
    head_axis: np.ndarray
    elbow_normal: np.ndarray
    radius: np.ndarray

    @property
    def head_length(self) -> float:
        """mm from the thorax anchor to the head joint (the rest counterpart of neck + head bones)."""
        return float(np.linalg.norm(self.anchors[10] - self.anchors[8]))


def _to_ours(x: np.ndarray) -> np.ndarray:
    return 1000.0 * (np.asarray(x, dtype=np.float64) @ _TO_OURS.T)


@lru_cache(maxsize=1)
def _blend_tables() -> dict[str, Any]:
    """Anny's phenotype blend shapes as numpy arrays (ours axes, mm): ``verts`` (V*3,) and ``heads``
    (B*3,) templates, ``verts_bs`` (K, V*3) / ``heads_bs`` (K, B*3) blend shapes, ``mask`` (M, 26)
    variations of each phenotype blend shape, ``projection`` (M, K) its compaction, ``anchors``."""
    model = anny_model()
    if model.local_change_labels or model.facial_action_labels or model.extrapolate_phenotypes:
        raise RuntimeError("unexpected Anny configuration (local changes, facial actions or extrapolation)")

    def ours(x: Any) -> np.ndarray:
        return _to_ours(x.numpy()).reshape(*x.shape[:-2], -1)

    return {
        "verts": ours(model.template_vertices), "heads": ours(model.template_bone_heads),
        # float32 halves the memory the per-person blend streams through (round-off ~1e-3 mm)
        "verts_bs": ours(model.blendshapes).astype(np.float32), "heads_bs": ours(model.bone_heads_blendshapes),
        "mask": model.stacked_phenotype_blend_shapes_mask.numpy().astype(np.float64),
        "projection": model.phenotype_blendshape_projection.numpy().astype(np.float64),
        "anchors": {k: v.numpy().astype(np.float64) for k, v in model.anchors.named_buffers()},
    }  # fmt: skip


def _blend_coefficients(shape: AnnyShape) -> np.ndarray:
    """(K,) Anny's (compacted) blend shape coefficients for ``shape``: numpy port of
    ``anny.models.phenotype.phenotype_blendshape_weights`` (races and the excluded phenotypes at
    their default 0.5, no local changes nor facial actions)."""
    from anny.models.model_data import PHENOTYPE_VARIATIONS

    t = _blend_tables()
    ph = np.empty(t["mask"].shape[1])
    ph[:3] = 1.0 / 3.0  # african, asian, caucasian: equal shares
    o = 3
    for feature in list(PHENOTYPE_VARIATIONS)[1:]:
        xa = t["anchors"][feature]
        i, w = _interp_at(float(getattr(shape, feature, 0.5)), xa, extrapolate=False)
        ph[o : o + len(xa)] = 0.0
        ph[o + i - 1], ph[o + i] = 1.0 - w, w
        o += len(xa)
    m = t["mask"]
    return _blend(np.zeros(t["projection"].shape[1]), t["projection"], np.prod(ph[None, :] * m + (1.0 - m), axis=1))


def _phenotype_rest(shape: AnnyShape) -> tuple[np.ndarray, np.ndarray]:
    """Anny's rest vertices (V, 3) and bone heads (B, 3) for ``shape``, ours axes, mm (not centred)."""
    t = _blend_tables()
    c = _blend_coefficients(shape)
    return _blend(t["verts"], t["verts_bs"], c).reshape(-1, 3), _blend(t["heads"], t["heads_bs"], c).reshape(-1, 3)


@njit(cache=True, nogil=True)
def _blend(template, shapes, coeffs):  # pragma: no cover - jitted
    """template (n,) + coeffs (K,) @ shapes (K, n), without BLAS (whose thread pool costs more than the
    product on a busy machine)."""
    out = template.copy()
    for k in range(shapes.shape[0]):
        c = coeffs[k]
        if c != 0.0:
            for i in range(shapes.shape[1]):
                out[i] += c * shapes[k, i]
    return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.linalg.norm(v)), 1e-12)


class _SlicedMesh:
    """A triangle mesh whose vertices are weighted sums of base vertices, cut by planes."""

    def __init__(self, pos: np.ndarray, faces: np.ndarray, face_data: dict[str, np.ndarray]) -> None:
        self.pos = [p for p in pos]
        self.comb: list[dict[int, float]] = [{i: 1.0} for i in range(len(pos))]
        self.faces = faces.copy()
        self.data = {k: v.copy() for k, v in face_data.items()}

    def centroids(self) -> np.ndarray:
        return np.asarray(self.pos)[self.faces].mean(axis=1)

    def cut(self, sel: np.ndarray, point: np.ndarray, normal: np.ndarray) -> np.ndarray:
        """Split the faces ``sel`` (F,) bool that cross the plane; returns the new (F2,) selection
        (the old faces kept, crossing ones replaced by three faces each, same winding and data)."""
        pos = np.asarray(self.pos)
        dist = (pos - point) @ normal
        edge_vertex: dict[tuple[int, int], int] = {}

        def on_edge(i: int, j: int) -> int:
            key = (min(i, j), max(i, j))
            if key not in edge_vertex:
                t = dist[i] / (dist[i] - dist[j])
                comb: dict[int, float] = {}
                for v, w in ((i, 1.0 - t), (j, t)):
                    for b, cw in self.comb[v].items():
                        comb[b] = comb.get(b, 0.0) + w * cw
                self.pos.append((1.0 - t) * pos[i] + t * pos[j])
                self.comb.append(comb)
                edge_vertex[key] = len(self.pos) - 1
            return edge_vertex[key]

        new_faces, new_sel, keep = [], [], []
        new_data: dict[str, list] = {k: [] for k in self.data}
        for f, tri in enumerate(self.faces):
            side = dist[tri] >= 0
            if not sel[f] or side.all() or not side.any():
                keep.append(f)
                continue
            lone = int(np.flatnonzero((side != side[[1, 2, 0]]) & (side != side[[2, 0, 1]]))[0])  # the odd one
            x, y, z = (int(tri[(lone + k) % 3]) for k in range(3))
            p, q = on_edge(x, y), on_edge(x, z)
            for t in ((x, p, q), (p, y, z), (p, z, q)):
                new_faces.append(t)
                new_sel.append(True)
                for k, v in self.data.items():
                    new_data[k].append(v[f])
        self.faces = np.concatenate([self.faces[keep], np.asarray(new_faces, dtype=np.int64).reshape(-1, 3)])
        for k in self.data:
            self.data[k] = np.concatenate([self.data[k][keep], np.asarray(new_data[k], dtype=self.data[k].dtype)])
        return np.concatenate([sel[keep], np.asarray(new_sel, dtype=bool)])

    def combos(self) -> tuple[np.ndarray, np.ndarray]:
        """(Vs, C) base vertex indices and weights of every vertex (zero-padded)."""
        C = max(len(c) for c in self.comb)
        idx = np.zeros((len(self.comb), C), dtype=np.int64)
        w = np.zeros((len(self.comb), C))
        for v, c in enumerate(self.comb):
            idx[v, : len(c)] = list(c.keys())
            w[v, : len(c)] = list(c.values())
        return idx, w


def anny_template() -> AnnyTemplate:
    """Build (once per process) clothing regions, texture coordinates and the segment map of the
    Anny body (on Anny's average body)."""
    with _BUILD_LOCK:
        return _anny_template()


@lru_cache(maxsize=1)
def _anny_template() -> AnnyTemplate:
    model = anny_model()
    labels = tuple(model.bone_labels)
    parents = [int(p) for p in model.bone_parents]
    weights = model.vertex_bone_weights.numpy().astype(np.float64)
    bone_index = model.vertex_bone_indices.numpy().astype(np.int64)
    V, B = weights.shape[0], len(labels)

    # segment of each bone: its own, or its nearest listed ancestor's; kinds of bones
    own = {bone: k for k, (_, bones, _) in enumerate(_SEGMENTS) for bone in bones}
    bone_pairs = []
    for b in range(B):
        a = b
        while labels[a] not in own:
            a = parents[a]
        share = _TORSO_LATERAL.get(labels[b].split(".")[0], _ROLL_SHARE.get(labels[a].split(".")[0], 0.0))
        bone_pairs.append((own[labels[a]], float(share)))
    kinds = sorted(set(bone_pairs))
    bone_kind = np.array([kinds.index(p) for p in bone_pairs], dtype=np.int64)

    # coarse clothing regions: the bone group each face's vertices follow most
    verts, heads = _phenotype_rest(AnnyShape())
    rest = _rest_from(verts, heads, labels)
    pos0, A, index = rest.vertices, rest.anchors, {lb: i for i, lb in enumerate(labels)}
    rows = np.repeat(np.arange(V), bone_index.shape[1])
    group_of_bone = np.array([_GROUPS.index(_bone_group(lb)) for lb in labels])
    gw = np.zeros((V, len(_GROUPS)))
    np.add.at(gw, (rows, group_of_bone[bone_index].ravel()), weights.ravel())
    faces0 = model.faces.numpy().astype(np.int64)
    group = gw[faces0].sum(axis=1).argmax(axis=1)
    coarse = {"torso": Part.TORSO_UP, "clavicle": Part.CLAVICLE, "upperarm": Part.UPPER_ARM_PROX,
              "forearm": Part.FOREARM, "hand": Part.HAND, "thigh": Part.THIGH_PROX, "shin": Part.SHIN,
              "foot": Part.FOOT, "neck": Part.NECK, "head": Part.FACE}  # fmt: skip
    part0 = np.array([int(coarse[_GROUPS[g]]) for g in group])
    left0 = pos0[faces0].mean(axis=1)[:, 0] > 0  # the person's left is +x
    mesh = _SlicedMesh(pos0, faces0, {"group": group, "part": part0, "left": left0})

    # hems: cut the faces of some regions near a plane, then set the part on each side of it
    up = _unit(A[8] - A[0])
    G = {name: i for i, name in enumerate(_GROUPS)}

    def hem(groups: tuple[str, ...], left: bool | None, point: np.ndarray, normal: np.ndarray, radius: float,
            below: Part, above: Part) -> None:  # fmt: skip
        d = mesh.data
        sel = np.isin(d["group"], [G[g] for g in groups])
        if left is not None:
            sel &= d["left"] == left
        if np.isfinite(radius):
            sel &= np.linalg.norm(mesh.centroids() - point, axis=1) < radius
        sel = mesh.cut(sel, point, normal)
        side = (mesh.centroids() - point) @ normal >= 0
        mesh.data["part"][sel & ~side] = below
        mesh.data["part"][sel & side] = above

    waist = A[0] + up * (0.45 * float((A[7] - A[0]) @ up))  # ~45% of pelvis -> spine, as the capsule body's
    hem(("torso",), None, waist, -up, np.inf, Part.TORSO_UP, Part.TORSO_LOW)
    for left, (hip, kn, an, sh, el, wr) in ((True, (4, 5, 6, 11, 12, 13)), (False, (1, 2, 3, 14, 15, 16))):
        thigh, shin, arm, fore = _unit(A[kn] - A[hip]), _unit(A[an] - A[kn]), _unit(A[el] - A[sh]), _unit(A[wr] - A[el])
        hem(("thigh",), left, 0.5 * (A[hip] + A[kn]), thigh, np.inf, Part.THIGH_PROX, Part.THIGH_DIST)
        hem(("thigh", "shin"), left, A[kn], _unit(thigh + shin), 130.0, Part.THIGH_DIST, Part.SHIN)
        hem(("shin", "foot"), left, A[an] - 15.0 * _UP, shin, 110.0, Part.SHIN, Part.FOOT)
        hem(("upperarm",), left, 0.5 * (A[sh] + A[el]), arm, np.inf, Part.UPPER_ARM_PROX, Part.UPPER_ARM_DIST)
        hem(("forearm", "hand"), left, A[wr], fore, 90.0, Part.FOREARM, Part.HAND)
    pos = np.asarray(mesh.pos)
    faces, part, left = mesh.faces, mesh.data["part"], mesh.data["left"]
    cen = pos[faces].mean(axis=1)

    # head: face / hair by the direction from the head's centre (as the capsule body's head does)
    head = mesh.data["group"] == G["head"]
    hv = pos[np.unique(faces[head])]
    hc, hr = 0.5 * (hv.min(0) + hv.max(0)), 0.5 * (hv.max(0) - hv.min(0))
    d = (cen[head] - hc) / hr
    fwd, upc = d @ _FWD, d @ _UP
    hp = np.full(len(d), int(Part.FACE))
    hp[(fwd < -0.3) & (upc > -0.45)] = Part.HAIR_BACK
    hp[(upc > 0.3) | ((upc > 0.05) & (fwd < 0.55))] = Part.HAIR_TOP
    part[head] = hp

    # per-part cylindrical charts: (centre, axis, reference direction around the axis)
    chart: dict[tuple[int, bool], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for side, (hip, kn, an, sh, el, wr) in ((True, (4, 5, 6, 11, 12, 13)), (False, (1, 2, 3, 14, 15, 16))):
        s = "L" if side else "R"
        clav = rest.heads[index[f"clavicle.{s}"]]
        hand_dir = _unit(rest.heads[index[f"finger3-1.{s}"]] - rest.heads[index[f"wrist.{s}"]])
        chart[(Part.CLAVICLE, side)] = (clav, _unit(A[sh] - clav), _UP)
        for p in (Part.UPPER_ARM_PROX, Part.UPPER_ARM_DIST):
            chart[(p, side)] = (A[sh], _unit(A[el] - A[sh]), _FWD)
        chart[(Part.FOREARM, side)] = (A[el], _unit(A[wr] - A[el]), _FWD)
        chart[(Part.HAND, side)] = (A[wr], hand_dir, _FWD)
        for p in (Part.THIGH_PROX, Part.THIGH_DIST):
            chart[(p, side)] = (A[hip], _unit(A[kn] - A[hip]), _FWD)
        chart[(Part.SHIN, side)] = (A[kn], _unit(A[an] - A[kn]), _FWD)
        chart[(Part.FOOT, side)] = (A[an], _FWD, _UP)
        for p in (Part.TORSO_LOW, Part.TORSO_UP):
            chart[(p, side)] = (A[0], up, _FWD)
        chart[(Part.NECK, side)] = (A[8], rest.head_axis, _FWD)
        for p in (Part.FACE, Part.HAIR_TOP, Part.HAIR_BACK):
            chart[(p, side)] = (hc, _UP, _FWD)
    midline = np.isin(part, [Part.TORSO_LOW, Part.TORSO_UP, Part.NECK, Part.FACE, Part.HAIR_TOP, Part.HAIR_BACK])
    side_of_face = left | midline  # midline parts use one chart

    # (u, v) of every face corner in its face's chart; the chart's mean radius scales u to mm
    u_corner, v_corner = np.zeros(faces.shape), np.zeros(faces.shape)
    for (p, side), (c0, ax, ref) in chart.items():
        m = (part == p) & (side_of_face == side)
        if not m.any():
            continue
        e1 = _unit(ref - (ref @ ax) * ax)
        e2 = np.cross(ax, e1)
        x = pos[faces[m]] - c0
        radial = x - (x @ ax)[..., None] * ax
        r = float(np.linalg.norm(radial, axis=-1).mean())
        u = np.arctan2(radial @ e2, radial @ e1) * r
        # a face across the seam (behind the part): unwrap its negative corners by one turn
        wrap = (u.max(1) - u.min(1)) > np.pi * r
        u[wrap] = np.where(u[wrap] < 0, u[wrap] + 2 * np.pi * r, u[wrap])
        u_corner[m], v_corner[m] = u, x @ ax
    # one render vertex per distinct (skin vertex, part, side, u) corner: the corners of a vertex in
    # one chart share (u, v), except where a face across the seam unwrapped it by one turn
    key = np.stack([faces.ravel(), np.repeat(part, 3), np.repeat(side_of_face, 3),
                    np.round(u_corner.ravel() * 8).astype(np.int64)], 1)  # fmt: skip
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    uv = np.zeros((len(uniq), 2))
    uv[inverse, 0] = u_corner.ravel()
    uv[inverse, 1] = v_corner.ravel()

    # skinning weights of the skin vertices, per kind of bone; their bone groups
    combo_index, combo_weight = mesh.combos()
    vertex_group = gw[combo_index[np.arange(len(combo_index)), np.argmax(combo_weight, axis=1)]].argmax(axis=1)
    kw = np.zeros((V, len(kinds)))
    np.add.at(kw, (rows, bone_kind[bone_index].ravel()), weights.ravel())
    kw = np.einsum("vc,vck->vk", combo_weight, kw[combo_index])
    K = int((kw > 0).sum(axis=1).max())
    vertex_kind = np.argsort(-kw, axis=1)[:, :K]
    vertex_weight = np.take_along_axis(kw, vertex_kind, axis=1)
    return AnnyTemplate(
        faces=inverse.reshape(-1, 3).astype(np.int32),
        skin_faces=faces,
        src=uniq[:, 0].astype(np.int64),
        uv=uv.astype(np.float32),
        face_part=part.astype(np.int16),
        combo_index=combo_index,
        combo_weight=combo_weight,
        vertex_kind=vertex_kind.astype(np.int64),
        vertex_weight=vertex_weight,
        kinds=tuple(kinds),
        bone_kind=bone_kind,
        bone_labels=labels,
        segment_names=tuple(s[0] for s in _SEGMENTS),
        radius_sets=_radius_sets(pos, rest.anchors, rest.head_axis, vertex_group),
    )


def _rest_from(verts: np.ndarray, heads: np.ndarray, labels: tuple[str, ...],
               radius_sets: tuple[np.ndarray, ...] | None = None) -> AnnyRest:  # fmt: skip
    """Anchors and per-joint radii (75th percentile distance of the ``radius_sets`` vertices, default
    :func:`_radius_sets`) of a rest body (ours axes, mm), centred on the root bone head."""
    ix = {lb: i for i, lb in enumerate(labels)}
    origin = heads[ix["root"]].copy()
    v, h = verts - origin, heads - origin
    A = np.zeros((17, 3))
    for j, lb in ((1, "upperleg01.R"), (2, "lowerleg01.R"), (3, "foot.R"), (4, "upperleg01.L"), (5, "lowerleg01.L"),
                  (6, "foot.L"), (11, "upperarm01.L"), (12, "lowerarm01.L"), (13, "wrist.L"), (14, "upperarm01.R"),
                  (15, "lowerarm01.R"), (16, "wrist.R")):  # fmt: skip
        A[j] = h[ix[lb]]
    sh = 0.5 * (A[11] + A[14])
    neck_base = h[ix["neck01"]]
    A[8] = sh + _THORAX_UP_FRACTION * ((neck_base - sh) @ _UP) * _UP + 1000.0 * _THORAX_FORWARD_M * _FWD
    A[8][0] = 0.0
    A[7] = _SPINE_FRACTION * A[8]
    # head: the joint on the skull's vertical axis, below the top of the skull; neck point 100 mm lower
    skull = h[ix["head"]]
    top = float((v @ _UP).max())
    A[10] = np.array([0.0, -(top - 1000.0 * _HEAD_TOP_DROP_M), skull[2]])
    head_axis = _UP.copy()
    A[9] = A[10] - 100.0 * head_axis
    # elbow hinge axes from the rest (bent) arms
    n = np.stack([_unit(np.cross(A[12] - A[11], A[13] - A[12])), _unit(np.cross(A[15] - A[14], A[16] - A[15]))])
    if radius_sets is None:  # the template's choice needs vertex groups; without them, every vertex counts
        radius_sets = _radius_sets(v, A, head_axis, np.zeros(len(v), dtype=np.int64))
    # 75th percentile (linear) of each set's distances, all joints at once on an inf-padded matrix
    count = np.array([len(idx) for idx in radius_sets])
    pad = np.zeros((17, count.max()), dtype=np.int64)
    for j, idx in enumerate(radius_sets):
        pad[j, : len(idx)] = idx
    dist = np.linalg.norm(v[pad] - A[:, None, :], axis=2)
    dist[np.arange(pad.shape[1])[None, :] >= count[:, None]] = np.inf
    dist.sort(axis=1)
    q = 0.75 * (count - 1)
    lo = np.floor(q).astype(np.int64)
    hi = np.minimum(lo + 1, count - 1)
    rows = np.arange(17)
    radius = dist[rows, lo] + (q - lo) * (dist[rows, hi] - dist[rows, lo])
    return AnnyRest(vertices=v, heads=h, anchors=A, head_axis=head_axis, elbow_normal=n, radius=radius)


# The bone groups whose surface measures the body's thickness around each joint.
_RADIUS_GROUPS: tuple[tuple[str, ...], ...] = (
    ("torso",), ("thigh",), ("thigh", "shin"), ("shin", "foot"), ("thigh",), ("thigh", "shin"), ("shin", "foot"),
    ("torso",), ("torso", "neck", "clavicle"), ("neck", "head"), ("head",), ("upperarm", "clavicle"),
    ("upperarm", "forearm"), ("forearm", "hand"), ("upperarm", "clavicle"), ("upperarm", "forearm"), ("forearm", "hand"),
)  # fmt: skip


def _radius_sets(v: np.ndarray, A: np.ndarray, head_axis: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per joint, the rest vertices that measure the body's half-thickness there: those of the joint's
    bone groups (``group`` (V,) index into :data:`_GROUPS` per vertex) within 30 mm of the plane through
    the joint across its limb (the spine, the head) and within 250 mm of it (else the 8 nearest)."""
    axes = {0: A[7] - A[0], 7: A[8] - A[0], 8: A[8] - A[7], 9: head_axis, 10: head_axis}
    for a, b in ((1, 2), (2, 3), (4, 5), (5, 6), (11, 12), (12, 13), (14, 15), (15, 16)):
        axes[a] = axes.get(a, 0) + (A[b] - A[a])
        axes[b] = axes.get(b, 0) + (A[b] - A[a])
    axes[3], axes[6] = A[3] - A[2], A[6] - A[5]
    sets = []
    for j in range(17):
        x = v - A[j]
        dist = np.linalg.norm(x, axis=1)
        own = np.isin(group, [_GROUPS.index(g) for g in _RADIUS_GROUPS[j]])
        near = np.flatnonzero(own & (np.abs(x @ _unit(axes[j])) < 30.0) & (dist < 250.0))
        sets.append(near if len(near) >= 4 else np.argsort(np.where(own, dist, np.inf))[:8])
    return tuple(sets)


@lru_cache(maxsize=256)
def anny_rest(shape: AnnyShape) -> AnnyRest:
    """The rest body of ``shape`` with the template's skin vertices (cached per process: a person keeps
    it over a clip)."""
    verts, heads = _phenotype_rest(shape)
    tpl = anny_template()
    verts = np.einsum("vc,vci->vi", tpl.combo_weight, verts[tpl.combo_index])
    return _rest_from(verts, heads, tpl.bone_labels, tpl.radius_sets)


# ----------------------------------------------------------------------------- posing
# Like the capsule body, the posing runs in numba: ~20 segments of tiny 3-vector algebra, which numpy
# would spend almost entirely in per-call overhead. Segment indices follow _SEGMENTS.
_SEG = {name: k for k, (name, _, _) in enumerate(_SEGMENTS)}
_OWNER = np.array([_SEG[n] for n in ("torso_low", "thigh.R", "shin.R", "foot.R", "thigh.L", "shin.L", "foot.L",
                                     "torso_up", "neck", "head", "head", "upperarm.L", "forearm.L", "hand.L",
                                     "upperarm.R", "forearm.R", "hand.R")])  # fmt: skip


@njit(cache=True, nogil=True)
def _nunit(v):  # pragma: no cover - jitted
    n = np.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    return v / max(n, 1e-12)


@njit(cache=True, nogil=True)
def _ncross(a, b):  # pragma: no cover - jitted
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


@njit(cache=True, nogil=True)
def _nrot(axis, angle):  # pragma: no cover - jitted
    """Rotation matrix about unit ``axis`` by ``angle`` radians (right-handed)."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)


@njit(cache=True, nogil=True)
def _nswing(a, b):  # pragma: no cover - jitted
    """The smallest rotation taking unit ``a`` onto unit ``b`` (a half turn when they are opposite)."""
    c = _ncross(a, b)
    sn = np.sqrt(c @ c)
    cs = a @ b
    if sn < 1e-9:
        if cs > 0:
            return np.eye(3)
        ref = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        return _nrot(_nunit(_ncross(a, ref)), np.pi)
    return _nrot(c / sn, np.arctan2(sn, cs))


@njit(cache=True, nogil=True)
def _nframe(lateral, up):  # pragma: no cover - jitted
    """Orthonormal columns (lateral, up, lateral x up), lateral made perpendicular to up."""
    u = _nunit(up)
    lat = lateral - (lateral @ u) * u
    if np.sqrt(lat @ lat) < 1e-6:
        lat = _ncross(u, np.array([0.0, 0.0, -1.0]))
    lat = _nunit(lat)
    f = np.empty((3, 3))
    f[:, 0] = lat
    f[:, 1] = u
    f[:, 2] = _ncross(lat, u)
    return f


@njit(cache=True, nogil=True)
def _nstretch(axis, k):  # pragma: no cover - jitted
    return np.eye(3) + (k - 1.0) * np.outer(axis, axis)


@njit(cache=True, nogil=True)
def _nhinge(R, n_rest, upper, lower):  # pragma: no cover - jitted
    """Twist ``R`` about the target ``upper`` limb axis so that the rest hinge axis ``n_rest`` lands on
    the normal of the (upper, lower) plane; faded out for nearly straight limbs (8 -> 30 deg bend)."""
    bend = np.arccos(min(max(upper @ lower, -1.0), 1.0))
    w = min(max((bend - np.radians(8.0)) / np.radians(22.0), 0.0), 1.0)
    if w == 0.0:
        return R
    n_t = _nunit(_ncross(upper, lower))
    h = R @ n_rest
    h = h - (h @ upper) * upper
    if np.sqrt(h @ h) < 1e-6:
        return R
    h = _nunit(h)
    theta = np.arctan2(upper @ _ncross(h, n_t), h @ n_t)
    return _nrot(upper, w * theta) @ R


@njit(cache=True, nogil=True)
def _pose_kernel(J, A, clav, skull, head_axis, n_knee, n_el, free, kind_seg, kind_share, scale,
                 lin, shift, stretch, joints):  # fmt: skip  # pragma: no cover - jitted
    """Fit the segments. J (17, 3) target, A (17, 3) scaled rest anchors, clav (2, 3) scaled rest
    clavicle heads (L, R), skull (3,) scaled rest head bone head, n_knee (3,) / n_el (2, 3) rest hinge
    axes, free = (roll L, roll R, yaw, flex L, flex R) radians; writes lin (N, 3, 3), shift (N, 3) per
    kind of bone, stretch (20,) per segment and joints (17, 3) (the anchors as posed)."""
    ns = 20
    R = np.zeros((ns, 3, 3))
    S = np.zeros((ns, 3, 3))
    pr = np.zeros((ns, 3))
    pv = np.zeros((ns, 3))
    for k in range(ns):
        S[k] = np.eye(3)
    hip_r, hip_t = A[4] - A[1], J[4] - J[1]
    sh_r, sh_t = A[11] - A[14], J[11] - J[14]
    # torso: frames from the hip line (low) and the shoulder line (up), stretched along the spine
    for k in range(2):
        i0, i1 = (0, 7) if k == 0 else (7, 8)
        lr, lt = (hip_r, hip_t) if k == 0 else (sh_r, sh_t)
        R[k] = _nframe(lt, J[i1] - J[i0]) @ _nframe(lr, A[i1] - A[i0]).T
        d = A[i1] - A[i0]
        stretch[k] = np.sqrt((J[i1] - J[i0]) @ (J[i1] - J[i0])) / np.sqrt(d @ d)
        S[k] = _nstretch(_nunit(d), stretch[k])
        pr[k], pv[k] = A[i0], J[i0]
    for side in range(2):  # 0 = L, 1 = R
        hip, kn, an, sh, el, wr = (4, 5, 6, 11, 12, 13) if side == 0 else (1, 2, 3, 14, 15, 16)
        # segments: pelvis 2+side, thigh 4+side, shin 6+side, foot 8+side, clavicle 10+side,
        # upper arm 12+side, forearm 14+side, hand 16+side
        cpos = pv[1] + R[1] @ S[1] @ (clav[side] - pr[1])
        chain = ((2 + side, A[0], A[hip], J[0], J[hip], 0, -1),
                 (4 + side, A[hip], A[kn], J[hip], J[kn], 0, 0),
                 (6 + side, A[kn], A[an], J[kn], J[an], 4 + side, -1),
                 (10 + side, clav[side], A[sh], cpos, J[sh], 1, -1),
                 (12 + side, A[sh], A[el], J[sh], J[el], 10 + side, 1),
                 (14 + side, A[el], A[wr], J[el], J[wr], 12 + side, -1))  # fmt: skip
        for k, a0, a1, j0, j1, parent, hinge in chain:
            ar, at = _nunit(a1 - a0), _nunit(j1 - j0)
            Rk = _nswing(R[parent] @ ar, at) @ R[parent]
            if hinge == 0:
                Rk = _nhinge(Rk, n_knee, at, _nunit(J[an] - J[kn]))
            elif hinge == 1:
                Rk = _nhinge(Rk, n_el[side], at, _nunit(J[wr] - J[el]))
            R[k] = Rk
            stretch[k] = np.sqrt((j1 - j0) @ (j1 - j0)) / max(np.sqrt((a1 - a0) @ (a1 - a0)), 1e-9)
            S[k] = _nstretch(ar, stretch[k])
            pr[k], pv[k] = a0, j0
        Rs = R[6 + side]
        R[8 + side] = _nrot(Rs @ n_knee, -free[3 + side]) @ Rs  # ankle flexion, + toes up
        pr[8 + side], pv[8 + side] = A[an], J[an]
        R[16 + side] = R[14 + side]
        pr[16 + side], pv[16 + side] = A[wr], J[wr]
    # head: rigid, its axis along neck -> head, turned by the free yaw; the neck stretches to reach it
    d_head = _nunit(J[10] - J[9])
    R[19] = _nrot(d_head, free[2]) @ _nswing(R[1] @ head_axis, d_head) @ R[1]
    pr[19], pv[19] = A[10], J[10]
    skull_t = pv[19] + R[19] @ (skull - pr[19])
    ar, at = _nunit(skull - A[8]), _nunit(skull_t - J[8])
    R[18] = _nswing(R[1] @ ar, at) @ R[1]
    stretch[18] = np.sqrt((skull_t - J[8]) @ (skull_t - J[8])) / np.sqrt((skull - A[8]) @ (skull - A[8]))
    S[18] = _nstretch(ar, stretch[18])
    pr[18], pv[18] = A[8], J[8]
    # per kind of bone: the segment's transform, with the torso's lateral blend and the forearm's roll
    for i in range(kind_seg.shape[0]):
        k = kind_seg[i]
        share = kind_share[i]
        Rb = R[k]
        if (k == 0 and share != 0.0) or (k == 1 and share != 1.0):
            i0, i1 = (0, 7) if k == 0 else (7, 8)
            Rb = (
                _nframe((1 - share) * hip_t + share * sh_t, J[i1] - J[i0])
                @ _nframe((1 - share) * hip_r + share * sh_r, A[i1] - A[i0]).T
            )
        elif 14 <= k <= 17 and share != 0.0:
            side = k % 2
            el, wr = (12, 13) if side == 0 else (15, 16)
            roll = free[0] if side == 0 else -free[1]
            Rb = _nrot(_nunit(J[wr] - J[el]), roll * share) @ Rb
        L = Rb @ S[k]
        lin[i] = L * scale
        shift[i] = pv[k] - L @ pr[k]
    for j in range(17):
        k = _OWNER[j]
        joints[j] = pv[k] + R[k] @ S[k] @ (A[j] - pr[k])


@dataclass(frozen=True)
class AnnyPose:
    """Anny's bones fitted to a pose. B bones, N kinds of bones (:attr:`AnnyTemplate.kinds`).

    ``linear`` (B, 3, 3) and ``shift`` (B, 3): bone b maps a rest vertex ``v`` (:attr:`AnnyRest.vertices`,
    ours axes, mm, root at the origin) to ``linear[b] @ v + shift[b]`` in the pose's frame (mm,
    root-relative), uniform scale included; ``kind_linear`` (N, 3, 3) / ``kind_shift`` (N, 3) the same
    per kind of bone; ``scale``: the rest body's uniform scale; ``stretch`` (S,): each segment's
    extra scale along its axis (1 = none); ``joints`` (17, 3) mm the rest anchors as posed by their
    own segments (equal to the target joints up to round-off).
    """

    linear: np.ndarray
    shift: np.ndarray
    kind_linear: np.ndarray
    kind_shift: np.ndarray
    scale: float
    stretch: np.ndarray
    joints: np.ndarray


def _chain_length(P: np.ndarray, head_from_thorax: float) -> float:
    seg = P[[1, 2, 4, 5, 0, 7]] - P[[2, 3, 5, 6, 7, 8]]
    n = np.sqrt(np.sum(seg * seg, axis=1))
    return float(0.5 * n[:4].sum() + n[4] + n[5] + head_from_thorax)


def anny_scale(rest: AnnyRest, joints: np.ndarray) -> float:
    """The uniform scale that gives the rest body's leg + torso + neck/head chain the pose's length."""
    J = np.asarray(joints, dtype=np.float64)
    d = J[[9, 10]] - J[[8, 9]]
    A = rest.anchors
    return _chain_length(J, float(np.sqrt(np.sum(d * d, axis=1)).sum())) / _chain_length(A, rest.head_length)


def pose_anny(joints: np.ndarray, shape: AnnyShape, free: AnnyFreeParams | None = None) -> AnnyPose:
    """Fit Anny's bones to a (17, 3) H36M pose in mm (x right, y down, z forward) for a person of
    phenotype ``shape`` with the free parameters ``free`` (default: none); the result is
    root-relative (the pose's root at the origin). See the module docstring for the method."""
    J = np.asarray(joints, dtype=np.float64)
    J = np.ascontiguousarray(J - J[0])
    free = free or AnnyFreeParams()
    tpl = anny_template()
    rest = anny_rest(shape)
    s = anny_scale(rest, J)
    if not (np.isfinite(s) and s > 1e-3):
        raise ValueError("pose_anny: degenerate pose (its legs, spine and neck have no length)")
    A = rest.anchors * s
    A[9] = A[10] - float(np.linalg.norm(J[10] - J[9])) * rest.head_axis  # the head is rigid
    ix = tpl.bone_labels.index
    clav = np.stack([rest.heads[ix("clavicle.L")], rest.heads[ix("clavicle.R")]]) * s
    skull = rest.heads[ix("head")] * s
    fr = np.radians([free.palm_roll[0], free.palm_roll[1], free.head_yaw, free.ankle_flex[0], free.ankle_flex[1]])
    n = len(tpl.kinds)
    lin, shift = np.empty((n, 3, 3)), np.empty((n, 3))
    stretch, posed = np.ones(len(_SEGMENTS)), np.empty((17, 3))
    _pose_kernel(J, A, clav, skull, rest.head_axis, _unit(rest.anchors[4] - rest.anchors[1]), rest.elbow_normal, fr,
                 tpl.kind_segment, tpl.kind_share, s, lin, shift, stretch, posed)  # fmt: skip
    return AnnyPose(
        linear=lin[tpl.bone_kind],
        shift=shift[tpl.bone_kind],
        kind_linear=lin,
        kind_shift=shift,
        scale=float(s),
        stretch=stretch,
        joints=posed,
    )


@njit(cache=True, nogil=True, fastmath=True)
def _skin_kernel(rest, kind_index, weights, lin, shift, faces, verts, normals):  # pragma: no cover - jitted
    """Linear blend skinning of rest (V, 3) by the kinds' affine maps lin (N, 3, 3), shift (N, 3) with
    per-vertex kind_index / weights (V, K) into verts (V, 3), then area-weighted unit vertex normals of
    faces (F, 3) into normals (V, 3)."""
    for v in range(rest.shape[0]):
        for r in range(3):
            verts[v, r] = 0.0
        for c in range(kind_index.shape[1]):
            wv = weights[v, c]
            if wv == 0.0:
                continue
            k = kind_index[v, c]
            for r in range(3):
                verts[v, r] += wv * (lin[k, r, 0] * rest[v, 0] + lin[k, r, 1] * rest[v, 1] + lin[k, r, 2] * rest[v, 2]
                                     + shift[k, r])  # fmt: skip
    normals[:] = 0.0
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        e1x, e1y, e1z = verts[b, 0] - verts[a, 0], verts[b, 1] - verts[a, 1], verts[b, 2] - verts[a, 2]
        e2x, e2y, e2z = verts[c, 0] - verts[a, 0], verts[c, 1] - verts[a, 1], verts[c, 2] - verts[a, 2]
        nx, ny, nz = e1y * e2z - e1z * e2y, e1z * e2x - e1x * e2z, e1x * e2y - e1y * e2x
        for i in (a, b, c):
            normals[i, 0] += nx
            normals[i, 1] += ny
            normals[i, 2] += nz
    for v in range(normals.shape[0]):
        n = np.sqrt(normals[v, 0] ** 2 + normals[v, 1] ** 2 + normals[v, 2] ** 2) + 1e-12
        for r in range(3):
            normals[v, r] /= n


def _skin(tpl: AnnyTemplate, rest: AnnyRest, pose: AnnyPose) -> tuple[np.ndarray, np.ndarray]:
    """(Vs, 3) posed skin vertices (mm, root-relative) and (Vs, 3) unit outward vertex normals."""
    V = rest.vertices.shape[0]
    verts, normals = np.empty((V, 3)), np.empty((V, 3))
    _skin_kernel(rest.vertices, tpl.vertex_kind, tpl.vertex_weight, pose.kind_linear, pose.kind_shift, tpl.skin_faces,
                 verts, normals)  # fmt: skip
    return verts, normals


def build_anny_body(
    joints: np.ndarray,
    shape: AnnyShape | None = None,
    free: AnnyFreeParams | np.random.Generator | None = None,
    rotation: np.ndarray | None = None,
    translation: np.ndarray | None = None,
) -> BodyMesh:
    """Pose the Anny body with a (17, 3) root-relative H36M pose in mm (x right, y down, z forward).

    Args:
        shape: the person's phenotype (default: Anny's average adult).
        free: palm roll, head yaw and ankle flexion (:class:`AnnyFreeParams`), or a generator to draw
            them from (:func:`sample_anny_free_params`); None: all zero.
        rotation, translation: optional (3, 3) and (3,) mm map applied last (e.g. into a camera frame).

    Returns:
        A :class:`BodyMesh` (V2 = :attr:`AnnyTemplate.num_vertices` vertices, mm float32, unit normals,
        uv in mm, faces int32, face_part int16). Its joints coincide with ``joints`` (see
        :func:`pose_anny`).
    """
    joints = np.asarray(joints, dtype=np.float64)
    if joints.shape != (17, 3):
        raise ValueError(f"build_anny_body: expected a (17, 3) H36M_17 pose, got shape {joints.shape}")
    if not np.all(np.isfinite(joints)):
        raise ValueError("build_anny_body: the pose contains NaN or inf")
    shape = shape or AnnyShape()
    if isinstance(free, np.random.Generator):
        free = sample_anny_free_params(free)
    tpl = anny_template()
    rest = anny_rest(shape)
    pose = pose_anny(joints, shape, free)
    verts, normals = _skin(tpl, rest, pose)
    verts += joints[0]
    if rotation is not None:
        rot = np.asarray(rotation, dtype=np.float64)
        verts, normals = verts @ rot.T, normals @ rot.T
    if translation is not None:
        verts = verts + np.asarray(translation, dtype=np.float64).reshape(3)
    return BodyMesh(verts[tpl.src].astype(np.float32), normals[tpl.src].astype(np.float32), tpl.uv, tpl.faces,
                    tpl.face_part)  # fmt: skip


def anny_joint_depth_tolerance(shape: AnnyShape | None = None, joints: np.ndarray | None = None) -> np.ndarray:
    """(17,) mm: how far in front of a joint the visible surface may lie for the joint to count as
    visible: the Anny body's half-thickness around the joint (scaled to the pose's size when
    ``joints`` (17, 3) mm is given) plus 45 mm slack, like :func:`nlrd.data.synthetic.body.joint_depth_tolerance`."""
    rest = anny_rest(shape or AnnyShape())
    s = 1.0 if joints is None else anny_scale(rest, joints)
    return (rest.radius * s + 45.0).astype(np.float32)
