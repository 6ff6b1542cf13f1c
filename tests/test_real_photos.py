"""The predictor on real photos: MediaPipe finds the person, the fitted path follows it, nobody is
reported on photos without people, and both methods stay selectable (real data: skips without it)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from nlrd.data.images import load_image
from nlrd.fit import torso_faces_camera
from nlrd.inference import PosePredictor
from nlrd.vision import detect_keypoints, heldout_exercise_photos

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from real_photos import angle_deg, mean_pose_2d, pck, posture_bin, torso_up  # noqa: E402

N_PHOTOS = 12  # the first held-out photos: enough to separate the paths, quick on 2 cores


@pytest.fixture(scope="module")
def predictor() -> PosePredictor:
    return PosePredictor.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def photos(data_root: Path) -> list[Path]:
    found = heldout_exercise_photos(data_root)
    if not found:
        pytest.skip(f"no exercise photos under {data_root}")
    return found[:N_PHOTOS]


def test_fitted_path_follows_real_people_better_than_g_and_a_constant_pose(predictor: PosePredictor,
                                                                            photos: list[Path]) -> None:  # fmt: skip
    hits = {"fit": [0, 0], "g": [0, 0], "constant": [0, 0]}
    facing = []
    for path in photos:
        img = load_image(path)
        kp = detect_keypoints(img)
        if kp is None:
            continue
        fit, g = predictor.predict_image(img), predictor.predict_image(img, method="g")
        assert fit.method == "fit" and g.method == "g" and fit.valid[0] and fit.keypoints2d is not None
        np.testing.assert_allclose(fit.keypoints2d[0], kp.joints2d, atol=1e-3)  # the same keypoints, input pixels
        for name, pred in (("fit", fit.joints2d[0]), ("g", g.joints2d[0]), ("constant", mean_pose_2d(predictor, kp.box))):
            h, n = pck(pred, kp.joints2d, kp.conf, kp.box)
            hits[name][0] += h
            hits[name][1] += n
        facing.append(bool(torso_faces_camera(fit.joints3d)[0]) == bool(torso_faces_camera(kp.world3d[None])[0]))
    rate = {k: h / max(n, 1) for k, (h, n) in hits.items()}
    assert hits["fit"][1] > 50, hits
    assert rate["fit"] >= 0.9, rate
    assert rate["fit"] > rate["constant"] + 0.3 and rate["fit"] > rate["g"], rate
    # The shipped G is adapted to real photos: it follows people clearly better than a constant pose too.
    assert rate["g"] > rate["constant"] + 0.2, rate
    assert np.mean(facing) >= 0.8, facing


def test_nobody_on_photos_without_people(predictor: PosePredictor, data_root: Path) -> None:
    folder = data_root / "backgrounds" / "kodak"
    paths = sorted(folder.glob("*"))[:6] if folder.is_dir() else []
    if not paths:
        pytest.skip(f"no background photos under {folder}")
    for path in paths:
        res = predictor.predict_image(load_image(path))
        assert not res.valid[0] and res.scores[0] == 0.0 and res.keypoints2d is None, path.name


def test_method_is_checked_and_a_box_restricts_the_search(predictor: PosePredictor, photos: list[Path]) -> None:
    img = load_image(photos[0])
    with pytest.raises(ValueError, match="method must be one of"):
        predictor.predict_image(img, method="magic")
    h, w = img.shape[:2]
    res = predictor.predict_image(img, box=(0, 0, 40, 40))  # a corner with nobody in it: the box is used as given
    assert res.valid[0] and res.method == "g" and res.keypoints2d is None
    assert np.allclose(res.boxes[0], [0, 0, 40, 40], atol=1)
    full = predictor.predict_image(img, box=(0, 0, w, h))
    assert full.method == "fit" and full.keypoints2d is not None


def test_clip_fit_is_smooth_and_reports_keypoints(predictor: PosePredictor, photos: list[Path]) -> None:
    img = load_image(photos[0])
    frames = np.stack([img] * 8)
    res = predictor.predict_clip(frames, fps=30.0)
    assert res.method == "fit" and res.valid.all() and res.keypoints2d.shape == (8, 17, 2)
    # the same frame eight times: the fitted poses agree with one another (MediaPipe's tracked keypoints
    # still move by a few px between the frames, and joints it barely sees move most in depth)
    spread = np.linalg.norm(res.joints3d - res.joints3d.mean(0), axis=-1)
    assert spread.mean() < 25.0, spread.mean()


def _rot_x(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


@pytest.mark.parametrize(("pitch", "expected"), [(0, "upright"), (20, "upright"), (45, "leaning"), (90, "horizontal"),
                                                 (-80, "horizontal"), (180, "horizontal")])  # fmt: skip
def test_posture_bins_follow_the_torsos_lean_from_the_cameras_up_axis(pitch: float, expected: str) -> None:
    """The benchmark's posture split: a standing skeleton (camera frame, y down) tipped by `pitch` degrees
    about the camera's x axis lands in the bin of its lean, and its torso direction turns by exactly that."""
    from nlrd.skeleton import H36M_17

    standing = np.zeros((17, 3))  # hips at y = 0, shoulders 500 mm above them, 3 m from the camera
    for j, name in enumerate(H36M_17.joint_names):
        y = -500.0 if "shoulder" in name else (0.0 if "hip" in name else -200.0)
        x = (-150.0 if name.startswith("r_") else 150.0) if name.startswith(("l_", "r_")) else 0.0
        standing[j] = (x, y, 3000.0)
    tipped = standing @ _rot_x(pitch).T
    up0, up1 = torso_up(standing), torso_up(tipped)
    np.testing.assert_allclose(np.linalg.norm(up1), 1.0, atol=1e-9)
    np.testing.assert_allclose(up0, [0.0, -1.0, 0.0], atol=1e-9)
    assert abs(angle_deg(up0, up1) - abs(pitch)) < 1e-6
    assert posture_bin(up1).startswith(expected)
