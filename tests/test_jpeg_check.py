"""The JPEG scan walker: every valid layout OpenCV writes passes, corrupt or missing scan data is refused.

A false alarm here would refuse a user's good photo, so the valid side is tested widely: chroma
subsampling 4:2:0 / 4:2:2 / 4:4:4 / 4:1:1, grey, restart intervals, odd sizes, qualities 5..100,
progressive files (not walked) and the real Kodak photos re-encoded.
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from nlrd.data.images import load_image
from nlrd.data.jpeg_check import check_jpeg_scan


def _photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A textured BGR image: gradients plus noise, so every block has AC coefficients."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x * y) % 256], axis=-1).astype(np.int16)
    img += rng.integers(-40, 40, img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, *params: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, list(params))
    assert ok
    return buf.tobytes()


SAMPLING = {
    "420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
    "422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422,
    "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    "411": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_411,
}


@pytest.mark.parametrize("size", [(96, 128), (17, 33), (480, 640), (1, 1), (203, 157)])
@pytest.mark.parametrize("sampling", sorted(SAMPLING))
def test_valid_colour_jpegs_pass(size: tuple[int, int], sampling: str) -> None:
    data = _jpeg(_photo(*size), cv2.IMWRITE_JPEG_SAMPLING_FACTOR, SAMPLING[sampling])
    check_jpeg_scan(data, "x.jpg")


@pytest.mark.parametrize("quality", [5, 30, 75, 95, 100])
def test_valid_qualities_grey_and_restart_intervals_pass(quality: int) -> None:
    img = _photo(120, 200, seed=quality)
    check_jpeg_scan(_jpeg(img, cv2.IMWRITE_JPEG_QUALITY, quality), "q.jpg")
    check_jpeg_scan(_jpeg(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.IMWRITE_JPEG_QUALITY, quality), "grey.jpg")
    for interval in (1, 3, 17):
        data = _jpeg(img, cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_RST_INTERVAL, interval)
        assert b"\xff\xdd" in data  # the file really has a DRI segment
        check_jpeg_scan(data, "rst.jpg")


def test_flat_and_progressive_images_pass() -> None:
    check_jpeg_scan(_jpeg(np.zeros((64, 64, 3), np.uint8)), "black.jpg")
    check_jpeg_scan(_jpeg(np.full((64, 64, 3), 255, np.uint8)), "white.jpg")
    progressive = _jpeg(_photo(64, 80), cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert b"\xff\xc2" in progressive
    check_jpeg_scan(progressive, "progressive.jpg")


def test_real_photos_re_encoded_pass(data_root: Path) -> None:
    photos = sorted((data_root / "backgrounds").rglob("*.png"))[:8] + sorted((data_root / "media").rglob("*.png"))[:4]
    assert photos, "no photos in the data folder"
    for path in photos:
        img = cv2.imread(str(path))
        for sampling in ("420", "444"):
            data = _jpeg(img, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, SAMPLING[sampling], cv2.IMWRITE_JPEG_QUALITY, 90)
            check_jpeg_scan(data, path.name)
            assert load_image(data).shape[:2] == img.shape[:2]


def _scan_bounds(data: bytes) -> tuple[int, int]:
    sos = data.find(b"\xff\xda")
    start = sos + 2 + struct.unpack(">H", data[sos + 2 : sos + 4])[0]
    return start, data.rfind(b"\xff\xd9")


def test_garbage_scan_data_is_refused() -> None:
    data = _jpeg(_photo(96, 128))
    start, end = _scan_bounds(data)
    rng = np.random.default_rng(0)
    for _ in range(20):
        noise = rng.integers(0, 255, end - start, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
        with pytest.raises(ValueError, match="noise.jpg: corrupt"):
            check_jpeg_scan(data[:start] + noise + data[end:], "noise.jpg")


def test_missing_or_cut_scan_data_is_refused() -> None:
    data = _jpeg(_photo(96, 128))
    start, end = _scan_bounds(data)
    with pytest.raises(ValueError, match="ends before the last block"):
        check_jpeg_scan(data[:start] + data[end:], "empty.jpg")
    with pytest.raises(ValueError, match="ends before the last block"):
        check_jpeg_scan(data[: start + (end - start) // 2] + b"\xff\xd9", "half.jpg")


def test_missing_restart_marker_is_refused() -> None:
    data = _jpeg(_photo(64, 64), cv2.IMWRITE_JPEG_RST_INTERVAL, 2)
    start, end = _scan_bounds(data)
    scan = data[start:end]
    i = next(k for k in range(len(scan) - 1) if scan[k] == 0xFF and 0xD0 <= scan[k + 1] <= 0xD7)
    broken = data[:start] + scan[:i] + scan[i + 2 :] + data[end:]
    with pytest.raises(ValueError, match="corrupt"):
        check_jpeg_scan(broken, "rst.jpg")
    # Fill bytes (0xFF) may precede any marker: still valid.
    check_jpeg_scan(data[:start] + scan[:i] + b"\xff\xff" + scan[i:] + data[end:], "fill.jpg")


def test_load_image_refuses_a_corrupt_scan_and_keeps_good_files() -> None:
    data = _jpeg(_photo(96, 128))
    assert load_image(data).shape == (96, 128, 3)
    start, end = _scan_bounds(data)
    with pytest.raises(ValueError, match="image bytes: corrupt"):
        load_image(data[:start] + bytes(end - start) + data[end:])
