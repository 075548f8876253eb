"""Losses compared on identical batches: only the loss may differ between runs."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

import mlsd_lib.models.embedder_training as embedder_training
from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.models.embedder_training import EmbedderTrainingConfig
from mlsd_lib.models.loss_comparison import (
    LossComparisonError,
    compare_losses,
    loss_config,
)
from mlsd_lib.models.metric_losses import UnknownLoss

BASE = EmbedderTrainingConfig(
    dim=16, widths=(8, 16, 16, 32), steps=4, p=4, k=2, num_threads=1, seed=3
)


def blocks(n_products: int = 6, views: int = 3, size: int = 32) -> ImageSet:
    """Each product a coloured block on grey, nudged a little in each view."""
    rng = np.random.default_rng(7)
    colours = rng.integers(20, 220, (n_products, 3))
    pixels = np.full((n_products * views, size, size, 3), 128, np.uint8)
    for row in range(n_products * views):
        top, left = rng.integers(2, 8, 2)
        pixels[row, top : top + size // 2, left : left + size // 2] = colours[
            row // views
        ]
    return ImageSet(
        images=pixels,
        product_ids=np.repeat(np.arange(n_products), views) + 10,
        category_ids=np.zeros(n_products * views, np.int64),
        image_ids=np.arange(n_products * views) + 100,
    )


def test_loss_config_changes_the_loss_and_nothing_else():
    for loss in ("multi_similarity", "contrastive", "proxy_anchor"):
        config = loss_config(
            BASE, loss, {"margin": 0.2} if loss == "proxy_anchor" else None
        )
        assert config.loss == loss
        same = dataclasses.replace(config, loss=BASE.loss, loss_settings={})
        assert same == BASE
    assert loss_config(BASE, "proxy_anchor", {"margin": 0.2}).loss_settings == {
        "margin": 0.2
    }


def test_the_self_supervised_run_gets_as_many_views_per_step():
    config = loss_config(BASE, "ntxent")
    assert (config.p, config.k) == (BASE.p * BASE.k // 2, 1)
    assert 2 * config.p * config.k == BASE.p * BASE.k
    assert config.steps == BASE.steps and config.seed == BASE.seed
    with pytest.raises(LossComparisonError, match="p \\* k must be at least 4"):
        loss_config(dataclasses.replace(BASE, p=2, k=1, loss="proxy_anchor"), "ntxent")


def test_supervised_runs_see_identical_batches_and_views(monkeypatch):
    seen: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    original = embedder_training.train_step

    def recording_step(model, loss, optimizer, views, labels, **kwargs):
        digest = hashlib.sha256(views.numpy().tobytes()).hexdigest()
        seen.setdefault(loss.name, []).append((digest, tuple(labels.tolist())))
        return original(model, loss, optimizer, views, labels, **kwargs)

    monkeypatch.setattr(embedder_training, "train_step", recording_step)
    losses = ("multi_similarity", "contrastive", "proxy_anchor", "ntxent")
    comparison = compare_losses(blocks(), losses, BASE, progress=False)
    assert comparison.names == list(losses)
    reference = seen["multi_similarity"]
    assert len(reference) == BASE.steps
    assert len({digest for digest, _ in reference}) == BASE.steps  # batches move on
    assert seen["contrastive"] == reference
    assert seen["proxy_anchor"] == reference  # labels are the proxies' rows
    assert all(len(set(labels)) == BASE.p for _, labels in reference)
    # self-supervised: p * k views a step, each image's two views its only pair
    for _, labels in seen["ntxent"]:
        assert len(labels) == BASE.p * BASE.k
        assert labels == tuple(range(BASE.p * BASE.k // 2)) * 2
    assert {d for d, _ in seen["ntxent"]}.isdisjoint(d for d, _ in reference)


def test_a_comparison_is_fixed_by_the_seed_and_hands_over_unit_vectors():
    images = blocks()
    losses = ("multi_similarity", "proxy_anchor")
    a = compare_losses(images, losses, BASE, progress=False)
    b = compare_losses(images, losses, BASE, progress=False)
    pd_curves = a.curves()
    assert pd_curves.shape == (BASE.steps, 2) and list(pd_curves) == list(losses)
    np.testing.assert_array_equal(pd_curves.to_numpy(), b.curves().to_numpy())
    assert not np.allclose(pd_curves["multi_similarity"], pd_curves["proxy_anchor"])
    vectors = a.embedders()["proxy_anchor"](images)
    assert vectors.shape == (len(images), BASE.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    summary = a.summary()
    assert summary.loc["proxy_anchor", "family"] == "proxy"
    assert summary.loc["multi_similarity", "views per step"] == BASE.p * BASE.k
    assert summary.loc["multi_similarity", "first loss"] == pytest.approx(
        a.fits["multi_similarity"].losses[0]
    )


def test_curves_smooth_with_a_centred_rolling_mean():
    comparison = compare_losses(
        blocks(), ("contrastive",), dataclasses.replace(BASE, steps=5), progress=False
    )
    raw = comparison.fits["contrastive"].losses
    smooth = comparison.curves(smooth=3)["contrastive"].to_numpy()
    assert smooth[2] == pytest.approx(raw[1:4].mean())
    assert smooth[0] == pytest.approx(raw[:2].mean())
    with pytest.raises(LossComparisonError, match="smooth must be a positive"):
        comparison.curves(smooth=0)


@pytest.mark.parametrize(
    ("losses", "settings", "error", "match"),
    [
        ((), None, LossComparisonError, "losses is empty"),
        (
            ("ntxent", "ntxent"),
            None,
            LossComparisonError,
            r"losses \['ntxent'\] are named more than once",
        ),
        (
            ("ntxent",),
            {"proxy_anchor": {"margin": 0.2}},
            LossComparisonError,
            r"settings name \['proxy_anchor'\], which are not among",
        ),
        (("triplet",), None, UnknownLoss, "unknown loss 'triplet'"),
        (
            ("ntxent",),
            {"ntxent": {"margin": 0.2}},
            UnknownLoss,
            r"the ntxent loss has no setting \['margin'\]",
        ),
    ],
)
def test_bad_comparisons_are_refused_before_any_training(
    monkeypatch, losses, settings, error, match
):
    def no_training(*args, **kwargs):
        raise AssertionError("trained before checking its inputs")

    monkeypatch.setattr("mlsd_lib.models.loss_comparison.train_embedder", no_training)
    with pytest.raises(error, match=match):
        compare_losses(blocks(), losses, BASE, settings=settings, progress=False)
