"""Run every benchmark script, one after the other, and print one combined table.

Usage::

    python benchmarks/run_all.py                          # quick settings, JSON and logs under out/
    python benchmarks/run_all.py --only renderer_throughput,training_throughput --threads 1
    python benchmarks/run_all.py --full --timeout 900     # each script with its own default settings

Each script in :data:`SCRIPTS` that exists in ``benchmarks/`` runs as a subprocess (so one crash or
hang cannot take the others down) with a per-script timeout, writing its JSON to
``<out-dir>/<name>.json`` and its output to ``<out-dir>/run_all_logs/<name>.log``. Scripts run
sequentially: running them side by side would make them measure each other. By default they get
"quick" arguments (fewer repeats) chosen so that the whole run stays within ten minutes on a
two-core CPU; ``--full`` uses each script's own defaults.

At the end: a markdown table with each script's status (ok, failed, timed out, absent, skipped),
its wall time and its headline numbers from its JSON, the total time against the ten-minute target,
and ``<out-dir>/run_all.json`` with all of it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from accuracy_report import REFERENCE_TERMS, _get  # a sibling script (benchmarks/ is on sys.path when run)

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
TOTAL_TARGET_S = 600.0  # every benchmark together on CPU


def _num(value: Any, spec: str = ".1f", suffix: str = "") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    return f"{value:{spec}}{suffix}"


Headline = list[tuple[str, str]]


def head_app_latency(r: dict[str, Any]) -> Headline:
    return [("start-up to serving", _num(_get(r, "startup_to_serving_s"), ".1f", " s")),
            ("page ready", _num(_get(r, "page_ready_s"), ".2f", " s")),
            ("/decode_latent round trip, median", _num(_get(r, "decode_latent_ms", "median"), ".0f", " ms"))]  # fmt: skip


def head_inference_latency(r: dict[str, Any]) -> Headline:
    out = [("single image end to end, median", _num(_get(r, "image", "total_ms", "median"), ".0f", " ms")),
           ("predict_clip, median", _num(_get(r, "clip", "clip_fps", "median"), ".1f", " fps")),
           ("predict_clip vs per-frame loop", _num(_get(r, "clip", "ratio", "median"), ".2f", "x"))]  # fmt: skip
    found = _get(r, "real", "squat", "found")
    if found is not None:
        out.append(("squat.mp4: person found", _num(100 * found, ".1f", "%")))
    return out


def head_renderer_throughput(r: dict[str, Any]) -> Headline:
    out = [(f"renderer, {style} style", _num(_get(s, "images_per_cpu_second"), ".0f", " img/s/core"))
           for style, s in (_get(r, "styles") or {}).items()]  # fmt: skip
    consumption = _get(r, "training_source_step", "consumption_images_per_s")
    if consumption is not None:
        out.append(("source training step consumes", _num(consumption, ".0f", " img/s")))
        for style, ratio in (_get(r, "ratios") or {}).items():
            out.append((f"ratio renderer/training, {style} (target >= 2)", _num(ratio, ".2f")))
    return out


def head_training_throughput(r: dict[str, Any]) -> Headline:
    out = []
    for name, s in (_get(r, "stages") or {}).items():
        if "error" in s:
            out.append((name, f"failed: {s['error']}"[:80]))
        else:
            rate = f"{_num(s.get('steps_per_s'), '.2f')} steps/s, {_num(s.get('samples_per_s'), '.0f')} {s.get('unit')}/s"
            out.append((name, rate))
    return out


def head_source_echo(r: dict[str, Any]) -> Headline:
    return [(f"source step with rendering, echo {x.get('echo')}",
             f"{_num(x.get('steps_per_s'), '.2f')} steps/s ({_num(x.get('speedup'), '.2f')}x)")
            for x in (_get(r, "rows") or [])]  # fmt: skip


def head_accuracy_report(r: dict[str, Any]) -> Headline:
    sec = _get(r, "sections") or {}
    rows = _get(sec, "ablation", "rows") or []
    # Adaptation rows only: source-only and the supervised oracle are its references.
    adapted = [x for x in rows if isinstance(x.get("mpjpe_mm"), int | float) and x.get("terms") not in REFERENCE_TERMS]
    best = min(adapted, key=lambda x: x["mpjpe_mm"], default=None)
    out = [("pose prior test MPJPE", _num(_get(sec, "priors", "pose_test_mpjpe_mm"), ".1f", " mm")),
           ("Gs target test MPJPE", _num(_get(sec, "source", "target_test_mpjpe_mm"), ".1f", " mm")),
           ("oracle target test MPJPE", _num(_get(sec, "oracle", "oracle_target_test_mpjpe_mm"), ".1f", " mm")),
           ("best adaptation row", f"{best['name']}: {best['mpjpe_mm']:.1f} mm" if best else "not measured")]  # fmt: skip
    missing = _get(r, "not_measured") or []
    if missing:
        out.append(("sections not measured", ", ".join(missing)))
    return out


def head_app_load(r: dict[str, Any]) -> Headline:
    out = []
    for ep in ("/decode_latent", "/predict_image"):
        s = _get(r, "load", ep)
        if s is not None:
            out.append((f"{ep} under load, median", f"{_num(s.get('median_ms'), '.0f', ' ms')} ({s.get('failures')} failed)"))
    adapt = _get(r, "two_adaptations")
    if isinstance(adapt, dict):
        done = all(_get(adapt, k, "phase") == "done" for k in ("first", "second"))
        out.append(("two /adapt sessions at once", f"both done: {done}, second queued: {adapt.get('queued')}"))
    return out


def head_adapt_session(r: dict[str, Any]) -> Headline:
    out = [(f"Adapt session {label}: change, session", f"{_num(m.get('change_mm'), '+.2f', ' mm')}, "
            f"{_num(m.get('session_s'), '.1f', ' s')}") for label, m in (_get(r, "medians") or {}).items()]  # fmt: skip
    app = _get(r, "app")
    if isinstance(app, dict):
        out.append(("default /adapt through the app (target <= 120 s)",
                    f"{_num(app.get('seconds'), '.1f', ' s')}, {_num(app.get('change_mm'), '+.2f', ' mm')}"))  # fmt: skip
    return out


@dataclass
class Script:
    """One benchmark script and how run_all runs it.

    Attributes:
        name: file stem in ``benchmarks/``.
        quick: arguments added in the default (quick) mode.
        timeout: seconds before the subprocess is killed.
        headline: picks the numbers for the combined table from the script's JSON.
        json_name: the JSON file the script writes in the out folder.
        out_flag: how the script is told where to write (``--out FILE`` or ``--out-dir DIR``).
        threads_flag: the script's thread flag, if it has one.
        args: arguments always added.
    """

    name: str
    quick: list[str]
    timeout: float
    headline: Callable[[dict[str, Any]], Headline]
    json_name: str = ""
    out_flag: str = "--out"
    threads_flag: str | None = "--threads"
    args: list[str] = field(default_factory=list)


def head_real_photos(r: dict[str, Any]) -> Headline:
    pck = _get(r, "real_photos", "pck@0.2") or {}
    return [("held-out real photos: fitted PCK@0.2 vs MediaPipe", _num(pck.get("fitted"), ".3f")),
            ("held-out real photos: G alone / constant pose",
             f"{_num(pck.get('G alone'), '.3f')} / {_num(pck.get('constant mean pose'), '.3f')}"),
            ("front/back agreement (fitted)", _num(_get(r, "real_photos", "front_back_agreement", "fitted"), ".3f")),
            ("people on Kodak backgrounds", _num(_get(r, "no_person", "confident_people"), ".0f"))]  # fmt: skip


# fmt: off
SCRIPTS: tuple[Script, ...] = (
    Script("app_latency", ["--calls", "30", "--page-repeats", "2"], 180, head_app_latency),
    Script("inference_latency", ["--repeats", "15", "--pairs", "1"], 300, head_inference_latency),
    Script("renderer_throughput", ["--images", "200", "--repeats", "3", "--train-steps", "8"], 240, head_renderer_throughput,
           threads_flag="--train-threads"),
    Script("training_throughput", ["--steps", "10", "--warmup", "2", "--repeats", "3"], 360, head_training_throughput),
    Script("source_echo", ["--echo", "1", "4", "--steps", "10", "--repeats", "2"], 240, head_source_echo),
    Script("accuracy_report", [], 120, head_accuracy_report, json_name="accuracy_report.json", out_flag="--out-dir",
           threads_flag=None),
    Script("app_load", ["--clients", "8", "--seconds", "15"], 240, head_app_load),
    Script("adapt_session", ["--variants", "auto:default:default"], 300, head_adapt_session, args=["--app"]),
    Script("real_photos", ["--photos", "60", "--renders", "60"], 600, head_real_photos, threads_flag=None),
)
# fmt: on


def run_script(script: Script, out_dir: Path, *, full: bool, threads: int | None, timeout: float | None,
               results: Path) -> dict[str, Any]:  # fmt: skip
    """Run one script; returns status, seconds, return code, its JSON (or None) and the log path."""
    path = BENCH_DIR / f"{script.name}.py"
    entry: dict[str, Any] = {"script": f"benchmarks/{script.name}.py", "status": "absent", "seconds": 0.0, "json": None}
    if not path.is_file():
        return entry
    json_path = out_dir / (script.json_name or f"{script.name}.json")
    cmd = [sys.executable, str(path), script.out_flag, str(out_dir if script.out_flag == "--out-dir" else json_path)]
    if script.name == "accuracy_report":
        if not results.is_file():
            entry.update(status="skipped", reason=f"{results} not found (make it with python -m training.evaluate)")
            return entry
        cmd += ["--results", str(results)]
    cmd += script.args + ([] if full else script.quick)
    if threads is not None and script.threads_flag:
        cmd += [script.threads_flag, str(threads)]
    log_dir = out_dir / "run_all_logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{script.name}.log"
    json_path.unlink(missing_ok=True)  # a stale file from an earlier run must not pass for this run's result
    limit = timeout if timeout is not None else script.timeout
    entry.update(command=" ".join(cmd[1:]), log=str(log), timeout_s=limit)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        try:
            proc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, timeout=limit)
            entry.update(status="ok" if proc.returncode == 0 else f"failed (exit {proc.returncode})", returncode=proc.returncode)
        except subprocess.TimeoutExpired:
            entry.update(status=f"timed out ({limit:.0f} s)")
    entry["seconds"] = round(time.perf_counter() - t0, 1)
    if json_path.is_file():
        try:
            entry["json"] = json.loads(json_path.read_text())
        except json.JSONDecodeError as exc:
            entry["status"] += f"; unreadable JSON: {exc}"
    if entry["status"] != "ok":
        entry["log_tail"] = log.read_text(errors="replace").strip().splitlines()[-3:]
    return entry


def combined_table(entries: dict[str, dict[str, Any]]) -> str:
    """Markdown: benchmark, status, seconds, then one line per headline number."""
    by_name = {s.name: s for s in SCRIPTS}
    lines = ["| benchmark | status | seconds | measure | value |", "|---|---|---:|---|---|"]
    for name, e in entries.items():
        heads: Headline = []
        if isinstance(e.get("json"), dict):
            try:
                heads = by_name[name].headline(e["json"])
            except (KeyError, TypeError, AttributeError, ValueError) as exc:  # a script changed its JSON layout
                heads = [("headline numbers", f"unreadable ({type(exc).__name__}); see the JSON")]
        elif e["status"] not in ("absent", "skipped"):
            heads = [("output", "; ".join(e.get("log_tail", []))[:160] or "no JSON")]
        elif e.get("reason"):
            heads = [("reason", e["reason"])]
        first = heads[0] if heads else ("", "")
        lines.append(f"| {name} | {e['status']} | {e['seconds']:.0f} | {first[0]} | {first[1]} |")
        lines += [f"| | | | {m} | {v} |" for m, v in heads[1:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = [s.name for s in SCRIPTS]
    ap.add_argument("--out-dir", type=Path, default=Path("out"))
    ap.add_argument("--only", default=None, help=f"comma list of {names}")
    ap.add_argument("--skip", default="", help="comma list of scripts not to run")
    ap.add_argument("--full", action="store_true", help="each script's own default settings instead of the quick ones")
    ap.add_argument("--threads", type=int, default=None, help="passed to every script with a thread flag")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per script (default: each script's own limit)")
    ap.add_argument("--results", type=Path, default=REPO / "results.json", help="results JSON for accuracy_report")
    args = ap.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",")] if args.only else names
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = sorted((set(chosen) | skip) - set(names))
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; choose from {names}")
    out_dir = args.out_dir if args.out_dir.is_absolute() else Path.cwd() / args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for script in SCRIPTS:
        if script.name not in chosen or script.name in skip:
            continue
        print(f"running {script.name} ...", flush=True)
        entries[script.name] = run_script(script, out_dir, full=args.full, threads=args.threads, timeout=args.timeout,
                                          results=args.results)  # fmt: skip
        print(f"  {entries[script.name]['status']} in {entries[script.name]['seconds']:.0f} s", flush=True)
    total = time.perf_counter() - t0
    verdict = "met" if total <= TOTAL_TARGET_S else "MISSED"
    print()
    print(combined_table(entries))
    print(f"\ntotal {total:.0f} s for {len(entries)} benchmark(s) (target <= {TOTAL_TARGET_S:.0f} s on CPU: {verdict})")
    report = {"total_seconds": round(total, 1), "target_seconds": TOTAL_TARGET_S, "quick": not args.full, "benchmarks": entries}
    (out_dir / "run_all.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out_dir / 'run_all.json'}")
    return report


if __name__ == "__main__":
    main()
