"""Bandit policies over click-rate posteriors: greedy, epsilon-greedy, Thompson, UCB.

Introduced in ``casestudies/ad_click/07_interview_followups.ipynb`` (exploration for
cold-start ads). A ranker that sorts candidates by their estimated click rate (the
*greedy* policy) never buys information: a new ad whose estimate is only its prior
is shown when the prior happens to win, and an ad that draws no click in its first
few impressions sinks below the others and is rarely shown again, however good it
is. The other three policies spend some impressions on learning:

* **epsilon-greedy**: a share ``epsilon`` of requests rank their candidates at
  random; the rest are greedy. Simple, but it explores ads already known to be
  bad as often as uncertain ones.
* **Thompson sampling** (Thompson 1933; Chapelle & Li 2011): each candidate's
  score is a draw from its Beta posterior, so an ad is shown in proportion to
  the chance that it is the best one: wide posteriors (new ads) win often, narrow
  bad ones almost never.
* **UCB** (an upper confidence bound, here on the Beta posterior): mean plus
  ``ucb_scale`` posterior standard deviations: optimism in the face of
  uncertainty, deterministic given the counts.

Every posterior is ``Beta(clicks + m p0, examined - clicks + m (1 - p0))``: a prior
of ``m`` pseudo-impressions at rate ``p0`` (per arm: a new ad's campaign CTR, say)
plus the arm's own counts. ``examined`` may be fractional: an impression in a slot
seen with probability 0.5 counts as half an examined impression, which removes
position bias from the estimate (clicks over expected examinations).

Everything is vectorized over a batch of requests ``[B, K]`` of candidate arms;
the caller's ``numpy.random.Generator`` supplies all randomness. For the
logged propensities that off-policy evaluation needs, see
:mod:`~mlsd_lib.reranking.exploration`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "POLICIES",
    "BanditInputError",
    "BanditPolicy",
    "policy_scores",
    "posterior_mean",
    "posterior_sd",
]

#: The policies :func:`policy_scores` knows, by name.
POLICIES: tuple[str, ...] = ("greedy", "epsilon-greedy", "thompson", "ucb")


class BanditInputError(MlsdError, ValueError):
    """A policy, its parameters or the counts are invalid; says which."""


@dataclass(frozen=True)
class BanditPolicy:
    """A named policy and its one knob (``epsilon`` or ``ucb_scale``)."""

    name: str
    epsilon: float = 0.05
    ucb_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in POLICIES:
            raise BanditInputError(
                f"unknown policy {self.name!r}: use one of {', '.join(POLICIES)}."
            )
        if not 0.0 <= self.epsilon <= 1.0:
            raise BanditInputError(
                f"epsilon is the share of random requests, in [0, 1]; got "
                f"{self.epsilon}."
            )
        if self.ucb_scale < 0:
            raise BanditInputError(
                f"ucb_scale counts posterior standard deviations, >= 0; got "
                f"{self.ucb_scale}."
            )

    @property
    def label(self) -> str:
        """The name with its knob, for tables and legends."""
        if self.name == "epsilon-greedy":
            return f"epsilon-greedy ({self.epsilon:g})"
        if self.name == "ucb":
            return f"UCB (mean + {self.ucb_scale:g} sd)"
        return {"greedy": "greedy", "thompson": "Thompson sampling"}[self.name]


def _beta_parameters(
    clicks: ArrayLike,
    examined: ArrayLike,
    prior_mean: ArrayLike,
    prior_strength: float,
) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(clicks, dtype=np.float64)
    n = np.asarray(examined, dtype=np.float64)
    p0 = np.asarray(prior_mean, dtype=np.float64)
    if prior_strength <= 0:
        raise BanditInputError(
            f"prior_strength is a number of pseudo-impressions, > 0; got "
            f"{prior_strength}."
        )
    if np.any((p0 <= 0) | (p0 >= 1)):
        raise BanditInputError(
            "prior_mean must lie strictly between 0 and 1 (a click rate); got "
            f"values from {p0.min()} to {p0.max()}: clip the prior first."
        )
    if c.shape != n.shape or np.any(c < 0) or np.any(n < 0):
        raise BanditInputError(
            "clicks and examined impressions must be counts >= 0, one per arm "
            f"(got shapes {c.shape} and {n.shape}): pass the same arms' counts."
        )
    alpha = c + prior_strength * p0
    beta = np.maximum(n - c, 0.0) + prior_strength * (1.0 - p0)
    return alpha, beta


def posterior_mean(
    clicks: ArrayLike,
    examined: ArrayLike,
    prior_mean: ArrayLike,
    prior_strength: float,
) -> np.ndarray:
    """``(clicks + m p0) / (examined + m)``: the shrunk click-rate estimate."""
    alpha, beta = _beta_parameters(clicks, examined, prior_mean, prior_strength)
    return alpha / (alpha + beta)


def posterior_sd(
    clicks: ArrayLike,
    examined: ArrayLike,
    prior_mean: ArrayLike,
    prior_strength: float,
) -> np.ndarray:
    """The Beta posterior's standard deviation: how unsure each estimate is."""
    alpha, beta = _beta_parameters(clicks, examined, prior_mean, prior_strength)
    total = alpha + beta
    return np.sqrt(alpha * beta / (total**2 * (total + 1.0)))


def policy_scores(
    policy: BanditPolicy,
    candidates: ArrayLike,
    clicks: ArrayLike,
    examined: ArrayLike,
    prior_mean: ArrayLike,
    prior_strength: float,
    rng: np.random.Generator,
    explorable: ArrayLike | None = None,
) -> np.ndarray:
    """Scores ``[B, K]`` for candidate arms ``[B, K]``: rank each row by them.

    ``clicks``, ``examined`` and ``prior_mean`` are per arm (indexed by the
    values of ``candidates``). Greedy and UCB use no randomness; epsilon-greedy
    draws which requests explore; Thompson draws one posterior sample per
    (request, candidate), so two requests in one batch can rank an arm
    differently, as two servers would.

    ``explorable`` (a bool per arm, default all) limits exploration to some arms,
    say the new ads: the others are scored by their posterior mean whatever the
    policy, so the exploration budget is spent only where the doubt is.
    """
    cand = np.asarray(candidates)
    if cand.ndim != 2 or not np.issubdtype(cand.dtype, np.integer):
        raise BanditInputError(
            f"candidates must be a [requests, candidates] array of arm indices, "
            f"got {cand.dtype} of shape {cand.shape}."
        )
    alpha, beta = _beta_parameters(clicks, examined, prior_mean, prior_strength)
    if cand.size and (cand.min() < 0 or cand.max() >= alpha.size):
        raise BanditInputError(
            f"candidates index {alpha.size} arms, got indices from {cand.min()} "
            f"to {cand.max()}."
        )
    if explorable is None:
        may_explore = np.ones(cand.shape, dtype=bool)
    else:
        mask = np.asarray(explorable, dtype=bool)
        if mask.shape != alpha.shape:
            raise BanditInputError(
                f"explorable needs one flag per arm ({alpha.size}), got shape "
                f"{mask.shape}."
            )
        may_explore = mask[cand]
    a, b = alpha[cand], beta[cand]
    mean = a / (a + b)
    if policy.name == "greedy":
        return mean
    if policy.name == "thompson":
        explored = rng.beta(a, b)
    elif policy.name == "ucb":
        total = a + b
        explored = mean + policy.ucb_scale * np.sqrt(a * b / (total**2 * (total + 1)))
    else:
        explore = rng.random(cand.shape[0]) < policy.epsilon
        explored = np.where(explore[:, None], rng.random(cand.shape), mean)
    return np.where(may_explore, explored, mean)
