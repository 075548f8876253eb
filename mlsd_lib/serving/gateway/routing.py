"""Which deployment serves a user: a stable hash of the user id.

Introduced in ``notebooks/model_serving.ipynb``. A canary must split *users*, not
requests: if one user's requests alternated between two models, their
experience would mix both and no metric could be attributed to either. So the
bucket is a pure function of the user id:

    bucket(user) = first 8 bytes of sha256(f"{salt}:{user_id}") / 2**64   (in [0, 1))

and a user is in the canary when ``bucket < canary_fraction``. Growing the
fraction from 1 % to 5 % keeps the first 1 % in the canary (the condition only
widens). Changing ``salt`` reshuffles everyone, which is what a new, independent
experiment wants. sha256 rather than Python's ``hash``: the latter is salted per
process, so two gateway replicas would disagree.
"""

from __future__ import annotations

import hashlib
from typing import Literal

from mlsd_lib.serving.gateway.config import Deployment, Deployments

Route = Literal["production", "canary"]


def user_bucket(user_id: int, salt: str = "canary") -> float:
    """The user's position in ``[0, 1)``, the same in every process and replica."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def route(
    deployments: Deployments, user_id: int, salt: str = "canary"
) -> tuple[Route, Deployment]:
    """The deployment that serves ``user_id``, and which arm it is."""
    if deployments.canary is not None and (
        user_bucket(user_id, salt) < deployments.canary_fraction
    ):
        return "canary", deployments.canary
    return "production", deployments.production
