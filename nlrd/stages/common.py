"""Pieces every stage shares: batched random view augmentation and data-source records."""

from __future__ import annotations

import math

import torch

from nlrd.skeleton import H36M_17, Skeleton
from nlrd.transforms import flip_pose

MOCAP_SOURCES: list[dict[str, str]] = [
    {"name": "CMU Graphics Lab Motion Capture Database (8-action subset)", "url": "http://mocap.cs.cmu.edu",
     "licence": "CMU mocap terms: free for research and commercial use, do not resell the data. "
                "The database was created with funding from NSF EIA-0196217."},
    {"name": "Bandai Namco Research Motion Dataset (dataset-1, dataset-2 subset)",
     "url": "https://github.com/BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset",
     "licence": "CC BY-NC 4.0: weights trained on it are for non-commercial use only."},
]  # fmt: skip


def rotation_matrices(azimuth_deg: torch.Tensor, tilt_deg: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) angles -> (B, 3, 3): rotation about the vertical (camera y) axis, then a tilt about x."""
    a = azimuth_deg * (math.pi / 180.0)
    c, s = torch.cos(a), torch.sin(a)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    ry = torch.stack([c, zero, s, zero, one, zero, -s, zero, c], dim=-1).view(-1, 3, 3)
    if tilt_deg is None:
        return ry
    t = tilt_deg * (math.pi / 180.0)
    ct, st = torch.cos(t), torch.sin(t)
    rx = torch.stack([one, zero, zero, zero, ct, -st, zero, st, ct], dim=-1).view(-1, 3, 3)
    return rx @ ry


def augment_view(
    joints: torch.Tensor,
    g: torch.Generator,
    *,
    flip_prob: float = 0.5,
    azimuth: bool = True,
    max_tilt_deg: float = 0.0,
    skeleton: Skeleton = H36M_17,
) -> torch.Tensor:
    """Random azimuth rotation, small tilt and left-right flip per sample.

    joints: (B, J, 3) or (B, T, J, 3) mm (a sequence gets one transform for all its frames).
    Draws from ``g`` on the CPU so every rank of a distributed run draws the same numbers.
    """
    b = joints.shape[0]
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
