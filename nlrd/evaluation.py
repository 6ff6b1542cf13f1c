"""Evaluation of the trained stages on held-out data (used by ``training.evaluate`` and the benchmarks).

Pose-prior figures:
- reconstruction: MPJPE / PA-MPJPE of Dp(Ep(y)) on the test split (mm);
- plausibility: the fraction of decoded prior samples z ~ U[-1,1]^32 whose *joint angles* all fall
  inside the range seen in the training split. The angle set (:func:`joint_angles`), 44 angles per
  pose, in degrees:
    * bend of every bone against its parent bone (16; the hips and spine against the pelvis->thorax
      direction), e.g. knee and elbow flexion;
    * for the 14 bones expressed in the torso frame, the angle to the torso's up axis and to its
      forward axis (28), e.g. how far an arm is raised or swung forward;
- coverage: median over test poses of the MPJPE to the nearest of 100,000 decoded prior samples;
- views: per view bin of :data:`nlrd.views.VIEW_BINS` (and the renderers' own camera ranges), the
  encode -> decode MPJPE of test poses seen that way, and the best-fit floor min over z of
  |Dp(z) - y| (Adam on z from Ep(y)): what the decoder can output at all, whatever the encoder says;
- latent KS: median over the 32 dimensions of the Kolmogorov-Smirnov distance between encoded
  training poses and U[-1,1]. The prior models poses seen from every azimuth and mirrored (that is
  the training distribution), so the poses are encoded with the training augmentation; the value
  for the raw mocap orientations is reported beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nlrd.kinematics import plausibility_angles
from nlrd.metrics import auc, mpjpe, pa_mpjpe, pck
from nlrd.models.image_encoder import encode_images
from nlrd.priors import MotionPrior, PosePrior
from nlrd.skeleton import H36M_17, Skeleton
from nlrd.stages.common import VIEWS, augment_view, view_distribution
from nlrd.stages.pose_aae import ks_to_uniform
from nlrd.transforms import flip_pose
from nlrd.views import VIEW_BINS, apply_rotations


def joint_angles(joints: np.ndarray, skeleton: Skeleton = H36M_17) -> np.ndarray:
    """The plausibility angle set of (N, J, 3) poses -> (N, 44) degrees (see module doc)."""
    return plausibility_angles(np.asarray(joints, dtype=np.float64), skeleton)


def angle_ranges(train_joints: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Per-angle (min, max) over the training poses, each (44,) degrees."""
    lo, hi = None, None
    for s in range(0, len(train_joints), chunk):
        a = joint_angles(train_joints[s : s + chunk])
        lo = a.min(0) if lo is None else np.minimum(lo, a.min(0))
        hi = a.max(0) if hi is None else np.maximum(hi, a.max(0))
    assert lo is not None and hi is not None
    return lo, hi


def plausible_fraction(poses: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Fraction of poses (N, J, 3) whose every angle lies in [lo, hi]."""
    a = joint_angles(poses)
    return float(((a >= lo) & (a <= hi)).all(axis=1).mean())


def nearest_mpjpe(queries: np.ndarray, bank: np.ndarray, k: int = 16, chunk: int = 512) -> np.ndarray:
    """For each query pose (Q, J, 3), the MPJPE (mm) to its nearest pose in ``bank`` (N, J, 3).

    Candidates come from the k nearest in flat Euclidean distance (a matrix product), then the exact
    MPJPE picks among them; with k = 16 this equals the brute-force MPJPE minimum in practice.
    """
    b = torch.as_tensor(bank.reshape(len(bank), -1), dtype=torch.float32)
    bn = (b * b).sum(1)
    out = []
    for s in range(0, len(queries), chunk):
        q = torch.as_tensor(queries[s : s + chunk].reshape(-1, b.shape[1]), dtype=torch.float32)
        d = (q * q).sum(1, keepdim=True) - 2 * q @ b.T + bn[None]
        idx = torch.topk(d, k=min(k, len(bank)), dim=1, largest=False).indices
        cand = b[idx].view(len(q), idx.shape[1], -1, 3)
        err = torch.linalg.norm(cand - q.view(len(q), 1, -1, 3), dim=-1).mean(-1)
        out.append(err.min(1).values)
    return torch.cat(out).numpy()


def evaluate_pose_prior(prior: PosePrior, train: np.ndarray, test: np.ndarray, *, n_plausible: int = 10_000,
                        n_coverage: int = 100_000, coverage_queries: int = 2000, seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """All pose-prior figures of the module doc on (N, J, 3) train / test poses (mm)."""
    rng = np.random.default_rng(seed)
    rec = np.concatenate([prior.decode(prior.encode(c)) for c in np.array_split(test, max(1, len(test) // 8192))])
    lo, hi = angle_ranges(train)
    samples = prior.decode(prior.sample(n_plausible, seed=seed))
    bank = np.concatenate([prior.decode(prior.sample(10_000, seed=seed + 1 + i)) for i in range(n_coverage // 10_000)])
    q = test[np.sort(rng.choice(len(test), size=min(coverage_queries, len(test)), replace=False))]
    cover = nearest_mpjpe(q, bank)
    g = torch.Generator().manual_seed(seed)
    sub = torch.as_tensor(train[rng.choice(len(train), size=min(50_000, len(train)), replace=False)])
    aug = augment_view(sub, g, views=view_distribution(prior_views(prior))).numpy()
    ks_aug = ks_to_uniform(prior.encode(aug))
    ks_raw = ks_to_uniform(prior.encode(sub.numpy()))
    return {
        "test_mpjpe_mm": float(mpjpe(rec, test)),
        "test_pa_mpjpe_mm": float(pa_mpjpe(rec, test)),
        "prior_plausible_fraction": plausible_fraction(samples, lo, hi),
        "prior_coverage_mm": float(np.median(cover)),
        "latent_ks_median": float(np.median(ks_aug)),
        "latent_ks_median_raw_orientation": float(np.median(ks_raw)),
        "views_trained_on": prior_views(prior),
        "test_poses": int(len(test)),
        "coverage_queries": int(len(q)),
    }


@torch.no_grad()
def predict_joints(encoder: torch.nn.Module, decoder: torch.nn.Module, images: np.ndarray, batch: int = 128,
                   device: torch.device | str = "cpu", flip_test: bool = False) -> np.ndarray:  # fmt: skip
    """Dp(G(x)) for uint8 images (N, H, W, 3) -> joints (N, J, 3) mm, in full precision (eval mode, batched).

    ``flip_test`` returns the flip-test pose instead (see :func:`predict_joints_and_flip_test`).
    """
    if flip_test:
        return predict_joints_and_flip_test(encoder, decoder, images, batch, device)[1]
    decoder.eval()
    return decoder(encode_images(encoder, images, torch.device(device), amp=False, batch=batch)).cpu().numpy()


def predict_joints_and_flip_test(encoder: torch.nn.Module, decoder: torch.nn.Module, images: np.ndarray, batch: int = 128,
                                 device: torch.device | str = "cpu") -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(plain, flip-test) joints (N, J, 3) mm for uint8 images (N, H, W, 3), sharing the plain pass.

    The flip test also predicts the mirrored images, mirrors those poses back (the pose-flip relation)
    and averages them with the plain ones, as ``PosePredictor``'s flip test does.
    """
    plain = predict_joints(encoder, decoder, images, batch, device)
    mirrored = predict_joints(encoder, decoder, np.ascontiguousarray(images[:, :, ::-1]), batch, device)
    return plain, (plain + flip_pose(mirrored)) / 2


def prior_views(prior: PosePrior) -> str:
    """The view distribution a pose prior was trained on ("azimuth" for priors from before it was recorded)."""
    return prior.views if prior.views in VIEWS else "azimuth"


def best_fit_floor(prior: PosePrior, targets: np.ndarray, steps: int = 300, lr: float = 0.05) -> np.ndarray:
    """Per pose, min over z in [-1, 1]^D of MPJPE(Dp(z), y) found by Adam on z (z = tanh(u)), started
    from Ep(y): (N, J, 3) mm -> (N,) mm. The floor under any model that outputs Dp(z)."""
    y = torch.as_tensor(np.asarray(targets, np.float32), device=prior.device)
    z0 = prior.encode(y).clamp(-0.999, 0.999)
    u = torch.atanh(z0).detach().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    best = torch.full((len(y),), float("inf"), device=prior.device)
    for p in prior.decoder.parameters():
        p.requires_grad_(False)
    for _ in range(steps):
        err = torch.linalg.norm(prior.decoder(torch.tanh(u)) - y, dim=-1).mean(-1)
        best = torch.minimum(best, err.detach())
        opt.zero_grad(set_to_none=True)
        err.sum().backward()
        opt.step()
    with torch.no_grad():
        best = torch.minimum(best, torch.linalg.norm(prior.decoder(torch.tanh(u)) - y, dim=-1).mean(-1))
    return best.cpu().numpy()


def renderer_view_rotations(style: str, n: int, seed: int = 0) -> np.ndarray:
    """(n, 3, 3) world -> camera rotations drawn from a render style's own camera ranges."""
    from nlrd.data.synthetic.camera import look_rotation
    from nlrd.data.synthetic.styles import get_style

    cam = get_style(style).camera
    rng = np.random.default_rng(seed)
    return np.stack([look_rotation(rng.uniform(*cam.azimuth), rng.uniform(*cam.elevation), rng.uniform(*cam.roll))
                     for _ in range(n)])  # fmt: skip


def evaluate_prior_views(prior: PosePrior, test: np.ndarray, *, per_bin: int = 256, fit_steps: int = 300,
                         seed: int = 0) -> dict[str, dict[str, float]]:  # fmt: skip
    """Encode -> decode MPJPE and best-fit floor (mm, means) per view bin on ``per_bin`` test poses
    (N, J, 3) mm in the mocap's world frame, the same poses in every bin."""
    rng = np.random.default_rng(seed)
    poses = test[np.sort(rng.choice(len(test), size=min(per_bin, len(test)), replace=False))]
    bins = {b.name: b.rotations(len(poses), seed=seed) for b in VIEW_BINS}
    for style in ("source", "target"):
        bins[f"renderer cameras ({style})"] = renderer_view_rotations(style, len(poses), seed=seed)
    out: dict[str, dict[str, float]] = {}
    for name, rots in bins.items():
        y = apply_rotations(poses, rots)
        rec = prior.decode(prior.encode(y))
        floor = float(best_fit_floor(prior, y, fit_steps).mean())
        out[name] = {"encode_decode_mm": float(mpjpe(rec, y)), "best_fit_floor_mm": floor}
    return out


def pose_errors(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """MPJPE, PA-MPJPE (mm), PCK@150 mm and AUC over 0-150 mm of (N, J, 3) predictions."""
    return {"mpjpe_mm": float(mpjpe(pred, gt)), "pa_mpjpe_mm": float(pa_mpjpe(pred, gt)),
            "pck150": float(pck(pred, gt, threshold=150.0)), "auc": float(auc(pred, gt))}  # fmt: skip


def evaluate_motion_prior(prior: MotionPrior, test_windows: np.ndarray) -> dict[str, Any]:
    """MPJPE (mm) of Dp(Dm(Em(Ep(Y)))) over test windows (M, 30, J, 3)."""
    errs = []
    for s in range(0, len(test_windows), 256):
        w = test_windows[s : s + 256]
        errs.append(np.linalg.norm(prior.decode(prior.encode(w)) - w, axis=-1).mean(axis=(1, 2)))
    return {"test_mpjpe_mm": float(np.concatenate(errs).mean()), "test_windows": int(len(test_windows))}
