"""Stage 5: adapt G (from Gs) to unlabelled target clips with the chosen terms (``--trainable`` stages).

python -m training.adapt --terms ensemble --steps 1200 --frame-pool --out checkpoints/adapted_g.safetensors   # shipped
python -m training.adapt --out runs/adapt/g.safetensors   # the paper's row +CR+pose-flip+flip-backward, 300 steps (the default)
python -m training.adapt --terms lcr,hcr,pose-flip,flip-backward,slow-backward --out runs/adapt_paper/g.safetensors
python -m training.adapt --photos ../shared/data/exercise_photos/images --videos ../shared/data/media \
    --terms keypoints,fit3d,source --out runs/adapt_real/g.safetensors   # real target (training.real_target)
python -m training.adapt --real runs/real_target.npz --terms lcr,hcr,pose-flip,flip-backward \
    --out runs/adapt_real_paper/g.safetensors
torchrun --nproc_per_node 2 -m training.adapt ...
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from nlrd.data.paths import resolve_data_root
from nlrd.data.poses import load_split
from nlrd.data.testsets import load_test_set
from nlrd.fit import FitConfig, PoseFitter, load_start_net
from nlrd.inference import CLIP_SMOOTHNESS, load_image_encoder
from nlrd.models.image_encoder import ImageEncoder
from nlrd.priors import MotionPrior, PosePrior
from nlrd.stages.adapt import OWN_TERMS, AdaptStage, AdaptStageConfig, RelationBank, uses_clips
from nlrd.trainer import Trainer
from nlrd.vision.target import RealTarget
from training.cli import Stopwatch, add_dataclass_args, base_parser, dataclass_from_args, finish, setup, trainer_config
from training.real_target import build, fit_targets

DEFAULT_OUT = "checkpoints/adapted_g.safetensors"



def real_target(args: argparse.Namespace, pose: PosePrior, g: ImageEncoder, device: torch.device,
                data_root: Path | None) -> tuple[RealTarget, Callable[[ImageEncoder], np.ndarray]]:  # fmt: skip
    """The real target (built from --photos/--videos, or loaded from --real) and its refit function."""
    fitters: list[PoseFitter] = []

    def fitter() -> PoseFitter:  # built when first needed (the start network must match the prior)
        if not fitters:
            start = load_start_net(args.start) if Path(args.start).exists() else None
            fitters.append(PoseFitter(pose, start, FitConfig(temporal=CLIP_SMOOTHNESS)))
        return fitters[0]

    path = Path(args.real or "runs/real_target.npz")
    if args.photos or args.videos:
        real = build(args.photos, args.videos, fitter(), g, device, data_root)
        real.save(path)
    else:
        real = RealTarget.load(path)
        if real.fit_prior != pose.latent_space:  # fits through another prior: redo them through this one
            print(f"real target {str(path)!r}: fits made with prior {real.fit_prior or 'unknown'!r}; refitting with "
                  f"{pose.latent_space!r}", flush=True)  # fmt: skip
            with torch.inference_mode(False):
                real.fit3d = fit_targets(fitter(), g, real, device)
            real.fit_prior = pose.latent_space
            real.save(path)

    def refit(model: ImageEncoder) -> np.ndarray:
        with torch.inference_mode(False):
            return fit_targets(fitter(), model, real, device)

    return real, refit


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[1], DEFAULT_OUT, default_steps=AdaptStageConfig.steps)
    p.add_argument("--terms", default=",".join(AdaptStageConfig.terms), help=f"comma list of {OWN_TERMS} and relations")
    p.add_argument("--init", default="checkpoints/source_gs.safetensors", help="G starts from this image model (Gs)")
    p.add_argument("--init-other-prior", action="store_true",
                   help="--init may come from another pose prior's latent space: its weights are only a start (the labelled "
                        "terms teach the head the new latents)")  # fmt: skip
    p.add_argument("--pose", default="checkpoints/pose_aae.safetensors")
    p.add_argument("--motion", default="checkpoints/motion_ae.safetensors")
    p.add_argument("--relations-dir", default="checkpoints/relations")
    p.add_argument("--photos", default=None, help="real target: a folder of photos of people (held-out photos are left out)")
    p.add_argument("--videos", default=None, help="real target: a folder of videos of people")
    p.add_argument("--real", default=None, help="real target built before (training.real_target); with --photos/--videos: "
                   "where the built one is saved (default runs/real_target.npz)")  # fmt: skip
    p.add_argument("--start", default="checkpoints/keypoint_start.safetensors", help="the fits' learned start (real target)")
    p.add_argument(
        "--trainable",
        default=",".join(AdaptStageConfig.trainable),
        help="comma list of G's stages that train (the paper: layer2 = Res-3 only)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="render fresh target clips every step instead of the fixed unlabelled set target_adapt_clips",
    )
    p.add_argument(
        "--frame-pool",
        action="store_true",
        help="add the unlabelled single target frames target_adapt_frames to the frames the lower-order terms draw",
    )
    add_dataclass_args(p, AdaptStageConfig, "stage", skip=("terms", "trainable", "seed", "steps"))
    args = p.parse_args(argv)
    watch = Stopwatch()
    info, device = setup(args)
    data_root = resolve_data_root(args.data_root)
    terms = tuple(t.strip() for t in args.terms.split(",") if t.strip())
    trainable = tuple(t.strip() for t in args.trainable.split(",") if t.strip())
    cfg = dataclass_from_args(AdaptStageConfig, args, "stage", terms=terms, seed=args.seed, steps=args.steps, trainable=trainable)
    pose = PosePrior.from_pretrained(args.pose, device=device)
    # The motion prior only serves hcr and the motion relations (a view-prior run may have none yet).
    motion = MotionPrior.from_pretrained(args.motion, pose=pose, device=device) if any(map(uses_clips, terms)) else None
    bank = RelationBank.load(args.relations_dir, [t for t in terms if t not in OWN_TERMS], device, pose)
    g = load_image_encoder(args.init, None if args.init_other_prior else pose)
    val_poses = load_split(args.data, "val").joints
    source_set = load_test_set("source_adapt_frames", args.data, data_root, size=g.config.image_size) \
        if "source" in terms else None  # fmt: skip
    if args.photos or args.videos or args.real:
        real, refit = real_target(args, pose, g, device, data_root)
        stage = AdaptStage(g, pose, motion, bank, cfg, device, info, real=real, source_set=source_set, refit=refit,
                           val_poses=val_poses, data_root=data_root, init_checkpoint=args.init)  # fmt: skip
    elif args.stream:
        windows = load_split(args.data, "train").windows(60, stride=4)
        stage = AdaptStage(g, pose, motion, bank, cfg, device, info, train_windows=windows, val_poses=val_poses,
                           data_root=data_root, init_checkpoint=args.init, source_set=source_set)  # fmt: skip
    else:
        pool = load_test_set("target_adapt_clips", args.data, data_root, size=g.config.image_size)["images"]
        frames = None
        if args.frame_pool:
            frames = load_test_set("target_adapt_frames", args.data, data_root, size=g.config.image_size)["images"]
        stage = AdaptStage(g, pose, motion, bank, cfg, device, info, pool=pool, frame_pool=frames, val_poses=val_poses,
                           data_root=data_root, init_checkpoint=args.init, source_set=source_set)  # fmt: skip
    trainer = Trainer(stage, trainer_config(args, "adapt"), info, device)
    result = trainer.fit()
    trainer.save_final(args.out, result)
    summary = {"stage": "adapt", "terms": list(terms), "out": args.out, "steps": result.steps,
               "train_seconds": round(result.seconds, 1), "seconds_per_step": round(result.seconds / max(1, result.steps), 3),
               "wall_seconds": watch.seconds(), **result.final_metrics}  # fmt: skip
    finish(info, summary)
    return summary


if __name__ == "__main__":
    main()
