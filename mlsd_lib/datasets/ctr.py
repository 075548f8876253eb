"""The one tabular shape every click-through-rate model in the book consumes.

Introduced in ``casestudies/ad_click/02_data_and_features.ipynb``. A CTR example is a
row of *dense* numbers (counts, CTRs, hour-of-day encodings) and *categorical* ids
(user, ad, advertiser, device, ...), each id already hashed into its field's own bucket
range. The synthetic ads world and the Criteo loader both produce :class:`CTRData`, so
every model runs unchanged on either: that is the point of fixing the shape here rather
than in each model.

Hashing ids into a fixed number of buckets is the "hashing trick": the model's
embedding tables have a known size however many new users or ads appear, at the
price of occasional collisions (two ids sharing one row).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mlsd_lib.errors import MlsdError

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


class CTRDataError(MlsdError, ValueError):
    """The arrays do not form a valid CTR data set; the message says which and why."""


def hash_ids(values: np.ndarray, num_buckets: int, salt: int = 0) -> np.ndarray:
    """Hash integer ids into ``[0, num_buckets)`` with splitmix64, vectorized.

    Deterministic across processes and machines (unlike Python's ``hash``), and
    ``salt`` gives each field its own hash function, so the same raw id in two
    fields lands in unrelated buckets.
    """
    if num_buckets < 1:
        raise CTRDataError(f"num_buckets must be >= 1, got {num_buckets}.")
    x = np.asarray(values).astype(np.int64).view(np.uint64)
    with np.errstate(over="ignore"):
        z = x + np.uint64((0x9E3779B97F4A7C15 * (salt + 1)) & 0xFFFFFFFFFFFFFFFF)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(num_buckets)).astype(np.int64)


@dataclass(frozen=True)
class CTRData:
    """Labelled CTR examples: dense features, hashed categorical ids, 0/1 labels.

    ``cardinalities[j]`` is the bucket count of categorical field ``j``; every id
    in column ``j`` lies in ``[0, cardinalities[j])``. ``timestamps`` (seconds)
    allow a time-based split; ``true_prob`` is the world's true p(click) when the
    data comes from a simulator (``None`` for real logs), which is what lets the
    book compare a model with the best possible one.
    """

    dense: np.ndarray
    categorical: np.ndarray
    labels: np.ndarray
    dense_names: tuple[str, ...]
    categorical_names: tuple[str, ...]
    cardinalities: tuple[int, ...]
    timestamps: np.ndarray | None = None
    true_prob: np.ndarray | None = None
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.dense.ndim != 2 or self.dense.shape != (n, len(self.dense_names)):
            raise CTRDataError(
                f"dense has shape {self.dense.shape}; expected ({n}, "
                f"{len(self.dense_names)}) for {n} labels and dense_names "
                f"{list(self.dense_names)}."
            )
        if self.categorical.ndim != 2 or self.categorical.shape != (
            n,
            len(self.categorical_names),
        ):
            raise CTRDataError(
                f"categorical has shape {self.categorical.shape}; expected ({n}, "
                f"{len(self.categorical_names)})."
            )
        if len(self.cardinalities) != len(self.categorical_names):
            raise CTRDataError(
                f"{len(self.cardinalities)} cardinalities for "
                f"{len(self.categorical_names)} categorical fields: give one each."
            )
        if n and self.categorical.size:
            low = self.categorical.min(axis=0)
            high = self.categorical.max(axis=0)
            for j, name in enumerate(self.categorical_names):
                if low[j] < 0 or high[j] >= self.cardinalities[j]:
                    raise CTRDataError(
                        f"field {name!r} has ids in [{low[j]}, {high[j]}] but "
                        f"cardinality {self.cardinalities[j]}: hash with hash_ids()."
                    )
        for name in ("timestamps", "true_prob"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise CTRDataError(f"{name} has {len(arr)} entries for {n} labels.")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def ctr(self) -> float:
        """The observed click-through rate (mean label)."""
        return float(np.mean(self.labels)) if len(self) else float("nan")

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> CTRData:
        """The rows at ``index`` (a boolean mask, integer positions or a slice)."""

        def pick(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[index]

        return CTRData(
            dense=self.dense[index],
            categorical=self.categorical[index],
            labels=self.labels[index],
            dense_names=self.dense_names,
            categorical_names=self.categorical_names,
            cardinalities=self.cardinalities,
            timestamps=pick(self.timestamps),
            true_prob=pick(self.true_prob),
            meta=dict(self.meta),
        )

    def time_split(self, cutoff: float) -> tuple[CTRData, CTRData]:
        """Rows strictly before ``cutoff`` (train) and at or after it (test).

        The honest split for a system that trains on the past and serves the
        future; a random split lets the model see tomorrow's users' clicks.
        """
        if self.timestamps is None:
            raise CTRDataError(
                "time_split needs timestamps; this data set has none "
                "(use a random split and say so, or load timestamps)."
            )
        before = self.timestamps < cutoff
        return self.subset(before), self.subset(~before)
