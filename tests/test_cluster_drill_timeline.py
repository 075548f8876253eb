"""The failover timeline: the recorders delegate, record, and re-raise; the
bins count every read once, by outcome, around the kill."""

from __future__ import annotations

import itertools

import pytest

from mlsd_lib.cluster_drill_timeline import (
    RecordingCluster,
    RecordingStore,
    TimelineError,
    drill_timeline,
    plot_failover_timeline,
)


class _Result:
    def __init__(self, degraded: bool):
        self.degraded = degraded


class _Store:
    def __init__(self, outcomes):
        self.outcomes = iter(outcomes)
        self.closed = 0

    def read(self, rows, refs, *, now=None):
        outcome = next(self.outcomes)
        if outcome == "failed":
            raise ConnectionError("master gone")
        return _Result(outcome == "degraded")

    def close(self):
        self.closed += 1


class _Cluster:
    def __init__(self):
        self.killed = []
        self.ports = [1, 2]

    def kill(self, port):
        self.killed.append(port)

    def wait_failover(self, timeout_s=30.0):
        return 1.5


def test_recorders_delegate_record_and_reraise():
    ticks = itertools.count(step=0.05)  # every clock reading 50 ms later
    clock = lambda: next(ticks)  # noqa: E731
    store = RecordingStore(_Store(["full", "degraded", "failed", "full"]), clock)
    cluster = RecordingCluster(_Cluster(), clock)
    assert store.read([], []).degraded is False
    cluster.kill(2)
    assert store.read([], []).degraded is True
    with pytest.raises(ConnectionError, match="master gone"):
        store.read([], [])
    assert cluster.wait_failover(5) == 1.5
    store.read([], [])
    store.close()  # delegated
    assert (
        store._store.closed == 1 and cluster.killed == [2] and cluster.ports == [1, 2]
    )
    assert [r.outcome for r in store.reads] == ["full", "degraded", "failed", "full"]
    timeline = drill_timeline(store, cluster, bin_s=0.1)
    assert timeline[["full", "degraded", "failed"]].to_numpy().sum() == 4
    before = timeline[timeline.t_s < 0]
    assert before.full.sum() == 1 and before.degraded.sum() == 0
    assert timeline.failed.sum() == 1 and timeline.degraded.sum() == 1
    assert cluster.recovered_at > cluster.killed_at
    fig = plot_failover_timeline(timeline, cluster.recovered_at - cluster.killed_at)
    assert fig.axes[0].get_xlabel() == "seconds from the kill"


def test_a_timeline_needs_a_kill_and_a_positive_bin():
    store, cluster = RecordingStore(_Store([])), RecordingCluster(_Cluster())
    with pytest.raises(TimelineError, match="no kill was recorded"):
        drill_timeline(store, cluster)
    cluster.kill(1)
    with pytest.raises(TimelineError, match="bin width > 0"):
        drill_timeline(store, cluster, bin_s=0)
