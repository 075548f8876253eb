"""A failover drill's timeline: when each read ran and what it got, around the kill.

Introduced in ``notebooks/scaling_out.ipynb``.
:func:`~mlsd_lib.cluster_drill.failover_drill` returns totals (reads, failed,
degraded, lost acknowledged writes), which is what a test asserts. A reader
also wants to *see* the failover: reads answered in full, then degraded while
the dead master's slots have no master, then whole again once its replica is
promoted. The drill is left as it is (its counts are the benchmark's); instead
its collaborators are wrapped:

* :class:`RecordingStore` stands in for the store the drill reads and notes, for
  every read, when it started, how long it took, and whether it was degraded or
  raised (it re-raises: the drill still counts it);
* :class:`RecordingCluster` stands in for the cluster and notes when the drill
  killed the master and when the cluster was whole again.

:func:`drill_timeline` bins the reads by time from the kill and
:func:`plot_failover_timeline` draws them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlsd_lib.errors import MlsdError

__all__ = [
    "RecordingCluster",
    "RecordingStore",
    "TimelineError",
    "drill_timeline",
    "plot_failover_timeline",
]


class TimelineError(MlsdError, ValueError):
    """The timeline was asked for before the drill recorded a kill."""


@dataclass(frozen=True)
class _Read:
    start: float
    seconds: float
    outcome: str  # "full", "degraded" or "failed"


class RecordingStore:
    """Delegates to ``store``; records every ``read``."""

    def __init__(self, store: object, clock: Callable[[], float] = time.monotonic):
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self.reads: list[_Read] = []

    def read(self, *args: object, **kwargs: object) -> object:
        start = self._clock()
        try:
            result = self._store.read(*args, **kwargs)
        except Exception:
            self._note(start, "failed")
            raise
        outcome = "degraded" if getattr(result, "degraded", False) else "full"
        self._note(start, outcome)
        return result

    def _note(self, start: float, outcome: str) -> None:
        with self._lock:
            self.reads.append(_Read(start, self._clock() - start, outcome))

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)


class RecordingCluster:
    """Delegates to ``cluster``; records when a node was killed and when the
    cluster was whole again (``wait_failover`` returned)."""

    def __init__(self, cluster: object, clock: Callable[[], float] = time.monotonic):
        self._cluster = cluster
        self._clock = clock
        self.killed_at: float | None = None
        self.recovered_at: float | None = None

    def kill(self, port: int) -> None:
        self.killed_at = self._clock()
        self._cluster.kill(port)

    def wait_failover(self, timeout_s: float = 30.0) -> float:
        waited = self._cluster.wait_failover(timeout_s)
        self.recovered_at = self._clock()
        return waited

    def __getattr__(self, name: str) -> object:
        return getattr(self._cluster, name)


def drill_timeline(
    store: RecordingStore, cluster: RecordingCluster, bin_s: float = 0.1
) -> pd.DataFrame:
    """Reads per ``bin_s`` bin by outcome, ``t_s`` the bin's start in seconds
    from the kill (negative before it), with each bin's worst read latency."""
    if cluster.killed_at is None:
        raise TimelineError(
            "no kill was recorded: run the drill with the RecordingCluster as its "
            "cluster before asking for its timeline."
        )
    if bin_s <= 0:
        raise TimelineError(f"bin_s is {bin_s}; give a bin width > 0 seconds.")
    frame = pd.DataFrame(
        {
            "t": [r.start - cluster.killed_at for r in store.reads],
            "ms": [r.seconds * 1e3 for r in store.reads],
            "outcome": [r.outcome for r in store.reads],
        }
    )
    frame["t_s"] = np.floor(frame.t / bin_s) * bin_s
    counts = (
        frame.groupby(["t_s", "outcome"])
        .size()
        .unstack(fill_value=0)
        .reindex(columns=["full", "degraded", "failed"], fill_value=0)
    )
    counts["max_ms"] = frame.groupby("t_s").ms.max()
    return counts.reset_index()


def plot_failover_timeline(
    timeline: pd.DataFrame, recovered_s: float | None = None
) -> Figure:
    """Stacked reads per bin (full, degraded, failed), the kill at 0 and the
    cluster whole again at ``recovered_s``."""
    fig = Figure(figsize=(8, 3.2))
    ax = fig.subplots()
    width = float(np.diff(timeline.t_s).min()) if len(timeline) > 1 else 0.1
    bottom = np.zeros(len(timeline))
    colors = {"full": "tab:green", "degraded": "tab:orange", "failed": "tab:red"}
    for outcome, color in colors.items():
        ax.bar(
            timeline.t_s,
            timeline[outcome],
            width=width,
            bottom=bottom,
            align="edge",
            color=color,
            label=f"{outcome} ({int(timeline[outcome].sum())})",
        )
        bottom += timeline[outcome].to_numpy()
    top = float(bottom.max()) if len(bottom) else 1.0
    ax.set_ylim(0, top * 1.45)
    ax.axvline(0, color="black", linestyle="--", linewidth=1)
    ax.text(0, top * 1.08, " master killed", fontsize=8)
    if recovered_s is not None:
        ax.axvline(recovered_s, color="tab:blue", linestyle="--", linewidth=1)
        ax.text(recovered_s, top * 1.2, " replica promoted", fontsize=8)
    ax.set_xlabel("seconds from the kill")
    ax.set_ylabel(f"reads per {width:g} s")
    ax.set_title("Reads while a master dies and its replica takes over")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    return fig
