"""The two-head ranker: planted engagement and watch-time signal, position bias, export.

The impressions are generated here, seeded: an engaged play follows a known
logit of the features, shifted by a known position bias; the old feed placed
items by a "freshness" feature ``z`` that has *no* effect on engagement, so a
model without the position feature credits ``z`` with position's effect. Watch
minutes of an engaged play are lognormal with a known mean.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.evaluation.metrics import roc_auc
from mlsd_lib.models import (
    EntityFeatures,
    ModelInputError,
    RankerData,
    RankerScorer,
    TrainingConfig,
    TwoHeadRanker,
    history_group_overlap,
    predict_ranker,
    ranker_examples,
    train_ranker,
)
from mlsd_lib.serving.export import export_model

CONFIG = TrainingConfig(
    epochs=6, batch_size=256, lr=1e-2, patience=3, progress=False, num_threads=1
)
SIGMA = 0.5


@dataclass(frozen=True)
class Impressions:
    data: RankerData
    true_logit: np.ndarray  # engagement logit at position 0
    true_minutes: np.ndarray  # E[minutes | engaged play]
    p_logged: np.ndarray  # true P(engaged) at the logged position


def impressions(n: int, seed: int, *, with_minutes: bool = True) -> Impressions:
    rng = np.random.default_rng(seed)
    n_users, n_items = 500, 300
    user_latent = rng.normal(size=(n_users, 4))
    item_latent = rng.normal(size=(n_items, 4))
    quality = rng.normal(size=n_items)
    log_duration = rng.normal(3.0, 0.4, n_items)
    genre, region = rng.integers(0, 6, n_items), rng.integers(0, 3, n_users)
    user, item = rng.integers(0, n_users, n), rng.integers(0, n_items, n)
    affinity = (user_latent[user] * item_latent[item]).sum(axis=1) / 2
    z = rng.normal(size=n)  # what the old ranker liked; irrelevant to users
    true_logit = -1.0 + 0.8 * affinity + 0.6 * quality[item]
    position = np.floor(20 / (1 + np.exp(z + rng.normal(size=n))))
    position = np.clip(position, 0, 19).astype(np.int64)
    p_logged = 1 / (1 + np.exp(-(true_logit - 0.12 * position)))
    engaged = rng.random(n) < p_logged
    mu = 0.9 * log_duration[item] - 0.3 + 0.3 * affinity
    minutes = np.where(engaged, np.exp(mu + SIGMA * rng.normal(size=n)), np.nan)
    if not with_minutes:
        minutes = np.full(n, np.nan)
    dense = np.column_stack(
        [
            affinity,  # e.g. the two-tower score of the pair
            quality[item] + 0.3 * rng.normal(size=n),  # a noisy quality proxy
            z,
            log_duration[item],
            user_latent[user, :2],
        ]
    )
    features = EntityFeatures.from_arrays(
        dense, np.column_stack([genre[item], region[user]]), (6, 3)
    )
    log = Interactions.from_arrays(
        user,
        item,
        np.arange(n, dtype=np.float64),
        engaged,
        minutes=minutes,
        position=position,
        n_users=n_users,
        n_items=n_items,
    )
    return Impressions(
        ranker_examples(log, features),
        true_logit,
        np.exp(mu + SIGMA**2 / 2),
        p_logged,
    )


@pytest.fixture(scope="module")
def world() -> tuple[Impressions, Impressions]:
    return impressions(30_000, 0), impressions(10_000, 1)


@pytest.fixture(scope="module")
def trained(world) -> TwoHeadRanker:
    train, valid = world
    model = TwoHeadRanker.from_data(train.data, seed=0)
    result = train_ranker(model, train.data, valid.data, CONFIG)
    assert result.best_valid_loss == min(result.valid_losses)
    return model


def test_the_ranker_learns_the_planted_engagement_and_watch_time(world, trained):
    _, test = world
    logged = predict_ranker(trained, test.data, position=None)
    bayes = roc_auc(test.data.engaged, test.p_logged)
    model_auc = roc_auc(test.data.engaged, logged.p_play)
    assert model_auc > 0.7 and model_auc > bayes - 0.015
    engaged = test.data.engaged
    corr = np.corrcoef(logged.expected_minutes[engaged], test.true_minutes[engaged])
    assert corr[0, 1] > 0.9
    # E[minutes] is the lognormal mean, not its median: no systematic shortfall.
    ratio = logged.expected_minutes[engaged].mean() / test.true_minutes[engaged].mean()
    assert 0.9 < ratio < 1.1
    served = predict_ranker(trained, test.data)  # position 0, as served
    np.testing.assert_allclose(served.score, served.p_play * served.expected_minutes)


def test_the_position_feature_absorbs_the_planted_position_bias(world, trained):
    train, test = world
    at_top = predict_ranker(trained, test.data).p_play
    with_position = spearmanr(at_top, test.true_logit).statistic
    # Same data with the position withheld: the model credits z instead.
    blind = RankerData(
        train.data.features,
        np.full(len(train.data), -1),
        train.data.engaged,
        train.data.minutes,
    )
    naive = TwoHeadRanker.from_data(blind, seed=0)
    train_ranker(naive, blind, None, replace(CONFIG, epochs=4))
    naive_top = predict_ranker(naive, test.data).p_play
    without = spearmanr(naive_top, test.true_logit).statistic
    assert with_position > 0.95
    assert with_position > without + 0.03
    # z does nothing for users: the debiased ranker ignores it, the naive one
    # learned position's effect as z's.
    z = test.data.features.dense[:, 2]
    assert abs(spearmanr(at_top, z).statistic) < 0.2
    assert spearmanr(naive_top, z).statistic > 0.25
    bias = trained.position_logit(torch.arange(20)).detach().numpy()
    assert bias[0] > bias[5] > bias[10] > bias[19]  # learned, not given
    assert bias[0] - bias[19] == pytest.approx(0.12 * 19, rel=0.3)


def test_without_any_minutes_the_score_falls_back_to_play_probability(world):
    ratings = impressions(5_000, 2, with_minutes=False).data  # like MovieLens
    model = TwoHeadRanker.from_data(ratings, seed=0)
    train_ranker(model, ratings, None, TrainingConfig(epochs=1, progress=False))
    assert not bool(model.minutes_trained)
    prediction = predict_ranker(model, ratings)
    assert np.all(prediction.expected_minutes == 1.0)
    np.testing.assert_array_equal(prediction.score, prediction.p_play)
    train, _ = world  # where minutes exist, every engaged row has them
    assert train.data.has_minutes.sum() == train.data.engaged.sum() > 0


@pytest.mark.parametrize("format", ["torchscript", "pt2"])
def test_the_served_ranker_exports_with_parity(world, trained, format, tmp_path: Path):
    _, test = world
    scorer = RankerScorer(trained).eval()
    features = test.data.features

    def rows(index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return (
            torch.as_tensor(features.dense[index], dtype=torch.float32),
            torch.as_tensor(features.categorical[index]),
        )

    # Real rows, not export_model's random ids: each categorical column has
    # its own range, which random ids over the example's whole range break.
    example = rows(np.arange(8))
    samples = [example, rows(np.arange(8, 9)), rows(np.arange(100, 117))]
    exported = export_model(
        scorer,
        example,
        tmp_path / f"ranker.{format}",
        format=format,
        sample_inputs=samples,
    )
    assert exported.report.passed
    p_play, minutes = exported.module(*example)
    served = predict_ranker(trained, test.data.subset(np.arange(8)))
    np.testing.assert_allclose(p_play.detach().numpy(), served.p_play, rtol=1e-5)
    np.testing.assert_allclose(
        minutes.detach().numpy(), served.expected_minutes, rtol=1e-5
    )


def test_history_group_overlap_counts_the_candidates_group_in_the_history():
    item_group = np.array([0, 0, 1, 2, -1])
    history = np.array([[0, 1, 2, -1], [3, 3, -1, -1], [-1, -1, -1, -1], [4, 4, 0, 1]])
    count, share = history_group_overlap(history, np.array([1, 3, 0, 4]), item_group)
    np.testing.assert_array_equal(count, [2, 2, 0, 0])  # group -1 never matches
    np.testing.assert_allclose(share, [2 / 3, 1.0, 0.0, 0.0])
    with pytest.raises(ModelInputError, match=r"history must be \(n, N\) and items"):
        history_group_overlap(history, np.array([1, 2]), item_group)


def test_the_ranker_refuses_data_that_does_not_fit(world, trained):
    train, _ = world
    with pytest.raises(ModelInputError, match="'position' must have shape"):
        RankerData(
            train.data.features,
            train.data.position[:5],
            train.data.engaged,
            train.data.minutes,
        )
    narrow = RankerData(
        train.data.features.rows(np.arange(10)),
        train.data.position[:10],
        train.data.engaged[:10],
        train.data.minutes[:10],
    )
    narrow = RankerData(
        EntityFeatures.from_arrays(narrow.features.dense[:, :3]),
        narrow.position,
        narrow.engaged,
        narrow.minutes,
    )
    with pytest.raises(ModelInputError, match="3 dense and 0 categorical features"):
        predict_ranker(trained, narrow)
    with pytest.raises(ModelInputError, match="one row per impression"):
        ranker_examples(
            Interactions.from_arrays([0], [0], [0.0], [True]),
            train.data.features,
        )
