"""Quality test: visual search offline, the learned embedder against the baselines.

A *quality* test, not a unit test: it runs ``benchmarks/visual_quality.py``'s
quick setting once (two embedders trained on the quick image world, a few
minutes on a 2-core machine), shares the result across the asserts, and checks
the bars of issue 12 (``casestudies/visual_search/index.md``, step 5) plus the
figures the quick setting printed when these were written, within tolerances,
so that a silent regression in the world, the training loop, the index or the
evaluation fails CI. ``make test-fast`` skips it. A bar the embedder does not
meet yet is a strict xfail whose reason holds the measured figure: it fails
loudly the day the bar is met, so the xfail is then removed, never the bar
lowered.
"""

from __future__ import annotations

import pytest
from benchmark_modules import quick_summary

pytestmark = pytest.mark.quality  # a slow tier: see `make test-fast`

#: The quick setting's figures when written (seed 0; 420 queries). Training is
#: deterministic on one machine and torch build; the tolerance absorbs another
#: machine's float rounding through 300 optimizer steps (about 20 queries).
EXPECTED = {
    "recall_at_1": 0.5476,
    "recall_at_10": 0.7690,
    "crop_recall_at_1": 0.6714,
    "selfsup_recall_at_1": 0.4262,
    "ann_recall_at_10": 0.9974,
    "dedup_precision": 1.0,
}
TOLERANCE = 0.05
#: The baselines train nothing: their figures move only with the world.
BASELINES = {
    "pixel_recall_at_1": 0.0405,
    "histogram_recall_at_1": 0.0857,
    "pixel_crop_recall_at_1": 0.1452,
    "histogram_crop_recall_at_1": 0.2714,
}


@pytest.fixture(scope="module")
def summary() -> dict:
    return quick_summary("visual_quality.py")


@pytest.mark.timeout(1800)
def test_quality_figures_are_what_the_quick_setting_printed(summary: dict) -> None:
    for key, value in EXPECTED.items():
        assert summary[key] == pytest.approx(value, abs=TOLERANCE), (key, summary[key])
    for key, value in BASELINES.items():
        assert summary[key] == pytest.approx(value, abs=0.005), (key, summary[key])


def test_quality_learned_embedder_beats_both_baselines_by_a_wide_margin(
    summary: dict,
) -> None:
    best_baseline = max(summary["pixel_recall_at_1"], summary["histogram_recall_at_1"])
    for kind in ("", "crop_"):
        baseline = max(
            summary[f"pixel_{kind}recall_at_1"], summary[f"histogram_{kind}recall_at_1"]
        )
        learned = summary[f"embedder_{kind}recall_at_1"]
        assert learned >= 2 * baseline and learned - baseline >= 0.2, (kind, summary)
    assert summary["recall_at_1"] >= 2 * best_baseline


def test_quality_supervised_beats_self_supervised(summary: dict) -> None:
    assert summary["recall_at_1"] > summary["selfsup_recall_at_1"], summary


def test_quality_index_finds_what_exact_search_finds(summary: dict) -> None:
    assert summary["ann_recall_at_10"] >= 0.95, summary["ann_recall_at_10"]


def test_quality_dedup_threshold_keeps_its_precision_on_held_out_pairs(
    summary: dict,
) -> None:
    assert summary["dedup_precision"] >= 0.99, summary


def test_quality_crops_are_easier_than_whole_photos(summary: dict) -> None:
    assert summary["crop_recall_at_1"] >= summary["recall_at_1"], summary


@pytest.mark.xfail(
    strict=True,
    reason="bar missed: recall@10 0.769 on whole photos at the quick setting (crops "
    "0.869). Nearly all misses are the embedder's (exact search lacks the item); the "
    "index loses 0.2%. Strict: this fails loudly once met.",
)
def test_quality_embedder_reaches_recall_at_10_of_95_percent(summary: dict) -> None:
    assert summary["recall_at_10"] >= 0.95, summary["recall_at_10"]


@pytest.mark.xfail(
    strict=True,
    reason="bar missed: recall@1 0.548 on whole photos at the quick setting (crops "
    "0.671); the embedder's recipe is still being tuned. Strict: this fails loudly "
    "once met.",
)
def test_quality_embedder_reaches_recall_at_1_of_80_percent(summary: dict) -> None:
    assert summary["recall_at_1"] >= 0.8, summary["recall_at_1"]
