"""Drift statistics: has the data (or the model's output) moved since training?

Introduced in
``casestudies/ad_click/06_monitoring_and_retraining.ipynb`` and used by every case
study's "monitoring" step. Labels arrive late (a click is known in minutes, a
purchase in days), so production systems watch the *inputs* and the *scores*
first, and calibration once labels land.

The population stability index compares the share of examples per bin, with bins
fixed on the reference window (training data or the first days of serving):

    PSI = Σ_bins (cur_i - ref_i) · ln(cur_i / ref_i)

It is a symmetrised KL divergence. The common rule of thumb from credit scoring
(Siddiqi, "Credit Risk Scorecards", 2006): below 0.1 no significant shift, 0.1 to
0.25 a moderate shift worth a look, above 0.25 a major shift. Empty bins get a
small ``eps`` share so the logarithm stays finite. Numeric features use quantile
bins of the reference (equal mass, so PSI does not depend on the feature's
scale); categorical features use the reference's categories plus one bucket for
categories never seen in the reference (a new app version, a new country).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import ks_2samp

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.calibration import (
    calibration_ratio,
    expected_calibration_error,
)

PSI_WARN = 0.1
PSI_ALERT = 0.25
UNKNOWN_CATEGORY = "<unseen in reference>"


class DriftInputError(MlsdError, ValueError):
    """The samples cannot be compared; the message says why."""


def _is_categorical(values: np.ndarray) -> bool:
    return values.dtype.kind in "OUSb" or isinstance(values.dtype, pd.CategoricalDtype)


def _as_array(values: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise DriftInputError(f"{what} must be 1-D, got shape {arr.shape}.")
    if len(arr) == 0:
        raise DriftInputError(f"{what} is empty: drift needs examples on both sides.")
    return arr


@dataclass(frozen=True)
class PSIBreakdown:
    """Per-bin shares behind a PSI value (``labels`` name the bins)."""

    labels: list[str]
    reference_share: np.ndarray
    current_share: np.ndarray

    @property
    def contributions(self) -> np.ndarray:
        ref, cur = self.reference_share, self.current_share
        return (cur - ref) * np.log(cur / ref)

    @property
    def psi(self) -> float:
        return float(self.contributions.sum())

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "bin": self.labels,
                "reference_share": self.reference_share,
                "current_share": self.current_share,
                "contribution": self.contributions,
            }
        )


def psi_breakdown(
    reference: ArrayLike,
    current: ArrayLike,
    *,
    num_bins: int = 10,
    categorical: bool | None = None,
    eps: float = 1e-4,
) -> PSIBreakdown:
    """Bin both samples on the reference's bins; see :func:`psi`."""
    ref = _as_array(reference, "reference")
    cur = _as_array(current, "current")
    if categorical is None:
        categorical = _is_categorical(ref) or _is_categorical(cur)
    if categorical:
        ref_s, cur_s = ref.astype(str), cur.astype(str)
        categories = np.unique(ref_s)
        labels = [*categories.tolist(), UNKNOWN_CATEGORY]
        ref_idx = np.searchsorted(categories, ref_s)
        pos = np.clip(np.searchsorted(categories, cur_s), 0, len(categories) - 1)
        cur_idx = np.where(categories[pos] == cur_s, pos, len(categories))
        num = len(labels)
    else:
        ref_f, cur_f = ref.astype(np.float64), cur.astype(np.float64)
        if np.isnan(ref_f).any() or np.isnan(cur_f).any():
            raise DriftInputError(
                "numeric samples contain NaN: impute or drop them first (or track "
                "the missing rate as its own feature)."
            )
        if num_bins < 2:
            raise DriftInputError(f"num_bins must be >= 2, got {num_bins}.")
        inner = np.unique(np.quantile(ref_f, np.linspace(0, 1, num_bins + 1))[1:-1])
        ref_idx = np.searchsorted(inner, ref_f, side="right")
        cur_idx = np.searchsorted(inner, cur_f, side="right")
        bounds = [-np.inf, *inner.tolist(), np.inf]
        labels = [f"[{lo:.4g}, {hi:.4g})" for lo, hi in pairwise(bounds)]
        num = len(labels)
    ref_share = np.bincount(ref_idx, minlength=num) / len(ref)
    cur_share = np.bincount(cur_idx, minlength=num) / len(cur)
    return PSIBreakdown(
        labels=labels,
        reference_share=np.maximum(ref_share, eps),
        current_share=np.maximum(cur_share, eps),
    )


def psi(
    reference: ArrayLike,
    current: ArrayLike,
    *,
    num_bins: int = 10,
    categorical: bool | None = None,
    eps: float = 1e-4,
) -> float:
    """Population stability index of ``current`` against ``reference``.

    Introduced in
    ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``. Bins come from the
    reference only (quantiles for numbers, categories plus an "unseen" bucket for
    strings, bools and pandas categoricals; force either with ``categorical``).
    Rule of thumb: < 0.1 ok, 0.1-0.25 warn, > 0.25 alert (:func:`psi_status`).
    """
    return psi_breakdown(
        reference, current, num_bins=num_bins, categorical=categorical, eps=eps
    ).psi


def psi_status(
    value: float, *, warn: float = PSI_WARN, alert: float = PSI_ALERT
) -> str:
    """``"ok"``, ``"warn"`` or ``"alert"`` by the 0.1 / 0.25 rule of thumb."""
    if value > alert:
        return "alert"
    if value > warn:
        return "warn"
    return "ok"


@dataclass(frozen=True)
class KSResult:
    statistic: float
    p_value: float


def ks_statistic(reference: ArrayLike, current: ArrayLike) -> KSResult:
    """Two-sample Kolmogorov-Smirnov: the largest gap between the two CDFs.

    Unlike PSI it needs no bins; but with production sample sizes its p-value is
    tiny for any shift at all, so alert on the statistic, not the p-value.
    """
    ref = _as_array(reference, "reference").astype(np.float64)
    cur = _as_array(current, "current").astype(np.float64)
    result = ks_2samp(ref, cur)
    return KSResult(float(result.statistic), float(result.pvalue))


@dataclass(frozen=True)
class PredictionDrift:
    psi: float
    reference_mean: float
    current_mean: float

    @property
    def mean_shift(self) -> float:
        return self.current_mean - self.reference_mean

    @property
    def relative_mean_shift(self) -> float:
        return self.mean_shift / self.reference_mean


def prediction_drift(
    reference_scores: ArrayLike, current_scores: ArrayLike, *, num_bins: int = 10
) -> PredictionDrift:
    """PSI and mean shift of the model's scores: available before any label is."""
    ref = _as_array(reference_scores, "reference_scores").astype(np.float64)
    cur = _as_array(current_scores, "current_scores").astype(np.float64)
    return PredictionDrift(
        psi=psi(ref, cur, num_bins=num_bins, categorical=False),
        reference_mean=float(ref.mean()),
        current_mean=float(cur.mean()),
    )


@dataclass(frozen=True)
class CalibrationDrift:
    reference_ratio: float
    current_ratio: float
    reference_ece: float
    current_ece: float


def calibration_drift(
    reference_labels: ArrayLike,
    reference_scores: ArrayLike,
    current_labels: ArrayLike,
    current_scores: ArrayLike,
    *,
    num_bins: int = 10,
    strategy: str = "quantile",
) -> CalibrationDrift:
    """Calibration ratio and ECE on the reference and on the new labelled window."""
    return CalibrationDrift(
        reference_ratio=calibration_ratio(reference_labels, reference_scores),
        current_ratio=calibration_ratio(current_labels, current_scores),
        reference_ece=expected_calibration_error(
            reference_labels, reference_scores, num_bins=num_bins, strategy=strategy
        ),
        current_ece=expected_calibration_error(
            current_labels, current_scores, num_bins=num_bins, strategy=strategy
        ),
    )


def _column(frame: Any, name: str, which: str) -> np.ndarray:
    try:
        return np.asarray(frame[name])
    except KeyError:
        known = list(frame.keys())
        raise DriftInputError(
            f"feature {name!r} is not in the {which} data (known: {known})."
        ) from None


@dataclass
class DriftReport:
    """PSI per feature with a status, reference window against current window.

    Introduced in
    ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``. Build it with
    :meth:`compute`; ``to_frame()`` displays it, ``alerts`` lists the features
    past the alert level.
    """

    psi: dict[str, float]
    warn: float = PSI_WARN
    alert: float = PSI_ALERT
    categorical: set[str] = field(default_factory=set)

    @classmethod
    def compute(
        cls,
        reference: Mapping[str, ArrayLike] | pd.DataFrame,
        current: Mapping[str, ArrayLike] | pd.DataFrame,
        *,
        features: Iterable[str] | None = None,
        categorical: Iterable[str] | None = None,
        num_bins: int = 10,
        warn: float = PSI_WARN,
        alert: float = PSI_ALERT,
    ) -> DriftReport:
        """PSI of each feature, ``current`` against ``reference``.

        ``features`` defaults to every column of ``reference``. A column is
        treated as categorical (one bin per value) when named in
        ``categorical`` or when it holds strings, booleans or a pandas
        ``Categorical``; other columns get ``num_bins`` quantile bins of the
        reference.
        ``warn`` and ``alert`` are the PSI thresholds :meth:`status` applies
        (0.1 and 0.25 by the usual rule of thumb).
        """
        names = list(features) if features is not None else list(reference.keys())
        forced = set(categorical or ())
        values: dict[str, float] = {}
        detected: set[str] = set()
        for name in names:
            ref = _column(reference, name, "reference")
            cur = _column(current, name, "current")
            is_cat = name in forced or _is_categorical(ref)
            if is_cat:
                detected.add(name)
            values[name] = psi(
                ref, cur, num_bins=num_bins, categorical=True if is_cat else None
            )
        return cls(psi=values, warn=warn, alert=alert, categorical=detected)

    def status(self, name: str) -> str:
        return psi_status(self.psi[name], warn=self.warn, alert=self.alert)

    @property
    def alerts(self) -> list[str]:
        return [n for n in self.psi if self.status(n) == "alert"]

    @property
    def warnings(self) -> list[str]:
        return [n for n in self.psi if self.status(n) == "warn"]

    @property
    def worst_status(self) -> str:
        statuses = {self.status(n) for n in self.psi}
        for level in ("alert", "warn"):
            if level in statuses:
                return level
        return "ok"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "feature": list(self.psi),
                "kind": [
                    "categorical" if n in self.categorical else "numeric"
                    for n in self.psi
                ],
                "psi": list(self.psi.values()),
                "status": [self.status(n) for n in self.psi],
            }
        )
