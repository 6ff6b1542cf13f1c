"""Relation networks T_r in latent space: z -> z+ (pose relations) and v -> v+ (motion relations).

Four fully connected layers (as in the paper) with a residual form: the network predicts the
pre-activation change, so the identity is easy to represent and large, non-local jumps are learned
on top of it. Output through tanh keeps the result inside the latent box [-1, 1]^D.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class RelationNetConfig:
    """Sizes of one relation network."""

    latent_dim: int = 32
    hidden: int = 512
    layers: int = 4  # fully connected layers in total


class RelationNet(nn.Module):
    """T_r: latent (B, D) in [-1, 1] -> related latent (B, D) in [-1, 1]."""

    def __init__(self, cfg: RelationNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = [cfg.latent_dim] + [cfg.hidden] * (cfg.layers - 1) + [cfg.latent_dim]
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            mods.append(nn.Linear(a, b))
            if i < len(dims) - 2:
                mods.append(nn.LeakyReLU(0.2))
        self.net = nn.Sequential(*mods)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.shape[-1] != self.cfg.latent_dim:
            raise ValueError(f"relation net expects (..., {self.cfg.latent_dim}), got {tuple(z.shape)}")
        pre = torch.atanh(z.clamp(-0.999, 0.999))
        return torch.tanh(pre + self.net(z))
