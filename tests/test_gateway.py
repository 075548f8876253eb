"""The gateway: scoring path, guards, fallbacks, canary, shadow, log, real server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import fakeredis
import httpx
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from mlsd_lib.features.examples import CANDIDATE_REFS, make_ads_example
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.net import free_loopback_port
from mlsd_lib.serving.gateway import (
    Deployment,
    Deployments,
    GatewayConfig,
    GatewayConfigError,
    create_app,
    user_bucket,
)
from mlsd_lib.serving.gateway.__main__ import API_KEY_ENV
from mlsd_lib.serving.gateway.demo import materialize_replayed
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.tensors import TensorSpec

KEY = "test-key"
HEADERS = {"X-API-Key": KEY}
REFS = tuple(CANDIDATE_REFS)
WEIGHTS = np.linspace(-1.0, 1.0, len(REFS)).astype(np.float32)


def linear(scale: float):
    def infer(features: np.ndarray) -> dict[str, np.ndarray]:
        return {"score": (features @ WEIGHTS * scale)[:, None].astype(np.float32)}

    return infer


def expected_scores(features: np.ndarray, scale: float) -> np.ndarray:
    return features @ WEIGHTS * scale


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


def make_server(models: dict[str, float]) -> InProcessModelServer:
    server = InProcessModelServer("test")
    for name, scale in models.items():
        server.bind(
            name,
            linear(scale),
            (TensorSpec("features", np.float32, (len(REFS),)),),
            (TensorSpec("score", np.float32, (1,)),),
            max_batch_size=1024,
        )
    return server


@pytest.fixture
def server():
    return make_server({"m1": 1.0, "m2": 2.0, "m3": 3.0})


def make_config(tmp_path: Path, **overrides) -> GatewayConfig:
    settings = {
        "impression_log_path": str(tmp_path / "impressions.jsonl"),
        "api_key": KEY,
        "max_candidates": 100,
        "max_body_bytes": 4096,
        "feature_timeout_s": 1.0,
        "model_timeout_s": 1.0,
        **overrides,
    }
    return GatewayConfig(**settings)


def client_for(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=True)


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_scores_are_the_model_applied_to_the_stores_features(tmp_path, store, server):
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    app = create_app(make_config(tmp_path), store, deployments)
    candidates = [5, 3, 29, 0, 5]
    with client_for(app) as client:
        answer = client.post(
            "/score", json={"user_id": 17, "candidate_ids": candidates}, headers=HEADERS
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    rows = [{"user_id": 17, "ad_id": c} for c in candidates]
    features = store.read(rows, REFS).values
    assert features.any(), "the store should serve real (non-default) features"
    np.testing.assert_allclose(body["scores"], expected_scores(features, 1.0), 1e-5)
    assert body["model_version"] == "v1"
    assert body["degraded"] is False and body["fallback"] is False
    assert set(body["timings"]) == {"features_ms", "model_ms", "total_ms"}
    assert body["timings"]["total_ms"] >= body["timings"]["features_ms"]


@pytest.mark.parametrize(
    ("headers", "message"),
    [({}, "missing X-API-Key"), ({"X-API-Key": "wrong"}, "not hold a valid API key")],
)
def test_requests_without_the_right_key_get_401(
    tmp_path, store, server, headers, message
):
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        answer = client.post(
            "/score", json={"user_id": 1, "candidate_ids": [1]}, headers=headers
        )
    assert answer.status_code == 401
    assert message in answer.json()["detail"]


def test_a_gateway_without_a_key_must_say_auth_is_disabled(tmp_path):
    with pytest.raises(GatewayConfigError, match="auth_disabled=True"):
        GatewayConfig(impression_log_path=str(tmp_path / "x"))


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b'{"user_id": 1, "candidate_ids": [1,', 422, "JSON decode error"),
        (b'{"user_id": "1", "candidate_ids": [1]}', 422, "valid integer"),
        (b'{"user_id": 1, "candidate_ids": []}', 422, "at least 1 item"),
        (b'{"user_id": 1, "candidate_ids": [1], "x": 2}', 422, "Extra inputs"),
        (b'{"user_id": -1, "candidate_ids": [1]}', 422, "greater than or equal"),
        (
            json.dumps({"user_id": 1, "candidate_ids": [2**64]}).encode(),
            422,
            "less than or equal to 9223372036854775807",
        ),
        (
            json.dumps({"user_id": 1, "candidate_ids": list(range(101))}).encode(),
            422,
            "at most 100 items",
        ),
        (b" " * 5000, 413, "at most 4096 bytes"),
    ],
)
def test_invalid_requests_get_4xx_that_say_what_is_wrong(
    tmp_path, store, server, content, status, message
):
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        answer = client.post(
            "/score",
            content=content,
            headers={**HEADERS, "content-type": "application/json"},
        )
    assert answer.status_code == status, answer.text
    assert message in answer.text


def test_a_chunked_body_over_the_limit_is_cut_off_with_413(tmp_path, store, server):
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        answer = client.post(
            "/score",
            content=iter([b" " * 3000, b" " * 3000]),  # no Content-Length
            headers={**HEADERS, "content-type": "application/json"},
        )
    assert answer.status_code == 413


def down_redis_store(example) -> OnlineStore:
    client = redis.Redis(
        port=free_loopback_port(),
        socket_connect_timeout=0.2,
        retry=Retry(NoBackoff(), retries=0),
    )
    return OnlineStore(client, example.registry)


def test_redis_down_means_default_features_and_degraded(tmp_path, example, server):
    store = down_redis_store(example)
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        answer = client.post(
            "/score", json={"user_id": 3, "candidate_ids": [1, 2]}, headers=HEADERS
        )
        ready = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json()["degraded"] is True
    defaults = np.array(
        [example.registry.view(r.split(":")[0]).feature(r.split(":")[1]).default
         for r in REFS],
        dtype=np.float32,
    )  # fmt: skip
    np.testing.assert_allclose(
        answer.json()["scores"], expected_scores(np.tile(defaults, (2, 1)), 1.0)
    )
    assert ready.status_code == 503
    assert ready.json()["checks"]["model"] == "ok"
    assert "ConnectionError" in ready.json()["checks"]["redis"]


def test_readyz_and_healthz_when_everything_is_up(tmp_path, store, server):
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        assert client.get("/healthz").json()["status"] == "ok"
        ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True


def test_model_server_down_uses_the_fallback_and_names_it(tmp_path, store):
    primary = make_server({"m1": 1.0})
    spare = make_server({"m1": 1.0})
    deployments = Deployments(
        production=Deployment("v1", primary, "m1", REFS),
        fallback=Deployment("v1-inprocess", spare, "m1", REFS),
    )
    primary.stop()  # the server no longer hosts the model
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        answer = client.post(
            "/score", json={"user_id": 3, "candidate_ids": [4]}, headers=HEADERS
        )
    assert answer.status_code == 200
    assert answer.json()["model_version"] == "v1-inprocess"
    assert answer.json()["fallback"] is True


def test_model_server_down_without_fallback_is_503_with_retry_after(tmp_path, store):
    primary = make_server({"m1": 1.0})
    deployments = Deployments(production=Deployment("v1", primary, "m1", REFS))
    primary.stop()
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        answer = client.post(
            "/score", json={"user_id": 3, "candidate_ids": [4]}, headers=HEADERS
        )
        ready = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"
    assert "not bound" in answer.json()["detail"]
    assert ready.status_code == 503


def test_a_slow_model_is_abandoned_at_its_budget(tmp_path, store):
    slow = InProcessModelServer("slow")

    def sleepy(features: np.ndarray) -> dict[str, np.ndarray]:
        time.sleep(1.0)
        return linear(1.0)(features)

    spec_in = (TensorSpec("features", np.float32, (len(REFS),)),)
    spec_out = (TensorSpec("score", np.float32, (1,)),)
    slow.bind("m1", sleepy, spec_in, spec_out)
    deployments = Deployments(
        production=Deployment("v1", slow, "m1", REFS),
        fallback=Deployment("v1-inprocess", make_server({"m1": 1.0}), "m1", REFS),
    )
    config = make_config(tmp_path, model_timeout_s=0.1)
    with client_for(create_app(config, store, deployments)) as client:
        start = time.perf_counter()
        answer = client.post(
            "/score", json={"user_id": 3, "candidate_ids": [4]}, headers=HEADERS
        )
        took = time.perf_counter() - start
    assert answer.json()["model_version"] == "v1-inprocess"
    assert took < 0.6


def test_a_slow_feature_store_is_abandoned_for_defaults(tmp_path, store, server):
    class SlowStore(OnlineStore):
        def read(self, *args, **kwargs):
            time.sleep(0.5)
            return super().read(*args, **kwargs)

    slow = SlowStore(store.client, store.registry)
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    config = make_config(tmp_path, feature_timeout_s=0.05)
    with client_for(create_app(config, slow, deployments)) as client:
        start = time.perf_counter()
        answer = client.post(
            "/score", json={"user_id": 3, "candidate_ids": [4]}, headers=HEADERS
        )
        took = time.perf_counter() - start
    assert answer.json()["degraded"] is True
    assert took < 0.4


def test_canary_split_is_stable_per_user_and_close_to_the_fraction(
    tmp_path, store, server
):
    deployments = Deployments(
        production=Deployment("v1", server, "m1", REFS),
        canary=Deployment("v2", server, "m2", REFS),
        canary_fraction=0.2,
    )
    in_canary = [user_bucket(u) < 0.2 for u in range(20_000)]
    assert abs(np.mean(in_canary) - 0.2) < 0.01
    assert user_bucket(123) == user_bucket(123)
    assert user_bucket(123, "other-salt") != user_bucket(123)
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        for user in range(40):
            versions = {
                client.post(
                    "/score",
                    json={"user_id": user, "candidate_ids": [1]},
                    headers=HEADERS,
                ).json()["model_version"]
                for _ in range(2)
            }
            assert versions == ({"v2"} if in_canary[user] else {"v1"})


def test_shadow_is_logged_never_returned(tmp_path, store, server):
    deployments = Deployments(
        production=Deployment("v1", server, "m1", REFS),
        shadow=Deployment("v3-shadow", server, "m3", REFS),
    )
    app = create_app(make_config(tmp_path), store, deployments)
    candidates = [1, 2, 3]
    with client_for(app) as client:
        body = client.post(
            "/score", json={"user_id": 9, "candidate_ids": candidates}, headers=HEADERS
        ).json()
        app.state.gateway.drain()
    assert "v3-shadow" not in json.dumps(body)
    served, shadow = read_log(tmp_path / "impressions.jsonl")
    assert served["kind"] == "served" and shadow["kind"] == "shadow"
    assert shadow["request_id"] == served["request_id"] == body["request_id"]
    assert shadow["model_version"] == "v3-shadow"
    np.testing.assert_allclose(shadow["scores"], np.array(body["scores"]) * 3, 1e-5)


def test_impression_log_has_one_complete_line_per_request(tmp_path, store, server):
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    app = create_app(make_config(tmp_path), store, deployments)
    with client_for(app) as client:
        bodies = [
            client.post(
                "/score",
                json={"user_id": u, "candidate_ids": [u % 30, 7]},
                headers=HEADERS,
            ).json()
            for u in range(25)
        ]
    lines = read_log(tmp_path / "impressions.jsonl")  # closed: everything written
    assert [line["request_id"] for line in lines] == [b["request_id"] for b in bodies]
    for user, (line, body) in enumerate(zip(lines, bodies, strict=True)):
        assert line["user_id"] == user and line["candidate_ids"] == [user % 30, 7]
        assert line["scores"] == body["scores"]
        assert line["model_version"] == "v1" and line["degraded"] is False
        assert isinstance(line["time"], float)


def test_openapi_schema_documents_the_scoring_endpoint(tmp_path, store, server):
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    with client_for(create_app(make_config(tmp_path), store, deployments)) as client:
        schema = client.get("/openapi.json").json()
    assert {"/score", "/healthz", "/readyz"} <= set(schema["paths"])
    request = schema["components"]["schemas"]["ScoreRequest"]
    assert request["properties"]["candidate_ids"]["maxItems"] == 100
    assert "APIKeyHeader" in schema["components"]["securitySchemes"]


def test_non_loopback_hosts_are_refused_without_allow_external():
    from mlsd_lib.serving.gateway.__main__ import main

    assert main(["--host", "0.0.0.0", "--demo"]) == 2


@pytest.mark.triton  # the demo loads its three models into a real Triton
def test_the_real_gateway_serves_over_http_and_stops_on_sigterm(tmp_path):
    log = tmp_path / "impressions.jsonl"
    env = {**os.environ, API_KEY_ENV: KEY}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlsd_lib.serving.gateway", "--demo",
         "--impression-log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    output: list[str] = []
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            output.append(line)
            if line.startswith("gateway: http://"):
                url = line.split()[1]
        assert url is not None, "".join(output)
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=5.0) as client:
            deadline = time.monotonic() + 30
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, client.get("/readyz").text
                time.sleep(0.1)
            answer = client.post(
                "/score",
                json={"user_id": 17, "candidate_ids": list(range(100))},
                headers=HEADERS,
            )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["scores"]) == 100
        assert answer.json()["model_version"] in {"ctr-v1", "ctr-v2"}
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
        output.append(rest)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, "".join(output)
    assert "gateway: stopped" in "".join(output)
    served = [line for line in read_log(log) if line["kind"] == "served"]
    assert [line["request_id"] for line in served] == [answer.json()["request_id"]]


def test_an_app_can_be_served_again_after_shutdown(tmp_path, store, server):
    deployments = Deployments(production=Deployment("v1", server, "m1", REFS))
    app = create_app(make_config(tmp_path), store, deployments)
    for _ in range(2):
        with client_for(app) as client:
            answer = client.post(
                "/score", json={"user_id": 3, "candidate_ids": [1]}, headers=HEADERS
            )
            assert answer.status_code == 200, answer.text
    assert len(read_log(tmp_path / "impressions.jsonl")) == 2
