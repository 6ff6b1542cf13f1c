"""Video probing, streaming and bounded reads, and bad video files."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from nlrd.data.video import VideoInfo, iter_video, probe_video, read_video, stack_frames

N_FRAMES, W, H = 20, 64, 48


def _square_x(i: int) -> int:
    return 5 + 2 * i


@pytest.fixture(scope="module")
def synthetic_mp4(tmp_path_factory) -> Path:
    """A 20-frame 64x48 mp4 (mpeg4 codec) with an orange square moving right by 2 px per frame."""
    path = tmp_path_factory.mktemp("video") / "moving.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (W, H))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4 files")
    for i in range(N_FRAMES):
        f = np.full((H, W, 3), 40, np.uint8)
        cv2.rectangle(f, (_square_x(i), 10), (_square_x(i) + 10, 40), (0, 160, 255), -1)  # BGR orange
        writer.write(f)
    writer.release()
    return path


def test_probe(synthetic_mp4):
    info = probe_video(synthetic_mp4)
    assert info == VideoInfo(frames=N_FRAMES, fps=30.0, width=W, height=H)
    assert abs(info.duration_s - N_FRAMES / 30.0) < 1e-9


def test_iter_video_streams_rgb_with_start_stride_and_downscale(synthetic_mp4):
    frames = list(iter_video(synthetic_mp4))
    assert len(frames) == N_FRAMES
    f = frames[3]
    assert f.shape == (H, W, 3) and f.dtype == np.uint8
    centre = f[25, _square_x(3) + 5].astype(int)
    assert centre[0] > 200 and centre[2] < 60  # RGB order: orange has a high R, low B
    picked = list(iter_video(synthetic_mp4, start=4, stride=5))
    assert len(picked) == 4  # frames 4, 9, 14, 19
    np.testing.assert_array_equal(picked[1], frames[9])
    small = next(iter(iter_video(synthetic_mp4, max_side=32)))
    assert small.shape == (24, 32, 3)


def test_iter_video_is_lazy(synthetic_mp4):
    it = iter_video(synthetic_mp4)
    first = next(it)
    assert first.shape == (H, W, 3)
    it.close()  # stopping early releases the capture without reading the rest


def test_read_video_caps(synthetic_mp4):
    clip = read_video(synthetic_mp4, max_frames=N_FRAMES)
    assert clip.frames.shape == (N_FRAMES, H, W, 3) and clip.fps == 30.0
    clip = read_video(synthetic_mp4, stride=2, max_frames=10)
    assert clip.frames.shape[0] == 10 and clip.fps == 15.0
    with pytest.raises(ValueError, match="max_frames"):
        read_video(synthetic_mp4, max_frames=N_FRAMES - 1)
    with pytest.raises(ValueError, match="max_bytes"):
        read_video(synthetic_mp4, max_bytes=W * H * 3 * 5)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"stride": 0}, "stride"), ({"start": -1}, "start"), ({"max_side": 4}, "max_side"), ({"start": 500}, "beyond")],
)
def test_bad_arguments(synthetic_mp4, kwargs, message):
    with pytest.raises(ValueError, match=message):
        list(iter_video(synthetic_mp4, **kwargs))


def test_bad_files_raise_naming_the_file(tmp_path, synthetic_mp4):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is a text file, not a video\n" * 20)
    text_avi = tmp_path / "notes.avi"
    text_avi.write_text("this is a text file, not a video\n" * 20)
    data = synthetic_mp4.read_bytes()
    cut = tmp_path / "cut.mp4"  # this writer puts the index (moov) last: a cut loses it
    cut.write_bytes(data[: len(data) * 2 // 3])
    no_frames = tmp_path / "no_frames.mp4"  # a valid container whose pixel data is destroyed
    start = data.find(b"mdat") + 4
    size = int.from_bytes(data[start - 8 : start - 4], "big") - 8
    no_frames.write_bytes(data[:start] + b"\x00" * size + data[start + size :])
    cases = [
        (tmp_path / "missing.mp4", "not found"),
        (empty, "empty"),
        (text, "not an MP4"),
        (text_avi, "cannot open"),
        (cut, "MP4"),
        (no_frames, "no decodable video frame"),
    ]
    for path, message in cases:
        with pytest.raises(ValueError, match=message) as exc:
            probe_video(path)
        assert str(path) in str(exc.value)
        with pytest.raises(ValueError):
            list(iter_video(path))
        with pytest.raises(ValueError):
            read_video(path)


def test_stack_frames():
    a = np.zeros((20, 30, 3), np.uint8)
    grey = np.full((20, 30), 7, np.uint8)
    out = stack_frames([a, grey, np.ones((20, 30, 3), np.float32)])
    assert out.shape == (3, 20, 30, 3) and out.dtype == np.uint8
    assert (out[1] == 7).all() and (out[2] == 255).all()
    with pytest.raises(ValueError, match="differ in size"):
        stack_frames([a, np.zeros((21, 30, 3), np.uint8)])
    with pytest.raises(ValueError, match="no frames"):
        stack_frames([])
    with pytest.raises(ValueError, match=r"\(T, H, W, C\)"):
        stack_frames(np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        stack_frames([np.full((20, 30, 3), np.nan)])


def test_real_videos(data_root, tmp_path):
    squat = data_root / "media" / "squat.mp4"
    assert probe_video(squat) == VideoInfo(frames=213, fps=30.0, width=1280, height=720)
    frames = list(iter_video(squat, max_side=320, start=200))
    assert len(frames) == 13 and frames[0].shape == (180, 320, 3)
    # A faststart mp4 (index first) cut short: the media box runs past the end of the file.
    cut = tmp_path / "squat_cut.mp4"
    with squat.open("rb") as src, cut.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    data = cut.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(ValueError, match="truncated MP4") as exc:
        probe_video(cut)
    assert "squat_cut.mp4" in str(exc.value)
