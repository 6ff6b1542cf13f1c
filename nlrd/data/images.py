"""Loading and normalising user images: any common file or array -> uint8 (H, W, 3) RGB.

Everything downstream (detection, cropping, the image encoder) takes one kind of image: a
C-contiguous ``uint8`` array of shape (H, W, 3) in RGB order. This module turns what users hand in
into that, or raises a ValueError that names the file (or "image") and the problem.

Conversions (:func:`as_rgb_uint8`):

- grey (H, W) or (H, W, 1) -> the grey value copied to R, G and B;
- RGBA (H, W, 4) -> composited over a white background (``rgb * a + 255 * (1 - a)``), the way a
  viewer shows a transparent PNG; fully opaque images are unchanged, so this equals dropping alpha
  for them;
- uint16 (16-bit PNG / TIFF) -> scaled to 8 bits (``round(v / 257)``, so 65535 -> 255);
- float in [0, 1] -> ``round(v * 255)``; floats outside [0, 1] (beyond a 1e-3 rounding tolerance),
  NaN or inf are refused rather than guessed at; other integer types must already lie in 0..255;
- bool, complex, object arrays, wrong ndim / channel counts, empty arrays and images smaller than
  :data:`MIN_SIDE` pixels on a side are refused;
- images above ``max_pixels`` (16 megapixels by default) are downscaled (area interpolation,
  aspect kept) so the rest of the pipeline never handles more.

Files (:func:`load_image`): PNG, JPEG, BMP, GIF, WebP, TIFF and whatever else OpenCV decodes. The
image size is read from the file header *before* decoding (PNG, JPEG, BMP, GIF and WebP headers
are parsed here), so a decompression bomb (e.g. a 20000 x 20000 PNG that is a few kB on disk) is
refused without allocating its pixels:

- above :data:`ABSOLUTE_MAX_PIXELS` (400 MP) every file is refused;
- JPEGs larger than ``max_pixels`` are decoded directly at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
  scaling via ``cv2.IMREAD_REDUCED_COLOR_*``), so the full-size pixels never exist in memory;
- other formats are always decoded at full size by OpenCV, so they are refused above
  :data:`FULL_DECODE_MAX_PIXELS` (100 MP, ~600 MB at 16 bits per channel) and downscaled after
  decoding otherwise.

JPEG EXIF orientation is applied (the photo appears the way phones show it). Truncated JPEGs
(no end-of-image marker after the scan data) and PNGs (no IEND chunk) are refused, because
decoders otherwise return a silently grey-filled image.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import cv2
import numpy as np

from nlrd.data.jpeg_check import JpegHeader, check_jpeg_scan, parse_jpeg_header

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")  # what folders of photos are searched for
MIN_SIDE = 16  # pixels; smaller images hold no usable person
DEFAULT_MAX_PIXELS = 16_000_000  # images are downscaled to at most this many pixels
FULL_DECODE_MAX_PIXELS = 100_000_000  # formats that OpenCV can only decode at full size
ABSOLUTE_MAX_PIXELS = 400_000_000  # refused whatever the format
MAX_FILE_BYTES = 512 * 1024 * 1024  # the encoded file itself
_FLOAT_TOLERANCE = 1e-3  # float images may overshoot [0, 1] by this much (rounding in user code)

# JPEG decode flags by reduction factor (libjpeg scales the DCT, so full-size pixels never exist).
# All decode to BGR (IMREAD_COLOR_RGB only exists from OpenCV 4.11 on).
_JPEG_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview


# ----------------------------------------------------------------------------- arrays
def as_rgb_uint8(image: object, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, name: str = "image") -> np.ndarray:
    """Normalise an image array to a C-contiguous uint8 (H, W, 3) RGB array (see the module doc).

    Args:
        image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array (or anything ``np.asarray`` takes) in
            RGB(A) channel order; uint8, uint16, another integer type with values in 0..255, or
            float in [0, 1].
        max_pixels: downscale (area interpolation, aspect kept) to at most this many pixels; None
            keeps the size.
        name: what to call the image in error messages (a file name, "frame 12", ...).

    Returns:
        (H', W', 3) uint8 RGB; a new array (the input is never modified).
    """
    try:
        arr = np.asarray(image)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(f"{name}: not an image array ({exc})") from None
    if arr.dtype == bool:
        raise ValueError(f"{name}: boolean arrays are masks, not images; pass uint8 RGB (H, W, 3)")
    if arr.dtype.kind not in "uif":
        raise ValueError(f"{name}: unsupported dtype {arr.dtype}; expected uint8, uint16 or float in [0, 1]")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"{name}: expected an image of shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"{name}: empty image (shape {arr.shape})")
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"{name}: image is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    if max_pixels is not None and max_pixels < MIN_SIDE * MIN_SIDE:
        raise ValueError(f"max_pixels must be at least {MIN_SIDE * MIN_SIDE}, got {max_pixels}")

    # Work in float32 on the 0..255 scale only where a conversion needs it; uint8 stays uint8.
    if arr.dtype == np.uint8:
        vals: np.ndarray = arr
    elif arr.dtype == np.uint16:
        vals = arr.astype(np.float32) / 257.0
    elif arr.dtype.kind == "f":
        vals = arr.astype(np.float32)
        if not np.isfinite(vals).all():
            raise ValueError(f"{name}: the float image holds NaN or infinite values")
        lo, hi = float(vals.min()), float(vals.max())
        if lo < -_FLOAT_TOLERANCE or hi > 1.0 + _FLOAT_TOLERANCE:
            raise ValueError(
                f"{name}: float images must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}] (divide by 255, or pass uint8)"
            )
        vals = np.clip(vals, 0.0, 1.0) * 255.0
    else:  # other integer types: accepted when they are 8-bit values in a wider type
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise ValueError(
                f"{name}: {arr.dtype} image values must lie in 0..255 (or pass uint16 for 16-bit data), got {lo}..{hi}"
            )
        vals = arr.astype(np.float32)

    c = vals.shape[2]
    if c == 1:
        rgb = np.repeat(vals, 3, axis=2)
    elif c == 3:
        rgb = vals
    else:
        # Composite over white: a transparent PNG looks like this in browsers and viewers.
        alpha = vals[:, :, 3:4].astype(np.float32) / 255.0
        rgb = vals[:, :, :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)

    if rgb.dtype != np.uint8:
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    out = np.ascontiguousarray(rgb)
    if max_pixels is not None and h * w > max_pixels:
        out = _downscale(out, max_pixels)
    if out is arr or np.shares_memory(out, np.asarray(image)):
        out = out.copy()
    return out


def _downscale(rgb: np.ndarray, max_pixels: int) -> np.ndarray:
    """Area-downscale (H, W, 3) so that H * W <= max_pixels, keeping the aspect ratio."""
    h, w = rgb.shape[:2]
    f = (max_pixels / float(h * w)) ** 0.5
    nw, nh = max(1, int(w * f)), max(1, int(h * f))
    while nw * nh > max_pixels:  # int() rounding can leave one row too many
        nw, nh = max(1, nw - 1), max(1, nh - 1)
    return cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_AREA)


# ----------------------------------------------------------------------------- file headers
def _kind(data: bytes) -> str:
    """Image format from the magic bytes ("" when not recognised)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    return ""


def _png_size(data: bytes, name: str) -> tuple[int, int]:
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise ValueError(f"{name}: truncated or corrupt PNG (no IHDR header)")
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _header_size(data: bytes, kind: str, name: str) -> tuple[int, int] | None:
    """(width, height) from the header, or None for formats whose header is not parsed here (JPEG: see
    :func:`parse_jpeg_header`)."""
    try:
        if kind == "png":
            return _png_size(data, name)
        if kind == "bmp" and len(data) >= 26:
            w, h = struct.unpack("<ii", data[18:26])
            return abs(int(w)), abs(int(h))
        if kind == "gif" and len(data) >= 10:
            w, h = struct.unpack("<HH", data[6:10])
            return int(w), int(h)
        if kind == "webp" and len(data) >= 30:
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = 1 + int.from_bytes(data[24:27], "little")
                h = 1 + int.from_bytes(data[27:30], "little")
                return w, h
            if chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
            if chunk == b"VP8 ":
                w, h = struct.unpack("<HH", data[26:30])
                return int(w & 0x3FFF), int(h & 0x3FFF)
    except struct.error:
        raise ValueError(f"{name}: truncated {kind.upper()} header") from None
    return None


def _check_complete(data: bytes, kind: str, name: str, jpeg: JpegHeader | None) -> None:
    """Refuse truncated PNG / JPEG files (decoders would return partly grey images for JPEG)."""
    if kind == "png":
        tail = data.rstrip(b"\x00")[-12:]
        if b"IEND" not in tail:
            raise ValueError(f"{name}: truncated PNG (no IEND chunk at the end)")
    elif jpeg is not None:
        # Entropy-coded data never contains FF D9 (0xFF bytes are stuffed), so the end-of-image
        # marker must follow the scan; trailers after it (camera maker data) are allowed.
        if data.find(b"\xff\xd9", jpeg.scan_start) < 0:
            raise ValueError(f"{name}: truncated JPEG (no end-of-image marker)")
        # libjpeg only warns about garbage or missing scan data and returns noise or grey pixels.
        check_jpeg_scan(data, name, jpeg)


# ----------------------------------------------------------------------------- files
def _read_source(source: ImageSource) -> tuple[bytes, str]:
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source), "image bytes"
    if not isinstance(source, str | os.PathLike):
        raise ValueError(f"expected a file path or encoded image bytes, got {type(source).__name__}")
    path = Path(source)
    name = str(path)
    if not path.exists():
        raise ValueError(f"{name}: file not found")
    if not path.is_file():
        raise ValueError(f"{name}: not a file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{name}: file is {size / 2**20:.0f} MB; at most {MAX_FILE_BYTES // 2**20} MB is accepted")
    try:
        return path.read_bytes(), name
    except OSError as exc:
        raise ValueError(f"{name}: cannot read file ({exc})") from exc


def load_image(source: ImageSource, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file (path) or encoded image bytes into uint8 (H, W, 3) RGB.

    Args:
        source: a path, or the bytes of an encoded image (PNG, JPEG, ...).
        max_pixels: the result has at most this many pixels (downscaled, aspect kept; large JPEGs
            are decoded at reduced scale directly).

    Raises:
        ValueError naming the file and the problem: missing, unreadable, empty, not an image,
        truncated, too large, too small.
    """
    data, name = _read_source(source)
    if len(data) == 0:
        raise ValueError(f"{name}: empty file (0 bytes)")
    kind = _kind(data)
    jpeg = parse_jpeg_header(data, name) if kind == "jpeg" else None  # parsed once, used three times
    size = (jpeg.width, jpeg.height) if jpeg is not None else _header_size(data, kind, name)
    if size is not None:
        w, h = size
        if w == 0 or h == 0:
            raise ValueError(f"{name}: the header says the image is {w}x{h} pixels")
        if w * h > ABSOLUTE_MAX_PIXELS:
            raise ValueError(
                f"{name}: image is {w}x{h} ({w * h / 1e6:.0f} megapixels); at most {ABSOLUTE_MAX_PIXELS / 1e6:.0f} "
                f"megapixels are accepted"
            )
        if kind != "jpeg" and w * h > FULL_DECODE_MAX_PIXELS:
            raise ValueError(
                f"{name}: {kind.upper()} image is {w}x{h} ({w * h / 1e6:.0f} megapixels); this format is decoded at "
                f"full size, so at most {FULL_DECODE_MAX_PIXELS / 1e6:.0f} megapixels are accepted (downscale it, or use JPEG)"
            )
        if min(w, h) < MIN_SIDE:
            raise ValueError(f"{name}: image is {w}x{h} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    _check_complete(data, kind, name, jpeg)

    buf = np.frombuffer(data, dtype=np.uint8)
    if kind == "jpeg":
        # JPEG: 8-bit, no alpha; decoded at 1/2, 1/4 or 1/8 scale when large.
        w, h = size if size is not None else (0, 0)
        factor = 1
        while factor < 8 and (w // factor) * (h // factor) > max_pixels and min(w, h) // (2 * factor) >= MIN_SIDE:
            factor *= 2
        flag = _JPEG_FLAGS[factor]
        img = cv2.cvtColor(_decode(buf, flag, name), cv2.COLOR_BGR2RGB)
    else:
        # Everything else may carry alpha or 16 bits: decode unchanged, convert ourselves.
        img = _decode(buf, cv2.IMREAD_UNCHANGED, name)
        if img.ndim == 3 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
    return as_rgb_uint8(img, max_pixels=max_pixels, name=name)


def _decode(buf: np.ndarray, flag: int, name: str) -> np.ndarray:
    try:
        img = cv2.imdecode(buf, flag)
    except cv2.error as exc:
        raise ValueError(f"{name}: cannot decode the image ({str(exc).strip().splitlines()[-1]})") from None
    if img is None or img.size == 0:
        raise ValueError(f"{name}: not an image, or a corrupt / unsupported image file")
    return img
