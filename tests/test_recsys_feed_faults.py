"""Fault drills on the feed over HTTP: what a user sees when Triton or Redis is
killed under load.

Each drill runs the gateway under uvicorn in this process while client
threads keep asking for feeds, then SIGKILL a dependency the way a crash
would: every request must still be answered 200, with the popular-in-region
feed flagged ``degraded`` while the dependency is gone.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass

import httpx
import pytest
import redis
from feed_release import body, other_db, pipeline, shared_release

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.recsys.feed import FeedSettings
from mlsd_lib.recsys.gateway import FeedService, add_feed_routes
from mlsd_lib.recsys.serving import deploy_release
from mlsd_lib.serving.gateway import GatewayConfig, create_app
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer

pytestmark = [pytest.mark.redis, pytest.mark.faults]

KEY = "feed-key"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def release():
    return shared_release()


@pytest.fixture
def triton(requires_triton):
    with TritonRepositoryServer() as server:
        yield server


#: Timeouts well above a busy 2-core machine's hiccups: a killed server is
#: noticed by a refused connection, not by a timeout.
PATIENT = FeedSettings(feature_timeout_s=0.5, model_timeout_s=1.0)


def gateway_app(release, client, models, tmp_path):
    store = OnlineStore(client, FeatureRegistry([]))
    config = GatewayConfig(
        impression_log_path=str(tmp_path / "impressions.jsonl"), api_key=KEY
    )
    service = FeedService(pipeline(release, client, settings=PATIENT), models)
    return add_feed_routes(create_app(config, store, None), service, KEY)


@dataclass
class Outcome:
    sent_at: float
    status: int
    degraded: bool = False
    reason: str = ""


class FeedLoad:
    """``clients`` threads asking for feeds (users in turn) until stopped."""

    def __init__(self, url: str, bodies: list[dict], clients: int = 3) -> None:
        self.url, self.bodies, self.clients = url, bodies, clients
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _worker(self, k: int) -> None:
        with httpx.Client(timeout=5.0, trust_env=False) as http:
            n = k
            while not self._stop.is_set() and len(self.outcomes) < 5_000:
                sent = time.perf_counter()
                try:
                    answer = http.post(
                        f"{self.url}/v1/recs/feed",
                        json=self.bodies[n % len(self.bodies)],
                        headers=HEADERS,
                    )
                    feed = answer.json() if answer.status_code == 200 else {}
                    self.outcomes.append(
                        Outcome(sent, answer.status_code, feed.get("degraded", False),
                                feed.get("degraded_reason") or "")
                    )  # fmt: skip
                except httpx.HTTPError as error:
                    self.outcomes.append(Outcome(sent, 0, reason=str(error)))
                n += self.clients

    def __enter__(self) -> FeedLoad:
        for k in range(self.clients):
            thread = threading.Thread(target=self._worker, args=(k,), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def wait_for(
        self, count: int, timeout_s: float = 30.0, *, sent_after: float | None = None
    ) -> None:
        """``count`` more answers; with ``sent_after``, ``count`` answers to
        requests sent at or after that moment (a fast burst of requests already
        in flight must not satisfy a wait meant for what follows a mark)."""

        def done() -> int:
            if sent_after is None:
                return len(self.outcomes)
            return len(self.since(sent_after))

        deadline = time.perf_counter() + timeout_s
        target = count if sent_after is not None else done() + count
        while done() < target and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert done() >= target, "the load stalled"

    def since(self, moment: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.sent_at >= moment]


@pytest.mark.triton
def test_killing_triton_under_load_degrades_every_feed_and_fails_none(
    release, triton, real_redis_url, tmp_path
):
    client = redis.Redis.from_url(other_db(real_redis_url), socket_timeout=1.0)
    client.flushdb()
    try:
        release.load_histories(client)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            models = deploy_release(
                release.registry, release.release, triton, release.item_features
            )
        app = gateway_app(release, client, models, tmp_path)
        bodies = [body(release, u) for u in range(0, 300, 7)]
        with GatewayServer(app) as gateway, FeedLoad(gateway.url, bodies) as load:
            load.wait_for(10)  # warm: connections open, stubs loaded
            warm_at = time.perf_counter()
            load.wait_for(40)
            before = load.since(warm_at)
            killed_at = time.perf_counter()
            os.kill(triton.server_pid, signal.SIGKILL)
            load.wait_for(60, sent_after=killed_at + 0.05)
            after = load.since(killed_at + 0.05)
    finally:
        client.flushdb()
        client.close()
    assert all(o.status == 200 for o in load.outcomes), {
        o.status for o in load.outcomes
    }
    assert not any(o.degraded for o in before), {o.reason for o in before}
    assert after and all(o.degraded for o in after)
    reasons = {o.reason for o in after}
    assert all("user_tower" in r or "user tower" in r for r in reasons), reasons


def test_killing_redis_under_load_degrades_then_recovers(
    release, tmp_path, private_redis
):
    server = private_redis
    client = redis.Redis.from_url(
        server.url, socket_timeout=0.5, socket_connect_timeout=0.5
    )
    release.load_histories(client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        models = deploy_release(
            release.registry, release.release, InProcessModelServer("test"),
            release.item_features,
        )  # fmt: skip
    app = gateway_app(release, client, models, tmp_path)
    bodies = [body(release, u) for u in range(0, 300, 7)]
    with GatewayServer(app) as gateway, FeedLoad(gateway.url, bodies) as load:
        load.wait_for(30)
        killed_at = time.perf_counter()
        server.kill()
        load.wait_for(40)
        down = load.since(killed_at)
        server.start(port=server.port)
        release.load_histories(client)  # a restarted cache is refilled
        refilled_at = time.perf_counter()
        load.wait_for(40, sent_after=refilled_at + 0.2)
        back = load.since(refilled_at + 0.2)
    assert all(o.status == 200 for o in load.outcomes)
    assert down and all(o.degraded for o in down)
    assert all("Redis" in o.reason or "Connection" in o.reason for o in down)
    assert back and not any(o.degraded for o in back)
