"""What the recommender's models may see: observable tables turned into model inputs.

Introduced in ``casestudies/recommender/03_models.ipynb`` (step 4). The world knows
every user's taste and every title's quality and clickbait; a model must not.
Everything here starts from what the world lets a model observe
(:meth:`~mlsd_lib.worlds.recsys.RecsysWorld.item_features` and
:meth:`~mlsd_lib.worlds.recsys.RecsysWorld.user_features`) or from a MovieLens
file, and from the interaction log, read point-in-time:

* :class:`ModelInputs`: the tables a recipe needs that do not depend on a
  request: the item tower's inputs (one row per item id), each user's context
  (one row per user id), and the item attributes the history features group
  by (genre, series, log duration, launch time). :func:`world_inputs` builds
  them from the world as of a day, :func:`movielens_inputs` from a ratings log
  and (optionally) its genres, so the same recipes run on both.
* :func:`engaged_history_at`: each (user, time)'s last ``length`` engaged
  items strictly before that time: the sequence the user tower pools and the
  ranker's cross features read. The gateway reads the same list from Redis
  (the stream processor's history fold), so the served features are computed
  from exactly what training saw.
* :func:`history_profile`: what the history says beyond item ids (the genre
  mix, the typical length), computed from the list alone so the gateway can
  compute it too; :func:`tower_examples` and :func:`user_queries` put it
  into the user tower's dense input.
* :func:`item_stats_before`: each item's impressions, engaged plays and
  minutes over the days *before* an event's day (a daily batch feature: the
  day's own outcomes would leak the label).
* :func:`ranker_features`: the ranker's row for any (user, item, time):
  context, item content, launch age at that time, the history crosses
  (:func:`~mlsd_lib.models.ranker.history_group_overlap`), the item's past
  rates and, given a trained two-tower, its score of the pair.

Item content in the item tower: the description embedding, log duration and
launch age (as of the day the catalogue is embedded: a daily re-embed moves
it), genre, kind and maturity rating. User context: region, maturity limit and
tenure. Not used, because a model cannot know them: latent vectors, quality,
appeal, clickbait, patience, activity (:data:`HIDDEN_ATTRIBUTES`; a test
checks none reaches a table).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError
from mlsd_lib.models.ranker import history_group_overlap
from mlsd_lib.models.two_tower import TwoTower
from mlsd_lib.models.two_tower_data import EntityFeatures, TwoTowerData
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_truth import ITEM_KINDS, SECONDS_PER_DAY

__all__ = [
    "HIDDEN_ATTRIBUTES",
    "FeatureInputError",
    "ModelInputs",
    "engaged_history_at",
    "history_profile",
    "item_feature_frame",
    "item_stats_before",
    "movielens_inputs",
    "ranker_features",
    "tower_examples",
    "two_tower_scores",
    "user_feature_frame",
    "user_queries",
    "world_inputs",
]

#: What the world hides from models; no feature table may hold a column of these.
HIDDEN_ATTRIBUTES: tuple[str, ...] = (
    "latent",
    "taste",
    "quality",
    "appeal",
    "clickbait",
    "patience",
    "activity",
    "genre_affinity",
    "duration_pref",
)
#: Prior strength of the smoothed item rates (pseudo-impressions at the mean rate).
RATE_PRIOR = 20.0


class FeatureInputError(MlsdError, ValueError):
    """Inputs that do not fit together (sizes, ids, times); the message says how."""


@dataclass(frozen=True)
class ModelInputs:
    """The request-independent inputs of the recipes, one row per item and user id.

    ``items``: the item tower's table (dense content, categorical genre, kind,
    maturity). ``users``: each user's context. ``item_group`` (genre, -1 for
    none) with ``n_groups`` values, ``item_series`` (-1: none),
    ``item_log_duration`` (NaN where unknown) and ``launch_time`` (seconds, NaN
    where unknown) feed the history profile and the ranker's crosses;
    ``item_content`` (``(n_items, d)``, d may be 0) is what the ranker compares
    with the history's mean (the description embedding, or a movie's genres).
    A source without them (a MovieLens file without genres) leaves them at
    their "unknown" values and those features are constant.
    """

    items: EntityFeatures
    users: EntityFeatures
    item_group: np.ndarray
    n_groups: int
    item_series: np.ndarray
    item_log_duration: np.ndarray
    launch_time: np.ndarray
    item_content: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.items)
        if self.item_content.ndim != 2 or len(self.item_content) != n:
            raise FeatureInputError(
                f"item_content has shape {self.item_content.shape} but there are "
                f"{n} items: one row per item id (use shape (n, 0) for none)."
            )
        for name in ("item_group", "item_series", "item_log_duration", "launch_time"):
            if np.shape(getattr(self, name)) != (n,):
                raise FeatureInputError(
                    f"{name} has shape {np.shape(getattr(self, name))} but there are "
                    f"{n} items: one value per item id."
                )
        if self.n_groups < 1 or int(self.item_group.max(initial=-1)) >= self.n_groups:
            raise FeatureInputError(
                f"item_group must lie in [-1, n_groups={self.n_groups}) with "
                "n_groups >= 1."
            )

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def n_users(self) -> int:
        return len(self.users)

    @property
    def profile_width(self) -> int:
        """Columns :func:`history_profile` adds to the user tower's dense input."""
        return self.n_groups + 3


# -- the observable tables --------------------------------------------------------


def item_feature_frame(world: RecsysWorld, day: int) -> pd.DataFrame:
    """The observable item table as the models read it on ``day``, one row per item.

    From :meth:`~mlsd_lib.worlds.recsys.RecsysWorld.item_features`: the
    description embedding (``content_*``), ``log_duration``, ``launch_age``
    (``log(1 + days since launch)``, 0 for an item not launched yet), ``genre``,
    ``kind`` (code), ``maturity``, ``series``, ``launch_day``.
    """
    raw = world.item_features()
    content = [c for c in raw.columns if c.startswith("content_")]
    age = np.maximum(day - raw["launch_day"].to_numpy(), 0)
    frame = raw[content].copy()
    frame["log_duration"] = np.log(raw["duration"].to_numpy(np.float64))
    frame["launch_age"] = np.log1p(age)
    frame["genre"] = raw["genre"].to_numpy(np.int64)
    frame["kind"] = raw["kind"].cat.codes.to_numpy(np.int64)
    frame["maturity"] = raw["maturity"].to_numpy(np.int64)
    frame["series"] = raw["series"].to_numpy(np.int64)
    frame["launch_day"] = raw["launch_day"].to_numpy(np.int64)
    return frame


def user_feature_frame(world: RecsysWorld, day: int) -> pd.DataFrame:
    """The observable user table on ``day``: ``region``, ``maturity_limit`` and
    ``tenure`` (``log(1 + days since signup)``, 0 before signup)."""
    raw = world.user_features()
    return pd.DataFrame(
        {
            "region": raw["region"].to_numpy(np.int64),
            "maturity_limit": raw["maturity_limit"].to_numpy(np.int64),
            "tenure": np.log1p(np.maximum(day - raw["signup_day"].to_numpy(), 0)),
        }
    )


def world_inputs(world: RecsysWorld, day: int) -> ModelInputs:
    """The recipes' inputs from what ``world`` lets a model observe, as of ``day``."""
    c = world.config
    items = item_feature_frame(world, day)
    users = user_feature_frame(world, day)
    content = [col for col in items.columns if col.startswith("content_")]
    item_table = EntityFeatures.from_arrays(
        items[[*content, "log_duration", "launch_age"]].to_numpy(np.float32),
        items[["genre", "kind", "maturity"]].to_numpy(np.int64),
        (c.n_genres, len(ITEM_KINDS), c.n_maturity),
    )
    user_table = EntityFeatures.from_arrays(
        users[["tenure"]].to_numpy(np.float32),
        users[["region", "maturity_limit"]].to_numpy(np.int64),
        (c.n_regions, c.n_maturity),
    )
    return ModelInputs(
        items=item_table,
        users=user_table,
        item_group=items["genre"].to_numpy(np.int64),
        n_groups=c.n_genres,
        item_series=items["series"].to_numpy(np.int64),
        item_log_duration=items["log_duration"].to_numpy(np.float64),
        launch_time=items["launch_day"].to_numpy(np.float64) * SECONDS_PER_DAY,
        item_content=items[content].to_numpy(np.float32),
    )


def movielens_inputs(
    interactions: Interactions, genres: np.ndarray | None = None
) -> ModelInputs:
    """The recipes' inputs for a MovieLens log: genres as content, nothing else.

    ``genres`` is the ``(n_items, n_genres)`` 0/1 matrix of
    :func:`~mlsd_lib.datasets.movielens.read_movielens_items` aligned to the
    log's item indices (``None``: no content, the item tower has only ids). A
    movie's first genre is its group; users have no context features, there is
    no duration and no launch time (their features are constant).
    """
    n_items, n_users = interactions.n_items, interactions.n_users
    if genres is None:
        dense = np.zeros((n_items, 0), np.float32)
        group = np.full(n_items, -1, np.int64)
        n_groups = 1
    else:
        dense = np.asarray(genres, dtype=np.float32)
        if dense.ndim != 2 or len(dense) != n_items:
            raise FeatureInputError(
                f"genres must be (n_items={n_items}, n_genres), got shape "
                f"{dense.shape}: align the movie file's rows to the log's item "
                "indices first."
            )
        group = np.where(dense.any(axis=1), dense.argmax(axis=1), -1).astype(np.int64)
        n_groups = max(dense.shape[1], 1)
    return ModelInputs(
        items=EntityFeatures.from_arrays(dense, n=n_items),
        users=EntityFeatures.from_arrays(n=n_users),
        item_group=group,
        n_groups=n_groups,
        item_series=np.full(n_items, -1, np.int64),
        item_log_duration=np.full(n_items, np.nan),
        launch_time=np.full(n_items, np.nan),
        item_content=dense,
    )


# -- histories, point in time -----------------------------------------------------


def _time_keys(user: np.ndarray, time: np.ndarray, t0: float, span: float):
    return user.astype(np.float64) * span + (time - t0)


def engaged_history_at(
    interactions: Interactions,
    users: np.ndarray,
    times: np.ndarray,
    length: int = 50,
) -> np.ndarray:
    """``(len(users), length)`` item ids: each user's engaged items strictly
    before each time, most recent first, padded with -1.

    The point-in-time rule of the feature store applied to a sequence: an
    engaged play at the request's own time (the same session) is not in it.
    Vectorized: the engaged events sorted by (user, time) as one float key,
    one ``searchsorted`` per query.
    """
    users = np.asarray(users, dtype=np.int64)
    times = np.asarray(times, dtype=np.float64)
    if users.shape != times.shape or users.ndim != 1:
        raise FeatureInputError(
            f"users and times must be 1-d and equally long, got {users.shape} and "
            f"{times.shape}: one time per query."
        )
    if length < 1:
        raise FeatureInputError(f"length must be >= 1, got {length}.")
    positives = interactions.positives()
    if len(positives) == 0 or len(users) == 0:
        return np.full((len(users), length), -1, dtype=np.int64)
    t0 = float(min(positives.time.min(), times.min()))
    span = float(max(positives.time.max(), times.max()) - t0) + 1.0
    keys = _time_keys(positives.user, positives.time, t0, span)
    order = np.argsort(keys, kind="stable")
    keys, items = keys[order], positives.item[order]
    first = np.searchsorted(keys, users.astype(np.float64) * span, side="left")
    stop = np.searchsorted(keys, _time_keys(users, times, t0, span), side="left")
    position = stop[:, None] - 1 - np.arange(length)[None, :]
    present = position >= first[:, None]
    return np.where(present, items[np.maximum(position, 0)], -1).astype(np.int64)


def history_profile(history: np.ndarray, inputs: ModelInputs) -> np.ndarray:
    """``(n, n_groups + 3)`` float32: what a history says about its user.

    Per row: the share of the (non-padded) history in each group (the genre
    mix), the mean and standard deviation of the items' log durations (the
    user's preferred length, which the world's truth rewards and an inner
    product of item ids cannot express), and ``log(1 + length)``. Computed from
    the list alone, so the gateway computes it from the list it reads.
    """
    history = np.asarray(history)
    n, width = history.shape
    present = history >= 0
    safe = np.maximum(history, 0)
    count = present.sum(axis=1)
    groups = np.where(present, inputs.item_group[safe], -1)
    ok = groups >= 0
    rows = np.broadcast_to(np.arange(n)[:, None], (n, width))
    share = (
        np.bincount(
            rows[ok] * inputs.n_groups + groups[ok], minlength=n * inputs.n_groups
        ).reshape(n, inputs.n_groups)
        / np.maximum(count, 1)[:, None]
    )
    durations = inputs.item_log_duration[safe]
    known = present & np.isfinite(durations)
    n_known = np.maximum(known.sum(axis=1), 1)
    values = np.where(known, durations, 0.0)
    mean = values.sum(axis=1) / n_known
    spread = np.sqrt(np.maximum((values**2).sum(axis=1) / n_known - mean**2, 0.0))
    return np.hstack(
        [share, mean[:, None], spread[:, None], np.log1p(count)[:, None]]
    ).astype(np.float32)


def _user_rows(
    inputs: ModelInputs,
    users: np.ndarray,
    history: np.ndarray,
    profile: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The user tower's dense and categorical rows (``profile``: if computed)."""
    if profile is None:
        profile = history_profile(history, inputs)
    dense = np.hstack([inputs.users.dense[users], profile])
    return dense.astype(np.float32), inputs.users.categorical[users]


def tower_examples(
    interactions: Interactions, inputs: ModelInputs, history_len: int = 50
) -> TwoTowerData:
    """One two-tower example per engaged event, the user as they were then.

    As :func:`~mlsd_lib.models.two_tower_data.two_tower_examples`, with the
    user's dense input extended by :func:`history_profile` of the example's own
    point-in-time history. Build from the whole log, then ``split_at`` a time.
    """
    _check_sizes(interactions, inputs)
    positives = interactions.positives()
    history = engaged_history_at(
        interactions, positives.user, positives.time, history_len
    )
    dense, categorical = _user_rows(inputs, positives.user, history)
    return TwoTowerData(
        user=positives.user,
        time=positives.time,
        item=positives.item,
        history=history,
        user_dense=dense,
        user_categorical=categorical,
        user_cardinalities=inputs.users.cardinalities,
        items=inputs.items,
    )


def user_queries(
    interactions: Interactions,
    inputs: ModelInputs,
    users: np.ndarray,
    time: float | np.ndarray,
    history_len: int = 50,
) -> TwoTowerData:
    """The user tower's input for ``users`` at ``time`` (one request each).

    What the gateway sends the user tower: the history of engaged plays strictly
    before ``time`` from ``interactions`` and its profile. There is no positive
    item: ``item`` is 0 in every row and nothing reads it.
    """
    _check_sizes(interactions, inputs)
    users = np.asarray(users, dtype=np.int64)
    times = np.broadcast_to(np.asarray(time, dtype=np.float64), users.shape).copy()
    history = engaged_history_at(interactions, users, times, history_len)
    dense, categorical = _user_rows(inputs, users, history)
    return TwoTowerData(
        user=users,
        time=times,
        item=np.zeros(len(users), np.int64),
        history=history,
        user_dense=dense,
        user_categorical=categorical,
        user_cardinalities=inputs.users.cardinalities,
        items=inputs.items,
    )


def _check_sizes(interactions: Interactions, inputs: ModelInputs) -> None:
    if (interactions.n_items, interactions.n_users) != (
        inputs.n_items,
        inputs.n_users,
    ):
        raise FeatureInputError(
            f"the log has {interactions.n_items} items and {interactions.n_users} "
            f"users but the inputs have {inputs.n_items} and {inputs.n_users}: build "
            "the inputs for the same catalogue and population (world_inputs of the "
            "same world, movielens_inputs of the same log)."
        )


# -- item statistics, as of the day before ----------------------------------------


def item_stats_before(
    history: Interactions, items: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """``(n, 4)`` float32 per (item, time): the item's record before that day.

    Over ``history``'s events of the item in the days before ``times``' day
    (``floor(t / 86400)``: a daily batch job's view, so nothing of the
    request's own day, its label included, is in it): ``log(1 + impressions)``,
    the engaged rate and the mean ``log`` minutes of engaged plays, both
    smoothed toward the whole log's value over the same days by
    :data:`RATE_PRIOR` pseudo-events (a title shown twice has no rate of its
    own yet), and the short-play rate (plays under 30 s per impression, 0
    where minutes are unknown): a clickbait signature, smoothed the same way.
    """
    items = np.asarray(items, dtype=np.int64)
    times = np.asarray(times, dtype=np.float64)
    day_start = np.floor(times / SECONDS_PER_DAY) * SECONDS_PER_DAY
    engaged = history.engaged.astype(bool)
    minutes = history.minutes.astype(np.float64)
    timed = engaged & np.isfinite(minutes) & (minutes > 0)
    columns = {
        "engaged": engaged.astype(np.float64),
        "timed": timed.astype(np.float64),
        "log_minutes": np.log(np.where(timed, minutes, 1.0)),
        "short": (~engaged & np.isfinite(minutes) & (minutes > 0)).astype(np.float64),
    }

    def sums(
        order: np.ndarray, lo: np.ndarray, hi: np.ndarray
    ) -> dict[str, np.ndarray]:
        out = {"shown": (hi - lo).astype(np.float64)}
        for name, values in columns.items():
            cumulative = np.concatenate([[0.0], np.cumsum(values[order])])
            out[name] = cumulative[hi] - cumulative[lo]
        return out

    # The item's own events before the day: sorted by (item, time) as one key.
    t0 = float(min(history.time.min(initial=0.0), day_start.min(initial=0.0)))
    span = float(max(history.time.max(initial=0.0), times.max(initial=0.0)) - t0) + 1
    keys = _time_keys(history.item, history.time, t0, span)
    order = np.argsort(keys, kind="stable")
    lo = np.searchsorted(keys[order], items.astype(np.float64) * span, side="left")
    hi = np.searchsorted(keys[order], _time_keys(items, day_start, t0, span), "left")
    own = sums(order, lo, hi)
    # Every item's events before the day: the prior (the log is in time order).
    end = np.searchsorted(history.time, day_start, side="left")
    overall = sums(np.arange(len(history)), np.zeros_like(end), end)
    shown0 = np.maximum(overall["shown"], 1.0)
    rate0 = overall["engaged"] / shown0
    short0 = overall["short"] / shown0
    logm0 = overall["log_minutes"] / np.maximum(overall["timed"], 1.0)
    denominator = own["shown"] + RATE_PRIOR
    return np.stack(
        [
            np.log1p(own["shown"]),
            (own["engaged"] + RATE_PRIOR * rate0) / denominator,
            (own["log_minutes"] + RATE_PRIOR * logm0) / (own["timed"] + RATE_PRIOR),
            (own["short"] + RATE_PRIOR * short0) / denominator,
        ],
        axis=1,
    ).astype(np.float32)


# -- the ranker's row ---------------------------------------------------------------


@torch.no_grad()
def two_tower_scores(
    model: TwoTower,
    inputs: ModelInputs,
    history: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    batch_size: int = 16384,
    *,
    profile: np.ndarray | None = None,
) -> np.ndarray:
    """``<user, item>`` of each row's pair (a cosine: both towers are unit norm)."""
    model.eval()
    item_emb = model.item_tower(
        torch.arange(inputs.n_items),
        torch.as_tensor(inputs.items.dense, dtype=torch.float32),
        torch.as_tensor(inputs.items.categorical, dtype=torch.int64),
    )
    out = np.empty(len(users), np.float32)
    for lo in range(0, len(users), batch_size):
        rows = slice(lo, lo + batch_size)
        dense, categorical = _user_rows(
            inputs,
            users[rows],
            history[rows],
            None if profile is None else profile[rows],
        )
        user_emb = model.user_tower(
            torch.as_tensor(history[rows], dtype=torch.int64),
            torch.as_tensor(dense),
            torch.as_tensor(categorical, dtype=torch.int64),
        )
        v = item_emb[torch.as_tensor(items[rows], dtype=torch.int64)]
        out[rows] = (user_emb * v).sum(dim=1).numpy()
    return out


def _content_similarity(
    history: np.ndarray, items: np.ndarray, content: np.ndarray
) -> np.ndarray:
    """Cosine between each item's content and its row's history mean content
    (0 for an empty history or no content); one history slot at a time, so
    memory stays at ``(rows, d)`` whatever the history length."""
    n, d = len(items), content.shape[1]
    if d == 0 or n == 0:
        return np.zeros(n, np.float32)
    total = np.zeros((n, d), np.float32)
    for slot in range(history.shape[1]):
        ids = history[:, slot]
        total += np.where((ids >= 0)[:, None], content[np.maximum(ids, 0)], 0.0)
    target = content[items]
    norms = np.linalg.norm(total, axis=1) * np.linalg.norm(target, axis=1)
    dots = np.einsum("ij,ij->i", total, target)
    return np.where(norms > 0, dots / np.maximum(norms, 1e-12), 0.0).astype(np.float32)


#: Rows whose history features are computed at once: memory stays at a few
#: ``(rows, history_len)`` arrays however many impressions a ranker trains on.
ROWS_PER_CHUNK = 1 << 16


def _chunks(n: int):
    for lo in range(0, n, ROWS_PER_CHUNK):
        yield slice(lo, min(lo + ROWS_PER_CHUNK, n))


def _history_crosses(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    inputs: ModelInputs,
    log: Interactions,
    history_len: int,
    two_tower: TwoTower | None,
) -> np.ndarray:
    """The history-against-item columns of :func:`ranker_features` (one chunk)."""
    history = engaged_history_at(log, users, times, history_len)
    _, genre_share = history_group_overlap(history, items, inputs.item_group)
    in_series, _ = history_group_overlap(history, items, inputs.item_series)
    profile = history_profile(history, inputs)
    g = inputs.n_groups
    mean_duration, length = profile[:, g], profile[:, g + 2]
    item_duration = inputs.item_log_duration[items]
    duration_gap = np.where(
        np.isfinite(item_duration) & (length > 0),
        np.abs(np.nan_to_num(item_duration) - mean_duration),
        0.0,
    )
    columns = [
        genre_share,
        np.log1p(in_series),
        duration_gap,
        length,
        (history == items[:, None]).any(axis=1),
        _content_similarity(history, items, inputs.item_content),
    ]
    if two_tower is not None:
        columns.append(
            two_tower_scores(two_tower, inputs, history, users, items, profile=profile)
        )
    return np.stack(columns, axis=1).astype(np.float32)


def ranker_features(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray,
    inputs: ModelInputs,
    log: Interactions,
    *,
    history_len: int = 50,
    two_tower: TwoTower | None = None,
    item_id: bool = True,
) -> EntityFeatures:
    """The ranker's input for each (user, item, time), from ``log`` before ``time``.

    Dense: the user's context, the item tower's content columns, the item's
    launch age *at that time* (``log(1 + days)``, 0 where unknown), the
    history crosses (share of the history in the item's genre, how many of its
    items are in the item's series, the distance of the item's log duration
    from the history's mean, ``log(1 + length)``, whether the item is in the
    history (a re-watch is rare), the cosine between its content and the
    history's mean content), :func:`item_stats_before` and, with
    ``two_tower``, the pair's two-tower score. Categorical: the user's and
    the item's (region, maturity limit; genre, kind, maturity) and, with
    ``item_id``, the item id (so quality the content does not show can be
    learned per item with enough impressions). ``log`` supplies both the
    engaged history and the item statistics, so pass every event known at the
    latest time.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    times = np.asarray(times, dtype=np.float64)
    if not (users.shape == items.shape == times.shape) or users.ndim != 1:
        raise FeatureInputError(
            f"users, items and times must be 1-d and equally long, got "
            f"{users.shape}, {items.shape} and {times.shape}."
        )
    _check_sizes(log, inputs)
    crosses = (
        np.concatenate(
            [
                _history_crosses(
                    users[rows],
                    items[rows],
                    times[rows],
                    inputs,
                    log,
                    history_len,
                    two_tower,
                )
                for rows in _chunks(len(users))
            ]
        )
        if len(users)
        else np.zeros((0, 6 + (two_tower is not None)), np.float32)
    )
    launched = inputs.launch_time[items]
    age_days = np.where(np.isfinite(launched), (times - launched) / SECONDS_PER_DAY, 0)
    columns = [
        inputs.users.dense[users],
        inputs.items.dense[items],
        np.log1p(np.maximum(age_days, 0.0))[:, None],
        crosses,
        item_stats_before(log, items, times),
    ]
    parts = [inputs.users.categorical[users], inputs.items.categorical[items]]
    cards = (*inputs.users.cardinalities, *inputs.items.cardinalities)
    if item_id:
        parts.append(items[:, None])
        cards = (*cards, inputs.n_items)
    categorical = np.hstack(parts)
    return EntityFeatures.from_arrays(
        np.hstack(columns).astype(np.float32), categorical, cards
    )
