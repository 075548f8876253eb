"""User-item interaction events on a Redis Stream: the schema and the producer.

Introduced in ``casestudies/recommender/index.md`` (step 3: "events to a Redis
Stream; a streaming job maintaining each user's last 50 plays"). An
:class:`InteractionEvent` says that a user did something with an item of some
category at some time: saw it (``impression``), started it (``play``), watched it
long enough to count (``engaged_play``), or opened the app (``session_start``,
which concerns no item). Nothing here knows about films or genres: a category
is a small integer, whatever the caller makes it mean.

The schema reuses the ad events' machinery (:mod:`~mlsd_lib.features.event_stream`):
the same checks on ids and times, the same parse of a stream message into an
:class:`~mlsd_lib.features.event_stream.InvalidEvent` naming the bad field (the
processor dead-letters it), the same all-or-nothing :func:`publish`, the same
event-log table. What an event *does* to the online store is a fold's business
(:mod:`~mlsd_lib.features.history_fold`), not the event's.

A ``play`` and an ``engaged_play`` are two outcomes of one play, not two steps:
a producer sends ``engaged_play`` once the play has lasted long enough (30 s in
the case study), and ``play`` for one that stopped earlier.
"""

from __future__ import annotations

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
    "INTERACTION_STREAM",
    "INTERACTION_TYPES",
    "ITEMLESS_TYPES",
    "NO_ITEM",
    "InteractionEvent",
    "interactions_frame",
    "interactions_from_frame",
    "publish",
    "read_interaction_log",
    "synthetic_interactions",
]

#: The stream interaction producers write to unless told otherwise.
INTERACTION_STREAM = "interactions"
#: The event types an interaction may have.
INTERACTION_TYPES = ("impression", "play", "engaged_play", "session_start")
#: The types that concern no item: they carry :data:`NO_ITEM` as item and category.
ITEMLESS_TYPES = ("session_start",)
#: The item id and category of an event that concerns no item.
NO_ITEM = -1
_FIELDS = ("event_id", "type", "user_id", "item_id", "category", "timestamp")
_NUMBERS = {"user_id": int, "item_id": int, "category": int, "timestamp": float}


@dataclass(frozen=True)
class InteractionEvent:
    """One thing a user did with an item (or, for a session start, with none).

    ``item_id`` and ``category`` are non-negative integers, except for the
    :data:`ITEMLESS_TYPES`, which must carry :data:`NO_ITEM` (-1) for both.
    ``timestamp`` is seconds since the epoch (UTC), rounded to whole
    microseconds; ``event_id`` is unique per event and stable across retries.
    """

    event_id: str
    type: str
    user_id: int
    item_id: int
    category: int
    timestamp: float

    def __post_init__(self) -> None:
        checked_event_id(self.event_id)
        if self.type not in INTERACTION_TYPES:
            raise InvalidEvent(
                f"event {self.event_id}: type {self.type!r} is not one of "
                f"{list(INTERACTION_TYPES)}."
            )
        object.__setattr__(
            self, "user_id", event_stream.checked_id(self.event_id, "user_id",
                                                     self.user_id)
        )  # fmt: skip
        itemless = self.type in ITEMLESS_TYPES
        for name in ("item_id", "category"):
            value = getattr(self, name)
            if itemless:
                if isinstance(value, bool) or value != NO_ITEM:
                    raise InvalidEvent(
                        f"event {self.event_id}: a {self.type} concerns no item, so "
                        f"{name} must be {NO_ITEM} (got {value!r})."
                    )
                object.__setattr__(self, name, NO_ITEM)
            else:
                checked = event_stream.checked_id(self.event_id, name, value)
                object.__setattr__(self, name, checked)
        timestamp = checked_timestamp(self.event_id, self.timestamp)
        object.__setattr__(self, "timestamp", timestamp)

    def to_fields(self) -> dict[str, str]:
        """The stream message's fields (``repr`` keeps the float exact)."""
        return {
            "event_id": self.event_id,
            "type": self.type,
            "user_id": str(self.user_id),
            "item_id": str(self.item_id),
            "category": str(self.category),
            "timestamp": repr(self.timestamp),
        }

    @classmethod
    def from_fields(cls, fields: Mapping[bytes | str, bytes | str]) -> InteractionEvent:
        """Parse a stream message; an
        :class:`~mlsd_lib.features.event_stream.InvalidEvent` says what is wrong."""
        return cls(**parse_fields(fields, _FIELDS, _NUMBERS))


def publish(
    client: redis.Redis,
    stream: str,
    events: Iterable[InteractionEvent],
    *,
    maxlen: int | None = None,
) -> list[str]:
    """Append ``events`` in one MULTI/EXEC (all or nothing); return message ids.

    :func:`mlsd_lib.features.event_stream.publish` for interaction events: each
    is checked to be an :class:`InteractionEvent` before anything is sent.
    """
    return event_stream.publish(
        client, stream, events, maxlen=maxlen, event_class=InteractionEvent
    )


def interactions_frame(events: Sequence[InteractionEvent]) -> pd.DataFrame:
    """Events as an event-log table: ``event_id``, ``type``, ``user_id``,
    ``item_id``, ``category``, ``event_timestamp`` (UTC), in the given order."""
    return event_stream.events_frame(events, event_class=InteractionEvent)


def interactions_from_frame(frame: pd.DataFrame) -> list[InteractionEvent]:
    """The inverse of :func:`interactions_frame`: rows back into checked events."""
    return event_stream.events_from_frame(frame, event_class=InteractionEvent)


def read_interaction_log(
    client: redis.Redis, stream: str = INTERACTION_STREAM, *, page_size: int = 1000
) -> pd.DataFrame:
    """Replay the whole stream, oldest first, as an event-log table (messages
    that do not parse are skipped; a ``message_id`` column is added)."""
    return event_stream.read_event_log(
        client, stream, page_size=page_size, event_class=InteractionEvent
    )


def synthetic_interactions(
    num_sessions: int,
    *,
    num_users: int = 20,
    num_items: int = 200,
    n_categories: int = 12,
    start: float = 1_700_000_000.0,
    sessions_per_s: float = 0.01,
    engaged_rate: float = 0.6,
    seed: int = 0,
) -> list[InteractionEvent]:
    """A deterministic interaction log in time order (ties keep generation order).

    Sessions start as a Poisson process, each by a random user; a session holds
    1 + Poisson(3) plays about two minutes apart, of items drawn with a
    popularity that falls as 1/rank, each preceded by its impression a few
    seconds earlier and engaged with probability ``engaged_rate``. Every item
    has one category, drawn once. Event ids are ``i00000001``, ... in time order.
    """
    if num_sessions < 0 or num_users < 1 or num_items < 1 or n_categories < 1:
        raise ValueError(
            "need num_sessions >= 0 and num_users, num_items, n_categories >= 1."
        )
    if sessions_per_s <= 0 or not 0 <= engaged_rate <= 1:
        raise ValueError("need sessions_per_s > 0 and 0 <= engaged_rate <= 1.")
    rng = np.random.default_rng(seed)
    item_category = rng.integers(0, n_categories, num_items)
    popularity = 1.0 / np.arange(1, num_items + 1)
    session_times = start + np.cumsum(rng.exponential(1 / sessions_per_s, num_sessions))
    session_users = rng.integers(0, num_users, num_sessions)
    plays_per_session = 1 + rng.poisson(3.0, num_sessions)
    session_of_play = np.repeat(np.arange(num_sessions), plays_per_session)
    num_plays = len(session_of_play)
    gaps = rng.exponential(120.0, num_plays)
    first = np.concatenate([[0], np.cumsum(plays_per_session)[:-1]])
    cumulative = np.cumsum(gaps)
    offsets = cumulative - np.repeat(cumulative[first] - gaps[first], plays_per_session)
    play_times = session_times[session_of_play] + offsets
    items = rng.choice(num_items, num_plays, p=popularity / popularity.sum())
    engaged = rng.random(num_plays) < engaged_rate
    seen_before = rng.uniform(1.0, 5.0, num_plays)

    kinds = np.concatenate(
        [
            np.full(num_sessions, INTERACTION_TYPES.index("session_start")),
            np.full(num_plays, INTERACTION_TYPES.index("impression")),
            np.where(
                engaged,
                INTERACTION_TYPES.index("engaged_play"),
                INTERACTION_TYPES.index("play"),
            ),
        ]
    )
    times = np.round(
        np.concatenate([session_times, play_times - seen_before, play_times]), 6
    )
    users = np.concatenate([session_users, *[session_users[session_of_play]] * 2])
    all_items = np.concatenate([np.full(num_sessions, NO_ITEM), items, items])
    categories = np.where(all_items == NO_ITEM, NO_ITEM, item_category[all_items])
    order = np.argsort(times, kind="stable")
    return [
        InteractionEvent(
            event_id=f"i{i + 1:08d}",
            type=INTERACTION_TYPES[kinds[j]],
            user_id=int(users[j]),
            item_id=int(all_items[j]),
            category=int(categories[j]),
            timestamp=float(times[j]),
        )
        for i, j in enumerate(order)
    ]
