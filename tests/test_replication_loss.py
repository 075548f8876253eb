"""What asynchronous replication loses in a failover, with and without ``WAIT``."""

from __future__ import annotations

import pytest

from mlsd_lib.cluster_drill import DrillFailed, replication_loss_drill
from mlsd_lib.cluster_routing import ClusterRouter
from mlsd_lib.redis_cluster import PrivateRedisCluster, seeds_from_urls

pytestmark = [pytest.mark.cluster, pytest.mark.faults]


def test_a_failover_loses_what_the_master_acked_alone_and_nothing_wait_confirmed():
    """The replica is cut off, the master acknowledges plain writes and is killed:
    the promoted replica lacks every one of them. Writes ``WAIT 1`` confirmed
    before the cut survive; after it, ``WAIT`` confirms none (it times out)."""
    with PrivateRedisCluster() as cluster:
        router = ClusterRouter(seeds_from_urls(cluster.seed_urls()))
        try:
            outcome = replication_loss_drill(
                cluster, router, plain_writes=50, wait_writes=5
            )
            after = replication_loss_drill  # the cluster still has two replicas
            second = after(cluster, router, plain_writes=10, wait_writes=2)
            masters = cluster.master_ports()
            third = after(cluster, router, plain_writes=10, wait_writes=2)
            with pytest.raises(DrillFailed, match="no master has a live replica"):
                after(cluster, router, plain_writes=10, wait_writes=2)
            keys = sum(router.client(address).dbsize() for address in router.masters())
        finally:
            router.close()
    assert outcome["before_acked"] == 5 and outcome["before_lost"] == 0, outcome
    assert outcome["plain_acked"] == 50 and outcome["plain_lost"] == 50, outcome
    assert outcome["wait_acked"] == 0 and outcome["wait_timed_out"] == 5, outcome
    assert outcome["wait_lost"] == 0, outcome
    for later in (second, third):
        assert later["plain_lost"] == later["plain_acked"] == 10, later
        assert later["before_lost"] == 0 and later["wait_acked"] == 0, later
    assert len(masters) == 3, masters
    assert keys == 0, "the drill leaves no key behind"


def test_the_drill_rejects_sizes_below_one():
    with pytest.raises(ValueError, match="plain_writes, wait_writes and wait_timeout"):
        replication_loss_drill(None, None, plain_writes=0)  # type: ignore[arg-type]
