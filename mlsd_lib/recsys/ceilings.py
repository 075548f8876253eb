"""The ceilings of step 2: how good any recommender could be, and how a log lies.

Introduced in
``casestudies/recommender/01_requirements_and_scale.ipynb``. Before a model is
trained, the framing step fixes the metrics (recall@K of retrieval, NDCG@20
of the ranked feed) and asks what values they can reach. In a real system
nobody knows; in the world, the true engagement model ranks every user's
catalogue, and that *oracle ranking* is the ceiling:

* :func:`watched_items` and :func:`held_out_plays` cut a time split: what each
  user had an engaged play of before the split day (excluded from every
  ranking, as the feed's business rules do) and the engaged plays of items
  new to them after it (what recall is measured on).
* :func:`oracle_ranking` ranks by the truth as it stands when the split day
  begins (:func:`truth_snapshot`); :func:`popularity_ranking`,
  :func:`random_ranking` and :func:`shown_before_ranking` are the reference
  points beside it. All rank only what the user may see that day.
* :func:`ranking_report` puts recall@K and NDCG@k of several rankings side by
  side for one relevance set; :func:`true_top_relevance` and
  :func:`ndcg_against_truth` measure the same rankings against the truth
  instead of against sampled plays.

The last two expose *exposure bias*: held-out plays only contain items the
logging policy chose to show, so a ranking that replays what the log showed
(:func:`shown_before_ranking`) scores close to, or above, the oracle on
logged-play recall while being far from the user's true best items.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import (
    RelevantItems,
    ndcg_at_k,
    rank_top_k,
    recall_at_k,
    relevant_items,
)
from mlsd_lib.validation import (
    require_int,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = [
    "CeilingInputError",
    "held_out_plays",
    "ndcg_against_truth",
    "oracle_ranking",
    "popularity_ranking",
    "random_ranking",
    "ranking_report",
    "shown_before_ranking",
    "true_top_relevance",
    "truth_snapshot",
    "watched_items",
]

#: Scores held at once when ranking (users x catalogue), about 32 MB of float64.
SCORE_BLOCK = 1 << 22


class CeilingInputError(MlsdError, ValueError):
    """Users, rankings or logs that do not fit together; the message says how."""


def _check_users(users: np.ndarray, n_users: int) -> np.ndarray:
    users = np.asarray(users, dtype=np.int64)
    if users.ndim != 1 or users.size == 0:
        raise CeilingInputError(
            f"users must be a non-empty 1-D array of user ids, got shape {users.shape}."
        )
    if np.any(np.diff(users) <= 0):
        raise CeilingInputError(
            "users must be sorted and unique (row u of every ranking and relevance "
            "set is users[u]): pass np.unique(users)."
        )
    if users[0] < 0 or users[-1] >= n_users:
        raise CeilingInputError(
            f"user ids must lie in [0, {n_users}), got [{users[0]}, {users[-1]}]."
        )
    return users


def _check_watched(watched: RelevantItems, users: np.ndarray) -> None:
    if watched.n_users != len(users):
        raise CeilingInputError(
            f"watched has {watched.n_users} rows but there are {len(users)} users: "
            "build it with watched_items(train, users) for the same users."
        )


def _rows(relevant: RelevantItems, lo: int, hi: int) -> RelevantItems:
    """Rows ``lo:hi`` of a CSR relevance set, as one of its own."""
    start, stop = relevant.indptr[lo], relevant.indptr[hi]
    return RelevantItems(
        relevant.indptr[lo : hi + 1] - start,
        relevant.indices[start:stop],
        None if relevant.gains is None else relevant.gains[start:stop],
    )


# -- the split --------------------------------------------------------------------


def watched_items(train: RecsysLog, users: np.ndarray) -> RelevantItems:
    """The items each of ``users`` had an engaged play of in ``train`` (row = user)."""
    users = _check_users(users, train.n_users)
    return relevant_items(train.to_interactions(), users)


def held_out_plays(
    test: RecsysLog, users: np.ndarray, watched: RelevantItems
) -> RelevantItems:
    """Engaged plays of ``test`` of items new to the user (not in ``watched``).

    Row ``u`` belongs to ``users[u]``; a user with no such play has an empty
    row, which the metrics skip. Re-watches are left out because every
    ranking excludes watched items, as the feed does.
    """
    users = _check_users(users, test.n_users)
    _check_watched(watched, users)
    plays = relevant_items(test.to_interactions(), users)
    span = max(test.n_items, int(watched.indices.max(initial=0)) + 1)
    keys = plays.rows() * span + plays.indices
    old = np.isin(keys, watched.rows() * span + watched.indices)
    new_rows, new_items = plays.rows()[~old], plays.indices[~old]
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(new_rows, minlength=len(users)), out=indptr[1:])
    return RelevantItems(indptr, new_items)


# -- rankings ---------------------------------------------------------------------


def truth_snapshot(world: RecsysWorld, day: int) -> RecsysWorld:
    """A fork of ``world`` with its tastes drifted to the start of ``day``.

    What the first session of ``day`` will meet; ``world`` itself does not
    move. Plays during the day pull tastes further, so the snapshot is the
    truth a ranking computed at the start of the day can know.
    """
    if day < world.next_day:
        raise CeilingInputError(
            f"the world has already simulated day {world.next_day - 1}; a snapshot "
            f"of day {day} would need the past. Fork it before simulating that day."
        )
    snapshot = world.fork()
    snapshot.state.drift_to(day)
    return snapshot


def _chunks(users: np.ndarray, n_items: int):
    step = max(1, SCORE_BLOCK // max(n_items, 1))
    for lo in range(0, len(users), step):
        yield lo, min(lo + step, len(users))


def _rank_by(
    world: RecsysWorld,
    users: np.ndarray,
    k: int,
    day: int,
    watched: RelevantItems,
    scores: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """Top ``k`` of ``scores(users_chunk)`` (chunk x n_items) per user, among the
    items the user may see on ``day`` and has not watched; -1 pads a short row."""
    users = _check_users(users, world.n_users)
    _check_watched(watched, users)
    n = world.n_items
    launched = np.zeros(n, dtype=bool)
    launched[world.available_items(day * SECONDS_PER_DAY)] = True
    out = np.empty((len(users), k), dtype=np.int64)
    for lo, hi in _chunks(users, n):
        block = users[lo:hi]
        s = np.asarray(scores(block), dtype=np.float64)
        visible = launched[None, :] & world.eligible(block[:, None], np.arange(n))
        s[~visible] = -np.inf
        out[lo:hi] = rank_top_k(s, k, exclude=_rows(watched, lo, hi))
    return out


def oracle_ranking(
    world: RecsysWorld,
    users: np.ndarray,
    k: int,
    day: int,
    watched: RelevantItems,
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's ``k`` truly best unwatched items at the start of ``day``.

    Ranked by the true P(engaged play) at the top slot
    (:meth:`~mlsd_lib.worlds.recsys.RecsysWorld.true_top_k` on
    :func:`truth_snapshot`). Returns ``(items, scores)``, both
    ``(len(users), k)``: the ceiling every model's ranking is compared with.
    """
    users = _check_users(users, world.n_users)
    _check_watched(watched, users)
    snapshot = truth_snapshot(world, day)
    exclude = (users[watched.rows()], watched.indices)
    items = np.empty((len(users), k), dtype=np.int64)
    scores = np.empty((len(users), k), dtype=np.float32)
    for lo, hi in _chunks(users, world.n_items):
        block = users[lo:hi]
        mine = (exclude[0] >= block[0]) & (exclude[0] <= block[-1])
        items[lo:hi], scores[lo:hi] = snapshot.true_top_k(
            block,
            k,
            day * SECONDS_PER_DAY,
            exclude=(exclude[0][mine], exclude[1][mine]),
            return_scores=True,
        )
    return items, scores


def popularity_ranking(
    world: RecsysWorld,
    train: RecsysLog,
    users: np.ndarray,
    k: int,
    day: int,
    watched: RelevantItems,
) -> np.ndarray:
    """The same list for everyone: items by engaged plays in ``train``, most
    first (ties by item id), minus what each user may not see or watched."""
    counts = np.bincount(train.item[train.engaged], minlength=world.n_items)
    counts = counts.astype(np.float64)
    return _rank_by(
        world,
        users,
        k,
        day,
        watched,
        lambda b: np.broadcast_to(counts, (len(b), counts.size)).copy(),
    )


def random_ranking(
    world: RecsysWorld,
    users: np.ndarray,
    k: int,
    day: int,
    watched: RelevantItems,
    seed: int = 0,
) -> np.ndarray:
    """``k`` items per user uniformly at random among what they may see: the floor."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A4D]))
    return _rank_by(
        world, users, k, day, watched, lambda b: rng.random((len(b), world.n_items))
    )


def shown_before_ranking(
    world: RecsysWorld,
    train: RecsysLog,
    users: np.ndarray,
    k: int,
    day: int,
    watched: RelevantItems,
) -> np.ndarray:
    """A history heuristic: the items ``train`` showed the user, most shown first.

    Items shown equally often are ordered by popularity (engaged plays in
    ``train``), and items never shown follow, by popularity. It knows nothing
    of tastes; it replays the logging policy's choices, which is exactly
    what scores well on plays that the same policy will log next.
    """
    n = world.n_items
    popularity = np.bincount(train.item[train.engaged], minlength=n).astype(np.float64)
    tie_break = popularity / (popularity.max() + 1.0)  # in [0, 1): never beats a view
    keys, shown = np.unique(train.user * n + train.item, return_counts=True)

    def scores(block: np.ndarray) -> np.ndarray:
        s = np.broadcast_to(tie_break, (len(block), n)).copy()
        lo, hi = np.searchsorted(keys, [block[0] * n, (block[-1] + 1) * n])
        mine, counts = keys[lo:hi], shown[lo:hi]
        row = np.minimum(np.searchsorted(block, mine // n), len(block) - 1)
        ours = block[row] == mine // n  # users between two of the block's are not
        s[row[ours], mine[ours] % n] += counts[ours]
        return s

    return _rank_by(world, users, k, day, watched, scores)


# -- measuring --------------------------------------------------------------------


def ranking_report(
    rankings: Mapping[str, np.ndarray],
    relevant: RelevantItems,
    ks: Sequence[int] = (50, 100, 500),
    ndcg_k: int | None = 20,
) -> pd.DataFrame:
    """Recall@K for each of ``ks`` (and NDCG@``ndcg_k``) of every ranking.

    One row per ranking; averages are over the users with at least one
    relevant item (see :mod:`mlsd_lib.evaluation.ranking`).
    """
    for k in ks:
        require_int("ks", k, at_least=1, error=CeilingInputError)
    if ndcg_k is not None:
        require_int("ndcg_k", ndcg_k, at_least=1, error=CeilingInputError)
    if not rankings:
        raise CeilingInputError("ranking_report needs at least one ranking.")
    rows = {}
    for name, ranked in rankings.items():
        row = {f"recall@{k}": recall_at_k(ranked, relevant, k) for k in ks}
        if ndcg_k is not None:
            row[f"NDCG@{ndcg_k}"] = ndcg_at_k(ranked, relevant, ndcg_k)
        rows[name] = row
    return pd.DataFrame(rows).T


def true_top_relevance(oracle_items: np.ndarray, top: int) -> RelevantItems:
    """Each user's true top-``top`` items (from :func:`oracle_ranking`) as a
    relevance set: recall against it asks "did the ranking find the items the
    user would like most", whatever any policy showed."""
    if not 1 <= top <= oracle_items.shape[1]:
        raise CeilingInputError(
            f"top must be in [1, {oracle_items.shape[1]}] (the oracle's depth), "
            f"got {top}."
        )
    return RelevantItems.from_lists([row[row >= 0] for row in oracle_items[:, :top]])


def ndcg_against_truth(
    world: RecsysWorld,
    users: np.ndarray,
    day: int,
    ranked: np.ndarray,
    oracle_items: np.ndarray,
    k: int = 20,
) -> float:
    """NDCG@``k`` of ``ranked`` with every item's true P(engaged) as its gain.

    The ideal list is the oracle's top ``k`` (:func:`oracle_ranking` for the
    same users and day), so the oracle scores 1 by construction; any other
    ranking scores the share of the oracle's discounted gain it reaches.
    Gains come from :func:`truth_snapshot` at the start of ``day``, the truth
    the oracle ranked by.
    """
    users = _check_users(users, world.n_users)
    if ranked.shape[0] != len(users) or oracle_items.shape[0] != len(users):
        raise CeilingInputError(
            f"ranked ({ranked.shape[0]} rows) and oracle_items "
            f"({oracle_items.shape[0]} rows) need one row per user ({len(users)})."
        )
    snapshot = truth_snapshot(world, day)
    both = np.hstack([oracle_items[:, :k], ranked[:, :k]])
    gains = snapshot.true_engaged_p(
        users[:, None], np.maximum(both, 0), day * SECONDS_PER_DAY
    )
    keep = both >= 0
    relevant = RelevantItems.from_lists(
        [row[m] for row, m in zip(both, keep, strict=True)],
        [g[m] for g, m in zip(gains, keep, strict=True)],
    )
    return ndcg_at_k(ranked, relevant, k)
