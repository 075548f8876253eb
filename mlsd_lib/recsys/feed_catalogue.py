"""The catalogue the feed keeps in memory, and its "continue watching" source.

Introduced in ``casestudies/recommender/index.md`` (panel B, step 4: "item
features from RAM"). Ranking 500 candidates needs 500 items' features per
request; at 17 k requests per second that is 8.7 M feature reads per second,
so the gateway holds the item table in memory instead of reading Redis (the
index page's arithmetic: 3.4 GB at 10 M items). :class:`FeedCatalogue` is that
table: what the ranker's features read
(:class:`~mlsd_lib.recsys.feed_features.ItemTable`), what the filters read
(maturity rating, availability per region, launch day), and each item's
two-tower embedding (for the diversity re-ranker's similarities and each
candidate's retrieval score).

**Continue watching.** The history fold keeps engaged plays, not how far into
an item the user got, so "partially watched" is not known here. What it does
know is which series the user has been watching:
:meth:`FeedCatalogue.continue_watching` proposes the next episodes (in
catalogue order) of the series among the user's most recent plays that they
have not played yet. Vectorized over the series, with the episodes of each
series as one contiguous slice (CSR by series id).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.histories import NO_ITEM_PAD
from mlsd_lib.recsys.feed_features import ItemTable
from mlsd_lib.worlds.recsys_truth import ITEM_KINDS

__all__ = ["CatalogueError", "FeedCatalogue"]


class CatalogueError(MlsdError, ValueError):
    """Catalogue columns that do not fit together; the message says which."""


@dataclass(frozen=True)
class FeedCatalogue:
    """One entry per item id: features, eligibility and embedding.

    ``maturity`` (int rating), ``regions`` (n_items, n_regions) bool
    availability, ``embeddings`` (n_items, d) float32 unit rows from the item
    tower of the release being served. ``series_items`` lists the episodes
    sorted by (series, item id) and ``series_offsets[s]:series_offsets[s+1]``
    is series ``s``'s slice of it.
    """

    items: ItemTable
    maturity: np.ndarray
    regions: np.ndarray
    embeddings: np.ndarray
    series_items: np.ndarray
    series_offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.items)

    @property
    def n_regions(self) -> int:
        return int(self.regions.shape[1])

    @classmethod
    def from_item_features(
        cls, item_features: pd.DataFrame, embeddings: np.ndarray
    ) -> FeedCatalogue:
        """From the observable item table (``world.item_features()``: genre,
        series, kind, duration, maturity, launch_day, ``region_<r>`` columns)
        and the item tower's embedding of every item."""
        needed = ["genre", "series", "kind", "duration", "maturity", "launch_day"]
        absent = [c for c in needed if c not in item_features.columns]
        region_columns = sorted(
            (c for c in item_features.columns if c.startswith("region_")),
            key=lambda c: int(c.removeprefix("region_")),
        )
        if absent or not region_columns:
            raise CatalogueError(
                f"item_features lacks columns {absent or ['region_<r>']}; pass "
                "world.item_features() (one row per item id)."
            )
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or len(embeddings) != len(item_features):
            raise CatalogueError(
                f"embeddings have shape {embeddings.shape} for {len(item_features)} "
                "items: one item-tower vector per item id."
            )
        kind = item_features["kind"]
        kind_codes = (
            pd.Categorical(kind, categories=list(ITEM_KINDS)).codes
            if not np.issubdtype(np.asarray(kind).dtype, np.integer)
            else np.asarray(kind)
        )
        series = item_features["series"].to_numpy(np.int64)
        table = ItemTable(
            genre=item_features["genre"].to_numpy(np.int64),
            series=series,
            kind=np.asarray(kind_codes, dtype=np.int64),
            duration=item_features["duration"].to_numpy(np.float64),
            launch_day=item_features["launch_day"].to_numpy(np.int64),
        )
        episodes = np.flatnonzero(series >= 0)
        episodes = episodes[np.lexsort((episodes, series[episodes]))]
        n_series = int(series.max()) + 1 if len(episodes) else 0
        counts = np.bincount(series[episodes], minlength=n_series)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(
            items=table,
            maturity=item_features["maturity"].to_numpy(np.int64),
            regions=item_features[region_columns].to_numpy(bool),
            embeddings=embeddings,
            series_items=episodes.astype(np.int64),
            series_offsets=offsets,
        )

    def available(self, region: int, maturity_limit: int, day: float) -> np.ndarray:
        """Bool per item: shown in ``region``, rated at most ``maturity_limit``,
        launched by world ``day``."""
        return (
            self.regions[:, region]
            & (self.maturity <= maturity_limit)
            & (self.items.launch_day <= day)
        )

    def continue_watching(
        self, history: np.ndarray, *, recent: int = 10, per_series: int = 2
    ) -> np.ndarray:
        """Unplayed episodes of the series among the ``recent`` newest plays.

        ``history`` is the user's item ids, newest first, padded with -1. Up to
        ``per_series`` episodes per series, series ordered by how recently the
        user played them, episodes in catalogue order.
        """
        history = np.asarray(history, dtype=np.int64)
        played = history[history != NO_ITEM_PAD]
        newest = played[:recent]
        series = self.items.series[newest]
        series = series[series >= 0]
        if not len(series):
            return np.zeros(0, np.int64)
        _, first = np.unique(series, return_index=True)
        series = series[np.sort(first)]  # most recently played first
        starts = self.series_offsets[series]
        lengths = self.series_offsets[series + 1] - starts
        total = int(lengths.sum())
        group = np.repeat(np.arange(len(series)), lengths)
        within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        episodes = self.series_items[np.repeat(starts, lengths) + within]
        keep = ~np.isin(episodes, played)
        episodes, group = episodes[keep], group[keep]
        # rank of each kept episode within its series, to take the first few
        rank = np.arange(len(group)) - np.searchsorted(group, group, side="left")
        return episodes[rank < per_series]
