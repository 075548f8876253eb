"""The visual online test, the ratio-metric tests it uses, and the click re-ranker."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.evaluation.ab_test import ratio_metric_test
from mlsd_lib.evaluation.ratio_metrics import (
    RatioMetricError,
    linearized_ratio,
    ratio_split_test,
)
from mlsd_lib.models.position_debiased_clicks import ClickModelError, fit_click_model
from mlsd_lib.visual.click_reranker import (
    FEATURES,
    ClickReranker,
    WindowedCtr,
    candidate_features,
    train_click_reranker,
)
from mlsd_lib.visual.online_test import (
    OnlineTestError,
    list_truth,
    run_arm,
    run_online_test,
)
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig
from mlsd_lib.worlds.images_market import ImageMarket, MarketConfig


@pytest.fixture(scope="module")
def market() -> ImageMarket:
    world = ImageWorld(ImageWorldConfig.quick())
    return ImageMarket(world, MarketConfig(days=3, queries_per_day=1_500))


@pytest.fixture(scope="module")
def queries(market) -> pd.DataFrame:
    return market.queries([0, 1, 2])


def noisy_arm(market: ImageMarket, noise: float, k: int = 20):
    """A stand-in for an embedder: the catalogue by true similarity plus
    Gaussian noise of ``noise`` (seeded per query), top ``k`` with scores."""
    world = market.world
    everything = np.arange(world.n_products)

    def arm(q: pd.DataFrame, photos) -> tuple[np.ndarray, np.ndarray]:
        target = q["product_id"].to_numpy()
        sim = world.similarity(target[:, None], everything[None, :])
        rng = np.random.default_rng([int(noise * 1000), len(q)])
        score = sim + noise * rng.standard_normal(sim.shape)
        top = np.argsort(-score, axis=1)[:, :k]
        return top, np.take_along_axis(score, top, axis=1)

    return arm


# -- ratio metrics -------------------------------------------------------------------


def test_linearized_values_average_to_the_ratio():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 6, 500)
    c = rng.poisson(1.5 * n)  # more clicks than queries is allowed
    z = linearized_ratio(c, n)
    assert z.mean() == pytest.approx(c.sum() / n.sum())


def test_the_split_test_has_the_delta_method_error_of_ab_test():
    rng = np.random.default_rng(1)
    n_c, n_t = rng.integers(1, 20, 4_000), rng.integers(1, 20, 4_000)
    c_c = rng.binomial(n_c, rng.beta(2, 30, n_c.size))
    c_t = rng.binomial(n_t, rng.beta(2, 27, n_t.size))
    ours = ratio_split_test(c_c, n_c, c_t, n_t)
    theirs = ratio_metric_test(c_c, n_c, c_t, n_t)
    half = (theirs.absolute_ci[1] - theirs.absolute_ci[0]) / 2
    assert ours.difference == pytest.approx(theirs.absolute_lift)
    assert ours.se * 1.96 == pytest.approx(half, rel=2e-3)


def test_a_ratio_without_denominators_is_refused():
    with pytest.raises(RatioMetricError, match="positive total"):
        linearized_ratio([1, 2], [0, 0])
    with pytest.raises(RatioMetricError, match="one entry per user"):
        linearized_ratio([1, 2], [1, 2, 3])


# -- the online test ----------------------------------------------------------------


def test_an_aa_test_is_not_significant_and_its_paired_difference_is_zero(
    market, queries
):
    arm = noisy_arm(market, 0.15)
    test = run_online_test(market, queries, ("A", arm), ("A'", arm), seed=3)
    results = test.tests()
    for metric in ("clicks", "saves"):
        split = results["split", metric]
        assert not split.significant
        assert split.difference_ci[0] < 0 < split.difference_ci[1]
        assert results["paired", metric].difference == 0.0
    assert 0.3 < test.in_treatment.mean() < 0.7


def test_an_arm_that_shows_worse_lists_loses_online_and_in_the_truth(market, queries):
    test = run_online_test(
        market,
        queries,
        ("good", noisy_arm(market, 0.05)),
        ("worse", noisy_arm(market, 0.4)),
    )
    results = test.tests()
    for design in ("split", "paired"):
        clicks = results[design, "clicks"]
        assert clicks.significant and clicks.difference < 0
    paired = results["paired", "clicks"]
    assert paired.se < results["split", "clicks"].se  # pairing narrows it
    truth = test.truth(market.world)
    assert truth.loc["worse", "exact top-1"] < truth.loc["good", "exact top-1"]
    assert truth.loc["worse", "NDCG@20"] < truth.loc["good", "NDCG@20"]
    assert (
        truth.loc["worse", "expected clicks / query"]
        < truth.loc["good", "expected clicks / query"]
    )
    daily = test.daily("clicks")
    assert set(daily["day"]) == {0, 1, 2} and (daily["low"] < daily["high"]).all()


def test_guardrails_count_empty_answers(market, queries):
    base = noisy_arm(market, 0.05)

    def sometimes_empty(q, photos):
        ids, scores = base(q, photos)
        ids[q["query_id"].to_numpy() % 10 == 0] = -1
        return ids, scores

    test = run_online_test(market, queries, ("base", base), ("gaps", sometimes_empty))
    rails = test.guardrails()
    assert rails.loc["base", "empty-result rate"] == 0.0
    assert rails.loc["gaps", "empty-result rate"] == pytest.approx(0.1, abs=0.03)
    assert (rails["latency ms / query"] > 0).all()


def test_the_truth_of_the_oracle_list_is_perfect(market, queries):
    world = market.world
    target = queries["product_id"].to_numpy()[:200]
    perfect, _ = noisy_arm(market, 0.0)(queries.iloc[:200], None)
    truth = list_truth(world, target, perfect)
    assert truth["exact top-1"].all()
    assert truth["NDCG@20"].to_numpy() == pytest.approx(1.0)


def test_arms_that_cannot_be_compared_are_refused(market, queries):
    arm = noisy_arm(market, 0.1)
    with pytest.raises(OnlineTestError, match="two different names"):
        run_online_test(market, queries, ("A", arm), ("A", arm))
    with pytest.raises(OnlineTestError, match=r"return \(n_queries, k\) int"):
        run_arm(market, queries, lambda q, p: np.zeros(3, np.int64))
    with pytest.raises(OnlineTestError, match="one score per shown slot"):
        run_arm(market, queries, lambda q, p: (arm(q, p)[0], np.zeros((1, 1))))


# -- the click model and the re-ranker ------------------------------------------------


def test_the_click_model_credits_the_position_not_a_feature_that_tracks_it():
    rng = np.random.default_rng(0)
    n = 40_000
    position = rng.integers(0, 10, n)
    quality = rng.random(n)
    tracks_position = position + rng.normal(0, 0.3, n)  # useless at serving
    p_click = (1.0 + position) ** -1.0 * 0.8 / (1 + np.exp(-(quality - 0.5) * 8))
    clicked = rng.random(n) < p_click
    x = np.stack([quality, tracks_position], axis=1)
    names = ("quality", "tracks position")
    debiased = fit_click_model(x, position, clicked, names, num_trees=60)
    naive = fit_click_model(x, np.zeros(n, np.int64), clicked, names, num_trees=60)
    # at serving, an item's score must not depend on where the log put it
    grid = np.stack([np.full(10, 0.6), np.arange(10.0)], axis=1)
    spread = {m: np.ptp(np.log(m.score(grid))) for m in (debiased, naive)}
    assert spread[debiased] < 0.5 < 1.5 < spread[naive]
    assert debiased.importance()["position"] > debiased.importance()["tracks position"]
    with pytest.raises(ClickModelError, match="added by the model"):
        fit_click_model(x, position, clicked, ("a", "position"))


def test_the_windowed_ctr_counts_only_the_window_before_each_time():
    ctr = WindowedCtr(
        np.array([1, 1, 1, 2]),
        np.array([10.0, 20.0, 200.0, 15.0]),
        np.array([1, 1]),
        np.array([12.0, 205.0]),
        window_seconds=100.0,
        prior_impressions=0.0,
    )
    # product 1 at t=50: impressions at 10 and 20, one click at 12
    assert ctr.at(np.array([1, 1, 2]), np.array([50.0, 210.0, 16.0])) == (
        pytest.approx([0.5, 1.0, 0.0])
    )


@pytest.fixture(scope="module")
def logged(market, queries):
    arm = noisy_arm(market, 0.12)
    run = run_arm(market, queries, arm, seed=1)
    ctr = WindowedCtr.from_runs(
        [(queries, run.shown, run.engagement.clicked, run.engagement.click_time)]
    )
    return run, ctr


def test_the_constraint_keeps_ineligible_candidates_in_visual_order_below(
    market, queries, logged
):
    run, ctr = logged
    reranker = train_click_reranker(
        market, queries, run, ctr, rows=queries["day"].to_numpy() < 2, num_trees=30
    )
    assert set(reranker.model.importance().index) == {*FEATURES, "position"}
    part = queries[queries["day"] == 2].reset_index(drop=True)
    shown, scores = run.shown[queries["day"] == 2], run.scores[queries["day"] == 2]
    constrained = reranker.with_max_distance(0.1)
    ids, new_scores = constrained.rerank(market, ctr, part, shown, scores)
    eligible = 1.0 - new_scores <= 0.1
    # eligible first in every row, the rest in their visual (score) order
    assert (np.diff(eligible.astype(int), axis=1) <= 0).all()
    rest = np.where(eligible, 10.0, new_scores)
    assert (np.diff(rest, axis=1) <= 1e-12).all()
    assert np.sort(ids, axis=1) == pytest.approx(np.sort(shown, axis=1))
    unchanged, _ = reranker.with_max_distance(-1.0).rerank(
        market, ctr, part, shown, scores
    )
    assert (unchanged == shown).all()


def test_candidate_features_are_what_the_market_knows(market, queries, logged):
    run, ctr = logged
    part = queries.iloc[:50].reset_index(drop=True)
    x = candidate_features(market, part, run.shown[:50], run.scores[:50], ctr)
    t = part["time"].to_numpy()[:, None]
    price = market.price_at(run.shown[:50], t)
    assert x[..., FEATURES.index("log price")] == pytest.approx(np.log(price))
    assert (x[..., FEATURES.index("gap to best")] >= 0).all()
    assert (x[:, 0, FEATURES.index("gap to best")] == 0).all()


def test_an_unconstrained_reranker_promotes_by_clicks(market, queries, logged):
    run, ctr = logged
    reranker = train_click_reranker(market, queries, run, ctr, num_trees=30)
    assert isinstance(reranker, ClickReranker) and reranker.max_distance is None
    ids, _ = reranker.rerank(market, ctr, queries, run.shown, run.scores)
    assert (ids != run.shown).any(axis=1).mean() > 0.1  # it does reorder
    assert (np.sort(ids, axis=1) == np.sort(run.shown, axis=1)).all()
