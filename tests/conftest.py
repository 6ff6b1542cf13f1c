"""Shared fixtures: the real data folder (tests that need it skip with a reason when it is absent), the
shipped priors, and the app-server helpers of test_app.py for the other app test files."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from nlrd.data.paths import default_data_root
from nlrd.priors import MotionPrior, PosePrior


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if not (root / "cmu_mocap").is_dir():
        pytest.skip(f"real data not found at {root} (set NLRD_DATA to the data folder)")
    return root


@pytest.fixture(scope="session")
def prepared_data(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real data prepared once per test session into a temporary folder (about 15 s on 2 cores)."""
    from nlrd.data.poses import ensure_prepared

    return ensure_prepared(data_root, tmp_path_factory.mktemp("prepared"), workers=2, progress=False)


@pytest.fixture(scope="module")
def priors() -> tuple[PosePrior, MotionPrior]:
    """The shipped pose and motion priors, loaded once per test module (stages freeze them in place)."""
    pose = PosePrior.from_pretrained()
    return pose, MotionPrior.from_pretrained(pose=pose)


@pytest.fixture(scope="session")
def app_helpers() -> ModuleType:
    """test_app.py as a module (start_server, stop_server, checkpoint_dir, load_app_module), loaded once
    under another name so pytest does not collect its tests twice."""
    name = "_nlrd_app_test_helpers"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("test_app.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory, app_helpers: ModuleType) -> Iterator[str]:
    """URL of app.py on the shipped weights with default flags, one server per test module."""
    h = app_helpers
    proc, url, _ = h.start_server(h.checkpoint_dir(), None, tmp_path_factory.mktemp("app_server") / "app.log")
    try:
        yield url
    finally:
        h.stop_server(proc)


def write_background_photos(folder: Path, n: int) -> Path:
    """``n`` small smooth generated photos (300x200 PNG) in ``folder``: a background bank without real data."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(1)
    for i in range(n):
        img = cv2.resize(rng.integers(0, 255, (12, 18, 3), dtype=np.uint8), (300, 200), interpolation=cv2.INTER_CUBIC)
        cv2.imwrite(str(folder / f"photo_{i}.png"), img)
    return folder
