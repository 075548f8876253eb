"""``POST /v1/recs/feed`` on the generic gateway: typed request and response, the
impression log, the guards, and a degraded feed instead of a 5xx.

The release of ``feed_release.py`` on the in-process model server, a real
Redis holding the streamed histories.
"""

from __future__ import annotations

import json

import pytest
import redis
from fastapi.testclient import TestClient
from feed_release import body, deployed_in_process, other_db, pipeline, shared_release

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.recsys.feed import FEED_STAGE_BUDGETS_MS
from mlsd_lib.recsys.gateway import FeedService, add_feed_routes
from mlsd_lib.serving.gateway import GatewayConfig, create_app

pytestmark = pytest.mark.redis

KEY = "feed-key"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def release():
    return shared_release()


@pytest.fixture(scope="module")
def client(release, real_redis_url):
    client = redis.Redis.from_url(other_db(real_redis_url, 8), socket_timeout=1.0)
    client.flushdb()
    release.load_histories(client)
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def models(release):
    return deployed_in_process(release)


@pytest.fixture
def app(release, client, models, tmp_path):
    store = OnlineStore(client, FeatureRegistry([]))
    config = GatewayConfig(
        impression_log_path=str(tmp_path / "impressions.jsonl"), api_key=KEY
    )
    gateway = create_app(config, store, None)
    return add_feed_routes(gateway, FeedService(pipeline(release, client), models), KEY)


def test_the_route_answers_a_typed_feed_and_logs_every_item(release, app, tmp_path):
    with TestClient(app) as http:
        assert http.get("/readyz").json() == {
            "ready": True,
            "checks": {"redis": "ok", "feed": "ok"},
        }
        answer = http.post(
            "/v1/recs/feed", json=body(release, 3, page_size=12), headers=HEADERS
        )
        app.state.gateway.drain()
        health = http.get("/healthz").json()
    assert answer.status_code == 200, answer.text
    feed = answer.json()
    assert [i["position"] for i in feed["items"]] == list(range(12))
    assert feed["degraded"] is False and feed["degraded_reason"] is None
    assert feed["versions"]["index"] == feed["versions"]["user_tower"]
    explore = [i for i in feed["items"] if i["source"] == "explore"]
    assert len(explore) == 1 and explore[0]["scores"]["p_play"] is None
    ranked = [i for i in feed["items"] if i["source"] != "explore"]
    for item in ranked:
        scores = item["scores"]
        assert scores["final"] == pytest.approx(scores["p_play"] * scores["e_minutes"])
    assert set(feed["timings"]) == {*FEED_STAGE_BUDGETS_MS, "total"}
    assert health["feed_requests"] == 1 and health["impressions_written"] == 1
    (line,) = [json.loads(x) for x in (tmp_path / "impressions.jsonl").open()]
    assert line["kind"] == "feed" and line["request_id"] == feed["request_id"]
    assert line["items"] == [i["item_id"] for i in feed["items"]]
    assert line["sources"] == [i["source"] for i in feed["items"]]
    assert line["positions"] == list(range(12))
    assert line["p_play"][0] == pytest.approx(feed["items"][0]["scores"]["p_play"])
    assert line["versions"] == feed["versions"]
    assert line["filters"]["n_candidates"] == sum(line["candidates"].values())


def test_bad_feed_requests_say_what_is_wrong(release, app):
    with TestClient(app) as http:
        too_many = http.post(
            "/v1/recs/feed", json=body(release, 3, page_size=51), headers=HEADERS
        )
        wrong_region = http.post(
            "/v1/recs/feed",
            json={"user_id": 3, "context": {"region": 9, "maturity_limit": 0}},
            headers=HEADERS,
        )
        extra = http.post(
            "/v1/recs/feed", json=body(release, 3, candidates=[1]), headers=HEADERS
        )
        no_key = http.post("/v1/recs/feed", json=body(release, 3))
    assert too_many.status_code == 422 and "50" in too_many.text
    assert wrong_region.status_code == 422
    assert "region must be below 4" in wrong_region.json()["detail"]
    assert extra.status_code == 422
    assert no_key.status_code == 401


def test_an_unexpected_error_still_answers_a_degraded_feed(release, app, monkeypatch):
    service: FeedService = app.state.feed

    def bug(*args, **kwargs):
        raise IndexError("a bug in a stage")

    monkeypatch.setattr(service.pipeline, "rerank", bug)
    with TestClient(app) as http:
        answer = http.post("/v1/recs/feed", json=body(release, 3), headers=HEADERS)
    assert answer.status_code == 200
    feed = answer.json()
    assert (
        feed["degraded"] and "IndexError: a bug in a stage" in feed["degraded_reason"]
    )
    assert {i["source"] for i in feed["items"]} == {"popular"}
