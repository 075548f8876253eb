"""The degraded answer: popular available products of the query's category.

Introduced in ``casestudies/visual_search/index.md`` (requirement
"Availability: degrade to category-level results if the index is
unavailable"). When the ANN index (or the embedder) cannot answer within its
budget, an empty page is the worst answer: the user photographed *something*,
and a category guess (a cheap classifier, the pre-detected region's label, the
surface the photo was taken from) is usually available. The fallback shows
that category's most popular products that pass the same filters (in stock,
ships to the region), marked ``degraded`` with the reason, so the client can
say so and the monitor can count it.

:class:`CategoryFallback` is precomputed, like the recommender's
popular-in-region feed: per category, the ``depth`` most popular products
(popularity is the caller's: clicks or purchases over a recent window), best
first, ties by product id. It needs neither the index nor the embedder; an
unknown or missing category answers the most popular products overall. The
filters are asked once, for the category's list; if fewer than
``n_products`` survive, the page is short rather than padded with other
categories.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.visual.availability import ProductFilter, product_keep_masks
from mlsd_lib.visual.catalogue_index import CatalogueIndex

__all__ = ["CategoryFallback", "DegradedResult", "FallbackInputError"]


class FallbackInputError(MlsdError, ValueError):
    """Products, categories or popularity the fallback table cannot be built from."""


@dataclass(frozen=True)
class DegradedResult:
    """A degraded page: product ids and their popularity, best first, the
    category answered (None: overall) and why the search was degraded."""

    product_ids: np.ndarray
    scores: np.ndarray
    category_id: int | None
    reason: str
    degraded: bool = True


class CategoryFallback:
    """Per category, its most popular products (see the module docstring)."""

    def __init__(
        self,
        product_ids: ArrayLike,
        category_ids: ArrayLike,
        popularity: ArrayLike,
        *,
        depth: int = 200,
    ) -> None:
        products = np.asarray(product_ids)
        categories = np.asarray(category_ids)
        scores = np.asarray(popularity, dtype=np.float64)
        n = products.shape[0] if products.ndim == 1 else -1
        if (
            n < 0
            or categories.shape != (n,)
            or scores.shape != (n,)
            or (
                n
                and (
                    products.dtype.kind not in "iu" or categories.dtype.kind not in "iu"
                )
            )
        ):
            raise FallbackInputError(
                "product_ids, category_ids and popularity must be 1-D and aligned "
                f"(integers, integers, numbers), got shapes {products.shape}, "
                f"{categories.shape}, {scores.shape}"
            )
        if np.unique(products).size != n:
            raise FallbackInputError("product_ids repeat: pass each product once")
        if not np.isfinite(scores).all():
            raise FallbackInputError(
                "popularity holds NaN or infinity: fix it upstream"
            )
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise FallbackInputError(f"depth={depth!r}: pass a positive integer")
        products = products.astype(np.int64)
        categories = categories.astype(np.int64)
        order = np.lexsort((products, -scores, categories))
        products, categories, scores = products[order], categories[order], scores[order]
        starts = np.flatnonzero(np.r_[True, categories[1:] != categories[:-1]])
        rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
        top = rank < depth
        self._products, self._scores = products[top], scores[top]
        self._categories = categories[top]
        self._known = np.unique(self._categories)
        overall = np.lexsort((products, -scores))[:depth]
        self._overall = (products[overall], scores[overall])
        self.depth = depth

    @classmethod
    def from_catalogue(
        cls,
        catalogue: CatalogueIndex,
        product_ids: ArrayLike,
        popularity: ArrayLike,
        *,
        depth: int = 200,
    ) -> CategoryFallback:
        """The table over every product of ``catalogue``, popularity given
        for some of them (``product_ids``, ``popularity``; the rest count 0)."""
        products = catalogue.products
        given = np.asarray(product_ids, dtype=np.int64)
        values = np.asarray(popularity, dtype=np.float64)
        if given.shape != values.shape or given.ndim != 1:
            raise FallbackInputError(
                f"product_ids and popularity must be aligned 1-D arrays, got "
                f"shapes {given.shape} and {values.shape}"
            )
        scores = np.zeros(products.size)
        at = np.clip(np.searchsorted(products, given), 0, products.size - 1)
        known = products[at] == given
        scores[at[known]] = values[known]
        return cls(products, catalogue.product_categories, scores, depth=depth)

    @property
    def categories(self) -> np.ndarray:
        """The categories the table has products for."""
        return self._known.copy()

    def answer(
        self,
        category_id: int | None,
        *,
        reason: str,
        filters: Mapping[str, ProductFilter] | None = None,
        n_products: int = 20,
    ) -> DegradedResult:
        """Up to ``n_products`` popular products of ``category_id`` (overall
        when None or unknown) that pass every filter."""
        if (
            isinstance(n_products, bool)
            or not isinstance(n_products, int)
            or n_products < 1
        ):
            raise FallbackInputError(
                f"n_products={n_products!r}: pass a positive integer"
            )
        if category_id is not None and category_id in self._known:
            mine = self._categories == category_id
            products, scores = self._products[mine], self._scores[mine]
            answered: int | None = int(category_id)
        else:
            products, scores = self._overall
            answered = None
            if category_id is not None:
                reason = (
                    f"{reason}; category {category_id} unknown, most popular overall"
                )
        keep = np.ones(products.size, dtype=bool)
        for mask in product_keep_masks(filters or {}, products[None, :]).values():
            keep &= mask[0]
        return DegradedResult(
            product_ids=products[keep][:n_products],
            scores=scores[keep][:n_products],
            category_id=answered,
            reason=reason,
        )
