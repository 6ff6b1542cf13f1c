"""Accuracy report: markdown tables of the evaluation results and a bar chart of the adaptation ablation.

Usage::

    python benchmarks/accuracy_report.py --results results.json          # render an existing results file
    python benchmarks/accuracy_report.py --data-root ../shared/data       # run python -m training.evaluate first
    python benchmarks/accuracy_report.py --only priors --out-dir out/

Without ``--results`` it runs ``python -m training.evaluate`` (held-out test sets through the shipped
checkpoints) writing ``<out-dir>/evaluate_results.json``, then renders that file. Sections, each
"not measured" when its part of the results is missing:

* **priors**: pose prior Ep/Dp (test MPJPE and PA-MPJPE of the reconstruction, share of plausible
  samples, coverage of test poses by prior samples, median KS distance of the latent marginals to
  U[-1, 1]) and motion prior Em/Dm (test MPJPE of windows);
* **source**: Gs on the source-style and target-style test renders and the domain-gap ratio;
* **oracle**: the target-supervised upper bound on the target test set;
* **adaptation ablation**: one row per run of ``results["adapt"]["rows"]`` (name, terms, MPJPE,
  PA-MPJPE, PCK@150 mm, AUC), with Gs and the oracle as reference rows;
* **non-localness**: d_r of each relation (mean latent distance between a pose / motion and its
  related counterpart).

Writes ``accuracy_report.md``, ``accuracy_report.json`` (the tables' numbers) and
``accuracy_ablation.html`` (plotly, self-contained) to ``--out-dir``, and prints the markdown.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NOT_MEASURED = "not measured"
ABLATION_COLUMNS = ("mpjpe_mm", "pa_mpjpe_mm", "pck150", "auc")


# ----------------------------------------------------------------------------- formatting
def fmt(value: Any, kind: str = "mm") -> str:
    """A number for a table: ``mm`` one decimal, ``frac`` three decimals, ``pct`` percent; "n/a" when absent."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    if kind == "mm":
        return f"{value:.1f}"
    if kind == "pct":
        return f"{100.0 * value:.1f}%"
    if kind == "ratio":
        return f"{value:.2f}"
    return f"{value:.3f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str | None = None) -> str:
    """A markdown table; ``align`` per column: "l" or "r" (default: first left, the rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _get(d: Any, *keys: str) -> Any:
    """Nested lookup that returns None when any level is missing or not a dict."""
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


# ----------------------------------------------------------------------------- sections
def section_priors(results: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    pose, motion = _get(results, "pose_aae"), _get(results, "motion_ae")
    if not isinstance(pose, dict) and not isinstance(motion, dict):
        return NOT_MEASURED, None
    rows = [
        ["pose prior: test MPJPE (mm)", fmt(_get(pose, "test_mpjpe_mm"))],
        ["pose prior: test PA-MPJPE (mm)", fmt(_get(pose, "test_pa_mpjpe_mm"))],
        ["pose prior: plausible prior samples", fmt(_get(pose, "prior_plausible_fraction"), "pct")],
        ["pose prior: coverage of test poses (mm)", fmt(_get(pose, "prior_coverage_mm"))],
        ["pose prior: latent KS distance to U[-1, 1] (median)", fmt(_get(pose, "latent_ks_median"), "frac")],
        ["motion prior: test MPJPE (mm)", fmt(_get(motion, "test_mpjpe_mm"))],
    ]
    rows = [[name, NOT_MEASURED if v == "n/a" else v] for name, v in rows]
    numbers = {
        "pose_test_mpjpe_mm": _get(pose, "test_mpjpe_mm"),
        "pose_test_pa_mpjpe_mm": _get(pose, "test_pa_mpjpe_mm"),
        "prior_plausible_fraction": _get(pose, "prior_plausible_fraction"),
        "prior_coverage_mm": _get(pose, "prior_coverage_mm"),
        "latent_ks_median": _get(pose, "latent_ks_median"),
        "motion_test_mpjpe_mm": _get(motion, "test_mpjpe_mm"),
    }
    return table(["metric", "value"], rows), numbers


def section_source(results: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    src = _get(results, "source")
    if not isinstance(src, dict) or _get(src, "target_test_mpjpe_mm") is None:
        return NOT_MEASURED, None
    rows = [
        ["source-style test renders", fmt(src.get("source_test_mpjpe_mm")), fmt(src.get("source_test_pa_mpjpe_mm")), "", ""],
        ["target-style test renders", fmt(src.get("target_test_mpjpe_mm")), fmt(src.get("target_test_pa_mpjpe_mm")),
         fmt(src.get("target_test_pck150"), "frac"), fmt(src.get("target_test_auc"), "frac")],
    ]  # fmt: skip
    text = table(["Gs on", "MPJPE (mm)", "PA-MPJPE (mm)", "PCK@150", "AUC"], rows)
    text += f"\n\nDomain gap (target / source MPJPE): {fmt(src.get('domain_gap_ratio'), 'ratio')}"
    flip_src, flip_tgt = src.get("source_test_mpjpe_mm_flip_test"), src.get("target_test_mpjpe_mm_flip_test")
    if flip_src is not None:  # results written before the flip test was measured lack it
        text += (
            f"\n\nWith the flip test (mean with the mirrored crop's mirrored pose), MPJPE: source-test "
            f"{fmt(flip_src)}, target-test {fmt(flip_tgt)} mm"
        )
    keys = ("source_test_mpjpe_mm", "source_test_pa_mpjpe_mm", "target_test_mpjpe_mm", "target_test_pa_mpjpe_mm",
            "target_test_pck150", "target_test_auc", "domain_gap_ratio", "source_test_mpjpe_mm_flip_test",
            "target_test_mpjpe_mm_flip_test")  # fmt: skip
    return text, {k: src.get(k) for k in keys}


def section_oracle(results: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    src = _get(results, "source")
    if _get(src, "oracle_target_test_mpjpe_mm") is None:
        return NOT_MEASURED, None
    rows = [["Gs (source-trained)", fmt(src.get("target_test_mpjpe_mm")), fmt(src.get("target_test_pa_mpjpe_mm"))],
            ["oracle (target-supervised)", fmt(src.get("oracle_target_test_mpjpe_mm")),
             fmt(src.get("oracle_target_test_pa_mpjpe_mm"))]]  # fmt: skip
    text = table(["target test set", "MPJPE (mm)", "PA-MPJPE (mm)"], rows)
    text += f"\n\nOracle gain over Gs (MPJPE): {fmt(src.get('oracle_gain_vs_gs'), 'pct')}"
    keys = ("oracle_target_test_mpjpe_mm", "oracle_target_test_pa_mpjpe_mm", "oracle_gain_vs_gs")
    return text, {k: src.get(k) for k in keys}


def ablation_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The adaptation rows that are dicts with a name (anything else in the list is skipped)."""
    rows = _get(results, "adapt", "rows")
    if not isinstance(rows, list):
        return []
    return [r for r in rows if isinstance(r, dict) and r.get("name") is not None]


NO_TERMS = "none"  # how source-only's empty term list is rendered
REFERENCE_TERMS = (NO_TERMS, "supervised")  # the rendered terms of the two reference rows: source-only, the oracle


def _terms(row: dict[str, Any]) -> str:
    terms = row.get("terms")
    if isinstance(terms, list | tuple):
        return ", ".join(str(t) for t in terms) or NO_TERMS
    return str(terms) if terms is not None else ""


def section_ablation(results: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    rows = ablation_rows(results)
    if not rows:
        return NOT_MEASURED, None
    src = _get(results, "source") or {}
    body = []
    if src.get("target_test_mpjpe_mm") is not None:
        body.append(["Gs (no adaptation, reference)", "", fmt(src.get("target_test_mpjpe_mm")),
                     fmt(src.get("target_test_pa_mpjpe_mm")), fmt(src.get("target_test_pck150"), "frac"),
                     fmt(src.get("target_test_auc"), "frac")])  # fmt: skip
    for r in rows:
        body.append([str(r["name"]), _terms(r), fmt(r.get("mpjpe_mm")), fmt(r.get("pa_mpjpe_mm")),
                     fmt(r.get("pck150"), "frac"), fmt(r.get("auc"), "frac")])  # fmt: skip
    if src.get("oracle_target_test_mpjpe_mm") is not None:
        body.append(["oracle (target labels, reference)", "", fmt(src.get("oracle_target_test_mpjpe_mm")),
                     fmt(src.get("oracle_target_test_pa_mpjpe_mm")), "", ""])  # fmt: skip
    text = table(["run", "terms", "MPJPE (mm)", "PA-MPJPE (mm)", "PCK@150", "AUC"], body, "llrrrr")
    return text, {"rows": [{"name": r["name"], "terms": _terms(r), **{k: r.get(k) for k in ABLATION_COLUMNS}} for r in rows]}


def section_nonlocalness(results: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    nl = _get(results, "relations", "nonlocalness")
    if not isinstance(nl, dict) or not nl:
        return NOT_MEASURED, None

    def order(kv: tuple[str, Any]) -> tuple[bool, float]:  # nearest relations first, unmeasured last
        numeric = isinstance(kv[1], int | float) and not isinstance(kv[1], bool)
        return (not numeric, float(kv[1]) if numeric else 0.0)

    items = sorted(nl.items(), key=order)
    text = table(["relation", "d_r (latent distance)"], [[name, fmt(d, "frac")] for name, d in items])
    return text, {name: d for name, d in items}


SECTIONS: dict[str, tuple[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any] | None]]]] = {
    "priors": ("Priors (held-out mocap test split)", section_priors),
    "source": ("Source model Gs", section_source),
    "oracle": ("Oracle (upper bound)", section_oracle),
    "ablation": ("Adaptation ablation (target test set)", section_ablation),
    "nonlocalness": ("Non-localness of the relations", section_nonlocalness),
}


def render_markdown(results: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The whole report as markdown, and the numbers behind it (None for sections not measured)."""
    parts, numbers = ["# Accuracy report"], {}
    for key, (title, fn) in SECTIONS.items():
        text, nums = fn(results)
        parts.append(f"## {title}\n\n{text}")
        numbers[key] = nums
    return "\n\n".join(parts) + "\n", numbers


def ablation_figure(results: dict[str, Any]) -> Any | None:
    """Plotly bar chart of MPJPE and PA-MPJPE per ablation row, Gs and the oracle as dashed lines; None without rows."""
    rows = ablation_rows(results)
    if not rows:
        return None
    import plotly.graph_objects as go

    names = [str(r["name"]) for r in rows]
    hover = [_terms(r) for r in rows]
    fig = go.Figure()
    for key, label in (("mpjpe_mm", "MPJPE"), ("pa_mpjpe_mm", "PA-MPJPE")):
        vals = [r.get(key) if isinstance(r.get(key), int | float) else None for r in rows]
        fig.add_bar(name=label, x=names, y=vals, customdata=hover, hovertemplate="%{x}<br>terms: %{customdata}<br>%{y:.1f} mm")
    src = _get(results, "source") or {}
    for key, label in (("target_test_mpjpe_mm", "Gs MPJPE"), ("oracle_target_test_mpjpe_mm", "oracle MPJPE")):
        if isinstance(src.get(key), int | float):
            fig.add_hline(y=src[key], line_dash="dash", annotation_text=f"{label} {src[key]:.1f} mm")
    fig.update_layout(title="Adaptation ablation on the target test set (lower is better)", barmode="group",
                      yaxis_title="error (mm)", xaxis_title="run", template="plotly_white")  # fmt: skip
    return fig


# ----------------------------------------------------------------------------- evaluation run
def run_evaluate(out_json: Path, data_root: str | None, data: str | None, checkpoints: str | None, only: str | None,
                 timeout: float) -> float:  # fmt: skip
    """``python -m training.evaluate --out out_json`` in the repository; returns its wall seconds."""
    cmd = [sys.executable, "-m", "training.evaluate", "--out", str(out_json)]
    for flag, value in (("--data-root", data_root), ("--data", data), ("--checkpoints", checkpoints), ("--only", only)):
        if value:
            cmd += [flag, value]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"training.evaluate failed with exit status {proc.returncode}:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0


def load_results(path: Path) -> dict[str, Any]:
    """The results JSON as a dict; SystemExit with a one-line reason when it is missing or not a JSON object."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"results file {str(path)!r} not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SystemExit(f"results file {str(path)!r} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SystemExit(f"results file {str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=None, help="render this results JSON instead of running the evaluation")
    ap.add_argument("--out-dir", type=Path, default=Path("out"))
    ap.add_argument("--data-root", default=None, help="passed to training.evaluate")
    ap.add_argument("--data", default=None, help="prepared data folder, passed to training.evaluate")
    ap.add_argument("--checkpoints", default=None, help="passed to training.evaluate")
    ap.add_argument("--only", default=None, help="sections for training.evaluate (its --only)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds allowed for training.evaluate")
    args = ap.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    eval_seconds = None
    if args.results is None:
        results_path = args.out_dir / "evaluate_results.json"
        eval_seconds = run_evaluate(results_path, args.data_root, args.data, args.checkpoints, args.only, args.timeout)
    else:
        results_path = args.results
    results = load_results(results_path)
    markdown, numbers = render_markdown(results)
    md_path, json_path = args.out_dir / "accuracy_report.md", args.out_dir / "accuracy_report.json"
    md_path.write_text(markdown)
    fig = ablation_figure(results)
    html_path = args.out_dir / "accuracy_ablation.html"
    if fig is not None:
        fig.write_html(html_path, include_plotlyjs=True)
    report = {"results_file": str(results_path), "evaluate_seconds": eval_seconds,
              "sections": numbers, "not_measured": [k for k, v in numbers.items() if v is None],
              "chart": str(html_path) if fig is not None else None}  # fmt: skip
    json_path.write_text(json.dumps(report, indent=2))
    print(markdown)
    print(f"wrote {md_path}, {json_path}" + (f", {html_path}" if fig is not None else " (no ablation rows: no chart)"))
    return report


if __name__ == "__main__":
    main()
