"""A small, complete deployment for the gateway to serve: the ads world's views in
Redis and three tiny seeded click models, registered and served by Triton.

Introduced in ``notebooks/model_serving.ipynb`` and used by ``python -m
mlsd_lib.serving.gateway --demo``. The models are untrained (seeded
:class:`~mlsd_lib.serving.ctr_net.FeatureCTRNet` over
:data:`~mlsd_lib.features.examples.CANDIDATE_REFS`): the demo shows the serving
path, and the notebook trains a real one. They take the path every registered
model takes: exported to TorchScript, registered, promoted, and loaded by the
:class:`~mlsd_lib.serving.gateway.deploy.RegistryDeployer` into Triton's model
repository. Production ``ctr-v1`` also runs on an in-process server as the
fallback ``ctr-v1-inprocess``, so the fallback gives the same scores as
production, which is what a fallback should do.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from mlsd_lib.features import records
from mlsd_lib.features.examples import CANDIDATE_REFS, make_ads_example
from mlsd_lib.features.online import OnlineStore, delete_matching
from mlsd_lib.features.views import TIMESTAMP_COLUMN
from mlsd_lib.redis_backend import RedisBackend, get_redis
from mlsd_lib.serving.ctr_net import FeatureCTRNet
from mlsd_lib.serving.export import export_model
from mlsd_lib.serving.gateway.config import Deployments
from mlsd_lib.serving.gateway.deploy import RegistryDeployer
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.model_server import ModelServer, start_model_server
from mlsd_lib.serving.registry import ModelRegistry


def tiny_ctr_net(num_features: int, seed: int) -> FeatureCTRNet:
    """A seeded, untrained :class:`~mlsd_lib.serving.ctr_net.FeatureCTRNet`:
    ``features [n, num_features]`` (raw counters) -> ``p(click) [n]``."""
    torch.manual_seed(seed)
    return FeatureCTRNet(num_features).eval()


def register_tiny_models(
    registry: ModelRegistry, name: str, refs: tuple[str, ...], seeds: Sequence[int]
) -> list[int]:
    """Export one :func:`tiny_ctr_net` per seed (TorchScript, parity-checked) and
    register each as the next version of ``name``; returns the versions."""
    versions = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in seeds:
            exported = export_model(
                tiny_ctr_net(len(refs), seed),
                torch.rand(4, len(refs)) * 10,
                Path(scratch) / f"{name}-{seed}.pt",
            )
            record = registry.register(
                name,
                exported.path,
                input_schema=[(ref, "float32") for ref in refs],
                training_window=("2026-01-01", "2026-01-28"),
                metrics={},
                format="torchscript",
            )
            versions.append(record.version)
    return versions


def replay_to_now(
    tables: Mapping[str, pd.DataFrame], end: pd.Timestamp, now: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    """Shift every event table so the simulation ends at ``now``.

    The online store serves a value only within its view's TTL of the clock, so
    a world simulated for January would be all defaults in March.
    """
    shifted = {}
    for name, table in tables.items():
        copy = table.copy()
        copy[TIMESTAMP_COLUMN] = copy[TIMESTAMP_COLUMN] + (now - end)
        shifted[name] = copy
    return shifted


def materialize_replayed(
    store: OnlineStore,
    tables: Mapping[str, pd.DataFrame],
    end: pd.Timestamp,
    now: pd.Timestamp | None = None,
) -> None:
    """Materialize every table, replayed to end at ``now`` (default: the clock).

    What a gateway demo, drill or test needs before its first request: the
    views in Redis, fresh enough that the store serves them rather than
    defaults (see :func:`replay_to_now`).
    """
    now = pd.Timestamp.now(tz="UTC") if now is None else now
    for name, table in replay_to_now(tables, end, now).items():
        store.materialize(name, table)


@dataclass
class DemoSystem:
    """What :func:`build_demo` started; :meth:`close` stops what it owns."""

    store: OnlineStore
    deployments: Deployments
    redis: RedisBackend
    model_server: ModelServer
    fallback_server: InProcessModelServer
    num_users: int
    num_ads: int
    #: Reloads from the demo's registry (``POST /admin/reload`` after a promote).
    deployer: RegistryDeployer
    registry_folder: tempfile.TemporaryDirectory[str]
    _closed: bool = field(default=False, repr=False)

    def describe(self) -> str:
        return f"{self.redis.describe()}\n{self.model_server.describe()}"

    def close(self) -> None:
        """Stop the model servers and delete the views the demo materialized.

        The shared Redis itself stays (it is process-wide, and ``REDIS_URL`` may
        be the reader's own server): only the demo's keys go, so it is left as
        it was found."""
        if not self._closed:
            self._closed = True
            self.model_server.stop()
            self.fallback_server.stop()
            self.registry_folder.cleanup()
            for view in self.store.registry.views:
                delete_matching(self.redis.client, f"{records.view_prefix(view)}:*")


def build_demo(
    *,
    num_users: int = 1_000,
    num_ads: int = 100,
    canary_fraction: float = 0.1,
    seed: int = 0,
    max_queue_delay_us: int = 0,
    shadow: bool = True,
) -> DemoSystem:
    """Materialize the ads example into the shared Redis and deploy three models.

    Three seeded models are registered as versions 1-3 of ``ctr`` in a
    registry of the demo's own; version 1 is promoted to production, 2 to
    canary (``canary_fraction`` of users) and 3 to shadow, and a
    :class:`~mlsd_lib.serving.gateway.deploy.RegistryDeployer` loads them onto
    :func:`~mlsd_lib.serving.model_server.start_model_server` (Triton over a
    model repository where it runs), with ``ctr-v1-inprocess`` as the fallback.
    ``max_queue_delay_us`` is how long Triton's dynamic batcher may hold a
    request for others to join it; ``shadow=False`` leaves the shadow out (to
    measure what it costs).
    """
    example = make_ads_example(num_users=num_users, num_ads=num_ads, seed=seed)
    backend = get_redis(announce=False)
    store = OnlineStore(backend.client, example.registry)
    materialize_replayed(store, example.tables, example.end)

    folder = tempfile.TemporaryDirectory(prefix="mlsd-demo-registry-")
    registry = ModelRegistry(folder.name)
    v1, v2, v3 = register_tiny_models(
        registry, "ctr", tuple(CANDIDATE_REFS), (seed, seed + 1, seed + 2)
    )
    registry.promote("ctr", v1, "production")
    registry.promote("ctr", v2, "canary")
    if shadow:
        registry.promote("ctr", v3, "shadow")
    server = start_model_server(announce=False)
    fallback_server = InProcessModelServer("the gateway's fallback")
    try:
        deployer = RegistryDeployer(
            registry,
            "ctr",
            server,
            fallback_server=fallback_server,
            canary_fraction=canary_fraction,
            max_batch_size=512,
            max_queue_delay_us=max_queue_delay_us,
        )
        deployments = deployer.deployments()
    except BaseException:
        server.stop()
        folder.cleanup()
        raise
    return DemoSystem(
        store,
        deployments,
        backend,
        server,
        fallback_server,
        num_users,
        num_ads,
        deployer,
        folder,
    )
