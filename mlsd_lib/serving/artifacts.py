"""A registered artifact as a function of this process (for in-process servers).

Introduced in ``notebooks/model_serving.ipynb``. Triton's Python backend runs a
version with :func:`~mlsd_lib.serving.triton_python_model.run_batch` in a
process of its own; the in-process fallback server and the PyTriton binding run
the *same* function here, on the same verified file, so the three can only
differ in where the model runs, never in what it computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mlsd_lib.serving.export import load_program, load_torchscript
from mlsd_lib.serving.model_repository import SERVABLE_FORMATS, tensor_info
from mlsd_lib.serving.registry import IntegrityError, sha256_of
from mlsd_lib.serving.tensors import BatchedInferFn, TensorSpec
from mlsd_lib.serving.triton_python_model import run_batch


def artifact_infer_fn(
    artifact: str | Path,
    *,
    sha256: str,
    format: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
) -> BatchedInferFn:
    """Verify ``artifact``'s sha256, load it, and return a batched infer function."""
    path = Path(artifact)
    found = sha256_of(path)
    if found != sha256:
        raise IntegrityError(
            f"{path} has sha256 {found}, but {sha256} was recorded: the file "
            "changed after registration; re-register the model."
        )
    if format == "torchscript":
        module = load_torchscript(path)
    elif format == "pt2":
        module = load_program(path)
    else:
        raise ValueError(
            f"format {format!r} cannot be served; use one of {SERVABLE_FORMATS}."
        )
    info = {"outputs": [tensor_info(spec) for spec in outputs]}
    names = [spec.name for spec in inputs]
    out_names = [spec.name for spec in outputs]

    def infer(**arrays: np.ndarray) -> dict[str, np.ndarray]:
        (answer,) = run_batch(module, info, [[arrays[name] for name in names]])
        return dict(zip(out_names, answer, strict=True))

    return infer
