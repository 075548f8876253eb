"""The serving chapter's small helpers: the click net, the batching sweep, traffic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsd_lib.evaluation import roc_auc
from mlsd_lib.serving.batching import compare_batching, plot_batching, speedup_at
from mlsd_lib.serving.ctr_net import FeatureCTRNet, fit_feature_ctr_net
from mlsd_lib.serving.export import export_model
from mlsd_lib.serving.gateway.traffic import (
    BackgroundLoad,
    NoRequestBodies,
    Outcome,
    PacedBodyLoad,
    count_labels,
    outcome_label,
    plot_timeline,
)
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.loadgen import NotLoopback
from mlsd_lib.serving.tensors import TensorSpec


def counter_data(n: int = 4_000, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.poisson(20, size=(n, 4)).astype(np.float32)
    X[:, 1] = rng.integers(0, 2000, n)
    logit = 0.8 * np.log1p(X[:, 0]) - 0.5 * np.log1p(X[:, 1]) + 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    return X, y, 1 / (1 + np.exp(-logit))


@pytest.mark.quality
def test_feature_ctr_net_learns_from_raw_counters_and_is_seeded():
    X, y, truth = counter_data()
    model, fit = fit_feature_ctr_net(X, y, epochs=150, seed=3)
    again, _ = fit_feature_ctr_net(X, y, epochs=150, seed=3)
    assert fit.losses[-1] < fit.losses[0]
    with torch.inference_mode():
        p = model(torch.from_numpy(X)).numpy()
        q = again(torch.from_numpy(X)).numpy()
    np.testing.assert_array_equal(p, q)
    assert p.shape == (len(X),) and ((p > 0) & (p < 1)).all()
    assert roc_auc(y, p) > roc_auc(y, truth) - 0.02  # close to the true model


def test_feature_ctr_net_exports_with_parity(tmp_path):
    model = FeatureCTRNet(4).eval()
    example = torch.from_numpy(counter_data(8)[0])
    for fmt, name in (("torchscript", "m.pt"), ("pt2", "m.pt2")):
        exported = export_model(model, example, tmp_path / name, format=fmt)
        assert exported.report.passed


def test_fit_refuses_mismatched_rows():
    with pytest.raises(ValueError, match="3 feature rows and 2 labels"):
        fit_feature_ctr_net(np.zeros((3, 2), np.float32), np.zeros(2))


def test_compare_batching_sweeps_each_model_and_plots():
    server = InProcessModelServer("test")
    specs = (
        (TensorSpec("x", np.float32, (2,)),),
        (TensorSpec("y", np.float32, (1,)),),
    )
    server.bind("a", lambda x: {"y": x[:, :1] * 2}, *specs, 64)
    server.bind("b", lambda x: {"y": x[:, :1]}, *specs, 64)
    results = compare_batching(
        server,
        {"A": "a", "B": "b"},
        {"x": np.ones((5, 2), np.float32)},
        concurrencies=(1, 2),
        max_requests=50,
        max_seconds=2.0,
        warmup_requests=0,
    )
    assert list(results) == ["A", "B"]
    assert [r.concurrency for r in results["A"]] == [1, 2]
    assert all(
        r.count == 50 and r.failures == 0 for runs in results.values() for r in runs
    )
    assert speedup_at(results, 2) > 0
    figure = plot_batching(results)
    assert len(figure.axes[0].lines) == 2


def test_background_load_refuses_non_loopback_targets():
    with pytest.raises(NotLoopback):
        BackgroundLoad("http://example.com", {})


def test_outcome_labels_count_versions_and_failures_in_order_of_appearance():
    outcomes = [
        Outcome(1.0, 0.01, 200, {"model_version": "v2"}),
        Outcome(1.1, 0.01, 503, {"detail": "down"}),
        Outcome(1.2, 0.01, 200, {}),
        Outcome(1.3, 0.01, 0, error="ConnectError()"),
        Outcome(1.4, 0.01, 200, {"model_version": "v2"}),
    ]
    assert outcome_label(outcomes[0]) == "v2"
    assert count_labels(outcomes) == {
        "v2": 2, "failed (503)": 1, "HTTP 200": 1, "failed (0)": 1,
    }  # fmt: skip
    assert list(count_labels(outcomes)) == [
        "v2",
        "failed (503)",
        "HTTP 200",
        "failed (0)",
    ]


def test_paced_body_load_refuses_no_bodies_naming_the_class():
    class Pings(PacedBodyLoad):
        path = "/ping"
        no_bodies_advice = "pass one ping"

    with pytest.raises(
        NoRequestBodies, match=r"^Pings needs at least one .*one ping\.$"
    ):
        Pings("http://127.0.0.1:1", {}, [])
    assert Pings("http://127.0.0.1:1", {}, [{}], clients=2).clients == 2


def test_plot_timeline_colours_by_version_and_marks_events():
    outcomes = [
        Outcome(1.0, 0.01, 200, {"model_version": "v1"}),
        Outcome(2.0, 0.02, 200, {"model_version": "v2"}),
        Outcome(2.5, 0.5, 503, {"detail": "down"}),
    ]
    figure = plot_timeline(outcomes, {"swap": 1.5})
    axes = figure.axes[0]
    labels = sorted(line.get_label() for line in axes.lines if line.get_marker() == ".")
    assert labels == ["failed (503)", "v1", "v2"]
    assert any(
        line.get_xdata()[0] == 0.5
        for line in axes.lines
        if line.get_linestyle() == "--"
    )
