"""The square person crop: geometry, pixel content, affine round trips."""

from __future__ import annotations

import numpy as np
import pytest

from nlrd.data.crop import apply_affine, crop_clip, crop_square, invert_affine, square_box, uncrop_points


def test_square_box():
    cx, cy, side = square_box((10, 20, 50, 120), margin=1.25)
    assert (cx, cy, side) == (30.0, 70.0, 125.0)
    cx, cy, side = square_box(np.array([[0, 0, 10, 4], [0, 0, 2, 8]]), margin=1.0)
    np.testing.assert_allclose(cx, [5, 1])
    np.testing.assert_allclose(side, [10, 8])


@pytest.mark.parametrize("box", [(0, 0, np.nan, 10), (5, 0, 5, 10), (0, 10, 5, 2), (0, 0, 1)])
def test_bad_boxes(box):
    with pytest.raises(ValueError):
        square_box(box)
    with pytest.raises(ValueError):
        square_box((0, 0, 10, 10), margin=0)


def test_crop_contains_the_expected_pixels():
    img = np.zeros((400, 600, 3), np.uint8)
    img[:] = (0, 0, 255)  # blue background
    img[100:300, 200:260] = (255, 0, 0)  # red person: pixels 200..259 x 100..299
    box = (199.5, 99.5, 259.5, 299.5)  # its exact extent (pixel centres at integers)
    cx, cy, side = square_box(box, margin=1.25)
    crop, affine = crop_square(img, cx, cy, side, size=128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    # the box maps to a 102.4 px tall, centred region: rows 12.8 .. 115.2
    corners = apply_affine(np.array([[box[0], box[1]], [box[2], box[3]]]), affine)
    np.testing.assert_allclose(corners, [[63.5 - 15.36, 63.5 - 51.2], [63.5 + 15.36, 63.5 + 51.2]], atol=1e-9)
    assert (crop[20:108, 52:76] == (255, 0, 0)).all()  # inside the person
    assert (crop[20:108, :40] == (0, 0, 255)).all()  # background beside it
    assert crop[3, 64, 2] > 200 and crop[124, 64, 2] > 200  # above and below (inside the image)


def test_outside_the_image_is_black():
    img = np.full((100, 100, 3), 200, np.uint8)
    crop, _ = crop_square(img, cx=0.0, cy=50.0, side=100.0, size=64)
    # columns left of x = -0.5 are black, inside the image grey (the last row reaches y = 99.2: half black)
    assert (crop[:, :31] == 0).all() and (crop[:62, 33:] == 200).all()
    far, _ = crop_square(img, cx=5000.0, cy=5000.0, side=50.0, size=32)
    assert (far == 0).all()


@pytest.mark.parametrize("side", [50.0, 900.0])  # upsampling, and the area-prefiltered downsampling path
def test_a_bright_dot_lands_where_the_affine_says(side):
    img = np.zeros((1000, 1000, 3), np.uint8)
    dot = np.array([430.0, 470.0])
    r = max(1, int(side / 128))  # a dot at least one crop pixel wide
    img[int(dot[1]) - r : int(dot[1]) + r + 1, int(dot[0]) - r : int(dot[0]) + r + 1] = 255
    crop, affine = crop_square(img, 440.0, 460.0, side, size=128)
    w = crop[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:128, 0:128]
    centroid = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
    np.testing.assert_allclose(centroid, apply_affine(dot, affine), atol=0.6)


def test_round_trip_of_points():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-20, 150, (17, 2))
    _, affine = crop_square(np.zeros((300, 300, 3), np.uint8), 123.4, 88.8, 210.0, size=128)
    back = uncrop_points(pts, affine)
    np.testing.assert_allclose(apply_affine(back, affine), pts, atol=1e-9)
    np.testing.assert_allclose(invert_affine(invert_affine(affine)), affine, atol=1e-12)


def test_crop_clip_matches_single_crops():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 90, 120, 3), dtype=np.uint8)
    boxes = np.array([[10, 10, 50, 80], [20, 5, 60, 85], [0, 0, 120, 90], [100, 60, 130, 100]], float)
    crops, affines = crop_clip(frames, boxes, size=32)
    assert crops.shape == (4, 32, 32, 3) and affines.shape == (4, 2, 3)
    for t in range(4):
        c, a = crop_square(frames[t], *square_box(boxes[t]), size=32)
        np.testing.assert_array_equal(crops[t], c)
        np.testing.assert_allclose(affines[t], a)
    pts = rng.uniform(0, 32, (4, 17, 2))
    img_pts = uncrop_points(pts, affines)  # batched affines
    for t in range(4):
        np.testing.assert_allclose(img_pts[t], uncrop_points(pts[t], affines[t]))
    with pytest.raises(ValueError):
        crop_clip(frames, boxes[:3])
