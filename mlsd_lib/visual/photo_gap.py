"""The catalogue/user photo gap as a dial: recall as photos drift from catalogue shots.

Introduced in ``casestudies/visual_search/02_framing_and_baselines.ipynb`` (follow-up
"Catalogue photos are clean; user photos are not. How do you close the gap?": "In the
synthetic world the gap is a parameter, so its effect on recall can be measured
directly"). The image world's
:meth:`~mlsd_lib.worlds.images_config.QueryStyle.interpolate` sizes the gap
with one number ``t``: 0 is a photo taken like a catalogue shot, 1 a phone
photo (or, with other ends, a camera shift). :func:`recall_along_gap`
photographs the same products at each ``t`` (same seed, so only the style
moves), embeds the photos (whole, and cropped to the true box) with each
embedder, and measures recall@K by item against the gallery, which is
embedded once per embedder. One table then answers "which part of the gap
hurts which representation", for the baselines of step 2 and the learned
embedder of step 4 alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.image_retrieval import image_match_ranks, recall_from_ranks
from mlsd_lib.progress import tqdm
from mlsd_lib.validation import (
    require_fraction,
)
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import QueryStyle

__all__ = ["QUERY_VIEWS", "PhotoGapError", "gap_styles", "recall_along_gap"]

#: How a photo is sent: the whole frame, or cropped to the product's true box.
QUERY_VIEWS = ("photo", "crop")

Embedder = Callable[[ImageSet], np.ndarray]


class PhotoGapError(MlsdError, ValueError):
    """A gap sweep that cannot be run; the message says which setting and why."""


def gap_styles(
    ts: Sequence[float],
    start: QueryStyle | None = None,
    end: QueryStyle | None = None,
) -> list[QueryStyle]:
    """The styles ``t`` of the way from ``start`` (default: clean) to ``end``
    (default: phone), one per entry of ``ts`` (each in [0, 1]).

    Introduced in ``casestudies/visual_search/index.md``.
    """
    if len(ts) == 0:
        raise PhotoGapError("ts is empty: pass the points of the gap to measure.")
    start = start or QueryStyle.clean()
    end = end or QueryStyle.phone()
    return [QueryStyle.interpolate(start, end, float(t)) for t in ts]


def recall_along_gap(
    world: ImageWorld,
    products: np.ndarray,
    gallery: ImageSet,
    embedders: Mapping[str, Embedder],
    ts: Sequence[float],
    *,
    start: QueryStyle | None = None,
    end: QueryStyle | None = None,
    seed: int = 0,
    ks: Sequence[int] = (1, 10),
    views: Sequence[str] = QUERY_VIEWS,
    progress: bool = False,
) -> pd.DataFrame:
    """Recall@K by item at each point ``t`` of the gap, per embedder and view.

    Introduced in ``casestudies/visual_search/index.md``. One photo of each of
    ``products`` per ``t`` (``world.queries(products, seed, style)``: the
    same seed at every ``t``, so the scenes' draws are shared and only the
    style moves); each embedder maps an
    :class:`~mlsd_lib.datasets.image_sets.ImageSet` to unit vectors. Both
    sides are mapped to canonical ids (a duplicate listing is the same item).
    Returns one row per (t, embedder, view) with columns ``t``, ``embedder``,
    ``view`` and ``recall@K`` for each of ``ks``.
    """
    for t in ts:
        require_fraction("ts", t, zero=True, error=PhotoGapError)
    if not embedders:
        raise PhotoGapError("embedders is empty: pass {name: function(ImageSet)}.")
    unknown = sorted(set(views) - set(QUERY_VIEWS))
    if unknown or not views:
        raise PhotoGapError(
            f"views must be a non-empty subset of {list(QUERY_VIEWS)}, got "
            f"{list(views)}."
        )
    styles = gap_styles(ts, start, end)
    gallery_items = world.canonical(gallery.product_ids)
    gallery_vectors = {name: embed(gallery) for name, embed in embedders.items()}
    rows = []
    points = tqdm(list(zip(ts, styles, strict=True)), desc="gap", disable=not progress)
    for t, style in points:
        shots = world.queries(np.asarray(products), seed=seed, style=style)
        sent = {v: shots.images if v == "photo" else shots.crops() for v in views}
        items = world.canonical(shots.images.product_ids)
        for name, embed in embedders.items():
            for view in views:
                ranks = image_match_ranks(
                    embed(sent[view]), items, gallery_vectors[name], gallery_items
                )
                recall = recall_from_ranks(ranks, ks)
                rows.append(
                    {"t": float(t), "embedder": name, "view": view}
                    | {f"recall@{k}": recall[k] for k in ks}
                )
    return pd.DataFrame(rows)
