"""The retrieval baselines: most popular (decayed, per region) and implicit ALS."""

from __future__ import annotations

import numpy as np
import pytest
from recsys_synthetic import make_recsys

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.models import MatrixFactorization, ModelInputError, MostPopular
from mlsd_lib.models.baselines import NotFittedError

K = 50


def log(user, item, time, engaged=None, n_users=3, n_items=5) -> Interactions:
    engaged = np.ones(len(user), bool) if engaged is None else engaged
    return Interactions.from_arrays(
        user, item, time, engaged, n_users=n_users, n_items=n_items
    )


@pytest.fixture(scope="module")
def world():
    return make_recsys(n_users=1000, beta=0.7, affinity=6.0, new_item_share=0.05)


def hit_rate(top: np.ndarray, targets: np.ndarray) -> float:
    return float((top == targets[:, None]).any(axis=1).mean())


def test_most_popular_counts_engaged_events_and_breaks_ties_by_id() -> None:
    events = log(
        [0, 1, 2, 0, 1, 2, 0],
        [3, 3, 3, 1, 1, 4, 2],
        [0, 1, 2, 3, 4, 5, 6],
        engaged=np.array([1, 1, 1, 1, 1, 1, 0], bool),  # item 2 never engaged
    )
    top = MostPopular().fit(events).recommend(np.array([0, 1]), 4)
    np.testing.assert_array_equal(top, [[3, 1, 4, 0], [3, 1, 4, 0]])


def test_recency_decay_lets_a_recent_item_overtake_an_old_hit() -> None:
    old_hit = [0] * 4  # item 0: four plays at t = 0
    recent = [1] * 2  # item 1: two plays at t = 10
    events = log([0, 1, 2, 0, 1, 2], old_hit + recent, [0, 0, 0, 0, 10, 10])
    assert MostPopular().fit(events).recommend(np.array([0]), 1)[0, 0] == 0
    decayed = MostPopular(half_life=2.0).fit(events)
    assert decayed.recommend(np.array([0]), 1)[0, 0] == 1
    np.testing.assert_allclose(decayed.scores_[0, :2], [4 * 0.5**5, 2.0])


def test_per_region_popularity_with_a_fallback_for_an_empty_region() -> None:
    events = log([0, 0, 1, 1, 1, 1], [0, 0, 2, 2, 1, 2], [0, 1, 2, 3, 4, 5])
    regions = np.array([0, 1, 2])  # user 2's region has no events
    popular = MostPopular().fit(events, user_group=regions)
    top = popular.recommend(np.array([0, 1, 2]), 1)
    np.testing.assert_array_equal(top[:, 0], [0, 2, 2])  # region 2: overall top
    with pytest.raises(ModelInputError, match="one non-negative group id per user"):
        MostPopular().fit(events, user_group=np.array([0, 1]))


def test_excluded_items_are_skipped_per_user() -> None:
    events = log([0, 1, 2, 0, 1], [0, 0, 0, 1, 2], [0, 1, 2, 3, 4])
    seen = log([0, 0, 1], [0, 1, 4], [0, 0, 0])
    top = MostPopular().fit(events).recommend(np.array([0, 1, 2]), 3, exclude=seen)
    np.testing.assert_array_equal(top, [[2, 3, 4], [0, 1, 2], [0, 1, 2]])


def test_most_popular_refuses_misuse() -> None:
    with pytest.raises(NotFittedError, match=r"call fit\(interactions\) first"):
        MostPopular().recommend(np.array([0]), 1)
    popular = MostPopular().fit(log([0], [1], [0]))
    with pytest.raises(ModelInputError, match=r"k must lie in \[1, n_items=5\]"):
        popular.recommend(np.array([0]), 6)
    with pytest.raises(ModelInputError, match=r"user ids must lie in \[0, n_users=3\)"):
        popular.recommend(np.array([3]), 1)
    with pytest.raises(ModelInputError, match="half_life must be > 0"):
        MostPopular(half_life=0.0)


def test_matrix_factorization_beats_popularity_and_is_deterministic(world) -> None:
    train, held_out = world.interactions.split_at(world.split_time)
    popularity = hit_rate(
        MostPopular().fit(train).recommend(held_out.user, K), held_out.item
    )
    mf = MatrixFactorization(factors=16, regularization=0.05, alpha=10.0).fit(train)
    # Held-out plays include re-watches (a quarter here), so nothing is excluded.
    top = mf.recommend(held_out.user, K, exclude_seen=False)
    assert hit_rate(top, held_out.item) > popularity + 0.08
    again = MatrixFactorization(factors=16, regularization=0.05, alpha=10.0).fit(train)
    np.testing.assert_array_equal(mf.item_factors, again.item_factors)
    np.testing.assert_array_equal(mf.user_factors, again.user_factors)
    other = MatrixFactorization(factors=16, seed=1).fit(train)
    assert not np.array_equal(mf.item_factors, other.item_factors)


def test_matrix_factorization_excludes_seen_items_and_cannot_place_new_ones(world):
    train, _ = world.interactions.split_at(world.split_time)
    mf = MatrixFactorization(factors=16).fit(train)
    users = np.arange(200)
    top = mf.recommend(users, K)
    seen = set(zip(train.user.tolist(), train.item.tolist(), strict=True))
    assert not any(
        (u, i) in seen for u, row in zip(users, top, strict=True) for i in row
    )
    # An item with no events has no factor: every user scores it 0.
    assert mf.item_factors.shape == (train.n_items, 16)
    np.testing.assert_array_equal(mf.item_factors[world.new_items], 0.0)
    with pytest.raises(NotFittedError, match="MatrixFactorization is not fitted"):
        _ = MatrixFactorization().item_factors
