"""Data sets in the shapes the models consume, and loaders for real public formats.

Introduced in ``casestudies/ad_click/02_data_and_features.ipynb``.

* :mod:`~mlsd_lib.datasets.ctr`: :class:`CTRData`, the tabular CTR shape, and
  :func:`hash_ids`, the hashing trick.
* :mod:`~mlsd_lib.datasets.criteo`: :func:`read_criteo`, the Criteo
  display-advertising TSV format, and :func:`write_criteo_sample`.
* :mod:`~mlsd_lib.datasets.interactions`: :class:`Interactions`, the user-item
  event shape every recommender model consumes.
"""

from mlsd_lib.datasets.criteo import (
    CriteoFormatError,
    read_criteo,
    write_criteo_sample,
)
from mlsd_lib.datasets.ctr import CTRData, CTRDataError, hash_ids
from mlsd_lib.datasets.interactions import Interactions, InteractionsError

__all__ = [
    "CTRData",
    "CTRDataError",
    "CriteoFormatError",
    "Interactions",
    "InteractionsError",
    "hash_ids",
    "read_criteo",
    "write_criteo_sample",
]
