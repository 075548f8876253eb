"""The load generator's rotating sender: one body per request, in turn, from many
threads, over real HTTP on loopback.
"""

from __future__ import annotations

import fakeredis
import pytest
from fastapi import APIRouter

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.serving.gateway import GatewayConfig, create_app
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.loadgen import NoBodies, RotatingBodySender, run_closed_loop


def test_the_rotating_sender_posts_each_body_in_turn_from_many_threads(tmp_path):
    store = OnlineStore(fakeredis.FakeRedis(), FeatureRegistry([]))
    config = GatewayConfig(
        impression_log_path=str(tmp_path / "log"), auth_disabled=True
    )
    app = create_app(config, store, None)
    seen: list[int] = []
    router = APIRouter()

    @router.post("/echo")
    async def echo(body: dict) -> dict:
        seen.append(body["user"])
        return body

    app.include_router(router)
    bodies = [{"user": u} for u in range(5)]
    with (
        GatewayServer(app) as gateway,
        RotatingBodySender(f"{gateway.url}/echo", bodies) as send,
    ):
        assert send().json() == {"user": 0}
        result = run_closed_loop(send, 3, max_requests=29, max_seconds=20)
    assert result.failures == 0
    assert sorted(seen) == sorted(list(range(5)) * 6)  # 30 requests, 6 rounds
    with pytest.raises(NoBodies, match="at least one body"):
        RotatingBodySender("http://127.0.0.1:1/x", [])
