"""The shared training loop: DDP over 2 gloo processes equals one process, resume, NaN guard."""

from __future__ import annotations

import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from nlrd.checkpoint import load_checkpoint
from nlrd.kinematics import relength
from nlrd.models.pose_aae import PoseAAEConfig
from nlrd.stages.pose_aae import PoseAAEStage, PoseAAEStageConfig
from nlrd.trainer import DistInfo, NonFiniteLossError, Trainer, TrainerConfig, guarded_step, init_distributed

SMALL = PoseAAEConfig(group_width=16, part_width=32, hidden=64, depth=1, disc_hidden=32)


def fake_poses(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    j = rng.normal(size=(n, 17, 3)).astype(np.float32) * 200
    return j - j[:, :1]


def stage_cfg(**kw) -> PoseAAEStageConfig:
    # The marginal term sorts each process's own slice, so it is left out of the exact comparison, and
    # bf16 rounds half-batch matmuls differently from full-batch ones, so the comparison runs in fp32.
    base = dict(batch=32, lr=1e-3, warmup_steps=1, marginal_weight=0.0, val_poses=64, steps=4, pose_critic=True,
                amp=False)  # fmt: skip
    base.update(kw)
    return PoseAAEStageConfig(**base)


def run_stage(out: str, info: DistInfo, steps: int = 4) -> None:
    stage = PoseAAEStage(fake_poses(500, 0), fake_poses(100, 1), SMALL, stage_cfg(steps=steps), torch.device("cpu"), info)
    trainer = Trainer(stage, TrainerConfig(steps=steps, val_every=0, ckpt_every=0, progress=False, out=out + "_run"),
                      info, torch.device("cpu"))  # fmt: skip
    result = trainer.fit()
    trainer.save_final(out, result)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    info = init_distributed(torch.device("cpu"))
    run_stage(out, info)
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_processes_match_one_process(tmp_path: Path) -> None:
    single = str(tmp_path / "single.safetensors")
    run_stage(single, DistInfo())
    ddp = str(tmp_path / "ddp.safetensors")
    mp.spawn(_worker, args=(2, free_port(), ddp), nprocs=2, join=True)
    a, b = load_checkpoint(single).tensors, load_checkpoint(ddp).tensors
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < 1e-4, worst
    # and training really moved the weights (the comparison is not vacuous)
    fresh = PoseAAEStage(fake_poses(500, 0), fake_poses(100, 1), SMALL, stage_cfg(), torch.device("cpu"), DistInfo())
    init = {f"encoder.{k}": v for k, v in fresh.ae.encoder.state_dict().items()}
    assert max((init[k] - a[k]).abs().max().item() for k in init) > 1e-4


def test_resume_continues_to_the_same_weights(tmp_path: Path) -> None:
    straight = str(tmp_path / "straight.safetensors")
    run_stage(straight, DistInfo(), steps=6)
    # Interrupted run: 3 steps with a resume checkpoint, then a new process picks it up.
    run_dir = tmp_path / "resumed_run"
    s1 = PoseAAEStage(fake_poses(500, 0), fake_poses(100, 1), SMALL, stage_cfg(steps=6), torch.device("cpu"), DistInfo())
    t1 = Trainer(s1, TrainerConfig(steps=6, val_every=0, ckpt_every=3, progress=False, out=str(run_dir)), DistInfo(),
                 torch.device("cpu"))  # fmt: skip
    t1.cfg.steps = 3
    t1.fit()
    t1.save_resume(3)
    assert (run_dir / "resume.safetensors").exists()
    s2 = PoseAAEStage(fake_poses(500, 0), fake_poses(100, 1), SMALL, stage_cfg(steps=6), torch.device("cpu"), DistInfo())
    t2 = Trainer(s2, TrainerConfig(steps=6, val_every=0, ckpt_every=0, progress=False, out=str(run_dir)), DistInfo(),
                 torch.device("cpu"))  # fmt: skip
    assert t2.load_resume() == 3
    res = t2.fit()
    resumed = str(tmp_path / "resumed.safetensors")
    t2.save_final(resumed, res)
    a, b = load_checkpoint(straight).tensors, load_checkpoint(resumed).tensors
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5
    assert not (run_dir / "resume.safetensors").exists()


def test_resume_state_of_another_stage_is_refused(tmp_path: Path) -> None:
    # Two stages sharing a run folder (e.g. relation networks of the same shape): the second must not
    # silently pick up the first one's interrupted state, even though its tensors would fit.
    run_dir = str(tmp_path / "shared_run")
    first = PoseAAEStage(fake_poses(500, 0), fake_poses(100, 1), SMALL, stage_cfg(), torch.device("cpu"), DistInfo())
    Trainer(first, TrainerConfig(steps=4, progress=False, out=run_dir), DistInfo(), torch.device("cpu")).save_resume(2)
    second = PoseAAEStage(fake_poses(500, 0), fake_poses(100, 1), SMALL, stage_cfg(), torch.device("cpu"), DistInfo())
    second.name = "another_stage"
    trainer = Trainer(second, TrainerConfig(steps=4, progress=False, out=run_dir), DistInfo(), torch.device("cpu"))
    with pytest.raises(ValueError, match="resume state of 'pose_aae-resume'"):
        trainer.load_resume()
    # --no-resume ignores it
    fresh = Trainer(second, TrainerConfig(steps=4, progress=False, out=run_dir, resume=False), DistInfo(), torch.device("cpu"))
    assert fresh.load_resume() == 0


class _NaNStage:
    name = "nan"

    def __init__(self) -> None:
        self.lin = torch.nn.Linear(2, 1)
        self.opt = torch.optim.SGD(self.lin.parameters(), lr=0.1)

    def modules(self):
        return {"lin": self.lin}

    def optimizers(self):
        return {"lin": self.opt}

    def train_step(self, step: int) -> dict[str, float]:
        return {"loss": math.nan if step >= 2 else 1.0}

    def evaluate(self) -> dict[str, float]:
        return {}


def test_nan_guard_stops_a_diverged_run(tmp_path: Path) -> None:
    tr = Trainer(_NaNStage(), TrainerConfig(steps=50, val_every=0, ckpt_every=0, max_bad_steps=5, progress=False,
                                            out=str(tmp_path)), DistInfo(), torch.device("cpu"))  # fmt: skip
    with pytest.raises(NonFiniteLossError, match="5 consecutive"):
        tr.fit()


def structured_poses(n: int, seed: int) -> np.ndarray:
    """A few base poses with small noise: learnable structure, unlike i.i.d. joints."""
    rng = np.random.default_rng(0)
    base = fake_poses(6, 99)
    pick = rng.integers(0, len(base), size=n)
    j = base[pick] + np.random.default_rng(seed).normal(size=(n, 17, 3)).astype(np.float32) * 20
    # canonical bone lengths, so the decoder (which always outputs them) can reach the targets
    return relength(j - j[:, :1]).astype(np.float32)


def test_short_pose_aae_run_lowers_the_loss() -> None:
    stage = PoseAAEStage(structured_poses(2000, 0), structured_poses(200, 1), SMALL,
                         stage_cfg(steps=150, batch=64, pose_critic=False, warmup_steps=10),
                         torch.device("cpu"), DistInfo())  # fmt: skip
    before = stage.evaluate()["val_mpjpe_mm"]
    Trainer(stage, TrainerConfig(steps=150, val_every=0, ckpt_every=0, progress=False, out="unused"), DistInfo(),
            torch.device("cpu")).fit()  # fmt: skip
    after = stage.evaluate()["val_mpjpe_mm"]
    assert after < 0.8 * before, (before, after)


def test_guarded_step_skips_non_finite_losses_and_gradients_and_clips() -> None:
    """A finite loss with a NaN gradient must leave the weights as they were; a finite one steps and clips."""
    w = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.SGD([w], lr=1.0)
    loss = (w * torch.tensor([1.0, float("nan"), 0.0])).nan_to_num().sum() + (w[1] * torch.tensor(float("nan"))).nan_to_num()
    loss.backward()  # the loss is finite, the gradient of w[1] is NaN
    assert torch.isfinite(loss) and not torch.isfinite(w.grad).all()
    assert not guarded_step(opt, loss) and torch.equal(w.detach(), torch.ones(3))
    opt.zero_grad()
    nan_loss = w.sum() * float("nan")
    nan_loss.backward()
    assert not guarded_step(opt, nan_loss) and torch.equal(w.detach(), torch.ones(3))
    opt.zero_grad()
    loss = (w * torch.tensor([30.0, 40.0, 0.0])).sum()
    loss.backward()
    assert guarded_step(opt, loss, max_norm=5.0)
    assert torch.allclose(w.detach(), torch.tensor([1 - 3.0, 1 - 4.0, 1.0]))  # gradient (30, 40, 0) clipped to norm 5
