"""Joints <-> unit bone vectors with a view-variant torso, and forward kinematics.

The representation follows the paper's supplementary (section 5a). For a root-relative pose
``joints (..., J, 3)`` in mm the bone-vector tensor ``bones (..., J, 3)`` holds unit vectors:

- slot 0 (the root has no bone of its own): the direction pelvis -> torso joint (thorax), in the
  camera frame;
- slots of the skeleton's view-variant joints (the two hips): their bone direction from the
  pelvis, in the camera frame;
- every other slot j: the direction parent(j) -> j expressed in the *torso frame*, an orthonormal
  frame built from the three camera-frame directions above. These carry the articulation only and
  are invariant to the camera view.

So the view lives in three vectors and the articulation in the rest, and the decoder of the pose
auto-encoder can emit this tensor, which :func:`forward_kinematics` turns back into joints with
fixed bone lengths. All functions accept numpy arrays or torch tensors of any leading shape and
return the same kind; the torch path is differentiable.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from nlrd.skeleton import H36M_17, Skeleton

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

_EPS = 1e-8


def _to_torch(x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    arr = np.asarray(x)
    if arr.dtype.kind != "f":
        arr = arr.astype(np.float64)
    return torch.from_numpy(np.ascontiguousarray(arr)), True


def _back(x: torch.Tensor, was_numpy: bool) -> np.ndarray | torch.Tensor:
    return x.detach().cpu().numpy() if was_numpy else x


def _check_joints(t: torch.Tensor, skeleton: Skeleton, what: str) -> None:
    if t.ndim < 2 or t.shape[-2:] != (skeleton.num_joints, 3):
        raise ValueError(f"{what}: expected shape (..., {skeleton.num_joints}, 3), got {tuple(t.shape)}")


def _normalize(v: torch.Tensor) -> torch.Tensor:
    # Differentiable normalisation that stays finite for (near) zero vectors.
    return v / torch.sqrt((v * v).sum(-1, keepdim=True) + _EPS * _EPS)


def torso_frame(up_dir: torch.Tensor, left_hip_dir: torch.Tensor, right_hip_dir: torch.Tensor) -> torch.Tensor:
    """Orthonormal torso frame from three camera-frame directions, each (..., 3).

    Returns R (..., 3, 3) whose columns are the torso axes in camera coordinates:
    e_y points from thorax to pelvis (down the body), e_x towards the subject's left hip
    (orthogonalised against e_y), e_z = e_x x e_y. A person upright and facing the camera has R ~ I.
    """
    e_y = -_normalize(up_dir)
    lateral = left_hip_dir - right_hip_dir
    e_x = _normalize(lateral - (lateral * e_y).sum(-1, keepdim=True) * e_y)
    e_z = torch.linalg.cross(e_x, e_y, dim=-1)
    return torch.stack([e_x, e_y, e_z], dim=-1)


def _frame_from_bones(bones_cam: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Torso frame from the camera-frame slots (0 and the view-variant joints) of a bone tensor."""
    left = [a for a, _ in skeleton.left_right_pairs if a in skeleton.view_variant_joints]
    right = [b for _, b in skeleton.left_right_pairs if b in skeleton.view_variant_joints]
    if len(left) != 1 or len(right) != 1:
        raise ValueError(f"skeleton {skeleton.name!r} needs exactly one left and one right view-variant joint")
    return torso_frame(bones_cam[..., 0, :], bones_cam[..., left[0], :], bones_cam[..., right[0], :])


def _local_mask(skeleton: Skeleton, device: torch.device) -> torch.Tensor:
    mask = torch.ones(skeleton.num_joints, dtype=torch.bool, device=device)
    mask[0] = False
    mask[list(skeleton.view_variant_joints)] = False
    return mask


def tree_directions(joints: ArrayT, skeleton: Skeleton = H36M_17) -> ArrayT:
    """Unit directions parent -> joint in the input frame, (..., J, 3); slot 0 is zero."""
    t, was_np = _to_torch(joints)
    _check_joints(t, skeleton, "tree_directions")
    parents = list(skeleton.parents)
    parents[0] = 0
    d = t - t[..., parents, :]
    d = _normalize(d)
    d = torch.cat([torch.zeros_like(d[..., :1, :]), d[..., 1:, :]], dim=-2)
    return _back(d, was_np)


def bone_lengths(joints: ArrayT, skeleton: Skeleton = H36M_17) -> ArrayT:
    """Length of the bone ending at each joint, (..., J) mm; 0 for the root."""
    t, was_np = _to_torch(joints)
    _check_joints(t, skeleton, "bone_lengths")
    parents = list(skeleton.parents)
    parents[0] = 0
    return _back(torch.linalg.norm(t - t[..., parents, :], dim=-1), was_np)


def joints_to_bones(joints: ArrayT, skeleton: Skeleton = H36M_17) -> ArrayT:
    """Root-relative joints (..., J, 3) mm -> unit bone vectors (..., J, 3) (see module doc)."""
    t, was_np = _to_torch(joints)
    _check_joints(t, skeleton, "joints_to_bones")
    t = t - t[..., :1, :]
    dirs = tree_directions(t, skeleton)
    up = _normalize(t[..., skeleton.torso_joint, :])
    cam = torch.cat([up.unsqueeze(-2), dirs[..., 1:, :]], dim=-2)
    frame = _frame_from_bones(cam, skeleton)  # (..., 3, 3)
    local = torch.einsum("...ji,...kj->...ki", frame, dirs)  # R^T d for every joint
    mask = _local_mask(skeleton, t.device)
    out = torch.where(mask[:, None], local, cam)
    return _back(out, was_np)


def forward_kinematics(
    bones: ArrayT,
    skeleton: Skeleton = H36M_17,
    lengths: np.ndarray | torch.Tensor | None = None,
) -> ArrayT:
    """Unit bone vectors (..., J, 3) -> root-relative joints (..., J, 3) in mm.

    Args:
        bones: the representation of :func:`joints_to_bones`; vectors need not be unit length
            (a decoder's raw output is normalised here).
        skeleton: the tree to walk.
        lengths: bone lengths (..., J) or (J,) in mm; the skeleton's canonical ones if None.
    """
    b, was_np = _to_torch(bones)
    _check_joints(b, skeleton, "forward_kinematics")
    b = _normalize(b)
    if lengths is None:
        lens = torch.as_tensor(skeleton.bone_lengths, dtype=b.dtype, device=b.device)
    else:
        lens = lengths if isinstance(lengths, torch.Tensor) else torch.from_numpy(np.asarray(lengths))
        lens = lens.to(dtype=b.dtype, device=b.device)
    frame = _frame_from_bones(b, skeleton)
    glob = torch.einsum("...ij,...kj->...ki", frame, b)  # R l for every joint
    mask = _local_mask(skeleton, b.device)
    dirs = torch.where(mask[:, None], glob, b)
    return _back(_accumulate(dirs * lens[..., None], skeleton), was_np)


def _accumulate(offsets: torch.Tensor, skeleton: Skeleton) -> torch.Tensor:
    """Bone offsets (..., J, 3) parent -> joint -> root-relative positions (..., J, 3), walking the tree."""
    positions: list[torch.Tensor] = [torch.zeros_like(offsets[..., 0, :])]
    for j in range(1, skeleton.num_joints):
        positions.append(positions[skeleton.parents[j]] + offsets[..., j, :])
    return torch.stack(positions, dim=-2)


def relength(joints: ArrayT, skeleton: Skeleton = H36M_17, lengths: np.ndarray | None = None) -> ArrayT:
    """Keep every bone's direction, replace its length (canonical by default); root-relative out."""
    t, was_np = _to_torch(joints)
    _check_joints(t, skeleton, "relength")
    dirs = tree_directions(t, skeleton)
    lens = torch.as_tensor(skeleton.bone_lengths if lengths is None else lengths, dtype=t.dtype, device=t.device)
    return _back(_accumulate(dirs * lens[..., None], skeleton), was_np)


def plausibility_angles(joints: ArrayT, skeleton: Skeleton = H36M_17) -> ArrayT:
    """The joint-angle set used to judge plausibility, (..., J, 3) mm -> (..., 3 * (J - 1) - 4) degrees.

    For H36M_17 that is 44 angles: the bend of every bone against its parent bone (16; the hips and
    spine against the pelvis->thorax direction), and for the 14 bones expressed in the torso frame
    their angle to the torso's up axis and to its forward axis (28). Differentiable (torch path).
    """
    t, was_np = _to_torch(joints)
    _check_joints(t, skeleton, "plausibility_angles")
    t = t - t[..., :1, :]
    dirs = tree_directions(t, skeleton)
    up = _normalize(t[..., skeleton.torso_joint, :])
    parents = skeleton.parents
    ref = torch.stack([up if parents[c] == 0 else dirs[..., parents[c], :] for c in range(1, skeleton.num_joints)], dim=-2)
    lim = 1.0 - 1e-6  # arccos has an infinite slope at +-1
    bend = torch.rad2deg(torch.arccos((dirs[..., 1:, :] * ref).sum(-1).clamp(-lim, lim)))
    rep = joints_to_bones(t, skeleton)
    local = [c for c in range(1, skeleton.num_joints) if c not in skeleton.view_variant_joints]
    loc = rep[..., local, :]  # torso frame: e_y points down the body, e_z backwards
    to_up = torch.rad2deg(torch.arccos((-loc[..., 1]).clamp(-lim, lim)))
    to_fwd = torch.rad2deg(torch.arccos((-loc[..., 2]).clamp(-lim, lim)))
    return _back(torch.cat([bend, to_up, to_fwd], dim=-1), was_np)
