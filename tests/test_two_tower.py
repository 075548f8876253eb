"""Two-tower retrieval: the loss, the frequency estimate, the data, training, export.

Trained on small seeded latent-factor data (``recsys_synthetic``) where
popularity is skewed (``beta = 0.7``: a popularity baseline gets a third of the
held-out positives) and taste is a mix of genres; 5% of items launch at the
split time and have no training event at all.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recsys_synthetic import make_recsys
from scipy.stats import spearmanr

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.models import (
    EntityFeatures,
    ModelInputError,
    MostPopular,
    StreamingFrequencyEstimator,
    TrainingConfig,
    TwoTower,
    TwoTowerData,
    embed_items,
    embed_users,
    exact_recall_at_k,
    exact_top_k,
    in_batch_softmax_loss,
    item_tower_inputs,
    mixture_log_q,
    train_two_tower,
    two_tower_examples,
    user_tower_inputs,
)
from mlsd_lib.models.item_frequency import FrequencyEstimatorError
from mlsd_lib.serving.export import export_model

K = 50
CONFIG = TrainingConfig(
    epochs=3, batch_size=256, lr=3e-3, patience=2, progress=False, num_threads=1
)


@pytest.fixture(scope="module")
def world():
    return make_recsys(
        n_users=1000, beta=0.7, affinity=6.0, new_item_share=0.05, seed=0
    )


@pytest.fixture(scope="module")
def split(world):
    data = two_tower_examples(world.interactions, world.items, world.users)
    return data.split_at(world.split_time)


@pytest.fixture(scope="module")
def trained(split):
    """In-batch negatives with exact logQ correction: the book's default recipe."""
    train, valid = split
    model = TwoTower.from_data(train, seed=0)
    result = train_two_tower(model, train, valid, CONFIG, log_q="exact", recall_k=K)
    return model, result


def recall(model: TwoTower, data: TwoTowerData, rows=slice(None)) -> float:
    items = embed_items(model, data.items)
    users = embed_users(model, data)
    return exact_recall_at_k(users[rows], items, data.item[rows], K)


# --- the loss ------------------------------------------------------------------


def test_in_batch_loss_is_cross_entropy_against_the_other_positives() -> None:
    gen = torch.Generator().manual_seed(0)
    u = F.normalize(torch.randn(6, 4, generator=gen), dim=1)
    v = F.normalize(torch.randn(6, 4, generator=gen), dim=1)
    logits = u @ v.T / 0.1
    expected = F.cross_entropy(logits, torch.arange(6))
    assert torch.allclose(in_batch_softmax_loss(u, v, temperature=0.1), expected)
    log_q = torch.log(torch.tensor([0.5, 0.1, 0.1, 0.1, 0.1, 0.1]))
    corrected = F.cross_entropy(logits - log_q, torch.arange(6))
    got = in_batch_softmax_loss(u, v, log_q, temperature=0.1)
    assert torch.allclose(got, corrected)
    # A popular item (high Q) is penalized less as a negative: the loss of the
    # rows that have it as a negative drops.
    assert not torch.allclose(got, expected)


def test_a_duplicate_positive_is_masked_not_counted_as_a_negative() -> None:
    gen = torch.Generator().manual_seed(1)
    u = F.normalize(torch.randn(4, 3, generator=gen), dim=1)
    v = F.normalize(torch.randn(4, 3, generator=gen), dim=1)
    v[2] = v[0]  # rows 0 and 2 engaged with the same item 7
    ids = torch.tensor([7, 8, 7, 9])
    got = in_batch_softmax_loss(u, v, temperature=0.2, item_ids=ids)
    logits = u @ v.T / 0.2
    logits[0, 2] = logits[2, 0] = -torch.inf
    assert torch.allclose(got, F.cross_entropy(logits, torch.arange(4)))
    unmasked = in_batch_softmax_loss(u, v, temperature=0.2)
    assert got < unmasked


def test_mixed_negatives_add_columns_with_the_mixture_log_q() -> None:
    gen = torch.Generator().manual_seed(2)
    u = F.normalize(torch.randn(3, 4, generator=gen), dim=1)
    v = F.normalize(torch.randn(3, 4, generator=gen), dim=1)
    neg = F.normalize(torch.randn(5, 4, generator=gen), dim=1)
    ids, neg_ids = torch.tensor([0, 1, 2]), torch.tensor([3, 0, 4, 5, 6])
    q, neg_q = torch.tensor([0.3, 0.2, 0.1]), torch.full((5,), 0.01)
    log_q, neg_log_q = mixture_log_q(q, 5, 10), mixture_log_q(neg_q, 5, 10)
    assert torch.allclose(log_q, torch.log(q + 0.5))
    got = in_batch_softmax_loss(
        u,
        v,
        log_q,
        temperature=0.1,
        item_ids=ids,
        negative_emb=neg,
        negative_ids=neg_ids,
        negative_log_q=neg_log_q,
    )
    logits = torch.cat([u @ v.T, u @ neg.T], 1) / 0.1 - torch.cat([log_q, neg_log_q])
    logits[0, 3 + 1] = -torch.inf  # negative 1 is row 0's own item 0
    assert torch.allclose(got, F.cross_entropy(logits, torch.arange(3)))


def test_the_loss_refuses_what_it_cannot_score() -> None:
    u, v = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ModelInputError, match=r"\(batch, dim\) with row i a positive"):
        in_batch_softmax_loss(u, v[:3])
    with pytest.raises(ModelInputError, match=r"log_q must have shape \(4,\)"):
        in_batch_softmax_loss(u, v, torch.zeros(3))
    with pytest.raises(ModelInputError, match="log_q and negative_log_q together"):
        in_batch_softmax_loss(u, v, torch.zeros(4), negative_emb=torch.randn(2, 3))
    with pytest.raises(ModelInputError, match="temperature must be > 0"):
        in_batch_softmax_loss(u, v, temperature=0.0)


# --- streaming frequency estimation --------------------------------------------


def zipf_stream(seed: int, n: int = 1000, steps: int = 1500, batch: int = 256):
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, n + 1) ** 1.2
    p = (p / p.sum())[rng.permutation(n)]
    return p, rng.choice(n, (steps, batch), p=p)


def test_streaming_estimates_track_the_true_frequencies_of_frequent_items() -> None:
    p, stream = zipf_stream(0)
    estimator = StreamingFrequencyEstimator(num_buckets=1 << 20, alpha=0.01)
    for batch in stream:
        estimator.update(batch)
    estimate, truth = estimator.estimate(np.arange(len(p))), stream.shape[1] * p
    frequent = np.argsort(-p)[:100]
    assert spearmanr(estimate[frequent], truth[frequent]).statistic > 0.95
    top = frequent[:20]  # expected count per batch, not just the order
    assert np.median(np.abs(estimate[top] / truth[top] - 1)) < 0.12


def test_streaming_estimates_adapt_after_the_popular_items_change() -> None:
    p_before, before = zipf_stream(1)
    p_after, after = zipf_stream(2, steps=300)
    estimator = StreamingFrequencyEstimator(num_buckets=1 << 20, alpha=0.05)
    for batch in before:
        estimator.update(batch)
    for batch in after:
        estimator.update(batch)
    frequent = np.argsort(-p_after)[:100]
    estimate = estimator.estimate(frequent)
    assert spearmanr(estimate, p_after[frequent]).statistic > 0.85
    assert abs(spearmanr(estimate, p_before[frequent]).statistic) < 0.3
    # The old head, now rare, is no longer estimated as the head.
    old_head = np.argsort(-p_before)[:20]
    assert np.median(estimator.estimate(old_head)) < 0.2 * 256 * p_before[old_head[-1]]


def test_one_vectorized_update_equals_the_papers_loop_over_the_batch() -> None:
    rng = np.random.default_rng(3)
    vectorized = StreamingFrequencyEstimator(num_buckets=64, alpha=0.1)
    a, b, w = np.zeros(64), np.zeros(64), np.zeros(64)
    a[:] = -1
    for step in range(30):
        ids = rng.integers(0, 40, 25)
        vectorized.update(ids)
        for bucket in vectorized._buckets(ids):  # Yi et al.'s per-item loop
            gap = step - a[bucket] if a[bucket] >= 0 else 1.0
            b[bucket] = 0.9 * b[bucket] + 0.1 * gap
            w[bucket] = 0.9 * w[bucket] + 0.1
            a[bucket] = step
    np.testing.assert_allclose(vectorized.gap, b)
    np.testing.assert_allclose(vectorized.weight, w)
    np.testing.assert_array_equal(vectorized.last_seen, a)


def test_estimator_settings_are_checked() -> None:
    with pytest.raises(FrequencyEstimatorError, match=r"alpha must lie in \(0, 1\]"):
        StreamingFrequencyEstimator(alpha=0.0)
    with pytest.raises(FrequencyEstimatorError, match="num_buckets must be >= 1"):
        StreamingFrequencyEstimator(num_buckets=0)
    with pytest.raises(FrequencyEstimatorError, match="1-d integer array"):
        StreamingFrequencyEstimator().update(np.array([0.5]))


# --- examples: point-in-time histories -----------------------------------------


def test_histories_hold_only_earlier_engaged_items_most_recent_first() -> None:
    log = Interactions.from_arrays(
        user=[0, 0, 1, 0, 0, 0, 1],
        item=[10, 11, 12, 13, 14, 15, 16],
        time=[1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0],
        engaged=[1, 1, 1, 0, 1, 1, 1],
        n_items=20,
    )
    items = EntityFeatures.from_arrays(np.zeros((20, 1)))
    data = two_tower_examples(log, items, history_len=3)
    columns = zip(data.user, data.item, data.history, strict=True)
    rows = {(int(u), int(i)): list(h) for u, i, h in columns}
    assert rows == {
        (0, 10): [-1, -1, -1],
        (0, 11): [10, -1, -1],
        (1, 12): [-1, -1, -1],
        # 13 was not engaged: neither an example nor history
        (0, 14): [11, 10, -1],
        (0, 15): [14, 11, 10],
        (1, 16): [12, -1, -1],
    }


def test_no_history_item_comes_from_the_event_itself_or_the_future(world) -> None:
    data = two_tower_examples(world.interactions, world.items, world.users)
    positives = world.interactions.positives()
    # Every (user, item) pair of a history must have an engaged event of that
    # user strictly before the example's time: the earliest such event will do.
    first_time = {}
    for u, i, t in zip(positives.user, positives.item, positives.time, strict=True):
        first_time.setdefault((int(u), int(i)), float(t))
    rng = np.random.default_rng(0)
    for row in rng.choice(len(data), 300, replace=False):
        u, t = int(data.user[row]), float(data.time[row])
        for item in data.history[row][data.history[row] >= 0]:
            assert first_time[(u, int(item))] < t
    # and histories are as full as the user's earlier engaged events allow
    earlier = np.array(
        [
            np.sum((positives.user == data.user[r]) & (positives.time < data.time[r]))
            for r in range(200)
        ]
    )
    assert np.array_equal((data.history[:200] >= 0).sum(1), np.minimum(earlier, 50))


def test_examples_refuse_mismatched_tables_and_bad_ids(world, split) -> None:
    with pytest.raises(ModelInputError, match="one row per item id"):
        two_tower_examples(world.interactions, world.items.rows(np.arange(10)))
    train, _ = split
    bad = train.history.copy()
    bad[0, 0] = train.n_items
    with pytest.raises(ModelInputError, match=r"history ids must lie in \[-1, n_items"):
        TwoTowerData(
            train.user,
            train.time,
            train.item,
            bad,
            train.user_dense,
            train.user_categorical,
            train.user_cardinalities,
            train.items,
        )
    with pytest.raises(ModelInputError, match="'history' has 5 rows but 'item' has"):
        TwoTowerData(
            train.user,
            train.time,
            train.item,
            train.history[:5],
            train.user_dense,
            train.user_categorical,
            train.user_cardinalities,
            train.items,
        )
    with pytest.raises(ModelInputError, match=r"ids must lie in \[0, 4\)"):
        EntityFeatures(np.zeros((2, 1), np.float32), np.array([[0], [4]]), (4,))


# --- training ------------------------------------------------------------------


def test_two_tower_beats_popularity_on_held_out_positives(world, split, trained):
    _train, valid = split
    model, result = trained
    popular = MostPopular().fit(world.interactions.split_at(world.split_time)[0])
    top = popular.recommend(valid.user, K)
    popularity_recall = float((top == valid.item[:, None]).any(axis=1).mean())
    model_recall = recall(model, valid)
    assert 0.25 < popularity_recall < 0.4  # the data is skewed as designed
    assert model_recall > popularity_recall + 0.08
    # early stopping kept the best epoch: its recall is what the model has now
    assert model_recall == pytest.approx(-result.best_valid_loss)
    assert result.valid_losses == [r.valid_loss for r in result.history]


@pytest.mark.quality
def test_log_q_correction_raises_recall_when_popularity_is_skewed(split, trained):
    train, valid = split
    corrected, _ = trained
    plain = TwoTower.from_data(train, seed=0)
    train_two_tower(plain, train, valid, CONFIG, log_q="none", recall_k=K)
    assert recall(corrected, valid) > recall(plain, valid) + 0.08
    # Why: without the correction popular items are over-penalized as
    # negatives, so the uncorrected model recommends less popular items.
    counts = np.bincount(train.item, minlength=train.n_items)
    items_c = embed_items(corrected, valid.items)
    items_p = embed_items(plain, valid.items)
    users_c, users_p = embed_users(corrected, valid), embed_users(plain, valid)
    popularity_of = lambda top: counts[top].mean()  # noqa: E731
    assert popularity_of(exact_top_k(users_p, items_p, K)) < 0.5 * popularity_of(
        exact_top_k(users_c, items_c, K)
    )


@pytest.mark.quality
def test_streaming_log_q_and_mixed_negatives_get_close_to_exact_counts(split, trained):
    train, valid = split
    exact = recall(trained[0], valid)
    for negatives, log_q in (("in_batch", "streaming"), ("mixed", "exact")):
        model = TwoTower.from_data(train, seed=0)
        result = train_two_tower(
            model, train, valid, CONFIG, negatives=negatives, log_q=log_q, recall_k=K
        )
        assert recall(model, valid) > exact - 0.03, (negatives, log_q)
        if log_q == "streaming":
            assert isinstance(
                result.extras["frequency_estimator"], StreamingFrequencyEstimator
            )


def test_a_new_item_is_retrieved_for_users_whose_taste_matches_its_content(
    world, split, trained
):
    train, valid = split
    model, _ = trained
    known = model.item_tower.ids.known[:-1].numpy()
    assert not known[world.new_items].any() and known.sum() > 0.9 * train.n_items
    new = np.isin(valid.item, world.new_items)
    assert new.sum() > 200
    # Held-out plays of items launched after training: popularity cannot place
    # them at all (no events); the content path retrieves them.
    new_recall = recall(model, valid, new)
    assert new_recall > 2.5 * K / train.n_items
    # Per new item, the model's score across users follows the true affinity.
    items = embed_items(model, valid.items)[world.new_items]
    users = embed_users(model, valid)
    truth = world.user_latent[valid.user] @ world.item_latent[world.new_items].T
    scores = users @ items.T
    corr = [np.corrcoef(truth[:, j], scores[:, j])[0, 1] for j in range(len(items))]
    assert np.mean(corr) > 0.5
    # An id of -1 (a title added after training) embeds like an unknown one.
    content = valid.items.rows(world.new_items[:3])
    np.testing.assert_allclose(
        embed_items(model, content, item_ids=np.full(3, -1)),
        embed_items(model, content, item_ids=world.new_items[:3]),
    )


def test_a_new_user_is_embedded_from_context_alone(split, trained) -> None:
    train, valid = split
    model, _ = trained
    cold = valid.subset(np.arange(len(valid)))
    cold = TwoTowerData(
        cold.user,
        cold.time,
        cold.item,
        np.full_like(cold.history, -1),
        cold.user_dense,
        cold.user_categorical,
        cold.user_cardinalities,
        cold.items,
    )
    users = embed_users(model, cold)
    assert np.isfinite(users).all()
    np.testing.assert_allclose(np.linalg.norm(users, axis=1), 1.0, rtol=1e-5)
    # the signup genre mix alone still retrieves far better than chance
    assert recall(model, cold) > 5 * K / train.n_items


def test_training_is_deterministic_under_a_seed(split) -> None:
    train, _ = split
    small = train.subset(np.arange(3000))
    config = TrainingConfig(epochs=1, batch_size=256, progress=False, num_threads=1)

    def weights(seed: int) -> dict[str, torch.Tensor]:
        model = TwoTower.from_data(small, seed=0)
        train_two_tower(
            model,
            small,
            None,
            replace(config, seed=seed),
            negatives="mixed",
            log_q="streaming",
        )
        return model.state_dict()

    first, again, other = weights(0), weights(0), weights(1)
    for name, tensor in first.items():
        assert torch.equal(tensor, again[name]), name
    assert any(not torch.equal(t, other[n]) for n, t in first.items())


def test_training_refuses_unknown_modes_and_mismatched_data(split) -> None:
    train, _valid = split
    model = TwoTower.from_data(train, seed=0)
    with pytest.raises(ModelInputError, match="negatives must be one of"):
        train_two_tower(model, train, negatives="hard")  # type: ignore[arg-type]
    with pytest.raises(ModelInputError, match="log_q must be one of"):
        train_two_tower(model, train, log_q="counts")  # type: ignore[arg-type]
    with pytest.raises(ModelInputError, match="needs uniform_negatives >= 1"):
        train_two_tower(model, train, negatives="mixed", uniform_negatives=0)
    shorter = two_tower_examples(
        Interactions.from_arrays(
            [0], [1], [0.0], [True], n_users=1, n_items=train.n_items
        ),
        train.items,
        history_len=10,
    )
    with pytest.raises(
        ModelInputError, match="10 history length but the model was built for 50"
    ):
        train_two_tower(model, shorter)
    with pytest.raises(ModelInputError, match=r"k must lie in \[1, "):
        exact_top_k(np.zeros((2, 4)), np.zeros((3, 4)), 4)


# --- export --------------------------------------------------------------------


@pytest.mark.parametrize("format", ["torchscript", "pt2"])
def test_both_towers_export_with_parity(split, trained, format, tmp_path: Path):
    _, valid = split
    model, _ = trained
    suffix = "pt" if format == "torchscript" else "pt2"
    empty = valid.subset(np.arange(4))
    empty = TwoTowerData(
        empty.user,
        empty.time,
        empty.item,
        np.full_like(empty.history, -1),
        empty.user_dense,
        empty.user_categorical,
        empty.user_cardinalities,
        empty.items,
    )
    user_samples = [
        user_tower_inputs(valid, np.arange(8)),
        user_tower_inputs(valid, np.arange(100, 101)),
        user_tower_inputs(valid, np.arange(200, 237)),
        user_tower_inputs(empty),  # new users: empty histories
    ]
    exported = export_model(
        model.user_tower,
        user_samples[0],
        tmp_path / f"user.{suffix}",
        format=format,
        sample_inputs=user_samples,
    )
    assert exported.report.passed and exported.report.batch_sizes == (8, 1, 37, 4)
    history, dense, categorical = user_samples[0]
    assert (history.dtype, dense.dtype, categorical.dtype) == (
        torch.int64,
        torch.float32,
        torch.int64,
    )
    assert tuple(history.shape) == (8, 50)

    item_samples = [
        item_tower_inputs(valid.items, np.arange(16)),
        item_tower_inputs(valid.items, np.array([5])),
        item_tower_inputs(valid.items, np.arange(valid.n_items)),  # the catalogue
        item_tower_inputs(valid.items.rows(np.arange(3)), np.full(3, -1)),  # new
    ]
    exported = export_model(
        model.item_tower,
        item_samples[0],
        tmp_path / f"item.{suffix}",
        format=format,
        sample_inputs=item_samples,
    )
    assert exported.report.passed
    served = exported.module(*item_samples[2]).detach().numpy()
    np.testing.assert_allclose(served, embed_items(model, valid.items), atol=1e-5)
