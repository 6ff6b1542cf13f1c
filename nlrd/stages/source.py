"""Stage 3, source: the image-to-latent network Gs on labelled synthetic renders, through the frozen Dp.

Loss: L1 between Dp(Gs(x)) and the label joints (mm, root-relative camera frame). The authors'
augmentations, each applied to image and label together so the pair stays exact: colour jitter
(image only), a horizontal flip with the pose mirrored by the registry's pose-flip, and an in-plane
rotation of up to +-10 degrees with the pose rotated about the optical axis.

``echo = k`` (data echoing) keeps each rendered sample in the batch for k consecutive steps, with
fresh augmentations, so a step renders ``batch / k`` new images: on a 2-core machine rendering costs
about as much as the step itself (``benchmarks/source_echo.py``).

With ``style="target"`` the same stage trains the target-supervised *oracle* (the upper bound the
adaptation is measured against), usually initialised from Gs (``init_from``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from nlrd.checkpoint import load_checkpoint, load_into
from nlrd.data.synthetic import SyntheticPoseDataset, fixed_test_set
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.models.image_encoder import ImageEncoder, ImageEncoderConfig, build_image_encoder, encode_images
from nlrd.models.pose_aae import PoseDecoder
from nlrd.precision import autocast
from nlrd.stages.common import MOCAP_SOURCES, rotation_z
from nlrd.trainer import DistInfo, adam, guarded_step, warmup_cosine, wrap_ddp
from nlrd.transforms import flip_pose, rotation_sampling_matrix

RENDER_SOURCES: list[dict[str, str]] = [
    {"name": "Poly Haven HDRIs (target-style backgrounds)", "url": "https://polyhaven.com", "licence": "CC0"},
    {"name": "Kodak Lossless True Color Image Suite (target-style backgrounds)", "url": "https://r0k.us/graphics/kodak/",
     "licence": "released by Eastman Kodak for unrestricted usage"},
]  # fmt: skip


@dataclass
class SourceStageConfig:
    """Optimisation and data settings of stage source (the network's sizes live in ImageEncoderConfig)."""

    style: str = "source"
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lr_final_fraction: float = 0.02
    warmup_steps: int = 200
    flip_prob: float = 0.5
    max_rotation_deg: float = 10.0
    colour_jitter: float = 0.3
    crop_scale_jitter: float = 0.1  # crops zoom by up to +-10% and shift by up to 6% of their side,
    crop_shift_jitter: float = 0.06  # so detector boxes at test time need not match render crops exactly
    workers: int = 1  # render processes feeding the loader
    echo: int = 1  # steps each rendered sample is trained on (data echoing); batch / echo fresh renders per step
    warm_size: int = 0  # progressive resizing: render and train the first warm_fraction of the steps at this
    warm_fraction: float = 0.0  # side (px, divisible by 16; 0 = off), the rest at the model's image_size
    val_images: int = 256
    seed: int = 0
    steps: int = 6000
    init_from: str = ""  # checkpoint of an image encoder to start from (the oracle starts from Gs)
    amp: bool = True  # bf16 autocast where the hardware is fast at it (see nlrd.precision)


def colour_jitter(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """Random brightness, contrast and saturation per image; x (B, 3, H, W) in [0, 1]."""
    if strength <= 0:
        return x
    b = x.shape[0]

    def factor() -> torch.Tensor:
        return (1 + (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * strength).to(x)

    x = x * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * factor() + grey
    return x.clamp(0, 1)


def crop_sampling_matrix(b: int, scale: float, shift: float, g: torch.Generator) -> torch.Tensor:
    """(b, 3, 3) random zoom by up to +-``scale`` and shift by up to ``shift`` of the crop side, as a map
    from output to input coordinates in ``affine_grid``'s normalised units (which span 2). With both
    zero it is the identity and draws nothing from ``g``."""
    m = torch.eye(3).repeat(b, 1, 1)
    if scale <= 0 and shift <= 0:
        return m
    s = 1 + (torch.rand(b, generator=g) * 2 - 1) * scale
    t = (torch.rand(b, 2, generator=g) * 2 - 1) * 2 * shift
    m[:, 0, 0] = 1 / s
    m[:, 1, 1] = 1 / s
    m[:, :2, 2] = t
    return m


def augment_pair(
    x: torch.Tensor, y: torch.Tensor, cfg: SourceStageConfig, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the paired augmentations to images (B,3,H,W) in [0,1] and poses (B,J,3) mm.

    Colour jitter, then a random crop zoom/shift (the root-relative 3D label is unchanged), a horizontal
    flip (pose mirrored) and an in-plane rotation (pose rotated about the optical axis). The three warps
    are composed into one sampling matrix and applied with a single bilinear ``grid_sample`` (zero
    fill): the images are resampled once, not once per warp, which is sharper and saves a pass.
    """
    b = x.shape[0]
    x = colour_jitter(x, cfg.colour_jitter, g)
    warp = cfg.crop_scale_jitter > 0 or cfg.crop_shift_jitter > 0 or cfg.max_rotation_deg > 0
    # Output pixel p samples the input at crop @ flip @ rotation @ p (each warp samples the previous one).
    m = crop_sampling_matrix(b, cfg.crop_scale_jitter, cfg.crop_shift_jitter, g)
    flip = torch.rand(b, generator=g) < cfg.flip_prob
    y = torch.where(flip.to(y.device).view(b, 1, 1), flip_pose(y), y)
    if cfg.max_rotation_deg > 0:
        theta = (torch.rand(b, generator=g) * 2 - 1) * cfg.max_rotation_deg
        y = y @ rotation_z(theta.to(y)).transpose(-1, -2)
    if not warp:
        return torch.where(flip.to(x.device).view(b, 1, 1, 1), torch.flip(x, dims=[-1]), x), y
    m[:, 0, 0] = torch.where(flip, -m[:, 0, 0], m[:, 0, 0])  # m @ diag(-1, 1, 1) for the flipped images
    if cfg.max_rotation_deg > 0:
        m = m @ rotation_sampling_matrix(theta, *x.shape[-2:])
    grid = torch.nn.functional.affine_grid(m[:, :2].to(x), list(x.shape), align_corners=False)
    return torch.nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False), y


class SourceStage:
    """Trains an ImageEncoder G so that Dp(G(x)) matches the rendered pose."""

    name = "source"

    def __init__(self, train_poses: np.ndarray, val_poses: np.ndarray, decoder: PoseDecoder, model_cfg: ImageEncoderConfig,
                 cfg: SourceStageConfig, device: torch.device, info: DistInfo, data_root: str | Path | None = None,
                 pose_checkpoint: str | None = None) -> None:  # fmt: skip
        if cfg.batch % info.world_size:
            raise ValueError(f"batch {cfg.batch} does not divide over {info.world_size} processes")
        per_rank = cfg.batch // info.world_size
        if cfg.echo < 1 or per_rank % cfg.echo:
            raise ValueError(f"echo {cfg.echo} must divide the per-process batch {per_rank}")
        self.cfg, self.device, self.info = cfg, device, info
        self.pose_checkpoint = pose_checkpoint
        backgrounds = Path(data_root) / "backgrounds" if data_root is not None else None
        self.decoder = decoder.to(device).eval()
        for p in self.decoder.parameters():
            p.requires_grad_(False)
        self.model: ImageEncoder = build_image_encoder(model_cfg, seed=cfg.seed).to(device)
        self.model_cfg = self.model.config
        if cfg.init_from:
            load_into(self.model, load_checkpoint(cfg.init_from), prefix="encoder.")
        # channels_last is what the oneDNN (and cuDNN) bf16 convolution kernels want.
        self.model = self.model.to(memory_format=torch.channels_last)
        self.model_ddp = wrap_ddp(self.model, info, device)
        self.opt = adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, decoupled=True)
        size = self.model_cfg.image_size
        if cfg.warm_size and (cfg.warm_size % 16 or not 0 < cfg.warm_fraction < 1):
            raise ValueError(f"warm_size {cfg.warm_size} must divide by 16 and warm_fraction {cfg.warm_fraction} lie in (0, 1)")
        self._train_poses, self._backgrounds = train_poses, backgrounds
        self._chunk = per_rank // cfg.echo  # fresh renders per step and process
        self.loader = self._make_loader(self._render_size(0))
        self._iter: Iterator | None = None
        self._window: deque[tuple[torch.Tensor, torch.Tensor]] = deque(maxlen=cfg.echo)  # the last rendered chunks
        val = fixed_test_set(val_poses, cfg.style, cfg.val_images, seed=cfg.seed + 77, size=size, backgrounds=backgrounds)
        self.val_x = torch.from_numpy(val["images"]).permute(0, 3, 1, 2).float().div(255).to(device)
        self.val_y = val["joints3d"]
        self.aug_gen = torch.Generator().manual_seed(cfg.seed * 7919 + info.rank)

    def modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"encoder": self.opt}

    def export(self) -> dict[str, nn.Module]:
        return {"encoder": self.model}

    def checkpoint_meta(self) -> dict[str, Any]:
        sources = MOCAP_SOURCES + (RENDER_SOURCES if self.cfg.style != "source" else [])
        return {"config": {"model": asdict(self.model_cfg), "stage": asdict(self.cfg)}, "data_sources": sources,
                "extra": {"pose_checkpoint": self.pose_checkpoint, "style": self.cfg.style}}  # fmt: skip

    def _render_size(self, step: int) -> int:
        """Side of the training renders at ``step``: ``warm_size`` during the warm phase, else the model's."""
        if self.cfg.warm_size and step < self.cfg.warm_fraction * self.cfg.steps:
            return self.cfg.warm_size
        return self.model_cfg.image_size

    def _make_loader(self, size: int) -> DataLoader:
        """A render stream of ``size`` px crops. Each rank renders its own stream (seeded by rank): the
        images differ across ranks like the shards of one big random batch would."""
        cfg = self.cfg
        # The warm stream gets its own seed, so the full-size stream after it does not replay its samples.
        seed = cfg.seed * 1000 + self.info.rank + 7919 * (size != self.model_cfg.image_size)
        ds = SyntheticPoseDataset(self._train_poses, cfg.style, size=size, seed=seed, backgrounds=self._backgrounds)
        return DataLoader(ds, batch_size=self._chunk, num_workers=cfg.workers,
                          persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers > 0 else None)  # fmt: skip

    def _lr_scale(self, step: int) -> float:
        return warmup_cosine(step, self.cfg.steps, self.cfg.warmup_steps, self.cfg.lr_final_fraction)

    def next_batch(self, step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented batch for ``step``, which picks the render size S: images (B, 3, S, S) in [0, 1]
        and poses (B, J, 3) mm."""
        size = self._render_size(step)
        if size != self.loader.dataset.size:  # type: ignore[attr-defined]
            # The warm phase ends: a new stream at the model's size (the old one's workers shut down).
            self.loader, self._iter = self._make_loader(size), None
            self._window.clear()
        if self._iter is None:
            self._iter = iter(self.loader)
            self._window.extend(next(self._iter) for _ in range(self.cfg.echo - 1))
        # Data echoing (module docstring): a sliding window of the last `echo` rendered chunks, so every
        # sample serves `echo` consecutive steps and no two batches are equal.
        self._window.append(next(self._iter))
        x = torch.cat([c[0] for c in self._window])
        y = torch.cat([c[1] for c in self._window])
        x, y = augment_pair(x, y, self.cfg, self.aug_gen)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_step(self, step: int) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * self._lr_scale(step)
        self.model.train()
        x, y = self.next_batch(step)
        with autocast(self.device, self.cfg.amp):
            z = self.model_ddp(x.contiguous(memory_format=torch.channels_last), any_size=bool(self.cfg.warm_size))
        pred = self.decoder(z.float())
        loss = (pred - y).abs().mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        guarded_step(self.opt, loss, max_norm=10.0)
        with torch.no_grad():
            err = torch.linalg.norm(pred - y, dim=-1).mean().item()
        return {"l1_mm": loss.item(), "mpjpe_mm": err}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Dp(G(x)) for float crops (N, 3, H, W) -> joints (N, J, 3) mm."""
        return self.decoder(encode_images(self.model, x, self.device, amp=self.cfg.amp)).cpu().numpy()

    def evaluate(self) -> dict[str, float]:
        pred = self.predict(self.val_x)
        return {"val_mpjpe_mm": float(mpjpe(pred, self.val_y)), "val_pa_mpjpe_mm": float(pa_mpjpe(pred, self.val_y))}
