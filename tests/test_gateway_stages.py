"""The generic pieces a multi-stage route is built from: stage budgets, dependency
timeouts, candidate sources merged with provenance, models with several tensors.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mlsd_lib.serving.gateway.budgets import (
    BudgetError,
    DependencyPools,
    StageClock,
    StageTimeout,
)
from mlsd_lib.serving.gateway.candidates import (
    CandidateSourceError,
    SourceCandidates,
    merge_candidates,
)
from mlsd_lib.serving.gateway.model_calls import (
    ModelEndpoint,
    SchemaError,
    call_model,
    schema_columns,
    schema_tensors,
)
from mlsd_lib.serving.gateway.scoring import ModelFailed
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.tensors import TensorSpec


# -- stage budgets and dependency timeouts ------------------------------------------
def test_a_stage_clock_times_each_stage_and_names_those_over_budget():
    clock = StageClock({"fast": 1000.0, "slow": 1.0, "skipped": 5.0})
    with clock.stage("fast"):
        pass
    with clock.stage("slow"):
        time.sleep(0.005)
    with clock.stage("slow"):  # a second pass counts against the same stage
        time.sleep(0.002)
    clock.add("extra", 0.5)
    timings = clock.timings_ms()
    assert list(timings) == ["fast", "slow", "skipped", "extra", "total"]
    assert timings["slow"] >= 7.0 and timings["skipped"] == 0.0
    assert timings["total"] >= timings["fast"] + timings["slow"]
    assert clock.over_budget() == ("slow",)


def test_a_stage_clock_refuses_what_it_cannot_time():
    with pytest.raises(BudgetError, match="positive milliseconds"):
        StageClock({"features": 0})
    with pytest.raises(BudgetError, match="'total' is the whole request"):
        StageClock({}).add("total", 1.0)


def test_a_dependency_call_past_its_timeout_raises_and_names_the_dependency():
    pools = DependencyPools(("redis",), threads=2)

    async def run():
        fast = await pools.call("redis", 1.0, lambda: 41 + 1, "Redis")
        with pytest.raises(StageTimeout, match=r"Redis did not answer within 20 ms"):
            await pools.call("redis", 0.02, lambda: time.sleep(0.2), "Redis")
        with pytest.raises(BudgetError, match="no pool for dependency 'models'"):
            await pools.call("models", 1.0, lambda: None, "the model")
        return fast

    try:
        assert asyncio.run(run()) == 42
    finally:
        pools.close()
    with pytest.raises(BudgetError, match="at least one name"):
        DependencyPools(())


# -- candidate sources ----------------------------------------------------------------
def test_sources_merge_by_priority_with_every_proposer_recorded():
    merged = merge_candidates(
        [
            SourceCandidates.of("continue", [7, 3]),
            SourceCandidates.of("retrieval", [3, 9, -1, 5, 7], [0.9, 0.8, 0, 0.7, 0.6]),
            SourceCandidates.of("trending", [5, 11]),
        ]
    )
    assert merged.items.tolist() == [7, 3, 9, 5, 11]
    assert merged.source_names() == [
        "continue", "continue", "retrieval", "retrieval", "trending"
    ]  # fmt: skip
    assert np.isnan(merged.source_score[0])
    assert merged.source_score[2:4].tolist() == pytest.approx([0.8, 0.7])
    # 7 and 3: continue + retrieval; 5: retrieval + trending
    assert merged.proposed_by.tolist() == [0b011, 0b011, 0b010, 0b110, 0b100]
    assert merged.credited() == {"continue": 2, "retrieval": 2, "trending": 1}
    assert merged.proposed() == {"continue": 2, "retrieval": 4, "trending": 2}
    assert merge_candidates(
        [SourceCandidates.of("a", [4, 2, 8])], 2
    ).items.tolist() == [
        4,
        2,
    ]


def test_sources_that_cannot_be_merged_are_refused():
    with pytest.raises(CandidateSourceError, match="repeat a name"):
        merge_candidates([SourceCandidates.of("a", [1]), SourceCandidates.of("a", [2])])
    with pytest.raises(CandidateSourceError, match="one score per id"):
        SourceCandidates.of("a", [1, 2], [0.5])
    with pytest.raises(CandidateSourceError, match="ids are integers"):
        SourceCandidates.of("a", [1.5])
    assert len(merge_candidates([])) == 0


# -- models with several tensors ---------------------------------------------------
def test_a_schema_of_named_columns_becomes_the_input_tensors():
    schema = [("history:0", "int64"), ("history:1", "int64"), ("dense:age", "float32")]
    specs = schema_tensors(schema)
    assert [(s.name, np.dtype(s.dtype).name, s.shape) for s in specs] == [
        ("history", "int64", (2,)),
        ("dense", "float32", (1,)),
    ]
    assert schema_columns(schema) == {"history": ("0", "1"), "dense": ("age",)}
    with pytest.raises(SchemaError, match="not contiguous"):
        schema_tensors([("a:x", "int64"), ("b:y", "int64"), ("a:z", "int64")])
    with pytest.raises(SchemaError, match="mixes dtypes"):
        schema_tensors([("a:x", "int64"), ("a:y", "float32")])
    with pytest.raises(SchemaError, match="'<tensor>:<column>'"):
        schema_tensors([("age", "float32")])


def _endpoint(fn) -> ModelEndpoint:
    server = InProcessModelServer("test")
    inputs = (TensorSpec("x", np.float32, (2,)),)
    outputs = (TensorSpec("y", np.float32, (1,)), TensorSpec("z", np.float32, (3,)))
    server.bind("m", fn, inputs, outputs, 64)
    return ModelEndpoint("m-v1", server, "m", inputs, outputs, {"x": ("a", "b")})


def test_a_model_call_returns_every_output_and_refuses_bad_answers():
    good = _endpoint(lambda x: {"y": x[:, :1], "z": np.tile(x[:, :1], (1, 3))})
    out = call_model(good, {"x": np.ones((4, 2), np.float32)})
    assert out["y"].shape == (4, 1) and out["z"].shape == (4, 3)
    short = _endpoint(lambda x: {"y": x[:1, :1], "z": np.zeros((len(x), 3))})
    with pytest.raises(ModelFailed, match="returned 1 rows of 'y' for 4 input rows"):
        call_model(short, {"x": np.ones((4, 2), np.float32)})
    nan = _endpoint(lambda x: {"y": x[:, :1] * np.nan, "z": np.zeros((len(x), 3))})
    with pytest.raises(ModelFailed, match="non-finite 'y'"):
        call_model(nan, {"x": np.ones((2, 2), np.float32)})
    with pytest.raises(ModelFailed, match="in-process server failed: MalformedRequest"):
        call_model(good, {"x": np.ones((2, 2), np.float64)})


def test_a_clock_reports_named_stages_that_did_not_run_and_can_skip_rounding():
    clock = StageClock({"features": 10.0}, stages=("ann", "features", "rerank"))
    with clock.stage("rerank"):
        pass
    timings = clock.timings_ms(digits=None)
    assert list(timings) == ["features", "ann", "rerank", "total"]
    assert timings["ann"] == 0.0 and 0.0 < timings["rerank"] < timings["total"]
    assert clock.timings_ms()["rerank"] == round(timings["rerank"], 3)
