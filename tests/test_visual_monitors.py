"""Visual search's monitors on synthetic logs (the shifts injected by hand), the
generic whole-release swap and the version check of answers. The real
timeline (world photos, the served embedder and index) runs in the chapter and
in ``test_visual_retrain_swap.py``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.serving.gateway.release_swap import swap_whole_release
from mlsd_lib.visual.monitors import (
    SearchLog,
    SearchMonitorError,
    SearchMonitorSettings,
    monitor_searches,
)
from mlsd_lib.visual.release_swap import consistent, version_mix
from mlsd_lib.visual.shift_timeline import (
    ShiftTimeline,
    ShiftTimelineError,
    window_traffic,
)

D, N, CATS = 16, 200, 4


def synthetic_window(rng, window, *, dark=0.0, newcomers=0.0):
    centres = np.eye(D)[:CATS]
    cat = rng.integers(0, CATS, N)
    x = centres[cat] + 0.3 * rng.normal(size=(N, D))
    x[:, -1] -= dark  # a darker camera moves every query one way
    scores = 0.85 - 0.05 * rng.random((N, 20)).cumsum(axis=1) / 5 - dark / 2
    new = rng.random(N) < newcomers
    cat[new] = CATS  # the new category: its pages show its own products
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    return SearchLog(
        window=np.full(N, window),
        embeddings=x.astype(np.float32),
        page_scores=scores,
        top1_category=cat,
        found=rng.random(N) < 0.85 - dark,
    )


def timeline(dark_at=None, new_at=None, n=12, seed=0):
    rng = np.random.default_rng(seed)
    return SearchLog.concat(
        [
            synthetic_window(
                rng,
                w,
                dark=0.4 if dark_at is not None and w >= dark_at else 0.0,
                newcomers=0.3 if new_at is not None and w >= new_at else 0.0,
            )
            for w in range(n)
        ]
    )


def test_each_shift_fires_its_monitors_and_the_control_stays_quiet():
    centroids = np.eye(D)[:CATS]
    dark = monitor_searches(timeline(dark_at=6), centroids)
    delays = dark.detection_delays({"camera": 6})["camera"]
    assert delays[["mean_shift", "top1_distance", "empty_rate"]].tolist() == [0, 0, 0]
    assert np.isnan(delays["category_psi"])  # the camera does not change the mix
    assert dark.frame.loc[6:, "recall_truth"].mean() < 0.5
    new = monitor_searches(timeline(new_at=6), centroids)
    assert new.detection_delays({"new": 6}).loc["category_psi", "new"] == 0
    assert new.fired.loc[6:, "top1_distance"].sum() == 0
    control = monitor_searches(timeline(), centroids)
    assert control.false_alarms().sum() == 0
    assert control.reference == (0, 1, 2) and not control.fired.loc[:2].any().any()
    assert control.frame["searches"].eq(N).all()


def test_the_empty_page_floor_is_the_references_and_reasons_are_written():
    report = monitor_searches(timeline(dark_at=6), np.eye(D)[:CATS])
    top1 = timeline(dark_at=6).top1_scores[: 3 * N]
    assert report.min_score == pytest.approx(np.quantile(top1, 0.02))
    assert report.frame.loc[:2, "empty_rate"].mean() == pytest.approx(0.02, abs=0.01)
    reasons = [a.reason for a in report.alerts[6]]
    assert any(r.startswith("mean_shift ") and "> 5.000" in r for r in reasons)
    threshold = report.threshold("top1_distance")
    assert threshold == pytest.approx(1.25 * report.baselines["top1_distance"])
    fixed = SearchMonitorSettings(min_score=0.0)
    assert monitor_searches(timeline(), settings=fixed).frame["empty_rate"].eq(0).all()


def test_logs_and_settings_that_cannot_be_monitored_are_refused():
    log = timeline(n=3)
    with pytest.raises(SearchMonitorError, match="has 3 windows and the reference"):
        monitor_searches(log)
    with pytest.raises(SearchMonitorError, match="one row per search"):
        SearchLog(np.zeros(3, int), np.zeros((3, D)), np.zeros((2, 20)), np.zeros(3))
    with pytest.raises(SearchMonitorError, match="reference_windows must be >= 1"):
        SearchMonitorSettings(reference_windows=0)
    with pytest.raises(ShiftTimelineError, match="style_at=30 is outside"):
        ShiftTimeline(n_windows=20, style_at=30)


def test_impression_lines_become_a_log_without_the_degraded_ones():
    lines = [
        {"kind": "visual_search", "time": 5.0, "degraded": False,
         "embedding": [1.0, 0.0], "scores": [0.9, 0.8], "category_ids": [3, 1]},
        {"kind": "visual_search", "time": 65.0, "degraded": True,
         "embedding": None, "scores": [None], "category_ids": [2]},
        {"kind": "visual_search", "time": 70.0, "degraded": False,
         "embedding": [0.0, 1.0], "scores": [], "category_ids": []},
    ]  # fmt: skip
    log = SearchLog.from_impressions(lines, lambda t: int(t // 60))
    assert log.window.tolist() == [0, 1] and log.top1_category.tolist() == [3, -1]
    assert log.top1_scores[0] == pytest.approx(0.9) and np.isnan(log.top1_scores[1])
    with pytest.raises(SearchMonitorError, match="no served visual search"):
        SearchLog.from_impressions(lines[1:2], lambda t: 0)


def test_window_traffic_injects_at_the_windows_asked():
    spec = ShiftTimeline(n_windows=10, searches=400, style_at=4, category_at=6)
    old, new = np.arange(100), np.arange(100, 120)
    before, shifted = window_traffic(spec, 3, old, new)
    assert not shifted.any() and before.max() < 100
    products, shifted = window_traffic(spec, 7, old, new)
    assert shifted.mean() == pytest.approx(0.6, abs=0.08)
    assert (products >= 100).mean() == pytest.approx(0.3, abs=0.08)
    assert np.array_equal(window_traffic(spec, 7, old, new)[0], products)  # seeded
    assert spec.injections() == {"camera shift": 4, "new category": 6}
    assert spec.control().injections() == {}


class FakeModels:
    def __init__(self, release):
        self.release = release

    def versions(self):
        return {"release": self.release}


class FakeService:
    def __init__(self):
        self.models = FakeModels("v1")

    def swap(self, models):
        old, self.models = self.models, models
        return old


def test_a_whole_release_swaps_only_after_it_loaded_and_warmed_up():
    service = FakeService()
    seen = []
    swap = swap_whole_release(service, lambda: FakeModels("v2"), seen.append)
    assert (swap.before, swap.after, service.models.release) == ("v1", "v2", "v2")
    assert seen == [service.models] and swap.load_ms >= 0 and swap.warmup_ms >= 0

    def broken(models):
        raise RuntimeError("the new embedder returned NaN")

    with pytest.raises(RuntimeError, match="NaN"):
        swap_whole_release(service, lambda: FakeModels("v3"), broken)
    assert service.models.release == "v2"  # a failed warm-up changes nothing


def test_version_mix_names_answers_whose_embedder_and_index_differ():
    good = {"release": "visual-v2", "embedder": "visual_embedder-v2",
            "index": "visual_embedder-v2"}  # fmt: skip
    assert consistent(good)
    assert not consistent({**good, "index": "visual_embedder-v1"})
    assert not consistent({**good, "release": "visual-v1"})
    mix = version_mix([{"versions": good}] * 3 + [{"versions": {**good, "index": "x"}}])
    assert isinstance(mix, pd.DataFrame)
    assert mix["answers"].tolist() == [3, 1]
    assert mix["consistent"].tolist() == [True, False]
