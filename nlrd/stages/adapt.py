"""Stage 5, adapt: self-adaptation of G (initialised from Gs) on unlabelled target clips.

Terms, any subset selectable by name:

- ``lcr``: local contrastive relation on frames: InfoNCE between h(G(x)) and h(G(A(x))) for a
  pose-preserving photometric augmentation A, the other frames of the batch as negatives.
- ``hcr``: the same on motions: h(Em(G(X))) vs h(Em(G(A(X)))) over the clips of the batch.
- a pose relation r (``pose-flip``, ``inplane-10``, ...): the energy between T_z,r(G(x)) and the
  counterpart latent of the transformed image T_x,r(x), measured after decoding with the frozen Dp
  (``relation_space="pose"``, mm / 100) or directly in latent space (``"latent"``, the paper's form).
- a motion relation r (``flip-backward``, ``slow-backward``, ...):
  L = mean |T_v,r(Em(G(X))) - sg(Em(G'(T_X,r(X))))| (L1).
- real-target terms (``training.real_target`` builds their data: real photos and video frames framed for G,
  with MediaPipe's 2D keypoints and the pose prior's fits; not in the paper):
  ``keypoints``: the weak-perspective projection of Dp(G(x)) onto the confident 2D keypoints (L1 in crop
  units); ``fit3d``: Dp(G(x)) against the prior's fit to the keypoints (L1, mm / 100; pseudo-3D labels,
  refreshed from the current G every ``refit_every`` steps when the caller gives a refit function);
  ``source``: the labelled loss on source-style renders (L1, mm / 100), so G keeps its 3D.
  Each draws ``frames`` rows and mirrors half of them (image, keypoints and pose together).
- ``ensemble``: the identity relation against the teacher's relation ensemble: Dp(G(x)) is pulled
  (L1, mm / 100) towards the mean over the views of ``nlrd.transforms.ensemble_views`` (identity, mirror,
  in-plane +-10 degrees, each with and without the mirror) of the teacher's prediction for the viewed
  image, mapped back by the view's exact inverse pose map. Every pose relation's optimum with the
  teacher is a partial average of this kind; this term asks for the whole average at once, on a mirrored
  (input and target together) and photometrically augmented copy of the frame. Not in the paper.

The relation networks T, the motion encoder Em and Dp are frozen. Each term has its own Adam
optimiser and the terms are stepped in alternation, one per step, as in the authors' code.

Stabilisers (measured on target-style validation renders; see docs/results.md, the adaptation section):
the counterpart side G' is a frozen copy of Gs (a teacher) rather than G itself, and every term adds
the identity relation against the teacher (|Dp(G(x)) - Dp(Gs(x))|), so a relation's optimum is the
average of the teacher's prediction and the relation's image of the teacher's counterpart
prediction. With G on both sides the energies drifted to consistent but wrong poses (+7 to +60 mm);
BatchNorm keeps Gs's statistics (re-estimating them on target frames cost +8 mm).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, IterableDataset

from nlrd.data.synthetic import SyntheticClipDataset, fixed_test_set
from nlrd.losses import info_nce
from nlrd.metrics import mpjpe, pa_mpjpe
from nlrd.models.image_encoder import ImageEncoder, encode_images, trainable_parameters
from nlrd.models.relation_net import RelationNet
from nlrd.precision import autocast
from nlrd.priors import MotionPrior, PosePrior
from nlrd.skeleton import LIMB_JOINTS
from nlrd.stages.source import RENDER_SOURCES, colour_jitter
from nlrd.trainer import DistInfo, adam, guarded_step, warmup_cosine, wrap_ddp
from nlrd.transforms import MOTION_LENGTH, ensemble_views, flip_image, flip_pose, get_relation
from nlrd.vision.target import RealTarget, project_crop

CONTRASTIVE_TERMS = ("lcr", "hcr")
ENSEMBLE_TERM = "ensemble"
REAL_TERMS = ("keypoints", "fit3d")  # need the real target's keypoints and fits
LABELLED_TERMS = (*REAL_TERMS, "source")
# Terms that need no relation network.
OWN_TERMS = (*CONTRASTIVE_TERMS, ENSEMBLE_TERM, *LABELLED_TERMS)
def uses_clips(term: str) -> bool:
    """Whether a term draws clips (hcr and the motion relations, which also need the motion prior) rather than frames."""
    return term == "hcr" or (term not in OWN_TERMS and get_relation(term).order != "pose")


CONFIDENT = 0.5  # keypoints below this MediaPipe confidence are neither trained on nor scored
# What a real-target run saw (its 2D keypoints and fits come from MediaPipe Pose, Apache-2.0, and the pose prior).
REAL_TARGET_SOURCE = {
    "name": "real unlabelled photos and videos given as the adaptation target (the shipped run: Free Exercise DB photos "
            "without the held-out exercises, and the squat and deadlift videos from Wikimedia Commons)",
    "licence": "as given by the user (the shipped run: The Unlicense for the photos, CC BY 3.0 for the videos)",
}  # fmt: skip


@dataclass
class AdaptStageConfig:
    """Settings of one adaptation run."""

    # The default: the paper's ablation row "+CR+pose-flip+flip-backward", its best row on the target
    # validation renders (docs/results.md; the paper's full recipe adds "slow-backward"). The pipeline and the
    # ablation run it. The shipped adapted G uses the ensemble term instead (terms=("ensemble",),
    # steps=1200, with the frame pool), 4.2 mm better on target-test (docs/results.md).
    terms: tuple[str, ...] = ("lcr", "hcr", "pose-flip", "flip-backward")
    steps: int = 300
    clips: int = 2  # clips per motion step (each 30 frames; 60 rendered for the slow relations)
    frames: int = 64  # frames per lower-order step, drawn from the clips (or the whole pool)
    lr_contrastive: float = 5e-5
    lr_relation: float = 1e-4
    # The ensemble term's peak learning rate; it decays along a cosine over ``steps`` (docs/results.md: 3e-4 beat 1e-4 and 1e-3).
    lr_ensemble: float = 3e-4
    ensemble_angles: tuple[float, ...] = (10.0, -10.0)  # in-plane rotations (deg) of the ensemble's views, each also mirrored
    temperature: float = 0.07
    # The paper trains Res-3 (layer2) only; with the frozen teacher and its anchor holding G near Gs,
    # layer2 alone moved the target error by < 0.5 mm in 300 steps, layer2 + layer3 + head by 1-2 mm.
    trainable: tuple[str, ...] = ("layer2", "layer3", "head")
    augment_strength: float = 0.4
    val_images: int = 256
    workers: int = 1
    seed: int = 0
    amp: bool = True
    style: str = "target"
    bn_train: bool = False  # False: BatchNorm keeps Gs's statistics (re-estimating them on target frames raised the error)
    # The counterpart side of every relation comes from a frozen copy of Gs (a teacher) and is not
    # differentiated; with G itself on both sides the energies drifted to degenerate, consistent solutions.
    teacher: bool = True
    anchor_weight: float = 1.0  # with a teacher: the identity relation's weight (see AdaptStage._anchor)
    # Where a pose relation's energy is measured: "latent" (|T(G(x)) - G(T_x x)|, the paper's form), "pose" (the
    # same two latents decoded by the frozen Dp, mm / 100; Dp is many-to-one, so equal poses need not mean equal
    # latents) or "exact" (diagnostic: the exact T_y on Dp(G(x)) instead of the network).
    relation_space: str = "pose"
    # Real-target terms (keypoints, fit3d, source): their Adam's peak learning rate (cosine decay over ``steps``).
    lr_labelled: float = 1e-3  # 1e-3 rose faster than 3e-4 on the tuning photos (docs/experiments.md)
    keypoint_weight: float = 1.0  # the keypoints term's L1 in crop units is scaled by this
    refit_every: int = 0  # steps between refreshes of the fit3d targets from the current G (0: never)


def photometric(x: torch.Tensor, strength: float, g: torch.Generator) -> torch.Tensor:
    """A pose-preserving augmentation A: colour jitter, blur and noise; (N, 3, H, W) in [0, 1]."""
    x = colour_jitter(x, strength, g)
    if torch.rand(1, generator=g).item() < 0.5:
        x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    noise = torch.randn(x.shape, generator=g).to(x) * (0.03 * strength)
    return (x + noise).clamp(0, 1)


def _to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [0, 1]."""
    return frames.movedim(-1, -3).float().div(255)


class ProjectionHead(nn.Module):
    """Small MLP for the contrastive terms (D -> D)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class RelationBank:
    """Frozen relation networks by name."""

    nets: dict[str, RelationNet] = field(default_factory=dict)

    @classmethod
    def load(cls, folder: str | Path, names: list[str], device: torch.device, pose: PosePrior | None = None) -> RelationBank:
        """The named networks from ``folder``; with ``pose``, each must be built on its latent space."""
        from nlrd.inference import load_relation_net

        bank = cls()
        for name in names:
            path = Path(folder) / f"{name}.safetensors"
            if not path.exists():
                raise ValueError(f"relation network {name!r} not found at {str(path)!r}; run python -m training.train_relations")
            loaded = load_relation_net(path, pose)
            if loaded is None:
                raise ValueError(f"{str(path)!r} is not a relation network checkpoint")
            net = loaded[1].to(device)
            for p in net.parameters():
                p.requires_grad_(False)
            bank.nets[name] = net
        return bank


class ClipTensorDataset(IterableDataset):
    """Random 60-frame windows of pre-cropped clips (real videos): yields (clip (T, 3, H, W) float, None)."""

    def __init__(self, crops: list[np.ndarray], window: int, seed: int) -> None:
        self.crops = [c for c in crops if len(c) >= window]
        if not self.crops:
            raise ValueError(f"no clip has the {window} frames an adaptation window needs")
        self.window, self.seed = window, seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        rng = np.random.default_rng(self.seed)
        while True:
            c = self.crops[int(rng.integers(len(self.crops)))]
            s = int(rng.integers(0, len(c) - self.window + 1))
            clip = torch.from_numpy(np.ascontiguousarray(c[s : s + self.window])).permute(0, 3, 1, 2).float().div(255)
            yield clip, torch.zeros(self.window, 17, 3)


class AdaptStage:
    """Adapts G's layer2 on unlabelled target clips with the selected terms."""

    name = "adapt"

    def __init__(self, g: ImageEncoder, pose: PosePrior, motion: MotionPrior | None, relations: RelationBank,
                 cfg: AdaptStageConfig, device: torch.device, info: DistInfo, *, train_windows: np.ndarray | None = None,
                 val_poses: np.ndarray | None = None, video_crops: list[np.ndarray] | None = None,
                 data_root: str | Path | None = None, init_checkpoint: str | None = None,
                 pool: np.ndarray | None = None, frame_pool: np.ndarray | None = None, real: RealTarget | None = None,
                 source_set: dict[str, np.ndarray] | None = None,
                 refit: Callable[[ImageEncoder], np.ndarray] | None = None) -> None:  # fmt: skip
        """Data, one of: ``pool`` (rendered clips), ``train_windows`` (clips rendered on the fly),
        ``video_crops`` (cropped real videos) or ``real`` (a real target: its train rows are the frame pool,
        its video clips the clips). ``source_set``: labelled renders (``images`` (N, S, S, 3) uint8,
        ``joints3d`` (N, J, 3) mm) for the ``source`` term. ``refit(g) -> (N, J, 3)``: the real target's fits
        redone from G's current latents (fitting in the loop, every ``cfg.refit_every`` steps)."""
        self.cfg, self.device, self.info = cfg, device, info
        self.init_checkpoint = init_checkpoint
        unknown = [t for t in cfg.terms if t not in OWN_TERMS and t not in relations.nets]
        if unknown:
            raise ValueError(f"unknown or unloaded adaptation terms {unknown}; without a relation network: {OWN_TERMS}, "
                             f"relations loaded: {sorted(relations.nets)}")  # fmt: skip
        if not cfg.terms:
            raise ValueError("choose at least one adaptation term")
        if cfg.relation_space not in ("latent", "pose", "exact"):
            raise ValueError(f"relation_space must be latent, pose or exact, got {cfg.relation_space!r}")
        self.g = g.to(device).to(memory_format=torch.channels_last)
        self.teacher: ImageEncoder | None = None
        if cfg.teacher:
            self.teacher = copy.deepcopy(self.g).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.pose, self.motion, self.relations = pose, motion, relations
        self.latent_space = pose.latent_space  # recorded in the checkpoint, checked when it is loaded
        if motion is None and self._needs_clips():
            raise ValueError("hcr and the motion relations need the motion prior")
        for m in (pose.encoder, pose.decoder, *((motion.encoder, motion.decoder) if motion is not None else ())):
            m.eval()
            for p in m.parameters():
                p.requires_grad_(False)
        params = trainable_parameters(self.g, cfg.trainable)
        self.g_ddp = wrap_ddp(self.g, info, device)
        self.heads = nn.ModuleDict()
        self.opts: dict[str, torch.optim.Optimizer] = {}
        for term in cfg.terms:
            if term in CONTRASTIVE_TERMS:
                dim = pose.latent_dim if term == "lcr" else motion.latent_dim  # type: ignore[union-attr]
                self.heads[term] = ProjectionHead(dim).to(device)
                self.opts[term] = adam(list(params) + list(self.heads[term].parameters()), lr=cfg.lr_contrastive)
            else:
                lr = {ENSEMBLE_TERM: cfg.lr_ensemble, **dict.fromkeys(LABELLED_TERMS, cfg.lr_labelled)}.get(term, cfg.lr_relation)
                self.opts[term] = adam(params, lr=lr)
        self._real_data(real, source_set, refit)
        if real is not None and pool is None and video_crops is None and train_windows is None:
            frame_pool = real.frames[~real.val]
            clips = real.clips()
            video_crops = clips if clips else None
        self.views = ensemble_views(tuple(cfg.ensemble_angles))
        # Data: rendered target clips (labels unused) or pre-cropped real videos.
        needs_slow = any(get_relation(t).window > MOTION_LENGTH for t in cfg.terms if t not in OWN_TERMS)
        self.window = 2 * MOTION_LENGTH if needs_slow else MOTION_LENGTH
        size = self.g.config.image_size
        backgrounds = Path(data_root) / "backgrounds" if data_root is not None else None
        self.pool: torch.Tensor | None = None
        if pool is not None:
            arr = np.asarray(pool)
            if arr.ndim != 5 or arr.shape[1] < self.window or arr.shape[-1] != 3 or arr.dtype != np.uint8:
                raise ValueError(f"adaptation pool: expected uint8 (N, T>={self.window}, H, W, 3) clips, "
                                 f"got {arr.dtype} {arr.shape}")  # fmt: skip
            self.pool = torch.from_numpy(np.ascontiguousarray(arr))
        # Extra unlabelled single frames (N, H, W, 3) uint8 for the lower-order terms, drawn together with the
        # clip pool's frames: more scenes per step than the clips alone hold (docs/results.md, the ensemble term).
        self.frame_pool: torch.Tensor | None = None
        if frame_pool is not None:
            fp = np.asarray(frame_pool)
            if fp.ndim != 4 or fp.shape[-1] != 3 or fp.dtype != np.uint8 or len(fp) == 0:
                raise ValueError(f"adaptation frame pool: expected uint8 (N, H, W, 3) frames, got {fp.dtype} {fp.shape}")
            if self.pool is not None:
                if self.pool.shape[2:] != fp.shape[1:]:
                    raise ValueError(f"frame pool frames {fp.shape[1:]} differ from the clip pool's {tuple(self.pool.shape[2:])}")
                fp = np.concatenate([self.pool.flatten(0, 1).numpy(), fp])
            self.frame_pool = torch.from_numpy(np.ascontiguousarray(fp))
        if self.pool is not None:
            ds: IterableDataset | None = None
        elif video_crops is not None and all(len(c) < self.window for c in video_crops) and not self._needs_clips():
            ds = None  # short real clips, and no term draws clips
        elif video_crops is not None:
            ds = ClipTensorDataset(video_crops, self.window, cfg.seed + info.rank)
        elif train_windows is not None:
            w = np.asarray(train_windows)
            if w.shape[1] < self.window:
                raise ValueError(f"adaptation windows need {self.window} frames, got {w.shape[1]}")
            ds = SyntheticClipDataset(w[:, : self.window], cfg.style, size=size, seed=cfg.seed * 1000 + info.rank,
                                      backgrounds=backgrounds)  # fmt: skip
        elif self.frame_pool is not None and not self._needs_clips():
            ds = None  # photos only: every term draws frames
        else:
            raise ValueError("give pool (pre-rendered clips), train_windows (rendered target clips), video_crops (real videos) "
                             "or a real target with videos")  # fmt: skip
        self.loader = None if ds is None else DataLoader(
            ds, batch_size=cfg.clips, num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
            prefetch_factor=2 if cfg.workers > 0 else None)  # fmt: skip
        self._iter: Iterator | None = None
        self.gen = torch.Generator().manual_seed(cfg.seed * 31 + info.rank)
        if val_poses is not None:
            val = fixed_test_set(val_poses, cfg.style, cfg.val_images, seed=cfg.seed + 99, size=size, backgrounds=backgrounds)
            self.val_x = torch.from_numpy(val["images"]).permute(0, 3, 1, 2).float().div(255)
            self.val_y: np.ndarray | None = val["joints3d"]
        else:
            self.val_x, self.val_y = None, None

    def _real_data(self, real: RealTarget | None, source_set: dict[str, np.ndarray] | None,
                   refit: Callable[[ImageEncoder], np.ndarray] | None) -> None:  # fmt: skip
        """Tensors of the real target's train and validation rows and of the labelled source renders."""
        need_real = [t for t in self.cfg.terms if t in REAL_TERMS]
        if need_real and real is None:
            raise ValueError(f"terms {need_real} need a real target (training.real_target)")
        if "source" in self.cfg.terms and source_set is None:
            raise ValueError("the source term needs labelled renders (source_set)")
        self.real, self.refit = real, refit
        if real is not None:
            train, val = np.flatnonzero(~real.val), np.flatnonzero(real.val)
            if len(train) == 0:
                raise ValueError("the real target has no training rows")
            self.real_train = torch.from_numpy(train)
            self.real_val = torch.from_numpy(val)
            self.real_x = torch.from_numpy(np.ascontiguousarray(real.frames))
            self.real_kp = torch.from_numpy(real.keypoints.astype(np.float32))
            self.real_conf = torch.from_numpy(real.conf.astype(np.float32))
            self.real_fit3d = torch.from_numpy(real.fit3d.astype(np.float32))
        if source_set is not None:
            self.src_x = torch.from_numpy(np.ascontiguousarray(source_set["images"]))
            self.src_y = torch.from_numpy(np.asarray(source_set["joints3d"], np.float32))

    def _needs_clips(self) -> bool:
        """Whether a term draws clips (hcr and the motion relations) rather than single frames."""
        return any(uses_clips(t) for t in self.cfg.terms)

    # -- trainer protocol ------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"g": self.g, "heads": self.heads}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return self.opts

    def export(self) -> dict[str, nn.Module]:
        return {"encoder": self.g}

    def checkpoint_meta(self) -> dict[str, Any]:
        from nlrd.stages.common import MOCAP_SOURCES

        extra: dict[str, Any] = {"init_checkpoint": self.init_checkpoint, "terms": list(self.cfg.terms)}
        sources = MOCAP_SOURCES + RENDER_SOURCES
        if self.real is not None:
            sources = sources + [REAL_TARGET_SOURCE]
            extra["real_target"] = {"rows": len(self.real), "train_rows": len(self.real_train), "val_rows": len(self.real_val)}
        return {"config": {"model": asdict(self.g.config), "stage": asdict(self.cfg)}, "data_sources": sources,
                "extra": extra}  # fmt: skip

    # -- pieces ------------------------------------------------------------------------------------
    def _g(self, x: torch.Tensor) -> torch.Tensor:
        """G on frames (N, 3, H, W) -> z (N, D) float32."""
        with autocast(self.device, self.cfg.amp):
            z = self.g_ddp(x.contiguous(memory_format=torch.channels_last))
        return z.float()

    def _em(self, z_seq: torch.Tensor) -> torch.Tensor:
        assert self.motion is not None  # refused on construction when a term needs it
        return self.motion.encoder(z_seq)

    def next_clips(self) -> torch.Tensor:
        """(B, window, 3, H, W) float in [0, 1] on the device."""
        if self.pool is not None:
            n, t = self.pool.shape[:2]
            ci = torch.randint(n, (self.cfg.clips,), generator=self.gen)
            s0 = torch.randint(t - self.window + 1, (self.cfg.clips,), generator=self.gen)
            picked = [self.pool[c, s : s + self.window] for c, s in zip(ci.tolist(), s0.tolist(), strict=True)]
            return _to_float(torch.stack(picked)).to(self.device)
        if self._iter is None:
            self._iter = iter(self.loader)
        clips, _ = next(self._iter)
        return clips.to(self.device, non_blocking=True)

    def _frames(self, clips: torch.Tensor) -> torch.Tensor:
        """``cfg.frames`` frames (N, 3, H, W) for the lower-order terms.

        With a frame pool, the frames come from it (it holds the clip pool's frames too); with a pool of
        clips (a finite unlabelled target set), from random clips of the whole pool, so one batch shows
        many people and poses; otherwise from this step's clips.
        """
        if self.frame_pool is not None:
            idx = torch.randint(self.frame_pool.shape[0], (self.cfg.frames,), generator=self.gen)
            return _to_float(self.frame_pool[idx]).to(self.device)
        if self.pool is not None:
            n, t = self.pool.shape[:2]
            ci = torch.randint(n, (self.cfg.frames,), generator=self.gen)
            ti = torch.randint(t, (self.cfg.frames,), generator=self.gen)
            return _to_float(self.pool[ci, ti]).to(self.device)
        flat = clips.flatten(0, 1)
        idx = torch.randperm(flat.shape[0], generator=self.gen)[: self.cfg.frames]
        return flat[idx.to(flat.device)]

    def _labelled_batch(self, term: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``cfg.frames`` rows of a labelled term, half of them mirrored: x (N, 3, H, W) float, target (N, J, 2 or 3)
        and a per-joint weight (N, J) (keypoints: confident joints; 3D targets: ones)."""
        idx = torch.randint(len(self.real_train) if term in REAL_TERMS else len(self.src_x), (self.cfg.frames,),
                            generator=self.gen)  # fmt: skip
        if term in REAL_TERMS:
            rows = self.real_train[idx]
            x = _to_float(self.real_x[rows])
            y = self.real_kp[rows] if term == "keypoints" else self.real_fit3d[rows]
            w = (self.real_conf[rows] >= CONFIDENT).float() if term == "keypoints" else torch.ones(y.shape[:2])
        else:
            x, y = _to_float(self.src_x[idx]), self.src_y[idx]
            w = torch.ones(y.shape[:2])
        m = torch.rand(x.shape[0], generator=self.gen) < 0.5
        x = torch.where(m[:, None, None, None], flip_image(x), x)
        y = torch.where(m[:, None, None], flip_pose(y, self.pose.skeleton), y)
        w = torch.where(m[:, None], w[:, torch.as_tensor(self.pose.skeleton.flip_permutation)], w)
        return x.to(self.device), y.to(self.device), w.to(self.device)

    def term_loss(self, term: str, clips: torch.Tensor | None) -> torch.Tensor:
        cfg = self.cfg
        if term in LABELLED_TERMS:
            x, y, w = self._labelled_batch(term)
            joints = self.pose.decoder(self._g(photometric(x, cfg.augment_strength, self.gen)))
            if term == "keypoints":
                err = (project_crop(joints) - y).abs().sum(-1)  # (N, J) crop units
                return cfg.keypoint_weight * (err * w).sum() / w.sum().clamp_min(1.0)
            return ((joints - y).abs().mean(-1) * w).sum() / w.sum().clamp_min(1.0) / 100.0
        if term == "lcr":
            x = self._frames(clips)
            z = self._g(x)
            a = self.heads["lcr"](z)
            p = self.heads["lcr"](self._g(photometric(x, cfg.augment_strength, self.gen)))
            return info_nce(a, p, cfg.temperature) + self._anchor(x, z)
        if term == "hcr":
            clip = clips[:, :MOTION_LENGTH]
            b, t = clip.shape[:2]
            za = self._g(clip.flatten(0, 1)).view(b, t, -1)
            aug = photometric(clip.flatten(0, 1), cfg.augment_strength, self.gen)
            zp = self._g(aug).view(b, t, -1)
            anchor = self._anchor(clip.flatten(0, 1), za.flatten(0, 1))
            return info_nce(self.heads["hcr"](self._em(za)), self.heads["hcr"](self._em(zp)), cfg.temperature) + anchor
        if term == ENSEMBLE_TERM:
            x = self._frames(clips)
            target = self.ensemble_target(x)
            # Mirror input and target together (the pose-flip relation, exact): G learns from both sides.
            m = torch.rand(x.shape[0], generator=self.gen) < 0.5
            x = torch.where(m.to(x.device)[:, None, None, None], flip_image(x), x)
            target = torch.where(m.to(x.device)[:, None, None], flip_pose(target), target)
            x = photometric(x, cfg.augment_strength, self.gen)
            return (self.pose.decoder(self._g(x)) - target).abs().mean() / 100.0
        rel = get_relation(term)
        net = self.relations.nets[term]
        if rel.order == "pose":
            xa, xc = rel.image_pair(self._frames(clips))
            za = self._g(xa)
            # The counterpart side: the frozen source model (teacher) or G itself, without gradient.
            with torch.no_grad():
                zc = self._teacher(xc)
            if cfg.relation_space == "latent":
                loss = (net(za) - zc).abs().mean()
            else:
                ya = rel.pose_pair(self.pose.decoder(za))[1] if cfg.relation_space == "exact" else self.pose.decoder(net(za))
                loss = (ya - self.pose.decoder(zc)).abs().mean() / 100.0
            return loss + self._anchor(xa, za)
        src = clips[:, : rel.window]
        xa, xc = rel.image_pair(src)  # torch clips (B, T, C, H, W): time axis -4
        b, t = xa.shape[:2]
        za = self._g(xa.flatten(0, 1))
        va = self._em(za.view(b, t, -1))
        with torch.no_grad():
            vc = self._em(self._teacher(xc.flatten(0, 1)).view(b, t, -1))
        return (net(va) - vc).abs().mean() + self._anchor(xa.flatten(0, 1), za)

    def _teacher(self, x: torch.Tensor) -> torch.Tensor:
        """Counterpart latents (N, D): the frozen copy of Gs when ``cfg.teacher``, else G (called without grad)."""
        if self.teacher is None:
            return self._g(x)
        with autocast(self.device, self.cfg.amp):
            return self.teacher(x.contiguous(memory_format=torch.channels_last)).float()

    @torch.no_grad()
    def ensemble_target(self, x: torch.Tensor) -> torch.Tensor:
        """The teacher's relation ensemble for frames (N, 3, H, W): the mean over ``self.views`` of Dp(teacher(view(x)))
        mapped back to x by the view's inverse pose map -> joints (N, J, 3) mm."""
        poses = [back(self.pose.decoder(self._teacher(image_fn(x)))) for _, image_fn, back in self.views]
        return torch.stack(poses).mean(0)

    def _anchor(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """anchor_weight * |Dp(G(x)) - Dp(Gs(x))| / 100: the identity relation against the frozen teacher.

        With it, the optimum of a relation term is the average of the teacher's prediction and the
        relation's image of the teacher's counterpart prediction, not the counterpart alone.
        """
        if self.teacher is None or self.cfg.anchor_weight == 0:
            return z.new_zeros(())
        with torch.no_grad():
            target = self.pose.decoder(self._teacher(x))
        return self.cfg.anchor_weight * (self.pose.decoder(z) - target).abs().mean() / 100.0

    def train_step(self, step: int) -> dict[str, float]:
        term = self.cfg.terms[step % len(self.cfg.terms)]
        if self.refit is not None and self.cfg.refit_every > 0 and step > 0 and step % self.cfg.refit_every == 0:
            # Fitting in the loop: the prior's fits redone from the current G's latents (a better start).
            self.g.eval()
            self.real_fit3d = torch.from_numpy(np.asarray(self.refit(self.g), np.float32))
        self.g.train(self.cfg.bn_train)
        clips = self.next_clips() if uses_clips(term) or (term not in LABELLED_TERMS and self.frame_pool is None) else None
        loss = self.term_loss(term, clips)
        opt = self.opts[term]
        if term == ENSEMBLE_TERM or term in LABELLED_TERMS:
            peak = self.cfg.lr_ensemble if term == ENSEMBLE_TERM else self.cfg.lr_labelled
            for group in opt.param_groups:
                group["lr"] = peak * warmup_cosine(step, self.cfg.steps, 0, 0.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        guarded_step(opt, loss)
        return {f"loss/{term}": loss.item()}

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        """Dp(G(x)) for float crops (N, 3, H, W) -> joints (N, J, 3) mm."""
        return self.pose.decoder(encode_images(self.g, x, self.device, amp=self.cfg.amp)).cpu().numpy()

    def evaluate(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.val_x is not None and self.val_y is not None:
            pred = self.predict(self.val_x)
            out.update(val_mpjpe_mm=float(mpjpe(pred, self.val_y)), val_pa_mpjpe_mm=float(pa_mpjpe(pred, self.val_y)))
        if self.real is not None and len(self.real_val):
            out.update(real_agreement(self.predict(_to_float(self.real_x[self.real_val])), self.real, self.real_val.numpy()))
        return out


def real_agreement(joints: np.ndarray, real: RealTarget, rows: np.ndarray) -> dict[str, float]:
    """G's 2D agreement with the real target's keypoints on ``rows``: PCK@0.2 of the person box over the
    confident limb joints (the real-photo benchmark's score) and the mean error in crop units.

    Args:
        joints: (len(rows), J, 3) mm, Dp(G(x)) for the rows' crops.
    """
    return keypoint_agreement(project_crop(torch.from_numpy(np.asarray(joints, np.float32))).numpy(), real, rows)


def keypoint_agreement(points: np.ndarray, real: RealTarget, rows: np.ndarray) -> dict[str, float]:
    """:func:`real_agreement` for 2D joints already in crop units: ``points`` (len(rows), J, 2)."""
    ok = real.conf[rows] >= CONFIDENT
    ok[:, [j for j in range(ok.shape[1]) if j not in LIMB_JOINTS]] = False
    d = np.linalg.norm(points - real.keypoints[rows], axis=-1)
    hit = (d <= real.pck_radius[rows, None]) & ok
    err = float(d[ok].mean()) if ok.any() else float("nan")
    return {"real_val_pck": float(hit.sum() / max(ok.sum(), 1)), "real_val_kp_err": err}
