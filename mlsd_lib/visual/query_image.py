"""The query photo from bytes to the embedder's pixels: decode, crop, resize.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (panel B, step 1: "decode,
crop to the query box, resize", 20 ms p99). A gateway takes bytes from strangers, so
every step checks before it spends:

* :func:`decode_image` (Pillow): refuses an **empty** body, one **over
  ``max_bytes``**, bytes no decoder recognizes, and an image **over
  ``max_pixels``**, judged from the header *before* any pixel is decoded (a
  30 KB PNG can claim 50,000 x 50,000 pixels: a decompression bomb). A large
  JPEG is decoded at a reduced scale (Pillow's ``draft``: the DCT skips the
  detail) when the query region would still cover the embedder's size, which
  cuts a 12 MP phone photo's decode from ~100 ms to a few.
* :func:`crop_window`: the square around the box (``x0, y0, x1, y1`` in the
  photo's pixels, end exclusive), grown by ``margin``, as the image world's
  ``QuerySet.crops`` frames the user's region; what falls outside the photo
  repeats its border. No box: the whole photo, padded to a square. A box that
  is not inside the photo, or has no area, is refused.
* :func:`resize_square`: the window resampled to ``image_size`` (bilinear),
  ``uint8 (S, S, 3)``: what the served embedder takes.

:func:`region_pixels` is crop and resize on pixels already decoded: what the
offline job that precomputes known regions calls, so a region's stored vector
is the one its photo and box would get at the gateway.

Every refusal is :class:`ImageRejected`, whose ``status`` is the HTTP answer
(413 for too large, 422 for the rest) and whose message names the limit, so a
client developer reads what to change. Limits are one frozen
:class:`ImageLimits`.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlsd_lib.errors import MlsdError

__all__ = [
    "DecodedImage",
    "ImageLimits",
    "ImageLimitsError",
    "ImageRejected",
    "check_box",
    "crop_window",
    "decode_base64",
    "decode_image",
    "region_pixels",
    "resize_square",
]


class ImageRejected(MlsdError, ValueError):
    """A query image or box the gateway will not search; ``status`` is the HTTP
    code (413: too large; 422: undecodable, empty or a bad box)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class ImageLimitsError(MlsdError, ValueError):
    """Limits that cannot be enforced (not positive, a margin outside [0, 1])."""


@dataclass(frozen=True)
class ImageLimits:
    """What a query image may be, and how it becomes the embedder's input.

    ``max_bytes``: the encoded image (4 MiB: a phone JPEG is 2-4 MB);
    ``max_pixels``: width x height as the header declares it (40 MP covers
    every phone camera; a decompression bomb claims far more); ``min_side``:
    the smallest width, height or box side worth searching. ``image_size``:
    the served embedder's square input; ``margin``: how much the square
    around the box is grown (the image world's crops use 0.15).
    """

    max_bytes: int = 4 * 1024 * 1024
    max_pixels: int = 40_000_000
    min_side: int = 8
    image_size: int = 64
    margin: float = 0.15

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "min_side", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ImageLimitsError(
                    f"ImageLimits.{name}={value!r}: pass a positive integer."
                )
        if not 0.0 <= self.margin <= 1.0:
            raise ImageLimitsError(
                f"ImageLimits.margin={self.margin}: pass a share in [0, 1]."
            )

    @property
    def max_base64_chars(self) -> int:
        """The longest base64 text of an image within ``max_bytes``."""
        return 4 * math.ceil(self.max_bytes / 3)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded RGB photo and the size it declared (its box's coordinates).

    ``scale`` is decoded pixels per declared pixel (below 1 when a JPEG was
    decoded at a reduced scale).
    """

    image: Image.Image
    width: int
    height: int
    format: str

    @property
    def scale(self) -> float:
        return self.image.size[0] / self.width


def _mib(n: int) -> str:
    return f"{n:,} bytes" + (f" ({n / 2**20:.1f} MiB)" if n >= 2**20 else "")


def decode_base64(text: str, limits: ImageLimits) -> bytes:
    """The bytes of a base64 ``image`` field; refused when over the limit or
    not base64."""
    if len(text) > limits.max_base64_chars:
        raise ImageRejected(
            f"image is about {_mib(len(text) * 3 // 4)} once decoded; at most "
            f"{_mib(limits.max_bytes)} are accepted (max_bytes): send a smaller "
            f"JPEG, the embedder only sees {limits.image_size} x "
            f"{limits.image_size} pixels.",
            413,
        )
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected(
            "image is not valid base64: encode the file's bytes with standard "
            "base64 (RFC 4648, with padding), e.g. base64.b64encode(data).decode()."
        ) from None


def decode_image(
    data: bytes, limits: ImageLimits, box: Sequence[int] | None = None
) -> DecodedImage:
    """Decode ``data`` to RGB within ``limits`` (see the module notes);
    ``box`` lets a large JPEG decode at a reduced scale that still covers the
    region at the embedder's size."""
    if len(data) == 0:
        raise ImageRejected(
            "image is empty (0 bytes): send the photo's encoded bytes (JPEG, PNG "
            "or WebP)."
        )
    if len(data) > limits.max_bytes:
        raise ImageRejected(
            f"image is {_mib(len(data))}; at most {_mib(limits.max_bytes)} are "
            f"accepted (max_bytes): send a smaller JPEG, the embedder only sees "
            f"{limits.image_size} x {limits.image_size} pixels.",
            413,
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError):
        raise ImageRejected(
            f"image ({len(data):,} bytes) is not an image Pillow can decode: send "
            "the bytes of a JPEG, PNG or WebP file."
        ) from None
    width, height = image.size
    if width * height > limits.max_pixels:
        raise ImageRejected(
            f"image declares {width} x {height} = {width * height:,} pixels; at most "
            f"{limits.max_pixels:,} are accepted (max_pixels): resize it on the "
            "device before sending.",
            413,
        )
    if min(width, height) < limits.min_side:
        raise ImageRejected(
            f"image is {width} x {height} pixels; both sides must be at least "
            f"{limits.min_side} (min_side) to search."
        )
    if image.format == "JPEG":
        _draft(image, width, height, box, limits)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            rgb = image.convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise ImageRejected(
            f"image ({image.format}, {width} x {height}) could not be decoded: "
            f"{type(error).__name__}: {error}. The file is truncated or corrupt; "
            "send it again."
        ) from None
    return DecodedImage(rgb, width, height, image.format or "unknown")


def _draft(
    image: Image.Image,
    width: int,
    height: int,
    box: Sequence[int] | None,
    limits: ImageLimits,
) -> None:
    """Ask the JPEG decoder for the smallest scale (1/2, 1/4, 1/8) at which the
    query window still has at least ``image_size`` pixels a side."""
    side = max(width, height)
    if box is not None and _box_ok(box, width, height):
        side = max(box[2] - box[0], box[3] - box[1]) * (1.0 + limits.margin)
    reduce = side / (2 * limits.image_size)  # keep twice the needed detail
    if reduce >= 2:
        image.draft("RGB", (math.ceil(width / reduce), math.ceil(height / reduce)))


def _box_ok(box: Sequence[int], width: int, height: int) -> bool:
    x0, y0, x1, y1 = box
    return 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


def check_box(box: Sequence[int], width: int, height: int, min_side: int = 1) -> None:
    """Refuse a box that is not ``x0 < x1 <= width``, ``y0 < y1 <= height``
    (non-negative, end exclusive) with sides of at least ``min_side``."""
    if len(box) != 4 or not all(
        isinstance(v, int | np.integer) and not isinstance(v, bool) for v in box
    ):
        raise ImageRejected(
            f"box must be four integers [x0, y0, x1, y1] in pixels, got {list(box)}."
        )
    x0, y0, x1, y1 = (int(v) for v in box)
    if not _box_ok((x0, y0, x1, y1), width, height):
        raise ImageRejected(
            f"box [{x0}, {y0}, {x1}, {y1}] is not inside the {width} x {height} image "
            "with x0 < x1 and y0 < y1: send 0 <= x0 < x1 <= width and 0 <= y0 < y1 "
            "<= height, in the image's pixels (end exclusive)."
        )
    if min(x1 - x0, y1 - y0) < min_side:
        raise ImageRejected(
            f"box [{x0}, {y0}, {x1}, {y1}] is {x1 - x0} x {y1 - y0} pixels; both "
            f"sides must be at least {min_side} (min_side) to search."
        )


def crop_window(
    decoded: DecodedImage, box: Sequence[int] | None, limits: ImageLimits
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """The square around ``box`` grown by ``limits.margin`` (the whole photo,
    padded to a square, without a box): the pixels it covers, border repeated
    outside the photo, and the window's float bounds within them."""
    if box is None:
        box, margin = (0, 0, decoded.width, decoded.height), 0.0
    else:
        check_box(box, decoded.width, decoded.height, min(limits.min_side, 2))
        margin = limits.margin
    s = decoded.scale
    x0, y0, x1, y1 = (float(v) * s for v in box)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    half = max(max(x1 - x0, y1 - y0) / 2.0 * (1.0 + margin), 2.0)
    wx0, wy0, wx1, wy1 = cx - half, cy - half, cx + half, cy + half
    ix0, iy0 = math.floor(wx0), math.floor(wy0)
    ix1, iy1 = math.ceil(wx1), math.ceil(wy1)
    width, height = decoded.image.size
    inside = (max(ix0, 0), max(iy0, 0), min(ix1, width), min(iy1, height))
    pixels = np.asarray(decoded.image.crop(inside))
    pad = (
        (inside[1] - iy0, iy1 - inside[3]),
        (inside[0] - ix0, ix1 - inside[2]),
        (0, 0),
    )
    if any(p for pair in pad[:2] for p in pair):
        pixels = np.pad(pixels, pad, mode="edge")
    window = (wx0 - ix0, wy0 - iy0, wx1 - ix0, wy1 - iy0)
    return Image.fromarray(pixels), window


def resize_square(
    image: Image.Image, window: tuple[float, float, float, float], size: int
) -> np.ndarray:
    """``window`` of ``image`` resampled to ``uint8 (size, size, 3)`` (bilinear)."""
    resized = image.resize((size, size), Image.Resampling.BILINEAR, box=window)
    return np.ascontiguousarray(np.asarray(resized, dtype=np.uint8))


def region_pixels(
    pixels: np.ndarray, box: Sequence[int] | None, limits: ImageLimits
) -> np.ndarray:
    """The embedder's input for ``box`` of decoded ``uint8 (H, W, 3)``
    ``pixels``: the gateway's crop and resize, for a job that embeds known
    regions offline (one definition of the query region on both paths, so a
    precomputed region's vector is the one its photo would get)."""
    array = np.ascontiguousarray(pixels, dtype=np.uint8)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageRejected(
            f"pixels must be uint8 (H, W, 3), got shape {array.shape}: decode the "
            "image to RGB first."
        )
    height, width = array.shape[:2]
    decoded = DecodedImage(Image.fromarray(array), width, height, "array")
    image, window = crop_window(decoded, box, limits)
    return resize_square(image, window, limits.image_size)
