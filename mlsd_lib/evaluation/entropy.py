"""Normalized entropy (NE): log loss relative to knowing only the base rate.

Introduced in ``casestudies/ad_click`` (offline evaluation) and used again in
``casestudies/ad_click/04_evaluation.ipynb``. He et al. (2014, "Practical Lessons
from Predicting Clicks on Ads at Facebook") report models by *normalized
entropy*: the average log loss divided by the entropy of the background CTR,

    NE = log_loss(y, p) / H(p̄),   H(p̄) = -(p̄ log p̄ + (1 - p̄) log(1 - p̄)),

where ``p̄`` is the empirical click rate of the evaluated labels. A model that
always predicts ``p̄`` has NE exactly 1; lower is better. Dividing by ``H(p̄)``
makes numbers comparable across days and traffic segments whose base rates
differ, which raw log loss is not (a 1 % CTR segment has a much smaller log loss
than a 10 % one for equally useful models).

Unlike AUC, NE is sensitive to calibration: scaling every prediction by 2 keeps
the ranking and the AUC but raises NE.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.evaluation.metrics import MetricInputError, _labels_and_values, log_loss


def binary_entropy(p: float) -> float:
    """Entropy in nats of a Bernoulli(``p``) variable; 0 at ``p`` = 0 or 1."""
    if not 0.0 <= p <= 1.0:
        raise MetricInputError(f"a probability must lie in [0, 1], got {p}.")
    if p in (0.0, 1.0):
        return 0.0
    return -(p * math.log(p) + (1.0 - p) * math.log1p(-p))


def normalized_entropy(y_true: ArrayLike, p: ArrayLike, eps: float = 1e-15) -> float:
    """Log loss of ``p`` divided by the entropy of the labels' base rate.

    Introduced in ``casestudies/ad_click``. 1.0 means "no better than predicting
    the average CTR for everyone"; the gap below 1 is the information the model
    adds. Raises :class:`~mlsd_lib.evaluation.metrics.MetricInputError` when every
    label is the same: the base rate's entropy is then 0 and NE is undefined (0/0
    or x/0), so evaluate on a window that contains both clicks and non-clicks.
    """
    y, _ = _labels_and_values(y_true, p, "probabilities")
    base_rate = float(np.mean(y))
    if base_rate in (0.0, 1.0):
        only = "1 (clicked)" if base_rate == 1.0 else "0 (not clicked)"
        raise MetricInputError(
            f"all {len(y)} labels are {only}: the base rate's entropy is 0, so NE is "
            f"undefined. Evaluate on a window with both outcomes."
        )
    return log_loss(y, p, eps=eps) / binary_entropy(base_rate)
