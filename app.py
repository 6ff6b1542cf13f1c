"""NLRD web app: 3D human pose from photos and clips, and a hands-on tour of the method's latent spaces.

    python app.py                                  # shipped weights, http://127.0.0.1:7860
    python app.py --examples ~/my_clips --port 8000 --device cuda

Tabs: Predict (photo, webcam snapshot, clip), Latent explorer (32 sliders over the pose prior),
Relations (exact pose / motion relations and their latent distances), Adapt (an interactive
self-adaptation session with live curves and a before / after comparison) and About (the stages
in a diagram).

The module is a thin UI layer: every handler calls :mod:`nlrd` (``PosePredictor``, ``viz``,
``export``, ``transforms``, the synthetic renderer) and turns its ``ValueError`` into a
``gr.Error`` so a bad upload shows a message and the app keeps serving. Handlers are module-level
functions taking an :class:`AppContext` first (testable without a server); :func:`build_app` binds
them to the components. Stable API names for ``gradio_client``: ``/predict_image``,
``/predict_clip``, ``/decode_latent``, ``/relation_pair`` and ``/adapt``.

Exposure: the app listens on 127.0.0.1 unless ``--host`` says otherwise, accepts uploads up to
``--max-upload-mb``, keeps uploads and outputs in its own temporary folder (removed at exit), serves
files only from that folder and the ``--examples`` folder, never fetches URLs for clients, and loads
weights only through safetensors (no pickles). Adapted models are written only below ``--runs-dir``.
A refused request (a bad value, a missing one, an unknown API name) gets a message and one log line
(:func:`readable_refusals`). Memory stays bounded however many sessions call: per-user state holds ids
and small values, and the heavy results (adaptation sessions, relation pairs) are kept on the server
in bounded stores (:class:`AdaptSessions`, :class:`LruStore`).
"""

from __future__ import annotations

import argparse
import atexit
import functools
import inspect
import itertools
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

import cv2

# No telemetry and no version check: set before gradio is imported, since both read it then (and the
# version check would make a network request at every start). The app promises nothing leaves the machine.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr  # noqa: E402
import numpy as np
import plotly.graph_objects as go
import torch
from gradio.components.plot import PlotData
from gradio.exceptions import ComponentProcessingError, InvalidPathError
from PIL import Image
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

import nlrd
from nlrd import viz
from nlrd.adapt_session import (
    DEMO_MOTIONS,
    REPRESENTATIVE,
    AdaptSession,
    Report,
    SessionSettings,
    TargetData,
    available_terms,
    builtin_real_photos,
    builtin_target_data,
    default_settings,
    real_target_data,
    start_options,
    target_style,
    video_target_data,
)
from nlrd.data.images import IMAGE_SUFFIXES, as_rgb_uint8
from nlrd.data.paths import default_data_root
from nlrd.data.synthetic import demo_poses, render_clip, render_sample
from nlrd.data.synthetic.styles import Style
from nlrd.data.video import VIDEO_SUFFIXES, iter_video, probe_video
from nlrd.export import write_bvh, write_glb, write_json
from nlrd.inference import PosePredictor, PoseResult, photo_checkpoint_dir
from nlrd.metrics import mpjpe
from nlrd.priors import CHECKPOINT_DIR
from nlrd.skeleton import H36M_17
from nlrd.stages.adapt import AdaptStageConfig
from nlrd.transforms import RELATIONS, Relation, get_relation

# ----------------------------------------------------------------------------- settings
MAX_EXAMPLES = 24  # per kind, from --examples
METHOD_CHOICES = (("fit", "Pose prior fitted to the keypoints"), ("g", "Image network G alone (the paper's)"))
PHOTO_MAX_SIDE = 1600  # photos are downscaled before prediction: the crop is 128 px, more only costs time
CLIP_MAX_SIDE = 640  # clip frames are decoded at this long side (bounded memory; the person crop is 128 px)
MAX_CLIP_FRAMES = 450  # 15 s at 30 fps: longer clips are cut (the app is interactive; use the library for more)
OVERLAY_MAX_SIDE = 640  # the 2D overlay shown beside the 3D view (photos)
CLIP_THUMB_MAX_SIDE = 480  # per-frame thumbnails of a clip kept for the overlay (JPEG, in the session's state)
THUMB_QUALITY = 85  # JPEG quality of the per-frame thumbnails kept in a session's state
PLAY_INTERVAL_S = 0.1  # gr.Timer period of the play buttons; frames advance by fps * interval per tick
BANK_SIZE = 2000  # poses decoded from prior samples for nearest-pose look-ups and the latent PCA
MOTION_BANK_SIZE = 256  # motion windows for the motion-latent PCA
INTERP_STEPS = 30  # frames of a latent interpolation
ENDPOINT_MODES = ("random seed", "current sliders")  # where an interpolation end point comes from
INFLUENCE_STEP = 0.25  # finite-difference half step (latent units) of the joint-influence map
RELATION_IMAGE_SIZE = 192  # rendered anchor / counterpart images
RELATION_CLIP_SIZE = 160  # rendered anchor / counterpart clips (30-60 frames each)
EXAMPLE_IMAGE_SIZE = 256  # synthetic photo examples
EXAMPLE_CLIP_SIZE = 224  # synthetic clip example
EXAMPLE_SEED = 7
STATE_TTL_S = 3600  # per-user state (thumbnails, sequences, ids of server-side objects) is dropped after an hour
ADAPT_SESSIONS_KEPT = 4  # finished adaptation sessions the server keeps for their users (about 7 MB each)
RELATION_VIEWS_KEPT = 8  # relation pairs the server keeps for the Relations tab's frame slider (up to 9 MB each)
# Browser / API sessions whose state gradio keeps, the least recently used dropped beyond it. Each costs about
# 0.3 MB of gradio's own (a copy of every component's config) besides its gr.State values, and gradio's
# default keeps 10,000: a script opening a session per call grew the server by 0.3 MB a call.
STATE_SESSIONS_KEPT = 256
ADAPT_SOURCES = ("built-in synthetic target clips", "my videos", "real photos and videos")
ADAPT_COMPARE_FRAMES = 3  # before / after scenes (one WebGL context each): most improved, median, most worsened
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")  # a run folder: one plain name below --runs-dir
DEFAULT_RUNS_DIR = "runs/app"

# uirevision values: a figure re-sent with the same value keeps the user's camera (plotly's react).
UIREV_PREDICT, UIREV_EXPLORE, UIREV_NEAREST, UIREV_INTERP = "predict", "explore", "nearest", "interp"
UIREV_RELATION, UIREV_PCA = "relation", "relation-pca"
UIREV_ADAPT_LOSS, UIREV_ADAPT_ERR, UIREV_ADAPT_CMP = "adapt-loss", "adapt-error", "adapt-compare"

TAB_IDS = {"predict": "Predict", "explore": "Latent explorer", "relations": "Relations", "adapt": "Adapt", "about": "About"}

NON_LOCAL_TEXT = (
    "**Why non-local?** Flipping or rotating an image is a tiny, *local* change for a convolutional "
    "network, yet the pose it shows moves to a distant region of the pose latent space (the map on the "
    "left: grey points are encoded prior samples; the arrow joins anchor and counterpart). "
    "NLRD learns a small *relation network* per relation that maps the anchor's latent to the "
    "counterpart's latent. Because the pose-side and image-side operations are exact counterparts, the "
    "relation must also hold between the latents the image model predicts for the two images, so on "
    "unlabelled target images the relation networks supervise the image model: they distil a non-local "
    "relation that no pixel-level consistency loss could express. Motion relations (reverse, mirror, "
    "slow down) do the same for 30-frame windows in the motion latent space v."
)

CSS = """
#nlrd-header h1 { margin: 0.2em 0 0 0; }
#nlrd-header p { margin: 0.2em 0; color: var(--body-text-color-subdued); }
.latent-grid { gap: 0 !important; }
.latent-grid .block { padding: 2px 8px !important; }
.latent-grid label span { font-size: 12px !important; }
.placeholder-box { border: 2px dashed var(--border-color-primary); border-radius: 8px; padding: 8px 14px; opacity: 0.85; }
.nlrd-diagram svg { width: 100%; height: auto; max-width: 1170px; }
.frame-row { align-items: center !important; }
"""


# ----------------------------------------------------------------------------- context and state
@dataclass
class AppContext:
    """Everything the handlers share, built once at start-up (read-only afterwards)."""

    predictor: PosePredictor  # the paper's chain: latent explorer, relations, adaptation
    temp_dir: Path
    style: Style  # renderer style of the synthetic examples and relation images
    bank_z: np.ndarray  # (N, D) encoded latents of the bank poses
    bank_joints: np.ndarray  # (N, J, 3) mm poses decoded from prior samples
    explore_range: viz.Range3  # one fixed 3D range for the explorer (the view does not jump while dragging)
    influence: np.ndarray  # (D, J) mm moved per unit of each latent dimension
    motion_bank_v: np.ndarray | None  # (M, Dv) encoded motion windows, None without the motion prior
    image_examples: list[str] = field(default_factory=list)
    clip_examples: list[str] = field(default_factory=list)
    # Photos, clips and the webcam: the real-photo models (nlrd.inference.photo_checkpoint_dir); None: ``predictor``.
    photo_predictor: PosePredictor | None = None

    @property
    def photos(self) -> PosePredictor:
        """The model of the Predict tab."""
        return self.photo_predictor or self.predictor
    examples_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    runs_dir: Path = field(default_factory=lambda: Path(DEFAULT_RUNS_DIR).resolve())  # adapted models go below it
    protected_dirs: list[Path] = field(default_factory=lambda: [CHECKPOINT_DIR])  # never written (shipped weights)
    # The explorer's figure, serialised once: a slider move only refills the coordinates (see viz.PoseFigureTemplate).
    explore_template: viz.PoseFigureTemplate | None = None
    adapt_data: dict[str, TargetData] = field(default_factory=dict)  # built-in target clips, rendered on first use
    adapt_data_lock: threading.Lock = field(default_factory=threading.Lock)
    # Heavy per-user results live here, bounded, and users' gr.State holds only their ids (see the classes).
    adapt_sessions: AdaptSessions = field(default_factory=lambda: AdaptSessions(ADAPT_SESSIONS_KEPT))
    relation_views: LruStore = field(default_factory=lambda: LruStore(RELATION_VIEWS_KEPT))

    @property
    def latent_dim(self) -> int:
        return int(self.predictor.pose.latent_dim)

    @property
    def has_motion(self) -> bool:
        return self.predictor.motion is not None


@dataclass
class Prediction:
    """A user's last prediction (kept in a per-session gr.State)."""

    kind: str  # "image" or "clip"
    result: PoseResult  # in the input's pixels (exports use these)
    frames: list[bytes]  # JPEG thumbnails of the input, one per frame
    scale: float  # thumbnail pixels per input pixel
    axis_range: viz.Range3  # fixed over the clip
    notes: list[str]  # status lines
    files: list[str] = field(default_factory=list)  # written exports (json, bvh, glb)
    preview_glb: str | None = None

    @property
    def num_frames(self) -> int:
        return self.result.num_frames


@dataclass
class Sequence3D:
    """A pose sequence shown with a frame slider (latent interpolation)."""

    joints: np.ndarray  # (T, J, 3)
    axis_range: viz.Range3
    fps: float = 15.0
    captions: list[str] = field(default_factory=list)


@dataclass
class RelationView:
    """One relation pair: poses (T = 1 for pose relations), images and latents."""

    name: str
    order: str  # "pose" or "motion"
    seed: int
    anchor: np.ndarray  # (T, J, 3)
    counterpart: np.ndarray  # (T, J, 3)
    anchor_images: np.ndarray  # (T, H, W, 3)
    counterpart_images: np.ndarray  # (T, H, W, 3)
    latent_anchor: np.ndarray  # (D,)
    latent_counterpart: np.ndarray  # (D,)
    distance: float
    axis_range: viz.Range3
    fps: float = 30.0
    predicted: np.ndarray | None = None  # (T, J, 3) decoded relation-network prediction T_r(anchor latent)
    latent_predicted: np.ndarray | None = None  # (D,)


@dataclass(frozen=True)
class RelationRef:
    """A user's relation pair as their gr.State keeps it: what was asked for, not its images.

    The pair itself (a motion relation's two clips are about 9 MB) is computed once into the server's
    :class:`LruStore` of recent pairs and recomputed on a miss (the same name and seed always give the
    same pair), so what every browser session keeps for an hour is a name and a number.
    """

    name: str
    seed: int


class LruStore:
    """A thread-safe map that keeps its ``capacity`` most recently used entries (shared by all users)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        """The value under ``key`` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> None:
        """Store ``value``; the least recently used entries beyond the capacity are dropped."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _training(session: AdaptSession) -> bool:
    """Whether a session is about to run or running (never dropped for space: its event is using it)."""
    return session.phase in ("ready", "evaluating", "training")


class AdaptSessions:
    """The adaptation sessions kept on the server between the events that use one (the run, its compared
    frames, cancel, save); a user's gr.State holds only the id of theirs.

    Bounded whoever calls and however often: a browser session has at most one (a new run releases the
    one its state named; gradio's state expiry releases it too, through the state's delete callback), and
    the server keeps at most ``capacity``, evicting the least recently used finished ones first and any
    unused for ``ttl_s``. Before, each /adapt call left a copy of G, its optimisers and the evaluation
    tensors in the caller's state for an hour (about 25 MB a call, so one client looping could fill the
    machine). A finished session keeps only G and its curves (:meth:`AdaptSession.release`).
    """

    def __init__(self, capacity: int, ttl_s: float = STATE_TTL_S) -> None:
        self.capacity, self.ttl_s = capacity, ttl_s
        self._kept: OrderedDict[str, tuple[AdaptSession, float]] = OrderedDict()  # id -> (session, last used)
        self._lock = threading.Lock()

    def add(self, session: AdaptSession, replaces: Any = None) -> str:
        """Keep ``session`` and return its id; ``replaces`` (the caller's previous id, if any) is released."""
        sid = uuid.uuid4().hex
        with self._lock:
            self._drop(replaces)
            self._kept[sid] = (session, time.monotonic())
            self._evict()
        return sid

    def get(self, sid: Any) -> AdaptSession | None:
        """The session with id ``sid`` (now the most recently used), or None when unknown, released or evicted."""
        with self._lock:
            self._evict()
            if not isinstance(sid, str) or sid not in self._kept:
                return None
            session = self._kept.pop(sid)[0]
            self._kept[sid] = (session, time.monotonic())
            return session

    def release(self, sid: Any) -> None:
        """Forget a session (a running one is asked to stop after its step); unknown ids are ignored."""
        with self._lock:
            self._drop(sid)

    def __len__(self) -> int:
        return len(self._kept)

    def _drop(self, sid: Any) -> None:
        if isinstance(sid, str) and sid in self._kept:
            self._kept.pop(sid)[0].cancel()

    def _evict(self) -> None:
        now = time.monotonic()
        for sid, (session, used) in list(self._kept.items()):
            if now - used > self.ttl_s and not _training(session):
                self._drop(sid)
        while len(self._kept) > self.capacity:
            oldest = next((sid for sid, (session, _) in self._kept.items() if not _training(session)), None)
            if oldest is None:
                break  # all running: they end soon, and are evicted then
            self._drop(oldest)


# ----------------------------------------------------------------------------- memory
MALLOC_ARENAS = 2  # glibc malloc arenas (default 8 per core): fewer arenas, less freed memory held in each
MALLOC_MMAP_THRESHOLD = 4 << 20  # allocations this large get their own mapping, returned to the system when freed
TRIM_INTERVAL_S = 5.0  # at most one malloc_trim per this many seconds


def _libc() -> Any | None:
    """glibc through ctypes, or None elsewhere (macOS, Windows, musl: the tuning below is glibc's)."""
    import ctypes
    import ctypes.util

    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


def tune_malloc() -> bool:
    """Make glibc's allocator give memory back: at most :data:`MALLOC_ARENAS` arenas and a fixed mmap threshold.

    By default glibc raises its mmap threshold each time a large block is freed, so the tensors of an
    adaptation session, a render or a prediction soon come from the heap arenas (one per thread, up to 8
    per core), and what they free stays in the process: the server's RSS climbed by hundreds of MB over a
    few hundred calls while the live objects did not grow. Call before threads start. Returns whether it applied.
    """
    libc = _libc()
    if libc is None:
        return False
    m_arena_max, m_mmap_threshold = -8, -3  # mallopt parameters (malloc.h)
    return bool(libc.mallopt(m_arena_max, MALLOC_ARENAS)) and bool(libc.mallopt(m_mmap_threshold, MALLOC_MMAP_THRESHOLD))


_last_trim = [0.0]


def trim_memory(force: bool = False) -> None:
    """Return the heap's free memory to the system (glibc's ``malloc_trim``), at most every :data:`TRIM_INTERVAL_S`.

    Called when a burst of allocations has just been freed (an adaptation session ended, a relation pair
    computed); it takes a few milliseconds.
    """
    now = time.monotonic()
    if not force and now - _last_trim[0] < TRIM_INTERVAL_S:
        return
    _last_trim[0] = now
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


# ----------------------------------------------------------------------------- start-up
def _write_webm(path: Path, frames: np.ndarray, fps: float) -> Path:
    """Write RGB frames as VP8 WebM: browsers play it and OpenCV writes it without an ffmpeg binary."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"VP80"), float(fps), (w, h))
    if not writer.isOpened():
        raise ValueError(f"OpenCV cannot write WebM video to {str(path)!r}")
    try:
        for f in frames:
            writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    return path


def _scan_examples(folder: Path) -> tuple[list[str], list[str]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    images = [str(p) for p in files if p.suffix.lower() in IMAGE_SUFFIXES][:MAX_EXAMPLES]
    clips = [str(p) for p in files if p.suffix.lower() in VIDEO_SUFFIXES][:MAX_EXAMPLES]
    return images, clips


def _synthetic_examples(predictor: PosePredictor, style: Style, out: Path, n_images: int = 4) -> tuple[list[str], list[str]]:
    """Render a few labelled-free example photos and one clip into ``out`` (no outside data needed)."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(EXAMPLE_SEED)
    images = []
    for i, pose in enumerate(demo_poses.random_poses(n_images, rng)):
        s = render_sample(pose, style, rng, size=EXAMPLE_IMAGE_SIZE)
        path = out / f"synthetic_person_{i + 1}.png"
        cv2.imwrite(str(path), cv2.cvtColor(s.image, cv2.COLOR_RGB2BGR))
        images.append(str(path))
    # A motion from the motion prior when it is loaded, else a smooth synthetic one.
    if predictor.motion is not None:
        seq = predictor.motion.decode(predictor.motion.sample(1, seed=EXAMPLE_SEED))[0]
        seq = np.concatenate([seq, seq[::-1]])  # there and back: 2 s
    else:
        seq = demo_poses.random_windows(1, rng, length=60)[0]
    clip = render_clip(seq, style, rng, size=EXAMPLE_CLIP_SIZE)
    clips = [str(_write_webm(out / "synthetic_clip.webm", clip.image, 30.0))]
    return images, clips


def joint_influence(predictor: PosePredictor, step: float = INFLUENCE_STEP) -> np.ndarray:
    """(D, J) how far (mm per latent unit) each joint moves when one latent dimension moves around 0.

    Central finite differences of the decoder at z = 0: |Dp(+h e_d) - Dp(-h e_d)| / 2h.
    """
    d = predictor.pose.latent_dim
    eye = np.eye(d, dtype=np.float32) * step
    plus, minus = predictor.decode(eye), predictor.decode(-eye)
    return (np.linalg.norm(plus - minus, axis=-1) / (2.0 * step)).astype(np.float32)


def build_context(
    predictor: PosePredictor,
    examples_dir: str | Path | None = None,
    *,
    temp_dir: str | Path | None = None,
    bank_size: int = BANK_SIZE,
    motion_bank_size: int = MOTION_BANK_SIZE,
    synthetic_examples: int = 4,
    photo_predictor: PosePredictor | None = None,
) -> AppContext:
    """Everything computed once at start-up: latent banks, the influence map, example files.

    Args:
        predictor: the loaded model.
        examples_dir: a folder of the user's photos / clips offered as examples (searched recursively).
        temp_dir: where exports and synthetic examples go; default a fresh folder removed at exit.
        bank_size: prior samples decoded for the nearest-pose search and the latent PCA.
        motion_bank_size: motion prior samples for the motion-latent PCA.
        synthetic_examples: number of rendered example photos.
        photo_predictor: the model of the Predict tab (photos, clips, webcam); default ``predictor``.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    if temp_dir is None:
        tmp = Path(tempfile.mkdtemp(prefix="nlrd-app-"))
        atexit.register(shutil.rmtree, tmp, True)
    else:
        tmp = Path(temp_dir)
        tmp.mkdir(parents=True, exist_ok=True)
    ex_dir = None
    if examples_dir is not None:
        ex_dir = Path(examples_dir).expanduser().resolve()
        if not ex_dir.is_dir():
            raise ValueError(f"examples folder {str(examples_dir)!r} does not exist")

    def examples() -> tuple[Style, list[str], list[str]]:
        t = time.perf_counter()
        # Photo backgrounds from the data folder, else procedural ones: examples work on a fresh clone.
        st = target_style(views=predictor.pose.views)  # relation previews and target clips the prior can hold
        found = _synthetic_examples(predictor, st, tmp / "examples", synthetic_examples) if synthetic_examples > 0 else ([], [])
        timings["examples_s"] = time.perf_counter() - t
        return st, *found

    # The examples (reading the background photos, rendering) run beside the latent banks (torch):
    # the two overlap on two cores, which shortens start-up.
    with ThreadPoolExecutor(max_workers=1) as pool:
        rendered = pool.submit(examples)
        # Bank: decoded prior samples (not shipped mocap), re-encoded so the PCA shows the encoder's latents.
        bank_joints = predictor.decode(predictor.sample(bank_size, seed=0)).astype(np.float32)
        bank_z = predictor.encode(bank_joints).astype(np.float32)
        timings["bank_s"] = time.perf_counter() - t0
        t1 = time.perf_counter()
        influence = joint_influence(predictor)
        motion_bank_v = None
        if predictor.motion is not None and motion_bank_size > 1:
            seqs = predictor.motion.decode(predictor.motion.sample(motion_bank_size, seed=0))
            motion_bank_v = predictor.motion.encode(seqs).astype(np.float32)
        timings["influence_motion_s"] = time.perf_counter() - t1
        style, images, clips = rendered.result()
    if ex_dir is not None:
        user_images, user_clips = _scan_examples(ex_dir)
        images, clips = user_images + images, user_clips + clips
    # Trim the 1 % most extreme bank poses from the explorer's range so a single outlier does not shrink the view.
    extent = np.abs(bank_joints).max(axis=(1, 2))
    typical = bank_joints[extent <= np.quantile(extent, 0.99)]
    explore_range = viz.axis_ranges(typical)
    return AppContext(
        predictor=predictor, temp_dir=tmp, style=style, bank_z=bank_z, bank_joints=bank_joints,
        explore_range=explore_range, influence=influence, motion_bank_v=motion_bank_v,
        image_examples=images, clip_examples=clips, examples_dir=ex_dir, timings=timings, photo_predictor=photo_predictor,
        explore_template=viz.PoseFigureTemplate("decoded pose", axis_range=explore_range, uirevision=UIREV_EXPLORE),
    )  # fmt: skip


# ----------------------------------------------------------------------------- small helpers
def _error(exc: Exception, upload: str | Sequence[str] | None = None) -> gr.Error:
    """A ValueError from nlrd as a message for the user (the server's upload folders left out of it)."""
    msg = str(exc)
    for path in [upload] if isinstance(upload, str) else (upload or []):
        msg = msg.replace(str(Path(path).parent) + os.sep, "")
    return gr.Error(msg)


REFUSAL_MAX_CHARS = 600  # a refused request's message at most (a request can carry megabytes of "value")
_LONG_WORD = re.compile(r"\S{80,}")


def _shorten(text: str, limit: int = REFUSAL_MAX_CHARS) -> str:
    """``text`` with each run of 80+ characters without a space cut to its start (a value echoed in a message
    stays recognisable, the sentence around it readable), and the whole cut to ``limit``."""
    text = _LONG_WORD.sub(lambda m: f"{m.group()[:40]}... ({len(m.group()):,} characters)", str(text))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refusal(where: str, message: str) -> gr.Error:
    """A refused request: its message (shortened) for the caller and one line in the server's log, no traceback.

    Refusals are the app working as intended; a traceback per bad request (gradio prints one for every
    error unless told not to) buries the log, and a megabyte of echoed input fills it.
    """
    text = _shorten(message)
    print(f"refused {where}: {' '.join(text.split())}", file=sys.stderr, flush=True)
    return gr.Error(text, print_exception=False)


def _input_name(block: Any) -> str:
    """How the API names an input: its label, else its kind."""
    label = getattr(block, "label", None)
    return str(label) if label else type(block).__name__.lower()


def readable_refusals(demo: gr.Blocks) -> gr.Blocks:
    """Give the requests gradio itself refuses, before a handler runs, a message and one log line.

    Wrong types (text where a number goes, NaN for a whole number), missing values, file paths the app
    did not receive as uploads and values outside a dropdown's choices all fail in gradio's input
    processing (``Blocks.preprocess_data``); without this, most reach API callers as ``{"error": null}``
    with a traceback in the log, and a bad choice is echoed whole. The instance's method is wrapped, not
    the class's (other Blocks in the process keep gradio's behaviour).
    """
    original = demo.preprocess_data

    async def preprocess_data(block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False) -> list[Any]:
        where = f"/{block_fn.api_name}" if block_fn.api_name else str(block_fn.name)
        api_inputs = [b for b in block_fn.inputs if not getattr(b, "skip_api", False)]
        if not isinstance(inputs, list) or len(inputs) < len(block_fn.inputs):
            got = len(inputs) if isinstance(inputs, list) else 0
            raise _refusal(where, f"expects {len(api_inputs)} values ({', '.join(map(_input_name, api_inputs))}), got {got}")
        try:
            return await original(block_fn, inputs, state, explicit_call)
        except gr.Error as exc:  # a component's own refusal (a value not among the choices, an unreadable upload)
            raise _refusal(where, exc.message) from None
        except ComponentProcessingError as exc:  # the component could not read the value at all
            found = re.search(r"at index (\d+)", str(exc))
            i = int(found.group(1)) if found else -1
            block = block_fn.inputs[i] if 0 <= i < len(block_fn.inputs) else None
            value = inputs[i] if 0 <= i < len(inputs) else None
            kind = "number" if isinstance(block, gr.Number | gr.Slider) else type(block).__name__.lower()
            raise _refusal(where, f"{_input_name(block)}: {value!r} is not a valid {kind}") from None
        except InvalidPathError:  # a path in a file value that the app never received as an upload
            raise _refusal(where, "a file value names a path on the server that was not uploaded to this app; "
                                  "upload the file instead") from None  # fmt: skip
        except (ValueError, TypeError, KeyError) as exc:  # malformed file values and the like
            raise _refusal(where, f"the request's values could not be read ({type(exc).__name__}: {exc})") from None

    demo.preprocess_data = preprocess_data  # type: ignore[method-assign]
    return demo


def readable_image_input(component: gr.Image) -> gr.Image:
    """Make an image input's unreadable uploads (not an image, truncated, too large) a clear ``gr.Error``.

    gradio opens an upload with PIL before the handler runs, so a text file named .png fails inside
    gradio and clients only learn that "an error" happened. The instance's ``preprocess`` is wrapped
    rather than subclassing ``gr.Image``: gradio's component metaclass writes a ``.pyi`` stub beside
    the module of every component subclass, which would litter the repository.
    """
    original = component.preprocess

    def preprocess(payload: Any) -> Any:
        try:
            return original(payload)
        except (OSError, ValueError, Image.DecompressionBombError):
            raise gr.Error("The upload is not an image that can be read: use a PNG, JPEG, WebP or BMP photo.") from None

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def _downscale(img: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Area-downscale so the long side is at most max_side; returns the image and the scale factor (<= 1)."""
    h, w = img.shape[:2]
    f = min(1.0, max_side / float(max(h, w)))
    if f >= 1.0:
        return img, 1.0
    size = (max(1, round(w * f)), max(1, round(h * f)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), f


def _jpeg(img: np.ndarray) -> bytes:
    """RGB -> JPEG bytes: a clip's thumbnails stay small in the session's state."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY])
    if not ok:
        raise ValueError("could not encode a thumbnail")
    return buf.tobytes()


def _unjpeg(data: bytes) -> np.ndarray:
    """JPEG bytes -> RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _frame_index(t: Any, n: int) -> int:
    """A slider value as a valid frame index in [0, n - 1] (0 for anything unreadable)."""
    try:
        i = int(round(float(t)))
    except (TypeError, ValueError):
        i = 0
    return int(np.clip(i, 0, max(n - 1, 0)))


def _latent_vector(values: Sequence[Any], dim: int) -> np.ndarray:
    """Slider values -> (D,) float32 in [-1, 1] (values outside are clipped: the prior's support)."""
    if len(values) != dim:
        raise ValueError(f"expected {dim} latent values, got {len(values)}")
    try:
        z = np.array([float(v) for v in values], dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError("latent values must be numbers") from None
    if not np.isfinite(z).all():
        raise ValueError("latent values must be finite")
    return np.clip(z, -1.0, 1.0)


def _message_figure(text: str, height: int = 360) -> go.Figure:
    """An empty figure that says why there is nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False, font={"size": 14})
    fig.update_layout(height=height, template="plotly_white", xaxis={"visible": False}, yaxis={"visible": False},
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})  # fmt: skip
    return fig


def _fixed_ranges(fig: go.Figure, ranges: viz.Range3) -> go.Figure:
    """Pin every 3D scene of a figure to one range, so stepping through frames does not rescale the view."""
    fig.update_scenes(xaxis_range=list(ranges[0]), yaxis_range=list(ranges[1]), zaxis_range=list(ranges[2]))
    return fig


def _slider_update(n: int, value: int = 0) -> dict[str, Any]:
    """A frame slider for n frames (hidden for a single frame)."""
    return gr.update(minimum=0, maximum=max(n - 1, 1), value=value, step=1, visible=n > 1, interactive=n > 1)


# ----------------------------------------------------------------------------- Predict handlers
def _prediction_figure(pred: Prediction, t: int) -> go.Figure:
    """3D view of frame t; the clip's fixed range and one uirevision keep the user's camera while stepping."""
    label = "prediction" if pred.kind == "image" else f"frame {t}"
    return viz.pose_figure(pred.result.joints3d[t], labels=label, axis_range=pred.axis_range, uirevision=UIREV_PREDICT)


def _overlay(pred: Prediction, t: int) -> np.ndarray:
    """Frame t's thumbnail with the projected skeleton and the person box."""
    r, s = pred.result, pred.scale
    return viz.image_with_skeleton(_unjpeg(pred.frames[t]), r.joints2d[t] * s, r.boxes[t] * s)


def _method(label: object) -> str:
    """The predictor's method for a "3D from" choice (its label or the method name itself)."""
    for name, text in METHOD_CHOICES:
        if label in (name, text):
            return name
    raise gr.Error(f"3D from: choose one of {[t for _, t in METHOD_CHOICES]}")


def predict_image(ctx: AppContext, image: np.ndarray | None, flip_test: bool = False,
                  method: str = "fit") -> tuple[dict, go.Figure, Prediction]:  # fmt: skip
    """API ``/predict_image``: a photo -> (pose JSON in the nlrd-pose schema, 3D figure); the state feeds the UI.
    ``method``: "fit" (the pose prior fitted to MediaPipe's keypoints, started from G) or "g" (G alone)."""
    if image is None:
        raise gr.Error("Add a photo first (upload, paste or take a webcam snapshot).")
    m = _method(method)
    try:
        img, _ = _downscale(as_rgb_uint8(image, max_pixels=None), PHOTO_MAX_SIDE)
        result = ctx.photos.predict_image(img, flip_test=bool(flip_test), method=m)
        thumb, scale = _downscale(img, OVERLAY_MAX_SIDE)
        frames = [_jpeg(thumb)]
    except ValueError as exc:
        raise _error(exc) from None
    notes = []
    if bool(result.valid[0]):
        notes.append(f"Person found (detector score {float(result.scores[0]):.2f}); 3D from "
                     f"{'the pose prior fitted to the keypoints' if result.method == 'fit' else 'the image network G alone'}.")
    else:
        notes.append("**No person detected**: the skeleton shown is the image network's guess on the whole photo, not a "
                     "person. Crop the photo around the person for a better result.")
    if len(result.other_boxes):
        notes.append(f"{len(result.other_boxes)} other person(s) ignored: the largest person is estimated.")
    if flip_test:
        notes.append("Flip test on: averaged with the mirrored photo's prediction.")
    pred = Prediction("image", result, frames, scale, viz.axis_ranges(result.joints3d), notes)
    return result.to_dict(), _prediction_figure(pred, 0), pred


def predict_clip(ctx: AppContext, video: str | None, flip_test: bool = False, refine: bool = False,
                 method: str = "fit", progress: gr.Progress = gr.Progress()) -> tuple[dict, Prediction]:  # noqa: B008  # fmt: skip
    """API ``/predict_clip``: a video file -> pose JSON (one frame entry per video frame); ``method`` as for photos."""
    if not video:
        raise gr.Error("Add a video clip first.")
    m = _method(method)
    try:
        info = probe_video(video)
        progress(0.0, desc="decoding the clip")
        frames = list(itertools.islice(iter_video(video, max_side=CLIP_MAX_SIDE), MAX_CLIP_FRAMES))
        if not frames:
            raise ValueError("the clip has no frames")
        result = ctx.photos.predict_clip(
            np.stack(frames), fps=info.fps, flip_test=bool(flip_test), refine=bool(refine), method=m,
            progress=lambda done, total: progress((done, total or len(frames)), desc="detecting and tracking the person"),
        )  # fmt: skip
        scale = _downscale(frames[0], CLIP_THUMB_MAX_SIDE)[1]
        thumbs = [_jpeg(_downscale(f, CLIP_THUMB_MAX_SIDE)[0]) for f in frames]
    except ValueError as exc:
        raise _error(exc, video) from None
    n, found = result.num_frames, int(result.valid.sum())
    notes = [f"{n} frames at {result.fps:.3g} fps; person found in {found} of them."]
    if info.frames > MAX_CLIP_FRAMES:
        notes.append(f"**Note:** the clip was cut to its first {MAX_CLIP_FRAMES} frames (of {info.frames}).")
    if refine:
        notes.append("Refined with the motion prior (30-frame windows).")
    if flip_test:
        notes.append("Flip test on.")
    pred = Prediction("clip", result, thumbs, scale, viz.axis_ranges(result.joints3d), notes)
    return result.to_dict(), pred


def write_exports(ctx: AppContext, pred: Prediction) -> Prediction:
    """Write JSON, BVH and GLB of a prediction into a fresh folder of the app's temp dir (once per prediction)."""
    if pred.files:
        return pred
    out = ctx.temp_dir / "predictions" / uuid.uuid4().hex[:12]
    out.mkdir(parents=True, exist_ok=True)
    r = pred.result
    stem = "nlrd_pose" if pred.kind == "image" else "nlrd_clip"
    files = [
        write_json(out / f"{stem}.json", r.joints3d, r.fps, boxes=r.boxes, scores=r.scores, valid=r.valid, z=r.z),
        write_bvh(out / f"{stem}.bvh", r.joints3d, r.fps),
        write_glb(out / f"{stem}.glb", r.joints3d, fps=r.fps),
    ]
    # The viewer shows the downloadable GLB itself: a clip's is an animation that plays at the clip's rate.
    pred.files, pred.preview_glb = [str(f) for f in files], str(files[-1])
    return pred


def show_prediction(ctx: AppContext, pred: Prediction | None) -> tuple[Any, ...]:
    """UI follow-up of a prediction: overlay, downloads, GLB view, frame slider, status; stops playback."""
    if pred is None:
        return (gr.skip(),) * 9
    try:
        write_exports(ctx, pred)
    except ValueError as exc:
        raise _error(exc) from None
    n = pred.num_frames
    status = "\n\n".join(pred.notes)
    # Front view from far enough to see the whole skeleton: the default frames it too tightly.
    glb = gr.Model3D(value=pred.preview_glb, camera_position=(90, 85, 3.2))
    return (_overlay(pred, 0), pred.files, glb, _slider_update(n), gr.update(visible=n > 1),
            status, False, gr.Timer(active=False), gr.update(value="▶ Play"))  # fmt: skip


def clear_prediction() -> tuple[Any, ...]:
    """After a failed request: every output of the Predict tab emptied (the error itself shows as a toast),
    in the order ``[json, 3D plot, state, *show_prediction's outputs]``."""
    status = "**The last request failed** (see the message); nothing from an earlier prediction is shown."
    return (None, None, None, None, None, None, _slider_update(1), gr.update(visible=False), status, False,
            gr.Timer(active=False), gr.update(value="▶ Play"))  # fmt: skip


def prediction_frame(ctx: AppContext, pred: Prediction | None, t: Any) -> tuple[Any, Any]:
    """Redraw the 3D view and the overlay at frame t (frame slider)."""
    if pred is None:
        return gr.skip(), gr.skip()
    i = _frame_index(t, pred.num_frames)
    return _prediction_figure(pred, i), _overlay(pred, i)


def _advance(t: Any, n: int, fps: float) -> int:
    """Next frame of a playing clip: fps * tick period frames on (about real time when the server keeps up)."""
    step = max(1, round(fps * PLAY_INTERVAL_S))
    return (_frame_index(t, n) + step) % max(n, 1)


def prediction_tick(ctx: AppContext, pred: Prediction | None, t: Any) -> tuple[Any, Any, Any]:
    """gr.Timer tick while playing a clip: next frame (wrapping around)."""
    if pred is None or pred.num_frames < 2:
        return gr.skip(), gr.skip(), gr.skip()
    i = _advance(t, pred.num_frames, pred.result.fps)
    return i, _prediction_figure(pred, i), _overlay(pred, i)


def toggle_play(playing: bool) -> tuple[bool, gr.Timer, dict[str, Any]]:
    """Play / pause button: flips the per-user flag, the timer and the button's label."""
    now = not bool(playing)
    return now, gr.Timer(value=PLAY_INTERVAL_S, active=now), gr.update(value="❚❚ Pause" if now else "▶ Play")


# ----------------------------------------------------------------------------- Latent explorer handlers
def decode_latent(ctx: AppContext, *z: float) -> PlotData:
    """API ``/decode_latent``: 32 latent values in [-1, 1] -> the decoded pose's 3D figure.

    The slider path: the figure's JSON is written straight from the explorer's template (the same
    figure ``viz.pose_figure`` builds, without building and validating plotly objects per move).
    """
    try:
        zv = _latent_vector(z, ctx.latent_dim)
        joints = ctx.predictor.decode(zv[None])[0]
    except ValueError as exc:
        raise _error(exc) from None
    if ctx.explore_template is None:
        ctx.explore_template = viz.PoseFigureTemplate("decoded pose", axis_range=ctx.explore_range, uirevision=UIREV_EXPLORE)
    return PlotData(type="plotly", plot=ctx.explore_template.to_json(joints))


def random_latent(ctx: AppContext, seed: Any) -> list[float]:
    """Slider values of one prior sample U[-1, 1]^D with a given seed."""
    try:
        s = int(seed) if seed is not None else None
    except (TypeError, ValueError):
        raise gr.Error(f"seed must be an integer, got {seed!r}") from None
    return [round(float(v), 2) for v in ctx.predictor.sample(1, seed=s)[0]]


def reset_latent(ctx: AppContext) -> list[float]:
    """All sliders to 0 (the centre of the prior)."""
    return [0.0] * ctx.latent_dim


def encode_last_prediction(ctx: AppContext, pred: Prediction | None, t: Any) -> list[float]:
    """Slider values of the encoder's latent for the user's last prediction (the shown frame of a clip)."""
    if pred is None:
        raise gr.Error("No prediction yet: run one in the Predict tab first.")
    i = _frame_index(t, pred.num_frames)
    z = ctx.predictor.encode(pred.result.joints3d[i][None])[0]
    return [round(float(v), 2) for v in np.clip(z, -1.0, 1.0)]


def nearest_pose(ctx: AppContext, *z: float) -> tuple[go.Figure, str]:
    """The bank pose nearest (MPJPE) to the decoded pose, overlaid on it, with the distances."""
    try:
        zv = _latent_vector(z, ctx.latent_dim)
        joints = ctx.predictor.decode(zv[None])[0]
    except ValueError as exc:
        raise _error(exc) from None
    errs = mpjpe(ctx.bank_joints, np.broadcast_to(joints, ctx.bank_joints.shape), reduce=False)
    k = int(np.argmin(errs))
    dz = float(np.linalg.norm(ctx.bank_z[k] - ctx.predictor.encode(joints[None])[0]))
    fig = viz.pose_figure([joints, ctx.bank_joints[k]], labels=["decoded pose", f"bank pose #{k}"],
                          axis_range=ctx.explore_range, uirevision=UIREV_NEAREST)  # fmt: skip
    text = (f"**Nearest bank pose: #{k}** of {len(ctx.bank_joints):,}: MPJPE **{float(errs[k]):.1f} mm**; "
            f"latent distance ‖E(decoded) − E(bank)‖ = {dz:.3f}. The median bank pose is "
            f"{float(np.median(errs)):.0f} mm away.")  # fmt: skip
    return fig, text


def _endpoint(ctx: AppContext, mode: str, seed: Any, sliders: Sequence[float]) -> np.ndarray:
    """An interpolation end point: the current sliders or a seeded prior sample."""
    if mode == ENDPOINT_MODES[1]:
        return _latent_vector(sliders, ctx.latent_dim)
    try:
        return ctx.predictor.sample(1, seed=int(seed))[0]
    except (TypeError, ValueError):
        raise gr.Error(f"seed must be an integer, got {seed!r}") from None


def interpolate(ctx: AppContext, a_mode: str, a_seed: Any, b_mode: str, b_seed: Any, steps: Any,
                *z: float) -> tuple[Sequence3D, go.Figure, dict[str, Any], str]:  # fmt: skip
    """Decode the straight line between latents A and B (each a seeded sample or the current sliders)."""
    za, zb = _endpoint(ctx, a_mode, a_seed, z), _endpoint(ctx, b_mode, b_seed, z)
    n = int(np.clip(int(steps or INTERP_STEPS), 2, 120))
    s = np.linspace(0.0, 1.0, n, dtype=np.float32)[:, None]
    joints = ctx.predictor.decode((1.0 - s) * za + s * zb)
    captions = [f"s = {float(v):.2f}" for v in s[:, 0]]
    seq = Sequence3D(joints, viz.axis_ranges(joints), captions=captions)
    dist = float(np.linalg.norm(za - zb))
    text = f"‖A − B‖ = {dist:.2f} in latent space; {n} steps. Press ▶ Play or drag the slider."
    return seq, _sequence_figure(seq, 0), _slider_update(n), text


def _sequence_figure(seq: Sequence3D, t: int) -> go.Figure:
    """Frame t of an interpolation, in the sequence's fixed 3D range."""
    label = seq.captions[t] if seq.captions else f"frame {t}"
    return viz.pose_figure(seq.joints[t], labels=label, axis_range=seq.axis_range, uirevision=UIREV_INTERP)


def sequence_frame(ctx: AppContext, seq: Sequence3D | None, t: Any) -> Any:
    """The interpolation's frame slider: redraw step t."""
    if seq is None:
        return gr.skip()
    return _sequence_figure(seq, _frame_index(t, len(seq.joints)))


def sequence_tick(ctx: AppContext, seq: Sequence3D | None, t: Any) -> tuple[Any, Any]:
    """gr.Timer tick while playing an interpolation: the next step (wrapping around)."""
    if seq is None or len(seq.joints) < 2:
        return gr.skip(), gr.skip()
    n = len(seq.joints)
    i = _frame_index(t, n) + 1
    i = 0 if i >= n else i
    return i, _sequence_figure(seq, i)


# ----------------------------------------------------------------------------- Relations handlers
def _relation_motion(ctx: AppContext, rel: Relation, seed: int) -> np.ndarray:
    """A (window, J, 3) motion decoded from a seeded motion-prior sample.

    The prior decodes 30-frame windows; the slow relations need 60 frames of the same motion at the
    same speed, so the decoded pose-latent sequence is resampled at half-frame steps (linear in z)
    before decoding the poses.
    """
    motion = ctx.predictor.motion
    assert motion is not None
    z_seq = motion.decode_latents(motion.sample(1, seed=seed))[0]  # (30, Dz)
    if rel.window != z_seq.shape[0]:
        src = np.arange(z_seq.shape[0], dtype=np.float64)
        dst = np.linspace(0.0, z_seq.shape[0] - 1.0, rel.window)
        z_seq = np.stack([np.interp(dst, src, z_seq[:, k]) for k in range(z_seq.shape[1])], axis=1).astype(np.float32)
    return ctx.predictor.decode(z_seq)


def compute_relation(ctx: AppContext, name: str, seed: int) -> RelationView:
    """Anchor and exact counterpart (poses, rendered images, latents) of one relation for one seed.

    Pose relations: a pose decoded from a seeded prior sample is rendered (``render_sample``) and the
    relation is applied to the render's camera-frame pose and to its image, so the counterpart image
    is exactly the image-side relation of the anchor image. Motion relations do the same with a
    motion decoded from the motion prior and ``render_clip``.
    """
    rel = get_relation(name)
    rng = np.random.default_rng(seed)
    p = ctx.predictor
    if rel.order == "pose":
        pose = p.decode(p.sample(1, seed=seed))[0]
        s = render_sample(pose, ctx.style, rng, size=RELATION_IMAGE_SIZE)
        anchor, counterpart = rel.pose_pair(s.joints3d)
        img_a, img_c = rel.image_pair(s.image)
        za, zc = p.encode(anchor[None])[0], p.encode(counterpart[None])[0]
        anchor, counterpart, img_a, img_c = anchor[None], counterpart[None], img_a[None], img_c[None]
    else:
        if p.motion is None:
            raise ValueError("motion relations need the motion prior (checkpoints/motion_ae.safetensors), which is not loaded")
        motion = _relation_motion(ctx, rel, seed)
        clip = render_clip(motion, ctx.style, rng, size=RELATION_CLIP_SIZE)
        anchor, counterpart = rel.pose_pair(clip.joints3d)
        img_a, img_c = rel.image_pair(clip.image)
        za, zc = p.motion.encode(anchor), p.motion.encode(counterpart)
    predicted, zp = None, None
    if rel.name in p.relations:
        zp = p.relate(rel.name, za)
        predicted = p.decode(zp)[None] if rel.order == "pose" else p.motion.decode(zp)  # type: ignore[union-attr]
    return RelationView(
        name=rel.name, order=rel.order, seed=int(seed), anchor=np.asarray(anchor, np.float32),
        counterpart=np.asarray(counterpart, np.float32), anchor_images=np.asarray(img_a), counterpart_images=np.asarray(img_c),
        latent_anchor=np.asarray(za, np.float32), latent_counterpart=np.asarray(zc, np.float32),
        distance=float(np.linalg.norm(za - zc)), axis_range=viz.axis_ranges(anchor, counterpart),
        predicted=None if predicted is None else np.asarray(predicted, np.float32),
        latent_predicted=None if zp is None else np.asarray(zp, np.float32),
    )  # fmt: skip


def relation_network_text(view: RelationView | None) -> str:
    """What the relation network predicts for this pair, or why there is no prediction."""
    if view is None:
        return "**Relation network prediction**: no pair yet."
    if view.latent_predicted is None:
        return (f"**Relation network prediction**: no network is shipped for *{view.name}* "
                "(train one with `python -m training.train_relations`).")  # fmt: skip
    err = float(np.linalg.norm(view.latent_predicted - view.latent_counterpart))
    return (f"**Relation network prediction** (third skeleton, green in the PCA map): it maps the anchor's latent to "
            f"within **{err:.3f}** of the exact counterpart's, across a distance d = {view.distance:.3f} "
            f"({100 * err / max(view.distance, 1e-9):.0f}% of d). The network learned this jump from mocap alone.")  # fmt: skip


def _relation_figure(view: RelationView, t: int) -> go.Figure:
    """Anchor and counterpart at frame t, side by side, in one fixed range for all frames."""
    poses, titles = [view.anchor[t], view.counterpart[t]], ["anchor", "exact counterpart"]
    if view.predicted is not None:
        poses.append(view.predicted[min(t, len(view.predicted) - 1)])
        titles.append("relation network")
    fig = viz.poses_side_by_side(poses, titles=titles, uirevision=UIREV_RELATION)
    return _fixed_ranges(fig, view.axis_range)


def relation_view(ctx: AppContext, ref: RelationRef) -> RelationView:
    """The pair a user's state names: from the server's store of recent pairs, else computed (and stored)."""
    view = ctx.relation_views.get(ref)
    if view is None:
        view = compute_relation(ctx, ref.name, ref.seed)
        ctx.relation_views.put(ref, view)
        trim_memory()  # the render's buffers (and an evicted pair) were just freed
    return view


def relation_pair(ctx: AppContext, name: str, seed: Any) -> tuple[go.Figure, float | None, RelationRef | None]:
    """API ``/relation_pair``: relation name + seed -> (anchor / counterpart 3D figure, latent distance d).

    The state output names the pair (:class:`RelationRef`); the pair itself stays in the server's store.
    Without the motion prior, a motion relation returns a figure that says so and no distance.
    """
    try:
        s = int(seed)
    except (TypeError, ValueError):
        raise gr.Error(f"seed must be an integer, got {seed!r}") from None
    try:
        rel = get_relation(str(name))
        if rel.order == "motion" and not ctx.has_motion:
            msg = "Motion relations need the motion prior (checkpoints/motion_ae.safetensors), which is not loaded."
            return _message_figure(msg), None, None
        ref = RelationRef(rel.name, s)
        view = relation_view(ctx, ref)
    except ValueError as exc:
        raise _error(exc) from None
    return _relation_figure(view, 0), round(view.distance, 4), ref


def relation_explanation(ctx: AppContext, name: str) -> str:
    """Teaching text of a relation: its description, which latent space it lives in, and the idea of NLRD."""
    try:
        rel = get_relation(str(name))
    except ValueError as exc:
        raise _error(exc) from None
    if rel.order == "pose":
        space = "the pose latent space z (32-d): d = ‖Ep(anchor) − Ep(counterpart)‖, Ep the pose encoder"
    else:
        space = (f"the motion latent space v (128-d) of 30-frame windows: d = ‖Em(anchor) − Em(counterpart)‖, "
                 f"Em the motion encoder; the anchor is built from a {rel.window}-frame window")  # fmt: skip
    text = f"### {rel.name}\n{rel.description}\n\n*Lives in {space}.*"
    if rel.order == "motion" and not ctx.has_motion:
        text += "\n\n**The motion prior is not loaded**, so motion relations cannot be shown."
    return text + "\n\n" + NON_LOCAL_TEXT


def show_relation(ctx: AppContext, ref: RelationRef | None) -> tuple[Any, ...]:
    """UI follow-up of /relation_pair: images, latent PCA map, frame slider; stops playback."""
    if ref is None:
        msg = _message_figure("No relation pair to map.", height=320)
        return (
            None,
            None,
            msg,
            _slider_update(1),
            gr.update(visible=False),
            False,
            gr.Timer(active=False),
            relation_network_text(None),
        )
    view = relation_view(ctx, ref)
    n = len(view.anchor)
    if view.order == "pose":
        bank, space = ctx.bank_z, "pose latents z"
    else:
        bank, space = ctx.motion_bank_v, "motion latents v"
    if bank is None:
        pca = _message_figure("No latent bank for this relation.", height=320)
    else:
        highlights = {"anchor": view.latent_anchor, "counterpart": view.latent_counterpart}
        if view.latent_predicted is not None:
            highlights["relation network"] = view.latent_predicted
        pca = viz.latent_pca_figure(bank, highlights=highlights,
                                    pairs=[(view.latent_anchor, view.latent_counterpart)],
                                    bank_name=f"encoded prior samples ({space})", uirevision=UIREV_PCA, height=380)  # fmt: skip
        pca.update_layout(legend={"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.18, "yanchor": "top"},
                          margin={"b": 70})  # fmt: skip
    return (view.anchor_images[0], view.counterpart_images[0], pca, _slider_update(n), gr.update(visible=n > 1),
            False, gr.Timer(active=False), relation_network_text(view))  # fmt: skip


def relation_frame(ctx: AppContext, ref: RelationRef | None, t: Any) -> tuple[Any, Any, Any]:
    """The relation's frame slider: 3D pair and both images at frame t (motion relations)."""
    if ref is None:
        return gr.skip(), gr.skip(), gr.skip()
    view = relation_view(ctx, ref)
    i = _frame_index(t, len(view.anchor))
    return _relation_figure(view, i), view.anchor_images[i], view.counterpart_images[i]


def relation_tick(ctx: AppContext, ref: RelationRef | None, t: Any) -> tuple[Any, ...]:
    """gr.Timer tick while playing a motion relation: the next frame (wrapping around)."""
    view = None if ref is None else relation_view(ctx, ref)
    if view is None or len(view.anchor) < 2:
        return (gr.skip(),) * 4
    i = _advance(t, len(view.anchor), view.fps)
    return (i, *relation_frame(ctx, ref, i))


def random_seed() -> int:
    """A fresh seed for the relation tab's dice button."""
    return int(np.random.default_rng().integers(0, 100_000))


def next_seed(seed: Any) -> int:
    """The explorer's random button: seed + 1 (0 when the box is empty)."""
    try:
        return int(seed) + 1
    except (TypeError, ValueError):
        return 0


# ----------------------------------------------------------------------------- Adapt handlers
ADAPT_INTRO = (
    "Adapt the image model G to new footage **without labels**. A copy of G trains on unlabelled target "
    "clips (its blocks from `layer2`, the paper's Res-3, up; the earlier ones stay frozen) with the terms you "
    "pick: **lcr** / **hcr** (contrastive consistency of frames / motions under photometric changes), the "
    "**relations** whose networks are shipped (the non-local relation distillation: G's latent for a flipped "
    "or rotated image must equal the relation network applied to G's latent for the original) and "
    "**ensemble** (G's pose pulled towards the frozen source model's average over the mirrored and rotated "
    "views: how the shipped adapted G was trained). One Adam per term, stepped in turn; the learning rate is "
    "the relation terms' (the contrastive and ensemble terms keep the recipe's ratios to it). "
    "A session adapts a copy of the **source-only Gs** (where the method starts; the app itself predicts with "
    "the shipped G adapted to real photos) or, if you choose, of the app's own G. "
    "The built-in clips are labelled synthetic target-style renders of held-out poses, so the target "
    "error is measured on a fixed set of 64 renders; your own videos have no labels, so only how far the "
    "predictions moved is shown. **Real photos and videos** (your uploads, else the real photos and clips among "
    "the app's examples, else a sample of the data folder's exercise photos) bring MediaPipe's 2D keypoints and "
    "the pose prior's fits to them: the **keypoints**, **fit3d** and **source** terms (every block of G trains); "
    "every fourth frame is held out, and the curve is G's 2D agreement with MediaPipe there. "
    "The app keeps predicting with the shipped weights; save the adapted G to a "
    "run folder to use it. One session runs at a time (others wait in the queue)."
)


def adapt_devices() -> list[str]:
    """Where a session can train: the CPU, and CUDA when a GPU is visible."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def adapt_defaults(ctx: AppContext, device: str, source: str = ADAPT_SOURCES[0]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Terms and steps of a default session on ``device`` for the chosen target (follows the device and target
    choices: CPU gets a smaller budget, real photos the keypoint terms)."""
    try:
        s = default_settings(ctx.predictor, str(device), real=source == ADAPT_SOURCES[2])
    except ValueError as exc:
        raise _error(exc) from None
    return gr.update(value=list(s.terms)), gr.update(value=s.steps)


def adapt_start_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """(label, value) pairs of the G a session can start from (see ``SessionSettings.start``)."""
    labels = {"gs": "source-only Gs (where the method starts)",
              "predictor": f"the app's G ({ctx.predictor.meta.get('image_checkpoint', 'loaded')})"}  # fmt: skip
    return [(labels[v], v) for v in start_options(ctx.predictor)]


def _adapt_settings(ctx: AppContext, terms: Any, steps: Any, learning_rate: Any, device: Any,
                    start: Any = "auto") -> SessionSettings:  # fmt: skip
    """The UI / API values as checked session settings (a gr.Error says what is wrong)."""
    try:
        n = int(float(steps))
        lr = None if learning_rate in (None, "") else float(learning_rate)
    except (TypeError, ValueError):
        raise gr.Error(f"steps must be a whole number and the learning rate a number, got {steps!r} and "
                       f"{learning_rate!r}") from None  # fmt: skip
    names = [t.strip() for t in terms.split(",")] if isinstance(terms, str) else [str(t) for t in (terms or [])]
    usable = available_terms(ctx.predictor)
    unknown = [t for t in names if t not in usable]
    if unknown:
        raise gr.Error(f"unknown adaptation terms {unknown}; available: {usable}")
    try:
        base = default_settings(ctx.predictor, str(device or "auto"))
        settings = SessionSettings(tuple(names), n, lr, base.device, eval_every=max(1, -(-n // 6)),
                                   report_seconds=base.report_seconds, start=str(start or "auto"))  # fmt: skip
        return settings.checked()
    except ValueError as exc:
        raise _error(exc) from None


def _builtin_real_paths(ctx: AppContext) -> list[str]:
    """Real photos and clips for a real session without uploads: the examples folder's, else a sample of the
    data folder's tuning exercise photos (never the held-out ones)."""
    if ctx.examples_dir is not None:
        images, clips = _scan_examples(ctx.examples_dir)
        if images or clips:
            return images + clips
    try:
        return [str(p) for p in builtin_real_photos(default_data_root())]
    except ValueError:
        raise gr.Error("Add photos or videos of people (no examples folder, and no data folder with exercise photos "
                       "here).") from None


def _adapt_target(ctx: AppContext, source: str, videos: Any, progress: Callable[..., Any]) -> TargetData:
    """The session's target clips: the built-in renders (made once, on first use), the uploaded videos, or real
    photos and videos (uploads, else the built-in real ones, prepared once)."""
    if source == ADAPT_SOURCES[2]:
        uploads = [str(v) for v in (videos or [])]
        key = "real:" + "|".join(uploads)
        with ctx.adapt_data_lock:
            if key not in ctx.adapt_data:
                paths = uploads or _builtin_real_paths(ctx)
                progress(0.0, desc=f"finding the people in {len(paths)} photos / videos and fitting the prior")
                try:
                    data = real_target_data(paths, ctx.predictor)
                except ValueError as exc:
                    raise _error(exc, uploads) from None
                if uploads:
                    return data  # uploads are not kept (one session each)
                ctx.adapt_data[key] = data
            return ctx.adapt_data[key]
    if source == ADAPT_SOURCES[1]:
        paths = [str(v) for v in (videos or [])]
        if not paths:
            raise gr.Error("Add one or more videos (each at least 2 s long), or choose the built-in clips.")
        progress(0.0, desc="tracking the person in your videos")
        try:
            return video_target_data(paths, ctx.predictor.image_size)
        except ValueError as exc:
            raise _error(exc, paths) from None
    if source != ADAPT_SOURCES[0]:
        raise gr.Error(f"clips source must be one of {list(ADAPT_SOURCES)}, got {source!r}")
    with ctx.adapt_data_lock:
        if "builtin" not in ctx.adapt_data:
            progress(0.0, desc="rendering the built-in target clips (first session only)")
            ctx.adapt_data["builtin"] = builtin_target_data(ctx.predictor.image_size, ctx.style)
        return ctx.adapt_data["builtin"]


def _adapt_loss_figure(report: Report | None) -> go.Figure:
    """Per-term loss curves (log scale: the contrastive and relation losses differ by an order of magnitude)."""
    if report is None or not any(report.losses.values()):
        return _message_figure("Per-term losses appear here while a session runs.", height=300)
    return viz.loss_curves_figure(report.losses, title="Loss per term", log_y=True, y_title="loss (log scale)",
                                  uirevision=UIREV_ADAPT_LOSS, height=300)  # fmt: skip


def _adapt_error_figure(report: Report | None, labelled: bool = True, real: bool = False) -> go.Figure:
    """Target error (MPJPE, mm) on the fixed labelled renders, before step 0 and every few steps; for real data,
    G's 2D agreement with MediaPipe on the held-out real frames."""
    if real:
        if report is None or not report.agreement:
            return _message_figure("G's agreement with MediaPipe on the held-out real frames appears after the first "
                                   "evaluation.", height=300)  # fmt: skip
        fig = viz.loss_curves_figure({"PCK@0.2": report.agreement}, title="Agreement with MediaPipe (held-out real frames)",
                                     y_title="PCK@0.2", uirevision=UIREV_ADAPT_ERR, height=300)  # fmt: skip
        fig.update_traces(line={"color": "#2ca02c"})
        return fig
    if not labelled:
        return _message_figure("Your videos have no 3D labels, so there is no target error:\n"
                               "the comparison below shows how the predictions moved.", height=300)  # fmt: skip
    if report is None or not report.errors:
        return _message_figure("The target error appears after the first evaluation.", height=300)
    fig = viz.loss_curves_figure({"target MPJPE": report.errors}, title="Target error (labelled target renders)",
                                 y_title="MPJPE (mm)", uirevision=UIREV_ADAPT_ERR, height=300)  # fmt: skip
    fig.update_traces(line={"color": "#d62728"})
    return fig


def _adapt_status(report: Report, session: AdaptSession) -> str:
    """One status line: step, time, latest losses, target error so far."""
    state = {"evaluating": "Evaluating the starting G", "training": "Adapting", "done": "**Done**",
             "cancelled": "**Cancelled**"}.get(report.phase, report.phase)  # fmt: skip
    parts = [f"{state}: step **{report.step} / {report.steps}** · {report.seconds:.0f} s on {session.device.type}"]
    losses = report.latest_losses()
    if losses:
        parts.append(" · ".join(f"{k} {v:.3g}" for k, v in losses.items()))
    if report.errors:
        first, last = report.errors[0][1], report.errors[-1][1]
        parts.append(f"target error {first:.1f} → {last:.1f} mm")
    if report.agreement:
        first, last = report.agreement[0][1], report.agreement[-1][1]
        parts.append(f"agreement with MediaPipe (held-out real frames) {first:.3f} → {last:.3f}")
    if report.finished and report.step:
        parts.append(_kept_weights_note(report))
    if DEMO_MOTIONS in session.data.description:
        parts.append("⚠ No prepared motion capture here: the built-in clips show synthetic demo motions, so this "
                     "target error is not comparable to the measured tables (`python -m training.prepare_data`).")  # fmt: skip
    return "  \n".join(parts)


def _kept_weights_note(report: Report) -> str:
    """Which weights the session keeps (the last step's) and, when the curve's best point was earlier, says so."""
    text = (f"The session keeps G as it is after its last step (step {report.step}): that is what the comparison shows "
            "and what *Save* writes.")
    curve = report.errors or [(s, -v) for s, v in report.agreement]  # lower is better in both
    if curve:
        best_step, best = min(curve, key=lambda sv: sv[1])
        if best_step != report.step and best < curve[-1][1]:
            shown = f"{best:.1f} mm" if report.errors else f"PCK {-best:.3f}"
            text += (f" The curve was best at step {best_step} ({shown}); weights are not picked by that curve, because "
                     "it is measured on the very frames the session is judged on.")  # fmt: skip
    return text


def _adapt_comparison(session: AdaptSession) -> tuple[go.Figure, list[tuple[np.ndarray, str]]]:
    """Before / after skeletons on the same evaluation frames (with the ground truth when labelled), and those frames."""
    # Three frames that show the spread behind the headline: the most improved, the median and the most worsened.
    c = session.comparison(REPRESENTATIVE)
    after = f"after {session.step} steps"
    if c["truth"] is not None:
        groups = [[t, b, a] for t, b, a in zip(c["truth"], c["before"], c["after"], strict=True)]
        labels, colours = ["ground truth", "before (starting G)", after], ["#404040", "#ff7f0e", "#1f77b4"]
        errors = zip(c["roles"], c["index"], c["before_mm"], c["after_mm"], strict=True)
        titles = [f"{r}, frame {i}: {eb:.0f} → {ea:.0f} mm" for r, i, eb, ea in errors]
    else:
        groups = [[b, a] for b, a in zip(c["before"], c["after"], strict=True)]
        labels, colours = ["before (starting G)", after], ["#ff7f0e", "#1f77b4"]
        moved = np.linalg.norm(c["after"] - c["before"], axis=-1).mean(axis=-1)
        titles = [f"{r}, frame {i}: moved {m:.0f} mm" for r, i, m in zip(c["roles"], c["index"], moved, strict=True)]
    # the role on its own line above the numbers: three long titles side by side would run into each other
    fig = viz.pose_comparison_figure(groups, labels, colours, titles=[t.replace(", ", "<br>", 1) for t in titles],
                                     uirevision=UIREV_ADAPT_CMP, height=360)  # fmt: skip
    images = list(c["images"])
    if c.get("keypoints") is not None:  # real frames: MediaPipe's keypoints (green), G before (orange) and after (blue)
        images = [_keypoint_overlay(img, [k, b, a]) for img, k, b, a in
                  zip(images, c["keypoints"], c["before_2d"], c["after_2d"], strict=True)]  # fmt: skip
        titles = [f"{t} · green MediaPipe, orange before, blue after" for t in titles]
    return fig, [(img, t) for img, t in zip(images, titles, strict=True)]


def _keypoint_overlay(crop: np.ndarray, skeletons: list[np.ndarray], side: int = 256) -> np.ndarray:
    """A crop (S, S, 3) upscaled to ``side`` px with 2D skeletons (J, 2) in crop units drawn over it."""
    img = cv2.resize(crop, (side, side), interpolation=cv2.INTER_LINEAR)
    parents = H36M_17.parents
    for joints, colour in zip(skeletons, ((40, 200, 40), (255, 127, 14), (31, 119, 180)), strict=False):
        px = (np.asarray(joints) * side / 2 + (side - 1) / 2).round().astype(int)
        for j, p in enumerate(parents):
            if p >= 0:
                cv2.line(img, tuple(int(v) for v in px[j]), tuple(int(v) for v in px[p]), colour, 2, cv2.LINE_AA)
    return img


def adapt(ctx: AppContext, clips_source: str, videos: list[str] | None, terms: list[str] | str, steps: float,
          learning_rate: float | None, device: str, start: str = "auto", previous: str | None = None,
          progress: gr.Progress = gr.Progress()) -> Iterator[tuple[Any, ...]]:  # noqa: B008  # fmt: skip
    """API ``/adapt``: run one self-adaptation session; the final result is its JSON summary.

    Args (API): clips source (``"built-in synthetic target clips"`` or ``"my videos"``), videos (files,
    for "my videos"), terms (a list, or a comma-separated string), steps, learning rate (None: the
    recipe's), device (``"cpu"`` or ``"cuda"``), start (``"gs"``: a copy of the source-only Gs,
    ``"predictor"``: of the app's G, ``"auto"``: Gs when shipped; optional).

    Yields (summary JSON, loss figure, target-error figure, before / after figure, status, session id)
    while it runs; only the last yield carries the summary (before / after target error, final losses,
    steps done). The session itself is kept in ``ctx.adapt_sessions`` and the user's state holds its id;
    ``previous`` (that state's value, not an API argument) is the user's earlier session, released now:
    one kept session per browser session.
    """
    settings = _adapt_settings(ctx, terms, steps, learning_rate, device, start)
    data = _adapt_target(ctx, clips_source, videos, progress)
    try:
        session = AdaptSession(ctx.predictor, data, settings)
    except ValueError as exc:
        raise _error(exc) from None
    sid = ctx.adapt_sessions.add(session, replaces=previous)
    try:
        progress(0.0, desc="evaluating the starting G")
        real = data.real is not None
        yield (gr.skip(), _adapt_loss_figure(None), _adapt_error_figure(None, data.labelled, real), gr.skip(),
               f"Starting from {session.init_checkpoint}: {data.description}.", sid)  # fmt: skip
        report: Report | None = None
        try:
            for report in session.run():
                progress((report.step, report.steps), desc="adapting", unit="steps")
                if not report.finished:
                    yield (gr.skip(), _adapt_loss_figure(report), _adapt_error_figure(report, data.labelled, real),
                           gr.skip(), _adapt_status(report, session), sid)  # fmt: skip
        except ValueError as exc:
            raise _error(exc) from None
        assert report is not None
        compare, _ = _adapt_comparison(session)
        yield (session.summary(), _adapt_loss_figure(report), _adapt_error_figure(report, data.labelled, real), compare,
               _adapt_status(report, session) + "  \nSave the adapted G to a run folder below to keep it.", sid)  # fmt: skip
    finally:
        if session.phase == "ready":  # the event ended before the session ran (cancelled in the queue): nothing to keep
            ctx.adapt_sessions.release(sid)
        trim_memory(force=True)  # the session's training buffers were just freed


ADAPT_GONE = ("This adaptation is no longer kept on the server (it keeps the {n} most recent sessions, and none unused "
              "for an hour): run it again.")  # fmt: skip


def _kept_session(ctx: AppContext, sid: Any) -> AdaptSession | None:
    """The user's session from its id in their state; None before any run, a gr.Error once it was dropped."""
    if sid is None:
        return None
    session = ctx.adapt_sessions.get(sid)
    if session is None:
        raise gr.Error(ADAPT_GONE.format(n=ctx.adapt_sessions.capacity))
    return session


def adapt_frames(ctx: AppContext, sid: str | None) -> Any:
    """The compared evaluation frames with their before → after errors (follow-up of /adapt)."""
    session = ctx.adapt_sessions.get(sid)
    if session is None:
        return gr.skip()
    return _adapt_comparison(session)[1]


def cancel_adaptation(ctx: AppContext, sid: str | None) -> tuple[Any, ...]:
    """Cancel button: stop the running session after its current step and show where it got to.

    The button also cancels the /adapt event itself (``cancels=``), which removes a session still
    waiting in the queue and stops streaming updates; this handler then shows the final state.
    """
    session = ctx.adapt_sessions.get(sid)
    if session is None or session.phase not in ("evaluating", "training"):
        return (gr.skip(),) * 6 + ("No adaptation was running (a waiting one is taken out of the queue).",)
    session.cancel()
    session.stopped.wait(timeout=120)
    report = session.report()
    fig, frames = _adapt_comparison(session)
    return (session.summary(), _adapt_loss_figure(report), _adapt_error_figure(report, session.data.labelled), fig, frames,
            sid, _adapt_status(report, session) + "  \nThe adapted G as it is now can still be saved.")  # fmt: skip


def _shown_path(path: Path) -> Path:
    """A path as people see it: relative to the working folder when inside it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def save_adaptation(ctx: AppContext, sid: str | None, run_name: str) -> str:
    """Save the session's adapted G as ``<runs dir>/<run name>/adapted_g.safetensors`` (never into the shipped checkpoints)."""
    session = _kept_session(ctx, sid)
    if session is None:
        raise gr.Error("Run an adaptation first.")
    name = (run_name or "").strip()
    if not RUN_NAME.fullmatch(name):
        raise gr.Error("Name the run folder with letters, digits, '.', '_' or '-' (up to 64, no slashes): "
                       f"it is created below {_shown_path(ctx.runs_dir)}/.")  # fmt: skip
    try:
        path = session.save(ctx.runs_dir / name, protected=ctx.protected_dirs)
    except ValueError as exc:
        raise _error(exc) from None
    return (f"Saved the adapted G as it is after step {session.step}, the session's last, to `{_shown_path(path)}` with a "
            "JSON sidecar. Load it with "
            "`nlrd.inference.load_image_encoder`, or put it beside the priors as `adapted_g.safetensors`: "
            "`PosePredictor.from_pretrained` prefers it to Gs.")  # fmt: skip


# ----------------------------------------------------------------------------- About
_STAGES = (
    (
        "1",
        "Pose & motion priors",
        ["auto-encoders trained on", "motion capture only:", "pose ↔ z (32-d),", "30 frames ↔ v (128-d)"],
        "explore",
    ),
    ("2", "Source model Gs", ["labelled synthetic renders", "image → G → z → Dp + FK", "→ 3D pose (mm)"], "predict"),
    (
        "3",
        "Relation networks",
        ["exact relations (flip, rotate,", "reverse, slow) on poses and", "images; small networks", "map latent → latent"],
        "relations",
    ),  # noqa: E501
    (
        "4",
        "Self-adaptation",
        ["unlabelled target photos /", "clips: distil the non-local", "relations into G", "(no 3D labels needed)"],
        "adapt",
    ),  # noqa: E501
    (
        "5",
        "Inference",
        ["detect, crop, G, decode;", "flip test; motion-prior", "refinement for clips;", "JSON / BVH / GLB"],
        "predict",
    ),  # noqa: E501
)
_STAGE_COLOURS = ("#e8f1fb", "#fdf0e6", "#eaf6ea", "#f3ecf9", "#fbeaea")
_STAGE_STROKES = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#d62728")


def stages_svg() -> str:
    """Inline SVG of the method's stages (no external assets): five boxes joined by arrows."""
    w, h, bw, bh, gap, top = 1170, 250, 205, 150, 30, 40
    parts = [f'<svg viewBox="0 0 {w} {h}" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="NLRD stages" '
             'font-family="system-ui, -apple-system, Segoe UI, sans-serif">',
             '<defs><marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
             '<path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker></defs>']  # fmt: skip
    for i, (num, title, lines, tab) in enumerate(_STAGES):
        x = 10 + i * (bw + gap)
        parts.append(f'<rect x="{x}" y="{top}" width="{bw}" height="{bh}" rx="14" fill="{_STAGE_COLOURS[i]}" '
                     f'stroke="{_STAGE_STROKES[i]}" stroke-width="2"/>')  # fmt: skip
        parts.append(f'<circle cx="{x + 22}" cy="{top + 24}" r="13" fill="{_STAGE_STROKES[i]}"/>'
                     f'<text x="{x + 22}" y="{top + 29}" text-anchor="middle" font-size="14" font-weight="700" '
                     f'fill="white">{num}</text>')  # fmt: skip
        parts.append(f'<text x="{x + 42}" y="{top + 29}" font-size="13" font-weight="700" fill="#222">{escape(title)}</text>')
        for k, line in enumerate(lines):
            parts.append(f'<text x="{x + 14}" y="{top + 58 + 20 * k}" font-size="13" fill="#333">{escape(line)}</text>')
        parts.append(f'<text x="{x + bw / 2}" y="{top + bh + 26}" text-anchor="middle" font-size="12" '
                     f'fill="{_STAGE_STROKES[i]}">→ {TAB_IDS[tab]} tab</text>')  # fmt: skip
        if i < len(_STAGES) - 1:
            y = top + bh / 2
            parts.append(f'<line x1="{x + bw + 3}" y1="{y}" x2="{x + bw + gap - 3}" y2="{y}" stroke="#666" '
                         'stroke-width="2" marker-end="url(#arr)"/>')  # fmt: skip
    parts.append('<text x="10" y="22" font-size="13" fill="#666">Training runs left to right; the app shows each '
                 'stage in its tab.</text></svg>')  # fmt: skip
    return "".join(parts)


ABOUT_TEXT = """
**NLRD** (non-local latent relation distillation) estimates a person's 3D pose from one camera and can
adapt itself to a new kind of footage without any 3D labels.

* A **pose prior** (an adversarial auto-encoder trained on motion capture) gives every plausible pose a
  32-number code *z*; its decoder plus forward kinematics turn any *z* in [-1, 1]³² into a valid
  skeleton with fixed bone lengths. A **motion prior** does the same for 1-second windows (code *v*).
* The **image model G** only has to predict *z*; it is first trained on labelled synthetic renders (source domain).
* **Relations** such as a horizontal flip, an in-plane rotation or playing a clip backwards act
  *exactly* on both the image and the pose. In the latent space they are *non-local*: the flipped
  pose's code lies far away. Small relation networks learn these latent maps from the priors alone.
* **Self-adaptation**: on unlabelled target images, G's prediction for a transformed image must match
  the relation network applied to G's prediction for the original. This transfers the model to the new
  domain (real photos, new cameras) with no labels.

See the README for the data sources and licences, and docs/results.md for the measured accuracy of the shipped weights.
"""


# ----------------------------------------------------------------------------- layout
def _bind(fn: Callable[..., Any], ctx: AppContext) -> Callable[..., Any]:
    """``fn`` with the context bound; keeps the name and docstring (gradio derives labels and API names from them).

    A ``gr.Error`` the handler raises (its refusal of a bad request) is logged as one line and reaches the
    user shortened (:func:`_refusal`). The wrapper reports the signature of ``fn`` without ``ctx`` (gradio
    matches inputs to parameters, and finds the progress parameter, by signature) and stays a generator
    function for generators (gradio streams those). Not ``functools.update_wrapper``: its ``__wrapped__``
    would make ``inspect.signature`` report ``ctx`` again.
    """
    where = fn.__name__
    bound: Callable[..., Any]
    if inspect.isgeneratorfunction(fn):

        def bound(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(ctx, *args, **kwargs)
            except gr.Error as exc:
                raise _refusal(where, exc.message) from None

    else:

        def bound(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(ctx, *args, **kwargs)
            except gr.Error as exc:
                raise _refusal(where, exc.message) from None

    bound.__signature__ = inspect.signature(functools.partial(fn, ctx))  # type: ignore[attr-defined]
    bound.__name__, bound.__doc__ = fn.__name__, fn.__doc__
    return bound


def _goto(tab: str) -> Callable[[], gr.Tabs]:
    """Handler of an About-tab button: select another tab."""

    def go() -> gr.Tabs:
        return gr.Tabs(selected=tab)

    return go


def _header(ctx: AppContext) -> str:
    """Title and the loaded model in one line."""
    p = ctx.predictor
    motion = "motion prior loaded" if ctx.has_motion else "no motion prior"
    return (f"# NLRD: 3D human pose from a single camera\n"
            f"Non-local latent relation distillation for self-adaptive 3D pose estimation · v{nlrd.__version__} · "
            f"{p.meta.get('image_checkpoint', '?')} · {motion} · {p.device}")  # fmt: skip


def build_app(predictor: PosePredictor, examples_dir: str | None = None, *, temp_dir: str | Path | None = None,
              runs_dir: str | Path = DEFAULT_RUNS_DIR, checkpoints_dir: str | Path | None = None,
              photo_predictor: PosePredictor | None = None) -> gr.Blocks:  # fmt: skip
    """The Gradio app over a loaded predictor (start-up work: :func:`build_context`).

    Args:
        predictor: the loaded model.
        examples_dir: the user's photos / clips offered as examples.
        temp_dir: exports, examples and uploads; default a fresh folder removed at exit.
        runs_dir: the Adapt tab saves adapted models in named folders below it.
        checkpoints_dir: the weights folder the predictor came from; never written (nor is the shipped one).
        photo_predictor: the Predict tab's model (the real-photo family); default ``predictor``.

    The returned Blocks carries the context as ``demo.nlrd_context`` (for :func:`launch_app`).
    """
    ctx = build_context(predictor, examples_dir, temp_dir=temp_dir, photo_predictor=photo_predictor)
    ctx.runs_dir = Path(runs_dir).expanduser().resolve()
    if checkpoints_dir is not None:
        ctx.protected_dirs.append(Path(checkpoints_dir).expanduser().resolve())
    return build_blocks(ctx)


def build_blocks(ctx: AppContext) -> gr.Blocks:
    """Lay out the tabs and wire every control to its handler."""
    d = ctx.latent_dim
    zeros = [0.0] * d
    names = list(ctx.predictor.skeleton.joint_names)
    # Initial contents, so no panel starts empty.
    interp_seq0, interp_fig0, _, interp_text0 = interpolate(ctx, ENDPOINT_MODES[0], 1, ENDPOINT_MODES[0], 2, INTERP_STEPS, *zeros)
    top_joint = [names[int(j)] for j in np.argmax(ctx.influence, axis=1)]
    b = functools.partial(_bind, ctx=ctx)
    with gr.Blocks(title="NLRD · 3D human pose", delete_cache=(3600, 3600)) as demo:
        pred_state = gr.State(None, time_to_live=STATE_TTL_S)
        gr.Markdown(_header(ctx), elem_id="nlrd-header")
        with gr.Tabs(selected="predict") as tabs:
            # ------------------------------------------------------------------ Predict
            with gr.Tab("Predict", id="predict"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=320):
                        with gr.Tabs():
                            with gr.Tab("Photo", id="photo"):
                                image_in = readable_image_input(gr.Image(
                                    ctx.image_examples[0] if ctx.image_examples else None, type="numpy", height=300,
                                    elem_id="predict-photo",
                                    label="Photo: upload, paste or webcam snapshot", sources=["upload", "webcam", "clipboard"],
                                    # A mirrored snapshot would swap the person's left and right.
                                    webcam_options=gr.WebcamOptions(mirror=False)))  # fmt: skip
                                image_btn = gr.Button("Estimate 3D pose", variant="primary")
                                if ctx.image_examples:
                                    gr.Examples([[p] for p in ctx.image_examples], inputs=[image_in], examples_per_page=8,
                                                label="Examples: synthetic renders made at start-up" +
                                                (" and your photos" if ctx.examples_dir else ""))  # fmt: skip
                            with gr.Tab("Clip", id="clip"):
                                video_in = gr.Video(ctx.clip_examples[0] if ctx.clip_examples else None, sources=["upload"],
                                                    label="Video clip (cut to 15 s)", height=300, loop=True)  # fmt: skip
                                video_btn = gr.Button("Estimate 3D motion", variant="primary")
                                if ctx.clip_examples:
                                    gr.Examples([[p] for p in ctx.clip_examples], inputs=[video_in], examples_per_page=6,
                                                label="Examples" + (": a synthetic clip and your clips" if ctx.examples_dir
                                                                    else ": a synthetic clip rendered at start-up"))  # fmt: skip
                        with gr.Accordion("Options", open=True):
                            method_radio = gr.Radio([t for _, t in METHOD_CHOICES], value=METHOD_CHOICES[0][1],
                                                    label="3D from",
                                                    info="real photos: fit the pose prior to MediaPipe's keypoints; "
                                                         "the paper's image network G alone is for teaching")  # fmt: skip
                            flip_cb = gr.Checkbox(False, label="Flip test",
                                                  info="also predict the mirrored input and average: twice the model "
                                                       "time, about 3% lower error on target renders")  # fmt: skip
                            refine_cb = gr.Checkbox(False, label="Motion refinement (clips)", interactive=ctx.has_motion,
                                                    info="smooth through the motion prior" if ctx.has_motion
                                                    else "needs the motion prior, which is not loaded")  # fmt: skip
                    with gr.Column(scale=5):
                        # Right above the result, so "No person detected" and errors are seen without scrolling.
                        status_md = gr.Markdown("Pick a photo or clip and press *Estimate*.", elem_id="predict-status")
                        with gr.Row(equal_height=True):
                            pred_plot = gr.Plot(label="3D pose (drag to orbit)", scale=3, elem_id="predict-plot")
                            overlay_img = gr.Image(label="Input with the 2D projection", interactive=False, scale=2,
                                                   height=420, buttons=["download", "fullscreen"])  # fmt: skip
                        with gr.Row(visible=False, elem_classes="frame-row") as pred_frame_row:
                            pred_play = gr.Button("▶ Play", scale=0, min_width=110)
                            pred_frame = gr.Slider(0, 1, value=0, step=1, label="frame", scale=6)
                        with gr.Row(equal_height=False):
                            glb_view = gr.Model3D(label="GLB preview (clips play as an animation)", height=300,
                                                  clear_color=(0.97, 0.97, 0.97, 1.0), scale=3)  # fmt: skip
                            files_out = gr.File(label="Downloads: JSON · BVH · GLB", file_count="multiple",
                                                interactive=False, scale=2, elem_id="predict-files")  # fmt: skip
                        with gr.Accordion("Prediction JSON (nlrd-pose schema)", open=False):
                            json_out = gr.JSON(label="nlrd-pose", open=False)
                pred_playing = gr.State(False)
                pred_timer = gr.Timer(PLAY_INTERVAL_S, active=False)

            # ------------------------------------------------------------------ Latent explorer
            with gr.Tab("Latent explorer", id="explore"):
                gr.Markdown("Every pose the model can output is a point **z** in [-1, 1]³². Move the sliders and the "
                            "pose prior's decoder turns z into a skeleton (bone lengths are fixed, so every z is a "
                            "valid body). Each slider's label names the joint it moves most.")  # fmt: skip
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=340):
                        explore_plot = gr.Plot(label="Decoded pose", value=decode_latent(ctx, *zeros), elem_id="explore-plot")
                        with gr.Row():
                            seed_in = gr.Number(0, label="seed", precision=0, minimum=0, scale=1, min_width=90)
                            random_btn = gr.Button("Random sample", scale=2)
                            reset_btn = gr.Button("Reset (z = 0)", scale=2)
                        encode_btn = gr.Button("Encode my last prediction")
                    with gr.Column(scale=3):
                        by_dim: dict[int, gr.Slider] = {}
                        cols = 4
                        with gr.Row(elem_classes="latent-grid"):
                            for c in range(cols):
                                with gr.Column(min_width=150):
                                    for k in range(c, d, cols):  # row-major: z0 z1 z2 z3 on the first row
                                        by_dim[k] = gr.Slider(-1.0, 1.0, value=0.0, step=0.01, label=f"z{k} · {top_joint[k]}")
                        sliders = [by_dim[k] for k in range(d)]
                with gr.Row(equal_height=False):
                    with gr.Column():
                        gr.Markdown("#### Nearest real pose\nThe closest of 2,000 poses decoded from prior samples "
                                    "(by MPJPE), overlaid on the current pose.")  # fmt: skip
                        nearest_btn = gr.Button("Find the nearest bank pose")
                        nearest_fig0, nearest_text0 = nearest_pose(ctx, *zeros)
                        nearest_md = gr.Markdown(nearest_text0)
                        nearest_plot = gr.Plot(nearest_fig0, label="Decoded (blue/red) vs nearest bank pose (orange)")
                    with gr.Column():
                        gr.Markdown("#### Interpolation\nDecode the straight line from latent A to latent B.")
                        with gr.Row():
                            a_mode = gr.Radio(ENDPOINT_MODES, value=ENDPOINT_MODES[0], label="A from", min_width=150)
                            a_seed = gr.Number(1, label="A seed", precision=0, minimum=0, min_width=80)
                        with gr.Row():
                            b_mode = gr.Radio(ENDPOINT_MODES, value=ENDPOINT_MODES[0], label="B from", min_width=150)
                            b_seed = gr.Number(2, label="B seed", precision=0, minimum=0, min_width=80)
                        with gr.Row():
                            interp_steps = gr.Slider(2, 120, value=INTERP_STEPS, step=1, label="steps", scale=3)
                            interp_btn = gr.Button("Interpolate", variant="primary", scale=1)
                        interp_md = gr.Markdown(interp_text0)
                        interp_plot = gr.Plot(interp_fig0, label="Interpolated pose")
                        with gr.Row(elem_classes="frame-row"):
                            interp_play = gr.Button("▶ Play", scale=0, min_width=110)
                            interp_frame = gr.Slider(0, len(interp_seq0.joints) - 1, value=0, step=1, label="step", scale=6)
                with gr.Accordion("Which joints does each slider move? (finite differences of the decoder at z = 0)", open=False):
                    gr.Plot(viz.joint_influence_figure(ctx.influence, names, colorbar_title="mm / unit z"),
                            label="Joint displacement per unit of each latent dimension")  # fmt: skip
                interp_state = gr.State(interp_seq0, time_to_live=STATE_TTL_S)
                interp_playing = gr.State(False)
                interp_timer = gr.Timer(PLAY_INTERVAL_S, active=False)

            # ------------------------------------------------------------------ Relations
            with gr.Tab("Relations", id="relations"):
                rel_names = list(RELATIONS)
                with gr.Row(equal_height=False):
                    rel_dd = gr.Dropdown([(f"{n}  ({RELATIONS[n].order})", n) for n in rel_names], value=rel_names[0],
                                         label="Relation", scale=3)  # fmt: skip
                    rel_seed = gr.Number(0, label="seed", precision=0, minimum=0, scale=1, min_width=90)
                    rel_new = gr.Button("New sample", scale=1)
                    rel_dist = gr.Number(label="latent distance d", interactive=False, scale=1, precision=3,
                                         elem_id="relation-distance")  # fmt: skip
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3):
                        rel_plot = gr.Plot(label="Anchor and exact counterpart (3D; drag to orbit)", elem_id="relation-plot")
                        with gr.Row(visible=False, elem_classes="frame-row") as rel_frame_row:
                            rel_play = gr.Button("▶ Play", scale=0, min_width=110)
                            rel_frame = gr.Slider(0, 1, value=0, step=1, label="frame", scale=6)
                    with gr.Column(scale=2):
                        with gr.Row():
                            rel_img_a = gr.Image(label="Anchor image", interactive=False, height=220, buttons=["download"])
                            rel_img_c = gr.Image(label="Counterpart image", interactive=False, height=220, buttons=["download"])
                        gr.Markdown("The anchor is a synthetic render of the anchor pose; the counterpart image is the "
                                    "relation's exact image-side operation applied to it (flip, rotation about the "
                                    "centre, time reversal, ...).")  # fmt: skip
                        with gr.Group(elem_classes="placeholder-box"):
                            rel_net_md = gr.Markdown(relation_network_text(None))
                with gr.Row(equal_height=False):
                    rel_pca = gr.Plot(label="2D PCA of the latent space (like the paper's figure 3)")
                    rel_text = gr.Markdown(relation_explanation(ctx, rel_names[0]))
                rel_state = gr.State(None, time_to_live=STATE_TTL_S)  # a RelationRef: the pair is in ctx.relation_views
                rel_playing = gr.State(False)
                rel_timer = gr.Timer(PLAY_INTERVAL_S, active=False)

            # ------------------------------------------------------------------ Adapt
            with gr.Tab("Adapt", id="adapt"):
                defaults = default_settings(ctx.predictor, "auto")
                with gr.Accordion("What happens in a session", open=False):
                    gr.Markdown(ADAPT_INTRO)
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=340):
                        adapt_src = gr.Radio(list(ADAPT_SOURCES), value=ADAPT_SOURCES[0], label="Target clips")
                        adapt_videos = gr.File(file_count="multiple", file_types=["video", "image"], type="filepath", height=150,
                                               label="Your videos ('my videos'), or photos and videos ('real photos and "
                                                     "videos'; none: the built-in real ones)")  # fmt: skip
                        adapt_terms = gr.CheckboxGroup(available_terms(ctx.predictor), value=list(defaults.terms),
                                                       label="Terms (stepped in turn)", elem_id="adapt-terms")  # fmt: skip
                        with gr.Row():
                            adapt_steps = gr.Number(defaults.steps, label="steps", precision=0, minimum=1, maximum=5000,
                                                    min_width=90, elem_id="adapt-steps")  # fmt: skip
                            adapt_lr = gr.Number(AdaptStageConfig().lr_relation, label="learning rate", minimum=0, min_width=110)
                            adapt_device = gr.Radio(adapt_devices(), value=defaults.device, label="device", min_width=110)
                        starts = adapt_start_choices(ctx)
                        adapt_start = gr.Radio(starts, value=starts[0][1], label="Start from", elem_id="adapt-start")
                        with gr.Row():
                            adapt_btn = gr.Button("Start adaptation", variant="primary")
                            adapt_cancel = gr.Button("Cancel", variant="stop")
                        adapt_status_md = gr.Markdown("Pick the clips and terms, then *Start adaptation*. A default CPU "
                                                      f"session ({defaults.steps} steps) takes about a minute.",
                                                      elem_id="adapt-status")  # fmt: skip
                        with gr.Row(equal_height=True):
                            adapt_run = gr.Textbox(label=f"Run folder (below {_shown_path(ctx.runs_dir)}/)",
                                                   placeholder="my_adaptation", scale=3, min_width=150)  # fmt: skip
                            adapt_save = gr.Button("Save adapted G", scale=1, min_width=120)
                        adapt_save_md = gr.Markdown()
                    with gr.Column(scale=4):
                        with gr.Row(equal_height=True):
                            adapt_loss_plot = gr.Plot(_adapt_loss_figure(None), label="Losses", elem_id="adapt-loss-plot")
                            adapt_err_plot = gr.Plot(_adapt_error_figure(None), elem_id="adapt-error-plot",
                                                     label="Target error (renders) or agreement (real frames)")  # fmt: skip
                        adapt_cmp_plot = gr.Plot(_message_figure("Before / after skeletons on the same frames appear when "
                                                                 "a session ends.", height=300),
                                                 label="Before / after on the same target frames (drag to orbit)",
                                                 elem_id="adapt-compare-plot")  # fmt: skip
                        adapt_frames_gallery = gr.Gallery(label="The compared frames", columns=ADAPT_COMPARE_FRAMES, height=200,
                                                          object_fit="contain", allow_preview=False)  # fmt: skip
                        with gr.Accordion("Session summary (JSON)", open=False):
                            adapt_summary = gr.JSON(label="summary")
                # The id of the user's session in ctx.adapt_sessions; when gradio drops the state, the session goes too.
                adapt_state = gr.State(None, time_to_live=STATE_TTL_S, delete_callback=ctx.adapt_sessions.release)

            # ------------------------------------------------------------------ About
            with gr.Tab("About", id="about"):
                gr.Markdown("## How it works")
                gr.HTML(stages_svg(), elem_classes="nlrd-diagram")
                with gr.Row():
                    go_buttons = {tab: gr.Button(f"Open {TAB_IDS[tab]}", size="sm")
                                  for tab in ("explore", "predict", "relations", "adapt")}  # fmt: skip
                gr.Markdown(ABOUT_TEXT)

        # ---------------------------------------------------------------------- events: Predict
        pred_follow_outputs = [
            overlay_img,
            files_out,
            glb_view,
            pred_frame,
            pred_frame_row,
            status_md,
            pred_playing,
            pred_timer,
            pred_play,
        ]
        photo_inputs = [image_in, flip_cb, method_radio]
        # A failed request clears every output of the last one, so nothing old can pass for its result.
        cleared = [json_out, pred_plot, pred_state, *pred_follow_outputs]
        image_event = image_btn.click(b(predict_image), photo_inputs, [json_out, pred_plot, pred_state],
                                      api_name="predict_image")  # fmt: skip
        image_event.success(b(show_prediction), [pred_state], pred_follow_outputs, api_visibility="private")
        image_event.failure(clear_prediction, None, cleared, api_visibility="private")
        video_event = video_btn.click(b(predict_clip), [video_in, flip_cb, refine_cb, method_radio], [json_out, pred_state],
                                      api_name="predict_clip")  # fmt: skip
        (
            video_event.success(b(show_prediction), [pred_state], pred_follow_outputs, api_visibility="private")
            .success(b(prediction_frame), [pred_state, pred_frame], [pred_plot, overlay_img], api_visibility="private")
        )
        video_event.failure(clear_prediction, None, cleared, api_visibility="private")
        pred_frame.input(b(prediction_frame), [pred_state, pred_frame], [pred_plot, overlay_img], api_visibility="private",
                         trigger_mode="always_last", show_progress="hidden")  # fmt: skip
        pred_play.click(toggle_play, [pred_playing], [pred_playing, pred_timer, pred_play], api_visibility="private")
        pred_timer.tick(b(prediction_tick), [pred_state, pred_frame], [pred_frame, pred_plot, overlay_img],
                        api_visibility="private", trigger_mode="once", show_progress="hidden")  # fmt: skip

        # ---------------------------------------------------------------------- events: Latent explorer
        # Outside the queue: the browser sends a slider move as one HTTP request (no queue join + event
        # stream round trip); decoding is a few ms and thread-safe, so nothing needs to wait in line.
        gr.on([s.input for s in sliders], b(decode_latent), sliders, explore_plot, api_name="decode_latent",
              trigger_mode="always_last", show_progress="hidden", queue=False)  # fmt: skip
        # The random button first moves to the next seed, so the seed shown is the one of the pose shown.
        random_event = random_btn.click(next_seed, [seed_in], [seed_in], api_visibility="private", queue=False).then
        for event, fn, inputs in ((random_event, random_latent, [seed_in]), (seed_in.submit, random_latent, [seed_in]),
                                  (reset_btn.click, reset_latent, []),
                                  (encode_btn.click, encode_last_prediction, [pred_state, pred_frame])):  # fmt: skip
            event(b(fn), inputs, sliders, api_visibility="private", show_progress="hidden").success(
                b(decode_latent), sliders, explore_plot, api_visibility="private", show_progress="hidden"
            )
        nearest_btn.click(b(nearest_pose), sliders, [nearest_plot, nearest_md], api_visibility="private")
        interp_btn.click(b(interpolate), [a_mode, a_seed, b_mode, b_seed, interp_steps, *sliders],
                         [interp_state, interp_plot, interp_frame, interp_md], api_visibility="private"
                         ).success(lambda: (False, gr.Timer(active=False), gr.update(value="▶ Play")), None,
                                   [interp_playing, interp_timer, interp_play], api_visibility="private")  # fmt: skip
        interp_frame.input(b(sequence_frame), [interp_state, interp_frame], interp_plot, api_visibility="private",
                           trigger_mode="always_last", show_progress="hidden")  # fmt: skip
        interp_play.click(toggle_play, [interp_playing], [interp_playing, interp_timer, interp_play], api_visibility="private")
        interp_timer.tick(b(sequence_tick), [interp_state, interp_frame], [interp_frame, interp_plot],
                          api_visibility="private", trigger_mode="once", show_progress="hidden")  # fmt: skip

        # ---------------------------------------------------------------------- events: Relations
        rel_follow_outputs = [rel_img_a, rel_img_c, rel_pca, rel_frame, rel_frame_row, rel_playing, rel_timer, rel_net_md]

        def show_pair(event: Any, api_name: str | None = None) -> None:
            kwargs: dict[str, Any] = {"api_name": api_name} if api_name else {"api_visibility": "private"}
            (
                event(b(relation_pair), [rel_dd, rel_seed], [rel_plot, rel_dist, rel_state], **kwargs)
                .success(b(show_relation), [rel_state], rel_follow_outputs, api_visibility="private")
                .success(lambda: gr.update(value="▶ Play"), None, rel_play, api_visibility="private")
            )

        show_pair(rel_dd.input, api_name="relation_pair")
        show_pair(rel_seed.submit)
        rel_dd.input(b(relation_explanation), [rel_dd], rel_text, api_visibility="private")
        rel_new.click(random_seed, None, rel_seed, api_visibility="private", queue=False).then(
            b(relation_pair), [rel_dd, rel_seed], [rel_plot, rel_dist, rel_state], api_visibility="private"
        ).success(b(show_relation), [rel_state], rel_follow_outputs, api_visibility="private").success(
            lambda: gr.update(value="▶ Play"), None, rel_play, api_visibility="private"
        )
        rel_frame.input(b(relation_frame), [rel_state, rel_frame], [rel_plot, rel_img_a, rel_img_c], api_visibility="private",
                        trigger_mode="always_last", show_progress="hidden")  # fmt: skip
        rel_play.click(toggle_play, [rel_playing], [rel_playing, rel_timer, rel_play], api_visibility="private")
        rel_timer.tick(b(relation_tick), [rel_state, rel_frame], [rel_frame, rel_plot, rel_img_a, rel_img_c],
                       api_visibility="private", trigger_mode="once", show_progress="hidden")  # fmt: skip

        # ---------------------------------------------------------------------- events: Adapt, About, load
        # One session at a time across all users: a second /adapt waits in the queue (its rank shows).
        adapt_event = adapt_btn.click(
            # adapt_state last: the id of the user's previous session, released when a new one starts (not an API argument).
            b(adapt), [adapt_src, adapt_videos, adapt_terms, adapt_steps, adapt_lr, adapt_device, adapt_start, adapt_state],
            [adapt_summary, adapt_loss_plot, adapt_err_plot, adapt_cmp_plot, adapt_status_md, adapt_state],
            api_name="adapt", concurrency_limit=1, concurrency_id="adapt", show_progress_on=[adapt_status_md])  # fmt: skip
        adapt_event.success(b(adapt_frames), [adapt_state], adapt_frames_gallery, api_visibility="private")
        adapt_cancel.click(b(cancel_adaptation), [adapt_state],
                           [adapt_summary, adapt_loss_plot, adapt_err_plot, adapt_cmp_plot, adapt_frames_gallery, adapt_state,
                            adapt_status_md], cancels=[adapt_event], api_visibility="private")  # fmt: skip
        adapt_device.input(b(adapt_defaults), [adapt_device, adapt_src], [adapt_terms, adapt_steps], api_visibility="private")
        adapt_src.input(b(adapt_defaults), [adapt_device, adapt_src], [adapt_terms, adapt_steps], api_visibility="private")
        adapt_save.click(b(save_adaptation), [adapt_state, adapt_run], adapt_save_md, api_visibility="private")
        for tab, btn in go_buttons.items():
            btn.click(_goto(tab), None, tabs, api_visibility="private", queue=False)
        # First visit: show the first relation pair so the tab is never empty.
        demo.load(b(relation_pair), [rel_dd, rel_seed], [rel_plot, rel_dist, rel_state], api_visibility="private").success(
            b(show_relation), [rel_state], rel_follow_outputs, api_visibility="private"
        )
    demo.nlrd_context = ctx  # type: ignore[attr-defined]
    return readable_refusals(demo)


# ----------------------------------------------------------------------------- launch
_URL_FILE_ROUTE = re.compile(r"/file[=/]+[a-z][a-z0-9+.-]+:", re.IGNORECASE)


class RefuseUrlFiles:
    """ASGI middleware: answer 403 to ``/file=<url>`` requests.

    Gradio's file route fetches a public http(s) URL server-side and streams it back; this app never
    needs that, and a local tool should not act as a fetcher for whoever reaches it. (A one-letter
    scheme is a Windows drive, a local path, and is left to Gradio's own allow-list.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _URL_FILE_ROUTE.search(scope.get("path", "")):
            await PlainTextResponse("File not allowed.", status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


_API_CALL_ROUTE = re.compile(r"/gradio_api/(?:call/(?:v2/)?|run/)([^/]+)/?$")


class UnknownApiNames:
    """ASGI middleware: a call to an API name the app does not have answers 404 with the names it has.

    gradio answers such a call with a bare HTTP 500 (its look-up raises), which reads as a server fault.
    """

    def __init__(self, app: ASGIApp, names: Sequence[str] = (), public: Sequence[str] = ()) -> None:
        self.app, self.names, self.public = app, frozenset(names), sorted(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _API_CALL_ROUTE.search(scope.get("path", "")) if scope["type"] == "http" else None
        # "predict" is gradio's own route for events outside the queue (the browser names them by fn_index).
        if found and scope.get("method") == "POST" and found.group(1) not in self.names | {"predict"}:
            shown = _shorten(found.group(1), 100)
            print(f"refused /{shown}: no such API name", file=sys.stderr, flush=True)
            message = f"unknown API name {shown!r}; this app's are {', '.join('/' + n for n in self.public)}"
            await JSONResponse({"error": message}, status_code=404)(scope, receive, send)
            return
        await self.app(scope, receive, send)


# Served files that a browser would run as a page or script: user uploads could carry them, so they are
# only ever downloaded, never shown from the app's origin.
_ACTIVE_TYPES = ("text/html", "application/xhtml", "image/svg", "text/xml", "application/xml", "javascript")
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                     (b"x-frame-options", b"SAMEORIGIN")]  # fmt: skip


class SafeFileHeaders:
    """ASGI middleware: security headers on every answer, and files of the file route that a browser
    would render as active content (HTML, SVG, XML, scripts) served as attachments of type
    ``application/octet-stream`` instead of inline."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        file_route = "/file=" in scope.get("path", "") or "/file/" in scope.get("path", "")

        async def guarded(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in {h for h, _ in _SECURITY_HEADERS}]
                ctype = next((v.decode("latin-1").lower() for k, v in headers if k.lower() == b"content-type"), "")
                if file_route and any(t in ctype for t in _ACTIVE_TYPES):
                    headers = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-disposition")]
                    headers += [(b"content-type", b"application/octet-stream"), (b"content-disposition", b"attachment")]
                message = {**message, "headers": headers + _SECURITY_HEADERS}
            await send(message)

        await self.app(scope, receive, guarded)


def launch_app(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, max_upload_mb: float = 50.0,
               prevent_thread_lock: bool = False, quiet: bool = False) -> tuple[Any, str, str]:  # fmt: skip
    """Queue and launch ``demo`` with the app's theme and CSS, serving only its temp dir and examples folder.

    Hardening: uploads above ``max_upload_mb`` are refused; no share link, server-side rendering,
    MCP server, monitoring dashboard or run history (no extra routes, nothing stored or sent
    elsewhere); URL fetches through the file route are refused (:class:`RefuseUrlFiles`); uploaded pages and
    scripts are only served as downloads, with security headers on every answer (:class:`SafeFileHeaders`);
    calls to API names the app does not have answer 404 (:class:`UnknownApiNames`). Memory: gradio keeps the
    state of at most :data:`STATE_SESSIONS_KEPT` sessions.
    """
    ctx: AppContext = demo.nlrd_context  # type: ignore[attr-defined]
    allowed = [str(ctx.temp_dir)] + ([str(ctx.examples_dir)] if ctx.examples_dir else [])
    names = [f.api_name for f in demo.fns.values() if f.api_name]
    public = [f.api_name for f in demo.fns.values() if f.api_name and f.api_visibility == "public"]
    demo.queue()
    return demo.launch(
        server_name=host, server_port=port, max_file_size=int(max_upload_mb * 1024 * 1024), allowed_paths=allowed,
        prevent_thread_lock=prevent_thread_lock, quiet=quiet, theme=gr.themes.Soft(primary_hue="blue"), css=CSS,
        footer_links=["api", "gradio"], share=False, ssr_mode=False, mcp_server=False, enable_monitoring=False,
        state_session_capacity=STATE_SESSIONS_KEPT,
        run_history=False, app_kwargs={"middleware": [Middleware(RefuseUrlFiles), Middleware(SafeFileHeaders),
                                                      Middleware(UnknownApiNames, names=names, public=public)]},
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python app.py``."""
    parser = argparse.ArgumentParser(description="NLRD app: 3D human pose from photos and clips")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 to share on the network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--checkpoints", default=None, help="folder with the weights (default: the shipped checkpoints/)")
    parser.add_argument("--examples", default=None, help="folder of your photos / clips to offer as examples")
    parser.add_argument("--max-upload-mb", type=float, default=50.0, help="largest accepted upload, MB")
    parser.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="the Adapt tab saves adapted models in folders below it")
    return parser


def prepare_mocap_if_possible() -> bool:
    """Prepare the mocap splits (``data/mocap.npz``, about 15 s) from the data folder when they are missing, so the
    Adapt tab's built-in clips come from held-out test-split motion capture as docs/results.md measures them.
    Returns whether prepared data is there; without a data folder the tab says on screen what it uses instead."""
    from nlrd.adapt_session import PREPARED_DATA
    from nlrd.data.poses import ensure_prepared, is_prepared

    if is_prepared(PREPARED_DATA):
        return True
    root = default_data_root()
    if not root.is_dir():
        return False
    print(f"preparing the motion capture splits into {PREPARED_DATA.name}/ (first start only)", flush=True)
    try:
        ensure_prepared(root, PREPARED_DATA, progress=False)
    except (OSError, ValueError) as exc:
        print(f"could not prepare the motion capture ({exc}); the Adapt tab's built-in clips use demo motions", flush=True)
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    """Command line: load the predictor once, build the app, serve it."""
    t0 = time.perf_counter()
    tune_malloc()  # before the model and gradio start their threads
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.examples is not None and not Path(args.examples).expanduser().is_dir():
        parser.error(f"--examples: folder {args.examples!r} does not exist")
    if args.max_upload_mb <= 0:
        parser.error("--max-upload-mb must be positive")
    runs = Path(args.runs_dir).expanduser().resolve()
    if any(runs.is_relative_to(p.resolve()) for p in [CHECKPOINT_DIR] + ([Path(args.checkpoints)] if args.checkpoints else [])):
        parser.error("--runs-dir must not be inside a checkpoints folder (the shipped weights are never written)")
    try:
        predictor = PosePredictor.from_pretrained(args.checkpoints, device=args.device)
        photo_dir = photo_checkpoint_dir(args.checkpoints)
        photo_predictor = None
        if photo_dir != (Path(args.checkpoints) if args.checkpoints else CHECKPOINT_DIR):
            photo_predictor = PosePredictor.from_pretrained(photo_dir, device=args.device)
    except ValueError as exc:
        parser.error(str(exc))
    prepare_mocap_if_possible()
    # One private temp folder for exports, examples and Gradio's uploads, removed at exit: the file
    # routes then serve this app's files only, never what other Gradio apps left in the shared default.
    tmp = Path(tempfile.mkdtemp(prefix="nlrd-app-"))
    atexit.register(shutil.rmtree, tmp, True)
    os.environ["GRADIO_TEMP_DIR"] = str(tmp / "uploads")
    os.environ["GRADIO_EXAMPLES_CACHE"] = str(tmp / "examples_cache")
    try:
        demo = build_app(predictor, args.examples, temp_dir=tmp, runs_dir=runs, checkpoints_dir=args.checkpoints,
                         photo_predictor=photo_predictor)
    except ValueError as exc:
        parser.error(str(exc))
    # SIGTERM (service managers, test harnesses) exits like Ctrl-C, so atexit removes the temp dir.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    _, url, _ = launch_app(demo, args.host, args.port, args.max_upload_mb, prevent_thread_lock=True)
    print(f"NLRD app serving at {url} (start-up {time.perf_counter() - t0:.1f} s)", flush=True)
    demo.block_thread()


if __name__ == "__main__":
    main()
