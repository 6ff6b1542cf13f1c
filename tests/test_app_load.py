"""The served app under load: concurrent users get answers, and adaptation sessions queue up.

``$NLRD_LOAD_SECONDS`` (default 30) sets how long 16 gradio_client sessions call ``/decode_latent``
and ``/predict_image`` in turn; not one call may fail, and the p95 latencies are printed (run with
``-s`` to see them). Then two clients start a tiny ``/adapt`` session at once: one session runs at a
time, so the second must wait in the queue and then succeed. The load driver is
``benchmarks/app_load.py`` (which also prints the table for a longer run).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
CLIENTS = 16
SECONDS = float(os.environ.get("NLRD_LOAD_SECONDS", "30"))


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def driver() -> ModuleType:
    return _load("_nlrd_app_load", REPO / "benchmarks" / "app_load.py")


def test_sixteen_clients_get_every_answer(app_server: str, driver: ModuleType, tmp_path: Path) -> None:
    photo = driver.write_photo(tmp_path / "person.jpg")
    load = driver.mixed_load(app_server, CLIENTS, SECONDS, photo)
    driver.print_table(load, None)
    assert load["setup"]["failures"] == 0, load["setup"]
    for name in ("/decode_latent", "/predict_image"):
        assert load[name]["failures"] == 0, (name, load[name]["first_failures"])
        assert load[name]["calls"] >= CLIENTS // 2  # every client got through at least once per endpoint pair


def test_second_adaptation_waits_in_the_queue_and_succeeds(app_server: str, driver: ModuleType) -> None:
    result = driver.two_adaptations(app_server, steps=2)
    print(f"second /adapt went through: {' > '.join(result['second_statuses'])} ({result['wall_s']} s)")
    assert result["first"]["phase"] == result["second"]["phase"] == "done"
    assert result["first"]["steps_done"] == result["second"]["steps_done"] == 2
    assert result["queued"] and not result["overlap"]  # it waited for the first to end
