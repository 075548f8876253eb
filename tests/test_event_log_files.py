"""The generic event log on disk (features.event_log_files)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlsd_lib.features.event_log_files import (
    EventLogError,
    checked_types,
    day_and_hour,
    read_partitioned,
    send_in_chunks,
    type_condition,
    write_typed,
)


def test_day_and_hour_of_world_seconds():
    day, hour = day_and_hour(
        np.array([0.0, 3599.9, 3600.0, 86_399.0, 90_000.0]), 86_400
    )
    assert day.tolist() == [0, 0, 0, 0, 1] and day.dtype == np.int32
    assert hour.tolist() == [0, 0, 1, 23, 1] and hour.dtype == np.int8


def test_types_are_checked_against_the_known_ones():
    assert checked_types(("b",), ("a", "b")) == ["b"]
    with pytest.raises(
        EventLogError, match=r"unknown event types \['c'\]; known: \['a', 'b'\]\."
    ):
        type_condition(["a", "c"], ("a", "b"))
    assert type_condition(None, ("a",)) is None


def test_write_typed_stores_the_typed_columns_and_reads_back_by_type(tmp_path):
    events = pd.DataFrame(
        {"event_id": ["e1", "e2", "e3"], "type": ["a", "b", "a"],
         "note": ["x", "y", "z"], "day": [0, 0, 1], "hour": [3, 4, 0]}
    )  # fmt: skip
    types = {"event_id": pa.string(), "type": pa.dictionary(pa.int8(), pa.string())}
    files = write_typed(events, tmp_path, types, ["type", "note", "event_id"])
    assert files.rows == 3 and len(files.files) == 3
    back = read_partitioned(tmp_path, condition=type_condition(["a"], ("a", "b")))
    assert sorted(back["event_id"]) == ["e1", "e3"]
    assert "note" not in back.columns and list(back.columns[:2]) == ["type", "event_id"]


def test_send_in_chunks_sends_every_row_once_in_order():
    events = pd.DataFrame({"x": range(7)})
    sent: list[list[int]] = []
    assert send_in_chunks(events, lambda c: sent.append(c["x"].tolist()), 3) == 7
    assert sent == [[0, 1, 2], [3, 4, 5], [6]]
    with pytest.raises(EventLogError, match="chunk_size=0 must be at least 1"):
        send_in_chunks(events, sent.append, 0)
