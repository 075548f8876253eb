"""The image world's renderer: products drawn from signed distances, in batches.

Introduced in ``casestudies/visual_search/index.md`` (the synthetic world). A
product is a shape *kind* (vase, box, lamp, ...) drawn by a signed-distance
function (SDF) of object-local coordinates: negative inside, positive outside,
zero on the outline. Evaluating it on every pixel of a batch of coordinate
grids at once draws hundreds of images per call with no per-pixel Python; the
distance also gives anti-aliased edges (alpha = 0.5 - distance in pixels), an
outline and the product's exact mask, from which a photo's true box is read.
A pattern (stripes, dots, checks, rings, zigzag) is a periodic function of the
same local coordinates, so it turns and stretches with the product.

A scene is a backdrop (:class:`Backdrop`: a light studio sweep for the
catalogue, or gradients, textures and blobs for a user's room), objects drawn
back to front (:class:`Objects`, one per image per layer; the last is the
subject) and a camera (:class:`Camera`: brightness, contrast, colour cast,
Gaussian blur, sensor noise). :func:`render` takes them as arrays of
per-image parameters and returns ``uint8`` images and the subject's mask;
the world (:mod:`mlsd_lib.worlds.images`) decides the parameters. The
arithmetic runs in torch on CPU (on one thread when the machine is busy:
:func:`one_torch_thread`), in chunks small enough for the cache: thousands of
64 x 64 images a second (``benchmarks/image_render.py``).

Drawing with SDFs rather than a rasteriser or a 3-D engine is the choice that
keeps the world dependency-free, vectorized and exact: a mask is a threshold,
a pose is an affine map of the grid, and every pixel is a deterministic
function of the parameters (the sensor noise of a seeded generator).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "KINDS",
    "PATTERNS",
    "Backdrop",
    "Camera",
    "Objects",
    "crop_boxes",
    "hashed_uniform",
    "hsv_to_rgb",
    "masks_to_boxes",
    "one_torch_thread",
    "render",
]

#: Shape kinds, in category order: a world with ``n_categories`` uses the first ones.
KINDS = (
    "vase",
    "box",
    "lamp",
    "bottle",
    "chair",
    "bag",
    "star",
    "mug",
    "umbrella",
    "heart",
)
#: Surface patterns, shared by a family; ``plain`` has none.
PATTERNS = ("plain", "stripes", "dots", "checks", "rings", "zigzag")
#: Images per chunk: 128 x 3 x 64 x 64 float32 is 6 MB, near the cache.
CHUNK = 128
#: Blobs of clutter per cluttered backdrop.
N_BLOBS = 3


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block on one torch thread when the machine is busy.

    The renderer's tensors are small (a chunk is a few MB). On a quiet 2-core
    machine two OpenMP threads render about 1.5 times faster than one; on a
    busy one (a shared CI runner, another job training beside it) threads
    that spin waiting for each other made rendering 7 times *slower* than one
    thread (measured at a load of 8 on 2 cores). So: one thread while the
    1-minute load average is at least the number of cores less one half, the
    caller's setting otherwise, restored after. The bytes are the same either
    way (the tests check 1 and 2 threads).
    """
    before = torch.get_num_threads()
    cores = os.cpu_count() or 1
    busy = os.getloadavg()[0] >= cores - 0.5 if hasattr(os, "getloadavg") else False
    if before == 1 or not busy:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def hashed_uniform(*keys: np.ndarray | int) -> np.ndarray:
    """Uniforms in [0, 1) that are a pure function of integer keys (broadcast).

    A counter-based generator (splitmix64 over the keys): the pose of view 2 of
    product 17 is the same whichever other products are rendered with it, so a
    catalogue grows without changing its old images.
    """
    arrays = np.broadcast_arrays(*[np.asarray(k, dtype=np.int64) for k in keys])
    x = np.full(arrays[0].shape, 0x243F6A8885A308D3, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for key in arrays:
            x = x ^ key.astype(np.uint64)
            x = x + np.uint64(0x9E3779B97F4A7C15)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] of hue (turns, wraps), saturation and value; shape (..., 3)."""
    h = np.mod(h, 1.0)[..., None]
    k = np.mod(np.array([5.0, 3.0, 1.0]) + h * 6.0, 6.0)
    ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return v[..., None] * (1.0 - s[..., None] * ramp)


def _take(obj: object, rows: np.ndarray) -> object:
    """The same dataclass of per-image arrays, at ``rows``."""
    return dataclasses.replace(
        obj,  # type: ignore[arg-type]
        **{f.name: getattr(obj, f.name)[rows] for f in dataclasses.fields(obj)},  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class Objects:
    """One object per image (``n`` of them, one layer of a scene).

    Identity: ``kind`` (index into :data:`KINDS`), ``variant`` (0-2, the
    family's version of the kind), ``part_a`` and ``part_b`` (0..1, part sizes),
    ``aspect`` (width stretch), ``colour`` and ``colour2`` (``(n, 3)`` RGB: body
    and pattern), ``pattern`` (index into :data:`PATTERNS`), ``pattern_freq``
    (cycles per half-height) and ``pattern_angle`` (radians). Pose: centre
    ``cx``, ``cy`` in the frame's [-1, 1] coordinates (x right, y down),
    ``scale`` (half-height as a fraction of the frame's half-height),
    ``rotation`` (radians) and ``squash`` (width kept when seen from the side).
    ``present`` is False where an image has no object in this layer.
    """

    kind: np.ndarray
    variant: np.ndarray
    part_a: np.ndarray
    part_b: np.ndarray
    aspect: np.ndarray
    colour: np.ndarray
    colour2: np.ndarray
    pattern: np.ndarray
    pattern_freq: np.ndarray
    pattern_angle: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    scale: np.ndarray
    rotation: np.ndarray
    squash: np.ndarray
    present: np.ndarray

    def __len__(self) -> int:
        return int(self.kind.shape[0])


@dataclass(frozen=True)
class Backdrop:
    """The background of each image: a gradient, a texture and blobs.

    ``base`` and ``second`` (``(n, 3)``) are the gradient's two ends along
    ``gradient_angle``; a grating of ``texture_colour`` with amplitude
    ``texture_amp`` (0: none), frequency ``texture_freq`` (cycles per frame)
    and angle ``texture_angle`` imitates wood, fabric or tiles; up to
    :data:`N_BLOBS` soft ovals or rectangles (``blob_*``, ``(n, N_BLOBS)``;
    ``blob_present`` False for none) stand for furniture and walls. A plain
    catalogue backdrop is ``base == second`` with no texture and no blobs.
    """

    base: np.ndarray
    second: np.ndarray
    gradient_angle: np.ndarray
    texture_colour: np.ndarray
    texture_amp: np.ndarray
    texture_freq: np.ndarray
    texture_angle: np.ndarray
    blob_present: np.ndarray
    blob_round: np.ndarray
    blob_cx: np.ndarray
    blob_cy: np.ndarray
    blob_hw: np.ndarray
    blob_hh: np.ndarray
    blob_colour: np.ndarray

    @classmethod
    def plain(cls, colour: np.ndarray) -> Backdrop:
        """A flat backdrop of ``colour`` (``(n, 3)``): the catalogue studio."""
        n = colour.shape[0]
        zeros, blobs = np.zeros(n), np.zeros((n, N_BLOBS))
        return cls(
            base=colour,
            second=colour,
            gradient_angle=zeros,
            texture_colour=np.zeros((n, 3)),
            texture_amp=zeros,
            texture_freq=zeros,
            texture_angle=zeros,
            blob_present=blobs.astype(bool),
            blob_round=blobs.astype(bool),
            blob_cx=blobs,
            blob_cy=blobs,
            blob_hw=blobs + 0.1,
            blob_hh=blobs + 0.1,
            blob_colour=np.zeros((n, N_BLOBS, 3)),
        )


@dataclass(frozen=True)
class Camera:
    """What the camera does to each picture (``n`` of them).

    ``brightness`` and ``contrast`` (around the image's mean) multiply,
    ``gains`` (``(n, 3)``) tint per channel, ``blur`` is a Gaussian sigma in
    pixels (5 taps, so up to about 1.5 px is faithful) and ``noise`` the
    standard deviation of additive Gaussian sensor noise.
    """

    brightness: np.ndarray
    contrast: np.ndarray
    gains: np.ndarray
    blur: np.ndarray
    noise: np.ndarray


# -- signed distances (negative inside) ------------------------------------------

Tensor = torch.Tensor


def _rect(
    u: Tensor, v: Tensor, cu: object, cv: object, hu: object, hv: object
) -> Tensor:
    """An axis-aligned rectangle (max-norm distance: exact near its edges)."""
    return torch.maximum((u - cu).abs() - hu, (v - cv).abs() - hv)


def _rounded(
    u: Tensor, v: Tensor, cu: object, cv: object, hu: object, hv: object, r: float
) -> Tensor:
    """A rectangle with corners rounded by ``r``."""
    qu = (u - cu).abs() - hu + r
    qv = (v - cv).abs() - hv + r
    outside = torch.sqrt(qu.clamp(min=0) ** 2 + qv.clamp(min=0) ** 2)
    return outside + torch.maximum(qu, qv).clamp(max=0) - r


def _disc(u: Tensor, v: Tensor, cu: object, cv: object, r: object) -> Tensor:
    return torch.sqrt((u - cu) ** 2 + (v - cv) ** 2) - r


def _oval(
    u: Tensor, v: Tensor, cu: object, cv: object, ru: object, rv: object
) -> Tensor:
    """An ellipse: the level set divided by its gradient (exact near the edge,
    however flat the ellipse)."""
    du, dv = u - cu, v - cv
    k0 = torch.sqrt((du / ru) ** 2 + (dv / rv) ** 2)
    k1 = torch.sqrt((du / (ru * ru)) ** 2 + (dv / (rv * rv)) ** 2).clamp_(min=1e-6)
    return k0 * (k0 - 1.0) / k1


def _ring(u: Tensor, v: Tensor, cu: object, cv: object, r: object, t: float) -> Tensor:
    return (torch.sqrt((u - cu) ** 2 + (v - cv) ** 2) - r).abs() - t


def _trapezoid(
    u: Tensor, v: Tensor, top: float, bottom: float, w_top: object, w_bottom: object
) -> Tensor:
    """Between rows ``top`` < ``bottom``, half-width from ``w_top`` to ``w_bottom``."""
    t = ((v - top) / (bottom - top)).clamp(0, 1)
    width = w_top + (w_bottom - w_top) * t
    half, mid = (bottom - top) / 2, (bottom + top) / 2
    return torch.maximum((u.abs() - width) * 0.9, (v - mid).abs() - half)


def _union(*parts: Tensor) -> Tensor:
    out = parts[0]
    for p in parts[1:]:
        out = torch.minimum(out, p)
    return out


def _vase(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    neck = 0.12 + 0.14 * a
    if variant == 0:  # round body, straight neck
        return _union(
            _disc(u, v, 0.0, 0.3, 0.6 + 0.1 * b),
            _rect(u, v, 0.0, -0.45, neck, 0.4),
            _rect(u, v, 0.0, -0.88, neck + 0.09, 0.07),
        )
    if variant == 1:  # tall amphora
        return _union(
            _oval(u, v, 0.0, 0.2, 0.4 + 0.12 * b, 0.78),
            _rect(u, v, 0.0, -0.62, neck, 0.3),
            _rect(u, v, 0.0, -0.9, neck + 0.07, 0.06),
        )
    return _union(  # squat bowl with a flared mouth
        _oval(u, v, 0.0, 0.45, 0.78 + 0.12 * b, 0.5),
        _rect(u, v, 0.0, -0.25, neck, 0.45),
        _oval(u, v, 0.0, -0.76, neck + 0.28, 0.13),
    )


def _box(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    hu, hv = 0.7 + 0.18 * b, 0.5 + 0.2 * a
    if variant == 0:  # crate
        return _rounded(u, v, 0.0, 0.1, hu, hv, 0.05)
    if variant == 1:  # box with a lid, a gap between them
        body = _rounded(u, v, 0.0, 0.2, hu, hv - 0.1, 0.04)
        lid = _rect(u, v, 0.0, 0.2 - hv - 0.06, hu + 0.08, 0.12)
        return torch.minimum(body, lid)
    top = 0.25 - hv + 0.15  # gift box with a bow on top
    return _union(
        _rounded(u, v, 0.0, 0.25, hu, hv - 0.15, 0.08),
        _disc(u, v, -0.2, top - 0.16, 0.18),
        _disc(u, v, 0.2, top - 0.16, 0.18),
    )


def _lamp(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    top_w, bottom_w = 0.25 + 0.15 * a, 0.62 + 0.25 * a
    if variant == 0:  # conical shade
        shade = _trapezoid(u, v, -1.0, -0.15, top_w, bottom_w)
    elif variant == 1:  # dome
        shade = torch.maximum(_oval(u, v, 0.0, -0.15, bottom_w, 0.85), v + 0.15)
    else:  # drum
        shade = _rect(u, v, 0.0, -0.6, bottom_w * 0.8, 0.42)
    return _union(
        shade,
        _rect(u, v, 0.0, 0.35, 0.05 + 0.03 * b, 0.55),
        _oval(u, v, 0.0, 0.88, 0.32 + 0.22 * b, 0.11),
    )


def _bottle(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    body = 0.3 + 0.15 * b
    if variant == 0:  # round shoulders
        return _union(
            _rounded(u, v, 0.0, 0.35, body, 0.63, 0.1),
            _disc(u, v, 0.0, -0.2, body),
            _rect(u, v, 0.0, -0.6, 0.1 + 0.05 * a, 0.3),
            _rect(u, v, 0.0, -0.9, 0.14 + 0.05 * a, 0.09),
        )
    if variant == 1:  # wine bottle: sloped shoulders, long neck
        return _union(
            _rounded(u, v, 0.0, 0.4, body, 0.58, 0.06),
            _oval(u, v, 0.0, -0.15, body, 0.35),
            _rect(u, v, 0.0, -0.6, 0.07 + 0.04 * a, 0.38),
            _rect(u, v, 0.0, -0.95, 0.09 + 0.04 * a, 0.06),
        )
    return _union(  # flask: broad square body, short neck, big cap
        _rounded(u, v, 0.0, 0.25, body + 0.18, 0.72, 0.2),
        _rect(u, v, 0.0, -0.62, 0.12 + 0.05 * a, 0.2),
        _rect(u, v, 0.0, -0.88, 0.2 + 0.06 * a, 0.11),
    )


def _chair(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    width = 0.55 + 0.12 * b
    back_h = 0.3 + 0.13 * a
    back_c = -0.14 - back_h
    seat = _rect(u, v, 0.0, 0.0, width + 0.15, 0.12)
    legs = _rect(u.abs(), v, width + 0.02, 0.55, 0.07, 0.45)
    back = _rect(u, v, 0.0, back_c, width, back_h)
    if variant == 1:  # open frame back
        back = torch.maximum(
            back, -_rect(u, v, 0.0, back_c, width - 0.16, back_h - 0.15)
        )
    elif variant == 2:  # ladder back: two posts and three rails
        posts = _rect(u.abs(), v, width - 0.06, back_c, 0.07, back_h)
        rails = _rect(u, ((v - back_c) / back_h).abs() * back_h, 0.0, 0.0, width, 0.06)
        rails = torch.minimum(
            rails, _rect(u, v, 0.0, back_c - back_h + 0.06, width, 0.06)
        )
        back = torch.minimum(posts, rails)
    return _union(seat, legs, back)


def _bag(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    if variant == 0:  # tote: tapered body, arched handle
        body = _trapezoid(u, v, -0.25, 1.0, 0.55 + 0.1 * b, 0.72 + 0.15 * b)
        handle = torch.maximum(_ring(u, v, 0.0, -0.25, 0.33 + 0.12 * a, 0.06), v + 0.25)
    elif variant == 1:  # rounded purse, small ring handle
        body = _rounded(u, v, 0.0, 0.35, 0.72 + 0.1 * b, 0.62, 0.28)
        handle = torch.maximum(_ring(u, v, 0.0, -0.25, 0.22 + 0.1 * a, 0.08), v + 0.25)
    else:  # shoulder bag: square body, long thin strap
        body = _rounded(u, v, 0.0, 0.4, 0.8 + 0.1 * b, 0.55, 0.08)
        strap = _ring(u, v, 0.0, -0.1, 0.6 + 0.15 * a, 0.04)
        handle = torch.maximum(strap, v + 0.1)
    return torch.minimum(body, handle)


def _star(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    points = (5, 6, 4)[variant]
    outer = 0.85 + 0.12 * b
    inner = outer * (0.36 + 0.22 * a)
    rho = torch.sqrt(u * u + v * v)
    turn = torch.atan2(u, -v) * (points / (2 * math.pi))
    tip = ((turn - torch.floor(turn)) - 0.5).abs() * 2.0  # 1 at a point, 0 between
    return (rho - (inner + (outer - inner) * tip)) * 0.6


def _mug(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    width = 0.45 + 0.1 * b
    r = 0.26 + 0.08 * a
    if variant == 0:  # straight mug
        body = _rounded(u, v, -0.15, 0.1, width, 0.72, 0.08)
        cv = 0.05
    elif variant == 1:  # tapered cup, wide rim
        body = _trapezoid(u + 0.15, v, -0.62, 0.82, width + 0.12, width - 0.12)
        cv = 0.0
    else:  # short cup on a saucer
        body = _rounded(u, v, -0.15, 0.2, width, 0.5, 0.12)
        cv = 0.15
        body = torch.minimum(body, _oval(u, v, -0.1, 0.82, 0.95, 0.1))
    handle = torch.maximum(_ring(u, v, width - 0.12, cv, r, 0.07), width - 0.1 - u)
    return torch.minimum(body, handle)


def _umbrella(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    height = 0.45 + 0.35 * a
    canopy = torch.maximum(_oval(u, v, 0.0, -0.05, 0.95, height), v + 0.05)
    if variant < 2:  # scalloped hem: 4 or 6 bites
        n = (4, 6)[variant]
        period = 1.9 / n
        x = torch.remainder(u + 0.95, period) - period / 2
        canopy = torch.maximum(
            canopy, -(torch.sqrt(x * x + (v + 0.05) ** 2) - period / 2)
        )
    hook_r = 0.12 + 0.08 * b
    hook = torch.maximum(_ring(u, v, hook_r, 0.8, hook_r, 0.045), 0.8 - v)
    return _union(canopy, _rect(u, v, 0.0, 0.38, 0.045, 0.45), hook)


def _heart(u: Tensor, v: Tensor, variant: int, a: Tensor, b: Tensor) -> Tensor:
    lobe = (0.46, 0.52, 0.4)[variant] + 0.06 * a
    spread = 0.4 + 0.08 * b
    lobes = torch.minimum(
        _disc(u, v, -spread, -0.3, lobe), _disc(u, v, spread, -0.3, lobe)
    )
    tip = 0.95 if variant != 2 else 0.7
    point = torch.maximum(0.807 * u.abs() + 0.59 * (v - tip), -(v + 0.3))
    return torch.minimum(lobes, point)


_SHAPES = (_vase, _box, _lamp, _bottle, _chair, _bag, _star, _mug, _umbrella, _heart)


# -- patterns (0 = body colour, 1 = pattern colour) ------------------------------


def _pattern(kind: int, u: Tensor, v: Tensor, freq: Tensor, angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    pu, pv = u * c + v * s, v * c - u * s
    tau = 2 * math.pi
    name = PATTERNS[kind]
    if name == "stripes":
        wave = torch.sin(tau * freq * pu)
    elif name == "dots":
        fu = torch.remainder(pu * freq, 1.0) - 0.5
        fv = torch.remainder(pv * freq, 1.0) - 0.5
        wave = (0.3 - torch.sqrt(fu * fu + fv * fv)) * 6.0
    elif name == "checks":
        wave = torch.sin(tau * freq * pu) * torch.sin(tau * freq * pv) * 2.0
    elif name == "rings":
        wave = torch.sin(tau * freq * torch.sqrt(u * u + v * v))
    else:  # zigzag
        zig = (torch.remainder(pu * freq, 1.0) - 0.5).abs()
        wave = torch.sin(tau * (freq * pv + zig))
    return (0.5 + 2.5 * wave).clamp_(0.0, 1.0)


# -- scene assembly --------------------------------------------------------------


def _rows(t: Tensor, idx: Tensor) -> Tensor:
    """``t[idx]`` along the first axis; ``index_select`` is ~50x faster on CPU
    than advanced indexing for these shapes (torch 2.x)."""
    return t.index_select(0, idx)


def _col(values: np.ndarray) -> Tensor:
    """Per-image values as a float32 (n, 1, 1) tensor."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32)).view(
        -1, 1, 1
    )


def _grid(size: int) -> Tensor:
    """Pixel centres in [-1, 1]."""
    return (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0


def _blend(img: Tensor, alpha: Tensor, colour: Tensor) -> None:
    """``img = img * (1 - alpha) + colour * alpha`` in place (two channel passes).

    ``alpha`` is ``(n, 1, H, W)`` and ``colour`` ``(n, 3, 1, 1)``; images with
    nothing to draw have alpha 0, cheaper than gathering the others' rows.
    """
    img.mul_(1.0 - alpha)
    img.addcmul_(colour, alpha)


def _draw_backdrop(back: Backdrop, size: int) -> Tensor:
    n = back.base.shape[0]
    g = _grid(size)
    x, y = g.view(1, 1, size), g.view(1, size, 1)
    base = torch.from_numpy(back.base.astype(np.float32)).view(n, 3, 1, 1)
    second = torch.from_numpy(back.second.astype(np.float32)).view(n, 3, 1, 1)
    angle = _col(back.gradient_angle)
    ramp = (0.5 + 0.5 * (x * torch.cos(angle) + y * torch.sin(angle))).clamp_(0, 1)
    img = torch.addcmul(base, second - base, ramp.unsqueeze(1))
    amp = back.texture_amp
    if np.any(amp > 0):
        t_angle, freq = _col(back.texture_angle), _col(back.texture_freq)
        phase = x * torch.cos(t_angle) + y * torch.sin(t_angle)
        across = y * torch.cos(t_angle) - x * torch.sin(t_angle)
        wave = torch.sin(math.pi * freq * phase) * (
            0.6 + 0.4 * torch.sin(math.pi * 0.37 * freq * across)
        )
        tex = torch.from_numpy(back.texture_colour.astype(np.float32)).view(n, 3, 1, 1)
        _blend(img, (_col(amp) * (0.5 + 0.5 * wave)).unsqueeze(1), tex)
    pix = 2.0 / size
    for k in range(back.blob_present.shape[1]):
        present = back.blob_present[:, k]
        if not present.any():
            continue
        cx, cy = _col(back.blob_cx[:, k]), _col(back.blob_cy[:, k])
        hw, hh = _col(back.blob_hw[:, k]), _col(back.blob_hh[:, k])
        dx, dy = x - cx, y - cy
        oval = (torch.sqrt((dx / hw) ** 2 + (dy / hh) ** 2) - 1.0) * torch.minimum(
            hw, hh
        )
        rect = torch.maximum(dx.abs() - hw, dy.abs() - hh)
        rnd = torch.from_numpy(back.blob_round[:, k]).view(-1, 1, 1)
        alpha = (0.5 - torch.where(rnd, oval, rect) / pix).clamp_(0, 1)
        alpha.mul_(_col(present))
        colour = torch.from_numpy(back.blob_colour[:, k].astype(np.float32))
        _blend(img, alpha.unsqueeze(1), colour.view(n, 3, 1, 1))
    return img


def _draw_objects(img: Tensor, obj: Objects, size: int) -> Tensor:
    """Composite one layer of objects onto ``img`` in place; returns their alpha."""
    n = img.shape[0]
    rows = np.flatnonzero(obj.present)
    if rows.size == 0:
        return torch.zeros(n, size, size)
    o = _take(obj, rows)
    assert isinstance(o, Objects)
    g = _grid(size)
    x, y = g.view(1, 1, size), g.view(1, size, 1)
    dx, dy = x - _col(o.cx), y - _col(o.cy)
    rot = _col(o.rotation)
    c, s = torch.cos(rot), torch.sin(rot)
    scale = _col(o.scale)
    u = (dx * c + dy * s) / (scale * _col(o.squash * o.aspect))
    v = (dy * c - dx * s) / scale
    d = torch.empty_like(u)
    a, b = _col(o.part_a), _col(o.part_b)
    groups = o.kind.astype(np.int64) * 3 + o.variant.astype(np.int64)
    for group in np.unique(groups):
        idx = torch.from_numpy(np.flatnonzero(groups == group))
        kind, variant = divmod(int(group), 3)
        u_k, v_k, a_k, b_k = (_rows(t, idx) for t in (u, v, a, b))
        d[idx] = _SHAPES[kind](u_k, v_k, variant, a_k, b_k)
    pattern = torch.zeros_like(u)
    freq, angle = _col(o.pattern_freq), _col(o.pattern_angle)
    for kind in np.unique(o.pattern):
        if kind == 0:
            continue
        idx = torch.from_numpy(np.flatnonzero(o.pattern == kind))
        u_k, v_k, f_k, t_k = (_rows(t, idx) for t in (u, v, freq, angle))
        pattern[idx] = _pattern(int(kind), u_k, v_k, f_k, t_k)
    d_px = d * (scale * (size / 2.0))  # local units to pixels
    alpha = (0.5 - d_px).clamp_(0, 1)
    outline = (d_px + 1.6).clamp_(0, 1)
    light = (1.0 - 0.1 * u - 0.08 * v).mul_(1.0 - 0.35 * outline)
    lit = light.mul_(alpha)  # paint * alpha = (c1 + (c2 - c1) * pattern) * lit
    patterned = pattern.mul_(lit)
    c1, c2 = np.zeros((n, 3), np.float32), np.zeros((n, 3), np.float32)
    c1[rows], c2[rows] = o.colour, o.colour2
    if rows.size < n:  # images without an object here get alpha 0
        full = torch.zeros(3, n, size, size)
        idx = torch.from_numpy(rows)
        for plane, values in zip(full, (alpha, lit, patterned), strict=True):
            plane[idx] = values
        alpha, lit, patterned = full
    img.mul_((1.0 - alpha).unsqueeze(1))
    img.addcmul_(torch.from_numpy(c1).view(n, 3, 1, 1), lit.unsqueeze(1))
    img.addcmul_(torch.from_numpy(c2 - c1).view(n, 3, 1, 1), patterned.unsqueeze(1))
    return alpha


def _blur(img: Tensor, sigma: np.ndarray) -> Tensor:
    """Separable 5-tap Gaussian blur with one sigma per image (0: none).

    One grouped convolution per direction: every (image, channel) plane is
    its own group with its own kernel, so a batch of sigmas costs one call.
    """
    if not np.any(sigma > 0.05):
        return img
    taps = np.arange(-2, 3, dtype=np.float64)
    safe = np.maximum(sigma, 1e-3)[:, None]
    w = np.exp(-(taps[None, :] ** 2) / (2 * safe**2))
    w = np.repeat(w / w.sum(axis=1, keepdims=True), 3, axis=0).astype(np.float32)
    n, ch, h, wd = img.shape
    kernel = torch.from_numpy(w)
    planes = F.pad(img.reshape(1, n * ch, h, wd), (2, 2, 2, 2), mode="replicate")
    planes = F.conv2d(planes, kernel.view(n * ch, 1, 1, 5), groups=n * ch)
    planes = F.conv2d(planes, kernel.view(n * ch, 1, 5, 1), groups=n * ch)
    return planes.view(n, ch, h, wd)


def _apply_camera(img: Tensor, cam: Camera, generator: torch.Generator) -> Tensor:
    n = img.shape[0]
    # accumulated in float64, so the thread count cannot move a rounding
    mean = img.mean(dim=(1, 2, 3), keepdim=True, dtype=torch.float64).float()
    contrast = torch.from_numpy(cam.contrast.astype(np.float32)).view(n, 1, 1, 1)
    gain = torch.from_numpy(
        (cam.gains * cam.brightness[:, None]).astype(np.float32)
    ).view(n, 3, 1, 1)
    # ((img - mean) * contrast + mean) * gain, as one multiply-add
    img = torch.addcmul(mean * (1.0 - contrast) * gain, img, contrast * gain)
    img = _blur(img, cam.blur)
    if np.any(cam.noise > 0):
        # uniform noise of the same standard deviation: half the cost of normal
        # draws, and at these levels the eye and a CNN cannot tell them apart
        std = torch.from_numpy(cam.noise.astype(np.float32) * math.sqrt(12.0))
        noise = torch.rand(img.shape, generator=generator).sub_(0.5)
        img.addcmul_(noise, std.view(n, 1, 1, 1))
    return img


def render(
    size: int,
    backdrop: Backdrop,
    layers: Sequence[Objects],
    camera: Camera | None = None,
    noise_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` scenes: backdrop, then ``layers`` back to front, then the camera.

    Returns ``uint8`` images ``(n, size, size, 3)`` and the last layer's (the
    subject's) alpha ``(n, size, size)`` in [0, 1] as ``float32``: its mask as
    seen, since nothing is drawn over it. The sensor noise comes from a torch
    generator seeded with ``noise_seed`` and the chunk's number, so the same
    arguments give the same bytes.
    """
    with one_torch_thread():
        return _render(size, backdrop, layers, camera, noise_seed)


def _render(
    size: int,
    backdrop: Backdrop,
    layers: Sequence[Objects],
    camera: Camera | None,
    noise_seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    n = backdrop.base.shape[0]
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    subject = np.zeros((n, size, size), dtype=np.float32)
    for number, start in enumerate(range(0, n, CHUNK)):
        rows = np.arange(start, min(n, start + CHUNK))
        back = _take(backdrop, rows)
        assert isinstance(back, Backdrop)
        img = _draw_backdrop(back, size)
        alpha = None
        for layer in layers:
            part = _take(layer, rows)
            assert isinstance(part, Objects)
            alpha = _draw_objects(img, part, size)
        if camera is not None:
            generator = torch.Generator().manual_seed(
                int(noise_seed) * 1_000_003 + number
            )
            cam = _take(camera, rows)
            assert isinstance(cam, Camera)
            img = _apply_camera(img, cam, generator)
        out = img.clamp_(0.0, 1.0).mul_(255.0).add_(0.5).to(torch.uint8)
        images[rows] = out.permute(0, 2, 3, 1).numpy()
        if alpha is not None:
            subject[rows] = alpha.numpy()
    return images, subject


def masks_to_boxes(mask: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``(n, 4)`` boxes ``x0, y0, x1, y1`` (end exclusive) of ``mask > threshold``.

    An image whose mask is empty gets the whole frame.
    """
    inside = mask > threshold
    _n, h, w = inside.shape
    cols, rows = inside.any(axis=1), inside.any(axis=2)
    empty = ~cols.any(axis=1)
    x0 = np.where(empty, 0, cols.argmax(axis=1))
    x1 = np.where(empty, w, w - cols[:, ::-1].argmax(axis=1))
    y0 = np.where(empty, 0, rows.argmax(axis=1))
    y1 = np.where(empty, h, h - rows[:, ::-1].argmax(axis=1))
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


def crop_boxes(
    images: np.ndarray, boxes: np.ndarray, size: int, margin: float = 0.15
) -> np.ndarray:
    """Square crops around ``boxes`` (grown by ``margin``), resized to ``size``.

    The square keeps the product's proportions (catalogue shots are square
    and centred); parts outside the frame repeat the border, as a phone's
    crop tool would not but a detector's padded crop does. Bilinear, in chunks.
    """
    n, h, w, _ = images.shape
    out = np.empty((n, size, size, 3), dtype=np.uint8)
    boxes = np.asarray(boxes, dtype=np.float64)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2.0
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2.0
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) / 2.0
    half = np.maximum(half * (1.0 + margin), 2.0)
    theta = np.zeros((n, 2, 3), dtype=np.float32)
    theta[:, 0, 0] = half / (w / 2.0)
    theta[:, 0, 2] = centre_x / (w / 2.0) - 1.0
    theta[:, 1, 1] = half / (h / 2.0)
    theta[:, 1, 2] = centre_y / (h / 2.0) - 1.0
    with one_torch_thread():
        for start in range(0, n, CHUNK):
            stop = min(n, start + CHUNK)
            src = torch.from_numpy(images[start:stop]).permute(0, 3, 1, 2).float()
            t = torch.from_numpy(theta[start:stop])
            grid = F.affine_grid(t, [stop - start, 3, size, size], align_corners=False)
            crop = F.grid_sample(
                src, grid, mode="bilinear", padding_mode="border", align_corners=False
            )
            crop = crop.add_(0.5).clamp_(0, 255).to(torch.uint8)
            out[start:stop] = crop.permute(0, 2, 3, 1).numpy()
    return out
