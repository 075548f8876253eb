"""Which stage lost the right product: the embedder, the index, or what came after.

Introduced in ``casestudies/visual_search/05_evaluation.ipynb`` (the synthetic world's
"error attribution"). A visual search answers from a chain of stages: the embedder
places vectors, the ANN index returns candidates, then exact re-ranking, collapse into
products, near-duplicate removal and filters cut the list down to 20. A miss in the
final list has one cause, and each cause has a different fix (more training or data,
more probes or a bigger index, a looser dedup threshold or a deeper over-fetch), so the
book measures each:

* **hit**: the query's product is in the final list;
* **embedder**: exact search over the embeddings does not rank it in its top
  K: no index or re-ranking could have found it;
* then, in pipeline order, the **first stage whose list lacks it**, e.g.
  ``index`` (exact search finds it, the ANN candidates do not) and
  ``rerank`` (retrieved, then dropped by re-ranking, dedup or a filter).

:func:`attribute_misses` takes the true product of each query, the exact
top-K products and the product list after each later stage, as ``(n, K)``
int arrays (-1: an empty slot), in the order the pipeline runs them: two
stages (``{"index": ann, "rerank": final}``) give the three-way split, and
more (``collapse``, ``dedup``, ``filters``) split the last one further. The
last stage is the final answer. How deep each list is, is the caller's
choice: the exact list at the final list's depth (20) asks "would perfect
search have shown it?", the ANN list at its own depth (the candidates
re-ranking sees).

A product that exact search misses but the final list shows counts as a hit
(the pipeline got lucky): attribution explains misses, not hits. Duplicate
listings are distinct ids here: map every list to one canonical id first
(the world's :meth:`~mlsd_lib.worlds.images.ImageWorld.canonical`) when
showing a duplicate of the photographed product is a correct answer, or dedup
will look like a stage that loses products.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = ["AttributionInputError", "MissAttribution", "attribute_misses"]

HIT, EMBEDDER = "hit", "embedder"


class AttributionInputError(MlsdError, ValueError):
    """Lists that cannot be attributed; the message says why."""


@dataclass(frozen=True)
class MissAttribution:
    """Each query's outcome: ``codes[i]`` indexes ``outcomes``.

    ``outcomes`` is ``("hit", "embedder", <stage names in pipeline order>)``.
    """

    outcomes: tuple[str, ...]
    codes: np.ndarray

    @property
    def n_queries(self) -> int:
        return len(self.codes)

    @property
    def labels(self) -> np.ndarray:
        """The outcome name of each query (str array), for slicing and grids."""
        return np.asarray(self.outcomes)[self.codes]

    @property
    def counts(self) -> dict[str, int]:
        """Queries per outcome (every outcome listed, zeros included)."""
        counted = np.bincount(self.codes, minlength=len(self.outcomes))
        return dict(zip(self.outcomes, counted.tolist(), strict=True))

    @property
    def rates(self) -> dict[str, float]:
        """Share of all queries per outcome (sums to 1; ``rates["hit"]`` is the
        final list's recall)."""
        n = max(self.n_queries, 1)
        return {name: count / n for name, count in self.counts.items()}

    @property
    def miss_shares(self) -> dict[str, float]:
        """Share of the misses per cause (``hit`` left out); NaN without misses."""
        misses = {name: c for name, c in self.counts.items() if name != HIT}
        total = sum(misses.values())
        return {
            name: c / total if total else float("nan") for name, c in misses.items()
        }

    def as_dict(self) -> dict:
        """Counts, rates and miss shares, for a benchmark's JSON line."""
        return {
            "n_queries": self.n_queries,
            "counts": self.counts,
            "rates": self.rates,
            "miss_shares": self.miss_shares,
        }


def _lists(values: ArrayLike, n: int, name: str) -> np.ndarray:
    lists = np.asarray(values)
    if lists.ndim != 2 or len(lists) != n:
        raise AttributionInputError(
            f"{name} must be a 2-D array with one row per query ({n}), got shape "
            f"{lists.shape}; pad short rows with -1."
        )
    if lists.size and not np.issubdtype(lists.dtype, np.integer):
        raise AttributionInputError(
            f"{name} must hold integer product ids, got {lists.dtype}."
        )
    return lists.astype(np.int64, copy=False)


def attribute_misses(
    true_products: ArrayLike,
    exact_products: ArrayLike,
    stages: Mapping[str, ArrayLike],
) -> MissAttribution:
    """Classify each query as a hit or by the stage that lost its product.

    Introduced in ``casestudies/visual_search/index.md``. ``true_products`` is
    ``(n,)``; ``exact_products`` and each value of ``stages`` are ``(n, K)``
    product ids (-1: empty), ``stages`` in pipeline order with the final
    answer last, e.g. ``{"index": ann_products, "rerank": final_products}``.
    A query is a ``hit`` when the last stage holds its product, else
    ``embedder`` when the exact list lacks it, else the first stage whose list
    lacks it.
    """
    truth = np.asarray(true_products)
    if truth.ndim != 1 or (truth.size and not np.issubdtype(truth.dtype, np.integer)):
        raise AttributionInputError(
            f"true_products must be a 1-D int array, one product per query, got "
            f"{truth.dtype} of shape {truth.shape}."
        )
    if truth.size and truth.min() < 0:
        raise AttributionInputError(
            "true_products must be product ids >= 0 (-1 marks an empty slot)."
        )
    if not isinstance(stages, Mapping) or not stages:
        raise AttributionInputError(
            "stages must map at least one stage name to its product lists, in "
            "pipeline order, e.g. {'index': ann_products, 'rerank': final_products}."
        )
    names = tuple(stages)
    if any(not isinstance(s, str) or s in (HIT, EMBEDDER) or not s for s in names):
        raise AttributionInputError(
            f"stage names must be non-empty strings other than {HIT!r} and "
            f"{EMBEDDER!r} (outcomes of their own), got {list(names)}."
        )
    truth = truth.astype(np.int64)
    n = len(truth)
    column = truth[:, None]
    in_exact = (_lists(exact_products, n, "exact_products") == column).any(axis=1)
    held = np.stack(
        [
            (_lists(lists, n, f"stages[{name!r}]") == column).any(axis=1)
            for name, lists in stages.items()
        ],
        axis=1,
    )
    first_lost = np.argmin(held, axis=1)  # the first False (any, when a miss)
    codes = np.where(held[:, -1], 0, np.where(~in_exact, 1, 2 + first_lost))
    return MissAttribution(outcomes=(HIT, EMBEDDER, *names), codes=codes)
