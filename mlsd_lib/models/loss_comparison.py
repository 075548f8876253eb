"""Metric-learning losses trained on identical batches: only the loss differs.

Introduced in ``casestudies/visual_search/04_models.ipynb`` (step 4, "a CNN embedder
with a metric-learning loss (contrastive, triplet or proxy-based)"). Which loss to train
an embedder with is a question a comparison can answer only if nothing else changes
between the runs. :func:`compare_losses` derives every run from one
:class:`~mlsd_lib.models.embedder_training.EmbedderTrainingConfig` by changing
the loss alone (:func:`loss_config`), and
:func:`~mlsd_lib.models.embedder_training.train_embedder` makes the rest equal by
seeding: the same initial weights, the same
:class:`~mlsd_lib.models.pk_sampler.PKSampler` batches of P products x K images
in the same order, the same augmented views of them, the same learning-rate
schedule and number of steps. What remains different is what the losses *are*:

* a **pair-based** loss (multi-similarity, contrastive) learns from the pairs
  inside each batch;
* a **proxy-based** loss (Proxy-Anchor, normalized softmax) also steps one
  learned proxy per training product (at ``proxy_lr_scale`` times the rate);
* the **self-supervised** loss (NT-Xent) may not use the product labels, so it
  cannot use P x K batches, which are built from them. It draws its images
  without regard to product and makes *two* views of each; to keep the compute
  per step equal, :func:`loss_config` gives it half as many images
  (``p * k // 2``), hence the same ``p * k`` views per step, for the same steps.

The losses' values are not comparable across losses (a proxy loss starts near
``log(n_products)``, a pair loss near 1): read each curve for its own shape,
and compare the runs by what they are for, recall on products none of them saw
(:meth:`LossComparison.embedders` hands each trained model over as an
``ImageSet -> vectors`` function for that exam).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.models.embedder_training import (
    EmbedderFit,
    EmbedderTrainingConfig,
    train_embedder,
)
from mlsd_lib.models.image_embedder import embed_images
from mlsd_lib.models.metric_losses import SELF_SUPERVISED_LOSSES, metric_loss

__all__ = [
    "LossComparison",
    "LossComparisonError",
    "compare_losses",
    "loss_config",
]


class LossComparisonError(MlsdError, ValueError):
    """A comparison that cannot be run as asked; the message says what to change."""


def loss_config(
    base: EmbedderTrainingConfig,
    loss: str,
    settings: Mapping[str, float] | None = None,
) -> EmbedderTrainingConfig:
    """``base`` with its loss replaced by ``loss`` (and ``settings``), nothing else.

    A self-supervised loss gets ``p * k // 2`` images per step, each augmented
    twice, so its views per step equal ``base``'s ``p * k`` (same compute).
    """
    changes: dict = {"loss": loss, "loss_settings": dict(settings or {})}
    if loss in SELF_SUPERVISED_LOSSES:
        images = base.p * base.k // 2
        if images < 2:
            raise LossComparisonError(
                f"the self-supervised {loss} loss draws p * k // 2 images per step "
                f"(two views each), so p * k must be at least 4, got "
                f"p={base.p}, k={base.k}."
            )
        changes.update(p=images, k=1)
    return dataclasses.replace(base, **changes)


@dataclass(frozen=True)
class LossComparison:
    """The trained runs of :func:`compare_losses`, by loss name, in the order asked."""

    fits: dict[str, EmbedderFit]

    @property
    def names(self) -> list[str]:
        return list(self.fits)

    def curves(self, smooth: int = 1) -> pd.DataFrame:
        """Loss per step (rows) and loss name (columns), a centred rolling mean
        over ``smooth`` steps (1: the raw values)."""
        if isinstance(smooth, bool) or not isinstance(smooth, int) or smooth < 1:
            raise LossComparisonError(
                f"smooth must be a positive number of steps, got {smooth!r}."
            )
        table = pd.DataFrame({name: fit.losses for name, fit in self.fits.items()})
        table.index.name = "step"
        if smooth == 1:
            return table
        return table.rolling(smooth, center=True, min_periods=1).mean()

    def summary(self) -> pd.DataFrame:
        """One row per loss: its family, the batch it saw, its seconds and the
        mean loss over the first and last tenth of the steps."""
        rows = {}
        for name, fit in self.fits.items():
            config = fit.config
            tenth = max(1, len(fit.losses) // 10)
            views = config.p * config.k * (2 if config.self_supervised else 1)
            rows[name] = {
                "family": fit.loss.family,
                "steps": len(fit.losses),
                "images per step": config.p * config.k,
                "views per step": views,
                "labels": "none" if config.self_supervised else "product",
                "first loss": float(np.mean(fit.losses[:tenth])),
                "last loss": float(np.mean(fit.losses[-tenth:])),
                "seconds": fit.seconds,
            }
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "loss"
        return table

    def embedders(
        self, batch_size: int = 256
    ) -> dict[str, Callable[[ImageSet], np.ndarray]]:
        """Each trained model as an ``ImageSet -> (n, dim)`` unit-vector function
        (:func:`~mlsd_lib.models.image_embedder.embed_images`), by loss name."""
        return {name: _embedder(fit, batch_size) for name, fit in self.fits.items()}


def _embedder(fit: EmbedderFit, batch_size: int) -> Callable[[ImageSet], np.ndarray]:
    return lambda images: embed_images(fit.model, images, batch_size)


def compare_losses(
    images: ImageSet,
    losses: Sequence[str],
    base: EmbedderTrainingConfig,
    *,
    settings: Mapping[str, Mapping[str, float]] | None = None,
    progress: bool = True,
) -> LossComparison:
    """Train one embedder per name in ``losses`` on ``images``, each by
    :func:`loss_config` of ``base`` (``settings[name]`` overriding that loss's
    defaults), so that the runs differ by their loss alone.

    The supervised runs see the same P x K batches and the same views, step
    for step (one seed, one sampler, one augmentation generator); the
    self-supervised one the same number of views per step, without labels.
    """
    names = list(losses)
    settings = dict(settings or {})
    if not names:
        raise LossComparisonError(
            "losses is empty: name at least one loss, e.g. ('multi_similarity', "
            "'proxy_anchor', 'ntxent')."
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise LossComparisonError(
            f"losses {repeated} are named more than once: each run is keyed by its "
            "loss, so name each loss once."
        )
    stray = sorted(set(settings) - set(names))
    if stray:
        raise LossComparisonError(
            f"settings name {stray}, which are not among the losses {names}: "
            "give settings only for losses that are trained."
        )
    configs = {name: loss_config(base, name, settings.get(name)) for name in names}
    for name, config in configs.items():  # refuse a bad setting before training
        metric_loss(name, n_classes=2, dim=config.dim, **config.loss_settings)
    fits = {
        name: train_embedder(images, config, progress=progress)
        for name, config in configs.items()
    }
    return LossComparison(fits=fits)
