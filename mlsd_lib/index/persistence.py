"""Save an index with a manifest, and load it only if its bytes are unchanged.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``
(the nightly rebuild and the
version-consistent swap). An index on disk is a folder::

    folder/index.faiss      # faiss.write_index
    folder/manifest.json    # what it is, which model embedded it, its sha256

The manifest records the kind and parameters (an
:class:`~mlsd_lib.index.spec.IndexSpec`), the faiss factory string, the
dimension, the vector count, the ``model_version`` whose item tower embedded
the vectors, and the sha256 of ``index.faiss``. :func:`load_index` re-hashes
the file before faiss parses a byte of it and refuses one that changed
(:class:`IndexIntegrityError`, naming the file and both hashes), as the model
registry does for model files. Both files are written to a temporary name and
moved into place with ``os.replace``, so a reader never sees half a file; the
manifest goes last, so a crash between the two leaves a hash mismatch, which
load refuses, rather than a silently wrong index.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import faiss

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.ann import AnnIndex
from mlsd_lib.index.spec import IndexSpec

MANIFEST_FILE = "manifest.json"
INDEX_FILE = "index.faiss"
#: Bumped when the manifest's fields change meaning.
MANIFEST_FORMAT = 1
_CHUNK = 1 << 20


class IndexNotFound(MlsdError, FileNotFoundError):
    """A folder without a saved index (no manifest, or no index file)."""


class IndexIntegrityError(MlsdError, RuntimeError):
    """An index file whose bytes or shape differ from what its manifest recorded."""


class MissingModelVersion(MlsdError, ValueError):
    """An index saved without saying which model embedded its vectors."""


@dataclass(frozen=True)
class IndexManifest:
    """What ``manifest.json`` holds (see the module docstring)."""

    kind: str
    factory: str
    params: dict[str, Any]
    d: int
    ntotal: int
    model_version: str
    sha256: str
    file: str = INDEX_FILE
    size_bytes: int = 0
    faiss_version: str = ""
    format: int = MANIFEST_FORMAT

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexManifest:
        return cls(**data)


def sha256_of(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def save_index(index: AnnIndex, folder: str | Path) -> IndexManifest:
    """Write ``index`` and its manifest into ``folder`` (created if missing)."""
    if not index.model_version:
        raise MissingModelVersion(
            "this index records no model_version: set index.model_version to the "
            "version of the model whose item tower embedded its vectors, so that "
            "a server can check it against the user tower"
        )
    faiss_index = index.faiss_index  # refuses an unbuilt or empty index
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / INDEX_FILE
    partial = folder / f".{INDEX_FILE}.partial"
    faiss.write_index(faiss_index, str(partial))
    os.replace(partial, path)
    manifest = IndexManifest(
        kind=index.spec.kind,
        factory=index.spec.factory_string(),
        params=index.spec.to_json(),
        d=index.d,
        ntotal=index.ntotal,
        model_version=index.model_version,
        sha256=sha256_of(path),
        size_bytes=path.stat().st_size,
        faiss_version=faiss.__version__,
    )
    _write_json_atomic(folder / MANIFEST_FILE, manifest.to_json())
    return manifest


def read_manifest(folder: str | Path) -> IndexManifest:
    """The manifest of the index saved in ``folder``."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise IndexNotFound(
            f"no {MANIFEST_FILE} in {folder}: save_index writes one next to "
            f"{INDEX_FILE}; is this the folder an index was saved to?"
        )
    manifest = IndexManifest.from_json(json.loads(path.read_text(encoding="utf-8")))
    if manifest.format != MANIFEST_FORMAT:
        raise IndexIntegrityError(
            f"{path} has manifest format {manifest.format}, this library reads "
            f"format {MANIFEST_FORMAT}: rebuild the index with this version"
        )
    return manifest


def load_index(folder: str | Path) -> AnnIndex:
    """The index saved in ``folder``, after checking its sha256 and shape.

    The returned index's ``model_version`` is the manifest's: pass it to
    :func:`~mlsd_lib.index.versions.require_model_version` before serving.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    path = folder / manifest.file
    if not path.is_file():
        raise IndexNotFound(
            f"{folder / MANIFEST_FILE} names {manifest.file}, which is missing: "
            "restore it or rebuild the index"
        )
    actual = sha256_of(path)
    if actual != manifest.sha256:
        raise IndexIntegrityError(
            f"{path} has sha256 {actual}, but its manifest recorded "
            f"{manifest.sha256}: the file changed after it was saved; rebuild "
            "the index or restore the file"
        )
    faiss_index = faiss.read_index(str(path))
    if (faiss_index.d, faiss_index.ntotal) != (manifest.d, manifest.ntotal):
        raise IndexIntegrityError(
            f"{path} holds {faiss_index.ntotal} vectors of dimension "
            f"{faiss_index.d}, but its manifest says {manifest.ntotal} of "
            f"dimension {manifest.d}: rebuild the index"
        )
    spec = IndexSpec.from_json(manifest.params)
    return AnnIndex.from_faiss(faiss_index, spec, model_version=manifest.model_version)


def _write_json_atomic(path: Path, data: Any) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)
