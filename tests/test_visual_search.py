"""The visual search pipeline on a planted catalogue of random unit vectors.

400 products of 3 images each (d = 32): each product a random direction, its
images and its queries small perturbations of it, so the right product is
known for every query; products 400-409 are merchants' near-copies of
products 0-9 (the planted duplicates). Builds run on one faiss thread; the
whole file takes a few seconds.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlsd_lib.index import IndexSpec, IndexVersionMismatch, faiss_threads
from mlsd_lib.index.measure import recall_at_k
from mlsd_lib.index.persistence import IndexIntegrityError
from mlsd_lib.visual.availability import FilterOutputError, TableFilter
from mlsd_lib.visual.catalogue_index import (
    CatalogueIndex,
    CatalogueInputError,
    default_catalogue_spec,
)
from mlsd_lib.visual.fallback import CategoryFallback
from mlsd_lib.visual.search import STAGES, SearchInputError, VisualSearcher

D = 32
N_PRODUCTS = 400
PER_PRODUCT = 3
N_DUPLICATES = 10  # products 400..409 copy products 0..9
VERSION = "embedder-v1"
HNSW = IndexSpec("hnsw", hnsw_m=16, ef_search=128)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread() -> Iterator[None]:
    with faiss_threads(1):
        yield


class Planted:
    """The catalogue's arrays and the queries, with their true products."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.centres = unit(rng.standard_normal((N_PRODUCTS, D)))
        products = np.repeat(np.arange(N_PRODUCTS), PER_PRODUCT)
        vectors = unit(
            self.centres[products] + 0.05 * rng.standard_normal((products.size, D))
        )
        # The duplicates: every image of products 0..9 copied, slightly edited.
        copied = np.flatnonzero(products < N_DUPLICATES)
        dup_vectors = unit(
            vectors[copied] + 0.003 * rng.standard_normal((copied.size, D))
        )
        self.vectors = np.concatenate([vectors, dup_vectors])
        self.product_ids = np.concatenate([products, products[copied] + N_PRODUCTS])
        self.image_ids = 10_000 + 7 * np.arange(self.product_ids.size)
        self.category_ids = self.product_ids % 6
        self.query_products = np.arange(20, 120)
        self.queries = unit(
            self.centres[self.query_products]
            + 0.08 * rng.standard_normal((self.query_products.size, D))
        )

    def build(self, spec: IndexSpec | None = HNSW, **kwargs) -> CatalogueIndex:
        return CatalogueIndex.build(
            self.vectors,
            self.image_ids,
            self.product_ids,
            self.category_ids,
            embedder_version=VERSION,
            spec=spec,
            **kwargs,
        )


@pytest.fixture(scope="module")
def planted() -> Planted:
    return Planted()


@pytest.fixture(scope="module")
def catalogue(planted) -> CatalogueIndex:
    return planted.build()


@pytest.fixture(scope="module")
def ivfpq_catalogue(planted) -> CatalogueIndex:
    return planted.build(spec=None)  # the default: IVF-PQ


def searcher(catalogue, threshold=0.99, **kwargs) -> VisualSearcher:
    return VisualSearcher(catalogue, dedup_threshold=threshold, **kwargs)


# --- finding the planted neighbours ---------------------------------------------------


@pytest.mark.parametrize("which", ["catalogue", "ivfpq_catalogue"])
def test_each_query_finds_its_planted_product_first(which, planted, request):
    index = request.getfixturevalue(which)
    batch = searcher(index).search_batch(planted.queries, embedder_version=VERSION)
    np.testing.assert_array_equal(
        batch.products.product_ids[:, 0], planted.query_products
    )
    assert batch.products.product_ids.shape == (planted.queries.shape[0], 20)
    # A page holds distinct products, best first, scored by their best image.
    for page in batch.products.product_ids:
        assert np.unique(page).size == page.size
    assert (np.diff(batch.products.scores, axis=1) <= 1e-6).all()


def test_default_spec_is_ivfpq_and_ann_agrees_with_exact_after_reranking(
    planted, ivfpq_catalogue
):
    assert ivfpq_catalogue.spec.kind == "ivfpq"
    assert default_catalogue_spec(D).pq_bytes == 32
    assert default_catalogue_spec(48).pq_bytes == 24  # the largest divisor <= 32
    batch = searcher(ivfpq_catalogue).search_batch(
        planted.queries, embedder_version=VERSION
    )
    exact = ivfpq_catalogue.exact_search(planted.queries, 10, embedder_version=VERSION)
    # The planted neighbours (the product's 3 images) are found and ranked as
    # exact search ranks them; the rest of the top 10 are unrelated products at
    # cosine 0.4-0.5, some in lists that 16 of 30 probes do not scan (0.954
    # when written).
    reranked = batch.reranked
    assert recall_at_k(reranked.image_ids, exact.image_ids, 3) == 1.0
    np.testing.assert_array_equal(reranked.image_ids[:, :3], exact.image_ids[:, :3])
    np.testing.assert_allclose(
        reranked.scores[:, :3], exact.scores[:, :3], rtol=1e-5, atol=1e-6
    )
    assert recall_at_k(reranked.image_ids, exact.image_ids, 10) >= 0.9
    # What re-ranking adds: the PQ codes' own order is not the exact order.
    assert (batch.ann.image_ids[:, :3] != exact.image_ids[:, :3]).any()


def test_search_is_search_batch_on_one_row(planted, catalogue):
    search = searcher(catalogue)
    batch = search.search_batch(planted.queries[:5], embedder_version=VERSION)
    for i in range(5):
        one = search.search(planted.queries[i], embedder_version=VERSION)
        np.testing.assert_array_equal(one.product_ids, batch.result(i).product_ids)
        np.testing.assert_array_equal(one.scores, batch.result(i).scores)


def test_a_small_chunk_size_changes_nothing(planted, catalogue):
    whole = searcher(catalogue).search_batch(planted.queries, embedder_version=VERSION)
    chunked = searcher(catalogue, chunk_size=7).search_batch(
        planted.queries, embedder_version=VERSION
    )
    for name, lists in whole.stage_products().items():
        np.testing.assert_array_equal(chunked.stage_products()[name], lists)


# --- the embedder version -------------------------------------------------------------


def test_a_query_from_another_embedder_is_refused_naming_both_versions(
    planted, catalogue
):
    search = searcher(catalogue)
    message = r"built with embedder 'embedder-v1'.*from embedder 'embedder-v2'"
    with pytest.raises(IndexVersionMismatch, match=message):
        search.search(planted.queries[0], embedder_version="embedder-v2")
    with pytest.raises(IndexVersionMismatch, match=message):
        search.search_batch(planted.queries, embedder_version="embedder-v2")
    with pytest.raises(IndexVersionMismatch, match=message):
        catalogue.exact_search(planted.queries, 5, embedder_version="embedder-v2")
    assert catalogue.ann.model_version == VERSION  # what save_index records


# --- dedup ----------------------------------------------------------------------------


def test_dedup_drops_exactly_the_planted_duplicates(planted, catalogue):
    # A query at each copied product: the original and its copy both come back.
    queries = unit(planted.centres[:N_DUPLICATES])
    batch = searcher(catalogue, 0.99).search_batch(queries, embedder_version=VERSION)
    for i in range(N_DUPLICATES):
        result = batch.result(i)
        listed = set(result.collapsed.product_ids.tolist())
        # Every planted pair that the collapsed list holds, and nothing else.
        pairs = [
            {p, p + N_PRODUCTS}
            for p in range(N_DUPLICATES)
            if {p, p + N_PRODUCTS} <= listed
        ]
        assert {i, i + N_PRODUCTS} in pairs
        dropped = result.dropped_as_duplicates()
        assert sorted(map(sorted, ({p, d} for p, d, _ in dropped))) == sorted(
            map(sorted, pairs)
        )
        assert all(similarity >= 0.99 for _, _, similarity in dropped)
        assert len({i, i + N_PRODUCTS} & set(result.product_ids.tolist())) == 1
    without = searcher(catalogue, None).search_batch(queries, embedder_version=VERSION)
    assert without.dedup is None
    for i in range(N_DUPLICATES):
        assert {i, i + N_PRODUCTS} <= set(without.products.product_ids[i].tolist())


def test_dedup_leaves_distinct_products_alone(planted, catalogue):
    batch = searcher(catalogue, 0.99).search_batch(
        planted.queries, embedder_version=VERSION
    )
    # Queries at products 20..119: no planted copies among their results' tops.
    assert batch.dedup is not None
    dropped = batch.dedup.product_ids[batch.dedup.dropped]
    assert set(dropped.tolist()) <= set(range(N_DUPLICATES)) | set(
        range(N_PRODUCTS, N_PRODUCTS + N_DUPLICATES)
    )


# --- filters --------------------------------------------------------------------------


def in_stock_filter() -> TableFilter:
    products = np.arange(N_PRODUCTS + N_DUPLICATES)
    return TableFilter(products, products % 2 == 0)


def test_filters_remove_unavailable_products_and_the_over_fetch_fills_the_page(
    planted, catalogue
):
    filters = {"in_stock": in_stock_filter()}
    batch = searcher(catalogue).search_batch(
        planted.queries, embedder_version=VERSION, filters=filters
    )
    page = batch.products.product_ids
    assert page.shape[1] == 20 and (page >= 0).all()  # every page is full
    assert (page % 2 == 0).all()  # only products in stock
    odd = planted.query_products % 2 == 1
    assert not (page[odd] == planted.query_products[odd, None]).any()
    assert (page[~odd, 0] == planted.query_products[~odd]).all()
    report = batch.filter_report()
    assert 0.4 <= report.overall <= 0.6  # half the catalogue is out of stock
    assert report.candidates_needed(20) > 20  # hence the over-fetch
    assert (batch.filter_input.counts() > 20).all()
    # Without over-fetching (20 images for 20 products) the pages come out short.
    short = searcher(catalogue).search_batch(
        planted.queries, embedder_version=VERSION, filters=filters, k_images=20
    )
    assert (short.products.counts() < 20).all()
    one = batch.result(0).filter_report
    assert one.passed["in_stock"] == one.n_kept <= one.n_candidates


def test_filtering_first_keeps_a_duplicate_whose_original_is_out_of_stock(
    planted, catalogue
):
    # The query is product 0's own image: product 0 ranks first, its copy 400
    # second; 0 is out of stock, 400 in stock.
    query = planted.vectors[planted.product_ids == 0][0]
    filters = {
        "in_stock": TableFilter([0, N_PRODUCTS], np.array([False, True]), default=True)
    }
    dedup_first = searcher(catalogue).search(
        query, embedder_version=VERSION, filters=filters
    )
    assert dedup_first.order == ("dedup", "filters")
    assert (
        0 not in dedup_first.product_ids and N_PRODUCTS not in dedup_first.product_ids
    )
    filter_first = searcher(catalogue, filters_first=True).search(
        query, embedder_version=VERSION, filters=filters
    )
    assert filter_first.product_ids[0] == N_PRODUCTS
    assert list(filter_first.order) == ["filters", "dedup"]
    stages = (
        searcher(catalogue, filters_first=True)
        .search_batch(query[None], embedder_version=VERSION, filters=filters)
        .stage_products()
    )
    assert list(stages) == ["index", "collapse", "filters", "dedup", "page"]


def test_a_filter_that_answers_the_wrong_shape_is_refused(planted, catalogue):
    with pytest.raises(FilterOutputError, match="'broken' answered"):
        searcher(catalogue).search(
            planted.queries[0],
            embedder_version=VERSION,
            filters={"broken": lambda ids: np.ones(3, dtype=bool)},
        )


# --- what a result keeps --------------------------------------------------------------


def test_results_keep_every_stage_and_its_time(planted, catalogue):
    batch = searcher(catalogue).search_batch(
        planted.queries,
        embedder_version=VERSION,
        filters={"in_stock": in_stock_filter()},
    )
    assert list(batch.timings_ms) == [*STAGES, "total"]
    assert all(ms >= 0 for ms in batch.timings_ms.values())
    assert batch.timings_ms["total"] >= sum(batch.timings_ms[s] for s in STAGES)
    assert batch.timings_ms["ann"] > 0 and batch.timings_ms["rerank"] > 0
    stages = batch.stage_products()
    assert list(stages) == ["index", "collapse", "dedup", "filters", "page"]
    n = planted.queries.shape[0]
    assert stages["index"].shape == (n, 200) and stages["page"].shape == (n, 20)
    # Each list is a subset of the one before it.
    names = list(stages)
    for before, after in itertools.pairwise(names):
        for row in range(n):
            kept = stages[after][row][stages[after][row] >= 0]
            assert np.isin(kept, stages[before][row]).all()
    one = searcher(catalogue).search(planted.queries[0], embedder_version=VERSION)
    assert set(one.timings_ms) == {*STAGES, "total"} and one.timings_ms["total"] > 0
    assert one.ann.image_ids.shape == (200,)  # 1-D, padding dropped


# --- the catalogue --------------------------------------------------------------------


@pytest.mark.parametrize("spec", [HNSW, None], ids=["hnsw", "ivfpq"])
def test_new_images_are_searchable_without_a_rebuild(spec, planted):
    catalogue = planted.build(spec=spec)
    rng = np.random.default_rng(5)
    centres = unit(rng.standard_normal((5, D)))
    new_products = np.repeat(np.arange(900, 905), 2)
    vectors = unit(centres[new_products - 900] + 0.05 * rng.standard_normal((10, D)))
    before = catalogue.n_images
    catalogue.add_images(
        vectors, np.arange(50_000, 50_010), new_products, np.full(10, 99)
    )
    assert catalogue.n_images == before + 10
    result = searcher(catalogue).search_batch(
        unit(centres + 0.05 * rng.standard_normal((5, D))), embedder_version=VERSION
    )
    np.testing.assert_array_equal(
        result.products.product_ids[:, 0], np.arange(900, 905)
    )
    np.testing.assert_array_equal(result.products.image_ids[:, 0] >= 50_000, True)
    np.testing.assert_array_equal(catalogue.category_of([900, 0]), [99, 0])
    # A known product needs no category; a new one does; ids stay distinct.
    catalogue.add_images(vectors[:1], [60_000], [900])
    with pytest.raises(CatalogueInputError, match="products \\[906\\] are new"):
        catalogue.add_images(vectors[:1], [60_001], [906])
    with pytest.raises(CatalogueInputError, match="already in the catalogue"):
        catalogue.add_images(vectors[:1], [60_000], [900])
    with pytest.raises(CatalogueInputError, match="already have categories \\[99\\]"):
        catalogue.add_images(vectors[:1], [60_002], [900], [3])


def test_save_and_load_give_the_same_answers_and_refuse_a_changed_file(
    planted, catalogue, tmp_path: Path
):
    catalogue.save(tmp_path / "cat")
    loaded = CatalogueIndex.load(tmp_path / "cat")
    assert loaded.embedder_version == VERSION and loaded.n_images == catalogue.n_images
    a = searcher(catalogue).search_batch(planted.queries, embedder_version=VERSION)
    b = searcher(loaded).search_batch(planted.queries, embedder_version=VERSION)
    np.testing.assert_array_equal(a.products.product_ids, b.products.product_ids)
    path = tmp_path / "cat" / "catalogue.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match="changed after it was saved"):
        CatalogueIndex.load(tmp_path / "cat")


def test_float16_storage_gives_the_same_pages(planted):
    full = planted.build()
    half = planted.build(vector_dtype="float16")
    assert half.vectors.dtype == np.float16
    a = searcher(full).search_batch(planted.queries, embedder_version=VERSION)
    b = searcher(half).search_batch(planted.queries, embedder_version=VERSION)
    np.testing.assert_array_equal(
        a.products.product_ids[:, :5], b.products.product_ids[:, :5]
    )
    np.testing.assert_allclose(a.products.scores, b.products.scores, atol=2e-3)


def test_inputs_are_checked_with_messages_that_say_what_to_do(planted, catalogue):
    with pytest.raises(CatalogueInputError, match="not unit length"):
        CatalogueIndex.build(
            planted.vectors * 2,
            planted.image_ids,
            planted.product_ids,
            planted.category_ids,
            embedder_version=VERSION,
        )
    with pytest.raises(CatalogueInputError, match="pass the version of the embedder"):
        CatalogueIndex.build(
            planted.vectors,
            planted.image_ids,
            planted.product_ids,
            planted.category_ids,
            embedder_version="",
        )
    with pytest.raises(SearchInputError, match="not unit length"):
        searcher(catalogue).search(planted.queries[0] * 3, embedder_version=VERSION)
    with pytest.raises(SearchInputError, match="dtype float64"):
        searcher(catalogue).search(
            planted.queries[0].astype(np.float64), embedder_version=VERSION
        )
    with pytest.raises(SearchInputError, match="dedup_threshold=2"):
        VisualSearcher(catalogue, dedup_threshold=2)


def test_k_images_is_capped_at_the_catalogue_size(planted):
    small = CatalogueIndex.build(
        planted.vectors[:30],
        planted.image_ids[:30],
        planted.product_ids[:30],
        planted.category_ids[:30],
        embedder_version=VERSION,
        spec=IndexSpec("flat"),
    )
    batch = searcher(small).search_batch(
        planted.queries[:2], embedder_version=VERSION, k_images=500
    )
    assert batch.ann.image_ids.shape == (2, 30)
    assert batch.products.counts().tolist() == [10, 10]  # 30 images, 10 products


# --- the degraded answer --------------------------------------------------------------


def test_the_fallback_answers_popular_available_products_of_the_category(catalogue):
    products = catalogue.products
    fallback = CategoryFallback.from_catalogue(
        catalogue, products, -products.astype(float)
    )
    filters = {"in_stock": in_stock_filter()}
    page = fallback.answer(2, reason="index unavailable", filters=filters)
    assert (
        page.degraded and page.category_id == 2 and page.reason == "index unavailable"
    )
    assert (catalogue.category_of(page.product_ids) == 2).all()
    assert (page.product_ids % 2 == 0).all() and page.product_ids.size == 20
    np.testing.assert_array_equal(page.product_ids, np.sort(page.product_ids))
    assert page.product_ids[0] == 2  # the most popular of category 2 in stock
    unknown = fallback.answer(77, reason="index unavailable", n_products=5)
    assert unknown.category_id is None and "category 77 unknown" in unknown.reason
    np.testing.assert_array_equal(unknown.product_ids, np.arange(5))
