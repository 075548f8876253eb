"""Steady visual search traffic in the background, every answer labelled.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (requirement "Availability:
degrade to category-level results if the index is unavailable"). A failure drill asks
what percentiles cannot answer: while the model server was down, did every shopper still
get a page, and which kind?
:class:`SearchTraffic` is the generic gateway's
:class:`~mlsd_lib.serving.gateway.traffic.PacedBodyLoad` (threads, bounded in
count and time, loopback only, one
:class:`~mlsd_lib.serving.gateway.traffic.Outcome` per request) sending
``POST /v1/visual/search`` with the given bodies in turn (photos and
precomputed regions mixed, if the caller mixes them), each client paced. Each
outcome's ``body`` keeps a summary whose ``model_version`` is the label
:func:`~mlsd_lib.serving.gateway.traffic.plot_timeline` colours by: the
release and the path that served it (``visual-v1 photo``), or ``degraded
photo`` / ``degraded region``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mlsd_lib.serving.gateway.traffic import NoRequestBodies, Outcome, PacedBodyLoad

__all__ = ["NoSearchBodies", "SearchTraffic", "label_of"]

SEARCH_PATH = "/v1/visual/search"
PATH_NAMES = {"image": "photo", "region": "region"}


class NoSearchBodies(NoRequestBodies):
    """Search traffic was given no request body to send."""


def label_of(answer: Mapping[str, Any]) -> str:
    """``<release> <path>`` of a served answer, ``degraded <path>`` otherwise."""
    path = PATH_NAMES.get(answer.get("path", ""), str(answer.get("path")))
    if answer.get("degraded"):
        return f"degraded {path}"
    return f"{answer['versions']['release']} {path}"


class SearchTraffic(PacedBodyLoad):
    """``clients`` threads posting ``bodies`` in turn until the block ends.

    ``pace_s``: each client waits until this long after its previous request
    was sent (0: closed loop). Bounded by ``max_requests`` and ``max_seconds``.
    """

    path = SEARCH_PATH
    no_bodies = NoSearchBodies
    no_bodies_advice = (
        "pass photos or regions (mlsd_lib.visual.search_load.photo_bodies)"
    )

    def summarize(self, answer: Mapping[str, Any]) -> dict[str, Any]:
        """The label, the path, whether degraded and why."""
        return {
            "model_version": label_of(answer),
            "path": answer["path"],
            "degraded": answer["degraded"],
            "reason": answer["degraded_reason"] or "",
        }

    def labels(self, outcomes: Sequence[Outcome] | None = None) -> dict[str, int]:
        """How many of ``outcomes`` (default: all) had each label, sorted by
        label; failures as ``failed (<status>)``."""
        return dict(sorted(super().labels(outcomes).items()))
