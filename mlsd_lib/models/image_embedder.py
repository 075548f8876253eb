"""A small CNN that maps an image to a unit vector: the visual search embedder.

Introduced in ``casestudies/visual_search/04_models.ipynb``. Visual search ranks
catalogue images by their cosine similarity to the query's vector, so the embedder's one
job is geometry: two photos of one product close, photos of two products apart.
:class:`ImageEmbedder` is deliberately small and plain torch (no torchvision): four
convolution blocks (convolution, batch norm, ReLU; the first strided, the others
followed by 2 x 2 max pooling), global average and max pooling side by side, and a
linear projection to ``dim``, L2-normalized so that an inner product *is* the cosine and
matches the index's metric.

Why this size: on a 2-core CPU a ResNet-50 would train on a few hundred images
in the minute the book allows; this net (about 0.1 M parameters at the default
widths) sees tens of thousands. The first block is strided because the first
layer at full resolution is where a small net spends most of its time, and a
64 x 64 product photo has little detail at the pixel scale. Average pooling
summarizes colour and pattern over the whole frame; max pooling keeps a part
that shows in one place only (a handle, a lid). Both cost nothing.

The forward pass has no Python control flow on tensor values, so it scripts
(``torch.jit.script``), traces and exports (``torch.export``) alike; see
:func:`mlsd_lib.serving.export.export_model`.

:func:`embed_images` embeds an :class:`~mlsd_lib.datasets.image_sets.ImageSet`
in chunks (never the whole set as float32 at once), in eval mode and under
``torch.inference_mode``: what building an index from the catalogue calls.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.models.training import torch_threads
from mlsd_lib.validation import (
    require_seed,
)

__all__ = ["EmbedderInputError", "ImageEmbedder", "embed_images"]


class EmbedderInputError(MlsdError, ValueError):
    """An embedder was built or called with something it cannot take."""


def _conv_block(c_in: int, c_out: int, *, stride: int, pool: bool) -> nn.Sequential:
    """3 x 3 convolution, batch norm, ReLU, then 2 x 2 max pooling if ``pool``."""
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ImageEmbedder(nn.Module):
    """Images ``(n, 3, H, W)`` float in ``[0, 1]`` to unit vectors ``(n, dim)``.

    ``widths`` are the channels of the convolution blocks (the first is strided
    by 2, each later one halves the resolution by max pooling, so a 64 x 64
    input ends at 4 x 4 with four blocks). Inputs are centred on 0.5 inside the
    model, so a caller sends raw ``[0, 1]`` pixels, as
    :meth:`~mlsd_lib.datasets.image_sets.ImageSet.to_tensor` makes them. The
    weights are drawn from torch's generator seeded by ``seed``, without
    touching the global one.
    """

    def __init__(
        self,
        dim: int = 128,
        widths: Sequence[int] = (32, 64, 128, 256),
        seed: int = 0,
        downsample: str = "pool",
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        require_seed("seed", seed, error=EmbedderInputError)
        if dim < 1 or not widths or min(widths) < 1:
            raise EmbedderInputError(
                f"dim and every width must be >= 1 and widths non-empty, got "
                f"dim={dim}, widths={widths}."
            )
        self.dim = int(dim)
        self.widths = widths
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            if downsample == "early":
                last = len(widths) - 1
                blocks = [
                    _conv_block(c_in, c_out, stride=2 if i == 0 else 1, pool=i < last)
                    for i, (c_in, c_out) in enumerate(itertools.pairwise((3, *widths)))
                ]
            else:
                blocks = [_conv_block(3, widths[0], stride=2, pool=False)]
                blocks += [
                    _conv_block(
                        c_in,
                        c_out,
                        stride=2 if downsample == "stride" else 1,
                        pool=downsample == "pool",
                    )
                    for c_in, c_out in itertools.pairwise(widths)
                ]
            self.features = nn.Sequential(*blocks)
            self.project = nn.Linear(2 * widths[-1], self.dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Unit vectors, one per image: ``(n, dim)`` float32."""
        x = self.features((images - 0.5) * 4.0)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=1)
        return F.normalize(self.project(pooled), dim=1)


def _check_images(model: ImageEmbedder, images: ImageSet) -> None:
    if not isinstance(images, ImageSet):
        raise EmbedderInputError(
            f"embed_images takes an ImageSet, got {type(images).__name__}: wrap "
            "uint8 (N, H, W, 3) pixels in mlsd_lib.datasets.image_sets.ImageSet."
        )
    smallest = 2 ** len(model.widths)
    height, width = images.image_size
    if len(images) and min(height, width) < smallest:
        raise EmbedderInputError(
            f"images of {height} x {width} are too small for {len(model.widths)} "
            f"blocks, which halve the resolution each: send at least "
            f"{smallest} x {smallest} pixels."
        )


def _eval_mode(model: nn.Module) -> bool:
    """Put ``model`` in eval mode; whether it was training (to put back).

    A ``torch.export`` program is frozen in the mode it was exported in (eval,
    which :func:`~mlsd_lib.serving.export.export_model` requires) and refuses
    ``.eval()``, so it is left alone.
    """
    if not model.training:
        return False
    try:
        model.eval()
    except NotImplementedError:  # an exported program: already eval, by export
        return False
    return True


def embed_images(
    model: nn.Module,
    images: ImageSet,
    batch_size: int = 256,
    *,
    num_threads: int | None = None,
) -> np.ndarray:
    """``(n, dim)`` float32 unit vectors of ``images``, ``batch_size`` at a time.

    Eval mode (batch norm uses its running statistics, so an image's vector
    does not depend on which others share its batch) under
    ``torch.inference_mode``; the model's train/eval state is put back after.
    ``model`` is an :class:`ImageEmbedder` or anything with its signature (an
    exported module). ``num_threads``: torch's intra-op threads for the call.
    """
    if isinstance(model, ImageEmbedder):
        _check_images(model, images)
    if batch_size < 1:
        raise EmbedderInputError(f"batch_size must be >= 1, got {batch_size}.")
    dim = int(getattr(model, "dim", 0))
    was_training = _eval_mode(model)
    out: list[torch.Tensor] = []
    try:
        with torch_threads(num_threads), torch.inference_mode():
            for start in range(0, len(images), batch_size):
                out.append(model(images.to_tensor(start, start + batch_size)))
    finally:
        if was_training:
            model.train()
    if not out:
        return np.zeros((0, dim), np.float32)
    return torch.cat(out).numpy().astype(np.float32, copy=False)
