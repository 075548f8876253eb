"""Bucket collisions (mlsd_lib.features.hash_collisions) and the ad-click sweep."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mlsd_lib.adclick.bucket_sweep import (
    any_id_colliding,
    collision_table,
    rehash_ids,
    sweep_buckets,
)
from mlsd_lib.adclick.recipes import Budget
from mlsd_lib.datasets.ctr import hash_ids
from mlsd_lib.errors import MlsdError
from mlsd_lib.features.hash_collisions import (
    BucketSweepError,
    colliding_rows,
    collision_stats,
    distinct_collisions,
    expected_colliding_share,
    hashed_collisions,
    hashed_table_bytes,
)
from mlsd_lib.worlds.ads import HASHED_FIELDS, AdsWorld


def test_collision_stats_counts_values_and_rows_by_hand():
    # values 1 and 2 share bucket 0; value 3 alone in bucket 1; value 1 is heavy
    values = np.array([1, 1, 1, 2, 3, 3])
    buckets = np.array([0, 0, 0, 0, 1, 1])
    stats = collision_stats(values, buckets)
    assert stats.distinct_values == 3
    assert stats.buckets_used == 2
    assert stats.colliding_value_share == pytest.approx(2 / 3)
    assert stats.colliding_row_share == pytest.approx(4 / 6)
    assert colliding_rows(values, buckets).tolist() == [1, 1, 1, 1, 0, 0]


def test_measured_collisions_match_the_uniform_hash_formula():
    values = np.arange(20_000)
    for num_buckets in (2**12, 2**15, 2**18):
        stats = hashed_collisions(values, num_buckets, salt=3)
        expected = expected_colliding_share(20_000, num_buckets)
        assert stats.colliding_value_share == pytest.approx(expected, abs=0.02)
        # hashing only the distinct values gives the per-row answer
        rows = np.repeat(values[:50], 3)
        by_rows = collision_stats(rows, hash_ids(rows, num_buckets, salt=3))
        assert hashed_collisions(rows, num_buckets, salt=3) == dataclasses.replace(
            by_rows, num_buckets=num_buckets
        )
    small = hashed_collisions(values, 2**12).colliding_value_share
    large = hashed_collisions(values, 2**18).colliding_value_share
    assert small > 0.9 > 0.1 > large


def test_expected_share_edges_and_table_bytes():
    assert expected_colliding_share(1, 16) == 0.0
    assert expected_colliding_share(2, 1) == pytest.approx(1.0)
    assert hashed_table_bytes(2**17, 4) == 2**17 * 4 * 4
    assert hashed_table_bytes(2**10, 4, 9) == 2**10 * 4 * 9 * 4


def test_bad_inputs_raise_errors_that_say_what_to_do():
    with pytest.raises(BucketSweepError, match=r"num_buckets must be >= 1, got 0"):
        hashed_collisions(np.arange(5), 0)
    with pytest.raises(BucketSweepError, match="same length"):
        collision_stats(np.arange(3), np.arange(4))
    with pytest.raises(BucketSweepError, match="non-empty"):
        collision_stats(np.array([]), np.array([]))
    with pytest.raises(BucketSweepError, match="one row count per distinct value"):
        distinct_collisions(np.arange(3), np.ones(2), 8)
    with pytest.raises(BucketSweepError, match="num_fields, width"):
        hashed_table_bytes(8, 0)
    assert issubclass(BucketSweepError, MlsdError)
    assert issubclass(BucketSweepError, ValueError)


@pytest.fixture(scope="module")
def small_world():
    world = AdsWorld(seed=0)
    log = world.simulate(days=3, impressions_per_day=4_000)
    return world, log


def test_rehash_ids_equals_the_world_hashing_at_that_size(small_world):
    world, log = small_world
    data = world.to_ctr_data(log, num_buckets=2**17)
    rehashed = rehash_ids(data, log, 2**9)
    direct = world.to_ctr_data(log, num_buckets=2**9)
    assert np.array_equal(rehashed.categorical, direct.categorical)
    assert rehashed.cardinalities == direct.cardinalities
    with pytest.raises(BucketSweepError, match="must be the log's rows"):
        rehash_ids(data.subset(np.arange(10)), log, 2**9)


def test_collision_table_falls_with_buckets_and_any_id_covers_fields(small_world):
    _, log = small_world
    table = collision_table(log, [2**8, 2**16])
    for _, rows in table.groupby("field"):
        shares = rows.sort_values("buckets")["values colliding"].to_numpy()
        assert shares[0] >= shares[1]
    users = table[table.field == "user_id"].set_index("buckets")
    assert users.loc[2**8, "values colliding"] > 0.9
    hit = any_id_colliding(log, 2**8)
    assert hit.mean() >= users.loc[2**8, "impressions colliding"]
    assert set(table.field) == set(HASHED_FIELDS)


def test_sweep_buckets_reports_each_size(small_world):
    world, log = small_world
    data = world.to_ctr_data(log, num_buckets=2**17)
    day = log.day
    frame = sweep_buckets(
        data,
        log,
        [2**6, 2**14],
        train_mask=day == 0,
        valid_mask=day == 1,
        test_mask=day == 2,
        budget=Budget(epochs=1, patience=1),
        progress=False,
    )
    assert list(frame.index) == [2**6, 2**14]
    assert (frame["LR table MB"].diff().dropna() > 0).all()
    assert (
        frame.loc[2**6, "impressions colliding"]
        > frame.loc[2**14, "impressions colliding"]
    )
    assert (frame["NE / Bayes"] > 1.0).all()
    assert frame["Bayes NE"].nunique() == 1
    with pytest.raises(BucketSweepError, match="bucket_sizes is empty"):
        sweep_buckets(
            data, log, [], train_mask=day == 0, valid_mask=day == 1, test_mask=day == 2
        )
