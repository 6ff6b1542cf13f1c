"""Calibrate the MediaPipe landmark -> Human3.6M joint mapping (nlrd/vision/landmarks.py) on labelled renders.

Usage::

    python scripts/calibrate_landmarks.py --data data --data-root ../shared/data            # 1000 renders, ~80 s
    python scripts/calibrate_landmarks.py --n 200 --out out/landmark_calibration.json       # quick look

What it does: renders ``--n`` synthetic people (the project's renderer, alternating the source and the
target style, 128 px like the fixed test sets) of TRAIN-split mocap poses with its own seed (never the
test sets, never real photos), upscales each render to ``--upscale`` px, runs
:func:`nlrd.vision.detect_keypoints`, and maps the raw landmarks back to render pixels. Each joint is
then fitted as an affine combination (weights sum to 1) of a few nearby landmarks (:data:`GROUPS`):
left/right joints share mirrored weights, centre joints use left/right midpoints (so they are symmetric).

- 2D: per joint group, least squares between the combination of the 2D landmarks and the joint's
  projection, over the joints the render marks visible.
- 3D: one joint least-squares problem over all joints, because the labels are pelvis-relative: joint j's
  prediction is (w_j - w_pelvis) . landmarks3d, so the pelvis weights are those that best explain every
  other joint relative to it.

Both fits drop gross outliers (MediaPipe left/right swaps, wrong limbs: residual above 3x the median)
and refit, twice. Every fifth detected render is kept out of the fit and the residuals (px at 128 px,
mm) before (:data:`nlrd.vision.landmarks.NAIVE_WEIGHTS`) and after calibration are printed on those.
It also measures :data:`nlrd.vision.keypoints.BOX_PAD` (landmark and joint box -> the renders' silhouette box)
and, as a check of the axes, the rotation between MediaPipe's world landmarks and the camera-frame labels.

The printed ``WEIGHTS_2D`` / ``WEIGHTS_3D`` literals are pasted into nlrd/vision/landmarks.py.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from nlrd.data.paths import default_data_root
from nlrd.data.poses import load_split
from nlrd.data.synthetic.render import render_sample
from nlrd.skeleton import H36M_17
from nlrd.vision import detect_keypoints
from nlrd.vision.landmarks import LANDMARK_FLIP, LM, NAIVE_WEIGHTS, NUM_LANDMARKS, map_points, weight_matrix

# Candidate features per joint, for the LEFT joint of a pair (the right one uses the mirror image) or a
# centre joint. "mid_x" is the midpoint of left_x and right_x. The first feature is the base (weight 1
# before fitting). A handful of nearby landmarks: enough to move a surface landmark to a joint centre
# along the body's own axes, few enough that the fit cannot chase noise.
GROUPS: dict[str, tuple[str, ...]] = {
    "pelvis": ("mid_hip", "mid_shoulder", "mid_knee"),
    "l_hip": ("left_hip", "right_hip", "left_shoulder", "right_shoulder", "left_knee"),
    "l_knee": ("left_knee", "left_hip", "left_ankle"),
    "l_ankle": ("left_ankle", "left_heel", "left_foot_index", "left_knee"),
    "spine": ("mid_hip", "mid_shoulder", "mid_knee"),
    "thorax": ("mid_shoulder", "mid_hip", "nose", "mid_ear"),
    "neck": ("nose", "mid_ear", "mid_eye", "mid_mouth", "mid_shoulder"),
    "head": ("mid_ear", "nose", "mid_eye", "mid_mouth", "mid_shoulder"),
    "l_shoulder": ("left_shoulder", "right_shoulder", "left_hip", "left_elbow", "left_ear"),
    "l_elbow": ("left_elbow", "left_shoulder", "left_wrist"),
    "l_wrist": ("left_wrist", "left_elbow", "left_pinky", "left_index", "left_thumb"),
}
PAIRS = {"l_hip": "r_hip", "l_knee": "r_knee", "l_ankle": "r_ankle", "l_shoulder": "r_shoulder",
         "l_elbow": "r_elbow", "l_wrist": "r_wrist"}  # fmt: skip
MID = {"mid_hip": "hip", "mid_shoulder": "shoulder", "mid_knee": "knee", "mid_ear": "ear", "mid_eye": "eye",
       "mid_mouth": "mouth"}  # fmt: skip
TRIM, TRIM_ROUNDS = 3.0, 2  # outliers: residual above TRIM x the median, dropped TRIM_ROUNDS times
RIDGE_2D, RIDGE_3D = 1.0, 100.0  # px^2 and mm^2 per sample-joint: see _solve_trimmed
MAX_TURN_DEG = 60.0  # renders whose MediaPipe 3D pose is turned further from the label are left out of the fits


def feature(name: str) -> np.ndarray:
    """(33,) landmark weights of a feature name (a landmark or a left/right midpoint)."""
    f = np.zeros(NUM_LANDMARKS)
    if name in MID:
        part = MID[name]
        if part == "mouth":
            f[LM["mouth_left"]] = f[LM["mouth_right"]] = 0.5
        else:
            f[LM[f"left_{part}"]] = f[LM[f"right_{part}"]] = 0.5
    else:
        f[LM[name]] = 1.0
    return f


def joint_features(joint: str) -> np.ndarray:
    """(K, 33) features of a joint, mirrored for right joints."""
    left = {v: k for k, v in PAIRS.items()}.get(joint)
    feats = np.stack([feature(n) for n in GROUPS[left or joint]])
    return feats[:, list(LANDMARK_FLIP)] if left is not None else feats


# ----------------------------------------------------------------------------- data
@dataclass
class Detections:
    lm2d: np.ndarray  # (N, 33, 2) render px
    vis: np.ndarray  # (N, 33) MediaPipe visibility
    lm3d: np.ndarray  # (N, 33, 3) mm
    joints2d: np.ndarray  # (N, 17, 2) render px
    joints3d: np.ndarray  # (N, 17, 3) mm, root-relative
    visible: np.ndarray  # (N, 17) bool
    box: np.ndarray  # (N, 4) silhouette box
    style: np.ndarray  # (N,) str


def collect(args: argparse.Namespace) -> tuple[Detections, dict[str, tuple[int, int]], float]:
    """Render and detect; returns the detections, {style: (found, rendered)} and ms per MediaPipe call."""
    poses = load_split(args.data, "train").joints
    rng = np.random.default_rng([args.seed, 0xCA11])
    index = rng.choice(len(poses), size=args.n, replace=args.n > len(poses))
    backgrounds = Path(args.data_root) / "backgrounds"
    rows: dict[str, list] = {k: [] for k in Detections.__dataclass_fields__}
    counts: dict[str, list[int]] = {"source": [0, 0], "target": [0, 0]}
    mp_time, f = 0.0, args.upscale / args.size
    for i, k in enumerate(index):
        style = "source" if i % 2 == 0 else "target"
        s = render_sample(poses[k], style, np.random.default_rng([args.seed, i]), args.size, backgrounds)
        img = s.image
        if args.upscale != args.size:
            img = cv2.resize(img, (args.upscale, args.upscale), interpolation=cv2.INTER_CUBIC)
        t0 = time.perf_counter()
        kp = detect_keypoints(img)
        mp_time += time.perf_counter() - t0
        counts[style][1] += 1
        if kp is None:
            continue
        counts[style][0] += 1
        rows["lm2d"].append((kp.landmarks2d[:, :2] + 0.5) / f - 0.5)  # upscaled px -> render px (centres at integers)
        rows["vis"].append(kp.landmarks2d[:, 2])
        rows["lm3d"].append(kp.landmarks3d)
        rows["joints2d"].append(s.joints2d)
        rows["joints3d"].append(s.joints3d)
        rows["visible"].append(s.visible)
        rows["box"].append(s.box)
        rows["style"].append(style)
        if args.progress and (i + 1) % 100 == 0:
            print(f"  {i + 1}/{args.n} rendered, {sum(c[0] for c in counts.values())} with a person", flush=True)
    det = Detections(**{k: np.asarray(v) for k, v in rows.items()})
    return det, {k: (v[0], v[1]) for k, v in counts.items()}, 1000.0 * mp_time / max(1, args.n)


# ----------------------------------------------------------------------------- fits
def _solve_trimmed(a: np.ndarray, b: np.ndarray, groups: np.ndarray, ridge: float) -> np.ndarray:
    """Ridge least squares a x = b (penalty ``ridge`` x samples x |x|^2, pulling every combination towards
    its base landmark), dropping sample-joints (rows sharing a ``groups`` id) with residual above TRIM x
    the median, TRIM_ROUNDS times.

    The ridge matters in 3D: MediaPipe's world hands, feet and face are small and noisy, and an
    unpenalised fit extrapolates along them (weights of 3 to 5) for a few mm on renders, which would
    not carry over to real photos."""
    ids = np.unique(groups)
    lam = ridge * len(ids)

    def solve(keep: np.ndarray) -> np.ndarray:
        ak, bk = a[keep], b[keep]
        return np.linalg.solve(ak.T @ ak + lam * np.eye(a.shape[1]), ak.T @ bk)

    x = solve(np.ones(len(b), bool))
    for _ in range(TRIM_ROUNDS):
        r = np.sqrt(np.bincount(groups, weights=(a @ x - b) ** 2))
        x = solve(r[groups] <= TRIM * np.median(r[ids]))
    return x


def fit_2d(det: Detections, train: np.ndarray) -> np.ndarray:
    """(17, 33) 2D weights: per joint group, over the training renders' visible joints."""
    w = np.zeros((H36M_17.num_joints, NUM_LANDMARKS))
    done: set[str] = set()
    for joint in H36M_17.joint_names:
        if joint in done:
            continue
        members = [joint] + ([PAIRS[joint]] if joint in PAIRS else [])
        a_rows, b_rows, g_rows = [], [], []
        for m in members:
            j = H36M_17.index(m)
            feats = joint_features(m)  # (K, 33)
            ok = train & det.visible[:, j]
            pts = np.einsum("kl,nld->nkd", feats, det.lm2d[ok])  # (n, K, 2)
            base = pts[:, 0]
            a_rows.append((pts[:, 1:] - base[:, None]).transpose(0, 2, 1).reshape(-1, len(feats) - 1))
            b_rows.append((det.joints2d[ok, j] - base).reshape(-1))
            g_rows.append(np.repeat(np.flatnonzero(ok) * 17 + j, 2))
        a, b, g = np.concatenate(a_rows), np.concatenate(b_rows), np.concatenate(g_rows)
        x = _solve_trimmed(a, b, g, RIDGE_2D) if a.shape[1] else np.zeros(0)
        for m in members:
            feats = joint_features(m)
            w[H36M_17.index(m)] = feats[0] + x @ (feats[1:] - feats[0])
            done.add(m)
    return w


def fit_3d(det: Detections, train: np.ndarray) -> np.ndarray:
    """(17, 33) 3D weights from one root-relative least-squares problem over all joints (see docstring)."""
    names = H36M_17.joint_names
    # one parameter block per group (a pair shares its block)
    block: dict[str, slice] = {}
    n_par = 0
    for group, cands in GROUPS.items():
        block[group] = slice(n_par, n_par + len(cands) - 1)
        n_par += len(cands) - 1
    block.update({right: block[left] for left, right in PAIRS.items()})
    feats = {j: joint_features(j) for j in names}
    lm = det.lm3d[train]  # (n, 33, 3)
    n = len(lm)
    pel = feats["pelvis"]
    p_pts = np.einsum("kl,nld->nkd", pel, lm)  # (n, K0, 3)
    a_rows, b_rows, g_rows = [], [], []
    for j, joint in enumerate(names):
        if j == 0:
            continue
        pts = np.einsum("kl,nld->nkd", feats[joint], lm)
        a = np.zeros((n, 3, n_par))
        a[:, :, block[joint]] += (pts[:, 1:] - pts[:, :1]).transpose(0, 2, 1)
        a[:, :, block["pelvis"]] -= (p_pts[:, 1:] - p_pts[:, :1]).transpose(0, 2, 1)
        b = det.joints3d[train, j] - (pts[:, 0] - p_pts[:, 0])
        a_rows.append(a.reshape(-1, n_par))
        b_rows.append(b.reshape(-1))
        g_rows.append(np.repeat(np.arange(n) * 17 + j, 3))
    x = _solve_trimmed(np.concatenate(a_rows), np.concatenate(b_rows), np.concatenate(g_rows), RIDGE_3D)
    w = np.zeros((len(names), NUM_LANDMARKS))
    for j, joint in enumerate(names):
        f = feats[joint]
        w[j] = f[0] + x[block[joint]] @ (f[1:] - f[0])
    return w


# ----------------------------------------------------------------------------- report
def errors_2d(det: Detections, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(n, 17) px errors, NaN where the render marks the joint invisible."""
    e = np.linalg.norm(map_points(det.lm2d[rows], w) - det.joints2d[rows], axis=-1)
    return np.where(det.visible[rows], e, np.nan)


def errors_3d(det: Detections, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """(n, 17) mm errors of the root-relative joints."""
    p = map_points(det.lm3d[rows], w)
    p = p - p[:, :1]
    return np.linalg.norm(p - det.joints3d[rows], axis=-1)


def rotation_angles(det: Detections, w: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per render, the angle (deg) of the best rotation taking the mapped world joints onto the labels."""
    p = map_points(det.lm3d[rows], w)
    p = p - p[:, :1]
    angles = []
    for a, b in zip(p, det.joints3d[rows], strict=True):
        u, _, vt = np.linalg.svd(a.T.astype(np.float64) @ b)
        d = np.sign(np.linalg.det(u @ vt))
        r = u @ np.diag([1.0, 1.0, d]) @ vt
        angles.append(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))
    return np.asarray(angles)


def table_literal(name: str, w: np.ndarray) -> str:
    """The weight matrix as the Python literal of nlrd/vision/landmarks.py (4 decimals, rows sum to 1)."""
    lines = [f"{name}: dict[str, dict[str, float]] = {{"]
    for j, joint in enumerate(H36M_17.joint_names):
        row = np.round(w[j], 4)
        big = int(np.argmax(np.abs(row)))
        row[big] = round(row[big] + 1.0 - row.sum(), 4)  # the rounding goes into the largest weight
        items = [f'"{LANDMARK_NAMES_[i]}": {row[i]:.4f},' for i in np.flatnonzero(row)]
        lines.append(f'    "{joint}": {{')
        line = ""
        for item in items:  # wrap between items, never inside one
            if line and len(line) + 1 + len(item) > 110:
                lines.append(" " * 8 + line)
                line = ""
            line = f"{line} {item}" if line else item
        lines.extend([" " * 8 + line, "    },"])
    lines.append("}")
    return "\n".join(lines)


LANDMARK_NAMES_ = {i: n for n, i in LM.items()}


def pa_mpjpe(pred: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(n,) mm mean joint error after the best similarity transform (rotation, scale, translation)."""
    out = []
    for a, b in zip(pred.astype(np.float64), label.astype(np.float64), strict=True):
        a, b = a - a.mean(0), b - b.mean(0)
        u, sv, vt = np.linalg.svd(a.T @ b)
        d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        scale = (sv * np.diag(d)).sum() / (a**2).sum()
        out.append(np.linalg.norm(scale * a @ (u @ d @ vt) - b, axis=1).mean())
    return np.asarray(out)


def load_or_collect(args: argparse.Namespace) -> tuple[Detections, dict[str, tuple[int, int]], float]:
    """:func:`collect`, or its saved result when ``--cache`` names an existing file (written otherwise)."""
    if args.cache is not None and args.cache.is_file():
        with np.load(args.cache, allow_pickle=False) as z:
            det = Detections(**{k: z[k] for k in Detections.__dataclass_fields__})
            counts = {k: (int(z[f"count_{k}"][0]), int(z[f"count_{k}"][1])) for k in ("source", "target")}
            return det, counts, float(z["mp_ms"])
    det, counts, mp_ms = collect(args)
    if args.cache is not None:
        args.cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.cache, **det.__dict__, mp_ms=mp_ms, **{f"count_{k}": np.array(v) for k, v in counts.items()})
    return det, counts, mp_ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data", help="prepared data folder (mocap.npz; training.prepare_data)")
    ap.add_argument("--data-root", default=str(default_data_root()), help="raw data folder (backgrounds/ for the target style)")
    ap.add_argument("--n", type=int, default=1000, help="renders (half source style, half target style)")
    ap.add_argument("--size", type=int, default=128, help="render size, px")
    ap.add_argument("--upscale", type=int, default=256, help="renders are resized to this side before MediaPipe")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=None, help="npz of the detections: reused when it exists, written otherwise")
    ap.add_argument("--out", type=Path, default=None, help="also write the weights and residuals as JSON")
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args()
    if args.n < 10:
        raise SystemExit("--n must be at least 10")

    t0 = time.perf_counter()
    det, counts, mp_ms = load_or_collect(args)
    n = len(det.lm2d)
    print(f"renders: {args.n} at {args.size} px (upscaled to {args.upscale} for MediaPipe), {mp_ms:.0f} ms per MediaPipe call")
    for style, (found, total) in counts.items():
        print(f"  {style:6s}: a person in {found}/{total} ({100 * found / max(1, total):.1f}%)")
    if n < 20:
        raise SystemExit(f"only {n} renders with a person: too few to fit")
    naive = weight_matrix(NAIVE_WEIGHTS)
    # MediaPipe sometimes mistakes front for back (more often on renders than on real faces): its left and
    # right are then swapped and its 3D pose turned ~180 deg. Such renders teach the mapping nothing.
    turned = rotation_angles(det, naive, np.ones(n, bool)) > MAX_TURN_DEG
    print(f"  MediaPipe's 3D pose turned > {MAX_TURN_DEG:.0f} deg from the label (front/back confusion): "
          + ", ".join(f"{st} {100 * turned[det.style == st].mean():.1f}%" for st in ("source", "target")))  # fmt: skip
    val = np.arange(n) % 5 == 4
    train = ~val & ~turned
    w2, w3 = fit_2d(det, train), fit_3d(det, train)

    e2n, e2c = errors_2d(det, naive, val), errors_2d(det, w2, val)
    e3n, e3c = errors_3d(det, naive, val), errors_3d(det, w3, val)
    print(f"\nresiduals on {int(val.sum())} held-out renders (all of them, turned ones included; fitted on {int(train.sum())} "
          f"others): 2D px at {args.size} px (visible joints), 3D mm root-relative; median / mean")  # fmt: skip
    print(f"{'joint':11s} | {'2D naive':>14s} | {'2D calibrated':>14s} | {'3D naive':>14s} | {'3D calibrated':>14s}")
    per_joint: dict[str, dict[str, float]] = {}
    for j, joint in enumerate(H36M_17.joint_names):
        cells = [f"{np.nanmedian(e):6.2f} /{np.nanmean(e):6.2f}" for e in (e2n[:, j], e2c[:, j], e3n[:, j], e3c[:, j])]
        print(f"{joint:11s} | " + " | ".join(cells))
        per_joint[joint] = {
            "2d_naive_median_px": float(np.nanmedian(e2n[:, j])),
            "2d_median_px": float(np.nanmedian(e2c[:, j])),
            "3d_naive_median_mm": float(np.nanmedian(e3n[:, j])),
            "3d_median_mm": float(np.nanmedian(e3c[:, j])),
        }
    print(f"{'all':11s} | " + " | ".join(f"{np.nanmedian(e):6.2f} /{np.nanmean(e):6.2f}" for e in (e2n, e2c, e3n, e3c)))
    pn = map_points(det.lm3d[val], naive)
    pc = map_points(det.lm3d[val], w3)
    pa_n, pa_c = pa_mpjpe(pn - pn[:, :1], det.joints3d[val]), pa_mpjpe(pc - pc[:, :1], det.joints3d[val])
    print(f"PA-MPJPE (after the best similarity transform): naive {pa_n.mean():.1f} mm, calibrated {pa_c.mean():.1f} mm")
    for style in ("source", "target"):
        m = det.style[val] == style
        print(f"  {style}: calibrated 2D median {np.nanmedian(e2c[m]):.2f} px / mean {np.nanmean(e2c[m]):.2f} px, "
              f"3D MPJPE {np.nanmean(e3c[m]):.1f} mm ({int(m.sum())} renders)")  # fmt: skip

    # BOX_PAD: the box around the landmarks and the mapped joints (the head top lies above every landmark),
    # grown by pad x its longer side on each side ~ the silhouette box's longer side
    pts = np.concatenate([det.lm2d, map_points(det.lm2d, w2)], axis=1)
    lo, hi = pts.min(axis=1), pts.max(axis=1)
    lm_side = (hi - lo).max(axis=1)
    box_side = np.maximum(det.box[:, 2] - det.box[:, 0], det.box[:, 3] - det.box[:, 1])
    pad = float(np.median((box_side - lm_side) / (2 * lm_side)))
    ok = ~turned
    angles = rotation_angles(det, w3, ok)
    p = map_points(det.lm3d[ok], w3)
    p = p - p[:, :1]
    scale = float((p * det.joints3d[ok]).sum() / (p * p).sum())
    print(f"\nBOX_PAD (landmark and joint box -> silhouette box, median): {pad:.3f}")
    print(f"axes check (renders not turned): rotation from MediaPipe's world joints to the camera-frame labels median "
          f"{np.median(angles):.1f} deg, 90th percentile {np.percentile(angles, 90):.1f} deg; "
          f"least-squares scale labels/MediaPipe {scale:.2f} (not applied)")  # fmt: skip
    print(f"\n# Generated by `python scripts/calibrate_landmarks.py --n {args.n} --upscale {args.upscale} --seed {args.seed}`")
    print(table_literal("WEIGHTS_2D", w2))
    print(table_literal("WEIGHTS_3D", w3))
    print(f"\n{time.perf_counter() - t0:.0f} s")
    if args.out is not None:
        result = {
            "joints": per_joint,
            "counts": {k: list(v) for k, v in counts.items()},
            "box_pad": pad,
            "weights_2d": w2.tolist(),
            "weights_3d": w3.tolist(),
            "rotation_deg_median": float(np.median(angles)),
            "pa_mpjpe_naive_mm": float(pa_n.mean()),
            "pa_mpjpe_mm": float(pa_c.mean()),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
