"""Point-in-time training rows for retrieval and ranking, from the event log.

Introduced in
``casestudies/recommender/02_data_and_features.ipynb`` (step 3, "a point-in-time
join with a leakage test"). A training row must hold the features the model
would have been given when the feed was requested, and nothing later. The user
features here are the streamed ones, the history fold's
(:mod:`~mlsd_lib.features.history_fold`: last 50 engaged items, genre mix,
session and play counts), computed offline by
:func:`~mlsd_lib.features.histories.histories_at` from the event log
(:func:`~mlsd_lib.recsys.events.interaction_log`) at each request's time: the
very values the online store served at that moment, since a test streams the
log through the real processor and finds them equal.

* :func:`states_at_requests`: the users' state once per feed request (the 20
  impressions of a feed share it; computing it per impression would repeat it
  20 times), strictly before the request.
* :func:`retrieval_examples`: one two-tower example per engaged play, its
  history the request's; the same shape
  :func:`~mlsd_lib.models.two_tower_data.two_tower_examples` builds from the
  impression log alone.
* :func:`ranking_examples`: one ranker row per impression with user, item and
  cross features (:data:`RANKING_DENSE`), the position and the two labels.
* :func:`served_ranking_examples`: the same rows with the signals the served
  ranker needs besides (:data:`RANKING_SIGNALS`): the request's two-tower score
  of the candidate (the user tower on the history as of the request, the item
  tower of the same release) and the item's engaged rate over the
  :data:`ITEM_STATS_DAYS` whole days before the request's day
  (:func:`item_window_counts`, the one definition the feed's tables use too).
* :func:`states_at_end`: the leak, kept to measure it. Every request sees the
  user as they are at the end of the log ("the latest value"), which includes
  the very play a row is labelled with.
* :func:`check_point_in_time`: the leakage test as a report: no feature uses an
  event at or after its row's time, and cutting the log there changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.histories import NO_ITEM_PAD, Histories, histories_at
from mlsd_lib.features.history_fold import HistoryFold
from mlsd_lib.features.views import TIMESTAMP_COLUMN
from mlsd_lib.features.windows import timestamps_to_seconds
from mlsd_lib.models.ranker import RankerData, history_group_overlap
from mlsd_lib.models.two_tower_data import EntityFeatures, TwoTowerData
from mlsd_lib.recsys.events import epoch_seconds
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_truth import ITEM_KINDS, SECONDS_PER_DAY

__all__ = [
    "ITEM_STATS_DAYS",
    "RANKING_CATEGORICAL",
    "RANKING_DENSE",
    "RANKING_SIGNALS",
    "LeakageReport",
    "RequestStates",
    "TrainingRowsError",
    "check_point_in_time",
    "item_engaged_rate",
    "item_window_counts",
    "ranking_examples",
    "retrieval_examples",
    "served_ranking_examples",
    "states_at_end",
    "states_at_requests",
]

#: The ranker's dense features, in column order: the user's streamed state
#: against the candidate (genre share of all engaged plays, episodes of its
#: series among the last 50, whether it is among them), the user's activity
#: (log1p of the windowed counts, hours since the newest engaged play, how many
#: of the 50 slots are filled) and the item's own (log duration, age in days).
RANKING_DENSE = (
    "genre_share",
    "series_in_history",
    "in_history",
    "log_sessions_1d",
    "log_sessions_7d",
    "log_engaged_plays_1d",
    "log_engaged_plays_7d",
    "log_hours_since_play",
    "history_size",
    "log_duration",
    "age_days",
)
#: The ranker's categorical features: the item's genre and kind.
RANKING_CATEGORICAL = ("genre", "kind")
#: What the served ranker reads besides :data:`RANKING_DENSE`, in column order:
#: the two-tower score u.v of the pair (the only personalised item signal: the
#: features above see a title only through its genre, series, kind, duration
#: and age), and the item's smoothed engaged rate over the
#: :data:`ITEM_STATS_DAYS` whole days before the request's day. (Its impression
#: count is left out: it measures the feed that showed the item more than the
#: item, and it pushed the served feed towards the same titles for everyone.)
RANKING_SIGNALS = ("retrieval_score", "item_engaged_rate")
#: Whole days of log the item statistics count (the day of the request excluded:
#: the feed's tables are computed once a day, before it).
ITEM_STATS_DAYS = 7
#: The engaged rate's prior: ``(engaged + RATE * N) / (impressions + N)``, so
#: that a title shown 3 times with 1 play does not outrank a proven one.
_PRIOR_RATE, _PRIOR_IMPRESSIONS = 0.03, 50.0
#: "Hours since the last engaged play" of a user who has none: 30 days.
_NO_PLAY_HOURS = 30 * 24.0
#: Impressions whose histories are compared with their item at once.
_CHUNK = 100_000


class TrainingRowsError(MlsdError, ValueError):
    """Training rows asked of inputs that do not fit together; says which."""


@dataclass(frozen=True)
class RequestStates:
    """The history fold's values for each feed request of a log, one row each.

    ``request_id`` is sorted; ``user`` and ``time`` (seconds since the epoch)
    are the request's; ``histories`` row ``r`` is what user ``user[r]`` looked
    like at ``as_of[r]`` (the request's time, or the end of the log for the
    leaky :func:`states_at_end`).
    """

    request_id: np.ndarray
    user: np.ndarray
    time: np.ndarray
    as_of: np.ndarray
    histories: Histories

    def __len__(self) -> int:
        return len(self.request_id)

    def rows_of(self, request_id: np.ndarray) -> np.ndarray:
        """Row positions of these requests (each must be one of ours)."""
        request_id = np.asarray(request_id, dtype=np.int64)
        rows = np.searchsorted(self.request_id, request_id)
        rows = np.minimum(rows, max(len(self) - 1, 0))
        unknown = (
            np.ones(len(request_id), dtype=bool)
            if not len(self)
            else self.request_id[rows] != request_id
        )
        if unknown.any():
            raise TrainingRowsError(
                f"{int(unknown.sum())} rows belong to requests these states do not "
                f"hold (e.g. request {int(request_id[unknown][0])}); build the "
                "states from the same log as the rows."
            )
        return rows


def _requests(log: RecsysLog) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each request's id, user and epoch time, sorted by id."""
    ids, first = np.unique(log.request_id, return_index=True)
    return ids, log.user[first], epoch_seconds(log.time[first])


def _feature_events(events: pd.DataFrame, fold: HistoryFold) -> pd.DataFrame:
    """The rows that can change the fold (impressions cannot): the same result,
    a tenth of the work."""
    used = set(fold.kept_types) | set(fold.counted_types)
    return events[events["type"].isin(sorted(used))]


def states_at_requests(
    log: RecsysLog, events: pd.DataFrame, fold: HistoryFold
) -> RequestStates:
    """Each request's user as the online store served them: from the events
    strictly before the request (the point-in-time join of a sequence feature).

    ``events`` is the event log of (at least) the period of ``log``
    (:func:`~mlsd_lib.recsys.events.interaction_log`); earlier days may be in
    it too, and count, as they would online.
    """
    ids, users, times = _requests(log)
    histories = histories_at(_feature_events(events, fold), fold, users, times)
    return RequestStates(ids, users, times, times.copy(), histories)


def states_at_end(
    log: RecsysLog, events: pd.DataFrame, fold: HistoryFold
) -> RequestStates:
    """The leaky join, to measure the leak: every request sees its user as they
    are after the *whole* event log, the plays that came after it (and the one
    its row is labelled with) included. Never train on it."""
    ids, users, times = _requests(log)
    feature_events = _feature_events(events, fold)
    seconds = timestamps_to_seconds(feature_events[TIMESTAMP_COLUMN])
    end = float(seconds.max()) + 1.0 if len(seconds) else float(times.max()) + 1.0
    as_of = np.full(len(ids), end)
    histories = histories_at(feature_events, fold, users, as_of)
    return RequestStates(ids, users, times, as_of, histories)


def retrieval_examples(
    log: RecsysLog,
    states: RequestStates,
    item_features: EntityFeatures,
    user_features: EntityFeatures | None = None,
    history_len: int | None = None,
) -> TwoTowerData:
    """One two-tower example per engaged play, with its request's history.

    ``history_len`` (default: all the fold keeps) truncates to the newest
    entries. ``time`` is the world's (seconds since day 0), as
    :func:`~mlsd_lib.models.two_tower_data.two_tower_examples` has it, so
    :meth:`~mlsd_lib.models.two_tower_data.TwoTowerData.split_at` takes a
    world time.
    """
    n = states.histories.items.shape[1]
    history_len = n if history_len is None else history_len
    if not 1 <= history_len <= n:
        raise TrainingRowsError(
            f"history_len={history_len}: the states hold {n} items per user; ask "
            f"for 1 to {n}."
        )
    if len(item_features) != log.n_items:
        raise TrainingRowsError(
            f"item_features has {len(item_features)} rows but the log's catalogue "
            f"has {log.n_items} items: one row per item id."
        )
    if user_features is None:
        user_features = EntityFeatures.from_arrays(n=log.n_users)
    positives = np.flatnonzero(log.engaged)
    rows = states.rows_of(log.request_id[positives])
    users = log.user[positives]
    return TwoTowerData(
        user=users,
        time=log.time[positives],
        item=log.item[positives],
        history=states.histories.items[rows, :history_len],
        user_dense=user_features.dense[users],
        user_categorical=user_features.categorical[users],
        user_cardinalities=user_features.cardinalities,
        items=item_features,
    )


def ranking_examples(
    log: RecsysLog, states: RequestStates, items: pd.DataFrame
) -> RankerData:
    """One ranker row per impression: :data:`RANKING_DENSE` and
    :data:`RANKING_CATEGORICAL` features, the position and the labels.

    ``items`` is the observable item table (``world.item_features()``: genre,
    series, kind, duration, launch day, one row per item id). The user's part
    comes from ``states`` (use :func:`states_at_requests`), so every feature is
    what serving had when the feed was requested.
    """
    needed = ["genre", "series", "kind", "duration", "launch_day"]
    absent = [c for c in needed if c not in items.columns]
    if absent or len(items) != log.n_items:
        raise TrainingRowsError(
            f"items must be the item table (world.item_features()) with columns "
            f"{needed} and one row per item id ({log.n_items}); it has "
            f"{len(items)} rows and lacks {absent}."
        )
    h = states.histories
    names = list(h.count_names)
    wanted = ["sessions_1d", "sessions_7d", "engaged_plays_1d", "engaged_plays_7d"]
    if any(name not in names for name in wanted):
        raise TrainingRowsError(
            f"the states' counts are {names}, but the ranker needs {wanted}: build "
            "them with the case study's fold (interaction_history())."
        )
    rows = states.rows_of(log.request_id)
    item = log.item
    genre = items["genre"].to_numpy(np.int64)
    series = items["series"].to_numpy(np.int64)
    kind = pd.Categorical(items["kind"], categories=list(ITEM_KINDS)).codes
    duration = items["duration"].to_numpy(np.float64)
    launch_day = items["launch_day"].to_numpy(np.float64)

    # Per request first (a feed's 20 impressions share them), then gathered
    # into one float32 matrix a column at a time: memory stays ~ the matrix.
    total = np.maximum(h.category_counts.sum(axis=1), 1).astype(np.float64)
    newest = h.item_times[:, 0]
    hours = np.where(np.isnan(newest), _NO_PLAY_HOURS, (states.time - newest) / 3600)
    per_request = {
        "log_hours_since_play": np.log1p(np.minimum(hours, _NO_PLAY_HOURS)),
        "history_size": (h.items != NO_ITEM_PAD).sum(axis=1).astype(np.float64),
    }
    for name in wanted:
        per_request[f"log_{name}"] = np.log1p(h.counts[:, names.index(name)])
    dense = np.empty((len(item), len(RANKING_DENSE)), dtype=np.float32)
    column = {name: j for j, name in enumerate(RANKING_DENSE)}
    for name, values in per_request.items():
        dense[:, column[name]] = values[rows]
    dense[:, column["genre_share"]] = h.category_counts[rows, genre[item]] / total[rows]
    for start in range(0, len(item), _CHUNK):  # (rows, 50) at a time: bounded memory
        part = slice(start, start + _CHUNK)
        history = h.items[rows[part]]
        in_series, _ = history_group_overlap(history, item[part], series)
        dense[part, column["series_in_history"]] = in_series
        dense[part, column["in_history"]] = (history == item[part, None]).any(axis=1)
    dense[:, column["log_duration"]] = np.log(duration[item])
    day = np.floor(log.time / SECONDS_PER_DAY)
    dense[:, column["age_days"]] = np.maximum(day - launch_day[item], 0.0)
    categorical = np.column_stack([genre[item], kind[item]])
    features = EntityFeatures(
        dense, categorical, (int(genre.max()) + 1, len(ITEM_KINDS))
    )
    # What ranker_examples makes of log.to_interactions(), without copying the
    # log's other columns.
    return RankerData(
        features,
        log.position.astype(np.int64),
        log.engaged.astype(bool),
        log.minutes.astype(np.float32),
    )


def item_window_counts(
    log: RecsysLog, day: int, days: int = ITEM_STATS_DAYS
) -> tuple[np.ndarray, np.ndarray]:
    """Impressions and engaged plays of every item id over world days
    ``day - days`` to ``day - 1``: what the feed's tables hold as of the start
    of ``day`` (:func:`~mlsd_lib.recsys.feed_tables.build_feed_tables`)."""
    row_day = np.floor(log.time / SECONDS_PER_DAY)
    rows = (row_day >= day - days) & (row_day < day)
    impressions = np.bincount(log.item[rows], minlength=log.n_items)
    engaged = np.bincount(log.item[rows & log.engaged], minlength=log.n_items)
    return impressions.astype(np.int64), engaged.astype(np.int64)


def item_engaged_rate(impressions: np.ndarray, engaged: np.ndarray) -> np.ndarray:
    """``item_engaged_rate`` from the window's counts, shrunk towards a prior
    (the formula training and serving share)."""
    impressions = np.asarray(impressions, dtype=np.float64)
    engaged = np.asarray(engaged, dtype=np.float64)
    return (engaged + _PRIOR_RATE * _PRIOR_IMPRESSIONS) / (
        impressions + _PRIOR_IMPRESSIONS
    )


def _counts_before_each_day(
    log: RecsysLog, days: int, last_day: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(last_day + 1, n_items)`` impressions and engaged plays: row ``d`` holds
    item_window_counts(log, d, days) for every day d, from one bincount."""
    n_items = log.n_items
    row_day = np.floor(log.time / SECONDS_PER_DAY).astype(np.int64)
    inside = row_day <= last_day
    key = row_day[inside] * n_items + log.item[inside]
    size = (last_day + 1) * n_items
    shown = np.bincount(key, minlength=size).reshape(last_day + 1, n_items)
    played = np.bincount(key[log.engaged[inside]], minlength=size)
    played = played.reshape(last_day + 1, n_items)
    out = []
    for per_day in (shown, played):
        before = np.zeros((last_day + 2, n_items), dtype=np.int64)
        np.cumsum(per_day, axis=0, out=before[1:])  # before[d]: days < d
        d = np.arange(last_day + 1)
        out.append(before[d] - before[np.maximum(d - days, 0)])
    return out[0], out[1]


def served_ranking_examples(
    log: RecsysLog,
    states: RequestStates,
    items: pd.DataFrame,
    *,
    past_log: RecsysLog,
    user_embeddings: np.ndarray,
    item_embeddings: np.ndarray,
) -> RankerData:
    """:func:`ranking_examples` with :data:`RANKING_SIGNALS` appended: the rows
    the served ranker trains on.

    ``user_embeddings[r]`` is the user tower's vector for request row ``r`` of
    ``states`` (its history as of the request), ``item_embeddings`` the same
    release's item tower over the catalogue: ``retrieval_score`` is their
    inner product, as the feed computes it for every candidate.
    ``past_log`` holds the days before (and may hold ``log`` itself): the
    engaged rate of a row counts its item's impressions and engaged plays over
    the :data:`ITEM_STATS_DAYS` whole days before the row's day, nothing later.
    """
    user_embeddings = np.asarray(user_embeddings, dtype=np.float32)
    item_embeddings = np.asarray(item_embeddings, dtype=np.float32)
    if (
        len(user_embeddings) != len(states)
        or len(item_embeddings) != log.n_items
        or user_embeddings.shape[1:] != item_embeddings.shape[1:]
    ):
        raise TrainingRowsError(
            f"user_embeddings {user_embeddings.shape} and item_embeddings "
            f"{item_embeddings.shape} must be one vector per request of the states "
            f"({len(states)}) and per item id ({log.n_items}), of one width."
        )
    if past_log.n_items != log.n_items:
        raise TrainingRowsError(
            f"past_log has {past_log.n_items} items, the log {log.n_items}: "
            "pass the log of the same world."
        )
    base = ranking_examples(log, states, items)
    rows = states.rows_of(log.request_id)
    item = log.item
    score = np.einsum(
        "nd,nd->n", user_embeddings[rows], item_embeddings[item], dtype=np.float64
    )
    day = np.floor(log.time / SECONDS_PER_DAY).astype(np.int64)
    last = int(day.max()) if len(day) else 0
    shown, played = _counts_before_each_day(past_log, ITEM_STATS_DAYS, last)
    rate = item_engaged_rate(shown[day, item], played[day, item])
    signals = np.column_stack([score, rate]).astype(np.float32)
    dense = np.concatenate([base.features.dense, signals], axis=1)
    features = EntityFeatures(
        dense, base.features.categorical, base.features.cardinalities
    )
    return RankerData(features, base.position, base.engaged, base.minutes)


# --- the leakage test ---------------------------------------------------------------


@dataclass(frozen=True)
class LeakageReport:
    """What :func:`check_point_in_time` found; every count must be 0.

    ``future_entries``: history entries whose time is at or after their row's;
    ``future_counts``: count records as of a time at or after their row's;
    ``changed_by_cut``: of ``cut_checked`` sampled rows, those whose features
    change when the log is cut at the row's time (everything from then on
    deleted).
    """

    rows: int
    future_entries: int
    future_counts: int
    cut_checked: int
    changed_by_cut: int

    @property
    def ok(self) -> bool:
        """No feature of any row uses its own time or later."""
        return self.future_entries == self.future_counts == self.changed_by_cut == 0


_FIELDS = ("items", "item_times", "category_counts", "counts", "counts_as_of")


def _same_row(a: Histories, i: int, b: Histories, j: int) -> bool:
    return all(
        np.array_equal(getattr(a, f)[i], getattr(b, f)[j], equal_nan=True)
        for f in _FIELDS
    )


def check_point_in_time(
    states: RequestStates,
    events: pd.DataFrame,
    fold: HistoryFold,
    *,
    sample: int = 20,
    seed: int = 0,
) -> LeakageReport:
    """The leakage test: features built from the past only.

    Two checks. Every row: no history entry and no count record is as of the
    row's time or later. A seeded ``sample`` of rows: recompute the row's
    features from the log *cut* at its time (every event at or after it
    deleted) and compare; a join that peeks at the future changes. Run on
    :func:`states_at_end`, both checks fail, which is how a test knows they
    can.
    """
    h = states.histories
    t = states.time
    entries = ~np.isnan(h.item_times)
    future_entries = int((h.item_times >= t[:, None])[entries].sum())
    dated = ~np.isnan(h.counts_as_of)
    future_counts = int((h.counts_as_of[dated] >= t[dated]).sum())

    used = _feature_events(events, fold)
    seconds = timestamps_to_seconds(used[TIMESTAMP_COLUMN])
    order = np.argsort(seconds, kind="stable")
    used, seconds = used.iloc[order], seconds[order]
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(states), min(sample, len(states)), replace=False)
    changed = 0
    for r in np.sort(picks):
        past = used.iloc[: int(np.searchsorted(seconds, t[r], side="left"))]
        alone = histories_at(past, fold, states.user[r : r + 1], t[r : r + 1])
        changed += not _same_row(alone, 0, h, int(r))
    return LeakageReport(
        rows=len(states),
        future_entries=future_entries,
        future_counts=future_counts,
        cut_checked=len(picks),
        changed_by_cut=changed,
    )
