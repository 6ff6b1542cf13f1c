"""Relations: exact involutions, pose/image correspondence on projected joints, the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlrd.kinematics import bone_lengths
from nlrd.skeleton import H36M_17
from nlrd.transforms import (
    MOTION_LENGTH,
    RELATIONS,
    azimuth_pose,
    backward,
    ensemble_views,
    flip_image,
    flip_pose,
    get_relation,
    inplane_image,
    inplane_points2d,
    inplane_pose,
    slow_pair,
)


def poses(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    j = rng.normal(size=(n, 17, 3)) * 300.0
    return j - j[:, :1]


def project(joints: np.ndarray, depth: float = 4000.0, f: float = 500.0, size: int = 128) -> np.ndarray:
    """Pinhole projection with the principal point at the image centre ((size-1)/2)."""
    c = (size - 1) / 2.0
    cam = joints + np.array([0.0, 0.0, depth])
    return np.stack([f * cam[..., 0] / cam[..., 2] + c, f * cam[..., 1] / cam[..., 2] + c], axis=-1)


def test_flip_and_backward_are_involutions() -> None:
    y = poses(7)
    np.testing.assert_array_equal(flip_pose(flip_pose(y)), y)
    seq = poses(30).reshape(1, 30, 17, 3)
    np.testing.assert_array_equal(backward(backward(seq)), seq)
    t = torch.from_numpy(y)
    assert torch.equal(flip_pose(flip_pose(t)), t)


def test_flip_swaps_sides_and_keeps_bone_lengths() -> None:
    y = poses(3, seed=1)
    f = flip_pose(y)
    for left, right in H36M_17.left_right_pairs:
        np.testing.assert_allclose(f[:, left, 0], -y[:, right, 0])
        np.testing.assert_allclose(f[:, left, 1:], y[:, right, 1:])
    np.testing.assert_allclose(bone_lengths(f)[:, H36M_17.flip_permutation], bone_lengths(y), atol=1e-9)


def test_rotations_compose_and_preserve_lengths() -> None:
    y = poses(4, seed=2)
    np.testing.assert_allclose(inplane_pose(inplane_pose(y, 20), -20), y, atol=1e-9)
    np.testing.assert_allclose(azimuth_pose(azimuth_pose(y, 100), 260), y, atol=1e-9)
    np.testing.assert_allclose(bone_lengths(inplane_pose(y, 33)), bone_lengths(y), atol=1e-9)


def test_image_flip_matches_pose_flip_on_projected_joints() -> None:
    size = 128
    y = poses(5, seed=3) * 0.5
    p = project(y, size=size)
    pf = project(flip_pose(y), size=size)
    # A horizontal flip maps pixel column u to (W-1) - u; joints swap sides.
    mirrored = p.copy()
    mirrored[..., 0] = (size - 1) - mirrored[..., 0]
    np.testing.assert_allclose(pf, mirrored[:, H36M_17.flip_permutation], atol=1e-6)


@pytest.mark.parametrize("theta", [10.0, 25.0, 50.0, -30.0])
def test_image_rotation_matches_pose_rotation_on_projected_joints(theta: float) -> None:
    size = 128
    y = poses(5, seed=4) * 0.5
    p = project(y, size=size)
    pr = project(inplane_pose(y, theta), size=size)
    c = ((size - 1) / 2.0, (size - 1) / 2.0)
    np.testing.assert_allclose(pr, inplane_points2d(p, theta, c), atol=1e-6)


@pytest.mark.parametrize("theta", [25.0, -40.0])
def test_image_rotation_moves_pixels_like_points(theta: float) -> None:
    """A bright dot moves where inplane_points2d says, for numpy and torch images."""
    size = 65
    img = np.zeros((size, size, 3), np.float32)
    u, v = 45, 20
    img[v - 1 : v + 2, u - 1 : u + 2] = 1.0
    c = ((size - 1) / 2.0, (size - 1) / 2.0)
    exp = inplane_points2d(np.array([u, v], float), theta, c)
    for out in (inplane_image(img, theta), inplane_image(torch.from_numpy(img).permute(2, 0, 1), theta)):
        arr = out.permute(1, 2, 0).numpy() if isinstance(out, torch.Tensor) else out
        w = arr[..., 0]
        vv, uu = np.mgrid[0:size, 0:size]
        centroid = np.array([(w * uu).sum() / w.sum(), (w * vv).sum() / w.sum()])
        np.testing.assert_allclose(centroid, exp, atol=0.6)


def test_flip_image_numpy_and_torch_agree() -> None:
    img = np.random.default_rng(0).random((2, 8, 10, 3)).astype(np.float32)
    a = flip_image(img)
    b = flip_image(torch.from_numpy(img).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(flip_image(a), img)


def test_slow_pair_construction() -> None:
    window = np.arange(60, dtype=float)[:, None, None] * np.ones((60, 17, 3))
    anchor, mid = slow_pair(window)
    assert anchor.shape == mid.shape == (30, 17, 3)
    np.testing.assert_array_equal(anchor[:, 0, 0], np.arange(0, 60, 2))
    np.testing.assert_array_equal(mid[:, 0, 0], np.arange(15, 45))
    with pytest.raises(ValueError, match="60 frames"):
        slow_pair(window[:50])


def test_registry_lists_every_relation_with_both_sides() -> None:
    expected = {"pose-flip", "inplane-10", "inplane-25", "inplane-50", "flip+inplane-50", "flip-backward",
                "slow-backward", "flip+inplane-50-backward"}  # fmt: skip
    assert expected <= set(RELATIONS)
    rng = np.random.default_rng(5)
    for name, rel in RELATIONS.items():
        if rel.order == "pose":
            y = poses(2, seed=6)
            a, c = rel.pose_pair(y)
            assert a.shape == c.shape == y.shape
            img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
            ia, ic = rel.image_pair(img)
            assert ia.shape == ic.shape == img.shape, name
        else:
            seq = poses(rel.window, seed=7)
            a, c = rel.pose_pair(seq)
            assert a.shape == c.shape == (MOTION_LENGTH, 17, 3), name
            clip = rng.integers(0, 255, (rel.window, 16, 16, 3), dtype=np.uint8)
            ca, cc = rel.image_pair(clip)
            assert ca.shape == cc.shape == (MOTION_LENGTH, 16, 16, 3), name
            tclip = torch.from_numpy(clip).permute(0, 3, 1, 2).float()
            ta, tc = rel.image_pair(tclip)
            assert ta.shape == tc.shape == (MOTION_LENGTH, 3, 16, 16), name
    with pytest.raises(ValueError, match="unknown relation"):
        get_relation("teleport")


def test_flip_backward_pose_side_matches_definition() -> None:
    seq = poses(30, seed=8)
    a, c = get_relation("flip-backward").pose_pair(seq)
    np.testing.assert_array_equal(a, seq)
    np.testing.assert_array_equal(c, flip_pose(seq)[::-1])
    a, c = get_relation("slow-backward").pose_pair(poses(60, seed=9))
    assert a.shape == (30, 17, 3)


# ----------------------------------------------------------------------------- relation ensembles
def _centroid_model(images: np.ndarray) -> np.ndarray:
    """A model that obeys every relation exactly: all 17 joints at the image's intensity centroid (x right,
    y down, in pixels from the centre, depth 0), so mirroring or rotating the image moves its pose the
    same way the pose-side maps do."""
    w = images.astype(np.float64).sum(-1)  # (N, H, W)
    h, wd = w.shape[1:]
    ys, xs = np.mgrid[0:h, 0:wd]
    cx = (w * (xs - (wd - 1) / 2)).sum((1, 2)) / w.sum((1, 2))
    cy = (w * (ys - (h - 1) / 2)).sum((1, 2)) / w.sum((1, 2))
    joint = np.stack([cx, cy, np.zeros_like(cx)], -1)
    return np.repeat(joint[:, None], 17, axis=1).astype(np.float32)


def test_ensemble_views_map_each_prediction_back_to_the_original_image() -> None:
    images = np.zeros((2, 64, 64, 3), np.uint8)
    images[0, 14:22, 40:48] = 255  # off-centre blobs: a wrong rotation sign or flip order moves them by pixels
    images[1, 40:46, 16:26] = 200
    views = ensemble_views((10.0, -10.0))
    assert [v[0] for v in views] == ["identity", "flip", "inplane+10", "flip+inplane+10", "inplane-10", "flip+inplane-10"]
    per_view = {name: back(_centroid_model(image_fn(images))) for name, image_fn, back in views}
    plain = per_view["identity"]
    assert np.abs(plain[:, 0, :2]).max() > 10  # the blobs are far enough from the centre to tell the views apart
    for name, pred in per_view.items():
        np.testing.assert_allclose(pred, plain, atol=0.6, err_msg=name)  # bilinear rotation moves a centroid < 1 px
    # Mapping back with the rotation's sign reversed, or the mirror and the rotation swapped, misses by pixels.
    wrong_sign = inplane_pose(_centroid_model(inplane_image(images, 10.0)), 10.0)
    assert np.abs(wrong_sign - plain).max() > 3
    swapped = inplane_pose(flip_pose(_centroid_model(inplane_image(images[:, :, ::-1], 10.0))), -10.0)
    assert np.abs(swapped - plain).max() > 3
    # The same views on torch batches (N, C, H, W), as the adaptation's ensemble term applies them.
    tens = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    for name, image_fn, back in views:
        mapped = image_fn(tens).permute(0, 2, 3, 1).numpy()
        pred = back(torch.from_numpy(_centroid_model(mapped))).numpy()
        np.testing.assert_allclose(pred, plain, atol=0.6, err_msg=f"torch {name}")
