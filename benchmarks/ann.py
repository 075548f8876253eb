"""ANN indexes on a million learned-looking embeddings: recall, latency, memory.

    python benchmarks/ann.py [--quick] [--n N] [--queries Q] [--plot PATH]

The retrieval stage of ``casestudies/recommender`` searches 10 M items for the
500 with the largest inner product with a user embedding, in 15 ms at p99.
This benchmark measures the four kinds of :mod:`mlsd_lib.index` (Flat, IVF,
HNSW, IVF-PQ, all faiss, inner product) on 1,000,000 x 64 float32 vectors
(200,000 with ``--quick``).

Data (:func:`mlsd_lib.index.synthetic.clustered_embeddings`, seed 0): a
mixture of 300 anisotropic Gaussian clusters on the unit sphere, cluster sizes
following a power law (``p_c ∝ 1/(c+1)``: the largest holds about 16% of
items), each cluster elongated along a random orientation, every vector
L2-normalized; not uniform noise, on which no index has neighbours to find.
Queries are 2 x 1,000 fresh draws from the same mixture, not indexed vectors:
the first 1,000 tune the search parameters, the other 1,000 report them, so
the reported recall is not the recall the settings were picked on.

Recall@10 is measured against exact search (the Flat index's top 10). Latency
is per query, one query at a time on one faiss thread (``faiss_threads(1)``):
the cost of one request on one core. Every test query is timed in 3 passes
(Flat: 2). ``*_p50_ms`` and ``*_p99_ms`` are percentiles over each query's
fastest pass (``steady_p99_ms`` of
:class:`~mlsd_lib.index.measure.LatencyProfile`): the index's own per-query
cost, without the multi-millisecond preemptions a shared, overloaded 2-core
machine adds to a few percent of timings. ``*_p99_all_ms`` are over every
timing, preemptions included; both are printed. Builds use every core.

Parameters, and how they are picked (stated here, printed by the run):

* HNSW: ``M = 32``, ``efConstruction = 40`` (faiss's default); ``efSearch``
  swept over 16, 32, 64, 128, 256 on the tuning queries, and the smallest
  reaching recall@10 >= 0.95 is reported (``--quick`` also sweeps ``M = 16``
  and keeps the M whose pick has the lower steady p99).
* IVF: ``nlist = 1024`` (about sqrt(n); 512 with ``--quick``); ``nprobe``
  swept over 1 to 128 by powers of two; the smallest reaching 0.95.
* IVF-PQ: the same lists, 16-byte codes (``PQ16x8``: 16 sub-vectors of 4
  dimensions, 8 bits each); its recall plateaus where quantization error
  exceeds the score gaps between neighbours, so the smallest ``nprobe``
  within 0.01 of its best recall is reported, and with it
  ``ivfpq_recall_10_at_100``: the share of the exact top 10 among IVF-PQ's
  top 100, what re-ranking 100 candidates with full vectors would recover.
* IVF-PQ + refine: the same lists and codebooks (same seed), plus every
  vector kept as float32 to re-score candidates exactly (faiss
  ``IndexRefineFlat``, ``IDMap,IVF{nlist},PQ16x8,RFlat``; see
  :class:`~mlsd_lib.index.spec.IndexSpec`'s ``refine``). Two knobs: the
  refine factor ``r`` (``r * 10`` candidates re-scored) over 16, 32, 64, 128,
  256 and ``nprobe``. Recall is computed over the whole grid on the tuning
  queries; for each ``r`` the smallest ``nprobe`` reaching 0.95 is timed, and
  the pair with the lowest steady p99 is reported (if none reaches 0.95, the
  pair with the best recall); its ``nprobe`` sweep is printed and plotted.

Targets (the issue's): HNSW recall@10 >= 0.95 at single-thread p99 <= 0.5 ms,
with the speed-up over Flat's p99 stated. Latency on a shared 2-core machine
is noisy: the load average at the start is printed and recorded. On 2 cores
shared with other work (load average 4.5-7), a full run took 7-9 minutes
before the IVF-PQ + refine stage was added and 10.5 minutes with it (load
average 4.2), most of it the HNSW build (3-5 minutes), and about 1.1 GB of
memory; ``--quick`` took 1-2 minutes, 4 with the refine stage (load 5.4).

The last line on stdout is one JSON object: ``hnsw_recall_at_10``,
``hnsw_p99_ms``, ``hnsw_p50_ms``, ``hnsw_speedup_over_flat_p99`` (steady p99
over steady p99), the same for ``flat_``, ``ivf_``, ``ivfpq_`` and
``ivfpq_refine_`` (with ``ivfpq_refine_factor`` and ``ivfpq_refine_nprobe``),
``*_p99_all_ms``, measured ``*_bytes_per_vector`` (and the formula's),
``*_build_s``, the chosen parameters, ``n`` and ``d``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mlsd_lib.index import (
    AnnIndex,
    IndexSpec,
    SweepPoint,
    cheapest_reaching,
    clustered_embeddings,
    formula_bytes_per_vector,
    latency_profile,
    recall_at_k,
    sweep,
)

K = 10
D = 64
TARGET_RECALL = 0.95
TARGET_P99_MS = 0.5
EF_SEARCH = (16, 32, 64, 128, 256)
NPROBE = (1, 2, 4, 8, 16, 32, 64, 128)
#: IVF-PQ's pick: the smallest nprobe within this of its best recall.
PLATEAU = 0.01
#: IVF-PQ candidates a full-precision re-rank would rescore.
RERANK = 100
#: Refine factors tried for IVF-PQ + refine (``r * K`` candidates re-scored).
REFINE_FACTORS = (16, 32, 64, 128, 256)


@dataclass(frozen=True)
class Settings:
    n: int
    n_queries: int = 1000
    nlist: int = 1024
    hnsw_ms: tuple[int, ...] = (32,)
    repeats: int = 3
    flat_repeats: int = 2
    seed: int = 0


FULL = Settings(n=1_000_000)
QUICK = Settings(n=200_000, nlist=512, hnsw_ms=(16, 32))


def log(message: str) -> None:
    print(message, flush=True)


def timed_build(spec: IndexSpec, items: np.ndarray) -> tuple[AnnIndex, float]:
    start = time.perf_counter()
    index = AnnIndex(spec, items.shape[1]).build(items)
    return index, time.perf_counter() - start


def report(
    index: AnnIndex,
    test: np.ndarray,
    exact: np.ndarray,
    settings: Settings,
    build_s: float,
) -> dict[str, Any]:
    """Recall, latency and memory of ``index`` at its current settings."""
    _, ids = index.search(test, K)
    repeats = settings.flat_repeats if index.spec.kind == "flat" else settings.repeats
    profile = latency_profile(index, test, K, threads=1, repeats=repeats)
    return {
        "recall_at_10": round(recall_at_k(ids, exact, K), 4),
        "p50_ms": round(profile.steady_p50_ms, 4),
        "p99_ms": round(profile.steady_p99_ms, 4),
        "p50_all_ms": round(profile.p50_ms, 4),
        "p99_all_ms": round(profile.p99_ms, 4),
        "passes": repeats,
        "bytes_per_vector": round(index.bytes_per_vector(), 2),
        "formula_bytes_per_vector": round(
            formula_bytes_per_vector(index.spec, index.d), 2
        ),
        "build_s": round(build_s, 2),
    }


def show_sweep(points: list[SweepPoint]) -> None:
    for p in points:
        log(
            f"    {p.param}={p.value:<4d} recall@10 {p.recall:.4f}  "
            f"p50 {p.p50_ms:7.3f} ms  p99 {p.p99_ms:7.3f} ms  "
            f"steady p99 {p.steady_p99_ms:7.3f} ms"
        )


def tune_hnsw(
    items: np.ndarray,
    tune: np.ndarray,
    exact_tune: np.ndarray,
    settings: Settings,
) -> tuple[AnnIndex, float, list[SweepPoint]]:
    """Build HNSW for each M, sweep efSearch, keep the M whose pick is fastest."""
    best: tuple[AnnIndex, float, SweepPoint] | None = None
    all_points: list[SweepPoint] = []
    for m in settings.hnsw_ms:
        log(f"building HNSW M={m} ...")
        index, build_s = timed_build(IndexSpec("hnsw", hnsw_m=m), items)
        log(f"  built in {build_s:.1f} s; sweeping efSearch on the tuning queries")
        points = sweep(
            index,
            tune,
            exact_tune,
            K,
            EF_SEARCH,
            repeats=settings.repeats,
            label=f"hnsw M={m}",
        )
        show_sweep(points)
        all_points += points
        pick = cheapest_reaching(points, TARGET_RECALL) or points[-1]
        if best is None or pick.steady_p99_ms < best[2].steady_p99_ms:
            index.set_search_params(ef_search=pick.value)
            best = (index, build_s, pick)
    assert best is not None
    index, build_s, pick = best
    log(f"  picked M={index.spec.hnsw_m}, efSearch={pick.value}")
    return index, build_s, all_points


def tune_ivf(
    spec: IndexSpec,
    items: np.ndarray,
    tune: np.ndarray,
    exact_tune: np.ndarray,
    settings: Settings,
) -> tuple[AnnIndex, float, list[SweepPoint]]:
    """Build an IVF kind, sweep nprobe, and set the stated pick."""
    log(f"building {spec.factory_string()} ...")
    index, build_s = timed_build(spec, items)
    log(f"  built in {build_s:.1f} s; sweeping nprobe on the tuning queries")
    values = [v for v in NPROBE if v <= index.spec.nlist]
    points = sweep(
        index, tune, exact_tune, K, values, repeats=settings.repeats, label=spec.kind
    )
    show_sweep(points)
    if spec.kind == "ivf":
        pick = cheapest_reaching(points, TARGET_RECALL) or points[-1]
    else:
        best_recall = max(p.recall for p in points)
        pick = cheapest_reaching(points, best_recall - PLATEAU)
        assert pick is not None
    index.set_search_params(nprobe=pick.value)
    log(f"  picked nprobe={pick.value}")
    return index, build_s, points


def tune_refine(
    items: np.ndarray,
    tune: np.ndarray,
    exact_tune: np.ndarray,
    settings: Settings,
) -> tuple[AnnIndex, float, list[SweepPoint]]:
    """Build IVF-PQ + refine, pick (refine factor, nprobe) as the module
    docstring states, and sweep nprobe at the chosen factor."""
    spec = IndexSpec("ivfpq", nlist=settings.nlist, pq_bytes=16, refine=1)
    log(f"building {spec.factory_string()} ...")
    index, build_s = timed_build(spec, items)
    nprobes = [v for v in NPROBE if v <= index.spec.nlist]
    log(f"  built in {build_s:.1f} s; recall over refine x nprobe (tuning queries)")
    grid: dict[tuple[int, int], float] = {}
    for factor in REFINE_FACTORS:
        for nprobe in nprobes:
            index.set_search_params(refine=factor, nprobe=nprobe)
            grid[factor, nprobe] = recall_at_k(index.search(tune, K)[1], exact_tune, K)
        row = "  ".join(f"{grid[factor, v]:.3f}" for v in nprobes)
        log(f"    refine={factor:<4d} nprobe {nprobes}: {row}")
    # For each factor, the smallest nprobe reaching the target (nprobes ascend).
    candidates = []
    for factor in REFINE_FACTORS:
        reaching = [v for v in nprobes if grid[factor, v] >= TARGET_RECALL]
        if reaching:
            candidates.append((factor, reaching[0]))
    if not candidates:
        candidates = [max(grid, key=lambda pair: (grid[pair], -pair[0], -pair[1]))]
    timed = {}
    for factor, nprobe in candidates:
        index.set_search_params(refine=factor, nprobe=nprobe)
        profile = latency_profile(index, tune, K, repeats=settings.repeats)
        timed[factor, nprobe] = profile.steady_p99_ms
        log(
            f"    refine={factor} nprobe={nprobe}: recall@10 "
            f"{grid[factor, nprobe]:.4f}, steady p99 {profile.steady_p99_ms:.3f} ms"
        )
    factor, _ = min(timed, key=timed.get)
    index.set_search_params(refine=factor)
    points = sweep(
        index,
        tune,
        exact_tune,
        K,
        nprobes,
        repeats=settings.repeats,
        label=f"ivfpq+refine r={factor}",
    )
    show_sweep(points)
    pick = cheapest_reaching(points, TARGET_RECALL) or max(
        points, key=lambda p: p.recall
    )
    index.set_search_params(nprobe=pick.value)
    log(f"  picked refine={factor}, nprobe={pick.value}")
    return index, build_s, points


def run(settings: Settings, plot: Path | None = None) -> dict[str, Any]:
    """Every measurement; returns the JSON summary."""
    load = os.getloadavg()[0]
    log(
        f"n={settings.n} d={D} queries={settings.n_queries} (+ as many to tune), "
        f"{os.cpu_count()} CPUs, load average {load:.2f}"
    )
    start = time.perf_counter()
    items, queries = clustered_embeddings(
        settings.n, 2 * settings.n_queries, D, seed=settings.seed
    )
    tune, test = queries[: settings.n_queries], queries[settings.n_queries :]
    log(f"data: {time.perf_counter() - start:.1f} s")

    flat, flat_build_s = timed_build(IndexSpec("flat"), items)
    _, exact_tune = flat.search(tune, K)
    _, exact_test = flat.search(test, K)
    log("timing Flat, one query at a time ...")
    results = {"flat": report(flat, test, exact_test, settings, flat_build_s)}
    del flat

    hnsw, build_s, hnsw_points = tune_hnsw(items, tune, exact_tune, settings)
    results["hnsw"] = report(hnsw, test, exact_test, settings, build_s)
    chosen = {"hnsw_m": hnsw.spec.hnsw_m, "hnsw_ef_search": hnsw.spec.ef_search}
    del hnsw

    ivf_points: list[SweepPoint] = []
    for kind in ("ivf", "ivfpq"):
        spec = IndexSpec(kind, nlist=settings.nlist, pq_bytes=16)
        index, build_s, points = tune_ivf(spec, items, tune, exact_tune, settings)
        ivf_points += points
        results[kind] = report(index, test, exact_test, settings, build_s)
        if kind == "ivfpq":
            _, candidates = index.search(test, RERANK)
            results[kind][f"recall_10_at_{RERANK}"] = round(
                recall_at_k(candidates, exact_test, K, among=RERANK), 4
            )
        chosen[f"{kind}_nprobe"] = index.spec.nprobe
        del index

    index, build_s, points = tune_refine(items, tune, exact_tune, settings)
    ivf_points += points
    results["ivfpq_refine"] = report(index, test, exact_test, settings, build_s)
    chosen["ivfpq_refine_factor"] = index.spec.refine
    chosen["ivfpq_refine_nprobe"] = index.spec.nprobe
    del index

    summary = summarize(results, chosen, settings, load)
    log("")
    log(table(results, chosen))
    log(
        f"HNSW: recall@10 {summary['hnsw_recall_at_10']:.4f} (target >= "
        f"{TARGET_RECALL}), p99 {summary['hnsw_p99_ms']:.3f} ms (target <= "
        f"{TARGET_P99_MS}): {'met' if summary['hnsw_meets_target'] else 'MISSED'}; "
        f"{summary['hnsw_speedup_over_flat_p99']:.0f}x faster than Flat at p99"
    )
    log(
        f"IVF-PQ: recall@10 {summary['ivfpq_recall_at_10']:.4f}; of the exact top "
        f"10, {summary[f'ivfpq_recall_10_at_{RERANK}']:.4f} are in its top "
        f"{RERANK} (what a full-precision re-rank of {RERANK} would recover)"
    )
    log(
        f"IVF-PQ + refine (r={summary['ivfpq_refine_factor']}, nprobe="
        f"{summary['ivfpq_refine_nprobe']}): recall@10 "
        f"{summary['ivfpq_refine_recall_at_10']:.4f}, p99 "
        f"{summary['ivfpq_refine_p99_ms']:.3f} ms, "
        f"{summary['ivfpq_refine_bytes_per_vector']:.0f} bytes per vector (the "
        f"full vectors kept again; IVF-PQ alone "
        f"{summary['ivfpq_bytes_per_vector']:.0f})"
    )
    if plot is not None:
        from mlsd_lib.index.plots import plot_recall_latency

        figure = plot_recall_latency(
            hnsw_points + ivf_points,
            target_recall=TARGET_RECALL,
            target_p99_ms=TARGET_P99_MS,
            title=f"n={settings.n:,}, d={D}, recall@10, tuning queries",
        )
        figure.savefig(plot, dpi=120)
        log(f"figure: {plot}")
    log(f"total: {time.perf_counter() - start:.0f} s")
    return summary


def summarize(
    results: dict[str, dict[str, Any]],
    chosen: dict[str, int],
    settings: Settings,
    load: float,
) -> dict[str, Any]:
    summary: dict[str, Any] = {"n": settings.n, "d": D, "k": K}
    for kind, figures in results.items():
        for key, value in figures.items():
            summary[f"{kind}_{key}"] = value
    summary.update(chosen)
    summary["ivf_nlist"] = settings.nlist
    summary["hnsw_speedup_over_flat_p99"] = round(
        results["flat"]["p99_ms"] / results["hnsw"]["p99_ms"], 1
    )
    summary["hnsw_meets_target"] = bool(
        results["hnsw"]["recall_at_10"] >= TARGET_RECALL
        and results["hnsw"]["p99_ms"] <= TARGET_P99_MS
    )
    summary["load_average_at_start"] = round(load, 2)
    summary["cpus"] = os.cpu_count()
    return summary


def table(results: dict[str, dict[str, Any]], chosen: dict[str, int]) -> str:
    params = {
        "flat": "exact",
        "hnsw": f"M={chosen['hnsw_m']} efSearch={chosen['hnsw_ef_search']}",
        "ivf": f"nprobe={chosen['ivf_nprobe']}",
        "ivfpq": f"PQ16 nprobe={chosen['ivfpq_nprobe']}",
        "ivfpq_refine": (
            f"r={chosen['ivfpq_refine_factor']} nprobe={chosen['ivfpq_refine_nprobe']}"
        ),
    }
    lines = [
        "p50 and p99: of each query's fastest pass; p99 all: of every timing",
        f"{'index':12} {'parameters':22} {'recall@10':>9} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'p99 all':>8} {'B/vec':>7} {'formula':>7} {'build s':>8}",
    ]
    for kind, r in results.items():
        lines.append(
            f"{kind:12} {params[kind]:22} {r['recall_at_10']:9.4f} "
            f"{r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['p99_all_ms']:8.3f} "
            f"{r['bytes_per_vector']:7.1f} {r['formula_bytes_per_vector']:7.1f} "
            f"{r['build_s']:8.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 items")
    parser.add_argument("--n", type=int, help="number of items (overrides)")
    parser.add_argument("--queries", type=int, help="test (and tuning) queries")
    parser.add_argument("--plot", type=Path, help="save the recall-latency figure")
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    if args.n is not None:
        settings = replace(settings, n=args.n, nlist=min(settings.nlist, args.n // 39))
    if args.queries is not None:
        settings = replace(settings, n_queries=args.queries)
    print(json.dumps(run(settings, args.plot)))


if __name__ == "__main__":
    main()
