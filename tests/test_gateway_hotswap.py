"""Hot swap: registry stages -> deployments -> a running gateway, with no failures."""

from __future__ import annotations

import asyncio
import threading
import time

import fakeredis
import httpx
import numpy as np
import pytest
import torch

from mlsd_lib.features.examples import CANDIDATE_REFS, make_ads_example
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.serving.gateway import Deployment, Deployments, GatewayConfig, create_app
from mlsd_lib.serving.gateway.demo import materialize_replayed
from mlsd_lib.serving.gateway.deploy import RegistryDeployer, served_name
from mlsd_lib.serving.gateway.hotswap import SwapRefused
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.gateway.traffic import BackgroundLoad
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.registry import ModelRegistry, RegistryError
from mlsd_lib.serving.tensors import TensorSpec

KEY = "swap-key"
HEADERS = {"X-API-Key": KEY}
REFS = tuple(CANDIDATE_REFS)
WEIGHTS = torch.linspace(-1.0, 1.0, len(REFS))


class Scaled(torch.nn.Module):
    """``scale * features @ w``: each version's scores are tellable apart."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.register_buffer("w", WEIGHTS * scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.w


@pytest.fixture(scope="module")
def example():
    return make_ads_example(num_users=200, num_ads=30, seed=0)


@pytest.fixture
def store(example):
    client = fakeredis.FakeRedis()
    store = OnlineStore(client, example.registry)
    materialize_replayed(store, example.tables, example.end)
    yield store
    client.close()


@pytest.fixture
def registry(tmp_path):
    registry = ModelRegistry(tmp_path / "registry")
    for scale in (1.0, 2.0, 3.0):
        path = tmp_path / f"scaled-{scale}.pt"
        torch.jit.save(torch.jit.script(Scaled(scale)), str(path))
        registry.register(
            "ctr",
            path,
            input_schema=[(ref, "float32") for ref in REFS],
            training_window=("2026-01-01", "2026-01-28"),
            metrics={"scale": scale},
            format="torchscript",
        )
    registry.promote("ctr", 1, "production")
    return registry


def config(tmp_path, **overrides) -> GatewayConfig:
    settings = {
        "impression_log_path": str(tmp_path / "impressions.jsonl"),
        "api_key": KEY,
        "feature_timeout_s": 1.0,
        "model_timeout_s": 1.0,
        **overrides,
    }
    return GatewayConfig(**settings)


def scale_of(version: str) -> float:
    return {"ctr-v1": 1.0, "ctr-v2": 2.0, "ctr-v3": 3.0}[version]


def test_deployer_builds_deployments_from_the_registry_stages(registry):
    server, fallback = InProcessModelServer("test"), InProcessModelServer("fallback")
    deployer = RegistryDeployer(
        registry, "ctr", server, fallback_server=fallback, canary_fraction=0.2
    )
    first = deployer.deployments()
    assert first.production.version == "ctr-v1"
    assert first.production.input_refs == REFS
    assert first.canary is None and first.canary_fraction == 0.0
    assert first.fallback.version == "ctr-v1-inprocess"
    assert first.fallback.server is fallback

    registry.promote("ctr", 2, "canary")
    registry.promote("ctr", 3, "shadow")
    second = deployer.deployments()
    assert (second.canary.version, second.canary_fraction) == ("ctr-v2", 0.2)
    assert second.shadow.version == "ctr-v3"
    assert server.model_names == ["ctr-v1", "ctr-v2", "ctr-v3"]
    rows = np.arange(2 * len(REFS), dtype=np.float32).reshape(2, len(REFS))
    scores = server.infer("ctr-v3", {"features": rows})["score"]
    np.testing.assert_allclose(scores[:, 0], 3.0 * rows @ WEIGHTS.numpy(), rtol=1e-5)
    assert served_name(registry.get("ctr", 2)) == "ctr-v2"

    registry.promote("ctr", 2, "production")  # the canary graduates
    third = deployer.deployments()
    assert third.production.version == "ctr-v2" and third.canary is None
    assert third.shadow.version == "ctr-v3"


def test_deployer_needs_a_production_version(tmp_path, registry):
    empty = ModelRegistry(tmp_path / "empty")
    empty.register(
        "ctr",
        registry.get("ctr", 1).artifact,
        input_schema=[(ref, "float32") for ref in REFS],
        training_window=("2026-01-01", "2026-01-28"),
        metrics={},
        format="torchscript",
    )
    deployer = RegistryDeployer(empty, "ctr", InProcessModelServer("test"))
    with pytest.raises(RegistryError, match="no version of 'ctr' is in production"):
        deployer.deployments()


def test_promote_reload_and_rollback_under_load_fail_no_request(
    tmp_path, store, registry
):
    """The release procedure end to end, over HTTP, while 4 clients keep sending."""
    deployer = RegistryDeployer(
        registry,
        "ctr",
        InProcessModelServer("test"),
        fallback_server=InProcessModelServer("fallback"),
    )
    app = create_app(
        config(tmp_path), store, deployer.deployments(), reload=deployer.deployments
    )
    reports = []
    with GatewayServer(app) as gateway, httpx.Client(timeout=30) as admin:
        with BackgroundLoad(gateway.url, HEADERS, clients=4) as load:
            load.wait_for(50)
            for version, action in ((2, "promote"), (None, "rollback")):
                if action == "promote":
                    registry.promote("ctr", version, "production")
                else:
                    registry.rollback("ctr", "production")
                asked = time.perf_counter()
                answer = admin.post(f"{gateway.url}/admin/reload", headers=HEADERS)
                assert answer.status_code == 200, answer.text
                reports.append((asked, time.perf_counter(), answer.json()))
                load.wait_for(50)
        outcomes = load.outcomes
        health = admin.get(f"{gateway.url}/healthz").json()

    assert len(outcomes) >= 150
    failures = [o for o in outcomes if o.status != 200]
    assert failures == [], failures[:3]
    assert [r["after"]["production"] for _, _, r in reports] == ["ctr-v2", "ctr-v1"]
    assert reports[0][2]["warmed_up"] == ["ctr-v2", "ctr-v2-inprocess"]
    # Rolling back re-warms v1 (it was not serving) but does not reload it.
    assert reports[1][2]["warmed_up"] == ["ctr-v1", "ctr-v1-inprocess"]
    for outcome in outcomes:
        assert outcome.body["degraded"] is False and outcome.body["fallback"] is False
    versions = [o.body["model_version"] for o in outcomes]
    assert {"ctr-v1", "ctr-v2"} <= set(versions)
    # Requests sent after a swap returned are served by the new version.
    (_, promoted_at, _), (rollback_asked, rolled_back_at, _) = reports
    middle = [o for o in outcomes if promoted_at < o.sent_at < rollback_asked]
    after = [o for o in outcomes if o.sent_at > rolled_back_at]
    assert middle and {o.body["model_version"] for o in middle} == {"ctr-v2"}
    assert after and {o.body["model_version"] for o in after} == {"ctr-v1"}
    assert health["deployments"]["production"] == "ctr-v1"
    assert health["swaps"] == 2


def test_scores_match_the_version_that_served_them(tmp_path, store, registry):
    deployer = RegistryDeployer(registry, "ctr", InProcessModelServer("test"))
    registry.promote("ctr", 2, "canary")
    deployer.canary_fraction = 0.5
    app = create_app(config(tmp_path), store, deployer.deployments())
    with GatewayServer(app) as gateway, httpx.Client() as client:
        bodies = [
            client.post(
                f"{gateway.url}/score",
                json={"user_id": user, "candidate_ids": [1, 2, 3]},
                headers=HEADERS,
            ).json()
            for user in range(40)
        ]
    for user, body in enumerate(bodies):
        rows = [{"user_id": user, "ad_id": c} for c in (1, 2, 3)]
        features = store.read(rows, REFS).values
        expected = features @ WEIGHTS.numpy() * scale_of(body["model_version"])
        np.testing.assert_allclose(body["scores"], expected, rtol=1e-4)
    assert {b["model_version"] for b in bodies} == {"ctr-v1", "ctr-v2"}


def broken_server() -> InProcessModelServer:
    server = InProcessModelServer("broken")

    def infer(features: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": np.full((len(features), 1), np.nan, dtype=np.float32)}

    server.bind(
        "nan-model",
        infer,
        (TensorSpec("features", np.float32, (len(REFS),)),),
        (TensorSpec("score", np.float32, (1,)),),
        512,
    )
    return server


def test_a_model_failing_its_warm_up_is_refused_and_the_old_one_keeps_serving(
    tmp_path, store, registry
):
    deployer = RegistryDeployer(registry, "ctr", InProcessModelServer("test"))
    current = deployer.deployments()
    bad = Deployments(
        production=Deployment("nan-v9", broken_server(), "nan-model", REFS)
    )
    app = create_app(config(tmp_path), store, current, reload=lambda: bad)
    with GatewayServer(app) as gateway, httpx.Client(timeout=30) as client:
        answer = client.post(f"{gateway.url}/admin/reload", headers=HEADERS)
        assert answer.status_code == 409
        detail = answer.json()["detail"]
        assert "nan-v9 failed its warm-up" in detail and "ctr-v1" in detail
        body = client.post(
            f"{gateway.url}/score",
            json={"user_id": 1, "candidate_ids": [1, 2]},
            headers=HEADERS,
        ).json()
    assert body["model_version"] == "ctr-v1"
    assert app.state.gateway.stats()["swaps"] == 0


def test_reload_needs_a_source_and_the_api_key(tmp_path, store, registry):
    deployer = RegistryDeployer(registry, "ctr", InProcessModelServer("test"))
    app = create_app(config(tmp_path), store, deployer.deployments())
    with GatewayServer(app) as gateway, httpx.Client() as client:
        assert client.post(f"{gateway.url}/admin/reload").status_code == 401
        answer = client.post(f"{gateway.url}/admin/reload", headers=HEADERS)
    assert answer.status_code == 404
    assert "without a reload source" in answer.json()["detail"]


def test_swap_waits_for_requests_on_the_old_models_to_finish(tmp_path, store):
    """The drain: a swap returns only once the old snapshot's requests are done."""
    release = threading.Event()
    server = InProcessModelServer("slow")

    def slow(features: np.ndarray) -> dict[str, np.ndarray]:
        release.wait(5)
        return {"score": np.zeros((len(features), 1), dtype=np.float32)}

    def fast(features: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": np.ones((len(features), 1), dtype=np.float32)}

    specs = (
        (TensorSpec("features", np.float32, (len(REFS),)),),
        (TensorSpec("score", np.float32, (1,)),),
    )
    server.bind("slow", slow, *specs, 512)
    server.bind("fast", fast, *specs, 512)
    old = Deployments(production=Deployment("slow-v1", server, "slow", REFS))
    new = Deployments(production=Deployment("fast-v2", server, "fast", REFS))
    app = create_app(config(tmp_path, model_timeout_s=5.0), store, old)
    state = app.state.gateway

    async def scenario() -> tuple[dict, dict]:
        import httpx as _httpx

        transport = _httpx.ASGITransport(app=app)
        async with _httpx.AsyncClient(
            transport=transport, base_url="http://gateway"
        ) as client:
            pending = asyncio.create_task(
                client.post(
                    "/score",
                    json={"user_id": 1, "candidate_ids": [1]},
                    headers=HEADERS,
                )
            )
            while state.switch.in_flight(old) == 0:
                await asyncio.sleep(0.001)
            asyncio.get_running_loop().call_later(0.2, release.set)
            report = await state.swap(new)
            answer = await pending
            return report, answer.json()

    state.start()
    try:
        report, body = asyncio.run(scenario())
    finally:
        state.close()
    assert report["in_flight_at_switch"] == 1
    assert report["drain_ms"] >= 150  # it waited for the slow request
    assert body["model_version"] == "slow-v1"  # finished on its own snapshot
    assert state.deployments is new


def test_swap_refused_leaves_state_untouched(tmp_path, store, registry):
    deployer = RegistryDeployer(registry, "ctr", InProcessModelServer("test"))
    current = deployer.deployments()
    app = create_app(config(tmp_path), store, current)
    state = app.state.gateway
    bad = Deployments(
        production=Deployment("nan-v9", broken_server(), "nan-model", REFS)
    )
    state.start()
    try:
        with pytest.raises(SwapRefused, match="nan-v9"):
            asyncio.run(state.swap(bad))
    finally:
        state.close()
    assert state.deployments is current


def test_a_swap_unloads_retired_versions_after_the_drain(tmp_path, store, registry):
    server, fallback = InProcessModelServer("test"), InProcessModelServer("fallback")
    deployer = RegistryDeployer(registry, "ctr", server, fallback_server=fallback)
    registry.promote("ctr", 2, "canary")
    app = create_app(
        config(tmp_path), store, deployer.deployments(), reload=deployer.deployments
    )
    with GatewayServer(app) as gateway, httpx.Client() as client:
        registry.promote("ctr", 2, "production")  # the canary graduates
        report = client.post(
            f"{gateway.url}/admin/reload", headers=HEADERS, timeout=30
        ).json()
        # v1 served production (and the fallback); nobody serves it now.
        assert report["unloaded"] == ["ctr-v1", "ctr-v1-inprocess"]
        assert server.model_names == ["ctr-v2"]
        assert fallback.model_names == ["ctr-v2"]
        registry.rollback("ctr", "production")  # back to v1: loaded again
        report = client.post(
            f"{gateway.url}/admin/reload", headers=HEADERS, timeout=30
        ).json()
        assert report["after"]["production"] == "ctr-v1"
        assert report["unloaded"] == ["ctr-v2-inprocess"]  # v2 still serves canary
        assert server.model_names == ["ctr-v1", "ctr-v2"]
        body = client.post(
            f"{gateway.url}/score",
            json={"user_id": 0, "candidate_ids": [1, 2]},
            headers=HEADERS,
        )
        assert body.status_code == 200


def test_models_the_caller_loaded_are_never_unloaded(tmp_path, store):
    server = InProcessModelServer("test")
    specs = (
        (TensorSpec("features", np.float32, (len(REFS),)),),
        (TensorSpec("score", np.float32, (1,)),),
    )
    for name in ("a", "b"):
        server.bind(name, lambda features: {"score": features[:, :1]}, *specs, 512)
    app = create_app(
        config(tmp_path),
        store,
        Deployments(production=Deployment("a", server, "a", REFS)),
        reload=lambda: Deployments(production=Deployment("b", server, "b", REFS)),
    )
    with GatewayServer(app) as gateway:
        report = httpx.post(f"{gateway.url}/admin/reload", headers=HEADERS).json()
    assert report["unloaded"] == []
    assert server.model_names == ["a", "b"]


def test_any_library_error_from_the_reload_source_is_a_409(tmp_path, store, registry):
    from mlsd_lib.serving.registry import IntegrityError

    deployer = RegistryDeployer(registry, "ctr", InProcessModelServer("test"))

    def tampered() -> Deployments:
        raise IntegrityError("ctr v2: model.pt has another sha256 than recorded")

    app = create_app(config(tmp_path), store, deployer.deployments(), reload=tampered)
    with GatewayServer(app) as gateway:
        answer = httpx.post(f"{gateway.url}/admin/reload", headers=HEADERS)
        health = httpx.get(f"{gateway.url}/healthz").json()
    assert answer.status_code == 409
    assert "IntegrityError: ctr v2" in answer.json()["detail"]
    assert health["deployments"]["production"] == "ctr-v1"
