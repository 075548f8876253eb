"""The offline evaluation of visual search: every number step 5 asks for, on one exam.

Introduced in ``casestudies/visual_search/05_evaluation.ipynb`` (step 5, "Evaluation").
Before an embedder meets users it is judged offline, on the image world where the truth
is known, by six measurements, each answering one question:

1. **Does the embedder find the product?** Recall@{1, 10, 100} by exact
   search, on user photos of products *never seen in training* against those
   products' catalogue images, both for the whole photo and for the photo
   cropped to the true box (the user who draws a box), with a merchant's
   duplicate listing counting as the same item (:func:`vector_quality`).
2. **Are the other results sensible?** Graded NDCG@20 of the top 20 products
   against the world's true similarity: a list that misses the product but
   shows its siblings is better than one that shows random vases.
3. **Does the index lose what exact search finds?** ANN recall@10 against
   exact search at the serving parameters; measured where it matters, after
   the pipeline's exact re-ranking of its 200 candidates (the index's own top
   10 is reported beside it).
4. **Where are the misses lost?** The *real* pipeline
   (:class:`~mlsd_lib.visual.search.VisualSearcher`) answers every query, and
   :func:`~mlsd_lib.evaluation.retrieval_attribution.attribute_misses` names
   the stage that lost each missed product: the embedder (exact search misses
   it too), the index, or a later stage (collapse, dedup, filters, the page
   cut) (:func:`evaluate_pipeline`).
5. **Is dedup safe?** The near-duplicate threshold chosen on half of the
   labelled pairs (the world's duplicate listings against its look-alikes) for
   a stated precision, and its precision and recall measured on the other
   half (:func:`dedup_study`).
6. **What does recall cost?** Recall against latency as the index's
   search-time parameter moves (:func:`index_sweep`).

:func:`offline_report` runs all six for a world, a set of embedders (learned
ones and the baselines, anything with ``ImageSet -> (n, d)`` unit vectors) and
the name of the one the pipeline serves. The exam
(:func:`held_out_queries`) is built once and shared, so every model answers
the same photos. What this evaluation cannot say (whether users click, buy or
come back) is the A/B test's job, a later chapter.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.dedup import (
    DedupQuality,
    DedupThreshold,
    choose_dedup_threshold,
    dedup_quality,
)
from mlsd_lib.evaluation.image_retrieval import top_k_products
from mlsd_lib.evaluation.retrieval_attribution import MissAttribution, attribute_misses
from mlsd_lib.index.measure import SEARCH_PARAM, latency_profile, recall_at_k
from mlsd_lib.index.spec import IndexSpec
from mlsd_lib.validation import (
    require_fraction,
    require_int,
    require_seed,
)
from mlsd_lib.visual.catalogue_index import CatalogueIndex, default_catalogue_spec
from mlsd_lib.visual.oracle import relevance_matrix
from mlsd_lib.visual.retrieval_quality import retrieval_quality
from mlsd_lib.visual.search import VisualBatch, VisualSearcher
from mlsd_lib.worlds.images import ImageWorld

__all__ = [
    "QUERY_KINDS",
    "DedupStudy",
    "Embed",
    "ExamVectors",
    "HeldOutQueries",
    "OfflineReport",
    "OfflineReportError",
    "PipelineEvaluation",
    "build_catalogue",
    "dedup_study",
    "embed_exam",
    "evaluate_pipeline",
    "held_out_queries",
    "index_sweep",
    "offline_report",
    "product_pair_similarity",
    "quality_table",
    "small_training_set_quiet",
    "vector_quality",
]

#: An embedder as the report sees it: images in, ``(n, d)`` unit vectors out.
Embed = Callable[[ImageSet], np.ndarray]
#: The two ways a user sends a photo: whole, or cropped to the product's box.
QUERY_KINDS = ("photo", "crop")
#: The embedder version stamped on the offline catalogue index.
OFFLINE_VERSION = "offline-evaluation"


class OfflineReportError(MlsdError, ValueError):
    """Inputs the offline evaluation cannot use; the message says which."""


# -- the exam ---------------------------------------------------------------------


@dataclass(frozen=True)
class HeldOutQueries:
    """The exam every model sits: photos of unseen products and their catalogue.

    ``gallery``: the catalogue images of the test products (duplicate
    listings included); ``photos``: one user photo per entry of
    ``query_products`` (whole), ``crops`` the same photos cut to their true
    ``boxes``; ``canonical`` maps a listing to its item (a duplicate to its
    original); ``relevance`` is the true graded similarity of each query's
    product to each of ``relevance_products`` (the gallery's products), for
    graded NDCG.
    """

    gallery: ImageSet
    photos: ImageSet
    crops: ImageSet
    boxes: np.ndarray
    canonical: Callable[[np.ndarray], np.ndarray]
    relevance: np.ndarray
    relevance_products: np.ndarray

    @property
    def query_products(self) -> np.ndarray:
        return self.photos.product_ids

    def queries(self, kind: str) -> ImageSet:
        """The photos (``"photo"``) or their crops (``"crop"``)."""
        _check_kind(kind)
        return self.photos if kind == "photo" else self.crops


def held_out_queries(
    world: ImageWorld, *, seed: int = 1, photos_per_product: int = 1
) -> HeldOutQueries:
    """The exam of ``world``: ``photos_per_product`` photos of each test product.

    Introduced in ``casestudies/visual_search/index.md``. The photos are
    ``world.queries(test products, seed)`` in the world's query style; use a
    seed no training set uses (training's photos take
    :data:`~mlsd_lib.visual.training_images.TRAINING_PHOTO_SEED` and above).
    """
    require_seed("seed", seed, error=OfflineReportError)
    require_int(
        "photos_per_product", photos_per_product, at_least=1, error=OfflineReportError
    )
    if (
        isinstance(photos_per_product, bool)
        or not isinstance(photos_per_product, int | np.integer)
        or photos_per_product < 1
    ):
        raise OfflineReportError(
            f"photos_per_product must be a positive integer, got "
            f"{photos_per_product!r}."
        )
    test = world.test_products
    if test.size == 0:
        raise OfflineReportError(
            "the world has no test products: raise held_out_fraction."
        )
    gallery = world.catalogue().of_products(test)
    shots = world.queries(np.repeat(test, int(photos_per_product)), seed=seed)
    relevance, products = relevance_matrix(
        world.similarity, shots.images.product_ids, gallery.product_ids
    )
    return HeldOutQueries(
        gallery=gallery,
        photos=shots.images,
        crops=shots.crops(),
        boxes=shots.boxes,
        canonical=world.canonical,
        relevance=relevance,
        relevance_products=products,
    )


@dataclass(frozen=True)
class ExamVectors:
    """One model's vectors of an exam: gallery, whole photos and crops."""

    gallery: np.ndarray
    photo: np.ndarray
    crop: np.ndarray

    def queries(self, kind: str) -> np.ndarray:
        _check_kind(kind)
        return self.photo if kind == "photo" else self.crop


def embed_exam(embed: Embed, exam: HeldOutQueries) -> ExamVectors:
    """Embed the exam's gallery, photos and crops once, checked unit vectors."""
    out = {}
    for name, images in (
        ("gallery", exam.gallery),
        ("photo", exam.photos),
        ("crop", exam.crops),
    ):
        vectors = np.ascontiguousarray(embed(images), dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(images):
            raise OfflineReportError(
                f"the embedder returned shape {vectors.shape} for {len(images)} "
                f"{name} images: it must return one (d,) vector per image."
            )
        norms = np.linalg.norm(vectors, axis=1)
        if not np.allclose(norms, 1.0, atol=1e-3):
            raise OfflineReportError(
                f"the embedder's {name} vectors are not unit length (norms from "
                f"{norms.min():.3f} to {norms.max():.3f}): L2-normalize them, as "
                "the index's inner product is a cosine only on unit vectors."
            )
        out[name] = vectors
    return ExamVectors(**out)


# -- 1, 2: recall and graded NDCG by exact search -----------------------------------


def vector_quality(
    vectors: ExamVectors,
    exam: HeldOutQueries,
    *,
    ks: Sequence[int] = (1, 10, 100),
    ndcg_k: int = 20,
) -> dict[str, dict[str, float]]:
    """``{"photo": {...}, "crop": {...}}``, each ``{"recall@K": ..., "NDCG@k": ...}``.

    Introduced in ``casestudies/visual_search/index.md``. Exact inner-product
    search of each query against the gallery; recall is image-level (an image
    of the item among the top K gallery images) with listings mapped to items;
    NDCG is graded by the true similarity of the top ``ndcg_k`` products
    (:func:`~mlsd_lib.visual.retrieval_quality.retrieval_quality`).
    """
    return {
        kind: retrieval_quality(
            vectors.queries(kind),
            exam.query_products,
            vectors.gallery,
            exam.gallery.product_ids,
            canonical=exam.canonical,
            relevance=exam.relevance,
            relevance_products=exam.relevance_products,
            ks=ks,
            ndcg_k=ndcg_k,
        )
        for kind in QUERY_KINDS
    }


def quality_table(
    qualities: Mapping[str, Mapping[str, Mapping[str, float]]],
) -> pd.DataFrame:
    """One row per (model, query kind), one column per metric, from
    ``{model: vector_quality(...)}``."""
    rows = {
        (model, kind): dict(metrics)
        for model, by_kind in qualities.items()
        for kind, metrics in by_kind.items()
    }
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = table.index.set_names(["model", "query"])
    return table


# -- 3, 4: the pipeline, the index and the attribution of misses ---------------------


@dataclass(frozen=True)
class PipelineEvaluation:
    """The serving pipeline on the exam.

    ``attribution``: each query a hit (its item on the page) or the stage that
    lost it; ``ann_recall_at_10``: the share of the exact top 10 images among
    the first 10 after exact re-ranking of the index's candidates (what the
    page is built from); ``index_recall_at_10``: the index's own top 10
    against exact (its approximate scores, before re-ranking); ``batch``: every
    stage's lists; ``exact_products``: exact search's top products, by item.
    """

    attribution: MissAttribution
    ann_recall_at_10: float
    index_recall_at_10: float
    batch: VisualBatch
    exact_products: np.ndarray
    catalogue: CatalogueIndex
    query_kind: str

    @property
    def page_recall(self) -> float:
        """Share of queries whose item is on the final page."""
        return self.attribution.rates["hit"]

    def grouped_shares(self) -> dict[str, float]:
        """Rates of ``hit``, ``embedder``, ``index`` and everything after the
        index (collapse, dedup, filters, page cut) as ``rerank``."""
        rates = self.attribution.rates
        later = sum(
            v for k, v in rates.items() if k not in ("hit", "embedder", "index")
        )
        return {
            "hit": rates["hit"],
            "embedder": rates["embedder"],
            "index": rates.get("index", 0.0),
            "rerank": later,
        }


def _items(
    canonical: Callable[[np.ndarray], np.ndarray], lists: np.ndarray
) -> np.ndarray:
    """Product ids mapped to items, empty slots (-1) kept."""
    lists = np.asarray(lists, dtype=np.int64)
    out = np.full(lists.shape, -1, dtype=np.int64)
    real = lists >= 0
    out[real] = canonical(lists[real])
    return out


def _recall_at(found: np.ndarray, exact: np.ndarray) -> float:
    """Recall@k of the first ``k`` found ids (``k``: exact's width; a shorter
    list is padded with empty slots, which find nothing)."""
    k = exact.shape[1]
    first = np.full((len(found), k), -1, dtype=np.int64)
    width = min(k, found.shape[1])
    first[:, :width] = found[:, :width]
    return recall_at_k(first, exact, k)


def build_catalogue(
    vectors: ExamVectors, exam: HeldOutQueries, spec: IndexSpec | None = None
) -> CatalogueIndex:
    """The exam's gallery as the pipeline's catalogue index (``spec``
    default: the serving IVF-PQ,
    :func:`~mlsd_lib.visual.catalogue_index.default_catalogue_spec`)."""
    gallery = exam.gallery
    with small_training_set_quiet():
        return CatalogueIndex.build(
            vectors.gallery,
            gallery.image_ids,
            gallery.product_ids,
            gallery.category_ids,
            embedder_version=OFFLINE_VERSION,
            spec=spec or default_catalogue_spec(vectors.gallery.shape[1]),
        )


@contextmanager
def small_training_set_quiet() -> Iterator[None]:
    """Silence faiss's C-level stderr while an exam-sized index trains.

    faiss's k-means prints "WARNING clustering n points to 256 centroids:
    please provide at least 9984 training points" once per PQ sub-quantizer
    (32 lines) when a catalogue has fewer than 39 images per centroid, as an
    exam's few thousand gallery images do. The codebooks are trained all the
    same, and the recall this report measures against exact search is the
    check on them; the warning only buries a notebook's output.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def evaluate_pipeline(
    vectors: ExamVectors,
    exam: HeldOutQueries,
    *,
    dedup_threshold: float | None,
    query_kind: str = "photo",
    spec: IndexSpec | None = None,
    k_images: int = 200,
    n_products: int = 20,
) -> PipelineEvaluation:
    """Run the real search pipeline on the exam and attribute every miss.

    Introduced in ``casestudies/visual_search/index.md``. The gallery is
    indexed with ``spec`` (default: the serving IVF-PQ), the queries of
    ``query_kind`` are answered by
    :meth:`~mlsd_lib.visual.search.VisualSearcher.search_batch` (top
    ``k_images`` images, exact re-rank, collapse, dedup at
    ``dedup_threshold``, no filters: every product is in stock offline, first
    ``n_products``), and each query is classed by
    :func:`~mlsd_lib.evaluation.retrieval_attribution.attribute_misses`
    against exact search's top ``n_products`` products, all by item.
    """
    catalogue = build_catalogue(vectors, exam, spec)
    queries = vectors.queries(query_kind)
    searcher = VisualSearcher(catalogue, dedup_threshold=dedup_threshold)
    batch = searcher.search_batch(
        queries,
        embedder_version=OFFLINE_VERSION,
        k_images=k_images,
        n_products=n_products,
    )
    exact_images = catalogue.exact_search(queries, 10, embedder_version=OFFLINE_VERSION)
    _, exact = top_k_products(
        queries, vectors.gallery, exam.gallery.product_ids, n_products
    )
    truth = exam.canonical(exam.query_products)
    stages = {
        name: _items(exam.canonical, lists)
        for name, lists in batch.stage_products().items()
    }
    attribution = attribute_misses(truth, _items(exam.canonical, exact), stages)
    return PipelineEvaluation(
        attribution=attribution,
        ann_recall_at_10=_recall_at(batch.reranked.image_ids, exact_images.image_ids),
        index_recall_at_10=_recall_at(batch.ann.image_ids, exact_images.image_ids),
        batch=batch,
        exact_products=exact,
        catalogue=catalogue,
        query_kind=query_kind,
    )


# -- 5: the dedup threshold on labelled pairs ------------------------------------------


def product_pair_similarity(
    vectors: np.ndarray, image_products: np.ndarray, pairs: np.ndarray
) -> np.ndarray:
    """For each product pair ``(a, b)``, the highest cosine between an image of
    ``a`` and an image of ``b``: the score dedup sees when the two meet at their
    most alike (the pipeline compares a product's best image with every image
    of the products kept above it)."""
    pairs = np.asarray(pairs, dtype=np.int64)
    owners = np.asarray(image_products, dtype=np.int64)
    if pairs.ndim != 2 or pairs.shape[1] != 2:
        raise OfflineReportError(
            f"pairs must have shape (n, 2) (two product ids a row), got {pairs.shape}."
        )
    missing = ~np.isin(pairs, owners)
    if missing.any():
        raise OfflineReportError(
            f"product {pairs[missing][0]} has no image among the vectors: pass "
            "pairs of products the vectors show."
        )
    products, first = np.unique(owners, return_inverse=True)
    order = np.argsort(first, kind="stable")
    counts = np.bincount(first, minlength=products.size)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    grouped = vectors[order]
    a = np.searchsorted(products, pairs[:, 0])
    b = np.searchsorted(products, pairs[:, 1])
    width = int(counts.max())
    slots = np.arange(width)

    def stacked(at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = starts[at][:, None] + np.minimum(slots[None, :], counts[at][:, None] - 1)
        return grouped[rows], slots[None, :] < counts[at][:, None]

    va, ma = stacked(a)
    vb, mb = stacked(b)
    sims = np.einsum("pid,pjd->pij", va, vb)
    sims = np.where(ma[:, :, None] & mb[:, None, :], sims, -np.inf)
    return sims.max(axis=(1, 2)).astype(np.float64)


@dataclass(frozen=True)
class DedupStudy:
    """A dedup threshold chosen on half the labelled pairs, judged on the rest.

    ``scores``/``is_duplicate``/``chosen_on`` cover every pair (``chosen_on``
    marks the half the threshold was chosen on); ``chosen`` holds the threshold
    and its curve on that half; ``held_out`` its precision and recall on the
    other half.
    """

    scores: np.ndarray
    is_duplicate: np.ndarray
    chosen_on: np.ndarray
    chosen: DedupThreshold
    held_out: DedupQuality

    @property
    def threshold(self) -> float:
        return self.chosen.threshold


def dedup_study(
    vectors: np.ndarray,
    image_products: np.ndarray,
    duplicate_pairs: np.ndarray,
    distinct_pairs: np.ndarray,
    *,
    target_precision: float = 0.99,
    seed: int = 0,
) -> DedupStudy:
    """Choose the dedup threshold for ``target_precision`` on half the pairs
    (each kind halved at random), measure it on the other half.

    Introduced in ``casestudies/visual_search/index.md``. ``duplicate_pairs``
    are the same item listed twice (the world's ``duplicate_pairs()``),
    ``distinct_pairs`` different items that look alike (``lookalike_pairs()``),
    both ``(n, 2)`` product ids shown by ``vectors`` (one row per image,
    ``image_products`` its product). Raises
    :class:`~mlsd_lib.evaluation.dedup.DedupThresholdError` when no threshold
    reaches the target on the choosing half.
    """
    require_fraction("target_precision", target_precision, error=OfflineReportError)
    duplicates = np.asarray(duplicate_pairs, dtype=np.int64).reshape(-1, 2)
    distinct = np.asarray(distinct_pairs, dtype=np.int64).reshape(-1, 2)
    if len(duplicates) < 2 or len(distinct) < 2:
        raise OfflineReportError(
            f"need at least 2 duplicate and 2 distinct pairs to choose on one half "
            f"and measure on the other, got {len(duplicates)} and {len(distinct)}."
        )
    pairs = np.concatenate([duplicates, distinct])
    labels = np.r_[np.ones(len(duplicates), bool), np.zeros(len(distinct), bool)]
    rng = np.random.default_rng(seed)
    chosen_on = np.zeros(len(pairs), dtype=bool)
    for kind in (True, False):
        rows = rng.permutation(np.flatnonzero(labels == kind))
        chosen_on[rows[: (len(rows) + 1) // 2]] = True
    scores = product_pair_similarity(vectors, image_products, pairs)
    chosen = choose_dedup_threshold(
        scores[chosen_on], labels[chosen_on], target_precision
    )
    held_out = dedup_quality(scores[~chosen_on], labels[~chosen_on], chosen)
    return DedupStudy(
        scores=scores,
        is_duplicate=labels,
        chosen_on=chosen_on,
        chosen=chosen,
        held_out=held_out,
    )


# -- 6: recall against latency --------------------------------------------------


def index_sweep(
    catalogue: CatalogueIndex,
    queries: np.ndarray,
    values: Sequence[int],
    *,
    k: int = 10,
    candidates: int = 200,
    timed: int | None = 200,
    repeats: int = 1,
) -> pd.DataFrame:
    """Recall and latency of the catalogue's index at each search-time setting.

    Introduced in ``casestudies/visual_search/index.md``. For each value of
    the index's parameter (``nprobe`` for IVF kinds, ``ef_search`` for HNSW):
    ``recall_at_k``, the share of the exact top ``k`` images among the
    ``candidates`` the index returns (what exact re-ranking recovers: the
    pipeline's recall), ``index_recall_at_k`` (the index's own top ``k``), and
    the latency of one ``candidates``-deep search per query on one thread
    (:func:`~mlsd_lib.index.measure.latency_profile`, ``timed`` queries,
    ``repeats`` passes). The setting is restored afterwards.
    """
    ann = catalogue.ann
    kind = ann.spec.kind
    if kind not in SEARCH_PARAM:
        raise OfflineReportError(
            f"a {kind} index has no search-time parameter to sweep: measure it "
            "once with mlsd_lib.index.measure.latency_profile."
        )
    param = SEARCH_PARAM[kind]
    exact = catalogue.exact_search(
        queries, k, embedder_version=catalogue.embedder_version
    ).image_ids
    image_ids = catalogue.image_ids
    depth = min(candidates, catalogue.n_images)
    original = getattr(ann.spec, param)
    timed_queries = queries if timed is None else queries[:timed]
    rows = []
    try:
        for value in values:
            ann.set_search_params(**{param: int(value)})
            _, found = ann.search(queries, depth)
            found_ids = np.where(found >= 0, image_ids[np.maximum(found, 0)], -1)
            profile = latency_profile(ann, timed_queries, depth, repeats=repeats)
            rows.append(
                {
                    param: int(value),
                    f"recall_at_{k}": recall_at_k(found_ids, exact, k, among=depth),
                    f"index_recall_at_{k}": recall_at_k(found_ids[:, :k], exact, k),
                    "p50_ms": profile.p50_ms,
                    "p99_ms": profile.p99_ms,
                }
            )
    finally:
        ann.set_search_params(**{param: original})
    return pd.DataFrame(rows)


# -- the whole report ----------------------------------------------------------


@dataclass(frozen=True)
class OfflineReport:
    """Every offline measurement of one exam (see the module docstring).

    ``quality``: :func:`quality_table` of every model; ``served``: the name of
    the model the pipeline, dedup and sweep use; ``vectors``: each model's exam
    vectors; ``pipeline``, ``dedup``, ``sweep``: measurements 3 to 6.
    """

    exam: HeldOutQueries
    vectors: dict[str, ExamVectors]
    quality: pd.DataFrame
    served: str
    dedup: DedupStudy
    pipeline: PipelineEvaluation
    sweep: pd.DataFrame

    def recall(self, model: str, k: int, kind: str = "photo") -> float:
        """Exact-search recall@k of ``model`` on ``kind`` queries."""
        return float(self.quality.loc[(model, kind), f"recall@{k}"])

    def summary(self) -> dict[str, object]:
        """The report as one flat JSON-ready dict (see the benchmark's keys)."""
        out: dict[str, object] = {}
        for (model, kind), row in self.quality.iterrows():
            prefix = model if kind == "photo" else f"{model}_crop"
            for metric, value in row.items():
                name = str(metric).lower().replace("@", "_at_")
                out[f"{prefix}_{name}"] = round(float(value), 4)
        out["ann_recall_at_10"] = round(self.pipeline.ann_recall_at_10, 4)
        out["index_recall_at_10"] = round(self.pipeline.index_recall_at_10, 4)
        out["page_recall"] = round(self.pipeline.page_recall, 4)
        out["attribution"] = {
            k: round(v, 4) for k, v in self.pipeline.attribution.rates.items()
        }
        out["dedup_threshold"] = round(self.dedup.threshold, 4)
        out["dedup_precision"] = round(self.dedup.held_out.precision, 4)
        out["dedup_recall"] = round(self.dedup.held_out.recall, 4)
        out["dedup_pairs"] = len(self.dedup.scores)
        out["sweep"] = self.sweep.round(4).to_dict(orient="records")
        return out


def offline_report(
    world: ImageWorld,
    models: Mapping[str, Embed],
    *,
    served: str,
    exam: HeldOutQueries | None = None,
    seed: int = 1,
    target_precision: float = 0.99,
    query_kind: str = "photo",
    spec: IndexSpec | None = None,
    sweep_values: Sequence[int] = (1, 2, 4, 8, 16, 32),
    timed: int | None = 200,
) -> OfflineReport:
    """Measurements 1 to 6 of ``models`` on ``world``'s unseen products.

    Introduced in ``casestudies/visual_search/index.md``. ``models`` maps a
    name to an embedder (``ImageSet -> (n, d)`` unit vectors: a trained
    :class:`~mlsd_lib.models.image_embedder.ImageEmbedder` via
    :func:`~mlsd_lib.models.image_embedder.embed_images`, or a baseline);
    ``served`` names the one the pipeline serves (dedup threshold, attribution,
    sweep). ``exam`` defaults to :func:`held_out_queries` with ``seed``.
    """
    require_fraction("target_precision", target_precision, error=OfflineReportError)
    for value in sweep_values:
        require_int("sweep_values", value, at_least=1, error=OfflineReportError)
    if served not in models:
        raise OfflineReportError(
            f"served={served!r} is not one of the models {sorted(models)}: name "
            "the embedder the pipeline serves."
        )
    _check_kind(query_kind)
    exam = exam or held_out_queries(world, seed=seed)
    vectors = {name: embed_exam(embed, exam) for name, embed in models.items()}
    quality = quality_table(
        {name: vector_quality(v, exam) for name, v in vectors.items()}
    )
    chosen = vectors[served]
    in_gallery = np.unique(exam.gallery.product_ids)

    def shown(pairs: np.ndarray) -> np.ndarray:
        return pairs[np.isin(pairs, in_gallery).all(axis=1)]

    dedup = dedup_study(
        chosen.gallery,
        exam.gallery.product_ids,
        shown(world.duplicate_pairs()),
        shown(world.lookalike_pairs()),
        target_precision=target_precision,
        seed=seed,
    )
    pipeline = evaluate_pipeline(
        chosen,
        exam,
        dedup_threshold=dedup.threshold,
        query_kind=query_kind,
        spec=spec,
    )
    sweep = index_sweep(
        pipeline.catalogue, chosen.queries(query_kind), sweep_values, timed=timed
    )
    return OfflineReport(
        exam=exam,
        vectors=vectors,
        quality=quality,
        served=served,
        dedup=dedup,
        pipeline=pipeline,
        sweep=sweep,
    )


def _check_kind(kind: str) -> None:
    if kind not in QUERY_KINDS:
        raise OfflineReportError(
            f"query kind must be one of {list(QUERY_KINDS)}, got {kind!r}."
        )
