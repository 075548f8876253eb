"""A feed policy that serves precomputed ranked lists: offline scores, online arms.

Introduced in ``casestudies/recommender/09_interview_followups.ipynb`` (the follow-up
"How do you optimize for watch time rather than clicks?"). Offline, a scoring is
compared on the candidates a log happened to hold; the question an interviewer asks is
what *users* would do with the feed it ranks. :class:`RankedListPolicy` turns any
ranking of each user's candidates (by P(click), by P(engaged) x E[minutes], by anything)
into a policy the world can run, so several scorings become arms of
:func:`~mlsd_lib.recsys.arms.run_arms` and meet the same sessions with the same random
numbers.

Each request gets the first ``feed_size`` items of its user's list that the
user has not **started** (clicked) earlier in the simulation: a title someone
opened does not come back at the top of their next feed, as the feed's
"already watched" filter does for engaged plays. Clicks rather than engaged
plays, so that a clickbait title a user opened and abandoned is not pushed at
them all day, which would flatter no objective. When a list runs out of
unstarted items the started ones fill the page in list order; a list shorter
than the page is an error (pass deeper lists). The lists are fixed: the
policy does not re-rank during the day (a nightly batch would not), which is
the same for every arm.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.recsys_feed import FeedRequest, FeedResponse
from mlsd_lib.worlds.recsys_log import RecsysLog

__all__ = ["ListPolicyError", "RankedListPolicy"]


class ListPolicyError(MlsdError, ValueError):
    """Lists that cannot serve the requests; the message says which and why."""


class RankedListPolicy:
    """Serve ``lists[j]`` (best first, -1 padded) to user ``users[j]``.

    ``users`` are unique user ids; ``lists`` is ``(len(users), depth)`` item
    ids. ``version`` names the scoring in the log.
    """

    def __init__(
        self, users: ArrayLike, lists: ArrayLike, *, version: str = "ranked-lists"
    ) -> None:
        users = np.asarray(users, dtype=np.int64)
        lists = np.asarray(lists)
        if users.ndim != 1 or users.size == 0:
            raise ListPolicyError(
                f"users must be a non-empty 1-D array of user ids, got shape "
                f"{users.shape}."
            )
        if len(np.unique(users)) != len(users):
            raise ListPolicyError("users must not repeat: one list per user.")
        if (
            lists.ndim != 2
            or len(lists) != len(users)
            or not np.issubdtype(lists.dtype, np.integer)
        ):
            raise ListPolicyError(
                f"lists must be an integer array (users={len(users)}, depth), got "
                f"{lists.dtype} of shape {lists.shape}."
            )
        order = np.argsort(users)
        self._users = users[order]
        self._lists = lists[order].astype(np.int64)
        self._span = int(max(self._lists.max(initial=0), 0)) + 1
        self._started = np.empty(0, dtype=np.int64)  # user * span + item, sorted
        self.version = version

    def observe(self, log: RecsysLog) -> None:
        """Remember what each user clicked (it is not served to them again)."""
        clicked = log.clicked & (log.item < self._span)
        keys = log.user[clicked] * self._span + log.item[clicked]
        self._started = np.union1d(self._started, keys)

    def __call__(self, request: FeedRequest) -> FeedResponse:
        rows = np.searchsorted(self._users, request.user)
        rows = np.minimum(rows, len(self._users) - 1)
        missing = self._users[rows] != request.user
        if missing.any():
            raise ListPolicyError(
                f"user {request.user[missing][0]} has no list ({missing.sum()} such "
                "requests in this batch): pass a list for every user the world "
                "simulates (simulate(..., users=...) restricts it)."
            )
        lists = self._lists[rows]
        keys = request.user[:, None] * self._span + np.maximum(lists, 0)
        started = np.isin(keys, self._started)
        # 0: fresh, 1: started (fills a page only when fresh items run out),
        # 2: padding. A stable sort keeps list order within each class.
        rank = np.where(lists < 0, 2, started.astype(np.int64))
        order = np.argsort(rank, axis=1, kind="stable")[:, : request.feed_size]
        items = np.take_along_axis(lists, order, axis=1)
        short = (items < 0).any(axis=1) | (items.shape[1] < request.feed_size)
        if short.any():
            raise ListPolicyError(
                f"user {request.user[short][0]}'s list holds fewer than "
                f"feed_size={request.feed_size} items: retrieve deeper lists."
            )
        return FeedResponse(items, version=self.version)
