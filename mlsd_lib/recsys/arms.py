"""Several feed policies on the same simulated users: arms of a perfect experiment.

Introduced in
``casestudies/recommender/01_requirements_and_scale.ipynb``. A real A/B test splits
users, so the arms differ by the policies *and* by who landed in which arm;
its answer comes with sampling noise. The world can do better: every arm runs
on its own :meth:`~mlsd_lib.worlds.recsys.RecsysWorld.fork` of one world, so
all arms face the same sessions, at the same times, with the same uniform
random numbers slot by slot (common random numbers). What differs between
arms is what each policy chose to show, and nothing else.

:func:`run_arms` runs them; :func:`arm_summary` puts the per-impression rates
(click, engaged play, minutes) and the exposure figures (catalogue coverage,
top-1% share) side by side.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import catalogue_coverage, top_share
from mlsd_lib.progress import tqdm
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_feed import Policy
from mlsd_lib.worlds.recsys_log import RecsysLog

__all__ = ["ArmsError", "PolicyFactory", "arm_summary", "run_arms"]

#: Builds an arm's policy from the fork it will serve (an oracle must read the
#: tastes of its own fork; a learning policy must start from its own counts).
PolicyFactory = Callable[[RecsysWorld], Policy]


class ArmsError(MlsdError, ValueError):
    """The arms cannot be run or compared; the message says why."""


def run_arms(
    world: RecsysWorld,
    arms: Mapping[str, PolicyFactory],
    start_day: int,
    days: int = 1,
    *,
    users: np.ndarray | None = None,
    progress: bool = False,
) -> dict[str, RecsysLog]:
    """Each arm's log: ``arms[name](fork)`` served on a fresh fork of ``world``.

    ``world`` itself does not move (only its forks do), so it can still be
    simulated or forked again afterwards. ``users`` restricts every arm to
    the same users (see :meth:`~mlsd_lib.worlds.recsys.RecsysWorld.simulate`);
    ``progress`` shows a bar, one step per arm.
    """
    if not arms:
        raise ArmsError("run_arms needs at least one arm (name -> policy factory).")
    logs = {}
    for name, make in tqdm(arms.items(), desc="arms", disable=not progress):
        fork = world.fork()
        logs[name] = fork.simulate(make(fork), start_day, days, users=users)
    return logs


def arm_summary(logs: Mapping[str, RecsysLog], n_items: int) -> pd.DataFrame:
    """One row per arm: requests, impressions, per-impression rates, exposure.

    Equal ``requests`` in every row is the check that the arms saw the same
    sessions. ``engaged rate`` is engaged plays per impression, the case
    study's primary metric; ``minutes per impression`` its secondary one.
    """
    if not logs:
        raise ArmsError("arm_summary needs at least one arm's log.")
    rows = {}
    for name, log in logs.items():
        if len(log) == 0:
            raise ArmsError(
                f"arm {name!r} logged no impressions: simulate a day with sessions."
            )
        rows[name] = {
            "requests": log.n_requests,
            "impressions": len(log),
            "click rate": log.click_rate,
            "engaged rate": log.engaged_rate,
            "minutes per impression": float(log.minutes.mean(dtype=np.float64)),
            "catalogue coverage": catalogue_coverage(log.item, n_items),
            "top-1% share": top_share(log.item, n_items, 0.01),
        }
    return pd.DataFrame(rows).T
