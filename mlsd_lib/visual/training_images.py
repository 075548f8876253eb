"""What the embedder may learn from: the training products' images, never a test one.

Introduced in ``casestudies/visual_search/05_evaluation.ipynb`` (step 3: "train on P
products x K images per batch"; step 5: recall "on products never seen in training").
The exam of :mod:`~mlsd_lib.visual.offline_report` photographs the image world's *test*
products; this module builds the training side of that split in one place, so no
notebook or benchmark can leak a test product into training by accident:

* the catalogue images of :attr:`~mlsd_lib.worlds.images.ImageWorld.train_products`
  (studio shots, a few poses each);
* optionally ``photos_per_product`` user-style photos of each training product,
  cropped to their boxes (the shop's own logs of matched photos: real systems
  have them, and they teach the gap between a studio shot and a phone photo
  better than augmentation alone), drawn with seeds of their own so they never
  coincide with an exam's photos;
* every label mapped to the item's **canonical** id: a merchant's duplicate
  listing shows the same item, and training it as a different product would
  teach the embedder to push two identical images apart.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.images import ImageWorld

__all__ = ["TRAINING_PHOTO_SEED", "TrainingImagesError", "training_images"]

#: Photos of training products use seeds ``TRAINING_PHOTO_SEED + i``; exams use
#: small seeds (below it), so the two never draw the same photo.
TRAINING_PHOTO_SEED = 5000


class TrainingImagesError(MlsdError, ValueError):
    """A training set that cannot be built as asked; the message says why."""


def training_images(
    world: ImageWorld, photos_per_product: int = 0, *, crop_margin: float = 0.15
) -> ImageSet:
    """The catalogue images of the world's training products, plus
    ``photos_per_product`` cropped user photos of each, labelled by item.

    Introduced in ``casestudies/visual_search/index.md``. Product ids are
    canonical (:meth:`~mlsd_lib.worlds.images.ImageWorld.canonical`); image ids
    stay unique (photo ``i`` of round ``r`` has the world's query id for seed
    ``TRAINING_PHOTO_SEED + r``).
    """
    if (
        isinstance(photos_per_product, bool)
        or not isinstance(photos_per_product, int | np.integer)
        or not 0 <= photos_per_product <= 100
    ):
        raise TrainingImagesError(
            f"photos_per_product must be an integer in [0, 100], got "
            f"{photos_per_product!r}."
        )
    train = world.train_products
    parts = [world.catalogue().of_products(train)]
    for round_ in range(int(photos_per_product)):
        photos = world.queries(train, seed=TRAINING_PHOTO_SEED + round_)
        parts.append(photos.crops(margin=crop_margin))
    images = ImageSet.concat(parts)
    return dataclasses.replace(images, product_ids=world.canonical(images.product_ids))
