"""What a load run measured: counts, throughput and latency percentiles.

Part of :mod:`mlsd_lib.serving.loadgen`, introduced in
``notebooks/model_serving.ipynb``. :func:`stage_percentiles` reads the other
side: the milliseconds each stage took inside the server, as its answers
reported them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

#: How many error messages a result keeps; the count of failures is always exact.
ERRORS_KEPT = 5

#: The percentiles perf_analyzer reports, in the order tables and plots show them.
PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True)
class LoadResult:
    """What one run measured: counts, wall time and every successful latency.

    Latency statistics cover successful requests only, as perf_analyzer's do;
    ``throughput_rps`` is successes per second of wall time. ``count`` is every
    request that completed (successes and failures); ``dropped`` counts open-loop
    requests never sent because ``max_in_flight`` were already outstanding.
    """

    mode: Literal["closed", "open"]
    count: int
    failures: int
    duration_s: float
    latencies_ms: np.ndarray = field(repr=False, compare=False)
    errors_sample: tuple[str, ...] = ()
    concurrency: int | None = None
    rate_per_s: float | None = None
    dropped: int = 0
    started_at: float = 0.0

    @property
    def successes(self) -> int:
        return self.count - self.failures

    @property
    def ended_at(self) -> float:
        """Wall-clock end (seconds since the epoch), to line up with server logs."""
        return self.started_at + self.duration_s

    @property
    def throughput_rps(self) -> float:
        return self.successes / self.duration_s if self.duration_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        """The q-th latency percentile (numpy's linear rule), NaN if none succeeded."""
        if self.latencies_ms.size == 0:
            return float("nan")
        return float(np.percentile(self.latencies_ms, q))

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p90_ms(self) -> float:
        return self.percentile_ms(90)

    @property
    def p95_ms(self) -> float:
        return self.percentile_ms(95)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def max_ms(self) -> float:
        return self.percentile_ms(100)

    @property
    def mean_ms(self) -> float:
        if self.latencies_ms.size == 0:
            return float("nan")
        return float(self.latencies_ms.mean())

    def as_row(self) -> dict[str, Any]:
        """One flat dict per run, ready for ``pandas.DataFrame(rows)``."""
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "rate_per_s": self.rate_per_s,
            "count": self.count,
            "failures": self.failures,
            "dropped": self.dropped,
            "duration_s": self.duration_s,
            "throughput_rps": self.throughput_rps,
            "mean_ms": self.mean_ms,
            **{f"p{q}_ms": self.percentile_ms(q) for q in PERCENTILES},
            "max_ms": self.max_ms,
        }


def format_table(results: Iterable[LoadResult]) -> str:
    """Summarize runs one line each, in perf_analyzer's words and units (usec).

    Printing the same shape as perf_analyzer lets a reader compare this book's
    numbers with the ones Triton's own tool prints against the same server.
    """
    lines = ["Inferences/Second vs. Client p50/p90/p95/p99 Latency"]
    for result in results:
        if result.mode == "closed":
            head = f"Concurrency: {result.concurrency}"
        else:
            head = f"Request rate: {result.rate_per_s:g}"
        usec = ", ".join(f"p{q} {_usec(result.percentile_ms(q))}" for q in PERCENTILES)
        line = (
            f"{head}, throughput: {result.throughput_rps:.1f} infer/sec, "
            f"latency {usec} usec"
        )
        if result.failures:
            line += f", failures: {result.failures}/{result.count}"
        if result.dropped:
            line += f", dropped: {result.dropped}"
        lines.append(line)
    return "\n".join(lines)


def stage_percentiles(
    samples: Mapping[str, np.ndarray], q: float, names: Sequence[str] | None = None
) -> dict[str, float]:
    """The ``q``-th percentile of each stage's milliseconds in ``samples``
    (stage name to values; non-finite values skipped), to 3 decimals; NaN for
    a stage with none. ``names``: those stages (default: all, in order)."""
    out = {}
    for name in names or list(samples):
        values = np.asarray(samples.get(name, []), dtype=np.float64)
        values = values[np.isfinite(values)]
        out[name] = (
            round(float(np.percentile(values, q)), 3) if values.size else float("nan")
        )
    return out


def _usec(ms: float) -> str:
    return "nan" if np.isnan(ms) else str(round(ms * 1000))


class _Tally:
    """Thread-safe collector of latencies, failure counts and a few error texts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latencies_s: list[float] = []
        self.failures = 0
        self.errors: list[str] = []

    def add_latencies(self, latencies_s: list[float]) -> None:
        with self._lock:
            self.latencies_s.extend(latencies_s)

    def fail(self, error: BaseException) -> None:
        with self._lock:
            self.failures += 1
            if len(self.errors) < ERRORS_KEPT:
                self.errors.append(f"{type(error).__name__}: {error}"[:300])

    def result(self, duration_s: float, started_at: float, **kwargs: Any) -> LoadResult:
        return LoadResult(
            count=len(self.latencies_s) + self.failures,
            failures=self.failures,
            duration_s=duration_s,
            latencies_ms=np.asarray(self.latencies_s, dtype=np.float64) * 1000.0,
            errors_sample=tuple(self.errors),
            started_at=started_at,
            **kwargs,
        )
