"""The ad-click model report: scores as the benchmark computes them, breakdowns."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from mlsd_lib.adclick import model_report as R
from mlsd_lib.adclick.recipes import Budget, fit_model
from mlsd_lib.evaluation import normalized_entropy
from mlsd_lib.worlds.ads import AdsWorld

SECONDS_PER_DAY = 86_400.0


@pytest.fixture(scope="module")
def splits():
    world = AdsWorld(seed=0)
    data = world.to_ctr_data(world.simulate(3, 6_000), num_buckets=2**10)
    day = (data.timestamps // SECONDS_PER_DAY).astype(int)
    return tuple(data.subset(day == d) for d in range(3))


@pytest.fixture(scope="module")
def fitted(splits):
    train, valid, _ = splits
    budget = Budget(epochs=2, num_trees=5, gbdt_lr_epochs=1, patience=1)
    return {
        name: fit_model(name, train, valid, budget, seed=0)
        for name in ("lr", "gbdt_lr", "deepfm", "dcn_v2")
    }


def test_predictions_are_level_shifted_on_the_validation_day(splits, fitted):
    _, valid, test = splits
    predictions = R.test_predictions(fitted, valid, test)
    assert set(predictions) == {"lr", "gbdt_lr", "deepfm", "dcn_v2", "ensemble"}
    # Applied to the validation day itself, the shift matches its CTR exactly.
    on_valid = R.test_predictions({"lr": fitted["lr"]}, valid, valid)
    assert set(on_valid) == {"lr"}
    assert np.mean(on_valid["lr"]) == pytest.approx(valid.ctr, rel=1e-6)


def test_results_table_has_bayes_first_and_ratios(splits, fitted):
    _, valid, test = splits
    predictions = R.test_predictions(fitted, valid, test)
    seconds = {name: model.seconds for name, model in fitted.items()}
    table = R.results_table(predictions, test, seconds)
    assert table.index[0] == R.BAYES
    assert table.loc[R.BAYES, "NE / Bayes"] == pytest.approx(1.0)
    bayes_ne = normalized_entropy(test.labels, test.true_prob)
    assert table.loc["hashed LR", "NE"] == pytest.approx(
        normalized_entropy(test.labels, predictions["lr"])
    )
    assert table.loc["DCN-V2", "NE / Bayes"] == pytest.approx(
        table.loc["DCN-V2", "NE"] / bayes_ne
    )
    assert table.loc["ensemble", "train s"] == pytest.approx(
        seconds["gbdt_lr"] + seconds["deepfm"] + seconds["dcn_v2"]
    )
    assert np.isnan(table.loc[R.BAYES, "train s"])


def test_results_table_needs_true_prob(splits):
    _, _, test = splits
    test = dataclasses.replace(test, true_prob=None)
    with pytest.raises(ValueError, match="true_prob"):
        R.results_table({}, test)


def test_training_history_covers_gbdt_lr(fitted):
    for model in fitted.values():
        history = R.training_history(model)
        assert history is not None and len(history.history) >= 1
    fig = R.training_curves_figure(fitted)
    assert len(fig.axes[0].get_legend().get_texts()) == 4


def test_ne_by_group_matches_per_group_ne():
    rng = np.random.default_rng(0)
    y = (rng.random(2_000) < 0.2).astype(np.float32)
    groups = rng.integers(0, 3, 2_000)
    predictions = {"lr": np.full(2_000, 0.2), "dcn_v2": np.where(y > 0, 0.3, 0.15)}
    table = R.ne_by_group(y, predictions, groups, true_prob=np.full(2_000, 0.2))
    assert list(table.index) == [0, 1, 2]
    mask = groups == 1
    ne_lr = normalized_entropy(y[mask], predictions["lr"][mask])
    ne_dcn = normalized_entropy(y[mask], predictions["dcn_v2"][mask])
    assert table.loc[1, "hashed LR"] == pytest.approx(ne_lr)
    assert table.loc[1, "gain of DCN-V2"] == pytest.approx(1 - ne_dcn / ne_lr)
    assert table["rows"].sum() == 2_000
    assert "gain of hashed LR" not in table.columns


def test_scoring_seconds_is_positive(splits, fitted):
    _, _, test = splits
    seconds = R.scoring_seconds(fitted["lr"], test, candidates=100, repeats=3)
    assert 0.0 < seconds < 5.0
