r"""The recommender's online evaluation in the world: A/B tests, off-policy estimates.

Introduced in ``casestudies/recommender/05_evaluation.ipynb`` (step 5, "Offline and
online evaluation"). The statistics are generic
(:mod:`~mlsd_lib.evaluation.ab_continuous`, :mod:`~mlsd_lib.evaluation.off_policy`);
this module runs the experiments the case study needs with them.

**The A/B test, twice** (:func:`run_ab_designs`, :func:`ab_tests`,
:func:`ab_table`, :func:`users_needed`). The metrics are per user over the
experiment: engaged plays and engaged minutes (minutes of engaged plays), for
every user with at least one session. Two designs on the same day:

* ``paired``: both arms serve *every* user, each on its own fork of the
  world (:func:`~mlsd_lib.recsys.arms.run_arms`), so each user meets both
  feeds in the same sessions with the same random numbers (common random
  numbers). Analysed with the paired t-test on per-user differences.
* ``split``: users are randomly assigned, half to each arm, and each arm
  serves only its own users, as a real experiment must. Analysed with
  Welch's t-test.

Same population, same policies: the designs differ only in the variance of
the comparison, which :func:`users_needed` turns into users. The world also
knows the *expected* engaged plays of every impression (the log's
``true_engaged_p``), so each user's expected plays under each arm give the
effect free of the outcome noise, the reference the intervals are read
against.

**Off-policy estimates** (:func:`replay_feeds`, :func:`cell_sizes`,
:func:`epsilon_greedy_probability`, :func:`mixture_probability`,
:func:`policy_values`). Each impression of the legacy log is one decision:
the item in a slot, with the legacy feed's probability of putting it there
(logged). Slots do not interact in the world (a user's reaction to slot ``p``
depends on the item and ``p``, not on the neighbours), so the engaged-play
rate of another policy is estimable slot by slot. The target's probability of
the logged item is:

* for the legacy feed with another exploration rate :math:`\epsilon'`: the
  logged propensity is :math:`(1 - \epsilon) 1[j = b] + \epsilon / N` (base
  item :math:`b`, :math:`N` items the user's cell may see), which tells
  whether the logged item was the base one, and the target's probability is
  :math:`(1 - \epsilon') 1[j = b] + \epsilon' / N`;
* for a deterministic policy (a trained model's feed): 1 if it would have
  put the logged item in that slot, else 0; :func:`replay_feeds` asks it,
  request by request in the logged order, with the logged outcomes as its
  history (the context the log was produced in);
* for a :class:`~mlsd_lib.recsys.model_policies.SlotMixturePolicy` of the
  logger and such a policy: :math:`(1 - s)\,\mu + s\,1[\text{match}]`.

:func:`policy_values` runs targets on forks of the world for their true
engaged-play rate per impression (the mean of ``true_engaged_p`` over what
each showed, and the realized rate). The estimate is for the logged contexts;
the fork's run lets the target's own choices move histories and tastes
through the day, a difference the comparison exposes rather than hides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ab_continuous import (
    MeanDifference,
    paired_test,
    sample_size_paired,
    sample_size_split,
    welch_test,
)
from mlsd_lib.recsys.arms import PolicyFactory, run_arms
from mlsd_lib.recsys.ceilings import truth_snapshot
from mlsd_lib.recsys.evaluation import TimeSplit
from mlsd_lib.recsys.model_policies import frozen_policy
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_feed import FeedRequest, Policy
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_truth import SECONDS_PER_DAY

__all__ = [
    "DESIGNS",
    "METRICS",
    "ABDesigns",
    "OnlineEvaluationError",
    "ab_table",
    "ab_tests",
    "cell_sizes",
    "epsilon_greedy_probability",
    "mixture_probability",
    "policy_values",
    "replay_feeds",
    "run_ab_designs",
    "simulate_split_with_policy",
    "user_outcomes",
    "users_needed",
]

#: The per-user metrics of the A/B test, primary first.
METRICS: tuple[str, ...] = ("engaged plays", "engaged minutes")
#: The two experimental designs, in the order tables list them.
DESIGNS: tuple[str, ...] = ("paired", "split")
#: The world's expected engaged plays per user (no real log has this column).
EXPECTED = "expected engaged plays"


class OnlineEvaluationError(MlsdError, ValueError):
    """Logs, arms or targets that cannot be compared; the message says why."""


def simulate_split_with_policy(
    world: RecsysWorld, policy: Policy, *, train_days: int, test_days: int = 1
) -> tuple[TimeSplit, PolicyFactory]:
    """As :func:`~mlsd_lib.recsys.evaluation.simulate_split`, and the logging
    policy as it stood at the split: a factory of copies
    (:func:`~mlsd_lib.recsys.model_policies.frozen_policy`) that serve a fork
    of ``split.world`` exactly as the original served the test days."""
    if train_days < 2 or test_days < 1:
        raise OnlineEvaluationError(
            f"a split needs train_days >= 2 (the last one validates) and "
            f"test_days >= 1, got {train_days} and {test_days}."
        )
    start = world.next_day
    log = world.simulate(policy, start, train_days)
    at_split = world.fork()
    snapshot = frozen_policy(policy)(at_split)
    test = world.simulate(policy, start + train_days, test_days)
    split = TimeSplit(at_split, log, test, start + train_days, test_days)
    return split, frozen_policy(snapshot)


# -- the A/B test ---------------------------------------------------------------------


def user_outcomes(
    log: RecsysLog, users: np.ndarray | None = None, *, truth: RecsysWorld | None = None
) -> pd.DataFrame:
    """Per user of ``log`` (or of ``users``, 0 for those absent): engaged plays,
    engaged minutes and the expected engaged plays of what they were shown.

    With ``truth`` (a world as of the start of the log, e.g.
    :func:`~mlsd_lib.recsys.ceilings.truth_snapshot`), also ``expected engaged
    minutes``: each impression's true P(engaged) times the true expected
    minutes of the pair, tastes as they were in ``truth`` (plays during the
    log move them a little; the plays column has no such approximation).
    """
    users = np.unique(log.user) if users is None else np.asarray(users, np.int64)
    n = max(log.n_users, int(users.max(initial=-1)) + 1)
    minutes = np.where(log.engaged, log.minutes, 0.0).astype(np.float64)
    columns = {
        METRICS[0]: np.bincount(log.user, weights=log.engaged, minlength=n),
        METRICS[1]: np.bincount(log.user, weights=minutes, minlength=n),
        EXPECTED: np.bincount(
            log.user, weights=log.true_engaged_p.astype(np.float64), minlength=n
        ),
    }
    if truth is not None:
        expected_minutes = truth.true_expected_minutes(log.user, log.item, log.time)
        columns["expected engaged minutes"] = np.bincount(
            log.user,
            weights=log.true_engaged_p * np.asarray(expected_minutes, np.float64),
            minlength=n,
        )
    frame = pd.DataFrame({name: values[users] for name, values in columns.items()})
    frame.index = pd.Index(users, name="user")
    return frame


@dataclass(frozen=True)
class ABDesigns:
    """Both designs' logs: ``paired[arm]`` (every user) and ``split[arm]`` (the
    arm's own users); ``in_treatment`` is the split's assignment (bool per
    user id), ``control`` and ``treatment`` the arms' names, ``truth`` the
    world at the start of the experiment (for expected minutes)."""

    control: str
    treatment: str
    paired: dict[str, RecsysLog]
    split: dict[str, RecsysLog]
    in_treatment: np.ndarray
    truth: RecsysWorld

    def outcomes(self, design: str, arm: str) -> pd.DataFrame:
        """Per-user outcomes of ``arm`` in ``design`` (users with a session)."""
        logs = self._logs(design)
        return user_outcomes(logs[arm], truth=self.truth)

    def _logs(self, design: str) -> dict[str, RecsysLog]:
        if design not in DESIGNS:
            raise OnlineEvaluationError(
                f"unknown design {design!r}; the designs are {DESIGNS}."
            )
        return self.paired if design == "paired" else self.split


def run_ab_designs(
    world: RecsysWorld,
    control: tuple[str, PolicyFactory],
    treatment: tuple[str, PolicyFactory],
    day: int,
    *,
    days: int = 1,
    seed: int = 0,
    progress: bool = False,
) -> ABDesigns:
    """Run the experiment both ways from ``world`` (which does not move).

    ``control`` and ``treatment`` are ``(name, factory)``; each factory builds
    its arm's policy for the fork it serves. The split assigns each user to
    treatment with probability 1/2 from ``seed``.
    """
    (c_name, c_make), (t_name, t_make) = control, treatment
    if c_name == t_name:
        raise OnlineEvaluationError(
            f"the arms need two different names, got {c_name!r} twice."
        )
    arms = {c_name: c_make, t_name: t_make}
    paired = run_arms(world, arms, day, days, progress=progress)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xAB]))
    in_treatment = rng.random(world.n_users) < 0.5
    split = {
        c_name: run_arms(
            world, {c_name: c_make}, day, days, users=np.flatnonzero(~in_treatment)
        )[c_name],
        t_name: run_arms(
            world, {t_name: t_make}, day, days, users=np.flatnonzero(in_treatment)
        )[t_name],
    }
    if paired[c_name].n_requests != paired[t_name].n_requests:
        raise OnlineEvaluationError(
            "the paired arms served different numbers of requests: the factories "
            "must build policies for the fork they are given."
        )
    truth = truth_snapshot(world, day)
    return ABDesigns(c_name, t_name, paired, split, in_treatment, truth)


def ab_tests(
    designs: ABDesigns,
    metrics: Sequence[str] = METRICS,
    *,
    confidence: float = 0.95,
) -> dict[tuple[str, str], MeanDifference]:
    """Treatment against control per (design, metric): paired t-test on the
    paired design's per-user differences, Welch on the split's two groups."""
    results = {}
    for design in DESIGNS:
        c = designs.outcomes(design, designs.control)
        t = designs.outcomes(design, designs.treatment)
        if design == "paired":
            users = c.index.union(t.index)
            c, t = c.reindex(users, fill_value=0.0), t.reindex(users, fill_value=0.0)
        for metric in metrics:
            if metric not in c.columns:
                raise OnlineEvaluationError(
                    f"unknown metric {metric!r}; per-user metrics: {list(c.columns)}."
                )
            test = paired_test if design == "paired" else welch_test
            results[design, metric] = test(
                c[metric].to_numpy(), t[metric].to_numpy(), confidence=confidence
            )
    return results


def ab_table(results: Mapping[tuple[str, str], MeanDifference]) -> pd.DataFrame:
    """One row per (design, metric): means, difference and relative lift with
    their intervals, p-value, users per arm and the per-user spreads."""
    rows = {}
    for key, r in results.items():
        rows[key] = {
            "control": r.control_mean,
            "treatment": r.treatment_mean,
            "difference": r.difference,
            "diff low": r.difference_ci[0],
            "diff high": r.difference_ci[1],
            "lift": r.relative_lift,
            "lift low": r.relative_ci[0],
            "lift high": r.relative_ci[1],
            "p-value": r.p_value,
            "users per arm": min(r.n_control, r.n_treatment),
            "sd control": r.sd_control,
            "sd treatment": r.sd_treatment,
            "sd difference": r.sd_difference,
        }
    frame = pd.DataFrame(rows).T
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["design", "metric"])
    return frame


def users_needed(
    results: Mapping[tuple[str, str], MeanDifference],
    relative_lifts: Sequence[float] = (0.01, 0.02, 0.05, 0.1),
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> pd.DataFrame:
    """Users each design needs, in all, to detect each relative lift.

    Spreads as measured by the paired design (every user in both arms): the
    split needs twice :func:`~mlsd_lib.evaluation.ab_continuous.sample_size_split`
    (two arms), the paired design
    :func:`~mlsd_lib.evaluation.ab_continuous.sample_size_paired` (each user
    in both). The lift is of the control's mean.
    """
    rows = {}
    for (design, metric), r in results.items():
        if design != "paired":
            continue
        for lift in relative_lifts:
            delta = lift * r.control_mean
            split = 2 * sample_size_split(
                r.sd_control, r.sd_treatment, delta, alpha=alpha, power=power
            )
            paired = sample_size_paired(
                r.sd_difference, delta, alpha=alpha, power=power
            )
            rows[metric, lift] = {
                "split: users": split,
                "paired: users": paired,
                "split / paired": split / paired,
            }
    if not rows:
        raise OnlineEvaluationError(
            "users_needed reads the paired design's spreads: pass ab_tests(...)."
        )
    frame = pd.DataFrame(rows).T
    frame.index = pd.MultiIndex.from_tuples(frame.index, names=["metric", "lift"])
    return frame


# -- off-policy estimates -------------------------------------------------------------


def _hour_batches(log: RecsysLog):
    """Row ranges of each (day, hour): the batches the world served."""
    if len(log) == 0:
        return
    hour = np.floor(log.time / 3600.0).astype(np.int64)
    edges = np.flatnonzero(np.diff(hour)) + 1
    starts = np.concatenate([[0], edges])
    stops = np.concatenate([edges, [len(log)]])
    yield from zip(starts, stops, strict=True)


def replay_feeds(policy: Policy, log: RecsysLog, feed_size: int) -> np.ndarray:
    """The item ``policy`` would have put in each logged row's slot (-1: none).

    Requests are replayed in the log's order, an hour at a time as the world
    serves them; after each hour the policy observes the *logged* batch (what
    the logging policy showed and what users did), so every answer is given
    in the context the log was produced in.
    """
    out = np.full(len(log), -1, dtype=np.int64)
    observe = getattr(policy, "observe", None)
    for lo, hi in _hour_batches(log):
        batch = log.subset(slice(lo, hi))
        ids, first, row = np.unique(
            batch.request_id, return_index=True, return_inverse=True
        )
        order = np.argsort(first, kind="stable")  # requests in logged order
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        request = FeedRequest(
            user=batch.user[first[order]],
            time=batch.time[first[order]],
            request_id=ids[order],
            day=int(batch.time[0] // SECONDS_PER_DAY),
            feed_size=feed_size,
        )
        items = np.asarray(policy(request).items)
        slot = batch.position.astype(np.int64)
        inside = slot < items.shape[1]
        chosen = np.full(len(batch), -1, dtype=np.int64)
        chosen[inside] = items[rank[row[inside]], slot[inside]]
        out[lo:hi] = chosen
        if observe is not None:
            observe(batch)
    return out


def cell_sizes(world: RecsysWorld, log: RecsysLog) -> np.ndarray:
    """Per row, how many items the user's (region, maturity) cell may see that
    day: the ``N`` of a uniform exploration draw's probability ``1 / N``."""
    day = np.floor(log.time / SECONDS_PER_DAY).astype(np.int64)
    cells = world.user_cells(log.user)
    out = np.empty(len(log), dtype=np.int64)
    for d in np.unique(day):
        rows = day == d
        out[rows] = world.eligible_catalogue(int(d)).counts(cells[rows])
    return out


def epsilon_greedy_probability(
    propensity: np.ndarray,
    n_items: np.ndarray,
    logged_epsilon: float,
    target_epsilon: float,
) -> np.ndarray:
    """The probability of each logged item under the same base feed with
    exploration rate ``target_epsilon`` instead of ``logged_epsilon``.

    Reads the logged propensity ``(1 - ε) 1[j = b] + ε / N`` back into
    ``1[j = b]``; a propensity that fits neither value was not logged by an
    ε-greedy feed with these settings, which is an error.
    """
    p = np.asarray(propensity, dtype=np.float64)
    n = np.asarray(n_items, dtype=np.float64)
    for name, eps in (("logged", logged_epsilon), ("target", target_epsilon)):
        if not 0.0 <= eps <= 1.0:
            raise OnlineEvaluationError(
                f"the {name} epsilon must be in [0, 1], got {eps}."
            )
    explore = logged_epsilon / n
    base = (1.0 - logged_epsilon) + explore
    is_base = np.isclose(p, base, rtol=1e-9, atol=0.0)
    fits = is_base | np.isclose(p, explore, rtol=1e-9, atol=0.0)
    if not fits.all():
        bad = np.flatnonzero(~fits)
        raise OnlineEvaluationError(
            f"{bad.size} logged propensities (first at rows {bad[:5].tolist()}) are "
            f"neither 1 - eps + eps/N nor eps/N for eps={logged_epsilon}: pass the "
            "logging policy's epsilon and the cell sizes of the log's days "
            "(cell_sizes)."
        )
    return (1.0 - target_epsilon) * is_base + target_epsilon / n


def mixture_probability(
    propensity: np.ndarray, matches: np.ndarray, share: float
) -> np.ndarray:
    """Probability of each logged item under a slot mixture of the logging
    policy (weight ``1 - share``) and a deterministic policy that would have
    shown the logged item where ``matches`` is true."""
    if not 0.0 <= share <= 1.0:
        raise OnlineEvaluationError(f"share must be in [0, 1], got {share}.")
    p = np.asarray(propensity, dtype=np.float64)
    m = np.asarray(matches, dtype=bool)
    if m.shape != p.shape:
        raise OnlineEvaluationError(
            f"matches has shape {m.shape} but the propensities {p.shape}: one "
            "per logged row (replay_feeds(...) == log.item)."
        )
    return (1.0 - share) * p + share * m


def policy_values(
    world: RecsysWorld,
    targets: Mapping[str, PolicyFactory],
    day: int,
    *,
    logs: Mapping[str, RecsysLog] | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Each target's true value on ``day``: run on a fork of ``world``.

    Columns ``true engaged rate`` (mean ``true_engaged_p`` of the impressions
    it served: expected engaged plays per impression, free of outcome noise)
    and ``realized engaged rate``. ``logs`` adds targets already run (e.g. an
    A/B arm on the same fork and day) without running them again.
    """
    ran = run_arms(world, targets, day, progress=progress) if targets else {}
    every = {**ran, **(logs or {})}
    if not every:
        raise OnlineEvaluationError("policy_values needs at least one target.")
    return pd.DataFrame(
        {
            name: {
                "true engaged rate": float(log.true_engaged_p.mean(dtype=np.float64)),
                "realized engaged rate": log.engaged_rate,
                "impressions": len(log),
            }
            for name, log in every.items()
        }
    ).T
