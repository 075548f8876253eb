"""A seeded visual search release, built in one call: for the serving tests, the
serving benchmark and the serving chapter.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (step 6, "Serving"). The
serving path needs a trained embedder, an index built by it, stock in Redis and the
tables of the degraded page; it does not need the best model. From a
:class:`~mlsd_lib.visual.recipes.VisualRecipe`, :func:`build_quick_visual_release`:

1. draws the image world and renders its catalogue;
2. trains the recipe's embedder on the training products
   (:func:`~mlsd_lib.visual.training_images.training_images`);
3. chooses the dedup threshold for the recipe's precision on the world's
   labelled pairs (duplicate listings against look-alikes and siblings of one
   family), from the catalogue's vectors (None, no dedup, when no threshold
   reaches it: a weak embedder cannot tell them apart);
4. registers the release (:func:`~mlsd_lib.visual.release.register_visual_release`:
   the embedder exported with parity, the catalogue embedded with the
   registered file, the IVF-PQ index, one version) and promotes it to
   production;
5. draws the market (:class:`~mlsd_lib.worlds.images_market.ImageMarket`):
   each product's popularity (the degraded page's order) and stock, as known
   at ``now`` (midday of day 0 by default).

:meth:`QuickVisualRelease.load_stock` streams the stock events up to ``now``
through the real stream processor into a Redis (what the availability filter
reads); :meth:`QuickVisualRelease.store_regions` embeds user photos' regions
in batch with the release's embedder and stores them as precomputed regions.
Every ``clear_*`` method deletes exactly what its ``load``/``store`` wrote.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import redis

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.evaluation.dedup import (
    DedupThreshold,
    DedupThresholdError,
    choose_dedup_threshold,
)
from mlsd_lib.features.online import delete_matching
from mlsd_lib.features.records import view_prefix
from mlsd_lib.features.stream_keys import dead_letter_stream
from mlsd_lib.features.stream_processor import StreamProcessor
from mlsd_lib.features.views import TIMESTAMP_COLUMN
from mlsd_lib.features.windows import seconds_to_timestamps
from mlsd_lib.models.embedder_training import EmbedderFit, train_embedder
from mlsd_lib.models.image_embedder import embed_images
from mlsd_lib.models.training import torch_threads
from mlsd_lib.serving.registry import ModelRegistry
from mlsd_lib.visual.bundle import (
    save_visual_bundle,
    snapshot_availability,
    stock_availability,
)
from mlsd_lib.visual.events import epoch_seconds, publish_events
from mlsd_lib.visual.fallback import CategoryFallback
from mlsd_lib.visual.offline_report import product_pair_similarity
from mlsd_lib.visual.pipeline import Availability
from mlsd_lib.visual.product_features import product_fold
from mlsd_lib.visual.query_image import ImageLimits, region_pixels
from mlsd_lib.visual.recipes import VisualRecipe, visual_recipe
from mlsd_lib.visual.regions import clear_regions, write_regions
from mlsd_lib.visual.release import (
    VisualRelease,
    promote_visual_release,
    register_visual_release,
)
from mlsd_lib.visual.served_embedder import embed_pixels
from mlsd_lib.visual.training_images import training_images
from mlsd_lib.worlds.images import ImageWorld, QuerySet
from mlsd_lib.worlds.images_config import QueryStyle
from mlsd_lib.worlds.images_market import DAY_SECONDS, ImageMarket

__all__ = [
    "DEFAULT_STREAM",
    "QuickVisualRelease",
    "build_quick_visual_release",
    "dedup_threshold_of",
]

#: The stream the quick release's stock events travel on.
DEFAULT_STREAM = "visual_serving_events"


def dedup_threshold_of(
    world: ImageWorld,
    vectors: np.ndarray,
    image_products: np.ndarray,
    precision: float,
    seed: int = 0,
) -> DedupThreshold | None:
    """The threshold for ``precision`` on the world's labelled pairs: its
    duplicate listings against its look-alikes and as many random pairs of one
    family (hard negatives); None when no threshold reaches ``precision``."""
    duplicates = world.duplicate_pairs()
    products = world.products
    rng = np.random.default_rng([seed, 61])
    family = products["family"].to_numpy()
    canonical = world.canonical(products["product_id"].to_numpy())
    a = rng.integers(0, len(products), 4 * max(len(duplicates), 1))
    b = rng.integers(0, len(products), a.size)
    siblings = (family[a] == family[b]) & (canonical[a] != canonical[b])
    distinct = np.concatenate(
        [world.lookalike_pairs(), np.stack([a[siblings], b[siblings]], axis=1)]
    )
    pairs = np.concatenate([duplicates, distinct])
    labels = np.r_[np.ones(len(duplicates), bool), np.zeros(len(distinct), bool)]
    if len(duplicates) == 0 or len(distinct) == 0:
        return None
    scores = product_pair_similarity(vectors, image_products, pairs)
    try:
        return choose_dedup_threshold(scores, labels, precision)
    except DedupThresholdError:
        return None


@dataclass(frozen=True)
class QuickVisualRelease:
    """What :func:`build_quick_visual_release` made: the world, its catalogue
    and market, the trained embedder, the registry holding the release, the
    dedup threshold chosen, the stock stream and "now" (world seconds)."""

    recipe: VisualRecipe
    world: ImageWorld
    catalogue: ImageSet
    market: ImageMarket
    fit: EmbedderFit
    registry: ModelRegistry
    release: VisualRelease
    dedup: DedupThreshold | None
    stream: str
    world_now: float

    @property
    def now(self) -> float:
        """The simulated "now" in Unix seconds: when stock records are judged."""
        return float(epoch_seconds(self.world_now))

    @property
    def product_ids(self) -> np.ndarray:
        return self.world.products["product_id"].to_numpy(np.int64)

    @property
    def category_ids(self) -> np.ndarray:
        return self.world.products["category"].to_numpy(np.int64)

    @property
    def n_regions(self) -> int:
        return self.market.config.n_regions

    @property
    def stock(self) -> np.ndarray:
        """Each product's in-stock region mask at :attr:`world_now`."""
        products = self.product_ids
        return self.market.stock_at(products, np.full(products.size, self.world_now))

    def in_stock(self, products: np.ndarray, region: int) -> np.ndarray:
        """Whether each of ``products`` is in stock in ``region`` now."""
        mask = self.stock[np.asarray(products, dtype=np.int64)]
        return ((mask >> int(region)) & 1) == 1

    # -- stock in Redis -------------------------------------------------------------
    def stock_events(self) -> pd.DataFrame:
        """Every stock change up to now (the snapshot at time 0 included), as
        the events the product fold reads."""
        table = self.market.stock_changes
        table = table[table["time"] <= self.world_now]
        product = table["product_id"].to_numpy(np.int64)
        change = table["change"].to_numpy(np.int64)
        return pd.DataFrame(
            {
                "event_id": [f"k{p}.{c}" for p, c in zip(product, change, strict=True)],
                "type": "stock",
                "product_id": product,
                "value": table["stock"].to_numpy(np.float64),
                TIMESTAMP_COLUMN: seconds_to_timestamps(
                    epoch_seconds(table["time"].to_numpy(np.float64))
                ),
            }
        )

    def load_stock(self, client: redis.Redis, max_runtime_s: float = 120.0) -> int:
        """Stream the stock events through the real processor into ``client``'s
        Redis; returns how many were applied. The stream is deleted after."""
        publish_events(client, self.stream, self.stock_events())
        processor = StreamProcessor(
            client, self.stream, "visual-stock", "one", fold=product_fold(self.stream),
            batch_size=1_000, block_ms=20,
        )  # fmt: skip
        processor.run(idle_exit_s=0.3, max_runtime_s=max_runtime_s)
        client.delete(self.stream)
        return processor.counts.applied

    def clear_stock(self, client: redis.Redis) -> int:
        """Delete every key :meth:`load_stock` wrote; returns how many."""
        fold = product_fold(self.stream)
        patterns = [f"{view_prefix(fold.values.view)}:*", f"fs:seen:{self.stream}:*"]
        if fold.counts is not None:
            patterns.append(f"{view_prefix(fold.counts.view)}:*")
        deleted = sum(delete_matching(client, pattern) for pattern in patterns)
        return deleted + client.delete(self.stream, dead_letter_stream(self.stream))

    def availability(self, client: redis.Redis) -> Availability:
        """The in-stock filters reading ``client``'s Redis, judged at now."""
        return stock_availability(client, self.stream, self.now)

    def snapshot(self) -> Availability:
        """The in-stock filters of the stock at now, in memory."""
        return snapshot_availability(self.product_ids, self.stock)

    def fallback(self, depth: int = 200) -> CategoryFallback:
        """The degraded pages: each category's most popular products."""
        return CategoryFallback(
            self.product_ids, self.category_ids, self.market.popularity, depth=depth
        )

    # -- user photos and precomputed regions ------------------------------------------
    def photos(
        self, products: np.ndarray, seed: int = 1, style: QueryStyle | None = None
    ) -> QuerySet:
        """One user photo of each of ``products``, with its box."""
        return self.world.queries(np.asarray(products, np.int64), seed, style)

    def region_images(self, photos: QuerySet, limits: ImageLimits) -> ImageSet:
        """Each photo's box as the gateway crops and resizes it
        (:func:`~mlsd_lib.visual.query_image.region_pixels`)."""
        pixels = np.stack(
            [
                region_pixels(image, box.tolist(), limits)
                for image, box in zip(photos.images.images, photos.boxes, strict=True)
            ]
        )
        return dataclasses.replace(photos.images, images=pixels)

    def store_regions(
        self,
        client: redis.Redis,
        photos: QuerySet,
        region_ids: np.ndarray,
        limits: ImageLimits | None = None,
    ) -> int:
        """Embed each photo's box (cropped as the gateway crops it, within
        ``limits``) with the registered embedder, in batch, and store it as
        precomputed region ``region_ids[i]`` with its product's category;
        returns how many."""
        limits = limits or ImageLimits(image_size=self.release.image_size)
        module = self.registry.load(
            self.release.embedder.name, self.release.embedder.version
        )
        vectors = embed_pixels(module, self.region_images(photos, limits))
        return write_regions(
            client,
            self.release.embedder_version,
            region_ids,
            vectors,
            photos.images.category_ids,
        )

    def clear_regions(self, client: redis.Redis) -> int:
        """Delete the precomputed regions of this release's embedder."""
        return clear_regions(client, self.release.embedder_version)

    def save_bundle(self, folder: str | Path) -> Path:
        """What a search server process loads
        (:mod:`~mlsd_lib.visual.bundle`), with the clock frozen at now."""
        return save_visual_bundle(
            folder,
            registry=self.registry,
            stream=self.stream,
            n_regions=self.n_regions,
            product_ids=self.product_ids,
            category_ids=self.category_ids,
            popularity=self.market.popularity,
            stock=self.stock,
            frozen_now=self.now,
        )


def build_quick_visual_release(
    folder: str | Path,
    recipe: VisualRecipe | None = None,
    *,
    stream: str = DEFAULT_STREAM,
    world_now: float = 0.5 * DAY_SECONDS,
    progress: bool = False,
    num_threads: int | None = None,
) -> QuickVisualRelease:
    """Build, register and promote a release from ``recipe`` (default: the
    ``"tiny"`` one) under ``folder`` (see the module notes). ``num_threads``:
    torch's intra-op threads for the whole build (1 on a small shared
    machine, where threads that wait for busy cores cost more than they
    gain; None leaves the setting alone)."""
    recipe = recipe or visual_recipe("tiny")
    config = recipe.embedder
    if num_threads is not None:
        config = dataclasses.replace(config, num_threads=num_threads)
    with torch_threads(num_threads):
        world = ImageWorld(recipe.world)
        catalogue = world.catalogue()
        fit = train_embedder(
            training_images(world, recipe.photos_per_product), config, progress=progress
        )
        vectors = embed_images(fit.model, catalogue)
        dedup = dedup_threshold_of(
            world, vectors, catalogue.product_ids, recipe.dedup_precision,
            recipe.world.seed,
        )  # fmt: skip
        registry = ModelRegistry(Path(folder) / "registry")
        release = register_visual_release(
            registry,
            fit.model,
            catalogue,
            training_window=("2026-03-01", "2026-03-02"),
            dedup_threshold=None if dedup is None else dedup.threshold,
            spec=recipe.index,
            metrics={} if dedup is None else {"dedup_precision": dedup.precision},
        )
    promote_visual_release(registry, release.version, "production")
    return QuickVisualRelease(
        recipe=recipe,
        world=world,
        catalogue=catalogue,
        market=ImageMarket(world, recipe.market),
        fit=fit,
        registry=registry,
        release=release,
        dedup=dedup,
        stream=stream,
        world_now=float(world_now),
    )
