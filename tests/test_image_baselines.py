"""The raw-pixel and colour-histogram baselines: hand-computed vectors, what each
is invariant to (and what not), chunking, and errors."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
import pytest

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.datasets.stanford_online_products import read_sop, write_sop_sample
from mlsd_lib.evaluation.image_retrieval import recall_at_k_by_product
from mlsd_lib.models.image_baselines import (
    BaselineInputError,
    colour_histograms,
    pixel_vectors,
    rgb_to_hsv,
)


def _random_images(n: int = 5, size: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_pixel_vector_by_hand() -> None:
    # 4 x 4 image, white top-left 2 x 2 block: at size 2 each channel is
    # (1, 0, 0, 0); centred on the mean 1/4 and normalized.
    image = np.zeros((1, 4, 4, 3), dtype=np.uint8)
    image[0, :2, :2] = 255
    vector = pixel_vectors(image, size=2)
    channel = np.array([0.75, -0.25, -0.25, -0.25])
    expected = np.tile(channel, 3) / np.linalg.norm(np.tile(channel, 3))
    assert vector.dtype == np.float32 and vector.shape == (1, 12)
    np.testing.assert_allclose(vector[0], expected, atol=1e-6)


def test_pixels_ignore_brightness_and_contrast_but_not_layout() -> None:
    base = _random_images(3, seed=1) // 2  # 0..127: room for x2 and +100
    brighter = base + np.uint8(100)
    stronger = base * np.uint8(2)
    v = pixel_vectors(np.concatenate([base, brighter, stronger]), size=6)
    np.testing.assert_allclose(v[:3], v[3:6], atol=1e-5)
    np.testing.assert_allclose(v[:3], v[6:], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(v.mean(axis=1), 0.0, atol=1e-6)
    shifted = np.roll(base, 3, axis=2)  # the same pixels, moved
    assert (pixel_vectors(shifted, size=6) * v[:3]).sum(axis=1).max() < 0.9
    flat = np.full((1, 12, 12, 3), 77, dtype=np.uint8)
    assert not pixel_vectors(flat, size=4).any()  # correlates with nothing


def test_colour_histogram_by_hand() -> None:
    # Two red pixels, one green, one black; 2 bins a channel: cells r*4 + g*2 + b.
    image = np.array(
        [[[[255, 0, 0], [255, 0, 0]], [[0, 255, 0], [0, 0, 0]]]], dtype=np.uint8
    )
    share = np.zeros(8)
    share[[4, 2, 0]] = [0.5, 0.25, 0.25]
    sqrt = colour_histograms(image, bins=2)
    l2 = colour_histograms(image, bins=2, normalize="l2")
    assert sqrt.dtype == np.float32 and sqrt.shape == (1, 8)
    np.testing.assert_allclose(sqrt[0], np.sqrt(share), atol=1e-7)
    np.testing.assert_allclose(l2[0], share / np.linalg.norm(share), atol=1e-7)
    # Bin edges: 127 is the lower half, 128 the upper.
    edges = np.array([[[[127, 128, 0]]]], dtype=np.uint8)
    assert colour_histograms(edges, bins=2)[0].argmax() == 0 * 4 + 1 * 2 + 0


def test_histograms_ignore_where_colours_are() -> None:
    images = _random_images(4, seed=2)
    rng = np.random.default_rng(0)
    flat = images.reshape(4, -1, 3)
    shuffled = flat[:, rng.permutation(flat.shape[1])].reshape(images.shape)
    for space in ("rgb", "hsv"):
        np.testing.assert_allclose(
            colour_histograms(images, space=space),
            colour_histograms(shuffled, space=space),
        )
    assert not np.allclose(pixel_vectors(images), pixel_vectors(shuffled))


def test_hsv_matches_colorsys_and_separates_hue_from_darkness() -> None:
    pixels = _random_images(1, size=20, seed=3)[0].reshape(-1, 3)
    pixels = np.vstack([pixels, [[0, 0, 0], [255, 255, 255], [90, 90, 90]]])
    expected = np.array([colorsys.rgb_to_hsv(*(p / 255.0)) for p in pixels])
    np.testing.assert_allclose(rgb_to_hsv(pixels.astype(np.uint8)), expected, atol=1e-6)
    red = np.full((1, 4, 4, 3), (250, 20, 20), np.uint8)
    dark_red = np.full((1, 4, 4, 3), (125, 10, 10), np.uint8)
    hsv = colour_histograms(np.concatenate([red, dark_red]), bins=4, space="hsv")
    rgb = colour_histograms(np.concatenate([red, dark_red]), bins=4)
    # Same hue and saturation cell, another value cell; in RGB, unrelated cells.
    assert hsv[0].argmax() // 4 == hsv[1].argmax() // 4
    assert hsv[0].argmax() != hsv[1].argmax() and rgb[0] @ rgb[1] == 0.0


def test_chunks_and_image_sets_give_the_same_vectors() -> None:
    images = _random_images(7, seed=4)
    image_set = ImageSet(images, np.arange(7), np.zeros(7, int), np.arange(7))
    np.testing.assert_array_equal(
        pixel_vectors(image_set, size=4), pixel_vectors(images, size=4, batch_size=2)
    )
    np.testing.assert_array_equal(
        colour_histograms(image_set, space="hsv"),
        colour_histograms(images, space="hsv", batch_size=3),
    )


def test_colour_finds_the_same_product_in_the_sop_sample(tmp_path: Path) -> None:
    """Each sample product has its own shapes and colours, so the sample is a
    retrieval set the baselines can solve: a check of the sample as much as of
    the baselines (the world's user photos are where they fail)."""
    root = write_sop_sample(tmp_path, n_products=16, images_per_product=3, seed=0)
    test = read_sop(root, "test", image_size=32)
    own = (test.image_ids, test.image_ids)
    scores = {}
    for name, vectors in (
        ("colour", colour_histograms(test)),
        ("pixels", pixel_vectors(test, size=8)),
    ):
        scores[name] = recall_at_k_by_product(
            vectors, test.product_ids, vectors, test.product_ids, (1,), own
        )[1]
    assert scores["colour"] == 1.0
    assert scores["pixels"] >= 0.75  # chance: 1 in 7 other products


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pixel_vectors(np.zeros((2, 4, 4, 3))), r"uint8 array of shape"),
        (lambda: pixel_vectors(np.zeros((2, 4, 4), np.uint8)), r"\(n, H, W, 3\)"),
        (lambda: pixel_vectors(_random_images(), size=17), r"size must be .*\(16\)"),
        (lambda: pixel_vectors(_random_images(), batch_size=0), r"batch_size must"),
        (
            lambda: colour_histograms(_random_images(), bins=0),
            r"bins must be .*1 to 64",
        ),
        (
            lambda: colour_histograms(_random_images(), space="lab"),
            r"space must be one of \['rgb', 'hsv'\], got 'lab'",
        ),
        (
            lambda: colour_histograms(_random_images(), normalize="l1"),
            r"normalize must be one of \['sqrt', 'l2'\]",
        ),
    ],
)
def test_errors(call, message: str) -> None:
    with pytest.raises(BaselineInputError, match=message):
        call()
