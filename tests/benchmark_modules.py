"""Load a script under ``benchmarks/`` as a module, for the tests that run it.

The benchmarks are scripts, not a package: a test loads one from its file and
calls its ``run`` (the quality tests run the quick setting and assert the bars).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_benchmark(filename: str, name: str | None = None) -> ModuleType:
    """``benchmarks/<filename>`` as a module named ``name`` (default: the
    file's stem), registered in ``sys.modules`` (dataclasses need it)."""
    name = name or Path(filename).stem
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / filename)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def quick_summary(filename: str) -> dict:
    """The summary of a quality benchmark's quick setting, seed 0, no progress."""
    bench = load_benchmark(filename)
    return bench.run(bench.QUICK, seed=0, progress=False)
