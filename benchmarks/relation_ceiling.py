"""What relation distillation can give at most here: each image model's own relation ensembles and the motion prior's
projection of its clip predictions, scored against the target-test labels.

Usage::

    python benchmarks/relation_ceiling.py --data data --data-root ../shared/data
    python benchmarks/relation_ceiling.py --n 600 --clips 40 --checkpoints runs/full --out out/relation_ceiling.json

The adaptation (METHOD.md stage 5, ``nlrd.stages.adapt``) pulls G towards what a frozen teacher (Gs) predicts
for the transformed input, mapped back by the relation, and (motion relations) towards temporally coherent
latent sequences. So the target-test error of the teacher's *own* ensembles bounds what that distillation
can teach G, whatever the losses, steps or relation networks. This script measures those ensembles for
Gs, the adapted G and the oracle, on the fixed target-test sets the evaluation uses:

- images (the first ``--n`` of the 2,000 target-test renders): the plain prediction; the flip ensemble
  (mean of pred(x) and flip(pred(flip x)), the pose-flip relation); the flip and in-plane +-10 degree
  ensemble (6 views, each mapped back exactly); and the flip consistency |pred(x) - flip(pred(flip x))|;
- clips (the first ``--clips`` of the 100 target-test clips of 30 frames): per-frame predictions; the motion
  prior's projection Dp(Dm(Em(G(X)))) (the sequence the motion latent v describes); a 5-frame moving
  mean; and the clip's mean pose repeated on every frame.

It also prints the two figures the adaptation is asked to reach, computed from the measured Gs and
oracle: 30% below Gs, and half of the Gs-to-oracle gap. Predictions are in full precision (eval mode).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.data.detection import moving_average
from nlrd.data.paths import resolve_data_root
from nlrd.data.testsets import load_test_set
from nlrd.evaluation import predict_joints
from nlrd.inference import load_image_encoder
from nlrd.metrics import mpjpe
from nlrd.models.image_encoder import encode_images
from nlrd.priors import MOTION_CHECKPOINT, POSE_CHECKPOINT, MotionPrior, PosePrior
from nlrd.transforms import ensemble_views

MODELS: tuple[tuple[str, str], ...] = (("Gs", "source_gs"), ("adapted G", "adapted_g"), ("oracle", "oracle"))
Predict = Callable[[np.ndarray], np.ndarray]  # uint8 images (N, H, W, 3) -> joints (N, 17, 3) mm


def view_predictions(predict: Predict, images: np.ndarray, views: list[tuple[str, Callable, Callable]]) -> dict[str, np.ndarray]:
    """Each view's prediction for uint8 ``images`` (N, H, W, 3), mapped back to the original image: {name: (N, J, 3) mm}."""
    return {name: back(predict(np.ascontiguousarray(image_fn(images)))) for name, image_fn, back in views}


def moving_mean(seq: np.ndarray, k: int = 5) -> np.ndarray:
    """Centred k-frame mean over axis 1 of (N, T, J, 3), edges padded by repetition (k odd)."""
    if k % 2 == 0 or k < 1:
        raise ValueError(f"moving_mean: k must be odd and positive, got {k}")
    return np.swapaxes(moving_average(np.swapaxes(seq, 0, 1), k // 2), 0, 1)


def image_rows(predict: Predict, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """MPJPE (mm) of the plain prediction and the relation ensembles on single images, and the flip consistency."""
    per_view = view_predictions(predict, images, ensemble_views())
    plain, mirrored = per_view["identity"], per_view["flip"]
    return {"plain": float(mpjpe(plain, labels)),
            "flip ensemble": float(mpjpe((plain + mirrored) / 2, labels)),
            "flip + in-plane +-10 ensemble": float(mpjpe(np.mean(list(per_view.values()), axis=0), labels)),
            "flip consistency": float(np.linalg.norm(plain - mirrored, axis=-1).mean())}  # fmt: skip


def clip_rows(predict_z: Callable[[np.ndarray], np.ndarray], motion: MotionPrior, clips: np.ndarray,
              labels: np.ndarray) -> dict[str, float]:  # fmt: skip
    """MPJPE (mm) on clips (N, T, H, W, 3) with labels (N, T, J, 3): per frame, through the motion prior, smoothed."""
    n, t = clips.shape[:2]
    z = predict_z(clips.reshape(n * t, *clips.shape[2:])).reshape(n, t, -1)
    decode = motion.pose.decode
    per_frame = decode(z)
    projected = decode(motion.decode_latents(motion.encode_latents(z)))
    clip_mean = np.broadcast_to(per_frame.mean(axis=1, keepdims=True), per_frame.shape)
    flat = labels.reshape(-1, *labels.shape[-2:])

    def err(p: np.ndarray) -> float:
        return float(mpjpe(p.reshape(flat.shape), flat))

    return {"per frame": err(per_frame), "motion-prior projection": err(projected),
            "5-frame mean": err(moving_mean(per_frame, 5)), "clip mean pose": err(clip_mean)}  # fmt: skip


def table(results: dict[str, dict[str, dict[str, float]]], part: str) -> str:
    """Markdown: one row per measure of ``part`` ("images" or "clips"), one column per model (mm)."""
    models = list(results)
    measures = list(results[models[0]][part]) if models else []
    lines = ["| " + part + " | " + " | ".join(f"{m} (mm)" for m in models) + " |", "|---|" + "---:|" * len(models)]
    for k in measures:
        lines.append(f"| {k} | " + " | ".join(f"{results[m][part][k]:.1f}" for m in models) + " |")
    return "\n".join(lines)


def targets(results: dict[str, dict[str, dict[str, float]]]) -> dict[str, float] | None:
    """The adaptation's two figures on the measured images: 30% below Gs and half the Gs-to-oracle gap (mm)."""
    if "Gs" not in results or "oracle" not in results:
        return None
    gs, oracle = results["Gs"]["images"]["plain"], results["oracle"]["images"]["plain"]
    return {"30% below Gs": 0.7 * gs, "half the gap to the oracle": (gs + oracle) / 2}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data", help="prepared data folder (its testsets/ cache is used or built)")
    ap.add_argument("--data-root", default=None, help="raw data folder (backgrounds/); default $NLRD_DATA or ../shared/data")
    ap.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder with the image models and priors")
    ap.add_argument("--n", type=int, default=2000, help="target-test images (at most 2,000)")
    ap.add_argument("--clips", type=int, default=100, help="target-test clips (at most 100)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=Path("out/relation_ceiling.json"))
    args = ap.parse_args(argv)
    if args.n <= 0 or args.clips <= 0:
        ap.error("--n and --clips must be positive")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    try:
        root = resolve_data_root(args.data_root)
        images = load_test_set("target_test", args.data, root)
        clips = load_test_set("target_test_clips", args.data, root)
    except (ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"relation_ceiling: {exc}") from None
    pose = PosePrior.from_pretrained(args.checkpoints / POSE_CHECKPOINT)
    motion = MotionPrior.from_pretrained(args.checkpoints / MOTION_CHECKPOINT, pose=pose)
    x, y = images["images"][: args.n], images["joints3d"][: args.n]
    cx, cy = clips["images"][: args.clips], clips["joints3d"][: args.clips]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for label, stem in MODELS:
        path = args.checkpoints / f"{stem}.safetensors"
        if not path.is_file():
            continue
        encoder = load_image_encoder(path)

        def predict(batch: np.ndarray, e: torch.nn.Module = encoder) -> np.ndarray:
            return predict_joints(e, pose.decoder, batch)

        def predict_z(batch: np.ndarray, e: torch.nn.Module = encoder) -> np.ndarray:
            return encode_images(e, batch, torch.device("cpu"), amp=False).cpu().numpy()

        results[label] = {"images": image_rows(predict, x, y), "clips": clip_rows(predict_z, motion, cx, cy)}
        print(f"  {label}: {results[label]['images']['plain']:.1f} mm on images, "
              f"{results[label]['clips']['per frame']:.1f} mm on clip frames", flush=True)  # fmt: skip
    if not results:
        raise SystemExit(f"relation_ceiling: no image model (source_gs, adapted_g, oracle) in {args.checkpoints}")
    report = {"n_images": int(len(x)), "n_clips": int(len(cx)), "checkpoints": str(args.checkpoints),
              "models": results, "targets": targets(results), "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    print(f"\n{len(x)} target-test images, {len(cx)} target-test clips of {cx.shape[1]} frames (MPJPE, mm)\n")
    print(table(results, "images"))
    print()
    print(table(results, "clips"))
    if report["targets"]:
        print("\nadaptation figures: " + ", ".join(f"{k} {v:.1f} mm" for k, v in report["targets"].items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out} ({report['wall_s']:.0f} s)")
    return report


if __name__ == "__main__":
    main()
