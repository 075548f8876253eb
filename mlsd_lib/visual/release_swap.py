"""Swap visual search's release in a running gateway: embedder and index together.

Introduced in ``casestudies/visual_search/08_monitoring_and_retraining.ipynb``
(monitoring and retraining: "retrain, re-embed the catalogue, rebuild and swap embedder
and index together under load"). A retrained embedder puts every image somewhere else:
its queries against the old index (or the old embedder's against the new one) find
nonsense, with confident scores. The release holds both
(:func:`~mlsd_lib.visual.release.register_visual_release`), and
:func:`swap_visual_release` puts both in front of the next request at once, by
the generic order (:func:`~mlsd_lib.serving.gateway.release_swap.swap_whole_release`):

* **load**: :func:`~mlsd_lib.visual.release.deploy_visual_release` reads the
  index first (refused before any model loads if another embedder built it),
  then loads the new embedder on the model server beside the old one;
* **warm up** (:func:`warm_up`): the new embedder embeds a blank photo and
  the new index is searched with that vector, so a broken file or a cold
  model is found before a shopper is;
* **switch**: :meth:`~mlsd_lib.visual.gateway.VisualService.swap`.

Every answer says which release, embedder and index served it, and so does the
impression log; :func:`version_mix` counts them and names any line where the
three disagree (none should).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mlsd_lib.serving.gateway.model_calls import call_model
from mlsd_lib.serving.gateway.release_swap import ReleaseSwap, swap_whole_release
from mlsd_lib.serving.model_server import ModelServer
from mlsd_lib.serving.registry import ModelRegistry
from mlsd_lib.visual.gateway import VisualService
from mlsd_lib.visual.release import VisualModels, VisualRelease, deploy_visual_release
from mlsd_lib.visual.served_embedder import EMBEDDING, PIXELS

__all__ = ["ReleaseSwap", "consistent", "swap_visual_release", "version_mix", "warm_up"]


def warm_up(models: VisualModels) -> None:
    """Embed a blank photo with the release's embedder and search its index
    with the vector; raises (the model's or the index's error) if either
    fails, as a request would."""
    size = models.image_size
    blank = {PIXELS: np.full((1, size, size, 3), 255, np.uint8)}
    vector = call_model(models.embedder, blank)[EMBEDDING][0]
    vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
    models.searcher.search(
        vector.astype(np.float32), embedder_version=models.embedder_version
    )


def swap_visual_release(
    service: VisualService,
    registry: ModelRegistry,
    release: VisualRelease,
    server: ModelServer,
) -> ReleaseSwap:
    """Load ``release`` beside the one serving, warm it up and switch
    ``service`` to it (see the module notes); nothing changes for the
    service if loading or warming up fails."""
    return swap_whole_release(
        service, lambda: deploy_visual_release(registry, release, server), warm_up
    )


def _number(name: str) -> str:
    return name.rsplit("-v", 1)[-1]


def consistent(versions: Mapping[str, str]) -> bool:
    """Whether an answer's release, embedder and index are one version: the
    index built by the embedder served, both of the release named."""
    embedder, index = versions["embedder"], versions["index"]
    return embedder == index and _number(versions["release"]) == _number(embedder)


def version_mix(lines: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Impression lines (or answers) per ``(release, embedder, index)``, with
    whether each combination is :func:`consistent`."""
    counts: dict[tuple[str, str, str], int] = {}
    for line in lines:
        v = line["versions"]
        key = (v["release"], v["embedder"], v["index"])
        counts[key] = counts.get(key, 0) + 1
    rows = [
        {
            "release": r,
            "embedder": e,
            "index": i,
            "answers": n,
            "consistent": consistent({"release": r, "embedder": e, "index": i}),
        }
        for (r, e, i), n in sorted(counts.items())
    ]
    return pd.DataFrame(
        rows, columns=["release", "embedder", "index", "answers", "consistent"]
    )
