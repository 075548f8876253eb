"""The feature store: feature views declared once, served offline and online.

Introduced in ``notebooks/feature_store.ipynb`` and
``notebooks/streaming_features.ipynb``.

* :mod:`~mlsd_lib.features.views`: the declarations (what a feature is).
* :mod:`~mlsd_lib.features.offline`: event tables on disk and point-in-time joins
  (training data without leakage).
* :mod:`~mlsd_lib.features.online`: the Redis online store (materialization with
  an atomic version swap, one-round-trip reads).
* :mod:`~mlsd_lib.features.records`: the byte layout shared by the online store
  and the stream processor.
"""
