"""A private Redis Cluster on loopback: three masters, three replicas, started here.

Introduced in ``notebooks/feature_store.ipynb`` (a scale-out chapter will take
it over). The online store on a cluster (:mod:`mlsd_lib.features.cluster_online`)
is tested and measured on a real cluster, not an emulation: failover, replication
lag and ``WAIT`` exist only in real servers. So this module starts one the way an
operator would:

1. ``masters x (1 + replicas)`` ``redis-server --cluster-enabled yes`` processes,
   each a :class:`~mlsd_lib.redis_backend.PrivateRedisServer` (private temp
   folder holding its ``nodes.conf``, loopback only, persistence off, killed with
   this process);
2. joined with ``redis-cli --cluster create ... --cluster-replicas 1
   --cluster-yes``, which hands each master a third of the 16384 hash slots and
   attaches one replica to each. Without ``redis-cli`` (a reader whose only
   server is the embedded ``valkey-server`` of :mod:`mlsd_lib.redis_backend`),
   the same steps are sent as commands, as ``redis-cli`` does them: ``CLUSTER
   ADDSLOTSRANGE`` per master, ``CLUSTER SET-CONFIG-EPOCH``, ``CLUSTER MEET``,
   then ``CLUSTER REPLICATE`` per replica;
3. waited on until every node says ``cluster_state:ok`` and every replica's link
   to its master is up (before that, ``WAIT 1`` would time out).

Ports: a cluster node also listens on ``port + 10000`` (the cluster bus), so a
port is taken only where that one is free too (and below 55536).

``cluster-node-timeout`` is 1 s here (the default is 15 s): a killed master is
marked failed and its replica promoted within a few seconds, short enough for a
test. ``cluster-require-full-coverage no`` keeps the other masters serving while
one master's slots have none: a read of those slots is degraded, not every read.

A cluster someone else runs is named by ``REDIS_CLUSTER_URL`` (any one node,
``redis://host:port``); :func:`cluster_url_from_env` reads it. To run one for
other processes (CI does, for the whole test session)::

    python -m mlsd_lib.redis_cluster --url-file /tmp/cluster.url &

starts the cluster, writes its seed URL to the file once it is ready, and keeps it
up until the command is stopped (SIGTERM or Ctrl-C); the nodes die with it.
"""

from __future__ import annotations

import argparse
import atexit
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from mlsd_lib.cluster_routing import NUM_SLOTS
from mlsd_lib.config import load_settings
from mlsd_lib.errors import MlsdError
from mlsd_lib.net import LOOPBACK, free_loopback_port, wait_until
from mlsd_lib.processes import tail
from mlsd_lib.redis_backend import (
    PrivateRedisServer,
    RedisUnavailable,
    embedded_server_binary,
    real_server_binary,
)

#: The environment variable that names a cluster's seed node.
CLUSTER_URL_VARIABLE = "REDIS_CLUSTER_URL"
CLUSTER_BUS_OFFSET = 10_000


class ClusterStartFailed(MlsdError, RuntimeError):
    """The private cluster did not form; the message has the nodes' logs."""


def cluster_url_from_env() -> str | None:
    """``REDIS_CLUSTER_URL`` if set (a seed node, ``redis://host:port``), read by
    :func:`mlsd_lib.config.load_settings` like every other variable."""
    return load_settings().redis_cluster_url


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def free_cluster_port(attempts: int = 200) -> int:
    """A free loopback port whose cluster-bus port (``+10000``) is free too."""
    for _ in range(attempts):
        port = free_loopback_port()
        if port + CLUSTER_BUS_OFFSET <= 65_535 and _port_free(
            port + CLUSTER_BUS_OFFSET
        ):
            return port
    raise ClusterStartFailed(
        f"found no loopback port p with p+{CLUSTER_BUS_OFFSET} free in {attempts} "
        "tries; free some ports or name a running cluster with REDIS_CLUSTER_URL."
    )


class PrivateRedisCluster:
    """A Redis Cluster of private loopback servers, owned by this process.

    Use it as a context manager (or :meth:`start` / :meth:`stop`). :meth:`kill`
    SIGKILLs one node, as a crash would, for failover drills.
    """

    def __init__(
        self,
        masters: int = 3,
        replicas_per_master: int = 1,
        *,
        node_timeout_ms: int = 1_000,
        binary: str | None = None,
        cli: str | None = "redis-cli",
        startup_timeout_s: float = 30.0,
    ):
        if masters < 3:
            raise ClusterStartFailed(
                f"a Redis Cluster needs at least 3 masters (asked for {masters}): "
                "with fewer, no majority can vote a failed master out."
            )
        self.masters = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        # ``redis-server`` on PATH, else the embedded ``valkey-server``.
        self.binary = binary or _server_binary()
        # ``redis-cli`` joins the nodes when it is installed; otherwise (or with
        # ``cli=None``) the join is sent as commands (:meth:`_join_by_commands`).
        self.cli = cli if cli is not None and shutil.which(cli) else None
        self.startup_timeout_s = startup_timeout_s
        self.servers: list[PrivateRedisServer] = []

    # -- addresses -----------------------------------------------------------------
    @property
    def ports(self) -> list[int]:
        """Every node's port, in start order (killed nodes included)."""
        return [s.port for s in self.servers if s.port is not None]

    @property
    def url(self) -> str:
        """A seed node's URL (what ``REDIS_CLUSTER_URL`` would hold)."""
        if not self.servers:
            raise ClusterStartFailed("the cluster is not running: call start() first.")
        return f"redis://{LOOPBACK}:{self.servers[0].port}"

    def seed_urls(self) -> list[str]:
        """Every node's URL: a client started from several survives one's death."""
        return [f"redis://{LOOPBACK}:{port}" for port in self.ports]

    # -- lifetime ------------------------------------------------------------------
    def start(self) -> PrivateRedisCluster:
        """Start the nodes, join them, and wait until the cluster is ready."""
        try:
            for _ in range(self.masters * (1 + self.replicas_per_master)):
                self.servers.append(self._start_node())
            self._create()
            self.wait_ready(self.startup_timeout_s)
        except Exception as error:
            logs = self._logs()
            self.stop()
            raise ClusterStartFailed(
                f"the private Redis Cluster did not form ({error}). Node logs end:\n"
                f"{tail(logs, 30)}\nName a running cluster with "
                f"{CLUSTER_URL_VARIABLE} instead."
            ) from error
        atexit.register(self.stop)
        return self

    def _start_node(self, attempts: int = 5) -> PrivateRedisServer:
        args = [
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-require-full-coverage", "no",
        ]  # fmt: skip
        last: Exception | None = None
        for _ in range(attempts):
            server = PrivateRedisServer(self.binary, extra_args=args)
            try:
                return server.start(port=free_cluster_port())
            except RedisUnavailable as error:  # the port was taken meanwhile
                last = error
        raise ClusterStartFailed(f"a cluster node would not start: {last}")

    def _create(self) -> None:
        if self.cli is None:
            self._join_by_commands()
            return
        addresses = [f"{LOOPBACK}:{port}" for port in self.ports]
        command = [
            self.cli, "--cluster", "create", *addresses,
            "--cluster-replicas", str(self.replicas_per_master), "--cluster-yes",
        ]  # fmt: skip
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False
        )
        if done.returncode != 0:
            raise ClusterStartFailed(
                f"`{' '.join(command)}` failed ({done.returncode}):\n"
                f"{tail(done.stdout + done.stderr)}"
            )

    def _join_by_commands(self) -> None:
        """What ``redis-cli --cluster create`` does, as commands: slots split
        evenly over the masters, one config epoch each, every node met, then
        each replica attached to master ``i % masters``."""
        ports = self.ports
        masters, replicas = ports[: self.masters], ports[self.masters :]
        clients = {port: self._client(port) for port in ports}
        try:
            for number, (port, (first, last)) in enumerate(
                zip(masters, _slot_ranges(self.masters), strict=True)
            ):
                clients[port].execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
                clients[port].execute_command("CLUSTER", "SET-CONFIG-EPOCH", number + 1)
            for port in ports[1:]:
                clients[ports[0]].execute_command("CLUSTER", "MEET", LOOPBACK, port)
            everyone = len(ports)
            if not wait_until(
                lambda: all(self._knows_all(c, everyone) for c in clients.values()),
                timeout_s=self.startup_timeout_s,
                interval_s=0.05,
            ):
                raise ClusterStartFailed("the nodes did not all meet each other")
            ids = {
                port: _text(clients[port].execute_command("CLUSTER", "MYID"))
                for port in masters
            }
            for number, port in enumerate(replicas):
                master = masters[number % self.masters]
                clients[port].execute_command("CLUSTER", "REPLICATE", ids[master])
        finally:
            for client in clients.values():
                client.close()

    @staticmethod
    def _knows_all(client: redis.Redis, nodes: int) -> bool:
        lines = _text(client.execute_command("CLUSTER", "NODES")).splitlines()
        return len(lines) == nodes and not any("handshake" in n for n in lines)

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until every live node says ``cluster_state:ok``, every slot has a live
        master, and every live replica's link to its master is up."""
        if not wait_until(self._ready, timeout_s=timeout_s, interval_s=0.1):
            raise ClusterStartFailed(
                f"the cluster was not ready after {timeout_s:.0f} s: "
                f"{self.describe_nodes()}"
            )

    def _ready(self) -> bool:
        live = self.live_ports()
        covered = 0
        for port in live:
            client = self._client(port)
            try:
                info = _text(client.execute_command("CLUSTER", "INFO"))
                if "cluster_state:ok" not in info:
                    return False
                # With partial coverage allowed, "ok" does not mean this node
                # has learnt a failover: its slot map must name live masters.
                if self._slots_on_live_masters(client, live) != 16_384:
                    return False
                replication = client.info("replication")
                if replication.get("role") == "slave" and (
                    replication.get("master_link_status") != "up"
                ):
                    return False
                if replication.get("role") == "master":
                    covered += sum(
                        end - start + 1 for start, end in self._own_slots(client)
                    )
            finally:
                client.close()
        return covered == 16_384

    @staticmethod
    def _slots_on_live_masters(client: redis.Redis, live: Sequence[int]) -> int:
        """How many slots this node's ``CLUSTER SLOTS`` gives to a live node."""
        ranges = client.execute_command("CLUSTER", "SLOTS")
        return sum(
            int(entry[1]) - int(entry[0]) + 1
            for entry in ranges
            if int(entry[2][1]) in live
        )

    @staticmethod
    def _own_slots(client: redis.Redis) -> list[tuple[int, int]]:
        line = _text(client.execute_command("CLUSTER", "NODES"))
        for entry in line.splitlines():
            fields = entry.split()
            if "myself" in fields[2]:
                ranges = []
                for part in fields[8:]:
                    if part.startswith("["):
                        continue  # a slot being migrated
                    start, _, end = part.partition("-")
                    ranges.append((int(start), int(end or start)))
                return ranges
        return []

    def live_ports(self) -> list[int]:
        """Ports of the nodes this object has not killed."""
        return [s.port for s in self.servers if s.running and s.port is not None]

    def master_ports(self) -> list[int]:
        """Ports of the live nodes that are masters now (failovers change them)."""
        masters = []
        for port in self.live_ports():
            client = self._client(port)
            try:
                if client.info("replication").get("role") == "master":
                    masters.append(port)
            finally:
                client.close()
        return masters

    def replicas_of(self, master_port: int) -> list[int]:
        """Ports of the live replicas whose master listens on ``master_port``."""
        replicas = []
        for port in self.live_ports():
            client = self._client(port)
            try:
                info = client.info("replication")
            finally:
                client.close()
            if info.get("role") == "slave" and int(info["master_port"]) == master_port:
                replicas.append(port)
        return replicas

    def _server(self, port: int) -> PrivateRedisServer:
        for server in self.servers:
            if server.port == port:
                return server
        raise ClusterStartFailed(f"no node of this cluster listens on {port}.")

    def kill(self, port: int) -> None:
        """SIGKILL the node on ``port``: no shutdown, its data gone."""
        self._server(port).kill()

    def pause(self, port: int) -> None:
        """Freeze the node on ``port`` (SIGSTOP) until :meth:`resume`."""
        self._server(port).pause()

    def resume(self, port: int) -> None:
        """Let a paused node run again."""
        self._server(port).resume()

    def wait_failover(self, timeout_s: float = 30.0) -> float:
        """After a master's death, wait until its replica serves its slots;
        returns the seconds waited."""
        start = time.monotonic()
        self.wait_ready(timeout_s)
        return time.monotonic() - start

    def describe_nodes(self) -> str:
        """``CLUSTER NODES`` as one live node sees it (for error messages)."""
        for port in self.live_ports():
            client = self._client(port)
            try:
                return _text(client.execute_command("CLUSTER", "NODES"))
            except redis.RedisError:
                continue
            finally:
                client.close()
        return "(no node answers)"

    def stop(self) -> None:
        """Stop every node (idempotent) and delete their folders."""
        for server in self.servers:
            server.stop()
        self.servers = []
        atexit.unregister(self.stop)

    def _logs(self) -> str:
        texts = []
        for server in self.servers:
            folder = server.workdir
            if folder is not None and (folder / "redis.log").exists():
                text = (folder / "redis.log").read_text(errors="replace")
                texts.append(f"--- node {server.port}\n{text[-2000:]}")
        return "\n".join(texts)

    @staticmethod
    def _client(port: int) -> redis.Redis:
        return redis.Redis(
            host=LOOPBACK,
            port=port,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )

    def __enter__(self) -> PrivateRedisCluster:
        return self.start() if not self.servers else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _slot_ranges(masters: int) -> list[tuple[int, int]]:
    """The 16384 slots in ``masters`` contiguous ranges, split as ``redis-cli``
    splits them (three masters: 0-5460, 5461-10922, 10923-16383)."""
    per_master = NUM_SLOTS / masters
    ranges, first = [], 0
    for number in range(masters):
        last = round(per_master * (number + 1) - 1)
        last = NUM_SLOTS - 1 if number == masters - 1 else min(last, NUM_SLOTS - 1)
        ranges.append((first, last))
        first = last + 1
    return ranges


def _server_binary() -> str:
    found = real_server_binary()
    if found is None:
        raise ClusterStartFailed(
            f"no cluster can start here: {cluster_binaries_missing()}."
        )
    return found


def cluster_binaries_missing() -> str | None:
    """Why no private cluster can start here, or None when it can: a server
    (``redis-server`` or the embedded ``valkey-server``) is all it needs."""
    if shutil.which("redis-server") is not None:
        return None
    embedded, why_not = embedded_server_binary()
    if embedded is not None:
        return None
    return (
        f"no redis-server on PATH and {why_not} (install redis-server, or name a "
        f"running cluster with {CLUSTER_URL_VARIABLE})"
    )


def seeds_from_urls(urls: Sequence[str]) -> list[tuple[str, int]]:
    """``redis://host:port`` URLs as (host, port) pairs."""
    seeds = []
    for url in urls:
        parsed = redis.connection.parse_url(url)
        seeds.append((str(parsed.get("host", LOOPBACK)), int(parsed.get("port", 6379))))
    return seeds


def main(argv: Sequence[str] | None = None) -> int:
    """Start a private cluster, publish its URL, and hold it until stopped."""
    parser = argparse.ArgumentParser(
        prog="python -m mlsd_lib.redis_cluster",
        description="A loopback Redis Cluster (3 masters + 3 replicas) for other "
        "processes; stops with this command.",
    )
    parser.add_argument(
        "--url-file", type=Path, required=True, help="where to write the seed URL"
    )
    args = parser.parse_args(argv)
    stopped = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopped.set())
    with PrivateRedisCluster() as cluster:
        temporary = args.url_file.with_suffix(".tmp")
        temporary.write_text(cluster.url + "\n")
        temporary.replace(args.url_file)  # readers never see half a URL
        print(f"REDIS_CLUSTER_URL={cluster.url}", flush=True)
        stopped.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
