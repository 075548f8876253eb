"""Bandit policies and the cold-start stream: the properties the chapter relies on."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.reranking.bandit_stream import (
    ArmStream,
    StreamConfig,
    error_by_impressions,
    simulate_stream,
    summarize_new_arms,
)
from mlsd_lib.reranking.bandits import (
    BanditInputError,
    BanditPolicy,
    policy_scores,
    posterior_mean,
    posterior_sd,
)


def test_posterior_is_the_prior_without_data_and_the_rate_with_much():
    prior = np.array([0.05, 0.05])
    mean = posterior_mean([0, 5_000], [0, 10_000], prior, 50.0)
    assert mean[0] == pytest.approx(0.05)
    assert mean[1] == pytest.approx(0.5, abs=0.003)
    sd = posterior_sd([0, 5_000], [0, 10_000], prior, 50.0)
    assert sd[0] > 5 * sd[1]


def test_greedy_and_ucb_are_deterministic_thompson_follows_the_posterior():
    rng = np.random.default_rng(0)
    cand = np.array([[0, 1]] * 4_000)
    clicks, examined, prior = np.array([50.0, 0.0]), np.array([1_000.0, 0.0]), 0.05
    greedy = policy_scores(BanditPolicy("greedy"), cand, clicks, examined,
                           np.full(2, prior), 20.0, rng)  # fmt: skip
    assert np.all(greedy == greedy[0])
    ucb = policy_scores(BanditPolicy("ucb", ucb_scale=2.0), cand, clicks, examined,
                        np.full(2, prior), 20.0, rng)  # fmt: skip
    # Same mean, but the unknown arm is far less certain: UCB puts it first.
    assert np.all(ucb[:, 1] > ucb[:, 0])
    ts = policy_scores(BanditPolicy("thompson"), cand, clicks, examined,
                       np.full(2, prior), 20.0, rng)  # fmt: skip
    wins = np.mean(ts[:, 1] > ts[:, 0])
    assert 0.2 < wins < 0.6  # wide posterior: often, not always
    assert ts[:, 1].std() > 3 * ts[:, 0].std()


def test_epsilon_share_of_rows_explore_and_only_explorable_arms():
    rng = np.random.default_rng(1)
    cand = np.tile(np.arange(4), (20_000, 1))
    counts = np.full(4, 1_000.0)
    clicks = np.array([100.0, 50.0, 40.0, 30.0])
    policy = BanditPolicy("epsilon-greedy", epsilon=0.1)
    scores = policy_scores(policy, cand, clicks, counts, np.full(4, 0.05), 20.0, rng)
    mean = posterior_mean(clicks, counts, np.full(4, 0.05), 20.0)
    explored_rows = np.any(scores != mean, axis=1)
    assert explored_rows.mean() == pytest.approx(0.1, abs=0.01)
    only = np.array([False, False, True, True])
    scores = policy_scores(policy, cand, clicks, counts, np.full(4, 0.05), 20.0, rng,
                           explorable=only)  # fmt: skip
    assert np.all(scores[:, :2] == mean[:2])
    assert np.any(scores[:, 2:] != mean[2:])


def test_bad_inputs_say_what_to_fix():
    with pytest.raises(BanditInputError, match="unknown policy 'softmax': use one of"):
        BanditPolicy("softmax")
    with pytest.raises(BanditInputError, match=r"epsilon is the share .* in \[0, 1\]"):
        BanditPolicy("epsilon-greedy", epsilon=1.5)
    with pytest.raises(BanditInputError, match="strictly between 0 and 1"):
        posterior_mean([0], [0], [0.0], 10.0)
    with pytest.raises(BanditInputError, match="candidates index 2 arms"):
        policy_scores(BanditPolicy("greedy"), np.array([[0, 5]]), [0, 0], [0, 0],
                      [0.1, 0.1], 1.0, np.random.default_rng(0))  # fmt: skip
    assert issubclass(BanditInputError, MlsdError)


def _arms(num_old: int = 60, num_new: int = 20, requests: int = 20_000) -> ArmStream:
    rng = np.random.default_rng(3)
    true = rng.uniform(0.01, 0.15, num_old + num_new)
    examined = np.r_[np.full(num_old, 2_000.0), np.zeros(num_new)]
    clicks = np.round(true * examined)
    arrival = np.r_[np.zeros(num_old, int), np.linspace(1, requests // 2, num_new)]
    return ArmStream(
        true_ctr=true, prior_mean=np.full(true.size, 0.03), prior_strength=20.0,
        clicks=clicks, examined=examined, arrival=arrival.astype(np.int64),
    )  # fmt: skip


def test_stream_counts_add_up_and_common_random_numbers_hold():
    arms = _arms()
    config = StreamConfig(requests=20_000, batch_size=500, candidates=10, slots=2,
                          examination=(1.0, 0.6))  # fmt: skip
    greedy = simulate_stream(arms, BanditPolicy("greedy"), config)
    assert greedy.impressions.sum() == 20_000 * 2
    assert greedy.batch_end[-1] == 20_000
    assert np.all(greedy.oracle_clicks >= greedy.expected_clicks - 1e-9)
    assert np.all(np.diff(greedy.regret) >= -1e-9)
    # New arms cannot be shown before they arrive: at most half the stream's
    # batches can show them, and the first batch shows none.
    assert greedy.new_impressions[0] == 0
    again = simulate_stream(arms, BanditPolicy("greedy"), config)
    np.testing.assert_array_equal(again.impressions, greedy.impressions)
    ucb = simulate_stream(arms, BanditPolicy("ucb", ucb_scale=1.0), config)
    # Same candidates for every policy: the oracle is identical.
    np.testing.assert_allclose(ucb.oracle_clicks, greedy.oracle_clicks)


def test_exploration_gives_new_arms_more_impressions_than_greedy():
    arms = _arms()
    config = StreamConfig(requests=20_000, batch_size=500, candidates=10, slots=2,
                          examination=(1.0, 0.6), explore_new_only=True)  # fmt: skip
    greedy = simulate_stream(arms, BanditPolicy("greedy"), config)
    ucb = simulate_stream(arms, BanditPolicy("ucb", ucb_scale=2.0), config)
    assert ucb.new_impressions.sum() > 1.2 * greedy.new_impressions.sum()
    summary = summarize_new_arms(ucb, arms, 0.2)
    assert summary["arms"] == 20
    table = error_by_impressions([greedy, ucb], arms, [0, 100, np.inf], 0.2)
    assert table["new arms (all runs)"].sum() == 40


def test_stream_rejects_a_config_it_cannot_run():
    with pytest.raises(BanditInputError, match="slots must be between 1 and"):
        StreamConfig(candidates=2, slots=3)
    with pytest.raises(BanditInputError, match="one length"):
        ArmStream(np.ones(2) * 0.1, np.ones(3) * 0.1, 1.0, np.zeros(2), np.zeros(2),
                  np.zeros(2, int))  # fmt: skip
    arms = _arms(num_old=5, num_new=2)
    with pytest.raises(
        BanditInputError, match="cannot draw 20 distinct candidates from 5"
    ):
        simulate_stream(arms, BanditPolicy("greedy"), StreamConfig(requests=10))
