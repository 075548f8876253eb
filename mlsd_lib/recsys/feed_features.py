"""What the feed feeds its two models: the user tower's and the ranker's inputs,
built at request time from one Redis read.

Introduced in ``casestudies/recommender/index.md`` (panel B, steps 1, 2 and 4).
A feed request reads the user's streamed state once (the history fold:
last 50 engaged items, genre counts, windowed session and play counts, see
:func:`~mlsd_lib.features.histories.read_histories`) and gets the rest from
the request (region, maturity setting) and from the catalogue held in memory.
From these:

* :func:`user_tower_inputs`: ``history`` (the 50 item ids, -1 padded),
  ``dense`` (:data:`USER_DENSE`: log1p of the windowed counts) and
  ``categorical`` (:data:`USER_CATEGORICAL`: region, maturity limit), the
  user tower's three tensors;
* :func:`ranker_inputs`: one row per candidate, the ranker's training
  features (:data:`RANKER_DENSE`, :data:`RANKER_CATEGORICAL`), computed exactly
  as :func:`~mlsd_lib.recsys.training_rows.served_ranking_examples` computes
  them offline from the same fold state, so the served ranker sees what it was
  trained on (a test compares the two row for row). The candidate's two-tower
  score comes from the retrieval stage (every candidate gets one, whichever
  source proposed it), its engaged rate from the feed's daily tables.

:func:`user_tower_schema` and :func:`ranker_schema` are the registered input
schemas (``"<tensor>:<column>"`` entries, see
:mod:`~mlsd_lib.serving.gateway.model_calls`): the deployment refuses a model
registered with other columns than these functions build.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.histories import NO_ITEM_PAD, Histories
from mlsd_lib.recsys.training_rows import (
    RANKING_CATEGORICAL,
    RANKING_DENSE,
    RANKING_SIGNALS,
    item_engaged_rate,
)
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = [
    "COUNT_NAMES",
    "RANKER_CATEGORICAL",
    "RANKER_DENSE",
    "USER_CATEGORICAL",
    "USER_DENSE",
    "FeedFeatureError",
    "ItemTable",
    "ranker_inputs",
    "ranker_schema",
    "user_tower_inputs",
    "user_tower_schema",
]

#: The windowed counts of the case study's history fold, in view order.
COUNT_NAMES = ("sessions_1d", "sessions_7d", "engaged_plays_1d", "engaged_plays_7d")
#: The user tower's dense columns: log1p of each windowed count.
USER_DENSE = tuple(f"log_{name}" for name in COUNT_NAMES)
#: The user tower's categorical columns, from the request.
USER_CATEGORICAL = ("region", "maturity_limit")
#: The ranker's dense columns: the training rows' (one definition, two callers),
#: then the served ranker's signals (two-tower score, item engaged rate).
RANKER_DENSE = RANKING_DENSE + RANKING_SIGNALS
#: The ranker's categorical columns: the training rows' too.
RANKER_CATEGORICAL = RANKING_CATEGORICAL
#: "Hours since the last engaged play" of a user who has none (as in training).
NO_PLAY_HOURS = 30 * 24.0


class FeedFeatureError(MlsdError, ValueError):
    """Feed inputs that cannot be built from what was read; says which."""


@dataclass(frozen=True)
class ItemTable:
    """The catalogue columns the features read, one entry per item id.

    ``genre`` and ``series`` (-1: none) and ``kind`` (code into
    :data:`~mlsd_lib.worlds.recsys_truth.ITEM_KINDS`) are ints, ``duration``
    minutes, ``launch_day`` the world day the item appears.
    """

    genre: np.ndarray
    series: np.ndarray
    kind: np.ndarray
    duration: np.ndarray
    launch_day: np.ndarray

    def __len__(self) -> int:
        return len(self.genre)


def _one_row(histories: Histories, row: int) -> None:
    if not 0 <= row < len(histories):
        raise FeedFeatureError(
            f"row {row} of histories holding {len(histories)} users."
        )
    if tuple(histories.count_names) != COUNT_NAMES:
        raise FeedFeatureError(
            f"the history's counts are {list(histories.count_names)}, the feed "
            f"needs {list(COUNT_NAMES)}: read it with the case study's fold "
            "(interaction_history())."
        )


def user_tower_inputs(
    histories: Histories, row: int, region: int, maturity_limit: int
) -> dict[str, np.ndarray]:
    """The user tower's tensors for user ``row`` of ``histories`` (a batch of 1).

    ``history`` (1, N) int64, ``dense`` (1, 4) float32, ``categorical`` (1, 2)
    int64: the columns of :func:`user_tower_schema`, in its order.
    """
    _one_row(histories, row)
    counts = np.log1p(histories.counts[row : row + 1].astype(np.float32))
    return {
        "history": histories.items[row : row + 1].astype(np.int64),
        "dense": counts.astype(np.float32),
        "categorical": np.array([[region, maturity_limit]], dtype=np.int64),
    }


def user_tower_schema(history_len: int) -> list[tuple[str, str]]:
    """The registered input schema of a user tower fed by :func:`user_tower_inputs`."""
    return (
        [(f"history:{i}", "int64") for i in range(history_len)]
        + [(f"dense:{name}", "float32") for name in USER_DENSE]
        + [(f"categorical:{name}", "int64") for name in USER_CATEGORICAL]
    )


def ranker_inputs(
    histories: Histories,
    row: int,
    candidates: np.ndarray,
    items: ItemTable,
    now: float,
    world_now: float,
    *,
    retrieval_score: np.ndarray,
    item_impressions: np.ndarray,
    item_engaged: np.ndarray,
) -> dict[str, np.ndarray]:
    """The ranker's ``dense`` (n, 13) float32 and ``categorical`` (n, 2) int64
    for user ``row``'s candidates, as of ``now`` (seconds since the epoch, the
    history's clock) and ``world_now`` (the same moment in world seconds, for
    an item's age in days).

    ``retrieval_score`` is each candidate's two-tower score u.v (aligned with
    ``candidates``); ``item_impressions`` and ``item_engaged`` are every item
    id's counts over the days before
    (:attr:`~mlsd_lib.recsys.feed_tables.FeedTables.item_impressions`).

    Same formulas as the training rows: the candidate's genre share of all the
    user's engaged plays, how many of the last 50 are of its series, whether
    it is among them; the user's windowed counts (log1p), hours since the
    newest play (log1p, capped at 30 days), history size; the item's log
    duration and age in days.
    """
    _one_row(histories, row)
    item = np.asarray(candidates, dtype=np.int64)
    retrieval_score = np.asarray(retrieval_score, dtype=np.float64)
    if retrieval_score.shape != item.shape:
        raise FeedFeatureError(
            f"retrieval_score has shape {retrieval_score.shape} for "
            f"{len(item)} candidates: one two-tower score per candidate."
        )
    if len(item_impressions) != len(items) or len(item_engaged) != len(items):
        raise FeedFeatureError(
            f"item_impressions ({len(item_impressions)}) and item_engaged "
            f"({len(item_engaged)}) must hold one count per item id "
            f"({len(items)}): pass the feed tables' counts."
        )
    rate = item_engaged_rate(item_impressions[item], item_engaged[item])
    history = histories.items[row]
    present = history != NO_ITEM_PAD
    genre = items.genre[item].astype(np.int64)
    series = items.series[item].astype(np.int64)
    category = histories.category_counts[row]
    total = float(category.sum())
    history_series = np.where(present, items.series[np.maximum(history, 0)], -1)
    in_series = (
        (history_series[None, :] == series[:, None]) & present & (series[:, None] >= 0)
    ).sum(axis=1)
    in_history = (history[None, :] == item[:, None]).any(axis=1)
    newest = histories.item_times[row, 0]
    hours = NO_PLAY_HOURS if np.isnan(newest) else (now - newest) / 3600.0
    counts = np.log1p(histories.counts[row].astype(np.float64))
    day = np.floor(world_now / SECONDS_PER_DAY)
    age = np.maximum(day - items.launch_day[item].astype(np.float64), 0.0)
    n = len(item)
    columns = {
        "genre_share": category[genre] / max(total, 1.0),
        "series_in_history": in_series,
        "in_history": in_history,
        "log_sessions_1d": np.full(n, counts[0]),
        "log_sessions_7d": np.full(n, counts[1]),
        "log_engaged_plays_1d": np.full(n, counts[2]),
        "log_engaged_plays_7d": np.full(n, counts[3]),
        "log_hours_since_play": np.full(n, np.log1p(min(hours, NO_PLAY_HOURS))),
        "history_size": np.full(n, int(present.sum())),
        "log_duration": np.log(items.duration[item].astype(np.float64)),
        "age_days": age,
        "retrieval_score": retrieval_score,
        "item_engaged_rate": rate,
    }
    dense = np.column_stack([columns[name] for name in RANKER_DENSE])
    categorical = np.column_stack([genre, items.kind[item].astype(np.int64)])
    return {
        "dense": dense.astype(np.float32),
        "categorical": categorical.astype(np.int64),
    }


def ranker_schema() -> list[tuple[str, str]]:
    """The registered input schema of a ranker fed by :func:`ranker_inputs`."""
    return [(f"dense:{name}", "float32") for name in RANKER_DENSE] + [
        (f"categorical:{name}", "int64") for name in RANKER_CATEGORICAL
    ]
