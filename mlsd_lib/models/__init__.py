"""CTR models and the one training loop that fits them.

Introduced in ``casestudies/ad_click/03_models.ipynb``. Every torch model consumes a
:class:`~mlsd_lib.datasets.ctr.CTRData` through ``forward(dense, categorical)``
and returns logits; :class:`ProbabilityHead` wraps one for serving.

* :class:`HashedLogisticRegression`: the baseline (one weight per hashed id).
* :class:`GBDTPlusLR`: LightGBM leaves as LR features (He et al. 2014).
* :class:`DeepFM`: factorization machine + MLP (Rendle 2010; Guo et al. 2017).
* :class:`DCNv2`: cross network V2 + MLP (Wang et al. 2021).
* :func:`train` over a :class:`TrainingConfig`, in named steps
  (:func:`~mlsd_lib.models.training.fit_epoch`,
  :func:`~mlsd_lib.models.training.evaluate`, :class:`EarlyStopping`), and
  :func:`predict_proba`: seeded minibatch training with early stopping;
  :func:`downsample_negatives`, :func:`recalibrate`: train on fewer negatives
  and still serve calibrated probabilities.
"""

from mlsd_lib.models.ctr import (
    CTRModule,
    DenseScaler,
    FieldEmbedding,
    ModelInputError,
    ProbabilityHead,
)
from mlsd_lib.models.dcn import CrossLayer, DCNv2
from mlsd_lib.models.downsampling import downsample_negatives, recalibrate
from mlsd_lib.models.fm import DeepFM, fm_interaction
from mlsd_lib.models.gbdt_lr import GBDTPlusLR
from mlsd_lib.models.logistic import HashedLogisticRegression
from mlsd_lib.models.training import (
    EarlyStopping,
    EpochRecord,
    TrainingConfig,
    TrainingResult,
    predict_logits,
    predict_proba,
    train,
)

__all__ = [
    "CTRModule",
    "CrossLayer",
    "DCNv2",
    "DeepFM",
    "DenseScaler",
    "EarlyStopping",
    "EpochRecord",
    "FieldEmbedding",
    "GBDTPlusLR",
    "HashedLogisticRegression",
    "ModelInputError",
    "ProbabilityHead",
    "TrainingConfig",
    "TrainingResult",
    "downsample_negatives",
    "fm_interaction",
    "predict_logits",
    "predict_proba",
    "recalibrate",
    "train",
]
