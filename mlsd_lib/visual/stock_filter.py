"""The in-stock filter: which products a shopper in one region can buy now, from Redis.

Introduced in ``casestudies/visual_search/03_data_and_features.ipynb`` (panel B, step 5:
"Redis: stock, price, region; filter; return 20"). Stock changes by the minute, so it
cannot live in the index; the stream processor keeps each product's in-stock region mask
in Redis (:mod:`~mlsd_lib.visual.product_features`) and :class:`InStockFilter` reads it
after the search, for the products that survived collapse and dedup.

It implements :class:`~mlsd_lib.visual.availability.ProductFilter`: called
with distinct product ids, it returns True where the product is in stock in
the shopper's region, reading every product's record with ONE round trip
(:meth:`~mlsd_lib.features.online.OnlineStore.read`: a Lua ``MGET`` on the
server), so the filter costs the same few hundred microseconds for 5
products or 200. A product is sold in a region only if it can be in stock
there, so the one mask also answers "ships to her region".

A product Redis knows nothing about (no stock event ever folded, or a record
past its TTL) is hidden by default (``unknown=False``): showing a product
that cannot be bought is the failure the filter exists to prevent, and a
product without a stock record is a pipeline bug to alert on, not a reason
to guess.

:func:`redis_availability` is the form a search service takes: given the
shopper's region, the named filters of her request
(``{"in_stock": InStockFilter(...)}``), each asked once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.online import OnlineStore

__all__ = ["InStockFilter", "StockFilterError", "redis_availability"]

_STOCK = "product_state:stock"


class StockFilterError(MlsdError, ValueError):
    """A stock filter built or called wrongly; the message says how to fix it."""


class InStockFilter:
    """Keep the products in stock in ``region``, as Redis knows them now.

    ``store`` must know the view ``product_state``
    (:func:`~mlsd_lib.visual.product_features.product_store`). ``now`` (Unix
    seconds; None: the clock) decides which records are past their TTL.
    ``unknown`` is what a product without a stock record gets. ``reads``
    counts the round trips made.
    """

    def __init__(
        self,
        store: OnlineStore,
        region: int,
        *,
        now: float | None = None,
        unknown: bool = False,
    ) -> None:
        if isinstance(region, bool) or not isinstance(region, int | np.integer):
            raise StockFilterError(
                f"region must be an integer region number, got {region!r}."
            )
        if not 0 <= region < 24:
            raise StockFilterError(
                f"region={region} is outside [0, 24): the stock mask has one bit "
                "per region, 24 at most."
            )
        store.registry.resolve([_STOCK])  # fails now, naming the view, if unknown
        self.store, self.region, self.now = store, int(region), now
        self.unknown = bool(unknown)
        self.reads = 0

    def __call__(self, product_ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(product_ids)
        if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
            raise StockFilterError(
                f"product_ids must be a 1-D integer array, got {ids.dtype} of shape "
                f"{ids.shape}."
            )
        if ids.size == 0:
            return np.zeros(0, dtype=bool)
        read = self.store.read(
            pd.DataFrame({"entity_id": ids.astype(np.int64)}), [_STOCK], now=self.now
        )
        self.reads += 1
        mask = read.values[:, 0].astype(np.int64)
        in_stock = ((mask >> self.region) & 1) == 1
        return np.where(read.missing[:, 0], self.unknown, in_stock)

    def __repr__(self) -> str:
        return f"InStockFilter(region={self.region}, unknown={self.unknown})"


def redis_availability(
    store: OnlineStore, *, now: float | None = None, unknown: bool = False
) -> Callable[[int], Mapping[str, InStockFilter]]:
    """Per request, the named filters of the shopper's region, read from Redis."""
    store.registry.resolve([_STOCK])

    def filters(region: int) -> Mapping[str, InStockFilter]:
        return {"in_stock": InStockFilter(store, region, now=now, unknown=unknown)}

    return filters
