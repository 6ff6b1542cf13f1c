"""Training throughput of every stage: optimisation steps and samples per second.

Usage::

    python benchmarks/training_throughput.py --out out/training_throughput.json
    python benchmarks/training_throughput.py --stages source,adapt --threads 2 --steps 30 --repeats 5
    python benchmarks/training_throughput.py --device cuda --threads 8

Each stage is built through the classes its training entry point uses (``training/train_*.py``,
``training/adapt.py``) with the default model and stage configurations, then ``train_step`` runs
``--warmup`` times (oneDNN primitives, allocator, optimiser state) followed by ``--repeats`` timed
blocks of ``--steps`` steps. Reported per stage: the median over the repeats of steps per second,
samples per second (the stage's own unit: poses, 30-frame windows, rendered images, relation items
or crops through G), and steps per CPU-second of the process (with one thread that is what an idle
core would deliver, even on a machine whose cores are shared with other work).

Inputs: the prepared mocap (``--data``, made by ``python -m training.prepare_data``) and the shipped
checkpoints (``--checkpoints``) when they are there; otherwise small random poses and freshly
initialised priors, which cost the same per step. Two shortcuts keep the benchmark short without
changing a step's work: motion windows are taken every 8th frame instead of every 2nd (a step draws
random rows, so the pool's size does not matter), and stage ``source`` trains on a few batches
rendered before the timing and cycled (the renderer runs in separate DataLoader processes during
real training; ``benchmarks/renderer_throughput.py`` measures it). Its augmentations stay in the
timed step, as in training. Stage ``adapt`` draws from the fixed unlabelled clip pool
(``target_adapt_clips``, or random pixels without the data) and cycles through its default terms;
relation networks missing from ``checkpoints/relations`` are freshly initialised.

Prints a markdown table and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.data.paths import REPO_ROOT, default_data_root
from nlrd.trainer import DistInfo

STAGES = ("pose_aae", "motion_ae", "source", "relations", "adapt")
BENCH_RELATIONS = ("pose-flip", "flip-backward")  # one pose relation and one motion relation
WINDOW_STRIDE = 8  # frames between window starts of the benchmark's pools (training uses 2)
SOURCE_BATCHES = 2  # pre-rendered batches cycled by stage source
RANDOM_POSES = 256  # pose pool without the prepared data


@dataclass
class Bench:
    """A built stage ready to time.

    Attributes:
        name: row label ("source", "relations:pose-flip", ...).
        stage: object with ``train_step(step) -> dict``.
        unit: what one sample is ("images", "poses", ...).
        samples_per_step: samples one ``train_step`` consumes on average.
        batch: the configured batch (for the table).
        note: where the inputs came from.
    """

    name: str
    stage: Any
    unit: str
    samples_per_step: float
    batch: int
    note: str


class Context:
    """Inputs shared by the stage builders: device, prepared mocap (or random poses), priors, checkpoints."""

    def __init__(self, device: torch.device, data: Path, data_root: Path | None, checkpoints: Path) -> None:
        self.device, self.data, self.data_root, self.checkpoints = device, data, data_root, checkpoints
        self.info = DistInfo()
        self._splits: dict[str, Any] = {}
        self._random_poses: np.ndarray | None = None
        self._priors: tuple[Any, Any, str] | None = None

    @property
    def has_mocap(self) -> bool:
        return (self.data / "mocap.npz").is_file()

    def poses(self, split: str) -> np.ndarray:
        """Joints (N, 17, 3) mm of a split, or random demo poses (N = 256, shared by the splits) without the data."""
        if self.has_mocap:
            return self._split(split).joints
        if self._random_poses is None:
            from nlrd.data.synthetic import demo_poses

            # A step draws random rows, so a small pool costs the same per step as the real split.
            self._random_poses = demo_poses.random_poses(RANDOM_POSES, np.random.default_rng(0)).astype(np.float32)
        return self._random_poses

    def windows(self, split: str, length: int, stride: int) -> np.ndarray:
        """Motion windows (M, length, 17, 3) mm, or random-walk windows (M = 256) without the data."""
        if self.has_mocap:
            return self._split(split).windows(length, stride)
        rng = np.random.default_rng(length)
        base = self.poses(split)[rng.integers(0, RANDOM_POSES, 256)]
        steps = rng.normal(0.0, 5.0, size=(256, length, 17, 3)).astype(np.float32)
        walk = base[:, None] + np.cumsum(steps, axis=1)
        return walk - walk[..., :1, :]  # root-relative, as the prepared windows are

    def _split(self, split: str) -> Any:
        from nlrd.data.poses import load_split

        if split not in self._splits:
            self._splits[split] = load_split(self.data, split)
        return self._splits[split]

    def priors(self) -> tuple[Any, Any, str]:
        """(PosePrior, MotionPrior, note): the shipped ones, or freshly initialised ones when absent."""
        if self._priors is None:
            from nlrd.priors import MOTION_CHECKPOINT, POSE_CHECKPOINT, MotionPrior, PosePrior

            pose_path, motion_path = self.checkpoints / POSE_CHECKPOINT, self.checkpoints / MOTION_CHECKPOINT
            if pose_path.is_file() and motion_path.is_file():
                pose = PosePrior.from_pretrained(pose_path, device=self.device)
                motion = MotionPrior.from_pretrained(motion_path, pose=pose, device=self.device)
                self._priors = (pose, motion, "shipped priors")
            else:
                self._priors = (*fresh_priors(self.device), "fresh priors")
        return self._priors


def fresh_priors(device: torch.device) -> tuple[Any, Any]:
    """Untrained PosePrior and MotionPrior with the default sizes (same cost per step as trained ones)."""
    from nlrd.models.motion_ae import MotionAEConfig, MotionDecoder, MotionEncoder
    from nlrd.models.pose_aae import PoseAAEConfig, PoseDecoder, PoseEncoder
    from nlrd.priors import GaussianLatentPrior, MotionPrior, PosePrior
    from nlrd.skeleton import get_skeleton

    cfg = PoseAAEConfig()
    skeleton = get_skeleton(cfg.skeleton)
    pose = PosePrior(PoseEncoder(cfg, skeleton), PoseDecoder(cfg, skeleton), {}, device)
    mcfg = MotionAEConfig(pose_latent_dim=cfg.latent_dim)
    motion = MotionPrior(pose, MotionEncoder(mcfg), MotionDecoder(mcfg), GaussianLatentPrior(mcfg.motion_latent_dim), {}, device)
    return pose, motion


# ----------------------------------------------------------------------------- stage builders
def build_pose_aae(ctx: Context) -> list[Bench]:
    """Stage 1 as ``training.train_pose_aae`` builds it (default flags)."""
    from nlrd.models.pose_aae import PoseAAEConfig
    from nlrd.stages.pose_aae import PoseAAEStage, PoseAAEStageConfig

    cfg = PoseAAEStageConfig()
    stage = PoseAAEStage(ctx.poses("train"), ctx.poses("val"), PoseAAEConfig(), cfg, ctx.device, ctx.info)
    note = "mocap" if ctx.has_mocap else "random poses"
    return [Bench("pose_aae", stage, "poses", cfg.batch, cfg.batch, note)]


def build_motion_ae(ctx: Context) -> list[Bench]:
    """Stage 2 as ``training.train_motion_ae`` builds it, on the pose prior."""
    from nlrd.models.motion_ae import MotionAEConfig
    from nlrd.stages.motion_ae import MotionAEStage, MotionAEStageConfig

    pose, _, prior_note = ctx.priors()
    cfg = MotionAEStageConfig()
    model_cfg = MotionAEConfig(pose_latent_dim=pose.latent_dim)
    train = ctx.windows("train", model_cfg.length, max(cfg.window_stride, WINDOW_STRIDE))
    val = ctx.windows("val", model_cfg.length, model_cfg.length // 2)
    stage = MotionAEStage(train, val, pose.encoder, pose.decoder, model_cfg, cfg, ctx.device, ctx.info)
    note = ("mocap" if ctx.has_mocap else "random windows") + f", {prior_note}"
    return [Bench("motion_ae", stage, "windows", cfg.batch, cfg.batch, note)]


def build_source(ctx: Context, batch: int | None = None) -> list[Bench]:
    """Stage 3 as ``training.train_source`` builds it (resnet_small, bf16 autocast where fast), fed
    pre-rendered batches so that only the training process's own work is timed."""
    from nlrd.models.image_encoder import ImageEncoderConfig
    from nlrd.stages.source import SourceStage, SourceStageConfig

    pose, _, prior_note = ctx.priors()
    # workers=0: the few batches are rendered here, before the timing; val_images small because the
    # validation set is rendered in the constructor and never used by a training step.
    cfg = SourceStageConfig(workers=0, val_images=8, **({"batch": batch} if batch else {}))
    model_cfg = ImageEncoderConfig(latent_dim=pose.latent_dim)
    stage = SourceStage(ctx.poses("train"), ctx.poses("val"), pose.decoder, model_cfg, cfg, ctx.device, ctx.info,
                        data_root=ctx.data_root)  # fmt: skip
    it = iter(stage.loader)
    batches = [next(it) for _ in range(SOURCE_BATCHES)]
    # The stage draws from this iterator in next_batch (then augments), so cycling rendered batches
    # keeps the rest of the step exactly as in training.
    stage._iter = itertools.cycle(batches)
    note = f"{SOURCE_BATCHES} pre-rendered batches, {prior_note}, amp={'bf16' if amp_active(ctx.device) else 'off'}"
    return [Bench("source", stage, "images", cfg.batch, cfg.batch, note)]


def build_relations(ctx: Context) -> list[Bench]:
    """Stage 4 as ``training.train_relations`` builds it, for one pose and one motion relation."""
    from nlrd.stages.relations import RelationStage, RelationStageConfig
    from nlrd.transforms import get_relation

    pose, motion, prior_note = ctx.priors()
    out = []
    for name in BENCH_RELATIONS:
        rel = get_relation(name)
        if rel.order == "pose":
            tr, te, unit = ctx.poses("train"), ctx.poses("test"), "poses"
        else:
            tr = ctx.windows("train", rel.window, WINDOW_STRIDE)
            te, unit = ctx.windows("test", rel.window, rel.window // 2), "windows"
        cfg = RelationStageConfig()
        stage = RelationStage(name, tr, te, pose, motion, cfg, ctx.device, ctx.info)
        note = ("mocap" if ctx.has_mocap else "random data") + f", {prior_note}"
        out.append(Bench(f"relations:{name}", stage, unit, cfg.batch, cfg.batch, note))
    return out


def build_adapt(ctx: Context) -> list[Bench]:
    """Stage 5 as ``training.adapt`` builds it (default terms, the fixed clip pool)."""
    from nlrd.inference import load_image_encoder
    from nlrd.models.image_encoder import ImageEncoderConfig, build_image_encoder
    from nlrd.models.relation_net import RelationNet, RelationNetConfig
    from nlrd.stages.adapt import OWN_TERMS, AdaptStage, AdaptStageConfig, RelationBank
    from nlrd.transforms import MOTION_LENGTH, get_relation

    pose, motion, prior_note = ctx.priors()
    cfg = AdaptStageConfig(workers=0)
    relation_terms = [t for t in cfg.terms if t not in OWN_TERMS]
    folder = ctx.checkpoints / "relations"
    shipped = [t for t in relation_terms if (folder / f"{t}.safetensors").is_file()]
    bank = RelationBank.load(folder, shipped, ctx.device)
    for t in relation_terms:
        if t not in bank.nets:
            dim = pose.latent_dim if get_relation(t).order == "pose" else motion.latent_dim
            bank.nets[t] = RelationNet(RelationNetConfig(latent_dim=dim)).to(ctx.device).eval().requires_grad_(False)
    gs_path = ctx.checkpoints / "source_gs.safetensors"
    g = load_image_encoder(gs_path) if gs_path.is_file() else build_image_encoder(ImageEncoderConfig(latent_dim=pose.latent_dim))
    pool_file = ctx.data / "testsets" / f"target_adapt_clips_{g.config.image_size}px_v1.npz"
    if pool_file.is_file():
        from nlrd.data.testsets import load_test_set

        pool = load_test_set("target_adapt_clips", ctx.data, ctx.data_root, size=g.config.image_size)["images"][:16]
        pool_note = "target_adapt_clips"
    else:
        s = g.config.image_size
        pool = np.random.default_rng(0).integers(0, 256, size=(4, 2 * MOTION_LENGTH, s, s, 3), dtype=np.uint8)
        pool_note = "random clips"
    stage = AdaptStage(g, pose, motion, bank, cfg, ctx.device, ctx.info, pool=pool)
    per_term = [adapt_crops_per_step(t, cfg) for t in cfg.terms]
    fresh = [t for t in relation_terms if t not in shipped]
    note = f"{pool_note}, terms {','.join(cfg.terms)}" + (f" (fresh {','.join(fresh)})" if fresh else "") + f", {prior_note}"
    return [Bench("adapt", stage, "crops through G", float(np.mean(per_term)), cfg.frames, note)]


def adapt_crops_per_step(term: str, cfg: Any) -> int:
    """Crops through G in one adapt step of ``term`` (both sides of a pair; the stop-gradient side included)."""
    from nlrd.transforms import MOTION_LENGTH, get_relation

    if term == "lcr":
        return 2 * cfg.frames
    if term == "hcr":
        return 2 * cfg.clips * MOTION_LENGTH
    rel = get_relation(term)
    if rel.order == "pose":
        return 2 * cfg.frames
    # A motion relation maps a window of rel.window frames to two MOTION_LENGTH-frame clips.
    return 2 * cfg.clips * MOTION_LENGTH


BUILDERS: dict[str, Callable[[Context], list[Bench]]] = {
    "pose_aae": build_pose_aae,
    "motion_ae": build_motion_ae,
    "source": build_source,
    "relations": build_relations,
    "adapt": build_adapt,
}


def amp_active(device: torch.device) -> bool:
    """Whether the stages' bf16 autocast is on for this device (see nlrd.precision)."""
    from nlrd.precision import bf16_supported

    return bf16_supported(device)


# ----------------------------------------------------------------------------- timing
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(stage: Any, device: torch.device, steps: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Run ``warmup`` untimed then ``repeats`` x ``steps`` timed ``train_step`` calls.

    Returns medians and per-repeat lists of steps per wall-clock second and per CPU-second of the
    process (``time.process_time``: every thread of the process counts).
    """
    step = 0
    for _ in range(warmup):
        stage.train_step(step)
        step += 1
    _sync(device)
    wall, cpu = [], []
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        for _ in range(steps):
            stage.train_step(step)
            step += 1
        _sync(device)
        wall.append(steps / (time.perf_counter() - t0))
        cpu.append(steps / max(time.process_time() - c0, 1e-9))
    return {"steps_per_s": float(np.median(wall)), "steps_per_cpu_s": float(np.median(cpu)),
            "repeats_steps_per_s": wall, "repeats_steps_per_cpu_s": cpu}  # fmt: skip


def measure(bench: Bench, device: torch.device, steps: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Time one built stage; adds samples per second and the bench's description."""
    if bench.name == "adapt":
        # The adapt stage alternates its terms one per step: time whole cycles so each term counts equally.
        n = len(bench.stage.cfg.terms)
        steps = max(n, -(-steps // n) * n)
    r = time_steps(bench.stage, device, steps, warmup, repeats)
    r.update(unit=bench.unit, batch=bench.batch, samples_per_step=bench.samples_per_step, steps_timed=steps,
             samples_per_s=r["steps_per_s"] * bench.samples_per_step,
             samples_per_cpu_s=r["steps_per_cpu_s"] * bench.samples_per_step, note=bench.note)  # fmt: skip
    return r


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """One row per stage: steps/s, samples/s, ms/step, steps per CPU-second."""
    lines = ["| stage | unit | batch | steps/s | samples/s | ms/step | steps/CPU-s | inputs |",
             "|---|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | | | | | | | failed: {r['error']} |")
            continue
        lines.append(f"| {name} | {r['unit']} | {r['batch']} | {r['steps_per_s']:.2f} | {r['samples_per_s']:.1f} | "
                     f"{1000.0 / r['steps_per_s']:.0f} | {r['steps_per_cpu_s']:.2f} | {r['note']} |")  # fmt: skip
    return "\n".join(lines)


def machine_info(threads: int, device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
                            "processor": platform.processor() or platform.machine(), "threads": threads,
                            "device": str(device), "bf16_autocast": amp_active(device)}  # fmt: skip
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def make_context(device: str, data: str, data_root: str | None, checkpoints: str) -> Context:
    """A Context on a checked device; the data folders are optional (None / absent -> synthetic inputs)."""
    from nlrd.precision import pick_device

    dev = pick_device(device)
    root = Path(data_root) if data_root else default_data_root()
    return Context(dev, Path(data), root if root.is_dir() else None, Path(checkpoints))


def run(stages: list[str], ctx: Context, steps: int, warmup: int, repeats: int) -> dict[str, dict[str, Any]]:
    """Build and time each stage in turn; a stage that fails is reported with its error, not raised."""
    results: dict[str, dict[str, Any]] = {}
    for name in stages:
        try:
            benches = BUILDERS[name](ctx)
        except (ValueError, OSError, RuntimeError) as exc:
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        for bench in benches:
            results[bench.name] = measure(bench, ctx.device, steps, warmup, repeats)
            print(f"  {bench.name}: {results[bench.name]['steps_per_s']:.2f} steps/s", flush=True)
        del benches  # free one stage's models and pools before building the next
    return results


def add_timing_args(ap: argparse.ArgumentParser, threads: int, warmup: int, steps_help: str) -> None:
    """The flags shared with the other step-timing benchmarks: device, threads, timing and input folders."""
    ap.add_argument("--threads", type=int, default=threads, help="torch intra-op threads")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=20, help=steps_help)
    ap.add_argument("--warmup", type=int, default=warmup, help="untimed steps first")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=str(REPO_ROOT / "data"), help="prepared data folder (random inputs if absent)")
    ap.add_argument("--data-root", default=None, help="real data folder (backgrounds/); default $NLRD_DATA")
    ap.add_argument("--checkpoints", default=str(REPO_ROOT / "checkpoints"), help="priors, Gs and relation networks")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stages", default=",".join(STAGES), help=f"comma list of {STAGES}")
    add_timing_args(ap, threads=1, warmup=3, steps_help="timed steps per repeat (adapt: rounded up to whole term cycles)")
    ap.add_argument("--out", type=Path, default=Path("out/training_throughput.json"))
    args = ap.parse_args(argv)
    args.stage_list = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(args.stage_list) - set(STAGES))
    if unknown:
        ap.error(f"unknown stages {unknown}; choose from {STAGES}")
    for flag in ("threads", "steps", "repeats"):
        if getattr(args, flag) < 1:
            ap.error(f"--{flag} must be >= 1")
    if args.warmup < 0:
        ap.error("--warmup must be >= 0")
    return args


def context_from_args(args: argparse.Namespace) -> Context:
    """Apply ``--threads``, seed torch and build the Context from the flags of :func:`add_timing_args`."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    return make_context(args.device, args.data, args.data_root, args.checkpoints)


def write_report(out: Path, report: dict[str, Any]) -> None:
    """Write a benchmark's numbers as indented JSON (parent folders made) and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    ctx = context_from_args(args)
    t0 = time.perf_counter()
    results = run(args.stage_list, ctx, args.steps, args.warmup, args.repeats)
    report = {"machine": machine_info(args.threads, ctx.device), "steps": args.steps, "warmup": args.warmup,
              "repeats": args.repeats, "stages": results, "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    print(f"\ntraining throughput, {ctx.device}, {args.threads} thread(s), median of {args.repeats} x {args.steps} steps\n")
    print(markdown_table(results))
    write_report(args.out, report)
    return report


if __name__ == "__main__":
    main()
