"""How many hash buckets per id field: collisions, memory and NE, measured.

Introduced in ``casestudies/ad_click/03_models.ipynb``. The case study hashes
its four id fields (user, ad, advertiser, campaign) into ``2^17`` buckets each.
This module re-hashes the same rows into other table sizes
(:func:`rehash_ids`, the same salts as
:meth:`~mlsd_lib.worlds.ads.AdsWorld.to_ctr_data`), counts the collisions each
size causes in the actual traffic (:func:`collision_table`, through the generic
:mod:`mlsd_lib.features.hash_collisions`), and trains one recipe at each size
(:func:`sweep_buckets`), so the three curves a capacity decision weighs
(collisions, bytes, NE against the world's Bayes NE) come from one run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd

from mlsd_lib.adclick.recipes import Budget, fit_model, intercept_shift, shifted
from mlsd_lib.datasets.ctr import CTRData, hash_ids
from mlsd_lib.features.hash_collisions import (
    BucketSweepError,
    colliding_rows,
    distinct_collisions,
    expected_colliding_share,
    hashed_table_bytes,
)
from mlsd_lib.progress import tqdm
from mlsd_lib.validation import require_int
from mlsd_lib.worlds.ads import (
    CTR_CATEGORICAL,
    HASHED_FIELDS,
    ImpressionLog,
    bayes_normalized_entropy,
    normalized_entropy,
)

#: The sweep's training budget: two epochs each, so a sweep fits in a chapter.
SWEEP_BUDGET = Budget(epochs=2, patience=1)
#: Embedding width of the case study's crossing models (DeepFM, DCN-V2).
EMBEDDING_DIM = 8


def _salt(field: str) -> int:
    return CTR_CATEGORICAL.index(field)


def rehash_ids(data: CTRData, log: ImpressionLog, num_buckets: int) -> CTRData:
    """``data`` with its hashed id columns re-hashed into ``num_buckets`` buckets.

    ``data`` must be the rows of ``log`` in order (what
    :func:`~mlsd_lib.adclick.features.training_data` returns); everything but
    the four hashed columns and their cardinalities is shared, not copied.
    """
    if len(data) != len(log) or tuple(data.categorical_names) != CTR_CATEGORICAL:
        raise BucketSweepError(
            f"data ({len(data):,} rows) must be the log's rows ({len(log):,}) with "
            "the world's categorical columns; build it with training_data(world, log)."
        )
    categorical = data.categorical.copy()
    cardinalities = list(data.cardinalities)
    for field in HASHED_FIELDS:
        j = _salt(field)
        categorical[:, j] = hash_ids(getattr(log, field), num_buckets, salt=j)
        cardinalities[j] = int(num_buckets)
    return dataclasses.replace(
        data, categorical=categorical, cardinalities=tuple(cardinalities)
    )


def _check_sizes(bucket_sizes: Sequence[int]) -> None:
    """Every size a whole number of buckets >= 1, before any work."""
    for size in bucket_sizes:
        require_int("num_buckets", size, at_least=1, error=BucketSweepError)


def collision_table(
    log: ImpressionLog,
    bucket_sizes: Sequence[int],
    fields: Sequence[str] = HASHED_FIELDS,
) -> pd.DataFrame:
    """One row per (field, buckets): measured and expected collision shares."""
    _check_sizes(bucket_sizes)
    rows = []
    for field in fields:
        distinct, counts = np.unique(getattr(log, field), return_counts=True)
        for num_buckets in bucket_sizes:
            stats = distinct_collisions(
                distinct, counts, num_buckets, salt=_salt(field)
            )
            rows.append(
                {
                    "field": field,
                    "buckets": int(num_buckets),
                    "distinct": stats.distinct_values,
                    "values colliding": stats.colliding_value_share,
                    "expected (uniform hash)": expected_colliding_share(
                        stats.distinct_values, num_buckets
                    ),
                    "impressions colliding": stats.colliding_row_share,
                }
            )
    return pd.DataFrame(rows)


def any_id_colliding(log: ImpressionLog, num_buckets: int) -> np.ndarray:
    """Per impression: does at least one of its hashed ids share its bucket?"""
    hit = np.zeros(len(log), dtype=bool)
    for field in HASHED_FIELDS:
        values = getattr(log, field)
        hit |= colliding_rows(values, hash_ids(values, num_buckets, salt=_salt(field)))
    return hit


def sweep_buckets(
    data: CTRData,
    log: ImpressionLog,
    bucket_sizes: Sequence[int],
    *,
    train_mask: np.ndarray,
    valid_mask: np.ndarray,
    test_mask: np.ndarray,
    model: str = "lr",
    budget: Budget = SWEEP_BUDGET,
    seed: int = 0,
    progress: bool = True,
) -> pd.DataFrame:
    """Train ``model`` at each table size; one row per size, indexed by buckets.

    Each row: the share of test impressions with a colliding id, the bytes of
    the hashed tables for LR (one weight per bucket) and for an embedding model
    (``EMBEDDING_DIM + 1`` floats per bucket), the model's test NE after the
    validation-day shift (as :mod:`~mlsd_lib.adclick.model_report` scores),
    the world's Bayes NE on the same rows, and the training seconds.
    """
    _check_sizes(bucket_sizes)
    if len(bucket_sizes) == 0:
        raise BucketSweepError("bucket_sizes is empty; pass sizes such as 2**8..2**17.")
    rows = {}
    for num_buckets in tqdm(
        list(bucket_sizes), desc="bucket sizes", disable=not progress
    ):
        rehashed = rehash_ids(data, log, num_buckets)
        train, valid, test = (
            rehashed.subset(np.flatnonzero(mask))
            for mask in (train_mask, valid_mask, test_mask)
        )
        fitted = fit_model(model, train, valid, budget, seed=seed)
        shift = intercept_shift(fitted.predict(valid), valid.labels)
        p = shifted(fitted.predict(test), shift)
        fields = len(HASHED_FIELDS)
        rows[int(num_buckets)] = {
            "impressions colliding": float(
                any_id_colliding(log, num_buckets)[test_mask].mean()
            ),
            "LR table MB": hashed_table_bytes(num_buckets, fields) / 1e6,
            "embedding table MB": hashed_table_bytes(
                num_buckets, fields, EMBEDDING_DIM + 1
            )
            / 1e6,
            "NE": normalized_entropy(test.labels, p),
            "Bayes NE": bayes_normalized_entropy(test.true_prob, test.labels),
            "train s": fitted.seconds,
        }
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "buckets"
    frame["NE / Bayes"] = frame["NE"] / frame["Bayes NE"]
    return frame
