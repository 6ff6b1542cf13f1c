"""The floor of "3D from 2D keypoints by fitting the pose prior" (nlrd.fit): held-out TEST mocap poses seen
from fixed view bins, projected, corrupted like a 2D detector and MediaPipe's world landmarks, and fitted.

Usage::

    python benchmarks/fit_floor.py --data data                      # 200 poses per bin, seed 0
    python benchmarks/fit_floor.py --n 64 --speed-repeats 20        # quicker

Per view bin it reports MPJPE and PA-MPJPE (mm) of
  (a) the noisy 3D cue alone (the "MediaPipe-like" world3d, at the person's size),
  (b) the learned start alone (the start network's Dp(z) @ R.T, canonical bone lengths),
  (c) the fit with the cue (own size; and with canonical lengths against the canonical truth),
  (d) the fit from the 2D keypoints alone,
the front/back error rate of each (FB: torso facing the camera or not, disagreeing with the truth;
counted over poses whose torso is clearly front- or back-facing, |cos| >= 0.3; with correctly labelled
left/right keypoints the torso's facing is fixed by the 2D hips and shoulders, so this stays near 0)
and the depth-order error (DO: joints more than 10 cm in front of or behind the pelvis put on the
other side, the depth-mirrored-twin error 2D keypoints cannot see). Then the median
wall milliseconds per person of a fit with the cue at batch 1 and at batch 64 (``--threads`` torch
threads, 1 by default), and the same per CPU-second of the process.

Noise (nlrd.fit.synthetic.ObservationNoise defaults): root depth 2.5-8 m, size 0.85-1.25, 2D noise
1.5-3% of the box per person, 2% outliers, 3% missing joints; the cue has 30-45 mm per-axis noise per
joint (1.5x in depth), a 5 degree rotation and a +-10% scale error.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.data.paths import default_data_root
from nlrd.data.poses import ensure_prepared, load_split
from nlrd.fit import FitConfig, PoseFitter, torso_facing
from nlrd.fit.synthetic import ObservationNoise, Observations, observe
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.transforms import rot_x, rot_y, rot_z

# The view bins of the brief (the same families as the priors' view benchmarks): name -> (elevation,
# roll, body pitch, body roll) in degrees; "+-" bins alternate the sign over the poses.
VIEW_BINS: dict[str, tuple[float, float, float, float]] = {
    "upright, any azimuth": (0.0, 0.0, 0.0, 0.0),
    "elevation +30": (30.0, 0.0, 0.0, 0.0),
    "elevation +60": (60.0, 0.0, 0.0, 0.0),
    "elevation -30": (-30.0, 0.0, 0.0, 0.0),
    "roll +-30": (0.0, 30.0, 0.0, 0.0),
    "lying on back/front": (0.0, 0.0, 90.0, 0.0),
    "lying on the side": (0.0, 0.0, 0.0, 90.0),
}
FACING_MIN = 0.3


def bin_rotations(spec: tuple[float, float, float, float], n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 3, 3) world -> camera rotations of one bin, azimuth uniform."""
    el, roll, pitch, side = spec
    out = np.empty((n, 3, 3))
    for i in range(n):
        sign = 1.0 if i % 2 == 0 else -1.0
        body = rot_x(pitch * sign) @ rot_z(side * sign)
        out[i] = rot_z(roll * sign) @ rot_x(el) @ rot_y(rng.uniform(0.0, 360.0)) @ body
    return out


def front_back_error(pred: np.ndarray, obs: Observations) -> float:
    """Share of clearly front- or back-facing truths whose predicted torso faces the other way."""
    gt = torso_facing(obs.joints3d)
    keep = np.abs(gt) >= FACING_MIN
    return float(((torso_facing(pred) > 0) != (gt > 0))[keep].mean()) if keep.any() else float("nan")


def depth_order_error(pred: np.ndarray, obs: Observations) -> float:
    """Share of joints clearly (> 10 cm) in front of or behind the pelvis that the prediction puts on the
    other side: the depth-mirrored-twin error that 2D keypoints cannot see."""
    gt = obs.joints3d[..., 2] - obs.joints3d[..., :1, 2]
    p = pred[..., 2] - pred[..., :1, 2]
    deep = np.abs(gt) > 100.0
    return float((np.sign(p) != np.sign(gt))[deep].mean())


def fit_batches(fitter: PoseFitter, obs: Observations, batch: int, cue: bool) -> tuple[np.ndarray, np.ndarray]:
    """Fit in batches of ``batch``: own-size (N, J, 3) and canonical (N, J, 3) joints."""
    own, canon = [], []
    for s in range(0, len(obs.conf), batch):
        sl = slice(s, s + batch)
        r = fitter.fit(obs.joints2d[sl], obs.conf[sl], obs.image_size[sl], world3d=obs.world3d[sl] if cue else None)
        own.append(r.joints3d)
        canon.append(r.joints3d_canonical)
    return np.concatenate(own), np.concatenate(canon)


def measure_bin(fitter: PoseFitter, obs: Observations, batch: int) -> dict[str, float]:
    _, _, start = fitter.learned_start(obs.joints2d, obs.conf, obs.image_size, world3d=obs.world3d)
    own, canon = fit_batches(fitter, obs, batch, cue=True)
    own2d, _ = fit_batches(fitter, obs, batch, cue=False)
    gt = obs.joints3d
    return {
        "cue_mpjpe": mpjpe(obs.world3d, gt), "cue_pa": pa_mpjpe(obs.world3d, gt), "cue_fb": front_back_error(obs.world3d, obs),
        "cue_do": depth_order_error(obs.world3d, obs),
        "start_mpjpe": mpjpe(start, obs.canonical), "start_pa": pa_mpjpe(start, obs.canonical),
        "start_fb": front_back_error(start, obs), "start_do": depth_order_error(start, obs),
        "fit_mpjpe": mpjpe(own, gt), "fit_pa": pa_mpjpe(own, gt), "fit_canonical_mpjpe": mpjpe(canon, obs.canonical),
        "fit_fb": front_back_error(own, obs), "fit_do": depth_order_error(own, obs),
        "fit2d_mpjpe": mpjpe(own2d, gt), "fit2d_pa": pa_mpjpe(own2d, gt), "fit2d_fb": front_back_error(own2d, obs),
        "fit2d_do": depth_order_error(own2d, obs),
    }  # fmt: skip


def measure_speed(fitter: PoseFitter, obs: Observations, batch: int, repeats: int) -> dict[str, float]:
    """Median wall and CPU ms per person of fits (with the cue) of ``batch`` people, ``repeats`` times."""
    wall, cpu = [], []
    n = len(obs.conf)
    for r in range(repeats + 2):
        s = (r * batch) % max(n - batch + 1, 1)
        sl = slice(s, s + batch)
        c0, t0 = time.process_time(), time.perf_counter()
        fitter.fit(obs.joints2d[sl], obs.conf[sl], obs.image_size[sl], world3d=obs.world3d[sl])
        if r >= 2:  # the first calls warm up allocators
            wall.append(1000 * (time.perf_counter() - t0) / batch)
            cpu.append(1000 * (time.process_time() - c0) / batch)
    return {"wall_ms_per_person": float(np.median(wall)), "cpu_ms_per_person": float(np.median(cpu)), "batch": batch}


def table(rows: dict[str, dict[str, float]]) -> str:
    cols = [("cue_mpjpe", "cue MPJPE"), ("cue_pa", "cue PA"), ("start_mpjpe", "start MPJPE*"), ("start_pa", "start PA"),
            ("fit_mpjpe", "fit MPJPE"), ("fit_pa", "fit PA"), ("fit_canonical_mpjpe", "fit MPJPE*"),
            ("fit2d_mpjpe", "2D-only MPJPE"), ("fit2d_pa", "2D-only PA"),
            ("cue_fb", "FB cue"), ("start_fb", "FB start"), ("fit_fb", "FB fit"), ("fit2d_fb", "FB 2D-only"),
            ("cue_do", "DO cue"), ("start_do", "DO start"), ("fit_do", "DO fit"), ("fit2d_do", "DO 2D-only")]  # fmt: skip
    lines = ["| view bin | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = [f"{100 * r[k]:.1f}%" if k.endswith(("_fb", "_do")) else f"{r[k]:.1f}" for k, _ in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="data", help="prepared data folder (made from --data-root if missing)")
    p.add_argument("--data-root", default=None, help=f"raw data folder (default $NLRD_DATA or {default_data_root()})")
    p.add_argument("--n", type=int, default=200, help="test poses per view bin")
    p.add_argument("--batch", type=int, default=64, help="batch of the accuracy fits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", choices=["val", "test"], help="val for tuning, test for the record")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--speed-repeats", type=int, default=40, help="timed fits at batch 1 (and a fifth as many at 64)")
    p.add_argument("--steps", type=int, default=None, help="override FitConfig.steps")
    p.add_argument("--out", default="out/fit_floor.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = ensure_prepared(args.data_root or default_data_root(), Path(args.data), progress=False)
    poses = load_split(data, args.split).joints
    cfg = FitConfig() if args.steps is None else FitConfig(steps=args.steps)
    fitter = PoseFitter.from_pretrained(config=cfg)
    rng = np.random.default_rng(args.seed)
    idx = rng.choice(len(poses), size=args.n, replace=False)  # the same poses in every bin
    rows: dict[str, dict[str, float]] = {}
    all_obs = []
    t0 = time.perf_counter()
    for name, spec in VIEW_BINS.items():
        obs = observe(poses[idx], bin_rotations(spec, args.n, rng), rng, ObservationNoise())
        all_obs.append(obs)
        rows[name] = measure_bin(fitter, obs, args.batch)
        print(f"{name}: fit {rows[name]['fit_mpjpe']:.1f} / PA {rows[name]['fit_pa']:.1f} mm", flush=True)
    rows["all bins"] = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
    accuracy_s = time.perf_counter() - t0
    mixed = all_obs[0]
    speed = {"batch_1": measure_speed(fitter, mixed, 1, args.speed_repeats),
             f"batch_{args.batch}": measure_speed(fitter, mixed, args.batch, max(2, args.speed_repeats // 5))}  # fmt: skip
    print(f"\nfit floor on {args.split} mocap, {args.n} poses per bin, seed {args.seed}, steps {cfg.steps} "
          f"(MPJPE* = canonical bone lengths against the canonical truth)\n")  # fmt: skip
    print(table(rows))
    print()
    for k, v in speed.items():
        print(f"speed {k}: {v['wall_ms_per_person']:.1f} ms wall / {v['cpu_ms_per_person']:.1f} ms CPU per person "
              f"({args.threads} thread(s))")  # fmt: skip
    result = {"split": args.split, "n_per_bin": args.n, "seed": args.seed, "threads": args.threads,
              "config": fitter.config_dict(), "bins": rows, "speed": speed, "accuracy_seconds": round(accuracy_s, 1)}  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
