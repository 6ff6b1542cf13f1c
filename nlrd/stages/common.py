"""Pieces every stage shares: batched random view augmentation and data-source records."""

from __future__ import annotations

import torch

from nlrd.skeleton import H36M_17, Skeleton
from nlrd.transforms import flip_pose
from nlrd.views import AZIMUTH_ONLY, CAMERA_VIEWS, ViewDistribution, axis_rotations, random_view_rotations

VIEWS: dict[str, ViewDistribution] = {"azimuth": AZIMUTH_ONLY, "camera": CAMERA_VIEWS}

MOCAP_SOURCES: list[dict[str, str]] = [
    {"name": "CMU Graphics Lab Motion Capture Database (8-action subset)", "url": "http://mocap.cs.cmu.edu",
     "licence": "CMU mocap terms: free for research and commercial use, do not resell the data. "
                "The database was created with funding from NSF EIA-0196217."},
    {"name": "Bandai Namco Research Motion Dataset (dataset-1, dataset-2 subset)",
     "url": "https://github.com/BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset",
     "licence": "CC BY-NC 4.0: weights trained on it are for non-commercial use only."},
]  # fmt: skip


def rotation_z(theta_deg: torch.Tensor) -> torch.Tensor:
    """(B,) degrees -> (B, 3, 3) rotations about the optical axis (the pose side of ``rotate_images``)."""
    return axis_rotations("z", theta_deg)


def rotation_matrices(azimuth_deg: torch.Tensor, tilt_deg: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) angles -> (B, 3, 3): rotation about the vertical (camera y) axis, then a tilt about x."""
    ry = axis_rotations("y", azimuth_deg)
    return ry if tilt_deg is None else axis_rotations("x", tilt_deg) @ ry


def augment_view(
    joints: torch.Tensor,
    g: torch.Generator,
    *,
    flip_prob: float = 0.5,
    azimuth: bool = True,
    max_tilt_deg: float = 0.0,
    skeleton: Skeleton = H36M_17,
    views: ViewDistribution | None = None,
) -> torch.Tensor:
    """Random azimuth rotation, small tilt and left-right flip per sample, or (``views`` given) a
    random camera view and body orientation from :mod:`nlrd.views` (then ``azimuth`` and
    ``max_tilt_deg`` are unused) and the flip.

    joints: (B, J, 3) or (B, T, J, 3) mm (a sequence gets one transform for all its frames).
    Draws from ``g`` on the CPU so every rank of a distributed run draws the same numbers.
    """
    b = joints.shape[0]
    if views is not None:
        rot = random_view_rotations(b, g, views).to(joints)
        flip = torch.rand(b, generator=g) < flip_prob
    else:
        az = torch.rand(b, generator=g) * 360.0 if azimuth else torch.zeros(b)
        tilt = (torch.rand(b, generator=g) * 2 - 1) * max_tilt_deg if max_tilt_deg > 0 else None
        flip = torch.rand(b, generator=g) < flip_prob
        rot = rotation_matrices(az, tilt).to(joints)
    shape = (b,) + (1,) * (joints.ndim - 3) + (3, 3)
    out = joints @ rot.transpose(-1, -2).reshape(shape)
    if flip.any():
        fl = flip.to(joints.device).view((b,) + (1,) * (joints.ndim - 1))
        out = torch.where(fl, flip_pose(out, skeleton), out)
    return out


def view_distribution(name: str) -> ViewDistribution | None:
    """The named view distribution of a stage config ("camera"), or None for the paper's azimuth-only one."""
    if name not in VIEWS:
        raise ValueError(f"views must be one of {sorted(VIEWS)}, got {name!r}")
    return None if name == "azimuth" else VIEWS[name]
