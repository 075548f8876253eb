"""Weeks of recommendations feeding their own training data, arm by arm.

Introduced in ``casestudies/recommender/07_feedback_loop.ipynb`` ("Feedback loops in the
open"). :func:`run_feedback_loop` starts every arm from one log (the legacy system's,
say) on its own fork of one world, so all arms meet the same users with the same random
numbers (common random numbers, as
:mod:`~mlsd_lib.recsys.arms` does for fixed policies). Then, week after week,
each arm's :class:`~mlsd_lib.recsys.loop_policy.TwoTowerFeedPolicy`

1. retrains on the engaged plays *its own* feeds produced (the last
   ``window_days`` of them; the starting log ages out of the window),
2. is measured against the world's truth (:func:`true_recall`: the share of
   each sampled user's true top ``recall_k`` that the model's top
   ``recall_k`` holds, overall and for items launched in the last
   ``new_days``) and by what it knows (the share of the catalogue it has an
   id vector for, and the share of the week's impressions it placed from
   content alone),
3. serves a week, and the week's log is measured (:func:`week_metrics`):
   concentration (top-1% impression share, Gini, coverage of the available
   catalogue), new-item exposure (share of impressions, and the share of the
   week's launches shown at least ``reach_impressions`` times), and what users
   got (engaged plays and engaged minutes per active user).

An arm is a :class:`LoopArm`: a two-tower recipe (in-batch softmax with or
without logQ) and, optionally, exploration slots. *References* are fixed
policies (the legacy feed) run and measured alongside; an arm may retrain on a
reference's plays instead of its own (``train_on``): the same model outside
the loop, the control that separates what the loop does from what the world
does (tastes drift, users use up the titles they like). :func:`weekly_launches`
writes the catalogue launches that make new-item exposure measurable, as
events of the world's config. Week 0 in the result is the starting log
itself, shared by every arm, so each curve starts from the same point.

Only engaged plays are kept across weeks (what training and histories need);
each week's full log is measured and dropped, so memory does not grow with
impressions.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.exposure import exposure_summary, new_item_share, reach
from mlsd_lib.evaluation.ranking import RelevantItems, recall_at_k
from mlsd_lib.models.training import torch_threads
from mlsd_lib.progress import tqdm
from mlsd_lib.recsys.arms import PolicyFactory
from mlsd_lib.recsys.ceilings import oracle_ranking, watched_items
from mlsd_lib.recsys.evaluation import rank_catalogue
from mlsd_lib.recsys.loop_policy import TwoTowerFeedPolicy
from mlsd_lib.recsys.recipes import TwoTowerRecipe
from mlsd_lib.reranking.exploration import ExplorationConfig
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_events import CatalogueLaunch
from mlsd_lib.worlds.recsys_feed import Policy
from mlsd_lib.worlds.recsys_log import RecsysLog, source_code
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = [
    "FeedbackLoopError",
    "FeedbackLoopResult",
    "LoopArm",
    "LoopConfig",
    "run_feedback_loop",
    "true_recall",
    "week_metrics",
    "weekly_launches",
]


class FeedbackLoopError(MlsdError, ValueError):
    """The loop's arms, settings or starting log do not fit; says what to change."""


@dataclass(frozen=True)
class LoopArm:
    """One arm: a name, the two-tower recipe it retrains, exploration or none.

    ``train_on`` names a reference policy of the run whose plays the arm
    retrains on instead of its own: the same model and schedule *outside* the
    loop, a control no production system has (its data always comes from
    itself), which tells the loop's effect from the world's.
    """

    name: str
    recipe: TwoTowerRecipe
    exploration: ExplorationConfig | None = None
    train_on: str | None = None


@dataclass(frozen=True)
class LoopConfig:
    """How long, how each arm retrains, and how the weeks are measured.

    ``weeks`` of ``days_per_week`` days; each retrain fits ``epochs`` epochs on
    the plays of the last ``window_days`` days (``None``: every play so far).
    An item is *new* for ``new_days`` days after its launch (the exploration
    pool, the new-item share). Recall is measured on ``eval_users`` users drawn
    once (the same for every arm and week) at cut-off ``recall_k``; reach
    counts a launch as reached at ``reach_impressions`` impressions in its week.
    """

    weeks: int = 4
    days_per_week: int = 7
    window_days: int | None = 14
    epochs: int = 3
    new_days: int = 7
    recall_k: int = 100
    eval_users: int = 500
    reach_impressions: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        for name in ("weeks", "days_per_week", "epochs", "new_days", "recall_k"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window_days is not None and self.window_days < 1:
            problems.append(f"window_days must be >= 1 or None, got {self.window_days}")
        if self.eval_users < 1 or self.reach_impressions < 1:
            problems.append(
                "eval_users and reach_impressions must be >= 1, got "
                f"{self.eval_users} and {self.reach_impressions}"
            )
        if self.seed < 0:
            problems.append(f"seed must be an integer >= 0, got {self.seed}")
        if problems:
            raise FeedbackLoopError("; ".join(problems) + ".")


def weekly_launches(
    first_day: int, weeks: int, n_items: int, days_per_week: int = 7
) -> tuple[CatalogueLaunch, ...]:
    """``n_items`` new items on the first day of each of ``weeks`` weeks.

    Pass them as ``RecsysWorldConfig(events=...)``; the launched items are
    numbered after the base catalogue, week by week.
    """
    if weeks < 1 or n_items < 1 or days_per_week < 1:
        raise FeedbackLoopError(
            f"weekly_launches needs weeks, n_items and days_per_week >= 1, got "
            f"{weeks}, {n_items} and {days_per_week}."
        )
    return tuple(
        CatalogueLaunch(day=first_day + w * days_per_week, n_items=n_items)
        for w in range(weeks)
    )


# -- measuring a week ----------------------------------------------------------------


def week_metrics(
    log: RecsysLog,
    world: RecsysWorld,
    first_day: int,
    days: int,
    *,
    new_days: int = 7,
    reach_impressions: int = 20,
) -> dict[str, float]:
    """Exposure and engagement of one period's log (days ``first_day`` ..
    ``first_day + days - 1``).

    Concentration is over the items available on the period's last day; per
    user figures divide by the users who opened the app at least once in the
    period (the same users in every arm, by common random numbers);
    ``launch_reach`` judges the items launched during the period (NaN if none).
    """
    if len(log) == 0:
        raise FeedbackLoopError(
            f"the log of days {first_day}..{first_day + days - 1} is empty: "
            "simulate a period with sessions."
        )
    last_day = first_day + days - 1
    launch = world.items.launch_day
    day = (log.time // SECONDS_PER_DAY).astype(np.int64)
    exposure = exposure_summary(log.item, world.available_items(last_day * 86_400.0))
    launched = np.flatnonzero((launch >= first_day) & (launch <= last_day))
    active = np.unique(log.user).size
    explore = log.source == source_code("explore")
    minutes = log.minutes.astype(np.float64)
    return {
        "impressions": float(len(log)),
        "active_users": float(active),
        "top1_share": exposure["top_share"],
        "gini": exposure["gini"],
        "coverage": exposure["coverage"],
        "new_item_share": new_item_share(log.item, day, launch, new_days),
        "launch_reach": (
            reach(log.item, launched, reach_impressions) if launched.size else np.nan
        ),
        "explore_share": float(explore.mean()),
        "engaged_rate": log.engaged_rate,
        "engaged_per_user": float(log.engaged.sum()) / active,
        "minutes_per_user": float(minutes[log.engaged].sum()) / active,
    }


def true_recall(
    policy: TwoTowerFeedPolicy,
    world: RecsysWorld,
    users: np.ndarray,
    day: int,
    k: int = 100,
    *,
    new_days: int = 7,
) -> dict[str, float]:
    """The policy's model against the truth at the start of ``day``.

    ``true_recall``: the share of each user's true top ``k`` (unwatched items
    they may see, ranked by true P(engaged play) on ``world``, the fork the
    policy serves) in the model's top ``k``, averaged over ``users``;
    ``true_recall_new``: the same restricted to the true top-``k`` items
    launched in the last ``new_days`` days (users with none are skipped; NaN if
    no user has one).
    """
    users = np.asarray(users, dtype=np.int64)
    watched = watched_items(policy.plays, users)
    truth, _ = oracle_ranking(world, users, k, day, watched)
    model = rank_catalogue(
        world,
        day,
        users,
        watched,
        lambda rows: policy.user_scores(users[rows]),
        k,
    )
    launch = world.items.launch_day
    new = np.zeros(truth.shape, dtype=bool)
    present = truth >= 0
    age = day - launch[np.maximum(truth, 0)]
    new[present] = age[present] < new_days
    overall = recall_at_k(model, _relevance(truth, present), k)
    new_rows = _relevance(truth, new)
    fresh = recall_at_k(model, new_rows, k) if new_rows.indices.size else float("nan")
    return {"true_recall": overall, "true_recall_new": fresh}


def _relevance(items: np.ndarray, keep: np.ndarray) -> RelevantItems:
    """The kept entries of each row of ``items`` (distinct ids) as CSR rows."""
    counts = keep.sum(axis=1)
    ordered = np.sort(np.where(keep, items, np.iinfo(np.int64).max), axis=1)
    first = np.arange(items.shape[1])[None, :] < counts[:, None]
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return RelevantItems(indptr, ordered[first].astype(np.int64))


# -- the loop ------------------------------------------------------------------------


@dataclass
class FeedbackLoopResult:
    """``weekly``: one row per (arm, week) with :func:`week_metrics` and, for
    the model that served the week (NaN in week 0, the starting log, and for
    the references): :func:`true_recall`, ``known_share`` (share of the
    available catalogue the model has an id vector for),
    ``unknown_share`` (share of the week's impressions of items it has none
    for, which it placed from content alone; the week's launches are among
    them), ``train_positives`` and ``train_seconds``. ``plays``: each arm's and
    reference's engaged plays, starting log included."""

    weekly: pd.DataFrame
    plays: dict[str, RecsysLog]
    config: LoopConfig

    def metric(self, column: str) -> pd.DataFrame:
        """One column of :attr:`weekly` as a (week x arm) table."""
        if column not in self.weekly.columns:
            raise FeedbackLoopError(
                f"no metric {column!r}; known: {list(self.weekly.columns[2:])}."
            )
        table = self.weekly.pivot(index="week", columns="arm", values=column)
        arms = list(dict.fromkeys(self.weekly["arm"]))
        return table[arms]


def _check_arms(arms: Sequence[LoopArm], references: Mapping[str, object]) -> None:
    if not arms:
        raise FeedbackLoopError("run_feedback_loop needs at least one LoopArm.")
    names = [arm.name for arm in arms] + list(references)
    if len(set(names)) != len(names):
        raise FeedbackLoopError(f"arm and reference names must be unique, got {names}.")
    for arm in arms:
        if arm.train_on is not None and arm.train_on not in references:
            raise FeedbackLoopError(
                f"arm {arm.name!r} trains on {arm.train_on!r}, which is not a "
                f"reference of this run (references: {list(references)}): pass it "
                "in references=."
            )


#: The model columns of a row without a retrained model (week 0, references).
_NO_MODEL = {
    "true_recall": np.nan,
    "true_recall_new": np.nan,
    "known_share": np.nan,
    "unknown_share": np.nan,
    "train_positives": 0,
    "train_seconds": 0.0,
}


def _serve_week(
    policy: Policy, fork: RecsysWorld, day: int, config: LoopConfig
) -> tuple[dict[str, float], RecsysLog]:
    """Let ``policy`` serve the week starting on ``day``: its metrics and log."""
    log = fork.simulate(policy, day, config.days_per_week)
    metrics = week_metrics(
        log,
        fork,
        day,
        config.days_per_week,
        new_days=config.new_days,
        reach_impressions=config.reach_impressions,
    )
    return metrics, log


def _retrain_and_measure(
    policy: TwoTowerFeedPolicy,
    fork: RecsysWorld,
    eval_users: np.ndarray,
    day: int,
    config: LoopConfig,
    plays: RecsysLog | None,
) -> dict[str, float]:
    """Retrain (on ``plays``, else the arm's own), then measure on the truth."""
    started = time.perf_counter()
    policy.retrain(
        day, window_days=config.window_days, epochs=config.epochs, plays=plays
    )
    seconds = time.perf_counter() - started
    recall = true_recall(
        policy, fork, eval_users, day, config.recall_k, new_days=config.new_days
    )
    available = fork.available_items(day * SECONDS_PER_DAY)
    return recall | {
        "known_share": float(policy.known_items()[available].mean()),
        "train_positives": policy.train_positives,
        "train_seconds": seconds,
    }


def run_feedback_loop(
    world: RecsysWorld,
    start_log: RecsysLog,
    arms: Sequence[LoopArm],
    config: LoopConfig | None = None,
    *,
    references: Mapping[str, PolicyFactory] | None = None,
    progress: bool = False,
) -> FeedbackLoopResult:
    """Each arm retrained weekly on its own plays, on its own fork of ``world``.

    ``start_log`` is what every arm starts from: the log ``world`` was
    simulated with up to now (its last day is the day before
    ``world.next_day``). ``references`` are fixed policies (the legacy
    system, say) run over the same weeks on forks of their own and measured
    the same way, without a model to measure against the truth; a reference
    with ``observe`` is shown ``start_log`` first, and an arm with
    ``train_on`` retrains on a reference's plays. ``world`` itself does not
    move. Torch runs on one thread throughout (see
    :func:`~mlsd_lib.models.training.torch_threads`). ``progress`` shows a
    bar, one step per week.
    """
    config = config or LoopConfig()
    references = dict(references or {})
    _check_arms(arms, references)
    start_day = world.next_day
    if len(start_log) == 0 or start_log.time[-1] >= start_day * SECONDS_PER_DAY:
        raise FeedbackLoopError(
            f"start_log must hold the days before the world's next day ({start_day}) "
            "and not be empty: simulate the starting policy on the world first, "
            "then pass its log."
        )
    first_logged = int(start_log.time[0] // SECONDS_PER_DAY)
    start = week_metrics(
        start_log,
        world,
        first_logged,
        start_day - first_logged,
        new_days=config.new_days,
        reach_impressions=config.reach_impressions,
    )
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x100F]))
    signed_up = np.flatnonzero(world.users.signup_day < start_day)
    eval_users = np.sort(
        rng.choice(signed_up, min(config.eval_users, signed_up.size), replace=False)
    )
    forks = {name: world.fork() for name in [a.name for a in arms] + list(references)}
    learners = {
        arm.name: TwoTowerFeedPolicy(
            forks[arm.name],
            arm.recipe,
            exploration=arm.exploration,
            new_days=config.new_days,
            seed=config.seed,
            name=arm.name,
        )
        for arm in arms
    }
    fixed = {name: make(forks[name]) for name, make in references.items()}
    for policy in [*learners.values(), *fixed.values()]:
        observe = getattr(policy, "observe", None)
        if observe is not None:
            observe(start_log)
    # The references' plays, for the arms that train on them.
    reference_plays = {name: [start_log.subset(start_log.engaged)] for name in fixed}
    rows = [{"arm": name, "week": 0, **start} | _NO_MODEL for name in forks]
    with torch_threads(1):  # a busy 2-core box waits on a second thread
        for week in tqdm(
            range(1, config.weeks + 1), desc="weeks", disable=not progress
        ):
            day = start_day + (week - 1) * config.days_per_week
            for arm in arms:
                plays = (
                    None
                    if arm.train_on is None
                    else RecsysLog.concat(reference_plays[arm.train_on])
                )
                policy, fork = learners[arm.name], forks[arm.name]
                model = _retrain_and_measure(
                    policy, fork, eval_users, day, config, plays
                )
                metrics, log = _serve_week(policy, fork, day, config)
                model["unknown_share"] = float((~policy.known_items()[log.item]).mean())
                rows.append({"arm": arm.name, "week": week, **metrics} | model)
            for name, policy in fixed.items():
                metrics, log = _serve_week(policy, forks[name], day, config)
                reference_plays[name].append(log.subset(log.engaged))
                rows.append({"arm": name, "week": week, **metrics} | _NO_MODEL)
    plays = {name: policy.plays for name, policy in learners.items()}
    plays |= {name: RecsysLog.concat(logs) for name, logs in reference_plays.items()}
    return FeedbackLoopResult(pd.DataFrame(rows), plays, config)
