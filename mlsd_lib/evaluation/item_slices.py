"""Recall on a slice of the catalogue: head against tail, new against old items.

Introduced in ``casestudies/recommender/09_interview_followups.ipynb`` (the follow-up
"How do you choose negatives?"). One recall@K averaged over every held-out item hides
*which* items a retriever finds: a model that learned popularity scores well on the few
items most plays go to and misses the long tail, and an id-only model finds the
catalogue and not a single new title. Slicing the relevant items by a label per item
(``"head"`` / ``"tail"``, ``"new"`` / ``"catalogue"``) shows it, with the same ranked
lists and the same definition of recall as
:func:`~mlsd_lib.evaluation.ranking.recall_at_k`:

* :func:`head_items`: the **short head**, the most-played items that together
  hold a share (half, by default) of the plays; everything else, items never
  played included, is the tail. Defined by the share of plays rather than by a
  share of items so that it means the same thing in a catalogue of 2,000
  items and of 10 million.
* :func:`recall_by_item_group`: for each label, recall@K counting only the
  relevant items that carry it. A user with no relevant item of a label is not
  averaged into that label's recall (as everywhere in
  :mod:`~mlsd_lib.evaluation.ranking`), so the head and tail figures average
  over different users; each comes with how many users and items it counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import RelevantItems, recall_at_k

__all__ = ["GroupRecall", "ItemSliceError", "head_items", "recall_by_item_group"]


class ItemSliceError(MlsdError, ValueError):
    """Counts, labels or shares that cannot slice a catalogue; says how to fix."""


@dataclass(frozen=True)
class GroupRecall:
    """Recall@``k`` on the relevant items of one label: ``recall`` (NaN when no
    user has such an item), over ``users`` users holding ``items`` of them."""

    label: str
    recall: float
    users: int
    items: int


def head_items(counts: ArrayLike, head_mass: float = 0.5) -> np.ndarray:
    """Bool per item: the most-played items that together hold ``head_mass`` of
    the plays (the short head); the rest, unplayed items included, is the tail.

    ``counts`` is plays per item id (``np.bincount(items, minlength=n_items)``).
    Items are taken by descending count, ties to the lower id, until their
    plays reach ``head_mass`` of the total; the item that crosses it is in.
    """
    x = np.asarray(counts)
    if x.ndim != 1 or x.size == 0 or not np.issubdtype(x.dtype, np.number):
        raise ItemSliceError(
            f"counts must be a 1-D array of plays per item id, got shape {x.shape}."
        )
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)) or x.min() < 0 or x.sum() == 0:
        raise ItemSliceError(
            "counts must be finite, non-negative and not all zero: pass the plays "
            "per item of the training period."
        )
    if not 0.0 < head_mass < 1.0:
        raise ItemSliceError(
            f"head_mass must lie in (0, 1) (the share of plays the head holds), "
            f"got {head_mass}."
        )
    order = np.lexsort((np.arange(x.size), -x))  # count down, then id up
    before = np.cumsum(x[order]) - x[order]  # plays of the items ahead of each
    head = np.zeros(x.size, dtype=bool)
    head[order[before < head_mass * x.sum()]] = True
    return head


def _keep(relevant: RelevantItems, mask: np.ndarray) -> RelevantItems:
    """The relevance set restricted to the entries where ``mask`` holds."""
    rows = relevant.rows()[mask]
    indptr = np.zeros(relevant.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=relevant.n_users), out=indptr[1:])
    gains = None if relevant.gains is None else relevant.gains[mask]
    return RelevantItems(indptr, relevant.indices[mask], gains)


def recall_by_item_group(
    ranked: ArrayLike,
    relevant: RelevantItems,
    item_label: ArrayLike,
    k: int,
) -> list[GroupRecall]:
    """Recall@``k`` of ``ranked`` on each label's relevant items, labels sorted.

    ``item_label`` gives every item id its label (strings, ints or bools; e.g.
    ``np.where(head_items(counts), "head", "tail")``); it must cover every id
    ``relevant`` holds. A label no user has a relevant item of is reported with
    NaN recall and zero users, so a table of several models keeps its columns.
    """
    labels = np.asarray(item_label)
    if labels.ndim != 1:
        raise ItemSliceError(
            f"item_label must hold one label per item id, got shape {labels.shape}."
        )
    if len(relevant.indices) and relevant.indices.max() >= len(labels):
        raise ItemSliceError(
            f"a relevant item has id {relevant.indices.max()} but item_label covers "
            f"ids 0..{len(labels) - 1}: pass one label per item of the catalogue."
        )
    entry_label = labels[relevant.indices]
    out = []
    for label in np.unique(labels):
        mask = entry_label == label
        subset = _keep(relevant, mask)
        users = int((subset.counts() > 0).sum())
        value = recall_at_k(ranked, subset, k) if users else float("nan")
        out.append(GroupRecall(str(label), value, users, int(mask.sum())))
    return out
