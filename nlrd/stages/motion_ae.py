"""Stage 2, motion_ae: Em/Dm on unpaired 30-frame windows of real motion, through the frozen Ep/Dp.

Loss: mean squared error of Dp(Dm(Em(Ep(Y)))) against Y (joints in decimetres so the scale is
near 1), plus a small latent term on Z that speeds up the start. The training step runs under bf16
autocast where the hardware is fast at it (``amp``); validation is fp32. Augment each window with one
azimuth rotation, a small tilt and a random time reversal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nlrd.losses import joint_l2_mm
from nlrd.models.motion_ae import MotionAEConfig, MotionAutoEncoder
from nlrd.models.pose_aae import PoseDecoder, PoseEncoder
from nlrd.precision import autocast
from nlrd.priors import GaussianLatentPrior
from nlrd.stages.common import MOCAP_SOURCES, augment_view, view_distribution
from nlrd.trainer import DistInfo, adam, guarded_step, shard, step_generator, warmup_cosine, wrap_ddp
from nlrd.transforms import backward

# The motion stage's joint losses on (reconstruction, target) joints in mm, measured in decimetres so that
# they weigh about as much as the latent term.
JOINT_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l2": lambda pred, target: joint_l2_mm(pred, target) / 100.0,
    "mse": lambda pred, target: (((pred - target) / 100.0) ** 2).mean(),
}


@dataclass
class MotionAEStageConfig:
    """Optimisation settings of stage motion_ae."""

    batch: int = 64
    lr: float = 2e-3
    lr_final_fraction: float = 0.05
    latent_weight: float = 1.0
    # "l2": mean joint distance in dm (MPJPE, the test metric; 1.5 mm lower motion test error than "mse" in the
    # same 3,000-step fine-tune); "mse": squared error in dm^2 (the loss of the shipped motion prior)
    joint_loss: str = "l2"  # a key of JOINT_LOSSES
    max_tilt_deg: float = 10.0  # with views = "azimuth" only
    views: str = "camera"  # as PoseAAEStageConfig.views: windows seen as cameras see people (one view per window)
    reverse_prob: float = 0.5
    flip_prob: float = 0.5
    window_stride: int = 2  # candidate window starts every N frames
    val_windows: int = 512
    init_from: str = ""  # continue from a trained motion_ae checkpoint (e.g. after the pose decoder was fine-tuned)
    amp: bool = True  # bf16 autocast for the training step where the hardware is fast at it (about 2x on AMX CPUs)
    seed: int = 0
    steps: int = 3000


class MotionAEStage:
    """Trains MotionAutoEncoder against frozen pose encoder/decoder."""

    name = "motion_ae"

    def __init__(self, train_windows: np.ndarray, val_windows: np.ndarray, pose_encoder: PoseEncoder,
                 pose_decoder: PoseDecoder, model_cfg: MotionAEConfig, cfg: MotionAEStageConfig,
                 device: torch.device, info: DistInfo, data_sources: list[dict[str, Any]] | None = None,
                 pose_checkpoint: str | None = None) -> None:  # fmt: skip
        if cfg.joint_loss not in JOINT_LOSSES:
            raise ValueError(f"joint_loss must be one of {sorted(JOINT_LOSSES)}, got {cfg.joint_loss!r}")
        self.cfg, self.model_cfg, self.device, self.info = cfg, model_cfg, device, info
        self.train = torch.as_tensor(train_windows, dtype=torch.float32)  # (M, T, J, 3)
        rng = np.random.default_rng(cfg.seed)
        pick = np.sort(rng.choice(len(val_windows), size=min(cfg.val_windows, len(val_windows)), replace=False))
        self.val = torch.as_tensor(val_windows[pick], dtype=torch.float32, device=device)
        self.data_sources = data_sources if data_sources is not None else MOCAP_SOURCES
        self.pose_checkpoint = pose_checkpoint
        self.ep, self.dp = pose_encoder.to(device).eval(), pose_decoder.to(device).eval()
        for p in list(self.ep.parameters()) + list(self.dp.parameters()):
            p.requires_grad_(False)
        torch.manual_seed(cfg.seed)
        self.model = MotionAutoEncoder(model_cfg).to(device)
        if cfg.init_from:
            from nlrd.checkpoint import load_checkpoint, load_into

            ck = load_checkpoint(cfg.init_from, expected_stage="motion_ae")
            load_into(self.model.encoder, ck, prefix="encoder.")
            load_into(self.model.decoder, ck, prefix="decoder.")
        self.model_ddp = wrap_ddp(self.model, info, device)
        self.opt = adam(self.model.parameters(), lr=cfg.lr)

    def modules(self) -> dict[str, nn.Module]:
        return {"motion_ae": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"motion_ae": self.opt}

    def export(self) -> dict[str, nn.Module]:
        return {"encoder": self.model.encoder, "decoder": self.model.decoder, "prior": self.fit_sampling_prior()}

    @torch.no_grad()
    def fit_sampling_prior(self, n: int = 8192) -> GaussianLatentPrior:
        """Gaussian over v of (unaugmented) training windows, used by MotionPrior.sample."""
        self.model.eval()
        g = torch.Generator().manual_seed(self.cfg.seed)
        idx = torch.randperm(len(self.train), generator=g)[:n]
        vs = [self.model.encoder(self.ep(chunk.to(self.device))) for chunk in self.train[idx].split(256)]
        return GaussianLatentPrior(self.model_cfg.motion_latent_dim).to(self.device).fit(torch.cat(vs))

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": {"model": asdict(self.model_cfg), "stage": asdict(self.cfg)},
                "data_sources": self.data_sources, "extra": {"pose_checkpoint": self.pose_checkpoint}}  # fmt: skip

    def _lr_scale(self, step: int) -> float:
        return warmup_cosine(step, self.cfg.steps, 100, self.cfg.lr_final_fraction)

    def sample_batch(self, step: int) -> torch.Tensor:
        """This rank's slice of the augmented global batch: (b, T, J, 3) mm."""
        g = step_generator(self.cfg.seed, step)
        idx = torch.randint(len(self.train), (self.cfg.batch,), generator=g)
        y = augment_view(self.train[idx], g, flip_prob=self.cfg.flip_prob, max_tilt_deg=self.cfg.max_tilt_deg,
                         views=view_distribution(self.cfg.views))
        rev = (torch.rand(self.cfg.batch, generator=g) < self.cfg.reverse_prob).view(-1, 1, 1, 1)
        y = torch.where(rev, backward(y), y)
        return y[shard(self.cfg.batch, self.info)].to(self.device)

    def reconstruct(self, y: torch.Tensor, model: nn.Module | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Y (B,T,J,3) -> (Z (B,T,D), Z_rec, Y_rec (B,T,J,3))."""
        with torch.no_grad():
            z = self.ep(y)
        _, z_rec = (model or self.model_ddp)(z)
        return z, z_rec, self.dp(z_rec)

    def train_step(self, step: int) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * self._lr_scale(step)
        self.model.train()
        y = self.sample_batch(step)
        with autocast(self.device, self.cfg.amp):
            # Mixed precision only in training: the BiLSTMs and Dp's matmuls run in bf16, the losses and
            # every evaluation in fp32 (validation figures are never computed under autocast).
            z, z_rec, y_rec = self.reconstruct(y)
        z, z_rec, y_rec = z.float(), z_rec.float(), y_rec.float()
        pose_loss = JOINT_LOSSES[self.cfg.joint_loss](y_rec, y)
        lat_loss = ((z_rec - z) ** 2).mean()
        loss = pose_loss + self.cfg.latent_weight * lat_loss
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        guarded_step(self.opt, loss, max_norm=5.0)
        mpjpe = torch.linalg.norm(y_rec.detach() - y, dim=-1).mean().item()
        return {"loss": loss.item(), "pose_mse_dm2": pose_loss.item(), "latent_mse": lat_loss.item(), "mpjpe_mm": mpjpe}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        errs = []
        for chunk in self.val.split(128):
            _, _, y_rec = self.reconstruct(chunk, self.model)
            errs.append(torch.linalg.norm(y_rec - chunk, dim=-1).mean(dim=(1, 2)))
        return {"val_mpjpe_mm": torch.cat(errs).mean().item()}
