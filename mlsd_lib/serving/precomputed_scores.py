"""Precomputed scores in Redis: one packed vector per entity, read with one GET.

Introduced in ``casestudies/ad_click/05_serving_and_ab_test.ipynb`` (batch against
online inference). The alternative to scoring at request time is a batch job that
scores every (entity, item) pair ahead of time, say each user against every ad
each night, and a serving path that only looks the scores up. The lookup is as
cheap as a read can be; the price is paid elsewhere: the job scores every pair
whether or not it is requested, the store holds every pair, and each score is as
old as the job's run (its features, and the request context it had to assume).

**Layout.** One Redis string per entity, ``<prefix>:<entity id>``, holding the
scores of items ``0 .. num_items - 1`` packed as little-endian ``float16`` (2
bytes a pair; ``float32`` doubles it for 3 more significant digits than a click
rate needs). A request for ``k`` candidates is then one ``GET`` and one numpy
index, whatever ``k``; a Redis hash per entity with a field per item would need
``HMGET`` of ``k`` fields and several times the memory (a field name and an
entry per pair). Items must be dense integer ids (a catalogue index); an entity
the job did not score reads as :class:`ScoresNotPrecomputed`, which the caller
answers by scoring online or with a default.

Writes go through a pipeline in chunks; :meth:`PrecomputedScoreStore.delete`
removes every key under the prefix (SCAN, never KEYS), so a notebook leaves
Redis as it found it.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import redis
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "PrecomputedScoreError",
    "PrecomputedScoreStore",
    "ScoresNotPrecomputed",
]


class PrecomputedScoreError(MlsdError, ValueError):
    """Scores or ids that do not fit the store's layout; says what to fix."""


class ScoresNotPrecomputed(MlsdError, KeyError):
    """The batch job wrote no scores for this entity: score it online instead."""


class PrecomputedScoreStore:
    """Packed per-entity score vectors under ``prefix`` in Redis."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str,
        num_items: int,
        dtype: str = "float16",
    ) -> None:
        if not prefix or "*" in prefix or prefix.endswith(":"):
            raise PrecomputedScoreError(
                f"prefix {prefix!r} must be a non-empty key prefix without '*' or a "
                "trailing ':' (the store adds ':<id>'), e.g. 'ads_batch_scores'."
            )
        if num_items < 1:
            raise PrecomputedScoreError(f"num_items must be >= 1, got {num_items}.")
        if dtype not in ("float16", "float32"):
            raise PrecomputedScoreError(
                f"dtype must be 'float16' or 'float32', got {dtype!r}."
            )
        self.client = client
        self.prefix = prefix
        self.num_items = int(num_items)
        self.dtype = np.dtype(dtype).newbyteorder("<")

    def key(self, entity_id: int) -> str:
        """The Redis key of one entity's scores."""
        return f"{self.prefix}:{int(entity_id)}"

    @property
    def bytes_per_entity(self) -> int:
        """Payload bytes of one entity's vector (Redis adds its own overhead)."""
        return self.num_items * self.dtype.itemsize

    def write(
        self, entity_ids: ArrayLike, scores: ArrayLike, *, chunk_size: int = 1_000
    ) -> int:
        """Store ``scores[i]`` (``num_items`` values) for ``entity_ids[i]``; returns
        the payload bytes written."""
        ids = np.asarray(entity_ids)
        values = np.asarray(scores)
        if values.ndim != 2 or values.shape != (ids.size, self.num_items):
            raise PrecomputedScoreError(
                f"scores must be [entities, num_items] = [{ids.size}, "
                f"{self.num_items}], got shape {values.shape}."
            )
        packed = values.astype(self.dtype)
        for start in range(0, ids.size, chunk_size):
            pipe = self.client.pipeline(transaction=False)
            for entity, row in zip(
                ids[start : start + chunk_size],
                packed[start : start + chunk_size],
                strict=True,
            ):
                pipe.set(self.key(entity), row.tobytes())
            pipe.execute()
        return int(packed.nbytes)

    def read(self, entity_id: int, items: ArrayLike) -> np.ndarray:
        """The precomputed scores of ``items`` for one entity: one round trip."""
        raw = self.client.get(self.key(entity_id))
        if raw is None:
            raise ScoresNotPrecomputed(
                f"no precomputed scores for entity {entity_id} under "
                f"{self.prefix!r}: the batch job did not cover it; score it online."
            )
        index = np.asarray(items, dtype=np.int64)
        if index.size and (index.min() < 0 or index.max() >= self.num_items):
            raise PrecomputedScoreError(
                f"item ids must be in [0, {self.num_items}), got {index.min()} to "
                f"{index.max()}: the batch job scored a catalogue of "
                f"{self.num_items} items."
            )
        return np.frombuffer(raw, dtype=self.dtype)[index].astype(np.float64)

    def memory_bytes(self, entity_ids: Iterable[int]) -> int:
        """Bytes Redis reports for these entities' keys (``MEMORY USAGE``)."""
        return int(
            sum(
                self.client.memory_usage(self.key(e), samples=0) or 0
                for e in entity_ids
            )
        )

    def delete(self) -> int:
        """Delete every key under the prefix; returns how many."""
        deleted = 0
        batch: list[bytes] = []
        for key in self.client.scan_iter(match=f"{self.prefix}:*", count=1_000):
            batch.append(key)
            if len(batch) >= 1_000:
                deleted += int(self.client.delete(*batch))
                batch = []
        if batch:
            deleted += int(self.client.delete(*batch))
        return deleted
