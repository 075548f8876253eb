"""The ad-click features: batch history, real-time counts, profiles, training rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsd_lib.adclick import features as F
from mlsd_lib.worlds.ads import CTR_CATEGORICAL, AdsWorld, AdsWorldConfig

DAY = 86_400.0


@pytest.fixture(scope="module")
def world():
    return AdsWorld(
        AdsWorldConfig(num_users=300, num_ads=60, num_campaigns=30, num_advertisers=10),
        seed=3,
    )


@pytest.fixture(scope="module")
def log(world):
    return world.simulate(days=9, impressions_per_day=3_000)


@pytest.fixture(scope="module")
def tables(world, log):
    return F.feature_tables(world, log, num_buckets=1024)


def test_history_counts_only_what_had_arrived_by_midnight(log, tables):
    history = tables["adclick_user_history"]
    arrival = log.ts + np.nan_to_num(log.click_delay_s, nan=np.inf)
    for day in (3, 8, 9):
        published = F.WORLD_EPOCH + np.timedelta64(day, "D") + F.BATCH_LAG
        rows = history[history["event_timestamp"] == published].set_index("user_id")
        end = day * DAY
        window = (log.ts < end) & (log.ts >= end - 7 * DAY)
        for user in rows.index[:20]:
            mine = window & (log.user_id == user)
            assert rows.loc[user, "impressions_7d"] == mine.sum()
            assert rows.loc[user, "clicks_7d"] == (mine & (arrival < end)).sum()
    assert len(history) and set(history.columns) == {
        "user_id",
        "event_timestamp",
        "impressions_7d",
        "clicks_7d",
    }


def test_events_put_each_click_after_its_impression(log):
    events = F.event_log(log)
    assert len(events) == len(log) + int(log.clicked.sum())
    assert events["event_timestamp"].is_monotonic_increasing
    assert events["event_id"].is_unique
    first_seen = events.drop_duplicates("event_id").set_index("event_id")
    clicks = events[events["type"] == "click"]["event_id"].str[1:]
    impressions_at = first_seen.loc["i" + clicks, "event_timestamp"].to_numpy()
    clicks_at = first_seen.loc["c" + clicks, "event_timestamp"].to_numpy()
    assert (clicks_at >= impressions_at).all()


def test_training_rows_never_count_their_own_impression(world, log, tables):
    data = F.training_data(world, log, tables, num_buckets=1024)
    column = data.dense_names.index("log_user_impressions_1h")
    order = np.argsort(log.ts, kind="stable")
    _, first = np.unique(log.user_id[order], return_index=True)
    first_rows = order[first]
    # A user's very first impression has seen nothing in the last hour.
    assert (data.dense[first_rows, column] == 0).all()
    # Later impressions within the hour do count the earlier ones.
    assert data.dense[:, column].max() > 0
    assert data.dense.shape == (len(log), len(data.dense_names))
    np.testing.assert_array_equal(
        data.categorical, world.to_ctr_data(log, num_buckets=1024).categorical
    )


def test_profiles_hash_ids_exactly_like_the_training_rows(world, log, tables):
    base = world.to_ctr_data(log, num_buckets=1024)
    users = tables["adclick_user_profile"].set_index("user_id")
    ads = tables["adclick_ad_profile"].set_index("ad_id")
    for field in F.USER_PROFILE_FIELDS:
        j = CTR_CATEGORICAL.index(field)
        served = users.loc[log.user_id, f"{field}_code"].to_numpy()
        np.testing.assert_array_equal(served, base.categorical[:, j])
    for field in F.AD_PROFILE_FIELDS:
        j = CTR_CATEGORICAL.index(field)
        served = ads.loc[log.ad_id, f"{field}_code"].to_numpy()
        np.testing.assert_array_equal(served, base.categorical[:, j])


def test_counter_transform_is_one_definition_with_a_prior_for_the_unseen():
    counters = np.array(
        [[0, 0, 0, 0, 0, 0, 0, 0], [100, 5, 1000, 30, 3, 1, 7, 0]], np.float32
    )
    out = F.transform_counters(counters)
    with torch.inference_mode():
        graph = F.CounterTransform()(torch.from_numpy(counters)).numpy()
    np.testing.assert_array_equal(out, graph)
    assert out[0, 1] == pytest.approx(F.CTR_PRIOR)  # no history: the prior
    assert out[1, 1] == pytest.approx(6 / (100 + 1 / F.CTR_PRIOR))
    assert out[1, 0] == pytest.approx(np.log1p(100))
    assert len(F.COUNTER_DENSE) == out.shape[1] == len(F.COUNTER_REFS)


def test_registry_resolves_every_serving_reference():
    registry = F.feature_registry()
    from mlsd_lib.features.views import FeatureRef

    resolved = registry.resolve([FeatureRef.parse(r) for r in F.SERVING_STORE_REFS])
    assert len(resolved) == len(F.SERVING_STORE_REFS) == 17
