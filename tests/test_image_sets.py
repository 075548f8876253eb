"""ImageSet: the labelled-image shape the embedder, world and SOP loader share."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.datasets import ImageSet, ImageSetError
from mlsd_lib.errors import MlsdError


def make(n: int = 6, size: int = 8) -> ImageSet:
    rng = np.random.default_rng(0)
    return ImageSet(
        images=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        product_ids=np.arange(n) // 2,
        category_ids=np.arange(n) // 4,
        image_ids=np.arange(100, 100 + n),
    )


def test_subset_and_split_by_product_keep_rows_aligned():
    images = make()
    test = images.of_products(np.array([1, 2]))
    assert test.image_ids.tolist() == [102, 103, 104, 105]
    assert np.array_equal(test.images, images.images[2:])
    assert test.n_products == 2 and len(test) == 4 and test.image_size == (8, 8)
    both = ImageSet.concat([images.subset(np.arange(2)), test])
    assert both.image_ids.tolist() == [100, 101, 102, 103, 104, 105]


def test_to_tensor_is_channels_first_in_unit_range():
    images = make()
    x = images.to_tensor(1, 3)
    assert x.shape == (2, 3, 8, 8) and x.dtype.is_floating_point
    assert float(x[0, 2, 4, 5]) == pytest.approx(images.images[1, 4, 5, 2] / 255.0)


def test_bad_arrays_are_refused_with_the_reason():
    good = make()
    with pytest.raises(ImageSetError, match="uint8"):
        ImageSet(good.images.astype(np.float32), *_labels(good))
    with pytest.raises(ImageSetError, match=r"\(N, H, W, 3\)"):
        ImageSet(good.images[..., :1], *_labels(good))
    with pytest.raises(ImageSetError, match=r"product_ids must be .* shape \(6,\)"):
        ImageSet(good.images, good.product_ids[:3], good.category_ids, good.image_ids)
    with pytest.raises(ImageSetError, match="unique"):
        ImageSet(good.images, good.product_ids, good.category_ids, np.zeros(6, int))
    with pytest.raises(MlsdError, match="at least one"):
        ImageSet.concat([])


def _labels(s: ImageSet) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return s.product_ids, s.category_ids, s.image_ids
