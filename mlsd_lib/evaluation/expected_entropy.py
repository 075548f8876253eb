"""Log loss and normalized entropy against the true probabilities, not sampled clicks.

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

:func:`excess_log_loss` subtracts that floor row by row: the mean KL divergence
from the truth to the prediction, 0 for a perfect model. Two arms of a canary, or
two retraining policies on different days, serve rows whose clicks are more or
less predictable; the excess leaves only what each model gets wrong (used by
``notebooks/monitoring.ipynb`` and ``notebooks/failure_drills.ipynb``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.evaluation.entropy import binary_entropy
from mlsd_lib.evaluation.metrics import MetricInputError

__all__ = ["excess_log_loss", "expected_log_loss", "expected_normalized_entropy"]


def _aligned(true_p: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
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
    return t, q


def expected_log_loss(true_p: ArrayLike, p: ArrayLike, eps: float = 1e-15) -> float:
    """Mean log loss of ``p`` when clicks follow ``true_p``: what infinitely many
    labels would give, without their noise (a simulator's privilege)."""
    t, q = _aligned(true_p, p)
    q = np.clip(q, eps, 1 - eps)
    return float(np.mean(-(t * np.log(q) + (1 - t) * np.log1p(-q))))


def excess_log_loss(true_p: ArrayLike, p: ArrayLike, eps: float = 1e-12) -> float:
    """Mean KL(Bernoulli(true_p) || Bernoulli(p)): the log loss ``p`` adds, in
    expectation, over the true probabilities (0 for the truth itself)."""
    t, q = _aligned(true_p, p)
    t = np.clip(t, eps, 1 - eps)
    q = np.clip(q, eps, 1 - eps)
    kl = t * np.log(t / q) + (1 - t) * np.log((1 - t) / (1 - q))
    return float(kl.mean())


def expected_normalized_entropy(
    true_p: ArrayLike, p: ArrayLike, eps: float = 1e-15
) -> float:
    """Expected log loss of ``p`` when clicks follow ``true_p``, over ``H(mean t)``."""
    t, _ = _aligned(true_p, p)
    return expected_log_loss(true_p, p, eps) / binary_entropy(float(t.mean()))
