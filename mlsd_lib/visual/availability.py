"""Which products may be shown: the filter interface the search pipeline calls.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (panel B, step 5: "Redis:
stock, price, region; filter; return 20"). Stock and shipping change by the minute, so
they cannot live in the index (that would mean a rebuild); they are read after the
search, for the few dozen products that survive collapse and dedup, and applied as
filters.

A filter is anything callable as ``keep = f(product_ids)``: given a 1-D
int64 array of distinct product ids, it returns a bool array of the same
shape, True where the product may be shown (:class:`ProductFilter`). The
search pipeline calls each filter **once per batch** with every product any
query in the batch needs, which is one pipelined read for a Redis-backed
filter; a filter for one user's region is built per request (a closure or a
small object holding the region). Filters are passed by name
(``{"in_stock": ..., "ships_to_region": ...}``) so that the
:class:`~mlsd_lib.reranking.filters.FilterReport` counts each one's survival
rate, the over-fetch the pipeline needs.

:class:`TableFilter` is the in-memory one (a product -> allowed table), for
tests, notebooks and the world's ground truth; the Redis-backed one
implements the same call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.reranking.filters import FilterReport

__all__ = [
    "FilterOutputError",
    "ProductFilter",
    "TableFilter",
    "filter_report",
    "product_keep_masks",
]


class FilterOutputError(MlsdError, ValueError):
    """A filter that answered something other than one bool per product."""


class ProductFilter(Protocol):
    """Given distinct product ids ``(m,)`` int64, a keep mask ``(m,)`` bool."""

    def __call__(self, product_ids: np.ndarray) -> np.ndarray: ...


class TableFilter:
    """A filter from a table: ``product_ids`` and whether each ``allowed``.

    A product missing from the table gets ``default`` (False: an unknown
    product is not shown, the safe side for stock).
    """

    def __init__(
        self, product_ids: ArrayLike, allowed: ArrayLike, *, default: bool = False
    ) -> None:
        ids = np.asarray(product_ids)
        flags = np.asarray(allowed)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise FilterOutputError(
                f"product_ids must be 1-D integers, got {ids.dtype} of shape "
                f"{ids.shape}"
            )
        if flags.dtype != bool or flags.shape != ids.shape:
            raise FilterOutputError(
                f"allowed must be bool, one per product ({ids.size}), got "
                f"{flags.dtype} of shape {flags.shape}"
            )
        order = np.argsort(ids, kind="stable")
        self._ids = ids.astype(np.int64)[order]
        if np.any(self._ids[1:] == self._ids[:-1]):
            raise FilterOutputError("product_ids repeat: pass each product once")
        self._allowed = flags[order]
        self.default = bool(default)

    def __call__(self, product_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(product_ids, dtype=np.int64)
        if self._ids.size == 0:
            return np.full(ids.shape, self.default)
        at = np.clip(np.searchsorted(self._ids, ids), 0, self._ids.size - 1)
        return np.where(self._ids[at] == ids, self._allowed[at], self.default)


def product_keep_masks(
    filters: Mapping[str, ProductFilter], product_ids: np.ndarray
) -> dict[str, np.ndarray]:
    """Each filter's keep mask over ``product_ids`` ``(n, P)`` (``-1``:
    empty slot, never kept), each filter called once on the distinct ids."""
    ids = np.asarray(product_ids, dtype=np.int64)
    real = ids >= 0
    distinct, inverse = np.unique(ids[real], return_inverse=True)
    masks = {}
    for name, keep_filter in filters.items():
        answer = np.asarray(keep_filter(distinct))
        if answer.dtype != bool or answer.shape != distinct.shape:
            raise FilterOutputError(
                f"filter {name!r} answered {answer.dtype} of shape {answer.shape} "
                f"for {distinct.size} product ids: return one bool per id, True "
                "where the product may be shown"
            )
        mask = np.zeros(ids.shape, dtype=bool)
        mask[real] = answer[inverse.reshape(-1)]
        masks[name] = mask
    return masks


def filter_report(
    masks: Mapping[str, np.ndarray], product_ids: np.ndarray, row: int | None = None
) -> FilterReport:
    """The :class:`~mlsd_lib.reranking.filters.FilterReport` of ``masks`` over
    the products of every query, or of query ``row`` alone."""
    ids = np.asarray(product_ids)
    pick = slice(None) if row is None else row
    real = ids[pick] >= 0
    kept = real.copy()
    passed = {}
    for name, mask in masks.items():
        passed[name] = int((mask[pick] & real).sum())
        kept &= mask[pick]
    return FilterReport(int(real.sum()), passed, int(kept.sum()))
