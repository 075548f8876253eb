"""Export to TorchScript and torch.export, and the parity gate that refuses bad ones."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from mlsd_lib.serving.export import (
    ExportFailed,
    ParityError,
    check_parity,
    export_model,
    export_program,
    export_torchscript,
    load_program,
    load_torchscript,
    sample_batches,
)


class TwoInputCTR(torch.nn.Module):
    """A small CTR-like model: dense features plus an embedded categorical id."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = torch.nn.Embedding(10, 4)
        self.mlp = torch.nn.Sequential(
            torch.nn.Linear(3 + 4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1)
        )

    def forward(self, dense: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        features = torch.cat([dense, self.embedding(ids)], dim=1)
        return torch.sigmoid(self.mlp(features))


class BranchOnData(torch.nn.Module):
    """Python control flow on tensor values: tracing freezes the branch taken."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.mean() > 0:
            return x * 2
        return -x


class LoopOverRows(torch.nn.Module):
    """A Python loop over the batch: tracing unrolls it for the example's size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[i].sum() for i in range(x.shape[0])])


@pytest.fixture
def ctr_model() -> TwoInputCTR:
    torch.manual_seed(0)
    return TwoInputCTR().eval()


@pytest.fixture
def ctr_example() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    dense = torch.randn(4, 3, generator=generator)
    ids = torch.randint(0, 10, (4,), generator=generator)
    return dense, ids


@pytest.mark.parametrize("format", ["torchscript", "pt2"])
def test_export_model_round_trips_and_agrees_on_every_batch_size(
    format: str, ctr_model: TwoInputCTR, ctr_example, tmp_path: Path
) -> None:
    path = tmp_path / ("model.pt" if format == "torchscript" else "model.pt2")
    exported = export_model(ctr_model, ctr_example, path, format=format)

    assert exported.path == path and path.is_file()
    assert exported.report.passed
    # the example, then 1, the example's size, and a larger batch
    assert exported.report.batch_sizes == (4, 1, 4, 9)
    assert exported.report.max_abs_error <= 1e-5
    reloaded = load_torchscript(path) if format == "torchscript" else load_program(path)
    dense, ids = torch.randn(17, 3), torch.randint(0, 10, (17,))
    with torch.no_grad():
        torch.testing.assert_close(reloaded(dense, ids), ctr_model(dense, ids))


def test_torchscript_export_does_not_hide_the_deprecation_warning(
    ctr_model: TwoInputCTR, ctr_example, tmp_path: Path
) -> None:
    with pytest.warns(DeprecationWarning, match="torch.jit"):
        export_torchscript(ctr_model, ctr_example, tmp_path / "model.pt")


# Tracing the branch is the point: torch warns that the trace froze it, and
# export_torchscript's check then refuses the artifact (what this test asserts).
@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")
def test_traced_data_dependent_branch_is_refused_and_deleted(tmp_path: Path) -> None:
    model = BranchOnData().eval()
    positive = torch.ones(4, 3)  # the trace records the `x * 2` branch
    negative = -torch.ones(2, 3)  # eager takes `-x`: same magnitude, other sign
    path = tmp_path / "branch.pt"

    with pytest.raises(ParityError) as caught:
        export_model(model, positive, path, sample_inputs=[positive, negative])

    report = caught.value.report
    assert not report.passed
    assert report.max_abs_error == pytest.approx(3.0)  # traced -1 * 2 vs eager 1
    assert "batch 2" in str(caught.value) and "max abs error" in str(caught.value)
    assert not path.exists()


def test_default_samples_catch_an_export_that_froze_the_batch_size(
    tmp_path: Path,
) -> None:
    model = LoopOverRows().eval()
    with pytest.raises(ParityError) as caught:
        export_model(model, torch.randn(4, 3), tmp_path / "loop.pt")
    failures = " ".join(caught.value.report.failures)
    assert "batch 1: candidate raised" in failures  # unrolled 4 rows, has 1
    assert "batch 9: output 0 is torch.float32(4,)" in failures  # 4 of 9 rows
    assert math.isinf(caught.value.report.max_abs_error)


def test_torch_export_refuses_data_dependent_control_flow(tmp_path: Path) -> None:
    with pytest.raises(ExportFailed, match=r"torch\.where or torch\.cond"):
        export_program(BranchOnData().eval(), torch.ones(4, 3), tmp_path / "b.pt2")
    assert not (tmp_path / "b.pt2").exists()


def test_program_export_needs_a_batch_of_at_least_two(
    ctr_model: TwoInputCTR, tmp_path: Path
) -> None:
    one = (torch.randn(1, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2"):
        export_program(ctr_model, one, tmp_path / "m.pt2")


def test_training_mode_model_is_refused(ctr_example, tmp_path: Path) -> None:
    model = TwoInputCTR().train()
    with pytest.raises(ValueError, match=r"model\.eval\(\)"):
        export_model(model, ctr_example, tmp_path / "m.pt")


def test_check_parity_measures_abs_and_rel_error() -> None:
    class Plus(torch.nn.Module):
        def __init__(self, delta: float) -> None:
            super().__init__()
            self.delta = delta

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.delta

    x = torch.tensor([[2.0, 4.0], [0.0, -1.0]])  # reference outputs: x + 0
    within = check_parity(Plus(0.0), Plus(1e-3), [x], atol=1e-2, rtol=0.0)
    outside = check_parity(Plus(0.0), Plus(1e-3), [x], atol=1e-4, rtol=1e-4)

    assert within.passed
    assert within.max_abs_error == pytest.approx(1e-3, rel=1e-4)
    # largest relative error is at the -1 output; the 0 output is skipped
    assert within.max_rel_error == pytest.approx(1e-3, rel=1e-4)
    assert not outside.passed
    assert outside.failures == ("batch 2: output 0 off by up to 0.001",)


def test_sample_batches_are_seeded_and_keep_ids_in_range(ctr_example) -> None:
    first = sample_batches(ctr_example, seed=3)
    again = sample_batches(ctr_example, seed=3)
    for a, b in zip(first, again, strict=True):
        for left, right in zip(a, b, strict=True):
            assert torch.equal(left, right)
    ids = torch.cat([batch[1] for batch in first])
    low, high = int(ctr_example[1].min()), int(ctr_example[1].max())
    assert ids.dtype == torch.long
    assert int(ids.min()) >= low and int(ids.max()) <= high
