"""``python -m nlrd predict``: outputs, and bad input ending with exit status 2 and one line, no traceback."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from nlrd.__main__ import main
from nlrd.inference import IMAGE_CHECKPOINTS
from nlrd.priors import CHECKPOINT_DIR, POSE_CHECKPOINT

REPO = Path(__file__).resolve().parents[1]
W, H = 160, 120


@pytest.fixture(scope="module", autouse=True)
def _weights() -> None:
    if not (CHECKPOINT_DIR / POSE_CHECKPOINT).exists() or not any((CHECKPOINT_DIR / n).exists() for n in IMAGE_CHECKPOINTS):
        pytest.skip("the shipped checkpoints are not in checkpoints/")


def _image(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(30, 90, (H, W, 3), dtype=np.uint8)
    img[20:110, 60:90] = (200, 150, 120)
    return img


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    rgb = _image()
    out: dict[str, Path] = {}

    def write(name: str, img: np.ndarray) -> None:
        assert cv2.imwrite(str(d / name), img)
        out[name] = d / name

    write("photo.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    write("grey.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    write("rgba.png", np.dstack([cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), np.full((H, W), 200, np.uint8)]))
    write("deep.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    data = out["photo.png"].read_bytes()
    (d / "truncated.png").write_bytes(data[: len(data) // 2])
    (d / "empty.png").write_bytes(b"")
    # A 20000 x 20000 PNG header in a tiny file (a decompression bomb): refused from the header.
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    idat = _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    (d / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b""))
    (d / "notes.mp4").write_text("this is a text file, not a video\n" * 20)
    (d / "notes.png").write_text("this is a text file, not an image\n" * 20)
    video = d / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (W, H))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4 files")
    for t in range(10):
        writer.write(cv2.cvtColor(np.roll(rgb, 2 * t, axis=1), cv2.COLOR_RGB2BGR))
    writer.release()
    vdata = video.read_bytes()
    (d / "cut.mp4").write_bytes(vdata[: len(vdata) * 2 // 3])
    start = vdata.find(b"mdat") + 4
    size = int.from_bytes(vdata[start - 8 : start - 4], "big") - 8
    (d / "no_frames.mp4").write_bytes(vdata[:start] + b"\x00" * size + vdata[start + size :])
    (d / "empty.mp4").write_bytes(b"")
    for name in ("truncated.png", "empty.png", "huge.png", "notes.mp4", "notes.png", "cut.mp4", "no_frames.mp4", "empty.mp4"):
        out[name] = d / name
    out["clip.mp4"] = video
    out["dir"] = d
    return out


def test_predict_image_writes_json_and_exports(files, tmp_path, capsys) -> None:
    js, npz = tmp_path / "pose.json", tmp_path / "pose.npz"
    assert main(["predict", str(files["photo.png"]), "--out", str(js), "--npz", str(npz), "--quiet"]) == 0
    doc = json.loads(js.read_text())
    assert len(doc["frames"]) == 1 and npz.stat().st_size > 0
    assert "photo.png: 1 frame(s)" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["grey.png", "rgba.png", "deep.png"])
def test_grey_rgba_and_16_bit_images_are_accepted(files, name, tmp_path) -> None:
    assert main(["predict", str(files[name]), "--out", str(tmp_path / "p.json"), "--quiet"]) == 0


def test_predict_video_writes_bvh_and_glb(files, tmp_path, capsys) -> None:
    bvh, glb = tmp_path / "m.bvh", tmp_path / "m.glb"
    assert main(["predict", str(files["clip.mp4"]), "--bvh", str(bvh), "--glb", str(glb), "--quiet"]) == 0
    assert bvh.read_text().startswith("HIERARCHY") and glb.stat().st_size > 0
    assert "clip.mp4: 10 frame(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "name, extra, message",
    [
        ("missing.png", [], "does not exist"),
        ("", [], "not a file"),  # the folder itself
        ("empty.png", [], "empty"),
        ("truncated.png", [], "truncated"),
        ("huge.png", [], "20000x20000"),
        ("notes.png", [], "not an image"),
        ("notes.mp4", [], "not an MP4"),
        ("cut.mp4", [], "MP4"),
        ("no_frames.mp4", [], "no decodable"),
        ("empty.mp4", [], "empty"),
        ("photo.png", ["--box", "10,nan,50,100"], "NaN"),
        ("photo.png", ["--box", "10,20,50"], "4 comma-separated"),
        ("photo.png", ["--box", "10,20,a,b"], "4 comma-separated"),
        ("photo.png", ["--box", "500,500,600,600"], "outside"),
        ("photo.png", ["--refine"], "needs a video"),
        ("clip.mp4", ["--box", "30,20,10,100"], "x1 > x0"),
        ("photo.png", ["--out", "/nonexistent-folder/p.json"], "does not exist"),
        ("photo.png", ["--glb", "/"], "is a folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(files, name, extra, message, capsys) -> None:
    path = files["dir"] / name
    assert main(["predict", str(path), "--quiet", *extra]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


def test_process_exit_status_and_no_traceback(files) -> None:
    proc = subprocess.run([sys.executable, "-m", "nlrd", "predict", str(files["notes.mp4"]), "--quiet"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


# ----------------------------------------------------------------------------- unwritable outputs, unreadable inputs
# Each is refused before the model is loaded: ``from_pretrained`` is replaced by a function that fails the test.
@pytest.fixture
def no_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    from nlrd.inference import PosePredictor

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the model was loaded: the bad path was not refused before inference")

    monkeypatch.setattr(PosePredictor, "from_pretrained", refuse)


def _one_error_line(capsys: pytest.CaptureFixture[str], message: str) -> None:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], captured.err
    assert "Traceback" not in captured.err + captured.out


def _unreadable(path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``path`` without read permission; root reads any file, so there opening it raises what the OS would."""
    path.chmod(0)
    if os.geteuid() == 0:
        real_open = Path.open

        def refusing_open(self: Path, *args: object, **kwargs: object):
            if self == path:
                raise PermissionError(13, "Permission denied", str(self))
            return real_open(self, *args, **kwargs)

        monkeypatch.setattr(Path, "open", refusing_open)
    return path


@pytest.mark.parametrize(
    "flag, where, message",
    [
        ("--out", "missing/p.json", "does not exist"),  # a missing folder
        ("--out", "", "is a folder"),  # the output is a folder
        ("--glb", "photo.png/x.glb", "is a file, not a folder"),  # the folder is a file
    ],
)
def test_bad_output_is_refused_before_inference(files, flag, where, message, capsys, no_inference) -> None:
    assert main(["predict", str(files["photo.png"]), "--quiet", flag, str(files["dir"] / where)]) == 2
    _one_error_line(capsys, message)


def test_full_device_is_refused_before_inference(files, tmp_path, capsys, monkeypatch, no_inference) -> None:
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10**9, 10**9, 0))  # type: ignore[attr-defined]
    assert main(["predict", str(files["photo.png"]), "--quiet", "--out", str(tmp_path / "p.json")]) == 2
    _one_error_line(capsys, "no space left")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
def test_writing_onto_a_full_device_is_one_line(files, capsys) -> None:
    # /dev/full takes the file and refuses the bytes: only the write itself can find out.
    assert main(["predict", str(files["photo.png"]), "--quiet", "--out", "/dev/full"]) == 2
    _one_error_line(capsys, "No space left on device")


def test_read_only_output_folder_is_refused_before_inference(files, tmp_path, capsys, monkeypatch, no_inference) -> None:
    import tempfile

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    real = tempfile.TemporaryFile

    def refusing(*args: object, dir: object = None, **kwargs: object):  # noqa: A002 - tempfile's own name
        if os.geteuid() == 0 and Path(str(dir)) == ro:  # root writes anywhere: refuse as a read-only mount would
            raise OSError(30, "Read-only file system", str(ro))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "TemporaryFile", refusing)
    assert main(["predict", str(files["photo.png"]), "--quiet", "--glb", str(ro / "m.glb")]) == 2
    _one_error_line(capsys, "is not writable")


def test_unreadable_video_is_one_line(files, tmp_path, capsys, monkeypatch, no_inference) -> None:
    clip = tmp_path / "locked.mp4"
    clip.write_bytes(files["clip.mp4"].read_bytes())
    _unreadable(clip, monkeypatch)
    assert main(["predict", str(clip), "--quiet", "--out", str(tmp_path / "p.json")]) == 2
    _one_error_line(capsys, "cannot read")


def test_unreadable_video_is_a_value_error_in_the_library(files, tmp_path, monkeypatch) -> None:
    from nlrd.data.video import probe_video

    clip = tmp_path / "locked.mp4"
    clip.write_bytes(files["clip.mp4"].read_bytes())
    _unreadable(clip, monkeypatch)
    with pytest.raises(ValueError, match="cannot read file"):
        probe_video(clip)


def _as_nobody() -> list[str]:
    """A command prefix that runs a program as the unprivileged user ``nobody`` (root only), or skip."""
    import shutil

    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop privileges")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    if subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True, timeout=60).returncode != 0:
        pytest.skip("this Python cannot run as nobody")
    return prefix


def test_permissions_refused_by_the_os_as_an_unprivileged_user(files) -> None:
    """The same refusals without monkeypatching: the CLI run as ``nobody`` on a root-owned read-only folder and
    on an unreadable clip (both refused before the model is loaded, which nobody may not read anyway)."""
    import shutil
    import tempfile

    prefix = _as_nobody()
    # pytest's temp folders are private to root: a folder of its own that nobody may enter.
    with tempfile.TemporaryDirectory(prefix="nlrd-cli-") as tmp:
        d = Path(tmp)
        d.chmod(0o755)
        photo, clip, ro = d / "photo.png", d / "locked.mp4", d / "ro"
        shutil.copy(files["photo.png"], photo)
        shutil.copy(files["clip.mp4"], clip)
        clip.chmod(0)
        ro.mkdir(mode=0o755)
        cache = d / "numba"  # numba caches compiled code beside the package, which nobody cannot write
        cache.mkdir()
        cache.chmod(0o777)
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "OMP_NUM_THREADS": "1"}
        for args, message in (([str(photo), "--glb", str(ro / "m.glb")], "is not writable"),
                              ([str(clip)], "cannot read")):  # fmt: skip
            proc = subprocess.run([*prefix, sys.executable, "-m", "nlrd", "predict", *args, "--quiet"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert proc.returncode == 2, proc.stderr
            assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
