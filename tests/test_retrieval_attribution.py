"""Miss attribution: each outcome on a hand-made query, the pipeline order, the
summaries, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.retrieval_attribution import (
    AttributionInputError,
    MissAttribution,
    attribute_misses,
)

TRUTH = np.array([1, 2, 3, 4, 5, 6])
# Exact top 3 per query; query 1 (product 2) and 5 (product 6) are lost by it.
EXACT = np.array([[1, 9, 8], [9, 8, 7], [3, 9, -1], [4, 9, 8], [5, 9, 8], [9, 8, 7]])
ANN = np.array([[1, 9, 8], [9, 8, 7], [9, 8, 7], [4, 9, -1], [5, 9, 8], [6, 9, 8]])
FINAL = np.array([[9, 1], [9, 8], [9, 8], [9, 8], [5, 9], [6, 9]])


def test_each_outcome_by_hand() -> None:
    result = attribute_misses(TRUTH, EXACT, {"index": ANN, "rerank": FINAL})
    assert result.outcomes == ("hit", "embedder", "index", "rerank")
    # q0 found everywhere; q1 exact misses; q2 ANN misses; q3 dropped after
    # ANN; q4 found; q5 exact misses but the pipeline found it (a hit).
    assert result.labels.tolist() == [
        "hit",
        "embedder",
        "index",
        "rerank",
        "hit",
        "hit",
    ]
    assert result.counts == {"hit": 3, "embedder": 1, "index": 1, "rerank": 1}
    assert result.rates == {
        "hit": 0.5,
        "embedder": 1 / 6,
        "index": 1 / 6,
        "rerank": 1 / 6,
    }
    assert result.miss_shares == pytest.approx(
        {"embedder": 1 / 3, "index": 1 / 3, "rerank": 1 / 3}
    )
    summary = result.as_dict()
    assert summary["n_queries"] == 6 and summary["counts"]["hit"] == 3


def test_more_stages_split_the_last_one_in_pipeline_order() -> None:
    collapse = np.array([[1, 9], [9, 8], [9, 8], [4, 9], [5, 9], [6, 9]])
    dedup = np.array([[1, 9], [9, 8], [9, 8], [9, 8], [5, 9], [6, 9]])
    filters = np.array([[9, 8], [9, 8], [9, 8], [9, 8], [5, 9], [6, 9]])
    stages = {"index": ANN, "collapse": collapse, "dedup": dedup, "filters": filters}
    result = attribute_misses(TRUTH, EXACT, stages)
    # q0 survives collapse and dedup, then a filter drops it; q3 dies in dedup.
    assert result.labels.tolist() == [
        "filters",
        "embedder",
        "index",
        "dedup",
        "hit",
        "hit",
    ]
    assert result.counts["collapse"] == 0  # every stage is listed, zeros too
    assert sum(result.rates.values()) == pytest.approx(1.0)


def test_the_first_stage_that_lost_it_is_blamed() -> None:
    # Lost by the index, back in a later list (a different depth), lost again.
    result = attribute_misses([1], [[1]], {"a": [[2]], "b": [[1]], "c": [[3]]})
    assert result.labels.tolist() == ["a"]


def test_no_misses_and_no_queries() -> None:
    perfect = attribute_misses([1, 2], [[1], [2]], {"final": [[1], [2]]})
    assert perfect.rates["hit"] == 1.0
    assert all(math.isnan(v) for v in perfect.miss_shares.values())
    empty = attribute_misses(
        np.zeros(0, int), np.zeros((0, 3), int), {"final": np.zeros((0, 2), int)}
    )
    assert isinstance(empty, MissAttribution) and empty.n_queries == 0
    assert empty.counts == {"hit": 0, "embedder": 0, "final": 0}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((TRUTH, EXACT, {}), r"stages must map at least one stage name"),
        ((TRUTH, EXACT, [ANN]), r"stages must map at least one stage name"),
        (
            (TRUTH, EXACT, {"embedder": FINAL}),
            r"stage names must be non-empty strings other than 'hit' and 'embedder'",
        ),
        (
            (TRUTH, EXACT[:3], {"final": FINAL}),
            r"exact_products must be a 2-D array with one row per query \(6\), got "
            r"shape \(3, 3\); pad short rows with -1",
        ),
        (
            (TRUTH, EXACT, {"final": FINAL.astype(float)}),
            r"stages\['final'\] must hold integer product ids",
        ),
        ((TRUTH - 2, EXACT, {"final": FINAL}), r"true_products must be .*>= 0"),
        ((TRUTH[:, None], EXACT, {"final": FINAL}), r"true_products must be a 1-D"),
    ],
)
def test_errors(arguments: tuple, message: str) -> None:
    with pytest.raises(AttributionInputError, match=message) as caught:
        attribute_misses(*arguments)
    assert isinstance(caught.value, MlsdError) and isinstance(caught.value, ValueError)
