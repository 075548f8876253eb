"""The two baselines a learned image embedder must beat: raw pixels and colour.

Introduced in ``casestudies/visual_search/index.md`` (step 2, "measures simple
baselines (raw pixels, colour histograms)"). Both turn an
:class:`~mlsd_lib.datasets.image_sets.ImageSet` into ``float32`` ``(n, d)``
unit vectors, the shape the learned embedder returns, so the same exact
search, recall@K and index run on all three and the comparison is fair.
They are hand-written because the book teaches what each one sees:

* :func:`pixel_vectors`: the image shrunk to ``size`` x ``size`` by averaging
  blocks of pixels (area resampling, so nothing aliases), each vector centred
  on its own mean and L2-normalized. Centring removes a uniform change of
  brightness, the normalization one of contrast; the inner product of two
  vectors is then the Pearson correlation of the two thumbnails. It matches a
  product photographed in the same place and pose, and fails as soon as the
  product moves, turns or sits in a cluttered room: layout is all it knows.
* :func:`colour_histograms`: the joint histogram of pixel colours in
  ``bins`` x ``bins`` x ``bins`` cells (RGB, or HSV whose hue separates
  colours that lighting only darkens), as a distribution over cells. It
  ignores where colours are, so it survives moves and turns, but not a new
  background, which adds its own colours, nor a darker camera. ``"sqrt"``
  normalization (the square root of the distribution, Hellinger's embedding)
  makes the inner product the Bhattacharyya coefficient of the two
  histograms and keeps one dominant colour from swamping the rest; ``"l2"``
  divides the counts by their norm.

Both work in chunks of ``batch_size`` images, so a catalogue never exists in
``float32`` at full size, and accept an ``ImageSet`` or a bare ``uint8``
``(n, H, W, 3)`` array (a decoded query).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError

__all__ = [
    "BaselineInputError",
    "colour_histograms",
    "pixel_vectors",
    "rgb_to_hsv",
]

COLOUR_SPACES = ("rgb", "hsv")
NORMALIZATIONS = ("sqrt", "l2")


class BaselineInputError(MlsdError, ValueError):
    """Images or settings a baseline cannot use; the message says which."""


def _pixels(images: ImageSet | np.ndarray) -> np.ndarray:
    array = images.images if isinstance(images, ImageSet) else images
    if (
        not isinstance(array, np.ndarray)
        or array.dtype != np.uint8
        or array.ndim != 4
        or array.shape[3] != 3
    ):
        raise BaselineInputError(
            "images must be an ImageSet or a uint8 array of shape (n, H, W, 3), "
            f"got {getattr(array, 'dtype', type(array).__name__)} of shape "
            f"{getattr(array, 'shape', '?')}."
        )
    return array


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BaselineInputError(
            f"batch_size must be a positive integer, got {batch_size!r}."
        )


def _unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm; an all-zero row stays zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def pixel_vectors(
    images: ImageSet | np.ndarray, size: int = 16, *, batch_size: int = 1024
) -> np.ndarray:
    """Downsampled, centred, L2-normalized pixels: ``float32`` ``(n, 3 * size**2)``.

    Introduced in ``casestudies/visual_search/index.md``. Each image is shrunk
    to ``size`` x ``size`` by area averaging (``size`` at most the image's
    side), flattened channel by channel, centred on its own mean and divided
    by its norm (a flat image, all one colour, gives the zero vector: it
    correlates with nothing).
    """
    pixels = _pixels(images)
    height, width = pixels.shape[1:3]
    if not isinstance(size, int) or not 1 <= size <= min(height, width):
        raise BaselineInputError(
            f"size must be an integer from 1 to the images' side "
            f"({min(height, width)}), got {size!r}."
        )
    _check_batch_size(batch_size)
    out = np.empty((len(pixels), 3 * size * size), dtype=np.float32)
    for start in range(0, len(pixels), batch_size):
        chunk = torch.from_numpy(pixels[start : start + batch_size])
        chunk = chunk.permute(0, 3, 1, 2).float().div_(255.0)
        small = F.adaptive_avg_pool2d(chunk, size).flatten(1).numpy()
        small = small - small.mean(axis=1, keepdims=True)
        out[start : start + len(small)] = _unit_rows(small)
    return out


def rgb_to_hsv(pixels: np.ndarray) -> np.ndarray:
    """``uint8`` RGB ``(..., 3)`` to float HSV in ``[0, 1)`` x ``[0, 1]`` x ``[0, 1]``.

    Hue is the angle on the colour wheel (0 red, 1/3 green, 2/3 blue), saturation
    ``(max - min) / max``, value ``max``; a grey pixel has hue 0 and saturation 0.
    """
    rgb = np.asarray(pixels, dtype=np.float32) / 255.0
    top = rgb.max(axis=-1)
    spread = top - rgb.min(axis=-1)
    safe = np.where(spread > 0, spread, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(
        top == r,
        ((g - b) / safe) % 6.0,
        np.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0),
    )
    hue = np.where(spread > 0, hue / 6.0, 0.0) % 1.0
    saturation = np.where(top > 0, spread / np.where(top > 0, top, 1.0), 0.0)
    return np.stack([hue, saturation, top], axis=-1).astype(np.float32)


def colour_histograms(
    images: ImageSet | np.ndarray,
    bins: int = 8,
    *,
    space: str = "rgb",
    normalize: str = "sqrt",
    batch_size: int = 512,
) -> np.ndarray:
    """Joint colour histograms: ``float32`` ``(n, bins**3)`` unit vectors.

    Introduced in ``casestudies/visual_search/index.md``. Every pixel falls in
    one of ``bins**3`` cells of the colour cube (``space="rgb"``) or of
    hue x saturation x value (``space="hsv"``); a row is the share of the
    image's pixels in each cell, then ``normalize="sqrt"`` (square root:
    unit norm already, inner product = Bhattacharyya coefficient) or ``"l2"``
    (divided by its norm). Counted with one ``bincount`` per chunk of images.
    """
    pixels = _pixels(images)
    if not isinstance(bins, int) or not 1 <= bins <= 64:
        raise BaselineInputError(
            f"bins must be an integer from 1 to 64 per channel, got {bins!r} "
            "(8 gives 512 cells; 64 would give 262,144)."
        )
    if space not in COLOUR_SPACES:
        raise BaselineInputError(
            f"space must be one of {list(COLOUR_SPACES)}, got {space!r}."
        )
    if normalize not in NORMALIZATIONS:
        raise BaselineInputError(
            f"normalize must be one of {list(NORMALIZATIONS)}, got {normalize!r}."
        )
    _check_batch_size(batch_size)
    n, height, width = pixels.shape[:3]
    cells = bins**3
    out = np.empty((n, cells), dtype=np.float32)
    for start in range(0, n, batch_size):
        chunk = pixels[start : start + batch_size]
        if space == "rgb":
            level = (chunk.astype(np.int64) * bins) >> 8  # floor(v * bins / 256)
        else:
            hsv = rgb_to_hsv(chunk)
            level = np.minimum((hsv * bins).astype(np.int64), bins - 1)
        cell = (level[..., 0] * bins + level[..., 1]) * bins + level[..., 2]
        rows = np.arange(len(chunk), dtype=np.int64)[:, None, None] * cells
        counts = np.bincount((cell + rows).ravel(), minlength=len(chunk) * cells)
        share = counts.reshape(len(chunk), cells) / float(height * width)
        out[start : start + len(chunk)] = (
            np.sqrt(share) if normalize == "sqrt" else _unit_rows(share)
        )
    return out
