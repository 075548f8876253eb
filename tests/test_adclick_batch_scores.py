"""The nightly ad-scoring job agrees with the online path when nothing changed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mlsd_lib.adclick import features as F
from mlsd_lib.adclick.batch_scores import (
    BatchScoreInputError,
    batch_score_users,
    score_matrix,
    serving_matrix,
)
from mlsd_lib.adclick.serving import AdsScoringModel
from mlsd_lib.models import HashedLogisticRegression
from mlsd_lib.worlds.ads import AdsWorld, AdsWorldConfig


@pytest.fixture(scope="module")
def small():
    config = AdsWorldConfig(num_users=300, num_advertisers=20, num_campaigns=40,
                            num_ads=200)  # fmt: skip
    world = AdsWorld(config, seed=0)
    log = world.simulate(days=2, impressions_per_day=3_000)
    tables = F.feature_tables(world, log, num_buckets=2**10)
    data = F.training_data(world, log, tables, num_buckets=2**10)
    torch.manual_seed(0)
    model = HashedLogisticRegression(data.dense.shape[1], data.cardinalities)
    return world, tables, AdsScoringModel(model.eval()).eval()


def test_the_job_equals_pairwise_scoring_at_the_same_time(small):
    world, tables, model = small
    as_of = F.WORLD_EPOCH + pd.Timedelta(days=1, hours=5)
    users = np.array([0, 7, 42])
    device = world.entities.user_device[users]
    scores = batch_score_users(model, tables, users, device, 200, as_of, hour=20,
                               users_per_chunk=2)  # fmt: skip
    assert scores.shape == (3, 200)
    u, a = np.repeat(users, 200), np.tile(np.arange(200), 3)
    pairwise = score_matrix(
        model,
        serving_matrix(tables, u, a, np.full(600, 20), np.repeat(device, 200), as_of),
        chunk_size=7,
    )
    np.testing.assert_allclose(scores.ravel(), pairwise, rtol=1e-5)


def test_features_as_of_different_times_differ(small):
    _world, tables, _model = small
    u, a = np.arange(50), np.arange(50) % 200
    h, d = np.full(50, 12), np.zeros(50, int)
    early = serving_matrix(tables, u, a, h, d, F.WORLD_EPOCH + pd.Timedelta(hours=1))
    late = serving_matrix(tables, u, a, h, d, F.WORLD_EPOCH + pd.Timedelta(days=1.9))
    assert np.abs(early - late).sum() > 0  # counters moved
    per_row = pd.Series(
        F.WORLD_EPOCH + pd.to_timedelta(np.linspace(3_600, 160_000, 50), "s")
    )
    mixed = serving_matrix(tables, u, a, h, d, per_row)
    np.testing.assert_array_equal(mixed[0], early[0])


def test_bad_rows_say_what_to_pass(small):
    _world, tables, model = small
    with pytest.raises(BatchScoreInputError, match="must have one length"):
        serving_matrix(tables, np.arange(3), np.arange(2), np.arange(3),
                       np.arange(3), F.WORLD_EPOCH)  # fmt: skip
    with pytest.raises(BatchScoreInputError, match="pass each user's usual device"):
        batch_score_users(model, tables, np.arange(3), np.zeros(2), 200, F.WORLD_EPOCH)
