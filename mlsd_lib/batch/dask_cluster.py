"""Where the batch jobs run: a private Dask ``LocalCluster``, or a scheduler you name.

Introduced in ``notebooks/scaling_out.ipynb``. :func:`dask_client` is the one
place a batch job gets its ``distributed.Client``, so every job runs the
same code on a laptop and on a real cluster:

* ``DASK_SCHEDULER_ADDRESS`` unset (the default): a ``LocalCluster`` of
  ``workers`` worker *processes* on loopback, each with ``threads_per_worker``
  threads and a ``memory_limit``. Processes, not threads, because the jobs are
  pandas and Python loops that hold the GIL (two threads would take turns on
  one core). The dashboard is off (a notebook on Binder cannot reach it) and
  the scheduler's HTTP endpoint binds a free loopback port (Dask's default,
  8787, would collide with a second cluster and warn). The cluster's logs are
  silenced below ERROR: the book build fails on anything printed to stderr,
  and Dask warns there about things a notebook cannot act on (a worker slow
  to exit on a busy machine is killed after 4 s, with a warning). Spilling to
  disk is off (:data:`NO_SPILLING`). The default limit, 1 GiB a worker, is set
  from measurement (``benchmarks/dask_batch.py``): a worker that has imported
  torch sits near 490 MiB and peaks near 630 MiB while embedding 64 x 64
  images in batches of 256 (one that only ran pandas jobs, near 150 MiB); at
  768 MiB Dask's pause threshold (80 % of the limit) paused such workers and
  a job took four times as long, and a paused worker says so only in a
  warning this silences. The limit is a ceiling, not a reservation: two
  pandas workers on Binder's 2 GB use about 300 MiB.
* ``DASK_SCHEDULER_ADDRESS=tcp://host:8786``: a client to that scheduler (the
  name is Dask's own configuration variable, so ``Client()`` would read it
  too). ``workers`` and the limits then belong to whoever started the
  cluster; an address that does not answer within ``connect_timeout_s`` is a
  :class:`DaskClusterError` naming the address and the variable, never a
  silent fallback to a local cluster.

Dask's nanny sets ``OMP_NUM_THREADS=1`` (and MKL's, OpenBLAS's, glibc's
``MALLOC_TRIM_THRESHOLD_``, ``PYTHONHASHSEED``) in the *calling* process's
``os.environ`` before it spawns each worker, and never takes them back: every
process started afterwards, a Jupyter kernel included, would inherit one
thread for torch and train a different model than the chapter printed.
:func:`dask_client` restores the environment as it found it when its block
ends (the workers keep their settings; they are gone by then).

Dask starts worker processes with ``spawn``: a *script* that calls
:func:`dask_client` must do so under ``if __name__ == "__main__":`` (a notebook
and pytest need nothing).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager

import dask
from distributed import Client, LocalCluster

from mlsd_lib.config import load_settings
from mlsd_lib.errors import MlsdError

__all__ = ["DaskClusterError", "dask_client", "worker_count"]

#: The variable (read by :func:`mlsd_lib.config.load_settings`) naming a scheduler.
SCHEDULER_VARIABLE = "DASK_SCHEDULER_ADDRESS"
#: Worker memory settings of the private cluster: no spilling to disk (a
#: partition is small and needed whole; spilling would only hide a job sized
#: wrong, and warn on stderr about the imported libraries it cannot spill),
#: while pausing at 80 % and restarting at 95 % of the limit stay on.
NO_SPILLING = {
    "distributed.worker.memory.target": False,
    "distributed.worker.memory.spill": False,
}


class DaskClusterError(MlsdError, ConnectionError):
    """The batch cluster cannot be started or reached; the message says why."""


def _check_local(workers: int, threads_per_worker: int) -> None:
    if not isinstance(workers, int) or workers < 1:
        raise DaskClusterError(
            f"workers must be an integer >= 1, got {workers!r}: a LocalCluster "
            "needs at least one worker process to run anything."
        )
    if not isinstance(threads_per_worker, int) or threads_per_worker < 1:
        raise DaskClusterError(
            f"threads_per_worker must be an integer >= 1, got {threads_per_worker!r}."
        )


@contextmanager
def _environment_restored() -> Iterator[None]:
    """Put ``os.environ`` back as it was (Dask's nanny writes into it)."""
    before = dict(os.environ)
    try:
        yield
    finally:
        for name in set(os.environ) - set(before):
            del os.environ[name]
        os.environ.update(before)


@contextmanager
def dask_client(
    workers: int = 2,
    *,
    threads_per_worker: int = 1,
    memory_limit: str = "1GiB",
    connect_timeout_s: float = 5.0,
    environ: Mapping[str, str] | None = None,
) -> Iterator[Client]:
    """A Dask client for the block; the cluster it started is closed after it.

    With ``DASK_SCHEDULER_ADDRESS`` set (in ``environ``, default the process
    environment) the client connects there; otherwise a loopback
    ``LocalCluster`` of ``workers`` processes is started, and stopped (workers
    and scheduler) when the block ends, even on an error; the process
    environment, which Dask's nanny changes, is restored then too.
    """
    _check_local(workers, threads_per_worker)
    address = load_settings(environ).dask_scheduler_address
    with ExitStack() as stack:
        if address is None:
            stack.enter_context(_environment_restored())  # exits last
            stack.enter_context(dask.config.set(NO_SPILLING))
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads_per_worker,
                    processes=True,
                    memory_limit=memory_limit,
                    host="127.0.0.1",
                    dashboard_address=None,
                    scheduler_kwargs={
                        "dashboard": False,
                        "dashboard_address": "127.0.0.1:0",
                    },
                    silence_logs=logging.ERROR,
                )
            )
            client = stack.enter_context(Client(cluster, set_as_default=False))
        else:
            try:
                client = Client(
                    address, timeout=connect_timeout_s, set_as_default=False
                )
            except (OSError, TimeoutError) as error:
                raise DaskClusterError(
                    f"no Dask scheduler answered at {address} within "
                    f"{connect_timeout_s:g} s ({type(error).__name__}); start one "
                    f"there (dask scheduler) or unset {SCHEDULER_VARIABLE} to run "
                    "on a private LocalCluster."
                ) from None
            stack.enter_context(client)
        yield client


def worker_count(client: Client) -> int:
    """How many workers the client's scheduler has now (at least 1 to run jobs)."""
    count = len(client.nthreads())
    if count < 1:
        raise DaskClusterError(
            "the Dask scheduler has no workers; start some (dask worker ADDRESS) "
            "before submitting a batch job."
        )
    return count
