"""Export a trained torch model to a file a server can load, and prove it agrees.

Introduced in ``notebooks/model_serving.ipynb``. A model leaves training as a
Python object; a server needs a self-contained file. Two formats:

* **TorchScript** (``torch.jit.trace`` / ``torch.jit.script``, a ``.pt`` file):
  what Triton's PyTorch backend (``pytorch_libtorch``) loads today. TorchScript
  is *deprecated* as of torch 2.13 (``torch.jit.*`` emit a ``DeprecationWarning``
  pointing at ``torch.export``); we still write it because the official Triton
  container serves it, and we let the warning show rather than hide it.
* **torch.export** (``torch.export.export`` + ``torch.export.save``, a ``.pt2``
  file): TorchScript's successor, a graph captured with symbolic shapes (here a
  dynamic batch dimension) that refuses, at export time, Python control flow it
  cannot capture.

Exporting can silently change a model: tracing records *one* path through
Python ``if`` statements and loops and replays it for every input. So
:func:`export_model` never hands back a file it has not reloaded from disk and
compared with the eager model on fresh inputs of several batch sizes
(:func:`check_parity`); a model that disagrees is refused with
:class:`ParityError`, which carries the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from mlsd_lib.errors import MlsdError

#: A model's positional inputs, each a batch (first axis = batch).
Inputs = tuple[torch.Tensor, ...]

ExportFormat = Literal["torchscript", "pt2"]
EXPORT_FORMATS: tuple[str, ...] = ("torchscript", "pt2")


class ExportFailed(MlsdError, RuntimeError):
    """The exporter could not capture the model; the message says why and what to do."""


@dataclass(frozen=True)
class ParityReport:
    """How far a candidate (an exported model) is from the reference (eager) one.

    ``max_abs_error`` is the largest ``|candidate - reference|`` over every output
    element of every sample; ``max_rel_error`` the largest
    ``|candidate - reference| / |reference|`` (elements whose reference is exactly
    zero are judged by ``atol`` alone and left out of the relative figure).
    ``passed`` uses ``torch.allclose``'s rule elementwise:
    ``|c - r| <= atol + rtol * |r|``. ``failures`` names each sample that failed
    and how (values too far apart, a different shape or dtype, or an exception).
    """

    max_abs_error: float
    max_rel_error: float
    atol: float
    rtol: float
    batch_sizes: tuple[int, ...]
    failures: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        verdict = "agrees" if self.passed else "DISAGREES"
        return (
            f"{verdict} on batch sizes {list(self.batch_sizes)}: "
            f"max abs error {self.max_abs_error:.3g}, "
            f"max rel error {self.max_rel_error:.3g} "
            f"(atol={self.atol:g}, rtol={self.rtol:g})"
        )


class ParityError(MlsdError, AssertionError):
    """An exported model disagrees with the eager model; ``report`` has the numbers."""

    def __init__(self, report: ParityReport, path: Path | None = None) -> None:
        self.report = report
        where = f" (exported to {path}, now deleted)" if path is not None else ""
        details = "; ".join(report.failures[:5])
        super().__init__(
            f"the exported model {report.summary()}{where}. Failures: {details}. "
            "Tracing freezes Python control flow that depends on the data or the "
            "batch size: rewrite it with tensor ops (torch.where, masking), use "
            "torch.jit.script, or export with format='pt2', which refuses such "
            "code at export time."
        )


@dataclass(frozen=True)
class ExportedModel:
    """An artifact that passed parity: where it is, its format, and the evidence."""

    path: Path
    format: ExportFormat
    module: torch.nn.Module
    report: ParityReport


def _as_inputs(example_inputs: torch.Tensor | Sequence[torch.Tensor]) -> Inputs:
    inputs = (
        (example_inputs,)
        if isinstance(example_inputs, torch.Tensor)
        else tuple(example_inputs)
    )
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise TypeError(
            "example inputs must be a tensor or a non-empty sequence of tensors, "
            f"one per positional argument of forward(); got {type(example_inputs)}."
        )
    if any(t.ndim == 0 for t in inputs):
        raise ValueError("every input needs a batch axis (dimension 0).")
    if len({t.shape[0] for t in inputs}) != 1:
        raise ValueError(
            f"inputs disagree on the batch size: {[t.shape[0] for t in inputs]}."
        )
    return inputs


def _require_eval(model: torch.nn.Module) -> None:
    if model.training:
        raise ValueError(
            "the model is in training mode (dropout on, batch norm updating its "
            "statistics), so its exported outputs would be random or stale: call "
            "model.eval() before exporting."
        )


def export_torchscript(
    model: torch.nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    path: str | Path,
    *,
    method: Literal["trace", "script"] = "trace",
) -> Path:
    """Write ``model`` as TorchScript to ``path`` (the file Triton's ``model.pt`` is).

    ``method="trace"`` runs the model once on ``example_inputs`` and records the
    operations it performed: fast and works on most models, but Python control
    flow is frozen to the path this example took (check it with
    :func:`check_parity`, as :func:`export_model` does). ``method="script"``
    compiles the Python source instead and keeps control flow, but accepts only
    the TorchScript subset of Python.

    torch 2.13 deprecated TorchScript: ``torch.jit.trace``/``script``/``load``
    each emit a ``DeprecationWarning`` saying to switch to ``torch.export``. We
    do not silence it: it is true, and it is why :func:`export_program` exists.
    We still export TorchScript because it is what the ``pytorch_libtorch``
    backend of the official Triton container loads.
    """
    _require_eval(model)
    inputs = _as_inputs(example_inputs)
    path = Path(path)
    with torch.no_grad():
        if method == "trace":
            scripted = torch.jit.trace(model, inputs, check_trace=False)
        elif method == "script":
            scripted = torch.jit.script(model)
        else:
            raise ValueError(f"method must be 'trace' or 'script', not {method!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    scripted.save(str(path))
    return path


def export_program(
    model: torch.nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    path: str | Path,
) -> Path:
    """Write ``model`` with ``torch.export`` to ``path`` (conventionally ``.pt2``).

    Dimension 0 of every input is declared a shared dynamic ``batch`` dimension
    (``torch.export.Dim``), so the saved program serves any batch size of 1 or
    more. The example's batch must be at least 2: torch.export specializes sizes
    0 and 1, and an example of 1 would pin the batch to 1.

    Unlike tracing, torch.export refuses Python control flow that depends on
    tensor values; that surfaces here as :class:`ExportFailed`.
    """
    _require_eval(model)
    inputs = _as_inputs(example_inputs)
    if inputs[0].shape[0] < 2:
        raise ValueError(
            "export the program with an example batch of at least 2: torch.export "
            "specializes a batch of 1 and the program would accept only that size."
        )
    batch = torch.export.Dim("batch")
    dynamic_shapes = tuple({0: batch} for _ in inputs)
    try:
        program = torch.export.export(model, inputs, dynamic_shapes=dynamic_shapes)
    except Exception as error:  # torch raises many types; all mean "cannot capture"
        first_line = str(error).strip().splitlines()[0] if str(error) else ""
        raise ExportFailed(
            f"torch.export could not capture {type(model).__name__}: "
            f"{type(error).__name__}: {first_line} The usual cause is Python "
            "control flow on tensor values (`if x.sum() > 0:`); express it with "
            "torch.where or torch.cond."
        ) from error
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    return path


def load_torchscript(path: str | Path) -> torch.jit.ScriptModule:
    """Load a TorchScript file onto the CPU, in eval mode.

    TorchScript archives are read by TorchScript's own loader, never by
    ``pickle`` on arbitrary classes, so this is safe on files you did not write
    (check their checksum anyway: see :mod:`mlsd_lib.serving.registry`).
    """
    module = torch.jit.load(str(path), map_location="cpu")
    module.eval()
    return module


def load_program(path: str | Path) -> torch.nn.Module:
    """Load a ``torch.export`` ``.pt2`` file and return it as a callable module."""
    return torch.export.load(str(path)).module()


def _outputs(result: object) -> tuple[torch.Tensor, ...]:
    if isinstance(result, torch.Tensor):
        return (result,)
    if isinstance(result, (tuple, list)) and all(
        isinstance(t, torch.Tensor) for t in result
    ):
        return tuple(result)
    raise TypeError(
        "parity checks need forward() to return a tensor or a tuple of tensors, "
        f"not {type(result).__name__}."
    )


def check_parity(
    reference: torch.nn.Module,
    candidate: torch.nn.Module,
    sample_inputs: Sequence[torch.Tensor | Sequence[torch.Tensor]],
    *,
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> ParityReport:
    """Run both models on every sample and measure how far apart they are.

    ``sample_inputs`` is a list of batches; each batch is a tensor or a tuple of
    tensors (one per positional argument of ``forward``). A candidate that
    raises, or returns a different number, shape or dtype of outputs, fails
    that sample (infinite error) rather than aborting the check, so the report
    lists every way it went wrong.
    """
    if not sample_inputs:
        raise ValueError("check_parity needs at least one sample batch.")
    max_abs, max_rel = 0.0, 0.0
    failures: list[str] = []
    batch_sizes: list[int] = []
    with torch.no_grad():
        for sample in sample_inputs:
            inputs = _as_inputs(sample)
            batch = int(inputs[0].shape[0])
            batch_sizes.append(batch)
            expected = _outputs(reference(*inputs))
            try:
                got = _outputs(candidate(*inputs))
            except Exception as error:
                max_abs = max_rel = math.inf
                message = str(error).strip().splitlines()
                failures.append(
                    f"batch {batch}: candidate raised {type(error).__name__}"
                    + (f" ({message[0][:120]})" if message else "")
                )
                continue
            if len(got) != len(expected):
                max_abs = max_rel = math.inf
                failures.append(
                    f"batch {batch}: {len(got)} outputs, expected {len(expected)}"
                )
                continue
            for index, (ref, out) in enumerate(zip(expected, got, strict=True)):
                if ref.shape != out.shape or ref.dtype != out.dtype:
                    max_abs = max_rel = math.inf
                    failures.append(
                        f"batch {batch}: output {index} is {out.dtype}"
                        f"{tuple(out.shape)}, expected {ref.dtype}{tuple(ref.shape)}"
                    )
                    continue
                ref64, out64 = ref.double(), out.double()
                diff = (out64 - ref64).abs()
                if diff.numel() == 0:
                    continue
                nonzero = ref64 != 0
                abs_err = float(diff.max())
                rel_err = (
                    float((diff[nonzero] / ref64[nonzero].abs()).max())
                    if bool(nonzero.any())
                    else 0.0
                )
                max_abs, max_rel = max(max_abs, abs_err), max(max_rel, rel_err)
                if not bool((diff <= atol + rtol * ref64.abs()).all()):
                    failures.append(
                        f"batch {batch}: output {index} off by up to {abs_err:.3g}"
                    )
    return ParityReport(
        max_abs_error=max_abs,
        max_rel_error=max_rel,
        atol=atol,
        rtol=rtol,
        batch_sizes=tuple(batch_sizes),
        failures=tuple(failures),
    )


def _like(
    example: torch.Tensor, batch: int, generator: torch.Generator
) -> torch.Tensor:
    """A fresh batch shaped and typed like ``example``, with values in its range."""
    shape = (batch, *example.shape[1:])
    if example.dtype == torch.bool:
        return torch.rand(shape, generator=generator) < 0.5
    if example.dtype.is_floating_point:
        scale = float(example.float().std()) if example.numel() > 1 else 1.0
        mean = float(example.float().mean())
        noise = torch.randn(shape, generator=generator)
        return (mean + (scale or 1.0) * noise).to(example.dtype)
    # Integer inputs are usually ids (embedding rows): stay within the example's.
    low, high = int(example.min()), int(example.max())
    return torch.randint(low, high + 1, shape, generator=generator).to(example.dtype)


def sample_batches(
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    seed: int = 0,
) -> list[Inputs]:
    """Fresh batches like the example, of sizes 1, the example's, and larger.

    Sizes 1 and ``2 * example + 1`` catch exports that froze the batch size (a
    traced Python loop over rows, a reshape with a literal); new random values
    catch frozen data-dependent branches. The example itself is included too.
    """
    inputs = _as_inputs(example_inputs)
    generator = torch.Generator().manual_seed(seed)
    example_batch = int(inputs[0].shape[0])
    samples: list[Inputs] = [inputs]
    for batch in (1, example_batch, 2 * example_batch + 1):
        samples.append(tuple(_like(t, batch, generator) for t in inputs))
    return samples


def export_model(
    model: torch.nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    path: str | Path,
    *,
    format: ExportFormat = "torchscript",
    sample_inputs: Sequence[torch.Tensor | Sequence[torch.Tensor]] | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    seed: int = 0,
) -> ExportedModel:
    """Export, reload from disk, check parity, and refuse a model that disagrees.

    The reload matters: a model is served from its file, not from the object in
    memory, so the file is what gets compared. Parity is checked on
    ``sample_inputs`` when given, else on :func:`sample_batches` (batch sizes 1,
    the example's and a larger one, seeded by ``seed``). On disagreement the
    file is deleted, so it cannot be registered by mistake, and
    :class:`ParityError` is raised with the errors measured.
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, not {format!r}.")
    _require_eval(model)
    path = Path(path)
    if format == "torchscript":
        export_torchscript(model, example_inputs, path)
        loaded: torch.nn.Module = load_torchscript(path)
    else:
        export_program(model, example_inputs, path)
        loaded = load_program(path)
    samples = (
        sample_batches(example_inputs, seed=seed)
        if sample_inputs is None
        else list(sample_inputs)
    )
    report = check_parity(model, loaded, samples, atol=atol, rtol=rtol)
    if not report.passed:
        path.unlink(missing_ok=True)
        raise ParityError(report, path)
    return ExportedModel(path=path, format=format, module=loaded, report=report)
