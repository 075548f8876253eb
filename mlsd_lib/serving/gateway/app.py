"""The gateway's FastAPI app: route, fetch features, score, answer, log.

Introduced in ``notebooks/model_serving.ipynb``. One scoring request walks:

1. **guards**: body size (413), API key (401), pydantic validation (422);
2. **route**: production or canary, by a stable hash of the user id;
3. **features**: one feature-store read in the routed model's column order,
   within ``feature_timeout_s``; Redis down or slow means defaults and
   ``"degraded": true``;
4. **model**: one call within ``model_timeout_s``; a failure means the fallback
   deployment, or 503 with ``Retry-After`` when there is none;
5. **response** with the version that produced the scores and per-stage
   timings; then, off the request path, the impression log line and the shadow
   job.

``/healthz`` says the process is alive; ``/readyz`` says it can do useful work
(Redis answers PING and the production model, or its fallback, scores a row of
default features). ``POST /admin/reload`` hot-swaps the models (see
:mod:`~mlsd_lib.serving.gateway.hotswap`) from the app's ``reload`` source, for
example the model registry's stages. OpenAPI docs are at ``/docs`` and
``/openapi.json``.
"""

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, status
from fastapi.responses import JSONResponse, Response

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.serving.gateway.config import Deployment, Deployments, GatewayConfig
from mlsd_lib.serving.gateway.hotswap import (
    DeploymentSwitch,
    SwapRefused,
    versions_by_arm,
)
from mlsd_lib.serving.gateway.impressions import ImpressionLog
from mlsd_lib.serving.gateway.limits import BodyLimitMiddleware, api_key_checker
from mlsd_lib.serving.gateway.routing import route
from mlsd_lib.serving.gateway.schemas import (
    ErrorResponse,
    ScoreRequest,
    ScoreResponse,
    json_response,
    score_request_model,
)
from mlsd_lib.serving.gateway.scoring import (
    FeatureMatrix,
    MissingContext,
    ModelFailed,
    Scorer,
    elapsed_ms,
)
from mlsd_lib.serving.gateway.shadow import ShadowJob, ShadowScorer
from mlsd_lib.serving.gateway.throttled_log import ThrottledLog

logger = logging.getLogger(__name__)


class GatewayState:
    """The parts of a running gateway; ``app.state.gateway`` in handlers and tests."""

    def __init__(
        self, config: GatewayConfig, store: OnlineStore, deployments: Deployments
    ) -> None:
        self.config = config
        self.switch = DeploymentSwitch(deployments)
        self.scorer = Scorer(
            store,
            config.entities,
            feature_timeout_s=config.feature_timeout_s,
            model_timeout_s=config.model_timeout_s,
            threads=config.worker_threads,
        )
        self.log = ImpressionLog(
            config.impression_log_path, config.impression_queue_size
        )
        self.shadow = ShadowScorer(self.scorer, self.log, config.shadow_queue_size)
        self.counters = {
            "requests": 0,
            "degraded": 0,
            "fallback": 0,
            "unavailable": 0,
            "swaps": 0,
        }

    @property
    def deployments(self) -> Deployments:
        """What new requests are served by (a hot swap replaces it)."""
        return self.switch.current

    def start(self) -> None:
        self.scorer.start()
        self.log.start()
        self.shadow.start()

    def close(self) -> None:
        """Finish shadow jobs, write every queued line, stop the thread pools."""
        self.shadow.close()
        self.log.close()
        self.scorer.close()

    def drain(self) -> None:
        """Wait until every shadow job and log line so far is written (tests use it)."""
        self.shadow.drain()
        self.log.flush()

    def stats(self) -> dict[str, int]:
        return {
            **self.counters,
            "impressions_written": self.log.written,
            "impressions_dropped": self.log.dropped,
            "shadow_scored": self.shadow.scored,
            "shadow_dropped": self.shadow.dropped,
            "shadow_failed": self.shadow.failed,
        }

    async def swap(self, new: Deployments) -> dict[str, Any]:
        """Hot-swap to ``new`` (warm up, switch, drain); SwapRefused keeps the old."""
        new.check_refs(self.scorer.store.registry)
        report = await self.switch.swap(
            new,
            self.scorer,
            warmup_timeout_s=self.config.warmup_timeout_s,
            drain_timeout_s=self.config.drain_timeout_s,
        )
        self.counters["swaps"] += 1
        logger.info("hot swap: %s -> %s", report.before, report.after)
        return report.to_json()


def create_app(
    config: GatewayConfig,
    store: OnlineStore,
    deployments: Deployments,
    *,
    reload: Callable[[], Deployments] | None = None,
) -> FastAPI:
    """A gateway serving ``deployments`` with features from ``store``.

    ``reload``, when given, builds the deployments to serve next (for example
    :meth:`~mlsd_lib.serving.gateway.deploy.RegistryDeployer.deployments`, which
    reads the registry's stages); ``POST /admin/reload`` calls it and hot-swaps.
    The app owns its worker threads (started and stopped with the app's
    lifespan), not the store's Redis client or the model servers: whoever
    created those closes them.
    """
    deployments.check_refs(store.registry)
    state = GatewayState(config, store, deployments)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start()
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="mlsd gateway",
        summary="Scores candidates for a user: features from Redis, scores from "
        "a model server.",
        version="1",
        lifespan=lifespan,
    )
    app.state.gateway = state
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=config.max_body_bytes)
    require_key = api_key_checker(None if config.auth_disabled else config.api_key)
    request_model = score_request_model(config.max_candidates)
    failure_log = ThrottledLog(logger)

    async def features_for(
        deployment: Deployment,
        body: ScoreRequest,
        cache: dict[tuple[str, ...], FeatureMatrix],
    ) -> FeatureMatrix:
        refs = deployment.input_refs
        if refs not in cache:
            cache[refs] = await state.scorer.features(
                refs, body.user_id, body.candidate_ids
            )
        return cache[refs]

    @app.post(
        "/score",
        response_model=ScoreResponse,
        responses={
            401: {"model": ErrorResponse, "description": "missing or wrong API key"},
            413: {"model": ErrorResponse, "description": "body over the size limit"},
            503: {"model": ErrorResponse, "description": "no model could answer"},
        },
        dependencies=[Depends(require_key)],
    )
    async def score(body: request_model) -> Response:  # type: ignore[valid-type]
        """Score every candidate for the user; one score per candidate, in order."""
        return json_response(await answer(body))

    async def answer(body: ScoreRequest) -> dict[str, Any]:
        """The scoring path, for ``/score`` and for routes built on it."""
        with state.switch.snapshot() as deployments:
            return await score_with(deployments, body)

    app.state.answer = answer

    async def score_with(
        deployments: Deployments, body: ScoreRequest
    ) -> dict[str, Any]:
        start = time.perf_counter()
        request_id = uuid.uuid4().hex
        state.counters["requests"] += 1
        arm, deployment = route(deployments, body.user_id, config.canary_salt)
        cache: dict[tuple[str, ...], FeatureMatrix] = {}

        features = await features_for(deployment, body, cache)
        features_ms = elapsed_ms(start)
        model_start = time.perf_counter()
        fallback_fetch_ms = 0.0
        used_fallback = False
        try:
            inputs = state.scorer.model_input(deployment, features.values, body.context)
        except MissingContext as error:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)
            ) from error
        try:
            scores = await state.scorer.score(deployment, inputs)
        except ModelFailed as error:
            fallback = deployments.fallback
            failure_log.warning(deployment.version, str(error))
            if fallback is None:
                state.counters["unavailable"] += 1
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    f"no model could score this request ({error}); retry after "
                    f"{config.retry_after_s} s.",
                    headers={"Retry-After": str(config.retry_after_s)},
                ) from error
            fetch_start = time.perf_counter()
            features = await features_for(fallback, body, cache)
            fallback_fetch_ms = elapsed_ms(fetch_start)
            try:
                scores = await state.scorer.score(
                    fallback,
                    state.scorer.model_input(fallback, features.values, body.context),
                )
            except (ModelFailed, MissingContext) as second:
                state.counters["unavailable"] += 1
                raise HTTPException(
                    status.HTTP_503_SERVICE_UNAVAILABLE,
                    f"the model and its fallback both failed ({error}; {second}); "
                    f"retry after {config.retry_after_s} s.",
                    headers={"Retry-After": str(config.retry_after_s)},
                ) from second
            deployment, used_fallback = fallback, True
            state.counters["fallback"] += 1
        if features.degraded:
            state.counters["degraded"] += 1
        score_list = scores.tolist()
        # Returned as bytes by /score (the fields are ours, of the documented
        # types), so FastAPI does not validate and re-serialize 100 floats through
        # pydantic; ScoreResponse stays the documented response_model.
        response = {
            "request_id": request_id,
            "model_version": deployment.version,
            "route": arm,
            "scores": score_list,
            "degraded": features.degraded,
            "fallback": used_fallback,
            "timings": {
                "features_ms": round(features_ms + fallback_fetch_ms, 3),
                "model_ms": round(elapsed_ms(model_start) - fallback_fetch_ms, 3),
                "total_ms": elapsed_ms(start),
            },
        }
        state.log.append(
            {
                "kind": "served",
                "request_id": request_id,
                "time": time.time(),
                "user_id": body.user_id,
                "candidate_ids": body.candidate_ids,
                "scores": score_list,
                "model_version": deployment.version,
                "route": arm,
                "degraded": features.degraded,
                "fallback": used_fallback,
            }
        )
        if deployments.shadow is not None:
            state.shadow.submit(
                ShadowJob(
                    deployments.shadow,
                    request_id,
                    body.user_id,
                    body.candidate_ids,
                    deployment.input_refs,
                    features,
                    body.context,
                )
            )
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """The process is alive and its event loop answers (plus its counters)."""
        return {
            "status": "ok",
            "deployments": versions_by_arm(state.deployments),
            **state.stats(),
        }

    @app.post(
        "/admin/reload",
        responses={
            401: {"model": ErrorResponse, "description": "missing or wrong API key"},
            404: {"model": ErrorResponse, "description": "no deployment source"},
            409: {"model": ErrorResponse, "description": "swap refused; old serves"},
        },
        dependencies=[Depends(require_key)],
    )
    async def admin_reload() -> dict[str, Any]:
        """Hot-swap to the deployments the reload source names now (e.g. the
        registry's stages): warm up, switch, drain. Requests never fail during it;
        if the new models fail their warm-up the old ones keep serving (409)."""
        if reload is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                "this gateway was started without a reload source; pass "
                "create_app(..., reload=RegistryDeployer(...).deployments).",
            )
        try:
            new = await asyncio.to_thread(reload)
            return await state.swap(new)
        except (SwapRefused, LookupError, ValueError, RuntimeError) as error:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"hot swap refused, still serving {versions_by_arm(state.deployments)}"
                f": {type(error).__name__}: {error}",
            ) from error

    @app.get("/readyz", responses={503: {"description": "a dependency is not ready"}})
    async def readyz() -> JSONResponse:
        """Ready when Redis answers PING and a model (or its fallback) scores."""
        checks = {"redis": "ok", "model": "ok"}
        timeout = config.readiness_timeout_s
        try:
            await state.scorer.ping_store(timeout)
        except Exception as error:
            checks["redis"] = f"{type(error).__name__}: {error}"
        checks["model"] = await _probe_models(state, state.deployments, timeout)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"ready": ready, "checks": checks},
            status_code=status.HTTP_200_OK
            if ready
            else status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    return app


async def _probe_models(
    state: GatewayState, deployments: Deployments, timeout_s: float
) -> str:
    """ "ok" if production (or else the fallback) scores one row of defaults."""
    failures = []
    for deployment in (deployments.production, deployments.fallback):
        if deployment is None:
            continue
        row = state.scorer.default_input(deployment)[None, :]
        try:
            await state.scorer.score(deployment, row, timeout_s=timeout_s)
        except Exception as error:
            failures.append(f"{deployment.version}: {type(error).__name__} {error}")
            continue
        return "ok"
    return "; ".join(failures)
