"""Offline evaluation metrics: how good a model's scores are on labelled data.

First used in ``notebooks/feature_store.ipynb`` (the leakage demonstration), where
the same AUC computed on leaky and on point-in-time-correct features tells how much
a naive join inflates a model's offline quality.

* :mod:`~mlsd_lib.evaluation.metrics`: ROC AUC (the rank statistic) and log loss.
* :mod:`~mlsd_lib.evaluation.entropy`: normalized entropy (NE).
* :mod:`~mlsd_lib.evaluation.calibration`: reliability diagrams, ECE, the
  calibration ratio, and Platt / isotonic recalibration.
* :mod:`~mlsd_lib.evaluation.ab_test`: two-proportion tests, the delta method for
  ratio metrics, and power analysis.
* :mod:`~mlsd_lib.evaluation.plots`: matplotlib figures for the above.
"""

from mlsd_lib.evaluation.ab_test import (
    ABTestInputError,
    ABTestResult,
    minimum_detectable_effect,
    power_of_test,
    ratio_metric_test,
    sample_size_per_arm,
    two_proportion_test,
)
from mlsd_lib.evaluation.calibration import (
    IsotonicCalibrator,
    PlattScaler,
    ReliabilityDiagram,
    calibration_ratio,
    expected_calibration_error,
    fit_isotonic,
    fit_platt,
    reliability_diagram,
    wilson_interval,
)
from mlsd_lib.evaluation.entropy import binary_entropy, normalized_entropy
from mlsd_lib.evaluation.metrics import MetricInputError, log_loss, roc_auc

__all__ = [
    "ABTestInputError",
    "ABTestResult",
    "IsotonicCalibrator",
    "MetricInputError",
    "PlattScaler",
    "ReliabilityDiagram",
    "binary_entropy",
    "calibration_ratio",
    "expected_calibration_error",
    "fit_isotonic",
    "fit_platt",
    "log_loss",
    "minimum_detectable_effect",
    "normalized_entropy",
    "power_of_test",
    "ratio_metric_test",
    "reliability_diagram",
    "roc_auc",
    "sample_size_per_arm",
    "two_proportion_test",
    "wilson_interval",
]
