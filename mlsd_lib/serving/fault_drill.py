"""Failure drills: bounded load, a fault at a planned moment, outcomes per bucket.

Introduced in ``notebooks/failure_drills.ipynb``. A runbook claims "if Redis
dies, the gateway degrades instead of failing"; a drill proves it by doing it:
keep traffic flowing, break a real dependency at a known moment, repair it
later, and count what the clients saw in each 100 ms. Three pieces:

* :class:`DrillLoad`: the paced load of
  :class:`~mlsd_lib.serving.gateway.traffic.PacedBodyLoad`, which also keeps
  what a drill needs of each answer and a load test does not: which request
  body it was (to join the answer with its labels later) and the
  ``Retry-After`` header of a 503.
* :func:`run_drill`: the script (load on, fault at ``fault_at_s``, repair at
  ``recover_at_s``, load off at ``duration_s``), marks taken on the same clock
  as the requests.
* :func:`drill_timeline`, :func:`time_to_first` and :func:`plot_drill`: counts
  per time bucket and outcome kind (:func:`outcome_kind`), how long until the
  first answer of a kind after a mark, and the stacked-bar picture.

Chaos tools (Chaos Monkey, Gremlin, LitmusChaos) inject faults at random in a
fleet; a drill in a book wants the opposite, one fault at a known moment, so
the timeline can be read against it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.gateway.traffic import Outcome, PacedBodyLoad

#: Outcome kinds in the order a timeline stacks them (best first).
OUTCOME_KINDS: tuple[str, ...] = ("full", "degraded", "fallback", "503", "failed")
#: Their colours: green for full answers, amber/blue for the two kinds of
#: partial answer, red for 503, black for anything else.
KIND_COLOURS: dict[str, str] = {
    "full": "#2ca02c",
    "degraded": "#ff7f0e",
    "fallback": "#1f77b4",
    "503": "#d62728",
    "failed": "#000000",
}


class DrillScheduleError(MlsdError, ValueError):
    """A drill's moments are out of order (fault, repair, end)."""


@dataclass
class DrillOutcome(Outcome):
    """A :class:`~mlsd_lib.serving.gateway.traffic.Outcome` plus the request
    body's index and ``Retry-After``."""

    index: int = -1
    retry_after: str | None = None


def outcome_kind(outcome: Outcome) -> str:
    """``full``, ``degraded`` (default features), ``fallback`` (the fallback
    model answered), ``503`` or ``failed`` (no answer, or another status).

    A fallback answer with degraded features counts as ``fallback``: the model
    is the bigger departure from normal.
    """
    if outcome.status == 200:
        if outcome.body.get("fallback"):
            return "fallback"
        return "degraded" if outcome.body.get("degraded") else "full"
    return "503" if outcome.status == 503 else "failed"


class DrillLoad(PacedBodyLoad):
    """:class:`~mlsd_lib.serving.gateway.traffic.PacedBodyLoad` to ``path``,
    keeping :class:`DrillOutcome` records (body index, ``Retry-After``).

    Bounded like every load in this book (``max_requests``, ``max_seconds``),
    loopback only, each client paced by ``pace_s``.
    """

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        bodies: Sequence[Mapping[str, Any]],
        *,
        path: str = "/score",
        clients: int = 3,
        pace_s: float = 0.01,
        timeout_s: float = 5.0,
        max_requests: int = 5_000,
        max_seconds: float = 30.0,
    ) -> None:
        super().__init__(
            url, headers, bodies, clients=clients, pace_s=pace_s,
            timeout_s=timeout_s, max_requests=max_requests, max_seconds=max_seconds,
        )  # fmt: skip
        self.path = path

    def outcome(
        self,
        position: int,
        sent_at: float,
        answer: httpx.Response | None,
        error: str = "",
    ) -> DrillOutcome:
        """The base record, plus the body's position and ``Retry-After``."""
        base = super().outcome(position, sent_at, answer, error)
        return DrillOutcome(
            base.sent_at,
            base.latency_s,
            base.status,
            base.body,
            base.error,
            index=position,
            retry_after=None if answer is None else answer.headers.get("retry-after"),
        )


@dataclass
class DrillRun:
    """What a drill recorded: every outcome, and the marks on the same clock.

    ``origin`` is when the load started; ``marks`` maps a name ("fault",
    "repair started", "recovered") to its :func:`time.perf_counter` value.
    """

    outcomes: list[DrillOutcome]
    origin: float
    marks: dict[str, float] = field(default_factory=dict)

    def seconds(self, name: str) -> float:
        """Mark ``name`` in seconds since the load started."""
        return self.marks[name] - self.origin

    def kinds(self) -> dict[str, int]:
        """How many requests ended in each :func:`outcome_kind`."""
        counts = dict.fromkeys(OUTCOME_KINDS, 0)
        for outcome in self.outcomes:
            counts[outcome_kind(outcome)] += 1
        return counts


def run_drill(
    load: DrillLoad,
    fault: Callable[[], object],
    *,
    fault_at_s: float,
    duration_s: float,
    recover: Callable[[], object] | None = None,
    recover_at_s: float | None = None,
    observe_after_repair_s: float = 0.5,
) -> DrillRun:
    """Run ``load`` for ``duration_s``; call ``fault()`` at ``fault_at_s`` and
    ``recover()`` at ``recover_at_s`` (seconds after the load starts).

    Marks: ``fault`` (when the fault call returned: the dependency is down),
    ``repair started`` and ``recovered`` (before and after ``recover()``).
    ``recover`` must come with ``recover_at_s`` and fall between the fault and
    the end. A repair that runs late (a slow restart on a busy machine) still
    gets ``observe_after_repair_s`` of load after it, past ``duration_s`` if
    need be, so that the recovery is always on the timeline.
    """
    end_of_repair = recover_at_s if recover_at_s is not None else fault_at_s
    if (recover is None) != (recover_at_s is None):
        raise DrillScheduleError(
            "pass recover and recover_at_s together (or neither, for a fault that "
            "is not repaired during the drill)."
        )
    if not 0 < fault_at_s <= end_of_repair < duration_s:
        raise DrillScheduleError(
            f"a drill needs 0 < fault_at_s <= recover_at_s < duration_s; got "
            f"fault_at_s={fault_at_s}, recover_at_s={recover_at_s}, "
            f"duration_s={duration_s}."
        )
    marks: dict[str, float] = {}
    with load:
        origin = time.perf_counter()
        _sleep_until(origin + fault_at_s)
        fault()
        marks["fault"] = time.perf_counter()
        if recover is not None and recover_at_s is not None:
            _sleep_until(origin + recover_at_s)
            marks["repair started"] = time.perf_counter()
            recover()
            marks["recovered"] = time.perf_counter()
        _sleep_until(
            max(origin + duration_s, marks["recovered"] + observe_after_repair_s)
            if "recovered" in marks
            else origin + duration_s
        )
    with load._lock:
        outcomes = sorted(load.outcomes, key=lambda o: o.sent_at)
    return DrillRun(outcomes, origin, marks)  # type: ignore[arg-type]


def _sleep_until(moment: float) -> None:
    pause = moment - time.perf_counter()
    if pause > 0:
        threading.Event().wait(pause)


def drill_timeline(run: DrillRun, bucket_s: float = 0.1) -> pd.DataFrame:
    """Requests per ``bucket_s`` by the time they were sent, one column per
    outcome kind (:data:`OUTCOME_KINDS`); the index is the bucket's start in
    seconds since the load started."""
    if bucket_s <= 0:
        raise DrillScheduleError(f"bucket_s must be positive, got {bucket_s}.")
    sent = np.array([o.sent_at - run.origin for o in run.outcomes], dtype=float)
    kinds = np.array([outcome_kind(o) for o in run.outcomes], dtype=object)
    buckets = np.floor(np.clip(sent, 0.0, None) / bucket_s).astype(int)
    width = int(buckets.max()) + 1 if len(buckets) else 0
    columns = {
        kind: np.bincount(buckets[kinds == kind], minlength=width)
        for kind in OUTCOME_KINDS
    }
    index = pd.Index(np.round(np.arange(width) * bucket_s, 6), name="sent at (s)")
    return pd.DataFrame(columns, index=index)


def time_to_first(run: DrillRun, mark: str, kind: str) -> float | None:
    """Seconds from mark ``mark`` until the first request *sent after it* got an
    answer of ``kind``; None if none did."""
    if kind not in OUTCOME_KINDS:
        raise DrillScheduleError(
            f"unknown outcome kind {kind!r}; kinds are {list(OUTCOME_KINDS)}."
        )
    moment = run.marks[mark]
    done = [
        o.done_at
        for o in run.outcomes
        if o.sent_at >= moment and outcome_kind(o) == kind
    ]
    return min(done) - moment if done else None


def plot_drill(
    run: DrillRun,
    timeline: pd.DataFrame,
    *,
    title: str = "",
    axes: Any = None,
) -> Figure | None:
    """Stacked bars of ``timeline`` (requests per bucket by outcome kind), with
    the run's marks as labelled vertical lines. Draws on ``axes`` if given
    (returns None), else on a new figure (returned)."""
    figure = None
    if axes is None:
        figure = Figure(figsize=(7, 3), layout="constrained")
        axes = figure.add_subplot()
    width = float(timeline.index[1] - timeline.index[0]) if len(timeline) > 1 else 0.1
    bottom = np.zeros(len(timeline))
    for kind in OUTCOME_KINDS:
        counts = timeline[kind].to_numpy()
        if counts.any():
            axes.bar(
                timeline.index + width / 2, counts, width=width, bottom=bottom,
                color=KIND_COLOURS[kind], label=kind, linewidth=0,
            )  # fmt: skip
            bottom = bottom + counts
    for index, name in enumerate(run.marks):
        if name == "repair started":
            continue  # "recovered" follows it within the repair's time
        at = run.seconds(name)
        axes.axvline(at, color="k", linestyle="--", linewidth=1)
        axes.annotate(
            name, (at, 1), xycoords=("data", "axes fraction"),
            xytext=(3, -12 - 11 * (index % 2)), textcoords="offset points", fontsize=8,
        )  # fmt: skip
    axes.set_xlabel("time since the load started (s)")
    axes.set_ylabel(f"requests per {width * 1000:.0f} ms")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return figure
