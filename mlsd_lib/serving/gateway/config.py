"""What a gateway serves and under which limits: plain data, checked once.

Introduced in ``notebooks/model_serving.ipynb``. A :class:`Deployment` names one
model version on one model server together with the feature references it reads,
in the order of its input tensor's columns; :class:`Deployments` groups the
production model with an optional canary, shadow and in-process fallback. The
gateway code only ever reads these objects, so a notebook can show the whole
configuration of a running system in one cell.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mlsd_lib.errors import MlsdError
from mlsd_lib.features.views import FeatureRef, FeatureRegistry, FeatureStoreError
from mlsd_lib.serving.model_server import ModelServer


class GatewayConfigError(MlsdError, ValueError):
    """A gateway configuration that cannot work; the message says how to fix it."""


@dataclass(frozen=True)
class Deployment:
    """One model version as the gateway calls it.

    ``input_refs`` are ``"view:feature"`` references in the order of the columns
    of the model's ``input_name`` tensor (float32, ``[candidates, len(refs)]``);
    the gateway reads exactly these from the feature store, so the model's
    schema, not the gateway, decides what is fetched. ``output_name`` is the
    tensor holding one score per row.

    ``context`` names request-time features (hour, device, ...) that the
    request's ``context`` supplies and the store cannot: they become the last
    columns of the input, after the store's, the same value for every
    candidate.

    ``unload_when_retired`` says the model was loaded onto its server for this
    deployment (by :class:`~mlsd_lib.serving.gateway.deploy.RegistryDeployer`):
    once a hot swap has drained the requests that used it and no deployment
    still serves it, the swap unloads it, so old versions do not pile up on the
    model server.
    """

    version: str
    server: ModelServer
    model_name: str
    input_refs: tuple[str, ...]
    input_name: str = "features"
    output_name: str = "score"
    context: tuple[str, ...] = ()
    unload_when_retired: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_refs", tuple(self.input_refs))
        object.__setattr__(self, "context", tuple(self.context))
        if not self.version:
            raise GatewayConfigError("a deployment needs a non-empty version.")
        if not self.input_refs:
            raise GatewayConfigError(
                f"deployment {self.version!r} lists no input_refs; give the "
                "'view:feature' references of its input columns, in order."
            )


@dataclass(frozen=True)
class Deployments:
    """Production plus the optional canary, shadow and fallback around it.

    - ``canary`` serves a ``canary_fraction`` of *users* (not requests): a user's
      bucket is a stable hash of the user id, so one user always sees one model
      (see :mod:`mlsd_lib.serving.gateway.routing`).
    - ``shadow`` scores every request off the request path; its scores go to the
      impression log only, never to the caller.
    - ``fallback`` (usually the production model on an in-process server) answers
      when the routed model's server fails or times out; without one the gateway
      answers 503 with ``Retry-After``.
    """

    production: Deployment
    canary: Deployment | None = None
    canary_fraction: float = 0.0
    shadow: Deployment | None = None
    fallback: Deployment | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.canary_fraction <= 1.0:
            raise GatewayConfigError(
                f"canary_fraction must be in [0, 1], got {self.canary_fraction}."
            )
        if self.canary_fraction > 0 and self.canary is None:
            raise GatewayConfigError(
                f"canary_fraction is {self.canary_fraction} but there is no canary "
                "deployment; add one or set the fraction to 0."
            )
        versions = [d.version for d in self.all() if d is not None]
        repeated = sorted({v for v in versions if versions.count(v) > 1})
        if repeated:
            raise GatewayConfigError(
                f"versions {repeated} are used by more than one deployment; every "
                "response names the version that served it, so they must differ."
            )

    def all(self) -> list[Deployment]:
        """Every configured deployment, production first."""
        return [
            d
            for d in (self.production, self.canary, self.shadow, self.fallback)
            if d is not None
        ]

    def check_refs(self, registry: FeatureRegistry) -> None:
        """Fail at start-up, not on the first request, when a ref does not resolve."""
        for deployment in self.all():
            try:
                registry.resolve([FeatureRef.parse(r) for r in deployment.input_refs])
            except FeatureStoreError as error:
                raise GatewayConfigError(
                    f"deployment {deployment.version!r}: {error}"
                ) from error


@dataclass(frozen=True)
class EntityMapping:
    """How a request's ids become the feature views' entity columns.

    A scoring request is one user and N candidates; row ``i`` of the feature
    matrix is ``{user_column: user_id, candidate_column: candidate_ids[i]}``.
    """

    user_column: str = "user_id"
    candidate_column: str = "ad_id"


@dataclass(frozen=True)
class GatewayConfig:
    """Limits, budgets and paths of one gateway.

    ``api_key`` is compared in constant time with the ``X-API-Key`` header. A
    gateway without a key refuses to start unless ``auth_disabled=True`` says so
    explicitly (a notebook on loopback may want that; a deployment never does).
    ``body_limit_advice`` ends the 413 that a body over ``max_body_bytes``
    gets: what to send instead. Timeouts bound each dependency call; a request
    never waits longer than ``feature_timeout_s + 2 * model_timeout_s`` (the
    second model budget only when it falls back) plus the gateway's own work.
    """

    impression_log_path: str
    api_key: str | None = None
    auth_disabled: bool = False
    entities: EntityMapping = field(default_factory=EntityMapping)
    max_candidates: int = 500
    max_body_bytes: int = 64 * 1024
    body_limit_advice: str = "Send fewer candidates per request."
    feature_timeout_s: float = 0.05
    model_timeout_s: float = 0.2
    readiness_timeout_s: float = 1.0
    warmup_timeout_s: float = 10.0
    drain_timeout_s: float = 10.0
    retry_after_s: int = 1
    canary_salt: str = "canary"
    shadow_queue_size: int = 256
    impression_queue_size: int = 10_000
    worker_threads: int = 16

    def __post_init__(self) -> None:
        if self.api_key is None and not self.auth_disabled:
            raise GatewayConfigError(
                "no api_key: set GatewayConfig(api_key=...) or, for a private "
                "loopback demo only, auth_disabled=True."
            )
        if self.api_key is not None and not self.api_key:
            raise GatewayConfigError("api_key must not be empty.")
        positive = {
            "max_candidates": self.max_candidates,
            "max_body_bytes": self.max_body_bytes,
            "feature_timeout_s": self.feature_timeout_s,
            "model_timeout_s": self.model_timeout_s,
            "readiness_timeout_s": self.readiness_timeout_s,
            "warmup_timeout_s": self.warmup_timeout_s,
            "drain_timeout_s": self.drain_timeout_s,
            "shadow_queue_size": self.shadow_queue_size,
            "impression_queue_size": self.impression_queue_size,
            "worker_threads": self.worker_threads,
        }
        bad = {name: value for name, value in positive.items() if value <= 0}
        if bad:
            raise GatewayConfigError(f"these settings must be positive: {bad}.")
