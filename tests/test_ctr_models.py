"""CTR models: shapes, learning interactions LR cannot, export parity, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mlsd_lib.datasets.ctr import CTRData
from mlsd_lib.evaluation.metrics import log_loss
from mlsd_lib.models import (
    DCNv2,
    DeepFM,
    GBDTPlusLR,
    HashedLogisticRegression,
    ModelInputError,
    ProbabilityHead,
    fm_interaction,
    predict_proba,
    train,
)
from mlsd_lib.serving.export import export_model


def xor_data(n: int, seed: int, *, xor_scale: float = 2.0) -> CTRData:
    """Two id fields whose click rate depends on the *pair* (XOR of id parities).

    Each id alone says nothing (its parity's effect averages out over the other
    field), so a model without crosses sits at the constant predictor on that
    part of the signal; a third field and a dense column carry main effects.
    """
    rng = np.random.default_rng(seed)
    effects = np.random.default_rng(99).normal(0, 0.7, 10)
    a, b, c = rng.integers(0, 30, n), rng.integers(0, 30, n), rng.integers(0, 10, n)
    dense = rng.normal(size=(n, 2)).astype(np.float32)
    sign = (2 * (a % 2) - 1) * (2 * (b % 2) - 1)
    logit = -1.5 + 0.5 * dense[:, 0] + effects[c] + xor_scale * sign
    p = 1 / (1 + np.exp(-logit))
    return CTRData(
        dense=dense,
        categorical=np.stack([a, b, c], axis=1).astype(np.int64),
        labels=(rng.random(n) < p).astype(np.float32),
        dense_names=("x0", "x1"),
        categorical_names=("a", "b", "c"),
        cardinalities=(30, 30, 10),
        true_prob=p,
    )


def nonlinear_dense_data(n: int, seed: int) -> CTRData:
    """Click rate a bump in one dense feature and a threshold cross of two."""
    rng = np.random.default_rng(seed)
    dense = rng.uniform(-2, 2, size=(n, 3)).astype(np.float32)
    logit = (
        -1.0
        + 2.0 * (np.abs(dense[:, 0]) < 0.7)
        - 1.5 * ((dense[:, 1] > 0) & (dense[:, 2] > 0))
    )
    p = 1 / (1 + np.exp(-logit))
    return CTRData(
        dense=dense,
        categorical=rng.integers(0, 5, size=(n, 1)),
        labels=(rng.random(n) < p).astype(np.float32),
        dense_names=("x0", "x1", "x2"),
        categorical_names=("noise",),
        cardinalities=(5,),
        true_prob=p,
    )


@pytest.fixture(scope="module")
def splits() -> tuple[CTRData, CTRData, CTRData]:
    return xor_data(20_000, 1), xor_data(5_000, 2), xor_data(20_000, 3)


MODELS = {
    "lr": lambda d: HashedLogisticRegression.from_data(d),
    "deepfm": lambda d: DeepFM.from_data(d, embedding_dim=8, hidden=(32,)),
    "dcn_parallel": lambda d: DCNv2.from_data(d, embedding_dim=8, hidden=(32,)),
    "dcn_stacked_lowrank": lambda d: DCNv2.from_data(
        d, embedding_dim=8, hidden=(32,), structure="stacked", low_rank=4
    ),
}


def normalized_entropy(y: np.ndarray, p: np.ndarray) -> float:
    ctr = float(np.mean(y))
    return log_loss(y, p) / log_loss(y, np.full(len(y), ctr))


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_returns_one_logit_per_row(name: str) -> None:
    data = xor_data(64, 0)
    model = MODELS[name](data)
    out = model(torch.as_tensor(data.dense), torch.as_tensor(data.categorical))
    assert out.shape == (64,)
    assert out.dtype == torch.float32


def test_fm_interaction_is_the_sum_over_pairs() -> None:
    v = torch.randn(5, 4, 3)
    brute = sum((v[:, i] * v[:, j]).sum(1) for i in range(4) for j in range(i + 1, 4))
    torch.testing.assert_close(fm_interaction(v), brute)


@pytest.fixture(scope="module")
def trained(splits: tuple[CTRData, CTRData, CTRData]) -> dict[str, float]:
    """Test-set NE of each model after a short, early-stopped training."""
    train_data, valid_data, test_data = splits
    results = {}
    for name, make in MODELS.items():
        model = make(train_data)
        train(
            model,
            train_data,
            valid_data,
            epochs=6,
            batch_size=512,
            lr=0.01,
            patience=2,
            seed=0,
            progress=False,
            num_threads=1,
        )
        p = predict_proba(model, test_data, num_threads=1)
        results[name] = normalized_entropy(test_data.labels, p)
    results["bayes"] = normalized_entropy(test_data.labels, test_data.true_prob)
    return results


def test_every_model_beats_the_constant_predictor(trained: dict[str, float]) -> None:
    for name in MODELS:
        assert trained[name] < 0.97, (name, trained)


@pytest.mark.parametrize("name", ["deepfm", "dcn_parallel", "dcn_stacked_lowrank"])
def test_crossing_models_learn_the_xor_lr_cannot(
    trained: dict[str, float], name: str
) -> None:
    # LR only sees the main effects; the pair effect is worth far more than 5% NE.
    assert trained[name] < trained["lr"] - 0.05, trained
    assert trained[name] < trained["bayes"] * 1.05, trained


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("format", ["torchscript", "pt2"])
def test_models_export_with_parity(name: str, format: str, tmp_path: Path) -> None:
    data = xor_data(256, 0)
    model = MODELS[name](data)
    train(model, data, epochs=1, batch_size=64, lr=0.01, progress=False)
    head = ProbabilityHead(model, downsample_rate=0.25).eval()
    example = (torch.as_tensor(data.dense[:8]), torch.as_tensor(data.categorical[:8]))
    samples = [
        (torch.as_tensor(data.dense[:k]), torch.as_tensor(data.categorical[:k]))
        for k in (1, 8, 100)
    ]
    exported = export_model(
        head,
        example,
        tmp_path / f"{name}.{format}",
        format=format,
        sample_inputs=samples,
    )
    assert exported.report.passed
    # The served probability is the recalibrated one.
    p = predict_proba(model, data, downsample_rate=0.25)
    with torch.no_grad():
        served = exported.module(*samples[2]).numpy()
    np.testing.assert_allclose(served, p[:100], rtol=1e-4, atol=1e-6)


def test_probability_head_rejects_a_bad_rate() -> None:
    model = HashedLogisticRegression(1, (3,))
    with pytest.raises(ValueError, match="fraction of negatives kept"):
        ProbabilityHead(model, downsample_rate=0.0)


def test_gbdt_plus_lr_beats_lr_on_nonlinear_dense_features() -> None:
    train_data, valid_data, test_data = (
        nonlinear_dense_data(20_000, s) for s in (1, 2, 3)
    )
    lr = HashedLogisticRegression.from_data(train_data)
    train(lr, train_data, valid_data, epochs=5, lr=0.05, progress=False)
    gbdt = GBDTPlusLR(
        num_trees=30, num_leaves=8, lr_lr=0.05, lr_epochs=5, torch_num_threads=1
    )
    gbdt.fit(train_data, valid_data)
    lr_ne = normalized_entropy(test_data.labels, predict_proba(lr, test_data))
    gbdt_ne = normalized_entropy(test_data.labels, gbdt.predict_proba(test_data))
    bayes = normalized_entropy(test_data.labels, test_data.true_prob)
    assert gbdt_ne < lr_ne - 0.03, (gbdt_ne, lr_ne, bayes)
    assert gbdt_ne < bayes * 1.03, (gbdt_ne, bayes)


def test_gbdt_plus_lr_is_deterministic_and_checks_its_input() -> None:
    data = nonlinear_dense_data(3_000, 0)
    first = GBDTPlusLR(num_trees=5, num_leaves=4, lr_epochs=1).fit(data)
    second = GBDTPlusLR(num_trees=5, num_leaves=4, lr_epochs=1).fit(data)
    np.testing.assert_array_equal(first.predict_proba(data), second.predict_proba(data))
    with pytest.raises(RuntimeError, match="not fitted"):
        GBDTPlusLR().predict_proba(data)
    with pytest.raises(ModelInputError, match="dense"):
        first.predict_proba(xor_data(10, 0))


def test_wrong_field_count_is_named() -> None:
    model = DeepFM.from_data(xor_data(100, 0))
    other = nonlinear_dense_data(100, 0)
    with pytest.raises(ModelInputError, match="dense features"):
        predict_proba(model, other)
    with pytest.raises(ModelInputError, match="3 categorical fields"):
        model(torch.zeros(4, 2), torch.zeros(4, 2, dtype=torch.int64))


def test_more_buckets_than_the_table_is_refused() -> None:
    data = xor_data(100, 0)
    model = HashedLogisticRegression(2, (30, 10, 10))
    with pytest.raises(ModelInputError, match="more buckets"):
        train(model, data, epochs=1, progress=False)
