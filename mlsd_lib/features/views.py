"""Feature views: a feature's definition, written once, read by every engine.

Introduced in ``notebooks/feature_store.ipynb``.

A :class:`FeatureView` is data, not code: its name, the entity columns that key
it, its features with dtypes and defaults, how long a value stays valid (TTL),
a version, and where its rows come from. The offline store (training data), the
online store (serving) and the stream processor all read the same object, which
is what keeps training and serving from drifting apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

import numpy as np

from mlsd_lib.errors import MlsdError

#: The dtypes a feature may have. Online, every feature is served as float32 (the
#: model's input is one dense float32 matrix); the dtype is checked when rows are
#: written, so an ``int64`` column never silently arrives as strings.
FeatureDtype = Literal["float32", "float64", "int64", "int32", "bool"]
_ALLOWED_DTYPES = frozenset(["float32", "float64", "int64", "int32", "bool"])

#: The column every event table carries: when the value became true.
TIMESTAMP_COLUMN = "event_timestamp"


class FeatureStoreError(MlsdError, ValueError):
    """Base class: every feature-store error says what is wrong and what to do."""


class UnknownView(FeatureStoreError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class UnknownFeature(FeatureStoreError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class SchemaMismatch(FeatureStoreError):
    """Rows do not match the view's declared columns or dtypes."""


@dataclass(frozen=True)
class Feature:
    """One feature: a name, a dtype, and the value served when there is none."""

    name: str
    dtype: FeatureDtype = "float32"
    default: float = 0.0
    description: str = ""

    def __post_init__(self) -> None:
        if self.dtype not in _ALLOWED_DTYPES:
            raise FeatureStoreError(
                f"feature {self.name!r} has dtype {self.dtype!r}; use one of "
                f"{sorted(_ALLOWED_DTYPES)}."
            )


@dataclass(frozen=True)
class BatchSource:
    """Rows come from an event table in the offline store (one row per change)."""

    table: str


@dataclass(frozen=True)
class StreamSource:
    """Rows come from a Redis Stream, folded into features by a stream processor."""

    stream: str


@dataclass(frozen=True)
class FeatureView:
    """A group of features about one kind of entity, stored and read together.

    ``ttl`` bounds how old a value may be and still be served: offline, a point-in-
    time join ignores rows older than ``ttl`` at the label's time; online, a value
    older than ``ttl`` at read time is served as the default and flagged stale.
    ``version`` is part of every online key, so a changed definition never reads
    values written under the old one.
    """

    name: str
    entities: tuple[str, ...]
    features: tuple[Feature, ...]
    ttl: timedelta
    version: int = 1
    source: BatchSource | StreamSource | None = None
    description: str = ""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or ":" in self.name or "|" in self.name:
            raise FeatureStoreError(
                f"view name {self.name!r} must be non-empty without ':' or '|'."
            )
        if not self.entities:
            raise FeatureStoreError(f"view {self.name!r} needs at least one entity.")
        names = [f.name for f in self.features]
        if not names:
            raise FeatureStoreError(f"view {self.name!r} has no features.")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise FeatureStoreError(
                f"view {self.name!r} repeats features {duplicates}."
            )
        clash = set(names) & (set(self.entities) | {TIMESTAMP_COLUMN})
        if clash:
            raise FeatureStoreError(
                f"view {self.name!r}: features {sorted(clash)} clash with entity or "
                f"timestamp columns."
            )
        if self.ttl <= timedelta(0):
            raise FeatureStoreError(f"view {self.name!r} needs a positive ttl.")
        if self.version < 1:
            raise FeatureStoreError(f"view {self.name!r} needs version >= 1.")
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(names)})

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> Feature:
        try:
            return self.features[self._index[name]]
        except KeyError:
            raise UnknownFeature(
                f"{name!r} is not in view {self.name!r} (known: {self.feature_names})."
            ) from None

    def position(self, name: str) -> int:
        """Where ``name`` sits in the view's packed vector."""
        self.feature(name)
        return self._index[name]

    @property
    def defaults(self) -> np.ndarray:
        return np.array([f.default for f in self.features], dtype=np.float32)

    def check_stream_keyed_by(
        self, entity_field: str, what: str, advice: str = ""
    ) -> None:
        """Raise unless a stream feeds this view and its one entity is
        ``entity_field``, the event field ``what`` (e.g. "latest values") is
        keyed by; ``advice`` ends the second message."""
        if not isinstance(self.source, StreamSource):
            raise FeatureStoreError(
                f"view {self.name!r} is not fed by a stream (source={self.source!r}); "
                "give it source=StreamSource('<stream name>')."
            )
        if self.entities != (entity_field,):
            raise FeatureStoreError(
                f"{what} keyed by {entity_field!r} cannot fill view "
                f"{self.name!r}, whose entities are {list(self.entities)}{advice}."
            )


@dataclass(frozen=True)
class FeatureRef:
    """``"view:feature"``: how a model's input schema names one feature."""

    view: str
    feature: str

    @classmethod
    def parse(cls, text: str) -> FeatureRef:
        view, sep, feature = text.partition(":")
        if not sep or not view or not feature:
            raise FeatureStoreError(
                f"feature reference {text!r} must look like 'view:feature'."
            )
        return cls(view, feature)

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


class FeatureRegistry:
    """The set of views a deployment knows, looked up by name."""

    def __init__(self, views: Iterable[FeatureView]):
        self._views: dict[str, FeatureView] = {}
        for view in views:
            if view.name in self._views:
                raise FeatureStoreError(f"view {view.name!r} is registered twice.")
            self._views[view.name] = view

    def view(self, name: str) -> FeatureView:
        try:
            return self._views[name]
        except KeyError:
            raise UnknownView(
                f"view {name!r} is not registered (known: {sorted(self._views)})."
            ) from None

    @property
    def views(self) -> list[FeatureView]:
        return list(self._views.values())

    def resolve(
        self, refs: Sequence[str | FeatureRef]
    ) -> list[tuple[FeatureView, int]]:
        """Each reference as (view, position in the view's vector), checked."""
        resolved = []
        for ref in refs:
            parsed = ref if isinstance(ref, FeatureRef) else FeatureRef.parse(ref)
            view = self.view(parsed.view)
            resolved.append((view, view.position(parsed.feature)))
        return resolved
