"""Inference speed of ``PosePredictor``: one photo end to end, clips batched vs frame by frame, and
detection / plausibility on the real exercise videos.

Usage::

    python benchmarks/inference_latency.py --out out/inference_latency.json
    python benchmarks/inference_latency.py --threads 1 --repeats 50 --data-root ../shared/data

Measures, in one process with ``--threads`` torch and OpenCV threads, after a warm-up (numba
kernels loaded from their cache or compiled, oneDNN primitives created):

* **single image, 640 x 480**: a JPEG (a real frame of ``media/squat.mp4``, centre-cropped to 4:3
  and resized, when the data folder is there; else a synthetic render) decoded with
  ``load_image`` and passed to ``predict_image``; end-to-end wall time and its stages (decode,
  detect, crop, G, Dp) over ``--repeats`` calls: median, p10, p90;
* **clip, 640 x 480**: the same video's frames written to a temporary MP4; ``predict_clip(path)``
  (decode, track, batched G) against a loop of ``predict_image`` over the decoded frames, in
  alternating pairs (``--pairs``), so both see the same load on the machine; frames per second
  and the ratio of each pair;
* **real videos** (``media/squat.mp4`` and ``deadlift.mp4``, 1280 x 720, when present): the share
  of frames after the title card in which the person was found, and on the squat the range of the
  knee angle (at the knee, between thigh and shin, from the predicted 3D joints; the mean of both
  legs): max - min and the 5-95 percentile spread.

Also reports CPU seconds of the process per image / frame (``time.process_time``): with one
thread that is what an idle core would take, even when other processes share the machine; with
more threads it also counts their waiting.

Prints a markdown table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from nlrd.data.images import load_image
from nlrd.data.paths import default_data_root
from nlrd.data.video import iter_video
from nlrd.inference import PosePredictor
from nlrd.skeleton import H36M_17

TITLE_CARD_FRAMES = 7  # a red wipe covers frames 0-6 of both exercise videos
IMAGE_FRAME = 100  # squat.mp4 frame used as the test photo (the lifter standing)
STAGES = ("decode", "detect", "crop", "G", "Dp")


def knee_angles(joints3d: np.ndarray) -> np.ndarray:
    """Knee angle (T,) degrees from joints (T, 17, 3) in H36M_17 order: the angle at the knee between
    the thigh (knee -> hip) and the shin (knee -> ankle), mean of both legs; 180 is a straight leg."""
    idx = H36M_17.index

    def at(hip: str, knee: str, ankle: str) -> np.ndarray:
        u = joints3d[:, idx(hip)] - joints3d[:, idx(knee)]
        v = joints3d[:, idx(ankle)] - joints3d[:, idx(knee)]
        cos = (u * v).sum(-1) / (np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1) + 1e-9)
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))

    return 0.5 * (at("r_hip", "r_knee", "r_ankle") + at("l_hip", "l_knee", "l_ankle"))


def to_640x480(frame: np.ndarray) -> np.ndarray:
    """Centre-crop a frame to 4:3 and resize it to 640 x 480 (area interpolation)."""
    h, w = frame.shape[:2]
    if w * 3 > h * 4:
        cw = h * 4 // 3
        frame = frame[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = w * 3 // 4
        frame = frame[(h - ch) // 2 : (h - ch) // 2 + ch]
    return cv2.resize(frame, (640, 480), interpolation=cv2.INTER_AREA)


def synthetic_frames(n: int) -> np.ndarray:
    """(n, 480, 640, 3) uint8: a rendered person walking through random poses, pillar-boxed to 4:3."""
    from nlrd.data.synthetic import demo_poses, render_clip

    rng = np.random.default_rng(0)
    keys = demo_poses.random_poses(max(2, n // 15 + 1), rng)
    t = np.linspace(0, len(keys) - 1, n)
    i0 = np.floor(t).astype(int).clip(0, len(keys) - 2)
    f = (t - i0)[:, None, None]
    poses = (1 - f) * keys[i0] + f * keys[i0 + 1]
    clip = render_clip(poses, "source", rng, size=480)
    return np.stack([cv2.copyMakeBorder(im, 0, 0, 80, 80, cv2.BORDER_REPLICATE) for im in clip.image])


def stats(values: list[float]) -> dict[str, float]:
    """Median, 10th and 90th percentile and count of a list of measurements."""
    a = np.asarray(values, dtype=np.float64)
    p10, p90 = np.percentile(a, [10, 90])
    return {"median": float(np.median(a)), "p10": float(p10), "p90": float(p90), "n": int(a.size)}


def write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise SystemExit("OpenCV cannot write MP4 (mp4v) files here")
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()


def bench_image(predictor: PosePredictor, jpeg: bytes, repeats: int) -> dict[str, Any]:
    """Wall milliseconds of load_image + predict_image per call, with the stage times."""
    for _ in range(3):  # warm-up
        predictor.predict_image(load_image(jpeg))
    total, cpu, stages = [], [], {k: [] for k in STAGES}
    found = 0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        img = load_image(jpeg)
        t1 = time.perf_counter()
        res = predictor.predict_image(img)
        t2 = time.perf_counter()
        total.append(1000 * (t2 - t0))
        cpu.append(1000 * (time.process_time() - c0))
        stages["decode"].append(1000 * (t1 - t0))
        for k in STAGES[1:]:
            stages[k].append(1000 * res.timings.get(k, 0.0))
        found += int(res.valid[0])
    return {"total_ms": stats(total), "cpu_ms": stats(cpu), "stages_ms": {k: stats(v) for k, v in stages.items()},
            "person_found": found / repeats}  # fmt: skip


def bench_clip(predictor: PosePredictor, video: Path, pairs: int) -> dict[str, Any]:
    """predict_clip(video) against predict_image on each decoded frame, in alternating pairs."""
    n = sum(1 for _ in iter_video(video))
    predictor.predict_clip(video)  # warm-up (G's batch shapes)
    clip_fps, frame_fps, ratios, clip_cpu, frame_cpu = [], [], [], [], []
    clip_stages: dict[str, list[float]] = {}
    found = []
    for _ in range(pairs):
        c0, t0 = time.process_time(), time.perf_counter()
        res = predictor.predict_clip(video)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        clip_fps.append(n / dt)
        clip_cpu.append(1000 * dc / n)
        for k, v in res.timings.items():
            clip_stages.setdefault(k, []).append(1000 * v / n)
        c0, t0 = time.process_time(), time.perf_counter()
        valid = [predictor.predict_image(f).valid[0] for f in iter_video(video)]
        dt2, dc2 = time.perf_counter() - t0, time.process_time() - c0
        frame_fps.append(n / dt2)
        frame_cpu.append(1000 * dc2 / n)
        ratios.append(dt2 / dt)
        found.append((float(res.valid.mean()), float(np.mean(valid))))
    return {"frames": n, "clip_fps": stats(clip_fps), "per_frame_fps": stats(frame_fps), "ratio": stats(ratios),
            "clip_cpu_ms_per_frame": stats(clip_cpu), "per_frame_cpu_ms_per_frame": stats(frame_cpu),
            "clip_stages_ms_per_frame": {k: stats(v) for k, v in clip_stages.items()},
            "found_clip_vs_per_frame": found[-1]}  # fmt: skip


def bench_real(predictor: PosePredictor, media: Path) -> dict[str, Any]:
    """Detection rate after the title card on both videos; knee-angle range on the squat."""
    out: dict[str, Any] = {}
    for name in ("squat", "deadlift"):
        path = media / f"{name}.mp4"
        if not path.exists():
            continue
        t0 = time.perf_counter()
        res = predictor.predict_clip(path)
        dt = time.perf_counter() - t0
        after = slice(TITLE_CARD_FRAMES, None)
        entry: dict[str, Any] = {"frames": res.num_frames, "found": float(res.valid[after].mean()), "fps": res.num_frames / dt}
        if name == "squat":
            knee = knee_angles(res.joints3d[after][res.valid[after]])
            lo, hi = np.percentile(knee, [5, 95])
            entry.update(knee_min_deg=float(knee.min()), knee_max_deg=float(knee.max()),
                         knee_range_deg=float(knee.max() - knee.min()), knee_range_5_95_deg=float(hi - lo))  # fmt: skip
        out[name] = entry
    return out


def table(result: dict[str, Any]) -> str:
    rows: list[tuple[str, str, str, str]] = []

    def add(name: str, s: dict[str, float], fmt: str = "{:.1f}") -> None:
        rows.append((name, fmt.format(s["median"]), fmt.format(s["p10"]), fmt.format(s["p90"])))

    im = result["image"]
    add("single image 640x480, end to end (ms)", im["total_ms"])
    for k in STAGES:
        add(f"  {k} (ms)", im["stages_ms"][k])
    add("  CPU time of the process (ms)", im["cpu_ms"])
    cl = result["clip"]
    add(f"clip 640x480 ({cl['frames']} frames): predict_clip (fps)", cl["clip_fps"])
    for k, s in cl["clip_stages_ms_per_frame"].items():
        note = ", summed over worker threads" if k == "G" else ""
        add(f"  {k} (ms per frame{note})", s, "{:.2f}")
    add("clip: predict_image on each frame (fps)", cl["per_frame_fps"])
    add("clip: predict_clip / per-frame speed-up (x)", cl["ratio"], "{:.2f}")
    add("clip: CPU ms per frame, predict_clip", cl["clip_cpu_ms_per_frame"], "{:.2f}")
    add("clip: CPU ms per frame, per-frame loop", cl["per_frame_cpu_ms_per_frame"], "{:.2f}")
    lines = ["| measure | median | p10 | p90 |", "|---|---:|---:|---:|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    real = result.get("real") or {}
    for name, e in real.items():
        lines.append(f"| {name}.mp4 ({e['frames']} frames, 1280x720): person found after the title card | "
                     f"{100 * e['found']:.1f}% | | |")  # fmt: skip
        lines.append(f"| {name}.mp4: predict_clip (fps) | {e['fps']:.1f} | | |")
        if "knee_range_deg" in e:
            lines.append(f"| squat: knee-angle range, max - min (deg) | {e['knee_range_deg']:.1f} | "
                         f"{e['knee_min_deg']:.0f} (min) | {e['knee_max_deg']:.0f} (max) |")  # fmt: skip
            lines.append(f"| squat: knee-angle range, 5-95 percentile (deg) | {e['knee_range_5_95_deg']:.1f} | | |")
    if not real:
        lines.append("| real videos | not found (no data folder) | | |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/inference_latency.json"))
    ap.add_argument("--threads", type=int, default=None, help="torch and OpenCV threads (default: torch's, e.g. OMP_NUM_THREADS)")
    ap.add_argument("--repeats", type=int, default=30, help="timed single-image calls")
    ap.add_argument("--pairs", type=int, default=2, help="alternating predict_clip / per-frame runs over the clip")
    ap.add_argument("--data-root", default=None, help="real data folder (media/); default $NLRD_DATA or ../shared/data")
    ap.add_argument("--checkpoints", default=None, help="weights folder (default: the shipped checkpoints/)")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    cv2.setNumThreads(threads)

    t0 = time.perf_counter()
    predictor = PosePredictor.from_pretrained(args.checkpoints, device="cpu")
    load_s = time.perf_counter() - t0
    media = (Path(args.data_root).expanduser() if args.data_root else default_data_root()) / "media"
    squat = media / "squat.mp4"
    if squat.exists():
        frames = np.stack([to_640x480(f) for f in iter_video(squat)])
        source = f"{squat.name}, centre-cropped to 4:3 and resized"
        photo = frames[IMAGE_FRAME]
    else:
        frames = synthetic_frames(90)
        source = "synthetic render (no data folder)"
        photo = frames[len(frames) // 2]
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise SystemExit("JPEG encoding failed")

    result: dict[str, Any] = {
        "threads": threads, "checkpoint": predictor.meta.get("image_checkpoint"), "load_s": load_s, "source": source,
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__,
                    "cpu_count": os.cpu_count(), "load_average": os.getloadavg(), "platform": platform.platform()},
    }  # fmt: skip
    result["image"] = bench_image(predictor, buf.tobytes(), args.repeats)
    with tempfile.TemporaryDirectory(prefix="nlrd-bench-") as tmp:
        video = Path(tmp) / "clip_640x480.mp4"
        write_mp4(video, frames, 30.0)
        result["clip"] = bench_clip(predictor, video, args.pairs)
    result["real"] = bench_real(predictor, media) if squat.exists() else {}
    result["wall_s"] = time.perf_counter() - t0
    result["machine"]["load_average_end"] = os.getloadavg()

    print(f"{threads} thread(s), model {result['checkpoint']}, test media: {source}; "
          f"load average {result['machine']['load_average'][0]:.2f} on {os.cpu_count()} CPUs\n")  # fmt: skip
    print(table(result))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(f"\nwrote {args.out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
