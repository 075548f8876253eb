"""A/B tests on a per-user continuous metric: scipy agreement, coverage, power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.stats import norm

from mlsd_lib.evaluation.ab_continuous import (
    MeanTestInputError,
    paired_test,
    power_paired,
    power_split,
    sample_size_paired,
    sample_size_split,
    welch_test,
)


def _users(rng: np.random.Generator, n: int) -> np.ndarray:
    """Heavy-tailed per-user activity: most users do little, a few a lot."""
    return rng.gamma(0.6, 2.0, n)


def _plays(rng: np.random.Generator, activity: np.ndarray, lift: float) -> np.ndarray:
    return rng.poisson(activity * (1.0 + lift)).astype(float)


def test_welch_agrees_with_scipy() -> None:
    rng = np.random.default_rng(0)
    c, t = _plays(rng, _users(rng, 300), 0), _plays(rng, _users(rng, 450), 0.2)
    result = welch_test(c, t)
    reference = stats.ttest_ind(t, c, equal_var=False)
    assert result.t == pytest.approx(reference.statistic)
    assert result.p_value == pytest.approx(reference.pvalue)
    low, high = reference.confidence_interval(0.95)
    assert result.difference_ci == pytest.approx((low, high))
    assert result.n_control == 300 and result.n_treatment == 450
    assert math.isnan(result.sd_difference)


def test_paired_agrees_with_scipy_and_is_narrower_when_users_correlate() -> None:
    rng = np.random.default_rng(1)
    activity = _users(rng, 500)
    c, t = _plays(rng, activity, 0), _plays(rng, activity, 0.1)
    paired = paired_test(c, t)
    reference = stats.ttest_rel(t, c)
    assert paired.t == pytest.approx(reference.statistic)
    assert paired.p_value == pytest.approx(reference.pvalue)
    assert paired.df == 499
    assert paired.sd_difference == pytest.approx(np.std(t - c, ddof=1))
    # Same data analysed as if split: the pairing removes the users' spread.
    split = welch_test(c, t)
    assert paired.difference == pytest.approx(split.difference)
    assert paired.se < 0.8 * split.se


def test_relative_interval_is_asymmetric_and_contains_the_lift() -> None:
    rng = np.random.default_rng(2)
    activity = _users(rng, 2_000)
    for result in (
        welch_test(_plays(rng, activity, 0), _plays(rng, _users(rng, 2_000), 0.3)),
        paired_test(_plays(rng, activity, 0), _plays(rng, activity, 0.3)),
    ):
        low, high = result.relative_ci
        assert low < result.relative_lift < high
        assert high - result.relative_lift > result.relative_lift - low
        assert result.relative_lift == pytest.approx(
            result.treatment_mean / result.control_mean - 1
        )


def test_intervals_cover_the_true_difference_at_the_nominal_rate() -> None:
    """Skewed per-user counts, 400 experiments each: 95% intervals cover ~95%."""
    rng = np.random.default_rng(3)
    lift, sims = 0.1, 400
    true_diff = lift * 0.6 * 2.0  # E[activity] = shape * scale
    covered = {"welch": 0, "paired": 0, "relative": 0}
    for _ in range(sims):
        a, b = _users(rng, 400), _users(rng, 400)
        w = welch_test(_plays(rng, a, 0), _plays(rng, b, lift))
        covered["welch"] += w.difference_ci[0] <= true_diff <= w.difference_ci[1]
        p = paired_test(_plays(rng, a, 0), _plays(rng, a, lift))
        covered["paired"] += p.difference_ci[0] <= true_diff <= p.difference_ci[1]
        covered["relative"] += p.relative_ci[0] <= lift <= p.relative_ci[1]
    for name, hits in covered.items():
        assert 0.92 <= hits / sims <= 0.98, (name, hits / sims)


def test_sample_size_formula_by_hand() -> None:
    z = norm.ppf(0.975) + norm.ppf(0.8)
    assert sample_size_split(1.5, 1.5, 0.1) == math.ceil(z**2 * 4.5 / 0.01) == 3532
    assert sample_size_paired(1.0, 0.1) == math.ceil(z**2 / 0.01)
    # Equal spreads, correlation rho: pairing needs (1 - rho) of the users per arm.
    sd, rho = 2.0, 0.7
    sd_d = math.sqrt(2 * sd**2 * (1 - rho))
    ratio = sample_size_paired(sd_d, 0.05) / sample_size_split(sd, sd, 0.05)
    assert ratio == pytest.approx(1 - rho, rel=1e-3)
    assert power_split(1.5, 1.5, 0.1, 3532) == pytest.approx(0.8, abs=1e-3)
    assert power_paired(1.0, 0.1, sample_size_paired(1.0, 0.1)) == pytest.approx(
        0.8, abs=1e-3
    )


@pytest.mark.parametrize("design", ["split", "paired"])
def test_power_formula_matches_simulated_power(design: str) -> None:
    rng = np.random.default_rng(4)
    lift, sims = 0.1, 1_000
    delta = lift * 0.6 * 2.0
    # Per-user spreads measured on a large pilot, as an analyst would.
    a = _users(rng, 50_000)
    c, t = _plays(rng, a, 0), _plays(rng, a, lift)
    if design == "split":
        n = sample_size_split(c.std(), t.std(), delta)
    else:
        n = sample_size_paired((t - c).std(), delta)
    detected = 0
    for _ in range(sims):
        if design == "split":
            x, y = _users(rng, n), _users(rng, n)
            r = welch_test(_plays(rng, x, 0), _plays(rng, y, lift))
        else:
            x = _users(rng, n)
            r = paired_test(_plays(rng, x, 0), _plays(rng, x, lift))
        detected += r.significant
    assert detected / sims == pytest.approx(0.8, abs=0.04)


def test_identical_users_give_an_exact_answer() -> None:
    same = paired_test([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert same.se == 0 and same.p_value == 0.0 and same.difference_ci == (1.0, 1.0)
    none = welch_test([1.0, 1.0], [1.0, 1.0])
    assert none.p_value == 1.0 and none.difference == 0


def test_errors_say_what_to_do() -> None:
    with pytest.raises(MeanTestInputError, match=r"1 user.*at least 2"):
        welch_test([1.0], [1.0, 2.0])
    with pytest.raises(
        MeanTestInputError, match=r"1 NaN .*positions \[1\].*counts as 0"
    ):
        welch_test([1.0, np.nan, 2.0], [1.0, 2.0])
    with pytest.raises(MeanTestInputError, match=r"aligned by position.*welch_test"):
        paired_test([1.0, 2.0, 3.0], [1.0, 2.0])
    with pytest.raises(MeanTestInputError, match="one value per user"):
        welch_test(np.ones((2, 2)), [1.0, 2.0])
    with pytest.raises(MeanTestInputError, match="non-zero number"):
        sample_size_split(1.0, 1.0, 0.0)
    with pytest.raises(MeanTestInputError, match="power must be in"):
        sample_size_paired(1.0, 0.1, power=1.0)
    with pytest.raises(MeanTestInputError, match="sd_difference must be a finite"):
        sample_size_paired(-1.0, 0.1)
    with pytest.raises(MeanTestInputError, match="confidence must be in"):
        paired_test([1.0, 2.0], [1.0, 3.0], confidence=95)
