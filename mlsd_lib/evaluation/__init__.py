"""Offline evaluation metrics: how good a model's scores are on labelled data.

First used in ``notebooks/feature_store.ipynb`` (the leakage demonstration), where
the same AUC computed on leaky and on point-in-time-correct features tells how much
a naive join inflates a model's offline quality.

* :mod:`~mlsd_lib.evaluation.metrics`: ROC AUC (the rank statistic) and log loss.
"""

from mlsd_lib.evaluation.metrics import MetricInputError, log_loss, roc_auc

__all__ = ["MetricInputError", "log_loss", "roc_auc"]
