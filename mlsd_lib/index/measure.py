"""How good and how fast an ANN index is: recall against exact search, latency.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``
(step 5: "ANN recall against
exact search", measured apart from model recall so that index tuning is not
confused with model quality). Pure functions over anything with a
``search(queries, k)`` method, so a notebook measures an
:class:`~mlsd_lib.index.ann.AnnIndex`, a
:class:`~mlsd_lib.index.sharded.ShardedIndex` or a baseline the same way.

* :func:`recall_at_k`: the share of the exact top ``k`` that the index found.
* :func:`latency_profile`: per-query latency, one query at a time on one faiss
  thread by default: the cost of one request on one core, as a serving process
  sees it (batching queries hides the per-query cost a user waits for).
* :func:`sweep`: recall and latency across values of ``nprobe`` or
  ``ef_search``, the knob that trades one for the other at query time.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.spec import IndexSpec
from mlsd_lib.index.threads import faiss_threads
from mlsd_lib.validation import require_fraction, require_int

#: The search-time parameter of each kind that has one.
SEARCH_PARAM: dict[str, str] = {"ivf": "nprobe", "ivfpq": "nprobe", "hnsw": "ef_search"}


class MeasureInputError(MlsdError, ValueError):
    """Results or settings a measurement cannot use."""


class Searchable(Protocol):
    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best ``(scores, ids)`` per query."""
        ...


class Tunable(Searchable, Protocol):
    """An index whose search-time parameter can be changed (what :func:`sweep`
    needs)."""

    @property
    def spec(self) -> IndexSpec: ...

    def set_search_params(
        self, *, nprobe: int | None = None, ef_search: int | None = None
    ) -> None: ...


def recall_at_k(
    approx_ids: np.ndarray, exact_ids: np.ndarray, k: int, *, among: int | None = None
) -> float:
    """Mean over queries of ``|exact top k ∩ approx top among| / k``.

    ``among`` defaults to ``k``: the usual ANN recall@k (the share of the
    exact top ``k`` the index returned in its own top ``k``). A larger
    ``among`` asks how many of the exact top ``k`` are among the first
    ``among`` candidates: what re-ranking those candidates with exact scores
    would recover ("recall 10@100"). Rows are one query each, best first, as
    ``search`` returns them; the padding id ``-1`` never counts as a hit, nor
    does an id repeated within a row (an id added twice). Vectorized
    by sorting each row's two lists together and counting equal neighbours:
    no ``k x k`` comparison, so ``k = 500`` is cheap.
    """
    approx = _id_matrix(approx_ids, "approx_ids")
    exact = _id_matrix(exact_ids, "exact_ids")
    if approx.shape[0] != exact.shape[0]:
        raise MeasureInputError(
            f"approx_ids has {approx.shape[0]} rows and exact_ids "
            f"{exact.shape[0]}: pass one row per query in both, same order"
        )
    if _bad_count(k) or k > exact.shape[1]:
        raise MeasureInputError(
            f"k={k!r} is out of range: exact_ids has {exact.shape[1]} columns, "
            f"so pass 1 to {exact.shape[1]}"
        )
    among = k if among is None else among
    if _bad_count(among) or not k <= among <= approx.shape[1]:
        raise MeasureInputError(
            f"among={among!r} is out of range: approx_ids has {approx.shape[1]} "
            f"columns and k={k}, so pass {k} to {approx.shape[1]}"
        )
    # Padding (-1) and repeats become distinct negative numbers per column and
    # per side, so they never match anything.
    approx = _distinct(approx[:, :among], offset=0)
    exact = _distinct(exact[:, :k], offset=among)
    both = np.sort(np.concatenate([approx, exact], axis=1), axis=1)
    hits = (both[:, 1:] == both[:, :-1]).sum(axis=1)
    return float(hits.mean() / k)


@dataclass(frozen=True)
class LatencyProfile:
    """Per-query latencies in milliseconds, one row per pass over the queries.

    Two views of the same timings:

    * ``p50_ms`` / ``p99_ms``: over every timing, what callers waited for,
      including what the machine added (another process taking the core, an
      interrupt);
    * ``steady_p50_ms`` / ``steady_p99_ms``: over each query's fastest pass,
      the index's own cost per query (queries still differ: a query near a
      dense cluster scans longer lists), without the interference of a busy
      machine. With one pass the two views are the same.
    """

    latencies_ms: np.ndarray  # (repeats, n_queries)
    k: int
    threads: int

    @property
    def per_query_best_ms(self) -> np.ndarray:
        return self.latencies_ms.min(axis=0)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 50))

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_ms, 99))

    @property
    def steady_p50_ms(self) -> float:
        return float(np.percentile(self.per_query_best_ms, 50))

    @property
    def steady_p99_ms(self) -> float:
        return float(np.percentile(self.per_query_best_ms, 99))

    @property
    def mean_ms(self) -> float:
        return float(self.latencies_ms.mean())

    @property
    def queries_per_s(self) -> float:
        """One thread's throughput, one query at a time (``1000 / mean_ms``)."""
        return 1000.0 / self.mean_ms

    def summary(self) -> dict[str, float]:
        return {
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "steady_p50_ms": round(self.steady_p50_ms, 4),
            "steady_p99_ms": round(self.steady_p99_ms, 4),
            "mean_ms": round(self.mean_ms, 4),
            "timings": int(self.latencies_ms.size),
        }


def latency_profile(
    index: Searchable,
    queries: np.ndarray,
    k: int,
    *,
    threads: int = 1,
    warmup: int = 20,
    repeats: int = 1,
) -> LatencyProfile:
    """Time ``index.search`` on each query alone, in ``repeats`` passes.

    Runs with faiss on ``threads`` OpenMP threads (one by default: the cost of
    one request on one core) and restores the previous setting afterwards.
    ``warmup`` queries run first, untimed (caches, lazily allocated buffers).
    Each pass times every query once, so a stall hits one pass, not all.
    More queries make a steadier p99: 1,000 put ten timings behind it.
    """
    require_int("k", k, at_least=1, error=MeasureInputError)
    if queries.ndim != 2 or queries.shape[0] == 0:
        raise MeasureInputError(
            f"queries have shape {queries.shape}: pass (n_queries, d), n >= 1"
        )
    if _bad_count(repeats):
        raise MeasureInputError(f"repeats={repeats!r}: pass a positive integer")
    n = queries.shape[0]
    timings = np.empty((repeats, n), dtype=np.float64)
    with faiss_threads(threads):
        for i in range(min(warmup, n)):
            index.search(queries[i : i + 1], k)
        # One query per call is the point: this loop is the measurement.
        for r in range(repeats):
            for i in range(n):
                start = time.perf_counter_ns()
                index.search(queries[i : i + 1], k)
                timings[r, i] = time.perf_counter_ns() - start
    return LatencyProfile(latencies_ms=timings / 1e6, k=k, threads=threads)


@dataclass(frozen=True)
class SweepPoint:
    """Recall and latency of one index at one search-time setting."""

    label: str
    param: str
    value: int
    recall: float
    p50_ms: float
    p99_ms: float
    steady_p99_ms: float

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            self.param: self.value,
            "recall": round(self.recall, 4),
            "p50_ms": round(self.p50_ms, 4),
            "p99_ms": round(self.p99_ms, 4),
            "steady_p99_ms": round(self.steady_p99_ms, 4),
        }


def sweep(
    index: Tunable,
    queries: np.ndarray,
    exact_ids: np.ndarray,
    k: int,
    values: Sequence[int],
    *,
    threads: int = 1,
    repeats: int = 1,
    label: str | None = None,
    timed: int | None = None,
) -> list[SweepPoint]:
    """Recall@k and latency for each value of the kind's search parameter
    (``nprobe`` for IVF kinds, ``ef_search`` for HNSW; see :data:`SEARCH_PARAM`).

    Recall comes from one batched search per value over every query, latency
    from :func:`latency_profile` over the first ``timed`` queries (all when
    None): a steady p99 needs a few hundred queries timed in several
    ``repeats``, while recall is cheap and steadier over more queries. The
    index's setting is restored afterwards.
    """
    require_int("k", k, at_least=1, error=MeasureInputError)
    for value in values:
        require_int("values", value, at_least=1, error=MeasureInputError)
    if timed is not None and _bad_count(timed):
        raise MeasureInputError(f"timed={timed!r}: pass a positive integer or None")
    timed_queries = queries if timed is None else queries[:timed]
    spec = index.spec
    if spec.kind not in SEARCH_PARAM:
        raise MeasureInputError(
            f"a {spec.kind} index has no search-time parameter to sweep: measure "
            "it once with latency_profile"
        )
    param = SEARCH_PARAM[spec.kind]
    original = getattr(spec, param)
    points = []
    try:
        for value in values:
            index.set_search_params(**{param: value})
            _, ids = index.search(queries, k)
            profile = latency_profile(
                index, timed_queries, k, threads=threads, repeats=repeats
            )
            points.append(
                SweepPoint(
                    label=label or spec.kind,
                    param=param,
                    value=int(value),
                    recall=recall_at_k(ids, exact_ids, k),
                    p50_ms=profile.p50_ms,
                    p99_ms=profile.p99_ms,
                    steady_p99_ms=profile.steady_p99_ms,
                )
            )
    finally:
        index.set_search_params(**{param: original})
    return points


def cheapest_reaching(
    points: Sequence[SweepPoint], min_recall: float
) -> SweepPoint | None:
    """The point with the smallest parameter value among those with
    ``recall >= min_recall`` (None if none reaches it).

    Chosen by value, not by measured latency: recall is deterministic, a p99
    on a busy machine is not, and a larger ``nprobe`` or ``ef_search`` never
    does less work.
    """
    require_fraction("min_recall", min_recall, zero=True, error=MeasureInputError)
    reaching = [p for p in points if p.recall >= min_recall]
    return min(reaching, key=lambda p: p.value) if reaching else None


def _distinct(ids: np.ndarray, offset: int) -> np.ndarray:
    """Each row sorted, with padding and repeated ids replaced by negative
    numbers unique to their column (``-1 - offset - column``)."""
    rows = np.sort(ids, axis=1)
    repeated = np.zeros(rows.shape, dtype=bool)
    repeated[:, 1:] = rows[:, 1:] == rows[:, :-1]
    unused = -1 - offset - np.arange(rows.shape[1])
    return np.where((rows < 0) | repeated, unused, rows)


def _bad_count(value: object) -> bool:
    return isinstance(value, bool) or not isinstance(value, int) or value < 1


def _id_matrix(ids: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(ids)
    if array.ndim != 2 or array.dtype.kind not in "iu":
        raise MeasureInputError(
            f"{name} has shape {array.shape} and dtype {array.dtype}: pass the "
            "(n_queries, k) integer ids that search returned"
        )
    return array.astype(np.int64, copy=False)
