"""The shipped pose and motion priors: public API, numpy round trips, and figures on real test data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nlrd import MotionPrior, PosePrior
from nlrd.priors import CHECKPOINT_DIR, MOTION_CHECKPOINT, POSE_CHECKPOINT


@pytest.fixture(scope="module")
def pose_prior() -> PosePrior:
    return PosePrior.from_pretrained()


@pytest.fixture(scope="module")
def motion_prior(pose_prior: PosePrior) -> MotionPrior:
    return MotionPrior.from_pretrained(pose=pose_prior)


def test_shipped_checkpoints_exist_and_carry_metadata() -> None:
    from nlrd.checkpoint import read_metadata

    for name, stage in ((POSE_CHECKPOINT, "pose_aae"), (MOTION_CHECKPOINT, "motion_ae")):
        meta = read_metadata(CHECKPOINT_DIR / name)
        assert meta["stage"] == stage and meta["skeleton"] == "h36m_17"
        licences = " ".join(s["licence"] for s in meta["data_sources"])
        assert "CC BY-NC 4.0" in licences and "CMU" in " ".join(s["name"] for s in meta["data_sources"])


def test_sample_decode_encode(pose_prior: PosePrior) -> None:
    z = pose_prior.sample(16, seed=3)
    assert z.shape == (16, 32) and z.dtype == np.float32 and np.abs(z).max() <= 1
    np.testing.assert_array_equal(z, pose_prior.sample(16, seed=3))
    j = pose_prior.decode(z)
    assert j.shape == (16, 17, 3) and np.isfinite(j).all()
    np.testing.assert_allclose(j[:, 0], 0.0, atol=1e-4)
    z2 = pose_prior.encode(j)
    assert z2.shape == (16, 32) and np.abs(z2).max() <= 1
    # Decoding the re-encoded latents lands near the same poses (the cycle the prior was trained for).
    assert np.linalg.norm(pose_prior.decode(z2) - j, axis=-1).mean() < 60.0
    t = pose_prior.decode(torch.from_numpy(z))
    assert isinstance(t, torch.Tensor)


def test_bad_inputs_raise_value_error(pose_prior: PosePrior, motion_prior: MotionPrior) -> None:
    with pytest.raises(ValueError, match="expected shape"):
        pose_prior.encode(np.zeros((4, 16, 3)))
    with pytest.raises(ValueError, match="NaN"):
        pose_prior.decode(np.full((2, 32), np.nan))
    with pytest.raises(ValueError, match="expected shape"):
        motion_prior.encode(np.zeros((2, 29, 17, 3)))
    with pytest.raises(ValueError):
        PosePrior.from_pretrained(CHECKPOINT_DIR / MOTION_CHECKPOINT)  # wrong stage


def test_real_test_poses_reconstruct(pose_prior: PosePrior, motion_prior: MotionPrior, data_root: Path,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    from nlrd.data.poses import ensure_prepared, load_split

    prepared = Path("data") if (Path("data") / "mocap.npz").exists() else tmp_path_factory.mktemp("prep")
    ensure_prepared(data_root, prepared)
    test = load_split(prepared, "test")
    y = test.joints[::10]
    err = np.linalg.norm(pose_prior.decode(pose_prior.encode(y)) - y, axis=-1).mean()
    assert err < 25.0, err
    w = test.windows(30, stride=60)
    merr = np.linalg.norm(motion_prior.decode(motion_prior.encode(w)) - w, axis=-1).mean()
    assert merr < 40.0, merr
    v = motion_prior.sample(4, seed=0)
    assert v.shape == (4, 128) and np.abs(v).max() <= 1
    assert motion_prior.decode(v).shape == (4, 30, 17, 3)
