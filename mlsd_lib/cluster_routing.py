"""Which Redis Cluster node owns a slot, and one request per node, sent together.

Introduced in ``notebooks/feature_store.ipynb`` (with
:mod:`mlsd_lib.features.cluster_online`, the online store it serves).

Why not redis-py's ``RedisCluster``: its commands go one slot at a time through
a generic path with retries and backoff, which is the right default for an
application but hides the two things this book measures and tests: that a read
is *one request per node, all in flight at once* (so one round trip in wall
time), and what a read does while a slot has no master (it answers at once,
with the unreachable records flagged, instead of retrying for seconds). So the
routing here is small and explicit:

* :class:`ClusterRouter` keeps the slot map from ``CLUSTER SLOTS`` (asked of any
  node that answers, seeds first) and a client per node for ordinary commands.
  It is refreshed on ``MOVED`` or a dead connection, at most every
  ``refresh_interval_s`` (a dead master is listed until its replica is promoted).
* :meth:`ClusterRouter.send_to_nodes` writes every node's packed commands on that
  node's connection before reading any reply, so the nodes work in parallel
  without threads; a node that fails answers with the exception in place of its
  replies, and the other nodes' replies are unaffected. Measured against a thread
  per node (``benchmarks/cluster_store.py``, 2 cores, 3 masters on loopback):
  for one entity over 3 views the two are within noise (p50 0.27 ms
  interleaved, 0.24 ms threads), for 100 candidates (17 shard scripts) the
  thread hand-offs cost more than they overlap (p50 0.71 ms interleaved, 0.86
  ms threads). So interleaving is the default and ``fan_out="threads"`` stays,
  to be measured on other machines.
* :func:`acknowledged_set` is a write that counts as done only once ``WAIT``
  says a replica has it, which is what survives a failover.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from mlsd_lib.errors import MlsdError

NUM_SLOTS = 16_384
Address = tuple[str, int]


class ClusterUnavailable(MlsdError, ConnectionError):
    """No node of the cluster answered; the message names the seeds tried."""


@dataclass(frozen=True)
class NodeFailure:
    """What a node's replies are replaced by when the node could not be reached."""

    address: Address
    error: Exception


def parse_cluster_slots(reply: Sequence) -> tuple[list[Address | None], set[Address]]:
    """``CLUSTER SLOTS`` as (owner of each slot or None, every node listed)."""
    owners: list[Address | None] = [None] * NUM_SLOTS
    nodes: set[Address] = set()
    for entry in reply:
        start, end, master, *replicas = entry
        host = master[0].decode() if isinstance(master[0], bytes) else master[0]
        address = (host, int(master[1]))
        nodes.add(address)
        for replica in replicas:
            name = replica[0].decode() if isinstance(replica[0], bytes) else replica[0]
            nodes.add((name, int(replica[1])))
        for slot in range(int(start), int(end) + 1):
            owners[slot] = address
    return owners, nodes


def slot_of(key: str | bytes) -> int:
    """The hash slot of a key (only the ``{tag}`` part counts when there is one)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


class ClusterRouter:
    """The slot map of one Redis Cluster, and connections to its nodes."""

    def __init__(
        self,
        seeds: Sequence[Address],
        *,
        socket_timeout_s: float = 1.0,
        connect_timeout_s: float = 0.5,
        refresh_interval_s: float = 0.1,
        fan_out: Literal["interleaved", "threads"] = "interleaved",
    ):
        if not seeds:
            raise ClusterUnavailable(
                "a cluster router needs at least one seed node (host, port): set "
                "REDIS_CLUSTER_URL or pass PrivateRedisCluster.seed_urls()."
            )
        self.seeds = list(seeds)
        self.socket_timeout_s = socket_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.refresh_interval_s = refresh_interval_s
        self.fan_out = fan_out
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._clients: dict[Address, redis.Redis] = {}
        self._local = threading.local()
        self._owners: list[Address | None] = [None] * NUM_SLOTS
        self._known: set[Address] = set(self.seeds)
        self._refreshed_at = 0.0
        self.refresh(force=True)

    # -- the slot map --------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> bool:
        """Reload the slot map from the first node that answers; returns whether
        it was reloaded (not when the last reload is younger than the interval)."""
        with self._lock:
            now = time.monotonic()
            if not force and now - self._refreshed_at < self.refresh_interval_s:
                return False
            self._refreshed_at = now
            candidates = list(dict.fromkeys([*self.seeds, *sorted(self._known)]))
            errors = []
            for address in candidates:
                try:
                    reply = self._client_locked(address).execute_command(
                        "CLUSTER", "SLOTS"
                    )
                except redis.RedisError as error:
                    errors.append(f"{address[0]}:{address[1]}: {error}")
                    continue
                owners, nodes = parse_cluster_slots(reply)
                self._owners = owners
                self._known |= nodes
                return True
        raise ClusterUnavailable(
            f"no node of the Redis Cluster answered CLUSTER SLOTS ({'; '.join(errors)})"
            ". Check that the cluster runs and REDIS_CLUSTER_URL names one of its "
            "nodes."
        )

    def owner(self, slot: int) -> Address | None:
        """The master serving ``slot``, or None while no master has it."""
        return self._owners[slot]

    def owner_of_key(self, key: str | bytes) -> Address:
        """The master serving ``key``; raises while its slot has none."""
        address = self._owners[slot_of(key)]
        if address is None:
            raise ClusterUnavailable(
                f"no master serves the slot of {key!r} now (a failover is under way):"
                " retry in a few seconds."
            )
        return address

    def masters(self) -> list[Address]:
        """Every master in the slot map."""
        return sorted({a for a in self._owners if a is not None})

    # -- connections ---------------------------------------------------------------
    def client(self, address: Address) -> redis.Redis:
        """A redis-py client for one node (for writes and administration)."""
        with self._lock:
            return self._client_locked(address)

    def _client_locked(self, address: Address) -> redis.Redis:
        client = self._clients.get(address)
        if client is None:
            # No retries: a dead master must fail fast (the caller degrades or
            # refreshes the slot map), not back off for seconds.
            client = redis.Redis(
                host=address[0],
                port=address[1],
                socket_timeout=self.socket_timeout_s,
                socket_connect_timeout=self.connect_timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            self._clients[address] = client
        return client

    def connection(self, address: Address) -> redis.Connection:
        """This thread's own connection to a node, for the read hot path."""
        connections = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        connection = connections.get(address)
        if connection is None:
            connection = redis.Connection(
                host=address[0],
                port=address[1],
                socket_timeout=self.socket_timeout_s,
                socket_connect_timeout=self.connect_timeout_s,
            )
            connections[address] = connection
        return connection

    def send_to_nodes(
        self, packed: Mapping[Address, list[bytes]]
    ) -> dict[Address, list[object] | NodeFailure]:
        """Send each node its packed commands, all nodes before any reply is read.

        Returns each node's replies in order (an error reply is the
        ``ResponseError`` itself, in its place), or a :class:`NodeFailure` for a
        node that could not be reached; the connection of a failed node is dropped
        and the slot map refreshed (rate-limited).
        """
        if self.fan_out == "threads" and len(packed) > 1:
            return self._send_with_threads(packed)
        results: dict[Address, list[object] | NodeFailure] = {}
        sent: list[tuple[Address, redis.Connection]] = []
        for address, commands in packed.items():
            connection = self.connection(address)
            try:
                # One sendall per node: redis-py would make one per command.
                connection.send_packed_command([b"".join(commands)], check_health=False)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                connection.disconnect()
                results[address] = NodeFailure(address, error)
                continue
            sent.append((address, connection))
        for address, connection in sent:
            replies: list[object] = []
            try:
                for _ in packed[address]:
                    try:
                        replies.append(connection.read_response())
                    except redis.ResponseError as error:
                        replies.append(error)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
                connection.disconnect()
                results[address] = NodeFailure(address, error)
                continue
            results[address] = replies
        if any(isinstance(r, NodeFailure) for r in results.values()):
            # Every node down raises here: the callers degrade every record anyway.
            with contextlib.suppress(ClusterUnavailable):
                self.refresh()
        return results

    def _send_with_threads(
        self, packed: Mapping[Address, list[bytes]]
    ) -> dict[Address, list[object] | NodeFailure]:
        """The alternative, kept to be measured: each node's request on a thread
        of a pool (each thread has its own connections), all joined."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fan")
        futures = {
            address: self._pool.submit(self._send_one, address, commands)
            for address, commands in packed.items()
        }
        results = {address: future.result() for address, future in futures.items()}
        if any(isinstance(r, NodeFailure) for r in results.values()):
            with contextlib.suppress(ClusterUnavailable):
                self.refresh()
        return results

    def _send_one(
        self, address: Address, commands: list[bytes]
    ) -> list[object] | NodeFailure:
        connection = self.connection(address)
        try:
            connection.send_packed_command([b"".join(commands)], check_health=False)
            replies: list[object] = []
            for _ in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as error:
                    replies.append(error)
            return replies
        except (redis.ConnectionError, redis.TimeoutError, OSError) as error:
            connection.disconnect()
            return NodeFailure(address, error)

    def close_local(self) -> None:
        """Close this thread's read connections (other threads keep theirs)."""
        for connection in getattr(self._local, "connections", {}).values():
            connection.disconnect()
        self._local.connections = {}

    def close(self) -> None:
        """Close every client and this thread's read connections."""
        with self._lock:
            for client in self._clients.values():
                client.close()
            self._clients.clear()
            if self._pool is not None:
                self._pool.shutdown(wait=False)
                self._pool = None
        for connection in getattr(self._local, "connections", {}).values():
            connection.disconnect()
        self._local.connections = {}


def acknowledged_set(
    router: ClusterRouter,
    key: str,
    value: bytes | str,
    *,
    replicas: int = 1,
    timeout_ms: int = 100,
) -> bool:
    """``SET`` then ``WAIT replicas timeout_ms`` on the key's master, one round trip.

    True only when ``WAIT`` reports the write on ``replicas`` replicas: such a
    write survives the master's death, because the replica that has it is the one
    promoted (with one replica per master, the only candidate). False (or an
    error) means the write may be lost in a failover, and the caller must not
    count it as done. Redis replication stays asynchronous: ``WAIT`` does not
    make the write roll back when it times out, it only tells the truth about it.
    """
    client = router.client(router.owner_of_key(key))
    pipe = client.pipeline(transaction=False)
    pipe.set(key, value)
    pipe.execute_command("WAIT", replicas, timeout_ms)
    _, acknowledged = pipe.execute()
    return int(acknowledged) >= replicas
