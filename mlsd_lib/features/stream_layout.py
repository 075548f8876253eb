"""Where the stream processor's keys live: one Redis, or the shards of a cluster.

Introduced in ``notebooks/scaling_out.ipynb``. The windowed-count fold
(:class:`~mlsd_lib.features.windowed_fold.WindowedCountFold`) applies an event
with one Lua script that checks the event's dedup marker, updates each entity's
window state and rewrites its live record. On one Redis any keys may share a
script; a Redis Cluster runs a script only when every key it names hashes to
one slot (otherwise ``CROSSSLOT``). So the names of those keys, and how an
event's apply is split into scripts, are one decision, made by one small
object handed to the fold, instead of ``if cluster`` scattered over the fold
and the processor:

* :class:`SingleNodeLayout` (the default): the keys the processor always wrote,
  byte for byte (:mod:`~mlsd_lib.features.records`,
  :mod:`~mlsd_lib.features.stream_keys`); ONE script per event covers every
  aggregation (for the ads example, the user's and the ad's counts), with one
  marker ``fs:seen:<stream>:<event id>``.
* :class:`ClusterLayout`: every key carries the hash tag of the entity's shard
  in the cluster online store (:mod:`~mlsd_lib.features.cluster_online`)::

      fs:{user_stream@v1:s07}:seen:ad_events:<event id>  -> dedup marker
      fs:{user_stream@v1:s07}:win:42                     -> window state
      fs:{user_stream@v1:s07}:glive:42                   -> live record
      fs:{user_stream@v1:s07}:current                    -> 'live'

  so the live record sits exactly where
  :class:`~mlsd_lib.features.cluster_online.ClusterOnlineStore` reads it, and an
  event is applied by one script *per aggregation*, each in its entity's slot,
  each with a marker of its own. What that costs: atomicity per entity rather
  than per event (a part that keeps failing leaves the other parts applied,
  and the message is dead-lettered with that reason), and one marker per
  aggregation (for the ads example two, ~200 bytes per event). The dead-letter
  stream is ``{<stream>}:dead``, in the stream's own slot, so moving a message
  there and acknowledging it stay one ``MULTI``.

``shards_per_view`` must equal the reading store's (16 by default, both).

Measured (``benchmarks/stream_cluster.py``, one in-process processor, 11,016 ad
events, 2 cores shared by the client and the 6 nodes): 8,137 events/s on one
Redis, 4,334 on the 3-master cluster (median of 3). The cluster does twice the
scripts, and the client, not Redis, is the bottleneck: on a cluster throughput
grows with consumers in the group, while one stream stays on one master.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from mlsd_lib.cluster_routing import slot_of
from mlsd_lib.features.cluster_online import (
    DEFAULT_SHARDS_PER_VIEW,
    shard_current_key,
    shard_of,
    shard_record_key,
    shard_tag,
)
from mlsd_lib.features.records import LIVE_GENERATION, current_key, record_key
from mlsd_lib.features.stream_keys import dead_letter_stream, dedup_key, state_key
from mlsd_lib.features.views import FeatureStoreError, FeatureView
from mlsd_lib.features.windows import StreamAggregation

__all__ = [
    "SINGLE_NODE",
    "ClusterLayout",
    "SingleNodeLayout",
    "StreamKeyLayout",
]


@runtime_checkable
class StreamKeyLayout(Protocol):
    """The names of a windowed fold's keys, and how an event's apply is split.

    ``clustered`` says whether every script call it produces stays in one slot
    (a processor on a Redis Cluster refuses a layout that does not).
    """

    clustered: ClassVar[bool]

    def apply_groups(
        self, aggregations: tuple[StreamAggregation, ...]
    ) -> list[tuple[StreamAggregation, ...]]:
        """The aggregations each script call of one event covers."""
        ...

    def dedup_key(
        self, stream: str, event_id: str, aggregation: StreamAggregation, entity: str
    ) -> str:
        """The marker of the call whose first aggregation is ``aggregation``."""
        ...

    def state_key(self, aggregation: StreamAggregation, entity: str) -> str: ...

    def record_key(self, view: FeatureView, entity: str) -> str:
        """Where the entity's live record goes (what the store reads)."""
        ...

    def current_key(self, view: FeatureView, entity: str) -> str:
        """The generation pointer that must say ``live`` for the record to be read."""
        ...

    def dead_letter_stream(self, stream: str) -> str: ...


@dataclass(frozen=True)
class SingleNodeLayout:
    """One Redis: the original keys, one script per event."""

    clustered: ClassVar[bool] = False

    def apply_groups(
        self, aggregations: tuple[StreamAggregation, ...]
    ) -> list[tuple[StreamAggregation, ...]]:
        return [aggregations]

    def dedup_key(
        self, stream: str, event_id: str, aggregation: StreamAggregation, entity: str
    ) -> str:
        return dedup_key(stream, event_id)

    def state_key(self, aggregation: StreamAggregation, entity: str) -> str:
        return state_key(aggregation, entity)

    def record_key(self, view: FeatureView, entity: str) -> str:
        return record_key(view, LIVE_GENERATION, entity)

    def current_key(self, view: FeatureView, entity: str) -> str:
        return current_key(view)

    def dead_letter_stream(self, stream: str) -> str:
        return dead_letter_stream(stream)


#: The default layout of every fold.
SINGLE_NODE = SingleNodeLayout()


@dataclass(frozen=True)
class ClusterLayout:
    """A Redis Cluster: keys in the entity's shard of the cluster online store,
    one script per aggregation (the module docstring says what that costs)."""

    shards_per_view: int = DEFAULT_SHARDS_PER_VIEW
    clustered: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.shards_per_view < 1:
            raise FeatureStoreError(
                f"shards_per_view is {self.shards_per_view}; it must be at least 1 "
                "and equal the ClusterOnlineStore's (16 by default)."
            )

    def _tag(self, view: FeatureView, entity: str) -> str:
        return shard_tag(view, shard_of(entity, self.shards_per_view))

    def apply_groups(
        self, aggregations: tuple[StreamAggregation, ...]
    ) -> list[tuple[StreamAggregation, ...]]:
        return [(aggregation,) for aggregation in aggregations]

    def dedup_key(
        self, stream: str, event_id: str, aggregation: StreamAggregation, entity: str
    ) -> str:
        return f"fs:{self._tag(aggregation.view, entity)}:seen:{stream}:{event_id}"

    def state_key(self, aggregation: StreamAggregation, entity: str) -> str:
        return f"fs:{self._tag(aggregation.view, entity)}:win:{entity}"

    def record_key(self, view: FeatureView, entity: str) -> str:
        shard = shard_of(entity, self.shards_per_view)
        return shard_record_key(view, shard, LIVE_GENERATION, entity)

    def current_key(self, view: FeatureView, entity: str) -> str:
        return shard_current_key(view, shard_of(entity, self.shards_per_view))

    def dead_letter_stream(self, stream: str) -> str:
        dead = f"{{{stream}}}:dead"
        if slot_of(dead) != slot_of(stream):
            raise FeatureStoreError(
                f"stream {stream!r} has braces that make {dead!r} hash to another "
                "slot, so a dead letter could not be moved and acknowledged in one "
                "MULTI on a Redis Cluster; name the stream without '{' or '}'."
            )
        return dead
