"""The fixed split of the real exercise photos into a held-out list and a tuning list.

Rule: an exercise (``exercise_photos/index.json`` id, e.g. ``"Ab_Roller"``) is HELD OUT when
``int(sha1(id.encode("utf-8")).hexdigest(), 16) % 5 == 0``; both of its photos (``<id>__0.jpg``, start
position, and ``<id>__1.jpg``, end position: same person, same scene) go together, so no scene is on
both sides. About one exercise in five is held out (160 of the 785 exercises, 320 photos). The rule
depends only on the id, so it is the same on every machine and for any subset of the data.

Nothing is ever tuned, chosen or calibrated on the held-out photos (thresholds, landmark weights,
adaptation data, hyper-parameters); they only measure. Tuning and adaptation use
:func:`tuning_exercise_photos`, the complement. The landmark calibration
(``scripts/calibrate_landmarks.py``) uses renders only.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

HELDOUT_MODULUS = 5  # one exercise in HELDOUT_MODULUS is held out


def is_heldout_exercise(exercise_id: str) -> bool:
    """Whether an exercise id belongs to the held-out list (see the module docstring for the rule)."""
    return int(hashlib.sha1(exercise_id.encode("utf-8")).hexdigest(), 16) % HELDOUT_MODULUS == 0


def _exercise_photos(data_root: str | os.PathLike[str]) -> list[tuple[str, Path]]:
    """(exercise id, photo path) for every photo listed in index.json, sorted by id then path."""
    folder = Path(data_root) / "exercise_photos"
    index = folder / "index.json"
    if not index.is_file():
        raise ValueError(f"{str(index)!r} not found; pass the data folder that holds exercise_photos/")
    entries = json.loads(index.read_text())
    out: list[tuple[str, Path]] = []
    for entry in sorted(entries, key=lambda e: e["id"]):
        out.extend((entry["id"], folder / rel) for rel in sorted(entry["images"]))
    return out


def heldout_exercise_photos(data_root: str | os.PathLike[str]) -> list[Path]:
    """The held-out photos (both photos of every held-out exercise), sorted by exercise id then name."""
    return [p for ex, p in _exercise_photos(data_root) if is_heldout_exercise(ex)]


def tuning_exercise_photos(data_root: str | os.PathLike[str]) -> list[Path]:
    """The complement of :func:`heldout_exercise_photos`: the photos that tuning may look at."""
    return [p for ex, p in _exercise_photos(data_root) if not is_heldout_exercise(ex)]
