"""Batch (offline) inference on a Dask cluster: a catalogue embedded by the served file.

Introduced in ``notebooks/scaling_out.ipynb``. Before a visual-search release
can serve, every catalogue image needs its vector, computed by the very file
that will embed the queries (:func:`~mlsd_lib.visual.served_embedder.embed_pixels`
over the exported :class:`~mlsd_lib.visual.served_embedder.PixelEmbedder`).
:func:`embed_catalogue` runs that job on the workers:

* **the model travels as bytes**: the client reads the exported file and
  scatters its bytes once; a worker fetches them (once) when its first task
  needs them, so workers need no shared filesystem; each worker process
  loads the module from the bytes the first time it needs it and keeps it,
  keyed by the bytes' SHA-256 (:func:`worker_model_loads` counts the loads,
  so a test can check "once per worker"), instead of once per partition;
* **one torch thread per task**: a worker process is one core's worth of
  work; torch's default of one thread per core would make two workers fight
  over both cores;
* **partitions aligned to batches**: each partition is a contiguous slice of
  whole ``batch_size`` batches, so every image is embedded in the same batch,
  with the same arithmetic, as by the single-process loop; the vectors come
  back in catalogue order, equal to it (a test compares them).
"""

from __future__ import annotations

import hashlib
import io
import itertools
from pathlib import Path

import numpy as np
import torch
from distributed import Client, Future
from torch import nn

from mlsd_lib.batch.partitioned_join import BatchJobError, default_partitions
from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.models.training import torch_threads
from mlsd_lib.serving.export import ExportFormat
from mlsd_lib.visual.served_embedder import embed_pixels

__all__ = ["embed_catalogue", "worker_model_loads"]

#: Modules loaded in this process, by the SHA-256 of their file's bytes.
_LOADED: dict[str, nn.Module] = {}
_LOADS = {"count": 0}


def _module_from_bytes(blob: bytes, digest: str, format: ExportFormat) -> nn.Module:
    """The module of ``blob``, loaded once per process and kept."""
    module = _LOADED.get(digest)
    if module is None:
        if format == "torchscript":
            module = torch.jit.load(io.BytesIO(blob), map_location="cpu")
            module.eval()
        else:
            module = torch.export.load(io.BytesIO(blob)).module()
        _LOADED[digest] = module
        _LOADS["count"] += 1
    return module


def worker_model_loads() -> int:
    """How many model files this process has loaded (run it on the workers)."""
    return _LOADS["count"]


def _embed_partition(
    blob: bytes,
    digest: str,
    format: ExportFormat,
    pixels: np.ndarray,
    batch_size: int,
) -> np.ndarray:
    """One partition on a worker: ``(n, d)`` float32 vectors, one torch thread."""
    module = _module_from_bytes(blob, digest, format)
    ids = np.arange(len(pixels), dtype=np.int64)
    images = ImageSet(pixels, ids, ids, ids)
    with torch_threads(1):
        return embed_pixels(module, images, batch_size)


def _bounds(n: int, partitions: int, batch_size: int) -> list[tuple[int, int]]:
    """Contiguous slices of whole batches, as even as whole batches allow."""
    batches = -(-n // batch_size)
    cuts = np.linspace(0, batches, min(partitions, batches) + 1).round().astype(int)
    edges = np.minimum(cuts * batch_size, n)
    return [(int(a), int(b)) for a, b in itertools.pairwise(edges)]


def embed_catalogue(
    client: Client,
    model_path: str | Path,
    images: ImageSet,
    *,
    format: ExportFormat = "torchscript",
    partitions: int | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """``(n, d)`` float32 vectors of ``images`` by the exported pixels-in model
    at ``model_path`` (``format`` as it was exported), in catalogue order,
    embedded on the cluster in ``partitions`` slices (default two per worker).
    """
    num_partitions = default_partitions(client, partitions)
    if not isinstance(images, ImageSet) or len(images) == 0:
        got = len(images) if isinstance(images, ImageSet) else type(images).__name__
        raise BatchJobError(
            f"embed_catalogue takes a non-empty ImageSet, got {got}: wrap uint8 "
            "(N, H, W, 3) pixels in mlsd_lib.datasets.image_sets.ImageSet."
        )
    if batch_size < 1:
        raise BatchJobError(f"batch_size must be >= 1, got {batch_size}.")
    path = Path(model_path)
    if not path.is_file():
        raise BatchJobError(
            f"no exported model at {path}; export one first "
            "(mlsd_lib.visual.served_embedder.export_pixel_embedder)."
        )
    blob = path.read_bytes()
    digest = hashlib.sha256(blob).hexdigest()
    (model,) = client.scatter([blob], hash=False)
    bounds = _bounds(len(images), num_partitions, batch_size)
    chunks = client.scatter(
        [np.ascontiguousarray(images.images[a:b]) for a, b in bounds], hash=False
    )
    futures: list[Future] = [
        client.submit(
            _embed_partition, model, digest, format, pixels, batch_size, pure=False
        )
        for pixels in chunks
    ]
    return np.concatenate(client.gather(futures)).astype(np.float32, copy=False)
