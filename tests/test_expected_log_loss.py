"""Log loss against the true probabilities: expected, in excess of the truth's, and NE.

The canary rule (``notebooks/failure_drills.ipynb``), the retraining replay
(``notebooks/monitoring.ipynb``) and the staleness cost of precomputed scores
(``casestudies/ad_click/05_serving_and_ab_test.ipynb``) all score predictions
against a world's true click probabilities with these functions.
"""

import numpy as np
import pytest

from mlsd_lib.evaluation.expected_entropy import (
    excess_log_loss,
    expected_log_loss,
    expected_normalized_entropy,
)
from mlsd_lib.evaluation.metrics import MetricInputError


def test_expected_log_loss_is_the_log_loss_of_many_labels():
    rng = np.random.default_rng(0)
    q = rng.uniform(0.01, 0.3, 200)
    p = np.clip(q + rng.normal(0, 0.05, 200), 0.01, 0.99)
    labels = rng.random((2000, 200)) < q
    sampled = -np.mean(np.where(labels, np.log(p), np.log(1 - p)))
    assert expected_log_loss(q, p) == pytest.approx(sampled, rel=0.01)
    # the truth itself is the best prediction
    assert expected_log_loss(q, q) < expected_log_loss(q, p)
    assert excess_log_loss(q, q) == pytest.approx(0.0, abs=1e-12)
    assert excess_log_loss(q, p) == pytest.approx(
        expected_log_loss(q, p) - expected_log_loss(q, q)
    )
    with pytest.raises(MetricInputError, match="of one length"):
        expected_log_loss(q, p[:3])


def test_excess_log_loss_is_zero_for_the_truth_and_positive_otherwise():
    p = np.array([0.1, 0.5, 0.02])
    assert excess_log_loss(p, p) == pytest.approx(0.0, abs=1e-15)
    assert excess_log_loss(p, p * 1.5) > 0
    with pytest.raises(MetricInputError, match="of one length"):
        excess_log_loss(p, p[:2])


def test_excess_is_expected_log_loss_minus_the_truths_own():
    rng = np.random.default_rng(1)
    t = rng.uniform(0.001, 0.5, 500)
    p = rng.uniform(0.001, 0.5, 500)
    assert excess_log_loss(t, p) == pytest.approx(
        expected_log_loss(t, p) - expected_log_loss(t, t), rel=1e-9
    )
    entropy_of_mean = -(
        t.mean() * np.log(t.mean()) + (1 - t.mean()) * np.log1p(-t.mean())
    )
    assert expected_normalized_entropy(t, p) == pytest.approx(
        expected_log_loss(t, p) / entropy_of_mean
    )
