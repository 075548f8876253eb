"""Capacity estimates against hand-computed numbers, and human-readable units."""

from __future__ import annotations

import pytest

from mlsd_lib.capacity import (
    CapacityInputError,
    Estimate,
    Requirements,
    estimate,
    format_si,
    integer_bytes,
    replicas_needed,
    sensitivity,
)


def test_hand_computed_qps() -> None:
    e = estimate(Requirements(100e6, 20, peak_to_average=3, candidates_per_request=50))
    assert e["requests per day"] == 2e9
    assert e["average QPS"] == pytest.approx(23_148.148, abs=1e-3)
    assert e["peak QPS"] == pytest.approx(69_444.444, abs=1e-3)
    assert e["peak inferences per second"] == pytest.approx(3_472_222.2, abs=0.1)
    assert "event log per day" not in e  # no bytes per event: row left out


def test_storage_memory_bandwidth_rows() -> None:
    req = Requirements(
        daily_active_users=10e6,
        requests_per_user_per_day=10,
        peak_to_average=2,
        candidates_per_request=100,
        feature_entities=12e6,
        bytes_per_entity=1_000,
        replication=3,
        bytes_per_feature_vector=200,
        events_per_request=5,
        bytes_per_event=400,
        retention_days=90,
        bytes_per_request=2_000,
        bytes_per_response=8_000,
        catalog_items=50e6,
        bytes_per_item=300e3,
        embedding_dim=128,
    )
    e = estimate(req)
    peak = 1e8 / 86_400 * 2
    assert e["online feature store memory"] == pytest.approx(36e9)
    assert e["feature fetch bandwidth at peak"] == pytest.approx(peak * 100 * 200)
    assert e["event log per day"] == pytest.approx(1e8 * 5 * 400)  # 200 GB
    assert e["event log for retention"] == pytest.approx(200e9 * 90)
    assert e["edge bandwidth at peak"] == pytest.approx(peak * 10_000)
    assert e["catalog storage"] == pytest.approx(15e12)
    assert e["embedding index memory"] == pytest.approx(50e6 * 128 * 4)
    frame = e.to_frame()
    assert list(frame.columns) == ["quantity", "formula", "value", "pretty"]
    row = frame.set_index("quantity").loc["event log per day"]
    assert row["pretty"] == "200 GB"
    assert "bytes_per_event" in row["formula"]
    assert "<table" in e._repr_html_()


def test_feature_entities_default_to_daily_users() -> None:
    e = estimate(Requirements(1e6, 1, bytes_per_entity=500))
    assert e["online feature store memory"] == pytest.approx(500e6)


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (1_234_567, "", "1.23M"),
        (1_200_000, "", "1.2M"),
        (3.4e9, "B/s", "3.4 GB/s"),
        (69_444.4, "QPS", "69.4k QPS"),
        (999_999, "", "1M"),
        (23_148.1, "", "23.1k"),
        (512, "B", "512 B"),
        (0.5, "", "0.5"),
        (0, "B", "0 B"),
        (-1_500, "", "-1.5k"),
        (2e12, "B", "2 TB"),
    ],
)
def test_format_si(value: float, unit: str, text: str) -> None:
    assert format_si(value, unit) == text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"daily_active_users": 0}, "daily_active_users must be > 0"),
        ({"requests_per_user_per_day": -1}, "requests_per_user_per_day must be > 0"),
        ({"peak_to_average": 0.5}, "peak_to_average must be >= 1"),
        ({"candidates_per_request": 0}, "candidates_per_request must be >= 1"),
        ({"bytes_per_event": -3}, "bytes_per_event must be >= 0"),
        ({"retention_days": float("nan")}, "finite"),
    ],
)
def test_clear_errors(kwargs: dict, message: str) -> None:
    base = {"daily_active_users": 1e6, "requests_per_user_per_day": 5} | kwargs
    with pytest.raises(CapacityInputError, match=message):
        Requirements(**base)


def test_estimate_can_be_extended_and_names_missing_rows() -> None:
    e = Estimate()
    e.add("images per day", "uploads × users", 5e6)
    with pytest.raises(CapacityInputError, match="already"):
        e.add("images per day", "again", 1)
    with pytest.raises(KeyError, match="known: \\['images per day'\\]"):
        e["storage"]


# -- traffic given per day, and the helpers every case study's estimate uses ----------


def test_traffic_given_as_requests_per_day() -> None:
    e = estimate(Requirements(requests_per_day=8.64e7, peak_to_average=2))
    assert e["requests per day"] == 8.64e7
    assert e["average QPS"] == pytest.approx(1_000)
    assert e["peak QPS"] == pytest.approx(2_000)
    row = e.to_frame().set_index("quantity").loc["requests per day"]
    assert row["formula"] == "requests_per_day (given)"
    # Per-user traffic still reads as before, positionally too.
    per_user = estimate(Requirements(1e6, 86.4))
    assert per_user["average QPS"] == pytest.approx(1_000)
    assert "daily_active_users" in per_user.to_frame()["formula"].iloc[0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "traffic is missing \\(daily_active_users, requests_per_user_per_day\\)"),
        (
            {"daily_active_users": 1e6},
            "traffic is missing \\(requests_per_user_per_day",
        ),
        (
            {"requests_per_day": 1e6, "requests_per_user_per_day": 2},
            "not both",
        ),
        ({"requests_per_day": 0}, "requests_per_day must be > 0"),
        (
            {"requests_per_day": 1e6, "bytes_per_entity": 100},
            "bytes_per_entity needs feature_entities",
        ),
    ],
)
def test_traffic_must_be_given_once(kwargs: dict, message: str) -> None:
    with pytest.raises(CapacityInputError, match=message):
        Requirements(**kwargs)


def test_feature_store_with_requests_per_day_counts_given_entities() -> None:
    req = Requirements(requests_per_day=1e6, feature_entities=5e7, bytes_per_entity=120)
    assert estimate(req)["online feature store memory"] == pytest.approx(6e9)
    with_users = Requirements(
        requests_per_day=1e6, daily_active_users=2e6, bytes_per_entity=100
    )
    assert estimate(with_users)["online feature store memory"] == pytest.approx(2e8)


def test_replicas_needed_plans_below_full_utilization() -> None:
    assert replicas_needed(3_470, 2.0) == 2_892  # ceil(3,470 / 1.2)
    assert replicas_needed(600, 100) == 10
    assert replicas_needed(600, 100, target_utilization=1.0) == 6
    assert replicas_needed(0, 100) == 1  # a service runs at least one replica
    with pytest.raises(CapacityInputError, match="capacity_per_replica_s must be > 0"):
        replicas_needed(10, 0)
    with pytest.raises(CapacityInputError, match="target_utilization must be in"):
        replicas_needed(10, 5, target_utilization=1.5)
    with pytest.raises(CapacityInputError, match="load_per_s must be >= 0"):
        replicas_needed(-1, 5)


@pytest.mark.parametrize(
    ("count", "size"),
    [(1, 1), (128, 1), (129, 2), (32_768, 2), (50e6, 4), (2**31, 4), (2**31 + 1, 8)],
)
def test_integer_bytes(count: float, size: int) -> None:
    assert integer_bytes(count) == size


def test_integer_bytes_refuses_what_no_integer_holds() -> None:
    with pytest.raises(CapacityInputError, match="count must be"):
        integer_bytes(0)
    with pytest.raises(CapacityInputError, match="do not fit a signed 64-bit"):
        integer_bytes(1e20)


def test_sensitivity_scales_one_assumption_at_a_time() -> None:
    base = Requirements(
        1e6, 10, candidates_per_request=100, bytes_per_event=200, retention_days=30
    )
    table = sensitivity(
        estimate,
        base,
        ["daily_active_users", "candidates_per_request", "retention_days"],
        ["peak QPS", "peak inferences per second", "event log for retention"],
    )
    assert table.index.name == "assumption"
    assert table.loc["daily_active_users"].tolist() == pytest.approx([2, 2, 2])
    assert table.loc["candidates_per_request"].tolist() == pytest.approx([1, 2, 1])
    assert table.loc["retention_days"].tolist() == pytest.approx([1, 1, 2])
    halved = sensitivity(estimate, base, ["daily_active_users"], ["peak QPS"], 0.5)
    assert halved.iloc[0, 0] == pytest.approx(0.5)


def test_sensitivity_names_what_it_cannot_scale() -> None:
    base = Requirements(1e6, 10)
    with pytest.raises(CapacityInputError, match="unknown assumptions \\['users'\\]"):
        sensitivity(estimate, base, ["users"], ["peak QPS"])
    with pytest.raises(CapacityInputError, match="other than 1"):
        sensitivity(estimate, base, ["daily_active_users"], ["peak QPS"], 1.0)
    with pytest.raises(CapacityInputError, match="dataclass instance"):
        sensitivity(estimate, {"daily_active_users": 1}, ["x"], ["peak QPS"])
    with pytest.raises(CapacityInputError, match="not a number"):
        sensitivity(estimate, base, ["feature_entities"], ["peak QPS"])
