"""Recall@K by item and graded NDCG, for vectors and for ranked lists."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.visual.retrieval_quality import (
    RetrievalQualityError,
    list_quality,
    list_ranks,
    retrieval_quality,
)

#: Gallery: listing 10 (two images), its duplicate 11, and product 20.
GALLERY = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.6], [0.0, 1.0]])
GALLERY_PRODUCTS = np.array([10, 10, 11, 20])
CANONICAL = {10: 10, 11: 10, 20: 20}


def canonical(ids: np.ndarray) -> np.ndarray:
    return np.vectorize(CANONICAL.__getitem__, otypes=[np.int64])(ids)


def unit(rows: list[list[float]]) -> np.ndarray:
    v = np.asarray(rows, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_list_ranks_finds_the_first_position_or_one_past_the_end():
    lists = np.array([[5, 7, 9], [7, 7, -1], [1, 2, 3]])
    assert list_ranks(lists, np.array([9, 7, 4])).tolist() == [3, 1, 4]


def test_list_ranks_errors():
    with pytest.raises(RetrievalQualityError, match="2-D int array"):
        list_ranks(np.array([1, 2]), np.array([1]))
    with pytest.raises(RetrievalQualityError, match="one id per list"):
        list_ranks(np.array([[1, 2]]), np.array([1, 2]))
    assert issubclass(RetrievalQualityError, MlsdError)


def test_a_duplicate_listing_counts_as_the_item_only_with_canonical_ids():
    # a photo of listing 11 that looks most like listing 10's first image
    query = unit([[1.0, 0.05]])
    raw = retrieval_quality(query, [11], unit(GALLERY), GALLERY_PRODUCTS, ks=(1, 3))
    items = retrieval_quality(
        query, [11], unit(GALLERY), GALLERY_PRODUCTS, canonical=canonical, ks=(1, 3)
    )
    assert raw == {"recall@1": 0.0, "recall@3": 1.0}  # 11's image is third
    assert items == {"recall@1": 1.0, "recall@3": 1.0}


def test_product_level_recall_collapses_a_products_images():
    # a photo of 20 that ranks listing 10's two images above 20's only image
    query = unit([[0.75, 0.66]])
    image = retrieval_quality(
        query, [20], unit(GALLERY), GALLERY_PRODUCTS, ks=(1, 2, 3)
    )
    product = retrieval_quality(
        query, [20], unit(GALLERY), GALLERY_PRODUCTS, ks=(1, 2, 3), level="product"
    )
    assert image == {"recall@1": 0.0, "recall@2": 0.0, "recall@3": 0.0}
    assert product == {"recall@1": 0.0, "recall@2": 0.0, "recall@3": 1.0}
    with pytest.raises(RetrievalQualityError, match="level must be one of"):
        retrieval_quality(query, [20], GALLERY, GALLERY_PRODUCTS, level="pixel")


def test_graded_ndcg_is_one_when_the_list_follows_the_gains_and_less_otherwise():
    products = np.array([10, 11, 20])
    relevance = np.array([[1.0, 1.0, 0.3]])  # for a photo of item 10
    good, bad = (
        retrieval_quality(
            unit([query]),
            [10],
            unit(GALLERY),
            GALLERY_PRODUCTS,
            relevance=relevance,
            relevance_products=products,
            ks=(1,),
            ndcg_k=3,
        )
        for query in ([1.0, 0.1], [0.0, 1.0])
    )
    assert good == {"recall@1": 1.0, "NDCG@3": pytest.approx(1.0)}
    # 20 (gain 0.3) first, then 11 and 10: DCG = 0.3 + 1/log2(3) + 1/2
    ideal = 1.0 + 1.0 / np.log2(3) + 0.3 / 2
    assert bad["recall@1"] == 0.0
    assert bad["NDCG@3"] == pytest.approx((0.3 + 1 / np.log2(3) + 0.5) / ideal)


def test_list_quality_maps_listings_to_items_and_keeps_empty_slots_empty():
    lists = np.array([[11, 20, -1], [20, -1, -1]])
    row = list_quality(lists, [10, 10], canonical=canonical, ks=(1, 3))
    assert row == {"recall@1": 0.5, "recall@3": 0.5}


def test_list_quality_refuses_lists_shallower_than_asked():
    with pytest.raises(RetrievalQualityError, match="needs 10: rank deeper"):
        list_quality(np.array([[1, 2]]), [1], ks=(1, 10))
    with pytest.raises(RetrievalQualityError, match="2-D int array"):
        list_quality(np.array([[1.0]]), [1], ks=(1,))
