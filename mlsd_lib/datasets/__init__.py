"""Data sets in the shapes the models consume, and loaders for real public formats.

* :mod:`~mlsd_lib.datasets.ctr`: :class:`CTRData`, the tabular CTR shape, and
  :func:`hash_ids`, the hashing trick.
"""

from mlsd_lib.datasets.ctr import CTRData, CTRDataError, hash_ids

__all__ = ["CTRData", "CTRDataError", "hash_ids"]
