"""Pose adversarial auto-encoder: Ep (joints -> z in [-1,1]^32) and Dp (z -> joints), plus critics.

Ep reads the unit-bone-vector representation of ``nlrd.kinematics`` (view in three torso slots,
articulation in the rest), groups the bones by limb (right leg, left leg, trunk, left arm, right
arm), merges them into upper and lower body, then the whole body, as in the paper's hierarchy. Dp
mirrors it and emits bone vectors, which forward kinematics with the canonical bone lengths turns
into a root-relative pose, so every decoded pose has the skeleton's bone lengths by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nlrd.kinematics import forward_kinematics, joints_to_bones
from nlrd.skeleton import H36M_17, Skeleton

# Bone slots per limb group (slot j = bone ending at joint j; slot 0 = pelvis->thorax direction).
LIMB_GROUPS: dict[str, tuple[int, ...]] = {
    "r_leg": (1, 2, 3),
    "l_leg": (4, 5, 6),
    "trunk": (0, 7, 8, 9, 10),
    "l_arm": (11, 12, 13),
    "r_arm": (14, 15, 16),
}
UPPER = ("trunk", "l_arm", "r_arm")
LOWER = ("trunk", "r_leg", "l_leg")


@dataclass
class PoseAAEConfig:
    """Sizes of the pose auto-encoder and its critics."""

    latent_dim: int = 32
    group_width: int = 96  # features per limb group
    part_width: int = 192  # features per upper/lower body
    hidden: int = 512  # whole-body width
    depth: int = 2  # residual blocks at the whole-body level
    disc_hidden: int = 256
    skeleton: str = "h36m_17"


def _mlp(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, o), nn.LeakyReLU(0.2))


class ResBlock(nn.Module):
    """x + MLP(x): keeps deep fully connected stacks easy to optimise."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class PoseEncoder(nn.Module):
    """Ep: root-relative joints (B, J, 3) mm -> z (B, latent_dim) in [-1, 1]."""

    def __init__(self, cfg: PoseAAEConfig, skeleton: Skeleton = H36M_17) -> None:
        super().__init__()
        self.cfg, self.skeleton = cfg, skeleton
        g, p = cfg.group_width, cfg.part_width
        self.groups = nn.ModuleDict({k: nn.Sequential(_mlp(3 * len(v), g), _mlp(g, g)) for k, v in LIMB_GROUPS.items()})
        self.upper = _mlp(g * len(UPPER), p)
        self.lower = _mlp(g * len(LOWER), p)
        self.body = nn.Sequential(nn.Linear(2 * p, cfg.hidden), *[ResBlock(cfg.hidden) for _ in range(cfg.depth)],
                                  nn.LeakyReLU(0.2), nn.Linear(cfg.hidden, cfg.latent_dim))  # fmt: skip

    def forward_bones(self, bones: torch.Tensor) -> torch.Tensor:
        """Bone vectors (B, J, 3) -> z (B, latent_dim)."""
        feats = {k: net(bones[:, list(LIMB_GROUPS[k])].flatten(1)) for k, net in self.groups.items()}
        up = self.upper(torch.cat([feats[k] for k in UPPER], dim=-1))
        lo = self.lower(torch.cat([feats[k] for k in LOWER], dim=-1))
        return torch.tanh(self.body(torch.cat([up, lo], dim=-1)))

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        lead = joints.shape[:-2]
        z = self.forward_bones(joints_to_bones(joints.reshape(-1, *joints.shape[-2:]), self.skeleton))
        return z.reshape(*lead, -1)


class PoseDecoder(nn.Module):
    """Dp: z (B, latent_dim) -> root-relative joints (B, J, 3) mm via bone vectors and FK."""

    def __init__(self, cfg: PoseAAEConfig, skeleton: Skeleton = H36M_17) -> None:
        super().__init__()
        self.cfg, self.skeleton = cfg, skeleton
        g, p = cfg.group_width, cfg.part_width
        self.body = nn.Sequential(nn.Linear(cfg.latent_dim, cfg.hidden), *[ResBlock(cfg.hidden) for _ in range(cfg.depth)],
                                  nn.LeakyReLU(0.2), nn.Linear(cfg.hidden, 2 * p), nn.LeakyReLU(0.2))  # fmt: skip
        self.upper = _mlp(p, g * len(UPPER))
        self.lower = _mlp(p, g * len(LOWER))
        self.groups = nn.ModuleDict({k: nn.Sequential(_mlp(g, g), nn.Linear(g, 3 * len(v))) for k, v in LIMB_GROUPS.items()})
        self.register_buffer("lengths", torch.as_tensor(skeleton.bone_lengths, dtype=torch.float32), persistent=False)
        # slot_order[j] = position of bone slot j in the groups' concatenated output.
        flat = [j for k in self.groups for j in LIMB_GROUPS[k]]
        order = sorted(range(len(flat)), key=flat.__getitem__)
        self.register_buffer("slot_order", torch.as_tensor(order, dtype=torch.long), persistent=False)

    def forward_bones(self, z: torch.Tensor) -> torch.Tensor:
        """z (B, latent_dim) -> raw bone vectors (B, J, 3) (normalised inside FK)."""
        h = self.body(z)
        p = self.cfg.part_width
        up = self.upper(h[:, :p]).chunk(len(UPPER), dim=-1)
        lo = self.lower(h[:, p:]).chunk(len(LOWER), dim=-1)
        # The trunk appears in both halves; average its two views.
        feats = dict(zip(UPPER, up, strict=True))
        for k, f in zip(LOWER, lo, strict=True):
            feats[k] = 0.5 * (feats[k] + f) if k in feats else f
        # Concatenate the groups' bones and gather them into slot order; an index_put into a zero
        # tensor would pin the dtype, while this stays valid under bf16 autocast. FK runs in fp32.
        parts = [net(feats[k]).view(-1, len(LIMB_GROUPS[k]), 3) for k, net in self.groups.items()]
        return torch.cat(parts, dim=1).float()[:, self.slot_order]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        lead = z.shape[:-1]
        joints = forward_kinematics(self.forward_bones(z.reshape(-1, z.shape[-1])), self.skeleton, self.lengths)
        return joints.reshape(*lead, self.skeleton.num_joints, 3)


class LatentCritic(nn.Module):
    """The AAE's discriminator on z: prior samples U[-1,1]^D (real) vs encoded poses (fake). Logits (B,)."""

    def __init__(self, cfg: PoseAAEConfig) -> None:
        super().__init__()
        h = cfg.disc_hidden
        self.net = nn.Sequential(_mlp(cfg.latent_dim, h), _mlp(h, h), nn.Linear(h, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


class PoseCritic(nn.Module):
    """The authors' option: a discriminator in pose space, real poses vs Dp(z ~ U). Reads bone vectors. Logits (B,)."""

    def __init__(self, cfg: PoseAAEConfig, skeleton: Skeleton = H36M_17) -> None:
        super().__init__()
        h = cfg.disc_hidden
        self.skeleton = skeleton
        self.net = nn.Sequential(_mlp(3 * skeleton.num_joints, h), _mlp(h, h), nn.Linear(h, 1))

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        return self.net(joints_to_bones(joints, self.skeleton).flatten(1)).squeeze(-1)


class PoseAutoEncoder(nn.Module):
    """Ep and Dp together; one forward computes every generator-side quantity of a training step.

    forward(y (B,J,3) mm, z_prior (B',D)) -> (z (B,D), y_rec (B,J,3), y_prior (B',J,3), z_cycle (B',D)).
    One call per step keeps DistributedDataParallel's gradient hooks simple.
    """

    def __init__(self, cfg: PoseAAEConfig, skeleton: Skeleton = H36M_17) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = PoseEncoder(cfg, skeleton)
        self.decoder = PoseDecoder(cfg, skeleton)

    def forward(self, y: torch.Tensor, z_prior: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = self.encoder(y)
        y_rec = self.decoder(z)
        y_prior = self.decoder(z_prior)
        z_cycle = self.encoder(y_prior)
        return z, y_rec, y_prior, z_cycle
