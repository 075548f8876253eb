"""Simulated A/B tests keep the promises of the formulas they check."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ab_simulation import (
    SimulationInputError,
    UserPopulation,
    proportion_z_test,
    ratio_delta_test,
    rejection_rate,
    simulate_daily_z,
    simulate_proportion_tests,
    simulate_user_level_tests,
)
from mlsd_lib.evaluation.ab_test import (
    power_of_test,
    ratio_metric_test,
    sample_size_per_arm,
    two_proportion_test,
)


def test_vectorized_z_test_equals_the_scalar_one():
    clicks_c = np.array([120, 95, 300])
    n_c = np.array([2_000, 2_100, 5_000])
    clicks_t = np.array([140, 90, 330])
    n_t = np.array([2_050, 1_900, 5_000])
    z, p = proportion_z_test(clicks_c, n_c, clicks_t, n_t)
    for i in range(3):
        ref = two_proportion_test(clicks_c[i], n_c[i], clicks_t[i], n_t[i])
        assert z[i] == pytest.approx(ref.z, rel=1e-12)
        assert p[i] == pytest.approx(ref.p_value, rel=1e-12)


def test_vectorized_delta_method_equals_the_scalar_one():
    rng = np.random.default_rng(5)
    imps = rng.integers(1, 30, (3, 2, 50))
    clicks = rng.binomial(imps, rng.uniform(0.01, 0.3, (3, 2, 50)))
    z, p = ratio_delta_test(clicks[:, 0], imps[:, 0], clicks[:, 1], imps[:, 1])
    for i in range(3):
        ref = ratio_metric_test(clicks[i, 0], imps[i, 0], clicks[i, 1], imps[i, 1])
        assert z[i] == pytest.approx(ref.z, rel=1e-10)
        assert p[i] == pytest.approx(ref.p_value, rel=1e-10)


def test_aa_false_positive_rate_is_alpha_within_its_binomial_band():
    p = simulate_proportion_tests(0.05, 0.0, 20_000, experiments=4_000, seed=0)
    rate = rejection_rate(p, 0.05)
    assert rate.experiments == 4_000
    assert rate.contains(0.05), rate
    assert 0.04 < rate.rate < 0.06
    # p-values of a valid test are uniform under the null
    assert np.mean(p < 0.5) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("lift", [0.03, 0.05, 0.07])
def test_simulated_power_matches_the_formula(lift):
    n = sample_size_per_arm(0.05, 0.05)
    p = simulate_proportion_tests(0.05, lift, n, experiments=3_000, seed=1)
    rate = rejection_rate(p)
    assert abs(rate.rate - power_of_test(0.05, lift, n)) < 0.035, rate


def test_a_real_effect_is_found_more_often_than_alpha():
    p = simulate_proportion_tests(0.05, 0.1, 50_000, experiments=500, seed=2)
    assert rejection_rate(p).rate > 0.9


def test_simulations_are_seeded():
    a = simulate_proportion_tests(0.05, 0.02, 1_000, experiments=50, seed=7)
    b = simulate_proportion_tests(0.05, 0.02, 1_000, experiments=50, seed=7)
    c = simulate_proportion_tests(0.05, 0.02, 1_000, experiments=50, seed=8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_daily_z_accumulates_and_its_last_day_is_a_fixed_test():
    z, se = simulate_daily_z(0.05, 0.0, 5_000, 10, experiments=3_000, seed=3)
    assert z.shape == se.shape == (3_000, 10)
    assert np.all(np.diff(se, axis=1) < 0)  # more data, smaller error
    assert np.mean(np.abs(z[:, -1]) >= 1.96) == pytest.approx(0.05, abs=0.012)
    # consecutive looks share most of their data: strongly correlated
    assert np.corrcoef(z[:, -2], z[:, -1])[0, 1] > 0.9


def test_heterogeneous_users_inflate_the_impression_level_test_only():
    p = simulate_user_level_tests(
        UserPopulation(mean_impressions=20, ctr_mean=0.05, ctr_concentration=2.0),
        1_000,
        experiments=2_000,
        seed=4,
    )
    naive = rejection_rate(p["impression-level z-test"])
    delta = rejection_rate(p["user-level delta method"])
    assert naive.rate > 0.25, naive
    assert delta.contains(0.05), delta


def test_identical_users_make_both_analyses_agree():
    p = simulate_user_level_tests(
        UserPopulation(mean_impressions=20, ctr_mean=0.05, ctr_concentration=1e6),
        1_000,
        experiments=2_000,
        seed=5,
    )
    for values in p.values():
        assert rejection_rate(values).contains(0.05)


def test_user_population_draws_the_configured_means():
    clicks, imps = UserPopulation(10, 0.1, 5.0).draw(
        np.random.default_rng(0), (200_000,)
    )
    assert imps.min() >= 1
    assert imps.mean() == pytest.approx(10, rel=0.01)
    assert clicks.sum() / imps.sum() == pytest.approx(0.1, rel=0.02)


def test_rejection_rate_counts_strictly_below_alpha_and_prints_its_interval():
    rate = rejection_rate([0.01, 0.05, 0.7, 0.9], 0.05)
    assert (rate.rejections, rate.experiments, rate.rate) == (1, 4, 0.25)
    assert rate.ci[0] < 0.25 < rate.ci[1]
    assert str(rate).startswith("0.25 [") and str(rate).endswith("(1 of 4)")


def test_bad_settings_are_refused_with_the_fix():
    with pytest.raises(SimulationInputError, match="baseline_rate must be in"):
        simulate_proportion_tests(1.5, 0.0, 10, experiments=1, seed=0)
    with pytest.raises(SimulationInputError, match="experiments must be an integer"):
        simulate_proportion_tests(0.1, 0.0, 10, experiments=0, seed=0)
    with pytest.raises(SimulationInputError, match="at least 2 users"):
        ratio_delta_test([[1]], [[2]], [[1]], [[2]])
    with pytest.raises(SimulationInputError, match="mean_impressions must be >= 1"):
        UserPopulation(mean_impressions=0.5)
    with pytest.raises(MlsdError, match="no NaN"):
        rejection_rate([0.1, float("nan")])
