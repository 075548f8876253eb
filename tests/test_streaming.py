"""Streaming features: windows, idempotent apply, dead letters, crash recovery.

The offline computation (:func:`windowed_counts_offline`) is the reference: every
path through Redis (one apply, a consumer group, a crashed consumer, a separate
process) must serve exactly what it says, on fakeredis and on real Redis.
"""

from __future__ import annotations

import json
import signal
import time
import uuid
from datetime import timedelta

import fakeredis
import numpy as np
import pandas as pd
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsd_lib.features.event_stream import (
    AdEvent,
    InvalidEvent,
    events_frame,
    publish,
    read_event_log,
    synthetic_events,
)
from mlsd_lib.features.offline import point_in_time_join
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.records import current_key
from mlsd_lib.features.stream_processor import (
    CRASH_EXIT_CODE,
    FLOAT32_LUA,
    StreamProcessor,
    dead_letter_stream,
    dedup_key,
    main,
    read_live_record,
    start_processor,
    state_key,
    summary_of,
)
from mlsd_lib.features.views import (
    Feature,
    FeatureRegistry,
    FeatureStoreError,
    FeatureView,
)
from mlsd_lib.features.windows import (
    ADS_AGGREGATIONS,
    ADS_STREAM,
    StreamAggregation,
    WindowedCount,
    ads_aggregations,
    seconds_to_timestamps,
    windowed_counts_offline,
)

USER, AD = ADS_AGGREGATIONS
DAY0 = 1_699_920_000.0  # a multiple of one day: buckets start on round numbers
FEATURES = ["impressions_1h", "clicks_1h", "impressions_1d", "clicks_1d"]
REFS = [f"{a.view.name}:{f}" for a in ADS_AGGREGATIONS for f in FEATURES]


class SimulatedCrash(RuntimeError):
    """Raised instead of killing the test process."""


def _crash() -> None:
    raise SimulatedCrash


def event(event_id: str, kind: str, t: float, user: int = 1, ad: int = 7) -> AdEvent:
    return AdEvent(event_id, kind, user, ad, DAY0 + t)


def assert_online_matches_offline(
    client: redis.Redis, log: pd.DataFrame, aggregations=ADS_AGGREGATIONS
) -> int:
    """Every entity's record equals the offline row of its last event; returns #."""
    checked = 0
    for aggregation in aggregations:
        offline = windowed_counts_offline(log, aggregation)
        last = offline.groupby(aggregation.entity_field, sort=False).tail(1)
        for _, row in last.iterrows():
            record = read_live_record(
                client, aggregation, row[aggregation.entity_field]
            )
            assert record is not None, row.to_dict()
            timestamp, values = record
            expected = row[aggregation.view.feature_names].to_numpy(np.float32)
            np.testing.assert_array_equal(values, expected, err_msg=str(row.to_dict()))
            assert timestamp == pytest.approx(
                row["event_timestamp"].timestamp(), abs=1e-6
            )
            checked += 1
        assert client.get(current_key(aggregation.view)) == b"live"
    return checked


# --- windows: the semantics on hand-made examples -----------------------------------

HAND_MADE = [
    event("e1", "impression", 0.0),  # bucket 0
    event("e2", "click", 59.999999),  # still bucket 0
    event("u2", "impression", 10.0, user=2),  # another user: independent
    event("e3", "impression", 60.0),  # bucket 1
    event("e4", "impression", 3600 + 59.0),  # bucket 60: 1h = buckets 1..60
    event("e5", "click", 86400 + 30.0),  # bucket 1440: 1d = buckets 1..1440
    event("e6", "impression", 3600 + 30.0),  # late: inside 1d, outside 1h
    event("e3", "impression", 60.0),  # a redelivery of e3: no row
]
#: (user, seconds after DAY0 of the record, impressions/clicks 1h, 1d) per row.
HAND_MADE_ROWS = [
    (1, 0.0, [1, 0, 1, 0]),
    (1, 59.999999, [1, 1, 1, 1]),
    (2, 10.0, [1, 0, 1, 0]),
    (1, 60.0, [2, 1, 2, 1]),
    (1, 3659.0, [2, 0, 3, 1]),
    (1, 86430.0, [0, 1, 2, 1]),
    (1, 86430.0, [0, 1, 3, 1]),
]


def test_windowed_counts_follow_buckets_windows_and_lateness() -> None:
    rows = windowed_counts_offline(events_frame(HAND_MADE), USER)
    assert list(rows.columns) == ["user_id", "event_timestamp", *FEATURES]
    got = [
        (r.user_id, round(r.event_timestamp.timestamp() - DAY0, 6), list(r[FEATURES]))
        for _, r in rows.iterrows()
    ]
    assert got == HAND_MADE_ROWS


def test_hand_made_events_are_served_exactly(redis_client: redis.Redis) -> None:
    processor = StreamProcessor(redis_client, ADS_STREAM, "g", "c")
    outcomes = [processor.apply(e) for e in HAND_MADE]
    assert outcomes == [True] * 7 + [False]
    assert assert_online_matches_offline(redis_client, events_frame(HAND_MADE)) == 3
    # Buckets older than the longest window are gone, the rest are kept.
    fields = redis_client.hgetall(state_key(USER, "1"))
    first = USER.bucket_of(DAY0)
    assert f"c:impression:{first}".encode() not in fields
    assert fields[f"c:impression:{first + 60}".encode()] == b"2"  # e4 and late e6


def test_definitions_that_cannot_work_are_refused() -> None:
    view = USER.view
    with pytest.raises(FeatureStoreError, match="whole number"):
        odd = WindowedCount("clicks_1d", "click", timedelta(seconds=90))
        StreamAggregation(view, "user_id", (*USER.counts[:3], odd))
    with pytest.raises(FeatureStoreError, match="without a definition"):
        StreamAggregation(view, "user_id", USER.counts[:3])
    with pytest.raises(FeatureStoreError, match="entities"):
        StreamAggregation(view, "ad_id", USER.counts)
    batch = FeatureView("b", ("user_id",), (Feature("clicks_1h"),), timedelta(days=1))
    with pytest.raises(FeatureStoreError, match="StreamSource"):
        StreamAggregation(batch, "user_id", USER.counts[1:2])
    with pytest.raises(FeatureStoreError, match="reads 'other'"):
        StreamProcessor(fakeredis.FakeRedis(), "other", "g", "c", ADS_AGGREGATIONS)


# --- the Lua side ------------------------------------------------------------------

_LUA_CLIENT = fakeredis.FakeRedis()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.integers(0, 2**24), st.integers(0, 2**50)))
def test_lua_float32_encoding_matches_numpy(n: int) -> None:
    script = FLOAT32_LUA + "return float32(tonumber(ARGV[1]))"
    assert _LUA_CLIENT.eval(script, 0, str(n)) == np.float32(n).tobytes()


_kinds = st.sampled_from(["impression", "click"])
_times = st.sampled_from([0.0, 30.0, 59.999999, 60.0, 3599.0, 3600.0, 7200.5,
                          86399.0, 86400.0, 86460.0, 90000.0])  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(_kinds, _times, st.integers(0, 2), st.integers(0, 1)),
             min_size=1, max_size=25),
    st.lists(st.integers(0, 1000), max_size=8),
)  # fmt: skip
def test_every_apply_serves_the_offline_row(draws, repeats) -> None:
    """Any order (late events too), with redeliveries injected: after every event
    the record equals the offline row for it, and duplicates change nothing."""
    events = [event(f"e{i}", k, t, u, a) for i, (k, t, u, a) in enumerate(draws)]
    for r in repeats:  # a redelivery comes after the original
        original = r % len(events)
        events.insert(original + 1 + r % (len(events) - original), events[original])
    client = fakeredis.FakeRedis()
    processor = StreamProcessor(client, ADS_STREAM, "g", "c")
    offline = {a.view.name: windowed_counts_offline(events_frame(events), a)
               for a in ADS_AGGREGATIONS}  # fmt: skip
    seen: set[str] = set()
    row = 0
    for e in events:
        applied = processor.apply(e)
        assert applied == (e.event_id not in seen)
        seen.add(e.event_id)
        if not applied:
            continue
        for aggregation in ADS_AGGREGATIONS:
            expected = offline[aggregation.view.name].iloc[row]
            key = getattr(e, aggregation.entity_field)
            timestamp, values = read_live_record(client, aggregation, key)
            np.testing.assert_array_equal(
                values, expected[FEATURES].to_numpy(np.float32)
            )
            assert timestamp == pytest.approx(expected.event_timestamp.timestamp())
        row += 1


# --- delivery: idempotency, dead letters, XAUTOCLAIM ---------------------------------


def test_the_same_event_twice_is_counted_once(redis_client: redis.Redis) -> None:
    processor = StreamProcessor(redis_client, ADS_STREAM, "g", "c")
    click = event("dup", "click", 5.0)
    assert processor.apply(click) is True
    first = read_live_record(redis_client, USER, 1)
    assert processor.apply(click) is False
    second = read_live_record(redis_client, USER, 1)
    assert first[0] == second[0] and list(second[1]) == [0, 1, 0, 1]
    field = f"c:click:{USER.bucket_of(DAY0)}"
    assert redis_client.hget(state_key(USER, "1"), field) == b"1"
    assert 0 < redis_client.ttl(dedup_key(ADS_STREAM, "dup")) <= 3600


def test_publish_validates_everything_before_sending(redis_client: redis.Redis) -> None:
    good = event("ok", "impression", 1.0)
    with pytest.raises(InvalidEvent, match="item 1 is a dict"):
        publish(redis_client, ADS_STREAM, [good, {"event_id": "x"}])
    assert redis_client.exists(ADS_STREAM) == 0  # nothing half-published
    with pytest.raises(InvalidEvent, match="not one of"):
        AdEvent("x", "view", 1, 1, DAY0)
    with pytest.raises(InvalidEvent, match="non-negative"):
        AdEvent("x", "click", -1, 1, DAY0)
    with pytest.raises(InvalidEvent, match="finite"):
        AdEvent("x", "click", 1, 1, float("nan"))
    ids = publish(redis_client, ADS_STREAM, [good], maxlen=1000)
    log = read_event_log(redis_client, ADS_STREAM)
    assert list(log["message_id"]) == ids and list(log["event_id"]) == ["ok"]


def test_poison_messages_go_to_the_dead_letter_stream(
    redis_client: redis.Redis,
) -> None:
    good = [event("g1", "impression", 1.0), event("g2", "click", 2.0)]
    publish(redis_client, ADS_STREAM, good[:1])
    poison = [
        {"event_id": "p1", "type": "view", "user_id": "1", "ad_id": "1",
         "timestamp": "1700000000"},
        {"event_id": "p2", "type": "click", "user_id": "one", "ad_id": "1",
         "timestamp": "1700000000"},
        {"garbage": "yes"},
    ]  # fmt: skip
    for fields in poison:
        redis_client.xadd(ADS_STREAM, fields)
    publish(redis_client, ADS_STREAM, good[1:])
    processor = StreamProcessor(redis_client, ADS_STREAM, "g", "c", block_ms=10)
    assert processor.run(idle_exit_s=0.2, max_runtime_s=10) == "idle"
    assert (processor.counts.applied, processor.counts.dead_lettered) == (2, 3)
    dead = redis_client.xrange(dead_letter_stream(ADS_STREAM))
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert "'view' is not one of" in reasons[0]
    assert "user_id='one' is not a valid int" in reasons[1]
    assert "lacks fields" in reasons[2]
    assert json.loads(dead[2][1][b"fields"]) == {"garbage": "yes"}
    assert redis_client.xpending(ADS_STREAM, "g")["pending"] == 0
    assert_online_matches_offline(redis_client, events_frame(good))


def test_an_apply_that_keeps_failing_is_dead_lettered_after_max_deliveries(
    redis_client: redis.Redis,
) -> None:
    publish(redis_client, ADS_STREAM, [event("bad", "click", 1.0, user=3)])
    redis_client.set(state_key(USER, "3"), "not a hash")  # every apply: WRONGTYPE
    processor = StreamProcessor(
        redis_client, ADS_STREAM, "g", "c", block_ms=5, min_idle_ms=1,
        max_deliveries=3,
    )  # fmt: skip
    assert processor.run(max_events=1, max_runtime_s=10) == "max-events"
    assert processor.counts.retried == 3 and processor.counts.dead_lettered == 1
    ((_, fields),) = redis_client.xrange(dead_letter_stream(ADS_STREAM))
    assert b"delivered 4 times" in fields[b"reason"]
    # The failed applies wrote nothing: no marker, no ad record, no half update.
    assert redis_client.exists(dedup_key(ADS_STREAM, "bad")) == 0
    assert read_live_record(redis_client, AD, 7) is None


def test_a_crashed_consumers_messages_are_claimed_and_counted_once(
    redis_client: redis.Redis,
) -> None:
    events = synthetic_events(120, num_users=5, num_ads=3, seed=3)
    publish(redis_client, ADS_STREAM, events)
    crashed = StreamProcessor(
        redis_client, ADS_STREAM, "g", "a", batch_size=20, crash=_crash
    )
    with pytest.raises(SimulatedCrash):
        crashed.run(crash_after=50, max_runtime_s=10)
    # Batch 3 (events 41-60) was read, 41-50 applied, then the crash: 20 pending.
    assert redis_client.xpending(ADS_STREAM, "g")["pending"] == 20
    # A consumer that only read, and never acked, leaves messages pending too.
    redis_client.xreadgroup("g", "b", {ADS_STREAM: ">"}, count=5)
    rescuer = StreamProcessor(
        redis_client, ADS_STREAM, "g", "c", min_idle_ms=100, block_ms=10
    )
    assert rescuer.step(claim=True) > 0  # new messages: nothing is idle enough yet
    assert rescuer.counts.claimed == 0
    assert rescuer.run(idle_exit_s=0.5, max_runtime_s=20) == "idle"
    assert rescuer.counts.claimed == 20 + 5
    assert rescuer.counts.duplicates == 10  # applied by "a", never acked
    assert rescuer.counts.applied == len(events) - 50
    assert redis_client.xpending(ADS_STREAM, "g")["pending"] == 0
    assert_online_matches_offline(redis_client, events_frame(events))


# --- online/offline consistency -----------------------------------------------------


def test_online_store_serves_the_point_in_time_vector(
    redis_client: redis.Redis,
) -> None:
    events = synthetic_events(
        400, num_users=12, num_ads=5, impressions_per_s=0.02, click_rate=0.3, seed=7
    )
    publish(redis_client, ADS_STREAM, events)
    log = read_event_log(redis_client, ADS_STREAM)  # the replayed event log
    registry = FeatureRegistry([a.view for a in ADS_AGGREGATIONS])
    tables = {a.view.name: windowed_counts_offline(log, a) for a in ADS_AGGREGATIONS}
    store = OnlineStore(redis_client, registry)
    processor = StreamProcessor(redis_client, ADS_STREAM, "g", "c", block_ms=10)
    seconds = np.array([e.timestamp for e in events])
    rng = np.random.default_rng(0)
    checkpoints = np.sort(rng.uniform(seconds[0] - 60, seconds[-1], 12))
    checkpoints = np.round([*checkpoints, seconds[-1], seconds[-1] + 2 * 86400], 6)
    entities = pd.DataFrame({"user_id": np.arange(12), "ad_id": np.arange(12) % 5})
    compared = 0
    for t in checkpoints:
        # Online at t: the processor has handled every event up to t, no later one.
        processor.run(max_events=int(np.searchsorted(seconds, t, side="right")))
        served = store.read(entities, REFS, now=float(t))
        labels = entities.assign(event_timestamp=seconds_to_timestamps([t])[0])
        joined = point_in_time_join(labels, REFS, registry, tables)
        np.testing.assert_array_equal(served.values, joined.matrix())
        np.testing.assert_array_equal(served.missing, joined.missing)
        compared += int((~served.missing).sum())
    assert compared > 100  # the comparison saw real values, not only defaults


# --- real processes on real Redis ---------------------------------------------------


@pytest.fixture
def real_client(real_redis_url: str):
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    try:
        yield client
    finally:
        client.flushdb()
        client.close()


@pytest.mark.faults
@pytest.mark.redis
def test_a_killed_processor_process_loses_and_doubles_nothing(
    real_redis_url: str, real_client: redis.Redis
) -> None:
    stream = f"ads-{uuid.uuid4().hex[:8]}"
    events = synthetic_events(600, num_users=30, num_ads=10, seed=11)
    publish(real_client, stream, events)
    common = dict(stream=stream, group="features", batch_size=50, max_runtime_s=30)
    first = start_processor(real_redis_url, consumer="one", crash_after=250, **common)
    out, err = first.communicate(timeout=40)
    assert first.returncode == CRASH_EXIT_CODE, err
    assert real_client.xpending(stream, "features")["pending"] == 50
    second = start_processor(
        real_redis_url, consumer="two", min_idle_ms=200, idle_exit_s=1.5, **common
    )
    out, err = second.communicate(timeout=40)
    assert second.returncode == 0, err
    summary = summary_of(out)
    assert summary["claimed"] == 50 and summary["duplicates"] == 50
    assert summary["applied"] == len(events) - 250
    assert summary["stopped"] == "idle"
    assert real_client.xpending(stream, "features")["pending"] == 0
    checked = assert_online_matches_offline(
        real_client, events_frame(events), ads_aggregations(stream)
    )
    assert checked == 30 + 10


@pytest.mark.redis
def test_a_processor_process_stops_cleanly_on_sigterm(
    real_redis_url: str, real_client: redis.Redis
) -> None:
    publish(real_client, ADS_STREAM, [event("s1", "click", 1.0)])
    process = start_processor(
        real_redis_url, stream=ADS_STREAM, group="g", consumer="c", max_runtime_s=30
    )
    try:
        for _ in range(200):  # at most 10 s
            if read_live_record(real_client, USER, 1) or process.poll() is not None:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    summary = summary_of(out)
    assert summary["stopped"] == "signal" and summary["applied"] == 1


def test_an_unreachable_redis_is_a_clear_error(capsys: pytest.CaptureFixture) -> None:
    code = main(["--redis-url", "redis://127.0.0.1:1/0", "--group", "g",
                 "--consumer", "c"])  # fmt: skip
    assert code == 2
    assert "does not answer" in capsys.readouterr().err
