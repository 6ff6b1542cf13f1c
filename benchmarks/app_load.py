"""Load on the web app: concurrent gradio_client users, and two adaptation sessions at once.

Usage::

    python benchmarks/app_load.py --out out/app_load.json
    python benchmarks/app_load.py --clients 16 --seconds 30 --threads 1

Starts ``app.py`` on a free 127.0.0.1 port (or uses ``--url``) and runs

* **mixed load**: ``--clients`` threads, each with its own ``gradio_client.Client`` (its own session),
  calling ``/decode_latent`` (random latents) and ``/predict_image`` (a rendered photo, uploaded
  with every call) in turn for ``--seconds``; every failed call is counted and its message kept;
* **two adaptations**: two clients start a tiny ``/adapt`` session at the same moment; with one
  session at a time the second must wait in the queue and then succeed.

Prints a table (calls, failures, median / p95 / max latency per endpoint; the queue statuses the
second session went through) and writes the numbers as JSON. The functions are also used by
``tests/test_app_load.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ADAPT_SOURCE = "built-in synthetic target clips"


@dataclass
class EndpointStats:
    """Latencies (ms) and failures of one endpoint under load."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        return {"calls": len(self.latencies_ms) + len(self.failures), "failures": len(self.failures),
                "median_ms": round(float(np.median(lat)), 1), "p95_ms": round(float(np.percentile(lat, 95)), 1),
                "max_ms": round(float(lat.max()), 1), "first_failures": self.failures[:3]}  # fmt: skip


def write_photo(path: Path) -> Path:
    """A rendered person (200 px, source style: no data folder needed) as a JPEG to upload."""
    import cv2

    from nlrd.data.synthetic import demo_poses, render_sample

    rng = np.random.default_rng(11)
    image = render_sample(demo_poses.random_poses(1, rng)[0], "source", rng, size=200).image
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def mixed_load(url: str, clients: int, seconds: float, photo: Path) -> dict[str, dict[str, Any]]:
    """``clients`` concurrent sessions alternating /decode_latent and /predict_image for ``seconds``."""
    from gradio_client import Client, handle_file

    stats = {"/decode_latent": EndpointStats(), "/predict_image": EndpointStats()}
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)
    stop = threading.Event()
    setup_errors: list[str] = []

    def worker(k: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as exc:  # noqa: BLE001 - a client that cannot connect is a failure to report
            setup_errors.append(f"client {k}: {type(exc).__name__}: {exc}")
            ready.wait()
            return
        rng = np.random.default_rng(k)
        calls: list[tuple[str, Callable[[], Any]]] = [
            ("/decode_latent", lambda: client.predict(*rng.uniform(-1, 1, 32).round(2).tolist(), api_name="/decode_latent")),
            ("/predict_image", lambda: client.predict(handle_file(str(photo)), False, api_name="/predict_image")),
        ]
        ready.wait()
        i = k  # clients start on different endpoints
        while not stop.is_set():
            name, call = calls[i % 2]
            i += 1
            t0 = time.perf_counter()
            try:
                call()
                ms = 1000.0 * (time.perf_counter() - t0)
                with lock:
                    stats[name].latencies_ms.append(ms)
            except Exception as exc:  # noqa: BLE001 - every failure is counted, whatever its kind
                with lock:
                    stats[name].failures.append(f"{type(exc).__name__}: {exc}"[:300])

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(clients)]
    for t in threads:
        t.start()
    ready.wait()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(timeout=300)
    out = {name: s.summary() for name, s in stats.items()}
    out["setup"] = {"clients": clients, "seconds": seconds, "failures": len(setup_errors), "first_failures": setup_errors[:3]}
    return out


def two_adaptations(url: str, steps: int = 2, terms: tuple[str, ...] = ("pose-flip",)) -> dict[str, Any]:
    """Start two /adapt sessions at once from two clients; report both results (in the order they
    ran) and the queue statuses the later one went through."""
    from gradio_client import Client

    clients = [Client(url, verbose=False), Client(url, verbose=False)]
    args = (ADAPT_SOURCE, None, list(terms), steps, None, "cpu")
    t0 = time.perf_counter()
    jobs = [c.submit(*args, api_name="/adapt") for c in clients]  # both join the queue at about the same moment
    statuses: list[list[str]] = [[], []]
    while not all(j.done() for j in jobs):
        for j, seen in zip(jobs, statuses, strict=True):
            code = j.status().code.name
            if not seen or seen[-1] != code:
                seen.append(code)
        time.sleep(0.05)
    results = [j.result()[0] for j in jobs]
    order = sorted(range(2), key=lambda k: results[k]["started_unix_s"])  # which one the queue ran first
    first, second = (results[k] for k in order)
    # The sessions' own clocks: did the later one start before the earlier one had stopped?
    overlap = second["started_unix_s"] < first["ended_unix_s"]
    later = statuses[order[1]]
    return {"first": first, "second": second, "second_statuses": later, "queued": "IN_QUEUE" in later,
            "overlap": bool(overlap), "wall_s": round(time.perf_counter() - t0, 1)}  # fmt: skip


def print_table(load: dict[str, dict[str, Any]], adapt: dict[str, Any] | None) -> None:
    rows = [("endpoint", "calls", "failed", "median ms", "p95 ms", "max ms")]
    for name in ("/decode_latent", "/predict_image"):
        s = load[name]
        ms = [f"{s[k]:.0f}" for k in ("median_ms", "p95_ms", "max_ms")]
        rows.append((name, str(s["calls"]), str(s["failures"]), *ms))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    setup = load["setup"]
    print(f"{setup['clients']} concurrent clients for {setup['seconds']:.0f} s (client set-up failures: {setup['failures']})")
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    if adapt is not None:
        ok = all(adapt[k]["phase"] == "done" for k in ("first", "second"))
        print(f"two /adapt sessions at once: both done: {ok}; second queued: {adapt['queued']}; ran concurrently: "
              f"{adapt['overlap']}; second's statuses: {' > '.join(adapt['second_statuses'])}; {adapt['wall_s']} s")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from app_latency import start_app

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/app_load.json"))
    ap.add_argument("--url", default=None, help="an app already serving (default: start app.py)")
    ap.add_argument("--checkpoints", default=None, help="weights folder (default: the shipped checkpoints/)")
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads of the started app")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--adapt-steps", type=int, default=2, help="steps of each of the two /adapt sessions (0: skip)")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nlrd-load-") as tmp:
        photo = write_photo(Path(tmp) / "person.jpg")
        proc = None
        url = args.url
        if url is None:
            proc, url, _ = start_app(args.checkpoints, "cpu", args.threads, Path(tmp) / "app.log",
                                     extra_args=["--runs-dir", str(Path(tmp) / "runs")])  # fmt: skip
        try:
            load = mixed_load(url, args.clients, args.seconds, photo)
            adapt = two_adaptations(url, args.adapt_steps) if args.adapt_steps > 0 else None
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)
    print_table(load, adapt)
    result = {"load": load, "two_adaptations": adapt, "threads": args.threads, "cpu_count": os.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
