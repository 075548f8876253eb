"""Entity events on a Redis Stream: something happened to an entity, or it changed.

Introduced in ``casestudies/visual_search/03_data_and_features.ipynb`` (panel A: "stock,
price, 24 h product CTR" kept fresh from the event stream). An :class:`EntityEvent` says
that at some time an entity (a product, an ad, a listing: an integer id) was part of an
event of some type, carrying one number:

* a **change of state**, whose number is the new value: a price, or a stock
  bit mask. A :class:`~mlsd_lib.features.latest_fold.LatestValueFold` keeps the
  newest value per type;
* an **occurrence**, whose number is a detail (the slot an impression was shown
  in): a windowed count counts it
  (:class:`~mlsd_lib.features.windows.StreamAggregation`).

An event that concerns no entity (a search query, before anything is shown)
carries :data:`NO_ENTITY`; folds ignore it, the offline log keeps it. Nothing
here knows about products or shops: the types are tokens the producer and the
fold agree on, checked only to be usable in keys (no ``:``, no spaces).

The machinery is :mod:`~mlsd_lib.features.event_stream`'s: the same checks on
ids and times, the same parse into an
:class:`~mlsd_lib.features.event_stream.InvalidEvent` naming the bad field (the
processor dead-letters it), the same all-or-nothing :func:`publish`, the same
event-log table (``value`` as a float64 column).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import redis

from mlsd_lib.features import event_stream
from mlsd_lib.features.event_stream import (
    InvalidEvent,
    checked_event_id,
    checked_timestamp,
    parse_fields,
)

__all__ = [
    "ENTITY_STREAM",
    "MAX_TYPE_LENGTH",
    "NO_ENTITY",
    "EntityEvent",
    "entity_events_frame",
    "entity_events_from_frame",
    "publish",
]

#: The stream entity producers write to unless told otherwise.
ENTITY_STREAM = "entity_events"
#: The entity id of an event that concerns no entity (a query).
NO_ENTITY = -1
#: The longest event type: it is part of Redis hash fields.
MAX_TYPE_LENGTH = 32
_FIELDS = ("event_id", "type", "entity_id", "value", "timestamp")
_NUMBERS = {"entity_id": int, "value": float, "timestamp": float}


def checked_type(event_id: str, kind: object) -> str:
    """An event type usable in keys and hash fields, or
    :class:`~mlsd_lib.features.event_stream.InvalidEvent`."""
    if (
        not isinstance(kind, str)
        or not kind
        or len(kind) > MAX_TYPE_LENGTH
        or ":" in kind
        or "," in kind
        or any(c.isspace() for c in kind)
    ):
        raise InvalidEvent(
            f"event {event_id}: type {kind!r} must be a non-empty token of at most "
            f"{MAX_TYPE_LENGTH} characters without ':', ',' or spaces (e.g. 'click')."
        )
    return kind


@dataclass(frozen=True)
class EntityEvent:
    """One event of an entity: its ``type``, a ``value`` and when it happened.

    ``entity_id`` is a non-negative integer, or :data:`NO_ENTITY` (-1) for an
    event about no entity. ``value`` is a finite number (a price, a bit mask
    below 2**24 to stay exact as float32, a slot; 0 when there is nothing to
    say). ``timestamp`` is seconds since the epoch (UTC), rounded to whole
    microseconds; ``event_id`` is unique per event and stable across retries.
    """

    event_id: str
    type: str
    entity_id: int
    value: float
    timestamp: float

    def __post_init__(self) -> None:
        checked_event_id(self.event_id)
        checked_type(self.event_id, self.type)
        entity = self.entity_id
        if entity != NO_ENTITY or isinstance(entity, bool):
            entity = event_stream.checked_id(self.event_id, "entity_id", entity)
        object.__setattr__(self, "entity_id", int(entity))
        value = self.value
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float | np.integer | np.floating)
            or not math.isfinite(value)
        ):
            raise InvalidEvent(
                f"event {self.event_id}: value={value!r} must be a finite number "
                "(use 0 when the event carries none)."
            )
        object.__setattr__(self, "value", float(value))
        timestamp = checked_timestamp(self.event_id, self.timestamp)
        object.__setattr__(self, "timestamp", timestamp)

    @property
    def has_entity(self) -> bool:
        return self.entity_id != NO_ENTITY

    def to_fields(self) -> dict[str, str]:
        """The stream message's fields (``repr`` keeps the floats exact)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "entity_id": str(self.entity_id),
            "value": repr(self.value),
            "timestamp": repr(self.timestamp),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> EntityEvent:
        """Parse a stream message; an
        :class:`~mlsd_lib.features.event_stream.InvalidEvent` says what is wrong."""
        return cls(**parse_fields(fields, _FIELDS, _NUMBERS))


def publish(
    client: redis.Redis,
    stream: str,
    events: Iterable[EntityEvent],
    *,
    maxlen: int | None = None,
) -> list[str]:
    """Append ``events`` in one MULTI/EXEC (all or nothing); return message ids."""
    return event_stream.publish(
        client, stream, events, maxlen=maxlen, event_class=EntityEvent
    )


def entity_events_frame(events: Sequence[EntityEvent]) -> pd.DataFrame:
    """Events as an event-log table: ``event_id``, ``type``, ``entity_id``,
    ``value``, ``event_timestamp`` (UTC), in the given order."""
    return event_stream.events_frame(events, event_class=EntityEvent)


def entity_events_from_frame(frame: pd.DataFrame) -> list[EntityEvent]:
    """The inverse of :func:`entity_events_frame`: rows back into checked events."""
    return event_stream.events_from_frame(frame, event_class=EntityEvent)
