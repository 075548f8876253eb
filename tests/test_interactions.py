"""The recommender's event shape: validation, time order, splits."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.datasets import Interactions, InteractionsError


def events() -> Interactions:
    return Interactions.from_arrays(
        user=[0, 1, 0, 2],
        item=[3, 1, 2, 3],
        time=[30.0, 10.0, 20.0, 40.0],
        engaged=[1, 0, 1, 1],
        n_items=5,
    )


def test_from_arrays_sorts_by_time_and_fills_unknown_columns():
    log = events()
    assert log.time.tolist() == [10.0, 20.0, 30.0, 40.0]
    assert log.user.tolist() == [1, 0, 0, 2]
    assert log.item.tolist() == [1, 2, 3, 3]
    assert np.isnan(log.minutes).all() and (log.position == -1).all()
    assert (log.n_users, log.n_items) == (3, 5)


def test_split_positives_and_counts():
    before, after = events().split_at(30.0)
    assert before.time.tolist() == [10.0, 20.0] and after.time.tolist() == [30.0, 40.0]
    assert events().positives().item.tolist() == [2, 3, 3]
    assert events().item_counts().tolist() == [0, 1, 1, 2, 0]


def test_bad_input_says_what_to_do():
    with pytest.raises(
        InteractionsError, match=r"indices must lie in \[0, n_items=2\)"
    ):
        Interactions.from_arrays([0], [4], [0.0], [True], n_items=2)
    log = events()
    with pytest.raises(InteractionsError, match="must be non-decreasing"):
        Interactions(
            log.user,
            log.item,
            log.time[::-1].copy(),
            log.engaged,
            log.minutes,
            log.position,
            log.n_users,
            log.n_items,
        )
    with pytest.raises(InteractionsError, match="bool array of length 4"):
        log.subset(np.array([1, 0, 1, 0]))
