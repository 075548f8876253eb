"""Approximate nearest-neighbour search on faiss: Flat, IVF, HNSW and IVF-PQ.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``:
the retrieval stage finds
the 500 items with the largest inner product with a user embedding among
millions, in a few milliseconds. faiss builds and searches the indexes; this
package hand-writes only what the book teaches around them: one interface, the
checks, the version guard, the shard merge and the measurements.

* :mod:`~mlsd_lib.index.spec`: :class:`~mlsd_lib.index.spec.IndexSpec`, an
  index's kind and parameters (IVF-PQ's full-precision re-ranking, ``refine``,
  included), its faiss factory string, and its bytes per vector and per index
  by formula.
* :mod:`~mlsd_lib.index.ann`: :class:`~mlsd_lib.index.ann.AnnIndex`: build
  (training where needed), add incrementally, search with the caller's ids,
  set search parameters, measured bytes per vector.
* :mod:`~mlsd_lib.index.inputs`: the checks on vectors, ids and ``k``.
* :mod:`~mlsd_lib.index.threads`:
  :func:`~mlsd_lib.index.threads.faiss_threads`, faiss's thread count for a
  block.
* :mod:`~mlsd_lib.index.persistence`:
  :func:`~mlsd_lib.index.persistence.save_index` and
  :func:`~mlsd_lib.index.persistence.load_index`, a folder with the faiss file
  and a manifest (sha256, spec, model version).
* :mod:`~mlsd_lib.index.versions`:
  :func:`~mlsd_lib.index.versions.require_model_version`, which refuses an
  index embedded by another model than the user tower's.
* :mod:`~mlsd_lib.index.sharded`:
  :class:`~mlsd_lib.index.sharded.ShardedIndex`, items split across shards
  and the per-shard top-K lists merged.
* :mod:`~mlsd_lib.index.measure`: recall against exact search, per-query
  latency, and sweeps over ``nprobe`` / ``ef_search``.
* :mod:`~mlsd_lib.index.plots`: the recall-latency figure (import it from there:
  the package does not load matplotlib for a server that only searches).
* :mod:`~mlsd_lib.index.synthetic`: clustered embeddings shaped like learned
  ones, to measure indexes on.
* :mod:`~mlsd_lib.index.scaling`: IVF unit costs measured small and extrapolated
  by counted work; shards for memory and latency, cores at peak.
* :mod:`~mlsd_lib.index.trained_shards`: shards cloned from one trained IVF index (same
  lists and codebooks), merged top-K equal to the unsharded index's.
"""

from mlsd_lib.index.ann import AnnIndex, IndexNotReady
from mlsd_lib.index.inputs import IdInputError, KOutOfRange, VectorInputError
from mlsd_lib.index.measure import (
    LatencyProfile,
    MeasureInputError,
    SweepPoint,
    cheapest_reaching,
    latency_profile,
    recall_at_k,
    sweep,
)
from mlsd_lib.index.persistence import (
    IndexIntegrityError,
    IndexManifest,
    IndexNotFound,
    MissingModelVersion,
    load_index,
    read_manifest,
    save_index,
)
from mlsd_lib.index.sharded import ShardedIndex, ShardingError, merge_top_k
from mlsd_lib.index.spec import (
    KNOWN_KINDS,
    IndexSpec,
    IndexSpecError,
    UnknownIndexKind,
    default_nlist,
    formula_bytes_per_vector,
    formula_index_bytes,
)
from mlsd_lib.index.synthetic import EmbeddingMixture, clustered_embeddings
from mlsd_lib.index.threads import ThreadCountError, faiss_threads
from mlsd_lib.index.versions import IndexVersionMismatch, require_model_version

__all__ = [
    "KNOWN_KINDS",
    "AnnIndex",
    "EmbeddingMixture",
    "IdInputError",
    "IndexIntegrityError",
    "IndexManifest",
    "IndexNotFound",
    "IndexNotReady",
    "IndexSpec",
    "IndexSpecError",
    "IndexVersionMismatch",
    "KOutOfRange",
    "LatencyProfile",
    "MeasureInputError",
    "MissingModelVersion",
    "ShardedIndex",
    "ShardingError",
    "SweepPoint",
    "ThreadCountError",
    "UnknownIndexKind",
    "VectorInputError",
    "cheapest_reaching",
    "clustered_embeddings",
    "default_nlist",
    "faiss_threads",
    "formula_bytes_per_vector",
    "formula_index_bytes",
    "latency_profile",
    "load_index",
    "merge_top_k",
    "read_manifest",
    "recall_at_k",
    "require_model_version",
    "save_index",
    "sweep",
]
