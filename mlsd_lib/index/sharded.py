"""Split a catalogue across shards, search each, merge their top-K lists.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``
(the follow-up "from 10
million to 1 billion items"). When one machine cannot hold the index, each
shard holds a slice of the items and answers the same query over its slice;
the caller keeps the ``k`` best of the ``n_shards * k`` answers. For exact
search the merge loses nothing: the global top-``k`` is always among the
per-shard top-``k`` lists, so a sharded Flat index returns exactly what one
Flat index would (a test checks it, ids and scores). For approximate kinds each
shard is its own index (its own IVF lists, its own graph) and recall is each
shard's.

Two ways to assign an item to a shard:

* ``"modulo"``: shard ``id % n_shards``; new items spread evenly, and any
  machine can compute an item's shard from its id alone;
* ``"range"``: contiguous id ranges, fixed at build time from the ids then
  present; new items with larger ids all land on the last shard, which then
  grows (and slows) alone; the reason most systems shard by hash.

The merge is hand-written (a concatenation and one vectorized sort: the step
the book teaches); faiss's ``IndexShards`` does the same with a thread per
shard. Here shards are searched one after another in one process; across
machines the gateway would send the query to all shards at once and the
slowest shard sets the latency.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.ann import AnnIndex, IndexNotReady
from mlsd_lib.index.inputs import check_ids, check_k, check_vectors
from mlsd_lib.index.spec import IndexSpec

Assignment = Literal["modulo", "range"]
ASSIGNMENTS: tuple[str, ...] = ("modulo", "range")


class ShardingError(MlsdError, ValueError):
    """A shard count or assignment that cannot split the items given."""


class ShardedIndex:
    """``n_shards`` :class:`~mlsd_lib.index.ann.AnnIndex` of one spec, searched
    together; the same ``build`` / ``add`` / ``search`` as one index."""

    def __init__(
        self,
        spec: IndexSpec,
        d: int,
        n_shards: int,
        *,
        assign: Assignment = "modulo",
        model_version: str | None = None,
    ) -> None:
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
            raise ShardingError(f"n_shards={n_shards!r}: pass a positive integer")
        if assign not in ASSIGNMENTS:
            raise ShardingError(
                f"unknown assignment {assign!r}: choose one of {', '.join(ASSIGNMENTS)}"
            )
        self.assign = assign
        self.shards = tuple(
            AnnIndex(spec, d, model_version=model_version) for _ in range(n_shards)
        )
        self._d = d
        self._model_version = model_version
        self._boundaries: np.ndarray | None = None  # range assignment only

    @property
    def model_version(self) -> str | None:
        return self._model_version

    @model_version.setter
    def model_version(self, value: str | None) -> None:
        self._model_version = value
        for shard in self.shards:
            shard.model_version = value

    @property
    def n_shards(self) -> int:
        return len(self.shards)

    @property
    def d(self) -> int:
        return self._d

    @property
    def spec(self) -> IndexSpec:
        return self.shards[0].spec

    @property
    def ntotal(self) -> int:
        return sum(shard.ntotal for shard in self.shards)

    def shard_of(self, ids: np.ndarray) -> np.ndarray:
        """The shard each id belongs to (``range`` needs a build first)."""
        ids = np.asarray(ids, dtype=np.int64)
        if self.assign == "modulo":
            return ids % self.n_shards
        if self._boundaries is None:
            raise IndexNotReady(
                "range sharding fixes its ranges at build time: call "
                "build(vectors, ids) first"
            )
        return np.searchsorted(self._boundaries, ids, side="right")

    def build(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> ShardedIndex:
        """Build every shard from its slice of ``vectors`` (ids ``0..n-1`` if None)."""
        vectors = check_vectors(vectors, self._d)
        n = vectors.shape[0]
        ids = np.arange(n, dtype=np.int64) if ids is None else check_ids(ids, n)
        if self.assign == "range":
            chunks = np.array_split(np.sort(ids), self.n_shards)
            if any(chunk.size == 0 for chunk in chunks):
                raise ShardingError(
                    f"{n} vectors cannot fill {self.n_shards} shards: pass more "
                    "vectors or fewer shards"
                )
            self._boundaries = np.array([chunk[0] for chunk in chunks[1:]])
        shard = self.shard_of(ids)
        counts = np.bincount(shard, minlength=self.n_shards)
        if (counts == 0).any():
            raise ShardingError(
                f"shards {np.flatnonzero(counts == 0).tolist()} get no vectors "
                f"(counts {counts.tolist()}): pass more vectors or fewer shards"
            )
        for number, index in enumerate(self.shards):
            mine = shard == number
            index.build(np.ascontiguousarray(vectors[mine]), ids[mine])
        return self

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Route each new vector to its shard and add it there."""
        vectors = check_vectors(vectors, self._d)
        ids = check_ids(ids, vectors.shape[0])
        shard = self.shard_of(ids)
        for number in np.unique(shard):
            mine = shard == number
            self.shards[number].add(np.ascontiguousarray(vectors[mine]), ids[mine])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Each shard's top ``k``, merged into the overall top ``k``."""
        queries = check_vectors(queries, self._d, "queries")
        k = check_k(k, self.ntotal)
        answers = [
            shard.search(queries, min(k, shard.ntotal))
            for shard in self.shards
            if shard.ntotal
        ]
        return merge_top_k(answers, k)

    def set_search_params(
        self,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        refine: int | None = None,
    ) -> None:
        """Set the same search-time parameters on every shard."""
        for shard in self.shards:
            shard.set_search_params(nprobe=nprobe, ef_search=ef_search, refine=refine)

    def serialized_bytes(self) -> int:
        return sum(shard.serialized_bytes() for shard in self.shards)

    def bytes_per_vector(self) -> float:
        """Measured bytes per vector over all shards (see ``AnnIndex``)."""
        return self.serialized_bytes() / self.ntotal


def merge_top_k(
    answers: list[tuple[np.ndarray, np.ndarray]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of several ``(scores, ids)`` answers to the same queries.

    Exactly tied scores are ordered by id, so the merge is deterministic
    (faiss orders ties as its heap leaves them: at ``k = 1500`` over 3,000
    vectors, a few float32 scores in a thousand rows tie exactly).
    """
    scores = np.concatenate([s for s, _ in answers], axis=1)
    ids = np.concatenate([i for _, i in answers], axis=1)
    order = np.lexsort((ids, -scores), axis=1)[:, :k]
    return (
        np.take_along_axis(scores, order, axis=1),
        np.take_along_axis(ids, order, axis=1),
    )
