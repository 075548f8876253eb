r"""How many days an A/B test must run, from traffic and the effect to detect.

Introduced in ``notebooks/evaluation.ipynb`` (and worked by hand in the framework
chapter's Example 3, ``book/framework.md``). The sample size per arm comes from
the power formula of :func:`~mlsd_lib.evaluation.ab_test.sample_size_per_arm`;
the days are that size divided by the units one arm receives per day. Two
corrections turn the count into a calendar:

* **variance inflation.** The formula treats impressions as independent. When
  users are randomized and each sees many impressions, the true variance of CTR
  is larger by a factor (the *design effect*) that the delta method measures on
  pre-period data; the sample must grow by the same factor.
* **a minimum of whole weeks.** Behaviour differs by weekday and a new model has
  novelty effects, so a test runs at least ``min_days`` (7) whatever the count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlsd_lib.evaluation.ab_test import ABTestInputError, sample_size_per_arm

__all__ = ["ExperimentDuration", "experiment_duration"]


@dataclass(frozen=True)
class ExperimentDuration:
    """The sample an experiment needs and the days it takes to collect it."""

    n_per_arm: int
    units_per_arm_per_day: float
    days_for_sample: float
    min_days: int

    @property
    def days(self) -> int:
        """Days to run: the sample's days rounded up, at least ``min_days``."""
        return max(math.ceil(self.days_for_sample), self.min_days)


def experiment_duration(
    baseline_rate: float,
    relative_mde: float,
    daily_units: float,
    *,
    traffic_share_per_arm: float,
    alpha: float = 0.05,
    power: float = 0.8,
    variance_inflation: float = 1.0,
    min_days: int = 7,
) -> ExperimentDuration:
    """Days to detect ``relative_mde`` on a rate of ``baseline_rate``.

    ``daily_units`` is the whole product's daily impressions (or users, if the
    rate is per user); each arm receives ``traffic_share_per_arm`` of them.
    ``variance_inflation`` multiplies the independent-units sample size (the
    design effect of user randomization).
    """
    if not daily_units > 0:
        raise ABTestInputError(
            f"daily_units must be > 0 (the product's daily traffic), got {daily_units}."
        )
    if not 0.0 < traffic_share_per_arm <= 0.5:
        raise ABTestInputError(
            f"traffic_share_per_arm must be in (0, 0.5], got {traffic_share_per_arm}: "
            "two arms cannot each take more than half the traffic."
        )
    if not variance_inflation >= 1.0:
        raise ABTestInputError(
            f"variance_inflation must be >= 1 (1 = independent units), got "
            f"{variance_inflation}."
        )
    if int(min_days) != min_days or min_days < 1:
        raise ABTestInputError(f"min_days must be a whole number >= 1, got {min_days}.")
    n = math.ceil(
        sample_size_per_arm(baseline_rate, relative_mde, alpha=alpha, power=power)
        * variance_inflation
    )
    per_day = daily_units * traffic_share_per_arm
    return ExperimentDuration(
        n_per_arm=n,
        units_per_arm_per_day=per_day,
        days_for_sample=n / per_day,
        min_days=int(min_days),
    )
