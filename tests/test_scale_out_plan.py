"""The scale-out arithmetic: the case studies' numbers come back out, each
answer moves the way its formula says, and bad assumptions are refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mlsd_lib.capacity import CapacityInputError
from mlsd_lib.scale_out_plan import (
    BatchJobAssumptions,
    IndexAssumptions,
    OnlineStoreAssumptions,
    batch_worker_plan,
    index_shard_plan,
    redis_shard_plan,
)


def test_the_ad_click_store_needs_the_eight_shards_its_chapter_asserts():
    plan = redis_shard_plan(OnlineStoreAssumptions())
    assert plan["store memory"] == pytest.approx(116e9)
    assert plan["masters for memory"] == 8
    assert plan["masters"] == 8
    assert plan["replicas"] == 8
    assert plan["nodes"] == 16
    assert plan["memory per master, planned"] == pytest.approx(14.5e9)


def test_the_recommender_store_is_memory_bound():
    plan = redis_shard_plan(
        OnlineStoreAssumptions(raw_feature_bytes=67e9, peak_reads_s=17e3)
    )
    assert plan["store memory"] == pytest.approx(134e9)
    assert plan["masters for memory"] == 9
    assert plan["masters for reads"] == 2
    assert plan["masters"] == 9


def test_a_costlier_read_makes_the_store_read_bound():
    cheap = redis_shard_plan(OnlineStoreAssumptions(server_cpu_s_per_read=10e-6))
    costly = redis_shard_plan(OnlineStoreAssumptions(server_cpu_s_per_read=100e-6))
    assert cheap["masters for reads"] == 3  # 104k x 10 us / 0.5 = 2.08 cores
    assert costly["masters for reads"] == 21  # 104k x 100 us / 0.5 = 20.8 cores
    assert costly["masters"] == 21 > cheap["masters"] == 8
    assert costly["reads/s one master serves"] == pytest.approx(5_000)


def test_every_row_carries_its_formula():
    for plan in (
        redis_shard_plan(OnlineStoreAssumptions()),
        batch_worker_plan(BatchJobAssumptions()),
        index_shard_plan(IndexAssumptions()),
    ):
        frame = plan.to_frame()
        assert len(frame) >= 5
        assert frame.formula.str.len().min() > 3


def test_batch_workers_fit_the_day_into_the_window():
    plan = batch_worker_plan(BatchJobAssumptions())
    # 3e9 rows / 7200 s = 416,667 rows/s; 0.8 M rows/s per worker -> 1 worker
    assert plan["rows/s needed"] == pytest.approx(3e9 / 7200)
    assert plan["workers for the window"] == 1
    slow = batch_worker_plan(
        BatchJobAssumptions(rows_per_s_per_worker=50_000, parallel_efficiency=0.5)
    )
    assert slow["workers for the window"] == 17  # 416,667 / 25,000 = 16.7
    assert slow["worker-hours per day"] == pytest.approx(3e9 / 25_000 / 3600)
    # a worker holds 16 GB x 0.5 / 200 B = 40 M rows: 3e9 rows -> 75 partitions
    assert plan["partitions (at least)"] == 75


def test_the_visual_index_fits_one_shard_and_replicates_for_queries():
    plan = index_shard_plan(IndexAssumptions())
    assert plan["index shards for memory"] == 1  # 8 GB < 64 GB x 0.4
    # 6,940/s x 9.4 ms / 0.6 = 108.7 cores -> 7 machines of 16 cores
    assert plan["search cores at peak"] == pytest.approx(6_940 * 9.4e-3 / 0.6)
    assert plan["machines for search CPU"] == 7
    assert plan["replicas of each shard"] == 7
    assert plan["index machines"] == 7
    assert plan["re-ranking store shards"] == 4  # 102 GB / 25.6 GB
    bigger = index_shard_plan(replace(IndexAssumptions(), index_bytes=400e9))
    assert bigger["index shards for memory"] == 16  # the 10 B-image follow-up
    assert bigger["replicas of each shard"] == 2  # 7 machines' CPU over 16 shards
    assert bigger["index machines"] == 32


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: OnlineStoreAssumptions(peak_reads_s=0), "peak_reads_s must be"),
        (lambda: OnlineStoreAssumptions(store_overhead=0.5), "store_overhead must"),
        (lambda: OnlineStoreAssumptions(cpu_utilisation=1.5), "cpu_utilisation"),
        (lambda: OnlineStoreAssumptions(replicas_per_master=-1), "whole number"),
        (lambda: BatchJobAssumptions(parallel_efficiency=0), "parallel_efficiency"),
        (lambda: BatchJobAssumptions(rows_per_s_per_worker=float("nan")), "> 0"),
        (lambda: IndexAssumptions(rerank_store_bytes=-1), "rerank_store_bytes"),
    ],
)
def test_bad_assumptions_are_refused_with_the_rule(make, match):
    with pytest.raises(CapacityInputError, match=match):
        make()
