"""Throughput of the synthetic-people renderer per core, against what stage source's training step consumes.

Usage::

    python benchmarks/renderer_throughput.py --out out/renderer_throughput.json
    python benchmarks/renderer_throughput.py --size 128 --images 300 --repeats 5 --data-root ../shared/data
    python benchmarks/renderer_throughput.py --train-threads 2 --train-steps 20    # training side on 2 threads
    python benchmarks/renderer_throughput.py --no-train                            # the renderer alone
    python benchmarks/renderer_throughput.py --no-train --bodies capsule anny      # capsule vs Anny bodies

Runs in a single process with one OpenCV thread (what one DataLoader worker does), renders
``--images`` full samples (pose the body, camera, rasterise, background, style effects) per repeat
after a warm-up that compiles the jitted kernels, and reports the median over ``--repeats`` of
images per CPU-second of the process (one core's throughput, robust to other load on the machine)
and, for reference, per wall-clock second. Poses come from ``nlrd.data.synthetic.demo_poses``, so no prepared mocap is needed.

Then (unless ``--no-train``) it times the consumer: ``train_step`` of ``nlrd.stages.source.SourceStage``
built as ``training.train_source`` builds it (batch 64, resnet_small, bf16 autocast where the CPU is
fast at it, Dp of the shipped pose prior), fed pre-rendered batches so that rendering is not in the
timing (see ``benchmarks/training_throughput.py``). Training consumption is images per second of the
training process; with one training thread the per-CPU-second rate is used when it is higher (on a
loaded machine the wall clock understates an idle core, so this keeps the ratio conservative). The
ratio ``renderer images per core-second / training images per second`` says how many training
processes' worth of images one render worker delivers: with ``SourceStageConfig.workers = 1`` it must
stay above 1, and the target is >= 2 so that the loader never stalls the step. The target-style row
is the oracle's case (the same step on target-style renders).

``--bodies capsule anny`` times every style with each body model (the style with ``body`` replaced;
repeats interleaved so that load on the machine hits both alike) and prints them side by side; each
style is then reported as ``<style>/<body>``. Every sample is a new person, so the Anny rows include
drawing a phenotype and building its rest mesh (a few ms) besides posing the mesh.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from nlrd.data.paths import resolve_data_root
from nlrd.data.synthetic import demo_poses, render_sample
from nlrd.data.synthetic.backgrounds import BackgroundBank
from nlrd.data.synthetic.styles import Style, get_style

# The training side reuses benchmarks/training_throughput.py (a script folder, not a package).
sys.path.insert(0, str(Path(__file__).resolve().parent))
import training_throughput  # noqa: E402

RATIO_TARGET = 2.0  # renderer images per core-second / training images per second


def measure(
    style: str | Style, poses: np.ndarray, size: int, images: int, repeats: int, bank: BackgroundBank | None
) -> tuple[list[float], list[float]]:
    """Images per CPU-second and per wall-clock second of each repeat for one style.

    CPU time (``time.process_time``) is what one core delivers even when other processes share the
    machine; wall-clock time equals it on an idle machine.
    """
    return measure_many({"style": style}, poses, size, images, repeats, bank)["style"]


def measure_many(
    styles: dict[str, str | Style], poses: np.ndarray, size: int, images: int, repeats: int, bank: BackgroundBank | None
) -> dict[str, tuple[list[float], list[float]]]:
    """:func:`measure` for several styles, their repeats interleaved (one repeat of each in turn)."""
    rngs = {label: np.random.default_rng(0) for label in styles}
    for label, style in styles.items():
        for i in range(20):  # warm-up: numba compilation / cache load, background bank, body model, allocator
            render_sample(poses[i % len(poses)], style, rngs[label], size, bank)
    rates: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in styles}
    for _ in range(repeats):
        for label, style in styles.items():
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(images):
                render_sample(poses[i % len(poses)], style, rngs[label], size, bank)
            rates[label][0].append(images / (time.process_time() - c0))
            rates[label][1].append(images / (time.perf_counter() - t0))
    return rates


def bodies_table(results: dict[str, dict[str, Any]], styles: list[str], bodies: list[str]) -> str:
    """Markdown: images per CPU-second (median) of each style with each body model, side by side."""
    head = "| style | " + " | ".join(f"{b} img/s/core" for b in bodies) + " | " + " | ".join(
        f"{b}/{bodies[0]}" for b in bodies[1:]) + " |"  # fmt: skip
    lines = [head, "|---|" + "---:|" * (2 * len(bodies) - 1)]
    for style in styles:
        r = [results[f"{style}/{b}"]["images_per_cpu_second"] for b in bodies]
        lines.append(f"| {style} | " + " | ".join(f"{x:.1f}" for x in r) + " | "
                     + " | ".join(f"{x / r[0]:.2f}" for x in r[1:]) + " |")  # fmt: skip
    return "\n".join(lines)


def training_consumption(args: argparse.Namespace) -> dict[str, Any]:
    """Images per second that stage source's training step consumes (see the module doc)."""
    torch.set_num_threads(args.train_threads)
    ctx = training_throughput.make_context(args.device, args.data, args.data_root, args.checkpoints)
    (bench,) = training_throughput.build_source(ctx)
    r = training_throughput.measure(bench, ctx.device, args.train_steps, args.train_warmup, args.train_repeats)
    wall, cpu = r["samples_per_s"], r["samples_per_cpu_s"]
    # One thread: CPU time is what an idle core would need, so its rate bounds the consumption from above.
    r["consumption_images_per_s"] = max(wall, cpu) if args.train_threads == 1 and ctx.device.type == "cpu" else wall
    r["threads"] = args.train_threads
    r["device"] = str(ctx.device)
    return r


def combined_table(styles: dict[str, dict[str, Any]], train: dict[str, Any] | None) -> str:
    """Markdown: renderer per core against the training step's consumption, with the ratio per style."""
    lines = ["| style | renderer img/s/core | training step img/s | ratio | target |", "|---|---:|---:|---:|---|"]
    for style, r in styles.items():
        per_core = r["images_per_cpu_second"]
        if train is None:
            lines.append(f"| {style} | {per_core:.1f} | not measured | | |")
            continue
        use = "stage source" if style.split("/")[0] == "source" else "oracle"
        ratio = per_core / train["consumption_images_per_s"]
        verdict = "met" if ratio >= RATIO_TARGET else "MISSED"
        lines.append(f"| {style} ({use}) | {per_core:.1f} | {train['consumption_images_per_s']:.1f} | {ratio:.2f} | "
                     f">= {RATIO_TARGET:g}: {verdict} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/renderer_throughput.json"))
    ap.add_argument("--data-root", default=None, help="real data folder (backgrounds/); default $NLRD_DATA")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=300, help="images per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--styles", nargs="+", default=["source", "target"])
    ap.add_argument(
        "--bodies",
        nargs="+",
        default=None,
        choices=["capsule", "anny"],
        help="time each style with each of these body models, side by side (default: the style's own)",
    )
    ap.add_argument("--no-train", action="store_true", help="skip timing the source stage's training step")
    ap.add_argument("--train-threads", type=int, default=1, help="torch threads of the training step")
    ap.add_argument("--train-steps", type=int, default=10, help="timed training steps per repeat")
    ap.add_argument("--train-warmup", type=int, default=3)
    ap.add_argument("--train-repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device of the training step")
    ap.add_argument("--data", default=str(training_throughput.REPO_ROOT / "data"), help="prepared data folder")
    ap.add_argument("--checkpoints", default=str(training_throughput.REPO_ROOT / "checkpoints"))
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    bank = BackgroundBank.from_folders(resolve_data_root(args.data_root) / "backgrounds")
    poses = demo_poses.random_poses(64, np.random.default_rng(0))
    results = {}
    if args.bodies:
        cases: dict[str, str | Style] = {f"{st}/{b}": replace(get_style(st), body=b) for st in args.styles
                                         for b in args.bodies}  # fmt: skip
    else:
        cases = {st: st for st in args.styles}
    width = max(8, *(len(c) for c in cases))
    print(f"{'style':<{width}} {'img/s/core':>11} {'ms/img':>8} {'min':>8} {'max':>8} {'wall img/s':>11}")
    rates = measure_many(cases, poses, args.size, args.images, args.repeats, bank)
    for style, (cpu, wall) in rates.items():
        med = float(np.median(cpu))
        results[style] = {"images_per_cpu_second": med, "ms_cpu_per_image": 1000.0 / med, "repeats_cpu": cpu,
                          "images_per_wall_second": float(np.median(wall)), "repeats_wall": wall}  # fmt: skip
        print(f"{style:<{width}} {med:>11.1f} {1000.0 / med:>8.2f} {min(cpu):>8.1f} {max(cpu):>8.1f} "
              f"{np.median(wall):>11.1f}")  # fmt: skip
    if args.bodies and len(args.bodies) > 1:
        print()
        print(bodies_table(results, args.styles, args.bodies))
    train = None if args.no_train else training_consumption(args)
    if train is not None:
        wall, cpu = train["samples_per_s"], train["samples_per_cpu_s"]
        print(f"\nsource training step ({train['device']}, {train['threads']} thread(s), batch {train['batch']}, "
              f"{train['note']}): {wall:.1f} img/s wall, {cpu:.1f} img/CPU-s")  # fmt: skip
    print()
    print(combined_table(results, train))
    report: dict[str, Any] = {
        "size": args.size,
        "images_per_repeat": args.images,
        "processes": 1,
        "opencv_threads": 1,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "styles": results,
    }
    if args.bodies:
        report["bodies"] = args.bodies
    if train is not None:
        report["training_source_step"] = train
        report["ratio_target"] = RATIO_TARGET
        report["ratios"] = {s: r["images_per_cpu_second"] / train["consumption_images_per_s"] for s, r in results.items()}
    training_throughput.write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
