"""The parts of visual search serving, fast: no training, no Triton, fakeredis.

A release of an *untrained* embedder (random weights are a fine embedder for
these checks: a catalogue image sent back as a query is its own nearest
neighbour) over the catalogue of a world of 2 categories x 2 families x 4
products; the gateway in-process through FastAPI's test client. What needs a
trained model, real Triton or a real Redis is in ``test_visual_gateway.py``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import fakeredis
import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from PIL import Image

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.index import IndexSpec, IndexVersionMismatch
from mlsd_lib.models.image_embedder import ImageEmbedder
from mlsd_lib.models.training import torch_threads
from mlsd_lib.serving.gateway import GatewayConfig, create_app
from mlsd_lib.serving.gateway.budgets import DependencyPools
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.registry import ModelRegistry
from mlsd_lib.visual.bundle import (
    load_visual_bundle,
    save_visual_bundle,
    snapshot_availability,
)
from mlsd_lib.visual.catalogue_index import CatalogueIndex
from mlsd_lib.visual.fallback import CategoryFallback
from mlsd_lib.visual.gateway import (
    BODY_LIMIT_ADVICE,
    NotARelease,
    VisualService,
    add_visual_routes,
    visual_body_limit,
)
from mlsd_lib.visual.pipeline import (
    REGION_STAGE_BUDGETS_MS,
    VISUAL_STAGE_BUDGETS_MS,
    UnknownRegion,
    VisualPipeline,
    VisualQuery,
    VisualSettings,
)
from mlsd_lib.visual.query_image import (
    ImageLimits,
    ImageRejected,
    crop_window,
    decode_base64,
    decode_image,
    region_pixels,
    resize_square,
)
from mlsd_lib.visual.regions import (
    RegionTableError,
    clear_regions,
    read_region,
    write_regions,
)
from mlsd_lib.visual.release import (
    CATALOGUE_FOLDER,
    VisualModels,
    deploy_visual_release,
    promote_visual_release,
    register_visual_release,
    staged_visual_release,
)
from mlsd_lib.visual.served_embedder import embed_pixels
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig
from mlsd_lib.worlds.images_render import crop_boxes

KEY = "visual-key"
LIMITS = ImageLimits(max_bytes=60_000, max_pixels=1_000_000, image_size=64)
N_REGIONS = 3


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Rendering and embedding on one thread: on a small shared machine, torch's
    threads waiting for busy cores cost several times the work."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def world() -> ImageWorld:
    return ImageWorld(
        ImageWorldConfig.quick(
            n_categories=2, families_per_category=2, products_per_family=4, seed=3
        )
    )


@pytest.fixture(scope="module")
def release(world, tmp_path_factory):
    registry = ModelRegistry(tmp_path_factory.mktemp("visual") / "registry")
    embedder = ImageEmbedder(dim=16, widths=(4, 8, 8, 8), seed=0).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit
        made = register_visual_release(
            registry, embedder, world.catalogue(),
            training_window=("2026-03-01", "2026-03-02"), dedup_threshold=None,
            spec=IndexSpec("flat"),
        )  # fmt: skip
    promote_visual_release(registry, made.version, "production")
    return registry, made


@pytest.fixture(scope="module")
def models(release) -> VisualModels:
    registry, made = release
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return deploy_visual_release(registry, made, InProcessModelServer("test"))


def everywhere(world: ImageWorld) -> np.ndarray:
    """Every product in stock in every region but the last; the last region
    has nothing."""
    return np.full(world.n_products, (1 << (N_REGIONS - 1)) - 1, dtype=np.int64)


def make_pipeline(
    world: ImageWorld,
    client: redis.Redis,
    *,
    availability=None,
    settings: VisualSettings | None = None,
) -> VisualPipeline:
    products = world.products["product_id"].to_numpy()
    snapshot = snapshot_availability(products, everywhere(world))
    fallback = CategoryFallback(
        products, world.products["category"].to_numpy(), -products.astype(float)
    )
    return VisualPipeline(
        client,
        availability or snapshot,
        fallback,
        DependencyPools(("redis", "models", "index"), threads=2),
        snapshot=snapshot,
        settings=settings or VisualSettings(limits=LIMITS),
    )


def serve(pipeline: VisualPipeline, models: VisualModels, query: VisualQuery):
    try:
        return asyncio.run(pipeline.serve(models, query))
    finally:
        pipeline.pools.close()


# -- the query photo -----------------------------------------------------------------


def test_the_gateway_crops_as_the_world_does(world):
    photos = world.queries(world.test_products[:6], seed=2)
    expected = crop_boxes(photos.images.images, photos.boxes, 64, LIMITS.margin)
    for i in range(len(photos)):
        decoded = decode_image(png(photos.images.images[i]), LIMITS, photos.boxes[i])
        window_image, window = crop_window(decoded, photos.boxes[i].tolist(), LIMITS)
        got = resize_square(window_image, window, 64).astype(int)
        difference = np.abs(got - expected[i])
        assert difference.mean() < 0.5 and difference.max() <= 4
        offline = region_pixels(photos.images.images[i], photos.boxes[i], LIMITS)
        np.testing.assert_array_equal(offline, got)


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        (b"", 422, r"empty \(0 bytes\)"),
        (b"\x89PNG not really", 422, "not an image Pillow can decode"),
        (b"x" * 60_001, 413, "at most 60,000 bytes"),
    ],
)
def test_unusable_bytes_are_refused_naming_the_rule(data, status, words):
    with pytest.raises(ImageRejected, match=words) as caught:
        decode_image(data, LIMITS)
    assert caught.value.status == status


def test_pixels_are_judged_from_the_header_before_decoding():
    bomb = png(np.zeros((1200, 1000, 3), np.uint8))  # 1.2 MP of zeros: a few KB
    assert len(bomb) < LIMITS.max_bytes
    with pytest.raises(ImageRejected, match=r"1,200,000 pixels; at most 1,000,000"):
        decode_image(bomb, LIMITS)
    with pytest.raises(ImageRejected, match=r"at least 8 \(min_side\)"):
        decode_image(png(np.zeros((4, 40, 3), np.uint8)), LIMITS)


def test_a_truncated_file_and_bad_base64_are_refused():
    photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(photo).save(buffer, "JPEG")
    with pytest.raises(ImageRejected, match="truncated or corrupt"):
        data = buffer.getvalue()
        decode_image(data[: len(data) * 2 // 3], LIMITS)
    with pytest.raises(ImageRejected, match="not valid base64"):
        decode_base64("not base64!", LIMITS)
    with pytest.raises(ImageRejected, match="max_bytes") as caught:
        decode_base64("A" * 81_000, LIMITS)
    assert caught.value.status == 413


@pytest.mark.parametrize(
    "box",
    [(10, 10, 70, 40), (10, 10, 10, 40), (-1, 0, 20, 20), (30, 30, 20, 50)],
)
def test_a_box_outside_the_photo_or_without_area_is_refused(box):
    decoded = decode_image(png(np.zeros((64, 64, 3), np.uint8)), LIMITS)
    with pytest.raises(ImageRejected, match=r"not inside the 64 x 64 image"):
        crop_window(decoded, box, LIMITS)


def test_a_large_jpeg_decodes_at_a_reduced_scale_to_the_same_crop():
    rng = np.random.default_rng(1)
    small = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((1024, 1024), Image.BILINEAR))
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, "JPEG", quality=95)
    box = [256, 256, 768, 768]
    roomy = replace(LIMITS, max_bytes=10**6, max_pixels=10**7)
    decoded = decode_image(buffer.getvalue(), roomy, box)
    assert decoded.scale <= 0.25 and (decoded.width, decoded.height) == (1024, 1024)
    reduced = resize_square(*crop_window(decoded, box, LIMITS), 64).astype(int)
    full = region_pixels(big, box, LIMITS).astype(int)
    assert np.abs(reduced - full).mean() < 4


# -- precomputed regions -------------------------------------------------------------


def test_regions_are_stored_per_embedder_version():
    client = fakeredis.FakeRedis()
    vectors = np.eye(3, 4, dtype=np.float32)
    assert write_regions(client, "emb-v1", [5, 6, 7], vectors, [0, 1, 1]) == 3
    found = read_region(client, "emb-v1", 6, 4)
    np.testing.assert_array_equal(found.vector, vectors[1])
    assert found.category_id == 1
    assert read_region(client, "emb-v2", 6, 4) is None  # another embedder's table
    with pytest.raises(RegionTableError, match="expected 20"):
        read_region(client, "emb-v1", 6, 3)
    with pytest.raises(RegionTableError, match="distinct"):
        write_regions(client, "emb-v1", [1, 1], vectors[:2], [0, 0])
    assert clear_regions(client, "emb-v1") == 3 and client.dbsize() == 0


# -- the release -------------------------------------------------------------------


def test_the_release_embeds_its_catalogue_with_the_registered_file(release, world):
    registry, made = release
    assert staged_visual_release(registry) == made
    assert made.embedder_version == "visual_embedder-v1" and made.image_size == 64
    index = CatalogueIndex.load(made.index_dir / CATALOGUE_FOLDER)
    assert index.embedder_version == made.embedder_version
    module = registry.load("visual_embedder", made.version)
    np.testing.assert_allclose(
        index.vectors, embed_pixels(module, world.catalogue()), atol=1e-6
    )


def test_an_index_of_another_embedder_is_refused_before_any_model_loads(
    release, tmp_path
):
    registry, made = release
    index = CatalogueIndex.load(made.index_dir / CATALOGUE_FOLDER)
    index.ann.model_version = "visual_embedder-v2"  # as tomorrow's rebuild records
    index.save(tmp_path / CATALOGUE_FOLDER)
    for name in ("release.json", "category_centroids.npz"):
        (tmp_path / name).write_bytes((made.index_dir / name).read_bytes())
    server = InProcessModelServer("test")
    with pytest.raises(
        IndexVersionMismatch, match=r"'visual_embedder-v2'.*'visual_embedder-v1'"
    ):
        deploy_visual_release(registry, replace(made, index_dir=tmp_path), server)
    assert server.model_names == []


def test_models_that_pair_two_versions_cannot_be_made_nor_swapped_in(models, world):
    other = CatalogueIndex.build(
        models.catalogue.vectors.astype(np.float32),
        models.catalogue.image_ids,
        models.catalogue.product_ids,
        world.catalogue().category_ids,
        embedder_version="visual_embedder-v2",
        spec=IndexSpec("flat"),
    )
    with pytest.raises(IndexVersionMismatch, match="not comparable"):
        replace(models, catalogue=other)
    service = VisualService(make_pipeline(world, fakeredis.FakeRedis()), models, 3)
    with pytest.raises(NotARelease, match=r"release .*got CatalogueIndex"):
        service.swap(other)
    assert service.models is models


# -- the pipeline ------------------------------------------------------------------


def test_a_catalogue_image_finds_its_own_product_first(models, world):
    catalogue = world.catalogue()
    row = 9
    query = VisualQuery(region=0, image=b64(png(catalogue.images[row])))
    answer = serve(make_pipeline(world, fakeredis.FakeRedis()), models, query)
    assert not answer.degraded, answer.reason
    assert answer.product_ids[0] == catalogue.product_ids[row]
    assert answer.scores[0] == pytest.approx(1.0, abs=1e-4)
    assert list(answer.timings_ms) == [*VISUAL_STAGE_BUDGETS_MS, "total"]
    assert answer.counts["ann_images"] == models.catalogue.n_images
    assert answer.filters.n_kept == answer.counts["after_filters"]
    assert answer.versions == {
        "release": "visual-v1",
        "embedder": "visual_embedder-v1",
        "index": "visual_embedder-v1",
    }


def test_the_last_region_has_no_stock_so_its_page_is_empty(models, world):
    image = b64(png(world.catalogue().images[0]))
    answer = serve(
        make_pipeline(world, fakeredis.FakeRedis()),
        models,
        VisualQuery(region=N_REGIONS - 1, image=image),
    )
    assert len(answer) == 0 and answer.counts["after_filters"] == 0
    assert answer.filters.passed == {"in_stock": 0}


def test_a_precomputed_region_skips_decoding_and_the_embedder(models, world):
    client = fakeredis.FakeRedis()
    catalogue = world.catalogue()
    vector = models.catalogue.vectors[4].astype(np.float32)
    write_regions(
        client, models.embedder_version, [77], vector[None], catalogue.category_ids[4:5]
    )
    answer = serve(make_pipeline(world, client), models, VisualQuery(0, region_id=77))
    assert answer.path == "region" and not answer.degraded
    assert list(answer.timings_ms) == [*REGION_STAGE_BUDGETS_MS, "total"]
    assert answer.product_ids[0] == catalogue.product_ids[4]
    with pytest.raises(UnknownRegion, match="region_id 78 has no precomputed"):
        serve(make_pipeline(world, client), models, VisualQuery(0, region_id=78))


def test_an_index_marked_down_degrades_to_the_guessed_category(models, world):
    catalogue = world.catalogue()
    pipeline = make_pipeline(world, fakeredis.FakeRedis())
    pipeline.unavailable.add("index")
    query = VisualQuery(region=0, image=b64(png(catalogue.images[5])))
    answer = serve(pipeline, models, query)
    assert answer.degraded and "index unavailable" in answer.reason
    assert "marked unavailable" in answer.reason
    assert "nearest category centroid" in answer.reason
    guessed = models.guess_category(answer.embedding)
    assert answer.category_id == guessed
    assert set(answer.category_ids.tolist()) == {guessed}
    assert np.isnan(answer.scores).all() and len(answer) > 0


def test_a_precomputed_region_without_an_index_answers_its_label(models, world):
    client = fakeredis.FakeRedis()
    vector = models.catalogue.vectors[0].astype(np.float32)
    write_regions(client, models.embedder_version, [5], vector[None], [1])
    pipeline = make_pipeline(world, client)
    pipeline.unavailable.add("index")
    answer = serve(pipeline, models, VisualQuery(0, region_id=5))
    assert answer.degraded and answer.category_id == 1
    assert "category from the region's label" in answer.reason


def test_a_failing_embedder_degrades_to_the_overall_popular_page(models, world):
    server = InProcessModelServer("empty")  # knows no model: every call fails
    embedder = replace(models.embedder, server=server)
    failing = replace(models, embedder=embedder)
    query = VisualQuery(region=0, image=b64(png(world.catalogue().images[0])))
    answer = serve(make_pipeline(world, fakeredis.FakeRedis()), failing, query)
    assert answer.degraded and answer.category_id is None
    assert answer.reason.startswith("no query vector (embedder unavailable")
    np.testing.assert_array_equal(answer.product_ids[:3], [0, 1, 2])  # popularity


def test_redis_down_at_the_filters_uses_the_snapshot(models, world):
    def down(region: int):
        raise redis.ConnectionError("Error 111 connecting to localhost:1.")

    query = VisualQuery(region=0, image=b64(png(world.catalogue().images[3])))
    answer = serve(
        make_pipeline(world, fakeredis.FakeRedis(), availability=down), models, query
    )
    assert answer.degraded and "snapshot" in answer.reason
    assert len(answer) > 0 and np.isfinite(answer.scores).all()


# -- over HTTP, in process ---------------------------------------------------------


@pytest.fixture(scope="module")
def http(models, world, tmp_path_factory) -> Iterator[tuple[TestClient, object]]:
    folder = tmp_path_factory.mktemp("gateway")
    config = GatewayConfig(
        impression_log_path=str(folder / "impressions.jsonl"),
        api_key=KEY,
        max_body_bytes=visual_body_limit(LIMITS),
        body_limit_advice=BODY_LIMIT_ADVICE,
    )
    client = fakeredis.FakeRedis()
    app = create_app(config, OnlineStore(client, FeatureRegistry([])), None)
    service = VisualService(make_pipeline(world, client), models, N_REGIONS)
    add_visual_routes(app, service, KEY)
    with TestClient(app, headers={"X-API-Key": KEY}) as test_client:
        yield test_client, app


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"region": 0}, 422, "exactly one of image"),
        ({"region": 0, "image": "AAAA", "region_id": 3}, 422, "exactly one of image"),
        ({"region": 0, "region_id": 3, "box": [0, 0, 4, 4]}, 422, "leave box out"),
        ({"region": 3, "image": "AAAA"}, 422, "region must be below 3"),
        ({"region": 0, "region_id": 3}, 404, "region_id 3 has no precomputed"),
        ({"region": 0, "image": ""}, 422, "empty"),
        ({"region": 0, "image": "####"}, 422, "base64"),
        ({"region": 0, "image": b64(b"GIF89a junk")}, 422, "Pillow can decode"),
        ({"region": 0, "image": "A" * 81_000}, 413, "max_bytes"),
    ],
)
def test_client_errors_are_4xx_naming_the_rule(http, body, status, words):
    client, app = http
    answer = client.post("/v1/visual/search", json=body)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["detail"]
    assert app.state.gateway.counters["visual_rejected"] >= 1


def test_a_bad_box_and_a_huge_photo_over_http(http):
    client, _ = http
    photo = b64(png(np.zeros((64, 64, 3), np.uint8)))
    bad = client.post(
        "/v1/visual/search", json={"region": 0, "image": photo, "box": [0, 0, 65, 9]}
    )
    assert bad.status_code == 422 and "box [0, 0, 65, 9]" in bad.json()["detail"]
    big = b64(png(np.zeros((1100, 1000, 3), np.uint8)))
    huge = client.post("/v1/visual/search", json={"region": 0, "image": big})
    assert huge.status_code == 413 and "max_pixels" in huge.json()["detail"]
    over = client.post(
        "/v1/visual/search",
        content=b"{" + b" " * visual_body_limit(LIMITS) + b"}",
        headers={"content-type": "application/json"},
    )
    assert over.status_code == 413 and "Send a smaller photo" in over.json()["detail"]


def test_an_answer_and_its_impression_line(http, models, world):
    client, app = http
    row = 12
    catalogue = world.catalogue()
    body = {"region": 1, "image": b64(png(catalogue.images[row])), "n_products": 5}
    answer = client.post("/v1/visual/search", json=body)
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["path"] == "image" and not page["degraded"]
    assert len(page["products"]) == 5
    assert page["products"][0]["product_id"] == catalogue.product_ids[row]
    assert [p["position"] for p in page["products"]] == list(range(5))
    assert app.state.gateway.counters["visual_embedder_calls"] >= 1
    app.state.gateway.log.flush()
    log = Path(app.state.gateway.log.path).read_text().splitlines()
    line = next(
        x for x in map(json.loads, log) if x["request_id"] == page["request_id"]
    )
    assert len(line["embedding"]) == models.catalogue.d
    assert "image" not in line and line["products"][:5] == [
        p["product_id"] for p in page["products"]
    ]
    assert line["filters"]["passed"]["in_stock"] == line["counts"]["after_filters"]


def test_the_bundle_round_trips(release, world, tmp_path):
    registry, _ = release
    products = world.products["product_id"].to_numpy()
    folder = save_visual_bundle(
        tmp_path, registry=registry, stream="s", n_regions=N_REGIONS,
        product_ids=products, category_ids=world.products["category"].to_numpy(),
        popularity=np.linspace(1, 0, products.size), stock=everywhere(world),
        frozen_now=1.5e9,
    )  # fmt: skip
    bundle = load_visual_bundle(folder)
    assert bundle.clock()() == 1.5e9 and bundle.n_regions == N_REGIONS
    assert bundle.fallback().answer(None, reason="r").product_ids[0] == 0
    keep = bundle.snapshot()(N_REGIONS - 1)["in_stock"](products)
    assert not keep.any()
