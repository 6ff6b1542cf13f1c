"""OpenCV threading guard for the renderer.

At 128 px OpenCV's thread pool costs more than it saves, and DataLoader workers are the parallelism
anyway. Rendering and background loading therefore run OpenCV sequentially and restore the
caller's setting afterwards.

Why ``setNumThreads(0)`` and not ``1``: in a process forked from a parent whose OpenCV pool was
running (a DataLoader worker whose parent called e.g. ``cv2.warpAffine``), ``setNumThreads(1)``
waits for pool threads that do not exist in the child and deadlocks, while ``0`` ("no threading
optimisations") switches the pool off without touching it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import cv2


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """Within the block OpenCV runs sequentially; the previous thread count is restored on exit."""
    old = cv2.getNumThreads()
    if old <= 1:
        yield
        return
    cv2.setNumThreads(0)
    try:
        yield
    finally:
        cv2.setNumThreads(old)
