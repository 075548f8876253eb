"""One feed request, stage by stage: Redis, user tower, faiss, ranker, re-ranking.

Introduced in ``casestudies/recommender/index.md`` (panel B, "One feed
request"). :class:`FeedPipeline` runs the five stages of the page's budget
table, each timed (:class:`~mlsd_lib.serving.gateway.budgets.StageClock`) and
each dependency call bounded by a timeout
(:class:`~mlsd_lib.serving.gateway.budgets.DependencyPools`):

1. ``features`` (10 ms p99): the user's history, genre counts and windowed
   counts in **one** Redis round trip
   (:func:`~mlsd_lib.features.histories.read_histories`);
2. ``user_tower`` (10 ms): the user tower on the model server (Triton), one row
   in, one embedding out (:func:`~mlsd_lib.recsys.feed_features.user_tower_inputs`);
3. ``ann`` (15 ms): faiss, in this process, top ``retrieval_k`` (500) by inner
   product, merged with "continue watching" and "trending in region"
   (:func:`~mlsd_lib.serving.gateway.candidates.merge_candidates`), each
   candidate tagged with its source, and every candidate's two-tower score;
4. ``ranker`` (50 ms): the ranker on the model server over all the candidates,
   item features from the in-memory catalogue and tables, each candidate's
   two-tower score among them; ``final = p_play x e_minutes``;
5. ``rerank`` (10 ms): filters (already watched, region, maturity, launched;
   a :class:`~mlsd_lib.reranking.filters.FilterReport`), the diversity
   re-ranker (at most 3 per series, at least 4 genres), one exploration slot
   drawn from the new items of the user's cell, ``page_size`` items out.

**Degraded mode.** If Redis or a model fails, or does not answer within its
timeout, the request does not fail: it answers the precomputed
popular-in-region feed of the user's cell
(:class:`~mlsd_lib.recsys.feed_tables.FeedTables`), minus what the user has
already watched when the history was read, with ``degraded=True`` and the
reason. It needs neither Redis nor Triton. Budgets are p99 *targets*: a stage
over its budget is reported in the result, not punished.

The steps are methods that take arrays and return arrays
(:meth:`FeedPipeline.candidates`, :meth:`FeedPipeline.rerank`, ...), so a
test can run any of them alone; :meth:`FeedPipeline.serve` runs them in order.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.histories import Histories, read_histories
from mlsd_lib.features.history_fold import HistoryFold
from mlsd_lib.index.ann import AnnIndex
from mlsd_lib.index.threads import faiss_threads
from mlsd_lib.index.versions import require_model_version
from mlsd_lib.recsys.feed_catalogue import FeedCatalogue
from mlsd_lib.recsys.feed_features import (
    ranker_inputs,
    ranker_schema,
    user_tower_inputs,
    user_tower_schema,
)
from mlsd_lib.recsys.feed_tables import FeedTables
from mlsd_lib.reranking.diversity import DiversityRules, diversify
from mlsd_lib.reranking.exploration import ExplorationConfig, explore
from mlsd_lib.reranking.filters import (
    FilterReport,
    apply_filters,
    eligible,
    not_seen,
    rating_at_most,
)
from mlsd_lib.serving.gateway.budgets import DependencyPools, StageClock
from mlsd_lib.serving.gateway.candidates import (
    MergedCandidates,
    SourceCandidates,
    merge_candidates,
)
from mlsd_lib.serving.gateway.model_calls import ModelEndpoint, call_model
from mlsd_lib.serving.gateway.scoring import ModelFailed
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

logger = logging.getLogger(__name__)

__all__ = [
    "FEED_STAGE_BUDGETS_MS",
    "FeedDeployError",
    "FeedModels",
    "FeedPipeline",
    "FeedResult",
    "FeedSettings",
    "FeedUser",
    "Ranked",
]

#: The index page's p99 budget per stage (ms), in the order the stages run.
FEED_STAGE_BUDGETS_MS: dict[str, float] = {
    "features": 10.0,
    "user_tower": 10.0,
    "ann": 15.0,
    "ranker": 50.0,
    "rerank": 10.0,
}
#: Candidate sources, in priority order: an item two sources propose is
#: credited to the first (the mask of all proposers is logged too).
SOURCES = ("continue_watching", "retrieval", "trending")
#: The source of an exploration slot and of the degraded feed's items.
EXPLORE, POPULAR = "explore", "popular"
#: What the user tower returns and the ranker's two heads.
EMBEDDING, P_PLAY, E_MINUTES = "embedding", "p_play", "e_minutes"
#: The exploration settings of a page that has no exploration slot.
NO_EXPLORATION = ExplorationConfig(n_slots=0)
#: Failures that degrade a request instead of failing it: the dependencies'.
DEPENDENCY_ERRORS = (redis.RedisError, OSError, TimeoutError, ModelFailed)


class FeedDeployError(MlsdError, ValueError):
    """Models, index or catalogue that cannot serve together; says how to fix."""


@dataclass(frozen=True)
class FeedModels:
    """One release as the feed serves it: towers, ranker, index and catalogue.

    Refused at construction (:class:`FeedDeployError`, or
    :class:`~mlsd_lib.index.versions.IndexVersionMismatch`) when the index was
    embedded by another model than the user tower's (``index.model_version``
    must be the user tower's served name, ``<name>-v<n>``), when the
    catalogue's embeddings are not the index's width, or when a model was
    registered with other input columns than the feed builds.
    """

    release: str
    user_tower: ModelEndpoint
    ranker: ModelEndpoint
    index: AnnIndex
    catalogue: FeedCatalogue
    history_len: int

    def __post_init__(self) -> None:
        require_model_version(self.index, self.user_tower.model_name)
        if self.catalogue.embeddings.shape[1] != self.index.d:
            raise FeedDeployError(
                f"the catalogue's embeddings have {self.catalogue.embeddings.shape[1]} "
                f"dimensions, the index {self.index.d}: load both from one release."
            )
        for endpoint, schema in (
            (self.user_tower, user_tower_schema(self.history_len)),
            (self.ranker, ranker_schema()),
        ):
            recorded = [
                f"{tensor}:{column}"
                for tensor, columns in endpoint.columns.items()
                for column in columns
            ]
            built = [name for name, _ in schema]
            if recorded != built:
                raise FeedDeployError(
                    f"{endpoint.version} was registered with input columns "
                    f"{recorded[:6]}... but the feed builds {built[:6]}...: "
                    "register it with the schema of mlsd_lib.recsys.feed_features."
                )

    def versions(self) -> dict[str, str]:
        """What served a request: the release and each part of it."""
        return {
            "release": self.release,
            "user_tower": self.user_tower.version,
            "ranker": self.ranker.version,
            "index": str(self.index.model_version),
        }


@dataclass(frozen=True)
class FeedSettings:
    """How deep each source reaches, the page rules and the dependency timeouts.

    ``rerank_depth``: how many of the best filtered candidates the diversity
    re-ranker chooses the page from.

    ``feature_timeout_s`` and ``model_timeout_s`` are hard limits (then the
    degraded feed); ``budgets_ms`` the p99 targets the stages are timed
    against.
    """

    retrieval_k: int = 500
    trending_k: int = 50
    continue_recent: int = 10
    continue_per_series: int = 2
    relevance_weight: float = 0.7
    max_per_series: int = 3
    min_genres: int = 4
    rerank_depth: int = 150
    exploration: ExplorationConfig = field(
        default_factory=lambda: ExplorationConfig(
            n_slots=1, earliest_position=3, n_draws=128
        )
    )
    feature_timeout_s: float = 0.05
    model_timeout_s: float = 0.2
    budgets_ms: Mapping[str, float] = field(
        default_factory=lambda: dict(FEED_STAGE_BUDGETS_MS)
    )

    def __post_init__(self) -> None:
        if (
            min(
                self.retrieval_k,
                self.trending_k,
                self.continue_recent,
                self.rerank_depth,
            )
            < 1
        ):
            raise FeedDeployError(
                "retrieval_k, trending_k, continue_recent and rerank_depth must be "
                ">= 1."
            )
        if min(self.feature_timeout_s, self.model_timeout_s) <= 0:
            raise FeedDeployError("the dependency timeouts must be positive.")


@dataclass(frozen=True)
class FeedUser:
    """Who asks: the user, the profile's region and maturity setting, how many
    items."""

    user_id: int
    region: int
    maturity_limit: int
    page_size: int = 20


@dataclass(frozen=True)
class Ranked:
    """The candidates with their scores (aligned): retrieval score (the
    two-tower inner product), ``p_play``, ``e_minutes`` and ``final``."""

    candidates: MergedCandidates
    retrieval_score: np.ndarray
    p_play: np.ndarray
    e_minutes: np.ndarray

    @property
    def final(self) -> np.ndarray:
        return self.p_play * self.e_minutes


@dataclass(frozen=True)
class FeedResult:
    """One answered feed: the page, slot by slot, and how it was made.

    Per slot (aligned, best first): ``items``, ``sources``; the scores, NaN
    where a slot has none (the degraded feed's items, an exploration slot's
    ranker scores); ``propensity``: the probability an exploration slot was
    drawn with (NaN for the others). ``filters`` is None when the request
    degraded before filtering.
    """

    user: FeedUser
    items: np.ndarray
    sources: list[str]
    retrieval_score: np.ndarray
    p_play: np.ndarray
    e_minutes: np.ndarray
    final: np.ndarray
    propensity: np.ndarray
    versions: dict[str, str]
    degraded: bool
    reason: str
    timings_ms: dict[str, float]
    over_budget: tuple[str, ...]
    candidates: dict[str, int] = field(default_factory=dict)
    filters: FilterReport | None = None
    unmet: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.items)


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan, dtype=np.float64)


class FeedPipeline:
    """The feed for one user at a time, on ``models`` (swappable per request).

    ``client`` and ``fold`` are the Redis the history fold writes and the fold
    itself; ``tables`` the precomputed trending, popular and exploration
    tables; ``clock()`` the time now in seconds since the epoch (the
    history's clock) and ``world_epoch`` that clock's value at world day 0
    (item launch days count from it). ``pools`` runs the blocking Redis and
    model calls (dependencies ``"redis"`` and ``"models"``).
    """

    def __init__(
        self,
        client: redis.Redis,
        fold: HistoryFold,
        tables: FeedTables,
        pools: DependencyPools,
        *,
        clock: Callable[[], float],
        world_epoch: float,
        settings: FeedSettings | None = None,
        seed: int = 0,
    ) -> None:
        self.client = client
        self.fold = fold
        self.tables = tables
        self.pools = pools
        self.clock = clock
        self.world_epoch = world_epoch
        self.settings = settings or FeedSettings()
        self.seed = seed
        self._requests = itertools.count()

    # -- the steps, each usable on its own ----------------------------------------
    def read_user(self, user_id: int) -> Histories:
        """Stage 1, blocking: the user's fold state in one round trip."""
        return read_histories(self.client, self.fold, [user_id])

    def candidates(
        self,
        models: FeedModels,
        user: FeedUser,
        history: np.ndarray,
        embedding: np.ndarray,
    ) -> tuple[MergedCandidates, np.ndarray]:
        """Stage 3: the merged sources and each candidate's two-tower score.

        faiss searches on one thread: a serving process answers many requests
        at once, one per core, and a single query gains nothing from more.
        """
        s = self.settings
        k = min(s.retrieval_k, models.index.ntotal)
        with faiss_threads(1):
            scores, ids = models.index.search(embedding, k)
        catalogue = models.catalogue
        sources = [
            SourceCandidates.of(
                SOURCES[0],
                catalogue.continue_watching(
                    history, recent=s.continue_recent, per_series=s.continue_per_series
                ),
            ),
            SourceCandidates.of(SOURCES[1], ids[0], scores[0]),
            SourceCandidates.of(
                SOURCES[2], self.tables.trending[user.region][: s.trending_k]
            ),
        ]
        merged = merge_candidates(sources)
        retrieval = catalogue.embeddings[merged.items] @ embedding[0]
        return merged, retrieval.astype(np.float64)

    def ranker_inputs(
        self,
        models: FeedModels,
        histories: Histories,
        items: np.ndarray,
        now: float,
        retrieval_score: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """Stage 4's inputs: the ranker's features of every candidate, its
        two-tower score (``retrieval_score``, aligned with ``items``) among
        them, the item statistics from the tables."""
        return ranker_inputs(
            histories, 0, items, models.catalogue.items, now, now - self.world_epoch,
            retrieval_score=retrieval_score,
            item_impressions=self.tables.item_impressions,
            item_engaged=self.tables.item_engaged,
        )  # fmt: skip

    def rerank(
        self,
        models: FeedModels,
        user: FeedUser,
        history: np.ndarray,
        ranked: Ranked,
        embedding: np.ndarray,
        world_now: float,
        rng: np.random.Generator,
    ) -> tuple[dict[str, Any], FilterReport, tuple[str, ...]]:
        """Stage 5: filter, diversify, explore; the page as aligned columns.

        ``embedding`` is the user's (d,) vector: an exploration slot's item
        was not retrieved, and gets its two-tower score from it.
        """
        catalogue, s = models.catalogue, self.settings
        items = ranked.candidates.items
        day = np.floor(world_now / SECONDS_PER_DAY)
        kept = apply_filters(
            items,
            {
                "watched": not_seen(items, history[history >= 0]),
                "region": eligible(items, catalogue.regions[:, user.region]),
                "maturity": rating_at_most(
                    items, catalogue.maturity, user.maturity_limit
                ),
                "launched": catalogue.items.launch_day[items] <= day,
            },
        )
        slots = s.exploration.n_slots if user.page_size > s.exploration.n_slots else 0
        rules = DiversityRules(
            page_size=user.page_size - slots,
            relevance_weight=s.relevance_weight,
            max_per_group=s.max_per_series,
            min_distinct=s.min_genres,
        )
        # The page is built from the best survivors only: MMR costs a pass over
        # its candidates per slot, and an item ranked below ``rerank_depth``
        # would need a similarity penalty larger than the whole score range.
        best = np.argsort(-ranked.final[kept.positions], kind="stable")
        at = kept.positions[np.sort(best[: s.rerank_depth])]
        page = diversify(
            ranked.final[at],
            catalogue.embeddings[items[at]],
            groups=catalogue.items.series[items[at]],
            genres=catalogue.items.genre[items[at]],
            rules=rules,
        )
        chosen = at[page.positions]  # positions into the candidates
        pool = self.tables.pools[self.tables.cell(user.region, user.maturity_limit)]
        fresh = not_seen(pool.items, history[history >= 0])
        n_explore = slots if fresh.any() else 0
        if len(chosen) + n_explore == 0:
            return self.empty_page(), kept.report, page.unmet
        slate = explore(
            items[chosen],
            pool.items[fresh],
            pool.impressions[fresh],
            pool.engaged[fresh],
            rng,
            page_size=len(chosen) + n_explore,
            config=s.exploration if n_explore else NO_EXPLORATION,
        )
        explored = slate.is_exploration
        n = len(slate.items)
        column = np.full(n, -1, dtype=np.int64)
        column[~explored] = chosen
        ranked_slot = ~explored

        def pick(values: np.ndarray) -> np.ndarray:
            out = _nan(n)
            out[ranked_slot] = values[column[ranked_slot]]
            return out

        names = ranked.candidates.source_names()
        sources = [
            EXPLORE if e else names[c] for e, c in zip(explored, column, strict=True)
        ]
        retrieval = pick(ranked.retrieval_score)
        if explored.any():
            retrieval[explored] = (
                catalogue.embeddings[slate.items[explored]] @ embedding
            )
        propensity = _nan(n)
        propensity[slate.positions] = slate.probabilities
        page_columns = {
            "items": slate.items,
            "sources": sources,
            "retrieval_score": retrieval,
            "p_play": pick(ranked.p_play),
            "e_minutes": pick(ranked.e_minutes),
            "final": pick(ranked.final),
            "propensity": propensity,
        }
        return page_columns, kept.report, page.unmet

    def degraded(self, user: FeedUser, history: np.ndarray | None) -> dict[str, Any]:
        """The popular-in-region page of the user's cell, minus what they
        watched (when the history is known)."""
        popular = self.tables.popular[
            self.tables.cell(user.region, user.maturity_limit)
        ]
        if history is not None:
            popular = popular[not_seen(popular, history[history >= 0])]
        return self.unscored_page(popular[: user.page_size], POPULAR)

    @staticmethod
    def unscored_page(items: np.ndarray, source: str) -> dict[str, Any]:
        """A page of ``items`` from one ``source`` that scored none of them."""
        n = len(items)
        return {
            "items": np.asarray(items, dtype=np.int64),
            "sources": [source] * n,
            "retrieval_score": _nan(n),
            "p_play": _nan(n),
            "e_minutes": _nan(n),
            "final": _nan(n),
            "propensity": _nan(n),
        }

    def empty_page(self) -> dict[str, Any]:
        """No item at all (every candidate filtered out, nothing to explore)."""
        return self.unscored_page(np.zeros(0, np.int64), POPULAR)

    # -- the request ----------------------------------------------------------------
    async def serve(self, models: FeedModels, user: FeedUser) -> FeedResult:
        """Run the five stages for ``user``; the degraded feed on any dependency
        failure or timeout (never an exception for those)."""
        s = self.settings
        clock = StageClock(s.budgets_ms)
        now = self.clock()
        world_now = now - self.world_epoch
        rng = np.random.default_rng([self.seed, user.user_id, next(self._requests)])
        history: np.ndarray | None = None
        counts: dict[str, int] = {}
        try:
            with clock.stage("features"):
                histories = await self.pools.call(
                    "redis",
                    s.feature_timeout_s,
                    lambda: self.read_user(user.user_id),
                    "Redis (the user's history)",
                )
            history = histories.items[0]
            inputs = user_tower_inputs(histories, 0, user.region, user.maturity_limit)
            with clock.stage("user_tower"):
                out = await self.pools.call(
                    "models",
                    s.model_timeout_s,
                    lambda: call_model(models.user_tower, inputs),
                    f"the user tower ({models.user_tower.version})",
                )
            embedding = np.ascontiguousarray(out[EMBEDDING], dtype=np.float32)
            with clock.stage("ann"):
                merged, retrieval = self.candidates(models, user, history, embedding)
                counts = merged.credited()
            with clock.stage("ranker"):
                features = self.ranker_inputs(
                    models, histories, merged.items, now, retrieval
                )
                heads = await self.pools.call(
                    "models",
                    s.model_timeout_s,
                    lambda: call_model(models.ranker, features),
                    f"the ranker ({models.ranker.version})",
                )
            ranked = Ranked(
                merged,
                retrieval,
                heads[P_PLAY].reshape(-1).astype(np.float64),
                heads[E_MINUTES].reshape(-1).astype(np.float64),
            )
            with clock.stage("rerank"):
                page, report, unmet = self.rerank(
                    models, user, history, ranked, embedding[0], world_now, rng
                )
        except DEPENDENCY_ERRORS as error:
            reason = f"{type(error).__name__}: {error}"
            return self._result(
                models, user, self.degraded(user, history), clock, counts, reason
            )
        return self._result(models, user, page, clock, counts, "", report, unmet)

    def _result(
        self,
        models: FeedModels,
        user: FeedUser,
        page: dict[str, Any],
        clock: StageClock,
        counts: dict[str, int],
        reason: str,
        report: FilterReport | None = None,
        unmet: tuple[str, ...] = (),
    ) -> FeedResult:
        return FeedResult(
            user=user,
            versions=models.versions(),
            degraded=bool(reason),
            reason=reason,
            timings_ms=clock.timings_ms(),
            over_budget=clock.over_budget(),
            candidates=counts,
            filters=report,
            unmet=unmet,
            **page,
        )
