"""Person detection and tracking without downloaded weights.

Two cues, both weight-free at run time:

1. **HOG people detector** (Dalal & Triggs): histograms of oriented gradients scored by the linear
   SVM OpenCV ships as ``HOGDescriptor_getDefaultPeopleDetector()``. OpenCV 5 no longer has the HOG
   module in its main package, so the descriptor is computed here with numpy in exactly OpenCV's
   layout (64 x 128 window, 8 x 8 cells, 16 x 16 blocks at stride 8, 9 unsigned orientation bins,
   sqrt gamma, Gaussian block weighting, trilinear voting, L2-Hys) and scored with the same weights
   (:mod:`nlrd.data.hog_people_svm`); window scores agree with OpenCV 4's to ~1e-3. The numpy
   functions (:func:`hog_blocks`, :func:`hog_window_scores`) are the reference; detection runs the
   same maths compiled with numba (:func:`hog_scores_fast`, single-threaded, ~1 ms per 400 x 300
   pyramid level). It runs on a downscaled image (long side ``max_side``) over a scale pyramid,
   with replicated-border padding so people cut by the frame edge still fit a window, then weighted
   non-maximum suppression. HOG finds upright people; it misses crouched, bent or heavily truncated ones.

2. **Motion** (clips only): camera-motion-compensated three-frame differencing. Each frame is
   compared with the frames ``gap`` before and after it after aligning them with a similarity
   transform fitted (RANSAC) to tracked corners, so a slowly panning or zooming camera does not
   light up the background; a pixel moves at time t when it differs from *both* neighbours (no
   "ghost" where the person was). The moving person shows up whatever their pose, which is exactly
   where HOG fails (a squat's bottom, a deadlift's bend).

:func:`track_person` combines them: HOG on every ``detect_every``-th frame, associated over time
starting from the most confident, best-supported detection; gaps between accepted detections are
interpolated, and where a gap is longer than the detection stride the motion cue says whether the
person was still seen and where their top edge went (crouching moves the head down while the feet
stay, so the interpolated feet and width are kept); boxes are finally smoothed with a centred
moving average over centre and size.

Boxes are (x0, y0, x1, y1) in the original image's pixels, in :mod:`nlrd.data.crop`'s convention
(pixel centres at integer coordinates). Scores are confidences in [0, 1]: for HOG
``sigmoid(2 * margin)`` of the SVM margin (0.5 at the SVM's decision boundary, ~0.98 for a clear
upright person), for motion-only frames at most 0.5, 0 for interpolated or fallback boxes.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import cv2
import numpy as np
from numba import njit

from nlrd.data.hog_people_svm import people_svm
from nlrd.data.images import MIN_SIDE, as_rgb_uint8

__all__ = [
    "Detection",
    "PersonDetection",
    "PersonTrack",
    "box_iou",
    "detect_people",
    "detect_person",
    "hog_descriptor",
    "hog_scores_fast",
    "hog_window_scores",
    "moving_average",
    "nms",
    "track_person",
    "validate_box",
]

# ----------------------------------------------------------------------------- HOG constants
_NBINS = 9
_CELL = 8
_WIN_W, _WIN_H = 64, 128
_BLOCKS_X, _BLOCKS_Y = (_WIN_W - 16) // 8 + 1, (_WIN_H - 16) // 8 + 1  # 7 x 15 blocks per window
_BLOCK_LEN = 4 * _NBINS  # 36 values per block
# Where the person sits inside a detection window: INRIA training windows have the 96 px tall person
# centred in 128 px (16 px above and below) and about 40 of the 64 px wide (12 px on each side).
_PERSON_INSET_X, _PERSON_INSET_Y = 12.0 / _WIN_W, 16.0 / _WIN_H


def _rgb(image: object, name: str = "image") -> np.ndarray:
    """The image as uint8 (H, W, 3) RGB for reading: a C-contiguous uint8 RGB array is used as is
    (detection never writes to it; a copy per frame costs ~0.1 ms at 640 x 480), anything else
    goes through ``as_rgb_uint8`` (never downscaled)."""
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        if image.flags.c_contiguous and min(image.shape[:2]) >= MIN_SIDE:
            return image
    return as_rgb_uint8(image, max_pixels=None, name=name)


def _sigmoid_conf(margin: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-2.0 * np.asarray(margin, dtype=np.float64)))


@lru_cache(maxsize=1)
def _hog_model() -> tuple[np.ndarray, np.ndarray, float]:
    """(block voting weights (16, 64), SVM weights (15 * 7, 36) by block row-major, bias)."""
    # Voting weights of a pixel into the 4 cells of a 16 x 16 block: OpenCV's Gaussian (sigma 4,
    # centred at pixel 8 of 16) times bilinear weights between cell centres. A block is built from
    # four 8 x 8 quadrants q = qy * 2 + qx, so weight[q * 4 + c, v * 8 + u] is what pixel (v, u) of
    # quadrant q gives cell c = cx * 2 + cy (OpenCV orders cells column-major inside a block).
    w = np.zeros((4, 4, 8, 8))
    scale = 1.0 / (2.0 * 4.0**2)
    for i in range(16):
        for j in range(16):
            g = math.exp(-((i - 8.0) ** 2 + (j - 8.0) ** 2) * scale)
            fy, fx = (i + 0.5) / 8 - 0.5, (j + 0.5) / 8 - 0.5
            iy0, ix0 = math.floor(fy), math.floor(fx)
            fy, fx = fy - iy0, fx - ix0
            q = (i // 8) * 2 + (j // 8)
            for dy, wy in ((0, 1.0 - fy), (1, fy)):
                for dx, wx in ((0, 1.0 - fx), (1, fx)):
                    cy, cx = iy0 + dy, ix0 + dx
                    if 0 <= cy < 2 and 0 <= cx < 2:
                        w[q, cx * 2 + cy, i % 8, j % 8] += g * wy * wx
    svm_w, bias = people_svm()
    # OpenCV orders blocks column-major in the window descriptor: index (bx * 15 + by) * 36.
    svm = svm_w.reshape(_BLOCKS_X, _BLOCKS_Y, _BLOCK_LEN).transpose(1, 0, 2).reshape(-1, _BLOCK_LEN)
    return w.reshape(16, 64).astype(np.float32), np.ascontiguousarray(svm, dtype=np.float32), bias


_SQRT_LUT = np.sqrt(np.arange(256, dtype=np.float32))  # OpenCV's gamma correction


@lru_cache(maxsize=32)
def _vote_index(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat index of each pixel's bin-0 slot in a (cells_y, cells_x, 9, 8, 8) vote array, and the pixel mask."""
    ncy, ncx = h // _CELL, w // _CELL
    y = np.arange(h)[:, None]
    x = np.arange(w)[None, :]
    inside = (y < ncy * _CELL) & (x < ncx * _CELL)
    cell = (y // _CELL) * ncx + (x // _CELL)
    idx = cell * (_NBINS * 64) + (y % _CELL) * _CELL + (x % _CELL)
    return idx[inside].astype(np.int64), inside


def hog_blocks(image: np.ndarray) -> np.ndarray:
    """Normalised HOG block histograms of a whole image: (H // 8 - 1, W // 8 - 1, 36) float32.

    ``image`` is (H, W, 3) uint8 (any channel order: each pixel uses its strongest channel). Block
    (by, bx) covers pixels [8 by, 8 by + 16) x [8 bx, 8 bx + 16); values are in OpenCV's order
    (cell column-major, then 9 bins). Gradients use the neighbouring pixels across block and
    window borders (as OpenCV's detector does), reflect-101 at the image border.
    """
    lut_img = _SQRT_LUT[image]
    h, w = lut_img.shape[:2]
    p = cv2.copyMakeBorder(lut_img, 1, 1, 1, 1, cv2.BORDER_REFLECT_101)
    dx = p[1:-1, 2:] - p[1:-1, :-2]
    dy = p[2:, 1:-1] - p[:-2, 1:-1]
    m2 = dx * dx + dy * dy
    k = m2.argmax(axis=2).ravel()
    n = h * w
    rows = np.arange(n)
    gx = np.ascontiguousarray(dx.reshape(n, 3)[rows, k].reshape(h, w))
    gy = np.ascontiguousarray(dy.reshape(n, 3)[rows, k].reshape(h, w))
    mag = np.sqrt(m2.reshape(n, 3)[rows, k])
    # Unsigned orientation in [0, pi) split between the two nearest of 9 bins centred at 10, 30, ... deg.
    ang = cv2.phase(gx, gy).ravel()  # [0, 2 pi)
    fbin = ang * np.float32(_NBINS / math.pi) - 0.5
    b0 = np.floor(fbin)
    frac = fbin - b0
    b0 = b0.astype(np.int64) % _NBINS
    b1 = b0 + 1
    b1[b1 == _NBINS] = 0
    w1 = mag * frac
    w0 = mag - w1

    ncy, ncx = h // _CELL, w // _CELL
    base, inside = _vote_index(h, w)
    sel = inside.ravel()
    votes = np.zeros(ncy * ncx * _NBINS * 64, np.float32)
    # b0 != b1 always, so plain assignment never collides.
    votes[base + b0[sel] * 64] = w0[sel]
    votes[base + b1[sel] * 64] = w1[sel]
    weights, _, _ = _hog_model()
    quad = (votes.reshape(-1, 64) @ weights.T).reshape(ncy, ncx, _NBINS, 4, 4)  # (..., q, c)
    nby, nbx = ncy - 1, ncx - 1
    if nby < 1 or nbx < 1:
        return np.zeros((max(nby, 0), max(nbx, 0), _BLOCK_LEN), np.float32)
    blocks = np.zeros((nby, nbx, 4, _NBINS), np.float32)
    for q in range(4):
        qy, qx = divmod(q, 2)
        blocks += quad[qy : qy + nby, qx : qx + nbx, :, q, :].transpose(0, 1, 3, 2)
    blocks = blocks.reshape(nby, nbx, _BLOCK_LEN)
    # L2-Hys as OpenCV: L2 normalise (+ 0.1 * length), clip at 0.2, normalise again (+ 1e-3).
    blocks /= np.sqrt((blocks * blocks).sum(-1, keepdims=True)) + 0.1 * _BLOCK_LEN
    np.minimum(blocks, 0.2, out=blocks)
    blocks /= np.sqrt((blocks * blocks).sum(-1, keepdims=True)) + 1e-3
    return blocks


def hog_descriptor(window: np.ndarray) -> np.ndarray:
    """(3780,) float32 HOG descriptor of one 128 x 64 window (H, W, 3) uint8, in OpenCV's layout.

    Matches ``cv2.HOGDescriptor().compute(window)`` (gradients at the window border reflect inside
    the window, as OpenCV does for a window-sized image).
    """
    win = np.asarray(window)
    if win.shape != (_WIN_H, _WIN_W, 3) or win.dtype != np.uint8:
        raise ValueError(f"window must be a ({_WIN_H}, {_WIN_W}, 3) uint8 array, got {win.dtype} {win.shape}")
    return hog_blocks(win).transpose(1, 0, 2).reshape(-1)


def hog_window_scores(blocks: np.ndarray) -> np.ndarray:
    """SVM margins of every 64 x 128 window on the 8 px block grid: (nby - 14, nbx - 6) float32.

    Entry (y, x) scores the window whose top-left pixel is (8 y, 8 x); > 0 means "person".
    """
    _, svm, bias = _hog_model()
    nby, nbx = blocks.shape[:2]
    ny, nx = nby - _BLOCKS_Y + 1, nbx - _BLOCKS_X + 1
    if ny <= 0 or nx <= 0:
        return np.zeros((max(ny, 0), max(nx, 0)), np.float32)
    # Dot every block with each of the 105 per-position weight vectors once, then add shifted planes.
    per_pos = (blocks.reshape(-1, _BLOCK_LEN) @ svm.T).reshape(nby, nbx, _BLOCKS_Y, _BLOCKS_X)
    scores = np.full((ny, nx), bias, np.float32)
    for i in range(_BLOCKS_Y):
        for j in range(_BLOCKS_X):
            scores += per_pos[i : i + ny, j : j + nx, i, j]
    return scores


# ----------------------------------------------------------------------------- compiled scoring
# The numpy path above is the reference (it matches OpenCV's descriptor); detection runs the same
# maths compiled with numba in one pass per pyramid level. numpy spends most of its time there in
# fancy indexing and scattered writes over temporaries, and its matrix products call a
# multi-threaded BLAS, whose thread hand-offs cost milliseconds when the cores are busy. The
# compiled kernel is single-threaded, allocates two small arrays and is ~4x faster.


@lru_cache(maxsize=1)
def _axis_weights() -> np.ndarray:
    """(16, 2) float32: weight of pixel i of a 16 px block side for cell 0 / 1 along that axis.

    OpenCV's block weighting (a Gaussian with sigma 4 times bilinear weights between cell centres)
    is separable: the weight of pixel (i, j) for cell (cy, cx) is ``w[i, cy] * w[j, cx]``, which
    lets the kernel vote along rows first and sum 16 rows per block after.
    """
    w = np.zeros((16, 2))
    scale = 1.0 / (2.0 * 4.0**2)
    for i in range(16):
        g = math.exp(-((i - 8.0) ** 2) * scale)
        f = (i + 0.5) / 8 - 0.5
        i0 = math.floor(f)
        f -= i0
        for d, wd in ((0, 1.0 - f), (1, f)):
            if 0 <= i0 + d < 2:
                w[i, i0 + d] += g * wd
    return w.astype(np.float32)


@njit(cache=True, nogil=True, fastmath=True)
def _row_votes(img, lut, wx, rows, nbx):  # pragma: no cover - jitted
    """Per pixel row, the orientation votes of every block column: (rows, nbx, 2 cells, 9 bins) float32.

    Gradient as :func:`hog_blocks` (sqrt gamma, strongest channel, reflect-101 border), the vote split
    between the two nearest bins and weighted along x by ``wx`` for both cell columns of the two
    blocks the pixel belongs to. Each row is done in two passes: a branch-free one the compiler
    vectorises (gradient, magnitude, orientation from a degree-7 minimax arctangent, error < 1e-5
    rad), then the scattered votes.
    """
    h, w = img.shape[0], img.shape[1]
    out = np.zeros((rows, nbx, 2, _NBINS), np.float32)
    to_bin = np.float32(_NBINS / math.pi)
    width = (nbx + 1) * _CELL
    # Gamma-corrected planes (3, h, w + 2), each row with one reflected pixel on each side.
    planes = np.empty((3, h, w + 2), np.float32)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                planes[c, y, x + 1] = lut[img[y, x, c]]
        for c in range(3):
            planes[c, y, 0] = planes[c, y, 2]
            planes[c, y, w + 1] = planes[c, y, w - 1]
    mag = np.empty(width, np.float32)
    fbin = np.empty(width, np.float32)
    for y in range(rows):
        ym = y - 1 if y > 0 else 1
        yp = y + 1 if y < h - 1 else h - 2
        mid, up, down = planes[:, y, :], planes[:, ym, 1:], planes[:, yp, 1:]
        for x in range(width):
            gx, gy = mid[0, x + 2] - mid[0, x], down[0, x] - up[0, x]
            m = gx * gx + gy * gy
            for c in range(1, 3):  # the channel with the strongest gradient (first on ties, as argmax)
                dx, dy = mid[c, x + 2] - mid[c, x], down[c, x] - up[c, x]
                mc = dx * dx + dy * dy
                if mc > m:
                    gx, gy, m = dx, dy, mc
            mag[x] = math.sqrt(m)
            ax, ay = abs(gx), abs(gy)
            a = min(ax, ay) / max(max(ax, ay), np.float32(1e-30))
            s = a * a
            r = ((np.float32(-0.0464964749) * s + np.float32(0.15931422)) * s - np.float32(0.327622764)) * s * a + a
            r = np.float32(1.57079637) - r if ay > ax else r
            r = np.float32(3.14159274) - r if gx < 0 else r
            r = np.float32(6.28318548) - r if gy < 0 else r  # angle in [0, 2 pi)
            fbin[x] = r * to_bin - np.float32(0.5)  # in [-0.5, 17.5)
        for x in range(width):
            mg = mag[x]
            if mg <= 0.0:
                continue
            b0 = int(fbin[x] + np.float32(1.0)) - 1  # floor
            frac = fbin[x] - np.float32(b0)
            if b0 < 0:
                b0 += _NBINS
            elif b0 >= _NBINS:
                b0 -= _NBINS
            b1 = b0 + 1 if b0 < _NBINS - 1 else 0
            v1 = mg * frac
            v0 = mg - v1
            cx, u = x >> 3, x & 7
            if cx < nbx:  # left half of block cx
                a0, a1 = wx[u, 0], wx[u, 1]
                o = out[y, cx]
                o[0, b0] += a0 * v0
                o[0, b1] += a0 * v1
                o[1, b0] += a1 * v0
                o[1, b1] += a1 * v1
            if cx >= 1:  # right half of block cx - 1
                a0, a1 = wx[u + 8, 0], wx[u + 8, 1]
                o = out[y, cx - 1]
                o[0, b0] += a0 * v0
                o[0, b1] += a0 * v1
                o[1, b0] += a1 * v0
                o[1, b1] += a1 * v1
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _blocks_from_rows(votes, wy, nby):  # pragma: no cover - jitted
    """Sum 16 rows of votes per block with weights ``wy`` and L2-Hys normalise: (nby, nbx, 36) float32."""
    nbx = votes.shape[1]
    span = nbx * 2 * _NBINS
    flat = votes.reshape(votes.shape[0], span)
    acc = np.zeros((2, span), np.float32)  # per cell row of the block: (block column, cell column, bin)
    out = np.empty((nby, nbx, _BLOCK_LEN), np.float32)
    for by in range(nby):
        acc[:] = 0.0
        for i in range(16):  # whole rows at a time: a contiguous loop the compiler vectorises
            src, a0, a1 = flat[by * _CELL + i], acc[0], acc[1]
            w0, w1 = wy[i, 0], wy[i, 1]
            for k in range(span):
                a0[k] += w0 * src[k]
                a1[k] += w1 * src[k]
        for bx in range(nbx):
            blk = out[by, bx]
            for cxc in range(2):  # cells in column-major order: index (cx * 2 + cy) * 9 + bin
                for b in range(_NBINS):
                    blk[cxc * 18 + b] = acc[0, bx * 18 + cxc * 9 + b]
                    blk[cxc * 18 + 9 + b] = acc[1, bx * 18 + cxc * 9 + b]
            ss = np.float32(0.0)
            for d in range(_BLOCK_LEN):
                ss += blk[d] * blk[d]
            scale = np.float32(1.0) / (np.float32(math.sqrt(ss)) + np.float32(0.1 * _BLOCK_LEN))
            ss = np.float32(0.0)
            for d in range(_BLOCK_LEN):
                v = min(blk[d] * scale, np.float32(0.2))
                blk[d] = v
                ss += v * v
            scale = np.float32(1.0) / (np.float32(math.sqrt(ss)) + np.float32(1e-3))
            for d in range(_BLOCK_LEN):
                blk[d] *= scale
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _window_scores_jit(blocks, svm, bias):  # pragma: no cover - jitted
    """As :func:`hog_window_scores`: one block row of a window is 7 x 36 = 252 contiguous values,
    dotted with the matching row of SVM weights (a loop the compiler vectorises)."""
    nby, nbx = blocks.shape[0], blocks.shape[1]
    ny, nx = nby - _BLOCKS_Y + 1, nbx - _BLOCKS_X + 1
    span = _BLOCKS_X * _BLOCK_LEN
    flat = blocks.reshape(nby, nbx * _BLOCK_LEN)
    rows = svm.reshape(_BLOCKS_Y, span)
    scores = np.full((ny, nx), bias, np.float32)
    for y in range(ny):
        for i in range(_BLOCKS_Y):
            row, wr = flat[y + i], rows[i]
            for x in range(nx):
                seg = row[x * _BLOCK_LEN : x * _BLOCK_LEN + span]
                s = np.float32(0.0)
                for k in range(span):
                    s += seg[k] * wr[k]
                scores[y, x] += s
    return scores


def hog_scores_fast(image: np.ndarray) -> np.ndarray:
    """SVM margins of every 64 x 128 window of an (H, W, 3) uint8 image: as
    ``hog_window_scores(hog_blocks(image))`` (to ~1e-3), compiled and single-threaded."""
    h, w = image.shape[:2]
    nby, nbx = h // _CELL - 1, w // _CELL - 1
    if nby < _BLOCKS_Y or nbx < _BLOCKS_X:
        return np.zeros((max(nby - _BLOCKS_Y + 1, 0), max(nbx - _BLOCKS_X + 1, 0)), np.float32)
    _, svm, bias = _hog_model()
    wa = _axis_weights()
    votes = _row_votes(np.ascontiguousarray(image), _SQRT_LUT, wa, (nby + 1) * _CELL, nbx)
    return _window_scores_jit(_blocks_from_rows(votes, wa, nby), svm, np.float32(bias))


# ----------------------------------------------------------------------------- boxes
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes a (N, 4) and b (M, 4) -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.4) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept boxes, best score first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = box_iou(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def validate_box(box: Sequence[float] | np.ndarray, width: int, height: int, name: str = "box") -> np.ndarray:
    """Check a user box (x0, y0, x1, y1) in pixels and clip it to a width x height image.

    Raises ValueError for anything but 4 finite numbers with x1 > x0 and y1 > y0, or a box that
    does not overlap the image. Returns (4,) float64, clipped to (-0.5, -0.5, W - 0.5, H - 0.5).
    """
    try:
        b = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be 4 numbers (x0, y0, x1, y1), got {box!r}") from None
    if b.shape != (4,):
        raise ValueError(f"{name} must be 4 numbers (x0, y0, x1, y1), got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError(f"{name} holds NaN or infinite values: {b.tolist()}")
    if not (b[2] > b[0] and b[3] > b[1]):
        raise ValueError(f"{name} must have x1 > x0 and y1 > y0, got {b.tolist()}")
    lo = np.array([-0.5, -0.5, -0.5, -0.5])
    hi = np.array([width - 0.5, height - 0.5, width - 0.5, height - 0.5])
    c = np.clip(b, lo, hi)
    if not (c[2] - c[0] >= 1.0 and c[3] - c[1] >= 1.0):
        raise ValueError(f"{name} {b.tolist()} lies outside the {width}x{height} image")
    return c


# ----------------------------------------------------------------------------- single images
@dataclass(frozen=True)
class Detection:
    """One detected person.

    Attributes:
        box: (x0, y0, x1, y1) in original image pixels (may extend past the image for people cut
            by its edge; clip with :func:`validate_box` if needed).
        score: confidence in [0, 1] (HOG: ``sigmoid(2 * margin)``).
        margin: the HOG SVM margin (> 0: person); NaN for other sources.
        source: "hog", "motion", "user" or "fallback".
    """

    box: tuple[float, float, float, float]
    score: float
    margin: float = float("nan")
    source: str = "hog"


@dataclass(frozen=True)
class PersonDetection:
    """The person chosen in one image.

    Attributes:
        box: (4,) float64 (x0, y0, x1, y1) pixels, clipped to the image.
        score: confidence in [0, 1] (0 for a fallback, 1 for a user box).
        fallback: True when nothing was found and ``box`` is the whole image.
        source: "hog", "user" or "fallback".
        detections: every detection found, best score first (the chosen one included).
    """

    box: np.ndarray
    score: float
    fallback: bool
    source: str
    detections: tuple[Detection, ...] = field(default=())


def _pyramid_candidates(
    rgb: np.ndarray,
    *,
    max_side: int,
    scale_step: float,
    pad: tuple[int, int],
    min_margin: float,
    upscale: float = 1.0,
    max_level: float = math.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """All windows scoring above ``min_margin`` over the pyramid: person boxes (N, 4) original px, margins (N,).

    Levels are the processing image (long side ``max_side``) shrunk by 1, scale_step, scale_step^2, ...
    up to ``max_level`` (or until a window no longer fits).
    """
    proc = _processing_image(rgb, max_side, upscale)
    return _pyramid_on(proc, rgb.shape[1] / float(proc.shape[1]), rgb.shape[0] / float(proc.shape[0]),
                       scale_step=scale_step, pad=pad, min_margin=min_margin, max_level=max_level)  # fmt: skip


def _processing_image(rgb: np.ndarray, max_side: int, upscale: float = 1.0) -> np.ndarray:
    """The image HOG runs on: long side ``max_side`` (at most ``upscale`` times the original)."""
    h, w = rgb.shape[:2]
    s0 = min(upscale, max_side / float(max(h, w)))
    if abs(s0 - 1.0) <= 1e-6:
        return rgb
    interp = cv2.INTER_AREA if s0 < 1 else cv2.INTER_LINEAR
    return cv2.resize(rgb, (max(1, round(w * s0)), max(1, round(h * s0))), interpolation=interp)


def _pyramid_on(
    proc: np.ndarray, to_x: float, to_y: float, *, scale_step: float, pad: tuple[int, int], min_margin: float, max_level: float
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_pyramid_candidates` on the processing image; ``to_x``, ``to_y``: original px per processing px."""
    ph, pw = proc.shape[:2]
    pad_x, pad_y = pad
    boxes: list[np.ndarray] = []
    margins: list[np.ndarray] = []
    level = 1.0
    while True:
        lw, lh = round(pw / level), round(ph / level)
        if lh + 2 * pad_y < _WIN_H or lw + 2 * pad_x < _WIN_W or level > max_level * (1 + 1e-9):
            break
        img = proc if level == 1.0 else cv2.resize(proc, (lw, lh), interpolation=cv2.INTER_LINEAR)
        if pad_x or pad_y:
            # Replicated borders have no gradient: like empty background, so a person cut by the
            # frame edge can still fill a window that reaches past the edge.
            img = cv2.copyMakeBorder(img, pad_y, pad_y, pad_x, pad_x, cv2.BORDER_REPLICATE)
        scores = hog_scores_fast(img)
        ys, xs = np.nonzero(scores > min_margin)
        if ys.size:
            f = level * to_x  # level pixels -> original pixels
            fy = level * to_y
            x0 = (xs * _CELL - pad_x) * f
            y0 = (ys * _CELL - pad_y) * fy
            ww, wh = _WIN_W * f, _WIN_H * fy
            person = np.stack(
                [
                    x0 + _PERSON_INSET_X * ww,
                    y0 + _PERSON_INSET_Y * wh,
                    x0 + (1 - _PERSON_INSET_X) * ww,
                    y0 + (1 - _PERSON_INSET_Y) * wh,
                ],
                axis=1,
            )
            boxes.append(person - 0.5)  # pixel edges -> the centre-at-integer convention
            margins.append(scores[ys, xs].astype(np.float64))
        level *= scale_step
    if not boxes:
        return np.zeros((0, 4)), np.zeros(0)
    return np.concatenate(boxes), np.concatenate(margins)


def _group(boxes: np.ndarray, margins: np.ndarray, iou: float, max_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted NMS: each kept box becomes the margin-weighted mean of the raw windows it suppresses.

    Returns (boxes (K, 4), best margins (K,), support (K,) = number of raw windows in the group).
    Averaging the many overlapping windows of a true person steadies the box; isolated false
    positives have little support.
    """
    if boxes.shape[0] == 0:
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
    order = np.argsort(-margins, kind="stable")
    if order.size > 4000:  # the weakest windows never win; bound the O(N^2) work
        order = order[:4000]
    boxes, margins = boxes[order], margins[order]
    alive = np.ones(boxes.shape[0], bool)
    out_b, out_m, out_n = [], [], []
    w_all = margins - margins.min() + 0.1
    for i in range(boxes.shape[0]):
        if not alive[i]:
            continue
        ious = box_iou(boxes[i : i + 1], boxes)[0]
        members = alive & (ious > iou)
        wts = w_all[members]
        out_b.append((boxes[members] * wts[:, None]).sum(0) / wts.sum())
        out_m.append(margins[i])
        out_n.append(int(members.sum()))
        alive &= ~members
        if len(out_b) >= max_out:
            break
    return np.asarray(out_b), np.asarray(out_m), np.asarray(out_n, np.int64)


def detect_people(
    image: np.ndarray,
    *,
    max_side: int = 640,
    scale_step: float = 1.1,
    min_margin: float = 0.0,
    pad: tuple[int, int] = (16, 32),
    nms_iou: float = 0.3,
    max_detections: int = 10,
    max_level: float = math.inf,
) -> list[Detection]:
    """HOG people detections in one RGB image, best first.

    Args:
        image: (H, W, 3) uint8 RGB (other layouts are converted by ``as_rgb_uint8``).
        max_side: the image is downscaled so its long side is at most this before the pyramid;
            a person needs to be >= ~96 px tall at that size (~15% of ``max_side``) to be found.
        scale_step: ratio between pyramid levels (smaller: slower, finer sizes).
        min_margin: keep windows whose SVM margin exceeds this (0: OpenCV's default threshold).
        pad: (x, y) replicated-border padding in pyramid pixels, for people cut by the frame edge.
        nms_iou: windows overlapping a better one by more than this IoU are merged into it.
        max_detections: at most this many results.
        max_level: largest pyramid downscale searched (relative to the ``max_side`` image): people
            taller than ~96 * max_level processing pixels are not looked for.

    Returns:
        Detections (boxes in original pixels, around the person, not the HOG window).
    """
    rgb = _rgb(image)
    if not (scale_step > 1.0):
        raise ValueError(f"scale_step must be > 1, got {scale_step}")
    if max_side < _WIN_H:
        raise ValueError(f"max_side must be at least {_WIN_H} (the detector window height), got {max_side}")
    boxes, margins = _pyramid_candidates(
        rgb, max_side=max_side, scale_step=scale_step, pad=pad, min_margin=min_margin, max_level=max_level
    )
    gb, gm, _ = _group(boxes, margins, nms_iou, max_detections)
    conf = _sigmoid_conf(gm)
    return [Detection(tuple(float(v) for v in b), float(c), float(m), "hog") for b, c, m in zip(gb, conf, gm, strict=True)]


def detect_person(
    image: np.ndarray,
    box: Sequence[float] | np.ndarray | None = None,
    *,
    min_score: float = 0.6,
    max_side: int = 400,
    retry_side: int | None = 640,
) -> PersonDetection:
    """Choose the person box of one image.

    An explicit ``box`` (x0, y0, x1, y1) wins (validated and clipped: 4 finite numbers, x1 > x0,
    y1 > y0, overlapping the image; ValueError otherwise). Otherwise the *largest* HOG detection
    with confidence >= ``min_score`` is chosen (the main subject is usually the largest person);
    if there is none, the whole image is returned with ``fallback=True``.

    The search runs on the image downscaled to long side ``max_side`` (400: people taller than
    ~1/4 of the long side, ~15 ms for a 640 x 480 photo on one core). Only when it finds nobody
    and ``retry_side`` is larger, the smaller sizes it could not see are searched at ``retry_side``
    (the finer pyramid levels only, ~25 ms more), so small people are still found.
    """
    rgb = _rgb(image)
    h, w = rgb.shape[:2]
    if box is not None:
        b = validate_box(box, w, h)
        return PersonDetection(b, 1.0, False, "user", (Detection(tuple(float(v) for v in b), 1.0, float("nan"), "user"),))
    dets = detect_people(rgb, max_side=max_side)
    confident = [d for d in dets if d.score >= min_score]
    long_side = max(h, w)
    if not confident and retry_side is not None and retry_side > max_side and long_side > max_side:
        side = min(retry_side, long_side)
        # Levels up to side / max_side reach exactly the sizes the first pass started at.
        small = detect_people(rgb, max_side=side, max_level=side / float(max_side))
        dets = sorted(dets + small, key=lambda d: -d.score)
        confident = [d for d in dets if d.score >= min_score]
    if confident:
        best = max(confident, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))
        clipped = np.clip(np.asarray(best.box), -0.5, [w - 0.5, h - 0.5, w - 0.5, h - 0.5])
        return PersonDetection(clipped, best.score, False, "hog", tuple(dets))
    full = np.array([-0.5, -0.5, w - 0.5, h - 0.5])
    return PersonDetection(full, 0.0, True, "fallback", tuple(dets))


# ----------------------------------------------------------------------------- motion cue
def _moves_less_than(m: np.ndarray, w: int, h: int, tol: float) -> bool:
    """True when the 2 x 3 affine ``m`` moves each corner of a w x h frame by less than ``tol`` px."""
    corners = np.array([[0.0, 0.0, 1.0], [w - 1.0, 0.0, 1.0], [0.0, h - 1.0, 1.0], [w - 1.0, h - 1.0, 1.0]])
    return bool(np.abs(corners @ m.T - corners[:, :2]).max() < tol)


class _MotionCue:
    """Camera-compensated three-frame differencing on small grey frames (see the module doc)."""

    def __init__(self, long_side: int, gap: int, threshold: float) -> None:
        self.long_side = long_side
        self.gap = gap
        self.threshold = threshold
        self.frames: deque[np.ndarray] = deque(maxlen=2 * gap + 1)
        self.halves: deque[np.ndarray] = deque(maxlen=2 * gap + 1)  # the frames at half resolution, for alignment
        # to_prev[k]: similarity taking frame (k)'s pixels to frame (k - gap)'s, for the frames in the window
        self.to_prev: deque[np.ndarray | None] = deque(maxlen=2 * gap + 1)
        self.size: tuple[int, int] | None = None

    def small(self, rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        f = min(1.0, self.long_side / float(max(h, w)))
        if self.size is None:
            self.size = (max(1, round(w * f)), max(1, round(h * f)))
        g = cv2.cvtColor(cv2.resize(rgb, self.size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
        return cv2.GaussianBlur(g, (5, 5), 0)

    @staticmethod
    def _align(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
        """2 x 3 similarity mapping src pixel coordinates to dst ones (background-dominated), or None.

        ``src`` and ``dst`` are the half-resolution copies of two frames; corners are found and
        tracked there (4x fewer pixels; LK stays sub-pixel, ~0.1 full-resolution px) and the fit is
        made in full-resolution pixels.
        """
        pts = cv2.goodFeaturesToTrack(src, maxCorners=150, qualityLevel=0.01, minDistance=3)
        if pts is None or len(pts) < 12:
            return None
        nxt, status, _ = cv2.calcOpticalFlowPyrLK(src, dst, pts, None, winSize=(11, 11), maxLevel=2)
        ok = status.ravel() == 1
        if ok.sum() < 12:
            return None
        # pyrDown: half-resolution pixel centre x covers full-resolution pixels 2x and 2x + 1
        m, inliers = cv2.estimateAffinePartial2D(pts[ok] * 2.0 + 0.5, nxt[ok] * 2.0 + 0.5, method=cv2.RANSAC,
                                                 ransacReprojThreshold=1.0)  # fmt: skip
        if m is None or inliers is None or inliers.sum() < 10:
            return None
        return m

    def push(self, rgb: np.ndarray) -> np.ndarray | None:
        """Add a frame; returns the motion mask (h, w) bool of the frame ``gap`` frames earlier once known."""
        g = self.small(rgb)
        half = cv2.pyrDown(g)
        prev_t = self.halves[-self.gap] if len(self.halves) >= self.gap else None
        self.to_prev.append(self._align(half, prev_t) if prev_t is not None else None)
        self.frames.append(g)
        self.halves.append(half)
        if len(self.frames) < 2 * self.gap + 1:
            return None
        return self._mask_at_centre()

    def _mask_at_centre(self) -> np.ndarray:
        g = self.gap
        prev, cur, nxt = self.frames[0], self.frames[g], self.frames[2 * g]
        h, w = cur.shape
        ident = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        m_cur_to_prev = self.to_prev[g] if self.to_prev[g] is not None else ident
        m_next_to_cur = self.to_prev[2 * g] if self.to_prev[2 * g] is not None else ident
        valid = np.ones((h, w), np.uint8)
        d = np.empty((h, w), np.uint8)
        mask = np.ones((h, w), bool)
        # A still camera (the common case) needs no resampling: skip the warps when the similarity
        # moves no pixel of the frame by more than a quarter pixel.
        if _moves_less_than(m_cur_to_prev, w, h, 0.25):
            d1 = cv2.absdiff(cur, prev)
        else:
            # prev resampled onto cur's grid: cur pixel x shows prev at m_cur_to_prev(x)
            d1 = cv2.absdiff(cur, cv2.warpAffine(prev, m_cur_to_prev, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
            mask &= cv2.warpAffine(valid, m_cur_to_prev, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0
        if _moves_less_than(m_next_to_cur, w, h, 0.25):
            d2 = cv2.absdiff(cur, nxt)
        else:
            # next resampled onto cur's grid: cur pixel x shows next at inverse(m_next_to_cur)(x)
            d2 = cv2.absdiff(cur, cv2.warpAffine(nxt, m_next_to_cur, (w, h), flags=cv2.INTER_LINEAR))
            mask &= cv2.warpAffine(valid, m_next_to_cur, (w, h), flags=cv2.INTER_NEAREST) > 0
        np.minimum(d1, d2, out=d)
        mask = ((d > self.threshold) & mask).astype(np.uint8)
        # Opening removes thin residue along strong edges (sub-pixel misalignment); closing joins limbs.
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((7, 7), np.uint8))
        return mask.astype(bool)

    def flush(self) -> list[np.ndarray | None]:
        """Masks of the last ``gap`` frames (no later neighbour: None)."""
        return [None] * min(self.gap, len(self.frames))


# ----------------------------------------------------------------------------- clips


def _unpack(packed: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A motion mask stored with np.packbits -> (h, w) bool."""
    return np.unpackbits(packed, count=shape[0] * shape[1]).reshape(shape).astype(bool)


_MOTION_FOUND = 0.03  # fraction of the (widened) box that moves: the person is there


def _fill_gaps_with_motion(
    boxes: np.ndarray,
    scores: np.ndarray,
    found: np.ndarray,
    sources: np.ndarray,
    masks: list[np.ndarray | None],
    motion_size: tuple[int, int],
    w: int,
    h: int,
) -> None:
    """Update the gap frames of a track in place from the motion masks (see :func:`_assemble`)."""
    n = boxes.shape[0]
    sx, sy = motion_size[0] / float(w), motion_size[1] / float(h)
    shape = (motion_size[1], motion_size[0])
    calm = np.zeros(n, bool)  # frames with a motion mask and little motion in the box
    for ti in range(n):
        if found[ti] or masks[ti] is None:
            continue
        mk = _unpack(masks[ti], shape)
        b = boxes[ti]
        bw = b[2] - b[0]
        x0 = int(np.clip(math.floor((b[0] - 0.1 * bw + 0.5) * sx), 0, mk.shape[1]))
        x1 = int(np.clip(math.ceil((b[2] + 0.1 * bw + 0.5) * sx), 0, mk.shape[1]))
        y0 = int(np.clip(math.floor((b[1] + 0.5) * sy), 0, mk.shape[0]))
        y1 = int(np.clip(math.ceil((b[3] + 0.5) * sy), 0, mk.shape[0]))
        if x1 <= x0 or y1 <= y0:
            continue
        # Moving pixels are counted from the image top: a person rising above the interpolated
        # top edge still counts.
        region = mk[:y1, x0:x1]
        count = int(region.sum())
        frac = count / float((x1 - x0) * (y1 - y0))
        if frac < _MOTION_FOUND:
            calm[ti] = True
            continue
        rows = region.sum(axis=1)
        new_top = int(np.searchsorted(np.cumsum(rows), 0.02 * count)) / sy - 0.5
        # The top may only come down (crouching, bending; a jump is upright, HOG's case), and at
        # most to half the interpolated height.
        b[1] = min(max(new_top, b[1]), b[3] - 0.5 * (b[3] - b[1]))
        found[ti], sources[ti] = True, "motion"
        scores[ti] = 0.5 * min(1.0, frac / 0.1)
    # A run of frames in which little moves inside the box, between two frames where the person
    # was found, shows the person staying put (leaving and coming back would move pixels): found,
    # with the box interpolated between the two ends.
    ti = 0
    while ti < n:
        if found[ti] or not calm[ti]:
            ti += 1
            continue
        end = ti
        while end < n and not found[end] and calm[end]:
            end += 1
        if ti > 0 and end < n and found[ti - 1] and found[end]:
            a, b = ti - 1, end
            f = ((np.arange(ti, end) - a) / float(b - a))[:, None]
            boxes[ti:end] = (1 - f) * boxes[a] + f * boxes[b]
            found[ti:end], sources[ti:end] = True, "still"
            scores[ti:end] = min(scores[a], scores[b], 0.5)
        ti = end


class PersonTrack(NamedTuple):
    """Per-frame person boxes of a clip.

    Attributes:
        boxes: (T, 4) float64 (x0, y0, x1, y1) original pixels, clipped to the frame.
        scores: (T,) confidence in [0, 1] (0 where no cue saw the person: "gap", "fallback").
        found: (T,) bool, the person was seen in this frame by a cue (HOG in it or in both
            neighbouring detection frames, motion inside the track, or a calm stretch between
            such frames) rather than guessed.
        sources: (T,) str: "hog", "interp" (between HOG detections at most ``detect_every``
            apart), "motion" (moving pixels in the box), "still" (little moved inside the box
            between two found frames), "gap" (interpolated without evidence) or "fallback" (whole frame).
    """

    boxes: np.ndarray
    scores: np.ndarray
    found: np.ndarray
    sources: np.ndarray


def moving_average(values: np.ndarray, radius: int) -> np.ndarray:
    """Centred moving average along axis 0 with edge replication; (T, ...) -> (T, ...)."""
    if radius <= 0 or values.shape[0] < 2:
        return values.copy()
    k = 2 * radius + 1
    padded = np.concatenate([np.repeat(values[:1], radius, 0), values, np.repeat(values[-1:], radius, 0)])
    c = np.cumsum(np.concatenate([np.zeros_like(values[:1]), padded]), axis=0)
    return (c[k:] - c[:-k]) / k


def interp_boxes(t_all: np.ndarray, t_known: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Linear interpolation of boxes (K, 4) known at frames t_known to frames t_all (constant beyond the ends)."""
    return np.stack([np.interp(t_all, t_known, boxes[:, i]) for i in range(4)], axis=1)


def track_person(
    frames: Iterable[np.ndarray],
    *,
    detect_every: int = 3,
    max_side: int = 400,
    scale_step: float = 1.2,
    motion_side: int = 320,
    fps: float = 30.0,
    smooth_radius: int = 2,
    min_margin: float = 0.0,
    workers: int = 1,
) -> PersonTrack:
    """Track the main person through a clip (see the module doc for the method).

    Args:
        frames: (T, H, W, 3) array or any iterable of (H, W, 3) frames (streamed: only small grey
            copies and detections are kept, never the frames).
        detect_every: run HOG on every k-th frame.
        max_side: HOG processing size (long side, pixels).
        scale_step: HOG pyramid ratio (coarser than for single images: the track averages over time).
        motion_side: motion-cue processing size (long side, pixels).
        fps: frame rate; the motion cue compares frames ~0.1 s apart.
        smooth_radius: half-width (frames) of the centred moving average over box centre and size.
        min_margin: HOG margin a detection needs to be accepted on the track.
        workers: with 2 or more, the HOG detections run in ``workers - 1`` background threads
            beside the motion cue (the compiled kernels and OpenCV release the GIL); the result
            does not depend on it.

    Returns:
        PersonTrack(boxes (T, 4), scores (T,), found (T,), sources (T,)).
    """
    if int(detect_every) != detect_every or detect_every < 1:
        raise ValueError(f"detect_every must be an integer >= 1, got {detect_every!r}")
    if not scale_step > 1.0:
        raise ValueError(f"scale_step must be > 1, got {scale_step!r}")
    if max_side < _WIN_H:
        raise ValueError(f"max_side must be at least {_WIN_H} (the detector window height), got {max_side}")
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be positive, got {fps!r}")
    if int(workers) != workers or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    if workers == 1:
        return _track(frames, None, 0, detect_every, max_side, scale_step, motion_side, fps, smooth_radius, min_margin)
    with ThreadPoolExecutor(max_workers=workers - 1, thread_name_prefix="nlrd-hog") as pool:
        return _track(frames, pool, workers - 1, detect_every, max_side, scale_step, motion_side, fps, smooth_radius, min_margin)


def _detect_for_track(proc: np.ndarray, to_x: float, to_y: float, scale_step: float) -> tuple[np.ndarray, np.ndarray]:
    """Grouped HOG candidates of one tracking frame (processing image in, original px out): (K, 4), (K,)."""
    boxes, margins = _pyramid_on(proc, to_x, to_y, scale_step=scale_step, pad=(16, 32), min_margin=-0.5, max_level=math.inf)
    gb, gm, _ = _group(boxes, margins, 0.3, 8)
    return gb, gm


def _track(
    frames: Iterable[np.ndarray],
    pool: ThreadPoolExecutor | None,
    workers: int,
    detect_every: int,
    max_side: int,
    scale_step: float,
    motion_side: int,
    fps: float,
    smooth_radius: int,
    min_margin: float,
) -> PersonTrack:
    """:func:`track_person`'s work; HOG detections go to ``pool`` (``workers`` threads) when given."""
    gap = max(1, round(0.1 * fps))
    motion = _MotionCue(motion_side, gap, threshold=12.0)
    cand_boxes: dict[int, np.ndarray] = {}
    cand_margins: dict[int, np.ndarray] = {}
    masks: list[np.ndarray | None] = []  # packed motion masks, one per frame
    pending: deque[tuple[int, Future[tuple[np.ndarray, np.ndarray]]]] = deque()
    size: tuple[int, int] | None = None
    t = 0
    for t, frame in enumerate(frames):
        rgb = _rgb(frame, name=f"frame {t}")
        if size is None:
            size = (rgb.shape[1], rgb.shape[0])
        elif size != (rgb.shape[1], rgb.shape[0]):
            raise ValueError(f"frame {t} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 is {size[0]}x{size[1]}; all frames must match")
        if t % detect_every == 0:
            proc = _processing_image(rgb, max_side)
            to_x, to_y = rgb.shape[1] / float(proc.shape[1]), rgb.shape[0] / float(proc.shape[0])
            if pool is None:
                cand_boxes[t], cand_margins[t] = _detect_for_track(proc, to_x, to_y, scale_step)
            else:
                # The worker gets its own copy: the caller may reuse the frame's memory.
                pending.append((t, pool.submit(_detect_for_track, proc.copy() if proc is rgb else proc, to_x, to_y, scale_step)))
                while len(pending) > 2 * workers:  # bounded: a few small images in flight
                    ti, fut = pending.popleft()
                    cand_boxes[ti], cand_margins[ti] = fut.result()
        m = motion.push(rgb)
        if t >= 2 * gap:
            masks.append(None if m is None else np.packbits(m))  # 1 bit per pixel: long clips stay small
        elif m is None and t < gap:
            masks.append(None)  # the first `gap` frames have no earlier neighbour
    for ti, fut in pending:
        cand_boxes[ti], cand_margins[ti] = fut.result()
    if size is None:
        raise ValueError("frames: no frames")
    n = t + 1
    masks.extend(motion.flush())
    masks = (masks + [None] * n)[:n]
    w, h = size
    return _assemble(n, w, h, cand_boxes, cand_margins, masks, motion.size, detect_every, smooth_radius, min_margin)


def _assemble(
    n: int,
    w: int,
    h: int,
    cand_boxes: dict[int, np.ndarray],
    cand_margins: dict[int, np.ndarray],
    masks: list[np.ndarray | None],
    motion_size: tuple[int, int] | None,
    detect_every: int,
    smooth_radius: int,
    min_margin: float,
) -> PersonTrack:
    full = np.array([-0.5, -0.5, w - 0.5, h - 0.5])
    sampled = sorted(cand_boxes)
    # 1. Anchor: the strongest detection among those seen again at about the same place in other
    #    sampled frames (a person persists; one-off false positives do not).
    best: tuple[float, int, int] | None = None
    frame_of = np.concatenate([np.full(cand_boxes[ti].shape[0], ti) for ti in sampled]) if sampled else np.zeros(0)
    if frame_of.size:
        all_boxes = np.concatenate([cand_boxes[ti] for ti in sampled])
        all_margins = np.concatenate([cand_margins[ti] for ti in sampled])
        all_index = np.concatenate([np.arange(cand_boxes[ti].shape[0]) for ti in sampled])
        same_place = (box_iou(all_boxes, all_boxes) > 0.5) & (frame_of[:, None] != frame_of[None, :])
        for i in np.nonzero(all_margins >= min_margin)[0]:
            support = np.unique(frame_of[same_place[i]]).size  # other frames with a detection here
            key = float(all_margins[i]) + 0.5 * math.log1p(support)
            if best is None or key > best[0]:
                best = (key, int(frame_of[i]), int(all_index[i]))
    accepted: dict[int, tuple[np.ndarray, float]] = {}
    if best is not None:
        _, t0, k0 = best
        accepted[t0] = (cand_boxes[t0][k0], float(cand_margins[t0][k0]))
        # 2. Associate forward and backward from the anchor: the candidate overlapping the last
        #    accepted box best, if it is confident enough for how well it overlaps.
        for direction in (1, -1):
            last = cand_boxes[t0][k0]
            seq = [s for s in sampled if (s - t0) * direction > 0]
            seq.sort(key=lambda s: abs(s - t0))
            for ti in seq:
                cb, cm = cand_boxes[ti], cand_margins[ti]
                if cb.shape[0] == 0:
                    continue
                ious = box_iou(last, cb)[0]
                ok = ((ious > 0.5) & (cm >= min_margin)) | ((ious > 0.3) & (cm >= min_margin + 0.5))
                if not ok.any():
                    continue
                k = int(np.argmax(np.where(ok, ious + 0.25 * cm, -np.inf)))
                accepted[ti] = (cb[k], float(cm[k]))
                last = cb[k]

    t_all = np.arange(n, dtype=np.float64)
    boxes = np.repeat(full[None], n, 0)
    scores = np.zeros(n)
    found = np.zeros(n, bool)
    sources = np.full(n, "fallback", dtype=object)
    if accepted:
        t_acc = np.array(sorted(accepted), dtype=np.float64)
        b_acc = np.stack([accepted[int(ti)][0] for ti in t_acc])
        m_acc = np.array([accepted[int(ti)][1] for ti in t_acc])
        boxes = interp_boxes(t_all, t_acc, b_acc)
        conf = _sigmoid_conf(m_acc)
        sources[:] = "gap"
        # Frames between accepted detections at most `detect_every` apart count as found.
        for a, b, ca, cb in zip(t_acc[:-1], t_acc[1:], conf[:-1], conf[1:], strict=True):
            if b - a <= detect_every:
                sl = slice(int(a), int(b) + 1)
                found[sl] = True
                sources[sl] = "interp"
                scores[sl] = np.minimum(ca, cb)
        for ti, c in zip(t_acc.astype(int), conf, strict=True):
            found[ti], sources[ti], scores[ti] = True, "hog", c
        # 3. Motion fills the longer gaps: the person is seen if enough pixels move inside the
        #    interpolated box (widened); the top edge follows the moving region (crouching, bending),
        #    width and feet stay interpolated (static parts do not move). A frame in which nothing
        #    moves inside the box shows the person where the previous (or next) frame saw them.
        if motion_size is not None:
            _fill_gaps_with_motion(boxes, scores, found, sources, masks, motion_size, w, h)
    else:
        # No accepted detection: the moving region (if any) is the person.
        if motion_size is not None:
            sx, sy = motion_size[0] / float(w), motion_size[1] / float(h)
            for ti in range(n):
                if masks[ti] is None:
                    continue
                mk = _unpack(masks[ti], (motion_size[1], motion_size[0]))
                if mk.mean() < 0.005:
                    continue
                ys, xs = np.nonzero(mk)
                lo_x, hi_x = np.percentile(xs, [2, 98])
                lo_y, hi_y = np.percentile(ys, [2, 98])
                boxes[ti] = [lo_x / sx - 0.5, lo_y / sy - 0.5, (hi_x + 1) / sx - 0.5, (hi_y + 1) / sy - 0.5]
                found[ti], sources[ti], scores[ti] = True, "motion", 0.25
    # 4. Smooth centre and size; clip to the frame.
    if smooth_radius > 0 and n > 1 and (sources != "fallback").any():
        c = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2], 1)
        s = np.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
        c, s = moving_average(c, smooth_radius), moving_average(s, smooth_radius)
        boxes = np.concatenate([c - s / 2, c + s / 2], 1)
    boxes = np.clip(boxes, full[[0, 1, 0, 1]], full[[2, 3, 2, 3]])
    return PersonTrack(boxes, scores, found, sources.astype(str))
