"""Eligibility filters on a candidate list, and how many candidates survive them.

Introduced in ``casestudies/recommender/index.md``: after ranking, remove items
the user has already watched, items not available in their region and items
above their maturity setting. Each filter is a boolean *keep* mask aligned with
the candidates, computed by the caller from arrays it owns (the user's history,
a per-region availability table, per-item maturity ratings); the small helpers
below build the usual ones. Keeping filters as plain masks keeps this module
ignorant of what a region or a rating is, and lets a test or a notebook add a
filter without touching it.

Why a report: filtering *after* the ANN search shrinks the candidate set by an
amount nobody chose. If 40% of candidates survive, a page of 20 needs more than
50 candidates to survive re-ranking's rules too; retrieval must over-fetch by
``1 / survival``. :class:`FilterReport` counts, per filter, how many candidates
pass it, and adds up over requests (``report_a + report_b``), so the monitor can
watch the survival rates and alert when one collapses (a region launch that
marks most of the catalogue unavailable, a history feature that stopped
updating).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "FilterInputError",
    "FilterReport",
    "FilteredCandidates",
    "apply_filters",
    "eligible",
    "not_seen",
    "rating_at_most",
]


class FilterInputError(MlsdError, ValueError):
    """A candidate list or keep mask cannot be applied; the message says why."""


@dataclass(frozen=True)
class FilterReport:
    """How many candidates came in, passed each filter (on its own) and survived
    all of them. Reports add up: the sum of many requests' reports is the
    traffic-weighted survival the monitor tracks."""

    n_candidates: int = 0
    passed: Mapping[str, int] = field(default_factory=dict)
    n_kept: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready fields (an impression log line's
        ``filters``); ``FilterReport(**report.to_dict())`` is the report."""
        return {
            "n_candidates": self.n_candidates,
            "passed": dict(self.passed),
            "n_kept": self.n_kept,
        }

    def survival(self) -> dict[str, float]:
        """Share of candidates that pass each filter on its own."""
        return {name: n / max(self.n_candidates, 1) for name, n in self.passed.items()}

    @property
    def overall(self) -> float:
        """Share of candidates that pass every filter (1.0 when none came in)."""
        return self.n_kept / self.n_candidates if self.n_candidates else 1.0

    def candidates_needed(self, page_size: int) -> int:
        """Candidates to fetch so that ``page_size`` survive at this rate on
        average: ``ceil(page_size / overall)``; a floor, not a guarantee."""
        if self.overall == 0:
            raise FilterInputError(
                "no candidate survived the filters, so no amount of over-fetching "
                "fills a page: look at survival() for the filter that removes all."
            )
        return math.ceil(page_size / self.overall - 1e-9)

    def __add__(self, other: FilterReport) -> FilterReport:
        if not isinstance(other, FilterReport):
            return NotImplemented
        names = list(self.passed) + [n for n in other.passed if n not in self.passed]
        if (
            self.n_candidates
            and other.n_candidates
            and set(self.passed) != set(other.passed)
        ):
            raise FilterInputError(
                f"cannot add reports of different filters ({sorted(self.passed)} "
                f"and {sorted(other.passed)}): survival rates would mix."
            )
        return FilterReport(
            n_candidates=self.n_candidates + other.n_candidates,
            passed={n: self.passed.get(n, 0) + other.passed.get(n, 0) for n in names},
            n_kept=self.n_kept + other.n_kept,
        )


class FilteredCandidates(NamedTuple):
    """The kept candidate ids (input order), their positions in the input (to
    subset scores or embeddings aligned with the candidates) and the report."""

    items: np.ndarray
    positions: np.ndarray
    report: FilterReport


def _candidates(candidates: ArrayLike) -> np.ndarray:
    ids = np.asarray(candidates)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise FilterInputError(
            f"candidates must be a 1-D array of integer item ids, got {ids.dtype} of "
            f"shape {ids.shape}."
        )
    if ids.size and ids.min() < 0:
        raise FilterInputError(
            "candidates hold a negative id: drop the ANN search's -1 padding "
            "before filtering."
        )
    return ids.astype(np.int64)


def apply_filters(
    candidates: ArrayLike, keep: Mapping[str, ArrayLike]
) -> FilteredCandidates:
    """Keep the candidates that every mask in ``keep`` marks True.

    Introduced in ``casestudies/recommender/index.md``. ``keep`` maps a filter's
    name (the report's key) to a bool array aligned with ``candidates``.
    """
    ids = _candidates(candidates)
    kept = np.ones(len(ids), dtype=bool)
    passed = {}
    for name, mask in keep.items():
        mask = np.asarray(mask)
        if mask.dtype != bool or mask.shape != ids.shape:
            raise FilterInputError(
                f"filter {name!r} must be a bool mask with one value per candidate "
                f"({len(ids)}), got {mask.dtype} of shape {mask.shape}."
            )
        passed[name] = int(mask.sum())
        kept &= mask
    positions = np.flatnonzero(kept)
    report = FilterReport(len(ids), passed, len(positions))
    return FilteredCandidates(ids[positions], positions, report)


def not_seen(candidates: ArrayLike, seen: ArrayLike) -> np.ndarray:
    """Keep mask: candidates not among ``seen`` (e.g. already watched)."""
    return ~np.isin(_candidates(candidates), np.asarray(seen, dtype=np.int64))


def _per_item(values: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    if values.ndim != 1:
        raise FilterInputError(f"{what} must be 1-D, one value per catalogue item.")
    if ids.size and ids.max() >= len(values):
        raise FilterInputError(
            f"candidate {ids.max()} is outside {what} (length {len(values)}): pass "
            "a value for every catalogue item."
        )
    return values[ids]


def eligible(candidates: ArrayLike, eligible_by_item: ArrayLike) -> np.ndarray:
    """Keep mask from a per-item bool table (e.g. ``available[region]``)."""
    table = np.asarray(eligible_by_item)
    if table.dtype != bool:
        raise FilterInputError(
            f"eligible_by_item must be bool (True: may be shown), got {table.dtype}."
        )
    return _per_item(table, _candidates(candidates), "eligible_by_item")


def rating_at_most(
    candidates: ArrayLike, rating_by_item: ArrayLike, limit: float
) -> np.ndarray:
    """Keep mask: candidates whose rating (e.g. maturity level) is <= ``limit``."""
    ratings = _per_item(np.asarray(rating_by_item), _candidates(candidates), "ratings")
    return ratings <= limit
