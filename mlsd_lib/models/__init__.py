"""The book's models (CTR, retrieval, ranking) and the one training loop they share.

Introduced in ``casestudies/ad_click/03_models.ipynb``; the recommender's models
in ``casestudies/recommender/index.md``. Every model trains through
:func:`~mlsd_lib.models.training.fit` over a
:class:`~mlsd_lib.models.training.TrainingConfig`.

Click-through rate (the ad-click case study). Every torch model consumes a
:class:`~mlsd_lib.datasets.ctr.CTRData` through ``forward(dense, categorical)``
and returns logits; :class:`~mlsd_lib.models.ctr.ProbabilityHead` wraps one for
serving.

* :mod:`~mlsd_lib.models.ctr`: field embeddings, dense scaling, the probability
  head and the input checks the CTR models share.
* :mod:`~mlsd_lib.models.logistic`:
  :class:`~mlsd_lib.models.logistic.HashedLogisticRegression`, the baseline (one
  weight per hashed id).
* :mod:`~mlsd_lib.models.gbdt_lr`: :class:`~mlsd_lib.models.gbdt_lr.GBDTPlusLR`,
  LightGBM leaves as LR features (He et al. 2014).
* :mod:`~mlsd_lib.models.fm`: :class:`~mlsd_lib.models.fm.DeepFM`, factorization
  machine + MLP (Rendle 2010; Guo et al. 2017).
* :mod:`~mlsd_lib.models.dcn`: :class:`~mlsd_lib.models.dcn.DCNv2`, cross
  network V2 + MLP (Wang et al. 2021).
* :mod:`~mlsd_lib.models.training`: the loop, in named steps
  (:func:`~mlsd_lib.models.training.fit_epoch`,
  :class:`~mlsd_lib.models.training.EarlyStopping`,
  :func:`~mlsd_lib.models.training.fit`); the CTR models' thin call of it,
  :func:`~mlsd_lib.models.training.train` (validation by
  :func:`~mlsd_lib.models.training.evaluate`), and
  :func:`~mlsd_lib.models.training.predict_proba`.
* :mod:`~mlsd_lib.models.downsampling`:
  :func:`~mlsd_lib.models.downsampling.downsample_negatives`,
  :func:`~mlsd_lib.models.downsampling.recalibrate`: train on fewer negatives and
  still serve calibrated probabilities.

Retrieval and ranking (the recommender case study), on
:class:`~mlsd_lib.datasets.interactions.Interactions`:

* :mod:`~mlsd_lib.models.two_tower_data`: one example per engaged event with the
  user's earlier engaged items (point-in-time), and catalogue feature tables.
* :mod:`~mlsd_lib.models.towers`: the user and item towers and the item-id table
  they share (new items embedded from content, new users from context).
* :mod:`~mlsd_lib.models.sampled_softmax`: in-batch softmax with logQ
  correction, mixed negatives and masked duplicates.
* :mod:`~mlsd_lib.models.item_frequency`: the streaming item-frequency estimate
  behind logQ (Yi et al. 2019).
* :mod:`~mlsd_lib.models.two_tower`: :class:`~mlsd_lib.models.two_tower.TwoTower`,
  its training, catalogue and user embedding, exact top-k and recall.
* :mod:`~mlsd_lib.models.ranker`:
  :class:`~mlsd_lib.models.ranker.TwoHeadRanker`, P(engaged play) and
  E[minutes | engaged play] with position debiasing.
* :mod:`~mlsd_lib.models.baselines`: most-popular and implicit-ALS matrix
  factorization, the baselines retrieval must beat.
* :mod:`~mlsd_lib.models.image_baselines`: raw-pixel and colour-histogram vectors, the
  baselines an image embedder must beat.
* :mod:`~mlsd_lib.models.compute_cost`: a model's counted multiply-adds and measured
  throughput, for capacity plans.
* :mod:`~mlsd_lib.models.image_embedder`:
  :class:`~mlsd_lib.models.image_embedder.ImageEmbedder`, a small CNN mapping an image
  to a unit vector, and :func:`~mlsd_lib.models.image_embedder.embed_images`.
* :mod:`~mlsd_lib.models.image_augment`: batched augmentations that turn a catalogue
  shot into a user-like photo.
* :mod:`~mlsd_lib.models.pk_sampler`: batches of P products x K images.
* :mod:`~mlsd_lib.models.metric_losses`: metric-learning losses by name, from
  ``pytorch-metric-learning``.
* :mod:`~mlsd_lib.models.multi_similarity`: the multi-similarity loss and its miner
  written out in plain torch, to teach them.
* :mod:`~mlsd_lib.models.embedder_training`:
  :func:`~mlsd_lib.models.embedder_training.train_embedder`, supervised or
  self-supervised, from one frozen config.
* :mod:`~mlsd_lib.models.loss_comparison`:
  :func:`~mlsd_lib.models.loss_comparison.compare_losses`, several metric-learning
  losses trained on identical P x K batches, only the loss changing.
* :mod:`~mlsd_lib.models.position_debiased_clicks`: a LightGBM click model with the
  logged position as a feature, scored at one slot.
* :mod:`~mlsd_lib.models.embedder_protocol`:
  :func:`~mlsd_lib.models.embedder_protocol.train_and_evaluate`, train on one image
  set's products and measure recall@K on another's (the SOP protocol).
* :mod:`~mlsd_lib.models.cell_rate`: :class:`~mlsd_lib.models.cell_rate.CellRateModel`,
  the smoothed click rate per cell of a few fields.
* :mod:`~mlsd_lib.models.warm_start`: continue yesterday's model on the newest data,
  with its cost in steps.
"""

from mlsd_lib.models.baselines import MatrixFactorization, MostPopular
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
from mlsd_lib.models.item_frequency import StreamingFrequencyEstimator
from mlsd_lib.models.logistic import HashedLogisticRegression
from mlsd_lib.models.ranker import (
    RankerData,
    RankerPrediction,
    RankerScorer,
    TwoHeadRanker,
    history_group_overlap,
    predict_ranker,
    ranker_examples,
    train_ranker,
)
from mlsd_lib.models.sampled_softmax import in_batch_softmax_loss, mixture_log_q
from mlsd_lib.models.towers import ItemIdTable, ItemTower, UserTower
from mlsd_lib.models.training import (
    EarlyStopping,
    EpochRecord,
    TrainingConfig,
    TrainingResult,
    fit,
    make_optimizers,
    predict_logits,
    predict_proba,
    train,
)
from mlsd_lib.models.two_tower import (
    TwoTower,
    embed_items,
    embed_users,
    exact_recall_at_k,
    exact_top_k,
    item_tower_inputs,
    train_two_tower,
    user_tower_inputs,
)
from mlsd_lib.models.two_tower_data import (
    EntityFeatures,
    TwoTowerData,
    two_tower_examples,
)

__all__ = [
    "CTRModule",
    "CrossLayer",
    "DCNv2",
    "DeepFM",
    "DenseScaler",
    "EarlyStopping",
    "EntityFeatures",
    "EpochRecord",
    "FieldEmbedding",
    "GBDTPlusLR",
    "HashedLogisticRegression",
    "ItemIdTable",
    "ItemTower",
    "MatrixFactorization",
    "ModelInputError",
    "MostPopular",
    "ProbabilityHead",
    "RankerData",
    "RankerPrediction",
    "RankerScorer",
    "StreamingFrequencyEstimator",
    "TrainingConfig",
    "TrainingResult",
    "TwoHeadRanker",
    "TwoTower",
    "TwoTowerData",
    "UserTower",
    "downsample_negatives",
    "embed_items",
    "embed_users",
    "exact_recall_at_k",
    "exact_top_k",
    "fit",
    "fm_interaction",
    "history_group_overlap",
    "in_batch_softmax_loss",
    "item_tower_inputs",
    "make_optimizers",
    "mixture_log_q",
    "predict_logits",
    "predict_proba",
    "predict_ranker",
    "ranker_examples",
    "recalibrate",
    "train",
    "train_ranker",
    "train_two_tower",
    "two_tower_examples",
    "user_tower_inputs",
]
