"""The sample-ratio check catches a broken split and rarely stops a healthy one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chisquare

from mlsd_lib.evaluation.ab_simulation import rejection_rate
from mlsd_lib.evaluation.sample_ratio import (
    SRM_THRESHOLD,
    SampleRatioError,
    sample_ratio_check,
    sample_ratio_p_values,
)


def test_agrees_with_scipy_chisquare():
    counts = [50_600, 49_400]
    check = sample_ratio_check(counts)
    ref = chisquare(counts)
    assert check.chi2 == pytest.approx(ref.statistic)
    assert check.p_value == pytest.approx(ref.pvalue)
    assert check.mismatch and check.observed_shares[0] == pytest.approx(0.506)


def test_uneven_configured_split():
    assert not sample_ratio_check([90_100, 9_900], [0.9, 0.1]).mismatch
    assert sample_ratio_check([50_000, 50_000], [0.9, 0.1]).mismatch


def test_healthy_splits_fire_at_the_threshold_rate():
    rng = np.random.default_rng(0)
    treated = rng.binomial(100_000, 0.5, 20_000)
    p = sample_ratio_p_values(np.column_stack([100_000 - treated, treated]))
    assert rejection_rate(p, 0.05).contains(0.05)
    assert rejection_rate(p, SRM_THRESHOLD).rate < 0.003


def test_a_split_losing_one_percent_of_treatment_is_caught():
    rng = np.random.default_rng(1)
    assigned = rng.binomial(1_000_000, 0.5, 2_000)
    kept = rng.binomial(assigned, 0.99)  # 1% of treatment users lost
    p = sample_ratio_p_values(np.column_stack([1_000_000 - assigned, kept]))
    assert rejection_rate(p, SRM_THRESHOLD).rate > 0.95
    # at a tenth of the users the same bug hides in the noise
    small = rng.binomial(100_000, 0.5, 2_000)
    p = sample_ratio_p_values(
        np.column_stack([100_000 - small, rng.binomial(small, 0.99)])
    )
    assert rejection_rate(p, SRM_THRESHOLD).rate < 0.2


def test_bad_inputs_are_refused():
    with pytest.raises(SampleRatioError, match="must sum to 1"):
        sample_ratio_check([10, 10], [0.5, 0.6])
    with pytest.raises(SampleRatioError, match="at least 2 arms"):
        sample_ratio_p_values([[10]])
    with pytest.raises(SampleRatioError, match="whole numbers"):
        sample_ratio_check([10.5, 10])
