"""Stage 3: train the image-to-latent network Gs on labelled synthetic source renders (Dp frozen).

    python -m training.train_source --out checkpoints/source_gs.safetensors
    python -m training.train_source --style target --supervised --stage-init-from checkpoints/source_gs.safetensors \\
        --out checkpoints/oracle.safetensors          # the target-supervised oracle (upper bound)
    torchrun --nproc_per_node 2 -m training.train_source ...
"""

from __future__ import annotations

from nlrd.data.paths import resolve_data_root
from nlrd.data.poses import load_split
from nlrd.models.image_encoder import ImageEncoderConfig
from nlrd.priors import PosePrior
from nlrd.stages.source import SourceStage, SourceStageConfig
from training.cli import Stopwatch, add_dataclass_args, base_parser, dataclass_from_args, run_stage, setup

DEFAULT_OUT = "checkpoints/source_gs.safetensors"


def main(argv: list[str] | None = None) -> dict:
    p = base_parser(__doc__.splitlines()[1], DEFAULT_OUT, default_steps=SourceStageConfig.steps)
    p.add_argument("--pose", default="checkpoints/pose_aae.safetensors", help="trained pose prior (Dp is frozen)")
    p.add_argument("--style", default="source", choices=["source", "target"], help="rendering style of the training images")
    p.add_argument("--supervised", action="store_true", help="required with --style target: train on target labels (oracle)")
    add_dataclass_args(p, ImageEncoderConfig, "model", skip=("latent_dim",))
    add_dataclass_args(p, SourceStageConfig, "stage", skip=("batch", "lr", "seed", "steps", "style"))
    args = p.parse_args(argv)
    if args.style == "target" and not args.supervised:
        p.error("--style target uses the held-out target labels: pass --supervised to train the oracle on purpose")
    if args.style == "target" and args.out == DEFAULT_OUT:
        args.out = "checkpoints/oracle.safetensors"
    watch = Stopwatch()
    info, device = setup(args)
    data_root = resolve_data_root(args.data_root)
    prior = PosePrior.from_pretrained(args.pose, device="cpu")
    model_cfg = dataclass_from_args(ImageEncoderConfig, args, "model", latent_dim=prior.latent_dim)
    stage_cfg = dataclass_from_args(SourceStageConfig, args, "stage", batch=args.batch, lr=args.lr, seed=args.seed,
                                    steps=args.steps, style=args.style)  # fmt: skip
    train, val = load_split(args.data, "train"), load_split(args.data, "val")
    stage = SourceStage(train.joints, val.joints, prior.decoder, model_cfg, stage_cfg, device, info, data_root=data_root,
                        pose_checkpoint=str(args.pose))  # fmt: skip
    stage.latent_space = prior.latent_space  # recorded in the checkpoint, checked when it is loaded
    stage.name = "source" if args.style == "source" else "oracle"
    return run_stage(stage, args, info, device, watch)


if __name__ == "__main__":
    main()
