"""The batch jobs on Dask equal their pandas / single-process paths, row for row.

One loopback LocalCluster per worker count for the whole module (starting one
takes about a second); every job is compared with the function it distributes
on 1 and 2 workers, at small sizes.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
from distributed import Client

from mlsd_lib.batch import worker_memory
from mlsd_lib.batch.batch_measure import (
    build_job,
    crossover_rows,
    dask_overhead_s,
    measure_batch_jobs,
)
from mlsd_lib.batch.catalogue_embedding import embed_catalogue, worker_model_loads
from mlsd_lib.batch.dask_cluster import DaskClusterError, dask_client
from mlsd_lib.batch.entity_partitions import (
    PartitionError,
    entity_partitions,
    split_by_entity,
)
from mlsd_lib.batch.partitioned_join import BatchJobError, point_in_time_join_by_entity
from mlsd_lib.batch.partitioned_windows import windowed_counts_by_entity
from mlsd_lib.batch.worker_memory import start_sampling, stop_sampling, take_peak_mb
from mlsd_lib.config import ConfigError, load_settings
from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.features.event_stream import events_frame, synthetic_events
from mlsd_lib.features.examples import SINGLE_ENTITY_REFS, make_ads_example
from mlsd_lib.features.offline import point_in_time_join
from mlsd_lib.features.views import FeatureStoreError
from mlsd_lib.features.windows import ADS_AGGREGATIONS, windowed_counts_offline
from mlsd_lib.models.image_embedder import ImageEmbedder
from mlsd_lib.models.training import torch_threads
from mlsd_lib.net import free_loopback_port
from mlsd_lib.serving.export import load_torchscript
from mlsd_lib.visual.served_embedder import embed_pixels, export_pixel_embedder

NO_SCHEDULER: dict[str, str] = {}


@pytest.fixture(scope="module", params=[1, 2], ids=["1worker", "2workers"])
def client(request: pytest.FixtureRequest) -> Iterator[Client]:
    with dask_client(request.param, environ=NO_SCHEDULER) as c:
        yield c


@pytest.fixture(scope="module")
def ads():
    return make_ads_example(num_users=300, num_ads=20, days=10, seed=3)


def test_the_client_has_the_workers_asked_for(client: Client):
    assert len(client.nthreads()) in (1, 2)
    assert set(client.nthreads().values()) == {1}
    assert all(a.startswith("tcp://127.0.0.1:") for a in client.nthreads())


def test_point_in_time_join_equals_pandas_row_for_row(client: Client, ads):
    labels = ads.impressions.sample(frac=1.0, random_state=1)  # not time-sorted
    expected = point_in_time_join(labels, SINGLE_ENTITY_REFS, ads.registry, ads.tables)
    for partitions in (None, 25):  # 25 > 20 ads: some partitions empty
        got = point_in_time_join_by_entity(
            client,
            labels,
            SINGLE_ENTITY_REFS,
            ads.registry,
            ads.tables,
            partitions=partitions,
        )
        pd.testing.assert_frame_equal(got.frame, expected.frame)
        np.testing.assert_array_equal(got.missing, expected.missing)
        assert got.feature_names == expected.feature_names
    assert 0 < expected.missing.mean() < 1  # the TTL and defaults are exercised


def test_join_errors_name_the_problem(client: Client, ads):
    tables = {k: v for k, v in ads.tables.items() if k != "ad_stats"}
    with pytest.raises(FeatureStoreError, match="no event table given for view"):
        point_in_time_join_by_entity(
            client, ads.impressions, SINGLE_ENTITY_REFS, ads.registry, tables
        )
    with pytest.raises(FeatureStoreError, match=r"lack entity columns \['ad_id'\]"):
        point_in_time_join_by_entity(
            client,
            ads.impressions.drop(columns=["ad_id"]),
            SINGLE_ENTITY_REFS,
            ads.registry,
            ads.tables,
        )
    with pytest.raises(BatchJobError, match="partitions must be an integer >= 1"):
        point_in_time_join_by_entity(
            client,
            ads.impressions,
            SINGLE_ENTITY_REFS,
            ads.registry,
            ads.tables,
            partitions=0,
        )


def redelivered_log(n: int, seed: int) -> pd.DataFrame:
    log = events_frame(synthetic_events(n, num_users=12, impressions_per_s=0.02))
    rng = np.random.default_rng(seed)
    again = log.iloc[rng.choice(len(log), size=n // 10, replace=False)]
    # Redeliveries (same event, same entity) land later in the stream.
    mixed = pd.concat([log, again], ignore_index=True)
    order = np.argsort(
        np.concatenate([np.arange(len(log)), rng.integers(0, len(log), len(again))]),
        kind="stable",
    )
    return mixed.iloc[order].reset_index(drop=True)


def test_windowed_counts_equal_the_reference_row_for_row(client: Client):
    log = redelivered_log(1_500, seed=2)
    assert log["event_id"].duplicated().any()
    for aggregation in ADS_AGGREGATIONS:
        expected = windowed_counts_offline(log, aggregation)
        for partitions in (None, 5):
            got = windowed_counts_by_entity(
                client, log, aggregation, partitions=partitions
            )
            pd.testing.assert_frame_equal(got, expected)
    assert expected["clicks_1d"].max() > 0


def test_windowed_counts_need_the_entity_column(client: Client):
    log = events_frame(synthetic_events(20)).drop(columns=["user_id"])
    with pytest.raises(BatchJobError, match="lacks the entity column 'user_id'"):
        windowed_counts_by_entity(client, log, ADS_AGGREGATIONS[0])


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImageSet]:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    ids = np.arange(len(pixels))
    images = ImageSet(pixels, ids, ids, ids)
    model = ImageEmbedder(dim=16, widths=(8, 16), seed=0)
    path = tmp_path_factory.mktemp("embedder") / "embedder.pt"
    export_pixel_embedder(model, images.subset(np.arange(8)), path)
    return path, images


@pytest.mark.quality  # a worker's first torch import takes seconds
def test_catalogue_embedding_equals_the_single_process_loop(client: Client, exported):
    path, images = exported
    with torch_threads(1):
        expected = embed_pixels(load_torchscript(path), images, batch_size=64)
    before = sum(client.run(worker_model_loads).values())
    for partitions in (None, 7):
        got = embed_catalogue(
            client, path, images, partitions=partitions, batch_size=64
        )
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)
    loads = sum(client.run(worker_model_loads).values()) - before
    assert loads <= len(client.nthreads())  # once per worker, not per partition


def test_catalogue_embedding_refuses_what_it_cannot_embed(client: Client, exported):
    path, images = exported
    with pytest.raises(BatchJobError, match="no exported model at"):
        embed_catalogue(client, path.with_name("missing.pt"), images)
    with pytest.raises(BatchJobError, match="takes a non-empty ImageSet"):
        embed_catalogue(client, path, images.images)
    with pytest.raises(BatchJobError, match="batch_size must be >= 1"):
        embed_catalogue(client, path, images, batch_size=0)


def test_partitions_are_stable_across_dtypes_and_keep_row_order():
    frame = pd.DataFrame({"user_id": np.arange(40) % 7, "x": np.arange(40)})
    as32 = frame.astype({"user_id": np.int32})
    np.testing.assert_array_equal(
        entity_partitions(frame, ["user_id"], 4),
        entity_partitions(as32, ["user_id"], 4),
    )
    pieces = split_by_entity(frame, ["user_id"], 4)
    assert sum(len(p) for p in pieces) == len(frame)
    for piece in pieces:
        assert piece["x"].is_monotonic_increasing
        assert piece["user_id"].nunique() == 0 or (
            len(set(entity_partitions(piece, ["user_id"], 4))) == 1
        )
    with pytest.raises(PartitionError, match="num_partitions must be an integer"):
        entity_partitions(frame, ["user_id"], 0)
    with pytest.raises(PartitionError, match=r"the table lacks \['ad_id'\]"):
        entity_partitions(frame, ["ad_id"], 2)


def test_the_process_environment_is_left_as_found(monkeypatch: pytest.MonkeyPatch):
    # Dask's nanny writes OMP_NUM_THREADS=1 and more into os.environ to pass
    # them to its workers; left there, every process started later (a notebook's
    # kernel under nbval) would run torch on one thread and compute different
    # numbers. (The module's other clusters may still be running and have
    # written it already: start from an environment without it.)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    with dask_client(1, environ=NO_SCHEDULER) as c:
        assert os.environ.get("OMP_NUM_THREADS") == "1"  # the nanny did write
        assert c.submit(os.environ.get, "OMP_NUM_THREADS").result() == "1"
    assert dict(os.environ) == before


def test_workers_below_one_are_refused():
    refused = pytest.raises(DaskClusterError, match="workers must be an integer >= 1")
    with refused, dask_client(0, environ=NO_SCHEDULER):
        pass


def test_an_unreachable_scheduler_is_a_clear_error_quickly():
    address = f"tcp://127.0.0.1:{free_loopback_port()}"
    start = time.perf_counter()
    environ = {"DASK_SCHEDULER_ADDRESS": address}
    with (
        pytest.raises(DaskClusterError) as raised,
        dask_client(environ=environ, connect_timeout_s=1.0),
    ):
        pass
    assert time.perf_counter() - start < 10
    assert address in str(raised.value)
    assert "DASK_SCHEDULER_ADDRESS" in str(raised.value)


def test_the_scheduler_variable_is_read_and_checked():
    env = {"DASK_SCHEDULER_ADDRESS": "tcp://10.0.0.5:8786"}
    assert load_settings(env).dask_scheduler_address == "tcp://10.0.0.5:8786"
    assert load_settings({}).dask_scheduler_address is None
    with pytest.raises(ConfigError, match=r"DASK_SCHEDULER_ADDRESS='10\.0\.0\.5:8786'"):
        load_settings({"DASK_SCHEDULER_ADDRESS": "10.0.0.5:8786"})


def test_a_scheduler_address_is_used_instead_of_a_local_cluster():
    with dask_client(1, environ=NO_SCHEDULER) as local:
        address = local.scheduler.address
        with dask_client(environ={"DASK_SCHEDULER_ADDRESS": address}) as remote:
            assert remote.scheduler.address == address
            assert remote.submit(sum, [1, 2, 3]).result() == 6


def timings_of(pandas_s: list[float], dask_s: list[float]) -> pd.DataFrame:
    sizes = [1_000, 10_000, 100_000][: len(pandas_s)]
    rows = [("job", "pandas", 1, n, s) for n, s in zip(sizes, pandas_s, strict=True)]
    rows += [("job", "dask", 2, n, s) for n, s in zip(sizes, dask_s, strict=True)]
    return pd.DataFrame(rows, columns=["job", "engine", "workers", "rows", "seconds"])


def test_the_crossover_is_where_dask_starts_to_win_for_good():
    assert crossover_rows(timings_of([0.1, 1.0, 10.0], [1.0, 0.8, 6.0]), "job") == (
        10_000
    )
    # A win at the small size followed by a loss is noise, not a crossover.
    assert crossover_rows(timings_of([0.1, 1.0, 10.0], [0.05, 2.0, 6.0]), "job") == (
        100_000
    )
    assert crossover_rows(timings_of([0.1, 1.0], [1.0, 2.0]), "job") is None
    overhead = dask_overhead_s(timings_of([0.1, 1.0], [1.0, 2.0]), "job", workers=2)
    assert overhead == pytest.approx(0.9)
    with pytest.raises(BatchJobError, match=r"no pandas and dask \(1 workers\)"):
        crossover_rows(timings_of([0.1], [1.0]), "job", workers=1)


def test_measurement_arguments_are_checked():
    with pytest.raises(BatchJobError, match="unknown batch job 'sort'"):
        build_job("sort", 10, seed=0, workdir=".")
    with pytest.raises(BatchJobError, match="rows must be an integer >= 1"):
        build_job("windowed_counts", 0, seed=0, workdir=".")
    with pytest.raises(BatchJobError, match=r"unknown: \['sort'\]"):
        measure_batch_jobs({"sort": [10]})


@pytest.mark.quality  # starts two clusters and imports torch on their workers
def test_measure_batch_jobs_times_every_engine_and_reads_worker_memory():
    sizes = {"point_in_time_join": [300], "windowed_counts": [200, 400]}
    sizes["catalogue_embedding"] = [64]
    result = measure_batch_jobs(sizes, progress=False)
    timings = result.timings
    assert len(timings) == 4 * 3  # 4 job sizes x (pandas, dask 1, dask 2)
    assert set(result.startup_s) == {1, 2}
    assert (timings["seconds"] > 0).all()
    assert np.allclose(timings["rows_per_s"], timings["rows"] / timings["seconds"])
    dask = timings[timings["engine"] == "dask"]
    assert dask["peak_worker_mb"].between(50, 1024).all()  # under the limit
    embedding = dask[dask["job"] == "catalogue_embedding"]["peak_worker_mb"]
    assert (embedding > 200).all()  # torch and the model are loaded by then


def test_the_sampler_sees_a_short_lived_peak():
    mib = 2**20
    start_sampling(0.001)
    try:
        take_peak_mb()
        # 200 MiB mapped and touched outside malloc, then unmapped. (A numpy
        # array would come from malloc, which late in a long pytest session
        # reuses heap pages already resident, so the resident set neither rises
        # when it is allocated nor falls when it is freed.)
        block = mmap.mmap(-1, 200 * mib)
        pages = np.frombuffer(block, dtype=np.uint8)
        pages[:] = 1
        del pages
        held = psutil.Process().memory_info().rss
        # Wait until the sampler thread has run with the block held (on a
        # loaded machine it may wait longer than its 1 ms interval for the GIL).
        deadline = time.monotonic() + 10
        while worker_memory._STATE["peak"] < held - 20 * mib:
            assert time.monotonic() < deadline, "the sampler never ran"
            time.sleep(0.01)
        block.close()
        after = psutil.Process().memory_info().rss
        assert after < held - 150 * mib  # the block is gone from the process
        peak = take_peak_mb()
        assert peak * mib >= held - 20 * mib  # ... but the sampler saw it
        assert take_peak_mb() < peak - 150  # a new interval starts after a take
    finally:
        assert stop_sampling()
    assert not stop_sampling()
