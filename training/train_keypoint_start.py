"""Train the pose fit's learned start (nlrd.models.keypoint_start) against the shipped pose prior.

python -m training.train_keypoint_start --data data --out checkpoints/keypoint_start.safetensors
nice -n 10 python -m training.train_keypoint_start --threads 1 --minutes 8      # the shipped run

Data: TRAIN-split mocap poses only (val for the printed metrics; test is never read), seen by random
cameras and bodies (nlrd.fit.synthetic: azimuth all round, elevation -30..+60, roll +-30, a fifth
lying, a tenth turned freely; distance 2.5-8 m; size 0.85-1.25; focal = max(H, W)), with 2D noise of
1.5-3% of the box, outliers, missing joints, and, for half of the samples, a noisy 3D cue.

Targets (computed once for a pool of views, then re-noised every time they are drawn): the net must
predict ``z`` and ``R`` with ``Dp(z) @ R.T`` = the camera-frame pose. Two decompositions are tried per
sample: ``z = Ep(pose)`` with the rotation that aligns its decoding (what a prior that covers every
view would want), and ``z = Ep(the pose turned upright at the camera azimuth)`` with the rotation that
carries the rest (tilt, roll, lying). The one whose decoding is closer wins (the first on ties within
5 mm), so nothing here assumes which views the prior covers. Loss: MPJPE of the decoded, rotated pose
(mm / 100) + |z - z*|^2 + |R - R*|^2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nlrd.checkpoint import save_checkpoint
from nlrd.data.paths import default_data_root
from nlrd.data.poses import ensure_prepared, load_split
from nlrd.fit.fitter import START_STAGE, torso_faces_camera
from nlrd.fit.geometry import kabsch
from nlrd.fit.synthetic import ObservationNoise, ViewSampling, observe, sample_views
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.models.keypoint_start import KeypointStartConfig, KeypointStartNet, keypoint_features, prior_fingerprint
from nlrd.priors import POSE_CHECKPOINT, PosePrior

DEFAULT_OUT = "checkpoints/keypoint_start.safetensors"


@dataclass
class StartTrainConfig:
    """The training run (saved with the weights)."""

    steps: int = 6000
    minutes: float = 8.0  # stop earlier when the time is up (the schedule follows the time)
    batch: int = 256
    decoded_batch: int = 64  # rows of each batch that also get the decoded-pose loss (Dp is the costly part)
    lr: float = 1e-3
    weight_decay: float = 1e-4
    pool: int = 100_000  # views with precomputed targets
    val: int = 2000
    world_prob: float = 0.5  # share of samples given the 3D cue
    w_z: float = 1.0
    w_rot: float = 1.0
    w_decoded: float = 1.0
    seed: int = 0


@torch.no_grad()
def targets(prior: PosePrior, world: np.ndarray, rotation: np.ndarray, upright: np.ndarray,
            chunk: int = 4096) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Per sample z* (N, D), R* (N, 3, 3) and the canonical camera-frame pose (N, J, 3) mm (see module doc)."""
    zs, rs, poses, upright_share = [], [], [], []
    for s in range(0, len(world), chunk):
        w = torch.as_tensor(world[s : s + chunk], dtype=torch.float32)
        rot = torch.as_tensor(rotation[s : s + chunk], dtype=torch.float32)
        up = torch.as_tensor(upright[s : s + chunk], dtype=torch.float32)
        cam = w @ rot.transpose(1, 2)
        best = None
        for cand in (cam, w @ up.transpose(1, 2)):
            z = prior.encoder(cand)
            dec = prior.decoder(z)
            r, _ = kabsch(dec, cam)
            err = (dec @ r.transpose(1, 2) - cam).norm(dim=-1).mean(-1)
            if best is None:
                z_first = z
                best = [z, r, err - 5.0]  # the second must win by 5 mm
            else:
                take = err < best[2]
                best = [torch.where(take[:, None], z, best[0]), torch.where(take[:, None, None], r, best[1]), None]
        zs.append(best[0])
        upright_share.append(float((best[0] != z_first).any(-1).float().mean()))
        rs.append(best[1])
        poses.append(cam)
    print(f"targets: {100 * np.mean(upright_share):.0f}% take the upright decomposition", flush=True)
    return torch.cat(zs).numpy(), torch.cat(rs).numpy(), torch.cat(poses).numpy()


def make_pool(prior: PosePrior, joints: np.ndarray, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """n random (pose, view) pairs from ``joints`` (N, J, 3) with their targets."""
    idx = rng.integers(0, len(joints), size=n)
    rot, up = sample_views(n, rng, ViewSampling())
    z, r, cam = targets(prior, joints[idx], rot, up)
    return {"world": joints[idx], "rotation": rot, "upright": up, "z": z, "rot": r, "cam": cam}


def batch_tensors(pool: dict[str, np.ndarray], rows: np.ndarray, rng: np.random.Generator, noise: ObservationNoise,
                  world_prob: float, unit_mm: float) -> dict[str, torch.Tensor]:  # fmt: skip
    """Fresh observations of pool rows: features and targets as tensors."""
    obs = observe(pool["world"][rows], pool["rotation"][rows], rng, noise)
    has_world = rng.random(len(rows)) < world_prob
    kp, conf = torch.from_numpy(obs.joints2d), torch.from_numpy(obs.conf)
    focal = torch.from_numpy(obs.focal)
    principal = torch.from_numpy(obs.image_size[:, ::-1].copy().astype(np.float32) / 2.0)
    with_w = keypoint_features(kp, conf, focal, principal, torch.from_numpy(obs.world3d), unit_mm)
    without = keypoint_features(kp, conf, focal, principal, None, unit_mm)
    feats = torch.where(torch.from_numpy(has_world)[:, None], with_w, without)
    return {"feats": feats, "z": torch.from_numpy(pool["z"][rows]), "rot": torch.from_numpy(pool["rot"][rows]),
            "cam": torch.from_numpy(pool["cam"][rows]), "has_world": torch.from_numpy(has_world)}  # fmt: skip


def losses(net: KeypointStartNet, prior: PosePrior, b: dict[str, torch.Tensor], cfg: StartTrainConfig) -> dict[str, torch.Tensor]:
    z, rot = net(b["feats"])
    lz = ((z - b["z"]) ** 2).sum(-1).mean()
    lr = ((rot - b["rot"]) ** 2).sum((-1, -2)).mean()
    k = cfg.decoded_batch
    dec = prior.decoder(z[:k]) @ rot[:k].transpose(1, 2)
    ld = (dec - b["cam"][:k]).norm(dim=-1).mean() / 100.0
    return {"total": cfg.w_z * lz + cfg.w_rot * lr + cfg.w_decoded * ld, "z": lz, "rot": lr, "decoded": ld}


@torch.no_grad()
def evaluate(net: KeypointStartNet, prior: PosePrior, val: dict[str, torch.Tensor]) -> dict[str, float]:
    """Decoded MPJPE / PA-MPJPE (mm) and front/back error rate on the val batch, with and without the cue."""
    net.eval()
    z, rot = net(val["feats"])
    dec = (prior.decoder(z) @ rot.transpose(1, 2)).numpy()
    net.train()
    gt = val["cam"].numpy()
    out = {}
    for name, m in (("cue", val["has_world"].numpy()), ("2d", ~val["has_world"].numpy())):
        fb = torso_faces_camera(dec[m]) != torso_faces_camera(gt[m])
        out |= {f"val_mpjpe_{name}": mpjpe(dec[m], gt[m]), f"val_pa_mpjpe_{name}": pa_mpjpe(dec[m], gt[m]),
                f"val_front_back_{name}": float(fb.mean())}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=None, help=f"raw data folder (default $NLRD_DATA or {default_data_root()})")
    p.add_argument("--data", default="data", help="prepared data folder (made from --data-root if missing)")
    p.add_argument("--prior", default=None, help=f"pose prior checkpoint (default checkpoints/{POSE_CHECKPOINT})")
    p.add_argument("--out", default=DEFAULT_OUT)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    for f in dataclasses.fields(StartTrainConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)
    for f in dataclasses.fields(KeypointStartConfig):
        if f.name in ("hidden", "depth"):
            p.add_argument("--" + f.name, type=int, default=f.default)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = StartTrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StartTrainConfig)})
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    data = ensure_prepared(args.data_root or default_data_root(), Path(args.data), progress=False)
    prior = PosePrior.from_pretrained(args.prior)
    for q in list(prior.encoder.parameters()) + list(prior.decoder.parameters()):
        q.requires_grad_(False)
    model_cfg = KeypointStartConfig(num_joints=prior.skeleton.num_joints, latent_dim=prior.latent_dim,
                                    hidden=args.hidden, depth=args.depth, skeleton=prior.skeleton.name)  # fmt: skip
    net = KeypointStartNet(model_cfg)
    net.prior_fingerprint = prior_fingerprint(prior.encoder, prior.decoder)
    noise = ObservationNoise()
    # Training noise a little wider than the benchmark's, so the net is not tuned to one noise level.
    train_noise = dataclasses.replace(noise, kp_noise=(0.005, 0.04), missing_prob=0.08, world_noise_mm=(20.0, 60.0))
    train_pool = make_pool(prior, load_split(data, "train").joints, cfg.pool, rng)
    val_pool = make_pool(prior, load_split(data, "val").joints, cfg.val, np.random.default_rng(cfg.seed + 1))
    val = batch_tensors(val_pool, np.arange(cfg.val), np.random.default_rng(cfg.seed + 2), noise, 0.5, model_cfg.world_unit_mm)
    print(f"pools ready in {time.perf_counter() - t0:.0f} s", flush=True)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    # The time budget covers everything (pools, training, the final evaluation and saving).
    budget = cfg.minutes * 60.0 - (time.perf_counter() - t0) - 15.0
    t_train = time.perf_counter()
    step, history = 0, []
    while step < cfg.steps:
        elapsed = time.perf_counter() - t_train
        if elapsed > budget:
            break
        # Cosine decay over whichever ends first, the steps or the time budget.
        frac = max(step / cfg.steps, elapsed / budget)
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(frac, 1.0))))
        rows = rng.integers(0, cfg.pool, size=cfg.batch)
        b = batch_tensors(train_pool, rows, rng, train_noise, cfg.world_prob, model_cfg.world_unit_mm)
        parts = losses(net, prior, b, cfg)
        opt.zero_grad(set_to_none=True)
        parts["total"].backward()
        opt.step()
        step += 1
        if step % 250 == 0 or step == 1:
            msg = {k: round(float(v.detach()), 4) for k, v in parts.items()}
            msg |= {"step": step, "s": round(time.perf_counter() - t_train)}
            if step % 1000 == 0:
                msg |= {k: round(v, 3) for k, v in evaluate(net, prior, val).items()}
            history.append(msg)
            print(json.dumps(msg), flush=True)
    train_seconds = time.perf_counter() - t_train
    metrics = evaluate(net, prior, val)
    prior_path = Path(args.prior) if args.prior else Path(POSE_CHECKPOINT)
    save_checkpoint(
        args.out, {"net": net}, stage=START_STAGE,
        config={"model": dataclasses.asdict(model_cfg), "train": dataclasses.asdict(cfg),
                "noise": dataclasses.asdict(train_noise), "views": dataclasses.asdict(ViewSampling())},
        skeleton=prior.skeleton.name, data_sources=prior.meta.get("data_sources"), metrics=metrics,
        extra={"pose_prior": {"fingerprint": net.prior_fingerprint, "file": prior_path.name,
                              "created": prior.meta.get("created")},
               "steps": step, "train_seconds": round(train_seconds, 1), "threads": args.threads,
               "command": "python -m training.train_keypoint_start " + " ".join(argv if argv is not None else sys.argv[1:]),
               "metrics_note": "val split, decoded start alone (no fit), canonical lengths, benchmark noise; "
                               "_cue: with the noisy 3D cue as input, _2d: keypoints only"},
    )  # fmt: skip
    summary = {"out": args.out, "steps": step, "train_seconds": round(train_seconds, 1), **metrics}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
