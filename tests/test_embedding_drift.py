"""Embedding drift statistics: quiet on fresh samples of the reference's
distribution, loud on a moved mean, a new cluster, or queries far from every
centroid."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.monitoring.embedding_drift import (
    EmbeddingDriftError,
    embedding_drift,
    fit_embedding_reference,
)

D = 16


def clusters(rng, n, centres, spread=0.3):
    which = rng.integers(0, len(centres), n)
    x = centres[which] + spread * rng.normal(size=(n, D))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def centres():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(4, D))
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def test_a_fresh_sample_of_the_same_traffic_stays_near_one_and_low(centres):
    rng = np.random.default_rng(1)
    reference = fit_embedding_reference(clusters(rng, 2000, centres), centroids=centres)
    ratios, psis, far = [], [], []
    for _ in range(20):
        drift = embedding_drift(reference, clusters(rng, 200, centres))
        ratios.append(drift.mean_shift)
        psis.append(drift.psi_max)
        far.append(drift.far_share)
    assert 0.6 < np.mean(ratios) < 1.5
    assert max(psis) < 0.25
    assert np.mean(far) == pytest.approx(0.05, abs=0.02)


def test_a_moved_mean_a_new_cluster_and_far_queries_each_show(centres):
    rng = np.random.default_rng(2)
    reference = fit_embedding_reference(clusters(rng, 2000, centres), centroids=centres)
    moved = clusters(rng, 200, centres) + 0.3 * np.eye(D)[0]  # a darker camera
    assert embedding_drift(reference, moved).mean_shift > 10
    newcomer = rng.normal(size=(1, D))
    newcomer /= np.linalg.norm(newcomer)
    mixed = np.concatenate(
        [clusters(rng, 140, centres), clusters(rng, 60, newcomer, spread=0.1)]
    )
    drift = embedding_drift(reference, mixed)
    assert drift.psi_max > 0.25
    assert drift.far_share > 0.25  # the newcomers are far from every centroid
    assert set(drift.as_dict()) == {"mean_shift", "psi_max", "far_share"}


def test_without_centroids_there_is_no_far_share(centres):
    rng = np.random.default_rng(3)
    reference = fit_embedding_reference(clusters(rng, 300, centres), n_components=4)
    drift = embedding_drift(reference, clusters(rng, 100, centres))
    assert np.isnan(drift.far_share) and drift.psi_components.shape == (4,)


def test_bad_inputs_are_refused_with_the_fix(centres):
    rng = np.random.default_rng(4)
    x = clusters(rng, 300, centres)
    with pytest.raises(EmbeddingDriftError, match="at least 50 embeddings"):
        fit_embedding_reference(x[:10])
    with pytest.raises(EmbeddingDriftError, match=r"n_components must be in \[1, 16\]"):
        fit_embedding_reference(x, n_components=17)
    with pytest.raises(EmbeddingDriftError, match="far_quantile must be in"):
        fit_embedding_reference(x, far_quantile=0.7)
    reference = fit_embedding_reference(x)
    with pytest.raises(EmbeddingDriftError, match="has 8 dimensions, the reference 16"):
        embedding_drift(reference, x[:, :8])
    with pytest.raises(MlsdError, match="NaN"):
        embedding_drift(reference, np.full((5, D), np.nan))
