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
generic gateway's :mod:`~mlsd_lib.serving.gateway.hotswap` pattern. The order
itself is the generic
:func:`~mlsd_lib.serving.gateway.release_swap.swap_whole_release`; this module
says how a feed release loads and warms up.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlsd_lib.recsys.feed import FeedModels
from mlsd_lib.recsys.feed_features import ranker_schema
from mlsd_lib.recsys.gateway import FeedService
from mlsd_lib.recsys.serving import FeedRelease, deploy_release
from mlsd_lib.serving.gateway.model_calls import call_model
from mlsd_lib.serving.gateway.release_swap import ReleaseSwap, swap_whole_release
from mlsd_lib.serving.model_server import ModelServer
from mlsd_lib.serving.registry import ModelRegistry

__all__ = ["ReleaseSwap", "swap_release", "warm_up"]


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
    notes and :func:`~mlsd_lib.serving.gateway.release_swap.swap_whole_release`);
    nothing changes for the service if loading or warming up fails."""
    return swap_whole_release(
        service,
        lambda: deploy_release(registry, release, server, item_features),
        warm_up,
    )
