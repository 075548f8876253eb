"""IVF-PQ with full-precision re-ranking (``IndexSpec(..., refine=r)``).

The same small clustered data as ``tests/test_index.py`` (4,000 x 32), on which
IVF-PQ with 8-byte codes finds about half of the exact top 10; the refinement
stage must lift that without changing anything else about the index (ids,
persistence, sharding), and its memory must be what the formula says.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from benchmark_modules import load_benchmark

from mlsd_lib.index import (
    AnnIndex,
    IndexSpec,
    IndexSpecError,
    MeasureInputError,
    ShardedIndex,
    clustered_embeddings,
    faiss_threads,
    formula_bytes_per_vector,
    formula_index_bytes,
    load_index,
    measure,
    recall_at_k,
    save_index,
    sweep,
)

D = 32
N = 4000
PLAIN = IndexSpec("ivfpq", nlist=64, nprobe=8, pq_bytes=8)
REFINED = IndexSpec("ivfpq", nlist=64, nprobe=8, pq_bytes=8, refine=10)


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread() -> Iterator[None]:
    with faiss_threads(1):
        yield


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered_embeddings(N, 200, D, n_clusters=30, seed=0)


@pytest.fixture(scope="module")
def exact_ids(data) -> np.ndarray:
    items, queries = data
    return AnnIndex(IndexSpec("flat"), D).build(items).search(queries, 10)[1]


@pytest.fixture(scope="module")
def refined(data) -> AnnIndex:
    return AnnIndex(REFINED, D).build(data[0])


def test_the_spec_names_the_faiss_refine_stage_and_its_memory():
    assert REFINED.factory_string() == "IDMap,IVF64,PQ8x8,RFlat"
    assert PLAIN.factory_string() == "IVF64,PQ8x8"
    # code + list id + the float32 copy + the IDMap's caller id
    assert formula_bytes_per_vector(REFINED, D) == 8 + 8 + 4 * D + 8
    assert formula_bytes_per_vector(REFINED, D) > formula_bytes_per_vector(
        IndexSpec("flat"), D
    )
    assert IndexSpec.from_json(REFINED.to_json()) == REFINED


def test_refinement_lifts_recall_past_the_pq_plateau(data, exact_ids, refined):
    _, queries = data
    plain = AnnIndex(PLAIN, D).build(data[0])
    plain_recall = recall_at_k(plain.search(queries, 10)[1], exact_ids, 10)
    refined_recall = recall_at_k(refined.search(queries, 10)[1], exact_ids, 10)
    # 0.56 and 0.998 when written: 100 PQ candidates hold the true top 10.
    assert plain_recall < 0.8 and refined_recall >= 0.97
    # More candidates never find fewer of the true top 10 (same lists scanned).
    recalls = []
    for factor in (1, 2, 5, 10, 40):
        refined.set_search_params(refine=factor)
        recalls.append(recall_at_k(refined.search(queries, 10)[1], exact_ids, 10))
    refined.set_search_params(refine=REFINED.refine)
    assert recalls == sorted(recalls) and recalls[0] == pytest.approx(plain_recall)


def test_refine_1_rescores_the_same_ids_with_exact_scores(data, refined):
    items, queries = data
    plain = AnnIndex(PLAIN, D).build(items)
    refined.set_search_params(refine=1)
    try:
        scores, ids = refined.search(queries, 10)
    finally:
        refined.set_search_params(refine=REFINED.refine)
    _, plain_ids = plain.search(queries, 10)
    # The same seeded lists and codebooks, so the same ten candidates ...
    np.testing.assert_array_equal(np.sort(ids, axis=1), np.sort(plain_ids, axis=1))
    # ... now scored with the full vectors, best first.
    exact = np.einsum("qd,qkd->qk", queries, items[ids])
    np.testing.assert_allclose(scores, exact, rtol=1e-5, atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_measured_bytes_include_the_full_vectors_again(data, refined):
    plain = AnnIndex(PLAIN, D).build(data[0])
    formula = formula_bytes_per_vector(REFINED, D)
    fixed = (64 + 256) * D * 4 / N  # centroids and codebooks spread over vectors
    assert formula < refined.bytes_per_vector() < formula + fixed + 1
    extra = refined.bytes_per_vector() - plain.bytes_per_vector()
    assert extra == pytest.approx(4 * D + 8, abs=1)


@pytest.mark.parametrize("spec", [REFINED, PLAIN, IndexSpec("ivf", nlist=64)])
def test_whole_index_bytes_by_formula_match_the_serialized_size(data, spec):
    index = AnnIndex(spec, D).build(data[0])
    formula = formula_index_bytes(spec, N, D)
    # faiss adds a header and, for IVF, a length per list (692 bytes at most here).
    assert 0 <= index.serialized_bytes() - formula <= 8 * 64 + 1024
    # At a billion items the fixed parts vanish: the per-vector formula rules.
    billion = formula_index_bytes(spec, 10**9, D)
    assert billion / 10**9 == pytest.approx(formula_bytes_per_vector(spec, D), 1e-3)
    with pytest.raises(IndexSpecError, match="n=0 is not a number of vectors"):
        formula_index_bytes(spec, 0, D)


def test_caller_ids_incremental_adds_and_persistence_work_with_refine(data, tmp_path):
    items, queries = data
    ids = np.arange(N, dtype=np.int64) * 10 + 7
    index = AnnIndex(REFINED, D, model_version="two-tower-3")
    index.build(items[:3000], ids[:3000])
    index.add(items[3000:], ids[3000:])
    _, found = index.search(items[3000:], 1)
    # Each added vector, searched for, comes back first (0.975 when written: its
    # exact score is the highest, when it is among the 10 PQ candidates).
    assert (found[:, 0] == ids[3000:]).mean() >= 0.95
    index.set_search_params(refine=3, nprobe=4)
    save_index(index, tmp_path)
    loaded = load_index(tmp_path)
    assert loaded.spec == index.spec and loaded.spec.refine == 3
    for before, after in zip(
        index.search(queries, 10), loaded.search(queries, 10), strict=True
    ):
        np.testing.assert_array_equal(before, after)


def test_sharded_refined_search_sets_every_shard(data, exact_ids):
    items, queries = data
    sharded = ShardedIndex(REFINED, D, 2).build(items)
    sharded.set_search_params(refine=20)
    assert [shard.spec.refine for shard in sharded.shards] == [20, 20]
    assert recall_at_k(sharded.search(queries, 10)[1], exact_ids, 10) >= 0.97


def test_refine_is_refused_where_it_cannot_apply(data):
    with pytest.raises(IndexSpecError, match="refine applies to ivfpq, not hnsw"):
        IndexSpec("hnsw", refine=4)
    with pytest.raises(IndexSpecError, match="refine=0 is not allowed"):
        IndexSpec("ivfpq", refine=0)
    plain = AnnIndex(PLAIN, D).build(data[0])
    with pytest.raises(IndexSpecError, match="needs the full vectors, which this"):
        plain.set_search_params(refine=4)


def test_the_benchmark_reports_the_refined_index(tmp_path):
    bench = load_benchmark("ann.py", "ann_benchmark_refine")
    settings = bench.Settings(n=3000, n_queries=50, nlist=64, repeats=1)
    summary = bench.run(settings)
    keys = ("recall_at_10", "p99_ms", "bytes_per_vector")
    assert {f"ivfpq_refine_{key}" for key in keys} <= set(summary)
    assert summary["ivfpq_refine_recall_at_10"] > summary["ivfpq_recall_at_10"]
    assert summary["ivfpq_refine_bytes_per_vector"] > summary["flat_bytes_per_vector"]
    assert summary["ivfpq_refine_factor"] in bench.REFINE_FACTORS
    assert summary["ivf_nprobe"] >= 1 and summary["hnsw_m"] == 32  # keys kept


def test_a_sweep_can_time_fewer_queries_than_it_measures_recall_on(
    data, exact_ids, refined, monkeypatch
):
    _, queries = data
    timed_shapes = []
    real_profile = measure.latency_profile

    def spy(index, timed_queries, k, **kwargs):
        timed_shapes.append(timed_queries.shape)
        return real_profile(index, timed_queries, k, **kwargs)

    monkeypatch.setattr(measure, "latency_profile", spy)
    full = sweep(refined, queries, exact_ids, 10, [2, 8], timed=20, repeats=2)
    assert timed_shapes == [(20, D), (20, D)]
    whole = [
        recall_at_k(_searched(refined, queries, nprobe=value), exact_ids, 10)
        for value in (2, 8)
    ]
    assert [p.recall for p in full] == whole  # recall over all 200 queries
    assert refined.spec.nprobe == REFINED.nprobe  # restored
    with pytest.raises(MeasureInputError, match="timed=0: pass a positive integer"):
        sweep(refined, queries, exact_ids, 10, [2], timed=0)


def _searched(index: AnnIndex, queries: np.ndarray, *, nprobe: int) -> np.ndarray:
    original = index.spec.nprobe
    index.set_search_params(nprobe=nprobe)
    try:
        return index.search(queries, 10)[1]
    finally:
        index.set_search_params(nprobe=original)
