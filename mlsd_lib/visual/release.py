"""A visual search release: the served embedder and the catalogue index it built,
one version, deployed together or not at all.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (requirement "Query
embedder and index built by the same embedder version: always; enforced at deploy
time"). Vectors from two embedders are not comparable, and nothing crashes when they are
mixed: the page just fills with confident nonsense. So the embedder and its index are
registered as one unit and checked whenever they are put to work:

* :func:`register_visual_release` exports the embedder with raw pixels in
  (:func:`~mlsd_lib.visual.served_embedder.export_pixel_embedder`, parity on
  real images), registers the file in the
  :class:`~mlsd_lib.serving.registry.ModelRegistry` as version ``n`` of
  :data:`EMBEDDER`, embeds the whole catalogue **in batch with that registered
  file**, builds the :class:`~mlsd_lib.visual.catalogue_index.CatalogueIndex`
  stamped with the embedder's served name (``visual_embedder-v<n>``), and
  saves it next to the model, at ``<root>/visual_index/versions/<n>/``, with
  the category centroids of the catalogue vectors (the degraded answer's
  category guess) and ``release.json`` (image size, dimension, dedup
  threshold, the centroids' sha256);
* :func:`deploy_visual_release` reads the index **first** and refuses it
  (:class:`~mlsd_lib.index.versions.IndexVersionMismatch`) before the
  embedder is loaded anywhere if another embedder built it; then loads the
  embedder onto a model server (Triton's model repository, Python backend,
  sha256 checked, as the recommender's release does) and returns the
  :class:`VisualModels` a gateway serves, which check the pairing once more
  when made (a swap builds them too).

Promotion moves the release as a whole (:func:`promote_visual_release`,
:func:`staged_visual_release`): there is one model per release, so the
registry's stage of the embedder *is* the release's stage.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np
from torch import nn

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.index.persistence import sha256_of
from mlsd_lib.index.spec import IndexSpec
from mlsd_lib.index.threads import faiss_threads
from mlsd_lib.index.versions import IndexVersionMismatch
from mlsd_lib.serving.gateway.deploy import load_registered, served_name
from mlsd_lib.serving.gateway.model_calls import ModelEndpoint
from mlsd_lib.serving.model_server import ModelServer
from mlsd_lib.serving.registry import (
    ArtifactFormat,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    Stage,
)
from mlsd_lib.serving.tensors import TensorSpec
from mlsd_lib.visual.catalogue_index import CatalogueIndex
from mlsd_lib.visual.search import VisualSearcher
from mlsd_lib.visual.served_embedder import (
    EMBEDDING,
    PIXELS,
    embed_pixels,
    export_pixel_embedder,
)

__all__ = [
    "EMBEDDER",
    "INDEX",
    "VisualModels",
    "VisualRelease",
    "VisualReleaseError",
    "category_centroids",
    "deploy_visual_release",
    "promote_visual_release",
    "register_visual_release",
    "staged_visual_release",
    "visual_release_of",
]

#: The registry's name of the served embedder, and the folder of the indexes.
EMBEDDER, INDEX = "visual_embedder", "visual_index"
RELEASE_FILE = "release.json"
CATALOGUE_FOLDER = "catalogue"
CENTROIDS_FILE = "category_centroids.npz"
#: Images per call the model server batches up to (one per request online).
EMBEDDER_MAX_BATCH = 32


class VisualReleaseError(MlsdError, LookupError):
    """A release that cannot be registered, read or served as asked; says why."""


@dataclass(frozen=True)
class VisualRelease:
    """The registry record of a release's embedder, where its index lives, and
    what it was checked for: the largest difference between the exported file
    and the eager model on real catalogue images (``parity_max_abs_error``)."""

    version: int
    embedder: ModelVersion
    index_dir: Path
    image_size: int
    dim: int
    dedup_threshold: float | None
    parity_max_abs_error: float

    @property
    def name(self) -> str:
        """``visual-v<n>``: what responses and the impression log call it."""
        return f"visual-v{self.version}"

    @property
    def embedder_version(self) -> str:
        """The embedder's served name, which the index records."""
        return served_name(self.embedder)


def category_centroids(
    vectors: np.ndarray, category_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The categories (sorted) and the unit mean vector of each one's images:
    the nearest centroid is the degraded answer's category guess."""
    categories, inverse = np.unique(np.asarray(category_ids), return_inverse=True)
    sums = np.zeros((categories.size, vectors.shape[1]), dtype=np.float64)
    np.add.at(sums, inverse.reshape(-1), vectors)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return categories.astype(np.int64), (sums / np.maximum(norms, 1e-12)).astype(
        np.float32
    )


def _next_version(registry: ModelRegistry) -> int:
    try:
        return registry.latest(EMBEDDER).version + 1
    except RegistryError:
        return 1


def register_visual_release(
    registry: ModelRegistry,
    embedder: nn.Module,
    catalogue: ImageSet,
    *,
    training_window: tuple[date | datetime | str, date | datetime | str],
    dedup_threshold: float | None,
    metrics: Mapping[str, float] | None = None,
    spec: IndexSpec | None = None,
    format: ArtifactFormat = "torchscript",
) -> VisualRelease:
    """Export and register ``embedder``, embed ``catalogue`` with the
    registered file, build and save its index: release ``n`` (see the module
    notes). ``spec`` defaults to the catalogue's IVF-PQ
    (:func:`~mlsd_lib.visual.catalogue_index.default_catalogue_spec`)."""
    if not isinstance(catalogue, ImageSet) or len(catalogue) < 8:
        raise VisualReleaseError(
            "catalogue must be an ImageSet of the catalogue's images (at least 8: "
            "the parity check runs on them)."
        )
    size = catalogue.image_size
    if size[0] != size[1]:
        raise VisualReleaseError(
            f"catalogue images are {size[0]} x {size[1]}: the served embedder takes "
            "square images; crop or pad the catalogue to a square first."
        )
    n = _next_version(registry)
    with tempfile.TemporaryDirectory(prefix="mlsd-visual-export-") as workdir:
        suffix = "pt" if format == "torchscript" else "pt2"
        exported = export_pixel_embedder(
            embedder,
            catalogue.subset(np.arange(min(32, len(catalogue)))),
            Path(workdir) / f"embedder.{suffix}",
            format=format,
        )
        record = registry.register(
            EMBEDDER,
            exported.path,
            input_schema=[(f"{PIXELS}:{size[0]}x{size[1]}x3", "uint8")],
            training_window=training_window,
            metrics=dict(metrics or {}),
            format=format,
        )
    if record.version != n:
        raise VisualReleaseError(
            f"registered {EMBEDDER} version {record.version}, expected {n}: another "
            "process registered at the same time; register the release again."
        )
    module = registry.load(EMBEDDER, n)  # the registered file, checksum verified
    vectors = embed_pixels(module, catalogue)
    with faiss_threads(1):  # k-means on one thread: the same index everywhere
        index = CatalogueIndex.build(
            vectors,
            catalogue.image_ids,
            catalogue.product_ids,
            catalogue.category_ids,
            embedder_version=served_name(record),
            spec=spec,
        )
    folder = registry.root / INDEX / "versions" / str(n)
    index.save(folder / CATALOGUE_FOLDER)
    categories, centroids = category_centroids(vectors, catalogue.category_ids)
    np.savez(folder / CENTROIDS_FILE, categories=categories, centroids=centroids)
    info = {
        "version": n,
        "embedder_version": served_name(record),
        "image_size": int(size[0]),
        "dim": int(vectors.shape[1]),
        "n_images": len(catalogue),
        "dedup_threshold": None if dedup_threshold is None else float(dedup_threshold),
        "centroids_sha256": sha256_of(folder / CENTROIDS_FILE),
        "parity": {
            "max_abs_error": exported.report.max_abs_error,
            "batch_sizes": list(exported.report.batch_sizes),
        },
    }
    (folder / RELEASE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return visual_release_of(registry, n)


def visual_release_of(registry: ModelRegistry, version: int) -> VisualRelease:
    """Release ``version`` as the registry holds it (both parts must exist)."""
    folder = registry.root / INDEX / "versions" / str(version)
    path = folder / RELEASE_FILE
    if not path.is_file():
        raise VisualReleaseError(
            f"no visual release {version} in {registry.root}: no {RELEASE_FILE} in "
            f"{folder}; register it with register_visual_release."
        )
    info = json.loads(path.read_text())
    return VisualRelease(
        version=version,
        embedder=registry.get(EMBEDDER, version),
        index_dir=folder,
        image_size=int(info["image_size"]),
        dim=int(info["dim"]),
        dedup_threshold=info["dedup_threshold"],
        parity_max_abs_error=float(info["parity"]["max_abs_error"]),
    )


def promote_visual_release(
    registry: ModelRegistry, version: int, stage: Stage
) -> VisualRelease:
    """Put release ``version`` (its embedder, and so its index) in ``stage``."""
    release = visual_release_of(registry, version)
    registry.promote(EMBEDDER, version, stage)
    return release


def staged_visual_release(
    registry: ModelRegistry, stage: Stage = "production"
) -> VisualRelease:
    """The release ``stage`` names."""
    try:
        version = registry.stage_version(EMBEDDER, stage)
    except RegistryError:
        version = None
    if version is None:
        raise VisualReleaseError(
            f"no visual release is in {stage!r} in {registry.root}: promote one with "
            "promote_visual_release(registry, version, stage)."
        )
    return visual_release_of(registry, version)


@dataclass(frozen=True)
class VisualModels:
    """One release as the gateway serves it: the embedder on a model server,
    the catalogue index and its searcher, the category centroids.

    Refused at construction
    (:class:`~mlsd_lib.index.versions.IndexVersionMismatch`) unless the index
    was built by this embedder (``catalogue.embedder_version`` equals the
    embedder's served name): a gateway never starts, nor swaps to, a mismatched
    pair.
    """

    release: str
    embedder: ModelEndpoint
    catalogue: CatalogueIndex
    image_size: int
    dedup_threshold: float | None
    centroid_categories: np.ndarray
    centroids: np.ndarray
    searcher: VisualSearcher = field(init=False)

    def __post_init__(self) -> None:
        if self.catalogue.embedder_version != self.embedder.model_name:
            raise IndexVersionMismatch(
                f"the catalogue index was built by embedder "
                f"{self.catalogue.embedder_version!r}, but the embedder to serve is "
                f"{self.embedder.model_name!r}: their vectors are not comparable. "
                "Deploy the release that holds both (deploy_visual_release), or "
                "rebuild the index with this embedder and swap them together."
            )
        if self.centroids.shape != (self.centroid_categories.size, self.catalogue.d):
            raise VisualReleaseError(
                f"category centroids have shape {self.centroids.shape}, expected "
                f"({self.centroid_categories.size}, {self.catalogue.d}): load them "
                "from the same release as the index."
            )
        searcher = VisualSearcher(self.catalogue, dedup_threshold=self.dedup_threshold)
        object.__setattr__(self, "searcher", searcher)

    @property
    def embedder_version(self) -> str:
        return self.embedder.model_name

    def versions(self) -> dict[str, str]:
        """What served a request: the release, its embedder and its index."""
        return {
            "release": self.release,
            "embedder": self.embedder.version,
            "index": self.catalogue.embedder_version,
        }

    def guess_category(self, vector: np.ndarray) -> int:
        """The category whose centroid is nearest to ``vector`` (cosine)."""
        scores = self.centroids @ np.asarray(vector, dtype=np.float32).reshape(-1)
        return int(self.centroid_categories[int(np.argmax(scores))])


def _centroids(release: VisualRelease) -> tuple[np.ndarray, np.ndarray]:
    info = json.loads((release.index_dir / RELEASE_FILE).read_text())
    path = release.index_dir / CENTROIDS_FILE
    found = sha256_of(path)
    if found != info["centroids_sha256"]:
        raise VisualReleaseError(
            f"{path} has sha256 {found}, {RELEASE_FILE} recorded "
            f"{info['centroids_sha256']}: the file changed after the release was "
            "registered; register the release again."
        )
    with np.load(path, allow_pickle=False) as arrays:
        return arrays["categories"], arrays["centroids"]


def embedder_endpoint(
    registry: ModelRegistry,
    release: VisualRelease,
    server: ModelServer,
    *,
    max_batch_size: int = EMBEDDER_MAX_BATCH,
) -> ModelEndpoint:
    """Load the release's embedder onto ``server`` (unless it is there; the
    file is verified against the registry's sha256 first) and describe the
    call: ``pixels`` uint8 ``(n, S, S, 3)`` in, ``embedding`` ``(n, d)`` out."""
    size = release.image_size
    inputs = (TensorSpec(PIXELS, np.uint8, (size, size, 3)),)
    outputs = (TensorSpec(EMBEDDING, np.float32, (release.dim,)),)
    name = load_registered(
        registry, release.embedder, server, inputs, outputs,
        max_batch_size=max_batch_size,
    )  # fmt: skip
    return ModelEndpoint(
        version=name,
        server=server,
        model_name=name,
        inputs=inputs,
        outputs=outputs,
        columns={PIXELS: (f"{size}x{size}x3",)},
    )


def deploy_visual_release(
    registry: ModelRegistry, release: VisualRelease, server: ModelServer
) -> VisualModels:
    """Load ``release`` for serving: the index first (refused unless its
    embedder is the release's), then the embedder onto ``server``."""
    catalogue = CatalogueIndex.load(release.index_dir / CATALOGUE_FOLDER)
    catalogue.check_version(release.embedder_version)  # before any model loads
    categories, centroids = _centroids(release)
    endpoint = embedder_endpoint(registry, release, server)
    return VisualModels(
        release=release.name,
        embedder=endpoint,
        catalogue=catalogue,
        image_size=release.image_size,
        dedup_threshold=release.dedup_threshold,
        centroid_categories=categories,
        centroids=centroids,
    )
