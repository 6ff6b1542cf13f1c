"""Stage 2: train the motion prior (Em, Dm) on real 30-frame windows through the frozen pose prior.

python -m training.train_motion_ae --pose checkpoints/pose_aae.safetensors --out checkpoints/motion_ae.safetensors
torchrun --nproc_per_node 2 -m training.train_motion_ae ...
"""

from __future__ import annotations

from nlrd.data.poses import load_split
from nlrd.models.motion_ae import MotionAEConfig
from nlrd.priors import PosePrior
from nlrd.stages.motion_ae import MotionAEStage, MotionAEStageConfig
from training.cli import Stopwatch, add_dataclass_args, base_parser, dataclass_from_args, run_stage, setup

DEFAULT_OUT = "checkpoints/motion_ae.safetensors"


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[1], DEFAULT_OUT, default_steps=MotionAEStageConfig.steps)
    p.add_argument("--pose", default="checkpoints/pose_aae.safetensors", help="trained pose prior (frozen)")
    add_dataclass_args(p, MotionAEConfig, "model", skip=("pose_latent_dim",))
    add_dataclass_args(p, MotionAEStageConfig, "stage", skip=("batch", "lr", "seed", "steps"))
    args = p.parse_args(argv)
    watch = Stopwatch()
    info, device = setup(args)
    prior = PosePrior.from_pretrained(args.pose, device="cpu")
    # Windows are seen the way the pose prior sees poses unless --stage-views says otherwise.
    stage_cfg = dataclass_from_args(MotionAEStageConfig, args, "stage", batch=args.batch, lr=args.lr, seed=args.seed,
                                    steps=args.steps, views=args.stage__views or prior.views)  # fmt: skip
    model_cfg = dataclass_from_args(MotionAEConfig, args, "model", pose_latent_dim=prior.latent_dim)
    train = load_split(args.data, "train").windows(model_cfg.length, stage_cfg.window_stride)
    val = load_split(args.data, "val").windows(model_cfg.length, model_cfg.length // 2)
    stage = MotionAEStage(train, val, prior.encoder, prior.decoder, model_cfg, stage_cfg, device, info,
                          pose_checkpoint=str(args.pose))  # fmt: skip
    stage.latent_space = prior.latent_space  # recorded in the checkpoint, checked when it is loaded
    return run_stage(stage, args, info, device, watch)


if __name__ == "__main__":
    main()
