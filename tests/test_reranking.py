"""Re-ranking: filters and their survival report, MMR under hard page rules,
exploration slots with logged probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd_lib.reranking import (
    DiversityInputError,
    DiversityRules,
    ExplorationConfig,
    ExplorationInputError,
    FilterInputError,
    FilterReport,
    apply_filters,
    diversify,
    eligible,
    explore,
    mean_pairwise_similarity,
    not_seen,
    rating_at_most,
    selection_probabilities,
)

# --------------------------------------------------------------------------
# Filters

CANDIDATES = np.array([5, 3, 8, 1, 9, 0])
AVAILABLE = np.array([True, True, False, True, True, True, True, True, False, True])
MATURITY = np.array([0, 0, 1, 0, 2, 1, 0, 0, 3, 4])


def test_filters_keep_order_and_report_survival() -> None:
    kept = apply_filters(
        CANDIDATES,
        {
            "watched": not_seen(CANDIDATES, [3, 9, 42]),
            "region": eligible(CANDIDATES, AVAILABLE),
            "maturity": rating_at_most(CANDIDATES, MATURITY, 2),
        },
    )
    # 3, 9 watched; 8 unavailable; 8 and 9 too mature.
    assert kept.items.tolist() == [5, 1, 0]
    assert kept.positions.tolist() == [0, 3, 5]
    report = kept.report
    assert report.passed == {"watched": 4, "region": 5, "maturity": 4}
    assert report.survival() == pytest.approx(
        {"watched": 4 / 6, "region": 5 / 6, "maturity": 4 / 6}
    )
    assert report.overall == pytest.approx(0.5)
    assert report.candidates_needed(20) == 40
    # Reports add up over requests (what the monitor aggregates).
    total = sum([report, report, report], FilterReport())
    assert (total.n_candidates, total.n_kept) == (18, 9)
    assert total.passed["region"] == 15 and total.overall == pytest.approx(0.5)
    # No filter: everything survives.
    assert apply_filters(CANDIDATES, {}).items.tolist() == CANDIDATES.tolist()


def test_filter_errors_say_what_to_do() -> None:
    with pytest.raises(FilterInputError, match=r"'region' must be a bool mask .*\(6\)"):
        apply_filters(CANDIDATES, {"region": np.ones(5, bool)})
    with pytest.raises(FilterInputError, match="drop the ANN search's -1 padding"):
        apply_filters(np.array([3, -1]), {})
    with pytest.raises(FilterInputError, match="candidate 12 is outside"):
        eligible(np.array([12]), AVAILABLE)
    with pytest.raises(FilterInputError, match="eligible_by_item must be bool"):
        eligible(CANDIDATES, AVAILABLE.astype(int))
    a = apply_filters(CANDIDATES, {"region": eligible(CANDIDATES, AVAILABLE)}).report
    b = apply_filters(CANDIDATES, {"watched": not_seen(CANDIDATES, [3])}).report
    with pytest.raises(FilterInputError, match="cannot add reports of different"):
        _ = a + b
    none = apply_filters(CANDIDATES, {"all": np.zeros(6, bool)}).report
    with pytest.raises(FilterInputError, match="no candidate survived"):
        none.candidates_needed(20)


# --------------------------------------------------------------------------
# Diversity


def _candidates(seed: int, n: int = 60, dim: int = 8):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, dim))
    cluster = rng.integers(0, 5, n)
    embeddings = centres[cluster] + 0.3 * rng.normal(size=(n, dim))
    scores = rng.normal(size=n) + 1.5 * (cluster == 0)  # one cluster scores high
    return scores, embeddings, cluster


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=0, max_size=40),
    st.integers(0, 2**32 - 1),
)
def test_lambda_one_without_rules_is_sorting_by_score(
    rounded: list[int], seed: int
) -> None:
    scores = np.array(rounded, dtype=float)  # small ints: ties are common
    rng = np.random.default_rng(seed)
    page = diversify(
        scores,
        rng.normal(size=(len(scores), 4)),
        rules=DiversityRules(relevance_weight=1.0),
    )
    expected = np.argsort(-scores, kind="stable")[:20]
    assert page.positions.tolist() == expected.tolist()


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 60),
    st.integers(0, 2**32 - 1),
    st.floats(0.0, 1.0),
    st.integers(1, 8),
)
def test_rules_hold_on_random_inputs(
    n: int, seed: int, lam: float, n_genres: int
) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.integers(-1, 6, n)
    genres = rng.integers(0, n_genres, n)
    rules = DiversityRules(relevance_weight=lam)
    page = diversify(
        rng.normal(size=n),
        rng.normal(size=(n, 3)),
        groups=groups,
        genres=genres,
        rules=rules,
    )
    chosen = page.positions
    assert len(set(chosen.tolist())) == len(chosen)  # no candidate twice
    # The group cap is never broken.
    picked_groups = groups[chosen][groups[chosen] >= 0]
    assert np.bincount(picked_groups, minlength=1).max(initial=0) <= 3
    # The page is as long as the cap allows.
    capacity = int((groups < 0).sum()) + sum(
        min(int(c), 3) for c in np.bincount(groups[groups >= 0], minlength=1)
    )
    assert len(chosen) == min(20, capacity)
    assert ("page_size" in page.unmet) == (len(chosen) < 20)
    distinct = len(np.unique(genres[chosen]))
    assert page.n_genres == distinct
    assert ("min_distinct" in page.unmet) == (distinct < 4)
    # Whenever four genres have an uncapped (ungrouped) item, the rule is met.
    if len(np.unique(genres[groups < 0])) >= 4:
        assert distinct >= 4


def test_the_last_slots_fill_missing_genres() -> None:
    # 30 genre-0 items outscore three items of genres 1, 2, 3.
    scores = np.r_[np.linspace(10, 5, 30), [3.0, 2.0, 1.0]]
    genres = np.r_[np.zeros(30, int), [1, 2, 3]]
    page = diversify(
        scores,
        np.ones((33, 2)),
        genres=genres,
        rules=DiversityRules(relevance_weight=1.0),
    )
    assert page.positions.tolist() == [*range(17), 30, 31, 32]
    assert page.ok and page.n_genres == 4


def test_an_impossible_rule_is_reported_not_raised() -> None:
    scores = np.arange(30.0)[::-1]
    two_genres = diversify(scores, np.eye(30), genres=np.arange(30) % 2)
    assert two_genres.unmet == ("min_distinct",) and len(two_genres.positions) == 20
    one_series = diversify(scores[:10], np.eye(10), groups=np.full(10, 7))
    assert one_series.positions.tolist() == [0, 1, 2]
    assert one_series.unmet == ("page_size",)


def test_items_with_several_genres() -> None:
    # Page of 2 needing 4 genres: only the item covering four at once can do it,
    # even though it scores lowest.
    genres = np.array(
        [
            [True, False, False, False, False],
            [False, True, True, False, False],
            [False, False, False, True, True],
            [True, True, True, True, False],
        ]
    )
    page = diversify(
        np.array([4.0, 3.0, 2.0, 1.0]),
        np.eye(4),
        genres=genres,
        rules=DiversityRules(page_size=2, relevance_weight=1.0),
    )
    assert page.positions.tolist() == [3, 0] and page.ok


def test_diversity_rises_as_lambda_falls_and_relevance_pays_for_it() -> None:
    """Averaged over 20 requests of 5 clusters, one of which scores high. (At
    λ = 0 MMR is max-min dispersion, which need not minimize the *mean*
    similarity, so the sweep stops at 0.1.)"""
    lams = [1.0, 0.7, 0.4, 0.1]
    similarity = np.zeros(len(lams))
    relevance = np.zeros(len(lams))
    for seed in range(20):
        scores, embeddings, _ = _candidates(seed)
        for j, lam in enumerate(lams):
            page = diversify(
                scores, embeddings, rules=DiversityRules(relevance_weight=lam)
            )
            similarity[j] += mean_pairwise_similarity(embeddings[page.positions])
            relevance[j] += scores[page.positions].mean()
    assert np.all(np.diff(similarity) < 0), similarity
    assert np.all(np.diff(relevance) < 0), relevance


def test_diversity_input_errors() -> None:
    with pytest.raises(DiversityInputError, match=r"relevance_weight \(λ\)"):
        DiversityRules(relevance_weight=1.5)
    with pytest.raises(DiversityInputError, match="finite 1-D array"):
        diversify(np.array([1.0, np.nan]), np.eye(2))
    with pytest.raises(DiversityInputError, match=r"\(n_candidates=2, dim\)"):
        diversify(np.array([1.0, 2.0]), np.eye(3))
    with pytest.raises(DiversityInputError, match="one int label per candidate"):
        diversify(np.array([1.0, 2.0]), np.eye(2), genres=np.array([0.5, 1.0]))
    assert mean_pairwise_similarity(np.eye(3)) == 0.0
    assert mean_pairwise_similarity(np.ones((3, 2))) == pytest.approx(1.0)


# --------------------------------------------------------------------------
# Exploration

RANKED = np.arange(100, 130)
POOL = np.arange(1000, 1100)
# Half the pool is new (20 impressions), half well known (20 000), all at 10%.
IMPRESSIONS = np.r_[np.full(50, 20), np.full(50, 20_000)]
ENGAGED = IMPRESSIONS // 10


def test_exploration_is_deterministic_for_a_seed() -> None:
    runs = [
        explore(RANKED, POOL, IMPRESSIONS, ENGAGED, np.random.default_rng(seed))
        for seed in (3, 3, 4)
    ]
    a, b, c = runs
    for name in ("items", "positions", "explored_items", "probabilities"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.positions.tolist(), a.explored_items.tolist()) != (
        c.positions.tolist(),
        c.explored_items.tolist(),
    )
    assert len(a.items) == 20 and a.is_exploration.sum() == 1
    # The other 19 slots are the ranked list's best, in order.
    assert a.items[~a.is_exploration].tolist() == RANKED[:19].tolist()
    assert a.items[a.positions].tolist() == a.explored_items.tolist()


def test_fewer_impressions_get_explored_more() -> None:
    p = selection_probabilities(IMPRESSIONS, ENGAGED, np.random.default_rng(0))
    assert p.sum() == pytest.approx(1.0)
    assert p.min() >= 0.05 / 100 - 1e-12  # the uniform share keeps every item
    assert p[:50].sum() > 0.9
    picks = [
        explore(RANKED, POOL, IMPRESSIONS, ENGAGED, np.random.default_rng(s))
        for s in range(200)
    ]
    new = sum(int(s.explored_items[0] < 1050) for s in picks)
    assert new > 170


def test_the_logged_probability_is_the_one_used() -> None:
    slate = explore(RANKED, POOL, IMPRESSIONS, ENGAGED, np.random.default_rng(9))
    p = selection_probabilities(IMPRESSIONS, ENGAGED, np.random.default_rng(9))
    chosen = int(np.flatnonzero(slate.explored_items[0] == POOL)[0])
    assert slate.probabilities[0] == pytest.approx(p[chosen])
    # Two slots: the second probability is conditional on the first pick.
    config = ExplorationConfig(n_slots=2)
    two = explore(
        RANKED, POOL, IMPRESSIONS, ENGAGED, np.random.default_rng(9), config=config
    )
    first = int(np.flatnonzero(two.explored_items[0] == POOL)[0])
    second = int(np.flatnonzero(two.explored_items[1] == POOL)[0])
    assert two.probabilities[0] == pytest.approx(p[first])
    assert two.probabilities[1] == pytest.approx(p[second] / (1 - p[first]))
    assert len(set(two.items.tolist())) == 20


def test_fixed_positions_short_pages_and_pool_items_already_shown() -> None:
    config = ExplorationConfig(positions=(19,))
    rng = np.random.default_rng(0)
    slate = explore(RANKED, POOL, IMPRESSIONS, ENGAGED, rng, config=config)
    assert slate.positions.tolist() == [19]
    short = explore(RANKED[:5], POOL, IMPRESSIONS, ENGAGED, rng, config=config)
    assert short.positions.tolist() == [5] and len(short.items) == 6
    # The only pool item is already on the page: nothing to explore.
    none = explore(RANKED, RANKED[:1], [3], [0], rng)
    assert none.items.tolist() == RANKED[:19].tolist() and len(none.positions) == 0
    late = ExplorationConfig(earliest_position=15)
    for seed in range(20):
        got = explore(
            RANKED, POOL, IMPRESSIONS, ENGAGED, np.random.default_rng(seed), config=late
        )
        assert 15 <= got.positions[0] <= 19


def test_exploration_input_errors() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ExplorationInputError, match="0 <= engaged <= impressions"):
        explore(RANKED, POOL[:2], [5, 5], [6, 1], rng)
    with pytest.raises(ExplorationInputError, match="pool lists an item twice"):
        explore(RANKED, np.array([1, 1]), [5, 5], [1, 1], rng)
    with pytest.raises(ExplorationInputError, match="must name n_slots=2 slots"):
        ExplorationConfig(n_slots=2, positions=(3,))
    with pytest.raises(ExplorationInputError, match="exceeds page_size=20"):
        explore(RANKED, POOL, IMPRESSIONS, ENGAGED, rng, config=ExplorationConfig(21))


def test_filter_diversify_explore_compose() -> None:
    """The order a feed request runs them in, on one random request."""
    rng = np.random.default_rng(1)
    candidates = rng.choice(500, 200, replace=False)
    scores = rng.normal(size=200)
    kept = apply_filters(candidates, {"watched": not_seen(candidates, candidates[::3])})
    page = diversify(
        scores[kept.positions],
        rng.normal(size=(200, 8))[kept.positions],
        groups=(candidates % 40)[kept.positions],
        genres=(candidates % 7)[kept.positions],
        rules=DiversityRules(page_size=19),
    )
    slate = explore(kept.items[page.positions], POOL, IMPRESSIONS, ENGAGED, rng)
    assert page.ok and len(slate.items) == 20
    assert not np.isin(slate.items, candidates[::3]).any()


def test_a_filter_report_round_trips_through_its_dict():
    report = FilterReport(10, {"in_stock": 7, "seen": 9}, 6)
    fields = report.to_dict()
    assert fields == {
        "n_candidates": 10,
        "passed": {"in_stock": 7, "seen": 9},
        "n_kept": 6,
    }
    assert FilterReport(**fields) == report
