"""What a visual search server loads from disk: the registry, the fallback and
stock tables, the stream and the clock.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (step 6, "Serving"). A
gateway process trains nothing; it starts from files a release job wrote.
:func:`save_visual_bundle` writes into one folder:

* ``visual_tables.npz``: the degraded page's table (every product, its
  category and popularity: :class:`~mlsd_lib.visual.fallback.CategoryFallback`
  is built from it) and the stock snapshot of the release (each product's
  in-stock region mask), plain arrays (read with ``allow_pickle`` off);
* ``bundle.json``: the registry folder (its ``production`` stage names the
  release to serve: embedder and index together), the stream the stock fold
  reads (so the Redis keys the filter reads), the number of regions, and the
  clock ("now" of a simulated world in Unix seconds, or null for the wall
  clock).

:func:`load_visual_bundle` reads them back. :func:`stock_availability` is the
Redis-backed availability a server filters with
(:class:`~mlsd_lib.visual.stock_filter.InStockFilter` on the product features
the stream processor keeps fresh), :func:`snapshot_availability` the same
filter from the snapshot, in memory, for when Redis fails.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.registry import ModelRegistry
from mlsd_lib.visual.availability import ProductFilter, TableFilter
from mlsd_lib.visual.fallback import CategoryFallback
from mlsd_lib.visual.pipeline import Availability
from mlsd_lib.visual.product_features import product_fold, product_store
from mlsd_lib.visual.stock_filter import InStockFilter

__all__ = [
    "IN_STOCK",
    "VisualBundle",
    "VisualBundleError",
    "load_visual_bundle",
    "save_visual_bundle",
    "snapshot_availability",
    "stock_availability",
]

BUNDLE_FILE, TABLES_FILE = "bundle.json", "visual_tables.npz"
#: The availability filter's name in responses and the impression log.
IN_STOCK = "in_stock"


class VisualBundleError(MlsdError, FileNotFoundError):
    """A folder that does not hold a visual bundle; says what is missing."""


def stock_availability(
    client: redis.Redis, stream: str, now: float | None = None
) -> Availability:
    """Per region, the in-stock filter reading Redis (one round trip per call),
    as the product fold of ``stream`` keeps it; ``now``: Unix seconds the
    records' staleness is judged at (None: the clock)."""
    store = product_store(client, product_fold(stream))

    def filters(region: int) -> dict[str, ProductFilter]:
        return {IN_STOCK: InStockFilter(store, region, now=now)}

    return filters


def snapshot_availability(product_ids: ArrayLike, stock: ArrayLike) -> Availability:
    """Per region, the in-stock filter of a snapshot: each product's region
    mask (bit ``r``: in stock in region ``r``); unknown products are hidden."""
    ids = np.asarray(product_ids, dtype=np.int64)
    masks = np.asarray(stock, dtype=np.int64)
    tables: dict[int, TableFilter] = {}

    def filters(region: int) -> dict[str, ProductFilter]:
        if region not in tables:
            tables[region] = TableFilter(ids, ((masks >> int(region)) & 1) == 1)
        return {IN_STOCK: tables[region]}

    return filters


@dataclass(frozen=True)
class VisualBundle:
    """Everything a visual search server needs besides Redis and a model server."""

    registry: ModelRegistry
    stream: str
    n_regions: int
    product_ids: np.ndarray
    category_ids: np.ndarray
    popularity: np.ndarray
    stock: np.ndarray
    frozen_now: float | None

    def clock(self) -> Callable[[], float]:
        """Unix seconds now: frozen at the simulated world's "now", or the wall
        clock."""
        if self.frozen_now is None:
            return time.time
        now = self.frozen_now
        return lambda: now

    def fallback(self, depth: int = 200) -> CategoryFallback:
        """The degraded pages: each category's most popular products."""
        return CategoryFallback(
            self.product_ids, self.category_ids, self.popularity, depth=depth
        )

    def availability(self, client: redis.Redis) -> Availability:
        """The in-stock filters from ``client``'s Redis, at the bundle's clock."""
        return stock_availability(client, self.stream, self.frozen_now)

    def snapshot(self) -> Availability:
        """The in-stock filters from the release's snapshot."""
        return snapshot_availability(self.product_ids, self.stock)


def save_visual_bundle(
    folder: str | Path,
    *,
    registry: ModelRegistry,
    stream: str,
    n_regions: int,
    product_ids: ArrayLike,
    category_ids: ArrayLike,
    popularity: ArrayLike,
    stock: ArrayLike,
    frozen_now: float | None,
) -> Path:
    """Write the bundle into ``folder`` (see the module notes); returns it.
    ``product_ids``, ``category_ids``, ``popularity`` and ``stock`` are aligned,
    one entry per catalogue product."""
    arrays = {
        "product_ids": np.asarray(product_ids, dtype=np.int64),
        "category_ids": np.asarray(category_ids, dtype=np.int64),
        "popularity": np.asarray(popularity, dtype=np.float64),
        "stock": np.asarray(stock, dtype=np.int64),
    }
    shapes = {name: value.shape for name, value in arrays.items()}
    if len(set(shapes.values())) != 1 or arrays["product_ids"].ndim != 1:
        raise VisualBundleError(
            f"product_ids, category_ids, popularity and stock must be aligned 1-D "
            f"arrays, one entry per product; got shapes {shapes}."
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / TABLES_FILE, **arrays)
    info = {
        "registry": str(Path(registry.root).resolve()),
        "stream": stream,
        "n_regions": int(n_regions),
        "frozen_now": frozen_now,
    }
    (folder / BUNDLE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return folder


def load_visual_bundle(folder: str | Path) -> VisualBundle:
    """The bundle :func:`save_visual_bundle` wrote into ``folder``."""
    folder = Path(folder)
    missing = [n for n in (BUNDLE_FILE, TABLES_FILE) if not (folder / n).is_file()]
    if missing:
        raise VisualBundleError(
            f"{folder} lacks {missing}: it is not a visual search bundle; write one "
            "with save_visual_bundle (QuickVisualRelease.save_bundle for the quick "
            "release)."
        )
    info = json.loads((folder / BUNDLE_FILE).read_text())
    with np.load(folder / TABLES_FILE, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    return VisualBundle(
        registry=ModelRegistry(info["registry"]),
        stream=info["stream"],
        n_regions=int(info["n_regions"]),
        product_ids=arrays["product_ids"],
        category_ids=arrays["category_ids"],
        popularity=arrays["popularity"],
        stock=arrays["stock"],
        frozen_now=info["frozen_now"],
    )
