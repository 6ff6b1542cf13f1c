"""nlrd.fit: the pose-prior fit to 2D keypoints (shipped prior and start network; no data folder needed)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from nlrd.fit import FitConfig, PoseFitter, load_start_net, torso_faces_camera, torso_facing
from nlrd.fit.geometry import ancestor_matrix, bone_groups, kabsch, project, solve_translation
from nlrd.fit.synthetic import ObservationNoise, observe
from nlrd.kinematics import bone_lengths
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
def test_fit_recovers_a_projected_pose(prior: PosePrior, fitter: PoseFitter, poses: np.ndarray) -> None:
    kp = project_np(poses, ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    # From the learned start alone (not from Ep(world3d), which starts next to the truth here) and run to
    # convergence without the pull towards the start, the fit finds the pose it was shown (measured
    # PA-MPJPE 1.4-4.2 mm per pose, keypoints 0.3 px off on average).
    cfg = FitConfig(steps=100, w_start=0.0, encode_world3d=False)
    converged = PoseFitter(prior, fitter.start_net, cfg).fit(kp, conf, IMAGE, world3d=poses)
    assert pa_mpjpe(converged.joints3d, poses, reduce=False).max() < 8.0
    assert np.abs(converged.joints2d - kp).mean() < 1.5  # px
    # The default fit stops early and keeps z near its start, which is what noisy keypoints need
    # (benchmarks/fit_floor.py); with this exact cue the Ep(world3d) start wins (measured 3.9-8.4 mm).
    cue = fitter.fit(kp, conf, IMAGE, world3d=poses)
    assert pa_mpjpe(cue.joints3d, poses, reduce=False).max() < 15.0
    np.testing.assert_allclose(cue.translation, np.broadcast_to(ROOT, cue.translation.shape), atol=150.0)
    assert np.all(cue.facing > 0) and cue.start_source.shape == (len(poses),)
    only2d = fitter.fit(kp, conf, IMAGE)
    # From the keypoints alone depth is a guess: measured 32-52 mm.
    assert pa_mpjpe(only2d.joints3d, poses, reduce=False).max() < 70.0
    assert np.abs(only2d.joints2d - kp).mean() < 6.0
    for r in (cue, only2d):
        assert r.joints3d.shape == r.joints3d_canonical.shape == (len(poses), 17, 3)
        assert r.z.shape == (len(poses), 32) and np.abs(r.z).max() <= 1.0
        assert r.rotation.shape == (len(poses), 3, 3) and r.scale.shape == r.loss.shape == (len(poses),)
        np.testing.assert_allclose(r.rotation @ r.rotation.transpose(0, 2, 1), np.broadcast_to(np.eye(3), (len(poses), 3, 3)),
                                   atol=1e-4)  # fmt: skip


def test_image_shift_moves_the_root_not_the_pose(fitter: PoseFitter, poses: np.ndarray) -> None:
    kp = project_np(poses[:3], ROOT)
    conf = np.ones(kp.shape[:2], np.float32)
    a = fitter.fit(kp, conf, IMAGE, world3d=poses[:3])
    b = fitter.fit(kp + np.array([40.0, -25.0]), conf, IMAGE, world3d=poses[:3])
    depth = a.translation[:, 2]
    expected = a.translation[:, :2] + np.array([40.0, -25.0]) * (depth / FOCAL)[:, None]
    np.testing.assert_allclose(b.translation[:, :2], expected, rtol=0.1, atol=20.0)
    # Off-axis the camera sees the body from a slightly other direction (~2 degrees), so the pose moves a little
    # (measured 5.2 mm; the root within 4 mm of the expected shift).
    assert mpjpe(a.joints3d, b.joints3d) < 10.0


def test_mirrored_keypoints_give_the_mirrored_pose(fitter: PoseFitter, poses: np.ndarray) -> None:
    root = np.array([0.0, 0.0, 4000.0])  # on the optical axis, so the image mirror is a 3D mirror
    kp = project_np(poses[:4], root)
    conf = np.ones(kp.shape[:2], np.float32)
    a = fitter.fit(kp, conf, IMAGE, world3d=poses[:4])
    perm = H36M_17.flip_permutation
    kp_m = kp[:, perm] * np.array([-1.0, 1.0]) + np.array([IMAGE[1], 0.0])
    b = fitter.fit(kp_m, conf, IMAGE, world3d=flip_pose(poses[:4]))
    # Measured 16 mm: the start network and the prior are mirror-symmetric only as far as their training made them.
    assert mpjpe(flip_pose(a.joints3d), b.joints3d) < 30.0
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


def test_cue_decides_depth_order(fitter: PoseFitter, prior: PosePrior) -> None:
    """2D keypoints do not tell whether a limb points towards the camera or away from it (the depth-mirrored
    twin projects to nearly the same keypoints); the 3D cue does."""
    rng = np.random.default_rng(0)
    world = prior.decode(prior.sample(24, seed=0))
    obs = observe(world, np.stack([rot_y(a) for a in rng.uniform(0, 360, 24)]), rng)

    def order_error(fit: np.ndarray) -> float:
        deep = np.abs(obs.joints3d[..., 2]) > 100.0  # joints clearly in front of or behind the pelvis
        return float((np.sign(fit[..., 2]) != np.sign(obs.joints3d[..., 2]))[deep].mean())

    with_cue = fitter.fit(obs.joints2d, obs.conf, obs.image_size, world3d=obs.world3d)
    only2d = fitter.fit(obs.joints2d, obs.conf, obs.image_size)
    # Measured: none of the joints on the wrong side of the pelvis with the cue, 14% without.
    assert order_error(with_cue.joints3d) < 0.03
    assert order_error(only2d.joints3d) > 0.04
    # Both explain the keypoints equally well.
    for r in (with_cue, only2d):
        seen = obs.conf > 0
        assert np.median(np.linalg.norm(r.joints2d - obs.joints2d, axis=-1)[seen]) < 12.0


def test_temporal_smooths_a_noisy_clip(fitter: PoseFitter, poses: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    clip = np.repeat(poses[:1], 8, axis=0)
    kp = project_np(clip, ROOT) + rng.normal(0, 6.0, (8, 17, 2))
    conf = np.ones(kp.shape[:2], np.float32)
    single = fitter.fit(kp, conf, IMAGE, world3d=clip)
    smooth = fitter.fit(kp, conf, IMAGE, world3d=clip, temporal=True)
    jitter = lambda j: np.abs(np.diff(j + 0.0, n=2, axis=0)).mean()  # noqa: E731
    # Measured: pose jitter 11.7 -> 3.6 mm, root 28 -> 1.5 mm per frame^2 (mean absolute second difference).
    assert jitter(smooth.joints3d) < 0.7 * jitter(single.joints3d)
    assert jitter(smooth.translation) < 0.3 * jitter(single.translation)


def test_synthetic_observations_are_consistent() -> None:
    rng = np.random.default_rng(0)
    world = np.zeros((4, 17, 3))
    world[:, 1:] = rng.normal(0, 200, (4, 16, 3))
    clean = ObservationNoise(kp_noise=(0.0, 0.0), outlier_prob=0.0, missing_prob=0.0)
    obs = observe(world, np.broadcast_to(np.eye(3), (4, 3, 3)), rng, clean)
    cam = torch.as_tensor(obs.joints3d + obs.translation[:, None])
    principal = torch.as_tensor(obs.image_size[:, ::-1] / 2.0, dtype=torch.float32)
    np.testing.assert_allclose(project(cam, torch.as_tensor(obs.focal), principal).numpy(), obs.joints2d, atol=1e-2)
    # Proportions: every bone of a group is scaled by the same factor (times the person's scale).
    ratio = bone_lengths(obs.joints3d)[:, 1:] / bone_lengths(obs.canonical)[:, 1:] / obs.scale[:, None]
    groups = bone_groups(H36M_17)[1:]
    for g in np.unique(groups):
        np.testing.assert_allclose(ratio[:, groups == g], ratio[:, groups == g][:, :1].repeat((groups == g).sum(), 1), rtol=1e-4)
    assert 0.8 < ratio.min() and ratio.max() < 1.25
    same = observe(world, np.broadcast_to(np.eye(3), (4, 3, 3)), rng, dataclasses.replace(clean, bone_jitter=0.0))
    np.testing.assert_allclose(same.joints3d, same.canonical * same.scale[:, None, None], atol=1e-3)


@pytest.mark.parametrize("bones", [True, False])
def test_closed_form_gradient_matches_autograd(prior: PosePrior, fitter: PoseFitter, poses: np.ndarray, bones: bool) -> None:
    """The refinement's hand-written energy gradient (the fast path) is the gradient autograd computes."""
    from nlrd.fit.fitter import _Consts, _translation

    f = PoseFitter(prior, fitter.start_net, FitConfig(bone_groups=bones))
    p = poses[:3]
    kp = project_np(p, ROOT) + np.random.default_rng(0).normal(0, 4.0, (3, 17, 2))
    data = f._prepare(kp, np.ones((3, 17), np.float32), IMAGE, p + 30.0, prior.encode(p), None, False)
    k = _Consts(f.config, 17, f.device)
    _, zc, rc, pc = f._candidates(data)
    st = f._start_state(data, pc[:3], zc[:3], rc[:3])
    lin = f._linearize(st.z)
    widths = [32, 3, 2, 1, 1, 3]
    flat = torch.cat([st.z + 0.05, torch.zeros(3, 3), st.uv, st.log_d[:, None] + 0.1, st.log_s[:, None] - 0.05,
                      st.log_g + 0.1], dim=1)  # fmt: skip
    rot_t = st.rot.transpose(1, 2)
    auto = f._autograd_energy_grad(data, k, lin, flat, widths, rot_t, st.z)
    z, _, uv, log_d, log_s, log_g = flat.split(widths, dim=1)
    energy, closed = f._linear_energy_grad(data, k, lin, z, rot_t, uv, log_d[:, 0], log_s[:, 0], log_g, st.z, need_energy=True)
    np.testing.assert_allclose(closed.numpy(), auto.numpy(), atol=1e-5 * float(auto.abs().max()) + 1e-6)
    own, canon = lin.pose(z, log_s[:, 0], log_g)
    expected = f._energy(data, k, own @ rot_t, canon @ rot_t, _translation(uv, log_d[:, 0], k), z, log_s[:, 0], log_g, st.z)
    np.testing.assert_allclose(energy.numpy(), expected.numpy(), rtol=1e-5)


@pytest.mark.parametrize("bones", [True, False])
def test_numpy_steps_match_torch_steps(prior: PosePrior, fitter: PoseFitter, poses: np.ndarray, bones: bool) -> None:
    """The float64 numpy refinement takes the same Adam steps as the torch one (one person, a batch, a clip)."""
    kp = project_np(poses[:5], ROOT) + np.random.default_rng(1).normal(0, 4.0, (5, 17, 2))
    conf = np.random.default_rng(2).uniform(0.3, 1.0, (5, 17)).astype(np.float32)
    cue = poses[:5] + np.random.default_rng(3).normal(0, 20.0, (5, 17, 3))
    base = dataclasses.replace(fitter.config, bone_groups=bones)
    fast = PoseFitter(prior, fitter.start_net, dataclasses.replace(base, numpy_steps=True))
    slow = PoseFitter(prior, fitter.start_net, dataclasses.replace(base, numpy_steps=False))
    for rows, temporal in ((slice(0, 1), False), (slice(0, 5), False), (slice(0, 5), True)):
        args = (kp[rows], conf[rows], IMAGE)
        kw = dict(world3d=cue[rows], z_start=prior.encode(poses[rows] + 15.0), temporal=temporal)
        a, b = fast.fit(*args, **kw), slow.fit(*args, **kw)
        np.testing.assert_allclose(a.joints3d, b.joints3d, atol=0.05)
        np.testing.assert_allclose(a.loss, b.loss, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a.rotation, b.rotation, atol=1e-4)


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
    assert pa_mpjpe(res.joints3d, poses[:2]) < 15.0  # measured 5.7 mm
    with pytest.raises(ValueError, match="no start network"):
        f.learned_start(kp, conf, IMAGE)
