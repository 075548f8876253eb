"""``POST /score``: the gateway's generic scoring endpoint.

Introduced in ``notebooks/model_serving.ipynb``. Guards run first: body size
(413, in the app's middleware), API key (401), pydantic validation (422, with
the candidate limit from the gateway's configuration); then the handler runs
the scoring path (:mod:`~mlsd_lib.serving.gateway.score_path`) and returns its
answer. A case study's endpoint (for example ``POST /v1/ads/score``) is a router
of the same shape that translates its own request into a
:class:`~mlsd_lib.serving.gateway.schemas.ScoreRequest` and calls
:meth:`~mlsd_lib.serving.gateway.state.GatewayState.answer`.
"""

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from mlsd_lib.serving.gateway.schemas import (
    ErrorResponse,
    ScoreResponse,
    json_response,
    score_request_model,
)
from mlsd_lib.serving.gateway.state import GatewayDep

#: OpenAPI ``responses`` entries for the errors of every route on the scoring
#: path (``/score`` and a case study's endpoints): 401 and 503.
UNAUTHORIZED = {"model": ErrorResponse, "description": "missing or wrong API key"}
UNAVAILABLE = {"model": ErrorResponse, "description": "no model could answer"}


def scoring_router(
    max_candidates: int, require_key: Callable[[str | None], Awaitable[None]]
) -> APIRouter:
    """``POST /score`` taking at most ``max_candidates``, behind ``require_key``."""
    router = APIRouter()
    # No ``from __future__ import annotations`` in this module: FastAPI reads
    # the handler's annotations, and ``request_model`` is a local name.
    request_model = score_request_model(max_candidates)

    @router.post(
        "/score",
        response_model=ScoreResponse,
        responses={
            401: UNAUTHORIZED,
            413: {"model": ErrorResponse, "description": "body over the size limit"},
            503: UNAVAILABLE,
        },
        dependencies=[Depends(require_key)],
    )
    async def score(
        body: request_model,  # type: ignore[valid-type]
        state: GatewayDep,
    ) -> Response:
        """Score every candidate for the user; one score per candidate, in order."""
        return json_response(await state.answer(body))

    return router
