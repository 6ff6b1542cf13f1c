"""PosePredictor: checkpoint choice, clip vs per-frame equality, streaming, bad input, the video demo."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from nlrd.inference import IMAGE_CHECKPOINTS, PosePredictor, intra_op_threads, load_image_encoder
from nlrd.priors import CHECKPOINT_DIR, POSE_CHECKPOINT

REPO = Path(__file__).resolve().parents[1]
W, H, N_FRAMES = 160, 120, 12


@pytest.fixture(scope="module")
def predictor() -> PosePredictor:
    if not (CHECKPOINT_DIR / POSE_CHECKPOINT).exists() or not any((CHECKPOINT_DIR / n).exists() for n in IMAGE_CHECKPOINTS):
        pytest.skip("the shipped checkpoints are not in checkpoints/")
    return PosePredictor.from_pretrained(device="cpu")


def _frames(n: int = N_FRAMES) -> np.ndarray:
    """(n, H, W, 3) uint8: a textured background with a bright upright block moving right."""
    rng = np.random.default_rng(0)
    base = rng.integers(30, 90, (H, W, 3), dtype=np.uint8)
    out = np.repeat(base[None], n, 0)
    for t in range(n):
        out[t, 20:110, 50 + 2 * t : 80 + 2 * t] = (200, 150, 120)
    return out


@pytest.fixture(scope="module")
def small_mp4(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "moving.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (W, H))
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write mp4 files")
    for f in _frames():
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


# ----------------------------------------------------------------------------- checkpoints
def _link(src: Path, dst: Path) -> None:
    dst.symlink_to(src)
    sidecar = src.with_name(src.name + ".json")
    if sidecar.exists():
        dst.with_name(dst.name + ".json").symlink_to(sidecar)


def test_from_pretrained_prefers_the_adapted_model(tmp_path: Path) -> None:
    for name in (POSE_CHECKPOINT, "source_gs.safetensors", "oracle.safetensors"):
        if not (CHECKPOINT_DIR / name).exists():
            pytest.skip(f"checkpoints/{name} is needed to build the test folder")
    folder = tmp_path / "ck"
    folder.mkdir()
    with pytest.raises(ValueError, match="no image model"):
        PosePredictor.from_pretrained(folder, device="cpu")
    _link(CHECKPOINT_DIR / POSE_CHECKPOINT, folder / POSE_CHECKPOINT)
    _link(CHECKPOINT_DIR / "source_gs.safetensors", folder / "source_gs.safetensors")
    assert PosePredictor.from_pretrained(folder, device="cpu").meta["image_checkpoint"] == "source_gs.safetensors"
    # Any image-model checkpoint may stand in for an adapted G; the oracle's weights differ from Gs'.
    _link(CHECKPOINT_DIR / "oracle.safetensors", folder / "adapted_g.safetensors")
    p = PosePredictor.from_pretrained(folder, device="cpu")
    assert p.meta["image_checkpoint"] == "adapted_g.safetensors" and p.motion is None
    oracle = load_image_encoder(CHECKPOINT_DIR / "oracle.safetensors").state_dict()
    for k, v in p.encoder.state_dict().items():
        torch.testing.assert_close(v, oracle[k])
    with pytest.raises(ValueError, match="does not exist"):
        PosePredictor.from_pretrained(tmp_path / "missing", device="cpu")


def test_intra_op_threads_is_restored() -> None:
    before = torch.get_num_threads()
    with intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ----------------------------------------------------------------------------- clips
def test_clip_equals_per_frame_results_for_the_same_boxes(predictor: PosePredictor) -> None:
    frames = _frames()
    box = (40.0, 15.0, 110.0, 115.0)
    clip = predictor.predict_clip(frames, box=box)
    single = [predictor.predict_image(f, box=box) for f in frames]
    # bf16 convolutions differ slightly between a batch of 12 and batches of one
    np.testing.assert_allclose(np.concatenate([s.joints3d for s in single]), clip.joints3d, atol=6.0)
    np.testing.assert_allclose(np.concatenate([s.joints2d for s in single]), clip.joints2d, atol=1.0)
    np.testing.assert_allclose(np.concatenate([s.boxes for s in single]), clip.boxes)
    assert clip.valid.all() and clip.num_frames == N_FRAMES
    assert {"decode", "crop", "G", "Dp"} <= set(clip.timings) and {"detect", "crop", "G", "Dp"} <= set(single[0].timings)
    # followed clip: one row per frame, timings include the keypoint model (MediaPipe in tracking mode)
    tracked = predictor.predict_clip(frames)
    assert tracked.joints3d.shape == (N_FRAMES, 17, 3) and "keypoints" in tracked.timings


def test_worker_threads_do_not_change_the_result(predictor: PosePredictor) -> None:
    frames = _frames(36)  # three chunks of crops

    def with_threads(n: int) -> PosePredictor:
        return PosePredictor(predictor.encoder, predictor.pose, None, predictor.device, num_threads=n)

    one = with_threads(1).predict_clip(frames, flip_test=True)
    three = with_threads(3).predict_clip(frames, flip_test=True)
    np.testing.assert_array_equal(one.joints3d, three.joints3d)
    np.testing.assert_array_equal(one.boxes, three.boxes)
    with pytest.raises(ValueError, match="num_threads"):
        with_threads(0)


def test_video_path_streams_and_reports_input_pixels(predictor: PosePredictor, small_mp4: Path) -> None:
    box = (40.0, 15.0, 110.0, 115.0)
    full = predictor.predict_clip(small_mp4, box=box)
    assert full.num_frames == N_FRAMES and full.fps == pytest.approx(30.0)
    # decoded at half size: boxes and 2D joints still come back in the video's pixels
    half = predictor.predict_clip(small_mp4, box=box, max_side=W // 2)
    np.testing.assert_allclose(half.boxes, full.boxes, atol=1.0)
    # The person is 100 px tall here and 50 px at half size, where MediaPipe's keypoints (which place the crop
    # and the fit) move by a few percent of the body: within a tenth of the box's side.
    assert np.abs(half.joints2d - full.joints2d).mean() < 0.1 * (box[3] - box[1])
    # a memory budget smaller than the clip: the crops come from a second decoding pass, same result
    twice = predictor.predict_clip(small_mp4, box=box, clip_memory_bytes=W * H * 3 * 2)
    np.testing.assert_array_equal(twice.joints3d, full.joints3d)
    seen: list[tuple[int, int | None]] = []
    predictor.predict_clip(small_mp4, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (N_FRAMES, N_FRAMES)


# ----------------------------------------------------------------------------- bad input
def _bad_videos(folder: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {
        "empty": folder / "empty.mp4",
        "text": folder / "notes.mp4",
        "truncated": folder / "cut.mp4",
        "no frames": folder / "no_frames.mp4",
    }
    files["empty"].write_bytes(b"")
    files["text"].write_text("this is a text file, not a video\n" * 20)
    files["truncated"].write_bytes(data[: len(data) * 2 // 3])
    start = data.find(b"mdat") + 4
    size = int.from_bytes(data[start - 8 : start - 4], "big") - 8
    files["no frames"].write_bytes(data[:start] + b"\x00" * size + data[start + size :])
    return files


def test_bad_videos_raise_value_errors(predictor: PosePredictor, small_mp4: Path, tmp_path: Path) -> None:
    messages = {"empty": "empty", "text": "not an MP4", "truncated": "MP4", "no frames": "no decodable"}
    for kind, path in _bad_videos(tmp_path, small_mp4).items():
        with pytest.raises(ValueError, match=messages[kind]):
            predictor.predict_clip(path)
    with pytest.raises(ValueError, match="not found"):
        predictor.predict_clip(tmp_path / "missing.mp4")


def test_bad_arrays_and_boxes_raise_value_errors(predictor: PosePredictor) -> None:
    frames = _frames(4)
    with pytest.raises(ValueError, match="no frames"):
        predictor.predict_clip(np.zeros((0, H, W, 3), np.uint8))
    with pytest.raises(ValueError, match="no frames"):
        predictor.predict_clip([])
    with pytest.raises(ValueError, match="differ in size"):
        predictor.predict_clip([frames[0], frames[1][:, :100]])
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict_image(frames[0], box=(10, 10, np.nan, 100))
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict_clip(frames, box=(10, np.nan, 50, 100))
    with pytest.raises(ValueError, match="4 numbers"):
        predictor.predict_image(frames[0], box=(10, 10, 50))
    with pytest.raises(ValueError, match="outside"):
        predictor.predict_image(frames[0], box=(1000, 1000, 1100, 1100))
    with pytest.raises(ValueError, match="fps"):
        predictor.predict_clip(frames, fps=-1.0)
    with pytest.raises(ValueError, match="expected"):
        predictor.predict_image(np.zeros((H, W, 2), np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict_image(np.full((H, W, 3), np.nan, np.float32))


def test_grey_rgba_and_16_bit_images_are_converted(predictor: PosePredictor) -> None:
    rgb = _frames(1)[0]
    box = (40.0, 15.0, 110.0, 115.0)
    ref = predictor.predict_image(rgb, box=box).joints3d
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    for img in (rgb.astype(np.uint16) * 257, np.dstack([rgb, np.full((H, W), 255, np.uint8)])):
        np.testing.assert_allclose(predictor.predict_image(img, box=box).joints3d, ref, atol=1e-3)
    assert predictor.predict_image(grey, box=box).joints3d.shape == (1, 17, 3)


# ----------------------------------------------------------------------------- demo
def _demo():
    spec = importlib.util.spec_from_file_location("predict_video_demo", REPO / "demos" / "predict_video.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["predict_video_demo"] = module
    spec.loader.exec_module(module)
    return module


def test_video_demo_writes_an_animated_html_page(predictor: PosePredictor, small_mp4: Path, tmp_path: Path, capsys) -> None:
    demo = _demo()
    out = tmp_path / "demo.html"
    assert demo.main(["--video", str(small_mp4), "--out", str(out), "--frames", "8", "--max-frames", "4"]) == 0
    html = out.read_text()
    assert out.stat().st_size < 20 * 2**20
    # 4 animation frames + the first frame's image (plotly writes "/" as \u002f in its JSON)
    assert html.count('"source":"data:image\\u002fjpeg;base64,') == 4 + 1
    assert "Plotly.newPlot" in html and "play" in html and "frame 6" in html
    assert "wrote" in capsys.readouterr().out
    assert demo.main(["--video", str(tmp_path / "missing.mp4"), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err


# ----------------------------------------------------------------------------- benchmark helpers
def test_benchmark_knee_angle_and_framing() -> None:
    spec = importlib.util.spec_from_file_location("inference_latency_bench", REPO / "benchmarks" / "inference_latency.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    joints = np.zeros((2, 17, 3), np.float32)
    # right leg (hip 1, knee 2, ankle 3) and left leg (4, 5, 6): straight in frame 0, bent 90 degrees in frame 1
    joints[:, [1, 4], 1] = -400.0
    joints[0, [3, 6], 1] = 400.0
    joints[1, [3, 6], 2] = 400.0
    np.testing.assert_allclose(bench.knee_angles(joints), [180.0, 90.0], atol=1e-3)
    assert bench.to_640x480(np.zeros((720, 1280, 3), np.uint8)).shape == (480, 640, 3)
    assert bench.to_640x480(np.zeros((1000, 600, 3), np.uint8)).shape == (480, 640, 3)
    s = bench.stats([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["median"] == 3.0 and s["p10"] < s["median"] < s["p90"] and s["n"] == 5


# ----------------------------------------------------------------------------- real videos
@pytest.mark.parametrize("name", ["squat", "deadlift"])
def test_person_found_in_the_real_exercise_videos(predictor: PosePredictor, data_root: Path, name: str) -> None:
    res = predictor.predict_clip(data_root / "media" / f"{name}.mp4", max_side=640)
    after_title_card = slice(7, None)  # a red wipe covers frames 0-6
    assert res.valid[after_title_card].mean() >= 0.9
    assert res.boxes.max() > 700  # reported in the video's 1280 x 720 pixels, not the decoded 640 x 360


def test_flip_test_evaluation_is_mirror_equivariant() -> None:
    """predict_joints(flip_test=True) of mirrored crops is the mirrored flip-test pose of the originals
    (the average of a prediction and its mirror is exactly mirror-symmetric), and differs from a single pass."""
    from nlrd.evaluation import predict_joints
    from nlrd.models.image_encoder import ImageEncoderConfig, build_image_encoder
    from nlrd.priors import PosePrior
    from nlrd.transforms import flip_pose

    encoder = build_image_encoder(ImageEncoderConfig(image_size=32, width=8, head_channels=16, head_hidden=32), seed=0).eval()
    decoder = PosePrior.from_pretrained().decoder
    crops = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    both = predict_joints(encoder, decoder, crops, flip_test=True)
    mirrored = predict_joints(encoder, decoder, np.ascontiguousarray(crops[:, :, ::-1]), flip_test=True)
    np.testing.assert_allclose(mirrored, flip_pose(both), atol=1e-3)
    single = predict_joints(encoder, decoder, crops)
    assert both.shape == single.shape == (3, 17, 3) and np.abs(both - single).max() > 1e-3


def test_photo_checkpoint_dir_prefers_a_complete_views_family(tmp_path: Path) -> None:
    """Real photos load <folder>/views when it holds a pose prior and an image model, else the folder itself."""
    from nlrd.inference import IMAGE_CHECKPOINTS, PHOTO_FAMILY, photo_checkpoint_dir
    from nlrd.priors import POSE_CHECKPOINT

    assert photo_checkpoint_dir(tmp_path) == tmp_path
    views = tmp_path / PHOTO_FAMILY
    views.mkdir()
    (views / POSE_CHECKPOINT).write_bytes(b"")
    assert photo_checkpoint_dir(tmp_path) == tmp_path  # a prior alone is not a predictor
    (views / IMAGE_CHECKPOINTS[-1]).write_bytes(b"")
    assert photo_checkpoint_dir(tmp_path) == views
    (views / POSE_CHECKPOINT).unlink()
    assert photo_checkpoint_dir(tmp_path) == tmp_path
