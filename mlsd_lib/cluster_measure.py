"""Measuring the online store on a cluster: latency round-robin, server CPU, fan-out.

Introduced in ``notebooks/scaling_out.ipynb``. ``benchmarks/cluster_store.py``
and the chapter measure the same way, so the chapter's figures and the
benchmark's are the same kind of number:

* :func:`measure_round_robin` times several calls *in turns* (one of each per
  round) rather than one after the other. On a shared machine the noise comes in
  bursts (another process, a garbage collection, the CPU clock); in turns, a
  burst lands on every call alike, so their *ratio* stays honest even when the
  absolute numbers move.
* :func:`latency_table` turns the samples into p50 / p99 in milliseconds.
* :func:`server_cpu_per_call` reads a Redis server's own CPU clock (``INFO
  cpu``) around ``n`` calls: the seconds of server CPU one call costs, network
  stack included. A Redis shard executes commands on one thread, so
  ``1 / cpu per call`` bounds the calls per second one shard can serve, which is
  the divisor a shard plan needs (:mod:`mlsd_lib.scale_out_plan`). Client-side
  latency cannot give it: it is mostly waiting, and a client process (Python,
  decoding) saturates long before the server does.
* :class:`RequestCounter` wraps a router's ``send_to_nodes`` and records which
  nodes each call addressed, so a test or a reader can see "one request per
  master per read" on a real read, not take it on trust.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import redis

from mlsd_lib.cluster_routing import Address, ClusterRouter
from mlsd_lib.errors import MlsdError
from mlsd_lib.progress import tqdm

__all__ = [
    "MeasurementError",
    "RequestCounter",
    "latency_table",
    "measure_round_robin",
    "server_cpu_per_call",
]


class MeasurementError(MlsdError, ValueError):
    """A measurement was asked for with nothing to measure."""


def measure_round_robin(
    calls: Mapping[str, Callable[[], object]],
    n: int,
    warmup: int,
    *,
    show_progress: bool = True,
) -> dict[str, np.ndarray]:
    """Seconds per call, ``n`` samples of each, the calls taken in turns.

    ``warmup`` rounds run first and are not recorded (connections opened,
    scripts loaded, caches filled).
    """
    if not calls or n < 1 or warmup < 0:
        raise MeasurementError(
            f"got {len(calls)} calls, n={n}, warmup={warmup}: give at least one "
            "call, n >= 1 and warmup >= 0."
        )
    for _ in tqdm(range(warmup), desc="warm-up", disable=not show_progress):
        for call in calls.values():
            call()
    samples = {name: np.empty(n) for name in calls}
    for i in tqdm(range(n), desc="measuring", disable=not show_progress):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            samples[name][i] = time.perf_counter() - start
    return samples


def latency_table(samples: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """p50 and p99 in milliseconds, one row per measured call."""
    rows = {
        name: np.percentile(np.asarray(seconds) * 1e3, [50, 99])
        for name, seconds in samples.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=["p50_ms", "p99_ms"])


def _cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def server_cpu_per_call(
    clients: Mapping[str, redis.Redis] | redis.Redis,
    call: Callable[[], object],
    n: int,
) -> float:
    """Seconds of Redis CPU (user + system, summed over ``clients``' servers)
    that one ``call`` costs, from ``INFO cpu`` before and after ``n`` calls.

    The server's own background work (its cron, replication) is counted too;
    with ``n`` in the thousands it is a small share, and it errs on the side of
    fewer calls per shard.
    """
    if n < 1:
        raise MeasurementError(f"n is {n}: measure at least one call.")
    servers = clients.values() if isinstance(clients, Mapping) else [clients]
    before = sum(_cpu_seconds(c) for c in servers)
    for _ in range(n):
        call()
    after = sum(_cpu_seconds(c) for c in servers)
    return max(after - before, 0.0) / n


class RequestCounter:
    """Within ``with RequestCounter(router) as counter:``, ``counter.calls``
    lists, for each ``send_to_nodes`` call, the nodes it sent to and how many
    commands each got."""

    def __init__(self, router: ClusterRouter):
        self.router = router
        self.calls: list[dict[Address, int]] = []
        self._original: Callable | None = None

    def __enter__(self) -> RequestCounter:
        original = self._original = self.router.send_to_nodes

        def counting(packed: Mapping[Address, list[bytes]]):
            self.calls.append({address: len(c) for address, c in packed.items()})
            return original(packed)

        self.router.send_to_nodes = counting  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Remove the instance attribute: the class's method shows through again.
        del self.router.send_to_nodes
        self._original = None
