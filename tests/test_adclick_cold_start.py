"""The ads world as cold-start arms: priors without the ad's own data, arrivals."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.adclick.cold_start import (
    ColdStartInputError,
    cold_start_arms,
    true_ad_ctr,
)
from mlsd_lib.worlds.ads import AdsWorld


@pytest.fixture(scope="module")
def world_and_day():
    world = AdsWorld(seed=0)
    return world, world.simulate(1, 20_000, start_day=0)


def test_true_ctr_is_a_rate_per_ad(world_and_day):
    world, day = world_and_day
    truth = true_ad_ctr(world, day, sample=100)
    assert truth.shape == (world.config.num_ads,)
    assert np.all((truth > 0) & (truth < 1))
    # The mean true rate at slot 0 is above the logged CTR (slots 1-4 see less).
    assert truth.mean() > day.ctr


def test_new_ads_lose_their_history_and_arrive_over_the_stream(world_and_day):
    world, day = world_and_day
    truth = true_ad_ctr(world, day, sample=100)
    arms = cold_start_arms(world, day, truth, num_new=50, requests=10_000,
                           arrive_within=0.5, seed=1)  # fmt: skip
    new = arms.is_new
    assert new.sum() == 50
    assert np.all(arms.clicks[new] == 0) and np.all(arms.examined[new] == 0)
    assert arms.examined[~new].sum() > 0.5 * len(day)  # examined < shown
    assert arms.arrival[new].min() >= 1 and arms.arrival[new].max() <= 5_000
    # The campaign prior is closer to the truth than the global rate, on average.
    global_rate = arms.prior_mean[~new][0]
    assert np.mean(np.abs(arms.prior_mean[new] - truth[new])) < np.mean(
        np.abs(global_rate - truth[new])
    )


def test_cold_start_asks_for_a_possible_split(world_and_day):
    world, day = world_and_day
    truth = true_ad_ctr(world, day, sample=10)
    with pytest.raises(ColdStartInputError, match="num_new must be between 1 and"):
        cold_start_arms(world, day, truth, num_new=0, requests=100)
