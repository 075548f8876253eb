"""The simulated A/B test: stable arms, slates from rankers, clicks from the truth."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.adclick.experiment import (
    assign_arms,
    run_experiment,
    sample_requests,
)
from mlsd_lib.worlds.ads import AdsWorld, AdsWorldConfig


@pytest.fixture(scope="module")
def world():
    config = AdsWorldConfig(
        num_users=2_000, num_ads=200, num_campaigns=50, num_advertisers=20
    )
    return AdsWorld(config, seed=5)


def oracle(world, day):
    def rank(users, hours, devices, candidates):
        return world.click_probability(
            users[:, None], candidates, hours[:, None], devices[:, None], 0, day
        )

    return rank


def random_ranker(seed):
    rng = np.random.default_rng(seed)
    return lambda users, hours, devices, candidates: rng.random(candidates.shape)


def test_requests_have_distinct_candidates_and_world_traffic(world):
    requests = sample_requests(world, 3_000, num_candidates=25, day=4, seed=1)
    assert requests.candidates.shape == (3_000, 25)
    ordered = np.sort(requests.candidates, axis=1)
    assert (ordered[:, 1:] != ordered[:, :-1]).all()
    assert requests.candidates.max() < 200
    assert set(np.unique(requests.hour)) <= set(range(24))
    again = sample_requests(world, 3_000, num_candidates=25, day=4, seed=1)
    np.testing.assert_array_equal(again.candidates, requests.candidates)


def test_arms_are_a_stable_function_of_the_user():
    users = np.arange(5_000)
    arms = assign_arms(users, 0.5)
    np.testing.assert_array_equal(arms, assign_arms(users[::-1], 0.5)[::-1])
    assert 0.45 < arms.mean() < 0.55
    assert (assign_arms(users, 0.1) <= arms).all()  # growing keeps the first


def test_the_better_ranker_wins_and_the_test_sees_it(world):
    requests = sample_requests(world, 30_000, num_candidates=20, day=2, seed=2)
    treatment = assign_arms(requests.user_id, 0.5)
    log = run_experiment(
        world,
        requests,
        {"random": random_ranker(0), "oracle": oracle(world, 2)},
        treatment,
        slots=3,
        seed=3,
    )
    summary = log.summary()
    assert set(summary.index) == {"random", "oracle"}
    assert (
        summary["impressions"] == summary["users"] * 0 + summary["impressions"]
    ).all()
    assert (
        summary.loc["oracle", "expected_ctr"]
        > 1.2 * summary.loc["random", "expected_ctr"]
    )
    results = log.test("random", "oracle")
    user_level = results["user-level (delta method)"]
    assert user_level.significant and user_level.relative_lift > 0.1
    # Shown slots carry position bias: slot 0 is clicked more than slot 2.
    by_slot = log.frame.groupby("position")["true_p"].mean()
    assert by_slot[0] > by_slot[2]
    # Each user stayed in one arm.
    assert (log.frame.groupby("user_id")["arm"].nunique() == 1).all()


def test_rankers_must_return_one_score_per_candidate(world):
    requests = sample_requests(world, 100, num_candidates=5, day=0)
    bad = {"a": random_ranker(0), "b": lambda u, h, d, c: np.zeros(len(u))}
    with pytest.raises(ValueError, match="shape"):
        run_experiment(world, requests, bad, np.ones(100, bool))
    with pytest.raises(ValueError, match="two arms"):
        run_experiment(world, requests, {"a": random_ranker(0)}, np.ones(100, bool))
