"""A feed policy that retrains its two-tower model on the plays it caused.

Introduced in ``casestudies/recommender/07_feedback_loop.ipynb`` ("Feedback loops in the
open"). Every production recommender is trained on the log of the recommender before it,
which was itself trained on the log of the one before: after a few retrains, the model's
training data is mostly what the model chose to show.
:class:`TwoTowerFeedPolicy` is that system at the size of a simulation:

* **Serving**: each feed is the user's top ``feed_size`` items by the
  two-tower score (exact search over the catalogue), among the items the user
  may see today and has not watched. No ranker: a ranker trained on the same
  log closes the same loop a second time, and leaving it out keeps what the
  retrieval loss does (in-batch softmax with or without the logQ correction)
  visible. Optionally ``exploration`` reserves slots for items launched in the
  last ``new_days`` days, chosen by Thompson sampling on this policy's own
  counts (:func:`~mlsd_lib.reranking.batch_exploration.explore_feeds`), with
  the probability of each choice logged.
* **Learning**: :meth:`TwoTowerFeedPolicy.observe` sees what happened to its
  feeds, batch by batch: it appends engaged plays to each user's history
  (the user tower's input, read at request time as the streaming features
  would serve it), remembers what each user watched (never shown again) and
  counts impressions and engaged plays per item (the exploration posterior).
  :meth:`TwoTowerFeedPolicy.retrain` fits a fresh model of its recipe on the
  engaged plays it observed in the last ``window_days`` days: the loop.

Histories are kept as an ``(n_users, history_len)`` array updated in place,
newest first, so a batch costs a few array operations instead of a pass over
the whole log; a test checks they equal
:func:`~mlsd_lib.recsys.features.engaged_history_at` of the observed plays.
"""

from __future__ import annotations

import numpy as np
import torch

from mlsd_lib.errors import MlsdError
from mlsd_lib.models.training import torch_threads
from mlsd_lib.models.two_tower import embed_users
from mlsd_lib.models.two_tower_data import TwoTowerData
from mlsd_lib.recsys.features import (
    ModelInputs,
    history_profile,
    tower_examples,
    world_inputs,
)
from mlsd_lib.recsys.recipes import Retriever, TwoTowerRecipe, fit_two_tower
from mlsd_lib.reranking.batch_exploration import explore_feeds
from mlsd_lib.reranking.exploration import ExplorationConfig
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_feed import FeedRequest, FeedResponse
from mlsd_lib.worlds.recsys_log import RecsysLog, source_code
from mlsd_lib.worlds.recsys_policies import CatalogueTooSmall
from mlsd_lib.worlds.recsys_truth import (
    SECONDS_PER_DAY,
    pair_cells,
    sorted_union,
    top_k_rows,
)

__all__ = ["LoopPolicyError", "TwoTowerFeedPolicy", "push_histories"]


class LoopPolicyError(MlsdError, RuntimeError):
    """The policy cannot serve or retrain in its current state; says what to do."""


def push_histories(history: np.ndarray, users: np.ndarray, items: np.ndarray) -> None:
    """Prepend engaged ``items`` (in time order) to each user's row of ``history``.

    ``history`` is ``(n_users, L)`` item ids, newest first, -1 padded; it is
    updated in place and each row keeps its newest ``L``. Several plays of one
    user in the batch go in newest first, as
    :func:`~mlsd_lib.recsys.features.engaged_history_at` orders them.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.size == 0:
        return
    length = history.shape[1]
    order = np.argsort(users, kind="stable")  # each user's run, in time order
    u, it = users[order], items[order]
    unique, start, counts = np.unique(u, return_index=True, return_counts=True)
    run = np.repeat(np.arange(unique.size), counts)
    from_end = np.repeat(start + counts, counts) - 1 - np.arange(u.size)
    keep = from_end < length
    new = np.full((unique.size, length), -1, dtype=history.dtype)
    new[run[keep], from_end[keep]] = it[keep]
    shift = np.minimum(counts, length)[:, None]
    column = np.arange(length)[None, :]
    old = np.take_along_axis(history[unique], np.maximum(column - shift, 0), axis=1)
    history[unique] = np.where(column < shift, new, old)


class TwoTowerFeedPolicy:
    """Feeds from a two-tower model it retrains on its own plays (see module notes).

    ``world`` is the world (or fork) it serves, read for what users may see and
    for the observable feature tables. Call :meth:`observe` with the log it
    starts from, then :meth:`retrain` before serving.
    """

    def __init__(
        self,
        world: RecsysWorld,
        recipe: TwoTowerRecipe,
        *,
        exploration: ExplorationConfig | None = None,
        new_days: int = 7,
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        if new_days < 1:
            raise LoopPolicyError(f"new_days must be >= 1, got {new_days}.")
        self.world = world
        self.recipe = recipe
        self.exploration = exploration
        self.new_days = new_days
        self.seed = seed
        self.name = name or recipe.name
        self.version = f"{self.name}-untrained"
        n_users, n_items = world.n_users, world.n_items
        self.history = np.full((n_users, recipe.history_len), -1, dtype=np.int64)
        self.impressions = np.zeros(n_items, dtype=np.float64)
        self.engaged = np.zeros(n_items, dtype=np.float64)
        self._watched = np.empty(0, dtype=np.int64)
        self._plays: list[RecsysLog] = []
        self._visible: tuple[int, np.ndarray] | None = None
        self.model: Retriever | None = None
        self.train_positives = 0
        self.inputs: ModelInputs | None = None
        self._item_emb_t: torch.Tensor | None = None  # (dim, n_items)

    # -- learning -------------------------------------------------------------------

    def observe(self, log: RecsysLog) -> None:
        """Histories, watched items and per-item counts from ``log``'s outcomes."""
        if len(log) == 0:
            return
        engaged = log.engaged
        users, items = log.user[engaged], log.item[engaged]
        push_histories(self.history, users, items)
        self._watched = sorted_union(self._watched, users * self.world.n_items + items)
        n = self.world.n_items
        self.impressions += np.bincount(log.item, minlength=n)
        self.engaged += np.bincount(items, minlength=n)
        self._plays.append(log.subset(engaged))

    @property
    def plays(self) -> RecsysLog:
        """Every engaged play observed so far, in time order."""
        if not self._plays:
            return RecsysLog.empty(self.world.n_users, self.world.n_items)
        if len(self._plays) > 1:
            self._plays = [RecsysLog.concat(self._plays)]
        return self._plays[0]

    def retrain(
        self,
        day: int,
        *,
        window_days: int | None = 14,
        epochs: int = 3,
        plays: RecsysLog | None = None,
    ) -> Retriever:
        """A fresh model of the recipe on the plays of the ``window_days`` days
        before ``day`` (all observed plays with ``None``), features as of ``day``.

        ``plays`` replaces the policy's own observed plays with another
        policy's (a control outside the loop); serving still reads this
        policy's own histories. The seed is ``seed + day``: two policies with
        one recipe retrained on the same plays on the same day get the same
        model.
        """
        plays = self.plays if plays is None else plays.subset(plays.engaged)
        if len(plays) == 0:
            raise LoopPolicyError(
                "the policy has observed no engaged play to retrain on: observe a "
                "log with plays first (the log it starts from)."
            )
        inputs = world_inputs(self.world, day)
        examples = tower_examples(
            plays.to_interactions(), inputs, self.recipe.history_len
        )
        end = day * SECONDS_PER_DAY
        keep = examples.time < end
        if window_days is not None:
            keep &= examples.time >= end - window_days * SECONDS_PER_DAY
        train = examples.subset(keep)
        if len(train) == 0:
            raise LoopPolicyError(
                f"no engaged play to retrain on before day {day} (window "
                f"{window_days} days): observe a log with plays first."
            )
        self.model = fit_two_tower(
            train, None, self.recipe, seed=self.seed + day, epochs=epochs
        )
        self.train_positives = len(train)
        self.inputs = inputs
        item_emb = np.asarray(self.model.item_embeddings, dtype=np.float32)
        self._item_emb_t = torch.from_numpy(np.ascontiguousarray(item_emb.T))
        self.version = f"{self.name}@day{day}"
        return self.model

    def known_items(self) -> np.ndarray:
        """(n_items,) bool: the items the current model has an id vector for
        (a play, or a place in a history, in its training window); the others
        it embeds from content alone, through the unknown row."""
        if self.model is None or self.model.two_tower is None:
            raise LoopPolicyError("the policy has no model yet: call retrain(day).")
        return self.model.two_tower.item_tower.ids.known[:-1].numpy().copy()

    # -- serving --------------------------------------------------------------------

    def user_scores(self, users: np.ndarray) -> np.ndarray:
        """``(len(users), n_items)`` two-tower scores from the current histories
        (no filter applied)."""
        if self.model is None or self.inputs is None or self._item_emb_t is None:
            raise LoopPolicyError(
                "the policy has no model yet: call retrain(day) after observing "
                "the log it starts from."
            )
        users = np.asarray(users, dtype=np.int64)
        inputs = self.inputs
        history = self.history[users]
        dense = np.hstack([inputs.users.dense[users], history_profile(history, inputs)])
        queries = TwoTowerData(
            user=users,
            time=np.zeros(len(users)),
            item=np.zeros(len(users), dtype=np.int64),
            history=history,
            user_dense=dense.astype(np.float32),
            user_categorical=inputs.users.categorical[users],
            user_cardinalities=inputs.users.cardinalities,
            items=inputs.items,
        )
        two_tower = self.model.two_tower
        if two_tower is None:  # fit_two_tower always returns one; a caller's may not
            raise LoopPolicyError(f"model {self.model.name!r} is not a two-tower.")
        user_emb = embed_users(two_tower, queries, num_threads=1)
        with torch_threads(1):  # numpy's BLAS threads wait on a busy 2-core box
            scores = torch.from_numpy(user_emb) @ self._item_emb_t
        return scores.numpy()

    def _visible_by_cell(self, day: int) -> np.ndarray:
        """(cells, n_items) bool: what each (region, maturity) cell may see on day."""
        if self._visible is None or self._visible[0] != day:
            catalogue = self.world.eligible_catalogue(day)
            mask = np.zeros((self.world.config.n_cells, self.world.n_items), bool)
            mask[:, catalogue.available] = catalogue.mask
            self._visible = (day, mask)
        return self._visible[1]

    def masked_scores(self, users: np.ndarray, day: int) -> np.ndarray:
        """:meth:`user_scores` with ``-inf`` where the user may not see the item
        on ``day`` (not launched, region, maturity) or has watched it."""
        users = np.asarray(users, dtype=np.int64)
        scores = self.user_scores(users)
        visible = self._visible_by_cell(day)[self.world.user_cells(users)]
        scores[~visible] = -np.inf
        n = self.world.n_items
        rows, cols = pair_cells(self._watched, n, users, np.arange(n))
        scores[rows, cols] = -np.inf
        return scores

    def new_items(self, day: int) -> np.ndarray:
        """The exploration pool on ``day``: items launched in the last ``new_days``."""
        launch = self.world.items.launch_day
        return np.flatnonzero((launch <= day) & (launch > day - self.new_days))

    def __call__(self, request: FeedRequest) -> FeedResponse:
        k = request.feed_size
        scores = self.masked_scores(request.user, request.day)
        with torch_threads(1):
            values, ranked = top_k_rows(scores, k)
        if ranked.shape[1] < k or np.isneginf(values).any():
            raise CatalogueTooSmall(
                f"a user has fewer than feed_size={k} eligible, unwatched items on "
                f"day {request.day}: build the world with more items (n_items)."
            )
        retrieval = source_code("retrieval")
        if self.exploration is None or self.exploration.n_slots == 0:
            items = ranked
            propensity = np.ones(items.shape)
            source = np.full(items.shape, retrieval, dtype=np.int8)
            return FeedResponse(items, propensity, source, self.version)
        pool = self.new_items(request.day)
        first = int(request.request_id[0]) if len(request) else 0
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x100B, first]))
        feeds = explore_feeds(
            ranked,
            pool,
            self.impressions[pool],
            self.engaged[pool],
            rng,
            allowed=np.isfinite(scores[:, pool]),
            page_size=k,
            config=self.exploration,
        )
        source = np.where(feeds.explored, source_code("explore"), retrieval)
        return FeedResponse(
            feeds.items, feeds.propensity, source.astype(np.int8), self.version
        )
