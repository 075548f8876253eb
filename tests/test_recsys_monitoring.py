"""Step 7 of the recommender: the served release as the world's policy, the daily
monitors and their alert rules, the retraining trigger fed by alerts, the
retrained release's version stamps, and the swap of a whole release.

Fast tests use the small release of ``feed_release.py`` on forks of its world
(the world itself is shared with the other feed tests and never moves here).
The scenario tests (quality) build a release on a world with a catalogue
launch and a trend, run it day by day, retrain and swap under load over HTTP.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
import redis
from feed_release import FAST, deployed_in_process, other_db, pipeline, shared_release

from mlsd_lib.evaluation.ranking import top_share
from mlsd_lib.features.histories import Histories
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import FeatureRegistry
from mlsd_lib.index.ann import AnnIndex
from mlsd_lib.index.persistence import MANIFEST_FILE
from mlsd_lib.index.spec import IndexSpec
from mlsd_lib.index.versions import IndexVersionMismatch
from mlsd_lib.monitoring.alerts import AlertRule, AlertRuleError, check_rules
from mlsd_lib.monitoring.retraining import RetrainingError, RetrainingTrigger
from mlsd_lib.recsys.feed import FeedSettings
from mlsd_lib.recsys.feed_load import feed_bodies
from mlsd_lib.recsys.feed_traffic import FeedTraffic
from mlsd_lib.recsys.gateway import FeedService, add_feed_routes
from mlsd_lib.recsys.monitor_plots import PANELS, MonitorPlotError, monitor_panel
from mlsd_lib.recsys.monitors import (
    INPUTS,
    METRICS,
    FeedMonitor,
    MonitorError,
    MonitorSettings,
    indexed_items,
    request_inputs,
)
from mlsd_lib.recsys.quick_release import build_quick_release, release_from_log
from mlsd_lib.recsys.release_checks import (
    ReleaseCheckFailed,
    release_checks,
    require_release_checks,
)
from mlsd_lib.recsys.release_swap import swap_release, warm_up
from mlsd_lib.recsys.served_policy import (
    ServedFeedPolicy,
    ServedFeedSettings,
    ServedPolicyError,
)
from mlsd_lib.recsys.serving import deploy_release, release_of
from mlsd_lib.serving.gateway import GatewayConfig, create_app
from mlsd_lib.serving.gateway.server import GatewayServer
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.registry import ModelRegistry
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_events import CatalogueLaunch, Trend
from mlsd_lib.worlds.recsys_log import RecsysLog, source_code
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

# -- alert rules (generic) ----------------------------------------------------------


def test_alert_rules_fixed_relative_and_delta_thresholds():
    fixed = AlertRule("psi", 0.25)
    relative = AlertRule("recall", 0.15, "below", "relative")
    delta = AlertRule("share", 0.05, "above", "delta")
    assert fixed.threshold() == 0.25
    assert relative.threshold(0.4) == pytest.approx(0.34)
    assert delta.threshold(0.2) == pytest.approx(0.25)
    assert fixed.fires(0.3) and not fixed.fires(0.25)
    assert relative.fires(0.33, 0.4) and not relative.fires(0.35, 0.4)
    assert delta.fires(0.26, 0.2) and not delta.fires(0.24, 0.2)
    assert relative.describe() == "recall < baseline x (1 - 15%)"
    assert delta.describe() == "share > baseline + 0.05"

    alerts = check_rules(
        [fixed, relative, delta],
        {"psi": 0.1, "recall": 0.2, "share": 0.3},
        {"recall": 0.4, "share": 0.2},
    )
    assert [a.metric for a in alerts] == ["recall", "share"]
    assert alerts[0].reason == (
        "recall 0.200 < 0.340 (baseline 0.400; rule recall < baseline x (1 - 15%))"
    )
    assert check_rules([fixed], {"psi": float("nan")}) == []  # nothing measured


def test_alert_rules_say_what_is_wrong():
    with pytest.raises(AlertRuleError, match="direction must be one of"):
        AlertRule("psi", 0.25, "sideways")
    with pytest.raises(AlertRuleError, match="a relative limit is an allowance"):
        AlertRule("recall", -0.1, "below", "relative")
    with pytest.raises(AlertRuleError, match="pass the metric's value at deployment"):
        AlertRule("recall", 0.1, "below", "relative").threshold(None)
    with pytest.raises(
        AlertRuleError, match=r"no value for 'ctr' \(known: \['psi'\]\)"
    ):
        check_rules([AlertRule("ctr", 0.1)], {"psi": 0.0})


# -- the retraining trigger, fed by alerts --------------------------------------------


def test_trigger_without_ne_retrains_on_alerts_and_keeps_its_interval():
    trigger = RetrainingTrigger(min_interval_days=3)
    trigger.deployed(7)
    assert trigger.ne_threshold is None
    assert not trigger.observe(8).retrain
    early = trigger.observe(9, alerts=["unindexed_share 0.100 > 0.050"])
    assert not early.retrain and "suppressed" in early.reasons[-1]
    fired = trigger.observe(10, alerts=["unindexed_share 0.100 > 0.050"])
    assert fired.retrain and fired.reasons == ("unindexed_share 0.100 > 0.050",)
    assert trigger.retrain_days == [10]
    assert list(trigger.log_frame()["retrain"]) == [False, False, True]


def test_trigger_errors_are_library_errors_that_say_the_order():
    with pytest.raises(RetrainingError, match="before observe"):
        RetrainingTrigger().observe(0)
    trigger = RetrainingTrigger()
    trigger.deployed(0)
    with pytest.raises(RetrainingError, match="has no baseline NE"):
        trigger.observe(1, ne=0.8)
    with pytest.raises(ValueError, match="min_interval_days must be >= 0"):
        RetrainingTrigger(min_interval_days=-1)


# -- monitor pieces ---------------------------------------------------------------


def test_request_inputs_are_the_newest_genres_and_the_activity_counts():
    items = np.array([[3, 1, 2, 0], [4, -1, -1, -1], [-1, -1, -1, -1]])
    histories = Histories(
        items=items,
        item_times=np.zeros(items.shape),
        category_counts=np.zeros((3, 2), np.int64),
        counts=np.array([[1, 7, 0, 3], [0, 0, 0, 0], [2, 2, 2, 2]], np.float32),
        counts_as_of=np.zeros(3),
        count_names=(
            "sessions_1d",
            "sessions_7d",
            "engaged_plays_1d",
            "engaged_plays_7d",
        ),
    )
    genre = np.array([10, 11, 12, 13, 14])
    inputs = request_inputs(histories, genre, history_slots=2)
    assert set(inputs) == set(INPUTS)
    assert list(inputs["history_genre"]) == ["13", "11", "14"]
    np.testing.assert_allclose(inputs["sessions_7d"], np.log1p([7, 0, 2]))
    np.testing.assert_allclose(inputs["engaged_plays_7d"], np.log1p([3, 0, 2]))
    bad = replace(histories, count_names=("a", "b", "c", "d"))
    with pytest.raises(MonitorError, match=r"the monitors need \['sessions_7d'"):
        request_inputs(bad, genre, 2)


def test_indexed_items_reads_the_ids_an_index_holds():
    rng = np.random.default_rng(0)
    ids = np.array([9, 2, 40, 7])
    index = AnnIndex(IndexSpec("flat"), 8).build(
        rng.standard_normal((4, 8)).astype(np.float32), ids
    )
    np.testing.assert_array_equal(indexed_items(index), [2, 7, 9, 40])


def test_monitor_settings_refuse_impossible_values():
    with pytest.raises(MonitorError, match="recall_k must be >= 1"):
        MonitorSettings(recall_k=0)
    with pytest.raises(ServedPolicyError, match="rank_by must be one of"):
        ServedFeedSettings(rank_by="clicks")


# -- the served release as the world's policy -------------------------------------


@pytest.fixture(scope="module")
def release():
    return shared_release()


@pytest.fixture(scope="module")
def models(release):
    return deployed_in_process(release)


def served_policy(release, models, **settings) -> ServedFeedPolicy:
    world = release.world
    return ServedFeedPolicy(
        models, release.fold, release.log, world.items.genre, world.users.region,
        world.users.maturity_limit, settings=ServedFeedSettings(**settings),
    )  # fmt: skip


def test_the_served_policy_shows_valid_feeds_with_one_logged_exploration(
    release, models
):
    world = release.world.fork()
    day = world.next_day
    policy = served_policy(release, models)
    users = np.arange(600)
    log = world.simulate(policy, day, 1, users=users)  # raises on any unseeable item
    assert log.policies == ("recs-v1",)
    rows = log.request_id.reshape(-1, world.config.feed_size)
    assert (rows == rows[:, :1]).all()  # full pages
    items = log.item.reshape(rows.shape)
    assert all(len(set(row)) == len(row) for row in items)  # no repeats
    explore = log.source == source_code("explore")
    assert set(np.unique(log.position[explore])) == {3}
    assert explore.sum() > 0.9 * len(rows)
    assert np.isnan(log.propensity[~explore]).all()
    assert (log.propensity[explore] > 0).all() and (log.propensity[explore] < 1).all()
    explored = log.item[explore]
    assert (world.items.launch_day[explored] > day - 7).all()  # new items only
    # deterministic: the same fork served twice gives the same feeds
    again = release.world.fork().simulate(
        served_policy(release, models), day, 1, users=users
    )
    np.testing.assert_array_equal(again.item, log.item)


def test_the_served_policy_never_shows_what_the_user_has_in_history(release, models):
    class Recording(ServedFeedPolicy):
        """Keeps the history rows each batch was served with."""

        used: ClassVar[list[np.ndarray]] = []

        def histories(self, users, world_times):
            found = super().histories(users, world_times)
            self.used.append(found.items)
            return found

    world = release.world
    policy = Recording(
        models, release.fold, release.log, world.items.genre, world.users.region,
        world.users.maturity_limit,
        settings=ServedFeedSettings(explore_position=None),
    )  # fmt: skip
    fork = world.fork()
    log = fork.simulate(policy, fork.next_day, 1, users=np.arange(400))
    histories = np.concatenate(policy.used)
    pages = log.item.reshape(len(histories), -1)
    assert (histories >= 0).sum() > 500  # users with a history were served
    shown_again = (pages[:, :, None] == histories[:, None, :]).any(axis=2)
    assert not shown_again.any()
    assert not (log.source == source_code("explore")).any()


def test_the_ranker_can_order_the_candidates_instead(release, models):
    world = release.world.fork()
    users = np.arange(150)
    by_ranker = world.simulate(
        served_policy(release, models, rank_by="ranker"), world.next_day, 1,
        users=users,
    )  # fmt: skip
    by_retrieval = release.world.fork().simulate(
        served_policy(release, models), world.next_day - 1, 1, users=users
    )
    assert len(by_ranker) == len(by_retrieval)
    assert not np.array_equal(by_ranker.item, by_retrieval.item)


def test_the_policy_swaps_release_between_batches(release, models):
    world = release.world.fork()
    policy = served_policy(release, models)
    renamed = replace(models, release="recs-v1-again")
    old = policy.swap(renamed)
    assert old is models and policy.release == "recs-v1-again"
    log = world.simulate(policy, world.next_day, 1, users=np.arange(100))
    assert log.policies == ("recs-v1-again",)


# -- the daily monitor -------------------------------------------------------------


@pytest.fixture(scope="module")
def monitored(release, models):
    """Three days of the small release's world, monitored (reference: 2)."""
    world = release.world.fork()
    policy = served_policy(release, models)
    monitor = FeedMonitor(
        world, policy, release.log, settings=MonitorSettings(truth_users=200)
    )
    first = world.next_day
    users = np.arange(600)
    logs = [monitor.run_day(d, users=users)[0] for d in range(first, first + 3)]
    return monitor, logs, release.log


def test_the_reference_window_sets_the_baselines_and_raises_no_alert(monitored):
    monitor, logs, _ = monitored
    frame = monitor.frame()
    assert list(frame["phase"]) == ["reference", "reference", "monitor"]
    assert set(METRICS) <= set(frame.columns)
    first = monitor.reports[0]
    assert first.alerts == () and first.values["psi_history_genre"] == 0.0
    for name in METRICS:
        expected = np.nanmean([r.values[name] for r in monitor.reports[:2]])
        assert monitor.baselines[name] == pytest.approx(expected)
    assert set(monitor.thresholds()) == {rule.metric for rule in monitor.rules}
    for report, log in zip(monitor.reports, logs, strict=True):
        n = monitor.world.n_items
        assert report.values["top1_share"] == pytest.approx(top_share(log.item, n))
        assert 0.0 <= report.values["recall_truth"] <= 1.0
        assert 0.0 <= report.values["recall_plays"] <= 1.0
        assert report.values["engaged_rate"] == pytest.approx(log.engaged_rate)


def test_the_served_ranking_is_the_exact_top_k_over_the_indexed_items(monitored):
    monitor, logs, before = monitored
    day = monitor.reports[-1].day
    models = monitor.policy.models
    users = np.unique(logs[-1].user)[:12]
    watched = monitor.watched(users)
    ranked = monitor.served_ranking(models, users, day, watched)
    embedding = monitor.policy.embed_users(
        monitor.policy.histories(users, np.full(len(users), day * SECONDS_PER_DAY)),
        users,
    )
    held = indexed_items(models.index)
    world = monitor.world
    everything = RecsysLog.concat([before, *logs])
    for row, user in enumerate(users):
        seen = set(everything.item[everything.engaged & (everything.user == user)])
        assert seen == set(watched.user(row))
        ok = [
            i for i in held
            if i not in seen and world.items.launch_day[i] <= day
            and world.eligible(np.array([user]), np.array([i]))[0]
        ]  # fmt: skip
        scores = models.catalogue.embeddings[ok] @ embedding[row]
        best = np.array(ok)[np.lexsort((ok, -scores))][: monitor.settings.recall_k]
        np.testing.assert_array_equal(ranked[row][: len(best)], best)


def test_the_monitor_reads_what_the_index_holds_now(release):
    """A title added to the live index (incremental indexing) counts at once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        models = deploy_release(
            release.registry, release.release, InProcessModelServer("fresh"),
            release.item_features,
        )  # fmt: skip
    world = release.world.fork()
    monitor = FeedMonitor(
        world, served_policy(release, models), release.log,
        settings=MonitorSettings(truth_users=50),
    )  # fmt: skip
    launch_day = world.items.launch_day
    day = int(launch_day[launch_day > world.next_day].min())
    new = np.flatnonzero((launch_day > world.next_day) & (launch_day <= day))
    users = np.unique(release.log.user)[:40]
    watched = monitor.watched(users)
    before = monitor.served_ranking(models, users, day, watched)
    assert not np.isin(new, before).any()
    models.index.add(models.catalogue.embeddings[new], new)
    after = monitor.served_ranking(models, users, day, watched)
    assert np.isin(new, after).any()
    assert np.isin(new, indexed_items(models.index)).all()


def test_end_day_needs_the_truth_read_as_the_day_began(monitored):
    monitor, logs, _ = monitored
    with pytest.raises(MonitorError, match="without start_day"):
        monitor.end_day(monitor.reports[-1].day + 1, logs[-1])


# -- release checks and a refused swap ------------------------------------------


def test_a_built_release_passes_its_checks(release):
    frame = release_checks(
        release.registry, 1, release.world.items.launch_day, release.tables.day
    )
    assert list(frame["check"]) == [
        "one version", "index stamp", "index files", "catalogue", "vectors",
        "stage production",
    ]  # fmt: skip
    assert frame["ok"].all(), frame
    require_release_checks(frame)


def test_a_tampered_release_fails_its_checks_and_is_refused_by_the_swap(
    release, models, tmp_path
):
    root = tmp_path / "registry"
    shutil.copytree(release.registry.root, root)
    registry = ModelRegistry(root)
    folder = root / "recs_index" / "versions" / "1"
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["model_version"] = "recs_user_tower-v9"  # embedded by another run
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    frame = release_checks(registry, 1, release.world.items.launch_day, 2)
    assert not frame.set_index("check").loc["index stamp", "ok"]
    with pytest.raises(ReleaseCheckFailed, match="index stamp: expected"):
        require_release_checks(frame)

    service = FeedService(pipeline(release, redis.Redis()), models)
    server = InProcessModelServer("swap")
    with pytest.raises(IndexVersionMismatch, match="recs_user_tower-v9"):
        swap_release(
            service, registry, release_of(registry, 1), server, release.item_features
        )
    assert service.models is models  # nothing changed
    assert server.model_names == []  # the index was refused before any model loaded


def test_swap_release_loads_warms_up_and_switches(release, models):
    service = FeedService(pipeline(release, redis.Redis()), models)
    server = InProcessModelServer("swap")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        swap = swap_release(
            service, release.registry, release.release, server, release.item_features
        )
    assert (swap.before, swap.after) == ("recs-v1", "recs-v1")
    assert service.models is not models and service.models.release == "recs-v1"
    assert swap.versions["index"] == swap.versions["user_tower"]
    assert sorted(server.model_names) == ["recs_ranker-v1", "recs_user_tower-v1"]
    warm_up(service.models)  # callable again: the models answer


# -- the scenario: a launch and a trend, monitors, retrain, swap under load ---------

#: v1 trains on days 0-2 and serves from day 3; the monitors start on day 10,
#: once the 7-day counts they watch cover 7 days of v1's traffic (earlier, the
#: legacy days leaving the window move them).
LAUNCH_DAY, FIRST_MONITORED = 12, 10
CONFIG = RecsysWorldConfig(n_users=1500, n_items=2000)
EVENTS = (
    CatalogueLaunch(day=LAUNCH_DAY, n_items=200, genre=5),
    Trend(genre=5, start_day=LAUNCH_DAY, end_day=LAUNCH_DAY + 28, boost=2.0),
)


def scenario_release(folder, events):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return build_quick_release(
            folder, days=3, config=replace(CONFIG, events=events),
            tower_training=FAST, ranker_training=replace(FAST, epochs=1),
        )  # fmt: skip


def run_days(v1, days: range) -> tuple[FeedMonitor, list[RecsysLog]]:
    """v1 serves from day 3; ``days`` (from :data:`FIRST_MONITORED`) monitored."""
    server = InProcessModelServer("scenario")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        models = deploy_release(v1.registry, v1.release, server, v1.item_features)
    world = v1.world
    policy = ServedFeedPolicy(
        models, v1.fold, v1.log, world.items.genre, world.users.region,
        world.users.maturity_limit,
    )  # fmt: skip
    logs = [v1.log, world.simulate(policy, 3, FIRST_MONITORED - 3)]
    monitor = FeedMonitor(
        world, policy, RecsysLog.concat(logs), settings=MonitorSettings(truth_users=300)
    )
    logs += [monitor.run_day(day)[0] for day in days]
    return monitor, logs


@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    """v1 trained on days 0-2, serving days 3-14; a launch and a trend on day 12."""
    v1 = scenario_release(tmp_path_factory.mktemp("launch") / "v1", EVENTS)
    monitor, logs = run_days(v1, range(FIRST_MONITORED, LAUNCH_DAY + 3))
    return v1, monitor, logs


@pytest.mark.quality
def test_monitors_stay_quiet_on_a_stable_world(tmp_path):
    v1 = scenario_release(tmp_path / "v1", ())
    monitor, _ = run_days(v1, range(FIRST_MONITORED, FIRST_MONITORED + 5))
    assert [r.reasons for r in monitor.reports] == [[]] * 5
    assert all(not r.alerts for r in monitor.reports)  # the truth's recall too


@pytest.mark.quality
def test_monitors_fire_after_the_launch_and_the_trend(launched):
    _, monitor, _ = launched
    by_day = {r.day: r for r in monitor.reports}
    assert all(not by_day[d].alerts for d in range(FIRST_MONITORED, LAUNCH_DAY))
    fired = {a.metric for a in by_day[LAUNCH_DAY].alerts}
    assert {"unindexed_share", "recall_truth"} <= fired
    assert by_day[LAUNCH_DAY].reasons[0].startswith("unindexed_share")
    assert all("recall_truth" not in r for r in by_day[LAUNCH_DAY].reasons)
    genre_psi = [r.values["psi_history_genre"] for r in monitor.reports]
    before = max(genre_psi[: LAUNCH_DAY - FIRST_MONITORED])
    assert genre_psi[-1] > max(0.05, 3 * before)  # the taste mix moves


@pytest.fixture(scope="module")
def retrained(launched, tmp_path_factory):
    """v2: trained on the last 3 days of the log v1 served, launch included."""
    v1, _, logs = launched
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return release_from_log(
            tmp_path_factory.mktemp("launch") / "v2", v1.world, RecsysLog.concat(logs),
            v1.fold, train_days=3, registry=v1.registry, tower_training=FAST,
            ranker_training=replace(FAST, epochs=1),
        )  # fmt: skip


@pytest.mark.quality
def test_a_retrained_release_is_consistent_and_sees_the_launch(launched, retrained):
    v1, monitor, _ = launched
    v2, world = retrained, v1.world
    assert v2.release.version == 2 and v2.registry is v1.registry
    assert tuple(v2.release.user_tower.training_window) == ("2026-03-14", "2026-03-17")
    now = int(v2.world_now // SECONDS_PER_DAY)
    frame = release_checks(v1.registry, 2, world.items.launch_day, now)
    assert frame["ok"].all(), frame
    index_v2 = deploy_release(
        v1.registry, v2.release, InProcessModelServer("v2"), v2.item_features
    ).index
    assert index_v2.model_version == "recs_user_tower-v2"
    launched_items = np.flatnonzero(world.items.launch_day == LAUNCH_DAY)
    assert np.isin(launched_items, indexed_items(index_v2)).all()
    assert not np.isin(launched_items, indexed_items(monitor.policy.models.index)).any()


@pytest.mark.quality
@pytest.mark.redis
def test_swap_v1_to_v2_under_load_fails_no_request(
    launched, retrained, tmp_path, real_redis_url
):
    v1, v2 = launched[0], retrained
    client = redis.Redis.from_url(other_db(real_redis_url, 9), socket_timeout=1.0)
    client.flushdb()
    bodies = feed_bodies(v2.user_profiles(), 60, seed=0)
    users = [b["user_id"] for b in bodies]
    replace(v2, events=v2.events[v2.events["user_id"].isin(users)]).load_histories(
        client
    )
    server = InProcessModelServer("gateway")
    models_v1 = deploy_release(v1.registry, v1.release, server, v1.item_features)
    patient = FeedSettings(feature_timeout_s=2.0, model_timeout_s=2.0)
    service = FeedService(pipeline(v2, client, settings=patient), models_v1)
    key = "swap-key"
    config = GatewayConfig(
        impression_log_path=str(tmp_path / "impressions.jsonl"), api_key=key
    )
    store = OnlineStore(client, FeatureRegistry([]))
    app = add_feed_routes(create_app(config, store, None), service, key)
    try:
        with (
            GatewayServer(app) as gateway,
            FeedTraffic(
                gateway.url, {"X-API-Key": key}, bodies, clients=3, max_seconds=60
            ) as traffic,
        ):
            traffic.wait_for(40)
            swap = swap_release(
                service, v1.registry, v2.release, server, v2.item_features
            )
            traffic.wait_for(40, sent_after=swap.switched_at)
    finally:
        v2.clear_histories(client)
        client.close()
    assert traffic.failures() == []
    labels = traffic.labels()
    assert set(labels) == {"recs-v1", "recs-v2"}, labels  # never degraded either
    after = traffic.since(swap.switched_at)
    assert after and {o.body["model_version"] for o in after} == {"recs-v2"}
    assert (swap.before, swap.after) == ("recs-v1", "recs-v2")


# -- the panel ----------------------------------------------------------------------


def panel_frame() -> pd.DataFrame:
    days = [7, 8, 9, 10]
    values = {metric: np.linspace(0.1, 0.4, 4) for metric in METRICS}
    return pd.DataFrame(
        {
            "day": days,
            "release": "recs-v1",
            "phase": ["reference", "reference", "monitor", "monitor"],
            **values,
            "alerts": ["", "", "", "unindexed_share, recall_truth"],
        }
    )


def test_the_monitor_panel_draws_arms_thresholds_alerts_and_events():
    frame = panel_frame()
    fig = monitor_panel(
        {"served": frame, "kept": frame.iloc[2:]},
        {"unindexed_share": 0.05},
        events={"launch": 10},
    )
    assert [ax.get_title() for ax in fig.axes] == list(PANELS)
    catalogue = fig.axes[1]
    # 2 metrics x 2 arms x (line + alert crosses), one threshold, one event
    assert len(catalogue.lines) == 2 * 2 * 2 + 1 + 1
    crosses = [line for line in catalogue.lines if line.get_marker() == "x"]
    assert [list(line.get_xdata()) for line in crosses] == [[10], [10], [], []]
    threshold = [
        line for line in catalogue.lines if list(line.get_ydata()) == [0.05] * 2
    ]
    assert len(threshold) == 1
    assert len(catalogue.patches) == 1  # the reference window, days 7-8
    assert catalogue.patches[0].get_x() == pytest.approx(6.5)
    with pytest.raises(MonitorPlotError, match=r"lacks columns \['alerts'\]"):
        monitor_panel({"served": frame.drop(columns="alerts")})
