"""Checking rows against a view before anything is written.

Introduced in ``notebooks/feature_store.ipynb``.

Both stores call :func:`validate_rows` first, so bad input is refused before the
first byte is written: nothing is ever half-written because of a bad column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlsd_lib.features.views import TIMESTAMP_COLUMN, FeatureView, SchemaMismatch

#: Which pandas dtype kinds each declared dtype accepts. Integers may feed a float
#: feature (exact up to 2**24 in float32); floats never feed an integer feature
#: (that would silently truncate), and strings feed nothing.
_ACCEPTED_KINDS = {
    "float32": "fiub",
    "float64": "fiub",
    "int64": "iu",
    "int32": "iu",
    "bool": "b",
}


def to_utc(timestamps: pd.Series, what: str) -> pd.Series:
    """Timestamps as timezone-aware UTC nanoseconds; naive ones are taken as UTC."""
    if not pd.api.types.is_datetime64_any_dtype(timestamps):
        raise SchemaMismatch(
            f"{what} must be datetimes (got dtype {timestamps.dtype}); convert with "
            f"pd.to_datetime(..., utc=True)."
        )
    # One unit (ns) everywhere: pandas refuses to join datetimes of mixed units.
    timestamps = timestamps.dt.as_unit("ns")
    if timestamps.dt.tz is None:
        return timestamps.dt.tz_localize("UTC")
    return timestamps.dt.tz_convert("UTC")


def epoch_seconds(timestamps: pd.Series) -> np.ndarray:
    """UTC datetimes as float64 seconds since the epoch, whatever their unit."""
    return timestamps.dt.as_unit("ns").astype("int64").to_numpy() / 1e9


def validate_rows(view: FeatureView, rows: pd.DataFrame) -> pd.DataFrame:
    """Return ``rows`` with entity, timestamp and feature columns, checked.

    Extra columns are dropped; a missing column, a dtype that does not fit, a
    missing entity value or timestamp raises
    :class:`~mlsd_lib.features.views.SchemaMismatch` naming it.
    """
    required = [*view.entities, TIMESTAMP_COLUMN, *view.feature_names]
    absent = [c for c in required if c not in rows.columns]
    if absent:
        raise SchemaMismatch(
            f"rows for view {view.name!r} lack columns {absent} "
            f"(the view needs {required})."
        )
    checked = rows[required].copy()
    for column in [*view.entities, TIMESTAMP_COLUMN]:
        if checked[column].isna().any():
            raise SchemaMismatch(
                f"column {column!r} of view {view.name!r} has missing values; every "
                f"row needs its entity keys and {TIMESTAMP_COLUMN!r}."
            )
    checked[TIMESTAMP_COLUMN] = to_utc(checked[TIMESTAMP_COLUMN], TIMESTAMP_COLUMN)
    for feature in view.features:
        column = checked[feature.name]
        if column.dtype.kind not in _ACCEPTED_KINDS[feature.dtype]:
            raise SchemaMismatch(
                f"feature {view.name}:{feature.name} is declared {feature.dtype} but "
                f"the column has dtype {column.dtype}; cast it (e.g. "
                f".astype('{feature.dtype}')) or fix the view."
            )
    return checked
