"""The fixed, seeded evaluation sets of rendered people, cached as .npz beside the prepared mocap.

| name | what | size |
|---|---|---|
| source_test | source-style images of test-split poses | 2,000 |
| target_test | target-style images of test-split poses (labels for evaluation only) | 2,000 |
| target_test_clips | target-style 30-frame clips of test-split windows | 100 |
| target_adapt_clips | target-style 60-frame clips of train-split windows: the unlabelled target set adaptation sees | 96 |
| target_adapt_frames | target-style single frames of train-split poses: unlabelled scenes for frame-level terms | 17,280 |
| source_adapt_frames | source-style frames of train-split poses with labels: the source term of real-target adaptation | 8,000 |

The sets are deterministic for their seed, so the cache is only a speed-up: deleting it and
rebuilding gives the same bytes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nlrd.data.poses import load_split
from nlrd.data.synthetic import fixed_test_clips, fixed_test_set

TESTSET_VERSION = 2  # 2: cameras at elevation -30..+60 and roll +-15 (1: -15..+35, no roll)


@dataclass(frozen=True)
class TestSetSpec:
    style: str
    n: int
    seed: int
    clips: bool = False
    split: str = "test"
    length: int = 30  # frames per clip


TEST_SETS: dict[str, TestSetSpec] = {
    "source_test": TestSetSpec("source", 2000, 1001),
    "target_test": TestSetSpec("target", 2000, 1002),
    "target_test_clips": TestSetSpec("target", 100, 1003, clips=True),
    "target_adapt_clips": TestSetSpec("target", 96, 1004, clips=True, split="train", length=60),
    "target_adapt_frames": TestSetSpec("target", 17280, 1005, split="train"),
    "source_adapt_frames": TestSetSpec("source", 8000, 1006, split="train"),
}


def load_test_set(name: str, data_dir: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None,
                  size: int = 128) -> dict[str, np.ndarray]:  # fmt: skip
    """The arrays of ``nlrd.data.synthetic.fixed_test_set`` (or ``fixed_test_clips``) for a named set.

    Args:
        name: a key of :data:`TEST_SETS`.
        data_dir: the prepared data folder (``mocap.npz``); the cache goes to ``data_dir/testsets``.
        data_root: raw data folder (its ``backgrounds/`` feed the target style).
        size: crop side in pixels.
    """
    if name not in TEST_SETS:
        raise ValueError(f"unknown test set {name!r}; known: {sorted(TEST_SETS)}")
    spec = TEST_SETS[name]
    cache = Path(data_dir) / "testsets" / f"{name}_{size}px_v{TESTSET_VERSION}.npz"
    if cache.exists():
        with np.load(cache) as z:
            return {k: z[k] for k in z.files}
    poses = load_split(data_dir, spec.split)
    backgrounds = Path(data_root) / "backgrounds" if data_root is not None else None
    if spec.clips:
        windows = poses.windows(spec.length, stride=spec.length // 2)
        arrays = fixed_test_clips(windows, spec.style, spec.n, spec.seed, size, backgrounds=backgrounds)
    else:
        arrays = fixed_test_set(poses.joints, spec.style, spec.n, spec.seed, size, backgrounds=backgrounds)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, cache)
    return arrays
