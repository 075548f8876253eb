"""From ANN image hits to a list of distinct products: exact re-rank, collapse, dedup.

Introduced in ``casestudies/visual_search/index.md`` (panel B, step 4:
"re-rank: exact distances, collapse images to products, drop
near-duplicates"). An index holds images; a result list holds products. Three
steps turn the one into the other, each a function here, each over a *batch*
of queries at once (``(n, k)`` arrays, one row per query, best first), so that
an evaluation over a thousand queries runs the very code a server runs for
one:

1. :func:`exact_rerank`: the index's scores are approximate (IVF-PQ scores a
   16- or 32-byte code, not the vector), so the ``k`` candidates are scored
   again with their stored full vectors: one inner product each, which on
   L2-normalized vectors *is* the cosine similarity. Ties are broken by image
   id, so the order is deterministic.
2. :func:`collapse_to_products`: walking down the re-ranked images, a product
   enters the list at its first (best) image; its later images are not new
   results. A product's score is its best image's.
3. :func:`remove_near_duplicates`: walking down the products, one is dropped
   when its best image has cosine similarity ``>= threshold`` with an image of
   a product *already kept* (any of that product's retrieved images, not only
   its best): two merchants listing the same item with the same photo. The
   walk is greedy, like the page's rule: a product dropped as a duplicate
   cannot drop a later one. Every decision is returned
   (:class:`DedupDecision`): which product each dropped one duplicates, at
   what similarity, so an evaluation can tell a wrong drop from a right one
   and choose ``threshold`` on labelled pairs (for a stated precision, see
   :func:`~mlsd_lib.evaluation.dedup.choose_dedup_threshold`).

:func:`keep_products` (a filter's keep mask applied) and
:func:`first_products` (the page cut) keep a product list's shape.

**Conventions.** Every list is a pair of aligned ``(n, width)`` arrays,
padded on the right: ids ``-1`` (:data:`NO_ID`), scores ``-inf``, so rows of
different lengths stack into one array that
:func:`~mlsd_lib.evaluation.retrieval_attribution.attribute_misses` reads as
it is. Widths shrink to the longest row after each step. ``row(i)`` returns
one query's lists as 1-D arrays without padding.

**Cost.** Re-ranking ``k = 200`` candidates of ``d = 128`` is 25,600
multiply-adds per query; dedup compares each product's best image with every
retrieved image, ``P x k`` inner products (at most 200 x 200), then walks only
the ranks where some pair is over the threshold: on a list without
duplicates the walk is empty. The products are ``np.einsum``'s own loops, not
BLAS: per query they are too small to gain from BLAS's threads, and on a busy
machine waiting for those threads turned a 0.1 ms re-rank into 3-10 ms
(measured; einsum is 2x slower than BLAS only on offline batches of
hundreds of queries). Hand-written here (numpy), because these steps
are what the chapter teaches; faiss does the search before them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "NO_ID",
    "CollapseInputError",
    "DedupDecision",
    "RankedImages",
    "RankedProducts",
    "collapse_to_products",
    "concat_rows",
    "exact_rerank",
    "first_products",
    "keep_products",
    "remove_near_duplicates",
]

#: The id of an empty slot (faiss's "no result" too).
NO_ID = -1
#: Inner products computed per block in :func:`remove_near_duplicates`
#: (4 M float32: 16 MB), so a batch of a thousand queries stays small.
_BLOCK = 1 << 22


class CollapseInputError(MlsdError, ValueError):
    """Lists, vectors or a threshold the re-ranking steps cannot use."""


@dataclass(frozen=True)
class RankedImages:
    """Image hits per query, best first: ``(n, k)`` ids, their products and
    scores (int64 ``-1`` / float32 ``-inf`` in empty slots)."""

    image_ids: np.ndarray
    product_ids: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        _check_aligned(self, ("image_ids", "product_ids", "scores"))

    @property
    def n_queries(self) -> int:
        return int(self.image_ids.shape[0])

    def counts(self) -> np.ndarray:
        """Images per query (slots that are not padding)."""
        return (self.image_ids >= 0).sum(axis=1)

    def row(self, i: int) -> RankedImages:
        """Query ``i``'s list as 1-D arrays, padding dropped."""
        return _row(self, i, self.image_ids[i] >= 0)


@dataclass(frozen=True)
class RankedProducts:
    """Products per query, best first: ``(n, P)`` ids, scores (the best
    image's), the best image's id and its position in the
    :class:`RankedImages` list the products came from (``-1`` when empty)."""

    product_ids: np.ndarray
    scores: np.ndarray
    image_ids: np.ndarray
    image_positions: np.ndarray

    def __post_init__(self) -> None:
        _check_aligned(self, ("product_ids", "scores", "image_ids", "image_positions"))

    @property
    def n_queries(self) -> int:
        return int(self.product_ids.shape[0])

    def counts(self) -> np.ndarray:
        """Products per query."""
        return (self.product_ids >= 0).sum(axis=1)

    def row(self, i: int) -> RankedProducts:
        """Query ``i``'s products as 1-D arrays, padding dropped."""
        return _row(self, i, self.product_ids[i] >= 0)


@dataclass(frozen=True)
class DedupDecision:
    """What near-duplicate removal decided for each product it was given.

    ``(n, P)``, aligned with the input products: ``kept``; ``duplicate_of``,
    the kept product whose image was most similar (``-1`` for a kept product);
    ``similarity``, that highest similarity to an image of an earlier kept
    product, for kept products too (``-inf`` for the first product and in
    empty slots): a kept product at 0.96 under a threshold of 0.97 is the
    near miss a threshold study wants to see.
    """

    product_ids: np.ndarray
    kept: np.ndarray
    duplicate_of: np.ndarray
    similarity: np.ndarray
    threshold: float

    def __post_init__(self) -> None:
        _check_aligned(self, ("product_ids", "kept", "duplicate_of", "similarity"))

    @property
    def dropped(self) -> np.ndarray:
        """``(n, P)`` bool: a product in the input that dedup removed."""
        return (self.product_ids >= 0) & ~self.kept

    def n_dropped(self) -> np.ndarray:
        """Products dropped per query."""
        return self.dropped.sum(axis=1)

    def row(self, i: int) -> DedupDecision:
        """Query ``i``'s decisions as 1-D arrays, padding dropped."""
        return _row(self, i, self.product_ids[i] >= 0)

    def dropped_pairs(self, i: int) -> list[tuple[int, int, float]]:
        """Query ``i``'s drops as ``(product, duplicate_of, similarity)``."""
        one = self.row(i)
        mask = ~one.kept
        return list(
            zip(
                one.product_ids[mask].tolist(),
                one.duplicate_of[mask].tolist(),
                one.similarity[mask].astype(float).tolist(),
                strict=True,
            )
        )


def exact_rerank(
    queries: ArrayLike, images: RankedImages, vectors: ArrayLike
) -> tuple[RankedImages, np.ndarray]:
    """Re-score each query's candidate images with their full vectors.

    ``queries`` is ``(n, d)``; ``vectors`` ``(n, k, d)``, the stored vector of
    each candidate in ``images`` (any float dtype, float16 included; any row in
    an empty slot). Returns the images re-sorted by exact inner product, best
    first, ties by image id, and ``order`` ``(n, k)``: for each new position,
    the candidate's position in the input (to re-order anything aligned with
    it, the vectors included).
    """
    q = _float_matrix(queries, "queries")
    v = np.asarray(vectors)
    n, k = images.image_ids.shape
    if v.ndim != 3 or v.shape[:2] != (n, k) or v.shape[2] != q.shape[1]:
        raise CollapseInputError(
            f"vectors have shape {v.shape}, but {n} queries of dimension "
            f"{q.shape[1]} with {k} candidates each need ({n}, {k}, {q.shape[1]}): "
            "pass the stored vector of every candidate, aligned with the images"
        )
    if q.shape[0] != n:
        raise CollapseInputError(
            f"{q.shape[0]} queries for {n} rows of candidates: pass one query per row"
        )
    scores = np.einsum("nkd,nd->nk", v.astype(np.float32, copy=False), q)
    empty = images.image_ids < 0
    scores[empty] = -np.inf
    order = np.lexsort((images.image_ids, -scores), axis=1)
    ranked = RankedImages(
        image_ids=np.take_along_axis(images.image_ids, order, axis=1),
        product_ids=np.take_along_axis(images.product_ids, order, axis=1),
        scores=np.take_along_axis(scores, order, axis=1),
    )
    return ranked, order


def collapse_to_products(images: RankedImages) -> RankedProducts:
    """One entry per product, at its best image, in the images' order.

    The images must be best first (as :func:`exact_rerank` returns them): a
    product's first image in the row is its best. Vectorized per batch: a
    stable sort by product id groups each product's images in score order, so
    the first of each group is the product's best.
    """
    products = images.product_ids
    n, k = products.shape
    order = np.argsort(products, axis=1, kind="stable")
    grouped = np.take_along_axis(products, order, axis=1)
    starts = np.ones((n, k), dtype=bool)
    starts[:, 1:] = grouped[:, 1:] != grouped[:, :-1]
    first = np.zeros((n, k), dtype=bool)
    np.put_along_axis(first, order, starts, axis=1)
    first &= products >= 0
    positions = np.broadcast_to(np.arange(k, dtype=np.int64), (n, k))
    ids, scores, image_ids, image_positions = _compact(
        first, images.product_ids, images.scores, images.image_ids, positions
    )
    return RankedProducts(ids, scores, image_ids, image_positions)


def remove_near_duplicates(
    products: RankedProducts,
    images: RankedImages,
    image_vectors: ArrayLike,
    threshold: float,
) -> tuple[RankedProducts, DedupDecision]:
    """Drop each product whose best image is a near-duplicate of a kept one.

    ``products`` came from ``images`` (their ``image_positions`` point into
    it); ``image_vectors`` ``(n, k, d)`` is aligned with ``images`` (the
    re-ranked order). Walking down each row, a product is dropped when its
    best image has inner product ``>= threshold`` with any image in
    ``images`` of a product kept above it (a product absent from ``products``,
    e.g. filtered out, never causes a drop). Returns the kept products and
    every decision.
    """
    threshold = _threshold(threshold)
    v = np.asarray(image_vectors)
    n, k = images.image_ids.shape
    if v.ndim != 3 or v.shape[:2] != (n, k):
        raise CollapseInputError(
            f"image_vectors have shape {v.shape}, but the images are ({n}, {k}): "
            "pass one vector per image slot, aligned with the images, (n, k, d)"
        )
    if products.n_queries != n:
        raise CollapseInputError(
            f"{products.n_queries} rows of products for {n} rows of images: "
            "pass the products collapsed from these images"
        )
    width = products.product_ids.shape[1]
    kept = products.product_ids >= 0
    duplicate_of = np.full((n, width), NO_ID, dtype=np.int64)
    similarity = np.full((n, width), -np.inf, dtype=np.float32)
    rows = max(1, _BLOCK // max(1, width * k))
    for start in range(0, n, rows):
        block = slice(start, min(n, start + rows))
        _dedup_block(
            products, images, v, threshold, block, kept, duplicate_of, similarity
        )
    decision = DedupDecision(
        product_ids=products.product_ids,
        kept=kept,
        duplicate_of=duplicate_of,
        similarity=similarity,
        threshold=threshold,
    )
    return keep_products(products, kept), decision


def keep_products(products: RankedProducts, keep: ArrayLike) -> RankedProducts:
    """The products where ``keep`` (``(n, P)`` bool) is True, order kept,
    moved left; empty slots stay empty."""
    mask = np.asarray(keep)
    if mask.dtype != bool or mask.shape != products.product_ids.shape:
        raise CollapseInputError(
            f"keep must be a bool mask of shape {products.product_ids.shape}, one "
            f"value per product slot, got {mask.dtype} of shape {mask.shape}"
        )
    mask = mask & (products.product_ids >= 0)
    return RankedProducts(
        *_compact(
            mask,
            products.product_ids,
            products.scores,
            products.image_ids,
            products.image_positions,
        )
    )


def first_products(products: RankedProducts, n_products: int) -> RankedProducts:
    """The first ``n_products`` of each row (the page)."""
    if (
        isinstance(n_products, bool)
        or not isinstance(n_products, int)
        or n_products < 1
    ):
        raise CollapseInputError(f"n_products={n_products!r}: pass a positive integer")
    return replace(
        products,
        **{f.name: getattr(products, f.name)[:, :n_products] for f in fields(products)},
    )


_Lists = TypeVar("_Lists", RankedImages, RankedProducts, DedupDecision)


def concat_rows(parts: list[_Lists]) -> _Lists:
    """Stack the rows of several batches of one kind of list, padding the
    narrower ones (as a search run in chunks of queries needs)."""
    if not parts:
        raise CollapseInputError("nothing to concatenate: pass at least one batch")
    first = parts[0]
    arrays = [
        f.name for f in fields(first) if isinstance(getattr(first, f.name), np.ndarray)
    ]
    width = max(getattr(p, arrays[0]).shape[1] for p in parts)
    stacked: dict[str, Any] = {}
    for name in arrays:
        stacked[name] = np.concatenate(
            [_pad_columns(getattr(p, name), width) for p in parts], axis=0
        )
    return replace(first, **stacked)


def _dedup_block(
    products: RankedProducts,
    images: RankedImages,
    vectors: np.ndarray,
    threshold: float,
    block: slice,
    kept: np.ndarray,
    duplicate_of: np.ndarray,
    similarity: np.ndarray,
) -> None:
    """:func:`remove_near_duplicates` on rows ``block``, writing its outputs."""
    pids = products.product_ids[block]
    width = pids.shape[1]
    if width == 0:
        return
    v = vectors[block].astype(np.float32, copy=False)
    positions = np.clip(products.image_positions[block], 0, None)
    best = np.take_along_axis(v, positions[:, :, None], axis=1)
    sims = np.einsum("npd,nkd->npk", best, v)  # (rows, P, k)
    # The rank in ``products`` of each image's product (-1: not in the list).
    image_pids = images.product_ids[block]
    rank = _rank_in_list(image_pids, pids)
    earlier = (rank[:, None, :] >= 0) & (
        rank[:, None, :] < np.arange(width)[None, :, None]
    )
    over = (sims >= threshold) & earlier
    keep = kept[block]
    safe_rank = np.clip(rank, 0, None)
    # Only ranks with a pair over the threshold can be dropped; walk those.
    for r in np.flatnonzero(over.any(axis=(0, 2))):
        image_kept = np.take_along_axis(keep, safe_rank, axis=1) & (rank >= 0)
        keep[(over[:, r, :] & image_kept).any(axis=1), r] = False
    image_kept = np.take_along_axis(keep, safe_rank, axis=1) & (rank >= 0)
    against = np.where(earlier & image_kept[:, None, :], sims, -np.inf)
    nearest = against.argmax(axis=2)
    best_sim = np.take_along_axis(against, nearest[:, :, None], axis=2)[..., 0]
    nearest_product = np.take_along_axis(image_pids, nearest, axis=1)
    real = pids >= 0
    kept[block] = keep
    similarity[block] = np.where(real, best_sim, -np.inf)
    duplicate_of[block] = np.where(real & ~keep, nearest_product, NO_ID)


def _rank_in_list(ids: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """For each of ``ids`` ``(n, k)``, its position in the same row of
    ``lists`` ``(n, P)`` of distinct ids (-1: absent or an empty slot). One
    sorted search over keys ``row * span + id``, not an ``(n, k, P)`` test."""
    n, width = lists.shape
    span = int(max(lists.max(initial=0), ids.max(initial=0))) + 2
    row = np.arange(n, dtype=np.int64)[:, None]
    real = lists >= 0
    keys = (row * span + lists)[real]
    ranks = np.broadcast_to(np.arange(width), lists.shape)[real]
    order = np.argsort(keys, kind="stable")
    keys, ranks = keys[order], ranks[order]
    wanted = row * span + ids
    if keys.size == 0:
        return np.full(ids.shape, NO_ID, dtype=np.int64)
    at = np.clip(np.searchsorted(keys, wanted), 0, keys.size - 1)
    found = (keys[at] == wanted) & (ids >= 0)
    return np.where(found, ranks[at], NO_ID).astype(np.int64)


def _compact(mask: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each array's entries where ``mask`` is True, moved left in order; the
    width is the longest row; the rest is padding."""
    n = mask.shape[0]
    counts = mask.sum(axis=1)
    width = int(counts.max(initial=0))
    rows, cols = np.nonzero(mask)
    target = (np.cumsum(mask, axis=1) - 1)[rows, cols]
    out = []
    for array in arrays:
        packed = np.full((n, width), _pad_value(array.dtype), dtype=array.dtype)
        packed[rows, target] = array[rows, cols]
        out.append(packed)
    return tuple(out)


def _pad_value(dtype: np.dtype) -> Any:
    if dtype.kind == "b":
        return False
    if np.issubdtype(dtype, np.floating):
        return -np.inf
    return NO_ID


def _pad_columns(array: np.ndarray, width: int) -> np.ndarray:
    missing = width - array.shape[1]
    if missing == 0:
        return array
    pad = np.full((array.shape[0], missing), _pad_value(array.dtype), array.dtype)
    return np.concatenate([array, pad], axis=1)


def _row(lists: _Lists, i: int, mask: np.ndarray) -> _Lists:
    return replace(
        lists,
        **{
            f.name: getattr(lists, f.name)[i][mask]
            for f in fields(lists)
            if isinstance(getattr(lists, f.name), np.ndarray)
        },
    )


def _check_aligned(lists: object, names: tuple[str, ...]) -> None:
    shapes = {name: np.shape(getattr(lists, name)) for name in names}
    if len(set(shapes.values())) != 1:
        raise CollapseInputError(
            f"{type(lists).__name__} needs arrays of one shape, got {shapes}: "
            "pass aligned lists, one entry per slot"
        )


def _float_matrix(x: ArrayLike, what: str) -> np.ndarray:
    array = np.asarray(x)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.floating):
        raise CollapseInputError(
            f"{what} must be a float (n, d) array, got {array.dtype} of shape "
            f"{array.shape}"
        )
    if not np.isfinite(array).all():
        raise CollapseInputError(f"{what} hold NaN or infinity: fix them upstream")
    return array.astype(np.float32, copy=False)


def _threshold(threshold: object) -> float:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise CollapseInputError(
            f"threshold={threshold!r} is not a number: pass a cosine similarity "
            "in [-1, 1], e.g. one chosen by choose_dedup_threshold"
        )
    if not -1.0 <= float(threshold) <= 1.0:
        raise CollapseInputError(
            f"threshold={threshold} is outside [-1, 1], the range of a cosine "
            "similarity between unit vectors: pass one inside it"
        )
    return float(threshold)
