"""Registered models with several named tensors, loaded onto a model server and
called.

Introduced in ``casestudies/recommender/index.md`` (panel B: the user tower and
the ranker on Triton). A ``/score`` deployment
(:class:`~mlsd_lib.serving.gateway.config.Deployment`) is one float matrix in,
one score per row out. A two-tower model's user tower takes three tensors (item
ids of the history, dense features, categorical ids) and returns an embedding;
a two-headed ranker returns two outputs. This module is the same idea for such
models:

* the registry records a model's input schema as ordered ``(name, dtype)``
  pairs; here a name is ``"<tensor>:<column>"`` (``"history:0"``,
  ``"dense:log_duration"``), so the schema says which columns make up each
  input tensor, in order, and :func:`schema_tensors` turns it into the
  :class:`~mlsd_lib.serving.tensors.TensorSpec` s the server is configured
  with. The caller builds its inputs from the *recorded* column names, so a
  model is never fed columns in an order it was not trained on;
* :func:`deploy_registered` loads a registered version onto a model server the
  way :class:`~mlsd_lib.serving.gateway.deploy.RegistryDeployer` does (file
  checksum verified; on a
  :class:`~mlsd_lib.serving.triton_repository_server.TritonRepositoryServer`
  it runs in Triton's own processes) and returns a :class:`ModelEndpoint`;
* :func:`call_model` makes one blocking call and checks the answer (every
  output present, one row per input row, finite), raising
  :class:`~mlsd_lib.serving.gateway.scoring.ModelFailed` otherwise, as
  ``/score`` does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.gateway.deploy import load_registered
from mlsd_lib.serving.gateway.scoring import ModelFailed
from mlsd_lib.serving.model_server import ModelServer
from mlsd_lib.serving.registry import ModelRegistry, ModelVersion
from mlsd_lib.serving.tensors import TensorSpec

__all__ = [
    "ModelEndpoint",
    "SchemaError",
    "call_model",
    "deploy_registered",
    "schema_columns",
    "schema_tensors",
]


class SchemaError(MlsdError, ValueError):
    """A recorded input schema that does not describe named tensors; says why."""


def _split(name: str) -> tuple[str, str]:
    tensor, sep, column = name.partition(":")
    if not sep or not tensor or not column:
        raise SchemaError(
            f"schema entry {name!r} is not '<tensor>:<column>' (e.g. 'dense:age'); "
            "register multi-tensor models with one entry per column, named so."
        )
    return tensor, column


def schema_tensors(schema: Sequence[tuple[str, str]]) -> tuple[TensorSpec, ...]:
    """The input tensors an ordered ``"<tensor>:<column>"`` schema describes.

    Consecutive entries of one tensor make its columns; every column of a
    tensor has one dtype, and a tensor's columns are contiguous.
    """
    specs: list[TensorSpec] = []
    seen: set[str] = set()
    current: str | None = None
    width, dtype = 0, ""
    for name, column_dtype in schema:
        tensor, _ = _split(name)
        if tensor != current:
            if current is not None:
                specs.append(TensorSpec(current, np.dtype(dtype).type, (width,)))
            if tensor in seen:
                raise SchemaError(
                    f"the columns of tensor {tensor!r} are not contiguous in the "
                    "schema; list each tensor's columns together, in order."
                )
            seen.add(tensor)
            current, width, dtype = tensor, 0, column_dtype
        elif column_dtype != dtype:
            raise SchemaError(
                f"tensor {tensor!r} mixes dtypes {dtype} and {column_dtype}; one "
                "tensor has one dtype."
            )
        width += 1
    if current is None:
        raise SchemaError("the schema is empty: a model needs at least one input.")
    specs.append(TensorSpec(current, np.dtype(dtype).type, (width,)))
    return tuple(specs)


def schema_columns(schema: Sequence[tuple[str, str]]) -> dict[str, tuple[str, ...]]:
    """Each tensor's column names, in order: ``{"dense": ("age", ...), ...}``."""
    columns: dict[str, list[str]] = {}
    for name, _ in schema:
        tensor, column = _split(name)
        columns.setdefault(tensor, []).append(column)
    return {tensor: tuple(names) for tensor, names in columns.items()}


@dataclass(frozen=True)
class ModelEndpoint:
    """One registered version as the gateway calls it.

    ``version`` is what responses and logs name (``"<name>-v<n>"``, plus a
    suffix for a second copy on another server); ``columns`` the recorded
    column names of each input tensor.
    """

    version: str
    server: ModelServer
    model_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    columns: Mapping[str, tuple[str, ...]]

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.inputs)


def deploy_registered(
    registry: ModelRegistry,
    record: ModelVersion,
    server: ModelServer,
    outputs: Sequence[TensorSpec],
    *,
    max_batch_size: int = 1024,
    max_queue_delay_us: int = 0,
    suffix: str = "",
) -> ModelEndpoint:
    """Load ``record`` onto ``server`` (unless it is there) and describe the call.

    The file is re-verified against the registry's sha256 before loading; the
    input tensors come from the recorded schema (:func:`schema_tensors`),
    ``outputs`` from the caller (the registry does not record them).
    """
    inputs = schema_tensors(record.input_schema)
    model_name = load_registered(
        registry,
        record,
        server,
        inputs,
        tuple(outputs),
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
    )
    return ModelEndpoint(
        version=model_name + suffix,
        server=server,
        model_name=model_name,
        inputs=inputs,
        outputs=tuple(outputs),
        columns=schema_columns(record.input_schema),
    )


def call_model(
    endpoint: ModelEndpoint, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """One blocking call; every output as ``(rows, *dims)``, or ModelFailed.

    Fails when the server raises, an output is missing, has another number of
    rows than the inputs, or holds a NaN or an infinity.
    """
    rows = len(next(iter(inputs.values())))
    try:
        answer = endpoint.server.infer(endpoint.model_name, inputs)
    except Exception as error:
        raise ModelFailed(
            f"model {endpoint.model_name!r} ({endpoint.version}) on the "
            f"{endpoint.server.kind} server failed: {type(error).__name__}: {error}"
        ) from error
    outputs = {}
    for spec in endpoint.outputs:
        if spec.name not in answer:
            raise ModelFailed(
                f"model {endpoint.model_name!r} returned {sorted(answer)}, without "
                f"output {spec.name!r}."
            )
        value = np.asarray(answer[spec.name])
        if len(value) != rows:
            raise ModelFailed(
                f"model {endpoint.model_name!r} returned {len(value)} rows of "
                f"{spec.name!r} for {rows} input rows."
            )
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            raise ModelFailed(
                f"model {endpoint.model_name!r} returned non-finite {spec.name!r}."
            )
        outputs[spec.name] = value.reshape(rows, *spec.shape)
    return outputs
