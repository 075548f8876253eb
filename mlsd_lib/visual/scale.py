"""Visual search's back-of-the-envelope numbers, computed rather than typed.

Introduced in ``casestudies/visual_search/01_requirements_and_scale.ipynb``. The case
study's page derives its traffic, embedder compute, index sizes, search cost, feature
store and event log by hand; this module derives every one of those figures from the
same assumptions, so the page, the chapter and a test agree, and a reader who moves one
assumption sees every figure that depends on it move.

* :class:`VisualAssumptions` holds the page's assumptions (100 M queries a day, 2
  regions each, 200 images retrieved per region, half the regions precomputed,
  50 M products x 4 images, a ResNet-50-class embedder, 256-d vectors, IVF-PQ
  with 32-byte codes over 65,536 lists, ...), checked on construction.
* :meth:`VisualAssumptions.requirements` is the generic part as
  :class:`~mlsd_lib.capacity.Requirements` (queries, peak, candidates re-ranked
  per query, the product feature store), and :func:`production_estimate` adds
  the rows only visual search has: ANN searches and online embedder calls per
  second, the embedder's size and FLOPs, catalogue churn and the full re-embed,
  the four index representations (:data:`REPRESENTATIONS`,
  :func:`bytes_per_image`, tabulated by :func:`index_representations`), the
  re-ranking fetch, the IVF list size and codes scanned, the Redis overhead and
  reads, the three logs and the availability budget.
* :func:`latency_budget` adds up the page's per-stage p99 budgets for a camera
  photo and a crop.
* :func:`world_assumptions` sizes the same estimate by the synthetic image world
  (its products and catalogue views), so a chapter can set the world beside
  production.
* :func:`measured_embedder_estimate` and :func:`measured_index_estimate` turn what
  a chapter measures on this machine (a small CNN's images per second and
  multiply-adds; a real faiss IVF-PQ index's bytes per vector and its unit costs
  per search, :class:`~mlsd_lib.index.scaling.IvfCost`) into the production
  plan: cores for the online peak, the re-embed on one core, the index from
  measured bytes, one search's time and the cores for the peak's searches.

Conventions are :mod:`mlsd_lib.capacity`'s: a day is 86,400 s, sizes are decimal
(1 GB = 10^9 B). One multiply-add is two FLOPs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import pandas as pd

from mlsd_lib.capacity import (
    SECONDS_PER_DAY,
    CapacityInputError,
    Estimate,
    Requirements,
    estimate,
    format_si,
    integer_bytes,
    replicas_needed,
)
from mlsd_lib.index.scaling import IvfCost

__all__ = [
    "LATENCY_BUDGET_MS",
    "P99_TARGET_MS",
    "REPRESENTATIONS",
    "VisualAssumptions",
    "bytes_per_image",
    "index_representations",
    "latency_budget",
    "measured_embedder_estimate",
    "measured_index_estimate",
    "production_estimate",
    "world_assumptions",
]

#: The index representations the page compares, by the names the rows use.
REPRESENTATIONS: tuple[str, ...] = (
    "float32 vectors",
    "float16 vectors",
    "IVF-PQ codes + ids",
    "image-to-product map",
)
#: The page's p99 budget per stage of one query, in milliseconds, in order.
LATENCY_BUDGET_MS: dict[str, float] = {
    "decode": 20.0,
    "detect": 80.0,
    "embed": 60.0,
    "ANN": 40.0,
    "re-rank and dedup": 35.0,
    "metadata": 15.0,
}
#: Server-side p99 targets: a camera photo (detection included) and a crop.
P99_TARGET_MS: dict[str, float] = {"camera photo": 400.0, "crop": 250.0}
#: Stages a crop on an existing image skips (the user drew or tapped the box).
CROP_SKIPS: tuple[str, ...] = ("detect",)
_MINUTES_PER_30_DAYS = 30 * 24 * 60

# Fields that are shares of something, so must lie in [0, 1].
_SHARES = ("precomputed_region_share", "daily_new_image_share", "click_rate")
# Fields that must be > 0 (a zero would divide or empty the design).
_POSITIVE = (
    "queries_per_day",
    "regions_per_query",
    "images_per_region",
    "products",
    "images_per_product",
    "embedding_dim",
    "reembed_images_per_s",
    "ivf_lists",
    "ivf_probes",
    "value_bytes",
)


@dataclass(frozen=True)
class VisualAssumptions:
    """The assumptions of ``casestudies/visual_search/index.md``, one field each.

    Traffic: ``queries_per_day`` visual queries, ``peak_to_average``, each with
    ``regions_per_query`` query regions; per region the ANN search returns
    ``images_per_region`` images (over-fetching for ``products_per_region``
    shown), ``products_after_collapse`` products are left to read from Redis,
    and ``precomputed_region_share`` of regions are taps on objects detected and
    embedded at ingestion (no online embedder call). Catalogue: ``products``
    with ``images_per_product`` images each, ``daily_new_image_share`` of the
    images new every day. Embedder: ``embedder_parameters``,
    ``embedder_multiply_adds`` per image, ``embedding_dim`` outputs; a full
    re-embed runs at ``reembed_images_per_s``. Index: IVF-PQ with
    ``pq_code_bytes`` codes and ``id_bytes`` ids in ``ivf_lists`` lists,
    ``ivf_probes`` probed per search. Features: ``product_features`` values of
    ``value_bytes`` per product, ``redis_overhead`` times that in Redis. Log: a
    query record holds the region embeddings in float16 plus
    ``query_metadata_bytes``; ``impressions_per_query`` results of
    ``impression_bytes``; ``click_rate`` of impressions clicked,
    ``click_bytes`` each; raw query images would be ``raw_query_image_bytes``.
    Personalization (not in version 1): ``users`` x ``user_embedding_bytes``.
    ``availability`` of the service.
    """

    queries_per_day: float = 100e6
    peak_to_average: float = 3.0
    regions_per_query: float = 2.0
    images_per_region: int = 200
    products_per_region: int = 20
    products_after_collapse: int = 50
    precomputed_region_share: float = 0.5
    products: float = 50e6
    images_per_product: float = 4.0
    daily_new_image_share: float = 0.01
    embedding_dim: int = 256
    embedder_parameters: float = 25.6e6
    embedder_multiply_adds: float = 4e9
    reembed_images_per_s: float = 2_000.0
    pq_code_bytes: int = 32
    id_bytes: int = 8
    ivf_lists: int = 65_536
    ivf_probes: int = 64
    product_features: int = 30
    value_bytes: float = 4.0
    redis_overhead: float = 2.0
    query_metadata_bytes: float = 500.0
    impressions_per_query: float = 20.0
    impression_bytes: float = 100.0
    click_rate: float = 0.02
    click_bytes: float = 100.0
    raw_query_image_bytes: float = 100e3
    users: float = 500e6
    user_embedding_bytes: float = 256.0
    availability: float = 0.999

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
            ):
                raise CapacityInputError(
                    f"VisualAssumptions.{f.name} must be a finite number >= 0, got "
                    f"{value!r}."
                )
        for name in _POSITIVE:
            if getattr(self, name) <= 0:
                raise CapacityInputError(
                    f"VisualAssumptions.{name} must be > 0, got {getattr(self, name)}."
                )
        for name in _SHARES:
            if getattr(self, name) > 1:
                raise CapacityInputError(
                    f"VisualAssumptions.{name} is a share and must be in [0, 1], got "
                    f"{getattr(self, name)}."
                )
        if self.peak_to_average < 1:
            raise CapacityInputError(
                "VisualAssumptions.peak_to_average must be >= 1 (peak is at least "
                f"the average), got {self.peak_to_average}."
            )
        if self.redis_overhead < 1:
            raise CapacityInputError(
                "VisualAssumptions.redis_overhead must be >= 1 (keys and hashes add "
                f"bytes), got {self.redis_overhead}."
            )
        if self.ivf_probes > self.ivf_lists:
            raise CapacityInputError(
                f"VisualAssumptions.ivf_probes={self.ivf_probes} exceeds ivf_lists="
                f"{self.ivf_lists}: a search cannot probe more lists than exist."
            )
        if self.products_per_region > self.images_per_region:
            raise CapacityInputError(
                f"VisualAssumptions.products_per_region={self.products_per_region} "
                f"exceeds images_per_region={self.images_per_region}: retrieval "
                "must over-fetch images for the products it shows."
            )
        if not 0 < self.availability < 1:
            raise CapacityInputError(
                "VisualAssumptions.availability must be in (0, 1) (0.999 is "
                f"'three nines'), got {self.availability}."
            )

    @property
    def catalogue_images(self) -> float:
        """``products x images_per_product``: the vectors the index holds."""
        return self.products * self.images_per_product

    def requirements(self) -> Requirements:
        """The generic part as :class:`~mlsd_lib.capacity.Requirements`.

        Requests are visual queries (given per day: the prompt counts queries,
        not users); a request's candidates are the images re-ranked for all
        its regions (``regions_per_query x images_per_region``), so the generic
        row *peak inferences per second* is the candidates re-ranked at peak;
        the online feature store holds ``product_features`` values per product.
        The index, logs and embedder are :func:`production_estimate`'s own rows.
        """
        return Requirements(
            requests_per_day=self.queries_per_day,
            peak_to_average=self.peak_to_average,
            candidates_per_request=self.regions_per_query * self.images_per_region,
            feature_entities=self.products,
            bytes_per_entity=self.product_features * self.value_bytes,
        )


def bytes_per_image(representation: str, a: VisualAssumptions | None = None) -> float:
    """Bytes one catalogue image costs in ``representation`` (see
    :data:`REPRESENTATIONS`).

    float32 / float16 vectors: ``4d`` / ``2d``; IVF-PQ: the code and the id
    (``pq_code_bytes + id_bytes``, independent of ``d``; centroids and codebooks
    are a fixed few MB); the image-to-product map: the narrowest integer that
    numbers the products (:func:`~mlsd_lib.capacity.integer_bytes`: int32 for
    50 M).
    """
    a = a or VisualAssumptions()
    if representation == "float32 vectors":
        return 4.0 * a.embedding_dim
    if representation == "float16 vectors":
        return 2.0 * a.embedding_dim
    if representation == "IVF-PQ codes + ids":
        return float(a.pq_code_bytes + a.id_bytes)
    if representation == "image-to-product map":
        return float(integer_bytes(a.products))
    raise CapacityInputError(
        f"unknown representation {representation!r}; use one of {REPRESENTATIONS}."
    )


_BYTES_FORMULA = {
    "float32 vectors": "embedding_dim × 4 B",
    "float16 vectors": "embedding_dim × 2 B",
    "IVF-PQ codes + ids": "(pq_code_bytes + id_bytes)",
    "image-to-product map": "narrowest int for products",
}


def _memory_row(representation: str) -> str:
    return f"{representation} for all images"


def production_estimate(a: VisualAssumptions | None = None) -> Estimate:
    """The page's derivation: :func:`mlsd_lib.capacity.estimate` on
    :meth:`VisualAssumptions.requirements`, plus the rows only visual search has.

    Every row names its formula, so a chapter can show the chain of reasoning.
    ``a`` defaults to the page's :class:`VisualAssumptions`.
    """
    a = a or VisualAssumptions()
    req = a.requirements()
    e = estimate(req)
    avg, peak = e["average QPS"], e["peak QPS"]
    images = a.catalogue_images

    # Traffic: one ANN search (and, unless precomputed, one embedder call) per region.
    ann_avg = e.add(
        "average ANN searches per second",
        "average QPS × regions_per_query",
        avg * a.regions_per_query,
        "/s",
    )
    ann_peak = e.add(
        "peak ANN searches per second",
        "peak QPS × regions_per_query",
        peak * a.regions_per_query,
        "/s",
    )
    online = e.add(
        "online embedder calls per second at peak",
        "peak ANN searches/s × (1 − precomputed_region_share)",
        ann_peak * (1 - a.precomputed_region_share),
        "/s",
    )
    e.add(
        "average inferences per second",
        "average ANN searches/s × images_per_region",
        ann_avg * a.images_per_region,
        "/s",
    )

    # Embedder compute.
    e.add(
        "embedder size (float32)",
        "embedder_parameters × 4 B",
        a.embedder_parameters * 4,
        "B",
    )
    macs = e.add(
        "embedder multiply-adds per second at peak",
        "online embedder calls/s × embedder_multiply_adds",
        online * a.embedder_multiply_adds,
        "MAC/s",
    )
    e.add("embedder FLOP/s at peak", "2 × multiply-adds/s", 2 * macs, "FLOP/s")

    # Catalogue churn and the full re-embed.
    e.add("catalogue images", "products × images_per_product", images)
    new = e.add(
        "new catalogue images per day",
        "catalogue images × daily_new_image_share",
        images * a.daily_new_image_share,
    )
    e.add(
        "new catalogue images per second",
        "new images per day / 86,400 s",
        new / SECONDS_PER_DAY,
        "/s",
    )
    e.add(
        "full re-embed time",
        "catalogue images / reembed_images_per_s / 3,600 s",
        images / a.reembed_images_per_s / 3_600,
        "h",
    )

    # The index, four ways, and what searching it costs.
    for rep in REPRESENTATIONS:
        e.add(
            _memory_row(rep),
            f"catalogue images × {_BYTES_FORMULA[rep]}",
            images * bytes_per_image(rep, a),
            "B",
        )
    e.add(
        "re-rank vector fetch at peak",
        "peak ANN searches/s × images_per_region × float16 vector",
        ann_peak * a.images_per_region * bytes_per_image("float16 vectors", a),
        "B/s",
    )
    per_list = e.add(
        "vectors per IVF list",
        "catalogue images / ivf_lists",
        images / a.ivf_lists,
    )
    scanned = e.add(
        "codes scanned per search",
        "ivf_probes × vectors per IVF list",
        a.ivf_probes * per_list,
    )
    e.add(
        "code distances per second at peak",
        "peak ANN searches/s × codes scanned per search",
        ann_peak * scanned,
        "/s",
    )

    # The product feature store (its payload is the generic row).
    e.add(
        "online store with Redis overhead",
        "online feature store memory × redis_overhead",
        e["online feature store memory"] * a.redis_overhead,
        "B",
    )
    e.add(
        "pipelined Redis reads per second at peak",
        "peak ANN searches/s (one multi-key read per region)",
        ann_peak,
        "/s",
    )
    e.add(
        "product keys read per second at peak",
        "peak ANN searches/s × products_after_collapse",
        ann_peak * a.products_after_collapse,
        "/s",
    )

    # The event log: queries (embeddings, not images), impressions, clicks.
    record = e.add(
        "query record size",
        "regions_per_query × float16 vector + query_metadata_bytes",
        a.regions_per_query * bytes_per_image("float16 vectors", a)
        + a.query_metadata_bytes,
        "B",
    )
    queries_log = e.add(
        "query log per day",
        "requests per day × query record size",
        a.queries_per_day * record,
        "B",
    )
    impressions = e.add(
        "result impressions per day",
        "requests per day × impressions_per_query",
        a.queries_per_day * a.impressions_per_query,
    )
    impressions_log = e.add(
        "impression log per day",
        "result impressions per day × impression_bytes",
        impressions * a.impression_bytes,
        "B",
    )
    clicks = e.add(
        "clicks per day",
        "result impressions per day × click_rate",
        impressions * a.click_rate,
    )
    clicks_log = e.add(
        "click log per day", "clicks per day × click_bytes", clicks * a.click_bytes, "B"
    )
    e.add(
        "event log per day",
        "query + impression + click logs",
        queries_log + impressions_log + clicks_log,
        "B",
    )
    e.add(
        "raw query images per day (if kept)",
        "requests per day × raw_query_image_bytes",
        a.queries_per_day * a.raw_query_image_bytes,
        "B",
    )

    # Asides the page prices: personalization, and the availability target.
    e.add(
        "user embedding store (if personalized)",
        "users × user_embedding_bytes",
        a.users * a.user_embedding_bytes,
        "B",
    )
    e.add(
        "downtime allowed per 30 days",
        "(1 − availability) × 30 days in minutes",
        (1 - a.availability) * _MINUTES_PER_30_DAYS,
        "min",
    )
    return e


def index_representations(a: VisualAssumptions | None = None) -> pd.DataFrame:
    """The page's index table: per representation, bytes per image, its formula
    and the total over the catalogue (value and readable)."""
    a = a or VisualAssumptions()
    images = a.catalogue_images
    per_image = [bytes_per_image(rep, a) for rep in REPRESENTATIONS]
    return pd.DataFrame(
        {
            "bytes per image": per_image,
            "formula": [_BYTES_FORMULA[rep] for rep in REPRESENTATIONS],
            "total bytes": [images * b for b in per_image],
            "total": [format_si(images * b, "B") for b in per_image],
        },
        index=pd.Index(REPRESENTATIONS, name="representation"),
    )


def latency_budget() -> pd.DataFrame:
    """The page's p99 stage budgets for a camera photo and a crop (ms).

    A crop skips detection (the user drew or tapped the box). The ``total`` row
    adds the stages (a conservative plan: the p99 of a sum is at most the sum
    of the p99s), ``target`` is the page's p99 and ``headroom`` what is left
    for network hops, queueing and retries.
    """
    photo = dict(LATENCY_BUDGET_MS)
    crop = {s: (0.0 if s in CROP_SKIPS else ms) for s, ms in LATENCY_BUDGET_MS.items()}
    table = pd.DataFrame({"camera photo": photo, "crop": crop})
    table.loc["total"] = table.sum()
    table.loc["target"] = [P99_TARGET_MS["camera photo"], P99_TARGET_MS["crop"]]
    table.loc["headroom"] = table.loc["target"] - table.loc["total"]
    table.index.name = "stage (p99 ms)"
    return table


def world_assumptions(world: Any, **changes: Any) -> VisualAssumptions:
    """The page's assumptions with the catalogue of an image world.

    ``world`` is an :class:`~mlsd_lib.worlds.images.ImageWorld` (anything with
    ``n_products`` and ``config.catalogue_views``): its products (listings,
    duplicates included) and catalogue views per product replace production's
    50 M x 4. The world has no traffic of its own (chapters send queries to it),
    so traffic and every per-item size stay production's; ``changes`` override
    any field. The catalogue rows then read at the world's scale.
    """
    return replace(
        VisualAssumptions(
            products=float(world.n_products),
            images_per_product=float(world.config.catalogue_views),
        ),
        **changes,
    )


def _check_measured(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise CapacityInputError(
                f"{name} must be a measured number > 0, got {value}: measure it "
                "first (see the chapter's measurement cells)."
            )


def measured_embedder_estimate(
    images_per_s_per_core: float,
    multiply_adds_per_image: float,
    a: VisualAssumptions | None = None,
) -> Estimate:
    """The embedder plan from a CNN measured on this CPU.

    ``images_per_s_per_core`` (one thread) and ``multiply_adds_per_image``
    (counted, e.g. by :func:`~mlsd_lib.models.compute_cost.count_multiply_adds`)
    give the multiply-adds per second one core delivers. At that efficiency the
    production embedder (``a.embedder_multiply_adds`` per image) runs that
    rate divided by its count. Rows: both embedders' cores for the online peak
    (planned at 60% by :func:`~mlsd_lib.capacity.replicas_needed`), the full
    re-embed on one core, and the cores a one-day re-embed of the production
    catalogue would need.
    """
    _check_measured(
        images_per_s_per_core=images_per_s_per_core,
        multiply_adds_per_image=multiply_adds_per_image,
    )
    a = a or VisualAssumptions()
    production = production_estimate(a)
    online = production["online embedder calls per second at peak"]
    images = a.catalogue_images
    e = Estimate()
    e.add(
        "measured images per second per core",
        "measured (one thread)",
        images_per_s_per_core,
        "/s",
    )
    delivered = e.add(
        "measured multiply-adds per second per core",
        "images/s per core × multiply-adds per image",
        images_per_s_per_core * multiply_adds_per_image,
        "MAC/s",
    )
    big_rate = e.add(
        "production embedder images per second per core",
        "multiply-adds/s per core / embedder_multiply_adds",
        delivered / a.embedder_multiply_adds,
        "/s",
    )
    e.add(
        "cores for the online peak, measured embedder",
        "ceil(online embedder calls/s at peak / (images/s per core × 0.6))",
        replicas_needed(online, images_per_s_per_core),
    )
    e.add(
        "cores for the online peak, production embedder",
        "ceil(online embedder calls/s at peak / (its images/s per core × 0.6))",
        replicas_needed(online, big_rate),
    )
    e.add(
        "full re-embed on one core, measured embedder",
        "catalogue images / images/s per core / 3,600 s",
        images / images_per_s_per_core / 3_600,
        "h",
    )
    e.add(
        "cores to re-embed in one day, production embedder",
        "ceil(catalogue images / (its images/s per core × 86,400 s))",
        math.ceil(images / (big_rate * SECONDS_PER_DAY)),
    )
    return e


def measured_index_estimate(
    bytes_per_vector: float,
    cost: IvfCost,
    a: VisualAssumptions | None = None,
) -> Estimate:
    """The IVF-PQ plan from an index measured on this machine.

    ``bytes_per_vector``: the marginal bytes one more vector adds to a real
    faiss index (its code and id; the fixed centroids and codebooks excluded).
    ``cost``: the unit costs of one search on one core, measured small
    (:meth:`~mlsd_lib.index.scaling.IvfCost.fit` on an ``nprobe`` sweep), which
    :meth:`~mlsd_lib.index.scaling.IvfCost.predict_ms` extrapolates to the
    production catalogue, ``ivf_lists`` and ``ivf_probes``. Rows: the
    production index at the measured bytes, one search's time on one core (and
    the part of it that scans codes), and the cores the peak's ANN searches
    need (planned at 60% by :func:`~mlsd_lib.capacity.replicas_needed`).
    """
    _check_measured(bytes_per_vector=bytes_per_vector)
    a = a or VisualAssumptions()
    production = production_estimate(a)
    images = a.catalogue_images
    e = Estimate()
    e.add(
        "IVF-PQ index at measured bytes per vector",
        "catalogue images × measured bytes per vector",
        images * bytes_per_vector,
        "B",
    )
    search_ms = e.add(
        "search time per region on one core",
        "fixed + per centroid × ivf_lists + per code × codes scanned",
        float(cost.predict_ms(images, a.ivf_lists, a.ivf_probes)),
        "ms",
    )
    e.add(
        "of which scanning codes",
        "per code × codes scanned per search",
        cost.per_code_ms * production["codes scanned per search"],
        "ms",
    )
    e.add(
        "cores for ANN search at peak",
        "ceil(peak ANN searches/s × search time / 0.6)",
        replicas_needed(production["peak ANN searches per second"], 1e3 / search_ms),
    )
    return e
