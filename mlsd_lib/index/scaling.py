r"""From an IVF index measured small to shards, cores and latency at a large scale.

Introduced in ``casestudies/recommender/09_interview_followups.ipynb`` (the follow-up
"How would the retrieval index scale from 10 million to 1 billion items?"). Memory
scales by formula (:func:`~mlsd_lib.index.spec.formula_index_bytes`). Latency has no
formula, but an IVF search is three pieces of work whose *amounts* are known at any
size, and whose *unit costs* can be measured on an index small enough to build in
seconds:

* scoring the ``nlist`` centroids (the coarse quantizer, a flat scan);
* scanning ``nprobe`` lists, :math:`\text{nprobe} \cdot N / \text{nlist}`
  codes when the lists are balanced (faiss counts the codes it scans, so the
  measured count is exact);
* a fixed part that does not grow with the catalogue: re-ranking the
  ``refine * k`` candidates with full vectors, the heap, the call.

:class:`IvfCost` holds the three unit costs, :meth:`IvfCost.fit` measures them
(the per-code cost is the slope of latency against codes scanned over an
``nprobe`` sweep, the per-centroid cost the coarse quantizer's own latency
divided by ``nlist``) and :meth:`IvfCost.predict_ms` extrapolates:

.. math:: t(N) = t_0 + c_\text{centroid} \cdot \text{nlist}
          + c_\text{code} \cdot \text{nprobe} \cdot N / \text{nlist}.

The two scans pull ``nlist`` in opposite directions, which is why faiss's rule
is :math:`\text{nlist} \propto \sqrt{N}` (:func:`~mlsd_lib.index.spec.default_nlist`)
and why, at that rule, latency grows as :math:`\sqrt{N}`.
:func:`plan_shards` then finds how many shards a catalogue needs for memory
(the index's bytes over one machine's share of RAM) and for latency (the
fewest shards whose per-shard search fits the stage's budget; shards are
searched in parallel) and how many cores serve the peak: every query visits
every shard, so cores = QPS x shards x per-shard seconds / utilisation.

What the model leaves out, and the chapter says: recall at a fixed ``nprobe``
falls as lists grow (re-measure at the target scale and raise ``nprobe``); a
billion-item index replaces the flat centroid scan with a graph over the
centroids; caches and memory bandwidth do not scale linearly; the re-ranking
copy of the vectors may live off RAM (a random read per candidate).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = ["IvfCost", "ScalingInputError", "ShardPlan", "plan_shards"]


class ScalingInputError(MlsdError, ValueError):
    """Measurements or budgets a plan cannot be made from; the message says why."""


@dataclass(frozen=True)
class IvfCost:
    """Unit costs of one IVF query, in milliseconds: ``fixed_ms`` (re-ranking,
    heap, call), ``per_centroid_ms`` and ``per_code_ms`` (one code scanned)."""

    fixed_ms: float
    per_centroid_ms: float
    per_code_ms: float

    def __post_init__(self) -> None:
        values = (self.fixed_ms, self.per_centroid_ms, self.per_code_ms)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ScalingInputError(
                f"unit costs must be finite and >= 0 ms, got fixed {self.fixed_ms}, "
                f"per centroid {self.per_centroid_ms}, per code {self.per_code_ms}."
            )

    @classmethod
    def fit(
        cls,
        codes_scanned: ArrayLike,
        total_ms: ArrayLike,
        *,
        quantizer_ms: float,
        nlist: int,
    ) -> IvfCost:
        """Unit costs from an ``nprobe`` sweep on one index of ``nlist`` lists.

        ``codes_scanned`` and ``total_ms`` pair up per setting (faiss's count
        and the measured latency); ``quantizer_ms`` is the coarse quantizer's
        own latency for one query. The slope of ``total_ms`` on
        ``codes_scanned`` (least squares) is the per-code cost; the intercept,
        less the centroid scan, the fixed part. Both are kept >= 0, so timing
        noise cannot make an index that gets faster as it grows.
        """
        scanned = np.asarray(codes_scanned, dtype=np.float64).ravel()
        times = np.asarray(total_ms, dtype=np.float64).ravel()
        if scanned.shape != times.shape:
            raise ScalingInputError(
                f"codes_scanned and total_ms must pair up, got {scanned.size} and "
                f"{times.size} values."
            )
        if not (np.all(np.isfinite(scanned)) and np.all(np.isfinite(times))):
            raise ScalingInputError("codes_scanned and total_ms must be finite.")
        if np.any(scanned < 0) or np.any(times < 0):
            raise ScalingInputError("counts and timings must be >= 0.")
        if len(np.unique(scanned)) < 2:
            raise ScalingInputError(
                "the per-code cost is a slope: measure two or more nprobe settings "
                f"that scan different numbers of codes, got {np.unique(scanned)}."
            )
        if isinstance(nlist, bool) or not isinstance(nlist, int) or nlist < 1:
            raise ScalingInputError(f"nlist={nlist!r}: pass the index's list count.")
        if not (math.isfinite(quantizer_ms) and quantizer_ms >= 0):
            raise ScalingInputError(
                f"quantizer_ms must be a finite time >= 0, got {quantizer_ms}."
            )
        design = np.column_stack([np.ones_like(scanned), scanned])
        (intercept, slope), *_ = np.linalg.lstsq(design, times, rcond=None)
        slope = max(float(slope), 0.0)
        intercept = float(np.mean(times - slope * scanned))
        return cls(
            fixed_ms=max(intercept - quantizer_ms, 0.0),
            per_centroid_ms=quantizer_ms / nlist,
            per_code_ms=slope,
        )

    def predict_ms(self, n: ArrayLike, nlist: ArrayLike, nprobe: int) -> np.ndarray:
        """Milliseconds per query for ``n`` items in ``nlist`` balanced lists,
        ``nprobe`` of them scanned (array-shaped like ``n``)."""
        items = np.asarray(n, dtype=np.float64)
        lists = np.asarray(nlist, dtype=np.float64)
        if np.any(items < 1) or np.any(lists < 1) or nprobe < 1:
            raise ScalingInputError(
                "n, nlist and nprobe must be >= 1 (an index holds items in lists)."
            )
        scanned = np.minimum(nprobe, lists) * items / lists
        return self.fixed_ms + self.per_centroid_ms * lists + self.per_code_ms * scanned


@dataclass(frozen=True)
class ShardPlan:
    """What serving ``n_items`` takes: shards (the larger of the two needs),
    items and bytes per shard, the modelled per-shard latency, and cores at
    the peak (every query visits every shard)."""

    n_items: int
    shards_for_memory: int
    shards_for_latency: int
    shards: int
    items_per_shard: int
    bytes_per_shard: float
    shard_ms: float
    cores: float


def plan_shards(
    n_items: int,
    index_bytes: float,
    *,
    ram_per_shard_bytes: float,
    shard_ms: Callable[[int], float],
    latency_budget_ms: float,
    peak_qps: float,
    utilisation: float = 0.6,
    max_shards: int = 100_000,
) -> ShardPlan:
    """Shards, per-shard latency and cores for ``n_items`` in an index of
    ``index_bytes`` (e.g. :func:`~mlsd_lib.index.spec.formula_index_bytes`).

    ``shard_ms(items)`` is the latency of one shard holding ``items`` (e.g.
    :meth:`IvfCost.predict_ms` with that shard's ``nlist``); it must not fall
    as a shard grows. Memory: ``ceil(index_bytes / ram_per_shard_bytes)``
    shards. Latency: the fewest shards (at most ``max_shards``) whose
    per-shard latency fits ``latency_budget_ms``. Cores: ``peak_qps * shards
    * shard_ms / 1000 / utilisation``, each core kept at most ``utilisation``
    busy so that queues stay short.
    """
    if isinstance(n_items, bool) or not isinstance(n_items, int) or n_items < 1:
        raise ScalingInputError(f"n_items={n_items!r}: pass an int >= 1.")
    for name, value in (
        ("index_bytes", index_bytes),
        ("ram_per_shard_bytes", ram_per_shard_bytes),
        ("latency_budget_ms", latency_budget_ms),
        ("peak_qps", peak_qps),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ScalingInputError(f"{name} must be a number > 0, got {value}.")
    if not 0 < utilisation <= 1:
        raise ScalingInputError(
            f"utilisation must lie in (0, 1] (the busiest a core may run), got "
            f"{utilisation}."
        )

    def latency(shards: int) -> float:
        return float(shard_ms(math.ceil(n_items / shards)))

    if latency(max_shards) > latency_budget_ms:
        raise ScalingInputError(
            f"even {max_shards:,} shards of {math.ceil(n_items / max_shards):,} "
            f"items take {latency(max_shards):.3g} ms, over the "
            f"{latency_budget_ms:.3g} ms budget: the fixed cost per query is too "
            "high; re-rank fewer candidates, scan fewer lists or raise the budget."
        )
    low, high = 1, 1  # the fewest shards within budget: double, then bisect
    while latency(high) > latency_budget_ms:
        low, high = high + 1, min(high * 2, max_shards)
    while low < high:
        middle = (low + high) // 2
        if latency(middle) <= latency_budget_ms:
            high = middle
        else:
            low = middle + 1
    for_latency = high
    for_memory = max(1, math.ceil(index_bytes / ram_per_shard_bytes))
    shards = max(for_memory, for_latency)
    per_shard_ms = latency(shards)
    return ShardPlan(
        n_items=n_items,
        shards_for_memory=for_memory,
        shards_for_latency=for_latency,
        shards=shards,
        items_per_shard=math.ceil(n_items / shards),
        bytes_per_shard=index_bytes / shards,
        shard_ms=per_shard_ms,
        cores=peak_qps * shards * per_shard_ms / 1000.0 / utilisation,
    )
