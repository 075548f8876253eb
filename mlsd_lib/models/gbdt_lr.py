"""GBDT + LR: boosted trees as a feature transform for logistic regression.

Introduced in ``casestudies/ad_click/03_models.ipynb``. He et al. 2014 ("Practical
Lessons from Predicting Clicks on Ads at Facebook") fed each example through a
gradient-boosted forest and used *which leaf it landed in*, per tree, as a
categorical feature of a logistic regression: the trees find nonlinear splits
and crosses of the dense features (a learned bucketing), the LR stays cheap to
retrain often. Here LightGBM grows the trees (on the dense columns and the
small categorical fields); the LR is
:class:`~mlsd_lib.models.logistic.HashedLogisticRegression` over the leaf
indices (plus, by default, the raw hashed ids, which trees memorize poorly),
trained by the same loop as every other model.

Not a torch module, so not exported with :mod:`mlsd_lib.serving.export`; it
predicts with :meth:`GBDTPlusLR.predict_proba`.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
import numpy as np

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.models.ctr import ModelInputError
from mlsd_lib.models.logistic import HashedLogisticRegression
from mlsd_lib.models.training import TrainingResult, predict_proba, train


@dataclass
class GBDTPlusLR:
    """LightGBM trees, leaf indices one-hot into a hashed LR (He et al. 2014).

    The trees see the dense columns and the categorical fields with at most
    ``tree_max_cardinality`` buckets (device, hour, age: fields a split can
    group sensibly); hashed id fields with many buckets go to the LR only,
    where one weight per id memorizes them.
    ``num_threads`` stays small and ``deterministic=True`` with ``seed`` makes
    the forest reproducible; ``include_ids`` adds the raw categorical fields to
    the LR next to the leaf fields.
    """

    num_trees: int = 100
    num_leaves: int = 31
    learning_rate: float = 0.1
    min_data_in_leaf: int = 100
    include_ids: bool = True
    tree_max_cardinality: int = 1000
    lr_epochs: int = 10
    lr_lr: float = 0.01
    lr_batch_size: int = 4096
    lr_weight_decay: float = 0.0
    lr_embedding_l2: float = 0.0
    patience: int = 2
    num_threads: int = 2
    seed: int = 0
    torch_num_threads: int | None = None

    def __post_init__(self) -> None:
        self.booster: lgb.Booster | None = None
        self.lr: HashedLogisticRegression | None = None
        self.training: TrainingResult | None = None
        self._schema: tuple[int, int] | None = None

    def _tree_fields(self, data: CTRData) -> list[int]:
        return [
            j
            for j, card in enumerate(data.cardinalities)
            if card <= self.tree_max_cardinality
        ]

    def _features(self, data: CTRData) -> np.ndarray:
        fields = self._tree_fields(data)
        return np.hstack([data.dense.astype(np.float64), data.categorical[:, fields]])

    def _check(self, data: CTRData) -> None:
        if self._schema is None or self.booster is None or self.lr is None:
            raise RuntimeError("GBDTPlusLR is not fitted: call fit(train_data) first.")
        got = (data.dense.shape[1], data.categorical.shape[1])
        if got != self._schema:
            raise ModelInputError(
                f"GBDTPlusLR was fitted on {self._schema[0]} dense and "
                f"{self._schema[1]} categorical columns; the data has {got[0]} and "
                f"{got[1]}."
            )

    def transform(self, data: CTRData) -> CTRData:
        """The LR's input: each tree's leaf index as a categorical field."""
        if self.booster is None:
            raise RuntimeError("GBDTPlusLR is not fitted: call fit(train_data) first.")
        leaves = self.booster.predict(self._features(data), pred_leaf=True)
        leaves = np.asarray(leaves, dtype=np.int64).reshape(len(data), -1)
        names = tuple(f"tree_{t}" for t in range(leaves.shape[1]))
        cards = (self.num_leaves,) * leaves.shape[1]
        if self.include_ids:
            leaves = np.hstack([leaves, data.categorical])
            names += data.categorical_names
            cards += data.cardinalities
        return CTRData(
            dense=data.dense,
            categorical=leaves,
            labels=data.labels,
            dense_names=data.dense_names,
            categorical_names=names,
            cardinalities=cards,
            timestamps=data.timestamps,
            true_prob=data.true_prob,
        )

    def fit(
        self,
        train_data: CTRData,
        valid_data: CTRData | None = None,
        *,
        progress: bool = False,
    ) -> GBDTPlusLR:
        """Grow the forest (early-stopped on ``valid_data``), then train the LR."""
        num_dense = train_data.dense.shape[1]
        num_cat = train_data.categorical.shape[1]
        self._schema = (num_dense, num_cat)
        params = {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "num_threads": self.num_threads,
            "deterministic": True,
            "force_row_wise": True,
            "seed": self.seed,
            "verbose": -1,
        }
        num_tree_fields = len(self._tree_fields(train_data))
        categorical = list(range(num_dense, num_dense + num_tree_fields))
        train_set = lgb.Dataset(
            self._features(train_data),
            label=train_data.labels,
            categorical_feature=categorical,
            free_raw_data=False,
        )
        valid_sets, callbacks = [], []
        if valid_data is not None:
            valid_sets = [
                lgb.Dataset(
                    self._features(valid_data),
                    label=valid_data.labels,
                    reference=train_set,
                    categorical_feature=categorical,
                )
            ]
            callbacks = [lgb.early_stopping(10, verbose=False)]
        self.booster = lgb.train(
            params,
            train_set,
            num_boost_round=self.num_trees,
            valid_sets=valid_sets,
            callbacks=callbacks,
        )
        if valid_data is not None and self.booster.best_iteration > 0:
            self.booster = self.booster.model_from_string(
                self.booster.model_to_string(num_iteration=self.booster.best_iteration)
            )
        lr_train = self.transform(train_data)
        lr_valid = None if valid_data is None else self.transform(valid_data)
        self.lr = HashedLogisticRegression.from_data(lr_train)
        self.training = train(
            self.lr,
            lr_train,
            lr_valid,
            epochs=self.lr_epochs,
            batch_size=self.lr_batch_size,
            lr=self.lr_lr,
            weight_decay=self.lr_weight_decay,
            embedding_l2=self.lr_embedding_l2,
            patience=self.patience,
            seed=self.seed,
            progress=progress,
            num_threads=self.torch_num_threads,
        )
        return self

    def predict_proba(self, data: CTRData, batch_size: int = 65536) -> np.ndarray:
        """p(click) for every row of ``data``."""
        self._check(data)
        assert self.lr is not None
        return predict_proba(
            self.lr,
            self.transform(data),
            batch_size,
            num_threads=self.torch_num_threads,
        )
