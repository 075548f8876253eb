"""Tests for mlsd_lib.adclick.scale (the ad-click case study's numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.adclick.scale import (
    candidate_log,
    ctr_by_position,
    gsp_auction,
    hierarchical_ctr,
    production_requirements,
    profile_world,
    replicas_needed,
    share_arrived_after,
    shrunk_ctr,
)
from mlsd_lib.capacity import estimate
from mlsd_lib.worlds.ads import AdsWorld, AdsWorldConfig


@pytest.fixture(scope="module")
def world() -> AdsWorld:
    return AdsWorld(
        AdsWorldConfig(
            num_users=2_000, num_advertisers=50, num_campaigns=150, num_ads=400
        ),
        seed=1,
    )


def test_production_requirements_match_the_case_study_page() -> None:
    est = estimate(production_requirements())
    assert est["average QPS"] == pytest.approx(34_722, rel=1e-3)
    assert est["peak QPS"] == pytest.approx(104_167, rel=1e-3)
    assert est["peak inferences per second"] == pytest.approx(2.083e7, rel=1e-3)
    assert est["event log per day"] == pytest.approx(1.5e12)
    assert estimate(production_requirements(candidates_per_request=50))[
        "peak inferences per second"
    ] == pytest.approx(est["peak inferences per second"] / 4)


def test_replicas_needed() -> None:
    assert replicas_needed(600, 100, 0.6) == 10
    assert replicas_needed(601, 100, 0.6) == 11
    assert replicas_needed(0, 100) == 1
    with pytest.raises(ValueError, match="utilization"):
        replicas_needed(1, 1, 1.5)


def test_share_arrived_after_ignores_non_clicks() -> None:
    assert share_arrived_after(np.array([1.0, np.nan, 10.0, 100.0]), 5) == 2 / 3
    with pytest.raises(ValueError, match="no clicks"):
        share_arrived_after(np.array([np.nan]), 5)


def test_profile_and_position_curve(world: AdsWorld) -> None:
    log = world.simulate(1, 60_000)
    prof = profile_world(log)
    assert prof.impressions == 60_000
    assert prof.ctr == pytest.approx(world.config.base_ctr, rel=0.1)
    assert 1 > prof.share_after_5min > prof.share_after_1h > prof.share_after_6h
    table = ctr_by_position(log, world.config.examination)
    assert table["impressions"].sum() == 60_000
    # Slots are randomized, so the CTR ratio tracks the examination curve.
    np.testing.assert_allclose(
        table["mean_true_p"] / table["mean_true_p"][0], table["examination"], rtol=0.05
    )


def test_shrunk_ctr_limits() -> None:
    assert shrunk_ctr(0, 0, 0.05, 100) == pytest.approx(0.05)
    assert shrunk_ctr(30, 100, 0.05, 0) == pytest.approx(0.3)
    assert shrunk_ctr(30, 100, 0.1, 100) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        shrunk_ctr(1, 1, 0.1, -1)


def test_hierarchical_ctr_beats_raw_ctr_on_sparse_ads(world: AdsWorld) -> None:
    log = world.simulate(1, 20_000)
    e, n_ads = world.entities, world.config.num_ads
    est = hierarchical_ctr(log, n_ads, e.ad_campaign, e.ad_advertiser, e.ad_category)
    assert est.shape == (n_ads,) and np.all((est > 0) & (est < 1))
    shown = np.bincount(log.ad_id, minlength=n_ads)
    truth = np.bincount(log.ad_id, weights=log.true_p, minlength=n_ads) / np.maximum(
        shown, 1
    )
    raw = np.bincount(log.ad_id, weights=log.clicked, minlength=n_ads) / np.maximum(
        shown, 1
    )
    sparse = (shown > 0) & (shown < 30)
    assert np.mean(np.abs(est - truth)[sparse]) < np.mean(np.abs(raw - truth)[sparse])


def test_gsp_auction_prices_and_scale_invariance() -> None:
    bids = np.array([[1.0, 2.0, 0.5], [3.0, 1.0, 1.0]])
    pctr = np.array([[0.1, 0.04, 0.3], [0.01, 0.05, 0.02]])
    out = gsp_auction(bids, pctr)
    np.testing.assert_array_equal(out.winner, [2, 1])
    np.testing.assert_allclose(out.price_per_click, [0.1 / 0.3, 0.03 / 0.05])
    assert np.all(out.price_per_click <= bids[[0, 1], out.winner])
    scaled = gsp_auction(bids, 1.3 * pctr)  # a uniform scale changes nothing
    np.testing.assert_array_equal(scaled.winner, out.winner)
    np.testing.assert_allclose(scaled.price_per_click, out.price_per_click)
    with pytest.raises(ValueError):
        gsp_auction(bids[:, :1], pctr[:, :1])


def test_candidate_log_matches_the_world(world: AdsWorld) -> None:
    log = world.simulate(1, 1_000)
    cand = candidate_log(
        world, log.user_id, log.ad_id, log.hour, log.device, log.position, day=0
    )
    np.testing.assert_allclose(cand.true_p, log.true_p)
    np.testing.assert_array_equal(cand.campaign_id, log.campaign_id)
    np.testing.assert_array_equal(cand.interest, log.interest)
    data = world.to_ctr_data(cand, num_buckets=2**10)
    assert len(data) == 1_000 and data.ctr == 0
