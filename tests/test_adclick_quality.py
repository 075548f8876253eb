"""Quality test: the ad-click models against the world's Bayes-optimal NE.

A *quality* test, not a unit test: it runs ``benchmarks/adclick_quality.py``'s
quick setting (about 2-3 minutes on a 2-core machine) and asserts the targets of
``casestudies/ad_click``, so a silent regression in a model, the training loop
or the world fails CI. Deselect it with ``-k "not quality"`` for a fast run.
"""

from __future__ import annotations

import pytest
from benchmark_modules import quick_summary

pytestmark = pytest.mark.quality  # a slow tier: see `make test-fast`


@pytest.fixture(scope="module")
def summary() -> dict:
    return quick_summary("adclick_quality.py")


@pytest.mark.timeout(600)
def test_quality_best_model_is_within_two_percent_of_the_bayes_ne(
    summary: dict,
) -> None:
    # 1.0174 when written (1.2M training rows; drift alone costs about 0.8% NE).
    assert summary["ne_gap_ratio"] <= 1.02, summary


def test_quality_best_model_is_calibrated(summary: dict) -> None:
    assert summary["calibration_ratio"] == pytest.approx(1.0, abs=0.02), summary


def test_quality_crossing_model_beats_lr_by_one_percent_ne(summary: dict) -> None:
    assert summary["crossing_gain"] >= 0.01, summary
