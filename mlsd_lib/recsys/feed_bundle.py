"""What a feed server loads from disk: the release, the tables, the item table, the
history fold and the clock.

Introduced in ``casestudies/recommender/index.md`` (step 6, "Serving"). A
gateway process does not train anything; it starts from files another job
wrote. :func:`save_bundle` writes, into one folder next to the model registry
that holds the release:

* ``feed_tables.npz``: the precomputed trending, popular-in-region and
  exploration tables (:class:`~mlsd_lib.recsys.feed_tables.FeedTables`), plain
  arrays (``allow_pickle`` stays off when reading);
* ``item_features.parquet``: the observable item table the in-memory
  catalogue is built from;
* ``bundle.json``: the history fold's stream, name and categories (the Redis
  keys the server reads), the clock (world day 0 on the epoch clock, and the
  "now" of a simulated world, or null for the wall clock) and the registry
  folder.

:func:`load_bundle` reads them back; which release to serve is the registry's
``production`` stage (:func:`~mlsd_lib.recsys.serving.staged_release`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.history_fold import HistoryFold, interaction_history
from mlsd_lib.recsys.feed_tables import ExplorationPool, FeedTables
from mlsd_lib.serving.registry import ModelRegistry

__all__ = ["BundleError", "FeedBundle", "load_bundle", "save_bundle"]

BUNDLE_FILE, TABLES_FILE, ITEMS_FILE = (
    "bundle.json",
    "feed_tables.npz",
    "item_features.parquet",
)


class BundleError(MlsdError, FileNotFoundError):
    """A folder that does not hold a feed bundle; the message says what is missing."""


@dataclass(frozen=True)
class FeedBundle:
    """Everything a feed server needs besides Redis and a model server."""

    registry: ModelRegistry
    fold: HistoryFold
    tables: FeedTables
    item_features: pd.DataFrame
    world_epoch: float
    frozen_now: float | None

    def clock(self) -> Callable[[], float]:
        """Seconds since the epoch now: frozen at the simulated world's "now",
        or the wall clock."""
        if self.frozen_now is None:
            return time.time
        now = self.frozen_now
        return lambda: now


def _tables_arrays(tables: FeedTables) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "meta": np.array([tables.day, tables.n_maturity], np.int64),
        "item_impressions": tables.item_impressions,
        "item_engaged": tables.item_engaged,
    }
    for r, (items, plays) in enumerate(
        zip(tables.trending, tables.trending_plays, strict=True)
    ):
        arrays[f"trending_{r}"], arrays[f"trending_plays_{r}"] = items, plays
    for c, (popular, pool) in enumerate(zip(tables.popular, tables.pools, strict=True)):
        arrays[f"popular_{c}"] = popular
        arrays[f"pool_items_{c}"] = pool.items
        arrays[f"pool_impressions_{c}"] = pool.impressions
        arrays[f"pool_engaged_{c}"] = pool.engaged
    return arrays


def _tables_from(arrays: dict[str, np.ndarray]) -> FeedTables:
    day, n_maturity = (int(v) for v in arrays["meta"])
    n_regions = sum(1 for key in arrays if key.startswith("trending_plays_"))
    n_cells = n_regions * n_maturity
    return FeedTables(
        day=day,
        n_maturity=n_maturity,
        trending=tuple(arrays[f"trending_{r}"] for r in range(n_regions)),
        trending_plays=tuple(arrays[f"trending_plays_{r}"] for r in range(n_regions)),
        popular=tuple(arrays[f"popular_{c}"] for c in range(n_cells)),
        pools=tuple(
            ExplorationPool(
                arrays[f"pool_items_{c}"],
                arrays[f"pool_impressions_{c}"],
                arrays[f"pool_engaged_{c}"],
            )
            for c in range(n_cells)
        ),
        item_impressions=arrays["item_impressions"],
        item_engaged=arrays["item_engaged"],
    )


def save_bundle(
    folder: str | Path,
    *,
    registry: ModelRegistry,
    fold: HistoryFold,
    tables: FeedTables,
    item_features: pd.DataFrame,
    world_epoch: float,
    frozen_now: float | None,
) -> Path:
    """Write the bundle into ``folder`` (see the module notes); returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / TABLES_FILE, **_tables_arrays(tables))
    frame = item_features.copy()
    frame["kind"] = frame["kind"].astype(str)  # a categorical by name, portable
    frame.to_parquet(folder / ITEMS_FILE, index=False)
    info = {
        "registry": str(Path(registry.root).resolve()),
        "fold": {
            "stream": fold.stream,
            "name": fold.name,
            "n_categories": fold.n_categories,
            "length": fold.length,
        },
        "world_epoch": world_epoch,
        "frozen_now": frozen_now,
    }
    (folder / BUNDLE_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return folder


def load_bundle(folder: str | Path) -> FeedBundle:
    """The bundle :func:`save_bundle` wrote into ``folder``."""
    folder = Path(folder)
    missing = [
        name
        for name in (BUNDLE_FILE, TABLES_FILE, ITEMS_FILE)
        if not (folder / name).is_file()
    ]
    if missing:
        raise BundleError(
            f"{folder} lacks {missing}: it is not a feed bundle; write one with "
            "save_bundle (QuickRelease.save_bundle for the quick release)."
        )
    info = json.loads((folder / BUNDLE_FILE).read_text())
    with np.load(folder / TABLES_FILE, allow_pickle=False) as npz:
        tables = _tables_from({key: npz[key] for key in npz.files})
    fold_info = info["fold"]
    fold = interaction_history(
        fold_info["stream"],
        length=fold_info["length"],
        n_categories=fold_info["n_categories"],
        name=fold_info["name"],
    )
    return FeedBundle(
        registry=ModelRegistry(info["registry"]),
        fold=fold,
        tables=tables,
        item_features=pd.read_parquet(folder / ITEMS_FILE),
        world_epoch=float(info["world_epoch"]),
        frozen_now=info["frozen_now"],
    )
