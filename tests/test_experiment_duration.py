"""Test duration from traffic, agreeing with the framework's Example 3."""

from __future__ import annotations

import pytest

from mlsd_lib.evaluation.ab_test import ABTestInputError, sample_size_per_arm
from mlsd_lib.evaluation.experiment_duration import experiment_duration


def test_framework_example_3():
    # 1% CTR, 1% relative MDE, 1e10 impressions a day, 1% of traffic per arm
    plan = experiment_duration(0.01, 0.01, 1e10, traffic_share_per_arm=0.01)
    rule_of_thumb = 16 * 0.01 * 0.99 / (0.01 * 0.01) ** 2
    assert plan.n_per_arm == pytest.approx(rule_of_thumb, rel=0.02)
    assert plan.units_per_arm_per_day == 1e8
    assert plan.days_for_sample < 1 and plan.days == 7  # a week regardless


def test_small_traffic_needs_many_days_and_inflation_scales_them():
    plan = experiment_duration(0.05, 0.02, 1e6, traffic_share_per_arm=0.05)
    assert plan.n_per_arm == sample_size_per_arm(0.05, 0.02)
    assert plan.days == pytest.approx(plan.n_per_arm / 5e4, abs=1)
    inflated = experiment_duration(
        0.05, 0.02, 1e6, traffic_share_per_arm=0.05, variance_inflation=3.0
    )
    assert inflated.days_for_sample == pytest.approx(3 * plan.days_for_sample, 1e-4)


def test_bad_inputs_are_refused():
    with pytest.raises(ABTestInputError, match="cannot each take more than half"):
        experiment_duration(0.01, 0.01, 1e6, traffic_share_per_arm=0.6)
    with pytest.raises(ABTestInputError, match="variance_inflation must be >= 1"):
        experiment_duration(
            0.01, 0.01, 1e6, traffic_share_per_arm=0.1, variance_inflation=0.5
        )
