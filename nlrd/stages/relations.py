"""Stage 4, relations: one network per registered relation, trained on unpaired real mocap only.

Pose relations (order "pose"): T_z(Ep(y)) should equal Ep(T_y(y)); motion relations ("motion"):
T_v(Em(Ep(Y))) should equal Em(Ep(T_Y(Y))). T_y, T_Y are the exact operations of
``nlrd.transforms``; the poses are seen from random azimuths (as the priors were trained), so the
networks work for every view. Loss: mean squared error in latent space (the code's choice), Adam.

Non-localness (paper section 3.3.3): d_r = mean ||Ep(y) - Ep(T_r(y))|| over the test split (Em for
motion relations) - how far apart in the latent space the two sides of a relation lie.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from nlrd.models.relation_net import RelationNet, RelationNetConfig
from nlrd.precision import autocast
from nlrd.priors import MotionPrior, PosePrior
from nlrd.stages.common import MOCAP_SOURCES, augment_view
from nlrd.trainer import DistInfo, adam, guarded_step, shard, step_generator, warmup_cosine, wrap_ddp
from nlrd.transforms import Relation, get_relation

BANK_SEED_OFFSET = 7919  # the bank's draws use their own stream, apart from the per-step batches

DEFAULT_RELATIONS = ("pose-flip", "inplane-10", "inplane-25", "inplane-50", "flip+inplane-50",
                     "flip-backward", "slow-backward", "flip+inplane-50-backward")  # fmt: skip


@dataclass
class RelationStageConfig:
    """Optimisation settings of one relation network."""

    batch: int = 256
    lr: float = 1e-3
    lr_final_fraction: float = 0.05
    seed: int = 0
    steps: int = 1500
    val_items: int = 1024
    # > 0: encode this many (anchor, counterpart) latent pairs once, from seeded draws of items and
    # views, and train on them. A motion relation's step is almost all the frozen priors encoding
    # 2 x batch windows, so a bank buys many more network steps for the same time. 0: fresh pairs per step.
    bank: int = 0
    amp: bool = True  # bf16 autocast for the frozen priors' training-time targets where the hardware is fast at it


def latent_pairs(
    rel: Relation, items: torch.Tensor, pose: PosePrior, motion: MotionPrior | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(anchor latents, counterpart latents) for poses (B, J, 3) or windows (B, window, J, 3) in mm."""
    anchor, counter = rel.pose_pair(items)
    with torch.no_grad():
        if rel.order == "pose":
            return pose.encoder(anchor), pose.encoder(counter)
        if motion is None:
            raise ValueError(f"relation {rel.name!r} needs the motion prior")
        za, zc = pose.encoder(anchor), pose.encoder(counter)
        return motion.encoder(za), motion.encoder(zc)


class RelationStage:
    """Trains the network of one relation against the frozen priors."""

    def __init__(self, relation: str, train_items: np.ndarray, val_items: np.ndarray, pose: PosePrior,
                 motion: MotionPrior | None, cfg: RelationStageConfig, device: torch.device, info: DistInfo) -> None:  # fmt: skip
        self.rel = get_relation(relation)
        self.name = f"relation:{relation}"
        self.cfg, self.device, self.info = cfg, device, info
        self.pose, self.motion = pose, motion
        self.latent_space = pose.latent_space  # recorded in the checkpoint, checked when it is loaded
        dim = pose.latent_dim if self.rel.order == "pose" else (motion.latent_dim if motion else 0)
        self.model_cfg = RelationNetConfig(latent_dim=dim)
        self.train = torch.as_tensor(train_items, dtype=torch.float32)
        rng = np.random.default_rng(cfg.seed)
        pick = np.sort(rng.choice(len(val_items), size=min(cfg.val_items, len(val_items)), replace=False))
        self.val = torch.as_tensor(val_items[pick], dtype=torch.float32)
        torch.manual_seed(cfg.seed)
        self.net = RelationNet(self.model_cfg).to(device)
        self.net_ddp = wrap_ddp(self.net, info, device)
        self.opt = adam(self.net.parameters(), lr=cfg.lr)
        t0 = time.perf_counter()
        self.bank = self._build_bank(cfg.bank) if cfg.bank > 0 else None
        self.bank_seconds = time.perf_counter() - t0  # part of the training time: callers add it

    @torch.no_grad()
    def _build_bank(self, n: int, chunk: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
        """(anchor (n, D), counterpart (n, D)) latents of n seeded draws of a training item and a view.

        Every rank draws the same bank (same seed), so a distributed run sees the same pairs.
        """
        g = torch.Generator().manual_seed(self.cfg.seed + BANK_SEED_OFFSET)
        za_all, zc_all = [], []
        for start in range(0, n, chunk):
            items = self._draw_items(g, min(chunk, n - start)).to(self.device)
            with autocast(self.device, self.cfg.amp):
                za, zc = latent_pairs(self.rel, items, self.pose, self.motion)
            za_all.append(za.float())
            zc_all.append(zc.float())
        return torch.cat(za_all), torch.cat(zc_all)

    def modules(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"net": self.opt}

    def export(self) -> dict[str, nn.Module]:
        return {"net": self.net}

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"config": {"model": asdict(self.model_cfg), "stage": asdict(self.cfg), "relation": self.rel.name,
                           "order": self.rel.order}, "data_sources": MOCAP_SOURCES}  # fmt: skip

    def _draw_items(self, g: torch.Generator, n: int) -> torch.Tensor:
        """n training items (poses (n, J, 3) or windows (n, T, J, 3), mm), each seen from a random view."""
        return augment_view(self.train[torch.randint(len(self.train), (n,), generator=g)], g, flip_prob=0.5)

    def sample_batch(self, step: int) -> torch.Tensor:
        items = self._draw_items(step_generator(self.cfg.seed, step), self.cfg.batch)
        return items[shard(self.cfg.batch, self.info)].to(self.device)

    def train_step(self, step: int) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = self.cfg.lr * warmup_cosine(step, self.cfg.steps, 0, self.cfg.lr_final_fraction)
        if self.bank is not None:
            g = step_generator(self.cfg.seed, step)
            bank_a, bank_c = self.bank
            idx = torch.randint(len(bank_a), (self.cfg.batch,), generator=g)[shard(self.cfg.batch, self.info)].to(bank_a.device)
            za, zc = bank_a[idx], bank_c[idx]
        else:
            with autocast(self.device, self.cfg.amp):
                # Most of a motion relation's step is the frozen priors encoding 2 x 256 windows; bf16
                # rounds the targets far below the networks' errors. Validation stays fp32.
                za, zc = latent_pairs(self.rel, self.sample_batch(step), self.pose, self.motion)
            za, zc = za.float(), zc.float()
        pred = self.net_ddp(za)
        loss = ((pred - zc) ** 2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        guarded_step(self.opt, loss)
        return {"mse": loss.item()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out error of T_r relative to the distance it bridges (ratio < 1: better than identity)."""
        errs, dists = [], []
        g = torch.Generator().manual_seed(self.cfg.seed + 1)
        for chunk in self.val.split(256):
            za, zc = latent_pairs(self.rel, augment_view(chunk, g, flip_prob=0.5).to(self.device), self.pose, self.motion)
            errs.append(torch.linalg.norm(self.net(za) - zc, dim=-1))
            dists.append(torch.linalg.norm(za - zc, dim=-1))
        err, dist = torch.cat(errs).mean().item(), torch.cat(dists).mean().item()
        return {"val_error": err, "val_distance": dist, "val_relative_error": err / max(dist, 1e-9)}


@torch.no_grad()
def nonlocalness(relation: str, test_items: np.ndarray, pose: PosePrior, motion: MotionPrior | None,
                 batch: int = 512) -> float:  # fmt: skip
    """d_r = mean ||Ep(y) - Ep(T_r(y))|| (Em o Ep for motion relations) over the given test items."""
    rel = get_relation(relation)
    ds = []
    for s in range(0, len(test_items), batch):
        za, zc = latent_pairs(rel, torch.as_tensor(test_items[s : s + batch], dtype=torch.float32), pose, motion)
        ds.append(torch.linalg.norm(za - zc, dim=-1))
    return float(torch.cat(ds).mean())
