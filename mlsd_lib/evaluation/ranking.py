"""Ranking metrics for retrieval and recommendation lists, written out in numpy.

Introduced in ``casestudies/recommender/index.md``, where the recommender is
judged offline by recall@500 of its retrieval stage and NDCG@20 of the whole
pipeline on a later time slice, and watched online for popularity bias by
catalogue coverage and the share of impressions going to the top 1% of items.
They are hand-written because the book teaches them: each is a few lines once
the data is in the right shape.

**Shapes.** A ranked list per user is one row of an int array ``(U, K)`` of
item ids, best first; a negative id is an empty slot (faiss returns -1 when it
finds fewer than ``K`` neighbours), never relevant. When ``k`` exceeds ``K`` the
list is short: the missing slots are empty, so they count as misses (recall and
NDCG stay what they were, precision@k divides by ``k``). An item repeated within
a row is an error: a merged candidate list must be deduplicated first, or the
repeat would be counted twice.

The held-out items of each user are a :class:`RelevantItems`, a CSR layout
(row ``u`` is ``indices[indptr[u]:indptr[u + 1]]``, sorted and unique) with
optional graded ``gains`` aligned with ``indices``. CSR rather than a dense
``(U, n_items)`` matrix because a 10 M-item catalogue makes the dense matrix
impossible, and rather than a list of arrays because every metric then runs as
a handful of whole-array operations: a (user, item) pair becomes the key
``u * n + item``, and one ``searchsorted`` over the sorted keys finds every hit
of every user at once. :func:`relevant_items` builds it from
:class:`~mlsd_lib.datasets.interactions.Interactions`.

**Averages.** Every per-user metric is averaged over the users with at least
one relevant item (for NDCG: a positive gain); a user with nothing held out has
no recall to measure, and counting them as 0 (or 1) would move the average with
the share of such users rather than with the model. Recall@k divides by the
user's number of relevant items ``|R|`` (some papers divide by ``min(k, |R|)``
so that a perfect list scores 1 even when ``|R| > k``; with ``k = 500`` the two
rarely differ).

**NDCG** (Järvelin & Kekäläinen 2002) uses linear gains,
``DCG@k = sum_i gain_i / log2(i + 1)`` over positions ``i = 1..k``; pass
``2**rating - 1`` as gains for the exponential variant (Burges et al. 2005).
The ideal DCG is computed from the user's gains over the whole catalogue (every
item in their row of :class:`RelevantItems`), not only from the items the list
happens to contain, so a list that misses the best items is marked down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError

__all__ = [
    "RankingInputError",
    "RelevantItems",
    "catalogue_coverage",
    "gini",
    "hit_rate_at_k",
    "mean_reciprocal_rank",
    "ndcg_at_k",
    "precision_at_k",
    "rank_top_k",
    "recall_at_k",
    "relevant_items",
    "top_share",
]


class RankingInputError(MlsdError, ValueError):
    """The lists or relevance sets cannot be evaluated; the message says why."""


@dataclass(frozen=True)
class RelevantItems:
    """Each user's relevant (held-out) items, in CSR layout.

    Row ``u`` holds ``indices[indptr[u]:indptr[u + 1]]`` (sorted, unique item
    ids) and, when graded, ``gains`` for them (non-negative floats; ``None``
    means a gain of 1 each). Row ``u`` belongs to row ``u`` of the ranked lists
    it is compared with.
    """

    indptr: np.ndarray
    indices: np.ndarray
    gains: np.ndarray | None = None

    def __post_init__(self) -> None:
        indptr, indices = self.indptr, self.indices
        if indptr.ndim != 1 or len(indptr) < 1 or indptr[0] != 0:
            raise RankingInputError(
                "indptr must be 1-D, start at 0 and have one entry per user plus "
                "one; build it with RelevantItems.from_lists or relevant_items."
            )
        if np.any(np.diff(indptr) < 0) or indptr[-1] != len(indices):
            raise RankingInputError(
                f"indptr must be non-decreasing and end at len(indices)="
                f"{len(indices)}, got last value {indptr[-1]}."
            )
        if len(indices) and indices.min() < 0:
            raise RankingInputError("relevant item ids must be >= 0.")
        rows = self.rows()
        if np.any((np.diff(indices) <= 0) & (np.diff(rows) == 0)):
            raise RankingInputError(
                "each user's relevant items must be sorted and unique; build them "
                "with RelevantItems.from_lists, which sorts and deduplicates."
            )
        if self.gains is not None and (
            len(self.gains) != len(indices)
            or not np.all(np.isfinite(self.gains))
            or np.any(self.gains < 0)
        ):
            raise RankingInputError(
                f"gains must be {len(indices)} finite non-negative numbers, one per "
                "relevant item (NDCG is only bounded by 1 for such gains)."
            )

    @classmethod
    def from_lists(
        cls,
        items: Sequence[ArrayLike],
        gains: Sequence[ArrayLike] | None = None,
    ) -> RelevantItems:
        """From one array of item ids per user (and optionally their gains);
        repeats keep their largest gain."""
        lengths = np.array([len(np.asarray(row)) for row in items], dtype=np.int64)
        rows = np.repeat(np.arange(len(items)), lengths)
        flat = (
            np.concatenate([np.asarray(row, dtype=np.int64) for row in items])
            if len(items)
            else np.empty(0, np.int64)
        )
        flat_gains = None
        if gains is not None:
            if [len(np.asarray(g)) for g in gains] != lengths.tolist():
                raise RankingInputError(
                    "gains must have one array per user, as long as that user's items."
                )
            flat_gains = (
                np.concatenate([np.asarray(g, dtype=np.float64) for g in gains])
                if len(gains)
                else np.empty(0)
            )
        return _from_pairs(rows, flat, len(items), flat_gains)

    @property
    def n_users(self) -> int:
        return len(self.indptr) - 1

    def counts(self) -> np.ndarray:
        """Relevant items per user."""
        return np.diff(self.indptr)

    def rows(self) -> np.ndarray:
        """The user (row) of each entry of ``indices``."""
        return np.repeat(np.arange(self.n_users), self.counts())

    def user(self, u: int) -> np.ndarray:
        """The relevant items of user ``u``."""
        return self.indices[self.indptr[u] : self.indptr[u + 1]]


def _from_pairs(
    rows: np.ndarray, items: np.ndarray, n_rows: int, gains: np.ndarray | None
) -> RelevantItems:
    """CSR from (row, item[, gain]) pairs: sorted, unique, largest gain kept."""
    if len(items) and items.min() < 0:
        raise RankingInputError("relevant item ids must be >= 0.")
    span = int(items.max()) + 1 if len(items) else 1
    keys = rows * span + items
    if gains is None:
        unique = np.unique(keys)
        kept_gains = None
    else:
        order = np.lexsort((-gains, keys))  # per key, largest gain first
        keys, gains = keys[order], gains[order]
        first = np.r_[True, keys[1:] != keys[:-1]]
        unique, kept_gains = keys[first], gains[first]
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(np.bincount(unique // span, minlength=n_rows), out=indptr[1:])
    return RelevantItems(indptr, unique % span, kept_gains)


def relevant_items(
    interactions: Interactions,
    users: ArrayLike | None = None,
    *,
    engaged_only: bool = True,
    gains: ArrayLike | None = None,
) -> RelevantItems:
    """The items each of ``users`` interacted with in ``interactions``.

    Introduced in ``casestudies/recommender/index.md``: pass the later time slice
    of a time split to get the held-out items recall@k is measured on. Row ``j``
    belongs to ``users[j]`` (default: every user, row = user index).
    ``engaged_only`` keeps engaged events only (the positives). ``gains``, one
    per event (e.g. MovieLens star ratings), grade the items for NDCG; an item
    seen twice keeps its largest gain.
    """
    if users is None:
        users = np.arange(interactions.n_users)
    users = np.asarray(users, dtype=np.int64)
    if len(np.unique(users)) != len(users):
        raise RankingInputError("users must not repeat: one row per user.")
    if len(users) and (users.min() < 0 or users.max() >= interactions.n_users):
        raise RankingInputError(
            f"users must be indices in [0, {interactions.n_users}), got "
            f"[{users.min()}, {users.max()}]."
        )
    row_of = np.full(interactions.n_users, -1, dtype=np.int64)
    row_of[users] = np.arange(len(users))
    keep = row_of[interactions.user] >= 0
    if engaged_only:
        keep &= interactions.engaged
    event_gains = None
    if gains is not None:
        event_gains = np.asarray(gains, dtype=np.float64)
        if event_gains.shape != (len(interactions),):
            raise RankingInputError(
                f"gains must have one value per event ({len(interactions)}), got "
                f"shape {event_gains.shape}."
            )
        event_gains = event_gains[keep]
    return _from_pairs(
        row_of[interactions.user[keep]],
        interactions.item[keep],
        len(users),
        event_gains,
    )


# --------------------------------------------------------------------------
# Per-user hits


def _lists(ranked: ArrayLike, relevant: RelevantItems, k: int) -> np.ndarray:
    """The top-``k`` slots of each list, padded with -1; checked."""
    lists = np.asarray(ranked)
    if lists.ndim != 2 or not np.issubdtype(lists.dtype, np.integer):
        raise RankingInputError(
            f"ranked lists must be a 2-D int array (users x positions), got "
            f"{lists.dtype} of shape {lists.shape}."
        )
    if len(lists) != relevant.n_users:
        raise RankingInputError(
            f"{len(lists)} ranked lists but relevance for {relevant.n_users} users: "
            "row u of both must be the same user."
        )
    if not isinstance(k, int | np.integer) or k < 1:
        raise RankingInputError(f"k must be a positive integer, got {k!r}.")
    lists = lists[:, :k].astype(np.int64)
    if lists.shape[1] < k:
        pad = np.full((len(lists), k - lists.shape[1]), -1, dtype=np.int64)
        lists = np.hstack([lists, pad])
    ordered = np.sort(lists, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        user, slot = np.argwhere(repeated)[0]
        raise RankingInputError(
            f"user row {user} lists item {ordered[user, slot + 1]} more than once "
            "in its top k: deduplicate merged candidate lists before evaluating."
        )
    return lists


def _lookup(lists: np.ndarray, relevant: RelevantItems) -> np.ndarray:
    """For each slot, the position of its item in ``relevant.indices``, or -1."""
    span = int(max(lists.max(initial=0), relevant.indices.max(initial=0))) + 1
    keys = relevant.rows() * span + relevant.indices  # sorted: CSR is row-major
    query = np.arange(len(lists))[:, None] * span + lists
    where = np.minimum(np.searchsorted(keys, query), max(len(keys) - 1, 0))
    found = (lists >= 0) & (len(keys) > 0)
    if len(keys):
        found &= keys[where] == query
    return np.where(found, where, -1)


def _average(values: np.ndarray, counted: np.ndarray, what: str) -> float:
    if not counted.any():
        raise RankingInputError(
            f"no user has {what}, so the average is undefined: evaluate on users "
            "with held-out positives (relevant_items of the test slice)."
        )
    return float(values[counted].mean())


def _hits(ranked: ArrayLike, relevant: RelevantItems, k: int) -> np.ndarray:
    return _lookup(_lists(ranked, relevant, k), relevant) >= 0


def recall_at_k(ranked: ArrayLike, relevant: RelevantItems, k: int) -> float:
    """Mean over users with relevant items of (relevant items in the top k) / ``|R|``.

    Introduced in ``casestudies/recommender/index.md``: recall@500 is the
    retrieval stage's metric, because the ranker can only order what retrieval
    returned.
    """
    hits = _hits(ranked, relevant, k).sum(axis=1)
    counts = relevant.counts()
    return _average(hits / np.maximum(counts, 1), counts > 0, "a relevant item")


def precision_at_k(ranked: ArrayLike, relevant: RelevantItems, k: int) -> float:
    """Mean over users with relevant items of (relevant items in the top k) / k;
    empty slots of a short list count as misses."""
    hits = _hits(ranked, relevant, k).sum(axis=1)
    return _average(hits / k, relevant.counts() > 0, "a relevant item")


def hit_rate_at_k(ranked: ArrayLike, relevant: RelevantItems, k: int) -> float:
    """Share of users with relevant items who find at least one in the top k."""
    hits = _hits(ranked, relevant, k).any(axis=1)
    return _average(hits.astype(float), relevant.counts() > 0, "a relevant item")


def mean_reciprocal_rank(
    ranked: ArrayLike, relevant: RelevantItems, k: int | None = None
) -> float:
    """Mean over users with relevant items of 1 / (position of the first relevant
    item), 0 when none is in the top ``k`` (default: the whole list)."""
    width = np.asarray(ranked).shape[-1] if k is None else k
    hits = _hits(ranked, relevant, max(int(width), 1))
    first = np.argmax(hits, axis=1)
    reciprocal = np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)
    return _average(reciprocal, relevant.counts() > 0, "a relevant item")


def ndcg_at_k(ranked: ArrayLike, gains: RelevantItems, k: int) -> float:
    """Mean NDCG@k over users with a positive gain (linear gains, log2 discount).

    Introduced in ``casestudies/recommender/index.md``. ``gains`` grades each
    user's items (``gains.gains``; binary when ``None``); an item not in the
    user's row has gain 0. The ideal DCG sorts the user's gains over the whole
    catalogue, so NDCG is 1 only for a list that starts with the best items.
    """
    lists = _lists(ranked, gains, k)
    if len(gains.indices) == 0:
        _average(np.zeros(0), np.zeros(0, bool), "a positive gain")  # raises
    where = _lookup(lists, gains)
    value = np.ones(len(gains.indices)) if gains.gains is None else gains.gains
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (np.where(where >= 0, value[where], 0.0) * discount).sum(axis=1)
    # Ideal: each user's gains in descending order, the first k discounted.
    rows = gains.rows()
    order = np.lexsort((-value, rows))
    rank = np.arange(len(order)) - gains.indptr[rows[order]]
    top = rank < k
    ideal = np.bincount(
        rows[order][top],
        weights=value[order][top] * discount[rank[top]],
        minlength=gains.n_users,
    )
    return _average(dcg / np.where(ideal > 0, ideal, 1.0), ideal > 0, "a positive gain")


def rank_top_k(
    scores: ArrayLike, k: int, *, exclude: RelevantItems | None = None
) -> np.ndarray:
    """The ``k`` best item ids per row of ``scores`` (users x items), best first.

    Ties break towards the lower item id, so the ranking is deterministic.
    ``exclude`` (e.g. each user's training items) removes items; a row with
    fewer than ``k`` items left is padded with -1. ``O(n)`` per row
    (``np.argpartition``) plus ``O(k log k)`` to order the top ``k``.
    """
    values = np.array(scores, dtype=np.float64)
    if values.ndim != 2 or np.isnan(values).any():
        raise RankingInputError(
            "scores must be a 2-D float array (users x items) without NaN."
        )
    n_rows, n_items = values.shape
    if not isinstance(k, int | np.integer) or k < 1:
        raise RankingInputError(f"k must be a positive integer, got {k!r}.")
    if exclude is not None:
        if exclude.n_users != n_rows:
            raise RankingInputError(
                f"exclude has {exclude.n_users} users but scores has {n_rows} rows."
            )
        inside = exclude.indices < n_items
        values[exclude.rows()[inside], exclude.indices[inside]] = -np.inf
    width = min(k, n_items)
    items = np.argpartition(-values, width - 1, axis=1)[:, :width]
    picked = np.take_along_axis(values, items, axis=1)
    # argpartition picks arbitrarily among items tied with the width-th score;
    # redo the rows where such a tie reaches past the cut, taking ties by id.
    threshold = picked.min(axis=1, keepdims=True)
    ambiguous = np.flatnonzero(
        (values == threshold).sum(axis=1) > (picked == threshold).sum(axis=1)
    )
    if len(ambiguous):
        rows, cut = values[ambiguous], threshold[ambiguous]
        tied = rows == cut
        room = width - (rows > cut).sum(axis=1, keepdims=True)
        chosen = (rows > cut) | (tied & (np.cumsum(tied, axis=1) <= room))
        items[ambiguous] = np.nonzero(chosen)[1].reshape(len(ambiguous), width)
        picked[ambiguous] = np.take_along_axis(rows, items[ambiguous], axis=1)
    order = np.lexsort((items, -picked), axis=1)  # score down, then id up
    top = np.take_along_axis(items, order, axis=1)
    top = np.where(np.take_along_axis(picked, order, axis=1) == -np.inf, -1, top)
    if width < k:
        top = np.hstack([top, np.full((n_rows, k - width), -1, dtype=top.dtype)])
    return top.astype(np.int64)


# --------------------------------------------------------------------------
# Catalogue-level: coverage and concentration


def _item_ids(items: ArrayLike, n_items: int, what: str) -> np.ndarray:
    ids = np.asarray(items).ravel()
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise RankingInputError(f"{what} must be integer item ids, got {ids.dtype}.")
    if n_items < 1:
        raise RankingInputError(f"n_items must be >= 1, got {n_items}.")
    ids = ids.astype(np.int64)
    if ids.size and ids.max() >= n_items:
        raise RankingInputError(
            f"{what} holds item {ids.max()} but n_items={n_items}: pass the "
            "catalogue size, not the number of distinct items shown."
        )
    return ids[ids >= 0]  # -1: an empty slot


def catalogue_coverage(recommended: ArrayLike, n_items: int) -> float:
    """Share of the catalogue's ``n_items`` that appear in at least one list.

    Introduced in ``casestudies/recommender/index.md``. Negative ids (empty
    slots) are ignored. A falling coverage is the feedback loop narrowing what
    users are shown.
    """
    ids = _item_ids(recommended, n_items, "recommended")
    return len(np.unique(ids)) / n_items


def top_share(
    impression_items: ArrayLike, n_items: int, fraction: float = 0.01
) -> float:
    """Share of impressions that went to the most-shown ``fraction`` of items.

    Introduced in ``casestudies/recommender/index.md``: the popularity-bias
    monitor. The top group is ``ceil(fraction * n_items)`` items (at least 1) of
    the whole catalogue, so items never shown count as part of it. Uniform
    exposure gives about ``fraction``; 1.0 means the top group got everything.
    """
    if not 0 < fraction <= 1:
        raise RankingInputError(f"fraction must be in (0, 1], got {fraction}.")
    ids = _item_ids(impression_items, n_items, "impression_items")
    if len(ids) == 0:
        raise RankingInputError("no impressions: the share of none is undefined.")
    counts = np.bincount(ids, minlength=n_items)
    top = max(1, int(np.ceil(fraction * n_items - 1e-9)))
    return float(np.partition(counts, n_items - top)[n_items - top :].sum() / len(ids))


def gini(counts: ArrayLike) -> float:
    """Gini coefficient of non-negative counts (e.g. impressions per item).

    0 when every item has the same count; ``(n - 1) / n`` when one item has
    everything. Pass every catalogue item, zeros included
    (``np.bincount(items, minlength=n_items)``): items never shown are the
    inequality. Computed as ``sum_i (2i - n - 1) x_(i) / (n sum x)`` over the
    counts sorted ascending (``i = 1..n``).
    """
    x = np.sort(np.asarray(counts, dtype=np.float64).ravel())
    if x.size == 0 or not np.all(np.isfinite(x)) or x[0] < 0 or x.sum() == 0:
        raise RankingInputError(
            "gini needs finite non-negative counts that are not all zero, one per item."
        )
    n = len(x)
    weights = 2.0 * np.arange(1, n + 1) - n - 1
    return float(weights @ x / (n * x.sum()))
