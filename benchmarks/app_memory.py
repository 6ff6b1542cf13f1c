"""Memory of the served app over many calls: does its resident size stay bounded?

Usage::

    OMP_NUM_THREADS=1 python benchmarks/app_memory.py --out out/app_memory.json
    python benchmarks/app_memory.py --adapt-calls 20 --mixed-calls 100 --sessions fresh

Starts ``app.py`` on a free 127.0.0.1 port (``start_app`` of ``app_latency.py``) and reads the server
process's resident set size (``VmRSS`` in ``/proc/<pid>/status``) at three points:

* **after warm-up**: a few calls of every endpoint measured below (the first ones load and compile
  what later calls reuse: the built-in adaptation clips, numba kernels, MediaPipe, allocator pools);
* **after the /adapt calls**: ``--adapt-calls`` one-step sessions (the shortest the API allows) on the
  built-in clips;
* **after the mixed calls**: ``--mixed-calls`` calls cycling ``/predict_image`` (a small rendered photo),
  ``/decode_latent`` (random latents) and ``/relation_pair`` (every relation, changing seeds).

``--sessions fresh`` (default) opens a new ``gradio_client`` session for every call, like a script that
never keeps one or many browser tabs: each session's state lives on in the server until it expires, so
this is the case that grew without bound; ``--sessions one`` sends everything from one session, like one
browser tab. Prints a
table (RSS and its growth over the warmed-up figure, MB) and writes the numbers as JSON. The figure to
reach: within 200 MB of the warmed-up RSS at both later points.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from app_latency import start_app  # noqa: E402  (the benchmarks folder is not a package)
from app_load import ADAPT_SOURCE, write_photo  # noqa: E402

RELATIONS = ("pose-flip", "inplane-10", "inplane-50", "flip-backward", "slow-backward")  # pose and motion relations
WARMUP_ROUNDS = 3
TARGET_MB = 200.0  # the figure: growth over the warmed-up RSS


def rss_mb(pid: int) -> float:
    """Resident set size of process ``pid`` in MB (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for process {pid}")


def clients(url: str, fresh: bool) -> Iterator[Any]:
    """gradio_client sessions: the same one forever, or a new one for every call."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    while True:
        yield client
        if fresh:
            client = Client(url, verbose=False)


def mixed_calls(photo: Path, rng: np.random.Generator) -> Iterator[tuple[str, Callable[[Any], Any]]]:
    """(endpoint, call on a client) for /predict_image, /decode_latent and /relation_pair in turn, forever."""
    from gradio_client import handle_file

    k = 0
    while True:
        z = rng.uniform(-1, 1, 32).round(2).tolist()
        name, seed = RELATIONS[k % len(RELATIONS)], int(rng.integers(0, 100_000))
        yield "/predict_image", lambda c: c.predict(handle_file(str(photo)), False, api_name="/predict_image")
        yield "/decode_latent", lambda c, z=z: c.predict(*z, api_name="/decode_latent")
        yield "/relation_pair", lambda c, n=name, s=seed: c.predict(n, s, api_name="/relation_pair")
        k += 1


def adapt_call(client: Any) -> dict[str, Any]:
    """One /adapt session of one step on the built-in clips; returns its summary."""
    return client.predict(ADAPT_SOURCE, None, ["pose-flip"], 1, None, "cpu", api_name="/adapt")[0]


def run(url: str, pid: int, photo: Path, adapt_calls: int, n_mixed: int, fresh: bool) -> dict[str, Any]:
    """Warm up, then the /adapt calls and the mixed calls; RSS after each phase, failures counted."""
    rng = np.random.default_rng(0)
    sessions = clients(url, fresh)
    failures: list[str] = []
    counts: dict[str, int] = {}

    def call(name: str, fn: Callable[[Any], Any]) -> None:
        counts[name] = counts.get(name, 0) + 1
        try:
            fn(next(sessions))
        except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, whatever its kind
            failures.append(f"{name}: {type(exc).__name__}: {exc}"[:300])

    t0 = time.perf_counter()
    rows = [("start", rss_mb(pid), 0.0)]

    def mark(point: str) -> None:
        rows.append((point, rss_mb(pid), time.perf_counter() - t0))
        print(f"  {point}: RSS {rows[-1][1]:.0f} MB at {rows[-1][2]:.0f} s", flush=True)  # progress of a long run

    warm = mixed_calls(photo, rng)
    for _ in range(WARMUP_ROUNDS):
        call("/adapt", adapt_call)
        for _ in range(3 * len(RELATIONS)):  # every relation once per round
            call(*next(warm))
    mark("after warm-up")
    for _ in range(adapt_calls):
        call("/adapt", adapt_call)
    mark(f"after {adapt_calls} /adapt calls")
    mixed = mixed_calls(photo, rng)
    for _ in range(n_mixed):
        call(*next(mixed))
    mark(f"after {n_mixed} mixed calls")
    base = rows[1][1]
    return {"rows": [{"point": p, "rss_mb": round(r, 1), "growth_mb": round(r - base, 1), "elapsed_s": round(t, 1)}
                     for p, r, t in rows],
            "calls": counts, "failures": len(failures), "first_failures": failures[:5],
            "sessions": "fresh" if fresh else "one"}  # fmt: skip


def print_table(result: dict[str, Any]) -> None:
    print(f"server RSS ({result['sessions']} session{'s' if result['sessions'] == 'fresh' else ''}; "
          f"failed calls: {result['failures']})")  # fmt: skip
    print(f"{'point':<28} {'RSS MB':>8} {'vs warm-up':>11} {'elapsed s':>10}")
    for r in result["rows"]:
        growth = "" if r["point"] == "start" else f"{r['growth_mb']:+.0f}"
        print(f"{r['point']:<28} {r['rss_mb']:>8.0f} {growth:>11} {r['elapsed_s']:>10.0f}")
    worst = max(r["growth_mb"] for r in result["rows"][2:])
    print(f"largest growth over the warmed-up RSS: {worst:+.0f} MB (figure to reach: within {TARGET_MB:.0f} MB)")
    for f in result["first_failures"]:
        print(f"  failure: {f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/app_memory.json"))
    ap.add_argument("--checkpoints", default=None, help="weights folder (default: the shipped checkpoints/)")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenMP threads of the started app")
    ap.add_argument("--adapt-calls", type=int, default=100)
    ap.add_argument("--mixed-calls", type=int, default=500)
    ap.add_argument("--sessions", choices=["one", "fresh"], default="fresh",
                    help="one gradio_client session for every call, or a new one per call")  # fmt: skip
    args = ap.parse_args(argv)
    # A time limit's SIGTERM unwinds like Ctrl-C, so the started app is stopped too (not left running).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))

    with tempfile.TemporaryDirectory(prefix="nlrd-memory-") as tmp:
        photo = write_photo(Path(tmp) / "person.jpg")
        proc, url, _ = start_app(args.checkpoints, "cpu", args.threads, Path(tmp) / "app.log",
                                 extra_args=["--runs-dir", str(Path(tmp) / "runs")])  # fmt: skip
        try:
            result = run(url, proc.pid, photo, args.adapt_calls, args.mixed_calls, args.sessions == "fresh")
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result.update(threads=args.threads, cpu_count=os.cpu_count(), target_mb=TARGET_MB)
    print_table(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
