"""Closed and open loops: the two ways to offer load, bounded in count and time.

Part of :mod:`mlsd_lib.serving.loadgen`, introduced in
``notebooks/model_serving.ipynb``. A closed loop finds a service's capacity; an
open loop shows the latency users see at a given arrival rate, queueing included.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import numpy as np

from mlsd_lib.serving.loadgen.limits import (
    MAX_CONCURRENCY,
    MAX_IN_FLIGHT,
    MAX_REQUESTS,
    MAX_SECONDS,
    Send,
    check_range,
)
from mlsd_lib.serving.loadgen.results import LoadResult, _Tally


class _Budget:
    """Hands out request slots until the count or the deadline runs out."""

    def __init__(self, max_requests: int, max_seconds: float) -> None:
        self._lock = threading.Lock()
        self._left = max_requests
        self._deadline = time.perf_counter() + max_seconds

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0 or time.perf_counter() >= self._deadline:
                return False
            self._left -= 1
            return True


def _closed_loop_phase(
    send: Send, concurrency: int, max_requests: int, max_seconds: float
) -> LoadResult:
    budget = _Budget(max_requests, max_seconds)
    tally = _Tally()

    def worker() -> None:
        latencies: list[float] = []
        while budget.take():
            sent = time.perf_counter()
            try:
                send()
            except Exception as error:
                tally.fail(error)
            else:
                latencies.append(time.perf_counter() - sent)
        tally.add_latencies(latencies)

    threads = [
        threading.Thread(target=worker, name=f"loadgen-{i}", daemon=True)
        for i in range(concurrency)
    ]
    started_at, started = time.time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    duration_s = time.perf_counter() - started
    return tally.result(duration_s, started_at, mode="closed", concurrency=concurrency)


def run_closed_loop(
    send: Send,
    concurrency: int,
    *,
    max_requests: int,
    max_seconds: float,
    warmup_requests: int = 0,
) -> LoadResult:
    """Keep ``concurrency`` requests in flight until a count or time bound is hit.

    Each of ``concurrency`` threads calls ``send()`` again as soon as the
    previous call returns, which is perf_analyzer's ``--concurrency-range``
    mode. The run stops after ``max_requests`` requests or ``max_seconds``,
    whichever comes first; both are required so a run always ends by itself.
    ``warmup_requests`` are sent first, with the same concurrency and their own
    ``max_seconds`` bound, and not recorded: first requests pay for connection
    set-up, lazy model loading and cold caches.
    """
    check_range("concurrency", concurrency, 0, MAX_CONCURRENCY)
    check_range("max_requests", max_requests, 0, MAX_REQUESTS)
    check_range("max_seconds", max_seconds, 0, MAX_SECONDS)
    if not 0 <= warmup_requests <= MAX_REQUESTS:
        raise ValueError(f"warmup_requests={warmup_requests!r} is outside [0, 100000]")
    if warmup_requests:
        _closed_loop_phase(send, concurrency, warmup_requests, max_seconds)
    return _closed_loop_phase(send, concurrency, max_requests, max_seconds)


def sweep(
    send: Send,
    concurrencies: Sequence[int] = (1, 2, 4, 8),
    *,
    max_requests: int,
    max_seconds: float,
    warmup_requests: int = 0,
) -> list[LoadResult]:
    """Run :func:`run_closed_loop` at each concurrency level, in order.

    Rising concurrency traces the latency-throughput curve: throughput grows
    until the server saturates, after which extra concurrency only adds queueing
    latency. The bounds apply to each level.
    """
    return [
        run_closed_loop(
            send,
            concurrency,
            max_requests=max_requests,
            max_seconds=max_seconds,
            warmup_requests=warmup_requests,
        )
        for concurrency in concurrencies
    ]


# --------------------------------------------------------------------------- open


def arrival_schedule(
    rate_per_s: float,
    duration_s: float,
    *,
    arrivals: Literal["poisson", "uniform"] = "poisson",
    seed: int = 0,
) -> np.ndarray:
    """Send times in seconds from the start, within ``[0, duration_s)``.

    ``poisson`` draws exponential gaps (independent users, the usual model of
    web traffic, seeded so a run is repeatable); ``uniform`` spaces requests
    exactly ``1 / rate_per_s`` apart.
    """
    check_range("rate_per_s", rate_per_s, 0, MAX_REQUESTS)
    check_range("duration_s", duration_s, 0, MAX_SECONDS)
    expected = rate_per_s * duration_s
    if expected > MAX_REQUESTS:
        raise ValueError(
            f"rate_per_s * duration_s = {expected:g} requests is over the "
            f"{MAX_REQUESTS} a single run may send; lower the rate or the duration"
        )
    if arrivals == "uniform":
        return np.arange(int(np.ceil(expected))) / rate_per_s
    if arrivals != "poisson":
        raise ValueError(f"arrivals={arrivals!r}: use 'poisson' or 'uniform'")
    rng = np.random.default_rng(seed)
    draws = int(expected + 10 * np.sqrt(expected) + 10)  # ample: 10 sigma over
    gaps = rng.exponential(1.0 / rate_per_s, size=draws)
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    return times[times < duration_s][:MAX_REQUESTS]


def run_open_loop(
    send: Send,
    rate_per_s: float,
    *,
    duration_s: float,
    max_in_flight: int = 64,
    arrivals: Literal["poisson", "uniform"] = "poisson",
    seed: int = 0,
) -> LoadResult:
    """Send requests on a fixed schedule, whatever the server does.

    Requests leave at the times :func:`arrival_schedule` gives, on a pool of
    ``max_in_flight`` threads. A request due while ``max_in_flight`` are still
    outstanding is *dropped* and counted, never queued: an unbounded queue in
    the load generator would grow without limit against a slow server.

    Latency is measured from each request's **scheduled** send time, not from
    when a thread got round to sending it. If the generator itself falls behind
    (a busy CPU, a late wake-up), that delay counts against the latency, as it
    would for a real user; measuring from the actual send would hide it, the
    "coordinated omission" that makes closed-loop tools look better than users'
    experience. The run ends once the schedule is done and the requests in
    flight have returned.
    """
    check_range("max_in_flight", max_in_flight, 0, MAX_IN_FLIGHT)
    schedule = arrival_schedule(rate_per_s, duration_s, arrivals=arrivals, seed=seed)
    tally = _Tally()
    slots = threading.BoundedSemaphore(max_in_flight)
    dropped = 0

    def one(due: float) -> None:
        try:
            send()
        except Exception as error:
            tally.fail(error)
        else:
            tally.add_latencies([time.perf_counter() - due])
        finally:
            slots.release()

    started_at, started = time.time(), time.perf_counter()
    with ThreadPoolExecutor(max_in_flight, thread_name_prefix="loadgen") as pool:
        for offset in schedule:
            due = started + float(offset)
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            if slots.acquire(blocking=False):
                pool.submit(one, due)
            else:
                dropped += 1
    duration_s = time.perf_counter() - started
    return tally.result(
        duration_s, started_at, mode="open", rate_per_s=rate_per_s, dropped=dropped
    )
