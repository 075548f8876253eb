"""The gateway's request and response bodies, validated by pydantic.

Introduced in ``notebooks/model_serving.ipynb``. Ids are *strict* integers: a
string ``"17"`` is rejected rather than coerced, because a client that sends
strings has a bug the gateway should report, not hide. The candidate limit comes
from the gateway's configuration, so the request model is built per gateway
(:func:`score_request_model`) and the OpenAPI schema shows the real limit.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, create_model


class ScoreRequest(BaseModel):
    """One user and the candidates to score for them."""

    model_config = ConfigDict(extra="forbid")

    user_id: Annotated[StrictInt, Field(ge=0, description="The user to score for.")]
    candidate_ids: list[Annotated[StrictInt, Field(ge=0)]] = Field(
        min_length=1, description="Candidates to score, one score each, in order."
    )


def score_request_model(max_candidates: int) -> type[ScoreRequest]:
    """:class:`ScoreRequest` with ``candidate_ids`` capped at ``max_candidates``."""
    return create_model(
        "ScoreRequest",
        __base__=ScoreRequest,
        candidate_ids=(
            list[Annotated[StrictInt, Field(ge=0)]],
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
