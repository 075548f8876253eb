"""How fast a drift alarm fires against how often it fires for nothing.

Introduced in ``notebooks/monitoring.ipynb``. Every drift monitor is a
threshold on a statistic computed per window, and two numbers judge it:

* **false alarms per day**: how often it fires on traffic that did not change
  (measured on control periods, before any change);
* **detection delay**: how long after a real change it first fires (measured
  on the same streams after a change injected at a known time; a change it
  never catches within the stream counts as *missed*).

A lower threshold or a longer window buys speed or quietness, never both: this
module measures the curve. :func:`alarms` applies an alert rule (``consecutive``
windows over the threshold, the usual way to trade a little delay for far fewer
pages) to a ``(repetitions, windows)`` array of statistics at once, and
:func:`detection_tradeoff` sweeps thresholds. :func:`calibrated_threshold` picks
the threshold from control days, as the framework chapter advises ("thresholds
calibrated on historical days, not p-values").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "DetectionInputError",
    "alarms",
    "calibrated_threshold",
    "detection_tradeoff",
    "first_alarm_delay",
]

HOURS_PER_DAY = 24.0


class DetectionInputError(MlsdError, ValueError):
    """Statistics, windows or a change time that do not fit; the message says how."""


def _statistics(statistics: ArrayLike) -> np.ndarray:
    stats = np.asarray(statistics, dtype=np.float64)
    if stats.ndim == 1:
        stats = stats[None, :]
    if stats.ndim != 2 or stats.shape[1] == 0:
        raise DetectionInputError(
            f"statistics must be (repetitions, windows) or (windows,), got shape "
            f"{np.shape(statistics)}."
        )
    return stats


def alarms(
    statistics: ArrayLike, threshold: float, *, consecutive: int = 1
) -> np.ndarray:
    """Where the rule fires: ``consecutive`` windows in a row over ``threshold``.

    Introduced in ``notebooks/monitoring.ipynb``. Returns a boolean array of the
    statistics' shape (``(windows,)`` becomes ``(1, windows)``); window ``w``
    fires when windows ``w - consecutive + 1 .. w`` all exceed the threshold, so
    the first ``consecutive - 1`` windows of a stream never fire.
    """
    if consecutive < 1:
        raise DetectionInputError(
            f"consecutive must be >= 1 (windows in a row over the threshold), got "
            f"{consecutive}."
        )
    over = _statistics(statistics) > threshold
    # Length of the run of windows over the threshold ending at each window.
    index = np.arange(over.shape[1])
    last_quiet = np.maximum.accumulate(np.where(over, -1, index), axis=1)
    return (index - last_quiet) >= consecutive


def _window_ends(window_end: ArrayLike, num_windows: int) -> tuple[np.ndarray, float]:
    ends = np.asarray(window_end, dtype=np.float64)
    if ends.shape != (num_windows,):
        raise DetectionInputError(
            f"window_end needs one time per window ({num_windows}), got shape "
            f"{ends.shape}."
        )
    steps = np.diff(ends)
    if num_windows < 2 or not np.allclose(steps, steps[0]) or steps[0] <= 0:
        raise DetectionInputError(
            "window_end must hold at least two increasing, equally spaced times "
            "(tumbling windows of one length)."
        )
    return ends, float(steps[0])


def first_alarm_delay(
    fired: np.ndarray, window_end: ArrayLike, change_at: ArrayLike
) -> np.ndarray:
    """Per repetition, time from the change to the end of the first window
    after it that fires (NaN if none does): the detection delay.

    ``fired`` is :func:`alarms`' output; ``change_at`` one time for all
    repetitions or one per repetition, in ``window_end``'s unit. Windows that
    end after the change count, including the one that straddles it.
    """
    ends, _ = _window_ends(window_end, fired.shape[1])
    change = np.broadcast_to(np.asarray(change_at, dtype=np.float64), fired.shape[:1])
    after = ends[None, :] > change[:, None]
    hit = fired & after
    first = np.argmax(hit, axis=1)
    delay = ends[first] - change
    return np.where(hit.any(axis=1), delay, np.nan)


def detection_tradeoff(
    statistics: ArrayLike,
    window_end: ArrayLike,
    change_at: ArrayLike,
    thresholds: Sequence[float],
    *,
    consecutive: int = 1,
) -> pd.DataFrame:
    """False alarms per day and detection delay for each threshold.

    Introduced in ``notebooks/monitoring.ipynb``. ``statistics`` is
    ``(repetitions, windows)``: one stream per repetition, with a change at
    ``change_at`` (hours; a scalar or one per repetition) and windows ending at
    ``window_end`` (hours, equally spaced). Windows that end at or before the
    change are the control period: every alarm there is false. Returns one row
    per threshold: ``false_alarms_per_day`` (alarming control windows per
    control day), ``mean_delay_h`` and ``median_delay_h`` over the repetitions
    that detected the change, and ``missed`` (the share that never did).
    """
    stats = _statistics(statistics)
    ends, length = _window_ends(window_end, stats.shape[1])
    change = np.broadcast_to(np.asarray(change_at, dtype=np.float64), stats.shape[:1])
    control = ends[None, :] <= change[:, None]
    control_days = control.sum() * length / HOURS_PER_DAY
    if control_days == 0:
        raise DetectionInputError(
            "no window ends before the change: a stream needs a control period to "
            "count false alarms (move change_at later)."
        )
    rows = []
    for threshold in thresholds:
        fired = alarms(stats, threshold, consecutive=consecutive)
        delay = first_alarm_delay(fired, ends, change)
        detected = ~np.isnan(delay)
        rows.append(
            {
                "threshold": float(threshold),
                "consecutive": consecutive,
                "window_h": length,
                "false_alarms_per_day": float((fired & control).sum() / control_days),
                "mean_delay_h": float(delay[detected].mean())
                if detected.any()
                else np.nan,
                "median_delay_h": float(np.median(delay[detected]))
                if detected.any()
                else np.nan,
                "missed": float(1.0 - detected.mean()),
            }
        )
    return pd.DataFrame(rows)


def calibrated_threshold(
    control_statistics: ArrayLike,
    false_alarms_per_day: float,
    windows_per_day: float,
) -> float:
    """The threshold that fires ``false_alarms_per_day`` times a day on control
    windows (one window per rule, ``consecutive=1``): an empirical quantile.

    Introduced in ``notebooks/monitoring.ipynb``. Calibrating on days known to
    be quiet replaces a rule of thumb (PSI 0.1, p < 0.05) whose meaning depends
    on the window size.
    """
    stats = np.asarray(control_statistics, dtype=np.float64).ravel()
    rate = false_alarms_per_day / windows_per_day
    if stats.size == 0 or not 0.0 < rate < 1.0:
        raise DetectionInputError(
            f"need control statistics and 0 < false_alarms_per_day < windows_per_day"
            f", got {stats.size} statistics, {false_alarms_per_day} a day and "
            f"{windows_per_day} windows a day."
        )
    if rate < 1.0 / stats.size:
        raise DetectionInputError(
            f"{false_alarms_per_day} false alarms a day is one window in "
            f"{1 / rate:,.0f}; {stats.size} control windows cannot measure that: "
            "use more control days."
        )
    return float(np.quantile(stats, 1.0 - rate))
