"""Product features in Redis (stock, price, 24 h counts) and the in-stock filter.

The market's truth and the offline computation are the references: after a
day of events is folded, Redis must serve each product's true stock and price
and the counts the offline definition gives, and the filter must keep exactly
the products in stock in the shopper's region.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import redis

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.entity_events import EntityEvent
from mlsd_lib.features.fold_catalog import fold_named
from mlsd_lib.features.live_processor import LiveProcessor
from mlsd_lib.features.stream_freshness import measure_freshness
from mlsd_lib.features.stream_processor import StreamProcessor
from mlsd_lib.redis_backend import RedisBackend
from mlsd_lib.visual.availability import product_keep_masks
from mlsd_lib.visual.events import epoch_seconds, publish_events, visual_event_log
from mlsd_lib.visual.product_features import (
    PRODUCT_FEATURES,
    product_features_offline,
    product_fold,
    product_store,
    read_product_features,
)
from mlsd_lib.visual.stock_filter import (
    InStockFilter,
    StockFilterError,
    redis_availability,
)
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig
from mlsd_lib.worlds.images_market import DAY_SECONDS, ImageMarket, MarketConfig

STREAM = "visual_test"
FOLD = product_fold(STREAM)
END = float(epoch_seconds(DAY_SECONDS))  # the end of day 0, as Unix seconds


@pytest.fixture(scope="module")
def market() -> ImageMarket:
    world = ImageWorld(
        ImageWorldConfig.quick(
            n_categories=3, families_per_category=3, products_per_family=6
        )
    )  # ~60 products: fakeredis runs the fold's Lua slowly
    return ImageMarket(world, MarketConfig(days=2, queries_per_day=80))


@pytest.fixture(scope="module")
def events(market: ImageMarket) -> pd.DataFrame:
    queries = market.queries(0)
    engagement = market.respond(queries, market.legacy_results(queries, 10))
    return visual_event_log(
        queries,
        engagement,
        stock_changes=market.stock_changes,
        price_changes=market.price_changes,
        end=DAY_SECONDS,
    )


def fold_in_process(client: redis.Redis, events: pd.DataFrame) -> StreamProcessor:
    publish_events(client, STREAM, events)
    processor = StreamProcessor(client, STREAM, "g", "c", fold=FOLD, batch_size=500)
    processor.run(idle_exit_s=0.05)
    return processor


def test_the_product_fold_is_the_catalogs_latest_fold() -> None:
    by_name = fold_named(
        "latest", STREAM, value_types="stock,price",
        counted_types="impression,click,save", state_name="product",
    )  # fmt: skip
    assert by_name == FOLD
    names = [f"{FOLD.view.name}:{f}" for f in FOLD.view.feature_names] + [
        f"{FOLD.counts.view.name}:{f}" for f in FOLD.counts.view.feature_names
    ]
    assert tuple(names) == PRODUCT_FEATURES


def test_a_day_folded_serves_the_true_stock_and_price_and_the_offline_counts(
    redis_client: redis.Redis, market: ImageMarket, events: pd.DataFrame
) -> None:
    processor = fold_in_process(redis_client, events)
    assert processor.counts.applied == len(events)
    ids = np.arange(market.world.n_products)
    online = read_product_features(product_store(redis_client, FOLD), ids, now=END)
    offline = product_features_offline(events, ids, END, FOLD)
    for name in ("stock", "price", "impressions", "clicks", "saves"):
        np.testing.assert_array_equal(
            getattr(online, name), getattr(offline, name), err_msg=name
        )
    last = np.full(ids.size, DAY_SECONDS - 1e-3)
    assert np.array_equal(online.stock, market.stock_at(ids, last))
    assert np.allclose(online.price, market.price_at(ids, last), rtol=1e-6)
    shown = events[events["type"] == "impression"]["product_id"]
    assert online.impressions.sum() == len(shown) and online.clicks.sum() > 0
    ctr = online.ctr
    assert np.isnan(ctr[online.impressions == 0]).all()
    seen = online.impressions > 0
    assert np.allclose(ctr[seen], online.clicks[seen] / online.impressions[seen])
    assert list(online.frame().columns)[-1] == "ctr_24h"
    # a day later nothing was shown: the 24 h counts have expired, stock has not
    later = read_product_features(
        product_store(redis_client, FOLD), ids, now=END + DAY_SECONDS + 3600
    )
    assert later.impressions.sum() == 0 and np.array_equal(later.stock, online.stock)


def test_at_noon_redis_holds_what_the_log_says_of_the_morning(
    redis_client: redis.Redis, market: ImageMarket, events: pd.DataFrame
) -> None:
    noon = float(epoch_seconds(DAY_SECONDS / 2))
    morning = events[
        events["event_timestamp"] <= pd.Timestamp(noon, unit="s", tz="UTC")
    ]
    fold_in_process(redis_client, morning)
    ids = np.arange(market.world.n_products)
    online = read_product_features(product_store(redis_client, FOLD), ids, now=noon)
    offline = product_features_offline(events, ids, noon, FOLD)
    assert np.array_equal(online.stock, offline.stock)
    assert np.array_equal(online.impressions, offline.impressions)
    assert np.array_equal(online.stock, market.stock_at(ids, np.full(ids.size, 43200)))


def test_the_filter_keeps_what_is_in_stock_in_her_region_in_one_read(
    redis_client: redis.Redis, market: ImageMarket, events: pd.DataFrame
) -> None:
    fold_in_process(redis_client, events)
    store = product_store(redis_client, FOLD)
    ids = np.arange(market.world.n_products)
    truth = market.stock_at(ids, np.full(ids.size, DAY_SECONDS - 1e-3))
    for region in range(market.config.n_regions):
        keep = InStockFilter(store, region, now=END)
        got = keep(ids)
        assert keep.reads == 1 and got.dtype == bool
        assert np.array_equal(got, (truth >> region) & 1 == 1)
    # products Redis has never heard of: hidden unless told otherwise
    unknown = ids.size + np.arange(3)
    assert not InStockFilter(store, 0, now=END)(unknown).any()
    assert InStockFilter(store, 0, now=END, unknown=True)(unknown).all()
    # the search pipeline's call: distinct ids, -1 slots never kept
    lists = np.array([[0, 1, 2, -1], [2, 3, 4, 5]])
    masks = product_keep_masks({"in_stock": InStockFilter(store, 1, now=END)}, lists)
    expected = np.where(lists >= 0, (truth[np.maximum(lists, 0)] >> 1) & 1 == 1, False)
    assert np.array_equal(masks["in_stock"], expected)
    assert InStockFilter(store, 0)(np.zeros(0, dtype=np.int64)).shape == (0,)
    named = redis_availability(store, now=END)(2)
    assert list(named) == ["in_stock"] and named["in_stock"].region == 2
    assert np.array_equal(named["in_stock"](ids), (truth >> 2) & 1 == 1)


def test_bad_filters_are_refused_with_the_fix(redis_client: redis.Redis) -> None:
    store = product_store(redis_client, FOLD)
    with pytest.raises(StockFilterError, match=r"region=24 is outside \[0, 24\)"):
        InStockFilter(store, 24)
    with pytest.raises(StockFilterError, match="region must be an integer"):
        InStockFilter(store, "north")  # type: ignore[arg-type]
    with pytest.raises(StockFilterError, match="1-D integer array"):
        InStockFilter(store, 0)(np.array([1.5]))
    assert issubclass(StockFilterError, MlsdError)


def test_an_out_of_stock_event_is_visible_in_process(redis_client) -> None:
    processor = StreamProcessor(redis_client, STREAM, "g", "c", fold=FOLD, block_ms=1)
    processor.ensure_group()
    out = [EntityEvent(f"out{i}", "stock", i, 0.0, END) for i in range(3)]
    latencies = measure_freshness(
        redis_client, STREAM, FOLD, out, process=lambda: processor.step(claim=False)
    )
    assert (latencies > 0).all()
    assert not InStockFilter(product_store(redis_client, FOLD), 0)([0, 1, 2]).any()


@pytest.mark.redis
def test_a_live_processor_process_hides_a_sold_out_product_within_seconds(
    real_redis_url: str, market: ImageMarket, events: pd.DataFrame
) -> None:
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    backend = RedisBackend(client, "redis-url", real_redis_url, "test", "?")
    live = LiveProcessor(backend, FOLD, group="features", block_ms=20)
    assert live.kind == "process"
    try:
        publish_events(client, STREAM, events)
        with live:
            assert live.wait_caught_up(timeout_s=60) >= 0
            sold_out = [
                EntityEvent(f"sold-out-{i}", "stock", i, 0.0, END) for i in range(25)
            ]
            measure_freshness(client, STREAM, FOLD, sold_out[:5], timeout_s=30)
            latencies = measure_freshness(client, STREAM, FOLD, sold_out[5:])
            keep = InStockFilter(product_store(client, FOLD), 0)(np.arange(25))
        summary = live.stop()
        assert summary["applied"] == len(events) + 25
        assert np.percentile(latencies, 99) < 5.0  # the requirement is 5 minutes
        assert not keep.any()
    finally:
        client.flushdb()
        client.close()
