"""``/healthz`` and ``/readyz``: is the gateway alive, and can it do useful work.

Introduced in ``notebooks/model_serving.ipynb``. An orchestrator asks two
different questions. ``/healthz`` (liveness): the process is alive and its event
loop answers; it also reports the deployments and the counters. ``/readyz``
(readiness): Redis answers PING and the production model, or its fallback,
scores a row of default features, and every check a route added to
:attr:`~mlsd_lib.serving.gateway.state.GatewayState.readiness_checks` passes,
each within ``readiness_timeout_s``; 503 when not, so a load balancer sends
traffic elsewhere instead of restarting the process.
"""

from typing import Any

from fastapi import APIRouter, status
from fastapi.responses import JSONResponse

from mlsd_lib.serving.gateway.config import Deployments
from mlsd_lib.serving.gateway.hotswap import versions_by_arm
from mlsd_lib.serving.gateway.scoring import Scorer
from mlsd_lib.serving.gateway.state import GatewayDep


def health_router() -> APIRouter:
    """``GET /healthz`` and ``GET /readyz`` (no API key: probes carry none)."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz(state: GatewayDep) -> dict[str, Any]:
        """The process is alive and its event loop answers (plus its counters)."""
        deployments = (
            versions_by_arm(state.deployments) if state.has_deployments else {}
        )
        return {"status": "ok", "deployments": deployments, **state.stats()}

    @router.get(
        "/readyz", responses={503: {"description": "a dependency is not ready"}}
    )
    async def readyz(state: GatewayDep) -> JSONResponse:
        """Ready when Redis answers PING, a model (or its fallback) scores and
        every check the gateway's routes added passes."""
        checks = {"redis": "ok"}
        timeout = state.config.readiness_timeout_s
        try:
            await state.scorer.ping_store(timeout)
        except Exception as error:
            checks["redis"] = f"{type(error).__name__}: {error}"
        if state.has_deployments:
            checks["model"] = await _probe_models(
                state.scorer, state.deployments, timeout
            )
        for name, check in state.readiness_checks.items():
            try:
                await check(timeout)
                checks[name] = "ok"
            except Exception as error:
                checks[name] = f"{type(error).__name__}: {error}"
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"ready": ready, "checks": checks},
            status_code=status.HTTP_200_OK
            if ready
            else status.HTTP_503_SERVICE_UNAVAILABLE,
        )

    return router


async def _probe_models(
    scorer: Scorer, deployments: Deployments, timeout_s: float
) -> str:
    """ "ok" if production (or else the fallback) scores one row of defaults."""
    failures = []
    for deployment in (deployments.production, deployments.fallback):
        if deployment is None:
            continue
        row = scorer.default_input(deployment)[None, :]
        try:
            await scorer.score(deployment, row, timeout_s=timeout_s)
        except Exception as error:
            failures.append(f"{deployment.version}: {type(error).__name__} {error}")
            continue
        return "ok"
    return "; ".join(failures)
