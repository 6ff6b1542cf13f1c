"""Real unlabelled target data for adaptation: photos and video frames of people, framed for G, with
MediaPipe's 2D keypoints and the pose prior's fits (pseudo-3D labels).

    python -m training.real_target --photos ../shared/data/exercise_photos/images --videos ../shared/data/media \\
        --out runs/real_target.npz

Every photo (and every frame of every video) where MediaPipe Pose finds a person becomes one row:

- ``frames``: the person cropped the way the renders frame theirs (``nlrd.vision.framing``), S x S px;
- ``keypoints``: MediaPipe's 17 joints in crop units: (px - crop centre) / (crop side / 2), x right, y down
  (G's weak-perspective projection lives in the same units, see :func:`nlrd.stages.adapt.project_crop`);
- ``conf``: MediaPipe's per-joint confidence; ``pck_radius``: 0.2 of the person box's longer side in crop
  units (the radius of the PCK@0.2 the real-photo benchmark scores);
- ``fit3d``: the pose prior fitted to the keypoints and MediaPipe's world landmarks, started from G
  (``FitResult.joints3d_canonical``: camera frame, canonical bone lengths, as Dp(G(x)) is);
- what the fit needs to be run again from a better start (fitting in the loop): the keypoints in image px,
  the image size and the world landmarks.

The held-out real photos (``nlrd.vision.heldout_exercise_photos``) are never included, whatever folder is
given: they only measure. Video frames keep their clip and order (``clip_id``, ``clip_frame``) so the motion
relations can draw windows from them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nlrd.data.images import IMAGE_SUFFIXES
from nlrd.data.video import VIDEO_SUFFIXES
from nlrd.fit import PoseFitter
from nlrd.models.image_encoder import ImageEncoder
from nlrd.vision import heldout_exercise_photos
from nlrd.vision.target import RealTarget, collect, fit_targets


def build(photos_dir: str | Path | None, videos_dir: str | Path | None, fitter: PoseFitter, g: ImageEncoder,
          device: torch.device, data_root: str | Path | None = None, log: bool = True) -> RealTarget:  # fmt: skip
    """Collect, frame and fit the photos and videos of two folders (either may be None)."""
    photos = sorted(p for p in Path(photos_dir).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) if photos_dir else []
    videos = sorted(p for p in Path(videos_dir).iterdir() if p.suffix.lower() in VIDEO_SUFFIXES) if videos_dir else []
    if not photos and not videos:
        raise ValueError("give a folder of photos or of videos with people in them")
    exclude: set[Path] = set()
    if data_root is not None and (Path(data_root) / "exercise_photos" / "index.json").is_file():
        exclude = set(heldout_exercise_photos(data_root))
    arrays = collect(photos, videos, g.config.image_size, exclude, log=log)
    with torch.inference_mode(False):
        arrays["fit3d"] = fit_targets(fitter, g, arrays, device)
    return RealTarget(**arrays, fit_prior=fitter.prior.latent_space)


def main(argv: list[str] | None = None) -> RealTarget:
    from nlrd.data.paths import resolve_data_root
    from nlrd.fit import FitConfig, load_start_net
    from nlrd.inference import CLIP_SMOOTHNESS, load_image_encoder
    from nlrd.priors import PosePrior

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default=None, help="folder of photos (searched recursively)")
    p.add_argument("--videos", default=None, help="folder of videos")
    p.add_argument("--data-root", default=None, help="raw data folder: its held-out photos are always left out")
    p.add_argument("--init", default="checkpoints/source_gs.safetensors", help="G whose latents start the fits")
    p.add_argument("--pose", default="checkpoints/pose_aae.safetensors")
    p.add_argument("--start", default="checkpoints/keypoint_start.safetensors")
    p.add_argument("--out", default="runs/real_target.npz")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    device = torch.device("cpu")
    pose = PosePrior.from_pretrained(args.pose, device=device)
    fitter = PoseFitter(pose, load_start_net(args.start) if Path(args.start).exists() else None,
                        FitConfig(temporal=CLIP_SMOOTHNESS))
    g = load_image_encoder(args.init, pose)
    target = build(args.photos, args.videos, fitter, g, device, resolve_data_root(args.data_root))
    target.save(args.out)
    n_clip = int((target.clip_id >= 0).sum())
    print(f"{len(target)} rows ({len(target) - n_clip} photos, {n_clip} video frames, "
          f"{int(target.val.sum())} validation) -> {args.out}")
    return target


if __name__ == "__main__":
    main()
