"""What a simulated impression log says about the recsys world.

Introduced in
``casestudies/recommender/01_requirements_and_scale.ipynb``. Before anything is
trained, step 1 asks the data the questions an interviewer would: how often
an impression becomes an engaged play, how many plays a user makes, how much
the feed position matters, how concentrated plays are on a few titles, what
clickbait does, and how long people watch. Each answer is one function of a
:class:`~mlsd_lib.worlds.recsys_log.RecsysLog`:

* :func:`profile_log`: the headline rates as a :class:`WorldProfile`;
* :func:`engagement_by_position`: the observed engaged rate per slot next to
  the world's true examination curve and the true relevance of what was put
  there (a log mixes the two; the world can separate them);
* :func:`exposure_concentration`: the long tail (coverage, top-1% share,
  Gini) of impressions and of engaged plays;
* :func:`clickbait_summary` and :func:`minutes_by_kind`: clicks against
  engaged plays against minutes, and the watch-time distribution per kind.

The world's hidden attributes (clickbait, patience) are read from the world,
which is what a simulator is for; a real log would not have them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from mlsd_lib.evaluation.ranking import catalogue_coverage, gini, top_share
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_log import RecsysLog, RecsysLogError
from mlsd_lib.worlds.recsys_truth import ITEM_KINDS, SECONDS_PER_DAY, examination

__all__ = [
    "WorldProfile",
    "clickbait_summary",
    "engagement_by_position",
    "exposure_concentration",
    "minutes_by_kind",
    "profile_log",
]


def _require_rows(log: RecsysLog, what: str) -> None:
    if len(log) == 0 or not log.engaged.any():
        raise RecsysLogError(
            f"{what} needs a log with impressions and engaged plays, got "
            f"{len(log)} impressions and {int(log.engaged.sum())} engaged plays: "
            "simulate at least a day first."
        )


@dataclass(frozen=True)
class WorldProfile:
    """The headline numbers of a log (see :func:`profile_log`).

    Per-user figures are per *active user-day* (a user with at least one
    session that day), the unit DAU-based capacity plans use.
    """

    days: int
    impressions: int
    requests: int
    user_days: int
    engaged_plays: int
    click_rate: float
    engaged_rate: float
    engaged_per_click: float
    requests_per_user_day: float
    engaged_plays_per_user_day: float
    minutes_per_user_day: float
    minutes_per_impression: float
    median_engaged_minutes: float
    p90_engaged_minutes: float

    def to_frame(self) -> pd.DataFrame:
        """One row per quantity."""
        values = asdict(self)
        return pd.DataFrame({"quantity": list(values), "value": list(values.values())})


def profile_log(log: RecsysLog) -> WorldProfile:
    """Rates, plays per user and watch minutes of ``log``."""
    _require_rows(log, "profile_log")
    day = (log.time // SECONDS_PER_DAY).astype(np.int64)
    user_days = np.unique(day * log.n_users + log.user).size
    engaged_minutes = log.minutes[log.engaged]
    return WorldProfile(
        days=int(np.unique(day).size),
        impressions=len(log),
        requests=log.n_requests,
        user_days=int(user_days),
        engaged_plays=int(log.engaged.sum()),
        click_rate=log.click_rate,
        engaged_rate=log.engaged_rate,
        engaged_per_click=float(log.engaged.sum() / max(log.clicked.sum(), 1)),
        requests_per_user_day=log.n_requests / user_days,
        engaged_plays_per_user_day=float(log.engaged.sum() / user_days),
        minutes_per_user_day=float(log.minutes.sum(dtype=np.float64) / user_days),
        minutes_per_impression=float(log.minutes.mean(dtype=np.float64)),
        median_engaged_minutes=float(np.median(engaged_minutes)),
        p90_engaged_minutes=float(np.quantile(engaged_minutes, 0.9)),
    )


def engagement_by_position(world: RecsysWorld, log: RecsysLog) -> pd.DataFrame:
    r"""Per feed slot: the observed engaged rate and what it is made of.

    The world's truth factors each impression's P(engaged) into the user's
    examination of the slot, :math:`e_u(p) = (1 + p)^{-\eta} 1[p < P_u]`
    (:func:`~mlsd_lib.worlds.recsys_truth.examination`), times the item's
    P(engaged) had it been examined (its *relevance*). Columns:
    ``engaged_rate`` (observed), ``true_engaged_p`` (the log's truth, which
    the observed rate estimates), ``examination`` (mean :math:`e_u(p)` of the
    users shown that slot), ``decay`` (:math:`(1 + p)^{-\eta}` alone, the
    curve of a user with endless patience) and ``relevance`` (mean
    ``true_engaged_p / examination`` over the examined impressions: how good
    the items the policy put in that slot were). A policy that ranks well
    puts its best items on top, so the observed curve falls faster than the
    examination curve: read naively, it overstates position bias.
    """
    _require_rows(log, "engagement_by_position")
    position = log.position.astype(np.int64)
    slots = int(position.max()) + 1
    exam = examination(world.state, log.user, position)
    seen = exam > 0
    relevance = np.zeros(len(log))
    relevance[seen] = log.true_engaged_p[seen] / exam[seen]

    def mean(weights: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
        mask = np.ones(len(log), bool) if where is None else where
        total = np.bincount(position[mask], weights=weights[mask], minlength=slots)
        count = np.bincount(position[mask], minlength=slots)
        return total / np.maximum(count, 1)

    return pd.DataFrame(
        {
            "position": np.arange(slots),
            "impressions": np.bincount(position, minlength=slots),
            "engaged_rate": mean(log.engaged.astype(np.float64)),
            "true_engaged_p": mean(log.true_engaged_p.astype(np.float64)),
            "examination": mean(exam),
            "decay": (1.0 + np.arange(slots)) ** -world.config.weights.position_decay,
            "relevance": mean(relevance, seen),
        }
    )


def exposure_concentration(log: RecsysLog, n_items: int) -> pd.DataFrame:
    """How concentrated impressions and engaged plays are on a few items.

    One row each for ``impressions`` and ``engaged plays``: the share of the
    ``n_items`` catalogue that got at least one, the share that went to the
    top 1% of items (:func:`~mlsd_lib.evaluation.ranking.top_share`) and the
    Gini coefficient over every item, zeros included.
    """
    _require_rows(log, "exposure_concentration")
    rows = {}
    for name, items in (
        ("impressions", log.item),
        ("engaged plays", log.item[log.engaged]),
    ):
        rows[name] = {
            "events": items.size,
            "items with one or more": catalogue_coverage(items, n_items),
            "top-1% share": top_share(items, n_items, 0.01),
            "gini": gini(np.bincount(items, minlength=n_items)),
        }
    return pd.DataFrame(rows).T


def clickbait_summary(world: RecsysWorld, log: RecsysLog) -> pd.DataFrame:
    """Regular items against clickbait: clicks, engaged plays and minutes.

    Clickbait (a hidden flag of the world) earns clicks but few engaged
    plays and short watches, so a model trained on clicks learns to show it
    and one trained on engaged plays or minutes does not. Rows ``regular``
    and ``clickbait``; per-impression rates and per-play minutes.
    """
    _require_rows(log, "clickbait_summary")
    bait = world.items.clickbait[log.item].astype(bool)
    rows = {}
    for name, mask in (("regular", ~bait), ("clickbait", bait)):
        clicks = int(log.clicked[mask].sum())
        engaged = log.engaged[mask]
        rows[name] = {
            "share of catalogue": float(
                np.mean(world.items.clickbait.astype(bool) == (name == "clickbait"))
            ),
            "impressions": int(mask.sum()),
            "click rate": float(log.clicked[mask].mean()) if mask.any() else np.nan,
            "engaged per click": engaged.sum() / clicks if clicks else np.nan,
            "engaged rate": float(engaged.mean()) if mask.any() else np.nan,
            "minutes per engaged play": (
                float(log.minutes[mask][engaged].mean()) if engaged.any() else np.nan
            ),
            "minutes per impression": (
                float(log.minutes[mask].mean()) if mask.any() else np.nan
            ),
        }
    return pd.DataFrame(rows).T


def minutes_by_kind(world: RecsysWorld, log: RecsysLog) -> pd.DataFrame:
    """Watch minutes of engaged plays per item kind (short, episode, film).

    Columns: engaged plays, median and 90th-percentile minutes, the mean
    duration of the items played and the mean completion share (minutes /
    duration). The minutes head of the ranker predicts these; their spread
    (seconds for shorts, an hour for films) is why it predicts per kind
    well only with the item's duration as a feature.
    """
    _require_rows(log, "minutes_by_kind")
    items = log.item[log.engaged]
    minutes = log.minutes[log.engaged].astype(np.float64)
    kind = world.items.kind[items]
    duration = world.items.duration[items].astype(np.float64)
    rows = {}
    for code, name in enumerate(ITEM_KINDS):
        m = kind == code
        if not m.any():
            continue
        rows[name] = {
            "engaged plays": int(m.sum()),
            "median minutes": float(np.median(minutes[m])),
            "p90 minutes": float(np.quantile(minutes[m], 0.9)),
            "mean duration": float(duration[m].mean()),
            "mean completion": float(np.mean(minutes[m] / duration[m])),
        }
    return pd.DataFrame(rows).T
