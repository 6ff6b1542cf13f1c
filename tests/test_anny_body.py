"""The Anny body model of the renderer (nlrd.data.synthetic.anny_body) and the background pools.

The Anny tests skip when the ``anny`` package is missing or its model cannot be built. The first
build in a fresh cache folder takes one to a few minutes (then it is cached under .cache/anny), so
the model is built once per test session.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import write_background_photos

from nlrd.data.paths import REPO_ROOT
from nlrd.data.synthetic import demo_poses, render_clip, render_sample
from nlrd.data.synthetic.backgrounds import BackgroundBank, split_names
from nlrd.data.synthetic.body import NUM_PARTS
from nlrd.data.synthetic.render import bank_for_style
from nlrd.data.synthetic.styles import Style, get_style

SIZE = 128


@pytest.fixture(scope="session")
def anny():
    """The anny_body module with its model and template built (once per session), or a skip."""
    from nlrd.data.synthetic import anny_body

    if not anny_body.anny_available():
        pytest.skip("the 'anny' package is not installed (pip install anny==0.6.2)")
    try:
        anny_body.anny_template()
    except Exception as e:  # noqa: BLE001 - any build failure means the model is unusable here
        pytest.skip(f"the Anny model could not be built: {type(e).__name__}: {e}")
    return anny_body


@pytest.fixture(scope="module")
def real_poses() -> np.ndarray:
    """(n, 17, 3) mm: test-split mocap poses when data/mocap.npz exists, else demo poses."""
    path = REPO_ROOT / "data" / "mocap.npz"
    if path.exists():
        J = np.load(path)["test_joints"]
        return J[np.linspace(0, len(J) - 1, 12).astype(int)].astype(np.float64)
    return demo_poses.random_poses(12, np.random.default_rng(0)).astype(np.float64)


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small generated photos: three for each background pool."""
    return write_background_photos(tmp_path_factory.mktemp("anny_backgrounds"), 6)


def _anny_forward(anny, model, shape, pose):
    """Anny's own forward pass ('world' bone poses) for our fitted bone transforms: posed vertices and
    bone heads, ours axes (mm)."""
    import torch

    tpl = anny.anny_template()
    M = anny._TO_OURS
    with torch.no_grad():
        ph = torch.tensor([[getattr(shape, lb) for lb in model.phenotype_labels]], dtype=model.dtype)
        lc = model._parse_parameter_kwargs(None, model.local_change_labels, 0.0, "l")
        fa = model._parse_parameter_kwargs(None, model.facial_action_labels, 0.0, "f")
        rest_poses = model.get_rest_model(model._get_phenotype_blendshape_coefficients(ph, lc, fa))["rest_bone_poses"]
    P = rest_poses[0].numpy()
    origin = 1000.0 * M @ P[tpl.bone_labels.index("root"), :3, 3]
    # ours: y = L x + t on x = 1000 M a - origin; in Anny's frame (metres): a -> M^T (L (1000 M a - origin) + t) / 1000
    La = np.einsum("ji,bjk,kl->bil", M, pose.linear, M)
    ta = np.einsum("ji,bj->bi", M, pose.shift - pose.linear @ origin) / 1000.0
    W = np.zeros_like(P)
    W[:, :3, :3] = La @ P[:, :3, :3]
    W[:, :3, 3] = np.einsum("bij,bj->bi", La, P[:, :3, 3]) + ta
    W[:, 3, 3] = 1.0
    with torch.no_grad():
        out = model(pose_parameters=torch.tensor(W[None]), phenotype_kwargs=ph, pose_parameterization="world")
    verts = 1000.0 * out["vertices"][0].numpy() @ M.T
    heads = 1000.0 * out["bone_poses"][0, :, :3, 3].numpy() @ M.T
    return verts, heads


def test_joints_coincide_with_the_pose(anny, real_poses: np.ndarray) -> None:
    """Anny's own forward pass, driven by the fitted bones, puts its joints on the target pose (mm)
    and its vertices where our numpy skinning puts them."""
    model, tpl = anny.anny_model(), anny.anny_template()
    joint_bones = {0: "root", 1: "upperleg01.R", 2: "lowerleg01.R", 3: "foot.R", 4: "upperleg01.L",
                   5: "lowerleg01.L", 6: "foot.L", 11: "upperarm01.L", 12: "lowerarm01.L", 13: "wrist.L",
                   14: "upperarm01.R", 15: "lowerarm01.R", 16: "wrist.R"}  # fmt: skip
    rng = np.random.default_rng(0)
    errors = []
    for p in real_poses[:6]:
        shape, free = anny.sample_anny_shape(rng), anny.sample_anny_free_params(rng)
        pose = anny.pose_anny(p, shape, free)
        verts, heads = _anny_forward(anny, model, shape, pose)
        target = p - p[0]
        errors += [np.linalg.norm(heads[tpl.bone_labels.index(b)] - target[j]) for j, b in joint_bones.items()]
        errors += list(np.linalg.norm(pose.joints - target, axis=1))  # incl. spine, thorax, neck, head
        ours, _ = anny._skin(tpl, anny.anny_rest(shape), pose)
        n = verts.shape[0]
        assert np.abs(ours[:n] - verts).max() < 1e-3, "numpy skinning differs from Anny's"
    assert np.mean(errors) < 2.0 and np.max(errors) < 5.0, f"joint error mean {np.mean(errors):.3f} mm"


def _posed_point(anny, p: np.ndarray, shape, rest_index: int) -> np.ndarray:
    tpl = anny.anny_template()
    pose = anny.pose_anny(p, shape, anny.AnnyFreeParams())
    verts, _ = anny._skin(tpl, anny.anny_rest(shape), pose)
    return verts[rest_index] + p[0]


def _landmark(anny, shape, a: int, b: int, c: int) -> int:
    """The skin vertex within 60 mm of rest joint ``b`` that lies furthest outside the a-b-c bend:
    the olecranon of a (rest-bent) elbow; for the (nearly straight) rest knee, the kneecap."""
    rest = anny.anny_rest(shape)
    A = rest.anchors
    u = (A[b] - A[a]) / np.linalg.norm(A[b] - A[a])
    out = np.array([0.0, 0.0, -1.0]) if b in (2, 5) else A[b] - 0.5 * (A[a] + A[c])
    out = out - (out @ u) * u
    d = rest.vertices - A[b]
    near = np.flatnonzero(np.linalg.norm(d, axis=1) < 60.0)
    return int(near[np.argmax(d[near] @ out)])


@pytest.mark.parametrize(
    "angles",
    [
        {"l_hip_flex": 60, "l_hip_abd": 40, "l_knee": 90, "r_hip_flex": 20, "r_hip_abd": 30, "r_knee": 100,
         "l_sh_abd": 90, "l_elbow": 90, "l_elbow_axis": 90, "r_sh_abd": 40, "r_sh_flex": 60, "r_elbow": 110,
         "r_elbow_axis": -60},
        {"l_hip_flex": 100, "l_knee": 120, "r_hip_flex": -30, "r_hip_abd": 45, "r_knee": 60, "l_sh_abd": 160,
         "l_elbow": 70, "l_elbow_axis": 45, "r_sh_flex": 100, "r_elbow": 130, "r_elbow_axis": 0, "twist": 30},
    ],
)  # fmt: skip
def test_hinges_bend_in_the_limb_plane(anny, angles: dict) -> None:
    """A bent knee's kneecap and a bent elbow's olecranon point away from the bend, in the
    hip-knee-ankle (shoulder-elbow-wrist) plane: the hinge axis is the plane's normal."""
    p = demo_poses.pose_from_angles(angles).astype(np.float64)
    shape = anny.AnnyShape()
    for a, b, c in ((4, 5, 6), (1, 2, 3), (11, 12, 13), (14, 15, 16)):
        x = _posed_point(anny, p, shape, _landmark(anny, shape, a, b, c)) - p[b]
        u = (p[b] - p[a]) / np.linalg.norm(p[b] - p[a])
        bend = p[c] - p[b]  # where the lower limb goes, across the upper one
        x, bend = x - (x @ u) * u, bend - (bend @ u) * u
        angle = np.degrees(np.arccos(-(x @ bend) / np.linalg.norm(x) / np.linalg.norm(bend)))
        assert angle < 30.0, f"joint {b}: the hinge is {angle:.0f} deg off the limb plane's outside"


def test_mesh_is_valid(anny, real_poses: np.ndarray) -> None:
    tpl = anny.anny_template()
    rng = np.random.default_rng(3)
    for p in real_poses[:4]:
        m = anny.build_anny_body(p, anny.sample_anny_shape(rng), rng)
        V = m.vertices.shape[0]
        assert m.vertices.dtype == np.float32 and m.normals.dtype == np.float32 and m.uv.dtype == np.float32
        assert m.faces.dtype == np.int32 and m.face_part.dtype == np.int16
        assert m.vertices.shape == m.normals.shape == (V, 3) and m.uv.shape == (V, 2) and V == tpl.num_vertices
        assert m.faces.min() >= 0 and m.faces.max() < V and m.face_part.shape == (m.faces.shape[0],)
        assert np.all(np.isfinite(m.vertices)) and np.all(np.isfinite(m.uv))
        assert np.allclose(np.linalg.norm(m.normals, axis=1), 1.0, atol=1e-4)
        # the faces wind outwards (positive enclosed volume, of a human's size) and the vertex normals agree
        v = m.vertices.astype(np.float64)[m.faces]
        cross = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
        volume = np.sum(v[:, 0] * np.cross(v[:, 1], v[:, 2])) / 6.0
        assert 3e7 < volume < 2e8, f"volume {volume / 1e6:.1f} litres"
        agree = np.sum(m.normals[m.faces].mean(axis=1) * cross, axis=1) > 0
        assert agree.mean() > 0.98
        # the body spans the pose (no exploding vertices): within 300 mm of the joints' box
        lo, hi = p.min(axis=0) - 300.0, p.max(axis=0) + 300.0
        assert np.all(m.vertices >= lo) and np.all(m.vertices <= hi)
    # every part that appearances give a material to is on the body
    assert set(np.unique(tpl.face_part).tolist()) == set(range(NUM_PARTS))


def test_adult_shapes(anny) -> None:
    rng = np.random.default_rng(0)
    heights = []
    for _ in range(12):
        shape = anny.sample_anny_shape(rng)
        v = anny.anny_rest(shape).vertices
        heights.append(float(np.ptp(v[:, 1])))
        assert all(0.0 <= getattr(shape, f) <= 1.0 for f in ("gender", "muscle", "weight", "height", "proportions"))
    assert 1400.0 < min(heights) and max(heights) < 2050.0, heights
    a, b = anny.sample_anny_shape(np.random.default_rng(5)), anny.sample_anny_shape(np.random.default_rng(5))
    assert a == b


def test_render_masks_contain_visible_joints(anny, real_poses: np.ndarray, photo_folder: Path) -> None:
    hits, total = 0, 0
    for i, p in enumerate(real_poses):
        s = render_sample(p, "source_anny", np.random.default_rng(100 + i), SIZE, photo_folder)
        assert s.image.shape == (SIZE, SIZE, 3) and s.image.dtype == np.uint8
        px = np.round(s.joints2d).astype(int)
        for (x, y), vis in zip(px, s.visible, strict=True):
            if vis:
                total += 1
                hits += int(s.mask[y, x])
        assert s.mask.sum() > 0.04 * SIZE * SIZE
    assert total > len(real_poses) * 8 and hits / total > 0.97, f"{hits}/{total}"


@pytest.mark.parametrize("style", ["source_anny", "target_anny"])
def test_renders_are_deterministic(anny, style: str, real_poses: np.ndarray, photo_folder: Path) -> None:
    a = render_sample(real_poses[3], style, np.random.default_rng(7), SIZE, photo_folder)
    b = render_sample(real_poses[3], style, np.random.default_rng(7), SIZE, photo_folder)
    c = render_sample(real_poses[3], style, np.random.default_rng(8), SIZE, photo_folder)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.joints2d, b.joints2d)
    assert np.array_equal(a.visible, b.visible)
    assert not np.array_equal(a.image, c.image)


def test_clip_keeps_the_person(anny, photo_folder: Path) -> None:
    poses = demo_poses.random_windows(1, np.random.default_rng(2), length=6)[0]
    clip = render_clip(poses, "target_anny", np.random.default_rng(3), SIZE, photo_folder)
    assert clip.image.shape == (6, SIZE, SIZE, 3) and clip.joints3d.shape == (6, 17, 3)
    again = render_clip(poses, "target_anny", np.random.default_rng(3), SIZE, photo_folder)
    assert np.array_equal(clip.image, again.image)
    assert all(m.sum() > 0 for m in clip.mask)


def test_bad_poses(anny) -> None:
    with pytest.raises(ValueError, match="17, 3"):
        anny.build_anny_body(np.zeros((16, 3)))
    with pytest.raises(ValueError, match="NaN"):
        anny.build_anny_body(np.full((17, 3), np.nan))
    with pytest.raises(ValueError, match="degenerate"):
        anny.build_anny_body(np.zeros((17, 3)))


def test_warp_free_closest_points() -> None:
    """The stand-in for Warp's closest-point query (used once, when the model is first built) finds
    the nearest point of a triangle soup, reported as Warp does: (u, v) weights of corners a and b."""
    torch = pytest.importorskip("torch")
    from nlrd.data.synthetic.anny_body import _closest_points_on_mesh

    rng = np.random.default_rng(0)
    verts = rng.normal(size=(15, 3))
    faces = np.arange(15).reshape(5, 3)
    points = rng.normal(size=(40, 3)) * 1.5
    d, f, uv = (x.numpy() for x in _closest_points_on_mesh(torch.tensor(points), torch.tensor(verts),
                                                            torch.tensor(faces), 100.0))  # fmt: skip
    tri = verts[faces[f]]
    q = uv[:, :1] * tri[:, 0] + uv[:, 1:] * tri[:, 1] + (1.0 - uv.sum(1, keepdims=True)) * tri[:, 2]
    assert np.allclose(np.linalg.norm(q - points, axis=1), d, atol=1e-4)
    assert np.all(uv >= -1e-6) and np.all(uv.sum(1) <= 1 + 1e-6)
    # against a dense sampling of every triangle: never farther, and within the sampling's spacing
    g = np.linspace(0.0, 1.0, 81)
    a, b = np.meshgrid(g, g)
    keep = a + b <= 1.0
    w = np.stack([a[keep], b[keep], 1.0 - a[keep] - b[keep]], 1)
    samples = np.einsum("sk,fkd->fsd", w, verts[faces]).reshape(-1, 3)
    dense = np.linalg.norm(points[:, None] - samples[None], axis=2).min(axis=1)
    assert np.all(d <= dense + 1e-5) and np.all(dense - d < 0.05)


# ----------------------------------------------------------------------------- styles and pools
def test_capsules_stay_the_default() -> None:
    assert Style(name="x").body == "capsule" and Style(name="x").background_pool == "all"
    for name in ("source", "target"):
        assert get_style(name).body == "capsule" and get_style(name).background_pool == "all"
    src, tgt = get_style("source_anny"), get_style("target_anny")
    assert src.body == tgt.body == "anny" and src.background == "photo" and src.lighting == "key"
    assert (src.background_pool, tgt.background_pool) == ("source", "target")
    assert src.camera == get_style("source").camera and tgt.camera == get_style("target").camera


def _bank(n_pano: int, n_photo: int) -> BackgroundBank:
    from nlrd.data.synthetic.backgrounds import Panorama

    rng = np.random.default_rng(0)
    panos = tuple(Panorama(f"pano_{i}", rng.integers(0, 255, (8, 16, 3), dtype=np.uint8), np.array([0.0, -1, 0]),
                           np.ones(3), 0.3, np.ones(3), np.ones(3), np.ones(3), 0.4) for i in range(n_pano))  # fmt: skip
    photos = tuple(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8) for _ in range(n_photo))
    return BackgroundBank(panos, photos, tuple(f"photo_{i}" for i in range(n_photo)))


def test_background_pools_are_disjoint_halves() -> None:
    bank = _bank(12, 18)
    assert bank.pool("all") is bank
    src, tgt = bank.pool("source"), bank.pool("target")
    assert bank.pool("source") is src, "pools are cached per bank"
    for kind in (0, 1):
        s, t, a = set(src.names()[kind]), set(tgt.names()[kind]), set(bank.names()[kind])
        assert not s & t and s | t == a
        assert abs(len(s) - len(t)) <= 1, "each kind is split in halves"
    # the photos follow their names
    for name, photo in zip(src.photo_names, src.photos, strict=True):
        assert np.array_equal(photo, bank.photos[bank.photo_names.index(name)])
    # deterministic: by name, not by order or content
    reordered = BackgroundBank(bank.panoramas[::-1], bank.photos[::-1], bank.photo_names[::-1])
    assert set(reordered.pool("source").names()[1]) == set(src.names()[1])
    assert split_names(["a", "b", "a"]) == split_names(["b", "a"])
    # unnamed photos are named by their pixels
    unnamed = BackgroundBank((), bank.photos)
    s, t = unnamed.pool("source").names()[1], unnamed.pool("target").names()[1]
    assert len(s) + len(t) == 18 and not set(s) & set(t)
    with pytest.raises(ValueError, match="pool"):
        bank.pool("test")
    with pytest.raises(ValueError, match="empty"):
        _bank(1, 0).pool("target")


def test_styles_draw_from_their_pool(photo_folder: Path) -> None:
    src = bank_for_style(get_style("source_anny"), photo_folder)
    tgt = bank_for_style(get_style("target_anny"), photo_folder)
    every = bank_for_style(get_style("target"), photo_folder)
    assert not set(src.photo_names) & set(tgt.photo_names)
    assert set(src.photo_names) | set(tgt.photo_names) == set(every.photo_names)
    assert len(every.photo_names) == 6 and len(src.photo_names) == len(tgt.photo_names) == 3
