"""Interactive self-adaptation: the adaptation stage as a step-by-step session for apps and notebooks.

:class:`nlrd.stages.adapt.AdaptStage` holds the training math (which terms, one Adam per term stepped
in alternation, only ``layer2`` trainable); the trainer drives it for the command-line runs. This
module drives the same stage interactively instead:

* **inputs**: unlabelled target clips (:class:`TargetData`), either synthetic target-style clips
  rendered from held-out poses (:func:`builtin_target_data`; they come with labels, so the target
  error can be measured), the user's videos, person-tracked and cropped (:func:`video_target_data`),
  or real photos and videos with MediaPipe's keypoints and the prior's fits (:func:`real_target_data`:
  every fourth frame is held out, and G's 2D agreement with MediaPipe on those is the curve);
* **run**: :meth:`AdaptSession.run` is a generator of :class:`Report` s (per-term losses after every
  step, the target error (MPJPE, mm) on a small fixed labelled set before step 0 and every
  ``eval_every`` steps), cancellable through a :class:`threading.Event`;
* **compare**: the starting G's predictions are kept, so :meth:`AdaptSession.comparison` shows
  before and after on the same frames;
* **save**: :meth:`AdaptSession.save` writes the adapted G as an ``adapt`` checkpoint (loadable with
  :func:`nlrd.inference.load_image_encoder`), refusing the shipped checkpoints folder.

G starts from a copy of the predictor's image model, so the predictor keeps serving unchanged
predictions while a session trains. The recipe (learning rates, frames per step, temperature,
augmentation) comes from :class:`~nlrd.stages.adapt.AdaptStageConfig`; a session only chooses the
terms, the number of steps, optionally the learning rate, and the device.

Example::

    predictor = PosePredictor.from_pretrained(device="cpu")
    data = builtin_target_data(predictor.image_size, target_style(views=predictor.pose.views))
    session = AdaptSession(predictor, data, default_settings(predictor))
    for report in session.run():
        print(report.step, report.latest_losses(), report.errors[-1:])
    session.save("runs/my_adaptation")
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.checkpoint import save_checkpoint
from nlrd.data.images import IMAGE_SUFFIXES
from nlrd.data.paths import REPO_ROOT
from nlrd.data.synthetic import demo_poses, fixed_test_set, get_style, render_clip
from nlrd.data.synthetic.camera import cameras_for_prior
from nlrd.data.synthetic.render import bank_for_style
from nlrd.data.synthetic.styles import Style
from nlrd.data.video import VIDEO_SUFFIXES
from nlrd.inference import ADAPTED_CHECKPOINT, SOURCE_CHECKPOINT, PosePredictor, load_image_encoder
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.models.image_encoder import ImageEncoder
from nlrd.precision import pick_device
from nlrd.priors import CHECKPOINT_DIR, MotionPrior, PosePrior
from nlrd.stages.adapt import (
    CONTRASTIVE_TERMS,
    ENSEMBLE_TERM,
    LABELLED_TERMS,
    OWN_TERMS,
    AdaptStage,
    AdaptStageConfig,
    RelationBank,
    real_agreement,
)
from nlrd.trainer import DistInfo
from nlrd.transforms import RELATIONS, get_relation
from nlrd.vision.target import RealTarget, collect, fit_targets, project_crop

__all__ = [
    "ADAPTED_NAME",
    "AdaptSession",
    "Report",
    "SessionSettings",
    "TargetData",
    "BUILTIN_REAL_PHOTOS",
    "DEMO_MOTIONS",
    "available_terms",
    "builtin_real_photos",
    "builtin_target_data",
    "real_target_data",
    "default_settings",
    "source_checkpoint",
    "start_options",
    "starting_encoder",
    "target_style",
    "video_target_data",
]

ADAPTED_NAME = ADAPTED_CHECKPOINT  # the file a session saves into its run folder (PosePredictor prefers it)
PREPARED_DATA = REPO_ROOT / "data"  # where training.prepare_data writes mocap.npz (its default --out)
DEMO_MOTIONS = "synthetic demo motions (no prepared motion capture found)"  # where built-in clips come from without data
CLIP_FRAMES = 60  # built-in clip length: enough for every relation, the 60-frame slow ones included
BUILTIN_CLIPS = 12  # built-in target clips (windows of adaptation batches are drawn from them)
EVAL_IMAGES = 64  # labelled target renders of the error curve
MAX_VIDEO_FRAMES = 300  # per uploaded video (10 s at 30 fps): the session is interactive
VIDEO_MAX_SIDE = 640  # videos are decoded at this long side before tracking (the crop is 128 px)
# One cheap frame-level relation, so a CPU session stays within about a minute. Pose-flip alone fell in
# more seeds than pose-flip + inplane-10 on the shipped Gs (benchmarks/adapt_session.py; docs/results.md), and
# the contrastive terms alone changed nothing in the ablation, so a default session leaves them out.
CPU_TERMS = ("pose-flip",)
CPU_STEPS = 60
MAX_STEPS = 5000
START_CHOICES = ("auto", "gs", "predictor")  # SessionSettings.start
# Real photos and videos: the labelled extensions (MediaPipe's keypoints, the prior's fits, source renders),
# every stage of G trained with BatchNorm re-estimated (measured on the tuning photos: docs/results.md).
REAL_TERMS = ("keypoints", "fit3d", "source")
REAL_STEPS = 60
BUILTIN_REAL_PHOTOS = 48  # real photos a session takes from the data folder when no examples or uploads are given
REAL_HELD_OUT_EVERY = 4  # every 4th real frame is held out: measured, never trained on
SOURCE_RENDERS = 256  # labelled source renders of held-out poses for the source term
ALL_STAGES = ("stem", "layer1", "layer2", "layer3", "head")


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class TargetData:
    """Unlabelled clips to adapt on, and a small fixed evaluation set.

    Attributes:
        clips: person crops, one (T, S, S, 3) uint8 RGB array per clip (S = G's input size).
        eval_images: (N, S, S, 3) uint8 crops on which before / after are compared.
        eval_joints: (N, J, 3) mm root-relative camera-frame labels of ``eval_images``, or None
            (real videos: no labels, so no target error; only how far the predictions moved).
        description: one line for people (where the clips come from).
    """

    clips: list[np.ndarray]
    eval_images: np.ndarray
    eval_joints: np.ndarray | None
    description: str
    real: RealTarget | None = None  # real rows (keypoints, fits); its val rows are ``eval_images``
    source_set: dict[str, np.ndarray] | None = None  # labelled source renders (images, joints3d) for the source term

    @property
    def labelled(self) -> bool:
        return self.eval_joints is not None

    @property
    def num_frames(self) -> int:
        return int(sum(len(c) for c in self.clips))


def target_style(backgrounds: str | Path | None = None, views: str = "camera") -> Style:
    """The target style with its photo backgrounds (``<data root>/backgrounds`` by default) or, when
    those are missing, the same style over procedural backgrounds: a fresh clone still works. Its cameras
    are narrowed to what a pose prior trained with ``views`` holds (``cameras_for_prior``)."""
    style = get_style("target")
    style = dataclasses.replace(style, camera=cameras_for_prior(style.camera, views))
    try:
        bank_for_style(style, backgrounds)
        return style
    except ValueError:
        return dataclasses.replace(style, background="procedural")


def _held_out_poses(prepared: str | Path | None, clips: int, n_eval: int, seed: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(clips, 60, J, 3) windows and (n_eval, J, 3) poses in mm from the prepared mocap's test split
    (never seen by any training stage), else synthetic demo motions; plus where they came from."""
    rng = np.random.default_rng([seed, 0xADA])
    if prepared is not None:
        from nlrd.data.poses import load_split

        try:
            split = load_split(prepared, "test")
        except ValueError:
            split = None
        if split is not None:
            starts = split.window_starts(CLIP_FRAMES, stride=CLIP_FRAMES // 2)
            if len(starts) >= clips:
                pick = rng.choice(starts, size=clips, replace=False)
                windows = split.joints[pick[:, None] + np.arange(CLIP_FRAMES)]
                poses = split.joints[rng.choice(len(split.joints), size=n_eval, replace=False)]
                return windows.astype(np.float32), poses.astype(np.float32), "held-out test-split motion capture"
    windows = demo_poses.random_windows(clips, rng, length=CLIP_FRAMES)
    poses = demo_poses.random_poses(n_eval, rng)
    return windows, poses, DEMO_MOTIONS


def builtin_target_data(image_size: int, style: Style | str | None = None, *, clips: int = BUILTIN_CLIPS,
                        eval_images: int = EVAL_IMAGES, seed: int = 0,
                        prepared: str | Path | None = PREPARED_DATA) -> TargetData:  # fmt: skip
    """Synthetic target-style clips and a labelled evaluation set, rendered from held-out poses.

    Args:
        image_size: G's input side, px (the renders are person crops of this size).
        style: renderer style; default :func:`target_style`.
        clips: number of 60-frame clips.
        eval_images: labelled renders for the target error.
        seed: fixes poses, people, cameras and backgrounds.
        prepared: folder with the prepared ``mocap.npz``; its test split gives the poses. Without it
            (or with None) synthetic demo motions are used, so no outside data is needed.
    """
    if clips < 1 or eval_images < 1:
        raise ValueError(f"need at least one clip and one evaluation image, got {clips} and {eval_images}")
    st = target_style() if style is None else get_style(style)
    windows, poses, origin = _held_out_poses(prepared, clips, eval_images, seed)
    rng = np.random.default_rng([seed, 0xC11B])
    rendered = [render_clip(w, st, rng, size=image_size).image for w in windows]
    ev = fixed_test_set(poses, st, eval_images, seed=seed + 99, size=image_size)
    background = "photo" if st.background == "photo" else "procedural"
    text = (f"{clips} synthetic target-style clips ({CLIP_FRAMES} frames, {background} backgrounds) rendered from {origin}; "
            f"{eval_images} labelled target renders for the error curve")  # fmt: skip
    return TargetData(rendered, ev["images"], ev["joints3d"].astype(np.float32), text)


def video_target_data(paths: Sequence[str | Path], image_size: int, *, eval_images: int = EVAL_IMAGES,
                      max_frames: int = MAX_VIDEO_FRAMES) -> TargetData:  # fmt: skip
    """The user's videos as unlabelled target clips: the main person tracked and cropped per frame.

    Each video is decoded (first ``max_frames`` frames), the person is tracked with the detector and
    the frames from the first to the last detection are cropped as the predictor crops them. The
    evaluation set is ``eval_images`` frames spread over all clips (no labels).
    """
    from nlrd.inference import person_crops

    if not paths:
        raise ValueError("add at least one video to adapt to")
    clips = [person_crops(path, image_size, max_side=VIDEO_MAX_SIDE, max_frames=max_frames) for path in paths]
    flat = np.concatenate(clips)
    idx = np.unique(np.linspace(0, len(flat) - 1, min(eval_images, len(flat))).round().astype(int))
    text = f"{len(clips)} uploaded video(s), {len(flat)} person-cropped frames (no labels: no target error)"
    return TargetData(clips, flat[idx], None, text)


def builtin_real_photos(data_root: str | Path, offset: int = 0) -> list[Path]:
    """:data:`BUILTIN_REAL_PHOTOS` tuning exercise photos spread over the data folder's list (never a held-out
    one); ``offset`` picks another sample of the same size. ValueError without exercise photos there."""
    from nlrd.vision import tuning_exercise_photos

    photos = tuning_exercise_photos(data_root)
    if not photos:
        raise ValueError(f"no exercise photos in {str(data_root)!r}")
    step = max(1, len(photos) // BUILTIN_REAL_PHOTOS)
    return photos[offset % step :: step][:BUILTIN_REAL_PHOTOS]


def real_target_data(paths: Sequence[str | Path], predictor: PosePredictor, *, max_frames: int = MAX_VIDEO_FRAMES,
                     prepared: str | Path | None = PREPARED_DATA, seed: int = 0) -> TargetData:  # fmt: skip
    """Real photos and videos as a target: MediaPipe's keypoints, G's crops framed from them, the prior fitted
    to them (pseudo-3D, started from the predictor's G), and labelled source renders for the source term.

    Every :data:`REAL_HELD_OUT_EVERY`-th row (photo or video frame) is held out: the session never trains on
    it and measures G's 2D agreement with MediaPipe there (PCK@0.2 of the person box, 12 limb joints).
    ValueError when fewer than 8 frames show a person.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("add photos or videos of people to adapt to")
    photos = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES]
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES]
    if len(photos) + len(videos) < len(paths):
        odd = [p.name for p in paths if p not in photos and p not in videos]
        raise ValueError(f"not a photo or a video: {odd}; expected {IMAGE_SUFFIXES + VIDEO_SUFFIXES}")
    arrays = collect(photos, videos, predictor.image_size, set(), max_side=VIDEO_MAX_SIDE, log=False, max_frames=max_frames)
    n = len(arrays["frames"])
    if n < 8:
        raise ValueError(f"a person was found in {n} frames; a real session needs at least 8")
    arrays["val"] = np.arange(n) % REAL_HELD_OUT_EVERY == 0
    with torch.inference_mode(False):
        arrays["fit3d"] = fit_targets(predictor.fitter, predictor.encoder, arrays, predictor.device)
    real = RealTarget(**arrays)
    _, poses, origin = _held_out_poses(prepared, 1, SOURCE_RENDERS, seed)
    src = fixed_test_set(poses, "source", SOURCE_RENDERS, seed=seed + 7, size=predictor.image_size)
    text = (f"{len(photos)} photo(s) and {len(videos)} video(s): a person in {n} frames, {int(real.val.sum())} of them "
            f"held out for the agreement curve; {SOURCE_RENDERS} labelled source renders of {origin}")  # fmt: skip
    return TargetData(real.clips(), real.frames[real.val], None, text, real=real,
                      source_set={"images": src["images"], "joints3d": src["joints3d"].astype(np.float32)})  # fmt: skip


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class SessionSettings:
    """What a session trains, for how long and where.

    Attributes:
        terms: adaptation terms: ``lcr``, ``hcr`` and relation names (see :func:`available_terms`).
        steps: optimisation steps (one term per step, in alternation).
        lr: Adam learning rate of the relation terms; the contrastive terms keep the recipe's ratio
            to it. None: the recipe's rates (:class:`AdaptStageConfig`).
        device: "auto" (CUDA when present), "cpu" or "cuda".
        eval_every: steps between evaluations of the target error (0: only before and after).
        report_seconds: least time between two reports while training (0: after every step).
        seed: fixes the heads' initialisation, the frame sampling and the augmentations.
        start: the G the session adapts (a copy; nothing shipped changes): ``"gs"`` the source-only
            Gs beside the predictor's weights (where the method's adaptation starts), ``"predictor"``
            the predictor's own G (the shipped adapted G by default), ``"auto"`` Gs when it is there
            and differs from the predictor's G, else the predictor's G. (Gs is where the method starts;
            the adapted G has already been through it. ``benchmarks/adapt_session.py`` measures both.)
    """

    terms: tuple[str, ...]
    steps: int
    lr: float | None = None
    device: str = "auto"
    eval_every: int = 20
    report_seconds: float = 1.0
    seed: int = 0
    start: str = "auto"

    def checked(self) -> SessionSettings:
        """These settings with the terms de-duplicated, or ValueError saying what is wrong."""
        terms = tuple(dict.fromkeys(str(t) for t in self.terms))
        if not terms:
            raise ValueError("choose at least one adaptation term")
        if not 1 <= int(self.steps) <= MAX_STEPS:
            raise ValueError(f"steps must be between 1 and {MAX_STEPS}, got {self.steps}")
        if self.lr is not None and not (np.isfinite(self.lr) and 0 < self.lr <= 1e-2):
            raise ValueError(f"the learning rate must be in (0, 0.01], got {self.lr}")
        if int(self.eval_every) < 0 or self.report_seconds < 0:
            raise ValueError("eval_every and report_seconds must not be negative")
        if self.start not in START_CHOICES:
            raise ValueError(f"start must be one of {list(START_CHOICES)}, got {self.start!r}")
        return dataclasses.replace(self, terms=terms, steps=int(self.steps), eval_every=int(self.eval_every))


def source_checkpoint(predictor: PosePredictor) -> Path | None:
    """Gs's weights beside the predictor's (``<checkpoint folder>/source_gs.safetensors``) when they
    exist and are not the predictor's own G; else None."""
    folder = predictor.checkpoint_dir
    if folder is None or predictor.meta.get("image_checkpoint") == SOURCE_CHECKPOINT:
        return None
    path = Path(folder) / SOURCE_CHECKPOINT
    return path if path.is_file() else None


def start_options(predictor: PosePredictor) -> list[str]:
    """Where a session over this predictor can start: ``"gs"`` (when :func:`source_checkpoint` finds
    it) and ``"predictor"``."""
    return (["gs"] if source_checkpoint(predictor) is not None else []) + ["predictor"]


def starting_encoder(predictor: PosePredictor, start: str) -> tuple[ImageEncoder, str]:
    """The G a session copies and adapts, and the name of its checkpoint.

    ``start`` is one of :data:`START_CHOICES`; ``"gs"`` without Gs beside the predictor's weights is
    a ValueError, ``"auto"`` then falls back to the predictor's G.
    """
    if start not in START_CHOICES:
        raise ValueError(f"start must be one of {list(START_CHOICES)}, got {start!r}")
    path = source_checkpoint(predictor) if start != "predictor" else None
    if path is None:
        if start == "gs":
            raise ValueError(f"no source-only Gs ({SOURCE_CHECKPOINT}) beside this predictor's weights; start from 'predictor'")
        return predictor.encoder, str(predictor.meta.get("image_checkpoint", "unknown"))
    return load_image_encoder(path), SOURCE_CHECKPOINT


def available_terms(predictor: PosePredictor) -> list[str]:
    """The terms a session over this predictor can use: ``lcr``, ``hcr``, every relation whose network is
    loaded (motion ones and ``hcr`` only with the motion prior), in registry order, then ``ensemble``
    (the teacher's relation ensemble, which needs no network)."""
    has_motion = predictor.motion is not None
    terms = [t for t in CONTRASTIVE_TERMS if t == "lcr" or has_motion]
    terms += [n for n, r in RELATIONS.items() if n in predictor.relations and (r.order == "pose" or has_motion)]
    return [*terms, ENSEMBLE_TERM, *LABELLED_TERMS]


def default_settings(predictor: PosePredictor, device: str = "auto", real: bool = False) -> SessionSettings:
    """The recipe's terms and steps on CUDA; on CPU the cheap frame-level terms and a smaller budget
    (:data:`CPU_STEPS`), so a default session ends within about a minute on two cores. ``real``: for real
    photos and videos, the labelled extensions (:data:`REAL_TERMS`, :data:`REAL_STEPS` on CPU)."""
    dev = pick_device(device)
    usable = available_terms(predictor)
    recipe = AdaptStageConfig()
    wanted = REAL_TERMS if real else recipe.terms if dev.type == "cuda" else CPU_TERMS
    terms = tuple(t for t in wanted if t in usable) or tuple(usable[:1])
    steps = (recipe.steps if dev.type == "cuda" else REAL_STEPS if real else CPU_STEPS)
    return SessionSettings(terms=terms, steps=steps, device=dev.type, eval_every=max(5, steps // 6),
                           report_seconds=0.5 if dev.type == "cuda" else 1.0)  # fmt: skip


# ----------------------------------------------------------------------------- progress
REPRESENTATIVE = "representative"  # AdaptSession.comparison: most improved, median and most worsened frames


@dataclass
class Report:
    """Where a session stands (a snapshot: the lists are copies).

    Attributes:
        step: steps done; steps: steps planned.
        losses: term -> [(step, loss)] for every step of that term.
        errors: [(step, target MPJPE mm)] (labelled data only; step 0 is the starting G).
        seconds: wall time since the run started.
        phase: "evaluating", "training", "done" or "cancelled".
        agreement: [(step, PCK@0.2)] of G with MediaPipe on the held-out real frames (real data only).
    """

    step: int
    steps: int
    losses: dict[str, list[tuple[int, float]]]
    errors: list[tuple[int, float]]
    seconds: float
    phase: str
    agreement: list[tuple[int, float]] = dataclasses.field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.phase in ("done", "cancelled")

    def latest_losses(self) -> dict[str, float]:
        """Each term's most recent loss."""
        return {k: v[-1][1] for k, v in self.losses.items() if v}


def _priors_on(predictor: PosePredictor, device: torch.device) -> tuple[PosePrior, MotionPrior]:
    """The predictor's priors on ``device`` (the same objects when already there, else copies)."""
    motion = predictor.motion
    if motion is None:
        raise ValueError("adaptation needs the motion prior (checkpoints/motion_ae.safetensors), which is not loaded")
    if device == predictor.device:
        return predictor.pose, motion
    p = predictor.pose
    pose = PosePrior(copy.deepcopy(p.encoder), copy.deepcopy(p.decoder), p.meta, device)
    return pose, MotionPrior(pose, copy.deepcopy(motion.encoder), copy.deepcopy(motion.decoder),
                             copy.deepcopy(motion.gaussian), motion.meta, device)  # fmt: skip


def _relation_bank(predictor: PosePredictor, names: Sequence[str], device: torch.device) -> RelationBank:
    """Frozen copies of the predictor's relation networks (the predictor's own keep serving)."""
    bank = RelationBank()
    for name in names:
        if name not in predictor.relations:
            loaded = sorted(predictor.relations)
            raise ValueError(f"no relation network for {name!r} is loaded; terms: {list(OWN_TERMS)} and {loaded}")
        get_relation(name)  # a known relation (its order and window are needed)
        net = copy.deepcopy(predictor.relations[name]).to(device).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        bank.nets[name] = net
    return bank


# ----------------------------------------------------------------------------- the session
class AdaptSession:
    """One interactive adaptation of a copy of the predictor's G to target clips.

    Args:
        predictor: gives the starting G, the priors and the relation networks (none of it is changed).
        data: target clips and the evaluation set.
        settings: terms, steps, learning rate, device.
        cancel: set it (from any thread) to stop :meth:`run` after the current step.

    Thread safety: :meth:`run` takes an internal lock per step and per evaluation, so
    :meth:`comparison`, :meth:`summary` and :meth:`save` may be called from other threads at any
    time (they see G between two steps).
    """

    def __init__(self, predictor: PosePredictor, data: TargetData, settings: SessionSettings,
                 cancel: threading.Event | None = None) -> None:  # fmt: skip
        self.settings = settings.checked()
        self.data = data
        self.device = pick_device(self.settings.device)
        self.cancel_event = cancel if cancel is not None else threading.Event()
        self.stopped = threading.Event()  # set once run() has stopped training (finished, cancelled or failed)
        self._lock = threading.RLock()
        unknown = [t for t in self.settings.terms if t not in OWN_TERMS and t not in RELATIONS]
        if unknown:
            raise ValueError(f"unknown adaptation terms {unknown}; choose from {available_terms(predictor)}")
        pose, motion = _priors_on(predictor, self.device)
        relations = _relation_bank(predictor, [t for t in self.settings.terms if t not in OWN_TERMS], self.device)
        recipe = AdaptStageConfig()
        lrs: dict[str, float] = {}
        if self.settings.lr is not None:
            # One rate for people; the contrastive and ensemble terms keep the recipe's ratios to the relation terms.
            lr = float(self.settings.lr)
            scale = lr / recipe.lr_relation if recipe.lr_relation > 0 else 1.0
            lrs = {"lr_relation": lr, "lr_contrastive": recipe.lr_contrastive * scale, "lr_ensemble": recipe.lr_ensemble * scale,
                   "lr_labelled": recipe.lr_labelled * scale}  # fmt: skip
        real: dict[str, Any] = {}
        if data.real is not None:  # real people: every stage trains and BatchNorm re-estimates (measured better)
            real = {"trainable": ALL_STAGES, "bn_train": True}
        # In-memory clips need no loader worker processes (and none are forked from a server thread).
        self.config = dataclasses.replace(recipe, terms=self.settings.terms, steps=self.settings.steps,
                                          seed=self.settings.seed, workers=0, **lrs, **real)  # fmt: skip
        start, self.init_checkpoint = starting_encoder(predictor, self.settings.start)
        # The predictor's G is shared with inference and must not train; a Gs loaded here is already a copy.
        g = copy.deepcopy(start) if start is predictor.encoder else start
        clips: dict[str, Any] = {"video_crops": data.clips}
        if data.real is not None:
            clips = {"real": data.real, "source_set": data.source_set}
        elif len({c.shape for c in data.clips}) == 1 and "pool" in inspect.signature(AdaptStage).parameters:
            # Equal-length clips are a finite target set: the stage draws each batch's frames from all of them.
            clips = {"pool": np.stack(data.clips)}
        with torch.random.fork_rng(devices=[]):  # seeded projection heads without touching the global RNG
            torch.manual_seed(self.settings.seed)
            self.stage: AdaptStage | None = AdaptStage(g, pose, motion, relations, self.config, self.device, DistInfo(),
                                                       init_checkpoint=self.init_checkpoint, **clips)  # fmt: skip
        self.g = self.stage.g
        self._meta = self.stage.checkpoint_meta()
        self.skeleton = pose.skeleton
        self._pose = pose
        # The evaluation set as G's input (float, 4x the uint8 images): made when needed, dropped by release().
        self._eval_x: torch.Tensor | None = None
        self.before: np.ndarray | None = None  # (N, J, 3) mm: the starting G on the evaluation set
        self._after: np.ndarray | None = None
        self._after_step = -1
        self.step = 0
        self.losses: dict[str, list[tuple[int, float]]] = {t: [] for t in self.settings.terms}
        self.errors: list[tuple[int, float]] = []
        self.agreement: list[tuple[int, float]] = []
        self.seconds = 0.0
        self.started: float | None = None  # wall-clock (Unix seconds) when run() began and stopped training
        self.ended: float | None = None
        self.phase = "ready"
        self.error: str | None = None

    # -- running ------------------------------------------------------------------------------
    def cancel(self) -> None:
        """Ask :meth:`run` to stop after the current step (safe from any thread)."""
        self.cancel_event.set()

    def report(self) -> Report:
        """Where the session stands now."""
        return Report(self.step, self.settings.steps, {k: list(v) for k, v in self.losses.items()}, list(self.errors),
                      round(self.seconds, 2), self.phase, list(self.agreement))  # fmt: skip

    def _eval_input(self) -> torch.Tensor:
        """The evaluation images as G's input (N, 3, S, S) float in [0, 1]; kept only while the session trains."""
        x = self._eval_x
        if x is None:
            x = torch.from_numpy(np.ascontiguousarray(self.data.eval_images)).permute(0, 3, 1, 2).float().div(255)
            if self.stage is not None:
                self._eval_x = x
        return x

    def _predict(self) -> np.ndarray:
        """The current G on the evaluation set -> (N, J, 3) mm (the stage's own prediction path while it exists)."""
        if self.stage is not None:
            return self.stage.predict(self._eval_input())
        from nlrd.models.image_encoder import encode_images

        with torch.no_grad():
            return self._pose.decoder(encode_images(self.g, self._eval_input(), self.device, amp=self.config.amp)).cpu().numpy()

    def _evaluate(self) -> None:
        """Predict the evaluation set with the current G; record the target error when labelled."""
        with self._lock:
            pred = self._predict()
            if self.before is None:
                self.before = pred
            self._after, self._after_step = pred, self.step
            if self.data.eval_joints is not None:
                self.errors.append((self.step, round(float(mpjpe(pred, self.data.eval_joints)), 2)))
            if self.data.real is not None:
                self.agreement.append((self.step, round(self._agreement(pred), 4)))

    def _agreement(self, pred: np.ndarray) -> float:
        """PCK@0.2 of G's joints ``pred`` on the held-out real frames (:func:`nlrd.stages.adapt.real_agreement`)."""
        assert self.data.real is not None
        return real_agreement(pred, self.data.real, np.flatnonzero(self.data.real.val))["real_val_pck"]

    def run(self) -> Iterator[Report]:
        """Train, yielding a report before step 0 (after the first evaluation), every
        ``report_seconds`` while training, after each evaluation and at the end (phase "done" or
        "cancelled"). A cancelled run still evaluates the G it reached, so before / after compare."""
        if self.phase != "ready":
            raise ValueError(f"a session runs once (this one is {self.phase})")
        cfg = self.settings
        t0 = time.perf_counter()
        self.started = time.time()
        try:
            self.phase = "evaluating"
            self._evaluate()
            self.seconds = time.perf_counter() - t0
            yield self.report()
            self.phase = "training"
            last = time.perf_counter()
            while self.step < cfg.steps and not self.cancel_event.is_set():
                with self._lock:
                    assert self.stage is not None
                    out = self.stage.train_step(self.step)
                    self.step += 1
                    for key, value in out.items():
                        self.losses.setdefault(key.removeprefix("loss/"), []).append((self.step, round(float(value), 5)))
                evaluate = cfg.eval_every > 0 and self.step % cfg.eval_every == 0 and self.step < cfg.steps
                if evaluate:
                    self._evaluate()
                self.seconds = time.perf_counter() - t0
                if evaluate or time.perf_counter() - last >= cfg.report_seconds:
                    last = time.perf_counter()
                    yield self.report()
            self._evaluate()
            self.phase = "cancelled" if self.step < cfg.steps else "done"
            self.seconds = time.perf_counter() - t0
        except GeneratorExit:
            # The consumer stopped iterating (e.g. a web request was cancelled): G stays as reached.
            self.phase = "cancelled"
            raise
        except Exception as exc:
            self.phase, self.error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            # However training stopped, only what results need stays: a finished session kept for its
            # comparison or a save is G and the curves, not optimisers and training buffers.
            self.release()
            self.ended = time.time()
            self.stopped.set()
        yield self.report()

    def release(self) -> None:
        """Drop the optimisers, heads, loader and the float copy of the evaluation set (G, the evaluation
        images and the curves stay, so results and saving still work)."""
        with self._lock:
            if self.stage is not None:
                self.g = self.stage.g
                self.stage = None
            for p in self.g.parameters():  # gradients of the last step: as large as the trained blocks
                p.grad = None
            self._eval_x = None

    # -- results ------------------------------------------------------------------------------
    def after(self) -> np.ndarray:
        """(N, J, 3) mm: the current G on the evaluation set (recomputed if G changed since)."""
        with self._lock:
            if self._after is None or self._after_step != self.step:
                self._after = self._predict()
                self._after_step = self.step
            return self._after

    def comparison(self, frames: Sequence[int] | int | str = REPRESENTATIVE) -> dict[str, Any]:
        """Before / after on chosen evaluation frames.

        Args:
            frames: indices into the evaluation set, a count (spread over the set), or
                :data:`REPRESENTATIVE`: the frames that changed most for the better, the median change and
                most for the worse (the target error's change with labels, else how far the prediction
                moved: most, median, least), so three frames show the spread behind the headline figure.

        Returns:
            ``index`` (K,), ``images`` (K, S, S, 3) uint8, ``before`` / ``after`` (K, J, 3) mm,
            ``truth`` (K, J, 3) mm or None, and per-frame ``before_mm`` / ``after_mm`` errors (K,)
            (None without labels); real data adds ``keypoints`` (MediaPipe's, else None), ``before_2d`` and
            ``after_2d`` (K, J, 2) in crop units; ``roles`` (K,) str names each frame's place in the spread
            (empty strings unless ``frames`` is :data:`REPRESENTATIVE`).
        """
        with self._lock:
            if self.before is None:
                self.before = self._predict()
            n = len(self.data.eval_images)
            roles: list[str] = []
            if isinstance(frames, str):
                if frames != REPRESENTATIVE:
                    raise ValueError(f"frames must be indices, a count or {REPRESENTATIVE!r}, got {frames!r}")
                idx, roles = self._representative(self.before, self.after())
            elif isinstance(frames, int):
                idx = np.unique(np.linspace(0, n - 1, max(1, min(frames, n))).round().astype(int))
            else:
                idx = np.asarray(list(frames), dtype=int)
                if idx.size == 0 or idx.min() < 0 or idx.max() >= n:
                    raise ValueError(f"frames must be indices in [0, {n - 1}]")
            before, after = self.before[idx], self.after()[idx]
        truth = None if self.data.eval_joints is None else self.data.eval_joints[idx]
        err = (lambda p: None) if truth is None else (lambda p: np.asarray(mpjpe(p, truth, reduce=False)))  # noqa: E731
        out = {"index": idx, "images": self.data.eval_images[idx], "before": before, "after": after, "truth": truth,
               "before_mm": err(before), "after_mm": err(after), "keypoints": None,
               "roles": roles or [""] * len(idx)}  # fmt: skip
        if self.data.real is not None:  # MediaPipe's keypoints and G's projections, in crop units (see nlrd.vision.target)
            rows = np.flatnonzero(self.data.real.val)[idx]
            out["keypoints"] = self.data.real.keypoints[rows]
            out["before_2d"], out["after_2d"] = (project_crop(torch.from_numpy(np.asarray(j, np.float32))).numpy()
                                                 for j in (before, after))  # fmt: skip
        return out

    def _representative(self, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Indices (K,) and role names of the most improved, the median and the most worsened evaluation frame
        (by the target error's change; without labels by how far the prediction moved: most, median, least)."""
        if self.data.eval_joints is not None:
            y = self.data.eval_joints
            change = np.asarray(mpjpe(after, y, reduce=False)) - np.asarray(mpjpe(before, y, reduce=False))
            names = ("most improved", "median change", "most worsened")
        else:
            change = -np.linalg.norm(after - before, axis=-1).mean(axis=-1)
            names = ("moved most", "median move", "moved least")
        order = np.argsort(change, kind="stable")
        picks = [int(order[0]), int(order[len(order) // 2]), int(order[-1])]
        idx, roles = [], []
        for i, name in zip(picks, names, strict=True):
            if i not in idx:
                idx.append(i)
                roles.append(name)
        return np.asarray(idx, dtype=int), roles

    def summary(self) -> dict[str, Any]:
        """JSON-ready numbers: settings, steps done, final losses and before / after on the evaluation set."""
        with self._lock:
            before = self.before if self.before is not None else self._predict()
            after = self.after()
        out: dict[str, Any] = {
            "phase": self.phase, "started_from": self.init_checkpoint, "terms": list(self.settings.terms),
            "steps": self.settings.steps, "steps_done": self.step,
            "device": self.device.type, "seconds": round(self.seconds, 1), "started_unix_s": self.started,
            "ended_unix_s": self.ended,
            "learning_rates": {"relation": self.config.lr_relation, "contrastive": self.config.lr_contrastive,
                               "ensemble": self.config.lr_ensemble},
            "data": self.data.description, "eval_images": int(len(before)), "labelled": self.data.labelled,
            "final_losses": {k: v[-1][1] for k, v in self.losses.items() if v},
            # How far the adaptation moved the predictions (meaningful without labels too).
            "mean_change_mm": round(float(np.linalg.norm(after - before, axis=-1).mean()), 2),
        }  # fmt: skip
        if self.data.real is not None:
            out.update(before_agreement_pck=round(self._agreement(before), 4),
                       after_agreement_pck=round(self._agreement(after), 4))
        if self.data.eval_joints is not None:
            y = self.data.eval_joints
            out.update({"before_mpjpe_mm": round(float(mpjpe(before, y)), 2), "after_mpjpe_mm": round(float(mpjpe(after, y)), 2),
                        "before_pa_mpjpe_mm": round(float(pa_mpjpe(before, y)), 2),
                        "after_pa_mpjpe_mm": round(float(pa_mpjpe(after, y)), 2)})  # fmt: skip
        if self.error:
            out["error"] = self.error
        return out

    def save(self, folder: str | Path, *, protected: Sequence[str | Path] = (CHECKPOINT_DIR,), overwrite: bool = False) -> Path:
        """Write the adapted G to ``<folder>/adapted_g.safetensors`` (with its JSON sidecar).

        Refuses a folder inside any ``protected`` folder (default: the shipped checkpoints), a file
        that resolves to a protected file through links, an existing file unless ``overwrite``, and
        a session with no step done. The checkpoint loads with :func:`nlrd.inference.load_image_encoder`;
        placed beside the priors it is the image model :class:`PosePredictor` prefers.
        """
        out = Path(folder).expanduser().resolve() / ADAPTED_NAME
        for p in protected:
            root = Path(p).expanduser().resolve()
            if out.is_relative_to(root) or (out.exists() and out.resolve().is_relative_to(root)):
                raise ValueError("refusing to write into the shipped checkpoints folder: choose another run folder")
        if out.exists() and not overwrite:
            raise ValueError(f"{out.parent.name}/{ADAPTED_NAME} already exists: choose another run folder")
        with self._lock:
            if self.step == 0:
                raise ValueError("nothing to save yet: no adaptation step has run")
            summary = self.summary()
            metrics = {k: v for k, v in summary.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            session = {k: summary[k] for k in ("phase", "steps_done", "data", "learning_rates")}
            extra = {**self._meta.get("extra", {}), "session": session}
            sources = list(self._meta.get("data_sources") or [])
            if not self.data.labelled:
                sources.append({"name": "the user's own photos and videos (unlabelled)", "licence": "as given by the user"})
            return save_checkpoint(out, {"encoder": self.g}, stage="adapt", config=self._meta.get("config", {}),
                                   data_sources=sources, metrics=metrics, extra=extra)  # fmt: skip
