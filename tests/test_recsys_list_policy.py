"""RankedListPolicy: precomputed lists served to the world, started titles skipped.

Fast tests: hand-made requests and logs for the serving rule, and one tiny
world day for the contract with the simulator.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.recsys.arms import run_arms
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_feed import FeedRequest
from mlsd_lib.worlds.recsys_list_policy import ListPolicyError, RankedListPolicy
from mlsd_lib.worlds.recsys_log import RecsysLog


def request(users, feed_size=2):
    users = np.asarray(users, dtype=np.int64)
    n = len(users)
    return FeedRequest(users, np.zeros(n), np.arange(n), day=0, feed_size=feed_size)


def clicks(users, items, n_users=10, n_items=10):
    users, items = np.asarray(users), np.asarray(items)
    n = len(users)
    return RecsysLog(
        request_id=np.arange(n),
        user=users.astype(np.int64),
        item=items.astype(np.int64),
        position=np.zeros(n, np.int16),
        time=np.zeros(n),
        source=np.zeros(n, np.int8),
        propensity=np.full(n, np.nan),
        policy=np.zeros(n, np.int16),
        clicked=np.ones(n, bool),
        engaged=np.zeros(n, bool),
        minutes=np.zeros(n, np.float32),
        true_engaged_p=np.zeros(n, np.float32),
        policies=("x",),
        n_users=n_users,
        n_items=n_items,
    )


def test_serves_the_head_of_each_users_list_and_skips_what_they_started():
    policy = RankedListPolicy([5, 2], [[1, 2, 3, 4], [7, 8, 9, -1]], version="v")
    first = policy(request([2, 5]))
    assert first.items.tolist() == [[7, 8], [1, 2]] and first.version == "v"
    policy.observe(clicks([5], [1]))  # user 5 started item 1; user 2 started none
    assert policy(request([5, 2])).items.tolist() == [[2, 3], [7, 8]]


def test_started_titles_fill_the_page_when_fresh_ones_run_out():
    policy = RankedListPolicy([0], [[1, 2, 3]])
    policy.observe(clicks([0, 0], [1, 3]))
    assert policy(request([0], feed_size=3)).items.tolist() == [[2, 1, 3]]


def test_missing_users_and_short_lists_are_refused():
    policy = RankedListPolicy([0], [[1, -1]])
    with pytest.raises(ListPolicyError, match="user 3 has no list"):
        policy(request([3]))
    with pytest.raises(ListPolicyError, match="fewer than feed_size=2 items"):
        policy(request([0]))
    with pytest.raises(ListPolicyError, match="must not repeat"):
        RankedListPolicy([1, 1], [[0], [0]])
    assert issubclass(ListPolicyError, MlsdError)


def test_two_arms_with_the_same_lists_log_the_same_day():
    world = RecsysWorld(RecsysWorldConfig(n_users=300, n_items=200, seed=5))
    catalogue = world.eligible_catalogue(0)
    users = np.unique(world.sessions(0)[0])
    cells = world.user_cells(users)
    depth = 40
    lists = np.stack(  # each user's first 40 eligible items: valid feeds
        [catalogue.items[catalogue.offsets[c] : catalogue.offsets[c] + depth]
         for c in cells]
    )  # fmt: skip
    make = lambda fork: RankedListPolicy(users, lists)  # noqa: E731
    logs = run_arms(world, {"a": make, "b": make}, start_day=0, users=users)
    a, b = logs["a"], logs["b"]
    assert len(a) > 0 and np.array_equal(a.item, b.item)
    assert np.array_equal(a.clicked, b.clicked)  # common random numbers
    # a clicked title never comes back after the hour it was clicked in (the
    # world shows the policy each hour's log when the hour ends)
    hour = (a.time // 3600).astype(int)
    clicked_in = {}
    for u, i, h, c in zip(a.user, a.item, hour, a.clicked, strict=True):
        if (u, i) in clicked_in:
            assert h == clicked_in[u, i]
        if c:
            clicked_in.setdefault((u, i), h)
    assert clicked_in  # the check above had clicks to check
