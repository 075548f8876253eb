"""A/B testing: interval coverage, power by simulation, and textbook numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from mlsd_lib.evaluation import (
    ABTestInputError,
    minimum_detectable_effect,
    power_of_test,
    ratio_metric_test,
    sample_size_per_arm,
    two_proportion_test,
)


def test_hand_computed_two_proportion_test() -> None:
    result = two_proportion_test(1000, 10_000, 1100, 10_000)
    assert result.absolute_lift == pytest.approx(0.01)
    assert result.relative_lift == pytest.approx(0.10)
    pooled = 2100 / 20_000
    z = 0.01 / math.sqrt(pooled * (1 - pooled) * 2 / 10_000)
    assert result.z == pytest.approx(z)
    assert result.p_value == pytest.approx(2 * norm.sf(z))
    se = math.sqrt(0.1 * 0.9 / 10_000 + 0.11 * 0.89 / 10_000)
    low, high = result.absolute_ci
    assert low == pytest.approx(0.01 - 1.959964 * se, rel=1e-5)
    assert high == pytest.approx(0.01 + 1.959964 * se, rel=1e-5)
    rel_low, rel_high = result.relative_ci
    assert rel_low < 0.10 < rel_high
    assert rel_high - 0.10 > 0.10 - rel_low  # log-scale interval is asymmetric
    assert result.significant == (result.p_value < 0.05)


def test_textbook_sample_size() -> None:
    # (1.959964 * sqrt(2 * .105 * .895) + 0.841621 * sqrt(.09 + .0979))^2 / .01^2
    expected = (
        norm.ppf(0.975) * math.sqrt(2 * 0.105 * 0.895)
        + norm.ppf(0.8) * math.sqrt(0.1 * 0.9 + 0.11 * 0.89)
    ) ** 2 / 0.01**2
    assert expected == pytest.approx(14_750.8, abs=0.1)
    assert sample_size_per_arm(0.10, 0.10, alpha=0.05, power=0.8) == 14_751
    assert power_of_test(0.10, 0.10, expected) == pytest.approx(0.8, abs=1e-3)


def test_mde_inverts_sample_size() -> None:
    n = sample_size_per_arm(0.02, 0.05)
    assert minimum_detectable_effect(0.02, n) == pytest.approx(0.05, rel=1e-3)
    assert minimum_detectable_effect(0.02, 4 * n) < minimum_detectable_effect(0.02, n)


def test_aa_interval_covers_zero_at_nominal_rate() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    covered = 0
    for _ in range(200):
        c, t = rng.binomial(n, 0.05, size=2)
        low, high = two_proportion_test(c, n, t, n).absolute_ci
        covered += low <= 0 <= high
    assert 0.9 <= covered / 200 <= 0.99


def test_power_formula_reaches_power_by_simulation() -> None:
    rng = np.random.default_rng(1)
    n = sample_size_per_arm(0.10, 0.10)
    sims = 2000
    control = rng.binomial(n, 0.10, size=sims)
    treatment = rng.binomial(n, 0.11, size=sims)
    pooled = (control + treatment) / (2 * n)
    z = (treatment - control) / n / np.sqrt(pooled * (1 - pooled) * 2 / n)
    power = np.mean(np.abs(z) > norm.ppf(0.975))
    assert power == pytest.approx(0.8, abs=0.03)


def _users(rng, num_users: int, impressions_mean: float = 30.0):
    # Users differ in propensity, and each has many impressions: clustered clicks.
    propensity = rng.beta(0.5, 9.5, size=num_users)
    impressions = rng.poisson(impressions_mean, size=num_users) + 1
    clicks = rng.binomial(impressions, propensity)
    return clicks, impressions


def test_delta_method_covers_where_naive_undercovers() -> None:
    rng = np.random.default_rng(2)
    naive_cover = delta_cover = 0
    sims = 200
    for _ in range(sims):
        c_clicks, c_imps = _users(rng, 1000)
        t_clicks, t_imps = _users(rng, 1000)
        delta = ratio_metric_test(c_clicks, c_imps, t_clicks, t_imps)
        naive = two_proportion_test(
            c_clicks.sum(), c_imps.sum(), t_clicks.sum(), t_imps.sum()
        )
        delta_cover += delta.absolute_ci[0] <= 0 <= delta.absolute_ci[1]
        naive_cover += naive.absolute_ci[0] <= 0 <= naive.absolute_ci[1]
    assert 0.9 <= delta_cover / sims <= 0.99
    assert naive_cover / sims < 0.85


def test_ratio_metric_matches_pooled_ctr_and_method() -> None:
    result = ratio_metric_test([1, 0, 2], [10, 5, 5], [3, 1, 0], [10, 10, 10])
    assert result.control_rate == pytest.approx(3 / 20)
    assert result.treatment_rate == pytest.approx(4 / 30)
    assert "delta" in result.method


def test_clear_errors() -> None:
    with pytest.raises(ABTestInputError, match="clicks <= impressions"):
        two_proportion_test(11, 10, 1, 10)
    with pytest.raises(ABTestInputError, match="baseline_rate"):
        sample_size_per_arm(0.0, 0.1)
    with pytest.raises(ABTestInputError, match="non-zero"):
        sample_size_per_arm(0.5, 0.0)
    with pytest.raises(ABTestInputError, match="equal length"):
        ratio_metric_test([1, 2], [3], [1, 2], [3, 4])
