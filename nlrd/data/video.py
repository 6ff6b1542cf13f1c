"""Video decoding with OpenCV: probing, streaming frames, bounded reads.

Frames come out as uint8 (H, W, 3) RGB arrays, the same kind :mod:`nlrd.data.images` produces, one
at a time from :func:`iter_video` (``cv2.VideoCapture`` decodes sequentially; the whole video is
never held in memory). :func:`read_video` collects frames into one (T, H, W, 3) array but refuses
(ValueError) a clip longer than ``max_frames`` or larger than ``max_bytes`` instead of growing
without bound.

Bad input raises ValueError naming the file: missing or zero-byte files, files OpenCV cannot open
(e.g. a text file named ``.mp4``), MP4/MOV files whose top-level boxes run past the end of the file
(a truncated download), videos with no decodable frame, and streams that stop decoding well before
the frame count their container announces.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from nlrd.data.images import MIN_SIDE, as_rgb_uint8

DEFAULT_FPS = 30.0  # used when a container does not state its frame rate
DEFAULT_MAX_FRAMES = 900  # 30 s at 30 fps
DEFAULT_MAX_BYTES = 2 * 1024**3  # decoded frames kept by read_video
_MP4_EXTENSIONS = (".mp4", ".m4v", ".mov", ".3gp")
# Boxes an MP4 / QuickTime file can start with (ftyp for every modern file; the others in old .mov).
_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot")


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video.

    Attributes:
        frames: frame count announced by the container (0 when it does not say; for a few formats
            it is an estimate from duration x fps).
        fps: frames per second (:data:`DEFAULT_FPS` when the container does not say).
        width, height: frame size in pixels.
    """

    frames: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps > 0 else 0.0


class VideoClip(NamedTuple):
    """Decoded frames (T, H, W, 3) uint8 RGB, their frame rate (the file's fps / stride) and the file's info."""

    frames: np.ndarray
    fps: float
    info: VideoInfo


# ----------------------------------------------------------------------------- checks
VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".avi", ".mkv", ".m4v")  # what folders of videos are searched for

def _check_file(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: video file not found")
    if not p.is_file():
        raise ValueError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: empty file (0 bytes)")
    try:
        if p.suffix.lower() in _MP4_EXTENSIONS:
            _check_mp4_boxes(p)
        else:  # OpenCV would only say it cannot open the file: read a byte to name the real reason
            with p.open("rb") as fh:
                fh.read(1)
    except OSError as exc:  # no read permission, an I/O error: the ValueError contract of the readers
        raise ValueError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    return p


def _check_mp4_boxes(path: Path) -> None:
    """Walk the top-level ISO-BMFF boxes; a box running past the end of the file means truncation.

    A text file renamed to .mp4 fails here too (its first "box" is nonsense), with a clearer
    message than OpenCV's. Only box headers are read (a few bytes each).
    """
    size = path.stat().st_size
    pos = 0
    names: list[str] = []
    with path.open("rb") as fh:
        while pos < size:
            fh.seek(pos)
            head = fh.read(16)
            if len(head) < 8:
                raise ValueError(f"{path}: truncated MP4 (partial box header at byte {pos})")
            box_size, kind = struct.unpack(">I4s", head[:8])
            if box_size == 1:  # 64-bit size follows
                if len(head) < 16:
                    raise ValueError(f"{path}: truncated MP4 (partial box header at byte {pos})")
                box_size = struct.unpack(">Q", head[8:16])[0]
            elif box_size == 0:  # box extends to the end of the file
                box_size = size - pos
            if pos == 0 and kind not in _FIRST_BOXES:
                raise ValueError(f"{path}: not an MP4/MOV video (it does not start with an ISO media box such as 'ftyp')")
            if not all(32 <= c < 127 for c in kind) or box_size < 8:
                if pos == 0:
                    raise ValueError(f"{path}: not an MP4/MOV video (no ISO media boxes at the start)")
                raise ValueError(f"{path}: corrupt MP4 (bad box header at byte {pos})")
            if pos + box_size > size:
                raise ValueError(
                    f"{path}: truncated MP4: box {kind.decode('ascii')!r} at byte {pos} needs {box_size} bytes, "
                    f"the file ends after {size - pos}"
                )
            names.append(kind.decode("ascii"))
            pos += box_size
    if "moov" not in names:
        raise ValueError(f"{path}: incomplete MP4 (no 'moov' box: the index was never written, or the file is cut)")


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise ValueError(f"{path}: cannot open as a video (not a video file, or an unsupported codec)")
    return cap


def _info(cap: cv2.VideoCapture) -> VideoInfo:
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    if not np.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = DEFAULT_FPS
    frames = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    frames = int(frames) if np.isfinite(frames) and frames > 0 else 0
    return VideoInfo(
        frames=frames,
        fps=fps,
        width=int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
        height=int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
    )


def probe_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count, fps and size of a video file; ValueError naming the file when it is unusable.

    The first frame is decoded to make sure the file really holds video.
    """
    p = _check_file(path)
    cap = _open(p)
    try:
        info = _info(cap)
        ok, frame = cap.read()
        if not ok or frame is None or frame.size == 0:
            raise ValueError(f"{p}: no decodable video frame (corrupt file or unsupported codec)")
        h, w = frame.shape[:2]
        if info.width <= 0 or info.height <= 0:
            info = VideoInfo(info.frames, info.fps, int(w), int(h))
    finally:
        cap.release()
    if min(info.width, info.height) < MIN_SIDE:
        raise ValueError(f"{p}: video frames are {info.width}x{info.height}; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    return info


# ----------------------------------------------------------------------------- frames
def resize_max_side(frame: np.ndarray, max_side: int | None) -> np.ndarray:
    """Area-downscale (H, W, C) so that max(H, W) <= max_side (never upscales; None: unchanged)."""
    if max_side is None:
        return frame
    h, w = frame.shape[:2]
    if max(h, w) <= max_side:
        return frame
    f = max_side / float(max(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def _check_args(max_side: int | None, start: int, stride: int) -> None:
    if max_side is not None and (int(max_side) != max_side or max_side < MIN_SIDE):
        raise ValueError(f"max_side must be an integer >= {MIN_SIDE} or None, got {max_side!r}")
    if int(start) != start or start < 0:
        raise ValueError(f"start must be an integer >= 0, got {start!r}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")


def iter_video(
    path: str | os.PathLike[str],
    max_side: int | None = None,
    start: int = 0,
    stride: int = 1,
) -> Iterator[np.ndarray]:
    """Stream frames ``start, start + stride, ...`` of a video as uint8 (H, W, 3) RGB.

    Args:
        path: the video file (anything OpenCV's FFmpeg backend decodes: mp4, mov, avi, webm, ...).
        max_side: downscale (area interpolation) so the long side is at most this many pixels.
        start: index of the first frame to yield.
        stride: yield every ``stride``-th frame (frames in between are grabbed but not converted).

    Raises:
        ValueError naming the file: missing / empty / not a video / truncated, no decodable frame,
        ``start`` beyond the end, or decoding that stops well before the announced frame count.
        The generator raises when it is first advanced (the file is checked before any frame).
    """
    _check_args(max_side, start, stride)
    p = _check_file(path)
    cap = _open(p)
    try:
        info = _info(cap)
        index = 0  # index of the next frame in the file
        yielded = 0
        while True:
            if index < start or (index - start) % stride:
                ok = cap.grab()  # demux + decode, but no colour conversion / copy
                frame = None
            else:
                ok, frame = cap.read()
            if not ok:
                break
            if frame is not None:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                yield resize_max_side(rgb, max_side)
                yielded += 1
            index += 1
    finally:
        cap.release()
    if index == 0:
        raise ValueError(f"{p}: no decodable video frame (corrupt file or unsupported codec)")
    if yielded == 0:
        raise ValueError(f"{p}: start={start} is beyond the last frame (the video has {index} frames)")
    # Containers like MP4 state the exact count; a stream that ends well short of it is cut or corrupt.
    if info.frames and index < info.frames - max(3, int(0.02 * info.frames)):
        raise ValueError(f"{p}: decoding stopped at frame {index} of {info.frames}: the file is truncated or corrupt")


def read_video(
    path: str | os.PathLike[str],
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_side: int | None = None,
    start: int = 0,
    stride: int = 1,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> VideoClip:
    """Decode frames ``start, start + stride, ...`` into one (T, H, W, 3) uint8 RGB array.

    Args:
        path, max_side, start, stride: as :func:`iter_video`.
        max_frames: hard cap on T; a longer selection raises ValueError (use a stride, a start, a
            larger cap, or :func:`iter_video` to stream).
        max_bytes: hard cap on the decoded array's size (T * H * W * 3 bytes, after ``max_side``).

    Returns:
        VideoClip(frames (T, H, W, 3) uint8 RGB, fps = the file's fps / stride, info).
    """
    if int(max_frames) != max_frames or max_frames < 1:
        raise ValueError(f"max_frames must be an integer >= 1, got {max_frames!r}")
    _check_args(max_side, start, stride)
    info = probe_video(path)
    w, h = info.width, info.height
    if max_side is not None and max(w, h) > max_side:
        f = max_side / float(max(w, h))
        w, h = max(1, round(w * f)), max(1, round(h * f))
    if info.frames:
        expected = max(0, -(-(info.frames - start) // stride))
        if expected > max_frames:
            raise ValueError(
                f"{path}: {expected} frames selected (of {info.frames}, start={start}, stride={stride}) exceed "
                f"max_frames={max_frames}; pass a stride, a larger max_frames, or stream with iter_video"
            )
        if expected * w * h * 3 > max_bytes:
            raise ValueError(
                f"{path}: {expected} frames of {w}x{h} need {expected * w * h * 3 / 2**30:.1f} GiB > max_bytes "
                f"({max_bytes / 2**30:.1f} GiB); pass max_side or a stride"
            )
    frames: list[np.ndarray] = []
    for frame in iter_video(path, max_side=max_side, start=start, stride=stride):
        # Guard against containers that under-announce their length.
        if len(frames) >= max_frames or (len(frames) + 1) * frame.nbytes > max_bytes:
            raise ValueError(f"{path}: more than max_frames={max_frames} frames (or max_bytes) selected")
        frames.append(frame)
    return VideoClip(stack_frames(frames, name=str(path)), info.fps / stride, info)


def stack_frames(frames: Iterable[object], *, name: str = "frames") -> np.ndarray:
    """Stack a sequence of frames into one (T, H, W, 3) uint8 RGB array.

    Each frame goes through :func:`nlrd.data.images.as_rgb_uint8` (grey, RGBA, 16-bit and float
    frames are converted, without downscaling); all must have the same size.
    A (T, H, W, 3) array is accepted as is (converted to uint8 RGB if needed).
    """
    if isinstance(frames, np.ndarray):
        if frames.ndim != 4:
            # (H, W, 3) is one image, (T, H, W) would be grey frames: too ambiguous to guess.
            raise ValueError(f"{name}: expected (T, H, W, C) frames, got an array of shape {frames.shape}")
        if frames.ndim == 4 and frames.dtype == np.uint8 and frames.shape[-1] == 3:
            if frames.shape[0] == 0:
                raise ValueError(f"{name}: no frames")
            if min(frames.shape[1:3]) < MIN_SIDE:
                raise ValueError(f"{name}: frames are {frames.shape[2]}x{frames.shape[1]}; at least {MIN_SIDE}x{MIN_SIDE}")
            return np.ascontiguousarray(frames)
    out: list[np.ndarray] = []
    for i, f in enumerate(frames):
        rgb = as_rgb_uint8(f, max_pixels=None, name=f"{name}[{i}]")
        if out and rgb.shape != out[0].shape:
            raise ValueError(
                f"{name}: frames differ in size: frame 0 is {out[0].shape[1]}x{out[0].shape[0]}, "
                f"frame {i} is {rgb.shape[1]}x{rgb.shape[0]}; resize them to one size first"
            )
        out.append(rgb)
    if not out:
        raise ValueError(f"{name}: no frames")
    return np.stack(out)
