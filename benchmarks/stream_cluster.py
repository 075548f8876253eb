"""The stream processor's fold rate on one Redis against a Redis Cluster.

    python benchmarks/stream_cluster.py [--quick]

One in-process :class:`~mlsd_lib.features.stream_processor.StreamProcessor`
folds the same synthetic ad events (impressions and clicks, into per-user and
per-ad windowed counts) into a private ``redis-server`` and into a private
loopback cluster of 3 masters and 3 replicas
(:class:`~mlsd_lib.redis_cluster.PrivateRedisCluster`), the two alternating
repeat after repeat so machine noise hits both alike. On one Redis an event is
one script; on the cluster it is one script per entity (two here), each sent to
the master of its entity's shard (:mod:`mlsd_lib.features.stream_layout`).

Both servers are private and stop with the run, so nothing is left behind. The
last line on stdout is one JSON object: events folded per second (median over
the repeats) on each, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time

import redis
from redis.cluster import RedisCluster

from mlsd_lib.features.event_stream import AdEvent, publish, synthetic_events
from mlsd_lib.features.stream_layout import SINGLE_NODE, ClusterLayout
from mlsd_lib.features.stream_processor import StreamProcessor
from mlsd_lib.features.windowed_fold import WindowedCountFold
from mlsd_lib.features.windows import ads_aggregations
from mlsd_lib.redis_backend import PrivateRedisServer
from mlsd_lib.redis_cluster import PrivateRedisCluster, cluster_binaries_missing


def fold_rate(
    client: redis.Redis | RedisCluster, fold: WindowedCountFold, events: list[AdEvent]
) -> float:
    """Events per second one processor folds from a backlog of ``events``, on
    emptied servers (a cluster client empties every master)."""
    client.flushall()
    publish(client, fold.stream, events)
    processor = StreamProcessor(
        client, fold.stream, "bench", "c", fold=fold, batch_size=100, block_ms=10
    )
    started = time.perf_counter()
    processor.run(max_events=len(events), max_runtime_s=600)
    elapsed = time.perf_counter() - started
    if processor.counts.applied != len(events):
        sys.exit(f"only {processor.counts.applied} of {len(events)} events applied")
    return len(events) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events, 1 repeat")
    args = parser.parse_args()
    impressions, repeats = (2_000, 1) if args.quick else (10_000, 3)
    binary = shutil.which("redis-server")
    missing = cluster_binaries_missing()
    if binary is None or missing is not None:
        sys.exit(f"this benchmark needs redis-server and a cluster: {missing}")
    events = synthetic_events(
        impressions, num_users=2_000, num_ads=200, impressions_per_s=5.0, seed=0
    )
    rates: dict[str, list[float]] = {"single_node": [], "cluster": []}
    with PrivateRedisServer(binary) as server, PrivateRedisCluster() as cluster:
        one = redis.Redis.from_url(server.url)
        many = RedisCluster.from_url(cluster.url)
        for repeat in range(repeats):
            for name, client, layout in (
                ("single_node", one, SINGLE_NODE),
                ("cluster", many, ClusterLayout()),
            ):
                fold = WindowedCountFold(ads_aggregations(), layout=layout)
                rates[name].append(fold_rate(client, fold, events))
                print(f"repeat {repeat}: {name} {rates[name][-1]:,.0f} events/s")
        one.close()
        many.close()
    single = statistics.median(rates["single_node"])
    clustered = statistics.median(rates["cluster"])
    print(
        json.dumps(
            {
                "events": len(events),
                "repeats": repeats,
                "single_node_events_per_s": round(single),
                "cluster_events_per_s": round(clustered),
                "cluster_over_single_node": round(clustered / single, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
