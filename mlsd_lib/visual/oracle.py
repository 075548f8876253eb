"""The oracle: the catalogue ranked by the true similarity, and what pixels can reach.

Introduced in ``casestudies/visual_search/02_framing_and_baselines.ipynb`` (step 2:
"ranks the catalogue with an oracle that knows the true identities and parameters"). In
production nobody knows how good recall@K or NDCG could be; in the image world the
graded similarity of every pair of products is a known function of their parameters, so
the best possible ranking can be written down:

* :func:`relevance_matrix`: the true similarity of each query's product to
  every gallery product (the gains of graded NDCG), computed in chunks;
* :func:`oracle_top_k`: each query's gallery products sorted by it. It puts
  the photographed product (and its known duplicates, similarity 1) first, so
  its recall@K and its NDCG are 1 by construction: it is the yardstick, not a
  model, and a model's figures read as a share of it;
* :func:`duplicate_ceiling`: what no model that sees only pixels can exceed
  when the answer key counts listings rather than items. A merchant's
  duplicate listing is the same item under a new id, and a user's photo of
  it looks like a photo of the original, so given the photo the listings of
  one item are interchangeable: with ``m`` of them in the gallery the best a
  model can do is a random order among them, and it puts the photographed id
  in its top ``K`` with probability ``min(K, m) / m``. The ceiling is the
  mean of that over the queries; evaluating on the canonical ids (the
  original listing of each item) lifts it back to 1, which is why the case
  study does.

Everything takes arrays of product ids and a similarity function, so the
same code ranks the world's catalogue or any labelled gallery.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import rank_top_k

__all__ = [
    "OracleInputError",
    "duplicate_ceiling",
    "oracle_top_k",
    "relevance_matrix",
]

#: Query x product similarities evaluated per call of the similarity function.
CHUNK_PAIRS = 1 << 21


class OracleInputError(MlsdError, ValueError):
    """Ids, relevance or settings the oracle cannot use; the message says which."""


def _ids(values: ArrayLike, name: str) -> np.ndarray:
    ids = np.asarray(values)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise OracleInputError(
            f"{name} must be a 1-D array of integer product ids, got {ids.dtype} of "
            f"shape {ids.shape}."
        )
    return ids.astype(np.int64, copy=False)


def relevance_matrix(
    similarity: Callable[[np.ndarray, np.ndarray], np.ndarray],
    query_products: ArrayLike,
    gallery_products: ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """True graded relevance of every gallery product for every query.

    Introduced in ``casestudies/visual_search/index.md``. ``similarity(a, b)``
    broadcasts two arrays of product ids to similarities in [0, 1] (the image
    world's :meth:`~mlsd_lib.worlds.images.ImageWorld.similarity`). Returns
    ``(relevance float64 (n_queries, n_products), products int64
    (n_products,))``: the columns are the gallery's distinct products in
    ascending order, the layout
    :func:`~mlsd_lib.evaluation.image_retrieval.graded_ndcg_at_k` takes.
    """
    queries = _ids(query_products, "query_products")
    products = np.unique(_ids(gallery_products, "gallery_products"))
    if products.size == 0:
        raise OracleInputError("gallery_products is empty: there is nothing to rank.")
    relevance = np.empty((queries.size, products.size), dtype=np.float64)
    step = max(1, CHUNK_PAIRS // products.size)
    for start in range(0, queries.size, step):
        block = queries[start : start + step]
        values = np.asarray(similarity(block[:, None], products[None, :]), float)
        if values.shape != (block.size, products.size):
            raise OracleInputError(
                f"similarity returned shape {values.shape} for ids broadcast to "
                f"{(block.size, products.size)}: it must broadcast its arguments."
            )
        relevance[start : start + block.size] = values
    if not np.isfinite(relevance).all() or (relevance < 0).any():
        raise OracleInputError(
            "similarity returned values that are negative or not finite: graded "
            "gains must be >= 0."
        )
    return relevance, products


def oracle_top_k(
    relevance: ArrayLike, products: ArrayLike, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``k`` most relevant products: ``(gains (n, k), ids (n, k))``.

    Introduced in ``casestudies/visual_search/index.md``. ``relevance[i, j]``
    is the true gain of ``products[j]`` for query ``i`` (as
    :func:`relevance_matrix` returns it). Ties go to the lower product id, so
    among listings of one item (all at 1) the original, listed first, leads.
    Slots beyond the gallery are -1 with gain 0.
    """
    gains = np.asarray(relevance, dtype=np.float64)
    ids = _ids(products, "products")
    if gains.ndim != 2 or gains.shape[1] != ids.size:
        raise OracleInputError(
            f"relevance must be 2-D with one column per product ({ids.size}), got "
            f"shape {gains.shape}."
        )
    if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
        raise OracleInputError(f"k must be a positive integer, got {k!r}.")
    order = np.argsort(ids, kind="stable")
    if np.any(np.diff(ids[order]) == 0):
        raise OracleInputError("products must not repeat: one column per product.")
    picked = rank_top_k(gains[:, order], int(k))
    valid = picked >= 0
    safe = np.maximum(picked, 0)
    top_ids = np.where(valid, ids[order][safe], -1)
    top_gains = np.where(valid, np.take_along_axis(gains[:, order], safe, axis=1), 0.0)
    return top_gains, top_ids


def duplicate_ceiling(
    query_canonical: ArrayLike,
    gallery_products: ArrayLike,
    gallery_canonical: ArrayLike,
    ks: Sequence[int] = (1, 10, 100),
) -> dict[int, float]:
    """Best expected recall@K by raw listing id for a model that sees only pixels.

    Introduced in ``casestudies/visual_search/index.md``. ``query_canonical``
    is the item (canonical id) each query photographs; ``gallery_products``
    and ``gallery_canonical`` are parallel: each gallery image's listing and
    its item. A query whose item has ``m`` distinct listings in the gallery
    cannot be told which one was photographed, so at best its listing is in
    the top ``K`` with probability ``min(K, m) / m``; returns ``{K: mean over
    queries}``. Raises when a query's item has no listing in the gallery.
    """
    items = _ids(query_canonical, "query_canonical")
    listings = _ids(gallery_products, "gallery_products")
    owners = _ids(gallery_canonical, "gallery_canonical")
    if listings.size != owners.size:
        raise OracleInputError(
            f"gallery_products ({listings.size}) and gallery_canonical "
            f"({owners.size}) must be parallel: one item per gallery image."
        )
    if items.size == 0:
        raise OracleInputError("query_canonical is empty: there is no query to score.")
    pairs = np.unique(np.stack([owners, listings], axis=1), axis=0)
    item_ids, counts = np.unique(pairs[:, 0], return_counts=True)
    where = np.minimum(np.searchsorted(item_ids, items), item_ids.size - 1)
    absent = item_ids[where] != items
    if absent.any():
        raise OracleInputError(
            f"{int(absent.sum())} queries photograph an item with no listing in the "
            f"gallery (first: item {items[absent][0]}): no ranking can find them."
        )
    m = counts[where].astype(np.float64)
    result = {}
    for k in ks:
        if not isinstance(k, int | np.integer) or isinstance(k, bool) or k < 1:
            raise OracleInputError(f"each of ks must be a positive integer, got {k!r}.")
        result[int(k)] = float(np.mean(np.minimum(k, m) / m))
    return result
