"""Pose and motion auto-encoder modules: shapes, ranges, gradients, NaN-free, bone lengths by construction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlrd.kinematics import bone_lengths
from nlrd.models.motion_ae import MotionAEConfig, MotionAutoEncoder
from nlrd.models.pose_aae import LatentCritic, PoseAAEConfig, PoseAutoEncoder, PoseCritic
from nlrd.skeleton import H36M_17

CONFIGS = [PoseAAEConfig(), PoseAAEConfig(group_width=16, part_width=32, hidden=64, depth=1, latent_dim=8)]


def poses(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    j = torch.randn(n, 17, 3, generator=g) * 300
    return j - j[:, :1]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["default", "small"])
def test_pose_aae_shapes_range_and_gradients(cfg: PoseAAEConfig) -> None:
    torch.manual_seed(0)
    ae = PoseAutoEncoder(cfg)
    y = poses(8)
    zp = torch.rand(5, cfg.latent_dim) * 2 - 1
    z, y_rec, y_prior, z_cyc = ae(y, zp)
    assert z.shape == (8, cfg.latent_dim) and z.abs().max() <= 1
    assert y_rec.shape == (8, 17, 3) and y_prior.shape == (5, 17, 3) and z_cyc.shape == (5, cfg.latent_dim)
    # Decoded poses have the canonical bone lengths whatever z is.
    np.testing.assert_allclose(bone_lengths(y_prior.detach().numpy()), np.broadcast_to(H36M_17.bone_lengths, (5, 17)),
                               atol=1e-2)  # fmt: skip
    loss = sum(t.abs().mean() for t in (z, y_rec, y_prior, z_cyc))
    loss.backward()
    grads = [p.grad for p in ae.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert LatentCritic(cfg)(z).shape == (8,)
    assert PoseCritic(cfg)(y_rec).shape == (8,)


def test_pose_encoder_batches_over_leading_dims_and_is_deterministic() -> None:
    torch.manual_seed(0)
    ae = PoseAutoEncoder(CONFIGS[1]).eval()
    y = poses(6).view(2, 3, 17, 3)
    z = ae.encoder(y)
    assert z.shape == (2, 3, 8)
    torch.testing.assert_close(z.view(6, 8), ae.encoder(y.view(6, 17, 3)))
    assert ae.decoder(z).shape == (2, 3, 17, 3)


def test_motion_ae_shapes_and_range() -> None:
    cfg = MotionAEConfig(hidden=16, motion_latent_dim=24)
    m = MotionAutoEncoder(cfg)
    z = torch.rand(4, 30, 32) * 2 - 1
    v, z_rec = m(z)
    assert v.shape == (4, 24) and v.abs().max() <= 1
    assert z_rec.shape == (4, 30, 32) and z_rec.abs().max() <= 1
    (v.sum() + z_rec.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)
    with pytest.raises(ValueError, match=r"\(B, T, 32\)"):
        m.encoder(torch.zeros(4, 30, 31))
