r"""Offline evaluation of the recommender on a time split, against held-out plays
and against the world's truth.

Introduced in ``casestudies/recommender/03_models.ipynb`` (step 5). The metrics are
:mod:`mlsd_lib.evaluation`'s; this module holds the experiments the case study
runs with them:

* **The split** (:func:`simulate_split`): the logging policy serves days
  ``0 .. T-1`` (training; day ``T-1`` also validates, for early stopping) and
  day(s) ``T ..`` (test). The world is forked at the start of day ``T``, so
  the truth the evaluation reads is the one the test day's users met.
* **Retrieval** (:func:`held_out`, :func:`rank_catalogue`,
  :func:`retrieval_table`): each test user's ranking of what they may see that
  day (launched, region, maturity) minus what they already watched, by a
  model's exact scores; recall@{50, 100, 500} against (a) the held-out engaged
  plays of the test day (items new to the user) and (b) the user's true top-K
  at the start of the day, K the same as the cut-off (recall@K against the true
  top K is the share of the K truly best items the model's top K holds). The
  oracle (the world's true ranking) is a row of the same table. The gap
  between (a) and (b) is exposure bias: held-out plays only contain what the
  logging policy showed.
* **ANN recall** (:func:`ann_recall`): an HNSW index
  (:mod:`mlsd_lib.index`) against exact search over the same embeddings,
  apart from model recall, so index tuning is never mistaken for model
  quality.
* **Ranking** (:func:`shown_candidates`, :func:`ranked_lists`,
  :func:`ndcg_table`): NDCG@20 over each test user's *candidate set*, the
  distinct items the logging policy showed them on the test day(s), under
  two gains, defined precisely:

  - ``observed``: the engaged minutes the user watched of the item on the
    test day(s) (sum over impressions of the minutes of engaged plays; 0 for
    an item shown and not played, or played under 30 s);
  - ``true``: the item's true expected engaged minutes per impression at the
    top slot at the start of the test day,
    :math:`P(\text{engaged} \mid u, i, p = 0)\,\mathbb{E}[\text{minutes} \mid
    \text{engaged}]`, the case study's objective.

  The **oracle ranking** orders each candidate set by the ``true`` gain; its
  NDCG under ``true`` gains is 1 by construction and under ``observed`` gains
  it is the best any ranking of those candidates can expect (the rest is the
  noise of who played what). ``ndcg_ratio`` is a ranking's NDCG divided by
  the oracle's under the same gains. Users whose gains are all 0 are skipped
  (as :func:`~mlsd_lib.evaluation.ranking.ndcg_at_k` does).
* **Calibration** (:func:`play_calibration`): the play head's P(engaged) at
  the logged positions against the test day's engaged plays
  (:mod:`mlsd_lib.evaluation.calibration`).
* **Slices** (:func:`activity_groups`, :func:`new_items`,
  :func:`recall_by_slice`): recall by user activity (light / medium / heavy
  by training-period engaged plays, terciles of the test users) and by item
  age (new: launched in the ``new_days`` before the test day; catalogue: the
  rest).
* **Objectives** (:func:`feed_outcomes`): the feed each score would serve,
  in true expected clicks, engaged plays and engaged minutes (position bias
  and patience included, from the world) and its share of clickbait: what
  ranking by raw clicks instead of engaged plays costs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.calibration import (
    ReliabilityDiagram,
    calibration_ratio,
    reliability_diagram,
)
from mlsd_lib.evaluation.ranking import (
    RelevantItems,
    ndcg_at_k,
    rank_top_k,
    recall_at_k,
)
from mlsd_lib.index import AnnIndex, IndexSpec
from mlsd_lib.index import recall_at_k as ann_recall_at_k
from mlsd_lib.models.two_tower import exact_top_k
from mlsd_lib.models.two_tower_data import TwoTowerData
from mlsd_lib.recsys.ceilings import (
    held_out_plays,
    oracle_ranking,
    true_top_relevance,
    truth_snapshot,
    watched_items,
)
from mlsd_lib.validation import (
    require_int,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_feed import Policy
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = [
    "ORACLE",
    "Candidates",
    "EvaluationInputError",
    "HeldOut",
    "TimeSplit",
    "activity_groups",
    "ann_recall",
    "feed_outcomes",
    "held_out",
    "ndcg_table",
    "new_items",
    "play_calibration",
    "query_scores",
    "rank_catalogue",
    "ranked_lists",
    "recall_by_slice",
    "retrieval_table",
    "shown_candidates",
    "simulate_split",
]

#: The name of the world's true ranking in every table.
ORACLE = "oracle"
#: Scores held at once when ranking the catalogue, about 32 MB of float64.
_SCORE_BLOCK = 1 << 22


class EvaluationInputError(MlsdError, ValueError):
    """Rankings, scores or splits that do not fit together; the message says how."""


# -- the split ------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeSplit:
    """A world's log cut in time: training days, then the test day(s).

    ``log`` holds days ``0 .. test_day - 1`` (``valid_day = test_day - 1`` is
    the last of them: early stopping reads it), ``test`` days ``test_day ..
    test_day + test_days - 1``. ``world`` is a fork taken at the start of
    ``test_day``: the truth evaluation compares with.
    """

    world: RecsysWorld
    log: RecsysLog
    test: RecsysLog
    test_day: int
    test_days: int

    @property
    def valid_day(self) -> int:
        return self.test_day - 1

    @property
    def test_time(self) -> float:
        """Seconds at the start of the test day (what queries are as of)."""
        return self.test_day * SECONDS_PER_DAY

    @property
    def valid_time(self) -> float:
        return self.valid_day * SECONDS_PER_DAY

    def interactions(self) -> Interactions:
        """Every training-period impression as the models read them."""
        return self.log.to_interactions()


def simulate_split(
    world: RecsysWorld, policy: Policy, *, train_days: int, test_days: int = 1
) -> TimeSplit:
    """Let ``policy`` serve ``train_days`` days, fork, then ``test_days`` more.

    ``world`` moves forward by ``train_days + test_days`` days; the split's
    ``world`` is the fork at the start of the test period.
    """
    if train_days < 2 or test_days < 1:
        raise EvaluationInputError(
            f"a split needs train_days >= 2 (the last one validates) and "
            f"test_days >= 1, got {train_days} and {test_days}."
        )
    start = world.next_day
    log = world.simulate(policy, start, train_days)
    at_split = world.fork()
    test = world.simulate(policy, start + train_days, test_days)
    return TimeSplit(at_split, log, test, start + train_days, test_days)


# -- retrieval ------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOut:
    """What retrieval is measured on: users, what they watched, what they played.

    ``users`` (sorted): the test users with an engaged play of an item new to
    them; ``watched``: each one's engaged items before the test day (every
    ranking excludes them); ``plays``: the held-out plays; ``oracle``: each
    user's true ranking at the start of the test day, ``max_k`` deep.
    """

    users: np.ndarray
    watched: RelevantItems
    plays: RelevantItems
    oracle: np.ndarray
    day: int

    def true_top(self, k: int) -> RelevantItems:
        """Each user's true top ``k`` as a relevance set."""
        return true_top_relevance(self.oracle, k)


def held_out(split: TimeSplit, max_k: int = 500) -> HeldOut:
    """The test users, their watched items, held-out plays and oracle ranking."""
    require_int("max_k", max_k, at_least=1, error=EvaluationInputError)
    engaged = split.test.user[split.test.engaged]
    candidates = np.unique(engaged)
    if candidates.size == 0:
        raise EvaluationInputError(
            "the test period has no engaged play: simulate more users or days."
        )
    watched = watched_items(split.log, candidates)
    plays = held_out_plays(split.test, candidates, watched)
    keep = plays.counts() > 0
    users = candidates[keep]
    watched = watched_items(split.log, users)
    plays = held_out_plays(split.test, users, watched)
    oracle, _ = oracle_ranking(split.world, users, max_k, split.test_day, watched)
    return HeldOut(users, watched, plays, oracle, split.test_day)


def _rows(relevant: RelevantItems, lo: int, hi: int) -> RelevantItems:
    start, stop = relevant.indptr[lo], relevant.indptr[hi]
    return RelevantItems(
        relevant.indptr[lo : hi + 1] - start, relevant.indices[start:stop]
    )


def rank_catalogue(
    world: RecsysWorld,
    day: int,
    users: np.ndarray,
    watched: RelevantItems,
    scores: Callable[[slice], np.ndarray],
    k: int = 500,
) -> np.ndarray:
    """``(len(users), k)``: each user's top ``k`` by ``scores`` among what they
    may see on ``day`` and have not watched (exact search, ties to the lower id).

    ``scores(rows)`` returns the ``(rows, n_items)`` scores of ``users[rows]``;
    it is called on blocks of users so memory stays bounded.
    """
    require_int("k", k, at_least=1, error=EvaluationInputError)
    users = np.asarray(users, dtype=np.int64)
    if watched.n_users != len(users):
        raise EvaluationInputError(
            f"watched has {watched.n_users} rows for {len(users)} users: one per user."
        )
    n = world.n_items
    launched = np.zeros(n, dtype=bool)
    launched[world.available_items(day * SECONDS_PER_DAY)] = True
    step = max(1, _SCORE_BLOCK // max(n, 1))
    out = np.empty((len(users), k), dtype=np.int64)
    for lo in range(0, len(users), step):
        hi = min(lo + step, len(users))
        s = np.asarray(scores(slice(lo, hi)), dtype=np.float64)
        if s.shape != (hi - lo, n):
            raise EvaluationInputError(
                f"scores returned shape {s.shape} for {hi - lo} users: it must be "
                f"(users, n_items={n})."
            )
        visible = launched[None, :] & world.eligible(users[lo:hi, None], np.arange(n))
        s[~visible] = -np.inf
        out[lo:hi] = rank_top_k(s, k, exclude=_rows(watched, lo, hi))
    return out


def query_scores(
    score: Callable[[TwoTowerData], np.ndarray], queries: TwoTowerData
) -> Callable[[slice], np.ndarray]:
    """Adapt a retriever's ``scores(queries)`` to :func:`rank_catalogue`'s blocks."""
    return lambda rows: score(queries.subset(np.arange(len(queries))[rows]))


def retrieval_table(
    rankings: Mapping[str, np.ndarray],
    held: HeldOut,
    ks: Sequence[int] = (50, 100, 500),
) -> pd.DataFrame:
    """Recall@K of each ranking against held-out plays and against the true top K.

    Columns ``recall@K`` (plays), ``true recall@K`` (the share of the user's K
    truly best items in the ranking's top K) and ``gap@K`` (the first minus
    the second: how much the logged plays flatter or understate a ranking).
    """
    for k in ks:
        require_int("ks", k, at_least=1, error=EvaluationInputError)
    if not rankings:
        raise EvaluationInputError("retrieval_table needs at least one ranking.")
    rows = {}
    for name, ranked in rankings.items():
        row: dict[str, float] = {}
        for k in ks:
            row[f"recall@{k}"] = recall_at_k(ranked, held.plays, k)
        for k in ks:
            row[f"true recall@{k}"] = recall_at_k(ranked, held.true_top(k), k)
        for k in ks:
            row[f"gap@{k}"] = row[f"recall@{k}"] - row[f"true recall@{k}"]
        rows[name] = row
    return pd.DataFrame(rows).T


def ann_recall(
    user_emb: np.ndarray,
    item_emb: np.ndarray,
    item_ids: np.ndarray,
    ks: Sequence[int] = (50, 100, 500),
    spec: IndexSpec | None = None,
) -> pd.DataFrame:
    """Recall@K of an ANN index (HNSW by default) against exact search.

    Both search ``item_emb`` (rows ``item_ids``, e.g. the launched catalogue)
    for every user embedding, unfiltered; the exact top K is by brute force.
    One row per K: ``ann recall@K`` (share of the exact top K the index
    returned in its top K).
    """
    spec = spec or IndexSpec("hnsw", ef_search=max(ks))
    item_ids = np.asarray(item_ids, dtype=np.int64)
    index = AnnIndex(spec, item_emb.shape[1]).build(
        np.ascontiguousarray(item_emb[item_ids], dtype=np.float32), item_ids
    )
    k_max = max(ks)
    _, approx = index.search(np.ascontiguousarray(user_emb, dtype=np.float32), k_max)
    exact = item_ids[exact_top_k(user_emb, item_emb[item_ids], k_max)]
    return pd.DataFrame(
        {
            "ann recall@K": [
                ann_recall_at_k(approx[:, :k], exact[:, :k], k) for k in ks
            ],
        },
        index=pd.Index(list(ks), name="K"),
    )


# -- slices -------------------------------------------------------------------------


def activity_groups(log: RecsysLog, users: np.ndarray) -> np.ndarray:
    """``light`` / ``medium`` / ``heavy`` per user: terciles (over ``users``) of
    their engaged plays in ``log``."""
    plays = np.bincount(log.user[log.engaged], minlength=log.n_users)[users]
    low, high = np.quantile(plays, [1 / 3, 2 / 3])
    return np.where(plays <= low, "light", np.where(plays <= high, "medium", "heavy"))


def new_items(world: RecsysWorld, day: int, new_days: int = 7) -> np.ndarray:
    """Bool per item: launched in the ``new_days`` days before ``day`` (or on it)."""
    launch = world.items.launch_day
    return (launch > day - new_days) & (launch <= day)


def _keep_items(relevant: RelevantItems, keep: np.ndarray) -> RelevantItems:
    mask = keep[relevant.indices]
    rows = relevant.rows()[mask]
    indptr = np.zeros(relevant.n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=relevant.n_users), out=indptr[1:])
    return RelevantItems(indptr, relevant.indices[mask])


def _keep_users(relevant: RelevantItems, keep: np.ndarray) -> RelevantItems:
    counts = np.where(keep, relevant.counts(), 0)
    mask = np.repeat(keep, relevant.counts())
    indptr = np.zeros(relevant.n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return RelevantItems(indptr, relevant.indices[mask])


def recall_by_slice(
    rankings: Mapping[str, np.ndarray],
    held: HeldOut,
    user_groups: np.ndarray,
    new_item: np.ndarray,
    k: int = 100,
) -> pd.DataFrame:
    """Recall@``k`` on held-out plays per user group and per item age.

    ``user_groups`` labels each of ``held.users`` (e.g. :func:`activity_groups`);
    ``new_item`` marks new items (:func:`new_items`): the ``new items`` column
    counts only held-out plays of those, ``catalogue`` the others. A slice with
    no held-out play is NaN. The last row gives each slice's number of users.
    """
    columns: dict[str, RelevantItems] = {}
    for group in pd.unique(user_groups):
        columns[f"users: {group}"] = _keep_users(held.plays, user_groups == group)
    columns["items: new"] = _keep_items(held.plays, new_item)
    columns["items: catalogue"] = _keep_items(held.plays, ~new_item)
    table = {}
    for name, ranked in rankings.items():
        table[name] = {
            column: (
                recall_at_k(ranked, relevant, k)
                if relevant.counts().any()
                else float("nan")
            )
            for column, relevant in columns.items()
        }
    frame = pd.DataFrame(table).T
    frame.loc["users in slice"] = [
        float((relevant.counts() > 0).sum()) for relevant in columns.values()
    ]
    return frame


# -- ranking --------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    """Each test user's candidate set: the distinct items shown to them.

    Parallel arrays sorted by user: ``user``, ``item``; ``observed`` (engaged
    minutes watched of it in the test period) and ``true`` (true expected
    engaged minutes per impression at the top slot, at the start of the test
    day). ``time`` is when the features are read (the start of the test day).
    """

    user: np.ndarray
    item: np.ndarray
    observed: np.ndarray
    true: np.ndarray
    time: float

    def __len__(self) -> int:
        return len(self.user)

    @property
    def users(self) -> np.ndarray:
        """The distinct users, sorted (row order of :func:`ranked_lists`)."""
        return np.unique(self.user)


def shown_candidates(split: TimeSplit) -> Candidates:
    """The distinct (user, item) pairs the test period showed, with both gains."""
    test = split.test
    n = test.n_items
    keys = test.user * n + test.item
    minutes = np.where(test.engaged, test.minutes, 0.0).astype(np.float64)
    unique, inverse = np.unique(keys, return_inverse=True)
    observed = np.bincount(inverse, weights=minutes, minlength=len(unique))
    users, items = unique // n, unique % n
    snapshot = truth_snapshot(split.world, split.test_day)
    t = split.test_time
    true = np.asarray(
        snapshot.true_engaged_p(users, items, t, 0)
        * snapshot.true_expected_minutes(users, items, t),
        dtype=np.float64,
    )
    return Candidates(users, items, observed, true, t)


def ranked_lists(candidates: Candidates, scores: np.ndarray) -> np.ndarray:
    """``(users, longest set)`` item ids: each user's candidates by descending
    ``scores`` (ties to the lower item id), padded with -1."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(candidates),):
        raise EvaluationInputError(
            f"scores has shape {scores.shape}: give one score per candidate "
            f"({len(candidates)})."
        )
    order = np.lexsort((candidates.item, -scores, candidates.user))
    user = candidates.user[order]
    users, start, counts = np.unique(user, return_index=True, return_counts=True)
    row = np.searchsorted(users, user)
    slot = np.arange(len(user)) - start[row]
    out = np.full((len(users), int(counts.max(initial=1))), -1, dtype=np.int64)
    out[row, slot] = candidates.item[order]
    return out


def _gains(candidates: Candidates, gains: np.ndarray) -> RelevantItems:
    users = candidates.users
    row = np.searchsorted(users, candidates.user)
    positive = gains > 0
    order = np.lexsort((candidates.item[positive], row[positive]))
    indptr = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(np.bincount(row[positive], minlength=len(users)), out=indptr[1:])
    return RelevantItems(
        indptr, candidates.item[positive][order], gains[positive][order]
    )


def ndcg_table(
    candidates: Candidates, scores: Mapping[str, np.ndarray], k: int = 20
) -> pd.DataFrame:
    """NDCG@``k`` of each scoring of the candidates, with the oracle's beside it.

    Columns: ``NDCG@k observed`` and ``NDCG@k true`` (the two gains of the
    module notes) and each divided by the oracle's under the same gains
    (``ratio observed``, ``ratio true``). The oracle row ranks by the true
    gain.
    """
    rows = {ORACLE: candidates.true, **scores}
    gains = {
        "observed": _gains(candidates, candidates.observed),
        "true": _gains(candidates, candidates.true),
    }
    table = {
        name: {
            f"NDCG@{k} {g}": ndcg_at_k(ranked_lists(candidates, s), rel, k)
            for g, rel in gains.items()
        }
        for name, s in rows.items()
    }
    frame = pd.DataFrame(table).T
    for g in gains:
        frame[f"ratio {g}"] = (
            frame[f"NDCG@{k} {g}"] / frame.loc[ORACLE, f"NDCG@{k} {g}"]
        )
    return frame


def play_calibration(
    engaged: np.ndarray, p_play: np.ndarray, num_bins: int = 10
) -> tuple[dict[str, float], ReliabilityDiagram]:
    """The play head against what happened: ECE (equal-mass bins), predicted ÷
    observed engaged rate, and the reliability diagram."""
    diagram = reliability_diagram(
        engaged, p_play, num_bins=num_bins, strategy="quantile"
    )
    return (
        {
            "ECE": diagram.ece,
            "predicted / observed": calibration_ratio(engaged, p_play),
            "mean predicted": float(np.mean(p_play)),
            "observed rate": float(np.mean(engaged)),
        },
        diagram,
    )


# -- objectives -----------------------------------------------------------------------


def feed_outcomes(
    world: RecsysWorld,
    day: int,
    users: np.ndarray,
    feeds: Mapping[str, np.ndarray],
    feed_size: int = 20,
) -> pd.DataFrame:
    """What each feed would do, in expectation under the truth at the start of ``day``.

    ``feeds`` maps a name to ``(len(users), >= feed_size)`` item ids, best first
    (-1: empty slot). Per feed (averaged over users): expected clicks, engaged
    plays and engaged minutes (position bias and each user's patience
    included: slot ``p`` of the feed is seen as the world's users see it), and
    the share of the feed's items that are clickbait (a hidden attribute: only
    the world can say).
    """
    snapshot = truth_snapshot(world, day)
    t = day * SECONDS_PER_DAY
    users = np.asarray(users, dtype=np.int64)
    position = np.arange(feed_size)[None, :]
    rows = {}
    for name, feed in feeds.items():
        top = np.asarray(feed)[:, :feed_size]
        if top.shape != (len(users), feed_size):
            raise EvaluationInputError(
                f"feed {name!r} has shape {np.shape(feed)}: it needs one row per "
                f"user ({len(users)}) and at least {feed_size} slots."
            )
        shown = top >= 0
        items = np.maximum(top, 0)
        u = users[:, None]
        clicks = snapshot.true_click_p(u, items, t, position) * shown
        plays = snapshot.true_engaged_p(u, items, t, position) * shown
        minutes = plays * snapshot.true_expected_minutes(u, items, t)
        bait = world.items.clickbait[items].astype(bool) & shown
        rows[name] = {
            "clicks per feed": float(clicks.sum(axis=1).mean()),
            "engaged plays per feed": float(plays.sum(axis=1).mean()),
            "engaged minutes per feed": float(minutes.sum(axis=1).mean()),
            "clickbait share": float(bait.sum() / max(shown.sum(), 1)),
        }
    return pd.DataFrame(rows).T
