"""Measure the shipped (or given) checkpoints on held-out data and write one JSON of results.

    python -m training.evaluate --data-root ../shared/data --only priors --out results.json

Sections (``--only`` takes a comma list; default all that have checkpoints): priors. An existing
--out file is updated section by section, so sections can be run separately.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from nlrd.data.poses import ensure_prepared, load_split
from nlrd.evaluation import evaluate_motion_prior, evaluate_pose_prior
from nlrd.priors import CHECKPOINT_DIR, MOTION_CHECKPOINT, POSE_CHECKPOINT, MotionPrior, PosePrior

SECTIONS = ("priors",)


def eval_priors(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data)
    train, test = load_split(data, "train"), load_split(data, "test")
    pose = PosePrior.from_pretrained(Path(args.checkpoints) / POSE_CHECKPOINT)
    t0 = time.perf_counter()
    pose_res = evaluate_pose_prior(pose, train.joints, test.joints, seed=args.seed)
    pose_res["eval_seconds"] = round(time.perf_counter() - t0, 1)
    pose_res["train_seconds"] = pose.meta.get("metrics", {}).get("train_seconds")
    pose_res["train_steps"] = pose.meta.get("metrics", {}).get("train_steps")
    out: dict[str, Any] = {"pose_aae": pose_res}
    motion_path = Path(args.checkpoints) / MOTION_CHECKPOINT
    if motion_path.exists():
        motion = MotionPrior.from_pretrained(motion_path, pose=pose)
        windows = test.windows(motion.length, stride=motion.length // 2)
        m = evaluate_motion_prior(motion, windows)
        m["train_seconds"] = motion.meta.get("metrics", {}).get("train_seconds")
        m["train_steps"] = motion.meta.get("metrics", {}).get("train_steps")
        out["motion_ae"] = m
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default="data", help="prepared data folder")
    p.add_argument("--checkpoints", default=str(CHECKPOINT_DIR))
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {SECTIONS}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="results.json")
    args = p.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    ensure_prepared(args.data_root, Path(args.data))
    out_path = Path(args.out)
    results: dict[str, Any] = json.loads(out_path.read_text()) if out_path.exists() else {}
    if "priors" in only:
        results.update(eval_priors(args))
    out_path.write_text(json.dumps(results, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    print(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
