"""What batch jobs precompute from the log for the feed: trending in each region,
the popular-in-region feed served when a dependency is down, and the pool of
new items the exploration slot draws from.

Introduced in ``casestudies/recommender/index.md`` ("Several candidate
sources"; the availability requirement "on failure, serve a cached
popular-in-region feed"). None of these depends on the user beyond their
region and maturity setting, so they are computed off the request path (here
from the impression log up to "now", in production by a job every few
minutes) and held in memory by the gateway; a request only indexes them.

* **trending in region**: the items with the most engaged plays by users of the
  region over the last ``trending_days``; a candidate source.
* **popular in region**, per (region, maturity limit) *cell*, the world's own
  grouping of who may see what: the most played items over ``popular_days``
  that the cell may see, ``popular_depth`` deep so that a page of 20 survives
  removing what the user already watched. This is the degraded feed: it needs
  neither Redis nor Triton.
* **exploration pool**, per cell: the ``pool_size`` newest items the cell may
  see, launched within ``new_item_days``, with their impressions and engaged
  plays so far (the Beta posterior of
  :mod:`~mlsd_lib.reranking.exploration` is made of these two counts).
* **item statistics**: every item's impressions and engaged plays over the
  :data:`~mlsd_lib.recsys.training_rows.ITEM_STATS_DAYS` whole days before
  the tables' day, the ranker's item features
  (:func:`~mlsd_lib.recsys.training_rows.item_window_counts`, the definition
  its training rows use).

Vectorized: one :func:`numpy.bincount` over (region, item) for the counts, one
sort per cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.recsys.feed_catalogue import FeedCatalogue
from mlsd_lib.recsys.training_rows import item_window_counts
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = ["ExplorationPool", "FeedTables", "FeedTablesError", "build_feed_tables"]


class FeedTablesError(MlsdError, ValueError):
    """Feed tables asked of inputs that do not fit; the message says which."""


@dataclass(frozen=True)
class ExplorationPool:
    """New items a cell may see, with impressions and engaged plays so far."""

    items: np.ndarray
    impressions: np.ndarray
    engaged: np.ndarray


@dataclass(frozen=True)
class FeedTables:
    """The precomputed tables, as of world day ``day``.

    ``trending[r]`` / ``trending_plays[r]``: region ``r``'s trending items,
    best first, and their engaged plays; ``popular[c]``: cell ``c``'s degraded
    feed, best first; ``pools[c]``: its exploration pool. A cell is
    ``region * n_maturity + maturity_limit``. ``item_impressions[i]`` and
    ``item_engaged[i]``: item ``i``'s counts over the whole days before ``day``
    that the ranker's item statistics read.
    """

    day: int
    n_maturity: int
    trending: tuple[np.ndarray, ...]
    trending_plays: tuple[np.ndarray, ...]
    popular: tuple[np.ndarray, ...]
    pools: tuple[ExplorationPool, ...]
    item_impressions: np.ndarray
    item_engaged: np.ndarray

    def cell(self, region: int, maturity_limit: int) -> int:
        """The cell of a user in ``region`` with ``maturity_limit``."""
        n_regions = len(self.trending)
        if not (0 <= region < n_regions and 0 <= maturity_limit < self.n_maturity):
            raise FeedTablesError(
                f"region {region} / maturity limit {maturity_limit} is outside the "
                f"tables' {n_regions} regions and {self.n_maturity} limits."
            )
        return region * self.n_maturity + maturity_limit


def _best(counts: np.ndarray, eligible: np.ndarray, top: int) -> np.ndarray:
    """Eligible item ids by descending count, ties to the lower id, ``top`` of them."""
    ids = np.flatnonzero(eligible)
    order = np.lexsort((ids, -counts[ids]))
    return ids[order[:top]].astype(np.int64)


def build_feed_tables(
    log: RecsysLog,
    catalogue: FeedCatalogue,
    user_region: np.ndarray,
    *,
    now: float,
    n_maturity: int,
    trending_days: float = 1.0,
    trending_top: int = 100,
    popular_days: float = 7.0,
    popular_depth: int = 60,
    new_item_days: int = 7,
    pool_size: int = 100,
) -> FeedTables:
    """The tables from ``log`` up to world time ``now`` (seconds since day 0).

    ``user_region`` is every user's region (``world.users.region``). Only rows
    strictly before ``now`` count, so the tables hold nothing a request at
    ``now`` could not have known.
    """
    if len(catalogue) != log.n_items:
        raise FeedTablesError(
            f"the catalogue has {len(catalogue)} items, the log's world "
            f"{log.n_items}: build both from the same world."
        )
    if n_maturity < 1 or min(trending_top, popular_depth, pool_size) < 1:
        raise FeedTablesError(
            "n_maturity, trending_top, popular_depth and pool_size must be >= 1."
        )
    n_items, n_regions = len(catalogue), catalogue.n_regions
    day = int(np.floor(now / SECONDS_PER_DAY))
    past = log.time < now
    region = np.asarray(user_region)[log.user].astype(np.int64)
    key = region * n_items + log.item

    def plays(days: float) -> np.ndarray:
        rows = past & log.engaged & (log.time >= now - days * SECONDS_PER_DAY)
        counts = np.bincount(key[rows], minlength=n_regions * n_items)
        return counts.reshape(n_regions, n_items)

    recent, week = plays(trending_days), plays(popular_days)
    impressions = np.bincount(log.item[past], minlength=n_items)
    engaged = np.bincount(log.item[past & log.engaged], minlength=n_items)
    launched = catalogue.items.launch_day <= day
    new = launched & (catalogue.items.launch_day > day - new_item_days)
    trending, trending_plays, popular, pools = [], [], [], []
    for r in range(n_regions):
        shown_here = catalogue.regions[:, r] & launched
        best = _best(recent[r], shown_here & (recent[r] > 0), trending_top)
        trending.append(best)
        trending_plays.append(recent[r][best])
        for m in range(n_maturity):
            may_see = shown_here & (catalogue.maturity <= m)
            popular.append(_best(week[r], may_see, popular_depth))
            fresh = np.flatnonzero(may_see & new)
            newest = fresh[np.lexsort((fresh, -catalogue.items.launch_day[fresh]))]
            newest = newest[:pool_size].astype(np.int64)
            pools.append(ExplorationPool(newest, impressions[newest], engaged[newest]))
    item_impressions, item_engaged = item_window_counts(log, day)
    return FeedTables(
        day=day,
        n_maturity=n_maturity,
        trending=tuple(trending),
        trending_plays=tuple(trending_plays),
        popular=tuple(popular),
        pools=tuple(pools),
        item_impressions=item_impressions,
        item_engaged=item_engaged,
    )
