"""Exploration slots for a batch of feeds: the same policy as one page at a time."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.reranking.batch_exploration import explore_feeds
from mlsd_lib.reranking.exploration import (
    ExplorationConfig,
    ExplorationInputError,
    selection_probabilities,
)

POOL = np.array([10**7, 10**7 + 1, 10**7 + 2, 10**7 + 3])  # never ranked
# Two items never shown (wide posteriors), two shown a lot at a poor rate.
IMPRESSIONS = np.array([0, 0, 5_000, 5_000])
ENGAGED = np.array([0, 0, 50, 50])
FIXED = ExplorationConfig(n_slots=2, positions=(1, 4))


def ranked_feeds(n: int, depth: int = 12) -> np.ndarray:
    return np.arange(n * depth).reshape(n, depth)


def test_fixed_slots_hold_pool_items_and_the_rest_is_the_ranking() -> None:
    ranked = ranked_feeds(50)
    feeds = explore_feeds(
        ranked,
        POOL,
        IMPRESSIONS,
        ENGAGED,
        np.random.default_rng(0),
        page_size=10,
        config=FIXED,
    )
    assert feeds.items.shape == (50, 10)
    assert feeds.explored[:, [1, 4]].all() and feeds.explored.sum() == 100
    assert np.isin(feeds.items[feeds.explored], POOL).all()
    # The other eight slots are each feed's best eight, in order.
    np.testing.assert_array_equal(
        feeds.items[~feeds.explored].reshape(50, 8), ranked[:, :8]
    )
    # No item twice on a page; ranked slots have propensity 1.
    assert all(len(set(row)) == 10 for row in feeds.items.tolist())
    assert (feeds.propensity[~feeds.explored] == 1.0).all()
    explored_p = feeds.propensity[feeds.explored]
    assert ((explored_p > 0) & (explored_p <= 1)).all()


def test_the_logged_propensity_is_the_frequency_of_the_choice() -> None:
    # Many feeds with the same pool: how often each pool item fills the first
    # slot must match the probability logged for it.
    config = ExplorationConfig(n_slots=1, positions=(0,))
    feeds = explore_feeds(
        ranked_feeds(20_000, 5),
        POOL,
        IMPRESSIONS,
        ENGAGED,
        np.random.default_rng(1),
        page_size=5,
        config=config,
    )
    first = feeds.items[:, 0]
    for item in POOL:
        chosen = first == item
        logged = feeds.propensity[chosen, 0]
        assert np.ptp(logged) == 0  # one probability per item for the batch
        assert chosen.mean() == pytest.approx(logged[0], abs=0.01)
    # Thompson sampling favours the two unshown items.
    assert np.isin(first, POOL[:2]).mean() > 0.8
    p = selection_probabilities(IMPRESSIONS, ENGAGED, np.random.default_rng(1), config)
    assert feeds.propensity[first == POOL[0], 0][0] == pytest.approx(p[0])


def test_a_feed_explores_only_what_it_may_show_and_backfills_otherwise() -> None:
    ranked = ranked_feeds(3)
    ranked[1, 2] = POOL[2]  # already on feed 1's page: not explored again there
    allowed = np.array(
        [
            [True, False, False, False],  # only POOL[0]
            [False, False, True, True],  # POOL[2] is on the page: POOL[3] is left
            [False, False, False, False],  # nothing: the slots take the ranking
        ]
    )
    feeds = explore_feeds(
        ranked,
        POOL,
        IMPRESSIONS,
        ENGAGED,
        np.random.default_rng(2),
        allowed=allowed,
        page_size=10,
        config=FIXED,
    )
    assert feeds.items[0, 1] == POOL[0] and feeds.explored[0].sum() == 1
    assert feeds.propensity[0, 1] == pytest.approx(1.0)  # the only choice
    assert feeds.items[1, 1] == POOL[3] and feeds.explored[1].sum() == 1
    assert not feeds.explored[2].any()
    np.testing.assert_array_equal(feeds.items[2], ranked[2, :10])
    # The second slot of feed 0 found nothing left: its next ranked item fills it.
    np.testing.assert_array_equal(feeds.items[0, [0, 2, 3, 4]], ranked[0, [0, 1, 2, 3]])


def test_drawn_positions_are_seeded_and_leave_the_top_alone() -> None:
    config = ExplorationConfig(n_slots=1, earliest_position=3)
    runs = [
        explore_feeds(
            ranked_feeds(40),
            POOL,
            IMPRESSIONS,
            ENGAGED,
            np.random.default_rng(seed),
            page_size=10,
            config=config,
        )
        for seed in (5, 5, 6)
    ]
    np.testing.assert_array_equal(runs[0].items, runs[1].items)
    assert not np.array_equal(runs[0].items, runs[2].items)
    explored_at = np.argmax(runs[0].explored, axis=1)
    assert explored_at.min() >= 3 and len(np.unique(explored_at)) > 1
    # Where the slot lands moves the ranked items: their propensity is unknown.
    assert np.isnan(runs[0].propensity[~runs[0].explored]).all()


def test_batch_exploration_errors_name_the_fix() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ExplorationInputError, match="backfills from its ranking"):
        explore_feeds(ranked_feeds(2, 5), POOL, IMPRESSIONS, ENGAGED, rng, page_size=10)
    with pytest.raises(ExplorationInputError, match="inside the page"):
        explore_feeds(
            ranked_feeds(2),
            POOL,
            IMPRESSIONS,
            ENGAGED,
            rng,
            page_size=10,
            config=ExplorationConfig(n_slots=1, positions=(10,)),
        )
    with pytest.raises(ExplorationInputError, match=r"allowed must be \(feeds=2"):
        explore_feeds(
            ranked_feeds(2),
            POOL,
            IMPRESSIONS,
            ENGAGED,
            rng,
            allowed=np.ones((2, 3)),
            page_size=10,
        )
    with pytest.raises(ExplorationInputError, match="0 <= engaged <= impressions"):
        explore_feeds(
            ranked_feeds(2), POOL, IMPRESSIONS, IMPRESSIONS + 1, rng, page_size=10
        )
