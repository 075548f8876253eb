r"""A/B tests on a per-user continuous metric: Welch, paired, and power.

Introduced in ``casestudies/recommender/05_evaluation.ipynb`` (step 5, "Offline and
online evaluation"). The recommender is judged online on *engaged plays per user* and
*minutes per user*: one number per user, unbounded, heavy-tailed (most users
play nothing on a given day, a few binge). :mod:`~mlsd_lib.evaluation.ab_test`
handles click-through rates; this module handles means of such numbers.

**Two designs.**

* **Split** (:func:`welch_test`): users are randomly assigned to one arm each,
  as every real experiment does. The arms' means are independent and their
  difference has variance :math:`s_c^2 / n_c + s_t^2 / n_t`; Welch's t-test
  (Welch 1947) uses the Welch-Satterthwaite degrees of freedom, so it needs
  neither equal variances nor equal arm sizes.
* **Paired** (:func:`paired_test`): every user is measured under both arms.
  A simulator can do this exactly (two forks of one world, the same users
  with the same random numbers: *common random numbers*); a real system only
  approximately (interleaving, or a pre-period covariate as in CUPED). The
  test works on per-user differences :math:`d_u = y^t_u - y^c_u`, whose
  variance :math:`s_c^2 + s_t^2 - 2 s_{ct}` is small when a user's outcome
  under one arm predicts it under the other: a heavy user is heavy in both,
  and the pairing removes that spread from the comparison.

Both report the difference of means with a t interval and the **relative
lift** :math:`\bar y_t / \bar y_c - 1` with a delta-method interval on the log
ratio (exponentiated back, so it is asymmetric and never crosses -100%), as
:mod:`~mlsd_lib.evaluation.ab_test` does for rates; for paired data the log
ratio's variance includes the covariance of the two means.

**Power** (:func:`sample_size_split`, :func:`sample_size_paired`,
:func:`power_split`, :func:`power_paired`): the normal-approximation formula
for a two-sided test at level :math:`\alpha` detecting a difference
:math:`\delta` with probability ``power``,

.. math::

    n_{\text{split}} = (z_{1-\alpha/2} + z_{\text{power}})^2
        \frac{\sigma_c^2 + \sigma_t^2}{\delta^2} \text{ users per arm},
    \qquad
    n_{\text{paired}} = (z_{1-\alpha/2} + z_{\text{power}})^2
        \frac{\sigma_d^2}{\delta^2} \text{ users}.

A split needs ``2 n_split`` users in all; with equal spreads :math:`\sigma`
and correlation :math:`\rho` between a user's two outcomes,
:math:`\sigma_d^2 = 2 \sigma^2 (1 - \rho)`, so pairing needs
:math:`(1 - \rho)` times the users *per arm*, and half that in all. The
formulas ignore the t distribution's heavier tails, which matter only below a
few dozen users.

Written out because the book teaches them; the t-tests agree with
``scipy.stats.ttest_ind(equal_var=False)`` and ``ttest_rel`` (a test checks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm
from scipy.stats import t as student_t

from mlsd_lib.errors import MlsdError

__all__ = [
    "MeanDifference",
    "MeanTestInputError",
    "paired_test",
    "power_paired",
    "power_split",
    "sample_size_paired",
    "sample_size_split",
    "welch_test",
]


class MeanTestInputError(MlsdError, ValueError):
    """Per-user values or design parameters that cannot be analysed; says why."""


@dataclass(frozen=True)
class MeanDifference:
    """Treatment against control on a per-user mean, with intervals.

    ``difference`` is ``treatment_mean - control_mean`` with its standard
    error ``se`` and interval ``difference_ci``; ``relative_lift`` is
    ``treatment_mean / control_mean - 1`` with ``relative_ci`` (NaN when a mean
    is not positive). ``t`` and ``df`` are the test statistic and its degrees
    of freedom, ``p_value`` two-sided. ``n_control`` and ``n_treatment`` count
    users (equal for a paired test); ``sd_control`` and ``sd_treatment`` are
    the per-user standard deviations and ``sd_difference`` that of the paired
    differences (NaN for a split), which is what :func:`sample_size_paired`
    needs.
    """

    control_mean: float
    treatment_mean: float
    difference: float
    se: float
    difference_ci: tuple[float, float]
    relative_lift: float
    relative_ci: tuple[float, float]
    t: float
    df: float
    p_value: float
    confidence: float
    n_control: int
    n_treatment: int
    sd_control: float
    sd_treatment: float
    sd_difference: float
    method: str

    @property
    def significant(self) -> bool:
        """Whether the two-sided p-value is below ``1 - confidence``."""
        return self.p_value < 1.0 - self.confidence


def _values(values: ArrayLike, arm: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise MeanTestInputError(
            f"{arm} must be a 1-D array with one value per user, got shape "
            f"{array.shape}."
        )
    if len(array) < 2:
        raise MeanTestInputError(
            f"{arm} has {len(array)} user(s): a standard deviation needs at least 2."
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise MeanTestInputError(
            f"{arm} has {bad.size} NaN or infinite value(s) (first at positions "
            f"{bad[:5].tolist()}): give every user a number. A user who was "
            "assigned but did nothing counts as 0; drop a user only if the "
            "metric is undefined for them, and from both arms."
        )
    return array


def _confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise MeanTestInputError(f"confidence must be in (0, 1), got {confidence}.")


def _result(
    mean_c: float,
    mean_t: float,
    se: float,
    var_log_ratio: float,
    df: float,
    confidence: float,
    sds: tuple[float, float, float],
    ns: tuple[int, int],
    method: str,
) -> MeanDifference:
    diff = mean_t - mean_c
    crit = float(student_t.ppf(0.5 + confidence / 2.0, df))
    if se > 0:
        t_stat = diff / se
        p_value = float(2.0 * student_t.sf(abs(t_stat), df))
    else:  # every user the same: the difference is known exactly
        t_stat = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p_value = 1.0 if diff == 0 else 0.0
    if mean_c > 0 and mean_t > 0:
        log_ratio = math.log(mean_t / mean_c)
        half = crit * math.sqrt(max(var_log_ratio, 0.0))
        relative = mean_t / mean_c - 1.0
        relative_ci = (math.exp(log_ratio - half) - 1.0, math.exp(log_ratio + half) - 1)
    else:
        relative, relative_ci = math.nan, (math.nan, math.nan)
    return MeanDifference(
        control_mean=mean_c,
        treatment_mean=mean_t,
        difference=diff,
        se=se,
        difference_ci=(diff - crit * se, diff + crit * se),
        relative_lift=relative,
        relative_ci=relative_ci,
        t=t_stat,
        df=df,
        p_value=p_value,
        confidence=confidence,
        n_control=ns[0],
        n_treatment=ns[1],
        sd_control=sds[0],
        sd_treatment=sds[1],
        sd_difference=sds[2],
        method=method,
    )


def welch_test(
    control: ArrayLike, treatment: ArrayLike, *, confidence: float = 0.95
) -> MeanDifference:
    """Difference of two independent arms' means: Welch's t-test.

    ``control`` and ``treatment`` hold one value per user of each arm (users
    randomly assigned, each to one arm); the arms may differ in size and
    spread.
    """
    _confidence(confidence)
    c, t = _values(control, "control"), _values(treatment, "treatment")
    n_c, n_t = len(c), len(t)
    var_c, var_t = float(c.var(ddof=1)), float(t.var(ddof=1))
    a, b = var_c / n_c, var_t / n_t
    se = math.sqrt(a + b)
    df = (a + b) ** 2 / (a**2 / (n_c - 1) + b**2 / (n_t - 1)) if se > 0 else n_c + n_t
    mean_c, mean_t = float(c.mean()), float(t.mean())
    var_log = a / mean_c**2 + b / mean_t**2 if mean_c > 0 and mean_t > 0 else math.nan
    return _result(
        mean_c,
        mean_t,
        se,
        var_log,
        float(df),
        confidence,
        (math.sqrt(var_c), math.sqrt(var_t), math.nan),
        (n_c, n_t),
        "Welch t-test (users split between arms)",
    )


def paired_test(
    control: ArrayLike, treatment: ArrayLike, *, confidence: float = 0.95
) -> MeanDifference:
    """Difference of means when every user was measured under both arms.

    ``control[u]`` and ``treatment[u]`` are the same user's values (aligned by
    position). The t-test runs on the per-user differences, ``n - 1`` degrees
    of freedom.
    """
    _confidence(confidence)
    c, t = _values(control, "control"), _values(treatment, "treatment")
    if len(c) != len(t):
        raise MeanTestInputError(
            f"a paired test needs one control and one treatment value per user, "
            f"aligned by position; got {len(c)} and {len(t)} values. Use "
            "welch_test for arms with different users."
        )
    n = len(c)
    cov = np.cov(c, t, ddof=1)
    var_c, var_t, cov_ct = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    var_d = float((t - c).var(ddof=1))
    se = math.sqrt(var_d / n)
    mean_c, mean_t = float(c.mean()), float(t.mean())
    var_log = (
        (var_c / mean_c**2 + var_t / mean_t**2 - 2 * cov_ct / (mean_c * mean_t)) / n
        if mean_c > 0 and mean_t > 0
        else math.nan
    )
    return _result(
        mean_c,
        mean_t,
        se,
        var_log,
        float(n - 1),
        confidence,
        (math.sqrt(var_c), math.sqrt(var_t), math.sqrt(var_d)),
        (n, n),
        "paired t-test (every user in both arms)",
    )


# -- power ----------------------------------------------------------------------------


def _design(difference: float, alpha: float, power: float | None = None) -> float:
    if not 0.0 < alpha < 1.0:
        raise MeanTestInputError(f"alpha must be in (0, 1), got {alpha}.")
    if power is not None and not 0.0 < power < 1.0:
        raise MeanTestInputError(f"power must be in (0, 1), got {power}.")
    if not math.isfinite(difference) or difference == 0:
        raise MeanTestInputError(
            f"the difference to detect must be a non-zero number, got {difference} "
            "(in the metric's units: e.g. 0.05 engaged plays per user)."
        )
    return float(norm.ppf(1.0 - alpha / 2.0))


def _spread(sd: float, what: str) -> float:
    if not math.isfinite(sd) or sd < 0:
        raise MeanTestInputError(
            f"{what} must be a finite standard deviation >= 0, got {sd}."
        )
    return float(sd)


def sample_size_split(
    sd_control: float,
    sd_treatment: float,
    difference: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Users *per arm* a split test needs to detect ``difference`` (rounded up).

    ``n = (z_{1-α/2} + z_power)² (σ_c² + σ_t²) / δ²``: for σ = 1.5 engaged
    plays per user in both arms and δ = 0.1, α = 0.05, power 0.8, that is
    3,532 users per arm.
    """
    z_alpha = _design(difference, alpha, power)
    var = (
        _spread(sd_control, "sd_control") ** 2
        + _spread(sd_treatment, "sd_treatment") ** 2
    )
    z = z_alpha + float(norm.ppf(power))
    return max(2, math.ceil(z**2 * var / difference**2))


def sample_size_paired(
    sd_difference: float,
    difference: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> int:
    """Users a paired test needs (each in both arms) to detect ``difference``.

    ``n = (z_{1-α/2} + z_power)² σ_d² / δ²`` with ``σ_d`` the standard
    deviation of the per-user differences (:attr:`MeanDifference.sd_difference`).
    """
    z_alpha = _design(difference, alpha, power)
    var = _spread(sd_difference, "sd_difference") ** 2
    z = z_alpha + float(norm.ppf(power))
    return max(2, math.ceil(z**2 * var / difference**2))


def _power(se: float, difference: float, z_alpha: float) -> float:
    if se == 0:
        return 1.0
    shift = abs(difference) / se
    return float(norm.cdf(shift - z_alpha) + norm.cdf(-shift - z_alpha))


def power_split(
    sd_control: float,
    sd_treatment: float,
    difference: float,
    n_per_arm: float,
    *,
    alpha: float = 0.05,
) -> float:
    """Probability that a split test with ``n_per_arm`` users per arm detects
    ``difference`` (two-sided, both tails counted)."""
    z_alpha = _design(difference, alpha)
    if n_per_arm <= 0:
        raise MeanTestInputError(f"n_per_arm must be > 0, got {n_per_arm}.")
    var = (
        _spread(sd_control, "sd_control") ** 2
        + _spread(sd_treatment, "sd_treatment") ** 2
    )
    return _power(math.sqrt(var / n_per_arm), difference, z_alpha)


def power_paired(
    sd_difference: float,
    difference: float,
    n_users: float,
    *,
    alpha: float = 0.05,
) -> float:
    """Probability that a paired test on ``n_users`` detects ``difference``."""
    z_alpha = _design(difference, alpha)
    if n_users <= 0:
        raise MeanTestInputError(f"n_users must be > 0, got {n_users}.")
    sd = _spread(sd_difference, "sd_difference")
    return _power(sd / math.sqrt(n_users), difference, z_alpha)
