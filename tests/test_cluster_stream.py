"""The stream processor on a Redis Cluster: the same delivery, keys in the entity's
shard, and reads through the cluster store equal to one node's, bit for bit.

The single-node processor and :class:`~mlsd_lib.features.online.OnlineStore` are
the reference: the same events folded on one Redis must read back identically
through :class:`~mlsd_lib.features.cluster_online.ClusterOnlineStore`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from redis.cluster import RedisCluster
from test_cluster_store import OneNodeRouter, assert_bit_exact, flush_masters

from mlsd_lib.cluster_routing import ClusterRouter, slot_of
from mlsd_lib.features.cluster_online import (
    ClusterOnlineStore,
    shard_current_key,
    shard_of,
    shard_record_key,
)
from mlsd_lib.features.event_stream import AdEvent, publish, synthetic_events
from mlsd_lib.features.history_fold import interaction_history
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.records import current_key, record_key
from mlsd_lib.features.stream_folds import apply_calls
from mlsd_lib.features.stream_layout import SINGLE_NODE, ClusterLayout
from mlsd_lib.features.stream_processor import (
    CRASH_EXIT_CODE,
    StreamProcessor,
    dedup_key,
    main,
    processor_command,
    start_processor,
    state_key,
    summary_of,
)
from mlsd_lib.features.views import FeatureRegistry, FeatureStoreError
from mlsd_lib.features.windowed_fold import WindowedCountFold
from mlsd_lib.features.windows import ADS_AGGREGATIONS, ADS_STREAM
from mlsd_lib.redis_cluster import seeds_from_urls

USER, AD = ADS_AGGREGATIONS
REGISTRY = FeatureRegistry([a.view for a in ADS_AGGREGATIONS])
FEATURES = ["impressions_1h", "clicks_1h", "impressions_1d", "clicks_1d"]
REFS = [f"{a.view.name}:{f}" for a in ADS_AGGREGATIONS for f in FEATURES]
CLUSTER_FOLD = WindowedCountFold(ADS_AGGREGATIONS, layout=ClusterLayout())
EVENTS = synthetic_events(
    300, num_users=40, num_ads=12, impressions_per_s=0.02, click_rate=0.3, seed=5
)
END = EVENTS[-1].timestamp
#: Every user and ad (and one of each never seen), read at the end of the log,
#: an hour later (the 1 h counts gone), and two days later (records expired).
ROWS = [{"user_id": u, "ad_id": u % 13} for u in range(41)]
MOMENTS = (END, END + 3600.0, END + 2 * 86400.0)


class SimulatedCrash(RuntimeError):
    """Raised instead of killing the test process."""


def _crash() -> None:
    raise SimulatedCrash


# --- the layouts, without a server ---------------------------------------------------


def test_the_single_node_layout_writes_the_keys_it_always_wrote() -> None:
    event = AdEvent("e1", "click", 3, 9, 1_700_000_000.0)
    (call,) = apply_calls(WindowedCountFold(ADS_AGGREGATIONS), event, 3600)
    keys, args = call
    assert keys == [
        "fs:seen:ad_events:e1",
        "fs:user_stream@v1:win:3",
        "fs:user_stream@v1:glive:3",
        "fs:user_stream@v1:current",
        "fs:ad_stream@v1:win:9",
        "fs:ad_stream@v1:glive:9",
        "fs:ad_stream@v1:current",
    ]
    assert keys == [
        dedup_key(ADS_STREAM, "e1"),
        state_key(USER, "3"),
        record_key(USER.view, "live", "3"),
        current_key(USER.view),
        state_key(AD, "9"),
        record_key(AD.view, "live", "9"),
        current_key(AD.view),
    ]
    assert args[:3] == [3600, "click", repr(1_700_000_000.0)]
    assert repr(WindowedCountFold(ADS_AGGREGATIONS)) == (
        "WindowedCountFold(['user_stream', 'ad_stream'], stream='ad_events')"
    )


def test_every_cluster_call_stays_in_one_slot_where_the_store_reads() -> None:
    """One call per aggregation, each in its entity's shard: no CROSSSLOT, and
    the record and pointer are the cluster store's keys."""
    shards = 16
    for event in EVENTS:
        calls = apply_calls(CLUSTER_FOLD, event, 3600)
        assert len(calls) == len(ADS_AGGREGATIONS)
        for (keys, args), aggregation in zip(calls, ADS_AGGREGATIONS, strict=True):
            assert len({slot_of(key) for key in keys}) == 1, keys
            entity = str(getattr(event, aggregation.entity_field))
            view, shard = aggregation.view, shard_of(entity, shards)
            tag = f"{{{view.name}@v1:s{shard:02d}}}"
            assert keys == [
                f"fs:{tag}:seen:ad_events:{event.event_id}",
                f"fs:{tag}:win:{entity}",
                shard_record_key(view, shard, "live", entity),
                shard_current_key(view, shard),
            ]
            assert args[0] == 3600 and args[4] == 1  # one aggregation per call
    layout = ClusterLayout()
    assert slot_of(layout.dead_letter_stream(ADS_STREAM)) == slot_of(ADS_STREAM)
    assert SINGLE_NODE.dead_letter_stream(ADS_STREAM) == "ad_events:dead"


def test_layouts_and_folds_that_cannot_work_on_a_cluster_are_refused(
    capsys: pytest.CaptureFixture,
) -> None:
    with pytest.raises(FeatureStoreError, match="at least 1 and equal"):
        ClusterLayout(0)
    with pytest.raises(FeatureStoreError, match="name the stream without"):
        ClusterLayout().dead_letter_stream("a}b")
    with pytest.raises(FeatureStoreError, match="not a StreamKeyLayout"):
        WindowedCountFold(ADS_AGGREGATIONS, layout="cluster")
    with pytest.raises(FeatureStoreError, match="single Redis only"):
        processor_command(
            "redis://127.0.0.1:7000", stream="interactions", group="g",
            consumer="c", cluster=True, fold="history",
        )  # fmt: skip
    with pytest.raises(FeatureStoreError, match="pass cluster=True"):
        processor_command(
            "redis://127.0.0.1:6379/0", stream=ADS_STREAM, group="g",
            consumer="c", shards_per_view=8,
        )  # fmt: skip
    command = processor_command(
        "redis://127.0.0.1:7000", stream=ADS_STREAM, group="g", consumer="c",
        cluster=True, shards_per_view=8,
    )  # fmt: skip
    assert command[3:5] == ["--redis-cluster-url", "redis://127.0.0.1:7000"]
    assert command[-2:] == ["--shards-per-view", "8"]
    code = main(["--redis-cluster-url", "redis://127.0.0.1:1", "--fold", "history",
                 "--group", "g", "--consumer", "c"])  # fmt: skip
    assert code == 2
    assert "--fold history runs on a single Redis only" in capsys.readouterr().err


# --- one plain Redis standing in for every master (the fast tier) ---------------------


def fold_on_one_node(client: redis.Redis, events, fold=None) -> StreamProcessor:
    publish(client, ADS_STREAM, events)
    processor = StreamProcessor(client, ADS_STREAM, "g", "c", fold=fold, block_ms=10)
    assert processor.run(idle_exit_s=0.3, max_runtime_s=60) == "idle"
    return processor


@pytest.fixture
def reference(real_redis_url: str) -> Iterator[OnlineStore]:
    """The single-node processor's result for :data:`EVENTS`, in database 1."""
    client = redis.Redis(**{**redis.connection.parse_url(real_redis_url), "db": 1})
    client.flushdb()
    processor = fold_on_one_node(client, EVENTS)
    assert processor.counts.applied == len(EVENTS)
    store = OnlineStore(client, REGISTRY)
    try:
        yield store
    finally:
        store.close()
        client.flushdb()
        client.close()


@pytest.mark.redis
def test_the_cluster_layout_on_one_node_reads_what_the_single_node_reads(
    real_redis_url: str, reference: OnlineStore
) -> None:
    seeds = seeds_from_urls([real_redis_url])
    router = OneNodeRouter(seeds)
    client = router.client(seeds[0])
    client.flushdb()
    store = ClusterOnlineStore(router, REGISTRY, replicas=0)
    try:
        processor = fold_on_one_node(client, EVENTS, fold=CLUSTER_FOLD)
        assert processor.counts.applied == len(EVENTS)
        for now in MOMENTS:
            assert_bit_exact(
                store.read(ROWS, REFS, now=now), reference.read(ROWS, REFS, now=now)
            )
        # A second pass over the same events (a replay) changes nothing.
        again = StreamProcessor(client, ADS_STREAM, "g2", "c", fold=CLUSTER_FOLD)
        assert again.run(idle_exit_s=0.3, max_runtime_s=60) == "idle"
        assert again.counts.duplicates == len(EVENTS)
        assert_bit_exact(
            store.read(ROWS, REFS, now=END), reference.read(ROWS, REFS, now=END)
        )
    finally:
        store.close()
        client.flushdb()
        router.close()


# --- a real cluster ------------------------------------------------------------------


@pytest.fixture
def cluster(redis_cluster_urls) -> Iterator[tuple[RedisCluster, ClusterOnlineStore]]:
    """A client that routes by key (the processor's) and the cluster store, on
    empty masters, emptied again afterwards."""
    router = ClusterRouter(seeds_from_urls(redis_cluster_urls))
    flush_masters(router)
    client = RedisCluster.from_url(redis_cluster_urls[0])
    store = ClusterOnlineStore(router, REGISTRY, replicas=0)
    try:
        yield client, store
    finally:
        store.close()
        client.close()
        flush_masters(router)
        router.close()


def assert_reads_equal(store: ClusterOnlineStore, reference: OnlineStore) -> None:
    for now in MOMENTS:
        got = store.read(ROWS, REFS, now=now)
        assert not got.degraded
        assert_bit_exact(got, reference.read(ROWS, REFS, now=now))


def assert_no_crossslot_and_tagged(store: ClusterOnlineStore) -> None:
    """No master ever answered CROSSSLOT, and every key it holds is the stream,
    its dead letters, or carries a shard's hash tag; records on every master."""
    holding = 0
    for address in store.router.masters():
        client = store.router.client(address)
        errors = client.info("errorstats")
        assert not any("CROSSSLOT" in name for name in errors), errors
        keys = [k.decode() for k in client.scan_iter(count=1_000)]
        assert all(
            k.startswith("fs:{") or k in (ADS_STREAM, "{ad_events}:dead") for k in keys
        ), keys
        holding += any(":glive:" in k for k in keys)
    assert holding == len(store.router.masters())


@pytest.mark.redis
@pytest.mark.cluster
def test_the_processor_on_a_cluster_serves_what_one_node_serves(
    cluster, reference: OnlineStore
) -> None:
    client, store = cluster
    publish(client, ADS_STREAM, EVENTS)
    masters = [store.router.client(a) for a in store.router.masters()]
    for master in masters:
        master.config_resetstat()
    processor = StreamProcessor(
        client, ADS_STREAM, "g", "c", fold=CLUSTER_FOLD, block_ms=10
    )
    assert processor.run(idle_exit_s=0.3, max_runtime_s=60) == "idle"
    counts = processor.counts
    assert (counts.applied, counts.retried, counts.dead_lettered) == (len(EVENTS), 0, 0)
    assert client.xpending(ADS_STREAM, "g")["pending"] == 0
    # Each apply goes straight to its master: the client never asked a server
    # for an EVALSHA's keys (COMMAND GETKEYS), only for a few stream reads'.
    stats = [master.info("commandstats") for master in masters]
    asked = sum(s.get("cmdstat_command|getkeys", {}).get("calls", 0) for s in stats)
    evalshas = sum(s.get("cmdstat_evalsha", {}).get("calls", 0) for s in stats)
    assert evalshas >= 2 * len(EVENTS) and asked < len(EVENTS) // 10, (asked, stats)
    assert_reads_equal(store, reference)
    assert_no_crossslot_and_tagged(store)


@pytest.mark.redis
@pytest.mark.cluster
def test_a_crash_between_apply_and_ack_on_a_cluster_is_counted_once(
    cluster, reference: OnlineStore
) -> None:
    client, store = cluster
    publish(client, ADS_STREAM, EVENTS)
    crashed = StreamProcessor(
        client, ADS_STREAM, "g", "a", fold=CLUSTER_FOLD, batch_size=20, crash=_crash
    )
    with pytest.raises(SimulatedCrash):
        crashed.run(crash_after=50, max_runtime_s=30)
    # Batch 3 (events 41-60) was read, 41-50 applied, then the crash: 20 pending.
    assert client.xpending(ADS_STREAM, "g")["pending"] == 20
    rescuer = StreamProcessor(
        client, ADS_STREAM, "g", "b", fold=CLUSTER_FOLD, min_idle_ms=100, block_ms=10
    )
    assert rescuer.run(idle_exit_s=0.5, max_runtime_s=30) == "idle"
    counts = rescuer.counts
    assert counts.claimed == 20 and counts.duplicates == 10
    assert counts.applied == len(EVENTS) - 50 and counts.retried == 0
    assert client.xpending(ADS_STREAM, "g")["pending"] == 0
    assert_reads_equal(store, reference)
    assert_no_crossslot_and_tagged(store)


@pytest.mark.redis
@pytest.mark.cluster
def test_processor_processes_on_a_cluster_lose_and_double_nothing(
    cluster, reference: OnlineStore, redis_cluster_urls
) -> None:
    """``python -m ... --redis-cluster-url``: killed after 100 applies, before
    their XACK; a second process claims the 50 pending and counts them once."""
    client, store = cluster
    publish(client, ADS_STREAM, EVENTS)
    common = dict(
        stream=ADS_STREAM, group="features", batch_size=50, max_runtime_s=30,
        cluster=True,
    )  # fmt: skip
    url = redis_cluster_urls[0]
    first = start_processor(url, consumer="one", crash_after=100, **common)
    _, err = first.communicate(timeout=60)
    assert first.returncode == CRASH_EXIT_CODE, err
    assert client.xpending(ADS_STREAM, "features")["pending"] == 50
    second = start_processor(
        url, consumer="two", min_idle_ms=200, idle_exit_s=1.0, **common
    )
    out, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    summary = summary_of(out)
    assert summary["claimed"] == 50 and summary["duplicates"] == 50
    assert summary["applied"] == len(EVENTS) - 100 and summary["retried"] == 0
    assert_reads_equal(store, reference)
    assert_no_crossslot_and_tagged(store)


@pytest.mark.redis
@pytest.mark.cluster
def test_poison_messages_on_a_cluster_go_to_the_streams_slot(cluster) -> None:
    client, _ = cluster
    publish(client, ADS_STREAM, EVENTS[:3])
    client.xadd(ADS_STREAM, {"garbage": "yes"})
    processor = StreamProcessor(
        client, ADS_STREAM, "g", "c", fold=CLUSTER_FOLD, block_ms=10
    )
    assert processor.run(idle_exit_s=0.3, max_runtime_s=30) == "idle"
    assert (processor.counts.applied, processor.counts.dead_lettered) == (3, 1)
    ((_, fields),) = client.xrange("{ad_events}:dead")
    assert b"lacks fields" in fields[b"reason"]
    assert client.xpending(ADS_STREAM, "g")["pending"] == 0


@pytest.mark.redis
@pytest.mark.cluster
def test_single_node_folds_are_refused_on_a_cluster(cluster) -> None:
    client, _ = cluster
    with pytest.raises(FeatureStoreError, match=r"single-node layout.*\(CROSSSLOT\)"):
        StreamProcessor(client, ADS_STREAM, "g", "c")
    history = interaction_history()
    with pytest.raises(FeatureStoreError, match="history and latest folds run"):
        StreamProcessor(client, history.stream, "g", "c", fold=history)
