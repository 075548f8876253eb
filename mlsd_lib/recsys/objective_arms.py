"""Rank the same candidates by different objectives, then let the world's users decide.

Introduced in ``casestudies/recommender/09_interview_followups.ipynb`` (the follow-up
"How do you optimize for watch time rather than clicks?"). The offline comparison of
step 4 scores one fixed candidate set; this module runs the scorings as **arms**:

1. :func:`fit_objective_rankers`: the case study's ranker recipe trained once
   per label (an engaged play, a click) on **one** feature build: the
   features of an impression do not depend on its label, and computing them
   is most of a ranker's training time;
2. :func:`predict_on_features`: a trained ranker on feature rows computed
   once (:meth:`~mlsd_lib.recsys.recipes.TrainedRanker.features`), so several
   rankers with the same inputs score the candidates without rebuilding them;
3. :func:`rank_candidates`: each user's candidates ordered by a score, the
   lists a :class:`~mlsd_lib.worlds.recsys_list_policy.RankedListPolicy`
   serves in :func:`~mlsd_lib.recsys.arms.run_arms`;
4. :func:`arm_outcomes`: what each arm's users did, **per user** (clicks,
   engaged plays, engaged minutes) and how much of what they were shown and
   clicked was clickbait (a hidden item attribute only the world knows).

Per user rather than per impression: every arm serves the same sessions with
the same number of slots, so the two agree in direction, and "engaged minutes
per daily user" is the metric the index page's A/B test is judged on.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError
from mlsd_lib.models.ranker import (
    RankerData,
    RankerPrediction,
    TwoHeadRanker,
    predict_ranker,
    train_ranker,
)
from mlsd_lib.models.two_tower import TwoTower
from mlsd_lib.models.two_tower_data import EntityFeatures
from mlsd_lib.recsys.features import ModelInputs
from mlsd_lib.recsys.recipes import RANKER, RankerRecipe, TrainedRanker, ranker_data
from mlsd_lib.worlds.recsys_log import RecsysLog

__all__ = [
    "ObjectiveArmsError",
    "arm_outcomes",
    "fit_objective_rankers",
    "predict_on_features",
    "rank_candidates",
]


class ObjectiveArmsError(MlsdError, ValueError):
    """Scores, lists or logs that do not fit together; the message says how."""


def fit_objective_rankers(
    train: RecsysLog,
    valid: RecsysLog | None,
    log: Interactions,
    inputs: ModelInputs,
    recipe: RankerRecipe = RANKER,
    *,
    labels: Sequence[str] = ("engaged", "clicked"),
    two_tower: TwoTower | None = None,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = False,
) -> dict[str, TrainedRanker]:
    """One ranker per label of ``labels`` (columns of the log: ``"engaged"``,
    ``"clicked"``), all on the same feature rows.

    Each is :func:`~mlsd_lib.recsys.recipes.fit_ranker` with its play head
    trained on that label (a ``"clicked"`` ranker's ``p_play`` is P(click));
    the minutes head keeps the log's minutes of the positive rows. The
    recipe's ``max_rows`` keeps the latest training impressions, as
    ``fit_ranker`` does; the validation rows are all kept.
    """
    unknown = [name for name in labels if name not in ("engaged", "clicked")]
    if unknown or not labels:
        raise ObjectiveArmsError(
            f"labels must name log columns 'engaged' or 'clicked', got {list(labels)}."
        )
    if recipe.use_two_tower_score and two_tower is None:
        raise ObjectiveArmsError(
            "this ranker recipe reads the two-tower score: pass two_tower=, or use "
            "replace(recipe, use_two_tower_score=False)."
        )
    if recipe.max_rows is not None and len(train) > recipe.max_rows:
        train = train.subset(slice(len(train) - recipe.max_rows, None))
    plain = replace(recipe, max_rows=None)
    tower = two_tower if recipe.use_two_tower_score else None
    train_rows = ranker_data(train.to_interactions(), log, inputs, plain, tower)
    valid_rows = (
        None
        if valid is None or len(valid) == 0
        else ranker_data(valid.to_interactions(), log, inputs, plain, tower)
    )
    config = replace(
        recipe.training,
        seed=seed,
        progress=progress,
        epochs=recipe.training.epochs if epochs is None else epochs,
    )
    rankers = {}
    for name in labels:
        start = time.perf_counter()
        rows = _relabel(train_rows, train, name)
        checks = None if valid_rows is None else _relabel(valid_rows, valid, name)
        model = TwoHeadRanker.from_data(
            rows, seed=seed, hidden=recipe.hidden, embedding_dim=recipe.embedding_dim
        )
        result = train_ranker(
            model, rows, checks, config, minutes_weight=recipe.minutes_weight
        )
        rankers[name] = TrainedRanker(
            recipe, model, inputs, tower, result, time.perf_counter() - start
        )
    return rankers


def _relabel(rows: RankerData, log: RecsysLog, label: str) -> RankerData:
    """``rows`` with ``label`` (a column of ``log``) as the positive."""
    positive = np.asarray(getattr(log, label), dtype=bool)
    minutes = np.where(positive, log.minutes, np.nan).astype(np.float32)
    return RankerData(rows.features, rows.position, positive, minutes)


def predict_on_features(
    ranker: TrainedRanker, features: EntityFeatures
) -> RankerPrediction:
    """``ranker``'s P(engaged) and E[minutes] on ready-made feature rows, as served
    (every row at the top slot). The rows must come from a ranker with the same
    inputs (recipe and two-tower), as
    :meth:`~mlsd_lib.recsys.recipes.TrainedRanker.features` builds them.
    """
    n = len(features)  # predict_ranker refuses rows of another width
    data = RankerData(
        features,
        np.zeros(n, np.int64),
        np.zeros(n, bool),
        np.full(n, np.nan, np.float32),
    )
    return predict_ranker(
        ranker.model, data, position=0, num_threads=ranker.recipe.training.num_threads
    )


def rank_candidates(candidates: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each row of ``candidates`` (users, depth) ordered by ``scores``, best first.

    ``scores`` has one value per candidate, shaped like ``candidates`` or flat
    in row order; ties keep the candidates' order, and -1 (no candidate) goes
    last whatever its score.
    """
    items = np.asarray(candidates)
    values = np.asarray(scores, dtype=np.float64)
    if items.ndim != 2 or values.size != items.size:
        raise ObjectiveArmsError(
            f"scores has {values.size} values for candidates of shape {items.shape}: "
            "give one score per candidate."
        )
    values = values.reshape(items.shape)
    if np.isnan(values).any():
        raise ObjectiveArmsError(
            "scores hold NaN: check the model's inputs (a NaN feature) first."
        )
    values = np.where(items < 0, -np.inf, values)
    order = np.argsort(-values, axis=1, kind="stable")
    return np.take_along_axis(items, order, axis=1)


def arm_outcomes(
    logs: Mapping[str, RecsysLog], users: np.ndarray, clickbait: np.ndarray
) -> pd.DataFrame:
    """One row per arm: per user of ``users``, clicks, engaged plays and engaged
    minutes; the clickbait share of impressions and of clicks.

    ``users`` are the users every arm served (the denominator, the same in each
    row); ``clickbait`` is the world's hidden flag per item id. Minutes count
    engaged plays only (a clickbait play abandoned after a few seconds is a
    click, not engagement).
    """
    if not logs:
        raise ObjectiveArmsError("arm_outcomes needs at least one arm's log.")
    n_users = len(np.unique(np.asarray(users)))
    if n_users == 0:
        raise ObjectiveArmsError("users is empty: pass the users the arms served.")
    bait = np.asarray(clickbait).astype(bool)
    rows = {}
    for name, log in logs.items():
        if len(log) == 0:
            raise ObjectiveArmsError(
                f"arm {name!r} logged no impressions: simulate a day with sessions."
            )
        if log.item.max() >= len(bait):
            raise ObjectiveArmsError(
                f"arm {name!r} shows item {log.item.max()} but clickbait covers "
                f"{len(bait)} items: pass world.items.clickbait."
            )
        engaged_minutes = np.where(log.engaged, log.minutes, 0.0).sum(dtype=np.float64)
        clicked = log.clicked
        rows[name] = {
            "clicks per user": clicked.sum() / n_users,
            "engaged plays per user": log.engaged.sum() / n_users,
            "engaged minutes per user": engaged_minutes / n_users,
            "clickbait share of impressions": bait[log.item].mean(),
            "clickbait share of clicks": (
                bait[log.item[clicked]].mean() if clicked.any() else float("nan")
            ),
        }
    return pd.DataFrame(rows).T
