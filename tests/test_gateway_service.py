"""A route family's service on the generic gateway (serving.gateway.service)."""

from __future__ import annotations

import logging

import fakeredis
import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.serving.gateway.app import create_app
from mlsd_lib.serving.gateway.config import GatewayConfig
from mlsd_lib.serving.gateway.schemas import floats_or_none
from mlsd_lib.serving.gateway.service import PipelineService, add_service


class Pools:
    def __init__(self) -> None:
        self.events: list[str] = []

    def start(self) -> None:
        self.events.append("start")

    def close(self) -> None:
        self.events.append("close")


class Pipeline:
    def __init__(self) -> None:
        self.pools = Pools()


class EchoService(PipelineService):
    def __init__(self, models: str, healthy: bool = True) -> None:
        super().__init__(Pipeline(), models, logging.getLogger(__name__))
        self.healthy = healthy

    def check_models(self, models: str) -> None:
        if not models.startswith("v"):
            raise ValueError(f"not a release: {models}")

    async def ready(self, timeout_s: float) -> None:
        if not self.healthy:
            raise RuntimeError("echo is down")


def app_with(service: EchoService, tmp_path):
    router = APIRouter()

    @router.get("/echo")
    async def echo() -> dict:
        return {"models": service.models}

    config = GatewayConfig(
        impression_log_path=str(tmp_path / "log.jsonl"), auth_disabled=True
    )
    store = OnlineStore(fakeredis.FakeRedis(), FeatureRegistry([]))
    return add_service(create_app(config, store, None), "echo", service, router)


def test_the_service_runs_with_the_app_and_answers_readyz(tmp_path):
    service = EchoService("v1")
    app = app_with(service, tmp_path)
    assert app.state.echo is service
    assert service.pipeline.pools.events == []
    with TestClient(app) as http:
        assert service.pipeline.pools.events == ["start"]
        assert http.get("/echo").json() == {"models": "v1"}
        assert http.get("/readyz").json()["checks"]["echo"] == "ok"
        service.healthy = False
        assert http.get("/readyz").status_code == 503
    assert service.pipeline.pools.events == ["start", "close"]


def test_swap_replaces_the_models_after_the_check():
    service = EchoService("v1")
    assert service.swap("v2") == "v1" and service.models == "v2"
    with pytest.raises(ValueError, match="not a release: x"):
        service.swap("x")
    assert service.models == "v2"


def test_floats_or_none_writes_nan_as_null():
    assert floats_or_none(np.array([0.5, np.nan, 2.0])) == [0.5, None, 2.0]
