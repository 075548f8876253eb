"""A small, complete deployment for the gateway to serve: the ads world's views in
Redis and three tiny seeded click models on the model server.

Introduced in ``notebooks/model_serving.ipynb`` and used by ``python -m
mlsd_lib.serving.gateway --demo``. The models are untrained (seeded random MLPs
over :data:`~mlsd_lib.features.examples.CANDIDATE_REFS`): the demo shows the
serving path, and the notebook trains a real one. Production ``ctr-v1`` also
runs on an in-process server as the fallback ``ctr-v1-inprocess``, so the
fallback gives the same scores as production, which is what a fallback should do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from mlsd_lib.features.examples import CANDIDATE_REFS, make_ads_example
from mlsd_lib.features.online import OnlineStore
from mlsd_lib.features.views import TIMESTAMP_COLUMN
from mlsd_lib.redis_backend import RedisBackend, get_redis
from mlsd_lib.serving.gateway.config import Deployment, Deployments
from mlsd_lib.serving.inprocess import InProcessModelServer
from mlsd_lib.serving.model_server import ModelServer, start_model_server
from mlsd_lib.serving.tensors import BatchedInferFn, TensorSpec
from mlsd_lib.serving.triton_server import TritonServer


def tiny_ctr_model(num_features: int, seed: int) -> BatchedInferFn:
    """A seeded 2-layer MLP: ``features [n, num_features]`` -> ``score [n, 1]``.

    Counts span 0 to thousands, so inputs go through ``log1p`` first; the output
    is a probability (sigmoid), like a click model's.
    """
    generator = torch.Generator().manual_seed(seed)
    hidden = 16
    w1 = torch.randn(num_features, hidden, generator=generator) / num_features**0.5
    w2 = torch.randn(hidden, 1, generator=generator) / hidden**0.5

    def infer(features: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            x = torch.log1p(torch.from_numpy(features).clamp(min=0))
            score = torch.sigmoid(torch.relu(x @ w1) @ w2)
        return {"score": score.numpy().astype(np.float32)}

    return infer


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
    _closed: bool = field(default=False, repr=False)

    def describe(self) -> str:
        return f"{self.redis.describe()}\n{self.model_server.describe()}"

    def close(self) -> None:
        """Stop the model servers. The shared Redis stays (it is process-wide)."""
        if not self._closed:
            self._closed = True
            self.model_server.stop()
            self.fallback_server.stop()


def build_demo(
    *,
    num_users: int = 1_000,
    num_ads: int = 100,
    canary_fraction: float = 0.1,
    seed: int = 0,
    max_queue_delay_us: int = 0,
    shadow: bool = True,
) -> DemoSystem:
    """Materialize the ads example into the shared Redis and bind three models.

    Production ``ctr-v1``, canary ``ctr-v2`` (``canary_fraction`` of users) and
    shadow ``ctr-v3-shadow``, all on :func:`start_model_server` (Triton where it
    runs); ``ctr-v1-inprocess`` is the fallback. ``max_queue_delay_us`` is how
    long Triton's dynamic batcher may hold a request for others to join it;
    ``shadow=False`` leaves the shadow deployment out (to measure what it costs).
    """
    example = make_ads_example(num_users=num_users, num_ads=num_ads, seed=seed)
    backend = get_redis(announce=False)
    store = OnlineStore(backend.client, example.registry)
    now = pd.Timestamp.now(tz="UTC")
    for name, table in replay_to_now(example.tables, example.end, now).items():
        store.materialize(name, table)

    refs = tuple(CANDIDATE_REFS)
    spec_in = (TensorSpec("features", np.float32, (len(refs),)),)
    spec_out = (TensorSpec("score", np.float32, (1,)),)
    server = start_model_server(announce=False)
    fallback_server = InProcessModelServer("the gateway's fallback")
    try:
        models = {"ctr-v1": seed, "ctr-v2": seed + 1, "ctr-v3-shadow": seed + 2}
        batching = (
            {"max_queue_delay_us": max_queue_delay_us}
            if isinstance(server, TritonServer)
            else {}
        )
        for version, model_seed in models.items():
            server.bind(
                version,
                tiny_ctr_model(len(refs), model_seed),
                spec_in,
                spec_out,
                512,
                **batching,
            )
        fallback_server.bind(
            "ctr-v1", tiny_ctr_model(len(refs), seed), spec_in, spec_out, 512
        )
    except BaseException:
        server.stop()
        raise
    deployments = Deployments(
        production=Deployment("ctr-v1", server, "ctr-v1", refs),
        canary=Deployment("ctr-v2", server, "ctr-v2", refs),
        canary_fraction=canary_fraction,
        shadow=(
            Deployment("ctr-v3-shadow", server, "ctr-v3-shadow", refs)
            if shadow
            else None
        ),
        fallback=Deployment("ctr-v1-inprocess", fallback_server, "ctr-v1", refs),
    )
    return DemoSystem(
        store, deployments, backend, server, fallback_server, num_users, num_ads
    )
