"""Exploration slots: show a few new items, chosen by Thompson sampling, and log
how likely each choice was.

Introduced in ``casestudies/recommender/index.md``: a model trained on what it
showed only learns about what it showed, so new items that never get
impressions never get the plays that would make the model show them (the
popularity feedback loop). Reserving ``n_slots`` of each page (1 of 20 by
default) for items from a pool of new ones buys that evidence at a bounded
cost.

**Which item.** Each pool item's engaged rate gets a Beta posterior: a prior of
``prior_strength`` pseudo-impressions at rate ``prior_rate``, plus its own
engaged plays and impressions. Thompson sampling (Thompson 1933; Chapelle & Li
2011) shows the item whose posterior draw is highest, so an item is explored in
proportion to the chance that it is the best one: an item with few impressions
has a wide posterior and wins often, one with many impressions and a poor rate
almost never. UCB would rank the pool by an upper bound instead, but it is a
deterministic argmax, so every item's logged probability would be 0 or 1, and
off-policy estimation (inverse propensity scoring) cannot use that.

**The logged probability.** The chance that an item's draw is the highest has
no closed form, so it is estimated from ``n_draws`` joint posterior draws, mixed
with a ``uniform_share`` of the uniform distribution (every pool item keeps a
positive probability, which inverse propensity scoring needs), and the choice
is then drawn *from that estimate*. The probability logged is therefore
exactly the probability with which the choice was made, not an approximation
of it; ``n_draws`` only sets how closely the policy follows Thompson sampling,
and what it costs: ``n_draws x pool`` Beta draws, about 2 ms for 256 x 200 on
one CPU core, so keep the pool to a few hundred (a sample of the new items).
With ``n_slots > 1`` the slots are drawn one after another without replacement,
and each logs its probability given the earlier ones.

**Where it goes.** At the fixed ``positions`` if given, else at positions drawn
uniformly from ``earliest_position`` to the end of the page; either way the
slate records them, because position changes what a click means. Everything
random comes from the caller's ``numpy.random.Generator``, so a seeded request
is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "ExplorationConfig",
    "ExplorationInputError",
    "ExploredSlate",
    "checked_pool_counts",
    "explore",
    "selection_probabilities",
]


class ExplorationInputError(MlsdError, ValueError):
    """The pool, its counts or the configuration are invalid; says which."""


@dataclass(frozen=True)
class ExplorationConfig:
    """How many slots, where, and the posterior and its probability estimate."""

    n_slots: int = 1
    positions: tuple[int, ...] | None = None
    earliest_position: int = 0
    prior_rate: float = 0.05
    prior_strength: float = 20.0
    n_draws: int = 256
    uniform_share: float = 0.05

    def __post_init__(self) -> None:
        problems = []
        if self.n_slots < 0:
            problems.append(f"n_slots must be >= 0, got {self.n_slots}")
        if self.positions is not None and len(self.positions) != self.n_slots:
            problems.append(
                f"positions {self.positions} must name n_slots={self.n_slots} slots"
            )
        if self.positions is not None and len(set(self.positions)) != len(
            self.positions
        ):
            problems.append(f"positions {self.positions} repeat a slot")
        if self.positions is not None and any(p < 0 for p in self.positions):
            problems.append(f"positions {self.positions} must be >= 0")
        if not 0 < self.prior_rate < 1 or self.prior_strength <= 0:
            problems.append(
                "prior_rate must be in (0, 1) and prior_strength > 0, got "
                f"{self.prior_rate} and {self.prior_strength}"
            )
        if self.n_draws < 1 or not 0 <= self.uniform_share <= 1:
            problems.append(
                f"n_draws must be >= 1 and uniform_share in [0, 1], got "
                f"{self.n_draws} and {self.uniform_share}"
            )
        if self.earliest_position < 0:
            problems.append(
                f"earliest_position must be >= 0, got {self.earliest_position}"
            )
        if problems:
            raise ExplorationInputError("; ".join(problems) + ".")


@dataclass(frozen=True)
class ExploredSlate:
    """The page shown (item ids), the positions that were exploration slots,
    the items in them and the probability each was chosen with (aligned with
    ``positions``): the fields the impression log needs for off-policy
    estimation."""

    items: np.ndarray
    positions: np.ndarray
    explored_items: np.ndarray
    probabilities: np.ndarray

    @property
    def is_exploration(self) -> np.ndarray:
        """Bool per slot of ``items``."""
        mask = np.zeros(len(self.items), dtype=bool)
        mask[self.positions] = True
        return mask


def checked_pool_counts(
    pool: ArrayLike, impressions: ArrayLike, engaged: ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``pool`` as int64 ids and its counts as float64, after the checks every
    exploration entry point needs (1-D ids, each once; one count per item;
    ``0 <= engaged <= impressions``)."""
    items = np.asarray(pool)
    shown = np.asarray(impressions, dtype=np.float64)
    played = np.asarray(engaged, dtype=np.float64)
    if items.ndim != 1 or (items.size and not np.issubdtype(items.dtype, np.integer)):
        raise ExplorationInputError(
            f"pool must be a 1-D array of item ids, got {items.dtype} of shape "
            f"{items.shape}."
        )
    if len(np.unique(items)) != len(items):
        raise ExplorationInputError("pool lists an item twice: pass each item once.")
    if shown.shape != items.shape or played.shape != items.shape:
        raise ExplorationInputError(
            f"impressions and engaged must have one count per pool item "
            f"({len(items)}), got shapes {shown.shape} and {played.shape}."
        )
    if np.any(played < 0) or np.any(played > shown):
        bad = int(np.flatnonzero((played < 0) | (played > shown))[0])
        raise ExplorationInputError(
            f"pool item {items[bad]} has {played[bad]:g} engaged plays and "
            f"{shown[bad]:g} impressions: counts must satisfy 0 <= engaged <= "
            "impressions."
        )
    return items.astype(np.int64), shown, played


def selection_probabilities(
    impressions: ArrayLike,
    engaged: ArrayLike,
    rng: np.random.Generator,
    config: ExplorationConfig | None = None,
) -> np.ndarray:
    """Probability that Thompson sampling picks each pool item, mixed with the
    uniform share: the distribution :func:`explore` draws its first slot from."""
    config = config or ExplorationConfig()
    shown = np.asarray(impressions, dtype=np.float64)
    played = np.asarray(engaged, dtype=np.float64)
    n = len(shown)
    if n == 0:
        return np.zeros(0)
    alpha = config.prior_rate * config.prior_strength + played
    beta = (1 - config.prior_rate) * config.prior_strength + shown - played
    draws = rng.beta(alpha, beta, size=(config.n_draws, n))
    wins = np.bincount(np.argmax(draws, axis=1), minlength=n) / config.n_draws
    return (1 - config.uniform_share) * wins + config.uniform_share / n


def explore(
    ranked: ArrayLike,
    pool: ArrayLike,
    impressions: ArrayLike,
    engaged: ArrayLike,
    rng: np.random.Generator,
    *,
    page_size: int = 20,
    config: ExplorationConfig | None = None,
) -> ExploredSlate:
    """A page of ``page_size``: the best of ``ranked`` with exploration slots
    filled from ``pool`` (item ids, with each one's impressions and engaged
    plays so far).

    Introduced in ``casestudies/recommender/index.md``. Pool items already in
    the page are not explored again; a pool too small for ``n_slots`` explores
    fewer, and a short ``ranked`` gives a short page (a fixed position past its
    end moves to the end). Run diversity re-ranking for ``page_size - n_slots``
    items first: an exploration item is outside its rules.
    """
    config = config or ExplorationConfig()
    if page_size < 1:
        raise ExplorationInputError(f"page_size must be >= 1, got {page_size}.")
    if config.n_slots > page_size:
        raise ExplorationInputError(
            f"n_slots={config.n_slots} exceeds page_size={page_size}."
        )
    items, shown, played = checked_pool_counts(pool, impressions, engaged)
    page = np.asarray(ranked, dtype=np.int64)
    if page.ndim != 1:
        raise ExplorationInputError(f"ranked must be 1-D, got shape {page.shape}.")
    page = page[page >= 0][: page_size - config.n_slots]
    fresh = ~np.isin(items, page)
    items, shown, played = items[fresh], shown[fresh], played[fresh]

    chosen, probabilities = [], []
    if config.n_slots and len(items):
        p = selection_probabilities(shown, played, rng, config)
        for _ in range(min(config.n_slots, len(items))):
            pick = int(rng.choice(len(items), p=p / p.sum()))
            chosen.append(items[pick])
            probabilities.append(p[pick] / p.sum())
            p[pick] = 0.0
    length, m = len(page) + len(chosen), len(chosen)
    if config.positions is not None:
        # A fixed position past a short page's end moves back just far enough
        # for the later slots to fit: the j-th of m is at most length - m + j.
        wanted = np.sort(np.asarray(config.positions, dtype=np.int64))[:m]
        positions = np.minimum(wanted, length - m + np.arange(m))
    else:
        first = min(config.earliest_position, length - m)
        positions = np.sort(rng.choice(np.arange(first, length), m, replace=False))
    explored = np.zeros(length, dtype=bool)
    explored[positions] = True
    slate = np.empty(length, dtype=np.int64)
    slate[positions] = chosen
    slate[~explored] = page
    return ExploredSlate(
        items=slate,
        positions=positions.astype(np.int64),
        explored_items=np.asarray(chosen, dtype=np.int64),
        probabilities=np.asarray(probabilities, dtype=np.float64),
    )
