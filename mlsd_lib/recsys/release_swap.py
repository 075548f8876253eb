"""Swap the release a running feed serves: towers, ranker and index at once.

Introduced in ``casestudies/recommender/08_monitoring_and_retraining.ipynb`` (step 7,
"retrain and re-index with a version-consistent swap"). A new release may only go live
whole: a user tower from the new run querying the old index (or the reverse) answers
with confident nonsense. :func:`swap_release` does it in the order that keeps every
request whole and none failing:

1. **load** the release beside the one serving
   (:func:`~mlsd_lib.recsys.serving.deploy_release`): the index is read and
   its version stamp checked *first*, so a mismatched index never gets a model
   loaded for it; the new models load on the model server under new names
   (``recs_user_tower-v<n>``), so the old ones keep answering meanwhile;
2. **warm up** (:func:`warm_up`): both new models score a row, so the first
   user request does not pay for a cold model, and a model that fails here
   is refused before any user sees it;
3. **switch**: one reference assignment
   (:meth:`~mlsd_lib.recsys.gateway.FeedService.swap`). A request reads that
   reference once, at its start, so it runs entirely on the old release or
   entirely on the new one; requests in flight finish on the old one.

The old release's models stay loaded (a request may still be using them, and
a rollback is then one more swap); unloading them after a drain is the
generic gateway's :mod:`~mlsd_lib.serving.gateway.hotswap` pattern.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.recsys.feed import FeedModels
from mlsd_lib.recsys.feed_features import ranker_schema
from mlsd_lib.recsys.gateway import FeedService
from mlsd_lib.recsys.serving import FeedRelease, deploy_release
from mlsd_lib.serving.gateway.model_calls import call_model
from mlsd_lib.serving.model_server import ModelServer
from mlsd_lib.serving.registry import ModelRegistry

__all__ = ["ReleaseSwap", "swap_release", "warm_up"]


@dataclass(frozen=True)
class ReleaseSwap:
    """What :func:`swap_release` did: the releases before and after, the new
    one's versions, and how long loading and warming up took (ms).
    ``switched_at`` is the :func:`time.perf_counter` moment of the switch."""

    before: str
    after: str
    versions: dict[str, str]
    load_ms: float
    warmup_ms: float
    switched_at: float


def warm_up(models: FeedModels) -> None:
    """Call the user tower and the ranker once each on a row of zeros (no
    history); raises :class:`~mlsd_lib.serving.gateway.scoring.ModelFailed`
    if either fails, as a request would."""
    user = {
        "history": np.full((1, models.history_len), -1, np.int64),
        "dense": np.zeros((1, len(models.user_tower.columns["dense"])), np.float32),
        "categorical": np.zeros(
            (1, len(models.user_tower.columns["categorical"])), np.int64
        ),
    }
    call_model(models.user_tower, user)
    widths = {"dense": 0, "categorical": 0}
    for name, _ in ranker_schema():
        widths[name.split(":")[0]] += 1
    call_model(
        models.ranker,
        {
            "dense": np.zeros((1, widths["dense"]), np.float32),
            "categorical": np.zeros((1, widths["categorical"]), np.int64),
        },
    )


def swap_release(
    service: FeedService,
    registry: ModelRegistry,
    release: FeedRelease,
    server: ModelServer,
    item_features: pd.DataFrame,
) -> ReleaseSwap:
    """Load, warm up and switch ``service`` to ``release`` (see the module
    notes); nothing changes for the service if loading or warming up fails."""
    start = time.perf_counter()
    models = deploy_release(registry, release, server, item_features)
    loaded = time.perf_counter()
    warm_up(models)
    warmed = time.perf_counter()
    old = service.swap(models)
    return ReleaseSwap(
        before=old.release,
        after=models.release,
        versions=models.versions(),
        load_ms=(loaded - start) * 1000,
        warmup_ms=(warmed - loaded) * 1000,
        switched_at=time.perf_counter(),
    )
