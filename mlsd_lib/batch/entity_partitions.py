"""Rows hash-partitioned by entity, and the shuffle that moves them to the workers.

Introduced in ``notebooks/scaling_out.ipynb``. A point-in-time join and a
windowed count only ever look at one entity's rows together: user 7's label
rows need user 7's feature history and nobody else's. So a batch job that
puts every row of an entity in the same partition, in the spine *and* in the
event tables, can run the unchanged single-machine code on each partition
independently and concatenate: the pattern Spark and Dask call a hash
partition (or shuffle) join.

Two things make the partitions of two tables line up:

* **the same hash on both sides**: :func:`entity_partitions` hashes the key
  columns with pandas' fixed-key hash (the same value in every process and on
  every run, unlike Python's ``hash`` of a string), after normalizing the
  dtypes (every integer type to ``int64``, anything else to text), so an
  ``int32`` ``user_id`` in one table and an ``int64`` one in another land in
  the same partition;
* **the same number of partitions**, passed to both.

Within a partition, rows keep their original relative order
(:func:`split_by_entity` selects with a mask and never sorts), which is what
keeps "the row written last wins" true after the shuffle.

:func:`shuffle_by_entity` runs this as a map-reduce on the cluster, the way
it runs on a real one: the table is cut into row blocks that are sent to the
workers, each worker splits its blocks by entity (map), and partition ``j``
is assembled from the ``j``-th piece of every block (reduce), in block order.
The client only ever holds the blocks it sends, never a partition.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import numpy as np
import pandas as pd
from distributed import Client, Future

from mlsd_lib.errors import MlsdError

__all__ = [
    "PartitionError",
    "concat_pieces",
    "entity_partitions",
    "shuffle_by_entity",
    "split_by_entity",
]


class PartitionError(MlsdError, ValueError):
    """Rows cannot be partitioned as asked; the message says what to change."""


def _check(frame: pd.DataFrame, columns: Sequence[str], num_partitions: int) -> None:
    if not isinstance(num_partitions, int) or num_partitions < 1:
        raise PartitionError(
            f"num_partitions must be an integer >= 1, got {num_partitions!r}."
        )
    if not columns:
        raise PartitionError("name at least one entity column to partition by.")
    absent = [c for c in columns if c not in frame.columns]
    if absent:
        raise PartitionError(
            f"cannot partition by {list(columns)}: the table lacks {absent} "
            f"(it has {list(frame.columns)})."
        )


def _normalized_keys(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    keys = {}
    for column in columns:
        values = frame[column]
        if pd.api.types.is_integer_dtype(values):
            keys[column] = values.astype(np.int64)
        else:
            keys[column] = values.astype(str)
    return pd.DataFrame(keys)


def entity_partitions(
    frame: pd.DataFrame, columns: Sequence[str], num_partitions: int
) -> np.ndarray:
    """The partition (``0 .. num_partitions - 1``) of every row, by its entity key.

    Equal keys get equal partitions in every table, process and run.
    """
    _check(frame, columns, num_partitions)
    hashes = pd.util.hash_pandas_object(
        _normalized_keys(frame, columns), index=False
    ).to_numpy()
    return (hashes % np.uint64(num_partitions)).astype(np.int64)


def split_by_entity(
    frame: pd.DataFrame, columns: Sequence[str], num_partitions: int
) -> list[pd.DataFrame]:
    """``frame`` cut into ``num_partitions`` pieces by entity, row order kept."""
    partition = entity_partitions(frame, columns, num_partitions)
    order = np.argsort(partition, kind="stable")
    bounds = np.searchsorted(partition[order], np.arange(num_partitions + 1))
    return [
        frame.iloc[order[bounds[j] : bounds[j + 1]]].reset_index(drop=True)
        for j in range(num_partitions)
    ]


def concat_pieces(pieces: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """One partition from its pieces, in the order given (block order)."""
    return pd.concat(list(pieces), ignore_index=True)


def _row_blocks(frame: pd.DataFrame, num_blocks: int) -> list[pd.DataFrame]:
    bounds = np.linspace(0, len(frame), num_blocks + 1).astype(int)
    return [
        frame.iloc[bounds[i] : bounds[i + 1]].reset_index(drop=True)
        for i in range(num_blocks)
    ]


def shuffle_by_entity(
    client: Client,
    frame: pd.DataFrame,
    columns: Sequence[str],
    num_partitions: int,
    *,
    blocks: int | None = None,
) -> list[Future]:
    """``frame`` partitioned by entity on the cluster: one future per partition.

    Map: ``blocks`` row blocks (default one per worker: the map stage costs
    ``blocks x num_partitions`` small tasks, so more blocks than workers only
    adds scheduling) are scattered to the workers and each is split there
    (:func:`split_by_entity`). Reduce: partition ``j`` is the
    ``j``-th piece of every block, concatenated in block order, so it holds its
    entities' rows in their original order. Partition ``j`` of two tables
    shuffled with the same ``columns`` values and ``num_partitions`` holds the
    same entities.
    """
    _check(frame, columns, num_partitions)
    num_blocks = len(client.nthreads()) if blocks is None else blocks
    if not isinstance(num_blocks, int) or num_blocks < 1:
        raise PartitionError(f"blocks must be an integer >= 1, got {num_blocks!r}.")
    scattered = client.scatter(_row_blocks(frame, num_blocks), hash=False)
    split = client.map(
        split_by_entity,
        scattered,
        columns=list(columns),
        num_partitions=num_partitions,
        pure=False,
    )
    return [
        client.submit(
            concat_pieces,
            [client.submit(operator.getitem, s, j, pure=False) for s in split],
            pure=False,
        )
        for j in range(num_partitions)
    ]
