"""Demo scripts run in-process: the animated example writes a looping GIF that animates."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from PIL import Image

from nlrd.inference import IMAGE_CHECKPOINTS
from nlrd.priors import CHECKPOINT_DIR, POSE_CHECKPOINT

REPO = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    """Import ``demos/<name>.py`` as a module (the demos folder is not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_demo", REPO / "demos" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def animated_example() -> ModuleType:
    if not (CHECKPOINT_DIR / POSE_CHECKPOINT).exists() or not any((CHECKPOINT_DIR / n).exists() for n in IMAGE_CHECKPOINTS):
        pytest.skip("the shipped checkpoints are not in checkpoints/")
    return _load("animated_example")


def _gif_frames(path: Path) -> list[np.ndarray]:
    with Image.open(path) as im:
        assert im.format == "GIF"
        frames = []
        for i in range(im.n_frames):
            im.seek(i)
            frames.append(np.asarray(im.convert("RGB")))
        return frames


def test_animated_example_writes_a_gif_that_animates(animated_example: ModuleType, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sub" / "example.gif"
    n = 6
    assert animated_example.main(["--out", str(out), "--frames", str(n), "--fps", "12", "--seed", "1"]) == 0
    assert "wrote" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.n_frames == n
        assert im.size == (2 * animated_example.PANEL, animated_example.PANEL + animated_example.CAPTION_H)
        assert im.info.get("loop") == 0
        assert im.info.get("duration") == 80  # 1/12 s in whole centiseconds
    frames = _gif_frames(out)
    assert all(f.shape == frames[0].shape for f in frames)
    panel = animated_example.PANEL
    for a, b in zip(frames, frames[1:], strict=False):
        # both panels change between consecutive frames: the render (motion, camera) and the 3D view
        assert np.abs(a[:panel, :panel].astype(int) - b[:panel, :panel]).mean() > 0.5
        assert np.abs(a[:panel, panel:].astype(int) - b[:panel, panel:]).mean() > 0.2
    assert out.stat().st_size < 2.5e6


def test_animated_example_is_deterministic_for_a_seed(animated_example: ModuleType) -> None:
    rng = np.random.default_rng
    np.testing.assert_array_equal(animated_example.make_motion(5, rng(3)), animated_example.make_motion(5, rng(3)))
    assert not np.array_equal(animated_example.make_motion(5, rng(3)), animated_example.make_motion(5, rng(4)))
    a = animated_example.render_orbit(animated_example.make_motion(3, rng(2)), 2, fps=10.0, orbit_deg=40.0, size=64)
    b = animated_example.render_orbit(animated_example.make_motion(3, rng(2)), 2, fps=10.0, orbit_deg=40.0, size=64)
    np.testing.assert_array_equal(a.image, b.image)


def test_camera_rotations_recover_the_view(animated_example: ModuleType) -> None:
    from nlrd.data.synthetic.camera import look_rotation

    world = animated_example.make_motion(4, np.random.default_rng(0)).astype(np.float64)
    rots = np.stack([look_rotation(a, e) for a, e in ((10, 5), (40, 10), (120, -5), (250, 20))])
    cam = 1.07 * np.einsum("tjc,tkc->tjk", world, rots)  # cam = s * world @ R.T (a person's height scale)
    np.testing.assert_allclose(animated_example.camera_rotations(world, cam), rots, atol=1e-6)
