"""3D pose from 2D keypoints by fitting the pose prior: :class:`PoseFitter`, numpy in, numpy out.

Model of one person (camera frame: x right, y down, z forward, mm)::

    P       = Dp(z)                              canonical root-relative pose from the prior (z in [-1, 1]^D)
    P_b     = P with each bone group's offsets times exp(log_g) (legs / arms / torso)
    Q       = s * P_b @ R.T                      the person's own size, rotated: joints3d (root-relative)
    X       = Q + t,  t = d * (u, v, 1)          root at depth d along the ray (u, v)
    x_2d    = f * X[:2] / X[2] + c               pinhole projection (f = max(H, W) px unless given)

``R`` is a rotation on top of the prior's own orientation (started from the start network's or the
Procrustes alignment to the 3D cue): a prior that covers only some views (the shipped one: upright
bodies, any azimuth) cannot tilt or lie a body down through z alone.

Energy per person (minimised by Adam over z, R, (u, v), log d, log s, log g, all batched):

- 2D: Geman-McClure of the reprojection error over the box size, weighted by the confidences;
- 3D cues: Charbonnier of ``|Q - world3d|`` and of ``|P @ R.T - Dp(z_start)|`` in units of
  ``cue_unit_mm``. 2D keypoints do not tell depth: the depth-mirrored twin of a pose projects to
  nearly the same keypoints, so these terms decide front/back and the depth order of limbs;
- a pull of z towards the chosen start (the prior is flat inside its box, so without it the latent
  fits the keypoints' noise), Gaussian priors on log s and log g, and (clips) the squared second
  difference of the joints over frames. z is projected back into [-1, 1] (the decoder's training
  range) after every step.

Start: candidates from the learned start network (:mod:`nlrd.models.keypoint_start`), ``z_start``
(the image network's latent) and ``Ep(world3d)``, each with a rotation (predicted, or the Procrustes
alignment of its decoded pose to the 3D cue) and a closed-form translation; the one with the lowest
full energy (2D and 3D terms) is refined.

Speed: one call of the prior's decoder at batch 1 costs milliseconds of framework overhead on a CPU,
more than the whole rest of an Adam step. The fit therefore optimises against the decoder's
first-order expansion ``P0 + J (z - z_lin)`` (J from one batched finite difference) re-expanded every
``relinearize_every`` steps, with the energy's gradient in closed form (autograd only for clips);
the result is always decoded exactly, and a refinement that does not lower the exact energy is
discarded. Measured on the validation poses this is as accurate as Adam through the exact decoder.

Clips (``temporal=True``): every frame is refined on its own first, then the whole clip together with
the smoothness term at a smaller step size (``temporal_steps``, ``temporal_lr``).
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nlrd.checkpoint import build_checked, load_checkpoint, model_config
from nlrd.data.paths import REPO_ROOT
from nlrd.fit.geometry import (
    BONE_GROUP_NAMES,
    MIN_DEPTH_MM,
    ancestor_matrix,
    bone_groups,
    default_focal,
    kabsch,
    project,
    solve_translation,
    torso_normal,
)
from nlrd.models.keypoint_start import KeypointStartConfig, KeypointStartNet, keypoint_box, keypoint_features, prior_fingerprint
from nlrd.priors import PosePrior, config_from_dict
from nlrd.skeleton import Skeleton

START_CHECKPOINT = REPO_ROOT / "checkpoints" / "keypoint_start.safetensors"
START_STAGE = "keypoint_start"


@dataclass
class FitConfig:
    """Settings of :class:`PoseFitter` (weights are per person; the 2D term lies in [0, 1)).

    Attributes:
        steps: Adam steps of the refinement (0: the best start only).
        lr: Adam step size for z and the rotation (radians-ish); the other unknowns scale it by
            ``lr_scale``.
        robust_sigma: Geman-McClure scale of the 2D error as a fraction of the keypoint box size.
        w_2d, w_world3d, w_zstart: weights of the reprojection, the world3d cue and the Dp(z_start) cue.
        cue_unit_mm: the 3D cues' Charbonnier unit.
        w_start: weight of |z - z_start_chosen|^2, a pull towards the chosen start (the prior is flat
            inside the box, so without it the refinement fits the keypoints' noise with the latent).
        scale_prior, scale_std: the person's size relative to the canonical skeleton, a log-normal
            prior (2D keypoints cannot tell size from distance; only a 3D cue or this prior can).
        bone_std: std of log bone-group length factors around 1.
        per_person_scale: fit s (else s = scale_prior). bone_groups: fit per-group bone lengths.
        temporal: weight of the smoothness term when ``fit(..., temporal=True)``.
        temporal_steps, temporal_lr: clips: after ``steps`` steps per frame, this many Adam steps of
            the whole clip with the smoothness term, at this step size.
        focal: focal length in px for every call (None: max(H, W), or the ``focal`` argument of fit).
        min_keypoints: a person needs at least this many joints with conf > 0.
        encode_world3d: also start from Ep(world3d) (always without a start network). The start network
            reads the cue too, and on the synthetic benchmark this candidate changes little, but on real
            photos the start network is less stable than the prior's own encoder (8 copies of one photo
            through MediaPipe: fitted joints 36 mm apart without it, 7 mm with it).
        linearize: optimise against the linearised decoder (see the module doc); False: call the exact
            decoder with autograd at every step (slower, measured no more accurate).
        numpy_steps: the refinement against the linearised decoder in numpy (float64) with the gradient
            in closed form: at batch 1 torch's per-operation overhead is most of a step (about 1.2 ms a
            step against 0.2), and a clip's smoothness steps went through autograd; False: torch.
        relinearize_every: steps between re-expansions of the linearised decoder.
        lr_scale: multipliers of ``lr`` for (u, v) ray, log depth, log scale, log bone factors.
    """

    steps: int = 20
    lr: float = 0.04
    robust_sigma: float = 0.05
    w_2d: float = 1.0
    w_world3d: float = 1.0
    w_zstart: float = 0.1
    cue_unit_mm: float = 100.0
    w_start: float = 0.1
    scale_prior: float = 1.05
    scale_std: float = 0.15
    bone_std: float = 0.06
    w_prior: float = 0.01
    per_person_scale: bool = True
    bone_groups: bool = True
    temporal: float = 1.0
    temporal_steps: int = 100
    temporal_lr: float = 0.01
    focal: float | None = None
    min_keypoints: int = 4
    encode_world3d: bool = True
    linearize: bool = True
    numpy_steps: bool = True
    relinearize_every: int = 20
    lr_scale: tuple[float, float, float, float] = (0.05, 0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        positive = ("lr", "temporal_lr", "robust_sigma", "cue_unit_mm", "scale_prior", "scale_std", "bone_std",
                    "relinearize_every")  # fmt: skip
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"FitConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("steps", "temporal_steps", "w_2d", "w_world3d", "w_zstart", "w_start", "w_prior", "temporal"):
            if getattr(self, name) < 0:
                raise ValueError(f"FitConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.focal is not None and not self.focal > 0:
            raise ValueError(f"FitConfig.focal must be None or > 0 px, got {self.focal!r}")
        if len(self.lr_scale) != 4:
            raise ValueError(f"FitConfig.lr_scale needs 4 multipliers (uv, log depth, log scale, log bones), "
                             f"got {self.lr_scale!r}")  # fmt: skip


@dataclass
class FitResult:
    """The fit of B people (numpy, float32 unless stated).

    Attributes:
        joints3d: (B, J, 3) mm root-relative camera frame: the fitted pose at the person's own size
            (scale and bone-group lengths applied).
        joints3d_canonical: (B, J, 3) mm the same pose with the canonical bone lengths (scale 1), for
            protocols that score with ground-truth bone lengths.
        z: (B, D) the pose latent in [-1, 1]. rotation: (B, 3, 3) applied to Dp(z) (column vectors).
        translation: (B, 3) mm, the root in the camera frame. scale: (B,) the size factor.
        bone_factors: (B, G) length factors of the bone groups :data:`BONE_GROUP_NAMES`.
        joints2d: (B, J, 2) px, the reprojection of the fitted joints.
        loss: (B,) the final energy. facing: (B,) cosine between the chest direction and the
            direction towards the camera (> 0: the torso faces the camera).
        start_source: (B,) str, which start won (``"net"``, ``"net+cue_rotation"``, ``"z_start"``,
            ``"encoded_world3d"``, ``"mean_pose"``).
    """

    joints3d: np.ndarray
    joints3d_canonical: np.ndarray
    z: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    scale: np.ndarray
    bone_factors: np.ndarray
    joints2d: np.ndarray
    loss: np.ndarray
    facing: np.ndarray
    start_source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=object))


def torso_faces_camera(joints3d: np.ndarray, skeleton: Skeleton | None = None) -> np.ndarray:
    """Whether each torso faces the camera: (..., J, 3) mm camera frame -> (...,) bool.

    The chest direction is ``lateral x up`` from the hips and shoulders (see
    :func:`nlrd.fit.geometry.torso_normal`); it faces the camera when it points towards it (negative z).
    Two poses disagree on front/back exactly when these differ.
    """
    return torso_facing(joints3d, skeleton) > 0


def torso_facing(joints3d: np.ndarray, skeleton: Skeleton | None = None) -> np.ndarray:
    """(..., J, 3) mm camera frame -> (...,) cosine between the chest direction and the direction to the camera."""
    from nlrd.skeleton import H36M_17

    sk = skeleton or H36M_17
    arr = np.asarray(joints3d, dtype=np.float64)
    if arr.ndim < 2 or arr.shape[-2:] != (sk.num_joints, 3):
        raise ValueError(f"torso_faces_camera: expected (..., {sk.num_joints}, 3) joints in mm, got {arr.shape}")
    lead = arr.shape[:-2]
    n = torso_normal(torch.from_numpy(arr.reshape(-1, sk.num_joints, 3)), sk)
    return (-n[:, 2]).numpy().reshape(lead)


def load_start_net(path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> KeypointStartNet:
    """The start network from ``path`` (default: the shipped checkpoints/keypoint_start.safetensors).

    The returned network's ``prior_fingerprint`` names the pose prior it was trained against.
    """
    ck = load_checkpoint(Path(path) if path is not None else START_CHECKPOINT, expected_stage=START_STAGE)
    cfg = config_from_dict(KeypointStartConfig, model_config(ck))
    net = build_checked(ck, "net.", lambda: KeypointStartNet(cfg))  # checked against the tensors before allocating
    prior = (ck.meta.get("extra") or {}).get("pose_prior")
    fp = prior.get("fingerprint") if isinstance(prior, dict) else None
    if not isinstance(fp, str):
        raise ValueError(f"{ck.path}: metadata has no extra.pose_prior.fingerprint (which pose prior was it trained against?)")
    net.prior_fingerprint = fp
    return net.to(device).eval()


class _Consts:
    """The config's numbers as 0-dim float32 tensors: ``tensor * python_float`` wraps the float into a fresh
    tensor on every call (four extra framework ops), which dominates a batch-1 step."""

    def __init__(self, cfg: FitConfig, num_joints: int, device: torch.device) -> None:
        def c(x: float) -> torch.Tensor:
            return torch.tensor(float(x), dtype=torch.float32, device=device)

        self.sigma2 = c(cfg.robust_sigma**2)
        self.inv_unit2 = c(1.0 / cfg.cue_unit_mm**2)
        self.one = c(1.0)
        self.w_world = c(cfg.w_world3d / num_joints)
        self.w_zstart = c(cfg.w_zstart / num_joints)
        self.n_joints = c(num_joints)
        self.w_start = c(cfg.w_start)
        self.log_scale_prior = c(math.log(cfg.scale_prior))
        self.w_scale = c(0.5 * cfg.w_prior / cfg.scale_std**2)
        self.w_bones = c(0.5 * cfg.w_prior / cfg.bone_std**2)
        self.w_temporal = c(cfg.temporal / num_joints)
        self.mm = c(1000.0)
        self.two = c(2.0)
        self.w_world_unit2 = c(cfg.w_world3d / num_joints / cfg.cue_unit_mm**2)
        self.w_start2 = c(2.0 * cfg.w_start)
        self.w_scale2 = c(cfg.w_prior / cfg.scale_std**2)
        self.w_bones2 = c(cfg.w_prior / cfg.bone_std**2)


@dataclass
class _Data:
    """One batch's observations as float32 tensors, with what the energy needs precomputed.

    kp (B, J, 2) px, conf (B, J), focal (B,) px, principal (B, 2) px, box (B,) px; kp_n (B, J, 2) the
    keypoints in normalised image coordinates ((kp - c) / f); w2d (B, J) = w_2d * conf / sum(conf);
    inv_box2 (B, 1) = (f / box)^2, so the normalised residual squared times it is (px / box)^2;
    world (B, J, 3) mm and gpose (B, J, 3) mm = Dp(z_start) or None; z_start (B, D) or None.
    """

    kp: torch.Tensor
    conf: torch.Tensor
    focal: torch.Tensor
    principal: torch.Tensor
    box: torch.Tensor
    kp_n: torch.Tensor
    w2d: torch.Tensor
    inv_box2: torch.Tensor
    world: torch.Tensor | None
    gpose: torch.Tensor | None
    z_start: torch.Tensor | None
    temporal: bool
    g2d: torch.Tensor | None = None  # (B, J) 2 * sigma^2 * w2d * inv_box2, for the closed-form gradient

    def repeat(self, k: int) -> _Data:
        """The batch repeated k times (candidate-major: row c * B + b is candidate c of person b), not temporal."""

        def rep(t: torch.Tensor | None) -> Any:
            return None if t is None else t.repeat(k, *([1] * (t.ndim - 1)))

        vals = {f.name: rep(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name not in ("temporal", "g2d")}
        return _Data(**vals, temporal=False)


@dataclass
class _State:
    """The unknowns of B people: z (B, D), rot (B, 3, 3), uv (B, 2) the root's ray (x/z, y/z), log_d (B,) log
    of the root depth in metres, log_s (B,) log scale, log_g (B, G) log bone-group factors."""

    z: torch.Tensor
    rot: torch.Tensor
    uv: torch.Tensor
    log_d: torch.Tensor
    log_s: torch.Tensor
    log_g: torch.Tensor

    def _map(self, fn: Any) -> _State:
        return _State(*(fn(getattr(self, f.name)) for f in dataclasses.fields(self)))

    def clone(self) -> _State:
        return self._map(lambda t: t.detach().clone())

    def take(self, rows: torch.Tensor) -> _State:
        return self._map(lambda t: t[rows])

    @staticmethod
    def where(mask: torch.Tensor, a: _State, b: _State) -> _State:
        """Rows of ``a`` where ``mask`` (B,) else of ``b``."""
        pick = lambda x, y: torch.where(mask.view(-1, *([1] * (x.ndim - 1))), x, y)  # noqa: E731
        return _State(*(pick(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)))


def _translation(uv: torch.Tensor, log_d: torch.Tensor, k: _Consts) -> torch.Tensor:
    """(B, 2) ray and (B,) log depth (m) -> (B, 3) mm."""
    return (torch.exp(log_d) * k.mm)[:, None] * torch.cat([uv, torch.ones_like(uv[:, :1])], dim=-1)


@dataclass
class _Linearized:
    """The decoder's first-order expansion at z_lin folded with the bone groups: before scale and rotation,
    the own-size pose is ``sum_g f_g (base_g + basis_g (z - z_lin))`` with base (B, G', J, 3) and basis
    (B, G' J 3, D) (G' = 1 without bone groups). A few tensor ops per step instead of the whole decoder."""

    z_lin: torch.Tensor
    base: torch.Tensor
    basis: torch.Tensor
    base_flat: torch.Tensor = field(init=False)  # (B, G' J 3, 1)
    basis_t: torch.Tensor = field(init=False)  # (B, D, G' J 3), for the gradient

    def __post_init__(self) -> None:
        self.base_flat = self.base.reshape(self.base.shape[0], -1, 1)
        self.basis_t = self.basis.transpose(1, 2).contiguous()

    def pose(self, z: torch.Tensor, log_s: torch.Tensor, log_g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(own-size pose (B, J, 3) mm before rotation, its canonical version (B, J, 3) = Dp(z) approx.)"""
        b, g, j, _ = self.base.shape
        parts = self.base + (self.basis @ (z - self.z_lin)[:, :, None]).view(b, g, j, 3)
        factors = torch.exp(log_g[:, :g] + log_s[:, None]) if g > 1 else torch.exp(log_s)[:, None]
        own = (factors[:, None, :] @ parts.view(b, g, j * 3)).view(b, j, 3)
        return own, parts.sum(1) if g > 1 else parts[:, 0]


class PoseFitter:
    """Fits a :class:`~nlrd.priors.PosePrior` to 2D keypoints (and optional 3D cues); see the module doc.

    Quick start::

        fitter = PoseFitter.from_pretrained()
        res = fitter.fit(joints2d, conf, (480, 640), world3d=mediapipe_world_mm)
        res.joints3d            # (B, 17, 3) mm
    """

    def __init__(self, pose_prior: PosePrior, start_net: KeypointStartNet | None = None, config: FitConfig | None = None) -> None:
        """Build a fitter.

        Args:
            pose_prior: the prior to fit (any latent size and skeleton; only its encoder and decoder are
                called, as black boxes).
            start_net: the learned start; it must have been trained against this very prior (its
                ``prior_fingerprint``), else ValueError. None: start from the cues or the mean pose.
            config: the fit's settings (defaults if None).
        """
        self.prior = pose_prior
        self.config = config or FitConfig()
        self.skeleton: Skeleton = pose_prior.skeleton
        self.device = pose_prior.device
        self.fingerprint = prior_fingerprint(pose_prior.encoder, pose_prior.decoder)
        if start_net is not None:
            if start_net.prior_fingerprint != self.fingerprint:
                raise ValueError(
                    f"the start network was trained against pose prior {start_net.prior_fingerprint!r}, but this "
                    f"pose prior is {self.fingerprint!r}; retrain it (training/train_keypoint_start.py) for this prior"
                )
            if start_net.cfg.num_joints != self.skeleton.num_joints or start_net.cfg.latent_dim != pose_prior.latent_dim:
                raise ValueError("the start network's joint count or latent size does not match the pose prior")
            start_net = start_net.to(self.device).eval()
        self.start_net = start_net
        self._j = self.skeleton.num_joints
        self._dim = pose_prior.latent_dim
        parents = list(self.skeleton.parents)
        parents[0] = 0
        self._parents = torch.as_tensor(parents, device=self.device)
        self._ancestors = torch.as_tensor(ancestor_matrix(self.skeleton), device=self.device)
        self._groups = torch.as_tensor(bone_groups(self.skeleton), device=self.device)
        self._ngroups = len(BONE_GROUP_NAMES)
        # (G, J, J): the ancestor matrix restricted to each group's bones (its columns), for the linearised decoder.
        onehot = torch.nn.functional.one_hot(self._groups, self._ngroups).T.to(self._ancestors)
        self._group_ancestors = self._ancestors[None] * onehot[:, None, :]
        # (3, 9): w @ basis is [w]x flattened (row-major), the cross-product matrix of w.
        basis = torch.zeros(3, 3, 3)
        basis[0, 2, 1], basis[0, 1, 2] = 1.0, -1.0
        basis[1, 0, 2], basis[1, 2, 0] = 1.0, -1.0
        basis[2, 1, 0], basis[2, 0, 1] = 1.0, -1.0
        self._skew_basis = basis.view(3, 9).to(self.device)

    @classmethod
    def from_pretrained(
        cls,
        prior_path: str | os.PathLike[str] | None = None,
        start_path: str | os.PathLike[str] | None = None,
        config: FitConfig | None = None,
        device: str | torch.device = "cpu",
        use_start_net: bool = True,
    ) -> PoseFitter:
        """The shipped pose prior and start network (or the given files); ``use_start_net=False`` fits without it."""
        prior = PosePrior.from_pretrained(prior_path, device=device)
        net = load_start_net(start_path, device=prior.device) if use_start_net else None
        return cls(prior, net, config)

    # ------------------------------------------------------------------------------------------- inputs
    def _array(self, x: Any, shape: tuple[int | None, ...], what: str) -> np.ndarray:
        try:
            arr = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: expected a numeric array of shape {_fmt(shape)}, got {type(x).__name__} ({exc})") from None
        if arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape, strict=True)):
            raise ValueError(f"{what}: expected shape {_fmt(shape)}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}: contains NaN or infinite values")
        return arr

    def _prepare(self, joints2d: Any, conf: Any, image_size: Any, world3d: Any, z_start: Any, focal: Any,
                 temporal: bool, decode_start: bool = True) -> _Data:  # fmt: skip
        """Validate the inputs (ValueError naming what was expected) and precompute the batch's tensors.

        ``decode_start=False`` leaves ``gpose`` = Dp(z_start) to the caller (:meth:`fit` takes it from the
        start candidates' decoder call: at batch 1 each call costs milliseconds)."""
        cfg, j = self.config, self._j
        kp = self._array(joints2d, (None, j, 2), "joints2d (B, J, 2) px")
        b = kp.shape[0]
        if b == 0:
            raise ValueError("joints2d: empty batch (B = 0); pass at least one person")
        c = self._array(conf, (b, j), "conf (B, J)")
        if (c < 0).any() or (c > 1).any():
            raise ValueError(f"conf: values must lie in [0, 1], got min {c.min():.3g}, max {c.max():.3g}")
        few = np.flatnonzero((c > 0).sum(1) < cfg.min_keypoints)
        if few.size:
            raise ValueError(f"person(s) {few[:10].tolist()} have fewer than {cfg.min_keypoints} keypoints "
                             "with conf > 0; drop them or give more keypoints")  # fmt: skip
        size = self._array(image_size, (2,) if np.ndim(image_size) == 1 else (b, 2), "image_size (H, W) or (B, 2) px")
        size = np.broadcast_to(size, (b, 2))
        if (size <= 0).any():
            raise ValueError(f"image_size: height and width must be > 0, got {size[0].tolist()}")
        f = focal if focal is not None else cfg.focal
        if f is None:
            fv = np.array([default_focal(h, w) for h, w in size], dtype=np.float32)
        else:
            fv = np.broadcast_to(self._array(f, (None,) * np.ndim(f), "focal px"), (b,)).astype(np.float32)
            if (fv <= 0).any():
                raise ValueError(f"focal: must be > 0 px, got {fv.min()}")
        world = None if world3d is None else self._array(world3d, (b, j, 3), "world3d (B, J, 3) mm")
        zs = None
        if z_start is not None:
            zs = self._array(z_start, (b, self._dim), f"z_start (B, {self._dim})")
            if np.abs(zs).max() > 1.0 + 1e-3:
                raise ValueError(f"z_start: latents must lie in [-1, 1], got max |z| = {np.abs(zs).max():.3g}")
            zs = np.clip(zs, -1.0, 1.0)

        def t(a: np.ndarray | None) -> Any:
            return None if a is None else torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)

        kp_t, conf_t, focal_t = t(kp), t(c), t(fv)
        principal = t(size[:, ::-1] / 2.0)
        _, box = keypoint_box(kp_t, conf_t)
        world_t = None if world is None else t(world - world[:, :1])
        z_t = t(zs)
        with torch.no_grad():
            gpose = None if z_t is None or not decode_start else self.prior.decoder(z_t)
        w2d = cfg.w_2d * conf_t / conf_t.sum(-1, keepdim=True)
        inv_box2 = (focal_t / box)[:, None] ** 2
        return _Data(kp=kp_t, conf=conf_t, focal=focal_t, principal=principal, box=box,
                     kp_n=(kp_t - principal[:, None]) / focal_t[:, None, None], w2d=w2d, inv_box2=inv_box2,
                     world=world_t, gpose=gpose, z_start=z_t, temporal=temporal,
                     g2d=2.0 * cfg.robust_sigma**2 * w2d * inv_box2)  # fmt: skip

    # ------------------------------------------------------------------------------------------- energy
    def _own(self, pose: torch.Tensor, log_s: torch.Tensor, log_g: torch.Tensor) -> torch.Tensor:
        """Canonical Dp(z) (B, J, 3) -> the person's own size (scale, bone groups), not rotated: (B, J, 3) mm."""
        if not self.config.bone_groups:
            return torch.exp(log_s)[:, None, None] * pose
        off = (pose - pose[:, self._parents]) * torch.exp(log_g)[:, self._groups, None]  # the root's offset is zero
        return torch.exp(log_s)[:, None, None] * torch.einsum("jk,bkc->bjc", self._ancestors, off)

    def _energy(self, data: _Data, k: _Consts, own: torch.Tensor, canon: torch.Tensor | None, t: torch.Tensor,
                z: torch.Tensor, log_s: torch.Tensor, log_g: torch.Tensor, z0: torch.Tensor | None) -> torch.Tensor:  # fmt: skip
        """Per-person energy (B,) (see the module doc).

        Args:
            own: (B, J, 3) mm root-relative camera-frame pose at the person's size (Q of the module doc).
            canon: (B, J, 3) mm the canonical pose rotated (Dp(z) @ R.T), read for the z_start cue only.
            t: (B, 3) mm the root. z, log_s, log_g: the unknowns of the priors.
            z0: (B, D) the chosen start's latent for the ``w_start`` pull (None: no pull).
        """
        cfg = self.config
        x = own + t[:, None]
        res = x[..., :2] / x[..., 2:].clamp_min(MIN_DEPTH_MM) - data.kp_n
        r2 = (res * res).sum(-1) * data.inv_box2
        total = (data.w2d * (r2 / (r2 + k.sigma2))).sum(-1)
        if data.world is not None:
            d = own - data.world
            total = total + k.w_world * (torch.sqrt((d * d).sum(-1) * k.inv_unit2 + k.one).sum(-1) - k.n_joints)
        if data.gpose is not None and canon is not None:
            d = canon - data.gpose
            total = total + k.w_zstart * (torch.sqrt((d * d).sum(-1) * k.inv_unit2 + k.one).sum(-1) - k.n_joints)
        if z0 is not None and cfg.w_start > 0:
            dz = z - z0
            total = total + k.w_start * (dz * dz).sum(-1)
        if cfg.per_person_scale:
            ds = log_s - k.log_scale_prior
            total = total + k.w_scale * ds * ds
        if cfg.bone_groups:
            total = total + k.w_bones * (log_g * log_g).sum(-1)
        if data.temporal and x.shape[0] >= 3 and cfg.temporal > 0:
            acc = x[2:] - 2 * x[1:-1] + x[:-2]
            et = (acc * acc).sum((-1, -2)) * k.inv_unit2
            total = total + k.w_temporal * torch.nn.functional.pad(et, (1, 1))
        return total

    def _exact(self, data: _Data, k: _Consts, st: _State, z0: torch.Tensor | None, pose: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
        """Energy with the exact decoder (``pose`` = Dp(st.z) if already decoded):
        (energy (B,), own-size pose (B, J, 3), canonical rotated pose (B, J, 3), translation (B, 3))."""
        pose = self.prior.decoder(st.z) if pose is None else pose
        rot_t = st.rot.transpose(1, 2)
        own = self._own(pose, st.log_s, st.log_g) @ rot_t
        canon = pose @ rot_t
        t = _translation(st.uv, st.log_d, k)
        return self._energy(data, k, own, canon, t, st.z, st.log_s, st.log_g, z0), own, canon, t

    # ------------------------------------------------------------------------------------------- starts
    @torch.no_grad()
    def _net_start(self, data: _Data, with_world: bool) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.start_net is not None
        feats = keypoint_features(data.kp, data.conf, data.focal, data.principal, data.world if with_world else None,
                                  self.start_net.cfg.world_unit_mm)  # fmt: skip
        return self.start_net(feats)

    @torch.no_grad()
    def _candidates(self, data: _Data) -> tuple[list[str], torch.Tensor, torch.Tensor, torch.Tensor]:
        """Start candidates: names (K), z (K B, D), rotation (K B, 3, 3), decoded Dp(z) (K B, J, 3), candidate-major.

        A candidate without its own rotation gets the Procrustes alignment of its decoded pose to the 3D
        cue (the prior's own orientation without a cue). All are decoded in one batched call: at small
        batches each decoder call costs milliseconds.
        """
        b = data.kp.shape[0]
        cands: list[tuple[str, torch.Tensor, torch.Tensor | None]] = []
        if self.start_net is not None:
            z, rot = self._net_start(data, with_world=data.world is not None)
            cands.append(("net", z, rot))
            if data.world is not None:
                cands.append(("net+cue_rotation", z, None))
        if data.z_start is not None:
            cands.append(("z_start", data.z_start, None))
        if data.world is not None and (self.config.encode_world3d or not cands):
            cands.append(("encoded_world3d", self.prior.encoder(data.world), None))
        if not cands:
            # No start network and no cue: the mean pose, turned to eight azimuths about the camera's vertical.
            zero = torch.zeros(b, self._dim, device=self.device)
            for i in range(8):
                a = 2 * math.pi * i / 8
                ry = torch.tensor([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
                cands.append(("mean_pose", zero, ry.to(self.device).expand(b, 3, 3)))
        z = torch.cat([c[1] for c in cands])
        pose = self.prior.decoder(z)
        eye = torch.eye(3, device=self.device).expand(b, 3, 3)
        rots = [eye if rot is None else rot for _, _, rot in cands]
        align = [i for i, (_, _, rot) in enumerate(cands) if rot is None]
        if align and data.world is not None:  # all Procrustes alignments in one batched call
            poses = torch.cat([pose[i * b : (i + 1) * b] for i in align])
            aligned = kabsch(poses, data.world.repeat(len(align), 1, 1))[0]
            for n, i in enumerate(align):
                rots[i] = aligned[n * b : (n + 1) * b]
        return [c[0] for c in cands], z, torch.cat(rots), pose

    @torch.no_grad()
    def _start_state(self, data: _Data, pose: torch.Tensor, z: torch.Tensor, rot: torch.Tensor) -> _State:
        """Unknowns for N starts with canonical ``pose`` (N, J, 3) = Dp(z), ``z`` (N, D), ``rot`` (N, 3, 3): the
        scale from the 3D cue (else the prior's), bone factors 1, the translation in closed form."""
        cfg = self.config
        n = pose.shape[0]
        rotated = pose @ rot.transpose(1, 2)
        if data.world is not None and cfg.per_person_scale:
            scale = kabsch(rotated, data.world)[1].clamp(0.7, 1.5)
        else:
            scale = torch.full((n,), cfg.scale_prior, device=self.device)
        t = solve_translation(scale[:, None, None] * rotated, data.kp, data.conf, data.focal, data.principal)
        return _State(z=z.clone(), rot=rot.clone(), uv=t[:, :2] / t[:, 2:], log_d=torch.log(t[:, 2] / 1000.0),
                      log_s=torch.log(scale), log_g=torch.zeros(n, self._ngroups, device=self.device))  # fmt: skip

    # ------------------------------------------------------------------------------------------- public
    def learned_start(self, joints2d: Any, conf: Any, image_size: Any, *, world3d: Any = None, focal: Any = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """The start network alone: z (B, D), rotation (B, 3, 3), canonical joints (B, J, 3) mm = Dp(z) @ R.T.

        Same inputs as :meth:`fit`. ValueError without a start network.
        """
        if self.start_net is None:
            raise ValueError("this PoseFitter has no start network")
        data = self._prepare(joints2d, conf, image_size, world3d, None, focal, False)
        z, rot = self._net_start(data, with_world=world3d is not None)
        with torch.no_grad():
            joints = self.prior.decoder(z) @ rot.transpose(1, 2)
        return z.cpu().numpy(), rot.cpu().numpy(), joints.cpu().numpy()

    def fit(
        self,
        joints2d: Any,
        conf: Any,
        image_size: Any,
        *,
        world3d: Any = None,
        z_start: Any = None,
        temporal: bool = False,
        focal: Any = None,
    ) -> FitResult:
        """Fit the prior to B people (or the B frames of one clip with ``temporal=True``).

        Args:
            joints2d: (B, J, 2) px in the image (x right, y down from the top-left corner).
            conf: (B, J) in [0, 1]; 0 marks a missing joint, whose coordinates are ignored.
            image_size: (H, W) px, or (B, 2) per person; the principal point is the image centre.
            world3d: optional (B, J, 3) mm root-relative camera-frame 3D cue (e.g. MediaPipe world
                landmarks converted to this skeleton and to mm).
            z_start: optional (B, D) latents in [-1, 1] from the image network G.
            temporal: the rows are consecutive frames of one clip: add the smoothness term.
            focal: px, scalar or (B,); default ``config.focal``, else max(H, W).

        Returns:
            :class:`FitResult`.

        Raises:
            ValueError: wrong shapes, NaN or infinite values, B = 0, conf outside [0, 1], a person with
                fewer than ``config.min_keypoints`` confident joints, z_start outside [-1, 1].
        """
        data = self._prepare(joints2d, conf, image_size, world3d, z_start, focal, temporal, decode_start=False)
        k = _Consts(self.config, self._j, self.device)
        b = data.kp.shape[0]
        with torch.no_grad():
            names, zc, rc, pc = self._candidates(data)
            if data.z_start is not None:  # Dp(z_start), the cue, from the candidates' decoder call
                i = names.index("z_start")
                data = dataclasses.replace(data, gpose=pc[i * b : (i + 1) * b].clone())
            n_cand = len(names)
            rep = data.repeat(n_cand)
            cand = self._start_state(rep, pc, zc, rc)
            energy = self._exact(rep, k, cand, None, pc)[0]
            best = energy.view(n_cand, b).argmin(0)
            rows = best * b + torch.arange(b, device=self.device)
            start, start_energy = cand.take(rows), energy[rows]
        z0 = start.z.clone()
        st = start
        if self.config.steps > 0:
            # Every frame (person) on its own first; a clip then smooths from there at a smaller step
            # size (from independent starts, Adam's first, sign-like steps on the stiff coupling term
            # throw the frames apart).
            st = self._refine(dataclasses.replace(data, temporal=False), k, st, z0, self.config.steps, self.config.lr)
        if temporal and self.config.temporal_steps > 0 and b >= 3:
            st = self._refine(data, k, st, z0, self.config.temporal_steps, self.config.temporal_lr)
        with torch.no_grad():
            energy, own, canon, t = self._exact(data, k, st, z0)
            if self.config.steps > 0 and not temporal:
                # Keep the start where the refinement did not lower the exact energy (it optimised an
                # approximation of the decoder). The start's energy has no pull term (z = z0). With the
                # temporal term a frame may rightly trade its own energy for its neighbours'.
                worse = energy > start_energy
                if worse.any():
                    st = _State.where(worse, start, st)
                    energy, own, canon, t = self._exact(data, k, st, z0)
        return self._result(data, st, own, canon, t, energy, [names[i] for i in best.tolist()])

    def _refine(self, data: _Data, k: _Consts, start: _State, z0: torch.Tensor, steps: int, base_lr: float) -> _State:
        """Adam on all unknowns from ``start``; returns the refined state.

        The unknowns live in one flat tensor (B, n) = [z | w | uv | log_d | log_s | log_g] so an Adam step is a
        handful of tensor ops. The rotation lives on its manifold: each step differentiates at ``(I + [w]x) R``
        with w = 0 (the gradient of any rotation parametrisation there) and applies Adam's step in w as
        ``R <- exp(-[step]x) R`` (to second order, orthonormalised at the end); z is projected back into the
        box [-1, 1] after each step.
        """
        cfg = self.config
        if cfg.linearize and cfg.numpy_steps:
            return self._refine_numpy(data, start, z0, steps, base_lr)
        b, d = start.z.shape
        ng = start.log_g.shape[1]
        flat = torch.cat([start.z, torch.zeros(b, 3, device=self.device), start.uv, start.log_d[:, None],
                          start.log_s[:, None], start.log_g], dim=1)  # fmt: skip
        widths = [d, 3, 2, 1, 1, ng]
        scales = [1.0, 1.0, cfg.lr_scale[0], cfg.lr_scale[1],
                  cfg.lr_scale[2] if cfg.per_person_scale else 0.0, cfg.lr_scale[3] if cfg.bone_groups else 0.0]  # fmt: skip
        lr = torch.cat([torch.full((n,), base_lr * s, device=self.device) for n, s in zip(widths, scales, strict=True)])
        beta1, beta2 = 0.9, 0.999
        # Adam's bias corrections folded into one step-size vector per step (no Python floats in the loop).
        lr_steps = [lr * (math.sqrt(1 - beta2 ** (i + 1)) / (1 - beta1 ** (i + 1))) for i in range(steps)]
        m = torch.zeros_like(flat)
        v = torch.zeros_like(flat)
        linear = cfg.linearize
        lin: _Linearized | None = None
        rot_t = start.rot.transpose(1, 2).contiguous()  # R.T, so poses rotate as pose @ rot_t
        eye = torch.eye(3, device=self.device)
        half = torch.tensor(0.5, device=self.device)
        z, _, uv, log_d, log_s, log_g = flat.split(widths, dim=1)  # views: they follow the in-place updates
        for step in range(steps):
            if linear and step % max(cfg.relinearize_every, 1) == 0:
                lin = self._linearize(z.clone())
            if lin is not None and not data.temporal:
                grad = self._linear_energy_grad(data, k, lin, z, rot_t, uv, log_d[:, 0], log_s[:, 0], log_g, z0)[1]
            else:
                grad = self._autograd_energy_grad(data, k, lin, flat, widths, rot_t, z0)
            with torch.no_grad():
                m.lerp_(grad, 1 - beta1)
                v.lerp_(grad * grad, 1 - beta2)
                delta = m / v.sqrt().clamp_min_(1e-8) * lr_steps[step]
                flat.sub_(delta)
                z.clamp_(-1.0, 1.0)
                # The rotation's step goes into R; the w slot goes back to 0, where the gradient is taken
                # (the autograd path reads it: a stale w rotated every pose once more).
                flat[:, d : d + 3] = 0.0
                # R <- exp(-[dw]x) R, i.e. R.T <- R.T exp([dw]x), to second order.
                kx = (delta[:, d : d + 3] @ self._skew_basis).view(b, 3, 3)
                rot_t = rot_t @ (eye + kx + half * (kx @ kx))
        rot = _orthonormalise(rot_t.transpose(1, 2))
        return _State(z=z.clone(), rot=rot, uv=uv.clone(), log_d=log_d[:, 0].clone(), log_s=log_s[:, 0].clone(),
                      log_g=log_g.clone())  # fmt: skip

    def _refine_numpy(self, data: _Data, start: _State, z0: torch.Tensor, steps: int, base_lr: float) -> _State:
        """:meth:`_refine` against the linearised decoder in float64 numpy, with the gradient in closed form
        (the clips' smoothness term included).

        The same Adam steps as :meth:`_refine` (tests/test_fit.py compares the two); each step is a few
        dozen numpy operations on small arrays, where torch's dispatch (and for clips, autograd's graph)
        costs more than the arithmetic.
        """
        cfg = self.config
        f64 = lambda t: None if t is None else t.detach().cpu().numpy().astype(np.float64)  # noqa: E731
        b, d = start.z.shape
        ng = start.log_g.shape[1]
        flat = np.concatenate([f64(start.z), np.zeros((b, 3)), f64(start.uv), f64(start.log_d)[:, None],
                               f64(start.log_s)[:, None], f64(start.log_g)], axis=1)  # fmt: skip
        widths = [d, 3, 2, 1, 1, ng]
        scales = [1.0, 1.0, cfg.lr_scale[0], cfg.lr_scale[1],
                  cfg.lr_scale[2] if cfg.per_person_scale else 0.0, cfg.lr_scale[3] if cfg.bone_groups else 0.0]  # fmt: skip
        lr = np.concatenate([np.full(n, base_lr * sc) for n, sc in zip(widths, scales, strict=True)])
        beta1, beta2 = 0.9, 0.999
        m = np.zeros_like(flat)
        v = np.zeros_like(flat)
        rot_t = f64(start.rot).transpose(0, 2, 1).copy()
        skew = f64(self._skew_basis)
        eye = np.eye(3)
        z0n = f64(z0) if z0 is not None and cfg.w_start > 0 else None
        smooth = data.temporal and b >= 3 and cfg.temporal > 0
        obs = {"kp_n": f64(data.kp_n), "inv_box2": f64(data.inv_box2), "g2d": f64(data.g2d),
               "world": f64(data.world), "gpose": f64(data.gpose), "temporal": smooth}  # fmt: skip
        cut = np.cumsum(widths)[:-1]
        lin: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        for step in range(steps):
            if lin is None or step % max(cfg.relinearize_every, 1) == 0:
                ln = self._linearize(torch.as_tensor(flat[:, :d], dtype=torch.float32, device=self.device))
                lin = (f64(ln.z_lin), f64(ln.base_flat)[..., 0], f64(ln.basis), ln.base.shape[1])
            z, _, uv, log_d, log_s, log_g = np.split(flat, cut, axis=1)
            grad = self._numpy_grad(obs, lin, z, rot_t, uv, log_d[:, 0], log_s[:, 0], log_g, z0n)
            m += (1 - beta1) * (grad - m)
            v += (1 - beta2) * (grad * grad - v)
            corr = math.sqrt(1 - beta2 ** (step + 1)) / (1 - beta1 ** (step + 1))
            delta = m / np.maximum(np.sqrt(v), 1e-8) * (lr * corr)
            flat -= delta
            np.clip(flat[:, :d], -1.0, 1.0, out=flat[:, :d])
            kx = (delta[:, d : d + 3] @ skew).reshape(b, 3, 3)
            rot_t = rot_t @ (eye + kx + 0.5 * (kx @ kx))
        t32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32, device=self.device)  # noqa: E731
        z, _, uv, log_d, log_s, log_g = np.split(flat, cut, axis=1)
        return _State(z=t32(z), rot=_orthonormalise(t32(rot_t.transpose(0, 2, 1))), uv=t32(uv), log_d=t32(log_d[:, 0]),
                      log_s=t32(log_s[:, 0]), log_g=t32(log_g))  # fmt: skip

    def _numpy_grad(self, obs: dict[str, Any], lin: tuple[np.ndarray, np.ndarray, np.ndarray, int],
                    z: np.ndarray, rot_t: np.ndarray, uv: np.ndarray, log_d: np.ndarray, log_s: np.ndarray,
                    log_g: np.ndarray, z0: np.ndarray | None) -> np.ndarray:  # fmt: skip
        """The gradient of :meth:`_linear_energy_grad` (same layout, same formulas) in numpy, (B, n)."""
        cfg = self.config
        z_lin, base, basis, g = lin
        b, j = z.shape[0], self._j
        kp_n, inv_box2, g2d, world, gpose = (obs[n] for n in ("kp_n", "inv_box2", "g2d", "world", "gpose"))
        rot = rot_t.transpose(0, 2, 1)
        parts = (base + (basis @ (z - z_lin)[:, :, None])[..., 0]).reshape(b, g, j * 3)
        fac = np.exp(log_g[:, :g] + log_s[:, None]) if g > 1 else np.exp(log_s)[:, None]
        y = (fac[:, None, :] @ parts).reshape(b, j, 3) @ rot_t
        depth = np.exp(log_d) * 1000.0
        ray = np.concatenate([uv, np.ones((b, 1))], axis=1)
        x = y + (depth[:, None] * ray)[:, None]
        xz = x[..., 2:]
        inv_z = 1.0 / np.maximum(xz, MIN_DEPTH_MM)
        pn = x[..., :2] * inv_z
        res = pn - kp_n
        r2 = (res * res).sum(-1) * inv_box2
        den = 1.0 / (r2 + cfg.robust_sigma**2)
        g_res = (g2d * den * den)[..., None] * res
        g_x = np.concatenate([g_res * inv_z, -(g_res * pn).sum(-1, keepdims=True) * inv_z * (xz > MIN_DEPTH_MM)], axis=-1)
        unit2 = 1.0 / cfg.cue_unit_mm**2
        if obs["temporal"]:
            # E = w / J * unit2 * sum_t |x[t+1] - 2 x[t] + x[t-1]|^2 over the clip's rows: dE/dx = 2 c D^T (D x).
            acc = x[2:] - 2.0 * x[1:-1] + x[:-2]
            g_acc = np.zeros_like(x)
            g_acc[2:] += acc
            g_acc[1:-1] -= 2.0 * acc
            g_acc[:-2] += acc
            g_x = g_x + (2.0 * cfg.temporal / j * unit2) * g_acc
        g_y = g_x
        if world is not None:
            dw = y - world
            g_y = g_y + (cfg.w_world3d / j * unit2 / np.sqrt((dw * dw).sum(-1) * unit2 + 1.0))[..., None] * dw
        g_t = g_x.sum(1)
        g_w = _cross_sum_np(y, g_y)
        g_own = (g_y @ rot).reshape(b, 1, j * 3)
        g_lf = (parts * g_own).sum(-1) * fac
        g_parts = fac[:, :, None] * g_own
        if gpose is not None:
            c = (parts.sum(1) if g > 1 else parts[:, 0]).reshape(b, j, 3) @ rot_t
            dc = c - gpose
            g_c = (cfg.w_zstart / j * unit2 / np.sqrt((dc * dc).sum(-1) * unit2 + 1.0))[..., None] * dc
            g_w = g_w + _cross_sum_np(c, g_c)
            g_parts = g_parts + (g_c @ rot).reshape(b, 1, j * 3)
        g_z = (g_parts.reshape(b, 1, g * j * 3) @ basis)[:, 0]
        if z0 is not None:
            g_z = g_z + 2.0 * cfg.w_start * (z - z0)
        g_logs = g_lf.sum(-1)
        g_logg = g_lf if g > 1 else np.zeros_like(log_g)
        if cfg.per_person_scale:
            g_logs = g_logs + cfg.w_prior / cfg.scale_std**2 * (log_s - math.log(cfg.scale_prior))
        if cfg.bone_groups:
            g_logg = g_logg + cfg.w_prior / cfg.bone_std**2 * log_g
        return np.concatenate([g_z, g_w, depth[:, None] * g_t[:, :2], (depth * (g_t * ray).sum(-1))[:, None],
                               g_logs[:, None], g_logg], axis=1)  # fmt: skip

    def _autograd_energy_grad(self, data: _Data, k: _Consts, lin: _Linearized | None, flat: torch.Tensor,
                              widths: list[int], rot_t: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """Gradient (B, n) of the energy with respect to the flat unknowns [z | w | uv | log_d | log_s | log_g]
        by autograd, for the exact decoder (large batches) or the temporal term."""
        leaf = flat.detach().requires_grad_(True)
        z, w, uv, log_d, log_s, log_g = leaf.split(widths, dim=1)
        if lin is not None:
            own0, canon0 = lin.pose(z, log_s[:, 0], log_g)
        else:
            canon0 = self.prior.decoder(z)
            own0 = self._own(canon0, log_s[:, 0], log_g)
        own = own0 @ rot_t
        own = own + torch.linalg.cross(w[:, None, :].expand_as(own), own, dim=-1)  # (I + [w]x) R y = R y + w x (R y)
        canon = None
        if data.gpose is not None:
            canon = canon0 @ rot_t
            canon = canon + torch.linalg.cross(w[:, None, :].expand_as(canon), canon, dim=-1)
        t = _translation(uv, log_d[:, 0], k)
        energy = self._energy(data, k, own, canon, t, z, log_s[:, 0], log_g, z0)
        (grad,) = torch.autograd.grad(energy.sum(), leaf)
        return grad

    @torch.no_grad()
    def _linear_energy_grad(self, data: _Data, k: _Consts, lin: _Linearized, z: torch.Tensor, rot_t: torch.Tensor,
                            uv: torch.Tensor, log_d: torch.Tensor, log_s: torch.Tensor, log_g: torch.Tensor,
                            z0: torch.Tensor | None, need_energy: bool = False,
                            ) -> tuple[torch.Tensor | None, torch.Tensor]:  # fmt: skip
        """:meth:`_energy` of the linearised decoder (B,) (None unless ``need_energy``) and its gradient (B, n)
        in closed form.

        The same numbers as autograd gives (tests/test_fit.py checks it) in about a quarter of the framework
        ops: at batch 1 a step is all overhead. Gradient layout as the leaves of :meth:`_refine`: z (D), w (3,
        the rotation's tangent at R: dE/dw of E((I + [w]x) R)), uv (2), log_d (1), log_s (1), log_g (G).
        The temporal term is not covered (clips use autograd).
        """
        cfg = self.config
        b, g, j, _ = lin.base.shape
        rot = rot_t.transpose(1, 2)
        parts = torch.baddbmm(lin.base_flat, lin.basis, (z - lin.z_lin)[:, :, None]).view(b, g, j * 3)
        fac = torch.exp(log_g[:, :g] + log_s[:, None]) if g > 1 else torch.exp(log_s)[:, None]  # (B, G')
        y = torch.bmm(torch.bmm(fac[:, None, :], parts).view(b, j, 3), rot_t)  # own-size rotated pose
        depth = torch.exp(log_d) * k.mm
        ray = torch.cat([uv, torch.ones_like(uv[:, :1])], dim=-1)
        x = y + (depth[:, None] * ray)[:, None]
        xz = x[..., 2:]
        inv_z = torch.reciprocal(xz.clamp_min(MIN_DEPTH_MM))
        pn = x[..., :2] * inv_z
        res = pn - data.kp_n
        r2 = (res * res).sum(-1) * data.inv_box2
        den = torch.reciprocal(r2 + k.sigma2)
        energy = (data.w2d * r2 * den).sum(-1) if need_energy else None
        # d/dr2 of r2 / (r2 + s2) = s2 / (r2 + s2)^2; r2 = |res|^2 ib2; res = xy / z - kp_n.
        g_res = (data.g2d * den * den)[..., None] * res
        g_xy = g_res * inv_z
        g_xz = -(g_res * pn).sum(-1, keepdim=True) * inv_z * (xz > MIN_DEPTH_MM)
        g_x = torch.cat([g_xy, g_xz], dim=-1)
        g_y = g_x
        if data.world is not None:
            d = y - data.world
            sq = torch.sqrt((d * d).sum(-1) * k.inv_unit2 + k.one)
            if energy is not None:
                energy = energy + k.w_world * (sq.sum(-1) - k.n_joints)
            g_y = g_y + (k.w_world_unit2 / sq)[..., None] * d
        g_t = g_x.sum(1)
        g_w = self._cross_sum(y, g_y)  # d/dw of E(y + w x y) at w = 0
        g_own = torch.bmm(g_y, rot).view(b, 1, j * 3)
        g_lf = (parts * g_own).sum(-1) * fac  # with respect to the log of each factor
        g_parts = fac[:, :, None] * g_own
        if data.gpose is not None:
            c = torch.bmm((parts.sum(1) if g > 1 else parts[:, 0]).view(b, j, 3), rot_t)
            d = c - data.gpose
            sq = torch.sqrt((d * d).sum(-1) * k.inv_unit2 + k.one)
            if energy is not None:
                energy = energy + k.w_zstart * (sq.sum(-1) - k.n_joints)
            g_c = (k.w_zstart * k.inv_unit2 / sq)[..., None] * d
            g_w = g_w + self._cross_sum(c, g_c)
            g_parts = g_parts + torch.bmm(g_c, rot).view(b, 1, j * 3)
        g_z = torch.bmm(lin.basis_t, g_parts.view(b, g * j * 3, 1))[..., 0]
        if z0 is not None and cfg.w_start > 0:
            dz = z - z0
            if energy is not None:
                energy = energy + k.w_start * (dz * dz).sum(-1)
            g_z = g_z + k.w_start2 * dz
        g_logs = g_lf.sum(-1)
        g_logg = g_lf if g > 1 else torch.zeros_like(log_g)
        if cfg.per_person_scale:
            ds = log_s - k.log_scale_prior
            if energy is not None:
                energy = energy + k.w_scale * ds * ds
            g_logs = g_logs + k.w_scale2 * ds
        if cfg.bone_groups:
            if energy is not None:
                energy = energy + k.w_bones * (log_g * log_g).sum(-1)
            g_logg = g_logg + k.w_bones2 * log_g
        g_uv = depth[:, None] * g_t[:, :2]
        g_logd = depth * (g_t * ray).sum(-1)
        grad = torch.cat([g_z, g_w, g_uv, g_logd[:, None], g_logs[:, None], g_logg], dim=1)
        return energy, grad

    @staticmethod
    def _cross_sum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """sum_j a_j x b_j for (B, J, 3) -> (B, 3), via the antisymmetric part of a.T @ b (3 ops, not 15)."""
        m = a.transpose(1, 2) @ b  # m[p, q] = sum_j a_p b_q
        m = (m - m.transpose(1, 2)).view(-1, 9)
        return m[:, [5, 6, 1]]  # (m12 - m21, m20 - m02, m01 - m10)

    @torch.no_grad()
    def _linearize(self, z: torch.Tensor) -> _Linearized:
        """First-order expansion of the decoder at z (B, D) by one batched forward difference, folded with the
        bone-group accumulation (see :class:`_Linearized`)."""
        b, d = z.shape
        h = 1e-2
        zz = torch.cat([z[:, None, :], z[:, None, :] + h * torch.eye(d, device=z.device)], dim=1).reshape(-1, d)
        out = self.prior.decoder(zz).reshape(b, d + 1, self._j, 3)
        p0 = out[:, 0]
        jac = (out[:, 1:] - out[:, :1]) / h  # (B, D, J, 3)
        if self.config.bone_groups:
            # Bone offsets are linear in the pose, and so is the accumulation of each group's offsets.
            base = torch.einsum("gjk,bkc->bgjc", self._group_ancestors, p0 - p0[:, self._parents])
            basis = torch.einsum("gjk,bdkc->bgjcd", self._group_ancestors, jac - jac[:, :, self._parents])
        else:
            base = p0[:, None]
            basis = jac.permute(0, 2, 3, 1)[:, None]
        return _Linearized(z.clone(), base.contiguous(), basis.reshape(b, -1, d))

    @torch.no_grad()
    def _result(self, data: _Data, st: _State, own: torch.Tensor, canon: torch.Tensor, t: torch.Tensor,
                energy: torch.Tensor, sources: list[str]) -> FitResult:  # fmt: skip
        np_ = lambda x: x.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        proj = project(own + t[:, None], data.focal, data.principal)
        facing = -torso_normal(own, self.skeleton)[:, 2]
        factors = torch.exp(st.log_g) if self.config.bone_groups else torch.ones_like(st.log_g)
        return FitResult(
            joints3d=np_(own), joints3d_canonical=np_(canon), z=np_(st.z), rotation=np_(st.rot),
            translation=np_(t), scale=np_(torch.exp(st.log_s)), bone_factors=np_(factors),
            joints2d=np_(proj), loss=np_(energy), facing=np_(facing), start_source=np.array(sources, dtype=object),
        )  # fmt: skip

    def config_dict(self) -> dict[str, Any]:
        """The resolved configuration (for logs and benchmark records)."""
        return asdict(self.config)


def _cross_sum_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """sum_j a_j x b_j for (B, J, 3) -> (B, 3) (as PoseFitter._cross_sum)."""
    m = a.transpose(0, 2, 1) @ b
    m = (m - m.transpose(0, 2, 1)).reshape(-1, 9)
    return m[:, [5, 6, 1]]


def _orthonormalise(r: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) nearly orthonormal -> the closest rotation (polar decomposition by SVD)."""
    u, _, vh = torch.linalg.svd(r)
    return u @ vh


def _fmt(shape: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"


__all__ = ["FitConfig", "FitResult", "PoseFitter", "START_CHECKPOINT", "load_start_net", "torso_faces_camera", "torso_facing"]
