"""Latency against throughput, and the percentiles of one run.

Part of :mod:`mlsd_lib.serving.loadgen`, introduced in
``notebooks/model_serving.ipynb``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from mlsd_lib.serving.loadgen.results import PERCENTILES, LoadResult


def plot_latency_throughput(results: Sequence[LoadResult]) -> Figure:
    """p50 and p99 latency against throughput, one point per concurrency level.

    The knee of this curve is the operating point a capacity plan picks: past
    it, more concurrency buys little throughput and a lot of tail latency.
    Returns a Figure (not drawn through pyplot), which a notebook displays.
    """
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    throughput = [r.throughput_rps for r in results]
    axes.plot(throughput, [r.p99_ms for r in results], "o-", label="p99")
    axes.plot(throughput, [r.p50_ms for r in results], "s--", label="p50", alpha=0.7)
    for result in results:
        label = (
            f"c={result.concurrency}"
            if result.mode == "closed"
            else f"{result.rate_per_s:g}/s"
        )
        axes.annotate(
            label,
            (result.throughput_rps, result.p99_ms),
            textcoords="offset points",
            xytext=(4, 6),
            fontsize=8,
        )
    axes.set_xlabel("throughput (requests/s)")
    axes.set_ylabel("latency (ms)")
    axes.set_title("Latency vs throughput")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure


def plot_percentiles(result: LoadResult) -> Figure:
    """The latency distribution of one run as a percentile curve, tail stretched.

    The x axis is "nines" (90 %, 99 %, 99.9 %...) on a log scale, so the tail
    that averages hide gets most of the width; p50/p90/p95/p99 are marked.
    """
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    if result.latencies_ms.size:
        q = np.linspace(0, 99.99, 400)
        axes.plot(
            100 / (100 - q), np.percentile(result.latencies_ms, q), label="latency"
        )
        for p in PERCENTILES:
            value = result.percentile_ms(p)
            axes.plot(100 / (100 - p), value, "o", color="C1")
            axes.annotate(
                f"p{p} {value:.1f} ms",
                (100 / (100 - p), value),
                textcoords="offset points",
                xytext=(4, -12),
                fontsize=8,
            )
    ticks = [0, 50, 90, 99, 99.9, 99.99]
    axes.set_xscale("log")
    axes.set_xticks([100 / (100 - t) for t in ticks], [f"{t:g}%" for t in ticks])
    axes.set_xlabel("percentile")
    axes.set_ylabel("latency (ms)")
    axes.set_title(f"Latency percentiles ({result.successes} requests)")
    axes.grid(alpha=0.3)
    return figure
