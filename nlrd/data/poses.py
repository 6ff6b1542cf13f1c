"""Prepared mocap poses: building the cache from the real data, and loading its splits.

The cache is one ``mocap.npz`` (plus ``summary.json``) written by :func:`prepare_mocap`, which the
command ``python -m training.prepare_data --data-root ../shared/data --out data/`` runs. Its layout
is documented in :mod:`training.prepare_data`. Every array holds H36M_17 joints in mm, root-relative,
camera-style axes (x right, y down, z forward), 30 fps, bones re-lengthed to the canonical skeleton.

Splits are by file, so no motion is shared between train, val and test:

- CMU: the data's own ``train/`` and ``test/`` folders; ``val`` is a seeded ~10% of the train files.
- Bandai Namco: all BVH files of every ``dataset-*`` folder, a seeded ~80/10/10 split by file.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nlrd.data.mocap import MocapSequence, read_bvh, read_cmu
from nlrd.kinematics import bone_lengths, relength
from nlrd.skeleton import H36M_17, Skeleton

SPLITS: tuple[str, ...] = ("train", "val", "test")
FORMAT_VERSION = 1
NPZ_NAME = "mocap.npz"
SUMMARY_NAME = "summary.json"
FPS = 30

SOURCES: dict[str, dict[str, str]] = {
    "cmu": {
        "name": "CMU Graphics Lab Motion Capture Database (8-action subset used in motion prediction)",
        "url": "http://mocap.cs.cmu.edu",
        "licence": "CMU mocap terms: free for research and commercial use; do not resell the data",
        "acknowledgement": "The data used in this project was obtained from mocap.cs.cmu.edu. "
        "The database was created with funding from NSF EIA-0196217.",
    },
    "bandai": {
        "name": "Bandai Namco Research Motion Dataset (dataset-1 and dataset-2)",
        "url": "https://github.com/BandaiNamcoResearchInc/Bandai-Namco-Research-Motiondataset",
        "licence": "CC BY-NC 4.0 (weights trained on it are for non-commercial use)",
        "citation": "Kobayashi et al., Motion Capture Dataset for Practical Use of AI-based Motion Editing "
        "and Stylization, arXiv:2306.08861, 2023",
    },
}


# ----------------------------------------------------------------------------- the loaded split
@dataclass
class MocapSplit:
    """All sequences of one split, concatenated along the first axis.

    Attributes:
        joints: (N, J, 3) float32 mm, root-relative, camera axes (x right, y down, z forward).
        root: (N, 3) float32 mm, the pelvis trajectory in the same axes.
        seq_bounds: (S, 2) int64 ``[start, end)`` rows of each sequence in ``joints``.
        seq_names: S names such as ``"cmu/train/walking/walking_1"``.
        seq_sources: S source names, ``"cmu"`` or ``"bandai"``.
        fps: frame rate (30).
    """

    joints: np.ndarray
    root: np.ndarray
    seq_bounds: np.ndarray
    seq_names: list[str]
    seq_sources: list[str]
    fps: float = FPS
    skeleton: Skeleton = field(default=H36M_17, repr=False)

    def __post_init__(self) -> None:
        n = self.joints.shape[0]
        if self.joints.shape[1:] != (self.skeleton.num_joints, 3):
            raise ValueError(f"joints must be (N, {self.skeleton.num_joints}, 3), got {self.joints.shape}")
        if self.root.shape != (n, 3):
            raise ValueError(f"root must be ({n}, 3), got {self.root.shape}")
        b = self.seq_bounds
        if b.ndim != 2 or b.shape[1] != 2 or len(self.seq_names) != b.shape[0] or len(self.seq_sources) != b.shape[0]:
            raise ValueError("seq_bounds must be (S, 2) with one name and one source per sequence")
        if b.size and (np.any(b[:, 0] >= b[:, 1]) or b[0, 0] != 0 or b[-1, 1] != n or np.any(b[1:, 0] != b[:-1, 1])):
            raise ValueError("seq_bounds must tile [0, N) with non-empty, consecutive [start, end) ranges")

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[0])

    @property
    def num_sequences(self) -> int:
        return int(self.seq_bounds.shape[0])

    def sequence(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Sequence i as (joints (T, J, 3) mm, root (T, 3) mm) views."""
        s, e = self.seq_bounds[i]
        return self.joints[s:e], self.root[s:e]

    def window_starts(self, length: int, stride: int = 1) -> np.ndarray:
        """(M,) int64 start rows s whose window ``[s, s + length)`` lies inside one sequence.

        Within each sequence the starts are ``start, start + stride, ...``; sequences shorter than
        ``length`` give none.
        """
        if length < 1 or stride < 1:
            raise ValueError(f"length and stride must be >= 1, got {length} and {stride}")
        parts = [np.arange(s, e - length + 1, stride, dtype=np.int64) for s, e in self.seq_bounds if e - s >= length]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def windows(self, length: int, stride: int = 1) -> np.ndarray:
        """(M, length, J, 3) float32 mm: every window of :meth:`window_starts` (a copy; mind memory)."""
        starts = self.window_starts(length, stride)
        return self.joints[starts[:, None] + np.arange(length)]


def load_split(data_dir: str | os.PathLike[str], split: str, skeleton: Skeleton = H36M_17) -> MocapSplit:
    """Load one split (``"train"``, ``"val"`` or ``"test"``) of the prepared ``mocap.npz``."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(data_dir) / NPZ_NAME
    if not path.is_file():
        raise ValueError(
            f"prepared mocap data not found at {str(path)!r}; run "
            f"`python -m training.prepare_data --data-root <data folder> --out {data_dir}` first "
            f"(e.g. `python -m training.prepare_data --data-root ../shared/data --out data/`)"
        )
    with np.load(path, allow_pickle=False) as z:
        version = int(z["format_version"]) if "format_version" in z.files else -1
        if version != FORMAT_VERSION:
            raise ValueError(f"{path}: format version {version}, expected {FORMAT_VERSION}; run prepare_data again")
        return MocapSplit(
            joints=z[f"{split}_joints"],
            root=z[f"{split}_root"],
            seq_bounds=z[f"{split}_seq_bounds"].astype(np.int64),
            seq_names=[str(s) for s in z[f"{split}_seq_names"]],
            seq_sources=[str(s) for s in z[f"{split}_seq_sources"]],
            skeleton=skeleton,
        )


# ----------------------------------------------------------------------------- the file list
@dataclass(frozen=True)
class MocapFile:
    """One source file and the split it goes to."""

    path: Path
    name: str
    source: str
    split: str


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".txt", ".bvh"):
        name = name.removesuffix(suffix)
    return name


def _split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Files per split: round the later splits, at least one each when there are enough files."""
    later = [max(1, round(n * f)) if n >= len(fractions) else 0 for f in fractions[1:]]
    return [n - sum(later), *later]


def list_mocap_files(data_root: str | os.PathLike[str], seed: int = 0) -> list[MocapFile]:
    """All CMU and Bandai Namco files under ``data_root`` with their split, sorted by name.

    CMU: ``cmu_mocap/{train,test}/<action>/*.txt[.gz]``; val = a seeded 10% of the train files.
    Bandai Namco: ``bandai_namco/<dataset>/data/*.bvh[.gz]``; a seeded 80/10/10 split by file.
    """
    root = Path(data_root)
    files: list[MocapFile] = []

    cmu = root / "cmu_mocap"
    for split in ("train", "test"):
        paths = sorted(p for p in (cmu / split).glob("*/*") if p.name.endswith((".txt", ".txt.gz")))
        names = [f"cmu/{split}/{p.parent.name}/{_stem(p)}" for p in paths]
        splits = [split] * len(paths)
        if split == "train" and paths:
            n_train, _ = _split_counts(len(paths), (0.9, 0.1))
            # One generator per source, so one source's split does not depend on the other's files.
            for i in np.random.default_rng([seed, 0]).permutation(len(paths))[n_train:]:
                splits[i] = "val"
        files += [MocapFile(p, nm, "cmu", s) for p, nm, s in zip(paths, names, splits, strict=True)]

    bandai = root / "bandai_namco"
    paths = sorted(p for p in bandai.glob("*/data/*") if p.name.endswith((".bvh", ".bvh.gz")))
    counts = _split_counts(len(paths), (0.8, 0.1, 0.1))
    order = np.random.default_rng([seed, 1]).permutation(len(paths))
    split_of = np.empty(len(paths), dtype=object)
    split_of[order[: counts[0]]] = "train"
    split_of[order[counts[0] : counts[0] + counts[1]]] = "val"
    split_of[order[counts[0] + counts[1] :]] = "test"
    files += [MocapFile(p, f"bandai/{p.parent.parent.name}/{_stem(p)}", "bandai", str(split_of[i])) for i, p in enumerate(paths)]
    return sorted(files, key=lambda f: f.name)


# ----------------------------------------------------------------------------- conversion
def convert_file(file: MocapFile, relength_bones: bool = False) -> MocapSequence:
    """Convert one listed file (CMU text or Bandai BVH) to 30 fps H36M_17 poses."""
    if file.source == "cmu":
        seq = read_cmu(file.path, relength_bones=relength_bones)
    else:
        seq = read_bvh(file.path, unit_mm=10.0, relength_bones=relength_bones)  # Bandai BVH is in cm
    seq.name = file.name
    return seq


def _convert_raw(file: MocapFile) -> MocapSequence:
    return convert_file(file, relength_bones=False)


def convert_files(
    files: Sequence[MocapFile],
    workers: int | None = None,
    progress: bool = True,
    relength_bones: bool = False,
) -> list[MocapSequence]:
    """Convert many files, in file order, over ``workers`` processes (default: up to 2 CPUs).

    Raises the first ValueError a file gives (it names the file).
    """
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, workers)
    bar = _progress(len(files), "converting mocap", progress)
    out: list[MocapSequence] = []
    if workers > 1 and len(files) >= 16:
        # spawn, not fork: the parent may already run torch/OpenMP threads, which fork can deadlock.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for seq in pool.imap(_convert_raw, files, chunksize=8):
                out.append(seq)
                bar(1)
    else:
        for f in files:
            out.append(_convert_raw(f))
            bar(1)
    bar(0, close=True)
    if relength_bones:
        for seq in out:
            seq.joints = relength(seq.joints, H36M_17).astype(np.float32)
    return out


def _progress(total: int, desc: str, enabled: bool) -> Callable[..., None]:
    """A tqdm bar as a function ``update(n, close=False)``; a no-op when disabled."""
    if not enabled:
        return lambda n, close=False: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="file")

    def update(n: int, close: bool = False) -> None:
        bar.update(n)
        if close:
            bar.close()

    return update


def measure_bone_lengths(joints: Iterable[np.ndarray], skeleton: Skeleton = H36M_17) -> np.ndarray:
    """(J,) float64 median length (mm) of each bone over all frames, averaged over left/right.

    Args:
        joints: arrays (T, J, 3) in mm, not re-lengthed.
    """
    lens = np.concatenate([bone_lengths(np.asarray(j, dtype=np.float64), skeleton) for j in joints], axis=0)
    med = np.median(lens, axis=0)
    for left, right in skeleton.left_right_pairs:
        med[left] = med[right] = 0.5 * (med[left] + med[right])
    med[0] = 0.0
    return med


def balanced_bone_lengths(per_source: Sequence[np.ndarray]) -> np.ndarray:
    """Canonical lengths (J,): the mean of each source's median lengths.

    Bandai Namco has about six times as many frames as CMU and a rig with narrow hips and short
    clavicles; pooling all frames would give its proportions to everybody. Averaging the per-source
    medians weighs each capture rig equally.
    """
    return np.mean(np.stack([np.asarray(p, dtype=np.float64) for p in per_source]), axis=0)


def format_bone_lengths(lengths: Sequence[float]) -> str:
    """The bone lengths as the literal of ``_CANONICAL_BONE_LENGTHS_MM`` in ``nlrd/skeleton.py``."""
    vals = [f"{v:.1f}" for v in lengths]
    return "(\n    " + ", ".join(vals[:11]) + ",\n    " + ", ".join(vals[11:]) + ",\n)"


def prepare_mocap(
    data_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
    skeleton: Skeleton = H36M_17,
) -> dict:
    """Convert every CMU and Bandai Namco file under ``data_root`` and write ``out_dir/mocap.npz``.

    Bones are re-lengthed to ``skeleton``'s canonical lengths; the measured (pre-re-length) medians
    are reported in the summary. Returns the summary also written to ``out_dir/summary.json``.
    """
    root = Path(data_root)
    files = list_mocap_files(root, seed)
    if not files:
        raise ValueError(f"no CMU (cmu_mocap/...) or Bandai Namco (bandai_namco/...) files under {str(root)!r}")
    seqs = convert_files(files, workers=workers, progress=progress)
    pairs = list(zip(files, seqs, strict=True))
    sources_present = sorted({f.source for f in files})
    per_source_raw = {src: measure_bone_lengths([s.joints for f, s in pairs if f.source == src]) for src in sources_present}
    measured = balanced_bone_lengths(list(per_source_raw.values()))
    per_source = {src: [round(float(v), 1) for v in lens] for src, lens in per_source_raw.items()}
    arrays: dict[str, np.ndarray] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "fps": np.array(FPS, dtype=np.int64),
        "seed": np.array(seed, dtype=np.int64),
        "bone_lengths_mm": skeleton.bone_lengths,
    }
    frames_per_split: dict[str, int] = {}
    for split in SPLITS:
        chosen = [(f, s) for f, s in pairs if f.split == split]
        lengths = np.array([s.num_frames for _, s in chosen], dtype=np.int64)
        ends = np.cumsum(lengths)
        joints = [relength(s.joints.astype(np.float64), skeleton).astype(np.float32) for _, s in chosen]
        roots = [s.root for _, s in chosen]
        no_joints = np.zeros((0, skeleton.num_joints, 3), np.float32)
        arrays[f"{split}_joints"] = np.concatenate(joints) if joints else no_joints
        arrays[f"{split}_root"] = np.concatenate(roots) if roots else np.zeros((0, 3), np.float32)
        arrays[f"{split}_seq_bounds"] = np.stack([ends - lengths, ends], axis=1).astype(np.int64).reshape(-1, 2)
        arrays[f"{split}_seq_names"] = np.array([f.name for f, _ in chosen], dtype=np.str_)
        arrays[f"{split}_seq_sources"] = np.array([f.source for f, _ in chosen], dtype=np.str_)
        frames_per_split[split] = int(lengths.sum())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (NPZ_NAME + ".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(out / NPZ_NAME)  # atomic: a reader never sees half a file

    summary = {
        "format_version": FORMAT_VERSION,
        "fps": FPS,
        "seed": seed,
        "skeleton": skeleton.name,
        "units": "mm, root-relative joints; camera axes x right, y down, z forward",
        "sources": [{"id": src, **SOURCES[src], "files": sum(f.source == src for f in files)} for src in sources_present],
        "frames_per_split": frames_per_split,
        "frames_per_source": {src: int(sum(s.num_frames for f, s in pairs if f.source == src)) for src in sources_present},
        "frames_per_split_source": {
            split: {
                src: int(sum(s.num_frames for f, s in pairs if f.source == src and f.split == split)) for src in sources_present
            }
            for split in SPLITS
        },
        "files_per_split": {split: sum(f.split == split for f in files) for split in SPLITS},
        "bone_lengths_mm": [round(float(v), 1) for v in measured],
        "bone_lengths_mm_per_source": per_source,
        "canonical_bone_lengths_mm": [float(v) for v in skeleton.bone_lengths_mm],
    }
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def is_prepared(out_dir: str | os.PathLike[str], seed: int = 0, skeleton: Skeleton = H36M_17) -> bool:
    """True when ``out_dir/mocap.npz`` exists with this format version, split seed and skeleton bone lengths."""
    path = Path(out_dir) / NPZ_NAME
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return (
                int(z["format_version"]) == FORMAT_VERSION
                and int(z["seed"]) == seed
                and np.allclose(z["bone_lengths_mm"], skeleton.bone_lengths, atol=1e-3)
            )
    except (OSError, KeyError, ValueError):
        return False


def ensure_prepared(
    data_root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Return ``out_dir``, running :func:`prepare_mocap` first if its cache is missing or stale.

    Stale means another format version, another split seed or other canonical bone lengths than the
    skeleton's now.
    """
    if not is_prepared(out_dir, seed):
        prepare_mocap(data_root, out_dir, seed=seed, workers=workers, progress=progress)
    return Path(out_dir)
