"""What an ANN index is: its kind, its parameters and the faiss string it becomes.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``
(the index sizing table). An
:class:`IndexSpec` is data, like a feature view: the engine that builds it
(:class:`~mlsd_lib.index.ann.AnnIndex`) is separate, so a manifest can record a
spec and a notebook can print one. Every kind scores by **inner product** (the
two-tower model's score) and maps to one faiss ``index_factory`` string:

============  ==========================  =====================================
kind          factory string              what it is
============  ==========================  =====================================
``flat``      ``IDMap,Flat``              exact: every vector scored (the truth)
``ivf``       ``IVF{nlist},Flat``         k-means lists; ``nprobe`` lists scanned
``hnsw``      ``IDMap,HNSW{M}``           a navigable small-world graph
``ivfpq``     ``IVF{nlist},PQ{m}x8``      IVF over ``m``-byte product-quantized codes
============  ==========================  =====================================

``IDMap`` wraps the kinds that number vectors by position so that search answers
the caller's int64 ids; IVF lists store the ids themselves.

**Refinement** (``ivfpq`` only: ``IndexSpec("ivfpq", refine=r)``). A 16-byte
code cannot tell apart neighbours whose scores differ by less than its
quantization error, so IVF-PQ's recall@10 plateaus far below 1 however many
lists it scans. The standard repair re-ranks a short list with full-precision
vectors: the PQ search returns the best ``r * k`` candidates, and their exact
inner products pick the final ``k``. Here that is faiss's ``IndexRefineFlat``
(factory suffix ``,RFlat``), which keeps a second copy of every vector as
float32 in memory: ``IDMap,IVF{nlist},PQ{m}x8,RFlat``. Its refine store numbers
vectors by position, so the caller's ids move to an ``IDMap`` (8 bytes more).
Kept in RAM, the refine store costs more than the codes save (the point of the
formula below); at a billion items the full vectors live in a separate store
(SSD, another tier) and only the ``r * k`` candidates are fetched per query.
``r`` is a search-time knob too (``set_search_params(refine=...)``): ``r = 1``
re-scores only the ``k`` results (same ids, exact scores).

Bytes per vector, by formula (what :func:`formula_bytes_per_vector` returns; the
index reports the measured figure, from its serialized bytes, which adds the
fixed parts, centroids and codebooks, spread over the vectors;
:func:`formula_index_bytes` gives a whole index, fixed parts included):

* ``flat``, ``ivf``: ``4d`` (float32 vector) + ``8`` (int64 id);
* ``hnsw``: ``4d`` + ``8`` (id) + ``4 * 2M`` (level-0 links, int32)
  + ``about 4M/(M-1)`` (upper levels, one vector in ``M`` climbs a level)
  + ``12`` (faiss's per-vector level and offset);
* ``ivfpq``: ``m`` (the code) + ``8`` (id);
* ``ivfpq`` with ``refine``: ``m`` + ``8`` (the list's position id)
  + ``4d`` (the float32 copy) + ``8`` (the ``IDMap``'s caller id).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from mlsd_lib.errors import MlsdError

#: The kinds an index can be, in the order the book introduces them.
KNOWN_KINDS: tuple[str, ...] = ("flat", "ivf", "hnsw", "ivfpq")
#: Kinds that train a k-means coarse quantizer (and so need ``nlist``).
IVF_KINDS: frozenset[str] = frozenset({"ivf", "ivfpq"})
#: faiss's k-means warns below 39 training points per centroid.
MIN_POINTS_PER_LIST = 39
#: Each product quantizer sub-codebook has 2**8 centroids to train.
PQ_CENTROIDS = 256


class IndexSpecError(MlsdError, ValueError):
    """A parameter an index cannot have; the message names the allowed range."""


class UnknownIndexKind(IndexSpecError):
    """A kind that is not one of :data:`KNOWN_KINDS`."""


@dataclass(frozen=True)
class IndexSpec:
    """The kind of ANN index and its parameters (unused ones are ignored).

    ``nlist`` (IVF kinds): the number of k-means lists; ``None`` picks
    :func:`default_nlist` from the number of vectors at build time. ``nprobe``:
    lists scanned per query. ``hnsw_m``: graph links per vector (``2M`` on the
    bottom level). ``ef_construction`` / ``ef_search``: the candidate list width
    when inserting / searching. ``pq_bytes``: code size of ``ivfpq`` (one byte
    per sub-quantizer, so it must divide the dimension). ``refine`` (``ivfpq``
    only): keep the full vectors too and re-score the best ``refine * k`` PQ
    candidates exactly (see the module docstring); ``None``: no refinement.
    ``seed``: the k-means seed, so that training is deterministic.
    """

    kind: str
    nlist: int | None = None
    nprobe: int = 16
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 64
    pq_bytes: int = 16
    refine: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KNOWN_KINDS:
            raise UnknownIndexKind(
                f"unknown index kind {self.kind!r}: choose one of "
                f"{', '.join(KNOWN_KINDS)}"
            )
        positive = {
            "nprobe": self.nprobe,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "pq_bytes": self.pq_bytes,
        }
        if self.nlist is not None:
            positive["nlist"] = self.nlist
        if self.refine is not None:
            positive["refine"] = self.refine
        for name, value in positive.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise IndexSpecError(
                    f"{name}={value!r} is not allowed: pass a positive integer"
                )
        if self.hnsw_m < 2:
            raise IndexSpecError(f"hnsw_m={self.hnsw_m} is too small: pass 2 or more")
        if self.refine is not None and self.kind != "ivfpq":
            raise IndexSpecError(
                f"refine applies to ivfpq, not {self.kind}: {self.kind} already "
                "scores with full-precision vectors; leave refine=None"
            )

    def factory_string(self, n: int | None = None) -> str:
        """The faiss ``index_factory`` string; IVF kinds need ``nlist`` or ``n``."""
        if self.kind == "flat":
            return "IDMap,Flat"
        if self.kind == "hnsw":
            return f"IDMap,HNSW{self.hnsw_m}"
        nlist = self.resolved_nlist(n)
        if self.kind == "ivf":
            return f"IVF{nlist},Flat"
        if self.refine is not None:
            return f"IDMap,IVF{nlist},PQ{self.pq_bytes}x8,RFlat"
        return f"IVF{nlist},PQ{self.pq_bytes}x8"

    def resolved_nlist(self, n: int | None) -> int:
        """``nlist`` if set, else :func:`default_nlist` of ``n`` vectors."""
        if self.nlist is not None:
            return self.nlist
        if n is None:
            raise IndexSpecError(
                f"{self.kind} needs nlist: set it, or build from vectors so that "
                "it is chosen from their number"
            )
        return default_nlist(n)

    def with_search_params(
        self,
        *,
        nprobe: int | None = None,
        ef_search: int | None = None,
        refine: int | None = None,
    ) -> IndexSpec:
        """A copy with new search-time parameters, refused where they do not apply
        (``refine`` only on an index built with it: the full vectors must be
        there)."""
        if nprobe is not None and self.kind not in IVF_KINDS:
            raise IndexSpecError(
                f"nprobe applies to ivf and ivfpq, not {self.kind}: "
                + _search_param_hint(self.kind)
            )
        if ef_search is not None and self.kind != "hnsw":
            raise IndexSpecError(
                f"ef_search applies to hnsw, not {self.kind}: "
                + _search_param_hint(self.kind)
            )
        if refine is not None and self.refine is None:
            raise IndexSpecError(
                f"refine={refine} needs the full vectors, which this {self.kind} "
                "index does not keep: build it with IndexSpec('ivfpq', refine=...)"
            )
        changes = {"nprobe": nprobe, "ef_search": ef_search, "refine": refine}
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def check_dimension(self, d: int) -> None:
        """Refuse a dimension this spec cannot index (PQ must split it evenly)."""
        if isinstance(d, bool) or not isinstance(d, int) or d < 1:
            raise IndexSpecError(f"d={d!r} is not a dimension: pass a positive int")
        if self.kind == "ivfpq" and d % self.pq_bytes:
            divisors = [m for m in range(1, d + 1) if d % m == 0]
            raise IndexSpecError(
                f"pq_bytes={self.pq_bytes} does not divide d={d}: each byte codes "
                f"an equal slice of the vector; choose one of {divisors}"
            )

    def min_training_vectors(self, n: int | None = None) -> int:
        """How many vectors training needs (0 for kinds that do not train)."""
        if self.kind not in IVF_KINDS:
            return 0
        nlist = self.resolved_nlist(n)
        return max(nlist, PQ_CENTROIDS) if self.kind == "ivfpq" else nlist

    def to_json(self) -> dict[str, Any]:
        """The spec as a JSON-ready dict (the manifest's ``params``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexSpec:
        """The spec a manifest recorded; unknown keys are refused."""
        known = set(cls.__dataclass_fields__)
        extra = sorted(set(data) - known)
        if extra:
            raise IndexSpecError(
                f"unknown index parameters {extra}: known are {sorted(known)}"
            )
        return cls(**data)


def default_nlist(n: int) -> int:
    """About ``4 * sqrt(n)`` lists (faiss's guideline for IVF), capped so that
    k-means gets at least :data:`MIN_POINTS_PER_LIST` training vectors per list."""
    return max(1, min(round(4 * math.sqrt(n)), n // MIN_POINTS_PER_LIST))


def formula_bytes_per_vector(spec: IndexSpec, d: int) -> float:
    """Bytes per vector by the formulas in this module's docstring (no overhead)."""
    spec.check_dimension(d)
    if spec.kind in ("flat", "ivf"):
        return 4.0 * d + 8
    if spec.kind == "hnsw":
        m = spec.hnsw_m
        return 4.0 * d + 8 + 8 * m + 4 * m / (m - 1) + 12
    if spec.refine is not None:
        return float(spec.pq_bytes + 8 + 4 * d + 8)
    return float(spec.pq_bytes + 8)


def formula_index_bytes(spec: IndexSpec, n: int, d: int) -> float:
    """Bytes of an index of ``n`` vectors by formula: ``n`` times
    :func:`formula_bytes_per_vector`, plus the fixed parts that
    :func:`formula_bytes_per_vector` leaves out: the IVF centroids
    (``nlist * 4d``, with ``nlist`` from :func:`default_nlist` of ``n`` when
    the spec leaves it unset) and the PQ codebooks (256 centroids per
    sub-quantizer: ``256 * 4d``). The capacity arithmetic of "from 10 million
    to a billion items" in one call; faiss's files add a header and, for IVF,
    about 8 bytes per list."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise IndexSpecError(f"n={n!r} is not a number of vectors: pass an int >= 1")
    total = formula_bytes_per_vector(spec, d) * n
    if spec.kind in IVF_KINDS:
        total += spec.resolved_nlist(n) * 4.0 * d
    if spec.kind == "ivfpq":
        total += PQ_CENTROIDS * 4.0 * d
    return total


def _search_param_hint(kind: str) -> str:
    return {
        "flat": "exact search has no search-time parameter",
        "ivf": "pass nprobe",
        "ivfpq": "pass nprobe",
        "hnsw": "pass ef_search",
    }[kind]
