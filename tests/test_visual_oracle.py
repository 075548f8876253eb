"""The oracle ranks by the true similarity; the duplicate ceiling is exact."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.visual import oracle
from mlsd_lib.visual.oracle import (
    OracleInputError,
    duplicate_ceiling,
    oracle_top_k,
    relevance_matrix,
)
from mlsd_lib.visual.retrieval_quality import list_quality
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig


def _toy_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 for the same id, 0.5 for ids of one parity, else 0."""
    return np.where(a == b, 1.0, np.where((a - b) % 2 == 0, 0.5, 0.0))


@pytest.fixture(scope="module")
def world() -> ImageWorld:
    """2 categories x 3 families x 5 products, with a few duplicates."""
    return ImageWorld(
        ImageWorldConfig.quick(
            n_categories=2,
            families_per_category=3,
            products_per_family=5,
            duplicate_rate=0.2,
            lookalike_rate=0.1,
        )
    )


def test_relevance_matrix_has_one_sorted_column_per_distinct_gallery_product():
    relevance, products = relevance_matrix(_toy_similarity, [3, 4], [7, 3, 3, 4, 7])
    assert products.tolist() == [3, 4, 7]
    assert relevance.tolist() == [[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]


def test_relevance_matrix_in_chunks_equals_one_call(monkeypatch):
    queries, gallery = np.arange(9), np.arange(20)
    whole, _ = relevance_matrix(_toy_similarity, queries, gallery)
    monkeypatch.setattr(oracle, "CHUNK_PAIRS", 40)  # two queries a call
    chunked, _ = relevance_matrix(_toy_similarity, queries, gallery)
    np.testing.assert_array_equal(whole, chunked)


def test_relevance_matrix_rejects_a_similarity_that_does_not_broadcast():
    with pytest.raises(OracleInputError, match="must broadcast its arguments"):
        relevance_matrix(lambda a, b: np.ones(3), [1, 2], [1, 2, 3])
    with pytest.raises(OracleInputError, match="graded gains must be >= 0"):
        relevance_matrix(lambda a, b: a - b + 0.0, [0], [1, 2])
    with pytest.raises(OracleInputError, match="gallery_products is empty"):
        relevance_matrix(_toy_similarity, [1], np.array([], dtype=np.int64))
    with pytest.raises(OracleInputError, match="1-D array of integer product ids"):
        relevance_matrix(_toy_similarity, [1.5], [1])


def test_oracle_sorts_products_by_gain_and_breaks_ties_by_lower_id():
    gains, ids = oracle_top_k([[0.2, 1.0, 0.5, 1.0]], [7, 9, 5, 3], k=3)
    assert ids.tolist() == [[3, 9, 5]]  # 3 and 9 tie at 1: the lower id first
    assert gains.tolist() == [[1.0, 1.0, 0.5]]


def test_oracle_pads_a_short_gallery_with_empty_slots():
    gains, ids = oracle_top_k([[0.1, 0.9]], [4, 2], k=4)
    assert ids.tolist() == [[2, 4, -1, -1]]
    assert gains.tolist() == [[0.9, 0.1, 0.0, 0.0]]


@pytest.mark.parametrize(
    ("relevance", "products", "k", "message"),
    [
        ([[1.0, 0.5]], [1, 2, 3], 2, "one column per product"),
        ([[1.0, 0.5]], [1, 1], 2, "must not repeat"),
        ([[1.0, 0.5]], [1, 2], 0, "k must be a positive integer"),
    ],
)
def test_oracle_errors_name_the_problem(relevance, products, k, message):
    with pytest.raises(OracleInputError, match=message):
        oracle_top_k(relevance, products, k)


def test_duplicate_ceiling_is_one_over_the_listings_of_the_item():
    # item 1 is listed twice (listings 1 and 2, two images each), item 3 once
    ceiling = duplicate_ceiling(
        query_canonical=[1, 3],
        gallery_products=[1, 1, 2, 2, 3],
        gallery_canonical=[1, 1, 1, 1, 3],
        ks=(1, 2),
    )
    assert ceiling == {1: pytest.approx(0.75), 2: 1.0}


def test_duplicate_ceiling_errors():
    with pytest.raises(OracleInputError, match="no listing in the gallery"):
        duplicate_ceiling([5], [1], [1])
    with pytest.raises(OracleInputError, match="must be parallel"):
        duplicate_ceiling([1], [1, 2], [1])
    with pytest.raises(OracleInputError, match="positive integer"):
        duplicate_ceiling([1], [1], [1], ks=(0,))
    assert issubclass(OracleInputError, MlsdError)


def test_the_oracle_on_the_world_reaches_recall_and_ndcg_of_one(world):
    """By construction: it ranks the photographed item (and its duplicates) first
    and everything else by the very gains NDCG uses."""
    gallery = world.catalogue(world.test_products)
    queries = world.test_products
    relevance, products = relevance_matrix(
        world.similarity, queries, gallery.product_ids
    )
    _, lists = oracle_top_k(relevance, products, k=10)
    row = list_quality(
        lists,
        queries,
        canonical=world.canonical,
        relevance=relevance,
        relevance_products=products,
        ks=(1, 10),
        ndcg_k=10,
    )
    assert row == {"recall@1": 1.0, "recall@10": 1.0, "NDCG@10": pytest.approx(1.0)}
    # the list is the gains sorted: non-increasing similarity down each row
    gains = world.similarity(queries[:, None], np.maximum(lists, 0))
    assert (np.diff(gains, axis=1) <= 1e-12).all()


def test_raw_listing_ids_cap_recall_at_the_duplicate_ceiling(world):
    """The oracle knows the listing, so by raw ids it misses only where ties put
    the original first; a pixel model cannot beat the ceiling, which is below 1
    exactly when the held-out split holds duplicate listings."""
    gallery = world.catalogue(world.test_products)
    queries = world.test_products
    items = world.canonical(queries)
    ceiling = duplicate_ceiling(
        items, gallery.product_ids, world.canonical(gallery.product_ids), ks=(1, 2)
    )
    has_twin = np.isin(items, world.duplicate_pairs()[:, 0]) | (items != queries)
    assert has_twin.any()  # the fixture has duplicates among held-out products
    assert ceiling[1] == pytest.approx(1.0 - 0.5 * has_twin.mean())
    assert ceiling[2] == 1.0
