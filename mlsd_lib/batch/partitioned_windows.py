"""The batch feature view of windowed counts on a Dask cluster, by entity.

Introduced in ``notebooks/scaling_out.ipynb``. Replaying an event log into the
rows the stream processor would have served
(:func:`~mlsd_lib.features.windows.windowed_counts_offline`) walks the log one
event at a time, in stream order: the exact reference, and a Python loop.
Every piece of its state is per entity (an entity's newest time and its
buckets), so the log partitioned by entity, each partition kept in stream
order, replays independently: :func:`windowed_counts_by_entity` shuffles the
log by the aggregation's entity field and runs the unchanged reference on every
partition, on the workers, then puts the rows back in stream order. With two
workers the loop runs on two cores.

One assumption, stated because it is the only state that is not per entity:
the reference skips a repeated ``event_id`` anywhere in the log. Partitioned,
a repeat is skipped when it lands in the same partition as its first copy,
which it does when it repeats the event (a redelivery carries the same entity:
the case the processor's dedup marker exists for). Two different events that
share an id across entities are a broken log, and would be counted once by the
reference and once per partition here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from distributed import Client

from mlsd_lib.batch.entity_partitions import shuffle_by_entity
from mlsd_lib.batch.partitioned_join import BatchJobError, default_partitions
from mlsd_lib.features.windows import (
    EVENT_ID_COLUMN,
    StreamAggregation,
    windowed_counts_offline,
)

__all__ = ["windowed_counts_by_entity"]

#: The log's row number, carried through the shuffle to restore stream order.
EVENT_ROW = "__event_row"


def _count_partition(
    events: pd.DataFrame, aggregation: StreamAggregation
) -> tuple[np.ndarray, pd.DataFrame]:
    """One partition on a worker: (log rows of the distinct events, their rows)."""
    if len(events) == 0:
        return np.empty(0, np.int64), pd.DataFrame()
    counted = windowed_counts_offline(events.drop(columns=[EVENT_ROW]), aggregation)
    first = ~events[EVENT_ID_COLUMN].astype(str).duplicated().to_numpy()
    return events[EVENT_ROW].to_numpy(dtype=np.int64)[first], counted


def windowed_counts_by_entity(
    client: Client,
    events: pd.DataFrame,
    aggregation: StreamAggregation,
    *,
    partitions: int | None = None,
) -> pd.DataFrame:
    """:func:`~mlsd_lib.features.windows.windowed_counts_offline`, on the cluster.

    The same columns and rows (one per distinct event, in stream order), from
    ``partitions`` entity partitions (default: two per worker).
    """
    num_partitions = default_partitions(client, partitions)
    entity = aggregation.entity_field
    if entity not in events.columns:
        raise BatchJobError(
            f"the event log lacks the entity column {entity!r} that view "
            f"{aggregation.view.name!r} is counted by (it has "
            f"{list(events.columns)})."
        )
    log = events.reset_index(drop=True)
    log = log.assign(**{EVENT_ROW: np.arange(len(log), dtype=np.int64)})
    parts = shuffle_by_entity(client, log, [entity], num_partitions)
    futures = [
        client.submit(_count_partition, part, aggregation, pure=False) for part in parts
    ]
    results = [r for r in client.gather(futures) if len(r[0])]
    if not results:
        return windowed_counts_offline(events.iloc[:0], aggregation)
    rows = np.concatenate([r for r, _ in results])
    frame = pd.concat([f for _, f in results], ignore_index=True)
    return frame.iloc[np.argsort(rows, kind="stable")].reset_index(drop=True)
