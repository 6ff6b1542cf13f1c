"""The ablation driver's rows name only known terms, in the paper's cumulative order."""

from __future__ import annotations

from nlrd.stages.adapt import CONTRASTIVE_TERMS
from nlrd.transforms import RELATIONS
from training.ablation import ABLATION_ROWS, slug


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
