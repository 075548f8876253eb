"""Histories read online (Redis) and computed offline (an event table), equal.

Introduced in ``casestudies/recommender/index.md``. The gateway reads, per feed
request, each user's last items, category counts and windowed counts, which the
history fold (:mod:`~mlsd_lib.features.history_fold`) keeps in Redis:
:func:`read_histories` does it for a batch of users in one pipelined round trip.
Training needs the same values as they were when each training example was
served: :func:`histories_at` computes them from the event table, for each
(user, time), from the events *strictly before* that time, so nothing a user did
at or after the request leaks into its features.

Both return a :class:`Histories`, and a test streams a shuffled event log through
the real processor and checks the two are equal, array for array. They agree
because the fold's result does not depend on arrival order (late events are
inserted by time, see :mod:`~mlsd_lib.features.history_fold`): after the
processor has applied exactly the events before ``t``, in any order, Redis holds
what :func:`histories_at` computes for ``t``.

Two things the offline side does not model, by design: keys expiring in Redis
(their TTL runs on the wall clock, which an event table does not have), and
events the processor dead-letters (a kept event without an item, or with a
category out of range): those rows are skipped, as the processor skips them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import redis

from mlsd_lib.features.history_fold import HistoryFold
from mlsd_lib.features.records import LIVE_GENERATION, entity_key, record_key, unpack
from mlsd_lib.features.stream_keys import category_key, history_key
from mlsd_lib.features.views import TIMESTAMP_COLUMN, FeatureStoreError
from mlsd_lib.features.windows import (
    EVENT_ID_COLUMN,
    EVENT_TYPE_COLUMN,
    timestamps_to_seconds,
)

__all__ = [
    "NO_ITEM_PAD",
    "Histories",
    "histories_at",
    "newest_history_time",
    "read_histories",
]

#: The item id that pads a history shorter than asked for.
NO_ITEM_PAD = -1


@dataclass(frozen=True)
class Histories:
    """What a history fold holds for a batch of ``B`` users.

    ``items`` (B, n) int64: item ids, newest first, padded with
    :data:`NO_ITEM_PAD`; ``item_times`` (B, n) float64: their event times
    (seconds), NaN where padded; ``category_counts`` (B, n_categories) int64:
    kept events per category; ``counts`` (B, len(count_names)) float32: the
    windowed counts in view order (the view's defaults where a user has no
    record); ``counts_as_of`` (B,) float64: the time those counts are as of
    (NaN where no record).
    """

    items: np.ndarray
    item_times: np.ndarray
    category_counts: np.ndarray
    counts: np.ndarray
    counts_as_of: np.ndarray
    count_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.items)


def _checked_n(fold: HistoryFold, n: int | None) -> int:
    n = fold.length if n is None else n
    if (
        isinstance(n, bool)
        or not isinstance(n, int | np.integer)
        or not (1 <= n <= fold.length)
    ):
        raise FeatureStoreError(
            f"n={n!r} items asked of history {fold.name!r}, which keeps "
            f"length={fold.length}; ask for 1 to {fold.length}."
        )
    return int(n)


def _count_names(fold: HistoryFold) -> tuple[str, ...]:
    return () if fold.counts is None else tuple(fold.counts.view.feature_names)


def _parse_entries(rows: Sequence[list[bytes]], n: int) -> tuple[np.ndarray, ...]:
    """``"<item>:<microseconds>"`` entries, row by row, into padded matrices."""
    lengths = np.array([len(r) for r in rows], dtype=np.int64)
    items = np.full((len(rows), n), NO_ITEM_PAD, dtype=np.int64)
    times = np.full((len(rows), n), np.nan, dtype=np.float64)
    flat = [entry for row in rows for entry in row]
    if flat:
        values = np.array(b":".join(flat).split(b":")).astype(np.int64)
        row = np.repeat(np.arange(len(rows)), lengths)
        starts = np.cumsum(lengths) - lengths
        column = np.arange(len(flat)) - np.repeat(starts, lengths)
        items[row, column] = values[0::2]
        times[row, column] = values[1::2] / 1e6
    return items, times


def read_histories(
    client: redis.Redis,
    fold: HistoryFold,
    user_ids: Sequence[object] | np.ndarray,
    n: int | None = None,
) -> Histories:
    """The newest ``n`` (default: all ``fold.length``) items, the category counts
    and the windowed counts of each user, in ONE pipelined round trip.

    A user the fold has never seen gets a row of pads, zero category counts and
    the counts view's defaults.
    """
    n = _checked_n(fold, n)
    users = list(np.asarray(user_ids).tolist())
    view = None if fold.counts is None else fold.counts.view
    with client.pipeline(transaction=False) as pipe:
        for user in users:
            entity = entity_key([user])
            pipe.lrange(history_key(fold.name, fold.version, entity), 0, n - 1)
            pipe.hgetall(category_key(fold.name, fold.version, entity))
            if view is not None:
                pipe.get(record_key(view, LIVE_GENERATION, entity))
        replies = pipe.execute()
    step = 2 if view is None else 3
    items, item_times = _parse_entries(replies[0::step], n)

    category_counts = np.zeros((len(users), fold.n_categories), dtype=np.int64)
    cells = [
        (b, int(category), int(count))
        for b, mix in enumerate(replies[1::step])
        for category, count in mix.items()
    ]
    if cells:
        rows, columns, values = np.array(cells, dtype=np.int64).T
        category_counts[rows, columns] = values

    names = _count_names(fold)
    counts = np.zeros((len(users), len(names)), dtype=np.float32)
    as_of = np.full(len(users), np.nan, dtype=np.float64)
    if view is not None:
        counts[:] = view.defaults
        for b, raw in enumerate(replies[2::step]):
            if raw is not None:
                as_of[b], counts[b] = unpack(raw, len(names))
    return Histories(items, item_times, category_counts, counts, as_of, names)


def newest_history_time(
    client: redis.Redis, fold: HistoryFold, user_id: object
) -> float | None:
    """The event time of a user's newest history entry (None: no history)."""
    raw = client.lindex(history_key(fold.name, fold.version, entity_key([user_id])), 0)
    if raw is None:
        return None
    return int(raw.split(b":")[1]) / 1e6


# --- offline: the same values from an event table ---------------------------------


def _seconds(times: Sequence[float] | np.ndarray | pd.Series) -> np.ndarray:
    if isinstance(times, pd.Series) and pd.api.types.is_datetime64_any_dtype(times):
        return timestamps_to_seconds(times)
    return np.asarray(times, dtype=np.float64)


class _Before:
    """Events sorted by (user, time, item), answering "how many of this user's
    events come strictly before time t" for many (user, t) at once."""

    def __init__(self, codes: np.ndarray, ranks: np.ndarray, items: np.ndarray):
        self.order = np.lexsort((items, ranks, codes))
        self.codes = codes[self.order]
        self.keys = (self.codes << 32) | ranks[self.order]

    def bounds(
        self, q_codes: np.ndarray, q_ranks: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per query: the first of the user's events, and one past the last
        event strictly before the query's time (positions in sorted order)."""
        lo = np.searchsorted(self.keys, q_codes << 32, side="left")
        hi = np.searchsorted(self.keys, (q_codes << 32) | q_ranks, side="left")
        return lo, hi


def _valid_rows(events: pd.DataFrame, fold: HistoryFold) -> pd.DataFrame:
    """First occurrence of each event id, without what the fold dead-letters."""
    required = [
        EVENT_ID_COLUMN,
        EVENT_TYPE_COLUMN,
        TIMESTAMP_COLUMN,
        fold.entity_field,
        fold.item_field,
        fold.category_field,
    ]
    absent = [c for c in required if c not in events.columns]
    if absent:
        raise FeatureStoreError(
            f"the event log lacks columns {absent} (history {fold.name!r} needs "
            f"{required}); build it with interactions_frame or "
            "read_interaction_log."
        )
    if events[required].isna().any().any():
        raise FeatureStoreError(
            f"the event log has missing values in {required}; drop or repair those "
            "rows first (the processor dead-letters such events)."
        )
    events = events.drop_duplicates(EVENT_ID_COLUMN, keep="first")
    kept = events[EVENT_TYPE_COLUMN].isin(fold.kept_types).to_numpy()
    items = events[fold.item_field].to_numpy()
    categories = events[fold.category_field].to_numpy()
    refused = kept & (
        (items < 0) | (categories < 0) | (categories >= fold.n_categories)
    )
    return events[~refused]


def histories_at(
    events: pd.DataFrame,
    fold: HistoryFold,
    user_ids: Sequence[object] | np.ndarray,
    times: Sequence[float] | np.ndarray | pd.Series,
    n: int | None = None,
) -> Histories:
    """For each ``(user_ids[b], times[b])``: what :func:`read_histories` returns
    once the processor has applied exactly the events strictly before that time.

    ``events`` is an event-log table (``event_id``, ``type``,
    ``event_timestamp`` and the fold's entity, item and category fields), in any
    order; a repeated ``event_id`` counts once (its first row), as the dedup
    marker makes it. ``times`` are seconds since the epoch, or UTC datetimes.
    Vectorized: sorts once, then binary searches per request.
    """
    n = _checked_n(fold, n)
    events = _valid_rows(events, fold)
    seconds = timestamps_to_seconds(events[TIMESTAMP_COLUMN])
    q_users = np.asarray(user_ids)
    q_seconds = _seconds(times)
    if q_users.shape != q_seconds.shape or q_users.ndim != 1:
        raise FeatureStoreError(
            f"user_ids and times must be 1-d and equally long (got shapes "
            f"{q_users.shape} and {q_seconds.shape}): one time per request."
        )
    if np.isnan(q_seconds).any():
        raise FeatureStoreError("times contain NaN; give every request a time.")
    num = len(events)
    entities = events[fold.entity_field].to_numpy()
    codes, _ = pd.factorize(np.concatenate([entities, q_users]))
    codes = codes.astype(np.int64)
    _, ranks = np.unique(np.concatenate([seconds, q_seconds]), return_inverse=True)
    ranks = ranks.astype(np.int64)
    e_codes, q_codes = codes[:num], codes[num:]
    e_ranks, q_ranks = ranks[:num], ranks[num:]
    kinds = events[EVENT_TYPE_COLUMN].astype(str).to_numpy()
    items = events[fold.item_field].to_numpy().astype(np.int64)
    categories = events[fold.category_field].to_numpy().astype(np.int64)

    # The history and the category counts: kept events only.
    kept = np.isin(kinds, fold.kept_types)
    history = _Before(e_codes[kept], e_ranks[kept], items[kept])
    lo, hi = history.bounds(q_codes, q_ranks)
    position = hi[:, None] - 1 - np.arange(n)
    present = position >= lo[:, None]
    position = np.where(present, position, 0)
    kept_items = items[kept][history.order]
    kept_times = seconds[kept][history.order]
    if len(kept_items):
        out_items = np.where(present, kept_items[position], NO_ITEM_PAD)
        out_times = np.where(present, kept_times[position], np.nan)
    else:
        out_items = np.full((len(q_codes), n), NO_ITEM_PAD, dtype=np.int64)
        out_times = np.full((len(q_codes), n), np.nan)
    kept_categories = categories[kept][history.order]
    category_counts = np.empty((len(q_codes), fold.n_categories), dtype=np.int64)
    for c in range(fold.n_categories):
        cumulative = np.concatenate([[0], np.cumsum(kept_categories == c)])
        category_counts[:, c] = cumulative[hi] - cumulative[lo]

    counts, as_of = _windowed_counts_at(
        fold, kinds, e_codes, e_ranks, seconds, items, q_codes, q_ranks
    )
    return Histories(
        out_items.astype(np.int64),
        out_times.astype(np.float64),
        category_counts,
        counts,
        as_of,
        _count_names(fold),
    )


def _windowed_counts_at(
    fold: HistoryFold,
    kinds: np.ndarray,
    e_codes: np.ndarray,
    e_ranks: np.ndarray,
    seconds: np.ndarray,
    items: np.ndarray,
    q_codes: np.ndarray,
    q_ranks: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """The windowed counts' record after the events strictly before each time.

    The record is as of ``T``, the newest counted event before the time; a
    count of span ``s`` buckets sums the user's events of its type whose bucket
    is one of the ``s`` ending at ``bucket(T)`` (the rule of
    :mod:`~mlsd_lib.features.windows`, which holds in any arrival order).
    """
    names = _count_names(fold)
    counts = np.zeros((len(q_codes), len(names)), dtype=np.float32)
    as_of = np.full(len(q_codes), np.nan, dtype=np.float64)
    aggregation = fold.counts
    if aggregation is None:
        return counts, as_of
    counts[:] = aggregation.view.defaults
    counted = np.isin(kinds, sorted(fold.counted_types))
    before = _Before(e_codes[counted], e_ranks[counted], items[counted])
    lo, hi = before.bounds(q_codes, q_ranks)
    has = hi > lo
    if not has.any():
        return counts, as_of
    times = seconds[counted][before.order]
    kinds = kinds[counted][before.order]
    buckets = np.floor(times / aggregation.bucket_seconds).astype(np.int64)
    lowest = buckets.min()
    bucket_keys = (before.codes << 32) | (buckets - lowest + 1)
    newest = times[hi[has] - 1]
    top = np.floor(newest / aggregation.bucket_seconds).astype(np.int64)
    as_of[has] = newest
    for j, count in enumerate(aggregation.in_view_order()):
        first_bucket = top - aggregation.num_buckets(count) + 1
        offset = np.maximum(first_bucket - lowest + 1, 0)
        start = np.searchsorted(bucket_keys, (q_codes[has] << 32) | offset, side="left")
        cumulative = np.concatenate([[0], np.cumsum(kinds == count.event_type)])
        counts[has, j] = cumulative[hi[has]] - cumulative[start]
    return counts, as_of
