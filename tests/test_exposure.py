"""Exposure of a log's impressions: concentration, new items, reach, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.exposure import (
    ExposureInputError,
    exposure_summary,
    new_item_share,
    reach,
)
from mlsd_lib.evaluation.ranking import gini


def test_exposure_is_measured_over_the_available_items_only() -> None:
    # Items 10..19 were available; 20..29 had not launched (never counted).
    shown = np.array([12, 12, 12, 15])
    summary = exposure_summary(shown, np.arange(10, 20), fraction=0.1)
    assert summary["top_share"] == pytest.approx(3 / 4)  # the top 1 of 10 items
    assert summary["coverage"] == pytest.approx(2 / 10)
    counts = np.zeros(10)
    counts[[2, 5]] = [3, 1]
    assert summary["gini"] == pytest.approx(gini(counts))
    # The same impressions against a larger catalogue spread thinner.
    wider = exposure_summary(shown, np.arange(0, 40), fraction=0.1)
    assert wider["coverage"] == pytest.approx(2 / 40)
    assert wider["top_share"] == pytest.approx(1.0)  # the top 4 hold everything


def test_uniform_exposure_has_no_concentration() -> None:
    summary = exposure_summary(np.tile(np.arange(100), 3), np.arange(100))
    assert summary == pytest.approx({"top_share": 0.01, "gini": 0.0, "coverage": 1.0})


def test_new_item_share_judges_each_impression_on_its_day() -> None:
    launch = np.array([0, 5, 10])
    items = np.array([0, 1, 2, 1])
    days = np.array([10, 10, 10, 12])
    # Ages 10, 5, 0 and 7 days: launched today counts, 7 days ago does not.
    assert new_item_share(items, days, launch, new_days=7) == pytest.approx(0.5)
    assert new_item_share(items, days, launch, new_days=8) == pytest.approx(0.75)
    assert new_item_share(items, days, launch, new_days=1) == pytest.approx(0.25)


def test_reach_counts_items_shown_often_enough() -> None:
    shown = np.array([1, 1, 2, 3, 7])
    assert reach(shown, [1, 2, 4]) == pytest.approx(2 / 3)
    assert reach(shown, [1, 2, 4], min_impressions=2) == pytest.approx(1 / 3)
    assert reach(shown, [4, 4]) == 0.0  # duplicates count once


def test_exposure_errors_say_what_to_pass() -> None:
    with pytest.raises(ExposureInputError, match="not in available_items"):
        exposure_summary([1, 50], np.arange(10))
    with pytest.raises(ExposureInputError, match="no impressions"):
        exposure_summary([], np.arange(10))
    with pytest.raises(ExposureInputError, match="before its launch on day 5"):
        new_item_share([1], [3], [0, 5])
    with pytest.raises(ExposureInputError, match="one day per impression"):
        new_item_share([0, 1], [3], [0, 0])
    with pytest.raises(ExposureInputError, match="one launch day per item id"):
        new_item_share([4], [3], [0, 0])
    with pytest.raises(ExposureInputError, match="integer item ids"):
        reach([1.5], [1])
    with pytest.raises(MlsdError, match="min_impressions must be >= 1"):
        reach([1], [1], min_impressions=0)
    assert issubclass(ExposureInputError, ValueError)
