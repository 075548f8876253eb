"""Fault injection with real processes: kill Redis, kill Triton, swap on Triton.

Triton serves from a model repository here, so killing ``tritonserver`` kills
the model too, as it would in production.

Each test runs the gateway under uvicorn (in this process, real HTTP on
loopback) while client threads keep sending scoring requests, then breaks a
real dependency process with SIGKILL, the way a crash would, and checks what the
clients saw: every request answered, within its time budget, and recovery once
the dependency is back.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import numpy as np
import pytest
import redis
import torch

from mlsd_lib.features.examples import CANDIDATE_REFS, make_ads_example
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.serving.gateway import Deployment, Deployments, GatewayConfig, create_app
from mlsd_lib.serving.gateway.demo import materialize_replayed
from mlsd_lib.serving.gateway.deploy import RegistryDeployer, torch_infer_fn
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.gateway.traffic import BackgroundLoad
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.registry import ModelRegistry, sha256_of
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer

pytestmark = pytest.mark.faults  # a slow tier: see `make test-fast`

KEY = "fault-key"
HEADERS = {"X-API-Key": KEY}
REFS = tuple(CANDIDATE_REFS)
SPECS = (
    (TensorSpec("features", np.float32, (len(REFS),)),),
    (TensorSpec("score", np.float32, (1,)),),
)
FEATURE_TIMEOUT_S = 0.05
MODEL_TIMEOUT_S = 0.3
#: What a request may take beyond its dependency budgets (HTTP, JSON, a busy
#: 2-core machine running the clients, the gateway and the servers at once).
SLACK_S = 1.0


class Linear(torch.nn.Module):
    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("w", torch.linspace(-1.0, 1.0, len(REFS)) * scale)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.log1p(features.clamp(min=0)) @ self.w


@pytest.fixture(scope="module")
def example():
    return make_ads_example(num_users=200, num_ads=30, seed=0)


def materialize(store: OnlineStore, example) -> None:
    materialize_replayed(store, example.tables, example.end)


def config(tmp_path) -> GatewayConfig:
    return GatewayConfig(
        impression_log_path=str(tmp_path / "impressions.jsonl"),
        api_key=KEY,
        feature_timeout_s=FEATURE_TIMEOUT_S,
        model_timeout_s=MODEL_TIMEOUT_S,
    )


def in_process_linear() -> InProcessModelServer:
    server = InProcessModelServer("test")
    server.bind("linear", torch_infer_fn(Linear().eval()), *SPECS, 512)
    return server


def test_redis_killed_under_load_degrades_then_recovers(
    tmp_path, example, private_redis
):
    client = redis.Redis.from_url(
        private_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    store = OnlineStore(client, example.registry)
    materialize(store, example)
    deployments = Deployments(
        production=Deployment("v1", in_process_linear(), "linear", REFS)
    )
    app = create_app(config(tmp_path), store, deployments)
    with GatewayServer(app) as gateway, BackgroundLoad(gateway.url, HEADERS) as load:
        load.wait_for(40)
        killed_at = time.perf_counter()
        private_redis.kill()
        load.wait_for(80)
        restarting_at = time.perf_counter()
        private_redis.start(port=private_redis.port)
        materialize(store, example)  # a restarted cache is refilled by its pipeline
        restored_at = time.perf_counter()
        load.wait_for(80, sent_after=restored_at + 0.2)
        health = httpx.get(f"{gateway.url}/healthz").json()
    client.close()

    before = [o for o in load.outcomes if o.sent_at + o.latency_s < killed_at]
    during = [
        o
        for o in load.outcomes
        if killed_at < o.sent_at and o.sent_at + o.latency_s < restarting_at
    ]
    after = load.since(restored_at + 0.2)
    failures = [o for o in load.outcomes if o.status != 200]
    assert failures == [], failures[:3]
    assert not any(o.body["degraded"] for o in before)
    assert sum(o.body["degraded"] for o in during) >= 0.9 * len(during) >= 50
    assert after and not any(o.body["degraded"] for o in after)
    # While Redis was down nobody waited long for it: the budget held.
    slowest = max(o.latency_s for o in during)
    print(
        f"redis killed: {len(before)} before, {len(during)} during (degraded "
        f"{sum(o.body['degraded'] for o in during)}), {len(after)} after; failures "
        f"{len(failures)}; slowest during the outage {slowest * 1000:.0f} ms"
    )
    assert slowest < FEATURE_TIMEOUT_S + MODEL_TIMEOUT_S + SLACK_S, slowest
    assert health["degraded"] >= len(during) * 0.9


def save_linear(path, scale: float = 1.0):
    torch.jit.save(torch.jit.script(Linear(scale).eval()), str(path))
    return path


@pytest.fixture
def triton(requires_triton, tmp_path):
    """``Linear`` on Triton over a model repository: it runs in Triton's processes."""
    path = save_linear(tmp_path / "linear.pt")
    with TritonRepositoryServer(request_timeout_s=1.0) as server:
        server.load_artifact(
            "linear",
            1,
            path,
            sha256=sha256_of(path),
            format="torchscript",
            inputs=SPECS[0],
            outputs=SPECS[1],
            max_batch_size=512,
        )
        yield server


@pytest.mark.triton
@pytest.mark.parametrize("with_fallback", [True, False], ids=["fallback", "503"])
def test_triton_killed_under_load_falls_back_or_503s_without_hanging(
    tmp_path, example, triton, with_fallback
):
    import fakeredis

    store = OnlineStore(fakeredis.FakeRedis(), example.registry)
    materialize(store, example)
    deployments = Deployments(
        production=Deployment("v1", triton, "linear", REFS),
        fallback=(
            Deployment("v1-inprocess", in_process_linear(), "linear", REFS)
            if with_fallback
            else None
        ),
    )
    app = create_app(config(tmp_path), store, deployments)
    with GatewayServer(app) as gateway, BackgroundLoad(gateway.url, HEADERS) as load:
        load.wait_for(40)
        killed_at = time.perf_counter()
        os.kill(triton.server_pid, signal.SIGKILL)
        time.sleep(1.5)
        load.wait_for(40)

    before = [o for o in load.outcomes if o.sent_at + o.latency_s < killed_at]
    after = load.since(killed_at + 0.5)
    assert all(o.status == 200 and not o.body["fallback"] for o in before)
    assert len(after) >= 20
    assert all(o.error == "" for o in load.outcomes), "every request got an answer"
    if with_fallback:
        not_fallback = [o for o in after if o.status != 200 or not o.body["fallback"]]
        assert not not_fallback, [
            (round(o.sent_at - killed_at, 3), o.latency_s, o.status, o.body)
            for o in not_fallback[:3]
        ]
        assert {o.body["model_version"] for o in after} == {"v1-inprocess"}
    else:
        assert {o.status for o in after} == {503}
    budget = FEATURE_TIMEOUT_S + 2 * MODEL_TIMEOUT_S + SLACK_S
    slowest = max(o.latency_s for o in load.outcomes)
    print(
        f"triton killed ({'fallback' if with_fallback else 'no fallback'}): "
        f"{len(before)} before, {len(after)} after, statuses after "
        f"{sorted({o.status for o in after})}, slowest {slowest * 1000:.0f} ms"
    )
    assert slowest < budget, f"a request took {slowest:.2f} s (budget {budget} s)"


@pytest.mark.triton
def test_hot_swap_on_triton_under_load_fails_no_request(
    tmp_path, example, requires_triton
):
    import fakeredis

    store = OnlineStore(fakeredis.FakeRedis(), example.registry)
    materialize(store, example)
    registry = ModelRegistry(tmp_path / "registry")
    for scale in (1.0, 2.0):
        path = save_linear(tmp_path / f"linear-{scale}.pt", scale)
        registry.register(
            "ctr",
            path,
            input_schema=[(ref, "float32") for ref in REFS],
            training_window=("2026-01-01", "2026-01-28"),
            metrics={},
            format="torchscript",
        )
    registry.promote("ctr", 1, "production")
    with TritonRepositoryServer(request_timeout_s=5.0) as server:
        deployer = RegistryDeployer(registry, "ctr", server)
        app = create_app(
            config(tmp_path), store, deployer.deployments(), reload=deployer.deployments
        )
        with (
            GatewayServer(app) as gateway,
            BackgroundLoad(gateway.url, HEADERS, clients=4) as load,
        ):
            load.wait_for(40)
            registry.promote("ctr", 2, "production")
            answer = httpx.post(
                f"{gateway.url}/admin/reload", headers=HEADERS, timeout=120
            )
            swapped_at = time.perf_counter()
            load.wait_for(40)
        still_loaded = {name: server.has_model(name) for name in ("ctr-v1", "ctr-v2")}
    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["after"]["production"] == "ctr-v2"
    # Drained, then the old version left the model server.
    assert report["unloaded"] == ["ctr-v1"]
    assert still_loaded == {"ctr-v1": False, "ctr-v2": True}
    slowest = max(o.latency_s for o in load.outcomes)
    failures = [o for o in load.outcomes if o.status != 200]
    print(
        f"hot swap on triton: {len(load.outcomes)} requests, {len(failures)} failed, "
        f"slowest {slowest * 1000:.0f} ms, report {report}"
    )
    assert slowest < FEATURE_TIMEOUT_S + MODEL_TIMEOUT_S + SLACK_S, slowest
    assert failures == [], failures[:3]
    assert not any(o.body["fallback"] for o in load.outcomes)
    versions = [o.body["model_version"] for o in load.outcomes]
    assert {"ctr-v1", "ctr-v2"} == set(versions)
    assert {o.body["model_version"] for o in load.since(swapped_at)} == {"ctr-v2"}
