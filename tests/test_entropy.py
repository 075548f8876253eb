"""Normalized entropy (He et al. 2014): base-rate predictor is 1, better is lower."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd_lib.evaluation import MetricInputError, normalized_entropy
from mlsd_lib.evaluation.entropy import binary_entropy


def test_constant_predictor_at_base_rate_is_exactly_one() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(5000) < 0.07
    p = np.full(len(y), y.mean())
    assert normalized_entropy(y, p) == pytest.approx(1.0, abs=1e-12)


def test_informative_predictor_is_below_one() -> None:
    rng = np.random.default_rng(1)
    true_p = rng.beta(0.5, 5.0, size=20_000)
    y = rng.random(len(true_p)) < true_p
    assert normalized_entropy(y, true_p) < 0.9
    # A near-perfect predictor is far below one.
    assert normalized_entropy(y, np.where(y, 0.99, 0.01)) < 0.1


def test_hand_computed_example() -> None:
    y = [1, 0, 0, 0]
    p = [0.5, 0.2, 0.2, 0.1]
    loss = -(math.log(0.5) + 2 * math.log(0.8) + math.log(0.9)) / 4
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert normalized_entropy(y, p) == pytest.approx(loss / entropy, rel=1e-12)
    assert binary_entropy(0.25) == pytest.approx(entropy)
    assert binary_entropy(0.0) == 0.0


@pytest.mark.parametrize("label", [0, 1])
def test_single_class_is_undefined(label: int) -> None:
    with pytest.raises(MetricInputError, match="NE is undefined"):
        normalized_entropy([label] * 3, [0.2, 0.3, 0.4])


def test_scaling_predictions_raises_ne() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.01, 0.2, 10_000)
    y = rng.random(len(p)) < p
    assert normalized_entropy(y, np.clip(2 * p, 0, 1)) > normalized_entropy(y, p)


def test_gap_to_best_figure_bars_and_reference_line() -> None:
    from matplotlib.figure import Figure

    from mlsd_lib.evaluation.plots import gap_to_best_figure

    ne = {"logistic": 0.92, "gbdt": 0.88, "dcn": 0.86}
    fig = gap_to_best_figure(ne, best=0.84)
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([0.92, 0.88, 0.86])
    (line,) = ax.lines
    assert list(line.get_ydata()) == [0.84, 0.84]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(ne)
