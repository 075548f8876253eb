"""The scoring path: one request routed, featurized, scored, answered and logged.

Introduced in ``notebooks/model_serving.ipynb``. :func:`score_with` is what
``/score`` and every route built on the gateway run (through
:meth:`~mlsd_lib.serving.gateway.state.GatewayState.answer`), in one place:

1. **route**: production or canary, by a stable hash of the user id;
2. **features**: one feature-store read in the routed model's column order,
   within ``feature_timeout_s``; Redis down or slow means defaults and
   ``"degraded": true``;
3. **model**: one call within ``model_timeout_s``; a failure means the fallback
   deployment, or 503 with ``Retry-After`` when there is none;
4. **response** with the version that produced the scores and per-stage
   timings; then, off the request path, the impression log line and the shadow
   job.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, status

from mlsd_lib.serving.gateway.config import Deployment, Deployments
from mlsd_lib.serving.gateway.routing import route
from mlsd_lib.serving.gateway.schemas import ScoreRequest
from mlsd_lib.serving.gateway.scoring import (
    FeatureMatrix,
    MissingContext,
    ModelFailed,
    elapsed_ms,
)
from mlsd_lib.serving.gateway.shadow import ShadowJob

if TYPE_CHECKING:  # state.py imports this module
    from mlsd_lib.serving.gateway.state import GatewayState

#: Feature matrices already read for this request, by the deployment's input refs.
FeatureCache = dict[tuple[str, ...], FeatureMatrix]


async def score_with(
    state: GatewayState, deployments: Deployments, body: ScoreRequest
) -> dict[str, Any]:
    """Score ``body`` with the snapshot ``deployments``; the JSON body to answer."""
    start = time.perf_counter()
    request_id = uuid.uuid4().hex
    state.counters["requests"] += 1
    arm, deployment = route(deployments, body.user_id, state.config.canary_salt)
    cache: FeatureCache = {}

    features = await _features_for(state, deployment, body, cache)
    features_ms = elapsed_ms(start)
    model_start = time.perf_counter()
    fallback_fetch_ms = 0.0
    used_fallback = False
    try:
        inputs = state.scorer.model_input(deployment, features.values, body.context)
    except MissingContext as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)
        ) from error
    try:
        scores = await state.scorer.score(deployment, inputs)
    except ModelFailed as error:
        fallback = deployments.fallback
        state.failures.warning(deployment.version, str(error))
        if fallback is None:
            reason = f"no model could score this request ({error})"
            raise _unavailable(state, reason) from error
        fetch_start = time.perf_counter()
        features = await _features_for(state, fallback, body, cache)
        fallback_fetch_ms = elapsed_ms(fetch_start)
        try:
            scores = await state.scorer.score(
                fallback,
                state.scorer.model_input(fallback, features.values, body.context),
            )
        except (ModelFailed, MissingContext) as second:
            reason = f"the model and its fallback both failed ({error}; {second})"
            raise _unavailable(state, reason) from second
        deployment, used_fallback = fallback, True
        state.counters["fallback"] += 1
    if features.degraded:
        state.counters["degraded"] += 1
    score_list = scores.tolist()
    # Returned as bytes by /score (the fields are ours, of the documented
    # types), so FastAPI does not validate and re-serialize 100 floats through
    # pydantic; ScoreResponse stays the documented response_model.
    response = {
        "request_id": request_id,
        "model_version": deployment.version,
        "route": arm,
        "scores": score_list,
        "degraded": features.degraded,
        "fallback": used_fallback,
        "timings": {
            "features_ms": round(features_ms + fallback_fetch_ms, 3),
            "model_ms": round(elapsed_ms(model_start) - fallback_fetch_ms, 3),
            "total_ms": elapsed_ms(start),
        },
    }
    state.log.append(
        {
            "kind": "served",
            "request_id": request_id,
            "time": time.time(),
            "user_id": body.user_id,
            "candidate_ids": body.candidate_ids,
            "scores": score_list,
            "model_version": deployment.version,
            "route": arm,
            "degraded": features.degraded,
            "fallback": used_fallback,
        }
    )
    if deployments.shadow is not None:
        state.shadow.submit(
            ShadowJob(
                deployments.shadow,
                request_id,
                body.user_id,
                body.candidate_ids,
                deployment.input_refs,
                features,
                body.context,
            )
        )
    return response


async def _features_for(
    state: GatewayState,
    deployment: Deployment,
    body: ScoreRequest,
    cache: FeatureCache,
) -> FeatureMatrix:
    """``deployment``'s features for ``body``, read once per set of input refs."""
    refs = deployment.input_refs
    if refs not in cache:
        cache[refs] = await state.scorer.features(
            refs, body.user_id, body.candidate_ids
        )
    return cache[refs]


def _unavailable(state: GatewayState, reason: str) -> HTTPException:
    """503 with ``Retry-After``: no model could answer (counted as unavailable)."""
    state.counters["unavailable"] += 1
    retry_after_s = state.config.retry_after_s
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"{reason}; retry after {retry_after_s} s.",
        headers={"Retry-After": str(retry_after_s)},
    )
