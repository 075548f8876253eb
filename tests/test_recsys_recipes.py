"""The recommender's glue: model inputs, recipes and the offline evaluation's plumbing.

Fast tests (seconds): the feature tables hold nothing the world hides, histories
and item statistics are point-in-time, the recipes run on a MovieLens file
unchanged, and the evaluation's rankings, gains and NDCG are what the
docstrings define. The quality bars are in ``tests/test_recsys_quality.py``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.datasets.movielens import (
    read_movielens,
    read_movielens_items,
    write_movielens_items_sample,
    write_movielens_sample,
)
from mlsd_lib.evaluation.ranking import RelevantItems
from mlsd_lib.models.training import TrainingConfig
from mlsd_lib.recsys.evaluation import (
    ORACLE,
    Candidates,
    EvaluationInputError,
    ndcg_table,
    rank_catalogue,
    ranked_lists,
    simulate_split,
)
from mlsd_lib.recsys.features import (
    HIDDEN_ATTRIBUTES,
    FeatureInputError,
    engaged_history_at,
    history_profile,
    item_feature_frame,
    item_stats_before,
    movielens_inputs,
    ranker_features,
    tower_examples,
    user_feature_frame,
    user_queries,
    world_inputs,
)
from mlsd_lib.recsys.recipes import (
    LOGQ,
    MF,
    RANKER,
    RecipeError,
    fit_matrix_factorization,
    fit_popularity,
    fit_ranker,
    fit_two_tower,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_policies import LegacyPolicy

DAY = 86_400.0
TINY = TrainingConfig(epochs=1, batch_size=256, lr=3e-3, progress=False, num_threads=1)


@pytest.fixture(scope="module")
def split():
    world = RecsysWorld(RecsysWorldConfig(n_users=600, n_items=400, seed=3))
    return simulate_split(world, LegacyPolicy(world, seed=3), train_days=3)


def log_of(user, item, time, engaged, minutes=None, n_users=3, n_items=6):
    return Interactions.from_arrays(
        user, item, time, engaged, minutes=minutes, n_users=n_users, n_items=n_items
    )


# -- what a model may see ---------------------------------------------------------


def test_feature_tables_hold_nothing_the_world_hides(split) -> None:
    world = split.world
    items = item_feature_frame(world, 3)
    users = user_feature_frame(world, 3)
    for frame in (items, users):
        leaked = [c for c in frame.columns for h in HIDDEN_ATTRIBUTES if h in c.lower()]
        assert leaked == []
    # every column derives from the observable tables: the content columns
    # are the world's description embedding, not its latent vectors
    observable = world.item_features()
    content = [c for c in observable.columns if c.startswith("content_")]
    np.testing.assert_array_equal(items[content], observable[content])
    assert not np.allclose(
        items[content].to_numpy()[:, : world.config.latent_dim], world.items.latent
    )
    inputs = world_inputs(world, 3)
    np.testing.assert_allclose(
        inputs.items.dense[:, : len(content)], observable[content], rtol=1e-6
    )
    assert inputs.items.cardinalities == (world.config.n_genres, 3, 3)
    launched_later = world.items.launch_day > 3
    assert (items["launch_age"][launched_later] == 0).all()
    assert users["tenure"].min() >= 0


def test_histories_are_engaged_items_strictly_before_each_time() -> None:
    log = log_of(
        user=[0, 0, 0, 1, 0],
        item=[1, 2, 3, 4, 5],
        time=[10.0, 20.0, 20.0, 30.0, 40.0],
        engaged=[1, 1, 0, 1, 1],
    )
    history = engaged_history_at(
        log,
        np.array([0, 0, 0, 1, 2]),
        np.array([20.0, 20.5, 100.0, 30.0, 50.0]),
        length=3,
    )
    assert history.tolist() == [
        [1, -1, -1],  # the play at t=20 is the same session: not in it
        [2, 1, -1],  # 3 was not engaged
        [5, 2, 1],
        [-1, -1, -1],
        [-1, -1, -1],  # a user with no history
    ]
    with pytest.raises(FeatureInputError, match="one time per query"):
        engaged_history_at(log, np.array([0, 1]), np.array([1.0]))


def test_history_profile_is_the_genre_mix_and_the_typical_length() -> None:
    log = Interactions.from_arrays([0], [0], [0.0], [True], n_users=2, n_items=6)
    inputs = movielens_inputs(log, np.eye(3, dtype=bool)[[0, 0, 1, 2, 2, 2]])
    inputs = replace(inputs, item_log_duration=np.log(np.arange(1.0, 7.0)))
    profile = history_profile(np.array([[0, 1, 3, -1], [-1, -1, -1, -1]]), inputs)
    np.testing.assert_allclose(profile[0, :3], [2 / 3, 0, 1 / 3], rtol=1e-6)
    assert profile[0, 3] == pytest.approx(np.mean(np.log([1.0, 2.0, 4.0])), rel=1e-6)
    assert profile[0, 5] == pytest.approx(np.log1p(3))
    np.testing.assert_array_equal(profile[1], 0)


def test_item_statistics_never_include_the_requests_own_day() -> None:
    log = log_of(
        user=[0, 1, 2, 0],
        item=[4, 4, 4, 4],
        time=[0.5 * DAY, 0.7 * DAY, 1.2 * DAY, 1.9 * DAY],
        engaged=[1, 0, 1, 1],
        minutes=[10.0, 0.2, 30.0, 5.0],
    )
    stats = item_stats_before(
        log,
        np.array([4, 4, 4, 5]),
        np.array([0.9 * DAY, 1.95 * DAY, 2.0 * DAY, 2.0 * DAY]),
    )
    shown = np.expm1(stats[:, 0])
    np.testing.assert_allclose(shown, [0, 2, 4, 0], atol=1e-5)
    # day 1's rate: 1 engaged of the 2 shown on day 0, smoothed toward the
    # rate of everything before day 1 (the same 1 of 2): no later event counts
    assert stats[1, 1] == pytest.approx(0.5, rel=1e-5)
    assert stats[2, 1] == pytest.approx(0.75, rel=1e-5)  # day 2: 3 of 4
    assert stats[3, 1] == pytest.approx(0.75, rel=1e-5)  # never shown: the prior
    assert stats[1, 3] > stats[2, 3] > 0  # a short play is a clickbait signal


def test_tower_examples_and_queries_carry_the_profile(split) -> None:
    inputs = world_inputs(split.world, split.test_day)
    log = split.interactions()
    data = tower_examples(log, inputs)
    assert data.user_dense.shape[1] == inputs.users.num_dense + inputs.profile_width
    assert len(data) == int(log.engaged.sum())
    queries = user_queries(log, inputs, np.array([0, 1, 2]), split.test_time)
    expected = engaged_history_at(log, np.arange(3), np.full(3, split.test_time))
    np.testing.assert_array_equal(queries.history, expected)
    other = movielens_inputs(Interactions.from_arrays([0], [0], [0.0], [True]))
    with pytest.raises(FeatureInputError, match="the same catalogue and population"):
        tower_examples(log, other)


# -- the recipes ----------------------------------------------------------------------


def test_recipes_train_on_a_movielens_file_unchanged(tmp_path) -> None:
    path = write_movielens_sample(
        tmp_path / "ratings.csv", n_users=120, n_items=150, n_ratings=3_000, seed=2
    )
    log = read_movielens(path)
    movies = read_movielens_items(
        write_movielens_items_sample(tmp_path / "movies.csv", log.item_ids, seed=2)
    )
    inputs = movielens_inputs(log, movies.genres_for(log.item_ids))
    split_time = float(np.quantile(log.time, 0.8))
    train, valid = tower_examples(log, inputs).split_at(split_time)
    recipe = replace(LOGQ, training=TINY)
    tower = fit_two_tower(train, valid, recipe, seed=0)
    queries = user_queries(log, inputs, np.arange(10), split_time)
    scores = tower.scores(queries)
    assert scores.shape == (10, log.n_items) and np.isfinite(scores).all()
    assert fit_matrix_factorization(log, replace(MF, iterations=2)).scores(
        queries
    ).shape == (10, log.n_items)
    assert fit_popularity(log).scores(queries).shape == (10, log.n_items)
    # the ranker: every rating is an impression, no watch time, no position
    early, late = log.split_at(split_time)
    ranker = fit_ranker(
        early,
        late,
        log,
        inputs,
        replace(RANKER, training=TINY),
        two_tower=tower.two_tower,
    )
    assert not bool(ranker.model.minutes_trained)  # the minutes head is masked
    prediction = ranker.predict(late.user, late.item, late.time, log)
    np.testing.assert_array_equal(prediction.expected_minutes, 1.0)
    assert ((prediction.p_play > 0) & (prediction.p_play < 1)).all()
    with pytest.raises(RecipeError, match="pass two_tower="):
        fit_ranker(early, late, log, inputs, RANKER)


def test_ranker_features_read_the_log_point_in_time(split) -> None:
    inputs = world_inputs(split.world, split.test_day)
    log = split.interactions()
    users, items = log.user[:50], log.item[:50]
    at = np.full(50, split.valid_time)
    before = ranker_features(users, items, at, inputs, log)
    cut = log.subset(log.time < split.valid_time)
    np.testing.assert_array_equal(
        before.dense, ranker_features(users, items, at, inputs, cut).dense
    )
    assert before.categorical[:, -1].tolist() == items.tolist()  # the item id


# -- the evaluation's plumbing -----------------------------------------------------


def test_rank_catalogue_ranks_only_what_the_user_may_see_and_has_not_watched(
    split,
) -> None:
    world = split.world
    users = np.arange(20)
    watched = RelevantItems.from_lists([[0, 1, 2]] * 20)
    rng = np.random.default_rng(0)
    ranked = rank_catalogue(
        world,
        split.test_day,
        users,
        watched,
        lambda rows: rng.random((len(users[rows]), world.n_items)),
        k=30,
    )
    assert not np.isin(ranked, [0, 1, 2]).any()
    launched = np.isin(ranked, world.available_items(split.test_time))
    assert (launched & world.eligible(users[:, None], ranked)).all()
    with pytest.raises(EvaluationInputError, match=r"\(users, n_items=400\)"):
        rank_catalogue(
            world, split.test_day, users, watched, lambda rows: np.zeros((1, 3))
        )


def test_ndcg_table_puts_the_oracle_at_one_under_true_gains() -> None:
    candidates = Candidates(
        user=np.array([0, 0, 0, 5, 5]),
        item=np.array([1, 2, 3, 1, 4]),
        observed=np.array([0.0, 30.0, 0.0, 2.0, 0.0]),
        true=np.array([0.5, 2.0, 0.1, 0.3, 0.4]),
        time=0.0,
    )
    lists = ranked_lists(candidates, np.array([3.0, 1.0, 2.0, 0.0, 1.0]))
    assert lists.tolist() == [[1, 3, 2], [4, 1, -1]]
    table = ndcg_table(
        candidates, {"reversed": -candidates.true, "same": candidates.true.copy()}
    )
    assert table.loc[ORACLE, "NDCG@20 true"] == pytest.approx(1.0)
    assert table.loc["same", "ratio observed"] == pytest.approx(1.0)
    assert table.loc["reversed", "ratio true"] < 1.0
    # user 0's only watched item is the oracle's first: observed NDCG is 1 there;
    # user 5 watched the oracle's second: 1 / log2(3)
    assert table.loc[ORACLE, "NDCG@20 observed"] == pytest.approx(
        (1.0 + 1.0 / np.log2(3)) / 2
    )
    assert isinstance(table, pd.DataFrame)
    with pytest.raises(EvaluationInputError, match="one score per candidate"):
        ranked_lists(candidates, np.zeros(3))
