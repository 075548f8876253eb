"""The impression log the ads world writes: one row per ad shown.

Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb`` (the world and
its ground truth). A log of numpy arrays rather than a DataFrame because a day of
traffic is millions of rows and every consumer (the CTR data set, the feature store, the
A/B test) wants whole columns; :meth:`ImpressionLog.to_frame` gives the pandas view for
reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

#: Spacing of impression ids between days: day ``t``'s i-th impression has id
#: ``t * IMPRESSION_ID_STRIDE + i``, unique across separate simulate() calls.
IMPRESSION_ID_STRIDE = 1_000_000_000

#: The user attribute columns, in the order the CTR data set uses them.
USER_ATTRIBUTES: tuple[str, ...] = ("age_bucket", "gender", "country", "interest")


@dataclass(frozen=True)
class ImpressionLog:
    """Equal-length columns, sorted by ``ts`` (seconds since the world's start).

    ``true_p`` is the true p(click) including position bias; ``clicked`` (int8)
    says whether a click eventually came, and ``click_delay_s`` how many seconds
    after the impression it came (NaN when there was no click), so a reader can
    ask "which clicks had arrived by time T?".
    """

    impression_id: np.ndarray  # int64, unique
    ts: np.ndarray  # float64 seconds, sorted
    day: np.ndarray  # int64
    hour: np.ndarray  # int64, 0..23
    user_id: np.ndarray  # int64
    ad_id: np.ndarray  # int64
    campaign_id: np.ndarray  # int64
    advertiser_id: np.ndarray  # int64
    ad_category: np.ndarray  # int64
    age_bucket: np.ndarray  # int64
    gender: np.ndarray  # int64
    country: np.ndarray  # int64
    interest: np.ndarray  # int64
    device: np.ndarray  # int64, index into DEVICES
    position: np.ndarray  # int64, slot 0 = top
    true_p: np.ndarray  # float64 in (0, 1)
    clicked: np.ndarray  # int8
    click_delay_s: np.ndarray  # float64, NaN without a click

    def __post_init__(self) -> None:
        n = len(self.ts)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(
                    f"column {f.name!r} has {len(getattr(self, f.name))} rows; "
                    f"ts has {n}: every column needs one entry per impression."
                )

    @classmethod
    def column_names(cls) -> tuple[str, ...]:
        """The column names, in order."""
        return tuple(f.name for f in fields(cls))

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def ctr(self) -> float:
        """The observed click-through rate."""
        return float(self.clicked.mean()) if len(self) else float("nan")

    def to_frame(self) -> pd.DataFrame:
        """The log as a pandas DataFrame (one column per field)."""
        return pd.DataFrame({name: getattr(self, name) for name in self.column_names()})

    def subset(self, index: np.ndarray | slice) -> ImpressionLog:
        """The rows at ``index`` (boolean mask, integer positions or a slice)."""
        return ImpressionLog(
            **{name: getattr(self, name)[index] for name in self.column_names()}
        )

    @classmethod
    def concat(cls, logs: Sequence[ImpressionLog]) -> ImpressionLog:
        """Logs one after another (e.g. consecutive days), as one log."""
        if not logs:
            raise ValueError("concat needs at least one log.")
        return cls(
            **{
                name: np.concatenate([getattr(log, name) for log in logs])
                for name in cls.column_names()
            }
        )
