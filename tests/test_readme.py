"""The README's Python quick start runs as written (only ``photo``, the user's own image, is supplied)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_quick_start_runs_as_written(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no Python quick start"
    photo = tmp_path / "photo.jpg"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(photo), rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    scope: dict = {"photo": str(photo)}
    exec(compile(blocks[0], str(README), "exec"), scope)
    assert scope["joints"].shape == (8, 17, 3) and scope["z_again"].shape == (8, 32)
    assert scope["v"].shape == (1, 128)
    assert scope["result"].joints3d.shape == (1, 17, 3)
