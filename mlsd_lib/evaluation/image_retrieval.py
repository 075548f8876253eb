"""Recall@K by product identity, exact search, and graded NDCG for image retrieval.

Introduced in ``casestudies/visual_search/index.md`` (step 5: "recall@K for K
in {1, 10, 100} with exact search on held-out products, using query-style
images against catalogue-style images"). Pure numpy on vectors and ids, so the
baselines (:mod:`~mlsd_lib.models.image_baselines`), a learned embedder and
Stanford Online Products are measured by one code path.

**Scores.** Similarity is the inner product. For L2-normalized vectors, which
every embedder and baseline of the book returns, that is the cosine, and it
orders neighbours exactly as the Euclidean distance does. Exact search is a
matrix product in chunks of queries (a few million scores at a time), so a
60,000 x 60,000 SOP evaluation never holds its 14 GB score matrix.

**Ranks, not top-K lists.** Recall@K only asks where the first correct answer
sits. :func:`image_match_ranks` computes that rank for each query directly:
1 + the number of wrong gallery images scored above the best image of the
query's product (ties go to the lower gallery row, the order
:func:`~mlsd_lib.evaluation.ranking.rank_top_k` uses). That is one pass over
the scores with no sort and no K, so recall at every K, the mean reciprocal
rank and slices of queries (crops against whole photos, one category) all come
from one array. :func:`product_match_ranks` does the same after collapsing
the gallery into products (each scored by its best image), the list a user
sees: but for ties, a product rank is never worse than the image rank.

**Protocols.** The query side and the gallery side are separate arguments:

* the case study's: user-style photos of held-out products against the
  catalogue images (query and gallery are different sets);
* Stanford Online Products' (Song et al. 2016): every test image is a query
  against all the other test images. Pass ``exclude_same_id=(image_ids,
  image_ids)`` so that a query never finds itself.

A query whose product has no image left in the gallery cannot be answered at
all, so it is an error rather than a silent miss. Duplicate listings are
distinct products here; to count the duplicate of the photographed product as
a hit, map both sides to one id first (the world's
:meth:`~mlsd_lib.worlds.images.ImageWorld.canonical`).

**Graded NDCG.** :func:`graded_ndcg_at_k` scores a list of products against a
relevance matrix (true graded similarity, e.g. the world's
:meth:`~mlsd_lib.worlds.images.ImageWorld.similarity`) with the recommender's
:func:`~mlsd_lib.evaluation.ranking.ndcg_at_k`: linear gains, log2 discount,
ideal DCG over every product.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import RelevantItems, ndcg_at_k, rank_top_k

__all__ = [
    "ImageRetrievalInputError",
    "exact_top_k",
    "graded_ndcg_at_k",
    "image_match_ranks",
    "product_match_ranks",
    "product_recall_at_k",
    "recall_at_k_by_product",
    "recall_from_ranks",
    "top_k_products",
]

#: Scores computed per chunk of queries: queries x gallery at most this many.
CHUNK_SCORES = 1 << 22


class ImageRetrievalInputError(MlsdError, ValueError):
    """Vectors, ids or settings that cannot be evaluated; the message says why."""


# --------------------------------------------------------------------------
# Checks and the chunked score matrix


def _vectors(
    query_vectors: ArrayLike, gallery_vectors: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    q = np.asarray(query_vectors)
    g = np.asarray(gallery_vectors)
    for name, v in (("query_vectors", q), ("gallery_vectors", g)):
        if v.ndim != 2 or not np.issubdtype(v.dtype, np.floating):
            raise ImageRetrievalInputError(
                f"{name} must be a 2-D float array (one row per image), got "
                f"{v.dtype} of shape {v.shape}."
            )
        if not np.isfinite(v).all():
            raise ImageRetrievalInputError(
                f"{name} hold NaN or infinity (first at row "
                f"{int(np.argwhere(~np.isfinite(v))[0, 0])}): fix the embedder's "
                "output before searching with it."
            )
    if q.shape[1] != g.shape[1]:
        raise ImageRetrievalInputError(
            f"query vectors have {q.shape[1]} dimensions and gallery vectors "
            f"{g.shape[1]}: embed both sides with the same model."
        )
    if len(g) == 0:
        raise ImageRetrievalInputError("the gallery is empty: nothing to search.")
    return q.astype(np.float32, copy=False), g.astype(np.float32, copy=False)


def _ids(values: ArrayLike, n: int, name: str) -> np.ndarray:
    ids = np.asarray(values)
    if ids.shape != (n,) or (n and not np.issubdtype(ids.dtype, np.integer)):
        raise ImageRetrievalInputError(
            f"{name} must be {n} integers, one per vector, got "
            f"{ids.dtype} of shape {ids.shape}."
        )
    return ids.astype(np.int64, copy=False)


def _exclusion(
    exclude_same_id: tuple[ArrayLike, ArrayLike] | None, n_query: int, n_gallery: int
) -> tuple[np.ndarray, np.ndarray] | None:
    if exclude_same_id is None:
        return None
    if not isinstance(exclude_same_id, tuple | list) or len(exclude_same_id) != 2:
        raise ImageRetrievalInputError(
            "exclude_same_id must be a pair (query image ids, gallery image ids), "
            "e.g. (test.image_ids, test.image_ids) for the SOP protocol."
        )
    query_ids, gallery_ids = exclude_same_id
    return (
        _ids(query_ids, n_query, "exclude_same_id[0] (query image ids)"),
        _ids(gallery_ids, n_gallery, "exclude_same_id[1] (gallery image ids)"),
    )


def _check_k(k: int, what: str = "k") -> int:
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise ImageRetrievalInputError(f"{what} must be a positive integer, got {k!r}.")
    return int(k)


def _score_chunks(
    q: np.ndarray,
    g: np.ndarray,
    exclusion: tuple[np.ndarray, np.ndarray] | None,
    chunk_size: int | None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start, stop, scores)`` per chunk of queries; an excluded pair scores
    ``-inf``."""
    step = chunk_size or max(1, CHUNK_SCORES // max(len(g), 1))
    for start in range(0, len(q), step):
        stop = min(start + step, len(q))
        scores = q[start:stop] @ g.T
        if exclusion is not None:
            query_ids, gallery_ids = exclusion
            same = query_ids[start:stop, None] == gallery_ids[None, :]
            scores[same] = -np.inf
        yield start, stop, scores


def _labelled(
    query_vectors: ArrayLike,
    query_products: ArrayLike,
    gallery_vectors: ArrayLike,
    gallery_products: ArrayLike,
    exclude_same_id: tuple[ArrayLike, ArrayLike] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, tuple | None]:
    """Queries and gallery, checked: vectors, their products, the exclusion."""
    q, g = _vectors(query_vectors, gallery_vectors)
    q_products = _ids(query_products, len(q), "query_products")
    g_products = _ids(gallery_products, len(g), "gallery_products")
    return q, g, q_products, g_products, _exclusion(exclude_same_id, len(q), len(g))


def _top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns per row (-1 past the end) and their scores
    (``-inf`` there)."""
    picked = rank_top_k(scores, k)
    chosen = np.take_along_axis(scores, np.maximum(picked, 0), axis=1)
    return picked, np.where(picked >= 0, chosen, -np.inf)


def _no_positive(rows: np.ndarray, products: np.ndarray, n: int) -> None:
    """Raise for the queries whose product has no candidate image left."""
    if rows.size:
        raise ImageRetrievalInputError(
            f"{rows.size} of {n} queries have no image of their product in the "
            f"gallery (first: query row {rows[0]}, product {products[rows[0]]}), "
            "so no ranking can answer them: drop those queries, or add their "
            "products' images to the gallery (with exclude_same_id, a product "
            "needs a second image)."
        )


# --------------------------------------------------------------------------
# Ranks of the first correct answer


def image_match_ranks(
    query_vectors: ArrayLike,
    query_products: ArrayLike,
    gallery_vectors: ArrayLike,
    gallery_products: ArrayLike,
    *,
    exclude_same_id: tuple[ArrayLike, ArrayLike] | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """For each query, the rank (1 = first) of the first gallery image showing
    its product, by inner product: ``int64`` ``(n_queries,)``.

    Introduced in ``casestudies/visual_search/index.md``. Ties go to the lower
    gallery row. ``exclude_same_id=(query_image_ids, gallery_image_ids)`` skips
    the gallery image with the query's own id (SOP: query = gallery = the test
    set). ``chunk_size`` queries are scored at a time (default: about 4 M
    scores a chunk). Raises when a query's product has no image to find.
    """
    q, g, q_products, g_products, exclusion = _labelled(
        query_vectors, query_products, gallery_vectors, gallery_products,
        exclude_same_id,
    )  # fmt: skip
    ranks = np.empty(len(q), dtype=np.int64)
    column = np.arange(len(g))
    for start, stop, scores in _score_chunks(q, g, exclusion, chunk_size):
        match = g_products[None, :] == q_products[start:stop, None]
        match &= np.isfinite(scores)  # an excluded image is no answer
        _no_positive(np.flatnonzero(~match.any(axis=1)) + start, q_products, len(q))
        best = np.where(match, scores, -np.inf).max(axis=1, keepdims=True)
        best_row = np.argmax(match & (scores == best), axis=1)[:, None]
        ahead = ~match & (
            (scores > best) | ((scores == best) & (column[None, :] < best_row))
        )
        ranks[start:stop] = ahead.sum(axis=1) + 1
    return ranks


def _collapse(
    g_products: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gallery order grouping each product's images, group starts, products."""
    order = np.argsort(g_products, kind="stable")
    grouped = g_products[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    return order, starts, grouped[starts]


def _product_scores(
    scores: np.ndarray, order: np.ndarray, starts: np.ndarray
) -> np.ndarray:
    """Each gallery product's best image score (queries x products)."""
    return np.maximum.reduceat(scores[:, order], starts, axis=1)


def product_match_ranks(
    query_vectors: ArrayLike,
    query_products: ArrayLike,
    gallery_vectors: ArrayLike,
    gallery_products: ArrayLike,
    *,
    exclude_same_id: tuple[ArrayLike, ArrayLike] | None = None,
    chunk_size: int | None = None,
) -> np.ndarray:
    """For each query, the rank of its product among the gallery's products,
    each scored by its best image: ``int64`` ``(n_queries,)``.

    Introduced in ``casestudies/visual_search/index.md``: the list a user sees
    holds products, not images. Ties go to the lower product id (the order of
    :func:`top_k_products`). Arguments as for :func:`image_match_ranks`.
    """
    q, g, q_products, g_products, exclusion = _labelled(
        query_vectors, query_products, gallery_vectors, gallery_products,
        exclude_same_id,
    )  # fmt: skip
    order, starts, products = _collapse(g_products)
    where = np.minimum(np.searchsorted(products, q_products), len(products) - 1)
    known = products[where] == q_products
    ranks = np.empty(len(q), dtype=np.int64)
    column = np.arange(len(products))
    for start, stop, scores in _score_chunks(q, g, exclusion, chunk_size):
        best = _product_scores(scores, order, starts)
        col = where[start:stop]
        rows = np.arange(stop - start)
        true = best[rows, col]
        lost = ~known[start:stop] | ~np.isfinite(true)
        _no_positive(np.flatnonzero(lost) + start, q_products, len(q))
        true, col = true[:, None], col[:, None]
        ahead = (best > true) | ((best == true) & (column[None, :] < col))
        ranks[start:stop] = ahead.sum(axis=1) + 1
    return ranks


def recall_from_ranks(
    ranks: ArrayLike, ks: Sequence[int] = (1, 10, 100)
) -> dict[int, float]:
    """``{k: share of queries whose first correct answer ranks <= k}``."""
    values = np.asarray(ranks)
    if values.ndim != 1 or values.size == 0:
        raise ImageRetrievalInputError(
            f"ranks must be a non-empty 1-D array, one per query, got shape "
            f"{values.shape}."
        )
    if not np.issubdtype(values.dtype, np.integer) or values.min() < 1:
        raise ImageRetrievalInputError(
            "ranks must be integers >= 1 (1 = the first answer is correct), as "
            "image_match_ranks returns them."
        )
    checked = [_check_k(k, "each of ks") for k in ks]
    if not checked:
        raise ImageRetrievalInputError("ks is empty: pass the K of recall@K.")
    return {k: float(np.mean(values <= k)) for k in checked}


def recall_at_k_by_product(
    query_vectors: ArrayLike,
    query_products: ArrayLike,
    gallery_vectors: ArrayLike,
    gallery_products: ArrayLike,
    ks: Sequence[int] = (1, 10, 100),
    exclude_same_id: tuple[ArrayLike, ArrayLike] | None = None,
) -> dict[int, float]:
    """Image-level recall@K: ``{k: share of queries with an image of their
    product among the top k gallery images}``.

    Introduced in ``casestudies/visual_search/index.md``; the metric of Stanford
    Online Products' protocol (with ``exclude_same_id``) and of the case
    study's (user photos against catalogue images). See
    :func:`image_match_ranks`.
    """
    ranks = image_match_ranks(
        query_vectors,
        query_products,
        gallery_vectors,
        gallery_products,
        exclude_same_id=exclude_same_id,
    )
    return recall_from_ranks(ranks, ks)


def product_recall_at_k(
    query_vectors: ArrayLike,
    query_products: ArrayLike,
    gallery_vectors: ArrayLike,
    gallery_products: ArrayLike,
    ks: Sequence[int] = (1, 10, 100),
    exclude_same_id: tuple[ArrayLike, ArrayLike] | None = None,
) -> dict[int, float]:
    """Product-level recall@K: the query's product among the top ``k`` distinct
    products after collapsing images into products. See
    :func:`product_match_ranks`."""
    ranks = product_match_ranks(
        query_vectors,
        query_products,
        gallery_vectors,
        gallery_products,
        exclude_same_id=exclude_same_id,
    )
    return recall_from_ranks(ranks, ks)


# --------------------------------------------------------------------------
# Top-K lists (for attribution, NDCG and image grids)


def exact_top_k(
    query_vectors: ArrayLike,
    gallery_vectors: ArrayLike,
    k: int,
    *,
    exclude_same_id: tuple[ArrayLike, ArrayLike] | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best gallery rows per query by exact inner product:
    ``(scores float32 (n, k), rows int64 (n, k))``, best first.

    Introduced in ``casestudies/visual_search/index.md``: the reference an ANN
    index is measured against. Ties go to the lower row; slots beyond the
    gallery (or left by ``exclude_same_id``) are row -1 with score ``-inf``.
    """
    q, g = _vectors(query_vectors, gallery_vectors)
    k = _check_k(k)
    exclusion = _exclusion(exclude_same_id, len(q), len(g))
    rows = np.empty((len(q), k), dtype=np.int64)
    top = np.empty((len(q), k), dtype=np.float32)
    for start, stop, scores in _score_chunks(q, g, exclusion, chunk_size):
        rows[start:stop], top[start:stop] = _top(scores, k)
    return top, rows


def top_k_products(
    query_vectors: ArrayLike,
    gallery_vectors: ArrayLike,
    gallery_products: ArrayLike,
    k: int,
    *,
    exclude_same_id: tuple[ArrayLike, ArrayLike] | None = None,
    chunk_size: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best distinct products per query, each scored by its best
    image: ``(scores float32 (n, k), product ids int64 (n, k))``, best first.

    Introduced in ``casestudies/visual_search/index.md``: exact search followed
    by the collapse of images into products, the reference list for error
    attribution and graded NDCG. Ties go to the lower product id; slots beyond
    the gallery's products are -1 with score ``-inf``.
    """
    q, g = _vectors(query_vectors, gallery_vectors)
    g_products = _ids(gallery_products, len(g), "gallery_products")
    k = _check_k(k)
    exclusion = _exclusion(exclude_same_id, len(q), len(g))
    order, starts, products = _collapse(g_products)
    ids = np.empty((len(q), k), dtype=np.int64)
    top = np.empty((len(q), k), dtype=np.float32)
    for start, stop, scores in _score_chunks(q, g, exclusion, chunk_size):
        picked, top[start:stop] = _top(_product_scores(scores, order, starts), k)
        ids[start:stop] = np.where(picked >= 0, products[np.maximum(picked, 0)], -1)
    return top, ids


# --------------------------------------------------------------------------
# Graded NDCG


def graded_ndcg_at_k(
    ranked_products: ArrayLike,
    relevance: ArrayLike,
    k: int,
    *,
    products: ArrayLike | None = None,
) -> float:
    """Mean NDCG@k of product lists against a graded relevance matrix.

    Introduced in ``casestudies/visual_search/index.md``. ``ranked_products``
    is ``(n_queries, K)`` product ids, best first (-1: an empty slot);
    ``relevance[i, j]`` is the gain of product ``products[j]`` for query ``i``
    (``products`` defaults to ``0..m-1``), non-negative, e.g. the world's true
    similarity. Computed by :func:`~mlsd_lib.evaluation.ranking.ndcg_at_k`:
    queries whose row is all zero are left out of the mean.
    """
    lists = np.asarray(ranked_products)
    gains = np.asarray(relevance, dtype=np.float64)
    k = _check_k(k)
    if lists.ndim != 2 or not np.issubdtype(lists.dtype, np.integer):
        raise ImageRetrievalInputError(
            f"ranked_products must be a 2-D int array (queries x positions), got "
            f"{lists.dtype} of shape {lists.shape}."
        )
    if gains.ndim != 2 or len(gains) != len(lists):
        raise ImageRetrievalInputError(
            f"relevance must be a 2-D array with one row per ranked list "
            f"({len(lists)}), got shape {gains.shape}."
        )
    if not np.isfinite(gains).all() or (gains < 0).any():
        raise ImageRetrievalInputError(
            "relevance must hold finite gains >= 0 (NDCG is bounded by 1 only "
            "for those); clip or rescale similarities below 0."
        )
    column_ids = (
        np.arange(gains.shape[1], dtype=np.int64)
        if products is None
        else _ids(products, gains.shape[1], "products (one per relevance column)")
    )
    sorter = np.argsort(column_ids, kind="stable")
    if np.any(np.diff(column_ids[sorter]) == 0):
        raise ImageRetrievalInputError(
            "products must not repeat: one relevance column per product."
        )
    ids = lists.astype(np.int64)
    slot = np.minimum(np.searchsorted(column_ids, ids, sorter=sorter), len(sorter) - 1)
    columns = sorter[slot] if len(sorter) else np.zeros_like(ids)
    known = (column_ids[columns] == ids) if len(sorter) else np.zeros(ids.shape, bool)
    unknown = (ids >= 0) & ~known
    if unknown.any():
        row, position = np.argwhere(unknown)[0]
        raise ImageRetrievalInputError(
            f"ranked product {ids[row, position]} (list {row}, position "
            f"{position}) has no relevance column: pass products= naming every "
            "product a list can hold."
        )
    rows, cols = np.nonzero(gains > 0)  # row-major: sorted CSR
    indptr = np.zeros(len(gains) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(gains)), out=indptr[1:])
    graded = RelevantItems(indptr, cols.astype(np.int64), gains[rows, cols])
    return ndcg_at_k(np.where(ids >= 0, columns, -1), graded, k)
