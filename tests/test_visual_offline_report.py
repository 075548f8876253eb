"""The offline evaluation of visual search: a tiny image world, made-up vectors."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.dedup import DedupThresholdError
from mlsd_lib.index.spec import IndexSpec
from mlsd_lib.models.image_baselines import colour_histograms, pixel_vectors
from mlsd_lib.visual.offline_report import (
    ExamVectors,
    OfflineReportError,
    build_catalogue,
    dedup_study,
    embed_exam,
    evaluate_pipeline,
    held_out_queries,
    index_sweep,
    offline_report,
    product_pair_similarity,
    vector_quality,
)
from mlsd_lib.visual.training_images import (
    TRAINING_PHOTO_SEED,
    TrainingImagesError,
    training_images,
)
from mlsd_lib.worlds.images import ImageWorld
from mlsd_lib.worlds.images_config import ImageWorldConfig

FLAT = IndexSpec("flat")


@pytest.fixture(scope="module")
def world() -> ImageWorld:
    """40 listings (17 test) of 32 x 32 pixels, many duplicates and look-alikes."""
    return ImageWorld(
        ImageWorldConfig(
            n_categories=2,
            families_per_category=2,
            products_per_family=6,
            duplicate_rate=0.3,
            lookalike_rate=0.3,
            image_size=32,
            catalogue_views=2,
            seed=3,
        )
    )


@pytest.fixture(scope="module")
def exam(world):
    return held_out_queries(world, seed=1)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def item_vectors(exam, noise: float, seed: int = 0) -> ExamVectors:
    """One random direction per item, plus noise: an embedder that knows items."""
    rng = np.random.default_rng(seed)
    item_of: dict[int, np.ndarray] = {}

    def direction(products: np.ndarray) -> np.ndarray:
        out = []
        for p in exam.canonical(products):
            if p not in item_of:
                item_of[p] = np.random.default_rng(int(p) + 1000).normal(size=16)
            out.append(item_of[p])
        return np.array(out)

    def noisy(products: np.ndarray) -> np.ndarray:
        base = direction(products)
        return unit(base + noise * rng.normal(size=base.shape))

    return ExamVectors(
        gallery=noisy(exam.gallery.product_ids),
        photo=noisy(exam.query_products),
        crop=noisy(exam.query_products),
    )


# -- training images ----------------------------------------------------------------


def test_training_images_hold_training_items_only_labelled_by_item(world):
    plain = training_images(world)
    more = training_images(world, photos_per_product=2)
    test_items = set(world.canonical(world.test_products).tolist())
    for images in (plain, more):
        assert not set(images.product_ids.tolist()) & test_items
        assert np.array_equal(images.product_ids, world.canonical(images.product_ids))
        assert np.unique(images.image_ids).size == len(images)
    n_train = world.train_products.size
    assert len(plain) == n_train * world.config.catalogue_views
    assert len(more) == len(plain) + 2 * n_train
    photo_ids = more.image_ids[len(plain) :]
    exam_ids = world.queries(world.train_products, seed=1).images.image_ids
    assert not set(photo_ids.tolist()) & set(exam_ids.tolist())
    assert TRAINING_PHOTO_SEED > 1000
    with pytest.raises(TrainingImagesError, match=r"photos_per_product must be"):
        training_images(world, photos_per_product=-1)


# -- the exam -----------------------------------------------------------------------


def test_the_exam_photographs_test_products_against_their_catalogue(world, exam):
    test = set(world.test_products.tolist())
    assert set(exam.gallery.product_ids.tolist()) == test
    assert set(exam.query_products.tolist()) == test
    assert np.array_equal(exam.crops.product_ids, exam.photos.product_ids)
    assert exam.crops.images.shape == exam.photos.images.shape
    assert not np.array_equal(exam.crops.images, exam.photos.images)
    assert exam.relevance.shape == (len(exam.photos), len(test))
    assert np.array_equal(exam.relevance_products, np.unique(exam.gallery.product_ids))
    twice = held_out_queries(world, seed=1, photos_per_product=2)
    assert len(twice.photos) == 2 * len(exam.photos)
    with pytest.raises(OfflineReportError, match="photos_per_product must be"):
        held_out_queries(world, photos_per_product=0)
    with pytest.raises(OfflineReportError, match="query kind must be one of"):
        exam.queries("thumbnail")


def test_embed_exam_refuses_vectors_that_are_not_unit(exam):
    with pytest.raises(OfflineReportError, match="not unit length"):
        embed_exam(lambda images: np.ones((len(images), 4), np.float32), exam)
    with pytest.raises(OfflineReportError, match="one \\(d,\\) vector per image"):
        embed_exam(lambda images: unit(np.ones((3, 4))), exam)
    vectors = embed_exam(pixel_vectors, exam)
    assert vectors.gallery.shape[0] == len(exam.gallery)
    assert vectors.crop.shape == vectors.photo.shape


def test_an_embedder_that_knows_items_is_perfect_and_noise_costs_recall(exam):
    perfect = vector_quality(item_vectors(exam, noise=0.0), exam, ks=(1, 10))
    noisy = vector_quality(item_vectors(exam, noise=3.0), exam, ks=(1, 10))
    for kind in ("photo", "crop"):
        assert perfect[kind]["recall@1"] == 1.0
        assert perfect[kind]["NDCG@20"] < 1.0  # the rest of the list is random
        assert noisy[kind]["recall@1"] < 0.9
        assert noisy[kind]["recall@10"] >= noisy[kind]["recall@1"]


# -- the pipeline -------------------------------------------------------------------


def test_exact_index_without_dedup_blames_only_the_embedder(exam):
    vectors = item_vectors(exam, noise=2.5)
    result = evaluate_pipeline(vectors, exam, dedup_threshold=None, spec=FLAT)
    counts = result.attribution.counts
    assert result.ann_recall_at_10 == 1.0 and result.index_recall_at_10 == 1.0
    assert counts["index"] == 0 and counts["dedup"] == 0
    assert counts["hit"] + counts["embedder"] == len(exam.photos)
    truth = exam.canonical(exam.query_products)
    exact_items = np.where(
        result.exact_products >= 0,
        exam.canonical(np.maximum(result.exact_products, 0)),
        -1,
    )
    in_exact = (exact_items == truth[:, None]).any(axis=1)
    assert counts["hit"] == int(in_exact.sum())
    shares = result.grouped_shares()
    assert sum(shares.values()) == pytest.approx(1.0)
    assert result.page_recall == shares["hit"]


def test_a_dedup_threshold_below_every_pair_drops_right_answers(exam):
    vectors = item_vectors(exam, noise=2.0)  # the right item often second
    result = evaluate_pipeline(vectors, exam, dedup_threshold=-1.0, spec=FLAT)
    counts = result.attribution.counts
    # every product after the first duplicates the first: one product a page
    assert (result.batch.products.product_ids >= 0).sum(axis=1).max() == 1
    assert counts["dedup"] > 0
    assert result.grouped_shares()["rerank"] > 0


def test_a_coarse_index_loses_products_and_the_sweep_shows_the_price(exam):
    vectors = item_vectors(exam, noise=1.0)
    spec = IndexSpec("ivf", nlist=8, nprobe=1)
    result = evaluate_pipeline(
        vectors, exam, dedup_threshold=None, spec=spec, k_images=5
    )
    assert result.index_recall_at_10 < 1.0
    catalogue = build_catalogue(vectors, exam, spec)
    table = index_sweep(catalogue, vectors.photo, [1, 2, 8], k=3, candidates=5, timed=5)
    assert list(table["nprobe"]) == [1, 2, 8]
    recall = table["recall_at_3"].to_numpy()
    assert np.all(np.diff(recall) >= 0) and recall[-1] == 1.0  # every list scanned
    assert (table["index_recall_at_3"] <= table["recall_at_3"] + 1e-9).all()
    assert (table["p50_ms"] > 0).all()
    assert catalogue.spec.nprobe == 1  # restored
    flat = build_catalogue(vectors, exam, FLAT)
    with pytest.raises(OfflineReportError, match="no search-time parameter"):
        index_sweep(flat, vectors.photo, [1])


# -- dedup --------------------------------------------------------------------------


def test_pair_similarity_is_the_best_match_between_two_products_images():
    vectors = unit([[1, 0], [0, 1], [1, 1], [-1, 0]])
    owners = np.array([7, 7, 8, 9])
    scores = product_pair_similarity(
        vectors, owners, np.array([[7, 8], [8, 9], [9, 7]])
    )
    np.testing.assert_allclose(scores, [np.sqrt(0.5), -np.sqrt(0.5), 0.0], atol=1e-6)
    with pytest.raises(OfflineReportError, match="product 5 has no image"):
        product_pair_similarity(vectors, owners, np.array([[7, 5]]))
    with pytest.raises(OfflineReportError, match=r"shape \(n, 2\)"):
        product_pair_similarity(vectors, owners, np.array([7, 8]))


def test_dedup_study_chooses_on_one_half_and_measures_on_the_other():
    # product 2i and 2i + 1 of the first 10 are duplicates (nearly one vector),
    # the next 10 look-alikes (close); 4 images a product
    rng = np.random.default_rng(0)
    base = rng.normal(size=(20, 8))
    partner = np.repeat(base[::2], 2, axis=0)
    gap = np.r_[np.full(10, 0.02), np.full(10, 0.6)][:, None]
    centres = partner + gap * rng.normal(size=(20, 8))
    vectors = unit(np.repeat(centres, 4, axis=0) + 0.01 * rng.normal(size=(80, 8)))
    owners = np.repeat(np.arange(20), 4)
    duplicates = np.array([[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]])
    distinct = duplicates + 10
    study = dedup_study(vectors, owners, duplicates, distinct, seed=1)
    assert study.chosen_on.sum() == 6  # 3 of 5 of each kind
    assert study.chosen_on[:5].sum() == 3 and study.chosen_on[5:].sum() == 3
    assert study.chosen.precision == 1.0 and study.held_out.precision == 1.0
    assert study.held_out.recall == 1.0 and study.held_out.n_pairs == 4
    assert study.scores[:5].min() >= study.threshold > study.scores[5:].max()
    again = dedup_study(vectors, owners, duplicates, distinct, seed=1)
    assert np.array_equal(again.chosen_on, study.chosen_on)
    with pytest.raises(OfflineReportError, match="at least 2 duplicate and 2"):
        dedup_study(vectors, owners, duplicates[:1], distinct)
    swapped = dedup_study(vectors, owners, distinct, duplicates, target_precision=0.5)
    assert swapped.held_out.precision < 0.99
    with pytest.raises(DedupThresholdError, match="no threshold reaches precision"):
        dedup_study(vectors, owners, distinct, duplicates, target_precision=0.99)


# -- the whole report ---------------------------------------------------------------


def test_offline_report_measures_every_model_on_one_exam(world, exam):
    models = {"pixels": pixel_vectors, "histogram": colour_histograms}
    report = offline_report(
        world,
        models,
        served="histogram",
        exam=exam,
        spec=IndexSpec("ivf", nlist=4, nprobe=2),
        sweep_values=(1, 4),
        timed=3,
    )
    assert list(report.quality.index) == [
        ("pixels", "photo"),
        ("pixels", "crop"),
        ("histogram", "photo"),
        ("histogram", "crop"),
    ]
    assert list(report.quality.columns) == [
        "recall@1",
        "recall@10",
        "recall@100",
        "NDCG@20",
    ]
    summary = report.summary()
    for key in (
        "pixels_recall_at_1",
        "histogram_crop_recall_at_10",
        "histogram_ndcg_at_20",
        "ann_recall_at_10",
        "dedup_precision",
        "dedup_threshold",
        "attribution",
        "sweep",
    ):
        assert key in summary, key
    assert summary["histogram_recall_at_1"] == pytest.approx(
        report.recall("histogram", 1), abs=1e-4
    )
    assert len(summary["sweep"]) == 2
    assert report.pipeline.batch.n_queries == len(exam.photos)
    assert report.dedup.chosen.precision >= 0.99
    with pytest.raises(OfflineReportError, match="served='learned' is not one of"):
        offline_report(world, models, served="learned", exam=exam)
    assert issubclass(OfflineReportError, MlsdError)
