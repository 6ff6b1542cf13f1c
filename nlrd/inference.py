"""PosePredictor: images and clips in, 3D poses out (numpy in, numpy out).

    from nlrd import PosePredictor
    predictor = PosePredictor.from_pretrained()           # shipped weights, loaded once
    result = predictor.predict_image(rgb)                 # rgb: uint8 (H, W, 3)
    result.joints3d                                       # (1, 17, 3) mm, root-relative, camera frame
    clip = predictor.predict_clip("squat.mp4", refine=True)

Pipeline: MediaPipe Pose finds the person and its 2D keypoints (:mod:`nlrd.vision`; within the user's
box when given), a square around it is cropped like the training renders, the image-to-latent network G
predicts z, and the pose prior's Dp and forward kinematics decode it; method "fit" (the default) then
fits the prior to the keypoints and 3D cues (:mod:`nlrd.fit`), method "g" keeps G's pose.
Options: flip test-time averaging (the pose-flip relation: average y with the mirror
of the prediction for the mirrored crop) and, for clips, motion-prior refinement (30-frame windows
through Em/Dm, overlapping windows blended).

Speed: a clip is not a loop over :meth:`PosePredictor.predict_image`. Its person is followed by
MediaPipe's tracking mode (the detector runs only when the track is lost), its crops go through G in
chunks of 16, and the fit runs over all frames at once. G and Dp always run on one intra-op thread; a
clip uses more cores by giving whole chunks to worker threads (``num_threads``, default
torch's setting). Coarse-grained work suits a shared machine: a multi-threaded operation joins its
threads after every layer, and when other processes hold the cores each join waits for a
descheduled thread (measured with two threads on two busy cores: a 512 x 512 linear layer on one
row took 8 ms instead of 70 us, G on a chunk of 16 crops 20 ms per crop instead of 2). Every
result carries per-stage wall times in ``PoseResult.timings``.

Memory: a video file is decoded once, as a stream (at most ``max_side`` pixels on the long side);
the decoded frames are kept for cropping only while they fit ``clip_memory_bytes``, otherwise the
file is decoded a second time for the crops. Crops go through G in chunks, so nothing grows with
the clip's length but the per-frame results and the tracker's motion masks (1 bit per pixel at
320 px on the long side, ~10 kB a frame).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.checkpoint import build_checked, load_checkpoint, model_config
from nlrd.data.crop import crop_square, square_box
from nlrd.data.detection import PersonDetection, detect_person, interp_boxes, track_person, validate_box
from nlrd.data.images import as_rgb_uint8
from nlrd.fit import START_CHECKPOINT, FitConfig, PoseFitter, load_start_net
from nlrd.kinematics import relength
from nlrd.models.image_encoder import ImageEncoder, ImageEncoderConfig, build_image_encoder, encode_images
from nlrd.models.relation_net import RelationNet, RelationNetConfig
from nlrd.precision import pick_device
from nlrd.priors import CHECKPOINT_DIR, MOTION_CHECKPOINT, POSE_CHECKPOINT, MotionPrior, PosePrior, config_from_dict
from nlrd.transforms import RELATIONS, flip_pose, get_relation
from nlrd.vision import PersonKeypoints, detect_keypoints, detect_keypoints_clip
from nlrd.vision.framing import RENDER_MARGIN, RENDER_PAD_MM, clip_frames, keypoint_frames

ADAPTED_CHECKPOINT, SOURCE_CHECKPOINT = "adapted_g.safetensors", "source_gs.safetensors"  # adapted G, source-only Gs
REAL_CHECKPOINT = "real_g.safetensors"  # G adapted to real photos and videos (training.adapt --real): what users bring
IMAGE_CHECKPOINTS = (REAL_CHECKPOINT, ADAPTED_CHECKPOINT, SOURCE_CHECKPOINT)  # preferred first
# The real-photo models: a sub-folder of a checkpoint folder holding a pose prior trained on camera views
# (nlrd.views: tilted cameras, lying and kneeling people) and the image model and fit start built on it. The
# paper's chain (upright prior, motion prior, relation networks, adapted G) stays in the folder itself.
PHOTO_FAMILY = "views"


def photo_checkpoint_dir(folder: str | os.PathLike[str] | None = None) -> Path:
    """The folder a predictor for real photos and videos loads: ``<folder>/views`` when it holds a pose prior
    and an image model, else ``folder`` itself (default: the shipped checkpoints)."""
    base = Path(folder) if folder is not None else CHECKPOINT_DIR
    photo = base / PHOTO_FAMILY
    if (photo / POSE_CHECKPOINT).is_file() and any((photo / n).is_file() for n in IMAGE_CHECKPOINTS):
        return photo
    return base


CROP_MARGIN = 1.4  # crop side / longest person-box side: the renders measure 1.41 (10-90%: 1.24-1.47)
METHODS = ("fit", "g")  # PoseResult.method: the prior fitted to the keypoints, or the image network G alone
# Weight of the clip fit's smoothness term: 8 copies of one photo as a clip gave fitted joints 29.5 mm apart
# (mean) at 1, 14.5 at 10, 14.0 at 100 (MediaPipe's tracked keypoints move by a few px between the copies).
CLIP_SMOOTHNESS = 10.0
CLIP_CHUNK = 16  # crops per G forward pass for clips (per crop, 16 ran faster than 8 or 64 on one core)
CLIP_DETECT_EVERY = 5  # clips: HOG on every 5th frame, tracked in between
CLIP_MEMORY_BYTES = 1 << 30  # decoded frames kept for cropping; beyond, the video is decoded twice


@contextlib.contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run torch's intra-op work on ``n`` threads inside the block (restored after)."""
    old = torch.get_num_threads()
    if n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


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
        keypoints2d: (T, 17, 2) float32 px, the real-image keypoint model's 2D joints (MediaPipe Pose
            mapped to the 17 joints; NaN in frames without a person), or None when it did not run.
        keypoint_conf: (T, 17) float32 in [0, 1], their confidences (0 where missing), or None.
        method: which path produced ``joints3d``: "fit" (the pose prior fitted to the keypoints, started
            from G's prediction) or "g" (the image network G alone, the paper's model).
        timings: wall seconds per stage: "detect", "crop", "G", "Dp" for an image; "decode",
            "track" (unless a box was given), "crop", "G" (summed over worker threads), "Dp" and
            "refine" (when asked for) for a clip. The flip test's second pass counts in G and Dp.
    """

    joints3d: np.ndarray
    z: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    valid: np.ndarray
    fps: float
    joints2d: np.ndarray
    other_boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    timings: dict[str, float] = field(default_factory=dict)
    keypoints2d: np.ndarray | None = None
    keypoint_conf: np.ndarray | None = None
    method: str = "g"

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
                 meta: dict[str, Any] | None = None, relations: dict[str, RelationNet] | None = None,
                 num_threads: int | None = None, checkpoint_dir: str | os.PathLike[str] | None = None,
                 fitter: PoseFitter | None = None) -> None:  # fmt: skip
        """``num_threads``: worker threads for a clip's G chunks and detections (None: torch's setting
        at call time); every operation itself runs on one intra-op thread. ``checkpoint_dir``: the
        folder the weights came from (an Adapt session can start from the Gs in it), or None.
        ``fitter``: the pose-prior fit of the "fit" method (None: one without a learned start)."""
        if num_threads is not None and (int(num_threads) != num_threads or num_threads < 1):
            raise ValueError(f"num_threads must be a positive integer or None, got {num_threads!r}")
        self.num_threads = num_threads
        self.encoder = encoder.to(device).eval().to(memory_format=torch.channels_last)
        self.relations: dict[str, RelationNet] = {k: v.to(device).eval() for k, v in (relations or {}).items()}
        self.pose, self.motion, self.device = pose, motion, device
        self.meta = meta or {}
        self.image_size: int = encoder.config.image_size
        self.skeleton = pose.skeleton
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if fitter is not None and fitter.prior is not pose:
            raise ValueError("the fitter must fit the predictor's own pose prior (G's latents start it)")
        self.fitter = fitter if fitter is not None else PoseFitter(pose, config=FitConfig(temporal=CLIP_SMOOTHNESS))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "auto",
                        num_threads: int | None = None,
                        image_checkpoint: str | os.PathLike[str] | None = None) -> PosePredictor:  # fmt: skip
        """Load the shipped weights (or those in folder ``path``): the first image model of
        :data:`IMAGE_CHECKPOINTS` present there, or the file ``image_checkpoint`` (any source, oracle or
        adapt checkpoint built on the folder's pose prior)."""
        dev = pick_device(device)
        folder = Path(path) if path is not None else CHECKPOINT_DIR
        if not folder.is_dir():
            raise ValueError(f"checkpoint folder {str(folder)!r} does not exist")
        image_ck = next((folder / n for n in IMAGE_CHECKPOINTS if (folder / n).exists()), None)
        if image_checkpoint is not None:
            image_ck = Path(image_checkpoint)
            if not image_ck.is_file():
                raise ValueError(f"image model {str(image_ck)!r} does not exist")
        if image_ck is None:
            raise ValueError(f"no image model in {str(folder)!r}; expected one of {IMAGE_CHECKPOINTS}")
        pose = PosePrior.from_pretrained(folder / POSE_CHECKPOINT, device=dev)
        motion_ck = folder / MOTION_CHECKPOINT
        motion = MotionPrior.from_pretrained(motion_ck, pose=pose, device=dev) if motion_ck.exists() else None
        encoder = load_image_encoder(image_ck, pose)
        relations = load_relation_nets(folder / "relations", pose)
        start_ck = folder / START_CHECKPOINT.name
        start_net = load_start_net(start_ck, device=dev) if start_ck.exists() else None
        fitter = PoseFitter(pose, start_net, FitConfig(temporal=CLIP_SMOOTHNESS))
        meta = {"image_checkpoint": image_ck.name}
        return cls(encoder, pose, motion, dev, meta=meta, relations=relations, num_threads=num_threads,
                   checkpoint_dir=folder, fitter=fitter)  # fmt: skip

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
    def _workers(self) -> int:
        """Threads that run G on a clip's chunks (one on a GPU: it batches there)."""
        if self.device.type != "cpu":
            return 1
        return self.num_threads if self.num_threads is not None else torch.get_num_threads()

    def _latents(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (N, S, S, 3) -> z (N, 32) float32, on one intra-op thread (see the module doc)."""
        with torch.inference_mode(), intra_op_threads(1):
            return encode_images(self.encoder, crops, self.device, batch=CLIP_CHUNK).cpu().numpy()

    def _latents_job(self, crops: np.ndarray, flip_test: bool) -> tuple[np.ndarray, np.ndarray | None, float]:
        """A clip chunk through G (runs in a worker thread): z, z of the mirrored crops (or None), seconds."""
        t0 = time.perf_counter()
        z, zf = self._crop_latents(crops, flip_test, {})
        return z, zf, time.perf_counter() - t0

    def _decode(self, z: np.ndarray) -> np.ndarray:
        """z (N, 32) -> root-relative joints (N, 17, 3) float32 mm (Dp and forward kinematics)."""
        with torch.inference_mode(), intra_op_threads(1):
            return np.asarray(self.pose.decode(z), dtype=np.float32)

    def _crop_latents(
        self, crops: np.ndarray, flip_test: bool, timings: dict[str, float]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 crops (N, S, S, 3) -> z (N, 32) and, for flip_test, z of the mirrored crops (else None)."""
        t0 = time.perf_counter()
        z = self._latents(crops)
        zf = self._latents(np.ascontiguousarray(crops[:, :, ::-1])) if flip_test else None
        _add(timings, "G", time.perf_counter() - t0)
        return z, zf

    def _joints(self, z: np.ndarray, z_flipped: np.ndarray | None, timings: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        """Latents (N, 32) -> joints (N, 17, 3) float32 mm and the z that decodes to them.

        With ``z_flipped`` (flip test): the pose-flip relation says the mirrored crop shows the
        mirrored pose, so its prediction is mirrored back, averaged with the direct one, brought
        back to the skeleton's bone lengths and re-encoded.
        """
        t0 = time.perf_counter()
        joints = self._decode(z)
        if z_flipped is not None:
            jf = flip_pose(self._decode(z_flipped), self.skeleton)
            joints = relength(0.5 * (joints + jf), self.skeleton).astype(np.float32)
            with torch.inference_mode(), intra_op_threads(1):
                z = self.pose.encode(joints)
        _add(timings, "Dp", time.perf_counter() - t0)
        return joints.astype(np.float32), np.asarray(z, np.float32)

    def _crop(self, frame: np.ndarray, box: np.ndarray) -> tuple[np.ndarray, float, float, float]:
        cx, cy, side = square_box(box, CROP_MARGIN)
        crop, _ = crop_square(frame, float(cx), float(cy), float(side), self.image_size)
        return crop, float(cx), float(cy), float(side)

    def predict_image(self, rgb: np.ndarray, box: Iterable[float] | None = None, flip_test: bool = False,
                      method: str = "fit") -> PoseResult:  # fmt: skip
        """One image (H, W, 3) uint8 RGB (grey, RGBA, 16-bit are converted) -> PoseResult with T = 1.

        ``method``: "fit" (default for real photos): MediaPipe Pose finds the person and its 2D
        keypoints, G predicts from the crop, and the pose prior is fitted to the keypoints and to the
        3D cues (MediaPipe's world landmarks, G's pose); "g": the image network G alone on the crop
        (the paper's model; the person box still comes from the keypoint model when it finds one).
        Nobody found and no ``box``: ``valid`` is False and the joints are G's guess on the whole image.
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        img = as_rgb_uint8(rgb)
        # Huge inputs are downscaled on conversion; work in those pixels, report in the input's.
        in_shape = np.shape(rgb)
        scale = img.shape[1] / in_shape[1] if len(in_shape) >= 2 and in_shape[1] else 1.0
        user_box = None if box is None else _box_array(box) * scale
        if user_box is not None:
            user_box = validate_box(user_box, img.shape[1], img.shape[0])
        kp = detect_keypoints(img, user_box)
        timings["keypoints"] = time.perf_counter() - t0
        if kp is not None:
            return self._predict_keypoints(img, kp, scale, flip_test, method, timings)
        det = detect_person(img, user_box) if user_box is not None else _no_person(img)
        t1 = time.perf_counter()
        crop, cx, cy, side = self._crop(img, det.box)
        t2 = time.perf_counter()
        timings.update(detect=t1 - t0, crop=t2 - t1)
        joints, z = self._joints(*self._crop_latents(crop[None], flip_test, timings), timings)
        others = [d.box for d in det.detections if not np.allclose(d.box, det.box)] if det.source == "hog" else []
        return PoseResult(
            joints3d=joints, z=z, boxes=(np.asarray(det.box, np.float32) / scale)[None], scores=np.array([det.score], np.float32),
            valid=np.array([not det.fallback]), fps=30.0,
            joints2d=project_to_image(joints, np.array([cx]), np.array([cy]), np.array([side])) / scale,
            other_boxes=(np.asarray(others, np.float32) / scale).reshape(-1, 4), timings=timings,
        )  # fmt: skip

    def _predict_keypoints(self, img: np.ndarray, kp: PersonKeypoints, scale: float, flip_test: bool, method: str,
                           timings: dict[str, float]) -> PoseResult:  # fmt: skip
        """The person the keypoint model found in ``img`` (working pixels) -> PoseResult (input pixels)."""
        t1 = time.perf_counter()
        # G sees the person framed as the renders frame theirs: centred on the root, sized by the joints.
        cx, cy, side = (float(v) for v in keypoint_frames(kp.joints2d, kp.world3d))
        crop, _ = crop_square(img, cx, cy, side, self.image_size)
        timings["crop"] = time.perf_counter() - t1
        z, z_flipped = self._crop_latents(crop[None], flip_test, timings)
        if method == "g" or z_flipped is not None:
            # (the fit decodes a plain G latent itself, as a start and a cue: no separate Dp call then)
            joints, z = self._joints(z, z_flipped, timings)
            joints2d = project_to_image(joints, np.array([cx]), np.array([cy]), np.array([side]))
        if method == "fit":
            t2 = time.perf_counter()
            with torch.inference_mode(False), intra_op_threads(1):
                fit = self.fitter.fit(kp.joints2d[None], kp.conf[None], img.shape[:2], world3d=kp.world3d[None],
                                      z_start=np.clip(z, -1.0, 1.0))  # fmt: skip
            joints, z, joints2d = fit.joints3d.astype(np.float32), fit.z.astype(np.float32), fit.joints2d
            timings["fit"] = time.perf_counter() - t2
        return PoseResult(
            joints3d=joints, z=z, boxes=(np.asarray(kp.box, np.float32) / scale)[None],
            scores=np.array([kp.score], np.float32), valid=np.array([True]), fps=30.0,
            joints2d=(np.asarray(joints2d, np.float32) / scale), timings=timings,
            keypoints2d=(kp.joints2d / scale).astype(np.float32)[None], keypoint_conf=kp.conf.astype(np.float32)[None],
            method=method,
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
        detect_every: int = CLIP_DETECT_EVERY,
        clip_memory_bytes: int = CLIP_MEMORY_BYTES,
        method: str = "fit",
    ) -> PoseResult:
        """A clip -> PoseResult with one row per frame.

        Args:
            frames: (T, H, W, 3) uint8 array, a list of frames of one size, or a video path (streamed).
            fps: frame rate (read from the file for a path; 30 if not given for arrays).
            box: one fixed (x0, y0, x1, y1) box for every frame instead of tracking (input pixels).
            flip_test: average with the mirrored prediction.
            refine: smooth through the motion prior (30-frame windows, blended overlaps).
            max_side: videos are downscaled to this long side while decoding (bounded memory);
                boxes and 2D joints are reported in the video's own pixels.
            progress: called as progress(done_frames, total_or_None) while decoding.
            detect_every: unused (kept for callers of earlier versions: MediaPipe's tracking mode runs its
                detector only when it loses the person).
            method: "fit" (the pose prior fitted to every frame's keypoints with a smoothness term over
                time, started from G) or "g" (G alone), as in :meth:`predict_image`.
            clip_memory_bytes: decoded frames kept for cropping; a longer video is decoded twice.
        """
        from nlrd.data.video import iter_video, probe_video, stack_frames

        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if isinstance(detect_every, bool) or not isinstance(detect_every, int) or detect_every < 1:
            raise ValueError(f"detect_every must be a positive integer, got {detect_every!r}")
        if refine and self.motion is None:
            raise ValueError("refine=True needs the motion prior (checkpoints/motion_ae.safetensors)")
        timings: dict[str, float] = {}
        scale = 1.0  # decoded pixels per input pixel
        path: Path | None = None
        total: int | None
        if isinstance(frames, str | os.PathLike):
            path = Path(frames)
            info = probe_video(path)
            fps = info.fps if fps is None else fps
            total = info.frames or None
            if max_side and max(info.width, info.height) > max_side:
                scale = max_side / float(max(info.width, info.height))
            source: Iterable[np.ndarray] = iter_video(path, max_side=max_side)
        elif isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3:
                raise ValueError(f"frames: expected (T, H, W, 3), got {frames.shape}")
            source = stack_frames(frames)
            total = len(source)
        elif isinstance(frames, Iterable):
            source = stack_frames(list(frames))  # also checks that all frames have one size
            total = len(source)
        else:
            raise ValueError(
                f"frames: expected a video path, a (T, H, W, 3) array or a list of frames, got {type(frames).__name__}"
            )
        fps = 30.0 if fps is None else float(fps)
        if not (np.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps!r}")
        user_box = None if box is None else _box_array(box) * scale

        # Pass 1: decode (streamed), track, and keep the frames while they fit the budget.
        kept: list[np.ndarray] | None = [] if path is not None else None
        size: list[tuple[int, int]] = []

        def stream() -> Iterator[np.ndarray]:
            nonlocal kept
            used = 0
            # the decoder and stack_frames give uint8 (H, W, 3) RGB already
            for n, rgb in enumerate(_timed(source, timings, "decode"), start=1):
                if not size:
                    size.append((rgb.shape[1], rgb.shape[0]))
                elif size[0] != (rgb.shape[1], rgb.shape[0]):
                    raise ValueError(f"frame {n - 1} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 is {size[0][0]}x{size[0][1]}")
                if kept is not None:
                    used += rgb.nbytes
                    if used > clip_memory_bytes:
                        kept = None  # too long to hold: decode again for the crops
                    else:
                        kept.append(rgb)
                if progress:
                    progress(n, total)
                yield rgb

        t0 = time.perf_counter()
        # MediaPipe Pose in its tracking mode follows the person (within the user's box when given).
        kps = detect_keypoints_clip(stream(), box=user_box)
        n_frames = len(kps)
        if n_frames == 0:
            raise ValueError("the clip has no frames")
        timings["keypoints"] = time.perf_counter() - t0 - timings["decode"]
        w, h = size[0]
        found = np.array([k is not None for k in kps])
        kp2d = np.full((n_frames, self.skeleton.num_joints, 2), np.nan, np.float32)
        kpconf = np.zeros((n_frames, self.skeleton.num_joints), np.float32)
        world = np.zeros((n_frames, self.skeleton.num_joints, 3), np.float32)
        scores = np.zeros(n_frames, np.float32)
        for t_idx, k in enumerate(kps):
            if k is not None:
                kp2d[t_idx], kpconf[t_idx], world[t_idx], scores[t_idx] = k.joints2d, k.conf, k.world3d, k.score
        if user_box is not None:
            boxes = np.repeat(validate_box(user_box, w, h)[None], n_frames, 0)  # the user's box clipped to the frame
            scores, valid = np.ones(n_frames, np.float32), np.ones(n_frames, bool)
        elif found.any():
            known = np.flatnonzero(found)
            boxes = interp_boxes(np.arange(n_frames), known, np.stack([kps[i].box for i in known]).astype(np.float64))
            valid = found.copy()
        else:
            boxes = np.repeat(np.array([[0.0, 0.0, w, h]]), n_frames, 0)  # nobody: whole frames, flagged invalid
            valid = np.zeros(n_frames, bool)
        del kps

        # Pass 2: crops in chunks through G (from the kept frames, the array, or a second decode).
        if path is None:
            frames_again: Iterable[np.ndarray] = source
        elif kept is not None:
            frames_again = kept
        else:
            frames_again = _timed(iter_video(path, max_side=max_side), timings, "decode")
        sq = np.stack(square_box(np.asarray(boxes, np.float64), CROP_MARGIN), axis=1)  # (T, 3) cx, cy, side
        if found.any():  # render-matched framing from the keypoints, steadied over time
            sq = clip_frames(kp2d, world, found)
        z = np.empty((n_frames, self.pose.latent_dim), np.float32)
        zf = np.empty_like(z) if flip_test else None
        timings.setdefault("crop", 0.0)
        workers = self._workers()
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nlrd-g") if workers > 1 else None
        pending: deque[tuple[int, Future[tuple[np.ndarray, np.ndarray | None, float]]]] = deque()

        def collect(start: int, result: tuple[np.ndarray, np.ndarray | None, float]) -> None:
            zc, zfc, seconds = result
            z[start : start + len(zc)] = zc
            if zf is not None and zfc is not None:
                zf[start : start + len(zc)] = zfc
            _add(timings, "G", seconds)  # summed over the workers

        try:
            chunk: list[np.ndarray] = []
            start = 0
            for t_idx, rgb in enumerate(frames_again):
                if t_idx >= n_frames:
                    break
                tc = time.perf_counter()
                chunk.append(crop_square(rgb, *sq[t_idx], self.image_size)[0])
                timings["crop"] += time.perf_counter() - tc
                if len(chunk) == CLIP_CHUNK or t_idx == n_frames - 1:
                    crops = np.stack(chunk)
                    if pool is None:
                        collect(start, self._latents_job(crops, flip_test))
                    else:
                        pending.append((start, pool.submit(self._latents_job, crops, flip_test)))
                        while len(pending) > 2 * workers:  # bounded: a few chunks of crops in flight
                            collect(*_resolved(pending.popleft()))
                    start += len(chunk)
                    chunk = []
            while pending:
                collect(*_resolved(pending.popleft()))
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if start != n_frames:
            raise ValueError(f"{path}: the second decoding pass gave {start} frames, the first {n_frames}")
        joints, z = self._joints(z, zf, timings)  # Dp once for the whole clip (it is cheap per row)
        if refine and self.motion is not None:  # (a missing motion prior was refused on entry)
            t = time.perf_counter()
            z = refine_latents(z, self.motion)
            joints = self._decode(z)
            timings["refine"] = time.perf_counter() - t
        joints2d = project_to_image(joints, sq[:, 0], sq[:, 1], sq[:, 2])
        if method == "fit" and found.any():
            # The prior fitted to every frame's keypoints at once, smooth over time, started from G.
            t = time.perf_counter()
            rows = np.flatnonzero(found & (kpconf > 0).sum(1).astype(bool))
            # The decoder's linearisation runs on (D + 1) rows a frame: large enough layers for all the
            # worker threads (the squat clip's fit: 4.5 s on one thread, 2.6 on two).
            with torch.inference_mode(False), intra_op_threads(self._workers() if len(rows) >= CLIP_CHUNK else 1):
                fit = self.fitter.fit(kp2d[rows], kpconf[rows], (size[0][1], size[0][0]), world3d=world[rows],
                                      z_start=np.clip(z[rows], -1.0, 1.0), temporal=True)  # fmt: skip
            joints, z, joints2d = joints.copy(), z.copy(), joints2d.copy()
            joints[rows], z[rows], joints2d[rows] = fit.joints3d, fit.z, fit.joints2d
            timings["fit"] = time.perf_counter() - t
        return PoseResult(joints3d=joints, z=z.astype(np.float32), boxes=(np.asarray(boxes) / scale).astype(np.float32),
                          scores=scores, valid=valid, fps=fps, joints2d=(joints2d / scale).astype(np.float32),
                          timings=timings, keypoints2d=kp2d / scale, keypoint_conf=kpconf, method=method)  # fmt: skip


def _add(timings: dict[str, float], key: str, seconds: float) -> None:
    timings[key] = timings.get(key, 0.0) + seconds


def _resolved(item: tuple[int, Future[Any]]) -> tuple[int, Any]:
    """(start, future) -> (start, the future's result)."""
    return item[0], item[1].result()


def _timed(frames: Iterable[np.ndarray], timings: dict[str, float], key: str) -> Iterator[np.ndarray]:
    """Yield from ``frames``, adding the time spent producing them to ``timings[key]``."""
    it = iter(frames)
    while True:
        t = time.perf_counter()
        try:
            frame = next(it)
        except StopIteration:
            _add(timings, key, time.perf_counter() - t)
            return
        _add(timings, key, time.perf_counter() - t)
        yield frame


def _box_array(box: Iterable[float]) -> np.ndarray:
    """A user box as (4,) float64 (validated later against the frame size)."""
    try:
        return np.asarray(list(box), dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {box!r}") from None


def load_image_encoder(path: str | os.PathLike[str], pose: PosePrior | None = None) -> ImageEncoder:
    """An ImageEncoder from a source/oracle/adapt checkpoint (strict); with ``pose``, refused unless it
    was trained on that prior's latent space."""
    ck = load_checkpoint(path)
    if ck.meta["stage"] not in ("source", "oracle", "adapt"):
        raise ValueError(f"{str(path)!r} holds stage {ck.meta['stage']!r}, not an image model (source, oracle or adapt)")
    if pose is not None:
        pose.check_built_on(ck.meta, f"image model {str(path)!r}")
    cfg = config_from_dict(ImageEncoderConfig, model_config(ck))
    return build_checked(ck, "encoder.", lambda: build_image_encoder(cfg)).eval()


def relation_file_name(relation: str) -> str:
    """The file a relation network is kept in: ``<relation>.safetensors`` (what training.train_relations writes)."""
    return f"{relation}.safetensors"


def load_relation_net(path: str | os.PathLike[str], pose: PosePrior | None = None) -> tuple[str, RelationNet] | None:
    """(relation name, network in eval mode) from a relation checkpoint; None for another stage's file.
    With ``pose``, refused unless it was trained on that prior's latent space.

    The relation a network learned is named in its metadata (``config.relation``); that name must be a
    known relation, agree with the stage (``relation:<name>``) and with the file name
    (:func:`relation_file_name`): a folder of networks is looked up by file name, and one file must not
    silently stand in for another relation's network.
    """
    ck = load_checkpoint(path)
    stage = str(ck.meta.get("stage", ""))
    if not stage.startswith("relation:"):
        return None
    name = ck.meta["config"].get("relation")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{str(path)!r}: relation network metadata names no relation (config.relation)")
    if name not in RELATIONS:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise ValueError(f"{str(path)!r}: metadata names relation {shown!r}, which is not a known relation")
    rel = get_relation(name)
    if stage != f"relation:{rel.name}":
        raise ValueError(f"{str(path)!r}: metadata says relation {rel.name!r} but stage {stage!r}")
    if Path(path).name != relation_file_name(rel.name):
        raise ValueError(f"{str(path)!r} holds the network of relation {rel.name!r}; it must be named "
                         f"{relation_file_name(rel.name)!r}")  # fmt: skip
    if pose is not None:
        pose.check_built_on(ck.meta, f"relation network {str(path)!r}")
    cfg = config_from_dict(RelationNetConfig, model_config(ck))
    if pose is not None and rel.order == "pose" and cfg.latent_dim != pose.latent_dim:
        raise ValueError(f"{str(path)!r}: a pose relation network on {cfg.latent_dim}-d latents, but the pose prior's "
                         f"are {pose.latent_dim}-d")  # fmt: skip
    return rel.name, build_checked(ck, "net.", lambda: RelationNet(cfg)).eval()


def load_relation_nets(folder: Path, pose: PosePrior | None = None) -> dict[str, RelationNet]:
    """Every relation network ``<name>.safetensors`` in a folder (empty when the folder is absent)."""
    if not folder.is_dir():
        return {}
    loaded = (load_relation_net(path, pose) for path in sorted(folder.glob("*.safetensors")))
    return dict(item for item in loaded if item is not None)


def _no_person(img: np.ndarray) -> PersonDetection:
    """The answer when the keypoint model finds nobody: the whole image, flagged as a fallback."""
    h, w = img.shape[:2]
    return PersonDetection(box=np.array([0.0, 0.0, w, h], np.float64), score=0.0, fallback=True, source="fallback")


class NoPersonError(ValueError):
    """The detector found nobody in a video (a ValueError, so callers that refuse bad input catch it)."""


def person_crops(path: str | os.PathLike[str], size: int, *, max_side: int = 640,
                 max_frames: int | None = None) -> np.ndarray:  # fmt: skip
    """Crops (T, size, size, 3) uint8 of the main person in a video, framed like the predictor's crops.

    The video is decoded at ``max_side`` (its first ``max_frames`` frames), the person tracked with the
    detector, and the frames from the first to the last detection cropped with :data:`CROP_MARGIN`.
    ValueError naming the file when it has no frames; :class:`NoPersonError` when nobody is found.
    """
    from nlrd.data.crop import crop_clip
    from nlrd.data.video import iter_video, probe_video

    name = Path(path).name
    info = probe_video(path)
    frames = list(itertools.islice(iter_video(path, max_side=max_side), max_frames))
    if not frames:
        raise ValueError(f"{name}: the video has no frames")
    track = track_person(frames, fps=info.fps)
    keep = np.flatnonzero(track.found)
    if not len(keep):
        raise NoPersonError(f"{name}: no person found in the video")
    s, e = int(keep[0]), int(keep[-1]) + 1
    crops, _ = crop_clip(np.stack(frames[s:e]), track.boxes[s:e], size, CROP_MARGIN)
    return crops


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
