"""The gateway's FastAPI app: one state, the guards, and the route families.

Introduced in ``notebooks/model_serving.ipynb``. :func:`create_app` builds the
shared :class:`~mlsd_lib.serving.gateway.state.GatewayState`, starts and stops
its worker threads with the app's lifespan, adds the body size limit, and
includes one router per route family:

- :mod:`~mlsd_lib.serving.gateway.score_route`: ``POST /score`` (the scoring
  path itself is :mod:`~mlsd_lib.serving.gateway.score_path`);
- :mod:`~mlsd_lib.serving.gateway.health`: ``GET /healthz`` and ``GET /readyz``;
- :mod:`~mlsd_lib.serving.gateway.admin`: ``POST /admin/reload``, the hot swap.

The first and the last only when the gateway has ``/score`` deployments.

A case study adds its endpoints the same way: ``app.include_router(...)`` with a
router whose handlers take the state (a
:data:`~mlsd_lib.serving.gateway.state.GatewayDep` parameter) and call
:meth:`~mlsd_lib.serving.gateway.state.GatewayState.answer`; see
:func:`mlsd_lib.adclick.gateway.ads_router`. OpenAPI docs are at ``/docs`` and
``/openapi.json``.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from mlsd_lib.features.online import OnlineStore
from mlsd_lib.serving.gateway.admin import admin_router
from mlsd_lib.serving.gateway.config import (
    Deployments,
    GatewayConfig,
    GatewayConfigError,
)
from mlsd_lib.serving.gateway.health import health_router
from mlsd_lib.serving.gateway.limits import BodyLimitMiddleware, api_key_checker
from mlsd_lib.serving.gateway.score_route import scoring_router
from mlsd_lib.serving.gateway.state import GatewayState


def create_app(
    config: GatewayConfig,
    store: OnlineStore,
    deployments: Deployments | None,
    *,
    reload: Callable[[], Deployments] | None = None,
) -> FastAPI:
    """A gateway serving ``deployments`` with features from ``store``.

    ``reload``, when given, builds the deployments to serve next (for example
    :meth:`~mlsd_lib.serving.gateway.deploy.RegistryDeployer.deployments`, which
    reads the registry's stages); ``POST /admin/reload`` calls it and hot-swaps.
    ``deployments=None`` makes a gateway for a case study's own routes only:
    no ``/score`` and no ``/admin/reload``, the health routes, the guards and
    the impression log still there (the recommender's feed route is one:
    :func:`mlsd_lib.recsys.gateway.add_feed_routes`).
    The app owns its worker threads (started and stopped with the app's
    lifespan), not the store's Redis client or the model servers: whoever
    created those closes them.
    """
    if deployments is None and reload is not None:
        raise GatewayConfigError(
            "reload was given without deployments: a gateway without /score "
            "deployments has nothing to hot-swap; pass both or neither."
        )
    if deployments is not None:
        deployments.check_refs(store.registry)
    app = FastAPI(
        title="mlsd gateway",
        summary="Scores candidates for a user: features from Redis, scores from "
        "a model server.",
        version="1",
        lifespan=_lifespan,
    )
    app.state.gateway = GatewayState(config, store, deployments, reload=reload)
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=config.max_body_bytes,
        advice=config.body_limit_advice,
    )
    require_key = api_key_checker(None if config.auth_disabled else config.api_key)
    if deployments is not None:
        app.include_router(scoring_router(config.max_candidates, require_key))
    app.include_router(health_router())
    if deployments is not None:
        app.include_router(admin_router(require_key))
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the state's worker threads; on shutdown, drain and stop them."""
    state: GatewayState = app.state.gateway
    state.start()
    try:
        yield
    finally:
        state.close()
