"""Tests of the synthetic people renderer (nlrd.data.synthetic): labels, relations, styles, datasets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import write_background_photos
from torch.utils.data import DataLoader

from nlrd.data.synthetic import (
    BodyShape,
    SyntheticClipDataset,
    SyntheticPoseDataset,
    build_body,
    demo_poses,
    fixed_test_clips,
    fixed_test_set,
    get_style,
    render_clip,
    render_sample,
)
from nlrd.data.synthetic.backgrounds import BackgroundBank, procedural_view
from nlrd.data.synthetic.body import body_template
from nlrd.data.synthetic.camera import Camera, project
from nlrd.data.synthetic.effects import Effects
from nlrd.data.synthetic.render import Scene, render_frame, sample_person
from nlrd.skeleton import H36M_17
from nlrd.transforms import flip_image, flip_pose, inplane_image, inplane_points2d, inplane_pose

SIZE = 128
CENTRE = ((SIZE - 1) / 2.0, (SIZE - 1) / 2.0)


@pytest.fixture(scope="module")
def poses() -> np.ndarray:
    return demo_poses.random_poses(24, np.random.default_rng(0))


@pytest.fixture(scope="module")
def photo_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A user's own background folder: two small generated photos (no real data needed)."""
    return write_background_photos(tmp_path_factory.mktemp("backgrounds"), 2)


@pytest.fixture(scope="module")
def backgrounds(data_root: Path) -> BackgroundBank:
    return BackgroundBank.from_folders(data_root / "backgrounds")


def _root(sample) -> np.ndarray:
    return np.array([0.0, 0.0, sample.distance])


def _check_sample(s, size: int = SIZE) -> None:
    assert s.image.shape == (size, size, 3) and s.image.dtype == np.uint8
    assert s.joints3d.shape == (17, 3) and s.joints3d.dtype == np.float32
    assert s.joints2d.shape == (17, 2) and s.joints2d.dtype == np.float32
    assert s.visible.shape == (17,) and s.visible.dtype == bool
    assert s.box.shape == (4,) and s.box.dtype == np.float32
    assert s.K.shape == (3, 3)
    assert np.allclose(s.joints3d[0], 0.0, atol=1e-3), "the label is root-relative"
    assert np.allclose(s.K[:2, 2], (size - 1) / 2.0) and s.K[0, 0] == s.K[1, 1], "principal point = crop centre"
    x0, y0, x1, y1 = s.box
    assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size


# ----------------------------------------------------------------------------- body
def test_body_mesh_is_small_and_finite() -> None:
    tpl = body_template()
    assert 1000 <= tpl.num_faces <= 3500
    body = build_body(demo_poses.a_pose(), BodyShape(girth=1.2))
    assert np.all(np.isfinite(body.vertices)) and np.all(np.isfinite(body.normals))
    assert np.allclose(np.linalg.norm(body.normals, axis=1), 1.0, atol=1e-4)
    # the body spans the skeleton: feet below the ankles, head above the head joint
    pose = demo_poses.a_pose()
    assert body.vertices[:, 1].max() > pose[[3, 6], 1].max() and body.vertices[:, 1].min() <= pose[10, 1] + 1.0
    with pytest.raises(ValueError, match="17, 3"):
        build_body(np.zeros((16, 3)))


# ----------------------------------------------------------------------------- samples
def test_shapes_and_dtypes(poses: np.ndarray, photo_folder: Path) -> None:
    _check_sample(render_sample(poses[0], "source", np.random.default_rng(0)))
    _check_sample(render_sample(poses[1], "target", np.random.default_rng(0), backgrounds=photo_folder))
    _check_sample(render_sample(poses[2], "source", np.random.default_rng(0), size=64), size=64)


def test_bad_arguments(poses: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown rendering style"):
        render_sample(poses[0], "cartoon", np.random.default_rng(0))
    with pytest.raises(ValueError, match="17, 3"):
        render_sample(poses[0][:10], "source", np.random.default_rng(0))
    with pytest.raises(ValueError, match="does not exist"):
        render_sample(poses[0], "target", np.random.default_rng(0), backgrounds="/nonexistent/backgrounds")


@pytest.mark.parametrize("style", ["source", "target"])
def test_deterministic_for_a_seed(style: str, poses: np.ndarray, photo_folder: Path) -> None:
    a = render_sample(poses[3], style, np.random.default_rng(7), backgrounds=photo_folder)
    b = render_sample(poses[3], style, np.random.default_rng(7), backgrounds=photo_folder)
    c = render_sample(poses[3], style, np.random.default_rng(8), backgrounds=photo_folder)
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.joints3d, b.joints3d) and np.array_equal(a.visible, b.visible)
    assert a.image.tobytes() != c.image.tobytes()


def test_label_matches_projection(poses: np.ndarray) -> None:
    """joints3d (camera frame, root-relative) + the root translation, projected with K, is joints2d."""
    for i in range(8):
        s = render_sample(poses[i], "source", np.random.default_rng(i))
        assert np.abs(project(s.joints3d + _root(s), s.K.astype(np.float64)) - s.joints2d).max() < 0.5
        # a rotation of the world pose: bone lengths are kept
        bl = np.linalg.norm(s.joints3d[1:] - s.joints3d[list(H36M_17.parents[1:])], axis=1)
        bl0 = np.linalg.norm(poses[i][1:] - poses[i][list(H36M_17.parents[1:])], axis=1)
        assert np.allclose(bl, bl0, atol=0.05)


def test_visible_joints_land_on_the_body(poses: np.ndarray) -> None:
    hits, total = 0, 0
    for i in range(12):
        s = render_sample(poses[i], "source", np.random.default_rng(100 + i))
        px = np.round(s.joints2d).astype(int)
        for (x, y), vis in zip(px, s.visible, strict=True):
            if vis:
                total += 1
                hits += int(s.mask[y, x] and np.any(s.image[y, x] != 0))
        # the person fills the crop: the silhouette spans most of its height or width
        x0, y0, x1, y1 = s.box
        assert max(x1 - x0, y1 - y0) > 0.6 * SIZE
    assert total > 12 * 8 and hits / total > 0.95


def _plain_scene(rng: np.random.Generator, K: np.ndarray) -> Scene:
    return Scene(procedural_view(rng, np.eye(3), K, SIZE), np.array([[0.0, -0.6, -0.8]]), np.full((1, 3), 0.7),
                 np.full(3, 0.3), np.full(3, 0.3), 0.0, Effects())  # fmt: skip


def test_image_flip_equals_pose_flip(poses: np.ndarray) -> None:
    """Flipping the rendered image moves the 2D joints exactly as projecting flip_pose(joints3d)
    does (with left/right swapped), and the flipped render is the render of the flipped pose."""
    style = get_style("source")
    perm = H36M_17.flip_permutation
    for i in range(6):
        rng = np.random.default_rng(200 + i)
        s = render_sample(poses[i], style, rng)
        mirrored = s.joints2d[perm].copy()
        mirrored[:, 0] = (SIZE - 1) - mirrored[:, 0]
        flipped = project(flip_pose(s.joints3d) + _root(s), s.K.astype(np.float64))
        assert np.abs(flipped - mirrored).max() < 1.0
        # render the label pose and its mirror with the same person from the camera itself
        K = s.K.astype(np.float64)
        cam = Camera(np.eye(3), s.distance, K, SIZE, 0.0, 0.0, 0.0, 1000.0)
        person, scene = sample_person(style, rng), _plain_scene(rng, K)
        a = render_frame(s.joints3d, person, cam, scene, style, rng)
        b = render_frame(flip_pose(s.joints3d), person, cam, scene, style, rng)
        assert np.abs(a.joints2d - s.joints2d).max() < 1e-3
        assert np.abs(b.joints2d - mirrored).max() < 1.0
        fa = flip_image(a.mask[..., None])[..., 0]
        assert (fa & b.mask).sum() / (fa | b.mask).sum() > 0.98


def test_image_rotation_equals_pose_rotation(poses: np.ndarray) -> None:
    style = get_style("source")
    for i, theta in enumerate((10.0, -25.0, 50.0)):
        rng = np.random.default_rng(300 + i)
        s = render_sample(poses[i], style, rng)
        K = s.K.astype(np.float64)
        rotated = project(inplane_pose(s.joints3d, theta) + _root(s), K)
        assert np.abs(rotated - inplane_points2d(s.joints2d, theta, CENTRE)).max() < 1.0
        cam = Camera(np.eye(3), s.distance, K, SIZE, 0.0, 0.0, 0.0, 1000.0)
        person, scene = sample_person(style, rng), _plain_scene(rng, K)
        a = render_frame(s.joints3d, person, cam, scene, style, rng)
        b = render_frame(inplane_pose(s.joints3d, theta), person, cam, scene, style, rng)
        ra = inplane_image(a.mask.astype(np.uint8)[..., None] * 255, theta)[..., 0] > 127
        assert (ra & b.mask).sum() / (ra | b.mask).sum() > 0.9


def test_target_differs_from_source(poses: np.ndarray, backgrounds: BackgroundBank) -> None:
    """A measurable domain shift: photographic target backgrounds are less saturated and carry more
    fine texture (and camera noise) than the procedural source ones."""
    stats = {}
    for style in ("source", "target"):
        sat, lap = [], []
        for i in range(40):
            s = render_sample(poses[i % len(poses)], style, np.random.default_rng([5, i]), backgrounds=backgrounds)
            bg = ~s.mask
            sat.append(cv2.cvtColor(s.image, cv2.COLOR_RGB2HSV)[..., 1][bg].mean())
            grey = cv2.cvtColor(s.image, cv2.COLOR_RGB2GRAY).astype(np.float32)
            lap.append(np.abs(cv2.Laplacian(grey, cv2.CV_32F))[bg].mean())
        stats[style] = (np.mean(sat), np.mean(lap))
    assert stats["source"][0] > stats["target"][0] + 15, stats
    assert stats["target"][1] > 1.5 * stats["source"][1], stats


def test_target_uses_real_backgrounds(poses: np.ndarray, backgrounds: BackgroundBank) -> None:
    assert len(backgrounds.panoramas) >= 1 and len(backgrounds.photos) >= 1
    pano = backgrounds.panoramas[0]
    assert pano.image.dtype == np.uint8 and pano.image.shape[1] == 2 * pano.image.shape[0]
    assert abs(np.linalg.norm(pano.key_direction) - 1) < 1e-6
    s = render_sample(poses[0], "target", np.random.default_rng(1), backgrounds=backgrounds)
    _check_sample(s)


# ----------------------------------------------------------------------------- clips
def test_render_clip() -> None:
    window = demo_poses.random_windows(1, np.random.default_rng(3), length=30)[0]
    c = render_clip(window, "source", np.random.default_rng(4), size=64)
    assert c.image.shape == (30, 64, 64, 3) and c.joints3d.shape == (30, 17, 3) and c.visible.shape == (30, 17)
    assert np.allclose(c.K, c.K[0]), "a clip keeps one zoom"
    for t in (0, 29):
        assert np.abs(project(c.joints3d[t] + [0, 0, c.distance[t]], c.K[t].astype(np.float64)) - c.joints2d[t]).max() < 0.5
    # the same person and background: consecutive frames are close, the camera drifts slowly
    diff = np.abs(c.image[1:].astype(np.int16) - c.image[:-1]).mean(axis=(1, 2, 3))
    assert diff.max() < 25


# ----------------------------------------------------------------------------- datasets
def test_pose_dataset_with_two_workers(poses: np.ndarray) -> None:
    def run() -> tuple[torch.Tensor, torch.Tensor]:
        ds = SyntheticPoseDataset(poses, "source", size=64, seed=3, samples_per_epoch=8)
        batches = list(DataLoader(ds, batch_size=4, num_workers=2))
        return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])

    images, joints = run()
    assert images.shape == (8, 3, 64, 64) and images.dtype == torch.float32
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0
    assert joints.shape == (8, 17, 3) and joints.dtype == torch.float32
    images2, joints2 = run()
    assert torch.equal(images, images2) and torch.equal(joints, joints2)
    assert not torch.equal(images[0], images[1])


def test_clip_dataset_with_two_workers() -> None:
    windows = demo_poses.random_windows(3, np.random.default_rng(5), length=30)
    ds = SyntheticClipDataset(windows, "source", size=48, seed=1, clips_per_epoch=2, return_dict=True)
    batches = list(DataLoader(ds, batch_size=1, num_workers=2))
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (1, 30, 3, 48, 48) and b["joints3d"].shape == (1, 30, 17, 3)
    assert b["joints2d"].shape == (1, 30, 17, 2) and b["visible"].dtype == torch.bool


def test_fixed_test_sets_are_deterministic(poses: np.ndarray, photo_folder: Path) -> None:
    a = fixed_test_set(poses, "target", 6, seed=11, size=64, backgrounds=photo_folder)
    b = fixed_test_set(poses, "target", 6, seed=11, size=64, backgrounds=photo_folder)
    assert a["images"].shape == (6, 64, 64, 3) and a["pose_index"].shape == (6,)
    for k in a:
        assert a[k].tobytes() == b[k].tobytes(), k
    windows = demo_poses.random_windows(2, np.random.default_rng(6), length=30)
    c = fixed_test_clips(windows, "source", 2, seed=2, size=32)
    d = fixed_test_clips(windows, "source", 2, seed=2, size=32)
    assert c["images"].shape == (2, 30, 32, 32, 3) and c["images"].tobytes() == d["images"].tobytes()
