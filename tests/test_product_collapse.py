"""Exact re-ranking, collapse of images into products, near-duplicate removal.

Hand-made lists with known answers, plus the vectorized dedup checked against
a plain Python walk of the rule on random lists full of near-duplicates.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.reranking.product_collapse import (
    NO_ID,
    CollapseInputError,
    RankedImages,
    RankedProducts,
    collapse_to_products,
    concat_rows,
    exact_rerank,
    first_products,
    keep_products,
    remove_near_duplicates,
)

D = 16


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def images(image_ids, product_ids, scores=None) -> RankedImages:
    ids = np.atleast_2d(np.asarray(image_ids, dtype=np.int64))
    pids = np.atleast_2d(np.asarray(product_ids, dtype=np.int64))
    if scores is None:
        scores = np.where(ids >= 0, -np.arange(ids.shape[1], dtype=np.float32), -np.inf)
    return RankedImages(ids, pids, np.atleast_2d(np.asarray(scores, np.float32)))


# --- exact re-rank -------------------------------------------------------------


def test_exact_rerank_orders_by_true_inner_product_and_returns_the_permutation():
    rng = np.random.default_rng(0)
    query = unit(rng.standard_normal((1, D)))
    vectors = unit(rng.standard_normal((1, 6, D)))
    vectors[0, 5] = 0.0  # the padding slot's vector is ignored
    hits = images([[10, 11, 12, 13, 14, NO_ID]], [[1, 1, 2, 3, 4, NO_ID]])
    ranked, order = exact_rerank(query, hits, vectors)
    truth = vectors[0, :5] @ query[0]
    expected = np.argsort(-truth)
    np.testing.assert_array_equal(order[0, :5], expected)
    np.testing.assert_array_equal(ranked.image_ids[0, :5], (10 + expected))
    np.testing.assert_allclose(ranked.scores[0, :5], truth[expected], rtol=1e-6)
    assert ranked.image_ids[0, 5] == NO_ID and ranked.scores[0, 5] == -np.inf
    np.testing.assert_array_equal(
        ranked.product_ids[0], np.take(hits.product_ids[0], order[0])
    )


def test_exact_rerank_breaks_ties_by_image_id_and_reads_float16_vectors():
    query = unit(np.ones((1, D)))
    same = unit(np.ones(D))
    vectors = np.stack([same, same, same])[None].astype(np.float16)
    ranked, _ = exact_rerank(query, images([[30, 10, 20]], [[3, 1, 2]]), vectors)
    np.testing.assert_array_equal(ranked.image_ids[0], [10, 20, 30])
    assert ranked.scores.dtype == np.float32


def test_exact_rerank_refuses_vectors_not_aligned_with_the_candidates():
    hits = images([[1, 2, 3]], [[1, 2, 3]])
    with pytest.raises(CollapseInputError, match=r"need \(1, 3, 16\)"):
        exact_rerank(np.ones((1, D), np.float32), hits, np.ones((1, 2, D)))


# --- collapse --------------------------------------------------------------------


def test_collapse_keeps_each_products_best_image_in_order():
    hits = images(
        [
            [100, 101, 102, 103, 104, 105, NO_ID],
            [200, 201, 202, NO_ID, NO_ID, NO_ID, NO_ID],
        ],
        [[7, 3, 7, 9, 3, 5, NO_ID], [4, 4, 4, NO_ID, NO_ID, NO_ID, NO_ID]],
        [[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, -np.inf], [0.5, 0.4, 0.3] + [-np.inf] * 4],
    )
    products = collapse_to_products(hits)
    np.testing.assert_array_equal(products.product_ids, [[7, 3, 9, 5], [4, -1, -1, -1]])
    np.testing.assert_array_equal(
        products.image_ids, [[100, 101, 103, 105], [200, -1, -1, -1]]
    )
    np.testing.assert_array_equal(
        products.image_positions, [[0, 1, 3, 5], [0, -1, -1, -1]]
    )
    np.testing.assert_allclose(products.scores[0], [0.9, 0.8, 0.6, 0.4])
    assert products.scores[1, 1] == -np.inf
    np.testing.assert_array_equal(products.counts(), [4, 1])
    one = products.row(1)
    np.testing.assert_array_equal(one.product_ids, [4])


# --- dedup -------------------------------------------------------------------------


def planted_list() -> tuple[RankedImages, np.ndarray]:
    """Products in rank order: A (2 images), B = copy of A's best, C distinct,
    D = copy of A's *second* image, E distinct."""
    rng = np.random.default_rng(1)
    a1, a2, c, e = unit(rng.standard_normal((4, D)))
    b = unit(a1 + 0.02 * rng.standard_normal(D))
    d = unit(a2 + 0.02 * rng.standard_normal(D))
    vectors = np.stack([a1, b, c, a2, d, e])[None]
    hits = images([[1, 2, 3, 4, 5, 6]], [[10, 20, 30, 10, 40, 50]])
    return hits, vectors


def test_dedup_drops_exactly_the_planted_duplicates_and_says_of_what():
    hits, vectors = planted_list()
    sims = vectors[0] @ vectors[0].T
    products = collapse_to_products(hits)
    kept, decision = remove_near_duplicates(products, hits, vectors, 0.99)
    np.testing.assert_array_equal(products.product_ids[0], [10, 20, 30, 40, 50])
    dropped = {p: (dup, sim) for p, dup, sim in decision.dropped_pairs(0)}
    assert set(dropped) == {20, 40}  # B (copy of A's best), D (of A's 2nd image)
    assert dropped[20][0] == 10 and dropped[20][1] == pytest.approx(sims[1, 0], 1e-5)
    assert dropped[40][0] == 10 and dropped[40][1] == pytest.approx(sims[4, 3], 1e-5)
    np.testing.assert_array_equal(kept.product_ids[0], [10, 30, 50])
    assert decision.n_dropped().tolist() == [2]
    assert decision.similarity[0, 0] == -np.inf  # the first product has no one above
    assert (decision.duplicate_of[decision.kept] == NO_ID).all()


def test_dedup_threshold_is_inclusive_and_a_stricter_one_drops_less():
    hits, vectors = planted_list()
    products = collapse_to_products(hits)
    sims = vectors[0] @ vectors[0].T
    at_b = float(sims[1, 0])
    _, exactly = remove_near_duplicates(products, hits, vectors, at_b)
    assert 20 in exactly.product_ids[exactly.dropped]  # >= threshold drops
    _, above = remove_near_duplicates(products, hits, vectors, min(1.0, at_b + 1e-4))
    assert 20 not in above.product_ids[above.dropped]
    _, none = remove_near_duplicates(products, hits, vectors, 1.0)
    assert not none.dropped.any()


def test_a_dropped_product_cannot_drop_a_later_one():
    # A, B, E on a circle 20 degrees apart: B is A's duplicate at 0.9, E is B's
    # (cos 20 = 0.94) but not A's (cos 40 = 0.77); B is dropped, so E stays.
    angles = np.radians([0.0, 20.0, 40.0])
    vectors = np.zeros((1, 3, D), np.float32)
    vectors[0, :, 0], vectors[0, :, 1] = np.cos(angles), np.sin(angles)
    hits = images([[1, 2, 3]], [[10, 20, 50]])
    products = collapse_to_products(hits)
    kept, decision = remove_near_duplicates(products, hits, vectors, 0.9)
    np.testing.assert_array_equal(kept.product_ids[0], [10, 50])
    assert decision.dropped_pairs(0) == [(20, 10, pytest.approx(np.cos(angles[1])))]


def test_a_product_missing_from_the_list_never_causes_a_drop():
    hits, vectors = planted_list()
    products = collapse_to_products(hits)
    without_a = keep_products(products, products.product_ids != 10)
    kept, _ = remove_near_duplicates(without_a, hits, vectors, 0.99)
    # B and D duplicate A's images only, and A was filtered out: all stay.
    np.testing.assert_array_equal(kept.product_ids[0], [20, 30, 40, 50])


def naive_dedup(products: RankedProducts, hits: RankedImages, vectors, threshold):
    """The rule written as a loop over one row, for comparison."""
    out = []
    for row in range(products.n_queries):
        kept: list[int] = []
        for rank, p in enumerate(products.product_ids[row]):
            if p < 0:
                continue
            best = vectors[row, products.image_positions[row, rank]]
            drop = False
            for j, q in enumerate(hits.product_ids[row]):
                if q in kept and float(best @ vectors[row, j]) >= threshold:
                    drop = True
            if not drop:
                kept.append(int(p))
        out.append(kept)
    return out


def test_vectorized_dedup_matches_the_rule_on_random_lists_with_many_duplicates():
    rng = np.random.default_rng(7)
    n, k = 12, 60
    centres = unit(rng.standard_normal((8, D)))  # few centres: many near pairs
    vectors = unit(
        centres[rng.integers(0, 8, (n, k))] + 0.12 * rng.standard_normal((n, k, D))
    )
    product_ids = rng.integers(0, 25, (n, k))
    image_ids = np.broadcast_to(np.arange(k), (n, k)).copy()
    image_ids[3, 40:] = NO_ID  # a short row
    product_ids[3, 40:] = NO_ID
    queries = unit(rng.standard_normal((n, D)))
    hits, order = exact_rerank(
        queries,
        RankedImages(image_ids, product_ids, np.zeros((n, k), np.float32)),
        vectors,
    )
    vectors = np.take_along_axis(vectors, order[:, :, None], axis=1)
    products = collapse_to_products(hits)
    for threshold in (0.9, 0.97):
        kept, decision = remove_near_duplicates(products, hits, vectors, threshold)
        expected = naive_dedup(products, hits, vectors, threshold)
        got = [kept.row(i).product_ids.tolist() for i in range(n)]
        assert got == expected
        assert decision.dropped.sum() > 0  # the case is not trivial
        # Every drop names a kept product above it, at or over the threshold.
        for i in range(n):
            for p, dup, sim in decision.dropped_pairs(i):
                assert dup in expected[i] and sim >= threshold
                assert expected[i].index(dup) < products.row(
                    i
                ).product_ids.tolist().index(p)


def test_dedup_refuses_a_threshold_that_is_not_a_cosine():
    hits, vectors = planted_list()
    products = collapse_to_products(hits)
    with pytest.raises(CollapseInputError, match=r"outside \[-1, 1\]"):
        remove_near_duplicates(products, hits, vectors, 1.5)


# --- list plumbing -------------------------------------------------------------------


def test_keep_first_and_concat_keep_the_padding_conventions():
    products = collapse_to_products(
        images([[1, 2, 3, 4]], [[5, 6, 7, 8]], [[0.4, 0.3, 0.2, 0.1]])
    )
    kept = keep_products(products, np.array([[True, False, True, False]]))
    np.testing.assert_array_equal(kept.product_ids, [[5, 7]])
    np.testing.assert_array_equal(first_products(products, 3).product_ids, [[5, 6, 7]])
    both = concat_rows([kept, products])
    np.testing.assert_array_equal(both.product_ids, [[5, 7, -1, -1], [5, 6, 7, 8]])
    assert both.scores[0, 2] == -np.inf and both.image_positions[0, 3] == NO_ID
    with pytest.raises(CollapseInputError, match="bool mask of shape"):
        keep_products(products, np.ones((1, 3), dtype=bool))
    with pytest.raises(CollapseInputError, match="positive integer"):
        first_products(products, 0)
