"""Image loading and normalisation: conversions, size limits and every kind of bad input."""

from __future__ import annotations

import struct
import time
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from nlrd.data.images import ABSOLUTE_MAX_PIXELS, MIN_SIDE, as_rgb_uint8, load_image


def _rgb(h: int = 40, w: int = 60, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write(path: Path, rgb_or_any: np.ndarray) -> Path:
    img = rgb_or_any
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    assert cv2.imwrite(str(path), img)
    return path


def _put(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# ----------------------------------------------------------------------------- arrays
def test_rgb_uint8_passes_through_as_a_copy():
    img = _rgb()
    out = as_rgb_uint8(img)
    assert out.dtype == np.uint8 and out.shape == img.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out, img)
    out[0, 0] = 0
    assert not np.shares_memory(out, img)


@pytest.mark.parametrize("shape", [(30, 20), (30, 20, 1)])
def test_grey_becomes_three_equal_channels(shape):
    g = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    out = as_rgb_uint8(g)
    assert out.shape == (30, 20, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g.reshape(30, 20))


def test_rgba_is_composited_on_white():
    img = np.zeros((20, 20, 4), np.uint8)
    img[..., 0] = 200  # red
    img[:10, :, 3] = 255  # opaque top half
    img[10:, :, 3] = 0  # transparent bottom half
    out = as_rgb_uint8(img)
    np.testing.assert_array_equal(out[:10], np.broadcast_to([200, 0, 0], (10, 20, 3)))
    np.testing.assert_array_equal(out[10:], np.full((10, 20, 3), 255))
    img[:, :, 3] = 128  # half transparent: halfway to white
    assert abs(int(as_rgb_uint8(img)[0, 0, 1]) - 127) <= 1


def test_16_bit_is_scaled_to_8_bit():
    img = np.zeros((20, 20, 3), np.uint16)
    img[0, 0] = 65535
    img[0, 1] = 257 * 100
    out = as_rgb_uint8(img)
    assert out.dtype == np.uint8
    assert out[0, 0].tolist() == [255, 255, 255] and out[0, 1].tolist() == [100, 100, 100]


def test_float_in_unit_range_is_scaled():
    img = np.full((20, 20, 3), 0.5, np.float32)
    img[0, 0] = 1.0
    out = as_rgb_uint8(img)
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [128, 128, 128]


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((20, 20, 3), np.nan, np.float32), "NaN"),
        (np.full((20, 20, 3), np.inf, np.float64), "NaN or infinite"),
        (np.full((20, 20, 3), 255.0), r"\[0, 1\]"),
        (np.zeros((20, 20, 3), bool), "boolean"),
        (np.zeros((20, 20, 3), np.complex64), "dtype"),
        (np.zeros((20, 20, 3), object), "dtype"),
        (np.zeros(20, np.uint8), "shape"),
        (np.zeros((2, 20, 20, 3), np.uint8), "shape"),
        (np.zeros((20, 20, 2), np.uint8), "shape"),
        (np.zeros((0, 20, 3), np.uint8), "empty"),
        (np.zeros((1, 1, 3), np.uint8), "at least 16x16"),
        (np.zeros((MIN_SIDE - 1, 64, 3), np.uint8), "at least 16x16"),
        (np.full((20, 20, 3), 300, np.int32), "0..255"),
    ],
)
def test_bad_arrays_raise(bad, message):
    with pytest.raises(ValueError, match=message):
        as_rgb_uint8(bad)


def test_smallest_accepted_size():
    assert as_rgb_uint8(np.zeros((MIN_SIDE, MIN_SIDE, 3), np.uint8)).shape == (MIN_SIDE, MIN_SIDE, 3)


def test_large_arrays_are_downscaled_keeping_aspect():
    out = as_rgb_uint8(np.zeros((400, 800, 3), np.uint8), max_pixels=20_000)
    h, w = out.shape[:2]
    assert h * w <= 20_000 and abs(w / h - 2.0) < 0.05


# ----------------------------------------------------------------------------- files
def test_png_round_trip_and_bytes(tmp_path):
    img = _rgb()
    p = _write(tmp_path / "a.png", img)
    np.testing.assert_array_equal(load_image(p), img)
    np.testing.assert_array_equal(load_image(p.read_bytes()), img)
    np.testing.assert_array_equal(load_image(str(p)), img)


def test_grey_rgba_and_16_bit_png_files(tmp_path):
    grey = np.random.default_rng(2).integers(0, 256, (30, 40), dtype=np.uint8)
    out = load_image(_write(tmp_path / "g.png", grey))
    assert out.shape == (30, 40, 3) and (out[..., 0] == grey).all()

    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 2] = 255
    rgba[:, :20, 3] = 255
    out = load_image(_write(tmp_path / "a.png", rgba))
    assert out[0, 0].tolist() == [0, 0, 255] and out[0, 39].tolist() == [255, 255, 255]

    deep = np.full((30, 40, 3), 257 * 50, np.uint16)
    out = load_image(_write(tmp_path / "d.png", deep))
    assert out.dtype == np.uint8 and (out == 50).all()


def test_jpeg_loads_close_to_original(tmp_path):
    img = cv2.GaussianBlur(_rgb(64, 96), (9, 9), 3)
    p = tmp_path / "a.jpg"
    assert cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    out = load_image(p)
    assert out.shape == img.shape and np.abs(out.astype(int) - img).mean() < 4


def test_large_jpeg_is_decoded_reduced(tmp_path):
    img = cv2.resize(_rgb(50, 60), (1200, 1000), interpolation=cv2.INTER_LINEAR)
    p = tmp_path / "big.jpg"
    assert cv2.imwrite(str(p), img)
    out = load_image(p, max_pixels=100_000)
    # 1/4-scale DCT decoding gives 300 x 250 = 75k pixels, within the budget without a resize
    assert out.shape == (250, 300, 3)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.png", "not found"),
        (lambda d: _put(d / "empty.png", b""), "empty"),
        (lambda d: _put(d / "text.png", b"just some text, not pixels"), "not an image"),
        (lambda d: d, "not a file"),
    ],
)
def test_bad_files_raise_naming_the_file(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=message) as exc:
        load_image(path)
    assert str(path) in str(exc.value)


def test_truncated_and_corrupt_files(tmp_path):
    img = _rgb(64, 64)
    png = _write(tmp_path / "a.png", img).read_bytes()
    jpg_path = tmp_path / "a.jpg"
    assert cv2.imwrite(str(jpg_path), img)
    jpg = jpg_path.read_bytes()
    cases = {
        "cut.png": (png[: len(png) // 2], "truncated PNG"),
        "header_only.png": (png[:20], "truncated or corrupt PNG"),
        "cut.jpg": (jpg[: len(jpg) // 2], "truncated JPEG"),
        "cut_header.jpg": (jpg[:40], "JPEG"),
    }
    bad = bytearray(png)
    bad[60:200] = b"\x07" * 140  # inside the compressed pixel data
    cases["corrupt.png"] = (bytes(bad), "corrupt")
    for name, (data, message) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(ValueError, match=message) as exc:
            load_image(p)
        assert name in str(exc.value)


def test_tiny_image_file_is_refused(tmp_path):
    with pytest.raises(ValueError, match="1x1"):
        load_image(_write(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8)))


def _huge_png(path: Path, side: int) -> Path:
    """A valid side x side 8-bit grey PNG of zeros, a few hundred kB, written in streaming chunks."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    block = row * 500
    parts = []
    for _ in range(side // 500):
        parts.append(comp.compress(block))
    parts.append(comp.compress(row * (side % 500)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(parts)) + _png_chunk(b"IEND", b"")
    )
    return path


def test_huge_png_is_refused_from_its_header_without_decoding(tmp_path):
    p = _huge_png(tmp_path / "huge.png", 20000)
    assert p.stat().st_size < 2_000_000  # a decompression bomb: 400 megapixels in a small file
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="20000x20000") as exc:
        load_image(p)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert "huge.png" in str(exc.value) and "megapixels" in str(exc.value)
    assert elapsed < 2.0 and peak < 64 * 2**20  # never decoded (a decode would need 400 MB+)


def test_jpeg_above_the_absolute_cap_is_refused(tmp_path):
    p = tmp_path / "small.jpg"
    assert cv2.imwrite(str(p), _rgb(32, 32))
    data = bytearray(p.read_bytes())
    sof = data.find(b"\xff\xc0")
    assert sof > 0
    data[sof + 5 : sof + 9] = struct.pack(">HH", 30000, 30000)  # header claims 900 megapixels
    p.write_bytes(bytes(data))
    assert 30000 * 30000 > ABSOLUTE_MAX_PIXELS
    with pytest.raises(ValueError, match="30000x30000"):
        load_image(p)


def test_real_photo_loads(data_root):
    img = load_image(data_root / "media" / "kodak_people" / "18.png")
    assert img.shape == (768, 512, 3) and img.dtype == np.uint8
