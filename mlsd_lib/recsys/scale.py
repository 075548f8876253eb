"""The recommender's back-of-the-envelope numbers, computed rather than typed.

Introduced in
``casestudies/recommender/01_requirements_and_scale.ipynb``. The case study's page
derives its traffic, storage and index sizes by hand; this module derives the
same figures from the same assumptions, so the page, the notebook and a test
agree, and a reader who moves one assumption sees every figure that depends
on it move.

The generic part (requests, QPS, inferences, the user feature store, the
impression log, the embedding table) is :func:`mlsd_lib.capacity.estimate` on
:func:`production_requirements`. What only a two-stage recommender has comes
from :class:`FeedAssumptions` and is added as rows by
:func:`production_estimate`: candidates ranked per second on average, the item
table the gateway keeps in memory, the online store with Redis overhead, the
play log and its parquet size, the ranker's ID embeddings, the three index
layouts the page compares (Flat, HNSW, IVF-PQ; :func:`index_bytes_per_vector`)
and the ranker replicas the candidate rate needs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

import pandas as pd

from mlsd_lib.capacity import (
    CapacityInputError,
    Estimate,
    Requirements,
    estimate,
    format_si,
)
from mlsd_lib.worlds.recsys import RecsysScale

__all__ = [
    "INDEX_KINDS",
    "FeedAssumptions",
    "index_bytes_per_vector",
    "production_estimate",
    "production_requirements",
    "side_by_side",
    "world_requirements",
]

#: The index layouts the case study's page compares, by the names rows use.
INDEX_KINDS: tuple[str, ...] = ("Flat", "HNSW", "IVF-PQ")
#: Scalar user features kept online next to the history (the page's 30).
USER_FEATURES = 30


def production_requirements(**overrides: float) -> Requirements:
    """The traffic assumptions of ``casestudies/recommender/index.md``.

    50 M daily active users, 10 feed requests each per day, peak = 3 x
    average, 500 candidates ranked per request; online user features for the
    200 M monthly users at 320 bytes each (30 float32 features + the last 50
    item ids as int32), counted once (Redis overhead is a row of
    :func:`production_estimate`); 20 impressions logged per request at 150
    bytes each; a 10 M-item catalogue embedded in 64 float32 dimensions.
    Keyword arguments override any field of
    :class:`~mlsd_lib.capacity.Requirements`.
    """
    values: dict[str, float] = {
        "daily_active_users": 50e6,
        "requests_per_user_per_day": 10,
        "peak_to_average": 3.0,
        "candidates_per_request": 500,
        "feature_entities": 200e6,
        "bytes_per_entity": USER_FEATURES * 4 + 50 * 4,
        "replication": 1,
        "events_per_request": 20,
        "bytes_per_event": 150,
        "catalog_items": 10e6,
        "embedding_dim": 64,
        "bytes_per_embedding_value": 4,
    }
    values.update(overrides)
    return Requirements(**values)  # type: ignore[arg-type]


def world_requirements(scale: RecsysScale, **overrides: float) -> Requirements:
    """The production assumptions, sized by the simulated world instead.

    Traffic and sizes come from the world's configuration
    (:meth:`~mlsd_lib.worlds.recsys.RecsysWorld.scale_summary`: expected
    daily active users and feed requests on day 0, its users and catalogue);
    bytes per user (30 features + the history as int32), per impression and
    the embedding width are production's, so the two estimates differ only
    in scale. Keyword arguments override any field.
    """
    prod = production_requirements()
    fields_: dict[str, float] = {
        "feature_entities": float(scale.n_users),
        "bytes_per_entity": USER_FEATURES * 4 + scale.bytes_per_user_history,
        "bytes_per_event": prod.bytes_per_event,
        "embedding_dim": prod.embedding_dim,
    }
    fields_.update(overrides)
    return scale.requirements(**fields_)


def side_by_side(estimates: Mapping[str, Estimate]) -> pd.DataFrame:
    """Estimates next to each other, one column of readable values each.

    Rows are the quantities of the first estimate that every estimate has;
    with exactly two estimates a ``ratio`` column divides the second by the
    first (how many times larger production is than the world).
    """
    if not estimates:
        raise CapacityInputError("side_by_side needs at least one estimate.")
    names = list(estimates)
    first = estimates[names[0]]
    rows = [
        r.quantity
        for r in first.rows
        if all(r.quantity in e for e in estimates.values())
    ]
    table = pd.DataFrame(
        {
            name: [format_si(e[q], _unit(e, q)) for q in rows]
            for name, e in estimates.items()
        },
        index=pd.Index(rows, name="quantity"),
    )
    if len(names) == 2:
        a, b = estimates[names[0]], estimates[names[1]]
        table["ratio"] = [format_si(b[q] / a[q]) if a[q] else "n/a" for q in rows]
    return table


def _unit(est: Estimate, quantity: str) -> str:
    return next(r.unit for r in est.rows if r.quantity == quantity)


@dataclass(frozen=True)
class FeedAssumptions:
    """What the recommender's estimate needs beyond the traffic.

    Item features: ``item_features`` float32 scalars plus the item's
    ``embedding_dim``-d embedding (the embedding width itself comes from
    :class:`~mlsd_lib.capacity.Requirements`). ``redis_overhead`` multiplies
    the online store's payload (keys, hashes, allocator slack). Plays:
    ``play_rate`` of impressions become plays of ``bytes_per_play`` bytes;
    parquet stores the logs ``parquet_ratio`` times smaller. The ranker's ID
    embeddings have ``ranker_embedding_dim`` float32 values per item. Index
    layouts: HNSW keeps ``2 * hnsw_m`` int32 level-0 links per vector; IVF-PQ
    a ``pq_code_bytes`` code and an ``id_bytes`` id. Ranker replicas: one
    replica scores ``ranker_pairs_per_replica_s`` (user, item) pairs per
    second, planned at ``target_utilization`` so a replica can fail and queues
    stay short.
    """

    item_features: int = 20
    redis_overhead: float = 2.0
    play_rate: float = 0.03
    bytes_per_play: float = 200.0
    parquet_ratio: float = 5.0
    ranker_embedding_dim: int = 32
    hnsw_m: int = 32
    pq_code_bytes: int = 16
    id_bytes: int = 8
    ranker_pairs_per_replica_s: float = 100_000.0
    target_utilization: float = 0.6

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not math.isfinite(value) or value < 0:
                raise CapacityInputError(
                    f"FeedAssumptions.{f.name} must be a finite number >= 0, got "
                    f"{value!r}."
                )
        if not 0.0 <= self.play_rate <= 1.0:
            raise CapacityInputError(
                f"FeedAssumptions.play_rate is a share of impressions and must be "
                f"in [0, 1], got {self.play_rate}."
            )
        if self.redis_overhead < 1 or self.parquet_ratio < 1:
            raise CapacityInputError(
                "FeedAssumptions.redis_overhead and parquet_ratio must be >= 1 "
                "(an overhead adds bytes, a compression removes them), got "
                f"{self.redis_overhead} and {self.parquet_ratio}."
            )
        if self.ranker_pairs_per_replica_s <= 0:
            raise CapacityInputError(
                "FeedAssumptions.ranker_pairs_per_replica_s must be > 0 (a "
                "replica that scores nothing serves no load), got "
                f"{self.ranker_pairs_per_replica_s}."
            )
        if not 0.0 < self.target_utilization <= 1.0:
            raise CapacityInputError(
                "FeedAssumptions.target_utilization must be in (0, 1], got "
                f"{self.target_utilization}."
            )


def index_bytes_per_vector(
    kind: str, embedding_dim: int, assumptions: FeedAssumptions | None = None
) -> float:
    """Bytes one item costs in an index of ``kind`` (one of :data:`INDEX_KINDS`).

    Flat keeps the float32 vector (``4 d``); HNSW the vector plus its
    level-0 links (``4 d + 2 M x 4``; the upper levels hold about ``1/M`` of
    the nodes and are left out, as the page does); IVF-PQ only the code and
    the id (``code + id``), so its size does not depend on ``d``. Coarse
    centroids and graph entry points are a few MB and are left out.
    """
    a = assumptions or FeedAssumptions()
    if kind == "Flat":
        return 4.0 * embedding_dim
    if kind == "HNSW":
        return 4.0 * embedding_dim + 2 * a.hnsw_m * 4.0
    if kind == "IVF-PQ":
        return float(a.pq_code_bytes + a.id_bytes)
    raise CapacityInputError(f"unknown index kind {kind!r}; use one of {INDEX_KINDS}.")


def production_estimate(
    req: Requirements | None = None, assumptions: FeedAssumptions | None = None
) -> Estimate:
    """The page's derivation: :func:`mlsd_lib.capacity.estimate` plus the rows
    only a two-stage recommender has.

    ``req`` defaults to :func:`production_requirements` and ``assumptions``
    to :class:`FeedAssumptions`. Every added row names its formula, so the
    notebook can show the chain of reasoning and not only the numbers.
    """
    req = req or production_requirements()
    a = assumptions or FeedAssumptions()
    if not req.catalog_items or not req.embedding_dim:
        raise CapacityInputError(
            "a recommender's estimate needs catalog_items and embedding_dim > 0 "
            f"(got {req.catalog_items} and {req.embedding_dim}): pass them to "
            "production_requirements()."
        )
    e = estimate(req)
    items, dim = req.catalog_items, req.embedding_dim
    value = req.bytes_per_embedding_value
    e.add(
        "average candidates ranked per second",
        "average QPS × candidates_per_request",
        e["average QPS"] * req.candidates_per_request,
        "/s",
    )
    e.add(
        "full-catalogue scores per second at peak",
        "peak QPS × catalog_items",
        e["peak QPS"] * items,
        "/s",
    )
    item_table = e.add(
        "item features in the gateway's memory",
        "catalog_items × (item_features + embedding_dim) × 4 B",
        items * (a.item_features + dim) * value,
        "B",
    )
    payload = e.add(
        "online store payload (users + items)",
        "online feature store memory + item features",
        e["online feature store memory"] + item_table,
        "B",
    )
    e.add(
        "online store with Redis overhead",
        "payload × redis_overhead",
        payload * a.redis_overhead,
        "B",
    )
    impressions = req.events_per_request * e["requests per day"]
    plays = e.add(
        "play log per day",
        "requests per day × events_per_request × play_rate × bytes_per_play",
        impressions * a.play_rate * a.bytes_per_play,
        "B",
    )
    e.add(
        "event log per day in parquet",
        "(event log per day + play log per day) / parquet_ratio",
        (e["event log per day"] + plays) / a.parquet_ratio,
        "B",
    )
    e.add(
        "ranker ID embeddings",
        "catalog_items × ranker_embedding_dim × 4 B",
        items * a.ranker_embedding_dim * value,
        "B",
    )
    for kind in INDEX_KINDS:
        e.add(
            f"{kind} index memory",
            f"catalog_items × bytes per vector ({kind})",
            items * index_bytes_per_vector(kind, dim, a),
            "B",
        )
    e.add(
        "ranker replicas at peak",
        "ceil(peak inferences/s / (pairs per replica/s × target_utilization))",
        max(
            1,
            math.ceil(
                e["peak inferences per second"]
                / (a.ranker_pairs_per_replica_s * a.target_utilization)
            ),
        ),
    )
    return e
