"""Measure the shipped (or given) checkpoints on held-out data and write one JSON of results.

    python -m training.evaluate --data-root ../shared/data --only priors --out results.json

Sections (``--only`` takes a comma list; default all that have checkpoints): priors, source, adapt
(non-localness of every relation, and the ablation rows of ``training.ablation`` from
``--ablation-dir`` with source-only, the adapted G of ``--checkpoints`` and the oracle). An existing
--out file is updated section by section, so sections can be run separately.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.data.poses import ensure_prepared, load_split
from nlrd.evaluation import evaluate_motion_prior, evaluate_pose_prior, evaluate_prior_views
from nlrd.priors import CHECKPOINT_DIR, MOTION_CHECKPOINT, POSE_CHECKPOINT, MotionPrior, PosePrior

SECTIONS = ("priors", "source", "adapt", "real")


@functools.cache
def _pose_prior(checkpoints: str) -> PosePrior:
    """Loaded once per run, shared by the sections."""
    return PosePrior.from_pretrained(Path(checkpoints) / POSE_CHECKPOINT)


def eval_priors(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data)
    train, test = load_split(data, "train"), load_split(data, "test")
    pose = _pose_prior(args.checkpoints)
    t0 = time.perf_counter()
    pose_res = evaluate_pose_prior(pose, train.joints, test.joints, seed=args.seed)
    pose_res["views"] = evaluate_prior_views(pose, test.joints, seed=args.seed)
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


def _load_encoder(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """An image model and its metadata (weights through nlrd.inference, header read separately)."""
    from nlrd.checkpoint import read_metadata
    from nlrd.inference import load_image_encoder

    return load_image_encoder(path), read_metadata(path)


def eval_source(args: argparse.Namespace) -> dict[str, Any]:
    from nlrd.data.testsets import load_test_set
    from nlrd.evaluation import best_fit_floor, pose_errors, predict_joints, predict_joints_and_flip_test
    from nlrd.metrics import mpjpe

    ckdir = Path(args.checkpoints)
    pose = _pose_prior(args.checkpoints)
    gs, meta = _load_encoder(ckdir / "source_gs.safetensors")
    src = load_test_set("source_test", args.data, args.data_root)
    tgt = load_test_set("target_test", args.data, args.data_root)
    # Plain and flip-test predictions (mean with the mirrored image's mirrored pose; 2x G's time).
    src_plain, src_flip = predict_joints_and_flip_test(gs, pose.decoder, src["images"])
    tgt_plain, tgt_flip = predict_joints_and_flip_test(gs, pose.decoder, tgt["images"])
    e_src, e_tgt = pose_errors(src_plain, src["joints3d"]), pose_errors(tgt_plain, tgt["joints3d"])
    out: dict[str, Any] = {
        "source_test_mpjpe_mm": e_src["mpjpe_mm"], "source_test_pa_mpjpe_mm": e_src["pa_mpjpe_mm"],
        "target_test_mpjpe_mm": e_tgt["mpjpe_mm"], "target_test_pa_mpjpe_mm": e_tgt["pa_mpjpe_mm"],
        "target_test_pck150": e_tgt["pck150"], "target_test_auc": e_tgt["auc"],
        "domain_gap_ratio": e_tgt["mpjpe_mm"] / e_src["mpjpe_mm"],
        "source_test_mpjpe_mm_flip_test": float(mpjpe(src_flip, src["joints3d"])),
        "target_test_mpjpe_mm_flip_test": float(mpjpe(tgt_flip, tgt["joints3d"])),
        "train_seconds": meta.get("metrics", {}).get("train_seconds"), "train_steps": meta.get("metrics", {}).get("train_steps"),
    }  # fmt: skip
    # Gs's error split: the decoder's floor on these very labels (no Dp(z) comes closer to them, whatever G
    # does) and what lies above it (G's own error).
    for name, test in (("source_test", src), ("target_test", tgt)):
        floor = float(best_fit_floor(pose, test["joints3d"]).mean())
        out[f"{name}_decoder_floor_mm"] = floor
        out[f"{name}_above_floor_mm"] = out[f"{name}_mpjpe_mm"] - floor
    oracle_path = ckdir / "oracle.safetensors"
    if oracle_path.exists():
        oracle, ometa = _load_encoder(oracle_path)
        e_or = pose_errors(predict_joints(oracle, pose.decoder, tgt["images"]), tgt["joints3d"])
        out.update({"oracle_target_test_mpjpe_mm": e_or["mpjpe_mm"], "oracle_target_test_pa_mpjpe_mm": e_or["pa_mpjpe_mm"],
                    "oracle_gain_vs_gs": 1 - e_or["mpjpe_mm"] / e_tgt["mpjpe_mm"],
                    "oracle_train_seconds": ometa.get("metrics", {}).get("train_seconds")})  # fmt: skip
    return {"source": out}


def eval_adapt(args: argparse.Namespace) -> dict[str, Any]:
    """Non-localness of every relation with a network, and the target-test errors of the ablation rows."""
    from nlrd.data.testsets import load_test_set
    from nlrd.evaluation import pose_errors, predict_joints
    from nlrd.stages.relations import nonlocalness
    from nlrd.transforms import get_relation

    ckdir = Path(args.checkpoints)
    pose = _pose_prior(args.checkpoints)
    motion = MotionPrior.from_pretrained(ckdir / MOTION_CHECKPOINT, pose=pose)
    test = load_split(Path(args.data), "test")
    d: dict[str, float] = {}
    for path in sorted((ckdir / "relations").glob("*.safetensors")):
        rel = get_relation(path.stem)
        items = test.joints if rel.order == "pose" else test.windows(rel.window, stride=rel.window // 2)
        d[rel.name] = round(nonlocalness(rel.name, items, pose, motion), 4)
    tgt = load_test_set("target_test", args.data, args.data_root)

    def row(name: str, terms: list[str], path: Path, **extra: Any) -> dict[str, Any]:
        g, _ = _load_encoder(path)
        e = pose_errors(predict_joints(g, pose.decoder, tgt["images"]), tgt["joints3d"])
        return {"name": name, "terms": terms, "mpjpe_mm": e["mpjpe_mm"], "pa_mpjpe_mm": e["pa_mpjpe_mm"],
                "pck150": e["pck150"], "auc": e["auc"], **extra}  # fmt: skip

    rows = [row("source-only", [], ckdir / "source_gs.safetensors")]
    index_path = Path(args.ablation_dir) / "rows.json"
    if index_path.exists():
        for name, entry in json.loads(index_path.read_text()).items():
            rows.append(row(name, entry["terms"], index_path.parent / entry["checkpoint"], steps=entry.get("steps"),
                            seconds_per_step=entry.get("seconds_per_step")))  # fmt: skip
    if (ckdir / "adapted_g.safetensors").exists():
        from nlrd.checkpoint import read_metadata

        terms = read_metadata(ckdir / "adapted_g.safetensors").get("extra", {}).get("terms", [])
        rows.append(row("adapted G", terms, ckdir / "adapted_g.safetensors"))
    if (ckdir / "real_g.safetensors").exists():
        from nlrd.checkpoint import read_metadata

        terms = read_metadata(ckdir / "real_g.safetensors").get("extra", {}).get("terms", [])
        rows.append(row("real-adapted G (real photos and videos)", terms, ckdir / "real_g.safetensors"))
    if (ckdir / "oracle.safetensors").exists():
        rows.append(row("oracle (target labels)", ["supervised"], ckdir / "oracle.safetensors"))
    return {"relations": {"nonlocalness": d}, "adapt": {"rows": rows, "test_set": "target_test (2,000 renders)"}}


def footage_checks(g: torch.nn.Module, pose: PosePrior, crops: np.ndarray) -> dict[str, float]:
    """Label-free checks of an image model on person crops (T, H, W, 3) uint8 of one video.

    flip_consistency_mm: mean ||y(x) - flip(y(flip x))|| over joints and frames (0 for a model that
    respects the mirror exactly); jitter_mm_per_frame2: mean norm of the joints' second difference
    (acceleration, mm / frame^2).
    """
    from nlrd.evaluation import predict_joints
    from nlrd.transforms import flip_pose

    y = predict_joints(g, pose.decoder, crops)
    yf = flip_pose(predict_joints(g, pose.decoder, np.ascontiguousarray(crops[:, :, ::-1])))
    acc = y[2:] - 2 * y[1:-1] + y[:-2]
    return {"flip_consistency_mm": float(np.linalg.norm(y - yf, axis=-1).mean()),
            "jitter_mm_per_frame2": float(np.linalg.norm(acc, axis=-1).mean()), "frames": int(len(y))}  # fmt: skip


def eval_real(args: argparse.Namespace) -> dict[str, Any]:
    """Flip consistency and jitter on the real videos, for Gs and for G adapted to those videos."""
    from nlrd.data.paths import resolve_data_root
    from training.adapt import video_crops

    pose = _pose_prior(args.checkpoints)
    folder = resolve_data_root(args.data_root) / "media"
    models = {"source-only": Path(args.checkpoints) / "source_gs.safetensors", "adapted to the videos": Path(args.real_adapted)}
    loaded = {name: _load_encoder(path)[0] for name, path in models.items() if path.exists()}
    size = next(iter(loaded.values())).config.image_size
    out: dict[str, Any] = {"videos": {}, "adapted_checkpoint": str(args.real_adapted)}
    for video, crops in video_crops(folder, size).items():
        out["videos"][video] = {name: footage_checks(g, pose, crops) for name, g in loaded.items()}
    return {"real_footage": out}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default="data", help="prepared data folder")
    p.add_argument("--checkpoints", default=str(CHECKPOINT_DIR))
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {SECTIONS}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ablation-dir", default="runs/ablation", help="rows written by training.ablation")
    p.add_argument(
        "--real-adapted",
        default="runs/adapt_real/g.safetensors",
        help="G adapted to the real videos (python -m training.adapt --videos ...), for --only real",
    )
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
    if "source" in only:
        results.update(eval_source(args))
    if "adapt" in only:
        results.update(eval_adapt(args))
    if "real" in only:
        results.update(eval_real(args))
    out_path.write_text(json.dumps(results, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)))
    print(json.dumps(results, indent=2, default=str))
    return results


if __name__ == "__main__":
    main()
