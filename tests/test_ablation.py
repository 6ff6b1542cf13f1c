"""The ablation driver: rows name only known terms in the paper's cumulative order; finished runs are reused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nlrd.checkpoint import save_checkpoint
from nlrd.stages.adapt import CONTRASTIVE_TERMS
from nlrd.transforms import RELATIONS
from training.ablation import ABLATION_ROWS, main, slug


def test_rows_use_known_terms_and_unique_files() -> None:
    for name, terms in ABLATION_ROWS.items():
        assert terms, name
        assert all(t in CONTRASTIVE_TERMS or t in RELATIONS for t in terms), (name, terms)
    slugs = [slug(n) for n in ABLATION_ROWS]
    assert len(set(slugs)) == len(slugs)
    assert all(s and "/" not in s and "+" not in s for s in slugs)


def test_main_ablation_is_cumulative() -> None:
    main = [n for n in ABLATION_ROWS if n.startswith("+CR")][:4]
    for prev, cur in zip(main, main[1:], strict=False):
        assert set(ABLATION_ROWS[prev]) < set(ABLATION_ROWS[cur])


def _fake_adapt_checkpoint(path: Path, terms: list[str], steps: int) -> None:
    """A small checkpoint with the metadata training.adapt writes."""
    save_checkpoint(path, {"w": torch.arange(4.0)}, stage="adapt", config={"stage": {"terms": terms}},
                    metrics={"train_steps": steps, "train_seconds": 90.0})  # fmt: skip


def test_reuse_copies_the_matching_row_and_trains_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import adapt

    trained: list[list[str]] = []

    def fake_main(flags: list[str]) -> dict:
        trained.append(flags)
        return {"steps": 300, "seconds_per_step": 0.5, "train_seconds": 150.0}

    monkeypatch.setattr(adapt, "main", fake_main)
    shipped = tmp_path / "adapted_g.safetensors"
    _fake_adapt_checkpoint(shipped, ["pose-flip", "flip+inplane-50-backward"], 300)
    out = tmp_path / "ablation"
    rows = "pose-flip+flip+inplane-50-backward,pose-flip"
    main(["--rows", rows, "--steps", "300", "--out-dir", str(out), "--reuse", str(shipped)])
    # Only the row without a finished run was trained.
    assert len(trained) == 1 and trained[0][trained[0].index("--terms") + 1] == "pose-flip"
    copied = out / f"{slug('pose-flip+flip+inplane-50-backward')}.safetensors"
    assert copied.read_bytes() == shipped.read_bytes()
    index = json.loads((out / "rows.json").read_text())
    assert list(index) == ["pose-flip", "pose-flip+flip+inplane-50-backward"]  # canonical order
    assert index["pose-flip+flip+inplane-50-backward"]["seconds_per_step"] == pytest.approx(0.3)


def test_reuse_ignores_a_run_of_other_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from training import adapt

    trained: list[list[str]] = []
    monkeypatch.setattr(adapt, "main", lambda flags: trained.append(flags) or {"steps": 300, "seconds_per_step": 0.5,
                                                                                "train_seconds": 150.0})  # fmt: skip
    shipped = tmp_path / "adapted_g.safetensors"
    _fake_adapt_checkpoint(shipped, ["pose-flip"], 100)
    main(["--rows", "pose-flip", "--steps", "300", "--out-dir", str(tmp_path / "ab"), "--reuse", str(shipped)])
    assert len(trained) == 1
