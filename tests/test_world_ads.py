"""The synthetic ads world: determinism, the documented truth, and its knobs."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from mlsd_lib.datasets import CTRData
from mlsd_lib.worlds.ads import (
    AdsWorld,
    AdsWorldConfig,
    ImpressionLog,
    bayes_normalized_entropy,
    normalized_entropy,
    traffic_by_hour,
)
from mlsd_lib.worlds.ads_log import IMPRESSION_ID_STRIDE
from mlsd_lib.worlds.ads_truth import AliasTable, AliasTableError, draw_entities

SMALL = AdsWorldConfig(
    num_users=3_000, num_advertisers=40, num_campaigns=120, num_ads=400
)


@pytest.fixture(scope="module")
def world() -> AdsWorld:
    return AdsWorld(SMALL, seed=7)


@pytest.fixture(scope="module")
def log(world: AdsWorld) -> ImpressionLog:
    return world.simulate(days=2, impressions_per_day=80_000)


def _columns_equal(a: ImpressionLog, b: ImpressionLog) -> bool:
    return all(
        np.array_equal(getattr(a, name), getattr(b, name), equal_nan=True)
        for name in ImpressionLog.column_names()
    )


def test_same_seed_same_log_and_different_seed_differs(log: ImpressionLog) -> None:
    again = AdsWorld(SMALL, seed=7).simulate(days=2, impressions_per_day=80_000)
    assert _columns_equal(log, again)
    other = AdsWorld(SMALL, seed=8).simulate(days=2, impressions_per_day=80_000)
    assert not np.array_equal(log.user_id, other.user_id)
    assert not np.array_equal(log.true_p, other.true_p)


def test_simulate_seed_changes_traffic_not_the_world(world: AdsWorld) -> None:
    a = world.simulate(1, 5_000, seed=1)
    b = world.simulate(1, 5_000, seed=2)
    assert not np.array_equal(a.user_id, b.user_id)
    assert _columns_equal(a, world.simulate(1, 5_000, seed=1))


def test_columns_shapes_and_dtypes(log: ImpressionLog) -> None:
    n = 160_000
    assert len(log) == n
    ints = set(ImpressionLog.column_names()) - {"ts", "true_p", "clicked"}
    ints -= {"click_delay_s"}
    for name in ints:
        column = getattr(log, name)
        assert column.dtype == np.int64, name
        assert column.shape == (n,), name
    assert log.ts.dtype == np.float64 and log.true_p.dtype == np.float64
    assert log.clicked.dtype == np.int8 and log.click_delay_s.dtype == np.float64
    assert len(np.unique(log.impression_id)) == n
    assert np.all(np.diff(log.ts) >= 0)
    assert np.array_equal(log.day, (log.ts // 86_400).astype(np.int64))
    assert np.array_equal(log.hour, ((log.ts % 86_400) // 3600).astype(np.int64))
    frame = log.to_frame()
    assert list(frame.columns) == list(ImpressionLog.column_names())
    assert len(frame) == n


def test_entities_are_consistent(world: AdsWorld, log: ImpressionLog) -> None:
    e = world.entities
    assert np.array_equal(log.campaign_id, e.ad_campaign[log.ad_id])
    assert np.array_equal(log.advertiser_id, e.campaign_advertiser[log.campaign_id])
    assert np.array_equal(log.ad_category, e.ad_category[log.ad_id])
    assert np.array_equal(log.interest, e.user_interest[log.user_id])
    assert log.user_id.max() < SMALL.num_users and log.ad_id.max() < SMALL.num_ads
    assert log.position.max() == SMALL.num_positions - 1


def test_true_p_in_unit_interval_and_matches_the_empirical_ctr(
    log: ImpressionLog,
) -> None:
    assert np.all((log.true_p > 0) & (log.true_p < 1))
    expected = log.true_p.mean()
    sd = np.sqrt(np.sum(log.true_p * (1 - log.true_p))) / len(log)
    assert abs(log.ctr - expected) < 4 * sd
    assert 0.02 < expected < 0.05  # base_ctr is calibrated on day 0


def test_fast_logit_equals_the_documented_formula(
    world: AdsWorld, log: ImpressionLog
) -> None:
    args = (log.user_id, log.ad_id, log.hour, log.device, log.day)
    assert np.allclose(world.true_logit(*args), world.reference_logit(*args))
    p = world.click_probability(*args[:4], log.position, log.day)
    assert np.allclose(p, log.true_p)


def test_position_bias_follows_the_examination_curve(
    world: AdsWorld, log: ImpressionLog
) -> None:
    ctr = [log.clicked[log.position == s].mean() for s in range(SMALL.num_positions)]
    assert all(b < a for a, b in itertools.pairwise(ctr))
    n = 50
    args = (log.user_id[:n], log.ad_id[:n], log.hour[:n], log.device[:n])
    top = world.click_probability(*args, np.zeros(n, np.int64), 0)
    for slot, examine in enumerate(SMALL.examination):
        p = world.click_probability(*args, np.full(n, slot), 0)
        assert np.allclose(p / top, examine)


def test_drift_off_keeps_probabilities_and_drift_on_changes_them() -> None:
    args = (np.arange(20), np.arange(20), np.full(20, 12), np.zeros(20, np.int64))
    still = AdsWorld(dataclasses.replace(SMALL, drift_per_day=0.0), seed=3)
    assert np.array_equal(still.true_logit(*args, 0), still.true_logit(*args, 30))
    moving = AdsWorld(dataclasses.replace(SMALL, drift_per_day=0.1), seed=3)
    change = moving.true_logit(*args, 30) - moving.true_logit(*args, 0)
    assert np.abs(change).max() > 0.05
    # Drift touches only the interest x category term: the rest is shared.
    assert np.allclose(still.truth.ad, moving.truth.ad)
    with pytest.raises(ValueError, match="horizon_days"):
        moving.true_logit(*args, SMALL.horizon_days)


def test_click_delays_are_finite_exactly_for_clicks(log: ImpressionLog) -> None:
    clicked = log.clicked.astype(bool)
    assert np.all(np.isfinite(log.click_delay_s) == clicked)
    delays = log.click_delay_s[clicked]
    assert np.all(delays > 0)
    median = np.median(delays)
    assert 0.8 * SMALL.click_delay_median_s < median < 1.25 * SMALL.click_delay_median_s
    assert np.percentile(delays, 95) > 3600  # a tail of hours


def test_label_window_removes_late_clicks_monotonically(
    world: AdsWorld, log: ImpressionLog
) -> None:
    clicks = [
        world.to_ctr_data(log, label_window_s=w).labels.sum()
        for w in (60.0, 600.0, 3600.0, 6 * 3600.0)
    ]
    eventual = world.to_ctr_data(log).labels.sum()
    assert clicks == sorted(clicks) and clicks[-1] <= eventual
    assert clicks[0] < clicks[-1] and eventual == log.clicked.sum()


def test_to_ctr_data_is_valid(world: AdsWorld, log: ImpressionLog) -> None:
    data = world.to_ctr_data(log, num_buckets=1024)
    assert isinstance(data, CTRData) and len(data) == len(log)
    assert data.categorical.dtype == np.int64 and data.dense.dtype == np.float32
    assert data.labels.dtype == np.float32
    for j, card in enumerate(data.cardinalities):
        assert data.categorical[:, j].min() >= 0 and data.categorical[:, j].max() < card
    cards = dict(zip(data.categorical_names, data.cardinalities, strict=True))
    assert cards["user_id"] == 1024 and cards["position"] == SMALL.num_positions
    assert cards["hour"] == 24
    assert np.array_equal(data.true_prob, log.true_p)
    assert np.array_equal(data.timestamps, log.ts)


def test_bayes_ne_beats_the_base_rate(world: AdsWorld, log: ImpressionLog) -> None:
    bayes = bayes_normalized_entropy(log.true_p, log.clicked)
    assert 0.5 < bayes < 0.97
    assert bayes == pytest.approx(world.bayes_normalized_entropy(log))
    base = np.full(len(log), log.ctr)
    assert normalized_entropy(log.clicked, base) == pytest.approx(1.0, abs=1e-12)
    assert world.bayes_log_loss(log) < normalized_entropy(log.clicked, base) * (
        -(log.ctr * np.log(log.ctr) + (1 - log.ctr) * np.log(1 - log.ctr))
    )


def test_the_logit_is_not_additive(world: AdsWorld) -> None:
    """Interactions are real: the (interest, category) 2nd difference is not 0."""
    e = world.entities
    # Two users differing only in interest, two ads differing only in category.
    users = [u for u in range(SMALL.num_users) if e.user_interest[u] in (0, 1)]
    u0 = next(u for u in users if e.user_interest[u] == 0)
    u1 = next(u for u in users if e.user_interest[u] == 1)
    a0 = int(np.flatnonzero(e.ad_category == 0)[0])
    a1 = int(np.flatnonzero(e.ad_category == 1)[0])
    w = world.truth

    def z(u: int, a: int) -> float:
        return float(world.true_logit(np.array([u]), np.array([a]), 20, 0, 0)[0])

    second_difference = z(u1, a1) - z(u1, a0) - z(u0, a1) + z(u0, a0)
    assert abs(second_difference) > 0.1
    # 3rd order: the category x hour x device rhythm is not a sum of pairs.
    t = w.category_hour_device
    assert (
        np.abs(
            t
            - t.mean(0)
            - t.mean(1, keepdims=True)
            - t.mean(2)[..., None]
            + t.mean((0, 1))[None, None]
            + t.mean((0, 2))[None, :, None]
            + t.mean((1, 2))[:, None, None]
            - t.mean()
        ).max()
        > 0.05
    )


def test_consecutive_calls_continue(world: AdsWorld) -> None:
    first = world.simulate(1, 3_000)
    second = world.simulate(1, 3_000, start_day=1)
    assert second.impression_id.min() > first.impression_id.max()
    assert second.ts.min() >= 86_400 > first.ts.max()
    both = world.simulate(2, 3_000)
    assert _columns_equal(both, ImpressionLog.concat([first, second]))
    assert second.impression_id.min() == IMPRESSION_ID_STRIDE


def test_traffic_curve_and_alias_sampling() -> None:
    traffic = traffic_by_hour()
    assert traffic.sum() == pytest.approx(1.0) and traffic.argmax() == 20
    weights = np.array([1.0, 5.0, 0.5, 3.5])
    table = AliasTable.build(weights)
    assert np.allclose(table.probabilities(), weights / weights.sum())
    draws = table.sample(np.random.default_rng(0), 100_000)
    assert np.allclose(np.bincount(draws) / 100_000, weights / weights.sum(), atol=0.01)


def test_config_errors_teach() -> None:
    with pytest.raises(ValueError, match="examination"):
        AdsWorldConfig(examination=(0.5, 0.9))
    with pytest.raises(ValueError, match="num_ads"):
        AdsWorldConfig(num_ads=10, num_campaigns=20, num_advertisers=5)


@pytest.mark.parametrize(
    "weights", [[], [0.0, 0.0], [1.0, -0.5], [1.0, float("nan")], [float("inf")]]
)
def test_weights_that_describe_no_distribution_are_refused(weights):
    """Zero weights used to divide 0 by 0 and give NaN probabilities silently."""
    with pytest.raises(AliasTableError, match="finite, >= 0 and not all zero"):
        AliasTable.build(np.array(weights))


def test_a_world_with_an_empty_category_builds_without_warnings():
    """Few ads over many categories leave some category empty: it gets an empty
    block, not a NaN table (the warning the test run used to print)."""
    import warnings

    config = AdsWorldConfig(num_users=50, num_advertisers=2, num_campaigns=2, num_ads=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        entities = draw_entities(config, np.random.default_rng(0))
    assert np.isfinite(entities.within_category.keep).all()
