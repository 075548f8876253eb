"""The latest-value fold and entity events, generic parts of the feature store.

The offline computation (:func:`latest_values_at`) is the reference: whatever
order the events arrive in, redelivered or folded by a separate process, the
processor must serve the newest value of each type, by event time.
"""

from __future__ import annotations

import uuid

import fakeredis
import numpy as np
import pandas as pd
import pytest
import redis

from mlsd_lib.features.entity_events import (
    NO_ENTITY,
    EntityEvent,
    entity_events_frame,
    entity_events_from_frame,
    publish,
)
from mlsd_lib.features.event_stream import InvalidEvent
from mlsd_lib.features.fold_catalog import fold_named
from mlsd_lib.features.latest_fold import (
    LatestValue,
    LatestValueFold,
    LatestValues,
    entity_state,
    latest_state_key,
    latest_values_at,
)
from mlsd_lib.features.live_processor import (
    LiveProcessor,
    LiveProcessorError,
    _fold_options,
)
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.records import LIVE_GENERATION, record_key
from mlsd_lib.features.stream_keys import dedup_key
from mlsd_lib.features.stream_processor import (
    StreamProcessor,
    main,
    measure_freshness,
    processor_command,
    start_processor,
    summary_of,
)
from mlsd_lib.features.views import (
    Feature,
    FeatureRegistry,
    FeatureStoreError,
    FeatureView,
    StreamSource,
)
from mlsd_lib.features.windows import windowed_counts_in_order
from mlsd_lib.redis_backend import RedisBackend

STREAM = "entities_test"
DAY0 = 1_699_920_000.0
FOLD = entity_state(
    STREAM, name="item", value_types=("stock", "price"), counted_types=("view",)
)
READS = ["item_state:stock", "item_state:price", "item_counts:view_24h"]


def event(event_id: str, kind: str, t: float, value: float = 0.0, entity: int = 1):
    return EntityEvent(event_id, kind, entity, value, DAY0 + t)


HAND_MADE = [
    event("p1", "price", 10.0, 20.0),
    event("s1", "stock", 20.0, 3.0),
    event("v1", "view", 21.0),
    event("s0", "stock", 15.0, 1.0),  # late: older than s1, never served
    event("p3", "price", 30.0, 25.0),
    event("p2", "price", 30.0, 24.0),  # same time as p3: the larger id wins
    event("q1", "query", 31.0, 2.0, entity=NO_ENTITY),  # about no entity
    event("s1", "stock", 20.0, 3.0),  # a redelivery of s1: a no-op
    event("v2", "view", 40.0, entity=2),  # another entity: independent
]


def fold_into(client: redis.Redis, events: list[EntityEvent]) -> StreamProcessor:
    publish(client, STREAM, events)
    processor = StreamProcessor(client, STREAM, "g", "c", fold=FOLD, block_ms=1)
    processor.run(idle_exit_s=0.05)
    return processor


def served(client: redis.Redis, entities: list[int], now: float) -> pd.DataFrame:
    store = OnlineStore(client, FeatureRegistry([FOLD.view, FOLD.counts.view]))
    read = store.read(pd.DataFrame({"entity_id": entities}), READS, now=now)
    return pd.DataFrame(np.where(read.missing, np.nan, read.values), columns=READS)


# --- entity events ------------------------------------------------------------------


def test_entity_events_are_checked_and_round_trip_through_a_table() -> None:
    frame = entity_events_frame(HAND_MADE)
    assert list(frame.columns) == [
        "event_id", "type", "entity_id", "value", "event_timestamp",
    ]  # fmt: skip
    assert frame["value"].dtype == np.float64 and frame["entity_id"].dtype == np.int64
    assert entity_events_from_frame(frame) == HAND_MADE
    again = EntityEvent.from_fields(HAND_MADE[1].to_fields())
    assert again == HAND_MADE[1] and isinstance(again.value, float)
    assert not HAND_MADE[6].has_entity and HAND_MADE[0].has_entity
    with pytest.raises(InvalidEvent, match="type 'a:b' must be a non-empty token"):
        EntityEvent("x", "a:b", 1, 0.0, DAY0)
    with pytest.raises(InvalidEvent, match="value=nan must be a finite number"):
        EntityEvent("x", "price", 1, float("nan"), DAY0)
    with pytest.raises(InvalidEvent, match="value=True must be a finite number"):
        EntityEvent("x", "price", 1, True, DAY0)
    with pytest.raises(InvalidEvent, match="entity_id=-2 must be non-negative"):
        EntityEvent("x", "price", -2, 1.0, DAY0)
    with pytest.raises(InvalidEvent, match="field value='cheap' is not a valid float"):
        EntityEvent.from_fields({**HAND_MADE[0].to_fields(), "value": "cheap"})


# --- the semantics on hand-made events ----------------------------------------------


def test_the_newest_value_by_event_time_is_served_whatever_arrives_late(
    redis_client: redis.Redis,
) -> None:
    processor = fold_into(redis_client, HAND_MADE)
    assert processor.counts.applied == 8 and processor.counts.duplicates == 1
    got = served(redis_client, [1, 2, 3], now=DAY0 + 50)
    assert got.iloc[0].tolist() == [3.0, 25.0, 1.0]  # s1, p3 (tie: larger id), v1
    assert np.isnan(got.iloc[1, :2]).all() and got.iloc[1, 2] == 1.0
    assert got.iloc[2].isna().all()
    # the record's time is the newest value's (p3 at 30 s), the counts' the view's
    raw = redis_client.get(record_key(FOLD.view, LIVE_GENERATION, "1"))
    assert np.frombuffer(raw[:8], "<f8")[0] == DAY0 + 30.0
    # an event about no entity wrote nothing but its dedup marker
    assert redis_client.exists(dedup_key(STREAM, "q1"))
    assert not redis_client.exists(latest_state_key(FOLD.view, str(NO_ENTITY)))
    # a value event does not touch the counts, nor a counted event the values
    assert not redis_client.exists(record_key(FOLD.counts.view, LIVE_GENERATION, "3"))
    assert not redis_client.exists(latest_state_key(FOLD.view, "2"))


def test_any_arrival_order_serves_the_offline_values(redis_client) -> None:
    rng = np.random.default_rng(0)
    events = [
        event(f"e{i}", str(rng.choice(["stock", "price", "view"])),
              float(rng.integers(0, 4_000)), float(rng.integers(0, 16)),
              int(rng.integers(0, 6)))
        for i in range(300)
    ]  # fmt: skip
    shuffled = [events[i] for i in rng.permutation(len(events))]
    fold_into(redis_client, shuffled + shuffled[:40])  # and some redeliveries
    got = served(redis_client, list(range(6)), now=DAY0 + 5_000)
    log = entity_events_frame(events)
    expected = latest_values_at(log, FOLD.values, np.arange(6), np.full(6, DAY0 + 5e3))
    np.testing.assert_array_equal(got[READS[0]], expected["stock"])
    np.testing.assert_array_equal(got[READS[1]], expected["price"])
    views = log[log["type"] == "view"].sort_values("event_timestamp", kind="stable")
    counts = windowed_counts_in_order(views, FOLD.counts).groupby("entity_id").tail(1)
    by_entity = counts.set_index("entity_id")["view_24h"].reindex(range(6))
    np.testing.assert_array_equal(got[READS[2]], by_entity.to_numpy(np.float32))


def test_the_offline_values_are_point_in_time() -> None:
    log = entity_events_frame(HAND_MADE)
    times = DAY0 + np.array([5.0, 10.0, 17.0, 25.0, 30.0, 100.0])
    at = latest_values_at(log, FOLD.values, np.ones(6, dtype=int), times)
    assert at["stock"].tolist()[2:] == [1.0, 3.0, 3.0, 3.0]
    assert np.isnan(at["stock"][:2]).all()
    assert at["price"].tolist()[1:] == [20.0, 20.0, 20.0, 25.0, 25.0]
    assert at["event_timestamp"].isna().tolist() == [True] + [False] * 5
    assert at["event_timestamp"].iloc[2] == pd.Timestamp(DAY0 + 15, unit="s", tz="UTC")
    with pytest.raises(FeatureStoreError, match=r"lacks columns \['value'\]"):
        latest_values_at(log.drop(columns="value"), FOLD.values, [1], [DAY0])


def test_a_failing_apply_writes_nothing(redis_client) -> None:
    redis_client.set(latest_state_key(FOLD.view, "1"), "not a hash")
    publish(redis_client, STREAM, [event("bad", "price", 1.0, 9.0)])
    processor = StreamProcessor(
        redis_client, STREAM, "g", "c", fold=FOLD, block_ms=1, max_deliveries=1,
        min_idle_ms=1,
    )  # fmt: skip
    processor.run(idle_exit_s=0.2)
    assert processor.counts.retried >= 1 and processor.counts.dead_lettered == 1
    assert not redis_client.exists(dedup_key(STREAM, "bad"))
    assert not redis_client.exists(record_key(FOLD.view, LIVE_GENERATION, "1"))


# --- declarations, names and processes ----------------------------------------------


def test_the_catalog_rebuilds_the_fold_by_name() -> None:
    by_name = fold_named(
        "latest", STREAM, value_types="stock, price", counted_types=["view"],
        state_name="item",
    )  # fmt: skip
    assert by_name == FOLD
    assert _fold_options(FOLD) == {
        "fold": "latest", "value_types": "stock,price", "counted_types": "view",
        "state_name": "item",
    }  # fmt: skip
    command = processor_command(
        "redis://h", stream=STREAM, group="g", consumer="c", fold="latest",
        value_types=("stock", "price"), counted_types="view", state_name="item",
    )  # fmt: skip
    assert command[-8:] == [
        "--fold", "latest", "--value-types", "stock,price",
        "--counted-types", "view", "--state-name", "item",
    ]  # fmt: skip
    values_only = fold_named("latest", value_types="price")
    assert values_only.counts is None and values_only.stream == "entity_events"
    assert values_only.view.name == "entity_state"
    custom_view = FeatureView(
        "prices", ("entity_id",), (Feature("price"),), pd.Timedelta(days=1),
        source=StreamSource(STREAM),
    )  # fmt: skip
    custom = LatestValueFold(
        LatestValues(custom_view, "entity_id", (LatestValue("price", "price"),))
    )
    with pytest.raises(LiveProcessorError, match="cannot rebuild this LatestValue"):
        _fold_options(custom)


def test_bad_declarations_and_options_are_refused_with_the_fix(capsys) -> None:
    with pytest.raises(FeatureStoreError, match="needs value_types"):
        fold_named("latest")
    with pytest.raises(FeatureStoreError, match=r"\['state_name'\] configure the "
                       "latest fold, not the history one"):  # fmt: skip
        fold_named("history", state_name="x")
    with pytest.raises(FeatureStoreError, match="configure the history fold, not the "
                       "latest one"):  # fmt: skip
        fold_named("latest", value_types="a", history_length=3)
    with pytest.raises(FeatureStoreError, match="at least one value type"):
        entity_state(value_types=())
    with pytest.raises(FeatureStoreError, match=r"\['view'\] both set a value and "):
        entity_state(value_types=("view",), counted_types=("view",))
    with pytest.raises(FeatureStoreError, match="event type 'a b' must be a non-empty"):
        LatestValue("x", "a b")
    with pytest.raises(FeatureStoreError, match="must define each of its features"):
        LatestValues(FOLD.view, "entity_id", (LatestValue("stock", "stock"),))
    code = main(["--redis-url", "redis://127.0.0.1:1/0", "--group", "g",
                 "--consumer", "c", "--fold", "latest"])  # fmt: skip
    assert code == 2 and "needs value_types" in capsys.readouterr().err


def test_freshness_is_measured_on_value_events_only() -> None:
    client = fakeredis.FakeRedis()
    processor = StreamProcessor(client, STREAM, "g", "c", fold=FOLD, block_ms=1)
    processor.ensure_group()
    outs = [event(f"o{i}", "stock", 0.0, 0.0, entity=i) for i in range(4)]
    latencies = measure_freshness(
        client, STREAM, FOLD, outs, process=lambda: processor.step(claim=False)
    )
    assert latencies.shape == (4,) and (latencies > 0).all()
    assert served(client, [3], now=None)[READS[0]].tolist() == [0.0]
    with pytest.raises(FeatureStoreError, match=r"types \['view'\] set no value"):
        measure_freshness(client, STREAM, FOLD, [event("v", "view", 0.0)])


@pytest.mark.redis
def test_a_processor_process_folds_entity_events_by_name(real_redis_url) -> None:
    client = redis.Redis.from_url(real_redis_url)
    stream = f"entities-{uuid.uuid4().hex[:8]}"
    try:
        publish(client, stream, HAND_MADE)
        process = start_processor(
            real_redis_url, stream=stream, group="g", consumer="c", fold="latest",
            value_types="stock,price", counted_types="view", state_name="item",
            idle_exit_s=1.0, max_runtime_s=60,
        )  # fmt: skip
        out, err = process.communicate(timeout=90)
        assert process.returncode == 0, err
        summary = summary_of(out)
        assert summary["applied"] == 8 and summary["duplicates"] == 1
        got = served(client, [1], now=DAY0 + 50)
        assert got.iloc[0].tolist() == [3.0, 25.0, 1.0]
    finally:
        client.flushdb()
        client.close()


def test_a_live_processor_thread_reports_when_a_backlog_is_folded() -> None:
    client = fakeredis.FakeRedis()
    backend = RedisBackend(client, "fakeredis", "in-process", "test", "(emulated)")
    live = LiveProcessor(backend, FOLD, group="g", block_ms=5)
    assert live.caught_up()  # no stream yet: nothing to fold
    publish(client, STREAM, HAND_MADE)
    assert not live.caught_up()  # its group does not even exist yet
    with live:
        waited = live.wait_caught_up(timeout_s=30)
        assert waited >= 0 and live.caught_up()
        assert served(client, [1], now=DAY0 + 50).iloc[0].tolist() == [3.0, 25.0, 1.0]
        publish(client, STREAM, [event("p9", "price", 60.0, 30.0)])
        live.wait_caught_up(timeout_s=30)
        assert served(client, [1], now=DAY0 + 70).iloc[0, 1] == 30.0
    assert live.stop()["applied"] == 9
