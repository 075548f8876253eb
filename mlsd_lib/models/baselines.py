"""The baselines a retrieval model must beat: popularity and matrix factorization.

Introduced in ``casestudies/recommender/03_models.ipynb``. A two-tower model earns its
complexity only by beating these on the same held-out positives:

* :class:`MostPopular` recommends the items with the most engaged events,
  optionally with recent events weighing more (a half-life) and per group of
  users (a region). It is also the production fallback when the model path
  fails ("popular in your region"), so it is worth getting right.
* :class:`MatrixFactorization` is implicit-feedback ALS (Hu, Koren and Volinsky
  2008): engaged events become a user-item matrix of confidences ``1 + alpha *
  count``, factorized by alternating least squares. The solver is the
  well-kept ``implicit`` library's (``implicit.cpu.als``); this class only
  builds the matrix and keeps the run seeded and single-threaded, so the same
  seed gives the same factors. MF knows items only by id: it **cannot place a
  new item** (no events, no factor) or a new user, which is what the two-tower's
  content features and user features are for.

Both return ``(len(users), k)`` arrays of item ids, best first.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError
from mlsd_lib.models.ctr import ModelInputError

__all__ = ["MatrixFactorization", "MostPopular", "NotFittedError"]


class NotFittedError(MlsdError, RuntimeError):
    """A baseline was asked to recommend before it was fitted."""


def _check_users(users: np.ndarray, n_users: int) -> np.ndarray:
    users = np.asarray(users, dtype=np.int64)
    if users.ndim != 1:
        raise ModelInputError(f"users must be a 1-d array of ids, got {users.shape}.")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ModelInputError(
            f"user ids must lie in [0, n_users={n_users}); found "
            f"[{users.min()}, {users.max()}]."
        )
    return users


def _check_k(k: int, n_items: int) -> None:
    if not 1 <= k <= n_items:
        raise ModelInputError(f"k must lie in [1, n_items={n_items}], got {k}.")


def _first_k_allowed(
    users: np.ndarray,
    candidates: np.ndarray,
    excluded: np.ndarray,
    n_items: int,
    k: int,
) -> np.ndarray:
    """Per row, the first ``k`` candidates whose (user, item) key is not excluded."""
    keys = users[:, None] * n_items + candidates
    blocked = np.isin(keys, excluded)
    order = np.argsort(blocked, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(candidates, order, axis=1)


class MostPopular:
    """Items ranked by engaged events, optionally recency-decayed and per group.

    ``half_life`` (in the log's time unit): an event ``t`` before the newest
    counts ``0.5 ** (t / half_life)``; ``None`` counts every event once.
    """

    def __init__(self, half_life: float | None = None) -> None:
        if half_life is not None and half_life <= 0:
            raise ModelInputError(f"half_life must be > 0 or None, got {half_life}.")
        self.half_life = half_life
        self.scores_: np.ndarray | None = None
        self.user_group: np.ndarray | None = None

    def fit(
        self,
        interactions: Interactions,
        *,
        user_group: np.ndarray | None = None,
        now: float | None = None,
    ) -> MostPopular:
        """Count ``interactions``' engaged events per item (and per user group).

        ``user_group`` gives each user (``n_users`` entries) a group id, such as
        a region; a group without events falls back to the overall counts.
        ``now`` is the time recency is measured from (default: the newest event).
        """
        positives = interactions.positives()
        n_items = interactions.n_items
        if user_group is None:
            user_group = np.zeros(interactions.n_users, dtype=np.int64)
        user_group = np.asarray(user_group, dtype=np.int64)
        if user_group.shape != (interactions.n_users,) or (
            user_group.size and user_group.min() < 0
        ):
            raise ModelInputError(
                f"user_group must hold one non-negative group id per user "
                f"({interactions.n_users}), got shape {user_group.shape}."
            )
        groups = int(user_group.max()) + 1 if user_group.size else 1
        weights = np.ones(len(positives))
        if self.half_life is not None and len(positives):
            now = float(positives.time.max()) if now is None else float(now)
            weights = 0.5 ** ((now - positives.time) / self.half_life)
        keys = user_group[positives.user] * n_items + positives.item
        scores = np.bincount(keys, weights, minlength=groups * n_items).reshape(
            groups, n_items
        )
        empty = scores.sum(axis=1) == 0
        scores[empty] = scores.sum(axis=0)
        self.scores_ = scores
        self.user_group = user_group
        return self

    def recommend(
        self, users: np.ndarray, k: int, exclude: Interactions | None = None
    ) -> np.ndarray:
        """The ``k`` most popular items for each user's group, best first.

        Items a user has in ``exclude`` (every event of theirs in that log, such
        as what they already watched) are skipped. Ties go to the lower item id.
        """
        if self.scores_ is None or self.user_group is None:
            raise NotFittedError(
                "MostPopular is not fitted: call fit(interactions) first."
            )
        n_items = self.scores_.shape[1]
        users = _check_users(users, len(self.user_group))
        _check_k(k, n_items)
        ranking = np.argsort(-self.scores_, axis=1, kind="stable")
        groups = self.user_group[users]
        if exclude is None or len(exclude) == 0:
            return ranking[groups, :k]
        excluded = np.unique(exclude.user * n_items + exclude.item)
        most = int(np.bincount(exclude.user, minlength=1).max())
        width = min(n_items, k + most)
        return _first_k_allowed(users, ranking[groups, :width], excluded, n_items, k)


class MatrixFactorization:
    """Implicit-feedback ALS on engaged events (``implicit.cpu.als``), seeded.

    ``factors`` per user and item, L2 ``regularization``, confidence ``1 +
    alpha * count`` for a user's engaged events with an item, ``iterations``
    ALS sweeps. One BLAS and one solver thread (``num_threads``): the solver's
    threads update users in an order that changes the last bits of the factors.
    An item with no engaged event in :meth:`fit` keeps a near-zero factor and a
    new item has none at all: MF cannot recommend what it has not seen.
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 10.0,
        iterations: int = 15,
        *,
        seed: int = 0,
        num_threads: int = 1,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.seed = seed
        self.num_threads = num_threads
        self._model = None
        self._seen: sp.csr_matrix | None = None

    def fit(self, interactions: Interactions) -> MatrixFactorization:
        """Factorize the confidence matrix of ``interactions``' engaged events."""
        from implicit.cpu.als import AlternatingLeastSquares

        positives = interactions.positives()
        if len(positives) == 0:
            raise ModelInputError("no engaged events to factorize.")
        counts = sp.csr_matrix(
            (np.ones(len(positives), np.float32), (positives.user, positives.item)),
            shape=(interactions.n_users, interactions.n_items),
        )
        counts.sum_duplicates()
        confidence = counts.copy()
        confidence.data = (1.0 + self.alpha * confidence.data).astype(np.float32)
        # implicit multiplies the matrix by its own alpha: keep that at 1 and
        # pass the confidences themselves, as Hu et al. define them.
        # One BLAS thread: implicit warns otherwise (its solver threads and
        # BLAS threads oversubscribe the cores), and it keeps the run exact.
        with threadpool_limits(limits=1, user_api="blas"):
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                num_threads=self.num_threads,
                random_state=self.seed,
            )
            model.fit(confidence, show_progress=False)
        self._model = model
        self._seen = counts
        return self

    def _fitted(self):
        if self._model is None or self._seen is None:
            raise NotFittedError(
                "MatrixFactorization is not fitted: call fit(interactions) first."
            )
        return self._model

    @property
    def user_factors(self) -> np.ndarray:
        """``(n_users, factors)`` float32."""
        return np.asarray(self._fitted().user_factors)

    @property
    def item_factors(self) -> np.ndarray:
        """``(n_items, factors)`` float32: the vectors an index would hold."""
        return np.asarray(self._fitted().item_factors)

    def recommend(
        self, users: np.ndarray, k: int, exclude_seen: bool = True
    ) -> np.ndarray:
        """Each user's ``k`` items by ``<user factor, item factor>``, best first.

        ``exclude_seen`` skips the items the user engaged with in :meth:`fit`
        (they come last, so a user who has seen almost everything still gets
        ``k``). Scored here, exhaustively, rather than by ``implicit``'s own
        ``recommend``: the same exact top-k as the two-tower's, ties to the lower
        item id.
        """
        self._fitted()
        seen = self._seen
        users = _check_users(users, seen.shape[0])
        _check_k(k, seen.shape[1])
        user_factors, item_factors = self.user_factors, self.item_factors
        out = []
        for start in range(0, len(users), 4096):
            chunk = users[start : start + 4096]
            scores = user_factors[chunk] @ item_factors.T
            if exclude_seen:
                scores[seen[chunk].toarray() > 0] = -np.inf
            out.append(np.argsort(-scores, axis=1, kind="stable")[:, :k])
        if not out:
            return np.zeros((0, k), np.int64)
        return np.concatenate(out).astype(np.int64)
