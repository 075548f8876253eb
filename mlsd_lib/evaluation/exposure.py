"""Who gets shown: how a log's impressions spread over the catalogue and its new items.

Introduced in ``casestudies/recommender/07_feedback_loop.ipynb`` ("Feedback loops in the
open"): a recommender trained on what it showed tends to show more of the same, and the
first symptom is in the impression log, long before any accuracy metric moves. Three
questions, each a number per period of the log:

* **How concentrated?** :func:`exposure_summary`: the share of impressions
  that went to the most-shown 1% of the catalogue, the Gini coefficient of
  impressions per item, and the coverage (share of the catalogue shown at
  least once). Measured against the items that were *available* in the period
  (:func:`~mlsd_lib.evaluation.ranking.top_share` and
  :func:`~mlsd_lib.evaluation.ranking.catalogue_coverage` count every item id;
  an item that has not launched yet could not have been shown, so it must not
  count as a zero).
* **Do new items get seen?** :func:`new_item_share`: the share of impressions
  that went to items launched within ``new_days`` before the impression.
  Each impression is judged at its own day, so a log spanning several weeks
  is measured the same way as one day.
* **Does each new item get enough to be judged?** :func:`reach`: the share of
  a set of items (a week's launches) with at least ``min_impressions``
  impressions. A share of impressions can be high while a few new titles take
  all of it; reach tells them apart.

Pure functions of arrays (item ids, days, launch days): they know nothing about
videos or which case study calls them.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import catalogue_coverage, gini, top_share

__all__ = [
    "ExposureInputError",
    "exposure_summary",
    "new_item_share",
    "reach",
]


class ExposureInputError(MlsdError, ValueError):
    """Impressions, days or launch days that cannot be measured; says why."""


def _ids(values: ArrayLike, what: str) -> np.ndarray:
    ids = np.asarray(values).ravel()
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ExposureInputError(f"{what} must be integer item ids, got {ids.dtype}.")
    return ids.astype(np.int64)


def exposure_summary(
    impression_items: ArrayLike, available_items: ArrayLike, fraction: float = 0.01
) -> dict[str, float]:
    """Concentration of impressions over the items that were available.

    Returns ``top_share`` (share of impressions on the most-shown
    ``fraction`` of the available items), ``gini`` (of impressions per
    available item, zeros included) and ``coverage`` (share of the available
    items shown at least once). An impression of an item not in
    ``available_items`` is an error: it means the catalogue passed is not the
    one the log was served from.
    """
    items = _ids(impression_items, "impression_items")
    available = np.unique(_ids(available_items, "available_items"))
    if available.size == 0:
        raise ExposureInputError(
            "available_items is empty: pass the ids of the items that could be "
            "shown in the period (launched, not withdrawn)."
        )
    if items.size == 0:
        raise ExposureInputError(
            "no impressions: exposure of an empty log is undefined; measure a "
            "period with traffic."
        )
    at = np.minimum(np.searchsorted(available, items), available.size - 1)
    unknown = available[at] != items
    if unknown.any():
        raise ExposureInputError(
            f"{int(unknown.sum())} impressions (e.g. item {items[unknown][0]}) are "
            "of items not in available_items: pass every item that was available "
            "during the period the impressions come from."
        )
    counts = np.bincount(at, minlength=available.size)
    return {
        "top_share": top_share(at, available.size, fraction),
        "gini": gini(counts),
        "coverage": catalogue_coverage(at, available.size),
    }


def new_item_share(
    impression_items: ArrayLike,
    impression_days: ArrayLike,
    launch_day: ArrayLike,
    new_days: int = 7,
) -> float:
    """Share of impressions of items launched fewer than ``new_days`` days before.

    An impression on day ``d`` of an item launched on day ``l`` is new when
    ``0 <= d - l < new_days`` (launched today counts, ``new_days`` ago does
    not). ``launch_day`` holds one launch day per item id.
    """
    items = _ids(impression_items, "impression_items")
    days = np.asarray(impression_days).ravel()
    launch = np.asarray(launch_day).ravel()
    if new_days < 1:
        raise ExposureInputError(f"new_days must be >= 1, got {new_days}.")
    if days.shape != items.shape:
        raise ExposureInputError(
            f"impression_days has {days.size} values for {items.size} impressions: "
            "one day per impression."
        )
    if items.size == 0:
        raise ExposureInputError(
            "no impressions: the new-item share of none is undefined."
        )
    if items.min() < 0 or items.max() >= launch.size:
        raise ExposureInputError(
            f"impression_items holds ids {items.min()}..{items.max()} but "
            f"launch_day has {launch.size} entries: one launch day per item id."
        )
    age = days - launch[items]
    if np.any(age < 0):
        bad = int(np.flatnonzero(age < 0)[0])
        raise ExposureInputError(
            f"item {items[bad]} was shown on day {days[bad]} before its launch on "
            f"day {launch[items[bad]]}: check that the days and launch days use "
            "the same calendar."
        )
    return float(np.mean(age < new_days))


def reach(
    impression_items: ArrayLike, items: ArrayLike, min_impressions: int = 1
) -> float:
    """Share of ``items`` shown at least ``min_impressions`` times in the log.

    ``items`` is the set judged (a week's launches, say); duplicates count once.
    """
    shown = _ids(impression_items, "impression_items")
    judged = np.unique(_ids(items, "items"))
    if judged.size == 0:
        raise ExposureInputError("items is empty: reach of no items is undefined.")
    if min_impressions < 1:
        raise ExposureInputError(
            f"min_impressions must be >= 1, got {min_impressions}."
        )
    inside = np.isin(shown, judged)
    at = np.searchsorted(judged, shown[inside])
    counts = np.bincount(at, minlength=judged.size)
    return float(np.mean(counts >= min_impressions))
