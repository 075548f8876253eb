"""The one training loop every torch model in the book goes through.

Introduced in ``casestudies/ad_click/03_models.ipynb``. Seeded shuffling, a
tqdm progress bar, and early stopping on a *validation* loss that puts back the
best epoch's weights: a model overfits its id embeddings within a few epochs,
and the epoch to stop at is a property of the data, not a constant.

The loop is a few named steps over one frozen :class:`TrainingConfig`:
:func:`fit_epoch` (one pass of minibatch steps), :class:`EarlyStopping` (keep
the best epoch, stop when patience runs out) and :func:`fit`, which strings
them together for *any* model: it is given the number of training rows, a
function that turns a batch of row indices into the loss to minimize, the
optimizers and, optionally, a validation function (lower is better; a recall
enters as its negative). The models differ only in those functions: the CTR
models' :func:`train` (minibatch binary cross-entropy, validation log loss by
:func:`evaluate`), the recommender's two-tower
(:func:`~mlsd_lib.models.two_tower.train_two_tower`: sampled softmax,
validation recall) and ranker (:func:`~mlsd_lib.models.ranker.train_ranker`).

Embedding tables are large and each batch touches few of their rows, so the
loop updates parameters with sparse gradients (``nn.Embedding(sparse=True)``)
by a lazy Adam (``torch.optim.SparseAdam``: only the rows in the batch move)
and everything else by AdamW with ``weight_decay`` (:func:`make_optimizers`).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.models.ctr import CTRModule, FieldEmbedding, ModelInputError
from mlsd_lib.progress import tqdm
from mlsd_lib.validation import require_number


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: mean training loss, validation loss (if any), seconds.

    ``valid_loss`` is what the validation function returned (lower is better):
    log loss for a CTR model, negative recall@k for a retrieval model.
    """

    epoch: int
    train_loss: float
    valid_loss: float | None
    seconds: float

    @property
    def valid_log_loss(self) -> float | None:
        """The CTR name of :attr:`valid_loss` (the CTR loop validates on log loss)."""
        return self.valid_loss


@dataclass(frozen=True)
class TrainingResult:
    """What :func:`fit` did: per-epoch history and the epoch it kept."""

    history: tuple[EpochRecord, ...]
    best_epoch: int
    best_valid_loss: float | None
    stopped_early: bool
    seconds: float
    extras: dict = field(default_factory=dict, compare=False)

    @property
    def train_losses(self) -> list[float]:
        return [r.train_loss for r in self.history]

    @property
    def valid_losses(self) -> list[float | None]:
        return [r.valid_loss for r in self.history]

    @property
    def valid_log_losses(self) -> list[float | None]:
        """The CTR name of :attr:`valid_losses`."""
        return self.valid_losses

    @property
    def best_valid_log_loss(self) -> float | None:
        """The CTR name of :attr:`best_valid_loss`."""
        return self.best_valid_loss


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
    logit shifts by ``log w``, which is
    :func:`~mlsd_lib.models.downsampling.recalibrate` (and what
    :class:`~mlsd_lib.models.ctr.ProbabilityHead` serves).
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
        raise ModelInputError(
            f"sparse_optimizer must be 'adam' or 'adagrad', not {sparse_optimizer!r}."
        )
    if dense:
        optimizers.append(torch.optim.AdamW(dense, lr=lr, weight_decay=weight_decay))
    if not optimizers:
        raise ValueError(f"{type(model).__name__} has no trainable parameters.")
    return optimizers


def make_optimizers(
    model: nn.Module, config: TrainingConfig
) -> list[torch.optim.Optimizer]:
    """The optimizers :func:`fit` steps: lazy sparse ones for the tables, AdamW else.

    Rows of every ``nn.Embedding(sparse=True)`` move by ``config.sparse_optimizer``
    at ``config.sparse_lr`` (default ``config.lr``); every other parameter by
    AdamW at ``config.lr`` with ``config.weight_decay``. A parameter two modules
    share (the two-tower's item-id table) is stepped once.
    """
    return _optimizers(
        model,
        config.lr,
        config.weight_decay,
        config.sparse_optimizer,
        config.sparse_lr,
    )


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


#: How sparse embedding rows can be stepped (see :class:`TrainingConfig`).
SPARSE_OPTIMIZERS = ("adam", "adagrad")


@dataclass(frozen=True)
class TrainingConfig:
    """How :func:`fit` trains a model: one frozen value instead of a dozen arguments.

    A recipe keeps one per model (:data:`mlsd_lib.adclick.recipes.TORCH_TRAINING`)
    and a notebook changes one field with ``train(..., lr=0.05)`` or
    :func:`dataclasses.replace`; the recommender's two-tower and ranker loops
    reuse it rather than growing ``train``'s signature.

    - ``epochs``, ``batch_size``: the most passes over the data, rows per step.
    - ``lr``, ``weight_decay``: AdamW on the dense parameters.
    - ``embedding_l2``: the lazy per-row L2 prior on embedding tables: a batch
      adds, for each vector it looked up, ``embedding_l2 * |v|^2 / (count *
      batch)`` with ``count`` the row's frequency in the training data, so per
      epoch each row pays the same prior, without a dense step over the whole
      table (see ``_l2_hook``).
    - ``sparse_optimizer``, ``sparse_lr``: how sparse embedding rows are stepped,
      at ``sparse_lr`` (default ``lr``): ``"adam"`` is lazy Adam
      (``SparseAdam``); ``"adagrad"`` shrinks each row's step as the row is seen
      more often, the classic choice for CTR tables where most ids are rare
      (McMahan et al. 2013).
    - ``patience``: epochs without a better validation loss before stopping
      (:class:`EarlyStopping`).
    - ``seed``: fixes the shuffles (and any dropout); with deterministic
      algorithms on for the call, the same seed gives bit-identical weights on
      the same machine and torch build.
    - ``progress``: a tqdm bar; ``num_threads``: torch's intra-op threads for the
      call only (see :func:`torch_threads`).
    """

    epochs: int = 10
    batch_size: int = 4096
    lr: float = 1e-3
    weight_decay: float = 0.0
    embedding_l2: float = 0.0
    sparse_optimizer: str = "adam"
    sparse_lr: float | None = None
    patience: int = 2
    seed: int = 0
    progress: bool = True
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1:
            raise ModelInputError(
                f"epochs, batch_size and patience must be >= 1 (got {self.epochs}, "
                f"{self.batch_size}, {self.patience})."
            )
        require_number("lr", self.lr, above=0, error=ModelInputError)
        if self.sparse_optimizer not in SPARSE_OPTIMIZERS:
            raise ModelInputError(
                f"sparse_optimizer must be 'adam' or 'adagrad', not "
                f"{self.sparse_optimizer!r}."
            )


class EarlyStopping:
    """Keep the weights of the best validation epoch; say when to stop.

    A model overfits its id embeddings within a few epochs, and the epoch to
    stop at is a property of the data, not a constant: stop once the validation
    loss (lower is better: log loss, or a recall entered as its negative) has
    not improved for ``patience`` epochs, and put back the best epoch's weights.
    """

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best_loss = float("inf")
        self.best_epoch = -1
        self._best_state: dict | None = None

    def should_stop(self, epoch: int, valid_loss: float, model: nn.Module) -> bool:
        """Record this epoch's validation loss; True once patience has run out."""
        if valid_loss < self.best_loss:
            self.best_loss, self.best_epoch = valid_loss, epoch
            self._best_state = copy.deepcopy(model.state_dict())
            return False
        return epoch - self.best_epoch >= self.patience

    def restore_best(self, model: nn.Module) -> None:
        """Load the best epoch's weights back into ``model`` (if any was seen)."""
        if self._best_state is not None:
            model.load_state_dict(self._best_state)


def evaluate(model: nn.Module, data: CTRData) -> float:
    """Validation log loss of ``model`` on ``data`` (eval mode, no gradients)."""
    return _log_loss_from_logits(predict_logits(model, data), data.labels)


#: What a batch step returns: the loss to minimize, or ``(objective, loss to
#: report)`` when the objective adds a regularizer the training curve leaves out.
BatchLoss = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def fit_epoch(
    model: nn.Module,
    order: torch.Tensor,
    batch_size: int,
    train_batch: Callable[[torch.Tensor], BatchLoss],
    optimizers: Sequence[torch.optim.Optimizer],
) -> float:
    """One pass over the rows in ``order``, ``batch_size`` at a time; the mean loss.

    ``train_batch(index)`` computes the loss of the rows ``index`` (an int64
    tensor); this steps every optimizer on it. The mean is weighted by rows, so
    a short last batch counts for what it holds.
    """
    model.train()
    total = 0.0
    for i in range(0, len(order), batch_size):
        index = order[i : i + batch_size]
        out = train_batch(index)
        objective, loss = out if isinstance(out, tuple) else (out, out)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        objective.backward()
        # Adagrad builds sparse tensors from the gradient's own indices, which
        # are valid by construction: opt out of torch's invariant checks
        # explicitly (left implicit, torch warns on every run).
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            for optimizer in optimizers:
                optimizer.step()
        total += float(loss.detach()) * len(index)
    return total / len(order)


def fit(
    model: nn.Module,
    n_rows: int,
    train_batch: Callable[[torch.Tensor], BatchLoss],
    optimizers: Sequence[torch.optim.Optimizer],
    config: TrainingConfig,
    validate: Callable[[], float] | None = None,
) -> TrainingResult:
    """Fit any model: seeded epochs of :func:`fit_epoch`, early stopping, best kept.

    ``train_batch(index)`` returns the loss of training rows ``index`` (see
    :data:`BatchLoss`); ``validate()`` returns a validation loss, lower is better
    (a recall enters as its negative). Each epoch shuffles ``range(n_rows)`` with
    a generator seeded by ``config.seed`` (``torch.manual_seed(config.seed)``
    also fixes dropout and anything else drawn from torch's global generator),
    runs :func:`fit_epoch` and then ``validate``: training stops once the
    validation loss has not improved for ``config.patience`` epochs, and the
    best epoch's weights are put back (:class:`EarlyStopping`). Without
    ``validate`` all ``config.epochs`` run and the last weights stay.
    Deterministic algorithms are on for the call, so a seed reproduces the
    weights bit for bit on the same machine and torch build; the model is left
    in eval mode.
    """
    if n_rows < 1:
        raise ModelInputError("the training data set is empty.")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[EpochRecord] = []
    stopping = EarlyStopping(config.patience)
    last_epoch, stopped_early = -1, False
    start = time.perf_counter()
    previous_determinism = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    bar = tqdm(
        range(config.epochs), desc=type(model).__name__, disable=not config.progress
    )
    try:
        with torch_threads(config.num_threads):
            for epoch in bar:
                epoch_start = time.perf_counter()
                order = torch.randperm(n_rows, generator=generator)
                train_loss = fit_epoch(
                    model, order, config.batch_size, train_batch, optimizers
                )
                valid_loss = None if validate is None else float(validate())
                history.append(
                    EpochRecord(
                        epoch, train_loss, valid_loss, time.perf_counter() - epoch_start
                    )
                )
                bar.set_postfix(
                    train=f"{train_loss:.4f}",
                    valid="-" if valid_loss is None else f"{valid_loss:.4f}",
                )
                last_epoch = epoch
                if valid_loss is not None and stopping.should_stop(
                    epoch, valid_loss, model
                ):
                    stopped_early = epoch < config.epochs - 1
                    break
    finally:
        bar.close()
        torch.use_deterministic_algorithms(previous_determinism)
        model.eval()
    stopping.restore_best(model)
    return TrainingResult(
        history=tuple(history),
        best_epoch=last_epoch if validate is None else stopping.best_epoch,
        best_valid_loss=None if validate is None else stopping.best_loss,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - start,
    )


def _ctr_batch_loss(
    model: nn.Module,
    tensors: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    penalties: list[torch.Tensor],
) -> Callable[[torch.Tensor], BatchLoss]:
    """The CTR step: BCE on logits, plus the embedding prior's penalties.

    The penalties the batch's forward pass collected (see
    :class:`TrainingConfig`) join the objective but not the reported loss, so
    the training curve stays comparable with the validation log loss.
    """
    dense, categorical, labels = tensors
    loss_fn = nn.BCEWithLogitsLoss()

    def train_batch(index: torch.Tensor) -> BatchLoss:
        penalties.clear()
        logits = model(dense[index], categorical[index])
        loss = loss_fn(logits, labels[index])
        objective = loss
        for penalty in penalties:
            objective = objective + penalty / len(index)
        return objective, loss

    return train_batch


def train(
    model: nn.Module,
    train_data: CTRData,
    valid_data: CTRData | None = None,
    config: TrainingConfig | None = None,
    **overrides: object,
) -> TrainingResult:
    """Fit a CTR ``model`` (logits out) by minibatch BCE; keep the best epoch.

    ``config`` (default :class:`TrainingConfig`) with any field replaced by a
    keyword (``train(model, data, epochs=3)``). A thin call of :func:`fit`: the
    batch step is binary cross-entropy on the logits (plus the embedding prior
    when ``embedding_l2 > 0``) and, with ``valid_data``, validation is
    :func:`evaluate` (log loss): training stops once it has not improved for
    ``patience`` epochs and the best epoch's weights are restored; without
    ``valid_data``, all ``epochs`` run and the last weights stay.
    """
    config = replace(config or TrainingConfig(), **overrides)  # type: ignore[arg-type]
    _check(model, train_data, "training")
    if valid_data is not None:
        _check(model, valid_data, "validation")
    tensors = to_tensors(train_data)
    optimizers = make_optimizers(model, config)
    penalties: list[torch.Tensor] = []
    hooks = []
    if config.embedding_l2 > 0:
        for module in model.modules():
            if isinstance(module, FieldEmbedding):
                hooks.append(
                    _l2_hook(module, tensors[1], config.embedding_l2, penalties)
                )
    validate = None if valid_data is None else (lambda: evaluate(model, valid_data))
    try:
        return fit(
            model,
            len(train_data),
            _ctr_batch_loss(model, tensors, penalties),
            optimizers,
            config,
            validate,
        )
    finally:
        for hook in hooks:
            hook.remove()
