"""Calibration metrics and the Platt/isotonic repairs."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsd_lib.evaluation import (
    MetricInputError,
    calibration_ratio,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    normalized_entropy,
    reliability_diagram,
    roc_auc,
    wilson_interval,
)


@pytest.fixture(scope="module")
def calibrated() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = 1.0 / (1.0 + np.exp(-rng.normal(-2.0, 1.0, 40_000)))
    y = (rng.random(len(p)) < p).astype(np.int64)
    return y, p


def test_reliability_bins_hand_example() -> None:
    y = [0, 1, 0, 1, 1]
    p = [0.05, 0.15, 0.55, 0.65, 0.95]
    diagram = reliability_diagram(y, p, num_bins=2)
    np.testing.assert_array_equal(diagram.count, [2, 3])
    np.testing.assert_allclose(diagram.mean_predicted, [0.1, (0.55 + 0.65 + 0.95) / 3])
    np.testing.assert_allclose(diagram.observed_rate, [0.5, 2 / 3])
    assert (diagram.ci_low <= diagram.observed_rate).all()
    assert (diagram.observed_rate <= diagram.ci_high).all()
    gaps = 2 * 0.4 + 3 * abs((0.55 + 0.65 + 0.95) / 3 - 2 / 3)
    assert diagram.ece == pytest.approx(gaps / 5)
    assert list(diagram.to_frame().columns)[:3] == ["bin_lower", "bin_upper", "count"]


def test_quantile_bins_have_equal_mass(calibrated) -> None:
    y, p = calibrated
    diagram = reliability_diagram(y, p, num_bins=8, strategy="quantile")
    assert len(diagram.count) == 8
    assert diagram.count.min() >= len(p) // 8 - 1
    # A calibrated model's observed rates lie inside (or very near) the intervals.
    inside = (diagram.ci_low <= diagram.mean_predicted) & (
        diagram.mean_predicted <= diagram.ci_high
    )
    assert inside.sum() >= 6


def test_wilson_interval_known_value() -> None:
    low, high = wilson_interval(5, 10)
    assert float(low) == pytest.approx(0.2366, abs=1e-4)
    assert float(high) == pytest.approx(0.7634, abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert float(low) == 0.0 and 0 < float(high) < 0.2


def test_errors_are_clear() -> None:
    with pytest.raises(MetricInputError, match="strategy"):
        reliability_diagram([0, 1], [0.1, 0.2], strategy="bogus")
    with pytest.raises(MetricInputError, match="logits"):
        reliability_diagram([0, 1], [0.1, 2.0])
    with pytest.raises(MetricInputError, match="no positive labels"):
        calibration_ratio([0, 0], [0.1, 0.2])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=10, max_size=10))
def test_ece_zero_for_perfectly_calibrated_bins(multipliers: list[int]) -> None:
    if sum(multipliers) == 0:
        multipliers[3] = 1
    y, p = [], []
    for i, m in enumerate(multipliers):
        value = (2 * i + 1) / 20  # the centre of bin i of 10 equal-width bins
        count, positives = 20 * m, (2 * i + 1) * m
        p += [value] * count
        y += [1] * positives + [0] * (count - positives)
    assert expected_calibration_error(y, p, num_bins=10) == pytest.approx(0, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.floats(0.01, 0.99), st.integers(0, 10_000))
def test_calibration_ratio_near_one_for_bernoulli_samples(
    rate: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    p = np.clip(rng.normal(rate, 0.05, 100_000), 0.005, 0.995)
    y = rng.random(len(p)) < p
    assert calibration_ratio(y, p) == pytest.approx(1.0, rel=0.05)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.7, 0.9]), st.integers(0, 1)),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.floats(-0.5, 1.5), min_size=2, max_size=30),
)
def test_isotonic_is_monotone(pairs, queries) -> None:
    scores, labels = zip(*pairs, strict=True)
    calibrator = fit_isotonic(scores, labels)
    out = calibrator(np.sort(queries))
    assert (np.diff(out) >= -1e-12).all()
    assert ((out >= 0) & (out <= 1)).all()
    # Equal scores get equal fitted values.
    fitted = calibrator(np.asarray(scores))
    for s in set(scores):
        assert np.ptp(fitted[np.asarray(scores) == s]) == 0


def test_isotonic_hand_example() -> None:
    calibrator = fit_isotonic([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    # (0.2, 1) and (0.3, 0) violate order and pool to 0.5.
    np.testing.assert_allclose(calibrator([0.1, 0.2, 0.3, 0.4]), [0, 0.5, 0.5, 1])


def test_platt_recovers_known_distortion() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(-1.0, 1.5, 50_000)
    y = rng.random(len(z)) < 1 / (1 + np.exp(-z))
    distorted = 1 / (1 + np.exp(-(0.5 * z + 1.0)))
    scaler = fit_platt(distorted, y)
    assert scaler.a == pytest.approx(2.0, rel=0.05)
    assert scaler.b == pytest.approx(-2.0, rel=0.08)


def test_monotone_distortion_keeps_auc_and_repairs_restore_ne(calibrated) -> None:
    y, p = calibrated
    half = len(y) // 2
    y_fit, y_eval = y[:half], y[half:]
    distorted = p**0.5  # monotone: ranking unchanged, probabilities inflated
    base_ne = normalized_entropy(y_eval, p[half:])
    assert roc_auc(y_eval, distorted[half:]) == pytest.approx(roc_auc(y_eval, p[half:]))
    assert normalized_entropy(y_eval, distorted[half:]) > base_ne + 0.1
    assert expected_calibration_error(
        y_eval, distorted[half:]
    ) > 5 * expected_calibration_error(y_eval, p[half:])
    assert calibration_ratio(y_eval, distorted[half:]) > 1.5
    for fit in (fit_platt, fit_isotonic):
        repair = fit(distorted[:half], y_fit)
        repaired = repair.transform(distorted[half:])
        assert normalized_entropy(y_eval, repaired) == pytest.approx(base_ne, abs=0.01)
        assert calibration_ratio(y_eval, repaired) == pytest.approx(1.0, abs=0.05)
        assert expected_calibration_error(y_eval, repaired) < 0.02


def test_reliability_figure_has_diagonal_and_one_line_per_model(calibrated) -> None:
    from matplotlib.figure import Figure

    from mlsd_lib.evaluation.plots import reliability_figure

    y, p = calibrated
    diagrams = {
        "calibrated": reliability_diagram(y, p),
        "distorted": reliability_diagram(y, p**0.5),
    }
    fig = reliability_figure(diagrams)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    diagonal = ax.lines[0]
    np.testing.assert_allclose(diagonal.get_xdata(), diagonal.get_ydata())
    assert len(ax.containers) == 2  # one errorbar container per model
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "perfectly calibrated" and labels[1].startswith("calibrated")


def test_quantile_bins_survive_constant_predictions():
    from mlsd_lib.evaluation import reliability_diagram

    diagram = reliability_diagram([0, 1, 0, 0], [0.3] * 4, strategy="quantile")
    assert diagram.count.sum() == 4
    assert diagram.mean_predicted.tolist() == [0.3]
