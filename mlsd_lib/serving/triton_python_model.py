"""The ``model.py`` that Triton's Python backend runs for every registered version.

Introduced in ``notebooks/model_serving.ipynb``. This file is not imported by the
library: :func:`~mlsd_lib.serving.model_repository.write_python_backend_model`
copies it, unchanged, into ``<repository>/<model>/<version>/model.py`` next to
the model's artifact and an ``artifact.json`` that says what to load. Triton
starts one ``triton_python_backend_stub`` process per model instance, and that
process, not the gateway and not the notebook, imports torch and runs the model.

What it does:

* **initialize**: re-hashes the artifact and refuses to load (the load request
  fails with the reason) unless its sha256 is the one the registry recorded;
  loads it with ``torch.jit.load`` (TorchScript) or ``torch.export.load``
  (``.pt2``), nothing unpickled; limits torch to ``threads`` threads, because on
  a small machine the intra-op thread pools of several model processes would
  fight over the same cores.
* **execute**: Triton's dynamic batcher hands over every request it merged;
  their inputs are concatenated along the batch axis, the model runs once, and
  the outputs are cut back into one response per request.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

ARTIFACT_INFO = "artifact.json"
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def load_artifact(folder: Path) -> tuple[Any, dict[str, Any]]:
    """The verified module of a version folder, and its ``artifact.json``."""
    import torch

    info = json.loads((folder / ARTIFACT_INFO).read_text(encoding="utf-8"))
    path = folder / info["artifact"]
    found = _sha256(path)
    if found != info["sha256"]:
        raise RuntimeError(
            f"{path} has sha256 {found}, but the registry recorded "
            f"{info['sha256']}: the file changed after registration; re-register "
            "the model instead of editing the repository."
        )
    torch.set_num_threads(int(info["threads"]))
    if info["format"] == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu").eval()
    elif info["format"] == "pt2":
        module = torch.export.load(str(path)).module()
    else:
        raise RuntimeError(f"artifact format {info['format']!r} cannot be served.")
    return module, info


def run_batch(
    module: Any, info: dict[str, Any], inputs: list[list[np.ndarray]]
) -> list[list[np.ndarray]]:
    """Run the module once over several requests' inputs; one output list each.

    ``inputs[r][i]`` is request ``r``'s ``i``-th input; the answer's
    ``[r][o]`` is its ``o``-th output, shaped ``(rows, *dims)`` in the declared
    dtype.
    """
    import torch

    sizes = [len(request[0]) for request in inputs]
    merged = [
        torch.from_numpy(np.ascontiguousarray(np.concatenate(column)))
        for column in zip(*inputs, strict=True)
    ]
    with torch.inference_mode():
        result = module(*merged)
    outputs = result if isinstance(result, tuple | list) else (result,)
    total = sum(sizes)
    arrays = [
        out.detach().numpy().reshape(total, *spec["dims"]).astype(spec["dtype"])
        for out, spec in zip(outputs, info["outputs"], strict=True)
    ]
    answers, start = [], 0
    for size in sizes:
        answers.append([array[start : start + size] for array in arrays])
        start += size
    return answers


class TritonPythonModel:
    """The class Triton's Python backend instantiates (the name is required)."""

    def initialize(self, args: dict[str, str]) -> None:
        folder = Path(args["model_repository"]) / args["model_version"]
        self.module, self.info = load_artifact(folder)

    def execute(self, requests: list[Any]) -> list[Any]:
        import triton_python_backend_utils as pb_utils

        names = [spec["name"] for spec in self.info["inputs"]]
        inputs = [
            [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in names]
            for r in requests
        ]
        try:
            answers = run_batch(self.module, self.info, inputs)
        except Exception as error:  # one bad batch fails its requests, not the model
            message = f"{type(error).__name__}: {error}"
            return [
                pb_utils.InferenceResponse(error=pb_utils.TritonError(message))
                for _ in requests
            ]
        out_names = [spec["name"] for spec in self.info["outputs"]]
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor(n, a) for n, a in zip(out_names, answer, strict=True)]
            )
            for answer in answers
        ]
