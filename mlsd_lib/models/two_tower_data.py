"""Training examples for a two-tower model: each positive with the user as they were.

Introduced in ``casestudies/recommender/03_models.ipynb``. A two-tower model learns
from positives only (an engaged play); the negatives are sampled in the loss
(:mod:`mlsd_lib.models.sampled_softmax`). Each example is one positive event with
what the user tower would have been given *at that moment*:

* the ids of the user's last ``history_len`` engaged items **strictly before**
  the event (most recent first, -1 padded). Building the history from the whole
  log would put the positive itself, and what the user watched next, into the
  input: the model would learn to copy the history and fail online, where the
  future is not there. That is the point-in-time rule of a feature store
  applied to a sequence feature, and a test checks it;
* the user's features, and the item's id.

Item content features are a catalogue table (:class:`EntityFeatures`, one row
per item), not copied per example: the item tower reads the rows of the batch's
items, and the same table is what the catalogue is embedded from for the index.
User features are a table per user too, looked up per example; features that
change with time (a genre mix of recent plays) belong in a point-in-time join
upstream, and the history already carries what the user did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.models.ctr import ModelInputError

__all__ = ["EntityFeatures", "TwoTowerData", "two_tower_examples"]


@dataclass(frozen=True)
class EntityFeatures:
    """One row of features per entity (item or user): dense and categorical.

    ``dense`` is ``(n, F)`` float32 (F may be 0), ``categorical`` ``(n, C)``
    integer ids with column ``j`` in ``[0, cardinalities[j])`` (C may be 0).
    """

    dense: np.ndarray
    categorical: np.ndarray
    cardinalities: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.dense.ndim != 2 or self.categorical.ndim != 2:
            raise ModelInputError(
                f"dense and categorical must be 2-d (rows, columns); got shapes "
                f"{self.dense.shape} and {self.categorical.shape}. Use shape (n, 0) "
                "for an empty group."
            )
        if len(self.dense) != len(self.categorical):
            raise ModelInputError(
                f"dense has {len(self.dense)} rows but categorical has "
                f"{len(self.categorical)}: one row per entity in both."
            )
        cards = tuple(int(c) for c in self.cardinalities)
        if self.categorical.shape[1] != len(cards):
            raise ModelInputError(
                f"categorical has {self.categorical.shape[1]} columns but "
                f"{len(cards)} cardinalities were given: one per column."
            )
        if self.categorical.size:
            low, high = self.categorical.min(axis=0), self.categorical.max(axis=0)
            bad = [j for j in range(len(cards)) if low[j] < 0 or high[j] >= cards[j]]
            if bad:
                j = bad[0]
                raise ModelInputError(
                    f"categorical column {j} has ids in [{low[j]}, {high[j]}] but "
                    f"its cardinality is {cards[j]}: ids must lie in [0, "
                    f"{cards[j]})."
                )

    @classmethod
    def from_arrays(
        cls,
        dense: np.ndarray | None = None,
        categorical: np.ndarray | None = None,
        cardinalities: Sequence[int] | None = None,
        *,
        n: int | None = None,
    ) -> EntityFeatures:
        """Cast to float32/int64; a missing group becomes ``(n, 0)``.

        ``cardinalities`` defaults to each categorical column's ``max + 1``.
        """
        rows = n
        for array in (dense, categorical):
            if array is not None:
                rows = len(array)
        if rows is None:
            raise ModelInputError("give dense, categorical or n (the row count).")
        dense = (
            np.zeros((rows, 0), np.float32)
            if dense is None
            else np.asarray(dense, dtype=np.float32).reshape(rows, -1)
        )
        categorical = (
            np.zeros((rows, 0), np.int64)
            if categorical is None
            else np.asarray(categorical, dtype=np.int64).reshape(rows, -1)
        )
        if cardinalities is None:
            cardinalities = (
                tuple(int(c) + 1 for c in categorical.max(axis=0))
                if categorical.size
                else (1,) * categorical.shape[1]
            )
        return cls(dense, categorical, tuple(cardinalities))

    def __len__(self) -> int:
        return len(self.dense)

    @property
    def num_dense(self) -> int:
        return int(self.dense.shape[1])

    def rows(self, index: np.ndarray) -> EntityFeatures:
        """The features of entities ``index`` (same cardinalities)."""
        return EntityFeatures(
            self.dense[index], self.categorical[index], self.cardinalities
        )


@dataclass(frozen=True)
class TwoTowerData:
    """Positive events with the user tower's inputs at the time of each.

    Per example: ``user``, ``time`` and ``item`` (int64/float64, ``(n,)``);
    ``history`` (``(n, history_len)`` integer ids, most recent first, -1
    padded); ``user_dense`` ``(n, F)`` and ``user_categorical`` ``(n, C)`` with
    ``user_cardinalities``. ``items`` is the catalogue's content features, one
    row per item id; its length is ``n_items``.
    """

    user: np.ndarray
    time: np.ndarray
    item: np.ndarray
    history: np.ndarray
    user_dense: np.ndarray
    user_categorical: np.ndarray
    user_cardinalities: tuple[int, ...]
    items: EntityFeatures

    def __post_init__(self) -> None:
        n = len(self.item)
        for name in ("user", "time", "history", "user_dense", "user_categorical"):
            if len(getattr(self, name)) != n:
                raise ModelInputError(
                    f"'{name}' has {len(getattr(self, name))} rows but 'item' has "
                    f"{n}: one row per positive event."
                )
        if self.history.ndim != 2:
            raise ModelInputError(
                f"history must be 2-d (events, history_len), got shape "
                f"{self.history.shape}."
            )
        n_items = self.n_items
        if n and (self.item.min() < 0 or self.item.max() >= n_items):
            raise ModelInputError(
                f"item ids must lie in [0, n_items={n_items}); found "
                f"[{self.item.min()}, {self.item.max()}]. The catalogue table "
                "needs one row per item id."
            )
        if self.history.size and (
            self.history.min() < -1 or self.history.max() >= n_items
        ):
            raise ModelInputError(
                f"history ids must lie in [-1, n_items={n_items}) (-1 pads a "
                f"short history); found [{self.history.min()}, "
                f"{self.history.max()}]."
            )
        EntityFeatures(self.user_dense, self.user_categorical, self.user_cardinalities)

    def __len__(self) -> int:
        return len(self.item)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def history_len(self) -> int:
        return int(self.history.shape[1])

    def subset(self, index: np.ndarray) -> TwoTowerData:
        """The examples ``index`` selects (a bool mask or integer positions)."""
        return TwoTowerData(
            user=self.user[index],
            time=self.time[index],
            item=self.item[index],
            history=self.history[index],
            user_dense=self.user_dense[index],
            user_categorical=self.user_categorical[index],
            user_cardinalities=self.user_cardinalities,
            items=self.items,
        )

    def split_at(self, time: float) -> tuple[TwoTowerData, TwoTowerData]:
        """Examples before ``time`` and at or after it (histories stay as built)."""
        before = self.time < time
        return self.subset(before), self.subset(~before)


def last_engaged_before(
    user: np.ndarray, item: np.ndarray, time: np.ndarray, history_len: int
) -> np.ndarray:
    """For each event, the user's previous ``history_len`` items, most recent first.

    "Previous" is strictly earlier in time: events of one user at the same
    timestamp do not see each other. Vectorized: sort by (user, time), find where
    each run of equal (user, time) starts, and read the ``history_len`` events
    before it within the same user. Returns ``(n, history_len)`` int32, -1
    padded, in the input's row order.
    """
    n = len(user)
    order = np.lexsort((time, user))  # by user, then time (stable)
    u, t, it = user[order], time[order], item[order]
    position = np.arange(n)
    new_user = np.ones(n, dtype=bool)
    new_user[1:] = u[1:] != u[:-1]
    new_run = new_user.copy()
    new_run[1:] |= t[1:] != t[:-1]
    user_start = np.maximum.accumulate(np.where(new_user, position, 0))
    run_start = np.maximum.accumulate(np.where(new_run, position, 0))
    lookback = run_start[:, None] - 1 - np.arange(history_len)[None, :]
    valid = lookback >= user_start[:, None]
    history_sorted = np.where(valid, it[np.maximum(lookback, 0)], -1).astype(np.int32)
    history = np.empty_like(history_sorted)
    history[order] = history_sorted
    return history


def two_tower_examples(
    interactions: Interactions,
    item_features: EntityFeatures,
    user_features: EntityFeatures | None = None,
    history_len: int = 50,
) -> TwoTowerData:
    """One example per engaged event, with the user's earlier engaged items.

    ``item_features`` has one row per item (``interactions.n_items``);
    ``user_features`` one per user (``interactions.n_users``), or ``None`` for
    none. Histories hold only engaged items strictly earlier than the event
    (see :func:`last_engaged_before`). Build the examples from the whole log and
    then :meth:`TwoTowerData.split_at` a time: a validation example's history
    then includes the training period, as it would online.
    """
    if history_len < 1:
        raise ModelInputError(f"history_len must be >= 1, got {history_len}.")
    if len(item_features) != interactions.n_items:
        raise ModelInputError(
            f"item_features has {len(item_features)} rows but the interactions "
            f"have n_items={interactions.n_items}: one row per item id."
        )
    if user_features is None:
        user_features = EntityFeatures.from_arrays(n=interactions.n_users)
    if len(user_features) != interactions.n_users:
        raise ModelInputError(
            f"user_features has {len(user_features)} rows but the interactions "
            f"have n_users={interactions.n_users}: one row per user id."
        )
    positives = interactions.positives()
    history = last_engaged_before(
        positives.user, positives.item, positives.time, history_len
    )
    return TwoTowerData(
        user=positives.user,
        time=positives.time,
        item=positives.item,
        history=history,
        user_dense=user_features.dense[positives.user],
        user_categorical=user_features.categorical[positives.user],
        user_cardinalities=user_features.cardinalities,
        items=item_features,
    )
