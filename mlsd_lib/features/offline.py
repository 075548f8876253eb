"""The offline store and point-in-time joins: training data without leakage.

Introduced in ``notebooks/feature_store.ipynb``. An *event table* records every
change of a view's features (entity keys, ``event_timestamp``, values). A
training example at time ``t`` may only see, for each view, the latest row with
``event_timestamp <= t`` that is not older than the view's TTL. Joining on the
entity alone (the "latest value" join) leaks the future into training and
inflates offline metrics; the notebook measures by how much.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlsd_lib.features.validation import to_utc, validate_rows
from mlsd_lib.features.views import (
    TIMESTAMP_COLUMN,
    FeatureRef,
    FeatureRegistry,
    FeatureStoreError,
    FeatureView,
)


class OfflineStore:
    """Event tables as Parquet files, one folder per view and version.

    Each :meth:`write` adds one part file, written to a temporary name and renamed
    into place, so a crashed write never leaves a partial file that a later read
    would pick up.
    """

    def __init__(self, root: str | Path, registry: FeatureRegistry):
        self.root = Path(root)
        self.registry = registry

    def _folder(self, view: FeatureView) -> Path:
        return self.root / f"{view.name}@v{view.version}"

    def write(self, view_name: str, rows: pd.DataFrame) -> Path:
        """Validate ``rows`` against the view and append them as one part file."""
        view = self.registry.view(view_name)
        checked = validate_rows(view, rows)
        folder = self._folder(view)
        folder.mkdir(parents=True, exist_ok=True)
        number = len(list(folder.glob("part-*.parquet")))
        final = folder / f"part-{number:05d}-{uuid.uuid4().hex[:8]}.parquet"
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
        os.close(handle)
        try:
            checked.to_parquet(temporary, index=False)
            os.replace(temporary, final)
        finally:
            if os.path.exists(temporary):
                os.unlink(temporary)
        return final

    def read(self, view_name: str) -> pd.DataFrame:
        """All rows of a view, in write order (part files are read by name)."""
        view = self.registry.view(view_name)
        parts = sorted(self._folder(view).glob("part-*.parquet"))
        if not parts:
            raise FeatureStoreError(
                f"the offline store has no rows for view {view.name!r} "
                f"(v{view.version}) under {self.root}; write some first."
            )
        return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)


@dataclass(frozen=True)
class PointInTimeResult:
    """Label rows with their features as they were known at each row's time."""

    frame: pd.DataFrame
    """The label rows, in their original order, plus one float32 column per feature
    reference (named ``"view:feature"``) with defaults filled in."""
    missing: np.ndarray
    """bool [rows, features]: no value within the TTL at or before the row's time."""
    feature_names: list[str]

    def matrix(self) -> np.ndarray:
        """The features as the model's dense float32 input, in reference order."""
        return self.frame[self.feature_names].to_numpy(dtype=np.float32)


def check_join_inputs(
    labels: pd.DataFrame,
    views: Sequence[FeatureView],
    tables: Mapping[str, pd.DataFrame],
    timestamp_column: str,
) -> None:
    """Refuse a join whose inputs cannot answer it, before any work: the labels'
    timestamp column, an event table per view, and each view's entity columns.
    Shared by :func:`point_in_time_join` and its Dask twin
    (:mod:`mlsd_lib.batch.partitioned_join`), so both say the same thing."""
    if timestamp_column not in labels.columns:
        raise FeatureStoreError(
            f"labels lack the timestamp column {timestamp_column!r}."
        )
    for view in {v.name: v for v in views}.values():
        if view.name not in tables:
            raise FeatureStoreError(
                f"no event table given for view {view.name!r} "
                f"(given: {sorted(tables)})."
            )
        absent = [e for e in view.entities if e not in labels.columns]
        if absent:
            raise FeatureStoreError(
                f"labels lack entity columns {absent} needed by view {view.name!r}."
            )


def point_in_time_join(
    labels: pd.DataFrame,
    refs: Sequence[str | FeatureRef],
    registry: FeatureRegistry,
    tables: Mapping[str, pd.DataFrame],
    *,
    timestamp_column: str = TIMESTAMP_COLUMN,
) -> PointInTimeResult:
    """Attach to every label row the latest value of each feature known at its time.

    For each view: the row with the same entity keys, ``event_timestamp <= t`` and
    ``t - event_timestamp <= ttl``; among rows with equal timestamps, the one
    written last wins (the same rule the online store applies). ``tables`` maps
    view names to event tables (e.g. ``OfflineStore.read``).
    """
    resolved = registry.resolve(refs)
    names = [str(FeatureRef.parse(r) if isinstance(r, str) else r) for r in refs]
    check_join_inputs(labels, [v for v, _ in resolved], tables, timestamp_column)
    left = labels.reset_index(drop=True).copy()
    left["__row"] = np.arange(len(left))
    left["__t"] = to_utc(left[timestamp_column], f"labels[{timestamp_column!r}]")
    left = left.sort_values("__t", kind="stable")

    values = np.empty((len(labels), len(names)), dtype=np.float32)
    missing = np.zeros((len(labels), len(names)), dtype=bool)
    for view in {v.name: v for v, _ in resolved}.values():
        right = validate_rows(view, tables[view.name])
        right = right.rename(columns={TIMESTAMP_COLUMN: "__ts"})
        right = right.rename(columns={f: f"__f:{f}" for f in view.feature_names})
        right["__found"] = True
        right = right.sort_values("__ts", kind="stable")
        joined = pd.merge_asof(
            left[["__row", "__t", *view.entities]],
            right,
            left_on="__t",
            right_on="__ts",
            by=list(view.entities),
            direction="backward",
            allow_exact_matches=True,
            tolerance=pd.Timedelta(view.ttl),
        ).sort_values("__row")
        found = joined["__found"].fillna(False).to_numpy(dtype=bool)
        for j, (ref_view, position) in enumerate(resolved):
            if ref_view.name != view.name:
                continue
            feature = view.features[position]
            column = joined[f"__f:{feature.name}"].to_numpy(dtype=np.float64)
            absent_value = ~found | np.isnan(column)
            values[:, j] = np.where(absent_value, feature.default, column)
            missing[:, j] = absent_value

    frame = labels.reset_index(drop=True).copy()
    for j, name in enumerate(names):
        frame[name] = values[:, j]
    return PointInTimeResult(frame=frame, missing=missing, feature_names=names)


def latest_join(
    labels: pd.DataFrame,
    refs: Sequence[str | FeatureRef],
    registry: FeatureRegistry,
    tables: Mapping[str, pd.DataFrame],
) -> PointInTimeResult:
    """The naive join: each entity's *latest* value, whatever the label's time.

    Kept to show what goes wrong: a label row from last Tuesday gets features
    computed from events after Tuesday, including the very click it labels. Never
    use it to build training data.
    """
    resolved = registry.resolve(refs)
    names = [str(FeatureRef.parse(r) if isinstance(r, str) else r) for r in refs]
    frame = labels.reset_index(drop=True).copy()
    missing = np.zeros((len(frame), len(names)), dtype=bool)
    for j, (view, position) in enumerate(resolved):
        feature = view.features[position]
        table = validate_rows(view, tables[view.name])
        latest = (
            table.sort_values(TIMESTAMP_COLUMN, kind="stable")
            .groupby(list(view.entities), sort=False)
            .tail(1)[[*view.entities, feature.name]]
            .rename(columns={feature.name: "__value"})
        )
        column = frame[list(view.entities)].merge(latest, how="left")["__value"]
        column = column.to_numpy(dtype=np.float64)
        missing[:, j] = np.isnan(column)
        frame[names[j]] = np.where(missing[:, j], feature.default, column).astype(
            np.float32
        )
    return PointInTimeResult(frame=frame, missing=missing, feature_names=names)
