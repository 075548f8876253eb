"""``POST /admin/reload``: hot-swap the models a running gateway serves.

Introduced in ``notebooks/model_serving.ipynb``. The gateway's ``reload`` source
(for example
:meth:`~mlsd_lib.serving.gateway.deploy.RegistryDeployer.deployments`, which
reads the registry's stages) says what to serve next; the swap itself is
:mod:`~mlsd_lib.serving.gateway.hotswap`'s. Requests never fail during it; a
swap that cannot happen (a new model fails its warm-up, the source cannot be
read) answers 409 and the old models keep serving.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, status

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.gateway.hotswap import versions_by_arm
from mlsd_lib.serving.gateway.schemas import ErrorResponse
from mlsd_lib.serving.gateway.score_route import UNAUTHORIZED
from mlsd_lib.serving.gateway.state import GatewayDep


def admin_router(require_key: Callable[[str | None], Awaitable[None]]) -> APIRouter:
    """``POST /admin/reload`` behind ``require_key``."""
    router = APIRouter()

    @router.post(
        "/admin/reload",
        responses={
            401: UNAUTHORIZED,
            404: {"model": ErrorResponse, "description": "no deployment source"},
            409: {"model": ErrorResponse, "description": "swap refused; old serves"},
        },
        dependencies=[Depends(require_key)],
    )
    async def admin_reload(state: GatewayDep) -> dict[str, Any]:
        """Hot-swap to the deployments the reload source names now (e.g. the
        registry's stages): warm up, switch, drain. Requests never fail during it;
        if the new models fail their warm-up, or the registry, a model file or the
        model server refuses them, the old ones keep serving (409)."""
        if state.reload is None:
            raise HTTPException(
                status.HTTP_404_NOT_FOUND,
                "this gateway was started without a reload source; pass "
                "create_app(..., reload=RegistryDeployer(...).deployments).",
            )
        try:
            new = await asyncio.to_thread(state.reload)
            return await state.swap(new)
        except MlsdError as error:  # any error of ours: a refused swap, not a bug
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"hot swap refused, still serving {versions_by_arm(state.deployments)}"
                f": {type(error).__name__}: {error}",
            ) from error

    return router
