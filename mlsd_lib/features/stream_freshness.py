"""Freshness: how long from an event's ``XADD`` to its feature being served.

Introduced in ``notebooks/streaming_features.ipynb``. Reads the stream views'
live records the way the online store does, and times the whole path.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import redis

from mlsd_lib.features.event_stream import AdEvent, publish
from mlsd_lib.features.records import (
    LIVE_GENERATION,
    entity_key,
    record_key,
    unpack,
)
from mlsd_lib.features.windows import StreamAggregation


def read_live_record(
    client: redis.Redis, aggregation: StreamAggregation, entity: object
) -> tuple[float, np.ndarray] | None:
    """One entity's online record for a stream view, unpacked (None if absent)."""
    view = aggregation.view
    raw = client.get(record_key(view, LIVE_GENERATION, entity_key([entity])))
    return None if raw is None else unpack(raw, len(view.features))


def measure_freshness(
    client: redis.Redis,
    stream: str,
    aggregation: StreamAggregation,
    events: Sequence[AdEvent],
    *,
    timeout_s: float = 5.0,
    process: Callable[[], object] | None = None,
) -> np.ndarray:
    """Seconds from XADD to the feature being visible, one per event.

    Each event is re-timed to the wall clock, published, and its entity's record
    polled until it carries that time. ``process`` is called in the polling loop
    (an in-process processor's ``step``); leave it None when a processor runs in
    another process. Bounded: at most ``timeout_s`` per event.
    """
    latencies = np.empty(len(events), dtype=np.float64)
    for i, event in enumerate(events):
        event = replace(event, timestamp=time.time())
        entity = getattr(event, aggregation.entity_field)
        publish(client, stream, [event])
        sent = time.perf_counter()
        while True:
            if process is not None:
                process()
            record = read_live_record(client, aggregation, entity)
            if record is not None and record[0] >= event.timestamp:
                break
            if time.perf_counter() - sent > timeout_s:
                raise TimeoutError(
                    f"event {event.event_id} was not visible in view "
                    f"{aggregation.view.name!r} after {timeout_s} s: is a processor "
                    f"consuming stream {stream!r}?"
                )
        latencies[i] = time.perf_counter() - sent
    return latencies
