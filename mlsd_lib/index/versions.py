"""Refuse to search an index with a user embedding from a different model.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``
(the follow-up "offline
recall improved, online plays fell"). A two-tower model's user and item
embeddings are only comparable when both towers come from the same training
run; an index built by last week's item tower answers this week's user tower
with confident nonsense, and nothing errors. The serving gateway calls
:func:`require_model_version` with the user tower's version before it queries
an index (and when it swaps one in), turning that silent failure into a loud
one.
"""

from __future__ import annotations

from typing import Protocol

from mlsd_lib.errors import MlsdError


class IndexVersionMismatch(MlsdError, ValueError):
    """An index embedded by another model than the one querying it."""


class Versioned(Protocol):
    """Anything that records the model version its vectors came from."""

    model_version: str | None


def require_model_version(index: Versioned, model_version: str) -> None:
    """Raise :class:`IndexVersionMismatch` unless ``index`` was embedded by
    ``model_version`` (the version of the user tower about to query it)."""
    if index.model_version != model_version:
        found = (
            "no model version"
            if index.model_version is None
            else f"model version {index.model_version!r}"
        )
        raise IndexVersionMismatch(
            f"the index records {found}, but the user tower is model version "
            f"{model_version!r}: embeddings from different models are not "
            f"comparable; rebuild the index with the item tower of "
            f"{model_version!r} (or serve the user tower the index was built with)"
        )
