"""Reproduce the paper's adaptation ablation: one adaptation run per row, every row from the same Gs.

    python -m training.ablation --steps 300 --out-dir runs/ablation
    python -m training.ablation --rows "+CR,+CR+pose-flip" --steps 300
    python -m training.evaluate --only adapt --ablation-dir runs/ablation   # the table

Rows (the main ablation, then the lower- and higher-order relation rows of the supplementary's
Table 2; every relation row keeps the contrastive terms, as in the paper). Each row's adapted G is
written to ``<out-dir>/<slug>.safetensors`` with its terms and timing, and ``<out-dir>/rows.json``
lists them in order for ``training.evaluate --only adapt``.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

ABLATION_ROWS: dict[str, tuple[str, ...]] = {
    "+CR": ("lcr", "hcr"),
    "+CR+pose-flip": ("lcr", "hcr", "pose-flip"),
    "+CR+pose-flip+flip-backward": ("lcr", "hcr", "pose-flip", "flip-backward"),
    "+CR+pose-flip+flip-backward+slow-backward": ("lcr", "hcr", "pose-flip", "flip-backward", "slow-backward"),
    "+CR+inplane-10": ("lcr", "hcr", "inplane-10"),
    "+CR+inplane-25": ("lcr", "hcr", "inplane-25"),
    "+CR+inplane-50": ("lcr", "hcr", "inplane-50"),
    "+CR+flip+inplane-50": ("lcr", "hcr", "flip+inplane-50"),
    "+CR+pose-flip+flip+inplane-50-backward": ("lcr", "hcr", "pose-flip", "flip+inplane-50-backward"),
}


def slug(name: str) -> str:
    """A file-name-safe form of a row name ("+CR+pose-flip" -> "cr_pose-flip")."""
    return re.sub(r"[^a-z0-9\-]+", "_", name.lower().replace("+", "_")).strip("_")


def main(argv: list[str] | None = None) -> list[dict]:
    from training import adapt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", default=",".join(ABLATION_ROWS), help="comma list of row names")
    p.add_argument("--out-dir", default="runs/ablation")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default="data")
    p.add_argument("--extra", default="", help="further flags passed to training.adapt (one string)")
    args = p.parse_args(argv)
    names = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [n for n in names if n not in ABLATION_ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {list(ABLATION_ROWS)}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index_path = out_dir / "rows.json"
    index: dict[str, dict] = json.loads(index_path.read_text()) if index_path.exists() else {}
    done = []
    for name in names:
        out = out_dir / f"{slug(name)}.safetensors"
        flags = ["--terms", ",".join(ABLATION_ROWS[name]), "--steps", str(args.steps), "--out", str(out),
                 "--run-dir", str(out_dir / "state" / slug(name)), "--no-resume", "--no-progress", "--val-every", "0",
                 "--data", args.data, "--threads", str(args.threads)]  # fmt: skip
        if args.data_root:
            flags += ["--data-root", args.data_root]
        summary = adapt.main(flags + args.extra.split())
        index[name] = {"terms": list(ABLATION_ROWS[name]), "checkpoint": out.name, "steps": summary["steps"],
                       "seconds_per_step": summary["seconds_per_step"], "train_seconds": summary["train_seconds"]}  # fmt: skip
        # Rows in the canonical order, whatever order they were run in.
        index = {k: index[k] for k in ABLATION_ROWS if k in index}
        index_path.write_text(json.dumps(index, indent=2))
        done.append(summary)
    return done


if __name__ == "__main__":
    main()
