"""Where the compiled numba kernels are cached: a folder of the user's, never the installed package.

numba's default caches next to the source files (``nlrd/**/__pycache__``), which writes into the package
at run time, and fails at import (``cannot cache function``) when neither the package folder nor the
user's home is writable (a read-only install run by a service user). :func:`configure_numba_cache` picks
``$NUMBA_CACHE_DIR`` when the user set it, else ``$XDG_CACHE_HOME/nlrd/numba`` (``~/.cache/nlrd/numba``),
else a per-user folder in the system's temporary directory. It must run before numba is imported:
``nlrd/__init__.py`` calls it first.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

NUMBA_ENV = "NUMBA_CACHE_DIR"


def _writable_dir(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError:
        return False
    return True


def numba_cache_candidates() -> list[Path]:
    """Cache folders in order of preference (the user's cache, then the temporary directory)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg) if xdg else Path.home() / ".cache"
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    return [base / "nlrd" / "numba", Path(tempfile.gettempdir()) / f"nlrd-numba-{uid}"]


def configure_numba_cache() -> Path | None:
    """Set ``$NUMBA_CACHE_DIR`` to the first writable candidate unless the user set it; returns the folder
    in use (None: nothing writable, numba then falls back to its own locations). Too late once numba is
    imported (its configuration is read then): then it changes nothing and returns None."""
    if os.environ.get(NUMBA_ENV):
        return Path(os.environ[NUMBA_ENV])
    if "numba" in sys.modules:
        return None
    for folder in numba_cache_candidates():
        if _writable_dir(folder):
            os.environ[NUMBA_ENV] = str(folder)
            return folder
    return None
