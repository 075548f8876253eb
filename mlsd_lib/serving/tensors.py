"""The contract between a model and the server that hosts it.

Introduced in ``notebooks/00_environment.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from mlsd_lib.errors import MlsdError

#: A model as a server sees it: batched named inputs in, batched named outputs out.
#: Every array's first axis is the batch.
BatchedInferFn = Callable[..., Mapping[str, np.ndarray]]


class MalformedRequest(MlsdError, ValueError):
    """Inputs do not match the model's declared tensors."""


@dataclass(frozen=True)
class TensorSpec:
    """One named tensor of a model's signature, without the batch axis.

    ``TensorSpec("features", np.float32, (50,))`` is a batch of 50-wide rows.
    """

    name: str
    dtype: type[np.generic]
    shape: tuple[int, ...]

    def check(self, array: np.ndarray) -> None:
        """Raise :class:`MalformedRequest` unless ``array`` is a batch of these."""
        want = np.dtype(self.dtype)
        if array.dtype != want:
            raise MalformedRequest(
                f"input {self.name!r} has dtype {array.dtype}, the model expects "
                f"{want}: cast it with .astype(np.{want})."
            )
        if array.ndim != len(self.shape) + 1 or any(
            size not in (-1, got)
            for size, got in zip(self.shape, array.shape[1:], strict=True)
        ):
            raise MalformedRequest(
                f"input {self.name!r} has shape {array.shape}, the model expects "
                f"(batch, {', '.join(map(str, self.shape))})."
            )


def check_inputs(
    specs: tuple[TensorSpec, ...], inputs: Mapping[str, np.ndarray]
) -> None:
    """Check names, dtypes, shapes and a common batch size of a request."""
    expected = {spec.name for spec in specs}
    if set(inputs) != expected:
        raise MalformedRequest(
            f"inputs {sorted(inputs)} do not match the model's inputs "
            f"{sorted(expected)}."
        )
    for spec in specs:
        spec.check(np.asarray(inputs[spec.name]))
    batch_sizes = {np.asarray(array).shape[0] for array in inputs.values()}
    if len(batch_sizes) != 1:
        raise MalformedRequest(
            f"inputs disagree on the batch size: {sorted(batch_sizes)}."
        )
