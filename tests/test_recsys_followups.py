"""The follow-up experiments' glue: cold start, nightly vs online, objective arms,
the diversity sweep.

Fast tests (seconds) on one tiny world with a catalogue launch on its test day;
each checks a property the chapter's argument rests on, with scorers chosen so
the right answer is known (the world's truth, a constant, the ranker's order).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from mlsd_lib.errors import MlsdError
from mlsd_lib.evaluation.ranking import RelevantItems, ndcg_at_k
from mlsd_lib.models.two_tower import TwoTower, embed_items
from mlsd_lib.recsys.ceilings import truth_snapshot, watched_items
from mlsd_lib.recsys.cold_start import (
    ColdStartInputError,
    truncated_queries,
    without_item_content,
)
from mlsd_lib.recsys.diversity_sweep import (
    DiversitySweepError,
    diversity_sweep,
    true_minutes,
)
from mlsd_lib.recsys.evaluation import rank_catalogue, simulate_split
from mlsd_lib.recsys.features import (
    history_profile,
    tower_examples,
    user_queries,
    world_inputs,
)
from mlsd_lib.recsys.objective_arms import (
    ObjectiveArmsError,
    arm_outcomes,
    fit_objective_rankers,
    predict_on_features,
    rank_candidates,
)
from mlsd_lib.recsys.precompute import DESIGNS, day_plays, online_vs_nightly
from mlsd_lib.recsys.recipes import RANKER, fit_ranker
from mlsd_lib.reranking.diversity import DiversityRules
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_events import CatalogueLaunch
from mlsd_lib.worlds.recsys_policies import LegacyPolicy

TRAIN_DAYS = 3


@pytest.fixture(scope="module")
def split():
    config = RecsysWorldConfig(
        n_users=600,
        n_items=400,
        seed=3,
        events=(CatalogueLaunch(day=TRAIN_DAYS, n_items=40),),
    )
    world = RecsysWorld(config)
    return simulate_split(world, LegacyPolicy(world, seed=3), train_days=TRAIN_DAYS)


@pytest.fixture(scope="module")
def inputs(split):
    return world_inputs(split.world, split.test_day)


# -- cold start -----------------------------------------------------------------------


def test_an_id_only_tower_gives_every_unseen_title_one_vector(split, inputs):
    examples = without_item_content(tower_examples(split.interactions(), inputs))
    assert examples.items.dense.shape[1] == 0
    assert examples.items.categorical.shape[1] == 0
    model = TwoTower.from_data(examples, dim=8, id_dim=4, hidden=(8,), seed=0)
    model.item_tower.ids.set_known(np.unique(examples.item))
    vectors = embed_items(model, examples.items)
    unseen = np.setdiff1d(np.arange(examples.n_items), examples.item)
    assert len(unseen) > 1
    assert np.allclose(vectors[unseen], vectors[unseen[0]])  # indistinguishable


def test_truncated_queries_equal_queries_built_with_a_shorter_history(split, inputs):
    log = split.interactions()
    users = np.unique(log.user[log.engaged])[:50]
    full = user_queries(log, inputs, users, split.test_time)
    short = user_queries(log, inputs, users, split.test_time, history_len=2)
    cut = truncated_queries(full, inputs, 2)
    assert np.array_equal(cut.history[:, :2], short.history)
    assert (cut.history[:, 2:] == -1).all()
    assert np.allclose(cut.user_dense, short.user_dense)
    assert np.array_equal(truncated_queries(full, inputs, 50).user_dense,
                          full.user_dense)  # fmt: skip
    empty = truncated_queries(full, inputs, 0)
    assert (empty.history == -1).all()
    assert np.allclose(
        empty.user_dense[:, -inputs.profile_width :],
        history_profile(empty.history, inputs),
    )
    with pytest.raises(ColdStartInputError, match="n_plays must be >= 0"):
        truncated_queries(full, inputs, -1)


# -- nightly vs online ------------------------------------------------------------


def test_day_plays_are_first_plays_of_titles_new_to_the_user(split):
    plays = day_plays(split)
    test = split.test
    engaged = set(zip(test.user[test.engaged], test.item[test.engaged], strict=True))
    pairs = list(zip(plays.user, plays.item, strict=True))
    assert set(pairs) <= engaged and len(set(pairs)) == len(pairs)
    assert np.all(np.diff(plays.time) >= 0)
    users = np.unique(plays.user)
    before = watched_items(split.log, users)
    for j in range(len(plays)):
        had = before.user(int(np.searchsorted(users, plays.user[j])))
        assert np.array_equal(plays.watched.user(j), had)
        assert plays.item[j] not in had
    assert np.array_equal(plays.plays_before, plays.watched.counts())


def test_with_a_history_free_scorer_only_the_stale_catalogue_costs(split, inputs):
    snapshot = truth_snapshot(split.world, split.test_day)
    items = np.arange(split.world.n_items)

    def truth(queries):  # the user's true taste: ignores the history it is given
        return snapshot.true_engaged_p(
            queries.user[:, None], items[None, :], split.test_time
        )

    table = online_vs_nightly(split, inputs, truth, k=20)
    assert list(table.index) == [*DESIGNS, "plays counted"]
    online, hybrid, nightly = (table.loc[d] for d in DESIGNS)
    pd.testing.assert_series_equal(online, hybrid, check_names=False)
    new = "plays of items launched today"
    assert table.loc["plays counted", new] > 0
    assert online[new] > 0 and nightly[new] == 0.0  # yesterday's index lacks them
    assert nightly["all plays"] < online["all plays"]


# -- objectives as arms ---------------------------------------------------------------


def test_objective_rankers_share_features_and_match_the_recipe(split, inputs):
    log = split.interactions()
    days = (split.log.time // 86_400).astype(int)
    recipe = replace(RANKER, use_two_tower_score=False, max_rows=4000)
    train, valid = split.log.subset(days == 1), split.log.subset(days == 2)
    rankers = fit_objective_rankers(
        train, valid, log, inputs, recipe, labels=("engaged", "clicked"), epochs=1
    )
    alone = fit_ranker(
        train.to_interactions(), valid.to_interactions(), log, inputs, recipe,
        epochs=1,
    )  # fmt: skip
    users, items = log.user[:64], log.item[:64]
    at = np.full(64, split.test_time)
    rows = alone.features(users, items, at, log)
    same = predict_on_features(rankers["engaged"], rows)
    assert np.allclose(same.score, alone.predict(users, items, at, log).score)
    clicked = predict_on_features(rankers["clicked"], rows)
    # a click is more common than an engaged play: the click head says so
    assert clicked.p_play.mean() > same.p_play.mean()
    with pytest.raises(ObjectiveArmsError, match="'engaged' or 'clicked'"):
        fit_objective_rankers(train, valid, log, inputs, recipe, labels=("minutes",))


def test_rank_candidates_orders_by_score_ties_stable_empty_last():
    candidates = np.array([[4, 5, 6, -1], [7, 8, 9, 3]])
    scores = np.array([[0.1, 0.9, 0.1, 5.0], [1.0, 1.0, 2.0, 0.0]])
    assert rank_candidates(candidates, scores).tolist() == [
        [5, 4, 6, -1],
        [9, 7, 8, 3],
    ]
    assert np.array_equal(
        rank_candidates(candidates, scores.ravel()), rank_candidates(candidates, scores)
    )
    with pytest.raises(ObjectiveArmsError, match="one score per candidate"):
        rank_candidates(candidates, scores[:1])


def test_predict_on_features_is_what_the_ranker_serves(split, inputs):
    log = split.interactions()
    days = (log.time // 86_400).astype(int)
    ranker = fit_ranker(
        log.subset(days == 0),
        None,
        log,
        inputs,
        replace(RANKER, use_two_tower_score=False, max_rows=4000),
        seed=0,
        epochs=1,
    )
    users, items = log.user[:64], log.item[:64]
    at = np.full(64, split.test_time)
    direct = ranker.predict(users, items, at, log)
    shared = predict_on_features(ranker, ranker.features(users, items, at, log))
    assert np.array_equal(direct.score, shared.score)


def test_arm_outcomes_are_per_user_and_count_only_engaged_minutes(split):
    log = split.test
    users = np.unique(log.user)
    bait = np.zeros(log.n_items, bool)
    bait[log.item[0]] = True
    table = arm_outcomes({"legacy": log}, users, bait)
    row = table.loc["legacy"]
    assert row["engaged plays per user"] == pytest.approx(
        log.engaged.sum() / len(users)
    )
    assert row["engaged minutes per user"] == pytest.approx(
        log.minutes[log.engaged].sum(dtype=np.float64) / len(users)
    )
    assert row["clickbait share of impressions"] == pytest.approx(
        np.mean(log.item == log.item[0])
    )
    with pytest.raises(ObjectiveArmsError, match=r"pass world\.items\.clickbait"):
        arm_outcomes({"legacy": log}, users, bait[:3])
    assert issubclass(ObjectiveArmsError, MlsdError)


# -- diversity ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def candidates(split):
    users = np.unique(split.test.user)[:30]
    snapshot = truth_snapshot(split.world, split.test_day)
    scorer = lambda rows: snapshot.true_engaged_p(  # noqa: E731
        users[rows][:, None], np.arange(split.world.n_items)[None, :], split.test_time
    )
    ranked = rank_catalogue(
        split.world,
        split.test_day,
        users,
        watched_items(split.log, users),
        scorer,
        40,
    )
    scores = -np.arange(40, dtype=float)[None, :].repeat(len(users), axis=0)
    return users, ranked, scores


def test_true_minutes_are_the_worlds_expected_engaged_minutes(split, candidates):
    users, ranked, _ = candidates
    gains = true_minutes(split.world, split.test_day, users, ranked)
    snapshot = truth_snapshot(split.world, split.test_day)
    u, i = users[0], ranked[0, 0]
    expected = snapshot.true_engaged_p(u, i, split.test_time, 0) * (
        snapshot.true_expected_minutes(u, i, split.test_time)
    )
    assert gains[0, 0] == pytest.approx(float(expected))
    padded = ranked.copy()
    padded[:, -1] = -1
    assert (true_minutes(split.world, split.test_day, users, padded)[:, -1] == 0).all()


def test_lambda_one_without_rules_is_the_rankers_order(split, candidates):
    users, ranked, scores = candidates
    world = split.world
    gains = true_minutes(world, split.test_day, users, ranked)
    rules = DiversityRules(page_size=10, max_per_group=1, min_distinct=3)
    result = diversity_sweep(
        ranked,
        scores,
        gains,
        world.items.content,
        world.items.series,
        world.items.genre,
        (1.0, 0.0),
        rules=rules,
        k=10,
    )
    plain = result.pages["λ=1, no rules"]
    assert np.array_equal(plain, ranked[:, :10])
    order = np.argsort(ranked, axis=1)
    relevant = RelevantItems(
        np.arange(len(users) + 1) * 40,
        np.take_along_axis(ranked, order, 1).ravel(),
        np.take_along_axis(gains, order, 1).ravel(),
    )
    table = result.table
    assert table.loc["λ=1, no rules", "NDCG@10"] == pytest.approx(
        ndcg_at_k(plain, relevant, 10)
    )
    assert table.loc["λ=1, rules", "pages over the series cap"] == 0.0
    genres = np.array([len(np.unique(world.items.genre[p])) for p in plain])
    assert table.loc["λ=1, no rules", "pages under the genre minimum"] == (
        pytest.approx(np.mean(genres < 3))
    )
    assert (
        table.loc["λ=1, rules", "genres per page"]
        >= table.loc["λ=1, no rules", "genres per page"]
    )
    # λ = 0 ignores relevance entirely: it can only lose NDCG
    assert (
        table.loc["λ=0, no rules", "NDCG@10"] <= table.loc["λ=1, no rules", "NDCG@10"]
    )
    with pytest.raises(DiversitySweepError, match="one true gain per candidate"):
        diversity_sweep(ranked, scores, gains[:1], world.items.content,
                        world.items.series, world.items.genre, (1.0,))  # fmt: skip
