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

:func:`replication_loss_drill` shows what that ``WAIT`` buys. Redis replicates
asynchronously: a master answers ``OK`` before its replica has the write. The
drill cuts one master off from its replica (the replica frozen, the master told
to drop its replication link: what a partition or a long stall does), writes
through the master with and without ``WAIT 1``, kills the master and lets the
stale replica win the failover. Every plain write the master acknowledged is
gone; no ``WAIT``-confirmed write is, because ``WAIT`` confirmed none of them:
it timed out and said so, and the writer knows its writes are not safe.
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


def _tag_owned_by(router: ClusterRouter, master: tuple[str, int]) -> str:
    """A hash tag whose slot ``master`` serves, so the drill's keys all live there."""
    for n in range(100_000):
        tag = f"{{loss{n}}}"
        if router.owner(slot_of(tag)) == master:
            return tag
    raise DrillFailed(f"no slot of master {master} found; is the cluster ready?")


def _count_lost(router: ClusterRouter, written: Mapping[str, bytes]) -> int:
    lost = 0
    for key, value in written.items():
        client = router.client(router.owner_of_key(key))
        lost += client.get(key) != value
    return lost


def replication_loss_drill(
    cluster: PrivateRedisCluster,
    router: ClusterRouter,
    *,
    plain_writes: int = 200,
    wait_writes: int = 20,
    wait_timeout_ms: int = 20,
) -> dict[str, object]:
    """Cut a master off from its replica, write with and without ``WAIT 1``,
    kill the master, and count the acknowledged writes the failover lost.

    Returns ``before_acked`` / ``before_lost`` (``WAIT``-confirmed writes made
    while the replica was in sync), ``plain_acked`` / ``plain_lost`` (plain
    ``SET`` answered ``OK`` after the cut), ``wait_acked`` / ``wait_lost`` (the
    ``WAIT 1`` writes after the cut that were confirmed, and of those, lost),
    ``wait_timed_out`` and the failover time. The drill kills a master: the
    cluster is left with one shard without a replica.
    """
    if plain_writes < 1 or wait_writes < 1 or wait_timeout_ms < 1:
        raise ValueError(
            "plain_writes, wait_writes and wait_timeout_ms must each be at least 1 "
            f"(got {plain_writes}, {wait_writes}, {wait_timeout_ms})."
        )
    router.refresh(force=True)
    with_replica = [p for p in cluster.master_ports() if cluster.replicas_of(p)]
    if not with_replica:
        raise DrillFailed(
            "no master has a live replica: this drill needs one (start a fresh "
            "PrivateRedisCluster)."
        )
    master_port = with_replica[0]
    replica_port = cluster.replicas_of(master_port)[0]
    address = next(a for a in router.masters() if a[1] == master_port)
    tag = _tag_owned_by(router, address)
    client = router.client(address)

    before: dict[str, bytes] = {}
    for n in range(wait_writes):
        key, value = f"drill:loss:{tag}:before:{n}", f"b{n}".encode()
        if acknowledged_set(router, key, value, replicas=1, timeout_ms=1_000):
            before[key] = value

    # The cut: the replica stops reading, and the master drops the link, so
    # nothing written from here on reaches the replica (bytes already sent would
    # still sit in its socket buffer; none are sent after the link is gone).
    cluster.pause(replica_port)
    try:
        client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        plain: dict[str, bytes] = {}
        pipe = client.pipeline(transaction=False)
        keys = [f"drill:loss:{tag}:plain:{n}" for n in range(plain_writes)]
        for n, key in enumerate(keys):
            pipe.set(key, f"p{n}".encode())
        for n, (key, reply) in enumerate(zip(keys, pipe.execute(), strict=True)):
            if reply is True:
                plain[key] = f"p{n}".encode()
        waited: dict[str, bytes] = {}
        timed_out = 0
        for n in range(wait_writes):
            key, value = f"drill:loss:{tag}:wait:{n}", f"w{n}".encode()
            if acknowledged_set(
                router, key, value, replicas=1, timeout_ms=wait_timeout_ms
            ):
                waited[key] = value
            else:
                timed_out += 1
        cluster.kill(master_port)
    finally:
        cluster.resume(replica_port)
    failover_s = cluster.wait_failover(timeout_s=30)
    router.refresh(force=True)
    outcome = {
        "before_acked": len(before),
        "before_lost": _count_lost(router, before),
        "plain_acked": len(plain),
        "plain_lost": _count_lost(router, plain),
        "wait_attempted": wait_writes,
        "wait_acked": len(waited),
        "wait_lost": _count_lost(router, waited),
        "wait_timed_out": timed_out,
        "failover_s": round(failover_s, 2),
    }
    written = [f"drill:loss:{tag}:{p}:{n}" for p in ("before", "wait")
               for n in range(wait_writes)] + keys  # fmt: skip
    router.client(router.owner_of_key(written[0])).delete(*written)  # one slot
    return outcome
