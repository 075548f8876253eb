"""The recommender's online evaluation: policies in the world, A/B designs, OPE glue.

Fast tests on a small world (600 users, 400 items): frozen policies replay
the logged day exactly, a model's feed shows only what the user may see and
has not played, replaying a deterministic policy on its own log reproduces
it, the paired design of two identical arms finds a difference of exactly 0,
and the estimate of the legacy feed without exploration lands on its true
value run in a fork.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.evaluation.off_policy import ips
from mlsd_lib.recsys import online_evaluation as O
from mlsd_lib.recsys.features import world_inputs
from mlsd_lib.recsys.model_policies import (
    FeedPolicyError,
    ModelFeedPolicy,
    SlotMixturePolicy,
    frozen_policy,
)
from mlsd_lib.recsys.recipes import fit_popularity
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_feed import FeedRequest
from mlsd_lib.worlds.recsys_log import RecsysLog, source_code
from mlsd_lib.worlds.recsys_policies import LegacyPolicy

EPSILON = 0.1


@pytest.fixture(scope="module")
def setup():
    world = RecsysWorld(RecsysWorldConfig(n_users=600, n_items=400, seed=5))
    legacy = LegacyPolicy(world, epsilon=EPSILON, seed=5)
    split, legacy_at_split = O.simulate_split_with_policy(world, legacy, train_days=3)
    inputs = world_inputs(split.world, split.test_day)
    log = split.interactions()
    region = inputs.users.categorical[:, 0]
    retriever = fit_popularity(log, user_group=region)
    return split, legacy_at_split, inputs, retriever


def model_factory(split, inputs, retriever, **kwargs):
    return lambda w: ModelFeedPolicy(w, inputs, retriever, split.log, **kwargs)


def test_a_frozen_policy_serves_a_fork_exactly_as_the_original_did(setup) -> None:
    split, legacy_at_split, _, _ = setup
    again = split.world.fork().simulate(
        legacy_at_split(split.world.fork()), split.test_day
    )
    for column in ("item", "propensity", "engaged", "minutes"):
        assert np.array_equal(getattr(again, column), getattr(split.test, column))
    quiet = split.world.fork()
    log = quiet.simulate(
        frozen_policy(legacy_at_split(quiet), epsilon=0.0)(quiet), split.test_day
    )
    assert not (log.source == source_code("explore")).any()
    with pytest.raises(FeedPolicyError, match=r"no attribute 'epsilonn'.*epsilon"):
        frozen_policy(legacy_at_split(quiet), epsilonn=0.0)


def test_model_feed_shows_what_the_user_may_see_and_has_not_played(setup) -> None:
    split, _, inputs, retriever = setup
    fork = split.world.fork()
    log = fork.simulate(
        ModelFeedPolicy(fork, inputs, retriever, split.log), split.test_day
    )
    assert (log.propensity == 1).all()
    day = split.test_day
    assert (fork.items.launch_day[log.item] <= day).all()
    assert split.world.eligible(log.user, log.item).all()
    engaged = split.log.engaged
    watched = set(zip(split.log.user[engaged], split.log.item[engaged], strict=True))
    assert not any((u, i) in watched for u, i in zip(log.user, log.item, strict=True))
    feeds = log.item.reshape(-1, fork.config.feed_size)
    assert all(len(set(row)) == len(row) for row in feeds)  # no repeats in a feed


class _ByLowestId:
    """A stand-in ranker: prefers lower item ids (so its order is checkable)."""

    def predict(self, users, items, times, log):
        class _Prediction:
            score = -items.astype(float)

        return _Prediction()


def test_the_ranker_reorders_the_retrieved_candidates(setup) -> None:
    split, _, inputs, retriever = setup
    plain = ModelFeedPolicy(split.world, inputs, retriever, split.log, candidates=40)
    ranked = ModelFeedPolicy(
        split.world, inputs, retriever, split.log, candidates=40, ranker=_ByLowestId()
    )
    users = np.unique(split.test.user)[:30]
    request = FeedRequest(
        users,
        np.full(len(users), split.test_time + 60.0),
        np.arange(30),
        split.test_day,
        split.world.config.feed_size,
    )
    top_plain = plain(request).items
    top_ranked = ranked(request).items
    assert (np.diff(top_ranked, axis=1) > 0).all()  # ascending ids: the ranker's order
    # The ranked feed is the 20 lowest ids among the 40 retrieved, not the top 20.
    assert not np.array_equal(np.sort(top_plain, axis=1), top_ranked)
    with pytest.raises(FeedPolicyError, match="at least the feed size"):
        ModelFeedPolicy(split.world, inputs, retriever, split.log, candidates=5)


def test_replaying_a_deterministic_policy_on_its_own_log_reproduces_it(setup) -> None:
    split, _, inputs, retriever = setup
    make = model_factory(split, inputs, retriever)
    fork = split.world.fork()
    log = fork.simulate(make(fork), split.test_day)
    replayed = O.replay_feeds(make(split.world), log, split.world.config.feed_size)
    assert np.array_equal(replayed, log.item)


def test_slot_mixture_is_each_policy_at_its_ends(setup) -> None:
    split, legacy_at_split, inputs, retriever = setup
    make = model_factory(split, inputs, retriever)
    logs = {}
    for share in (0.0, 0.3, 1.0):
        fork = split.world.fork()
        mixture = SlotMixturePolicy(legacy_at_split(fork), make(fork), share, seed=1)
        logs[share] = fork.simulate(mixture, split.test_day)
    assert np.array_equal(logs[0.0].item, split.test.item)
    alone = split.world.fork()
    model_log = alone.simulate(make(alone), split.test_day)
    assert np.array_equal(logs[1.0].item, model_log.item)
    from_model = logs[0.3].source == source_code("retrieval")
    assert from_model.mean() == pytest.approx(0.3, abs=0.03)
    with pytest.raises(FeedPolicyError, match=r"share .* must be in \[0, 1\]"):
        SlotMixturePolicy(make(alone), make(alone), 1.5)


def test_epsilon_greedy_probability_reads_the_logged_propensity(setup) -> None:
    split, _, _, _ = setup
    test = split.test
    n = O.cell_sizes(split.world, test)
    same = O.epsilon_greedy_probability(test.propensity, n, EPSILON, EPSILON)
    assert np.allclose(same, test.propensity)
    greedy = O.epsilon_greedy_probability(test.propensity, n, EPSILON, 0.0)
    explored = test.source == source_code("explore")
    assert set(np.unique(greedy)) <= {0.0, 1.0}
    assert (greedy[~explored] == 1.0).all()
    assert greedy[explored].mean() < 0.05  # a draw rarely repeats the base item
    with pytest.raises(O.OnlineEvaluationError, match="neither 1 - eps"):
        O.epsilon_greedy_probability(test.propensity, n, 0.2, 0.0)


def test_off_policy_estimates_of_other_exploration_rates_meet_the_truth(
    setup,
) -> None:
    split, legacy_at_split, _, _ = setup
    test = split.test
    n = O.cell_sizes(split.world, test)
    estimates = {}
    for epsilon in (0.0, 0.3):
        target = O.epsilon_greedy_probability(test.propensity, n, EPSILON, epsilon)
        estimate = ips(test.engaged, test.propensity, target, groups=test.user)
        truth = O.policy_values(
            split.world,
            {"t": frozen_policy(legacy_at_split(split.world), epsilon=epsilon)},
            split.test_day,
        ).loc["t", "true engaged rate"]
        assert abs(estimate.value - truth) < 3 * estimate.se
        assert estimate.ess > 0.6 * len(test)
        estimates[epsilon] = estimate.value
    assert estimates[0.3] < test.engaged_rate < estimates[0.0]  # exploring costs


def test_mixture_probability() -> None:
    p = np.array([0.9, 0.01, 0.5])
    match = np.array([False, True, True])
    assert np.array_equal(O.mixture_probability(p, match, 0.0), p)
    assert np.allclose(O.mixture_probability(p, match, 1.0), [0, 1, 1])
    assert np.allclose(O.mixture_probability(p, match, 0.5), [0.45, 0.505, 0.75])
    with pytest.raises(O.OnlineEvaluationError, match="one per logged row"):
        O.mixture_probability(p, match[:2], 0.5)


def test_identical_arms_differ_by_exactly_zero_when_paired(setup) -> None:
    split, legacy_at_split, _, _ = setup
    designs = O.run_ab_designs(
        split.world, ("a", legacy_at_split), ("b", legacy_at_split), split.test_day
    )
    assert not (set(designs.split["a"].user) & set(designs.split["b"].user))
    results = O.ab_tests(designs)
    for metric in O.METRICS:
        paired = results["paired", metric]
        assert paired.difference == 0 and paired.sd_difference == 0
        low, high = results["split", metric].difference_ci
        assert low < 0 < high  # an A/A split: the interval covers 0
    table = O.ab_table(results)
    assert list(table.index.names) == ["design", "metric"]
    assert table.loc[("paired", "engaged plays"), "users per arm"] == len(
        np.unique(split.test.user)
    )
    with pytest.raises(O.OnlineEvaluationError, match="two different names"):
        O.run_ab_designs(split.world, ("a", legacy_at_split), ("a", legacy_at_split), 3)


def test_users_needed_follows_the_spreads(setup) -> None:
    split, legacy_at_split, inputs, retriever = setup
    designs = O.run_ab_designs(
        split.world,
        ("legacy", legacy_at_split),
        ("model", model_factory(split, inputs, retriever)),
        split.test_day,
    )
    results = O.ab_tests(designs)
    needed = O.users_needed(results, (0.05,))
    r = results["paired", "engaged plays"]
    expected = 2 * (r.sd_control**2 + r.sd_treatment**2) / r.sd_difference**2
    ratio = needed.loc[("engaged plays", 0.05), "split / paired"]
    assert ratio == pytest.approx(expected, rel=0.01)
    assert ratio > 2  # a user's two outcomes correlate: pairing pays
    with pytest.raises(O.OnlineEvaluationError, match="paired design"):
        O.users_needed({k: v for k, v in results.items() if k[0] == "split"})


def test_user_outcomes_sum_each_users_rows() -> None:
    log = RecsysLog(
        request_id=np.array([1, 1, 2, 3]),
        user=np.array([0, 0, 2, 2]),
        item=np.array([5, 6, 5, 7]),
        position=np.array([0, 1, 0, 0], np.int16),
        time=np.array([0.0, 0.0, 10.0, 20.0]),
        source=np.zeros(4, np.int8),
        propensity=np.ones(4),
        policy=np.zeros(4, np.int16),
        clicked=np.array([True, True, False, True]),
        engaged=np.array([True, False, False, True]),
        minutes=np.array([12.0, 0.2, 0.0, 40.0], np.float32),
        true_engaged_p=np.array([0.5, 0.1, 0.2, 0.3], np.float32),
        policies=("x",),
        n_users=3,
        n_items=8,
    )
    frame = O.user_outcomes(log, np.array([0, 1, 2]))
    expected = pd.DataFrame(
        {
            "engaged plays": [1.0, 0.0, 1.0],
            "engaged minutes": [12.0, 0.0, 40.0],
            "expected engaged plays": [0.6, 0.0, 0.5],
        },
        index=pd.Index([0, 1, 2], name="user"),
    )
    pd.testing.assert_frame_equal(frame, expected, atol=1e-6)
