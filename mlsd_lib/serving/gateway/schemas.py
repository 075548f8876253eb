"""The gateway's request and response bodies, validated by pydantic.

Introduced in ``notebooks/model_serving.ipynb``. Ids are *strict* integers: a
string ``"17"`` is rejected rather than coerced, because a client that sends
strings has a bug the gateway should report, not hide. The candidate limit comes
from the gateway's configuration, so the request model is built per gateway
(:func:`score_request_model`) and the OpenAPI schema shows the real limit.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import numpy as np
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, create_model

try:  # orjson encodes a response of 100 floats several times faster
    import orjson
except ImportError:  # pragma: no cover - it is a pinned dependency
    orjson = None  # type: ignore[assignment]


#: Ids are stored as int64 (Redis keys, parquet columns, the impression log):
#: a larger integer is a malformed request, refused with 422 like a negative one.
MAX_ENTITY_ID = 2**63 - 1

#: A user, ad or item id as the gateways accept it.
EntityId = Annotated[StrictInt, Field(ge=0, le=MAX_ENTITY_ID)]


class ScoreRequest(BaseModel):
    """One user and the candidates to score for them."""

    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[EntityId, Field(description="The user to score for.")]
    candidate_ids: list[EntityId] = Field(
        min_length=1, description="Candidates to score, one score each, in order."
    )
    context: dict[str, float] = Field(
        default_factory=dict,
        max_length=32,
        description="Request-time features by name (hour, device, ...): the "
        "routed model's deployment lists the ones it needs.",
    )


def score_request_model(max_candidates: int) -> type[ScoreRequest]:
    """:class:`ScoreRequest` with ``candidate_ids`` capped at ``max_candidates``."""
    return create_model(
        "ScoreRequest",
        __base__=ScoreRequest,
        candidate_ids=(
            list[EntityId],
            Field(
                min_length=1,
                max_length=max_candidates,
                description=(
                    f"Candidates to score (1 to {max_candidates}), one score each, "
                    "in order."
                ),
            ),
        ),
    )


class Timings(BaseModel):
    """Where the time went, in milliseconds, measured inside the gateway."""

    features_ms: float
    model_ms: float
    total_ms: float


class ScoreResponse(BaseModel):
    """One score per candidate, in the request's order, and how they were made."""

    request_id: str
    model_version: str = Field(description="The version that produced `scores`.")
    route: Literal["production", "canary"]
    scores: list[float]
    degraded: bool = Field(
        description="True when the feature store was unavailable and the scores "
        "were computed from default features."
    )
    fallback: bool = Field(
        description="True when the routed model failed and the fallback answered."
    )
    timings: Timings


class ErrorResponse(BaseModel):
    """Every error the gateway itself raises: what went wrong, in a sentence."""

    detail: str


def floats_or_none(values: np.ndarray) -> list[float | None]:
    """``values`` as JSON numbers, NaN (no score) as null."""
    return [None if np.isnan(v) else float(v) for v in values.tolist()]


def json_response(content: dict[str, Any], status_code: int = 200) -> Response:
    """``content`` as a JSON response, encoded once (orjson when installed).

    For bodies the gateway builds itself from values of the documented types:
    returning a :class:`fastapi.Response` skips FastAPI's validation and
    re-encoding against the ``response_model``, which otherwise costs more than
    the encoding.
    Floats are written in their shortest round-trip form either way.
    """
    if orjson is not None:
        body = orjson.dumps(content)
    else:
        body = json.dumps(content, separators=(",", ":"), allow_nan=False).encode()
    return Response(body, status_code=status_code, media_type="application/json")
