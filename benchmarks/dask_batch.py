"""Batch jobs on pandas against Dask with 1 and 2 workers, and where Dask pays off.

    python benchmarks/dask_batch.py [--quick]

Runs :func:`mlsd_lib.batch.batch_measure.measure_batch_jobs` over three jobs at
a few sizes each: the point-in-time join of the example ads impressions to 50
features over 3 views, the windowed-count feature view replayed from an event
log (the event-at-a-time reference), and a catalogue of 64 x 64 images
embedded by an exported embedder. The single-process path runs in this
process (the embedding with one torch thread); Dask runs on a private loopback
``LocalCluster`` (or ``DASK_SCHEDULER_ADDRESS``'s), started once per worker
count and warmed up first.

The last line on stdout is one JSON object: rows per second for every job,
engine, worker count and size (``<job>_<engine>[_<workers>w]_<rows>_rows_per_s``),
the peak resident memory of any worker (MB), Dask's overhead at the smallest
size (its seconds minus pandas', 1 worker), the crossover (the smallest
measured size from which 2 workers beat pandas at every larger one; null if
never) and the cluster start-up seconds.
"""

from __future__ import annotations

import argparse
import json
import os

#: Row counts per job: full run, and ``--quick``.
SIZES = {
    "point_in_time_join": [5_000, 40_000, 160_000],
    "windowed_counts": [2_000, 10_000, 50_000],
    "catalogue_embedding": [256, 1_024, 4_096],
}
QUICK_SIZES = {
    "point_in_time_join": [5_000, 40_000],
    "windowed_counts": [2_000, 10_000],
    "catalogue_embedding": [256, 1_024],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes")
    args = parser.parse_args()
    # Imported here, not at the top: Dask spawns its workers, which re-import
    # this script's top level, and torch there would add ~280 MB to each.
    from mlsd_lib.batch.batch_measure import (
        crossover_rows,
        dask_overhead_s,
        measure_batch_jobs,
    )

    sizes = QUICK_SIZES if args.quick else SIZES
    measured = measure_batch_jobs(sizes, repeats=1 if args.quick else 2)
    timings = measured.timings
    print(timings.round(3).to_string(index=False))

    results: dict[str, object] = {"quick": args.quick, "cores": os.cpu_count()}
    for row in timings.itertuples():
        engine = "pandas" if row.engine == "pandas" else f"dask_{row.workers}w"
        key = f"{row.job}_{engine}_{row.rows}_rows_per_s"
        results[key] = round(float(row.rows_per_s), 1)
    dask = timings[timings["engine"] == "dask"]
    results["peak_worker_mb"] = round(float(dask["peak_worker_mb"].max()), 1)
    for job in sizes:
        results[f"{job}_peak_worker_mb"] = round(
            float(dask[dask["job"] == job]["peak_worker_mb"].max()), 1
        )
        results[f"{job}_dask_overhead_s"] = round(dask_overhead_s(timings, job), 3)
        results[f"{job}_crossover_rows_2w"] = crossover_rows(timings, job, 2)
    for workers, seconds in measured.startup_s.items():
        results[f"cluster_startup_{workers}w_s"] = round(seconds, 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
