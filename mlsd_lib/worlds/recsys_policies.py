"""Built-in feed policies: random, popular, the legacy system, and the oracle.

Introduced in ``casestudies/recommender/index.md`` (the synthetic world). Every
model in the case study is trained on logs some *earlier* system produced, and
compared with simple baselines and with the best possible feed:

* :class:`RandomPolicy`: uniform over what the user may see. Exact
  propensities, no bias, useless feeds: the cleanest data for off-policy
  evaluation and the floor of every metric.
* :class:`PopularityPolicy`: the most engaged-with items so far in the user's
  region (learned from the log it observes). The baseline a personalized
  model must beat, and the policy whose feedback loop concentrates plays on
  a few titles.
* :class:`LegacyPolicy`: the system in production before the book's
  two-tower model: personalized but imperfect (a stale, noisy picture of each
  user's taste and genre affinities, no idea of duration preference, quality
  or clickbait), with impression discounting and epsilon exploration whose
  per-slot propensities are exact and logged. Its logs are the case study's
  training data, so it shows many users many different items, not only the
  popular ones.
* :class:`OraclePolicy`: each user's true top feed at that moment (the
  ceiling; ``world.oracle_policy()`` builds it).

All are deterministic given their seed and what they observed: each batch's
randomness is drawn from ``(seed, first request id)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.recsys_feed import FeedRequest, FeedResponse
from mlsd_lib.worlds.recsys_log import RecsysLog, source_code
from mlsd_lib.worlds.recsys_truth import (
    SECONDS_PER_DAY,
    lean_toward,
    pair_cells,
    sorted_union,
    top_k_rows,
    unit_vectors,
)

if TYPE_CHECKING:
    from mlsd_lib.worlds.recsys import RecsysWorld

__all__ = [
    "CatalogueTooSmall",
    "LegacyPolicy",
    "OraclePolicy",
    "PolicySettingError",
    "PopularityPolicy",
    "RandomPolicy",
]

#: Scores a policy holds at once (rows x available items), about 64 MB.
_BLOCK = 1 << 24
#: The pool day of a user who has no pool yet.
_NO_POOL = np.iinfo(np.int32).min
#: A score low enough that top-K never picks it while an eligible item is left.
_NEVER = np.float32(-1e9)


class PolicySettingError(MlsdError, ValueError):
    """A built-in policy was given an impossible setting; the message names it."""


class CatalogueTooSmall(MlsdError, RuntimeError):
    """A user has fewer eligible, unwatched items than a feed has slots."""


def _batch_rng(seed: int, request: FeedRequest) -> np.random.Generator:
    first = int(request.request_id[0]) if len(request) else 0
    return np.random.default_rng(np.random.SeedSequence([seed, 0x9011C, first]))


def _row_blocks(n_rows: int, n_cols: int):
    step = max(1, _BLOCK // max(n_cols, 1))
    for lo in range(0, n_rows, step):
        yield slice(lo, min(lo + step, n_rows))


class _WatchHistory:
    """The (user, item) pairs a policy has seen engaged plays of (sorted keys)."""

    def __init__(self, n_items: int) -> None:
        self.n_items = n_items
        self.keys = np.empty(0, dtype=np.int64)

    def add(self, users: np.ndarray, items: np.ndarray) -> None:
        if len(users):
            self.keys = sorted_union(self.keys, users * self.n_items + items)

    def contains(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return _sorted_contains(self.keys, users * self.n_items + items)

    def per_user(self, users: np.ndarray) -> np.ndarray:
        """How many watched items each user has."""
        lo = np.searchsorted(self.keys, users * self.n_items)
        return np.searchsorted(self.keys, (users + 1) * self.n_items) - lo


def _first_unwatched(
    history: _WatchHistory, users: np.ndarray, ranked: np.ndarray, k: int
) -> np.ndarray:
    """Per row, the first ``k`` items of ``ranked`` the user has not watched."""
    watched = history.contains(users[:, None], ranked)
    order = np.argsort(watched, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(ranked, order, axis=1)


class RandomPolicy:
    """``feed_size`` distinct items, uniform over what each user may see now.

    Each slot's propensity is exactly ``1 / (items the user may see)``: a
    uniformly random subset (Floyd's algorithm) in a uniformly random order
    puts every item in every slot with that probability.
    """

    version = "random"

    def __init__(self, world: RecsysWorld, seed: int = 0) -> None:
        self.world = world
        self.seed = seed

    def __call__(self, request: FeedRequest) -> FeedResponse:
        rng = _batch_rng(self.seed, request)
        catalogue = self.world.eligible_catalogue(request.day)
        cells = self.world.user_cells(request.user)
        n = catalogue.counts(cells)
        index = _uniform_subsets(rng, n, request.feed_size)
        items = catalogue.items[catalogue.offsets[cells][:, None] + index]
        propensity = np.broadcast_to(1.0 / n[:, None], items.shape).copy()
        source = np.full(items.shape, source_code("random"), dtype=np.int8)
        return FeedResponse(items, propensity, source, self.version)


def _uniform_subsets(rng: np.random.Generator, n: np.ndarray, k: int) -> np.ndarray:
    """Per row, ``k`` distinct indices in ``[0, n[row])``: a uniform subset in a
    uniform order. Floyd's algorithm, vectorized over rows: ``k`` steps, no
    rejection loop, no (rows x n) matrix."""
    rows = len(n)
    chosen = np.empty((rows, k), dtype=np.int64)
    for step in range(k):
        top = n - k + step
        pick = np.minimum((rng.random(rows) * (top + 1)).astype(np.int64), top)
        taken = (chosen[:, :step] == pick[:, None]).any(axis=1)
        chosen[:, step] = np.where(taken, top, pick)
    order = np.argsort(rng.random((rows, k)), axis=1)
    return np.take_along_axis(chosen, order, axis=1)


class PopularityPolicy:
    """The items with the most engaged plays so far in the user's region.

    Counts start from ``warm_start`` (a log, e.g. the legacy system's) and grow
    with every batch the policy observes; ties break by a fixed random order
    (so an empty history does not show items 0..19 to everyone). With
    ``exclude_watched`` a user never sees again an item they had an engaged
    play of. Deterministic, so each shown item's propensity is 1.
    """

    version = "popularity"

    def __init__(
        self,
        world: RecsysWorld,
        *,
        warm_start: RecsysLog | None = None,
        exclude_watched: bool = True,
        seed: int = 0,
    ) -> None:
        self.world = world
        self.exclude_watched = exclude_watched
        n_regions = world.config.n_regions
        self.counts = np.zeros((n_regions, world.n_items), dtype=np.float64)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x909]))
        self._tie_break = rng.random(world.n_items) * 0.5
        self.history = _WatchHistory(world.n_items)
        if warm_start is not None:
            self.observe(warm_start)

    def observe(self, log: RecsysLog) -> None:
        """Count the engaged plays of ``log`` (and remember who watched what)."""
        engaged = log.engaged
        users, items = log.user[engaged], log.item[engaged]
        region = self.world.users.region[users]
        np.add.at(self.counts, (region, items), 1.0)
        self.history.add(users, items)

    def __call__(self, request: FeedRequest) -> FeedResponse:
        catalogue = self.world.eligible_catalogue(request.day)
        cells = self.world.user_cells(request.user)
        k = request.feed_size
        extra = int(self.history.per_user(request.user).max()) if len(request) else 0
        depth = k + (extra if self.exclude_watched else 0)
        n_maturity = self.world.config.n_maturity
        items = np.empty((len(request), k), dtype=np.int64)
        for cell in np.unique(cells):
            rows = np.flatnonzero(cells == cell)
            allowed = catalogue.items[
                catalogue.offsets[cell] : catalogue.offsets[cell + 1]
            ]
            score = self.counts[cell // n_maturity, allowed] + self._tie_break[allowed]
            top = min(depth, allowed.size)
            best = np.argpartition(-score, top - 1)[:top]
            ranked = allowed[best[np.argsort(-score[best], kind="stable")]]
            ranked = np.broadcast_to(ranked, (rows.size, ranked.size))
            if self.exclude_watched:
                ranked = _first_unwatched(self.history, request.user[rows], ranked, k)
            items[rows] = ranked[:, :k]
        propensity = np.ones(items.shape)
        source = np.full(items.shape, source_code("popular"), dtype=np.int8)
        return FeedResponse(items, propensity, source, self.version)


class LegacyPolicy:
    r"""The production system the logs come from: personalized, imperfect, exploring.

    Two stages, as production systems are built. A *candidate pool* of each
    user's ``pool_size`` best items by

    .. math::

        s_{ui} = w_\tau \langle \tilde\theta_u, \tilde v_i \rangle
                 + w_g \tilde A_{u, g_i} + w_a \tilde a_i

    among the items the user may see and has not played is built at the
    user's first session (the batch job), extended with each day's launches,
    and rebuilt once most of it has been shown or played. Per session the pool
    is re-ranked with fresh signals: items played since are removed (a
    business rule) and each item is demoted by ``gamma`` for every time it was
    shown to the user in the last day (so a user's sessions differ), and the
    top ``feed_size`` are the base feed.

    The tilde quantities are the legacy system's estimates, fixed when it was
    built: tastes as they were on day 0 leaning toward the truth by
    ``taste_knowledge`` (cosine about 0.7), item vectors by ``item_knowledge``,
    affinities and appeal with Gaussian noise of sd ``noise``. It knows
    nothing of duration preferences, quality or clickbait, and never updates
    its picture of tastes (it does not see the drift).

    Exploration: each slot independently, with probability ``epsilon``, is
    replaced by an item drawn uniformly from the eligible available
    catalogue of the user's cell (size :math:`N`); so the logged propensity of
    the item :math:`j` shown in a slot whose base item is :math:`b` is exactly
    :math:`(1 - \epsilon) 1[j = b] + \epsilon / N`. (An exploration draw can
    repeat an item already in the feed; with thousands of items it rarely
    does.) Source codes: ``personalized`` for base slots, ``explore`` for
    replaced ones.
    """

    version = "legacy-v1"

    def __init__(
        self,
        world: RecsysWorld,
        *,
        epsilon: float = 0.1,
        seed: int = 0,
        pool_size: int = 50,
        taste_knowledge: float = 0.7,
        item_knowledge: float = 0.8,
        noise: float = 0.5,
        gamma: float = 1.0,
        taste_weight: float = 4.0,
        genre_weight: float = 1.0,
        appeal_weight: float = 0.6,
    ) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise PolicySettingError(
                f"LegacyPolicy epsilon (the share of exploration slots) must be "
                f"in [0, 1], got {epsilon}."
            )
        if pool_size < world.config.feed_size:
            raise PolicySettingError(
                f"LegacyPolicy pool_size ({pool_size}) must be at least the feed "
                f"size ({world.config.feed_size})."
            )
        self.world = world
        self.epsilon = float(epsilon)
        self.seed = seed
        self.gamma = np.float32(gamma)
        self.pool_size = int(pool_size)
        c, us, it = world.config, world.users, world.items
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x1E6AC7]))
        taste = lean_toward(
            us.taste0, unit_vectors(rng, c.n_users, c.latent_dim), taste_knowledge
        )
        affinity = us.genre_affinity + noise * rng.standard_normal(
            us.genre_affinity.shape
        )
        latent = lean_toward(
            it.latent, unit_vectors(rng, len(it), c.latent_dim), item_knowledge
        )
        appeal = it.appeal + noise * rng.standard_normal(len(it))
        # The score as one inner product, [taste, genre affinity, 1] . [latent,
        # one-hot genre, appeal], plus one-hot region and maturity limit against
        # a large penalty for what the user may not see: one matmul scores the
        # whole catalogue for a mixed batch of users (big blocks are what make
        # top-K fast).
        region_penalty = np.where(it.regions, 0.0, _NEVER)
        maturity_penalty = np.where(
            it.maturity[:, None] > np.arange(c.n_maturity)[None, :], _NEVER, 0.0
        )
        self._user_vectors = np.hstack(
            [
                taste_weight * taste,
                genre_weight * affinity,
                np.ones((c.n_users, 1)),
                np.eye(c.n_regions)[us.region],
                np.eye(c.n_maturity)[us.maturity_limit],
            ]
        ).astype(np.float32)
        self._item_vectors = np.hstack(
            [
                latent,
                np.eye(c.n_genres)[it.genre],
                appeal_weight * appeal[:, None],
                region_penalty,
                maturity_penalty,
            ]
        ).astype(np.float32)
        self._day_vectors: tuple[int, np.ndarray] | None = None
        self.history = _WatchHistory(world.n_items)
        self._pool_day = np.full(c.n_users, _NO_POOL, dtype=np.int32)
        self._pool_items = np.zeros((c.n_users, self.pool_size), dtype=np.int32)
        self._pool_scores = np.zeros((c.n_users, self.pool_size), dtype=np.float32)
        self._recent_keys = np.empty(0, dtype=np.int64)
        self._recent_time = np.empty(0, dtype=np.float64)

    def observe(self, log: RecsysLog) -> None:
        """Remember plays (to remove them) and the last day's impressions."""
        engaged = log.engaged
        self.history.add(log.user[engaged], log.item[engaged])
        if len(log) == 0:
            return
        keys = log.user * self.world.n_items + log.item
        horizon = log.time[-1] - SECONDS_PER_DAY
        fresh = self._recent_time >= horizon
        self._recent_keys = np.concatenate([self._recent_keys[fresh], keys])
        self._recent_time = np.concatenate([self._recent_time[fresh], log.time])

    def base_ranking(self, request: FeedRequest) -> np.ndarray:
        """The feed before exploration: (requests, feed_size) item indices."""
        users, k, day = request.user, request.feed_size, request.day
        recent = self._recent_for(users)
        n_items = self.world.n_items
        # A pool is built at the user's first session, and rebuilt when most
        # of it has been shown in the last day or played (a heavy user).
        pool = self._pool_items[users].astype(np.int64)
        shown = recent.times(users[:, None] * n_items + pool)
        played = self.history.contains(users[:, None], pool)
        stale = (self._pool_day[users] == _NO_POOL) | (
            ((shown > 0) | played).sum(axis=1) > self.pool_size - k
        )
        if stale.any():
            self._build_pools(np.unique(users[stale]), day, recent)
        behind = self._pool_day[users] < day
        if behind.any():
            self._add_launches(np.unique(users[behind]), day)
        changed = np.flatnonzero(stale | behind)
        if changed.size:  # look up only the pools that changed again
            rows = users[changed]
            pool[changed] = self._pool_items[rows]
            shown[changed] = recent.times(rows[:, None] * n_items + pool[changed])
            played[changed] = self.history.contains(rows[:, None], pool[changed])
        score = self._pool_scores[users] - self.gamma * shown
        score[played] = _NEVER
        order = np.argsort(-score, axis=1, kind="stable")[:, :k]
        if np.any(np.take_along_axis(score, order, axis=1) <= _NEVER / 2):
            raise CatalogueTooSmall(
                f"a user has fewer than feed_size={k} eligible, unwatched items "
                f"on day {day}: build the world with more items (n_items)."
            )
        return np.take_along_axis(pool, order, axis=1)

    def _build_pools(self, users: np.ndarray, day: int, recent: _Counts) -> None:
        """The candidate pool of each of ``users`` over today's catalogue, with
        recently shown items demoted and played ones left out."""
        available = self.world.eligible_catalogue(day).available
        if self._day_vectors is None or self._day_vectors[0] != day:
            self._day_vectors = (day, self._item_vectors[available].T.copy())
        vectors = self._day_vectors[1]
        n_items = self.world.n_items
        for block in _row_blocks(users.size, available.size):
            rows = users[block]
            scores = self._user_vectors[rows] @ vectors
            r, c = pair_cells(recent.keys, n_items, rows, available)
            scores[r, c] -= self.gamma * recent.times(rows[r] * n_items + available[c])
            r, c = pair_cells(self.history.keys, n_items, rows, available)
            scores[r, c] = 2 * _NEVER
            values, j = top_k_rows(scores, self.pool_size)
            items = available[j]
            # Pools keep the undemoted score: demotion is applied per session.
            values += self.gamma * recent.times(rows[:, None] * n_items + items)
            width = values.shape[1]
            self._pool_items[rows, :width] = items
            self._pool_scores[rows, :width] = values
            self._pool_scores[rows, width:] = 2 * _NEVER
        self._pool_day[users] = day

    def _add_launches(self, users: np.ndarray, day: int) -> None:
        """Merge the items launched since each pool was built into the pool
        (the legacy scores never change otherwise: it does not retrain)."""
        launch_day = self.world.items.launch_day
        available = self.world.eligible_catalogue(day).available
        since = self._pool_day[users]
        for built in np.unique(since):
            group = users[since == built]
            new = available[launch_day[available] > built]
            if new.size:
                scores = self._user_vectors[group] @ self._item_vectors[new].T
                merged_s = np.hstack([self._pool_scores[group], scores])
                merged_i = np.hstack(
                    [self._pool_items[group], np.broadcast_to(new, scores.shape)]
                )
                values, j = top_k_rows(merged_s, self.pool_size)
                self._pool_scores[group] = values
                self._pool_items[group] = np.take_along_axis(merged_i, j, axis=1)
            self._pool_day[group] = day

    def _recent_for(self, users: np.ndarray) -> _Counts:
        """How often each (user, item) was shown to these users in the last day."""
        wanted = np.zeros(self.world.n_users, dtype=bool)
        wanted[users] = True
        keys = self._recent_keys[wanted[self._recent_keys // self.world.n_items]]
        return _Counts(*np.unique(keys, return_counts=True))

    def __call__(self, request: FeedRequest) -> FeedResponse:
        base = self.base_ranking(request)
        rng = _batch_rng(self.seed, request)
        catalogue = self.world.eligible_catalogue(request.day)
        cells = self.world.user_cells(request.user)
        explore = rng.random(base.shape) < self.epsilon
        drawn = catalogue.sample(rng, np.broadcast_to(cells[:, None], base.shape))
        items = np.where(explore, drawn, base)
        uniform = self.epsilon / catalogue.counts(cells)[:, None]
        propensity = (1.0 - self.epsilon) * (items == base) + uniform
        source = np.where(
            explore, source_code("explore"), source_code("personalized")
        ).astype(np.int8)
        return FeedResponse(items, propensity, source, self.version)


class _Counts:
    """Occurrences of int64 keys: sorted unique ``keys`` and their ``counts``."""

    def __init__(self, keys: np.ndarray, counts: np.ndarray) -> None:
        self.keys, self.counts = keys, counts

    def times(self, keys: np.ndarray) -> np.ndarray:
        """How many times each of ``keys`` occurred (float32, 0 if never)."""
        if self.keys.size == 0:
            return np.zeros(np.shape(keys), dtype=np.float32)
        at = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        return np.where(self.keys[at] == keys, self.counts[at], 0).astype(np.float32)


def _sorted_contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Whether each of ``keys`` is in ``sorted_keys`` (sorted, unique)."""
    if sorted_keys.size == 0:
        return np.zeros(keys.shape, dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return sorted_keys[at] == keys


class OraclePolicy:
    """Every user's true top feed now: the ceiling of any policy.

    Ranks the eligible available catalogue by the world's truth (current
    tastes and watch history, the day's trends) with
    :meth:`~mlsd_lib.worlds.recsys.RecsysWorld.true_top_k`; putting the best
    item in the most-examined slot is optimal because position bias does not
    depend on the item. Deterministic: propensity 1. It reads the tastes of
    the world it was made from, so make it from the world (or fork) it serves:
    ``fork.oracle_policy()``.
    """

    def __init__(self, world: RecsysWorld, objective: str = "engaged") -> None:
        self.world = world
        self.objective = objective
        self.version = f"oracle-{objective}"

    def __call__(self, request: FeedRequest) -> FeedResponse:
        items = self.world.true_top_k(
            request.user,
            request.feed_size,
            request.day * SECONDS_PER_DAY,
            self.objective,
        )
        propensity = np.ones(items.shape)
        source = np.full(items.shape, source_code("oracle"), dtype=np.int8)
        return FeedResponse(items, propensity, source, self.version)
