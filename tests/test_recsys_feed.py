"""The recommender's feed: the pipeline's stages and the release it serves.

A small release (:func:`~mlsd_lib.recsys.quick_release.build_quick_release`,
trained in seconds) is deployed on the in-process model server here; the
histories are streamed through the real processor into a real Redis. The same
release on Triton is ``test_recsys_feed_triton.py``; the route over HTTP and
the fault drills are ``test_recsys_feed_route.py`` and
``test_recsys_feed_faults.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import redis
import torch
from feed_release import (
    active_users,
    deployed_in_process,
    other_db,
    pipeline,
    serve,
    shared_release,
    user_of,
    watched,
)

from mlsd_lib.features.history_fold import interaction_history
from mlsd_lib.index.versions import IndexVersionMismatch
from mlsd_lib.net import free_loopback_port
from mlsd_lib.recsys.events import interaction_log
from mlsd_lib.recsys.feed import (
    FEED_STAGE_BUDGETS_MS,
    FeedDeployError,
)
from mlsd_lib.recsys.feed_catalogue import FeedCatalogue
from mlsd_lib.recsys.feed_features import (
    RANKER_DENSE,
    FeedFeatureError,
    ItemTable,
    ranker_inputs,
)
from mlsd_lib.recsys.feed_tables import build_feed_tables
from mlsd_lib.recsys.serving import (
    ReleaseError,
    deploy_release,
    register_release,
    staged_release,
)
from mlsd_lib.recsys.training_rows import served_ranking_examples, states_at_requests
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.registry import ModelRegistry
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_policies import LegacyPolicy

KEY = "feed-key"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def release():
    return shared_release()


@pytest.fixture(scope="module")
def client(release, real_redis_url):
    client = redis.Redis.from_url(other_db(real_redis_url), socket_timeout=1.0)
    client.flushdb()
    assert release.load_histories(client) > 1000
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def models(release):
    return deployed_in_process(release)


# -- features: what serving computes is what training used ---------------------------
@pytest.fixture(scope="module")
def day():
    world = RecsysWorld(RecsysWorldConfig.quick(seed=1))
    log = world.simulate(LegacyPolicy(world), 0, 2)
    events = interaction_log(log, world.items.genre)
    fold = interaction_history("feed-parity", n_categories=world.config.n_genres)
    return world, log, states_at_requests(log, events, fold)


def test_the_served_ranker_features_are_the_training_rows(day):
    """The same request's ranker features, built by the training rows and by the
    feed (catalogue, daily tables, the candidates' two-tower scores), are equal."""
    world, log, states = day
    items = world.item_features()
    rng = np.random.default_rng(5)
    users = rng.normal(size=(len(states), 8)).astype(np.float32)
    vectors = rng.normal(size=(world.n_items, 8)).astype(np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    training = served_ranking_examples(
        log, states, items, past_log=log, user_embeddings=users,
        item_embeddings=vectors,
    )  # fmt: skip
    catalogue = FeedCatalogue.from_item_features(items, vectors)
    tables = {
        d: build_feed_tables(
            log, catalogue, world.users.region, now=d * 86_400.0,
            n_maturity=world.config.n_maturity,
        )
        for d in (0, 1)
    }  # fmt: skip
    requests = np.unique(log.request_id)[::97]
    assert len(requests) >= 20
    days = set()
    for request in requests:
        rows = np.flatnonzero(log.request_id == request)
        state = int(states.rows_of(np.array([request]))[0])
        world_now = float(log.time[rows[0]])
        table = tables[int(world_now // 86_400)]
        days.add(table.day)
        candidates = log.item[rows]
        served = ranker_inputs(
            states.histories, state, candidates, catalogue.items,
            now=float(states.time[state]), world_now=world_now,
            retrieval_score=(
                catalogue.embeddings[candidates] @ users[state]
            ).astype(np.float64),
            item_impressions=table.item_impressions,
            item_engaged=table.item_engaged,
        )  # fmt: skip
        assert served["dense"].shape[1] == len(RANKER_DENSE)
        np.testing.assert_allclose(
            served["dense"], training.features.dense[rows], rtol=1e-6, atol=1e-6
        )
        np.testing.assert_array_equal(
            served["categorical"], training.features.categorical[rows]
        )
    assert days == {0, 1}
    with pytest.raises(FeedFeatureError, match="one two-tower score per candidate"):
        ranker_inputs(
            states.histories, 0, log.item[:3], catalogue.items, now=0.0,
            world_now=0.0, retrieval_score=np.zeros(2),
            item_impressions=tables[0].item_impressions,
            item_engaged=tables[0].item_engaged,
        )  # fmt: skip


def test_continue_watching_proposes_the_next_unplayed_episodes():
    catalogue = FeedCatalogue(
        items=ItemTable(
            genre=np.zeros(8, np.int64),
            series=np.array([-1, 0, 0, 0, 1, 1, 1, -1]),
            kind=np.zeros(8, np.int64),
            duration=np.ones(8),
            launch_day=np.zeros(8, np.int64),
        ),
        maturity=np.zeros(8, np.int64),
        regions=np.ones((8, 1), bool),
        embeddings=np.eye(8, dtype=np.float32),
        series_items=np.array([1, 2, 3, 4, 5, 6]),
        series_offsets=np.array([0, 3, 6]),
    )
    # newest first: an episode of series 1, a film, an episode of series 0
    history = np.array([5, 7, 1, -1, -1])
    assert catalogue.continue_watching(history).tolist() == [4, 6, 2, 3]
    assert catalogue.continue_watching(history, per_series=1).tolist() == [4, 2]
    assert catalogue.continue_watching(history, recent=1).tolist() == [4, 6]
    assert catalogue.continue_watching(np.array([-1, -1])).tolist() == []


# -- the pipeline ------------------------------------------------------------------
@pytest.mark.redis
def test_a_feed_obeys_every_filter_and_page_rule(release, client, models):
    catalogue = models.catalogue
    checked = 0
    for user_id in active_users(release, 12):
        user = user_of(release, user_id)
        result = serve(pipeline(release, client), models, user)
        assert not result.degraded, result.reason
        assert len(result) == 20 and len(set(result.items.tolist())) == 20
        items = result.items
        seen = watched(client, release, user_id)
        assert seen and not seen & set(items.tolist())
        assert catalogue.regions[items, user.region].all()
        assert (catalogue.maturity[items] <= user.maturity_limit).all()
        ranked = np.array([s != "explore" for s in result.sources])
        series = catalogue.items.series[items[ranked]]
        assert np.bincount(series[series >= 0]).max(initial=0) <= 3
        genres = len(np.unique(catalogue.items.genre[items]))
        assert genres >= 4 or "min_distinct" in result.unmet
        assert result.filters.n_candidates >= 500
        assert set(result.filters.passed) == {"watched", "region", "maturity",
                                              "launched"}  # fmt: skip
        checked += 1
    assert checked == 12


@pytest.mark.redis
def test_each_item_carries_its_source_and_its_models_scores(release, client, models):
    result = serve(pipeline(release, client), models, user_of(release, 3))
    sources = result.sources
    assert sources.count("explore") == 1
    slot = sources.index("explore")
    assert slot >= 3 and 0 < result.propensity[slot] <= 1
    assert np.isnan(np.delete(result.propensity, slot)).all()
    assert set(sources) <= {"retrieval", "continue_watching", "trending", "explore"}
    ranked = np.array([s != "explore" for s in sources])
    np.testing.assert_allclose(
        result.final[ranked], result.p_play[ranked] * result.e_minutes[ranked]
    )
    assert np.isnan(result.p_play[slot]) and not np.isnan(result.retrieval_score).any()
    # The ranker's scores are the registered ranker's, on the served features.
    histories = pipeline(release, client).read_user(3)
    inputs = ranker_inputs(
        histories, 0, result.items[ranked], models.catalogue.items,
        release.now, release.world_now,
        retrieval_score=result.retrieval_score[ranked],
        item_impressions=release.tables.item_impressions,
        item_engaged=release.tables.item_engaged,
    )  # fmt: skip
    ranker = torch.jit.load(str(release.release.ranker.artifact))
    with torch.inference_mode():
        p_play, minutes = ranker(*(torch.from_numpy(v) for v in inputs.values()))
    np.testing.assert_allclose(result.p_play[ranked], p_play.numpy(), rtol=1e-5)
    np.testing.assert_allclose(result.e_minutes[ranked], minutes.numpy(), rtol=1e-5)
    assert result.versions == {
        "release": "recs-v1",
        "user_tower": "recs_user_tower-v1",
        "ranker": "recs_ranker-v1",
        "index": "recs_user_tower-v1",
    }
    assert list(result.timings_ms) == [*FEED_STAGE_BUDGETS_MS, "total"]
    assert result.candidates["retrieval"] >= 450


@pytest.mark.redis
def test_series_fans_see_continue_watching(release, client, models):
    found = 0
    for user_id in active_users(release, 40):
        result = serve(pipeline(release, client), models, user_of(release, user_id))
        if result.candidates.get("continue_watching"):
            found += 1
            assert result.candidates["continue_watching"] >= 1
    assert found >= 5


@pytest.mark.redis
def test_redis_down_answers_the_popular_feed_of_the_users_cell(release, models):
    dead = redis.Redis(
        port=free_loopback_port(), socket_timeout=0.2, socket_connect_timeout=0.2
    )
    user = user_of(release, 5)
    result = serve(pipeline(release, dead), models, user)
    # refused at once, or retried by the client until the 50 ms timeout
    assert result.degraded
    assert "ConnectionError" in result.reason or "Redis (the user's" in result.reason
    cell = release.tables.cell(user.region, user.maturity_limit)
    assert result.items.tolist() == release.tables.popular[cell][:20].tolist()
    assert result.sources == ["popular"] * 20 and np.isnan(result.final).all()


@pytest.mark.redis
def test_a_failing_model_degrades_and_still_drops_what_was_watched(
    release, client, models
):
    def broken(**inputs):
        raise RuntimeError("the ranker crashed")

    server = InProcessModelServer("broken")
    spec = models.ranker
    server.bind(spec.model_name, broken, spec.inputs, spec.outputs, 2048)
    failing = replace(models, ranker=replace(spec, server=server))
    user_id = active_users(release, 1)[0]
    result = serve(pipeline(release, client), failing, user_of(release, user_id))
    assert result.degraded and "the ranker crashed" in result.reason
    assert not watched(client, release, user_id) & set(result.items.tolist())
    assert result.timings_ms["ranker"] > 0 and result.timings_ms["rerank"] == 0


@pytest.mark.redis
def test_a_slow_model_past_its_timeout_degrades(release, client, models):
    def slow(**inputs):
        import time

        time.sleep(0.3)
        return {"embedding": np.zeros((1, models.index.d), np.float32)}

    server = InProcessModelServer("slow")
    spec = models.user_tower
    server.bind(spec.model_name, slow, spec.inputs, spec.outputs, 64)
    slowed = replace(models, user_tower=replace(spec, server=server))
    pipe = pipeline(release, client)
    pipe.settings = replace(pipe.settings, model_timeout_s=0.05)
    result = serve(pipe, slowed, user_of(release, 3))
    assert result.degraded and "did not answer within 50 ms" in result.reason


# -- one release, one version ---------------------------------------------------------
def test_an_index_from_another_model_is_refused_before_any_model_loads(
    release, tmp_path
):
    folder = release.release.index_dir
    manifest = json.loads((folder / "manifest.json").read_text())
    copy = tmp_path / "index"
    copy.mkdir()
    for path in folder.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    manifest["model_version"] = "recs_user_tower-v0"
    (copy / "manifest.json").write_text(json.dumps(manifest))
    server = InProcessModelServer("test")
    stale = replace(release.release, index_dir=copy)
    with pytest.raises(IndexVersionMismatch, match=r"'recs_user_tower-v0'.*'recs_user"):
        deploy_release(release.registry, stale, server, release.item_features)
    assert server.model_names == []


def test_models_built_from_parts_of_two_releases_are_refused(release, models):
    other = replace(models.user_tower, model_name="recs_user_tower-v2")
    with pytest.raises(IndexVersionMismatch, match="rebuild the index"):
        replace(models, user_tower=other)
    reordered = dict(models.ranker.columns)
    reordered["dense"] = tuple(reversed(reordered["dense"]))
    with pytest.raises(FeedDeployError, match="registered with input columns"):
        replace(models, ranker=replace(models.ranker, columns=reordered))


def test_a_release_registers_three_models_under_one_version(release, tmp_path):
    assert staged_release(release.registry).version == 1
    registry = ModelRegistry(tmp_path / "registry")
    registry.register(
        "recs_ranker", release.release.ranker.artifact,
        input_schema=[("dense:x", "float32")], training_window=("2026-03-02",
        "2026-03-03"), metrics={}, format="torchscript",
    )  # fmt: skip
    with pytest.raises(ReleaseError, match="next versions differ"):
        register_release(
            registry, user_tower=Path("u"), item_tower=Path("i"), ranker=Path("r"),
            index=None, item_embeddings=None, item_tower_schema=[], history_len=50,
            training_window=("2026-03-02", "2026-03-03"),
        )  # fmt: skip
    with pytest.raises(ReleaseError, match="stage 'production' names"):
        staged_release(registry)
