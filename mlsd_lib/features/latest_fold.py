"""The latest-value fold: each entity's newest value per event type, plus counts.

Introduced in ``casestudies/visual_search/03_data_and_features.ipynb`` (panel A:
"streaming features: stock, price, 24 h product CTR"). Some features are not counts but
*states*: a product's price, the regions it is in stock in. The event that
changes one carries the new value (the ``value`` of an
:class:`~mlsd_lib.features.entity_events.EntityEvent`), and the feature is the
newest such value. A
:class:`LatestValueFold` keeps, per entity, in ONE atomic Lua apply behind the
stream processor's dedup marker (:mod:`~mlsd_lib.features.stream_folds`):

* **the latest values**: for each declared :class:`LatestValue`, the value of
  the newest event of its type, written as a packed online record of the
  view :attr:`LatestValues.view` (:mod:`~mlsd_lib.features.records`), so any
  :class:`~mlsd_lib.features.online.OnlineStore` reads it with the other views
  of a request in one round trip. A feature with no event yet is NaN (served
  as its default, flagged missing); the record's time is the newest value's;
* **windowed counts** of other event types (optional ``counts``): the very Lua
  of the windowed-count fold (:data:`~mlsd_lib.features.windowed_fold.WINDOWED_LUA`),
  touched only by the types its counts use.

**Newest by event time, not by arrival.** A value replaces the stored one only
if its event is at least as new, by (time, event id), so the served value is
that of the newest event applied whatever order events arrived in, and equal
to :func:`latest_values_at`, the offline computation of the same definition.
Applying "last arrived wins" would let a retried, delayed "in stock" overwrite
the "out of stock" that followed it. Each state event must therefore carry the
whole new value (the product's price; all regions' stock as a bit mask), not a
delta: a delta is only right in arrival order.

A value is true until the next change, so the view's TTL must outlast the
longest quiet spell (the example: 365 days), or producers must re-send a
snapshot periodically (a change-data-capture feed does): the record and its
state expire ``ttl`` after the entity's last value event, and a stale record
is served as the default.

Keys (the key map is in :mod:`~mlsd_lib.features.records`)::

    fs:{view}@v{version}:latest:{entity}   -> latest_state_key: per feature
        v:<f> (packed float32), t:<f> (time), i:<f> (event id); t, h (newest)
    fs:{view}@v{version}:glive:{entity}    -> the packed record readers use

Values are float32 on the wire and in the record, as every online feature is:
exact for prices in cents below ~$160,000 and bit masks below 2**24.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from mlsd_lib.features.entity_events import (
    ENTITY_STREAM,
    NO_ENTITY,
    EntityEvent,
    checked_type,
)
from mlsd_lib.features.event_stream import InvalidEvent
from mlsd_lib.features.records import (
    LIVE_GENERATION,
    current_key,
    entity_key,
    record_key,
    view_prefix,
)
from mlsd_lib.features.stream_folds import dedup_script
from mlsd_lib.features.views import (
    TIMESTAMP_COLUMN,
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
from mlsd_lib.features.windows import (
    StreamAggregation,
    WindowedCount,
    timestamps_to_seconds,
)

__all__ = [
    "COUNT_WINDOW",
    "LatestValue",
    "LatestValueFold",
    "LatestValues",
    "entity_state",
    "latest_state_key",
    "latest_values_at",
]

#: The window of the example's counts (:func:`entity_state`): a sliding 24 h.
COUNT_WINDOW = timedelta(hours=24)
_FLOAT32 = struct.Struct("<f")

# KEYS: [1] dedup marker, [2..] the windowed part (3 per aggregation, 0 or 1 of
#       them), then the latest-value state hash, record and current key.
# ARGV: [1] marker retention, [2..4] event type, time, packed time, [5] number of
#       aggregations and their arguments (WINDOWED_LUA), then: the feature the
#       event sets ('' for none), its packed float32 value, the event id, the
#       ttl (s) of the record and state, the number n of features, their names.
_BODY = """
local plans, p, k = windowed_read(tonumber(ARGV[5]), 6, 2)
local state_key, record, current = KEYS[k], KEYS[k + 1], KEYS[k + 2]
local feature, packed, id = ARGV[p], ARGV[p + 1], ARGV[p + 2]
local ttl, n = tonumber(ARGV[p + 3]), tonumber(ARGV[p + 4])
local state = {}
if feature ~= '' then
  local flat = redis.call('HGETALL', state_key)  -- reads first: WRONGTYPE here
  for i = 1, #flat, 2 do state[flat[i]] = flat[i + 1] end
end

windowed_write(plans, ARGV[2], ARGV[3], ARGV[4])

if feature ~= '' then
  local t = tonumber(ARGV[3])
  local old_t, old_id = tonumber(state['t:' .. feature]), state['i:' .. feature]
  if old_t == nil or t > old_t or (t == old_t and id >= old_id) then
    local fields = {'v:' .. feature, packed, 't:' .. feature, ARGV[3],
                    'i:' .. feature, id}
    state['v:' .. feature] = packed
    local newest = tonumber(state['t'])
    if newest == nil or t >= newest then
      state['h'] = ARGV[4]
      fields[#fields + 1] = 't'
      fields[#fields + 1] = ARGV[3]
      fields[#fields + 1] = 'h'
      fields[#fields + 1] = ARGV[4]
    end
    local parts = {state['h']}
    for j = 1, n do
      parts[j + 1] = state['v:' .. ARGV[p + 4 + j]] or string.char(0, 0, 192, 127)
    end
    redis.call('HSET', state_key, unpack(fields))
    redis.call('SET', record, table.concat(parts), 'EX', ttl)
    redis.call('SET', current, 'live')
  end
  redis.call('EXPIRE', state_key, ttl)
end
"""


@dataclass(frozen=True)
class LatestValue:
    """Feature ``feature`` is the value of the newest ``event_type`` event."""

    feature: str
    event_type: str

    def __post_init__(self) -> None:
        try:
            checked_type("(definition)", self.event_type)
        except InvalidEvent:
            raise FeatureStoreError(
                f"latest value {self.feature!r}: event type {self.event_type!r} "
                "must be a non-empty token without ':', ',' or spaces."
            ) from None


@dataclass(frozen=True)
class LatestValues:
    """The latest values that fill one stream view, keyed by one event field.

    ``entity_field`` names both the event field and the view's one entity
    column; ``values`` define every feature of the view once, each from its own
    event type.
    """

    view: FeatureView
    entity_field: str
    values: tuple[LatestValue, ...]

    def __post_init__(self) -> None:
        view = self.view
        view.check_stream_keyed_by(self.entity_field, "latest values")
        names = [v.feature for v in self.values]
        types = [v.event_type for v in self.values]
        if sorted(names) != sorted(view.feature_names) or len(set(names)) != len(names):
            raise FeatureStoreError(
                f"the latest values for view {view.name!r} must define each of its "
                f"features {view.feature_names} once, got {names}."
            )
        if len(set(types)) != len(types):
            raise FeatureStoreError(
                f"view {view.name!r}: event types {types} repeat; one type sets one "
                "feature."
            )

    @property
    def stream(self) -> str:
        assert isinstance(self.view.source, StreamSource)
        return self.view.source.stream

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(v.event_type for v in self.values)

    def feature_of(self, event_type: str) -> str | None:
        """The feature an event of ``event_type`` sets (None: it sets none)."""
        for value in self.values:
            if value.event_type == event_type:
                return value.feature
        return None


def latest_state_key(view: FeatureView, entity: str) -> str:
    """The hash of one entity's latest values, their times and event ids."""
    return f"{view_prefix(view)}:latest:{entity}"


def _parse_entity_event(fields: Mapping[bytes | str, bytes | str]) -> Any:
    return EntityEvent.from_fields(fields)


@dataclass(frozen=True)
class LatestValueFold:
    """Per entity: the newest value of each of ``values``' event types, and the
    windowed ``counts`` (optional) of others, from one stream.

    ``counts`` must be fed by the same stream, keyed by the same field, and
    count types that set no value. ``parse_fields`` turns a message into an
    event with ``event_id``, ``type``, ``value``, ``timestamp`` and the entity
    field (:meth:`EntityEvent.from_fields
    <mlsd_lib.features.entity_events.EntityEvent.from_fields>` unless told); an
    event whose entity is :data:`~mlsd_lib.features.entity_events.NO_ENTITY`
    changes nothing (but its dedup marker).
    """

    values: LatestValues
    counts: StreamAggregation | None = None
    parse_fields: Callable[[Mapping[bytes | str, bytes | str]], Any] = field(
        default=_parse_entity_event, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        counts = self.counts
        if counts is None:
            return
        if (
            counts.stream != self.values.stream
            or counts.entity_field != self.values.entity_field
        ):
            raise FeatureStoreError(
                f"latest values of view {self.values.view.name!r} are fed by "
                f"{self.values.stream!r} by {self.values.entity_field!r}, but the "
                f"counts (view {counts.view.name!r}) by {counts.stream!r} by "
                f"{counts.entity_field!r}; build them for the same stream and entity."
            )
        both = sorted(set(self.values.types) & self.counted_types)
        if both:
            raise FeatureStoreError(
                f"event types {both} both set a value and are counted; a type is "
                "a state change or an occurrence, not both."
            )

    # --- what it folds ---------------------------------------------------------

    @property
    def stream(self) -> str:
        return self.values.stream

    @property
    def view(self) -> FeatureView:
        """The latest values' view (what freshness is measured on)."""
        return self.values.view

    @property
    def entity_field(self) -> str:
        return self.values.entity_field

    @property
    def counted_types(self) -> frozenset[str]:
        """The event types the windowed counts use (others do not touch them)."""
        if self.counts is None:
            return frozenset()
        return frozenset(c.event_type for c in self.counts.counts)

    # --- the StreamFold protocol -----------------------------------------------

    @property
    def script(self) -> str:
        return dedup_script(_BODY, prelude=WINDOWED_LUA)

    def parse(self, fields: Mapping[bytes | str, bytes | str]) -> Any:
        return self.parse_fields(fields)

    def keys_and_args(self, event: Any) -> tuple[list[str], list[Any]]:
        entity_id = getattr(event, self.entity_field)
        has_entity = entity_id != NO_ENTITY
        counted = has_entity and event.type in self.counted_types
        keys, args = windowed_keys_and_args((self.counts,) if counted else (), event)
        feature = self.values.feature_of(event.type) if has_entity else None
        view = self.values.view
        entity = entity_key([entity_id])
        keys += [
            latest_state_key(view, entity),
            record_key(view, LIVE_GENERATION, entity),
            current_key(view),
        ]
        args += [
            feature or "",
            _FLOAT32.pack(float(event.value)) if feature else b"",
            event.event_id,
            math.ceil(view.ttl.total_seconds()),
            len(view.features),
            *view.feature_names,
        ]
        return keys, event_args(event) + args


def latest_values_at(
    events: pd.DataFrame,
    values: LatestValues,
    entities: Sequence[int] | np.ndarray,
    times: Sequence[float] | np.ndarray,
) -> pd.DataFrame:
    """What the fold serves for each ``(entity, time)``, from an event log.

    ``events`` has ``event_id``, ``type``, ``value``, ``event_timestamp`` and
    the entity field; the result has one row per query: the entity, the
    record's time (``event_timestamp``, NaT where no value yet) and each
    feature: the value of the newest event of its type at or before ``times``
    (seconds), newest by (time, event id), as float32 (NaN where none), i.e.
    the state Redis holds once every event up to ``time`` is applied,
    whatever order they arrived in. Duplicated event ids count once. The
    view's TTL is not applied here (the reader applies it).
    """
    entity = values.entity_field
    required = ["event_id", "type", "value", TIMESTAMP_COLUMN, entity]
    absent = [c for c in required if c not in events.columns]
    if absent:
        raise FeatureStoreError(
            f"the event log lacks columns {absent} (latest values of view "
            f"{values.view.name!r} need {required})."
        )
    queries = pd.DataFrame(
        {
            entity: np.asarray(entities, dtype=np.int64),
            "_t": np.asarray(times, dtype=np.float64),
            "_row": np.arange(len(entities)),
        }
    )
    log = events.drop_duplicates("event_id", keep="first")
    log = log[log["type"].isin(values.types) & (log[entity] != NO_ENTITY)]
    log = log.assign(
        _t=timestamps_to_seconds(log[TIMESTAMP_COLUMN]),
        **{entity: log[entity].astype(np.int64)},
    )
    result = queries.sort_values("_t", kind="stable")
    newest = np.full(len(result), -np.inf)
    for value in values.values:
        rows = log[log["type"] == value.event_type]
        rows = rows.sort_values(["_t", "event_id"], kind="stable")
        rows = rows[[entity, "_t", "value"]].rename(columns={"value": value.feature})
        rows["_tv"] = rows["_t"]  # the value's time, kept through the join
        joined = pd.merge_asof(
            result[[entity, "_t"]],
            rows,
            on="_t",
            by=entity,
            direction="backward",
            allow_exact_matches=True,
        )
        result[value.feature] = joined[value.feature].to_numpy(np.float32)
        newest = np.fmax(newest, joined["_tv"].fillna(-np.inf).to_numpy())
    micros = np.where(np.isfinite(newest), np.round(newest * 1e6), np.nan)
    result[TIMESTAMP_COLUMN] = pd.to_datetime(micros, unit="us", utc=True)
    result = result.sort_values("_row").reset_index(drop=True)
    return result[[entity, TIMESTAMP_COLUMN, *values.view.feature_names]]


def entity_state(
    stream: str = ENTITY_STREAM,
    *,
    name: str = "entity",
    value_types: Sequence[str] = ("price",),
    counted_types: Sequence[str] = (),
    ttl: timedelta = timedelta(days=365),
    bucket: timedelta = timedelta(minutes=10),
) -> LatestValueFold:
    """An entity's latest values and 24 h counts, from entity events.

    View ``<name>_state``: one feature per ``value_types`` entry, named after
    the type, kept for ``ttl``. View ``<name>_counts`` (if ``counted_types``):
    ``<type>_24h`` per counted type, a sliding 24 h in ``bucket`` steps. Both
    keyed by ``entity_id``. This is the fold a processor process rebuilds from
    its command line (``--fold latest --value-types ... --counted-types ...
    --state-name ...``, :mod:`~mlsd_lib.features.fold_catalog`).
    """
    value_types, counted_types = tuple(value_types), tuple(counted_types)
    if not value_types:
        raise FeatureStoreError(
            "an entity state needs at least one value type (e.g. value_types="
            "('price',)); for counts alone use the windowed fold."
        )
    state_view = FeatureView(
        name=f"{name}_state",
        entities=("entity_id",),
        features=tuple(
            Feature(t, "float32", 0.0, f"the value of the newest {t} event")
            for t in value_types
        ),
        ttl=ttl,
        source=StreamSource(stream),
        description=f"latest {', '.join(value_types)} per entity",
    )
    state = LatestValues(
        state_view, "entity_id", tuple(LatestValue(t, t) for t in value_types)
    )
    counts = None
    if counted_types:
        windowed = tuple(
            WindowedCount(f"{t}_24h", t, COUNT_WINDOW) for t in counted_types
        )
        counts_view = FeatureView(
            name=f"{name}_counts",
            entities=("entity_id",),
            features=tuple(
                Feature(c.feature, "float32", 0.0, f"{c.event_type} events in 24 h")
                for c in windowed
            ),
            ttl=COUNT_WINDOW,
            source=StreamSource(stream),
            description=f"{', '.join(counted_types)} per entity over 24 h",
        )
        counts = StreamAggregation(counts_view, "entity_id", windowed, bucket=bucket)
    return LatestValueFold(state, counts)
