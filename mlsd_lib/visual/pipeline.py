"""One visual search request, stage by stage: photo to products, or a degraded page.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (panel B, "One query", and
its p99 budget column). :class:`VisualPipeline` runs, for a
:class:`VisualQuery`, each stage timed
(:class:`~mlsd_lib.serving.gateway.budgets.StageClock`) and each dependency
call bounded by a timeout on its own thread pool
(:class:`~mlsd_lib.serving.gateway.budgets.DependencyPools`: ``"redis"``,
``"models"``, ``"index"``):

1. a **photo** (base64 bytes and an optional box): ``decode`` (Pillow, within
   the :class:`~mlsd_lib.visual.query_image.ImageLimits`), ``crop`` to the box,
   ``resize`` to the embedder's square, ``embed`` on the model server (Triton):
   uint8 pixels in, a unit vector out;
   or a **precomputed region** (``region_id``): ``region``, one Redis GET of
   its vector and category (:mod:`~mlsd_lib.visual.regions`), no decode and
   no embedder;
2. the :class:`~mlsd_lib.visual.search.VisualSearcher` of the served release:
   ``ann`` (top ``k_images`` = 200 images), exact ``rerank``, ``collapse``
   into products, ``dedup`` (the release's threshold), each timed by the
   searcher and reported here;
3. ``filters``: the availability filters of the shopper's region (in stock
   there, from Redis: one round trip for every product left), then the first
   ``n_products``.

The budgets are the page's (decode 20 ms, embed 60, ANN 40, re-rank and
dedup 35, metadata 15), split over the finer stages timed here
(:data:`VISUAL_STAGE_BUDGETS_MS`); the precomputed path budgets its Redis
read instead of the first four (:data:`REGION_STAGE_BUDGETS_MS`).

**Errors and degraded answers.** A photo that cannot be searched (empty,
undecodable, too large, a bad box) raises
:class:`~mlsd_lib.visual.query_image.ImageRejected`, and an unknown region
:class:`UnknownRegion`: the client's fault, a 4xx. A *dependency* that fails
or runs out of time never fails the request:

* no vector (the model server is down, or Redis for a region): there is
  nothing to guess a category from, so the answer is the most popular
  available products overall;
* a vector but no search (the index failed or timed out): the category is
  the precomputed region's label, or for a photo the category whose
  **centroid** (the mean catalogue vector, computed with the release) is
  nearest to the vector: a nearest-centroid classifier in embedding space,
  ten dot products, no extra model; the answer is that category's most
  popular available products
  (:class:`~mlsd_lib.visual.fallback.CategoryFallback`);
* Redis down at the filter stage: the page is filtered by the release's
  stock snapshot (stale, but on the safe side of "never show what cannot be
  bought"), flagged degraded.

Every degraded answer says so (``degraded=True``) and why. An operator who
knows a dependency is down (an index fleet being rebuilt) marks it in
:attr:`VisualPipeline.unavailable`, and requests degrade at once instead of
each waiting out its timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import redis

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.threads import faiss_threads
from mlsd_lib.reranking.filters import FilterReport
from mlsd_lib.serving.gateway.budgets import (
    DependencyPools,
    StageClock,
    checked_budgets,
)
from mlsd_lib.serving.gateway.model_calls import call_model
from mlsd_lib.serving.gateway.scoring import ModelFailed
from mlsd_lib.visual.availability import (
    ProductFilter,
    filter_report,
    product_keep_masks,
)
from mlsd_lib.visual.fallback import CategoryFallback
from mlsd_lib.visual.query_image import (
    ImageLimits,
    ImageRejected,
    crop_window,
    decode_base64,
    decode_image,
    resize_square,
)
from mlsd_lib.visual.regions import read_region
from mlsd_lib.visual.release import VisualModels
from mlsd_lib.visual.search import VisualResult
from mlsd_lib.visual.served_embedder import EMBEDDING, PIXELS

__all__ = [
    "IMAGE_PATH",
    "REGION_PATH",
    "REGION_STAGE_BUDGETS_MS",
    "VISUAL_STAGE_BUDGETS_MS",
    "Availability",
    "DependencyMarkedDown",
    "UnknownRegion",
    "VisualAnswer",
    "VisualPipeline",
    "VisualQuery",
    "VisualSettings",
    "VisualSettingsError",
]

#: The page's p99 budget (ms) split over the photo path's stages, in order.
VISUAL_STAGE_BUDGETS_MS: dict[str, float] = {
    "decode": 10.0,
    "crop": 5.0,
    "resize": 5.0,
    "embed": 60.0,
    "ann": 40.0,
    "rerank": 15.0,
    "collapse": 10.0,
    "dedup": 10.0,
    "filters": 15.0,
}
#: The precomputed-region path: one Redis read instead of decode to embed.
REGION_STAGE_BUDGETS_MS: dict[str, float] = {
    "region": 5.0,
    **{
        name: ms
        for name, ms in VISUAL_STAGE_BUDGETS_MS.items()
        if name not in ("decode", "crop", "resize", "embed")
    },
}
#: The two ways a query arrives.
IMAGE_PATH, REGION_PATH = "image", "region"
#: Failures of a dependency (not of the request): they degrade the answer.
DEPENDENCY_ERRORS = (redis.RedisError, OSError, TimeoutError, ModelFailed)

#: The availability filters of a shopper's region: called per request with the
#: region, it returns named :class:`~mlsd_lib.visual.availability.ProductFilter`
#: s (a Redis-backed one reads every product in one round trip).
Availability = Callable[[int], Mapping[str, ProductFilter]]


class UnknownRegion(MlsdError, LookupError):
    """A ``region_id`` the served release has no precomputed vector for."""


class DependencyMarkedDown(MlsdError, ConnectionError):
    """A dependency an operator marked unavailable: requests skip it at once."""


class VisualSettingsError(MlsdError, ValueError):
    """Search settings or pools the pipeline cannot run with; says which."""


@dataclass(frozen=True)
class VisualSettings:
    """How deep the search reaches and how long each dependency may take.

    ``k_images``: ANN candidates (the page's over-fetch, 200 images for 20
    products); ``max_products``: the most a request may ask for. Timeouts are
    hard limits (then the degraded answer); ``budgets_ms`` the p99 targets
    the stages are timed against.
    """

    k_images: int = 200
    max_products: int = 20
    limits: ImageLimits = field(default_factory=ImageLimits)
    redis_timeout_s: float = 0.05
    model_timeout_s: float = 0.2
    index_timeout_s: float = 0.2
    budgets_ms: Mapping[str, float] = field(
        default_factory=lambda: dict(VISUAL_STAGE_BUDGETS_MS)
    )
    region_budgets_ms: Mapping[str, float] = field(
        default_factory=lambda: dict(REGION_STAGE_BUDGETS_MS)
    )

    def __post_init__(self) -> None:
        if min(self.k_images, self.max_products) < 1:
            raise VisualSettingsError(
                f"k_images={self.k_images} and max_products={self.max_products}: "
                "both must be >= 1."
            )
        timeouts = (self.redis_timeout_s, self.model_timeout_s, self.index_timeout_s)
        if min(timeouts) <= 0:
            raise VisualSettingsError(
                f"the dependency timeouts must be positive seconds, got {timeouts}."
            )
        checked_budgets(self.budgets_ms)
        checked_budgets(self.region_budgets_ms)


@dataclass(frozen=True)
class VisualQuery:
    """One search: the shopper's ``region`` (stock and shipping), and either a
    photo (``image``: base64 bytes; ``box``: ``x0, y0, x1, y1`` in its pixels,
    None for the whole photo) or a precomputed ``region_id``."""

    region: int
    image: str | None = None
    box: tuple[int, int, int, int] | None = None
    region_id: int | None = None
    n_products: int = 20


@dataclass(frozen=True)
class VisualAnswer:
    """The page and how it was made.

    Aligned, best first: ``product_ids``, ``scores`` (the best image's cosine
    with the query; NaN on a degraded page, which nothing scored) and
    ``category_ids``. ``embedding`` is the query region's vector (None when
    none was made): what the impression log keeps instead of the photo.
    ``category_id``: the category a degraded page answered (None: overall).
    ``counts``: how many images, then products, survived each stage;
    ``filters``: each filter's survival (None when no search ran).
    """

    query: VisualQuery
    path: str
    product_ids: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    embedding: np.ndarray | None
    versions: dict[str, str]
    degraded: bool
    reason: str
    timings_ms: dict[str, float]
    over_budget: tuple[str, ...]
    category_id: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    filters: FilterReport | None = None

    def __len__(self) -> int:
        return len(self.product_ids)


def _never(ids: np.ndarray) -> np.ndarray:
    return np.zeros(np.shape(ids), dtype=bool)


class VisualPipeline:
    """Visual search for one query at a time, on ``models`` (swappable per
    request).

    ``client``: the Redis holding the precomputed regions; ``availability``:
    the region's filters (reading Redis); ``snapshot``: the same filters from
    the release's stock snapshot, in memory, used when Redis fails (None:
    nothing is shown then); ``fallback``: the degraded pages;
    ``pools``: the dependencies ``"redis"``, ``"models"`` and ``"index"``.
    """

    def __init__(
        self,
        client: redis.Redis,
        availability: Availability,
        fallback: CategoryFallback,
        pools: DependencyPools,
        *,
        snapshot: Availability | None = None,
        settings: VisualSettings | None = None,
    ) -> None:
        missing = {"redis", "models", "index"} - set(pools.names)
        if missing:
            raise VisualSettingsError(
                f"the pipeline's pools lack {sorted(missing)}: make them with "
                "DependencyPools(('redis', 'models', 'index'))."
            )
        self.client = client
        self.availability = availability
        self.snapshot = snapshot
        self.fallback = fallback
        self.pools = pools
        self.settings = settings or VisualSettings()
        #: Dependencies (``"models"``, ``"index"``, ``"redis"``) marked down by
        #: an operator: requests take the degraded path at once instead of
        #: waiting out a timeout on each call (a manual circuit breaker, e.g.
        #: while an index fleet is rebuilt).
        self.unavailable: set[str] = set()

    def _require(self, dependency: str, what: str) -> None:
        if dependency in self.unavailable:
            raise DependencyMarkedDown(
                f"{what} is marked unavailable (VisualPipeline.unavailable holds "
                f"{dependency!r}); remove it from the set once it is back."
            )

    # -- the stages, each usable on its own ---------------------------------------
    def pixels(self, query: VisualQuery, size: int, clock: StageClock) -> np.ndarray:
        """Stages decode, crop and resize: the query photo as ``uint8 (size,
        size, 3)``, or :class:`~mlsd_lib.visual.query_image.ImageRejected` when
        it cannot be searched."""
        limits = self.settings.limits
        if query.image is None:
            raise ImageRejected("no image: send a photo, or a region_id.")
        with clock.stage("decode"):
            decoded = decode_image(
                decode_base64(query.image, limits), limits, query.box
            )
        with clock.stage("crop"):
            window_image, window = crop_window(decoded, query.box, limits)
        with clock.stage("resize"):
            return resize_square(window_image, window, size)

    def search(self, models: VisualModels, vector: np.ndarray) -> VisualResult:
        """Stages ann to dedup (blocking): every deduplicated product, best
        first. faiss runs on one thread: a server answers many queries at once,
        one per core, and a single query gains nothing from more."""
        k = self.settings.k_images
        with faiss_threads(1):
            return models.searcher.search(
                vector,
                embedder_version=models.embedder_version,
                k_images=k,
                n_products=k,
            )

    def keep_masks(
        self, filters: Mapping[str, ProductFilter], product_ids: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Each filter's keep mask over ``product_ids`` ``(m,)``."""
        masks = product_keep_masks(filters, product_ids[None, :])
        return {name: mask[0] for name, mask in masks.items()}

    # -- the request ----------------------------------------------------------------
    async def serve(self, models: VisualModels, query: VisualQuery) -> VisualAnswer:
        """Run the stages for ``query``; a degraded page on any dependency
        failure or timeout (never an exception for those)."""
        s = self.settings
        by_region = query.region_id is not None
        clock = StageClock(s.region_budgets_ms if by_region else s.budgets_ms)
        path = REGION_PATH if by_region else IMAGE_PATH
        category: int | None = None
        try:
            if by_region:
                with clock.stage("region"):
                    self._require("redis", "Redis")
                    found = await self.pools.call(
                        "redis",
                        s.redis_timeout_s,
                        lambda: read_region(
                            self.client,
                            models.embedder_version,
                            int(query.region_id),
                            models.catalogue.d,
                        ),
                        "Redis (the precomputed region)",
                    )
                if found is None:
                    raise UnknownRegion(
                        f"region_id {query.region_id} has no precomputed embedding "
                        f"for embedder {models.embedder_version}: send the photo "
                        "and its box instead."
                    )
                vector, category = found.vector, found.category_id
            else:
                pixels = self.pixels(query, models.image_size, clock)
                with clock.stage("embed"):
                    self._require("models", "the model server")
                    out = await self.pools.call(
                        "models",
                        s.model_timeout_s,
                        lambda: call_model(models.embedder, {PIXELS: pixels[None]}),
                        f"the embedder ({models.embedder.version})",
                    )
                vector = np.ascontiguousarray(out[EMBEDDING][0], dtype=np.float32)
        except DEPENDENCY_ERRORS as error:
            what = "precomputed region" if by_region else "embedder"
            reason = f"no query vector ({what} unavailable: {_says(error)})"
            return await self.degraded(models, query, path, clock, None, reason, None)
        try:
            self._require("index", "the catalogue index")
            result = await self.pools.call(
                "index",
                s.index_timeout_s,
                lambda: self.search(models, vector),
                "the catalogue index",
            )
        except Exception as error:  # a failing index degrades, whatever the cause
            if category is None:
                category = models.guess_category(vector)
                guessed = "nearest category centroid"
            else:
                guessed = "the region's label"
            reason = f"index unavailable ({_says(error)}); category from {guessed}"
            return await self.degraded(
                models, query, path, clock, category, reason, vector
            )
        for stage in ("ann", "rerank", "collapse", "dedup"):
            clock.add(stage, result.timings_ms[stage])
        ids = result.products.product_ids
        with clock.stage("filters"):
            masks, note = await self._filter(query.region, ids)
        keep = np.ones(ids.shape, dtype=bool)
        for mask in masks.values():
            keep &= mask
        shown = np.flatnonzero(keep)[: query.n_products]
        report = filter_report({k: v[None, :] for k, v in masks.items()}, ids[None, :])
        counts = {
            "ann_images": int((result.ann.image_ids >= 0).sum()),
            "products": int(result.collapsed.product_ids.size),
            "after_dedup": int(ids.size),
            "after_filters": int(keep.sum()),
        }
        product_ids = ids[shown]
        return VisualAnswer(
            query=query,
            path=path,
            product_ids=product_ids,
            scores=result.products.scores[shown].astype(np.float64),
            category_ids=models.catalogue.category_of(product_ids),
            embedding=vector,
            versions=models.versions(),
            degraded=bool(note),
            reason=note,
            timings_ms=clock.timings_ms(),
            over_budget=clock.over_budget(),
            counts=counts,
            filters=report,
        )

    async def _filter(
        self, region: int, product_ids: np.ndarray
    ) -> tuple[dict[str, np.ndarray], str]:
        """The filters' masks from Redis; from the snapshot (with a note) when
        Redis fails."""
        try:
            self._require("redis", "Redis")
            masks = await self.pools.call(
                "redis",
                self.settings.redis_timeout_s,
                lambda: self.keep_masks(self.availability(region), product_ids),
                "Redis (stock)",
            )
            return masks, ""
        except DEPENDENCY_ERRORS as error:
            return self._offline_masks(region, product_ids, error)

    def _offline_masks(
        self, region: int, product_ids: np.ndarray, error: BaseException
    ) -> tuple[dict[str, np.ndarray], str]:
        if self.snapshot is None:
            note = (
                f"stock unknown (Redis unavailable: {_says(error)}) and no snapshot: "
                "nothing shown"
            )
            return {"availability_unknown": _never(product_ids)}, note
        note = f"stock from the release's snapshot (Redis unavailable: {_says(error)})"
        return self.keep_masks(self.snapshot(region), product_ids), note

    async def degraded(
        self,
        models: VisualModels,
        query: VisualQuery,
        path: str,
        clock: StageClock,
        category: int | None,
        reason: str,
        embedding: np.ndarray | None,
    ) -> VisualAnswer:
        """The category-level page (overall when ``category`` is None): the
        most popular available products, flagged degraded with ``reason``."""
        n = query.n_products
        with clock.stage("fallback"):
            try:
                self._require("redis", "Redis")
                page = await self.pools.call(
                    "redis",
                    self.settings.redis_timeout_s,
                    lambda: self.fallback.answer(
                        category,
                        reason=reason,
                        filters=self.availability(query.region),
                        n_products=n,
                    ),
                    "Redis (stock)",
                )
            except DEPENDENCY_ERRORS as error:
                filters = (
                    self.snapshot(query.region)
                    if self.snapshot is not None
                    else {"availability_unknown": _never}
                )
                source = "snapshot" if self.snapshot is not None else "none: hidden"
                page = self.fallback.answer(
                    category,
                    reason=f"{reason}; stock from the {source} "
                    f"(Redis unavailable: {_says(error)})",
                    filters=filters,
                    n_products=n,
                )
        ids = np.asarray(page.product_ids, dtype=np.int64)
        return VisualAnswer(
            query=query,
            path=path,
            product_ids=ids,
            scores=np.full(ids.size, np.nan),
            category_ids=models.catalogue.category_of(ids),
            embedding=embedding,
            versions=models.versions(),
            degraded=True,
            reason=page.reason,
            timings_ms=clock.timings_ms(),
            over_budget=clock.over_budget(),
            category_id=page.category_id,
        )


def _says(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:160]}" if text else type(error).__name__
