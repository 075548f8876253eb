"""Precomputed score vectors in Redis, and NE against the truth."""

from __future__ import annotations

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.entropy import normalized_entropy
from mlsd_lib.evaluation.expected_entropy import expected_normalized_entropy
from mlsd_lib.evaluation.metrics import MetricInputError
from mlsd_lib.serving.precomputed_scores import (
    PrecomputedScoreError,
    PrecomputedScoreStore,
    ScoresNotPrecomputed,
)


def test_write_then_read_returns_the_candidates_scores(redis_client):
    store = PrecomputedScoreStore(redis_client, "test_batch_scores", num_items=50)
    rng = np.random.default_rng(0)
    scores = rng.uniform(0.001, 0.3, (4, 50))
    written = store.write([10, 11, 12, 13], scores)
    assert written == 4 * 50 * 2 == 4 * store.bytes_per_entity
    got = store.read(12, [7, 3, 49])
    # float16 keeps about 3 significant digits: enough for a click rate.
    np.testing.assert_allclose(got, scores[2, [7, 3, 49]], rtol=1e-3)
    assert store.delete() == 4
    assert redis_client.keys("test_batch_scores:*") == []


def test_missing_entity_and_bad_items_say_what_to_do(redis_client):
    store = PrecomputedScoreStore(redis_client, "test_batch_scores", num_items=5)
    with pytest.raises(ScoresNotPrecomputed, match="did not cover it; score it online"):
        store.read(99, [0])
    store.write([1], np.zeros((1, 5)))
    with pytest.raises(PrecomputedScoreError, match=r"item ids must be in \[0, 5\)"):
        store.read(1, [5])
    with pytest.raises(PrecomputedScoreError, match=r"must be \[entities, num_items\]"):
        store.write([2], np.zeros((1, 4)))
    store.delete()
    with pytest.raises(PrecomputedScoreError, match="without '\\*' or a trailing"):
        PrecomputedScoreStore(redis_client, "scores:", num_items=5)
    assert issubclass(ScoresNotPrecomputed, KeyError)
    assert issubclass(ScoresNotPrecomputed, MlsdError)


def test_float32_store_is_exact_to_float32_and_twice_the_size(redis_client):
    store = PrecomputedScoreStore(redis_client, "test_batch32", 8, dtype="float32")
    scores = np.linspace(0.01, 0.08, 8)[None, :]
    store.write([0], scores)
    np.testing.assert_allclose(store.read(0, np.arange(8)), scores[0], rtol=1e-7)
    assert store.bytes_per_entity == 32
    store.delete()


def test_expected_ne_is_lowest_at_the_truth_and_one_at_the_mean():
    rng = np.random.default_rng(0)
    t = rng.uniform(0.01, 0.2, 10_000)
    floor = expected_normalized_entropy(t, t)
    assert floor < 1
    assert expected_normalized_entropy(t, np.full_like(t, t.mean())) == pytest.approx(
        1.0
    )
    assert expected_normalized_entropy(t, np.clip(t * 1.3, 0, 1)) > floor
    # What the NE of sampled clicks estimates: 200 draws of labels agree closely.
    y = (rng.random((200, t.size)) < t).astype(float)
    sampled = normalized_entropy(y.ravel(), np.tile(t, 200))
    assert sampled == pytest.approx(floor, rel=0.01)
    with pytest.raises(MetricInputError, match="must be 1-D and of one length"):
        expected_normalized_entropy(t, t[:5])
