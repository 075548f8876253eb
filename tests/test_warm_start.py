"""Warm start (mlsd_lib.models.warm_start) and the daily comparison in 06."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from mlsd_lib.adclick.monitoring import Traffic
from mlsd_lib.adclick.recipes import build_torch_model
from mlsd_lib.adclick.warm_vs_scratch import (
    DAILY_TRAINING,
    MODES,
    RetrainingComparisonError,
    compare_warm_and_scratch,
    probe_mask,
    warm_training,
)
from mlsd_lib.errors import MlsdError
from mlsd_lib.models import predict_proba
from mlsd_lib.models.ctr import ModelInputError
from mlsd_lib.models.training import evaluate
from mlsd_lib.models.warm_start import continue_training, train_run, training_steps
from mlsd_lib.worlds.ads import AdsWorld


@pytest.fixture(scope="module")
def traffic():
    world = AdsWorld(seed=0)
    log = world.simulate(days=6, impressions_per_day=3_000)
    return Traffic.from_log(world, log, num_buckets=2**12)


def _fresh(traffic):
    torch.manual_seed(0)
    return build_torch_model("lr", traffic.data)


def test_training_steps():
    assert training_steps(1000, 256, 1) == 4
    assert training_steps(1024, 256, 3) == 12


def test_continue_training_leaves_the_previous_model_and_starts_from_it(traffic):
    first = train_run(_fresh(traffic), traffic.on(0), None, DAILY_TRAINING)
    before = [p.detach().clone() for p in first.model.parameters()]
    warm = continue_training(first.model, traffic.on(1), None, DAILY_TRAINING)
    after = list(first.model.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert warm.model is not first.model
    assert warm.steps == training_steps(len(traffic.on(1)), 1024, 1)
    # a model that already knows day 0 beats a fresh one trained on day 1 alone,
    # measured on day 2 (unseen by both)
    cold = train_run(_fresh(traffic), traffic.on(1), None, DAILY_TRAINING)
    assert evaluate(warm.model, traffic.on(2)) < evaluate(cold.model, traffic.on(2))
    p = predict_proba(warm.model, traffic.on(2))
    assert np.all((p > 0) & (p < 1))


def test_continue_training_rejects_data_the_model_does_not_fit(traffic):
    first = train_run(_fresh(traffic), traffic.on(0), None, DAILY_TRAINING)
    wide = dataclasses.replace(
        traffic.on(1),
        cardinalities=tuple(c * 2 for c in traffic.on(1).cardinalities),
    )
    with pytest.raises(ModelInputError, match=r"cardinalit|built for"):
        continue_training(first.model, wide, None, DAILY_TRAINING)


def test_compare_warm_and_scratch_rows_costs_and_probe(traffic):
    probe = probe_mask(traffic, [0, 1], 0.2, seed=0)
    assert probe[traffic.day >= 2].sum() == 0
    assert 0.1 < probe[traffic.day < 2].mean() < 0.3
    frame = compare_warm_and_scratch(
        traffic, first_day=3, last_day=5, probe=probe, train_days=3, progress=False
    )
    assert len(frame) == 3 * len(MODES)
    by = frame.pivot(index="day", columns="mode", values="steps")
    # the first served day shares one model; afterwards warm trains on one day only
    assert by.loc[3, "warm start"] == by.loc[3, "from scratch"]
    assert (by.loc[4:, "warm start"] < by.loc[4:, "from scratch"]).all()
    assert (frame["ne"] > frame["bayes_ne"] - 0.05).all()
    assert (frame["probe_ne_refit"] <= frame["probe_ne"] + 1e-9).all()
    first = frame[frame.day == 3].set_index("mode")
    assert first.loc["warm start", "ne"] == first.loc["from scratch", "ne"]


def test_comparison_errors_say_what_to_do(traffic):
    with pytest.raises(
        RetrainingComparisonError, match=r"probe share must be in \(0, 1\)"
    ):
        probe_mask(traffic, [0], 1.5)
    good = probe_mask(traffic, [0], 0.2)
    with pytest.raises(RetrainingComparisonError, match="need 2 <= first_day"):
        compare_warm_and_scratch(traffic, first_day=1, last_day=3, probe=good)
    with pytest.raises(RetrainingComparisonError, match="build it with probe_mask"):
        compare_warm_and_scratch(traffic, first_day=3, last_day=4, probe=good[:10])
    assert issubclass(RetrainingComparisonError, MlsdError)
    assert issubclass(RetrainingComparisonError, ValueError)


def test_warm_training_pays_the_prior_once_per_window():
    config = warm_training(7, lr=0.01)
    assert config.lr == 0.01
    assert config.embedding_l2 == pytest.approx(DAILY_TRAINING.embedding_l2 / 6)
    assert config.batch_size == DAILY_TRAINING.batch_size
    with pytest.raises(RetrainingComparisonError, match="train_days must be >= 2"):
        warm_training(1)
