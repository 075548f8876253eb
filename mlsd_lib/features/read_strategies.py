"""Three simpler online layouts, to measure what the packed record buys.

Introduced in ``notebooks/feature_store.ipynb`` (the latency comparison) and
timed by ``benchmarks/feature_store.py``. Both use the same
:class:`~mlsd_lib.features.views.FeatureView` definitions as
:class:`~mlsd_lib.features.online.OnlineStore` and return the same
:class:`~mlsd_lib.features.online.OnlineFeatures`, so the only difference is how
the bytes sit in Redis and how many round trips a read costs:

* **naive**: one Redis string per (view, entity, feature), read with one ``GET``
  per feature, one after another: a request for 50 features pays 50 round trips.
* **pipelined**: the same keys, every ``GET`` sent in one pipeline: one round
  trip, but still one command (and one key lookup, one reply) per feature.
* **hash pipeline** (:class:`HashPipelineReader`): one Redis hash per (view,
  entity), a field per feature, read with one ``HMGET`` per view and entity in
  one redis-py pipeline: what a team writes by hand, and the close competitor
  for one entity (few commands, only the requested fields travel).

Each per-feature value is 12 bytes, ``<float64 event_timestamp><float32 value>``,
so staleness is decided exactly as the packed store decides it (a hash holds the
same timestamp once, in its ``_ts`` field, and each feature as 4 bytes of
float32). These layouts have no generation pointer: a rewrite overwrites keys in
place and a reader can see a mix of old and new values, one of the reasons the
packed layout exists.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd
import redis

from mlsd_lib.features import records
from mlsd_lib.features.online import (
    OnlineFeatures,
    entity_columns,
    latest_rows,
    moment_seconds,
)
from mlsd_lib.features.validation import epoch_seconds
from mlsd_lib.features.views import (
    TIMESTAMP_COLUMN,
    FeatureRef,
    FeatureRegistry,
    FeatureView,
)

VALUE = struct.Struct("<df")  # no padding: 12 bytes, as the decode dtype
TIMESTAMP_FIELD = "_ts"
EntityRows = pd.DataFrame | Sequence[dict[str, object]]


def feature_key(view: FeatureView, entity_key: str, feature: str) -> str:
    """``pf:{view}@v{version}:{entity}:{feature}``: one key per feature value."""
    return f"pf:{view.name}@v{view.version}:{entity_key}:{feature}"


def write_per_feature(
    client: redis.Redis,
    registry: FeatureRegistry,
    view_name: str,
    rows: pd.DataFrame,
    *,
    as_of: float | datetime | pd.Timestamp | None = None,
    chunk_size: int = 5_000,
) -> int:
    """Write each entity's latest row (at or before ``as_of``) as per-feature keys.

    The same selection :meth:`~mlsd_lib.features.online.OnlineStore.materialize`
    makes, stored in the per-feature layout. NaN values are not written (read
    back as missing).
    Returns the number of keys written.
    """
    view = registry.view(view_name)
    latest, keys = latest_rows(view, rows, as_of)
    stamps = epoch_seconds(latest[TIMESTAMP_COLUMN])
    matrix = latest[view.feature_names].to_numpy(dtype=np.float32)
    written = 0
    pipe = client.pipeline(transaction=False)
    for i, key in enumerate(keys):
        for j, feature in enumerate(view.feature_names):
            if np.isnan(matrix[i, j]):
                continue
            pipe.set(
                feature_key(view, key, feature), VALUE.pack(stamps[i], matrix[i, j])
            )
            written += 1
            if written % chunk_size == 0:
                pipe.execute()
    pipe.execute()
    return written


class _Plan:
    """Which per-feature keys a request needs, and where each value lands.

    Built without pandas and decoded with whole-matrix numpy operations, like the
    packed store's read, so the comparison measures the layouts and not Python.
    """

    def __init__(
        self,
        registry: FeatureRegistry,
        entity_rows: EntityRows,
        refs: Sequence[str | FeatureRef],
    ):
        self.resolved = registry.resolve(refs)
        self.names = [
            str(r if isinstance(r, FeatureRef) else FeatureRef.parse(r)) for r in refs
        ]
        views = list({v.name: v for v, _ in self.resolved}.values())
        columns, self.num_rows = entity_columns(entity_rows, views)
        row_keys: dict[str, list[str]] = {}
        for view, _ in self.resolved:
            if view.name not in row_keys:
                row_keys[view.name] = [
                    records.entity_key(values)
                    for values in zip(*(columns[e] for e in view.entities), strict=True)
                ]
        # One key per distinct (view, entity, feature); rows sharing an entity (one
        # user, 100 candidate ads) fetch it once, as the packed store does.
        self.keys: list[str] = []
        slot_of: dict[str, int] = {}
        slots = []
        for view, position in self.resolved:
            feature = view.features[position].name
            column = []
            for entity in row_keys[view.name]:
                key = feature_key(view, entity, feature)
                if key not in slot_of:
                    slot_of[key] = len(self.keys)
                    self.keys.append(key)
                column.append(slot_of[key])
            slots.append(column)
        self.slots = np.array(slots, dtype=np.intp).T.reshape(
            self.num_rows, len(self.resolved)
        )
        self.ttl_seconds = np.array([v.ttl.total_seconds() for v, _ in self.resolved])
        self.defaults = np.array(
            [v.features[p].default for v, p in self.resolved], dtype=np.float32
        )

    def decode(self, raw: Sequence[bytes | None], now_s: float) -> OnlineFeatures:
        pairs = np.full(len(raw), np.nan, dtype=[("ts", "<f8"), ("value", "<f4")])
        present = [k for k, value in enumerate(raw) if value is not None]
        if present:
            blob = b"".join(raw[k] for k in present)
            pairs[present] = np.frombuffer(blob, dtype=pairs.dtype)
        values = pairs["value"][self.slots]
        empty = np.isnan(values)
        expired = ~empty & (now_s - pairs["ts"][self.slots] > self.ttl_seconds)
        missing = empty | expired
        served = np.where(missing, self.defaults, values)
        return OnlineFeatures(served, missing, expired, list(self.names))


def read_naive(
    client: redis.Redis,
    registry: FeatureRegistry,
    entity_rows: EntityRows,
    refs: Sequence[str | FeatureRef],
    *,
    now: float | datetime | pd.Timestamp | None = None,
) -> OnlineFeatures:
    """One ``GET`` per feature value, sequentially: one round trip each."""
    plan = _Plan(registry, entity_rows, refs)
    raw = [client.get(key) for key in plan.keys]
    return plan.decode(raw, moment_seconds(now))


def read_pipelined(
    client: redis.Redis,
    registry: FeatureRegistry,
    entity_rows: EntityRows,
    refs: Sequence[str | FeatureRef],
    *,
    now: float | datetime | pd.Timestamp | None = None,
) -> OnlineFeatures:
    """The same ``GET`` commands sent as one pipeline: one round trip, many commands."""
    plan = _Plan(registry, entity_rows, refs)
    pipe = client.pipeline(transaction=False)
    for key in plan.keys:
        pipe.get(key)
    raw = pipe.execute() if plan.keys else []
    return plan.decode(raw, moment_seconds(now))


def hash_key(view: FeatureView, entity_key: str) -> str:
    """``ph:{view}@v{version}:{entity}``: one hash per (view, entity)."""
    return f"ph:{view.name}@v{view.version}:{entity_key}"


def write_hash_per_entity(
    client: redis.Redis,
    registry: FeatureRegistry,
    view_name: str,
    rows: pd.DataFrame,
    *,
    as_of: float | datetime | pd.Timestamp | None = None,
    chunk_size: int = 5_000,
) -> list[str]:
    """Write each entity's latest row (at or before ``as_of``) as one hash.

    The same selection as :func:`write_per_feature`; field ``_ts`` holds the event
    time (float64), each feature field its value (float32); NaN values are not
    written (read back as missing). Returns the keys written, so a caller can
    delete exactly those.
    """
    view = registry.view(view_name)
    latest, keys = latest_rows(view, rows, as_of)
    stamps = epoch_seconds(latest[TIMESTAMP_COLUMN])
    matrix = latest[view.feature_names].to_numpy(dtype="<f4")
    written = []
    pipe = client.pipeline(transaction=False)
    for i, key in enumerate(keys):
        mapping: dict[str, bytes] = {TIMESTAMP_FIELD: struct.pack("<d", stamps[i])}
        for j, feature in enumerate(view.feature_names):
            if not np.isnan(matrix[i, j]):
                mapping[feature] = matrix[i, j].tobytes()
        written.append(hash_key(view, key))
        pipe.hset(written[-1], mapping=mapping)
        if len(written) % chunk_size == 0:
            pipe.execute()
    pipe.execute()
    return written


class HashPipelineReader:
    """One ``HMGET`` per (view, entity) in one plain redis-py pipeline, decoded.

    The field lists are fixed per feature list, as a hand-written reader would
    hard-code them; each view's replies decode with one ``frombuffer`` when every
    value is present. The benchmark's yardstick for the packed store's one-entity
    read (``hand_pipeline`` in ``benchmarks/feature_store.py``).
    """

    def __init__(
        self,
        client: redis.Redis,
        registry: FeatureRegistry,
        refs: Sequence[str | FeatureRef],
    ):
        self.client = client
        resolved = registry.resolve(refs)
        self.names = [
            str(r if isinstance(r, FeatureRef) else FeatureRef.parse(r)) for r in refs
        ]
        self.views = list({v.name: v for v, _ in resolved}.values())
        self.fields: list[list[str]] = []
        self.columns: list[np.ndarray] = []
        self.defaults: list[np.ndarray] = []
        for view in self.views:
            columns = [j for j, (v, _) in enumerate(resolved) if v.name == view.name]
            positions = [resolved[j][1] for j in columns]
            self.fields.append(
                [TIMESTAMP_FIELD, *(view.features[p].name for p in positions)]
            )
            self.columns.append(np.array(columns, dtype=np.intp))
            self.defaults.append(view.defaults[positions])
        self.ttl_seconds = [view.ttl.total_seconds() for view in self.views]

    def read(
        self,
        entity_rows: EntityRows,
        *,
        now: float | datetime | pd.Timestamp | None = None,
    ) -> OnlineFeatures:
        """The same :class:`~mlsd_lib.features.online.OnlineFeatures` the store
        returns: one pipeline, one ``HMGET`` per view and distinct entity."""
        columns, num_rows = entity_columns(entity_rows, self.views)
        pipe = self.client.pipeline(transaction=False)
        inverses, counts = [], []
        for view, fields in zip(self.views, self.fields, strict=True):
            row_keys = [
                records.entity_key(values)
                for values in zip(*(columns[e] for e in view.entities), strict=True)
            ]
            slot: dict[str, int] = {}
            inverses.append([slot.setdefault(k, len(slot)) for k in row_keys])
            counts.append(len(slot))
            for key in slot:
                pipe.hmget(hash_key(view, key), fields)
        raw = pipe.execute()
        now_s = moment_seconds(now)
        width = len(self.names)
        values = np.empty((num_rows, width), dtype=np.float32)
        missing = np.empty((num_rows, width), dtype=bool)
        stale = np.empty((num_rows, width), dtype=bool)
        offset = 0
        for i, count in enumerate(counts):
            replies = raw[offset : offset + count]
            offset += count
            n = len(self.fields[i]) - 1
            flat = [v for reply in replies for v in reply[1:]]
            if all(flat):
                found = np.frombuffer(b"".join(flat), dtype="<f4").reshape(count, n)
            else:
                found = np.array(
                    [np.frombuffer(v, "<f4")[0] if v else np.nan for v in flat],
                    dtype=np.float32,
                ).reshape(count, n)
            stamps = np.array(
                [struct.unpack("<d", r[0])[0] if r[0] else -np.inf for r in replies]
            )
            expired = ((now_s - stamps) > self.ttl_seconds[i])[:, None]
            empty = np.isnan(found)
            absent = empty | expired
            served = np.where(absent, self.defaults[i], found)
            rows = np.asarray(inverses[i], dtype=np.intp)
            cols = self.columns[i]
            values[:, cols] = served[rows]
            missing[:, cols] = absent[rows]
            stale[:, cols] = (expired & ~empty)[rows]
        return OnlineFeatures(values, missing, stale, list(self.names))


def read_hash_pipelined(
    client: redis.Redis,
    registry: FeatureRegistry,
    entity_rows: EntityRows,
    refs: Sequence[str | FeatureRef],
    *,
    now: float | datetime | pd.Timestamp | None = None,
) -> OnlineFeatures:
    """:class:`HashPipelineReader` for one request (the plan is built each call)."""
    return HashPipelineReader(client, registry, refs).read(entity_rows, now=now)
