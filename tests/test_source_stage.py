"""Stage source: paired augmentation stays exact, and a short run on renders lowers the error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nlrd.data.synthetic import demo_poses
from nlrd.models.image_encoder import ImageEncoderConfig
from nlrd.priors import PosePrior
from nlrd.stages.source import SourceStage, SourceStageConfig, augment_pair, rotation_z
from nlrd.trainer import DistInfo, Trainer, TrainerConfig
from nlrd.transforms import flip_pose, inplane_pose, rotate_images


def test_augment_pair_applies_the_same_relation_to_image_and_pose() -> None:
    cfg = SourceStageConfig(colour_jitter=0.0, flip_prob=1.0, max_rotation_deg=0.0, crop_scale_jitter=0, crop_shift_jitter=0)
    x = torch.rand(3, 3, 16, 16)
    y = torch.randn(3, 17, 3) * 300
    x2, y2 = augment_pair(x, y, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(x2, torch.flip(x, dims=[-1]))
    assert torch.equal(y2, flip_pose(y))
    cfg = SourceStageConfig(colour_jitter=0.0, flip_prob=0.0, max_rotation_deg=10.0, crop_scale_jitter=0, crop_shift_jitter=0)
    g = torch.Generator().manual_seed(1)
    _, y3 = augment_pair(x, y, cfg, g)
    # Reproduce the rotation from the same generator stream: flip draw, then angles.
    g2 = torch.Generator().manual_seed(1)
    torch.rand(3, generator=g2)
    theta = (torch.rand(3, generator=g2) * 2 - 1) * 10.0
    for i in range(3):
        np.testing.assert_allclose(y3[i].numpy(), inplane_pose(y[i].numpy(), float(theta[i])), atol=1e-3)
    assert torch.allclose(rotation_z(torch.tensor([90.0]))[0] @ torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0]),
                          atol=1e-6)  # fmt: skip


def test_short_source_run_fits_a_fixed_batch() -> None:
    """Sixty steps on one fixed batch of renders must cut the L1 error well down (the loop really learns)."""
    torch.manual_seed(0)
    poses = demo_poses.random_poses(4, np.random.default_rng(0))
    decoder = PosePrior.from_pretrained().decoder  # the shipped Dp, frozen as in the real stage
    cfg = SourceStageConfig(batch=16, lr=3e-3, warmup_steps=5, workers=0, val_images=16, steps=60, flip_prob=0.0,
                            colour_jitter=0.0, max_rotation_deg=0.0)  # fmt: skip
    model_cfg = ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=64)
    stage = SourceStage(poses, poses, decoder, model_cfg, cfg, torch.device("cpu"), DistInfo())
    batch = (stage.val_x, torch.from_numpy(stage.val_y))
    stage.next_batch = lambda step=0: batch  # type: ignore[method-assign]
    result = Trainer(stage, TrainerConfig(steps=60, log_every=10, val_every=0, ckpt_every=0, progress=False, out="unused"),
                     DistInfo(), torch.device("cpu")).fit()  # fmt: skip
    first, last = result.history[0]["l1_mm"], result.history[-1]["l1_mm"]
    assert last < 0.6 * first, (first, last)


def test_echo_keeps_each_render_for_echo_consecutive_steps() -> None:
    """With echo=2 each batch is the newest rendered half plus the previous one; echo must divide the batch."""
    poses = demo_poses.random_poses(4, np.random.default_rng(0))
    decoder = PosePrior.from_pretrained().decoder
    model_cfg = ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=32)
    no_aug = {"colour_jitter": 0.0, "flip_prob": 0.0, "max_rotation_deg": 0.0, "crop_scale_jitter": 0.0,
              "crop_shift_jitter": 0.0, "workers": 0, "val_images": 4}  # fmt: skip
    stage = SourceStage(poses, poses, decoder, model_cfg, SourceStageConfig(batch=8, echo=2, **no_aug), torch.device("cpu"),
                        DistInfo())  # fmt: skip
    assert stage.loader.batch_size == 4
    batches = [stage.next_batch() for _ in range(3)]
    for (x0, y0), (x1, y1) in zip(batches, batches[1:], strict=False):
        assert x0.shape == (8, 3, 32, 32) and y0.shape == (8, 17, 3)
        assert torch.equal(x1[:4], x0[4:]) and torch.equal(y1[:4], y0[4:])  # the older half was the newer one before
        assert not torch.equal(x1[4:], x0[4:])  # and a fresh half was rendered
    with pytest.raises(ValueError, match="echo 3 must divide"):
        SourceStage(poses, poses, decoder, model_cfg, SourceStageConfig(batch=8, echo=3, **no_aug), torch.device("cpu"),
                    DistInfo())  # fmt: skip


def test_one_fused_warp_matches_crop_flip_and_rotation_applied_in_turn() -> None:
    """augment_pair composes crop jitter, flip and rotation into one resampling; on a smooth image it must
    agree with applying the three warps one after the other (same random draws) inside the crop."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    img = torch.stack([torch.sin(6 * xx + 2 * yy), torch.cos(5 * yy), xx * yy]) * 0.4 + 0.5
    x = img.repeat(8, 1, 1, 1) * (0.5 + 0.5 * xx)  # left-right asymmetric, so a wrong flip shows
    y = torch.randn(8, 17, 3) * 300
    cfg = SourceStageConfig(colour_jitter=0.0, flip_prob=0.5, max_rotation_deg=10.0, crop_scale_jitter=0.1,
                            crop_shift_jitter=0.06)  # fmt: skip
    fused, y_fused = augment_pair(x, y, cfg, torch.Generator().manual_seed(3))

    g = torch.Generator().manual_seed(3)  # the same stream: crop scale, crop shift, flip, angle
    s = 1 + (torch.rand(8, generator=g) * 2 - 1) * cfg.crop_scale_jitter
    t = (torch.rand(8, 2, generator=g) * 2 - 1) * 2 * cfg.crop_shift_jitter
    affine = torch.zeros(8, 2, 3)
    affine[:, 0, 0], affine[:, 1, 1], affine[:, :, 2] = 1 / s, 1 / s, t
    seq = torch.nn.functional.grid_sample(x, torch.nn.functional.affine_grid(affine, list(x.shape), align_corners=False),
                                          align_corners=False)  # fmt: skip
    flip = torch.rand(8, generator=g) < cfg.flip_prob
    seq = torch.where(flip.view(8, 1, 1, 1), torch.flip(seq, dims=[-1]), seq)
    theta = (torch.rand(8, generator=g) * 2 - 1) * cfg.max_rotation_deg
    seq = rotate_images(seq, theta)

    assert 0 < flip.sum() < 8
    inner = (slice(None), slice(None), slice(12, 52), slice(12, 52))  # away from the zero-filled border
    assert (fused - seq)[inner].abs().max() < 3e-3
    expected_y = torch.where(flip.view(8, 1, 1), flip_pose(y), y) @ rotation_z(theta).transpose(-1, -2)
    assert torch.allclose(y_fused, expected_y, atol=1e-3)


def test_warm_phase_trains_on_smaller_renders_then_on_full_size() -> None:
    """Progressive resizing: the first warm_fraction of the steps render warm_size crops, the rest full size."""
    poses = demo_poses.random_poses(4, np.random.default_rng(0))
    decoder = PosePrior.from_pretrained().decoder
    model_cfg = ImageEncoderConfig(width=8, head_channels=16, head_hidden=32, image_size=64)
    cfg = SourceStageConfig(batch=4, steps=4, warm_size=48, warm_fraction=0.5, workers=0, val_images=4)
    stage = SourceStage(poses, poses, decoder, model_cfg, cfg, torch.device("cpu"), DistInfo())
    sizes = []
    for step in range(4):
        sizes.append(stage.next_batch(step)[0].shape[-1])
        assert np.isfinite(stage.train_step(step)["l1_mm"])
    assert sizes == [48, 48, 64, 64]
    assert stage.evaluate()["val_mpjpe_mm"] > 0  # validation always runs at the model's own size
    for bad in ({"warm_size": 24, "warm_fraction": 0.5}, {"warm_size": 48, "warm_fraction": 1.0}):
        with pytest.raises(ValueError, match="warm_size"):
            SourceStage(poses, poses, decoder, model_cfg, SourceStageConfig(batch=4, workers=0, val_images=4, **bad),
                        torch.device("cpu"), DistInfo())  # fmt: skip
