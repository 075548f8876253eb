"""Batched image augmentations that turn a catalogue shot into a user-like photo.

Introduced in ``casestudies/visual_search/index.md`` (the follow-up on the gap
between catalogue and user photos: augmentation is its cheapest remedy).
Catalogue images show a product centred on a plain backdrop; users photograph
it at another scale and angle, in front of a cluttered room with other things
in it, under other light, blurred and noisy. An embedder trained on catalogue
shots alone learns the backdrop as much as the product, so every training image
goes through :func:`augment` first, which imitates each of those differences:

1. **Cut the product out.** A catalogue backdrop is plain, so the pixels that
   differ from the colour of the image's border are the product (a soft mask,
   closed to fill small holes). An image whose border is not plain (already a
   photo) is kept whole.
2. **Reframe it** (random resized crop, generalized): one affine warp per image
   scales the product up (a crop) or down (a photo from further away), changes
   its aspect (a side view), turns it, shifts it, and mirrors it with
   probability ``flip`` (off by default: a mirrored product is another product
   when its pattern has a direction).
3. **Put it in a room.** With probability ``background`` the backdrop becomes
   clutter (a two-colour gradient, stripes, blobs and boxes); with probability
   ``distractors`` another product of the batch stands behind it, smaller.
4. **Change the camera**: brightness, contrast, saturation, a colour cast, a
   Gaussian blur and sensor noise, each drawn per image.
5. **Occlude**: with probability ``cutout`` a box of random colour covers part
   of the frame.

Everything is batched torch on ``(n, 3, H, W)`` floats in ``[0, 1]`` and every
draw comes from the ``torch.Generator`` passed in, so a seed fixes the views.
The supervised trainer uses one view per image; the self-supervised one
(SimCLR) two views of each image, which must agree (Chen et al. 2020).
:meth:`Augmentation.scaled` scales every range and probability toward "no
change" (0) or beyond the defaults (up to 2), one knob for a sweep.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mlsd_lib.errors import MlsdError

__all__ = ["Augmentation", "AugmentationError", "augment", "foreground_mask"]

Range = tuple[float, float]


class AugmentationError(MlsdError, ValueError):
    """An augmentation setting is out of range; the message names it."""


#: Each range's "no change" value, toward which :meth:`Augmentation.scaled` moves.
_IDENTITY = {
    "scale": 1.0,
    "aspect": 1.0,
    "brightness": 1.0,
    "contrast": 1.0,
    "saturation": 1.0,
    "blur": 0.0,
    "noise": 0.0,
}
_PROBABILITIES = ("flip", "background", "distractors", "cutout")
_MAGNITUDES = ("rotation", "shift", "colour_cast")


@dataclass(frozen=True)
class Augmentation:
    """How far an augmented view may stray from the image it came from.

    Ranges are ``(low, high)``, drawn uniformly per image. ``scale`` multiplies
    the product's size in the frame (below 1: further away, the new border is
    backdrop; above 1: a crop), ``aspect`` its width over its height,
    ``rotation`` turns it by up to that many degrees either way and ``shift``
    moves its centre by up to that share of the half-frame. ``brightness``,
    ``contrast`` and ``saturation`` multiply; ``colour_cast`` scales each channel
    by ``1 + u * colour_cast`` with ``u`` uniform in -1..1; ``blur`` is a
    Gaussian's sigma in pixels and ``noise`` the standard deviation of added
    sensor noise. ``flip``, ``background``, ``distractors`` and ``cutout`` are
    probabilities (see the module docstring).
    """

    scale: Range = (0.7, 1.3)
    aspect: Range = (0.7, 1.2)
    rotation: float = 25.0
    shift: float = 0.25
    flip: float = 0.0
    brightness: Range = (0.65, 1.25)
    contrast: Range = (0.7, 1.15)
    saturation: Range = (0.7, 1.3)
    colour_cast: float = 0.12
    blur: Range = (0.0, 1.2)
    noise: Range = (0.0, 0.05)
    background: float = 0.8
    distractors: float = 0.5
    cutout: float = 0.2

    def __post_init__(self) -> None:
        for name in _IDENTITY:
            value = getattr(self, name)
            if (
                not isinstance(value, tuple)
                or len(value) != 2
                or not 0.0 <= value[0] <= value[1]
            ):
                raise AugmentationError(
                    f"Augmentation.{name} must be a (low, high) pair with "
                    f"0 <= low <= high, got {value!r}."
                )
        if self.scale[0] <= 0 or self.aspect[0] <= 0:
            raise AugmentationError(
                f"Augmentation.scale and .aspect must be > 0, got {self.scale} and "
                f"{self.aspect}."
            )
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise AugmentationError(
                    f"Augmentation.{name} is a probability and must be in [0, 1], "
                    f"got {getattr(self, name)}."
                )
        for name in _MAGNITUDES:
            if getattr(self, name) < 0:
                raise AugmentationError(
                    f"Augmentation.{name} must be >= 0, got {getattr(self, name)}."
                )

    @classmethod
    def none(cls) -> Augmentation:
        """No change at all: :func:`augment` returns the images as they are."""
        return cls().scaled(0.0)

    def scaled(self, strength: float) -> Augmentation:
        """Every range, magnitude and probability moved ``strength`` of the way
        from "no change" (0) to this setting (1), or beyond it (up to 2);
        probabilities are capped at 1."""
        if not 0.0 <= strength <= 2.0:
            raise AugmentationError(
                f"augmentation strength must be in [0, 2], got {strength}."
            )
        changes: dict[str, object] = {}
        for name, identity in _IDENTITY.items():
            low, high = getattr(self, name)
            changes[name] = (
                max(identity + strength * (low - identity), 0.0),
                identity + strength * (high - identity),
            )
        for name in _PROBABILITIES:
            changes[name] = min(strength * getattr(self, name), 1.0)
        for name in _MAGNITUDES:
            changes[name] = strength * getattr(self, name)
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_identity(self) -> bool:
        return self == Augmentation.none()


def _uniform(
    bounds: Range | tuple[float, float], n: int, generator: torch.Generator
) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=generator)


def _border(images: torch.Tensor, width: int = 2) -> torch.Tensor:
    """The pixels of each image's frame, ``(n, 3, m)``."""
    n = images.shape[0]
    top, bottom = images[:, :, :width, :], images[:, :, -width:, :]
    left, right = (
        images[:, :, width:-width, :width],
        images[:, :, width:-width, -width:],
    )
    return torch.cat([t.reshape(n, 3, -1) for t in (top, bottom, left, right)], dim=2)


def foreground_mask(
    images: torch.Tensor, threshold: float = 0.06, plain_std: float = 0.04
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask (n, 1, H, W) in [0, 1], backdrop colour (n, 3))`` of each image.

    The backdrop colour is the median of the image's border; a pixel belongs to
    the product as its largest channel difference from that colour grows past
    ``threshold`` (soft over one more ``threshold``), and a 5 x 5 closing fills
    small holes (a product's light stripe the colour of the backdrop). An image
    whose border varies by more than ``plain_std`` is no catalogue shot (a
    photo, a crop): its mask is all ones.
    """
    border = _border(images)
    backdrop = border.median(dim=2).values
    plain = border.std(dim=2).amax(dim=1) <= plain_std
    distance = (images - backdrop[:, :, None, None]).abs().amax(dim=1, keepdim=True)
    mask = ((distance - threshold) / threshold).clamp(0.0, 1.0)
    mask = -_max_filter(-_max_filter(mask, 5), 5)  # dilate, then erode: a closing
    mask = torch.where(plain[:, None, None, None], mask, torch.ones_like(mask))
    return mask, backdrop


def _max_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """A ``size`` x ``size`` moving maximum (beyond the edge counts as -inf), as
    running maxima of shifted copies: cheaper than a stride-1 max pooling."""
    half = size // 2
    h, w = x.shape[-2:]
    padded = F.pad(x, (half, half, 0, 0), value=float("-inf"))
    rows = padded[..., :, :w]
    for shift in range(1, size):
        rows = torch.maximum(rows, padded[..., :, shift : shift + w])
    padded = F.pad(rows, (0, 0, half, half), value=float("-inf"))
    out = padded[..., :h, :]
    for shift in range(1, size):
        out = torch.maximum(out, padded[..., shift : shift + h, :])
    return out


def _warp(
    images: torch.Tensor,
    scale: torch.Tensor,
    aspect: torch.Tensor,
    angle: torch.Tensor,
    centre: torch.Tensor,
    mirror: torch.Tensor,
) -> torch.Tensor:
    """Draw each image's content at ``scale``, ``aspect``, ``angle`` (radians)
    and ``centre`` (normalized output coordinates), mirrored where ``mirror``;
    zeros outside the source frame."""
    sx = scale * aspect.sqrt() * torch.where(mirror, -1.0, 1.0)
    sy = scale / aspect.sqrt()
    cos, sin = angle.cos(), angle.sin()
    # input = M (output - centre), M = diag(1/sx, 1/sy) R(-angle)
    m = torch.stack(
        [
            torch.stack([cos / sx, sin / sx], dim=1),
            torch.stack([-sin / sy, cos / sy], dim=1),
        ],
        dim=1,
    )
    offset = -(m @ centre.unsqueeze(2))
    theta = torch.cat([m, offset], dim=2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="zeros", align_corners=False)


def _colours(
    n: int,
    saturation: tuple[float, float],
    value: tuple[float, float],
    generator: torch.Generator,
) -> torch.Tensor:
    """``(n, 3, 1, 1)`` colours of random hue, saturation and value in the ranges.

    Rooms are mostly muted (walls, floors, furniture), so clutter is drawn in
    HSV with a capped saturation rather than uniformly in RGB, which would make
    most backdrops loud.
    """
    hue = torch.rand(n, 1, generator=generator)
    sat = _uniform(saturation, n, generator).view(n, 1)
    val = _uniform(value, n, generator).view(n, 1)
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue * 6) % 6
    ramp = torch.minimum(torch.minimum(k, 4 - k), torch.ones(1)).clamp(min=0)
    return (val - val * sat * ramp).view(n, 3, 1, 1)


def _clutter(n: int, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    """Room-like backdrops: a two-colour gradient, stripes, then blobs and boxes.

    Drawn at half resolution and upsampled: a backdrop has no fine detail to
    lose, and the draw costs a quarter.
    """
    full = (h, w)
    h, w = max(h // 2, 1), max(w // 2, 1)
    ys = torch.linspace(-1, 1, h).view(1, h, 1)
    xs = torch.linspace(-1, 1, w).view(1, 1, w)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator)

    phi = (rand(n) * 2 * math.pi).view(n, 1, 1)
    t = ((xs * phi.cos() + ys * phi.sin()) / 2 + 0.5).unsqueeze(1)
    start = _colours(n, (0.05, 0.5), (0.3, 0.9), generator)
    end = _colours(n, (0.05, 0.5), (0.3, 0.9), generator)
    room = start * (1 - t) + end * t
    psi = (rand(n) * 2 * math.pi).view(n, 1, 1)
    freq = (3 + 12 * rand(n)).view(n, 1, 1)
    stripes = torch.sin(freq * (xs * psi.cos() + ys * psi.sin()) + 6.3 * rand(n, 1, 1))
    room = room + (0.1 * rand(n, 1, 1) * stripes).unsqueeze(1)
    for _ in range(4):
        cx, cy = (rand(n, 1, 1) * 2 - 1), (rand(n, 1, 1) * 2 - 1)
        rx, ry = 0.1 + 0.4 * rand(n, 1, 1), 0.1 + 0.4 * rand(n, 1, 1)
        dx, dy = (xs - cx) / rx, (ys - cy) / ry
        box = rand(n, 1, 1) < 0.5
        inside = torch.where(
            box,
            (dx.abs() < 1) & (dy.abs() < 1),
            dx.pow(2) + dy.pow(2) < 1,
        ) & (rand(n, 1, 1) < 0.7)
        colour = _colours(n, (0.1, 0.7), (0.25, 0.95), generator)
        room = torch.where(inside.unsqueeze(1), colour, room)
    room = F.interpolate(room, size=full, mode="bilinear", align_corners=False)
    return room.clamp(0.0, 1.0)


def _blur(images: torch.Tensor, sigma: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """A separable Gaussian blur with its own sigma per image (0: unchanged)."""
    n, c, h, w = images.shape
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype)
    s = sigma.clamp(min=1e-3).view(n, 1)
    kernel = torch.exp(-(taps.view(1, -1) ** 2) / (2 * s**2))
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)
    x = images.reshape(1, n * c, h, w)
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(n * c, 1, 1, -1), groups=n * c)
    x = F.conv2d(x, kernel.view(n * c, 1, -1, 1), groups=n * c)
    return x.reshape(n, c, h, w)


def augment(
    images: torch.Tensor,
    generator: torch.Generator,
    config: Augmentation | None = None,
) -> torch.Tensor:
    """One random user-style view of each image (``(n, 3, H, W)`` in ``[0, 1]``).

    The steps are the module docstring's; every draw comes from ``generator``,
    so the same generator state and images give the same views. ``config``
    defaults to :class:`Augmentation` (``Augmentation.none()`` returns the
    images unchanged). No gradients flow: this prepares inputs.
    """
    config = config or Augmentation()
    if images.ndim != 4 or images.shape[1] != 3:
        raise AugmentationError(
            f"augment takes a float batch (n, 3, H, W), got shape "
            f"{tuple(images.shape)}: use ImageSet.to_tensor()."
        )
    if config.is_identity:
        return images
    n, _, h, w = images.shape
    with torch.no_grad():
        mask, backdrop = foreground_mask(images)

        def draw(bounds: Range) -> torch.Tensor:
            return _uniform(bounds, n, generator)

        def chance(p: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) < p

        # 2. reframe: one affine warp per image, of the image and of its mask
        scale, aspect = draw(config.scale), draw(config.aspect)
        angle = draw((-1.0, 1.0)) * math.radians(config.rotation)
        centre = torch.stack([draw((-1.0, 1.0)), draw((-1.0, 1.0))], 1) * config.shift
        mirror = chance(config.flip)
        warped = _warp(
            torch.cat([images, mask], 1), scale, aspect, angle, centre, mirror
        )
        subject, subject_mask = warped[:, :3], warped[:, 3:]
        # 3. a room behind it, and another product of the batch in the room
        room = _clutter(n, h, w, generator)
        plain = backdrop[:, :, None, None].expand(n, 3, h, w)
        x = torch.where(chance(config.background)[:, None, None, None], room, plain)
        if n > 1 and config.distractors > 0:
            other = torch.cat([images, mask], 1).roll(n // 2, dims=0)
            phi = draw((0.0, 2 * math.pi))
            reach = draw((0.55, 0.9))
            where = torch.stack([reach * phi.cos(), reach * phi.sin()], 1)
            behind = _warp(
                other,
                draw((0.3, 0.5)),
                draw((0.8, 1.2)),
                draw((-0.5, 0.5)),
                where,
                torch.zeros(n, dtype=torch.bool),
            )
            shown = behind[:, 3:] * chance(config.distractors)[:, None, None, None]
            x = shown * behind[:, :3] + (1 - shown) * x
        x = subject_mask * subject + (1 - subject_mask) * x
        # 4. the camera
        x = x * draw(config.brightness)[:, None, None, None]
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * draw(config.contrast)[:, None, None, None] + mean
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * draw(config.saturation)[:, None, None, None] + grey
        gains = 1 + (torch.rand(n, 3, generator=generator) * 2 - 1) * config.colour_cast
        x = x * gains[:, :, None, None]
        x = _blur(x, draw(config.blur))
        noise = torch.randn(x.shape, generator=generator)
        x = x + draw(config.noise)[:, None, None, None] * noise
        # 5. an occluding box
        ys = torch.linspace(-1, 1, h).view(1, h, 1)
        xs = torch.linspace(-1, 1, w).view(1, 1, w)
        cx, cy = draw((-1.0, 1.0)).view(n, 1, 1), draw((-1.0, 1.0)).view(n, 1, 1)
        half = draw((0.15, 0.35)).view(n, 1, 1)
        box = ((xs - cx).abs() < half) & ((ys - cy).abs() < half)
        box = box & chance(config.cutout).view(n, 1, 1)
        fill = torch.rand(n, 3, 1, 1, generator=generator)
        x = torch.where(box.unsqueeze(1), fill, x)
        return x.clamp(0.0, 1.0)
