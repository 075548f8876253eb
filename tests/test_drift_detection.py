"""Window statistics, detection trade-offs, injected shifts and policy replays.

The chapter ``notebooks/monitoring.ipynb`` rests on these properties: the
vectorized PSI and KS equal the one-pair functions, a control stream fires as
often as the threshold's null distribution says, a shift of known size is
caught within a bound, injected shifts move exactly what they claim, and a
replay retrains when (and only when) its policy says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom, ks_2samp

from mlsd_lib.models.cell_rate import CellRateError, CellRateModel
from mlsd_lib.monitoring.alerts import AlertRule
from mlsd_lib.monitoring.detection_tradeoff import (
    DetectionInputError,
    alarms,
    calibrated_threshold,
    detection_tradeoff,
    first_alarm_delay,
)
from mlsd_lib.monitoring.drift import psi
from mlsd_lib.monitoring.retraining_replay import (
    LabelledDay,
    NeverRetrain,
    ReplayError,
    ScheduledRetrain,
    TriggeredRetrain,
    replay_retraining,
)
from mlsd_lib.monitoring.window_stats import (
    ReferenceBins,
    WindowStatsError,
    ks_p_value,
    psi_false_alarm_probability,
    psi_null_quantile,
    tumbling_windows,
    window_ks,
    window_psi,
)
from mlsd_lib.worlds.injected_shifts import ShiftError, concept_shift, mix_shift

SHARES = np.array([0.6, 0.3, 0.1])


def categorical_windows(rng, shares, windows, size):
    return rng.choice(len(shares), size=(windows, size), p=shares)


# -- window statistics --------------------------------------------------------


def test_window_psi_equals_psi_window_by_window():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=5_000)
    win = rng.normal(0.2, 1.3, size=(6, 700))
    expected = [psi(ref, w) for w in win]
    np.testing.assert_allclose(window_psi(ref, win), expected, rtol=1e-12)
    cats = rng.integers(0, 5, 3_000)
    cwin = rng.integers(0, 7, size=(4, 500))  # codes 5 and 6 were never seen
    expected = [psi(cats, w, categorical=True) for w in cwin]
    got = window_psi(cats, cwin, categorical=True)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    strings = np.array(["a", "b", "c"])[cats % 3]
    assert window_psi(strings, np.array(["a", "b", "c", "z"])[cwin % 4])[0] > 0


def test_window_ks_equals_scipy_with_ties_and_without():
    rng = np.random.default_rng(1)
    for ref, win in (
        (rng.normal(size=2_000), rng.normal(0.1, 1, size=(5, 300))),
        (rng.integers(0, 6, 900), rng.integers(0, 8, size=(5, 200))),  # ties
    ):
        expected = [ks_2samp(ref, w).statistic for w in win]
        np.testing.assert_allclose(window_ks(ref, win), expected, atol=1e-12)
        p = ks_p_value(window_ks(ref, win), ref.size, win.shape[1])
        expected_p = [ks_2samp(ref, w, method="asymp").pvalue for w in win]
        np.testing.assert_allclose(p, expected_p, rtol=1e-6, atol=1e-12)


def test_control_windows_fire_as_often_as_the_null_distribution_says():
    rng = np.random.default_rng(2)
    ref = rng.choice(3, 200_000, p=SHARES)
    bins = ReferenceBins.fit(ref, categorical=True)
    assert bins.degrees_of_freedom == 2
    size, windows, rate = 1_000, 4_000, 0.05
    threshold = psi_null_quantile(rate, 2, ref.size, size)
    assert psi_false_alarm_probability(threshold, 2, ref.size, size) == pytest.approx(
        rate
    )
    stats = bins.psi(categorical_windows(rng, SHARES, windows, size))
    fired = int((stats > threshold).sum())
    low, high = binom.ppf([0.0005, 0.9995], windows, rate)
    assert low <= fired <= high, (fired, low, high)
    # The same threshold on windows 10x larger: the noise floor falls as 1/n.
    big = bins.psi(categorical_windows(rng, SHARES, 400, 10 * size))
    assert (big > threshold).mean() < 0.005
    # KS p-values on numbers without drift are uniform: 5% fall below 0.05.
    num_ref = rng.normal(size=50_000)
    p = ks_p_value(window_ks(num_ref, rng.normal(size=(2_000, 500))), 50_000, 500)
    assert 0.035 < (p < 0.05).mean() < 0.065


def test_ks_p_value_is_tiny_for_a_negligible_shift_on_huge_windows():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=400_000)
    win = rng.normal(0.02, 1, size=(1, 400_000))  # 2% of a standard deviation
    d = window_ks(ref, win)
    assert d[0] < 0.02
    assert ks_p_value(d, ref.size, win.shape[1])[0] < 1e-6
    assert window_psi(ref, win)[0] < 0.002


def test_window_stats_errors_say_what_to_do():
    with pytest.raises(WindowStatsError, match="2-D array"):
        window_psi(np.arange(10), np.arange(10))
    with pytest.raises(WindowStatsError, match="non-empty 1-D"):
        window_ks(np.array([]), np.ones((2, 3)))
    with pytest.raises(WindowStatsError, match="false-alarm rate per window"):
        psi_null_quantile(0.0, 2, 100, 100)
    with pytest.raises(WindowStatsError, match="contains NaN"):
        ReferenceBins.fit(np.array([1.0, np.nan]))
    assert tumbling_windows(np.arange(10), 3).tolist() == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8],
    ]
    with pytest.raises(WindowStatsError, match="at least one window"):
        tumbling_windows(np.arange(2), 3)


# -- detection trade-off ------------------------------------------------------


def test_alarms_need_consecutive_windows_over_the_threshold():
    stats = np.array([0.2, 0.0, 0.2, 0.2, 0.2, 0.0, 0.2, 0.2])
    assert alarms(stats, 0.1)[0].tolist() == [1, 0, 1, 1, 1, 0, 1, 1]
    assert alarms(stats, 0.1, consecutive=2)[0].tolist() == [0, 0, 0, 1, 1, 0, 0, 1]
    assert alarms(stats, 0.1, consecutive=3)[0].tolist() == [0, 0, 0, 0, 1, 0, 0, 0]
    with pytest.raises(DetectionInputError, match="consecutive must be >= 1"):
        alarms(stats, 0.1, consecutive=0)


def test_consecutive_rule_cuts_false_alarms_to_about_p_squared():
    rng = np.random.default_rng(4)
    stats = rng.random((200, 500))  # P(stat > 0.8) = 0.2 per window
    single = alarms(stats, 0.8).mean()
    double = alarms(stats, 0.8, consecutive=2)[:, 1:].mean()
    assert single == pytest.approx(0.2, abs=0.01)
    assert double == pytest.approx(0.04, abs=0.005)


def test_a_shift_of_known_size_is_caught_within_a_bound_with_few_false_alarms():
    rng = np.random.default_rng(5)
    ref = rng.choice(3, 100_000, p=SHARES)
    shifted = np.array([0.55, 0.3, 0.15])  # PSI about 0.024
    size, reps, before, after = 2_000, 30, 48, 6  # hourly windows
    win = np.concatenate(
        [
            categorical_windows(rng, SHARES, reps * before, size).reshape(
                reps, before, size
            ),
            categorical_windows(rng, shifted, reps * after, size).reshape(
                reps, after, size
            ),
        ],
        axis=1,
    )
    stats = window_psi(ref, win.reshape(-1, size), categorical=True).reshape(reps, -1)
    ends = np.arange(1, before + after + 1, dtype=float)
    threshold = psi_null_quantile(0.001, 2, ref.size, size)
    table = detection_tradeoff(stats, ends, float(before), [threshold])
    row = table.iloc[0]
    assert row["missed"] == 0.0
    assert row["median_delay_h"] == 1.0  # the first window after the change
    assert row["mean_delay_h"] <= 1.5
    # 0.1% of 24 windows a day: about 0.024 false alarms a day expected.
    assert row["false_alarms_per_day"] < 0.2
    # Raising the threshold can only keep alarms away and delays up.
    both = detection_tradeoff(stats, ends, float(before), [threshold, 3 * threshold])
    assert both["false_alarms_per_day"].is_monotonic_decreasing
    assert both["mean_delay_h"].iloc[1] >= both["mean_delay_h"].iloc[0]


def test_first_alarm_delay_counts_from_the_change_and_nan_when_missed():
    fired = np.array([[1, 0, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=bool)
    ends = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    delay = first_alarm_delay(fired, ends, np.array([3.0, 3.0]))
    assert delay[0] == 5.0  # the window ending at 8
    assert np.isnan(delay[1])
    with pytest.raises(DetectionInputError, match="equally spaced"):
        first_alarm_delay(fired, np.array([1.0, 2.0, 4.0, 5.0, 6.0]), 0.0)
    with pytest.raises(DetectionInputError, match="control period"):
        detection_tradeoff(fired.astype(float), ends, 1.0, [0.5])


def test_calibrated_threshold_is_the_control_quantile():
    stats = np.arange(1, 1001, dtype=float)  # 1000 control windows
    # 24 windows a day, 2.4 alarms a day = 10% of windows.
    assert calibrated_threshold(stats, 2.4, 24) == pytest.approx(900.1)
    with pytest.raises(DetectionInputError, match="use more control days"):
        calibrated_threshold(stats, 0.001, 24)


# -- injected shifts ----------------------------------------------------------


def log_frame(rng, n=60_000, hours=48):
    ts = np.sort(rng.random(n) * hours * 3600)
    p = rng.uniform(0.01, 0.2, n)
    return pd.DataFrame(
        {
            "ts": ts,
            "device": rng.choice(3, n, p=SHARES),
            "category": rng.integers(0, 4, n),
            "true_p": p,
            "clicked": (rng.random(n) < p).astype(np.int8),
        }
    )


def test_mix_shift_reweights_after_the_start_and_leaves_the_rest():
    frame = log_frame(np.random.default_rng(6))
    start = 24 * 3600.0
    out = mix_shift(frame, column="device", weights={2: 3.0}, start=start, seed=1)
    before = frame["ts"] < start
    pd.testing.assert_frame_equal(out[before.to_numpy()], frame[before])
    np.testing.assert_array_equal(out["ts"], frame["ts"])
    share = np.bincount(out.loc[~before, "device"], minlength=3) / (~before).sum()
    weight = np.array([1.0, 1.0, 3.0])[frame.loc[~before, "device"]]
    expected = np.bincount(frame.loc[~before, "device"], weights=weight) / weight.sum()
    np.testing.assert_allclose(share, expected, atol=0.012)  # 4 sd of resampling
    # Rows move whole: each keeps its own true probability.
    merged = out.merge(frame, on=["device", "category", "true_p"], how="left")
    assert merged["clicked_y"].notna().all()
    again = mix_shift(frame, column="device", weights={2: 3.0}, start=start, seed=1)
    pd.testing.assert_frame_equal(out, again)
    with pytest.raises(ShiftError, match="not in the log"):
        mix_shift(frame, column="country", weights={1: 2.0}, start=0.0)


def test_mix_shift_can_draw_fresh_labels_for_the_resampled_rows():
    frame = log_frame(np.random.default_rng(9), n=200_000)
    start = 24 * 3600.0
    out = mix_shift(
        frame,
        column="device",
        weights={2: 3.0},
        start=start,
        redraw_label="clicked",
        seed=3,
    )
    after = (out["ts"] >= start).to_numpy()
    np.testing.assert_array_equal(out["clicked"][~after], frame["clicked"][~after])
    # Fresh Bernoulli draws: their mean tracks the rows' true probabilities, and a
    # row drawn twice does not always repeat its label.
    assert out["clicked"][after].mean() == pytest.approx(
        out["true_p"][after].mean(), abs=0.003
    )
    twice = out[after][out[after].duplicated("true_p", keep=False)]
    disagree = twice.groupby("true_p")["clicked"].nunique().gt(1).mean()
    assert disagree > 0.05


def test_concept_shift_moves_the_odds_and_labels_but_not_the_inputs():
    frame = log_frame(np.random.default_rng(7), n=200_000)
    start = 24 * 3600.0
    out = concept_shift(
        frame, column="category", values=[1], odds_factor=3.0, start=start, seed=2
    )
    pd.testing.assert_frame_equal(
        out[["ts", "device", "category"]], frame[["ts", "device", "category"]]
    )
    hit = ((frame["ts"] >= start) & (frame["category"] == 1)).to_numpy()
    p, q = frame["true_p"].to_numpy(), out["true_p"].to_numpy()
    odds = (q / (1 - q)) / (p / (1 - p))
    np.testing.assert_allclose(odds[hit], 3.0)
    np.testing.assert_array_equal(q[~hit], p[~hit])
    np.testing.assert_array_equal(out["clicked"][~hit], frame["clicked"][~hit])
    assert out["clicked"][hit].mean() == pytest.approx(q[hit].mean(), abs=0.005)
    with pytest.raises(ShiftError, match="odds_factor must be > 0"):
        concept_shift(frame, column="category", values=[1], odds_factor=0, start=0)


# -- the counting model and the replay ---------------------------------------


def test_cell_rate_model_learns_each_cells_rate():
    rng = np.random.default_rng(8)
    n = 400_000
    x = pd.DataFrame({"a": rng.integers(0, 3, n), "b": rng.integers(0, 2, n)})
    rate = np.array([[0.01, 0.05], [0.1, 0.2], [0.3, 0.02]])
    y = rng.random(n) < rate[x["a"], x["b"]]
    model = CellRateModel(["a", "b"], [3, 2], prior_strength=5).fit(x, y)
    grid = pd.DataFrame({"a": [0, 0, 1, 1, 2, 2], "b": [0, 1, 0, 1, 0, 1]})
    np.testing.assert_allclose(model.predict(grid), rate.ravel(), atol=0.005)
    with pytest.raises(CellRateError, match="outside \\[0, 3\\)"):
        model.predict(pd.DataFrame({"a": [3], "b": [0]}))
    with pytest.raises(CellRateError, match="not fitted"):
        CellRateModel(["a"], [3]).predict(grid)


def stationary_days(num_days, shift_day=None, n=40_000, seed=0):
    """Days of one categorical input whose click rate triples from ``shift_day``."""
    rng = np.random.default_rng(seed)
    base = np.array([0.02, 0.05, 0.1, 0.04])
    days = []
    for day in range(num_days):
        x = pd.DataFrame({"c": rng.integers(0, 4, n)})
        p = base[x["c"]]
        if shift_day is not None and day >= shift_day:
            p = np.where(x["c"] == 1, 3 * p / (1 + 2 * p), p)
        days.append(LabelledDay(day, x, (rng.random(n) < p).astype(float), p))
    return days


def fit_cells(features, labels):
    return CellRateModel(["c"], [4], prior_strength=1).fit(features, labels).predict


def test_replay_retrains_on_schedule_never_or_when_labels_say_so():
    days = stationary_days(12, shift_day=8)
    never = replay_retraining(days, NeverRetrain(), fit_cells, train_days=3)
    assert never.retrain_days == []
    assert never.frame["day"].tolist() == list(range(3, 12))
    weekly = replay_retraining(days, ScheduledRetrain(3), fit_cells, train_days=3)
    assert weekly.retrain_days == [5, 8, 11]
    calibration = [
        AlertRule("calibration", 0.9, "below"),
        AlertRule("calibration", 1.1, "above"),
    ]
    labels = TriggeredRetrain(calibration, min_interval_days=1, label="labels")
    triggered = replay_retraining(
        days, labels, fit_cells, train_days=3, monitored=["c"], categorical=["c"]
    )
    assert triggered.retrain_days[0] == 8  # the day the concept shifted
    assert triggered.frame["psi_c"].max() < 0.01  # inputs never moved
    late = triggered.frame.set_index("day")["excess_log_loss"]
    stale = never.frame.set_index("day")["excess_log_loss"]
    assert late.loc[11] < stale.loc[11] / 3  # retraining repaired the model
    inputs = TriggeredRetrain([AlertRule("psi_c", 0.1)], label="inputs")
    blind = replay_retraining(
        days, inputs, fit_cells, train_days=3, monitored=["c"], categorical=["c"]
    )
    assert blind.retrain_days == []  # a concept shift is invisible to PSI
    with pytest.raises(ReplayError, match="at least one AlertRule"):
        TriggeredRetrain([])
    with pytest.raises(ReplayError, match="more than train_days"):
        replay_retraining(days[:3], NeverRetrain(), fit_cells, train_days=3)
