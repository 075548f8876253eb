"""Serving: from a trained torch model to a scored HTTP request.

Introduced in ``notebooks/00_environment.ipynb`` (model servers); the rest of the
path is the subject of ``notebooks/model_serving.ipynb``.

* :mod:`~mlsd_lib.serving.tensors`: a model's signature
  (:class:`~mlsd_lib.serving.tensors.TensorSpec`) and request checks.
* :mod:`~mlsd_lib.serving.model_server`:
  :func:`~mlsd_lib.serving.model_server.start_model_server` picks a real
  Triton over a model repository
  (:mod:`~mlsd_lib.serving.triton_repository_server`), a Triton you run yourself
  (:mod:`~mlsd_lib.serving.remote_triton`, ``TRITON_URL``) or the in-process
  server (:mod:`~mlsd_lib.serving.inprocess`); clients in
  :mod:`~mlsd_lib.serving.triton_client`. :mod:`~mlsd_lib.serving.triton_server`
  binds a Python callable into Triton instead (PyTriton), for comparison.
* :mod:`~mlsd_lib.serving.triton_python_model`: the ``model.py`` Triton's Python
  backend runs for every version; :mod:`~mlsd_lib.serving.artifacts` runs the
  same code in-process; :mod:`~mlsd_lib.serving.triton_cleanup` removes what a
  killed server leaves behind.
* :mod:`~mlsd_lib.serving.export`: TorchScript and ``torch.export`` artifacts,
  refused unless they match the eager model.
* :mod:`~mlsd_lib.serving.registry`: versions, checksums, metadata and stages.
* :mod:`~mlsd_lib.serving.model_repository`: Triton model repositories, for the
  Python backend (what runs here) and for the official container's libtorch
  backend.
* :mod:`~mlsd_lib.serving.gateway`: the HTTP API gateway
  (``python -m mlsd_lib.serving.gateway``).
* :mod:`~mlsd_lib.serving.loadgen`: bounded, loopback-only load generation;
  :mod:`~mlsd_lib.serving.batching`: Triton with and without dynamic batching.
* :mod:`~mlsd_lib.serving.ctr_net`: the small click model the serving chapter
  ships; :mod:`~mlsd_lib.serving.per_thread`: one client per calling thread.
* :mod:`~mlsd_lib.serving.precomputed_scores`: packed per-entity score vectors in Redis,
  one GET per request.
* :mod:`~mlsd_lib.serving.fault_drill`: failure drills (bounded load, a fault at a
  planned moment, outcomes per 100 ms); :mod:`~mlsd_lib.serving.canary_rollback`: the
  canary-vs-stable rollback rule and its guard; :mod:`~mlsd_lib.serving.broken_model`: a
  deliberately broken model for canary drills.
"""

from mlsd_lib.serving.model_server import ModelServer, TensorSpec, start_model_server

__all__ = ["ModelServer", "TensorSpec", "start_model_server"]
