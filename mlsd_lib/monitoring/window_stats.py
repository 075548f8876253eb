"""PSI and KS of many monitoring windows against one reference, in one pass.

Introduced in ``notebooks/monitoring.ipynb``. A drift monitor compares every
window of serving traffic (an hour, a day) with one reference window (the
training data). :func:`~mlsd_lib.monitoring.drift.psi` and
:func:`~mlsd_lib.monitoring.drift.ks_statistic` do one pair at a time; measuring
how often a threshold fires needs thousands of windows, so this module computes
the same numbers for a ``(windows, rows)`` array at once:

* :class:`ReferenceBins` fixes the bins on the reference, exactly as
  :func:`~mlsd_lib.monitoring.drift.psi` does (quantile bins for numbers, one bin
  per category plus one for categories the reference never saw), and
  :func:`window_psi` counts every window into them with one ``bincount``;
* :func:`window_ks` is the exact two-sample KS statistic of every window against
  the reference (ties included, equal to ``scipy.stats.ks_2samp``), from one
  sort of the window array;
* :func:`psi_false_alarm_probability` and :func:`ks_p_value` say what each
  statistic does on a window *without* drift. With ``B`` bins, a window of ``n``
  rows and a reference of ``m``, PSI is approximately ``chi2(B - 1) x (1/n +
  1/m)`` (to second order PSI is Pearson's chi-square divided by the sample
  size): the same shift gives the same PSI at any window size, but the noise
  floor falls as ``1/n``, so a fixed threshold such as 0.1 is far too strict for
  a window of 50 rows and far too lax for a window of a million. KS's p-value has
  the mirror problem: at a million rows it is tiny for any shift at all.

Windows have equal sizes (a monitor that samples a fixed number of rows per
window); :func:`tumbling_windows` cuts a stream into them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import chi2, kstwo

from mlsd_lib.errors import MlsdError
from mlsd_lib.validation import require_int

__all__ = [
    "ReferenceBins",
    "WindowStatsError",
    "ks_p_value",
    "psi_false_alarm_probability",
    "psi_null_quantile",
    "tumbling_windows",
    "window_ks",
    "window_psi",
]


class WindowStatsError(MlsdError, ValueError):
    """Windows or a reference that cannot be compared; the message says why."""


def _reference(values: ArrayLike) -> np.ndarray:
    ref = np.asarray(values)
    if ref.ndim != 1 or ref.size == 0:
        raise WindowStatsError(
            f"the reference must be a non-empty 1-D sample, got shape {ref.shape}."
        )
    return ref


def _windows(values: ArrayLike) -> np.ndarray:
    win = np.asarray(values)
    if win.ndim != 2 or win.shape[1] == 0:
        raise WindowStatsError(
            f"windows must be a 2-D array (windows, rows per window), got shape "
            f"{win.shape}: cut a stream with tumbling_windows(values, size)."
        )
    return win


def tumbling_windows(values: ArrayLike, size: int) -> np.ndarray:
    """``values`` cut into consecutive windows of ``size`` rows, shape ``(W, size)``.

    The rows after the last full window are dropped (a partial window has a
    different noise floor, so it would need its own threshold).
    """
    require_int("size", size, at_least=1, error=WindowStatsError)
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size < size:
        raise WindowStatsError(
            f"need a 1-D stream of at least one window: size={size}, stream shape "
            f"{arr.shape}."
        )
    count = arr.size // size
    return arr[: count * size].reshape(count, size)


@dataclass(frozen=True)
class ReferenceBins:
    """Bins fixed on the reference: quantile edges, or categories + "unseen".

    ``edges`` (numeric) are the inner quantile edges; ``categories`` (categorical)
    the sorted reference values, with one more bin at the end for values the
    reference never saw. ``reference_share`` is the reference's share per bin,
    floored at ``eps`` as :func:`~mlsd_lib.monitoring.drift.psi` does.
    """

    reference_share: np.ndarray
    edges: np.ndarray | None = None
    categories: np.ndarray | None = None
    eps: float = 1e-4

    @classmethod
    def fit(
        cls,
        reference: ArrayLike,
        *,
        num_bins: int = 10,
        categorical: bool | None = None,
        eps: float = 1e-4,
    ) -> ReferenceBins:
        """Bins of ``reference`` (numbers: ``num_bins`` quantile bins; strings,
        booleans, or ``categorical=True``: one bin per value)."""
        ref = _reference(reference)
        if categorical is None:
            categorical = ref.dtype.kind in "OUSb"
        if categorical:
            categories, counts = np.unique(ref, return_counts=True)
            share = np.append(counts / ref.size, 0.0)
            return cls(np.maximum(share, eps), categories=categories, eps=eps)
        ref = ref.astype(np.float64)
        if np.isnan(ref).any():
            raise WindowStatsError(
                "the reference contains NaN: impute or drop it first (or monitor "
                "the missing rate as a feature of its own)."
            )
        if num_bins < 2:
            raise WindowStatsError(f"num_bins must be >= 2, got {num_bins}.")
        edges = np.unique(np.quantile(ref, np.linspace(0, 1, num_bins + 1))[1:-1])
        counts = np.bincount(
            np.searchsorted(edges, ref, side="right"), minlength=edges.size + 1
        )
        return cls(np.maximum(counts / ref.size, eps), edges=edges, eps=eps)

    @property
    def num_bins(self) -> int:
        return int(self.reference_share.size)

    @property
    def degrees_of_freedom(self) -> int:
        """Bins the reference fills, minus one: the chi-square's degrees of
        freedom for PSI on a window without drift."""
        return int((self.reference_share > self.eps).sum()) - 1

    def assign(self, values: ArrayLike) -> np.ndarray:
        """The bin index of every value (any shape)."""
        arr = np.asarray(values)
        if self.categories is not None:
            cats = self.categories
            pos = np.clip(np.searchsorted(cats, arr), 0, cats.size - 1)
            return np.where(cats[pos] == arr, pos, cats.size)
        return np.searchsorted(self.edges, arr.astype(np.float64), side="right")

    def window_shares(self, windows: ArrayLike) -> np.ndarray:
        """Share of each window's rows per bin, shape ``(W, num_bins)``."""
        win = _windows(windows)
        rows = np.arange(win.shape[0])[:, None] * self.num_bins
        counts = np.bincount(
            (rows + self.assign(win)).ravel(), minlength=win.shape[0] * self.num_bins
        ).reshape(win.shape[0], self.num_bins)
        return counts / win.shape[1]

    def psi(self, windows: ArrayLike) -> np.ndarray:
        """PSI of every window against the reference, shape ``(W,)``."""
        cur = np.maximum(self.window_shares(windows), self.eps)
        ref = self.reference_share
        return ((cur - ref) * np.log(cur / ref)).sum(axis=1)


def window_psi(
    reference: ArrayLike,
    windows: ArrayLike,
    *,
    num_bins: int = 10,
    categorical: bool | None = None,
    eps: float = 1e-4,
) -> np.ndarray:
    """PSI of each row of ``windows`` (``(W, n)``) against ``reference``.

    Introduced in ``notebooks/monitoring.ipynb``. Equal, window by window, to
    :func:`~mlsd_lib.monitoring.drift.psi` with the same arguments.
    """
    bins = ReferenceBins.fit(
        reference, num_bins=num_bins, categorical=categorical, eps=eps
    )
    return bins.psi(windows)


def window_ks(reference: ArrayLike, windows: ArrayLike) -> np.ndarray:
    """Two-sample KS statistic of each row of ``windows`` against ``reference``.

    Introduced in ``notebooks/monitoring.ipynb``. ``D = sup |F_ref - F_win|``;
    both empirical CDFs only jump at sample points, so the supremum is reached at
    a window value, either at it or just before it: with the window sorted, the
    reference CDF at each value comes from one ``searchsorted`` and the window's
    own CDF from the position of the value's first and last copy. Exact with
    ties (equal to ``scipy.stats.ks_2samp``'s statistic). KS needs an order:
    on category codes it measures an arbitrary numbering (use PSI there).
    """
    ref = np.sort(_reference(reference).astype(np.float64))
    win = np.sort(_windows(windows).astype(np.float64), axis=1)
    if np.isnan(ref).any() or np.isnan(win).any():
        raise WindowStatsError("KS needs numbers without NaN: impute or drop them.")
    n = win.shape[1]
    index = np.arange(n)
    starts = np.ones(win.shape, dtype=bool)
    starts[:, 1:] = win[:, 1:] != win[:, :-1]
    first = np.maximum.accumulate(np.where(starts, index, 0), axis=1)
    ends = np.ones(win.shape, dtype=bool)
    ends[:, :-1] = starts[:, 1:]
    last = np.minimum.accumulate(np.where(ends, index, n - 1)[:, ::-1], axis=1)
    last = last[:, ::-1]
    at = np.abs(np.searchsorted(ref, win, side="right") / ref.size - (last + 1) / n)
    before = np.abs(np.searchsorted(ref, win, side="left") / ref.size - first / n)
    return np.maximum(at.max(axis=1), before.max(axis=1))


def ks_p_value(statistic: ArrayLike, n_reference: int, n_current: int) -> np.ndarray:
    """Asymptotic p-value of a two-sample KS statistic (as ``ks_2samp(...,
    method="asymp")``): the chance of a ``D`` this large without drift."""
    en = round(n_reference * n_current / (n_reference + n_current))
    return kstwo.sf(np.asarray(statistic, dtype=np.float64), en)


def _noise_scale(n_reference: int, n_current: int) -> float:
    require_int("n_reference", n_reference, at_least=1, error=WindowStatsError)
    require_int("n_current", n_current, at_least=1, error=WindowStatsError)
    return 1.0 / n_current + 1.0 / n_reference


def psi_false_alarm_probability(
    threshold: float, degrees_of_freedom: int, n_reference: int, n_current: int
) -> float:
    """P(PSI > ``threshold``) on a window without drift (chi-square approximation).

    ``degrees_of_freedom`` is the number of bins minus one (see
    :attr:`~mlsd_lib.monitoring.window_stats.ReferenceBins.degrees_of_freedom`).
    The approximation needs a few expected rows per bin; with rarer bins the
    true rate is higher.
    """
    scale = _noise_scale(n_reference, n_current)
    return float(chi2.sf(threshold / scale, degrees_of_freedom))


def psi_null_quantile(
    probability: float, degrees_of_freedom: int, n_reference: int, n_current: int
) -> float:
    """The PSI that a window without drift exceeds with ``probability``: the
    threshold for a chosen false-alarm rate per window."""
    if not 0.0 < probability < 1.0:
        raise WindowStatsError(
            f"probability must be in (0, 1), got {probability}: it is the false-"
            "alarm rate per window you accept."
        )
    scale = _noise_scale(n_reference, n_current)
    return float(chi2.isf(probability, degrees_of_freedom) * scale)
