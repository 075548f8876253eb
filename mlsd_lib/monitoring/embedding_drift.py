"""Drift of embeddings: is this window's traffic still the traffic the model was
built for?

Introduced in ``casestudies/visual_search/08_monitoring_and_retraining.ipynb``
(monitoring: "query-embedding drift"). A feature monitor compares one number's
distribution with a reference (:func:`~mlsd_lib.monitoring.drift.psi`); an embedding is
a hundred numbers that only mean something together, and a PSI per coordinate would
raise a hundred noisy alarms for one real change. :func:`fit_embedding_reference`
summarizes a reference window of embeddings (the first days a release served) once;
:func:`embedding_drift` compares a later window with it on three statistics, each
catching a different shift:

* **mean shift** (``mean_shift``): the squared distance between the window's
  mean and the reference's, divided by what sampling alone gives two samples
  of these sizes, ``trace(cov) x (1/m + 1/n)``. About 1 when nothing moved,
  whatever the dimension or the window size; a camera that makes every photo
  darker moves every query the same way and the ratio climbs to tens;
* **projected PSI** (``psi_max``): the reference's top principal directions
  (where its queries vary most), each window projected on them and compared
  bin by bin (PSI on the reference's quantile bins); the largest over the
  directions. A new kind of query shows up as a bump in one direction even
  when the mean barely moves;
* **far share** (``far_share``): the share of queries whose cosine to the
  nearest of the given centroids (the catalogue's categories) is below the
  reference's ``far_quantile`` (5 %): queries unlike anything we sell. About
  ``far_quantile`` when nothing moved.

Everything is numpy on unit or raw vectors; nothing here knows what embedded
them, so a text or user embedding is monitored the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.monitoring.drift import psi

__all__ = [
    "EmbeddingDrift",
    "EmbeddingDriftError",
    "EmbeddingReference",
    "embedding_drift",
    "fit_embedding_reference",
]

#: Fewer reference vectors than this cannot estimate bins and directions.
MIN_REFERENCE = 50


class EmbeddingDriftError(MlsdError, ValueError):
    """Embeddings a drift statistic cannot use; the message says what to pass."""


def _matrix(values: ArrayLike, name: str, dim: int | None = None) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise EmbeddingDriftError(
            f"{name} must be a non-empty (n, d) array of embeddings, got shape "
            f"{x.shape}."
        )
    if dim is not None and x.shape[1] != dim:
        raise EmbeddingDriftError(
            f"{name} has {x.shape[1]} dimensions, the reference {dim}: compare "
            "embeddings of the same model (refit the reference after a retrain)."
        )
    if not np.isfinite(x).all():
        raise EmbeddingDriftError(f"{name} holds NaN or infinite values: drop them.")
    return x


@dataclass(frozen=True)
class EmbeddingReference:
    """A reference window, summarized: its mean, the total variance
    ``trace(cov)``, its size, its top principal directions (``(k, d)`` rows)
    and its vectors' projections on them (the PSI bins come from these), the
    unit centroids the far share is measured against (None: no far share) and
    the cosine below which a query counts as far."""

    mean: np.ndarray
    total_variance: float
    n: int
    components: np.ndarray
    projections: np.ndarray
    centroids: np.ndarray | None
    far_cosine: float
    far_quantile: float
    num_bins: int

    @property
    def dim(self) -> int:
        return int(self.mean.size)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _nearest_cosine(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return (_unit(vectors) @ centroids.T).max(axis=1)


def fit_embedding_reference(
    embeddings: ArrayLike,
    *,
    n_components: int = 8,
    centroids: ArrayLike | None = None,
    far_quantile: float = 0.05,
    num_bins: int = 10,
) -> EmbeddingReference:
    """Summarize ``(n, d)`` reference ``embeddings`` (see the module notes).

    ``n_components``: principal directions kept for the projected PSI;
    ``centroids``: ``(c, d)`` vectors the far share measures against (they
    are normalized here); ``far_quantile``: the share of reference queries
    that count as far, which fixes the cosine threshold.
    """
    x = _matrix(embeddings, "embeddings")
    if x.shape[0] < MIN_REFERENCE:
        raise EmbeddingDriftError(
            f"a reference needs at least {MIN_REFERENCE} embeddings to place bins "
            f"and directions, got {x.shape[0]}: widen the reference window."
        )
    if not 1 <= n_components <= x.shape[1]:
        raise EmbeddingDriftError(
            f"n_components must be in [1, {x.shape[1]}] (the dimension), got "
            f"{n_components}."
        )
    if not 0.0 < far_quantile < 0.5:
        raise EmbeddingDriftError(
            f"far_quantile must be in (0, 0.5), got {far_quantile}: it is the share "
            "of reference queries called far (e.g. 0.05)."
        )
    mean = x.mean(axis=0)
    centred = x - mean
    # right singular vectors = principal directions; signs fixed for determinism
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:n_components]
    signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(1)])
    components = components * signs[:, None]
    units, far_cosine = None, float("nan")
    if centroids is not None:
        units = _unit(_matrix(centroids, "centroids", x.shape[1]))
        far_cosine = float(np.quantile(_nearest_cosine(x, units), far_quantile))
    return EmbeddingReference(
        mean=mean,
        total_variance=float(centred.var(axis=0).sum()),
        n=int(x.shape[0]),
        components=components,
        projections=centred @ components.T,
        centroids=units,
        far_cosine=far_cosine,
        far_quantile=float(far_quantile),
        num_bins=int(num_bins),
    )


@dataclass(frozen=True)
class EmbeddingDrift:
    """One window against the reference: its size, the mean-shift ratio,
    the PSI on each principal direction and their largest, and the far share
    (NaN without centroids)."""

    n: int
    mean_shift: float
    psi_components: np.ndarray
    far_share: float

    @property
    def psi_max(self) -> float:
        return float(self.psi_components.max())

    def as_dict(self) -> dict[str, float]:
        """The three statistics by name (what alert rules read)."""
        return {
            "mean_shift": self.mean_shift,
            "psi_max": self.psi_max,
            "far_share": self.far_share,
        }


def embedding_drift(
    reference: EmbeddingReference, embeddings: ArrayLike
) -> EmbeddingDrift:
    """The window ``embeddings`` (``(m, d)``) against ``reference``."""
    x = _matrix(embeddings, "embeddings", reference.dim)
    m = x.shape[0]
    gap = x.mean(axis=0) - reference.mean
    noise = reference.total_variance * (1.0 / m + 1.0 / reference.n)
    projections = (x - reference.mean) @ reference.components.T
    psis = np.array(
        [
            psi(
                reference.projections[:, j],
                projections[:, j],
                num_bins=reference.num_bins,
                categorical=False,
            )
            for j in range(reference.components.shape[0])
        ]
    )
    far = float("nan")
    if reference.centroids is not None:
        far = float(
            np.mean(_nearest_cosine(x, reference.centroids) < reference.far_cosine)
        )
    return EmbeddingDrift(
        n=int(m),
        mean_shift=float(gap @ gap / max(noise, 1e-30)),
        psi_components=psis,
        far_share=far,
    )
