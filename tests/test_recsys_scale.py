"""The recommender case study's numbers: the page's estimate and the world's profile."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.capacity import CapacityInputError, format_si
from mlsd_lib.recsys.scale import (
    INDEX_KINDS,
    FeedAssumptions,
    index_bytes_per_vector,
    production_estimate,
    production_requirements,
    side_by_side,
    world_requirements,
)
from mlsd_lib.recsys.world_profile import (
    clickbait_summary,
    engagement_by_position,
    exposure_concentration,
    minutes_by_kind,
    profile_log,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_log import RecsysLogError
from mlsd_lib.worlds.recsys_policies import LegacyPolicy, RandomPolicy

# -- the page's estimate -------------------------------------------------------------


def test_the_estimate_reproduces_the_case_study_page() -> None:
    """Every figure ``casestudies/recommender/index.md`` derives by hand."""
    e = production_estimate()
    page = {
        "requests per day": 5e8,
        "average QPS": 5_790,  # "about 5.8 k QPS"
        "peak QPS": 17_400,  # "about 17 k QPS"
        "average candidates ranked per second": 2.9e6,
        "peak inferences per second": 8.7e6,  # candidates ranked at peak
        "full-catalogue scores per second at peak": 1.74e11,
        "online feature store memory": 64e9,  # users: 2e8 x 320 B
        "item features in the gateway's memory": 3.36e9,
        "online store payload (users + items)": 67.36e9,  # "about 67 GB"
        "online store with Redis overhead": 134.72e9,  # "about 135 GB"
        "event log per day": 1.5e12,  # impressions
        "play log per day": 60e9,
        "event log per day in parquet": 312e9,  # "about 310 GB/day"
        "embedding index memory": 2.56e9,  # the two-tower item table
        "ranker ID embeddings": 1.28e9,
        "Flat index memory": 2.56e9,
        "HNSW index memory": 5.12e9,  # "about 5.1 GB"
        "IVF-PQ index memory": 240e6,
    }
    for quantity, figure in page.items():
        assert e[quantity] == pytest.approx(figure, rel=0.01), quantity
    assert e["ranker replicas at peak"] == 145  # 8.68M / (100k x 0.6), rounded up


def test_index_sizes_scale_with_the_catalogue_and_the_layout() -> None:
    small = production_estimate()
    big = production_estimate(production_requirements(catalog_items=1e9))
    for kind in INDEX_KINDS:
        assert big[f"{kind} index memory"] == pytest.approx(
            100 * small[f"{kind} index memory"]
        )
    assert big["IVF-PQ index memory"] == pytest.approx(24e9)  # the page's 24 GB
    assert index_bytes_per_vector("HNSW", 64) - index_bytes_per_vector("Flat", 64) == (
        2 * 32 * 4
    )
    # PQ codes do not grow with the embedding width; flat vectors do.
    assert index_bytes_per_vector("IVF-PQ", 256) == index_bytes_per_vector("IVF-PQ", 64)
    assert index_bytes_per_vector("Flat", 256) == 4 * index_bytes_per_vector("Flat", 64)


def test_replicas_follow_candidates_and_throughput() -> None:
    base = production_estimate()["ranker replicas at peak"]
    half = production_estimate(production_requirements(candidates_per_request=250))
    assert half["ranker replicas at peak"] == pytest.approx(base / 2, abs=1)
    faster = production_estimate(
        assumptions=FeedAssumptions(ranker_pairs_per_replica_s=200_000)
    )
    assert faster["ranker replicas at peak"] == pytest.approx(base / 2, abs=1)


def test_bad_assumptions_are_refused_with_the_rule() -> None:
    with pytest.raises(CapacityInputError, match=r"unknown index kind 'IVF'"):
        index_bytes_per_vector("IVF", 64)
    with pytest.raises(CapacityInputError, match=r"play_rate .* in \[0, 1\]"):
        FeedAssumptions(play_rate=1.5)
    with pytest.raises(CapacityInputError, match=r"target_utilization"):
        FeedAssumptions(target_utilization=0.0)
    with pytest.raises(CapacityInputError, match=r"redis_overhead and parquet_ratio"):
        FeedAssumptions(parquet_ratio=0.5)
    with pytest.raises(CapacityInputError, match=r"needs catalog_items"):
        production_estimate(production_requirements(catalog_items=0))
    with pytest.raises(CapacityInputError, match="at least one estimate"):
        side_by_side({})


# -- the world, sized and profiled -----------------------------------------------------


@pytest.fixture(scope="module")
def world() -> RecsysWorld:
    return RecsysWorld(RecsysWorldConfig.quick(seed=3))


@pytest.fixture(scope="module")
def log(world: RecsysWorld):
    """Two days of legacy traffic (the world moves on: fork before reusing it)."""
    return world.fork().simulate(LegacyPolicy(world, seed=3), 0, 2)


def test_world_requirements_are_the_world_s_traffic(world: RecsysWorld) -> None:
    scale = world.scale_summary()
    e = production_estimate(world_requirements(scale))
    assert e["requests per day"] == pytest.approx(scale.sessions_per_day)
    assert e["online feature store memory"] == world.n_users * (120 + 200)
    table = side_by_side({"world": e, "production": production_estimate()})
    assert list(table.columns) == ["world", "production", "ratio"]
    ratio = 5e8 / scale.sessions_per_day
    assert table.loc["requests per day", "ratio"] == format_si(ratio)


def test_profile_matches_the_world_s_expected_traffic(world: RecsysWorld, log) -> None:
    p = profile_log(log)
    assert p.days == 2 and p.impressions == len(log)
    assert p.engaged_rate == pytest.approx(log.engaged.mean())
    assert p.engaged_per_click == pytest.approx(log.engaged.sum() / log.clicked.sum())
    # Requests per active user-day: the world's configuration predicts it.
    expected = world.scale_summary().requests_per_active_user
    assert p.requests_per_user_day == pytest.approx(expected, rel=0.1)
    assert p.engaged_plays_per_user_day == pytest.approx(
        p.engaged_rate * p.impressions / p.user_days
    )
    assert 0.5 <= p.median_engaged_minutes < p.p90_engaged_minutes
    assert set(p.to_frame().quantity) >= {"engaged_rate", "minutes_per_user_day"}


def test_position_curve_separates_examination_from_relevance(
    world: RecsysWorld, log
) -> None:
    table = engagement_by_position(world, log)
    slots = world.config.feed_size
    assert list(table.position) == list(range(slots))
    assert table.examination[0] == 1.0  # every user looks at the top slot
    assert np.all(np.diff(table.examination) <= 0)
    # Patience cuts the curve below the pure (1 + p) ** -eta decay.
    assert np.all(table.examination <= table.decay + 1e-12)
    assert table.decay.iloc[-1] == pytest.approx(slots**-0.5)
    # The observed rate estimates the truth, slot by slot (binomial noise).
    se = np.sqrt(table.true_engaged_p * (1 - table.true_engaged_p) / table.impressions)
    assert np.all(np.abs(table.engaged_rate - table.true_engaged_p) < 5 * se + 1e-9)
    # The legacy policy puts its best guesses on top: relevance falls with rank.
    assert table.relevance[0] > 1.1 * table.relevance.iloc[-1]


def test_a_random_feed_has_no_relevance_gradient(world: RecsysWorld) -> None:
    fork = world.fork()
    random_log = fork.simulate(RandomPolicy(fork, seed=1), 0, 2)
    table = engagement_by_position(fork, random_log)
    ratio = table.relevance / table.relevance.mean()
    assert np.all(np.abs(ratio - 1) < 0.2)


def test_exposure_concentration_on_known_logs(world: RecsysWorld, log) -> None:
    n = world.n_items
    table = exposure_concentration(log, n)
    assert table.loc["impressions", "events"] == len(log)
    assert table.loc["engaged plays", "events"] == log.engaged.sum()
    # The top 1% of items holds at least 1% of anything (pigeonhole).
    assert np.all(table["top-1% share"] >= 0.01)
    one_item = log.subset(log.item == log.item[log.engaged][0])
    single = exposure_concentration(one_item, n)
    assert single.loc["impressions", "items with one or more"] == 1 / n
    assert single.loc["impressions", "top-1% share"] == 1.0
    assert single.loc["impressions", "gini"] == pytest.approx((n - 1) / n)


def test_clickbait_draws_clicks_not_plays_or_minutes(world: RecsysWorld, log) -> None:
    table = clickbait_summary(world, log)
    bait = world.items.clickbait[log.item].astype(bool)
    assert table.loc["clickbait", "impressions"] == bait.sum()
    assert table.loc["clickbait", "click rate"] == pytest.approx(
        log.clicked[bait].mean()
    )
    assert table.loc["clickbait", "click rate"] > table.loc["regular", "click rate"]
    assert (
        table.loc["clickbait", "engaged per click"]
        < 0.5 * table.loc["regular", "engaged per click"]
    )
    assert (
        table.loc["clickbait", "minutes per impression"]
        < table.loc["regular", "minutes per impression"]
    )
    assert table["share of catalogue"].sum() == pytest.approx(1.0)


def test_minutes_by_kind(world: RecsysWorld, log) -> None:
    table = minutes_by_kind(world, log)
    assert list(table.index) == ["short", "episode", "film"]
    assert table["engaged plays"].sum() == log.engaged.sum()
    assert np.all(np.diff(table["median minutes"]) > 0)  # shorts < episodes < films
    assert np.all((table["mean completion"] > 0) & (table["mean completion"] <= 1))
    assert np.all(table["median minutes"] <= table["p90 minutes"])


def test_profiles_refuse_a_log_without_plays(world: RecsysWorld, log) -> None:
    nothing = log.subset(~log.engaged)
    for call in (
        lambda: profile_log(nothing),
        lambda: engagement_by_position(world, nothing),
        lambda: minutes_by_kind(world, log.subset(slice(0, 0))),
    ):
        with pytest.raises(RecsysLogError, match=r"needs a log with .* engaged plays"):
            call()
