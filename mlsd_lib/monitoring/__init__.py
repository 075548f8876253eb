"""Monitoring: drift statistics and the retraining trigger.

Introduced in ``casestudies/ad_click/06_monitoring_and_retraining.ipynb``.

* :mod:`~mlsd_lib.monitoring.drift`: PSI, KS, prediction and calibration drift,
  and :class:`~mlsd_lib.monitoring.drift.DriftReport` over many features.
* :mod:`~mlsd_lib.monitoring.retraining`:
  :class:`~mlsd_lib.monitoring.retraining.RetrainingTrigger`, a policy with
  hysteresis and a decision log.
* :mod:`~mlsd_lib.monitoring.alerts`: alert rules (absolute, relative or delta
  limits on a daily metric) and the alerts a day's numbers raise.
* :mod:`~mlsd_lib.monitoring.embedding_drift`: drift of embeddings against a reference
  window (mean shift in units of sampling noise, PSI on principal directions, share far
  from every centroid).
* :mod:`~mlsd_lib.monitoring.window_stats`: PSI and KS of many windows at once, and
  their no-drift distributions.
* :mod:`~mlsd_lib.monitoring.detection_tradeoff`: detection delay against false alarms
  per day; N-in-a-row alert rules.
* :mod:`~mlsd_lib.monitoring.retraining_replay`: retraining policies replayed and scored
  by excess log loss over the truth.
"""

from mlsd_lib.monitoring.drift import (
    PSI_ALERT,
    PSI_WARN,
    UNKNOWN_CATEGORY,
    CalibrationDrift,
    DriftInputError,
    DriftReport,
    KSResult,
    PredictionDrift,
    PSIBreakdown,
    calibration_drift,
    ks_statistic,
    prediction_drift,
    psi,
    psi_breakdown,
    psi_status,
)
from mlsd_lib.monitoring.retraining import RetrainDecision, RetrainingTrigger

__all__ = [
    "PSI_ALERT",
    "PSI_WARN",
    "UNKNOWN_CATEGORY",
    "CalibrationDrift",
    "DriftInputError",
    "DriftReport",
    "KSResult",
    "PSIBreakdown",
    "PredictionDrift",
    "RetrainDecision",
    "RetrainingTrigger",
    "calibration_drift",
    "ks_statistic",
    "prediction_drift",
    "psi",
    "psi_breakdown",
    "psi_status",
]
