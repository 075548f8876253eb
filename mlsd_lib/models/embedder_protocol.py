"""Train an embedder on one image set's products, measure recall@K on another's.

Introduced in ``casestudies/visual_search/09_interview_followups.ipynb`` ("A loader for
Stanford Online Products is kept and tested on a small sample"; issue 12: "the training
and evaluation recipes run on it unchanged"). Stanford Online Products' protocol (Song
et al. 2016) trains on the products of ``Ebay_train.txt`` and measures recall@K on the
products of ``Ebay_test.txt``, none seen in training: **every test image is a query
against every other test image**, and a hit is another image of the same product.
:func:`train_and_evaluate` is that protocol over any pair of
:class:`~mlsd_lib.datasets.image_sets.ImageSet`, so the world's training images and
SOP's run through the same two calls the chapters make,
:func:`~mlsd_lib.models.embedder_training.train_embedder` and
:func:`~mlsd_lib.evaluation.image_retrieval.recall_at_k_by_product` (with
``exclude_same_id``, so a query never finds itself), with nothing changed.

This is glue, not a new method: the function adds only the two checks the
protocol rests on, each of which would otherwise pass silently or fail deep in
the metric:

* **No product in both sets.** A product seen in training makes recall measure
  memory, not generalization to new catalogue items (the reason SOP splits by
  product, and this case study by listing).
* **Every test product has two images or more.** With the query's own image
  excluded, a product photographed once has nothing to be found; SOP's test
  products all have two to twelve.

The image world's own exam (user photos against catalogue shots, two different
sets) is :func:`~mlsd_lib.visual.offline_report.offline_report`; this function is
the single-set protocol that a public benchmark uses, so a figure measured here
is comparable with the SOP literature's recall@1/10/100 (at its scale and
backbone, which the book's sample and CNN are not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.image_retrieval import recall_at_k_by_product
from mlsd_lib.models.embedder_training import (
    EmbedderFit,
    EmbedderTrainingConfig,
    train_embedder,
)
from mlsd_lib.models.image_embedder import embed_images

__all__ = ["ProtocolError", "ProtocolResult", "train_and_evaluate"]


class ProtocolError(MlsdError, ValueError):
    """A train/test pair the held-out-products protocol cannot measure."""


@dataclass(frozen=True)
class ProtocolResult:
    """What :func:`train_and_evaluate` measured.

    ``recall``: ``{k: recall@k}`` over the test images, each a query against
    the other test images; ``n_queries`` and ``n_test_products`` say over what;
    ``image_size`` is ``(height, width)`` of the images the model saw;
    ``vectors`` are the test images' embeddings, row for row.
    """

    fit: EmbedderFit
    recall: dict[int, float]
    n_queries: int
    n_test_products: int
    image_size: tuple[int, int]
    vectors: np.ndarray


def _check_pair(train: ImageSet, test: ImageSet) -> None:
    for name, images in (("train", train), ("test", test)):
        if not isinstance(images, ImageSet) or len(images) == 0:
            raise ProtocolError(
                f"{name} must be a non-empty ImageSet, got "
                f"{type(images).__name__}{'' if images is None else ' (empty?)'}: "
                "read one with read_sop(root, split) or training_images(world)."
            )
    if train.image_size != test.image_size:
        raise ProtocolError(
            f"train images are {train.image_size} and test images "
            f"{test.image_size} pixels: read both splits with one image_size."
        )
    shared = np.intersect1d(train.product_ids, test.product_ids)
    if shared.size:
        raise ProtocolError(
            f"{shared.size} products are in both train and test (first: "
            f"{shared[0]}): the protocol measures products never seen in "
            "training; split by product (ImageSet.of_products), not by image."
        )
    products, counts = np.unique(test.product_ids, return_counts=True)
    single = products[counts < 2]
    if single.size:
        raise ProtocolError(
            f"{single.size} of {products.size} test products have one image "
            f"(first: {single[0]}): with the query's own image excluded there is "
            "nothing to find; drop them (ImageSet.of_products) or add images."
        )


def train_and_evaluate(
    train: ImageSet,
    test: ImageSet,
    config: EmbedderTrainingConfig | None = None,
    ks: Sequence[int] = (1, 10, 100),
    *,
    progress: bool = False,
) -> ProtocolResult:
    """Train on ``train`` by ``config``; recall@K by product over ``test``.

    Introduced in ``casestudies/visual_search/index.md``. Every test image is
    a query against all other test images (the SOP protocol). Raises
    :class:`ProtocolError` when a product is in both sets, a test product has
    a single image, or the two sets' image sizes differ.
    """
    _check_pair(train, test)
    fit = train_embedder(train, config, progress=progress)
    vectors = embed_images(fit.model, test, num_threads=fit.config.num_threads)
    recall = recall_at_k_by_product(
        vectors,
        test.product_ids,
        vectors,
        test.product_ids,
        ks=ks,
        exclude_same_id=(test.image_ids, test.image_ids),
    )
    return ProtocolResult(
        fit=fit,
        recall=recall,
        n_queries=len(test),
        n_test_products=test.n_products,
        image_size=test.image_size,
        vectors=vectors,
    )
