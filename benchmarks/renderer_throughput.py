"""Throughput of the synthetic-people renderer: images per second on one core, per style.

Usage::

    python benchmarks/renderer_throughput.py --out out/renderer_throughput.json
    python benchmarks/renderer_throughput.py --size 128 --images 300 --repeats 5 --data-root ../shared/data

Runs in a single process with one OpenCV thread (what one DataLoader worker does), renders
``--images`` full samples (pose the body, camera, rasterise, background, style effects) per repeat
after a warm-up that compiles the jitted kernels, and reports the median over ``--repeats`` of
images per CPU-second of the process (one core's throughput, robust to other load on the machine)
and, for reference, per wall-clock second. Poses come from ``nlrd.data.synthetic.demo_poses``, so no prepared mocap is needed.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from nlrd.data.paths import resolve_data_root
from nlrd.data.synthetic import demo_poses, render_sample
from nlrd.data.synthetic.backgrounds import BackgroundBank


def measure(
    style: str, poses: np.ndarray, size: int, images: int, repeats: int, bank: BackgroundBank | None
) -> tuple[list[float], list[float]]:
    """Images per CPU-second and per wall-clock second of each repeat for one style.

    CPU time (``time.process_time``) is what one core delivers even when other processes share the
    machine; wall-clock time equals it on an idle machine.
    """
    rng = np.random.default_rng(0)
    for i in range(20):  # warm-up: numba compilation / cache load, background bank, allocator
        render_sample(poses[i % len(poses)], style, rng, size, bank)
    cpu_rates, wall_rates = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        for i in range(images):
            render_sample(poses[i % len(poses)], style, rng, size, bank)
        cpu_rates.append(images / (time.process_time() - c0))
        wall_rates.append(images / (time.perf_counter() - t0))
    return cpu_rates, wall_rates


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/renderer_throughput.json"))
    ap.add_argument("--data-root", default=None, help="real data folder (backgrounds/); default $NLRD_DATA")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=300, help="images per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--styles", nargs="+", default=["source", "target"])
    args = ap.parse_args(argv)
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    bank = BackgroundBank.from_folders(resolve_data_root(args.data_root) / "backgrounds")
    poses = demo_poses.random_poses(64, np.random.default_rng(0))
    results = {}
    print(f"{'style':<8} {'img/s/core':>11} {'ms/img':>8} {'min':>8} {'max':>8} {'wall img/s':>11}")
    for style in args.styles:
        cpu, wall = measure(style, poses, args.size, args.images, args.repeats, bank)
        med = float(np.median(cpu))
        results[style] = {"images_per_cpu_second": med, "ms_cpu_per_image": 1000.0 / med, "repeats_cpu": cpu,
                          "images_per_wall_second": float(np.median(wall)), "repeats_wall": wall}  # fmt: skip
        print(f"{style:<8} {med:>11.1f} {1000.0 / med:>8.2f} {min(cpu):>8.1f} {max(cpu):>8.1f} {np.median(wall):>11.1f}")
    report = {
        "size": args.size,
        "images_per_repeat": args.images,
        "processes": 1,
        "opencv_threads": 1,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "styles": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
