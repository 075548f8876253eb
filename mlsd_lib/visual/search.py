"""From a query vector to up to 20 products, every stage's list and time kept.

Introduced in ``casestudies/visual_search/index.md`` (panel B, steps 3 to 5).
:class:`VisualSearcher` runs, for each query vector:

1. ``ann``: the catalogue's ANN index, top ``k_images`` (200) images;
2. ``rerank``: their stored vectors fetched and scored exactly
   (:func:`~mlsd_lib.reranking.product_collapse.exact_rerank`);
3. ``collapse``: images into products, each at its best image;
4. ``dedup``: near-duplicate listings dropped at the searcher's
   ``dedup_threshold`` (a cosine, chosen offline on labelled pairs;
   ``None``: no dedup);
5. ``filters``: each named :class:`~mlsd_lib.visual.availability.ProductFilter`
   (in stock, ships to the region) asked once for the products left;
6. the first ``n_products`` (20): the page.

Over-fetching is the point of step 1: 200 images make a few dozen products
after collapse, and the filters and dedup then remove an amount nobody
chose; the :class:`~mlsd_lib.reranking.filters.FilterReport` says how much,
which is how ``k_images`` is sized. The default order filters *after* dedup
(the page's: fewer products to look up); its cost is that a duplicate
dropped in favour of a listing that is then filtered out (out of stock) is
lost with it. ``filters_first=True`` filters the collapsed list first and
dedups the survivors: a product is then only dropped for a duplicate the
user can buy, at the price of a stock lookup for every collapsed product.

**What a result keeps.** :class:`VisualBatch` (and :class:`VisualResult`,
one query) holds the list after every stage and each stage's time, so that
an evaluation can attribute a missed product to the index (exact search
finds it, the ANN list does not), to dedup, to a filter or to the page cut
(:meth:`VisualBatch.stage_products` is the input of
:func:`~mlsd_lib.evaluation.retrieval_attribution.attribute_misses`), and a
server can report per-stage latency.

**One code path.** :meth:`VisualSearcher.search` is
:meth:`VisualSearcher.search_batch` on one row: the evaluation of a
thousand queries (one vectorized faiss search, the re-ranking steps on
``(n, k)`` arrays in blocks of ``chunk_size`` queries) runs the code a server
runs for one. The stages' timings in a batch are the whole batch's.

When the index is unavailable the server answers from
:class:`~mlsd_lib.visual.fallback.CategoryFallback` instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.reranking.filters import FilterReport
from mlsd_lib.reranking.product_collapse import (
    DedupDecision,
    RankedImages,
    RankedProducts,
    collapse_to_products,
    concat_rows,
    exact_rerank,
    first_products,
    keep_products,
    remove_near_duplicates,
)
from mlsd_lib.serving.gateway.budgets import StageClock
from mlsd_lib.visual.availability import (
    ProductFilter,
    filter_report,
    product_keep_masks,
)
from mlsd_lib.visual.catalogue_index import NORM_TOLERANCE, CatalogueIndex

__all__ = [
    "STAGES",
    "SearchInputError",
    "VisualBatch",
    "VisualResult",
    "VisualSearcher",
]

#: The timed stages, in the order they run (``filters`` before ``dedup`` with
#: ``filters_first``); timings also hold ``total``.
STAGES: tuple[str, ...] = ("ann", "rerank", "collapse", "dedup", "filters")


class SearchInputError(MlsdError, ValueError):
    """A query or a search setting the pipeline cannot use."""


@dataclass(frozen=True)
class VisualBatch:
    """Every stage's lists for ``n`` queries (``(n, width)`` arrays, padded).

    ``ann``: the index's hits, approximate scores; ``reranked``: the same
    images re-scored exactly; ``collapsed``: one entry per product;
    ``deduplicated`` and ``filtered``: after those stages (in ``order``);
    ``products``: the page. ``dedup`` holds every dedup decision (None when
    dedup is off); ``filter_masks`` each filter's keep mask over the list the
    filters saw (:attr:`filter_input`). ``timings_ms``: per stage and
    ``total``, for the whole batch.
    """

    embedder_version: str
    ann: RankedImages
    reranked: RankedImages
    collapsed: RankedProducts
    dedup: DedupDecision | None
    deduplicated: RankedProducts
    filter_masks: dict[str, np.ndarray]
    filtered: RankedProducts
    products: RankedProducts
    order: tuple[str, ...]
    timings_ms: dict[str, float]

    @property
    def n_queries(self) -> int:
        return self.ann.n_queries

    @property
    def filter_input(self) -> RankedProducts:
        """The products the filters were asked about."""
        return self.collapsed if self.order[0] == "filters" else self.deduplicated

    def filter_report(self) -> FilterReport:
        """Survival per filter over every query of the batch."""
        return filter_report(self.filter_masks, self.filter_input.product_ids)

    def stage_products(self) -> dict[str, np.ndarray]:
        """Product ids ``(n, width)`` after each stage, in pipeline order,
        the page last: ``index`` (the ANN images' products, in ANN order),
        ``collapse``, ``dedup`` and ``filters`` (in :attr:`order`),
        ``page``. Pass it as ``stages`` to
        :func:`~mlsd_lib.evaluation.retrieval_attribution.attribute_misses`."""
        after = {"dedup": self.deduplicated, "filters": self.filtered}
        lists = {
            "index": self.ann.product_ids,
            "collapse": self.collapsed.product_ids,
        }
        for stage in self.order:
            lists[stage] = after[stage].product_ids
        lists["page"] = self.products.product_ids
        return lists

    def result(self, i: int) -> VisualResult:
        """Query ``i``'s lists, padding dropped; timings are the batch's
        divided by its queries (amortized)."""
        if not 0 <= i < self.n_queries:
            raise SearchInputError(
                f"query {i} is out of range: this batch holds {self.n_queries}"
            )
        share = 1.0 / self.n_queries
        return VisualResult(
            embedder_version=self.embedder_version,
            ann=self.ann.row(i),
            reranked=self.reranked.row(i),
            collapsed=self.collapsed.row(i),
            dedup=None if self.dedup is None else self.dedup.row(i),
            deduplicated=self.deduplicated.row(i),
            filtered=self.filtered.row(i),
            products=self.products.row(i),
            filter_report=filter_report(
                self.filter_masks, self.filter_input.product_ids, i
            ),
            order=self.order,
            timings_ms={k: v * share for k, v in self.timings_ms.items()},
        )


@dataclass(frozen=True)
class VisualResult:
    """One query's answer (:attr:`product_ids`, :attr:`scores`) and every
    stage's list on the way (1-D, no padding); see :class:`VisualBatch`."""

    embedder_version: str
    ann: RankedImages
    reranked: RankedImages
    collapsed: RankedProducts
    dedup: DedupDecision | None
    deduplicated: RankedProducts
    filtered: RankedProducts
    products: RankedProducts
    filter_report: FilterReport
    order: tuple[str, ...]
    timings_ms: dict[str, float]

    @property
    def product_ids(self) -> np.ndarray:
        """The page: up to ``n_products`` product ids, best first."""
        return self.products.product_ids

    @property
    def scores(self) -> np.ndarray:
        """Each product's score: its best image's cosine with the query."""
        return self.products.scores

    def dropped_as_duplicates(self) -> list[tuple[int, int, float]]:
        """``(product, duplicate_of, similarity)`` for each product dedup
        dropped (empty when dedup is off)."""
        if self.dedup is None:
            return []
        mask = ~self.dedup.kept
        return list(
            zip(
                self.dedup.product_ids[mask].tolist(),
                self.dedup.duplicate_of[mask].tolist(),
                self.dedup.similarity[mask].astype(float).tolist(),
                strict=True,
            )
        )


class VisualSearcher:
    """The search pipeline over one catalogue
    (:class:`~mlsd_lib.visual.catalogue_index.CatalogueIndex`).

    ``dedup_threshold``: cosine similarity at or above which a product is a
    near-duplicate of one kept above it (None: no dedup). ``filters_first``:
    filter before dedup (see the module docstring). ``chunk_size``: queries
    re-ranked together in a batch (memory: about ``chunk_size x k_images^2``
    float32 for dedup).
    """

    def __init__(
        self,
        catalogue: CatalogueIndex,
        *,
        dedup_threshold: float | None,
        filters_first: bool = False,
        chunk_size: int = 256,
    ) -> None:
        if dedup_threshold is not None and not (
            isinstance(dedup_threshold, int | float)
            and not isinstance(dedup_threshold, bool)
            and -1.0 <= dedup_threshold <= 1.0
        ):
            raise SearchInputError(
                f"dedup_threshold={dedup_threshold!r}: pass a cosine similarity in "
                "[-1, 1] (e.g. choose_dedup_threshold(...).threshold), or None for "
                "no dedup"
            )
        _positive("chunk_size", chunk_size)
        self.catalogue = catalogue
        self.dedup_threshold = dedup_threshold
        self.filters_first = bool(filters_first)
        self.chunk_size = chunk_size

    @property
    def order(self) -> tuple[str, ...]:
        """The order of the two list-shortening stages."""
        return ("filters", "dedup") if self.filters_first else ("dedup", "filters")

    def search(
        self,
        query_vector: np.ndarray,
        *,
        embedder_version: str,
        k_images: int = 200,
        n_products: int = 20,
        filters: Mapping[str, ProductFilter] | None = None,
    ) -> VisualResult:
        """Up to ``n_products`` products for one L2-normalized float32 query
        ``(d,)`` made by embedder ``embedder_version``; refused
        (:class:`~mlsd_lib.index.versions.IndexVersionMismatch`) when that is
        not the catalogue's embedder."""
        query = np.asarray(query_vector)
        if query.ndim == 1:
            query = query[None, :]
        if query.ndim != 2 or query.shape[0] != 1:
            raise SearchInputError(
                f"query_vector has shape {np.shape(query_vector)}: pass one vector "
                "(d,); for many, call search_batch"
            )
        batch = self.search_batch(
            query,
            embedder_version=embedder_version,
            k_images=k_images,
            n_products=n_products,
            filters=filters,
        )
        return batch.result(0)

    def search_batch(
        self,
        query_vectors: np.ndarray,
        *,
        embedder_version: str,
        k_images: int = 200,
        n_products: int = 20,
        filters: Mapping[str, ProductFilter] | None = None,
    ) -> VisualBatch:
        """:meth:`search` for ``(n, d)`` queries at once: one faiss search for
        all, the re-ranking steps in blocks of ``chunk_size``."""
        _positive("k_images", k_images)
        _positive("n_products", n_products)
        filters = dict(filters or {})
        clock = StageClock({}, STAGES)
        self.catalogue.check_version(embedder_version)
        queries = _unit_queries(query_vectors, self.catalogue.d)
        with clock.stage("ann"):
            ann, rows = self.catalogue.search_images(
                queries, k_images, embedder_version=embedder_version
            )
        parts = [
            self._rerank_block(
                queries[block], ann, rows, block, filters, n_products, clock
            )
            for block in _blocks(queries.shape[0], self.chunk_size)
        ]
        dedups = [p["dedup"] for p in parts]
        return VisualBatch(
            embedder_version=embedder_version,
            ann=ann,
            reranked=concat_rows([p["reranked"] for p in parts]),
            collapsed=concat_rows([p["collapsed"] for p in parts]),
            dedup=None if dedups[0] is None else concat_rows(dedups),
            deduplicated=concat_rows([p["deduplicated"] for p in parts]),
            filter_masks=_concat_masks([p["masks"] for p in parts], filters),
            filtered=concat_rows([p["filtered"] for p in parts]),
            products=concat_rows([p["products"] for p in parts]),
            order=self.order,
            timings_ms=clock.timings_ms(digits=None),
        )

    def _rerank_block(
        self,
        queries: np.ndarray,
        ann: RankedImages,
        rows: np.ndarray,
        block: slice,
        filters: dict[str, ProductFilter],
        n_products: int,
        clock: StageClock,
    ) -> dict:
        """Steps 2 to 6 for the queries in ``block``."""
        hits = RankedImages(
            ann.image_ids[block], ann.product_ids[block], ann.scores[block]
        )
        with clock.stage("rerank"):
            vectors = self.catalogue.vectors_at(rows[block])
            reranked, order = exact_rerank(queries, hits, vectors)
            vectors = np.take_along_axis(vectors, order[:, :, None], axis=1)
        with clock.stage("collapse"):
            collapsed = collapse_to_products(reranked)
        out: dict = {"reranked": reranked, "collapsed": collapsed, "dedup": None}
        current = collapsed
        for stage in self.order:
            with clock.stage(stage):
                if stage == "dedup":
                    if self.dedup_threshold is not None:
                        current, out["dedup"] = remove_near_duplicates(
                            current, reranked, vectors, self.dedup_threshold
                        )
                    out["deduplicated"] = current
                else:
                    masks = product_keep_masks(filters, current.product_ids)
                    keep = np.ones(current.product_ids.shape, dtype=bool)
                    for mask in masks.values():
                        keep &= mask
                    out["masks"] = masks
                    current = keep_products(current, keep)
                    out["filtered"] = current
        out["products"] = first_products(current, n_products)
        return out


def _unit_queries(queries: object, d: int) -> np.ndarray:
    array = np.asarray(queries)
    if array.ndim != 2 or array.shape[1] != d or array.shape[0] == 0:
        raise SearchInputError(
            f"queries have shape {array.shape}: pass (n, {d}) vectors from the "
            "catalogue's embedder"
        )
    if array.dtype != np.float32:
        raise SearchInputError(
            f"queries have dtype {array.dtype}: the embedder answers float32; "
            "pass np.ascontiguousarray(x, dtype=np.float32)"
        )
    array = np.ascontiguousarray(array)
    if not np.isfinite(array).all():
        raise SearchInputError("queries hold NaN or infinity: fix the embedder output")
    norms = np.linalg.norm(array, axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        raise SearchInputError(
            f"{int(off.sum())} query vector(s) are not unit length (norms "
            f"{np.round(norms[off][:3], 4).tolist()}): the embedder's output is "
            "L2-normalized, so this one is not its output; normalize it or check "
            "the export"
        )
    return array


def _concat_masks(
    parts: list[dict[str, np.ndarray]], filters: Mapping[str, ProductFilter]
) -> dict[str, np.ndarray]:
    masks = {}
    for name in filters:
        width = max(p[name].shape[1] for p in parts)
        masks[name] = np.concatenate(
            [np.pad(p[name], ((0, 0), (0, width - p[name].shape[1]))) for p in parts],
            axis=0,
        )
    return masks


def _blocks(n: int, size: int) -> list[slice]:
    return [slice(start, min(n, start + size)) for start in range(0, n, size)]


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise SearchInputError(f"{name}={value!r}: pass a positive integer")
