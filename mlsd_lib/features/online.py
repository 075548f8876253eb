"""The Redis online store: atomic materialization, one-round-trip reads.

Introduced in ``notebooks/feature_store.ipynb``. The byte layout and key names
are in :mod:`mlsd_lib.features.records`; this module writes and reads them.

**Writes** (:meth:`OnlineStore.materialize`) take the latest row per entity,
write every record under a *new generation* of the view's keys, and only then
point the view's ``current`` key at that generation (one ``SET``). A reader
therefore sees the previous complete generation or the new complete one, never a
mix; a write that fails half-way deletes what it wrote and leaves ``current``
where it was.

**Reads** (:meth:`OnlineStore.read`) are one Lua script call (``EVALSHA``): the
server resolves each view's current generation and fetches every record the
request needs with ``MGET``, whatever the number of views and entities, in one
network round trip. The records decode into one dense float32 matrix in the
order of the model's input schema, with masks for missing and stale values.

*The fast path, and why it is still atomic.* Measured against a hand-written
redis-py pipeline of one ``HMGET`` per view (``benchmarks/feature_store.py``,
``hand_pipeline``), the one-entity read lost in Python, not in Redis: the script
costs about 8 us more than a bare ``PING`` on loopback, while decoding three
views one after another (a ``frombuffer``, a column pick, the TTL test and the
defaults per view, then stacking and reordering) cost about 70 us. So the read
keeps the script and the one round trip and changes only the client side: the
records of every view are joined and viewed as 4-byte words, and one gather per
output array (planned once per feature list, and for one row once and for all)
lands each value in its schema column. An absent record becomes a record of NaN
values at time -inf, which the decode reads exactly as the per-view decode read a
gap. The command is packed with hiredis and sent on a connection the thread
keeps. Atomicity is the script's, and nothing here changes it: Redis runs a
script without interleaving another command, so every view's ``current`` and
the records it names are read at one instant, before or after a
materialization's ``SET`` of ``current``, never across it; the old generation is
deleted only after that ``SET``, by commands that cannot run inside the script.
A pipeline of ``GET current`` then ``MGET`` could not give that (the keys depend
on the first reply), and ``MULTI`` cannot either (its commands cannot use the
replies of earlier ones).

Compared with Feast's Redis layout (one hash per entity key, field names hashed
with murmur3, values as protobuf messages, read with ``HMGET`` per entity): a
packed record per (view, entity) costs one fixed-width numpy decode instead of a
protobuf parse per value, and a view is read or swapped as a unit. The price: a
read fetches every feature of the view (208 bytes for 50 features), and updating
one feature means rewriting the record, which the stream processor does
atomically in a script.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import redis
from hiredis import pack_command

from mlsd_lib.features import records
from mlsd_lib.features.validation import epoch_seconds, validate_rows
from mlsd_lib.features.views import (
    TIMESTAMP_COLUMN,
    FeatureRef,
    FeatureRegistry,
    FeatureStoreError,
    FeatureView,
)

#: Distinct (view, entity) records one read may fetch. A request for more is a
#: bug (or an attack) that would block Redis for everyone; split it instead.
MAX_RECORDS_PER_READ = 20_000

_READ_SCRIPT = """
-- KEYS[i]: view i's `current` key. ARGV: for each view, its key prefix, the
-- number n of entity keys, then the n entity keys. Returns the records in order
-- (false where absent). Runs atomically, so a generation swap is never seen
-- half-way.
local out = {}
local a = 1
for i = 1, #KEYS do
  local generation = redis.call('GET', KEYS[i])
  local prefix = ARGV[a]
  local n = tonumber(ARGV[a + 1])
  a = a + 2
  if generation then
    local base = prefix .. ':g' .. generation .. ':'
    local first = 1
    while first <= n do
      local last = math.min(first + 999, n)
      local keys = {}
      for j = first, last do keys[#keys + 1] = base .. ARGV[a + j - 1] end
      local values = redis.call('MGET', unpack(keys))
      for j = 1, #values do out[#out + 1] = values[j] end
      first = last + 1
    end
  else
    for _ = 1, n do out[#out + 1] = false end
  end
  a = a + n
end
return out
"""


class OnlineStoreUnavailable(FeatureStoreError, ConnectionError):
    """Redis did not answer; the message says where the store was looking."""


class OversizedRequest(FeatureStoreError):
    """A read asks for more records than :data:`MAX_RECORDS_PER_READ`."""


@dataclass(frozen=True)
class OnlineFeatures:
    """What a read returns: the model's input matrix and what to trust in it."""

    values: np.ndarray
    """float32 [rows, features], defaults where ``missing``."""
    missing: np.ndarray
    """bool [rows, features]: no value was served (absent, empty, or stale)."""
    stale: np.ndarray
    """bool [rows, features]: a value existed but was older than the view's TTL."""
    feature_names: list[str]


@dataclass(frozen=True)
class MaterializationReport:
    view: str
    generation: str
    entities: int
    previous_generation: str | None


def moment_seconds(moment: float | datetime | pd.Timestamp | None) -> float:
    """A moment as UTC seconds since the epoch; None means now, naive means UTC."""
    if moment is None:
        return time.time()
    if type(moment) is pd.Timestamp and moment.tzinfo is not None:
        return moment.timestamp()  # what the general path below computes, sooner
    if isinstance(moment, int | float):
        return float(moment)
    stamp = pd.Timestamp(moment)
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


_TIMESTAMP_WORDS = np.array([0, 1], dtype=np.intp)


def _record_dtype(view: FeatureView) -> np.dtype:
    return np.dtype([("ts", "<f8"), ("values", "<f4", (len(view.features),))])


@dataclass(frozen=True)
class _ViewPlan:
    """How one view contributes to a read: which record fields go to which columns."""

    view: FeatureView
    current_key: str
    prefix: str
    columns: np.ndarray
    positions: np.ndarray
    defaults: np.ndarray
    ttl_seconds: float
    dtype: np.dtype
    absent_record: bytes
    """What an absent record decodes as: event time -inf (so expired), NaN values."""


@dataclass(frozen=True)
class _ReadPlan:
    """Everything about a read that depends only on the feature list, computed once.

    The per-column arrays let one gather decode every view at once: column ``c``
    comes from view ``view_of_column[c]``, at 4-byte word ``word_in_record[c]`` of
    that view's record (words 0-1 are the float64 event time).
    """

    names: tuple[str, ...]
    views: tuple[_ViewPlan, ...]
    column_order: np.ndarray
    """Where each schema column sits among the views' columns stacked in order."""
    current_keys: tuple[str, ...]
    entity_columns: tuple[tuple[str, ...], ...]
    """Each view's entity columns (views sharing them share their keys)."""
    view_of_column: np.ndarray
    word_in_record: np.ndarray
    defaults_by_column: np.ndarray
    ttl_by_view: np.ndarray
    words_per_view: tuple[int, ...]
    record_sizes: tuple[int, ...]
    one_row_value_words: np.ndarray
    """[1, columns]: the gather for the commonest read, one row (one record per
    view), where every record's place in the reply is known in advance."""
    one_row_stamp_words: np.ndarray
    """[1, views, 2]: the two words of each view's event time, for one row."""

    @classmethod
    def build(
        cls, registry: FeatureRegistry, refs: tuple[str | FeatureRef, ...]
    ) -> _ReadPlan:
        if not refs:
            raise FeatureStoreError("a read needs at least one feature reference.")
        resolved = registry.resolve(refs)
        names = tuple(
            str(r if isinstance(r, FeatureRef) else FeatureRef.parse(r)) for r in refs
        )
        parts = []
        view_of_column = np.empty(len(resolved), dtype=np.intp)
        word_in_record = np.empty(len(resolved), dtype=np.intp)
        for index, view in enumerate({v.name: v for v, _ in resolved}.values()):
            columns = [j for j, (v, _) in enumerate(resolved) if v.name == view.name]
            positions = [resolved[j][1] for j in columns]
            dtype = _record_dtype(view)
            absent = np.empty(1, dtype=dtype)
            absent["ts"] = -np.inf
            absent["values"] = np.nan
            parts.append(
                _ViewPlan(
                    view=view,
                    current_key=records.current_key(view),
                    prefix=records.view_prefix(view),
                    columns=np.array(columns, dtype=np.intp),
                    positions=np.array(positions, dtype=np.intp),
                    defaults=view.defaults[positions],
                    ttl_seconds=view.ttl.total_seconds(),
                    dtype=dtype,
                    absent_record=absent.tobytes(),
                )
            )
            view_of_column[columns] = index
            word_in_record[columns] = 2 + np.array(positions, dtype=np.intp)
        stacked = np.concatenate([p.columns for p in parts])
        defaults = np.empty(len(resolved), dtype=np.float32)
        for part in parts:
            defaults[part.columns] = part.defaults
        words = [p.dtype.itemsize // 4 for p in parts]
        one_row_starts = np.cumsum([0, *words[:-1]], dtype=np.intp)
        return cls(
            names=names,
            views=tuple(parts),
            column_order=np.argsort(stacked),
            current_keys=tuple(p.current_key for p in parts),
            entity_columns=tuple(p.view.entities for p in parts),
            view_of_column=view_of_column,
            word_in_record=word_in_record,
            defaults_by_column=defaults,
            ttl_by_view=np.array([p.ttl_seconds for p in parts], dtype=np.float64),
            words_per_view=tuple(words),
            record_sizes=tuple(p.dtype.itemsize for p in parts),
            one_row_value_words=(one_row_starts[view_of_column] + word_in_record)[
                None, :
            ],
            one_row_stamp_words=(one_row_starts[:, None] + _TIMESTAMP_WORDS)[None],
        )

    def decode(
        self,
        raw: Sequence[bytes | None],
        inverses: list[list[int]],
        counts: list[int],
        now_s: float,
    ) -> OnlineFeatures | None:
        """Every view's records, decoded at once: one join, one ``frombuffer``,
        one gather per output array.

        ``raw`` is the script's reply (views one after another, ``counts[v]``
        records each); ``inverses[v][r]`` is row ``r``'s record among view ``v``'s.
        An absent record is replaced by the view's ``absent_record`` (time -inf,
        NaN values), which reads exactly as the per-view decode reads a gap.
        Returns None when a view's records are not the size its definition says,
        so the caller can take the per-view path, which names the problem.
        """
        found: list[bytes] = []
        starts: list[int] = []
        offset = word = 0
        for v, count in enumerate(counts):
            chunk = raw[offset : offset + count]
            offset += count
            if not all(chunk):
                chunk = [r or self.views[v].absent_record for r in chunk]
            if sum(map(len, chunk)) != count * self.record_sizes[v]:
                return None
            found += chunk
            starts.append(word)
            word += count * self.words_per_view[v]
        # Records are 8 + 4n bytes, so every field starts on a 4-byte word. Gather
        # words as uint32 (a bit-exact copy) and reinterpret them afterwards.
        words = np.frombuffer(b"".join(found), dtype="<u4")
        if len(found) == len(counts) and len(inverses[0]) == 1:
            # One row, one record per view: the gather was computed with the plan.
            value_words = self.one_row_value_words
            stamp_words = self.one_row_stamp_words
        else:
            first = (
                np.array(starts, dtype=np.intp)[:, None]
                + np.array(inverses, dtype=np.intp)
                * np.array(self.words_per_view, dtype=np.intp)[:, None]
            ).T  # [rows, views]: where each row's record of each view starts
            value_words = first[:, self.view_of_column] + self.word_in_record
            stamp_words = first[:, :, None] + _TIMESTAMP_WORDS
        values = words[value_words].view("<f4")
        stamps = words[stamp_words].view("<f8")[:, :, 0]
        expired = ((now_s - stamps) > self.ttl_by_view)[:, self.view_of_column]
        empty = np.isnan(values)
        absent = empty | expired
        served = np.where(absent, self.defaults_by_column, values)
        return OnlineFeatures(served, absent, expired & ~empty, list(self.names))


def entity_columns(
    rows: pd.DataFrame | Sequence[Mapping[str, object]],
    views: Sequence[FeatureView],
) -> tuple[dict[str, list[object]], int]:
    """The entity columns ``views`` need, as plain lists, from either input form."""
    needed = tuple(dict.fromkeys(e for view in views for e in view.entities))
    if isinstance(rows, pd.DataFrame):
        absent = [c for c in needed if c not in rows.columns]
        given = list(rows.columns)
        columns = {c: rows[c].tolist() for c in needed if c in rows.columns}
        count = len(rows)
    else:
        absent = [c for c in needed if rows and c not in rows[0]]
        given = list(rows[0]) if rows else []
        try:
            columns = {c: [row[c] for row in rows] for c in needed if c not in absent}
        except KeyError as error:
            raise FeatureStoreError(
                f"an entity row lacks {error}; every row needs {list(needed)}."
            ) from None
        count = len(rows)
    if absent:
        raise FeatureStoreError(
            f"entity rows lack columns {absent} needed by views "
            f"{[v.name for v in views if set(v.entities) & set(absent)]} "
            f"(given: {given})."
        )
    return columns, count


def latest_rows(
    view: FeatureView,
    rows: pd.DataFrame,
    as_of: float | datetime | pd.Timestamp | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """What materialization publishes: each entity's latest row at or before
    ``as_of`` (among equal timestamps, the one written last), with its key.

    The same rule as the point-in-time join, so online serves what training saw.
    Rows are validated first: a bad column raises before anything is written.
    """
    checked = validate_rows(view, rows)
    if as_of is not None:
        cutoff = pd.Timestamp(moment_seconds(as_of), unit="s", tz="UTC")
        checked = checked[checked[TIMESTAMP_COLUMN] <= cutoff]
    latest = (
        checked.sort_values(TIMESTAMP_COLUMN, kind="stable")
        .groupby(list(view.entities), sort=False)
        .tail(1)
    )
    keys = [
        records.entity_key(values)
        for values in latest[list(view.entities)].itertuples(index=False)
    ]
    return latest, keys


def latest_payloads(
    view: FeatureView,
    rows: pd.DataFrame,
    as_of: float | datetime | pd.Timestamp | None = None,
) -> tuple[list[str], list[bytes]]:
    """What a materialization writes, on one node or a cluster: each entity's
    key and its packed record (timestamp and float32 values) from
    :func:`latest_rows`. Rows are validated first."""
    latest, keys = latest_rows(view, rows, as_of)
    packed = np.empty(len(latest), dtype=_record_dtype(view))
    packed["ts"] = epoch_seconds(latest[TIMESTAMP_COLUMN])
    packed["values"] = latest[view.feature_names].to_numpy(dtype=np.float32)
    return keys, [row.tobytes() for row in packed]


def unlink_in_chunks(
    client: redis.Redis, keys: Sequence[str | bytes], chunk_size: int = 5_000
) -> int:
    """``UNLINK`` keys a chunk at a time, so no single command blocks Redis long."""
    deleted = 0
    for start in range(0, len(keys), chunk_size):
        chunk = keys[start : start + chunk_size]
        if chunk:
            deleted += client.unlink(*chunk)
    return deleted


def delete_matching(client: redis.Redis, pattern: str, chunk_size: int = 5_000) -> int:
    """Delete every key matching ``pattern`` (found with ``SCAN``, not ``KEYS``)."""
    keys = list(client.scan_iter(match=pattern, count=1_000))
    return unlink_in_chunks(client, keys, chunk_size)


class OnlineStore:
    """Feature views in Redis. ``client`` is any redis-py client (or fakeredis)."""

    def __init__(
        self,
        client: redis.Redis,
        registry: FeatureRegistry,
        *,
        write_chunk_size: int = 5_000,
        describe_location: str = "",
    ):
        self.client = client
        self.registry = registry
        self.write_chunk_size = write_chunk_size
        self._location = describe_location or "the configured Redis (REDIS_URL)"
        self._read_script = client.register_script(_READ_SCRIPT)
        self._plans: dict[tuple[str, ...], _ReadPlan] = {}
        self._connections = threading.local()
        # The direct path below needs a socket connection; fakeredis and custom
        # clients take the ordinary redis-py path.
        pool = client.connection_pool
        self._direct = getattr(pool, "connection_class", None) is redis.Connection

    # -- writes --------------------------------------------------------------------
    def materialize(
        self,
        view_name: str,
        rows: pd.DataFrame,
        *,
        as_of: float | datetime | pd.Timestamp | None = None,
    ) -> MaterializationReport:
        """Publish each entity's latest row (at or before ``as_of``) as a new
        generation of the view, then swap readers onto it.

        Rows are validated first: a bad column raises before anything is written.
        """
        view = self.registry.view(view_name)
        keys, payloads = latest_payloads(view, rows, as_of)

        try:
            previous = self.client.get(records.current_key(view))
            generation = str(self.client.incr(records.counter_key(view)))
        except redis.RedisError as error:
            raise self._unavailable(error) from error
        written: list[str] = []
        try:
            for start in range(0, len(keys), self.write_chunk_size):
                pipe = self.client.pipeline(transaction=False)
                chunk = keys[start : start + self.write_chunk_size]
                for key, payload in zip(chunk, payloads[start:], strict=False):
                    full_key = records.record_key(view, generation, key)
                    pipe.set(full_key, payload)
                    written.append(full_key)
                pipe.execute()
            self.client.set(records.current_key(view), generation)
        except BaseException as error:
            # Readers still use the previous generation; remove the partial one.
            # If Redis itself is gone this cleanup fails too, and the orphaned keys
            # stay invisible (nothing points at their generation).
            with contextlib.suppress(redis.RedisError):
                self._delete(written)
            if isinstance(error, redis.RedisError):
                raise self._unavailable(error) from error
            raise
        previous_generation = previous.decode() if previous else None
        if previous_generation is not None and previous_generation != generation:
            self.drop_generation(view_name, previous_generation)
        return MaterializationReport(
            view.name, generation, len(keys), previous_generation
        )

    def drop_generation(self, view_name: str, generation: str) -> int:
        """Delete every record of one generation (never the current one)."""
        view = self.registry.view(view_name)
        current = self.client.get(records.current_key(view))
        if current is not None and current.decode() == generation:
            raise FeatureStoreError(
                f"generation {generation} of view {view.name!r} is the one readers "
                f"use; materialize a new one before dropping it."
            )
        pattern = records.record_key(view, generation, "*")
        return delete_matching(self.client, pattern, self.write_chunk_size)

    def _delete(self, keys: Sequence[str | bytes]) -> int:
        return unlink_in_chunks(self.client, keys, self.write_chunk_size)

    def current_generation(self, view_name: str) -> str | None:
        value = self.client.get(records.current_key(self.registry.view(view_name)))
        return value.decode() if value is not None else None

    def close(self) -> None:
        """Close this thread's direct read connection (the client stays open)."""
        connection = getattr(self._connections, "connection", None)
        if connection is not None:
            connection.disconnect()
            self._connections.connection = None

    # -- reads ---------------------------------------------------------------------
    def read(
        self,
        entity_rows: pd.DataFrame | Sequence[Mapping[str, object]],
        refs: Sequence[str | FeatureRef],
        *,
        now: float | datetime | pd.Timestamp | None = None,
    ) -> OnlineFeatures:
        """Features for each entity row, in the order of ``refs``: one round trip.

        ``entity_rows`` (a DataFrame or a list of dicts) has a column per entity key
        the views need (``user_id``, ``ad_id``, ...), one row per output row; rows
        that share a key (one user, 100 candidate ads) fetch its record once.
        ``now`` (default: the clock) decides staleness: a value older than its
        view's TTL is served as the default and flagged in ``stale``.

        This is the serving hot path, so it avoids pandas: a plan per feature list
        is computed once and cached, and every view's records decode together with
        one ``frombuffer`` and one gather per output array (the module docstring
        says why, and why the read is still one atomic script call).
        """
        plan = self._plan(tuple(refs))
        columns, _ = entity_columns(entity_rows, [p.view for p in plan.views])
        argv, inverses, counts = self._request(plan, columns)
        total = sum(counts)
        try:
            raw = self._run_read_script(plan.current_keys, argv) if total else []
        except redis.RedisError as error:
            raise self._unavailable(error) from error
        now_s = moment_seconds(now)
        if total:
            decoded = plan.decode(raw, inverses, counts, now_s)
            if decoded is not None:
                return decoded
        return self._decode_per_view(plan, raw, inverses, counts, now_s)

    @staticmethod
    def _request(
        plan: _ReadPlan, columns: Mapping[str, list[object]]
    ) -> tuple[list[str], list[list[int]], list[int]]:
        """The script's ARGV, and for each view which record each row reads.

        Rows that share an entity key fetch its record once; views with the same
        entity columns (two user views) share the key strings. A read of more
        than ``MAX_RECORDS_PER_READ`` records is refused here, before any request.
        """
        argv: list[str] = []
        inverses: list[list[int]] = []
        counts: list[int] = []
        seen: dict[tuple[str, ...], tuple[list[int], list[str]]] = {}
        for part, entities in zip(plan.views, plan.entity_columns, strict=True):
            shared = seen.get(entities)
            if shared is None:
                if len(entities) == 1:
                    row_keys = [str(v) for v in columns[entities[0]]]
                else:
                    row_keys = [
                        records.entity_key(values)
                        for values in zip(*(columns[e] for e in entities), strict=True)
                    ]
                positions: dict[str, int] = {}
                inverse = [positions.setdefault(k, len(positions)) for k in row_keys]
                shared = seen[entities] = (inverse, list(positions))
            inverse, distinct = shared
            inverses.append(inverse)
            counts.append(len(distinct))
            argv += [part.prefix, str(len(distinct)), *distinct]
        if sum(counts) > MAX_RECORDS_PER_READ:
            raise OversizedRequest(
                f"this read needs {sum(counts)} records; the limit is "
                f"{MAX_RECORDS_PER_READ} per read. Split the entity rows into "
                "smaller requests."
            )
        return argv, inverses, counts

    def _decode_per_view(
        self,
        plan: _ReadPlan,
        raw: Sequence[bytes | None],
        inverses: list[list[int]],
        counts: list[int],
        now_s: float,
    ) -> OnlineFeatures:
        """The per-view decode: the reference the one-gather decode is tested
        against, and the path that explains records of the wrong size."""
        served_parts, absent_parts, stale_parts = [], [], []
        offset = 0
        for part, inverse, count in zip(plan.views, inverses, counts, strict=True):
            decoded = self._decode(part.view, part.dtype, raw[offset : offset + count])
            offset += count
            record_values = decoded["values"][:, part.positions]
            expired = ((now_s - decoded["ts"]) > part.ttl_seconds)[:, None]
            empty = np.isnan(record_values)
            absent = empty | expired
            rows = np.array(inverse, dtype=np.intp)
            served_parts.append(np.where(absent, part.defaults, record_values)[rows])
            absent_parts.append(absent[rows])
            stale_parts.append((expired & ~empty)[rows])
        # Views were processed one after another; put the columns in schema order.
        order = plan.column_order
        values = np.hstack(served_parts)[:, order]
        missing = np.hstack(absent_parts)[:, order]
        stale = np.hstack(stale_parts)[:, order]
        return OnlineFeatures(values, missing, stale, list(plan.names))

    def _run_read_script(self, keys: Sequence[str], argv: list[str]) -> list:
        """``EVALSHA`` the read script: on a thread's own connection when possible.

        redis-py's generic command path (pool checkout, argument encoding, response
        callbacks) costs about as much as the loopback round trip itself, so the
        hot path packs the command with hiredis and sends it on a connection this
        thread keeps. Any surprise (the script not loaded yet, a dropped
        connection) falls back to the ordinary path, which also reloads the script.
        """
        if not self._direct:
            return self._read_script(keys=list(keys), args=argv)
        connection = getattr(self._connections, "connection", None)
        if connection is None:
            connection = self.client.connection_pool.make_connection()
            self._connections.connection = connection
        try:
            connection.send_packed_command(
                [
                    pack_command(
                        ("EVALSHA", self._read_script.sha, len(keys), *keys, *argv)
                    )
                ],
                check_health=False,
            )
            return connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            connection.disconnect()
            return self._read_script(keys=list(keys), args=argv)

    def _plan(self, refs: tuple[str | FeatureRef, ...]) -> _ReadPlan:
        plan = self._plans.get(refs)
        if plan is None:
            plan = _ReadPlan.build(self.registry, refs)
            if len(self._plans) < 1024:  # feature lists are few; never grow unbounded
                self._plans[refs] = plan
        return plan

    @staticmethod
    def _decode(
        view: FeatureView, dtype: np.dtype, found: Sequence[bytes | None]
    ) -> np.ndarray:
        """Records as a structured array; absent ones read as NaN values at ts -inf."""
        if all(found):  # the common case: one join, one frombuffer
            blob = b"".join(found)
            if len(blob) == dtype.itemsize * len(found):
                return np.frombuffer(blob, dtype=dtype)
            present = list(range(len(found)))
        else:
            present = [i for i, r in enumerate(found) if r]
            blob = b"".join(found[i] for i in present)
        decoded = np.empty(len(found), dtype=dtype)
        decoded["ts"] = -np.inf
        decoded["values"] = np.nan
        if not present:
            return decoded
        if len(blob) != dtype.itemsize * len(present):
            sizes = sorted({len(found[i]) for i in present})
            raise FeatureStoreError(
                f"records of view {view.name!r} are {sizes} bytes, the definition "
                f"(v{view.version}, {len(view.features)} features) needs "
                f"{dtype.itemsize}: bump the view's version when its features change."
            )
        decoded[present] = np.frombuffer(blob, dtype=dtype)
        return decoded

    def _unavailable(self, error: Exception) -> OnlineStoreUnavailable:
        return OnlineStoreUnavailable(
            f"the online store could not reach {self._location}: {error}. Check that "
            f"Redis is running and REDIS_URL points at it."
        )
