"""From what one machine measured to how many machines production needs.

Introduced in ``notebooks/scaling_out.ipynb``. The chapter measures three unit
costs on loopback: the Redis CPU one feature read costs, the rows per second one
batch worker processes, and the search cost of an index. The case studies give
the production sizes (bytes to keep, reads and searches per second at peak,
rows per day). Dividing one by the other is the whole method; what makes it an
answer rather than a guess is that every divisor is a measurement or a stated
assumption, and every row of the result carries its formula, as
:mod:`mlsd_lib.capacity_worked` does for the framework chapter.

Three questions, one dataclass of assumptions and one function each:

* :func:`redis_shard_plan`: masters for memory (the store's bytes over what one
  master may hold) and for reads (peak reads x CPU per read over the CPU one
  master may spend: Redis executes commands on one thread, so a master is one
  core); the larger wins, and each master gets its replicas.
* :func:`batch_worker_plan`: workers so a day's rows are processed inside the
  job window, at the measured rows/s per worker discounted by the parallel
  efficiency measured from 1 to 2 workers; and the memory the cluster needs
  when each worker holds its partition.
* :func:`index_shard_plan`: index shards for memory, machines for the search
  CPU at peak, and replicas per shard (every query visits every shard, so QPS
  is served by replicating the shards, not by adding more of them). The total
  search CPU is taken to be the same however the index is cut (each shard scans
  its share of the codes); the coarse quantizer, repeated on every shard, is the
  exception, which is one reason fewer, bigger shards are cheaper.

Why memory is budgeted at half a machine for Redis: a full resynchronisation of
a replica (after a failover) and a snapshot fork the master, and copy-on-write
can touch every page under write load; with allocator fragmentation, keeping
the data set near half the RAM is the usual rule. Why CPU is budgeted at a
utilisation below 1: a shard whose replica was just promoted, a hot key, or a
day's peak above the planned one must not push a single-threaded server into
queueing, where its latency grows without bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlsd_lib.capacity import CapacityInputError, Estimate

__all__ = [
    "BatchJobAssumptions",
    "IndexAssumptions",
    "OnlineStoreAssumptions",
    "batch_worker_plan",
    "index_shard_plan",
    "redis_shard_plan",
]


def _check_positive(obj: object, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(obj, name)
        if not math.isfinite(value) or value <= 0:
            raise CapacityInputError(
                f"{name} must be a number > 0, got {value}; pass a measured or "
                "stated value."
            )


def _check_share(name: str, value: float) -> None:
    if not math.isfinite(value) or not 0 < value <= 1:
        raise CapacityInputError(
            f"{name} must be in (0, 1], got {value}: it is a share of a machine."
        )


def _ceil(x: float) -> int:
    """Ceil that ignores float dust (7.000000001 machines is 7)."""
    return math.ceil(round(x, 9))


@dataclass(frozen=True)
class OnlineStoreAssumptions:
    """A feature store's size and read load (defaults: the ad click case study:
    58 GB of raw user and ad features, 104 k user reads/s at peak)."""

    raw_feature_bytes: float = 58e9
    #: Redis per-key overhead, encoding and allocator slack, as a multiplier.
    store_overhead: float = 2.0
    peak_reads_s: float = 104e3
    #: Redis CPU seconds (user + system) one read costs: measured, not guessed
    #: (:func:`mlsd_lib.cluster_measure.server_cpu_per_call`).
    server_cpu_s_per_read: float = 30e-6
    machine_memory_bytes: float = 32e9
    #: Share of a machine's RAM the data set may fill (forks, fragmentation).
    usable_memory_share: float = 0.5
    #: Share of its one core a master may be busy at peak.
    cpu_utilisation: float = 0.5
    replicas_per_master: int = 1

    def __post_init__(self) -> None:
        _check_positive(
            self,
            (
                "raw_feature_bytes",
                "peak_reads_s",
                "server_cpu_s_per_read",
                "machine_memory_bytes",
            ),
        )
        _check_share("usable_memory_share", self.usable_memory_share)
        _check_share("cpu_utilisation", self.cpu_utilisation)
        if self.store_overhead < 1:
            raise CapacityInputError(
                f"store_overhead must be >= 1 (a multiplier on the raw bytes), got "
                f"{self.store_overhead}."
            )
        if self.replicas_per_master < 0 or int(self.replicas_per_master) != (
            self.replicas_per_master
        ):
            raise CapacityInputError(
                f"replicas_per_master must be a whole number >= 0, got "
                f"{self.replicas_per_master}."
            )


def redis_shard_plan(a: OnlineStoreAssumptions) -> Estimate:
    """Masters for memory and for reads, the masters to run, replicas, nodes."""
    e = Estimate()
    stored = e.add(
        "store memory",
        "raw_feature_bytes × store_overhead",
        a.raw_feature_bytes * a.store_overhead,
        "B",
    )
    per_master = e.add(
        "memory per master",
        "machine_memory_bytes × usable_memory_share",
        a.machine_memory_bytes * a.usable_memory_share,
        "B",
    )
    for_memory = e.add(
        "masters for memory",
        "ceil(store memory / memory per master)",
        _ceil(stored / per_master),
    )
    reads_per_master = e.add(
        "reads/s one master serves",
        "cpu_utilisation / server_cpu_s_per_read",
        a.cpu_utilisation / a.server_cpu_s_per_read,
        "/s",
    )
    for_reads = e.add(
        "masters for reads",
        "ceil(peak_reads_s / reads/s one master serves)",
        _ceil(a.peak_reads_s / reads_per_master),
    )
    masters = e.add(
        "masters",
        "max(masters for memory, masters for reads)",
        max(for_memory, for_reads),
    )
    replicas = e.add(
        "replicas", "masters × replicas_per_master", masters * a.replicas_per_master
    )
    e.add("nodes", "masters + replicas", masters + replicas)
    e.add("memory per master, planned", "store memory / masters", stored / masters, "B")
    e.add(
        "peak reads/s per master, planned",
        "peak_reads_s / masters",
        a.peak_reads_s / masters,
        "/s",
    )
    return e


@dataclass(frozen=True)
class BatchJobAssumptions:
    """A daily batch job (defaults: the ad click point-in-time join over a day's
    3 × 10⁹ impressions, in a 2-hour window)."""

    rows_per_day: float = 3e9
    #: Rows/s one worker processes (measured with one worker).
    rows_per_s_per_worker: float = 1e6
    #: Throughput of n workers / (n × one worker's), measured from 1 to 2.
    parallel_efficiency: float = 0.8
    job_window_s: float = 2 * 3600
    #: Peak memory of one worker per row of its partition (measured).
    bytes_per_row_in_memory: float = 200
    worker_memory_bytes: float = 16e9
    #: Share of a worker's memory its partition may fill (spill, shuffles).
    usable_memory_share: float = 0.5

    def __post_init__(self) -> None:
        _check_positive(
            self,
            (
                "rows_per_day",
                "rows_per_s_per_worker",
                "job_window_s",
                "bytes_per_row_in_memory",
                "worker_memory_bytes",
            ),
        )
        _check_share("parallel_efficiency", self.parallel_efficiency)
        _check_share("usable_memory_share", self.usable_memory_share)


def batch_worker_plan(a: BatchJobAssumptions) -> Estimate:
    """Workers for the window, and the rows one worker holds at a time."""
    e = Estimate()
    rate = e.add(
        "rows/s needed",
        "rows_per_day / job_window_s",
        a.rows_per_day / a.job_window_s,
        "/s",
    )
    effective = e.add(
        "rows/s per worker in a cluster",
        "rows_per_s_per_worker × parallel_efficiency",
        a.rows_per_s_per_worker * a.parallel_efficiency,
        "/s",
    )
    workers = e.add(
        "workers for the window",
        "ceil(rows/s needed / rows/s per worker in a cluster)",
        _ceil(rate / effective),
    )
    e.add(
        "worker-hours per day",
        "rows_per_day / rows/s per worker in a cluster / 3600",
        a.rows_per_day / effective / 3600,
        "h",
    )
    fits = e.add(
        "rows one worker may hold",
        "worker_memory_bytes × usable_memory_share / bytes_per_row_in_memory",
        a.worker_memory_bytes * a.usable_memory_share / a.bytes_per_row_in_memory,
    )
    e.add(
        "partitions (at least)",
        "max(workers for the window, ceil(rows_per_day / rows one worker may hold))",
        max(workers, _ceil(a.rows_per_day / fits)),
    )
    return e


@dataclass(frozen=True)
class IndexAssumptions:
    """An ANN index's size and search load (defaults: visual search: 200 M
    images in an 8 GB IVF-PQ index, re-ranked from a 102 GB float16 store,
    6,940 searches/s at peak)."""

    index_bytes: float = 8e9
    #: The full-precision vectors re-ranking reads (0 when there are none).
    rerank_store_bytes: float = 102e9
    peak_searches_s: float = 6_940
    #: CPU milliseconds one search of the whole index costs on one core: 9.4 ms
    #: is the visual-search chapter's measurement (faiss IVF-PQ unit costs
    #: extrapolated to 200 M images, 65,536 lists, 64 probes).
    cpu_ms_per_search: float = 9.4
    machine_memory_bytes: float = 64e9
    #: Share of a machine's RAM an index shard may fill (OS, the next version's
    #: index built beside it during a swap).
    usable_memory_share: float = 0.4
    cores_per_machine: float = 16
    cpu_utilisation: float = 0.6

    def __post_init__(self) -> None:
        _check_positive(
            self,
            (
                "index_bytes",
                "peak_searches_s",
                "cpu_ms_per_search",
                "machine_memory_bytes",
                "cores_per_machine",
            ),
        )
        if not math.isfinite(self.rerank_store_bytes) or self.rerank_store_bytes < 0:
            raise CapacityInputError(
                f"rerank_store_bytes must be >= 0 (0: no re-ranking store), got "
                f"{self.rerank_store_bytes}."
            )
        _check_share("usable_memory_share", self.usable_memory_share)
        _check_share("cpu_utilisation", self.cpu_utilisation)


def index_shard_plan(a: IndexAssumptions) -> Estimate:
    """Index shards for memory, machines for CPU, replicas per shard, and the
    re-ranking store's shards."""
    e = Estimate()
    per_machine = e.add(
        "memory per machine for the index",
        "machine_memory_bytes × usable_memory_share",
        a.machine_memory_bytes * a.usable_memory_share,
        "B",
    )
    shards = e.add(
        "index shards for memory",
        "ceil(index_bytes / memory per machine for the index)",
        _ceil(a.index_bytes / per_machine),
    )
    cores = e.add(
        "search cores at peak",
        "peak_searches_s × cpu_ms_per_search / 1000 / cpu_utilisation",
        a.peak_searches_s * a.cpu_ms_per_search / 1e3 / a.cpu_utilisation,
    )
    machines = e.add(
        "machines for search CPU",
        "ceil(search cores at peak / cores_per_machine)",
        _ceil(cores / a.cores_per_machine),
    )
    # At least two copies of every shard: one machine lost must not lose a shard.
    replicas = e.add(
        "replicas of each shard",
        "max(2, ceil(machines for search CPU / index shards for memory))",
        max(2, _ceil(machines / shards)),
    )
    e.add(
        "index machines",
        "index shards for memory × replicas of each shard",
        shards * replicas,
    )
    e.add(
        "re-ranking store shards",
        "ceil(rerank_store_bytes / memory per machine for the index)",
        _ceil(a.rerank_store_bytes / per_machine),
    )
    return e
