"""The monitoring driver of casestudies/ad_click/06_monitoring_and_retraining."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.adclick.monitoring import Traffic, seasonal_surge, simulate_days
from mlsd_lib.monitoring import RetrainingTrigger
from mlsd_lib.worlds.ads import AdsWorld


@pytest.fixture(scope="module")
def world() -> AdsWorld:
    return AdsWorld(seed=0)


@pytest.fixture(scope="module")
def log(world):
    return world.simulate(days=6, impressions_per_day=3_000)


def constant_fit(train, valid, seed):
    """A model that predicts the training CTR: fast, and enough for the driver."""
    level = float(train.labels.mean())
    return lambda data: np.full(len(data), level)


def test_seasonal_surge_shifts_mix_and_ctr_only_from_its_day(world, log):
    surged = seasonal_surge(
        world, log, category=3, from_day=4, traffic_factor=3.0, ctr_factor=3.0
    )
    assert len(surged) == len(log)
    assert np.all(np.diff(surged.ts) >= 0)
    early = log.day < 4
    assert np.array_equal(surged.clicked[surged.day < 4], log.clicked[early])
    share_before = np.mean(log.ad_category[~early] == 3)
    share_after = np.mean(surged.ad_category[surged.day >= 4] == 3)
    assert share_after > 1.5 * share_before
    hit = (surged.day >= 4) & (surged.ad_category == 3)
    assert (
        surged.clicked[hit].mean()
        > 2 * log.clicked[~early & (log.ad_category == 3)].mean()
    )


def test_broken_feature_pages_and_is_kept_out_of_training(world, log):
    traffic = Traffic.from_log(world, log).with_broken_feature(3, "device", 0)
    result = simulate_days(
        traffic, first_day=2, last_day=5, policy="daily", fit=constant_fit
    )
    actions = result.frame.set_index("day")["action"]
    assert actions[3].startswith("page") and "device" in actions[3]
    assert result.paged_days == [3]
    assert result.retrain_days == [2, 4, 5]
    assert result.drift_reports[3].status("device") == "alert"


def test_trigger_fires_on_degradation_and_respects_interval(world, log):
    surged = seasonal_surge(world, log, category=3, from_day=3, ctr_factor=4.0)
    traffic = Traffic.from_log(world, surged)
    trigger = RetrainingTrigger(ne_degradation=0.01, min_interval_days=7)
    result = simulate_days(
        traffic,
        first_day=2,
        last_day=5,
        policy="trigger",
        trigger=trigger,
        fit=constant_fit,
    )
    assert len(result.retrain_days) <= 1
    never = simulate_days(
        traffic, first_day=2, last_day=5, policy="never", fit=constant_fit
    )
    assert never.retrain_days == []
    assert set(never.frame.columns) >= {"ne", "bayes_ne", "calibration", "psi_score"}
    assert list(trigger.log_frame()["day"]) == [2, 3, 4, 5]


def test_errors_teach():
    with pytest.raises(ValueError, match="unknown policy"):
        simulate_days(None, first_day=2, last_day=3, policy="weekly")
    with pytest.raises(ValueError, match="needs a RetrainingTrigger"):
        simulate_days(None, first_day=2, last_day=3, policy="trigger")
