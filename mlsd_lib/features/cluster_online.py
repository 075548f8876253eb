"""The online store on a Redis Cluster: the same API, keys sharded by hash tag.

Introduced in ``notebooks/feature_store.ipynb`` (a scale-out chapter
will take it over). :class:`ClusterOnlineStore` is an
:class:`~mlsd_lib.features.online.OnlineStore`: the same ``materialize`` /
``read`` / ``current_generation`` / ``drop_generation``, the same records
(:mod:`~mlsd_lib.features.records`), the same plan and one-gather decode, and a
test holds its reads bit-exact to the single node's. What changes is where keys
live and what is atomic.

**Naming the cluster.** ``REDIS_CLUSTER_URL`` (any node, ``redis://host:port``),
read by :func:`mlsd_lib.redis_cluster.cluster_url_from_env`; a separate variable
from ``REDIS_URL`` because a cluster has no database numbers, takes different
clients, and a reader may run both side by side (as the benchmark does).

**Key layout.** A cluster places a key by the CRC16 of its ``{hash tag}``, and a
Lua script may only touch keys of one slot. Each view is split into
``shards_per_view`` shards (16 by default) by ``crc32(entity key) % shards``,
and a shard is one hash tag::

    fs:{user_stats@v1:s07}:current          -> the generation this shard serves
    fs:{user_stats@v1:s07}:g12:42           -> user 42's packed record, generation 12
    fs:{user_stats@v1}:counter              -> the last generation handed out

So a shard's pointer and its records share a slot, and the single-node read
script survives nearly unchanged *per shard*: it resolves the shard's generation
and fetches its records with ``MGET`` in one atomic call, building keys on the
server within the slot. Why shards of a view rather than one tag per view: a tag
per view puts a whole view on one node (the 135 GB user table would not fit, and one
node would take all its reads); a tag per entity makes a 100-candidate read 100
scripts. Sixteen shards per view spread a view over every master while a read
touches at most 16 slots per view; one entity over 3 views touches 3 slots.

**Reads.** The shards a read needs are grouped by the master that owns their
slot, and each master gets one request (a pipeline of one ``EVALSHA`` per
shard), all written before any reply is read
(:meth:`~mlsd_lib.cluster_routing.ClusterRouter.send_to_nodes`): one round trip
in wall time. A master that cannot be reached (killed, and its replica not yet
promoted) costs only its records: they are served as defaults, flagged in
``missing`` and in :attr:`ClusterOnlineFeatures.unavailable`, and the read
still answers.

**What is atomic on a cluster.** One view has one pointer *per shard*, and no
command sets pointers on two masters at once, so the swap is built from three
facts:

1. every record of the new generation is written, and ``WAIT``-ed for
   ``replicas`` replicas, before the first pointer moves;
2. each shard's pointer and the records it names are read by one script, in one
   slot: atomic per shard, exactly as the single-node read is per view;
3. a read whose shards of one view answered different generations (it fell
   inside a swap) re-reads the lagging shards *at the newest generation it saw*,
   which fact 1 says is complete. That costs a second round trip, only during
   a swap.

So, as on one node, **a read returns one generation per view**: never a mix of
two generations' records. The old generation is deleted only ``drop_grace_s``
after the last pointer moved, longer than a read's two round trips (bounded by
the socket timeout), so a read that resolved it still finds it. A
materialization that fails before the swap deletes what it wrote; one that fails
*during* the swap raises :class:`PartialSwap` and deletes nothing: readers
already roll forward to the new (complete) generation; materialize again.

**Durability.** Redis replicates asynchronously: a write a master acknowledged
can vanish if the master dies before its replica has it. Materialization waits
(``WAIT replicas timeout``) after the records and again after the pointers, and
raises :class:`ReplicationTimeout` when the replicas did not confirm in time, so
a generation that was published is on the replicas.

**Stream views.** The stream processor folds windowed counts into this store
with its delivery unchanged (``python -m mlsd_lib.features.stream_processor
--redis-cluster-url redis://host:port``): its windowed fold, given
:class:`~mlsd_lib.features.stream_layout.ClusterLayout`, applies an event with
one script per entity, whose dedup marker, window state, live record
(``fs:{view@v1:s07}:glive:<entity>``) and ``current`` pointer (``live``) all
carry the entity's shard tag, so each script stays in one slot and this store
reads the record where it reads any other. A test holds those reads bit-exact to
the single-node processor's. An event's apply is then atomic per entity, not
across its entities (:mod:`~mlsd_lib.features.stream_layout` says what that
costs). A shard no event reached has no pointer: a read that also touches a
shard that has one counts as a roll-forward (a second round trip) and returns
the same missing values.

**What it does not do yet.** The history and latest-value folds keep a single
script over keys of several slots and run on one Redis only (the processor
refuses them on a cluster, saying so); so do the freshness probe
(:func:`~mlsd_lib.features.stream_freshness.read_live_record`) and
:class:`~mlsd_lib.features.live_processor.LiveProcessor`, which take a
single-node client.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import redis
from hiredis import pack_command
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    ReadOnlyError,
    TryAgainError,
)

from mlsd_lib.cluster_routing import (
    Address,
    ClusterRouter,
    ClusterUnavailable,
    NodeFailure,
    slot_of,
)
from mlsd_lib.features.online import (
    MaterializationReport,
    OnlineFeatures,
    OnlineStore,
    OnlineStoreUnavailable,
    _ReadPlan,
    entity_columns,
    latest_payloads,
    moment_seconds,
)
from mlsd_lib.features.views import (
    FeatureRef,
    FeatureRegistry,
    FeatureStoreError,
    FeatureView,
)

DEFAULT_SHARDS_PER_VIEW = 16
#: Replies that mean "the slot moved or has no master now" (redis-py parses them
#: into these classes, the ``MOVED`` prefix stripped): refresh and retry once.
_TRANSIENT = (
    MovedError,
    AskError,
    TryAgainError,
    ClusterDownError,
    ReadOnlyError,
    BusyLoadingError,
    MasterDownError,
)

_SHARD_READ_SCRIPT = """
-- KEYS[1]: one (view, shard)'s `current` pointer. ARGV[1]: the generation to
-- read, or '' for the one the pointer names; ARGV[2]: the shard's record prefix
-- (ending in ':g'); ARGV[3..]: entity keys. Returns the generation read (false
-- when none), then the records in order (false where absent). Every key carries
-- the shard's hash tag, so the script stays in one slot, as a cluster requires.
local generation = ARGV[1]
if generation == '' then generation = redis.call('GET', KEYS[1]) end
local out = {generation}
if not generation then
  for i = 3, #ARGV do out[#out + 1] = false end
  return out
end
local base = ARGV[2] .. generation .. ':'
local first = 3
while first <= #ARGV do
  local last = math.min(first + 999, #ARGV)
  local keys = {}
  for j = first, last do keys[#keys + 1] = base .. ARGV[j] end
  local values = redis.call('MGET', unpack(keys))
  for j = 1, #values do out[#out + 1] = values[j] end
  first = last + 1
end
return out
"""
_SHARD_READ_SHA = hashlib.sha1(_SHARD_READ_SCRIPT.encode()).hexdigest()


class PartialSwap(FeatureStoreError):
    """Some shards of a view point at the new generation and some do not."""


class ReplicationTimeout(FeatureStoreError):
    """``WAIT`` did not see the writes on enough replicas in time."""


# -- the key layout --------------------------------------------------------------
def shard_tag(view: FeatureView, shard: int) -> str:
    """The hash tag of one shard of a view (what places it on a node)."""
    return f"{{{view.name}@v{view.version}:s{shard:02d}}}"


def shard_current_key(view: FeatureView, shard: int) -> str:
    return f"fs:{shard_tag(view, shard)}:current"


def shard_record_prefix(view: FeatureView, shard: int) -> str:
    """Record keys start with this, then ``{generation}:{entity key}``."""
    return f"fs:{shard_tag(view, shard)}:g"


def shard_record_key(
    view: FeatureView, shard: int, generation: str, entity_key: str
) -> str:
    return f"{shard_record_prefix(view, shard)}{generation}:{entity_key}"


def cluster_counter_key(view: FeatureView) -> str:
    return f"fs:{{{view.name}@v{view.version}}}:counter"


def shard_of(entity_key: str, shards: int) -> int:
    """Which shard of a view holds an entity: stable across processes and runs."""
    return zlib.crc32(entity_key.encode()) % shards


def _generation_order(generation: bytes | None) -> tuple[int, int, bytes]:
    """Newer generations sort later; none sorts first."""
    if generation is None:
        return (0, 0, b"")
    if generation.isdigit():
        return (1, int(generation), b"")
    return (2, 0, generation)


@dataclass(frozen=True)
class ClusterOnlineFeatures(OnlineFeatures):
    """A read's result, plus which values no master could serve."""

    unavailable: np.ndarray
    """bool [rows, features]: the record's master was unreachable (a failover
    under way); such values are defaults and also flagged in ``missing``."""

    @property
    def degraded(self) -> bool:
        return bool(self.unavailable.any())


@dataclass(frozen=True)
class _Shard:
    current_key: str
    record_prefix: str
    slot: int


@dataclass
class _ShardRead:
    """One script call: some entity keys of one view's shard."""

    view_index: int
    shard: _Shard
    keys: list[str]
    positions: list[int]
    """Where each record goes in the reply the plan decodes."""
    generation: bytes | None = None
    done: bool = False

    def packed(self, generation: str = "") -> bytes:
        return pack_command(
            (
                "EVALSHA", _SHARD_READ_SHA, 1, self.shard.current_key,
                generation, self.shard.record_prefix, *self.keys,
            )
        )  # fmt: skip


class ClusterOnlineStore(OnlineStore):
    """Feature views on a Redis Cluster, reached through a
    :class:`~mlsd_lib.cluster_routing.ClusterRouter`.

    ``replicas``: how many replicas must confirm a materialization's writes
    (``WAIT``) before it publishes them; 0 on a cluster without replicas.
    """

    def __init__(
        self,
        router: ClusterRouter,
        registry: FeatureRegistry,
        *,
        shards_per_view: int = DEFAULT_SHARDS_PER_VIEW,
        replicas: int = 1,
        wait_timeout_ms: int = 2_000,
        drop_grace_s: float = 1.0,
        write_chunk_size: int = 5_000,
        describe_location: str = "",
    ):
        if shards_per_view < 1:
            raise FeatureStoreError(
                f"shards_per_view is {shards_per_view}; it must be at least 1."
            )
        self.router = router
        self.registry = registry
        self.shards_per_view = shards_per_view
        self.replicas = replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.drop_grace_s = drop_grace_s
        self.write_chunk_size = write_chunk_size
        self._location = describe_location or "the Redis Cluster (REDIS_CLUSTER_URL)"
        self._plans: dict[tuple[str, ...], _ReadPlan] = {}
        self._shards: dict[tuple[str, int], list[_Shard]] = {}
        self._shard_cache: dict[str, int] = {}
        self.roll_forwards = 0
        """Reads that fell inside a swap and re-read shards (observability)."""
        for address in router.masters():
            # Where this fails, the first read's NOSCRIPT falls back to EVAL.
            with contextlib.suppress(redis.RedisError):
                router.client(address).script_load(_SHARD_READ_SCRIPT)

    def _view_shards(self, view: FeatureView) -> list[_Shard]:
        shards = self._shards.get((view.name, view.version))
        if shards is None:
            shards = [
                _Shard(
                    current_key=shard_current_key(view, s),
                    record_prefix=shard_record_prefix(view, s),
                    slot=slot_of(shard_current_key(view, s)),
                )
                for s in range(self.shards_per_view)
            ]
            self._shards[(view.name, view.version)] = shards
        return shards

    # -- writes --------------------------------------------------------------------
    def materialize(
        self,
        view_name: str,
        rows: pd.DataFrame,
        *,
        as_of: float | datetime | pd.Timestamp | None = None,
    ) -> MaterializationReport:
        """Publish each entity's latest row as a new generation of the view, on
        every shard, then move every shard's pointer to it (the module docstring
        says what is atomic, and what a failure at each step leaves behind)."""
        view = self.registry.view(view_name)
        keys, payloads = latest_payloads(view, rows, as_of)
        shards = self._view_shards(view)
        try:
            counter = cluster_counter_key(view)
            client = self.router.client(self.router.owner_of_key(counter))
            generation = str(client.incr(counter))
            previous = self._shard_generations(view)
        except (redis.RedisError, ClusterUnavailable) as error:
            raise self._unavailable(error) from error
        written: list[str] = []
        try:
            writes = [
                (shard_record_key(view, shard_of(k, len(shards)), generation, k), p)
                for k, p in zip(keys, payloads, strict=True)
            ]
            self._write_by_node(writes, written)
        except BaseException as error:
            # Nothing points at this generation yet: remove it, best effort.
            with contextlib.suppress(redis.RedisError, ClusterUnavailable):
                self._unlink(written)
            if isinstance(error, redis.RedisError | ClusterUnavailable):
                raise self._unavailable(error) from error
            raise
        try:
            self._write_by_node([(s.current_key, generation) for s in shards], [])
        except (redis.RedisError, ClusterUnavailable, ReplicationTimeout) as error:
            raise PartialSwap(
                f"materializing view {view.name!r}: generation {generation} is "
                f"written, but moving the shards' pointers to it failed ({error}). "
                f"Reads stay consistent (they roll forward to {generation}); "
                f"materialize again once the cluster is healthy."
            ) from error
        olds = {g for g in previous if g is not None and g != generation}
        if olds:
            time.sleep(self.drop_grace_s)  # reads that resolved an old one finish
            for old in sorted(olds):
                self.drop_generation(view_name, old)
        newest_old = (
            max(olds, key=lambda g: _generation_order(g.encode())) if olds else None
        )
        return MaterializationReport(view.name, generation, len(keys), newest_old)

    def _write_by_node(
        self, writes: Sequence[tuple[str, bytes | str]], written: list[str]
    ) -> None:
        """``SET`` each key on its master (pipelines of ``write_chunk_size``), and
        end each master's last pipeline with ``WAIT`` for its replicas.

        ``WAIT`` waits for the writes *of the connection it is sent on*, so it
        goes in the same pipeline as the last ``SET`` rather than in a command of
        its own, which the pool might send on another connection.
        """
        by_node: dict[Address, list[tuple[str, bytes | str]]] = {}
        for key, value in writes:
            by_node.setdefault(self.router.owner_of_key(key), []).append((key, value))
        for address, items in by_node.items():
            client = self.router.client(address)
            for start in range(0, len(items), self.write_chunk_size):
                pipe = client.pipeline(transaction=False)
                for key, value in items[start : start + self.write_chunk_size]:
                    pipe.set(key, value)
                    written.append(key)
                last = start + self.write_chunk_size >= len(items)
                if last and self.replicas > 0:
                    pipe.execute_command("WAIT", self.replicas, self.wait_timeout_ms)
                replies = pipe.execute()
                if last and self.replicas > 0:
                    self._check_replicas(address, int(replies[-1]))

    def _check_replicas(self, address: Address, confirmed: int) -> None:
        if confirmed < self.replicas:
            raise ReplicationTimeout(
                f"master {address[0]}:{address[1]} had {confirmed} of "
                f"{self.replicas} replicas confirm within {self.wait_timeout_ms} ms; "
                f"a failover now could lose these writes. Check the replicas (INFO "
                f"replication), or raise wait_timeout_ms."
            )

    def _shard_generations(self, view: FeatureView) -> list[str | None]:
        """Every shard's pointer, read with one pipeline per master."""
        shards = self._view_shards(view)
        by_node: dict[Address, list[int]] = {}
        for index, shard in enumerate(shards):
            by_node.setdefault(self.router.owner_of_key(shard.current_key), []).append(
                index
            )
        generations: list[str | None] = [None] * len(shards)
        for address, indexes in by_node.items():
            pipe = self.router.client(address).pipeline(transaction=False)
            for index in indexes:
                pipe.get(shards[index].current_key)
            for index, value in zip(indexes, pipe.execute(), strict=True):
                generations[index] = value.decode() if value is not None else None
        return generations

    def _unlink(self, keys: Sequence[str]) -> int:
        """Delete keys one ``UNLINK`` each (keys of many slots cannot share one),
        pipelined per master."""
        by_node: dict[Address, list[str]] = {}
        for key in keys:
            by_node.setdefault(self.router.owner_of_key(key), []).append(key)
        deleted = 0
        for address, node_keys in by_node.items():
            client = self.router.client(address)
            for start in range(0, len(node_keys), self.write_chunk_size):
                pipe = client.pipeline(transaction=False)
                for key in node_keys[start : start + self.write_chunk_size]:
                    pipe.unlink(key)
                deleted += sum(pipe.execute())
        return deleted

    def drop_generation(self, view_name: str, generation: str) -> int:
        """Delete every record of one generation, on every master (never one that
        a shard's pointer names)."""
        view = self.registry.view(view_name)
        if generation in self._shard_generations(view):
            raise FeatureStoreError(
                f"generation {generation} of view {view.name!r} is one readers "
                f"use; materialize a new one before dropping it."
            )
        pattern = f"fs:{{{view.name}@v{view.version}:s*}}:g{generation}:*"
        deleted = 0
        for address in self.router.masters():
            client = self.router.client(address)
            keys = list(client.scan_iter(match=pattern, count=1_000))
            for start in range(0, len(keys), self.write_chunk_size):
                pipe = client.pipeline(transaction=False)
                for key in keys[start : start + self.write_chunk_size]:
                    pipe.unlink(key)
                deleted += sum(pipe.execute())
        return deleted

    def current_generation(self, view_name: str) -> str | None:
        """The generation reads resolve to: the newest any shard points at."""
        generations = self._shard_generations(self.registry.view(view_name))
        newest = max(
            generations,
            key=lambda g: _generation_order(g.encode() if g is not None else None),
        )
        return newest

    def close(self) -> None:
        """Close this thread's read connections (the router stays open)."""
        self.router.close_local()

    # -- reads ---------------------------------------------------------------------
    def read(
        self,
        entity_rows: pd.DataFrame | Sequence[Mapping[str, object]],
        refs: Sequence[str | FeatureRef],
        *,
        now: float | datetime | pd.Timestamp | None = None,
    ) -> ClusterOnlineFeatures:
        """Features for each entity row, in the order of ``refs``: one request per
        master, all in flight together (the arguments are those of
        :meth:`~mlsd_lib.features.online.OnlineStore.read`). Values whose master is
        unreachable are defaults, flagged in ``missing`` and ``unavailable``; the
        read never raises for that."""
        plan = self._plan(tuple(refs))
        columns, count = entity_columns(entity_rows, [p.view for p in plan.views])
        argv, inverses, counts = self._request(plan, columns)
        total = sum(counts)
        raw: list[bytes | None] = [None] * total
        reads = self._shard_reads(plan, argv, counts)
        self._fetch(reads, raw, "")
        self._roll_forward(plan, reads, raw)
        now_s = moment_seconds(now)
        decoded = plan.decode(raw, inverses, counts, now_s) if total else None
        if decoded is None:
            decoded = self._decode_per_view(plan, raw, inverses, counts, now_s)
        unavailable = self._unavailable_mask(plan, reads, inverses, counts, count)
        return ClusterOnlineFeatures(
            decoded.values,
            decoded.missing,
            decoded.stale,
            decoded.feature_names,
            unavailable,
        )

    def _shard_reads(
        self, plan: _ReadPlan, argv: list[str], counts: list[int]
    ) -> list[_ShardRead]:
        """The script calls a read needs: one per (view, shard) it touches."""
        reads: list[_ShardRead] = []
        a = offset = 0
        for v, part in enumerate(plan.views):
            n = counts[v]
            keys = argv[a + 2 : a + 2 + n]
            a += 2 + n
            shards = self._view_shards(part.view)
            if n == 1:
                shard = shards[self._shard_of(keys[0])]
                reads.append(_ShardRead(v, shard, keys, [offset]))
            else:
                groups: dict[int, _ShardRead] = {}
                shard_of_key = self._shard_of
                for i, key in enumerate(keys, start=offset):
                    s = shard_of_key(key)
                    read = groups.get(s)
                    if read is None:
                        read = groups[s] = _ShardRead(v, shards[s], [key], [i])
                    else:
                        read.keys.append(key)
                        read.positions.append(i)
                reads += groups.values()
            offset += n
        return reads

    def _shard_of(self, key: str) -> int:
        """:func:`shard_of`, remembered: the same few entities (the candidate
        ads) come back on every read, and a dict lookup is cheaper than a CRC."""
        shard = self._shard_cache.get(key)
        if shard is None:
            shard = shard_of(key, self.shards_per_view)
            if len(self._shard_cache) < 200_000:
                self._shard_cache[key] = shard
        return shard

    def _fetch(self, reads: Sequence[_ShardRead], raw: list, generation: str) -> None:
        """Run the scripts, one request per master, and place the records."""
        by_node: dict[Address, list[_ShardRead]] = {}
        for read in reads:
            address = self.router.owner(read.shard.slot)
            if address is not None:
                by_node.setdefault(address, []).append(read)
        packed = {
            address: [r.packed(generation) for r in node_reads]
            for address, node_reads in by_node.items()
        }
        replies = self.router.send_to_nodes(packed) if packed else {}
        for address, node_reads in by_node.items():
            result = replies[address]
            if isinstance(result, NodeFailure):
                continue
            for read, reply in zip(node_reads, result, strict=True):
                if isinstance(reply, redis.ResponseError):
                    reply = self._retry(read, generation, reply)
                    if reply is None:
                        continue
                self._place(read, reply, raw)

    @staticmethod
    def _place(read: _ShardRead, reply: list, raw: list) -> None:
        read.generation = reply[0]
        read.done = True
        for position, record in zip(read.positions, reply[1:], strict=True):
            raw[position] = record

    def _retry(
        self, read: _ShardRead, generation: str, error: redis.ResponseError
    ) -> list | None:
        """The slow path for a script call that failed: ``NOSCRIPT`` (a promoted
        replica has no script cache) or ``MOVED`` (the slot changed hands)."""
        if isinstance(error, _TRANSIENT):
            try:
                self.router.refresh(force=True)
            except ClusterUnavailable:
                return None
        elif not isinstance(error, NoScriptError):
            raise FeatureStoreError(
                f"the shard read script failed on {read.shard.current_key}: {error}"
            ) from error
        address = self.router.owner(read.shard.slot)
        if address is None:
            return None
        try:
            return self.router.client(address).execute_command(
                "EVAL", _SHARD_READ_SCRIPT, 1, read.shard.current_key,
                generation, read.shard.record_prefix, *read.keys,
            )  # fmt: skip
        except redis.RedisError:
            return None

    def _roll_forward(
        self, plan: _ReadPlan, reads: Sequence[_ShardRead], raw: list
    ) -> None:
        """Where shards of one view answered different generations (the read fell
        inside a swap), re-read the lagging ones at the newest: one generation
        per view, as on one node."""
        if len(reads) == len(plan.views):
            return  # one shard per view (one entity): nothing can disagree
        lagging: dict[bytes, list[_ShardRead]] = {}
        for v in range(len(plan.views)):
            answered = [r for r in reads if r.view_index == v and r.done]
            generations = {r.generation for r in answered}
            if len(generations) > 1:
                newest = max(generations, key=_generation_order)
                assert newest is not None  # two distinct values, so one is set
                lagging.setdefault(newest, []).extend(
                    r for r in answered if r.generation != newest
                )
        if lagging:
            self.roll_forwards += 1
        for newest, stale_reads in lagging.items():
            for read in stale_reads:
                read.done = False
                for position in read.positions:
                    raw[position] = None
            self._fetch(stale_reads, raw, newest.decode())

    @staticmethod
    def _unavailable_mask(
        plan: _ReadPlan,
        reads: Sequence[_ShardRead],
        inverses: list[list[int]],
        counts: list[int],
        rows: int,
    ) -> np.ndarray:
        failed = [r for r in reads if not r.done]
        if not failed:
            return np.zeros((rows, len(plan.names)), dtype=bool)
        starts = np.cumsum([0, *counts[:-1]])
        by_view = np.zeros((rows, len(plan.views)), dtype=bool)
        for v in {r.view_index for r in failed}:
            flags = np.zeros(counts[v], dtype=bool)
            for read in failed:
                if read.view_index == v:
                    flags[np.array(read.positions) - starts[v]] = True
            by_view[:, v] = flags[np.array(inverses[v], dtype=np.intp)]
        return by_view[:, plan.view_of_column]

    def _unavailable(self, error: Exception) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"the online store could not reach {self._location}: {error}. Check that "
            f"the cluster runs and REDIS_CLUSTER_URL names one of its nodes."
        )
