"""The bytes of one online value, shared by the online store and the stream processor.

Introduced in ``notebooks/feature_store.ipynb``.

An online record holds *all* features of one view for one entity, packed:

    <float64 event_timestamp (seconds since the epoch, UTC)> <float32 x n_features>

little-endian, so a view with 50 features is 208 bytes and a read of any subset
of them is one GET. NaN marks a feature with no value (served as its default).

Keys (``{}`` are filled in; ``|`` joins multi-column entity keys)::

    fs:{view}@v{version}:current              -> the generation readers use
    fs:{view}@v{version}:counter              -> the last generation number handed out
    fs:{view}@v{version}:g{generation}:{key}  -> the packed record

and, written by the stream processor (:mod:`mlsd_lib.features.stream_keys` has
the functions of the same names that build them)::

    fs:{view}@v{version}:win:{key}  -> state_key: one entity's window counters
    fs:seen:{stream}:{event_id}     -> dedup_key: this event was applied (TTL)
    {stream}:dead                   -> dead_letter_stream: poison messages

and, by the history fold (:mod:`~mlsd_lib.features.history_fold`)::

    fs:{history}@v{version}:hist:{key}  -> history_key: last items, newest first
    fs:{history}@v{version}:cats:{key}  -> category_key: kept events per category

and, by the latest-value fold (:mod:`~mlsd_lib.features.latest_fold`)::

    fs:{view}@v{version}:latest:{key}   -> latest_state_key: values, times, ids

On a Redis Cluster the store's keys carry a shard's hash tag instead
(``fs:{view@v1:s07}:...``, :mod:`~mlsd_lib.features.cluster_online`), and so do
the stream processor's (:mod:`~mlsd_lib.features.stream_layout`).

Materialization writes a whole new generation, then moves ``current`` to it in
one SET, so a reader sees either the old complete generation or the new one.
Stream views write to the fixed generation ``live``.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from mlsd_lib.features.views import FeatureView

HEADER = struct.Struct("<d")
LIVE_GENERATION = "live"


def view_prefix(view: FeatureView) -> str:
    return f"fs:{view.name}@v{view.version}"


def current_key(view: FeatureView) -> str:
    return f"{view_prefix(view)}:current"


def counter_key(view: FeatureView) -> str:
    return f"{view_prefix(view)}:counter"


def record_key(view: FeatureView, generation: str, entity_key: str) -> str:
    return f"{view_prefix(view)}:g{generation}:{entity_key}"


def entity_key(values: Sequence[object]) -> str:
    """One entity's key: its column values joined by ``|`` (``"42"``, ``"7|us"``)."""
    parts = [str(v) for v in values]
    for part in parts:
        if "|" in part:
            raise ValueError(f"entity value {part!r} contains '|', the key separator.")
    return "|".join(parts)


def pack(event_timestamp: float, values: np.ndarray) -> bytes:
    return HEADER.pack(event_timestamp) + np.asarray(values, dtype="<f4").tobytes()


def unpack(record: bytes, num_features: int) -> tuple[float, np.ndarray]:
    expected = HEADER.size + 4 * num_features
    if len(record) != expected:
        raise ValueError(
            f"online record is {len(record)} bytes, expected {expected} for "
            f"{num_features} features: the view definition and the stored data differ."
        )
    (timestamp,) = HEADER.unpack_from(record)
    return timestamp, np.frombuffer(record, dtype="<f4", offset=HEADER.size)
