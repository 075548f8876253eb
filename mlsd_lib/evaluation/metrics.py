"""ROC AUC and log loss, written out so a reader can see what they measure.

Introduced in ``notebooks/feature_store.ipynb``. AUC is computed as a rank
statistic (Mann-Whitney U): the probability that a random positive scores above a
random negative, ties counting one half. That is exact, ``O(n log n)`` and needs
no threshold sweep. Log loss is the mean negative log-likelihood of the labels
under the predicted probabilities: unlike AUC it punishes miscalibration.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError


class MetricInputError(MlsdError, ValueError):
    """The labels or scores cannot be evaluated; the message says why."""


def _labels_and_values(
    y_true: ArrayLike, values: ArrayLike, what: str
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    v = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or v.ndim != 1:
        raise MetricInputError(
            f"labels and {what} must be 1-D (got shapes {y.shape} and {v.shape}); "
            f"flatten them with .ravel()."
        )
    if len(y) != len(v):
        raise MetricInputError(
            f"{len(y)} labels but {len(v)} {what}: pass exactly one per label."
        )
    if len(y) == 0:
        raise MetricInputError("no labels: a metric needs at least one example.")
    if y.dtype != bool:
        numeric = y.astype(np.float64)
        if not np.isin(numeric, (0.0, 1.0)).all():
            seen = np.unique(numeric)[:5].tolist()
            raise MetricInputError(
                f"labels must be 0/1 or bool (found values such as {seen})."
            )
        y = numeric == 1.0
    if not np.isfinite(v).all():
        raise MetricInputError(
            f"{what} contain NaN or infinity at positions "
            f"{np.flatnonzero(~np.isfinite(v))[:5].tolist()}; fix the model's output."
        )
    return y, v


def average_ranks(values: ArrayLike) -> np.ndarray:
    """1-based ranks of ``values``; tied values share the average of their ranks."""
    v = np.asarray(values, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    sorted_values = v[order]
    # Each run of equal values [start, end) gets rank (start + 1 + end) / 2.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(v)]
    run_ranks = (starts + 1 + ends) / 2.0
    ranks = np.empty(len(v), dtype=np.float64)
    ranks[order] = np.repeat(run_ranks, ends - starts)
    return ranks


def roc_auc(y_true: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative).

    Ties between a positive and a negative count one half. Raises
    :class:`MetricInputError` when only one class is present (AUC is undefined:
    there is no pair to rank), when lengths differ, or on NaN scores.
    """
    y, s = _labels_and_values(y_true, scores, "scores")
    num_pos = int(y.sum())
    num_neg = len(y) - num_pos
    if num_pos == 0 or num_neg == 0:
        only = "positive" if num_neg == 0 else "negative"
        raise MetricInputError(
            f"all {len(y)} labels are {only}: AUC needs both classes. Use a larger "
            f"or stratified evaluation set."
        )
    rank_sum = average_ranks(s)[y].sum()
    u_statistic = rank_sum - num_pos * (num_pos + 1) / 2.0
    return float(u_statistic / (num_pos * num_neg))


def log_loss(y_true: ArrayLike, p: ArrayLike, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of 0/1 labels under probabilities ``p``.

    ``p`` is clipped to ``[eps, 1 - eps]`` so a confident mistake costs a large
    but finite amount; probabilities outside ``[0, 1]`` are an error (pass
    probabilities, not logits).
    """
    if not 0.0 < eps < 0.5:
        raise MetricInputError(f"eps must be in (0, 0.5), got {eps}.")
    y, probabilities = _labels_and_values(y_true, p, "probabilities")
    if ((probabilities < 0.0) | (probabilities > 1.0)).any():
        raise MetricInputError(
            "probabilities must lie in [0, 1]; apply a sigmoid if these are logits."
        )
    clipped = np.clip(probabilities, eps, 1.0 - eps)
    return float(-np.mean(np.where(y, np.log(clipped), np.log1p(-clipped))))
