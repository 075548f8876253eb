"""A timeline of visual search traffic with known shifts injected, searched window by
window with the served code: what the monitors are tested on.

Introduced in ``casestudies/visual_search/08_monitoring_and_retraining.ipynb``
(monitoring and retraining: "the camera-style shift and a new category injected"). A
monitor is only as good as the shifts it was shown to catch, and a simulation can inject
them at a known moment, which production never tells us. A :class:`ShiftTimeline` says,
per time window, what the shoppers photograph:

* until ``style_at``, products of the old catalogue in the world's phone style;
  from it, a ``style_share`` of photos come from a new camera
  (``style``, default :meth:`~mlsd_lib.worlds.images_config.QueryStyle.camera_shift`:
  darker, noisier, blurrier);
* from ``category_at``, a ``category_share`` of photos are of the products of
  a category no model has seen
  (:meth:`~mlsd_lib.worlds.images.ImageWorld.with_new_category`), shot like
  the rest.

:func:`search_window` renders one window's photos (seeded by the window), crops
them as the gateway does (:func:`~mlsd_lib.visual.query_image.region_pixels`),
embeds them with the release's registered embedder and searches
with the release's :class:`~mlsd_lib.visual.search.VisualSearcher`, each shopper
in a region that stocks her product, with the stock filter on: the
:class:`~mlsd_lib.visual.monitors.SearchLog` the gateway's impression log would
hold, plus whether the product photographed was found (the simulation knows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.validation import (
    require_int,
    require_seed,
)
from mlsd_lib.visual.availability import ProductFilter
from mlsd_lib.visual.monitors import SearchLog
from mlsd_lib.visual.query_image import ImageLimits, region_pixels
from mlsd_lib.visual.search import VisualSearcher
from mlsd_lib.visual.served_embedder import embed_pixels
from mlsd_lib.worlds.images import ImageWorld, QuerySet
from mlsd_lib.worlds.images_config import QueryStyle

__all__ = ["ShiftTimeline", "ShiftTimelineError", "search_window", "window_traffic"]


class ShiftTimelineError(MlsdError, ValueError):
    """A timeline that cannot be drawn as asked; the message says why."""


@dataclass(frozen=True)
class ShiftTimeline:
    """``n_windows`` windows of ``searches`` photos each; the camera shift from
    window ``style_at`` on a ``style_share`` of photos, the new category from
    ``category_at`` on a ``category_share`` (None: never)."""

    n_windows: int = 20
    searches: int = 150
    style_at: int | None = 6
    style_share: float = 0.6
    category_at: int | None = 12
    category_share: float = 0.3
    style: QueryStyle = field(default_factory=QueryStyle.camera_shift)
    seed: int = 0

    def __post_init__(self) -> None:
        require_int("n_windows", self.n_windows, at_least=1, error=ShiftTimelineError)
        require_int("searches", self.searches, at_least=1, error=ShiftTimelineError)
        require_seed("seed", self.seed, error=ShiftTimelineError)
        for name in ("style_share", "category_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ShiftTimelineError(
                    f"{name} must be a share in [0, 1], got {getattr(self, name)}."
                )
        for name in ("style_at", "category_at"):
            at = getattr(self, name)
            if at is not None and not 0 <= at < self.n_windows:
                raise ShiftTimelineError(
                    f"{name}={at} is outside the timeline's {self.n_windows} "
                    "windows: inject inside it, or pass None for no injection."
                )

    def control(self) -> ShiftTimeline:
        """The same timeline with nothing injected (the false-alarm control)."""
        return dataclasses.replace(self, style_at=None, category_at=None)

    def injections(self) -> dict[str, int]:
        """``{"camera shift": window, "new category": window}``, those injected."""
        out = {"camera shift": self.style_at, "new category": self.category_at}
        return {k: v for k, v in out.items() if v is not None}


def window_traffic(
    timeline: ShiftTimeline,
    window: int,
    old_products: np.ndarray,
    new_products: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Window ``window``'s photographed products and whether each is shot in
    the new camera style (both ``(searches,)``), drawn from the window's seed."""
    rng = np.random.default_rng([timeline.seed, 8, window])
    n = timeline.searches
    products = rng.choice(np.asarray(old_products, np.int64), n)
    if timeline.category_at is not None and window >= timeline.category_at:
        new = rng.random(n) < timeline.category_share
        products[new] = rng.choice(np.asarray(new_products, np.int64), int(new.sum()))
    shifted = np.zeros(n, bool)
    if timeline.style_at is not None and window >= timeline.style_at:
        shifted = rng.random(n) < timeline.style_share
    return products, shifted


def _region_pixels(photos: QuerySet, limits: ImageLimits) -> np.ndarray:
    return np.stack(
        [
            region_pixels(image, box.tolist(), limits)
            for image, box in zip(photos.images.images, photos.boxes, strict=True)
        ]
    )


def search_window(
    timeline: ShiftTimeline,
    window: int,
    world: ImageWorld,
    old_products: np.ndarray,
    new_products: np.ndarray,
    embedder: nn.Module,
    searcher: VisualSearcher,
    availability: Callable[[int], Mapping[str, ProductFilter]],
    shopper_region: Callable[[np.ndarray], np.ndarray],
    *,
    k: int = 10,
    limits: ImageLimits | None = None,
) -> SearchLog:
    """Window ``window`` of ``timeline``: photos of ``world`` (the world after
    the injections, which holds ``new_products``) embedded by ``embedder`` (a
    pixels-in module: the registered file) and searched by ``searcher`` with
    ``availability(region)``'s filters, each shopper in
    ``shopper_region(products)``; ``found``: the product (or a duplicate
    listing of it) among the page's first ``k``."""
    limits = limits or ImageLimits()
    products, shifted = window_traffic(timeline, window, old_products, new_products)
    seed = (1_000 + 97 * timeline.seed + window) % 5_000  # below training photos
    order = np.r_[np.flatnonzero(~shifted), np.flatnonzero(shifted)]
    parts = []
    if (~shifted).any():
        parts.append(world.queries(products[~shifted], seed))
    if shifted.any():
        parts.append(world.queries(products[shifted], seed, timeline.style))
    products = products[order]
    crops = ImageSet(  # a product may be photographed twice: ids by position
        images=np.concatenate([_region_pixels(p, limits) for p in parts]),
        product_ids=products,
        category_ids=world.products["category"].to_numpy(np.int64)[products],
        image_ids=np.arange(products.size, dtype=np.int64),
    )
    vectors = embed_pixels(embedder, crops)
    regions = shopper_region(products)
    width = 20
    page_ids = np.full((products.size, width), -1, np.int64)
    page_scores = np.full((products.size, width), np.nan)
    for region in np.unique(regions):
        rows = np.flatnonzero(regions == region)
        batch = searcher.search_batch(
            vectors[rows],
            embedder_version=searcher.catalogue.embedder_version,
            n_products=width,
            filters=availability(int(region)),
        )
        ids = batch.products.product_ids
        page_ids[rows, : ids.shape[1]] = ids
        page_scores[rows, : ids.shape[1]] = np.where(
            ids >= 0, batch.products.scores, np.nan
        )
    shown = np.maximum(page_ids[:, :k], 0)
    found = (
        (world.canonical(shown) == world.canonical(products)[:, None])
        & (page_ids[:, :k] >= 0)
    ).any(axis=1)
    categories = world.products["category"].to_numpy(np.int64)
    first = page_ids[:, 0]
    return SearchLog(
        window=np.full(products.size, window, np.int64),
        embeddings=vectors.astype(np.float32),
        page_scores=page_scores,
        top1_category=np.where(first >= 0, categories[np.maximum(first, 0)], -1),
        found=found,
    )
