"""Fuzz the gateway from its own OpenAPI document: no input may cause a 5xx.

schemathesis turns the schema FastAPI publishes into hypothesis strategies, so
the requests follow (and stray from) exactly the contract readers see at /docs.
The app runs in-process on fakeredis and the in-process model server.
"""

from pathlib import Path
from tempfile import mkdtemp

import fakeredis
import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from mlsd_lib.features.examples import CANDIDATE_REFS, make_ads_example
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.serving.gateway.app import create_app
from mlsd_lib.serving.gateway.config import Deployment, Deployments, GatewayConfig
from mlsd_lib.serving.gateway.demo import materialize_replayed
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.tensors import TensorSpec

pytestmark = pytest.mark.fuzz  # a slow tier: see `make test-fast`

KEY = "fuzz-key"
#: The request parts schemathesis fills in that an httpx client takes.
ALLOWED = {"method", "url", "headers", "params", "json", "content"}
REFS = tuple(CANDIDATE_REFS)


def _app():
    example = make_ads_example(num_users=50, num_ads=20, seed=0)
    store = OnlineStore(fakeredis.FakeRedis(), example.registry)
    materialize_replayed(store, example.tables, example.end)
    weights = np.linspace(-1.0, 1.0, len(REFS)).astype(np.float32)
    server = InProcessModelServer("fuzz")
    server.bind(
        "m1",
        lambda features: {"score": (features @ weights)[:, None].astype(np.float32)},
        (TensorSpec("features", np.float32, (len(REFS),)),),
        (TensorSpec("score", np.float32, (1,)),),
        max_batch_size=1024,
    )
    config = GatewayConfig(
        impression_log_path=str(Path(mkdtemp(prefix="mlsd-fuzz-")) / "log.jsonl"),
        api_key=KEY,
        max_candidates=100,
        max_body_bytes=4096,
        feature_timeout_s=1.0,
        model_timeout_s=1.0,
    )
    return create_app(
        config, store, Deployments(production=Deployment("v1", server, "m1", REFS))
    )


APP = _app()
# The schema straight from the app object: loading it over ASGI would run (and
# end) the app's lifespan before the tests start.
schema = schemathesis.openapi.from_dict(APP.openapi())


@pytest.fixture(scope="module")
def client():
    # One client for the whole module: the app's start-up and shut-down (its
    # thread pools, the impression-log writer) run once, as under uvicorn.
    with TestClient(APP) as client:
        yield client


@schema.parametrize()
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_the_gateway_fail(case, client):
    kwargs = case.as_transport_kwargs(headers={"X-API-Key": KEY})
    response = client.request(**{k: v for k, v in kwargs.items() if k in ALLOWED})
    assert response.status_code < 500, (case.method, case.path, response.text)
