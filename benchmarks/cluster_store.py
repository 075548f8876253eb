"""The online store on a Redis Cluster against one node, and a failover drill.

    python benchmarks/cluster_store.py [--quick]

Loads the example ads views (:mod:`mlsd_lib.features.examples`) into one Redis
(``REDIS_URL``, else a private server) and into a Redis Cluster
(``REDIS_CLUSTER_URL``, else a private loopback cluster of 3 masters and 3
replicas, :class:`~mlsd_lib.redis_cluster.PrivateRedisCluster`), then measures,
round-robin so machine noise hits every measurement alike
(:func:`mlsd_lib.cluster_measure.measure_round_robin`, which the chapter
``notebooks/scaling_out.ipynb`` uses too):

* ``single_node`` / ``cluster``: 1 entity row x 50 features over 3 views;
* ``single_node_candidates`` / ``cluster_candidates``: 1 user plus 100
  candidate ads x 20 features;
* ``cluster_threads`` (and ``_candidates``): the cluster read with one thread
  per master instead of writing every request before reading any reply;
* ``set`` / ``set_wait1``: a plain ``SET`` against ``SET`` + ``WAIT 1 100`` on
  a cluster master, what a replica's confirmation costs a write.

Then it runs the failover drill (:func:`mlsd_lib.cluster_drill.failover_drill`)
on a fresh private cluster: a master SIGKILLed under bounded load.

The last line on stdout is one JSON object (milliseconds). Targets: cluster p99
<= 2 x single node for both workloads; zero failed requests and zero lost
acknowledged writes in the drill. Keys written are deleted again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

import numpy as np
import redis

from mlsd_lib.cluster_drill import failover_drill
from mlsd_lib.cluster_measure import measure_round_robin
from mlsd_lib.cluster_routing import ClusterRouter
from mlsd_lib.features import records
from mlsd_lib.features.cluster_online import (
    ClusterOnlineStore,
    shard_current_key,
    shard_of,
)
from mlsd_lib.features.examples import (
    CANDIDATE_REFS,
    SINGLE_ENTITY_REFS,
    make_ads_example,
)
from mlsd_lib.features.online import OnlineStore, delete_matching
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.redis_backend import get_redis
from mlsd_lib.redis_cluster import (
    PrivateRedisCluster,
    cluster_url_from_env,
    seeds_from_urls,
)

NUM_CANDIDATES = 100


def remove_example_keys(
    router: ClusterRouter, registry: FeatureRegistry, extra: str
) -> int:
    """Delete what this run wrote on the cluster (every view's shards, counters
    and ``extra``), so a cluster named by REDIS_CLUSTER_URL stays as it was."""
    deleted = 0
    for address in router.masters():
        client = router.client(address)
        for view in registry.views:
            for key in client.scan_iter(match=f"fs:{{{view.name}@v{view.version}*"):
                deleted += client.unlink(key)
    deleted += router.client(router.owner_of_key(extra)).unlink(extra)
    return deleted


def latencies(
    single_client: redis.Redis, seeds: list[tuple[str, int]], n: int, warmup: int
) -> tuple[dict[str, np.ndarray], bool]:
    """The round-robin measurement; and whether the cluster served exactly what
    the single node served (it must, or the comparison is not like for like)."""
    example = make_ads_example(seed=0)
    single = OnlineStore(single_client, example.registry)
    router = ClusterRouter(seeds)
    threaded = ClusterRouter(seeds, fan_out="threads")
    cluster = ClusterOnlineStore(router, example.registry, drop_grace_s=0.0)
    cluster_threads = ClusterOnlineStore(threaded, example.registry)
    now = example.end
    one = [{"user_id": 17, "ad_id": 5}]
    candidates = [{"user_id": 17, "ad_id": ad} for ad in range(NUM_CANDIDATES)]
    key = "bench:{wait}:x"
    master = router.client(router.owner_of_key(key))
    try:
        for name, table in example.tables.items():
            single.materialize(name, table)
            cluster.materialize(name, table)
        same = all(
            getattr(cluster.read(rows, refs, now=now), f).tobytes()
            == getattr(single.read(rows, refs, now=now), f).tobytes()
            for rows, refs in ((one, SINGLE_ENTITY_REFS), (candidates, CANDIDATE_REFS))
            for f in ("values", "missing", "stale")
        )
        calls: dict[str, Callable[[], object]] = {
            "single_node": lambda: single.read(one, SINGLE_ENTITY_REFS, now=now),
            "cluster": lambda: cluster.read(one, SINGLE_ENTITY_REFS, now=now),
            "cluster_threads": lambda: cluster_threads.read(
                one, SINGLE_ENTITY_REFS, now=now
            ),
            "single_node_candidates": lambda: single.read(
                candidates, CANDIDATE_REFS, now=now
            ),
            "cluster_candidates": lambda: cluster.read(
                candidates, CANDIDATE_REFS, now=now
            ),
            "cluster_threads_candidates": lambda: cluster_threads.read(
                candidates, CANDIDATE_REFS, now=now
            ),
            "set": lambda: master.set(key, b"x" * 208),
            "set_wait1": lambda: (
                master.pipeline(transaction=False)
                .set(key, b"x" * 208)
                .execute_command("WAIT", 1, 100)
                .execute()
            ),
        }
        samples = measure_round_robin(calls, n, warmup)
    finally:
        for view in example.registry.views:
            delete_matching(single_client, f"{records.view_prefix(view)}:*")
        single.close()
        cluster.close()
        cluster_threads.close()
        remove_example_keys(router, example.registry, key)
        router.close()
        threaded.close()
    return samples, same


def drill() -> dict[str, object]:
    """The failover drill on a private cluster of its own (it kills a master)."""
    example = make_ads_example(seed=0, num_users=300)
    with PrivateRedisCluster() as cluster:
        router = ClusterRouter(seeds_from_urls(cluster.seed_urls()))
        store = ClusterOnlineStore(router, example.registry, drop_grace_s=0.0)
        for name, table in example.tables.items():
            store.materialize(name, table)
        rows = [{"user_id": 17, "ad_id": ad} for ad in range(NUM_CANDIDATES)]
        victim = shard_current_key(
            example.registry.view("user_stats"), shard_of("17", store.shards_per_view)
        )
        try:
            return failover_drill(
                cluster, router, store, rows, CANDIDATE_REFS, example.end, victim
            )
        finally:
            store.close()
            router.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="fewer requests (CI smoke run)"
    )
    args = parser.parse_args()
    n = 300 if args.quick else 3_000
    warmup = 50 if args.quick else 300

    backend = get_redis()  # prints the one "Redis backend: ..." line
    if not backend.is_real:
        sys.exit("this benchmark needs a real Redis: set REDIS_URL or install one")
    url = cluster_url_from_env()
    private = None
    if url is None:
        private = PrivateRedisCluster().start()
        seeds = seeds_from_urls(private.seed_urls())
        print(f"cluster: private, 3 masters + 3 replicas on ports {private.ports}")
    else:
        seeds = seeds_from_urls([url])
        print(f"cluster: REDIS_CLUSTER_URL={url}")
    try:
        samples, same = latencies(backend.client, seeds, n, warmup)
    finally:
        if private is not None:
            private.stop()
    outcome = drill()

    results: dict[str, object] = {"quick": args.quick, "cores": os.cpu_count()}
    for name, seconds in samples.items():
        p50, p99 = np.percentile(seconds * 1e3, [50, 99])
        results[f"{name}_p50_ms"] = round(float(p50), 4)
        results[f"{name}_p99_ms"] = round(float(p99), 4)
    results["cluster_returns_the_same"] = same
    results["failover_failed_requests"] = outcome["failed_reads"]
    results["failover_lost_acked_writes"] = outcome["lost_acked_writes"]
    for name in ("reads", "degraded_reads", "writes", "acked_writes"):
        results[f"failover_{name}"] = outcome[name]
    results["failover_s"] = outcome["failover_s"]
    results["failover_recovered_equal"] = outcome["recovered_equal"]
    results["targets_met"] = {
        "cluster_p99_le_2x_single_node": results["cluster_p99_ms"]
        <= 2 * results["single_node_p99_ms"],
        "cluster_candidates_p99_le_2x_single_node": results["cluster_candidates_p99_ms"]
        <= 2 * results["single_node_candidates_p99_ms"],
        "zero_failed_requests": outcome["failed_reads"] == 0,
        "zero_lost_acked_writes": outcome["lost_acked_writes"] == 0,
    }
    print(json.dumps(results))


if __name__ == "__main__":
    main()
