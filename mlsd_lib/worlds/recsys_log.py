"""The impression log the recsys world writes: one row per item shown in a feed.

Introduced in ``casestudies/recommender/index.md`` (the synthetic world). The
requirements ask to "log every impression with position, scores, candidate
source and model version"; this is that log, as columnar numpy arrays (a week
of the ``small`` world is millions of rows and every consumer wants whole
columns), with a pandas view (:meth:`RecsysLog.to_frame`), parquet files
(:meth:`RecsysLog.write_parquet`) and the models' input shape
(:meth:`RecsysLog.to_interactions`).

What a row holds: which request, user, item and slot; when; which candidate
source and which policy version produced it, and the policy's probability of
putting that item in that slot (the *propensity*, NaN when the policy did not
say), which off-policy estimators need; and what happened: a click, an
engaged play (at least 30 s) and the minutes watched (0 when not played).
``true_engaged_p`` is the world's ground truth for that impression (position
included), which no real log has: it is here so that a chapter can compare a
model with the best possible one on the very same rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError

__all__ = ["SOURCES", "RecsysLog", "RecsysLogError", "source_code"]

#: Candidate sources, by code (the ``source`` column). A policy may use other
#: small codes of its own; these are the ones the book's policies use.
SOURCES: tuple[str, ...] = (
    "unknown",
    "random",
    "popular",
    "personalized",
    "explore",
    "oracle",
    "retrieval",
    "continue_watching",
    "trending",
)

#: Parquet schema metadata key holding the log's sizes and policy names.
_META_KEY = b"mlsd_recsys_log"


class RecsysLogError(MlsdError, ValueError):
    """The columns do not form a valid log, or logs cannot be joined; says why."""


def source_code(name: str) -> int:
    """The code of a candidate source named in :data:`SOURCES`."""
    try:
        return SOURCES.index(name)
    except ValueError:
        raise RecsysLogError(
            f"unknown candidate source {name!r}; known sources: {SOURCES}."
        ) from None


@dataclass(frozen=True)
class RecsysLog:
    """Equal-length columns in time order, plus the sizes and policy names.

    ``policy`` is a code into ``policies`` (the version strings of the policies
    that served the feeds); ``n_users``/``n_items`` are the world's table sizes,
    carried so :meth:`to_interactions` sizes the embedding tables right.
    """

    request_id: np.ndarray  # int64, one per feed
    user: np.ndarray  # int64
    item: np.ndarray  # int64
    position: np.ndarray  # int16, slot 0 = top
    time: np.ndarray  # float64 seconds since day 0 started, non-decreasing
    source: np.ndarray  # int8, code into SOURCES
    propensity: np.ndarray  # float64, NaN when unknown
    policy: np.ndarray  # int16, code into `policies`
    clicked: np.ndarray  # bool
    engaged: np.ndarray  # bool: clicked and watched >= 30 s
    minutes: np.ndarray  # float32 minutes watched, 0 when not clicked
    true_engaged_p: np.ndarray  # float32, the world's truth for this row
    policies: tuple[str, ...] = ()
    n_users: int = 0
    n_items: int = 0

    def __post_init__(self) -> None:
        n = len(self.request_id)
        for name in self.column_names():
            if len(getattr(self, name)) != n:
                raise RecsysLogError(
                    f"column {name!r} has {len(getattr(self, name))} rows but "
                    f"request_id has {n}: every column needs one value per "
                    "impression."
                )
        if n and int(self.policy.max()) >= len(self.policies):
            raise RecsysLogError(
                f"policy codes go up to {int(self.policy.max())} but only "
                f"{len(self.policies)} policy names are given: pass policies=."
            )

    @classmethod
    def column_names(cls) -> tuple[str, ...]:
        """The array columns, in order."""
        return tuple(f.name for f in fields(cls) if f.name not in _SCALARS)

    @classmethod
    def empty(cls, n_users: int, n_items: int) -> RecsysLog:
        """A log with no rows (what a day without sessions produces)."""
        return cls(
            **{name: np.empty(0, dtype=dtype) for name, dtype in _DTYPES.items()},
            n_users=n_users,
            n_items=n_items,
        )

    def __len__(self) -> int:
        return len(self.request_id)

    # -- summaries --------------------------------------------------------------

    @property
    def click_rate(self) -> float:
        """Clicks per impression."""
        return float(self.clicked.mean()) if len(self) else float("nan")

    @property
    def engaged_rate(self) -> float:
        """Engaged plays per impression."""
        return float(self.engaged.mean()) if len(self) else float("nan")

    @property
    def n_requests(self) -> int:
        """Feeds served."""
        return int(np.unique(self.request_id).size)

    # -- reshaping ----------------------------------------------------------------

    def subset(self, index: np.ndarray | slice) -> RecsysLog:
        """The rows at ``index`` (boolean mask, sorted positions or a slice)."""
        return RecsysLog(
            **{name: getattr(self, name)[index] for name in self.column_names()},
            policies=self.policies,
            n_users=self.n_users,
            n_items=self.n_items,
        )

    @classmethod
    def concat(cls, logs: Sequence[RecsysLog]) -> RecsysLog:
        """Logs one after another (consecutive simulations), as one log.

        Policy names are merged (codes are renumbered); table sizes are the
        largest of the parts, so a log from before a catalogue launch joins one
        from after it. The parts must already be in time order one after another.
        """
        if not logs:
            raise RecsysLogError("concat needs at least one log.")
        names: list[str] = []
        for log in logs:
            names.extend(p for p in log.policies if p not in names)
        remapped = []
        for log in logs:
            table = np.array([names.index(p) for p in log.policies], dtype=np.int16)
            remapped.append(table[log.policy] if len(log) else log.policy)
        columns = {
            name: np.concatenate([getattr(log, name) for log in logs])
            for name in cls.column_names()
        }
        columns["policy"] = np.concatenate(remapped).astype(np.int16)
        if len(columns["time"]) > 1 and np.any(np.diff(columns["time"]) < 0):
            raise RecsysLogError(
                "concat got logs out of time order: pass them oldest first "
                "(each simulate() call continues where the last one ended)."
            )
        return cls(
            **columns,
            policies=tuple(names),
            n_users=max(log.n_users for log in logs),
            n_items=max(log.n_items for log in logs),
        )

    def to_interactions(self) -> Interactions:
        """One event per impression: the input of every recommender model.

        ``engaged`` is the label; ``minutes`` is what was watched (0 for an
        impression that was not played, under 0.5 for a play that was not
        engaged); ``position`` is the feed slot.
        """
        return Interactions.from_arrays(
            self.user,
            self.item,
            self.time,
            self.engaged,
            minutes=self.minutes,
            position=self.position,
            n_users=self.n_users,
            n_items=self.n_items,
        )

    def to_frame(self) -> pd.DataFrame:
        """The log as a DataFrame; ``policy`` and ``source`` as readable names."""
        frame = pd.DataFrame(
            {name: getattr(self, name) for name in self.column_names()}
        )
        frame["policy"] = pd.Categorical.from_codes(
            self.policy.astype(np.int64), categories=list(self.policies) or ["?"]
        )
        known = self.source.astype(np.int64)
        names = [
            SOURCES[c] if 0 <= c < len(SOURCES) else f"source_{c}"
            for c in range(max(len(SOURCES), int(known.max()) + 1 if len(known) else 0))
        ]
        frame["source"] = pd.Categorical.from_codes(known, categories=names)
        return frame

    # -- files --------------------------------------------------------------------

    def write_parquet(self, path: str | Path) -> Path:
        """Write the columns (codes as stored) and the sizes to one parquet file."""
        path = Path(path)
        table = pa.table({name: getattr(self, name) for name in self.column_names()})
        meta = {
            "policies": list(self.policies),
            "n_users": self.n_users,
            "n_items": self.n_items,
        }
        table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
        pq.write_table(table, path)
        return path

    @classmethod
    def read_parquet(cls, path: str | Path) -> RecsysLog:
        """Read a file written by :meth:`write_parquet`."""
        table = pq.read_table(path)
        raw = (table.schema.metadata or {}).get(_META_KEY)
        if raw is None:
            raise RecsysLogError(
                f"{path} has no recsys log metadata: it was not written by "
                "RecsysLog.write_parquet (read it with pandas instead)."
            )
        meta = json.loads(raw)
        return cls(
            **{
                name: table.column(name).to_numpy().astype(dtype, copy=False)
                for name, dtype in _DTYPES.items()
            },
            policies=tuple(meta["policies"]),
            n_users=int(meta["n_users"]),
            n_items=int(meta["n_items"]),
        )


_SCALARS = ("policies", "n_users", "n_items")
_DTYPES: dict[str, type] = {
    "request_id": np.int64,
    "user": np.int64,
    "item": np.int64,
    "position": np.int16,
    "time": np.float64,
    "source": np.int8,
    "propensity": np.float64,
    "policy": np.int16,
    "clicked": np.bool_,
    "engaged": np.bool_,
    "minutes": np.float32,
    "true_engaged_p": np.float32,
}
