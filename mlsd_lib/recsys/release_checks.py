"""Is a freshly built release one piece? The version stamps and contents, checked.

Introduced in ``casestudies/recommender/08_monitoring_and_retraining.ipynb`` ("Two
models, one version"; step 7, "retrain and re-index with a version-consistent swap"). A
retrain replaces four things at once: the user tower, the item tower, the ranker and the
index the item tower embedded. :func:`release_checks` reads a registered release back
from disk, as a deployment would, and checks what must hold before it may serve:

* ``one version``: the three models carry the same registry version;
* ``index stamp``: the saved index records the user tower's served name
  (``recs_user_tower-v<n>``) as the model that embedded it, the stamp the
  gateway checks (:func:`~mlsd_lib.index.versions.require_model_version`);
* ``index files``: the index file and the catalogue embeddings match the
  sha256 recorded when they were saved (loading verifies both);
* ``catalogue``: the index holds exactly the items launched by ``day`` (a
  launch since the last build is what a re-index is for), and every vector is
  the item tower's embedding of its item (searched back to itself);
* ``stage``: all three models are in ``stage``.

Each check is a row (what, expected, found, ok), so a notebook can show the
table and a test can assert on it.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.persistence import load_index, sha256_of
from mlsd_lib.index.threads import faiss_threads
from mlsd_lib.recsys.monitors import indexed_items
from mlsd_lib.recsys.serving import (
    EMBEDDINGS_FILE,
    MODELS,
    RELEASE_FILE,
    FeedRelease,
    release_of,
)
from mlsd_lib.serving.gateway.deploy import served_name
from mlsd_lib.serving.registry import ModelRegistry, Stage

__all__ = ["ReleaseCheckFailed", "release_checks", "require_release_checks"]

#: Indexed items searched back to themselves in the ``catalogue`` check.
_PROBES = 64


class ReleaseCheckFailed(MlsdError, RuntimeError):
    """A release failed a check it must pass before serving; lists which."""


def _row(check: str, expected: object, found: object) -> dict[str, object]:
    return {
        "check": check,
        "expected": expected,
        "found": found,
        "ok": expected == found,
    }


def release_checks(
    registry: ModelRegistry,
    version: int,
    launch_day: np.ndarray,
    day: int,
    stage: Stage = "production",
) -> pd.DataFrame:
    """The checks of release ``version`` (see the module notes), one row each.

    ``launch_day`` is every item's launch day (the catalogue table's column)
    and ``day`` the world day the release is built for: the index must hold
    the items launched by then.
    """
    release: FeedRelease = release_of(registry, version)
    parts = (release.user_tower, release.item_tower, release.ranker)
    rows = [_row("one version", [version] * 3, [part.version for part in parts])]
    index = load_index(release.index_dir)  # verifies the index file's sha256
    rows.append(
        _row("index stamp", served_name(release.user_tower), index.model_version)
    )
    info = json.loads((release.index_dir / RELEASE_FILE).read_text(encoding="utf-8"))
    path = release.index_dir / EMBEDDINGS_FILE
    digest = sha256_of(path) if path.is_file() else "missing"
    if digest == info.get("embeddings_sha256"):
        embeddings, verified = np.load(path, allow_pickle=False), "sha256 ok"
    else:
        embeddings, verified = None, f"embeddings sha256 {digest[:12]}... differs"
    rows.append(_row("index files", "sha256 ok", verified))
    launched = np.flatnonzero(np.asarray(launch_day) <= day)
    held = indexed_items(index)
    missing = np.setdiff1d(launched, held).size
    extra = np.setdiff1d(held, launched).size
    rows.append(
        _row(
            "catalogue",
            f"the {len(launched)} items launched by day {day}",
            f"the {len(launched)} items launched by day {day}"
            if missing == extra == 0
            else f"{len(held)} items: {missing} launched ones missing, {extra} others",
        )
    )
    if embeddings is not None and len(held):
        probes = held[
            np.linspace(0, len(held) - 1, min(_PROBES, len(held))).astype(int)
        ]
        with faiss_threads(1):
            _, found = index.search(embeddings[probes], 1)
        rows.append(
            _row(
                "vectors",
                "each item's nearest neighbour is itself",
                "each item's nearest neighbour is itself"
                if np.array_equal(found[:, 0], probes)
                else f"{int((found[:, 0] != probes).sum())} of {len(probes)} are not",
            )
        )
    staged = [registry.stage_version(name, stage) for name in MODELS]
    rows.append(_row(f"stage {stage}", [version] * 3, staged))
    frame = pd.DataFrame(rows)
    frame.attrs["model_version"] = info.get("model_version")
    return frame


def require_release_checks(frame: pd.DataFrame) -> None:
    """Raise :class:`ReleaseCheckFailed` naming every check of ``frame`` that
    failed (a table from :func:`release_checks`)."""
    failed = frame[~frame["ok"].astype(bool)]
    if len(failed):
        details = "; ".join(
            f"{row.check}: expected {row.expected}, found {row.found}"
            for row in failed.itertuples()
        )
        raise ReleaseCheckFailed(
            f"{len(failed)} release check(s) failed ({details}); rebuild the "
            "release with release_from_log rather than serving it."
        )
