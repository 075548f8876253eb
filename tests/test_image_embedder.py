"""The image embedder, its augmentations, batches, losses, training and export."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch
from pytorch_metric_learning import losses as pml_losses
from pytorch_metric_learning import miners as pml_miners

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.models.embedder_training import (
    EmbedderTrainingConfig,
    learning_rate_factor,
    train_embedder,
)
from mlsd_lib.models.image_augment import (
    Augmentation,
    AugmentationError,
    augment,
    foreground_mask,
)
from mlsd_lib.models.image_embedder import (
    EmbedderInputError,
    ImageEmbedder,
    embed_images,
)
from mlsd_lib.models.metric_losses import LOSSES, UnknownLoss, metric_loss
from mlsd_lib.models.multi_similarity import multi_similarity_loss
from mlsd_lib.models.pk_sampler import PKSampler, SamplerError
from mlsd_lib.serving.export import export_model

SMALL = (8, 16, 16, 32)  # narrow blocks: the fast tests' embedder


def tiny_images(n_products: int = 8, views: int = 3, size: int = 32, seed: int = 0):
    """Products as coloured squares on a light backdrop, a few shifted views each."""
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0, 200, (n_products, 3))
    images = np.full((n_products * views, size, size, 3), 235.0)
    for i in range(n_products * views):
        x0, y0 = rng.integers(4, 10, 2)
        side = size // 2 + int(rng.integers(-2, 3))
        images[i, y0 : y0 + side, x0 : x0 + side] = colours[i // views]
    return ImageSet(
        images=images.astype(np.uint8),
        product_ids=np.repeat(np.arange(n_products), views) + 100,
        category_ids=np.repeat(np.arange(n_products) % 2, views),
        image_ids=np.arange(n_products * views) + 1000,
    )


# -- the embedder -----------------------------------------------------------------


def test_embedder_outputs_unit_vectors_of_its_dimension():
    model = ImageEmbedder(dim=24, widths=SMALL).eval()
    out = model(torch.rand(5, 3, 48, 40))
    assert out.shape == (5, 24) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(5), atol=1e-5)


def test_embedder_weights_are_fixed_by_the_seed_and_leave_torch_alone():
    x = torch.rand(4, 3, 32, 32)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = ImageEmbedder(dim=16, widths=SMALL, seed=3).eval()
    assert torch.equal(torch.rand(1), before)  # the global generator untouched
    b = ImageEmbedder(dim=16, widths=SMALL, seed=3).eval()
    c = ImageEmbedder(dim=16, widths=SMALL, seed=4).eval()
    assert torch.equal(a(x), b(x))
    assert not torch.allclose(a(x), c(x))


def test_embedder_refuses_a_shape_it_cannot_build():
    with pytest.raises(EmbedderInputError, match="dim and every width must be >= 1"):
        ImageEmbedder(dim=0)


def test_embed_images_matches_the_model_in_any_chunking_and_keeps_its_mode():
    images = tiny_images()
    model = ImageEmbedder(dim=16, widths=SMALL).train()
    whole = embed_images(model, images, batch_size=len(images))
    chunked = embed_images(model, images, batch_size=5)
    assert model.training  # put back as it was
    assert whole.dtype == np.float32 and whole.shape == (len(images), 16)
    np.testing.assert_allclose(chunked, whole, atol=1e-5)
    with torch.no_grad():
        direct = model.eval()(images.to_tensor()).numpy()
    np.testing.assert_allclose(whole, direct, atol=1e-5)
    empty = embed_images(model, images.subset(np.zeros(len(images), dtype=bool)))
    assert empty.shape == (0, 16)


def test_embed_images_says_what_it_needs():
    model = ImageEmbedder(dim=8, widths=SMALL)
    with pytest.raises(EmbedderInputError, match="takes an ImageSet"):
        embed_images(model, np.zeros((2, 32, 32, 3), np.uint8))  # type: ignore[arg-type]
    small = tiny_images(size=32)
    tiny = dataclasses.replace(small, images=small.images[:, :8, :8])
    with pytest.raises(EmbedderInputError, match="too small for 4 blocks"):
        embed_images(model, tiny)


# -- augmentations ----------------------------------------------------------------


def test_augment_keeps_shape_and_range_and_is_fixed_by_the_generator():
    x = tiny_images().to_tensor()
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    c = augment(x, torch.Generator().manual_seed(2))
    assert a.shape == x.shape and float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert (a - x).abs().mean() > 0.05  # the views really differ from the shots


def test_no_augmentation_returns_the_images_and_strength_zero_is_none():
    x = tiny_images().to_tensor()
    assert torch.equal(augment(x, torch.Generator(), Augmentation.none()), x)
    assert Augmentation().scaled(0.0) == Augmentation.none()
    stronger = Augmentation().scaled(2.0)
    assert stronger.rotation == 2 * Augmentation().rotation
    assert stronger.background == 1.0  # probabilities capped


def test_foreground_mask_finds_the_product_on_a_plain_backdrop_only():
    x = torch.full((2, 3, 32, 32), 0.92)
    x[:, :, 8:24, 10:26] = torch.tensor([0.2, 0.5, 0.7]).view(3, 1, 1)
    x[1] = torch.rand(3, 32, 32)  # a photo: no plain border
    mask, backdrop = foreground_mask(x)
    assert torch.allclose(backdrop[0], torch.full((3,), 0.92))
    inside = mask[0, 0, 8:24, 10:26]
    assert float(inside.min()) == 1.0
    assert float(mask[0, 0].sum()) == pytest.approx(16 * 16, abs=1)
    assert float(mask[1].min()) == 1.0  # a non-plain image is kept whole


def test_augmentation_settings_are_checked():
    with pytest.raises(AugmentationError, match="background is a probability"):
        Augmentation(background=1.5)
    with pytest.raises(AugmentationError, match=r"blur must be a \(low, high\) pair"):
        Augmentation(blur=(1.0, 0.5))
    with pytest.raises(AugmentationError, match="strength must be in"):
        Augmentation().scaled(3.0)
    with pytest.raises(AugmentationError, match=r"takes a float batch \(n, 3, H, W\)"):
        augment(torch.rand(3, 32, 32), torch.Generator())


# -- P x K batches ----------------------------------------------------------------


def test_pk_batches_hold_p_distinct_products_with_k_images_each():
    counts = np.array([1, 2, 5, 4, 3, 6, 2, 7])
    product_ids = np.repeat(np.arange(8) * 10, counts)
    rng = np.random.default_rng(0)
    product_ids = product_ids[rng.permutation(product_ids.size)]
    sampler = PKSampler(product_ids, p=3, k=4, seed=1)
    for _ in range(20):
        rows = sampler.next_batch()
        assert rows.shape == (12,) and rows.dtype == np.int64
        groups = product_ids[rows].reshape(3, 4)
        assert (groups == groups[:, :1]).all()  # k consecutive rows, one product
        assert np.unique(groups[:, 0]).size == 3  # p distinct products
        for group_rows, product in zip(rows.reshape(3, 4), groups[:, 0], strict=True):
            has = int((product_ids == product).sum())
            if has >= 4:  # enough images: no repeats
                assert np.unique(group_rows).size == 4
            else:  # fewer: every image, then repeats
                assert set(group_rows) == set(np.flatnonzero(product_ids == product))


def test_pk_epoch_draws_every_product_and_a_seed_repeats_it():
    product_ids = np.repeat(np.arange(10), 3)
    a = PKSampler(product_ids, p=4, k=2, seed=5)
    epoch = [a.next_batch() for _ in range(a.batches_per_epoch)]
    assert a.batches_per_epoch == 3
    assert set(product_ids[np.concatenate(epoch)]) == set(range(10))
    b = PKSampler(product_ids, p=4, k=2, seed=5)
    assert all(np.array_equal(x, b.next_batch()) for x in epoch)
    c = PKSampler(product_ids, p=4, k=2, seed=6)
    assert not all(np.array_equal(x, c.next_batch()) for x in epoch)


def test_pk_sampler_refuses_impossible_batches():
    with pytest.raises(SamplerError, match="p=5 products per batch, but the images"):
        PKSampler(np.array([1, 1, 2, 3]), p=5, k=2)
    with pytest.raises(SamplerError, match="p must be >= 2"):
        PKSampler(np.array([1, 2]), p=1, k=2)


# -- losses -----------------------------------------------------------------------


def test_every_loss_gives_a_finite_differentiable_value():
    torch.manual_seed(0)
    embeddings = torch.randn(16, 8, requires_grad=True)
    labels = torch.arange(4).repeat_interleave(4)
    for name in LOSSES:
        loss = metric_loss(name, n_classes=4, dim=8)
        value = loss(embeddings, labels)
        value.backward()
        assert torch.isfinite(value) and value.ndim == 0, name
        assert (loss.family == "proxy") == bool(loss.parameters), name


def test_loss_factory_names_what_it_knows():
    with pytest.raises(UnknownLoss, match="unknown loss 'triplet': known losses are "):
        metric_loss("triplet")
    with pytest.raises(UnknownLoss, match=r"has no setting \['margin'\]"):
        metric_loss("ntxent", margin=0.2)
    with pytest.raises(UnknownLoss, match="learns one proxy per training product"):
        metric_loss("proxy_anchor")
    with pytest.raises(UnknownLoss, match="unknown loss 'arcface'"):
        EmbedderTrainingConfig(loss="arcface")


@pytest.mark.parametrize("mined", [False, True])
def test_hand_written_multi_similarity_equals_the_library(mined):
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(24, 16, generator=generator, dtype=torch.float64)
        labels = torch.randint(0, 5, (24,), generator=generator)
        ours_x = x.clone().requires_grad_(True)
        theirs_x = x.clone().requires_grad_(True)
        ours = multi_similarity_loss(ours_x, labels, epsilon=0.1 if mined else None)
        pairs = (
            pml_miners.MultiSimilarityMiner(epsilon=0.1)(theirs_x, labels)
            if mined
            else None
        )
        theirs = pml_losses.MultiSimilarityLoss()(theirs_x, labels, pairs)
        ours.backward()
        theirs.backward()
        assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-12)
        torch.testing.assert_close(ours_x.grad, theirs_x.grad)


def test_mining_changes_the_loss_on_an_easy_batch():
    # well-separated identities: the miner drops the easy pairs
    labels = torch.arange(4).repeat_interleave(3)
    x = torch.eye(4, dtype=torch.float64).repeat_interleave(3, dim=0)
    x = x + 0.05 * torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    assert float(multi_similarity_loss(x, labels)) < float(
        multi_similarity_loss(x, labels, epsilon=None)
    )


# -- training ---------------------------------------------------------------------


def quick_config(**changes) -> EmbedderTrainingConfig:
    settings = dict(dim=16, widths=SMALL, steps=6, p=4, k=2, num_threads=1)
    settings.update(changes)
    return EmbedderTrainingConfig(**settings)


def test_training_is_fixed_by_the_seed():
    images = tiny_images()
    a = train_embedder(images, quick_config(seed=1), progress=False)
    b = train_embedder(images, quick_config(seed=1), progress=False)
    c = train_embedder(images, quick_config(seed=2), progress=False)
    assert a.losses.shape == (6,) and np.isfinite(a.losses).all()
    np.testing.assert_array_equal(a.losses, b.losses)
    for name, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[name]), name
    assert not np.array_equal(a.losses, c.losses)
    assert not a.model.training
    np.testing.assert_array_equal(a.products, np.arange(8) + 100)


@pytest.mark.parametrize("loss", ["contrastive", "proxy_anchor", "normalized_softmax"])
def test_each_supervised_loss_trains(loss):
    fit = train_embedder(tiny_images(), quick_config(loss=loss), progress=False)
    assert np.isfinite(fit.losses).all()
    assert fit.loss.name == loss


def test_self_supervised_training_ignores_products():
    images = tiny_images()
    one_product = dataclasses.replace(
        images, product_ids=np.zeros(len(images), np.int64)
    )
    fit = train_embedder(one_product, quick_config(loss="ntxent"), progress=False)
    assert np.isfinite(fit.losses).all()
    with pytest.raises(EmbedderInputError, match="at least 2 products"):
        train_embedder(one_product, quick_config(), progress=False)


def test_supervised_training_separates_products_it_saw():
    images = tiny_images(n_products=6, views=4)
    fit = train_embedder(
        images, quick_config(steps=40, p=6, k=2, augment_strength=0.3), progress=False
    )
    vectors = embed_images(fit.model, images)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    nearest = images.product_ids[similarity.argmax(axis=1)]
    assert (nearest == images.product_ids).mean() >= 0.9
    assert fit.losses[-5:].mean() < fit.losses[:5].mean()


def test_training_config_is_checked():
    with pytest.raises(EmbedderInputError, match="needs k >= 2 images per product"):
        EmbedderTrainingConfig(loss="multi_similarity", k=1)
    EmbedderTrainingConfig(loss="normalized_softmax", k=1)  # proxies need no pairs
    with pytest.raises(EmbedderInputError, match="p >= 2"):
        EmbedderTrainingConfig(p=1)


def test_learning_rate_warms_up_then_decays_to_zero():
    factors = [learning_rate_factor(s, 100) for s in range(100)]
    assert factors[0] == pytest.approx(0.2) and max(factors) == 1.0
    assert factors[4] == 1.0 and factors[-1] < 0.01
    assert all(a >= b for a, b in itertools.pairwise(factors[4:]))


# -- export -----------------------------------------------------------------------


@pytest.mark.parametrize("format", ["torchscript", "pt2"])
def test_embedder_exports_with_parity(tmp_path, format):
    images = tiny_images()
    model = ImageEmbedder(dim=16, widths=SMALL).eval()
    example = images.to_tensor(0, 4)
    samples = [images.to_tensor(0, 1), images.to_tensor(0, 9), images.to_tensor()]
    exported = export_model(
        model, example, tmp_path / f"embedder.{format}", format=format
    )
    assert exported.report.passed
    exported = export_model(
        model,
        example,
        tmp_path / f"real.{format}",
        format=format,
        sample_inputs=samples,
    )
    assert exported.report.passed and exported.report.batch_sizes == (1, 9, 24)
    served = embed_images(exported.module, images)
    np.testing.assert_allclose(served, embed_images(model, images), atol=1e-5)


def test_embedder_scripts():
    model = ImageEmbedder(dim=16, widths=SMALL).eval()
    scripted = torch.jit.script(model)
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(scripted(x), model(x))
