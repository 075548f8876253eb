"""The one shape every image model in the book consumes: labelled images.

Introduced in ``casestudies/visual_search/index.md``. A metric-learning embedder
needs images and, for each, the identity it must be close to (its product) and,
for the evaluation and the degraded answer, a coarse class (its category). The
synthetic image world (:mod:`mlsd_lib.worlds.images`) and the Stanford Online
Products loader (:mod:`mlsd_lib.datasets.stanford_online_products`) both produce
an :class:`ImageSet`, so the training and evaluation recipes run unchanged on
either, as the CTR models do on :class:`~mlsd_lib.datasets.ctr.CTRData`.

Images are ``uint8`` arrays of shape ``(N, H, W, 3)`` (height, width, RGB), the
layout every decoder returns and the cheapest to hold: 64 × 64 × 3 bytes is 12 KB
an image, so 10,000 images are 123 MB. :meth:`ImageSet.to_tensor` makes the
``float32`` ``(N, 3, H, W)`` batch in ``[0, 1]`` a torch model takes, on demand
and in slices, so a whole catalogue never exists in float32 at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mlsd_lib.errors import MlsdError

__all__ = ["ImageSet", "ImageSetError"]


class ImageSetError(MlsdError, ValueError):
    """The arrays do not form a valid image set; the message says which."""


@dataclass(frozen=True)
class ImageSet:
    """Images with their product identity, category and a stable image id.

    ``images`` is ``uint8`` ``(N, H, W, 3)``; ``product_ids``, ``category_ids`` and
    ``image_ids`` are ``int64`` ``(N,)`` parallel arrays. ``image_ids`` are unique
    within a set (they are the ids an index returns). Two images with the same
    ``product_ids`` show the same product: the positive pairs of metric learning.
    """

    images: np.ndarray
    product_ids: np.ndarray
    category_ids: np.ndarray
    image_ids: np.ndarray

    def __post_init__(self) -> None:
        images = self.images
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            raise ImageSetError(
                f"images must be a uint8 numpy array, got "
                f"{getattr(images, 'dtype', type(images).__name__)}: decode to "
                "uint8 (N, H, W, 3) first"
            )
        if images.ndim != 4 or images.shape[3] != 3:
            raise ImageSetError(
                f"images must have shape (N, H, W, 3), got {images.shape}: "
                "stack RGB images along a first axis"
            )
        n = images.shape[0]
        for name in ("product_ids", "category_ids", "image_ids"):
            value = getattr(self, name)
            if not isinstance(value, np.ndarray) or value.shape != (n,):
                raise ImageSetError(
                    f"{name} must be a numpy array of shape ({n},), one per image, "
                    f"got {getattr(value, 'shape', type(value).__name__)}"
                )
            if not np.issubdtype(value.dtype, np.integer):
                raise ImageSetError(f"{name} must hold integers, got {value.dtype}")
            object.__setattr__(self, name, value.astype(np.int64, copy=False))
        if np.unique(self.image_ids).size != n:
            raise ImageSetError(
                "image_ids must be unique within an image set: an index returns "
                "them, so two images with one id cannot be told apart"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int]:
        """``(height, width)`` of every image in the set."""
        return int(self.images.shape[1]), int(self.images.shape[2])

    @property
    def n_products(self) -> int:
        """How many distinct products the set shows."""
        return int(np.unique(self.product_ids).size)

    def subset(self, rows: np.ndarray) -> ImageSet:
        """The images at ``rows`` (a boolean mask or integer positions), in order."""
        rows = np.asarray(rows)
        if rows.dtype == bool and rows.shape != (len(self),):
            raise ImageSetError(
                f"a boolean mask must have shape ({len(self)},), got {rows.shape}"
            )
        return ImageSet(
            images=self.images[rows],
            product_ids=self.product_ids[rows],
            category_ids=self.category_ids[rows],
            image_ids=self.image_ids[rows],
        )

    def of_products(self, products: np.ndarray) -> ImageSet:
        """The images of the given products (a train/test split by identity)."""
        return self.subset(np.isin(self.product_ids, np.asarray(products)))

    def to_tensor(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Images ``start:stop`` as ``float32`` ``(n, 3, H, W)`` in ``[0, 1]``."""
        chunk = self.images[start:stop]
        return torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div_(255.0)

    @staticmethod
    def concat(sets: list[ImageSet]) -> ImageSet:
        """One set holding every image of ``sets`` (image ids must stay unique)."""
        if not sets:
            raise ImageSetError("concat needs at least one image set")
        return ImageSet(
            images=np.concatenate([s.images for s in sets]),
            product_ids=np.concatenate([s.product_ids for s in sets]),
            category_ids=np.concatenate([s.category_ids for s in sets]),
            image_ids=np.concatenate([s.image_ids for s in sets]),
        )
