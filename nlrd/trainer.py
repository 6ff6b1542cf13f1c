"""A small training loop shared by every stage: seeded, resumable, NaN-guarded, DDP-ready.

A stage object (see ``nlrd.stages``) owns its models, optimisers and data; the loop owns the step
counter, logging, validation, checkpoints and the distributed set-up. The same script runs as a
single process or under ``torchrun --nproc_per_node N``: each rank draws the *same* global batch from
a generator seeded by (seed, step) and keeps its own slice, and DistributedDataParallel averages the
gradients, so N processes take the same steps as one process with the whole batch.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from nlrd.checkpoint import load_checkpoint, save_checkpoint
from nlrd.precision import pick_device


# ----------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in a (possibly single-process) run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment; single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size(),
                    local_rank=int(os.environ.get("LOCAL_RANK", "0")))  # fmt: skip


def resolve_device(device: str) -> torch.device:
    """:func:`nlrd.precision.pick_device`, and under torchrun each rank takes cuda:LOCAL_RANK."""
    dev = pick_device(device)
    if dev.type != "cuda":
        return dev
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def wrap_ddp(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel around a module when running distributed; the module itself otherwise."""
    if not info.enabled:
        return module
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def adam(params: Any, lr: float, *, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0,
         decoupled: bool = False) -> torch.optim.Optimizer:  # fmt: skip
    """The stages' optimiser: Adam (AdamW when ``decoupled``) with the fused kernel, one kernel per step
    instead of several per tensor (about 12% of a pose-prior step on CPU); the update is Adam's."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    return cls(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=True)


def unwrap(module: nn.Module) -> nn.Module:
    return module.module if isinstance(module, nn.parallel.DistributedDataParallel) else module


def shard(batch_size: int, info: DistInfo) -> slice:
    """This rank's slice of a global batch (the global batch must divide evenly)."""
    if batch_size % info.world_size:
        raise ValueError(f"global batch {batch_size} does not divide over {info.world_size} processes")
    per = batch_size // info.world_size
    return slice(info.rank * per, (info.rank + 1) * per)


def step_generator(seed: int, step: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator that every rank seeds identically for a given step (so they draw the same batch)."""
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    return g


def guarded_step(opt: torch.optim.Optimizer, loss: torch.Tensor, max_norm: float | None = None) -> bool:
    """Step ``opt`` after ``loss.backward()`` only when the loss and its gradients are finite.

    A finite loss can still give non-finite gradients (e.g. BatchNorm over 1x1 maps), and one such
    step would turn every weight into NaN; skipping it keeps them intact (the Trainer counts and
    bounds non-finite losses). ``max_norm`` also clips the gradients' global norm. Returns whether
    the optimiser stepped.
    """
    params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
    if not torch.isfinite(loss) or not params:
        return False
    if max_norm is not None:
        norm = nn.utils.clip_grad_norm_(params, max_norm)
    else:
        norm = nn.utils.get_total_norm([p.grad for p in params])
    if not torch.isfinite(norm):
        return False
    opt.step()
    return True


def warmup_cosine(step: int, steps: int, warmup: int = 0, final_fraction: float = 0.05) -> float:
    """Learning-rate multiplier: linear warm-up over ``warmup`` steps, then cosine decay to ``final_fraction``."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    t = min(1.0, step / max(1, steps))
    return warm * (final_fraction + (1 - final_fraction) * 0.5 * (1 + math.cos(math.pi * t)))


# ----------------------------------------------------------------------------- stage protocol
class Stage(Protocol):
    """What the loop needs from a stage."""

    name: str

    def modules(self) -> dict[str, nn.Module]:
        """Every module whose weights the stage saves (unwrapped)."""
        ...

    def optimizers(self) -> dict[str, torch.optim.Optimizer]: ...

    def train_step(self, step: int) -> dict[str, float]:
        """One optimisation step (all its sub-updates); returns scalar logs. Must be NaN-safe:
        return the losses, and the loop decides whether the step counted."""
        ...

    def evaluate(self) -> dict[str, float]:
        """Validation metrics (computed on every rank, identical inputs)."""
        ...

    def export(self) -> dict[str, nn.Module]:
        """The modules to ship in the final checkpoint."""
        ...

    def checkpoint_meta(self) -> dict[str, Any]:
        """config, data_sources and extra for the final checkpoint."""
        ...


@dataclass
class TrainerConfig:
    """Loop settings shared by every stage (CLI flags override them)."""

    steps: int = 1000
    log_every: int = 50
    val_every: int = 500
    ckpt_every: int = 500
    max_bad_steps: int = 20  # consecutive non-finite losses before giving up
    seed: int = 0
    out: str = "runs/stage"
    resume: bool = True
    progress: bool = True


@dataclass
class TrainResult:
    steps: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    val_history: list[dict[str, float]] = field(default_factory=list)
    final_metrics: dict[str, float] = field(default_factory=dict)
    skipped_steps: int = 0


class NonFiniteLossError(RuntimeError):
    """Raised when too many consecutive steps produce NaN/inf losses."""


def _all_finite(logs: dict[str, float], info: DistInfo, device: torch.device) -> bool:
    ok = all(math.isfinite(v) for v in logs.values())
    if not info.enabled:
        return ok
    flag = torch.tensor([1.0 if ok else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0.5)


# ----------------------------------------------------------------------------- resume state
def _optimizer_tensors(opts: dict[str, torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], dict]:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {}
    for name, opt in opts.items():
        sd = opt.state_dict()
        meta[name] = {"param_groups": sd["param_groups"], "state_keys": {}}
        for pid, st in sd["state"].items():
            keys = {}
            for k, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"{name}.{pid}.{k}"] = v.detach().cpu().contiguous()
                    keys[k] = "tensor"
                else:
                    keys[k] = v
            meta[name]["state_keys"][str(pid)] = keys
    return tensors, meta


def _restore_optimizers(opts: dict[str, torch.optim.Optimizer], tensors: dict[str, torch.Tensor], meta: dict) -> None:
    for name, opt in opts.items():
        if name not in meta:
            raise ValueError(f"resume state has no optimiser {name!r}")
        state: dict[int, dict[str, Any]] = {}
        for pid, keys in meta[name]["state_keys"].items():
            state[int(pid)] = {k: (tensors[f"{name}.{pid}.{k}"] if v == "tensor" else v) for k, v in keys.items()}
        opt.load_state_dict({"state": state, "param_groups": meta[name]["param_groups"]})


class Trainer:
    """Runs a stage for ``config.steps`` steps with logging, validation and resumable checkpoints."""

    def __init__(self, stage: Stage, config: TrainerConfig, info: DistInfo, device: torch.device,
                 on_log: Callable[[int, dict[str, float]], None] | None = None) -> None:  # fmt: skip
        self.stage, self.cfg, self.info, self.device = stage, config, info, device
        self.out = Path(config.out)
        self.on_log = on_log

    @property
    def resume_path(self) -> Path:
        return self.out / "resume.safetensors"

    def save_resume(self, step: int) -> None:
        if not self.info.is_main:
            return
        tensors = {f"model.{name}.{k}": v.detach().cpu().contiguous()
                   for name, m in self.stage.modules().items() for k, v in unwrap(m).state_dict().items()}  # fmt: skip
        opt_tensors, opt_meta = _optimizer_tensors(self.stage.optimizers())
        tensors.update({f"optim.{k}": v for k, v in opt_tensors.items()})
        save_checkpoint(self.resume_path, tensors, stage=f"{self.stage.name}-resume",
                        config={"trainer": asdict(self.cfg)}, extra={"step": step, "optimizers": opt_meta})  # fmt: skip

    def load_resume(self) -> int:
        if not (self.cfg.resume and self.resume_path.exists()):
            return 0
        ck = load_checkpoint(self.resume_path)
        if ck.meta.get("stage") != f"{self.stage.name}-resume":
            # Another stage's state in the same folder (e.g. an interrupted run of another relation
            # network): its tensors may even fit this model, so loading it would silently train on.
            raise ValueError(f"{self.resume_path} holds the resume state of {ck.meta.get('stage')!r}, not of "
                             f"{self.stage.name!r}; pass --no-resume or another --run-dir")  # fmt: skip
        for name, m in self.stage.modules().items():
            prefix = f"model.{name}."
            sd = {k[len(prefix) :]: v for k, v in ck.tensors.items() if k.startswith(prefix)}
            unwrap(m).load_state_dict(sd, strict=True)
        opt_t = {k[len("optim.") :]: v for k, v in ck.tensors.items() if k.startswith("optim.")}
        _restore_optimizers(self.stage.optimizers(), opt_t, ck.meta["extra"]["optimizers"])
        return int(ck.meta["extra"]["step"])

    def fit(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        if info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        start = self.load_resume()
        result = TrainResult(steps=start, seconds=0.0)
        t0 = time.perf_counter()
        bad = 0
        bar = tqdm(total=cfg.steps, initial=start, disable=not (cfg.progress and info.is_main),
                   desc=self.stage.name, dynamic_ncols=True)  # fmt: skip
        running: dict[str, list[float]] = {}
        for step in range(start, cfg.steps):
            logs = self.stage.train_step(step)
            if not _all_finite(logs, info, self.device):
                # The stage zeroes gradients before each update, so a skipped step leaves no trace;
                # a run of them means the model diverged.
                bad += 1
                result.skipped_steps += 1
                if bad >= cfg.max_bad_steps:
                    raise NonFiniteLossError(f"{self.stage.name}: {bad} consecutive non-finite losses at step {step}")
                continue
            bad = 0
            for k, v in logs.items():
                running.setdefault(k, []).append(v)
            bar.update(1)
            done = step + 1
            if done % cfg.log_every == 0 or done == cfg.steps:
                avg = {k: sum(v) / len(v) for k, v in running.items()}
                avg["step"] = float(done)
                result.history.append(avg)
                running.clear()
                bar.set_postfix({k: f"{v:.4g}" for k, v in avg.items() if k != "step"})
                if self.on_log is not None:
                    self.on_log(done, avg)
                if info.is_main and not cfg.progress:
                    rate = (done - start) / max(1e-9, time.perf_counter() - t0)
                    print(
                        f"[{self.stage.name}] step {done}/{cfg.steps} ({rate:.2f} it/s) "
                        + " ".join(f"{k}={v:.4g}" for k, v in avg.items() if k != "step"),
                        flush=True,
                    )
            if cfg.val_every and (done % cfg.val_every == 0 or done == cfg.steps):
                val = self.stage.evaluate()
                val["step"] = float(done)
                result.val_history.append(val)
                if info.is_main:
                    bar.write(f"[{self.stage.name}] step {done}: " + json.dumps({k: round(v, 4) for k, v in val.items()}))
            if cfg.ckpt_every and done % cfg.ckpt_every == 0 and done < cfg.steps:
                self.save_resume(done)
        bar.close()
        result.steps = cfg.steps
        result.seconds = time.perf_counter() - t0
        result.final_metrics = result.val_history[-1] if result.val_history else self.stage.evaluate()
        return result

    def save_final(self, path: str | os.PathLike[str], result: TrainResult) -> Path | None:
        """Write the shipped checkpoint (main rank only) and drop the resume state."""
        if not self.info.is_main:
            return None
        meta = self.stage.checkpoint_meta()
        latent_space = getattr(self.stage, "latent_space", None)
        if latent_space is not None:  # the pose latent space the weights are built on (PosePrior.check_built_on)
            meta = {**meta, "extra": {**(meta.get("extra") or {}), "latent_space": latent_space}}
        metrics = {k: v for k, v in result.final_metrics.items() if k != "step"}
        metrics.update({"train_steps": result.steps, "train_seconds": round(result.seconds, 1),
                        "world_size": self.info.world_size})  # fmt: skip
        modules = {k: unwrap(v) for k, v in self.stage.export().items()}
        out = save_checkpoint(path, modules, stage=self.stage.name, config=meta.get("config", {}),
                              data_sources=meta.get("data_sources"), metrics=metrics, extra=meta.get("extra"))  # fmt: skip
        if self.resume_path.exists():
            self.resume_path.unlink()
            side = self.resume_path.with_name(self.resume_path.name + ".json")
            if side.exists():
                side.unlink()
        return out
