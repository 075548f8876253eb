"""Shards of one trained IVF index: same lists and codebooks, a slice of vectors each.

Introduced in ``casestudies/visual_search/09_interview_followups.ipynb`` (follow-up "How
would the index scale to 10 billion images?": "Each query goes to every shard and the
gateway merges the top-K lists"). :class:`~mlsd_lib.index.sharded.ShardedIndex` builds
each shard as an index of its own: each trains its own IVF lists (and PQ codebooks) on
its slice, so a sharded search at ``nprobe`` scans different lists from the unsharded
index's and its recall is not the same. Production systems at billions of vectors train
**once**, on a sample, and ship the trained, empty index to every shard (faiss's own
billion-scale recipes do this: train, then ``add`` in pieces, possibly on many machines,
then serve the pieces with ``IndexShards``). Then every shard assigns a vector to the
same list with the same code as the unsharded index would, and a query at ``nprobe``
probes the same lists everywhere, so:

    the merged top-K of the shards **equals** the unsharded index's top-K,

scores bit for bit, ids up to the order of exactly tied scores (the merge puts
ties in id order, faiss as its heap leaves them). Sharding then changes where
the work runs and how long a query waits, never which results it returns: the
property that lets one replace a single index with shards without an A/B test
of recall. One exception: an IVF-PQ index with ``refine`` re-scores
``refine * k`` candidates *per shard*, a superset of the unsharded index's, so
the merged list is at least as good, position by position, and costs more
re-ranking.

:func:`shard_trained_index` clones a built :class:`~mlsd_lib.index.ann.AnnIndex`
(faiss ``clone_index``), empties each clone (``reset`` keeps the training) and
adds a slice; slices are by id modulo the shard count, as
:class:`~mlsd_lib.index.sharded.ShardedIndex`'s default. :class:`TrainedShards`
searches every shard and merges with
:func:`~mlsd_lib.index.sharded.merge_top_k` (hand-written: the step the book
teaches); :meth:`TrainedShards.faiss_shards` gives faiss's ``IndexShards`` over
the same shards (a thread per shard), the library's version of that merge, to
check one against the other. Shards here live in one process; across machines
each would be a server and the slowest one sets the latency.
"""

from __future__ import annotations

import faiss
import numpy as np

from mlsd_lib.index.ann import AnnIndex, IndexNotReady
from mlsd_lib.index.inputs import check_ids, check_k, check_vectors
from mlsd_lib.index.sharded import ShardingError, merge_top_k
from mlsd_lib.index.spec import IVF_KINDS, IndexSpec

__all__ = ["TrainedShards", "same_up_to_ties", "shard_trained_index"]


class TrainedShards:
    """``n_shards`` :class:`~mlsd_lib.index.ann.AnnIndex` sharing one training,
    searched together; made by :func:`shard_trained_index`."""

    def __init__(self, shards: tuple[AnnIndex, ...]) -> None:
        if not shards:
            raise ShardingError("TrainedShards needs at least one shard")
        self.shards = shards

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    @property
    def d(self) -> int:
        return self.shards[0].d

    @property
    def spec(self) -> IndexSpec:
        return self.shards[0].spec

    @property
    def ntotal(self) -> int:
        return sum(shard.ntotal for shard in self.shards)

    @property
    def model_version(self) -> str | None:
        return self.shards[0].model_version

    def search_shards(
        self, queries: np.ndarray, k: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each shard's own top ``min(k, its size)`` ``(scores, ids)``, unmerged."""
        queries = check_vectors(queries, self.d, "queries")
        k = check_k(k, self.ntotal)
        return [shard.search(queries, min(k, shard.ntotal)) for shard in self.shards]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The overall top ``k`` ``(scores, ids)``: every shard's, merged."""
        return merge_top_k(self.search_shards(queries, k), check_k(k, self.ntotal))

    def set_search_params(
        self, *, nprobe: int | None = None, refine: int | None = None
    ) -> None:
        """The same search-time parameters on every shard."""
        for shard in self.shards:
            shard.set_search_params(nprobe=nprobe, refine=refine)

    def serialized_bytes(self) -> int:
        """All shards' bytes as faiss writes them (each repeats the centroids
        and codebooks: the price of a self-contained shard)."""
        return sum(shard.serialized_bytes() for shard in self.shards)

    def bytes_per_vector(self) -> float:
        return self.serialized_bytes() / self.ntotal

    def faiss_shards(self, *, threaded: bool = True) -> faiss.IndexShards:
        """faiss's ``IndexShards`` over these shards (not copied: it searches
        them in place, a thread per shard when ``threaded``)."""
        combined = faiss.IndexShards(self.d, threaded, False)  # keep shard ids
        for shard in self.shards:
            combined.add_shard(shard.faiss_index)
        return combined

    def __repr__(self) -> str:
        sizes = [shard.ntotal for shard in self.shards]
        return f"TrainedShards({self.spec!r}, d={self.d}, shard sizes={sizes})"


def shard_trained_index(
    index: AnnIndex, vectors: np.ndarray, ids: np.ndarray, n_shards: int
) -> TrainedShards:
    """``vectors`` (under ``ids``) split by ``id % n_shards`` into shards that
    share ``index``'s training (IVF lists, PQ codebooks) and search parameters.

    Introduced in ``casestudies/visual_search/index.md``. ``index`` is a built
    IVF-kind :class:`~mlsd_lib.index.ann.AnnIndex` (its own vectors are not
    copied: the clones are emptied); pass the vectors it holds to get shards
    equal to it, or others (a bigger catalogue) to use its training for them.
    """
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise ShardingError(f"n_shards={n_shards!r}: pass a positive integer")
    if index.spec.kind not in IVF_KINDS:
        raise ShardingError(
            f"a {index.spec.kind} index has no trained lists to share: shard an "
            f"IVF kind ({', '.join(IVF_KINDS)}), or use ShardedIndex, whose "
            "shards build their own."
        )
    if not index.is_trained:
        raise IndexNotReady(
            "cannot shard an index that is not trained: build(vectors) first, "
            "on a sample of the catalogue"
        )
    vectors = check_vectors(vectors, index.d)
    ids = check_ids(ids, vectors.shape[0])
    shard_of = ids % n_shards
    counts = np.bincount(shard_of, minlength=n_shards)
    if (counts == 0).any():
        raise ShardingError(
            f"shards {np.flatnonzero(counts == 0).tolist()} get no vectors "
            f"(counts {counts.tolist()}): pass more vectors or fewer shards"
        )
    shards = []
    for number in range(n_shards):
        clone = faiss.clone_index(index.faiss_index)
        clone.reset()  # keeps the trained lists and codebooks, drops the vectors
        mine = shard_of == number
        clone.add_with_ids(np.ascontiguousarray(vectors[mine]), ids[mine])
        shards.append(
            AnnIndex.from_faiss(clone, index.spec, model_version=index.model_version)
        )
    return TrainedShards(tuple(shards))


def same_up_to_ties(
    first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Per query, whether two ``(scores, ids)`` answers are the same list: equal
    scores position by position, and the same ids at each score (exactly tied
    scores may list their ids in any order; at the last score, which a cut-off
    splits, the ids may differ as long as the scores do not).

    Introduced in ``casestudies/visual_search/index.md``: how "the shards return
    what the unsharded index returns" is checked when codes tie (PQ codes, or
    duplicate images, give many vectors one score).
    """
    (scores_a, ids_a), (scores_b, ids_b) = first, second
    if scores_a.shape != scores_b.shape or ids_a.shape != ids_b.shape:
        raise ShardingError(
            f"answers of shapes {scores_a.shape} and {scores_b.shape} cannot be "
            "compared: search both with the same queries and k"
        )
    same_scores = (scores_a == scores_b).all(axis=1)
    inside = scores_a > scores_a[:, -1:]  # ties at the cut-off may differ
    key_a = np.where(inside, ids_a, np.iinfo(np.int64).max)
    key_b = np.where(inside, ids_b, np.iinfo(np.int64).max)
    order_a = np.lexsort((key_a, -scores_a), axis=1)
    order_b = np.lexsort((key_b, -scores_b), axis=1)
    same_ids = (
        np.take_along_axis(key_a, order_a, axis=1)
        == np.take_along_axis(key_b, order_b, axis=1)
    ).all(axis=1)
    return same_scores & same_ids
