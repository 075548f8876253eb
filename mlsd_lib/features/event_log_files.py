"""An event log on disk: parquet files partitioned by day and hour.

Introduced in ``casestudies/recommender/02_data_and_features.ipynb`` (step 3,
"the event log on disk"); the visual search's log
(``casestudies/visual_search/index.md``) is written by the same code. A case
study decides its columns and their arrow types (its schema); this module
decides how they are laid out and read:

* **Hive-style folders**, one per partition (``day=3/hour=21/``), so a reader
  that needs yesterday opens yesterday's folders only (:func:`read_partitioned`
  prunes by ``days``).
* **Atomic files**: each file is written under a temporary name and renamed
  into place, so a crash never leaves half a file a reader would pick up.
* **Append by part**: each call adds a ``part-NNNNN.parquet`` to each
  partition it touches, so days may be written one at a time (a day's last
  events can fall after midnight, in the next day's first hour). A row
  written twice is stored twice; readers drop repeated event ids, which makes
  the log idempotent as the stream processor's dedup marker makes the stream.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from mlsd_lib.features.views import FeatureStoreError

__all__ = [
    "PARTITION_COLUMNS",
    "EventLogError",
    "EventLogFiles",
    "checked_types",
    "day_and_hour",
    "read_partitioned",
    "send_in_chunks",
    "type_condition",
    "write_partitioned",
    "write_typed",
]

#: The columns a log may be partitioned by, and their dtypes when read back.
PARTITION_COLUMNS = {"day": np.int32, "hour": np.int8}


class EventLogError(FeatureStoreError):
    """An event log that cannot be built, written or read as asked; says why."""


@dataclass(frozen=True)
class EventLogFiles:
    """What a write produced: the folder, its files and their bytes."""

    root: Path
    files: tuple[Path, ...]
    rows: int

    @property
    def bytes(self) -> int:
        """Bytes on disk, every file together."""
        return sum(p.stat().st_size for p in self.files)


def write_partitioned(
    events: pd.DataFrame,
    root: str | Path,
    schema: pa.Schema,
    *,
    partition_by: Sequence[str] = ("day", "hour"),
) -> EventLogFiles:
    """Write ``events``' ``schema`` columns as parquet, one folder per partition.

    ``partition_by`` are integer columns of ``events`` among
    :data:`PARTITION_COLUMNS` (``()``: one folder); they name the folders and
    are not stored in the files. zstd-compressed, one part file per partition
    and call, renamed into place when complete.
    """
    root = Path(root)
    partition_by = tuple(partition_by)
    unknown = [c for c in partition_by if c not in PARTITION_COLUMNS]
    if unknown:
        raise EventLogError(
            f"partition_by={list(partition_by)}: only 'day' and 'hour' partition "
            "the event log."
        )
    stored = [name for name in schema.names if name not in PARTITION_COLUMNS]
    absent = [c for c in (*stored, *partition_by) if c not in events.columns]
    if absent:
        raise EventLogError(
            f"the events lack columns {absent}; build them with the case study's "
            "event-log function."
        )
    schema = pa.schema([schema.field(name) for name in stored])
    groups = (
        events.groupby(list(partition_by), sort=True, observed=True)
        if partition_by
        else [((), events)]
    )
    parts: list[tuple[Path, pd.DataFrame]] = []
    for key, part in groups:
        values = key if isinstance(key, tuple) else (key,)
        folder = root.joinpath(
            *(f"{n}={int(v)}" for n, v in zip(partition_by, values, strict=True))
        )
        number = len(list(folder.glob("part-*.parquet"))) if folder.exists() else 0
        parts.append((folder / f"part-{number:05d}.parquet", part))
    for final, part in parts:
        final.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(part[stored], schema=schema, preserve_index=False)
        handle, temporary = tempfile.mkstemp(dir=final.parent, suffix=".tmp")
        os.close(handle)
        try:
            pq.write_table(table, temporary, compression="zstd")
            os.replace(temporary, final)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
    return EventLogFiles(
        root=root, files=tuple(final for final, _ in parts), rows=len(events)
    )


def read_partitioned(
    root: str | Path,
    *,
    days: Sequence[int] | None = None,
    condition: ds.Expression | None = None,
) -> pd.DataFrame:
    """Read a log written by :func:`write_partitioned`, unordered.

    ``days`` prunes partitions (only those folders are opened); ``condition``
    (an arrow expression, e.g. ``ds.field("type").isin([...])``) filters rows
    as they are read. Dictionary columns come back as text, partition columns
    with :data:`PARTITION_COLUMNS`' dtypes. Files come back in folder-name
    order (``hour=10`` before ``hour=2``): the caller restores its log's order
    and drops repeated event ids.
    """
    root = Path(root)
    if not any(root.rglob("*.parquet")):
        raise EventLogError(
            f"{root} holds no event log; write one with write_partitioned() (or "
            "the case study's write_event_log()) first."
        )
    dataset = ds.dataset(root, format="parquet", partitioning="hive")
    if days is not None:
        if "day" not in dataset.schema.names:
            raise EventLogError(
                f"the event log under {root} is not partitioned by day; read it "
                "whole and filter the rows instead."
            )
        by_day = ds.field("day").isin([int(d) for d in days])
        condition = by_day if condition is None else by_day & condition
    table = dataset.to_table(filter=condition)
    frame = table.to_pandas()
    for field in table.schema:
        if pa.types.is_dictionary(field.type) and field.name in frame.columns:
            frame[field.name] = frame[field.name].astype(str)
    for name, dtype in PARTITION_COLUMNS.items():
        if name in frame.columns:
            frame[name] = frame[name].astype(dtype)
    return frame


def day_and_hour(
    world_seconds: np.ndarray, day_seconds: float
) -> tuple[np.ndarray, np.ndarray]:
    """The ``day`` (int32) and ``hour`` (int8) partition columns of event times
    given in seconds since the world's day 0."""
    day = np.floor(world_seconds / day_seconds).astype(np.int32)
    hour = (np.floor(world_seconds / 3600.0) % 24).astype(np.int8)
    return day, hour


def write_typed(
    events: pd.DataFrame,
    root: str | Path,
    arrow_types: dict[str, pa.DataType],
    columns: Sequence[str],
    *,
    partition_by: Sequence[str] = ("day", "hour"),
) -> EventLogFiles:
    """:func:`write_partitioned` with the schema of those ``columns`` that have
    an arrow type in the case study's ``arrow_types`` (in ``columns``' order;
    the others, the partition columns among them, are not stored as columns)."""
    stored = [c for c in columns if c in arrow_types]
    schema = pa.schema([(name, arrow_types[name]) for name in stored])
    return write_partitioned(events, root, schema, partition_by=partition_by)


def checked_types(types: Sequence[str], known: Sequence[str]) -> list[str]:
    """``types`` as a list, or :class:`EventLogError` naming the unknown ones."""
    unknown = sorted(set(types) - set(known))
    if unknown:
        raise EventLogError(f"unknown event types {unknown}; known: {list(known)}.")
    return list(types)


def type_condition(
    types: Sequence[str] | None, known: Sequence[str]
) -> ds.Expression | None:
    """The :func:`read_partitioned` condition keeping rows of ``types`` (None:
    every row); unknown types are refused (:func:`checked_types`)."""
    if types is None:
        return None
    return ds.field("type").isin(checked_types(types, known))


def send_in_chunks(
    events: pd.DataFrame,
    send: Callable[[pd.DataFrame], object],
    chunk_size: int,
) -> int:
    """Call ``send`` on consecutive chunks of ``chunk_size`` rows of ``events``
    (replaying a log onto a stream in bounded memory); return how many rows."""
    if chunk_size < 1:
        raise EventLogError(f"chunk_size={chunk_size} must be at least 1.")
    for start in range(0, len(events), chunk_size):
        send(events.iloc[start : start + chunk_size])
    return len(events)
