"""Matplotlib figures for evaluation and monitoring, built without pyplot state.

Introduced in ``casestudies/ad_click/04_evaluation.ipynb`` and
``casestudies/ad_click/06_monitoring_and_retraining.ipynb``. Each helper returns a
:class:`matplotlib.figure.Figure` made directly (not through ``pyplot``), so it
works under the Agg backend in tests, never pops up a window, and a notebook shows
it once by leaving it as the cell's last expression. Nothing random: the same
inputs draw the same figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from mlsd_lib.evaluation.calibration import ReliabilityDiagram

_STATUS_COLOURS = {"ok": "tab:green", "warn": "tab:orange", "alert": "tab:red"}


def reliability_figure(
    diagrams: ReliabilityDiagram | Mapping[str, ReliabilityDiagram],
    *,
    title: str = "Reliability diagram",
    log_scale: bool = False,
) -> Figure:
    """Observed rate against mean prediction per bin, with Wilson error bars.

    One line per model (pass a mapping name → diagram), plus the diagonal
    ``y = x`` of perfect calibration. ``log_scale`` helps with CTRs near 0.
    """
    if isinstance(diagrams, ReliabilityDiagram):
        diagrams = {"model": diagrams}
    fig = Figure(figsize=(5, 5), layout="constrained")
    ax = fig.add_subplot()
    upper = max(
        max(float(d.mean_predicted.max()), float(d.ci_high.max()))
        for d in diagrams.values()
    )
    lower = 1e-4 if log_scale else 0.0
    ax.plot([lower, upper], [lower, upper], "k--", lw=1, label="perfectly calibrated")
    for name, d in diagrams.items():
        ax.errorbar(
            d.mean_predicted,
            d.observed_rate,
            yerr=[d.observed_rate - d.ci_low, d.ci_high - d.observed_rate],
            marker="o",
            capsize=2,
            label=f"{name} (ECE {d.ece:.4f})",
        )
    if log_scale:
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.set_title(title)
    ax.legend(loc="upper left")
    return fig


def gap_to_best_figure(
    metric_by_model: Mapping[str, float],
    *,
    best: float | None = None,
    metric_name: str = "NE",
    best_label: str = "Bayes (true probabilities)",
    title: str | None = None,
) -> Figure:
    """One bar per model, with a horizontal line at the best achievable value.

    In a simulated world the true click probabilities are known, so the NE of
    predicting them is the floor no model can beat: the bars' distance to that
    line is what is left to gain, in the units the model is judged by.
    """
    fig = Figure(
        figsize=(max(4, 1.2 * len(metric_by_model) + 2), 4), layout="constrained"
    )
    ax = fig.add_subplot()
    names = list(metric_by_model)
    values = [metric_by_model[n] for n in names]
    bars = ax.bar(names, values, color="tab:blue")
    ax.bar_label(bars, fmt="%.4f")
    if best is not None:
        ax.axhline(best, color="k", ls="--", lw=1, label=f"{best_label}: {best:.4f}")
        ax.legend(loc="lower right")
    ax.set_ylabel(metric_name)
    low = min([*values, *([best] if best is not None else [])])
    ax.set_ylim(bottom=max(0.0, low - 0.1 * abs(low)))
    ax.set_title(title or f"{metric_name} by model (lower is better)")
    return fig


def metric_over_days_figure(
    days: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    metric_name: str = "NE",
    threshold: float | None = None,
    retrain_days: Mapping[str, Sequence[float]] | None = None,
    title: str | None = None,
) -> Figure:
    """A metric per day for several models or retraining schedules.

    ``threshold`` draws a horizontal line (an alert level); ``retrain_days``
    marks, per series, the days it retrained (drawn as markers on its line).
    """
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    x = np.asarray(days, dtype=np.float64)
    for name, values in series.items():
        y = np.asarray(values, dtype=np.float64)
        if y.shape != x.shape:
            raise ValueError(f"series {name!r} has {len(y)} values for {len(x)} days.")
        (line,) = ax.plot(x, y, label=name)
        marks = (retrain_days or {}).get(name)
        if marks:
            at = np.isin(x, np.asarray(marks, dtype=np.float64))
            ax.plot(
                x[at],
                y[at],
                "v",
                color=line.get_color(),
                ms=8,
                label=f"{name}: retrain",
            )
    if threshold is not None:
        ax.axhline(threshold, color="tab:red", ls="--", lw=1, label="threshold")
    ax.set_xlabel("day")
    ax.set_ylabel(metric_name)
    ax.set_title(title or f"{metric_name} per day")
    ax.legend(loc="best")
    return fig


def psi_figure(
    psi_by_feature: Mapping[str, float],
    *,
    warn: float = 0.1,
    alert: float = 0.25,
    title: str = "Population stability index per feature",
) -> Figure:
    """Horizontal bars of PSI per feature, coloured ok / warn / alert."""
    fig = Figure(figsize=(6, 0.4 * len(psi_by_feature) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    names = list(psi_by_feature)
    values = [psi_by_feature[n] for n in names]
    colours = [
        _STATUS_COLOURS["alert" if v > alert else "warn" if v > warn else "ok"]
        for v in values
    ]
    ax.barh(names, values, color=colours)
    ax.axvline(warn, color="tab:orange", ls="--", lw=1, label=f"warn ({warn})")
    ax.axvline(alert, color="tab:red", ls="--", lw=1, label=f"alert ({alert})")
    ax.invert_yaxis()
    ax.set_xlabel("PSI")
    ax.set_title(title)
    ax.legend(loc="lower right")
    return fig
