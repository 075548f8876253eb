"""The stream processor: Redis Stream events -> windowed counts in the online store.

Introduced in ``notebooks/streaming_features.ipynb``. Run it as its own process::

    python -m mlsd_lib.features.stream_processor --redis-url redis://127.0.0.1:6379/0 \\
        --stream ad_events --group features --consumer worker-1

How it gets every event counted exactly once, in effect:

* **At-least-once delivery.** It reads with ``XREADGROUP`` in a consumer group, so
  each message stays *pending* until it is acknowledged (``XACK``). A consumer
  that dies leaves its pending messages behind; any consumer takes them over with
  ``XAUTOCLAIM`` once they have been idle for ``--min-idle-ms``.
* **Idempotent apply.** Each event is applied by ONE Lua script, atomically: it
  checks a dedup marker for the event id, bumps the entity's per-bucket counters,
  recomputes its windowed counts (:mod:`~mlsd_lib.features.windows`), writes the
  packed online record (:mod:`~mlsd_lib.features.records`) and sets the marker.
  Only then is the message acknowledged. A crash between apply and ``XACK``
  redelivers an event whose marker is set, so the second apply is a no-op.
* **Dead letters.** A message that cannot be parsed, or that has been delivered
  more than ``--max-deliveries`` times (it keeps failing), is copied to
  ``<stream>:dead`` with the reason and its original fields, then acknowledged,
  so one poison message never blocks the stream.

The dedup marker's retention (``--dedup-retention-s``, 1 hour by default) is a
trade-off. It must outlast the longest time a message can stay pending (all
consumers down, plus ``min-idle x max-deliveries``): a redelivery after its marker
expired is counted twice. And it costs memory: about 100 bytes per event, so an
hour at 1,000 events/s is ~360 MB. A producer that re-sends an event more than the
retention later is also counted twice (offline, it is counted once).

The Lua script is plain Lua 5.1 without the ``struct`` library (fakeredis lacks
it): the float32 counts are encoded by hand, exactly as ``numpy`` would, and the
float64 timestamp header arrives pre-packed from Python.

Around the processor, one concept per module: its extra keys in
:mod:`~mlsd_lib.features.stream_keys`, running it as a process in
:mod:`~mlsd_lib.features.stream_launcher`, and measuring freshness in
:mod:`~mlsd_lib.features.stream_freshness`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import redis

from mlsd_lib.features.event_stream import AdEvent, InvalidEvent
from mlsd_lib.features.records import (
    HEADER,
    LIVE_GENERATION,
    current_key,
    entity_key,
    record_key,
)
from mlsd_lib.features.stream_freshness import measure_freshness, read_live_record
from mlsd_lib.features.stream_keys import dead_letter_stream, dedup_key, state_key
from mlsd_lib.features.stream_launcher import (
    PROCESSOR_OPTIONS,
    processor_command,
    start_processor,
    summary_of,
)
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.features.windows import ADS_STREAM, StreamAggregation, ads_aggregations

#: The processor itself is defined here; its keys, launcher and freshness
#: measurement live in modules of their own and are importable from here too.
__all__ = [
    "CRASH_EXIT_CODE",
    "FLOAT32_LUA",
    "PROCESSOR_OPTIONS",
    "ProcessorCounts",
    "StreamProcessor",
    "dead_letter_stream",
    "dedup_key",
    "main",
    "measure_freshness",
    "processor_command",
    "read_live_record",
    "start_processor",
    "state_key",
    "summary_of",
]

#: The exit status of a processor that crashed on purpose (``--crash-after``).
CRASH_EXIT_CODE = 3

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

# KEYS: [1] dedup marker, then per aggregation: state hash, record, current.
# ARGV: [1] marker retention (s), [2] event type, [3] event time (repr),
#       [4] event time as the packed float64 header, [5] number of aggregations,
#       then per aggregation: bucket, state ttl (s), record ttl (s, 0 = none),
#       retained buckets, number of features, then (event type, span) per feature.
# All reads come first, so an error (e.g. WRONGTYPE) aborts before any write.
_APPLY_LUA = (
    FLOAT32_LUA
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local etype, t, header = ARGV[2], tonumber(ARGV[3]), ARGV[4]
local plans, p = {}, 6
for i = 1, tonumber(ARGV[5]) do
  local plan = {bucket = ARGV[p], state_ttl = tonumber(ARGV[p + 1]),
                record_ttl = tonumber(ARGV[p + 2]), retained = tonumber(ARGV[p + 3]),
                counts = {}}
  local nfeat = tonumber(ARGV[p + 4])
  p = p + 5
  for j = 1, nfeat do
    plan.counts[j] = {ARGV[p], tonumber(ARGV[p + 1])}
    p = p + 2
  end
  local base = 2 + 3 * (i - 1)
  plan.state_key, plan.record_key, plan.current_key = KEYS[base], KEYS[base + 1],
    KEYS[base + 2]
  plan.flat = redis.call('HGETALL', plan.state_key)
  plans[i] = plan
end

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
    redis.call('HSET', plan.state_key, 't', ARGV[3], 'b', plan.bucket, 'h', header)
  end
  redis.call('EXPIRE', plan.state_key, plan.state_ttl)
  if plan.record_ttl > 0 then
    redis.call('SET', plan.record_key, table.concat(parts), 'EX', plan.record_ttl)
  else
    redis.call('SET', plan.record_key, table.concat(parts))
  end
  redis.call('SET', plan.current_key, 'live')
end
redis.call('SET', KEYS[1], '1', 'EX', ARGV[1])
return 1
"""
)


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _die() -> None:
    sys.stderr.write("stream processor: crashing on purpose (--crash-after)\n")
    sys.stderr.flush()
    os._exit(CRASH_EXIT_CODE)


@dataclass
class ProcessorCounts:
    """What happened to each message this processor handled."""

    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    claimed: int = 0
    """Messages taken over from idle consumers (also counted by their outcome)."""
    retried: int = 0
    """Applies that raised; left pending, so they are claimed and tried again."""

    @property
    def handled(self) -> int:
        return self.applied + self.duplicates + self.dead_lettered


Message = tuple[str, dict[bytes | str, bytes | str] | None]


class StreamProcessor:
    """One consumer of a consumer group, folding events into stream views.

    Usable in-process (tests, fakeredis) through :meth:`apply`, :meth:`step` and
    :meth:`run`; :func:`main` wraps it as a command. ``crash`` is what
    ``crash_after`` calls: by default it kills the process on the spot.
    """

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        aggregations: Sequence[StreamAggregation] | None = None,
        *,
        batch_size: int = 100,
        block_ms: int = 100,
        min_idle_ms: int = 5_000,
        max_deliveries: int = 5,
        dedup_retention: timedelta = timedelta(hours=1),
        crash: Callable[[], None] = _die,
    ):
        aggregations = tuple(
            ads_aggregations(stream) if aggregations is None else aggregations
        )
        if not aggregations:
            raise FeatureStoreError("the processor needs at least one aggregation.")
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
        for name, value in (
            ("batch_size", batch_size),
            ("block_ms", block_ms),
            ("min_idle_ms", min_idle_ms),
            ("max_deliveries", max_deliveries),
        ):
            if value < 1:
                raise ValueError(f"{name}={value} must be at least 1.")
        if dedup_retention < timedelta(seconds=1):
            raise ValueError("dedup_retention must be at least one second.")
        self.client = client
        self.stream, self.group, self.consumer = stream, group, consumer
        self.aggregations = aggregations
        self.batch_size, self.block_ms = batch_size, block_ms
        self.min_idle_ms, self.max_deliveries = min_idle_ms, max_deliveries
        self.dedup_retention_s = math.ceil(dedup_retention.total_seconds())
        self.dead_stream = dead_letter_stream(stream)
        self.counts = ProcessorCounts()
        self._crash = crash
        self._crash_after: int | None = None
        self._applies = 0
        self._claim_cursor = "0-0"
        self._script = client.register_script(_APPLY_LUA)

    # --- applying one event ------------------------------------------------------

    def _keys_and_args(self, event: AdEvent) -> tuple[list[str], list[Any]]:
        keys = [dedup_key(self.stream, event.event_id)]
        args: list[Any] = [
            self.dedup_retention_s,
            event.type,
            repr(event.timestamp),
            HEADER.pack(event.timestamp),
            len(self.aggregations),
        ]
        for aggregation in self.aggregations:
            view = aggregation.view
            entity = entity_key([getattr(event, aggregation.entity_field)])
            keys += [
                state_key(aggregation, entity),
                record_key(view, LIVE_GENERATION, entity),
                current_key(view),
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

    def apply(self, event: AdEvent) -> bool:
        """Apply one event atomically; False if it was applied before (a no-op)."""
        keys, args = self._keys_and_args(event)
        return self._script(keys=keys, args=args) == 1

    # --- the consumer group ------------------------------------------------------

    def ensure_group(self, start_id: str = "0") -> bool:
        """Create the group (and the stream) if missing; True if it was created.

        ``start_id="0"`` lets a new group read events published before it existed.
        """
        try:
            self.client.xgroup_create(
                self.stream, self.group, id=start_id, mkstream=True
            )
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
            return False
        return True

    def _read_new(self, count: int) -> list[Message]:
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count,
            block=self.block_ms,
        )  # fmt: skip
        if not reply:
            return []
        return [(_text(i), fields) for i, fields in reply[0][1]]

    def _claim_idle(self, count: int) -> tuple[list[Message], dict[str, int], bool]:
        """One XAUTOCLAIM page: messages, their delivery counts, whether more wait."""
        reply = self.client.xautoclaim(
            self.stream, self.group, self.consumer, self.min_idle_ms,
            start_id=self._claim_cursor, count=count,
        )  # fmt: skip
        self._claim_cursor = _text(reply[0])
        messages = [(_text(i), fields) for i, fields in reply[1]]
        deliveries: dict[str, int] = {}
        if messages:
            pending = self.client.xpending_range(
                self.stream, self.group, min=messages[0][0], max=messages[-1][0],
                count=len(messages), consumername=self.consumer,
            )  # fmt: skip
            deliveries = {
                _text(p["message_id"]): int(p["times_delivered"]) for p in pending
            }
        return messages, deliveries, self._claim_cursor != "0-0"

    def _dead_letter(self, message_id: str, fields: Any, reason: str, deliveries: int):
        original = {_text(k): _text(v) for k, v in (fields or {}).items()}
        entry = {
            "reason": reason,
            "source_stream": self.stream,
            "message_id": message_id,
            "consumer": self.consumer,
            "deliveries": str(deliveries),
            "fields": json.dumps(original, sort_keys=True),
        }
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_stream, entry)
            pipe.xack(self.stream, self.group, message_id)
            pipe.execute()
        self.counts.dead_lettered += 1

    def handle(self, messages: Sequence[Message], deliveries: dict[str, int]) -> None:
        """Apply, dead-letter or skip each message, then acknowledge the applied."""
        to_apply: list[tuple[str, AdEvent]] = []
        done: list[str] = []
        for message_id, fields in messages:
            delivered = deliveries.get(message_id, 1)
            if fields is None:  # trimmed from the stream while pending
                done.append(message_id)
                continue
            if delivered > self.max_deliveries:
                self._dead_letter(
                    message_id, fields,
                    f"delivered {delivered} times, more than max_deliveries="
                    f"{self.max_deliveries} (its apply keeps failing)",
                    delivered,
                )  # fmt: skip
                continue
            try:
                event = AdEvent.from_fields(fields)
            except InvalidEvent as error:
                self._dead_letter(
                    message_id, fields, f"invalid event: {error}", delivered
                )
                continue
            to_apply.append((message_id, event))

        crash = False
        if self._crash_after is not None:
            left = self._crash_after - self._applies
            if left <= len(to_apply):
                to_apply, crash = to_apply[: max(left, 0)], True
        if to_apply:
            with self.client.pipeline(transaction=False) as pipe:
                for _, event in to_apply:
                    keys, args = self._keys_and_args(event)
                    self._script(keys=keys, args=args, client=pipe)
                results = pipe.execute(raise_on_error=False)
            self._applies += len(to_apply)
            for (message_id, _), result in zip(to_apply, results, strict=True):
                if isinstance(result, Exception):
                    self.counts.retried += 1
                    continue
                if result == 1:
                    self.counts.applied += 1
                else:
                    self.counts.duplicates += 1
                done.append(message_id)
        if crash:
            self._crash()  # between apply and XACK: the worst moment
            self._crash_after = None
            return
        if done:
            self.client.xack(self.stream, self.group, *done)

    def step(self, limit: int | None = None, *, claim: bool = True) -> int:
        """Claim idle messages (if ``claim``), else read new ones; handle them.

        Returns how many messages were received (0: nothing to do right now).
        """
        count = min(self.batch_size, limit) if limit is not None else self.batch_size
        if claim:
            messages, deliveries, _ = self._claim_idle(count)
            if messages:
                self.counts.claimed += len(messages)
                self.handle(messages, deliveries)
                return len(messages)
        messages = self._read_new(count)
        self.handle(messages, {})
        return len(messages)

    def run(
        self,
        *,
        max_events: int | None = None,
        idle_exit_s: float | None = None,
        max_runtime_s: float | None = None,
        crash_after: int | None = None,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> str:
        """Process until a limit is reached; return why it stopped.

        ``max_events``: messages handled (applied, duplicate or dead-lettered).
        ``idle_exit_s``: nothing received for this long. ``crash_after``: die
        right after the N-th apply, before its ``XACK``.
        """
        if crash_after is not None and crash_after < 1:
            raise ValueError(f"crash_after={crash_after} must be at least 1.")
        self.ensure_group()
        self._crash_after = crash_after
        started = last_received = time.monotonic()
        claim_every_s = min(max(self.min_idle_ms / 2000, 0.05), 5.0)
        next_claim = started
        while True:
            now = time.monotonic()
            if should_stop():
                return "signal"
            if max_events is not None and self.counts.handled >= max_events:
                return "max-events"
            if max_runtime_s is not None and now - started >= max_runtime_s:
                return "max-runtime"
            if idle_exit_s is not None and now - last_received >= idle_exit_s:
                return "idle"
            limit = None if max_events is None else max_events - self.counts.handled
            claim = now >= next_claim
            received = self.step(limit, claim=claim)
            if claim:
                next_claim = now + claim_every_s
            if received:
                last_received = time.monotonic()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mlsd_lib.features.stream_processor",
        description="Fold ad events from a Redis Stream into windowed counts in "
        "the online store (at-least-once delivery, idempotent apply).",
    )
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--stream", default=ADS_STREAM)
    parser.add_argument("--group", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--block-ms", type=int, default=100)
    parser.add_argument("--min-idle-ms", type=int, default=5_000)
    parser.add_argument("--max-deliveries", type=int, default=5)
    parser.add_argument("--dedup-retention-s", type=float, default=3600.0)
    parser.add_argument("--max-events", type=int, help="stop after this many")
    parser.add_argument("--idle-exit-s", type=float, help="stop when idle this long")
    parser.add_argument("--max-runtime-s", type=float, help="stop after this long")
    parser.add_argument(
        "--crash-after", type=int,
        help="die (exit status 3) right after the N-th apply, before its XACK",
    )  # fmt: skip
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one processor until a limit or SIGTERM/SIGINT; print a JSON summary."""
    args = _parse_args(argv)
    client = redis.Redis.from_url(
        args.redis_url, socket_connect_timeout=2.0, socket_timeout=10.0
    )
    try:
        client.ping()
    except redis.RedisError as error:
        print(
            f"stream processor: {args.redis_url} does not answer ({error}); start "
            "that Redis or fix --redis-url.",
            file=sys.stderr,
        )
        return 2
    stop = {"signal": False}

    def _request_stop(signum: int, frame: object) -> None:
        stop["signal"] = True

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    processor = StreamProcessor(
        client, args.stream, args.group, args.consumer,
        batch_size=args.batch_size, block_ms=args.block_ms,
        min_idle_ms=args.min_idle_ms, max_deliveries=args.max_deliveries,
        dedup_retention=timedelta(seconds=args.dedup_retention_s),
    )  # fmt: skip
    try:
        reason = processor.run(
            max_events=args.max_events,
            idle_exit_s=args.idle_exit_s,
            max_runtime_s=args.max_runtime_s,
            crash_after=args.crash_after,
            should_stop=lambda: stop["signal"],
        )
    finally:
        client.close()
    summary = {"consumer": args.consumer, **asdict(processor.counts), "stopped": reason}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
