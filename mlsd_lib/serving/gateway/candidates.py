"""Several candidate sources merged into one list, each candidate tagged with its
source.

Introduced in ``casestudies/recommender/index.md`` ("Several candidate
sources"). Retrieval rarely has one source: the ANN search over the two-tower
embeddings finds what a user may like, a few cheap sources cover what it
misses (continue watching, trending in the user's region), and the ranker
scores the union. The impression log must say which source produced each
item, or nobody can tell whether a source earns its slots.

:func:`merge_candidates` takes the sources in **priority order** and returns
each item once, credited to the first source that proposed it, together with
the bit mask of *every* source that proposed it (so the overlap between
sources is measurable too) and the score the crediting source gave it, if any.
Negative ids (faiss pads a short result with -1) are dropped. Vectorized: one
concatenation and one :func:`numpy.unique`, whatever the number of sources.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "CandidateSourceError",
    "MergedCandidates",
    "SourceCandidates",
    "merge_candidates",
]

#: A mask is an int64: at most this many sources can be merged.
MAX_SOURCES = 63


class CandidateSourceError(MlsdError, ValueError):
    """A candidate source that cannot be merged; the message says why."""


@dataclass(frozen=True)
class SourceCandidates:
    """One source's candidates, best first, and optionally its score for each."""

    name: str
    items: np.ndarray
    scores: np.ndarray | None = None

    @classmethod
    def of(
        cls, name: str, items: ArrayLike, scores: ArrayLike | None = None
    ) -> SourceCandidates:
        """Checked and cast: int64 ids, float32 scores (one per id)."""
        ids = np.asarray(items).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise CandidateSourceError(
                f"source {name!r} gives ids of dtype {ids.dtype}; item ids are "
                "integers."
            )
        values = None
        if scores is not None:
            values = np.asarray(scores, dtype=np.float32).reshape(-1)
            if values.shape != ids.shape:
                raise CandidateSourceError(
                    f"source {name!r} gives {len(ids)} ids but {len(values)} "
                    "scores: one score per id, or none."
                )
        return cls(name, ids.astype(np.int64, copy=False), values)


@dataclass(frozen=True)
class MergedCandidates:
    """Each candidate once, in the order the sources proposed them.

    ``items`` (n,) int64; ``source`` (n,) int8: the index in ``names`` of the
    first source (in priority order) that proposed it; ``source_score`` (n,)
    float32: that source's score, NaN when it gives none; ``proposed_by`` (n,)
    int64: bit ``s`` set when source ``s`` proposed it.
    """

    items: np.ndarray
    source: np.ndarray
    source_score: np.ndarray
    proposed_by: np.ndarray
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.items)

    def source_names(self) -> list[str]:
        """The crediting source's name per candidate."""
        return [self.names[s] for s in self.source.tolist()]

    def credited(self) -> dict[str, int]:
        """Candidates credited to each source (every source listed, 0 if none)."""
        counts = np.bincount(self.source, minlength=len(self.names))
        return dict(zip(self.names, counts.tolist(), strict=True))

    def proposed(self) -> dict[str, int]:
        """Candidates each source proposed, overlaps included."""
        bits = (self.proposed_by[:, None] >> np.arange(len(self.names))) & 1
        return dict(zip(self.names, bits.sum(axis=0).tolist(), strict=True))

    def subset(self, index: np.ndarray) -> MergedCandidates:
        """The candidates ``index`` selects (positions or a bool mask)."""
        return MergedCandidates(
            self.items[index],
            self.source[index],
            self.source_score[index],
            self.proposed_by[index],
            self.names,
        )


def merge_candidates(
    sources: Sequence[SourceCandidates], limit: int | None = None
) -> MergedCandidates:
    """The union of ``sources`` (priority order), each item once, at most ``limit``.

    Order: by source priority, then by each source's own order, so the first
    ``limit`` keep the higher-priority sources whole. Raises
    :class:`CandidateSourceError` for two sources of one name or more than
    :data:`MAX_SOURCES` sources.
    """
    names = tuple(source.name for source in sources)
    if len(set(names)) != len(names):
        raise CandidateSourceError(
            f"sources {list(names)} repeat a name; the impression log tells "
            "sources apart by name, so give each a distinct one."
        )
    if len(names) > MAX_SOURCES:
        raise CandidateSourceError(
            f"{len(names)} sources: at most {MAX_SOURCES} fit the proposed_by mask."
        )
    if limit is not None and limit < 0:
        raise CandidateSourceError(f"limit must be >= 0, got {limit}.")
    if not sources:
        empty = np.zeros(0, np.int64)
        return MergedCandidates(empty, np.zeros(0, np.int8), np.zeros(0, np.float32),
                                empty, names)  # fmt: skip
    items = np.concatenate([s.items for s in sources])
    code = np.repeat(
        np.arange(len(sources), dtype=np.int8), [len(s.items) for s in sources]
    )
    scores = np.concatenate(
        [
            np.full(len(s.items), np.nan, np.float32) if s.scores is None else s.scores
            for s in sources
        ]
    ).astype(np.float32, copy=False)
    valid = items >= 0
    items, code, scores = items[valid], code[valid], scores[valid]
    # np.unique's return_index is the first occurrence: the highest priority.
    unique, first, inverse = np.unique(items, return_index=True, return_inverse=True)
    proposed_by = np.zeros(len(unique), np.int64)
    bits = np.int64(1) << code.astype(np.int64)
    np.bitwise_or.at(proposed_by, inverse.reshape(-1), bits)
    order = np.sort(first)[:limit]
    mask = proposed_by[np.searchsorted(unique, items[order])]
    return MergedCandidates(items[order], code[order], scores[order], mask, names)
