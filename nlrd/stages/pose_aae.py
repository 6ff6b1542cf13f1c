"""Stage 1, pose_aae: the pose prior Ep/Dp on unpaired real 3D poses.

Per step (all drawn from one (seed, step) generator so distributed ranks agree):
  generator update  L = rec + w_cyc |Ep(Dp(z~U)) - z| + w_adv BCE(Dz(Ep(y)), real)
                          [+ w_marg W2(marginals of Ep(y), U)] [+ w_padv BCE(Dy(Dp(z~U)), real)]
  critic update     BCE(Dz(z~U), real) + BCE(Dz(Ep(y)), fake)   [and Dy: real poses vs Dp(z~U)]
with random azimuth rotations and left-right flips of y.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from nlrd.kinematics import plausibility_angles
from nlrd.losses import gan_logits_loss, joint_l2_mm, uniform_quantile_loss
from nlrd.models.pose_aae import LatentCritic, PoseAAEConfig, PoseAutoEncoder, PoseCritic
from nlrd.precision import autocast
from nlrd.skeleton import get_skeleton
from nlrd.stages.common import MOCAP_SOURCES, augment_view, view_distribution
from nlrd.trainer import DistInfo, adam, guarded_step, shard, step_generator, unwrap, warmup_cosine, wrap_ddp


@dataclass
class PoseAAEStageConfig:
    """Optimisation settings of stage pose_aae (model sizes live in PoseAAEConfig)."""

    batch: int = 256
    lr: float = 1e-3
    critic_lr: float = 2e-4
    lr_final_fraction: float = 0.05  # cosine decay to this fraction of lr
    warmup_steps: int = 200
    cycle_weight: float = 2.0
    adv_weight: float = 0.05
    marginal_weight: float = 20.0
    pose_critic: bool = False  # the authors' pose-space discriminator, as an option
    pose_adv_weight: float = 0.05
    flip_prob: float = 0.5
    azimuth: bool = True
    # "camera": the views of nlrd.views (elevation -30..+60, roll, lying and free bodies); "azimuth": the
    # paper's rotations about the vertical only (upright people; checkpoints before the prior's views).
    views: str = "camera"
    val_poses: int = 4096
    angle_limit_weight: float = 0.0  # hinge on plausibility angles of Dp(z ~ U) outside the training range
    angle_margin_deg: float = 1.0  # the allowed range is shrunk by this much on each side
    coverage_weight: float = 0.0  # IMLE-style: each real pose pulls its nearest decoded prior sample towards it
    init_from: str = ""  # start from a trained pose_aae checkpoint
    train_encoder: bool = True  # False: fine-tune Dp only (Ep frozen, so every model built on Ep stays valid)
    amp: bool = True  # bf16 autocast for Ep/Dp's layers in training where the hardware is fast at it (FK stays fp32)
    seed: int = 0
    steps: int = 6000  # copied from the trainer for the schedule


def _critic_logits(critic: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Critic logits with its weights detached: the generator's loss must not move the critic."""
    mod = unwrap(critic)
    params = {k: v.detach() for k, v in mod.named_parameters()}
    return functional_call(mod, params, (x,))


def ks_to_uniform(z: np.ndarray, low: float = -1.0, high: float = 1.0) -> np.ndarray:
    """Kolmogorov-Smirnov distance of each column of z (N, D) to U[low, high]; (D,)."""
    zs = np.sort(np.asarray(z, dtype=np.float64), axis=0)
    n = zs.shape[0]
    cdf = np.clip((zs - low) / (high - low), 0.0, 1.0)
    i = np.arange(1, n + 1)[:, None]
    return np.maximum(i / n - cdf, cdf - (i - 1) / n).max(axis=0)


class PoseAAEStage:
    """Trains PoseAutoEncoder with a latent critic (and optionally a pose critic)."""

    name = "pose_aae"

    def __init__(self, train_joints: np.ndarray, val_joints: np.ndarray, model_cfg: PoseAAEConfig,
                 cfg: PoseAAEStageConfig, device: torch.device, info: DistInfo,
                 data_sources: list[dict[str, Any]] | None = None) -> None:  # fmt: skip
        self.cfg, self.model_cfg, self.device, self.info = cfg, model_cfg, device, info
        self.skeleton = get_skeleton(model_cfg.skeleton)
        self.train = torch.as_tensor(train_joints, dtype=torch.float32)
        rng = np.random.default_rng(cfg.seed)
        pick = rng.choice(len(val_joints), size=min(cfg.val_poses, len(val_joints)), replace=False)
        self.val = torch.as_tensor(val_joints[np.sort(pick)], dtype=torch.float32, device=device)
        self.data_sources = data_sources if data_sources is not None else MOCAP_SOURCES
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.ae = PoseAutoEncoder(model_cfg, self.skeleton).to(device)
        self.critic = LatentCritic(model_cfg).to(device)
        self.pose_critic = PoseCritic(model_cfg, self.skeleton).to(device) if cfg.pose_critic else None
        self.ae_ddp = wrap_ddp(self.ae, info, device)
        self.critic_ddp = wrap_ddp(self.critic, info, device)
        self.pose_critic_ddp = wrap_ddp(self.pose_critic, info, device) if self.pose_critic is not None else None
        if cfg.init_from:
            from nlrd.checkpoint import load_checkpoint, load_into

            ck = load_checkpoint(cfg.init_from, expected_stage="pose_aae")
            load_into(self.ae.encoder, ck, prefix="encoder.")
            load_into(self.ae.decoder, ck, prefix="decoder.")
        if not cfg.train_encoder:
            for p in self.ae.encoder.parameters():
                p.requires_grad_(False)
        # Angle limits from the training poses (shrunk by a margin), for the plausibility hinge.
        with torch.no_grad():
            ang = plausibility_angles(self.train[:: max(1, len(self.train) // 50_000)].double())
        self.angle_lo = (ang.min(0).values + cfg.angle_margin_deg).float().to(device)
        self.angle_hi = (ang.max(0).values - cfg.angle_margin_deg).float().to(device)
        self.opt_ae = adam([p for p in self.ae.parameters() if p.requires_grad], lr=cfg.lr)
        self.opt_critic = adam(self.critic.parameters(), lr=cfg.critic_lr, betas=(0.5, 0.999))
        self.opt_pose_critic = (adam(self.pose_critic.parameters(), lr=cfg.critic_lr, betas=(0.5, 0.999))
                                if self.pose_critic is not None else None)  # fmt: skip

    # -- trainer protocol ------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods: dict[str, nn.Module] = {"ae": self.ae, "critic": self.critic}
        if self.pose_critic is not None:
            mods["pose_critic"] = self.pose_critic
        return mods

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts: dict[str, torch.optim.Optimizer] = {"ae": self.opt_ae, "critic": self.opt_critic}
        if self.opt_pose_critic is not None:
            opts["pose_critic"] = self.opt_pose_critic
        return opts

    def export(self) -> dict[str, nn.Module]:
        return {"encoder": self.ae.encoder, "decoder": self.ae.decoder}

    @property
    def latent_space(self) -> str:
        """The name of the latent space the trained encoder defines (see nlrd.priors.latent_space_id)."""
        from nlrd.priors import latent_space_id

        return latent_space_id(self.ae.encoder, self.cfg.views)

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": {"model": asdict(self.model_cfg), "stage": asdict(self.cfg)},
                "data_sources": self.data_sources}  # fmt: skip

    def _lr_scale(self, step: int) -> float:
        return warmup_cosine(step, self.cfg.steps, self.cfg.warmup_steps, self.cfg.lr_final_fraction)

    def sample_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's slice of the global batch for ``step``: augmented poses (b,J,3), prior z (b,D)."""
        g = step_generator(self.cfg.seed, step)
        idx = torch.randint(len(self.train), (self.cfg.batch,), generator=g)
        y = augment_view(self.train[idx], g, flip_prob=self.cfg.flip_prob, azimuth=self.cfg.azimuth,
                         skeleton=self.skeleton, views=view_distribution(self.cfg.views))  # fmt: skip
        z_prior = torch.rand(self.cfg.batch, self.model_cfg.latent_dim, generator=g) * 2 - 1
        sl = shard(self.cfg.batch, self.info)
        return y[sl].to(self.device), z_prior[sl].to(self.device)

    def generator_step(self, y: torch.Tensor, z_prior: torch.Tensor) -> tuple[dict[str, float], torch.Tensor, torch.Tensor]:
        """Update Ep/Dp; returns logs and the (detached) encoded batch for the critic."""
        cfg = self.cfg
        with autocast(self.device, cfg.amp):
            # The MLPs run in bf16 (about 1.3x per step on AMX CPUs); FK, losses and validation in fp32.
            z, y_rec, y_prior, z_cycle = self.ae_ddp(y, z_prior)
        z, z_cycle = z.float(), z_cycle.float()
        rec = joint_l2_mm(y_rec, y)
        cyc = (z_cycle - z_prior).abs().mean()
        loss = rec / 100.0 + cfg.cycle_weight * cyc
        logs = {"rec_mm": rec.item(), "cycle": cyc.item()}
        if cfg.train_encoder:
            adv = gan_logits_loss(_critic_logits(self.critic_ddp, z), real=True)
            loss = loss + cfg.adv_weight * adv
            logs["adv"] = adv.item()
        if cfg.angle_limit_weight > 0:
            ang = plausibility_angles(y_prior)
            hinge = (torch.relu(self.angle_lo - ang) + torch.relu(ang - self.angle_hi)).mean()
            loss = loss + cfg.angle_limit_weight * hinge
            logs["angle_hinge_deg"] = hinge.item()
        if cfg.coverage_weight > 0:
            # For every real pose, the nearest decoded prior sample of the batch (flat L2) moves towards it:
            # the prior's samples spread over the data instead of bunching where the angle limits are safe.
            d = torch.cdist(y.flatten(1), y_prior.flatten(1))
            nearest = y_prior[d.argmin(dim=1)]
            cover = joint_l2_mm(nearest, y)
            loss = loss + cfg.coverage_weight * cover / 100.0
            logs["cover_mm"] = cover.item()
        if cfg.marginal_weight > 0 and cfg.train_encoder:
            marg = uniform_quantile_loss(z)
            loss = loss + cfg.marginal_weight * marg
            logs["marginal"] = marg.item()
        if self.pose_critic_ddp is not None:
            padv = gan_logits_loss(_critic_logits(self.pose_critic_ddp, y_prior), real=True)
            loss = loss + cfg.pose_adv_weight * padv
            logs["pose_adv"] = padv.item()
        self.opt_ae.zero_grad(set_to_none=True)
        loss.backward()
        guarded_step(self.opt_ae, loss)
        logs["loss"] = loss.item()
        return logs, z.detach(), y_prior.detach()

    def critic_step(self, z_fake: torch.Tensor, z_real: torch.Tensor, y_fake: torch.Tensor,
                    y_real: torch.Tensor) -> dict[str, float]:  # fmt: skip
        """The discriminators' own update with their own optimisers."""
        n = z_fake.shape[0]
        logits = self.critic_ddp(torch.cat([z_real, z_fake], dim=0))
        loss = gan_logits_loss(logits[:n], real=True) + gan_logits_loss(logits[n:], real=False)
        self.opt_critic.zero_grad(set_to_none=True)
        loss.backward()
        guarded_step(self.opt_critic, loss)
        logs = {"critic": loss.item()}
        if self.pose_critic_ddp is not None and self.opt_pose_critic is not None:
            pl = self.pose_critic_ddp(torch.cat([y_real, y_fake], dim=0))
            ploss = gan_logits_loss(pl[:n], real=True) + gan_logits_loss(pl[n:], real=False)
            self.opt_pose_critic.zero_grad(set_to_none=True)
            ploss.backward()
            guarded_step(self.opt_pose_critic, ploss)
            logs["pose_critic"] = ploss.item()
        return logs

    def train_step(self, step: int) -> dict[str, float]:
        scale = self._lr_scale(step)
        for opt, base in ((self.opt_ae, self.cfg.lr), (self.opt_critic, self.cfg.critic_lr),
                          (self.opt_pose_critic, self.cfg.critic_lr)):  # fmt: skip
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = base * scale
        self.ae.train()
        y, z_prior = self.sample_batch(step)
        logs, z, y_prior = self.generator_step(y, z_prior)
        if self.cfg.train_encoder or self.pose_critic is not None:
            logs.update(self.critic_step(z, z_prior, y_prior, y))
        return logs

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.ae.eval()
        z = self.ae.encoder(self.val)
        rec = self.ae.decoder(z)
        mpjpe = torch.linalg.norm(rec - self.val, dim=-1).mean().item()
        ks = ks_to_uniform(z.cpu().numpy())
        g = torch.Generator().manual_seed(self.cfg.seed)
        samples = self.ae.decoder((torch.rand(2048, self.model_cfg.latent_dim, generator=g) * 2 - 1).to(self.device))
        ang = plausibility_angles(samples)
        margin = self.cfg.angle_margin_deg
        ok = ((ang >= self.angle_lo - margin) & (ang <= self.angle_hi + margin)).all(-1).float().mean().item()
        return {"val_mpjpe_mm": mpjpe, "val_ks_median": float(np.median(ks)), "val_ks_max": float(ks.max()),
                "val_prior_plausible": ok}  # fmt: skip
