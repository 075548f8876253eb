"""Precomputed image regions: embeddings of known objects, read instead of computed.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (clarifying question "Who
chooses the region?": about half of all query regions are taps on objects detected
offline when the image was ingested; requirement "taps on pre-detected objects skip the
embedder"). When an image enters the system, a batch job detects its objects and embeds
each region with the release's embedder; a tap on one of them sends only its
``region_id``, and the gateway reads the vector (and the detector's category label) from
Redis in one ``GET`` instead of decoding, cropping and calling the model server. Half
the embedder load, and the slowest stage, disappear for those queries.

The table is **keyed by the embedder version** (``visual:region:<embedder
version>:<region id>``): a vector from embedder v1 must never query the index
of v2, so a new release reads its own table, which the release job backfills
before the swap (a region missing from it is refused as unknown, never
answered with the old vector). One value per region, packed: the category
(int64) then the vector (float32), ``8 + 4d`` bytes: 520 B at d = 128, so a
billion regions are ~0.5 TB, which is why production keeps float16 or PQ
codes here; the book keeps float32 so that a region's answer is bit-identical
to the photo's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import redis
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.online import delete_matching

__all__ = [
    "PrecomputedRegion",
    "RegionTableError",
    "clear_regions",
    "read_region",
    "region_key",
    "write_regions",
]

PREFIX = "visual:region"


class RegionTableError(MlsdError, ValueError):
    """Regions that cannot be written or a value that cannot be read; says why."""


@dataclass(frozen=True)
class PrecomputedRegion:
    """A known region's vector and the category its detector labelled."""

    region_id: int
    vector: np.ndarray
    category_id: int


def region_key(embedder_version: str, region_id: int) -> str:
    """The Redis key of ``region_id``'s vector made by ``embedder_version``."""
    return f"{PREFIX}:{embedder_version}:{int(region_id)}"


def write_regions(
    client: redis.Redis,
    embedder_version: str,
    region_ids: ArrayLike,
    vectors: np.ndarray,
    category_ids: ArrayLike,
    *,
    chunk_size: int = 2_000,
) -> int:
    """Store each region's packed value (pipelined, ``chunk_size`` per round
    trip); returns how many were written."""
    ids = np.asarray(region_ids, dtype=np.int64)
    cats = np.asarray(category_ids, dtype=np.int64)
    values = np.ascontiguousarray(vectors, dtype=np.float32)
    if values.ndim != 2 or ids.shape != (len(values),) or cats.shape != ids.shape:
        raise RegionTableError(
            f"pass one id and one category per vector: ids {ids.shape}, categories "
            f"{cats.shape}, vectors {values.shape}."
        )
    if ids.size and (ids.min() < 0 or np.unique(ids).size != ids.size):
        raise RegionTableError("region_ids must be distinct and >= 0.")
    for start in range(0, ids.size, chunk_size):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(ids.size, start + chunk_size)):
            pipe.set(
                region_key(embedder_version, ids[i]),
                cats[i : i + 1].tobytes() + values[i].tobytes(),
            )
        pipe.execute()
    return int(ids.size)


def read_region(
    client: redis.Redis, embedder_version: str, region_id: int, dim: int
) -> PrecomputedRegion | None:
    """``region_id``'s vector and category for ``embedder_version`` (one GET),
    or None when the table has no such region."""
    value = client.get(region_key(embedder_version, region_id))
    if value is None:
        return None
    if len(value) != 8 + 4 * dim:
        raise RegionTableError(
            f"region {region_id} holds {len(value)} bytes, expected {8 + 4 * dim} "
            f"(a category and {dim} float32): rewrite the table with write_regions."
        )
    category = int(np.frombuffer(value[:8], dtype=np.int64)[0])
    vector = np.frombuffer(value[8:], dtype=np.float32).copy()
    return PrecomputedRegion(int(region_id), vector, category)


def clear_regions(client: redis.Redis, embedder_version: str | None = None) -> int:
    """Delete the table of ``embedder_version`` (every table: None)."""
    version = "*" if embedder_version is None else embedder_version
    return delete_matching(client, f"{PREFIX}:{version}:*")
