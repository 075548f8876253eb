"""The framework chapter's worked estimates in code: the prose's figures, the
fleet size from a measured rate, the tornado and the budgeted rate."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from mlsd_lib.capacity import CapacityInputError, fleet_size
from mlsd_lib.capacity_measured import (
    NoLevelWithinBudget,
    off_cpu,
    pinned_module_command,
    process_tree,
    rate_within_budget,
    spare_cpu,
    tree_cpus,
)
from mlsd_lib.capacity_sensitivity import plot_tornado, tornado
from mlsd_lib.capacity_worked import (
    ABTestAssumptions,
    AdClickAssumptions,
    EmbeddingRetrievalAssumptions,
    FanOutAssumptions,
    ab_test_estimate,
    ad_click_estimate,
    embedding_retrieval_estimate,
    fan_out_estimate,
    recalibrate,
)
from mlsd_lib.serving.loadgen import LoadResult

FRAMEWORK = Path(__file__).resolve().parents[1] / "book" / "framework.md"


def _worked_section() -> str:
    text = FRAMEWORK.read_text()
    start = text.index("## Worked back-of-the-envelope estimates")
    return text[start : text.index("## Trade-offs interviewers probe", start)]


def test_the_prose_prints_what_the_code_computes() -> None:
    """Each figure of the worked examples, as the prose writes it, next to the
    value the code derives from the prose's assumptions."""
    ad = ad_click_estimate(AdClickAssumptions())
    emb = embedding_retrieval_estimate(EmbeddingRetrievalAssumptions())
    ab = ab_test_estimate(ABTestAssumptions())
    fan = fan_out_estimate(FanOutAssumptions())
    ten_x = fleet_size(ad["peak inferences per second"], 5e3)
    # (text in the prose, the code's value, the number that text states, rel. tol.)
    figures = [
        ("= 10^{10}$ impressions/day", ad["requests per day"], 1e10, 0),
        ("\\approx 1.16 \\times 10^5$ impressions/s", ad["average QPS"], 1.16e5, 5e-3),
        ("\\approx 2.3 \\times 10^5$ impressions/s", ad["peak QPS"], 2.3e5, 0.02),
        ("= 4.6 \\times 10^7", ad["peak inferences per second"], 4.6e7, 0.01),
        ("\\approx 926$ replicas", ad["replicas at peak"], 926, 0),
        (
            "\\approx 1{,}200$ with 30% headroom",
            ad["replicas with headroom"],
            1200,
            0.01,
        ),
        ("about 12,000 replicas", ten_x.planned, 12_000, 0.01),
        (
            "\\approx 6 \\times 10^8 \\ \\text{rows/day}",
            ad["training rows per day"],
            6e8,
            0.01,
        ),
        ("= 300$ GB/day", ad["training data per day"], 300e9, 0.01),
        ("27 TB for a 90-day window", ad["training data for retention"], 27e12, 0.01),
        ("30-day window of 9 TB", ad["training window read"], 9e12, 0.01),
        ("\\approx 16.8\\%", ad["sampled positive rate"], 0.168, 1e-3),
        ("= 160 GB of raw values", ad["user features, raw"], 160e9, 0),
        ("(640 GB)", ad["online feature store memory"], 640e9, 0),
        ("ten shards of 64 GB", ad["feature store shards"], 10, 0),
        ("x 8 B = 4 GB", ad["ad feature cache per ranker"], 4e9, 0),
        (
            "= 4.6 \\times 10^7$ key reads/s",
            ad["ad feature reads at peak, uncached"],
            4.6e7,
            0.01,
        ),
        ("\\approx 185$ MB/s", ad["user feature bandwidth at peak"], 185e6, 0.005),
        ("\\approx 25.6 \\ \\text{GB}", emb["embedding index memory"], 25.6e9, 0),
        ("cuts this to 6.4 GB", emb["int8 index memory"], 6.4e9, 0),
        ("cuts it to 3.2 GB", emb["PQ index memory"], 3.2e9, 0),
        (
            "= 6.4 \\times 10^9 \\ \\text{multiply-adds}",
            emb["multiply-adds per query"],
            6.4e9,
            0,
        ),
        (
            "\\approx 1.3 \\times 10^{10} \\ \\text{FLOPs",
            emb["FLOPs per query"],
            1.3e10,
            0.02,
        ),
        ("$1.3 \\times 10^{13}$ FLOP/s", emb["FLOP/s at the query rate"], 1.3e13, 0.02),
        ("is 25.6 TB/s", emb["memory traffic, one scan per query"], 25.6e12, 0),
        ("instead, 25.6 GB/s", emb["memory traffic, batched"], 25.6e9, 0),
        (
            "\\approx 1.6 \\times 10^7 \\ \\text{impressions}",
            ab["impressions per arm"],
            1.6e7,
            0.02,
        ),
        ("collects $10^8$ impressions per day", ab["arm impressions per day"], 1e8, 0),
        ("six times the requirement", ab["requirement met per day"], 6, 0.06),
        ("in one day", ab["days to collect n"], 1, 0),
        ("run at least seven days", ab["days to run"], 7, 0),
        ("= 1 - 0.818 = 0.182", fan["requests that wait on a slow shard"], 0.182, 1e-3),
    ]
    section = _worked_section()
    missing = [text for text, *_ in figures if text not in section]
    assert not missing, f"the prose no longer says: {missing}"
    for text, value, stated, rel in figures:
        assert value == pytest.approx(stated, rel=rel, abs=0), text
    assert "The four examples below" in section
    assert recalibrate(ad["sampled positive rate"], 0.05) == pytest.approx(0.01)
    assert recalibrate(0.168, 0.05) == pytest.approx(0.0100, abs=5e-5)  # the prose's


def test_fleet_size_rounds_up_and_adds_headroom() -> None:
    fleet = fleet_size(4.63e7, 5e4, headroom=0.3)
    assert (fleet.at_load, fleet.planned) == (926, 1204)
    assert fleet_size(1_000, 1, headroom=0.3).planned == 1_300  # not 1,301
    assert fleet_size(0, 10).at_load == 1  # a service runs on at least one
    assert fleet_size(101, 10, headroom=0).planned == 11
    assert "= 926; x 1.3 headroom = 1,204 replicas" in fleet.formula()
    with pytest.raises(CapacityInputError, match="per_replica_s must be > 0"):
        fleet_size(1, 0)
    with pytest.raises(CapacityInputError, match="headroom must be a fraction"):
        fleet_size(1, 1, headroom=-0.1)
    with pytest.raises(CapacityInputError, match="load_per_s must be finite"):
        fleet_size(float("nan"), 1)


def test_assumptions_are_checked() -> None:
    with pytest.raises(CapacityInputError, match="ctr must be in"):
        AdClickAssumptions(ctr=1.5)
    with pytest.raises(CapacityInputError, match="store_overhead must be >= 1"):
        AdClickAssumptions(store_overhead=0.5)
    with pytest.raises(CapacityInputError, match="embedding_dim must be a number > 0"):
        EmbeddingRetrievalAssumptions(embedding_dim=0)
    with pytest.raises(CapacityInputError, match="arm_share must be in"):
        ABTestAssumptions(arm_share=0)
    with pytest.raises(CapacityInputError, match="keep_rate must be in"):
        recalibrate(0.2, 0.0)


def test_estimates_move_with_their_assumptions() -> None:
    base = ad_click_estimate(AdClickAssumptions())
    more = ad_click_estimate(AdClickAssumptions(candidates_per_impression=400))
    assert more["peak inferences per second"] == 2 * base["peak inferences per second"]
    assert more["peak QPS"] == base["peak QPS"]  # requests do not change
    keep_all = ad_click_estimate(AdClickAssumptions(negative_keep_rate=1.0))
    assert keep_all["training rows per day"] == base["requests per day"]
    assert keep_all["sampled positive rate"] == pytest.approx(0.01)
    ab = ab_test_estimate(ABTestAssumptions(arm_share=0.001))
    assert ab["days to collect n"] == 2  # 1.58e7 at 1e7 a day
    assert ab["days to run"] == 7
    long = ab_test_estimate(ABTestAssumptions(arm_share=0.0001))
    assert long["days to run"] == long["days to collect n"] == 16
    one = fan_out_estimate(FanOutAssumptions(shards=1))
    assert one["requests that wait on a slow shard"] == pytest.approx(0.01)


def test_tornado_sorts_by_swing() -> None:
    fields_ = ["ctr", "negative_keep_rate", "retention_days", "num_ads"]
    frame = tornado(
        ad_click_estimate, AdClickAssumptions(), fields_, "training data for retention"
    )
    assert list(frame.index) == [
        "retention_days",
        "negative_keep_rate",
        "ctr",
        "num_ads",
    ]
    assert frame.loc["retention_days", "low"] == pytest.approx(0.5)
    assert frame.loc["retention_days", "high"] == pytest.approx(2.0)
    # 1e8 + 0.1 x 9.9e9 over 1e8 + 0.05 x 9.9e9: sub-linear, since clicks stay
    assert frame.loc["negative_keep_rate", "high"] == pytest.approx(10.9 / 5.95)
    assert frame.loc["num_ads", "swing"] == 0
    assert np.all(np.diff(frame["swing"].to_numpy()) <= 0)
    fig = plot_tornado({"storage": frame})
    assert len(fig.axes) == 1 and len(fig.axes[0].patches) == 2 * len(fields_)
    with pytest.raises(CapacityInputError, match="factors must be"):
        tornado(ad_click_estimate, AdClickAssumptions(), fields_, "peak QPS", (2, 3))
    with pytest.raises(CapacityInputError, match="fields_ is empty"):
        tornado(ad_click_estimate, AdClickAssumptions(), [], "peak QPS")


def _level(
    concurrency: int, rps: float, p99_ms: float, failures: int = 0
) -> LoadResult:
    count = int(rps * 2)
    latencies = np.full(count - failures, p99_ms)
    return LoadResult(
        "closed", count, failures, 2.0, latencies, concurrency=concurrency
    )


def test_rate_within_budget_picks_the_fastest_level_that_meets_p99() -> None:
    levels = [_level(1, 100, 8), _level(2, 180, 12), _level(4, 200, 40)]
    best = rate_within_budget(levels, 30)
    assert (best.concurrency, best.rate_per_s, best.p99_ms) == (2, 180, 12)
    failing = [_level(1, 100, 8), _level(2, 300, 10, failures=5)]
    assert rate_within_budget(failing, 30).concurrency == 1  # errors do not count
    with pytest.raises(NoLevelWithinBudget, match=r"lowest p99 40\.0 ms"):
        rate_within_budget([_level(4, 200, 40)], 30)
    with pytest.raises(CapacityInputError, match="results is empty"):
        rate_within_budget([], 30)


def test_pinned_command_pins_the_module_and_its_children() -> None:
    cpu = spare_cpu()
    probe = (
        "import os, subprocess, sys; print(sorted(os.sched_getaffinity(0)));"
        "subprocess.run([sys.executable, '-c', "
        "'import os; print(sorted(os.sched_getaffinity(0)))'])"
    )
    command = pinned_module_command("runpy_probe_never_imported", [], cpu)
    # run the same prelude around a probe instead of a module
    code = command[2].split("sys.argv")[0] + probe
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == [str([cpu]), str([cpu])]
    argv = pinned_module_command("json.tool", ["--help"], cpu)
    shown = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    assert "usage" in shown  # the module ran as __main__ with its arguments
    with pytest.raises(CapacityInputError, match="is not one this process may use"):
        pinned_module_command("json.tool", [], max(os.sched_getaffinity(0)) + 1000)
    with pytest.raises(CapacityInputError, match="is not a module name"):
        pinned_module_command("json; rm -rf /", [], cpu)


def test_tree_cpus_sees_a_pinned_child_and_off_cpu_restores() -> None:
    cpu = spare_cpu()
    argv = pinned_module_command("http.server", ["--bind", "127.0.0.1", "0"], cpu)
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert child.pid in process_tree(os.getpid())
        for _ in range(100):  # until the interpreter has started its module
            if tree_cpus(child.pid) == {cpu}:
                break
            time.sleep(0.02)
        assert tree_cpus(child.pid) == {cpu}
    finally:
        child.terminate()
        child.wait(10)
    before = os.sched_getaffinity(0)
    with off_cpu(cpu) as running_on:
        assert os.sched_getaffinity(0) == running_on
        assert cpu not in running_on or before == {cpu}
    assert os.sched_getaffinity(0) == before


def test_the_chapter_exercises_figures() -> None:
    """The numbers notebooks/capacity.ipynb's exercise solutions state."""
    base = AdClickAssumptions()
    peak4 = ad_click_estimate(dataclasses.replace(base, peak_to_average=4))
    assert (peak4["replicas at peak"], peak4["replicas with headroom"]) == (1852, 2408)
    fewer = ad_click_estimate(dataclasses.replace(base, negative_keep_rate=0.025))
    stored = ad_click_estimate(base)["training data for retention"]
    assert fewer["training data for retention"] / stored == pytest.approx(
        0.584, abs=1e-3
    )
    assert fewer["sampled positive rate"] == pytest.approx(0.288, abs=1e-3)
    hedged = fan_out_estimate(FanOutAssumptions(slow_probability=0.0025))
    assert hedged["requests that wait on a slow shard"] == pytest.approx(
        0.049, abs=5e-4
    )
