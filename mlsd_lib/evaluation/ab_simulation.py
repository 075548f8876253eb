r"""Thousands of A/B tests at once: how often a test says "significant", checked.

Introduced in ``notebooks/evaluation.ipynb``. A test's promises are frequencies
over repeated experiments: at level :math:`\alpha` an A/A test (no difference)
rejects in a fraction :math:`\alpha` of experiments, and a test sized for 80 %
power detects the sized effect in 80 % of them. A simulator can repeat the
experiment a thousand times and count, which checks the formulas of
:mod:`~mlsd_lib.evaluation.ab_test` and shows where a test stops keeping its
promise (impressions analysed as independent when users were randomized).

Every simulation draws all experiments in one vectorized call from a seeded
:class:`numpy.random.Generator`: counts, not individual impressions, where the
count is a sufficient statistic (a binomial draw per arm), so a thousand tests of
ten million impressions each take milliseconds.

* :func:`proportion_z_test`: the pooled two-proportion z-test of
  :func:`~mlsd_lib.evaluation.ab_test.two_proportion_test`, vectorized over
  experiments (a test checks the two agree).
* :func:`ratio_delta_test`: the delta-method test of
  :func:`~mlsd_lib.evaluation.ab_test.ratio_metric_test`, vectorized over
  experiments (each row one experiment, each column one user).
* :func:`simulate_proportion_tests`: impression-randomized experiments at a given
  lift; their p-values.
* :func:`simulate_daily_z`: the z-statistic a dashboard shows each day of many
  experiments, for the peeking study of :mod:`~mlsd_lib.evaluation.sequential`.
* :func:`simulate_user_level_tests`: user-randomized experiments in which users
  differ in their click propensity and see many impressions each; the p-values of
  the impression-level z-test and of the user-level delta method on the same data.
* :func:`rejection_rate`: the share of p-values below :math:`\alpha` with a Wilson
  interval, the number to hold against :math:`\alpha` or the power formula.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import norm

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.calibration import wilson_interval

__all__ = [
    "RejectionRate",
    "SimulationInputError",
    "UserPopulation",
    "proportion_z_test",
    "ratio_delta_test",
    "rejection_rate",
    "simulate_daily_z",
    "simulate_proportion_tests",
    "simulate_user_level_tests",
]


class SimulationInputError(MlsdError, ValueError):
    """Simulation settings that describe no experiment; the message says why."""


@dataclass(frozen=True)
class RejectionRate:
    """How many of ``experiments`` rejected, with a Wilson interval on the rate."""

    rejections: int
    experiments: int
    rate: float
    ci: tuple[float, float]

    def contains(self, value: float) -> bool:
        """Whether ``value`` (the nominal α, or a formula's power) is in the
        interval: the simulation does not contradict it."""
        return self.ci[0] <= value <= self.ci[1]

    def __str__(self) -> str:
        return (
            f"{self.rate:.3g} [{self.ci[0]:.3g}, {self.ci[1]:.3g}] "
            f"({self.rejections:,} of {self.experiments:,})"
        )


def rejection_rate(
    p_values: ArrayLike, alpha: float = 0.05, *, confidence: float = 0.95
) -> RejectionRate:
    """Share of ``p_values`` below ``alpha``, with its binomial (Wilson) interval."""
    p = np.asarray(p_values, dtype=np.float64).ravel()
    if p.size == 0 or np.isnan(p).any():
        raise SimulationInputError(
            f"need at least one p-value and no NaN, got {p.size} value(s) with "
            f"{int(np.isnan(p).sum())} NaN."
        )
    if not 0.0 < alpha < 1.0:
        raise SimulationInputError(f"alpha must be in (0, 1), got {alpha}.")
    hits = int((p < alpha).sum())
    lo, hi = wilson_interval(hits, p.size, confidence)
    return RejectionRate(hits, int(p.size), hits / p.size, (float(lo), float(hi)))


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return (
        seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    )


def _check_rate(rate: float, what: str) -> None:
    if not 0.0 < rate < 1.0:
        raise SimulationInputError(f"{what} must be in (0, 1), got {rate}.")


def _check_count(value: int, what: str, minimum: int = 1) -> None:
    if int(value) != value or value < minimum:
        raise SimulationInputError(
            f"{what} must be an integer >= {minimum}, got {value}."
        )


def proportion_z_test(
    clicks_control: ArrayLike,
    impressions_control: ArrayLike,
    clicks_treatment: ArrayLike,
    impressions_treatment: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z-statistics and two-sided p-values, elementwise.

    The statistic of :func:`~mlsd_lib.evaluation.ab_test.two_proportion_test` on
    arrays of experiments; impressions are treated as independent.
    """
    c_c = np.asarray(clicks_control, dtype=np.float64)
    n_c = np.asarray(impressions_control, dtype=np.float64)
    c_t = np.asarray(clicks_treatment, dtype=np.float64)
    n_t = np.asarray(impressions_treatment, dtype=np.float64)
    if (n_c <= 0).any() or (n_t <= 0).any():
        raise SimulationInputError("every arm needs impressions > 0.")
    pooled = (c_c + c_t) / (n_c + n_t)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t))
    diff = c_t / n_t - c_c / n_c
    z = np.divide(diff, se, out=np.zeros_like(diff), where=se > 0)
    return z, 2.0 * norm.sf(np.abs(z))


def _delta_ratio(clicks: np.ndarray, impressions: np.ndarray):
    """Ratio and its delta-method variance per row (rows = experiments)."""
    users = clicks.shape[-1]
    mean_c, mean_n = clicks.mean(-1), impressions.mean(-1)
    ratio = mean_c / mean_n
    dc = clicks - mean_c[..., None]
    dn = impressions - mean_n[..., None]
    var_c = (dc * dc).sum(-1) / (users - 1)
    var_n = (dn * dn).sum(-1) / (users - 1)
    cov = (dc * dn).sum(-1) / (users - 1)
    variance = (var_c - 2 * ratio * cov + ratio**2 * var_n) / (users * mean_n**2)
    return ratio, np.maximum(variance, 0.0)


def ratio_delta_test(
    clicks_control: ArrayLike,
    impressions_control: ArrayLike,
    clicks_treatment: ArrayLike,
    impressions_treatment: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """Delta-method z-statistics and p-values of CTR, one row per experiment.

    Each argument is ``(experiments, users)``: the per-user totals of
    :func:`~mlsd_lib.evaluation.ab_test.ratio_metric_test`, whose variance
    (Deng, Knoblich & Lu 2018) this computes for every row at once.
    """
    arrays = [
        np.atleast_2d(np.asarray(a, dtype=np.float64))
        for a in (
            clicks_control,
            impressions_control,
            clicks_treatment,
            impressions_treatment,
        )
    ]
    if arrays[0].shape != arrays[1].shape or arrays[2].shape != arrays[3].shape:
        raise SimulationInputError(
            "clicks and impressions of an arm must have the same shape "
            f"(experiments, users); got {arrays[0].shape} and {arrays[1].shape}, "
            f"{arrays[2].shape} and {arrays[3].shape}."
        )
    if arrays[0].shape[-1] < 2 or arrays[2].shape[-1] < 2:
        raise SimulationInputError("each arm needs at least 2 users per experiment.")
    if (arrays[1].sum(-1) <= 0).any() or (arrays[3].sum(-1) <= 0).any():
        raise SimulationInputError("every arm needs impressions > 0.")
    rate_c, var_c = _delta_ratio(arrays[0], arrays[1])
    rate_t, var_t = _delta_ratio(arrays[2], arrays[3])
    se = np.sqrt(var_c + var_t)
    diff = rate_t - rate_c
    z = np.divide(diff, se, out=np.zeros_like(diff), where=se > 0)
    return z, 2.0 * norm.sf(np.abs(z))


def simulate_proportion_tests(
    baseline_rate: float,
    relative_lift: float,
    n_per_arm: int,
    *,
    experiments: int,
    seed: int | np.random.Generator,
) -> np.ndarray:
    """p-values of ``experiments`` impression-randomized tests.

    Each experiment shows ``n_per_arm`` independent impressions per arm, clicked
    with ``baseline_rate`` in control and ``baseline_rate * (1 + relative_lift)``
    in treatment (``relative_lift = 0``: an A/A test).
    """
    _check_rate(baseline_rate, "baseline_rate")
    _check_rate(baseline_rate * (1 + relative_lift), "the treatment rate")
    _check_count(n_per_arm, "n_per_arm")
    _check_count(experiments, "experiments")
    rng = _rng(seed)
    treated = baseline_rate * (1.0 + relative_lift)
    clicks_c = rng.binomial(n_per_arm, baseline_rate, experiments)
    clicks_t = rng.binomial(n_per_arm, treated, experiments)
    return proportion_z_test(clicks_c, n_per_arm, clicks_t, n_per_arm)[1]


def simulate_daily_z(
    baseline_rate: float,
    relative_lift: float,
    daily_per_arm: int,
    days: int,
    *,
    experiments: int,
    seed: int | np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """What a daily dashboard shows: cumulative z and standard error per day.

    Returns ``(z, se)``, each ``(experiments, days)``: after day ``d`` each arm has
    ``(d + 1) * daily_per_arm`` impressions; ``z`` is the pooled two-proportion
    statistic on everything so far and ``se`` the unpooled standard error of the
    difference (what an always-valid p-value needs).
    """
    _check_rate(baseline_rate, "baseline_rate")
    _check_rate(baseline_rate * (1 + relative_lift), "the treatment rate")
    _check_count(daily_per_arm, "daily_per_arm")
    _check_count(days, "days")
    _check_count(experiments, "experiments")
    rng = _rng(seed)
    treated = baseline_rate * (1.0 + relative_lift)
    clicks_c = rng.binomial(daily_per_arm, baseline_rate, (experiments, days))
    clicks_t = rng.binomial(daily_per_arm, treated, (experiments, days))
    n = daily_per_arm * np.arange(1, days + 1, dtype=np.float64)
    cum_c, cum_t = clicks_c.cumsum(1), clicks_t.cumsum(1)
    z, _ = proportion_z_test(cum_c, n, cum_t, n)
    rate_c, rate_t = cum_c / n, cum_t / n
    se = np.sqrt((rate_c * (1 - rate_c) + rate_t * (1 - rate_t)) / n)
    return z, se


@dataclass(frozen=True)
class UserPopulation:
    """Users who differ: how many impressions each sees and how often each clicks.

    A user's impressions are ``1 + Poisson(mean_impressions - 1)``; a user's CTR
    is drawn from a Beta distribution with mean ``ctr_mean`` and concentration
    ``ctr_concentration`` (``a + b``): small concentration, very different users;
    large, nearly identical ones (impressions then behave as independent).
    """

    mean_impressions: float = 20.0
    ctr_mean: float = 0.05
    ctr_concentration: float = 2.0

    def __post_init__(self) -> None:
        if not self.mean_impressions >= 1.0:
            raise SimulationInputError(
                f"mean_impressions must be >= 1 (every user sees at least one "
                f"impression), got {self.mean_impressions}."
            )
        _check_rate(self.ctr_mean, "ctr_mean")
        if not self.ctr_concentration > 0:
            raise SimulationInputError(
                f"ctr_concentration must be > 0, got {self.ctr_concentration}."
            )

    def draw(
        self, rng: np.random.Generator, shape: tuple[int, ...], lift: float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-user (clicks, impressions) of ``shape`` users; CTRs times 1 + lift."""
        a = self.ctr_mean * self.ctr_concentration
        ctr = rng.beta(a, self.ctr_concentration - a, shape)
        impressions = 1 + rng.poisson(self.mean_impressions - 1.0, shape)
        clicks = rng.binomial(impressions, np.clip(ctr * (1.0 + lift), 0.0, 1.0))
        return clicks, impressions


def simulate_user_level_tests(
    population: UserPopulation,
    users_per_arm: int,
    *,
    experiments: int,
    seed: int | np.random.Generator,
    relative_lift: float = 0.0,
) -> dict[str, np.ndarray]:
    """p-values of user-randomized experiments, analysed two ways on the same data.

    ``"impression-level z-test"`` pools each arm's clicks and impressions as if
    every impression were independent; ``"user-level delta method"`` treats the
    user as the unit, as the randomization did. With heterogeneous users the first
    understates the variance, so its A/A false-positive rate exceeds α.
    """
    _check_count(users_per_arm, "users_per_arm", minimum=2)
    _check_count(experiments, "experiments")
    rng = _rng(seed)
    clicks_c, imps_c = population.draw(rng, (experiments, users_per_arm))
    clicks_t, imps_t = population.draw(rng, (experiments, users_per_arm), relative_lift)
    _, naive = proportion_z_test(
        clicks_c.sum(1), imps_c.sum(1), clicks_t.sum(1), imps_t.sum(1)
    )
    _, delta = ratio_delta_test(clicks_c, imps_c, clicks_t, imps_t)
    return {"impression-level z-test": naive, "user-level delta method": delta}
