"""A/B tests on click-through rate: lift, confidence intervals, p-values and power.

Introduced in
``casestudies/ad_click/05_serving_and_ab_test.ipynb`` and used by every case
study's "online evaluation" step. Three tools:

* :func:`two_proportion_test`: control vs treatment clicks/impressions, treating
  impressions as independent. The absolute lift's interval uses the unpooled
  normal approximation; the *relative* lift's interval uses the delta method on
  the log ratio, ``Var(log p̂) ≈ (1 - p) / (n p)``, exponentiated back (so it is
  asymmetric and never crosses -100 %). The z-test uses the pooled standard error
  (the null hypothesis says the two rates are equal).
* :func:`sample_size_per_arm` and :func:`minimum_detectable_effect`: the standard
  two-sided power formula for two proportions (Fleiss, "Statistical Methods for
  Rates and Proportions"; no continuity correction), pooled variance under the
  null and unpooled under the alternative.
* :func:`ratio_metric_test`: when users are randomized but CTR is counted per
  impression, one user's impressions are correlated and the naive interval is too
  narrow. The delta method for ratio metrics (Deng, Knoblich & Lu 2018, "Applying
  the Delta Method in Metric Analytics") gives the right variance from per-user
  (clicks, impressions) totals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import brentq
from scipy.stats import norm

from mlsd_lib.errors import MlsdError


class ABTestInputError(MlsdError, ValueError):
    """The counts or design parameters cannot be analysed; the message says why."""


@dataclass(frozen=True)
class ABTestResult:
    """Lift of treatment over control with confidence intervals and a p-value."""

    control_rate: float
    treatment_rate: float
    absolute_lift: float
    absolute_ci: tuple[float, float]
    relative_lift: float
    relative_ci: tuple[float, float]
    z: float
    p_value: float
    confidence: float
    method: str

    @property
    def significant(self) -> bool:
        """Whether the two-sided p-value is below ``1 - confidence``."""
        return self.p_value < 1.0 - self.confidence


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ABTestInputError(f"confidence must be in (0, 1), got {confidence}.")
    return float(norm.ppf(0.5 + confidence / 2.0))


def _check_counts(clicks: float, impressions: float, arm: str) -> None:
    if impressions <= 0:
        raise ABTestInputError(f"{arm} has {impressions} impressions; need > 0.")
    if not 0 <= clicks <= impressions:
        raise ABTestInputError(
            f"{arm} has {clicks} clicks for {impressions} impressions; "
            f"need 0 <= clicks <= impressions."
        )


def _result(
    rate_c: float,
    rate_t: float,
    var_c: float,
    var_t: float,
    z_stat: float,
    confidence: float,
    method: str,
) -> ABTestResult:
    z = _z(confidence)
    diff = rate_t - rate_c
    se = math.sqrt(var_c + var_t)
    if rate_c > 0 and rate_t > 0:
        log_ratio = math.log(rate_t / rate_c)
        se_log = math.sqrt(var_c / rate_c**2 + var_t / rate_t**2)
        relative_ci = (
            math.exp(log_ratio - z * se_log) - 1.0,
            math.exp(log_ratio + z * se_log) - 1.0,
        )
        relative = rate_t / rate_c - 1.0
    else:
        relative, relative_ci = float("nan"), (float("nan"), float("nan"))
    p_value = float(2.0 * norm.sf(abs(z_stat))) if math.isfinite(z_stat) else 1.0
    return ABTestResult(
        control_rate=rate_c,
        treatment_rate=rate_t,
        absolute_lift=diff,
        absolute_ci=(diff - z * se, diff + z * se),
        relative_lift=relative,
        relative_ci=relative_ci,
        z=z_stat,
        p_value=p_value,
        confidence=confidence,
        method=method,
    )


def two_proportion_test(
    control_clicks: int,
    control_impressions: int,
    treatment_clicks: int,
    treatment_impressions: int,
    *,
    confidence: float = 0.95,
) -> ABTestResult:
    """Two-proportion z-test with absolute and relative lift intervals.

    Introduced in ``casestudies/ad_click/04_evaluation.ipynb``. Valid when the unit
    of randomization is the impression; with user-level randomization use
    :func:`ratio_metric_test`.
    """
    _check_counts(control_clicks, control_impressions, "control")
    _check_counts(treatment_clicks, treatment_impressions, "treatment")
    rate_c = control_clicks / control_impressions
    rate_t = treatment_clicks / treatment_impressions
    pooled = (control_clicks + treatment_clicks) / (
        control_impressions + treatment_impressions
    )
    se_null = math.sqrt(
        pooled * (1 - pooled) * (1 / control_impressions + 1 / treatment_impressions)
    )
    z_stat = (rate_t - rate_c) / se_null if se_null > 0 else 0.0
    return _result(
        rate_c,
        rate_t,
        rate_c * (1 - rate_c) / control_impressions,
        rate_t * (1 - rate_t) / treatment_impressions,
        z_stat,
        confidence,
        "two-proportion z-test (impressions independent)",
    )


def _ratio_and_variance(clicks: ArrayLike, impressions: ArrayLike, arm: str):
    c = np.asarray(clicks, dtype=np.float64)
    n = np.asarray(impressions, dtype=np.float64)
    if c.ndim != 1 or c.shape != n.shape:
        raise ABTestInputError(
            f"{arm}: clicks and impressions must be 1-D arrays of equal length, one "
            f"entry per user (got shapes {c.shape} and {n.shape})."
        )
    if len(c) < 2:
        raise ABTestInputError(f"{arm}: need at least 2 users, got {len(c)}.")
    if (n < 0).any() or (c < 0).any() or (c > n).any() or n.sum() == 0:
        raise ABTestInputError(
            f"{arm}: need 0 <= clicks <= impressions per user and some impressions."
        )
    users = len(c)
    mean_c, mean_n = c.mean(), n.mean()
    ratio = mean_c / mean_n
    cov = np.cov(c, n, ddof=1)
    # Delta method: Var(C̄/N̄) ≈ (Var C - 2 R Cov(C, N) + R² Var N) / (k N̄²).
    variance = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / (
        users * mean_n**2
    )
    return float(ratio), float(max(variance, 0.0))


def ratio_metric_test(
    control_clicks: ArrayLike,
    control_impressions: ArrayLike,
    treatment_clicks: ArrayLike,
    treatment_impressions: ArrayLike,
    *,
    confidence: float = 0.95,
) -> ABTestResult:
    """CTR lift when *users* are randomized: delta-method variance of a ratio.

    Introduced in ``casestudies/ad_click/04_evaluation.ipynb``. Each array holds one
    entry per user (their total clicks and impressions in the experiment). CTR is
    ``sum(clicks) / sum(impressions)``, a ratio of two user-level means, whose
    variance follows from the delta method (Deng et al. 2018). When users differ
    in their click propensity the result is wider, and honest, compared with
    :func:`two_proportion_test` on the pooled counts.
    """
    rate_c, var_c = _ratio_and_variance(control_clicks, control_impressions, "control")
    rate_t, var_t = _ratio_and_variance(
        treatment_clicks, treatment_impressions, "treatment"
    )
    se = math.sqrt(var_c + var_t)
    z_stat = (rate_t - rate_c) / se if se > 0 else 0.0
    return _result(
        rate_c,
        rate_t,
        var_c,
        var_t,
        z_stat,
        confidence,
        "delta method for a ratio metric (users randomized)",
    )


def _check_design(baseline_rate: float, alpha: float, power: float) -> None:
    if not 0.0 < baseline_rate < 1.0:
        raise ABTestInputError(f"baseline_rate must be in (0, 1), got {baseline_rate}.")
    if not 0.0 < alpha < 1.0:
        raise ABTestInputError(f"alpha must be in (0, 1), got {alpha}.")
    if not 0.0 < power < 1.0:
        raise ABTestInputError(f"power must be in (0, 1), got {power}.")


def _n_continuous(p1: float, p2: float, alpha: float, power: float) -> float:
    z_alpha = norm.ppf(1.0 - alpha / 2.0)
    z_beta = norm.ppf(power)
    p_bar = (p1 + p2) / 2.0
    numerator = z_alpha * math.sqrt(2.0 * p_bar * (1.0 - p_bar)) + z_beta * math.sqrt(
        p1 * (1.0 - p1) + p2 * (1.0 - p2)
    )
    return numerator**2 / (p2 - p1) ** 2


def sample_size_per_arm(
    baseline_rate: float,
    relative_mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Impressions per arm to detect a relative lift of ``relative_mde``.

    Introduced in ``casestudies/ad_click/04_evaluation.ipynb``. Two-sided test at
    level ``alpha``; the formula is

        n = (z_{1-α/2} √(2 p̄ (1-p̄)) + z_{power} √(p1 q1 + p2 q2))² / (p2 - p1)²

    with ``p2 = p1 (1 + mde)`` and ``p̄ = (p1 + p2) / 2``, rounded up. For
    ``p1 = 0.10``, a 10 % relative lift, α = 0.05 and power 0.8 it gives 14,751.
    """
    _check_design(baseline_rate, alpha, power)
    p2 = baseline_rate * (1.0 + relative_mde)
    if relative_mde == 0 or not 0.0 < p2 < 1.0:
        raise ABTestInputError(
            f"relative_mde={relative_mde} gives a treatment rate of {p2}; it must be "
            f"non-zero and keep the rate inside (0, 1)."
        )
    return math.ceil(_n_continuous(baseline_rate, p2, alpha, power))


def minimum_detectable_effect(
    baseline_rate: float,
    n_per_arm: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> float:
    """The smallest positive relative lift detectable with ``n_per_arm`` per arm.

    Introduced in ``casestudies/ad_click/04_evaluation.ipynb``: the exact inverse of
    :func:`sample_size_per_arm` (solved numerically), so "how long must we run?"
    and "what can we see in a week?" use one formula.
    """
    _check_design(baseline_rate, alpha, power)
    if n_per_arm <= 0:
        raise ABTestInputError(f"n_per_arm must be > 0, got {n_per_arm}.")
    upper = (1.0 - baseline_rate) / baseline_rate * (1.0 - 1e-9)

    def gap(mde: float) -> float:
        p2 = baseline_rate * (1.0 + mde)
        return _n_continuous(baseline_rate, p2, alpha, power) - n_per_arm

    if gap(upper) > 0:
        raise ABTestInputError(
            f"{n_per_arm} per arm cannot detect any lift at baseline {baseline_rate}."
        )
    return float(brentq(gap, 1e-12, upper, xtol=1e-12))


def power_of_test(
    baseline_rate: float,
    relative_mde: float,
    n_per_arm: float,
    *,
    alpha: float = 0.05,
) -> float:
    """Probability that a two-sided test at ``alpha`` detects the given lift."""
    _check_design(baseline_rate, alpha, 0.5)
    p1, p2 = baseline_rate, baseline_rate * (1.0 + relative_mde)
    p_bar = (p1 + p2) / 2.0
    z_alpha = norm.ppf(1.0 - alpha / 2.0)
    spread = math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    z = (
        abs(p2 - p1) * math.sqrt(n_per_arm)
        - z_alpha * math.sqrt(2 * p_bar * (1 - p_bar))
    ) / spread
    return float(norm.cdf(z))
