"""The synthetic image world: products with known identities, photographed two ways.

Introduced in ``casestudies/visual_search/index.md`` (the synthetic world). Real
visual-search logs never say which catalogue product a user photographed, how
similar two products truly are, or which listings are the same item sold
twice. This world does, because every image is rendered from explicit
parameters (:mod:`mlsd_lib.worlds.images_render`):

* **Products** (``ImageWorld.products``, one row per ``product_id``) belong
  to a *category* (a shape kind: vase, box, lamp, bottle, chair, bag, star,
  mug, umbrella, heart) and a style *family* within it, which fixes the shape
  variant, the pattern type and the palette; products of one family differ in
  colour, pattern frequency and angle, and proportions (aspect, part sizes).
* **Catalogue images** (:meth:`ImageWorld.catalogue`): the product centred on a
  light studio backdrop, ``catalogue_views`` poses each (small turn, scale,
  shift), a pure function of (seed, product, view).
* **User photos** (:meth:`ImageWorld.queries`): the product at another angle,
  scale and place, in front of a cluttered room with other products, under
  other light, blurred, noisy, sometimes cut by the frame, styled by a
  :class:`~mlsd_lib.worlds.images_config.QueryStyle`; ``boxes`` gives where it is.
* **Merchants' listings**: some products are listed again under a new id
  (``duplicate_of``), with identical images or lightly edited ones (colour
  shift, tighter crop, a corner watermark); some have a *look-alike*: a
  distinct product of the same family with close parameters
  (``lookalike_of``). :meth:`ImageWorld.duplicate_pairs` and
  :meth:`ImageWorld.lookalike_pairs` list them, so a dedup threshold can be
  chosen and its precision measured exactly.
* **Graded similarity** (:meth:`ImageWorld.similarity`): 1 for the same product
  or a known duplicate, 0 across categories, and in between a documented
  function of family, colours, pattern and proportions, for graded NDCG.

Splits are by identity (``split``: ``train`` / ``test``, stratified by
category): test products, with their duplicates and look-alikes, are never
seen in training, as in the Stanford Online Products protocol.

Shift injection, for chapter 7: :meth:`ImageWorld.with_query_style` returns the
same world whose users now shoot with another camera
(:meth:`~mlsd_lib.worlds.images_config.QueryStyle.camera_shift`), and
:meth:`ImageWorld.with_new_category` the same world plus a category of a shape
kind no model has seen (new product ids, ``introduced`` = 1, 2, ...). Both
leave every existing product and catalogue image unchanged (a photo keeps its
scene and framing; after a new category its distractors may be newcomers), so
"before" and "after" differ only by what was injected, at whatever time the
chapter switches worlds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.images_config import ImageWorldConfig, QueryStyle
from mlsd_lib.worlds.images_render import (
    KINDS,
    N_BLOBS,
    PATTERNS,
    Backdrop,
    Camera,
    Objects,
    crop_boxes,
    hashed_uniform,
    hsv_to_rgb,
    masks_to_boxes,
    render,
)

__all__ = [
    "EDITS",
    "QUERY_IMAGE_ID_BASE",
    "ImageWorld",
    "ImageWorldError",
    "QuerySet",
    "similarity_of",
]

#: How a duplicate listing's images differ from the original's.
EDITS = ("none", "identical", "colour_shift", "crop", "watermark")
#: Query photos have image ids ``QUERY_IMAGE_ID_BASE + seed * 10**8 + i``, never
#: a catalogue id (``product_id * catalogue_views + view``).
QUERY_IMAGE_ID_BASE = 10**12
_QUERY_STRIDE = 10**8
#: Stream tags, so products, poses, edits and photos draw from separate streams.
_PRODUCTS, _CATEGORY, _POSE, _EDIT, _QUERIES = 11, 12, 13, 14, 15
#: Half-height of the product in the canonical catalogue view.
CATALOGUE_SCALE = 0.72

#: Weights of the graded similarity of two distinct products of one category.
SIM_BASE, SIM_FAMILY, SIM_COLOUR, SIM_PATTERN, SIM_SHAPE = 0.25, 0.15, 0.25, 0.15, 0.15


class ImageWorldError(MlsdError, ValueError):
    """A request the image world cannot answer; the message says why and what to do."""


# -- products --------------------------------------------------------------------


def _draw_category(
    config: ImageWorldConfig, category: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Families and products of one category (base products only)."""
    n_fam, per = config.families_per_category, config.products_per_family
    spread = config.family_spread
    # family: shape variant, pattern type, palette, base proportions
    variant = rng.integers(0, 3, n_fam)
    pattern = rng.integers(0, len(PATTERNS), n_fam)
    hue_f = rng.random(n_fam)
    sat_f = rng.uniform(0.5, 0.85, n_fam)
    val_f = rng.uniform(0.55, 0.85, n_fam)
    scheme = rng.choice(np.array([0.5, 0.33, -0.33, 0.0]), n_fam)
    freq_f = np.exp(rng.uniform(np.log(1.3), np.log(3.0), n_fam))
    aspect_f = np.exp(rng.uniform(-0.12, 0.12, n_fam))
    part_a_f = rng.uniform(0.25, 0.75, n_fam)
    part_b_f = rng.uniform(0.25, 0.75, n_fam)

    fam = np.repeat(np.arange(n_fam), per)
    n = fam.size
    # hues spread evenly over the family's palette (jittered), so siblings differ
    slots = np.argsort(rng.random((n_fam, per)), axis=1).ravel()
    offset = ((slots + rng.uniform(-0.3, 0.3, n)) / per - 0.5) * 0.5
    hue = np.mod(hue_f[fam] + spread * offset, 1.0)
    sat = np.clip(sat_f[fam] + spread * rng.uniform(-0.15, 0.15, n), 0.35, 0.95)
    val = np.clip(val_f[fam] + spread * rng.uniform(-0.15, 0.15, n), 0.4, 0.9)
    tonal = scheme[fam] == 0.0
    hue2 = np.mod(hue + scheme[fam] + spread * rng.uniform(-0.04, 0.04, n), 1.0)
    sat2 = np.where(tonal, sat * 0.5, rng.uniform(0.4, 0.9, n))
    val2 = np.where(
        tonal, np.where(val > 0.6, val - 0.4, val + 0.3), rng.uniform(0.35, 0.95, n)
    )
    return pd.DataFrame(
        {
            "category": category,
            "family": category * n_fam + fam,
            "variant": variant[fam],
            "pattern": pattern[fam],
            "hue": hue,
            "saturation": sat,
            "value": val,
            "hue2": hue2,
            "saturation2": sat2,
            "value2": val2,
            "pattern_freq": freq_f[fam] * np.exp(spread * rng.uniform(-0.35, 0.35, n)),
            "pattern_angle": rng.uniform(0.0, np.pi, n),
            "aspect": aspect_f[fam] * np.exp(spread * rng.uniform(-0.12, 0.12, n)),
            "part_a": np.clip(
                part_a_f[fam] + spread * rng.uniform(-0.25, 0.25, n), 0, 1
            ),
            "part_b": np.clip(
                part_b_f[fam] + spread * rng.uniform(-0.25, 0.25, n), 0, 1
            ),
        }
    )


def _add_listings(
    config: ImageWorldConfig,
    base: pd.DataFrame,
    first_id: int,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Base products, their look-alikes and duplicates; ids from ``first_id``."""
    n = len(base)
    base = base.assign(
        product_id=first_id + np.arange(n),
        duplicate_of=-1,
        lookalike_of=-1,
        edit="none",
    )
    n_look = round(config.lookalike_rate * n)
    look_src = rng.choice(n, n_look, replace=False)
    look = base.iloc[look_src].copy()
    sign = lambda: rng.choice(np.array([-1.0, 1.0]), n_look)  # noqa: E731
    look["hue"] = np.mod(look["hue"] + sign() * rng.uniform(0.06, 0.09, n_look), 1.0)
    look["hue2"] = np.mod(look["hue2"] + sign() * rng.uniform(0.03, 0.06, n_look), 1.0)
    look["pattern_freq"] *= np.exp(sign() * rng.uniform(0.15, 0.25, n_look))
    look["pattern_angle"] = np.mod(
        look["pattern_angle"] + sign() * rng.uniform(0.25, 0.4, n_look), np.pi
    )
    look["part_a"] = np.clip(
        look["part_a"] + sign() * rng.uniform(0.15, 0.25, n_look), 0, 1
    )
    look["lookalike_of"] = look["product_id"].to_numpy()
    look["product_id"] = first_id + n + np.arange(n_look)

    n_dup = round(config.duplicate_rate * n)
    dup_src = rng.choice(n, n_dup, replace=False)
    dup = base.iloc[dup_src].copy()
    dup["duplicate_of"] = dup["product_id"].to_numpy()
    dup["product_id"] = first_id + n + n_look + np.arange(n_dup)
    dup["edit"] = np.asarray(EDITS[1:])[rng.integers(0, len(EDITS) - 1, n_dup)]
    return pd.concat([base, look, dup], ignore_index=True)


def _split(
    config: ImageWorldConfig, table: pd.DataFrame, rng: np.random.Generator
) -> np.ndarray:
    """``train`` / ``test`` per product; duplicates and look-alikes follow theirs."""
    origin = table["product_id"].to_numpy().copy()
    for column in ("duplicate_of", "lookalike_of"):
        linked = table[column].to_numpy()
        origin = np.where(linked >= 0, linked, origin)
    is_origin = origin == table["product_id"].to_numpy()
    test_origins = []
    for category in np.unique(table["category"]):
        roots = table["product_id"].to_numpy()[
            is_origin & (table["category"] == category)
        ]
        roots = rng.permutation(roots)
        test_origins.append(roots[: round(config.held_out_fraction * roots.size)])
    held_out = np.isin(origin, np.concatenate(test_origins))
    return np.where(held_out, "test", "train")


def _new_products(
    config: ImageWorldConfig, category: int, first_id: int, introduced: int
) -> pd.DataFrame:
    """One category's products, listings and split, from its own random stream."""
    tag = _PRODUCTS if introduced == 0 else _CATEGORY
    rng = np.random.default_rng([config.seed, tag, category])
    table = _add_listings(config, _draw_category(config, category, rng), first_id, rng)
    table["split"] = _split(config, table, rng)
    table["introduced"] = introduced
    return table


_COLUMNS = [
    "product_id",
    "category",
    "kind",
    "family",
    "variant",
    "pattern",
    "pattern_name",
    "hue",
    "saturation",
    "value",
    "hue2",
    "saturation2",
    "value2",
    "pattern_freq",
    "pattern_angle",
    "aspect",
    "part_a",
    "part_b",
    "duplicate_of",
    "lookalike_of",
    "edit",
    "split",
    "introduced",
]


def _finish(table: pd.DataFrame) -> pd.DataFrame:
    table = table.assign(
        kind=np.asarray(KINDS)[table["category"].to_numpy()],
        pattern_name=np.asarray(PATTERNS)[table["pattern"].to_numpy()],
    )
    table = table[_COLUMNS].sort_values("product_id").reset_index(drop=True)
    for column in ("product_id", "category", "family", "variant", "pattern"):
        table[column] = table[column].astype(np.int64)
    for column in ("duplicate_of", "lookalike_of", "introduced"):
        table[column] = table[column].astype(np.int64)
    return table


# -- similarity ------------------------------------------------------------------


def similarity_of(products: pd.DataFrame, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Graded true similarity in [0, 1] of products ``a`` and ``b`` (broadcast).

    * 1 if they are the same product or one is a known duplicate of the other
      (same ``canonical`` id: a duplicate's original);
    * 0 if their categories differ;
    * otherwise ``0.25 + 0.15 * same family + 0.25 * colour + 0.15 * pattern
      + 0.15 * shape``, at most 0.95, where, with Gaussian kernels
      ``k(x, s) = exp(-(x / s)**2)``:

      - ``colour = 0.7 k(|rgb_a - rgb_b|, 0.3) + 0.3 k(|rgb2_a - rgb2_b|, 0.3)``
        (body and pattern colours, RGB in [0, 1]);
      - ``pattern`` is 0 for different pattern types, 1 for two plain ones,
        else ``k(log(f_a / f_b), 0.25)`` times an angle term (1 for rings,
        ``(1 + cos 2 d) / 2`` for stripes and zigzags, ``(1 + cos 4 d) / 2`` for
        dots and checks, ``d`` the angle difference);
      - ``shape`` is 0 for different shape variants, else
        ``k(log(aspect_a / aspect_b), 0.12) * k(part_a diff, 0.2) * k(part_b
        diff, 0.2)``.

    ``products`` is ``ImageWorld.products`` (ids are row positions).
    """
    a, b = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64))
    col = {c: products[c].to_numpy() for c in products.columns}
    canonical = np.where(
        col["duplicate_of"] >= 0, col["duplicate_of"], col["product_id"]
    )

    def kernel(x: np.ndarray, s: float) -> np.ndarray:
        return np.exp(-((x / s) ** 2))

    rgb = hsv_to_rgb(col["hue"], col["saturation"], col["value"])
    rgb2 = hsv_to_rgb(col["hue2"], col["saturation2"], col["value2"])
    colour = 0.7 * kernel(np.linalg.norm(rgb[a] - rgb[b], axis=-1), 0.3) + 0.3 * kernel(
        np.linalg.norm(rgb2[a] - rgb2[b], axis=-1), 0.3
    )
    pa, pb = col["pattern"][a], col["pattern"][b]
    name = np.asarray(PATTERNS)[pa]
    d = col["pattern_angle"][a] - col["pattern_angle"][b]
    angle = np.where(
        np.isin(name, ["stripes", "zigzag"]),
        (1 + np.cos(2 * d)) / 2,
        np.where(np.isin(name, ["dots", "checks"]), (1 + np.cos(4 * d)) / 2, 1.0),
    )
    freq = kernel(np.log(col["pattern_freq"][a] / col["pattern_freq"][b]), 0.25)
    pattern = np.where(pa != pb, 0.0, np.where(pa == 0, 1.0, freq * angle))
    shape = (
        (col["variant"][a] == col["variant"][b])
        * kernel(np.log(col["aspect"][a] / col["aspect"][b]), 0.12)
        * kernel(col["part_a"][a] - col["part_a"][b], 0.2)
        * kernel(col["part_b"][a] - col["part_b"][b], 0.2)
    )
    graded = (
        SIM_BASE
        + SIM_FAMILY * (col["family"][a] == col["family"][b])
        + SIM_COLOUR * colour
        + SIM_PATTERN * pattern
        + SIM_SHAPE * shape
    )
    same_category = col["category"][a] == col["category"][b]
    return np.where(
        canonical[a] == canonical[b], 1.0, np.where(same_category, graded, 0.0)
    )


# -- query photos ----------------------------------------------------------------


@dataclass(frozen=True)
class QuerySet:
    """User photos of products, with where each product is in its photo.

    ``images`` is an :class:`~mlsd_lib.datasets.image_sets.ImageSet` whose
    ``product_ids`` are the photographed products; ``boxes`` is int64 ``(n, 4)``
    ``x0, y0, x1, y1`` (pixels, end exclusive) of the product as seen (cut by
    the frame if it is); ``details`` has one row per photo: the distractor
    products (-1: none), whether the frame cut the product (``partial``) and
    the camera's draws (brightness, blur, noise), for slicing errors.
    """

    images: ImageSet
    boxes: np.ndarray
    details: pd.DataFrame
    style: QueryStyle

    def __len__(self) -> int:
        return len(self.images)

    def crops(self, size: int | None = None, margin: float = 0.15) -> ImageSet:
        """Each photo cropped to a square around its box (grown by ``margin``).

        This is the query a user who drew the box sends (the world supplies the
        box, as the case study's gateway receives it); ``size`` defaults to the
        photos' size, so crops and catalogue images share one shape.
        """
        size = size or self.images.image_size[0]
        pixels = crop_boxes(self.images.images, self.boxes, size, margin)
        return dataclasses.replace(self.images, images=pixels)


# -- the world -------------------------------------------------------------------


class ImageWorld:
    """A seeded catalogue of products, their images and users' photos of them.

    ``products`` is a DataFrame with one row per ``product_id`` (= row
    position): ``category`` (``kind`` its shape), ``family``, the identity
    parameters (``variant``, ``pattern`` / ``pattern_name``, body and pattern
    colours as ``hue``, ``saturation``, ``value`` and ``hue2`` ...,
    ``pattern_freq``, ``pattern_angle``, ``aspect``, ``part_a``, ``part_b``),
    ``duplicate_of`` and ``lookalike_of`` (-1: none), ``edit`` (how a
    duplicate's images were edited; ``none`` otherwise), ``split``
    (``train`` / ``test``) and ``introduced`` (0, or the number of the
    :meth:`with_new_category` that added it).
    """

    def __init__(self, config: ImageWorldConfig | None = None) -> None:
        self.config = config or ImageWorldConfig.quick()
        c = self.config
        parts, next_id = [], 0
        for category in range(c.n_categories):
            table = _new_products(c, category, next_id, introduced=0)
            parts.append(table)
            next_id += len(table)
        self._set_products(_finish(pd.concat(parts, ignore_index=True)))
        self._catalogue: ImageSet | None = None

    def _set_products(self, table: pd.DataFrame) -> None:
        self.products: pd.DataFrame = table
        col = table
        self._rgb = hsv_to_rgb(
            col["hue"].to_numpy(), col["saturation"].to_numpy(), col["value"].to_numpy()
        )
        self._rgb2 = hsv_to_rgb(
            col["hue2"].to_numpy(),
            col["saturation2"].to_numpy(),
            col["value2"].to_numpy(),
        )
        dup = col["duplicate_of"].to_numpy()
        self._canonical = np.where(dup >= 0, dup, col["product_id"].to_numpy())

    # -- identities ---------------------------------------------------------------

    @property
    def n_products(self) -> int:
        return len(self.products)

    @property
    def train_products(self) -> np.ndarray:
        """Product ids a model may train on (int64, sorted)."""
        return self._ids_where(self.products["split"] == "train")

    @property
    def test_products(self) -> np.ndarray:
        """Product ids never seen in training (int64, sorted), with their duplicates."""
        return self._ids_where(self.products["split"] == "test")

    def _ids_where(self, mask: pd.Series) -> np.ndarray:
        return self.products["product_id"].to_numpy()[mask.to_numpy()].astype(np.int64)

    def canonical(self, products: np.ndarray) -> np.ndarray:
        """The original listing of each product (itself unless a duplicate)."""
        return self._canonical[self._checked(products)]

    def duplicate_pairs(self) -> np.ndarray:
        """``(n, 2)`` int64 ``(original, duplicate)``: the same item listed twice."""
        dup = self.products["duplicate_of"].to_numpy()
        rows = np.flatnonzero(dup >= 0)
        return np.stack([dup[rows], rows], axis=1).astype(np.int64)

    def lookalike_pairs(self) -> np.ndarray:
        """``(n, 2)`` int64 ``(product, look-alike)``: distinct, but very close."""
        look = self.products["lookalike_of"].to_numpy()
        rows = np.flatnonzero(look >= 0)
        return np.stack([look[rows], rows], axis=1).astype(np.int64)

    def similarity(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
        """Graded true similarity of products ``a`` and ``b`` (broadcast); see
        :func:`similarity_of` for the formula."""
        return similarity_of(self.products, self._checked(a), self._checked(b))

    def _checked(self, products: np.ndarray | int) -> np.ndarray:
        ids = np.asarray(products)
        if ids.size and (
            not np.issubdtype(ids.dtype, np.integer)
            or ids.min() < 0
            or ids.max() >= self.n_products
        ):
            raise ImageWorldError(
                f"product ids must be integers in [0, {self.n_products}) (the rows "
                f"of .products), got values from {ids.min()} to {ids.max()}"
            )
        return ids.astype(np.int64)

    # -- catalogue images ---------------------------------------------------------

    def catalogue(self, products: np.ndarray | None = None) -> ImageSet:
        """Catalogue images: ``catalogue_views`` studio shots of each product.

        Image ``product_id * catalogue_views + view``; view 0 is the canonical
        front shot, the others turned by up to 12 degrees, scaled and shifted a
        little. A duplicate listing shows its original's shots, as is or edited
        (its ``edit``). Every image is a pure function of (seed, product, view),
        so ``catalogue(ids)`` equals the full catalogue's rows for those ids.
        The full catalogue is rendered once and kept.
        """
        if products is None:
            if self._catalogue is None:
                self._catalogue = self._render_catalogue(
                    self.products["product_id"].to_numpy()
                )
            return self._catalogue
        return self._render_catalogue(self._checked(products))

    def _render_catalogue(self, products: np.ndarray) -> ImageSet:
        c = self.config
        views = c.catalogue_views
        pid = np.repeat(products, views)
        view = np.tile(np.arange(views), products.size)
        source = self._canonical[pid]
        u = hashed_uniform(c.seed, _POSE, source[:, None], view[:, None], np.arange(9))
        front = (view == 0)[:, None]
        u = np.where(front, 0.5, u)  # view 0: upright, centred, canonical size
        pose = {
            "cx": (u[:, 0] - 0.5) * 0.14,
            "cy": (u[:, 1] - 0.5) * 0.14,
            "scale": np.where(view == 0, CATALOGUE_SCALE, 0.62 + 0.16 * u[:, 2]),
            "rotation": np.deg2rad((u[:, 3] - 0.5) * 24.0),
            "squash": 1.0 - 0.2 * np.abs(u[:, 4] - 0.5) * 2,
        }
        grey = 0.9 + 0.07 * u[:, 5]
        tint = (u[:, 6:9] - 0.5) * 0.03
        backdrop = Backdrop.plain(np.clip(grey[:, None] + tint, 0, 1))
        images, _ = render(c.image_size, backdrop, [self._objects(source, **pose)])
        images = self._edit_duplicates(images, pid, view)
        return ImageSet(
            images=images,
            product_ids=pid,
            category_ids=self.products["category"].to_numpy()[pid],
            image_ids=pid * views + view,
        )

    def _edit_duplicates(
        self, images: np.ndarray, pid: np.ndarray, view: np.ndarray
    ) -> np.ndarray:
        """A duplicate listing's merchant edits: colour shift, crop or watermark."""
        edit = self.products["edit"].to_numpy()[pid]
        size = self.config.image_size
        u = hashed_uniform(
            self.config.seed, _EDIT, pid[:, None], view[:, None], np.arange(5)
        )
        rows = np.flatnonzero(edit == "colour_shift")
        if rows.size:
            gain = 1.0 + (u[rows, :3] - 0.5) * 0.08
            shifted = images[rows].astype(np.float32) * gain[:, None, None, :]
            images[rows] = np.clip(shifted + 0.5, 0, 255).astype(np.uint8)
        rows = np.flatnonzero(edit == "crop")
        if rows.size:
            side = size / (1.06 + 0.08 * u[rows, 0])
            cx = size / 2 + (u[rows, 1] - 0.5) * (size - side)
            cy = size / 2 + (u[rows, 2] - 0.5) * (size - side)
            boxes = np.stack(
                [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1
            )
            images[rows] = crop_boxes(images[rows], boxes, size, margin=0.0)
        rows = np.flatnonzero(edit == "watermark")
        if rows.size:
            grid = np.arange(size)
            w, h = (0.2 + 0.08 * u[rows, 0]) * size, 0.09 * size
            right, bottom = u[rows, 1] > 0.5, u[rows, 2] > 0.5
            x0 = np.where(right, size - 3 - w, 3)
            y0 = np.where(bottom, size - 3 - h, 3)
            in_x = (grid[None, :] >= x0[:, None]) & (grid[None, :] < (x0 + w)[:, None])
            in_y = (grid[None, :] >= y0[:, None]) & (grid[None, :] < (y0 + h)[:, None])
            mark = in_y[:, :, None] & in_x[:, None, :]
            stripe = (grid[None, None, :] + grid[None, :, None]) % 4 < 2
            shade = np.where(stripe, 40.0, 235.0)[..., None]
            pixels = images[rows].astype(np.float32)
            blended = np.where(mark[..., None], 0.45 * pixels + 0.55 * shade, pixels)
            images[rows] = (blended + 0.5).astype(np.uint8)
        return images

    def _objects(self, products: np.ndarray, **pose: np.ndarray) -> Objects:
        """The renderer's description of ``products`` in the given poses."""
        t = self.products
        return Objects(
            kind=t["category"].to_numpy()[products],
            variant=t["variant"].to_numpy()[products],
            part_a=t["part_a"].to_numpy()[products],
            part_b=t["part_b"].to_numpy()[products],
            aspect=t["aspect"].to_numpy()[products],
            colour=self._rgb[products],
            colour2=self._rgb2[products],
            pattern=t["pattern"].to_numpy()[products],
            pattern_freq=t["pattern_freq"].to_numpy()[products],
            pattern_angle=t["pattern_angle"].to_numpy()[products],
            present=pose.pop("present", np.ones(products.size, dtype=bool)),
            **pose,
        )

    # -- user photos --------------------------------------------------------------

    def queries(
        self, products: np.ndarray, seed: int = 0, style: QueryStyle | None = None
    ) -> QuerySet:
        """One user photo of each entry of ``products`` (repeat ids for more).

        ``style`` defaults to the world's (``config.query_style``); ``seed``
        picks the photos: the same (world, products, seed, style) give the same
        bytes. The photographed product (a duplicate listing is shot as its
        original looks) is drawn last, over 0 to ``max_distractors`` other
        products, so its mask is all in view but for the frame.
        """
        style = style or self.config.query_style
        products = self._checked(products).ravel()
        if not isinstance(seed, (int, np.integer)) or not 0 <= seed < 10_000:
            raise ImageWorldError(
                f"seed must be an integer in [0, 10000), got {seed!r}"
            )
        if products.size >= _QUERY_STRIDE:
            raise ImageWorldError(
                f"at most {_QUERY_STRIDE - 1} photos per call, got {products.size}: "
                "call queries once per slice with different seeds"
            )
        rng = np.random.default_rng([self.config.seed, _QUERIES, int(seed)])
        n = products.size
        source = self._canonical[products]
        aspect = self.products["aspect"].to_numpy()[source]
        # the subject: framing, angle, sometimes cut by the frame
        scale = rng.uniform(*style.scale, n)
        squash = 1.0 - rng.uniform(0.0, style.yaw, n)
        rotation = np.deg2rad(rng.uniform(-1, 1, n) * style.max_rotation)
        extent = np.stack([scale * np.maximum(aspect * squash, 1.0) * 0.95, scale], 1)
        room = np.maximum(0.97 - extent, 0.0)
        centre = rng.uniform(-1, 1, (n, 2)) * room
        partial = rng.random(n) < style.partial_crop
        axis = rng.integers(0, 2, n)
        side = rng.choice(np.array([-1.0, 1.0]), n)
        cut = rng.uniform(0.15, 0.35, n)
        rows = np.flatnonzero(partial)
        centre[rows, axis[rows]] = side[rows] * (
            1.0 + extent[rows, axis[rows]] * (2 * cut[rows] - 1)
        )
        subject = self._objects(
            source,
            cx=centre[:, 0],
            cy=centre[:, 1],
            scale=scale,
            rotation=rotation,
            squash=squash,
        )
        # distractors: other products around the subject, behind it
        n_distract = rng.integers(0, style.max_distractors + 1, n)
        layers, distractors = [], np.full((n, 3), -1, dtype=np.int64)
        for slot in range(style.max_distractors):
            other = self._others(source, rng)
            present = slot < n_distract
            d_scale = rng.uniform(0.25, 0.42, n)
            phi = rng.uniform(0, 2 * np.pi, n)
            reach = extent.max(axis=1) * rng.uniform(0.8, 1.2, n) + 0.5 * d_scale
            layers.append(
                self._objects(
                    other,
                    cx=centre[:, 0] + reach * np.cos(phi),
                    cy=centre[:, 1] + reach * np.sin(phi),
                    scale=d_scale,
                    rotation=np.deg2rad(rng.uniform(-30, 30, n)),
                    squash=1.0 - rng.uniform(0.0, 0.3, n),
                    present=present,
                )
            )
            distractors[:, slot] = np.where(present, other, -1)
        layers.append(subject)
        backdrop = self._room(n, style.clutter, rng)
        gains = np.asarray(style.tint) * (
            1.0 + rng.uniform(-1, 1, (n, 3)) * style.colour_cast
        )
        camera = Camera(
            brightness=rng.uniform(*style.brightness, n),
            contrast=rng.uniform(*style.contrast, n),
            gains=gains,
            blur=rng.uniform(*style.blur, n),
            noise=rng.uniform(*style.noise, n),
        )
        noise_seed = int(rng.integers(0, 2**31 - 1))
        images, mask = render(
            self.config.image_size, backdrop, layers, camera, noise_seed
        )
        boxes = masks_to_boxes(mask)
        image_ids = QUERY_IMAGE_ID_BASE + int(seed) * _QUERY_STRIDE + np.arange(n)
        details = pd.DataFrame(
            {
                "product_id": products,
                "distractor_1": distractors[:, 0],
                "distractor_2": distractors[:, 1],
                "distractor_3": distractors[:, 2],
                "partial": partial,
                "scale": scale,
                "brightness": camera.brightness,
                "blur": camera.blur,
                "noise": camera.noise,
            }
        )
        return QuerySet(
            images=ImageSet(
                images=images,
                product_ids=products,
                category_ids=self.products["category"].to_numpy()[products],
                image_ids=image_ids,
            ),
            boxes=boxes,
            details=details,
            style=style,
        )

    def _others(self, source: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One random product per entry whose canonical listing differs from it."""
        n_all = self.n_products
        other = (source + 1 + rng.integers(0, max(n_all - 1, 1), source.size)) % n_all
        for _ in range(4):  # a duplicate of the subject is the subject: draw again
            clash = self._canonical[other] == self._canonical[source]
            if not clash.any():
                break
            other[clash] = (
                other[clash] + 1 + rng.integers(0, n_all, clash.sum())
            ) % n_all
        return other

    @staticmethod
    def _room(n: int, clutter: float, rng: np.random.Generator) -> Backdrop:
        """Cluttered backdrops: gradient, a texture, blobs; ``clutter`` 0 is plain."""
        studio = np.full((n, 3), 0.94)
        hue = rng.random(n)
        base = hsv_to_rgb(hue, rng.uniform(0.05, 0.5, n), rng.uniform(0.35, 0.9, n))
        second = hsv_to_rgb(
            hue + rng.uniform(-0.2, 0.2, n),
            rng.uniform(0.05, 0.5, n),
            rng.uniform(0.3, 0.9, n),
        )
        blob_colour = hsv_to_rgb(
            rng.random((n, N_BLOBS)),
            rng.uniform(0.1, 0.7, (n, N_BLOBS)),
            rng.uniform(0.25, 0.95, (n, N_BLOBS)),
        )
        return Backdrop(
            base=studio + clutter * (base - studio),
            second=studio + clutter * (second - studio),
            gradient_angle=rng.uniform(0, 2 * np.pi, n),
            texture_colour=hsv_to_rgb(
                rng.random(n), rng.uniform(0, 0.4, n), rng.uniform(0.2, 0.9, n)
            ),
            texture_amp=clutter * rng.uniform(0.1, 0.45, n),
            texture_freq=rng.uniform(3.0, 14.0, n),
            texture_angle=rng.uniform(0, np.pi, n),
            blob_present=rng.random((n, N_BLOBS)) < 0.8 * clutter,
            blob_round=rng.random((n, N_BLOBS)) < 0.5,
            blob_cx=rng.uniform(-1, 1, (n, N_BLOBS)),
            blob_cy=rng.uniform(-1, 1, (n, N_BLOBS)),
            blob_hw=rng.uniform(0.15, 0.6, (n, N_BLOBS)),
            blob_hh=rng.uniform(0.15, 0.6, (n, N_BLOBS)),
            blob_colour=blob_colour,
        )

    # -- shifts -------------------------------------------------------------------

    def with_query_style(self, style: QueryStyle) -> ImageWorld:
        """The same world (products, catalogue) whose users shoot in ``style``.

        Chapter 7's camera shift: switch to ``with_query_style(QueryStyle.
        camera_shift())`` from the chosen day on; photos drawn before are
        unchanged, and the catalogue render is shared, not redone.
        """
        twin = object.__new__(ImageWorld)
        twin.config = dataclasses.replace(self.config, query_style=style)
        twin._set_products(self.products)
        twin._catalogue = self._catalogue
        return twin

    def with_new_category(self) -> ImageWorld:
        """The same world plus one category of a shape kind no model has seen.

        The new category takes the next unused kind (``KINDS[category]``) with
        ``families_per_category x products_per_family`` products plus its
        duplicates and look-alikes, ids after the last one, ``introduced`` one
        more than the last injection, split train/test like the rest (a model
        trained before the injection has seen none of them; a retrain may use
        the ``train`` ones). Existing products and their catalogue images are
        unchanged (photos keep their framing; distractors may be newcomers);
        render the newcomers' shots with ``catalogue(new_ids)`` to add them to
        an index incrementally.
        """
        category = int(self.products["category"].max()) + 1
        if category >= len(KINDS):
            raise ImageWorldError(
                f"every one of the {len(KINDS)} shape kinds is in use already: "
                "build the world with fewer n_categories to keep some for injection"
            )
        introduced = int(self.products["introduced"].max()) + 1
        table = _new_products(self.config, category, self.n_products, introduced)
        twin = object.__new__(ImageWorld)
        twin.config = self.config
        twin._set_products(
            _finish(pd.concat([self.products, table], ignore_index=True))
        )
        twin._catalogue = None
        return twin
