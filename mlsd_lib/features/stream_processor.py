"""The stream processor: Redis Stream events folded into the online store.

Introduced in ``notebooks/streaming_features.ipynb``. Run it as its own process::

    python -m mlsd_lib.features.stream_processor --redis-url redis://127.0.0.1:6379/0 \\
        --stream ad_events --group features --consumer worker-1

or, folding interaction events into each user's last 50 engaged plays::

    python -m mlsd_lib.features.stream_processor --redis-url redis://127.0.0.1:6379/0 \\
        --fold history --history-length 50 --categories 12 --stream interactions \\
        --group features --consumer worker-1

or, keeping each product's newest stock and price and its 24 h counts::

    python -m mlsd_lib.features.stream_processor --redis-url redis://127.0.0.1:6379/0 \\
        --fold latest --value-types stock,price --counted-types impression,click \\
        --state-name product --stream visual_events --group features --consumer w1

or, on a Redis Cluster (windowed counts only; any node's URL)::

    python -m mlsd_lib.features.stream_processor \\
        --redis-cluster-url redis://127.0.0.1:7000 --stream ad_events \\
        --group features --consumer worker-1

In Python, give the processor a ``redis.cluster.RedisCluster`` client and the
fold in the cluster layout, ``WindowedCountFold(aggregations,
layout=ClusterLayout())`` (:mod:`~mlsd_lib.features.stream_layout`), or start
a process with ``start_processor(url, cluster=True, stream=..., group=...,
consumer=...)``. The client sends the stream commands to the master owning the
stream's slot, and each apply to the master owning the entity's shard; the keys
are those :class:`~mlsd_lib.features.cluster_online.ClusterOnlineStore` reads
(``--shards-per-view`` must match its ``shards_per_view``, 16 by default). A
fold in the single-node layout (and the history and latest folds) is refused
on a cluster, since its one script spans several slots.

The processor owns *delivery*, and nothing about what an event means: a
:class:`~mlsd_lib.features.stream_folds.StreamFold` says how a message parses
and what one atomic Lua apply writes. By default that is the windowed counts
(:class:`~mlsd_lib.features.windowed_fold.WindowedCountFold`, given
``aggregations`` or the ads example's); ``--fold history`` folds interaction
events into per-user histories
(:class:`~mlsd_lib.features.history_fold.HistoryFold`), and ``--fold latest``
entity events into latest values and counts
(:class:`~mlsd_lib.features.latest_fold.LatestValueFold`). The names the
command line knows are in :mod:`~mlsd_lib.features.fold_catalog`.

How it gets every event applied exactly once, in effect, whatever the fold:

* **At-least-once delivery.** It reads with ``XREADGROUP`` in a consumer group, so
  each message stays *pending* until it is acknowledged (``XACK``). A consumer
  that dies leaves its pending messages behind; any consumer takes them over with
  ``XAUTOCLAIM`` once they have been idle for ``--min-idle-ms``.
* **Idempotent apply.** Each event is applied by ONE Lua script, atomically: it
  checks a dedup marker for the event id, does the fold's writes (for windowed
  counts: bumps the entity's per-bucket counters, recomputes its windowed counts
  (:mod:`~mlsd_lib.features.windows`), writes the packed online record
  (:mod:`~mlsd_lib.features.records`)) and sets the marker
  (:func:`~mlsd_lib.features.stream_folds.dedup_script`). Only then is the
  message acknowledged. A crash between apply and ``XACK`` redelivers an event
  whose marker is set, so the second apply is a no-op. (On a cluster, ONE
  script per entity the event counts for, each with its own marker in that
  entity's slot: an event is applied when every part is, and a redelivery skips
  the parts already marked.) Scripts are sent as ``EVALSHA`` in one pipeline
  per batch; a ``NOSCRIPT`` reply (a fresh server, a promoted replica) loads
  the script, on every master, and resends those calls.
* **Dead letters.** A message that cannot be parsed, or that has been delivered
  more than ``--max-deliveries`` times (it keeps failing), is copied to
  ``<stream>:dead`` (on a cluster ``{<stream>}:dead``, in the stream's slot)
  with the reason and its original fields, then acknowledged, in one
  ``MULTI``, so one poison message never blocks the stream.

The dedup marker's retention (``--dedup-retention-s``, 1 hour by default) is a
trade-off. It must outlast the longest time a message can stay pending (all
consumers down, plus ``min-idle x max-deliveries``): a redelivery after its marker
expired is counted twice. And it costs memory: about 100 bytes per event, so an
hour at 1,000 events/s is ~360 MB. A producer that re-sends an event more than the
retention later is also counted twice (offline, it is counted once).

Around the processor, one concept per module: its extra keys in
:mod:`~mlsd_lib.features.stream_keys`, running it as a process in
:mod:`~mlsd_lib.features.stream_launcher`, and measuring freshness in
:mod:`~mlsd_lib.features.stream_freshness`.
"""

from __future__ import annotations

import argparse
import hashlib
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
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException

from mlsd_lib.features.event_stream import InvalidEvent
from mlsd_lib.features.fold_catalog import FOLD_NAMES, fold_named
from mlsd_lib.features.stream_folds import (
    StreamFold,
    calls_of,
    layout_of,
    parts_of,
)
from mlsd_lib.features.stream_freshness import measure_freshness, read_live_record
from mlsd_lib.features.stream_keys import dead_letter_stream, dedup_key, state_key
from mlsd_lib.features.stream_launcher import (
    PROCESSOR_OPTIONS,
    processor_command,
    start_processor,
    summary_of,
)
from mlsd_lib.features.stream_layout import ClusterLayout
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.features.windowed_fold import FLOAT32_LUA, WindowedCountFold
from mlsd_lib.features.windows import StreamAggregation, ads_aggregations

#: The processor itself is defined here; its keys, folds, launcher and freshness
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
    """One consumer of a consumer group, folding events into the online store.

    What an event does is the ``fold``'s (a
    :class:`~mlsd_lib.features.stream_folds.StreamFold` for ``stream``); give
    ``aggregations`` instead (or neither, for the ads example's) and the fold is
    :class:`~mlsd_lib.features.windowed_fold.WindowedCountFold` over them.
    ``client`` is one Redis, or a ``redis.cluster.RedisCluster`` when the fold
    writes in the cluster layout (the module docstring shows both). Usable
    in-process (tests, fakeredis) through :meth:`apply`, :meth:`step` and
    :meth:`run`; :func:`main` wraps it as a command. ``crash`` is what
    ``crash_after`` calls: by default it kills the process on the spot.
    """

    def __init__(
        self,
        client: redis.Redis | RedisCluster,
        stream: str,
        group: str,
        consumer: str,
        aggregations: Sequence[StreamAggregation] | None = None,
        *,
        fold: StreamFold | None = None,
        batch_size: int = 100,
        block_ms: int = 100,
        min_idle_ms: int = 5_000,
        max_deliveries: int = 5,
        dedup_retention: timedelta = timedelta(hours=1),
        crash: Callable[[], None] = _die,
    ):
        if fold is None:
            fold = WindowedCountFold(
                ads_aggregations(stream) if aggregations is None else aggregations,
                stream=stream,
            )
        elif aggregations is not None:
            raise FeatureStoreError(
                "give the processor aggregations (a windowed-count fold) or a fold, "
                "not both; for windowed counts in a fold of your own, pass "
                "fold=WindowedCountFold(aggregations)."
            )
        elif not isinstance(fold, StreamFold):
            raise FeatureStoreError(
                f"fold {fold!r} is not a StreamFold: it needs stream, script, "
                "parse(fields) and keys_and_args(event)."
            )
        elif fold.stream != stream:
            raise FeatureStoreError(
                f"this {type(fold).__name__} folds stream {fold.stream!r}, but this "
                f"processor reads {stream!r}; build the fold for this stream."
            )
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
        layout = layout_of(fold)
        if isinstance(client, RedisCluster) and not layout.clustered:
            raise FeatureStoreError(
                f"{fold!r} writes its keys in the single-node layout: one script "
                "touches the dedup marker and every aggregation's keys, which a "
                "Redis Cluster refuses (CROSSSLOT). On a cluster, fold windowed "
                "counts with WindowedCountFold(..., layout=ClusterLayout()) "
                "(--redis-cluster-url does it); the history and latest folds run "
                "on a single Redis only."
            )
        self.client = client
        self.stream, self.group, self.consumer = stream, group, consumer
        self.fold = fold
        #: The windowed-count fold's aggregations (empty for other folds).
        self.aggregations: tuple[StreamAggregation, ...] = tuple(
            getattr(fold, "aggregations", ())
        )
        self.batch_size, self.block_ms = batch_size, block_ms
        self.min_idle_ms, self.max_deliveries = min_idle_ms, max_deliveries
        self.dedup_retention_s = math.ceil(dedup_retention.total_seconds())
        self.dead_stream = layout.dead_letter_stream(stream)
        self.counts = ProcessorCounts()
        self._crash = crash
        self._crash_after: int | None = None
        self._applies = 0
        self._claim_cursor = "0-0"
        self._sha = hashlib.sha1(fold.script.encode()).hexdigest()
        self._parts = parts_of(fold)

    # --- applying one event ------------------------------------------------------

    def _calls(self, event: Any) -> list[tuple[list[str], list[Any]]]:
        """The script calls that apply ``event``: one on a single Redis, one per
        slot it touches on a cluster (each: marker and retention first)."""
        return calls_of(self._parts(event), self.dedup_retention_s)

    def _run_calls(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run script calls in one pipeline (a cluster client sends each its
        slot's master); each reply, or the error in its place.

        ``EVALSHA``, and on ``NOSCRIPT`` (a fresh server, or a replica just
        promoted, has no script cache) the script is loaded (on a cluster: on
        every master) and those calls sent again: they ran nothing.
        """
        results = self._evalsha(calls)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            self.client.script_load(self.fold.script)
            again = self._evalsha([calls[i] for i in missing])
            for i, result in zip(missing, again, strict=True):
                results[i] = result
        return results

    def _evalsha(self, calls: Sequence[tuple[list[str], list[Any]]]) -> list[Any]:
        with self.client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.execute_command(
                    "EVALSHA", self._sha, len(keys), *keys, *args, **self._route(keys)
                )
            return pipe.execute(raise_on_error=False)

    def _route(self, keys: list[str]) -> dict[str, Any]:
        """On a cluster, the master of the call's slot, named up front: without
        it, redis-py's cluster pipeline asks a server for the keys of every
        ``EVALSHA`` (``COMMAND GETKEYS``, a round trip per call; measured, it
        cut the fold to a third). A ``MOVED`` reply is still followed."""
        if not isinstance(self.client, RedisCluster):
            return {}
        return {"target_nodes": self.client.get_node_from_key(keys[0])}

    def apply(self, event: Any) -> bool:
        """Apply one event (atomically per script call); False if it was applied
        before (a no-op). Raises the error of a call that failed."""
        results = self._run_calls(self._calls(event))
        for result in results:
            if isinstance(result, Exception):
                raise result
        return any(result == 1 for result in results)

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
        to_apply: list[tuple[str, Any]] = []
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
                event = self.fold.parse(fields)
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
            per_event = [self._calls(event) for _, event in to_apply]
            results = self._run_calls([c for calls in per_event for c in calls])
            self._applies += len(to_apply)
            start = 0
            for (message_id, _), calls in zip(to_apply, per_event, strict=True):
                replies = results[start : start + len(calls)]
                start += len(calls)
                if any(isinstance(r, Exception) for r in replies):
                    # Parts that ran are marked: a redelivery skips them.
                    self.counts.retried += 1
                    continue
                if any(r == 1 for r in replies):
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
        description="Fold events from a Redis Stream into the online store "
        "(at-least-once delivery, idempotent apply): ad events into windowed "
        "counts (--fold windowed, the default), interaction events into "
        "per-user histories (--fold history), or entity events into latest "
        "values and 24 h counts (--fold latest).",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--redis-url", help="one Redis, e.g. redis://127.0.0.1:6379/0")
    where.add_argument(
        "--redis-cluster-url",
        help="any node of a Redis Cluster, e.g. redis://127.0.0.1:7000 (windowed "
        "fold only; keys in the cluster online store's shards)",
    )
    parser.add_argument(
        "--shards-per-view", type=int,
        help="cluster: shards per view, as the ClusterOnlineStore's (default 16)",
    )  # fmt: skip
    parser.add_argument(
        "--fold", default="windowed",
        help=f"what an event does to the store, one of {list(FOLD_NAMES)}",
    )  # fmt: skip
    parser.add_argument(
        "--stream", help="the stream to read (default: the fold's example stream)"
    )
    parser.add_argument("--group", required=True)
    parser.add_argument("--consumer", required=True)
    parser.add_argument(
        "--history-length", type=int,
        help="history fold: item ids kept per user (default 50)",
    )  # fmt: skip
    parser.add_argument(
        "--categories", type=int,
        help="history fold: number of item categories (default 12)",
    )  # fmt: skip
    parser.add_argument(
        "--value-types",
        help="latest fold: event types whose newest value is kept, e.g. stock,price",
    )
    parser.add_argument(
        "--counted-types",
        help="latest fold: event types counted over 24 h, e.g. impression,click",
    )
    parser.add_argument(
        "--state-name", help="latest fold: the views' name prefix (default entity)"
    )
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


def _placed(fold: StreamFold, args: argparse.Namespace) -> StreamFold:
    """The fold in the key layout of the server the command line names."""
    if not args.redis_cluster_url:
        if args.shards_per_view is not None:
            raise FeatureStoreError(
                "--shards-per-view places keys on a Redis Cluster; give "
                "--redis-cluster-url, or drop --shards-per-view."
            )
        return fold
    if not isinstance(fold, WindowedCountFold):
        raise FeatureStoreError(
            f"--fold {args.fold} runs on a single Redis only (its script touches "
            "keys of several slots); on a Redis Cluster use --fold windowed, or "
            "give --redis-url."
        )
    shards = args.shards_per_view
    layout = ClusterLayout() if shards is None else ClusterLayout(shards)
    return fold.with_layout(layout)


def _connect(args: argparse.Namespace) -> redis.Redis | RedisCluster:
    """A client for one Redis, or one that routes each key to its master."""
    timeouts = {"socket_connect_timeout": 2.0, "socket_timeout": 10.0}
    if args.redis_cluster_url:
        return RedisCluster.from_url(args.redis_cluster_url, **timeouts)
    return redis.Redis.from_url(args.redis_url, **timeouts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one processor until a limit or SIGTERM/SIGINT; print a JSON summary."""
    args = _parse_args(argv)
    try:
        fold = fold_named(
            args.fold,
            args.stream,
            history_length=args.history_length,
            categories=args.categories,
            value_types=args.value_types,
            counted_types=args.counted_types,
            state_name=args.state_name,
        )
        fold = _placed(fold, args)
    except FeatureStoreError as error:
        print(f"stream processor: {error}", file=sys.stderr)
        return 2
    url = args.redis_cluster_url or args.redis_url
    option = "--redis-cluster-url" if args.redis_cluster_url else "--redis-url"
    try:
        client = _connect(args)
        client.ping()
    except (redis.RedisError, RedisClusterException) as error:
        print(
            f"stream processor: {url} does not answer ({error}); start that "
            f"Redis or fix {option}.",
            file=sys.stderr,
        )
        return 2
    stop = {"signal": False}

    def _request_stop(signum: int, frame: object) -> None:
        stop["signal"] = True

    signal.signal(signal.SIGTERM, _request_stop)
    signal.signal(signal.SIGINT, _request_stop)
    processor = StreamProcessor(
        client, fold.stream, args.group, args.consumer, fold=fold,
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
