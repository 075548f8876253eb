"""The training loop: early stopping restores the best epoch, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.evaluation.metrics import log_loss
from mlsd_lib.models import (
    DeepFM,
    HashedLogisticRegression,
    ModelInputError,
    predict_proba,
    train,
)


def random_label_data(n: int, seed: int, *, num_ids: int = 500) -> CTRData:
    """Labels independent of the ids: anything learned per id is overfitting."""
    rng = np.random.default_rng(seed)
    return CTRData(
        dense=rng.normal(size=(n, 1)).astype(np.float32),
        categorical=rng.integers(0, num_ids, size=(n, 2)),
        labels=(rng.random(n) < 0.3).astype(np.float32),
        dense_names=("x",),
        categorical_names=("user", "ad"),
        cardinalities=(num_ids, num_ids),
    )


def signal_data(n: int, seed: int) -> CTRData:
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, 20, size=(n, 2))
    effects = np.linspace(-2, 2, 20)
    p = 1 / (1 + np.exp(-(effects[ids[:, 0]] - effects[ids[:, 1]] - 1)))
    return CTRData(
        dense=rng.normal(size=(n, 1)).astype(np.float32),
        categorical=ids,
        labels=(rng.random(n) < p).astype(np.float32),
        dense_names=("x",),
        categorical_names=("user", "ad"),
        cardinalities=(20, 20),
    )


def test_early_stopping_restores_the_best_epoch() -> None:
    # 1000 rows over 500 ids with random labels: a high learning rate memorizes
    # the training labels, so validation loss is lowest early and then rises.
    train_data, valid_data = random_label_data(1000, 0), random_label_data(1000, 1)
    model = HashedLogisticRegression.from_data(train_data)
    result = train(
        model,
        train_data,
        valid_data,
        epochs=30,
        batch_size=100,
        lr=0.1,
        patience=3,
        progress=False,
    )
    losses = result.valid_log_losses
    assert result.stopped_early
    assert result.best_epoch == int(np.argmin(losses))
    assert len(result.history) == result.best_epoch + 1 + 3
    assert losses[-1] > result.best_valid_log_loss
    # The weights in the model are the best epoch's, not the last epoch's.
    now = log_loss(valid_data.labels, predict_proba(model, valid_data))
    assert now == pytest.approx(result.best_valid_log_loss, rel=1e-6)
    assert not model.training


def test_training_is_deterministic_under_a_seed() -> None:
    data = signal_data(4000, 0)

    def weights(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(1234 + seed)  # the model's own initialization
        model = DeepFM.from_data(data, embedding_dim=4, hidden=(8,), dropout=0.1)
        train(model, data, epochs=2, batch_size=256, lr=0.01, seed=seed, progress=False)
        return model.state_dict()

    first, again, other = weights(0), weights(0), weights(1)
    for name, tensor in first.items():
        assert torch.equal(tensor, again[name]), name
    assert any(not torch.equal(t, other[n]) for n, t in first.items())


def test_without_validation_all_epochs_run_and_training_helps() -> None:
    data = signal_data(4000, 0)
    model = HashedLogisticRegression.from_data(data)
    result = train(model, data, epochs=4, batch_size=256, lr=0.05, progress=False)
    assert len(result.history) == 4 and result.best_epoch == 3
    assert result.best_valid_log_loss is None and not result.stopped_early
    assert result.train_losses[-1] < result.train_losses[0]
    p = predict_proba(model, data)
    assert log_loss(data.labels, p) < log_loss(
        data.labels, np.full(len(data), data.ctr)
    )


def test_progress_bar_can_be_shown(capsys: pytest.CaptureFixture[str]) -> None:
    data = signal_data(500, 0)
    train(HashedLogisticRegression.from_data(data), data, epochs=1, progress=True)
    assert "HashedLogisticRegression" in capsys.readouterr().err


def test_bad_arguments_are_refused() -> None:
    data = signal_data(100, 0)
    model = HashedLogisticRegression.from_data(data)
    with pytest.raises(ValueError, match="epochs"):
        train(model, data, epochs=0)
    with pytest.raises(ModelInputError, match="empty"):
        train(model, data.subset(slice(0, 0)), epochs=1)
    with pytest.raises(ModelInputError, match="2 categorical fields"):
        bad = CTRData(
            dense=data.dense,
            categorical=data.categorical[:, :1],
            labels=data.labels,
            dense_names=data.dense_names,
            categorical_names=("user",),
            cardinalities=(20,),
        )
        train(model, data, bad, epochs=1, progress=False)


def test_embedding_prior_shrinks_what_random_labels_would_memorize() -> None:
    train_data = random_label_data(1000, 0)
    norms = {}
    for strength in (0.0, 100.0):
        model = HashedLogisticRegression.from_data(train_data)
        train(
            model,
            train_data,
            epochs=10,
            batch_size=100,
            lr=0.1,
            embedding_l2=strength,
            progress=False,
        )
        norms[strength] = float(model.weights.table.weight.detach().norm())
        assert not model.weights.table._forward_hooks  # removed after training
    assert norms[100.0] < 0.3 * norms[0.0], norms


def test_adagrad_for_the_tables_also_learns() -> None:
    data = signal_data(4000, 0)
    model = HashedLogisticRegression.from_data(data)
    result = train(
        model,
        data,
        epochs=3,
        batch_size=256,
        lr=0.05,
        sparse_optimizer="adagrad",
        sparse_lr=0.1,
        progress=False,
    )
    assert result.train_losses[-1] < result.train_losses[0]
    with pytest.raises(ValueError, match="sparse_optimizer"):
        train(model, data, epochs=1, sparse_optimizer="sgd", progress=False)


def test_a_config_is_one_frozen_value_and_keywords_replace_its_fields() -> None:
    from dataclasses import FrozenInstanceError, replace

    from mlsd_lib.models import TrainingConfig

    config = TrainingConfig(lr=0.05, epochs=3)
    with pytest.raises(FrozenInstanceError):
        config.lr = 0.1  # type: ignore[misc]
    assert replace(config, epochs=5).lr == 0.05
    with pytest.raises(ModelInputError, match="sparse_optimizer"):
        TrainingConfig(sparse_optimizer="sgd")
    data = signal_data(400, 0)
    same = []
    for kwargs in ({"config": config}, {"lr": 0.05, "epochs": 3}):
        model = HashedLogisticRegression.from_data(data)
        result = train(model, data, progress=False, **kwargs)
        same.append((len(result.history), result.train_losses[-1]))
    assert same[0] == same[1]  # a config and its keywords train alike


def test_early_stopping_keeps_the_best_epoch_and_waits_patience_epochs() -> None:
    from mlsd_lib.models import EarlyStopping

    model = torch.nn.Linear(1, 1)
    stopping = EarlyStopping(patience=2)
    losses = [0.5, 0.4, 0.45, 0.41, 0.39]
    stops = []
    for epoch, loss in enumerate(losses):
        with torch.no_grad():
            model.weight.fill_(epoch)
        stops.append(stopping.should_stop(epoch, loss, model))
    assert stops == [False, False, False, True, False]
    assert (stopping.best_epoch, stopping.best_loss) == (4, 0.39)
    with torch.no_grad():
        model.weight.fill_(-1.0)
    stopping.restore_best(model)
    assert model.weight.item() == 4.0
