r"""A/B tests on a ratio metric (clicks per query) when users are randomized.

Introduced in ``casestudies/visual_search/07_online_evaluation.ipynb`` (step 7, the
online test of two embedders: "clicks and saves per query"). A metric such as clicks per
query is a ratio of two per-user sums, :math:`R = \sum_u c_u / \sum_u n_u`, and the unit
of randomization is the user, not the query: one user's queries are correlated, so
treating queries as independent makes the interval too narrow.
:func:`~mlsd_lib.evaluation.ab_test.ratio_metric_test` handles the case of a rate (at
most one click per impression); a query can earn several clicks, so the numerator may
exceed the denominator here.

**Linearization** (Deng, Knoblich & Lu 2018, "Applying the Delta Method in
Metric Analytics"). Each user's value

.. math::

    z_u = R + \frac{c_u - R\, n_u}{\bar n}

has mean exactly :math:`R` (the residuals :math:`c_u - R n_u` sum to zero),
and its variance over users divided by their number is the delta method's
variance of :math:`\hat R`. So a ratio metric becomes a per-user mean, and the
per-user tests of :mod:`~mlsd_lib.evaluation.ab_continuous` apply unchanged:
Welch for a split (:func:`ratio_split_test`), the paired t-test when every
user was measured under both arms with the same denominators (a simulator's
common random numbers: :func:`ratio_paired_test`). Their intervals, p-values
and relative-lift intervals are those tests'; nothing is re-derived here.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ab_continuous import MeanDifference, paired_test, welch_test

__all__ = [
    "RatioMetricError",
    "linearized_ratio",
    "ratio_paired_test",
    "ratio_split_test",
]


class RatioMetricError(MlsdError, ValueError):
    """Per-user numerators and denominators that do not make a ratio metric."""


def _pair(numerators: ArrayLike, denominators: ArrayLike, arm: str):
    num = np.asarray(numerators, dtype=np.float64)
    den = np.asarray(denominators, dtype=np.float64)
    if num.ndim != 1 or num.shape != den.shape:
        raise RatioMetricError(
            f"{arm}: numerators and denominators must be 1-D arrays of equal length, "
            f"one entry per user (got shapes {num.shape} and {den.shape})."
        )
    if not (np.isfinite(num).all() and np.isfinite(den).all()):
        raise RatioMetricError(f"{arm}: per-user totals must be finite.")
    if (den < 0).any() or den.sum() <= 0:
        raise RatioMetricError(
            f"{arm}: denominators (e.g. queries per user) must be >= 0 with a "
            "positive total; drop the arm or widen the experiment."
        )
    return num, den


def linearized_ratio(
    numerators: ArrayLike, denominators: ArrayLike, *, arm: str = "values"
) -> np.ndarray:
    """Each user's linearized value of ``sum(numerators) / sum(denominators)``.

    Their mean is the ratio; their variance over ``len`` users is the delta
    method's variance of the ratio (module docstring).
    """
    num, den = _pair(numerators, denominators, arm)
    mean_den = den.mean()
    ratio = num.sum() / den.sum()
    return ratio + (num - ratio * den) / mean_den


def ratio_split_test(
    control_numerators: ArrayLike,
    control_denominators: ArrayLike,
    treatment_numerators: ArrayLike,
    treatment_denominators: ArrayLike,
    *,
    confidence: float = 0.95,
) -> MeanDifference:
    """Treatment against control on a ratio metric, users split between arms:
    Welch's test on the linearized values. ``n_control`` and ``n_treatment``
    count users; the means are the two ratios."""
    return welch_test(
        linearized_ratio(control_numerators, control_denominators, arm="control"),
        linearized_ratio(treatment_numerators, treatment_denominators, arm="treatment"),
        confidence=confidence,
    )


def ratio_paired_test(
    control_numerators: ArrayLike,
    treatment_numerators: ArrayLike,
    denominators: ArrayLike,
    *,
    confidence: float = 0.95,
) -> MeanDifference:
    """Both arms measured on the same users with the same denominators (the
    same queries): the paired t-test on the linearized values."""
    den = np.asarray(denominators, dtype=np.float64)
    return paired_test(
        linearized_ratio(control_numerators, den, arm="control"),
        linearized_ratio(treatment_numerators, den, arm="treatment"),
        confidence=confidence,
    )
