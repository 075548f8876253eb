"""The monitors' panel: four small plots of a recommender's days, thresholds and
the days each alert fired.

Introduced in ``casestudies/recommender/08_monitoring_and_retraining.ipynb`` (step 7,
monitoring). One figure answers the on-call question "what moved, when, and past which
line":
:func:`monitor_panel` draws the daily reports of
:class:`~mlsd_lib.recsys.monitors.FeedMonitor` (its
:meth:`~mlsd_lib.recsys.monitors.FeedMonitor.frame`), one line style per arm
(the release that was served, and any counterfactual arm run on a fork), with

* **input drift**: PSI of the user tower's inputs, with the 0.1 / 0.25 rule;
* **catalogue**: the share of the day's catalogue the served index does not
  hold, and the share of impressions on new items;
* **retrieval recall@K**: against the day's plays and against the truth;
* **concentration**: the top-1 % share of impressions;

each threshold as a dotted line, each alert as a red cross on the day it fired,
the first arm's reference windows shaded, and the events (a launch, a
retrain) as labelled vertical lines. Built on
:class:`matplotlib.figure.Figure` without pyplot, as
:mod:`mlsd_lib.evaluation.plots` is.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from mlsd_lib.errors import MlsdError
from mlsd_lib.monitoring.drift import PSI_ALERT, PSI_WARN

__all__ = ["PANELS", "MonitorPlotError", "monitor_panel"]

#: Each panel's title and the metrics it draws (column names of the frame).
PANELS: dict[str, tuple[str, ...]] = {
    "input drift (PSI vs the release's first days)": (
        "psi_history_genre",
        "psi_sessions_7d",
        "psi_engaged_plays_7d",
    ),
    "catalogue and new items": ("unindexed_share", "new_item_share"),
    "retrieval recall@100": ("recall_plays", "recall_truth"),
    "concentration: top-1% share of impressions": ("top1_share",),
}
_STYLES = ("-", "--", ":", "-.")
_COLOURS = ("tab:blue", "tab:orange", "tab:green")


class MonitorPlotError(MlsdError, ValueError):
    """Frames the panel cannot draw; the message says what is missing."""


def monitor_panel(
    arms: Mapping[str, pd.DataFrame],
    thresholds: Mapping[str, float] | None = None,
    *,
    events: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """The 2 x 2 panel of :data:`PANELS` for each arm's daily frame.

    ``arms`` maps a name to a :meth:`~mlsd_lib.recsys.monitors.FeedMonitor.frame`
    (columns ``day``, the metrics and ``alerts``); the first arm is drawn solid,
    the others dashed. ``thresholds`` (metric -> value) are drawn dotted in the
    metric's colour; ``events`` (label -> day) as vertical lines.
    """
    if not arms:
        raise MonitorPlotError("monitor_panel needs at least one arm's frame.")
    needed = {"day", "alerts", *(m for ms in PANELS.values() for m in ms)}
    for name, frame in arms.items():
        missing = sorted(needed - set(frame.columns))
        if missing:
            raise MonitorPlotError(
                f"arm {name!r} lacks columns {missing}: pass FeedMonitor.frame()."
            )
    thresholds = dict(thresholds or {})
    first = next(iter(arms.values()))
    fig = Figure(figsize=(11, 6.4), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    for ax, (panel, metrics) in zip(axes, PANELS.items(), strict=True):
        for m, metric in enumerate(metrics):
            colour = _COLOURS[m % len(_COLOURS)]
            for a, frame in enumerate(arms.values()):
                style = _STYLES[min(a, len(_STYLES) - 1)]
                ax.plot(
                    frame["day"],
                    frame[metric],
                    style,
                    marker="o",
                    markersize=3,
                    color=colour,
                    label=metric if a == 0 else None,
                )
                fired = (
                    frame["alerts"].str.split(", ").apply(lambda x, m=metric: m in x)
                )
                ax.plot(
                    frame.loc[fired, "day"],
                    frame.loc[fired, metric],
                    "x",
                    color="tab:red",
                    markersize=9,
                    markeredgewidth=2,
                )
            if metric in thresholds:
                ax.axhline(thresholds[metric], color=colour, ls=":", lw=1.2)
        if metrics[0].startswith("psi_"):
            ax.axhline(PSI_WARN, color="grey", ls=":", lw=1)
            ax.axhline(PSI_ALERT, color="tab:red", ls=":", lw=1)
        for index, (label, day) in enumerate((events or {}).items()):
            ax.axvline(day, color="k", ls="--", lw=0.8)
            ax.annotate(
                label, (day, 1), xycoords=("data", "axes fraction"),
                xytext=(-3, -11 - 11 * index), textcoords="offset points",
                fontsize=8, ha="right",
            )  # fmt: skip
        for start, stop in _reference_spans(first):
            ax.axvspan(start - 0.5, stop + 0.5, color="grey", alpha=0.12, lw=0)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(panel, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left")
    for ax in axes[2:]:
        ax.set_xlabel("day")
    if len(arms) > 1:
        names = list(arms)
        note = f"solid: {names[0]}; dashed: {', '.join(names[1:])}"
        note += "; dotted: thresholds; x: an alert fired"
    else:
        note = "dotted: thresholds; x: an alert fired"
    note += "; grey: reference windows"
    fig.suptitle(f"{title}\n{note}" if title else note, fontsize=10)
    return fig


def _reference_spans(frame: pd.DataFrame) -> list[tuple[int, int]]:
    """(first day, last day) of each run of reference days in ``frame``."""
    if "phase" not in frame.columns:
        return []
    days = frame.loc[frame["phase"] == "reference", "day"].to_numpy()
    spans: list[tuple[int, int]] = []
    for day in days:
        if spans and day == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], int(day))
        else:
            spans.append((int(day), int(day)))
    return spans
