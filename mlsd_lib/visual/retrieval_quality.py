"""One row of offline quality for any ranking: recall@K by item and graded NDCG.

Introduced in ``casestudies/visual_search/02_framing_and_baselines.ipynb`` (step 2: the
metrics are "recall@K on unseen products and graded NDCG"). The oracle, the baselines
and later the learned embedder are compared in one table, so they are measured by one
function each, with the same two conventions:

* **Recall@K counts items, not listings.** A merchant's duplicate listing is
  the same item under a new id; a user who photographs it and gets the
  original listing first got the right answer. Both sides are mapped to the
  item's canonical id before ranks are taken (``canonical``, e.g. the image
  world's :meth:`~mlsd_lib.worlds.images.ImageWorld.canonical`); see
  :func:`~mlsd_lib.visual.oracle.duplicate_ceiling` for what raw ids would
  cost. Recall is image-level by default, the Stanford Online Products
  convention (is an image of the item among the top K gallery images?), or
  product-level (among the top K distinct products, the list a user sees).
* **NDCG@k is graded.** The top-k distinct products (each scored by its best
  image) are scored against the true similarity of every gallery product
  (:func:`~mlsd_lib.visual.oracle.relevance_matrix`), with
  :func:`~mlsd_lib.evaluation.image_retrieval.graded_ndcg_at_k`. A list that
  puts the right item first and then unrelated ones scores below one that
  follows it with the same family's products: recall cannot see that.

:func:`retrieval_quality` measures vectors (a baseline, an embedder) by exact
search; :func:`list_quality` measures ranked product lists that come from
anywhere (the oracle's, a pipeline's final answer), with :func:`list_ranks`
finding where the right item sits in each list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.image_retrieval import (
    graded_ndcg_at_k,
    image_match_ranks,
    product_match_ranks,
    recall_from_ranks,
    top_k_products,
)
from mlsd_lib.validation import (
    require_int,
)

__all__ = [
    "LEVELS",
    "RetrievalQualityError",
    "list_quality",
    "list_ranks",
    "retrieval_quality",
]

#: Where recall@K looks: the top K gallery images, or the top K distinct products.
LEVELS = ("image", "product")


class RetrievalQualityError(MlsdError, ValueError):
    """Inputs that cannot be measured; the message says which and why."""


def _identity(ids: np.ndarray) -> np.ndarray:
    return ids


def _mapped(
    canonical: Callable[[np.ndarray], np.ndarray] | None, ids: np.ndarray
) -> np.ndarray:
    return np.asarray((canonical or _identity)(ids), dtype=np.int64)


def list_ranks(lists: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """The 1-based position of each row's target in its list, ``k + 1`` if absent.

    Introduced in ``casestudies/visual_search/index.md``. ``lists`` is
    ``(n, k)`` product ids, best first (-1: an empty slot), ``targets``
    ``(n,)``; the result feeds
    :func:`~mlsd_lib.evaluation.image_retrieval.recall_from_ranks`: a target
    beyond the list is a miss at every K up to ``k``.
    """
    ranked = np.asarray(lists)
    wanted = np.asarray(targets)
    if ranked.ndim != 2 or not np.issubdtype(ranked.dtype, np.integer):
        raise RetrievalQualityError(
            f"lists must be a 2-D int array (queries x positions), got "
            f"{ranked.dtype} of shape {ranked.shape}."
        )
    if wanted.shape != (len(ranked),):
        raise RetrievalQualityError(
            f"targets must hold one id per list ({len(ranked)}), got shape "
            f"{wanted.shape}."
        )
    hit = ranked == wanted[:, None]
    first = np.argmax(hit, axis=1) + 1
    return np.where(hit.any(axis=1), first, ranked.shape[1] + 1).astype(np.int64)


def _report(
    ranks: np.ndarray,
    ks: Sequence[int],
    lists: np.ndarray | None,
    relevance: ArrayLike | None,
    relevance_products: ArrayLike | None,
    ndcg_k: int,
) -> dict[str, float]:
    row = {f"recall@{k}": v for k, v in recall_from_ranks(ranks, ks).items()}
    if relevance is not None and lists is not None:
        row[f"NDCG@{ndcg_k}"] = graded_ndcg_at_k(
            lists[:, :ndcg_k], relevance, ndcg_k, products=relevance_products
        )
    return row


def retrieval_quality(
    query_vectors: ArrayLike,
    query_products: ArrayLike,
    gallery_vectors: ArrayLike,
    gallery_products: ArrayLike,
    *,
    canonical: Callable[[np.ndarray], np.ndarray] | None = None,
    relevance: ArrayLike | None = None,
    relevance_products: ArrayLike | None = None,
    ks: Sequence[int] = (1, 10, 100),
    ndcg_k: int = 20,
    level: str = "image",
) -> dict[str, float]:
    """``{"recall@K": ..., "NDCG@k": ...}`` of vectors, by exact inner-product search.

    Introduced in ``casestudies/visual_search/index.md``. Recall@K for each of
    ``ks`` with query and gallery products mapped through ``canonical`` (None:
    ids as they are), at ``level`` ``"image"`` or ``"product"``; with
    ``relevance`` (queries x ``relevance_products``, e.g. from
    :func:`~mlsd_lib.visual.oracle.relevance_matrix`), also graded NDCG@``ndcg_k``
    of the top distinct products by their listing ids.
    """
    if level not in LEVELS:
        raise RetrievalQualityError(
            f"level must be one of {list(LEVELS)}, got {level!r}."
        )
    q_products = np.asarray(query_products)
    g_products = np.asarray(gallery_products)
    ranker = image_match_ranks if level == "image" else product_match_ranks
    ranks = ranker(
        query_vectors,
        _mapped(canonical, q_products),
        gallery_vectors,
        _mapped(canonical, g_products),
    )
    lists = None
    if relevance is not None:
        _, lists = top_k_products(query_vectors, gallery_vectors, g_products, ndcg_k)
    return _report(ranks, ks, lists, relevance, relevance_products, ndcg_k)


def list_quality(
    lists: ArrayLike,
    query_products: ArrayLike,
    *,
    canonical: Callable[[np.ndarray], np.ndarray] | None = None,
    relevance: ArrayLike | None = None,
    relevance_products: ArrayLike | None = None,
    ks: Sequence[int] = (1, 10, 100),
    ndcg_k: int = 20,
) -> dict[str, float]:
    """The same row as :func:`retrieval_quality` for ranked product lists.

    Introduced in ``casestudies/visual_search/index.md``. ``lists`` is
    ``(n, k)`` product ids, best first (-1: empty), at least ``max(ks)`` and
    ``ndcg_k`` deep; recall@K is product-level (a list holds products). Used
    for the oracle's lists and for a pipeline's final answer.
    """
    for k in ks:
        require_int("ks", k, at_least=1, error=RetrievalQualityError)
    require_int("ndcg_k", ndcg_k, at_least=1, error=RetrievalQualityError)
    ranked = np.asarray(lists)
    if ranked.ndim != 2 or not np.issubdtype(ranked.dtype, np.integer):
        raise RetrievalQualityError(
            f"lists must be a 2-D int array (queries x positions), got "
            f"{ranked.dtype} of shape {ranked.shape}."
        )
    deepest = max([*ks, ndcg_k if relevance is not None else 0])
    if ranked.shape[1] < deepest:
        raise RetrievalQualityError(
            f"lists are {ranked.shape[1]} deep but recall@{max(ks)} or NDCG@{ndcg_k} "
            f"needs {deepest}: rank deeper or ask for smaller K."
        )
    empty = ranked < 0
    mapped = np.full(ranked.shape, -1, dtype=np.int64)
    mapped[~empty] = _mapped(canonical, ranked[~empty])
    targets = _mapped(canonical, np.asarray(query_products))
    ranks = list_ranks(mapped, targets)
    return _report(ranks, ks, ranked, relevance, relevance_products, ndcg_k)
