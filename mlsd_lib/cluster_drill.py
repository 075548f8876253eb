"""A failover drill: kill a Redis Cluster master under load and count what broke.

Introduced in ``notebooks/feature_store.ipynb`` (a scale-out chapter
will take it over). The test of :mod:`mlsd_lib.features.cluster_online` and
``benchmarks/cluster_store.py`` run the same drill, so the figure the benchmark
prints is the property the test asserts:

* a reader reads the store every ~2 ms and counts reads that *raised* (must be
  none: a read whose master is gone answers with defaults, flagged) and reads
  that were degraded (must be some, or the kill was never seen);
* a writer does :func:`~mlsd_lib.cluster_routing.acknowledged_set` every ~2 ms
  and remembers the writes that ``WAIT 1`` confirmed;
* the master serving ``victim_key`` is SIGKILLed; the drill waits until its
  replica serves its slots, runs a second longer, then checks that every
  confirmed write is still there and that a read equals the one before the kill.

The load is bounded (two threads, each sleeping 2 ms between requests) so the
drill measures the cluster, not a saturated machine.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence

from mlsd_lib.cluster_routing import ClusterRouter, acknowledged_set, slot_of
from mlsd_lib.errors import MlsdError
from mlsd_lib.features.cluster_online import ClusterOnlineStore
from mlsd_lib.redis_cluster import PrivateRedisCluster


class DrillFailed(MlsdError, RuntimeError):
    """The drill could not run (no master serves the victim key)."""


def failover_drill(
    cluster: PrivateRedisCluster,
    router: ClusterRouter,
    store: ClusterOnlineStore,
    rows: Sequence[Mapping[str, object]],
    refs: Sequence[str],
    now: object,
    victim_key: str,
    *,
    settle_s: float = 1.0,
    pause_s: float = 0.002,
) -> dict[str, object]:
    """Kill the master of ``victim_key`` while reading ``rows`` x ``refs`` and
    writing acknowledged keys; returns the counts (see the module docstring)."""
    baseline = store.read(list(rows), list(refs), now=now)
    counts = {"reads": 0, "failed_reads": 0, "degraded_reads": 0, "writes": 0}
    acked: dict[str, bytes] = {}
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                try:
                    result = store.read(list(rows), list(refs), now=now)
                    counts["degraded_reads"] += int(result.degraded)
                except Exception:
                    counts["failed_reads"] += 1
                counts["reads"] += 1
                time.sleep(pause_s)
        finally:
            store.close()

    def writer() -> None:
        n = 0
        while not done.is_set():
            key, value = f"drill:ack:{n}", f"value-{n}".encode()
            n += 1
            counts["writes"] += 1
            try:
                if acknowledged_set(router, key, value, replicas=1, timeout_ms=100):
                    acked[key] = value
            except Exception:
                time.sleep(pause_s)  # not acknowledged: it does not count
                with contextlib.suppress(MlsdError):
                    router.refresh()
            time.sleep(pause_s)

    victim = router.owner(slot_of(victim_key))
    if victim is None:
        raise DrillFailed(f"no master serves {victim_key!r}; is the cluster ready?")
    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        cluster.kill(victim[1])
        waited = cluster.wait_failover(timeout_s=30)
        time.sleep(settle_s)
    finally:
        done.set()
        for thread in threads:
            thread.join(timeout=30)
    router.refresh(force=True)
    lost = sum(
        router.client(router.owner_of_key(key)).get(key) != value
        for key, value in acked.items()
    )
    after = store.read(list(rows), list(refs), now=now)
    store.close()
    recovered = not after.degraded and all(
        getattr(after, f).tobytes() == getattr(baseline, f).tobytes()
        for f in ("values", "missing", "stale")
    )
    return {
        **counts,
        "failover_s": round(waited, 2),
        "acked_writes": len(acked),
        "lost_acked_writes": int(lost),
        "recovered_equal": recovered,
    }
