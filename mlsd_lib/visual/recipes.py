"""The visual search case study's recipes: which world, which embedder, which
market, at each size.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` ("How this case study
unfolds"). Several chapters, the tests and the benchmarks build a release of their own;
one named :class:`VisualRecipe` per size keeps them on the same settings, so a figure in
one chapter can be reproduced in another:

* ``"tiny"``: 4 categories x 4 families x 8 products (about 140 listings,
  560 catalogue images), the narrow embedder (:data:`NARROW`: widths 16 to
  128, 64 dimensions, 16 products x 4 images a batch) for 40 steps: the
  serving tests, which check that the stages run together, not how good the
  model is;
* ``"quick"``: the world's ``quick`` preset (about 840 listings, 3,360
  images) and the narrow embedder for 80 steps, one cropped user photo per
  training product besides its catalogue images (about 12 s of one core):
  the serving chapter, which needs a release that finds most products, in
  its time budget;
* ``"small"``: the world's ``small`` preset (about 1,230 listings, 4,900
  images) and the models package's tuned embedder recipe
  (:class:`~mlsd_lib.models.embedder_training.EmbedderTrainingConfig`'s
  defaults, the one the model chapter trains): the serving benchmark, and
  any chapter that can afford it.

The embedder trains on the world's training products only
(:func:`~mlsd_lib.visual.training_images.training_images`: their catalogue
images, plus ``photos_per_product`` cropped user photos of each); the test
products, never seen in training, are what a query should find. ``steps``
shortens a recipe where a chapter needs a release to serve, not the best
model.

**The index is IVF without PQ** (``IndexSpec("ivf")``, 16 lists probed). The
page's design is IVF-PQ, and at 200 M images its compression is the point;
at these sizes (a few thousand images) the PQ codebooks, 256 centroids per
sub-quantizer, cannot be trained (faiss asks for ~10,000 training points and
says so), while the coarse lists and ``nprobe``, the knob a serving engineer
turns, are the same. The release stores the full vectors for the exact
re-rank either way.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mlsd_lib.errors import MlsdError
from mlsd_lib.index.spec import IndexSpec
from mlsd_lib.models.embedder_training import EmbedderTrainingConfig
from mlsd_lib.worlds.images_config import ImageWorldConfig
from mlsd_lib.worlds.images_market import MarketConfig

__all__ = [
    "NARROW",
    "SCALES",
    "SERVED_INDEX",
    "UnknownScale",
    "VisualRecipe",
    "visual_recipe",
]

#: The recipe sizes, smallest first.
SCALES = ("tiny", "quick", "small")
#: The catalogue index of every recipe (see the module notes).
SERVED_INDEX = IndexSpec("ivf", nprobe=16)
#: The narrow embedder of the ``tiny`` and ``quick`` recipes: a quarter of the
#: tuned recipe's multiply-adds, fast to train, served the same way.
NARROW = {"dim": 64, "widths": (16, 32, 64, 128), "p": 16, "k": 4}


class UnknownScale(MlsdError, ValueError):
    """A recipe size that does not exist; the message lists the known ones."""


@dataclass(frozen=True)
class VisualRecipe:
    """A world, an embedder training and a market, named by size.

    ``index``: the catalogue index's spec (see the module notes).
    ``photos_per_product``: cropped user photos of each training product added
    to its catalogue images. ``dedup_precision``: the precision the release's
    dedup threshold is chosen for, on the world's labelled duplicate and
    look-alike pairs.
    """

    scale: str
    world: ImageWorldConfig
    embedder: EmbedderTrainingConfig
    market: MarketConfig
    index: IndexSpec = SERVED_INDEX
    photos_per_product: int = 0
    dedup_precision: float = 0.99


def visual_recipe(
    scale: str = "small", *, seed: int = 0, steps: int | None = None
) -> VisualRecipe:
    """The recipe of ``scale`` (one of :data:`SCALES`), seeded; ``steps``
    overrides the embedder's training steps."""
    photos = 1
    if scale == "tiny":
        photos = 0
        world = ImageWorldConfig.quick(
            n_categories=4, families_per_category=4, products_per_family=8, seed=seed
        )
        embedder = EmbedderTrainingConfig(**NARROW, steps=40, seed=seed)
    elif scale == "quick":
        world = ImageWorldConfig.quick(seed=seed)
        embedder = EmbedderTrainingConfig(**NARROW, steps=80, seed=seed)
    elif scale == "small":
        world = ImageWorldConfig.small(seed=seed)
        embedder = EmbedderTrainingConfig(seed=seed)
    else:
        raise UnknownScale(
            f"unknown recipe scale {scale!r}: choose one of {', '.join(SCALES)}."
        )
    if steps is not None:
        embedder = dataclasses.replace(embedder, steps=steps)
    market = MarketConfig(seed=seed)
    return VisualRecipe(scale, world, embedder, market, photos_per_product=photos)
