"""The catalogue as the search pipeline sees it: vectors, ids, products, an index.

Introduced in ``casestudies/visual_search/index.md`` (panel A, "embed
catalogue images, build faiss IVF-PQ index, image -> product map"). A
:class:`CatalogueIndex` holds, for every catalogue image, one row of:

* its embedding, kept in full (float32 by default) for the **exact
  re-ranking** of the ANN candidates
  (:func:`~mlsd_lib.reranking.product_collapse.exact_rerank`) and for dedup;
* its image id (the caller's) and its product id (the image -> product map);

plus a product -> category table (for the degraded category-level answer)
and an :class:`~mlsd_lib.index.ann.AnnIndex` over the same vectors whose ids
are the **row numbers**: a hit's vector, image id and product id are then one
array index each, no hash lookup. The default index is IVF-PQ
(:func:`default_catalogue_spec`, 32-byte codes where the dimension allows):
the page's design, a compressed index proposing 200 candidates and the full
vectors re-scoring them, so the PQ codes need good *recall among 200*, not a
good top 10 of their own. HNSW is the other option
(``IndexSpec("hnsw", ...)``): full vectors inside the graph, faster at this
size, 4d + 8M bytes a vector more.

**Why float16 in production.** At 200 M images of 256 dimensions the full
vectors are 205 GB as float32 and 102 GB as float16 (the page's table); the
re-ranking fetch at peak is 0.71 GB/s across the fleet at float16, twice
that at float32. float16 keeps 11 significant bits: a unit vector's cosine
moves by about 1e-3, far below the gap between a product and its nearest
distinct neighbour that a useful dedup threshold sits in (and re-ranking
only reorders 200 candidates). ``vector_dtype="float16"`` stores them so;
scores are still computed in float32. The book keeps float32 by default so
that exact re-ranking is exact and a test can compare it with faiss's Flat.

**The embedder version.** The vectors come from one embedder; a query vector
from another is not comparable and would return confident nonsense. The
index records ``embedder_version`` (as the ANN index's ``model_version``,
which :func:`~mlsd_lib.index.persistence.save_index` writes into its
manifest) and every search names the version of the embedder that made the
query: a mismatch raises
:class:`~mlsd_lib.index.versions.IndexVersionMismatch` naming both.

**New images** (:meth:`CatalogueIndex.add_images`) are appended to the rows
and to the live ANN index (IVF assigns them to the lists trained at build
time), searchable as soon as the call returns, without a rebuild. The arrays
grow by concatenation, a copy per call: fine for batches (the day's 1% of the
catalogue), not for one image at a time.

**On disk** (:meth:`CatalogueIndex.save`, :meth:`CatalogueIndex.load`): a
folder with ``index/`` (the ANN index and its manifest, via
:mod:`~mlsd_lib.index.persistence`) and ``catalogue.npz`` (vectors, ids,
product table) with ``catalogue.json`` recording its sha256, the embedder
version and the row count; load refuses a changed file, or an index and
catalogue from different embedders or of different sizes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.ann import AnnIndex
from mlsd_lib.index.inputs import check_vectors
from mlsd_lib.index.persistence import (
    IndexIntegrityError,
    IndexNotFound,
    load_index,
    save_index,
    sha256_of,
)
from mlsd_lib.index.spec import IndexSpec
from mlsd_lib.index.versions import IndexVersionMismatch
from mlsd_lib.reranking.product_collapse import NO_ID, RankedImages

__all__ = [
    "CatalogueIndex",
    "CatalogueInputError",
    "default_catalogue_spec",
]

CATALOGUE_FILE = "catalogue.npz"
CATALOGUE_MANIFEST = "catalogue.json"
INDEX_FOLDER = "index"
#: Bumped when ``catalogue.json``'s fields change meaning.
CATALOGUE_FORMAT = 1
#: How far from 1 a vector's norm may be: the scores are cosines only on
#: unit vectors, and the dedup threshold is a cosine.
NORM_TOLERANCE = 1e-3
VECTOR_DTYPES = ("float32", "float16")


class CatalogueInputError(MlsdError, ValueError):
    """Catalogue vectors, ids or categories that cannot be indexed together."""


def default_catalogue_spec(d: int, *, nprobe: int = 16, seed: int = 0) -> IndexSpec:
    """IVF-PQ with 32-byte codes (the page's sizing), or the largest code
    size up to 32 bytes that divides ``d``; ``nlist`` chosen from the
    catalogue size at build time."""
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise CatalogueInputError(f"d={d!r} is not a dimension: pass a positive int")
    pq_bytes = max(m for m in range(1, min(32, d) + 1) if d % m == 0)
    return IndexSpec("ivfpq", nprobe=nprobe, pq_bytes=pq_bytes, seed=seed)


@dataclass(frozen=True)
class _Rows:
    """The per-image columns, one row per indexed image."""

    vectors: np.ndarray
    image_ids: np.ndarray
    product_ids: np.ndarray


class CatalogueIndex:
    """Catalogue images searchable by vector, mapped to products and categories.

    Build with :meth:`build`; grow with :meth:`add_images`; search with
    :meth:`search_images` (ANN) or :meth:`exact_search` (every image scored:
    the truth the ANN is measured against).
    """

    def __init__(
        self,
        ann: AnnIndex,
        rows: _Rows,
        products: np.ndarray,
        categories: np.ndarray,
    ) -> None:
        if not ann.model_version:
            raise CatalogueInputError(
                "the ANN index records no embedder version: build the catalogue "
                "with CatalogueIndex.build(..., embedder_version=...)"
            )
        self._ann = ann
        self._rows = rows
        self._products = products  # sorted unique product ids
        self._categories = categories  # aligned with _products

    @classmethod
    def build(
        cls,
        vectors: np.ndarray,
        image_ids: ArrayLike,
        product_ids: ArrayLike,
        category_ids: ArrayLike,
        *,
        embedder_version: str,
        spec: IndexSpec | None = None,
        vector_dtype: str = "float32",
    ) -> CatalogueIndex:
        """Index ``vectors`` ``(n, d)`` (float32, L2-normalized), one row per
        image, with each image's id, product and category (``(n,)`` ints; a
        product's images must share its category)."""
        if not isinstance(embedder_version, str) or not embedder_version:
            raise CatalogueInputError(
                f"embedder_version={embedder_version!r}: pass the version of the "
                "embedder that made these vectors, e.g. 'embedder-v3'"
            )
        if vector_dtype not in VECTOR_DTYPES:
            raise CatalogueInputError(
                f"vector_dtype={vector_dtype!r}: choose one of {VECTOR_DTYPES}"
            )
        vectors = _unit_vectors(vectors, None)
        n, d = vectors.shape
        images, products = (
            _ids(image_ids, n, "image_ids"),
            _ids(product_ids, n, "product_ids"),
        )
        _distinct_images(images, np.empty(0, np.int64))
        table_products, table_categories = _category_table(
            products, _ids(category_ids, n, "category_ids"), None, None
        )
        ann = AnnIndex(
            spec or default_catalogue_spec(d), d, model_version=embedder_version
        )
        ann.build(vectors, np.arange(n, dtype=np.int64))
        rows = _Rows(vectors.astype(vector_dtype), images, products)
        return cls(ann, rows, table_products, table_categories)

    @property
    def embedder_version(self) -> str:
        return str(self._ann.model_version)

    @property
    def ann(self) -> AnnIndex:
        """The ANN index (ids are row numbers), e.g. to tune or measure it."""
        return self._ann

    @property
    def spec(self) -> IndexSpec:
        return self._ann.spec

    @property
    def d(self) -> int:
        return self._ann.d

    @property
    def n_images(self) -> int:
        return int(self._rows.image_ids.shape[0])

    @property
    def vectors(self) -> np.ndarray:
        """``(n_images, d)``, in the stored dtype (read-only view)."""
        return _read_only(self._rows.vectors)

    @property
    def image_ids(self) -> np.ndarray:
        return _read_only(self._rows.image_ids)

    @property
    def product_ids(self) -> np.ndarray:
        """Each image's product (the image -> product map)."""
        return _read_only(self._rows.product_ids)

    @property
    def products(self) -> np.ndarray:
        """Every product with an image, sorted."""
        return _read_only(self._products)

    @property
    def product_categories(self) -> np.ndarray:
        """The category of each of :attr:`products`."""
        return _read_only(self._categories)

    def category_of(self, product_ids: ArrayLike) -> np.ndarray:
        """The category of each product id (refused for unknown products)."""
        ids = np.asarray(product_ids, dtype=np.int64)
        at = np.clip(np.searchsorted(self._products, ids), 0, self._products.size - 1)
        unknown = self._products[at] != ids
        if unknown.any():
            raise CatalogueInputError(
                f"products {ids[unknown][:5].tolist()} have no image in this "
                "catalogue: pass products it holds (see .products)"
            )
        return self._categories[at]

    def check_version(self, embedder_version: str) -> None:
        """Refuse a query embedded by another embedder than the catalogue's."""
        if embedder_version != self.embedder_version:
            raise IndexVersionMismatch(
                f"the catalogue index was built with embedder "
                f"{self.embedder_version!r}, but the query comes from embedder "
                f"{embedder_version!r}: vectors from different embedders are not "
                f"comparable; embed the query with {self.embedder_version!r}, or "
                f"rebuild the index with {embedder_version!r} and swap the "
                "embedder and the index together"
            )

    def add_images(
        self,
        vectors: np.ndarray,
        image_ids: ArrayLike,
        product_ids: ArrayLike,
        category_ids: ArrayLike | None = None,
    ) -> None:
        """Append new catalogue images; searchable when this returns.

        ``category_ids`` (one per image) is needed when a product is new, and
        must agree with the recorded category for a known one.
        """
        vectors = _unit_vectors(vectors, self.d)
        n = vectors.shape[0]
        images = _ids(image_ids, n, "image_ids")
        products = _ids(product_ids, n, "product_ids")
        _distinct_images(images, self._rows.image_ids)
        categories = (
            None if category_ids is None else _ids(category_ids, n, "category_ids")
        )
        table = _category_table(products, categories, self._products, self._categories)
        start = self.n_images
        self._ann.add(vectors, np.arange(start, start + n, dtype=np.int64))
        self._rows = _Rows(
            np.concatenate(
                [self._rows.vectors, vectors.astype(self._rows.vectors.dtype)]
            ),
            np.concatenate([self._rows.image_ids, images]),
            np.concatenate([self._rows.product_ids, products]),
        )
        self._products, self._categories = table

    def search_images(
        self, queries: np.ndarray, k: int, *, embedder_version: str
    ) -> tuple[RankedImages, np.ndarray]:
        """ANN top ``k`` images per query (``k`` capped at the catalogue size):
        the hits with the index's (approximate) scores, and their rows
        ``(n, k)`` (``-1`` in empty slots) for :meth:`vectors_at`."""
        self.check_version(embedder_version)
        queries = check_vectors(queries, self.d, "queries")
        scores, rows = self._ann.search(queries, min(k, self.n_images))
        return self._ranked(scores, rows), rows

    def exact_search(
        self, queries: np.ndarray, k: int, *, embedder_version: str
    ) -> RankedImages:
        """The true top ``k`` images per query by inner product (every image
        scored by faiss's brute-force kernel): what the ANN is measured
        against, and the "exact" list of error attribution."""
        self.check_version(embedder_version)
        queries = check_vectors(queries, self.d, "queries")
        base = np.ascontiguousarray(self._rows.vectors, dtype=np.float32)
        scores, rows = faiss.knn(
            queries, base, min(k, self.n_images), metric=faiss.METRIC_INNER_PRODUCT
        )
        return self._ranked(scores, rows)

    def vectors_at(self, rows: np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` (any shape), as float32, with a
        zero vector where a row is ``-1``."""
        rows = np.asarray(rows, dtype=np.int64)
        out = self._rows.vectors[np.clip(rows, 0, None)].astype(np.float32)
        out[rows < 0] = 0.0
        return out

    def save(self, folder: str | Path) -> None:
        """Write the ANN index (with its manifest) and the catalogue arrays."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_index(self._ann, folder / INDEX_FOLDER)
        path = folder / CATALOGUE_FILE
        partial = folder / f".{CATALOGUE_FILE}.partial.npz"
        np.savez(
            partial,
            vectors=self._rows.vectors,
            image_ids=self._rows.image_ids,
            product_ids=self._rows.product_ids,
            products=self._products,
            categories=self._categories,
        )
        os.replace(partial, path)
        manifest = {
            "format": CATALOGUE_FORMAT,
            "embedder_version": self.embedder_version,
            "n_images": self.n_images,
            "d": self.d,
            "vector_dtype": str(self._rows.vectors.dtype),
            "sha256": sha256_of(path),
        }
        partial_manifest = folder / f".{CATALOGUE_MANIFEST}.partial"
        partial_manifest.write_text(
            json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        )
        os.replace(partial_manifest, folder / CATALOGUE_MANIFEST)

    @classmethod
    def load(cls, folder: str | Path) -> CatalogueIndex:
        """The catalogue saved in ``folder``, after checking that its files are
        unchanged and that index and arrays belong together."""
        folder = Path(folder)
        manifest = _read_catalogue_manifest(folder)
        path = folder / CATALOGUE_FILE
        if not path.is_file():
            raise IndexNotFound(
                f"{folder / CATALOGUE_MANIFEST} exists but {CATALOGUE_FILE} is "
                "missing: restore it or rebuild the catalogue index"
            )
        actual = sha256_of(path)
        if actual != manifest["sha256"]:
            raise IndexIntegrityError(
                f"{path} has sha256 {actual}, but its manifest recorded "
                f"{manifest['sha256']}: the file changed after it was saved; "
                "rebuild the catalogue index or restore the file"
            )
        ann = load_index(folder / INDEX_FOLDER)
        if ann.model_version != manifest["embedder_version"]:
            raise IndexVersionMismatch(
                f"{folder} holds an ANN index of embedder {ann.model_version!r} "
                f"and catalogue vectors of embedder "
                f"{manifest['embedder_version']!r}: they were saved from "
                "different builds; rebuild both from one embedder"
            )
        with np.load(path) as arrays:
            rows = _Rows(arrays["vectors"], arrays["image_ids"], arrays["product_ids"])
            products, categories = arrays["products"], arrays["categories"]
        if ann.ntotal != rows.image_ids.shape[0]:
            raise IndexIntegrityError(
                f"{folder}: the ANN index holds {ann.ntotal} vectors but the "
                f"catalogue {rows.image_ids.shape[0]} images: rebuild both together"
            )
        return cls(ann, rows, products, categories)

    def __repr__(self) -> str:
        return (
            f"CatalogueIndex({self.n_images} images of {self._products.size} "
            f"products, d={self.d}, {self.spec.kind}, "
            f"embedder_version={self.embedder_version!r})"
        )

    def _ranked(self, scores: np.ndarray, rows: np.ndarray) -> RankedImages:
        empty = rows < 0
        safe = np.clip(rows, 0, None)
        return RankedImages(
            image_ids=np.where(empty, NO_ID, self._rows.image_ids[safe]),
            product_ids=np.where(empty, NO_ID, self._rows.product_ids[safe]),
            scores=np.where(empty, -np.inf, scores).astype(np.float32),
        )


def _unit_vectors(vectors: object, d: int | None) -> np.ndarray:
    if d is None:
        if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
            raise CatalogueInputError(
                "vectors must be a 2-D numpy array (n_images, d), got "
                f"{type(vectors).__name__} of shape {np.shape(vectors)}"
            )
        d = vectors.shape[1]
    array = check_vectors(vectors, d)
    norms = np.linalg.norm(array, axis=1)
    off = np.abs(norms - 1.0) > NORM_TOLERANCE
    if off.any():
        rows = np.flatnonzero(off)
        raise CatalogueInputError(
            f"{rows.size} vector(s) are not unit length (first rows "
            f"{rows[:5].tolist()}, norms {np.round(norms[rows[:5]], 4).tolist()}): "
            "scores and the dedup threshold are cosines only on L2-normalized "
            "vectors; pass x / np.linalg.norm(x, axis=1, keepdims=True)"
        )
    return array


def _ids(values: ArrayLike, n: int, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != (n,) or (array.size and array.dtype.kind not in "iu"):
        raise CatalogueInputError(
            f"{what} must be {n} integers, one per vector, got {array.dtype} of "
            f"shape {array.shape}"
        )
    array = np.ascontiguousarray(array, dtype=np.int64)
    if array.size and array.min() < 0:
        raise CatalogueInputError(
            f"{what} hold negative values (smallest {int(array.min())}): -1 marks "
            "an empty slot in result lists, so ids must be >= 0"
        )
    return array


def _distinct_images(new: np.ndarray, existing: np.ndarray) -> None:
    values, counts = np.unique(new, return_counts=True)
    if values.size != new.size:
        raise CatalogueInputError(
            f"image_ids repeat (e.g. {values[counts > 1][:5].tolist()}): each "
            "image needs its own id"
        )
    clash = values[np.isin(values, existing)]
    if clash.size:
        raise CatalogueInputError(
            f"image_ids {clash[:5].tolist()} are already in the catalogue: new "
            "images need new ids (to replace an image, rebuild)"
        )


def _category_table(
    products: np.ndarray,
    categories: np.ndarray | None,
    known: np.ndarray | None,
    known_categories: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """The sorted product -> category table after adding ``products``."""
    if known is None or known_categories is None:
        known = np.empty(0, np.int64)
        known_categories = np.empty(0, np.int64)
    at = np.clip(np.searchsorted(known, products), 0, max(known.size - 1, 0))
    is_known = known[at] == products if known.size else np.zeros(products.size, bool)
    if categories is None:
        if not is_known.all():
            raise CatalogueInputError(
                f"products {np.unique(products[~is_known])[:5].tolist()} are new: "
                "pass category_ids (one per image) so that the degraded answer "
                "can find them by category"
            )
        return known, known_categories
    clash = is_known & (known_categories[at] != categories) if known.size else is_known
    if clash.any():
        raise CatalogueInputError(
            f"products {np.unique(products[clash])[:5].tolist()} already have "
            f"categories {known_categories[at][clash][:5].tolist()}, not "
            f"{categories[clash][:5].tolist()}: a product has one category"
        )
    new_products, first = np.unique(products[~is_known], return_index=True)
    new_categories = categories[~is_known][first]
    inconsistent = np.unique(
        np.stack([products[~is_known], categories[~is_known]]), axis=1
    )
    if inconsistent.shape[1] != new_products.size:
        raise CatalogueInputError(
            "some new products' images carry different category_ids: pass one "
            "category per product, the same on each of its images"
        )
    merged = np.concatenate([known, new_products])
    order = np.argsort(merged, kind="stable")
    return merged[order], np.concatenate([known_categories, new_categories])[order]


def _read_catalogue_manifest(folder: Path) -> dict[str, Any]:
    path = folder / CATALOGUE_MANIFEST
    if not path.is_file():
        raise IndexNotFound(
            f"no {CATALOGUE_MANIFEST} in {folder}: CatalogueIndex.save writes one; "
            "is this the folder a catalogue index was saved to?"
        )
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if manifest.get("format") != CATALOGUE_FORMAT:
        raise IndexIntegrityError(
            f"{path} has format {manifest.get('format')}, this library reads "
            f"format {CATALOGUE_FORMAT}: rebuild the catalogue index"
        )
    return manifest


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view
