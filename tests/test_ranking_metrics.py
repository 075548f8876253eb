"""Ranking metrics on cases small enough to compute by hand, and their laws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd_lib.datasets import Interactions
from mlsd_lib.evaluation import (
    RankingInputError,
    RelevantItems,
    catalogue_coverage,
    gini,
    hit_rate_at_k,
    mean_reciprocal_rank,
    ndcg_at_k,
    precision_at_k,
    rank_top_k,
    recall_at_k,
    relevant_items,
    top_share,
)

RANKED = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 0, 1, 2]])
# User 1 has nothing held out: left out of every average.
RELEVANT = RelevantItems.from_lists([[10, 4, 2], [], [0]])


def test_relevant_items_are_sorted_unique_csr() -> None:
    assert RELEVANT.indptr.tolist() == [0, 3, 3, 4]
    assert RELEVANT.user(0).tolist() == [2, 4, 10]
    assert RelevantItems.from_lists([[3, 3, 1]]).indices.tolist() == [1, 3]
    graded = RelevantItems.from_lists([[3, 3, 1]], gains=[[1.0, 5.0, 2.0]])
    assert graded.gains.tolist() == [2.0, 5.0]  # a repeat keeps its largest gain


def test_recall_precision_hit_rate_mrr_by_hand() -> None:
    # User 0: top 2 = [1, 2] holds 2 of {2, 4, 10}; user 2: [9, 0] holds 0 of {0}.
    assert recall_at_k(RANKED, RELEVANT, 2) == pytest.approx((1 / 3 + 1) / 2)
    assert precision_at_k(RANKED, RELEVANT, 2) == pytest.approx(0.5)
    assert recall_at_k(RANKED, RELEVANT, 4) == pytest.approx((2 / 3 + 1) / 2)
    assert precision_at_k(RANKED, RELEVANT, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert hit_rate_at_k(RANKED, RELEVANT, 1) == 0.0
    assert hit_rate_at_k(RANKED, RELEVANT, 2) == 1.0
    # Both users' first hit is at position 2.
    assert mean_reciprocal_rank(RANKED, RELEVANT) == pytest.approx(0.5)
    assert mean_reciprocal_rank(RANKED, RELEVANT, k=1) == 0.0


def test_k_beyond_the_list_and_empty_slots_are_misses() -> None:
    # k = 6 > 4 positions: recall as at k = 4, precision divides by 6.
    assert recall_at_k(RANKED, RELEVANT, 6) == pytest.approx((2 / 3 + 1) / 2)
    assert precision_at_k(RANKED, RELEVANT, 6) == pytest.approx((2 / 6 + 1 / 6) / 2)
    padded = np.array([[2, -1, -1], [-1, -1, -1], [-1, -1, -1]])
    assert recall_at_k(padded, RELEVANT, 3) == pytest.approx((1 / 3 + 0) / 2)


def test_ndcg_by_hand_binary_and_graded() -> None:
    # Binary, user 0: hits at positions 2 and 4; ideal: 3 hits at 1, 2, 3.
    dcg0 = 1 / math.log2(3) + 1 / math.log2(5)
    idcg0 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    dcg2, idcg2 = 1 / math.log2(3), 1.0
    expected = (dcg0 / idcg0 + dcg2 / idcg2) / 2
    assert ndcg_at_k(RANKED, RELEVANT, 4) == pytest.approx(expected)
    # Graded, k = 3: item 2 (gain 3) at position 2; the ideal order is 3, 2, 1
    # over the user's whole catalogue (item 10 was never ranked but counts).
    graded = RelevantItems.from_lists([[2, 4, 10]], gains=[[3.0, 1.0, 2.0]])
    got = ndcg_at_k(RANKED[:1], graded, 3)
    assert got == pytest.approx((3 / math.log2(3)) / (3 + 2 / math.log2(3) + 0.5))
    # Ties among gains do not change the ideal DCG.
    tied = RelevantItems.from_lists([[7, 8]], gains=[[2.0, 2.0]])
    assert ndcg_at_k(np.array([[8, 7]]), tied, 2) == pytest.approx(1.0)
    assert ndcg_at_k(np.array([[7, 8]]), tied, 2) == pytest.approx(1.0)
    # A user whose gains are all 0 is not averaged (IDCG = 0).
    zero = RelevantItems.from_lists([[1], [5]], gains=[[0.0], [1.0]])
    assert ndcg_at_k(np.array([[1, 5], [6, 5]]), zero, 2) == pytest.approx(
        1 / math.log2(3)
    )


def test_rank_top_k_breaks_ties_by_item_id_and_excludes() -> None:
    scores = np.array([[0.5, 0.9, 0.5, 0.9, 0.1], [0.0, 0.0, 0.0, 0.0, 0.0]])
    assert rank_top_k(scores, 3).tolist() == [[1, 3, 0], [0, 1, 2]]
    seen = RelevantItems.from_lists([[3], [0, 1, 2, 3]])
    assert rank_top_k(scores, 3, exclude=seen).tolist() == [[1, 0, 2], [4, -1, -1]]
    assert rank_top_k(scores, 6)[0].tolist() == [1, 3, 0, 2, 4, -1]
    with pytest.raises(RankingInputError, match="without NaN"):
        rank_top_k(np.array([[np.nan, 1.0]]), 1)


def test_relevant_items_from_interactions() -> None:
    log = Interactions.from_arrays(
        user=[0, 2, 0, 2, 1, 0],
        item=[3, 1, 3, 0, 2, 4],
        time=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        engaged=[1, 1, 1, 0, 1, 1],
        n_users=3,
        n_items=5,
    )
    every = relevant_items(log)
    assert [every.user(u).tolist() for u in range(3)] == [[3, 4], [2], [1]]
    some = relevant_items(log, users=[2, 0], engaged_only=False)
    assert [some.user(j).tolist() for j in range(2)] == [[0, 1], [3, 4]]
    graded = relevant_items(log, users=[0], gains=[4.0, 5, 2.0, 5, 5, 1.0])
    assert graded.gains.tolist() == [4.0, 1.0]  # item 3 seen twice: largest gain
    with pytest.raises(RankingInputError, match="must not repeat"):
        relevant_items(log, users=[0, 0])
    with pytest.raises(RankingInputError, match=r"indices in \[0, 3\)"):
        relevant_items(log, users=[3])


def test_bad_inputs_say_what_to_do() -> None:
    with pytest.raises(RankingInputError, match="lists item 2 more than once"):
        recall_at_k(np.array([[2, 2]]), RelevantItems.from_lists([[2]]), 2)
    with pytest.raises(RankingInputError, match="3 ranked lists but relevance for 1"):
        recall_at_k(RANKED, RelevantItems.from_lists([[2]]), 2)
    with pytest.raises(RankingInputError, match="k must be a positive integer"):
        recall_at_k(RANKED, RELEVANT, 0)
    with pytest.raises(RankingInputError, match="2-D int array"):
        recall_at_k(RANKED.astype(float), RELEVANT, 1)
    with pytest.raises(RankingInputError, match="no user has a relevant item"):
        recall_at_k(RANKED[:1], RelevantItems.from_lists([[]]), 2)
    with pytest.raises(RankingInputError, match="no user has a positive gain"):
        ndcg_at_k(RANKED[:1], RelevantItems.from_lists([[]]), 2)
    with pytest.raises(RankingInputError, match="sorted and unique"):
        RelevantItems(np.array([0, 2]), np.array([3, 1]))
    with pytest.raises(RankingInputError, match="non-negative"):
        RelevantItems(np.array([0, 1]), np.array([3]), np.array([-1.0]))


def test_coverage_top_share_and_gini_by_hand() -> None:
    assert catalogue_coverage(np.array([[0, 1], [1, 2], [-1, 2]]), 10) == 0.3
    with pytest.raises(RankingInputError, match="holds item 12 but n_items=10"):
        catalogue_coverage(np.array([12]), 10)
    # 100 items: item 0 shown 50 times, item 1 30 times, the other 98 once.
    shown = np.r_[np.zeros(50, int), np.ones(30, int), np.arange(2, 100)]
    assert top_share(shown, 100) == pytest.approx(50 / 178)
    assert top_share(shown, 100, fraction=0.02) == pytest.approx(80 / 178)
    assert top_share(np.arange(300), 300) == pytest.approx(3 / 300)  # uniform
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0)
    assert gini([0, 0, 0, 5]) == pytest.approx(3 / 4)
    assert gini([3, 1, 2]) == pytest.approx(2 / 9)  # mean |xi - xj| / (2 mean)
    with pytest.raises(RankingInputError, match="not all zero"):
        gini([0, 0])


@st.composite
def lists_and_relevance(draw: st.DrawFn) -> tuple[np.ndarray, RelevantItems, int]:
    n_items = draw(st.integers(2, 30))
    n_users = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    ranked = np.array([rng.permutation(n_items) for _ in range(n_users)])
    rows = [
        rng.choice(n_items, rng.integers(0, n_items + 1), replace=False)
        for _ in range(n_users)
    ]
    gains = [rng.integers(0, 4, len(row)).astype(float) for row in rows]
    rows[0] = np.r_[rows[0], [] if len(rows[0]) else [0]].astype(int)
    gains[0] = np.r_[gains[0], [] if len(gains[0]) else [1.0]] + 1  # one positive
    return ranked, RelevantItems.from_lists(rows, gains), n_items


@settings(max_examples=60, deadline=None)
@given(lists_and_relevance())
def test_recall_grows_with_k_and_reaches_one(
    case: tuple[np.ndarray, RelevantItems, int],
) -> None:
    ranked, relevant, n_items = case
    recalls = [recall_at_k(ranked, relevant, k) for k in range(1, n_items + 1)]
    assert np.all(np.diff(recalls) >= -1e-12)
    assert recalls[-1] == pytest.approx(1.0)  # every list ranks the whole catalogue
    for k in (1, n_items // 2 + 1, n_items + 3):
        for metric in (precision_at_k, hit_rate_at_k, ndcg_at_k):
            assert 0.0 <= metric(ranked, relevant, k) <= 1.0 + 1e-12


@settings(max_examples=60, deadline=None)
@given(lists_and_relevance(), st.integers(1, 40))
def test_ndcg_of_the_ideal_order_is_one(
    case: tuple[np.ndarray, RelevantItems, int], k: int
) -> None:
    _, relevant, n_items = case
    # Score each item by its gain: rank_top_k then returns the ideal order.
    scores = np.zeros((relevant.n_users, n_items))
    scores[relevant.rows(), relevant.indices] = relevant.gains
    ideal = rank_top_k(scores, n_items)
    assert ndcg_at_k(ideal, relevant, k) == pytest.approx(1.0)
    reversed_order = ideal[:, ::-1].copy()
    assert ndcg_at_k(reversed_order, relevant, k) <= 1.0 + 1e-12


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=25),
    st.integers(1, 30),
)
def test_rank_top_k_agrees_with_a_stable_sort(values: list[float], k: int) -> None:
    scores = np.round(np.array([values]), 1)  # rounding makes ties common
    expected = np.argsort(-scores[0], kind="stable")[:k]
    got = rank_top_k(scores, k)[0]
    assert got[: len(expected)].tolist() == expected.tolist()
    assert (got[len(expected) :] == -1).all()
