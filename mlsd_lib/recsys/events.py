"""The recsys world's impression log as interaction events: the event log, on disk
and on a Redis Stream.

Introduced in
``casestudies/recommender/02_data_and_features.ipynb`` (step 3, "events to parquet
and to a Redis Stream"). The world logs one row per impression, with what
happened to it (:class:`~mlsd_lib.worlds.recsys_log.RecsysLog`); a production
system logs *events*, each when it happens. :func:`interaction_log` turns the
first into the second, with one
:class:`~mlsd_lib.features.interaction_events.InteractionEvent` row per thing a
user did, the category being the item's genre:

* ``session_start`` and the feed's ``impression`` rows at the request's time.
  They are emitted by serving the request (the gateway logs what it showed), so
  they are never visible to that request's own feature read: the point-in-time
  rule "strictly before the request" is what serving sees too;
* for each clicked impression, one play. The world draws every outcome of a
  feed at its request and does not say when plays start, so the rule is fixed
  here: a play starts after the user has scanned the feed down to it,
  :data:`SCAN_SECONDS` per slot, so a feed's plays are in slot order and
  within two minutes of the request (the world does not model an evening of
  films one after another, so neither does this). A play that lasts
  :data:`ENGAGED_SECONDS` emits ``engaged_play`` at that moment (the player
  knows then); a shorter one emits ``play`` when it stops.

Event ids are derived, not drawn: ``r<request>s`` for a session, and
``r<request>.<slot>i`` / ``p`` / ``e`` for an impression, a play and an engaged
play, so a replay of the same log publishes the same ids and the processor's
dedup marker recognises a retry.

The table keeps what the log knew besides the event: the request, slot,
candidate source, propensity and policy version of impressions, the minutes of
plays (NaN elsewhere), and the world's ``day`` and ``hour``, the partitions of
the parquet files (:func:`write_event_log`). Only the six event fields travel on
the stream (:func:`publish_events`); by default only the types a streaming
feature uses, since impressions are most of the volume and the history fold
ignores them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import redis

from mlsd_lib.features.event_log_files import (
    EventLogError,
    EventLogFiles,
    checked_types,
    day_and_hour,
    read_partitioned,
    send_in_chunks,
    type_condition,
    write_typed,
)
from mlsd_lib.features.interaction_events import (
    INTERACTION_TYPES,
    NO_ITEM,
    interactions_from_frame,
    publish,
)
from mlsd_lib.features.views import TIMESTAMP_COLUMN
from mlsd_lib.features.windows import seconds_to_timestamps
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_truth import ENGAGED_MINUTES, SECONDS_PER_DAY

__all__ = [
    "ENGAGED_SECONDS",
    "EVENT_LOG_COLUMNS",
    "FEATURE_EVENT_TYPES",
    "RECSYS_EPOCH",
    "SCAN_SECONDS",
    "EventLogError",
    "EventLogFiles",
    "epoch_seconds",
    "interaction_log",
    "publish_events",
    "read_event_log",
    "write_event_log",
]

#: World time 0 (day 0, midnight) as a date: event times are seconds since the
#: Unix epoch, as a real log's are.
RECSYS_EPOCH = pd.Timestamp("2026-03-02", tz="UTC")
#: Seconds a user spends looking at each feed slot before playing one below it.
SCAN_SECONDS = 4.0
#: How long a play must last to be engaged (the case study's 30 s).
ENGAGED_SECONDS = ENGAGED_MINUTES * 60.0
#: The event types a streaming user feature is made of (sessions, plays): what
#: :func:`publish_events` sends unless told otherwise.
FEATURE_EVENT_TYPES = ("session_start", "play", "engaged_play")
#: Columns of the event log, in order (``day`` and ``hour`` partition the files).
EVENT_LOG_COLUMNS = (
    "event_id",
    "type",
    "user_id",
    "item_id",
    "category",
    TIMESTAMP_COLUMN,
    "request_id",
    "position",
    "source",
    "propensity",
    "policy",
    "minutes",
    "day",
    "hour",
)
_SESSION, _IMPRESSION, _PLAY, _ENGAGED = (
    INTERACTION_TYPES.index(t)
    for t in ("session_start", "impression", "play", "engaged_play")
)
#: At equal times: a session starts, then its impressions, then plays (by type code).
_TIE_ORDER = np.array([1, 2, 2, 0], dtype=np.int8)


def epoch_seconds(world_seconds: np.ndarray | float) -> np.ndarray:
    """World times (seconds since day 0) as seconds since the Unix epoch,
    rounded to whole microseconds as every event time is."""
    seconds = np.asarray(world_seconds, dtype=np.float64) + RECSYS_EPOCH.timestamp()
    return np.round(seconds, 6)


def _play_starts(log: RecsysLog) -> np.ndarray:
    """World time each impression's play starts (meaningful where clicked):
    the request's time plus the scan down to its slot."""
    return log.time + SCAN_SECONDS * (log.position.astype(np.float64) + 1.0)


def _check_log(log: RecsysLog, item_genre: np.ndarray) -> None:
    if len(log) == 0:
        return
    same = log.request_id[1:] == log.request_id[:-1]
    in_order = np.all(~same | (log.position[1:] > log.position[:-1]))
    one_time = np.all(~same | (log.time[1:] == log.time[:-1]))
    if not (in_order and one_time):
        raise EventLogError(
            "the log's rows of one request must be contiguous, in slot order and "
            "share one time, as RecsysWorld.simulate writes them; do not shuffle "
            "or subset a request's rows before converting."
        )
    if int(log.item.max()) >= len(item_genre):
        raise EventLogError(
            f"item_genre has {len(item_genre)} entries but the log shows item "
            f"{int(log.item.max())}: pass world.items.genre (one genre per item)."
        )


def interaction_log(log: RecsysLog, item_genre: np.ndarray) -> pd.DataFrame:
    """The world's log as an event log: one row per event, in time order.

    ``item_genre`` is the genre of every item (``world.items.genre``), the
    events' category. Columns are :data:`EVENT_LOG_COLUMNS`; the first six are
    an :func:`~mlsd_lib.features.interaction_events.interactions_frame`, so the
    table feeds :func:`~mlsd_lib.features.histories.histories_at` and
    :func:`~mlsd_lib.features.interaction_events.interactions_from_frame` as
    is. Rows at equal times: sessions, then impressions (by request, slot),
    then plays.
    """
    item_genre = np.asarray(item_genre, dtype=np.int64)
    _check_log(log, item_genre)
    first = np.ones(len(log), dtype=bool)
    first[1:] = log.request_id[1:] != log.request_id[:-1]
    sessions = np.flatnonzero(first)
    clicked = np.flatnonzero(log.clicked)
    starts = _play_starts(log)[clicked]
    engaged = log.engaged[clicked]
    watched_s = log.minutes[clicked].astype(np.float64) * 60.0
    play_time = np.where(engaged, starts + ENGAGED_SECONDS, starts + watched_s)

    n_s, n_i = len(sessions), len(log)
    rows = np.concatenate([sessions, np.arange(n_i), clicked])
    kind = np.concatenate(
        [
            np.full(n_s, _SESSION),
            np.full(n_i, _IMPRESSION),
            np.where(engaged, _ENGAGED, _PLAY),
        ]
    ).astype(np.int8)
    world_time = np.concatenate([log.time[sessions], log.time, play_time])
    itemless = kind == _SESSION
    item = np.where(itemless, NO_ITEM, log.item[rows])
    impression = kind == _IMPRESSION
    is_play = ~itemless & ~impression
    tie = _TIE_ORDER[kind]
    order = np.lexsort((log.position[rows], rows, tie, world_time))

    request = log.request_id[rows]
    position = np.where(itemless, -1, log.position[rows]).astype(np.int16)
    suffix = np.array(["i", "p", "e", "s"])[kind]  # by type code
    slot = pd.Series(position).astype(str).where(~itemless, "")
    event_id = "r" + pd.Series(request).astype(str) + slot.mask(~itemless, "." + slot)
    event_id = event_id + suffix
    policies = np.array(log.policies or ("?",), dtype=object)
    day, hour = day_and_hour(world_time, SECONDS_PER_DAY)
    frame = pd.DataFrame(
        {
            "event_id": event_id.to_numpy(dtype=object),
            "type": np.array(INTERACTION_TYPES, dtype=object)[kind],
            "user_id": log.user[rows].astype(np.int64),
            "item_id": item.astype(np.int64),
            "category": np.where(itemless, NO_ITEM, item_genre[item]).astype(np.int64),
            TIMESTAMP_COLUMN: seconds_to_timestamps(epoch_seconds(world_time)),
            "request_id": request.astype(np.int64),
            "position": position,
            "source": np.where(impression, log.source[rows], -1).astype(np.int8),
            "propensity": np.where(impression, log.propensity[rows], np.nan),
            "policy": policies[log.policy[rows]],
            "minutes": np.where(is_play, log.minutes[rows], np.nan).astype(np.float32),
            "day": day,
            "hour": hour,
        }
    )
    return frame.iloc[order].reset_index(drop=True)


# --- the offline store: parquet files, one per hour --------------------------------

_ARROW_TYPES = {
    "event_id": pa.string(),
    "type": pa.dictionary(pa.int8(), pa.string()),
    "user_id": pa.int64(),
    "item_id": pa.int64(),
    "category": pa.int64(),
    TIMESTAMP_COLUMN: pa.timestamp("us", tz="UTC"),
    "request_id": pa.int64(),
    "position": pa.int16(),
    "source": pa.int8(),
    "propensity": pa.float64(),
    "policy": pa.dictionary(pa.int8(), pa.string()),
    "minutes": pa.float32(),
}


def write_event_log(
    events: pd.DataFrame,
    root: str | Path,
    *,
    partition_by: Sequence[str] = ("day", "hour"),
    columns: Sequence[str] | None = None,
) -> EventLogFiles:
    """Write the event log as parquet, one folder per partition (``day=3/hour=21``).

    Hive-style folders let a reader prune by day or hour without opening the
    other files (:func:`read_event_log` does). ``columns`` (default: every
    column but the partitions) chooses what is stored, to measure what a
    column costs. The layout (atomic part files, one per partition and call)
    is :func:`~mlsd_lib.features.event_log_files.write_partitioned`'s, so days
    may be written one at a time (a day's last plays fall after midnight, in
    the next day's first hour). A day written twice is stored twice and read
    once: the event ids make the log idempotent, as the dedup marker makes the
    stream.
    """
    wanted = columns or EVENT_LOG_COLUMNS
    return write_typed(events, root, _ARROW_TYPES, wanted, partition_by=partition_by)


def read_event_log(
    root: str | Path,
    *,
    days: Sequence[int] | None = None,
    types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read an event log written by :func:`write_event_log`, in time order.

    ``days`` prunes partitions (only those folders are opened); ``types``
    keeps only those event types. An event id stored twice (a day written
    twice) is read once. Columns come back with :func:`interaction_log`'s
    types.
    """
    condition = type_condition(types, INTERACTION_TYPES)
    frame = read_partitioned(root, days=days, condition=condition)
    # Files come back in folder-name order (hour=10 before hour=2): restore the
    # log's order, which these four keys fix (see interaction_log).
    keys = [TIMESTAMP_COLUMN, "type", "request_id", "position"]
    if all(k in frame.columns for k in keys):
        tie = _TIE_ORDER[
            pd.Categorical(frame["type"], categories=INTERACTION_TYPES).codes
        ]
        order = np.lexsort(
            (
                frame["position"].to_numpy(),
                frame["request_id"].to_numpy(),
                tie,
                frame[TIMESTAMP_COLUMN].array.asi8,
            )
        )
        frame = frame.take(order)
    if "event_id" in frame.columns:
        frame = frame.drop_duplicates("event_id", keep="first")
    return frame.reset_index(drop=True)


# --- the stream -----------------------------------------------------------------------


def publish_events(
    client: redis.Redis,
    stream: str,
    events: pd.DataFrame,
    *,
    types: Sequence[str] | None = FEATURE_EVENT_TYPES,
    chunk_size: int = 5_000,
) -> int:
    """Append the log's events to a Redis Stream, in order; return how many.

    Only ``types`` are sent (default :data:`FEATURE_EVENT_TYPES`; ``None``: all,
    impressions included). Each chunk of ``chunk_size`` events is checked as
    :class:`~mlsd_lib.features.interaction_events.InteractionEvent` objects and
    appended in one MULTI/EXEC, so memory stays bounded and a bad row fails
    before its chunk is sent.
    """
    if types is not None:
        events = events[events["type"].isin(checked_types(types, INTERACTION_TYPES))]
    return send_in_chunks(
        events,
        lambda chunk: publish(client, stream, interactions_from_frame(chunk)),
        chunk_size,
    )
