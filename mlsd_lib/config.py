"""Where the real components are, read once from environment variables.

Introduced in ``notebooks/00_environment.ipynb``. Every module that needs Redis,
Triton, a seed or a data folder asks :func:`load_settings` instead of reading
``os.environ`` itself, so the rules for choosing a backend live in one place.

Variables
---------
``REDIS_URL``
    Use this Redis (e.g. ``redis://127.0.0.1:6379/0``). When unset, a private
    ``redis-server`` is started if one is on ``PATH``, else fakeredis is used.
``REDIS_CLUSTER_URL``
    A Redis Cluster for the scale-out store (any one node,
    ``redis://127.0.0.1:7000``); a variable of its own because a cluster takes a
    different client and no database number. When unset, tests and benchmarks
    start a private loopback cluster (:mod:`mlsd_lib.redis_cluster`).
``DASK_SCHEDULER_ADDRESS``
    A Dask scheduler for the batch jobs (``tcp://host:8786``); the name is
    Dask's own (``Client()`` reads it too), so one variable points both at the
    cluster. When unset, :func:`mlsd_lib.batch.dask_cluster.dask_client` starts a
    private ``LocalCluster`` on loopback.
``TRITON_URL``
    Use an already running Triton (``http://host:8000`` or ``grpc://host:8001``)
    instead of starting one from nvidia-pytriton.
``MLSD_REQUIRE_REAL_BACKENDS``
    ``1`` makes falling back to fakeredis or the in-process model server an
    error. CI sets it, so a notebook that silently ran on a fallback fails.
``MLSD_SEED``
    The seed every simulator and training loop starts from (default ``0``).
``MLSD_DATA_DIR``
    Where generated data sets and model artifacts go (default ``./data``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mlsd_lib.errors import MlsdError

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"", "0", "false", "no", "off"})


class ConfigError(MlsdError, ValueError):
    """An environment variable holds a value the library cannot use."""


@dataclass(frozen=True)
class Settings:
    """The resolved configuration. Build it with :func:`load_settings`."""

    redis_url: str | None
    triton_url: str | None
    require_real_backends: bool
    seed: int
    data_dir: Path
    redis_cluster_url: str | None = None
    dask_scheduler_address: str | None = None


def _parse_flag(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise ConfigError(
        f"{name}={raw!r} is not a yes/no value: use one of "
        f"{sorted(TRUE_WORDS)} or {sorted(FALSE_WORDS - {''})}."
    )


def _parse_url(name: str, raw: str | None, schemes: tuple[str, ...]) -> str | None:
    if raw is None or not raw.strip():
        return None
    url = raw.strip()
    if not url.startswith(tuple(f"{s}://" for s in schemes)):
        examples = " or ".join(f"{s}://127.0.0.1:PORT" for s in schemes)
        raise ConfigError(
            f"{name}={raw!r} is not a URL this library reads: use {examples}."
        )
    return url


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from ``environ`` (default: the process environment).

    Raises :class:`ConfigError` naming the variable when a value is malformed, so a
    typo in ``REDIS_URL`` fails loudly instead of quietly falling back.
    """
    env = os.environ if environ is None else environ
    seed_raw = env.get("MLSD_SEED", "0")
    try:
        seed = int(seed_raw)
    except ValueError:
        raise ConfigError(f"MLSD_SEED={seed_raw!r} is not an integer.") from None
    if seed < 0:
        raise ConfigError(
            f"MLSD_SEED must be an integer >= 0 (got {seed}): numpy's generators "
            "take no negative seed."
        )
    return Settings(
        redis_url=_parse_url(
            "REDIS_URL", env.get("REDIS_URL"), ("redis", "rediss", "unix")
        ),
        triton_url=_parse_url("TRITON_URL", env.get("TRITON_URL"), ("http", "grpc")),
        require_real_backends=_parse_flag(
            "MLSD_REQUIRE_REAL_BACKENDS", env.get("MLSD_REQUIRE_REAL_BACKENDS", "")
        ),
        seed=seed,
        data_dir=Path(env.get("MLSD_DATA_DIR", "data")).expanduser(),
        redis_cluster_url=_parse_url(
            "REDIS_CLUSTER_URL", env.get("REDIS_CLUSTER_URL"), ("redis",)
        ),
        dask_scheduler_address=_parse_url(
            "DASK_SCHEDULER_ADDRESS",
            env.get("DASK_SCHEDULER_ADDRESS"),
            ("tcp", "tls"),
        ),
    )
