"""The view distribution of the priors (nlrd.views) and the latent-space check that keeps models of
different priors apart."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from nlrd.data.synthetic.camera import look_rotation
from nlrd.priors import LEGACY_VIEWS, PosePrior
from nlrd.stages.common import augment_view, view_distribution
from nlrd.transforms import rot_x, rot_z
from nlrd.views import AZIMUTH_ONLY, CAMERA_VIEWS, VIEW_BINS, apply_rotations, random_view_rotations

UP = np.array([0.0, -1.0, 0.0])  # the world's up (y points down)


def test_random_views_are_seeded_rotations() -> None:
    a = random_view_rotations(4096, torch.Generator().manual_seed(3))
    b = random_view_rotations(4096, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    eye = torch.eye(3).expand_as(a)
    assert torch.allclose(a @ a.transpose(1, 2), eye, atol=1e-5)
    assert torch.allclose(torch.det(a), torch.ones(len(a)), atol=1e-5)


def test_camera_views_cover_what_photos_show() -> None:
    """About 70% upright bodies under -30..+60 degree cameras, a fifth lying, a tenth free."""
    r = random_view_rotations(20000, torch.Generator().manual_seed(0)).double().numpy()
    up_cam = r @ UP  # the body's up axis in the camera frame (upright: camera elevation shows in it)
    tilt = np.degrees(np.arccos(np.clip(-up_cam[:, 1], -1, 1)))  # angle between body up and image up
    assert 0.62 < np.mean(tilt <= 61.0) < 0.85  # upright draws (70%) + free draws that land upright
    assert np.mean(tilt >= 80.0) > 0.15  # lying or inverted bodies are well represented
    assert np.mean(tilt >= 150.0) > 0.005  # upside down happens (free draws)
    az_only = random_view_rotations(2000, torch.Generator().manual_seed(0), AZIMUTH_ONLY).numpy()
    assert np.allclose(az_only @ UP, UP, atol=1e-5)  # the paper's augmentation keeps everyone upright


def test_view_bins_match_the_renderer_convention() -> None:
    by_name = {b.name: b for b in VIEW_BINS}
    r = by_name["elevation +30"].rotations(6, seed=1)
    # strip the azimuth: rot_x(30) @ rot_y(a) is what the renderer's look_rotation builds
    for m in r:
        a = np.degrees(np.arctan2(m[0, 2], m[0, 0]))
        assert np.allclose(m, look_rotation(a, 30.0, 0.0), atol=1e-9)
    lying = by_name["lying on back/front"].rotations(4, seed=0)
    body_up_cam = lying @ UP
    assert np.allclose(body_up_cam[:, 1], 0.0, atol=1e-9)  # level camera: a lying body's up axis is horizontal
    pose = np.random.default_rng(0).normal(size=(4, 17, 3))
    assert np.allclose(apply_rotations(pose, lying), np.einsum("njk,nlk->njl", pose, lying), atol=1e-5)
    assert np.allclose(rot_x(90.0) @ UP, [0, 0, -1], atol=1e-12) and np.allclose(rot_z(90.0) @ UP, [1, 0, 0], atol=1e-12)


def test_augment_view_with_views_keeps_bone_lengths() -> None:
    joints = torch.randn(64, 17, 3) * 300
    out = augment_view(joints, torch.Generator().manual_seed(0), views=CAMERA_VIEWS, flip_prob=0.0)
    assert torch.allclose(out.norm(dim=-1), joints.norm(dim=-1), rtol=1e-4, atol=1e-3)
    assert view_distribution("azimuth") is None and view_distribution("camera") is CAMERA_VIEWS
    with pytest.raises(ValueError, match="views must be one of"):
        view_distribution("sideways")


def test_models_of_another_latent_space_are_refused(priors: tuple[PosePrior, object]) -> None:
    pose = priors[0]
    legacy_meta: dict = {"extra": {}}
    if pose.views == LEGACY_VIEWS:
        pose.check_built_on(legacy_meta, "old model")  # models from before latent spaces were recorded
    pose.check_built_on({"extra": {"latent_space": pose.latent_space}}, "same prior")
    with pytest.raises(ValueError, match="cannot be mixed"):
        pose.check_built_on({"extra": {"latent_space": "camera-000000000000"}}, "other prior's model")
    # a view prior with other encoder weights is another latent space, and refuses unrecorded (old) models
    other = copy.copy(pose)
    other.encoder = copy.deepcopy(pose.encoder)
    with torch.no_grad():
        next(other.encoder.parameters()).add_(1e-3)
    other.meta = {**pose.meta, "config": {**pose.meta.get("config", {}), "stage": {"views": "camera"}}}
    other = PosePrior(other.encoder, pose.decoder, other.meta, pose.device)
    assert other.views == "camera" and other.latent_space != pose.latent_space
    with pytest.raises(ValueError, match="upright-only"):
        other.check_built_on(legacy_meta, "old model")
    with pytest.raises(ValueError, match="cannot be mixed"):
        other.check_built_on({"extra": {"latent_space": pose.latent_space}}, "old model")


@pytest.mark.parametrize("style", ["source", "target"])
def test_renderer_cameras_span_the_priors_views(style: str) -> None:
    """Both styles draw cameras over the views the pose prior covers (elevation -30..+60, frames rolled up
    to 15 degrees), so every rendered label lies inside what Dp can output."""
    from nlrd.data.synthetic import get_style
    from nlrd.data.synthetic.camera import sample_camera

    ranges = get_style(style).camera
    rng = np.random.default_rng(0)
    pose = np.zeros((17, 3))
    pose[1:, 1] = -np.linspace(100.0, 1600.0, 16)  # any upright extent will do for the crop
    cams = [sample_camera(pose, ranges, rng, 64) for _ in range(600)]
    el = np.array([c.elevation for c in cams])
    roll = np.array([c.roll for c in cams])
    lo, hi = CAMERA_VIEWS.elevation
    assert el.min() >= lo and el.max() <= hi
    assert el.min() < lo + 5 and el.max() > hi - 5  # the steep ends are drawn, not just allowed
    assert np.abs(roll).max() <= min(15.0, CAMERA_VIEWS.roll_max_deg)
    assert roll.min() < -13 and roll.max() > 13


def test_renders_for_an_upright_prior_keep_its_views() -> None:
    """What the app renders to show an upright-only prior's models (relation previews, target clips) stays on
    the level, version-1 cameras; a view prior gets the full range."""
    from nlrd.adapt_session import target_style
    from nlrd.data.synthetic.camera import UPRIGHT_ELEVATION, UPRIGHT_ROLL

    upright = target_style(views=LEGACY_VIEWS).camera
    assert upright.elevation == UPRIGHT_ELEVATION and upright.roll == UPRIGHT_ROLL
    full = target_style(views="camera").camera
    assert full.elevation == CAMERA_VIEWS.elevation and full.roll == (-15.0, 15.0)
    assert upright.distance == full.distance and upright.focal_full == full.focal_full
