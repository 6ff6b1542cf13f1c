"""Streams of rendered images and clips for training, and fixed rendered test sets.

- :class:`SyntheticPoseDataset` / :class:`SyntheticClipDataset` are ``IterableDataset`` s that
  render on the fly from the poses (N, 17, 3) / windows (M, T, 17, 3) the caller gives (the train
  or test split). Each worker renders its own deterministic stream, seeded by
  ``(seed, epoch, worker id)``, so a run is reproducible for a fixed number of workers.
- :func:`fixed_test_set` / :func:`fixed_test_clips` render a fixed evaluation set: sample ``i`` is
  seeded by ``(seed, i)`` alone, so the same seed gives identical bytes (on a given machine and
  software stack; the jitted kernels are compiled for the host CPU).

Images leave the datasets as float32 tensors (3, H, W) in [0, 1] (clips (T, 3, H, W)); poses as
float32 (17, 3) mm, root-relative, camera frame (clips (T, 17, 3)).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from nlrd.data.synthetic.backgrounds import BackgroundBank
from nlrd.data.synthetic.render import (
    BackgroundsArg,
    RenderedClip,
    RenderedSample,
    bank_for_style,
    render_clip,
    render_sample,
)
from nlrd.data.synthetic.styles import Style, get_style


def _check_array(x: np.ndarray, tail: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float32)
    if arr.ndim != len(tail) + 1 or arr.shape[1:] != tail or arr.shape[0] == 0:
        raise ValueError(f"{what}: expected a non-empty array of shape (N, {', '.join(map(str, tail))}), got {arr.shape}")
    return arr


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]."""
    t = torch.from_numpy(np.ascontiguousarray(image))
    return t.movedim(-1, -3).float().div_(255.0)


def _sample_dict(s: RenderedSample | RenderedClip) -> dict[str, torch.Tensor]:
    return {
        "image": _image_tensor(s.image),
        "joints3d": torch.from_numpy(s.joints3d),
        "joints2d": torch.from_numpy(s.joints2d),
        "visible": torch.from_numpy(s.visible),
        "box": torch.from_numpy(s.box),
        "K": torch.from_numpy(s.K),
    }


class _RenderStream(IterableDataset):
    """Shared worker sharding and seeding of the two streaming datasets."""

    def __init__(
        self, style: str | Style, size: int, seed: int, per_epoch: int | None, backgrounds: BackgroundsArg, return_dict: bool
    ) -> None:
        super().__init__()
        self.style = get_style(style)
        self.size = int(size)
        self.seed = int(seed)
        self.per_epoch = per_epoch
        self.epoch = 0
        self.return_dict = return_dict
        # resolve now so a missing background folder fails in the caller, not in a worker; the bank
        # is cached per process, so forked workers share it and spawned ones load it once
        self._backgrounds = backgrounds
        bank_for_style(self.style, backgrounds)

    def set_epoch(self, epoch: int) -> None:
        """Use a different (still deterministic) stream for each epoch. Workers copy the dataset when
        they start, so this reaches the workers of the next DataLoader iteration (not persistent ones)."""
        self.epoch = int(epoch)

    def _worker(self) -> tuple[np.random.Generator, int | None, BackgroundBank | None]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        count = None
        if self.per_epoch is not None:
            count = self.per_epoch // nw + (1 if wid < self.per_epoch % nw else 0)
        rng = np.random.default_rng([self.seed, self.epoch, wid])
        return rng, count, bank_for_style(self.style, self._backgrounds)

    def __len__(self) -> int:
        if self.per_epoch is None:
            raise TypeError("an endless stream has no length; pass samples_per_epoch")
        return self.per_epoch


class SyntheticPoseDataset(_RenderStream):
    """Rendered images of the given poses, streamed.

    Args:
        poses: (N, 17, 3) mm root-relative poses (world frame, y down); each sample draws one at
            random and renders it from a random view.
        style: "source", "target" or a :class:`Style`.
        size: crop side in pixels.
        seed: base seed; the stream of worker w in epoch e is seeded by (seed, e, w).
        samples_per_epoch: total samples per epoch over all workers (None: endless).
        backgrounds: for photo styles, a bank or folder(s); None reads ``<data root>/backgrounds``.
        return_dict: yield a dict with ``image, joints3d, joints2d, visible, box, K`` instead of
            the ``(image (3, H, W) float32 [0, 1], joints3d (17, 3) float32 mm)`` tuple.
    """

    def __init__(
        self,
        poses: np.ndarray,
        style: str | Style = "source",
        size: int = 128,
        seed: int = 0,
        samples_per_epoch: int | None = None,
        backgrounds: BackgroundsArg = None,
        return_dict: bool = False,
    ) -> None:
        super().__init__(style, size, seed, samples_per_epoch, backgrounds, return_dict)
        self.poses = _check_array(poses, (17, 3), "SyntheticPoseDataset poses")

    def __iter__(self) -> Iterator:
        rng, count, bank = self._worker()
        i = 0
        while count is None or i < count:
            s = render_sample(self.poses[int(rng.integers(len(self.poses)))], self.style, rng, self.size, bank)
            yield _sample_dict(s) if self.return_dict else (_image_tensor(s.image), torch.from_numpy(s.joints3d))
            i += 1


class SyntheticClipDataset(_RenderStream):
    """Rendered clips of the given motion windows, streamed (same arguments as
    :class:`SyntheticPoseDataset`, with ``windows`` (M, T, 17, 3) mm). Yields ``(clip (T, 3, H, W)
    float32 [0, 1], joints3d (T, 17, 3) float32 mm)`` or a dict with a leading T on every field."""

    def __init__(
        self,
        windows: np.ndarray,
        style: str | Style = "target",
        size: int = 128,
        seed: int = 0,
        clips_per_epoch: int | None = None,
        backgrounds: BackgroundsArg = None,
        return_dict: bool = False,
    ) -> None:
        super().__init__(style, size, seed, clips_per_epoch, backgrounds, return_dict)
        w = np.asarray(windows, dtype=np.float32)
        if w.ndim != 4 or w.shape[2:] != (17, 3) or w.shape[0] == 0:
            raise ValueError(f"SyntheticClipDataset windows: expected (M, T, 17, 3), got {w.shape}")
        self.windows = w

    def __iter__(self) -> Iterator:
        rng, count, bank = self._worker()
        i = 0
        while count is None or i < count:
            c = render_clip(self.windows[int(rng.integers(len(self.windows)))], self.style, rng, self.size, bank)
            yield _sample_dict(c) if self.return_dict else (_image_tensor(c.image), torch.from_numpy(c.joints3d))
            i += 1


def _stack(items: list[RenderedSample] | list[RenderedClip], index: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "images": np.stack([s.image for s in items]),
        "joints3d": np.stack([s.joints3d for s in items]),
        "joints2d": np.stack([s.joints2d for s in items]),
        "visible": np.stack([s.visible for s in items]),
        "box": np.stack([s.box for s in items]),
        "K": np.stack([s.K for s in items]),
        "pose_index": index.astype(np.int64),
    }


def fixed_test_set(
    poses: np.ndarray, style: str | Style, n: int, seed: int, size: int = 128, backgrounds: BackgroundsArg = None
) -> dict[str, np.ndarray]:
    """Render a fixed evaluation set of ``n`` images from ``poses`` (N, 17, 3) mm.

    Returns stacked arrays: ``images`` (n, H, W, 3) uint8, ``joints3d`` (n, 17, 3) float32 mm,
    ``joints2d`` (n, 17, 2), ``visible`` (n, 17) bool, ``box`` (n, 4), ``K`` (n, 3, 3) and
    ``pose_index`` (n,) int64 (the row of ``poses`` each image shows). Same seed -> same bytes.
    """
    p = _check_array(poses, (17, 3), "fixed_test_set poses")
    if n <= 0:
        raise ValueError(f"fixed_test_set: n must be positive, got {n}")
    st = get_style(style)
    bank = bank_for_style(st, backgrounds)
    index = np.random.default_rng([seed, 0x7E57]).choice(len(p), size=n, replace=n > len(p))
    items = [render_sample(p[k], st, np.random.default_rng([seed, i]), size, bank) for i, k in enumerate(index)]
    return _stack(items, index)


def fixed_test_clips(
    windows: np.ndarray, style: str | Style, n: int, seed: int, size: int = 128, backgrounds: BackgroundsArg = None
) -> dict[str, np.ndarray]:
    """Render ``n`` fixed evaluation clips from ``windows`` (M, T, 17, 3) mm: the arrays of
    :func:`fixed_test_set` with a leading (n, T) (``pose_index`` (n,) is the window row)."""
    w = np.asarray(windows, dtype=np.float32)
    if w.ndim != 4 or w.shape[2:] != (17, 3) or w.shape[0] == 0:
        raise ValueError(f"fixed_test_clips windows: expected (M, T, 17, 3), got {w.shape}")
    if n <= 0:
        raise ValueError(f"fixed_test_clips: n must be positive, got {n}")
    st = get_style(style)
    bank = bank_for_style(st, backgrounds)
    index = np.random.default_rng([seed, 0xC11B]).choice(len(w), size=n, replace=n > len(w))
    items = [render_clip(w[k], st, np.random.default_rng([seed, i]), size, bank) for i, k in enumerate(index)]
    return _stack(items, index)
