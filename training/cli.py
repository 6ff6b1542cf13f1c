"""Command-line plumbing shared by the training entry points: dataclass fields become flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import torch
import torch.distributed as dist

from nlrd.data.paths import default_data_root
from nlrd.trainer import DistInfo, TrainerConfig, init_distributed, resolve_device

T = TypeVar("T")


def add_dataclass_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls`` (``--prefix-field-name``); defaults stay None so unset flags keep the dataclass default."""
    group = parser.add_argument_group(cls.__name__)
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_"):
            continue
        flag = "--" + (prefix + "-" if prefix else "") + f.name.replace("_", "-")
        typ = hints[f.name]
        if typ is bool:
            group.add_argument(flag, dest=f"{prefix}__{f.name}", action=argparse.BooleanOptionalAction, default=None)
        elif typ in (int, float, str):
            group.add_argument(flag, dest=f"{prefix}__{f.name}", type=typ, default=None, help=f"default {f.default!r}")


def dataclass_from_args(cls: type[T], args: argparse.Namespace, prefix: str = "", **overrides: Any) -> T:
    values = {f.name: getattr(args, f"{prefix}__{f.name}") for f in dataclasses.fields(cls)
              if getattr(args, f"{prefix}__{f.name}", None) is not None}  # fmt: skip
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def base_parser(description: str, default_out: str, default_steps: int) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-root", default=None, help=f"raw data folder (default $NLRD_DATA or {default_data_root()})")
    p.add_argument("--data", default="data", help="prepared data folder (made by training.prepare_data if missing)")
    p.add_argument("--steps", type=int, default=default_steps)
    p.add_argument("--batch", type=int, default=None, help="global batch (split over torchrun processes)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", default=default_out, help="checkpoint to write (.safetensors)")
    p.add_argument("--run-dir", default=None, help="folder for resume state (default runs/<stage>)")
    p.add_argument("--no-resume", action="store_true", help="ignore resume state in --run-dir")
    p.add_argument("--log-every", type=int, default=100)
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--no-progress", action="store_true")
    return p


def setup(args: argparse.Namespace) -> tuple[DistInfo, torch.device]:
    """Threads, device and process group; the main rank prepares the mocap data (if missing) while the others wait."""
    from nlrd.data.poses import ensure_prepared

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    info = init_distributed(device)
    if info.is_main:
        ensure_prepared(args.data_root, Path(args.data))
    barrier(info)
    return info, device


def trainer_config(args: argparse.Namespace, stage_name: str, steps: int | None = None,
                   run_dir: str | None = None) -> TrainerConfig:  # fmt: skip
    """The trainer settings of the common flags; ``steps`` and ``run_dir`` override ``--steps`` and ``--run-dir``."""
    return TrainerConfig(steps=args.steps if steps is None else steps, log_every=args.log_every,
                         val_every=args.val_every, ckpt_every=max(args.val_every, 500), seed=args.seed,
                         out=run_dir or args.run_dir or f"runs/{stage_name}", resume=not args.no_resume,
                         progress=not args.no_progress)  # fmt: skip


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def finish(info: DistInfo, summary: dict[str, Any]) -> None:
    """Print one JSON summary line on the main rank and leave the process group."""
    if info.is_main:
        print(json.dumps(summary))
    if info.enabled:
        dist.barrier()
        dist.destroy_process_group()


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.t0, 1)


def run_stage(stage: Any, args: argparse.Namespace, info: DistInfo, device: torch.device, watch: Stopwatch,
              run_name: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Fit a stage with the shared loop, save the shipped checkpoint to --out, print and return the summary."""
    from nlrd.trainer import Trainer

    trainer = Trainer(stage, trainer_config(args, run_name or stage.name), info, device)
    result = trainer.fit()
    trainer.save_final(args.out, result)
    summary = {"stage": stage.name, "out": args.out, "steps": result.steps, "train_seconds": round(result.seconds, 1),
               "wall_seconds": watch.seconds(), "world_size": info.world_size, **result.final_metrics}  # fmt: skip
    finish(info, summary)
    return summary
