"""One person's 2D keypoints, 3D world keypoints and mask from MediaPipe Pose (BlazePose), numpy in/out.

:func:`detect_keypoints` finds the most prominent person in one RGB image (optionally inside a user
box); :func:`detect_keypoints_clip` follows one person through a clip with MediaPipe's tracking (video)
mode. Both return :class:`PersonKeypoints` in the input image's pixels, or None when nobody is found.

Models: the pose detector, the "full" pose landmark model and the segmentation head bundled in the
``mediapipe==0.10.14`` wheel, run through its legacy graph (``pose_landmark_cpu.binarypb``); nothing is
downloaded. The graph is driven directly (not through ``mediapipe.solutions.pose.Pose``) because the
wrapper drops the two numbers we need: the detector's score and the per-landmark presence.

Person score (``PersonKeypoints.score``): the pose detector's score of the detection the landmarks
were grown from (in clips: the detection that started the track), kept only when the landmark model
also says a person is present (its pose-presence flag >= 0.5, MediaPipe's default). Detections below
``min_score`` (default :data:`MIN_SCORE` = 0.5, MediaPipe's default ``min_detection_confidence``) are
not returned. Measured with the defaults (the threshold is MediaPipe's default, not tuned here): none of
the 18 people-free Kodak background photos gives a person (the best score any of them reaches, with
landmarks confirmed, is 0.35); a person is found in 97.9% of the 1,250 tuning exercise photos and 97.5%
of the 320 held-out ones (nlrd.vision.heldout).

Threading: a MediaPipe graph must not be used by two threads at once. Single images borrow a graph
from a small pool (one per concurrent caller, kept for reuse), so concurrent calls run in parallel and
give the same answers as serial ones; each clip builds its own graph because tracking carries state.
Inside a call the two models run on up to :data:`MAX_THREADS` XNNPACK threads while the other cores are
idle (:func:`inference_threads`); the landmarks do not depend on the thread count.

Pixels: pixel centres at integers (a W-pixel-wide image spans x in [-0.5, W - 0.5]), as everywhere in
the project. 3D: mm, root-relative (pelvis at the origin), camera frame x right, y down, z forward.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from nlrd.data.detection import validate_box
from nlrd.data.images import MIN_SIDE
from nlrd.vision.landmarks import NUM_LANDMARKS, landmarks_to_joints

MIN_SCORE = 0.5  # person score threshold (the detector's; MediaPipe's default min_detection_confidence)
PRESENCE_THRESHOLD = 0.5  # the landmark model's pose-presence gate (MediaPipe's min_tracking_confidence)
MAX_SIDE = 1280  # longer inputs are downscaled to this long side first: same landmarks, less resizing
USER_BOX_PAD = 0.25  # a user box is grown by this fraction of its longer side on every side before cropping:
#                      the detector needs some context around the person, and user boxes are tight
# PersonKeypoints.box: the box around the landmarks and the 17 joints (the calibrated head top lies above every
# landmark) grown by this fraction of its longer side on every side, so that it matches the renders' silhouette
# boxes, the boxes the image network's crop margin was measured on (median 0.026 over 747 renders,
# scripts/calibrate_landmarks.py)
BOX_PAD = 0.03
MAX_IDLE_GRAPHS = 2  # idle single-image graphs kept for reuse, all configurations together (~80 MB each)
# XNNPACK threads per pose model when the cores are otherwise idle (MediaPipe's own default on Linux is 1).
# Measured on 2 cores: 77.5 -> 58.5 ms an image with 2. But the threads meet at a barrier after every
# layer: with another busy process on one of the 2 cores the same image took 1,400 ms, so slow calls
# switch new graphs back to one thread for a while (see _ThreadChooser).
MAX_THREADS = 2
THREADS_ENV = "NLRD_MEDIAPIPE_THREADS"  # a fixed thread count instead (1 turns the extra thread off)

_GRAPH_PATH = "mediapipe/modules/pose_landmark/pose_landmark_cpu.binarypb"
# the two thresholds of the graph (the names mediapipe.solutions.pose.Pose sets them by)
_DETECTOR_PARAM = "posedetectioncpu__TensorsToDetectionsCalculator.min_score_thresh"
_PRESENCE_PARAM = "poselandmarkbyroicpu__tensorstoposelandmarksandsegmentation__ThresholdingCalculator.threshold"
_OUTPUTS = ["pose_landmarks", "pose_world_landmarks", "segmentation_mask", "pose_detection"]
ArrayBox = Sequence[float] | np.ndarray


@dataclass
class PersonKeypoints:
    """One person found by MediaPipe Pose, in the input image's pixels.

    Attributes:
        box: (4,) float32 x0, y0, x1, y1 px: the bounding box of the landmarks and ``joints2d`` grown by
            :data:`BOX_PAD` of its longer side, clipped to the image (pixel edges, so at most (-0.5, -0.5, W - 0.5, H - 0.5)).
        score: person confidence in [0, 1] (the pose detector's score; see the module docstring).
        joints2d: (17, 2) float32 px, Human3.6M 17-joint order (nlrd.skeleton.H36M_17), from the
            calibrated landmark mapping (nlrd.vision.landmarks).
        conf: (17,) float32 in [0, 1], per-joint confidence: the least confident landmark the joint uses,
            a landmark's confidence being min(visibility, presence) from MediaPipe.
        world3d: (17, 3) float32 mm, root-relative (pelvis at the origin), camera frame x right, y down,
            z forward, from MediaPipe's metric world landmarks (its own scale guess: ~average adult).
        landmarks2d: (33, 3) float32 raw MediaPipe landmarks: x px, y px, visibility in [0, 1].
        landmarks3d: (33, 3) float32 raw MediaPipe world landmarks, mm (origin between the hip landmarks).
        mask: (H, W) float32 person segmentation in [0, 1] over the whole input image (0 outside the
            searched region), or None when not asked for.
    """

    box: np.ndarray
    score: float
    joints2d: np.ndarray
    conf: np.ndarray
    world3d: np.ndarray
    landmarks2d: np.ndarray
    landmarks3d: np.ndarray
    mask: np.ndarray | None = None


# ----------------------------------------------------------------------------- the MediaPipe graph
_SOLUTION_CLASS: type | None = None
_SOLUTION_LOCK = threading.Lock()


def _solution_class() -> type:
    """mediapipe's SolutionBase with a warning-free proto getter, imported on first use (importing mediapipe
    costs ~1 s and fills protobuf's registry; `import nlrd` should not pay that)."""
    global _SOLUTION_CLASS
    with _SOLUTION_LOCK:
        if _SOLUTION_CLASS is None:
            _SOLUTION_CLASS = _make_solution_class()
        return _SOLUTION_CLASS


def _make_solution_class() -> type:
    import mediapipe.python.solutions.pose  # noqa: F401  (registers the pose graph's calculator options)
    from google.protobuf import message_factory, symbol_database
    from mediapipe.calculators.tensor import inference_calculator_pb2
    from mediapipe.python._framework_bindings import _packet_getter
    from mediapipe.python.solution_base import PacketDataType, SolutionBase

    options_ext = inference_calculator_pb2.InferenceCalculatorOptions.ext

    class Solution(SolutionBase):
        def __init__(self, *args: Any, xnnpack_threads: int = 1, **kwargs: Any) -> None:
            self._xnnpack_threads = int(xnnpack_threads)
            super().__init__(*args, **kwargs)

        def _modify_calculator_options(self, config: Any, calculator_params: Any) -> None:
            super()._modify_calculator_options(config, calculator_params)
            # The pose detector's and the landmark model's TFLite calls (after subgraph expansion); the
            # calculator_params route cannot reach a nested field like delegate.xnnpack.num_threads.
            for node in config.node:
                if node.calculator.startswith("InferenceCalculator") and node.options.HasExtension(options_ext):
                    node.options.Extensions[options_ext].delegate.xnnpack.num_threads = self._xnnpack_threads

        def _get_packet_content(self, packet_data_type: PacketDataType, output_packet: Any) -> Any:
            # mediapipe 0.10.14's own proto getter calls protobuf's deprecated GetPrototype, which warns on
            # every frame; this is the same conversion through the supported GetMessageClass.
            if packet_data_type != PacketDataType.PROTO or output_packet.is_empty():
                return super()._get_packet_content(packet_data_type, output_packet)
            name = _packet_getter._get_proto_type_name(output_packet)
            cls = message_factory.GetMessageClass(symbol_database.Default().pool.FindMessageTypeByName(name))
            msg = cls()
            msg.ParseFromString(_packet_getter._get_serialized_proto(output_packet))
            return msg

    return Solution


class _PoseGraph:
    """The legacy MediaPipe Pose CPU graph with the detector score and landmark presence exposed.

    ``video``: tracking mode (landmarks of frame t seed the region of frame t+1; the detector only runs
    when the track is lost) with MediaPipe's landmark smoothing when ``smooth``; otherwise every image is
    independent. Not thread-safe: one caller at a time.
    """

    def __init__(self, *, video: bool, with_mask: bool, min_score: float, smooth: bool = True, threads: int = 1) -> None:
        self.threads = threads
        self._solution = _solution_class()(
            binary_graph_path=_GRAPH_PATH,
            side_inputs={
                "model_complexity": 1,  # the "full" landmark model: the only one inside the wheel
                "smooth_landmarks": video and smooth,
                "enable_segmentation": with_mask,
                "smooth_segmentation": video and smooth,
                "use_prev_landmarks": video,
            },
            calculator_params={_DETECTOR_PARAM: float(min_score), _PRESENCE_PARAM: PRESENCE_THRESHOLD},
            outputs=_OUTPUTS,
            xnnpack_threads=threads,
        )

    def process(self, rgb: np.ndarray) -> Any:
        """Run the graph on a C-contiguous uint8 (h, w, 3) RGB image; MediaPipe's output tuple."""
        t0 = time.perf_counter()
        out = self._solution.process({"image": rgb})
        _THREADS.record(self.threads, time.perf_counter() - t0, getattr(out, "pose_landmarks", None) is not None)
        return out

    def close(self) -> None:
        self._solution.close()


class _GraphPool:
    """Idle single-image graphs, at most :data:`MAX_IDLE_GRAPHS` in all (the oldest is closed first); a
    borrowed graph is used by one thread only, and a caller finding no idle graph of its configuration
    builds one, so concurrent callers never wait for each other."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[tuple[tuple[bool, float, int], _PoseGraph]] = []  # oldest first

    @contextmanager
    def borrow(self, with_mask: bool, min_score: float, threads: int = 1) -> Iterator[_PoseGraph]:
        key = (with_mask, float(min_score), int(threads))
        graph = None
        with self._lock:
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i][0] == key:
                    graph = self._idle.pop(i)[1]
                    break
        if graph is None:
            graph = _PoseGraph(video=False, with_mask=with_mask, min_score=min_score, threads=threads)
        try:
            yield graph
        except BaseException:
            graph.close()  # a graph that raised may be in any state: never hand it out again
            raise
        with self._lock:
            self._idle.append((key, graph))
            evicted = self._idle[:-MAX_IDLE_GRAPHS]
            del self._idle[:-MAX_IDLE_GRAPHS]
        for _, old in evicted:
            old.close()


_POOL = _GraphPool()


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class _ThreadChooser:
    """How many XNNPACK threads the next graph gets, learnt from how long the calls take.

    Up to :data:`MAX_THREADS` (one per usable core). A multi-threaded call that takes more than
    :data:`CONTENDED_RATIO` times the fastest multi-threaded call of its kind (with or without a person
    found: the detector alone is about a quarter of a call with one), or more than :data:`CONTENDED_S`
    seconds, means that the threads are waiting for each other at the layer barriers (another busy
    process or thread has the cores: measured 1,400 ms against 58 for one image on 2 cores). New graphs
    then get one thread for :data:`BACK_OFF_S` seconds, after which more threads are tried again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fastest = {False: math.inf, True: math.inf}
        self._single_until = 0.0

    def threads(self) -> int:
        env = os.environ.get(THREADS_ENV, "").strip()
        if env:
            try:
                n = int(env)
            except ValueError:
                n = 0
            if n < 1:
                raise ValueError(f"{THREADS_ENV} must be a positive integer, got {env!r}")
            return n
        with self._lock:
            if time.monotonic() < self._single_until:
                return 1
        return max(1, min(MAX_THREADS, _usable_cores()))

    def record(self, threads: int, seconds: float, found: bool) -> None:
        """One graph call with ``threads`` threads took ``seconds``; ``found``: it returned landmarks."""
        if threads < 2:
            return
        with self._lock:
            if seconds > min(CONTENDED_S, CONTENDED_RATIO * self._fastest[found]):
                self._single_until = time.monotonic() + BACK_OFF_S
            self._fastest[found] = min(self._fastest[found], seconds)


CONTENDED_RATIO = 3.0
CONTENDED_S = 0.5
BACK_OFF_S = 30.0
_THREADS = _ThreadChooser()


def inference_threads() -> int:
    """XNNPACK threads for the next MediaPipe graph: ``$NLRD_MEDIAPIPE_THREADS`` when set (a positive
    integer), else up to :data:`MAX_THREADS` (one per usable core), or 1 for a while after calls ran
    slow for want of free cores (see :class:`_ThreadChooser`). A graph's thread count is fixed when it
    is built; the results do not depend on it."""
    return _THREADS.threads()


# ----------------------------------------------------------------------------- input handling
def _check_rgb(rgb: object, name: str = "image") -> np.ndarray:
    """A C-contiguous uint8 (H, W, 3) array, or ValueError saying what was expected."""
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"{name} must be a numpy uint8 array (H, W, 3) RGB, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ValueError(
            f"{name} must be uint8 (H, W, 3) RGB, got dtype {rgb.dtype}; convert floats in [0, 1] (no NaN) "
            "with nlrd.data.images.as_rgb_uint8"
        )
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{name} must be (H, W, 3) RGB, got shape {rgb.shape}")
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise ValueError(f"{name} must be at least {MIN_SIDE}x{MIN_SIDE} pixels, got {rgb.shape[1]}x{rgb.shape[0]}")
    return np.ascontiguousarray(rgb)


def _check_min_score(min_score: float) -> float:
    s = float(min_score)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"min_score must lie in [0, 1], got {min_score!r}")
    return s


@dataclass(frozen=True)
class _View:
    """Where the graph's input came from: the crop [x0:x1, y0:y1] of the input image, scaled by
    (sx, sy) (processed px + 0.5 = s * (crop px + 0.5))."""

    x0: int
    y0: int
    x1: int
    y1: int
    sx: float
    sy: float
    shape: tuple[int, int]  # the input image's (H, W)

    def to_image(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) processed px -> input image px."""
        out = np.empty_like(xy, dtype=np.float64)
        out[:, 0] = (xy[:, 0] + 0.5) / self.sx - 0.5 + self.x0
        out[:, 1] = (xy[:, 1] + 0.5) / self.sy - 0.5 + self.y0
        return out


def _plan_view(shape: tuple[int, int], box: ArrayBox | None) -> _View:
    """The crop (the padded user box, or the whole image) and the downscale to :data:`MAX_SIDE`."""
    h, w = shape
    x0, y0, x1, y1 = 0, 0, w, h
    if box is not None:
        b = validate_box(box, w, h)
        pad = USER_BOX_PAD * max(b[2] - b[0], b[3] - b[1])
        # box edges are pixel edges (-0.5 .. W - 0.5); a pixel i is kept when its centre lies inside
        x0, y0 = max(0, math.ceil(b[0] - pad)), max(0, math.ceil(b[1] - pad))
        x1, y1 = min(w, math.floor(b[2] + pad) + 1), min(h, math.floor(b[3] + pad) + 1)
        if x1 - x0 < MIN_SIDE or y1 - y0 < MIN_SIDE:
            raise ValueError(f"box {np.asarray(box).tolist()} is too small: the padded search region is "
                             f"{x1 - x0}x{y1 - y0} px, at least {MIN_SIDE}x{MIN_SIDE} is needed")  # fmt: skip
    cw, ch = x1 - x0, y1 - y0
    s = min(1.0, MAX_SIDE / max(cw, ch))
    pw, ph = max(1, round(cw * s)), max(1, round(ch * s))
    return _View(x0, y0, x1, y1, pw / cw, ph / ch, (h, w))


def _graph_input(rgb: np.ndarray, view: _View) -> np.ndarray:
    crop = rgb[view.y0 : view.y1, view.x0 : view.x1]
    pw, ph = round((view.x1 - view.x0) * view.sx), round((view.y1 - view.y0) * view.sy)
    if (pw, ph) != (crop.shape[1], crop.shape[0]):
        crop = cv2.resize(crop, (pw, ph), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


# ----------------------------------------------------------------------------- outputs
def _landmark_arrays(result: Any, ph: int, pw: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MediaPipe's protos -> (33, 2) processed px, (33, 2) visibility & presence, (33, 3) world mm."""
    lms = result.pose_landmarks.landmark
    wls = result.pose_world_landmarks.landmark
    if len(lms) != NUM_LANDMARKS or len(wls) != NUM_LANDMARKS:
        raise RuntimeError(f"MediaPipe returned {len(lms)} / {len(wls)} landmarks, expected {NUM_LANDMARKS}")
    # normalized coordinates run from 0 at the left image edge to 1 at the right edge; -0.5 moves
    # them to pixel centres at integers
    xy = np.array([[lm.x * pw - 0.5, lm.y * ph - 0.5] for lm in lms], dtype=np.float64)
    vp = np.array([[lm.visibility, lm.presence] for lm in lms], dtype=np.float32)
    world = np.array([[lm.x, lm.y, lm.z] for lm in wls], dtype=np.float64) * 1000.0  # m -> mm
    return xy, np.clip(vp, 0.0, 1.0), world


def _landmark_box(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    pad = BOX_PAD * float((hi - lo).max())
    h, w = shape
    box = np.array([lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad])
    return np.clip(box, -0.5, [w - 0.5, h - 0.5, w - 0.5, h - 0.5]).astype(np.float32)


def _full_mask(result: Any, view: _View) -> np.ndarray:
    """The graph's (ph, pw) mask -> (H, W) float32 over the input image (0 outside the crop)."""
    h, w = view.shape
    mask = np.zeros((h, w), np.float32)
    m = getattr(result, "segmentation_mask", None)
    if m is None:
        return mask
    m = np.asarray(m, dtype=np.float32).reshape(m.shape[0], m.shape[1])
    cw, ch = view.x1 - view.x0, view.y1 - view.y0
    if m.shape != (ch, cw):
        m = cv2.resize(m, (cw, ch), interpolation=cv2.INTER_LINEAR)
    mask[view.y0 : view.y1, view.x0 : view.x1] = np.clip(m, 0.0, 1.0)
    return mask


def _to_person(result: Any, view: _View, score: float, with_mask: bool) -> PersonKeypoints:
    pw, ph = round((view.x1 - view.x0) * view.sx), round((view.y1 - view.y0) * view.sy)
    xy, vp, world = _landmark_arrays(result, ph, pw)
    xy = view.to_image(xy)
    conf33 = vp.min(axis=1)  # visible (not occluded) and present (inside the frame)
    joints2d, world3d, conf = landmarks_to_joints(xy, world, conf33)
    return PersonKeypoints(
        box=_landmark_box(np.concatenate([xy, joints2d]), view.shape),
        score=float(np.clip(score, 0.0, 1.0)),
        joints2d=joints2d,
        conf=conf,
        world3d=world3d,
        landmarks2d=np.concatenate([xy, vp[:, :1]], axis=1).astype(np.float32),
        landmarks3d=world.astype(np.float32),
        mask=_full_mask(result, view) if with_mask else None,
    )


def _detection_score(result: Any) -> float | None:
    det = getattr(result, "pose_detection", None)
    if det is None or not len(det.score):
        return None
    return float(det.score[0])


# ----------------------------------------------------------------------------- public API
def detect_keypoints(rgb: np.ndarray, box: ArrayBox | None = None, *, with_mask: bool = False,
                     min_score: float = MIN_SCORE) -> PersonKeypoints | None:  # fmt: skip
    """The most prominent person in one image, or None.

    Args:
        rgb: (H, W, 3) uint8 RGB, at least 16 px a side. Images longer than :data:`MAX_SIDE` px are
            downscaled before MediaPipe; all outputs are in the input's pixels.
        box: optional (x0, y0, x1, y1) px (pixel edges): only the box, grown by :data:`USER_BOX_PAD` of
            its longer side on every side, is searched.
        with_mask: also return the person segmentation mask (H, W) in [0, 1].
        min_score: people whose score (the detector's, see the module docstring) is below it are not
            returned.

    Raises:
        ValueError: ``rgb`` is not a uint8 (H, W, 3) array (floats, NaN, wrong shape, empty, tiny), or
            ``box`` / ``min_score`` is malformed.
    """
    img = _check_rgb(rgb)
    s = _check_min_score(min_score)
    view = _plan_view(img.shape[:2], box)
    x = _graph_input(img, view)
    with _POOL.borrow(with_mask, s, inference_threads()) as graph:
        result = graph.process(x)
    if result.pose_landmarks is None or result.pose_world_landmarks is None:
        return None
    score = _detection_score(result)
    if score is None or score < s:  # static mode runs the detector on every image
        return None
    return _to_person(result, view, score, with_mask)


def detect_keypoints_clip(frames: np.ndarray | Iterable[np.ndarray], box: ArrayBox | None = None, *,
                          with_mask: bool = False, min_score: float = MIN_SCORE,
                          smooth: bool = True) -> list[PersonKeypoints | None]:  # fmt: skip
    """Follow one person through a clip with MediaPipe's tracking mode; one result per frame.

    A fresh graph per call (tracking state never leaks between clips, and concurrent calls are safe).
    The detector runs on the first frame and whenever the track is lost; in between, the landmarks of
    one frame place the next frame's region. A frame's ``score`` is the score of the detection that
    started its track; the track ends when the landmark model's presence falls below 0.5.

    Args:
        frames: (T, H, W, 3) uint8 RGB, or an iterable of (H, W, 3) uint8 frames of one size (read
            lazily, so a video decoder's generator works).
        box: optional (x0, y0, x1, y1) px searched in every frame (grown like in
            :func:`detect_keypoints`); one fixed box, because tracking needs one fixed view.
        with_mask: also return per-frame masks (smoothed over time when ``smooth``).
        min_score: a track only starts on a detection at least this confident.
        smooth: MediaPipe's landmark (and mask) smoothing over time; it assumes about 30 fps.

    Returns:
        list of T entries, :class:`PersonKeypoints` or None (nobody tracked in that frame).

    Raises:
        ValueError: a frame is not uint8 (H, W, 3), frames differ in size, or ``box`` / ``min_score`` is
            malformed. An empty clip gives an empty list.
    """
    s = _check_min_score(min_score)
    if isinstance(frames, np.ndarray) and frames.ndim != 4:
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB or an iterable of (H, W, 3) frames, got {frames.shape}")
    out: list[PersonKeypoints | None] = []
    graph: _PoseGraph | None = None
    view: _View | None = None
    track_score: float | None = None
    try:
        for t, frame in enumerate(frames):
            img = _check_rgb(frame, f"frame {t}")
            if view is None:
                view = _plan_view(img.shape[:2], box)
                graph = _PoseGraph(video=True, with_mask=with_mask, min_score=s, smooth=smooth, threads=inference_threads())
            elif img.shape[:2] != view.shape:
                raise ValueError(f"frame {t} is {img.shape[1]}x{img.shape[0]} but the clip started at "
                                 f"{view.shape[1]}x{view.shape[0]}; all frames must have one size")  # fmt: skip
            assert graph is not None
            result = graph.process(_graph_input(img, view))
            if result.pose_landmarks is None or result.pose_world_landmarks is None:
                track_score = None  # the track is lost; the detector runs again on the next frame
                out.append(None)
                continue
            detected = _detection_score(result)
            if detected is not None:
                track_score = detected
            if track_score is None or track_score < s:
                out.append(None)
                continue
            out.append(_to_person(result, view, track_score, with_mask))
    finally:
        if graph is not None:
            graph.close()
    return out
