"""The ANN index package: each kind on faiss, persistence, sharding, measurement.

Small clustered data (4,000 x 32 from the same mixture the benchmark uses), so
the whole file runs in seconds; the million-vector figures are
``benchmarks/ann.py``'s.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import faiss
import numpy as np
import pytest
from benchmark_modules import load_benchmark as load_ann_benchmark
from matplotlib.figure import Figure

from mlsd_lib.index import (
    KNOWN_KINDS,
    AnnIndex,
    EmbeddingMixture,
    IdInputError,
    IndexIntegrityError,
    IndexNotFound,
    IndexNotReady,
    IndexSpec,
    IndexSpecError,
    IndexVersionMismatch,
    KOutOfRange,
    MeasureInputError,
    MissingModelVersion,
    ShardedIndex,
    ShardingError,
    UnknownIndexKind,
    VectorInputError,
    clustered_embeddings,
    faiss_threads,
    formula_bytes_per_vector,
    latency_profile,
    load_index,
    read_manifest,
    recall_at_k,
    require_model_version,
    save_index,
    sweep,
)
from mlsd_lib.index.persistence import INDEX_FILE, sha256_of
from mlsd_lib.index.plots import plot_recall_latency

ROOT = Path(__file__).resolve().parents[1]
D = 32
N = 4000
#: Small enough for the test data: 4,000 vectors train 64 lists and PQ8.
SPECS = {
    "flat": IndexSpec("flat"),
    "ivf": IndexSpec("ivf", nlist=64, nprobe=8),
    "hnsw": IndexSpec("hnsw", hnsw_m=16),
    "ivfpq": IndexSpec("ivfpq", nlist=64, nprobe=8, pq_bytes=8),
}


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread() -> Iterator[None]:
    """Small builds on one thread: on a busy 2-core machine faiss's OpenMP
    barriers cost more than the work (IVF-PQ training: 1 s, against 5-10 s on
    two threads), and HNSW graphs come out the same every run."""
    with faiss_threads(1):
        yield


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return clustered_embeddings(N, 200, D, n_clusters=30, seed=0)


@pytest.fixture(scope="module")
def items(data) -> np.ndarray:
    return data[0]


@pytest.fixture(scope="module")
def queries(data) -> np.ndarray:
    return data[1]


@pytest.fixture(scope="module")
def exact_ids(items, queries) -> np.ndarray:
    return AnnIndex(SPECS["flat"], D).build(items).search(queries, 10)[1]


def caller_ids(n: int, offset: int = 0) -> np.ndarray:
    """Ids unlike positions, so a test notices positions returned as ids."""
    return (np.arange(offset, offset + n, dtype=np.int64) * 10) + 7


# --- each kind ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KNOWN_KINDS)
def test_each_kind_builds_adds_incrementally_and_finds_added_items(kind, items):
    index = AnnIndex(SPECS[kind], D, model_version="v1")
    first, later = items[:3000], items[3000:]
    index.build(first, caller_ids(3000))
    index.add(later, caller_ids(1000, offset=3000))
    assert index.ntotal == N
    scores, ids = index.search(later, 5)
    assert scores.shape == ids.shape == (1000, 5)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert np.isin(ids, caller_ids(N)).all()  # the caller's ids, never positions
    # An added vector, searched for, is found: it is searchable without rebuild.
    found = (ids == caller_ids(1000, offset=3000)[:, None]).any(axis=1).mean()
    assert found >= (0.95 if kind == "ivfpq" else 0.999), found
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_flat_equals_numpy_brute_force_inner_product(items, queries):
    ids = caller_ids(N)
    scores, found = AnnIndex(SPECS["flat"], D).build(items, ids).search(queries, 10)
    truth = queries @ items.T
    order = np.argsort(-truth, axis=1, kind="stable")[:, :10]
    np.testing.assert_array_equal(found, ids[order])
    np.testing.assert_allclose(
        scores, np.take_along_axis(truth, order, axis=1), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(("kind", "floor"), [("hnsw", 0.95), ("ivf", 0.95)])
def test_approximate_kinds_reach_a_recall_floor_on_clustered_data(
    kind, floor, items, queries, exact_ids
):
    # 0.9995 (hnsw, M=16, efSearch 64) and 0.998 (ivf, 8 of 64 lists) when written.
    _, ids = AnnIndex(SPECS[kind], D).build(items).search(queries, 10)
    assert recall_at_k(ids, exact_ids, 10) >= floor


def test_ivfpq_trades_recall_for_memory_and_reranking_recovers_it(
    items, queries, exact_ids
):
    index = AnnIndex(SPECS["ivfpq"], D).build(items)
    _, ids = index.search(queries, 100)
    at_10 = recall_at_k(ids, exact_ids, 10)
    among_100 = recall_at_k(ids, exact_ids, 10, among=100)
    assert 0.2 <= at_10 < 0.95  # 0.56 when written: quantized scores blur neighbours
    assert among_100 >= 0.95 > at_10  # the true top 10 are among its top 100


def test_more_nprobe_never_lowers_ivf_recall(items, queries, exact_ids):
    index = AnnIndex(SPECS["ivf"], D).build(items)
    points = sweep(index, queries[:50], exact_ids[:50], 10, [1, 2, 4, 8, 64])
    recalls = [p.recall for p in points]
    assert recalls == sorted(recalls)
    assert recalls[-1] == 1.0  # every list scanned: exact
    assert index.spec.nprobe == 8  # the sweep restored the setting


def test_training_is_seeded_so_builds_are_identical(items):
    def serialized(spec: IndexSpec) -> bytes:
        index = AnnIndex(spec, D).build(items).faiss_index
        return faiss.serialize_index(index).tobytes()

    for kind in ("ivf", "ivfpq"):
        assert serialized(SPECS[kind]) == serialized(SPECS[kind])
    other_seed = IndexSpec("ivf", nlist=64, seed=1)
    assert serialized(other_seed) != serialized(SPECS["ivf"])
    # HNSW's graph depends on thread interleaving: this module runs on one.
    assert serialized(SPECS["hnsw"]) == serialized(SPECS["hnsw"])


def test_search_params_change_the_faiss_index_and_the_spec(items):
    ivf = AnnIndex(SPECS["ivf"], D).build(items)
    ivf.set_search_params(nprobe=3)
    assert faiss.extract_index_ivf(ivf.faiss_index).nprobe == 3
    assert ivf.spec.nprobe == 3
    hnsw = AnnIndex(SPECS["hnsw"], D).build(items)
    hnsw.set_search_params(ef_search=99)
    assert faiss.downcast_index(hnsw.faiss_index.index).hnsw.efSearch == 99
    with pytest.raises(IndexSpecError, match="ef_search applies to hnsw, not ivf"):
        ivf.set_search_params(ef_search=10)
    with pytest.raises(IndexSpecError, match="exact search has no search-time"):
        AnnIndex(SPECS["flat"], D).set_search_params(nprobe=2)


def test_default_nlist_follows_the_number_of_vectors(items):
    index = AnnIndex(IndexSpec("ivf"), D).build(items)
    # round(4 * sqrt(4000)) = 253, capped at 4000 // 39 = 102 training points.
    assert index.spec.nlist == 102
    assert index.spec.factory_string() == "IVF102,Flat"


# --- memory ------------------------------------------------------------------


def test_bytes_per_vector_is_measured_and_ordered_ivfpq_flat_hnsw(items):
    measured = {
        kind: AnnIndex(SPECS[kind], D).build(items).bytes_per_vector()
        for kind in KNOWN_KINDS
    }
    assert measured["ivfpq"] < measured["flat"] < measured["hnsw"]
    for kind in ("flat", "hnsw"):  # no fixed parts: the formula is the size
        formula = formula_bytes_per_vector(SPECS[kind], D)
        assert measured[kind] == pytest.approx(formula, rel=0.02)
    assert formula_bytes_per_vector(SPECS["flat"], D) == 4 * D + 8
    # IVF-PQ: 8-byte code + 8-byte id, plus centroids and codebooks spread out.
    assert formula_bytes_per_vector(SPECS["ivfpq"], D) == 16
    assert 16 < measured["ivfpq"] < 16 + (64 + 256) * D * 4 / N + 1


# --- persistence and versions -----------------------------------------------


@pytest.mark.parametrize("kind", KNOWN_KINDS)
def test_save_then_load_gives_identical_search_results(kind, items, queries, tmp_path):
    index = AnnIndex(SPECS[kind], D, model_version="two-tower-7")
    index.build(items, caller_ids(N))
    if kind in ("ivf", "ivfpq"):
        index.set_search_params(nprobe=3)
    manifest = save_index(index, tmp_path / "idx")
    loaded = load_index(tmp_path / "idx")
    assert loaded.model_version == "two-tower-7"
    assert loaded.spec == index.spec and loaded.ntotal == N and loaded.d == D
    for before, after in zip(
        index.search(queries, 10), loaded.search(queries, 10), strict=True
    ):
        np.testing.assert_array_equal(before, after)
    assert manifest == read_manifest(tmp_path / "idx")
    assert manifest.sha256 == sha256_of(tmp_path / "idx" / INDEX_FILE)
    on_disk = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert on_disk["kind"] == kind and on_disk["d"] == D and on_disk["ntotal"] == N
    assert on_disk["params"] == index.spec.to_json()
    assert on_disk["model_version"] == "two-tower-7"


def test_a_tampered_index_file_is_refused_with_both_hashes(items, tmp_path):
    index = AnnIndex(SPECS["flat"], D, model_version="v1").build(items)
    manifest = save_index(index, tmp_path)
    path = tmp_path / INDEX_FILE
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # one bit pattern in the last stored float
    path.write_bytes(bytes(raw))
    actual = sha256_of(path)
    with pytest.raises(IndexIntegrityError) as caught:
        load_index(tmp_path)
    message = str(caught.value)
    assert str(path) in message and actual in message and manifest.sha256 in message
    assert "changed after it was saved" in message


def test_saving_needs_a_model_version_and_loading_needs_a_manifest(items, tmp_path):
    index = AnnIndex(SPECS["flat"], D).build(items)
    with pytest.raises(MissingModelVersion, match="records no model_version"):
        save_index(index, tmp_path)
    with pytest.raises(IndexNotFound, match=r"no manifest\.json in"):
        load_index(tmp_path)
    with pytest.raises(IndexNotReady, match="not built yet"):
        save_index(AnnIndex(SPECS["flat"], D, model_version="v1"), tmp_path)


def test_an_index_from_another_model_version_is_refused(items, tmp_path):
    save_index(AnnIndex(SPECS["flat"], D, model_version="v1").build(items), tmp_path)
    loaded = load_index(tmp_path)
    require_model_version(loaded, "v1")  # same version: no error
    with pytest.raises(IndexVersionMismatch) as caught:
        require_model_version(loaded, "v2")
    message = str(caught.value)
    assert "model version 'v1'" in message and "model version 'v2'" in message
    assert "rebuild the index with the item tower of 'v2'" in message
    with pytest.raises(IndexVersionMismatch, match="records no model version"):
        require_model_version(AnnIndex(SPECS["flat"], D), "v2")


# --- sharding ----------------------------------------------------------------


def ties_by_id(scores: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exactly tied scores ordered by id, as the shard merge orders them (faiss
    leaves ties in heap order; at k=1500 about 10 of 300,000 pairs tie)."""
    order = np.lexsort((ids, -scores), axis=1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


@pytest.mark.parametrize("assign", ["modulo", "range"])
def test_sharded_exact_search_equals_unsharded_exact_search(assign, items, queries):
    ids = caller_ids(N)
    single = AnnIndex(SPECS["flat"], D).build(items[:3000], ids[:3000])
    sharded = ShardedIndex(SPECS["flat"], D, 3, assign=assign)
    sharded.build(items[:3000], ids[:3000])
    assert [s.ntotal for s in sharded.shards] == [1000, 1000, 1000]
    for k in (1, 10, 1500):  # 1500 > a shard's 1000 vectors
        got_scores, got_ids = sharded.search(queries, k)
        want_scores, want_ids = ties_by_id(*single.search(queries, k))
        np.testing.assert_array_equal(got_scores, want_scores)
        np.testing.assert_array_equal(got_ids, want_ids)
    # Incremental adds route to shards and keep the equality.
    single.add(items[3000:], ids[3000:])
    sharded.add(items[3000:], ids[3000:])
    assert sharded.ntotal == N
    for got, want in zip(
        sharded.search(queries, 10),
        ties_by_id(*single.search(queries, 10)),
        strict=True,
    ):
        np.testing.assert_array_equal(got, want)
    counts = [s.ntotal for s in sharded.shards]
    # Modulo spreads new ids evenly; range sends every larger id to the last shard.
    assert counts == ([1333, 1334, 1333] if assign == "modulo" else [1000, 1000, 2000])


def test_sharded_approximate_search_and_its_version(items, queries, exact_ids):
    sharded = ShardedIndex(SPECS["hnsw"], D, 2, model_version="v3").build(items)
    _, ids = sharded.search(queries, 10)
    assert recall_at_k(ids, exact_ids, 10) >= 0.95
    require_model_version(sharded, "v3")
    with pytest.raises(IndexVersionMismatch):
        require_model_version(sharded, "v4")
    sharded.set_search_params(ef_search=20)
    assert all(s.spec.ef_search == 20 for s in sharded.shards)
    per_shard = sum(s.serialized_bytes() for s in sharded.shards) / N
    assert sharded.bytes_per_vector() == pytest.approx(per_shard)


def test_sharding_errors_say_what_to_change(items):
    with pytest.raises(ShardingError, match="unknown assignment 'hash'"):
        ShardedIndex(SPECS["flat"], D, 2, assign="hash")
    with pytest.raises(ShardingError, match="cannot fill 5 shards"):
        ShardedIndex(SPECS["flat"], D, 5, assign="range").build(items[:3])
    with pytest.raises(IndexNotReady, match="fixes its ranges at build time"):
        ShardedIndex(SPECS["flat"], D, 2, assign="range").shard_of(np.arange(3))


# --- errors -------------------------------------------------------------------


def test_unknown_kind_lists_the_known_kinds():
    with pytest.raises(UnknownIndexKind, match="'annoy': choose one of flat, ivf"):
        IndexSpec("annoy")


def test_bad_parameters_are_refused_with_the_range(items):
    with pytest.raises(IndexSpecError, match="nprobe=0 is not allowed"):
        IndexSpec("ivf", nprobe=0)
    with pytest.raises(IndexSpecError, match=r"pq_bytes=5 does not divide d=32.*16"):
        AnnIndex(IndexSpec("ivfpq", pq_bytes=5), D)
    with pytest.raises(IndexSpecError, match="nlist=64 needs at least 256 training"):
        AnnIndex(SPECS["ivfpq"], D).build(items[:100])
    with pytest.raises(IndexSpecError, match="unknown index parameters"):
        IndexSpec.from_json({"kind": "flat", "efsearch": 3})


def test_vectors_of_the_wrong_shape_or_dtype_are_refused(items):
    index = AnnIndex(SPECS["flat"], D)
    with pytest.raises(VectorInputError, match=r"shape \(10, 16\).*32-dimensional"):
        index.build(np.zeros((10, 16), dtype=np.float32))
    with pytest.raises(VectorInputError, match=r"float64.*pass np\.ascontiguousarray"):
        index.build(items.astype(np.float64))
    with pytest.raises(VectorInputError, match="not C-contiguous"):
        index.build(np.asfortranarray(items))
    with pytest.raises(VectorInputError, match=r"pass x\[None, :\]"):
        index.build(items[0])
    with pytest.raises(VectorInputError, match="must be a numpy array"):
        index.build(items.tolist())
    bad = items[:10].copy()
    bad[3, 0] = np.nan
    with pytest.raises(VectorInputError, match=r"NaN or infinity in 1 row\(s\), first"):
        index.build(bad)
    index.build(items)
    with pytest.raises(VectorInputError, match="queries have dtype float64"):
        index.search(items[:2].astype(np.float64), 3)


def test_ids_must_be_distinct_non_negative_integers(items):
    index = AnnIndex(SPECS["flat"], D)
    with pytest.raises(IdInputError, match="dtype float64: pass integers"):
        index.build(items[:3], np.array([1.0, 2.0, 3.0]))
    with pytest.raises(IdInputError, match=r"shape \(2,\), but there are 3 vectors"):
        index.build(items[:3], np.array([1, 2]))
    with pytest.raises(IdInputError, match="ids must be >= 0"):
        index.build(items[:3], np.array([1, -1, 2]))
    with pytest.raises(IdInputError, match=r"repeat within the batch \(e.g. \[2\]\)"):
        index.build(items[:3], np.array([2, 2, 5]))


def test_k_out_of_range_names_the_allowed_range(items, queries):
    index = AnnIndex(SPECS["flat"], D).build(items[:50])
    with pytest.raises(KOutOfRange, match=r"k=0 is out of range.*1 to 50 neighbours"):
        index.search(queries, 0)
    with pytest.raises(KOutOfRange, match="k=51 is out of range: the index holds 50"):
        index.search(queries, 51)
    with pytest.raises(KOutOfRange, match="not an integer"):
        index.search(queries, 2.0)


def test_search_on_an_unbuilt_or_empty_index_says_what_to_call_first(queries):
    for kind in KNOWN_KINDS:
        with pytest.raises(IndexNotReady, match="not built yet; call build"):
            AnnIndex(SPECS[kind], D).search(queries, 1)
        with pytest.raises(IndexNotReady, match="cannot add vectors"):
            AnnIndex(SPECS[kind], D).add(queries, np.arange(len(queries)))
    empty = faiss.index_factory(D, "IDMap,Flat", faiss.METRIC_INNER_PRODUCT)
    index = AnnIndex.from_faiss(empty, SPECS["flat"], model_version=None)
    with pytest.raises(IndexNotReady, match="is empty; add"):
        index.search(queries, 1)


# --- measurement -------------------------------------------------------------


def test_recall_counts_the_overlap_and_ignores_padding():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    assert recall_at_k(exact, exact, 4) == 1.0
    assert recall_at_k(exact[::-1], exact, 4) == 0.0
    approx = np.array([[4, 3, -1, -1], [5, 9, -1, -1]])  # padded rows
    assert recall_at_k(approx, exact, 4) == pytest.approx((2 + 1) / 8)
    assert recall_at_k(approx, exact, 2) == pytest.approx((0 + 1) / 4)
    wide = np.array([[9, 1, 2, 3, 4], [8, 6, 0, 5, 11]])
    assert recall_at_k(wide, exact, 2, among=5) == 1.0
    assert recall_at_k(wide, exact, 2, among=3) == pytest.approx(3 / 4)
    repeated = np.array([[1, 1, 1, 1], [5, 5, 6, 6]])  # an id added twice
    assert recall_at_k(repeated, exact, 4) == pytest.approx((1 + 2) / 8)
    with pytest.raises(MeasureInputError, match="k=5 is out of range"):
        recall_at_k(exact, exact, 5)
    with pytest.raises(MeasureInputError, match="among=6 is out of range"):
        recall_at_k(exact, exact, 2, among=6)
    with pytest.raises(MeasureInputError, match="2 rows and exact_ids 1"):
        recall_at_k(exact, exact[:1], 2)
    with pytest.raises(MeasureInputError, match="integer ids that search returned"):
        recall_at_k(exact.astype(float), exact, 2)


def test_latency_profile_times_each_query_and_restores_threads(items, queries):
    index = AnnIndex(SPECS["hnsw"], D).build(items)
    threads = faiss.omp_get_max_threads()
    profile = latency_profile(index, queries[:40], 10, repeats=3, warmup=5)
    assert faiss.omp_get_max_threads() == threads
    assert profile.latencies_ms.shape == (3, 40)
    assert (profile.latencies_ms > 0).all()
    assert profile.steady_p99_ms <= profile.p99_ms
    assert 0 < profile.p50_ms <= profile.p99_ms
    assert profile.summary()["timings"] == 120
    with pytest.raises(MeasureInputError, match="repeats=0"):
        latency_profile(index, queries, 10, repeats=0)


def test_sweep_refuses_exact_search_and_plots_one_line_per_kind(
    items, queries, exact_ids
):
    flat = AnnIndex(SPECS["flat"], D).build(items)
    with pytest.raises(MeasureInputError, match="no search-time parameter to sweep"):
        sweep(flat, queries, exact_ids, 10, [1])
    points = []
    for kind in ("ivf", "hnsw"):
        index = AnnIndex(SPECS[kind], D).build(items)
        points += sweep(index, queries[:20], exact_ids[:20], 10, [4, 16])
    assert [p.param for p in points] == ["nprobe"] * 2 + ["ef_search"] * 2
    figure = plot_recall_latency(points, target_recall=0.95, target_p99_ms=0.5)
    assert isinstance(figure, Figure)
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "ivf (nprobe)",
        "hnsw (ef_search)",
    ]


def test_synthetic_embeddings_are_seeded_unit_and_queries_are_new_points():
    items, queries = clustered_embeddings(2000, 100, 16, n_clusters=20, seed=3)
    again, _ = clustered_embeddings(2000, 100, 16, n_clusters=20, seed=3)
    np.testing.assert_array_equal(items, again)
    assert items.dtype == np.float32 and items.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(items, axis=1), 1.0, rtol=1e-5)
    assert (queries @ items.T).max() < 0.9999  # no query is an indexed vector
    mixture = EmbeddingMixture.random(16, 20, seed=0)
    assert mixture.weights[0] == pytest.approx(mixture.weights[9] * 10)
    # Clustered, not uniform: the nearest item is far closer than a random one.
    scores = queries @ items.T
    assert scores.max(axis=1).mean() > scores.mean() + 0.5


# --- the benchmark -------------------------------------------------------------


BENCHMARK_KEYS = {
    "n",
    "d",
    "hnsw_recall_at_10",
    "hnsw_p99_ms",
    "hnsw_p50_ms",
    "hnsw_p99_all_ms",
    "hnsw_build_s",
    "hnsw_bytes_per_vector",
    "hnsw_m",
    "hnsw_ef_search",
    "ivf_recall_at_10",
    "ivf_p99_ms",
    "ivf_p50_ms",
    "ivf_nprobe",
    "ivf_build_s",
    "ivfpq_recall_at_10",
    "ivfpq_p99_ms",
    "ivfpq_bytes_per_vector",
    "ivfpq_recall_10_at_100",
    "flat_p99_ms",
    "flat_p50_ms",
    "flat_build_s",
    "hnsw_speedup_over_flat_p99",
}


def load_benchmark() -> ModuleType:
    return load_ann_benchmark("ann.py", "ann_benchmark")


def test_the_benchmark_run_at_a_tiny_size_reports_every_key(tmp_path):
    bench = load_benchmark()
    settings = bench.Settings(n=3000, n_queries=50, nlist=64, repeats=2)
    summary = bench.run(settings, plot=tmp_path / "ann.png")
    assert set(summary) >= BENCHMARK_KEYS, BENCHMARK_KEYS - set(summary)
    assert summary["n"] == 3000 and summary["d"] == 64
    assert summary["flat_recall_at_10"] == 1.0
    assert summary["ivfpq_bytes_per_vector"] < summary["flat_bytes_per_vector"]
    assert summary["flat_bytes_per_vector"] < summary["hnsw_bytes_per_vector"]
    assert summary["hnsw_ef_search"] in bench.EF_SEARCH
    assert (tmp_path / "ann.png").stat().st_size > 0
    json.dumps(summary)  # the last stdout line


@pytest.mark.quality  # a subprocess on every core: 8-25 s on a busy 2-core machine
def test_the_benchmark_script_prints_one_json_line_last():
    completed = subprocess.run(
        [sys.executable, "benchmarks/ann.py", "--n", "3000", "--queries", "50"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    assert set(summary) >= BENCHMARK_KEYS, BENCHMARK_KEYS - set(summary)
