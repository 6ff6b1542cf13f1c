"""Real target data for adaptation: rows of real people (photos and video frames) framed for G, with
their 2D keypoints and pseudo-3D fits. Built by ``python -m training.real_target``; consumed by the
adaptation stage (``nlrd.stages.adapt``) and its evaluation.

Units: ``keypoints`` are in crop units, (px - crop centre) / (crop side / 2), x right, y down; the crop
is the render-matched framing of :mod:`nlrd.vision.framing`, so G's weak-perspective projection
(:func:`project_crop`) lives in the same units.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from nlrd.data.crop import crop_square
from nlrd.data.images import load_image
from nlrd.data.video import iter_video
from nlrd.vision.framing import RENDER_MARGIN, RENDER_PAD_MM, clip_frames, keypoint_frames
from nlrd.vision.keypoints import detect_keypoints, detect_keypoints_clip

if TYPE_CHECKING:  # the fit and the image model come in as arguments (vision does not depend on them)
    from nlrd.fit import PoseFitter
    from nlrd.models.image_encoder import ImageEncoder


def project_crop(joints: torch.Tensor) -> torch.Tensor:
    """Root-relative joints (..., J, 3) mm -> (..., J, 2) crop units, as the renders frame a person (and
    as ``nlrd.inference.project_to_image`` places G's joints): xy / (margin * (max |xy| + pad))."""
    ext = joints[..., :2].abs().amax(dim=(-1, -2), keepdim=True) + RENDER_PAD_MM
    return joints[..., :2] / (RENDER_MARGIN * ext)


@dataclass
class RealTarget:
    """N rows of real target data (see the module docstring); arrays are numpy, float32 unless stated."""

    frames: np.ndarray  # (N, S, S, 3) uint8
    keypoints: np.ndarray  # (N, J, 2) crop units
    conf: np.ndarray  # (N, J) in [0, 1]
    pck_radius: np.ndarray  # (N,) crop units
    fit3d: np.ndarray  # (N, J, 3) mm
    keypoints_px: np.ndarray  # (N, J, 2) px in the source image
    image_hw: np.ndarray  # (N, 2) px
    world3d: np.ndarray  # (N, J, 3) mm, MediaPipe's world landmarks
    clip_id: np.ndarray  # (N,) int64: -1 for photos, else the clip's index
    clip_frame: np.ndarray  # (N,) int64: frame index within the clip (0 for photos)
    val: np.ndarray  # (N,) bool: validation rows (photos of a few tuning exercises)
    names: np.ndarray  # (N,) str: photo file name, or "<video>:<frame>"
    # The latent space of the prior whose fits ``fit3d`` holds (PosePrior.latent_space; "" when unknown): fits
    # through another prior are not this prior's pseudo-labels (an upright-only prior stands lying people up).
    fit_prior: str = ""

    def __len__(self) -> int:
        return len(self.frames)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **{f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def load(cls, path: str | Path) -> RealTarget:
        with np.load(path, allow_pickle=False) as z:
            missing = [f.name for f in fields(cls) if f.name not in z.files and f.name != "fit_prior"]
            if missing:
                raise ValueError(f"{str(path)!r} is not a real-target file (missing {missing}); "
                                 "rebuild it with python -m training.real_target")
            arrays = {f.name: z[f.name] for f in fields(cls) if f.name in z.files}
        if "fit_prior" in arrays:
            arrays["fit_prior"] = str(arrays["fit_prior"])
        return cls(**arrays)

    def clips(self) -> list[np.ndarray]:
        """The video clips' frames in order: a list of (T, S, S, 3) uint8, one per clip."""
        out = []
        for c in np.unique(self.clip_id[self.clip_id >= 0]):
            rows = np.flatnonzero(self.clip_id == c)
            out.append(self.frames[rows[np.argsort(self.clip_frame[rows])]])
        return out


VAL_MODULUS = 10  # a photo group (exercise) whose sha1 % VAL_MODULUS == 1 validates; never a held-out one (% 5 == 0)
PCK_FRACTION = 0.2


def _is_val(name: str) -> bool:
    group = name.split("__")[0]
    return int(hashlib.sha1(group.encode("utf-8")).hexdigest(), 16) % VAL_MODULUS == 1


def _rows(kps: list, images_hw: list[tuple[int, int]], crops: list[np.ndarray], frames: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of found people: ``kps`` their keypoints, ``crops`` (S, S, 3) each, ``frames`` (N, 3) cx, cy, side px."""
    kp_px = np.stack([k.joints2d for k in kps]).astype(np.float32)
    half = frames[:, 2:3, None] / 2.0
    boxes = np.stack([k.box for k in kps])
    longest = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return {
        "frames": np.stack(crops),
        "keypoints": ((kp_px - frames[:, None, :2]) / half).astype(np.float32),
        "conf": np.stack([k.conf for k in kps]).astype(np.float32),
        "pck_radius": (PCK_FRACTION * longest / half[:, 0, 0]).astype(np.float32),
        "keypoints_px": kp_px,
        "image_hw": np.asarray(images_hw, np.float32),
        "world3d": np.stack([k.world3d for k in kps]).astype(np.float32),
    }


def collect(photos: list[Path], videos: list[Path], size: int, exclude: set[Path], max_side: int = 960,
            log: bool = True, max_frames: int | None = None) -> dict[str, np.ndarray]:  # fmt: skip
    """MediaPipe over the photos and videos (each video's first ``max_frames`` frames) -> the arrays of
    :class:`RealTarget` except ``fit3d``. Unreadable photos are skipped; ValueError when nobody is found."""
    parts: list[dict[str, np.ndarray]] = []
    ex = {p.resolve() for p in exclude}
    kept = [p for p in photos if p.resolve() not in ex]
    kps, hws, crops, sq, names = [], [], [], [], []
    for i, path in enumerate(kept):
        try:
            img = load_image(path)
        except ValueError:
            continue
        kp = detect_keypoints(img)
        if kp is not None:
            frame = keypoint_frames(kp.joints2d, kp.world3d)
            kps.append(kp)
            hws.append(img.shape[:2])
            crops.append(crop_square(img, *frame, size)[0])
            sq.append(frame)
            names.append(path.name)
        if log and (i + 1) % 200 == 0:
            print(f"  photos {i + 1}/{len(kept)}: {len(kps)} people", flush=True)
    if kps:
        rows = _rows(kps, hws, crops, np.stack(sq))
        rows.update(clip_id=np.full(len(kps), -1), clip_frame=np.zeros(len(kps), np.int64), names=np.array(names),
                    val=np.array([_is_val(n) for n in names]))  # fmt: skip
        parts.append(rows)
    for c, path in enumerate(videos):
        frames = list(itertools.islice(iter_video(path, max_side=max_side), max_frames))
        track = detect_keypoints_clip(frames)
        found = np.array([k is not None for k in track])
        if found.sum() < 2:
            continue
        t_found = np.flatnonzero(found)
        kp2d = np.stack([track[t].joints2d if found[t] else np.zeros((17, 2), np.float32) for t in range(len(track))])
        world = np.stack([track[t].world3d if found[t] else np.zeros((17, 3), np.float32) for t in range(len(track))])
        steady = clip_frames(kp2d, world, found)[t_found]
        clip_crops = [crop_square(frames[t], *f, size)[0] for t, f in zip(t_found, steady, strict=True)]
        rows = _rows([track[t] for t in t_found], [frames[t].shape[:2] for t in t_found], clip_crops, steady)
        rows.update(clip_id=np.full(len(t_found), c), clip_frame=t_found.astype(np.int64),
                    names=np.array([f"{path.name}:{t}" for t in t_found]), val=np.zeros(len(t_found), bool))  # fmt: skip
        parts.append(rows)
        if log:
            print(f"  {path.name}: a person in {len(t_found)}/{len(frames)} frames", flush=True)
    if not parts:
        raise ValueError("no person found in the given photos and videos")
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def fit_targets(fitter: PoseFitter, g: ImageEncoder, arrays: dict[str, np.ndarray] | RealTarget,
                device: torch.device, chunk: int = 256) -> np.ndarray:  # fmt: skip
    """The prior fitted to every row's keypoints and world landmarks, started from G's latent of the row's
    crop -> (N, J, 3) mm (canonical bone lengths; video clips fitted with the smoothness term)."""
    get = (lambda k: getattr(arrays, k)) if isinstance(arrays, RealTarget) else arrays.__getitem__
    frames, kp, conf, hw, world, clip = (get(k) for k in ("frames", "keypoints_px", "conf", "image_hw", "world3d", "clip_id"))
    from nlrd.models.image_encoder import encode_images

    z = encode_images(g, frames, device).cpu().numpy().clip(-1.0, 1.0)
    out = np.zeros(kp.shape[:2] + (3,), np.float32)
    photos = np.flatnonzero(clip < 0)
    for s in range(0, len(photos), chunk):
        r = photos[s : s + chunk]
        out[r] = fitter.fit(kp[r], conf[r], hw[r], world3d=world[r], z_start=z[r]).joints3d_canonical
    for c in np.unique(clip[clip >= 0]):
        r = np.flatnonzero(clip == c)
        out[r] = fitter.fit(kp[r], conf[r], hw[r], world3d=world[r], z_start=z[r], temporal=True).joints3d_canonical
    return out
