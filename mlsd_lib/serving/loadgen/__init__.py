"""A small load generator, bounded and aimed only at loopback.

Introduced in ``notebooks/model_serving.ipynb``, where it measures the gateway and
Triton the way NVIDIA's ``perf_analyzer`` does: throughput and p50/p90/p95/p99
latency per concurrency level, then a latency-vs-throughput curve.

Two ways to offer load, because they answer different questions:

* **Closed loop** (:func:`~mlsd_lib.serving.loadgen.loops.run_closed_loop`,
  :func:`~mlsd_lib.serving.loadgen.loops.sweep`): N workers, each sending its
  next request as soon as the previous one returns. This finds the capacity
  of a service ("how many requests per second at 8 in flight?"), but a slow
  server slows the senders down, so it never shows a queue building up.
* **Open loop** (:func:`~mlsd_lib.serving.loadgen.loops.run_open_loop`):
  requests leave on a fixed schedule whatever the server does, as real users'
  requests do. This shows what latency users see at a given arrival rate,
  including the queueing a closed loop hides.

House rules, enforced here rather than left to the caller: every URL must be on
loopback (127.0.0.0/8 or ::1, or the name ``localhost``), every run is bounded in
both request count and time, and
:func:`~mlsd_lib.serving.loadgen.targets.wait_until_ready` checks the service's
readiness endpoint before any load is sent ("health before predict").

Load is offered through a ``send`` callable that performs one request and raises
on failure, so the same loops drive HTTP
(:func:`~mlsd_lib.serving.loadgen.senders.http_sender`), a Triton client or an
in-process call. A ``send`` must itself be bounded in time (the HTTP sender
has a timeout): a call that never returns cannot be interrupted from outside.

The package, one concept per module: :mod:`~mlsd_lib.serving.loadgen.limits`
(the bounds), :mod:`~mlsd_lib.serving.loadgen.targets` (loopback and
readiness), :mod:`~mlsd_lib.serving.loadgen.results` (what a run measured),
:mod:`~mlsd_lib.serving.loadgen.loops` (closed and open loops),
:mod:`~mlsd_lib.serving.loadgen.senders` (HTTP ``send`` callables),
:mod:`~mlsd_lib.serving.loadgen.rotating` (one body per request, in turn) and
:mod:`~mlsd_lib.serving.loadgen.plots`.
"""

from mlsd_lib.serving.loadgen.limits import (
    MAX_CONCURRENCY,
    MAX_IN_FLIGHT,
    MAX_REQUESTS,
    MAX_SECONDS,
    LoadLimitError,
    Send,
)
from mlsd_lib.serving.loadgen.loops import (
    arrival_schedule,
    run_closed_loop,
    run_open_loop,
    sweep,
)
from mlsd_lib.serving.loadgen.plots import plot_latency_throughput, plot_percentiles
from mlsd_lib.serving.loadgen.results import (
    ERRORS_KEPT,
    PERCENTILES,
    LoadResult,
    format_table,
)
from mlsd_lib.serving.loadgen.rotating import NoBodies, RotatingBodySender
from mlsd_lib.serving.loadgen.senders import (
    HttpSender,
    LeanHttpSender,
    LeanResponse,
    RequestFailed,
    http_sender,
)
from mlsd_lib.serving.loadgen.targets import (
    NotLoopback,
    ServiceNotReady,
    check_loopback,
    wait_until_ready,
)

__all__ = [
    "ERRORS_KEPT",
    "MAX_CONCURRENCY",
    "MAX_IN_FLIGHT",
    "MAX_REQUESTS",
    "MAX_SECONDS",
    "PERCENTILES",
    "HttpSender",
    "LeanHttpSender",
    "LeanResponse",
    "LoadLimitError",
    "LoadResult",
    "NoBodies",
    "NotLoopback",
    "RequestFailed",
    "RotatingBodySender",
    "Send",
    "ServiceNotReady",
    "arrival_schedule",
    "check_loopback",
    "format_table",
    "http_sender",
    "plot_latency_throughput",
    "plot_percentiles",
    "run_closed_loop",
    "run_open_loop",
    "sweep",
    "wait_until_ready",
]
