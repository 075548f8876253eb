"""The visual search market as events: one table, parquet by day and hour, a stream."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import redis

from mlsd_lib.features.entity_events import NO_ENTITY, EntityEvent
from mlsd_lib.features.event_log_files import read_partitioned
from mlsd_lib.visual.events import (
    EVENT_LOG_COLUMNS,
    VISUAL_EPOCH,
    EventLogError,
    epoch_seconds,
    publish_events,
    read_event_log,
    visual_event_log,
    world_seconds,
    write_event_log,
)
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig
from mlsd_lib.worlds.images_market import DAY_SECONDS, ImageMarket, MarketConfig


@pytest.fixture(scope="module")
def market() -> ImageMarket:
    world = ImageWorld(ImageWorldConfig.quick())
    return ImageMarket(world, MarketConfig(days=2, queries_per_day=300))


def day_log(market: ImageMarket, days, **options) -> tuple:
    queries = market.queries(days)
    shown = market.legacy_results(queries, 10)
    shown[::5, 8:] = -1  # some short lists
    engagement = market.respond(queries, shown)
    events = visual_event_log(
        queries,
        engagement,
        stock_changes=market.stock_changes,
        price_changes=market.price_changes,
        **options,
    )
    return queries, engagement, events


@pytest.fixture(scope="module")
def logged(market):
    return day_log(market, 0)


def test_every_query_slot_click_save_and_change_becomes_one_event(market, logged):
    queries, engagement, events = logged
    assert tuple(events.columns) == EVENT_LOG_COLUMNS
    counts = events["type"].value_counts()
    assert counts["query"] == len(queries)
    assert counts["impression"] == (engagement.shown >= 0).sum()
    assert counts["click"] == engagement.clicked.sum() > 0
    assert counts["save"] == engagement.saved.sum() > 0
    in_day = market.stock_changes["time"] < DAY_SECONDS
    assert counts["stock"] == in_day.sum()
    assert counts["price"] == (market.price_changes["time"] < DAY_SECONDS).sum()
    assert events["event_id"].is_unique
    times = events["event_timestamp"]
    assert times.is_monotonic_increasing
    assert times.iloc[0] == VISUAL_EPOCH  # the snapshot at time 0


def test_events_say_what_the_log_knew_and_nothing_more(market, logged):
    queries, engagement, events = logged
    q = events[events["type"] == "query"]
    assert (q["product_id"] == NO_ENTITY).all()  # the photographed product: secret
    assert np.array_equal(q["value"], queries["region"])
    assert np.array_equal(q["event_id"], "q" + queries["query_id"].astype(str))
    i = events[events["type"] == "impression"]
    first = i[i["query_id"] == queries["query_id"].iloc[1]]
    assert first["product_id"].tolist() == engagement.shown[1].tolist()
    assert first["position"].tolist() == list(range(10))
    assert np.array_equal(first["value"], first["position"])
    assert (first["event_timestamp"] == q["event_timestamp"].iloc[1]).all()
    assert first["event_id"].iloc[3] == f"q{queries['query_id'].iloc[1]}.3i"
    short = i[i["query_id"] == queries["query_id"].iloc[0]]
    assert short["position"].tolist() == list(range(8))  # empty slots: no event
    c = events[events["type"] == "click"]
    row, slot = np.nonzero(engagement.clicked)
    expected = epoch_seconds(engagement.click_time[row, slot])
    got = dict(zip(c["event_id"], world_seconds(c["event_timestamp"]), strict=True))
    ids = [
        f"q{queries['query_id'].iloc[r]}.{s}c" for r, s in zip(row, slot, strict=True)
    ]
    assert np.allclose([got[x] for x in ids], world_seconds(expected), atol=1e-6)
    s = events[events["type"] == "stock"]
    snapshot = s[s["event_id"].str.endswith(".0")]
    assert len(snapshot) == market.world.n_products
    assert (snapshot["region"] == -1).all() and (s["region"] >= -1).all()
    assert s["query_id"].eq(-1).all() and s["policy"].isna().all()
    assert (events.loc[events["type"] == "query", "policy"] == "legacy").all()


def test_ids_and_rows_do_not_depend_on_where_the_log_is_cut(market, logged):
    _, _, events = logged
    _, _, both = day_log(market, [0, 1])
    assert len(both) > len(events)
    same = both[both["event_id"].isin(set(events["event_id"]))]
    pd.testing.assert_frame_equal(same.reset_index(drop=True), events)


def test_the_log_round_trips_through_parquet_by_day_and_hour(logged, tmp_path):
    _, _, events = logged
    files = write_event_log(events, tmp_path)
    assert files.rows == len(events) and files.bytes > 0
    folders = {p.parent.relative_to(tmp_path).as_posix() for p in files.files}
    assert "day=0/hour=0" in folders and len(folders) > 15
    back = read_event_log(tmp_path)
    pd.testing.assert_frame_equal(back, events, check_dtype=False)
    assert back["day"].dtype == np.int32 and back["position"].dtype == np.int16
    write_event_log(events[events["hour"] == 20], tmp_path)  # an hour written twice
    assert len(read_event_log(tmp_path)) == len(events)
    clicks = read_event_log(tmp_path, types=["click"])
    assert (clicks["type"] == "click").all() and len(clicks) > 0
    day0 = read_event_log(tmp_path, days=[0])
    assert len(day0) == (events["day"] == 0).sum() and (day0["day"] == 0).all()
    with pytest.raises(EventLogError, match=r"unknown event types \['tap'\]"):
        read_event_log(tmp_path, types=["tap"])
    with pytest.raises(EventLogError, match="holds no event log"):
        read_event_log(tmp_path / "nothing")
    with pytest.raises(EventLogError, match="only 'day' and 'hour'"):
        write_event_log(events, tmp_path / "x", partition_by=("region",))


def test_query_embeddings_are_logged_as_float16_bytes(market, logged, tmp_path):
    queries, engagement, _ = logged
    vectors = np.random.default_rng(0).normal(size=(len(queries), 64))
    events = visual_event_log(queries, engagement, query_vectors=vectors)
    q = events[events["type"] == "query"]
    assert q["embedding"].map(len).eq(128).all()
    assert events.loc[events["type"] != "query", "embedding"].isna().all()
    first = np.frombuffer(q["embedding"].iloc[0], "<f2")
    assert np.allclose(first, vectors[0], atol=1e-2)
    with_vectors = write_event_log(events, tmp_path / "with")
    without = write_event_log(events.drop(columns="embedding"), tmp_path / "without")
    extra = (with_vectors.bytes - without.bytes) / len(queries)
    assert 128 <= extra < 256  # 128 B of float16 per query: incompressible
    assert "embedding" in read_partitioned(tmp_path / "with").columns
    assert "embedding" not in read_partitioned(tmp_path / "without").columns
    with pytest.raises(EventLogError, match=r"\(n_queries, d\) = \(\d+, d\)"):
        visual_event_log(queries, engagement, query_vectors=vectors[:3])


def test_a_log_of_other_queries_is_refused(market, logged):
    queries, engagement, _ = logged
    with pytest.raises(EventLogError, match="engagement holds"):
        visual_event_log(queries.iloc[:5], engagement)


def test_publish_sends_entity_events_in_order(redis_client: redis.Redis, logged):
    _, _, events = logged
    sent = publish_events(redis_client, "v", events, chunk_size=2_000)
    assert sent == len(events) == redis_client.xlen("v")
    first = redis_client.xrange("v", count=3)
    parsed = [EntityEvent.from_fields(f) for _, f in first]
    assert [e.event_id for e in parsed] == events["event_id"].iloc[:3].tolist()
    assert parsed[0].entity_id == events["product_id"].iloc[0]
    assert parsed[0].timestamp == VISUAL_EPOCH.timestamp()
    only = publish_events(redis_client, "w", events, types=["stock", "price"])
    assert only == events["type"].isin(["stock", "price"]).sum()
    with pytest.raises(EventLogError, match="chunk_size=0"):
        publish_events(redis_client, "v", events, chunk_size=0)
    with pytest.raises(EventLogError, match="unknown event types"):
        publish_events(redis_client, "v", events, types=["tap"])


def test_world_and_epoch_seconds_are_inverse():
    t = np.array([0.0, 1.5, 86_399.123456])
    assert np.allclose(world_seconds(epoch_seconds(t)), t)
    stamps = pd.Series(pd.to_datetime(epoch_seconds(t), unit="s", utc=True))
    assert np.allclose(world_seconds(stamps), t, atol=1e-6)
