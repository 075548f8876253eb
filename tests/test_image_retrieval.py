"""Recall@K by product, exact top-K and graded NDCG: cases small enough to rank by
hand, a brute-force reference on random vectors, the SOP protocol, and errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsd_lib.evaluation.image_retrieval import (
    ImageRetrievalInputError,
    exact_top_k,
    graded_ndcg_at_k,
    image_match_ranks,
    product_match_ranks,
    product_recall_at_k,
    recall_at_k_by_product,
    recall_from_ranks,
    top_k_products,
)
from mlsd_lib.evaluation.ranking import RankingInputError

# Four gallery images on the unit circle: (1, 0), (.8, .6), (.6, .8), (0, 1).
GALLERY = np.array([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
GALLERY_PRODUCTS = np.array([7, 8, 7, 9])
QUERIES = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8], [1.0, 0.0]])
QUERY_PRODUCTS = np.array([8, 7, 9, 9])


def test_ranks_by_hand() -> None:
    # q0 (1,0) wants 8: scores 1, .8, .6, 0 -> its image is 2nd; products 7, 8.
    # q1 (0,1) wants 7: scores 0, .6, .8, 1 -> 9 then 7: 2nd; products 9, 7.
    # q2 (.6,.8) wants 9: scores .6, .96, 1, .8 -> 7, 8, then 9: 3rd; 3rd.
    # q3 (1,0) wants 9: images 7, 8, 7, then 9: 4th; products 7, 8, 9: 3rd.
    images = image_match_ranks(QUERIES, QUERY_PRODUCTS, GALLERY, GALLERY_PRODUCTS)
    products = product_match_ranks(QUERIES, QUERY_PRODUCTS, GALLERY, GALLERY_PRODUCTS)
    assert images.tolist() == [2, 2, 3, 4] and images.dtype == np.int64
    assert products.tolist() == [2, 2, 3, 3]
    recall = recall_at_k_by_product(
        QUERIES, QUERY_PRODUCTS, GALLERY, GALLERY_PRODUCTS, ks=(1, 2, 3, 4)
    )
    assert recall == {1: 0.0, 2: 0.5, 3: 0.75, 4: 1.0}
    by_product = product_recall_at_k(
        QUERIES, QUERY_PRODUCTS, GALLERY, GALLERY_PRODUCTS, ks=(2, 3)
    )
    assert by_product == {2: 0.5, 3: 1.0}


def test_top_lists_by_hand() -> None:
    scores, rows = exact_top_k(QUERIES[2:3], GALLERY, k=3)
    assert rows.tolist() == [[2, 1, 3]]
    np.testing.assert_allclose(scores, [[1.0, 0.96, 0.8]], atol=1e-6)
    scores, products = top_k_products(QUERIES[2:3], GALLERY, GALLERY_PRODUCTS, k=5)
    assert products.tolist() == [[7, 8, 9, -1, -1]]  # 3 products, then empty
    assert scores[0, 3:].tolist() == [-np.inf, -np.inf]
    _, rows = exact_top_k(QUERIES[:1], GALLERY, k=6)
    assert rows.tolist() == [[0, 1, 2, 3, -1, -1]]


def test_ties_go_to_the_lower_row_and_the_lower_product() -> None:
    twins = np.array([[1.0, 0.0], [1.0, 0.0]])
    query = np.array([[1.0, 0.0]])
    assert image_match_ranks(query, [2], twins, [1, 2]).tolist() == [2]
    assert image_match_ranks(query, [1], twins, [1, 2]).tolist() == [1]
    # Products 5 (row 0) and 3 (row 1) tie: product 3 comes first.
    assert product_match_ranks(query, [5], twins, [5, 3]).tolist() == [2]
    assert image_match_ranks(query, [5], twins, [5, 3]).tolist() == [1]
    assert top_k_products(query, twins, [5, 3], 2)[1].tolist() == [[3, 5]]
    assert exact_top_k(query, twins, 2)[1].tolist() == [[0, 1]]


def _reference_ranks(q, qp, g, gp, exclude=None, collapse=False):
    """Rank by sorting everything: score down, then gallery row (or product) up."""
    ranks = []
    for i in range(len(q)):
        scores = g @ q[i]
        keep = np.ones(len(g), bool) if exclude is None else exclude[1] != exclude[0][i]
        if collapse:
            products = np.unique(gp[keep])
            best = np.array([scores[keep & (gp == p)].max() for p in products])
            order = np.lexsort((products, -best))
            ranks.append(int(np.flatnonzero(products[order] == qp[i])[0]) + 1)
        else:
            rows = np.flatnonzero(keep)
            order = rows[np.lexsort((rows, -scores[rows]))]
            ranks.append(int(np.flatnonzero(gp[order] == qp[i])[0]) + 1)
    return np.array(ranks)


@pytest.mark.parametrize("chunk_size", [None, 1, 7])
def test_ranks_match_a_brute_force_reference(chunk_size) -> None:
    rng = np.random.default_rng(0)
    # Coarse values make exact ties common, so the tie rule is exercised.
    g = rng.integers(-2, 3, (60, 3)).astype(np.float32)
    q = rng.integers(-2, 3, (25, 3)).astype(np.float32)
    gp = rng.integers(0, 8, 60)
    qp = rng.integers(0, 8, 25)
    qp = np.where(np.isin(qp, gp), qp, gp[0])
    image = image_match_ranks(q, qp, g, gp, chunk_size=chunk_size)
    product = product_match_ranks(q, qp, g, gp, chunk_size=chunk_size)
    np.testing.assert_array_equal(image, _reference_ranks(q, qp, g, gp))
    np.testing.assert_array_equal(product, _reference_ranks(q, qp, g, gp, None, True))
    assert (product < image).any()
    # The ranks agree with the top-K lists.
    _, rows = exact_top_k(q, g, 10, chunk_size=chunk_size)
    _, products = top_k_products(q, g, gp, 5, chunk_size=chunk_size)
    for k in (1, 3, 10):
        hit = (gp[rows[:, :k]] == qp[:, None]).any(axis=1)
        np.testing.assert_array_equal(hit, image <= k)
    for k in (1, 5):
        hit = (products[:, :k] == qp[:, None]).any(axis=1)
        np.testing.assert_array_equal(hit, product <= k)


def test_the_sop_protocol_excludes_the_query_itself() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(30, 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    products = np.repeat(np.arange(10), 3)
    image_ids = np.arange(100, 130)
    own = (image_ids, image_ids)
    # Without exclusion every image finds itself first.
    assert recall_at_k_by_product(vectors, products, vectors, products, (1,)) == {
        1: 1.0
    }
    ranks = image_match_ranks(vectors, products, vectors, products, exclude_same_id=own)
    reference = _reference_ranks(vectors, products, vectors, products, own)
    np.testing.assert_array_equal(ranks, reference)
    assert ranks.max() > 1
    _, rows = exact_top_k(vectors, vectors, 29, exclude_same_id=own)
    assert (rows != np.arange(30)[:, None]).all()  # never itself
    assert (rows[:, -1] >= 0).all()  # and every other image is listed
    product = product_match_ranks(
        vectors, products, vectors, products, exclude_same_id=own
    )
    reference = _reference_ranks(vectors, products, vectors, products, own, True)
    np.testing.assert_array_equal(product, reference)
    # Without ties, collapsing images into products never pushes the answer down.
    assert (product <= ranks).all() and (product < ranks).any()


def test_a_query_with_nothing_to_find_is_an_error() -> None:
    vectors = np.eye(3)
    singles = np.array([0, 1, 1])  # product 0 has one image
    own = (np.arange(3), np.arange(3))
    message = (
        r"1 of 3 queries have no image of their product in the gallery \(first: "
        r"query row 0, product 0\).*second image"
    )
    for ranks in (image_match_ranks, product_match_ranks):
        with pytest.raises(ImageRetrievalInputError, match=message):
            ranks(vectors, singles, vectors, singles, exclude_same_id=own)
    with pytest.raises(ImageRetrievalInputError, match=r"query row 1, product 5"):
        product_match_ranks(vectors[:2], [0, 5], vectors, [0, 1, 2])


def test_recall_from_ranks() -> None:
    assert recall_from_ranks([1, 2, 10, 11], ks=(1, 10, 100)) == {
        1: 0.25,
        10: 0.75,
        100: 1.0,
    }
    with pytest.raises(ImageRetrievalInputError, match=r"ranks must be integers >= 1"):
        recall_from_ranks([0, 1])
    with pytest.raises(ImageRetrievalInputError, match=r"each of ks must be a posit"):
        recall_from_ranks([1], ks=(0,))
    with pytest.raises(ImageRetrievalInputError, match=r"ks is empty"):
        recall_from_ranks([1], ks=())


def test_graded_ndcg_by_hand() -> None:
    relevance = np.array([[3.0, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    ranked = np.array([[1, 0, 3], [0, 1, 2]])
    dcg = 2 + 3 / math.log2(3) + 1 / math.log2(4)
    ideal = 3 + 2 / math.log2(3) + 1 / math.log2(4)
    # The second query has no relevant product: left out of the mean.
    assert graded_ndcg_at_k(ranked, relevance, 3) == pytest.approx(dcg / ideal)
    # Product ids other than column numbers; an empty slot earns nothing.
    ids = np.array([40, 10, 30, 20])  # columns name products 40, 10, 30, 20
    lists = np.array([[10, 40, -1], [40, 10, 30]])
    short = 2 + 3 / math.log2(3)
    assert graded_ndcg_at_k(lists, relevance, 3, products=ids) == pytest.approx(
        short / ideal
    )
    perfect = np.array([[0, 1, 3], [0, 1, 2]])
    assert graded_ndcg_at_k(perfect, relevance, 3) == pytest.approx(1.0)
    with pytest.raises(
        ImageRetrievalInputError,
        match=r"ranked product 99 \(list 0, position 1\) has no relevance column",
    ):
        graded_ndcg_at_k(np.array([[0, 99], [0, 1]]), relevance, 2)
    with pytest.raises(RankingInputError, match=r"no user has a positive gain"):
        graded_ndcg_at_k(ranked, np.zeros((2, 4)), 3)
    with pytest.raises(ImageRetrievalInputError, match=r"finite gains >= 0"):
        graded_ndcg_at_k(ranked, -relevance, 3)
    with pytest.raises(ImageRetrievalInputError, match=r"products must not repeat"):
        graded_ndcg_at_k(ranked, relevance, 3, products=[1, 1, 2, 3])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: image_match_ranks(
                QUERIES, QUERY_PRODUCTS, np.ones((4, 3)), [1] * 4
            ),
            r"query vectors have 2 dimensions and gallery vectors 3: embed both",
        ),
        (
            lambda: image_match_ranks(
                QUERIES * np.nan, QUERY_PRODUCTS, GALLERY, GALLERY_PRODUCTS
            ),
            r"query_vectors hold NaN or infinity \(first at row 0\)",
        ),
        (
            lambda: image_match_ranks(QUERIES, [1, 2], GALLERY, GALLERY_PRODUCTS),
            r"query_products must be 4 integers, one per vector",
        ),
        (
            lambda: image_match_ranks(
                QUERIES.astype(int), QUERY_PRODUCTS, GALLERY, GALLERY_PRODUCTS
            ),
            r"query_vectors must be a 2-D float array",
        ),
        (
            lambda: image_match_ranks(
                QUERIES, QUERY_PRODUCTS, GALLERY[:0], GALLERY_PRODUCTS[:0]
            ),
            r"the gallery is empty",
        ),
        (
            lambda: image_match_ranks(
                QUERIES,
                QUERY_PRODUCTS,
                GALLERY,
                GALLERY_PRODUCTS,
                exclude_same_id=np.arange(4),
            ),
            r"exclude_same_id must be a pair \(query image ids, gallery image ids\)",
        ),
        (lambda: exact_top_k(QUERIES, GALLERY, 0), r"k must be a positive integer"),
    ],
)
def test_errors(call, message: str) -> None:
    with pytest.raises(ImageRetrievalInputError, match=message):
        call()
