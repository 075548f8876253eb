"""The reader's "is my setup working" report.

Used by ``notebooks/00_environment.ipynb``.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata

#: The distributions whose versions matter for reproducing the book's numbers.
REPORTED_PACKAGES = (
    "mlsd-lib",
    "torch",
    "numpy",
    "pandas",
    "redis",
    "hiredis",
    "fakeredis",
    "tritonclient",
    "nvidia-pytriton",
    "matplotlib",
)


def package_versions(names: tuple[str, ...] = REPORTED_PACKAGES) -> dict[str, str]:
    """Installed version of each distribution, or ``'not installed'``.

    Local build tags are dropped (``2.13.0+cpu`` reads ``2.13.0``): the CPU wheel
    and the PyPI wheel are the same release, and the report should say so.
    """
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name).split("+")[0]
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def python_summary() -> str:
    """``CPython 3.11 on Linux x86_64``: the parts of the interpreter that matter."""
    major, minor = sys.version_info[:2]
    implementation = platform.python_implementation()
    return (
        f"{implementation} {major}.{minor} on {platform.system()} {platform.machine()}"
    )


def format_versions(versions: dict[str, str]) -> str:
    """A two-column table, one package a line."""
    width = max(map(len, versions))
    return "\n".join(
        f"{name:<{width}}  {version}" for name, version in versions.items()
    )
