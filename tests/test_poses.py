"""Prepared pose data: MocapSplit windows, file splits, and a real prepare_data run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from nlrd.data.poses import (
    SPLITS,
    MocapSplit,
    ensure_prepared,
    is_prepared,
    list_mocap_files,
    load_split,
)
from nlrd.kinematics import bone_lengths
from nlrd.skeleton import H36M_17


def _split(lengths: list[int]) -> MocapSplit:
    n = sum(lengths)
    ends = np.cumsum(lengths)
    joints = np.arange(n * 17 * 3, dtype=np.float32).reshape(n, 17, 3)
    return MocapSplit(
        joints=joints,
        root=np.zeros((n, 3), np.float32),
        seq_bounds=np.stack([ends - lengths, ends], axis=1).astype(np.int64),
        seq_names=[f"s{i}" for i in range(len(lengths))],
        seq_sources=["cmu"] * len(lengths),
    )


def test_window_starts_stay_inside_sequences() -> None:
    split = _split([5, 2, 7])
    np.testing.assert_array_equal(split.window_starts(3), [0, 1, 2, 7, 8, 9, 10, 11])
    np.testing.assert_array_equal(split.window_starts(3, stride=2), [0, 2, 7, 9, 11])
    np.testing.assert_array_equal(split.window_starts(2), [0, 1, 2, 3, 5, 7, 8, 9, 10, 11, 12])
    assert split.window_starts(8).size == 0 and split.windows(8).shape == (0, 8, 17, 3)
    w = split.windows(3, stride=2)
    assert w.shape == (5, 3, 17, 3) and w.dtype == np.float32
    np.testing.assert_array_equal(w[3], split.joints[9:12])
    joints, root = split.sequence(1)
    assert joints.shape == (2, 17, 3) and root.shape == (2, 3)
    with pytest.raises(ValueError, match="length and stride"):
        split.window_starts(0)


def test_mocap_split_validates_its_arrays() -> None:
    good = _split([3, 4])
    with pytest.raises(ValueError, match="tile"):
        MocapSplit(good.joints, good.root, np.array([[0, 3], [4, 7]]), ["a", "b"], ["cmu", "cmu"])
    with pytest.raises(ValueError, match="root"):
        MocapSplit(good.joints, good.root[:-1], good.seq_bounds, ["a", "b"], ["cmu", "cmu"])
    with pytest.raises(ValueError, match="one name"):
        MocapSplit(good.joints, good.root, good.seq_bounds, ["a"], ["cmu", "cmu"])


def test_load_split_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"python -m training\.prepare_data --data-root"):
        load_split(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split"):
        load_split(tmp_path, "training")
    assert not is_prepared(tmp_path)


def test_file_splits_are_seeded_and_disjoint(data_root: Path) -> None:
    files = list_mocap_files(data_root, seed=0)
    assert [f.split for f in files] == [f.split for f in list_mocap_files(data_root, seed=0)]
    assert [f.split for f in files] != [f.split for f in list_mocap_files(data_root, seed=1)]
    names = [f.name for f in files]
    assert len(set(names)) == len(names)
    cmu = [f for f in files if f.source == "cmu"]
    assert all((f.split == "test") == f.name.startswith("cmu/test/") for f in cmu)
    n_train_folder = sum(f.name.startswith("cmu/train/") for f in cmu)
    assert sum(f.split == "val" for f in cmu) == round(0.1 * n_train_folder)
    bandai = [f for f in files if f.source == "bandai"]
    counts = {s: sum(f.split == s for f in bandai) for s in SPLITS}
    assert abs(counts["val"] - 0.1 * len(bandai)) <= 1 and abs(counts["test"] - 0.1 * len(bandai)) <= 1


def test_prepared_splits(prepared_data: Path, data_root: Path) -> None:
    summary = json.loads((prepared_data / "summary.json").read_text())
    assert summary["fps"] == 30
    licences = {s["id"]: s["licence"] for s in summary["sources"]}
    assert "CC BY-NC 4.0" in licences["bandai"] and "CMU" in licences["cmu"]
    seen: set[str] = set()
    for split in SPLITS:
        data = load_split(prepared_data, split)
        assert data.joints.dtype == np.float32 and data.root.dtype == np.float32
        assert data.joints.shape[1:] == (17, 3) and data.seq_bounds.dtype == np.int64
        assert data.num_frames == summary["frames_per_split"][split]
        assert set(data.seq_sources) == {"cmu", "bandai"}
        assert not seen & set(data.seq_names)  # split by file: no sequence in two splits
        seen |= set(data.seq_names)
        np.testing.assert_allclose(data.joints[:, 0], 0.0, atol=1e-4)
        lens = bone_lengths(data.joints[:: max(1, data.num_frames // 5000)])
        assert np.abs(lens - H36M_17.bone_lengths).max() < 0.1
        starts = data.window_starts(30, stride=7)
        seq_of = np.searchsorted(data.seq_bounds[:, 1], np.arange(data.num_frames), side="right")
        np.testing.assert_array_equal(seq_of[starts], seq_of[starts + 29])
    assert len(seen) == len(list_mocap_files(data_root))
    assert sum(summary["frames_per_split"].values()) == sum(summary["frames_per_source"].values())
    assert 16_500 < summary["frames_per_source"]["cmu"] < 17_500 and summary["frames_per_source"]["bandai"] > 90_000
    # nlrd/skeleton.py's canonical lengths are these data's medians (rerun --print-bone-lengths if not).
    np.testing.assert_allclose(summary["bone_lengths_mm"], H36M_17.bone_lengths, atol=0.051)


def test_ensure_prepared_reuses_the_cache(prepared_data: Path, data_root: Path) -> None:
    npz = prepared_data / "mocap.npz"
    before = npz.stat().st_mtime_ns
    assert is_prepared(prepared_data) and not is_prepared(prepared_data, seed=1)
    assert ensure_prepared(data_root, prepared_data) == prepared_data
    assert npz.stat().st_mtime_ns == before
