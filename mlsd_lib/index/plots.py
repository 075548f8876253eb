"""The recall-latency trade-off of ANN indexes, as one matplotlib figure.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``.
Every approximate index has
a knob (``nprobe``, ``ef_search``) that buys recall with latency; plotting each
kind's sweep on the same axes shows which kind is cheapest at the recall the
system needs, the comparison the retrieval chapter makes. Built without
``pyplot`` state, as :mod:`mlsd_lib.evaluation.plots` is: the function returns a
:class:`~matplotlib.figure.Figure`, which works under Agg in tests.
"""

from __future__ import annotations

from collections.abc import Sequence

from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from mlsd_lib.index.measure import SweepPoint


def plot_recall_latency(
    results: Sequence[SweepPoint],
    *,
    target_recall: float | None = None,
    target_p99_ms: float | None = None,
    steady: bool = True,
    title: str = "Recall against tail latency",
) -> Figure:
    """Recall@k (y) against p99 latency (x, log scale), one line per label.

    Each point is annotated with its parameter value; optional dashed lines
    mark a recall floor and a latency ceiling, so the acceptable region is
    the upper left. ``steady`` plots each point's ``steady_p99_ms`` (the p99
    of each query's fastest pass, see
    :class:`~mlsd_lib.index.measure.LatencyProfile`), else its ``p99_ms``.
    """
    fig = Figure(figsize=(6, 4.5), layout="constrained")
    ax = fig.add_subplot()
    labels = list(dict.fromkeys(point.label for point in results))
    for label in labels:
        points = sorted((p for p in results if p.label == label), key=lambda p: p.value)
        x = [p.steady_p99_ms if steady else p.p99_ms for p in points]
        y = [p.recall for p in points]
        (line,) = ax.plot(x, y, marker="o", label=f"{label} ({points[0].param})")
        for p, latency in zip(points, x, strict=True):
            ax.annotate(
                str(p.value),
                (latency, p.recall),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color=line.get_color(),
            )
    if target_recall is not None:
        ax.axhline(target_recall, color="grey", ls="--", lw=1)
    if target_p99_ms is not None:
        ax.axvline(target_p99_ms, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    which = "steady p99" if steady else "p99"
    ax.set_xlabel(f"{which} latency per query, one thread (ms, log scale)")
    ax.set_ylabel("recall@k against exact search")
    ax.set_title(title)
    ax.legend(loc="best")
    return fig
