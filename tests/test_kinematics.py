"""Kinematics: exact round trips, view invariance, gradients, canonical skeleton."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlrd.kinematics import bone_lengths, forward_kinematics, joints_to_bones, relength, torso_frame
from nlrd.skeleton import H36M_17, get_skeleton
from nlrd.transforms import rot_x, rot_y, rot_z


def random_poses(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    j = rng.normal(size=(*shape, 17, 3)) * 300.0
    return j - j[..., :1, :]


def local_slots() -> list[int]:
    return [j for j in range(1, 17) if j not in H36M_17.view_variant_joints]


def test_round_trip_with_own_lengths_is_exact() -> None:
    j = random_poses((6, 5))
    out = forward_kinematics(joints_to_bones(j), lengths=bone_lengths(j))
    assert out.shape == j.shape
    assert np.abs(out - j).max() < 1e-4


def test_round_trip_torch_float64_and_leading_dims() -> None:
    j = torch.from_numpy(random_poses((2, 3, 4), seed=1))
    out = forward_kinematics(joints_to_bones(j), lengths=bone_lengths(j))
    assert isinstance(out, torch.Tensor)
    assert (out - j).abs().max().item() < 1e-4


def test_bones_are_unit_vectors() -> None:
    b = joints_to_bones(random_poses((10,)))
    np.testing.assert_allclose(np.linalg.norm(b, axis=-1), 1.0, atol=1e-9)


def test_local_slots_invariant_to_view_and_torso_slots_carry_it() -> None:
    j = random_poses((8,), seed=2)
    rot = rot_y(73) @ rot_x(-25) @ rot_z(12)
    b0, b1 = joints_to_bones(j), joints_to_bones(j @ rot.T)
    np.testing.assert_allclose(b1[:, local_slots()], b0[:, local_slots()], atol=1e-9)
    variant = [0, *H36M_17.view_variant_joints]
    np.testing.assert_allclose(b1[:, variant], b0[:, variant] @ rot.T, atol=1e-9)


def test_torso_frame_is_rotation() -> None:
    b = torch.from_numpy(joints_to_bones(random_poses((20,), seed=3)))
    r = torso_frame(b[:, 0], b[:, 4], b[:, 1])
    eye = torch.eye(3, dtype=r.dtype).expand_as(r)
    assert torch.allclose(r.transpose(-1, -2) @ r, eye, atol=1e-9)
    assert torch.allclose(torch.linalg.det(r), torch.ones(20, dtype=r.dtype), atol=1e-9)


def test_canonical_fk_has_canonical_lengths() -> None:
    out = forward_kinematics(joints_to_bones(random_poses((4,), seed=4)))
    np.testing.assert_allclose(bone_lengths(out), np.broadcast_to(H36M_17.bone_lengths, (4, 17)), atol=1e-3)


def test_relength_keeps_directions() -> None:
    j = random_poses((3,), seed=5)
    r = relength(j)
    np.testing.assert_allclose(bone_lengths(r)[:, 1:], np.broadcast_to(H36M_17.bone_lengths[1:], (3, 16)), atol=1e-3)
    for child, parent in [(c, p) for c, p in enumerate(H36M_17.parents) if p >= 0]:
        d0 = j[:, child] - j[:, parent]
        d1 = r[:, child] - r[:, parent]
        cos = (d0 * d1).sum(-1) / np.linalg.norm(d0, axis=-1) / np.linalg.norm(d1, axis=-1)
        np.testing.assert_allclose(cos, 1.0, atol=1e-9)


def test_gradients_flow_through_fk() -> None:
    b = torch.randn(5, 17, 3, dtype=torch.float64, requires_grad=True)
    target = torch.from_numpy(random_poses((5,), seed=6))
    loss = (forward_kinematics(b) - target).abs().mean()
    loss.backward()
    assert b.grad is not None and torch.isfinite(b.grad).all() and b.grad.abs().sum() > 0
    j = torch.from_numpy(random_poses((5,), seed=7)).requires_grad_(True)
    joints_to_bones(j).sum().backward()
    assert j.grad is not None and torch.isfinite(j.grad).all()


def test_skeleton_is_symmetric_and_consistent() -> None:
    sk = get_skeleton("h36m_17")
    lens = sk.bone_lengths
    for left, right in sk.left_right_pairs:
        assert lens[left] == pytest.approx(lens[right])
        # Mirrored joints hang from mirrored (or the same) parents.
        assert sk.flip_permutation[sk.parents[left]] == sk.parents[right]
    assert sk.num_joints == 17 and lens[0] == 0 and (lens[1:] > 0).all()
    perm = sk.flip_permutation
    assert (perm[perm] == np.arange(17)).all()
    with pytest.raises(ValueError, match="unknown skeleton"):
        get_skeleton("smpl_24")


def test_wrong_shape_is_value_error() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., 17, 3\)"):
        joints_to_bones(np.zeros((4, 16, 3)))
