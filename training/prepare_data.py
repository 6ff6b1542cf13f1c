"""Convert the real mocap to H36M_17 poses at 30 fps and cache them for training.

Usage::

    python -m training.prepare_data --data-root ../shared/data --out data/
    python -m training.prepare_data --print-bone-lengths     # recompute the canonical bone lengths

Reads ``<data-root>/cmu_mocap/{train,test}/<action>/*.txt[.gz]`` (CMU exp-map text, 120 Hz) and
``<data-root>/bandai_namco/<dataset>/data/*.bvh[.gz]`` (Bandai Namco BVH, cm). Splits are by file:
CMU keeps its train/test folders and carves val from a seeded 10% of the train files; Bandai Namco
files are split 80/10/10 with the same seed. Nothing is copied from the data folder except the
converted poses.

Output ``<out>/mocap.npz`` (plain arrays, loadable with ``np.load(..., allow_pickle=False)``):

    format_version          ()          int64    cache layout version (1)
    fps                     ()          int64    30
    seed                    ()          int64    split seed
    bone_lengths_mm         (17,)       float32  the canonical bone lengths the joints were re-lengthed to
    {split}_joints          (N, 17, 3)  float32  mm, root-relative (pelvis at 0), H36M_17 joint order,
                                                 camera axes: x right, y down (gravity +y), z forward
    {split}_root            (N, 3)      float32  mm, pelvis trajectory in the same axes
    {split}_seq_bounds      (S, 2)      int64    [start, end) rows of each sequence in {split}_joints
    {split}_seq_names       (S,)        str      e.g. "cmu/train/walking/walking_1",
                                                 "bandai/dataset-1/dataset-1_walk_active_001"
    {split}_seq_sources     (S,)        str      "cmu" or "bandai"

with split in train, val, test; and ``<out>/summary.json`` (fps, sources with licences, frames per
split and per source, files per split, measured bone lengths). Load a split with
``nlrd.data.poses.load_split(out, "train")``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nlrd.data.paths import default_data_root, resolve_data_root
from nlrd.data.poses import (
    balanced_bone_lengths,
    convert_files,
    format_bone_lengths,
    list_mocap_files,
    measure_bone_lengths,
    prepare_mocap,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.prepare_data", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-root",
        default=None,
        help=f"real data folder (default: $NLRD_DATA or {default_data_root().name!r} beside the repo)",
    )
    p.add_argument("--out", default="data", help="output folder for mocap.npz and summary.json (default: data)")
    p.add_argument("--seed", type=int, default=0, help="seed of the file splits (default: 0)")
    p.add_argument("--workers", type=int, default=None, help="conversion processes (default: up to 2)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--print-bone-lengths", action="store_true",
                   help="only convert, and print the per-bone median lengths (mm, left/right averaged) in the "
                        "form of _CANONICAL_BONE_LENGTHS_MM in nlrd/skeleton.py")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        root = resolve_data_root(args.data_root)
        t0 = time.perf_counter()
        if args.print_bone_lengths:
            files = list_mocap_files(root, args.seed)
            seqs = convert_files(files, workers=args.workers, progress=not args.no_progress)
            per_source = []
            for src in sorted({f.source for f in files}):
                lens = measure_bone_lengths([s.joints for s, f in zip(seqs, files, strict=True) if f.source == src])
                per_source.append(lens)
                print(f"# {src}: " + ", ".join(f"{v:.1f}" for v in lens))
            print("_CANONICAL_BONE_LENGTHS_MM: tuple[float, ...] = "
                  + format_bone_lengths(balanced_bone_lengths(per_source)) + "  # fmt: skip")  # fmt: skip
            return 0
        summary = prepare_mocap(root, args.out, seed=args.seed, workers=args.workers, progress=not args.no_progress)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {Path(args.out) / 'mocap.npz'} and summary.json in {time.perf_counter() - t0:.1f} s")
    print(f"frames per split: {summary['frames_per_split']}")
    print(f"frames per source: {summary['frames_per_source']}")
    print(f"files per split: {summary['files_per_split']}")
    print("measured bone lengths (mm): " + ", ".join(f"{v:.1f}" for v in summary["bone_lengths_mm"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
