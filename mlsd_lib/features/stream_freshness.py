"""Freshness: how long from an event's ``XADD`` to its feature being served.

Introduced in ``notebooks/streaming_features.ipynb``. Reads what a fold wrote
the way a reader does (a stream view's live record, or a user's history), and
times the whole path: publish, the processor's read and apply, the read back.
The recommender's requirement, "plays must reach the online store within 60 s",
is this number for an engaged play and a
:class:`~mlsd_lib.features.history_fold.HistoryFold`; the visual search's "an
out-of-stock product disappears within 5 minutes" is it for a stock event and
a :class:`~mlsd_lib.features.latest_fold.LatestValueFold` (its values' live
record).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import redis

from mlsd_lib.features.event_stream import publish
from mlsd_lib.features.histories import newest_history_time
from mlsd_lib.features.history_fold import HistoryFold, microseconds
from mlsd_lib.features.latest_fold import LatestValueFold
from mlsd_lib.features.records import (
    LIVE_GENERATION,
    entity_key,
    record_key,
    unpack,
)
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.features.windows import StreamAggregation


def read_live_record(
    client: redis.Redis, aggregation: StreamAggregation, entity: object
) -> tuple[float, np.ndarray] | None:
    """One entity's online record for a stream view, unpacked (None if absent)."""
    view = aggregation.view
    raw = client.get(record_key(view, LIVE_GENERATION, entity_key([entity])))
    return None if raw is None else unpack(raw, len(view.features))


def _visible(
    client: redis.Redis,
    target: StreamAggregation | HistoryFold | LatestValueFold,
    event: Any,
) -> bool:
    """Whether a reader of ``target`` sees ``event`` (or something newer)."""
    if isinstance(target, HistoryFold):
        newest = newest_history_time(
            client, target, getattr(event, target.entity_field)
        )
        return newest is not None and microseconds(newest) >= microseconds(
            event.timestamp
        )
    record = read_live_record(client, target, getattr(event, target.entity_field))
    return record is not None and record[0] >= event.timestamp


def _target_name(target: StreamAggregation | HistoryFold | LatestValueFold) -> str:
    if isinstance(target, HistoryFold):
        return f"history {target.name!r}"
    return f"view {target.view.name!r}"


def measure_freshness(
    client: redis.Redis,
    stream: str,
    aggregation: StreamAggregation | HistoryFold | LatestValueFold,
    events: Sequence[Any],
    *,
    timeout_s: float = 5.0,
    process: Callable[[], object] | None = None,
) -> np.ndarray:
    """Seconds from XADD to the feature being visible, one per event.

    ``aggregation`` is what to watch: a stream view's live record (the event's
    entity's record must carry the event's time), or a
    :class:`~mlsd_lib.features.history_fold.HistoryFold` (the user's newest
    history entry must be the event's; the events must then be of a type the
    history keeps, such as engaged plays), or a
    :class:`~mlsd_lib.features.latest_fold.LatestValueFold` (its values'
    record must carry the event's time; the events must set a value). Each
    event is re-timed to the wall clock, published, and polled for.
    ``process`` is called in the polling loop (an in-process processor's
    ``step``); leave it None when a processor runs in another process.
    Bounded: at most ``timeout_s`` per event.
    """
    if isinstance(aggregation, HistoryFold):
        ignored = sorted({e.type for e in events} - set(aggregation.kept_types))
        if ignored:
            raise FeatureStoreError(
                f"events of types {ignored} never enter history "
                f"{aggregation.name!r} (it keeps {list(aggregation.kept_types)}); "
                "measure its freshness with events of a kept type."
            )
    if isinstance(aggregation, LatestValueFold):
        ignored = sorted({e.type for e in events} - set(aggregation.values.types))
        if ignored:
            raise FeatureStoreError(
                f"events of types {ignored} set no value of view "
                f"{aggregation.view.name!r} (its types: "
                f"{list(aggregation.values.types)}); measure its freshness with "
                "value events."
            )
    latencies = np.empty(len(events), dtype=np.float64)
    for i, event in enumerate(events):
        event = replace(event, timestamp=time.time())
        publish(client, stream, [event], event_class=type(event))
        sent = time.perf_counter()
        while True:
            if process is not None:
                process()
            if _visible(client, aggregation, event):
                break
            if time.perf_counter() - sent > timeout_s:
                raise TimeoutError(
                    f"event {event.event_id} was not visible in "
                    f"{_target_name(aggregation)} after {timeout_s} s: is a "
                    f"processor consuming stream {stream!r}?"
                )
        latencies[i] = time.perf_counter() - sent
    return latencies
