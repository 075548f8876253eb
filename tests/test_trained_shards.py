"""Shards sharing one IVF training return what the unsharded index returns."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.index import AnnIndex, IndexNotReady, IndexSpec, ShardedIndex
from mlsd_lib.index.sharded import ShardingError
from mlsd_lib.index.synthetic import clustered_embeddings
from mlsd_lib.index.trained_shards import (
    TrainedShards,
    same_up_to_ties,
    shard_trained_index,
)

D = 16


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vectors, queries = clustered_embeddings(3_000, 100, D, seed=4)
    ids = np.arange(3_000, dtype=np.int64) * 7 + 3  # not row numbers
    return vectors, queries, ids


@pytest.mark.parametrize(
    "spec",
    [
        IndexSpec("ivf", nlist=32, nprobe=4),
        IndexSpec("ivfpq", nlist=32, nprobe=4, pq_bytes=4),
    ],
    ids=["ivf", "ivfpq"],
)
def test_merged_shards_equal_the_unsharded_index(data, spec: IndexSpec) -> None:
    vectors, queries, ids = data
    whole = AnnIndex(spec, D, model_version="emb-v1").build(vectors, ids)
    shards = shard_trained_index(whole, vectors, ids, 3)
    assert [s.ntotal for s in shards.shards] == [1_000] * 3
    assert shards.ntotal == 3_000 and shards.model_version == "emb-v1"
    for nprobe in (1, 4, 16):
        whole.set_search_params(nprobe=nprobe)
        shards.set_search_params(nprobe=nprobe)
        expected = whole.search(queries, 20)
        got = shards.search(queries, 20)
        np.testing.assert_array_equal(got[0], expected[0])  # bit for bit
        assert same_up_to_ties(got, expected).all()  # PQ codes tie: id order
        # faiss's own IndexShards over the same shards agrees too.
        answer = shards.faiss_shards().search(queries, 20)
        assert same_up_to_ties(answer, expected).all()
    # Each shard holds only its own ids (id % 3) and answers from them.
    for number, (_, found) in enumerate(shards.search_shards(queries, 5)):
        assert set(np.unique(found % 3).tolist()) == {number}


def test_with_refine_each_shard_re_ranks_its_own_candidates(data) -> None:
    """refine * k candidates per shard: a superset of the unsharded index's, so
    the merged list is at least as good, position by position, never worse."""
    vectors, queries, ids = data
    spec = IndexSpec("ivfpq", nlist=32, nprobe=4, pq_bytes=4, refine=2)
    whole = AnnIndex(spec, D).build(vectors, ids)
    shards = shard_trained_index(whole, vectors, ids, 3)
    expected, got = whole.search(queries, 20)[0], shards.search(queries, 20)[0]
    assert (got >= expected).all() and (got > expected).any()


def test_shards_built_apart_differ_where_trained_shards_do_not(data) -> None:
    vectors, queries, ids = data
    spec = IndexSpec("ivf", nlist=32, nprobe=2)
    whole = AnnIndex(spec, D).build(vectors, ids)
    expected = whole.search(queries, 10)[1]
    apart = ShardedIndex(spec, D, 3).build(vectors, ids).search(queries, 10)[1]
    shared = shard_trained_index(whole, vectors, ids, 3).search(queries, 10)[1]
    assert (apart != expected).any()  # own lists per shard: other results
    np.testing.assert_array_equal(shared, expected)


def test_sizes_add_up_with_a_copy_of_the_training_per_shard(data) -> None:
    vectors, _, ids = data
    whole = AnnIndex(IndexSpec("ivfpq", nlist=32, pq_bytes=4), D).build(vectors, ids)
    shards = shard_trained_index(whole, vectors, ids, 4)
    assert shards.serialized_bytes() > whole.serialized_bytes()
    fixed = (shards.serialized_bytes() - whole.serialized_bytes()) / 3
    assert 0 < fixed < whole.serialized_bytes()  # centroids + codebooks, repeated
    assert "shard sizes=[750, 750, 750, 750]" in repr(shards)


def test_same_up_to_ties_tells_tie_order_from_a_different_list() -> None:
    scores = np.array([[0.9, 0.5, 0.5, 0.2, 0.2]], dtype=np.float32)
    ids = np.array([[1, 2, 3, 4, 5]])
    swapped = np.array([[1, 3, 2, 4, 5]])  # tie reordered: the same list
    cut = np.array([[1, 2, 3, 4, 9]])  # another id tied at the cut-off: same
    other = np.array([[1, 2, 7, 4, 5]])  # another id inside the list: different
    assert same_up_to_ties((scores, ids), (scores, swapped)).all()
    assert same_up_to_ties((scores, ids), (scores, cut)).all()
    assert not same_up_to_ties((scores, ids), (scores, other)).any()
    assert not same_up_to_ties((scores, ids), (scores * 0.99, ids)).any()
    with pytest.raises(ShardingError, match="same queries and k"):
        same_up_to_ties((scores, ids), (scores[:, :2], ids[:, :2]))


def test_what_cannot_be_sharded_is_refused(data) -> None:
    vectors, _, ids = data
    flat = AnnIndex(IndexSpec("flat"), D).build(vectors, ids)
    with pytest.raises(ShardingError, match=r"a flat index has no trained lists"):
        shard_trained_index(flat, vectors, ids, 2)
    with pytest.raises(IndexNotReady, match=r"not trained: build\(vectors\) first"):
        shard_trained_index(AnnIndex(IndexSpec("ivf"), D), vectors, ids, 2)
    ivf = AnnIndex(IndexSpec("ivf", nlist=16), D).build(vectors, ids)
    with pytest.raises(ShardingError, match=r"n_shards=0: pass a positive integer"):
        shard_trained_index(ivf, vectors, ids, 0)
    with pytest.raises(MlsdError, match=r"shards \[1\] get no vectors"):
        shard_trained_index(ivf, vectors[:2], np.array([0, 2]), 2)
    with pytest.raises(ShardingError, match="at least one shard"):
        TrainedShards(())
