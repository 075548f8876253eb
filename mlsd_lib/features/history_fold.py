"""The history fold: each entity's last N items, category counts and activity.

Introduced in ``casestudies/recommender/index.md`` (panel A's "streaming
features: last 50 plays, genre mix, session counts"). A :class:`HistoryFold`
folds interaction events (:mod:`~mlsd_lib.features.interaction_events`) into
three things per entity (a user), in ONE atomic Lua apply behind the stream
processor's dedup marker (:mod:`~mlsd_lib.features.stream_folds`):

* **the history**: the item ids of the events of ``kept_types`` (engaged plays),
  newest first, at most ``length`` of them: a Redis list of ``"<item>:<time in
  microseconds>"`` entries;
* **the category counts** of those same events (the genre mix): a hash from
  category to count, over every kept event, not only the ``length`` in the list;
* **windowed counts** of chosen event types (sessions and engaged plays over a
  day and a week): a :class:`~mlsd_lib.features.windows.StreamAggregation`, folded
  by the very Lua the windowed-count fold runs
  (:data:`~mlsd_lib.features.windowed_fold.WINDOWED_LUA`), into a packed online
  record any :class:`~mlsd_lib.features.online.OnlineStore` can read. Only
  events of the types its counts use touch it, so impressions neither bump
  counters nobody reads nor move the record's time.

Nothing here knows about videos: an entity, an item and a category are fields of
an event, named by the fold.

**Late events are inserted by time, not appended.** The list is kept sorted
newest first by (event time, item id). An event in time order (the usual case)
is one ``LPUSH`` + ``LTRIM``; a late one is inserted where its time puts it
(``LINSERT``), and one older than all ``length`` entries of a full list is not
added (it would be trimmed at once). So the list is always the ``length``
newest kept events *by event time* among those applied, whatever order they
arrived in, and equal to the offline history computed from the event table
(:func:`~mlsd_lib.features.histories.histories_at`); appending in arrival order
would make the served history depend on network jitter, which no training set
can reproduce. The price: a late event costs one read of the list (``length``
entries) inside the script. Category counts and windowed counts do not depend
on arrival order either (see :mod:`~mlsd_lib.features.windows`).

Keys (the key map is in :mod:`~mlsd_lib.features.records`)::

    fs:{name}@v{version}:hist:{entity}  -> the history list (history_key)
    fs:{name}@v{version}:cats:{entity}  -> the category counts (category_key)

Both expire ``ttl`` after the entity's last kept event (wall clock), so a user
who left stops costing memory. A redelivered event finds its dedup marker and
changes nothing; a failed apply (say, a key of the wrong type) writes nothing,
because every read and type check comes before the first write.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from mlsd_lib.features.event_stream import InvalidEvent
from mlsd_lib.features.interaction_events import (
    INTERACTION_STREAM,
    InteractionEvent,
)
from mlsd_lib.features.records import entity_key
from mlsd_lib.features.stream_folds import dedup_script
from mlsd_lib.features.stream_keys import category_key, history_key
from mlsd_lib.features.views import (
    Feature,
    FeatureStoreError,
    FeatureView,
    StreamSource,
)
from mlsd_lib.features.windowed_fold import (
    WINDOWED_LUA,
    event_args,
    windowed_keys_and_args,
)
from mlsd_lib.features.windows import StreamAggregation, WindowedCount

__all__ = [
    "DEFAULT_CATEGORIES",
    "DEFAULT_HISTORY_LENGTH",
    "MAX_HISTORY_LENGTH",
    "HistoryFold",
    "interaction_history",
]

#: The most entries a history may keep: a late event reads the whole list.
MAX_HISTORY_LENGTH = 1000
#: The case study's "last 50 plays".
DEFAULT_HISTORY_LENGTH = 50
#: Categories (genres) of the example history.
DEFAULT_CATEGORIES = 12

# KEYS: [1] dedup marker, [2..] the windowed part (3 per aggregation, 0 or 1 of
#       them), then the history list and the category hash.
# ARGV: [1] marker retention, [2..4] event type, time, packed time, [5] number of
#       aggregations and their arguments (WINDOWED_LUA), then: kept (1/0), the
#       entry, its time in microseconds, its item, the length, the category, the
#       ttl (s) of the history keys.
_BODY = """
local plans, p, k = windowed_read(tonumber(ARGV[5]), 6, 2)
local history, categories = KEYS[k], KEYS[k + 1]
local kept, entry = ARGV[p] == '1', ARGV[p + 1]
local t_us, item = tonumber(ARGV[p + 2]), tonumber(ARGV[p + 3])
local length, category, ttl = tonumber(ARGV[p + 4]), ARGV[p + 5], tonumber(ARGV[p + 6])

local function older(other)
  local o_item, o_t = string.match(other, '^(%-?%d+):(%d+)$')
  o_item, o_t = tonumber(o_item), tonumber(o_t)
  return o_t < t_us or (o_t == t_us and o_item < item)
end

local size, at, pivot = 0, nil, nil
if kept then
  size = redis.call('LLEN', history)  -- reads first: WRONGTYPE fails here
  redis.call('HLEN', categories)
  local head = redis.call('LRANGE', history, 0, 0)
  if size == 0 or older(head[1]) then
    at = 1
  else
    local entries = redis.call('LRANGE', history, 0, -1)
    for i = 2, #entries do
      if older(entries[i]) then at, pivot = i, entries[i]; break end
    end
    if at == nil and size < length then at = size + 1 end
  end
end

windowed_write(plans, ARGV[2], ARGV[3], ARGV[4])

if kept then
  if at == 1 then
    redis.call('LPUSH', history, entry)
  elseif pivot then
    redis.call('LINSERT', history, 'BEFORE', pivot, entry)
  elseif at then
    redis.call('RPUSH', history, entry)
  end
  if at then redis.call('LTRIM', history, 0, length - 1) end
  redis.call('HINCRBY', categories, category, 1)
  redis.call('EXPIRE', history, ttl)
  redis.call('EXPIRE', categories, ttl)
end
"""


def _parse_interaction(fields: Mapping[bytes | str, bytes | str]) -> Any:
    return InteractionEvent.from_fields(fields)


@dataclass(frozen=True)
class HistoryFold:
    """Per entity: the last ``length`` items of ``kept_types`` events, newest
    first; their counts per category; and the windowed ``counts``.

    ``stream`` is the stream whose events it folds; ``n_categories`` bounds the
    categories (an event of a kept type with a category outside
    ``[0, n_categories)`` is invalid and dead-lettered); ``counts`` (optional)
    must be fed by the same stream and keyed by ``entity_field``. ``parse`` turns
    a message into an event with ``event_id``, ``type``, ``timestamp`` and the
    named fields (:meth:`InteractionEvent.from_fields
    <mlsd_lib.features.interaction_events.InteractionEvent.from_fields>` unless
    told). ``version`` is part of every key, as a view's is.
    """

    name: str
    stream: str
    n_categories: int
    length: int = DEFAULT_HISTORY_LENGTH
    kept_types: tuple[str, ...] = ("engaged_play",)
    counts: StreamAggregation | None = None
    entity_field: str = "user_id"
    item_field: str = "item_id"
    category_field: str = "category"
    ttl: timedelta = timedelta(days=30)
    version: int = 1
    parse_fields: Callable[[Mapping[bytes | str, bytes | str]], Any] = field(
        default=_parse_interaction, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or "|" in self.name:
            raise FeatureStoreError(
                f"history name {self.name!r} must be non-empty without ':' or '|'."
            )
        if (
            isinstance(self.length, bool)
            or not isinstance(self.length, int)
            or not (1 <= self.length <= MAX_HISTORY_LENGTH)
        ):
            raise FeatureStoreError(
                f"history {self.name!r}: length={self.length!r} must be a whole "
                f"number from 1 to {MAX_HISTORY_LENGTH} (a late event reads the "
                "whole list inside the apply)."
            )
        if (
            isinstance(self.n_categories, bool)
            or not isinstance(self.n_categories, int)
            or self.n_categories < 1
        ):
            raise FeatureStoreError(
                f"history {self.name!r}: n_categories={self.n_categories!r} must "
                "be a whole number of at least 1."
            )
        if not self.kept_types:
            raise FeatureStoreError(
                f"history {self.name!r} keeps no event types; name at least one "
                "(e.g. kept_types=('engaged_play',))."
            )
        if self.ttl < timedelta(seconds=1):
            raise FeatureStoreError(
                f"history {self.name!r} needs a ttl of at least one second."
            )
        if self.version < 1:
            raise FeatureStoreError(f"history {self.name!r} needs version >= 1.")
        counts = self.counts
        if counts is not None and (
            counts.stream != self.stream or counts.entity_field != self.entity_field
        ):
            raise FeatureStoreError(
                f"history {self.name!r} folds stream {self.stream!r} by "
                f"{self.entity_field!r}, but its counts (view {counts.view.name!r}) "
                f"are fed by {counts.stream!r} by {counts.entity_field!r}; build "
                "them for the same stream and entity."
            )

    # --- the StreamFold protocol -----------------------------------------------

    @property
    def script(self) -> str:
        return dedup_script(_BODY, prelude=WINDOWED_LUA)

    @property
    def counted_types(self) -> frozenset[str]:
        """The event types the windowed counts use (others do not touch them)."""
        if self.counts is None:
            return frozenset()
        return frozenset(c.event_type for c in self.counts.counts)

    def parse(self, fields: Mapping[bytes | str, bytes | str]) -> Any:
        """Parse a message; also refuse a kept event this history cannot hold."""
        event = self.parse_fields(fields)
        if event.type in self.kept_types:
            item = getattr(event, self.item_field)
            category = getattr(event, self.category_field)
            if item < 0:
                raise InvalidEvent(
                    f"event {event.event_id}: a {event.type} enters history "
                    f"{self.name!r}, so it needs an item ({self.item_field}="
                    f"{item})."
                )
            if not 0 <= category < self.n_categories:
                raise InvalidEvent(
                    f"event {event.event_id}: {self.category_field}={category} is "
                    f"not in [0, {self.n_categories}), the categories history "
                    f"{self.name!r} counts; fix the producer or raise n_categories."
                )
        return event

    def keys_and_args(self, event: Any) -> tuple[list[str], list[Any]]:
        counted = self.counts is not None and event.type in self.counted_types
        keys, args = windowed_keys_and_args((self.counts,) if counted else (), event)
        entity = entity_key([getattr(event, self.entity_field)])
        keys += [
            history_key(self.name, self.version, entity),
            category_key(self.name, self.version, entity),
        ]
        item = getattr(event, self.item_field)
        t_us = microseconds(event.timestamp)
        args += [
            1 if event.type in self.kept_types else 0,
            f"{item}:{t_us}",
            t_us,
            item,
            self.length,
            getattr(event, self.category_field),
            math.ceil(self.ttl.total_seconds()),
        ]
        return keys, event_args(event) + args


def microseconds(timestamp: float) -> int:
    """An event time (whole microseconds) as the integer the history stores."""
    return round(timestamp * 1e6)


def interaction_history(
    stream: str = INTERACTION_STREAM,
    *,
    length: int = DEFAULT_HISTORY_LENGTH,
    n_categories: int = DEFAULT_CATEGORIES,
    name: str = "user_history",
) -> HistoryFold:
    """The example history over interaction events, per user.

    Keeps the last ``length`` engaged plays and their category counts, and
    counts sessions and engaged plays over the last day and week in the view
    ``<name>_counts`` (hourly buckets: a week is 168 of them, so the counts slide
    in one-hour steps).
    """
    windows = (("1d", timedelta(days=1)), ("7d", timedelta(days=7)))
    counted = (("sessions", "session_start"), ("engaged_plays", "engaged_play"))
    counts = tuple(
        WindowedCount(f"{what}_{label}", event_type, window)
        for what, event_type in counted
        for label, window in windows
    )
    view = FeatureView(
        name=f"{name}_counts",
        entities=("user_id",),
        features=tuple(
            Feature(c.feature, "float32", 0.0, f"{c.event_type} events in {c.window}")
            for c in counts
        ),
        ttl=timedelta(days=7),
        source=StreamSource(stream),
        description="sessions and engaged plays per user over a day and a week",
    )
    aggregation = StreamAggregation(view, "user_id", counts, bucket=timedelta(hours=1))
    return HistoryFold(
        name=name,
        stream=stream,
        n_categories=n_categories,
        length=length,
        counts=aggregation,
    )
