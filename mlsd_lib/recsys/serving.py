"""A release of the feed: user tower, item tower, ranker and index under one
registry version, deployed together.

Introduced in ``casestudies/recommender/index.md`` ("Two models, one
version"; the requirement "user tower and item index from the same model
version, enforced at deploy time"). A two-tower model's user and item
embeddings are comparable only when both towers come from one training run,
and nothing errors when they do not: the feed just gets worse. So a release is
registered as one unit and checked when it is deployed:

* :func:`register_release` registers the exported user tower, item tower and
  ranker (TorchScript or ``torch.export`` files, in the
  :class:`~mlsd_lib.serving.registry.ModelRegistry`) so that all three get the
  **same version number** ``n`` (refused before anything is written if the
  registry's counters disagree), and saves the index built by that item tower
  next to them, at ``<root>/recs_index/versions/<n>/``, recording the user
  tower's served name (``recs_user_tower-v<n>``) as its ``model_version``,
  with the catalogue's embeddings and their sha256 (``release.json``).
* :func:`deploy_release` loads a release onto a model server (Triton from its
  model repository, via
  :func:`~mlsd_lib.serving.gateway.model_calls.deploy_registered`; the
  in-process server where Triton cannot run) and returns the
  :class:`~mlsd_lib.recsys.feed.FeedModels` the pipeline serves. It reads the
  index **first** and refuses it
  (:class:`~mlsd_lib.index.versions.IndexVersionMismatch`) before any model is
  loaded if it was not embedded by this user tower.
* :func:`promote_release` moves all three models to a stage together;
  :func:`staged_release` reads back the release a stage names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.ann import AnnIndex
from mlsd_lib.index.persistence import load_index, save_index, sha256_of
from mlsd_lib.index.versions import require_model_version
from mlsd_lib.recsys.feed import E_MINUTES, EMBEDDING, P_PLAY, FeedModels
from mlsd_lib.recsys.feed_catalogue import FeedCatalogue
from mlsd_lib.recsys.feed_features import ranker_schema, user_tower_schema
from mlsd_lib.serving.gateway.deploy import served_name
from mlsd_lib.serving.gateway.model_calls import deploy_registered
from mlsd_lib.serving.model_server import ModelServer
from mlsd_lib.serving.registry import (
    ArtifactFormat,
    ModelRegistry,
    ModelVersion,
    RegistryError,
    Stage,
)
from mlsd_lib.serving.tensors import TensorSpec

__all__ = [
    "INDEX",
    "ITEM_TOWER",
    "RANKER",
    "USER_TOWER",
    "FeedRelease",
    "ReleaseError",
    "deploy_release",
    "promote_release",
    "register_release",
    "release_of",
    "staged_release",
]

USER_TOWER, ITEM_TOWER, RANKER = "recs_user_tower", "recs_item_tower", "recs_ranker"
#: The registry folder the releases' indexes are saved under (not a model).
INDEX = "recs_index"
MODELS = (USER_TOWER, ITEM_TOWER, RANKER)
RELEASE_FILE = "release.json"
EMBEDDINGS_FILE = "item_embeddings.npy"
#: Rows per call the model server batches up to: the user tower gets one row
#: per request, the ranker ~550 (500 retrieved + the other sources).
USER_TOWER_MAX_BATCH, RANKER_MAX_BATCH = 64, 2048


class ReleaseError(MlsdError, LookupError):
    """A release that cannot be registered or read as asked; says why."""


@dataclass(frozen=True)
class FeedRelease:
    """The registry records of one release and where its index lives."""

    version: int
    user_tower: ModelVersion
    item_tower: ModelVersion
    ranker: ModelVersion
    index_dir: Path

    @property
    def name(self) -> str:
        """``recs-v<n>``: what responses and the impression log call it."""
        return f"recs-v{self.version}"

    @property
    def two_tower_version(self) -> str:
        """The version string the index records: the user tower's served name."""
        return served_name(self.user_tower)

    @property
    def history_len(self) -> int:
        """History slots the user tower was registered with."""
        return sum(
            1 for name in self.user_tower.feature_names if name.startswith("history:")
        )


def _next_version(registry: ModelRegistry, name: str) -> int:
    try:
        return registry.latest(name).version + 1
    except RegistryError:
        return 1


def register_release(
    registry: ModelRegistry,
    *,
    user_tower: str | Path,
    item_tower: str | Path,
    ranker: str | Path,
    index: AnnIndex,
    item_embeddings: np.ndarray,
    item_tower_schema: Sequence[tuple[str, str]],
    history_len: int,
    training_window: tuple[date | datetime | str, date | datetime | str],
    metrics: Mapping[str, float] | None = None,
    format: ArtifactFormat = "torchscript",
) -> FeedRelease:
    """Register the three exported models and save the index as release ``n``.

    ``item_embeddings`` are the item tower's vectors of the whole catalogue
    (the index holds those of the items it serves); ``item_tower_schema`` its
    registered ``"<tensor>:<column>"`` inputs. Sets ``index.model_version``.
    """
    versions = {name: _next_version(registry, name) for name in MODELS}
    if len(set(versions.values())) != 1:
        raise ReleaseError(
            f"the registry's next versions differ ({versions}): a release "
            "registers the three models together, always with register_release; "
            "use a fresh registry folder or register the missing ones to catch up."
        )
    n = versions[USER_TOWER]
    embeddings = np.ascontiguousarray(item_embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[1] != index.d:
        raise ReleaseError(
            f"item_embeddings have shape {embeddings.shape}, the index dimension "
            f"{index.d}: pass the item tower's vectors of every catalogue item."
        )
    common = {
        "training_window": training_window,
        "metrics": dict(metrics or {}),
        "format": format,
    }
    records = {
        USER_TOWER: registry.register(
            USER_TOWER,
            user_tower,
            input_schema=user_tower_schema(history_len),
            **common,
        ),
        ITEM_TOWER: registry.register(
            ITEM_TOWER, item_tower, input_schema=list(item_tower_schema), **common
        ),
        RANKER: registry.register(
            RANKER, ranker, input_schema=ranker_schema(), **common
        ),
    }
    got = {name: record.version for name, record in records.items()}
    if set(got.values()) != {n}:  # another writer registered in between
        raise ReleaseError(
            f"registered versions {got}, expected {n} for all three: another "
            "process registered at the same time; register the release again."
        )
    index.model_version = served_name(records[USER_TOWER])
    folder = registry.root / INDEX / "versions" / str(n)
    save_index(index, folder)
    np.save(folder / EMBEDDINGS_FILE, embeddings)
    (folder / RELEASE_FILE).write_text(
        json.dumps(
            {
                "version": n,
                "model_version": index.model_version,
                "embeddings_sha256": sha256_of(folder / EMBEDDINGS_FILE),
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    return release_of(registry, n)


def release_of(registry: ModelRegistry, version: int) -> FeedRelease:
    """Release ``version`` as the registry holds it (every part must exist)."""
    folder = registry.root / INDEX / "versions" / str(version)
    if not (folder / RELEASE_FILE).is_file():
        raise ReleaseError(
            f"no release {version} in {registry.root}: no {RELEASE_FILE} in "
            f"{folder}; register it with register_release."
        )
    return FeedRelease(
        version=version,
        user_tower=registry.get(USER_TOWER, version),
        item_tower=registry.get(ITEM_TOWER, version),
        ranker=registry.get(RANKER, version),
        index_dir=folder,
    )


def promote_release(registry: ModelRegistry, version: int, stage: Stage) -> FeedRelease:
    """Put all three models of release ``version`` in ``stage``."""
    release = release_of(registry, version)
    for name in MODELS:
        registry.promote(name, version, stage)
    return release


def staged_release(registry: ModelRegistry, stage: Stage = "production") -> FeedRelease:
    """The release ``stage`` names; refused if the three models disagree."""
    staged: dict[str, int | None] = {}
    for name in MODELS:
        try:
            staged[name] = registry.stage_version(name, stage)
        except RegistryError:  # never registered
            staged[name] = None
    if len(set(staged.values())) != 1 or staged[USER_TOWER] is None:
        raise ReleaseError(
            f"stage {stage!r} names {staged}: the three models of a release move "
            "together; use promote_release(registry, version, stage)."
        )
    return release_of(registry, staged[USER_TOWER])


def _embeddings(release: FeedRelease) -> np.ndarray:
    info = json.loads((release.index_dir / RELEASE_FILE).read_text(encoding="utf-8"))
    path = release.index_dir / EMBEDDINGS_FILE
    found = sha256_of(path)
    if found != info["embeddings_sha256"]:
        raise ReleaseError(
            f"{path} has sha256 {found}, {RELEASE_FILE} recorded "
            f"{info['embeddings_sha256']}: the file changed after the release was "
            "registered; register the release again."
        )
    return np.load(path, allow_pickle=False)


def deploy_release(
    registry: ModelRegistry,
    release: FeedRelease,
    server: ModelServer,
    item_features: pd.DataFrame,
) -> FeedModels:
    """Load ``release`` onto ``server``; the :class:`~mlsd_lib.recsys.feed.FeedModels`
    to serve.

    Order matters: the index (and its version check) first, then the models,
    so a mismatched index never gets a model loaded for it.
    ``item_features`` is the observable catalogue table (what
    ``world.item_features()`` gives), one row per item id.
    """
    index = load_index(release.index_dir)
    require_model_version(index, release.two_tower_version)
    embeddings = _embeddings(release)
    catalogue = FeedCatalogue.from_item_features(item_features, embeddings)
    user_tower = deploy_registered(
        registry,
        release.user_tower,
        server,
        (TensorSpec(EMBEDDING, np.float32, (index.d,)),),
        max_batch_size=USER_TOWER_MAX_BATCH,
    )
    ranker = deploy_registered(
        registry,
        release.ranker,
        server,
        (
            TensorSpec(P_PLAY, np.float32, (1,)),
            TensorSpec(E_MINUTES, np.float32, (1,)),
        ),
        max_batch_size=RANKER_MAX_BATCH,
    )
    return FeedModels(
        release=release.name,
        user_tower=user_tower,
        ranker=ranker,
        index=index,
        catalogue=catalogue,
        history_len=release.history_len,
    )
