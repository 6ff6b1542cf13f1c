"""nlrd.fit: the pose-prior fit to 2D keypoints (shipped prior and start network; no data folder needed)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nlrd.fit import FitConfig, PoseFitter, load_start_net, torso_faces_camera, torso_facing
from nlrd.fit.geometry import ancestor_matrix, kabsch, project, solve_translation
from nlrd.fit.synthetic import ObservationNoise, observe
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.priors import PosePrior
from nlrd.skeleton import H36M_17
from nlrd.transforms import flip_pose, rot_x, rot_y

IMAGE = (720, 1280)  # H, W
FOCAL = 1280.0


@pytest.fixture(scope="module")
def prior() -> PosePrior:
    return PosePrior.from_pretrained()


@pytest.fixture(scope="module")
def fitter(prior: PosePrior) -> PoseFitter:
    return PoseFitter(prior, load_start_net())


@pytest.fixture(scope="module")
def poses(prior: PosePrior) -> np.ndarray:
    """(6, J, 3) canonical poses the prior can represent, facing the camera (torso normal towards -z)."""
    z = prior.sample(64, seed=3)
    joints = prior.decode(z)
    facing = torso_facing(joints)
    return joints[np.argsort(-facing)[:6]]


def project_np(joints: np.ndarray, root: np.ndarray) -> np.ndarray:
    """(B, J, 3) root-relative mm placed at ``root`` (3,) mm -> (B, J, 2) px with the test camera."""
    cam = torch.as_tensor(joints + root, dtype=torch.float32)
    b = cam.shape[0]
    return project(cam, torch.full((b,), FOCAL), torch.tensor([[IMAGE[1] / 2, IMAGE[0] / 2]]).expand(b, 2)).numpy()


ROOT = np.array([150.0, 80.0, 4000.0])


# ----------------------------------------------------------------------------------------- geometry
def test_kabsch_recovers_rotation_and_scale() -> None:
    rng = np.random.default_rng(0)
    src = torch.as_tensor(rng.normal(size=(3, 17, 3)), dtype=torch.float32)
    rot = torch.as_tensor(np.stack([rot_x(30) @ rot_y(100), rot_y(-170), np.eye(3)]), dtype=torch.float32)
    dst = 1.3 * src @ rot.transpose(1, 2) + 5.0
    r, s = kabsch(src, dst)
    np.testing.assert_allclose(r.numpy(), rot.numpy(), atol=1e-4)
    np.testing.assert_allclose(s.numpy(), 1.3, rtol=1e-4)
    # A mirror image is not a rotation: the result stays proper.
    mirrored = dst * torch.tensor([1.0, 1.0, -1.0])
    assert torch.allclose(torch.linalg.det(kabsch(src, mirrored)[0]), torch.ones(3), atol=1e-4)


def test_solve_translation_exact_for_clean_keypoints(poses: np.ndarray) -> None:
    kp = project_np(poses, ROOT)
    b = len(poses)
    t = solve_translation(torch.as_tensor(poses), torch.as_tensor(kp), torch.ones(b, 17), torch.full((b,), FOCAL),
                          torch.tensor([[IMAGE[1] / 2, IMAGE[0] / 2]]).expand(b, 2))  # fmt: skip
    np.testing.assert_allclose(t.numpy(), np.broadcast_to(ROOT, (b, 3)), rtol=1e-3, atol=0.5)


def test_ancestor_matrix_walks_the_tree() -> None:
    a = ancestor_matrix(H36M_17)
    # the left wrist sits on l_shoulder <- thorax <- spine: bones 7, 8, 11, 12, 13
    assert set(np.flatnonzero(a[H36M_17.index("l_wrist")])) == {7, 8, 11, 12, 13}
    assert a[0].sum() == 0


def test_torso_faces_camera(poses: np.ndarray) -> None:
    assert torso_faces_camera(poses).all()
    turned = poses @ rot_y(180).T
    assert not torso_faces_camera(turned).any()
    with pytest.raises(ValueError, match="17, 3"):
        torso_faces_camera(np.zeros((2, 16, 3)))


# ----------------------------------------------------------------------------------------- the fit
def test_fit_recovers_a_projected_pose(fitter: PoseFitter, poses: np.ndarray) -> None:
    kp = project_np(poses, ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    cue = fitter.fit(kp, conf, IMAGE, world3d=poses)
    # Measured: PA-MPJPE 8-15 mm and MPJPE 10-20 mm with the exact cue (the prior's own poses, clean keypoints).
    assert pa_mpjpe(cue.joints3d, poses) < 25.0
    assert mpjpe(cue.joints3d, poses) < 35.0
    assert np.abs(cue.joints2d - kp).mean() < 4.0  # px
    np.testing.assert_allclose(cue.translation, np.broadcast_to(ROOT, cue.translation.shape), atol=150.0)
    assert np.all(cue.facing > 0) and cue.start_source.shape == (len(poses),)
    only2d = fitter.fit(kp, conf, IMAGE)
    # Measured: PA-MPJPE ~30-45 mm from the keypoints alone (depth is a guess).
    assert pa_mpjpe(only2d.joints3d, poses) < 60.0
    assert np.abs(only2d.joints2d - kp).mean() < 4.0
    for r in (cue, only2d):
        assert r.joints3d.shape == r.joints3d_canonical.shape == (len(poses), 17, 3)
        assert r.z.shape == (len(poses), 32) and np.abs(r.z).max() <= 1.0
        assert r.rotation.shape == (len(poses), 3, 3) and r.scale.shape == r.loss.shape == (len(poses),)


def test_image_shift_moves_the_root_not_the_pose(fitter: PoseFitter, poses: np.ndarray) -> None:
    kp = project_np(poses[:3], ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    a = fitter.fit(kp, conf, IMAGE, world3d=poses[:3])
    b = fitter.fit(kp + np.array([40.0, -25.0]), conf, IMAGE, world3d=poses[:3])
    depth = a.translation[:, 2]
    expected = a.translation[:, :2] + np.array([40.0, -25.0]) * (depth / FOCAL)[:, None]
    np.testing.assert_allclose(b.translation[:, :2], expected, rtol=0.1, atol=20.0)
    # Off-axis the camera sees the body from a slightly other direction (~2 degrees), so the pose moves a little.
    assert mpjpe(a.joints3d, b.joints3d) < 15.0


def test_mirrored_keypoints_give_the_mirrored_pose(fitter: PoseFitter, poses: np.ndarray) -> None:
    root = np.array([0.0, 0.0, 4000.0])  # on the optical axis, so the image mirror is a 3D mirror
    kp = project_np(poses[:4], root)
    conf = np.ones(kp.shape[:2], np.float32)
    a = fitter.fit(kp, conf, IMAGE, world3d=poses[:4])
    perm = H36M_17.flip_permutation
    kp_m = kp[:, perm] * np.array([-1.0, 1.0]) + np.array([IMAGE[1], 0.0])
    b = fitter.fit(kp_m, conf, IMAGE, world3d=flip_pose(poses[:4]))
    assert mpjpe(flip_pose(a.joints3d), b.joints3d) < 20.0
    assert np.all(torso_faces_camera(a.joints3d) == torso_faces_camera(b.joints3d))


def test_missing_joints_are_ignored(fitter: PoseFitter, poses: np.ndarray) -> None:
    kp = project_np(poses[:2], ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    conf[:, [3, 13]] = 0.0
    a = fitter.fit(kp, conf, IMAGE, world3d=poses[:2])
    moved = kp.copy()
    moved[:, [3, 13]] = [[5.0, 9000.0], [-300.0, 2.0]]
    b = fitter.fit(moved, conf, IMAGE, world3d=poses[:2])
    np.testing.assert_array_equal(a.joints3d, b.joints3d)
    np.testing.assert_array_equal(a.translation, b.translation)


def test_deterministic(prior: PosePrior, poses: np.ndarray) -> None:
    kp = project_np(poses[:2], ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    a = PoseFitter(prior, load_start_net()).fit(kp, conf, IMAGE)
    b = PoseFitter(prior, load_start_net()).fit(kp, conf, IMAGE)
    np.testing.assert_array_equal(a.joints3d, b.joints3d)
    np.testing.assert_array_equal(a.z, b.z)


def test_cue_decides_front_and_back(fitter: PoseFitter, poses: np.ndarray) -> None:
    """The depth-mirrored twin projects to almost the same keypoints; the 3D cue picks the side."""
    p = poses[:4]
    twin = p * np.array([1.0, 1.0, -1.0])  # mirrored through the image plane: facing away
    kp = project_np(p, ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    rng = np.random.default_rng(0)
    noisy = lambda x: x + np.concatenate([np.zeros((len(x), 1, 3)), rng.normal(0, 40, (len(x), 16, 3))], 1)  # noqa: E731
    real = fitter.fit(kp, conf, IMAGE, world3d=noisy(p))
    mirror = fitter.fit(kp, conf, IMAGE, world3d=noisy(twin))
    assert torso_faces_camera(real.joints3d).all()
    assert not torso_faces_camera(mirror.joints3d).any()
    # ...while both explain the keypoints.
    assert np.abs(mirror.joints2d - kp).mean() < 8.0


def test_temporal_smooths_a_noisy_clip(fitter: PoseFitter, poses: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    clip = np.repeat(poses[:1], 8, axis=0)
    kp = project_np(clip, ROOT) + rng.normal(0, 6.0, (8, 17, 2))
    conf = np.ones(kp.shape[:2], np.float32)
    single = fitter.fit(kp, conf, IMAGE, world3d=clip)
    smooth = fitter.fit(kp, conf, IMAGE, world3d=clip, temporal=True)
    jitter = lambda j: np.abs(np.diff(j + 0.0, n=2, axis=0)).mean()  # noqa: E731
    assert jitter(smooth.joints3d) < jitter(single.joints3d)


def test_synthetic_observations_are_consistent() -> None:
    rng = np.random.default_rng(0)
    world = np.zeros((4, 17, 3))
    world[:, 1:] = rng.normal(0, 200, (4, 16, 3))
    obs = observe(world, np.broadcast_to(np.eye(3), (4, 3, 3)), rng, ObservationNoise(kp_noise=(0.0, 0.0), outlier_prob=0.0,
                                                                                   missing_prob=0.0))  # fmt: skip
    cam = torch.as_tensor(obs.joints3d + obs.translation[:, None])
    principal = torch.as_tensor(obs.image_size[:, ::-1] / 2.0, dtype=torch.float32)
    np.testing.assert_allclose(project(cam, torch.as_tensor(obs.focal), principal).numpy(), obs.joints2d, atol=1e-2)
    np.testing.assert_allclose(obs.joints3d, obs.canonical * obs.scale[:, None, None], rtol=0.2, atol=1.0)


# ----------------------------------------------------------------------------------------- bad inputs
def test_bad_inputs_raise(fitter: PoseFitter, poses: np.ndarray) -> None:
    kp = project_np(poses[:2], ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    nan = kp.copy()
    nan[0, 3, 0] = np.nan
    cases = [
        (dict(joints2d=nan), "NaN"),
        (dict(joints2d=kp[:, :16]), r"joints2d \(B, J, 2\)"),
        (dict(joints2d=kp[:0], conf=conf[:0]), "B = 0"),
        (dict(conf=np.zeros_like(conf)), "fewer than"),
        (dict(conf=conf[:1]), r"conf \(B, J\)"),
        (dict(conf=conf * 2), r"\[0, 1\]"),
        (dict(image_size=(0, 640)), "image_size"),
        (dict(image_size=(480, 640, 3)), "image_size"),
        (dict(world3d=np.zeros((2, 17, 2))), "world3d"),
        (dict(z_start=np.full((2, 32), 3.0)), r"\[-1, 1\]"),
        (dict(z_start=np.zeros((2, 31))), "z_start"),
        (dict(joints2d="abc"), "joints2d"),
    ]
    for override, match in cases:
        args = dict(joints2d=kp, conf=conf, image_size=IMAGE) | override
        extra = {k: args.pop(k) for k in ("world3d", "z_start") if k in args}
        with pytest.raises(ValueError, match=match):
            fitter.fit(args["joints2d"], args["conf"], args["image_size"], **extra)


def test_start_net_refuses_another_prior(prior: PosePrior) -> None:
    other = PosePrior(copy.deepcopy(prior.encoder), copy.deepcopy(prior.decoder), prior.meta, prior.device)
    with torch.no_grad():
        next(other.decoder.parameters()).add_(1e-3)
    net = load_start_net()
    with pytest.raises(ValueError, match="trained against pose prior"):
        PoseFitter(other, net)
    PoseFitter(prior, net)  # the right prior is accepted


def test_without_start_net_and_with_z_start(prior: PosePrior, poses: np.ndarray) -> None:
    kp = project_np(poses[:2], ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    f = PoseFitter(prior, None, FitConfig(steps=40))
    res = f.fit(kp, conf, IMAGE, z_start=prior.encode(poses[:2]))
    assert set(res.start_source) <= {"z_start"}
    assert pa_mpjpe(res.joints3d, poses[:2]) < 40.0
    with pytest.raises(ValueError, match="no start network"):
        f.learned_start(kp, conf, IMAGE)
