"""The learned start of the pose-prior fit: 2D keypoints (+ an optional 3D cue) -> (z, rotation).

The fit (:mod:`nlrd.fit`) refines a pose latent ``z``, a rotation, a translation and a scale against
the keypoints. Adam from a poor start needs hundreds of steps and still lands in the wrong basin (the
depth-mirrored twin, a limb bent the wrong way), so this small MLP guesses the latent and the
rotation in one pass and the fit only polishes.

Inputs (see :func:`keypoint_features`): the keypoints centred on the box of the confident joints and
divided by its size (so the net is blind to where the person stands and how large they appear),
their confidences, the viewing ray of the box centre and the box size over the focal length (the
perspective the net cannot see otherwise), and optionally a root-relative 3D cue in metres
(MediaPipe's world landmarks, noisy but right about front/back) with a presence flag.

Outputs: ``z`` (B, latent_dim) in [-1, 1] (tanh) and ``rotation`` (B, 3, 3) such that
``decoded = Dp(z) @ rotation.T`` is the root-relative pose in the camera frame (canonical bone
lengths, mm). The rotation exists because a pose prior may not cover every view (the shipped one is
trained on upright bodies only): it carries whatever part of the view the latent cannot.

The weights only make sense with the pose prior they were trained against; :func:`prior_fingerprint`
identifies a prior by the content of its weights and the checkpoint records it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn

from nlrd.models.pose_aae import ResBlock


@dataclass
class KeypointStartConfig:
    """Sizes of the start network (the single source of truth, saved with the weights)."""

    num_joints: int = 17
    latent_dim: int = 32
    hidden: int = 384
    depth: int = 3  # residual blocks
    world_unit_mm: float = 1000.0  # the 3D cue enters in metres
    skeleton: str = "h36m_17"


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(B, 6) two raw column vectors -> (B, 3, 3) rotation by Gram-Schmidt (Zhou et al. 2019).

    The 6D representation is continuous, unlike axis-angle or quaternions, so a network regresses it
    well; the columns of the result are the orthonormalised first vector, second vector, and their cross.
    """
    a, b = x[:, :3], x[:, 3:]
    e1 = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    b = b - (e1 * b).sum(-1, keepdim=True) * e1
    e2 = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    e3 = torch.linalg.cross(e1, e2, dim=-1)
    return torch.stack([e1, e2, e3], dim=-1)


def matrix_to_rot6d(r: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotation -> (B, 6), the inverse of :func:`rot6d_to_matrix` (its first two columns)."""
    return torch.cat([r[:, :, 0], r[:, :, 1]], dim=-1)


def keypoint_box(joints2d: torch.Tensor, conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre (B, 2) px and size (B,) px (the larger side, at least 1 px) of the box of joints with conf > 0.

    Joints with conf = 0 are ignored entirely (their coordinates may be garbage); every person needs at
    least one joint with conf > 0 (the caller checks).
    """
    present = (conf > 0).unsqueeze(-1)
    big = torch.finfo(joints2d.dtype).max
    lo = torch.where(present, joints2d, torch.full_like(joints2d, big)).amin(dim=1)
    hi = torch.where(present, joints2d, torch.full_like(joints2d, -big)).amax(dim=1)
    size = (hi - lo).amax(dim=-1).clamp_min(1.0)
    return 0.5 * (lo + hi), size


def keypoint_features(
    joints2d: torch.Tensor,
    conf: torch.Tensor,
    focal: torch.Tensor,
    principal: torch.Tensor,
    world3d: torch.Tensor | None = None,
    world_unit_mm: float = 1000.0,
) -> torch.Tensor:
    """The start network's input vector.

    Args:
        joints2d: (B, J, 2) px. conf: (B, J) in [0, 1], 0 = missing (coordinates ignored).
        focal: (B,) px. principal: (B, 2) px, the principal point.
        world3d: (B, J, 3) mm root-relative camera-frame 3D cue, or None (the presence flag is then 0).
        world_unit_mm: the cue's divisor (metres by default).

    Returns:
        (B, 3 J + 3 + 3 J + 1) float: normalised keypoints (2 J), confidences (J), ray of the box
        centre and box size / focal (3), cue (3 J) and its presence flag (1).
    """
    b, j = conf.shape
    centre, size = keypoint_box(joints2d, conf)
    present = (conf > 0).unsqueeze(-1)
    kp = torch.where(present, (joints2d - centre[:, None]) / size[:, None, None], torch.zeros_like(joints2d))
    ray = torch.cat([(centre - principal) / focal[:, None], (size / focal)[:, None]], dim=-1)
    if world3d is None:
        world = torch.zeros(b, j * 3, dtype=joints2d.dtype, device=joints2d.device)
        flag = torch.zeros(b, 1, dtype=joints2d.dtype, device=joints2d.device)
    else:
        world = ((world3d - world3d[:, :1]) / world_unit_mm).flatten(1)
        flag = torch.ones(b, 1, dtype=joints2d.dtype, device=joints2d.device)
    return torch.cat([kp.flatten(1), conf, ray, world, flag], dim=-1)


def feature_dim(num_joints: int) -> int:
    """Length of :func:`keypoint_features`' vector for ``num_joints`` joints."""
    return 6 * num_joints + 4


class KeypointStartNet(nn.Module):
    """features (B, feature_dim) -> z (B, latent_dim) in [-1, 1], rotation (B, 3, 3).

    Attributes:
        prior_fingerprint: :func:`prior_fingerprint` of the pose prior the weights were trained against
            (set when loaded from a checkpoint or trained; None for a fresh network).
    """

    def __init__(self, cfg: KeypointStartConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.prior_fingerprint: str | None = None
        self.net = nn.Sequential(
            nn.Linear(feature_dim(cfg.num_joints), cfg.hidden),
            *[ResBlock(cfg.hidden) for _ in range(cfg.depth)],
            nn.LayerNorm(cfg.hidden),
            nn.LeakyReLU(0.2),
        )
        self.z_head = nn.Linear(cfg.hidden, cfg.latent_dim)
        self.rot_head = nn.Linear(cfg.hidden, 6)
        with torch.no_grad():
            # Start at the identity rotation so early training is about z.
            self.rot_head.weight.mul_(0.01)
            self.rot_head.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(features)
        return torch.tanh(self.z_head(h)), rot6d_to_matrix(self.rot_head(h))


def prior_fingerprint(encoder: nn.Module, decoder: nn.Module) -> str:
    """A short hex id of a pose prior, from the names, shapes and bytes of its weights (not its path).

    Two priors with the same fingerprint decode every z to the same pose, so a start network trained
    against one is valid for the other; any retraining changes it.
    """
    h = hashlib.sha256()
    for prefix, module in (("encoder.", encoder), ("decoder.", decoder)):
        for name, t in sorted(module.state_dict().items()):
            h.update(f"{prefix}{name}:{tuple(t.shape)}:{t.dtype}".encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


__all__ = [
    "KeypointStartConfig",
    "KeypointStartNet",
    "feature_dim",
    "keypoint_box",
    "keypoint_features",
    "matrix_to_rot6d",
    "prior_fingerprint",
    "rot6d_to_matrix",
]
