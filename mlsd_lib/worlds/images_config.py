"""The knobs of the synthetic image world: sizes, duplicates, and how users photograph.

Introduced in ``casestudies/visual_search/index.md`` (the synthetic world). Two
frozen dataclasses, so a chapter can say "the ``quick`` world photographed with
:meth:`QueryStyle.camera_shift`" and a reader reproduces every pixel:

* :class:`ImageWorldConfig`: how many categories, style families and products,
  the image size, the catalogue views per product, how many listings are
  merchants' near-duplicates or look-alikes, the held-out share, the seed.
* :class:`QueryStyle`: how a user's photo differs from a catalogue shot
  (clutter, distractor objects, lighting, blur, noise, partial crops, angle).
  The gap between catalogue and user photos is the main source of error in
  shop-the-look, so it is a parameter: :meth:`QueryStyle.clean` has none,
  :meth:`QueryStyle.phone` is the normal user photo, :meth:`QueryStyle.camera_shift`
  a new phone model's darker, noisier, colour-cast pictures (the drift that
  chapter 7's monitors must catch), and :meth:`QueryStyle.interpolate` anything
  in between, so recall can be plotted against the size of the gap.

Ranges are ``(low, high)`` pairs drawn uniformly per photo. Every check names
the field and the range it must lie in, as the other worlds' configs do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mlsd_lib.errors import MlsdError

__all__ = ["ImageConfigError", "ImageWorldConfig", "QueryStyle"]

#: Shape kinds the renderer can draw (:data:`mlsd_lib.worlds.images_render.KINDS`);
#: a world uses the first ``n_categories`` and keeps the rest for new categories.
N_KINDS = 10


class ImageConfigError(MlsdError, ValueError):
    """An image world setting is out of range; the message names it and the range."""


def _check_range(owner: str, name: str, value: object, low: float, high: float) -> None:
    """``value`` is a ``(lo, hi)`` pair with ``low <= lo <= hi <= high``."""
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or not all(isinstance(v, (int, float)) for v in value)
    ):
        raise ImageConfigError(
            f"{owner}.{name} must be a (low, high) tuple of numbers in "
            f"[{low}, {high}], got {value!r}."
        )
    lo, hi = value
    if not low <= lo <= hi <= high:
        raise ImageConfigError(
            f"{owner}.{name} must be a (low, high) pair with {low} <= low <= high "
            f"<= {high}, got {value!r}."
        )


def _check_number(owner: str, name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ImageConfigError(
            f"{owner}.{name} must be in [{low}, {high}], got {value}."
        )


@dataclass(frozen=True)
class QueryStyle:
    """How a user's photo of a product differs from the catalogue shot.

    Scene: ``clutter`` (0..1) is the strength of the background's textures,
    gradients and blobs (0: a plain light backdrop like the catalogue's);
    each photo shows 0 to ``max_distractors`` other products behind the
    photographed one. Framing: the product's half-height is ``scale`` of the
    frame's (the catalogue's is about 0.75), it is turned by up to
    ``max_rotation`` degrees and seen from the side by up to ``yaw`` (its width
    shrinks by that fraction at most); with probability ``partial_crop`` the
    frame cuts off 15-35 % of it. Camera: ``brightness`` and ``contrast``
    multiply the picture, each colour channel is multiplied by
    ``1 + u * colour_cast`` (``u`` uniform in -1..1) times ``tint`` (a fixed
    cast, e.g. a sensor's blue), ``blur`` is the Gaussian blur's sigma in
    pixels and ``noise`` the sensor noise's standard deviation (0..1 scale).
    """

    clutter: float = 1.0
    max_distractors: int = 2
    scale: tuple[float, float] = (0.45, 0.7)
    max_rotation: float = 25.0
    yaw: float = 0.3
    partial_crop: float = 0.15
    brightness: tuple[float, float] = (0.8, 1.2)
    contrast: tuple[float, float] = (0.8, 1.1)
    colour_cast: float = 0.1
    tint: tuple[float, float, float] = (1.0, 1.0, 1.0)
    blur: tuple[float, float] = (0.0, 0.8)
    noise: tuple[float, float] = (0.0, 0.03)

    def __post_init__(self) -> None:
        owner = "QueryStyle"
        _check_number(owner, "clutter", self.clutter, 0.0, 1.0)
        if (
            not isinstance(self.max_distractors, int)
            or not 0 <= self.max_distractors <= 3
        ):
            raise ImageConfigError(
                f"QueryStyle.max_distractors must be an integer in [0, 3], got "
                f"{self.max_distractors!r}."
            )
        _check_range(owner, "scale", self.scale, 0.2, 0.9)
        _check_number(owner, "max_rotation", self.max_rotation, 0.0, 90.0)
        _check_number(owner, "yaw", self.yaw, 0.0, 0.6)
        _check_number(owner, "partial_crop", self.partial_crop, 0.0, 1.0)
        _check_range(owner, "brightness", self.brightness, 0.2, 2.0)
        _check_range(owner, "contrast", self.contrast, 0.2, 2.0)
        _check_number(owner, "colour_cast", self.colour_cast, 0.0, 0.5)
        if (
            not isinstance(self.tint, tuple)
            or len(self.tint) != 3
            or not all(0.5 <= t <= 1.5 for t in self.tint)
        ):
            raise ImageConfigError(
                "QueryStyle.tint must be three channel gains (r, g, b), each in "
                f"[0.5, 1.5], got {self.tint!r}."
            )
        _check_range(owner, "blur", self.blur, 0.0, 3.0)
        _check_range(owner, "noise", self.noise, 0.0, 0.3)

    @classmethod
    def clean(cls) -> QueryStyle:
        """No gap at all: catalogue-like framing, plain backdrop, neutral camera."""
        return cls(
            clutter=0.0,
            max_distractors=0,
            scale=(0.7, 0.8),
            max_rotation=8.0,
            yaw=0.1,
            partial_crop=0.0,
            brightness=(1.0, 1.0),
            contrast=(1.0, 1.0),
            colour_cast=0.0,
            blur=(0.0, 0.0),
            noise=(0.0, 0.0),
        )

    @classmethod
    def phone(cls) -> QueryStyle:
        """A normal user's phone photo (the defaults): clutter, other objects, light."""
        return cls()

    @classmethod
    def camera_shift(cls) -> QueryStyle:
        """A new phone model: darker, noisier, blurrier, with a blue-green cast.

        Framing and scenes stay as :meth:`phone`'s, so what moves is the camera
        alone: the drift a query-embedding monitor should catch.
        """
        return cls(
            brightness=(0.5, 0.75),
            contrast=(0.7, 0.95),
            colour_cast=0.1,
            tint=(0.85, 1.0, 1.15),
            blur=(0.4, 1.2),
            noise=(0.04, 0.07),
        )

    @staticmethod
    def interpolate(start: QueryStyle, end: QueryStyle, t: float) -> QueryStyle:
        """The style ``t`` of the way from ``start`` to ``end`` (0: start, 1: end).

        Numbers and range ends are interpolated linearly; ``max_distractors`` is
        rounded. ``interpolate(clean(), phone(), t)`` sizes the catalogue/user
        photo gap with one number.
        """
        if not 0.0 <= t <= 1.0:
            raise ImageConfigError(
                f"QueryStyle.interpolate's t must be in [0, 1], got {t}."
            )

        def mix(a: object, b: object) -> object:
            if isinstance(a, tuple):
                return tuple(float(x + t * (y - x)) for x, y in zip(a, b, strict=True))
            if isinstance(a, int) and not isinstance(a, bool):
                return round(a + t * (b - a))  # type: ignore[operator]
            return float(a + t * (b - a))  # type: ignore[operator]

        values = {
            f.name: mix(getattr(start, f.name), getattr(end, f.name))
            for f in dataclasses.fields(QueryStyle)
        }
        return QueryStyle(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ImageWorldConfig:
    """Sizes, listings and the seed of the synthetic image world.

    Catalogue: ``n_categories`` categories (one shape kind each, of the
    renderer's ten), ``families_per_category`` style families in each (a
    family shares a shape variant, a pattern type and a palette) and
    ``products_per_family`` products in each (varying in colour, pattern
    frequency and angle, and proportions); ``family_spread`` scales how far
    products of one family lie apart (below 1: harder to tell apart).
    Listings: ``duplicate_rate`` of the products are listed again by another
    merchant under a new product id (identical or slightly edited images), and
    ``lookalike_rate`` get a distinct look-alike sibling (same family, close
    parameters), so a dedup threshold has something to separate.
    Images: ``image_size`` pixels square, ``catalogue_views`` poses per product.
    ``held_out_fraction`` of the products (with their duplicates and
    look-alikes) are never seen in training. ``query_style`` is the default
    photo style of :meth:`~mlsd_lib.worlds.images.ImageWorld.queries`.
    ``seed`` fixes everything drawn.
    """

    n_categories: int = 8
    families_per_category: int = 8
    products_per_family: int = 12
    family_spread: float = 1.0
    duplicate_rate: float = 0.05
    lookalike_rate: float = 0.04
    image_size: int = 64
    catalogue_views: int = 4
    held_out_fraction: float = 0.5
    query_style: QueryStyle = dataclasses.field(default_factory=QueryStyle.phone)
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "ImageWorldConfig"
        if not isinstance(self.n_categories, int) or not (
            1 <= self.n_categories <= N_KINDS
        ):
            raise ImageConfigError(
                f"{owner}.n_categories must be an integer in [1, {N_KINDS}] (one "
                f"shape kind each), got {self.n_categories!r}."
            )
        for name, high in (
            ("families_per_category", 100),
            ("products_per_family", 1000),
            ("catalogue_views", 16),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= high:
                raise ImageConfigError(
                    f"{owner}.{name} must be an integer in [1, {high}], got {value!r}."
                )
        _check_number(owner, "family_spread", self.family_spread, 0.1, 2.0)
        _check_number(owner, "duplicate_rate", self.duplicate_rate, 0.0, 0.5)
        _check_number(owner, "lookalike_rate", self.lookalike_rate, 0.0, 0.5)
        if not isinstance(self.image_size, int) or not 32 <= self.image_size <= 256:
            raise ImageConfigError(
                f"{owner}.image_size must be an integer in [32, 256] pixels, got "
                f"{self.image_size!r}."
            )
        if not 0.0 < self.held_out_fraction < 1.0:
            raise ImageConfigError(
                f"{owner}.held_out_fraction must be in (0, 1) (both splits need "
                f"products), got {self.held_out_fraction}."
            )
        if not isinstance(self.query_style, QueryStyle):
            raise ImageConfigError(
                f"{owner}.query_style must be a QueryStyle, got "
                f"{type(self.query_style).__name__}."
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ImageConfigError(
                f"{owner}.seed must be an integer >= 0, got {self.seed!r}."
            )

    @property
    def n_base_products(self) -> int:
        """Products drawn from families, before duplicates and look-alikes."""
        return self.n_categories * self.families_per_category * self.products_per_family

    @classmethod
    def quick(cls, **changes: object) -> ImageWorldConfig:
        """8 categories x 8 families x 12 products (about 840 listings with
        duplicates and look-alikes), 4 views of 64 x 64: tests and benchmarks."""
        return cls(**changes)  # type: ignore[arg-type]

    @classmethod
    def small(cls, **changes: object) -> ImageWorldConfig:
        """8 categories x 10 families x 14 products (about 1,220 listings):
        the notebooks' world, a catalogue of about 4,900 images in about a second."""
        changes.setdefault("families_per_category", 10)
        changes.setdefault("products_per_family", 14)
        return cls(**changes)  # type: ignore[arg-type]
