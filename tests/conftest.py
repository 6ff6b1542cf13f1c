"""Shared fixtures: the real data folder (tests that need it skip with a reason when it is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlrd.data.paths import default_data_root


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = default_data_root()
    if not (root / "cmu_mocap").is_dir():
        pytest.skip(f"real data not found at {root} (set NLRD_DATA to the data folder)")
    return root
