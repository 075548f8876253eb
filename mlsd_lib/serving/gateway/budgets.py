"""A request of several stages: each timed against its p99 budget, each dependency
call bounded by a timeout.

Introduced in ``casestudies/recommender/index.md`` (panel B, "One feed request",
whose right-hand column splits the 200 ms p99 into stage budgets). The ``/score``
path has two dependency calls and two timeouts
(:mod:`~mlsd_lib.serving.gateway.scoring`); a feed request has five stages, and
an engineer tuning it asks "which stage ate the budget?" for every request, not
only for the slow ones. Two separate notions, kept apart on purpose:

* a **budget** is a p99 target for one stage (10 ms for the feature read, 50 ms
  for the ranker, ...). :class:`StageClock` times each stage of one request and
  says which ran over; one request over budget is not an error (1% of requests
  may be), so it is reported, and the load test compares the stages' p99 with
  the budgets;
* a **timeout** is the hard limit after which the request stops waiting for a
  dependency and takes its fallback. :class:`DependencyPools` runs each blocking
  client call on a thread pool of its own dependency and waits at most the
  timeout (:class:`StageTimeout` after it): separate pools mean a stuck model
  server cannot take the threads the feature reads need, as in
  :mod:`~mlsd_lib.serving.gateway.scoring`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

from mlsd_lib.errors import MlsdError

T = TypeVar("T")

__all__ = ["BudgetError", "DependencyPools", "StageClock", "StageTimeout"]


class BudgetError(MlsdError, ValueError):
    """A stage budget, stage name or pool that cannot be used; says which."""


class StageTimeout(MlsdError, TimeoutError):
    """A dependency did not answer within its timeout; the request moves on."""


def checked_budgets(budgets_ms: Mapping[str, float]) -> dict[str, float]:
    """``budgets_ms`` as a dict, refused unless every budget is a positive number."""
    bad = {
        name: ms
        for name, ms in budgets_ms.items()
        if isinstance(ms, bool) or not isinstance(ms, int | float) or not ms > 0
    }
    if bad:
        raise BudgetError(
            f"stage budgets must be positive milliseconds, got {bad}; give each "
            "stage its p99 target, e.g. {'features': 10.0}."
        )
    return dict(budgets_ms)


class StageClock:
    """The stages of one request, each timed, against their p99 ``budgets_ms``.

    Usage::

        clock = StageClock({"features": 10.0, "ranker": 50.0})
        with clock.stage("features"):
            ...
        clock.timings_ms()   # {"features": 0.41, "ranker": 0.0, "total": 0.5}
        clock.over_budget()  # ()

    A stage timed twice adds up (a retry counts against its stage). A stage
    without a budget may be timed too; it is reported but never over budget.
    ``stages``: stages without a budget reported even when they did not run
    (0), after the budgeted ones. ``total`` is the time since the clock was
    made, stages or not.
    """

    def __init__(
        self, budgets_ms: Mapping[str, float], stages: Sequence[str] = ()
    ) -> None:
        self.budgets_ms = checked_budgets(budgets_ms)
        self._start = time.perf_counter()
        self._spent: dict[str, float] = {
            name: 0.0 for name in stages if name not in self.budgets_ms
        }

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as (part of) stage ``name``, also when it raises."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - start) * 1000.0)

    def add(self, name: str, ms: float) -> None:
        """Count ``ms`` milliseconds against stage ``name``."""
        if not name or name == "total":
            raise BudgetError(
                f"stage name {name!r} is not allowed: 'total' is the whole request."
            )
        self._spent[name] = self._spent.get(name, 0.0) + ms

    def total_ms(self) -> float:
        """Milliseconds since the clock was made."""
        return (time.perf_counter() - self._start) * 1000.0

    def timings_ms(self, digits: int | None = 3) -> dict[str, float]:
        """Every budgeted stage (0 if it did not run), then any other timed
        stage, then ``total``; rounded to ``digits`` (None: not rounded)."""
        extra = [name for name in self._spent if name not in self.budgets_ms]
        names = [*self.budgets_ms, *extra]
        timings = {name: self._spent.get(name, 0.0) for name in names}
        timings["total"] = self.total_ms()
        if digits is None:
            return timings
        return {name: round(ms, digits) for name, ms in timings.items()}

    def over_budget(self) -> tuple[str, ...]:
        """The stages that took longer than their budget in this request."""
        return tuple(
            name
            for name, budget in self.budgets_ms.items()
            if self._spent.get(name, 0.0) > budget
        )


class DependencyPools:
    """One thread pool per dependency; each call waits at most its timeout.

    ``names`` are the dependencies (``"redis"``, ``"models"``); each gets
    ``threads`` workers. :meth:`call` runs a blocking client call on its
    dependency's pool and raises :class:`StageTimeout` when the timeout runs
    out; the thread finishes (or hits its socket timeout) in the background,
    so a client must have a socket timeout of its own.
    """

    def __init__(self, names: Sequence[str], threads: int = 8) -> None:
        if not names or threads < 1:
            raise BudgetError(
                f"DependencyPools needs at least one name and threads >= 1, got "
                f"names={list(names)}, threads={threads}."
            )
        self.names = tuple(names)
        self.threads = threads
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self.start()

    def start(self) -> None:
        """Make the pools (again, after :meth:`close`)."""
        for name in self.names:
            if name not in self._pools:
                self._pools[name] = ThreadPoolExecutor(self.threads, f"dep-{name}")

    def close(self) -> None:
        """Stop the pools without waiting for calls that are stuck."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.shutdown(wait=False, cancel_futures=True)

    async def call(
        self, dependency: str, timeout_s: float, fn: Callable[[], T], what: str
    ) -> T:
        """``fn()`` on ``dependency``'s pool; :class:`StageTimeout` after
        ``timeout_s`` (the message names ``what`` did not answer)."""
        pool = self._pools.get(dependency)
        if pool is None:
            raise BudgetError(
                f"no pool for dependency {dependency!r} (pools: {list(self.names)}); "
                "name it when making DependencyPools, and start() after close()."
            )
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(pool, fn), timeout_s)
        except TimeoutError:
            raise StageTimeout(
                f"{what} did not answer within {timeout_s * 1000:.0f} ms."
            ) from None
