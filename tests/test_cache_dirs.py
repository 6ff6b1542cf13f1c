"""numba's compiled kernels are cached in a folder of the user's, never inside the installed package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from nlrd.cache_dirs import numba_cache_candidates

REPO = Path(__file__).resolve().parents[1]
PROBE = "import nlrd, numba, os; print(numba.config.CACHE_DIR); print(os.environ.get('NUMBA_CACHE_DIR'))"


def _probe(env_extra: dict[str, str], drop: tuple[str, ...] = ("NUMBA_CACHE_DIR",)) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()


def test_cache_goes_to_the_users_cache_folder(tmp_path: Path) -> None:
    numba_dir, env_dir = _probe({"XDG_CACHE_HOME": str(tmp_path)})
    assert Path(numba_dir) == Path(env_dir) == tmp_path / "nlrd" / "numba"
    assert (tmp_path / "nlrd" / "numba").is_dir()
    assert REPO / "nlrd" not in Path(numba_dir).parents


def test_unwritable_user_cache_falls_back_to_the_temporary_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")  # nothing, not even root, can create folders under a file
    numba_dir, _ = _probe({"XDG_CACHE_HOME": str(blocker / "cache"), "TMPDIR": str(tmp_path)})
    assert Path(numba_dir).parent == tmp_path and Path(numba_dir).name.startswith("nlrd-numba-")


def test_the_users_own_setting_wins(tmp_path: Path) -> None:
    numba_dir, env_dir = _probe({"NUMBA_CACHE_DIR": str(tmp_path / "mine")}, drop=())
    assert Path(numba_dir) == Path(env_dir) == tmp_path / "mine"


def test_candidates_never_point_into_the_package() -> None:
    for folder in numba_cache_candidates():
        assert REPO / "nlrd" not in folder.parents
