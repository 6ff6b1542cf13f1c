"""Motion auto-encoder: Em (pose-latent sequence -> v in [-1,1]^128) and Dm (v -> latent sequence).

Em is a 2-layer bidirectional LSTM over Z = Ep(Y), (B, T, 32); the last layer's final forward and
backward hidden states, concatenated, go through FC + tanh to v. Dm is not auto-regressive (the
paper's point: v alone must carry the motion): v initialises every hidden and cell state of a
2-layer BiLSTM whose inputs are learned per-frame time embeddings, and an FC + tanh maps its
outputs back to pose latents, which the frozen pose decoder Dp turns into joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class MotionAEConfig:
    """Sizes of the motion auto-encoder."""

    pose_latent_dim: int = 32
    motion_latent_dim: int = 128
    hidden: int = 128
    layers: int = 2
    length: int = 30  # frames per window (1 s at 30 fps)
    time_embed_dim: int = 32


class MotionEncoder(nn.Module):
    """Em: Z (B, T, pose_latent_dim) -> v (B, motion_latent_dim) in [-1, 1]."""

    def __init__(self, cfg: MotionAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.lstm = nn.LSTM(cfg.pose_latent_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * cfg.hidden, cfg.motion_latent_dim)

    def forward(self, z_seq: torch.Tensor) -> torch.Tensor:
        if z_seq.ndim != 3 or z_seq.shape[-1] != self.cfg.pose_latent_dim:
            raise ValueError(f"motion encoder expects (B, T, {self.cfg.pose_latent_dim}), got {tuple(z_seq.shape)}")
        _, (h, _) = self.lstm(z_seq)
        # h: (layers * 2, B, hidden); the last two rows are the top layer's forward and backward states.
        return torch.tanh(self.fc(torch.cat([h[-2], h[-1]], dim=-1)))


class MotionDecoder(nn.Module):
    """Dm: v (B, motion_latent_dim) -> Z (B, T, pose_latent_dim) in [-1, 1]."""

    def __init__(self, cfg: MotionAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n_states = cfg.layers * 2
        self.init = nn.Linear(cfg.motion_latent_dim, 2 * n_states * cfg.hidden)
        self.time = nn.Parameter(torch.randn(cfg.length, cfg.time_embed_dim) * 0.1)
        self.lstm = nn.LSTM(cfg.time_embed_dim, cfg.hidden, num_layers=cfg.layers, batch_first=True, bidirectional=True)
        self.out = nn.Linear(2 * cfg.hidden, cfg.pose_latent_dim)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if v.ndim != 2 or v.shape[-1] != self.cfg.motion_latent_dim:
            raise ValueError(f"motion decoder expects (B, {self.cfg.motion_latent_dim}), got {tuple(v.shape)}")
        b = v.shape[0]
        n_states = self.cfg.layers * 2
        hc = self.init(v).view(b, 2, n_states, self.cfg.hidden).permute(1, 2, 0, 3)
        h0, c0 = torch.tanh(hc[0]).contiguous(), hc[1].contiguous()
        x = self.time.unsqueeze(0).expand(b, -1, -1)
        y, _ = self.lstm(x, (h0, c0))
        return torch.tanh(self.out(y))


class MotionAutoEncoder(nn.Module):
    """Em and Dm together: forward(Z (B,T,Dz)) -> (v (B,Dv), Z_rec (B,T,Dz))."""

    def __init__(self, cfg: MotionAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = MotionEncoder(cfg)
        self.decoder = MotionDecoder(cfg)

    def forward(self, z_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = self.encoder(z_seq)
        return v, self.decoder(v)
