"""The visual search market as events: the log on disk and on a Redis Stream.

Introduced in ``casestudies/visual_search/03_data_and_features.ipynb`` (step 3: "query
and click events to parquet and to a Redis Stream"). The market
(:class:`~mlsd_lib.worlds.images_market.ImageMarket`) draws queries, the lists a policy
showed, what shoppers did with them, and the catalogue's stock and price changes;
:func:`visual_event_log` turns them into one event table, one row per thing that
happened, in time order:

* ``query``: a shopper sent a photo. It concerns no product yet (the product
  photographed is the world's secret, never logged), so its ``product_id`` is
  :data:`~mlsd_lib.features.entity_events.NO_ENTITY`; its ``value`` is her
  region. With ``query_vectors`` it also logs the query region's embedding
  (float16 bytes), not the photo: what step 6's gateway logs;
* ``impression``: a product shown at a slot (``value`` = ``position``), at the
  query's time, since the gateway logs what it answered;
* ``click`` and ``save``: when the shopper did them (``value`` = ``position``);
* ``stock``: the product's availability changed; ``value`` is its whole new
  bit mask of regions it is in stock in (bit ``r``: region ``r``), ``region``
  the region that changed (-1 for the snapshot at time 0);
* ``price``: its new price.

Event ids are derived, not drawn, so a replay publishes the same ids and the
processor's dedup marker recognises a retry: ``q<query>`` for a query,
``q<query>.<slot>i`` / ``c`` / ``s`` for an impression, a click and a save,
``k<product>.<n>`` and ``p<product>.<n>`` for a product's ``n``-th stock and
price change (0: the snapshot).

The first five columns, with ``product_id`` as ``entity_id``, are an
:class:`~mlsd_lib.features.entity_events.EntityEvent`: what travels on the
stream (:func:`publish_events`), folded by the product fold
(:mod:`~mlsd_lib.visual.product_features`). The rest is what the log knew
besides: the query, shopper, region, slot and policy, and the world's ``day``
and ``hour``, the partitions of the parquet files (:func:`write_event_log`, on
:mod:`~mlsd_lib.features.event_log_files`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import redis

from mlsd_lib.features.entity_events import (
    NO_ENTITY,
    entity_events_from_frame,
    publish,
)
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
from mlsd_lib.features.views import TIMESTAMP_COLUMN
from mlsd_lib.features.windows import seconds_to_timestamps
from mlsd_lib.worlds.images_market import DAY_SECONDS, Engagement

__all__ = [
    "EVENT_LOG_COLUMNS",
    "EVENT_TYPES",
    "VISUAL_EPOCH",
    "VISUAL_STREAM",
    "EventLogError",
    "EventLogFiles",
    "epoch_seconds",
    "publish_events",
    "read_event_log",
    "visual_event_log",
    "world_seconds",
    "write_event_log",
]

#: World time 0 (day 0, midnight) as a date: event times are Unix seconds.
VISUAL_EPOCH = pd.Timestamp("2026-03-02", tz="UTC")
#: The stream the visual search's events go to.
VISUAL_STREAM = "visual_events"
#: The event types, in the order ties at one time are logged.
EVENT_TYPES = ("query", "impression", "click", "save", "stock", "price")
#: Columns of the event log, in order (``day`` and ``hour`` partition the files;
#: ``embedding`` is present when query vectors were logged).
EVENT_LOG_COLUMNS = (
    "event_id",
    "type",
    "product_id",
    "value",
    TIMESTAMP_COLUMN,
    "query_id",
    "shopper_id",
    "region",
    "position",
    "policy",
    "embedding",
    "day",
    "hour",
)
_QUERY, _IMPRESSION, _CLICK, _SAVE, _STOCK, _PRICE = range(len(EVENT_TYPES))
_ARROW_TYPES = {
    "event_id": pa.string(),
    "type": pa.dictionary(pa.int8(), pa.string()),
    "product_id": pa.int64(),
    "value": pa.float64(),
    TIMESTAMP_COLUMN: pa.timestamp("us", tz="UTC"),
    "query_id": pa.int64(),
    "shopper_id": pa.int64(),
    "region": pa.int8(),
    "position": pa.int16(),
    "policy": pa.dictionary(pa.int8(), pa.string()),
    "embedding": pa.binary(),
}


def epoch_seconds(world_seconds: np.ndarray | float) -> np.ndarray:
    """World times (seconds since day 0) as Unix seconds, to whole microseconds."""
    seconds = np.asarray(world_seconds, dtype=np.float64) + VISUAL_EPOCH.timestamp()
    return np.round(seconds, 6)


def world_seconds(timestamps: pd.Series | np.ndarray | float) -> np.ndarray:
    """The inverse of :func:`epoch_seconds` (Unix seconds or datetimes)."""
    if isinstance(timestamps, pd.Series) and pd.api.types.is_datetime64_any_dtype(
        timestamps
    ):
        timestamps = timestamps.astype("datetime64[us, UTC]").astype("int64") / 1e6
    return np.asarray(timestamps, dtype=np.float64) - VISUAL_EPOCH.timestamp()


def _changes(table: pd.DataFrame, start: float, end: float) -> pd.DataFrame:
    time = table["time"].to_numpy()
    return table[(time >= start) & (time < end)]


def visual_event_log(
    queries: pd.DataFrame,
    engagement: Engagement,
    *,
    stock_changes: pd.DataFrame | None = None,
    price_changes: pd.DataFrame | None = None,
    policy: str = "legacy",
    query_vectors: np.ndarray | None = None,
    start: float | None = None,
    end: float | None = None,
) -> pd.DataFrame:
    """The market's queries, what was shown and done, and catalogue changes, as
    one event table in time order (columns :data:`EVENT_LOG_COLUMNS`).

    ``queries`` are rows of
    :meth:`~mlsd_lib.worlds.images_market.ImageMarket.queries` and
    ``engagement`` what
    :meth:`~mlsd_lib.worlds.images_market.ImageMarket.respond` returned for
    them; ``stock_changes`` and
    ``price_changes`` the market's tables, of which the changes in ``[start,
    end)`` world seconds are logged (default: the whole days the queries
    span). ``query_vectors`` (``(n_queries, d)``, stored as float16) adds each
    query's region embedding. Ties at one time: queries, impressions, clicks,
    saves, stock, price.
    """
    n, k = engagement.shown.shape
    if n != len(queries):
        raise EventLogError(
            f"engagement holds {n} queries but queries has {len(queries)} rows; pass "
            "the queries the lists were shown for, in the same order."
        )
    if query_vectors is not None and (
        np.ndim(query_vectors) != 2 or len(query_vectors) != n
    ):
        raise EventLogError(
            f"query_vectors must be (n_queries, d) = ({n}, d), one vector per query, "
            f"got shape {np.shape(query_vectors)}."
        )
    days = queries["day"].to_numpy() if n else np.zeros(1, dtype=np.int64)
    start = float(days.min() * DAY_SECONDS) if start is None else float(start)
    end = float((days.max() + 1) * DAY_SECONDS) if end is None else float(end)
    qid = queries["query_id"].to_numpy(np.int64)
    q_time = queries["time"].to_numpy(np.float64)
    shopper = queries["shopper_id"].to_numpy(np.int64)
    region = queries["region"].to_numpy(np.int64)
    shown = engagement.shown
    slot = np.broadcast_to(np.arange(k), (n, k))
    row = np.broadcast_to(np.arange(n)[:, None], (n, k))

    parts: list[dict[str, np.ndarray]] = []

    def add(
        kind: int,
        rows: np.ndarray,
        slots: np.ndarray,
        times: np.ndarray,
        products: np.ndarray,
        values: np.ndarray,
        ids: np.ndarray,
    ) -> None:
        parts.append(
            {
                "kind": np.full(len(times), kind, dtype=np.int8),
                "row": rows,
                "slot": slots,
                "time": times,
                "product": products,
                "value": values,
                "id": ids,
            }
        )

    add(
        _QUERY,
        np.arange(n),
        np.full(n, -1),
        q_time,
        np.full(n, NO_ENTITY),
        region.astype(np.float64),
        np.char.add("q", qid.astype(str)),
    )
    for kind, mask, times, suffix in (
        (_IMPRESSION, shown >= 0, np.broadcast_to(q_time[:, None], (n, k)), "i"),
        (_CLICK, engagement.clicked, engagement.click_time, "c"),
        (_SAVE, engagement.saved, engagement.save_time, "s"),
    ):
        r, s = row[mask], slot[mask]
        ids = np.char.add(
            np.char.add(np.char.add("q", qid[r].astype(str)), "."),
            np.char.add(s.astype(str), suffix),
        )
        add(kind, r, s, times[mask], shown[mask], s.astype(np.float64), ids)
    for kind, table, column, prefix in (
        (_STOCK, stock_changes, "stock", "k"),
        (_PRICE, price_changes, "price", "p"),
    ):
        if table is None:
            continue
        changes = _changes(table, start, end)
        product = changes["product_id"].to_numpy(np.int64)
        ids = np.char.add(
            np.char.add(np.char.add(prefix, product.astype(str)), "."),
            changes["change"].to_numpy().astype(str),
        )
        add(
            kind,
            np.full(len(changes), -1),
            changes["region"].to_numpy(np.int64)
            if kind == _STOCK
            else np.full(len(changes), -1),
            changes["time"].to_numpy(np.float64),
            product,
            changes[column].to_numpy(np.float64),
            ids,
        )

    kind = np.concatenate([p["kind"] for p in parts])
    rows = np.concatenate([p["row"] for p in parts]).astype(np.int64)
    slots = np.concatenate([p["slot"] for p in parts]).astype(np.int64)
    times = np.round(np.concatenate([p["time"] for p in parts]), 6)
    product = np.concatenate([p["product"] for p in parts]).astype(np.int64)
    value = np.concatenate([p["value"] for p in parts]).astype(np.float64)
    event_id = np.concatenate([np.asarray(p["id"], dtype=object) for p in parts])
    of_query = kind <= _SAVE
    order = np.lexsort((product, slots, np.where(of_query, qid[rows], -1), kind, times))
    safe = np.where(of_query, rows, 0)
    day, hour = day_and_hour(times, DAY_SECONDS)
    frame = pd.DataFrame(
        {
            "event_id": event_id.astype(str).astype(object),
            "type": np.asarray(EVENT_TYPES, dtype=object)[kind],
            "product_id": product,
            "value": value,
            TIMESTAMP_COLUMN: seconds_to_timestamps(epoch_seconds(times)),
            "query_id": np.where(of_query, qid[safe], -1).astype(np.int64),
            "shopper_id": np.where(of_query, shopper[safe], -1).astype(np.int64),
            "region": np.where(
                of_query, region[safe], np.where(kind == _STOCK, slots, -1)
            ).astype(np.int8),
            "position": np.where(of_query & (kind != _QUERY), slots, -1).astype(
                np.int16
            ),
            "policy": np.where(of_query, policy, None),
            "embedding": None,
            "day": day,
            "hour": hour,
        }
    )
    if query_vectors is not None:
        packed = np.ascontiguousarray(np.asarray(query_vectors, dtype="<f2"))
        blobs = np.empty(len(frame), dtype=object)
        is_query = kind == _QUERY
        blobs[is_query] = [packed[r].tobytes() for r in rows[is_query]]
        frame["embedding"] = blobs
    return frame.iloc[order].reset_index(drop=True)


def write_event_log(
    events: pd.DataFrame,
    root: str | Path,
    *,
    partition_by: Sequence[str] = ("day", "hour"),
    columns: Sequence[str] | None = None,
) -> EventLogFiles:
    """Write the event log as parquet, one folder per partition (``day=0/hour=21``).

    ``columns`` (default: every stored column, ``embedding`` only if logged)
    chooses what is stored, to measure what a column costs. The layout is
    :func:`~mlsd_lib.features.event_log_files.write_partitioned`'s.
    """
    wanted = columns or [
        c
        for c in EVENT_LOG_COLUMNS
        if c != "embedding" or events.get("embedding", pd.Series()).notna().any()
    ]
    return write_typed(events, root, _ARROW_TYPES, wanted, partition_by=partition_by)


def read_event_log(
    root: str | Path,
    *,
    days: Sequence[int] | None = None,
    types: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a log written by :func:`write_event_log`, in the log's order.

    ``days`` prunes partitions, ``types`` keeps those event types; an event id
    stored twice is read once. The columns are :data:`EVENT_LOG_COLUMNS`
    (``embedding`` None where none was logged) unless fewer were written.
    """
    condition = type_condition(types, EVENT_TYPES)
    frame = read_partitioned(root, days=days, condition=condition)
    kind = pd.Categorical(frame["type"], categories=EVENT_TYPES).codes
    query = np.where(kind <= _SAVE, frame["query_id"].to_numpy(), -1)
    slot = np.where(
        kind == _STOCK, frame["region"].to_numpy(), frame["position"].to_numpy()
    )
    order = np.lexsort(
        (
            frame["product_id"].to_numpy(),
            slot,
            query,
            kind,
            frame[TIMESTAMP_COLUMN].array.asi8,
        )
    )
    frame = frame.take(order).drop_duplicates("event_id", keep="first")
    if "embedding" not in frame.columns:
        frame["embedding"] = None
    columns = [c for c in EVENT_LOG_COLUMNS if c in frame.columns]
    return frame[columns].reset_index(drop=True)


def publish_events(
    client: redis.Redis,
    stream: str,
    events: pd.DataFrame,
    *,
    types: Sequence[str] | None = None,
    chunk_size: int = 5_000,
) -> int:
    """Append the log's events to a Redis Stream, in order; return how many.

    Only ``types`` are sent (default: all). Each event travels as an
    :class:`~mlsd_lib.features.entity_events.EntityEvent` (``product_id`` as
    its entity); each chunk of ``chunk_size`` is checked, then appended in one
    MULTI/EXEC, so memory stays bounded and a bad row fails before its chunk
    is sent.
    """
    if types is not None:
        events = events[events["type"].isin(checked_types(types, EVENT_TYPES))]
    columns = ["event_id", "type", "product_id", "value", TIMESTAMP_COLUMN]
    wire = events[columns].rename(columns={"product_id": "entity_id"})
    return send_in_chunks(
        wire,
        lambda chunk: publish(client, stream, entity_events_from_frame(chunk)),
        chunk_size,
    )
