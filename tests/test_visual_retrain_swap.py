"""Retrain and swap visual search's release end to end: real Redis, real Triton,
faiss, HTTP, load from several clients on loopback.

The ``tiny`` release (:func:`~mlsd_lib.visual.quick_release.build_quick_visual_release`)
serves as v1; v2 is an embedder retrained on the world with a new category and
photos from a new camera, its catalogue re-embedded and its index rebuilt
(:func:`~mlsd_lib.visual.release.register_visual_release`). The swap
(:func:`~mlsd_lib.visual.release_swap.swap_visual_release`) happens while three
clients send photos: no request may fail, and every answer (and impression line)
must carry one release's embedder and index. The parts are tested fast in
``test_visual_monitors.py``.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.index import IndexVersionMismatch
from mlsd_lib.models.embedder_training import train_embedder
from mlsd_lib.models.training import torch_threads
from mlsd_lib.serving.gateway import GatewayConfig, create_app
from mlsd_lib.serving.gateway.budgets import DependencyPools
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.triton_repository_server import TritonRepositoryServer
from mlsd_lib.serving.triton_server import triton_unavailable_reason
from mlsd_lib.visual.gateway import VisualService, add_visual_routes
from mlsd_lib.visual.pipeline import VisualPipeline, VisualSettings
from mlsd_lib.visual.quick_release import build_quick_visual_release
from mlsd_lib.visual.recipes import visual_recipe
from mlsd_lib.visual.release import deploy_visual_release, register_visual_release
from mlsd_lib.visual.release_swap import swap_visual_release, version_mix
from mlsd_lib.visual.search_load import photo_bodies
from mlsd_lib.visual.search_traffic import SearchTraffic
from mlsd_lib.visual.training_images import training_images
from mlsd_lib.worlds.images_config import QueryStyle

pytestmark = [pytest.mark.redis, pytest.mark.triton]

KEY = "visual-swap-key"
HEADERS = {"X-API-Key": KEY}
PATIENT = VisualSettings(redis_timeout_s=0.5, model_timeout_s=1.0, index_timeout_s=1.0)


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("visual-retrain")
    with torch_threads(1), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit
        v1 = build_quick_visual_release(folder, visual_recipe("tiny"), num_threads=1)
        after = v1.world.with_new_category()
        config = dataclasses.replace(v1.recipe.embedder, seed=1, num_threads=1)
        fit = train_embedder(training_images(after), config)
        v2 = register_visual_release(
            v1.registry, fit.model, after.catalogue(),
            training_window=("2026-03-01", "2026-03-09"), dedup_threshold=None,
            spec=v1.recipe.index,
        )  # fmt: skip
    return v1, v2


@pytest.fixture(scope="module")
def triton() -> Iterator[TritonRepositoryServer]:
    reason = triton_unavailable_reason()
    if reason is not None:
        pytest.skip(f"tritonserver cannot run here: {reason}")
    with TritonRepositoryServer() as server:
        yield server


@pytest.fixture(scope="module")
def client(releases, real_redis_url) -> Iterator[redis.Redis]:
    parts = urlsplit(real_redis_url)
    connection = redis.Redis.from_url(
        f"{parts.scheme}://{parts.netloc}/6", socket_timeout=1.0
    )  # a database of its own; the session's other tests use 0 and 5
    connection.flushdb()
    try:
        assert releases[0].load_stock(connection) > 0
        yield connection
    finally:
        connection.flushdb()
        connection.close()


def test_embedder_and_index_swap_together_under_load_failing_nothing(
    releases, client, triton, tmp_path
):
    v1, v2 = releases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        models = deploy_visual_release(v1.registry, v1.release, triton)
    pipeline = VisualPipeline(
        client, v1.availability(client), v1.fallback(),
        DependencyPools(("redis", "models", "index"), threads=4),
        snapshot=v1.snapshot(), settings=PATIENT,
    )  # fmt: skip
    config = GatewayConfig(impression_log_path=str(tmp_path / "log.jsonl"), api_key=KEY)
    app = create_app(config, OnlineStore(client, FeatureRegistry([])), None)
    service = VisualService(pipeline, models, v1.n_regions)
    add_visual_routes(app, service, KEY)
    test = v1.world.test_products
    sold = test[v1.stock[test] > 0][:24]
    regions = np.argmax((v1.stock[sold][:, None] >> np.arange(v1.n_regions)) & 1, 1)
    photos = v1.photos(sold, seed=9, style=QueryStyle.camera_shift())
    bodies = photo_bodies(photos.images.images, photos.boxes, regions)
    with GatewayServer(app) as server:
        # a release whose index another embedder built is refused before loading
        mismatched = dataclasses.replace(v2, index_dir=v1.release.index_dir)
        loaded = list(triton.model_names)
        with pytest.raises(IndexVersionMismatch, match="visual_embedder-v1"):
            swap_visual_release(service, v1.registry, mismatched, triton)
        assert triton.model_names == loaded and service.models.release == "visual-v1"
        with SearchTraffic(server.url, HEADERS, bodies, clients=3, pace_s=0.01,
                           max_seconds=60) as load:  # fmt: skip
            load.wait_for(40)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                swap = swap_visual_release(service, v1.registry, v2, triton)
            load.wait_for(40, sent_after=swap.switched_at)
        app.state.gateway.log.flush()
    assert not load.failures(), {(o.status, o.error) for o in load.failures()}
    assert (swap.before, swap.after) == ("visual-v1", "visual-v2")
    assert swap.versions["embedder"] == swap.versions["index"] == "visual_embedder-v2"
    before = {
        o.body["model_version"]
        for o in load.outcomes
        if o.done_at < swap.switched_at - swap.load_ms / 1000 - swap.warmup_ms / 1000
    }
    after = {o.body["model_version"] for o in load.since(swap.switched_at)}
    assert before == {"visual-v1 photo"} and after == {"visual-v2 photo"}
    lines = [
        json.loads(x) for x in Path(config.impression_log_path).read_text().splitlines()
    ]
    mix = version_mix(lines)
    assert mix["consistent"].all() and set(mix["release"]) == {"visual-v1", "visual-v2"}
    assert mix["answers"].sum() == len(load.outcomes)
