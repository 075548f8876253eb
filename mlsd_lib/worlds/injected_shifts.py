"""Shifts injected into a simulated log at a known time: what monitors must find.

Introduced in ``notebooks/monitoring.ipynb``. A monitor is judged by whether,
and how fast, it notices a change; that needs changes whose start and size are
known. These functions transform any simulated log held as a table (a
:class:`pandas.DataFrame` such as ``ImpressionLog.to_frame()``) from a start
time on, and leave earlier rows untouched:

* :func:`mix_shift` changes **who arrives** (covariate shift, ``P(x)`` moves):
  after the start, rows are resampled with a weight per value of one column
  (more mobile traffic, a campaign for one ad category). Each row keeps its
  whole context and its true probability, so ``P(y | x)`` is unchanged and a
  model that already conditions on the column stays right.
* :func:`concept_shift` changes **what they do** (concept drift, ``P(y | x)``
  moves): the inputs stay exactly as they were, the true probability of the
  matching rows has its odds multiplied, and their labels are drawn again. No
  input monitor can see it; only labels can.

Resampling happens within each hour (``block_s``), so a feature that follows
the clock (hour of day) keeps its daily cycle, and times are kept as they were:
only what arrives at those times changes. Both are seeded and vectorized.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.validation import require_number

__all__ = ["ShiftError", "concept_shift", "mix_shift"]


class ShiftError(MlsdError, ValueError):
    """A shift that cannot be applied as asked; the message says what to fix."""


def _check(frame: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ShiftError(
            f"columns {missing} are not in the log (known: {list(frame.columns)})."
        )


def _rng(seed: int, tag: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, tag]))


def mix_shift(
    frame: pd.DataFrame,
    *,
    column: str,
    weights: Mapping[object, float],
    start: float,
    time: str = "ts",
    block_s: float = 3600.0,
    redraw_label: str | None = None,
    probability: str = "true_p",
    seed: int = 0,
) -> pd.DataFrame:
    """``frame`` with the mix of ``column`` reweighted from ``start`` on.

    Introduced in ``notebooks/monitoring.ipynb``. Rows at or after ``start``
    (in ``time``'s unit) are replaced, block by block of ``block_s``, by a
    weighted resample of the same block (same count, with replacement): a row
    whose ``column`` is a key of ``weights`` weighs that much, any other row 1.
    The ``time`` column keeps its values, so arrival times do not move.

    A row drawn twice would carry the same label twice, which makes a model
    trained on the shifted days noisier than one trained on fresh traffic; with
    ``redraw_label`` (the label column) every resampled row gets a fresh label
    drawn from its ``probability``, as a new impression in the same context would.
    """
    if not weights or any(not np.isfinite(w) or w < 0 for w in weights.values()):
        raise ShiftError(
            f"weights must be a non-empty mapping of value -> weight >= 0, got "
            f"{dict(weights)}."
        )
    require_number("start", start, at_least=0, error=ShiftError)
    _check(
        frame, [column, time, *([redraw_label, probability] if redraw_label else [])]
    )
    t = frame[time].to_numpy(np.float64)
    if np.any(np.diff(t) < 0):
        raise ShiftError(f"the log must be sorted by {time!r}; sort it first.")
    first = int(np.searchsorted(t, start, side="left"))
    if first == len(frame):
        return frame.copy()
    values = frame[column].to_numpy()[first:]
    weight = np.ones(values.size)
    for value, w in weights.items():
        weight[values == value] = w
    block = np.floor(t[first:] / block_s).astype(np.int64)
    block_start = np.flatnonzero(np.r_[True, block[1:] != block[:-1]])
    block_id = np.cumsum(np.r_[True, block[1:] != block[:-1]]) - 1
    cum = np.cumsum(weight)
    before = np.r_[0.0, cum][block_start]  # weight of the rows before each block
    block_total = np.r_[cum[block_start[1:] - 1], cum[-1]] - before
    if np.any(block_total <= 0):
        raise ShiftError("weights leave an hour with no row to draw: keep some > 0.")
    u = _rng(seed, 0x5B1F).random(values.size)
    target = before[block_id] + u * block_total[block_id]
    picked = np.searchsorted(cum, target, side="left")
    picked = np.clip(picked, block_start[block_id], None)
    index = np.r_[np.arange(first), first + picked]
    shifted = frame.iloc[index].reset_index(drop=True)
    shifted[time] = t
    if redraw_label is not None:
        p = shifted[probability].to_numpy(np.float64)[first:]
        labels = shifted[redraw_label].to_numpy().copy()
        fresh = _rng(seed, 0x1AB).random(p.size) < p
        labels[first:] = fresh.astype(labels.dtype)
        shifted[redraw_label] = labels
    return shifted


def concept_shift(
    frame: pd.DataFrame,
    *,
    column: str,
    values: Iterable[object],
    odds_factor: float,
    start: float,
    time: str = "ts",
    probability: str = "true_p",
    label: str = "clicked",
    seed: int = 0,
) -> pd.DataFrame:
    """``frame`` with the click odds of matching rows multiplied from ``start`` on.

    Introduced in ``notebooks/monitoring.ipynb``. For rows at or after
    ``start`` whose ``column`` is in ``values``, the true probability ``p``
    becomes ``f p / (1 - p + f p)`` (odds times ``f = odds_factor``) and the
    label is drawn again from it. Every input column is left exactly as it was
    (other outcome columns, such as click delays, are not drawn again).
    """
    if not (np.isfinite(odds_factor) and odds_factor > 0):
        raise ShiftError(f"odds_factor must be > 0, got {odds_factor}.")
    require_number("start", start, at_least=0, error=ShiftError)
    values = list(values)
    if not values:
        raise ShiftError(
            f"values must name at least one value of {column} to shift, got none."
        )
    _check(frame, [column, time, probability, label])
    shifted = frame.copy()
    hit = (shifted[time].to_numpy() >= start) & np.isin(
        shifted[column].to_numpy(), list(values)
    )
    p = shifted[probability].to_numpy(np.float64)[hit]
    p_new = odds_factor * p / (1.0 - p + odds_factor * p)
    new_p = shifted[probability].to_numpy(np.float64).copy()
    new_p[hit] = p_new
    shifted[probability] = new_p
    labels = shifted[label].to_numpy().copy()
    draw = _rng(seed, 0xC0C5).random(p_new.size) < p_new
    labels[hit] = draw.astype(labels.dtype)
    shifted[label] = labels
    return shifted
