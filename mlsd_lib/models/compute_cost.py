"""What a model costs to run: parameters, multiply-adds per input, measured throughput.

Introduced in ``casestudies/visual_search/01_requirements_and_scale.ipynb`` (the
embedder's compute in the back-of-the-envelope scale). A capacity plan multiplies a
model's cost per input by the inputs per second; the cost is known two ways, and the
plan needs both:

* **counted**: :func:`count_multiply_adds` runs one input through the model with
  hooks on every convolution and linear layer and adds up their multiply-adds
  (the work that dominates a CNN; batch norm, activations and pooling are a few
  percent and left out, as model cards do). It does not depend on the machine,
  so it scales: a ResNet-50's 4 x 10^9 against a small CNN's 6 x 10^7.
* **measured**: :func:`measure_throughput` times forward passes on this CPU. The
  ratio of the two, multiply-adds per second, is what a core actually delivers;
  dividing it by a larger model's count estimates that model's throughput
  without building it.

Throughput is the **best** of a few timed batches, not the mean: on a shared
machine other processes can only slow a batch down, so the fastest batch is the
closest to what the core does alone (and the figure a capacity plan then
derates, by planning at 60% utilization).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from mlsd_lib.errors import MlsdError
from mlsd_lib.models.training import torch_threads

__all__ = [
    "ComputeCostError",
    "Throughput",
    "count_multiply_adds",
    "count_parameters",
    "measure_throughput",
]


class ComputeCostError(MlsdError, ValueError):
    """A cost was asked for an input shape or setting that cannot be measured."""


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not): the model's size is 4 B each in
    float32."""
    return sum(p.numel() for p in model.parameters())


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(int(s) for s in input_shape)
    if not shape or min(shape) < 1:
        raise ComputeCostError(
            f"input_shape must be the shape of ONE input without the batch axis, "
            f"every size >= 1 (e.g. (3, 64, 64)), got {input_shape!r}."
        )
    return shape


def count_multiply_adds(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds of the convolution and linear layers for one input.

    ``input_shape`` leaves out the batch axis: ``(3, 64, 64)`` for an RGB image.
    A convolution costs (output elements) x (input channels per group) x
    (kernel area); a linear layer (output elements) x (input features). One
    multiply-add is two floating-point operations, so FLOPs are about twice
    this. The model runs once on zeros in eval mode; its mode is restored.
    """
    shape = _check_shape(input_shape)
    total = 0

    def on_conv(layer: nn.Module, _: object, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(layer, nn.Conv2d | nn.Conv1d | nn.Conv3d)
        kernel = 1
        for k in layer.kernel_size:
            kernel *= k
        total += out.numel() * (layer.in_channels // layer.groups) * kernel

    def on_linear(layer: nn.Module, _: object, out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(layer, nn.Linear)
        total += out.numel() * layer.in_features

    handles = []
    for layer in model.modules():
        if isinstance(layer, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            handles.append(layer.register_forward_hook(on_conv))
        elif isinstance(layer, nn.Linear):
            handles.append(layer.register_forward_hook(on_linear))
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            model(torch.zeros((1, *shape)))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return total


@dataclass(frozen=True)
class Throughput:
    """Inputs per second of the fastest timed batch (see the module docstring),
    with how it was measured: ``batch_size``, ``num_threads`` and every batch's
    seconds."""

    inputs_per_s: float
    batch_size: int
    num_threads: int
    batch_seconds: tuple[float, ...]


def measure_throughput(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 128,
    repeats: int = 3,
    num_threads: int = 1,
    seed: int = 0,
) -> Throughput:
    """Time ``repeats`` forward passes of ``batch_size`` random inputs.

    Eval mode, ``torch.inference_mode``, ``num_threads`` intra-op threads (one
    thread measures one core, the unit a capacity plan counts). One untimed
    pass first warms up the allocator and kernels. Inputs are uniform in
    ``[0, 1)`` from a generator seeded by ``seed``; the model's mode is
    restored after.
    """
    shape = _check_shape(input_shape)
    for name, value in (
        ("batch_size", batch_size),
        ("repeats", repeats),
        ("num_threads", num_threads),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ComputeCostError(f"{name} must be an integer >= 1, got {value!r}.")
    generator = torch.Generator().manual_seed(seed)
    batch = torch.rand((batch_size, *shape), generator=generator)
    was_training = model.training
    model.eval()
    seconds: list[float] = []
    try:
        with torch_threads(num_threads), torch.inference_mode():
            model(batch)  # warm-up
            for _ in range(repeats):
                start = time.perf_counter()
                model(batch)
                seconds.append(time.perf_counter() - start)
    finally:
        model.train(was_training)
    return Throughput(
        inputs_per_s=batch_size / min(seconds),
        batch_size=batch_size,
        num_threads=num_threads,
        batch_seconds=tuple(seconds),
    )
