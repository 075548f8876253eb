"""ROC AUC and log loss against brute force and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd_lib.evaluation import MetricInputError, log_loss, roc_auc
from mlsd_lib.evaluation.metrics import average_ranks


def brute_force_auc(y: list[int], scores: list[float]) -> float:
    positives = [s for label, s in zip(y, scores, strict=True) if label == 1]
    negatives = [s for label, s in zip(y, scores, strict=True) if label == 0]
    wins = sum(
        1.0 if p > n else 0.5 if p == n else 0.0 for p in positives for n in negatives
    )
    return wins / (len(positives) * len(negatives))


@st.composite
def labelled_scores(draw: st.DrawFn) -> tuple[list[int], list[float]]:
    n = draw(st.integers(min_value=2, max_value=40))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))
    labels[0], labels[1] = 0, 1  # both classes present
    # Few distinct values, so ties are common.
    scores = draw(
        st.lists(
            st.sampled_from([-1.0, 0.0, 0.25, 0.5, 0.75, 1.0, 3.0]),
            min_size=n,
            max_size=n,
        )
    )
    return labels, scores


@settings(max_examples=200, deadline=None)
@given(labelled_scores())
def test_auc_matches_brute_force_pairwise(data: tuple[list[int], list[float]]) -> None:
    labels, scores = data
    assert roc_auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))


@settings(max_examples=50, deadline=None)
@given(labelled_scores())
def test_auc_is_invariant_to_monotone_transforms(
    data: tuple[list[int], list[float]],
) -> None:
    labels, scores = data
    transformed = np.exp(np.asarray(scores)) * 3.0 + 1.0
    assert roc_auc(labels, transformed) == pytest.approx(roc_auc(labels, scores))


def test_auc_hand_computed_cases() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    # Pairs (pos, neg): (0.8, 0.1) win, (0.8, 0.4) win, (0.35, 0.1) win,
    # (0.35, 0.4) loss -> 3/4.
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    # One tie between a positive and a negative counts one half: (1 + 0.5) / 2.
    assert roc_auc([1, 0, 0], [0.5, 0.5, 0.1]) == 0.75
    assert roc_auc(np.array([True, False]), [2.0, 1.0]) == 1.0


def test_average_ranks_share_ties() -> None:
    np.testing.assert_array_equal(
        average_ranks([10.0, 20.0, 10.0, 30.0, 20.0]), [1.5, 3.5, 1.5, 5.0, 3.5]
    )


@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0]])
def test_auc_refuses_one_class(labels: list[int]) -> None:
    with pytest.raises(MetricInputError, match="needs both classes"):
        roc_auc(labels, np.linspace(0, 1, len(labels)))


def test_auc_refuses_length_mismatch_nan_and_bad_labels() -> None:
    with pytest.raises(MetricInputError, match="3 labels but 2 scores"):
        roc_auc([0, 1, 1], [0.1, 0.2])
    with pytest.raises(MetricInputError, match="NaN"):
        roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(MetricInputError, match="0/1 or bool"):
        roc_auc([0, 2], [0.1, 0.2])
    with pytest.raises(MetricInputError, match="no labels"):
        roc_auc([], [])


def test_log_loss_hand_computed() -> None:
    assert log_loss([1, 0], [0.8, 0.4]) == pytest.approx(
        -(math.log(0.8) + math.log(0.6)) / 2
    )
    assert log_loss([1, 0], [0.5, 0.5]) == pytest.approx(math.log(2))
    # A confident mistake is large but finite thanks to clipping.
    assert log_loss([1], [0.0], eps=1e-6) == pytest.approx(-math.log(1e-6))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.floats(0.001, 0.999)), min_size=1, max_size=30
    )
)
def test_log_loss_matches_definition(pairs: list[tuple[int, float]]) -> None:
    labels = [y for y, _ in pairs]
    p = [q for _, q in pairs]
    expected = -sum(
        math.log(q) if y else math.log(1 - q) for y, q in zip(labels, p, strict=True)
    ) / len(pairs)
    assert log_loss(labels, p) == pytest.approx(expected)


def test_log_loss_refuses_logits_and_bad_eps() -> None:
    with pytest.raises(MetricInputError, match="apply a sigmoid"):
        log_loss([1, 0], [2.3, -1.0])
    with pytest.raises(MetricInputError, match="eps"):
        log_loss([1], [0.5], eps=0.0)
    with pytest.raises(MetricInputError, match="2 labels but 1 probabilities"):
        log_loss([1, 0], [0.5])
