"""Tests for the ad-click evaluation experiments (mlsd_lib.adclick.evaluation)."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.adclick import evaluation as E
from mlsd_lib.adclick.recipes import Budget, FittedModel
from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.evaluation import roc_auc


def _data(days: int = 6, per_day: int = 400, seed: int = 0) -> CTRData:
    rng = np.random.default_rng(seed)
    n = days * per_day
    ts = np.repeat(np.arange(days), per_day) * 86_400.0 + rng.uniform(0, 86_000, n)
    ts.sort()
    true_p = rng.uniform(0.01, 0.2, n)
    labels = (rng.random(n) < true_p).astype(np.float32)
    return CTRData(
        dense=rng.normal(size=(n, 2)).astype(np.float32),
        categorical=rng.integers(0, 5, (n, 1)),
        labels=labels,
        dense_names=("a", "b"),
        categorical_names=("c",),
        cardinalities=(5,),
        timestamps=ts,
        true_prob=true_p,
    )


def test_day_split_is_past_valid_test():
    data = _data()
    train, valid, test = E.day_split(data, test_day=5, valid_days=2)
    assert set(E.day_index(train)) == {0, 1, 2}
    assert set(E.day_index(valid)) == {3, 4}
    assert set(E.day_index(test)) == {5}
    assert train.timestamps.max() < valid.timestamps.min() < test.timestamps.min()
    with pytest.raises(ValueError, match="no training rows"):
        E.day_split(data, test_day=1)


def test_random_split_sizes_disjoint_and_mixes_days():
    data = _data()
    train, valid, test = E.random_split(data, valid_size=300, test_size=400, seed=1)
    assert (len(train), len(valid), len(test)) == (len(data) - 700, 300, 400)
    stamps = np.concatenate([train.timestamps, valid.timestamps, test.timestamps])
    assert len(np.unique(stamps)) == len(data)
    assert len(set(E.day_index(test))) == 6  # every day in the test set
    assert np.all(np.diff(test.timestamps) >= 0)
    again = E.random_split(data, valid_size=300, test_size=400, seed=1)[2]
    assert np.array_equal(again.timestamps, test.timestamps)
    with pytest.raises(ValueError, match="leave training rows"):
        E.random_split(data, valid_size=1, test_size=len(data))


def test_metrics_table_has_bayes_row_with_zero_gap():
    data = _data()
    jitter = np.random.default_rng(3).uniform(-1e-9, 1e-9, len(data))
    p = data.ctr + jitter  # a constant, up to ties (equal-mass bins need spread)
    table = E.metrics_table(data, {"constant": p})
    assert list(table.index) == ["constant", E.BAYES]
    assert table.loc["constant", "NE"] == pytest.approx(1.0)
    assert table.loc["constant", "AUC"] == pytest.approx(0.5, abs=0.05)
    assert table.loc["constant", "pred/obs CTR"] == pytest.approx(1.0)
    assert table.loc[E.BAYES, "NE gap"] == 0.0
    assert table.loc["constant", "NE gap"] > 0


def test_distort_is_monotone_keeps_auc_and_validates():
    data = _data()
    p = data.true_prob
    q = E.distort(p, temperature=2.0, shift=0.5)
    assert np.all(np.diff(q[np.argsort(p)]) >= 0)
    assert roc_auc(data.labels, q) == pytest.approx(roc_auc(data.labels, p))
    assert np.allclose(E.distort(p), p)
    with pytest.raises(ValueError, match="temperature"):
        E.distort(p, temperature=0.0)


def test_training_days_schedules():
    assert [E.training_days(d, first_day=7, every=7) for d in (7, 13, 14, 20)] == [
        7,
        7,
        14,
        14,
    ]
    assert E.training_days(10, first_day=7, every=1) == 10
    with pytest.raises(ValueError):
        E.training_days(3, first_day=7, every=1)
    with pytest.raises(ValueError):
        E.training_days(8, first_day=7, every=0)


def test_freshness_study_shares_models_and_uses_the_past_only():
    data = _data(days=6)
    calls = []

    def fake_fit(name, train, valid, budget, *, seed):
        calls.append((set(E.day_index(train)), set(E.day_index(valid))))
        level = float(train.ctr)
        return FittedModel(name, None, 0.0, lambda d: np.full(len(d), level))

    result = E.freshness_study(
        data,
        eval_days=[3, 4, 5],
        schedules={"daily": 1, "every 2 days": 2},
        window_days=3,
        budget=Budget(epochs=1),
        fit=fake_fit,
    )
    # Retraining days: daily 3, 4, 5; every 2 days 3, 5 -> three distinct fits.
    assert calls == [({0, 1}, {2}), ({1, 2}, {3}), ({2, 3}, {4})]
    assert len(result) == 6
    rows = result.set_index(["day", "schedule"])
    assert rows.loc[(4, "every 2 days"), "trained_on"] == 3
    assert rows.loc[(4, "every 2 days"), "age_days"] == 1
    assert rows.loc[(4, "daily"), "age_days"] == 0
    gap = rows["NE"] - rows["bayes_NE"]
    assert np.allclose(gap, rows["NE_gap"])
    with pytest.raises(ValueError, match="window"):
        E.freshness_study(
            data, eval_days=[2], schedules={"daily": 1}, window_days=3, fit=fake_fit
        )


def test_freshness_study_trains_a_real_model():
    data = _data(days=4, per_day=300)
    result = E.freshness_study(
        data,
        eval_days=[3],
        schedules={"daily": 1},
        window_days=3,
        budget=Budget(epochs=1, batch_size=256),
    )
    assert np.isfinite(result["NE"]).all()
