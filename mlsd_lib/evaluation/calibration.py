"""Calibration: do predicted probabilities match observed rates, and how to repair them.

Introduced in ``casestudies/ad_click`` (offline evaluation) and used in
``casestudies/ad_click/06_monitoring_and_retraining.ipynb``. An ads system
multiplies pCTR by a bid to rank and to price, so a model that ranks well (high
AUC) but predicts 2 % where the truth is 1 % overcharges advertisers. Calibration
is therefore measured separately from ranking:

* a *reliability diagram* bins predictions and compares each bin's mean prediction
  with its observed click rate (with a Wilson interval, so a reader can tell noise
  from miscalibration);
* the *expected calibration error* (ECE) is the count-weighted mean gap over bins;
* the *calibration ratio* ``sum(predicted) / sum(observed)`` is the one number ads
  teams watch ("predicted ÷ observed CTR"; 1.0 is perfect, 1.1 over-predicts 10 %).

Miscalibration that preserves order is repaired after training by a monotone map
fitted on held-out data: Platt scaling (Platt 1999; a logistic regression on the
logit) or isotonic regression (pool-adjacent-violators; Zadrozny & Elkan 2002).
Neither changes the ranking, so AUC is unchanged while log loss and NE recover.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import norm

from mlsd_lib.evaluation.metrics import MetricInputError, _labels_and_values

_STRATEGIES = ("uniform", "quantile")


def _probabilities(y_true: ArrayLike, p: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, prob = _labels_and_values(y_true, p, "probabilities")
    if ((prob < 0.0) | (prob > 1.0)).any():
        raise MetricInputError(
            "probabilities must lie in [0, 1]; apply a sigmoid if these are logits."
        )
    return y.astype(np.float64), prob


def wilson_interval(
    successes: ArrayLike, trials: ArrayLike, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (vectorized).

    Preferred to the normal ("Wald") interval because it stays inside [0, 1] and
    keeps close to nominal coverage for small counts and rates near 0, which is
    exactly the sparse-click regime of CTR bins.
    """
    k = np.asarray(successes, dtype=np.float64)
    n = np.asarray(trials, dtype=np.float64)
    if (n <= 0).any() or (k < 0).any() or (k > n).any():
        raise MetricInputError("need 0 <= successes <= trials and trials > 0.")
    z = norm.ppf(0.5 + confidence / 2.0)
    rate = k / n
    denominator = 1.0 + z**2 / n
    center = (rate + z**2 / (2.0 * n)) / denominator
    half = z / denominator * np.sqrt(rate * (1.0 - rate) / n + z**2 / (4.0 * n**2))
    return np.clip(center - half, 0.0, 1.0), np.clip(center + half, 0.0, 1.0)


def _bin_edges(p: np.ndarray, num_bins: int, strategy: str) -> np.ndarray:
    if num_bins < 1:
        raise MetricInputError(f"num_bins must be >= 1, got {num_bins}.")
    if strategy == "uniform":
        return np.linspace(0.0, 1.0, num_bins + 1)
    if strategy == "quantile":
        inner = np.quantile(p, np.linspace(0.0, 1.0, num_bins + 1)[1:-1])
        # Always [0, ..., 1]: equal predictions collapse to fewer bins, never none.
        return np.unique(np.concatenate([[0.0], inner, [1.0]]))
    raise MetricInputError(f"strategy must be one of {_STRATEGIES}, got {strategy!r}.")


@dataclass(frozen=True)
class ReliabilityDiagram:
    """Per-bin calibration data; only non-empty bins are kept.

    ``mean_predicted[i]`` against ``observed_rate[i]`` is the diagram's point;
    ``ci_low``/``ci_high`` bound the observed rate (Wilson interval).
    """

    bin_lower: np.ndarray
    bin_upper: np.ndarray
    mean_predicted: np.ndarray
    observed_rate: np.ndarray
    count: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    strategy: str

    @property
    def ece(self) -> float:
        """ECE: the count-weighted mean over bins of ``|predicted - observed|``."""
        gaps = np.abs(self.mean_predicted - self.observed_rate)
        return float(np.sum(self.count * gaps) / np.sum(self.count))

    def to_frame(self) -> pd.DataFrame:
        """One row per non-empty bin, for display in a notebook."""
        return pd.DataFrame(
            {
                "bin_lower": self.bin_lower,
                "bin_upper": self.bin_upper,
                "count": self.count,
                "mean_predicted": self.mean_predicted,
                "observed_rate": self.observed_rate,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
            }
        )


def reliability_diagram(
    y_true: ArrayLike,
    p: ArrayLike,
    *,
    num_bins: int = 10,
    strategy: str = "uniform",
    confidence: float = 0.95,
) -> ReliabilityDiagram:
    """Bin predictions and compare mean prediction with observed rate per bin.

    Introduced in ``casestudies/ad_click``. ``strategy="uniform"`` uses equal-width
    bins on [0, 1]; ``"quantile"`` uses equal-mass bins (the same number of
    examples in each), which suits CTRs where almost every prediction is below
    0.05 and equal-width bins would put everything in the first one.
    """
    y, prob = _probabilities(y_true, p)
    edges = _bin_edges(prob, num_bins, strategy)
    index = np.clip(np.digitize(prob, edges[1:-1], right=False), 0, len(edges) - 2)
    num = len(edges) - 1
    count = np.bincount(index, minlength=num).astype(np.int64)
    sum_p = np.bincount(index, weights=prob, minlength=num)
    sum_y = np.bincount(index, weights=y, minlength=num)
    keep = count > 0
    count, sum_p, sum_y = count[keep], sum_p[keep], sum_y[keep]
    low, high = wilson_interval(sum_y, count, confidence)
    return ReliabilityDiagram(
        bin_lower=edges[:-1][keep],
        bin_upper=edges[1:][keep],
        mean_predicted=sum_p / count,
        observed_rate=sum_y / count,
        count=count,
        ci_low=low,
        ci_high=high,
        strategy=strategy,
    )


def expected_calibration_error(
    y_true: ArrayLike, p: ArrayLike, *, num_bins: int = 10, strategy: str = "uniform"
) -> float:
    """ECE: the count-weighted mean over bins of ``|mean predicted - observed rate|``.

    Introduced in ``casestudies/ad_click``. Depends on the binning; report the
    number of bins and the strategy with it.
    """
    return reliability_diagram(y_true, p, num_bins=num_bins, strategy=strategy).ece


def calibration_ratio(y_true: ArrayLike, p: ArrayLike) -> float:
    """``sum(predicted) / sum(observed)``: predicted ÷ observed CTR; 1.0 is ideal.

    Introduced in ``casestudies/ad_click``. Raises when there are no positives
    (the ratio is undefined: collect a longer window).
    """
    y, prob = _probabilities(y_true, p)
    clicks = float(y.sum())
    if clicks == 0:
        raise MetricInputError(
            f"no positive labels among {len(y)}: the calibration ratio divides by "
            f"the number of clicks. Use a longer window."
        )
    return float(prob.sum() / clicks)


def _logit(p: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    q = np.clip(p, eps, 1.0 - eps)
    return np.log(q) - np.log1p(-q)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class PlattScaler:
    """``q = sigmoid(a * logit(p) + b)`` (or ``a * score + b`` for raw scores)."""

    a: float
    b: float
    from_logits: bool = False

    def transform(self, p: ArrayLike) -> np.ndarray:
        """Recalibrated probabilities for probabilities (or logits) ``p``."""
        x = np.asarray(p, dtype=np.float64)
        z = x if self.from_logits else _logit(x)
        return _sigmoid(self.a * z + self.b)

    __call__ = transform


def fit_platt(
    p: ArrayLike,
    y_true: ArrayLike,
    *,
    from_logits: bool = False,
    max_iter: int = 50,
    l2: float = 1e-6,
) -> PlattScaler:
    """Platt scaling: a two-parameter logistic regression on the model's logit.

    Introduced in ``casestudies/ad_click``. Fitted by Newton's method with step
    halving (a handful of iterations: the problem is convex in two parameters);
    the tiny ``l2`` penalty keeps it finite on separable data. Fit on a held-out
    window, never on the training data the model has memorised. Starts at the
    identity (``a=1, b=0``), so an already calibrated model stays close to it.
    """
    y, x = _labels_and_values(y_true, p, "scores")
    y = y.astype(np.float64)
    z = x if from_logits else _logit(x)
    design = np.column_stack([z, np.ones_like(z)])
    w = np.array([1.0, 0.0])

    def objective(weights: np.ndarray) -> float:
        s = design @ weights
        # log(1 + e^s) - y s, written stably.
        return float(
            np.sum(np.logaddexp(0.0, s) - y * s) + 0.5 * l2 * weights @ weights
        )

    current = objective(w)
    for _ in range(max_iter):
        q = _sigmoid(design @ w)
        gradient = design.T @ (q - y) + l2 * w
        hessian = (design * (q * (1.0 - q))[:, None]).T @ design + l2 * np.eye(2)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(2), gradient)
        scale = 1.0
        while scale > 1e-8:
            candidate = w - scale * step
            value = objective(candidate)
            if value <= current:
                break
            scale /= 2.0
        else:
            break
        w, previous, current = candidate, current, value
        if previous - current < 1e-12 * max(1.0, abs(current)):
            break
    return PlattScaler(a=float(w[0]), b=float(w[1]), from_logits=from_logits)


@dataclass(frozen=True)
class IsotonicCalibrator:
    """A monotone step function fitted by pool-adjacent-violators.

    Each block ``k`` covers scores ``[x_low[k], x_high[k]]`` with value
    ``value[k]``; between blocks the map interpolates linearly, and outside the
    fitted range it is clipped to the end values. Non-decreasing by construction.
    """

    x_low: np.ndarray
    x_high: np.ndarray
    value: np.ndarray

    def transform(self, p: ArrayLike) -> np.ndarray:
        """Recalibrated probabilities for scores ``p``."""
        xs = np.column_stack([self.x_low, self.x_high]).ravel()
        ys = np.repeat(self.value, 2)
        return np.interp(np.asarray(p, dtype=np.float64), xs, ys)

    __call__ = transform


def fit_isotonic(p: ArrayLike, y_true: ArrayLike) -> IsotonicCalibrator:
    """Isotonic regression of labels on scores (pool-adjacent-violators).

    Introduced in ``casestudies/ad_click``. Sorting costs ``O(n log n)``; the PAV
    pass itself is ``O(n)`` (each merge removes a block from the stack). Tied
    scores are pooled first, so equal scores always get equal outputs. More
    flexible than Platt scaling (any monotone shape) but needs more data, and its
    steps make many examples share exactly one value.
    """
    y, x = _labels_and_values(y_true, p, "scores")
    unique_x, inverse = np.unique(x, return_inverse=True)
    weight = np.bincount(inverse).astype(np.float64)
    total = np.bincount(inverse, weights=y.astype(np.float64))
    # Stack of blocks: sum of labels, weight, first and last unique-x index.
    sums: list[float] = []
    weights: list[float] = []
    first: list[int] = []
    last: list[int] = []
    for i in range(len(unique_x)):
        sums.append(total[i])
        weights.append(weight[i])
        first.append(i)
        last.append(i)
        while len(sums) > 1 and sums[-2] / weights[-2] >= sums[-1] / weights[-1]:
            s, w, end = sums.pop(), weights.pop(), last.pop()
            first.pop()
            sums[-1] += s
            weights[-1] += w
            last[-1] = end
    return IsotonicCalibrator(
        x_low=unique_x[np.array(first)],
        x_high=unique_x[np.array(last)],
        value=np.array(sums) / np.array(weights),
    )
