"""The feed as a process of its own: the bundle it loads, its refusals, and
``python -m mlsd_lib.recsys.feed_server`` answering over HTTP with its own Triton.
"""

from __future__ import annotations

import os
import sys

import httpx
import numpy as np
import pytest
import redis
from feed_release import active_users, body, other_db, shared_release

from mlsd_lib.recsys import feed_server
from mlsd_lib.recsys.feed_bundle import BundleError, load_bundle
from mlsd_lib.recsys.feed_catalogue import FeedCatalogue
from mlsd_lib.serving.gateway.process import GatewayProcess
from mlsd_lib.serving.loadgen import wait_until_ready


@pytest.fixture(scope="module")
def release():
    return shared_release()


def test_a_bundle_round_trips_what_the_server_needs(release, tmp_path):
    bundle = load_bundle(release.save_bundle(tmp_path / "bundle"))
    tables = release.tables
    assert (bundle.tables.day, bundle.tables.n_maturity) == (
        tables.day,
        tables.n_maturity,
    )
    for got, expected in zip(bundle.tables.popular, tables.popular, strict=True):
        np.testing.assert_array_equal(got, expected)
    for got, expected in zip(bundle.tables.pools, tables.pools, strict=True):
        np.testing.assert_array_equal(got.items, expected.items)
        np.testing.assert_array_equal(got.engaged, expected.engaged)
    np.testing.assert_array_equal(bundle.tables.trending[1], tables.trending[1])
    assert (bundle.fold.name, bundle.fold.stream) == (
        release.fold.name,
        release.fold.stream,
    )
    assert bundle.fold.n_categories == release.fold.n_categories
    assert bundle.clock()() == release.now and bundle.world_epoch == release.epoch
    embeddings = np.zeros((len(release.item_features), 4), np.float32)
    loaded = FeedCatalogue.from_item_features(bundle.item_features, embeddings)
    original = FeedCatalogue.from_item_features(release.item_features, embeddings)
    np.testing.assert_array_equal(loaded.items.kind, original.items.kind)
    np.testing.assert_array_equal(loaded.regions, original.regions)
    assert bundle.registry.root == release.registry.root.resolve()


def test_a_folder_without_a_bundle_says_what_is_missing(tmp_path):
    with pytest.raises(BundleError, match=r"lacks \['bundle.json'"):
        load_bundle(tmp_path)


def test_the_server_refuses_to_listen_off_loopback_or_without_redis(
    tmp_path, monkeypatch, capsys
):
    assert feed_server.main([str(tmp_path), "--host", "0.0.0.0"]) == 2
    assert "loopback only" in capsys.readouterr().err
    monkeypatch.delenv("REDIS_URL", raising=False)
    assert feed_server.main([str(tmp_path)]) == 2
    assert "REDIS_URL is not set" in capsys.readouterr().err


@pytest.mark.triton
@pytest.mark.redis
def test_the_feed_server_process_serves_the_bundle_over_http(
    release, requires_triton, real_redis_url, tmp_path
):
    url = other_db(real_redis_url, 10)
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        release.load_histories(client)
        bundle = release.save_bundle(tmp_path / "bundle")
        env = {**os.environ, "REDIS_URL": url, "MLSD_GATEWAY_API_KEY": "k"}
        command = [sys.executable, "-m", "mlsd_lib.recsys.feed_server", str(bundle)]
        with GatewayProcess(command, env) as gateway:
            wait_until_ready(gateway.url, "/readyz", timeout_s=60.0)
            with httpx.Client(timeout=10.0, trust_env=False) as http:
                answer = http.post(
                    f"{gateway.url}/v1/recs/feed",
                    json=body(release, active_users(release, 1)[0]),
                    headers={"X-API-Key": "k"},
                )
        output = gateway.output
    finally:
        client.flushdb()
        client.close()
    assert answer.status_code == 200, answer.text
    feed = answer.json()
    assert not feed["degraded"], feed["degraded_reason"]
    assert len(feed["items"]) == 20
    assert "serving recs-v1" in output and "tritonserver" in output
    assert output.rstrip().endswith("gateway: stopped")
    assert (bundle / "impressions.jsonl").stat().st_size > 0
