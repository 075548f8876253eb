"""Recall sliced by a label per item: the short head and the long tail, new and old.

Fast tests on hand-built lists whose answers can be counted by eye.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.item_slices import (
    ItemSliceError,
    head_items,
    recall_by_item_group,
)
from mlsd_lib.evaluation.ranking import RelevantItems, recall_at_k


def test_the_head_is_the_fewest_top_items_holding_the_share_of_plays():
    counts = np.array([1, 50, 0, 30, 19])  # 100 plays: item 1 alone holds half
    assert head_items(counts, 0.5).tolist() == [False, True, False, False, False]
    # 60% needs item 1 (50) and item 3 (30): the item that crosses the share is in
    assert head_items(counts, 0.6).tolist() == [False, True, False, True, False]
    # never-played items are always tail, however large the share
    assert not head_items(counts, 0.99)[2]


def test_ties_go_to_the_lower_id():
    assert head_items(np.array([5, 5, 5, 5]), 0.25).tolist() == [
        True,
        False,
        False,
        False,
    ]


def test_sliced_recalls_count_only_the_labels_items():
    ranked = np.array([[0, 1, -1], [2, 3, -1]])
    relevant = RelevantItems.from_lists([[0, 4], [3, 5]])
    label = np.array(["head", "tail", "head", "head", "tail", "tail"])
    groups = {g.label: g for g in recall_by_item_group(ranked, relevant, label, 2)}
    # head: user 0 holds item 0 (found), user 1 holds item 3 (found)
    assert groups["head"].recall == 1.0
    assert (groups["head"].users, groups["head"].items) == (2, 2)
    # tail: items 4 and 5, neither retrieved
    assert groups["tail"].recall == 0.0
    overall = recall_at_k(ranked, relevant, 2)
    assert overall == pytest.approx(0.5)  # the average hides the split


def test_a_label_nobody_holds_is_nan_with_zero_users():
    ranked = np.array([[0, 1]])
    relevant = RelevantItems.from_lists([[0]])
    groups = recall_by_item_group(ranked, relevant, np.array(["a", "a", "b"]), 2)
    assert [g.label for g in groups] == ["a", "b"]
    assert np.isnan(groups[1].recall) and groups[1].users == 0


def test_errors_name_the_fix():
    with pytest.raises(ItemSliceError, match="one label per item of the catalogue"):
        recall_by_item_group(
            np.array([[0]]), RelevantItems.from_lists([[5]]), np.array(["a"]), 1
        )
    with pytest.raises(ItemSliceError, match="not all zero"):
        head_items(np.zeros(3))
    with pytest.raises(ItemSliceError, match=r"head_mass must lie in \(0, 1\)"):
        head_items(np.ones(3), 1.0)
    assert issubclass(ItemSliceError, MlsdError)
