"""A model's counted multiply-adds and its measured throughput."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mlsd_lib.models.compute_cost import (
    ComputeCostError,
    count_multiply_adds,
    count_parameters,
    measure_throughput,
)


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 16 x 16 x 8 outputs x 27
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=2),  # 8 x 8 x 8 x (4 x 9)
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 4),  # 4 x 8
    )


def test_multiply_adds_by_hand() -> None:
    expected = 16 * 16 * 8 * 27 + 8 * 8 * 8 * 36 + 4 * 8
    assert count_multiply_adds(_net(), (3, 16, 16)) == expected


def test_multiply_adds_grow_with_the_image_area() -> None:
    small = count_multiply_adds(_net(), (3, 16, 16))
    large = count_multiply_adds(_net(), (3, 32, 32))
    linear = 4 * 8  # the head does not grow
    assert large - linear == 4 * (small - linear)


def test_counting_leaves_the_model_as_it_was() -> None:
    net = _net().train()
    count_multiply_adds(net, (3, 16, 16))
    assert net.training
    assert not net[0]._forward_hooks  # hooks removed


def test_parameters() -> None:
    assert count_parameters(nn.Linear(10, 3)) == 33


def test_throughput_is_a_positive_rate_of_the_fastest_batch() -> None:
    net = _net()
    t = measure_throughput(net, (3, 16, 16), batch_size=8, repeats=2)
    assert len(t.batch_seconds) == 2
    assert t.inputs_per_s == pytest.approx(8 / min(t.batch_seconds))
    assert math.isfinite(t.inputs_per_s) and t.inputs_per_s > 0
    assert t.num_threads == 1 and t.batch_size == 8
    assert net.training  # mode restored
    assert torch.get_num_threads() >= 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"repeats": 1.5}, "repeats must be an integer >= 1"),
    ],
)
def test_throughput_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ComputeCostError, match=message):
        measure_throughput(_net(), (3, 16, 16), **kwargs)


def test_input_shape_without_the_batch_axis() -> None:
    with pytest.raises(ComputeCostError, match="without the batch axis"):
        count_multiply_adds(_net(), (3, 0, 16))
