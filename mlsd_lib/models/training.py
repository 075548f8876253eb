"""The one training loop every torch CTR model in the book goes through.

Introduced in ``casestudies/ad_click/03_models.ipynb``. Minibatch binary
cross-entropy on logits, seeded shuffling, a tqdm progress bar, and early
stopping on *validation* log loss that puts back the best epoch's weights:
a CTR model overfits its id embeddings within a few epochs, and the epoch to
stop at is a property of the data, not a constant.

Embedding tables are large and each batch touches few of their rows, so the
loop updates parameters with sparse gradients (``nn.Embedding(sparse=True)``)
by a lazy Adam (``torch.optim.SparseAdam``: only the rows in the batch move)
and everything else by AdamW with ``weight_decay``.
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.models.ctr import CTRModule, FieldEmbedding, ModelInputError
from mlsd_lib.progress import tqdm


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training loss, validation log loss (if any), seconds."""

    epoch: int
    train_loss: float
    valid_log_loss: float | None
    seconds: float


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`train` did: per-epoch history and the epoch it kept."""

    history: tuple[EpochRecord, ...]
    best_epoch: int
    best_valid_log_loss: float | None
    stopped_early: bool
    seconds: float
    extras: dict = field(default_factory=dict, compare=False)

    @property
    def train_losses(self) -> list[float]:
        return [r.train_loss for r in self.history]

    @property
    def valid_log_losses(self) -> list[float | None]:
        return [r.valid_log_loss for r in self.history]


def to_tensors(data: CTRData) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(dense float32, categorical int64, labels float32)`` tensors of ``data``."""
    return (
        torch.as_tensor(np.ascontiguousarray(data.dense, dtype=np.float32)),
        torch.as_tensor(np.ascontiguousarray(data.categorical, dtype=np.int64)),
        torch.as_tensor(np.ascontiguousarray(data.labels, dtype=np.float32)),
    )


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Use ``num_threads`` intra-op threads inside the block, then restore.

    On a small machine shared with other processes, torch's parallel regions
    wait on busy cores: a sort of 50,000 ids took 0.3 s with 2 threads and 1 ms
    with 1 on a loaded 2-core box. ``None`` leaves the setting alone.
    """
    if num_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _check(model: nn.Module, data: CTRData, what: str) -> None:
    if len(data) == 0:
        raise ModelInputError(f"the {what} data set is empty.")
    if isinstance(model, CTRModule):
        model.check_data(data)


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    data: CTRData,
    batch_size: int = 65536,
    *,
    num_threads: int | None = None,
) -> np.ndarray:
    """The model's logits for every row of ``data`` (eval mode, no gradients)."""
    _check(model, data, "prediction")
    dense, categorical, _ = to_tensors(data)
    was_training = model.training
    model.eval()
    try:
        with torch_threads(num_threads):
            out = [
                model(dense[i : i + batch_size], categorical[i : i + batch_size])
                for i in range(0, len(data), batch_size)
            ]
    finally:
        model.train(was_training)
    return torch.cat(out).double().numpy()


def predict_proba(
    model: nn.Module,
    data: CTRData,
    batch_size: int = 65536,
    *,
    downsample_rate: float = 1.0,
    num_threads: int | None = None,
) -> np.ndarray:
    """p(click) for every row; recalibrated if trained on downsampled negatives.

    ``downsample_rate`` is the share ``w`` of negatives kept in training; the
    logit shifts by ``log w``, which is :func:`~mlsd_lib.models.downsampling.
    recalibrate` (and what :class:`~mlsd_lib.models.ctr.ProbabilityHead` serves).
    """
    logits = predict_logits(model, data, batch_size, num_threads=num_threads)
    return 1.0 / (1.0 + np.exp(-(logits + np.log(downsample_rate))))


def _log_loss_from_logits(logits: np.ndarray, labels: np.ndarray) -> float:
    # log(1 + e^-z) for y=1 and log(1 + e^z) for y=0, without overflow.
    signed = np.where(labels > 0.5, logits, -logits)
    return float(np.mean(np.logaddexp(0.0, -signed)))


def _optimizers(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    sparse_optimizer: str = "adam",
    sparse_lr: float | None = None,
) -> list[torch.optim.Optimizer]:
    sparse_ids = {
        id(m.weight)
        for m in model.modules()
        if isinstance(m, nn.Embedding) and m.sparse
    }
    sparse = [p for p in model.parameters() if id(p) in sparse_ids and p.requires_grad]
    dense = [
        p for p in model.parameters() if id(p) not in sparse_ids and p.requires_grad
    ]
    optimizers: list[torch.optim.Optimizer] = []
    sparse_lr = lr if sparse_lr is None else sparse_lr
    if sparse and sparse_optimizer == "adam":
        optimizers.append(torch.optim.SparseAdam(sparse, lr=sparse_lr))
    elif sparse and sparse_optimizer == "adagrad":
        optimizers.append(torch.optim.Adagrad(sparse, lr=sparse_lr))
    elif sparse:
        raise ValueError(
            f"sparse_optimizer must be 'adam' or 'adagrad', not {sparse_optimizer!r}."
        )
    if dense:
        optimizers.append(torch.optim.AdamW(dense, lr=lr, weight_decay=weight_decay))
    if not optimizers:
        raise ValueError(f"{type(model).__name__} has no trainable parameters.")
    return optimizers


def _l2_hook(
    module: FieldEmbedding,
    categorical: torch.Tensor,
    strength: float,
    penalties: list[torch.Tensor],
) -> torch.utils.hooks.RemovableHandle:
    """Collect ``strength * sum |v_row|^2 / count_row`` over a batch's lookups.

    ``count_row`` is how often the row occurs in the training set, so over one
    epoch every row pays ``strength * |v_row|^2`` once, whatever its frequency:
    a Gaussian prior on each row, applied only to rows a batch touches. A
    penalty per lookup without the division would shrink a rare id no more
    than a frequent one, and rare ids are the ones that overfit.
    """
    rows = (categorical + module.offsets).flatten()
    counts = torch.bincount(rows, minlength=module.table.num_embeddings)
    inverse = 1.0 / counts.clamp(min=1).float()

    def hook(
        mod: FieldEmbedding, inputs: tuple[torch.Tensor, ...], out: torch.Tensor
    ) -> None:
        if mod.training:
            weight = inverse[inputs[0] + mod.offsets].unsqueeze(-1)
            penalties.append(strength * (weight * out.pow(2)).sum())

    return module.register_forward_hook(hook)


def train(
    model: nn.Module,
    train_data: CTRData,
    valid_data: CTRData | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 4096,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    embedding_l2: float = 0.0,
    sparse_optimizer: str = "adam",
    sparse_lr: float | None = None,
    patience: int = 2,
    seed: int = 0,
    progress: bool = True,
    num_threads: int | None = None,
) -> TrainingResult:
    """Fit ``model`` (logits out) by minibatch BCE; keep the best validation epoch.

    With ``valid_data``, training stops once validation log loss has not
    improved for ``patience`` epochs and the weights of the best epoch are
    restored; without it, all ``epochs`` run and the last weights stay.
    ``seed`` fixes the shuffles (and any dropout), and deterministic algorithms
    are switched on for the duration of the call, so the same seed gives
    bit-identical weights on the same machine and torch build.

    ``weight_decay`` (AdamW) applies to the dense parameters. Embedding rows
    are regularized *lazily* by ``embedding_l2``: a batch adds, for each vector
    it looked up, ``embedding_l2 * |v|^2 / (count * batch)`` with ``count`` the
    row's frequency in ``train_data``, so per epoch each row pays the same L2
    prior, without a dense step over the whole table (see :func:`_l2_hook`).
    ``num_threads`` sets torch's intra-op
    threads for the call only (see :func:`torch_threads`).

    Sparse embedding rows are stepped by ``sparse_optimizer`` at ``sparse_lr``
    (default ``lr``): ``"adam"`` is lazy Adam (``SparseAdam``); ``"adagrad"``
    shrinks each row's step as the row is seen more often, the classic choice
    for CTR tables where most ids are rare (McMahan et al. 2013).
    """
    if epochs < 1 or batch_size < 1 or patience < 1:
        raise ValueError(
            f"epochs, batch_size and patience must be >= 1 (got {epochs}, "
            f"{batch_size}, {patience})."
        )
    _check(model, train_data, "training")
    if valid_data is not None:
        _check(model, valid_data, "validation")
    dense, categorical, labels = to_tensors(train_data)
    n = len(train_data)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimizers = _optimizers(model, lr, weight_decay, sparse_optimizer, sparse_lr)
    loss_fn = nn.BCEWithLogitsLoss()
    looked_up: list[torch.Tensor] = []
    hooks = []
    if embedding_l2 > 0:
        for module in model.modules():
            if isinstance(module, FieldEmbedding):
                hooks.append(_l2_hook(module, categorical, embedding_l2, looked_up))
    history: list[EpochRecord] = []
    best_loss, best_epoch, best_state = float("inf"), -1, None
    stopped_early = False
    start = time.perf_counter()
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    bar = tqdm(range(epochs), desc=type(model).__name__, disable=not progress)
    try:
        with torch_threads(num_threads):
            for epoch in bar:
                epoch_start = time.perf_counter()
                model.train()
                order = torch.randperm(n, generator=generator)
                total = 0.0
                for i in range(0, n, batch_size):
                    index = order[i : i + batch_size]
                    looked_up.clear()
                    logits = model(dense[index], categorical[index])
                    loss = loss_fn(logits, labels[index])
                    objective = loss
                    for penalty in looked_up:
                        objective = objective + penalty / len(index)
                    for optimizer in optimizers:
                        optimizer.zero_grad(set_to_none=True)
                    objective.backward()
                    for optimizer in optimizers:
                        optimizer.step()
                    total += float(loss.detach()) * len(index)
                train_loss = total / n
                valid_loss = None
                if valid_data is not None:
                    valid_loss = _log_loss_from_logits(
                        predict_logits(model, valid_data), valid_data.labels
                    )
                history.append(
                    EpochRecord(
                        epoch, train_loss, valid_loss, time.perf_counter() - epoch_start
                    )
                )
                bar.set_postfix(
                    train=f"{train_loss:.4f}",
                    valid="-" if valid_loss is None else f"{valid_loss:.4f}",
                )
                if valid_loss is None:
                    best_epoch = epoch
                    continue
                if valid_loss < best_loss:
                    best_loss, best_epoch = valid_loss, epoch
                    best_state = copy.deepcopy(model.state_dict())
                elif epoch - best_epoch >= patience:
                    stopped_early = epoch < epochs - 1
                    break
    finally:
        for hook in hooks:
            hook.remove()
        bar.close()
        torch.use_deterministic_algorithms(previous_determinism)
        model.eval()
    if best_state is not None:
        model.load_state_dict(best_state)
    return TrainingResult(
        history=tuple(history),
        best_epoch=best_epoch,
        best_valid_log_loss=None if valid_data is None else best_loss,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - start,
    )
