"""Robustness: a corpus of bad inputs through the public API, each refused with a clear error, never a crash.

Every input is generated here (in pytest's temporary folders): broken image and video files,
odd arrays, bad boxes and clips, bad prior inputs, damaged checkpoints, and a few runs of the
command line. "Clear" means a ``ValueError`` (the documented exception of every loader and of the
predictor) whose message matches the case's pattern: it names the problem and, for files, the
file. Inputs the documentation promises to convert (grey, 16-bit, RGBA, float images; a garbage
JSON sidecar next to a good checkpoint) must work instead.

Cases that currently crash or pass silently are marked ``xfail(strict=True)`` with the reason and
the function that should handle them, so that fixing one turns its test into an unexpected pass.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import resource
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save as st_save

from nlrd.checkpoint import Checkpoint, load_checkpoint, sidecar_path
from nlrd.data.images import load_image
from nlrd.inference import PosePredictor
from nlrd.priors import CHECKPOINT_DIR, MOTION_CHECKPOINT, POSE_CHECKPOINT, PosePrior

POSE_CKPT = CHECKPOINT_DIR / POSE_CHECKPOINT
MOTION_CKPT = CHECKPOINT_DIR / MOTION_CHECKPOINT
pytestmark = pytest.mark.skipif(not POSE_CKPT.is_file(), reason="shipped checkpoints not found")


def xfail(reason: str) -> pytest.MarkDecorator:
    """A known failure: strict, so the test reports when the owner fixes it."""
    return pytest.mark.xfail(strict=True, reason=reason)


# ----------------------------------------------------------------------------- shared inputs
def photo(h: int = 96, w: int = 128) -> np.ndarray:
    """A deterministic uint8 (h, w, 3) RGB picture: a bright figure-like block on a gradient."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], axis=-1).astype(np.uint8)
    img[h // 6 : h - h // 6, w // 3 : w - w // 3] = (230, 200, 180)
    return img


def encode(img: np.ndarray, ext: str) -> bytes:
    """Image bytes in a format (".png", ".jpg"); RGB(A) input, written as OpenCV's BGR(A)."""
    if img.ndim == 3 and img.shape[2] == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims width x height (8-bit RGB); its pixels are never there."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def jpeg_with_size(width: int, height: int, *, empty_scan: bool = False) -> bytes:
    """A real JPEG whose frame header is rewritten to claim width x height (optionally with no scan data)."""
    data = bytearray(encode(photo(), ".jpg"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    if empty_scan:
        sos = data.find(b"\xff\xda")
        seg = struct.unpack(">H", data[sos + 2 : sos + 4])[0]
        data = data[: sos + 2 + seg] + b"\xff\xd9"
    return bytes(data)


def jpeg_garbage_scan() -> bytes:
    """A JPEG whose entropy-coded data is random bytes (headers and end marker intact)."""
    data = encode(photo(), ".jpg")
    sos = data.find(b"\xff\xda")
    seg = struct.unpack(">H", data[sos + 2 : sos + 4])[0]
    noise = np.random.default_rng(0).integers(0, 255, 3000, dtype=np.uint8).tobytes().replace(b"\xff", b"\x00")
    return data[: sos + 2 + seg] + noise + b"\xff\xd9"


def png_corrupt_idat() -> bytes:
    data = bytearray(encode(photo(), ".png"))
    i = data.find(b"IDAT")
    for k in range(i + 10, i + 80):
        data[k] ^= 0x5A
    return bytes(data)


def write_mp4(path: Path, frames: int = 12, h: int = 64, w: int = 80) -> Path:
    """A small real MP4 (mp4v) of a moving block."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (w, h))
    assert writer.isOpened(), "OpenCV cannot write MP4 here"
    for i in range(frames):
        f = np.full((h, w, 3), 40, np.uint8)
        f[h // 6 : h - h // 6, (i % 20) + 5 : (i % 20) + 5 + w // 4] = 220
        writer.write(f)
    writer.release()
    return path


def mp4_boxes(data: bytes) -> dict[bytes, tuple[int, int]]:
    """Top-level ISO-BMFF boxes of an MP4: kind -> (offset, size)."""
    out, pos = {}, 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        out[kind] = (pos, size)
        pos += max(size, 8)
    return out


def scramble(data: bytes, start: int, stop: int, seed: int = 1) -> bytes:
    b = bytearray(data)
    b[start:stop] = np.random.default_rng(seed).integers(0, 256, stop - start, dtype=np.uint8).tobytes()
    return bytes(b)


@pytest.fixture(scope="module")
def predictor() -> PosePredictor:
    """The shipped model, loaded once for the module."""
    return PosePredictor.from_pretrained(device="cpu", num_threads=1)


@pytest.fixture(scope="module")
def good_mp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_mp4(tmp_path_factory.mktemp("video") / "good.mp4").read_bytes()


@pytest.fixture(scope="module")
def pose_ckpt() -> Checkpoint:
    return load_checkpoint(POSE_CKPT)


# ----------------------------------------------------------------------------- image files
def _put(name: str, data: bytes | Callable[[], bytes]) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data() if callable(data) else data)
        return path

    return make


def _cut(data: bytes, fraction: float) -> bytes:
    """The first ``fraction`` of a file, as an interrupted download leaves it."""
    return data[: int(len(data) * fraction)]


def _dir(tmp: Path) -> Path:
    (tmp / "folder.jpg").mkdir()
    return tmp / "folder.jpg"


IMAGE_FILES = [
    pytest.param(_put("cut.jpg", lambda: _cut(encode(photo(), ".jpg"), 0.8)), "truncated JPEG", id="jpeg-truncated"),
    pytest.param(_put("head.jpg", lambda: encode(photo(), ".jpg")[:20]), "JPEG", id="jpeg-header-only"),
    pytest.param(_put("noise.jpg", jpeg_garbage_scan), "corrupt", id="jpeg-corrupt-scan-data"),
    pytest.param(_put("cut.png", lambda: _cut(encode(photo(), ".png"), 0.5)), "truncated PNG", id="png-truncated"),
    pytest.param(_put("bad.png", png_corrupt_idat), "corrupt", id="png-corrupt-idat"),
    pytest.param(_put("bomb.png", lambda: png_header_only(20000, 20000)), r"20000x20000.*megapixels",
                 id="png-header-20000x20000"),
    pytest.param(_put("bomb.jpg", lambda: jpeg_with_size(30000, 30000)), r"30000x30000.*megapixels",
                 id="jpeg-header-30000x30000"),
    pytest.param(_put("empty_scan.jpg", lambda: jpeg_with_size(15000, 15000, empty_scan=True)), "corrupt|truncated|no image data",
                 id="jpeg-15000px-no-scan-data"),
    pytest.param(_put("zero.png", lambda: png_header_only(0, 100)), "0x100", id="png-header-zero-width"),
    pytest.param(_put("dot.png", lambda: encode(np.zeros((1, 1, 3), np.uint8), ".png")), "1x1 pixels", id="png-1x1"),
    pytest.param(_put("strip.png", lambda: encode(np.zeros((4, 300, 3), np.uint8), ".png")), "at least 16x16", id="png-300x4"),
    pytest.param(_put("notes.jpg", b"this is a text file, not a photo\n" * 20), "not an image", id="text-named-jpg"),
    pytest.param(_put("notes.png", b"plain text\n" * 5), "not an image", id="text-named-png"),
    pytest.param(_put("empty.jpg", b""), "empty file", id="zero-byte-jpg"),
    pytest.param(_put("empty.png", b""), "empty file", id="zero-byte-png"),
    pytest.param(_put("noise.png", lambda: np.random.default_rng(2).integers(0, 256, 4096, np.uint8).tobytes()),
                 "not an image", id="random-bytes-png"),
    pytest.param(_put("clip.jpg", b"\0\0\0\x1cftypisom" + b"\0" * 64), "not an image", id="mp4-named-jpg"),
    pytest.param(lambda tmp: tmp / "missing.jpg", "file not found", id="missing-file"),
    pytest.param(_dir, "not a file", id="directory-named-jpg"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "match"), IMAGE_FILES)
def test_bad_image_file_is_refused(tmp_path: Path, make: Callable[[Path], Path], match: str) -> None:
    path = make(tmp_path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ValueError, match=match) as err:
        load_image(path)
    assert path.name in str(err.value), "the message should name the file"
    # Header-only bombs must be refused before their pixels exist (20000^2 RGB would be 1.2 GB).
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300_000


@pytest.mark.parametrize(
    ("name", "img", "ext"),
    [
        pytest.param("grey.png", photo()[..., 0], ".png", id="grey-png"),
        pytest.param("grey.jpg", photo()[..., 0], ".jpg", id="grey-jpg"),
        pytest.param("deep.png", photo().astype(np.uint16) * 257, ".png", id="16-bit-png"),
        pytest.param("alpha.png", np.dstack([photo(), np.full(photo().shape[:2], 128, np.uint8)]), ".png", id="rgba-png"),
    ],
)
def test_convertible_image_files_load(tmp_path: Path, name: str, img: np.ndarray, ext: str) -> None:
    path = tmp_path / name
    path.write_bytes(encode(img, ext))
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (*img.shape[:2], 3)


# ----------------------------------------------------------------------------- video files
def _video(name: str, build: Callable[[bytes], bytes]) -> Callable[[Path, bytes], Path]:
    def make(tmp: Path, good: bytes) -> Path:
        path = tmp / name
        path.write_bytes(build(good))
        return path

    return make


def _tiny_video(tmp: Path, good: bytes) -> Path:
    return write_mp4(tmp / "tiny.mp4", frames=4, h=8, w=8)


def _cut_mdat(good: bytes) -> bytes:
    start, size = mp4_boxes(good)[b"mdat"]
    return good[: start + size // 2]


def _garbage_mdat(good: bytes) -> bytes:
    start, size = mp4_boxes(good)[b"mdat"]
    return scramble(good, start + 8, start + size)


def _garbage_moov(good: bytes) -> bytes:
    start, size = mp4_boxes(good)[b"moov"]
    return scramble(good, start + 8, start + min(size, 300))


def _no_moov(good: bytes) -> bytes:
    return good[: mp4_boxes(good)[b"mdat"][0]]


VIDEO_FILES = [
    pytest.param(_video("cut.mp4", lambda g: g[: len(g) // 2]), "truncated MP4", id="mp4-truncated-half"),
    pytest.param(_video("cut_mdat.mp4", _cut_mdat), "truncated MP4", id="mp4-cut-inside-mdat"),
    pytest.param(_video("no_index.mp4", _no_moov), "no 'moov' box", id="mp4-without-moov"),
    pytest.param(_video("garbage_frames.mp4", _garbage_mdat), "no decodable video frame", id="mp4-garbage-frame-data"),
    pytest.param(_video("garbage_index.mp4", _garbage_moov), "cannot open as a video|corrupt", id="mp4-garbage-index"),
    pytest.param(_video("notes.mp4", lambda g: b"not a video at all\n" * 10), "not an MP4", id="text-named-mp4"),
    pytest.param(_video("picture.mp4", lambda g: encode(photo(), ".png")), "not an MP4", id="png-named-mp4"),
    pytest.param(_video("empty.mp4", lambda g: b""), "empty file", id="zero-byte-mp4"),
    pytest.param(_video("notes.avi", lambda g: b"hello " * 50), "cannot open as a video", id="text-named-avi"),
    pytest.param(_tiny_video, "8x8.*at least 16x16", id="mp4-8x8-frames"),
    pytest.param(lambda tmp, good: tmp / "missing.mp4", "not found", id="missing-mp4"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "match"), VIDEO_FILES)
def test_bad_video_file_is_refused(tmp_path: Path, predictor: PosePredictor, good_mp4: bytes,
                                   make: Callable[[Path, bytes], Path], match: str) -> None:  # fmt: skip
    path = make(tmp_path, good_mp4)
    with pytest.raises(ValueError, match=match) as err:
        predictor.predict_clip(path)
    assert path.name in str(err.value), "the message should name the file"


def test_good_video_still_works(tmp_path: Path, predictor: PosePredictor, good_mp4: bytes) -> None:
    """The control: the file the broken ones are made from predicts."""
    path = tmp_path / "good.mp4"
    path.write_bytes(good_mp4)
    res = predictor.predict_clip(path)
    assert res.joints3d.shape == (12, 17, 3) and np.isfinite(res.joints3d).all()


# ----------------------------------------------------------------------------- image arrays
def _nan_image() -> np.ndarray:
    f = photo().astype(np.float32) / 255
    f[5, 5, 1] = np.nan
    return f


def _inf_image() -> np.ndarray:
    f = photo().astype(np.float64) / 255
    f[0, 0, 0] = np.inf
    return f


IMAGE_ARRAYS = [
    pytest.param(_nan_image, "NaN or infinite", id="float-with-nan"),
    pytest.param(_inf_image, "NaN or infinite", id="float-with-inf"),
    pytest.param(lambda: photo().astype(np.float32), r"must lie in \[0, 1\]", id="float-0-255"),
    pytest.param(lambda: np.zeros((1, 1, 3), np.uint8), "1x1 pixels", id="1x1-array"),
    pytest.param(lambda: np.zeros((0, 0, 3), np.uint8), "empty image", id="empty-array"),
    pytest.param(lambda: np.zeros((32, 32, 2), np.uint8), "got shape", id="two-channels"),
    pytest.param(lambda: np.zeros((2, 32, 32, 3), np.uint8), "got shape", id="batch-of-images"),
    pytest.param(lambda: np.zeros(100, np.uint8), "got shape", id="one-dimensional"),
    pytest.param(lambda: np.ones((32, 32, 3), bool), "boolean", id="bool-mask"),
    pytest.param(lambda: np.zeros((32, 32, 3), complex), "unsupported dtype", id="complex"),
    pytest.param(lambda: None, "unsupported dtype", id="none"),
    pytest.param(lambda: "photo.jpg", "unsupported dtype", id="path-string-instead-of-array"),
    pytest.param(lambda: np.full((32, 32, 3), 1000, np.int32), "0..255", id="int32-above-255"),
    pytest.param(lambda: [[1, 2, 3], [4, 5]], "image", id="ragged-nested-list"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "match"), IMAGE_ARRAYS)
def test_bad_image_array_is_refused(predictor: PosePredictor, make: Callable[[], Any], match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        predictor.predict_image(make())
    assert "image" in str(err.value)


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: photo()[..., 0], id="grey-HxW"),
        pytest.param(lambda: photo()[..., :1], id="grey-HxWx1"),
        pytest.param(lambda: photo().astype(np.uint16) * 257, id="16-bit"),
        pytest.param(lambda: np.dstack([photo(), np.full(photo().shape[:2], 200, np.uint8)]), id="rgba"),
        pytest.param(lambda: photo().astype(np.float32) / 255, id="float-0-1"),
        pytest.param(lambda: photo().astype(np.int64), id="int64-in-0-255"),
        pytest.param(lambda: np.zeros((16, 16, 3), np.uint8), id="smallest-16x16"),
    ],
)
def test_convertible_image_array_predicts(predictor: PosePredictor, make: Callable[[], np.ndarray]) -> None:
    res = predictor.predict_image(make())
    assert res.joints3d.shape == (1, 17, 3) and np.isfinite(res.joints3d).all()


# ----------------------------------------------------------------------------- boxes
BAD_BOXES = [
    pytest.param([np.nan, 0, 50, 50], "NaN or infinite", id="nan"),
    pytest.param([0, 0, np.inf, 50], "NaN or infinite", id="inf"),
    pytest.param([60, 60, 10, 10], "x1 > x0", id="negative-area"),
    pytest.param([20, 10, 20, 80], "x1 > x0", id="zero-width"),
    pytest.param([20, 30, 80, 30], "y1 > y0", id="zero-height"),
    pytest.param([500, 500, 600, 700], "outside", id="outside-bottom-right"),
    pytest.param([-100, -100, -20, -20], "outside", id="negative-coordinates-outside"),
    pytest.param([1, 2, 3], "4 numbers", id="three-numbers"),
    pytest.param([[0, 0], [10, 10]], "4 numbers", id="nested-pairs"),
    pytest.param("0,0,10,10", "4 numbers", id="string"),
    pytest.param(["a", "b", "c", "d"], "4 numbers", id="words"),
    pytest.param(5, "4 numbers", id="scalar"),
]


@pytest.mark.parametrize(("box", "match"), BAD_BOXES)
def test_bad_box_is_refused(predictor: PosePredictor, box: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        predictor.predict_image(photo(), box=box)
    assert "box" in str(err.value)


@pytest.mark.parametrize(("box", "match"), [pytest.param([0, 0, np.nan, 5], "NaN", id="nan"),
                                            pytest.param([900, 900, 990, 990], "outside", id="outside")])  # fmt: skip
def test_bad_box_for_a_clip_is_refused(predictor: PosePredictor, box: list[float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        predictor.predict_clip(np.stack([photo()] * 2), box=box)


def test_box_partly_outside_is_clipped(predictor: PosePredictor) -> None:
    res = predictor.predict_image(photo(), box=[-20, -10, 70, 200])
    assert np.isfinite(res.joints3d).all() and res.valid[0]


# ----------------------------------------------------------------------------- clips
BAD_CLIPS = [
    pytest.param(lambda: ([photo(), photo(80, 128)], {}), "differ in size", id="frames-of-mixed-sizes"),
    pytest.param(lambda: ([photo(), photo()[..., 0], photo(64, 64)], {}), "differ in size", id="mixed-sizes-and-grey"),
    pytest.param(lambda: ([], {}), "no frames", id="empty-list"),
    pytest.param(lambda: (np.zeros((0, 64, 64, 3), np.uint8), {}), "no frames", id="empty-array"),
    pytest.param(lambda: (np.zeros((5, 64, 64), np.uint8), {}), r"expected \(T, H, W, 3\)", id="grey-THW-array"),
    pytest.param(lambda: (np.full((3, 32, 32, 3), np.nan, np.float32), {}), "NaN", id="nan-frames"),
    pytest.param(lambda: ([photo(), photo().astype(np.float32)], {}), r"frames\[1\].*\[0, 1\]", id="second-frame-float-0-255"),
    pytest.param(lambda: ([np.zeros((4, 4, 3), np.uint8)] * 3, {}), "at least 16x16", id="4x4-frames"),
    pytest.param(lambda: (np.stack([photo()] * 2), {"fps": -5}), "fps", id="negative-fps"),
    pytest.param(lambda: (np.stack([photo()] * 2), {"fps": float("nan")}), "fps", id="nan-fps"),
    pytest.param(lambda: (np.stack([photo()] * 2), {"fps": 0}), "fps", id="zero-fps"),
    pytest.param(lambda: (np.stack([photo()] * 3), {"detect_every": 0}), "detect_every", id="detect-every-zero"),
    pytest.param(lambda: (5, {}), "frames", id="integer-instead-of-frames"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "match"), BAD_CLIPS)
def test_bad_clip_is_refused(predictor: PosePredictor, make: Callable[[], tuple[Any, dict[str, Any]]], match: str) -> None:
    frames, kwargs = make()
    with pytest.raises(ValueError, match=match):
        predictor.predict_clip(frames, **kwargs)


def test_bad_max_side_for_a_video_is_refused(tmp_path: Path, predictor: PosePredictor, good_mp4: bytes) -> None:
    path = tmp_path / "good.mp4"
    path.write_bytes(good_mp4)
    with pytest.raises(ValueError, match="max_side"):
        predictor.predict_clip(path, max_side=4)


# ----------------------------------------------------------------------------- priors
def _joints() -> np.ndarray:
    j = np.random.default_rng(0).normal(0, 150, (17, 3)).astype(np.float32)
    return j - j[:1]


def _with(value: float, shape: tuple[int, ...], at: tuple[int, ...]) -> np.ndarray:
    """A valid input (a random pose for (17, 3), zeros otherwise) with one entry replaced by ``value``."""
    a = _joints() if shape == (17, 3) else np.zeros(shape, np.float32)
    a[at] = value
    return a


PRIOR_CASES = [
    pytest.param("pose", "encode", lambda: _with(np.nan, (17, 3), (4, 1)), "PosePrior.encode.*NaN", id="pose-encode-nan"),
    pytest.param("pose", "encode", lambda: torch.full((2, 17, 3), float("inf")), "PosePrior.encode.*NaN or infinite",
                 id="pose-encode-inf-tensor"),
    pytest.param("pose", "encode", lambda: np.zeros((16, 3)), r"PosePrior.encode.*\(16, 3\)", id="pose-encode-16-joints"),
    pytest.param("pose", "encode", lambda: np.zeros((17, 2)), r"PosePrior.encode.*\(17, 2\)", id="pose-encode-2d-joints"),
    pytest.param("pose", "encode", lambda: 3.0, "PosePrior.encode.*expected shape", id="pose-encode-scalar"),
    pytest.param("pose", "encode", lambda: None, "PosePrior.encode", id="pose-encode-none"),
    pytest.param("pose", "encode", lambda: "joints.npy", "PosePrior.encode", id="pose-encode-string"),
    pytest.param("pose", "encode", lambda: np.zeros((0, 17, 3), np.float32), "PosePrior.encode", id="pose-encode-empty-batch"),
    pytest.param("pose", "decode", lambda: np.zeros(31), r"PosePrior.decode.*\(\.\.\., 32\)", id="pose-decode-31-dims"),
    pytest.param("pose", "decode", lambda: np.full((3, 32), np.inf), "PosePrior.decode.*NaN or infinite", id="pose-decode-inf"),
    pytest.param("pose", "decode", lambda: _with(np.nan, (32,), (3,)), "PosePrior.decode.*NaN", id="pose-decode-nan"),
    pytest.param("motion", "encode", lambda: np.zeros((29, 17, 3)), r"MotionPrior.encode.*\(29, 17, 3\)",
                 id="motion-encode-29-frames"),
    pytest.param("motion", "encode", lambda: np.zeros((2, 31, 17, 3)), "MotionPrior.encode", id="motion-encode-31-frames"),
    pytest.param("motion", "encode", lambda: np.full((30, 17, 3), np.nan), "MotionPrior.encode.*NaN", id="motion-encode-nan"),
    pytest.param("motion", "encode_latents", lambda: np.zeros((30, 31)), "MotionPrior.encode_latents",
                 id="motion-latents-31-dims"),
    pytest.param("motion", "decode", lambda: np.zeros(127), r"MotionPrior.decode.*128", id="motion-decode-127-dims"),
    pytest.param("pose", "sample", lambda: -1, "n must be >= 0", id="pose-sample-negative"),
]  # fmt: skip


@pytest.mark.parametrize(("prior", "method", "make", "match"), PRIOR_CASES)
def test_bad_prior_input_is_refused(predictor: PosePredictor, prior: str, method: str, make: Callable[[], Any],
                                    match: str) -> None:  # fmt: skip
    obj = predictor.pose if prior == "pose" else predictor.motion
    assert obj is not None, "the shipped motion prior is missing"
    with pytest.raises(ValueError, match=match):
        getattr(obj, method)(make())


# ----------------------------------------------------------------------------- checkpoints
def _save(path: Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any] | None) -> Path:
    """A safetensors file with the given tensors and (when given) "nlrd" metadata, bypassing save_checkpoint's checks."""
    metadata = {"nlrd": json.dumps(meta)} if meta is not None else None
    path.write_bytes(st_save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))
    return path


def _edit(tensors: Callable[[dict[str, torch.Tensor]], None] | None = None,
          meta: Callable[[dict[str, Any]], None] | None = None) -> Callable[[Path, Checkpoint], Path]:  # fmt: skip
    """A builder: the shipped pose checkpoint with its tensors and / or metadata edited in place."""

    def make(tmp: Path, ck: Checkpoint) -> Path:
        t, m = dict(ck.tensors), json.loads(json.dumps(ck.meta))
        if tensors is not None:
            tensors(t)
        if meta is not None:
            meta(m)
        return _save(tmp / "pose_aae.safetensors", t, m)

    return make


def _bytes(data: Callable[[], bytes]) -> Callable[[Path, Checkpoint], Path]:
    def make(tmp: Path, ck: Checkpoint) -> Path:
        path = tmp / "pose_aae.safetensors"
        path.write_bytes(data())
        return path

    return make


def _drop_first_decoder_tensor(t: dict[str, torch.Tensor]) -> None:
    del t[next(k for k in t if k.startswith("decoder."))]


def _shrink_first_weight(t: dict[str, torch.Tensor]) -> None:
    k = next(k for k in t if k.endswith(".weight"))
    t[k] = torch.zeros(3, 3)


def _only_unrelated_tensor(t: dict[str, torch.Tensor]) -> None:
    t.clear()
    t["x"] = torch.zeros(1)


def _torch_save_zip(tmp: Path, ck: Checkpoint) -> Path:
    torch.save(ck.tensors, tmp / "pose_aae.safetensors")
    return tmp / "pose_aae.safetensors"


def _no_metadata(tmp: Path, ck: Checkpoint) -> Path:
    return _save(tmp / "pose_aae.safetensors", dict(ck.tensors), None)


def _metadata_not_json(tmp: Path, ck: Checkpoint) -> Path:
    path = tmp / "pose_aae.safetensors"
    path.write_bytes(st_save({"a": torch.zeros(2)}, metadata={"nlrd": "{format_version: 1"}))
    return path


def _sidecar_as_checkpoint(tmp: Path, ck: Checkpoint) -> Path:
    path = tmp / "pose_aae.safetensors"
    shutil.copyfile(sidecar_path(POSE_CKPT), path)
    return path


def _header_past_end(tmp: Path, ck: Checkpoint) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]},
                         "__metadata__": {"nlrd": json.dumps(ck.meta)}}).encode()  # fmt: skip
    path = tmp / "pose_aae.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    return path


def _other_stage(tmp: Path, ck: Checkpoint) -> Path:
    return Path(shutil.copyfile(MOTION_CKPT, tmp / "pose_aae.safetensors"))


CHECKPOINTS = [
    pytest.param(_edit(tensors=_drop_first_decoder_tensor), "{name}.*missing key", id="missing-tensor"),
    pytest.param(_edit(tensors=_shrink_first_weight), r"{name}.*shape mismatch.*\(3, 3\)", id="wrong-shaped-tensor"),
    pytest.param(_edit(tensors=lambda t: t.update({"encoder.extra.weight": torch.zeros(2)})), "{name}.*unexpected key",
                 id="unexpected-tensor"),
    pytest.param(_edit(tensors=_only_unrelated_tensor), "{name}.*no tensors under this prefix", id="no-model-tensors"),
    pytest.param(_edit(meta=lambda m: m.update(format_version=99)), "{name}.*format_version 99 is newer", id="format-version-99"),
    pytest.param(_edit(meta=lambda m: m.update(format_version="1")), "{name}.*unknown checkpoint format_version",
                 id="format-version-string"),
    pytest.param(_edit(meta=lambda m: m.update(format_version=0)), "{name}.*unknown checkpoint format_version",
                 id="format-version-0"),
    pytest.param(_edit(meta=lambda m: m.pop("format_version")), "{name}.*lacks.*format_version", id="format-version-missing"),
    pytest.param(_edit(meta=lambda m: m.update(stage="motion_ae")), "{name}.*stage 'motion_ae', expected 'pose_aae'",
                 id="stage-says-motion"),
    pytest.param(_edit(meta=lambda m: m["config"]["model"].update(bogus=1)), "bogus.*unknown to PoseAAEConfig",
                 id="config-unknown-field"),
    pytest.param(_edit(meta=lambda m: m["config"]["model"].update(latent_dim=16)), "{name}.*shape mismatch",
                 id="config-disagrees-with-tensors"),
    pytest.param(_edit(meta=lambda m: m.update(skeleton="mpii_16")), "unknown skeleton 'mpii_16'", id="unknown-skeleton"),
    pytest.param(_edit(meta=lambda m: m["config"].pop("model")), "{name}.*model", id="config-without-model"),
    pytest.param(_no_metadata, "{name}.*no 'nlrd' metadata", id="safetensors-without-metadata"),
    pytest.param(_metadata_not_json, "{name}.*not valid JSON", id="metadata-not-json"),
    pytest.param(_torch_save_zip, "{name}.*zip archive", id="torch-save-renamed-safetensors"),
    pytest.param(_bytes(lambda: pickle.dumps({"w": np.zeros(4)})), "{name}.*pickle", id="pickle-renamed-safetensors"),
    pytest.param(_bytes(lambda: b""), "{name}.*0 bytes", id="empty-file"),
    pytest.param(_bytes(lambda: POSE_CKPT.read_bytes()[: POSE_CKPT.stat().st_size // 2]), "{name}.*truncated checkpoint",
                 id="truncated-half"),
    pytest.param(_bytes(lambda: POSE_CKPT.read_bytes()[:100]), "{name}.*not a safetensors file", id="truncated-in-header"),
    pytest.param(_header_past_end, "{name}.*truncated checkpoint", id="tensor-offsets-past-end"),
    pytest.param(_sidecar_as_checkpoint, "{name}.*JSON text", id="json-sidecar-as-checkpoint"),
    pytest.param(_bytes(lambda: np.random.default_rng(3).integers(0, 256, 5000, np.uint8).tobytes()),
                 "{name}.*not a safetensors file", id="random-bytes"),
    pytest.param(_other_stage, "{name}.*stage 'motion_ae', expected 'pose_aae'", id="motion-checkpoint-as-pose"),
    pytest.param(lambda tmp, ck: tmp / "absent.safetensors", "not found.*absent.safetensors", id="missing-file"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "match"), CHECKPOINTS)
def test_bad_checkpoint_is_refused(tmp_path: Path, pose_ckpt: Checkpoint, make: Callable[[Path, Checkpoint], Path],
                                   match: str) -> None:  # fmt: skip
    path = make(tmp_path, pose_ckpt)
    with pytest.raises(ValueError, match=match.replace("{name}", path.name.replace(".", r"\."))):
        PosePrior.from_pretrained(path)


def test_garbage_json_sidecar_is_ignored(tmp_path: Path) -> None:
    """The header is the source of truth: a broken sidecar beside a good checkpoint does not matter."""
    path = Path(shutil.copyfile(POSE_CKPT, tmp_path / "pose_aae.safetensors"))
    sidecar_path(path).write_text("{this is not json")
    prior = PosePrior.from_pretrained(path)
    assert prior.decode(prior.sample(2, seed=0)).shape == (2, 17, 3)


def _folder_without_image_model(tmp: Path) -> Path:
    shutil.copyfile(POSE_CKPT, tmp / POSE_CHECKPOINT)
    return tmp


def _folder_without_pose_prior(tmp: Path) -> Path:
    (tmp / "source_gs.safetensors").symlink_to(CHECKPOINT_DIR / "source_gs.safetensors")
    return tmp


def _folder_with_junk_relation(tmp: Path) -> Path:
    for name in ("source_gs.safetensors", POSE_CHECKPOINT):
        (tmp / name).symlink_to(CHECKPOINT_DIR / name)
    (tmp / "relations").mkdir()
    (tmp / "relations" / "pose-flip.safetensors").write_bytes(b"junk")
    return tmp


@pytest.mark.parametrize(
    ("make", "match"),
    [
        pytest.param(lambda tmp: tmp / "nowhere", "does not exist", id="missing-folder"),
        pytest.param(lambda tmp: tmp, "no image model", id="empty-folder"),
        pytest.param(_folder_without_image_model, "no image model", id="folder-without-image-model"),
        pytest.param(_folder_without_pose_prior, "not found.*pose_aae", id="folder-without-pose-prior"),
        pytest.param(_folder_with_junk_relation, r"pose-flip\.safetensors.*not a safetensors file", id="junk-relation-network"),
    ],
)
def test_bad_checkpoint_folder_is_refused(tmp_path: Path, make: Callable[[Path], Path], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PosePredictor.from_pretrained(make(tmp_path), device="cpu")


# ----------------------------------------------------------------------------- command line
@pytest.mark.parametrize(
    ("name", "data", "match"),
    [
        pytest.param("notes.jpg", b"text, not a photo\n" * 10, "not an image", id="text-named-jpg"),
        pytest.param("cut.mp4", b"\0\0\0\x18ftypisom\0\0\0\0isommp41\0\0\x10\0mdat", "truncated MP4", id="truncated-mp4"),
        pytest.param("empty.png", b"", "empty file", id="zero-byte-png"),
    ],
)
def test_cli_predict_bad_file_exits_2_with_one_line(tmp_path: Path, name: str, data: bytes, match: str) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "nlrd", "predict", str(path), "--quiet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert name in lines[0] and re.search(match, lines[0]), lines[0]
