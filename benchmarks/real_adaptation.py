"""Real-target adaptation, measured: each adapted image model G side by side on the same held-out data.

Usage::

    python benchmarks/real_adaptation.py --data-root ../shared/data --rows runs/ablation_real/rows.json
    python benchmarks/real_adaptation.py --data-root ../shared/data \
        --models checkpoints/source_gs.safetensors,checkpoints/real_g.safetensors

For every model (a row of ``training.ablation --real``, or a list of checkpoints), in one run:

- **held-out real photos** (``nlrd.vision.heldout_exercise_photos``, never adapted or tuned on): G alone's
  2D agreement with MediaPipe (PCK@0.2 of the person box over the 12 confident limb joints, G's crop framed
  from MediaPipe's keypoints as the predictor frames it) and its torso front/back agreement with MediaPipe's
  world landmarks; the fitted path started from this G (the prior fitted to the keypoints and world
  landmarks): its PCK@0.2, front/back agreement and the fit's final energy (does a better start help?);
- **target-test renders** (2,000 labelled renders): G's MPJPE / PA-MPJPE, which must not collapse;
- **the real videos** (unlabelled; the adaptation sees them): flip consistency, the mean distance (mm)
  between G's pose and the mirrored pose of the mirrored frame, and jitter, the mean joint acceleration
  (mm / frame^2) of G's poses over consecutive frames.

MediaPipe runs once per photo and video; every model then scores the same crops.

``--ceiling`` instead measures what a pose prior can hold of real people: the prior's fits stored in a real
target (``training.real_target``, tuning photos only), projected as G's joints are, against MediaPipe; then the
same fits encoded and decoded by each prior of ``--priors`` (the best G on that prior is about this good)::

    python benchmarks/real_adaptation.py --ceiling runs/real_target.npz \
        --priors checkpoints/pose_aae.safetensors,checkpoints/views/pose_aae.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.data.paths import resolve_data_root
from nlrd.data.testsets import load_test_set
from nlrd.data.video import VIDEO_SUFFIXES
from nlrd.fit import FitConfig, PoseFitter, load_start_net, torso_faces_camera
from nlrd.inference import load_image_encoder
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.models.image_encoder import encode_images
from nlrd.priors import PosePrior
from nlrd.stages.adapt import keypoint_agreement, real_agreement
from nlrd.transforms import flip_image, flip_pose
from nlrd.vision import heldout_exercise_photos
from nlrd.vision.target import RealTarget, collect


def _fit_agreement(fitter: PoseFitter, held: RealTarget, z: np.ndarray) -> dict[str, float]:
    """The prior fitted from the latents ``z`` (N, D): PCK@0.2 of its reprojection, front/back agreement, energy."""
    with torch.inference_mode(False):
        fit = fitter.fit(held.keypoints_px, held.conf, held.image_hw, world3d=held.world3d, z_start=z.clip(-1, 1))
    # The crop is the image shifted to the root and scaled: its scale (px per crop unit) from the joints away
    # from the centre (a median: exact up to rounding), so the reprojection is scored in crop units.
    root = held.keypoints_px[:, :1]
    far = np.abs(held.keypoints).max(-1) > 0.05
    ratio = np.abs(held.keypoints_px - root).max(-1) / np.maximum(np.abs(held.keypoints).max(-1), 1e-9)
    half = np.array([np.median(r[f]) for r, f in zip(ratio, far, strict=True)])
    points = (fit.joints2d - root) / half[:, None, None]
    facing = torso_faces_camera(fit.joints3d) == torso_faces_camera(held.world3d)
    return {"fit_pck": keypoint_agreement(points, held, np.arange(len(z)))["real_val_pck"],
            "fit_front_back": float(facing.mean()), "fit_energy": float(np.median(fit.loss))}


def _video_scores(g: torch.nn.Module, pose: PosePrior, clips: list[np.ndarray]) -> dict[str, float]:
    flips, accs = [], []
    for c in clips:
        x = torch.from_numpy(c).permute(0, 3, 1, 2).float() / 255
        with torch.no_grad():
            j = pose.decoder(encode_images(g, x, torch.device("cpu"))).numpy()
            jf = flip_pose(pose.decoder(encode_images(g, flip_image(x), torch.device("cpu"))).numpy(), pose.skeleton)
        flips.append(np.linalg.norm(j - jf, axis=-1).mean())
        accs.append(np.linalg.norm(j[2:] - 2 * j[1:-1] + j[:-2], axis=-1).mean())
    return {"video_flip_mm": float(np.mean(flips)), "video_jitter_mm": float(np.mean(accs))}


def prior_ceiling(target_path: Path, priors: list[Path]) -> dict[str, Any]:
    """PCK@0.2 of the real target's fits on its photos, as they are and through each prior's encoder and decoder."""
    target = RealTarget.load(target_path)
    rows = np.flatnonzero(target.clip_id < 0)
    out: dict[str, Any] = {"photos": len(rows), "fits": real_agreement(target.fit3d[rows], target, rows)["real_val_pck"]}
    for path in priors:
        prior = PosePrior.from_pretrained(path)
        with torch.no_grad():
            back = np.asarray(prior.decode(prior.encode(target.fit3d[rows])))
        out[str(path)] = {"pck": real_agreement(back, target, rows)["real_val_pck"],
                          "mm_from_fit": float(np.linalg.norm(back - target.fit3d[rows], axis=-1).mean())}  # fmt: skip
    print(f"\n### What a pose prior can hold of real people ({len(rows)} tuning photos)\n")
    print("| joints | PCK@0.2 vs MediaPipe | mean distance from the fit (mm) |\n|---|---:|---:|")
    print(f"| the prior's fits as they are | {out['fits']:.3f} | 0 |")
    for path in priors:
        print(f"| the fits through {path} | {out[str(path)]['pck']:.3f} | {out[str(path)]['mm_from_fit']:.1f} |")
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None)
    p.add_argument("--data", default="data", help="prepared data folder (target-test renders cache)")
    p.add_argument("--rows", default=None, help="rows.json of training.ablation --real")
    p.add_argument("--models", default=None, help="comma list of image-model checkpoints; each is scored with the pose "
                   "prior and keypoint start of its own folder when it holds them, else with --checkpoints'")
    p.add_argument("--checkpoints", default="checkpoints", help="pose prior and keypoint start of the fits")
    p.add_argument("--photos", type=int, default=0, help="held-out photos to use (0: all)")
    p.add_argument("--renders", type=int, default=2000)
    p.add_argument("--video-frames", type=int, default=None, help="each video's first frames only (default: all)")
    p.add_argument("--out", default=None)
    p.add_argument("--ceiling", default=None, help="a real target (.npz): measure the priors' ceiling on it instead")
    p.add_argument("--priors", default="checkpoints/pose_aae.safetensors", help="comma list of pose priors (--ceiling)")
    args = p.parse_args(argv)
    if args.ceiling:
        return prior_ceiling(Path(args.ceiling), [Path(q) for q in args.priors.split(",") if q])
    torch.set_num_threads(max(1, torch.get_num_threads()))
    root = resolve_data_root(args.data_root)
    models: dict[str, Path] = {}
    if args.rows:
        rows = json.loads(Path(args.rows).read_text())
        models.update({name: Path(args.rows).parent / r["checkpoint"] for name, r in rows.items()})
    if args.models:
        for m in (Path(q) for q in args.models.split(",") if q):
            models[m.stem if m.stem not in models else f"{m.parent.name}/{m.stem}"] = m  # two folders, one file name
    if not models:
        p.error("give --rows or --models")
    families: dict[Path, tuple[PosePrior, PoseFitter]] = {}

    def family(model: Path) -> tuple[PosePrior, PoseFitter]:
        """The pose prior and fitter a model is scored with: those of its own folder when it holds a pose prior
        (a model family, e.g. one built on the view prior), else those of --checkpoints."""
        ck = model.parent if (model.parent / "pose_aae.safetensors").is_file() else Path(args.checkpoints)
        if ck not in families:
            prior = PosePrior.from_pretrained(ck / "pose_aae.safetensors")
            start = ck / "keypoint_start.safetensors"
            families[ck] = (prior, PoseFitter(prior, load_start_net(start) if start.exists() else None, FitConfig()))
        return families[ck]

    t0 = time.perf_counter()
    photos = heldout_exercise_photos(root)
    photos = photos[: args.photos] if args.photos else photos
    first_path = next(iter(models.values()))
    first = load_image_encoder(first_path, family(first_path)[0])
    size = first.config.image_size
    held = collect(photos, [], size, exclude=set(), log=False)
    videos = sorted(q for q in (root / "media").iterdir() if q.suffix.lower() in VIDEO_SUFFIXES)
    vids = collect([], videos, size, exclude=set(), log=False, max_frames=args.video_frames)
    clips = RealTarget(**vids, fit3d=np.zeros(vids["keypoints"].shape[:2] + (3,), np.float32)).clips()
    renders = load_test_set("target_test", args.data, root, size=size)
    n_r = min(args.renders, len(renders["images"]))
    mediapipe_s = time.perf_counter() - t0
    all_rows = np.arange(len(held["frames"]))
    result: dict[str, Any] = {"photos": len(photos), "person_found": len(all_rows), "models": {}}
    held_t = RealTarget(**held, fit3d=np.zeros(held["keypoints"].shape[:2] + (3,), np.float32))
    ref_facing = torso_faces_camera(held["world3d"])
    for name, path in models.items():
        pose, fitter = family(path)
        g = load_image_encoder(path, pose)
        dev = torch.device("cpu")
        with torch.no_grad():
            z = encode_images(g, held["frames"], dev).numpy()
            joints = pose.decoder(torch.from_numpy(z)).numpy()
            pred_r = pose.decoder(encode_images(g, renders["images"][:n_r], dev)).numpy()
        row = {"g_pck": real_agreement(joints, held_t, all_rows)["real_val_pck"],
               "g_front_back": float((torso_faces_camera(joints) == ref_facing).mean()),
               **_fit_agreement(fitter, held_t, z),
               "renders_mpjpe_mm": float(mpjpe(pred_r, renders["joints3d"][:n_r])),
               "renders_pa_mpjpe_mm": float(pa_mpjpe(pred_r, renders["joints3d"][:n_r])),
               **_video_scores(g, pose, clips)}  # fmt: skip
        result["models"][name] = row
        print(f"  {name}: {json.dumps({k: round(v, 3) for k, v in row.items()})}", flush=True)
    result["mediapipe_seconds"] = round(mediapipe_s, 1)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(f"\n### Real-target adaptation ({len(photos)} held-out photos, a person in {len(all_rows)}; "
          f"{n_r} target-test renders; {sum(len(c) for c in clips)} video frames)\n")  # fmt: skip
    print("| model | G PCK@0.2 | G front/back | fitted PCK@0.2 | fitted front/back | fit energy | renders MPJPE / PA (mm) "
          "| video flip (mm) | video jitter (mm/frame^2) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
    for name, r in result["models"].items():
        print(f"| {name} | {r['g_pck']:.3f} | {r['g_front_back']:.3f} | {r['fit_pck']:.3f} | {r['fit_front_back']:.3f} "
              f"| {r['fit_energy']:.3f} | {r['renders_mpjpe_mm']:.1f} / {r['renders_pa_mpjpe_mm']:.1f} "
              f"| {r['video_flip_mm']:.1f} | {r['video_jitter_mm']:.1f} |")  # fmt: skip
    print(f"\n{result['seconds']} s")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
