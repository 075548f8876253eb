"""Synthetic embeddings shaped like learned ones, for measuring an index.

Introduced in ``casestudies/recommender/04_retrieval_index.ipynb``.
An index's recall and speed
depend on the data: on uniform noise in 64 dimensions every point is about as
far from every other, nearest neighbours barely exist, and IVF and HNSW look
far worse than they do on real embeddings. Learned item embeddings are
clustered (genres, languages, franchises), the clusters have very different
sizes (a few big genres, a long tail), and each cluster is elongated along a
few directions. :class:`EmbeddingMixture` draws from exactly that:

* ``n_clusters`` centres, drawn from a Gaussian whose per-axis variance decays
  as ``1 / (j + 1)`` (embedding spaces are anisotropic as a whole), then put on
  the unit sphere;
* cluster probabilities following a power law, ``p_c ∝ (c + 1) ** -size_exponent``
  (with 300 clusters and exponent 1 the largest holds about 16% of items);
* within a cluster, a Gaussian with a random orientation (a random rotation per
  cluster) and per-axis standard deviations decaying as ``(j + 1) ** -0.5``,
  scaled so that the offset from the centre has norm about ``spread``;
* every vector L2-normalized, as a two-tower model's outputs usually are, so
  inner product is cosine similarity.

Queries drawn from the same mixture with another seed are new points from the
same distribution, not copies of indexed vectors (a query that is itself in the
index makes every index look perfect on its first neighbour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd_lib.validation import require_int, require_seed


@dataclass(frozen=True)
class EmbeddingMixture:
    """A mixture of anisotropic Gaussian clusters on the unit sphere."""

    centers: np.ndarray  # (n_clusters, d), unit rows
    rotations: np.ndarray  # (n_clusters, d, d), orthonormal
    scales: np.ndarray  # (n_clusters, d), per-axis standard deviations
    weights: np.ndarray  # (n_clusters,), cluster probabilities

    @classmethod
    def random(
        cls,
        d: int = 64,
        n_clusters: int = 300,
        *,
        size_exponent: float = 1.0,
        spread: float = 0.5,
        seed: int = 0,
    ) -> EmbeddingMixture:
        """A mixture with its centres, shapes and sizes drawn from ``seed``."""
        require_int("d", d, at_least=1)
        require_int("n_clusters", n_clusters, at_least=1)
        require_seed("seed", seed)
        rng = np.random.default_rng(seed)
        axes = np.arange(1, d + 1)
        centers = rng.standard_normal((n_clusters, d)) / np.sqrt(axes)
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        rotations, _ = np.linalg.qr(rng.standard_normal((n_clusters, d, d)))
        profile = axes**-0.5
        profile *= spread / np.linalg.norm(profile)
        # Each cluster's spread varies by a factor of about 2 around the mean.
        size = np.exp(rng.normal(0.0, 0.35, size=(n_clusters, 1)))
        weights = np.arange(1, n_clusters + 1, dtype=float) ** -size_exponent
        return cls(
            centers=centers,
            rotations=rotations,
            scales=profile * size,
            weights=weights / weights.sum(),
        )

    @property
    def d(self) -> int:
        return self.centers.shape[1]

    def sample(self, n: int, seed: int) -> np.ndarray:
        """``n`` unit vectors, float32 and C-contiguous, in random cluster order.

        The loop runs over clusters (a few hundred), never over rows.
        """
        rng = np.random.default_rng(seed)
        counts = rng.multinomial(n, self.weights)
        out = np.empty((n, self.d), dtype=np.float64)
        start = 0
        for cluster in np.flatnonzero(counts):
            stop = start + counts[cluster]
            noise = rng.standard_normal((counts[cluster], self.d))
            noise *= self.scales[cluster]
            out[start:stop] = self.centers[cluster] + noise @ self.rotations[cluster].T
            start = stop
        out = out[rng.permutation(n)]
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out, dtype=np.float32)


def clustered_embeddings(
    n: int,
    n_queries: int,
    d: int = 64,
    *,
    n_clusters: int = 300,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(items, queries)``: ``n`` item and ``n_queries`` query embeddings from
    one :class:`EmbeddingMixture` (items and queries drawn independently)."""
    require_int("n", n, at_least=1)
    require_int("n_queries", n_queries, at_least=1)
    require_int("d", d, at_least=1)
    require_int("n_clusters", n_clusters, at_least=1)
    require_seed("seed", seed)
    mixture_seed, item_seed, query_seed = np.random.SeedSequence(seed).generate_state(3)
    mixture = EmbeddingMixture.random(d, n_clusters, seed=int(mixture_seed))
    return mixture.sample(n, int(item_seed)), mixture.sample(n_queries, int(query_seed))
