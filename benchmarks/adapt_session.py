"""The Adapt tab's session, timed and scored: seconds and the target-error curve per setting.

Usage::

    python benchmarks/adapt_session.py --out out/adapt_session.json
    python benchmarks/adapt_session.py --variants predictor:default:default gs:pose-flip:1e-4 --seeds 0 1 2 3 4

Runs :class:`nlrd.adapt_session.AdaptSession` (the object the app's ``/adapt`` endpoint drives)
on the built-in target data the Adapt tab uses (12 target-style clips of 60 frames rendered from
held-out test-split poses, and 64 labelled target renders for the error curve). The data is
rendered once per seed and shared by every variant, so the variants are compared on the same
frames, one after the other in one process.

A variant is ``start:terms:lr``:

* ``start``: :attr:`nlrd.adapt_session.SessionSettings.start`: ``auto`` (what the Adapt tab
  does: Gs when it is shipped), ``gs`` (the source-only Gs, where the adaptation stage starts) or
  ``predictor`` (the default predictor's G, i.e. the shipped adapted G);
* ``terms``: ``default`` (what the Adapt tab proposes on this device) or names joined by ``+``;
* ``lr``: ``default`` (the recipe's rates) or a number (the relation terms' Adam rate).

Reported per variant and seed: seconds to render the data (once per seed), seconds of the session
(first evaluation, steps, evaluations), the target MPJPE at step 0, at each evaluation and at the
end, and the change (end minus start, mm; negative means the session lowered the error). A median
over the seeds closes the table. Prints markdown and writes the numbers as JSON.

With ``--real`` the sessions run on real photos instead, as the tab's "real photos and videos" source does
without uploads: per seed, 48 of the data folder's tuning exercise photos (a different sample per seed; never
a held-out one), MediaPipe's keypoints, the prior's fits, and the tab's default real session (keypoints, fit3d
and source terms). Reported: seconds to prepare the data and of the session, and G's 2D agreement with
MediaPipe (PCK@0.2) on the held-out quarter of those photos before and after::

    python benchmarks/adapt_session.py --real --seeds 0 1 2 3 4 --out out/adapt_session_real.json

With ``--app`` the same default session also runs the way people run it: ``app.py`` is launched on a
free localhost port and ``/adapt`` is called once through ``gradio_client`` with the tab's default
values (the first call renders the built-in clips too). Reported: seconds from the call to its final
result, and the before / after target error from the session's summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from nlrd.adapt_session import START_CHOICES, AdaptSession, SessionSettings, TargetData, builtin_target_data, default_settings
from nlrd.inference import PosePredictor
from nlrd.priors import CHECKPOINT_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_throughput import write_report  # noqa: E402

DEFAULT_VARIANTS = ("auto:default:default", "predictor:default:default")


@dataclasses.dataclass(frozen=True)
class Variant:
    """One session setting: where G starts, which terms, which relation learning rate (None: recipe)."""

    start: str
    terms: tuple[str, ...] | None
    lr: float | None

    @classmethod
    def parse(cls, text: str) -> Variant:
        parts = text.split(":")
        if len(parts) != 3 or parts[0] not in START_CHOICES:
            raise argparse.ArgumentTypeError(f"a variant is start:terms:lr with start in {START_CHOICES}, got {text!r}")
        terms = None if parts[1] == "default" else tuple(t for t in parts[1].split("+") if t)
        try:
            lr = None if parts[2] == "default" else float(parts[2])
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"lr must be 'default' or a number, got {parts[2]!r}") from exc
        return cls(parts[0], terms, lr)

    @property
    def label(self) -> str:
        terms = "+".join(self.terms) if self.terms else "default"
        return f"{self.start}:{terms}:{'default' if self.lr is None else f'{self.lr:g}'}"


def run_to_end(predictor: PosePredictor, data: TargetData, settings: SessionSettings) -> tuple[AdaptSession, float]:
    """A session over ``data`` run to its end -> (the session, its seconds)."""
    session = AdaptSession(predictor, data, settings)
    t0 = time.perf_counter()
    for _ in session.run():
        pass
    return session, time.perf_counter() - t0


def run_variant(variant: Variant, predictor: PosePredictor, data: TargetData, steps: int | None,
                eval_every: int | None) -> dict[str, Any]:  # fmt: skip
    """One session to the end; its settings, seconds and error curve (mm)."""
    settings = default_settings(predictor, device=predictor.device.type)
    changes: dict[str, Any] = {"start": variant.start}
    if variant.terms is not None:
        changes["terms"] = variant.terms
    if variant.lr is not None:
        changes["lr"] = variant.lr
    if steps is not None:
        changes["steps"] = steps
        changes["eval_every"] = max(5, steps // 6)
    if eval_every is not None:
        changes["eval_every"] = eval_every
    settings = dataclasses.replace(settings, **changes).checked()
    session, seconds = run_to_end(predictor, data, settings)
    summary = session.summary()
    errors = session.errors
    return {"variant": variant.label, "started_from": summary["started_from"], "terms": list(settings.terms),
            "steps": settings.steps, "lr_relation": summary["learning_rates"]["relation"], "seconds": round(seconds, 2),
            "curve_mm": [[s, e] for s, e in errors], "start_mm": errors[0][1], "end_mm": errors[-1][1],
            "min_mm": min(e for _, e in errors), "change_mm": round(errors[-1][1] - errors[0][1], 2),
            "pa_change_mm": round(summary["after_pa_mpjpe_mm"] - summary["before_pa_mpjpe_mm"], 2)}  # fmt: skip


def run_real(predictor: PosePredictor, seed: int, data_root: Path | None) -> dict[str, Any]:
    """The tab's default real session on a per-seed sample of tuning photos: seconds and agreement before / after."""
    from nlrd.adapt_session import builtin_real_photos, real_target_data
    from nlrd.data.paths import resolve_data_root

    paths = builtin_real_photos(resolve_data_root(data_root), offset=seed)
    t0 = time.perf_counter()
    data = real_target_data(paths, predictor, seed=seed)
    data_s = time.perf_counter() - t0
    settings = dataclasses.replace(default_settings(predictor, predictor.device.type, real=True), seed=seed).checked()
    session, seconds = run_to_end(predictor, data, settings)
    s = session.summary()
    return {"seed": seed, "started_from": s["started_from"], "terms": s["terms"], "steps": s["steps_done"],
            "frames": int(len(data.real.frames)) if data.real is not None else 0, "held_out": int(len(data.eval_images)),
            "data_seconds": round(data_s, 2), "seconds": round(seconds, 2), "before": s["before_agreement_pck"],
            "after": s["after_agreement_pck"], "curve": [[k, v] for k, v in session.agreement]}  # fmt: skip


def run_in_app(checkpoints: Path, threads: int | None) -> dict[str, Any]:
    """One default /adapt call through gradio_client against a freshly launched app.py (CPU)."""
    from app_latency import start_app
    from gradio_client import Client

    with tempfile.TemporaryDirectory() as tmp:
        proc, url, startup_s = start_app(str(checkpoints), "cpu", threads, Path(tmp) / "app.log")
        try:
            client = Client(url, verbose=False)
            defaults = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/adapt"]["parameters"]
            values = {p["parameter_name"]: p.get("parameter_default") for p in defaults}
            t0 = time.perf_counter()
            summary = client.predict("built-in synthetic target clips", None, values["terms"], values["steps"], None, "cpu",
                                     values.get("start") or "auto", api_name="/adapt")[0]  # fmt: skip
            seconds = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    before, after = summary["before_mpjpe_mm"], summary["after_mpjpe_mm"]
    return {"startup_s": round(startup_s, 2), "seconds": round(seconds, 2), "terms": summary["terms"],
            "steps": summary["steps_done"], "started_from": summary["started_from"], "before_mm": before, "after_mm": after,
            "change_mm": round(after - before, 2)}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", nargs="+", type=Variant.parse, default=[Variant.parse(v) for v in DEFAULT_VARIANTS])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0], help="seeds of the built-in target data")
    ap.add_argument("--steps", type=int, default=None, help="steps per session (default: the Adapt tab's default)")
    ap.add_argument("--eval-every", type=int, default=None, help="steps between evaluations (default: the tab's)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--checkpoints", type=Path, default=CHECKPOINT_DIR)
    ap.add_argument("--out", type=Path, default=Path("out/adapt_session.json"))
    ap.add_argument("--app", action="store_true", help="also run the default session through app.py's /adapt")
    ap.add_argument("--real", action="store_true", help="the tab's default session on real photos (see the module doc)")
    ap.add_argument("--data-root", type=Path, default=None, help="data folder of the real photos (--real)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    predictor = PosePredictor.from_pretrained(args.checkpoints, device=args.device)
    if args.real:
        real_rows = []
        for seed in args.seeds:
            r = run_real(predictor, seed, args.data_root)
            real_rows.append(r)
            print(f"seed {seed}: agreement {r['before']:.3f} -> {r['after']:.3f} in {r['data_seconds']:.0f} + "
                  f"{r['seconds']:.0f} s", flush=True)  # fmt: skip
        print(f"\nReal-photo sessions on {args.device} ({torch.get_num_threads()} threads, {os.cpu_count()} cores)\n")
        print("| seed | started from | terms | steps | frames (held out) | data s | session s | PCK@0.2 before -> after |")
        print("|---|---|---|---|---|---|---|---|")
        for r in real_rows:
            print(f"| {r['seed']} | {r['started_from']} | {'+'.join(r['terms'])} | {r['steps']} | "
                  f"{r['frames']} ({r['held_out']}) | {r['data_seconds']:.1f} | {r['seconds']:.1f} | "
                  f"{r['before']:.3f} -> {r['after']:.3f} |")  # fmt: skip
        rose = sum(r["after"] > r["before"] for r in real_rows)
        med_s = statistics.median(r["seconds"] for r in real_rows)
        med_d = statistics.median(r["data_seconds"] for r in real_rows)
        print(f"\nagreement rose in {rose} of {len(real_rows)} seeds; median session {med_s:.1f} s, data {med_d:.1f} s")
        result = {"device": args.device, "real": real_rows, "rose": rose}
        write_report(args.out, result)
        return result

    rows: list[dict[str, Any]] = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        data = builtin_target_data(predictor.image_size, seed=seed)
        data_s = time.perf_counter() - t0
        for variant in args.variants:
            row = run_variant(variant, predictor, data, args.steps, args.eval_every)
            row.update(seed=seed, data_seconds=round(data_s, 2))
            rows.append(row)
            print(f"seed {seed} {row['variant']}: {row['start_mm']} -> {row['end_mm']} mm in {row['seconds']} s", flush=True)

    cpu = platform.processor() or platform.machine()
    print(f"\nAdapt-tab sessions on {args.device} ({torch.get_num_threads()} threads, {os.cpu_count()} cores), {cpu}")
    print("\n| variant | seed | started from | terms | steps | data s | session s | curve (step: mm) | change mm | PA mm |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        curve = ", ".join(f"{s}: {e:.1f}" for s, e in r["curve_mm"])
        print(f"| {r['variant']} | {r['seed']} | {r['started_from']} | {'+'.join(r['terms'])} | {r['steps']} | "
              f"{r['data_seconds']:.1f} | "
              f"{r['seconds']:.1f} | {curve} | {r['change_mm']:+.2f} | {r['pa_change_mm']:+.2f} |")  # fmt: skip
    medians = {}
    for variant in args.variants:
        mine = [r for r in rows if r["variant"] == variant.label]
        medians[variant.label] = {"change_mm": statistics.median(r["change_mm"] for r in mine),
                                  "session_s": statistics.median(r["seconds"] for r in mine),
                                  "total_s": statistics.median(r["seconds"] + r["data_seconds"] for r in mine),
                                  "fell": sum(r["change_mm"] < 0 for r in mine)}  # fmt: skip
    print("\n| variant | median change mm | median session s | median data + session s | fell in |")
    print("|---|---|---|---|---|")
    n = len(args.seeds)
    for label, m in medians.items():
        print(f"| {label} | {m['change_mm']:+.2f} | {m['session_s']:.1f} | {m['total_s']:.1f} | {m['fell']} of {n} seeds |")

    app = None
    if args.app:
        app = run_in_app(args.checkpoints, args.threads)
        print("\n| through app.py's /adapt (default values, first call) | started from | terms | steps | seconds | "
              "before -> after mm | change mm |")  # fmt: skip
        print("|---|---|---|---|---|---|---|")
        print(f"| gradio_client, app served after {app['startup_s']:.1f} s | {app['started_from']} | {'+'.join(app['terms'])} | "
              f"{app['steps']} | {app['seconds']:.1f} | {app['before_mm']:.1f} -> {app['after_mm']:.1f} | "
              f"{app['change_mm']:+.2f} |")  # fmt: skip

    result = {"device": args.device, "app": app, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(), "rows": rows,
              "medians": medians}  # fmt: skip
    write_report(args.out, result)
    return result


if __name__ == "__main__":
    main()
