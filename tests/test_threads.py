"""The renderer's OpenCV threading guard must never change OpenCV's process-wide thread count from a
worker thread: doing so while another thread is inside an OpenCV parallel loop kills the process
(SIGFPE), which is how the app died when a render overlapped a photo prediction."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import cv2

from nlrd.data.synthetic.threads import opencv_single_threaded


def test_guard_leaves_the_thread_count_alone_off_the_main_thread() -> None:
    old = cv2.getNumThreads()
    cv2.setNumThreads(2)
    seen: list[int] = []
    try:
        def worker() -> None:
            with opencv_single_threaded():
                seen.append(cv2.getNumThreads())

        t = threading.Thread(target=worker)
        t.start()
        t.join()
        assert seen == [2]
        with opencv_single_threaded():  # the main thread still gets the sequential speed-up
            assert cv2.getNumThreads() <= 1
        assert cv2.getNumThreads() == 2
    finally:
        cv2.setNumThreads(old)


def test_guard_in_a_thread_beside_parallel_opencv_survives() -> None:
    """The renderer's guard entered over and over in one thread while another runs large parallel
    resizes, for a few seconds, in a child process (a crash must fail this test, not kill pytest).
    Before the fix this died with SIGFPE within a second or two."""
    code = textwrap.dedent(
        """
        import threading, time
        import cv2, numpy as np
        from nlrd.data.synthetic.threads import opencv_single_threaded
        cv2.setNumThreads(4)
        stop = time.monotonic() + 5.0
        rng = np.random.default_rng(0)
        big = rng.integers(0, 255, (1500, 2000, 3), np.uint8)
        small = rng.integers(0, 255, (128, 128, 3), np.uint8)
        def resize_loop():
            while time.monotonic() < stop:
                cv2.resize(big, (640, 480), interpolation=cv2.INTER_AREA)
        def render_loop():
            while time.monotonic() < stop:
                with opencv_single_threaded():
                    cv2.GaussianBlur(small, (5, 5), 1.0)
        threads = [threading.Thread(target=resize_loop), threading.Thread(target=render_loop)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("alive")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    assert "alive" in proc.stdout
