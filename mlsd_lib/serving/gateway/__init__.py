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
- :mod:`~mlsd_lib.serving.gateway.app`: the FastAPI app that puts them together;
- :mod:`~mlsd_lib.serving.gateway.demo` and ``python -m mlsd_lib.serving.gateway
  --demo``: a real uvicorn server on loopback with a small seeded deployment.
"""

from mlsd_lib.serving.gateway.app import GatewayState, create_app
from mlsd_lib.serving.gateway.config import (
    Deployment,
    Deployments,
    EntityMapping,
    GatewayConfig,
    GatewayConfigError,
)
from mlsd_lib.serving.gateway.impressions import ImpressionLog
from mlsd_lib.serving.gateway.routing import route, user_bucket

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
