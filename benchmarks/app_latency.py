"""Latency of the web app: start-up to serving, page ready in a browser, /decode_latent round trip.

Usage::

    python benchmarks/app_latency.py --out out/app_latency.json
    python benchmarks/app_latency.py --checkpoints path/to/weights --calls 100 --threads 1 --no-browser

Starts ``app.py`` as a subprocess on a free 127.0.0.1 port and measures

* **start-up to serving**: from launching the process until ``GET /`` answers 200 (imports, loading
  the weights, the 2,000-pose latent bank, the influence map and the synthetic examples included);
* **page ready**: headless Chromium (``/usr/bin/chromium``, via Playwright) from navigation until the
  app is mounted and the Predict tab's button is visible (skipped when Chromium is missing);
* **/decode_latent round trip**: ``gradio_client`` calls with random latents after a warm-up, through
  the queue, HTTP and JSON (median, p90, min over ``--calls``). gradio_client checks for received
  messages every 50 ms, which bounds this from below; the same call over plain HTTP is measured too,
  through the queue (join + event stream) and as the direct POST the page uses for this endpoint.

Prints a table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_app(checkpoints: str | None, device: str, threads: int | None, log_path: Path,
              extra_args: list[str] | None = None) -> tuple[subprocess.Popen, str, float]:  # fmt: skip
    """Launch app.py; returns (process, url, seconds until GET / answered 200)."""
    import httpx

    port = free_port()
    cmd = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--device", device, *(extra_args or [])]
    if checkpoints:
        cmd += ["--checkpoints", checkpoints]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    url = f"http://127.0.0.1:{port}/"
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log_path.open("w"), stderr=subprocess.STDOUT)
    while time.perf_counter() - t0 < 300:
        if proc.poll() is not None:
            raise SystemExit(f"app.py exited with {proc.returncode}; log:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return proc, url, time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("app.py did not serve within 300 s")


def page_ready(url: str, repeats: int) -> list[float] | None:
    """Seconds from navigation until the app is mounted (fresh page each repeat), or None without Chromium."""
    if not CHROMIUM.exists():
        return None
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for _ in range(repeats):
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            t0 = time.perf_counter()
            page.goto(url)
            page.get_by_role("button", name="Estimate 3D pose").wait_for(timeout=120_000)
            times.append(time.perf_counter() - t0)
            page.close()
        browser.close()
    return times


def decode_round_trips(url: str, calls: int, warmup: int = 5) -> list[float]:
    """Milliseconds per /decode_latent call through gradio_client."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    rng = np.random.default_rng(0)
    out = []
    for i in range(warmup + calls):
        z = rng.uniform(-1, 1, 32).round(2).tolist()
        t0 = time.perf_counter()
        client.predict(*z, api_name="/decode_latent")
        if i >= warmup:
            out.append(1000.0 * (time.perf_counter() - t0))
    return out


def decode_http(url: str, calls: int, warmup: int = 5) -> dict[str, list[float]]:
    """Milliseconds per /decode_latent call over plain HTTP, the two ways a browser can reach it.

    ``queue``: join the queue and read the result from the event stream (the protocol gradio_client
    speaks, without its 50 ms polling of received messages); ``direct``: one POST to
    ``/gradio_api/run/decode_latent`` (how the page sends an event that skips the queue).
    """
    import uuid

    import httpx

    api = url.rstrip("/") + "/gradio_api"
    deps = httpx.get(url.rstrip("/") + "/config", timeout=30).json()["dependencies"]
    fn_index = next(d["id"] for d in deps if d.get("api_name") == "decode_latent")
    rng = np.random.default_rng(1)
    out: dict[str, list[float]] = {"queue": [], "direct": []}
    with httpx.Client(timeout=60) as http:
        for i in range(warmup + calls):
            z = rng.uniform(-1, 1, 32).round(2).tolist()
            session = uuid.uuid4().hex[:12]
            t0 = time.perf_counter()
            http.post(f"{api}/queue/join", json={"data": z, "fn_index": fn_index, "session_hash": session})
            with http.stream("GET", f"{api}/queue/data", params={"session_hash": session}) as events:
                for line in events.iter_lines():
                    if "process_completed" in line:
                        break
            t1 = time.perf_counter()
            r = http.post(f"{api}/run/decode_latent", json={"data": z})
            t2 = time.perf_counter()
            if r.status_code != 200:
                raise SystemExit(f"/run/decode_latent answered {r.status_code}: {r.text[:200]}")
            if i >= warmup:
                out["queue"].append(1000.0 * (t1 - t0))
                out["direct"].append(1000.0 * (t2 - t1))
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    return {"median": round(float(np.median(ms)), 1), "p90": round(float(np.percentile(ms, 90)), 1),
            "min": round(float(np.min(ms)), 1), "calls": len(ms)}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/app_latency.json"))
    ap.add_argument("--checkpoints", default=None, help="weights folder (default: the shipped checkpoints/)")
    ap.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads of the app (default: torch's)")
    ap.add_argument("--calls", type=int, default=50, help="timed /decode_latent calls")
    ap.add_argument("--page-repeats", type=int, default=3)
    ap.add_argument("--no-browser", action="store_true", help="skip the page-ready measurement")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="nlrd-bench-") as tmp:
        proc, url, startup = start_app(args.checkpoints, args.device, args.threads, Path(tmp) / "app.log")
        try:
            page = None if args.no_browser else page_ready(url, args.page_repeats)
            rtt = decode_round_trips(url, args.calls)
            http = decode_http(url, args.calls)
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    result: dict[str, Any] = {
        "startup_to_serving_s": round(startup, 2),
        "page_ready_s": None if page is None else round(float(np.median(page)), 2),
        "page_ready_runs_s": None if page is None else [round(t, 2) for t in page],
        "decode_latent_ms": _stats(rtt),
        "decode_latent_http_queue_ms": _stats(http["queue"]),
        "decode_latent_http_direct_ms": _stats(http["direct"]),
        "device": args.device,
        "threads": args.threads,
        "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "platform": platform.platform()},
    }
    rows = [
        ("start-up to serving", f"{result['startup_to_serving_s']:.2f} s"),
        ("page ready (Chromium, median)", "skipped" if page is None else f"{result['page_ready_s']:.2f} s"),
        ("/decode_latent round trip, median", f"{result['decode_latent_ms']['median']:.1f} ms"),
        ("/decode_latent round trip, p90", f"{result['decode_latent_ms']['p90']:.1f} ms"),
        ("/decode_latent over HTTP, queue + stream, median", f"{result['decode_latent_http_queue_ms']['median']:.1f} ms"),
        ("/decode_latent over HTTP, direct POST, median", f"{result['decode_latent_http_direct_ms']['median']:.1f} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
