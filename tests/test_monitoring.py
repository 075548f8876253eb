"""Drift statistics and the retraining trigger."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.monitoring import (
    UNKNOWN_CATEGORY,
    DriftInputError,
    DriftReport,
    RetrainingTrigger,
    calibration_drift,
    ks_statistic,
    prediction_drift,
    psi,
    psi_breakdown,
    psi_status,
)


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def test_psi_of_identical_and_same_distribution_is_near_zero(rng) -> None:
    x = rng.normal(size=20_000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert psi(x, rng.normal(size=20_000)) < 0.01


def test_psi_of_shifted_normal_is_an_alert(rng) -> None:
    x = rng.normal(size=20_000)
    shifted = rng.normal(1.0, 1.0, size=20_000)
    value = psi(x, shifted)
    assert value > 0.25
    assert psi_status(value) == "alert"
    # Roughly symmetric: swapping roles changes bins but not the verdict.
    assert psi(shifted, x) == pytest.approx(value, rel=0.3)
    assert ks_statistic(x, shifted).statistic > 0.3
    assert ks_statistic(x, x).statistic == 0.0


def test_psi_hand_computed_categorical() -> None:
    reference = ["a"] * 50 + ["b"] * 50
    current = ["a"] * 25 + ["b"] * 75
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    # The unseen bucket is empty on both sides: eps vs eps contributes 0.
    assert psi(reference, current) == pytest.approx(expected)


def test_unseen_categories_go_to_their_own_bucket() -> None:
    breakdown = psi_breakdown(["a", "b"] * 50, ["a", "b", "c", "d"] * 25)
    frame = breakdown.to_frame().set_index("bin")
    assert frame.loc[UNKNOWN_CATEGORY, "current_share"] == pytest.approx(0.5)
    assert breakdown.psi > 0.25


def test_psi_status_levels_and_errors() -> None:
    assert [psi_status(v) for v in (0.05, 0.2, 0.3)] == ["ok", "warn", "alert"]
    with pytest.raises(DriftInputError, match="empty"):
        psi([], [1.0])
    with pytest.raises(DriftInputError, match="NaN"):
        psi([1.0, np.nan], [1.0, 2.0])


def test_prediction_and_calibration_drift(rng) -> None:
    p = rng.uniform(0.01, 0.2, 20_000)
    y = rng.random(len(p)) < p
    same = prediction_drift(p, p)
    assert same.psi == pytest.approx(0.0, abs=1e-12) and same.mean_shift == 0.0
    doubled = prediction_drift(p, 2 * p)
    assert doubled.relative_mean_shift == pytest.approx(1.0)
    assert doubled.psi > 0.25
    drift = calibration_drift(y, p, y, np.clip(2 * p, 0, 1))
    assert drift.reference_ratio == pytest.approx(1.0, abs=0.05)
    assert drift.current_ratio == pytest.approx(2.0, abs=0.1)
    assert drift.current_ece > drift.reference_ece


def test_drift_report_over_a_frame(rng) -> None:
    n = 5000
    reference = pd.DataFrame(
        {
            "age": rng.normal(40, 10, n),
            "price": rng.lognormal(0, 1, n),
            "country": rng.choice(["de", "fr", "us"], n),
        }
    )
    current = {
        "age": rng.normal(40, 10, n),  # stable
        "price": rng.lognormal(0.3, 1, n),  # moderate shift
        "country": rng.choice(["de", "fr", "us", "br"], n),  # new category
    }
    report = DriftReport.compute(reference, current)
    frame = report.to_frame()
    assert list(frame["feature"]) == ["age", "price", "country"]
    assert report.status("age") == "ok"
    assert report.status("price") == "warn"
    assert report.alerts == ["country"]
    assert report.worst_status == "alert"
    assert frame.set_index("feature").loc["country", "kind"] == "categorical"
    with pytest.raises(DriftInputError, match="'income' is not in the reference"):
        DriftReport.compute(reference, current, features=["income"])


def test_trigger_fires_on_the_crossing_day_and_respects_interval() -> None:
    trigger = RetrainingTrigger(ne_degradation=0.03, min_interval_days=5)
    trigger.deployed(day=0, baseline_ne=0.80)
    # Threshold 0.824; NE crosses on day 6.
    nes = [0.80, 0.805, 0.81, 0.815, 0.82, 0.823, 0.83, 0.84]
    decisions = [trigger.observe(day, ne) for day, ne in enumerate(nes, start=1)]
    assert [d.day for d in decisions if d.retrain] == [7]
    assert trigger.retrain_days == [7]
    assert "NE 0.8300 > 0.8240" in decisions[6].reasons[0]
    # Day 8 still degraded, but within 5 days of the day-7 retrain: suppressed.
    assert not decisions[7].retrain
    assert any("suppressed" in r for r in decisions[7].reasons)
    assert decisions[0].reasons == ("within budget",)
    assert len(trigger.log_frame()) == len(nes)


def test_trigger_suppressed_right_after_deployment_then_fires() -> None:
    trigger = RetrainingTrigger(min_interval_days=3)
    trigger.deployed(day=10, baseline_ne=0.9)
    assert not trigger.observe(11, 1.0).retrain
    assert not trigger.observe(12, 1.0).retrain
    assert trigger.observe(13, 1.0).retrain
    trigger.deployed(day=13, baseline_ne=0.95)
    assert not trigger.observe(20, 0.97).retrain  # 0.97 < 0.95 * 1.03


def test_trigger_on_key_feature_psi() -> None:
    trigger = RetrainingTrigger(key_features=["price"], min_interval_days=0)
    trigger.deployed(day=0, baseline_ne=0.8)
    ignored = trigger.observe(1, 0.8, {"price": 0.05, "colour": 0.9})
    assert not ignored.retrain
    fired = trigger.observe(2, None, {"price": 0.4})
    assert fired.retrain and fired.reasons == ("PSI of 'price' 0.400 > 0.25",)
    with pytest.raises(ValueError, match="deployed"):
        RetrainingTrigger().observe(0, 0.8)


def test_psi_figure_bars_and_colours() -> None:
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    from mlsd_lib.evaluation.plots import psi_figure

    fig = psi_figure({"age": 0.02, "price": 0.15, "country": 0.4})
    assert isinstance(fig, Figure)
    (ax,) = fig.axes
    assert [p.get_width() for p in ax.patches] == pytest.approx([0.02, 0.15, 0.4])
    assert [p.get_facecolor() for p in ax.patches] == [
        to_rgba(c) for c in ("tab:green", "tab:orange", "tab:red")
    ]
    assert [line.get_xdata()[0] for line in ax.lines] == [0.1, 0.25]


def test_metric_over_days_figure_lines_threshold_and_markers() -> None:
    from mlsd_lib.evaluation.plots import metric_over_days_figure

    days = list(range(10))
    fig = metric_over_days_figure(
        days,
        {"never": np.linspace(0.8, 0.9, 10), "triggered": np.full(10, 0.81)},
        threshold=0.824,
        retrain_days={"triggered": [3, 7]},
    )
    (ax,) = fig.axes
    # two series, one marker line for the retrains, one threshold line
    assert len(ax.lines) == 4
    assert list(ax.lines[2].get_xdata()) == [3, 7]
    assert list(ax.lines[3].get_ydata()) == [0.824, 0.824]
    with pytest.raises(ValueError, match="'bad' has 3 values for 10 days"):
        metric_over_days_figure(days, {"bad": [1, 2, 3]})


def test_an_empty_key_feature_list_watches_no_feature():
    from mlsd_lib.monitoring import RetrainingTrigger

    trigger = RetrainingTrigger(key_features=(), psi_limit=0.25)
    trigger.deployed(0, baseline_ne=0.9)
    decision = trigger.observe(1, ne=0.9, psi_by_feature={"hour": 3.0})
    assert not decision.retrain
