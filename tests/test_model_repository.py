"""Writing a Triton model repository, validated with Triton's own ModelConfig."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tritonclient.grpc import model_config_pb2

from mlsd_lib.serving.export import export_torchscript
from mlsd_lib.serving.model_repository import (
    InvalidModelConfig,
    read_model_config,
    write_triton_repository,
)
from mlsd_lib.serving.tensors import TensorSpec


class DenseAndIds(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 2)
        self.linear = torch.nn.Linear(3 + 2, 1)

    def forward(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return self.linear(torch.cat([dense, self.embedding(ids)], dim=1))


@pytest.fixture
def model_pt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    example = (torch.randn(4, 3), torch.randint(0, 10, (4,)))
    return export_torchscript(DenseAndIds().eval(), example, tmp_path / "m.pt")


INDEXED_INPUTS = [
    TensorSpec("INPUT__0", np.float32, (3,)),
    TensorSpec("INPUT__1", np.int64, ()),
]
OUTPUTS = [TensorSpec("OUTPUT__0", np.float32, (1,))]


def test_written_config_parses_as_triton_model_config(
    model_pt: Path, tmp_path: Path
) -> None:
    model_dir = write_triton_repository(
        tmp_path / "repo",
        "ctr",
        model_pt,
        INDEXED_INPUTS,
        OUTPUTS,
        max_batch_size=64,
        dynamic_batching=True,
        preferred_batch_sizes=[16, 32],
        max_queue_delay_us=500,
        instance_count=2,
    )
    assert model_dir == tmp_path / "repo" / "ctr"
    assert (model_dir / "1" / "model.pt").read_bytes() == model_pt.read_bytes()
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt"]

    config = read_model_config(model_dir / "config.pbtxt")
    assert isinstance(config, model_config_pb2.ModelConfig)
    assert config.name == "ctr"
    assert config.platform == "pytorch_libtorch"
    assert config.max_batch_size == 64
    assert [(i.name, i.data_type, list(i.dims)) for i in config.input] == [
        ("INPUT__0", model_config_pb2.TYPE_FP32, [3]),
        ("INPUT__1", model_config_pb2.TYPE_INT64, []),
    ]
    assert [(o.name, o.data_type, list(o.dims)) for o in config.output] == [
        ("OUTPUT__0", model_config_pb2.TYPE_FP32, [1]),
    ]
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert len(config.instance_group) == 1
    assert config.instance_group[0].count == 2
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_forward_argument_names_are_accepted_and_no_batching_means_no_block(
    model_pt: Path, tmp_path: Path
) -> None:
    named = [
        TensorSpec("dense", np.float32, (3,)),
        TensorSpec("ids", np.int64, ()),
    ]
    model_dir = write_triton_repository(
        tmp_path / "repo",
        "ctr_named",
        model_pt,
        named,
        OUTPUTS,
        max_batch_size=8,
        dynamic_batching=False,
        version=3,
    )
    config = read_model_config(model_dir)  # a folder works too
    assert [i.name for i in config.input] == ["dense", "ids"]
    assert not config.HasField("dynamic_batching")
    assert (model_dir / "3" / "model.pt").is_file()


@pytest.mark.parametrize(
    ("inputs", "outputs", "kwargs", "message"),
    [
        (
            [TensorSpec("x", np.float32, (3,)), TensorSpec("y", np.int64, ())],
            OUTPUTS,
            {},
            r"forward\(\)'s arguments \['dense', 'ids'\]",
        ),
        (INDEXED_INPUTS[:1], OUTPUTS, {}, "takes 2 inputs"),
        (
            [INDEXED_INPUTS[1], INDEXED_INPUTS[0]],
            OUTPUTS,
            {},
            "input 0 is named 'INPUT__1'",
        ),
        (INDEXED_INPUTS, [TensorSpec("score", np.float32, (1,))], {}, "OUTPUT__0"),
        (INDEXED_INPUTS, OUTPUTS, {"max_batch_size": 0}, "max_batch_size"),
        (
            INDEXED_INPUTS,
            OUTPUTS,
            {"preferred_batch_sizes": [128]},
            r"outside 1\.\.64",
        ),
        (
            INDEXED_INPUTS,
            OUTPUTS,
            {"dynamic_batching": False, "max_queue_delay_us": 100},
            "dynamic_batching=True",
        ),
        (INDEXED_INPUTS, OUTPUTS, {"instance_count": 0}, "instance_count"),
        (
            [TensorSpec("INPUT__0", np.complex64, (3,)), INDEXED_INPUTS[1]],
            OUTPUTS,
            {},
            "no Triton PyTorch equivalent",
        ),
    ],
)
def test_configs_triton_would_reject_are_refused_before_writing(
    model_pt: Path, tmp_path: Path, inputs, outputs, kwargs: dict, message: str
) -> None:
    arguments = {"max_batch_size": 64, "dynamic_batching": True, **kwargs}
    with pytest.raises(InvalidModelConfig, match=message):
        write_triton_repository(
            tmp_path / "repo", "ctr", model_pt, inputs, outputs, **arguments
        )
    assert not (tmp_path / "repo" / "ctr" / "config.pbtxt").exists()


def test_read_model_config_rejects_a_misspelled_field(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "m"\nplatform: "pytorch_libtorch"\nmax_batch_sise: 8\n')
    with pytest.raises(InvalidModelConfig, match="max_batch_sise"):
        read_model_config(path)
