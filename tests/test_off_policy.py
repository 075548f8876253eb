"""Off-policy estimators on a toy bandit whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.evaluation.off_policy import (
    OffPolicyInputError,
    PropensityError,
    clipped_ips,
    effective_sample_size,
    importance_weights,
    ips,
    off_policy_table,
    snips,
)

#: Five actions with known engagement probabilities.
REWARD = np.array([0.05, 0.10, 0.20, 0.30, 0.02])
LOGGER = np.array([0.40, 0.30, 0.15, 0.05, 0.10])
TARGET = np.array([0.05, 0.10, 0.25, 0.55, 0.05])
TRUE_VALUE = float(TARGET @ REWARD)


def _log(rng: np.random.Generator, n: int):
    action = rng.choice(len(LOGGER), size=n, p=LOGGER)
    reward = (rng.random(n) < REWARD[action]).astype(float)
    return reward, LOGGER[action], TARGET[action]


def test_ips_is_unbiased_and_snips_close_on_a_known_bandit() -> None:
    rng = np.random.default_rng(0)
    values = {"IPS": [], "SNIPS": []}
    for _ in range(400):
        r, mu, pi = _log(rng, 2_000)
        values["IPS"].append(ips(r, mu, pi).value)
        values["SNIPS"].append(snips(r, mu, pi).value)
    ips_values = np.array(values["IPS"])
    # Mean of 400 estimates within 3 standard errors of the truth.
    assert abs(ips_values.mean() - TRUE_VALUE) < 3 * ips_values.std() / 20
    assert np.mean(values["SNIPS"]) == pytest.approx(TRUE_VALUE, rel=0.02)


def test_intervals_cover_the_truth_at_the_nominal_rate() -> None:
    rng = np.random.default_rng(1)
    covered = {"IPS": 0, "SNIPS": 0}
    sims = 400
    for _ in range(sims):
        r, mu, pi = _log(rng, 3_000)
        for estimate in (ips(r, mu, pi), snips(r, mu, pi)):
            low, high = estimate.ci
            covered[estimate.estimator] += low <= TRUE_VALUE <= high
    for name, hits in covered.items():
        assert 0.92 <= hits / sims <= 0.98, (name, hits / sims)


def test_clipping_converges_to_the_clipped_value_below_the_truth() -> None:
    rng = np.random.default_rng(2)
    clip = 3.0
    clipped_value = float(LOGGER @ (np.minimum(TARGET / LOGGER, clip) * REWARD))
    assert clipped_value < TRUE_VALUE  # action 3's weight 11 is capped at 3
    r, mu, pi = _log(rng, 400_000)
    estimate = clipped_ips(r, mu, pi, clip=clip)
    assert estimate.value == pytest.approx(clipped_value, abs=4 * estimate.se)
    assert estimate.ci[1] < TRUE_VALUE
    assert estimate.clipped == int(np.sum(pi / mu > clip))
    assert estimate.max_weight == clip


def test_target_equal_to_logger_gives_the_logged_mean() -> None:
    rng = np.random.default_rng(3)
    r, mu, _ = _log(rng, 5_000)
    for estimate in (ips(r, mu, mu), snips(r, mu, mu)):
        assert estimate.value == pytest.approx(r.mean())
        assert estimate.ess == pytest.approx(len(r))
        assert estimate.se == pytest.approx(r.std(ddof=1) / np.sqrt(len(r)))


def test_effective_sample_size() -> None:
    assert effective_sample_size(np.full(10, 3.0)) == pytest.approx(10)
    assert effective_sample_size([0, 0, 5.0, 0]) == pytest.approx(1)
    assert effective_sample_size([0.0, 0.0]) == 0.0
    # A target that always takes the logger's 10% action: only those rows count.
    rng = np.random.default_rng(4)
    _, mu, _ = _log(rng, 10_000)
    chosen = mu == LOGGER[4]
    weights = importance_weights(chosen.astype(float), mu)
    assert effective_sample_size(weights) == pytest.approx(chosen.sum())
    assert chosen.sum() < 0.12 * len(mu)


def test_grouped_errors_account_for_correlated_rows() -> None:
    """Each row duplicated inside its group: the iid error is too small by
    sqrt(2), the cluster-robust one is right."""
    rng = np.random.default_rng(5)
    r, mu, pi = _log(rng, 20_000)
    single = ips(r, mu, pi, groups=np.arange(len(r)))
    assert single.se == pytest.approx(ips(r, mu, pi).se)
    doubled = (np.repeat(r, 2), np.repeat(mu, 2), np.repeat(pi, 2))
    naive = ips(*doubled)
    clustered = ips(*doubled, groups=np.repeat(np.arange(len(r)), 2))
    assert naive.value == pytest.approx(single.value)
    assert clustered.se == pytest.approx(single.se, rel=1e-3)
    assert clustered.se / naive.se == pytest.approx(np.sqrt(2), rel=0.01)
    assert clustered.groups == len(r)
    s = snips(*doubled, groups=np.repeat(np.arange(len(r)), 2))
    assert s.se == pytest.approx(snips(r, mu, pi).se, rel=1e-3)


def test_table_lists_the_three_estimators() -> None:
    rng = np.random.default_rng(6)
    table = off_policy_table(*_log(rng, 1_000), clip=5.0)
    assert list(table.index) == ["IPS", "SNIPS", "clipped IPS"]
    assert (table["ci low"] < table["value"]).all()
    assert table.loc["clipped IPS", "max weight"] <= 5.0


def test_snips_without_any_weight_is_nan() -> None:
    estimate = snips([1.0, 0.0], [0.5, 0.5], [0.0, 0.0])
    assert np.isnan(estimate.value) and estimate.ess == 0.0


def test_errors_name_the_rows_and_the_fix() -> None:
    with pytest.raises(PropensityError, match=r"0, negative or NaN in 2 row\(s\) "):
        ips([1.0, 0.0, 1.0], [0.5, 0.0, np.nan], [1.0, 1.0, 1.0])
    with pytest.raises(PropensityError, match=r"\(first: 1, 2\).*logged as NaN"):
        ips([1.0, 0.0, 1.0], [0.5, 0.0, np.nan], [1.0, 1.0, 1.0])
    with pytest.raises(PropensityError, match=r"exceeds 1 .*not a score"):
        snips([1.0], [1.5], [1.0])
    with pytest.raises(OffPolicyInputError, match=r"outside \[0, 1\].*deterministic"):
        ips([1.0], [0.5], [2.0])
    with pytest.raises(OffPolicyInputError, match="one reward per logged row"):
        ips([1.0, 2.0], [0.5], [1.0])
    with pytest.raises(OffPolicyInputError, match="reward is NaN"):
        ips([np.nan], [0.5], [1.0])
    with pytest.raises(OffPolicyInputError, match="clip must be a positive"):
        clipped_ips([1.0], [0.5], [1.0], clip=0)
    with pytest.raises(OffPolicyInputError, match="one group"):
        ips([1.0, 0.0], [0.5, 0.5], [1.0, 1.0], groups=[1])
    with pytest.raises(OffPolicyInputError, match="the log is empty"):
        ips([], [], [])
    assert issubclass(PropensityError, ValueError)
