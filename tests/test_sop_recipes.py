"""The training and evaluation recipes run on a Stanford Online Products sample
unchanged: the loader's output goes into train_embedder and the chapter-05 metric
exactly as the image world's does, at any photo size the loader is given."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.datasets.stanford_online_products import read_sop, write_sop_sample
from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.image_retrieval import recall_at_k_by_product
from mlsd_lib.models.embedder_protocol import (
    ProtocolError,
    train_and_evaluate,
)
from mlsd_lib.models.embedder_training import EmbedderTrainingConfig, train_embedder
from mlsd_lib.models.image_embedder import ImageEmbedder, embed_images

# Chapter 05's embedder recipe (05_evaluation.ipynb's parameters), few steps.
NOTEBOOK_CONFIG = EmbedderTrainingConfig(
    loss="multi_similarity", widths=(16, 32, 64, 128), steps=200, p=16, k=4, seed=0
)
FEW_STEPS = dataclasses.replace(NOTEBOOK_CONFIG, steps=6, p=8, num_threads=1)
KS = (1, 4, 10)


@pytest.fixture(scope="module")
def sop_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 products x 4 photos (96-160 px, rarely square): 10 train, 10 test."""
    return write_sop_sample(
        tmp_path_factory.mktemp("sop"), n_products=20, images_per_product=4, seed=3
    )


def test_the_loader_squares_every_photo_to_the_embedders_size(sop_root: Path) -> None:
    from PIL import Image

    first = (sop_root / "Ebay_test.txt").read_text().splitlines()[1].split()[3]
    with Image.open(sop_root / first) as photo:
        assert photo.size != (64, 64) and min(photo.size) >= 96  # as written
    for size in (48, 64, 96):
        test = read_sop(sop_root, "test", image_size=size)
        assert test.images.shape == (40, size, size, 3)
        assert test.images.dtype == np.uint8


def test_chapter_recipe_trains_and_evaluates_on_sop_unchanged(sop_root: Path) -> None:
    train, test = read_sop(sop_root, "train"), read_sop(sop_root, "test")
    assert (len(train), len(test)) == (40, 40)
    # The two calls a chapter makes, as it makes them on the image world.
    fit = train_embedder(train, FEW_STEPS, progress=False)
    assert fit.losses.shape == (FEW_STEPS.steps,) and np.isfinite(fit.losses).all()
    assert sorted(fit.products.tolist()) == list(range(1, 11))  # train products only
    vectors = embed_images(fit.model, test)
    assert vectors.shape == (40, FEW_STEPS.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    recall = recall_at_k_by_product(
        vectors,
        test.product_ids,
        vectors,
        test.product_ids,
        ks=KS,
        exclude_same_id=(test.image_ids, test.image_ids),
    )
    # The glue is those two calls and nothing else: same seed, same figures.
    result = train_and_evaluate(train, test, FEW_STEPS, ks=KS)
    assert result.recall == recall
    np.testing.assert_array_equal(result.vectors, vectors)
    # Recall is over SOP's test products, every test image a query once.
    assert result.n_queries == 40 and result.n_test_products == 10
    assert set(np.unique(test.product_ids)) == set(range(11, 21))
    assert list(result.recall) == list(KS)
    values = [result.recall[k] for k in KS]
    assert values == sorted(values) and all(0 <= v <= 1 for v in values)
    # The gallery is the 39 other test images, 3 of them positives: whatever the
    # model, the first positive ranks 37th at worst (36 negatives ahead).
    assert recall_at_k_by_product(
        vectors,
        test.product_ids,
        vectors,
        test.product_ids,
        ks=(37,),
        exclude_same_id=(test.image_ids, test.image_ids),
    ) == {37: 1.0}


@pytest.mark.parametrize("size", [48, 96])
def test_non_64_pixel_photos_run_through_the_same_recipe(
    sop_root: Path, size: int
) -> None:
    train = read_sop(sop_root, "train", image_size=size)
    test = read_sop(sop_root, "test", image_size=size)
    result = train_and_evaluate(train, test, dataclasses.replace(FEW_STEPS, steps=3))
    assert result.image_size == (size, size)
    assert result.vectors.shape == (40, FEW_STEPS.dim)
    assert set(result.recall) == {1, 10, 100} and result.recall[100] == 1.0


def _margin(vectors: np.ndarray, products: np.ndarray) -> float:
    """Mean cosine of same-product pairs minus that of different-product pairs."""
    cosine = vectors @ vectors.T
    same = products[:, None] == products[None, :]
    np.fill_diagonal(same, False)
    other = products[:, None] != products[None, :]
    return float(cosine[same].mean() - cosine[other].mean())


def test_training_on_sop_products_separates_unseen_sop_products(
    sop_root: Path,
) -> None:
    train, test = read_sop(sop_root, "train"), read_sop(sop_root, "test")
    config = dataclasses.replace(FEW_STEPS, steps=40)
    trained = train_and_evaluate(train, test, config, ks=(1,))
    untrained = ImageEmbedder(dim=config.dim, widths=config.widths, seed=config.seed)
    before = _margin(embed_images(untrained, test), test.product_ids)
    after = _margin(trained.vectors, test.product_ids)
    assert after > before + 0.1, (before, after)


def _pair(sop_root: Path) -> tuple[ImageSet, ImageSet]:
    return read_sop(sop_root, "train", image_size=32), read_sop(
        sop_root, "test", image_size=32
    )


def test_a_product_in_both_sets_is_refused(sop_root: Path) -> None:
    train, test = _pair(sop_root)
    seen = test.of_products([11])
    leaky = ImageSet.concat(
        [
            train,
            ImageSet(seen.images, seen.product_ids, seen.category_ids, -seen.image_ids),
        ]
    )
    with pytest.raises(ProtocolError, match=r"1 products are in both train and test"):
        train_and_evaluate(leaky, test, FEW_STEPS)


def test_a_test_product_with_one_image_is_refused(sop_root: Path) -> None:
    train, test = _pair(sop_root)
    lonely = test.subset(np.r_[0, np.arange(4, 40)])  # product 11: one photo left
    assert (lonely.product_ids == 11).sum() == 1
    with pytest.raises(
        ProtocolError, match=r"1 of 10 test products have one image \(first: 11\)"
    ):
        train_and_evaluate(train, lonely, FEW_STEPS)


def test_sets_of_two_sizes_are_refused(sop_root: Path) -> None:
    train = read_sop(sop_root, "train", image_size=32)
    test = read_sop(sop_root, "test", image_size=48)
    with pytest.raises(ProtocolError, match=r"read both splits with one image_size"):
        train_and_evaluate(train, test, FEW_STEPS)
    with pytest.raises(MlsdError, match="non-empty ImageSet"):
        train_and_evaluate(None, test, FEW_STEPS)  # type: ignore[arg-type]
