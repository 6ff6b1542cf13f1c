"""Public API of the learned pose and motion latent spaces: numpy (or torch) in, same kind out.

from nlrd import PosePrior, MotionPrior
prior = PosePrior.from_pretrained()          # shipped weights in checkpoints/
z = prior.encode(joints)                     # (..., 17, 3) mm -> (..., 32) in [-1, 1]
joints = prior.decode(prior.sample(8, seed=0))
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from nlrd.checkpoint import build_checked, load_checkpoint, model_config
from nlrd.data.paths import REPO_ROOT
from nlrd.models.motion_ae import MotionAEConfig, MotionDecoder, MotionEncoder
from nlrd.models.pose_aae import PoseAAEConfig, PoseDecoder, PoseEncoder
from nlrd.precision import pick_device
from nlrd.skeleton import Skeleton, get_skeleton

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)

CHECKPOINT_DIR = REPO_ROOT / "checkpoints"
# The view distribution of priors from before it was recorded: upright people, any azimuth (paper).
LEGACY_VIEWS = "azimuth"
POSE_CHECKPOINT = "pose_aae.safetensors"
MOTION_CHECKPOINT = "motion_ae.safetensors"


# Every whole number in a model config is a size or a count (widths, layers, joints, pixels); the
# project's are at most a few hundred. The bound keeps a hostile config from costing time even on the
# meta device (thousands of layers), and refuses 10**7-wide layers before anything is built.
MAX_CONFIG_INT = 4096
MAX_CONFIG_STR = 200


def _short(value: Any) -> str:
    """repr of a config value, cut short (a config can hold a megabyte of text)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _checked_value(where: str, value: Any, hint: Any) -> Any:
    """``value`` checked against the type annotation ``hint`` (and the config ranges); ValueError if it does not fit.

    Covers the annotations model configs use: int, float, bool, str, ``X | None``, Literal, tuple and
    list; anything else is passed through unchecked.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _checked_value(where, value, arg)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(errors[0] if len(errors) == 1 else f"{where} = {_short(value)} fits none of {hint}")
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{where} = {_short(value)} is not one of {list(args)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where} = {_short(value)} must be true or false")
        return value
    if hint is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{where} = {_short(value)} must be a whole number")
        if not 0 <= value <= MAX_CONFIG_INT:
            raise ValueError(f"{where} = {_short(value)} is out of range (0 to {MAX_CONFIG_INT})")
        return value
    if hint is float:
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"{where} = {_short(value)} must be a finite number")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or len(value) > MAX_CONFIG_STR:
            raise ValueError(f"{where} = {_short(value)} must be a string of at most {MAX_CONFIG_STR} characters")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where} = {_short(value)} must be a list")
        item = args[0] if args and (origin is list or (len(args) == 2 and args[1] is Ellipsis)) else None
        items = [
            _checked_value(f"{where}[{i}]", v, item if item is not None else (args[i] if i < len(args) else Any))
            for i, v in enumerate(value)
        ]
        if origin is tuple and args and args[-1] is not Ellipsis and len(items) != len(args):
            raise ValueError(f"{where} = {_short(value)} must have {len(args)} items")
        return tuple(items) if origin is tuple else items
    return value


def config_from_dict(cls: type, data: Any) -> Any:
    """Rebuild a config dataclass from saved metadata, refusing unknown fields, missing ones, values of the
    wrong type and sizes out of range (0 to :data:`MAX_CONFIG_INT`), each a ValueError naming the field.

    Checkpoints come from anywhere: without these checks a size of -5, "abc" or 10**7 in a config reaches
    the model's constructor as a RuntimeError, a TypeError or an attempt to allocate terabytes.
    """
    if not isinstance(data, dict):
        raise ValueError(f"checkpoint config for {cls.__name__} must be a JSON object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"checkpoint config has fields {sorted(map(_short, unknown))} unknown to {cls.__name__}")
    missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]  # fmt: skip
    if missing:
        raise ValueError(f"checkpoint config for {cls.__name__} lacks {missing}")
    hints = typing.get_type_hints(cls)
    values = {k: _checked_value(f"checkpoint config {cls.__name__}.{k}", v, hints.get(k, Any)) for k, v in data.items()}
    try:
        return cls(**values)
    except (TypeError, AssertionError) as exc:  # a __post_init__ refusing a combination of values
        raise ValueError(f"checkpoint config for {cls.__name__}: {exc}") from None


def _recorded_views(meta: dict[str, Any]) -> str:
    """The view distribution a pose prior's metadata records (``config.stage.views``), else the legacy one."""
    config = meta.get("config")
    stage = config.get("stage") if isinstance(config, dict) else None
    views = stage.get("views") if isinstance(stage, dict) else None
    return views if isinstance(views, str) else LEGACY_VIEWS


class _Runner:
    """numpy/torch conversion around a module call, batched over leading dims."""

    device: torch.device

    def _in(self, x: np.ndarray | torch.Tensor, trailing: tuple[int, ...], what: str) -> tuple[torch.Tensor, bool]:
        was_np = not isinstance(x, torch.Tensor)
        try:
            t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if was_np else x
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{what}: expected a numeric array of shape (..., {', '.join(map(str, trailing))}), "
                             f"got {type(x).__name__} ({exc})") from None  # fmt: skip
        if t.ndim < len(trailing) or tuple(t.shape[-len(trailing) :]) != trailing:
            raise ValueError(f"{what}: expected shape (..., {', '.join(map(str, trailing))}), got {tuple(t.shape)}")
        if t.numel() == 0:
            raise ValueError(f"{what}: empty input of shape {tuple(t.shape)}")
        if not torch.isfinite(t).all():
            raise ValueError(f"{what}: input contains NaN or infinite values")
        return t.to(self.device, torch.float32), was_np

    @staticmethod
    def _out(t: torch.Tensor, was_np: bool) -> np.ndarray | torch.Tensor:
        return t.detach().cpu().numpy() if was_np else t


def encoder_fingerprint(encoder: nn.Module) -> str:
    """12 hex digits of SHA-256 over the encoder's weights: what defines a latent space z (decoder
    fine-tunes keep Ep frozen, so every model built on Ep stays valid through them)."""
    h = hashlib.sha256()
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def latent_space_id(encoder: nn.Module, views: str) -> str:
    """The name of a pose latent space: the views its prior was trained on and its encoder's fingerprint."""
    return f"{views}-{encoder_fingerprint(encoder)}"


class PosePrior(_Runner):
    """The pose auto-encoder's latent space z in [-1, 1]^latent_dim.

    ``views``: the view distribution it was trained on ("camera": the cameras and body orientations of
    :mod:`nlrd.views`; "azimuth": upright people only, the paper's). ``latent_space``: the name every model
    built on this z (motion prior, image models, relation networks) records and is checked against."""

    def __init__(self, encoder: PoseEncoder, decoder: PoseDecoder, meta: dict[str, Any], device: torch.device) -> None:
        self.encoder, self.decoder = encoder.to(device).eval(), decoder.to(device).eval()
        self.meta, self.device = meta, device
        self.skeleton: Skeleton = encoder.skeleton
        self.latent_dim: int = encoder.cfg.latent_dim
        self.views: str = _recorded_views(meta)
        self.latent_space: str = latent_space_id(self.encoder, self.views)

    def check_built_on(self, meta: dict[str, Any], what: str) -> None:
        """Refuse a model (its checkpoint metadata ``meta``) trained on another latent space than this one.

        Models from before latent spaces were recorded carry none; they were all built on the upright-only
        prior, so they load with such a prior only."""
        extra = meta.get("extra", {}) if isinstance(meta.get("extra"), dict) else {}
        stored = extra.get("latent_space")
        if stored is None:
            if self.views == LEGACY_VIEWS:
                return
            raise ValueError(f"{what} was trained on the earlier upright-only pose prior, not on this one "
                             f"({self.latent_space}); retrain it on this prior (training.pipeline) or use the matching prior")
        if stored != self.latent_space:
            raise ValueError(f"{what} was trained on pose latent space {stored!r}, but the pose prior is "
                             f"{self.latent_space!r}; latents of different priors cannot be mixed")

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> PosePrior:
        ck = load_checkpoint(Path(path) if path is not None else CHECKPOINT_DIR / POSE_CHECKPOINT, expected_stage="pose_aae")
        cfg = config_from_dict(PoseAAEConfig, model_config(ck))
        skeleton = get_skeleton(ck.meta.get("skeleton", cfg.skeleton))
        # Each network is checked against the file's tensors before it is allocated (see build_checked).
        enc = build_checked(ck, "encoder.", lambda: PoseEncoder(cfg, skeleton))
        dec = build_checked(ck, "decoder.", lambda: PoseDecoder(cfg, skeleton))
        return cls(enc, dec, ck.meta, pick_device(device))

    @torch.no_grad()
    def encode(self, joints: ArrayT) -> ArrayT:
        """Root-relative joints (..., J, 3) mm -> z (..., latent_dim)."""
        t, was_np = self._in(joints, (self.skeleton.num_joints, 3), "PosePrior.encode")
        t = t - t[..., :1, :]
        return self._out(self.encoder(t), was_np)

    @torch.no_grad()
    def decode(self, z: ArrayT) -> ArrayT:
        """z (..., latent_dim), values in [-1, 1] -> root-relative joints (..., J, 3) mm."""
        t, was_np = self._in(z, (self.latent_dim,), "PosePrior.decode")
        return self._out(self.decoder(t), was_np)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """n latents from the prior U[-1, 1]^latent_dim, (n, latent_dim) float32."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rng = np.random.default_rng(seed)
        return rng.uniform(-1.0, 1.0, size=(n, self.latent_dim)).astype(np.float32)


class GaussianLatentPrior(nn.Module):
    """A Gaussian fitted to the encoded training motions, for sampling v (buffers: mean (D,), chol (D,D))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("chol", torch.eye(dim))

    @torch.no_grad()
    def fit(self, v: torch.Tensor) -> GaussianLatentPrior:
        """Fit to samples v (N, D)."""
        self.mean.copy_(v.mean(0))
        cov = torch.cov(v.T) + 1e-5 * torch.eye(v.shape[1], device=v.device)
        self.chol.copy_(torch.linalg.cholesky(cov))
        return self


class MotionPrior(_Runner):
    """The motion auto-encoder's latent space v in [-1, 1]^128 over 30-frame windows, on top of a PosePrior."""

    def __init__(self, pose: PosePrior, encoder: MotionEncoder, decoder: MotionDecoder,
                 gaussian: GaussianLatentPrior, meta: dict[str, Any], device: torch.device) -> None:  # fmt: skip
        self.pose, self.meta, self.device = pose, meta, device
        self.encoder, self.decoder = encoder.to(device).eval(), decoder.to(device).eval()
        self.gaussian = gaussian.to(device)
        self.latent_dim: int = encoder.cfg.motion_latent_dim
        self.length: int = encoder.cfg.length

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str] | None = None, pose: PosePrior | str | None = None,
                        device: str | torch.device = "cpu") -> MotionPrior:  # fmt: skip
        dev = pick_device(device)
        ck = load_checkpoint(Path(path) if path is not None else CHECKPOINT_DIR / MOTION_CHECKPOINT,
                             expected_stage="motion_ae")  # fmt: skip
        if not isinstance(pose, PosePrior):
            pose = PosePrior.from_pretrained(pose, device=dev)
        cfg = config_from_dict(MotionAEConfig, model_config(ck))
        pose.check_built_on(ck.meta, f"motion prior {str(path)!r}")
        if cfg.pose_latent_dim != pose.latent_dim:
            raise ValueError(f"motion prior expects pose latents of size {cfg.pose_latent_dim}, pose prior has {pose.latent_dim}")
        enc = build_checked(ck, "encoder.", lambda: MotionEncoder(cfg))
        dec = build_checked(ck, "decoder.", lambda: MotionDecoder(cfg))
        gauss = build_checked(ck, "prior.", lambda: GaussianLatentPrior(cfg.motion_latent_dim))
        return cls(pose, enc, dec, gauss, ck.meta, dev)

    @torch.no_grad()
    def encode_latents(self, z_seq: ArrayT) -> ArrayT:
        """Pose-latent sequences (..., T, Dz) -> v (..., Dv)."""
        t, was_np = self._in(z_seq, (self.length, self.pose.latent_dim), "MotionPrior.encode_latents")
        lead = t.shape[:-2]
        v = self.encoder(t.reshape(-1, *t.shape[-2:]))
        return self._out(v.reshape(*lead, -1), was_np)

    @torch.no_grad()
    def decode_latents(self, v: ArrayT) -> ArrayT:
        """v (..., Dv) -> pose-latent sequences (..., T, Dz)."""
        t, was_np = self._in(v, (self.latent_dim,), "MotionPrior.decode_latents")
        lead = t.shape[:-1]
        z = self.decoder(t.reshape(-1, t.shape[-1]))
        return self._out(z.reshape(*lead, *z.shape[-2:]), was_np)

    @torch.no_grad()
    def encode(self, joints: ArrayT) -> ArrayT:
        """Windows of joints (..., T, J, 3) mm (T = 30) -> v (..., Dv)."""
        j = self.pose.skeleton.num_joints
        t, was_np = self._in(joints, (self.length, j, 3), "MotionPrior.encode")
        z = self.pose.encoder(t - t[..., :1, :])
        return self._out(self.encode_latents(z), was_np)

    @torch.no_grad()
    def decode(self, v: ArrayT) -> ArrayT:
        """v (..., Dv) -> joints (..., T, J, 3) mm."""
        t, was_np = self._in(v, (self.latent_dim,), "MotionPrior.decode")
        return self._out(self.pose.decoder(self.decode_latents(t)), was_np)

    def sample(self, n: int, seed: int | None = None) -> np.ndarray:
        """n motion latents (n, Dv) float32 from the Gaussian fitted to encoded training motions, clipped to [-1, 1]."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        g = torch.Generator().manual_seed(int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**62))
        eps = torch.randn(n, self.latent_dim, generator=g)
        v = self.gaussian.mean.cpu() + eps @ self.gaussian.chol.cpu().T
        return v.clamp(-1.0, 1.0).numpy().astype(np.float32)
