"""Serving: model servers (real Triton, in-process fallback) and their clients.

Introduced in ``notebooks/00_environment.ipynb``; the full serving path (export,
registry, gateway, load generator) arrives with ``notebooks/model_serving.ipynb``.
"""

from mlsd_lib.serving.model_server import ModelServer, TensorSpec, start_model_server

__all__ = ["ModelServer", "TensorSpec", "start_model_server"]
