"""Negative downsampling and recalibration: exact inverse, calibrated results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.models import (
    HashedLogisticRegression,
    ProbabilityHead,
    downsample_negatives,
    predict_proba,
    recalibrate,
    train,
)

rates = st.floats(min_value=1e-3, max_value=1.0)
probabilities = st.floats(min_value=1e-6, max_value=1 - 1e-6)


def known_p_data(n: int, seed: int) -> CTRData:
    """20 groups with true click rates from 0.5% to 10%."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 20, size=n)
    p = np.linspace(0.005, 0.10, 20)[group]
    return CTRData(
        dense=np.zeros((n, 1), dtype=np.float32),
        categorical=group[:, None],
        labels=(rng.random(n) < p).astype(np.float32),
        dense_names=("zero",),
        categorical_names=("group",),
        cardinalities=(20,),
        true_prob=p,
    )


@given(probabilities, rates)
def test_recalibration_inverts_the_odds_scaling(p: float, w: float) -> None:
    # Keeping negatives with probability w turns p into p / (p + (1 - p) w).
    seen = p / (p + (1 - p) * w)
    assert recalibrate(seen, w) == pytest.approx(p, rel=1e-9, abs=1e-12)


@given(probabilities, probabilities, rates)
def test_recalibration_is_monotone_and_stays_in_the_unit_interval(
    p: float, q: float, w: float
) -> None:
    low, high = sorted((p, q))
    out_low, out_high = recalibrate(np.array([low, high]), w)
    assert 0.0 < out_low <= out_high < 1.0
    assert out_low <= low + 1e-12  # downsampling only inflates: q <= p


@given(st.lists(probabilities, min_size=1, max_size=20))
def test_rate_one_is_the_identity(ps: list[float]) -> None:
    np.testing.assert_allclose(recalibrate(ps, 1.0), ps, rtol=1e-12)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="fraction of negatives kept"):
        recalibrate([0.5], 0.0)
    with pytest.raises(ValueError, match="logits"):
        recalibrate([1.5], 0.5)
    with pytest.raises(ValueError, match="fraction of negatives kept"):
        downsample_negatives(known_p_data(10, 0), 1.5)


def test_downsampling_keeps_positives_and_a_share_w_of_negatives() -> None:
    data = known_p_data(100_000, 0)
    down = downsample_negatives(data, 0.1, seed=3)
    positives = int(data.labels.sum())
    assert int(down.labels.sum()) == positives
    kept = (len(down) - positives) / (len(data) - positives)
    assert kept == pytest.approx(0.1, abs=0.005)
    assert down.meta["negative_downsample_rate"] == 0.1
    again = downsample_negatives(down, 0.5, seed=4)
    assert again.meta["negative_downsample_rate"] == pytest.approx(0.05)
    same = downsample_negatives(data, 0.1, seed=3)
    np.testing.assert_array_equal(same.categorical, down.categorical)


def test_group_rates_on_downsampled_data_recalibrate_to_the_truth() -> None:
    data = known_p_data(400_000, 0)
    w = 0.05
    down = downsample_negatives(data, w, seed=1)
    group = down.categorical[:, 0]
    biased = np.bincount(group, down.labels) / np.bincount(group)
    truth = np.linspace(0.005, 0.10, 20)
    assert np.all(biased > 2 * truth)  # the raw estimate is far off...
    fixed = recalibrate(biased, w)
    np.testing.assert_allclose(fixed, truth, rtol=0.15)  # ...the fixed one is not
    # and pooled over all rows the recalibrated estimate matches the observed CTR
    assert np.mean(fixed[data.categorical[:, 0]]) == pytest.approx(data.ctr, rel=0.03)


def test_a_model_trained_on_downsampled_data_serves_calibrated_pctr() -> None:
    train_data, test_data = known_p_data(200_000, 0), known_p_data(50_000, 1)
    w = 0.1
    down = downsample_negatives(train_data, w, seed=0)
    model = HashedLogisticRegression.from_data(down)
    train(model, down, epochs=4, batch_size=1024, lr=0.05, progress=False)
    raw = predict_proba(model, test_data)
    calibrated = predict_proba(model, test_data, downsample_rate=w)
    assert raw.mean() / test_data.ctr > 2.0
    assert calibrated.mean() / test_data.ctr == pytest.approx(1.0, abs=0.05)
    np.testing.assert_allclose(calibrated, recalibrate(raw, w), rtol=1e-5)
    head = ProbabilityHead(model, downsample_rate=w).eval()
    with torch.no_grad():
        served = head(
            torch.as_tensor(test_data.dense), torch.as_tensor(test_data.categorical)
        ).numpy()
    np.testing.assert_allclose(served, calibrated, rtol=1e-4)
    by_group = np.bincount(test_data.categorical[:, 0], calibrated) / np.bincount(
        test_data.categorical[:, 0]
    )
    np.testing.assert_allclose(
        by_group, np.linspace(0.005, 0.10, 20), rtol=0.1, atol=0.005
    )
