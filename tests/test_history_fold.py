"""The history fold: per-user last items, category counts and activity, streamed.

The offline computation (:func:`histories_at`) is the reference: whatever order
the events arrive in, redelivered, claimed after a crash, or folded by a
separate process, the processor must serve exactly what it computes for the
events before the request time, on fakeredis and on real Redis.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import fakeredis
import numpy as np
import pandas as pd
import pytest
import redis

from mlsd_lib.features.event_stream import AdEvent, InvalidEvent
from mlsd_lib.features.fold_catalog import UnknownFold, fold_named
from mlsd_lib.features.histories import (
    NO_ITEM_PAD,
    Histories,
    histories_at,
    read_histories,
)
from mlsd_lib.features.history_fold import (
    MAX_HISTORY_LENGTH,
    HistoryFold,
    interaction_history,
)
from mlsd_lib.features.interaction_events import (
    NO_ITEM,
    InteractionEvent,
    interactions_frame,
    interactions_from_frame,
    publish,
    read_interaction_log,
    synthetic_interactions,
)
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.stream_keys import (
    category_key,
    dead_letter_stream,
    dedup_key,
    history_key,
)
from mlsd_lib.features.stream_processor import (
    CRASH_EXIT_CODE,
    StreamProcessor,
    main,
    measure_freshness,
    processor_command,
    read_live_record,
    start_processor,
    summary_of,
)
from mlsd_lib.features.views import FeatureRegistry, FeatureStoreError
from mlsd_lib.features.windowed_fold import WindowedCountFold
from mlsd_lib.features.windows import (
    ads_aggregations,
    timestamps_to_seconds,
    windowed_counts_offline,
)

STREAM = "interactions_test"
DAY0 = 1_699_920_000.0  # a multiple of one day (and hour): round buckets
FOLD = interaction_history(STREAM, length=4, n_categories=5)
FIELDS = ("items", "item_times", "category_counts", "counts", "counts_as_of")


class SimulatedCrash(RuntimeError):
    """Raised instead of killing the test process."""


def _crash() -> None:
    raise SimulatedCrash


def play(event_id: str, t: float, item: int, category: int = 0, user: int = 1,
         kind: str = "engaged_play") -> InteractionEvent:  # fmt: skip
    return InteractionEvent(event_id, kind, user, item, category, DAY0 + t)


def session(event_id: str, t: float, user: int = 1) -> InteractionEvent:
    return InteractionEvent(event_id, "session_start", user, NO_ITEM, NO_ITEM, DAY0 + t)


def assert_histories_equal(got: Histories, expected: Histories) -> None:
    assert got.count_names == expected.count_names
    for name in FIELDS:
        a, b = getattr(got, name), getattr(expected, name)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_array_equal(a, b, err_msg=name)


def shuffled(events: list, seed: int) -> list:
    order = np.random.default_rng(seed).permutation(len(events))
    return [events[i] for i in order]


def week_of_events(seed: int = 0, num_sessions: int = 150, users: int = 9) -> list:
    """Sessions over about a week, so the 1-day and 7-day windows differ."""
    return synthetic_interactions(
        num_sessions, num_users=users, num_items=60, n_categories=5,
        start=DAY0, sessions_per_s=num_sessions / (8 * 86400), seed=seed,
    )  # fmt: skip


# --- the semantics on hand-made events ----------------------------------------------

HAND_MADE = [
    session("s1", 0.0),
    play("a", 10.0, item=5, category=1),
    play("b", 20.0, item=6, category=2),
    play("i", 21.0, item=9, category=4, kind="impression"),  # not a kept type
    play("c", 15.0, item=7, category=1),  # late: goes between a and b
    play("d", 20.0, item=3, category=3),  # same time as b: the larger item is newer
    play("e", 30.0, item=8, category=0),  # newest; the list is full: a drops out
    play("f", 5.0, item=2, category=1),  # older than all 4 kept: counted, not listed
    play("b", 20.0, item=6, category=2),  # a redelivery of b: a no-op
    play("x", 40.0, item=4, category=2, user=2),  # another user: independent
]


def test_late_events_are_inserted_by_time_and_duplicates_change_nothing(
    redis_client: redis.Redis,
) -> None:
    processor = StreamProcessor(redis_client, STREAM, "g", "c", fold=FOLD)
    assert [processor.apply(e) for e in HAND_MADE] == [True] * 8 + [False, True]
    served = read_histories(redis_client, FOLD, [1, 2, 3])
    assert served.items.tolist() == [[8, 6, 3, 7], [4, -1, -1, -1], [-1] * 4]
    assert served.item_times[0].tolist() == [DAY0 + 30, DAY0 + 20, DAY0 + 20, DAY0 + 15]
    assert np.isnan(served.item_times[1, 1:]).all()
    # Category counts cover every kept event (a and f too), not only the listed.
    assert served.category_counts.tolist() == [[1, 3, 1, 1, 0], [0, 0, 1, 0, 0],
                                               [0] * 5]  # fmt: skip
    # sessions_1d, sessions_7d, engaged_plays_1d, engaged_plays_7d
    assert served.count_names == (
        "sessions_1d", "sessions_7d", "engaged_plays_1d", "engaged_plays_7d"
    )  # fmt: skip
    assert served.counts.tolist() == [[1, 1, 6, 6], [0, 0, 1, 1], [0, 0, 0, 0]]
    assert served.counts_as_of[0] == DAY0 + 30  # the impression does not move it
    assert np.isnan(served.counts_as_of[2])
    now = DAY0 + 100
    assert_histories_equal(
        served, histories_at(interactions_frame(HAND_MADE), FOLD, [1, 2, 3], [now] * 3)
    )
    assert redis_client.ttl(history_key(FOLD.name, 1, "1")) > 29 * 86400
    assert redis_client.ttl(category_key(FOLD.name, 1, "1")) > 29 * 86400
    assert 0 < redis_client.ttl(dedup_key(STREAM, "b")) <= 3600


def test_the_history_is_the_same_in_any_arrival_order() -> None:
    events = week_of_events(seed=4)
    final = DAY0 + 9 * 86400
    users = np.arange(9)
    expected = histories_at(interactions_frame(events), FOLD, users, [final] * 9)
    assert (expected.items[:, -1] != NO_ITEM_PAD).all()  # full lists: trimming ran
    for seed in range(2):
        client = fakeredis.FakeRedis()
        processor = StreamProcessor(client, STREAM, "g", "c", fold=FOLD)
        for e in shuffled(events, seed):
            processor.apply(e)
        assert_histories_equal(read_histories(client, FOLD, users), expected)


def test_after_the_events_before_t_redis_holds_the_offline_history_at_t() -> None:
    """Checkpoints: apply (shuffled) exactly the events before each time, then
    the online read equals the offline computation at that time."""
    events = week_of_events(seed=7)
    frame = interactions_frame(events)
    seconds = np.array([e.timestamp for e in events])
    rng = np.random.default_rng(1)
    checkpoints = np.sort(rng.uniform(seconds[0], seconds[-1], 6))
    checkpoints = [*checkpoints, seconds[-1], seconds[-1] + 1]  # ties, then all
    client = fakeredis.FakeRedis()
    processor = StreamProcessor(client, STREAM, "g", "c", fold=FOLD)
    users = np.arange(9)
    applied = 0
    for t in checkpoints:
        chunk = [e for e in events if e.timestamp < t][applied:]
        for e in shuffled(chunk, int(t)):
            processor.apply(e)
        applied += len(chunk)
        expected = histories_at(frame, FOLD, users, np.full(9, t))
        assert_histories_equal(read_histories(client, FOLD, users), expected)
    assert applied == len(events)


def test_the_windowed_part_is_the_windowed_fold_on_the_counted_events() -> None:
    """Reuse, not a second implementation: the counts record equals what
    windowed_counts_offline computes over the log of the counted types."""
    events = shuffled(week_of_events(seed=2), 0)
    client = fakeredis.FakeRedis()
    processor = StreamProcessor(client, STREAM, "g", "c", fold=FOLD)
    for e in events:
        processor.apply(e)
    log = interactions_frame(events)
    counted = log[log["type"].isin(FOLD.counted_types)]
    rows = windowed_counts_offline(counted, FOLD.counts)
    last = rows.groupby("user_id").tail(1).set_index("user_id")
    names = list(FOLD.counts.view.feature_names)
    served = read_histories(client, FOLD, last.index.to_numpy())
    np.testing.assert_array_equal(served.counts, last[names].to_numpy(np.float32))
    for user, row in last.iterrows():
        timestamp, _ = read_live_record(client, FOLD.counts, user)
        assert timestamp == pytest.approx(row["event_timestamp"].timestamp(), abs=1e-6)
    # Any online store reads the same record as a feature view.
    store = OnlineStore(client, FeatureRegistry([FOLD.counts.view]))
    refs = [f"{FOLD.counts.view.name}:{n}" for n in names]
    entities = pd.DataFrame({"user_id": last.index.to_numpy()})
    read = store.read(entities, refs, now=float(served.counts_as_of.max()))
    np.testing.assert_array_equal(read.values, served.counts)


# --- no leakage -------------------------------------------------------------------


def test_an_event_at_or_after_the_request_time_never_enters_the_offline_history():
    events = week_of_events(seed=5)
    frame = interactions_frame(events)
    rng = np.random.default_rng(3)
    kept = [e for e in events if e.type == "engaged_play"]
    picks = [kept[i] for i in rng.choice(len(kept), 40, replace=False)]
    users = np.array([e.user_id for e in picks])
    times = np.array([e.timestamp for e in picks])  # exactly at an engaged play
    got = histories_at(frame, FOLD, users, times)
    listed = got.items != NO_ITEM_PAD
    assert listed.any()
    assert (got.item_times[listed] < np.repeat(times, 4).reshape(-1, 4)[listed]).all()
    assert not np.any(got.item_times == times[:, None])  # the event at t is absent
    assert (got.counts_as_of[~np.isnan(got.counts_as_of)] < times[
        ~np.isnan(got.counts_as_of)]).all()  # fmt: skip
    # The future does not matter: cutting the log at each time changes nothing.
    seconds = timestamps_to_seconds(frame["event_timestamp"])
    for b in range(0, 40, 8):
        past = frame[seconds < times[b]]
        alone = histories_at(past, FOLD, users[b : b + 1], times[b : b + 1])
        for name in FIELDS:
            np.testing.assert_array_equal(
                getattr(alone, name)[0], getattr(got, name)[b], err_msg=name
            )


def test_offline_counts_a_repeated_event_id_once_and_skips_what_is_dead_lettered():
    events = [play("a", 1.0, 5, 1), play("b", 2.0, 6, 9), play("a", 3.0, 7, 1)]
    got = histories_at(interactions_frame(events), FOLD, [1], [DAY0 + 10])
    assert got.items.tolist() == [[5, -1, -1, -1]]  # b: category 9 out of 5
    assert got.category_counts.tolist() == [[0, 1, 0, 0, 0]]
    assert got.counts[0, 2] == 1
    with pytest.raises(FeatureStoreError, match="lacks columns"):
        histories_at(interactions_frame(events).drop(columns="category"), FOLD, [1],
                     [DAY0])  # fmt: skip
    with pytest.raises(FeatureStoreError, match="one time per request"):
        histories_at(interactions_frame(events), FOLD, [1, 2], [DAY0])


# --- delivery: the consumer group, dead letters, crashes ---------------------------


def test_a_shuffled_log_through_the_consumer_group_serves_the_offline_values(
    redis_client: redis.Redis,
) -> None:
    events = week_of_events(seed=11)
    log_in_arrival_order = shuffled(events, 5) + events[:30]  # producer retries
    publish(redis_client, STREAM, log_in_arrival_order)
    processor = StreamProcessor(
        redis_client, STREAM, "g", "c", fold=FOLD, block_ms=10, batch_size=64
    )
    assert processor.run(idle_exit_s=0.3, max_runtime_s=60) == "idle"
    assert processor.counts.applied == len(events)
    assert processor.counts.duplicates == 30
    replayed = read_interaction_log(redis_client, STREAM)
    assert len(replayed) == len(log_in_arrival_order)
    users = np.arange(10)  # user 9 never appears
    expected = histories_at(replayed, FOLD, users, np.full(10, DAY0 + 20 * 86400))
    assert_histories_equal(read_histories(redis_client, FOLD, users), expected)
    assert expected.items[9].tolist() == [NO_ITEM_PAD] * 4


def test_malformed_interaction_events_are_dead_lettered(
    redis_client: redis.Redis,
) -> None:
    good = [play("g1", 1.0, 5, 1), session("g2", 2.0)]
    publish(redis_client, STREAM, good[:1])
    base = {"event_id": "p", "type": "engaged_play", "user_id": "1", "item_id": "3",
            "category": "1", "timestamp": repr(DAY0 + 3)}  # fmt: skip
    poison = [
        {**base, "event_id": "p1", "type": "like"},
        {**base, "event_id": "p2", "category": "5"},  # n_categories=5
        {**base, "event_id": "p3", "type": "session_start"},  # with an item
        {**base, "event_id": "p4", "item_id": "three"},
        {k: v for k, v in base.items() if k != "category"},
    ]
    for fields in poison:
        redis_client.xadd(STREAM, fields)
    publish(redis_client, STREAM, good[1:])
    processor = StreamProcessor(redis_client, STREAM, "g", "c", fold=FOLD, block_ms=5)
    assert processor.run(idle_exit_s=0.2, max_runtime_s=10) == "idle"
    assert (processor.counts.applied, processor.counts.dead_lettered) == (2, 5)
    dead = redis_client.xrange(dead_letter_stream(STREAM))
    reasons = [fields[b"reason"].decode() for _, fields in dead]
    assert "'like' is not one of" in reasons[0]
    assert "category=5 is not in [0, 5)" in reasons[1]
    assert "fix the producer or raise n_categories" in reasons[1]
    assert "concerns no item, so item_id must be -1" in reasons[2]
    assert "item_id='three' is not a valid int" in reasons[3]
    assert "lacks fields ['category']" in reasons[4]
    assert json.loads(dead[1][1][b"fields"])["category"] == "5"
    served = read_histories(redis_client, FOLD, [1])
    assert served.items.tolist() == [[5, -1, -1, -1]]
    assert served.category_counts.tolist() == [[0, 1, 0, 0, 0]]
    assert served.counts[0].tolist() == [1, 1, 1, 1]


def test_a_failing_apply_writes_nothing_and_ends_as_a_dead_letter(
    redis_client: redis.Redis,
) -> None:
    publish(redis_client, STREAM, [play("bad", 1.0, 5, 1, user=3)])
    redis_client.set(category_key(FOLD.name, 1, "3"), "not a hash")
    processor = StreamProcessor(
        redis_client, STREAM, "g", "c", fold=FOLD, block_ms=5, min_idle_ms=1,
        max_deliveries=2,
    )  # fmt: skip
    assert processor.run(max_events=1, max_runtime_s=10) == "max-events"
    assert processor.counts.retried == 2 and processor.counts.dead_lettered == 1
    # Reads come first: no marker, no history, no counts record, no state.
    assert redis_client.exists(dedup_key(STREAM, "bad")) == 0
    assert redis_client.exists(history_key(FOLD.name, 1, "3")) == 0
    assert read_live_record(redis_client, FOLD.counts, 3) is None


def test_a_crash_between_apply_and_ack_loses_and_doubles_nothing(
    redis_client: redis.Redis,
) -> None:
    events = shuffled(week_of_events(seed=13, num_sessions=60), 2)
    publish(redis_client, STREAM, events)
    crashed = StreamProcessor(
        redis_client, STREAM, "g", "a", fold=FOLD, batch_size=40, crash=_crash
    )
    with pytest.raises(SimulatedCrash):
        crashed.run(crash_after=100, max_runtime_s=10)
    assert redis_client.xpending(STREAM, "g")["pending"] == 40
    rescuer = StreamProcessor(
        redis_client, STREAM, "g", "b", fold=FOLD, min_idle_ms=50, block_ms=10
    )
    assert rescuer.run(idle_exit_s=0.5, max_runtime_s=30) == "idle"
    assert rescuer.counts.claimed == 40 and rescuer.counts.duplicates == 20
    assert rescuer.counts.applied == len(events) - 100
    users = np.arange(9)
    expected = histories_at(interactions_frame(events), FOLD, users, [DAY0 * 2] * 9)
    assert_histories_equal(read_histories(redis_client, FOLD, users), expected)


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
def test_a_killed_history_processor_process_loses_and_doubles_nothing(
    real_redis_url: str, real_client: redis.Redis
) -> None:
    stream = f"interactions-{uuid.uuid4().hex[:8]}"
    events = shuffled(week_of_events(seed=17, num_sessions=80), 1)
    publish(real_client, stream, events)
    common = dict(
        stream=stream, group="features", fold="history", history_length=20,
        categories=5, batch_size=50, max_runtime_s=30,
    )  # fmt: skip
    first = start_processor(real_redis_url, consumer="one", crash_after=120, **common)
    out, err = first.communicate(timeout=40)
    assert first.returncode == CRASH_EXIT_CODE, err
    assert real_client.xpending(stream, "features")["pending"] == 50
    second = start_processor(
        real_redis_url, consumer="two", min_idle_ms=200, idle_exit_s=1.5, **common
    )
    out, err = second.communicate(timeout=40)
    assert second.returncode == 0, err
    summary = summary_of(out)
    assert summary["claimed"] == 50 and summary["duplicates"] == 20
    assert summary["applied"] == len(events) - 120
    fold = interaction_history(stream, length=20, n_categories=5)
    users = np.arange(9)
    expected = histories_at(interactions_frame(events), fold, users, [DAY0 * 2] * 9)
    assert_histories_equal(read_histories(real_client, fold, users), expected)


@pytest.mark.redis
def test_an_engaged_play_reaches_the_history_well_within_60_seconds(
    real_redis_url: str, real_client: redis.Redis
) -> None:
    stream = f"interactions-{uuid.uuid4().hex[:8]}"
    fold = interaction_history(stream)
    process = start_processor(
        real_redis_url, stream=stream, group="g", consumer="c", fold="history",
        block_ms=1000, max_runtime_s=60,
    )  # fmt: skip
    plays = [
        InteractionEvent(f"fresh-{i}", "engaged_play", i % 7, i, i % 12, DAY0)
        for i in range(65)
    ]
    try:  # the first events also wait for the process to start: warm up
        measure_freshness(real_client, stream, fold, plays[:5], timeout_s=30)
        latencies = measure_freshness(real_client, stream, fold, plays[5:])
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert len(latencies) == 60
    assert np.percentile(latencies, 99) < 60.0  # the requirement; in practice ms
    served = read_histories(real_client, fold, [6])
    assert served.items[0, 0] == 62  # the newest play of user 6 (i = 62)


def test_freshness_in_process_and_events_that_never_enter_a_history() -> None:
    client = fakeredis.FakeRedis()
    processor = StreamProcessor(client, STREAM, "g", "c", fold=FOLD, block_ms=1)
    processor.ensure_group()
    plays = [play(f"f{i}", 0.0, item=i, category=i % 5) for i in range(5)]
    latencies = measure_freshness(
        client, STREAM, FOLD, plays, process=lambda: processor.step(claim=False)
    )
    assert latencies.shape == (5,) and (latencies > 0).all()
    assert read_histories(client, FOLD, [1]).items[0].tolist() == [4, 3, 2, 1]
    with pytest.raises(FeatureStoreError, match=r"types \['impression'\] never enter"):
        measure_freshness(client, STREAM, FOLD, [play("i", 0, 1, kind="impression")])


# --- errors that teach --------------------------------------------------------------


def test_unknown_folds_and_bad_lengths_are_refused_with_the_fix() -> None:
    with pytest.raises(UnknownFold, match=r"unknown fold 'sliding': choose one of "
                       r"\['windowed', 'history', 'latest'\]"):  # fmt: skip
        fold_named("sliding")
    with pytest.raises(UnknownFold, match="unknown fold 'nope'"):
        processor_command("redis://x", stream="s", group="g", consumer="c",
                          fold="nope")  # fmt: skip
    with pytest.raises(FeatureStoreError, match="length=0 must be a whole number "
                       f"from 1 to {MAX_HISTORY_LENGTH}"):  # fmt: skip
        processor_command("redis://x", stream="s", group="g", consumer="c",
                          fold="history", history_length=0)  # fmt: skip
    with pytest.raises(FeatureStoreError, match="length=1001 must be"):
        interaction_history(length=1001)
    with pytest.raises(FeatureStoreError, match="n_categories=0 must be"):
        interaction_history(n_categories=0)
    with pytest.raises(FeatureStoreError, match="configure the history fold, not "
                       "the windowed one"):  # fmt: skip
        fold_named("windowed", history_length=50)
    with pytest.raises(
        FeatureStoreError,
        match=r"n=5 items asked of history "
        r"'user_history', which keeps length=4; ask for 1 to 4",
    ):
        read_histories(fakeredis.FakeRedis(), FOLD, [1], n=5)
    with pytest.raises(FeatureStoreError, match=r"aggregations .* or a fold, not both"):
        StreamProcessor(fakeredis.FakeRedis(), STREAM, "g", "c",
                        ads_aggregations(STREAM), fold=FOLD)  # fmt: skip
    with pytest.raises(FeatureStoreError, match="folds stream 'interactions_test', "
                       "but this processor reads 'other'"):  # fmt: skip
        StreamProcessor(fakeredis.FakeRedis(), "other", "g", "c", fold=FOLD)
    with pytest.raises(FeatureStoreError, match=r"counts .* are fed by 'ad_events'"):
        HistoryFold("h", STREAM, 5, counts=ads_aggregations()[0])
    with pytest.raises(FeatureStoreError, match="is not a StreamFold"):
        StreamProcessor(fakeredis.FakeRedis(), STREAM, "g", "c", fold=object())


def test_the_command_line_refuses_an_unknown_fold(
    capsys: pytest.CaptureFixture,
) -> None:
    code = main(["--redis-url", "redis://127.0.0.1:1/0", "--group", "g",
                 "--consumer", "c", "--fold", "nope"])  # fmt: skip
    assert code == 2
    assert "unknown fold 'nope'" in capsys.readouterr().err
    command = processor_command(
        "redis://h", stream="s", group="g", consumer="c", fold="history",
        history_length=50, categories=12,
    )  # fmt: skip
    assert command[-6:] == ["--fold", "history", "--history-length", "50",
                            "--categories", "12"]  # fmt: skip


def test_the_default_fold_is_the_windowed_counts_of_the_aggregations() -> None:
    client = fakeredis.FakeRedis()
    processor = StreamProcessor(client, "ad_events", "g", "c")
    assert isinstance(processor.fold, WindowedCountFold)
    assert [a.view.name for a in processor.aggregations] == ["user_stream", "ad_stream"]
    assert isinstance(fold_named("history"), HistoryFold)
    assert (
        fold_named("history").length == 50 and fold_named("history").n_categories == 12
    )


# --- the event schema ---------------------------------------------------------------


def test_interaction_events_are_checked_and_round_trip() -> None:
    with pytest.raises(InvalidEvent, match="not one of"):
        InteractionEvent("x", "like", 1, 1, 1, DAY0)
    with pytest.raises(InvalidEvent, match="item_id=-1 must be non-negative"):
        InteractionEvent("x", "play", 1, NO_ITEM, 1, DAY0)
    with pytest.raises(InvalidEvent, match="so category must be -1"):
        InteractionEvent("x", "session_start", 1, NO_ITEM, 3, DAY0)
    with pytest.raises(InvalidEvent, match="finite"):
        InteractionEvent("x", "play", 1, 1, 1, float("inf"))
    with pytest.raises(InvalidEvent, match="item 0 is a AdEvent, not an Interaction"):
        publish(fakeredis.FakeRedis(), STREAM, [AdEvent("a", "click", 1, 1, DAY0)])
    events = synthetic_interactions(30, seed=1)
    assert events == synthetic_interactions(30, seed=1)
    assert events != synthetic_interactions(30, seed=2)
    assert len({e.event_id for e in events}) == len(events)
    times = [e.timestamp for e in events]
    assert times == sorted(times)
    assert {e.type for e in events} == {"session_start", "impression", "play",
                                        "engaged_play"}  # fmt: skip
    frame = interactions_frame(events)
    assert list(frame.columns) == ["event_id", "type", "user_id", "item_id",
                                   "category", "event_timestamp"]  # fmt: skip
    assert interactions_from_frame(frame) == events
    assert InteractionEvent.from_fields(events[3].to_fields()) == events[3]
    moved = replace(events[3], timestamp=DAY0 + 0.1234567)
    assert moved.timestamp == 1_699_920_000_123_457 / 1e6  # whole microseconds


def test_a_history_without_counts_and_another_history_length() -> None:
    fold = HistoryFold("plays", STREAM, n_categories=3, length=2,
                       kept_types=("play", "engaged_play"))  # fmt: skip
    client = fakeredis.FakeRedis()
    processor = StreamProcessor(client, STREAM, "g", "c", fold=fold)
    events = [play("a", 1, 1, 0, kind="play"), play("b", 2, 2, 1), session("s", 3),
              play("c", 0.5, 3, 2, kind="play")]  # fmt: skip
    for e in events:
        processor.apply(e)
    got = read_histories(client, fold, [1], n=1)
    assert got.items.tolist() == [[2]] and got.counts.shape == (1, 0)
    assert got.category_counts.tolist() == [[1, 1, 1]]
    assert_histories_equal(
        got, histories_at(interactions_frame(events), fold, [1], [DAY0 + 9], n=1)
    )
    assert fold.counted_types == frozenset()
