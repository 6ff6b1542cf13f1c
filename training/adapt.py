"""Stage 5: adapt G (from Gs) to unlabelled target clips with the chosen terms (``--trainable`` stages).

python -m training.adapt --terms ensemble --steps 1200 --frame-pool --out checkpoints/adapted_g.safetensors   # shipped
python -m training.adapt --out runs/adapt/g.safetensors   # the paper's row +CR+pose-flip+flip-backward, 300 steps (the default)
python -m training.adapt --terms lcr,hcr,pose-flip,flip-backward,slow-backward --out runs/adapt_paper/g.safetensors
python -m training.adapt --videos ../shared/data/media --terms lcr,pose-flip --out runs/adapt_real/g.safetensors
torchrun --nproc_per_node 2 -m training.adapt ...
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nlrd.data.paths import resolve_data_root
from nlrd.data.poses import load_split
from nlrd.data.testsets import load_test_set
from nlrd.inference import load_image_encoder
from nlrd.priors import MotionPrior, PosePrior
from nlrd.stages.adapt import OWN_TERMS, AdaptStage, AdaptStageConfig, RelationBank
from nlrd.trainer import Trainer
from training.cli import Stopwatch, add_dataclass_args, base_parser, dataclass_from_args, finish, setup, trainer_config

DEFAULT_OUT = "checkpoints/adapted_g.safetensors"


VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}


def video_crops(folder: Path, size: int) -> dict[str, np.ndarray]:
    """Person-cropped frames (T, size, size, 3) of every video in a folder with a person in it, by file name."""
    from nlrd.inference import NoPersonError, person_crops

    out = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
        try:
            out[path.name] = person_crops(path, size)
        except NoPersonError:
            continue
    if not out:
        raise ValueError(f"no video with a person found in {str(folder)!r}")
    return out


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[1], DEFAULT_OUT, default_steps=AdaptStageConfig.steps)
    p.add_argument("--terms", default=",".join(AdaptStageConfig.terms), help=f"comma list of {OWN_TERMS} and relations")
    p.add_argument("--init", default="checkpoints/source_gs.safetensors", help="G starts from this image model (Gs)")
    p.add_argument("--pose", default="checkpoints/pose_aae.safetensors")
    p.add_argument("--motion", default="checkpoints/motion_ae.safetensors")
    p.add_argument("--relations-dir", default="checkpoints/relations")
    p.add_argument("--videos", default=None, help="adapt to the real videos in this folder instead of rendered target clips")
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
    motion = MotionPrior.from_pretrained(args.motion, pose=pose, device=device)
    bank = RelationBank.load(args.relations_dir, [t for t in terms if t not in OWN_TERMS], device, pose)
    g = load_image_encoder(args.init, pose)
    val_poses = load_split(args.data, "val").joints
    if args.videos:
        crops = list(video_crops(Path(args.videos), g.config.image_size).values())
        stage = AdaptStage(g, pose, motion, bank, cfg, device, info, video_crops=crops, val_poses=val_poses,
                           data_root=data_root, init_checkpoint=args.init)  # fmt: skip
    elif args.stream:
        windows = load_split(args.data, "train").windows(60, stride=4)
        stage = AdaptStage(g, pose, motion, bank, cfg, device, info, train_windows=windows, val_poses=val_poses,
                           data_root=data_root, init_checkpoint=args.init)  # fmt: skip
    else:
        pool = load_test_set("target_adapt_clips", args.data, data_root, size=g.config.image_size)["images"]
        frames = None
        if args.frame_pool:
            frames = load_test_set("target_adapt_frames", args.data, data_root, size=g.config.image_size)["images"]
        stage = AdaptStage(g, pose, motion, bank, cfg, device, info, pool=pool, frame_pool=frames, val_poses=val_poses,
                           data_root=data_root, init_checkpoint=args.init)  # fmt: skip
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
