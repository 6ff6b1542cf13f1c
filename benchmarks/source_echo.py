"""Stage source with rendering in the loop: steps per second for each data-echoing factor and render size, side by side.

Usage::

    python benchmarks/source_echo.py --out out/source_echo.json
    python benchmarks/source_echo.py --echo 1 2 4 --workers 0 --threads 2 --steps 20 --repeats 3
    python benchmarks/source_echo.py --style target --echo 1 4       # the oracle's case (dearer renders)
    python benchmarks/source_echo.py --echo 4 --sizes 128 96          # progressive resizing's warm phase

``SourceStageConfig.echo = k`` keeps each rendered sample in the batch for k consecutive steps (a
sliding window of ``batch / k`` fresh renders per step, augmented afresh every time), so a step
renders k times fewer images. On a 2-core machine rendering a batch costs about as much as the step
that consumes it, which is what this trades. Unlike ``training_throughput.py`` (pre-rendered
batches, the training process's own work only), every timed ``train_step`` here renders what it
consumes, exactly as ``python -m training.train_source --stage-echo k --stage-workers w`` does; the
variants run one after another in one process so they see the same machine state.

``--sizes`` adds rows for other render sides: ``--stage-warm-size 96`` trains the first part of a run
on 96 px renders (progressive resizing), which this times against the model's own 128 px.

Reported per echo factor and size: median steps per second over ``--repeats`` blocks, fresh renders per
second, images trained on per second, and the speed-up against the first factor listed. Whether the
faster steps also learn as much per hour is measured by full training runs (docs/results.md, "Source image
model Gs"), not here.

Prints a markdown table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_throughput import Context, add_timing_args, context_from_args, machine_info, time_steps, write_report  # noqa: E402


def build(ctx: Context, style: str, echo: int, workers: int, batch: int, size: int = 128) -> Any:
    """SourceStage as ``training.train_source`` builds it, with the given echo factor and render workers,
    training on ``size`` px renders (the warm phase of progressive resizing when it is not 128)."""
    from nlrd.models.image_encoder import ImageEncoderConfig
    from nlrd.stages.source import SourceStage, SourceStageConfig

    pose, _, _ = ctx.priors()
    # val_images small: the validation set is rendered in the constructor and never used by a step.
    model_cfg = ImageEncoderConfig(latent_dim=pose.latent_dim)
    # A warm phase over the first 90% of the default schedule covers every timed step.
    warm = {"warm_size": size, "warm_fraction": 0.9} if size != model_cfg.image_size else {}
    cfg = SourceStageConfig(style=style, batch=batch, echo=echo, workers=workers, val_images=8, **warm)
    return SourceStage(ctx.poses("train"), ctx.poses("val"), pose.decoder, model_cfg, cfg, ctx.device, ctx.info,
                       data_root=ctx.data_root)  # fmt: skip


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| echo | size (px) | workers | ms/step | steps/s | fresh renders/s | images trained/s | speed-up |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['echo']} | {r['size']} | {r['workers']} | {1000.0 / r['steps_per_s']:.0f} | {r['steps_per_s']:.2f} | "
                     f"{r['fresh_renders_per_s']:.0f} | {r['images_per_s']:.0f} | {r['speedup']:.2f}x |")  # fmt: skip
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--echo", type=int, nargs="+", default=[1, 2, 4], help="echo factors (each must divide --batch)")
    ap.add_argument("--workers", type=int, default=0, help="render processes (0: render in the training process)")
    ap.add_argument("--style", default="source", choices=["source", "target"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[128], help="render sides in px (each divisible by 16)")
    ap.add_argument("--batch", type=int, default=64)
    # warmup 6: fills the echo window and the loader's prefetch before the timing
    add_timing_args(ap, threads=2, warmup=6, steps_help="timed steps per repeat")
    ap.add_argument("--out", type=Path, default=Path("out/source_echo.json"))
    args = ap.parse_args(argv)
    for flag in ("threads", "steps", "repeats", "batch"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be >= 1")
    if args.warmup < 0 or args.workers < 0:
        ap.error("--warmup and --workers must be >= 0")
    if any(s < 16 or s % 16 for s in args.sizes):
        ap.error(f"--sizes {args.sizes}: each must be a multiple of 16")
    bad = [e for e in args.echo if e < 1 or args.batch % e]
    if bad:
        ap.error(f"echo factors {bad} must be >= 1 and divide --batch {args.batch}")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    ctx = context_from_args(args)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for echo in args.echo:
        for size in args.sizes:
            stage = build(ctx, args.style, echo, args.workers, args.batch, size)
            r = time_steps(stage, ctx.device, args.steps, args.warmup, args.repeats)
            r.update(echo=echo, size=size, workers=args.workers, fresh_renders_per_s=r["steps_per_s"] * args.batch / echo,
                     images_per_s=r["steps_per_s"] * args.batch)  # fmt: skip
            r["speedup"] = r["steps_per_s"] / (rows[0]["steps_per_s"] if rows else r["steps_per_s"])
            rows.append(r)
            print(f"  echo {echo}, {size} px: {r['steps_per_s']:.2f} steps/s", flush=True)
            del stage  # stops its render workers before the next variant starts
    report = {"machine": machine_info(args.threads, ctx.device), "style": args.style, "batch": args.batch,
              "steps": args.steps, "repeats": args.repeats, "rows": rows, "seconds": round(time.perf_counter() - t0, 1),
              "inputs": "mocap" if ctx.has_mocap else "random poses"}  # fmt: skip
    print(f"\nstage source with rendering, {args.style} style, {ctx.device}, {args.threads} thread(s), "
          f"{args.workers} render worker(s), median of {args.repeats} x {args.steps} steps\n")  # fmt: skip
    print(markdown_table(rows))
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
