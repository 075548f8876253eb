"""The two dependency calls of a request, each under its own time budget.

Introduced in ``notebooks/model_serving.ipynb``. The feature store and the model
server are blocking clients, so each call runs on a thread pool of its own and
the request waits for it with :func:`asyncio.wait_for`. When the budget runs
out the request stops waiting and takes its fallback; the thread finishes (or
hits its socket timeout) in the background. Separate pools mean a stuck model
server cannot use up the threads that feature reads need, and the reverse.

- Features: one :meth:`~mlsd_lib.features.online.OnlineStore.read` (one Redis
  round trip) for the deployment's ``input_refs``, in the model's column order.
  If Redis is down or slow, every row gets each view's declared defaults and the
  answer is marked degraded: a ranking from default features beats no ranking.

Model calls run on a pool per model server. A server that says it is
``thread_safe`` (the local Triton keeps one client per calling thread; the
in-process server calls torch) gets ``threads`` workers, so concurrent requests
reach Triton together and its dynamic batcher can merge them. Any other server
gets one thread: a client such as ``tritonclient.http`` (gevent underneath) fails
when one client object is used from two threads ("Cannot switch to a different
thread").

- Model: one ``infer`` call with the whole ``[candidates, features]`` matrix.
  An error, a timeout, a wrong number of scores or a non-finite score all raise
  :class:`ModelFailed`, which the app answers with the fallback model or 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.online import OnlineStore, OnlineStoreUnavailable
from mlsd_lib.features.views import FeatureRef
from mlsd_lib.serving.gateway.config import Deployment, EntityMapping

T = TypeVar("T")


class ModelFailed(MlsdError, RuntimeError):
    """The model server did not produce usable scores; the message says why."""


class MissingContext(MlsdError, ValueError):
    """The request lacks a context value the routed model needs."""


@dataclass(frozen=True)
class FeatureMatrix:
    """The model's input for one request, and whether it is made of defaults."""

    values: np.ndarray
    degraded: bool
    reason: str = ""


class Scorer:
    """Fetch features and call models, each within its configured budget."""

    def __init__(
        self,
        store: OnlineStore,
        entities: EntityMapping,
        *,
        feature_timeout_s: float,
        model_timeout_s: float,
        threads: int,
    ) -> None:
        self.store = store
        self.entities = entities
        self.feature_timeout_s = feature_timeout_s
        self.model_timeout_s = model_timeout_s
        self._feature_pool = ThreadPoolExecutor(threads, "gateway-features")
        self._model_threads: dict[int, ThreadPoolExecutor] = {}
        self._closed = False
        self._threads = threads
        self._defaults: dict[tuple[str, ...], np.ndarray] = {}

    def start(self) -> None:
        """Make fresh pools after a :meth:`close` (an app served twice, say by two
        test clients in turn)."""
        if self._closed:
            self._feature_pool = ThreadPoolExecutor(self._threads, "gateway-features")
            self._model_threads = {}
            self._closed = False

    def close(self) -> None:
        """Stop the pools without waiting for calls that are stuck."""
        self._closed = True
        self._feature_pool.shutdown(wait=False, cancel_futures=True)
        for pool in self._model_threads.values():
            pool.shutdown(wait=False, cancel_futures=True)

    # -- features ------------------------------------------------------------------
    def entity_rows(
        self, user_id: int, candidate_ids: list[int]
    ) -> list[dict[str, int]]:
        """One entity row per candidate, keyed by the views' entity columns."""
        user, candidate = self.entities.user_column, self.entities.candidate_column
        return [{user: user_id, candidate: c} for c in candidate_ids]

    def default_row(self, refs: tuple[str, ...]) -> np.ndarray:
        """Each ref's declared default, in ``refs`` order (float32 ``[len(refs)]``)."""
        row = self._defaults.get(refs)
        if row is None:
            resolved = self.store.registry.resolve([FeatureRef.parse(r) for r in refs])
            row = np.array(
                [view.defaults[position] for view, position in resolved],
                dtype=np.float32,
            )
            self._defaults[refs] = row
        return row

    def default_input(self, deployment: Deployment) -> np.ndarray:
        """One row of the model's input from defaults (context values 0): for
        warm-ups and readiness probes."""
        row = self.default_row(deployment.input_refs)
        if deployment.context:
            row = np.concatenate([row, np.zeros(len(deployment.context), np.float32)])
        return row

    @staticmethod
    def model_input(
        deployment: Deployment, values: np.ndarray, context: dict[str, float]
    ) -> np.ndarray:
        """The store's columns, then the deployment's context columns from the
        request (the same for every candidate)."""
        if not deployment.context:
            return values
        absent = [name for name in deployment.context if name not in context]
        if absent:
            example = ", ".join(f'"{name}": 0' for name in absent)
            raise MissingContext(
                f"model {deployment.version} needs request context {absent}: send "
                f"them in the body's 'context', e.g. {{{example}}}."
            )
        row = np.array([context[name] for name in deployment.context], np.float32)
        return np.hstack([values, np.broadcast_to(row, (len(values), len(row)))])

    def read_features(
        self, refs: tuple[str, ...], user_id: int, candidate_ids: list[int]
    ) -> FeatureMatrix:
        """The blocking read with the Redis-down fallback (no time budget)."""
        try:
            found = self.store.read(self.entity_rows(user_id, candidate_ids), refs)
        except OnlineStoreUnavailable as error:
            return self._defaults_for(refs, len(candidate_ids), str(error))
        return FeatureMatrix(found.values, degraded=False)

    async def features(
        self, refs: tuple[str, ...], user_id: int, candidate_ids: list[int]
    ) -> FeatureMatrix:
        """:meth:`read_features` within ``feature_timeout_s``; defaults after it."""
        try:
            return await self._within(
                self._feature_pool,
                self.feature_timeout_s,
                lambda: self.read_features(refs, user_id, candidate_ids),
            )
        except TimeoutError:
            return self._defaults_for(
                refs,
                len(candidate_ids),
                f"the feature store did not answer within "
                f"{self.feature_timeout_s * 1000:.0f} ms",
            )

    def _defaults_for(
        self, refs: tuple[str, ...], rows: int, reason: str
    ) -> FeatureMatrix:
        values = np.tile(self.default_row(refs), (rows, 1))
        return FeatureMatrix(values, degraded=True, reason=reason)

    async def ping_store(self, timeout_s: float) -> None:
        """Raise unless Redis answers PING within ``timeout_s``."""
        await self._within(self._feature_pool, timeout_s, self.store.client.ping)

    # -- models --------------------------------------------------------------------
    @staticmethod
    def infer(deployment: Deployment, values: np.ndarray) -> np.ndarray:
        """One blocking model call; scores as float32 ``[rows]``, or ModelFailed."""
        try:
            outputs = deployment.server.infer(
                deployment.model_name, {deployment.input_name: values}
            )
            scores = np.asarray(outputs[deployment.output_name], dtype=np.float32)
        except Exception as error:
            raise ModelFailed(
                f"model {deployment.model_name!r} ({deployment.version}) on the "
                f"{deployment.server.kind} server failed: "
                f"{type(error).__name__}: {error}"
            ) from error
        if scores.size != len(values):
            raise ModelFailed(
                f"model {deployment.model_name!r} returned {scores.size} scores for "
                f"{len(values)} candidates."
            )
        scores = scores.reshape(-1)
        if not np.all(np.isfinite(scores)):
            raise ModelFailed(
                f"model {deployment.model_name!r} returned non-finite scores."
            )
        return scores

    async def score(
        self,
        deployment: Deployment,
        values: np.ndarray,
        *,
        timeout_s: float | None = None,
    ) -> np.ndarray:
        """:meth:`infer` within ``timeout_s`` (default ``model_timeout_s``);
        ModelFailed after it."""
        budget = self.model_timeout_s if timeout_s is None else timeout_s
        try:
            return await self._within(
                self._model_thread(deployment),
                budget,
                lambda: self.infer(deployment, values),
            )
        except TimeoutError:
            raise ModelFailed(
                f"model {deployment.model_name!r} ({deployment.version}) did not "
                f"answer within {budget * 1000:.0f} ms."
            ) from None

    def score_blocking(self, deployment: Deployment, values: np.ndarray) -> np.ndarray:
        """:meth:`score` for a worker thread (the shadow): same thread, same budget."""
        future = self._model_thread(deployment).submit(self.infer, deployment, values)
        try:
            return future.result(timeout=self.model_timeout_s)
        except TimeoutError:
            raise ModelFailed(
                f"model {deployment.model_name!r} ({deployment.version}) did not "
                f"answer within {self.model_timeout_s * 1000:.0f} ms."
            ) from None

    def _model_thread(self, deployment: Deployment) -> ThreadPoolExecutor:
        key = id(deployment.server)
        pool = self._model_threads.get(key)
        if pool is None:
            workers = (
                self._threads if getattr(deployment.server, "thread_safe", False) else 1
            )
            pool = self._model_threads.setdefault(
                key,
                ThreadPoolExecutor(workers, f"gateway-model-{deployment.server.kind}"),
            )
        return pool

    @staticmethod
    async def _within(
        pool: ThreadPoolExecutor, timeout_s: float, call: Callable[[], T]
    ) -> T:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(loop.run_in_executor(pool, call), timeout_s)


def elapsed_ms(start: float) -> float:
    """Milliseconds since ``start`` (a :func:`time.perf_counter` value)."""
    return round((time.perf_counter() - start) * 1000, 3)
