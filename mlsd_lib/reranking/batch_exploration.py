"""Exploration slots for a whole batch of feeds at once, with logged propensities.

Introduced in ``casestudies/recommender/07_feedback_loop.ipynb`` (exploration for new
items).
:func:`~mlsd_lib.reranking.exploration.explore` builds one page: the gateway
calls it once per request. A simulation serving thousands of feeds an hour (or
a batch job precomputing feeds) would call it thousands of times, each drawing
its own ``n_draws x pool`` Thompson samples; here a batch shares them.

**The same policy, batched.** The pool's posterior depends only on the pool's
counts, which do not change within a batch, so the Thompson probabilities are
estimated once per batch with
:func:`~mlsd_lib.reranking.exploration.selection_probabilities` (posterior
draws mixed with a uniform share). Each feed then draws its slots from those
probabilities *restricted to the pool items it may show* (``allowed``: its
region and maturity, not watched, not already on its page), one slot after
another without replacement, as :func:`~mlsd_lib.reranking.exploration.explore`
does. The logged probability of an explored item is exactly the probability
it was drawn with, given the slots before it.

**Where.** At ``config.positions`` when given (then every other item's slot is
fixed by the ranking, and its propensity is 1), else at positions drawn per
feed from ``config.earliest_position`` to the end (the other items' slots then
depend on the draw: their propensity is logged as NaN, unknown). A feed with no
pool item it may show fills the slot with its next ranked item instead, so
``ranked`` must hold at least ``page_size`` items per feed.

Vectorized over feeds: one loop over the ``n_slots`` slots, none over feeds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.reranking.exploration import (
    ExplorationConfig,
    ExplorationInputError,
    checked_pool_counts,
    selection_probabilities,
)

__all__ = ["ExploredFeeds", "explore_feeds"]


@dataclass(frozen=True)
class ExploredFeeds:
    """Pages for a batch of feeds: ``items`` (B, page_size) item ids,
    ``explored`` (B, page_size) whether each slot was an exploration slot, and
    ``propensity`` (B, page_size): the probability each item was put in its
    slot (see the module notes for the ranked slots)."""

    items: np.ndarray
    explored: np.ndarray
    propensity: np.ndarray


def _check(
    ranked: np.ndarray,
    pool: np.ndarray,
    allowed: np.ndarray,
    page_size: int,
    config: ExplorationConfig,
) -> None:
    if page_size < 1:
        raise ExplorationInputError(f"page_size must be >= 1, got {page_size}.")
    if config.n_slots > page_size:
        raise ExplorationInputError(
            f"n_slots={config.n_slots} exceeds page_size={page_size}."
        )
    if ranked.ndim != 2 or ranked.shape[1] < page_size:
        raise ExplorationInputError(
            f"ranked must be (feeds, >= page_size={page_size}) item ids, got shape "
            f"{ranked.shape}: a feed whose pool is empty backfills from its ranking."
        )
    if allowed.shape != (len(ranked), len(pool)):
        raise ExplorationInputError(
            f"allowed must be (feeds={len(ranked)}, pool={len(pool)}) bool, got "
            f"shape {allowed.shape}."
        )
    if config.positions is not None and max(config.positions) >= page_size:
        raise ExplorationInputError(
            f"positions {config.positions} must lie inside the page "
            f"(< page_size={page_size})."
        )
    if config.positions is None and page_size - config.earliest_position < (
        config.n_slots
    ):
        raise ExplorationInputError(
            f"earliest_position={config.earliest_position} leaves fewer than "
            f"n_slots={config.n_slots} slots on a page of {page_size}."
        )


def _positions(
    rng: np.random.Generator, n: int, page_size: int, config: ExplorationConfig
) -> np.ndarray:
    """(n, n_slots) slot positions per feed, ascending."""
    if config.positions is not None:
        fixed = np.sort(np.asarray(config.positions, dtype=np.int64))
        return np.broadcast_to(fixed, (n, config.n_slots)).copy()
    first = config.earliest_position
    keys = rng.random((n, page_size - first))
    drawn = np.argsort(keys, axis=1)[:, : config.n_slots] + first
    return np.sort(drawn, axis=1)


def explore_feeds(
    ranked: ArrayLike,
    pool: ArrayLike,
    impressions: ArrayLike,
    engaged: ArrayLike,
    rng: np.random.Generator,
    *,
    allowed: ArrayLike | None = None,
    page_size: int = 20,
    config: ExplorationConfig | None = None,
) -> ExploredFeeds:
    """``page_size`` items per feed: the best of each row of ``ranked`` with
    ``config.n_slots`` slots drawn by Thompson sampling from ``pool``.

    ``ranked`` (B, >= page_size) item ids, best first; ``pool`` the items to
    explore with their ``impressions`` and ``engaged`` plays so far;
    ``allowed`` (B, pool) which pool items each feed may show (default all).
    Pool items already among a feed's first ``page_size`` ranked items are not
    explored again. Everything random comes from ``rng``.
    """
    config = config or ExplorationConfig()
    ranked = np.asarray(ranked, dtype=np.int64)
    pool, shown, played = checked_pool_counts(pool, impressions, engaged)
    n = len(ranked) if ranked.ndim == 2 else 0
    allowed = (
        np.ones((n, len(pool)), dtype=bool)
        if allowed is None
        else np.array(allowed, dtype=bool)  # a copy: slots drawn are removed
    )
    _check(ranked, pool, allowed, page_size, config)
    page = ranked[:, :page_size]
    if len(pool):
        allowed &= ~(page[:, :, None] == pool[None, None, :]).any(axis=1)
    m = config.n_slots
    chosen = np.full((n, m), -1, dtype=np.int64)
    chosen_p = np.full((n, m), np.nan)
    if m and len(pool) and n:
        p = selection_probabilities(shown, played, rng, config)
        rows = np.arange(n)
        for slot in range(m):
            weight = np.where(allowed, p[None, :], 0.0)
            total = weight.sum(axis=1)
            u = rng.random(n) * total
            pick = np.minimum(
                (np.cumsum(weight, axis=1) <= u[:, None]).sum(axis=1), len(pool) - 1
            )
            ok = total > 0
            chosen[ok, slot] = pool[pick[ok]]
            chosen_p[ok, slot] = weight[rows[ok], pick[ok]] / total[ok]
            allowed[rows[ok], pick[ok]] = False
    positions = _positions(rng, n, page_size, config)
    explored = np.zeros((n, page_size), dtype=bool)
    slot_items = np.full((n, page_size), -1, dtype=np.int64)
    slot_p = np.full((n, page_size), np.nan)
    rows = np.arange(n)[:, None]
    explored[rows, positions] = chosen >= 0
    slot_items[rows, positions] = chosen
    slot_p[rows, positions] = chosen_p
    # The other slots take the ranking in order (a failed slot takes the next).
    base = np.take_along_axis(ranked, np.cumsum(~explored, axis=1) - 1, axis=1)
    items = np.where(explored, slot_items, base)
    base_p = 1.0 if config.positions is not None else np.nan
    propensity = np.where(explored, slot_p, base_p)
    return ExploredFeeds(items, explored, propensity)
