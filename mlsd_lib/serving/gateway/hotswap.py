"""Swap the models a running gateway serves, without failing a single request.

Introduced in ``notebooks/model_serving.ipynb``. A hot swap is three steps:

1. **Warm up** every deployment the new configuration adds: score a row of
   default features at a few batch sizes through its real model server. A model
   that fails here (did not load, wrong input width, non-finite scores) refuses
   the swap, and the gateway keeps serving what it served before.
2. **Switch**: the gateway's deployments are one Python reference, replaced in
   one assignment. Each request reads it once, when it starts, and uses that
   snapshot to the end (routing, fallback, shadow), so no request ever mixes two
   configurations.
3. **Drain**: wait until the requests that took the old snapshot have finished.
4. **Unload**: only then, the models that were loaded for the old deployments
   (``Deployment.unload_when_retired``) and that no new deployment uses are
   unloaded from their servers. If the drain ran out of time, nothing is
   unloaded: a request still running on the old model must be able to finish.

Requests keep flowing through all three steps: the warm-up runs on the model
threads, and nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.gateway.config import Deployment, Deployments
from mlsd_lib.serving.gateway.scoring import ModelFailed, Scorer

logger = logging.getLogger(__name__)

#: Batch sizes a new deployment is warmed up with: one row, and a full request.
WARMUP_BATCH_SIZES: tuple[int, ...] = (1, 100)


class SwapRefused(MlsdError, RuntimeError):
    """The new deployments failed their warm-up; the old ones still serve."""


@dataclass(frozen=True)
class SwapReport:
    """What a hot swap did, and how long each step took."""

    before: dict[str, str | None]
    after: dict[str, str | None]
    warmed_up: tuple[str, ...]
    warmup_ms: float
    in_flight_at_switch: int
    drain_ms: float
    unloaded: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "warmed_up": list(self.warmed_up),
            "warmup_ms": self.warmup_ms,
            "in_flight_at_switch": self.in_flight_at_switch,
            "drain_ms": self.drain_ms,
            "unloaded": list(self.unloaded),
        }


def versions_by_arm(deployments: Deployments) -> dict[str, str | None]:
    """``{"production": "ctr-v1", "canary": None, ...}`` for logs and responses."""
    return {
        "production": deployments.production.version,
        "canary": None if deployments.canary is None else deployments.canary.version,
        "shadow": None if deployments.shadow is None else deployments.shadow.version,
        "fallback": (
            None if deployments.fallback is None else deployments.fallback.version
        ),
    }


def _identity(deployment: Deployment) -> tuple[object, ...]:
    return (
        id(deployment.server),
        deployment.model_name,
        deployment.input_refs,
        deployment.context,
    )


class DeploymentSwitch:
    """The gateway's current deployments, the requests using each, and swaps."""

    def __init__(self, deployments: Deployments) -> None:
        self.current = deployments
        self._in_flight: dict[int, int] = {}
        self._lock = asyncio.Lock()

    @contextmanager
    def snapshot(self) -> Iterator[Deployments]:
        """The deployments one request uses from start to end, counted in flight."""
        deployments = self.current
        key = id(deployments)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield deployments
        finally:
            left = self._in_flight[key] - 1
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]

    def in_flight(self, deployments: Deployments) -> int:
        """Requests still running on ``deployments``."""
        return self._in_flight.get(id(deployments), 0)

    async def swap(
        self,
        new: Deployments,
        scorer: Scorer,
        *,
        warmup_timeout_s: float,
        drain_timeout_s: float,
    ) -> SwapReport:
        """Warm up, switch, drain; :class:`SwapRefused` leaves the old ones serving.

        Swaps are serialized: a second swap waits for the first to finish.
        """
        async with self._lock:
            old = self.current
            known = {_identity(d) for d in old.all()}
            fresh = [d for d in new.all() if _identity(d) not in known]
            start = time.perf_counter()
            for deployment in fresh:
                await _warm_up(deployment, scorer, warmup_timeout_s)
            warmup_ms = (time.perf_counter() - start) * 1000

            self.current = new  # the switch: one reference, read once per request
            in_flight = self.in_flight(old)
            start = time.perf_counter()
            deadline = start + drain_timeout_s
            while self.in_flight(old) and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            drain_ms = round((time.perf_counter() - start) * 1000, 3)
            unloaded = () if self.in_flight(old) else await _unload_retired(old, new)
            return SwapReport(
                before=versions_by_arm(old),
                after=versions_by_arm(new),
                warmed_up=tuple(d.version for d in fresh),
                warmup_ms=round(warmup_ms, 3),
                in_flight_at_switch=in_flight,
                drain_ms=drain_ms,
                unloaded=unloaded,
            )


async def _warm_up(deployment: Deployment, scorer: Scorer, timeout_s: float) -> None:
    row = scorer.default_input(deployment)
    for rows in WARMUP_BATCH_SIZES:
        batch = np.tile(row, (rows, 1))
        try:
            await scorer.score(deployment, batch, timeout_s=timeout_s)
        except ModelFailed as error:
            raise SwapRefused(
                f"{deployment.version} failed its warm-up with {rows} row(s), so "
                f"the swap was refused and the previous models still serve: {error}"
            ) from error


async def _unload_retired(old: Deployments, new: Deployments) -> tuple[str, ...]:
    """Unload the models loaded for ``old`` that no deployment of ``new`` uses."""
    still_used = {(id(d.server), d.model_name) for d in new.all()}
    unloaded = []
    for deployment in old.all():
        key = (id(deployment.server), deployment.model_name)
        if not deployment.unload_when_retired or key in still_used:
            continue
        still_used.add(key)  # one unload per model, however many arms used it
        unload = getattr(deployment.server, "unload", None)
        if unload is None or not deployment.server.has_model(deployment.model_name):
            continue
        try:
            await asyncio.to_thread(unload, deployment.model_name)
        except Exception as error:  # the swap is done; a failed unload only leaks
            logger.warning("could not unload %s: %s", deployment.version, error)
            continue
        unloaded.append(deployment.version)
    return tuple(unloaded)
