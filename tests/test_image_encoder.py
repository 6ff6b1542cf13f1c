"""Image encoder: every backbone's forward/backward, freezing for adaptation, exact ResNet-50 size."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nlrd.checkpoint import load_checkpoint, load_into, save_checkpoint
from nlrd.models.image_encoder import (
    BACKBONES,
    STAGE_NAMES,
    ImageEncoder,
    ImageEncoderConfig,
    build_image_encoder,
    count_parameters,
    set_frozen_batchnorm_eval,
    trainable_parameters,
)

# Tiny images keep the ResNet-50 cases fast on CPU (32 px is the smallest the encoder accepts).
_SIZE = 32


def _encoder(backbone: str, seed: int = 0, **kw) -> ImageEncoder:
    return build_image_encoder(ImageEncoderConfig(backbone=backbone, image_size=_SIZE, **kw), seed=seed)


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, _SIZE, _SIZE, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # These batches are tiny; on a shared 2-core machine intra-op threads only add contention (runs were
    # 5x slower with 2 threads under load). Restored afterwards so other modules are unaffected.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module", params=sorted(BACKBONES))
def backbone(request: pytest.FixtureRequest) -> str:
    return request.param


def test_forward_backward(backbone: str) -> None:
    model = _encoder(backbone, zero_init_residual=False)  # so that every conv receives a gradient
    model.train()
    x = _images(3)
    z = model(x)
    assert z.shape == (3, 32) and z.dtype == torch.float32
    assert torch.isfinite(z).all() and (z.abs() < 1).all()
    z.square().sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() > 0 for g in grads) == len(grads)
    # Eval mode uses running statistics and agrees in shape and range.
    model.eval()
    with torch.no_grad():
        z_eval = model(x)
    assert z_eval.shape == (3, 32) and torch.isfinite(z_eval).all()


@torch.no_grad()
def test_trunk_stage_shapes(backbone: str) -> None:
    model = _encoder(backbone).eval()
    x = model.stem(torch.zeros(1, 3, _SIZE, _SIZE))
    assert x.shape[-1] == _SIZE // 4
    feats = model.features(_images(1))
    expected_channels = {"resnet50": 1024, "resnet_small": 128}[backbone]
    assert feats.shape == (1, expected_channels, _SIZE // 16, _SIZE // 16)
    assert model.trunk_channels == expected_channels
    assert not hasattr(model, "layer4")


@torch.no_grad()
def test_latent_scale_and_size() -> None:
    model = _encoder("resnet_small", latent_dim=8, latent_scale=10.0)
    z = model(_images(2))
    assert z.shape == (2, 8) and (z.abs() < 10).all()


def test_freezing_leaves_only_layer2(backbone: str) -> None:
    model = _encoder(backbone)
    params = trainable_parameters(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all(n.startswith("layer2.") for n in names)
    assert len(params) == len(names)
    assert count_parameters(model, trainable_only=True) == count_parameters(model.layer2)
    # A string is one stage, not its characters; unknown stages are errors.
    assert len(trainable_parameters(model, "head")) == len(list(model.head.parameters()))
    with pytest.raises(ValueError, match="unknown stage 'layer4'"):
        trainable_parameters(model, ("layer4",))


def test_frozen_batchnorm_stats_do_not_drift() -> None:
    model = _encoder("resnet_small")
    trainable_parameters(model, ("layer2",))
    model.train()  # must not put the frozen BN layers back into training mode
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    z = model(_images(4))
    z.sum().backward()
    after = model.state_dict()
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        assert changed == key.startswith("layer2."), key
    assert model.stem.bn.training is False and model.layer2[0].bn1.training is True
    # Unfreezing everything and calling train() restores ordinary BN behaviour.
    trainable_parameters(model, STAGE_NAMES)
    model.train()
    assert model.stem.bn.training is True
    assert set_frozen_batchnorm_eval(model) == 0


def test_resnet50_trunk_matches_torchvision_count() -> None:
    # Independent count of torchvision's ResNet-50 conv1 + bn1 + layer1..layer3 (v1.5 bottlenecks).
    def conv(k: int, cin: int, cout: int) -> int:
        return k * k * cin * cout

    def bn(c: int) -> int:
        return 2 * c

    def bottleneck(cin: int, planes: int, project: bool) -> int:
        n = conv(1, cin, planes) + bn(planes) + conv(3, planes, planes) + bn(planes)
        n += conv(1, planes, 4 * planes) + bn(4 * planes)
        return n + (conv(1, cin, 4 * planes) + bn(4 * planes) if project else 0)

    expected = conv(7, 3, 64) + bn(64)
    cin = 64
    for planes, blocks in ((64, 3), (128, 4), (256, 6)):
        expected += bottleneck(cin, planes, True) + (blocks - 1) * bottleneck(4 * planes, planes, False)
        cin = 4 * planes
    assert expected == 8_543_296

    model = _encoder("resnet50")
    trunk = sum(count_parameters(getattr(model, s)) for s in ("stem", "layer1", "layer2", "layer3"))
    assert trunk == expected
    assert count_parameters(model.layer2) == 1_219_584  # the adapted Res-3 block


def test_seed_determinism() -> None:
    a, b, c = _encoder("resnet_small", seed=7), _encoder("resnet_small", seed=7), _encoder("resnet_small", seed=8)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert not torch.equal(a.stem.conv.weight, c.stem.conv.weight)
    a.eval()
    b.eval()
    x = _images(2)
    with torch.no_grad():
        assert torch.equal(a(x), b(x))


def test_zero_init_residual() -> None:
    model = _encoder("resnet_small")
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0
    assert torch.all(model.layer1[0].bn1.weight == 1)


def test_input_and_config_validation() -> None:
    model = _encoder("resnet_small")
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        model(torch.rand(2, 3, 64, 64))
    # Progressive-resizing training passes any_size: any square side divisible by 16, nothing else.
    assert model(torch.rand(2, 3, 48, 48), any_size=True).shape == (2, 32)
    for shape in ((2, 3, 40, 40), (2, 3, 48, 32)):
        with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
            model(torch.rand(*shape), any_size=True)
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(2, 3, _SIZE, _SIZE, dtype=torch.uint8))
    with pytest.raises(ValueError, match="unknown backbone 'resnet101'"):
        ImageEncoderConfig(backbone="resnet101").resolve()
    cfg = ImageEncoderConfig.paper()
    assert (cfg.backbone, cfg.image_size, cfg.width, cfg.head_channels) == ("resnet50", 224, 64, 512)
    # The stored config is resolved, so a saved copy rebuilds the same network.
    assert model.config_dict()["width"] == BACKBONES["resnet_small"].width
    assert "pixel_mean" not in model.state_dict()  # constants are not checkpoint state


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _encoder("resnet_small", seed=3).eval()
    path = save_checkpoint(tmp_path / "g.safetensors", model, stage="source", config=model.config)
    ckpt = load_checkpoint(path, expected_stage="source")
    rebuilt = load_into(ImageEncoder(ImageEncoderConfig(**ckpt.config)), ckpt).eval()
    x = _images(2)
    with torch.no_grad():
        assert torch.equal(model(x), rebuilt(x))
