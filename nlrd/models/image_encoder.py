"""Image-to-pose-latent CNN (the paper's Gs / G): a ResNet trunk up to "Res-4F", then a small head.

``ImageEncoder(x) -> z``: ``x (B, 3, H, W)`` float RGB in [0, 1] (H = W = ``config.image_size``),
``z (B, latent_dim)`` in ``(-latent_scale, latent_scale)`` (``[-1, 1]^32`` by default, the range of the
pose AAE's prior).

The trunk is written here (no torchvision) with torchvision's stage names so that the paper's wording
maps onto attribute names for every backbone:

=========  ======================  ==========================================
stage      paper                   resolution (input 128 px / 224 px)
=========  ======================  ==========================================
``stem``   conv1 + pool            1/4   (32 / 56)
``layer1`` Res-2                   1/4
``layer2`` Res-3 (adapted)         1/8   (16 / 28)
``layer3`` Res-4 (up to Res-4F)    1/16  (8 / 14)
``head``   convs + FCs + tanh      2 stride-2 convs, global pool, 2 FCs
=========  ======================  ==========================================

There is no ``layer4``. Backbones:

- ``resnet50``: the paper's; Bottleneck blocks [3, 4, 6], 1024 channels out of ``layer3``,
  224 px images (:meth:`ImageEncoderConfig.paper`). Its stem + layer1..3 have exactly the
  8,543,296 parameters of torchvision's ResNet-50 ``conv1 .. layer3``.
- ``resnet_small``: the CPU default; BasicBlocks [2, 2, 2] with widths 32/64/128 after a 32-channel
  stem, 128 px images.

During adaptation only ``layer2`` is trained (:func:`trainable_parameters`); BatchNorm layers whose
parameters are all frozen are kept in eval mode by :meth:`ImageEncoder.train` so their running
statistics cannot drift on target data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import nn

from nlrd.precision import autocast

STAGE_NAMES: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3", "head")

# ImageNet statistics: the input normalisation every ResNet recipe uses. Kept inside the model so that
# callers always pass plain [0, 1] RGB and cannot forget (or double-apply) the normalisation.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BackboneSpec:
    """Shape of a ResNet trunk through ``layer3``.

    Attributes:
        block: residual block type.
        layers: number of blocks in layer1, layer2, layer3.
        width: default ``planes`` of layer1 (doubled in each later stage) and stem channels.
        head_channels, head_hidden: default head sizes for this trunk.
    """

    block: Literal["basic", "bottleneck"]
    layers: tuple[int, int, int]
    width: int
    head_channels: int
    head_hidden: int


BACKBONES: dict[str, BackboneSpec] = {
    "resnet50": BackboneSpec(block="bottleneck", layers=(3, 4, 6), width=64, head_channels=512, head_hidden=1024),
    "resnet_small": BackboneSpec(block="basic", layers=(2, 2, 2), width=32, head_channels=256, head_hidden=256),
}


@dataclass(frozen=True)
class ImageEncoderConfig:
    """Configuration of :class:`ImageEncoder` (saved with every checkpoint).

    ``None`` fields take the backbone's default (see :data:`BACKBONES`); :meth:`resolve` fills them
    in, and the model stores the resolved copy so that a saved config rebuilds the same network.

    Attributes:
        backbone: key of :data:`BACKBONES`.
        image_size: side of the square input crop, pixels.
        latent_dim: size of z (32 in the paper).
        width: stem channels and layer1 planes; later stages double it.
        head_channels: channels of the two stride-2 head convs.
        head_hidden: units of the first FC layer.
        latent_scale: z = s * tanh(h / s); 1 gives the paper's [-1, 1], 10 the authors' code.
        zero_init_residual: zero the last BN gamma of each residual block so every block starts as
            the identity (stabilises early training).
    """

    backbone: str = "resnet_small"
    image_size: int = 128
    latent_dim: int = 32
    width: int | None = None
    head_channels: int | None = None
    head_hidden: int | None = None
    latent_scale: float = 1.0
    zero_init_residual: bool = True

    @classmethod
    def paper(cls) -> ImageEncoderConfig:
        """The paper's encoder: ResNet-50 through Res-4F on 224 px crops."""
        return cls(backbone="resnet50", image_size=224).resolve()

    def resolve(self) -> ImageEncoderConfig:
        """Copy with backbone defaults filled in; ValueError on an unknown backbone or bad sizes."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; expected one of {sorted(BACKBONES)}")
        spec = BACKBONES[self.backbone]
        cfg = replace(
            self,
            width=spec.width if self.width is None else self.width,
            head_channels=spec.head_channels if self.head_channels is None else self.head_channels,
            head_hidden=spec.head_hidden if self.head_hidden is None else self.head_hidden,
        )
        for name in ("image_size", "latent_dim", "width", "head_channels", "head_hidden"):
            value = getattr(cfg, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"ImageEncoderConfig.{name} must be a positive int, got {value!r}")
        # The trunk downsamples 16x and the head another 4x; below 32 px the head would see 1x1 maps.
        if cfg.image_size < 32:
            raise ValueError(f"ImageEncoderConfig.image_size must be >= 32 px, got {cfg.image_size}")
        if not cfg.latent_scale > 0:
            raise ValueError(f"ImageEncoderConfig.latent_scale must be > 0, got {cfg.latent_scale}")
        return cfg


# ---------------------------------------------------------------------------------------------
# Residual blocks (torchvision's layout, "ResNet v1.5": the stride sits on the 3x3 conv)
# ---------------------------------------------------------------------------------------------


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut. ``(B, Cin, H, W) -> (B, planes, H/s, W/s)``."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand (x4). ``(B, Cin, H, W) -> (B, 4*planes, H/s, W/s)``."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @property
    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_BLOCKS: dict[str, type[BasicBlock] | type[Bottleneck]] = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _make_stage(
    block: type[BasicBlock] | type[Bottleneck], inplanes: int, planes: int, blocks: int, stride: int
) -> tuple[nn.Sequential, int]:
    """A ResNet stage; returns (nn.Sequential, output channels)."""
    downsample = None
    if stride != 1 or inplanes != planes * block.expansion:
        downsample = nn.Sequential(_conv1x1(inplanes, planes * block.expansion, stride), nn.BatchNorm2d(planes * block.expansion))
    layers: list[nn.Module] = [block(inplanes, planes, stride, downsample)]
    inplanes = planes * block.expansion
    layers += [block(inplanes, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers), inplanes


class Stem(nn.Module):
    """7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool: ``(B, 3, H, W) -> (B, C, H/4, W/4)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.relu(self.bn(self.conv(x))))


class LatentHead(nn.Module):
    """Two stride-2 3x3 conv+BN+ReLU, global average pool, FC-ReLU-FC, scaled tanh.

    ``(B, Cin, h, w) -> (B, latent_dim)`` in ``(-latent_scale, latent_scale)``.
    """

    def __init__(self, cin: int, channels: int, hidden: int, latent_dim: int, latent_scale: float) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            _conv3x3(cin, channels, stride=2),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            _conv3x3(channels, channels, stride=2),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
        )
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, latent_dim)
        self.latent_scale = float(latent_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.convs(x).mean(dim=(2, 3))
        h = self.fc2(torch.relu(self.fc1(h)))
        s = self.latent_scale
        return s * torch.tanh(h / s)


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------


class ImageEncoder(nn.Module):
    """Image crop -> pose latent: ``x (B, 3, H, W)`` RGB in [0, 1] -> ``z (B, latent_dim)``.

    Attributes ``stem``, ``layer1``, ``layer2``, ``layer3``, ``head`` are the stages named in the
    module docstring. ``config`` is the resolved :class:`ImageEncoderConfig`.
    """

    def __init__(self, config: ImageEncoderConfig | None = None) -> None:
        super().__init__()
        self.config = (config or ImageEncoderConfig()).resolve()
        cfg = self.config
        spec = BACKBONES[cfg.backbone]
        block = _BLOCKS[spec.block]
        w = cfg.width
        assert w is not None and cfg.head_channels is not None and cfg.head_hidden is not None  # resolved
        # Constants, not learned state: non-persistent, so checkpoints hold only trained tensors.
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = Stem(w)
        self.layer1, c = _make_stage(block, w, w, spec.layers[0], stride=1)
        self.layer2, c = _make_stage(block, c, 2 * w, spec.layers[1], stride=2)
        self.layer3, c = _make_stage(block, c, 4 * w, spec.layers[2], stride=2)
        self.trunk_channels = c
        self.head = LatentHead(c, cfg.head_channels, cfg.head_hidden, cfg.latent_dim, cfg.latent_scale)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Kaiming init of convs, unit/zero BN, zero last-BN gamma per residual block (if configured).

        All randomness is drawn from ``generator`` (the global RNG when None), so the same seed builds
        the same network.
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
                m.reset_running_stats()
            elif isinstance(m, nn.Linear):
                # fc1 feeds a ReLU (Kaiming); fc2 feeds the tanh, where a small fan-in uniform init keeps
                # the initial latents well inside the linear range of tanh.
                if m is self.head.fc2:
                    bound = 1.0 / m.in_features**0.5
                    nn.init.uniform_(m.weight, -bound, bound, generator=generator)
                else:
                    nn.init.kaiming_uniform_(m.weight, nonlinearity="relu", generator=generator)
                nn.init.zeros_(m.bias)
        if self.config.zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn.weight)

    def features(self, x: torch.Tensor, *, any_size: bool = False) -> torch.Tensor:
        """Trunk output (the paper's Res-4F): ``(B, 3, H, W)`` in [0, 1] -> ``(B, C, H/16, W/16)``.

        ``any_size`` accepts square images of any side divisible by 16 instead of ``config.image_size``
        (the low-resolution phase of progressive-resizing training; predictions use the configured size).
        """
        self._check_input(x, any_size)
        x = (x - self.pixel_mean) / self.pixel_std
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def forward(self, x: torch.Tensor, *, any_size: bool = False) -> torch.Tensor:
        """``x (B, 3, H, W)`` float RGB in [0, 1] -> ``z (B, latent_dim)`` in (-latent_scale, latent_scale)."""
        return self.head(self.features(x, any_size=any_size))

    def _check_input(self, x: torch.Tensor, any_size: bool = False) -> None:
        size = x.shape[-1] if any_size and x.ndim == 4 and x.shape[-1] % 16 == 0 else self.config.image_size
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
            raise ValueError(f"ImageEncoder expects images of shape (B, 3, {size}, {size}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"ImageEncoder expects float images in [0, 1], got dtype {x.dtype}")

    def train(self, mode: bool = True) -> ImageEncoder:
        """Like ``nn.Module.train`` but keeps fully frozen BatchNorm layers in eval mode.

        Without this, every ``model.train()`` call in a training loop would put the BN layers of
        frozen stages back into training mode and their running statistics would drift towards the
        target domain even though their weights are frozen.
        """
        super().train(mode)
        if mode:
            set_frozen_batchnorm_eval(self)
        return self

    def stage(self, name: str) -> nn.Module:
        """The stage called ``name`` (one of :data:`STAGE_NAMES`)."""
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; expected one of {STAGE_NAMES}")
        return getattr(self, name)

    def config_dict(self) -> dict:
        """The resolved config as a plain dict (what checkpoints store)."""
        return asdict(self.config)


def build_image_encoder(config: ImageEncoderConfig | None = None, *, seed: int | None = None) -> ImageEncoder:
    """Build an :class:`ImageEncoder`; with ``seed`` the initial weights depend on the seed only."""
    model = ImageEncoder(config)
    if seed is not None:
        model.reset_parameters(torch.Generator().manual_seed(seed))
    return model


def trainable_parameters(model: ImageEncoder, stages: Iterable[str] = ("layer2",)) -> list[nn.Parameter]:
    """Freeze every parameter outside ``stages`` and return the trainable ones (for the optimiser).

    The default ``("layer2",)`` is the paper's adaptation setting: only the Res-3 block is updated, a
    strong regulariser against degenerate solutions. BatchNorm layers left fully frozen are switched
    to eval mode now and on every later ``model.train()`` (see :meth:`ImageEncoder.train`).
    """
    stages = (stages,) if isinstance(stages, str) else tuple(stages)
    for name in stages:
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; expected names from {STAGE_NAMES}")
    for name in STAGE_NAMES:
        for p in getattr(model, name).parameters():
            p.requires_grad_(name in stages)
    if model.training:
        set_frozen_batchnorm_eval(model)
    return [p for p in model.parameters() if p.requires_grad]


def set_frozen_batchnorm_eval(module: nn.Module) -> int:
    """Put every BatchNorm layer whose affine parameters are all frozen into eval mode.

    Eval-mode BN normalises with its running statistics and stops updating them, so frozen parts of a
    network stay exactly as trained while the rest adapts. Returns the number of layers switched.
    Call it after ``module.train()`` for modules other than :class:`ImageEncoder` (which does it itself).
    """
    count = 0
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            params = list(m.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                m.eval()
                count += 1
    return count


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (buffers such as BN running stats excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


@torch.no_grad()
def encode_images(model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device, *, amp: bool = True,
                  batch: int = 128) -> torch.Tensor:  # fmt: skip
    """The one batched inference path of every image-to-latent model, in eval mode.

    Args:
        model: an :class:`ImageEncoder` (or a DDP wrapper of one).
        images: uint8 numpy crops (N, H, W, 3), converted chunk by chunk so a large test set is never
            held as float, or a float tensor (N, 3, H, W) in [0, 1].
        device: where the model lives.
        amp: bf16 autocast where the hardware is fast at it (``nlrd.precision``).
        batch: images per forward pass.

    Returns:
        z (N, latent_dim) float32 on ``device``.
    """
    model.eval()
    out = []
    for s in range(0, len(images), batch):
        chunk = images[s : s + batch]
        if isinstance(chunk, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(chunk)).to(device).permute(0, 3, 1, 2).float().div_(255)
        else:
            x = chunk.to(device).float()
        with autocast(device, amp):
            z = model(x.contiguous(memory_format=torch.channels_last))
        out.append(z.float())
    if not out:
        return torch.zeros(0, getattr(getattr(model, "config", None), "latent_dim", 32), device=device)
    return torch.cat(out)
