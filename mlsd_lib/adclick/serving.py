"""The ad-click model as the gateway serves it: one float matrix in, pCTR out.

Introduced in ``casestudies/ad_click/05_serving_and_ab_test.ipynb``. The gateway
hands a model server one float32 matrix per request, ``[candidates, columns]``:
the feature store's values in the model's recorded order, then the request's
context. :class:`AdsScoringModel` is the exported graph that turns that matrix
into the CTR model's two inputs, with every preprocessing step inside it:

* the hashed ids and attributes (stored as exact small floats) become the
  categorical matrix, in :data:`~mlsd_lib.worlds.ads.CTR_CATEGORICAL` order;
* the counters go through the same
  :class:`~mlsd_lib.adclick.features.CounterTransform` that built the training
  rows;
* hour and slot become the dense context columns exactly as
  :meth:`~mlsd_lib.worlds.ads.AdsWorld.to_ctr_data` makes them;
* the output is ``sigmoid(logit + log w)``: calibrated even when training
  downsampled negatives at rate ``w``.

Candidates are scored as if shown in slot 0: the model learned position as a
feature, and ranking by p(click | slot 0) compares ads without the bias of the
slot they happened to be shown in before (the position-bias follow-up).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from mlsd_lib.adclick.features import (
    AD_PROFILE_FIELDS,
    CONTEXT_FIELDS,
    COUNTER_REFS,
    SERVING_STORE_REFS,
    USER_PROFILE_FIELDS,
    CounterTransform,
    feature_registry,
    request_frame,
)
from mlsd_lib.features.offline import point_in_time_join
from mlsd_lib.worlds.ads import CTR_CATEGORICAL, ImpressionLog

#: The request's context columns, after the store's, in the model's input.
CONTEXT_INPUTS = tuple(f"request:{name}" for name in CONTEXT_FIELDS)
#: Every input column of the served model, in order.
SERVING_INPUTS = SERVING_STORE_REFS + CONTEXT_INPUTS

_PROFILE_FIELDS = USER_PROFILE_FIELDS + AD_PROFILE_FIELDS
_SOURCE_OF = {
    **{field: i for i, field in enumerate(_PROFILE_FIELDS)},
    **{field: len(SERVING_STORE_REFS) + i for i, field in enumerate(CONTEXT_FIELDS)},
}
#: For each categorical field (in CTR order), its column in the served input.
CATEGORICAL_COLUMNS = tuple(_SOURCE_OF[field] for field in CTR_CATEGORICAL)
_COUNTERS = slice(len(_PROFILE_FIELDS), len(_PROFILE_FIELDS) + len(COUNTER_REFS))


class AdsScoringModel(nn.Module):
    """``features [n, len(SERVING_INPUTS)]`` -> calibrated ``p(click) [n]``."""

    def __init__(self, model: nn.Module, downsample_rate: float = 1.0) -> None:
        super().__init__()
        if not 0.0 < downsample_rate <= 1.0:
            raise ValueError(
                f"downsample_rate is the fraction of negatives kept, in (0, 1]; "
                f"got {downsample_rate}."
            )
        self.model = model
        self.counters = CounterTransform()
        self.log_rate = math.log(downsample_rate)
        self.register_buffer(
            "categorical_columns", torch.tensor(CATEGORICAL_COLUMNS, dtype=torch.long)
        )
        self.hour_column = _SOURCE_OF["hour"]
        self.position_column = _SOURCE_OF["position"]
        self.counter_start = _COUNTERS.start
        self.counter_stop = _COUNTERS.stop

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        categorical = features.index_select(1, self.categorical_columns).long()
        hour = features[:, self.hour_column]
        angle = hour * (2.0 * math.pi / 24.0)
        dense = torch.cat(
            [
                torch.stack(
                    [
                        torch.sin(angle),
                        torch.cos(angle),
                        features[:, self.position_column],
                    ],
                    dim=1,
                ),
                self.counters(features[:, self.counter_start : self.counter_stop]),
            ],
            dim=1,
        )
        return torch.sigmoid(self.model(dense, categorical) + self.log_rate)


def offline_serving_inputs(
    log: ImpressionLog, tables: dict[str, pd.DataFrame], rows: np.ndarray | None = None
) -> np.ndarray:
    """What the gateway would have sent for logged impressions: the store's values
    at request time (a point-in-time join) followed by the impression's context.

    Used to export with realistic sample inputs and to check the served graph
    against the training path.
    """
    rows = np.arange(len(log)) if rows is None else np.asarray(rows)
    store = point_in_time_join(
        request_frame(log).iloc[rows],
        SERVING_STORE_REFS,
        feature_registry(),
        tables,
    ).matrix()
    context = np.column_stack(
        [log.hour[rows], log.device[rows], log.position[rows]]
    ).astype(np.float32)
    return np.hstack([store, context])
