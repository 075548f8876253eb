"""The dedup threshold: the curve and the choice by hand, similarities and
distances, ties, a brute-force check of the rule, held-out quality, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd_lib.evaluation.dedup import (
    DedupThresholdError,
    choose_dedup_threshold,
    dedup_quality,
    precision_recall_curve,
)

SCORES = np.array([0.95, 0.9, 0.85, 0.8, 0.7, 0.6])
LABELS = np.array([True, True, False, True, False, False])


def test_the_curve_by_hand() -> None:
    curve = precision_recall_curve(SCORES, LABELS)
    assert curve.thresholds.tolist() == SCORES.tolist()
    np.testing.assert_allclose(curve.precision, [1, 1, 2 / 3, 3 / 4, 3 / 5, 1 / 2])
    np.testing.assert_allclose(curve.recall, [1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert curve.flagged.tolist() == [1, 2, 3, 4, 5, 6] and len(curve) == 6
    # Pairs in any order give the same curve.
    order = np.array([3, 0, 5, 1, 4, 2])
    again = precision_recall_curve(SCORES[order], LABELS[order])
    np.testing.assert_array_equal(again.precision, curve.precision)


def test_the_highest_recall_at_the_target_precision() -> None:
    strict = choose_dedup_threshold(SCORES, LABELS, 1.0)
    assert (strict.threshold, strict.precision, strict.recall) == (0.9, 1.0, 2 / 3)
    loose = choose_dedup_threshold(SCORES, LABELS, 0.75)
    assert (loose.threshold, loose.precision, loose.recall) == (0.8, 0.75, 1.0)
    assert (loose.n_pairs, loose.n_duplicates, loose.kind) == (6, 3, "similarity")
    assert loose.is_duplicate([0.8, 0.79]).tolist() == [True, False]
    # At 0.6 recall is 1 too (every threshold down to 0.6): the higher
    # precision, 0.75 at 0.8, wins the tie.
    assert choose_dedup_threshold(SCORES, LABELS, 0.5).threshold == 0.8


def test_distances_mirror_similarities() -> None:
    distances = 1.0 - SCORES
    chosen = choose_dedup_threshold(distances, LABELS, 0.75, kind="distance")
    assert chosen.threshold == pytest.approx(0.2) and chosen.recall == 1.0
    assert chosen.is_duplicate([chosen.threshold, 0.21]).tolist() == [True, False]
    curve = precision_recall_curve(distances, LABELS, kind="distance")
    np.testing.assert_allclose(curve.thresholds, distances)  # smallest first


def test_tied_scores_are_called_together() -> None:
    # A duplicate and a distinct pair at 0.9: a threshold takes both or neither.
    scores = np.array([0.95, 0.9, 0.9, 0.5])
    labels = np.array([True, True, False, True])
    curve = precision_recall_curve(scores, labels)
    assert curve.thresholds.tolist() == [0.95, 0.9, 0.5]
    np.testing.assert_allclose(curve.precision, [1.0, 2 / 3, 3 / 4])
    assert choose_dedup_threshold(scores, labels, 0.99).threshold == 0.95


def test_the_rule_against_every_threshold() -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(400) < 0.3
    scores = np.round(rng.normal(labels * 1.5, 1.0), 1)  # rounding: many ties
    chosen = choose_dedup_threshold(scores, labels, 0.9)
    best_recall = 0.0
    for t in np.unique(scores):
        called = scores >= t
        precision = (called & labels).sum() / called.sum()
        if precision >= 0.9:
            best_recall = max(best_recall, (called & labels).sum() / labels.sum())
    assert chosen.recall == pytest.approx(best_recall) and chosen.precision >= 0.9
    quality = dedup_quality(scores, labels, chosen)
    assert quality.precision == pytest.approx(chosen.precision)
    assert quality.recall == pytest.approx(chosen.recall)


def test_quality_on_held_out_pairs() -> None:
    chosen = choose_dedup_threshold(SCORES, LABELS, 1.0)  # >= 0.9
    held_out = np.array([0.99, 0.92, 0.91, 0.5])
    truth = np.array([True, False, True, True])
    quality = dedup_quality(held_out, truth, chosen)
    assert (quality.precision, quality.recall) == (2 / 3, 2 / 3)
    assert (quality.flagged, quality.n_pairs, quality.n_duplicates) == (3, 4, 3)
    by_number = dedup_quality(1 - held_out, truth, 0.1, kind="distance")
    assert by_number.flagged == 3  # 0.01, 0.08, 0.09 are within 0.1
    nothing = dedup_quality(held_out, truth, 1.5)
    assert math.isnan(nothing.precision) and nothing.recall == 0.0
    with pytest.raises(DedupThresholdError, match=r"kind='distance' contradicts"):
        dedup_quality(held_out, truth, chosen, kind="distance")


def test_an_unreachable_precision_names_the_best_reachable() -> None:
    scores = np.array([0.9, 0.8, 0.7])
    labels = np.array([False, True, True])
    with pytest.raises(
        DedupThresholdError,
        match=r"no threshold reaches precision 0.99 on these 3 pairs \(2 "
        r"duplicates\): the best reachable is 0.6667 \(at similarity >= 0.7, "
        r"recall 1.0000\)\. Lower target_precision",
    ):
        choose_dedup_threshold(scores, labels, 0.99)
    with pytest.raises(DedupThresholdError, match=r"at distance <= 0.3,"):
        choose_dedup_threshold(1 - scores, labels, 0.99, kind="distance")


@pytest.mark.parametrize(
    ("scores", "labels", "kwargs", "message"),
    [
        ([0.5, 0.4], [False, False], {}, r"none of the 2 pairs is labelled a dup"),
        ([0.5, 0.4], [True, True], {}, r"all 2 pairs are labelled duplicates"),
        ([0.5, np.nan], [True, False], {}, r"scores hold NaN .*first at pair 1"),
        ([0.5, 0.4], [True], {}, r"scores and is_duplicate must be 1-D and of one"),
        ([], [], {}, r"no labelled pairs"),
        ([0.5, 0.4], [1, 2], {}, r"is_duplicate must be bool or 0/1"),
        ([0.5, 0.4], [1, 0], {"kind": "cosine"}, r"kind must be 'similarity'"),
        ([0.5, 0.4], [1, 0], {"target_precision": 0}, r"target_precision must be"),
    ],
)
def test_errors(scores, labels, kwargs: dict, message: str) -> None:
    with pytest.raises(DedupThresholdError, match=message):
        choose_dedup_threshold(scores, labels, **kwargs)
