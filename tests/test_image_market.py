"""The image world's market: queries by popularity and time of day, clicks and
saves from the true similarity and the position bias, stock and price changes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig
from mlsd_lib.worlds.images_market import (
    DAY_SECONDS,
    HOURLY_PROFILE,
    PHOTO_CHUNK,
    QUERY_ID_STRIDE,
    ImageMarket,
    MarketConfig,
    MarketError,
)


@pytest.fixture(scope="module")
def world() -> ImageWorld:
    return ImageWorld(ImageWorldConfig.quick())


@pytest.fixture(scope="module")
def market(world: ImageWorld) -> ImageMarket:
    return ImageMarket(world, MarketConfig(days=3, queries_per_day=3_000))


@pytest.fixture(scope="module")
def day(market: ImageMarket) -> pd.DataFrame:
    return market.queries(0)


@pytest.fixture(scope="module")
def shown(market: ImageMarket, day: pd.DataFrame) -> np.ndarray:
    return market.legacy_results(day, 20)


# -- queries ------------------------------------------------------------------------


def test_a_days_queries_depend_on_the_day_alone(market, day):
    both = market.queries([0, 1])
    again = both[both["day"] == 0].reset_index(drop=True)
    assert again.equals(day)
    assert market.queries(range(1, 2)).equals(
        both[both["day"] == 1].reset_index(drop=True)
    )
    other = ImageMarket(market.world, MarketConfig(days=3, seed=1)).queries(0)
    assert not np.array_equal(other["product_id"][:50], day["product_id"][:50])


def test_queries_are_in_time_order_within_their_day_with_stable_ids(market, day):
    times = day["time"].to_numpy()
    assert np.all(np.diff(times) >= 0)
    assert times.min() >= 0 and times.max() < DAY_SECONDS
    assert np.array_equal(day["query_id"], np.arange(len(day)))
    second = market.queries(1)
    assert second["query_id"].iloc[0] == QUERY_ID_STRIDE
    assert second["time"].min() >= DAY_SECONDS
    assert np.array_equal(
        day["region"], market.shopper_region[day["shopper_id"].to_numpy()]
    )
    assert day["photo_row"].max() < PHOTO_CHUNK
    assert abs(len(day) - 3_000) < 4 * np.sqrt(3_000)


def test_shoppers_query_by_popularity_at_the_hours_shoppers_shop(market, world, day):
    listed = world.products["duplicate_of"].to_numpy() < 0
    assert np.isclose(market.popularity.sum(), 1.0)
    assert np.all(market.popularity[~listed] == 0)
    counts = np.bincount(day["product_id"], minlength=world.n_products)
    assert np.all(counts[~listed] == 0)
    top = np.argsort(-market.popularity)[: world.n_products // 10]
    expected = market.popularity[top].sum()
    assert abs(counts[top].sum() / len(day) - expected) < 0.04
    hours = np.bincount((day["time"] // 3600).astype(int), minlength=24)
    share = HOURLY_PROFILE / HOURLY_PROFILE.sum()
    assert hours[20] > 5 * hours[3]
    assert np.abs(hours / len(day) - share).max() < 0.02


def test_queries_outside_the_horizon_are_refused(market):
    with pytest.raises(MarketError, match=r"days \[3\] are outside the market's "):
        market.queries([2, 3])


# -- clicks and saves ------------------------------------------------------------------


def test_click_probability_is_the_position_bias_times_the_attraction(
    market, world, day, shown
):
    c = market.config
    p = market.click_probability(day, shown)
    sim = world.similarity(day["product_id"].to_numpy()[:, None], shown)
    attract = c.click_max / (1 + np.exp(-(sim - c.click_mid) / c.click_width))
    bias = (1.0 + np.arange(20)) ** -c.examination_decay
    assert np.allclose(p, bias * attract)
    assert np.allclose(market.position_bias(20), bias)
    # an exact match at the top is far likelier clicked than the 20th result
    exact = sim[:, 0] == 1.0
    assert p[exact, 0].mean() > 0.5 and p[:, 19].mean() < 0.02


def test_observed_ctr_by_position_follows_the_true_probabilities(market, day, shown):
    engagement = market.respond(day, shown, seed=0)
    observed = engagement.clicked.mean(axis=0)
    expected = engagement.p_click.mean(axis=0)
    n = len(day)
    assert np.all(np.abs(observed - expected) < 4 * np.sqrt(expected / n) + 1e-3)
    assert observed[0] > observed[5] > observed[19] - 1e-9


def test_saves_need_a_click_and_stock_in_her_region(market, day, shown):
    engagement = market.respond(day, shown, seed=0)
    assert not np.any(engagement.saved & ~engagement.clicked)
    assert not np.any(engagement.saved & ~engagement.available)
    truth = market.in_stock(
        shown, day["region"].to_numpy()[:, None], day["time"].to_numpy()[:, None]
    )
    assert np.array_equal(engagement.available, truth)
    assert engagement.saved.sum() > 0 and (~engagement.available).sum() > 0
    clicked_unavailable = engagement.clicked & ~engagement.available
    assert clicked_unavailable.sum() > 0  # sold out is clicked, never saved
    t = day["time"].to_numpy()[:, None]
    click_after = (
        engagement.click_time[engagement.clicked]
        > np.broadcast_to(t, shown.shape)[engagement.clicked]
    )
    assert click_after.all()
    assert np.all(
        engagement.save_time[engagement.saved] > engagement.click_time[engagement.saved]
    )
    assert np.isnan(engagement.click_time[~engagement.clicked]).all()


def test_outcomes_are_seeded_and_shared_by_two_policies_slot_by_slot(
    market, day, shown
):
    one = market.respond(day, shown, seed=3)
    again = market.respond(day, shown, seed=3)
    other_seed = market.respond(day, shown, seed=4)
    assert np.array_equal(one.clicked, again.clicked)
    assert not np.array_equal(one.clicked, other_seed.clicked)
    # another policy: the same list with slots 10.. replaced; slots 0..9 agree
    changed = shown.copy()
    changed[:, 10:] = np.roll(shown[:, 10:], 1, axis=0)
    two = market.respond(day, changed, seed=3)
    assert np.array_equal(one.clicked[:, :10], two.clicked[:, :10])
    # a query's outcome does not depend on the other queries of the call
    rows = np.arange(0, len(day), 7)
    part = market.respond(day.iloc[rows].reset_index(drop=True), shown[rows], seed=3)
    assert np.array_equal(part.clicked, one.clicked[rows])
    assert np.array_equal(part.saved, one.saved[rows])


def test_empty_slots_are_never_clicked_and_bad_lists_are_refused(market, day, shown):
    padded = shown.copy()
    padded[:, 15:] = -1
    engagement = market.respond(day, padded)
    assert not engagement.clicked[:, 15:].any()
    assert np.all(engagement.p_click[:, 15:] == 0)
    with pytest.raises(MarketError, match=r"one list per query, got shape \(3, 20\)"):
        market.respond(day, shown[:3])
    with pytest.raises(MarketError, match=r"ids outside \[-1, "):
        market.respond(day, shown + 10_000)
    with pytest.raises(MarketError, match="integer product ids"):
        market.respond(day, shown.astype(float))


def test_the_legacy_lists_rank_by_noisy_similarity(market, world, day, shown):
    assert shown.shape == (len(day), 20)
    assert all(len(set(row)) == 20 for row in shown[:200])
    sim = world.similarity(day["product_id"].to_numpy()[:, None], shown)
    assert (sim[:, 0] == 1.0).mean() > 0.5
    assert sim[:, 0].mean() > sim[:, 10].mean()
    exact = market.legacy_results(day.iloc[:50], 10, noise=0.0)
    all_sim = world.similarity(
        day["product_id"].to_numpy()[:50, None], np.arange(world.n_products)[None]
    )
    best = -np.sort(-all_sim, axis=1)[:, :10]
    assert np.allclose(np.take_along_axis(all_sim, exact, axis=1), best)
    assert np.array_equal(market.legacy_results(day.iloc[:50], 10, seed=1),
                          market.legacy_results(day.iloc[:50], 10, seed=1))  # fmt: skip
    with pytest.raises(MarketError, match="k=0 must be in"):
        market.legacy_results(day, 0)


# -- stock and prices -----------------------------------------------------------------


def test_stock_changes_flip_one_sold_region_at_a_time(market, world):
    stock = market.stock_changes
    n = world.n_products
    snapshot = stock[stock["change"] == 0]
    assert len(snapshot) == n and np.all(snapshot["time"] == 0)
    assert np.all(snapshot["region"] == -1)
    # a mask never claims a region the product is not sold in
    sold = market.sold_in[stock["product_id"].to_numpy()]
    assert np.all((stock["stock"].to_numpy() & ~sold) == 0)
    assert np.all(market.sold_in > 0)
    changes = stock[stock["change"] > 0]
    assert len(changes) > 50
    assert changes["time"].between(0, market.config.horizon_seconds).all()
    previous = stock["stock"].shift(1).to_numpy()[stock["change"].to_numpy() > 0]
    flipped = changes["stock"].to_numpy() ^ previous.astype(np.int64)
    assert np.array_equal(flipped, 1 << changes["region"].to_numpy().astype(np.int64))


def test_stock_is_out_about_as_often_as_the_spells_say(market):
    c = market.config
    bits = (market.sold_in[:, None] >> np.arange(c.n_regions)) & 1
    times = np.linspace(0, c.horizon_seconds, 7)[1:-1]
    masks = market.stock_at(np.arange(market.sold_in.size)[:, None], times[None, :])
    in_stock = (masks[:, :, None] >> np.arange(c.n_regions)) & 1
    out_share = 1 - in_stock.sum() / (bits.sum() * times.size)
    mean_in, mean_out = c.in_stock_days * 24, c.out_of_stock_hours
    assert abs(out_share - mean_out / (mean_in + mean_out)) < 0.03
    product = int(market.stock_changes.query("change == 1")["product_id"].iloc[0])
    rows = market.stock_changes[market.stock_changes["product_id"] == product]
    t1 = float(rows["time"].iloc[1])
    assert market.stock_at(product, t1) == rows["stock"].iloc[1]
    assert market.stock_at(product, t1 - 1e-3) == rows["stock"].iloc[0]
    with pytest.raises(MarketError, match="times must be in"):
        market.stock_at(product, c.horizon_seconds + 1)


def test_prices_are_cents_that_change_now_and_then(market, world):
    prices = market.price_changes
    assert (prices["price"] > 0).all()
    assert np.allclose(prices["price"], prices["price"].round(2))
    assert (prices["change"] == 0).sum() == world.n_products
    moved = prices[prices["change"] > 0]
    expected = market.config.price_changes_per_day * market.config.days
    assert abs(len(moved) / world.n_products - expected) < 0.1
    row = moved.iloc[0]
    assert market.price_at(int(row["product_id"]), row["time"]) == row["price"]
    before = market.price_at(int(row["product_id"]), row["time"] - 1e-3)
    assert before != row["price"]


# -- photos ---------------------------------------------------------------------------


def test_a_querys_photo_does_not_depend_on_the_others_asked_with_it(market, day):
    alone = market.photos(day.iloc[[3]])
    together = market.photos(day.iloc[[70, 3]])
    assert np.array_equal(alone.images.images[0], together.images.images[1])
    assert np.array_equal(
        together.images.product_ids, day["product_id"].to_numpy()[[70, 3]]
    )
    assert together.boxes.shape == (2, 4)
    with pytest.raises(MarketError, match="no queries to photograph"):
        market.photos(day.iloc[:0])


# -- settings -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"days": 0}, r"MarketConfig.days must be in \[1, 365\], got 0"),
        ({"queries_per_day": 1.5}, "queries_per_day must be an integer"),
        ({"region_shares": (0.5, 0.6)}, "positive shares summing to 1"),
        ({"click_width": 0.0}, r"click_width must be in \[0.001, 1.0\]"),
        ({"sold_in_region": 1.2}, "sold_in_region must be in"),
    ],
)
def test_market_settings_are_checked_with_the_range(changes, message):
    with pytest.raises(MarketError, match=message):
        MarketConfig(**changes)
    assert issubclass(MarketError, MlsdError) and issubclass(MarketError, ValueError)
