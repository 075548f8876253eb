"""Normalized entropy against the true probabilities, not against sampled clicks.

Introduced in ``casestudies/ad_click/05_serving_and_ab_test.ipynb`` (what a stale
precomputed score costs). On a simulated world the true ``p(click)`` of every
impression is known, so a prediction can be scored by its *expected* log loss,
``-(t log p + (1 - t) log(1 - p))`` averaged over the rows, instead of the log
loss of one draw of 0/1 labels. The expectation is what the sampled log loss
estimates, without the sampling noise: two serving designs that differ by 0.002
in NE can be told apart on thousands of rows rather than millions. Dividing by
the entropy of the mean true rate makes it an NE (see
:mod:`~mlsd_lib.evaluation.entropy`); the truth itself scores
``mean H(t) / H(mean t)``, the floor no model can beat.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.evaluation.entropy import binary_entropy
from mlsd_lib.evaluation.metrics import MetricInputError

__all__ = ["expected_normalized_entropy"]


def expected_normalized_entropy(
    true_p: ArrayLike, p: ArrayLike, eps: float = 1e-15
) -> float:
    """Expected log loss of ``p`` when clicks follow ``true_p``, over ``H(mean t)``."""
    t = np.asarray(true_p, dtype=np.float64)
    q = np.asarray(p, dtype=np.float64)
    if t.shape != q.shape or t.ndim != 1 or t.size == 0:
        raise MetricInputError(
            f"true_p and p must be 1-D and of one length, got shapes {t.shape} and "
            f"{q.shape}."
        )
    if np.any((t < 0) | (t > 1)) or np.any(np.isnan(q)):
        raise MetricInputError(
            "true_p must be probabilities in [0, 1] and p must have no NaN: check "
            "that the rows are aligned."
        )
    q = np.clip(q, eps, 1 - eps)
    loss = -(t * np.log(q) + (1 - t) * np.log1p(-q))
    return float(loss.mean() / binary_entropy(float(t.mean())))
