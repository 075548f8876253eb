"""The online store on a real Redis Cluster: equal to one node, one generation
per view, and a master's death answered by its replica."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
import redis
from test_online_store import MIXED, MIXED_REFS, READ_CASES, at, load_mixed, user_rows

from mlsd_lib.cluster_drill import failover_drill
from mlsd_lib.cluster_routing import ClusterRouter
from mlsd_lib.features.cluster_online import (
    ClusterOnlineFeatures,
    ClusterOnlineStore,
    PartialSwap,
    shard_current_key,
    shard_of,
)
from mlsd_lib.features.examples import (
    CANDIDATE_REFS,
    SINGLE_ENTITY_REFS,
    make_ads_example,
)
from mlsd_lib.features.online import OnlineStore, OnlineStoreUnavailable
from mlsd_lib.redis_cluster import PrivateRedisCluster, seeds_from_urls


def flush_masters(router: ClusterRouter) -> None:
    for address in router.masters():
        router.client(address).flushall()


@pytest.fixture
def cluster_store(redis_cluster_urls) -> Iterator[ClusterOnlineStore]:
    router = ClusterRouter(seeds_from_urls(redis_cluster_urls))
    flush_masters(router)
    store = ClusterOnlineStore(router, MIXED, drop_grace_s=0.0)
    try:
        yield store
    finally:
        store.close()
        flush_masters(router)
        router.close()


@pytest.fixture
def single_store(real_redis_url) -> Iterator[OnlineStore]:
    client = redis.Redis.from_url(real_redis_url)
    client.flushdb()
    store = OnlineStore(client, MIXED)
    try:
        yield store
    finally:
        store.close()
        client.flushdb()
        client.close()


@pytest.fixture(
    params=[
        pytest.param("one_node", marks=pytest.mark.redis),
        pytest.param("cluster", marks=[pytest.mark.redis, pytest.mark.cluster]),
    ]
)
def sharded_store(request: pytest.FixtureRequest) -> ClusterOnlineStore:
    """The cluster store on a real cluster, and on one plain Redis standing in
    for every master (its logic in the fast tier, without a cluster)."""
    name = "one_node_store" if request.param == "one_node" else "cluster_store"
    return request.getfixturevalue(name)


def assert_bit_exact(got, want) -> None:
    assert got.feature_names == want.feature_names
    for field in ("values", "missing", "stale"):
        a, b = getattr(got, field), getattr(want, field)
        assert (a.dtype, a.shape) == (b.dtype, b.shape), field
        assert a.tobytes() == b.tobytes(), field


@pytest.mark.redis
@pytest.mark.cluster
def test_cluster_reads_equal_the_single_node_bit_for_bit(cluster_store, single_store):
    """The same views, the same reads: several views of several record sizes,
    unknown entities, a view never written, NaN and stale values."""
    load_mixed(single_store)
    load_mixed(cluster_store)
    for case, rows in READ_CASES.items():
        for refs in (MIXED_REFS, MIXED_REFS[:3], ["wide:f6"]):
            for minutes in (20, 40, 100):
                got = cluster_store.read(rows, refs, now=at(minutes))
                want = single_store.read(rows, refs, now=at(minutes))
                assert isinstance(got, ClusterOnlineFeatures)
                assert not got.degraded, case
                assert_bit_exact(got, want)


@pytest.mark.redis
@pytest.mark.cluster
def test_the_benchmark_workloads_equal_the_single_node(
    redis_cluster_urls, single_store
):
    """One entity x 50 features over 3 views, and 1 user x 100 candidate ads, on
    the ads example (records spread over every master)."""
    example = make_ads_example(seed=0, num_users=300)
    router = ClusterRouter(seeds_from_urls(redis_cluster_urls))
    flush_masters(router)
    cluster = ClusterOnlineStore(router, example.registry, drop_grace_s=0.0)
    single = OnlineStore(single_store.client, example.registry)
    try:
        for name, table in example.tables.items():
            cluster.materialize(name, table)
            single.materialize(name, table)
        for user in (0, 17, 299, 100_000):
            for rows, refs in (
                ([{"user_id": user, "ad_id": 5}], SINGLE_ENTITY_REFS),
                ([{"user_id": user, "ad_id": a} for a in range(100)], CANDIDATE_REFS),
            ):
                got = cluster.read(rows, refs, now=example.end)
                assert_bit_exact(got, single.read(rows, refs, now=example.end))
    finally:
        cluster.close()
        flush_masters(router)
        router.close()


def test_a_read_sends_one_request_per_master(sharded_store, monkeypatch):
    cluster_store = sharded_store
    """100 candidates over 3 views touch many shards but each master once, and
    every request goes out before any reply is read."""
    load_mixed(cluster_store)
    calls: list[list] = []
    original = cluster_store.router.send_to_nodes

    def counting(packed):
        calls.append(list(packed))
        return original(packed)

    monkeypatch.setattr(cluster_store.router, "send_to_nodes", counting)
    rows = [{"user_id": u % 6, "ad_id": u % 3} for u in range(100)]
    cluster_store.read(rows, MIXED_REFS, now=at(40))
    assert len(calls) == 1, "more than one round trip outside a swap"
    assert len(calls[0]) == len(set(calls[0])) <= 3


def test_materialization_publishes_a_generation_and_drops_the_old(sharded_store):
    cluster_store = sharded_store
    first = cluster_store.materialize("user_stats", user_rows((1, 0, 0.5, 3)))
    second = cluster_store.materialize("user_stats", user_rows((1, 1, 0.25, 4)))
    assert first.previous_generation is None
    assert second.previous_generation == first.generation
    assert cluster_store.current_generation("user_stats") == second.generation
    read = cluster_store.read([{"user_id": 1}], ["user_stats:clicks"], now=at(2))
    assert read.values[0, 0] == 4
    pattern = f"fs:{{user_stats@v1:s*}}:g{first.generation}:*"
    left = [
        key
        for address in cluster_store.router.masters()
        for key in cluster_store.router.client(address).scan_iter(match=pattern)
    ]
    assert left == []


def test_a_read_inside_a_swap_rolls_forward_to_one_generation(sharded_store):
    cluster_store = sharded_store
    """Pointers moved on some shards only (as mid-swap): the read still returns
    the newest generation for every entity of the view."""
    users = list(range(40))
    cluster_store.materialize("user_stats", user_rows(*[(u, 0, 0.0, 1) for u in users]))
    report = cluster_store.materialize(
        "user_stats", user_rows(*[(u, 1, 0.0, 2) for u in users])
    )
    view = MIXED.view("user_stats")
    old = str(int(report.generation) - 1)
    # Recreate the old generation's records, then point half the shards back at
    # it: the state a reader meets between the first and the last pointer SET.
    for u in users:
        shard = shard_of(str(u), cluster_store.shards_per_view)
        key = f"fs:{{user_stats@v1:s{shard:02d}}}:g{old}:{u}"
        client = cluster_store.router.client(cluster_store.router.owner_of_key(key))
        client.set(
            key,
            np.array([0.0], "<f8").tobytes() + np.array([0.0, 1.0], "<f4").tobytes(),
        )
    for shard in range(0, cluster_store.shards_per_view, 2):
        key = shard_current_key(view, shard)
        cluster_store.router.client(cluster_store.router.owner_of_key(key)).set(
            key, old
        )
    before = cluster_store.roll_forwards
    read = cluster_store.read(
        [{"user_id": u} for u in users], ["user_stats:clicks"], now=at(2)
    )
    assert (read.values[:, 0] == 2).all(), read.values[:, 0]
    assert cluster_store.roll_forwards == before + 1


def test_reads_during_materializations_see_one_whole_generation(sharded_store):
    """A reader hammering the cluster while each view is rewritten generation
    after generation never sees two generations of a view in one read."""
    users = list(range(60))

    def wide_rows(k: int) -> pd.DataFrame:
        wide = {f"f{i}": np.full(len(users), float(k)) for i in range(7)}
        return pd.DataFrame(
            {"user_id": users, "event_timestamp": [at(k)] * len(users), **wide}
        )

    def user_generation(k: int) -> pd.DataFrame:
        return user_rows(*[(u, k, float(k), k) for u in users])

    cluster_store = sharded_store
    cluster_store.drop_grace_s = 0.05  # what a read inside a swap relies on
    cluster_store.materialize("wide", wide_rows(0))
    cluster_store.materialize("user_stats", user_generation(0))
    refs = ["wide:f0", "user_stats:clicks", "wide:f6", "user_stats:ctr", "wide:f3"]
    rows_sets = ([{"user_id": 17}], [{"user_id": u} for u in users])
    seen: list[ClusterOnlineFeatures] = []
    done = threading.Event()
    router = type(cluster_store.router)(cluster_store.router.seeds)
    reading = ClusterOnlineStore(router, MIXED, replicas=cluster_store.replicas)

    def reader() -> None:
        try:
            while not done.is_set():
                for rows in rows_sets:
                    seen.append(reading.read(rows, refs, now=at(0)))
        finally:
            reading.close()

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for k in range(1, 16):
            cluster_store.materialize("wide", wide_rows(k))
            cluster_store.materialize("user_stats", user_generation(k))
    finally:
        done.set()
        thread.join(timeout=30)
        router.close()
    assert not thread.is_alive()
    assert len(seen) > 20, "the reader hardly ran: the test proved nothing"
    generations = set()
    for result in seen:
        assert not result.missing.any()
        for columns in ([0, 2, 4], [1, 3]):
            values = result.values[:, columns]
            assert (values == values.flat[0]).all(), values
            generations.add(float(values.flat[0]))
    assert len(generations) > 2, "no read fell between two materializations"


@pytest.mark.cluster
@pytest.mark.faults
def test_a_killed_master_fails_over_and_loses_no_acknowledged_write():
    """Under bounded load (reads every ~2 ms, acknowledged writes every ~2 ms), a
    master is SIGKILLed. Every read is answered (degraded while its slots have
    no master), the replica takes over, and every write that ``WAIT 1`` confirmed
    is still there afterwards, as is every materialized record."""
    with PrivateRedisCluster() as cluster:
        router = ClusterRouter(seeds_from_urls(cluster.seed_urls()))
        store = ClusterOnlineStore(router, MIXED, drop_grace_s=0.0)
        load_mixed(store)
        rows = [{"user_id": u, "ad_id": u % 3} for u in range(6)]
        victim_key = shard_current_key(MIXED.view("user_stats"), shard_of("1", 16))
        outcome = failover_drill(
            cluster, router, store, rows, MIXED_REFS, at(40), victim_key
        )
        store.close()
        router.close()
    assert outcome["failed_reads"] == 0, outcome
    assert outcome["degraded_reads"] > 0, "the kill was never seen: no proof"
    assert outcome["acked_writes"] > 50, outcome
    assert outcome["lost_acked_writes"] == 0, outcome
    assert outcome["recovered_equal"], outcome
    assert outcome["failover_s"] < 30, outcome


class OneNodeRouter(ClusterRouter):
    """Every slot on one plain Redis: the store's sharding, roll-forward and
    decode run without a cluster (the fast tier), on the same keys."""

    def refresh(self, *, force: bool = False) -> bool:
        self._owners = [self.seeds[0]] * 16_384
        return True


@pytest.fixture
def one_node_store(real_redis_url) -> Iterator[ClusterOnlineStore]:
    seeds = seeds_from_urls([real_redis_url])
    router = OneNodeRouter(seeds)
    router.client(seeds[0]).flushdb()
    store = ClusterOnlineStore(router, MIXED, replicas=0, drop_grace_s=0.0)
    try:
        yield store
    finally:
        store.close()
        router.client(seeds[0]).flushdb()
        router.close()


@pytest.mark.redis
def test_the_sharded_layout_on_one_node_reads_what_the_single_node_store_reads(
    one_node_store, real_redis_url
):
    load_mixed(one_node_store)
    # Database 1 (the router's clients use 0): the two layouts kept apart.
    client = redis.Redis(**{**redis.connection.parse_url(real_redis_url), "db": 1})
    client.flushdb()
    single = OnlineStore(client, MIXED)
    try:
        load_mixed(single)
        for rows in READ_CASES.values():
            for refs in (MIXED_REFS, ["wide:f6"]):
                got = one_node_store.read(rows, refs, now=at(40))
                assert_bit_exact(got, single.read(rows, refs, now=at(40)))
    finally:
        single.close()
        client.flushdb()
        client.close()


def test_a_materialization_that_fails_before_the_swap_leaves_the_old_one(
    sharded_store, monkeypatch
):
    """Records half written, then an error: nothing points at the new
    generation, so it is deleted and readers keep the previous one."""
    store = sharded_store
    users = list(range(30))
    store.materialize("user_stats", user_rows(*[(u, 0, 0.0, 1) for u in users]))
    before = store.current_generation("user_stats")
    original = store._write_by_node

    def half_then_fail(writes, written):
        original(writes[: len(writes) // 2], written)
        raise redis.ConnectionError("the cluster went away mid-write")

    monkeypatch.setattr(store, "_write_by_node", half_then_fail)
    with pytest.raises(OnlineStoreUnavailable, match="REDIS_CLUSTER_URL"):
        store.materialize("user_stats", user_rows(*[(u, 1, 0.0, 2) for u in users]))
    monkeypatch.undo()
    assert store.current_generation("user_stats") == before
    read = store.read([{"user_id": u} for u in users], ["user_stats:clicks"], now=at(2))
    assert (read.values[:, 0] == 1).all()
    pattern = "fs:{user_stats@v1:s*}:g*"
    leftovers = [
        key
        for address in store.router.masters()
        for key in store.router.client(address).scan_iter(match=pattern)
        if not key.decode().split(":g")[1].startswith(f"{before}:")
    ]
    assert leftovers == []


def test_a_swap_that_fails_half_way_says_so_and_reads_roll_forward(
    sharded_store, monkeypatch
):
    """Some pointers moved, then an error: PartialSwap says what to do, and
    reads already serve the new (complete) generation for every entity."""
    store = sharded_store
    users = list(range(30))
    store.materialize("user_stats", user_rows(*[(u, 0, 0.0, 1) for u in users]))
    original = store._write_by_node
    calls = []

    def flip_half_then_fail(writes, written):
        calls.append(len(writes))
        if len(calls) == 2:  # the pointers
            original(writes[: len(writes) // 2], written)
            raise redis.ConnectionError("a master died mid-swap")
        original(writes, written)

    monkeypatch.setattr(store, "_write_by_node", flip_half_then_fail)
    with pytest.raises(PartialSwap, match="materialize again"):
        store.materialize("user_stats", user_rows(*[(u, 1, 0.0, 2) for u in users]))
    monkeypatch.undo()
    read = store.read([{"user_id": u} for u in users], ["user_stats:clicks"], now=at(2))
    assert (read.values[:, 0] == 2).all()
