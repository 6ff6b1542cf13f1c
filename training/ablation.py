"""Reproduce the paper's adaptation ablation: one adaptation run per row, every row from the same Gs.

    python -m training.ablation --steps 300 --out-dir runs/ablation
    python -m training.ablation --rows "+CR,+CR+pose-flip" --steps 300
    python -m training.evaluate --only adapt --ablation-dir runs/ablation   # the table
    python -m training.ablation --real runs/real_target.npz --steps 300 --out-dir runs/ablation_real
    python benchmarks/real_adaptation.py --rows runs/ablation_real/rows.json   # its table (held-out real photos)

Rows: the paper's main ablation (contrastive terms, then relations added one by one), then each
relation on its own and the higher-order combinations (the lower- and higher-order rows of the
supplementary's Table 2). With ``--real`` (a real target from ``training.real_target``) the rows are
:data:`REAL_ROWS` instead: the paper's terms on real photos and videos, the keypoint terms (2D reprojection,
prior fits as pseudo-3D, the labelled source renders), and both together; every stage of G trains.
Each row's adapted G is
written to ``<out-dir>/<slug>.safetensors`` with its terms and timing, and ``<out-dir>/rows.json``
lists them in order for ``training.evaluate --only adapt``.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

from nlrd.checkpoint import read_metadata, sidecar_path

ABLATION_ROWS: dict[str, tuple[str, ...]] = {
    # The paper's ablation (Table 5 of the submission): each row adds terms to the previous one.
    "+CR": ("lcr", "hcr"),
    "+CR+pose-flip": ("lcr", "hcr", "pose-flip"),
    "+CR+pose-flip+flip-backward": ("lcr", "hcr", "pose-flip", "flip-backward"),
    "+CR+pose-flip+flip-backward+slow-backward": ("lcr", "hcr", "pose-flip", "flip-backward", "slow-backward"),
    # Relations without the contrastive terms (here the contrastive terms raise the error, so these rows
    # isolate what each relation does), ordered by non-localness as in the supplementary's Table 2.
    "inplane-10": ("inplane-10",),
    "inplane-25": ("inplane-25",),
    "inplane-50": ("inplane-50",),
    "pose-flip": ("pose-flip",),
    "flip+inplane-50": ("flip+inplane-50",),
    "pose-flip+flip-backward": ("pose-flip", "flip-backward"),
    "pose-flip+flip+inplane-50-backward": ("pose-flip", "flip+inplane-50-backward"),
    "pose-flip+flip-backward+slow-backward": ("pose-flip", "flip-backward", "slow-backward"),
}


# Real-target rows (``--real``): the paper's terms alone, the labelled extensions, and both together.
PAPER_TERMS = ("lcr", "hcr", "pose-flip", "flip-backward")
REAL_ROWS: dict[str, tuple[str, ...]] = {
    "real: paper terms": PAPER_TERMS,
    "real: keypoints+source": ("keypoints", "source"),
    "real: fit3d+source": ("fit3d", "source"),
    "real: keypoints+fit3d+source": ("keypoints", "fit3d", "source"),
    "real: paper terms+keypoints+fit3d+source": (*PAPER_TERMS, "keypoints", "fit3d", "source"),
}
ALL_STAGES = "stem,layer1,layer2,layer3,head"


def slug(name: str) -> str:
    """A file-name-safe form of a row name ("+CR+pose-flip" -> "cr_pose-flip")."""
    return re.sub(r"[^a-z0-9\-]+", "_", name.lower().replace("+", "_")).strip("_")


def main(argv: list[str] | None = None) -> list[dict]:
    from training import adapt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=None, help="comma list of row names (default: every row of the chosen table)")
    p.add_argument("--real", default=None, help="real target (training.real_target): run the REAL_ROWS on it")
    p.add_argument("--out-dir", default="runs/ablation")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default="data")
    p.add_argument("--checkpoints", default="checkpoints", help="folder with source_gs, pose_aae, motion_ae and relations/")
    p.add_argument("--extra", default="", help="further flags passed to training.adapt (one string)")
    p.add_argument("--reuse", action="append", default=[], metavar="CHECKPOINT",
                   help="a finished training.adapt run; the row of its terms and steps is copied, not retrained")  # fmt: skip
    args = p.parse_args(argv)
    table = REAL_ROWS if args.real else ABLATION_ROWS
    names = [r.strip() for r in (args.rows or ",".join(table)).split(",") if r.strip()]
    unknown = [n for n in names if n not in table]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {list(table)}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / "rows.json"
    done = []
    reusable = {(tuple(m["terms"]), m["steps"]): (Path(path), m) for path in args.reuse if (m := _adapt_run(Path(path)))}
    for name in names:
        out = out_dir / f"{slug(name)}.safetensors"
        found = reusable.get((table[name], args.steps))
        if found is not None:
            summary = _copy_row(*found, out)
            _record_row(index_path, name, out, summary, table)
            done.append(summary)
            continue
        flags = ["--terms", ",".join(table[name]), "--steps", str(args.steps), "--out", str(out),
                 "--run-dir", str(out_dir / "state" / slug(name)), "--no-resume", "--no-progress", "--val-every", "0",
                 "--data", args.data, "--threads", str(args.threads)]  # fmt: skip
        ck = Path(args.checkpoints)
        flags += ["--init", str(ck / "source_gs.safetensors"), "--pose", str(ck / "pose_aae.safetensors"),
                  "--motion", str(ck / "motion_ae.safetensors"), "--relations-dir", str(ck / "relations")]  # fmt: skip
        if args.data_root:
            flags += ["--data-root", args.data_root]
        if args.real:
            flags += ["--real", args.real, "--trainable", ALL_STAGES]
        summary = adapt.main(flags + args.extra.split())
        _record_row(index_path, name, out, summary, table)
        done.append(summary)
    return done


def _adapt_run(path: Path) -> dict | None:
    """Terms, steps and timing of a finished training.adapt checkpoint (from its metadata), or None."""
    if not path.is_file():
        return None
    meta = read_metadata(path)
    stage, metrics = meta.get("config", {}).get("stage", {}), meta.get("metrics", {})
    if meta.get("stage") != "adapt" or "terms" not in stage or "train_steps" not in metrics:
        return None
    steps, seconds = int(metrics["train_steps"]), float(metrics.get("train_seconds", 0.0))
    return {"terms": list(stage["terms"]), "steps": steps, "train_seconds": seconds,
            "seconds_per_step": seconds / max(steps, 1), "out": str(path), "reused": True}  # fmt: skip


def _copy_row(src: Path, summary: dict, out: Path) -> dict:
    """The same run under the row's name: weights and metadata copied byte for byte."""
    shutil.copyfile(src, out)
    shutil.copyfile(sidecar_path(src), sidecar_path(out))
    return {**summary, "out": str(out)}


def _record_row(index_path: Path, name: str, out: Path, summary: dict, table: dict[str, tuple[str, ...]]) -> None:
    """Add one row to rows.json, keeping the canonical row order."""
    # Re-read before writing: several ablation processes may fill one folder side by side.
    index: dict[str, dict] = json.loads(index_path.read_text()) if index_path.exists() else {}
    index[name] = {"terms": list(table[name]), "checkpoint": out.name, "steps": summary["steps"],
                   "seconds_per_step": summary["seconds_per_step"], "train_seconds": summary["train_seconds"]}  # fmt: skip
    index = {k: index[k] for k in table if k in index}
    index_path.write_text(json.dumps(index, indent=2))


if __name__ == "__main__":
    main()
