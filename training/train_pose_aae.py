"""Stage 1: train the pose prior (Ep, Dp) on real mocap poses.

python -m training.train_pose_aae --data-root ../shared/data --out checkpoints/pose_aae.safetensors
torchrun --nproc_per_node 2 -m training.train_pose_aae ...   # same result, batch split over processes
"""

from __future__ import annotations

from nlrd.data.poses import load_split
from nlrd.models.pose_aae import PoseAAEConfig
from nlrd.stages.pose_aae import PoseAAEStage, PoseAAEStageConfig
from training.cli import Stopwatch, add_dataclass_args, base_parser, dataclass_from_args, run_stage, setup

DEFAULT_OUT = "checkpoints/pose_aae.safetensors"


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[1], DEFAULT_OUT, default_steps=PoseAAEStageConfig.steps)
    add_dataclass_args(p, PoseAAEConfig, "model")
    add_dataclass_args(p, PoseAAEStageConfig, "stage", skip=("batch", "lr", "seed", "steps"))
    args = p.parse_args(argv)
    watch = Stopwatch()
    info, device = setup(args)
    train, val = load_split(args.data, "train"), load_split(args.data, "val")
    model_cfg = dataclass_from_args(PoseAAEConfig, args, "model")
    stage_cfg = dataclass_from_args(PoseAAEStageConfig, args, "stage", batch=args.batch, lr=args.lr,
                                    seed=args.seed, steps=args.steps)  # fmt: skip
    stage = PoseAAEStage(train.joints, val.joints, model_cfg, stage_cfg, device, info)
    return run_stage(stage, args, info, device, watch)


if __name__ == "__main__":
    main()
