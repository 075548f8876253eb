"""The recommender's models as the case study trains them: one frozen recipe each.

Introduced in ``casestudies/recommender/03_models.ipynb`` (step 4) and shared by the
later chapters and by ``benchmarks/recsys_quality.py``, so a figure in the book
and the benchmark's JSON come from the same settings. Retrieval, from the
baselines up (the papers are cited in :mod:`mlsd_lib.models`):

* ``popularity``: most engaged-with items in the user's group (region);
* ``mf``: implicit-feedback ALS (``implicit``), which knows items and users
  only by id;
* ``inbatch``: the two-tower model, in-batch softmax without correction;
* ``logq``: the same with the logQ correction, ``Q`` from the streaming
  estimate of Yi et al. 2019;
* ``mixed_logq``: logQ plus uniformly drawn negatives (Yang et al. 2020).

And the ranker: :class:`~mlsd_lib.models.ranker.TwoHeadRanker` on impressions
(the candidates the logging policy showed, labelled engaged play and minutes,
with the feed position as a training-only feature), on the features of
:func:`~mlsd_lib.recsys.features.ranker_features`, which include the
two-tower's score of the pair.

Every recipe reads :class:`~mlsd_lib.datasets.interactions.Interactions` and
:class:`~mlsd_lib.recsys.features.ModelInputs`, so the same code trains on the
world's log and on a MovieLens file (a test does both). A fitted retriever is a
:class:`Retriever`: ``scores(queries)`` gives each query's score for every item,
where a query is the user tower's input at request time
(:func:`~mlsd_lib.recsys.features.user_queries`); the baselines read only its
user ids.

The settings were tuned on the validation day of the ``small`` world and of
the benchmark's quick world (``benchmarks/recsys_quality.py``): one torch thread
(two threads on a shared 2-core machine wait on each other), batches of 1,024
positives, learning rate 0.003 for the dense layers and 0.02 for the item-id
table (at 0.003 its rows, each seen a few dozen times an epoch, barely moved),
``id_dropout`` 0.1 (0.25 cost about 0.02 of recall@100 on held-out plays; 0
gains a little more but leaves the unknown-item row untrained, and new titles
are then placed worse), a user profile of genre mix and typical length in the
user tower (+0.01), early stopping on the validation day's recall@100 with
patience 2. Tried and not kept: temperature 0.03 or 0.1, batches of 4,096,
1,024 uniform negatives, exact rather than streamed ``Q``, wider towers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError
from mlsd_lib.models.baselines import MatrixFactorization, MostPopular
from mlsd_lib.models.ranker import (
    RankerData,
    RankerPrediction,
    TwoHeadRanker,
    predict_ranker,
    ranker_examples,
    train_ranker,
)
from mlsd_lib.models.training import TrainingConfig, TrainingResult
from mlsd_lib.models.two_tower import (
    TwoTower,
    embed_items,
    embed_users,
    train_two_tower,
)
from mlsd_lib.models.two_tower_data import EntityFeatures, TwoTowerData
from mlsd_lib.recsys.features import ModelInputs, ranker_features
from mlsd_lib.validation import (
    require_int,
    require_seed,
)

__all__ = [
    "INBATCH",
    "LOGQ",
    "MF",
    "MIXED_LOGQ",
    "POPULARITY",
    "RANKER",
    "RETRIEVAL_NAMES",
    "TWO_TOWER_RECIPES",
    "MatrixFactorizationRecipe",
    "PopularityRecipe",
    "RankerRecipe",
    "RecipeError",
    "Retriever",
    "TrainedRanker",
    "TwoTowerRecipe",
    "fit_matrix_factorization",
    "fit_popularity",
    "fit_ranker",
    "fit_two_tower",
    "ranker_data",
]


class RecipeError(MlsdError, ValueError):
    """A recipe cannot run on the data it was given; the message says why."""


#: The budget every torch recipe starts from; a run replaces epochs or seed.
TRAINING = TrainingConfig(
    epochs=8,
    batch_size=1024,
    lr=3e-3,
    sparse_lr=0.02,
    patience=2,
    progress=False,
    num_threads=1,
)


@dataclass(frozen=True)
class PopularityRecipe:
    """Most engaged-with items per user group; ``half_life_days`` decays old plays."""

    name: str = "popularity"
    half_life_days: float | None = None


@dataclass(frozen=True)
class MatrixFactorizationRecipe:
    """Implicit ALS: confidence ``1 + alpha * plays``, ``iterations`` sweeps."""

    name: str = "mf"
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0
    iterations: int = 15


@dataclass(frozen=True)
class TwoTowerRecipe:
    """A two-tower model and how to train it (see :mod:`mlsd_lib.models.two_tower`).

    ``negatives`` and ``log_q`` choose the loss; the tower sizes and the
    temperature are :meth:`~mlsd_lib.models.two_tower.TwoTower.from_data`'s;
    ``history_len`` is how many engaged items the user tower pools.
    """

    name: str
    negatives: str = "in_batch"
    log_q: str = "none"
    uniform_negatives: int | None = None
    dim: int = 64
    id_dim: int = 32
    hidden: tuple[int, ...] = (128,)
    temperature: float = 0.05
    id_dropout: float = 0.1
    history_len: int = 50
    recall_k: int = 100
    training: TrainingConfig = field(default=TRAINING)


@dataclass(frozen=True)
class RankerRecipe:
    """The two-head ranker: network sizes, the minutes loss weight, the budget.

    ``use_two_tower_score``: add the retrieval model's score of the pair as a
    feature (a ranker that knows what retrieval thought); ``item_id``: embed
    the item id. ``minutes_weight`` 0.3: at 1 the minutes head's likelihood,
    noisy on a few thousand engaged plays, drove early stopping while the
    play head was still improving (the ranker stopped after one epoch, NDCG
    ratio 0.82 on the quick world against 0.86 at 0.3). ``max_rows`` caps
    the training impressions (the most recent are kept): a day of the
    ``small`` world is ~340,000 impressions.
    """

    name: str = "ranker"
    hidden: tuple[int, ...] = (128, 64)
    embedding_dim: int = 8
    minutes_weight: float = 0.3
    history_len: int = 50
    use_two_tower_score: bool = True
    item_id: bool = True
    max_rows: int | None = None
    training: TrainingConfig = field(
        default=replace(TRAINING, batch_size=4096, lr=2e-3, sparse_lr=None, epochs=4)
    )


POPULARITY = PopularityRecipe()
MF = MatrixFactorizationRecipe()
INBATCH = TwoTowerRecipe("inbatch")
LOGQ = TwoTowerRecipe("logq", log_q="streaming")
MIXED_LOGQ = TwoTowerRecipe("mixed_logq", negatives="mixed", log_q="streaming")
#: The three two-tower variants, plainest first.
TWO_TOWER_RECIPES: tuple[TwoTowerRecipe, ...] = (INBATCH, LOGQ, MIXED_LOGQ)
#: Every retrieval recipe's name, baselines first.
RETRIEVAL_NAMES: tuple[str, ...] = (
    POPULARITY.name,
    MF.name,
    *(r.name for r in TWO_TOWER_RECIPES),
)
RANKER = RankerRecipe()


@dataclass
class Retriever:
    """A fitted retrieval model: a score for every (query, item).

    ``scores(queries)`` is ``(len(queries), n_items)`` float32; higher is
    better. ``model`` is what was fitted (a
    :class:`~mlsd_lib.models.two_tower.TwoTower`, an ALS model, counts),
    ``result`` the torch training log where there is one.
    """

    name: str
    model: object
    scores: Callable[[TwoTowerData], np.ndarray]
    seconds: float
    result: TrainingResult | None = None
    item_embeddings: np.ndarray | None = None

    @property
    def two_tower(self) -> TwoTower | None:
        """The two-tower model, or None for a baseline."""
        return self.model if isinstance(self.model, TwoTower) else None


def fit_popularity(
    train: Interactions,
    recipe: PopularityRecipe = POPULARITY,
    *,
    user_group: np.ndarray | None = None,
) -> Retriever:
    """Count engaged plays per item (per ``user_group``, e.g. region)."""
    start = time.perf_counter()
    half_life = (
        None if recipe.half_life_days is None else recipe.half_life_days * 86_400.0
    )
    model = MostPopular(half_life).fit(train, user_group=user_group)
    table = model.scores_.astype(np.float32)  # type: ignore[union-attr]
    groups = model.user_group

    def scores(queries: TwoTowerData) -> np.ndarray:
        return table[groups[queries.user]]  # type: ignore[index]

    return Retriever(recipe.name, model, scores, time.perf_counter() - start)


def fit_matrix_factorization(
    train: Interactions,
    recipe: MatrixFactorizationRecipe = MF,
    *,
    seed: int = 0,
) -> Retriever:
    """Implicit ALS on ``train``'s engaged plays, seeded and single-threaded."""
    start = time.perf_counter()
    model = MatrixFactorization(
        recipe.factors,
        recipe.regularization,
        recipe.alpha,
        recipe.iterations,
        seed=seed,
    ).fit(train)
    users, items = model.user_factors, model.item_factors

    def scores(queries: TwoTowerData) -> np.ndarray:
        return users[queries.user] @ items.T

    return Retriever(
        recipe.name, model, scores, time.perf_counter() - start, item_embeddings=items
    )


def fit_two_tower(
    train: TwoTowerData,
    valid: TwoTowerData | None,
    recipe: TwoTowerRecipe = MIXED_LOGQ,
    *,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = False,
) -> Retriever:
    """Build and train the recipe's two-tower model; early-stop on ``valid``.

    ``train`` and ``valid`` come from
    :func:`~mlsd_lib.recsys.features.tower_examples` split at a time.
    ``epochs`` replaces the recipe's (a notebook's shorter budget).
    """
    if epochs is not None:
        require_int("epochs", epochs, at_least=1, error=RecipeError)
    require_seed("seed", seed, error=RecipeError)
    start = time.perf_counter()
    model = TwoTower.from_data(
        train,
        dim=recipe.dim,
        id_dim=recipe.id_dim,
        hidden=recipe.hidden,
        temperature=recipe.temperature,
        id_dropout=recipe.id_dropout,
        seed=seed,
    )
    config = replace(
        recipe.training,
        seed=seed,
        progress=progress,
        epochs=recipe.training.epochs if epochs is None else epochs,
    )
    result = train_two_tower(
        model,
        train,
        valid,
        config,
        negatives=recipe.negatives,  # type: ignore[arg-type]
        log_q=recipe.log_q,  # type: ignore[arg-type]
        uniform_negatives=recipe.uniform_negatives,
        recall_k=recipe.recall_k,
    )
    item_emb = embed_items(model, train.items, num_threads=config.num_threads)

    def scores(queries: TwoTowerData) -> np.ndarray:
        user_emb = embed_users(model, queries, num_threads=config.num_threads)
        return user_emb @ item_emb.T

    return Retriever(
        recipe.name,
        model,
        scores,
        time.perf_counter() - start,
        result,
        item_embeddings=item_emb,
    )


# -- the ranker ---------------------------------------------------------------------


@dataclass
class TrainedRanker:
    """A fitted two-head ranker and what it needs to score new rows.

    ``two_tower`` is the retrieval model whose score is one of its features
    (None when the recipe leaves it out).
    """

    recipe: RankerRecipe
    model: TwoHeadRanker
    inputs: ModelInputs
    two_tower: TwoTower | None
    result: TrainingResult
    seconds: float

    def features(
        self,
        users: np.ndarray,
        items: np.ndarray,
        times: np.ndarray,
        log: Interactions,
    ) -> EntityFeatures:
        """:func:`~mlsd_lib.recsys.features.ranker_features` of this ranker."""
        return ranker_features(
            users,
            items,
            times,
            self.inputs,
            log,
            history_len=self.recipe.history_len,
            two_tower=self.two_tower,
            item_id=self.recipe.item_id,
        )

    def predict(
        self,
        users: np.ndarray,
        items: np.ndarray,
        times: np.ndarray,
        log: Interactions,
        *,
        positions: np.ndarray | None = None,
    ) -> RankerPrediction:
        """P(engaged) and E[minutes] of each (user, item, time), with features
        from ``log`` before each time; at the top slot (as served) unless
        ``positions`` are given (for calibration against a log)."""
        features = self.features(users, items, times, log)
        n = len(features)
        pos = np.zeros(n, np.int64) if positions is None else np.asarray(positions)
        data = RankerData(
            features, pos, np.zeros(n, bool), np.full(n, np.nan, np.float32)
        )
        return predict_ranker(
            self.model,
            data,
            position=0 if positions is None else None,
            num_threads=self.recipe.training.num_threads,
        )


def ranker_data(
    impressions: Interactions,
    log: Interactions,
    inputs: ModelInputs,
    recipe: RankerRecipe = RANKER,
    two_tower: TwoTower | None = None,
) -> RankerData:
    """One ranker row per impression (features from ``log`` before its time)."""
    if len(impressions) == 0:
        raise RecipeError(
            "no impressions to train the ranker on: pass the log's rows of the "
            "training days (every impression, not only the engaged ones)."
        )
    if recipe.max_rows is not None and len(impressions) > recipe.max_rows:
        keep = np.zeros(len(impressions), bool)
        keep[-recipe.max_rows :] = True  # rows are in time order: the latest
        impressions = impressions.subset(keep)
    features = ranker_features(
        impressions.user,
        impressions.item,
        impressions.time,
        inputs,
        log,
        history_len=recipe.history_len,
        two_tower=two_tower if recipe.use_two_tower_score else None,
        item_id=recipe.item_id,
    )
    return ranker_examples(impressions, features)


def fit_ranker(
    train: Interactions,
    valid: Interactions | None,
    log: Interactions,
    inputs: ModelInputs,
    recipe: RankerRecipe = RANKER,
    *,
    two_tower: TwoTower | None = None,
    seed: int = 0,
    epochs: int | None = None,
    progress: bool = False,
) -> TrainedRanker:
    """Train the two-head ranker on ``train``'s impressions; stop on ``valid``'s loss.

    ``train`` and ``valid`` are impressions (every row shown, engaged or not,
    with its position); ``log`` is every event known (their features are
    read from it strictly before each impression); ``two_tower`` supplies the
    score feature when the recipe uses it. A source without watch time
    (MovieLens) trains the play head only.
    """
    if epochs is not None:
        require_int("epochs", epochs, at_least=1, error=RecipeError)
    require_seed("seed", seed, error=RecipeError)
    start = time.perf_counter()
    tower = two_tower if recipe.use_two_tower_score else None
    if recipe.use_two_tower_score and two_tower is None:
        raise RecipeError(
            "this ranker recipe reads the two-tower score: pass two_tower=, or use "
            "replace(recipe, use_two_tower_score=False)."
        )
    train_rows = ranker_data(train, log, inputs, recipe, tower)
    valid_rows = (
        None
        if valid is None or len(valid) == 0
        else ranker_data(valid, log, inputs, replace(recipe, max_rows=None), tower)
    )
    model = TwoHeadRanker.from_data(
        train_rows,
        seed=seed,
        hidden=recipe.hidden,
        embedding_dim=recipe.embedding_dim,
    )
    config = replace(
        recipe.training,
        seed=seed,
        progress=progress,
        epochs=recipe.training.epochs if epochs is None else epochs,
    )
    result = train_ranker(
        model, train_rows, valid_rows, config, minutes_weight=recipe.minutes_weight
    )
    return TrainedRanker(
        recipe, model, inputs, tower, result, time.perf_counter() - start
    )
