"""POST /v1/ads/score: the ads API on the generic gateway, end to end in process."""

from __future__ import annotations

import fakeredis
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from mlsd_lib.adclick import features as F
from mlsd_lib.adclick.experiment import (
    gateway_ranker,
    sample_requests,
    snapshot_ranker,
)
from mlsd_lib.adclick.gateway import add_ads_routes
from mlsd_lib.adclick.serving import (
    SERVING_INPUTS,
    AdsScoringModel,
    offline_serving_inputs,
)
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.models import DCNv2, train
from mlsd_lib.serving.export import export_model
from mlsd_lib.serving.gateway import GatewayConfig, create_app
from mlsd_lib.serving.gateway.demo import materialize_replayed
from mlsd_lib.serving.gateway.deploy import RegistryDeployer, split_schema
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.registry import ModelRegistry
from mlsd_lib.worlds.ads import DEVICES, AdsWorld, AdsWorldConfig

KEY = "ads-key"
HEADERS = {"X-API-Key": KEY}
BUCKETS = 1024


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ads")
    config = AdsWorldConfig(
        num_users=300, num_ads=60, num_campaigns=30, num_advertisers=10
    )
    world = AdsWorld(config, seed=4)
    log = world.simulate(days=8, impressions_per_day=3_000)
    tables = F.feature_tables(world, log, num_buckets=BUCKETS)
    data = F.training_data(world, log, tables, num_buckets=BUCKETS)
    model = DCNv2(data.dense.shape[1], data.cardinalities, embedding_dim=4)
    train(model, data, epochs=1, progress=False, seed=0)
    served = AdsScoringModel(model.eval()).eval()
    inputs = torch.from_numpy(offline_serving_inputs(log, tables, np.arange(64)))
    artifact = export_model(
        served, inputs[:8], tmp / "ads.pt", sample_inputs=[inputs[:1], inputs]
    ).path
    registry = ModelRegistry(tmp / "registry")
    registry.register(
        "ads",
        artifact,
        input_schema=[(name, "float32") for name in SERVING_INPUTS],
        training_window=("2026-03-02", "2026-03-10"),
        metrics={},
        format="torchscript",
    )
    registry.promote("ads", 1, "production")
    client = fakeredis.FakeRedis()
    store = OnlineStore(client, F.feature_registry())
    # The store holds everything up to the newest event (as of "now").
    end = max(table["event_timestamp"].max() for table in tables.values())
    materialize_replayed(store, tables, end)
    deployer = RegistryDeployer(registry, "ads", InProcessModelServer("test"))
    gateway = GatewayConfig(
        impression_log_path=str(tmp / "impressions.jsonl"), api_key=KEY
    )
    app = add_ads_routes(create_app(gateway, store, deployer.deployments()), KEY)
    return app, store, served, tables, end, world


def test_schema_splits_store_refs_from_request_context():
    refs, context = split_schema(list(SERVING_INPUTS))
    assert refs == F.SERVING_STORE_REFS
    assert context == ("hour", "device", "position")
    with pytest.raises(ValueError, match="interleaves"):
        split_schema(["request:hour", "v:f"])


def test_ads_are_scored_for_slot_zero_and_sorted(system):
    app, store, served, *_ = system
    ads = [5, 17, 3, 42, 8]
    with TestClient(app) as client:
        answer = client.post(
            "/v1/ads/score",
            json={
                "user_id": 12,
                "context": {"hour": 20, "device": "desktop"},
                "ad_ids": ads,
            },
            headers=HEADERS,
        )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == "ads-v1" and body["degraded"] is False
    pctrs = [a["pctr"] for a in body["ads"]]
    assert pctrs == sorted(pctrs, reverse=True)
    assert sorted(a["ad_id"] for a in body["ads"]) == sorted(ads)
    # The same numbers as the model on the store's features plus the context.
    rows = [{"user_id": 12, "ad_id": a} for a in ads]
    values = store.read(rows, F.SERVING_STORE_REFS).values
    context = np.tile([20.0, DEVICES.index("desktop"), 0.0], (len(ads), 1))
    matrix = np.hstack([values, context]).astype(np.float32)
    with torch.inference_mode():
        expected = dict(zip(ads, served(torch.from_numpy(matrix)).numpy(), strict=True))
    for scored in body["ads"]:
        assert scored["pctr"] == pytest.approx(float(expected[scored["ad_id"]]), 1e-5)


def test_bad_ads_requests_say_what_is_wrong(system):
    app, *_ = system
    with TestClient(app) as client:
        repeated = client.post(
            "/v1/ads/score",
            json={"user_id": 1, "context": {"hour": 3, "device": "mobile"},
                  "ad_ids": [1, 1]},
            headers=HEADERS,
        )  # fmt: skip
        bad_device = client.post(
            "/v1/ads/score",
            json={"user_id": 1, "context": {"hour": 3, "device": "toaster"},
                  "ad_ids": [1]},
            headers=HEADERS,
        )  # fmt: skip
        no_context = client.post(
            "/score", json={"user_id": 1, "candidate_ids": [1, 2]}, headers=HEADERS
        )
        no_key = client.post(
            "/v1/ads/score",
            json={"user_id": 1, "context": {"hour": 3, "device": "mobile"},
                  "ad_ids": [1]},
        )  # fmt: skip
    assert repeated.status_code == 422 and "repeats" in repeated.json()["detail"]
    assert bad_device.status_code == 422
    assert no_context.status_code == 422
    assert "needs request context" in no_context.json()["detail"]
    assert no_key.status_code == 401


def test_in_process_snapshot_ranker_equals_the_gateway_over_http(system):
    app, _, served, tables, end, world = system
    requests = sample_requests(world, 30, num_candidates=8, day=8, seed=3)
    args = (requests.user_id, requests.hour, requests.device, requests.candidates)
    offline = snapshot_ranker(served, tables, end)(*args)
    with GatewayServer(app) as gateway:
        rank, versions = gateway_ranker(gateway.url, HEADERS)
        online = rank(*args)
    assert versions == ["ads-v1"] * 30
    np.testing.assert_allclose(online, offline, rtol=1e-5, atol=1e-7)
