"""The loopback Redis Cluster launcher and the slot routing, with and without one."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

import pytest
import redis

from mlsd_lib.cluster_drill import replication_loss_drill
from mlsd_lib.cluster_routing import (
    NUM_SLOTS,
    ClusterRouter,
    ClusterUnavailable,
    acknowledged_set,
    parse_cluster_slots,
    slot_of,
)
from mlsd_lib.features.cluster_online import (
    cluster_counter_key,
    shard_current_key,
    shard_of,
    shard_record_key,
)
from mlsd_lib.features.views import Feature, FeatureView
from mlsd_lib.redis_backend import embedded_server_binary
from mlsd_lib.redis_cluster import (
    CLUSTER_BUS_OFFSET,
    ClusterStartFailed,
    PrivateRedisCluster,
    cluster_url_from_env,
    free_cluster_port,
    seeds_from_urls,
)

VIEW = FeatureView(
    "user_stats", ("user_id",), (Feature("ctr"),), ttl=timedelta(hours=1)
)


def test_a_shards_pointer_and_records_share_one_slot():
    """The read script builds record keys on the server: legal on a cluster only
    because they hash to the slot of the pointer it was given."""
    for shard in range(16):
        slot = slot_of(shard_current_key(VIEW, shard))
        for entity in ("1", "42", "7|us"):
            assert slot_of(shard_record_key(VIEW, shard, "12", entity)) == slot
    assert shard_current_key(VIEW, 7) == "fs:{user_stats@v1:s07}:current"
    assert shard_record_key(VIEW, 7, "12", "42") == "fs:{user_stats@v1:s07}:g12:42"
    assert cluster_counter_key(VIEW) == "fs:{user_stats@v1}:counter"


def test_a_views_shards_spread_over_three_masters():
    """redis-cli gives three masters slots 0-5460, 5461-10922, 10923-16383."""
    thirds = {slot_of(shard_current_key(VIEW, s)) * 3 // NUM_SLOTS for s in range(16)}
    assert thirds == {0, 1, 2}


def test_an_entitys_shard_is_stable_and_spread():
    assert shard_of("42", 16) == shard_of("42", 16)
    counts = [0] * 16
    for entity in range(1_600):
        counts[shard_of(str(entity), 16)] += 1
    assert min(counts) > 60, counts


def test_cluster_slots_replies_parse_into_owners():
    reply = [
        [0, 5460, [b"127.0.0.1", 7000, b"a"], [b"127.0.0.1", 7003, b"d"]],
        [5461, 10922, [b"127.0.0.1", 7001, b"b"]],
    ]
    owners, nodes = parse_cluster_slots(reply)
    assert owners[0] == owners[5460] == ("127.0.0.1", 7000)
    assert owners[5461] == ("127.0.0.1", 7001)
    assert owners[10923] is None  # no master: a failover is under way
    assert nodes == {("127.0.0.1", p) for p in (7000, 7001, 7003)}


def test_cluster_ports_leave_room_for_the_bus():
    port = free_cluster_port()
    assert port + CLUSTER_BUS_OFFSET <= 65_535


def test_fewer_than_three_masters_are_refused_with_the_reason():
    with pytest.raises(ClusterStartFailed, match="at least 3 masters"):
        PrivateRedisCluster(masters=2)


def test_a_router_without_seeds_says_what_to_set():
    with pytest.raises(ClusterUnavailable, match="REDIS_CLUSTER_URL"):
        ClusterRouter([])


def test_the_cluster_is_named_by_its_own_variable(monkeypatch):
    monkeypatch.delenv("REDIS_CLUSTER_URL", raising=False)
    assert cluster_url_from_env() is None
    monkeypatch.setenv("REDIS_CLUSTER_URL", "redis://127.0.0.1:7000")
    assert cluster_url_from_env() == "redis://127.0.0.1:7000"
    assert seeds_from_urls(["redis://127.0.0.1:7000"]) == [("127.0.0.1", 7000)]


@pytest.mark.cluster
def test_the_private_cluster_has_three_masters_each_with_a_replica(
    redis_cluster_urls,
):
    router = ClusterRouter(seeds_from_urls(redis_cluster_urls))
    try:
        masters = router.masters()
        assert len(masters) == 3
        assert all(router.owner(slot) is not None for slot in range(NUM_SLOTS))
        for address in masters:
            info = router.client(address).info("replication")
            assert info["role"] == "master"
            assert info["connected_slaves"] == 1
        key = "test:{ack}:1"
        assert acknowledged_set(router, key, b"v", replicas=1, timeout_ms=1_000)
        assert router.client(router.owner_of_key(key)).get(key) == b"v"
        router.client(router.owner_of_key(key)).delete(key)
    finally:
        router.close()


@pytest.mark.cluster
def test_a_cross_slot_command_is_refused_by_the_cluster(redis_cluster_urls):
    """Why the store's keys carry hash tags: a multi-key command whose keys hash
    to different slots fails, even on the right node."""
    router = ClusterRouter(seeds_from_urls(redis_cluster_urls))
    try:
        client = router.client(router.owner_of_key("a"))
        with pytest.raises(redis.ResponseError, match="hash to the same slot"):
            client.mget("a", "b")
    finally:
        router.close()


@pytest.mark.cluster
def test_the_command_line_holds_a_cluster_until_stopped(tmp_path):
    """``python -m mlsd_lib.redis_cluster --url-file F`` (what CI runs) publishes
    a ready cluster's URL, and SIGTERM takes every node down with it."""
    url_file = tmp_path / "cluster.url"
    command = [sys.executable, "-m", "mlsd_lib.redis_cluster", "--url-file", url_file]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if url_file.exists() or holder.poll() is not None:
                break
            time.sleep(0.1)
        url = url_file.read_text().strip()
        seed = redis.Redis.from_url(url)
        assert b"cluster_state:ok" in seed.execute_command("CLUSTER", "INFO")
        ports = [int(n[1]) for n in seeds_from_urls([url])]
        assert len(seed.execute_command("CLUSTER", "NODES").splitlines()) == 6
        seed.close()
    finally:
        holder.terminate()
        assert holder.wait(timeout=30) == 0
    assert holder.stdout is not None
    assert holder.stdout.read().strip() == f"REDIS_CLUSTER_URL={url}"
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=ports[0], socket_connect_timeout=1).ping()


@pytest.mark.cluster
@pytest.mark.faults
def test_without_redis_cli_the_embedded_server_forms_a_cluster_that_fails_over():
    """A reader with no system package: the embedded ``valkey-server`` nodes,
    joined by commands instead of ``redis-cli``, split the slots as redis-cli
    does, replicate, fail over, and lose exactly what the replication-loss drill
    says (plain writes after the cut; nothing ``WAIT`` confirmed)."""
    binary, why_not = embedded_server_binary()
    if binary is None:
        pytest.skip(why_not)
    with PrivateRedisCluster(binary=binary, cli=None) as cluster:
        assert cluster.cli is None
        router = ClusterRouter(seeds_from_urls(cluster.seed_urls()))
        try:
            starts = sorted(
                (first, router.owner(first)[1])
                for first in (0, 5_461, 10_923)  # redis-cli's split for three
            )
            assert len({port for _, port in starts}) == 3
            assert all(router.owner(s - 1) != router.owner(s) for s in (5_461, 10_923))
            assert all(len(cluster.replicas_of(p)) == 1 for p in cluster.master_ports())
            info = router.client(router.masters()[0]).info("server")
            assert "valkey_version" in info
            outcome = replication_loss_drill(
                cluster, router, plain_writes=20, wait_writes=3
            )
        finally:
            router.close()
    assert outcome["plain_lost"] == outcome["plain_acked"] == 20, outcome
    assert outcome["before_lost"] == 0 and outcome["wait_acked"] == 0, outcome
