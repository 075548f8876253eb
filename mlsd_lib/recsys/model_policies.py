"""Trained models as the world's feed policy, and the policies an experiment needs.

Introduced in ``casestudies/recommender/05_evaluation.ipynb`` (step 5, "Offline and
online evaluation"). Offline metrics score rankings of logged data; an online test must
let a model *choose what users see* and watch what they do. In the world that means a
:class:`~mlsd_lib.worlds.recsys_feed.Policy`:

* :class:`ModelFeedPolicy`: a fitted retriever
  (:class:`~mlsd_lib.recsys.recipes.Retriever`) and, optionally, the two-head
  ranker (:class:`~mlsd_lib.recsys.recipes.TrainedRanker`) serving feeds. Per
  hourly batch of requests: each user's engaged history up to the request
  (what the streaming features hold), the user tower's query, the top
  ``candidates`` items by the retriever's score among what the user may see
  and has not played, ordered by the ranker's ``P(engaged) x E[minutes]``
  when there is one (else by the retriever's score), the first ``feed_size``
  shown. Deterministic, so every propensity is 1. It is the served feed of
  :mod:`~mlsd_lib.recsys.feed` without its network hops, diversity rules and
  exploration slot: the models decide, nothing else, which is what an
  experiment on the models should compare.
* :class:`SlotMixturePolicy`: each slot, independently with probability
  ``share``, shows the second policy's item instead of the first's. A dial
  between two policies: at ``share`` 0 it is the first, at 1 the second, and
  in between its value moves linearly from one to the other (slots do not
  interact in the world), which makes it a family of targets at a known
  distance from a logging policy.
* :func:`frozen_policy`: a factory of copies of a policy *as it is now*, its
  memory of what it showed and what was played included, each bound to the
  fork it serves. An experiment's control arm must be the production policy
  as it stood when the experiment began, not a fresh one with no memory.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import rank_top_k
from mlsd_lib.recsys.features import ModelInputs, user_queries
from mlsd_lib.recsys.recipes import Retriever, TrainedRanker
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_feed import FeedRequest, FeedResponse, Policy
from mlsd_lib.worlds.recsys_log import RecsysLog, source_code
from mlsd_lib.worlds.recsys_truth import pair_cells

__all__ = [
    "FeedPolicyError",
    "ModelFeedPolicy",
    "SlotMixturePolicy",
    "frozen_policy",
]


class FeedPolicyError(MlsdError, ValueError):
    """A policy cannot be built or cannot fill a feed; the message says why."""


class ModelFeedPolicy:
    """A retriever, and optionally a ranker, choosing every user's feed.

    ``known`` is the log the models were trained on (or any log up to the
    first request): the histories and item statistics start from it, and grow
    with every batch the policy observes. ``inputs`` are the models' tables
    (:func:`~mlsd_lib.recsys.features.world_inputs`). ``candidates`` items are
    retrieved per request (at least the feed size); with a ``ranker`` they are
    re-ordered by its score at the request's time.
    """

    def __init__(
        self,
        world: RecsysWorld,
        inputs: ModelInputs,
        retriever: Retriever,
        known: RecsysLog,
        *,
        ranker: TrainedRanker | None = None,
        candidates: int = 100,
        version: str | None = None,
    ) -> None:
        if candidates < world.config.feed_size:
            raise FeedPolicyError(
                f"candidates ({candidates}) must be at least the feed size "
                f"({world.config.feed_size}): the feed is cut from them."
            )
        if (inputs.n_items, inputs.n_users) != (world.n_items, world.n_users):
            raise FeedPolicyError(
                f"the inputs have {inputs.n_items} items and {inputs.n_users} users "
                f"but the world {world.n_items} and {world.n_users}: build them "
                "with world_inputs of this world."
            )
        self.world = world
        self.inputs = inputs
        self.retriever = retriever
        self.ranker = ranker
        self.candidates = int(candidates)
        self.version = version or (
            f"{retriever.name}+ranker" if ranker is not None else retriever.name
        )
        self._parts: list[RecsysLog] = [known]
        self._engaged_parts: list[RecsysLog] = [known.subset(known.engaged)]
        self._cache: dict[str, Any] = {}

    def observe(self, log: RecsysLog) -> None:
        """Add a batch's impressions and plays to what the features read."""
        self._parts.append(log)
        self._engaged_parts.append(log.subset(log.engaged))
        self._cache.clear()

    def _known(self, engaged_only: bool):
        """Everything observed as model input (cached until the next batch)."""
        key = "engaged" if engaged_only else "all"
        if key not in self._cache:
            parts = self._engaged_parts if engaged_only else self._parts
            merged = RecsysLog.concat(parts)
            parts[:] = [merged]  # later concatenations start from one piece
            self._cache[key] = merged.to_interactions()
        return self._cache[key]

    def _watched_keys(self) -> np.ndarray:
        if "watched" not in self._cache:
            positives = self._known(engaged_only=True)
            self._cache["watched"] = np.unique(
                positives.user * self.world.n_items + positives.item
            )
        return self._cache["watched"]

    def __call__(self, request: FeedRequest) -> FeedResponse:
        n_items = self.world.n_items
        users = np.asarray(request.user, dtype=np.int64)
        history = self._known(engaged_only=True)
        queries = user_queries(history, self.inputs, users, request.time)
        scores = np.asarray(self.retriever.scores(queries), dtype=np.float64)
        catalogue = self.world.eligible_catalogue(request.day)
        visible = np.zeros((len(users), n_items), dtype=bool)
        visible[:, catalogue.available] = catalogue.mask[self.world.user_cells(users)]
        rows, cols = pair_cells(
            self._watched_keys(), n_items, users, np.arange(n_items)
        )
        visible[rows, cols] = False
        scores[~visible] = -np.inf
        top = rank_top_k(scores, self.candidates)
        k = request.feed_size
        if (top[:, k - 1] < 0).any():
            raise FeedPolicyError(
                f"a user has fewer than feed_size={k} items they may see and have "
                f"not played on day {request.day}: build the world with more items."
            )
        if self.ranker is not None:
            top = self._rank(users, np.asarray(request.time), top)
        items = top[:, :k]
        return FeedResponse(
            items,
            np.ones(items.shape),
            np.full(items.shape, source_code("retrieval"), dtype=np.int8),
            self.version,
        )

    def _rank(self, users: np.ndarray, times: np.ndarray, top: np.ndarray):
        """Re-order each row's retrieved items by the ranker (padding last)."""
        b, c = top.shape
        present = top >= 0
        row = np.repeat(np.arange(b), c)[present.reshape(-1)]
        items = top[present]
        prediction = self.ranker.predict(  # type: ignore[union-attr]
            users[row], items, times[row], self._known(engaged_only=False)
        )
        score = np.full((b, c), -np.inf)
        score[present] = prediction.score
        order = np.lexsort((top, -score), axis=1)  # score down, then id up
        return np.take_along_axis(top, order, axis=1)


class SlotMixturePolicy:
    """Slot by slot, ``second``'s item with probability ``share``, else ``first``'s.

    Both policies answer every request and observe every batch (they see what
    users were actually shown). The coin of each slot is drawn from
    ``(seed, first request id of the batch)``, so two runs agree. The
    propensities of a mixed feed are not logged (NaN): its log is for
    measuring its value, not for learning from.
    """

    def __init__(
        self, first: Policy, second: Policy, share: float, *, seed: int = 0
    ) -> None:
        if not 0.0 <= share <= 1.0:
            raise FeedPolicyError(
                f"share (the probability of the second policy's item in a slot) "
                f"must be in [0, 1], got {share}."
            )
        self.first, self.second = first, second
        self.share = float(share)
        self.seed = seed
        names = (getattr(first, "version", "?"), getattr(second, "version", "?"))
        self.version = f"{names[0]}|{names[1]}@{self.share:g}"

    def observe(self, log: RecsysLog) -> None:
        """Forward the batch to both policies."""
        for policy in (self.first, self.second):
            observe = getattr(policy, "observe", None)
            if observe is not None:
                observe(log)

    def __call__(self, request: FeedRequest) -> FeedResponse:
        a = self.first(request)
        b = self.second(request)
        items_a, items_b = np.asarray(a.items), np.asarray(b.items)
        if items_a.shape != items_b.shape:
            raise FeedPolicyError(
                f"the two policies returned feeds of shapes {items_a.shape} and "
                f"{items_b.shape}: a slot-by-slot mixture needs equal feeds."
            )
        first = int(request.request_id[0]) if len(request) else 0
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x5107, first]))
        take_b = rng.random(items_a.shape) < self.share
        source_a = np.zeros(items_a.shape, np.int8) if a.source is None else a.source
        source_b = np.zeros(items_b.shape, np.int8) if b.source is None else b.source
        return FeedResponse(
            np.where(take_b, items_b, items_a),
            None,
            np.where(take_b, source_b, source_a).astype(np.int8),
            self.version,
        )


def frozen_policy(policy: Policy, **changes: Any) -> Callable[[RecsysWorld], Policy]:
    """A factory of independent copies of ``policy`` as it is now.

    Each call copies the policy's state (what it showed, what it saw played,
    its candidate pools) and binds every reference to its world to the fork it
    is given, so the copy reads that fork and nothing the original does later
    reaches it. ``changes`` set attributes on each copy (e.g. ``epsilon=0.0``
    for the same legacy feed without exploration); an attribute the policy
    does not have is an error.
    """
    for name in changes:
        if not hasattr(policy, name):
            raise FeedPolicyError(
                f"{type(policy).__name__} has no attribute {name!r} to change; "
                f"its public attributes: "
                f"{sorted(k for k in vars(policy) if not k.startswith('_'))}."
            )
    world = getattr(policy, "world", None)

    def make(fork: RecsysWorld) -> Policy:
        memo = {} if world is None else {id(world): fork}
        twin = copy.deepcopy(policy, memo)
        for name, value in changes.items():
            setattr(twin, name, value)
        return twin

    return make
