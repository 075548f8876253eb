"""The Redis keys the stream processor writes besides the online records.

Introduced in ``notebooks/streaming_features.ipynb``; the whole key map is in
:mod:`mlsd_lib.features.records`.
"""

from __future__ import annotations

from mlsd_lib.features.records import (
    view_prefix,
)
from mlsd_lib.features.windows import StreamAggregation


def dead_letter_stream(stream: str) -> str:
    """Where poison messages from ``stream`` go."""
    return f"{stream}:dead"


def dedup_key(stream: str, event_id: str) -> str:
    """The marker that says an event from ``stream`` was applied."""
    return f"fs:seen:{stream}:{event_id}"


def state_key(aggregation: StreamAggregation, entity: str) -> str:
    """The hash of one entity's per-bucket counters (plus its newest time)."""
    return f"{view_prefix(aggregation.view)}:win:{entity}"
