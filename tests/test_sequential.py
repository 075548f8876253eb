"""Peeking inflates false positives; the sequential methods do not."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.evaluation.ab_simulation import rejection_rate, simulate_daily_z
from mlsd_lib.evaluation.sequential import (
    SequentialInputError,
    boundary_crossing_probability,
    first_crossing,
    msprt_p_values,
    obrien_fleming_boundary,
)

DAYS = 14


@pytest.fixture(scope="module")
def aa_paths():
    return simulate_daily_z(0.05, 0.0, 8_000, DAYS, experiments=4_000, seed=11)


@pytest.mark.parametrize(
    ("looks", "constant"), [(2, 1.977), (3, 2.004), (4, 2.024), (5, 2.040)]
)
def test_obrien_fleming_constants_match_the_published_table(looks, constant):
    # Jennison & Turnbull (2000), Table 2.3, alpha = 0.05 two-sided
    assert obrien_fleming_boundary(looks)[-1] == pytest.approx(constant, abs=6e-4)


def test_one_look_is_the_fixed_test_and_early_bars_are_higher():
    assert obrien_fleming_boundary(1)[0] == pytest.approx(1.959964, abs=1e-6)
    bars = obrien_fleming_boundary(DAYS)
    assert np.all(np.diff(bars) < 0) and bars[0] > 7


def test_crossing_probability_of_one_look_is_the_normal_tail():
    assert boundary_crossing_probability(1.96, 1) == pytest.approx(0.05, abs=2e-4)


def test_naive_peeking_inflates_false_positives(aa_paths):
    z, _ = aa_paths
    peeking = rejection_rate(np.where(first_crossing(z, 1.96) >= 0, 0.0, 1.0))
    assert peeking.ci[0] > 0.15, peeking  # about 4x alpha at 14 looks


def test_obrien_fleming_keeps_alpha_under_daily_looks(aa_paths):
    z, _ = aa_paths
    stopped = first_crossing(z, obrien_fleming_boundary(DAYS)) >= 0
    rate = rejection_rate(np.where(stopped, 0.0, 1.0))
    assert rate.ci[0] <= 0.05, rate


def test_msprt_p_values_are_always_valid(aa_paths):
    z, se = aa_paths
    p = msprt_p_values(z * se, se, tau=0.0025)
    assert np.all(np.diff(p, axis=1) <= 0)  # a running minimum
    assert rejection_rate(p[:, -1]).rate <= 0.05


def test_sequential_methods_keep_power_for_a_real_effect():
    z, se = simulate_daily_z(0.05, 0.05, 8_800, DAYS, experiments=2_000, seed=12)
    fixed = np.mean(np.abs(z[:, -1]) >= 1.96)
    obf = np.mean(first_crossing(z, obrien_fleming_boundary(DAYS)) >= 0)
    msprt = np.mean(msprt_p_values(z * se, se, tau=0.0025)[:, -1] < 0.05)
    assert fixed > 0.75
    assert obf > 0.95 * fixed
    assert 0.4 < msprt < fixed


def test_first_crossing_reports_the_first_look():
    stats = np.array([[0.5, 2.5, 3.0], [0.1, 0.2, 0.3], [-4.0, 0.0, 0.0]])
    assert first_crossing(stats, 2.0).tolist() == [1, -1, 0]


def test_bad_inputs_are_refused():
    with pytest.raises(SequentialInputError, match="looks must be a whole number"):
        obrien_fleming_boundary(0)
    with pytest.raises(SequentialInputError, match="tau must be a positive"):
        msprt_p_values([0.1], [0.1], tau=0.0)
    with pytest.raises(SequentialInputError, match="start looking once"):
        msprt_p_values([0.1], [0.0], tau=0.1)
