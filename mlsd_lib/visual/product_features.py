"""Product features in Redis: stock, price and 24 h click-through, kept fresh.

Introduced in ``casestudies/visual_search/03_data_and_features.ipynb`` (panel A:
"streaming features: stock, price, 24 h product CTR"; the requirement "an out-of-stock
product disappears from results within 5 minutes"). Features here are about products,
not users: filters and tie-breakers applied after the visual match, never inputs to the
embedder.

:func:`product_fold` is the stream processor's fold for the visual events
(:mod:`~mlsd_lib.visual.events`): the generic latest-value fold
(:func:`~mlsd_lib.features.latest_fold.entity_state`) keeping each product's
newest ``stock`` (its in-stock region mask) and ``price`` in the view
``product_state``, and counting its impressions, clicks and saves over a
sliding 24 h in ``product_counts``. It is built by name
(:func:`~mlsd_lib.features.fold_catalog.fold_named`), so a processor process
(``python -m mlsd_lib.features.stream_processor --fold latest
--value-types stock,price --counted-types impression,click,save
--state-name product``) runs exactly this fold.

:func:`read_product_features` reads both views for any products in one round
trip (:meth:`~mlsd_lib.features.online.OnlineStore.read`);
:func:`product_features_offline` computes the same values from the event log,
so a test (and chapter 3) shows that Redis serves what the definition says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import redis

from mlsd_lib.features.fold_catalog import fold_named
from mlsd_lib.features.latest_fold import LatestValueFold, latest_values_at
from mlsd_lib.features.online import OnlineStore, moment_seconds
from mlsd_lib.features.views import TIMESTAMP_COLUMN, FeatureRegistry
from mlsd_lib.features.windows import windowed_counts_in_order
from mlsd_lib.visual.events import VISUAL_STREAM

__all__ = [
    "COUNTED_TYPES",
    "PRODUCT_FEATURES",
    "VALUE_TYPES",
    "ProductFeatures",
    "product_features_offline",
    "product_fold",
    "product_store",
    "read_product_features",
]

#: Event types whose newest value is a product feature.
VALUE_TYPES = ("stock", "price")
#: Event types counted per product over 24 h.
COUNTED_TYPES = ("impression", "click", "save")
#: The features :func:`read_product_features` reads, in order.
PRODUCT_FEATURES = (
    "product_state:stock",
    "product_state:price",
    "product_counts:impression_24h",
    "product_counts:click_24h",
    "product_counts:save_24h",
)


def product_fold(stream: str = VISUAL_STREAM) -> LatestValueFold:
    """The fold that keeps the product features of ``stream``'s events."""
    fold = fold_named(
        "latest",
        stream,
        value_types=VALUE_TYPES,
        counted_types=COUNTED_TYPES,
        state_name="product",
    )
    assert isinstance(fold, LatestValueFold)
    return fold


def product_store(
    client: redis.Redis, fold: LatestValueFold | None = None
) -> OnlineStore:
    """An online store that knows the fold's two views."""
    fold = fold or product_fold()
    assert fold.counts is not None
    return OnlineStore(client, FeatureRegistry([fold.values.view, fold.counts.view]))


@dataclass(frozen=True)
class ProductFeatures:
    """What is known about each of ``product_ids``.

    ``stock``: the in-stock region mask (int64; -1 where no stock is known);
    ``price`` (NaN where unknown); ``impressions``, ``clicks``, ``saves``: the
    24 h counts (0 where none, or older than 24 h at the read).
    """

    product_ids: np.ndarray
    stock: np.ndarray
    price: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    saves: np.ndarray

    def in_stock(self, region: int) -> np.ndarray:
        """Whether each product is known to be in stock in ``region``."""
        return (self.stock >= 0) & (((self.stock >> int(region)) & 1) == 1)

    @property
    def ctr(self) -> np.ndarray:
        """24 h click-through, clicks / impressions (NaN without impressions)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(
                self.impressions > 0, self.clicks / self.impressions, np.nan
            )

    def frame(self) -> pd.DataFrame:
        """One row per product, the columns above and ``ctr``."""
        return pd.DataFrame(
            {
                "product_id": self.product_ids,
                "stock": self.stock,
                "price": self.price,
                "impressions_24h": self.impressions,
                "clicks_24h": self.clicks,
                "saves_24h": self.saves,
                "ctr_24h": self.ctr,
            }
        )


def _features(
    product_ids: np.ndarray,
    stock: np.ndarray,
    price: np.ndarray,
    counts: np.ndarray,
) -> ProductFeatures:
    return ProductFeatures(
        product_ids=np.asarray(product_ids, dtype=np.int64),
        stock=np.where(np.isnan(stock), -1, np.nan_to_num(stock)).astype(np.int64),
        price=np.asarray(price, dtype=np.float64),
        impressions=counts[:, 0].astype(np.int64),
        clicks=counts[:, 1].astype(np.int64),
        saves=counts[:, 2].astype(np.int64),
    )


def read_product_features(
    store: OnlineStore,
    product_ids: np.ndarray,
    *,
    now: float | None = None,
) -> ProductFeatures:
    """Every product feature of ``product_ids`` from Redis, in one round trip.

    ``now`` (Unix seconds; default the clock) decides staleness: counts older
    than 24 h at ``now`` read as 0.
    """
    ids = np.asarray(product_ids, dtype=np.int64)
    read = store.read(pd.DataFrame({"entity_id": ids}), PRODUCT_FEATURES, now=now)
    values = read.values.astype(np.float64)
    stock = np.where(read.missing[:, 0], np.nan, values[:, 0])
    price = np.where(read.missing[:, 1], np.nan, values[:, 1])
    return _features(ids, stock, price, values[:, 2:])


def product_features_offline(
    events: pd.DataFrame,
    product_ids: np.ndarray,
    at: float,
    fold: LatestValueFold | None = None,
) -> ProductFeatures:
    """The features :func:`read_product_features` serves at Unix time ``at``,
    once every event of ``events`` (a visual event log) up to ``at`` is folded.

    Stock and price are the newest values at or before ``at``
    (:func:`~mlsd_lib.features.latest_fold.latest_values_at`); the counts are
    each product's windowed counts right after its last counted event at or
    before ``at`` (:func:`~mlsd_lib.features.windows.windowed_counts_in_order`),
    0 if that event is more than 24 h before ``at``, as a read at ``at`` sees.
    """
    fold = fold or product_fold()
    assert fold.counts is not None
    ids = np.asarray(product_ids, dtype=np.int64)
    log = events.rename(columns={"product_id": "entity_id"})
    upto = log[log[TIMESTAMP_COLUMN] <= pd.Timestamp(at, unit="s", tz="UTC")]
    state = latest_values_at(upto, fold.values, ids, np.full(ids.size, at))
    counted = upto[upto["type"].isin(COUNTED_TYPES)]
    counted = counted.sort_values(TIMESTAMP_COLUMN, kind="stable")
    counted = counted.drop_duplicates("event_id", keep="first")
    rows = windowed_counts_in_order(counted, fold.counts)
    last = rows.groupby("entity_id").tail(1).set_index("entity_id")
    names = fold.counts.view.feature_names
    counts = last.reindex(ids)[names].to_numpy(np.float64)
    as_of = last.reindex(ids)[TIMESTAMP_COLUMN]
    age = (
        moment_seconds(at)
        - as_of.astype("datetime64[us, UTC]").astype("int64").to_numpy() / 1e6
    )
    fresh = as_of.notna().to_numpy() & (age <= fold.counts.view.ttl.total_seconds())
    counts = np.where(fresh[:, None], np.nan_to_num(counts), 0.0)
    return _features(
        ids, state["stock"].to_numpy(np.float64), state["price"].to_numpy(), counts
    )
