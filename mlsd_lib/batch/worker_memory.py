"""The peak memory of a worker process during a job, sampled on the worker.

Introduced in ``notebooks/scaling_out.ipynb``. "Does it fit in 2 GB" is
answered per worker: the peak resident set of each worker process while a job
runs. The kernel's own high-water mark (``getrusage``'s ``ru_maxrss``) cannot
say it: a worker process is forked from the process that starts the cluster
before it executes Python afresh, and Linux carries the parent's peak across
that ``exec``, so every worker would report the notebook's size. Instead
:func:`start_sampling` starts a daemon thread in the worker that reads the
process's resident set (psutil) every few milliseconds and keeps the largest
value, and :func:`take_peak_mb` returns it and starts a new interval. Both run
on the workers through ``client.run``; this module imports nothing heavy, so
sampling a pandas job does not pull torch into its worker.
"""

from __future__ import annotations

import threading

import psutil

__all__ = ["start_sampling", "stop_sampling", "take_peak_mb"]

_STATE: dict[str, object] = {"peak": 0, "thread": None}
_LOCK = threading.Lock()


def _sample(interval_s: float) -> None:
    process = psutil.Process()
    stop = _STATE["stop"]
    assert isinstance(stop, threading.Event)
    while not stop.wait(interval_s):
        rss = process.memory_info().rss
        with _LOCK:
            _STATE["peak"] = max(int(_STATE["peak"]), rss)  # type: ignore[call-overload]


def start_sampling(interval_s: float = 0.005) -> bool:
    """Start sampling this process's resident memory (once; later calls are
    no-ops). Returns whether a sampler runs."""
    with _LOCK:
        if _STATE["thread"] is None:
            _STATE["stop"] = threading.Event()
            _STATE["peak"] = psutil.Process().memory_info().rss
            thread = threading.Thread(
                target=_sample, args=(interval_s,), name="rss-sampler", daemon=True
            )
            _STATE["thread"] = thread
            thread.start()
    return True


def take_peak_mb() -> float:
    """The largest resident set (MiB) seen since the last call, then reset to now."""
    rss = psutil.Process().memory_info().rss
    with _LOCK:
        peak = max(int(_STATE["peak"]), rss)  # type: ignore[call-overload]
        _STATE["peak"] = rss
    return peak / 2**20


def stop_sampling() -> bool:
    """Stop the sampler (so the worker exits promptly); True if one ran."""
    with _LOCK:
        thread = _STATE["thread"]
        _STATE["thread"] = None
    if not isinstance(thread, threading.Thread):
        return False
    stop = _STATE["stop"]
    assert isinstance(stop, threading.Event)
    stop.set()
    thread.join()
    return True
