"""Recommender quality against the world's truth: retrieval recall and ranker NDCG.

    python benchmarks/recsys_quality.py [--quick]

Simulates :class:`~mlsd_lib.worlds.recsys.RecsysWorld` (seed 0) under the
legacy feed (:class:`~mlsd_lib.worlds.recsys_policies.LegacyPolicy`), the
system whose logs a new recommender is trained on, and splits by time
(:func:`~mlsd_lib.recsys.evaluation.simulate_split`): days ``0 .. T-2`` train,
day ``T-1`` validates (early stopping), day ``T`` tests. Trains the case
study's recipes (:mod:`mlsd_lib.recsys.recipes`): most-popular per region and
implicit ALS on days ``0 .. T-1`` (no early stopping to feed), and the
two-tower model three ways: in-batch softmax, with the streaming logQ
correction, and with mixed negatives plus logQ; then the two-head ranker on
the impressions of the last training days, with the chosen two-tower's score
as a feature.

Retrieval: recall@100 of each model's exact top 100 (of what each test user may
see that day, minus what they watched) against the test day's held-out
engaged plays, next to the oracle's (the world's true ranking at the start of
the day); the same against the true top 100; HNSW recall against exact search
on the chosen two-tower's embeddings. The chosen two-tower is the variant with
the best *validation* recall (the test day never picks a model).

Ranking: NDCG@20 of the ranker's order of each test user's candidate set (the
items the legacy feed showed them on the test day), with the engaged minutes
they watched as gains, against the oracle's order of the same candidates (by
the true expected engaged minutes); also under the true expected minutes as
gains. See :mod:`mlsd_lib.recsys.evaluation` for the precise definitions.

A table goes to stdout first; the last line on stdout is one JSON object with
``oracle_recall_at_100``, ``two_tower_recall_at_100`` (the chosen variant),
``recall_ratio`` (two-tower / oracle, held-out plays, exact search),
``logq_recall_at_100``, ``inbatch_recall_at_100``, ``mixed_logq_recall_at_100``,
``mf_recall_at_100``, ``popularity_recall_at_100``, ``ranker_ndcg_at_20``,
``oracle_ndcg_at_20``, ``ndcg_ratio`` (ranker / oracle), the true-top-K
recalls (``*_true_recall_at_100``), ``hnsw_recall_at_100``, the true-gain
NDCG (``ranker_ndcg_at_20_true``), timings and the setting. Targets:
``recall_ratio >= 0.85``; the best two-tower beats MF and popularity; logQ
beats plain in-batch; ``ndcg_ratio >= 0.9``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from mlsd_lib.models.two_tower import embed_users
from mlsd_lib.recsys.evaluation import (
    ORACLE,
    TimeSplit,
    ann_recall,
    held_out,
    ndcg_table,
    query_scores,
    rank_catalogue,
    retrieval_table,
    shown_candidates,
    simulate_split,
)
from mlsd_lib.recsys.features import tower_examples, user_queries, world_inputs
from mlsd_lib.recsys.recipes import (
    MF,
    POPULARITY,
    RANKER,
    TWO_TOWER_RECIPES,
    Retriever,
    fit_matrix_factorization,
    fit_popularity,
    fit_ranker,
    fit_two_tower,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_policies import LegacyPolicy


@dataclass(frozen=True)
class Setting:
    """The world's size, the days simulated and the training budgets."""

    n_users: int
    n_items: int
    train_days: int
    two_tower_epochs: int
    ranker_epochs: int
    ranker_days: int
    ks: tuple[int, ...] = (50, 100, 500)
    world: dict = field(default_factory=dict)

    def config(self, seed: int) -> RecsysWorldConfig:
        return RecsysWorldConfig(
            n_users=self.n_users, n_items=self.n_items, seed=seed, **self.world
        )


QUICK = Setting(
    n_users=8_000,
    n_items=4_000,
    train_days=10,
    two_tower_epochs=8,
    ranker_epochs=4,
    ranker_days=6,
)
FULL = Setting(
    n_users=20_000,
    n_items=10_000,
    train_days=13,
    two_tower_epochs=10,
    ranker_epochs=4,
    ranker_days=5,
)


def _split(setting: Setting, seed: int) -> TimeSplit:
    world = RecsysWorld(setting.config(seed))
    return simulate_split(
        world, LegacyPolicy(world, seed=seed), train_days=setting.train_days
    )


def run(
    setting: Setting = QUICK, *, seed: int = 0, progress: bool = False
) -> dict[str, object]:
    """Train and evaluate every recipe; return the summary (see module docstring)."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    split = _split(setting, seed)
    timings["simulate_s"] = time.perf_counter() - start

    start = time.perf_counter()
    inputs = world_inputs(split.world, split.test_day)
    log = split.interactions()
    train, valid = tower_examples(log, inputs).split_at(split.valid_time)
    held = held_out(split, max(setting.ks))
    queries = user_queries(log, inputs, held.users, split.test_time)
    timings["features_s"] = time.perf_counter() - start

    region = inputs.users.categorical[:, 0]
    retrievers: dict[str, Retriever] = {
        POPULARITY.name: fit_popularity(log, POPULARITY, user_group=region),
        MF.name: fit_matrix_factorization(log, MF, seed=seed),
    }
    for recipe in TWO_TOWER_RECIPES:
        retrievers[recipe.name] = fit_two_tower(
            train,
            valid,
            recipe,
            seed=seed,
            epochs=setting.two_tower_epochs,
            progress=progress,
        )
    for name, fitted in retrievers.items():
        timings[f"{name}_train_s"] = fitted.seconds

    start = time.perf_counter()
    rankings = {ORACLE: held.oracle}
    for name, fitted in retrievers.items():
        rankings[name] = rank_catalogue(
            split.world,
            split.test_day,
            held.users,
            held.watched,
            query_scores(fitted.scores, queries),
            max(setting.ks),
        )
    table = retrieval_table(rankings, held, setting.ks)
    timings["rank_s"] = time.perf_counter() - start

    towers = [r.name for r in TWO_TOWER_RECIPES]
    best = max(towers, key=lambda n: -retrievers[n].result.best_valid_loss)  # type: ignore[union-attr]
    chosen = retrievers[best]
    tower = chosen.two_tower
    assert tower is not None and chosen.item_embeddings is not None

    start = time.perf_counter()
    launched = split.world.available_items(split.test_time)
    ann = ann_recall(
        embed_users(tower, queries, num_threads=1),
        chosen.item_embeddings,
        launched,
        setting.ks,
    )
    timings["ann_s"] = time.perf_counter() - start

    start = time.perf_counter()
    days = (split.log.time // 86_400).astype(np.int64)
    impressions = split.log.to_interactions()
    first = split.valid_day - setting.ranker_days
    ranker_train = impressions.subset((days >= first) & (days < split.valid_day))
    ranker_valid = impressions.subset(days == split.valid_day)
    ranker = fit_ranker(
        ranker_train,
        ranker_valid,
        log,
        inputs,
        RANKER,
        two_tower=tower,
        seed=seed,
        epochs=setting.ranker_epochs,
        progress=progress,
    )
    timings["ranker_train_s"] = ranker.seconds
    candidates = shown_candidates(split)
    prediction = ranker.predict(
        candidates.user,
        candidates.item,
        np.full(len(candidates), candidates.time),
        log,
    )
    ndcg = ndcg_table(
        candidates,
        {"ranker": prediction.score, "ranker P(engaged)": prediction.p_play},
    )
    timings["ranker_eval_s"] = time.perf_counter() - start

    def recall(name: str, k: int = 100, kind: str = "recall") -> float:
        return float(table.loc[name, f"{kind}@{k}"])

    oracle_recall = recall(ORACLE)
    summary: dict[str, object] = {
        "oracle_recall_at_100": oracle_recall,
        "two_tower_recall_at_100": recall(best),
        "two_tower_model": best,
        "recall_ratio": recall(best) / oracle_recall,
        "ranker_ndcg_at_20": float(ndcg.loc["ranker", "NDCG@20 observed"]),
        "oracle_ndcg_at_20": float(ndcg.loc[ORACLE, "NDCG@20 observed"]),
        "ndcg_ratio": float(ndcg.loc["ranker", "ratio observed"]),
        "ranker_ndcg_at_20_true": float(ndcg.loc["ranker", "NDCG@20 true"]),
        "ranker_p_engaged_ndcg_at_20": float(
            ndcg.loc["ranker P(engaged)", "NDCG@20 observed"]
        ),
        "hnsw_recall_at_100": float(ann.loc[100, "ann recall@K"]),
        "test_users": len(held.users),
        "held_out_plays": int(held.plays.counts().sum()),
        "training_positives": len(train),
        "ranker_rows": len(ranker_train),
        "ranker_best_epoch": ranker.result.best_epoch,
    }
    for name in (*retrievers, ORACLE):
        for k in setting.ks:
            summary[f"{name}_recall_at_{k}"] = recall(name, k)
            summary[f"{name}_true_recall_at_{k}"] = recall(name, k, "true recall")
    for name in towers:
        result = retrievers[name].result
        assert result is not None
        summary[f"{name}_valid_recall_at_100"] = -float(result.best_valid_loss)  # type: ignore[arg-type]
        summary[f"{name}_best_epoch"] = result.best_epoch
    summary["timings"] = {k: round(v, 2) for k, v in timings.items()}
    summary["tables"] = {
        "retrieval": table.round(4).to_dict(orient="index"),
        "ndcg": ndcg.round(4).to_dict(orient="index"),
        "ann": ann.round(4).to_dict(orient="index"),
    }
    return summary


def format_table(summary: dict[str, object]) -> str:
    """Recall@100 (plays, truth) per model, then NDCG@20."""
    names = [ORACLE, "popularity", "mf", *(r.name for r in TWO_TOWER_RECIPES)]
    lines = [f"{'model':<12} {'recall@100':>11} {'true@100':>9} {'ratio':>7}"]
    oracle = float(summary["oracle_recall_at_100"])  # type: ignore[arg-type]
    for name in names:
        plays = float(summary[f"{name}_recall_at_100"])  # type: ignore[arg-type]
        truth = float(summary[f"{name}_true_recall_at_100"])  # type: ignore[arg-type]
        lines.append(f"{name:<12} {plays:11.4f} {truth:9.4f} {plays / oracle:7.3f}")
    lines.append(
        f"NDCG@20 (watched minutes): ranker {summary['ranker_ndcg_at_20']:.4f}, "
        f"oracle {summary['oracle_ndcg_at_20']:.4f}, "
        f"ratio {summary['ndcg_ratio']:.3f}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    setting = QUICK if args.quick else FULL
    start, cpu = time.perf_counter(), time.process_time()
    summary = run(setting, seed=args.seed, progress=not args.no_progress)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    summary["cpu_seconds"] = round(time.process_time() - cpu, 1)
    summary["setting"] = "quick" if args.quick else "full"
    summary["config"] = dataclasses.asdict(setting)
    print(format_table(summary))
    print(json.dumps(summary, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
