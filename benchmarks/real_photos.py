"""Real photos of people: how the predictor's paths follow a real person, side by side in one run.

Usage::

    python benchmarks/real_photos.py --data-root ../shared/data                  # everything (a few minutes)
    python benchmarks/real_photos.py --data-root ../shared/data --photos 40 --renders 200 --sheet out/sheet.jpg

Sections (each prints a markdown table; everything goes to ``--out`` as JSON):

1. **Held-out real photos** (``nlrd.vision.heldout_exercise_photos``: a fixed list that nothing is
   tuned on). The reference is MediaPipe Pose's own 2D joints. For G alone (the paper's image model
   on the crop of MediaPipe's person box), the fitted path (the pose prior fitted to the keypoints
   and 3D cues, started from G) and a constant mean pose placed in the same box: PCK@0.2 of the box
   size over the 12 limb joints (shoulders, elbows, wrists, hips, knees, ankles; joints MediaPipe is
   confident about), and torso front/back agreement with MediaPipe's world landmarks. The fitted
   path is fitted to these very keypoints, so its 2D agreement says that the fit follows them (it
   is not an independent accuracy); G alone and the constant pose are independent of them.
   **By posture**: the photos split by how far MediaPipe's world torso (mid-hips -> mid-shoulders)
   leans from the camera's up axis (upright < 30 degrees, leaning 30-60, horizontal > 60: lying,
   planks, push-ups, all fours), with each path's median torso direction error against it (degrees):
   a body that comes out standing when the person lies shows as a large error in the horizontal bin.
2. **Renders with 3D labels** (the fixed target-test set): MPJPE and PA-MPJPE (mm) of G alone, the
   fitted path (MediaPipe run on the upscaled renders) and MediaPipe's world landmarks mapped to the
   17 joints, on the renders where MediaPipe finds the person; both bone-length protocols for the fit.
3. **No person**: confident people reported on the Kodak backgrounds (photos without people).
4. **Speed**: median ms per held-out photo end to end for each path, and for MediaPipe alone.

``--sheet`` writes a contact sheet (G alone | fitted | constant pose over each photo) to look at.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from nlrd.data.images import load_image
from nlrd.data.paths import resolve_data_root
from nlrd.data.poses import ensure_prepared
from nlrd.data.testsets import load_test_set
from nlrd.fit import torso_faces_camera
from nlrd.inference import PosePredictor, project_to_image
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.skeleton import H36M_17, LIMB_JOINTS
from nlrd.vision import detect_keypoints, heldout_exercise_photos

CONFIDENT = 0.5  # reference joints below this MediaPipe confidence are not scored
PCK_FRACTION = 0.2


def pck(pred: np.ndarray, ref: np.ndarray, conf: np.ndarray, box: np.ndarray) -> tuple[int, int]:
    """(hits, scored) of (J, 2) predictions against (J, 2) reference joints within 0.2 of the box size."""
    idx = np.array(LIMB_JOINTS)
    size = max(box[2] - box[0], box[3] - box[1])
    ok = conf[idx] >= CONFIDENT
    d = np.linalg.norm(pred[idx] - ref[idx], axis=-1)
    return int(((d <= PCK_FRACTION * size) & ok).sum()), int(ok.sum())


POSTURE_BINS = (("upright (< 30 deg)", 0.0, 30.0), ("leaning (30-60 deg)", 30.0, 60.0),
                ("horizontal (> 60 deg)", 60.0, 180.0))
CAMERA_UP = np.array([0.0, -1.0, 0.0])  # camera frame: x right, y down, z away from the camera


def torso_up(joints3d: np.ndarray) -> np.ndarray:
    """(..., 17, 3) mm camera frame -> (..., 3) unit direction from the mid-hips to the mid-shoulders."""
    sk = H36M_17
    j = np.asarray(joints3d, dtype=np.float64)
    hips = 0.5 * (j[..., sk.index("l_hip"), :] + j[..., sk.index("r_hip"), :])
    shoulders = 0.5 * (j[..., sk.index("l_shoulder"), :] + j[..., sk.index("r_shoulder"), :])
    up = shoulders - hips
    return up / np.maximum(np.linalg.norm(up, axis=-1, keepdims=True), 1e-9)


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two unit (3,) directions, degrees."""
    return float(np.degrees(np.arccos(np.clip(float(np.dot(a, b)), -1.0, 1.0))))


def posture_bin(ref_up: np.ndarray) -> str:
    """Which of POSTURE_BINS a reference torso direction (unit (3,), camera frame) falls in."""
    lean = angle_deg(ref_up, CAMERA_UP)
    return next((name for name, _, hi in POSTURE_BINS if lean < hi), POSTURE_BINS[-1][0])


def mean_pose_2d(predictor: PosePredictor, box: np.ndarray) -> np.ndarray:
    """(17, 2) px: the prior's mean pose (z = 0, seen from the front) placed in the box as the renders frame it."""
    joints = predictor.decode(np.zeros((1, predictor.pose.latent_dim), np.float32))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = max(box[2] - box[0], box[3] - box[1]) * 1.4
    return project_to_image(joints, np.array([cx]), np.array([cy]), np.array([side]))[0]


def draw(img: np.ndarray, joints2d: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    out = img.copy()
    t = max(2, img.shape[1] // 200)
    for j, p in enumerate(H36M_17.parents):
        if p >= 0:
            a, b = joints2d[j], joints2d[p]
            if np.isfinite(a).all() and np.isfinite(b).all():
                cv2.line(out, (int(a[0]), int(a[1])), (int(b[0]), int(b[1])), colour, t, cv2.LINE_AA)
    return out


def photos_section(predictor: PosePredictor, photos: list[Path], sheet_rows: int) -> tuple[dict[str, Any], list[np.ndarray]]:
    counts = {k: [0, 0] for k in ("G alone", "G alone, flip test", "fitted", "constant mean pose")}
    facing_agree = {"G alone": [0, 0], "G alone, flip test": [0, 0], "fitted": [0, 0]}
    times: dict[str, list[float]] = {"MediaPipe alone": [], "G alone": [], "G alone, flip test": [], "fitted": []}
    found, rows = 0, []
    # per posture bin: photos, and per path the torso direction errors (deg) and PCK (hits, scored)
    postures: dict[str, dict[str, Any]] = {name: {"photos": 0, "torso_error_deg": {k: [] for k in facing_agree},
                                                  "pck": {k: [0, 0] for k in counts}} for name, _, _ in POSTURE_BINS}
    for path in photos:
        img = load_image(path)
        t0 = time.perf_counter()
        kp = detect_keypoints(img)
        times["MediaPipe alone"].append(time.perf_counter() - t0)
        if kp is None:
            continue
        found += 1
        t1 = time.perf_counter()
        g = predictor.predict_image(img, method="g")
        t2 = time.perf_counter()
        f = predictor.predict_image(img, method="fit")
        t3 = time.perf_counter()
        # the paper's pose-flip relation at test time: G on the mirrored crop too, mirrored back and averaged
        gf = predictor.predict_image(img, method="g", flip_test=True)
        t4 = time.perf_counter()
        times["G alone"].append(t2 - t1)
        times["fitted"].append(t3 - t2)
        times["G alone, flip test"].append(t4 - t3)
        ref_facing = bool(torso_faces_camera(kp.world3d[None])[0])
        ref_up = torso_up(kp.world3d)
        bin_ = postures[posture_bin(ref_up)]
        bin_["photos"] += 1
        const = mean_pose_2d(predictor, kp.box)
        for name, pred2d in (("G alone", g.joints2d[0]), ("G alone, flip test", gf.joints2d[0]), ("fitted", f.joints2d[0]),
                             ("constant mean pose", const)):  # fmt: skip
            h, n = pck(pred2d, kp.joints2d, kp.conf, kp.box)
            for tally in (counts[name], bin_["pck"][name]):
                tally[0] += h
                tally[1] += n
        for name, res in (("G alone", g), ("G alone, flip test", gf), ("fitted", f)):
            facing_agree[name][0] += int(bool(torso_faces_camera(res.joints3d)[0]) == ref_facing)
            facing_agree[name][1] += 1
            bin_["torso_error_deg"][name].append(angle_deg(torso_up(res.joints3d[0]), ref_up))
        if len(rows) < sheet_rows:
            panels = [draw(img, g.joints2d[0], (255, 80, 0)), draw(img, f.joints2d[0], (0, 200, 0)),
                      draw(img, const, (0, 120, 255))]
            h = 240
            rows.append(np.concatenate([cv2.resize(p, (int(p.shape[1] * h / p.shape[0]), h)) for p in panels], axis=1))
    res: dict[str, Any] = {"photos": len(photos), "person_found": found}
    res["pck@0.2"] = {k: (h / n if n else None) for k, (h, n) in counts.items()}
    res["front_back_agreement"] = {k: (a / n if n else None) for k, (a, n) in facing_agree.items()}
    res["median_ms"] = {k: float(np.median(v) * 1000) if v else None for k, v in times.items()}
    res["median_ms"]["fitted path, end to end"] = res["median_ms"]["fitted"]
    res["by_posture"] = {name: {"photos": b["photos"],
                                "median_torso_error_deg": {k: float(np.median(v)) if v else None
                                                           for k, v in b["torso_error_deg"].items()},
                                "pck@0.2": {k: (h / n if n else None) for k, (h, n) in b["pck"].items()}}
                         for name, b in postures.items()}  # fmt: skip
    return res, rows


def renders_section(predictor: PosePredictor, data: Path, data_root: Path, n: int, upscale: int) -> dict[str, Any]:
    from nlrd.evaluation import predict_joints

    ensure_prepared(data_root, data)  # the renders' poses come from the prepared mocap (made on first use)
    ts = load_test_set("target_test", data, data_root)
    images, gt = ts["images"][:n], ts["joints3d"][:n]
    g_joints = predict_joints(predictor.encoder, predictor.pose.decoder, images)
    rows: dict[str, list[np.ndarray]] = {"G alone": [], "fitted": [], "fitted (canonical bones)": [], "MediaPipe world": []}
    keep = []
    for i, im in enumerate(images):
        big = cv2.resize(im, (im.shape[1] * upscale, im.shape[0] * upscale), interpolation=cv2.INTER_CUBIC)
        kp = detect_keypoints(big)
        if kp is None:
            continue
        keep.append(i)
        z_g = predictor.pose.encode(g_joints[i : i + 1])
        with torch.inference_mode(False):
            fit = predictor.fitter.fit(kp.joints2d[None], kp.conf[None], big.shape[:2], world3d=kp.world3d[None],
                                       z_start=np.clip(z_g, -1, 1))  # fmt: skip
        rows["fitted"].append(fit.joints3d[0])
        rows["fitted (canonical bones)"].append(fit.joints3d_canonical[0])
        rows["MediaPipe world"].append(kp.world3d)
        rows["G alone"].append(g_joints[i])
    idx = np.array(keep, int)
    out: dict[str, Any] = {"renders": int(len(images)), "person_found": int(len(idx))}
    for name, preds in rows.items():
        p = np.stack(preds) if preds else np.zeros((0, 17, 3))
        out[name] = {"mpjpe_mm": float(mpjpe(p, gt[idx])) if len(p) else None,
                     "pa_mpjpe_mm": float(pa_mpjpe(p, gt[idx])) if len(p) else None}  # fmt: skip
    return out


def backgrounds_section(data_root: Path) -> dict[str, Any]:
    folder = data_root / "backgrounds" / "kodak"
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    people = [p.name for p in paths if detect_keypoints(load_image(p)) is not None]
    return {"photos": len(paths), "confident_people": len(people), "where": people}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default="data", help="prepared data folder (target-test renders cache)")
    p.add_argument("--checkpoints", default=None)
    p.add_argument("--image-model", default=None, help="score this image model (G) instead of the folder's default")
    p.add_argument("--skip-renders", action="store_true", help="held-out photos only (no renders, no backgrounds)")
    p.add_argument("--photos", type=int, default=0, help="held-out photos to use (0: all)")
    p.add_argument("--renders", type=int, default=300)
    p.add_argument("--upscale", type=int, default=3, help="renders are upscaled by this before MediaPipe")
    p.add_argument("--sheet", default=None, help="write a contact sheet (JPEG) of the first photos")
    p.add_argument("--sheet-rows", type=int, default=16)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    root = resolve_data_root(args.data_root)
    predictor = PosePredictor.from_pretrained(args.checkpoints, device="cpu", image_checkpoint=args.image_model)
    photos = heldout_exercise_photos(root)
    photos = photos[: args.photos] if args.photos else photos
    t0 = time.perf_counter()
    res_photos, rows = photos_section(predictor, photos, args.sheet_rows if args.sheet else 0)
    result: dict[str, Any] = {"real_photos": res_photos, "image_model": predictor.meta["image_checkpoint"], "seconds": 0.0}
    if not args.skip_renders:
        result["renders"] = renders_section(predictor, Path(args.data), root, args.renders, args.upscale)
        result["no_person"] = backgrounds_section(root)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    rp = result["real_photos"]
    print(f"\n### Held-out real photos ({rp['photos']} photos, a person found in {rp['person_found']})\n")
    print("| path | PCK@0.2 vs MediaPipe (12 limb joints) | torso front/back agreement | median ms / photo |")
    print("|---|---:|---:|---:|")
    for k in ("G alone", "G alone, flip test", "fitted", "constant mean pose"):
        fb = rp["front_back_agreement"].get(k)
        ms = rp["median_ms"].get(k)
        print(f"| {k} | {rp['pck@0.2'][k]:.3f} | {'-' if fb is None else f'{fb:.3f}'} | {'-' if ms is None else f'{ms:.0f}'} |")
    print(f"| MediaPipe alone | (reference) | (reference) | {rp['median_ms']['MediaPipe alone']:.0f} |")
    print_postures(rp["by_posture"])
    for rr, nb in ([(result["renders"], result["no_person"])] if not args.skip_renders else []):
        print_renders(rr, nb)
    print(f"\n{result['seconds']} s")
    if args.sheet and rows:
        width = max(r.shape[1] for r in rows)
        sheet = np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows], axis=0)
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(args.sheet, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 80])
        print(f"contact sheet (G alone | fitted | constant pose): {args.sheet}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


def print_postures(by_posture: dict[str, Any]) -> None:
    print("\n### By posture (MediaPipe's world torso against the camera's up axis)\n")
    print("| posture | photos | torso direction error, G alone / fitted (deg, median) | PCK@0.2 G alone / fitted / constant |")
    print("|---|---:|---:|---:|")

    def f(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    for name, b in by_posture.items():
        e, k = b["median_torso_error_deg"], b["pck@0.2"]
        print(f"| {name} | {b['photos']} | {f(e['G alone'], '.1f')} / {f(e['fitted'], '.1f')} | "
              f"{f(k['G alone'], '.3f')} / {f(k['fitted'], '.3f')} / {f(k['constant mean pose'], '.3f')} |")


def print_renders(rr: dict[str, Any], nb: dict[str, Any]) -> None:
    print(f"\n### Target-test renders with 3D labels ({rr['renders']} renders, MediaPipe finds {rr['person_found']})\n")
    print("| path | MPJPE (mm) | PA-MPJPE (mm) |\n|---|---:|---:|")
    for k in ("G alone", "fitted", "fitted (canonical bones)", "MediaPipe world"):
        print(f"| {k} | {rr[k]['mpjpe_mm']:.1f} | {rr[k]['pa_mpjpe_mm']:.1f} |")
    print(f"\n### No person: {nb['confident_people']} confident people on {nb['photos']} Kodak backgrounds {nb['where']}")


if __name__ == "__main__":
    main()
