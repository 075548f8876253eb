"""Measuring the served feed: request bodies and stage tables, the filters' survival
over the impression log, background traffic with labels, freshness from a play to
the next feed, the live stream processor, and the stage plot.

Small stand-ins throughout (a stub feed route, fakeredis, a hand-made history
fold): these helpers read answers and logs, so they are tested on answers and
logs whose right figures are known, fast. The notebook of step 6 runs them on
the real gateway, Redis and Triton.
"""

from __future__ import annotations

import threading
import time

import fakeredis
import numpy as np
import pandas as pd
import pytest
import redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from feed_release import other_db

from mlsd_lib.features.fold_catalog import fold_named
from mlsd_lib.features.histories import read_histories
from mlsd_lib.features.history_fold import interaction_history
from mlsd_lib.features.live_processor import LiveProcessor, LiveProcessorError
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.recsys.feed_freshness import (
    FeedFreshnessError,
    FeedStayedStale,
    engaged_play,
    time_until_feed_drops,
)
from mlsd_lib.recsys.feed_load import (
    STAGES,
    FeedLoadError,
    RecordingSender,
    feed_bodies,
    filter_survival,
    source_mix,
    stage_samples,
    stage_table,
)
from mlsd_lib.recsys.feed_plots import StagePlotError, plot_stage_latency
from mlsd_lib.recsys.feed_traffic import DEGRADED, FeedTraffic, NoFeedBodies, label_of
from mlsd_lib.redis_backend import RedisBackend
from mlsd_lib.serving.gateway import GatewayConfig, create_app
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.loadgen import LeanResponse

BUDGETS = {"features": 10.0, "user_tower": 10.0, "ann": 15.0, "ranker": 50.0,
           "rerank": 10.0}  # fmt: skip


def answer(ms: float, degraded: bool = False, sources=("retrieval",)) -> dict:
    """A feed answer whose every stage took ``ms`` (total: 5 ms more)."""
    timings = {stage: ms for stage in BUDGETS} | {"total": 5 * ms + 5}
    return {
        "degraded": degraded,
        "timings": {} if degraded else timings,
        "items": [{"source": s} for s in sources],
        "versions": {"release": "recs-v3"},
    }


# -- bodies, answers, stage tables -----------------------------------------------------
def test_feed_bodies_ask_for_distinct_users_in_a_seeded_order_with_their_profile():
    profiles = pd.DataFrame(
        {"region": [0, 1, 2, 3, 0], "maturity_limit": [2, 1, 0, 2, 1]}
    )
    bodies = feed_bodies(profiles, 4, seed=7, page_size=12)
    users = [b["user_id"] for b in bodies]
    assert len(set(users)) == 4 and set(users) <= set(range(5))
    assert bodies == feed_bodies(profiles, 4, seed=7, page_size=12)
    assert users != [b["user_id"] for b in feed_bodies(profiles, 4, seed=8)]
    for b in bodies:
        u = b["user_id"]
        assert b["context"] == {
            "region": profiles.region[u], "maturity_limit": profiles.maturity_limit[u]
        }  # fmt: skip
        assert b["page_size"] == 12
    with pytest.raises(FeedLoadError, match=r"n=6 requests of distinct users.*5 users"):
        feed_bodies(profiles, 6, seed=0)
    with pytest.raises(FeedLoadError, match=r"lack columns \['maturity_limit'\]"):
        feed_bodies(profiles[["region"]], 2, seed=0)


def test_the_recording_sender_keeps_every_answer_from_many_threads():
    counter = iter(range(1000))
    lock = threading.Lock()

    def send() -> LeanResponse:
        with lock:
            n = next(counter)
        return LeanResponse(200, {}, f'{{"n": {n}}}'.encode())

    record = RecordingSender(send)
    threads = [
        threading.Thread(target=lambda: [record() for _ in range(50)]) for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = record.take()
    assert sorted(a["n"] for a in taken) == list(range(200))
    assert record.take() == []


def test_stage_tables_skip_degraded_answers_and_compare_p99_with_the_budget():
    answers = [answer(ms) for ms in range(1, 101)] + [answer(0, degraded=True)]
    samples = stage_samples(answers)
    assert set(samples) == set(STAGES) and len(samples["ranker"]) == 100
    slow = {"1 client": samples, "4 clients": stage_samples([answer(60.0)] * 3)}
    table = stage_table(slow, BUDGETS | {"total": 200.0})
    assert table.loc["ranker", "1 client p50"] == pytest.approx(50.5)
    assert table.loc["ranker", "1 client p99"] == pytest.approx(99.01)
    assert not table.loc["features", "1 client within"]  # p99 99 ms > 10 ms
    assert table.loc["total", "4 clients p99"] == pytest.approx(305.0)
    assert not table.loc["total", "4 clients within"]
    assert not table.loc["ranker", "4 clients within"]  # 60 > 50
    assert np.isnan(stage_table({"a": samples}, BUDGETS).loc["total", "budget p99 ms"])
    with pytest.raises(FeedLoadError, match="every request degraded"):
        stage_table({"down": stage_samples([answer(0, degraded=True)])})


def test_source_mix_counts_shown_items_most_first():
    answers = [
        answer(1, sources=("retrieval", "trending", "explore")),
        answer(1, sources=("retrieval", "continue_watching")),
        answer(1, degraded=True, sources=("popular",) * 3),
    ]
    assert list(source_mix(answers).items()) == [
        ("popular", 3), ("retrieval", 2), ("continue_watching", 1),
        ("explore", 1), ("trending", 1),
    ]  # fmt: skip


def test_filter_survival_sums_the_impression_logs_reports():
    def line(n, watched, region, kept):
        report = {"n_candidates": n, "passed": {"watched": watched, "region": region},
                  "n_kept": kept}  # fmt: skip
        return {"kind": "feed", "filters": report}

    lines = [line(500, 450, 400, 360), line(500, 500, 300, 300),
             {"kind": "feed", "filters": None}]  # fmt: skip
    total = filter_survival(lines)
    assert total.n_candidates == 1000 and total.n_kept == 660
    assert total.survival() == {"watched": 0.95, "region": 0.7}
    assert total.candidates_needed(20) == 31  # ceil(20 / 0.66)
    with pytest.raises(FeedLoadError, match="no impression-log line carries"):
        filter_survival(lines[2:])


# -- background traffic ------------------------------------------------------------
@pytest.fixture
def stub_feed(tmp_path):
    """A gateway whose feed route answers served or degraded, as a flag says."""
    state = {"degraded": False, "seen": [], "status": 200}
    config = GatewayConfig(impression_log_path=str(tmp_path / "log"), api_key="k")
    store = OnlineStore(fakeredis.FakeRedis(), FeatureRegistry([]))
    app = create_app(config, store, None)
    router = APIRouter()

    @router.post("/v1/recs/feed", response_model=None)
    async def feed(body: dict) -> dict | JSONResponse:
        state["seen"].append(body["user_id"])
        if state["status"] != 200:
            return JSONResponse({"detail": "down"}, status_code=state["status"])
        down = state["degraded"]
        return {
            "degraded": down,
            "degraded_reason": "ModelFailed: recs_user_tower-v3" if down else None,
            "versions": {"release": "recs-v3"},
        }

    app.include_router(router)
    with GatewayServer(app) as gateway:
        yield gateway.url, state


def test_feed_traffic_labels_every_answer_and_sends_each_body_in_turn(stub_feed):
    url, state = stub_feed
    bodies = [{"user_id": u} for u in range(6)]
    with FeedTraffic(url, {"X-API-Key": "k"}, bodies, clients=2) as traffic:
        traffic.wait_for(20)
        state["degraded"] = True
        switched = time.perf_counter()
        traffic.wait_for(20, sent_after=switched + 0.05)
    assert traffic.failures() == []
    assert set(traffic.labels(traffic.since(switched + 0.05))) == {DEGRADED}
    before = [o for o in traffic.outcomes if o.done_at < switched]
    assert before and set(traffic.labels(before)) == {"recs-v3"}
    assert set(state["seen"]) == set(range(6))
    late = traffic.since(switched + 0.05)[0]
    assert late.body["reason"] == "ModelFailed: recs_user_tower-v3"


def test_feed_traffic_paces_each_client_and_records_failed_answers(stub_feed):
    url, state = stub_feed
    state["status"] = 503
    with FeedTraffic(url, {}, [{"user_id": 1}], clients=1,
                     pace_s=0.1, max_seconds=0.55) as traffic:  # fmt: skip
        time.sleep(0.8)
    assert 4 <= len(traffic.outcomes) <= 6  # one request per 100 ms, for 0.55 s
    assert traffic.labels() == {"failed (503)": len(traffic.outcomes)}
    assert len(traffic.failures()) == len(traffic.outcomes)
    with pytest.raises(NoFeedBodies, match="at least one request body"):
        FeedTraffic(url, {}, [])


def test_label_of_names_the_release_or_the_degraded_feed():
    assert (
        label_of({"degraded": False, "versions": {"release": "recs-v2"}}) == "recs-v2"
    )
    assert label_of({"degraded": True, "versions": {"release": "recs-v2"}}) == DEGRADED


# -- the live processor and freshness -------------------------------------------------
def fake_backend() -> RedisBackend:
    return RedisBackend(fakeredis.FakeRedis(), "fakeredis", "in-process", "test", "-")


def feed_without_watched(client, fold, user: int, items: list[int]):
    """A stand-in feed: ``items`` minus what the user's history holds."""

    def fetch() -> list[int]:
        watched = set(read_histories(client, fold, [user]).items[0].tolist())
        return [i for i in items if i not in watched]

    return fetch


def test_a_live_thread_folds_a_play_and_the_feed_drops_it():
    backend = fake_backend()
    fold = interaction_history("plays", n_categories=4, name="custom_history")
    with LiveProcessor(backend, fold, group="live", block_ms=10) as live:
        assert live.kind == "thread" and "a thread of this process" in live.describe()
        fetch = feed_without_watched(backend.client, fold, 7, [10, 11, 12])
        measured = time_until_feed_drops(
            backend.client, "plays", engaged_play(7, 11, 2, 1_700_000_000.0), fetch,
            timeout_s=10,
        )  # fmt: skip
    counts = live.stop()
    assert measured.before == (10, 11, 12) and measured.after == (10, 12)
    assert 0 < measured.seconds < 10 and measured.polls >= 1
    assert counts["applied"] == 1
    newest = read_histories(backend.client, fold, [7])
    assert newest.items[0][0] == 11 and newest.category_counts[0][2] == 1


def test_freshness_refuses_an_item_not_shown_and_says_when_nothing_folds():
    client = fakeredis.FakeRedis()
    fold = interaction_history("plays", n_categories=4)
    fetch = feed_without_watched(client, fold, 7, [10, 11])
    with pytest.raises(FeedFreshnessError, match="item 12 is not in user 7's feed"):
        time_until_feed_drops(client, "plays", engaged_play(7, 12, 0, 1.0e9), fetch)
    assert client.xlen("plays") == 0  # refused before publishing
    with pytest.raises(FeedStayedStale, match="is a processor consuming that stream"):
        time_until_feed_drops(
            client, "plays", engaged_play(7, 11, 0, 1.0e9), fetch, timeout_s=0.05,
            interval_s=0.01,
        )  # fmt: skip
    assert client.xlen("plays") == 1
    assert engaged_play(1, 2, 3, 4.0).event_id != engaged_play(1, 2, 3, 4.0).event_id


def test_a_processor_process_needs_a_real_redis_and_a_fold_it_can_rebuild():
    backend = fake_backend()
    fold = fold_named("history", "plays", categories=4)
    with pytest.raises(LiveProcessorError, match="fakeredis lives inside this process"):
        LiveProcessor(backend, fold, group="g", kind="process")
    real = RedisBackend(backend.client, "redis-url", "redis://x", "test", "7")
    custom = interaction_history("plays", n_categories=4, name="custom_history")
    with pytest.raises(LiveProcessorError, match="cannot rebuild this HistoryFold"):
        LiveProcessor(real, custom, group="g")


@pytest.mark.redis
def test_a_live_processor_process_folds_plays_into_a_real_redis(real_redis_url):
    url = other_db(real_redis_url, 9)
    client = redis.Redis.from_url(url)
    client.flushdb()
    backend = RedisBackend(client, "redis-url", url, "test", "7")
    fold = fold_named("history", "live_plays", categories=4)
    try:
        live = LiveProcessor(backend, fold, group="live", block_ms=10).start()
        assert live.kind == "process" and live.pid is not None
        fetch = feed_without_watched(client, fold, 3, [5, 6])
        measured = time_until_feed_drops(
            client, "live_plays", engaged_play(3, 6, 1, 1_700_000_000.0), fetch,
            timeout_s=20,
        )  # fmt: skip
        summary = live.stop()
        assert measured.after == (5,)
        assert summary["applied"] == 1 and summary["stopped"] == "signal"
        assert live.stop() == summary  # idempotent
    finally:
        client.flushdb()
        client.close()


# -- the stage plot --------------------------------------------------------------------
def test_the_stage_plot_draws_a_box_per_stage_and_level_and_each_budget():
    samples = {
        "1 client": stage_samples([answer(ms) for ms in range(1, 50)]),
        "4 clients": stage_samples([answer(2 * ms) for ms in range(1, 50)]),
    }
    figure = plot_stage_latency(samples, BUDGETS)
    axes = figure.axes[0]
    labels = [t.get_text() for t in axes.get_yticklabels()]
    assert labels == list(reversed(STAGES))
    budget_lines = [
        line for line in axes.get_lines()
        if line.get_color() == "r" and len(set(line.get_xdata())) == 1
    ]  # fmt: skip
    assert sorted(line.get_xdata()[0] for line in budget_lines) == sorted(
        BUDGETS.values()
    )
    assert axes.get_xscale() == "log"
    with pytest.raises(StagePlotError, match="no samples for"):
        plot_stage_latency({"x": {"ranker": np.array([])}}, BUDGETS)
    with pytest.raises(StagePlotError, match="no load level"):
        plot_stage_latency({}, BUDGETS)
