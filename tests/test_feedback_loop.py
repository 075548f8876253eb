"""The feedback loop: a policy retrained on its own plays, week after week."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.recsys import recipes as R
from mlsd_lib.recsys.ceilings import truth_snapshot
from mlsd_lib.recsys.features import engaged_history_at
from mlsd_lib.recsys.feedback_loop import (
    FeedbackLoopError,
    LoopArm,
    LoopConfig,
    run_feedback_loop,
    true_recall,
    week_metrics,
    weekly_launches,
)
from mlsd_lib.recsys.loop_policy import (
    LoopPolicyError,
    TwoTowerFeedPolicy,
    push_histories,
)
from mlsd_lib.reranking.exploration import ExplorationConfig
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_events import CatalogueLaunch
from mlsd_lib.worlds.recsys_log import RecsysLog, source_code
from mlsd_lib.worlds.recsys_policies import LegacyPolicy

DAY = 86_400.0
EXPLORE = ExplorationConfig(n_slots=2, positions=(2, 6))
TINY = LoopConfig(weeks=2, window_days=7, epochs=1, eval_users=100)


def tiny_world(seed: int = 0) -> RecsysWorld:
    """600 users, 300 items, 30 launches on days 7 and 14, nothing else new."""
    config = RecsysWorldConfig(
        n_users=600,
        n_items=300,
        new_item_share=0.0,
        seed=seed,
        events=weekly_launches(7, 2, 30),
    )
    return RecsysWorld(config)


@pytest.fixture(scope="module")
def started():
    """The tiny world after a week of the legacy feed, and that week's log."""
    world = tiny_world()
    start = world.simulate(LegacyPolicy(world, seed=0), 0, 7)
    return world, start


@pytest.fixture(scope="module")
def loop(started):
    world, start = started
    arms = [
        LoopArm("logq", R.LOGQ),
        LoopArm("logq+explore", R.LOGQ, EXPLORE),
        LoopArm("logq on legacy", R.LOGQ, train_on="legacy"),  # outside the loop
    ]
    legacy = {"legacy": lambda fork: LegacyPolicy(fork, seed=0)}
    return run_feedback_loop(world, start, arms, TINY, references=legacy)


# -- histories ----------------------------------------------------------------------


def test_pushed_histories_equal_the_point_in_time_histories() -> None:
    rng = np.random.default_rng(0)
    n_users, length = 30, 5
    history = np.full((n_users, length), -1, dtype=np.int64)
    users = rng.integers(0, n_users, 400)
    items = rng.integers(0, 50, 400)
    times = np.sort(rng.integers(0, 40, 400)).astype(np.float64)  # ties too
    for hour in range(40):  # one batch per "hour", in time order
        batch = times == hour
        push_histories(history, users[batch], items[batch])
        seen = Interactions.from_arrays(
            users[times <= hour],
            items[times <= hour],
            times[times <= hour],
            np.ones(int((times <= hour).sum()), bool),
            n_users=n_users,
            n_items=50,
        )
        everyone = np.arange(n_users)
        expected = engaged_history_at(seen, everyone, np.full(n_users, hour + 0.5), 5)
        np.testing.assert_array_equal(history, expected)


# -- the policy ---------------------------------------------------------------------


def test_the_policy_serves_what_users_may_see_and_have_not_watched(started) -> None:
    world, start = started
    fork = world.fork()
    policy = TwoTowerFeedPolicy(fork, R.LOGQ, exploration=EXPLORE, seed=0)
    with pytest.raises(LoopPolicyError, match="call retrain"):
        policy.user_scores(np.arange(3))
    policy.observe(start)
    policy.retrain(7, window_days=7, epochs=1)
    # It trained on exactly the engaged plays it observed in the window.
    assert policy.train_positives == int(start.engaged.sum())
    assert policy.version == "logq@day7"
    log = fork.simulate(policy, 7, 1)  # the world refuses anything not visible
    watched = start.user[start.engaged] * fork.n_items + start.item[start.engaged]
    assert not np.isin(log.user * fork.n_items + log.item, watched).any()
    feeds = log.item.reshape(-1, fork.config.feed_size)
    assert all(len(set(row)) == len(row) for row in feeds.tolist())
    explored = log.source == source_code("explore")
    assert explored.mean() == pytest.approx(2 / 20)
    assert np.isin(log.position[explored], [2, 6]).all()
    # Exploration slots hold items launched in the last 7 days, the others 1.
    assert (fork.items.launch_day[log.item[explored]] == 7).all()
    assert (log.propensity[~explored] == 1.0).all()
    assert (log.propensity[explored] < 1.0).mean() > 0.5


def test_retraining_without_plays_in_the_window_is_refused(started) -> None:
    world, start = started
    policy = TwoTowerFeedPolicy(world.fork(), R.INBATCH)
    with pytest.raises(LoopPolicyError, match="observe a log with plays first"):
        policy.retrain(7)
    policy.observe(start)
    with pytest.raises(LoopPolicyError, match="no engaged play to retrain on"):
        policy.retrain(30, window_days=3)


# -- measuring --------------------------------------------------------------------


def hand_log(rows: list[tuple[int, int, int, bool, float, str]], world) -> RecsysLog:
    """A log from (user, item, day, engaged, minutes, source) rows, in time order."""
    user, item, day, engaged, minutes, source = (
        np.array(c) for c in zip(*rows, strict=True)
    )
    n = len(rows)
    return RecsysLog(
        request_id=np.arange(n, dtype=np.int64),
        user=user.astype(np.int64),
        item=item.astype(np.int64),
        position=np.zeros(n, np.int16),
        time=day * DAY + np.arange(n, dtype=np.float64),
        source=np.array([source_code(s) for s in source], np.int8),
        propensity=np.ones(n),
        policy=np.zeros(n, np.int16),
        clicked=engaged.astype(bool),
        engaged=engaged.astype(bool),
        minutes=minutes.astype(np.float32),
        true_engaged_p=np.zeros(n, np.float32),
        policies=("hand",),
        n_users=world.n_users,
        n_items=world.n_items,
    )


def test_week_metrics_by_hand() -> None:
    world = RecsysWorld(
        RecsysWorldConfig(
            n_users=50,
            n_items=100,
            new_item_share=0.0,
            events=(CatalogueLaunch(day=3, n_items=10),),  # items 100..109
        )
    )
    log = hand_log(
        [
            (0, 100, 3, True, 10.0, "explore"),
            (0, 1, 3, False, 0.0, "retrieval"),
            (1, 1, 4, True, 5.0, "retrieval"),
            (1, 101, 4, False, 0.0, "explore"),
        ],
        world,
    )
    m = week_metrics(log, world, 3, 2, new_days=7, reach_impressions=1)
    assert m["impressions"] == 4 and m["active_users"] == 2
    assert m["new_item_share"] == pytest.approx(0.5)  # items 100 and 101
    assert m["launch_reach"] == pytest.approx(2 / 10)  # 2 of the 10 launched
    assert m["explore_share"] == pytest.approx(0.5)
    assert m["engaged_per_user"] == pytest.approx(1.0)
    assert m["minutes_per_user"] == pytest.approx(7.5)
    assert m["coverage"] == pytest.approx(3 / 110)
    assert m["top1_share"] == pytest.approx(3 / 4)  # top 2 of 110: item 1 + one
    before = week_metrics(log.subset(slice(0, 2)), world, 3, 1, reach_impressions=2)
    assert before["launch_reach"] == 0.0  # item 100 shown once, not twice
    with pytest.raises(FeedbackLoopError, match="is empty"):
        week_metrics(log.subset(slice(0, 0)), world, 3, 1)


class TruthPolicy:
    """Scores every item by the world's truth: its recall must be 1."""

    def __init__(self, world: RecsysWorld, day: int, plays: RecsysLog) -> None:
        self.snapshot, self.day, self.plays = truth_snapshot(world, day), day, plays

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        items = np.arange(self.snapshot.n_items)
        t = self.day * DAY
        return self.snapshot.true_engaged_p(users[:, None], items[None, :], t)


def test_true_recall_is_one_for_the_truth_and_less_for_a_model(started) -> None:
    world, start = started
    users = np.arange(0, 600, 7)
    truth = TruthPolicy(world, 7, start.subset(start.engaged))
    perfect = true_recall(truth, world, users, 7, k=50)  # type: ignore[arg-type]
    assert perfect["true_recall"] == pytest.approx(1.0)
    assert perfect["true_recall_new"] == pytest.approx(1.0)
    policy = TwoTowerFeedPolicy(world.fork(), R.LOGQ)
    policy.observe(start)
    policy.retrain(7, epochs=1)
    model = true_recall(policy, world, users, 7, k=50)
    assert 0.05 < model["true_recall"] < 0.95


# -- the loop ---------------------------------------------------------------------


def test_every_arm_starts_from_one_log_and_meets_the_same_users(loop) -> None:
    weekly = loop.weekly
    assert list(loop.metric("top1_share").columns) == [
        "logq",
        "logq+explore",
        "logq on legacy",
        "legacy",
    ]
    assert sorted(weekly["week"].unique()) == [0, 1, 2]
    start = weekly[weekly.week == 0].drop(columns="arm")
    assert (start.nunique(dropna=False) == 1).all()  # week 0: the same starting log
    for column in ("impressions", "active_users"):  # common random numbers
        assert (loop.metric(column).nunique(axis=1) == 1).all()
    # Week 1: both arms retrained on the same log with the same seed.
    recall = loop.metric("true_recall")
    assert recall.loc[1, "logq"] == recall.loc[1, "logq+explore"]
    assert recall.loc[1, "logq"] == recall.loc[1, "logq on legacy"]
    assert recall.loc[1:, "legacy"].isna().all()


def test_each_arm_retrains_on_its_own_plays(loop, started) -> None:
    world, start = started
    plays = loop.plays["logq"]
    assert len(plays) > start.engaged.sum() and plays.engaged.all()
    positives = loop.metric("train_positives")
    # Week 2 trained on week 1's plays, which differ between the arms.
    week1 = plays.time >= 7 * DAY
    assert positives.loc[2, "logq"] == int((week1 & (plays.time < 14 * DAY)).sum())
    assert positives.loc[2, "logq"] != positives.loc[2, "logq+explore"]
    assert world.next_day == 7  # the world itself did not move
    # The control retrains on the legacy feed's plays of week 1 instead.
    legacy_plays = (loop.metric("engaged_per_user") * loop.metric("active_users")).loc[
        1, "legacy"
    ]
    assert positives.loc[2, "logq on legacy"] == round(legacy_plays)
    assert len(loop.plays["legacy"]) > start.engaged.sum()
    # What the models know: the week's launches are placed from content alone.
    unknown, new = loop.metric("unknown_share"), loop.metric("new_item_share")
    learners = ["logq", "logq+explore", "logq on legacy"]
    assert (unknown.loc[1:, learners] >= new.loc[1:, learners]).all().all()
    known = loop.metric("known_share").loc[1:, learners]
    assert ((known > 0.2) & (known < 1)).all().all()
    assert unknown.loc[1:, "legacy"].isna().all()


def test_exploration_raises_new_item_exposure(loop) -> None:
    share = loop.metric("new_item_share")
    assert (share.loc[1:, "logq+explore"] > share.loc[1:, "logq"]).all()
    assert (loop.metric("launch_reach").loc[1:, "logq+explore"] == 1.0).all()
    explore = loop.metric("explore_share")
    assert explore.loc[1:, "logq+explore"].tolist() == pytest.approx([0.1, 0.1])
    assert (explore.loc[1:, "logq"] == 0).all()


def test_loop_settings_are_checked(started, loop) -> None:
    world, start = started
    with pytest.raises(FeedbackLoopError, match="weeks must be >= 1"):
        LoopConfig(weeks=0)
    with pytest.raises(FeedbackLoopError, match="must be unique"):
        run_feedback_loop(world, start, [LoopArm("a", R.LOGQ), LoopArm("a", R.LOGQ)])
    with pytest.raises(FeedbackLoopError, match="not a reference of this run"):
        run_feedback_loop(world, start, [LoopArm("a", R.LOGQ, train_on="legacy")])
    with pytest.raises(FeedbackLoopError, match="at least one LoopArm"):
        run_feedback_loop(world, start, [])
    late = world.fork()
    late.simulate(LegacyPolicy(late, seed=0), 7, 1)
    with pytest.raises(FeedbackLoopError, match="simulate the starting policy"):
        run_feedback_loop(late, start.subset(slice(0, 0)), [LoopArm("a", R.LOGQ)])
    with pytest.raises(FeedbackLoopError, match="no metric 'recall'; known"):
        loop.metric("recall")
    assert weekly_launches(7, 3, 5)[2] == CatalogueLaunch(day=21, n_items=5)


@pytest.mark.quality
def test_the_notebook_sized_loop_shows_what_the_chapter_says() -> None:
    """The chapter's claims, on its world: logQ concentrates more than plain
    in-batch and engages more; exploration multiplies new-item exposure."""
    config = RecsysWorldConfig(
        n_users=3_000,
        n_items=2_000,
        new_item_share=0.0,
        events=weekly_launches(7, 3, 100),
    )
    world = RecsysWorld(config)
    start = world.simulate(LegacyPolicy(world, seed=0), 0, 7)
    explore = ExplorationConfig(n_slots=1, positions=(4,))
    arms = [
        LoopArm("inbatch", R.INBATCH),
        LoopArm("logq", R.LOGQ),
        LoopArm("logq+explore", R.LOGQ, explore),
    ]
    result = run_feedback_loop(world, start, arms, LoopConfig(weeks=3, window_days=7))
    top = result.metric("top1_share").loc[1:]
    assert (top["logq"] > 1.3 * top["inbatch"]).all()
    engaged = result.metric("engaged_per_user").loc[1:]
    assert (engaged["logq"] > engaged["inbatch"]).all()
    new = result.metric("new_item_share").loc[1:]
    assert (new["logq+explore"] > 1.5 * new["logq"]).all()
