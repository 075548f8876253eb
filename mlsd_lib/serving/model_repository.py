"""Write Triton model repositories: the folders a model server loads models from.

Introduced in ``notebooks/model_serving.ipynb``. A model server does not run the
caller's code; it is handed a *model repository*::

    <repo_root>/<name>/config.pbtxt     # how to serve it
    <repo_root>/<name>/<version>/...    # one folder per version

Two flavours are written here:

* :func:`write_python_backend_model`: Triton's **Python backend** runs a
  ``model.py`` in a process of its own, which loads the TorchScript or
  ``torch.export`` file. This is what the ``tritonserver`` inside
  nvidia-pytriton can run, and what the book serves every registered version
  with (:class:`~mlsd_lib.serving.triton_repository_server.TritonRepositoryServer`).
* :func:`write_triton_repository`: Triton's native **PyTorch (libtorch)
  backend**, for the official ``nvcr.io/nvidia/tritonserver`` image, run as
  ``tritonserver --model-repository=<repo_root>``: no Python on the request
  path at all.

``config.pbtxt`` is an ``inference.ModelConfig`` protobuf in text format; we
build it as that protobuf (``tritonclient.grpc.model_config_pb2``) and print it,
so a misspelled field is an error here rather than a model that fails to load
on the server.

**Tensor names for the PyTorch backend.** TorchScript has no tensor names, so
Triton's PyTorch backend maps config names to ``forward()`` positions:

* an input is named either ``<anything>__<i>`` (``INPUT__0``, ``dense__1``),
  where ``i`` is its position in ``forward()``, or exactly like the ``forward()``
  argument it feeds (``dense``, ``ids``); one model uses one convention;
* an output is named ``<anything>__<i>`` (``OUTPUT__0``), ``i`` being its
  position in the tuple ``forward()`` returns (0 for a single tensor).

:func:`write_triton_repository` checks the names against these rules (and
argument names against the TorchScript file itself) before writing.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.tensors import TensorSpec

PLATFORM = "pytorch_libtorch"
#: The backends a config can name: Triton's libtorch backend, or its Python backend.
BACKENDS = ("pytorch", "python")

#: numpy dtype -> Triton's ``DataType`` enum name.
TRITON_DTYPES: dict[np.dtype, str] = {
    np.dtype(np.bool_): "TYPE_BOOL",
    np.dtype(np.uint8): "TYPE_UINT8",
    np.dtype(np.int8): "TYPE_INT8",
    np.dtype(np.int16): "TYPE_INT16",
    np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64",
    np.dtype(np.float16): "TYPE_FP16",
    np.dtype(np.float32): "TYPE_FP32",
    np.dtype(np.float64): "TYPE_FP64",
}

_INDEXED = re.compile(r"^.+__(\d+)$")


class InvalidModelConfig(MlsdError, ValueError):
    """The requested Triton configuration would not load; the message says why."""


def triton_dtype(dtype: type[np.generic] | np.dtype) -> str:
    """The ``TYPE_*`` name Triton uses for a numpy dtype."""
    try:
        return TRITON_DTYPES[np.dtype(dtype)]
    except KeyError:
        raise InvalidModelConfig(
            f"dtype {np.dtype(dtype)} has no Triton PyTorch equivalent; use one of "
            f"{sorted(str(d) for d in TRITON_DTYPES)}."
        ) from None


def _forward_argument_names(torchscript_path: Path) -> list[str]:
    module = torch.jit.load(str(torchscript_path), map_location="cpu")
    return [arg.name for arg in module.forward.schema.arguments][1:]  # drop self


def _check_output_names(outputs: Sequence[TensorSpec]) -> None:
    for position, spec in enumerate(outputs):
        match = _INDEXED.match(spec.name)
        if match is None or int(match.group(1)) != position:
            raise InvalidModelConfig(
                f"output {position} is named {spec.name!r}; the PyTorch backend "
                f"needs '<name>__{position}' (e.g. 'OUTPUT__{position}'), the "
                "index being the output's position in what forward() returns."
            )


def _check_input_names(inputs: Sequence[TensorSpec], torchscript_path: Path) -> None:
    arguments = _forward_argument_names(torchscript_path)
    if len(arguments) != len(inputs):
        raise InvalidModelConfig(
            f"{torchscript_path} takes {len(arguments)} inputs {arguments} but "
            f"{len(inputs)} were declared {[s.name for s in inputs]}."
        )
    names = [spec.name for spec in inputs]
    if names == arguments:
        return
    for position, name in enumerate(names):
        match = _INDEXED.match(name)
        if match is None or int(match.group(1)) != position:
            raise InvalidModelConfig(
                f"input {position} is named {name!r}; name inputs either exactly "
                f"like forward()'s arguments {arguments} or '<name>__<position>' "
                f"(e.g. 'INPUT__{position}')."
            )


def build_model_config(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    max_batch_size: int,
    dynamic_batching: bool,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 0,
    instance_count: int = 1,
    instance_kind: str = "KIND_CPU",
    backend: str = "pytorch",
    versions: Sequence[int] = (),
) -> model_config_pb2.ModelConfig:
    """The ``ModelConfig`` protobuf for a batched TorchScript model.

    ``backend="pytorch"`` is Triton's native libtorch backend (the official
    container); ``backend="python"`` is the Python backend, which runs a
    ``model.py`` (:mod:`~mlsd_lib.serving.triton_python_model`). ``versions``
    pins which version folders Triton serves (all of them when empty).

    Tensor shapes are given without the batch axis (as in
    :class:`~mlsd_lib.serving.tensors.TensorSpec`); with ``max_batch_size >= 1``
    Triton adds it. ``dynamic_batching`` lets Triton merge requests that arrive
    within ``max_queue_delay_us`` into one batch, preferring the
    ``preferred_batch_sizes``.
    """
    if max_batch_size < 1:
        raise InvalidModelConfig(
            f"max_batch_size must be >= 1, got {max_batch_size}: every tensor "
            "here has a batch axis (0 would tell Triton it has none)."
        )
    if not inputs or not outputs:
        raise InvalidModelConfig("a model needs at least one input and one output.")
    bad_sizes = [
        size for size in preferred_batch_sizes if not 1 <= size <= max_batch_size
    ]
    if bad_sizes:
        raise InvalidModelConfig(
            f"preferred batch sizes {bad_sizes} are outside 1..{max_batch_size} "
            "(max_batch_size)."
        )
    if not dynamic_batching and (preferred_batch_sizes or max_queue_delay_us):
        raise InvalidModelConfig(
            "preferred_batch_sizes and max_queue_delay_us configure dynamic "
            "batching; pass dynamic_batching=True or leave them out."
        )
    if max_queue_delay_us < 0:
        raise InvalidModelConfig(
            f"max_queue_delay_us must be >= 0, got {max_queue_delay_us}."
        )
    if instance_count < 1:
        raise InvalidModelConfig(f"instance_count must be >= 1, got {instance_count}.")
    kinds = model_config_pb2.ModelInstanceGroup.Kind.keys()
    if instance_kind not in kinds:
        raise InvalidModelConfig(
            f"instance_kind {instance_kind!r} is not one of {kinds}."
        )
    for spec in (*inputs, *outputs):
        if any(size == 0 or size < -1 for size in spec.shape):
            raise InvalidModelConfig(
                f"tensor {spec.name!r} has shape {spec.shape}: sizes are positive, "
                "or -1 for a variable size."
            )

    if backend not in BACKENDS:
        raise InvalidModelConfig(f"backend {backend!r} is not one of {BACKENDS}.")
    if any(version < 1 for version in versions):
        raise InvalidModelConfig(f"Triton model versions start at 1, got {versions}.")
    config = model_config_pb2.ModelConfig(name=name, max_batch_size=max_batch_size)
    if backend == "python":
        config.backend = "python"
    else:
        config.platform = PLATFORM
    if versions:
        config.version_policy.specific.versions.extend(versions)
    for spec in inputs:
        config.input.add(
            name=spec.name,
            data_type=model_config_pb2.DataType.Value(triton_dtype(spec.dtype)),
            dims=list(spec.shape),
        )
    for spec in outputs:
        config.output.add(
            name=spec.name,
            data_type=model_config_pb2.DataType.Value(triton_dtype(spec.dtype)),
            dims=list(spec.shape),
        )
    if dynamic_batching:
        config.dynamic_batching.preferred_batch_size.extend(preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    config.instance_group.add(
        count=instance_count,
        kind=model_config_pb2.ModelInstanceGroup.Kind.Value(instance_kind),
    )
    return config


def _check_model_name(name: str) -> None:
    if not name or "/" in name or name.startswith("."):
        raise InvalidModelConfig(f"model name {name!r} must be a plain folder name.")


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_triton_repository(
    repo_root: str | Path,
    name: str,
    torchscript_path: str | Path,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int,
    dynamic_batching: bool = True,
    preferred_batch_sizes: Sequence[int] = (),
    max_queue_delay_us: int = 0,
    instance_count: int = 1,
    *,
    version: int = 1,
    instance_kind: str = "KIND_CPU",
) -> Path:
    """Write ``<repo_root>/<name>/config.pbtxt`` and ``<name>/<version>/model.pt``.

    Returns the model's folder. The tensor names are checked against the
    PyTorch backend's naming rules (see the module docstring) and the
    TorchScript file's ``forward()`` before anything is written. Files are
    written to a temporary name and moved into place, so a server polling the
    repository never loads half a file. Rewriting an existing model replaces
    its config and that version's ``model.pt``.
    """
    source = Path(torchscript_path)
    if not source.is_file():
        raise FileNotFoundError(f"TorchScript file {source} does not exist.")
    _check_model_name(name)
    if version < 1:
        raise InvalidModelConfig(f"Triton model versions start at 1, got {version}.")
    config = build_model_config(
        name,
        inputs,
        outputs,
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        preferred_batch_sizes=preferred_batch_sizes,
        max_queue_delay_us=max_queue_delay_us,
        instance_count=instance_count,
        instance_kind=instance_kind,
    )
    _check_output_names(outputs)
    _check_input_names(inputs, source)

    model_dir = Path(repo_root) / name
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(version_dir / "model.pt", lambda tmp: shutil.copyfile(source, tmp))
    text = text_format.MessageToString(config)
    _write_atomic(
        model_dir / "config.pbtxt",
        lambda tmp: tmp.write_text(text, encoding="utf-8"),
    )
    return model_dir


def read_model_config(path: str | Path) -> model_config_pb2.ModelConfig:
    """Parse a ``config.pbtxt`` (or a model folder holding one) into the protobuf.

    This is how Triton itself reads it, so a file that parses here has no
    misspelled or misplaced fields.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "config.pbtxt"
    config = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(path.read_text(encoding="utf-8"), config)
    except text_format.ParseError as error:
        raise InvalidModelConfig(
            f"{path} is not a valid ModelConfig: {error}"
        ) from None
    return config


#: The Python backend's entry point, copied into every version folder.
PYTHON_MODEL_SOURCE = Path(__file__).with_name("triton_python_model.py")
#: What the Python backend can load; ``state_dict`` needs the class, so it cannot.
SERVABLE_FORMATS = ("torchscript", "pt2")


def write_python_backend_model(
    repo_root: str | Path,
    name: str,
    version: int,
    artifact: str | Path,
    *,
    sha256: str,
    format: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch_size: int,
    dynamic_batching: bool = True,
    max_queue_delay_us: int = 0,
    instance_count: int = 1,
    threads: int = 1,
) -> Path:
    """Write ``<repo_root>/<name>/<version>/`` for Triton's Python backend.

    The version folder holds the artifact (a TorchScript ``model.pt`` or a
    ``torch.export`` ``model.pt2``), ``model.py``
    (:mod:`~mlsd_lib.serving.triton_python_model`) and ``artifact.json``: the
    file's name, format and the ``sha256`` the registry recorded (checked again
    when Triton loads it), the tensors' names, dims and dtypes, and the number
    of torch threads. ``config.pbtxt`` pins the model to this one version, so
    each registered version is its own Triton model that loads and unloads
    without touching the others (Triton reloads every version of a model when
    any of them is loaded). The folder is assembled under a temporary name and
    renamed into place: Triton never sees half of it. Returns the model folder.
    """
    source = Path(artifact)
    if not source.is_file():
        raise FileNotFoundError(f"artifact {source} does not exist.")
    if format not in SERVABLE_FORMATS:
        raise InvalidModelConfig(
            f"format {format!r} cannot be served by the Python backend; export "
            f"the model as one of {SERVABLE_FORMATS} (mlsd_lib.serving.export)."
        )
    _check_model_name(name)
    if threads < 1:
        raise InvalidModelConfig(f"threads must be >= 1, got {threads}.")
    config = build_model_config(
        name,
        inputs,
        outputs,
        max_batch_size=max_batch_size,
        dynamic_batching=dynamic_batching,
        max_queue_delay_us=max_queue_delay_us,
        instance_count=instance_count,
        backend="python",
        versions=(version,),
    )
    info = {
        "artifact": "model.pt" if format == "torchscript" else "model.pt2",
        "format": format,
        "sha256": sha256,
        "threads": threads,
        "inputs": [tensor_info(spec) for spec in inputs],
        "outputs": [tensor_info(spec) for spec in outputs],
    }
    model_dir = Path(repo_root) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{version}."))
    try:
        shutil.copyfile(source, staging / info["artifact"])
        shutil.copyfile(PYTHON_MODEL_SOURCE, staging / "model.py")
        (staging / "artifact.json").write_text(
            json.dumps(info, indent=2) + "\n", encoding="utf-8"
        )
        version_dir = model_dir / str(version)
        if version_dir.exists():
            shutil.rmtree(version_dir)
        os.replace(staging, version_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    text = text_format.MessageToString(config)
    _write_atomic(
        model_dir / "config.pbtxt", lambda tmp: tmp.write_text(text, encoding="utf-8")
    )
    return model_dir


def tensor_info(spec: TensorSpec) -> dict[str, object]:
    """A tensor as ``artifact.json`` records it: name, dims without the batch, dtype."""
    return {
        "name": spec.name,
        "dims": list(spec.shape),
        "dtype": np.dtype(spec.dtype).name,
    }
