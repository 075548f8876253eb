"""The windowed-count fold: each event bumps its entity's windowed counts.

Introduced in ``notebooks/streaming_features.ipynb``. This is what the stream
processor did before it learned other folds, moved here unchanged: one Lua
script, atomically, checks the dedup marker, bumps the entity's per-bucket
counters, drops buckets older than the longest window, recomputes every windowed
count (the semantics are in :mod:`~mlsd_lib.features.windows`), writes the packed
online record (:mod:`~mlsd_lib.features.records`) and sets the marker. It is the
processor's default fold, so a processor built with ``aggregations`` serves
exactly what it served before. Its keys are named by a layout
(:mod:`~mlsd_lib.features.stream_layout`): by default one Redis's, byte for
byte as before; with ``layout=ClusterLayout()`` the cluster online store's
shards, one script per aggregation (:meth:`WindowedCountFold.parts`).

The Lua is written as two functions, ``windowed_read`` (every read: the state
hashes) and ``windowed_write`` (every write), in :data:`WINDOWED_LUA`, so another
fold (:class:`~mlsd_lib.features.history_fold.HistoryFold`) reuses the
windowed counts inside its own script rather than writing them twice, and still
does all its reads before its first write.

The Lua is plain Lua 5.1 without the ``struct`` library (fakeredis lacks it):
the float32 counts are encoded by hand, exactly as ``numpy`` would, and the
float64 timestamp header arrives pre-packed from Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from mlsd_lib.features.event_stream import AdEvent, StreamEvent
from mlsd_lib.features.records import HEADER, entity_key
from mlsd_lib.features.stream_folds import FoldPart, dedup_script
from mlsd_lib.features.stream_layout import SINGLE_NODE, StreamKeyLayout
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.features.windows import StreamAggregation

__all__ = [
    "FLOAT32_LUA",
    "WINDOWED_LUA",
    "WindowedCountFold",
    "event_args",
    "windowed_keys_and_args",
]

#: Lua: the 4 little-endian bytes of float32(n) for an integer n >= 0, rounded to
#: nearest even like numpy (exact below 2**24).
FLOAT32_LUA = """
local function float32(n)
  if n == 0 then return string.char(0, 0, 0, 0) end
  local e, m = 0, n
  while m >= 2 do m = m / 2; e = e + 1 end
  local scaled = m * 8388608
  local f = math.floor(scaled)
  local r = scaled - f
  if r > 0.5 or (r == 0.5 and f % 2 == 1) then f = f + 1 end
  if f == 16777216 then f = 8388608; e = e + 1 end
  local bits = (e + 127) * 8388608 + (f - 8388608)
  return string.char(bits % 256, math.floor(bits / 256) % 256,
                     math.floor(bits / 65536) % 256, math.floor(bits / 16777216))
end
"""

#: Lua: windowed counts in two halves. ``windowed_read(n, p, k)`` reads the state
#: of ``n`` aggregations whose arguments start at ``ARGV[p]`` (per aggregation:
#: bucket, state ttl (s), record ttl (s, 0 = none), retained buckets, number of
#: features, then (event type, span) per feature) and whose keys start at
#: ``KEYS[k]`` (state hash, record, current); it returns the plans and the next
#: free argument and key indices. ``windowed_write(plans, etype, t_text,
#: header)`` counts one event of type ``etype`` at time ``t_text`` (its repr),
#: ``header`` being that time packed as the record's float64 header.
WINDOWED_LUA = (
    FLOAT32_LUA
    + """
local function windowed_read(n, p, k)
  local plans = {}
  for i = 1, n do
    local plan = {bucket = ARGV[p], state_ttl = tonumber(ARGV[p + 1]),
                  record_ttl = tonumber(ARGV[p + 2]), retained = tonumber(ARGV[p + 3]),
                  counts = {}}
    local nfeat = tonumber(ARGV[p + 4])
    p = p + 5
    for j = 1, nfeat do
      plan.counts[j] = {ARGV[p], tonumber(ARGV[p + 1])}
      p = p + 2
    end
    plan.state_key, plan.record_key, plan.current_key = KEYS[k], KEYS[k + 1],
      KEYS[k + 2]
    k = k + 3
    plan.flat = redis.call('HGETALL', plan.state_key)
    plans[i] = plan
  end
  return plans, p, k
end

local function windowed_write(plans, etype, t_text, header)
  local t = tonumber(t_text)
  for _, plan in ipairs(plans) do
    local state, live = {}, {}
    for k = 1, #plan.flat, 2 do state[plan.flat[k]] = plan.flat[k + 1] end
    for k, v in pairs(state) do
      local kind, b = string.match(k, '^c:(.+):(%-?%d+)$')
      if kind then live[k] = {kind, tonumber(b), tonumber(v)} end
    end
    local field = 'c:' .. etype .. ':' .. plan.bucket
    if live[field] then live[field][3] = live[field][3] + 1
    else live[field] = {etype, tonumber(plan.bucket), 1} end
    local old_t = tonumber(state['t'])
    local top, head = tonumber(state['b']), state['h']
    local newer = old_t == nil or t >= old_t
    if newer then top, head = tonumber(plan.bucket), header end
    local stale = {}
    for k, c in pairs(live) do
      if c[2] <= top - plan.retained then stale[#stale + 1] = k end
    end
    local parts = {head}
    for j, spec in ipairs(plan.counts) do
      local sum = 0
      for _, c in pairs(live) do
        if c[1] == spec[1] and c[2] > top - spec[2] then sum = sum + c[3] end
      end
      parts[j + 1] = float32(sum)
    end
    redis.call('HINCRBY', plan.state_key, field, 1)
    if #stale > 0 then redis.call('HDEL', plan.state_key, unpack(stale)) end
    if newer then
      redis.call('HSET', plan.state_key, 't', t_text, 'b', plan.bucket, 'h', header)
    end
    redis.call('EXPIRE', plan.state_key, plan.state_ttl)
    if plan.record_ttl > 0 then
      redis.call('SET', plan.record_key, table.concat(parts), 'EX', plan.record_ttl)
    else
      redis.call('SET', plan.record_key, table.concat(parts))
    end
    redis.call('SET', plan.current_key, 'live')
  end
end
"""
)

# KEYS: [1] dedup marker, then per aggregation: state hash, record, current.
# ARGV: [1] marker retention (s), [2] event type, [3] event time (repr),
#       [4] event time as the packed float64 header, [5] number of aggregations,
#       then per aggregation the arguments WINDOWED_LUA describes.
# All reads come first, so an error (e.g. WRONGTYPE) aborts before any write.
_BODY = """
local plans = windowed_read(tonumber(ARGV[5]), 6, 2)
windowed_write(plans, ARGV[2], ARGV[3], ARGV[4])
"""


def event_args(event: StreamEvent) -> list[Any]:
    """``ARGV[2..4]`` of a windowed apply: the event's type, time, packed time."""
    return [event.type, repr(event.timestamp), HEADER.pack(event.timestamp)]


def windowed_keys_and_args(
    aggregations: Sequence[StreamAggregation],
    event: StreamEvent,
    layout: StreamKeyLayout = SINGLE_NODE,
) -> tuple[list[str], list[Any]]:
    """The keys (named by ``layout``), and the arguments from the aggregation
    count on, with which ``windowed_read`` folds ``event`` into each of
    ``aggregations``."""
    keys: list[str] = []
    args: list[Any] = [len(aggregations)]
    for aggregation in aggregations:
        view = aggregation.view
        entity = entity_key([getattr(event, aggregation.entity_field)])
        keys += [
            layout.state_key(aggregation, entity),
            layout.record_key(view, entity),
            layout.current_key(view, entity),
        ]
        retained = aggregation.retained_buckets
        ordered = aggregation.in_view_order()
        args += [
            aggregation.bucket_of(event.timestamp),
            math.ceil((retained + 1) * aggregation.bucket_seconds),
            math.ceil(view.ttl.total_seconds()),
            retained,
            len(ordered),
        ]
        for count in ordered:
            args += [count.event_type, aggregation.num_buckets(count)]
    return keys, args


class WindowedCountFold:
    """Every event counted into each aggregation's windowed counts.

    ``aggregations`` must all be fed by one stream (``stream``, by default
    theirs) and fill distinct views. ``parse`` turns a message into an event
    with ``event_id``, ``type``, ``timestamp`` and each aggregation's entity
    field (:meth:`~mlsd_lib.features.event_stream.AdEvent.from_fields` unless
    told). ``layout`` names its keys and splits an event's apply into script
    calls (:mod:`~mlsd_lib.features.stream_layout`): one Redis by default,
    ``ClusterLayout()`` on a Redis Cluster.
    """

    def __init__(
        self,
        aggregations: Sequence[StreamAggregation],
        *,
        stream: str | None = None,
        parse: Callable[[Mapping[bytes | str, bytes | str]], Any] = (
            AdEvent.from_fields
        ),
        layout: StreamKeyLayout = SINGLE_NODE,
    ):
        aggregations = tuple(aggregations)
        if not aggregations:
            raise FeatureStoreError("the processor needs at least one aggregation.")
        stream = aggregations[0].stream if stream is None else stream
        for aggregation in aggregations:
            if aggregation.stream != stream:
                raise FeatureStoreError(
                    f"view {aggregation.view.name!r} is fed by stream "
                    f"{aggregation.stream!r}, but this processor reads {stream!r}; "
                    "build the views for this stream (e.g. ads_aggregations(stream))."
                )
        names = [a.view.name for a in aggregations]
        if len(set(names)) != len(names):
            raise FeatureStoreError(f"aggregations repeat views: {names}.")
        self.aggregations = aggregations
        if not isinstance(layout, StreamKeyLayout):
            raise FeatureStoreError(
                f"layout {layout!r} is not a StreamKeyLayout; pass SINGLE_NODE or "
                "ClusterLayout(shards_per_view=...)."
            )
        self._stream = stream
        self._parse = parse
        self.layout = layout

    def __repr__(self) -> str:
        names = [a.view.name for a in self.aggregations]
        # The single-node repr is the one notebooks print: unchanged.
        placed = "" if self.layout == SINGLE_NODE else f", layout={self.layout!r}"
        return f"WindowedCountFold({names}, stream={self._stream!r}{placed})"

    def with_layout(self, layout: StreamKeyLayout) -> WindowedCountFold:
        """The same fold writing its keys in ``layout`` (e.g. ``ClusterLayout()``)."""
        return WindowedCountFold(
            self.aggregations, stream=self._stream, parse=self._parse, layout=layout
        )

    @property
    def stream(self) -> str:
        return self._stream

    @property
    def script(self) -> str:
        return dedup_script(_BODY, prelude=WINDOWED_LUA)

    def parse(self, fields: Mapping[bytes | str, bytes | str]) -> Any:
        return self._parse(fields)

    def keys_and_args(self, event: Any) -> tuple[list[str], list[Any]]:
        """Every aggregation in one call (what :meth:`parts` gives on one Redis;
        on a cluster those keys span several slots: the processor uses
        :meth:`parts`)."""
        keys, args = windowed_keys_and_args(self.aggregations, event, self.layout)
        return keys, event_args(event) + args

    def parts(self, event: Any) -> list[FoldPart]:
        """The script calls that apply ``event``, as the layout groups the
        aggregations: each its dedup marker, keys and arguments."""
        parts: list[FoldPart] = []
        for group in self.layout.apply_groups(self.aggregations):
            first = group[0]
            entity = entity_key([getattr(event, first.entity_field)])
            marker = self.layout.dedup_key(self._stream, event.event_id, first, entity)
            keys, args = windowed_keys_and_args(group, event, self.layout)
            parts.append(FoldPart(marker, keys, event_args(event) + args))
        return parts
