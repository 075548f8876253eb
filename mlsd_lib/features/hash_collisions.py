"""How many ids share a bucket when a field is hashed into a fixed table.

Introduced in ``casestudies/ad_click/03_models.ipynb``. The hashing trick
(:func:`~mlsd_lib.datasets.ctr.hash_ids`) buys a fixed-size table and no
vocabulary, and pays in collisions: two ids in one bucket share a weight, so
the model sees their average. How much that costs depends on two numbers this
module measures, not on the table size alone:

* the **share of distinct values that collide** (their bucket holds another
  value); with ``n`` values hashed uniformly into ``B`` buckets it is about
  ``1 - (1 - 1/B)^(n - 1)`` (:func:`expected_colliding_share`), so ``n / B``
  while that is small;
* the **share of rows (impressions) that collide**: a heavy id that shares
  its bucket with a rare one loses little, a rare id sharing with a heavy one
  loses its own signal. Traffic is skewed, so this share differs from the
  first.

Both are computed from the data (the actual hash, the actual traffic), which
is what a capacity decision needs; the formula is the check.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd_lib.datasets.ctr import hash_ids
from mlsd_lib.errors import MlsdError

#: Bytes of one float32 table entry.
FLOAT32_BYTES = 4


class BucketSweepError(MlsdError, ValueError):
    """A bucket count or table width that cannot be swept; the message says which."""


@dataclass(frozen=True)
class CollisionStats:
    """Collisions of one field hashed into ``num_buckets`` buckets."""

    num_buckets: int
    distinct_values: int
    buckets_used: int
    colliding_value_share: float
    """Share of distinct values whose bucket holds at least one other value."""
    colliding_row_share: float
    """Share of rows whose value shares its bucket with another value."""


def _check_buckets(num_buckets: int) -> None:
    if int(num_buckets) < 1:
        raise BucketSweepError(
            f"num_buckets must be >= 1, got {num_buckets}; pass a table size such "
            "as 2**17."
        )


def _colliding_values(
    values: np.ndarray, buckets: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per distinct value: does it collide; each row's value index; buckets used."""
    values = np.asarray(values)
    buckets = np.asarray(buckets, dtype=np.int64)
    if values.shape != buckets.shape or values.ndim != 1:
        raise BucketSweepError(
            f"values and buckets must be 1-D and the same length, got shapes "
            f"{values.shape} and {buckets.shape}."
        )
    if len(values) == 0:
        raise BucketSweepError("no rows to count collisions on; pass a non-empty log.")
    _, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    value_bucket = buckets[first]
    used, per_bucket = np.unique(value_bucket, return_counts=True)
    values_in_bucket = per_bucket[np.searchsorted(used, value_bucket)]
    return values_in_bucket > 1, inverse.ravel(), len(used)


def colliding_rows(values: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Per row: does its value share its bucket with another value of the data?"""
    colliding, inverse, _ = _colliding_values(values, buckets)
    return colliding[inverse]


def collision_stats(values: np.ndarray, buckets: np.ndarray) -> CollisionStats:
    """Collisions of ``values`` (one per row) given the bucket of each row.

    ``buckets`` is whatever hash put each row's value in its bucket (the same
    value always in the same bucket); ``num_buckets`` is read as
    ``max(buckets) + 1`` only for the record, the shares do not depend on it.
    """
    colliding, inverse, used = _colliding_values(values, buckets)
    return CollisionStats(
        num_buckets=int(np.max(buckets)) + 1,
        distinct_values=len(colliding),
        buckets_used=used,
        colliding_value_share=float(colliding.mean()),
        colliding_row_share=float(colliding[inverse].mean()),
    )


def hashed_collisions(
    values: np.ndarray, num_buckets: int, *, salt: int = 0
) -> CollisionStats:
    """:func:`collision_stats` of ``values`` hashed by ``hash_ids`` with ``salt``.

    Only the distinct values are hashed (with their row counts), so a sweep
    over many table sizes costs one ``np.unique`` of the rows, not one per size.
    """
    return distinct_collisions(
        *np.unique(values, return_counts=True), num_buckets, salt=salt
    )


def distinct_collisions(
    distinct: np.ndarray, rows: np.ndarray, num_buckets: int, *, salt: int = 0
) -> CollisionStats:
    """Collisions of ``distinct`` values, value ``i`` occurring in ``rows[i]`` rows."""
    _check_buckets(num_buckets)
    if len(distinct) == 0 or len(distinct) != len(rows):
        raise BucketSweepError(
            f"need one row count per distinct value and at least one value, got "
            f"{len(distinct)} values and {len(rows)} counts."
        )
    buckets = hash_ids(distinct, num_buckets, salt=salt)
    per_bucket = np.bincount(buckets, minlength=int(num_buckets))
    colliding = per_bucket[buckets] > 1
    rows = np.asarray(rows, dtype=np.float64)
    return CollisionStats(
        num_buckets=int(num_buckets),
        distinct_values=len(distinct),
        buckets_used=int(np.count_nonzero(per_bucket)),
        colliding_value_share=float(colliding.mean()),
        colliding_row_share=float(rows[colliding].sum() / rows.sum()),
    )


def expected_colliding_share(distinct_values: int, num_buckets: int) -> float:
    """``1 - (1 - 1/B)^(n - 1)``: the colliding share under a uniform hash."""
    _check_buckets(num_buckets)
    if distinct_values <= 1:
        return 0.0
    if num_buckets == 1:
        return 1.0
    return float(-np.expm1((distinct_values - 1) * np.log1p(-1.0 / num_buckets)))


def hashed_table_bytes(
    num_buckets: int,
    num_fields: int,
    width: int = 1,
    *,
    dtype_bytes: int = FLOAT32_BYTES,
) -> int:
    """Bytes of ``num_fields`` tables of ``num_buckets`` rows of ``width`` floats.

    ``width`` is 1 for a logistic regression's weights, ``d + 1`` for an
    FM-style model with a ``d``-dimensional embedding and a linear weight per
    row. Optimizer state (Adam keeps two more tables) is not included.
    """
    _check_buckets(num_buckets)
    if num_fields < 1 or width < 1 or dtype_bytes < 1:
        raise BucketSweepError(
            f"num_fields, width and dtype_bytes must be >= 1, got {num_fields}, "
            f"{width} and {dtype_bytes}."
        )
    return int(num_buckets) * int(num_fields) * int(width) * int(dtype_bytes)
