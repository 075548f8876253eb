"""A route family's service on the gateway: a pipeline and the release it serves.

Introduced in ``casestudies/recommender/06_serving.ipynb`` (the feed on the
generic gateway); visual search's route is built the same way. A route of
several stages keeps its dependency thread pools in a pipeline and the models
it serves in one reference: :class:`PipelineService` starts and stops the
pools with the app, and :meth:`PipelineService.swap` replaces the release in
one assignment, so a request that read it once (its snapshot) never mixes two.
:func:`add_service` includes the route family's router in an app made by
:func:`~mlsd_lib.serving.gateway.app.create_app`: the service at
``app.state.<name>``, its readiness check on ``/readyz``, its pools started
and stopped by the app's lifespan.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI

from mlsd_lib.serving.gateway.state import GatewayState
from mlsd_lib.serving.gateway.throttled_log import ThrottledLog

__all__ = ["PipelineService", "Service", "add_service"]


class Service(Protocol):
    """What :func:`add_service` needs of a service."""

    def start(self) -> None: ...

    def close(self) -> None: ...

    async def ready(self, timeout_s: float) -> None: ...


class PipelineService:
    """A pipeline (anything with dependency ``pools``) and the ``models`` it
    serves; unexpected failures go to ``logger``, at most once a second
    each (``failures``).

    A subclass annotates ``pipeline`` and ``models`` with its own types and
    may refuse models in :meth:`check_models`.
    """

    def __init__(self, pipeline: Any, models: Any, logger: logging.Logger) -> None:
        self.pipeline = pipeline
        #: What new requests are served by; :meth:`swap` replaces it.
        self.models = models
        #: Unexpected failures, logged at most once a second each.
        self.failures = ThrottledLog(logger)

    def start(self) -> None:
        self.pipeline.pools.start()

    def close(self) -> None:
        self.pipeline.pools.close()

    def check_models(self, models: Any) -> None:
        """Raise if ``models`` cannot be swapped in (default: anything can)."""

    def swap(self, models: Any) -> Any:
        """Serve ``models`` from the next request on; returns the old ones."""
        self.check_models(models)
        old, self.models = self.models, models
        return old

    async def ready(self, timeout_s: float) -> None:
        """Raise unless every dependency answers within ``timeout_s``."""
        raise NotImplementedError


def add_service(
    app: FastAPI, name: str, service: Service, router: APIRouter
) -> FastAPI:
    """Include ``router`` in a gateway made by ``create_app``, with ``service``
    at ``app.state.<name>``, its readiness check named ``name`` on ``/readyz``,
    and its ``start``/``close`` run by the app's lifespan (around the
    gateway's own)."""
    state: GatewayState = app.state.gateway
    setattr(app.state, name, service)
    state.readiness_checks[name] = service.ready
    app.include_router(router)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        service.start()
        try:
            async with inner(app) as value:
                yield value
        finally:
            service.close()

    app.router.lifespan_context = lifespan
    return app
