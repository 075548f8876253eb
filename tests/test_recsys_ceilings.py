"""Step 2's ceilings and the arms of a common-random-numbers comparison."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.evaluation.ranking import recall_at_k
from mlsd_lib.recsys.arms import ArmsError, arm_summary, run_arms
from mlsd_lib.recsys.ceilings import (
    CeilingInputError,
    held_out_plays,
    ndcg_against_truth,
    oracle_ranking,
    popularity_ranking,
    random_ranking,
    ranking_report,
    shown_before_ranking,
    true_top_relevance,
    truth_snapshot,
    watched_items,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_policies import LegacyPolicy, RandomPolicy

DAY = 86_400.0
TRAIN_DAYS = 3


@pytest.fixture(scope="module")
def split():
    """Three legacy days, a fork at the split, and the fourth (held-out) day."""
    world = RecsysWorld(RecsysWorldConfig.quick(seed=5))
    legacy = LegacyPolicy(world, seed=5)
    train = world.simulate(legacy, 0, TRAIN_DAYS)
    at_split = world.fork()
    test = world.simulate(legacy, TRAIN_DAYS, 1)
    users = np.unique(test.user[test.engaged])
    watched = watched_items(train, users)
    return at_split, train, test, users, watched


def _visible(world: RecsysWorld, users: np.ndarray, ranked: np.ndarray, day: int):
    launched = np.isin(ranked, world.available_items(day * DAY))
    return launched & world.eligible(users[:, None], np.maximum(ranked, 0))


def test_held_out_plays_are_new_engaged_plays(split) -> None:
    world, _, _, users, watched = split
    fork = world.fork()  # a random feed re-shows watched items now and then
    replay = fork.simulate(RandomPolicy(fork, seed=2), TRAIN_DAYS, 1)
    held = held_out_plays(replay, users, watched)
    n = world.n_items
    held_keys = users[held.rows()] * n + held.indices
    watched_keys = users[watched.rows()] * n + watched.indices
    engaged_keys = replay.user[replay.engaged] * n + replay.item[replay.engaged]
    assert not np.isin(held_keys, watched_keys).any()
    assert np.isin(held_keys, engaged_keys).all()
    mine = np.isin(replay.user, users) & replay.engaged
    new = ~np.isin(replay.user[mine] * n + replay.item[mine], watched_keys)
    assert (
        held.counts().sum()
        == np.unique(replay.user[mine][new] * n + replay.item[mine][new]).size
    )


def test_oracle_ranking_is_the_brute_force_truth(split) -> None:
    world, _, _, users, watched = split
    items, scores = oracle_ranking(world, users, 30, TRAIN_DAYS, watched)
    snapshot = truth_snapshot(world, TRAIN_DAYS)
    some = np.arange(0, len(users), max(1, len(users) // 5))
    catalogue = np.arange(world.n_items)
    p = snapshot.true_engaged_p(users[some, None], catalogue, TRAIN_DAYS * DAY)
    p[
        ~_visible(world, users[some], np.broadcast_to(catalogue, p.shape), TRAIN_DAYS)
    ] = 0
    for row, u in enumerate(some):
        p[row, watched.user(u)] = -1
    expected = np.argsort(-p, axis=1, kind="stable")[:, :30]
    np.testing.assert_array_equal(items[some], expected)
    np.testing.assert_allclose(
        scores[some], np.take_along_axis(p, expected, axis=1), rtol=1e-4
    )
    assert world.next_day == TRAIN_DAYS  # the snapshot was a fork


def test_every_ranking_shows_only_visible_unwatched_unique_items(split) -> None:
    world, train, _, users, watched = split
    rankings = {
        "popularity": popularity_ranking(world, train, users, 50, TRAIN_DAYS, watched),
        "random": random_ranking(world, users, 50, TRAIN_DAYS, watched, seed=1),
        "shown": shown_before_ranking(world, train, users, 50, TRAIN_DAYS, watched),
    }
    for name, ranked in rankings.items():
        assert ranked.shape == (len(users), 50), name
        assert (ranked >= 0).all(), name
        assert _visible(world, users, ranked, TRAIN_DAYS).all(), name
        assert all(len(set(row)) == 50 for row in ranked), name
        for u in range(0, len(users), 97):
            assert not np.isin(ranked[u], watched.user(u)).any(), name
    np.testing.assert_array_equal(
        random_ranking(world, users, 50, TRAIN_DAYS, watched, seed=1),
        rankings["random"],
    )


def test_popularity_and_shown_before_follow_their_counts(split) -> None:
    world, train, _, users, watched = split
    counts = np.bincount(train.item[train.engaged], minlength=world.n_items)
    pop = popularity_ranking(world, train, users, 50, TRAIN_DAYS, watched)
    assert np.all(np.diff(counts[pop], axis=1) <= 0)
    shown = shown_before_ranking(world, train, users, 50, TRAIN_DAYS, watched)
    n = world.n_items
    keys, times = np.unique(train.user * n + train.item, return_counts=True)
    for u in range(0, len(users), 53):
        key = users[u] * n + shown[u]
        at = np.minimum(np.searchsorted(keys, key), keys.size - 1)
        views = np.where(keys[at] == key, times[at], 0)
        assert np.all(np.diff(views) <= 0)  # most shown first, never-shown last


def test_the_oracle_is_the_ceiling_against_the_truth(split) -> None:
    world, _, _, users, watched = split
    oracle, _ = oracle_ranking(world, users, 100, TRAIN_DAYS, watched)
    rand = random_ranking(world, users, 100, TRAIN_DAYS, watched)
    assert ndcg_against_truth(world, users, TRAIN_DAYS, oracle, oracle) == (
        pytest.approx(1.0)
    )
    assert ndcg_against_truth(world, users, TRAIN_DAYS, rand, oracle) < 0.3
    top = true_top_relevance(oracle, 20)
    assert recall_at_k(oracle, top, 20) == 1.0
    report = ranking_report({"oracle": oracle, "random": rand}, top, ks=(20, 100))
    assert list(report.columns) == ["recall@20", "recall@100", "NDCG@20"]
    assert report.loc["oracle", "NDCG@20"] == pytest.approx(1.0)
    assert report.loc["random", "recall@100"] < 0.2


def test_logged_plays_reward_replaying_the_logging_policy(split) -> None:
    """Exposure bias: close to the oracle on logged plays, far from it on truth."""
    world, train, test, users, watched = split
    logged = held_out_plays(test, users, watched)
    oracle, _ = oracle_ranking(world, users, 100, TRAIN_DAYS, watched)
    shown = shown_before_ranking(world, train, users, 100, TRAIN_DAYS, watched)
    on_logs = recall_at_k(shown, logged, 100) / recall_at_k(oracle, logged, 100)
    truth = true_top_relevance(oracle, 100)
    on_truth = recall_at_k(shown, truth, 100)
    assert on_logs > 0.8
    assert on_truth < 0.5


def test_ceiling_inputs_are_checked(split) -> None:
    world, train, _, users, watched = split
    with pytest.raises(CeilingInputError, match="sorted and unique"):
        watched_items(train, users[::-1])
    with pytest.raises(CeilingInputError, match=r"watched has \d+ rows"):
        random_ranking(world, users[:5], 10, TRAIN_DAYS, watched)
    with pytest.raises(CeilingInputError, match="would need the past"):
        truth_snapshot(world, TRAIN_DAYS - 1)
    with pytest.raises(CeilingInputError, match=r"top must be in \[1, 3\]"):
        true_top_relevance(np.zeros((2, 3), dtype=np.int64), 4)
    with pytest.raises(CeilingInputError, match="at least one ranking"):
        ranking_report({}, watched)


# -- arms --------------------------------------------------------------------------


def test_arms_face_the_same_sessions_and_leave_the_world_alone(split) -> None:
    world = split[0]
    before = world.next_day
    logs = run_arms(
        world,
        {
            "random": lambda w: RandomPolicy(w, seed=0),
            "oracle": lambda w: w.oracle_policy(),
        },
        TRAIN_DAYS,
    )
    assert world.next_day == before
    a, b = logs["random"], logs["oracle"]
    np.testing.assert_array_equal(a.request_id, b.request_id)
    np.testing.assert_array_equal(a.user, b.user)
    table = arm_summary(logs, world.n_items)
    assert table.loc["oracle", "engaged rate"] > 3 * table.loc["random", "engaged rate"]
    assert table.loc["random", "requests"] == table.loc["oracle", "requests"]
    assert table.loc["oracle", "engaged rate"] == pytest.approx(b.engaged.mean())
    with pytest.raises(ArmsError, match="at least one arm"):
        run_arms(world, {}, TRAIN_DAYS)
    with pytest.raises(ArmsError, match="logged no impressions"):
        arm_summary({"empty": a.subset(slice(0, 0))}, world.n_items)
