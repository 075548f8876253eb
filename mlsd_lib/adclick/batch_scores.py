"""Ad-click scores computed ahead of time: the nightly job and what its staleness costs.

Introduced in ``casestudies/ad_click/05_serving_and_ab_test.ipynb`` (batch against
online inference). The served model reads the feature store's values and the
request's context (hour, device); a batch job that scores (user, ad) pairs
before the requests come knows neither the request's features nor its context:

* the **features** are those of the job's run (the 7-day counters of the 01:00
  publish, the 1-hour counters as they were then), not those of the request;
* the **context** must be assumed: this job scores each user at their own
  usual device and one hour (``hour``), since one score per pair per hour and
  device would multiply the job and the store by 72.

:func:`batch_score_users` is the job: user-keyed values are joined once per
user and ad-keyed values once per ad at ``as_of``, then every pair is scored in
chunks (a user block times the whole catalogue). :func:`serving_matrix` builds
the model's input for any (user, ad, hour, device) rows with the store's values
as of any time, so one function gives the online design (values at each
request's time, the request's context) and every batch design (values at the
job's time, the assumed context): the chapter scores one day's impressions
under each and compares them with the world's truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from mlsd_lib.adclick.features import SERVING_STORE_REFS, feature_registry
from mlsd_lib.adclick.serving import SERVING_INPUTS
from mlsd_lib.errors import MlsdError
from mlsd_lib.features.offline import point_in_time_join
from mlsd_lib.features.views import TIMESTAMP_COLUMN, FeatureRef

__all__ = [
    "BatchScoreInputError",
    "batch_score_users",
    "score_matrix",
    "serving_matrix",
]

_CONTEXT = len(SERVING_STORE_REFS)  # hour, device, slot follow the store's values


class BatchScoreInputError(MlsdError, ValueError):
    """Rows or times that cannot be scored; says what to pass instead."""


def _entity_refs(entity: str) -> tuple[list[str], list[int]]:
    registry = feature_registry()
    refs, columns = [], []
    for column, ref in enumerate(SERVING_STORE_REFS):
        view, _ = registry.resolve([FeatureRef.parse(ref)])[0]
        if view.entities[0] == entity:
            refs.append(ref)
            columns.append(column)
    return refs, columns


def serving_matrix(
    tables: dict[str, pd.DataFrame],
    user_id: np.ndarray,
    ad_id: np.ndarray,
    hour: np.ndarray,
    device: np.ndarray,
    at: pd.Timestamp | pd.Series,
) -> np.ndarray:
    """The served model's input for (user, ad, hour, device) rows, slot 0, with the
    store's values as of ``at`` (one time for all rows, or one per row)."""
    n = len(user_id)
    if not (len(ad_id) == len(hour) == len(device) == n):
        raise BatchScoreInputError(
            f"user_id, ad_id, hour and device must have one length, got {n}, "
            f"{len(ad_id)}, {len(hour)} and {len(device)}."
        )
    labels = pd.DataFrame(
        {
            "user_id": np.asarray(user_id, dtype=np.int64),
            "ad_id": np.asarray(ad_id, dtype=np.int64),
            TIMESTAMP_COLUMN: at if isinstance(at, pd.Timestamp) else at.to_numpy(),
        }
    )
    store = point_in_time_join(
        labels, SERVING_STORE_REFS, feature_registry(), tables
    ).matrix()
    matrix = np.empty((n, len(SERVING_INPUTS)), dtype=np.float32)
    matrix[:, :_CONTEXT] = store
    matrix[:, _CONTEXT] = hour
    matrix[:, _CONTEXT + 1] = device
    matrix[:, _CONTEXT + 2] = 0.0  # scored for slot 0, as the gateway does
    return matrix


def score_matrix(
    model: torch.nn.Module, matrix: np.ndarray, chunk_size: int = 100_000
) -> np.ndarray:
    """``model`` (an :class:`~mlsd_lib.adclick.serving.AdsScoringModel` or its
    export) over the rows of ``matrix``, a chunk at a time."""
    out = np.empty(len(matrix), dtype=np.float64)
    with torch.inference_mode():
        for start in range(0, len(matrix), chunk_size):
            rows = torch.from_numpy(
                np.ascontiguousarray(matrix[start : start + chunk_size])
            )
            out[start : start + chunk_size] = model(rows).numpy()
    return out


def batch_score_users(
    model: torch.nn.Module,
    tables: dict[str, pd.DataFrame],
    users: np.ndarray,
    device: np.ndarray,
    num_ads: int,
    as_of: pd.Timestamp,
    *,
    hour: int = 20,
    users_per_chunk: int = 50,
) -> np.ndarray:
    """The nightly job: scores ``[len(users), num_ads]`` of every ad for each
    user, at the user's ``device`` and ``hour``, with the store as of ``as_of``."""
    users = np.asarray(users, dtype=np.int64)
    device = np.asarray(device)
    if users.size == 0:
        raise BatchScoreInputError(
            "users must hold at least one user id (got none): pass the ids the "
            "nightly job scores."
        )
    if device.shape != users.shape:
        raise BatchScoreInputError(
            f"device needs one value per user ({users.size}), got shape "
            f"{device.shape}: pass each user's usual device."
        )
    if not 0 <= hour <= 23:
        raise BatchScoreInputError(f"hour must be in 0-23, got {hour}.")
    user_refs, user_cols = _entity_refs("user_id")
    ad_refs, ad_cols = _entity_refs("ad_id")
    registry = feature_registry()
    ads = np.arange(num_ads, dtype=np.int64)
    user_values = point_in_time_join(
        pd.DataFrame({"user_id": users, TIMESTAMP_COLUMN: as_of}),
        user_refs,
        registry,
        tables,
    ).matrix()
    ad_values = point_in_time_join(
        pd.DataFrame({"ad_id": ads, TIMESTAMP_COLUMN: as_of}), ad_refs, registry, tables
    ).matrix()
    scores = np.empty((users.size, num_ads), dtype=np.float32)
    for start in range(0, users.size, users_per_chunk):
        block = slice(start, start + users_per_chunk)
        u = len(users[block])
        matrix = np.empty((u * num_ads, len(SERVING_INPUTS)), dtype=np.float32)
        matrix[:, user_cols] = np.repeat(user_values[block], num_ads, axis=0)
        matrix[:, ad_cols] = np.tile(ad_values, (u, 1))
        matrix[:, _CONTEXT] = hour
        matrix[:, _CONTEXT + 1] = np.repeat(device[block], num_ads)
        matrix[:, _CONTEXT + 2] = 0.0
        scores[block] = score_matrix(model, matrix).reshape(u, num_ads)
    return scores
