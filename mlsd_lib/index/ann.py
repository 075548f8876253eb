"""One small interface over four faiss indexes: Flat, IVF, HNSW and IVF-PQ.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``.
The retrieval stage asks
one question, "the ``k`` items with the largest inner product with this user
embedding", and the answer's cost and accuracy depend on the index behind it.
:class:`AnnIndex` keeps that question fixed and the index a parameter (an
:class:`~mlsd_lib.index.spec.IndexSpec`), so a notebook can swap Flat for HNSW
and measure what changed. faiss does the work (hand-written here: only this
interface, the input checks and the measurement); the index is what faiss's
``index_factory`` builds from the spec's string.

* :meth:`AnnIndex.build` makes a fresh index from vectors: IVF kinds train
  their k-means lists (and PQ codebooks) first, with the spec's seed, so two
  builds from the same vectors are identical (HNSW's graph also depends on
  thread interleaving: build under ``faiss_threads(1)`` for a bit-identical one).
* :meth:`AnnIndex.add` appends vectors to the live index: they are searchable
  at once, without retraining (IVF assigns them to the existing lists), which
  is how 100 k new items a day arrive between nightly rebuilds.
* :meth:`AnnIndex.search` answers ``(scores, ids)`` with the caller's int64
  ids, best first; where an approximate index finds fewer than ``k`` vectors
  (IVF with a small ``nprobe``), the row is padded with id ``-1`` and the
  lowest float32 score (``-3.4e38``, faiss's stand-in for minus infinity).
* An ``ivfpq`` spec with ``refine=r`` builds faiss's ``IndexRefineFlat``
  around the IVF-PQ index: the PQ search proposes ``r * k`` candidates, their
  full float32 vectors (a second copy, kept in memory) re-score them exactly.
* :meth:`AnnIndex.bytes_per_vector` is *measured*: the size of the serialized
  index divided by the vectors it holds (the formula is
  :func:`~mlsd_lib.index.spec.formula_bytes_per_vector`, side by side).
"""

from __future__ import annotations

from dataclasses import replace

import faiss
import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.inputs import check_ids, check_k, check_vectors
from mlsd_lib.index.spec import IVF_KINDS, IndexSpec, IndexSpecError


class IndexNotReady(MlsdError, RuntimeError):
    """A search or add on an index that is not trained, or holds nothing."""


class AnnIndex:
    """An inner-product ANN index of one
    :class:`~mlsd_lib.index.spec.IndexSpec` over ``d`` dimensions.

    ``model_version`` names the model whose item tower embedded the vectors;
    :func:`~mlsd_lib.index.persistence.save_index` records it and
    :func:`~mlsd_lib.index.versions.require_model_version` checks it against
    the user tower's version before the two are used together.
    """

    def __init__(
        self, spec: IndexSpec, d: int, *, model_version: str | None = None
    ) -> None:
        spec.check_dimension(d)
        self._spec = spec
        self._d = d
        self.model_version = model_version
        self._index: faiss.Index | None = None

    @classmethod
    def from_faiss(
        cls, index: faiss.Index, spec: IndexSpec, *, model_version: str | None
    ) -> AnnIndex:
        """Wrap a faiss index built from ``spec`` (as
        :func:`~mlsd_lib.index.persistence.load_index` does)."""
        wrapped = cls(spec, index.d, model_version=model_version)
        wrapped._index = index
        wrapped._apply_search_params()
        return wrapped

    @property
    def spec(self) -> IndexSpec:
        """The spec, with ``nlist`` resolved after a build and the current
        search-time parameters."""
        return self._spec

    @property
    def d(self) -> int:
        return self._d

    @property
    def ntotal(self) -> int:
        """How many vectors the index holds (0 before a build)."""
        return 0 if self._index is None else int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        return self._index is not None and bool(self._index.is_trained)

    @property
    def faiss_index(self) -> faiss.Index:
        """The underlying faiss index, for what this interface does not cover."""
        return self._ready_index("use the faiss index")

    def build(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> AnnIndex:
        """Replace the index with one over ``vectors`` (ids ``0..n-1`` if None).

        Trains first where the kind needs it (IVF lists, PQ codebooks), on all
        of ``vectors`` (faiss samples 256 per list when there are more).
        """
        vectors = check_vectors(vectors, self._d)
        n = vectors.shape[0]
        ids = np.arange(n, dtype=np.int64) if ids is None else check_ids(ids, n)
        spec = self._spec
        if spec.kind in IVF_KINDS:
            spec = replace(spec, nlist=spec.resolved_nlist(n))
            needed = spec.min_training_vectors()
            if n < needed:
                raise IndexSpecError(
                    f"{spec.kind} with nlist={spec.nlist} needs at least {needed} "
                    f"training vectors, got {n}: lower nlist or build from more "
                    "vectors"
                )
        index = faiss.index_factory(
            self._d, spec.factory_string(), faiss.METRIC_INNER_PRODUCT
        )
        _configure_training(index, spec)
        if spec.kind == "hnsw":
            _hnsw_of(index).efConstruction = spec.ef_construction
        if not index.is_trained:
            index.train(vectors)
        index.add_with_ids(vectors, ids)
        self._spec, self._index = spec, index
        self._apply_search_params()
        return self

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        """Append ``vectors`` under ``ids``; searchable as soon as this returns.

        IVF kinds file them into the lists trained at build time, so a catalogue
        that drifts far from the training vectors needs a rebuild to stay fast.
        """
        index = self._trained_index("add vectors")
        vectors = check_vectors(vectors, self._d)
        index.add_with_ids(vectors, check_ids(ids, vectors.shape[0]))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best ``(scores, ids)`` per query, each ``(n_queries, k)``."""
        index = self._ready_index("search")
        queries = check_vectors(queries, self._d, "queries")
        k = check_k(k, int(index.ntotal))
        scores, ids = index.search(queries, k)
        return scores, ids

    def set_search_params(
        self,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        refine: int | None = None,
    ) -> None:
        """Trade recall for speed at query time: ``nprobe`` (IVF kinds) lists
        scanned, ``ef_search`` (HNSW) candidates kept while walking the graph,
        ``refine`` (IVF-PQ built with it) candidates per result re-scored."""
        self._spec = self._spec.with_search_params(
            nprobe=nprobe, ef_search=ef_search, refine=refine
        )
        self._apply_search_params()

    def serialized_bytes(self) -> int:
        """The size of the index as faiss writes it (counted, not stored)."""
        index = self._ready_index("measure its size")
        counter = _ByteCounter()
        faiss.write_index(index, faiss.PyCallbackIOWriter(counter))
        return counter.total

    def bytes_per_vector(self) -> float:
        """Measured bytes per vector: serialized size / vectors held. Includes
        the fixed parts (IVF centroids, PQ codebooks) spread over the vectors."""
        return self.serialized_bytes() / self.ntotal

    def __repr__(self) -> str:
        version = f", model_version={self.model_version!r}"
        return f"AnnIndex({self._spec!r}, d={self._d}, ntotal={self.ntotal}{version})"

    def _trained_index(self, action: str) -> faiss.Index:
        if self._index is None or not self._index.is_trained:
            raise IndexNotReady(
                f"cannot {action}: this {self._spec.kind} index is not built "
                "yet; call build(vectors) first"
            )
        return self._index

    def _ready_index(self, action: str) -> faiss.Index:
        index = self._trained_index(action)
        if index.ntotal == 0:
            raise IndexNotReady(
                f"cannot {action}: this {self._spec.kind} index is empty; "
                "add(vectors, ids) first"
            )
        return index

    def _apply_search_params(self) -> None:
        if self._index is None:
            return
        if self._spec.kind in IVF_KINDS:
            faiss.extract_index_ivf(self._index).nprobe = self._spec.nprobe
            if self._spec.refine is not None:
                _refine_of(self._index).k_factor = float(self._spec.refine)
        elif self._spec.kind == "hnsw":
            _hnsw_of(self._index).efSearch = self._spec.ef_search


def _hnsw_of(index: faiss.Index) -> faiss.HNSW:
    """The graph inside an ``IDMap,HNSW`` index."""
    return faiss.downcast_index(index.index).hnsw


def _refine_of(index: faiss.Index) -> faiss.IndexRefine:
    """The refinement stage inside an ``IDMap,IVF...,PQ...,RFlat`` index."""
    return faiss.downcast_index(index.index)


def _configure_training(index: faiss.Index, spec: IndexSpec) -> None:
    """Seed the k-means of the IVF lists and of the PQ codebooks, and skip
    faiss's polysemous training (a code reordering that only Hamming-filtered
    search uses; measured at 100 k vectors here, it took a minute of a
    training that otherwise takes seconds)."""
    if spec.kind not in IVF_KINDS:
        return
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.seed = spec.seed
    if spec.kind == "ivfpq":
        ivfpq = faiss.downcast_index(ivf)
        ivfpq.pq.cp.seed = spec.seed
        ivfpq.do_polysemous_training = False


class _ByteCounter:
    """A faiss writer callback that counts bytes instead of keeping them."""

    def __init__(self) -> None:
        self.total = 0

    def __call__(self, chunk: bytes) -> int:
        self.total += len(chunk)
        return len(chunk)
