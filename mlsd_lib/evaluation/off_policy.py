r"""Off-policy evaluation: what a new policy would earn, from another policy's log.

Introduced in ``casestudies/recommender/05_evaluation.ipynb`` (step 5, "Offline and
online evaluation"). A log records, for every decision, what the *logging* policy
:math:`\mu` chose, the probability it had of choosing it (the propensity,
:math:`\mu(a_i \mid x_i)`) and the reward :math:`r_i` that followed. A *target*
policy :math:`\pi` would have chosen differently; its value
:math:`V(\pi) = \mathbb{E}_{x}\,\mathbb{E}_{a \sim \pi(\cdot \mid x)}[r]` can
still be estimated by reweighting the logged rewards with the importance
weights :math:`w_i = \pi(a_i \mid x_i) / \mu(a_i \mid x_i)`:

* **IPS** (inverse propensity scoring; Horvitz & Thompson 1952):
  :math:`\hat V = \frac1n \sum_i w_i r_i`. Unbiased whenever :math:`\mu > 0`
  wherever :math:`\pi > 0`, but its variance grows with the weights: a target
  that picks what the logger rarely picked leans on a few rows with enormous
  weights.
* **Self-normalized IPS** (SNIPS; Swaminathan & Joachims 2015):
  :math:`\hat V = \sum_i w_i r_i / \sum_i w_i`. Divides by the realized total
  weight instead of its expectation :math:`n`; slightly biased, far less
  variable, and invariant to adding a constant to the rewards.
* **Clipped IPS** (Bottou et al. 2013): :math:`\frac1n \sum_i \min(w_i, M) r_i`.
  Caps the weights at :math:`M`: less variance, a bias toward what the logger
  did (downward for non-negative rewards), which the cap trades off.

Each estimate comes with a standard error and a normal interval, and the
**effective sample size** :math:`(\sum w)^2 / \sum w^2` (Kish): how many
equally weighted rows the estimate is really worth. An ESS of a few dozen out
of a million rows says the interval cannot be trusted either: the normal
approximation needs many contributing rows, and a target far from the logger
does not have them.

**Standard errors.** Rows are rarely independent: one user contributes many
impressions, and their rewards move together. Pass ``groups`` (e.g. the user
of each row) and the standard error is the cluster-robust one, computed from
per-group sums, as the delta method does for ratio metrics in
:mod:`~mlsd_lib.evaluation.ab_test`; without ``groups`` rows are treated as
independent. For IPS, :math:`\widehat{\mathrm{Var}} = \frac{G}{G-1}
\sum_g (\sum_{i \in g} (w_i r_i - \hat V))^2 / n^2`; for SNIPS, the
linearization :math:`\sum_g (\sum_{i \in g} w_i (r_i - \hat V))^2 / (\sum w)^2`
with the same :math:`G/(G-1)`.

Written out because the book teaches them. The caller computes the target's
probability of each logged action (that is where the case study lives: what
the policies are, what a decision is); everything here is arrays in, numbers
out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy.stats import norm

from mlsd_lib.errors import MlsdError

__all__ = [
    "ESTIMATORS",
    "OffPolicyEstimate",
    "OffPolicyInputError",
    "PropensityError",
    "clipped_ips",
    "effective_sample_size",
    "importance_weights",
    "ips",
    "off_policy_table",
    "snips",
]

#: The estimators :func:`off_policy_table` runs, in order.
ESTIMATORS: tuple[str, ...] = ("IPS", "SNIPS", "clipped IPS")


class OffPolicyInputError(MlsdError, ValueError):
    """Rewards, probabilities or settings an estimator cannot use; says why."""


class PropensityError(OffPolicyInputError):
    """A logging propensity is zero, negative, NaN or above 1: no weight exists."""


@dataclass(frozen=True)
class OffPolicyEstimate:
    """An estimate of a target policy's mean reward per logged decision.

    ``value`` with standard error ``se`` and normal interval ``ci`` at
    ``confidence``; ``n`` rows, ``ess`` their effective sample size,
    ``max_weight`` the largest importance weight and ``clipped`` how many
    weights the cap changed (0 unless clipped IPS). ``groups`` is the number
    of clusters the standard error was computed over (``n`` when rows are
    treated as independent).
    """

    estimator: str
    value: float
    se: float
    ci: tuple[float, float]
    confidence: float
    n: int
    ess: float
    max_weight: float
    clipped: int
    groups: int


def _positions(mask: np.ndarray) -> str:
    bad = np.flatnonzero(mask)
    shown = ", ".join(str(i) for i in bad[:5])
    return f"{bad.size} row(s) (first: {shown}{', ...' if bad.size > 5 else ''})"


def importance_weights(
    target_probability: ArrayLike, logging_propensity: ArrayLike
) -> np.ndarray:
    """``π(a_i | x_i) / μ(a_i | x_i)`` per logged row, after checking both.

    The propensity must lie in (0, 1]: IPS divides by it, and a row the logger
    could not have produced (0) or did not record (NaN) has no weight. The
    target's probability must lie in [0, 1].
    """
    pi = np.asarray(target_probability, dtype=np.float64)
    mu = np.asarray(logging_propensity, dtype=np.float64)
    if pi.ndim != 1 or pi.shape != mu.shape:
        raise OffPolicyInputError(
            f"target_probability and logging_propensity must be 1-D arrays of the "
            f"same length, one entry per logged row; got shapes {pi.shape} and "
            f"{mu.shape}."
        )
    if len(mu) == 0:
        raise OffPolicyInputError("the log is empty: an estimate needs logged rows.")
    missing = ~np.isfinite(mu) | (mu <= 0)
    if missing.any():
        raise PropensityError(
            f"the logging propensity is 0, negative or NaN in {_positions(missing)}: "
            "IPS divides by it. Log the probability the logging policy had of "
            "choosing each logged item (a policy that reports none is logged as "
            "NaN), or drop those rows knowing the estimate then covers only the "
            "rest of the traffic."
        )
    above = mu > 1.0 + 1e-9
    if above.any():
        raise PropensityError(
            f"the logging propensity exceeds 1 in {_positions(above)}: a "
            "propensity is a probability; check that it is the probability of "
            "the logged item in its slot, not a score."
        )
    bad_pi = ~np.isfinite(pi) | (pi < 0) | (pi > 1.0 + 1e-9)
    if bad_pi.any():
        raise OffPolicyInputError(
            f"the target probability is outside [0, 1] or NaN in "
            f"{_positions(bad_pi)}: give the target policy's probability of the "
            "logged item (1 or 0 for a deterministic policy)."
        )
    return pi / mu


def effective_sample_size(weights: ArrayLike) -> float:
    """Kish's effective sample size ``(Σw)² / Σw²`` (0 when every weight is 0)."""
    w = np.asarray(weights, dtype=np.float64)
    total_sq = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / total_sq if total_sq > 0 else 0.0


def _rewards(rewards: ArrayLike, n: int) -> np.ndarray:
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (n,):
        raise OffPolicyInputError(
            f"rewards has shape {r.shape}: give one reward per logged row ({n})."
        )
    bad = ~np.isfinite(r)
    if bad.any():
        raise OffPolicyInputError(
            f"the reward is NaN or infinite in {_positions(bad)}: every logged row "
            "needs its observed reward (0 for an impression nothing came of)."
        )
    return r


def _group_codes(groups: ArrayLike | None, n: int) -> tuple[np.ndarray, int]:
    if groups is None:
        return np.arange(n), n
    g = np.asarray(groups)
    if g.shape != (n,):
        raise OffPolicyInputError(
            f"groups has shape {g.shape}: give one group (e.g. the user) per "
            f"logged row ({n})."
        )
    _, codes = np.unique(g, return_inverse=True)
    return codes, int(codes.max()) + 1


def _clustered_se(terms: np.ndarray, codes: np.ndarray, k: int, scale: float):
    """sqrt(k / (k - 1) * Σ_g (Σ_{i in g} terms_i)² ) / scale."""
    if k < 2:
        return math.nan
    sums = np.bincount(codes, weights=terms, minlength=k)
    return math.sqrt(k / (k - 1) * float(np.sum(sums * sums))) / scale


def _estimate(
    name: str,
    value: float,
    se: float,
    weights: np.ndarray,
    confidence: float,
    clipped: int,
    k: int,
) -> OffPolicyEstimate:
    if not 0.0 < confidence < 1.0:
        raise OffPolicyInputError(f"confidence must be in (0, 1), got {confidence}.")
    z = float(norm.ppf(0.5 + confidence / 2.0))
    return OffPolicyEstimate(
        estimator=name,
        value=value,
        se=se,
        ci=(value - z * se, value + z * se),
        confidence=confidence,
        n=len(weights),
        ess=effective_sample_size(weights),
        max_weight=float(weights.max()),
        clipped=clipped,
        groups=k,
    )


def _ips(
    name: str,
    rewards: ArrayLike,
    weights: np.ndarray,
    groups: ArrayLike | None,
    confidence: float,
    clipped: int,
) -> OffPolicyEstimate:
    n = len(weights)
    r = _rewards(rewards, n)
    codes, k = _group_codes(groups, n)
    terms = weights * r
    value = float(terms.mean())
    se = _clustered_se(terms - value, codes, k, n)
    return _estimate(name, value, se, weights, confidence, clipped, k)


def ips(
    rewards: ArrayLike,
    logging_propensity: ArrayLike,
    target_probability: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    confidence: float = 0.95,
) -> OffPolicyEstimate:
    """Inverse propensity scoring: ``mean(w * r)``, unbiased, high variance."""
    w = importance_weights(target_probability, logging_propensity)
    return _ips("IPS", rewards, w, groups, confidence, 0)


def clipped_ips(
    rewards: ArrayLike,
    logging_propensity: ArrayLike,
    target_probability: ArrayLike,
    *,
    clip: float,
    groups: ArrayLike | None = None,
    confidence: float = 0.95,
) -> OffPolicyEstimate:
    """IPS with every weight capped at ``clip``: ``mean(min(w, clip) * r)``.

    The interval is the clipped estimator's own: it covers what clipped IPS
    converges to, not the target's value, whenever the cap binds.
    """
    if not clip > 0:
        raise OffPolicyInputError(
            f"clip must be a positive weight cap, got {clip}; a cap of about "
            "10-100 is typical, and inf turns clipping off."
        )
    w = importance_weights(target_probability, logging_propensity)
    capped = np.minimum(w, clip)
    return _ips(
        "clipped IPS", rewards, capped, groups, confidence, int((w > clip).sum())
    )


def snips(
    rewards: ArrayLike,
    logging_propensity: ArrayLike,
    target_probability: ArrayLike,
    *,
    groups: ArrayLike | None = None,
    confidence: float = 0.95,
) -> OffPolicyEstimate:
    """Self-normalized IPS: ``Σ w r / Σ w``; NaN value when every weight is 0."""
    w = importance_weights(target_probability, logging_propensity)
    n = len(w)
    r = _rewards(rewards, n)
    codes, k = _group_codes(groups, n)
    total = float(w.sum())
    if total == 0:
        nan = math.nan
        return _estimate("SNIPS", nan, nan, w, confidence, 0, k)
    value = float(np.sum(w * r) / total)
    se = _clustered_se(w * (r - value), codes, k, total)
    return _estimate("SNIPS", value, se, w, confidence, 0, k)


def off_policy_table(
    rewards: ArrayLike,
    logging_propensity: ArrayLike,
    target_probability: ArrayLike,
    *,
    clip: float = 100.0,
    groups: ArrayLike | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The three estimators on one log and target, one row each.

    Columns: ``value``, ``se``, ``ci low``, ``ci high``, ``ess``, ``max
    weight`` and ``clipped`` (weights the cap changed).
    """
    args = (rewards, logging_propensity, target_probability)
    common = {"groups": groups, "confidence": confidence}
    estimates = (
        ips(*args, **common),
        snips(*args, **common),
        clipped_ips(*args, clip=clip, **common),
    )
    return pd.DataFrame(
        {
            e.estimator: {
                "value": e.value,
                "se": e.se,
                "ci low": e.ci[0],
                "ci high": e.ci[1],
                "ess": e.ess,
                "max weight": e.max_weight,
                "clipped": e.clipped,
            }
            for e in estimates
        }
    ).T
