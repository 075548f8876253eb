"""Which assumption moves an estimate most: each one halved and doubled (a tornado).

Introduced in ``notebooks/capacity.ipynb``. An estimate built from ten
assumptions is only as good as the one it is most sensitive to, and that is the
one to defend, or to measure first. :func:`tornado` reruns a derivation with
each assumption scaled by each factor (by default halved and doubled, with
:func:`~mlsd_lib.capacity.sensitivity`) and sorts the assumptions by how far
they move one quantity; :func:`plot_tornado` draws the classic chart, widest
bar on top, on a log axis so that halving and doubling are the same length.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from mlsd_lib.capacity import CapacityInputError, Estimate, sensitivity

__all__ = ["plot_tornado", "tornado"]

_Assumptions = TypeVar("_Assumptions")


def tornado(
    derive: Callable[[_Assumptions], Estimate],
    base: _Assumptions,
    fields_: Sequence[str],
    quantity: str,
    factors: tuple[float, float] = (0.5, 2.0),
) -> pd.DataFrame:
    """``quantity`` relative to its base value, each of ``fields_`` scaled by
    ``factors[0]`` (column ``low``) and ``factors[1]`` (column ``high``).

    A ratio of 2 means the quantity doubles, 1 that it does not depend on the
    assumption. Rows are sorted by ``swing``, the larger of ``|log2 low|`` and
    ``|log2 high|`` (how many doublings the answer moves), widest first; ties
    keep the order of ``fields_``. Integer results (replica counts) move in
    steps, so a ratio is rarely exactly 2.
    """
    low, high = factors
    if not low < 1 < high:
        raise CapacityInputError(
            f"factors must be (below 1, above 1), e.g. (0.5, 2.0); got {factors}."
        )
    if not fields_:
        raise CapacityInputError("fields_ is empty: name the assumptions to vary.")
    down = sensitivity(derive, base, fields_, [quantity], factor=low)[quantity]
    up = sensitivity(derive, base, fields_, [quantity], factor=high)[quantity]
    frame = pd.DataFrame({"low": down, "high": up})
    with np.errstate(divide="ignore"):
        frame["swing"] = np.maximum(
            np.abs(np.log2(frame["low"])), np.abs(np.log2(frame["high"]))
        )
    return frame.sort_values("swing", ascending=False, kind="stable")


def plot_tornado(
    charts: Mapping[str, pd.DataFrame], factors: tuple[float, float] = (0.5, 2.0)
) -> Figure:
    """One tornado per entry of ``charts`` (title -> :func:`tornado` frame),
    side by side: a bar from 1 to ``low`` and one from 1 to ``high`` for each
    assumption, on a log2 axis, the widest on top."""
    if not charts:
        raise CapacityInputError("charts is empty: give at least one tornado frame.")
    height = max(2.0, 0.32 * max(len(frame) for frame in charts.values()) + 1.2)
    fig = Figure(figsize=(5.2 * len(charts), height), layout="constrained")
    axes = fig.subplots(1, len(charts), squeeze=False)[0]
    for ax, (title, frame) in zip(axes, charts.items(), strict=True):
        shown = frame.iloc[::-1]  # barh draws bottom-up: widest last, on top
        y = np.arange(len(shown))
        for column, color, factor in (
            ("low", "C0", factors[0]),
            ("high", "C3", factors[1]),
        ):
            ratio = shown[column].to_numpy(dtype=float)
            ax.barh(
                y,
                ratio - 1,
                left=1,
                color=color,
                label=f"assumption x {factor:g}",
            )
        ax.set_xscale("log", base=2)
        low, high = (
            float(np.nanmin(frame[["low", "high"]])),
            float(np.nanmax(frame[["low", "high"]])),
        )
        ticks = [
            2.0**k
            for k in range(
                int(np.floor(np.log2(min(low, 1.0)))),
                int(np.ceil(np.log2(max(high, 1.0)))) + 1,
            )
        ]
        ax.set_xticks(ticks, [f"x{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.axvline(1, color="black", linewidth=0.8)
        ax.set_yticks(y, shown.index)
        ax.set_xlabel("answer / base answer")
        ax.set_title(title)
        ax.legend(loc="lower right", fontsize=8)
    return fig
