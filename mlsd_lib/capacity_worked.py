"""The framework chapter's four worked estimates, as code a reader can change.

Introduced in ``notebooks/capacity.ipynb``. ``book/framework.md`` works four
back-of-the-envelope estimates by hand (ad click prediction, embedding
retrieval, A/B test sizing, tail latency under fan-out). Each is here as a
frozen dataclass of assumptions, defaulting to the prose's numbers, and a
function that derives an :class:`~mlsd_lib.capacity.Estimate` from it: every
row carries its formula, so the chain of reasoning is printed, not only the
answer. Because the assumptions are dataclasses,
:func:`~mlsd_lib.capacity.sensitivity` and
:func:`~mlsd_lib.capacity_sensitivity.tornado` can halve and double any of
them. A test checks that the defaults reproduce the figures the prose prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlsd_lib.capacity import (
    CapacityInputError,
    Estimate,
    Requirements,
    estimate,
    fleet_size,
)

__all__ = [
    "ABTestAssumptions",
    "AdClickAssumptions",
    "EmbeddingRetrievalAssumptions",
    "FanOutAssumptions",
    "ab_test_estimate",
    "ad_click_estimate",
    "embedding_retrieval_estimate",
    "fan_out_estimate",
    "recalibrate",
]


def _check_fraction(name: str, value: float, *, closed: bool = False) -> None:
    inside = 0 < value <= 1 if closed else 0 < value < 1
    if not math.isfinite(value) or not inside:
        bound = "(0, 1]" if closed else "(0, 1)"
        raise CapacityInputError(f"{name} must be in {bound}, got {value}.")


def _check_positive(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not math.isfinite(value) or value <= 0:
            raise CapacityInputError(f"{name} must be a number > 0, got {value}.")


def recalibrate(p: float, keep_rate: float) -> float:
    """Map a probability learned on negative-downsampled data back to the truth.

    With every positive kept and a share ``keep_rate`` of negatives, the odds
    the model learns are the true odds divided by ``keep_rate``; undoing it gives
    ``q = p / (p + (1 - p) / keep_rate)`` (the framework chapter's formula).
    """
    _check_fraction("p", p, closed=True)
    _check_fraction("keep_rate", keep_rate, closed=True)
    return p / (p + (1 - p) / keep_rate)


@dataclass(frozen=True)
class AdClickAssumptions:
    """Example 1 of the framework chapter: an ad click predictor at 200 M DAU."""

    daily_active_users: float = 200e6
    impressions_per_user_per_day: float = 50
    peak_to_average: float = 2.0
    candidates_per_impression: float = 200
    #: Candidate scores/s one replica sustains within its p99 budget (a load test).
    scores_per_replica_s: float = 5e4
    headroom: float = 0.3
    ctr: float = 0.01
    #: Share of non-clicks kept in the training data (all clicks are kept).
    negative_keep_rate: float = 0.05
    bytes_per_training_row: float = 500
    retention_days: float = 90
    training_window_days: float = 30
    user_features: float = 100
    bytes_per_feature_value: float = 8
    #: Per-key overhead and encoding of a key-value store, as a multiplier.
    store_overhead: float = 2.0
    store_replicas: float = 2.0
    shard_bytes: float = 64e9
    num_ads: float = 10e6
    ad_features: float = 50

    def __post_init__(self) -> None:
        _check_positive(
            self,
            (
                "daily_active_users",
                "impressions_per_user_per_day",
                "candidates_per_impression",
                "scores_per_replica_s",
                "bytes_per_training_row",
                "retention_days",
                "training_window_days",
                "user_features",
                "bytes_per_feature_value",
                "shard_bytes",
                "num_ads",
                "ad_features",
            ),
        )
        _check_fraction("ctr", self.ctr)
        _check_fraction("negative_keep_rate", self.negative_keep_rate, closed=True)
        for name in ("store_overhead", "store_replicas"):
            if getattr(self, name) < 1:
                raise CapacityInputError(
                    f"{name} must be >= 1 (a multiplier on the raw bytes), got "
                    f"{getattr(self, name)}."
                )


def ad_click_estimate(a: AdClickAssumptions) -> Estimate:
    """Traffic, model compute, replicas, training data, feature store, reads.

    The rows, in the prose's order: QPS (average, peak), candidate scores/s,
    replicas (at peak and with headroom, :func:`~mlsd_lib.capacity.fleet_size`),
    training rows and bytes after negative downsampling (per day, retained,
    one training window), the online store's memory and shards, the in-process
    ad cache, and the feature reads and bandwidth at peak.
    """
    e = estimate(
        Requirements(
            daily_active_users=a.daily_active_users,
            requests_per_user_per_day=a.impressions_per_user_per_day,
            peak_to_average=a.peak_to_average,
            candidates_per_request=a.candidates_per_impression,
        )
    )
    peak, scores = e["peak QPS"], e["peak inferences per second"]
    fleet = fleet_size(scores, a.scores_per_replica_s, a.headroom)
    e.add(
        "replicas at peak",
        "ceil(peak inferences per second / scores_per_replica_s)",
        fleet.at_load,
    )
    e.add(
        "replicas with headroom",
        "ceil(replicas at peak × (1 + headroom))",
        fleet.planned,
    )
    daily = e["requests per day"]
    clicks = e.add("clicks per day", "requests per day × ctr", daily * a.ctr)
    rows = e.add(
        "training rows per day",
        "clicks + negative_keep_rate × (requests per day - clicks)",
        clicks + a.negative_keep_rate * (daily - clicks),
    )
    e.add(
        "sampled positive rate",
        "clicks per day / training rows per day",
        clicks / rows,
    )
    per_day = e.add(
        "training data per day",
        "training rows per day × bytes_per_training_row",
        rows * a.bytes_per_training_row,
        "B",
    )
    e.add(
        "training data for retention",
        "training data per day × retention_days",
        per_day * a.retention_days,
        "B",
    )
    e.add(
        "training window read",
        "training data per day × training_window_days",
        per_day * a.training_window_days,
        "B",
    )
    vector = a.user_features * a.bytes_per_feature_value
    raw = e.add(
        "user features, raw",
        "daily_active_users × user_features × bytes_per_feature_value",
        a.daily_active_users * vector,
        "B",
    )
    stored = e.add(
        "online feature store memory",
        "user features, raw × store_overhead × store_replicas",
        raw * a.store_overhead * a.store_replicas,
        "B",
    )
    e.add(
        "feature store shards",
        "ceil(online feature store memory / shard_bytes)",
        math.ceil(round(stored / a.shard_bytes, 9)),
    )
    e.add(
        "ad feature cache per ranker",
        "num_ads × ad_features × bytes_per_feature_value",
        a.num_ads * a.ad_features * a.bytes_per_feature_value,
        "B",
    )
    e.add("user feature reads at peak", "peak QPS (one read per request)", peak, "/s")
    e.add(
        "ad feature reads at peak, uncached",
        "peak QPS × candidates_per_impression",
        scores,
        "/s",
    )
    e.add(
        "user feature bandwidth at peak",
        "peak QPS × user_features × bytes_per_feature_value",
        peak * vector,
        "B/s",
    )
    return e


@dataclass(frozen=True)
class EmbeddingRetrievalAssumptions:
    """Example 2: exact and compressed retrieval over 50 M item embeddings."""

    catalog_items: float = 50e6
    embedding_dim: int = 128
    bytes_per_value: float = 4
    bytes_per_pq_code: float = 64
    queries_per_s: float = 1_000
    #: Queries answered by one scan of the catalog (one matrix multiplication).
    batch_size: float = 1_000

    def __post_init__(self) -> None:
        _check_positive(
            self,
            (
                "catalog_items",
                "embedding_dim",
                "bytes_per_value",
                "bytes_per_pq_code",
                "queries_per_s",
                "batch_size",
            ),
        )


def embedding_retrieval_estimate(a: EmbeddingRetrievalAssumptions) -> Estimate:
    """Index memory (float32, int8, PQ), exact-search work and memory traffic."""
    e = Estimate()
    index = e.add(
        "embedding index memory",
        "catalog_items × embedding_dim × bytes_per_value",
        a.catalog_items * a.embedding_dim * a.bytes_per_value,
        "B",
    )
    e.add(
        "int8 index memory",
        "catalog_items × embedding_dim × 1 B",
        a.catalog_items * a.embedding_dim,
        "B",
    )
    e.add(
        "PQ index memory",
        "catalog_items × bytes_per_pq_code",
        a.catalog_items * a.bytes_per_pq_code,
        "B",
    )
    macs = e.add(
        "multiply-adds per query",
        "catalog_items × embedding_dim",
        a.catalog_items * a.embedding_dim,
    )
    flops = e.add("FLOPs per query", "2 × multiply-adds per query", 2 * macs)
    e.add(
        "FLOP/s at the query rate",
        "FLOPs per query × queries_per_s",
        flops * a.queries_per_s,
        "FLOP/s",
    )
    e.add(
        "memory traffic, one scan per query",
        "embedding index memory × queries_per_s",
        index * a.queries_per_s,
        "B/s",
    )
    e.add(
        "memory traffic, batched",
        "embedding index memory × queries_per_s / batch_size",
        index * a.queries_per_s / a.batch_size,
        "B/s",
    )
    return e


@dataclass(frozen=True)
class ABTestAssumptions:
    """Example 3: impressions to detect a 1% relative change of a 1% CTR."""

    baseline_rate: float = 0.01
    relative_effect: float = 0.01
    daily_impressions: float = 1e10
    #: Share of all traffic one arm receives.
    arm_share: float = 0.01
    min_days: float = 7

    def __post_init__(self) -> None:
        _check_fraction("baseline_rate", self.baseline_rate)
        _check_fraction("arm_share", self.arm_share, closed=True)
        _check_positive(self, ("relative_effect", "daily_impressions", "min_days"))


def ab_test_estimate(a: ABTestAssumptions) -> Estimate:
    """The rule of thumb ``n ≈ 16 σ² / δ²`` per arm (α = 0.05 two-sided, power
    0.8: ``2 (1.96 + 0.84)² ≈ 15.7``), and the days a given arm share needs.

    ``days to run`` is the larger of the days to collect ``n`` and ``min_days``
    (a full weekly cycle, novelty effects): significance arriving on day one is
    not a reason to stop.
    """
    e = Estimate()
    delta = e.add(
        "absolute effect δ",
        "baseline_rate × relative_effect",
        a.baseline_rate * a.relative_effect,
    )
    variance = e.add(
        "variance σ²",
        "baseline_rate × (1 - baseline_rate)",
        a.baseline_rate * (1 - a.baseline_rate),
    )
    n = e.add("impressions per arm", "16 σ² / δ²", 16 * variance / delta**2)
    per_day = e.add(
        "arm impressions per day",
        "daily_impressions × arm_share",
        a.daily_impressions * a.arm_share,
    )
    e.add("requirement met per day", "arm impressions per day / n", per_day / n)
    days = e.add(
        "days to collect n",
        "ceil(n / arm impressions per day)",
        math.ceil(round(n / per_day, 9)),
    )
    e.add("days to run", "max(days to collect n, min_days)", max(days, a.min_days))
    return e


@dataclass(frozen=True)
class FanOutAssumptions:
    """Example 4: a request that waits for every one of ``shards`` shards."""

    shards: int = 20
    #: Chance that one shard answers slower than its own p99 (1% by definition).
    slow_probability: float = 0.01

    def __post_init__(self) -> None:
        _check_positive(self, ("shards",))
        _check_fraction("slow_probability", self.slow_probability)


def fan_out_estimate(a: FanOutAssumptions) -> Estimate:
    """Share of requests that wait for at least one slow shard: ``1 - (1-p)^n``."""
    e = Estimate()
    fast = e.add(
        "all shards fast",
        "(1 - slow_probability) ^ shards",
        (1 - a.slow_probability) ** a.shards,
    )
    e.add("requests that wait on a slow shard", "1 - all shards fast", 1 - fast)
    return e
