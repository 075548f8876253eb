"""A light click model learned from logged clicks, with the position factored out.

Introduced in ``casestudies/visual_search/07_online_evaluation.ipynb`` (the follow-up
"Where does engagement enter the ranking": "a light re-ranker ... trained on clicks with
position accounted for"). A logged click says as much about where the item was shown as
about the item: slot 0 is examined far more often than slot 9. A model fit on (features,
clicked) alone learns that whatever the old ranker put first is good, and re-ranking
with it mostly copies the old order.

The remedy here is the simplest that works with a tree model: the logged
**position is a feature** at training, and at serving every candidate is
scored **at one position** (``serving_position``, slot 0 by default). Under
the examination hypothesis (P(click) = P(examined at p) x P(click | examined,
item)), the ranking by the score at a fixed slot is the ranking by the item's
own attractiveness; the trees learn the position's effect from the many
queries whose slots hold items of every quality. The alternative, inverse
propensity weights, needs the examination probabilities (a swap experiment
measures them); it is the exercise of the chapter.

LightGBM (binary log-loss) does the fitting; ``monotone`` lets a feature be
declared non-decreasing (+1) or non-increasing (-1), e.g. "more visually
similar never scores lower", a prior the clicks alone may not respect.
Generic: features are a matrix with names, positions integers; no case study
is known here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError

__all__ = [
    "POSITION",
    "ClickModelError",
    "PositionDebiasedClickModel",
    "fit_click_model",
]

#: The name of the position column the model adds to the features.
POSITION = "position"


class ClickModelError(MlsdError, ValueError):
    """Training data or settings the click model cannot use; says what to change."""


@dataclass(frozen=True)
class PositionDebiasedClickModel:
    """A fitted model: :meth:`score` ranks candidates as if all sat in
    ``serving_position``; :meth:`importance` says what it learned from."""

    booster: lgb.Booster
    feature_names: tuple[str, ...]
    serving_position: int

    def score(self, features: ArrayLike) -> np.ndarray:
        """P(click) of each row of ``features`` ``(..., n_features)`` had it
        been shown at ``serving_position``; shape ``features.shape[:-1]``."""
        x = np.asarray(features, dtype=np.float64)
        if x.shape[-1:] != (len(self.feature_names),):
            raise ClickModelError(
                f"features have {x.shape[-1] if x.ndim else 0} columns but the model "
                f"was trained on {len(self.feature_names)}: {self.feature_names}."
            )
        flat = x.reshape(-1, x.shape[-1])
        position = np.full((flat.shape[0], 1), float(self.serving_position))
        p = self.booster.predict(np.hstack([flat, position]))
        return np.asarray(p, dtype=np.float64).reshape(x.shape[:-1])

    def importance(self) -> pd.Series:
        """Each input's share of the trees' total split gain (position
        included), largest first."""
        gain = self.booster.feature_importance(importance_type="gain")
        total = gain.sum()
        share = gain / total if total > 0 else gain
        names = [*self.feature_names, POSITION]
        return pd.Series(share, index=names, name="gain share").sort_values(
            ascending=False
        )


def fit_click_model(
    features: ArrayLike,
    positions: ArrayLike,
    clicked: ArrayLike,
    feature_names: Sequence[str],
    *,
    monotone: Mapping[str, int] | None = None,
    serving_position: int = 0,
    num_trees: int = 100,
    num_leaves: int = 15,
    learning_rate: float = 0.1,
    min_data_in_leaf: int = 100,
    seed: int = 0,
    num_threads: int = 1,
) -> PositionDebiasedClickModel:
    """Fit P(click | features, position) on logged impressions.

    ``features`` ``(n, f)`` with ``feature_names``; ``positions`` the slot
    each row was shown in (0 = first); ``clicked`` 0/1. Deterministic for a
    ``seed`` (LightGBM's deterministic mode, row-wise).
    """
    x = np.asarray(features, dtype=np.float64)
    pos = np.asarray(positions)
    y = np.asarray(clicked)
    names = tuple(feature_names)
    if x.ndim != 2 or x.shape[1] != len(names):
        raise ClickModelError(
            f"features must be (n, {len(names)}), one column per name in "
            f"feature_names, got shape {x.shape}."
        )
    if pos.shape != (len(x),) or y.shape != (len(x),):
        raise ClickModelError(
            f"positions and clicked need one entry per row ({len(x)}), got shapes "
            f"{pos.shape} and {y.shape}."
        )
    if POSITION in names:
        raise ClickModelError(
            f"{POSITION!r} is added by the model: rename that feature."
        )
    if len(x) == 0 or y.min() == y.max():
        raise ClickModelError(
            "the log needs clicked and unclicked impressions to learn from; log "
            "more queries."
        )
    if not np.issubdtype(pos.dtype, np.integer) or pos.min() < 0:
        raise ClickModelError("positions must be integer slots >= 0 (0 = first).")
    unknown = set(monotone or {}) - set(names)
    if unknown:
        raise ClickModelError(
            f"monotone names unknown features {sorted(unknown)}; known: {names}."
        )
    constraints = [int((monotone or {}).get(n, 0)) for n in names] + [0]
    if any(c not in (-1, 0, 1) for c in constraints):
        raise ClickModelError("monotone values must be -1, 0 or +1.")
    params = {
        "objective": "binary",
        "learning_rate": learning_rate,
        "num_leaves": num_leaves,
        "min_data_in_leaf": min_data_in_leaf,
        "monotone_constraints": constraints,
        "num_threads": num_threads,
        "deterministic": True,
        "force_row_wise": True,
        "seed": seed,
        "verbose": -1,
    }
    data = lgb.Dataset(
        np.hstack([x, pos[:, None].astype(np.float64)]),
        label=y.astype(np.float64),
        feature_name=[*names, POSITION],
        free_raw_data=True,
    )
    booster = lgb.train(params, data, num_boost_round=num_trees)
    return PositionDebiasedClickModel(booster, names, int(serving_position))
