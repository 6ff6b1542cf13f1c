"""PosePredictor: images and clips in, 3D poses out (numpy in, numpy out).

    from nlrd import PosePredictor
    predictor = PosePredictor.from_pretrained()           # shipped weights, loaded once
    result = predictor.predict_image(rgb)                 # rgb: uint8 (H, W, 3)
    result.joints3d                                       # (1, 17, 3) mm, root-relative, camera frame
    clip = predictor.predict_clip("squat.mp4", refine=True)

Pipeline: detect the person (or take the user's box), crop a square around it like the training
renders, run the image-to-latent network G, decode with the pose prior's Dp and forward
kinematics. Options: flip test-time averaging (the pose-flip relation: average y with the mirror
of the prediction for the mirrored crop) and, for clips, motion-prior refinement (30-frame windows
through Em/Dm, overlapping windows blended).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.checkpoint import load_checkpoint, load_into
from nlrd.data.crop import crop_square, square_box
from nlrd.data.detection import PersonTrack, detect_person, track_person, validate_box
from nlrd.data.images import as_rgb_uint8
from nlrd.kinematics import relength
from nlrd.models.image_encoder import ImageEncoder, ImageEncoderConfig, build_image_encoder, encode_images
from nlrd.models.relation_net import RelationNet, RelationNetConfig
from nlrd.precision import pick_device
from nlrd.priors import CHECKPOINT_DIR, MOTION_CHECKPOINT, POSE_CHECKPOINT, MotionPrior, PosePrior, config_from_dict
from nlrd.transforms import flip_pose

IMAGE_CHECKPOINTS = ("adapted_g.safetensors", "source_gs.safetensors")  # preferred first
CROP_MARGIN = 1.4  # crop side / longest person-box side: the renders measure 1.41 (10-90%: 1.24-1.47)
RENDER_MARGIN, RENDER_PAD_MM = 1.12, 130.0  # the renderer's crop fit, used to place 2D projections


@dataclass
class PoseResult:
    """Predictions for T frames (T = 1 for an image).

    Attributes:
        joints3d: (T, 17, 3) float32 mm, root-relative, camera frame (x right, y down, z forward).
        z: (T, 32) float32 pose latents.
        boxes: (T, 4) float32 person boxes (x0, y0, x1, y1) in input pixels.
        scores: (T,) float32 detection confidence in [0, 1] (1 for a user box, 0 for a fallback).
        valid: (T,) bool: a person was found (or given) in the frame.
        fps: frames per second of the input (30 for an image).
        joints2d: (T, 17, 2) float32 the pose drawn back into the input pixels (weak perspective,
            with the renders' framing); for overlays.
        other_boxes: boxes of other people in an image (K, 4).
    """

    joints3d: np.ndarray
    z: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    valid: np.ndarray
    fps: float
    joints2d: np.ndarray
    other_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))

    @property
    def num_frames(self) -> int:
        return int(self.joints3d.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (lists, NaN as None) in the schema of ``nlrd.export``."""
        from nlrd.export import to_json_dict

        return to_json_dict(self.joints3d, fps=self.fps, boxes=self.boxes, scores=self.scores, valid=self.valid, z=self.z)


def project_to_image(joints3d: np.ndarray, cx: np.ndarray, cy: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Weak-perspective projection of root-relative joints (T, J, 3) into crops centred at (cx, cy) of
    size ``side`` px, using the renders' framing: the crop's half-side spans margin * (extent + pad)."""
    ext = np.max(np.abs(joints3d[..., :2]), axis=(-1, -2)) + RENDER_PAD_MM  # (T,)
    scale = (np.asarray(side) / 2.0) / (RENDER_MARGIN * ext)
    xy = joints3d[..., :2] * scale[:, None, None]
    return (xy + np.stack([cx, cy], axis=-1)[:, None, :]).astype(np.float32)


class PosePredictor:
    """Image-to-pose model with its priors, loaded once; thread-safe for inference (no state)."""

    def __init__(self, encoder: ImageEncoder, pose: PosePrior, motion: MotionPrior | None, device: torch.device,
                 meta: dict[str, Any] | None = None, relations: dict[str, RelationNet] | None = None) -> None:  # fmt: skip
        self.encoder = encoder.to(device).eval().to(memory_format=torch.channels_last)
        self.relations: dict[str, RelationNet] = {k: v.to(device).eval() for k, v in (relations or {}).items()}
        self.pose, self.motion, self.device = pose, motion, device
        self.meta = meta or {}
        self.image_size: int = encoder.config.image_size
        self.skeleton = pose.skeleton

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "auto") -> PosePredictor:
        """Load the shipped weights (or those in folder ``path``): the adapted G when present, else Gs."""
        dev = pick_device(device)
        folder = Path(path) if path is not None else CHECKPOINT_DIR
        if not folder.is_dir():
            raise ValueError(f"checkpoint folder {str(folder)!r} does not exist")
        image_ck = next((folder / n for n in IMAGE_CHECKPOINTS if (folder / n).exists()), None)
        if image_ck is None:
            raise ValueError(f"no image model in {str(folder)!r}; expected one of {IMAGE_CHECKPOINTS}")
        pose = PosePrior.from_pretrained(folder / POSE_CHECKPOINT, device=dev)
        motion_ck = folder / MOTION_CHECKPOINT
        motion = MotionPrior.from_pretrained(motion_ck, pose=pose, device=dev) if motion_ck.exists() else None
        encoder = load_image_encoder(image_ck)
        relations = load_relation_nets(folder / "relations")
        return cls(encoder, pose, motion, dev, meta={"image_checkpoint": image_ck.name}, relations=relations)

    @torch.no_grad()
    def relate(self, name: str, latent: np.ndarray) -> np.ndarray:
        """The relation network T_r applied to latents (..., D): z for pose relations, v for motion ones."""
        if name not in self.relations:
            raise ValueError(f"no relation network for {name!r}; loaded: {sorted(self.relations)}")
        t = torch.as_tensor(np.asarray(latent, dtype=np.float32), device=self.device)
        return self.relations[name](t).cpu().numpy()

    # -- latent access (delegates to the priors, so the app needs only this object) -------------
    def encode(self, joints3d: np.ndarray) -> np.ndarray:
        return self.pose.encode(joints3d)

    def decode(self, z: np.ndarray) -> np.ndarray:
        return self.pose.decode(z)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        return self.pose.sample(n, seed)

    # -- core -----------------------------------------------------------------------------------
    @torch.no_grad()
    def _latents(self, crops: np.ndarray, batch: int = 64) -> np.ndarray:
        """uint8 crops (N, S, S, 3) -> z (N, 32)."""
        return encode_images(self.encoder, crops, self.device, batch=batch).cpu().numpy()

    def _joints_from_crops(self, crops: np.ndarray, flip_test: bool) -> tuple[np.ndarray, np.ndarray]:
        z = self._latents(crops)
        joints = self.pose.decode(z)
        if flip_test:
            # pose-flip relation: the mirrored crop shows the mirrored pose; mirror its prediction back.
            jf = flip_pose(self.pose.decode(self._latents(np.ascontiguousarray(crops[:, :, ::-1]))), self.skeleton)
            joints = relength(0.5 * (joints + jf), self.skeleton).astype(np.float32)
            z = self.pose.encode(joints)
        return joints.astype(np.float32), z.astype(np.float32)

    def _crop(self, frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        cx, cy, side = square_box(box, CROP_MARGIN)
        crop, _ = crop_square(frame, float(cx), float(cy), float(side), self.image_size)
        return crop, float(cx), float(cy), float(side)

    def predict_image(self, rgb: np.ndarray, box: Iterable[float] | None = None, flip_test: bool = False) -> PoseResult:
        """One image (H, W, 3) uint8 RGB (grey, RGBA, 16-bit are converted) -> PoseResult with T = 1."""
        img = as_rgb_uint8(rgb)
        # Huge inputs are downscaled on conversion; work in those pixels, report in the input's.
        in_shape = np.shape(rgb)
        scale = img.shape[1] / in_shape[1] if len(in_shape) >= 2 and in_shape[1] else 1.0
        user_box = None if box is None else np.asarray(list(box), dtype=np.float64) * scale
        det = detect_person(img, user_box)
        crop, cx, cy, side = self._crop(img, det.box)
        joints, z = self._joints_from_crops(crop[None], flip_test)
        others = [d.box for d in det.detections if not np.allclose(d.box, det.box)] if det.source == "hog" else []
        return PoseResult(
            joints3d=joints, z=z, boxes=(np.asarray(det.box, np.float32) / scale)[None], scores=np.array([det.score], np.float32),
            valid=np.array([not det.fallback]), fps=30.0,
            joints2d=project_to_image(joints, np.array([cx]), np.array([cy]), np.array([side])) / scale,
            other_boxes=(np.asarray(others, np.float32) / scale).reshape(-1, 4),
        )  # fmt: skip

    def predict_clip(
        self,
        frames: np.ndarray | str | os.PathLike[str] | Iterable[np.ndarray],
        fps: float | None = None,
        box: Iterable[float] | None = None,
        flip_test: bool = False,
        refine: bool = False,
        max_side: int = 1280,
        progress: Callable[[int, int | None], None] | None = None,
    ) -> PoseResult:
        """A clip -> PoseResult with one row per frame.

        Args:
            frames: (T, H, W, 3) uint8 array, a list of frames of one size, or a video path (streamed).
            fps: frame rate (read from the file for a path; 30 if not given for arrays).
            box: one fixed (x0, y0, x1, y1) box for every frame instead of tracking.
            flip_test: average with the mirrored prediction.
            refine: smooth through the motion prior (30-frame windows, blended overlaps).
            max_side: videos are downscaled to this long side while decoding (bounded memory).
            progress: called as progress(done_frames, total_or_None).
        """
        from nlrd.data.video import iter_video, probe_video, stack_frames

        if isinstance(frames, str | os.PathLike):
            info = probe_video(frames)
            fps = fps or info.fps
            source: Iterable[np.ndarray] = iter_video(frames, max_side=max_side)
            total: int | None = info.frames
        elif isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"frames: expected (T, H, W, 3), got {frames.shape}")
            source, total = list(frames), frames.shape[0]
        else:
            source = stack_frames(list(frames))
            total = len(source)
        fps = float(fps or 30.0)
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps!r}")
        # Two passes over a stream would decode twice; keep only the small crops, not the frames.
        crops: list[np.ndarray] = []
        geometry: list[tuple[float, float, float]] = []
        frames_kept: list[np.ndarray] = []
        if box is not None:
            user_box = np.asarray(list(box), dtype=np.float64)
            clipped: list[np.ndarray] = []
            n = 0
            for n, frame in enumerate(source, start=1):
                rgb = as_rgb_uint8(frame, name=f"frame {n - 1}")
                b = validate_box(user_box, rgb.shape[1], rgb.shape[0])
                clipped.append(b)
                c, cx, cy, side = self._crop(rgb, b)
                crops.append(c)
                geometry.append((cx, cy, side))
                if progress:
                    progress(n, total)
            if n == 0:
                raise ValueError("the clip has no frames")
            boxes = np.stack(clipped)  # the user's box clipped to each frame
            scores, valid = np.ones(n, np.float32), np.ones(n, bool)
        else:
            # Tracking needs the whole clip (it interpolates between detections); frames are kept at
            # the decode size, bounded by max_side and the video reader's caps.
            for frame in source:
                frames_kept.append(as_rgb_uint8(frame, name=f"frame {len(frames_kept)}"))
                if progress:
                    progress(len(frames_kept), total)
            if not frames_kept:
                raise ValueError("the clip has no frames")
            track: PersonTrack = track_person(frames_kept, fps=fps)
            boxes, scores, valid = track.boxes, track.scores.astype(np.float32), track.found.astype(bool)
            for rgb, b in zip(frames_kept, boxes, strict=True):
                c, cx, cy, side = self._crop(rgb, b)
                crops.append(c)
                geometry.append((cx, cy, side))
        crop_arr = np.stack(crops)
        joints, z = self._joints_from_crops(crop_arr, flip_test)
        if refine:
            if self.motion is None:
                raise ValueError("refine=True needs the motion prior (checkpoints/motion_ae.safetensors)")
            z = refine_latents(z, self.motion)
            joints = self.pose.decode(z).astype(np.float32)
        g = np.asarray(geometry)
        return PoseResult(joints3d=joints, z=z.astype(np.float32), boxes=np.asarray(boxes, np.float32), scores=scores,
                          valid=valid, fps=fps, joints2d=project_to_image(joints, g[:, 0], g[:, 1], g[:, 2]))  # fmt: skip


def load_image_encoder(path: str | os.PathLike[str]) -> ImageEncoder:
    """An ImageEncoder from a source/oracle/adapt checkpoint (strict)."""
    ck = load_checkpoint(path)
    if ck.meta["stage"] not in ("source", "oracle", "adapt"):
        raise ValueError(f"{str(path)!r} holds stage {ck.meta['stage']!r}, not an image model (source, oracle or adapt)")
    enc = build_image_encoder(config_from_dict(ImageEncoderConfig, ck.meta["config"]["model"]))
    load_into(enc, ck, prefix="encoder.")
    return enc.eval()


def load_relation_nets(folder: Path) -> dict[str, RelationNet]:
    """Every relation network ``<name>.safetensors`` in a folder (empty when the folder is absent)."""
    nets: dict[str, RelationNet] = {}
    if not folder.is_dir():
        return nets
    for path in sorted(folder.glob("*.safetensors")):
        ck = load_checkpoint(path)
        if not ck.meta["stage"].startswith("relation:"):
            continue
        net = RelationNet(config_from_dict(RelationNetConfig, ck.meta["config"]["model"]))
        load_into(net, ck, prefix="net.")
        nets[ck.meta["config"]["relation"]] = net.eval()
    return nets


def refine_latents(z: np.ndarray, motion: MotionPrior, stride: int = 10) -> np.ndarray:
    """Pass a latent sequence (T, Dz) through the motion auto-encoder in overlapping 30-frame windows.

    Each window is encoded to v and decoded back; overlapping outputs are blended with triangular
    weights (the middle of a window is the most reliable). Clips shorter than a window are padded by
    repeating their ends.
    """
    t_len, length = z.shape[0], motion.length
    if t_len == 0:
        return z
    pad = max(0, length - t_len)
    zp = np.concatenate([z, np.repeat(z[-1:], pad, 0)]) if pad else z
    n = zp.shape[0]
    starts = list(range(0, n - length + 1, stride))
    if starts[-1] != n - length:
        starts.append(n - length)
    windows = np.stack([zp[s : s + length] for s in starts])
    rec = motion.decode_latents(motion.encode_latents(windows))
    w = 1.0 - np.abs(np.linspace(-1, 1, length)) * 0.9
    acc = np.zeros_like(zp)
    wsum = np.zeros((n, 1), np.float32)
    for s, r in zip(starts, rec, strict=True):
        acc[s : s + length] += r * w[:, None]
        wsum[s : s + length] += w[:, None]
    return (acc / wsum)[:t_len].astype(np.float32)
