"""Where a feed request's time goes, drawn against the page's stage budgets.

Introduced in ``casestudies/recommender/06_serving.ipynb`` (panel B's p99 column). The
figure is made without ``pyplot`` (a :class:`matplotlib.figure.Figure`, as
:mod:`mlsd_lib.evaluation.plots` does), so it draws the same under Agg, in
tests and in a notebook. A table of p99s answers "within budget?"; the plot
answers "by how much, and how wide is each stage's spread?", which decides
where an engineer looks first: a stage whose box sits near its budget line,
or one with a long tail.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from mlsd_lib.errors import MlsdError

__all__ = ["StagePlotError", "plot_stage_latency"]


class StagePlotError(MlsdError, ValueError):
    """Samples the stage plot cannot draw; says which."""


def plot_stage_latency(
    samples: Mapping[str, Mapping[str, np.ndarray]],
    budgets_ms: Mapping[str, float],
    *,
    title: str = "Feed request, stage by stage",
) -> Figure:
    """One horizontal box per stage and load level, on a log axis, with each
    stage's p99 budget as a red bar and its measured p99 as a dot.

    ``samples`` maps a load level (``"1 client"``) to each stage's
    milliseconds (:func:`~mlsd_lib.recsys.feed_load.stage_samples`); stages
    are drawn in the order of the first level, top to bottom. Boxes span the
    quartiles, whiskers the 1st to 99th percentile.
    """
    if not samples:
        raise StagePlotError("no load level to draw: pass {'1 client': {...}, ...}.")
    levels = list(samples)
    stages = list(samples[levels[0]])
    empty = [
        (level, stage)
        for level in levels
        for stage in stages
        if np.asarray(samples[level].get(stage, ())).size == 0
    ]
    if empty:
        raise StagePlotError(
            f"no samples for {empty[:3]}: every level needs every stage "
            "(a level whose requests all degraded has none)."
        )
    figure = Figure(figsize=(7.5, 0.55 * len(stages) * len(levels) + 1.6))
    figure.set_layout_engine("constrained")
    axes = figure.add_subplot()
    height = 0.8 / len(levels)
    colours = [f"C{k}" for k in range(len(levels))]
    for k, level in enumerate(levels):
        positions = [
            len(stages) - 1 - s + (len(levels) - 1 - 2 * k) * height / 2
            for s in range(len(stages))
        ]
        data = [np.asarray(samples[level][stage], dtype=float) for stage in stages]
        boxes = axes.boxplot(
            data,
            positions=positions,
            widths=height * 0.85,
            orientation="horizontal",
            whis=(1, 99),
            showfliers=False,
            patch_artist=True,
            manage_ticks=False,
        )
        for box in boxes["boxes"]:
            box.set_facecolor(colours[k])
            box.set_alpha(0.55)
        for median in boxes["medians"]:
            median.set_color("black")
        axes.plot(
            [float(np.percentile(d, 99)) for d in data],
            positions,
            "o",
            color=colours[k],
            markeredgecolor="black",
            markersize=4,
        )
    for s, stage in enumerate(stages):
        if stage in budgets_ms:
            y = len(stages) - 1 - s
            axes.plot([budgets_ms[stage]] * 2, [y - 0.45, y + 0.45], "r-", lw=2.5)
    axes.set_yticks(range(len(stages)), list(reversed(stages)))
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axes.set_xlabel("milliseconds inside the gateway (log scale)")
    axes.grid(axis="x", alpha=0.3, which="both")
    axes.set_title(title)
    handles = [
        Line2D([], [], color=colours[k], lw=8, alpha=0.55, label=level)
        for k, level in enumerate(levels)
    ]
    handles += [
        Line2D([], [], color="gray", marker="o", ls="", markeredgecolor="black",
               label="measured p99"),
        Line2D([], [], color="red", lw=2.5, label="p99 budget"),
    ]  # fmt: skip
    axes.legend(handles=handles, fontsize=8, loc="upper right")
    return figure
