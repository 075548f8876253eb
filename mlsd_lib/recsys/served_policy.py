"""The world's users served by a deployed release: the feed, batched, as a policy.

Introduced in ``casestudies/recommender/08_monitoring_and_retraining.ipynb`` (step 7,
"Monitoring and retraining"). Monitoring a recommender means watching what the *served*
release does to the users it serves: its recall on what they go on to play, the share of
impressions its feeds give the most popular items, what the launched titles get. In the
world that needs a policy that is the release:
:class:`ServedFeedPolicy` answers the world's hourly batches of feed requests
with the :class:`~mlsd_lib.recsys.feed.FeedModels` that
:func:`~mlsd_lib.recsys.serving.deploy_release` loaded (the same user tower,
faiss index, catalogue and ranker the gateway serves over HTTP), and
:meth:`ServedFeedPolicy.swap` changes release between two batches, as
:meth:`~mlsd_lib.recsys.gateway.FeedService.swap` does between two requests.

Per batch, as :class:`~mlsd_lib.recsys.feed.FeedPipeline` does per request:

1. each user's history fold state strictly before the request, from the
   feature events the policy has observed
   (:func:`~mlsd_lib.features.histories.histories_at`, the offline twin of
   the Redis read: the same values, see
   :mod:`~mlsd_lib.features.histories`);
2. the user tower on the model server, :data:`USER_TOWER_ROWS` rows a call;
3. faiss top ``retrieval_k`` from the release's index, merged with the
   region's trending items (from the tables, rebuilt from the observed log at
   the start of each day, as a batch job would);
4. filters (launched, region, maturity, already watched), then an order:
   by the two-tower score (``rank_by="retrieval"``, the default) or by the
   ranker on the model server over every surviving candidate of the batch at
   once (``rank_by="ranker"``: :func:`~mlsd_lib.recsys.feed_features.ranker_inputs`,
   the serving definition, per request; ``final = p_play x e_minutes``);
5. the best ``feed_size - 1``, and one exploration slot at
   ``explore_position``: an item drawn uniformly from the cell's pool of new
   items (launched within ``new_item_days``), its exact propensity logged.

Why the two-tower score by default: a chapter about monitoring retrieval is
clearer when the feed is the retrieval. The ranker reads the two-tower score as
one of its features (with the item's recent engaged rate and impressions), so
``rank_by="ranker"`` reorders retrieval's candidates rather than replacing its
personalisation. What it
leaves out of the gateway's pipeline, to stay fast enough for days of traffic
in seconds: the diversity re-ranker, continue-watching and Thompson sampling
(the exploration slot is uniform, so its propensity is exact without Monte
Carlo). Between batches the world is an hour ahead of the history the policy
observed last: plays of the current hour reach the features at the next
batch, where the real stream makes them visible within a minute.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.histories import Histories, histories_at
from mlsd_lib.features.history_fold import HistoryFold
from mlsd_lib.index.threads import faiss_threads
from mlsd_lib.models.training import torch_threads
from mlsd_lib.recsys.events import epoch_seconds, interaction_log
from mlsd_lib.recsys.feed import E_MINUTES, EMBEDDING, P_PLAY, FeedModels
from mlsd_lib.recsys.feed_features import ranker_inputs
from mlsd_lib.recsys.feed_tables import FeedTables, build_feed_tables
from mlsd_lib.serving.gateway.model_calls import call_model
from mlsd_lib.worlds.recsys_feed import FeedRequest, FeedResponse
from mlsd_lib.worlds.recsys_log import RecsysLog, source_code
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = [
    "RANKER_ROWS",
    "USER_TOWER_ROWS",
    "ServedFeedPolicy",
    "ServedFeedSettings",
    "ServedPolicyError",
]

#: Rows per model-server call: the deployed models' maximum batch sizes
#: (:data:`~mlsd_lib.recsys.serving.USER_TOWER_MAX_BATCH`, ``RANKER_MAX_BATCH``).
USER_TOWER_ROWS, RANKER_ROWS = 64, 2048
_RETRIEVAL, _TRENDING = source_code("retrieval"), source_code("trending")
_EXPLORE, _POPULAR = source_code("explore"), source_code("popular")
#: What orders the candidates: the two-tower score, or the ranker's final.
RANK_BY = ("retrieval", "ranker")
#: Days of observed log the daily tables are rebuilt from (popular: 7 days).
_TABLE_DAYS = 8


class ServedPolicyError(MlsdError, ValueError):
    """The served policy cannot answer as asked; the message says why."""


@dataclass(frozen=True)
class ServedFeedSettings:
    """How deep retrieval and trending reach, and the exploration slot.

    ``explore_position`` is the slot the new item goes to (``None``: no
    exploration slot); ``new_item_days`` how recent a launch must be to be in
    the pool.
    """

    retrieval_k: int = 200
    trending_k: int = 50
    explore_position: int | None = 3
    new_item_days: int = 7
    rank_by: str = "retrieval"

    def __post_init__(self) -> None:
        if min(self.retrieval_k, self.trending_k, self.new_item_days) < 1:
            raise ServedPolicyError(
                "retrieval_k, trending_k and new_item_days must be >= 1, got "
                f"{self.retrieval_k}, {self.trending_k} and {self.new_item_days}."
            )
        if self.rank_by not in RANK_BY:
            raise ServedPolicyError(
                f"rank_by must be one of {RANK_BY}, got {self.rank_by!r}."
            )
        if self.explore_position is not None and self.explore_position < 0:
            raise ServedPolicyError(
                f"explore_position must be >= 0 or None, got {self.explore_position}."
            )


class ServedFeedPolicy:
    """A deployed release as a world policy (see the module notes).

    ``models`` is what :func:`~mlsd_lib.recsys.serving.deploy_release` returned;
    ``fold`` the case study's history fold; ``log`` the world's log so far (the
    days before this policy serves; the trending and exploration tables and
    the features are built from it) and ``item_genre`` every item's genre
    (``world.items.genre``, the events' category). ``user_region`` and
    ``user_maturity`` are every user's profile (what the app sends with a
    request). Randomness (the exploration draw) comes from ``(seed, first
    request id of the batch)``.
    """

    def __init__(
        self,
        models: FeedModels,
        fold: HistoryFold,
        log: RecsysLog,
        item_genre: np.ndarray,
        user_region: np.ndarray,
        user_maturity: np.ndarray,
        *,
        settings: ServedFeedSettings | None = None,
        seed: int = 0,
    ) -> None:
        self.models = models
        self.fold = fold
        self.settings = settings or ServedFeedSettings()
        self.seed = seed
        self.item_genre = np.asarray(item_genre)
        self.user_region = np.asarray(user_region, dtype=np.int64)
        self.user_maturity = np.asarray(user_maturity, dtype=np.int64)
        self._logs: list[RecsysLog] = [log] if len(log) else []
        self._events: list[pd.DataFrame] = []
        self._event_table: pd.DataFrame | None = None
        self._tables: FeedTables | None = None
        if len(log):
            self._add_events(log)

    # -- what the release serves ---------------------------------------------------
    @property
    def release(self) -> str:
        """The name of the release serving now (``recs-v<n>``)."""
        return self.models.release

    def swap(self, models: FeedModels) -> FeedModels:
        """Serve ``models`` from the next batch on; returns the old ones."""
        old, self.models = self.models, models
        return old

    def fork(self) -> ServedFeedPolicy:
        """A copy serving the same models from what this one observed so far
        (for a fork of the world: the other arm of a decision)."""
        twin = copy.copy(self)
        twin._logs = list(self._logs)
        twin._events = list(self._events)
        return twin

    # -- what it observes ------------------------------------------------------------
    def _add_events(self, log: RecsysLog) -> None:
        # Only a feed's first row (its session) and its clicks become feature
        # events; the other impressions would be converted and dropped.
        first = np.ones(len(log), dtype=bool)
        first[1:] = log.request_id[1:] != log.request_id[:-1]
        events = interaction_log(log.subset(first | log.clicked), self.item_genre)
        used = sorted(set(self.fold.kept_types) | set(self.fold.counted_types))
        self._events.append(events[events["type"].isin(used)])
        self._event_table = None

    def observe(self, log: RecsysLog) -> None:
        """Add an hour's log to the features and to the tables' input."""
        if not len(log):
            return
        self._logs.append(log)
        self._add_events(log)

    def feature_events(self) -> pd.DataFrame:
        """The feature events observed so far (what the stream has delivered)."""
        if self._event_table is None:
            self._event_table = (
                pd.concat(self._events, ignore_index=True)
                if self._events
                else pd.DataFrame(columns=["event_id", "type", "event_timestamp"])
            )
            self._events = [self._event_table] if self._events else []
        return self._event_table

    def histories(self, users: np.ndarray, world_times: np.ndarray) -> Histories:
        """Each user's fold state strictly before each world time (seconds)."""
        events = self.feature_events()
        entity = self.fold.entity_field
        mine = events[np.isin(events[entity].to_numpy(), users)]
        return histories_at(mine, self.fold, users, epoch_seconds(world_times))

    def tables(self, day: int) -> FeedTables:
        """Trending, popular and exploration tables as of the start of ``day``."""
        if self._tables is None or self._tables.day != day:
            start = (day - _TABLE_DAYS) * SECONDS_PER_DAY
            recent = [
                part for part in self._logs if len(part) and part.time[-1] >= start
            ]
            self._logs = recent
            catalogue = self.models.catalogue
            if recent:
                log = RecsysLog.concat(recent)
            else:
                log = RecsysLog.empty(len(self.user_region), len(catalogue))
            self._tables = build_feed_tables(
                log, catalogue, self.user_region, now=day * SECONDS_PER_DAY,
                n_maturity=int(self.user_maturity.max()) + 1,
                new_item_days=self.settings.new_item_days,
            )  # fmt: skip
        return self._tables

    # -- the feeds -------------------------------------------------------------------
    def embed_users(
        self, histories: Histories, users: np.ndarray, models: FeedModels | None = None
    ) -> np.ndarray:
        """The user tower's embedding of each row of ``histories`` (``users``'
        profile as the categorical inputs), :data:`USER_TOWER_ROWS` a call."""
        models = models or self.models
        history = histories.items[:, : models.history_len].astype(np.int64)
        dense = np.log1p(histories.counts.astype(np.float32)).astype(np.float32)
        categorical = np.column_stack(
            [self.user_region[users], self.user_maturity[users]]
        ).astype(np.int64)
        with torch_threads(1):  # one core, and the same sums on every machine
            parts = [
                call_model(
                    models.user_tower,
                    {
                        "history": history[lo : lo + USER_TOWER_ROWS],
                        "dense": dense[lo : lo + USER_TOWER_ROWS],
                        "categorical": categorical[lo : lo + USER_TOWER_ROWS],
                    },
                )[EMBEDDING]
                for lo in range(0, len(users), USER_TOWER_ROWS)
            ]
        return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)

    def visible(self, users: np.ndarray, items: np.ndarray, day: int) -> np.ndarray:
        """Whether each ``items[b, j]`` (-1: none) may be shown to ``users[b]`` on
        ``day``: launched, in the user's region, within their maturity limit."""
        catalogue = self.models.catalogue
        safe = np.maximum(items, 0)
        return (
            (items >= 0)
            & (catalogue.items.launch_day[safe] <= day)
            & catalogue.regions[safe, self.user_region[users][:, None]]
            & (catalogue.maturity[safe] <= self.user_maturity[users][:, None])
        )

    def __call__(self, request: FeedRequest) -> FeedResponse:
        f = request.feed_size
        users = request.user.astype(np.int64)
        if not len(users):
            return FeedResponse(np.zeros((0, f), np.int64), version=self.release)
        with torch_threads(1):  # one core per batch, as the gateway per request
            candidates, source, score, histories = self.candidates(request)
        pages, sources = self._ranked(request, candidates, source, score, histories)
        return self._explore(request, pages, sources, histories)

    def candidates(
        self, request: FeedRequest
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Histories]:
        """Stages 1-4 for a batch: candidates (B, C) (-1: none), their source
        codes, their score (``-inf`` where filtered out) and the histories."""
        s, models, day = self.settings, self.models, request.day
        users = request.user.astype(np.int64)
        tables = self.tables(day)
        histories = self.histories(users, request.time)
        embedding = self.embed_users(histories, users)
        k = min(s.retrieval_k, models.index.ntotal)
        with faiss_threads(1):
            _, retrieved = models.index.search(embedding, k)
        trending = np.full((len(users), s.trending_k), -1, dtype=np.int64)
        region = self.user_region[users]
        for r, items in enumerate(tables.trending):
            top = items[: s.trending_k]
            trending[np.ix_(region == r, np.arange(len(top)))] = top
        candidates = np.concatenate([retrieved.astype(np.int64), trending], axis=1)
        source = np.concatenate(
            [np.full(retrieved.shape, _RETRIEVAL), np.full(trending.shape, _TRENDING)],
            axis=1,
        ).astype(np.int8)
        watched = (candidates[:, :, None] == histories.items[:, None, :]).any(axis=2)
        keep = self.visible(users, candidates, day) & ~watched & _first_copy(candidates)
        vectors = models.catalogue.embeddings[np.maximum(candidates, 0)]
        score = np.einsum("bcd,bd->bc", vectors, embedding).astype(np.float64)
        if s.rank_by == "ranker":
            score = self._ranker_scores(
                models, histories, request, candidates, keep, score, tables
            )
        return candidates, source, np.where(keep, score, -np.inf), histories

    def _ranker_scores(
        self,
        models: FeedModels,
        histories: Histories,
        request: FeedRequest,
        candidates: np.ndarray,
        keep: np.ndarray,
        retrieval: np.ndarray,
        tables: FeedTables,
    ) -> np.ndarray:
        """The ranker's ``p_play x e_minutes`` of every kept candidate
        (``retrieval``: their two-tower scores, one of its features)."""
        rows_of, item_of = np.nonzero(keep)
        dense, categorical = [], []
        for b in range(len(candidates)):
            now = float(request.time[b])
            inputs = ranker_inputs(
                histories, b, candidates[b, keep[b]], models.catalogue.items,
                now=float(epoch_seconds(now)), world_now=now,
                retrieval_score=retrieval[b, keep[b]],
                item_impressions=tables.item_impressions,
                item_engaged=tables.item_engaged,
            )  # fmt: skip
            dense.append(inputs["dense"])
            categorical.append(inputs["categorical"])
        dense_all, categorical_all = np.concatenate(dense), np.concatenate(categorical)
        scores = np.full(candidates.shape, -np.inf)
        for lo in range(0, len(rows_of), RANKER_ROWS):
            part = slice(lo, lo + RANKER_ROWS)
            heads = call_model(
                models.ranker,
                {"dense": dense_all[part], "categorical": categorical_all[part]},
            )
            final = heads[P_PLAY] * heads[E_MINUTES]
            scores[rows_of[part], item_of[part]] = final.reshape(-1)
        return scores

    def _ranked(
        self,
        request: FeedRequest,
        candidates: np.ndarray,
        source: np.ndarray,
        score: np.ndarray,
        histories: Histories,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The best ``feed_size`` candidates of each request by score; a row
        with too few is filled from the cell's popular feed."""
        f = request.feed_size
        users = request.user.astype(np.int64)
        order = np.argsort(-score, axis=1, kind="stable")[:, :f]
        pages = np.take_along_axis(candidates, order, axis=1)
        sources = np.take_along_axis(source, order, axis=1)
        short = ~np.isfinite(np.take_along_axis(score, order, axis=1))
        tables = self.tables(request.day)
        for b in np.flatnonzero(short.any(axis=1)):  # rare: filters left too few
            cell = self._cells(users[b : b + 1])[0]
            row = pages[b][~short[b]]
            popular = tables.popular[cell]
            fill = popular[
                ~np.isin(popular, row) & ~np.isin(popular, histories.items[b])
            ]
            if len(row) + len(fill) < f:
                raise ServedPolicyError(
                    f"user {users[b]} has {len(row) + len(fill)} items to show on "
                    f"day {request.day}, the page {f}: retrieve deeper "
                    "(retrieval_k) or serve a larger catalogue."
                )
            pages[b] = np.concatenate([row, fill])[:f]
            sources[b, len(row) :] = _POPULAR
        return pages, sources

    def _cells(self, users: np.ndarray) -> np.ndarray:
        n_maturity = int(self.user_maturity.max()) + 1
        return self.user_region[users] * n_maturity + self.user_maturity[users]

    def _explore(
        self,
        request: FeedRequest,
        pages: np.ndarray,
        sources: np.ndarray,
        histories: Histories,
    ) -> FeedResponse:
        """Stage 5: one slot at ``explore_position`` for a new item drawn
        uniformly from the cell's pool (not watched, not on the page), which
        pushes the last ranked item off the page; propensity ``1 / pool``."""
        s, f = self.settings, request.feed_size
        propensity = np.full(pages.shape, np.nan)
        if s.explore_position is None:
            return FeedResponse(pages, propensity, sources, version=self.release)
        users = request.user.astype(np.int64)
        tables = self.tables(request.day)
        width = max(1, max(len(p.items) for p in tables.pools))
        pools = np.full((len(tables.pools), width), -1, dtype=np.int64)
        for c, pool in enumerate(tables.pools):
            pools[c, : len(pool.items)] = pool.items
        pool = pools[self._cells(users)]
        ranked = pages[:, : f - 1]
        valid = (
            (pool >= 0)
            & ~(pool[:, :, None] == histories.items[:, None, :]).any(axis=2)
            & ~(pool[:, :, None] == ranked[:, None, :]).any(axis=2)
        )
        rng = np.random.default_rng(
            np.random.SeedSequence([self.seed, 0x5E7D, int(request.request_id[0])])
        )
        draw = np.where(valid, rng.random(pool.shape), -1.0)
        pick = pool[np.arange(len(pool)), np.argmax(draw, axis=1)]
        n_valid = valid.sum(axis=1)
        rows = np.flatnonzero(n_valid > 0)
        at = min(s.explore_position, f - 1)
        explored = np.concatenate(
            [ranked[rows, :at], pick[rows, None], ranked[rows, at:]], axis=1
        )
        explored_sources = np.concatenate(
            [
                sources[rows, :at],
                np.full((len(rows), 1), _EXPLORE, np.int8),
                sources[rows, at : f - 1],
            ],
            axis=1,
        )
        pages, sources = pages.copy(), sources.copy()
        pages[rows], sources[rows] = explored, explored_sources
        propensity[rows, at] = 1.0 / n_valid[rows]
        return FeedResponse(pages, propensity, sources, version=self.release)


def _first_copy(candidates: np.ndarray) -> np.ndarray:
    """True where ``candidates[b, j]`` is the row's first copy of that item."""
    order = np.argsort(candidates, axis=1, kind="stable")
    ranked = np.take_along_axis(candidates, order, axis=1)
    first = np.ones_like(ranked, dtype=bool)
    first[:, 1:] = ranked[:, 1:] != ranked[:, :-1]
    out = np.empty_like(first)
    np.put_along_axis(out, order, first, axis=1)
    return out
