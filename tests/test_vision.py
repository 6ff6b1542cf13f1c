"""nlrd.vision: MediaPipe Pose keypoints mapped to the 17 joints, the held-out photo list, the one cv2.

Rendered people (the project's renderer, source style, cameras in front of the person, demo poses: no
data needed) give exact 2D projections and camera-frame 3D joints to check the mapping against. Tests on
real photos skip when the data folder is absent.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import shutil
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from nlrd.data.synthetic.demo_poses import a_pose, random_poses, random_windows
from nlrd.data.synthetic.render import RenderedSample, render_clip, render_sample
from nlrd.data.synthetic.styles import get_style
from nlrd.skeleton import H36M_17
from nlrd.vision import (
    MIN_SCORE,
    PersonKeypoints,
    detect_keypoints,
    detect_keypoints_clip,
    heldout_exercise_photos,
    is_heldout_exercise,
    keypoints,
    tuning_exercise_photos,
)
from nlrd.vision.landmarks import LANDMARK_FLIP, LANDMARK_NAMES, NAIVE_WEIGHTS, NUM_LANDMARKS, W2D, W3D, weight_matrix

SIZE, UP = 128, 256  # render side and the side MediaPipe sees (as in scripts/calibrate_landmarks.py)
FRONT = dataclasses.replace(
    get_style("source"), camera=dataclasses.replace(get_style("source").camera, azimuth=(-30.0, 30.0), elevation=(0.0, 15.0))
)
L_HIP, R_HIP, HEAD = H36M_17.index("l_hip"), H36M_17.index("r_hip"), H36M_17.index("head")
LEFT = [left for left, _ in H36M_17.left_right_pairs]
RIGHT = [right for _, right in H36M_17.left_right_pairs]


def upscale(img: np.ndarray, side: int = UP) -> np.ndarray:
    return cv2.resize(img, (side, side), interpolation=cv2.INTER_CUBIC)


def to_render_px(xy: np.ndarray, f: float = UP / SIZE) -> np.ndarray:
    """Upscaled px -> render px (pixel centres at integers)."""
    return (xy + 0.5) / f - 0.5


@pytest.fixture(scope="module")
def renders() -> list[RenderedSample]:
    """Six people facing the camera (+-30 deg): an A-pose and five random everyday poses."""
    poses = np.concatenate([a_pose()[None], random_poses(5, np.random.default_rng(3))])
    return [render_sample(p, FRONT, np.random.default_rng([11, i]), SIZE) for i, p in enumerate(poses)]


@pytest.fixture(scope="module")
def found(renders: list[RenderedSample]) -> list[tuple[RenderedSample, PersonKeypoints]]:
    out = []
    for s in renders:
        kp = detect_keypoints(upscale(s.image))
        if kp is not None:
            out.append((s, kp))
    return out


# ----------------------------------------------------------------------------- weight tables
@pytest.mark.parametrize("w", [W2D, W3D, weight_matrix(NAIVE_WEIGHTS)], ids=["2d", "3d", "naive"])
def test_weight_tables_are_affine_and_mirror_symmetric(w: np.ndarray) -> None:
    assert w.shape == (17, NUM_LANDMARKS)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, atol=1e-6)
    # a mirrored person gives the mirrored joints: joint perm[j]'s weights are joint j's with landmarks flipped
    perm = H36M_17.flip_permutation
    np.testing.assert_allclose(w[perm][:, list(LANDMARK_FLIP)], w, atol=2e-4)


def test_weight_table_errors() -> None:
    with pytest.raises(ValueError, match="sum to"):
        weight_matrix({**NAIVE_WEIGHTS, "pelvis": {"left_hip": 0.5}})
    with pytest.raises(ValueError, match="unknown MediaPipe landmark"):
        weight_matrix({**NAIVE_WEIGHTS, "pelvis": {"left_hipp": 1.0}})
    with pytest.raises(ValueError, match="exactly the joints"):
        weight_matrix({k: v for k, v in NAIVE_WEIGHTS.items() if k != "head"})


# ----------------------------------------------------------------------------- rendered people
def test_renders_give_a_person_with_the_documented_fields(found: list, renders: list) -> None:
    assert len(found) >= 5, f"MediaPipe found only {len(found)} of {len(renders)} front-facing renders"
    for _, kp in found:
        assert kp.joints2d.shape == (17, 2) and kp.joints2d.dtype == np.float32
        assert kp.world3d.shape == (17, 3) and kp.world3d.dtype == np.float32
        assert kp.conf.shape == (17,) and ((kp.conf >= 0) & (kp.conf <= 1)).all()
        assert kp.landmarks2d.shape == (33, 3) and kp.landmarks3d.shape == (33, 3)
        assert kp.box.shape == (4,) and kp.box.dtype == np.float32
        assert -0.5 <= kp.box[0] < kp.box[2] <= UP - 0.5 and -0.5 <= kp.box[1] < kp.box[3] <= UP - 0.5
        assert MIN_SCORE <= kp.score <= 1.0 and kp.mask is None


def _swapped(s: RenderedSample, kp: PersonKeypoints) -> bool:
    """Whether MediaPipe took this person's left for their right (its front/back confusion)."""
    j2 = to_render_px(kp.joints2d)
    err = np.linalg.norm(j2 - s.joints2d, axis=1)[LEFT + RIGHT].mean()
    return bool(np.linalg.norm(j2[H36M_17.flip_permutation] - s.joints2d, axis=1)[LEFT + RIGHT].mean() < err)


@pytest.fixture(scope="module")
def unswapped(found: list) -> list[tuple[RenderedSample, PersonKeypoints]]:
    return [(s, kp) for s, kp in found if not _swapped(s, kp)]


def test_left_and_right_are_not_swapped(found: list, unswapped: list) -> None:
    """The person's own left joints come out as l_*: MediaPipe's left landmarks feed the l_* joints, and on
    front-facing renders they land on the labelled left joints. The renders' heads have no face, so
    MediaPipe may mistake front for back on one of them (6% of source renders in the calibration)."""
    for left, right in H36M_17.left_right_pairs:
        lms = [LANDMARK_NAMES[i] for i in np.flatnonzero(np.abs(W2D[left]) >= 0.3)]
        assert lms and all(n.startswith("left_") for n in lms), (H36M_17.joint_names[left], lms)
        assert all(LANDMARK_NAMES[i].startswith("right_") for i in np.flatnonzero(np.abs(W2D[right]) >= 0.3))
    assert len(unswapped) >= len(found) - 1


def test_calibrated_2d_joints_land_on_the_projections(unswapped: list) -> None:
    """Median joint error within 3 px at 128 px (the calibration measured 1.2 px on source renders), lower
    than the uncalibrated mapping's, also for the joints with no landmark of their own."""
    naive = weight_matrix(NAIVE_WEIGHTS)
    errs = np.stack([np.linalg.norm(to_render_px(kp.joints2d) - s.joints2d, axis=1) for s, kp in unswapped])
    naive_errs = np.stack(
        [np.linalg.norm(to_render_px(naive @ kp.landmarks2d[:, :2]) - s.joints2d, axis=1) for s, kp in unswapped]
    )
    assert np.median(errs) < 3.0, np.median(errs, axis=0)
    centre = [H36M_17.index(n) for n in ("pelvis", "spine", "thorax", "neck", "head")]
    assert np.median(errs[:, centre]) < 3.0
    assert np.median(errs[:, centre]) < np.median(naive_errs[:, centre])


def test_world3d_is_root_relative_in_the_camera_frame(unswapped: list) -> None:
    """Pelvis at the origin; x right, y down, z forward like the labels (joint by joint where the label is far
    from the pelvis, and by correlation over all renders: MediaPipe's depth is the least certain axis); mm."""
    preds, labels = [], []
    for s, kp in unswapped:
        w, lab = kp.world3d, s.joints3d
        np.testing.assert_allclose(w[0], 0.0, atol=1e-3)
        far = np.abs(lab[:, 1]) > 250  # clearly above (y < 0) or below (y > 0) the pelvis
        np.testing.assert_array_equal(np.sign(w[far, 1]), np.sign(lab[far, 1]))
        assert w[HEAD, 1] < w[H36M_17.index("thorax"), 1] < 0  # y down: the head on top
        # x right: a person facing the camera has their left hip on the image's right, like the label
        assert np.sign(w[L_HIP, 0] - w[R_HIP, 0]) == np.sign(lab[L_HIP, 0] - lab[R_HIP, 0]) == 1
        assert np.linalg.norm(w - lab, axis=1).mean() < 250  # mm: far below a body size
        assert np.isfinite(kp.landmarks3d).all() and np.abs(kp.landmarks3d).max() < 2000
        preds.append(w[1:])
        labels.append(lab[1:])
    p, lab = np.concatenate(preds), np.concatenate(labels)
    corr = [np.corrcoef(p[:, d], lab[:, d])[0, 1] for d in range(3)]
    assert corr[0] > 0.8 and corr[1] > 0.8 and corr[2] > 0.4, corr


def test_mask_covers_the_silhouette(renders: list) -> None:
    s = renders[0]
    kp = detect_keypoints(upscale(s.image), with_mask=True)
    assert kp is not None and kp.mask is not None
    assert kp.mask.shape == (UP, UP) and kp.mask.dtype == np.float32
    assert 0.0 <= kp.mask.min() and kp.mask.max() <= 1.0
    truth = upscale(s.mask.astype(np.uint8)) > 0
    pred = kp.mask > 0.5
    assert (truth & pred).sum() / (truth | pred).sum() > 0.6


def test_large_images_are_downscaled_and_mapped_back(renders: list) -> None:
    """Above MAX_SIDE the image is downscaled first; the outputs still come in the input's pixels."""
    s = renders[0]
    small = detect_keypoints(upscale(s.image, 640))
    big = detect_keypoints(upscale(s.image, 1600))
    assert small is not None and big is not None
    f = 1600 / 640
    np.testing.assert_allclose((small.joints2d + 0.5) * f - 0.5, big.joints2d, atol=0.02 * 1600)
    assert big.box[2] > 800 and big.box[3] > 800


def test_user_box_restricts_the_search(renders: list) -> None:
    """Two people side by side: a box around either one returns that one, in full-image pixels; a box over
    an empty strip of background returns nobody."""
    a, b = upscale(renders[0].image), upscale(renders[1].image)
    gap = np.full((UP, UP // 2, 3), 128, np.uint8)
    canvas = np.ascontiguousarray(np.concatenate([a, gap, b], axis=1))  # (256, 640, 3)
    x_b = UP + UP // 2
    for s, box, dx in ((renders[0], (0, 0, UP, UP), 0), (renders[1], (x_b, 0, x_b + UP, UP), x_b)):
        kp = detect_keypoints(canvas, box)
        assert kp is not None
        j2 = to_render_px(kp.joints2d - np.array([dx, 0.0], np.float32))
        assert np.median(np.linalg.norm(j2 - s.joints2d, axis=1)) < 4.0
        assert box[0] - 0.5 <= kp.box[0] and kp.box[2] <= box[2] + 0.5
    empty = np.full((400, 900, 3), 90, np.uint8)
    empty[:, 700:] = canvas[:256, x_b : x_b + 200].mean(axis=(0, 1)).astype(np.uint8)
    empty[72:328, 640:896] = b
    assert detect_keypoints(empty) is not None
    assert detect_keypoints(empty, (20, 50, 400, 380)) is None


def test_concurrent_calls_match_serial_ones(renders: list) -> None:
    images = [upscale(s.image) for s in renders[:4]]
    serial = [detect_keypoints(im) for im in images]
    results: dict[int, list[PersonKeypoints | None]] = {}

    def work(k: int) -> None:
        results[k] = [detect_keypoints(im) for im in (images if k == 0 else images[::-1])]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, order in ((0, serial), (1, serial[::-1])):
        assert len(results[k]) == len(order)
        for got, want in zip(results[k], order, strict=True):
            assert (got is None) == (want is None)
            if got is not None and want is not None:
                np.testing.assert_array_equal(got.joints2d, want.joints2d)
                np.testing.assert_array_equal(got.world3d, want.world3d)
                assert got.score == want.score


def test_thread_count_does_not_change_the_landmarks(renders: list, monkeypatch: pytest.MonkeyPatch) -> None:
    images = [upscale(s.image) for s in renders[:3]]
    got = {}
    for n in ("1", "2"):
        monkeypatch.setenv(keypoints.THREADS_ENV, n)
        assert keypoints.inference_threads() == int(n)
        got[n] = [detect_keypoints(im) for im in images]
    for one, two in zip(got["1"], got["2"], strict=True):
        assert (one is None) == (two is None)
        if one is not None and two is not None:
            np.testing.assert_allclose(two.joints2d, one.joints2d, atol=1e-3)
            np.testing.assert_allclose(two.world3d, one.world3d, atol=1e-2)
    monkeypatch.setenv(keypoints.THREADS_ENV, "zero")
    with pytest.raises(ValueError, match=keypoints.THREADS_ENV):
        keypoints.inference_threads()


def test_slow_multithreaded_calls_back_off_to_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads that wait for each other (busy cores) make calls many times slower: new graphs then get one."""
    monkeypatch.delenv(keypoints.THREADS_ENV, raising=False)
    monkeypatch.setattr(keypoints, "_usable_cores", lambda: 8)
    chooser = keypoints._ThreadChooser()
    assert chooser.threads() == keypoints.MAX_THREADS
    chooser.record(2, 0.060, True)
    chooser.record(2, 0.015, False)  # the detector alone (nobody found) is faster: judged separately
    chooser.record(2, 0.065, True)
    assert chooser.threads() == keypoints.MAX_THREADS
    chooser.record(1, 5.0, True)  # single-threaded calls never trigger it
    assert chooser.threads() == keypoints.MAX_THREADS
    chooser.record(2, 1.4, True)
    assert chooser.threads() == 1
    monkeypatch.setattr(keypoints.time, "monotonic", lambda: 1e12)  # the back-off is over
    assert chooser.threads() == keypoints.MAX_THREADS
    fresh = keypoints._ThreadChooser()
    fresh.record(2, keypoints.CONTENDED_S + 0.1, True)  # slow from the first call: no fast call to compare with
    assert fresh.threads() == 1


# ----------------------------------------------------------------------------- clips
def test_clip_tracks_a_rendered_person() -> None:
    motion = random_windows(1, np.random.default_rng(5), length=10)[0]
    clip = render_clip(motion, FRONT, np.random.default_rng(6), SIZE)
    frames = np.stack([upscale(f) for f in clip.image])
    res = detect_keypoints_clip(frames)
    assert len(res) == len(frames)
    hits = [(t, r) for t, r in enumerate(res) if r is not None]
    assert len(hits) >= 8
    assert len({r.score for _, r in hits}) <= 2  # a frame's score is the score of the detection its track began with
    err = [np.median(np.linalg.norm(to_render_px(r.joints2d) - clip.joints2d[t], axis=1)) for t, r in hits]
    assert np.median(err) < 3.0
    # a fresh graph per clip: the same clip again (here as a generator) gives the same answers
    again = detect_keypoints_clip(iter(frames), smooth=True)
    for r1, r2 in zip(res, again, strict=True):
        assert (r1 is None) == (r2 is None)
        if r1 is not None and r2 is not None:
            np.testing.assert_allclose(r1.joints2d, r2.joints2d, atol=1e-3)
    assert detect_keypoints_clip([]) == []


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.full((64, 64, 3), np.nan, np.float32), "uint8"),
        (np.zeros((64, 64), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((64, 64, 4), np.uint8), r"\(H, W, 3\)"),
        (np.zeros((0, 0, 3), np.uint8), "at least"),
        (np.zeros((8, 64, 3), np.uint8), "at least"),
        ([[0, 0, 0]], "numpy uint8 array"),
        (None, "numpy uint8 array"),
    ],
)
def test_bad_images_raise(image: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        detect_keypoints(image)  # type: ignore[arg-type]


def test_bad_boxes_scores_and_clips_raise() -> None:
    img = np.zeros((100, 120, 3), np.uint8)
    for box, match in [
        ((0, 0, np.nan, 50), "NaN"),
        ((50, 0, 10, 50), "x1 > x0"),
        ((500, 500, 600, 600), "outside"),
        ((0, 0, 50), "4 numbers"),
        ((10, 10, 12, 12), "too small"),
    ]:
        with pytest.raises(ValueError, match=match):
            detect_keypoints(img, box)
    with pytest.raises(ValueError, match="min_score"):
        detect_keypoints(img, min_score=1.5)
    with pytest.raises(ValueError, match="one size"):
        detect_keypoints_clip([img, np.zeros((90, 120, 3), np.uint8)])
    with pytest.raises(ValueError, match="frame 1"):
        detect_keypoints_clip([img, img.astype(np.float32)])
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        detect_keypoints_clip(img)


# ----------------------------------------------------------------------------- real photos
def test_no_person_on_kodak_backgrounds(data_root: Path) -> None:
    from nlrd.data.images import load_image

    photos = sorted((data_root / "backgrounds" / "kodak").glob("*.png"))
    if not photos:
        pytest.skip(f"no Kodak backgrounds under {data_root}")
    found = {p.name: kp.score for p in photos if (kp := detect_keypoints(load_image(p))) is not None}
    assert found == {}, f"people found on people-free photos: {found}"


def test_real_photo_person(data_root: Path) -> None:
    from nlrd.data.images import load_image

    photo = data_root / "exercise_photos" / "images" / "Wrist_Circles__1.jpg"  # a tuning-list photo
    if not photo.is_file():
        pytest.skip(f"{photo} not found")
    assert not is_heldout_exercise("Wrist_Circles")
    img = load_image(photo)
    kp = detect_keypoints(img, with_mask=True)
    assert kp is not None and kp.score > 0.9
    h, w = img.shape[:2]
    assert kp.mask is not None and kp.mask.shape == (h, w) and (kp.mask > 0.5).mean() > 0.02
    inside = (kp.joints2d >= kp.box[:2]) & (kp.joints2d <= kp.box[2:])
    assert inside.all()
    assert kp.world3d[HEAD, 1] < 0 < kp.world3d[H36M_17.index("l_ankle"), 1]


def test_heldout_split_is_fixed_and_disjoint(data_root: Path) -> None:
    if not (data_root / "exercise_photos" / "index.json").is_file():
        pytest.skip(f"no exercise_photos under {data_root}")
    held, tune = heldout_exercise_photos(data_root), tuning_exercise_photos(data_root)
    assert held == heldout_exercise_photos(data_root)  # deterministic
    assert not set(held) & set(tune)
    assert len(held) + len(tune) == len(list((data_root / "exercise_photos" / "images").glob("*.jpg")))
    assert 0.15 < len(held) / (len(held) + len(tune)) < 0.25
    ids = {re.sub(r"__\d+\.jpg$", "", p.name) for p in held}
    assert len(held) == 2 * len(ids)  # both photos of an exercise together
    assert all(is_heldout_exercise(i) for i in ids)
    assert held == sorted(held, key=lambda p: (re.sub(r"__\d+\.jpg$", "", p.name), p.name))


def test_heldout_rule() -> None:
    import hashlib

    for ex in ("Ab_Roller", "Wrist_Circles", "90_90_Hamstring", "Power_Jerk"):
        assert is_heldout_exercise(ex) == (int(hashlib.sha1(ex.encode()).hexdigest(), 16) % 5 == 0)
    with pytest.raises(ValueError, match="index.json"):
        heldout_exercise_photos("/nonexistent/folder")


# ----------------------------------------------------------------------------- the install
def test_exactly_one_headless_opencv() -> None:
    """mediapipe pulls the GUI OpenCV build (needs libGL.so.1); `make install` must leave only the headless one."""
    names = sorted({d.metadata["Name"].lower() for d in importlib.metadata.distributions()})
    opencv = [n for n in names if n.startswith("opencv")]
    assert opencv == ["opencv-contrib-python-headless"], opencv
    if shutil.which("ldd") is None:
        pytest.skip("ldd not available")
    lib = next(Path(cv2.__file__).parent.glob("cv2*.so"))
    deps = subprocess.run(["ldd", str(lib)], capture_output=True, text=True, check=True).stdout
    assert "libGL.so" not in deps and "libgthread" not in deps
