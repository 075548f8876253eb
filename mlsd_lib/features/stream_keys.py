"""The Redis keys the stream processor and its folds write besides the online records.

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


def _history_prefix(name: str, version: int) -> str:
    return f"fs:{name}@v{version}"


def history_key(name: str, version: int, entity: str) -> str:
    """The list of one entity's last items, newest first
    (:class:`~mlsd_lib.features.history_fold.HistoryFold` ``name``, ``version``)."""
    return f"{_history_prefix(name, version)}:hist:{entity}"


def category_key(name: str, version: int, entity: str) -> str:
    """The hash of one entity's kept events counted per category."""
    return f"{_history_prefix(name, version)}:cats:{entity}"
