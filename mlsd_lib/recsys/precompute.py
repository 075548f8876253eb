"""Nightly precomputed feeds against the online path, measured play by play.

Introduced in ``casestudies/recommender/09_interview_followups.ipynb`` (the follow-up
"Why not precompute everyone's feed offline each night?"). The design answers each
request online: the user tower reads the history as it is at request time and searches
the index as it is then. A nightly batch answers every request of day ``T`` from what
was known when it ran, at the end of day ``T - 1``. Which plays does that cost? For
every engaged play of the test day of an item new to the user (:func:`day_plays`),
:func:`online_vs_nightly` asks whether the played item was in the user's top ``k`` under
three designs:

* ``online``: the history strictly before the play, today's catalogue (the
  book's design);
* ``nightly user vector, live index``: the history as of midnight, today's
  catalogue (a hybrid: user vectors precomputed, new items added to the index
  as they launch);
* ``nightly feed``: the history as of midnight and the catalogue as of
  yesterday: nothing launched today can appear.

The rows are plays, so a heavy user counts once per play. Each design ranks
the same candidates (launched by the test day, eligible for the user, not
watched before it), so the only differences are what the two sources of
staleness remove. Recall is reported for every play, for plays of items
launched on the test day and for plays by users who had no engaged play
before it (the people the one-minute freshness requirement is for).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import RelevantItems, recall_at_k
from mlsd_lib.models.two_tower_data import TwoTowerData
from mlsd_lib.recsys.ceilings import watched_items
from mlsd_lib.recsys.evaluation import TimeSplit, query_scores, rank_catalogue
from mlsd_lib.recsys.features import ModelInputs, user_queries
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = [
    "DESIGNS",
    "DayPlays",
    "PrecomputeInputError",
    "day_plays",
    "online_vs_nightly",
]

#: The three designs, freshest first (row names of :func:`online_vs_nightly`).
DESIGNS: tuple[str, ...] = (
    "online",
    "nightly user vector, live index",
    "nightly feed",
)


class PrecomputeInputError(MlsdError, ValueError):
    """A split or retriever the comparison cannot run on; the message says why."""


@dataclass(frozen=True)
class DayPlays:
    """The test day's engaged plays of items new to their user, one row each.

    ``user``, ``time``, ``item`` per play (first play of a (user, item) pair,
    in time order); ``watched``: row ``j`` holds what ``user[j]`` had an
    engaged play of before the day (every ranking excludes it);
    ``plays_before``: how many such items.
    """

    user: np.ndarray
    time: np.ndarray
    item: np.ndarray
    watched: RelevantItems
    plays_before: np.ndarray

    def __len__(self) -> int:
        return len(self.user)


def _take_rows(relevant: RelevantItems, rows: np.ndarray) -> RelevantItems:
    """Row ``j`` of the result is row ``rows[j]`` of ``relevant`` (rows may repeat)."""
    start = relevant.indptr[rows]
    count = relevant.indptr[rows + 1] - start
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(count, out=indptr[1:])
    offset = np.arange(indptr[-1]) - np.repeat(indptr[:-1], count)
    return RelevantItems(indptr, relevant.indices[np.repeat(start, count) + offset])


def day_plays(split: TimeSplit) -> DayPlays:
    """The engaged plays of ``split``'s first test day that :func:`online_vs_nightly`
    scores (re-watches and repeat plays of one item left out)."""
    test = split.test
    day = (test.time // SECONDS_PER_DAY).astype(np.int64) == split.test_day
    engaged = np.flatnonzero(test.engaged & day)
    if engaged.size == 0:
        raise PrecomputeInputError(
            "the test day has no engaged play: simulate more users or a busier day."
        )
    user, item = test.user[engaged], test.item[engaged]
    _, first = np.unique(user * test.n_items + item, return_index=True)
    first = engaged[np.sort(first)]
    user, time, item = test.user[first], test.time[first], test.item[first]
    users = np.unique(user)
    watched = _take_rows(watched_items(split.log, users), np.searchsorted(users, user))
    row = np.repeat(np.arange(len(user)), watched.counts())
    seen = np.zeros(len(user), dtype=bool)
    seen[row[watched.indices == item[row]]] = True
    keep = ~seen
    rows = np.flatnonzero(keep)
    watched = _take_rows(watched, rows)
    return DayPlays(user[keep], time[keep], item[keep], watched, watched.counts())


def online_vs_nightly(
    split: TimeSplit,
    inputs: ModelInputs,
    scores: Callable[[TwoTowerData], np.ndarray],
    *,
    k: int = 100,
    plays: DayPlays | None = None,
) -> pd.DataFrame:
    """Recall@``k`` of the test day's plays under the three :data:`DESIGNS`.

    ``scores(queries)`` is a retriever's (``Retriever.scores`` of
    :mod:`~mlsd_lib.recsys.recipes`). Columns: ``all plays``, ``plays of
    items launched today``, ``plays by users new today`` (no engaged play
    before the day); the last row counts the plays in each column.
    """
    plays = plays or day_plays(split)
    world, day = split.world, split.test_day
    launched_today = world.items.launch_day == day
    before = split.log.to_interactions()
    everything = Interactions.from_arrays(
        np.concatenate([split.log.user, split.test.user]),
        np.concatenate([split.log.item, split.test.item]),
        np.concatenate([split.log.time, split.test.time]),
        np.concatenate([split.log.engaged, split.test.engaged]),
        n_users=split.log.n_users,
        n_items=split.log.n_items,
    )
    midnight = np.full(len(plays), split.test_time)
    queries = {
        "online": user_queries(everything, inputs, plays.user, plays.time),
        "nightly": user_queries(before, inputs, plays.user, midnight),
    }
    relevant = RelevantItems(np.arange(len(plays) + 1), plays.item.astype(np.int64))
    columns = {
        "all plays": np.ones(len(plays), dtype=bool),
        "plays of items launched today": launched_today[plays.item],
        "plays by users new today": plays.plays_before == 0,
    }
    table = {}
    for design in DESIGNS:
        score = query_scores(
            scores, queries["online" if design == "online" else "nightly"]
        )
        if design == "nightly feed":
            score = _hide(score, launched_today)
        ranked = rank_catalogue(world, day, plays.user, plays.watched, score, k)
        table[design] = {
            name: _recall_of_rows(ranked, relevant, mask, k)
            for name, mask in columns.items()
        }
    frame = pd.DataFrame(table).T
    frame.loc["plays counted"] = [float(mask.sum()) for mask in columns.values()]
    return frame


def _hide(
    score: Callable[[slice], np.ndarray], hidden: np.ndarray
) -> Callable[[slice], np.ndarray]:
    """``score`` with the ``hidden`` items out of reach (not in yesterday's index)."""

    def hidden_score(rows: slice) -> np.ndarray:
        return np.where(hidden[None, :], -np.inf, score(rows))

    return hidden_score


def _recall_of_rows(
    ranked: np.ndarray, relevant: RelevantItems, mask: np.ndarray, k: int
) -> float:
    if not mask.any():
        return float("nan")
    rows = np.flatnonzero(mask)
    return recall_at_k(ranked[rows], _take_rows(relevant, rows), k)
