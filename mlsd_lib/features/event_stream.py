"""Ad events on a Redis Stream: the schema, the producer, and the replayable log.

Introduced in ``notebooks/streaming_features.ipynb``. Producers append
:class:`AdEvent` s with ``XADD``; the stream is both the queue the stream
processor consumes and a durable, ordered event log that can be replayed into the
offline store (:func:`read_event_log`). Every event carries its own
``event_id``: Redis assigns each *message* an id, but a producer that retries a
send makes two messages of one event, and only the event's own id lets the
processor count it once.

The machinery here is generic over the event's schema, so a second schema
(:class:`~mlsd_lib.features.interaction_events.InteractionEvent`,
:class:`~mlsd_lib.features.entity_events.EntityEvent`) reuses it rather than
copying it: the checks every event makes (:func:`checked_event_id`,
:func:`checked_id`, :func:`checked_timestamp`), the parse of a message's fields
(:func:`parse_fields`), publishing, and the event-log table, whose columns are
the event class's fields (``timestamp`` becomes ``event_timestamp``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd
import redis

from mlsd_lib.features.views import TIMESTAMP_COLUMN, FeatureStoreError
from mlsd_lib.features.windows import seconds_to_timestamps, timestamps_to_seconds
from mlsd_lib.validation import (
    require_fraction,
    require_int,
    require_number,
    require_seed,
)

#: The event types the ads example knows.
EVENT_TYPES = ("impression", "click")
_FIELDS = ("event_id", "type", "user_id", "ad_id", "timestamp")
_MAX_ID_LENGTH = 128


class InvalidEvent(FeatureStoreError):
    """An event that breaks the schema; the message says which field and why."""


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def checked_event_id(event_id: object) -> str:
    """``event_id`` if it is a usable id, else :class:`InvalidEvent` saying why."""
    if (
        not isinstance(event_id, str)
        or not event_id
        or len(event_id) > _MAX_ID_LENGTH
        or any(c.isspace() for c in event_id)
    ):
        raise InvalidEvent(
            f"event_id {event_id!r} must be a non-empty string of at most "
            f"{_MAX_ID_LENGTH} characters without spaces (e.g. a UUID)."
        )
    return event_id


def checked_id(event_id: str, name: str, value: object) -> int:
    """A non-negative integer id field of event ``event_id``, as a Python int."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidEvent(f"event {event_id}: {name}={value!r} must be an integer id.")
    if value < 0:
        raise InvalidEvent(f"event {event_id}: {name}={value} must be non-negative.")
    return int(value)


def checked_timestamp(event_id: str, timestamp: object) -> float:
    """An event time, rounded to whole microseconds (see
    :mod:`~mlsd_lib.features.windows`), or :class:`InvalidEvent`."""
    t = timestamp
    if (
        isinstance(t, bool)
        or not isinstance(t, int | float | np.floating | np.integer)
        or not math.isfinite(t)
        or t <= 0
    ):
        raise InvalidEvent(
            f"event {event_id}: timestamp={t!r} must be a positive, finite "
            "number of seconds since the epoch (e.g. time.time())."
        )
    return round(float(t) * 1e6) / 1e6


def parse_fields(
    fields: Mapping[bytes | str, bytes | str],
    required: Sequence[str],
    numbers: Mapping[str, type],
) -> dict[str, Any]:
    """A stream message's ``required`` fields as text, ``numbers`` converted.

    Raises :class:`InvalidEvent` naming what is wrong: text that is not UTF-8, a
    missing field, a number that does not parse. Other fields are ignored.
    """
    try:
        values = {_text(k): _text(v) for k, v in fields.items()}
    except UnicodeDecodeError as error:
        raise InvalidEvent(f"message is not UTF-8 text: {error}") from None
    absent = [f for f in required if f not in values]
    if absent:
        raise InvalidEvent(f"message lacks fields {absent} (needs {list(required)}).")
    parsed: dict[str, Any] = {name: values[name] for name in required}
    for name, kind in numbers.items():
        try:
            parsed[name] = kind(values[name])
        except ValueError:
            raise InvalidEvent(
                f"field {name}={values[name]!r} is not a valid {kind.__name__}."
            ) from None
    return parsed


class StreamEvent(Protocol):
    """What the event-log machinery needs of an event class: a frozen dataclass
    with ``event_id``, ``type`` and ``timestamp`` fields, checked on construction,
    and its stream message both ways."""

    event_id: str
    type: str
    timestamp: float

    def to_fields(self) -> dict[str, str]: ...


E = TypeVar("E")


@dataclass(frozen=True)
class AdEvent:
    """One impression or click: who saw or clicked which ad, when.

    ``timestamp`` is the event time in seconds since the epoch (UTC), rounded to
    whole microseconds on construction (see :mod:`~mlsd_lib.features.windows`).
    ``event_id`` is unique per event and stable across retries.
    """

    event_id: str
    type: str
    user_id: int
    ad_id: int
    timestamp: float

    def __post_init__(self) -> None:
        checked_event_id(self.event_id)
        if self.type not in EVENT_TYPES:
            raise InvalidEvent(
                f"event {self.event_id}: type {self.type!r} is not one of "
                f"{list(EVENT_TYPES)}."
            )
        for name in ("user_id", "ad_id"):
            value = checked_id(self.event_id, name, getattr(self, name))
            object.__setattr__(self, name, value)
        timestamp = checked_timestamp(self.event_id, self.timestamp)
        object.__setattr__(self, "timestamp", timestamp)

    def to_fields(self) -> dict[str, str]:
        """The stream message's fields (``repr`` keeps the float exact)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "user_id": str(self.user_id),
            "ad_id": str(self.ad_id),
            "timestamp": repr(self.timestamp),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> AdEvent:
        """Parse a stream message; :class:`InvalidEvent` says what is wrong."""
        numbers = {"user_id": int, "ad_id": int, "timestamp": float}
        return cls(**parse_fields(fields, _FIELDS, numbers))


def publish(
    client: redis.Redis,
    stream: str,
    events: Iterable[StreamEvent],
    *,
    maxlen: int | None = None,
    event_class: type = AdEvent,
) -> list[str]:
    """Append ``events`` to ``stream`` in one MULTI/EXEC; return their message ids.

    Every event is checked before anything is sent (each must be an
    ``event_class``, :class:`AdEvent` unless told), and the batch is one
    transaction, so a bad event or a lost connection never leaves half a batch on
    the stream. ``maxlen`` caps the stream at about that many messages
    (``MAXLEN ~``): trimming ignores consumer groups, so keep it well above the
    backlog a slow processor may build, or unread events are lost.
    """
    batch = list(events)
    name = event_class.__name__
    for position, event in enumerate(batch):
        if not isinstance(event, event_class):
            raise InvalidEvent(
                f"item {position} is a {type(event).__name__}, not an {name}; build "
                f"events with {name}(...) so they are checked before sending."
            )
    if maxlen is not None and maxlen < 1:
        raise ValueError(f"maxlen={maxlen} must be a positive number of messages.")
    if not batch:
        return []
    with client.pipeline(transaction=True) as pipe:
        for event in batch:
            pipe.xadd(stream, event.to_fields(), maxlen=maxlen, approximate=True)
        return [_text(message_id) for message_id in pipe.execute()]


def _columns(event_class: type) -> list[tuple[str, str]]:
    """(field, annotation) of an event dataclass, in declaration order."""
    return [(f.name, str(f.type)) for f in dataclasses.fields(event_class)]


def events_frame(
    events: Sequence[StreamEvent], *, event_class: type | None = None
) -> pd.DataFrame:
    """Events as an event-log table, in the given order (``event_timestamp`` UTC).

    One column per field of the event class (the first event's, else
    ``event_class``, else :class:`AdEvent`): integer fields as int64, other
    numbers as float64, text as objects, and ``timestamp`` as the UTC datetime
    column ``event_timestamp``.
    """
    if event_class is None:
        event_class = type(events[0]) if len(events) else AdEvent
    columns: dict[str, Any] = {}
    for name, annotation in _columns(event_class):
        values = [getattr(e, name) for e in events]
        if name == "timestamp":
            seconds = np.array(values, dtype=np.float64)
            columns[TIMESTAMP_COLUMN] = seconds_to_timestamps(seconds)
        elif annotation == "int":
            columns[name] = np.array(values, dtype=np.int64)
        elif annotation == "float":
            columns[name] = np.array(values, dtype=np.float64)
        else:
            columns[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(columns)


def events_from_frame(
    frame: pd.DataFrame, *, event_class: type[E] = AdEvent
) -> list[E]:
    """The inverse of :func:`events_frame`: rows back into checked events."""
    names, casts, columns = [], [], []
    for name, annotation in _columns(event_class):
        names.append(name)
        if name == "timestamp":
            casts.append(float)
            columns.append(timestamps_to_seconds(frame[TIMESTAMP_COLUMN]).tolist())
        else:
            casts.append({"int": int, "float": float}.get(annotation, str))
            columns.append(frame[name].tolist())
    return [
        event_class(
            **{n: cast(v) for n, cast, v in zip(names, casts, row, strict=True)}
        )
        for row in zip(*columns, strict=True)
    ]


def read_event_log(
    client: redis.Redis,
    stream: str,
    *,
    page_size: int = 1000,
    event_class: type = AdEvent,
) -> pd.DataFrame:
    """Replay the whole stream, oldest first, as an event-log table.

    Messages that do not parse (as ``event_class``) are skipped: the processor
    dead-letters them, so the log then holds exactly the events the online store
    counted. Adds a ``message_id`` column.
    """
    events, message_ids = [], []
    start = "-"
    while True:
        page = client.xrange(stream, min=start, max="+", count=page_size)
        for message_id, fields in page:
            try:
                events.append(event_class.from_fields(fields))
            except InvalidEvent:
                continue
            message_ids.append(_text(message_id))
        if len(page) < page_size:
            break
        start = "(" + _text(page[-1][0])
    frame = events_frame(events, event_class=event_class)
    frame.insert(0, "message_id", pd.Series(message_ids, dtype=object))
    return frame


def synthetic_events(
    num_impressions: int,
    *,
    num_users: int = 50,
    num_ads: int = 20,
    start: float = 1_700_000_000.0,
    impressions_per_s: float = 0.5,
    click_rate: float = 0.1,
    seed: int = 0,
) -> list[AdEvent]:
    """A deterministic ads event log, in time order (ties keep generation order).

    Impressions arrive as a Poisson process; each is clicked with probability
    ``click_rate`` a few seconds to minutes later, by the same user on the same ad.
    Event ids are ``e00000001``, ... in time order.
    """
    require_int("num_impressions", num_impressions, at_least=0)
    require_int("num_users", num_users, at_least=1)
    require_int("num_ads", num_ads, at_least=1)
    require_number("impressions_per_s", impressions_per_s, above=0)
    require_fraction("click_rate", click_rate, zero=True)
    require_seed("seed", seed)
    rng = np.random.default_rng(seed)
    times = start + np.cumsum(rng.exponential(1 / impressions_per_s, num_impressions))
    users = rng.integers(0, num_users, num_impressions)
    ads = rng.integers(0, num_ads, num_impressions)
    clicked = rng.random(num_impressions) < click_rate
    delays = rng.exponential(30.0, num_impressions)
    kinds = np.concatenate(
        [np.zeros(num_impressions, int), np.ones(clicked.sum(), int)]
    )
    all_times = np.round(np.concatenate([times, times[clicked] + delays[clicked]]), 6)
    all_users = np.concatenate([users, users[clicked]])
    all_ads = np.concatenate([ads, ads[clicked]])
    order = np.argsort(all_times, kind="stable")
    return [
        AdEvent(
            event_id=f"e{i + 1:08d}",
            type=EVENT_TYPES[kinds[j]],
            user_id=int(all_users[j]),
            ad_id=int(all_ads[j]),
            timestamp=float(all_times[j]),
        )
        for i, j in enumerate(order)
    ]
