"""Loader for Stanford Online Products (Song et al. 2016), the public visual-search set.

Introduced in ``casestudies/visual_search/index.md``. SOP holds 120,053 eBay
photos of 22,634 products in 12 categories; its protocol trains on the 11,318
products of ``Ebay_train.txt`` and measures recall@K on the 11,316 products of
``Ebay_test.txt``, none seen in training: the same need to generalize to new
catalogue items as this case study's. The unpacked archive is a root folder
holding the two list files and one image folder per category::

    Stanford_Online_Products/
        Ebay_train.txt  Ebay_test.txt  Ebay_info.txt
        bicycle_final/111085122871_0.JPG  ...
        cabinet_final/ ...   (12 folders, one per category)

Each list file opens with the header ``image_id class_id super_class_id path``
and has one space-separated line per image, e.g.
``1 1 1 bicycle_final/111085122871_0.JPG``: the image id, the product
(``class_id``), the category (``super_class_id``, 1-12 in the folder names'
alphabetical order) and the image's path relative to the root.
:func:`read_sop` turns one split into an
:class:`~mlsd_lib.datasets.image_sets.ImageSet` (``class_id`` -> product ids,
``super_class_id`` -> category ids, ``image_id`` -> image ids, all as the file
gives them), so the image world's training and evaluation recipes run on it
unchanged.

Why the loader is written the way it is:

* **Square by centre crop, by default.** SOP photos come in every aspect ratio;
  the embedders take ``image_size`` x ``image_size``. ``fit="crop"`` cuts the
  largest centred square and resizes it (bilinear, antialiased, Pillow's
  ``ImageOps.fit``): the evaluation transform of the published SOP
  recipes (resize the short side, centre crop), and the object fills the frame
  as in the world's catalogue shots. It can cut the ends of long objects
  (bicycles, sofas); ``fit="pad"`` keeps the whole photo and fills the sides
  with white, SOP's usual studio background, at the price of a smaller
  object. The choice is a parameter because it is a measurable one.
* **Decoded small.** ``Image.draft`` asks the JPEG decoder for a 1/2, 1/4 or
  1/8 scale that is still at least ``image_size``, so a 1,000-pixel photo is
  not decoded in full to make a 64-pixel thumbnail (several times faster).
* **Every file checked before any is decoded.** A missing image is reported
  with its list line before minutes are spent decoding the others; a broken
  line names the file and the line number, as
  :mod:`~mlsd_lib.datasets.movielens` does.

:func:`write_sop_sample` writes a small archive in the exact layout (synthetic
JPEGs of a few coloured shapes per product) for the tests and the notebooks,
because nothing in this book's sandbox downloads the real data.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw, ImageOps

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.progress import tqdm

__all__ = [
    "SOPFileNotFound",
    "SOPFormatError",
    "read_sop",
    "write_sop_sample",
]

#: Split name -> the list file that holds it.
SPLIT_FILES = {"train": "Ebay_train.txt", "test": "Ebay_test.txt"}
HEADER = ("image_id", "class_id", "super_class_id", "path")
#: The 12 categories, in ``super_class_id`` order (1-12); folder ``<name>_final``.
CATEGORIES = (
    "bicycle", "cabinet", "chair", "coffee_maker", "fan", "kettle",
    "lamp", "mug", "sofa", "stapler", "table", "toaster",
)  # fmt: skip
FITS = ("crop", "pad")
_PAD_COLOUR = (255, 255, 255)


class SOPFormatError(MlsdError, ValueError):
    """A list file or image is not what SOP's layout says; names file and line."""


class SOPFileNotFound(MlsdError, FileNotFoundError):
    """A list file or an image the list names is missing under the root."""


def _list_path(root: Path, split: str) -> Path:
    if split not in SPLIT_FILES:
        raise SOPFormatError(
            f"split must be 'train' or 'test', got {split!r}: SOP has those two "
            "(the test products are never seen in training); carve a validation "
            "set out of 'train' by product if you need one."
        )
    path = root / SPLIT_FILES[split]
    if not path.is_file():
        raise SOPFileNotFound(
            f"{path.name} not found in {root}: point root at the unpacked "
            "Stanford_Online_Products folder (it holds Ebay_train.txt, "
            "Ebay_test.txt and the *_final image folders), or write a sample "
            "there with write_sop_sample(root)."
        )
    return path


def _read_list(
    path: Path, limit: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """``(image_ids, class_ids, super_class_ids, paths)`` of the first ``limit``
    lines after the header; raises naming the file and line of a bad one."""
    with open(path, encoding="utf-8", errors="replace") as handle:
        header = handle.readline().split()
        if tuple(header) != HEADER:
            raise SOPFormatError(
                f"{path.name} line 1: expected the header {' '.join(HEADER)!r}, "
                f"got {' '.join(header)!r}: is this an SOP list file? (Ebay_train.txt "
                "and Ebay_test.txt open with that line.)"
            )
        ids: list[tuple[int, int, int]] = []
        paths: list[str] = []
        for number, line in enumerate(handle, start=2):
            if limit is not None and len(paths) >= limit:
                break
            fields = line.split()
            if not fields:
                continue  # a trailing blank line
            where = f"{path.name} line {number}"
            if len(fields) != 4:
                raise SOPFormatError(
                    f"{where}: expected 4 space-separated fields "
                    f"({' '.join(HEADER)}), got {len(fields)}: {line.strip()!r}"
                )
            numbers = []
            for name, value in zip(HEADER[:3], fields[:3], strict=True):
                if not value.isdigit() or int(value) < 1:
                    raise SOPFormatError(
                        f"{where}: {name} {value!r} is not a positive integer."
                    )
                numbers.append(int(value))
            relative = PurePosixPath(fields[3])
            if relative.is_absolute() or ".." in relative.parts:
                raise SOPFormatError(
                    f"{where}: path {fields[3]!r} must be relative to the root and "
                    "stay inside it (like 'bicycle_final/111085122871_0.JPG')."
                )
            ids.append((numbers[0], numbers[1], numbers[2]))
            paths.append(fields[3])
    table = np.asarray(ids, dtype=np.int64).reshape(-1, 3)
    image_ids, class_ids, super_ids = table[:, 0], table[:, 1], table[:, 2]
    _check_ids(path.name, image_ids, class_ids, super_ids)
    return image_ids, class_ids, super_ids, paths


def _check_ids(
    name: str, image_ids: np.ndarray, class_ids: np.ndarray, super_ids: np.ndarray
) -> None:
    """Image ids unique; each product in one category (line numbers on failure)."""
    order = np.argsort(image_ids, kind="stable")
    repeat = np.flatnonzero(image_ids[order][1:] == image_ids[order][:-1])
    if repeat.size:
        first, second = order[repeat[0]], order[repeat[0] + 1]
        raise SOPFormatError(
            f"{name}: image_id {image_ids[first]} appears on lines {first + 2} and "
            f"{second + 2}; image ids must be unique within a list file."
        )
    order = np.lexsort((super_ids, class_ids))
    mixed = np.flatnonzero(
        (class_ids[order][1:] == class_ids[order][:-1])
        & (super_ids[order][1:] != super_ids[order][:-1])
    )
    if mixed.size:
        first, second = order[mixed[0]], order[mixed[0] + 1]
        raise SOPFormatError(
            f"{name}: product (class_id) {class_ids[first]} is in category "
            f"{super_ids[first]} on line {first + 2} and {super_ids[second]} on "
            f"line {second + 2}; a product belongs to one super_class_id."
        )


def _decode(file: Path, image_size: int, fit: str) -> np.ndarray:
    """One image as ``uint8`` ``(image_size, image_size, 3)``."""
    with Image.open(file) as image:
        image.draft("RGB", (image_size, image_size))  # JPEG: decode at 1/2..1/8
        rgb = image.convert("RGB")
    size = (image_size, image_size)
    method = Image.Resampling.BILINEAR
    if fit == "crop":
        square = ImageOps.fit(rgb, size, method=method, centering=(0.5, 0.5))
    else:
        square = ImageOps.pad(rgb, size, method=method, color=_PAD_COLOUR)
    return np.asarray(square, dtype=np.uint8)


def read_sop(
    root: str | Path,
    split: str = "train",
    image_size: int = 64,
    limit: int | None = None,
    *,
    fit: str = "crop",
    progress: bool = False,
) -> ImageSet:
    """One split of Stanford Online Products as an
    :class:`~mlsd_lib.datasets.image_sets.ImageSet`.

    Introduced in ``casestudies/visual_search/index.md``. ``root`` is the
    unpacked ``Stanford_Online_Products`` folder; ``split`` is ``"train"``
    (``Ebay_train.txt``) or ``"test"`` (``Ebay_test.txt``). Each image is
    decoded with Pillow, converted to RGB (SOP has a few grayscale photos) and
    made ``image_size`` pixels square: ``fit="crop"`` (default) cuts the
    largest centred square, ``fit="pad"`` pads the short side with white; both
    then resize bilinearly. ``limit`` reads only the first ``limit`` images of
    the list (the list is grouped by product, so these are whole products but
    perhaps the last). Product, category and image ids are the file's own.

    Raises :class:`SOPFileNotFound` for a missing list file or image (every
    image is checked before any is decoded) and :class:`SOPFormatError` for a
    bad split, header or line, or an image Pillow cannot decode.
    """
    root = Path(root)
    if not isinstance(image_size, int | np.integer) or not 8 <= image_size <= 1024:
        raise SOPFormatError(
            f"image_size must be an integer from 8 to 1024 pixels, got "
            f"{image_size!r} (the book's embedders take 64)."
        )
    if limit is not None and (not isinstance(limit, int | np.integer) or limit < 1):
        raise SOPFormatError(
            f"limit must be a positive integer or None (every image), got {limit!r}."
        )
    if fit not in FITS:
        raise SOPFormatError(
            f"fit must be 'crop' (centre square, the SOP evaluation transform) or "
            f"'pad' (whole photo on white), got {fit!r}."
        )
    list_file = _list_path(root, split)
    image_ids, class_ids, super_ids, paths = _read_list(list_file, limit)
    files = [root / p for p in paths]
    missing = [i for i, file in enumerate(files) if not file.is_file()]
    if missing:
        first = missing[0]
        raise SOPFileNotFound(
            f"{len(missing)} of the {len(files)} images listed in {list_file.name} "
            f"are missing under {root} (first: line {first + 2}, "
            f"{paths[first]!r}): unpack the whole archive into root, or pass "
            "limit= to read only the first images."
        )
    pixels = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    rows = tqdm(
        range(len(files)),
        desc=f"decoding SOP {split}",
        unit="img",
        disable=not progress,
    )
    for i in rows:
        try:
            pixels[i] = _decode(files[i], int(image_size), fit)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            raise SOPFormatError(
                f"{list_file.name} line {i + 2}: cannot decode {paths[i]!r} "
                f"({err}); replace the file from the archive, or remove its line."
            ) from err
    return ImageSet(
        images=pixels,
        product_ids=class_ids,
        category_ids=super_ids,
        image_ids=image_ids,
    )


# --------------------------------------------------------------------------
# Writing a synthetic sample

_FIRST_LISTING = 111_085_122_871  # the first eBay listing id in bicycle_final


def _draw_product(
    shapes: np.ndarray, colours: np.ndarray, background: np.ndarray, jitter: np.ndarray
) -> Image.Image:
    """One photo of a product: its shapes on its background, moved a little."""
    width, height = int(jitter[0]), int(jitter[1])
    image = Image.new("RGB", (width, height), tuple(int(c) for c in background))
    draw = ImageDraw.Draw(image)
    dx, dy, scale = jitter[2], jitter[3], jitter[4]
    for (kind, cx, cy, half), colour in zip(shapes, colours, strict=True):
        x, y = (cx + dx) * width, (cy + dy) * height
        r = half * scale * min(width, height)
        fill = tuple(int(c) for c in colour)
        if kind == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif kind == 1:
            draw.rectangle((x - r, y - 0.6 * r, x + r, y + 0.6 * r), fill=fill)
        else:
            draw.polygon([(x, y - r), (x + r, y + r), (x - r, y + r)], fill=fill)
    return image


def write_sop_sample(
    root: str | Path,
    n_products: int = 8,
    images_per_product: int = 3,
    seed: int = 0,
    *,
    train_fraction: float = 0.5,
) -> Path:
    """Write a small archive in SOP's exact layout under ``root``; returns ``root``.

    Introduced in ``casestudies/visual_search/index.md``, for the tests and
    the notebooks. Each product is 2-3 coloured shapes (disc, bar, triangle) on
    a tinted background; its ``images_per_product`` photos move and scale them
    a little and vary the frame (96-160 pixels a side, rarely square), so the
    centre crop matters. Products cycle through the 12 categories; the first
    ``train_fraction`` of them are ``Ebay_train.txt``'s (class ids 1..n), the
    rest ``Ebay_test.txt``'s, and ``Ebay_info.txt`` lists all, as in the
    archive. Image ids restart at 1 in each split file. Seeded: the same
    arguments write the same bytes.
    """
    root = Path(root)
    if not isinstance(n_products, int) or n_products < 2:
        raise SOPFormatError(
            f"n_products must be an integer >= 2 (one train and one test product "
            f"at least), got {n_products!r}."
        )
    if not isinstance(images_per_product, int) or images_per_product < 1:
        raise SOPFormatError(
            f"images_per_product must be a positive integer, got "
            f"{images_per_product!r} (SOP has 2-12; recall needs 2 or more)."
        )
    n_train = round(n_products * train_fraction)
    if not 1 <= n_train < n_products:
        raise SOPFormatError(
            f"train_fraction={train_fraction} leaves {n_train} of {n_products} "
            "products for training: both splits need at least one product."
        )
    rng = np.random.default_rng(seed)
    n_shapes = rng.integers(2, 4, n_products)
    records: list[tuple[int, int, int, str]] = []
    for product in range(n_products):
        category = product % len(CATEGORIES)
        folder = root / f"{CATEGORIES[category]}_final"
        folder.mkdir(parents=True, exist_ok=True)
        k = int(n_shapes[product])
        shapes = np.column_stack(
            [
                rng.integers(0, 3, k),
                rng.uniform(0.3, 0.7, k),
                rng.uniform(0.3, 0.7, k),
                rng.uniform(0.12, 0.25, k),
            ]
        )
        colours = rng.integers(0, 256, (k, 3))
        background = rng.integers(200, 256, 3)
        jitters = np.column_stack(
            [
                rng.integers(96, 161, images_per_product),
                rng.integers(96, 161, images_per_product),
                rng.uniform(-0.05, 0.05, (images_per_product, 2)),
                rng.uniform(0.85, 1.15, images_per_product),
            ]
        )
        listing = _FIRST_LISTING + 7919 * product
        for view in range(images_per_product):
            relative = f"{folder.name}/{listing}_{view}.JPG"
            image = _draw_product(shapes, colours, background, jitters[view])
            image.save(root / relative, format="JPEG", quality=92)
            records.append((product + 1, category + 1, view, relative))
    header = " ".join(HEADER) + "\n"
    splits = {
        "Ebay_train.txt": [r for r in records if r[0] <= n_train],
        "Ebay_test.txt": [r for r in records if r[0] > n_train],
        "Ebay_info.txt": records,
    }
    for name, rows in splits.items():
        lines = [f"{i} {c} {s} {p}\n" for i, (c, s, _, p) in enumerate(rows, start=1)]
        (root / name).write_text(header + "".join(lines), encoding="utf-8")
    return root
