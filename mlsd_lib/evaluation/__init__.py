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
* :mod:`~mlsd_lib.evaluation.ab_continuous`: Welch and paired t-tests on a per-user
  metric, sample size and power for split and paired designs.
* :mod:`~mlsd_lib.evaluation.off_policy`: IPS, SNIPS and clipped IPS with clustered
  standard errors and effective sample size.
* :mod:`~mlsd_lib.evaluation.ranking`: recall@k, precision@k, hit rate, MRR and
  NDCG@k over ranked lists; catalogue coverage, top-1% share and Gini of exposure.
* :mod:`~mlsd_lib.evaluation.item_slices`: recall sliced by a label per item
  (short head against tail, new against catalogue).
* :mod:`~mlsd_lib.evaluation.exposure`: exposure of impressions over the available
  catalogue (top-1% share, Gini, coverage), new-title share, launch reach.
* :mod:`~mlsd_lib.evaluation.plots`: matplotlib figures for the above.
* :mod:`~mlsd_lib.evaluation.image_retrieval`: recall@K by product identity (image- and
  product-level, exact search), exact top-K and graded NDCG.
* :mod:`~mlsd_lib.evaluation.retrieval_attribution`: each miss attributed to the
  embedder, the index or a later stage.
* :mod:`~mlsd_lib.evaluation.dedup`: the near-duplicate threshold for a stated
  precision, and its precision-recall curve.
* :mod:`~mlsd_lib.evaluation.image_grids`: image grids for retrieval: queries beside
  their results, framed green when correct and red when not.
* :mod:`~mlsd_lib.evaluation.ratio_metrics`: ratio metrics (clicks per query) by
  linearization, on the Welch and paired tests.
* :mod:`~mlsd_lib.evaluation.ab_simulation`: many A/A and A/B tests simulated at once
  (false-positive rate, power, user- vs impression-level).
* :mod:`~mlsd_lib.evaluation.sequential`: O'Brien-Fleming boundaries and mSPRT
  always-valid p-values.
* :mod:`~mlsd_lib.evaluation.sample_ratio`: the sample-ratio-mismatch chi-square check.
* :mod:`~mlsd_lib.evaluation.experiment_duration`: days an A/B test must run from
  traffic, MDE and design effect.
* :mod:`~mlsd_lib.evaluation.expected_entropy`: NE against the true probabilities (no
  label noise).
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
from mlsd_lib.evaluation.ranking import (
    RankingInputError,
    RelevantItems,
    catalogue_coverage,
    gini,
    hit_rate_at_k,
    mean_reciprocal_rank,
    ndcg_at_k,
    precision_at_k,
    rank_top_k,
    recall_at_k,
    relevant_items,
    top_share,
)

__all__ = [
    "ABTestInputError",
    "ABTestResult",
    "IsotonicCalibrator",
    "MetricInputError",
    "PlattScaler",
    "RankingInputError",
    "RelevantItems",
    "ReliabilityDiagram",
    "binary_entropy",
    "calibration_ratio",
    "catalogue_coverage",
    "expected_calibration_error",
    "fit_isotonic",
    "fit_platt",
    "gini",
    "hit_rate_at_k",
    "log_loss",
    "mean_reciprocal_rank",
    "minimum_detectable_effect",
    "ndcg_at_k",
    "normalized_entropy",
    "power_of_test",
    "precision_at_k",
    "rank_top_k",
    "ratio_metric_test",
    "recall_at_k",
    "relevant_items",
    "reliability_diagram",
    "roc_auc",
    "sample_size_per_arm",
    "top_share",
    "two_proportion_test",
    "wilson_interval",
]
