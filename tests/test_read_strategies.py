"""The naive and pipelined per-feature layouts and the hash-per-entity pipeline
serve exactly what the packed store serves, on both Redis backends."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
import redis

from mlsd_lib.features.examples import (
    CANDIDATE_REFS,
    SINGLE_ENTITY_REFS,
    make_ads_example,
)
from mlsd_lib.features.online import OnlineFeatures, OnlineStore
from mlsd_lib.features.read_strategies import (
    feature_key,
    hash_key,
    read_hash_pipelined,
    read_naive,
    read_pipelined,
    write_hash_per_entity,
    write_per_feature,
)
from mlsd_lib.features.views import Feature, FeatureRegistry, FeatureView

READERS = [read_naive, read_pipelined, read_hash_pipelined]


@pytest.fixture(scope="module")
def example():
    return make_ads_example(num_users=40, num_ads=12, days=10, seed=3)


def load_both_layouts(client: redis.Redis, example, as_of: pd.Timestamp) -> OnlineStore:
    store = OnlineStore(client, example.registry)
    for name, table in example.tables.items():
        store.materialize(name, table, as_of=as_of)
        write_per_feature(client, example.registry, name, table, as_of=as_of)
        write_hash_per_entity(client, example.registry, name, table, as_of=as_of)
    return store


def assert_same(expected: OnlineFeatures, actual: OnlineFeatures) -> None:
    assert actual.feature_names == expected.feature_names
    np.testing.assert_array_equal(actual.values, expected.values)
    np.testing.assert_array_equal(actual.missing, expected.missing)
    np.testing.assert_array_equal(actual.stale, expected.stale)


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_single_entity_and_candidates_match_packed_read(
    redis_client: redis.Redis, example, reader
) -> None:
    as_of = example.start + pd.Timedelta(days=5)
    store = load_both_layouts(redis_client, example, as_of)
    now = as_of + pd.Timedelta(hours=1)
    single = [{"user_id": 3, "ad_id": 7}]
    # Unknown entities (user 999, ad 555) are absent in both layouts.
    candidates = pd.DataFrame({"user_id": [3] * 12 + [999], "ad_id": [*range(12), 555]})
    for rows, refs in ((single, SINGLE_ENTITY_REFS), (candidates, CANDIDATE_REFS)):
        expected = store.read(rows, refs, now=now)
        actual = reader(redis_client, example.registry, rows, refs, now=now)
        assert_same(expected, actual)
    assert expected.missing[-1].all()
    assert not expected.missing[:-1].all()


@pytest.mark.parametrize("reader", READERS, ids=lambda r: r.__name__)
def test_staleness_and_defaults_match_packed_read(
    redis_client: redis.Redis, example, reader
) -> None:
    as_of = example.start + pd.Timedelta(days=5)
    store = load_both_layouts(redis_client, example, as_of)
    # Eight days later the 7-day counters are stale; the profile (1 year) is not.
    later = as_of + pd.Timedelta(days=8)
    rows = [{"user_id": u, "ad_id": u % 12} for u in range(10)]
    expected = store.read(rows, SINGLE_ENTITY_REFS, now=later)
    actual = reader(redis_client, example.registry, rows, SINGLE_ENTITY_REFS, now=later)
    assert_same(expected, actual)
    assert actual.stale[:, SINGLE_ENTITY_REFS.index("user_stats:clicks_7d")].any()
    assert not actual.stale[
        :, SINGLE_ENTITY_REFS.index("user_profile:age_bucket")
    ].any()


def test_nan_values_are_missing_and_served_as_defaults(redis_client) -> None:
    view = FeatureView(
        "scores",
        ("item_id",),
        (Feature("a", default=-1.0), Feature("b", default=2.5)),
        ttl=timedelta(days=1),
    )
    registry = FeatureRegistry([view])
    rows = pd.DataFrame(
        {
            "item_id": [1, 2],
            "event_timestamp": pd.to_datetime(["2026-01-01", "2026-01-01"], utc=True),
            "a": np.array([0.5, np.nan], np.float32),
            "b": np.array([np.nan, 4.0], np.float32),
        }
    )
    assert write_per_feature(redis_client, registry, "scores", rows) == 2
    assert redis_client.exists(feature_key(view, "1", "a"))
    assert not redis_client.exists(feature_key(view, "1", "b"))
    assert write_hash_per_entity(redis_client, registry, "scores", rows) == [
        hash_key(view, "1"),
        hash_key(view, "2"),
    ]
    assert redis_client.hkeys(hash_key(view, "1")) == [b"_ts", b"a"]
    now = pd.Timestamp("2026-01-01 12:00", tz="UTC")
    packed = OnlineStore(redis_client, registry)
    packed.materialize("scores", rows)
    for reader in READERS:
        result = reader(redis_client, registry, [{"item_id": 1}, {"item_id": 2}],
                        ["scores:a", "scores:b"], now=now)  # fmt: skip
        np.testing.assert_array_equal(result.values, [[0.5, 2.5], [-1.0, 4.0]])
        assert_same(packed.read(rows, ["scores:a", "scores:b"], now=now), result)


def test_naive_reads_one_command_per_value(redis_client, example) -> None:
    load_both_layouts(redis_client, example, example.end)
    commands = []

    class Counting:
        def get(self, key):
            commands.append(key)
            return redis_client.get(key)

    rows = [{"user_id": 1, "ad_id": a} for a in range(5)]
    read_naive(Counting(), example.registry, rows, CANDIDATE_REFS)
    # 9 user features fetched once, 11 ad features for each of 5 ads.
    assert len(commands) == 9 + 11 * 5


def test_missing_entity_column_is_named(redis_client, example) -> None:
    with pytest.raises(ValueError, match=r"lack columns \['ad_id'\].*ad_stats"):
        read_pipelined(redis_client, example.registry, [{"user_id": 1}], CANDIDATE_REFS)
