"""Where the real data lives: an explicit path, else $NLRD_DATA, else ../shared/data beside the repo."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_root() -> Path:
    """The data folder to use when none is given (it may not exist; callers check)."""
    env = os.environ.get("NLRD_DATA")
    if env:
        return Path(env).expanduser()
    return (REPO_ROOT.parent / "shared" / "data").resolve()


def resolve_data_root(path: str | os.PathLike[str] | None) -> Path:
    """Return an existing data folder or raise ValueError saying how to provide one."""
    root = Path(path).expanduser() if path is not None else default_data_root()
    if not root.is_dir():
        raise ValueError(f"data folder {str(root)!r} does not exist; pass --data-root or set NLRD_DATA")
    return root
