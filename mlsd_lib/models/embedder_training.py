"""Train an :class:`~mlsd_lib.models.image_embedder.ImageEmbedder` on labelled images.

Introduced in ``casestudies/visual_search/04_models.ipynb``. One frozen
:class:`EmbedderTrainingConfig` says how (which loss, how many steps of how
many products, the learning rates, how strong the augmentation, the seed), and
:func:`train_embedder` runs it on any
:class:`~mlsd_lib.datasets.image_sets.ImageSet`: the synthetic world's catalogue
or Stanford Online Products, unchanged. A step is four named parts:

1. :func:`draw_batch`: rows of ``p`` products x ``k`` images
   (:class:`~mlsd_lib.models.pk_sampler.PKSampler`); in the self-supervised mode
   ``p * k`` images drawn regardless of product, since it ignores labels.
2. :func:`make_views`: each image augmented into a user-style view
   (:func:`~mlsd_lib.models.image_augment.augment`); self-supervised: two views
   of each, whose only label is "same source image".
3. the loss of the views' embeddings
   (:func:`~mlsd_lib.models.metric_losses.metric_loss`);
4. :func:`train_step`: one AdamW step on the model (and the proxies, at
   ``proxy_lr_scale`` times the rate: they start random and must move far),
   with the learning rate warmed up linearly over the first 5% of steps and
   decayed on a cosine to zero (:func:`learning_rate_factor`).

The loop runs a fixed number of steps rather than epochs with early stopping
(the house loop, :func:`~mlsd_lib.models.training.fit`): the losses of
different batches are not comparable (a pair loss depends on which products
met), and the notebook measures recall on held-out products after training,
which is the judgement that counts. As in :func:`~mlsd_lib.models.training.fit`,
deterministic algorithms are on for the call, so a seed gives the same weights
on the same machine and torch build. Convolutions run in channels-last memory
layout, which oneDNN computes faster on CPU; the model is handed back in the
default layout.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.models.image_augment import Augmentation, augment
from mlsd_lib.models.image_embedder import EmbedderInputError, ImageEmbedder
from mlsd_lib.models.metric_losses import (
    LOSSES,
    PAIR_LOSSES,
    SELF_SUPERVISED_LOSSES,
    MetricLoss,
    UnknownLoss,
    metric_loss,
)
from mlsd_lib.models.pk_sampler import PKSampler
from mlsd_lib.models.training import torch_threads
from mlsd_lib.progress import tqdm
from mlsd_lib.validation import (
    require_int,
    require_seed,
)

__all__ = [
    "EmbedderFit",
    "EmbedderTrainingConfig",
    "draw_batch",
    "images_at",
    "learning_rate_factor",
    "make_views",
    "train_embedder",
    "train_step",
]


@dataclass(frozen=True)
class EmbedderTrainingConfig:
    """How :func:`train_embedder` trains: one frozen value, changed with
    :func:`dataclasses.replace`.

    - ``loss``: one of :data:`~mlsd_lib.models.metric_losses.LOSSES`;
      ``loss_settings`` overrides its defaults (``{"temperature": 0.1}``).
      ``"ntxent"`` is the self-supervised mode: product labels are ignored.
    - ``dim``, ``widths``: the embedder's output size and block widths.
    - ``steps``: optimizer steps; ``p`` products x ``k`` images per batch (an
      epoch, every product once, is ``ceil(n_products / p)`` steps).
    - ``lr``, ``weight_decay``: AdamW on the model (peak rate, warmed up and
      decayed, see :func:`learning_rate_factor`); ``proxy_lr_scale``: the
      proxies' rate as a multiple of ``lr``.
    - ``augmentation`` scaled by ``augment_strength`` (0: none, 1: as given).
    - ``seed``: weights, batches and views; ``num_threads``: torch's intra-op
      threads for the call (``None``: leave as is).
    """

    loss: str = "multi_similarity"
    loss_settings: dict = dataclasses.field(default_factory=dict)
    dim: int = 128
    widths: tuple[int, ...] = (32, 64, 128, 256)
    downsample: str = "pool"
    steps: int = 300
    p: int = 32
    k: int = 4
    lr: float = 3e-3
    weight_decay: float = 1e-4
    proxy_lr_scale: float = 100.0
    augmentation: Augmentation = dataclasses.field(default_factory=Augmentation)
    augment_strength: float = 1.0
    seed: int = 0
    num_threads: int | None = None
    bf16: bool = False

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise UnknownLoss(
                f"unknown loss {self.loss!r}: known losses are {', '.join(LOSSES)}."
            )
        require_seed("seed", self.seed, error=EmbedderInputError)
        if not self.widths:
            raise EmbedderInputError("widths must name at least one width (got ()).")
        for width in self.widths:
            require_int("widths", width, at_least=1, error=EmbedderInputError)
        if self.steps < 1 or self.p < 2 or self.k < 1 or self.dim < 1:
            raise EmbedderInputError(
                f"steps, k and dim must be >= 1 and p >= 2, got steps={self.steps}, "
                f"p={self.p}, k={self.k}, dim={self.dim}."
            )
        if self.loss in PAIR_LOSSES and self.k < 2:
            raise EmbedderInputError(
                f"the pair-based {self.loss} loss needs k >= 2 images per product "
                f"in a batch (its positive pairs), got k={self.k}."
            )
        if self.lr <= 0 or self.weight_decay < 0 or self.proxy_lr_scale <= 0:
            raise EmbedderInputError(
                f"lr and proxy_lr_scale must be > 0 and weight_decay >= 0, got "
                f"lr={self.lr}, proxy_lr_scale={self.proxy_lr_scale}, "
                f"weight_decay={self.weight_decay}."
            )

    @property
    def self_supervised(self) -> bool:
        return self.loss in SELF_SUPERVISED_LOSSES

    @property
    def views(self) -> Augmentation:
        """The augmentation actually applied: ``augmentation`` at the strength."""
        return self.augmentation.scaled(self.augment_strength)


@dataclass
class EmbedderFit:
    """A trained embedder and how it got there.

    ``losses`` has one value per step (the training curve); ``products`` are the
    training product ids, in the order of the loss's proxies (a proxy loss's
    row ``i`` is product ``products[i]``); ``loss`` holds those proxies.
    """

    model: ImageEmbedder
    losses: np.ndarray
    config: EmbedderTrainingConfig
    products: np.ndarray
    loss: MetricLoss
    seconds: float

    @property
    def images_per_second(self) -> float:
        """Training images (views) processed per second of the whole loop."""
        per_step = (
            self.config.p * self.config.k * (2 if self.config.self_supervised else 1)
        )
        return per_step * len(self.losses) / self.seconds


def images_at(images: ImageSet, rows: np.ndarray) -> torch.Tensor:
    """``float32 (n, 3, H, W)`` in ``[0, 1]`` of ``images``' rows (repeats allowed)."""
    chunk = np.ascontiguousarray(images.images[rows])
    return torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div_(255.0)


def learning_rate_factor(step: int, steps: int, warmup: float = 0.05) -> float:
    """The share of the peak rate at ``step``: linear warm-up, then cosine to 0."""
    warm = max(1, round(warmup * steps))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _uniform_batches(
    n: int, size: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Rows without regard to product: successive seeded permutations, chunked."""
    if size > n:
        raise EmbedderInputError(
            f"a self-supervised batch of {size} images needs at least that many "
            f"images, got {n}: lower p * k."
        )
    queue = np.zeros(0, dtype=np.int64)
    while True:
        while queue.size < size:
            queue = np.concatenate([queue, rng.permutation(n)])
        yield queue[:size]
        queue = queue[size:]


def draw_batch(
    batches: Iterator[np.ndarray], labels: np.ndarray, self_supervised: bool
) -> tuple[np.ndarray, torch.Tensor]:
    """The next batch's rows and their labels (proxy rows; unused when
    self-supervised, where :func:`make_views` makes its own)."""
    rows = next(batches)
    return rows, torch.as_tensor(labels[rows])


def make_views(
    pixels: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    augmentation: Augmentation,
    self_supervised: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The augmented views to embed and the labels the loss compares.

    Supervised: one view per image, labelled by its product. Self-supervised
    (SimCLR): two views per image, labelled by the image's position in the
    batch, so the only positive of a view is the other view of its image.
    """
    if not self_supervised:
        return augment(pixels, generator, augmentation), labels
    first = augment(pixels, generator, augmentation)
    second = augment(pixels, generator, augmentation)
    same_image = torch.arange(len(pixels)).repeat(2)
    return torch.cat([first, second]), same_image


def train_step(
    model: ImageEmbedder,
    loss: MetricLoss,
    optimizer: torch.optim.Optimizer,
    views: torch.Tensor,
    labels: torch.Tensor,
    *,
    bf16: bool = False,
) -> float:
    """Embed ``views``, compute the loss, take one optimizer step; the loss value.

    With ``bf16`` the forward pass runs under CPU autocast to bfloat16 (the
    loss, on the embeddings cast back, in float32).
    """
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        embeddings = model(views.contiguous(memory_format=torch.channels_last))
    value = loss(embeddings.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    value.backward()
    optimizer.step()
    return float(value.detach())


def _optimizer(
    model: ImageEmbedder, loss: MetricLoss, config: EmbedderTrainingConfig
) -> torch.optim.Optimizer:
    groups = [{"params": list(model.parameters()), "lr": config.lr}]
    if loss.parameters:
        groups.append(
            {
                "params": loss.parameters,
                "lr": config.lr * config.proxy_lr_scale,
                "weight_decay": 0.0,
            }
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def train_embedder(
    images: ImageSet,
    config: EmbedderTrainingConfig | None = None,
    *,
    progress: bool = True,
) -> EmbedderFit:
    """Train a fresh embedder on ``images`` by ``config``; the model in eval mode.

    Labels are the images' ``product_ids`` (ignored by the self-supervised
    loss); the model never sees a product outside ``images``, so evaluate it on
    others. ``progress`` draws a tqdm bar with the running loss.
    """
    config = config or EmbedderTrainingConfig()
    if len(images) == 0:
        raise EmbedderInputError("the training image set is empty.")
    products, labels = np.unique(images.product_ids, return_inverse=True)
    if not config.self_supervised and products.size < 2:
        raise EmbedderInputError(
            f"metric learning needs at least 2 products to tell apart, got "
            f"{products.size}."
        )
    model = ImageEmbedder(
        config.dim, config.widths, seed=config.seed, downsample=config.downsample
    )
    _check_size(model, images)
    loss = metric_loss(
        config.loss,
        n_classes=int(products.size),
        dim=config.dim,
        seed=config.seed,
        **config.loss_settings,
    )
    if config.self_supervised:
        batches = _uniform_batches(
            len(images), config.p * config.k, np.random.default_rng(config.seed)
        )
    else:
        batches = iter(PKSampler(labels, config.p, config.k, seed=config.seed))
    generator = torch.Generator().manual_seed(config.seed)
    views_config = config.views
    optimizer = _optimizer(model, loss, config)
    peaks = [group["lr"] for group in optimizer.param_groups]
    curve = np.zeros(config.steps, dtype=np.float64)
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    start = time.perf_counter()
    bar = tqdm(
        range(config.steps), desc=f"embedder ({config.loss})", disable=not progress
    )
    try:
        with torch_threads(config.num_threads), torch.random.fork_rng():
            torch.manual_seed(config.seed)
            model.to(memory_format=torch.channels_last).train()
            for step in bar:
                factor = learning_rate_factor(step, config.steps)
                for group, peak in zip(optimizer.param_groups, peaks, strict=True):
                    group["lr"] = peak * factor
                rows, batch_labels = draw_batch(batches, labels, config.self_supervised)
                views, view_labels = make_views(
                    images_at(images, rows),
                    batch_labels,
                    generator,
                    views_config,
                    config.self_supervised,
                )
                curve[step] = train_step(
                    model, loss, optimizer, views, view_labels, bf16=config.bf16
                )
                if step % 10 == 0 or step == config.steps - 1:
                    bar.set_postfix(loss=f"{curve[step]:.4f}")
    finally:
        bar.close()
        torch.use_deterministic_algorithms(previous_determinism)
        model.to(memory_format=torch.contiguous_format).eval()
    return EmbedderFit(
        model=model,
        losses=curve,
        config=config,
        products=products.astype(np.int64),
        loss=loss,
        seconds=time.perf_counter() - start,
    )


def _check_size(model: ImageEmbedder, images: ImageSet) -> None:
    smallest = 2 ** len(model.widths)
    if min(images.image_size) < smallest:
        raise EmbedderInputError(
            f"images of {images.image_size[0]} x {images.image_size[1]} are too "
            f"small for {len(model.widths)} blocks: send at least {smallest} x "
            f"{smallest} pixels."
        )
