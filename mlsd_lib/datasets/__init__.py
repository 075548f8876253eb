"""Data sets in the shapes the models consume, and loaders for real public formats.

Introduced in ``casestudies/ad_click/02_data_and_features.ipynb``.

* :mod:`~mlsd_lib.datasets.ctr`: :class:`~mlsd_lib.datasets.ctr.CTRData`, the
  tabular CTR shape, and :func:`~mlsd_lib.datasets.ctr.hash_ids`, the hashing
  trick.
* :mod:`~mlsd_lib.datasets.criteo`: :func:`~mlsd_lib.datasets.criteo.read_criteo`,
  the Criteo display-advertising TSV format, and
  :func:`~mlsd_lib.datasets.criteo.write_criteo_sample`.
* :mod:`~mlsd_lib.datasets.image_sets`:
  :class:`~mlsd_lib.datasets.image_sets.ImageSet`, labelled images (product and
  category per image), the shape every image embedder consumes.
* :mod:`~mlsd_lib.datasets.interactions`:
  :class:`~mlsd_lib.datasets.interactions.Interactions`, the user-item event
  shape every recommender model consumes.
* :mod:`~mlsd_lib.datasets.movielens`:
  :func:`~mlsd_lib.datasets.movielens.read_movielens`, the MovieLens rating
  layouts (``u.data``, ``ratings.dat``, ``ratings.csv``) and movie genres, and
  :func:`~mlsd_lib.datasets.movielens.write_movielens_sample`.
* :mod:`~mlsd_lib.datasets.stanford_online_products`:
  :func:`~mlsd_lib.datasets.stanford_online_products.read_sop`, the Stanford Online
  Products layout (``Ebay_train.txt`` / ``Ebay_test.txt`` and image folders), and
  :func:`~mlsd_lib.datasets.stanford_online_products.write_sop_sample`.
"""

from mlsd_lib.datasets.criteo import (
    CriteoFormatError,
    read_criteo,
    write_criteo_sample,
)
from mlsd_lib.datasets.ctr import CTRData, CTRDataError, hash_ids
from mlsd_lib.datasets.image_sets import ImageSet, ImageSetError
from mlsd_lib.datasets.interactions import Interactions, InteractionsError
from mlsd_lib.datasets.movielens import (
    MovieLensFormatError,
    MovieLensItems,
    MovieLensRatings,
    read_movielens,
    read_movielens_items,
    read_movielens_ratings,
    write_movielens_items_sample,
    write_movielens_sample,
)

__all__ = [
    "CTRData",
    "CTRDataError",
    "CriteoFormatError",
    "ImageSet",
    "ImageSetError",
    "Interactions",
    "InteractionsError",
    "MovieLensFormatError",
    "MovieLensItems",
    "MovieLensRatings",
    "hash_ids",
    "read_criteo",
    "read_movielens",
    "read_movielens_items",
    "read_movielens_ratings",
    "write_criteo_sample",
    "write_movielens_items_sample",
    "write_movielens_sample",
]
