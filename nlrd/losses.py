"""Losses shared by the stages. Joints are (..., J, 3) in mm; latents (B, D)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def joint_l2_mm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean joint distance (mm) over every joint and leading dim (MPJPE as a loss)."""
    return torch.linalg.norm(pred - target, dim=-1).mean()


def joint_l1_mm(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute coordinate error (mm), the authors' L1 on joints."""
    return (pred - target).abs().mean()


def gan_logits_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Non-saturating binary cross-entropy on critic logits (B,), target 1 for real."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, target)


def uniform_quantile_loss(z: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """1D Wasserstein-2 distance of each latent dimension's batch marginal to U[low, high].

    Sorting the batch along each dimension and comparing with the uniform quantiles
    (i + 0.5) / B is the exact W2 between the empirical and the uniform marginal. It is the direct,
    stable counterpart of what the latent critic pushes for, and drives the Kolmogorov-Smirnov
    distance of every dimension to zero. z: (B, D).
    """
    b = z.shape[0]
    q = (torch.arange(b, device=z.device, dtype=z.dtype) + 0.5) / b
    target = low + (high - low) * q
    zs, _ = torch.sort(z, dim=0)
    return ((zs - target[:, None]) ** 2).mean()


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Contrastive loss L_CR: each anchor's positive against the other samples of the batch.

    anchor, positive: (B, D) embeddings (cosine similarity after L2 normalisation).
    L = -log exp(s(a,p)/tau) / (exp(s(a,p)/tau) + sum_n exp(s(a,n)/tau)).
    """
    a = F.normalize(anchor, dim=-1)
    p = F.normalize(positive, dim=-1)
    logits = a @ p.t() / temperature
    labels = torch.arange(a.shape[0], device=a.device)
    return F.cross_entropy(logits, labels)
