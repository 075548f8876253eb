"""``POST /v1/visual/search`` end to end: real Redis, real Triton, faiss, HTTP.

One release for the module
(:func:`~mlsd_lib.visual.quick_release.build_quick_visual_release` on the
``tiny`` recipe: 4 categories x 4 families x 8 products, an embedder
trained for 40 steps, a few seconds): the tests check that the stages serve
together and answer sensibly, not how good the embedder is. The stock is
streamed through the real stream processor into a Redis database of its own;
the embedder runs in ``tritonserver`` from its model repository; the gateway
runs under uvicorn in this process. The Triton drill kills the module's
Triton, so it runs last. The in-process parts and the client errors are in
``test_visual_serving_parts.py``.
"""

from __future__ import annotations

import json
import os
import signal
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
import redis

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.index import IndexVersionMismatch
from mlsd_lib.models.training import torch_threads
from mlsd_lib.serving.gateway import GatewayConfig, create_app
from mlsd_lib.serving.gateway.budgets import DependencyPools
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.loadgen import RotatingBodySender, run_closed_loop
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer
from mlsd_lib.serving.triton_server import triton_unavailable_reason
from mlsd_lib.visual.catalogue_index import CatalogueIndex
from mlsd_lib.visual.gateway import (
    BODY_LIMIT_ADVICE,
    VisualService,
    add_visual_routes,
    visual_body_limit,
)
from mlsd_lib.visual.pipeline import (
    REGION_STAGE_BUDGETS_MS,
    VISUAL_STAGE_BUDGETS_MS,
    VisualPipeline,
    VisualSettings,
)
from mlsd_lib.visual.quick_release import QuickVisualRelease, build_quick_visual_release
from mlsd_lib.visual.recipes import visual_recipe
from mlsd_lib.visual.release import CATALOGUE_FOLDER, deploy_visual_release
from mlsd_lib.visual.search_load import photo_bodies, region_bodies
from mlsd_lib.visual.search_traffic import SearchTraffic
from mlsd_lib.worlds.images_config import QueryStyle

pytestmark = [pytest.mark.redis, pytest.mark.triton]

KEY = "visual-key"
HEADERS = {"X-API-Key": KEY}
N_PHOTOS = 24
FIRST_REGION_ID = 50_000
#: Timeouts well above a busy 2-core machine's hiccups: a killed server is
#: noticed by a refused connection, not by a timeout.
PATIENT = VisualSettings(redis_timeout_s=0.5, model_timeout_s=1.0, index_timeout_s=1.0)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Rendering and embedding on one thread: on a small shared machine, torch's
    threads waiting for busy cores cost several times the work."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> QuickVisualRelease:
    folder = tmp_path_factory.mktemp("visual-release")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit
        return build_quick_visual_release(folder, visual_recipe("tiny"), num_threads=1)


@dataclass(frozen=True)
class Shots:
    """User photos of test products (never seen in training), each sent from a
    region where its product is in stock, and the same as precomputed regions."""

    products: np.ndarray
    photo: list[dict]
    clean: list[dict]
    region: list[dict]


@pytest.fixture(scope="module")
def shots(release) -> Shots:
    test = release.world.test_products
    stock = release.stock[test]
    sold = test[stock > 0][:N_PHOTOS]
    regions = np.array(
        [int(np.flatnonzero((release.stock[p] >> np.arange(4)) & 1)[0]) for p in sold]
    )
    phone = release.photos(sold, seed=7)
    clean = release.photos(sold, seed=8, style=QueryStyle.clean())
    ids = FIRST_REGION_ID + np.arange(sold.size)
    return Shots(
        products=sold,
        photo=photo_bodies(phone.images.images, phone.boxes, regions),
        clean=photo_bodies(clean.images.images, clean.boxes, regions),
        region=region_bodies(ids, regions),
    )


@pytest.fixture(scope="module")
def client(release, shots, real_redis_url) -> Iterator[redis.Redis]:
    parts = urlsplit(real_redis_url)
    url = f"{parts.scheme}://{parts.netloc}/5"  # the session's other tests use 0
    connection = redis.Redis.from_url(url, socket_timeout=1.0)
    connection.flushdb()
    try:
        assert release.load_stock(connection) > 0
        photos = release.photos(shots.products, seed=7)
        release.store_regions(
            connection, photos, FIRST_REGION_ID + np.arange(len(photos))
        )
        yield connection
    finally:
        connection.flushdb()
        connection.close()


@pytest.fixture(scope="module")
def triton() -> Iterator[TritonRepositoryServer]:
    reason = triton_unavailable_reason()
    if reason is not None:
        pytest.skip(f"tritonserver cannot run here: {reason}")
    with TritonRepositoryServer() as server:
        yield server


@dataclass(frozen=True)
class Gateway:
    url: str
    app: object
    service: VisualService

    def counter(self, name: str) -> int:
        return self.app.state.gateway.counters.get(name, 0)


@pytest.fixture(scope="module")
def gateway(release, client, triton, tmp_path_factory) -> Iterator[Gateway]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        models = deploy_visual_release(release.registry, release.release, triton)
    pipeline = VisualPipeline(
        client, release.availability(client), release.fallback(),
        DependencyPools(("redis", "models", "index"), threads=4),
        snapshot=release.snapshot(), settings=PATIENT,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("visual-gateway")
    config = GatewayConfig(
        impression_log_path=str(folder / "impressions.jsonl"),
        api_key=KEY,
        max_body_bytes=visual_body_limit(PATIENT.limits),
        body_limit_advice=BODY_LIMIT_ADVICE,
    )
    app = create_app(config, OnlineStore(client, FeatureRegistry([])), None)
    service = VisualService(pipeline, models, release.n_regions)
    add_visual_routes(app, service, KEY)
    with GatewayServer(app) as server:
        yield Gateway(server.url, app, service)


def post_all(url: str, bodies: list[dict]) -> list[dict]:
    with httpx.Client(base_url=url, headers=HEADERS, timeout=10, trust_env=False) as h:
        answers = [h.post("/v1/visual/search", json=body) for body in bodies]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [a.json() for a in answers]


def found_within(answers: list[dict], products: np.ndarray, k: int) -> float:
    return float(
        np.mean(
            [
                int(p) in [x["product_id"] for x in a["products"][:k]]
                for a, p in zip(answers, products, strict=True)
            ]
        )
    )


def test_a_photo_of_a_catalogue_product_finds_it(gateway, shots):
    clean = post_all(gateway.url, shots.clean)
    phone = post_all(gateway.url, shots.photo)
    assert not any(a["degraded"] for a in clean + phone)
    # products never seen in training, photographed against a plain backdrop
    # and as a phone would (clutter, light, blur), each cropped to its box
    assert found_within(clean, shots.products, 5) >= 0.8
    assert found_within(phone, shots.products, 20) >= 0.6
    first = phone[0]
    assert first["path"] == "image"
    assert list(first["timings"]) == [*VISUAL_STAGE_BUDGETS_MS, "total"]
    assert first["versions"] == {
        "release": "visual-v1",
        "embedder": "visual_embedder-v1",
        "index": "visual_embedder-v1",
    }
    counts = first["counts"]
    assert counts["ann_images"] == 200
    assert counts["products"] >= counts["after_dedup"] >= counts["after_filters"]
    assert len(first["products"]) == min(20, counts["after_filters"])


def test_only_products_in_stock_in_the_shoppers_region_are_shown(
    gateway, shots, release
):
    for answer, body in zip(
        post_all(gateway.url, shots.photo[:6]), shots.photo[:6], strict=True
    ):
        shown = np.array([p["product_id"] for p in answer["products"]])
        assert release.in_stock(shown, body["region"]).all()


def test_a_precomputed_region_answers_as_its_photo_without_the_embedder(gateway, shots):
    photos = post_all(gateway.url, shots.photo[:8])
    calls = gateway.counter("visual_embedder_calls")
    taps = gateway.counter("visual_region_requests")
    regions = post_all(gateway.url, shots.region[:8])
    assert gateway.counter("visual_embedder_calls") == calls  # no embedder call
    assert gateway.counter("visual_region_requests") == taps + 8
    for region, photo in zip(regions, photos, strict=True):
        assert region["path"] == "region" and not region["degraded"]
        assert list(region["timings"]) == [*REGION_STAGE_BUDGETS_MS, "total"]
        got = [p["product_id"] for p in region["products"]]
        assert got == [p["product_id"] for p in photo["products"]]
        np.testing.assert_allclose(
            [p["score"] for p in region["products"]],
            [p["score"] for p in photo["products"]],
            atol=1e-4,
        )


def test_the_impression_log_keeps_the_region_embedding_not_the_photo(gateway, shots):
    (answer,) = post_all(gateway.url, shots.photo[:1])
    log = gateway.app.state.gateway.log
    log.flush()
    lines = [json.loads(x) for x in Path(log.path).read_text().splitlines()]
    line = next(x for x in lines if x["request_id"] == answer["request_id"])
    assert line["kind"] == "visual_search" and line["box"] == shots.photo[0]["box"]
    assert len(line["embedding"]) == gateway.service.models.catalogue.d
    assert np.linalg.norm(line["embedding"]) == pytest.approx(1.0, abs=1e-4)
    assert "image" not in line and len(json.dumps(line)) < 8_000


def test_errors_over_http_name_the_limit(gateway, shots):
    with httpx.Client(base_url=gateway.url, headers=HEADERS, trust_env=False) as h:
        broken = h.post("/v1/visual/search", json={"region": 0, "image": "aGVsbG8="})
        bad_box = h.post(
            "/v1/visual/search", json={**shots.photo[0], "box": [0, 0, 99, 10]}
        )
        too_big = h.post(
            "/v1/visual/search",
            content=b"x" * (visual_body_limit(PATIENT.limits) + 1),
            headers={"content-type": "application/json"},
        )
    assert broken.status_code == 422 and "Pillow" in broken.json()["detail"]
    assert bad_box.status_code == 422 and "not inside the 64 x 64" in bad_box.text
    assert too_big.status_code == 413 and "Send a smaller photo" in too_big.text


def test_a_mismatched_index_is_refused_on_triton_before_loading(
    release, triton, tmp_path
):
    made = release.release
    index = CatalogueIndex.load(made.index_dir / CATALOGUE_FOLDER)
    index.ann.model_version = "visual_embedder-v9"
    index.save(tmp_path / CATALOGUE_FOLDER)
    for name in ("release.json", "category_centroids.npz"):
        (tmp_path / name).write_bytes((made.index_dir / name).read_bytes())
    loaded = list(triton.model_names)
    with pytest.raises(IndexVersionMismatch, match="'visual_embedder-v9'"):
        deploy_visual_release(
            release.registry, replace(made, index_dir=tmp_path), triton
        )
    assert triton.model_names == loaded


def test_a_burst_from_four_clients_fails_no_request(gateway, shots):
    bodies = [b for pair in zip(shots.photo, shots.region, strict=True) for b in pair]
    degraded = gateway.counter("visual_degraded")
    url = f"{gateway.url}/v1/visual/search"
    with RotatingBodySender(url, bodies, HEADERS, timeout_s=10.0) as send:
        result = run_closed_loop(send, 4, max_requests=160, max_seconds=60)
    assert result.failures == 0, result.errors_sample
    assert result.successes == 160
    assert gateway.counter("visual_degraded") == degraded


@pytest.mark.faults
def test_killing_triton_under_load_degrades_photos_and_fails_nothing(
    gateway, shots, triton
):
    """Runs last: it kills the module's Triton."""
    bodies = [b for pair in zip(shots.photo, shots.region, strict=True) for b in pair]
    with SearchTraffic(gateway.url, HEADERS, bodies, max_seconds=60) as load:
        started = time.perf_counter()
        load.wait_for(30, sent_after=started)
        before = load.since(started)
        killed_at = time.perf_counter()
        os.kill(triton.server_pid, signal.SIGKILL)  # a crash, not a shutdown
        load.wait_for(40, sent_after=killed_at + 0.05)
        after = load.since(killed_at + 0.05)
    assert not load.failures(), {(o.status, o.error) for o in load.failures()}
    assert set(load.labels(before)) == {"visual-v1 photo", "visual-v1 region"}
    photos = [o for o in after if o.body["path"] == "image"]
    taps = [o for o in after if o.body["path"] == "region"]
    assert photos and all(o.body["degraded"] for o in photos)
    assert all("embedder unavailable" in o.body["reason"] for o in photos), {
        o.body["reason"] for o in photos
    }
    # a precomputed region needs no embedder: those searches go on unharmed
    assert taps and not any(o.body["degraded"] for o in taps)
