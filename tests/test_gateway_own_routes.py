"""A gateway made for a case study's own routes: no ``/score``, the health routes,
the guards and the impression log still there, and readiness checks a route adds.
"""

from __future__ import annotations

import fakeredis
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.serving.gateway import GatewayConfig, GatewayConfigError, create_app
from mlsd_lib.serving.gateway.state import GatewayDep, NoScoreDeployments


def test_a_gateway_without_score_deployments_serves_health_and_own_routes(tmp_path):
    store = OnlineStore(fakeredis.FakeRedis(), FeatureRegistry([]))
    config = GatewayConfig(impression_log_path=str(tmp_path / "log"), api_key="k")
    app = create_app(config, store, None)
    router = APIRouter()

    @router.get("/mine")
    async def mine(state: GatewayDep) -> dict:
        return {"has_deployments": state.has_deployments}

    app.include_router(router)
    calls = []

    async def failing(timeout_s: float) -> None:
        calls.append(timeout_s)
        raise RuntimeError("the feed's model is down")

    app.state.gateway.readiness_checks["feed"] = failing
    with TestClient(app) as client:
        assert client.get("/mine").json() == {"has_deployments": False}
        assert client.post("/score", json={}).status_code == 404
        assert client.post("/admin/reload").status_code == 404
        assert client.get("/healthz").json()["deployments"] == {}
        ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {
        "redis": "ok",
        "feed": "RuntimeError: the feed's model is down",
    }
    assert calls == [config.readiness_timeout_s]
    with pytest.raises(NoScoreDeployments, match="without /score deployments"):
        app.state.gateway.deployments  # noqa: B018
    with pytest.raises(GatewayConfigError, match="nothing to hot-swap"):
        create_app(config, store, None, reload=lambda: None)
