"""The photo gap sweep: the same products photographed along the dial."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.models.image_baselines import colour_histograms
from mlsd_lib.visual.photo_gap import PhotoGapError, gap_styles, recall_along_gap
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig, QueryStyle


@pytest.fixture(scope="module")
def world() -> ImageWorld:
    """2 categories x 3 families x 6 products, with duplicates."""
    return ImageWorld(
        ImageWorldConfig.quick(
            n_categories=2,
            families_per_category=3,
            products_per_family=6,
            duplicate_rate=0.15,
        )
    )


@pytest.fixture(scope="module")
def gallery(world: ImageWorld) -> ImageSet:
    return world.catalogue(world.test_products)


def test_gap_styles_run_from_clean_to_phone_by_default():
    styles = gap_styles([0.0, 0.5, 1.0])
    assert styles[0] == QueryStyle.clean()
    assert styles[-1] == QueryStyle.phone()
    assert styles[1].clutter == pytest.approx(0.5)
    shift = gap_styles([1.0], start=QueryStyle.phone(), end=QueryStyle.camera_shift())
    assert shift[0] == QueryStyle.camera_shift()
    with pytest.raises(PhotoGapError, match="ts is empty"):
        gap_styles([])


def test_an_embedder_that_reads_the_item_finds_it_at_every_point(world, gallery):
    """Labels as vectors (one-hot of the canonical item): recall@1 is 1 along the
    whole gap, which holds only if photos, crops and gallery keep their ids and
    duplicates are mapped to one item on both sides."""

    def item_one_hot(images: ImageSet) -> np.ndarray:
        return np.eye(world.n_products, dtype=np.float32)[
            world.canonical(images.product_ids)
        ]

    table = recall_along_gap(
        world, world.test_products, gallery, {"labels": item_one_hot}, [0.0, 1.0]
    )
    assert table.columns.tolist() == ["t", "embedder", "view", "recall@1", "recall@10"]
    assert table[["t", "view"]].values.tolist() == [
        [0.0, "photo"],
        [0.0, "crop"],
        [1.0, "photo"],
        [1.0, "crop"],
    ]
    assert (table["recall@1"] == 1.0).all()


def test_colour_histograms_lose_recall_as_photos_leave_the_studio(world, gallery):
    """On catalogue-like photos colour finds most items; in cluttered rooms, with
    other objects, under another light it finds far fewer (whole photos, the
    same products and seed at both ends)."""
    table, again = (
        recall_along_gap(
            world,
            world.test_products,
            gallery,
            {"histogram": colour_histograms},
            [0.0, 1.0],
            views=("photo",),
            seed=3,
        )
        for _ in range(2)
    )
    clean, phone = table["recall@1"].tolist()
    assert clean >= 0.8
    assert phone <= clean - 0.3
    assert again.equals(table)


def test_recall_along_gap_errors(world, gallery):
    with pytest.raises(PhotoGapError, match="embedders is empty"):
        recall_along_gap(world, world.test_products, gallery, {}, [0.0])
    with pytest.raises(PhotoGapError, match="views must be a non-empty subset"):
        recall_along_gap(
            world,
            world.test_products,
            gallery,
            {"histogram": colour_histograms},
            [0.0],
            views=("thumbnail",),
        )
    assert issubclass(PhotoGapError, MlsdError)
