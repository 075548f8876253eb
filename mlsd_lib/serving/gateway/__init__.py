"""The API gateway: one HTTP request in, features and a model call, scores out.

Introduced in ``notebooks/model_serving.ipynb``. One concept per module:

- :mod:`~mlsd_lib.serving.gateway.config`: deployments, limits and budgets;
- :mod:`~mlsd_lib.serving.gateway.schemas`: request and response bodies;
- :mod:`~mlsd_lib.serving.gateway.limits`: body size limit and API key;
- :mod:`~mlsd_lib.serving.gateway.routing`: canary split by a stable user hash;
- :mod:`~mlsd_lib.serving.gateway.scoring`: feature fetch and model call, each
  within a time budget, with their fallbacks;
- :mod:`~mlsd_lib.serving.gateway.shadow`: shadow scoring off the request path;
- :mod:`~mlsd_lib.serving.gateway.impressions`: the append-only impression log;
  :mod:`~mlsd_lib.serving.gateway.background`: the bounded worker thread under
  it and the shadow; :mod:`~mlsd_lib.serving.gateway.throttled_log`: one
  warning a second for a failing model, with a count;
- :mod:`~mlsd_lib.serving.gateway.state`: one running gateway's parts, shared by
  every route, and :meth:`~mlsd_lib.serving.gateway.state.GatewayState.answer`,
  the entry point for routes built on the gateway;
- :mod:`~mlsd_lib.serving.gateway.score_path`: route, features, model, fallback,
  answer and log, for one request;
- :mod:`~mlsd_lib.serving.gateway.score_route`: ``POST /score``;
- for routes of several stages (the recommender's feed):
  :mod:`~mlsd_lib.serving.gateway.budgets` (each stage timed against its p99
  budget, each dependency call bounded by a timeout),
  :mod:`~mlsd_lib.serving.gateway.candidates` (candidate sources merged, each
  candidate tagged with its source) and
  :mod:`~mlsd_lib.serving.gateway.model_calls` (registered models with several
  named tensors, loaded and called);
- :mod:`~mlsd_lib.serving.gateway.health`: ``/healthz`` and ``/readyz``;
- :mod:`~mlsd_lib.serving.gateway.admin`: ``POST /admin/reload``, the hot swap
  (:mod:`~mlsd_lib.serving.gateway.hotswap`);
- :mod:`~mlsd_lib.serving.gateway.deploy`: the model registry's stages as
  deployments, loaded onto the model servers;
- :mod:`~mlsd_lib.serving.gateway.app`: the FastAPI app that puts them together;
  :mod:`~mlsd_lib.serving.gateway.server`: that app under uvicorn on a thread;
  :mod:`~mlsd_lib.serving.gateway.process`: a gateway command as a process of
  its own (what a benchmark measures);
- :mod:`~mlsd_lib.serving.gateway.traffic`: steady background load with every
  request recorded (hot swaps, fault drills);
- :mod:`~mlsd_lib.serving.gateway.service`: a route family's service (its
  pipeline's pools, the release swapped in one assignment) and
  :func:`~mlsd_lib.serving.gateway.service.add_service`;
- :mod:`~mlsd_lib.serving.gateway.service_process`: what every gateway command
  shares (loopback, API key, SIGTERM, uvicorn; bundle servers' arguments and
  start checks);
- :mod:`~mlsd_lib.serving.gateway.release_swap`: load beside, warm up, switch: a
  whole release swapped into a running service;
- :mod:`~mlsd_lib.serving.gateway.demo` and ``python -m mlsd_lib.serving.gateway
  --demo``: a real uvicorn server on loopback with a small seeded deployment.
"""

from mlsd_lib.serving.gateway.app import create_app
from mlsd_lib.serving.gateway.config import (
    Deployment,
    Deployments,
    EntityMapping,
    GatewayConfig,
    GatewayConfigError,
)
from mlsd_lib.serving.gateway.impressions import ImpressionLog
from mlsd_lib.serving.gateway.routing import route, user_bucket
from mlsd_lib.serving.gateway.state import GatewayState

__all__ = [
    "Deployment",
    "Deployments",
    "EntityMapping",
    "GatewayConfig",
    "GatewayConfigError",
    "GatewayState",
    "ImpressionLog",
    "create_app",
    "route",
    "user_bucket",
]
