"""The one shape every recommender model in the book consumes: user-item events.

Introduced in ``casestudies/recommender/index.md``. A recommender's training data is
a log of (user, item, time) events with a label: here an *engaged play* (a play
of at least 30 seconds) and, where the source knows it, the minutes watched and
the feed position the item was shown at. The synthetic recsys world
(:mod:`mlsd_lib.worlds.recsys`) and the MovieLens loader
(:mod:`mlsd_lib.datasets.movielens`) both produce :class:`Interactions`, so the
retrieval and ranking recipes run unchanged on either, as the CTR models do on
:class:`~mlsd_lib.datasets.ctr.CTRData`.

Users and items are dense indices ``0..n_users-1`` and ``0..n_items-1`` (an
embedding table's row); a loader of raw ids keeps the map back to them
(``user_ids[index]`` is the raw id). Rows are kept in time order, which is what
a time split and a point-in-time join rely on.

What the fields mean on a source that lacks them:

- ``minutes`` is NaN where the source has no watch time (MovieLens ratings);
  a minutes head masks those rows out.
- ``position`` is -1 where the item was not shown in a ranked feed (a rating
  someone looked up); a position-bias model ignores those rows.
- ``engaged`` is the positive label for retrieval: an engaged play in the world,
  a rating of at least 4 stars in MovieLens (a common convention for turning
  explicit ratings into implicit positives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd_lib.errors import MlsdError

__all__ = ["Interactions", "InteractionsError"]


class InteractionsError(MlsdError, ValueError):
    """The arrays do not form a valid interaction log; the message says which."""


@dataclass(frozen=True)
class Interactions:
    """User-item events in time order, with an engaged-play label.

    ``user``/``item`` (int64 dense indices), ``time`` (float64 seconds),
    ``engaged`` (bool), ``minutes`` (float32, NaN where unknown) and
    ``position`` (int16, -1 where unknown) are parallel arrays of equal length;
    ``n_users``/``n_items`` size the embedding tables, so a user or item with no
    event still has a row. ``user_ids``/``item_ids`` map an index back to the
    source's raw id (``None`` when index and id coincide, as in the world).
    """

    user: np.ndarray
    item: np.ndarray
    time: np.ndarray
    engaged: np.ndarray
    minutes: np.ndarray
    position: np.ndarray
    n_users: int
    n_items: int
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.user)
        for name in ("item", "time", "engaged", "minutes", "position"):
            if len(getattr(self, name)) != n:
                raise InteractionsError(
                    f"'{name}' has {len(getattr(self, name))} rows but 'user' has "
                    f"{n}: every column must have one value per event."
                )
        for name, size in (("user", self.n_users), ("item", self.n_items)):
            values = getattr(self, name)
            if n and (values.min() < 0 or values.max() >= size):
                raise InteractionsError(
                    f"'{name}' indices must lie in [0, n_{name}s={size}); found "
                    f"[{values.min()}, {values.max()}]. Map raw ids to dense "
                    "indices first (the MovieLens loader does)."
                )
        if n > 1 and np.any(np.diff(self.time) < 0):
            raise InteractionsError(
                "'time' must be non-decreasing: sort the events by time "
                "(Interactions.from_arrays does) before a time split relies on it."
            )

    @classmethod
    def from_arrays(
        cls,
        user: np.ndarray,
        item: np.ndarray,
        time: np.ndarray,
        engaged: np.ndarray,
        *,
        minutes: np.ndarray | None = None,
        position: np.ndarray | None = None,
        n_users: int | None = None,
        n_items: int | None = None,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
    ) -> Interactions:
        """Cast, fill the optional columns and sort by time (stable)."""
        user = np.asarray(user, dtype=np.int64)
        n = len(user)
        order = np.argsort(np.asarray(time, dtype=np.float64), kind="stable")
        minutes = (
            np.full(n, np.nan, np.float32)
            if minutes is None
            else np.asarray(minutes, dtype=np.float32)
        )
        position = (
            np.full(n, -1, np.int16)
            if position is None
            else np.asarray(position, dtype=np.int16)
        )
        item = np.asarray(item, dtype=np.int64)
        return cls(
            user=user[order],
            item=item[order],
            time=np.asarray(time, dtype=np.float64)[order],
            engaged=np.asarray(engaged, dtype=bool)[order],
            minutes=minutes[order],
            position=position[order],
            n_users=int(
                n_users if n_users is not None else (user.max() + 1 if n else 0)
            ),
            n_items=int(
                n_items if n_items is not None else (item.max() + 1 if n else 0)
            ),
            user_ids=user_ids,
            item_ids=item_ids,
        )

    def __len__(self) -> int:
        return len(self.user)

    def subset(self, mask: np.ndarray) -> Interactions:
        """The events where ``mask`` is true (same tables, same id maps)."""
        mask = np.asarray(mask)
        if mask.dtype != bool or len(mask) != len(self):
            raise InteractionsError(
                f"mask must be a bool array of length {len(self)}, got "
                f"{mask.dtype} of length {len(mask)}."
            )
        return Interactions(
            user=self.user[mask],
            item=self.item[mask],
            time=self.time[mask],
            engaged=self.engaged[mask],
            minutes=self.minutes[mask],
            position=self.position[mask],
            n_users=self.n_users,
            n_items=self.n_items,
            user_ids=self.user_ids,
            item_ids=self.item_ids,
        )

    def positives(self) -> Interactions:
        """The engaged events only: what retrieval trains and is evaluated on."""
        return self.subset(self.engaged.astype(bool))

    def split_at(self, time: float) -> tuple[Interactions, Interactions]:
        """Events before ``time`` and at or after it: the time split that keeps
        the future out of training."""
        before = self.time < time
        return self.subset(before), self.subset(~before)

    def item_counts(self) -> np.ndarray:
        """Events per item (length ``n_items``): popularity, and the logQ estimate."""
        return np.bincount(self.item, minlength=self.n_items)
