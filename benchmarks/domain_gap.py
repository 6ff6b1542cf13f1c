"""Where the domain gap comes from: the image models' error on renders that change one part of the style at a time.

Usage::

    python benchmarks/domain_gap.py --data data --data-root ../shared/data      # 600 renders per variant
    python benchmarks/domain_gap.py --n 200 --checkpoints runs/full --out out/domain_gap.json

Renders ``--n`` images of held-out test poses (the prepared data folder's test split) for each variant
in :data:`VARIANTS`: the source and target styles, the target style with one of its parts (photo
backgrounds, effects, occluders, camera) put back to the source's, and the source style with one
part of the target's added. Every variant uses the same seed, hence the same poses, so rows differ
only in the style. Each image model of the checkpoints folder (Gs, the oracle, the adapted G) predicts
them through the pose decoder in full precision, and the script prints a markdown table of MPJPE (mm)
and writes it as JSON.

It answers a question the aggregate figures cannot: how much of Gs's target-test error is a change
of appearance that labels on the target style would teach (what adaptation can hope to recover),
and how much is information the renders destroy (occluders, blur), which no adaptation recovers.
These renders are not the fixed test sets; their numbers are close to, not equal to, the evaluation's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.data.paths import resolve_data_root
from nlrd.data.poses import load_split
from nlrd.data.synthetic import fixed_test_set
from nlrd.data.synthetic.effects import EffectRanges
from nlrd.data.synthetic.styles import SOURCE, TARGET, Style
from nlrd.evaluation import pose_errors, predict_joints
from nlrd.inference import load_image_encoder
from nlrd.priors import POSE_CHECKPOINT, PosePrior

MODELS: tuple[tuple[str, str], ...] = (("Gs", "source_gs"), ("oracle", "oracle"), ("adapted G", "adapted_g"))
R = dataclasses.replace

# (row name, style). Names describe the change against the style they start from.
VARIANTS: tuple[tuple[str, Style], ...] = (
    ("source style", SOURCE),
    ("source + target camera", R(SOURCE, name="source+camera", camera=TARGET.camera)),
    ("source + scene lighting", R(SOURCE, name="source+lighting", lighting=TARGET.lighting, extra_lights=TARGET.extra_lights,
                                  coloured_light_prob=TARGET.coloured_light_prob)),
    ("source + clothes, patterns, hats, skin tones", R(SOURCE, name="source+clothes", realistic_clothes=True,
                                                       pattern_prob=TARGET.pattern_prob, hat_prob=TARGET.hat_prob,
                                                       skin_tones=TARGET.skin_tones)),
    ("source + photo backgrounds", R(SOURCE, name="source+photos", background="photo")),
    ("target style", TARGET),
    ("target, procedural backgrounds", R(TARGET, name="target-photos", background="procedural")),
    ("target, no effects", R(TARGET, name="target-effects", effects=EffectRanges())),
    ("target, no occluders", R(TARGET, name="target-occluders", effects=R(TARGET.effects, occluder_prob=0.0))),
    ("target, source camera", R(TARGET, name="target-camera", camera=SOURCE.camera)),
)  # fmt: skip


def measure(variants: tuple[tuple[str, Style], ...], poses: np.ndarray, predict: dict[str, Callable], n: int, seed: int,
            backgrounds: Path | None) -> list[dict[str, Any]]:  # fmt: skip
    """Render ``n`` images of ``poses`` (N, 17, 3) mm per variant and predict them with each of ``predict``.

    Returns one row per variant: ``{"variant", "seconds", "mpjpe_mm": {model: mm}, "pa_mpjpe_mm": {model: mm}}``.
    """
    rows = []
    for name, style in variants:
        t0 = time.perf_counter()
        data = fixed_test_set(poses, style, n, seed=seed, backgrounds=backgrounds)
        errors = {m: pose_errors(fn(data["images"]), data["joints3d"]) for m, fn in predict.items()}
        rows.append({"variant": name, "seconds": round(time.perf_counter() - t0, 1),
                     "mpjpe_mm": {m: e["mpjpe_mm"] for m, e in errors.items()},
                     "pa_mpjpe_mm": {m: e["pa_mpjpe_mm"] for m, e in errors.items()}})  # fmt: skip
        print(f"  {name}: " + ", ".join(f"{m} {e['mpjpe_mm']:.1f} mm" for m, e in errors.items()), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: variant, then each model's MPJPE (mm)."""
    models = list(rows[0]["mpjpe_mm"]) if rows else []
    lines = ["| renders (same poses) | " + " | ".join(f"{m} MPJPE (mm)" for m in models) + " |",
             "|---|" + "---:|" * len(models)]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['variant']} | " + " | ".join(f"{r['mpjpe_mm'][m]:.1f}" for m in models) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="data", help="prepared data folder (its test split gives the poses)")
    ap.add_argument("--data-root", default=None, help="raw data folder (backgrounds/); default $NLRD_DATA or ../shared/data")
    ap.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="folder with the image models and pose prior")
    ap.add_argument("--n", type=int, default=600, help="renders per variant")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--out", type=Path, default=Path("out/domain_gap.json"))
    args = ap.parse_args(argv)
    if args.n <= 0:
        ap.error("--n must be positive")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        backgrounds = resolve_data_root(args.data_root) / "backgrounds"
        poses = load_split(args.data, "test").joints
    except ValueError as exc:
        raise SystemExit(f"domain_gap: {exc}") from None
    decoder = PosePrior.from_pretrained(args.checkpoints / POSE_CHECKPOINT).decoder
    predict: dict[str, Callable] = {}
    for label, stem in MODELS:
        path = args.checkpoints / f"{stem}.safetensors"
        if path.is_file():
            encoder = load_image_encoder(path)
            predict[label] = lambda images, e=encoder: predict_joints(e, decoder, images)
    if not predict:
        raise SystemExit(f"domain_gap: no image model (source_gs, oracle, adapted_g) in {args.checkpoints}")
    t0 = time.perf_counter()
    print(f"{args.n} renders per variant of test poses, seed {args.seed}; models: {', '.join(predict)}")
    rows = measure(VARIANTS, poses, predict, args.n, args.seed, backgrounds)
    result = {"n": args.n, "seed": args.seed, "checkpoints": str(args.checkpoints), "rows": rows,
              "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
    print()
    print(table(rows))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
