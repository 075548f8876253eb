"""Metric-learning losses by name, from ``pytorch-metric-learning``.

Introduced in ``casestudies/visual_search/04_models.ipynb`` (the follow-up on how to
train the embedder). An embedder for visual search is trained on identities, not classes
it will meet again: the products it must tell apart at serving time were never in
training. The losses that do this fall into three families, and :func:`metric_loss`
builds one of each by name:

* **Pair-based**, on the similarities between the images of a batch:
  ``"contrastive"`` (pull positives together, push negatives beyond a margin;
  Hadsell et al. 2006) and ``"multi_similarity"`` (every pair weighted by how
  hard it is relative to the others, after a miner keeps only the informative
  ones; Wang et al. 2019). They need batches with positives, hence the
  :class:`~mlsd_lib.models.pk_sampler.PKSampler`, and their signal depends on
  the batch's composition.
* **Proxy-based**: one learned vector (a *proxy*) per training product, and
  each image is pulled to its proxy and pushed from the others:
  ``"proxy_anchor"`` (Kim et al. 2020) and ``"normalized_softmax"`` (a softmax
  over cosines with a temperature; Zhai & Wu 2019, the loss of Pinterest's
  visual embeddings). Every step sees every product through its proxy, so they
  converge in fewer steps, but the proxies are parameters (one row per training
  product) that the optimizer must move too, usually at a higher learning rate.
* **Self-supervised**: ``"ntxent"`` (SimCLR's normalized temperature-scaled
  cross entropy; Chen et al. 2020) needs no identity at all: two augmented views
  of one image are the positive pair and every other image of the batch a
  negative.

The library is ``pytorch-metric-learning`` (Musgrave et al. 2020), well kept and
exact about the published losses; the book writes one of them out by hand
(:mod:`mlsd_lib.models.multi_similarity`) and tests that it agrees.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pytorch_metric_learning import losses, miners
from torch import nn

from mlsd_lib.errors import MlsdError

__all__ = [
    "LOSSES",
    "PAIR_LOSSES",
    "PROXY_LOSSES",
    "SELF_SUPERVISED_LOSSES",
    "MetricLoss",
    "UnknownLoss",
    "metric_loss",
]

#: Pair-based losses: they learn from the pairs a batch holds (a miner picks them).
PAIR_LOSSES: tuple[str, ...] = ("contrastive", "multi_similarity")
#: Proxy-based losses: one learned centre per product, optimized with the model.
PROXY_LOSSES: tuple[str, ...] = ("proxy_anchor", "normalized_softmax")
#: Losses that need no labels: two augmented views of one image are the positives.
SELF_SUPERVISED_LOSSES: tuple[str, ...] = ("ntxent",)
#: Every loss name :func:`metric_loss` knows.
LOSSES: tuple[str, ...] = PAIR_LOSSES + PROXY_LOSSES + SELF_SUPERVISED_LOSSES


class UnknownLoss(MlsdError, ValueError):
    """A loss name or setting the factory does not know; the message lists them."""


#: name -> (loss class, default settings, miner factory or None). Defaults are
#: the papers' (margins, temperatures) except where noted in :func:`metric_loss`.
_SPECS: dict[str, tuple[type[nn.Module], dict, Callable[[], nn.Module] | None]] = {
    "contrastive": (
        losses.ContrastiveLoss,
        {"pos_margin": 0.0, "neg_margin": 1.0},
        None,
    ),
    "multi_similarity": (
        losses.MultiSimilarityLoss,
        {"alpha": 2.0, "beta": 50.0, "base": 0.5},
        lambda: miners.MultiSimilarityMiner(epsilon=0.1),
    ),
    "proxy_anchor": (losses.ProxyAnchorLoss, {"margin": 0.1, "alpha": 32.0}, None),
    "normalized_softmax": (losses.NormalizedSoftmaxLoss, {"temperature": 0.05}, None),
    "ntxent": (losses.NTXentLoss, {"temperature": 0.1}, None),
}


@dataclass
class MetricLoss:
    """A loss (with its miner, if it has one) called as ``loss(embeddings, labels)``.

    ``labels`` are int64 identities; for a proxy loss they must be the rows of
    its proxy table (``0 .. n_classes - 1``). :attr:`parameters` are what the
    optimizer must step besides the model's (the proxies; empty for the other
    families).
    """

    name: str
    loss: nn.Module
    miner: nn.Module | None = None

    @property
    def family(self) -> str:
        """``"pair"``, ``"proxy"`` or ``"self_supervised"``."""
        if self.name in PROXY_LOSSES:
            return "proxy"
        if self.name in SELF_SUPERVISED_LOSSES:
            return "self_supervised"
        return "pair"

    @property
    def parameters(self) -> list[nn.Parameter]:
        return list(self.loss.parameters())

    def __call__(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        pairs = None if self.miner is None else self.miner(embeddings, labels)
        return self.loss(embeddings, labels, pairs)


def metric_loss(
    name: str,
    *,
    n_classes: int | None = None,
    dim: int | None = None,
    seed: int = 0,
    **settings: float,
) -> MetricLoss:
    """The loss called ``name`` (one of :data:`LOSSES`), with ``settings`` changed.

    Proxy losses need ``n_classes`` (training products) and ``dim`` (embedding
    size) for their proxy table, drawn from a generator seeded by ``seed``.
    ``settings`` override the defaults by the library's argument names
    (``temperature=0.1``, ``margin=0.2``). NT-Xent's temperature defaults to 0.1
    rather than the library's 0.07, and the multi-similarity loss comes with its
    own miner (``epsilon`` 0.1), as in the paper.
    """
    if name not in _SPECS:
        raise UnknownLoss(
            f"unknown loss {name!r}: known losses are {', '.join(LOSSES)} "
            f"(pair-based {PAIR_LOSSES}, proxy-based {PROXY_LOSSES}, "
            f"self-supervised {SELF_SUPERVISED_LOSSES})."
        )
    cls, defaults, miner = _SPECS[name]
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise UnknownLoss(
            f"the {name} loss has no setting {unknown}: it takes {sorted(defaults)}."
        )
    kwargs: dict = {**defaults, **settings}
    if name in PROXY_LOSSES:
        if n_classes is None or dim is None or n_classes < 2 or dim < 1:
            raise UnknownLoss(
                f"the {name} loss learns one proxy per training product: pass "
                f"n_classes (>= 2 products) and dim (the embedding size), got "
                f"n_classes={n_classes}, dim={dim}."
            )
        kwargs.update(num_classes=int(n_classes), embedding_size=int(dim))
    assert set(kwargs) <= set(inspect.signature(cls.__init__).parameters)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        loss = cls(**kwargs)
    return MetricLoss(name=name, loss=loss, miner=None if miner is None else miner())
