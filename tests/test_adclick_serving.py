"""The served ad-click graph equals the training path on the same impressions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsd_lib.adclick import features as F
from mlsd_lib.adclick.serving import (
    SERVING_INPUTS,
    AdsScoringModel,
    offline_serving_inputs,
)
from mlsd_lib.models import DCNv2, ProbabilityHead, train
from mlsd_lib.serving.export import export_model
from mlsd_lib.worlds.ads import AdsWorld, AdsWorldConfig

BUCKETS = 1024


@pytest.fixture(scope="module")
def setup():
    config = AdsWorldConfig(
        num_users=400, num_ads=80, num_campaigns=30, num_advertisers=10
    )
    world = AdsWorld(config, seed=11)
    log = world.simulate(days=8, impressions_per_day=4_000)
    tables = F.feature_tables(world, log, num_buckets=BUCKETS)
    data = F.training_data(world, log, tables, num_buckets=BUCKETS)
    model = DCNv2(
        data.dense.shape[1], data.cardinalities, embedding_dim=4, hidden=(16,)
    )
    train(model, data, epochs=1, progress=False, seed=0)
    return world, log, tables, data, model.eval()


def serving_matrix(log, tables, rows):
    return offline_serving_inputs(log, tables, rows)


def test_served_graph_equals_the_training_path(setup):
    _, log, tables, data, model = setup
    rows = np.arange(0, len(log), 97)
    matrix = serving_matrix(log, tables, rows)
    assert matrix.shape[1] == len(SERVING_INPUTS)
    served = AdsScoringModel(model, downsample_rate=0.5).eval()
    head = ProbabilityHead(model, downsample_rate=0.5).eval()
    with torch.inference_mode():
        got = served(torch.from_numpy(matrix)).numpy()
        want = head(
            torch.from_numpy(data.dense[rows]),
            torch.from_numpy(data.categorical[rows]),
        ).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_served_graph_exports_with_parity(setup, tmp_path):
    _, log, tables, _, model = setup
    example = torch.from_numpy(serving_matrix(log, tables, np.arange(16)))
    served = AdsScoringModel(model).eval()
    samples = [
        torch.from_numpy(serving_matrix(log, tables, np.arange(s, s + n)))
        for s, n in ((100, 1), (200, 64))
    ]
    for fmt, name in (("torchscript", "ads.pt"), ("pt2", "ads.pt2")):
        exported = export_model(
            served, example, tmp_path / name, format=fmt, sample_inputs=samples
        )
        assert exported.report.passed


def test_rate_must_be_a_fraction(setup):
    with pytest.raises(ValueError, match="fraction of negatives"):
        AdsScoringModel(setup[4], downsample_rate=2.0)
