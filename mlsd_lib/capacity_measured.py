"""An estimate tied to a measurement: what one core serves within the budget.

Introduced in ``notebooks/capacity.ipynb``. A capacity plan divides a peak
load by what one replica sustains, and that divisor must be measured, not
guessed. The measurement this module supports: run the service pinned to one
CPU (:func:`pinned_module_command` starts ``python -m MODULE`` with its
affinity set *before* anything is imported, so every thread and child process
it starts, a model server included, inherits the one CPU), offer it a closed
loop at rising concurrency, and keep the highest throughput whose p99 still
meets the latency budget (:func:`rate_within_budget`). Dividing the peak by
that rate (:func:`~mlsd_lib.capacity.fleet_size`) gives cores, hence replicas.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from mlsd_lib.capacity import CapacityInputError
from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.loadgen import LoadResult

__all__ = [
    "ONE_THREAD_ENV",
    "BudgetedRate",
    "NoLevelWithinBudget",
    "off_cpu",
    "pinned_module_command",
    "process_tree",
    "rate_within_budget",
    "spare_cpu",
    "tree_cpus",
]

#: Environment that keeps a pinned process's math libraries to one thread:
#: a pool sized for every core of the machine would only contend on one.
ONE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
}


class NoLevelWithinBudget(MlsdError, RuntimeError):
    """No load level met the latency budget; the message gives the lowest p99."""


def spare_cpu() -> int:
    """The highest-numbered CPU this process may run on (the last of its
    affinity set): pin the service there and leave the others to the client."""
    return max(os.sched_getaffinity(0))


@contextmanager
def off_cpu(cpu: int) -> Iterator[frozenset[int]]:
    """For the block, keep this thread (and the threads it starts, a load
    generator's) off ``cpu``, so the client does not steal the core it measures;
    yields the CPUs it runs on. With no other CPU allowed it stays where it is.
    Linux applies affinity per thread: threads already running are not moved.
    """
    before = os.sched_getaffinity(0)
    others = before - {cpu}
    if others:
        os.sched_setaffinity(0, others)
    try:
        yield frozenset(others or before)
    finally:
        os.sched_setaffinity(0, before)


def pinned_module_command(
    module: str, args: Sequence[str], cpu: int, python: str = sys.executable
) -> list[str]:
    """``python -m module *args``, pinned to ``cpu`` before the module runs.

    ``os.sched_setaffinity(0, {cpu})`` runs first, in the new interpreter's
    only thread, then ``runpy.run_module`` runs the module as ``__main__``;
    threads and processes started afterwards inherit the affinity, which a
    ``sched_setaffinity(pid)`` from outside, applied to the main thread of a
    process already running, would not give them.
    """
    if cpu not in os.sched_getaffinity(0):
        raise CapacityInputError(
            f"cpu {cpu} is not one this process may use "
            f"({sorted(os.sched_getaffinity(0))}); pick one of those."
        )
    if not module.replace(".", "").replace("_", "").isalnum():
        raise CapacityInputError(f"{module!r} is not a module name (a.b.c).")
    code = (
        "import os, runpy, sys; "
        f"os.sched_setaffinity(0, {{{int(cpu)}}}); "
        f"sys.argv = [{module!r}] + sys.argv[1:]; "
        f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
    )
    return [python, "-c", code, *args]


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live process below it, from ``/proc/PID/task/*/children``
    (Linux); a process that exits while being read is left out."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        found.append(current)
        for tid in tasks:
            try:
                with open(f"/proc/{current}/task/{tid}/children") as file:
                    todo.extend(int(child) for child in file.read().split())
            except OSError:
                continue
    return found


def tree_cpus(pid: int) -> frozenset[int]:
    """Every CPU any thread of ``pid`` or its descendants may run on: ``{cpu}``
    when the whole service, model server included, is pinned to one."""
    cpus: set[int] = set()
    for process in process_tree(pid):
        try:
            tasks = os.listdir(f"/proc/{process}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                cpus |= os.sched_getaffinity(int(tid))
            except OSError:
                continue
    return frozenset(cpus)


@dataclass(frozen=True)
class BudgetedRate:
    """The best level within budget, and every level measured."""

    rate_per_s: float
    p99_ms: float
    concurrency: int | None
    budget_ms: float
    levels: tuple[LoadResult, ...]


def rate_within_budget(
    results: Sequence[LoadResult], p99_budget_ms: float
) -> BudgetedRate:
    """The highest throughput among ``results`` whose p99 meets the budget.

    A level counts only if it had no failures (an error is not a fast answer)
    and its p99 is at most ``p99_budget_ms``. Past saturation, more
    concurrency adds queueing, not throughput, so the best level is usually
    the knee of the latency-throughput curve.
    """
    if not p99_budget_ms > 0:
        raise CapacityInputError(f"p99_budget_ms must be > 0, got {p99_budget_ms}.")
    if not results:
        raise CapacityInputError("results is empty: run at least one load level.")
    within = [
        r
        for r in results
        if r.failures == 0 and r.successes > 0 and r.p99_ms <= p99_budget_ms
    ]
    if not within:
        lowest = min(r.p99_ms for r in results)
        raise NoLevelWithinBudget(
            f"no load level met the p99 budget of {p99_budget_ms:g} ms (lowest p99 "
            f"{lowest:.1f} ms, or every level failed): lower the concurrency, or "
            "raise the budget if it was too tight for this machine."
        )
    best = max(within, key=lambda r: r.throughput_rps)
    return BudgetedRate(
        best.throughput_rps,
        best.p99_ms,
        best.concurrency,
        p99_budget_ms,
        tuple(results),
    )
