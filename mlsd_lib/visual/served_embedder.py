"""The embedder as it is served: raw pixels in, one unit vector per image out.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (panel A: "TorchScript,
torch.export" into the model registry; panel B, step 2: "Triton: embedder"). A trained
:class:`~mlsd_lib.models.image_embedder.ImageEmbedder` takes float ``(n, 3, H, W)``
tensors in ``[0, 1]``; a gateway holds decoded pixels, ``uint8 (n, H, W, 3)``.
:class:`PixelEmbedder` puts the conversion (channels first, divide by 255) **inside the
exported graph**, for two reasons:

* one definition of the input: the catalogue job and the gateway send the same
  bytes to the same file, so neither can normalize differently from training
  (a classic training-serving skew: a gateway that forgets the ``/ 255``
  returns confident nonsense);
* a quarter of the bytes on the wire: the request to the model server carries
  ``uint8`` pixels (12 KB for 64 x 64), not float32 (48 KB).

:func:`export_pixel_embedder` exports it with
:func:`~mlsd_lib.serving.export.export_model` (TorchScript or ``torch.export``),
and checks parity on **real** images (the catalogue's, of batch sizes 1, a
few and many), not random bytes: a model that agrees on noise can still
disagree on the images it will see. :func:`embed_pixels` runs any such module
(the exported file, reloaded) over an :class:`~mlsd_lib.datasets.image_sets.ImageSet`
in chunks: how the release embeds its catalogue, with the very file that
serves queries, so catalogue and query vectors come from the same bytes of
model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.models.training import torch_threads
from mlsd_lib.serving.export import ExportedModel, ExportFormat, export_model

__all__ = [
    "EMBEDDING",
    "PIXELS",
    "PixelEmbedder",
    "ServedEmbedderError",
    "embed_pixels",
    "export_pixel_embedder",
]

#: The served model's input (uint8 ``(n, H, W, 3)``) and output (``(n, d)``).
PIXELS, EMBEDDING = "pixels", "embedding"


class ServedEmbedderError(MlsdError, ValueError):
    """Pixels or a model the served embedder cannot take; says what to send."""


class PixelEmbedder(nn.Module):
    """``uint8 (n, H, W, 3)`` pixels to the wrapped embedder's unit vectors.

    ``embedder`` is anything taking float ``(n, 3, H, W)`` in ``[0, 1]`` (an
    :class:`~mlsd_lib.models.image_embedder.ImageEmbedder`); its ``dim`` is
    kept as ``dim``.
    """

    def __init__(self, embedder: nn.Module) -> None:
        super().__init__()
        self.embedder = embedder
        self.dim = int(getattr(embedder, "dim", 0))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit vectors ``(n, dim)`` float32 of ``pixels``."""
        return self.embedder(pixels.permute(0, 3, 1, 2).float() / 255.0)


def _check_images(images: ImageSet, at_least: int) -> None:
    if not isinstance(images, ImageSet) or len(images) < at_least:
        got = len(images) if isinstance(images, ImageSet) else type(images).__name__
        raise ServedEmbedderError(
            f"pass an ImageSet of at least {at_least} images (real catalogue "
            f"images, for the parity check), got {got}."
        )


def export_pixel_embedder(
    embedder: nn.Module,
    sample: ImageSet,
    path: str | Path,
    *,
    format: ExportFormat = "torchscript",
) -> ExportedModel:
    """Export ``PixelEmbedder(embedder)`` to ``path``, refused unless the file,
    reloaded, agrees with the eager model on real images.

    ``sample`` holds at least 8 real images (say, the first catalogue images):
    the example batch is 4 of them, and parity is checked on batches of 1, 4
    and every image of ``sample``, to 1e-4 absolute (unit vectors).
    """
    _check_images(sample, 8)
    model = PixelEmbedder(embedder).eval()
    pixels = torch.from_numpy(np.ascontiguousarray(sample.images))
    batches = [pixels[:1], pixels[:4], pixels]
    with torch_threads(1):
        return export_model(
            model,
            pixels[:4],
            path,
            format=format,
            sample_inputs=batches,
            atol=1e-4,
            rtol=1e-3,
        )


def embed_pixels(
    module: nn.Module, images: ImageSet, batch_size: int = 256
) -> np.ndarray:
    """``(n, d)`` float32 vectors of ``images`` by a pixels-in module (a
    :class:`PixelEmbedder` or its exported file), ``batch_size`` at a time,
    under ``torch.inference_mode``."""
    if not isinstance(images, ImageSet):
        raise ServedEmbedderError(
            f"embed_pixels takes an ImageSet, got {type(images).__name__}."
        )
    if batch_size < 1:
        raise ServedEmbedderError(f"batch_size must be >= 1, got {batch_size}.")
    out = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            chunk = np.ascontiguousarray(images.images[start : start + batch_size])
            out.append(module(torch.from_numpy(chunk)).numpy())
    if not out:
        raise ServedEmbedderError("images is empty: there is nothing to embed.")
    return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)
