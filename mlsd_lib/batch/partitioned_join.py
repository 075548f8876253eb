"""The point-in-time join on a Dask cluster, partitioned by entity.

Introduced in ``notebooks/scaling_out.ipynb``. Training data for weeks of
traffic is a spine of hundreds of millions of label rows joined to event tables
of billions; one pandas process holds neither. The join itself needs no new
algorithm: a label row only ever meets its own entity's feature history, so
:func:`point_in_time_join_by_entity` shuffles the spine and each event table by
entity (:func:`~mlsd_lib.batch.entity_partitions.shuffle_by_entity`) and runs
the *unchanged* pandas :func:`~mlsd_lib.features.offline.point_in_time_join` on
every partition, on the workers. The result equals the single-process join row
for row (a test proves it), because every rule of the join (the TTL, "the row
written last wins" among equal timestamps, the defaults) is applied by the
same function to the same rows in the same order.

Views keyed by different entities (``user_stats`` by ``user_id``, ``ad_stats``
by ``ad_id``) cannot share one partitioning, so the references are grouped by
their view's entity columns and each group is one shuffle of the spine and of
its views' tables; the spine's row number carries every group's values back to
the spine's order. Only the columns a group needs travel (the timestamp, the
entity keys, the row number), never the whole label table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from distributed import Client

from mlsd_lib.batch.dask_cluster import worker_count
from mlsd_lib.batch.entity_partitions import shuffle_by_entity
from mlsd_lib.errors import MlsdError
from mlsd_lib.features.offline import (
    PointInTimeResult,
    check_join_inputs,
    point_in_time_join,
)
from mlsd_lib.features.views import (
    TIMESTAMP_COLUMN,
    FeatureRef,
    FeatureRegistry,
)

__all__ = ["BatchJobError", "default_partitions", "point_in_time_join_by_entity"]

#: The spine's row number, carried through the shuffle to restore its order.
SPINE_ROW = "__spine_row"


class BatchJobError(MlsdError, ValueError):
    """A batch job was asked for something it cannot do; the message says why."""


def default_partitions(client: Client, partitions: int | None) -> int:
    """``partitions`` if given (checked), else two per worker: enough that a
    slow partition does not leave a worker idle, few enough that per-task
    overhead stays small."""
    if partitions is None:
        return 2 * worker_count(client)
    if not isinstance(partitions, int) or partitions < 1:
        raise BatchJobError(
            f"partitions must be an integer >= 1 (or None for two per worker), "
            f"got {partitions!r}."
        )
    return partitions


def _join_partition(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    refs: list[str],
    registry: FeatureRegistry,
    timestamp_column: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One partition on a worker: (spine rows, values, missing) of ``refs``."""
    rows = spine[SPINE_ROW].to_numpy(dtype=np.int64)
    if len(spine) == 0:
        empty = np.empty((0, len(refs)))
        return rows, empty.astype(np.float32), empty.astype(bool)
    result = point_in_time_join(
        spine.drop(columns=[SPINE_ROW]),
        refs,
        registry,
        tables,
        timestamp_column=timestamp_column,
    )
    return rows, result.matrix(), result.missing


def point_in_time_join_by_entity(
    client: Client,
    labels: pd.DataFrame,
    refs: Sequence[str | FeatureRef],
    registry: FeatureRegistry,
    tables: Mapping[str, pd.DataFrame],
    *,
    partitions: int | None = None,
    timestamp_column: str = TIMESTAMP_COLUMN,
) -> PointInTimeResult:
    """:func:`~mlsd_lib.features.offline.point_in_time_join`, run on the cluster.

    Same arguments and the same result (label rows in their original order,
    one float32 column per reference, the missing mask), computed on
    ``partitions`` entity partitions (default: two per worker) per entity
    group.
    """
    num_partitions = default_partitions(client, partitions)
    resolved = registry.resolve(refs)
    names = [str(FeatureRef.parse(r) if isinstance(r, str) else r) for r in refs]
    check_join_inputs(labels, [v for v, _ in resolved], tables, timestamp_column)
    groups: dict[tuple[str, ...], list[int]] = {}
    for j, (view, _) in enumerate(resolved):
        groups.setdefault(tuple(view.entities), []).append(j)

    spine = labels.reset_index(drop=True)
    spine = spine.assign(**{SPINE_ROW: np.arange(len(spine), dtype=np.int64)})
    pending = []
    for entities, positions in groups.items():
        group_refs = [names[j] for j in positions]
        views = sorted({resolved[j][0].name for j in positions})
        spine_parts = shuffle_by_entity(
            client,
            spine[[timestamp_column, *entities, SPINE_ROW]],
            entities,
            num_partitions,
        )
        table_parts = {
            name: shuffle_by_entity(client, tables[name], entities, num_partitions)
            for name in views
        }
        for j in range(num_partitions):
            future = client.submit(
                _join_partition,
                spine_parts[j],
                {name: parts[j] for name, parts in table_parts.items()},
                group_refs,
                registry,
                timestamp_column,
                pure=False,
            )
            pending.append((positions, future))

    values = np.empty((len(spine), len(names)), dtype=np.float32)
    missing = np.zeros((len(spine), len(names)), dtype=bool)
    results = client.gather([future for _, future in pending])
    for (positions, _), (rows, part_values, part_missing) in zip(
        pending, results, strict=True
    ):
        values[np.ix_(rows, positions)] = part_values
        missing[np.ix_(rows, positions)] = part_missing
    frame = labels.reset_index(drop=True).copy()
    for j, name in enumerate(names):
        frame[name] = values[:, j]
    return PointInTimeResult(frame=frame, missing=missing, feature_names=names)
