"""Batches of P products x K images: what a metric-learning loss needs to learn.

Introduced in ``casestudies/visual_search/index.md`` (the follow-up on what goes
into a batch). A pair-based loss learns from the positive pairs (two images of
one product) and negative pairs of its batch. Drawn at random from a catalogue
of thousands of products with four images each, a batch of 128 holds almost no
positive pair; :class:`PKSampler` builds every batch from ``p`` distinct
products with ``k`` images each, so each image has ``k - 1`` positives and
``(p - 1) * k`` negatives in its batch (Hermans et al. 2017).

Products come in the order of a seeded permutation, renewed when it runs out,
so over an epoch (``ceil(n_products / p)`` batches) every product is drawn once
and no product twice in one batch. A product with at least ``k`` images gives
``k`` distinct ones; one with fewer gives all of them and repeats some (drawn
with replacement), since a product with a single image still teaches its
negatives and a repeated image, augmented twice, is still a positive pair.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mlsd_lib.errors import MlsdError

__all__ = ["PKSampler", "SamplerError"]


class SamplerError(MlsdError, ValueError):
    """A sampler cannot be built as asked; the message says what to change."""


class PKSampler:
    """Rows of an image set, ``p`` products x ``k`` images per batch, seeded.

    ``product_ids`` gives each image's product. :meth:`next_batch` returns
    ``p * k`` int64 row positions, product by product (rows ``j * k`` to
    ``(j + 1) * k - 1`` show one product); iterating yields batches forever.
    """

    def __init__(self, product_ids: np.ndarray, p: int, k: int, seed: int = 0) -> None:
        product_ids = np.asarray(product_ids)
        if product_ids.ndim != 1 or not np.issubdtype(product_ids.dtype, np.integer):
            raise SamplerError(
                "product_ids must be a 1-d integer array (one product per image), "
                f"got {product_ids.dtype} of shape {product_ids.shape}."
            )
        if p < 2 or k < 1:
            raise SamplerError(
                f"p must be >= 2 (a batch needs negatives) and k >= 1, got p={p}, "
                f"k={k}."
            )
        self.products, inverse, self.counts = np.unique(
            product_ids, return_inverse=True, return_counts=True
        )
        if p > self.products.size:
            raise SamplerError(
                f"p={p} products per batch, but the images show only "
                f"{self.products.size}: lower p to at most {self.products.size}."
            )
        self.p, self.k = int(p), int(k)
        # rows grouped by product: product j's rows are order[starts[j]:][:counts[j]]
        self._order = np.argsort(inverse, kind="stable").astype(np.int64)
        self._starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]])
        self._rng = np.random.default_rng(seed)
        self._queue = np.zeros(0, dtype=np.int64)

    @property
    def batch_size(self) -> int:
        return self.p * self.k

    @property
    def batches_per_epoch(self) -> int:
        """Batches that draw every product once: ``ceil(n_products / p)``."""
        return -(-self.products.size // self.p)

    def _next_products(self) -> np.ndarray:
        """``p`` distinct product positions, from the running permutation."""
        n = self.products.size
        if self._queue.size < self.p:
            fresh = self._rng.permutation(n)
            # the batch that straddles two permutations must not repeat a product
            tail = self._queue
            fresh = np.concatenate(
                [fresh[~np.isin(fresh, tail)], fresh[np.isin(fresh, tail)]]
            )
            self._queue = np.concatenate([tail, fresh])
        chosen, self._queue = self._queue[: self.p], self._queue[self.p :]
        return chosen

    def next_batch(self) -> np.ndarray:
        """The next ``p * k`` row positions, ``k`` consecutive rows per product."""
        products = self._next_products()
        counts = self.counts[products]
        # the first min(count, k) of a random order of each product's rows
        # (keys beyond its count sort last) ...
        width = int(counts.max())
        keys = self._rng.random((self.p, width))
        keys[np.arange(width)[None, :] >= counts[:, None]] = np.inf
        picks = np.argsort(keys, axis=1)[:, : self.k]
        if width < self.k:
            picks = np.pad(picks, ((0, 0), (0, self.k - width)))
        # ... and, for a product with fewer than k, repeats drawn with replacement
        drawn = (self._rng.random((self.p, self.k)) * counts[:, None]).astype(np.int64)
        repeat = np.arange(self.k)[None, :] >= counts[:, None]
        picks = np.where(repeat, drawn, picks)
        rows = self._order[self._starts[products][:, None] + picks]
        return rows.ravel()

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            yield self.next_batch()
