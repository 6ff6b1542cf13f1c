"""OpenCV threading guard for the renderer.

At 128 px OpenCV's thread pool costs more than it saves, and DataLoader workers are the parallelism
anyway. Rendering and background loading therefore run OpenCV sequentially and restore the
caller's setting afterwards.

The guard only acts on the process's main thread. ``cv2.setNumThreads`` changes a process-wide
setting, and changing it while another thread is inside an OpenCV parallel loop (a resize in a
photo prediction, say) makes that loop divide by zero: the app, which renders relation pairs in
worker threads while other worker threads predict photos, died with SIGFPE. Off the main thread
the block simply runs with OpenCV's current setting (slower at 128 px, never unsafe). Training
renders run on the main thread or in DataLoader worker processes, whose only thread is the main
one, so they keep the speed-up.

Why ``setNumThreads(0)`` and not ``1``: in a process forked from a parent whose OpenCV pool was
running (a DataLoader worker whose parent called e.g. ``cv2.warpAffine``), ``setNumThreads(1)``
waits for pool threads that do not exist in the child and deadlocks, while ``0`` ("no threading
optimisations") switches the pool off without touching it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2


@contextmanager
def opencv_single_threaded() -> Iterator[None]:
    """Within the block OpenCV runs sequentially; the previous thread count is restored on exit.

    A no-op off the main thread (see the module docstring: the setting is process-wide)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = cv2.getNumThreads()
    if old <= 1:
        yield
        return
    cv2.setNumThreads(0)
    try:
        yield
    finally:
        cv2.setNumThreads(old)
