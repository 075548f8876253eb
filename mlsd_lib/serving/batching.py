"""Measure a model server directly: what dynamic batching buys at each concurrency.

Introduced in ``notebooks/model_serving.ipynb``. Triton's dynamic batcher merges
requests that arrive together into one model call, trading a little waiting
for fewer, larger calls. Whether that pays depends on how much of a call's cost
is per call (Python-backend hops, kernel launches) rather than per row. The
honest way to see it is to bind the same model twice, with and without the
batcher, and sweep concurrency against both from real clients, as
``perf_analyzer`` does; :func:`compare_batching` does exactly that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from mlsd_lib.serving.loadgen import LoadResult, sweep
from mlsd_lib.serving.model_server import ModelServer


def model_sender(server: ModelServer, model: str, inputs: Mapping[str, np.ndarray]):
    """A loadgen ``send``: one ``server.infer(model, inputs)``, raising on failure.

    The Triton server keeps one client per calling thread, so a closed loop's N
    worker threads really are N concurrent clients.
    """
    arrays = {name: np.ascontiguousarray(value) for name, value in inputs.items()}

    def send() -> None:
        server.infer(model, arrays)

    return send


def compare_batching(
    server: ModelServer,
    models: Mapping[str, str],
    inputs: Mapping[str, np.ndarray],
    *,
    concurrencies: Sequence[int] = (1, 2, 4, 8),
    max_requests: int = 400,
    max_seconds: float = 2.0,
    warmup_requests: int = 20,
) -> dict[str, list[LoadResult]]:
    """Sweep each of ``models`` (label -> bound model name) with the same inputs."""
    return {
        label: sweep(
            model_sender(server, name, inputs),
            concurrencies,
            max_requests=max_requests,
            max_seconds=max_seconds,
            warmup_requests=warmup_requests,
        )
        for label, name in models.items()
    }


def speedup_at(results: Mapping[str, list[LoadResult]], concurrency: int) -> float:
    """Throughput of the first configuration over the second at ``concurrency``."""
    first, second = (
        next(r for r in runs if r.concurrency == concurrency)
        for runs in results.values()
    )
    return first.throughput_rps / second.throughput_rps


def plot_batching(results: Mapping[str, list[LoadResult]]) -> Figure:
    """p99 latency against throughput for each configuration, annotated by c=N."""
    figure = Figure(figsize=(6.5, 4), layout="constrained")
    axes = figure.add_subplot()
    for (label, runs), marker in zip(results.items(), "os^v", strict=False):
        axes.plot(
            [r.throughput_rps for r in runs],
            [r.p99_ms for r in runs],
            f"{marker}-",
            label=f"{label} (p99)",
        )
        for run in runs:
            axes.annotate(
                f"c={run.concurrency}",
                (run.throughput_rps, run.p99_ms),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=7,
            )
    axes.set_xlabel("throughput (requests/s)")
    axes.set_ylabel("p99 latency (ms)")
    axes.set_title("Triton with and without dynamic batching")
    axes.grid(alpha=0.3)
    axes.legend()
    return figure
