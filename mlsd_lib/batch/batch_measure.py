"""What Dask costs and what it buys: pandas against 1 and 2 workers, per job and size.

Introduced in ``notebooks/scaling_out.ipynb``. "Put it on Spark" is the
interview reflex; the honest answer has two numbers in it: the fixed cost of
the distributed path (shipping partitions to other processes, scheduling a
task per partition, gathering the results) and the size at which parallel
work pays it back. :func:`measure_batch_jobs` measures both for the three
batch jobs of :mod:`mlsd_lib.batch`, on inputs built here at each size:

* ``point_in_time_join``: the example ads impressions as the spine (``rows``
  label rows), joined to 50 features over 3 views
  (:data:`~mlsd_lib.features.examples.SINGLE_ENTITY_REFS`);
* ``windowed_counts``: a synthetic ads event log of ``rows`` events replayed
  into the ``user_stream`` view (the event-at-a-time reference);
* ``catalogue_embedding``: ``rows`` seeded random 64 x 64 images through an
  exported :class:`~mlsd_lib.visual.served_embedder.PixelEmbedder` around an
  untrained default :class:`~mlsd_lib.models.image_embedder.ImageEmbedder`
  (the cost of a forward pass does not depend on the weights or the pixels).

The single-process path (``engine="pandas"``) runs the same function in this
process, the embedding with one torch thread (one worker's share). Each
cluster is started once per worker count (its start-up reported apart as
``startup_s``), and each job is run once untimed at its smallest size before
it is timed (the first task on a fresh worker imports pandas or torch: a
one-off); the single-process path is warmed up the same way. The jobs run in
the order of :data:`JOBS`, the embedding last, so the pandas jobs' memory is
measured on workers that have not imported torch. Peak memory per worker is
the largest resident set any worker process reached during the job, sampled
on the workers (:mod:`~mlsd_lib.batch.worker_memory`): the number to hold
against a memory limit (Binder gives 2 GB in all).
"""

from __future__ import annotations

import gc
import importlib
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from distributed import Client

from mlsd_lib.batch.catalogue_embedding import embed_catalogue
from mlsd_lib.batch.dask_cluster import dask_client
from mlsd_lib.batch.partitioned_join import BatchJobError, point_in_time_join_by_entity
from mlsd_lib.batch.partitioned_windows import windowed_counts_by_entity
from mlsd_lib.batch.worker_memory import (
    start_sampling,
    stop_sampling,
    take_peak_mb,
)
from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.features.event_stream import events_frame, synthetic_events
from mlsd_lib.features.examples import SINGLE_ENTITY_REFS, make_ads_example
from mlsd_lib.features.offline import point_in_time_join
from mlsd_lib.features.windows import ADS_AGGREGATIONS, windowed_counts_offline
from mlsd_lib.models.image_embedder import ImageEmbedder
from mlsd_lib.models.training import torch_threads
from mlsd_lib.progress import tqdm
from mlsd_lib.serving.export import load_torchscript
from mlsd_lib.visual.served_embedder import embed_pixels, export_pixel_embedder

__all__ = [
    "JOBS",
    "BatchJob",
    "BatchMeasurement",
    "build_job",
    "crossover_rows",
    "dask_overhead_s",
    "measure_batch_jobs",
]

#: The jobs measured, in the order they run (the one that imports torch last).
JOBS = ("point_in_time_join", "windowed_counts", "catalogue_embedding")
#: Impressions per user in the example ads world (0.5 a day for 28 days).
_IMPRESSIONS_PER_USER = 14


@dataclass(frozen=True)
class BatchJob:
    """One job's input at one size, built before any clock starts."""

    job: str
    rows: int
    run_single: Callable[[], object]
    run_dask: Callable[[Client], object]
    worker_module: str
    """The module a worker imports to run the job (imported on every worker
    before the job is timed)."""


def _join_job(rows: int, seed: int) -> BatchJob:
    ads = make_ads_example(
        num_users=max(1, rows // _IMPRESSIONS_PER_USER), num_ads=100, seed=seed
    )
    args = (ads.impressions, SINGLE_ENTITY_REFS, ads.registry, ads.tables)
    return BatchJob(
        "point_in_time_join",
        len(ads.impressions),
        lambda: point_in_time_join(*args),
        lambda client: point_in_time_join_by_entity(client, *args),
        "mlsd_lib.batch.partitioned_join",
    )


def _windows_job(rows: int, seed: int) -> BatchJob:
    impressions = max(1, round(rows / 1.1))  # about 10% of impressions clicked
    log = events_frame(
        synthetic_events(
            impressions,
            num_users=max(10, rows // 50),
            impressions_per_s=0.05,
            seed=seed,
        )
    )
    aggregation = ADS_AGGREGATIONS[0]
    return BatchJob(
        "windowed_counts",
        len(log),
        lambda: windowed_counts_offline(log, aggregation),
        lambda client: windowed_counts_by_entity(client, log, aggregation),
        "mlsd_lib.batch.partitioned_windows",
    )


def _embedding_job(rows: int, seed: int, workdir: Path) -> BatchJob:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (max(8, rows), 64, 64, 3), dtype=np.uint8)
    ids = np.arange(len(pixels))
    images = ImageSet(pixels, ids, ids, ids)
    path = workdir / "pixel_embedder.pt"
    if not path.is_file():
        export_pixel_embedder(ImageEmbedder(seed=seed), images.subset(ids[:8]), path)
    module = _loaded(path)

    def single() -> np.ndarray:
        with torch_threads(1):
            return embed_pixels(module, images)

    return BatchJob(
        "catalogue_embedding",
        len(images),
        single,
        lambda client: embed_catalogue(client, path, images),
        "mlsd_lib.batch.catalogue_embedding",
    )


_MODULES: dict[Path, object] = {}


def _loaded(path: Path) -> object:
    """The exported embedder, loaded once in this process (as a worker does)."""
    if path not in _MODULES:
        _MODULES[path] = load_torchscript(path)
    return _MODULES[path]


def build_job(job: str, rows: int, *, seed: int, workdir: str | Path) -> BatchJob:
    """The input of ``job`` at about ``rows`` rows (the exact count is in
    ``.rows``); ``workdir`` holds the exported embedder."""
    if job not in JOBS:
        raise BatchJobError(f"unknown batch job {job!r}; the jobs are {JOBS}.")
    if not isinstance(rows, int) or rows < 1:
        raise BatchJobError(f"rows must be an integer >= 1, got {rows!r}.")
    if job == "point_in_time_join":
        return _join_job(rows, seed)
    if job == "windowed_counts":
        return _windows_job(rows, seed)
    return _embedding_job(rows, seed, Path(workdir))


def _seconds(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        gc.collect()  # no collection of earlier garbage inside the clock
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _smallest(jobs: Sequence[BatchJob]) -> list[BatchJob]:
    first: dict[str, BatchJob] = {}
    for job in sorted(jobs, key=lambda j: j.rows):
        first.setdefault(job.job, job)
    return list(first.values())


@dataclass(frozen=True)
class BatchMeasurement:
    """The timings, one row per (job, engine, workers, rows), and start-up costs."""

    timings: pd.DataFrame
    """Columns ``job``, ``engine`` (``pandas`` or ``dask``), ``workers``, ``rows``,
    ``seconds``, ``rows_per_s``, ``peak_worker_mb`` (NaN for pandas)."""
    startup_s: dict[int, float]
    """Seconds to start a cluster (workers up, client connected), by worker
    count."""


def measure_batch_jobs(
    sizes: Mapping[str, Sequence[int]],
    *,
    workers: Sequence[int] = (1, 2),
    repeats: int = 1,
    seed: int = 0,
    memory_limit: str = "1GiB",
    progress: bool = True,
) -> BatchMeasurement:
    """Time every job in ``sizes`` (job name to row counts) on pandas and on Dask
    with each of ``workers`` worker processes; the best of ``repeats`` runs."""
    unknown = sorted(set(sizes) - set(JOBS))
    if unknown or not sizes:
        raise BatchJobError(
            f"sizes must map some of the jobs {JOBS} to row counts; unknown: {unknown}."
        )
    if repeats < 1 or not workers or min(workers) < 1:
        raise BatchJobError(
            f"need repeats >= 1 and worker counts >= 1, got {repeats} and "
            f"{list(workers)}."
        )
    records = []
    with tempfile.TemporaryDirectory(prefix="mlsd-batch-") as workdir:
        # In JOBS order, the embedding last: a worker that has imported torch
        # keeps it, and the pandas jobs' memory is measured without it.
        jobs = [
            build_job(job, rows, seed=seed, workdir=workdir)
            for job in JOBS
            for rows in sorted(sizes.get(job, []))
        ]
        steps = len(jobs) * (1 + len(workers))
        bar = tqdm(total=steps, desc="batch jobs", disable=not progress)
        for job in _smallest(jobs):  # as the workers are warmed up, below
            job.run_single()
        for job in jobs:
            seconds = _seconds(job.run_single, repeats)
            records.append((job.job, "pandas", 1, job.rows, seconds, np.nan))
            bar.update()
        startup: dict[int, float] = {}
        for count in workers:
            start = time.perf_counter()
            with dask_client(count, memory_limit=memory_limit) as client:
                client.run(start_sampling)
                startup[count] = time.perf_counter() - start
                warm = {job.job: job for job in _smallest(jobs)}
                for job in jobs:
                    if warm.pop(job.job, None) is not None:  # untimed
                        client.run(importlib.import_module, job.worker_module)
                        job.run_dask(client)
                    client.run(take_peak_mb)
                    seconds = _seconds(lambda j=job: j.run_dask(client), repeats)
                    peak = max(client.run(take_peak_mb).values())
                    records.append((job.job, "dask", count, job.rows, seconds, peak))
                    bar.update()
                client.run(stop_sampling)
        bar.close()
    timings = pd.DataFrame(
        records,
        columns=["job", "engine", "workers", "rows", "seconds", "peak_worker_mb"],
    )
    timings.insert(5, "rows_per_s", timings["rows"] / timings["seconds"])
    return BatchMeasurement(timings=timings, startup_s=startup)


def _pivot(timings: pd.DataFrame, job: str, workers: int) -> pd.DataFrame:
    rows = timings[timings["job"] == job]
    single = rows[rows["engine"] == "pandas"].set_index("rows")["seconds"]
    dask = rows[(rows["engine"] == "dask") & (rows["workers"] == workers)]
    both = pd.DataFrame({"pandas": single, "dask": dask.set_index("rows")["seconds"]})
    if both.isna().any().any() or both.empty:
        raise BatchJobError(
            f"no pandas and dask ({workers} workers) timings of {job!r} at the same "
            "sizes; measure both first (measure_batch_jobs)."
        )
    return both.sort_index()


def crossover_rows(timings: pd.DataFrame, job: str, workers: int = 2) -> int | None:
    """The smallest measured size from which Dask with ``workers`` workers beats
    pandas at every larger measured size; None if it never does."""
    both = _pivot(timings, job, workers)
    wins = (both["dask"] < both["pandas"]).to_numpy()
    if not wins[-1]:
        return None
    losing = np.flatnonzero(~wins)
    first = 0 if len(losing) == 0 else losing[-1] + 1
    return int(both.index[first])


def dask_overhead_s(timings: pd.DataFrame, job: str, workers: int = 1) -> float:
    """Dask's fixed cost: its seconds minus pandas' at the smallest measured size."""
    both = _pivot(timings, job, workers)
    return float(both["dask"].iloc[0] - both["pandas"].iloc[0])
