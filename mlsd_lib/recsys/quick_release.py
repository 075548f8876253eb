"""A small, seeded release of the feed, trained in seconds: for the serving tests,
the serving benchmark and a reader who wants to see the feed run.

Introduced in ``casestudies/recommender/index.md`` (step 6, "Serving"). The
serving path needs trained models, but not good ones: what it must show is
that the user tower, the index, the ranker and the re-ranker run together,
under one version, within budget. :func:`build_quick_release` does, from a
``quick`` world (3,000 users, 2,000 items):

1. simulate ``days`` of the world under its legacy feed, turn the impression
   log into the event log (:func:`~mlsd_lib.recsys.events.interaction_log`) and
   compute each request's fold state point-in-time
   (:func:`~mlsd_lib.recsys.training_rows.states_at_requests`);
2. train a two-tower model (in-batch softmax with the exact logQ correction)
   on the engaged plays, the user tower reading the history, the windowed
   counts and the profile (:mod:`~mlsd_lib.recsys.feed_features`), the item
   tower the description embedding, log duration, genre and kind;
3. train the two-headed ranker on every impression
   (:func:`~mlsd_lib.recsys.training_rows.served_ranking_examples`: the
   point-in-time features, the pair's two-tower score from the towers just
   trained, the user's vector computed from the history as of the request,
   and the item's engaged rate and impressions over the days before);
4. export the three served modules (user tower, item tower,
   :class:`~mlsd_lib.models.ranker.RankerScorer`) to TorchScript with the
   parity check on real rows, embed the catalogue, build an HNSW index over
   the items launched by "now", and register all of it as one release
   (:func:`~mlsd_lib.recsys.serving.register_release`), promoted to
   production;
5. compute the feed's tables (:func:`~mlsd_lib.recsys.feed_tables.build_feed_tables`).

Steps 2-5 are :func:`release_from_log`, which also trains the *next* release
from the log a served release produced (its last ``train_days`` days, every
day's events for the features), with the registry's next version number, the
catalogue re-embedded and the index rebuilt over every item launched by then:
the retrain of step 7.

"Now" is the end of the simulated days; the event log's clock is seconds
since the epoch, with world day 0 at :data:`~mlsd_lib.recsys.events.RECSYS_EPOCH`.
:meth:`QuickRelease.load_histories` streams the feature events through the
real stream processor into a Redis, which is what the feed reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import redis
import torch

from mlsd_lib.features.history_fold import HistoryFold, interaction_history
from mlsd_lib.features.online import delete_matching
from mlsd_lib.features.records import view_prefix
from mlsd_lib.features.stream_keys import dead_letter_stream
from mlsd_lib.features.stream_processor import StreamProcessor
from mlsd_lib.index.ann import AnnIndex
from mlsd_lib.index.spec import IndexSpec
from mlsd_lib.index.threads import faiss_threads
from mlsd_lib.models.ranker import RankerScorer, TwoHeadRanker, train_ranker
from mlsd_lib.models.training import TrainingConfig, torch_threads
from mlsd_lib.models.two_tower import TwoTower, embed_items, train_two_tower
from mlsd_lib.models.two_tower_data import EntityFeatures, TwoTowerData
from mlsd_lib.recsys.events import RECSYS_EPOCH, interaction_log, publish_events
from mlsd_lib.recsys.feed_bundle import save_bundle
from mlsd_lib.recsys.feed_catalogue import FeedCatalogue
from mlsd_lib.recsys.feed_features import USER_CATEGORICAL
from mlsd_lib.recsys.feed_tables import FeedTables, build_feed_tables
from mlsd_lib.recsys.serving import (
    FeedRelease,
    ReleaseError,
    promote_release,
    register_release,
)
from mlsd_lib.recsys.training_rows import (
    RequestStates,
    retrieval_examples,
    served_ranking_examples,
    states_at_requests,
)
from mlsd_lib.serving.export import export_model
from mlsd_lib.serving.registry import ModelRegistry
from mlsd_lib.validation import (
    ParameterError,
    require_int,
    require_seed,
)
from mlsd_lib.worlds.recsys import RecsysWorld
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig
from mlsd_lib.worlds.recsys_log import RecsysLog
from mlsd_lib.worlds.recsys_policies import LegacyPolicy
from mlsd_lib.worlds.recsys_truth import ITEM_KINDS, SECONDS_PER_DAY

__all__ = [
    "QuickRelease",
    "build_quick_release",
    "item_tower_features",
    "release_from_log",
    "request_user_embeddings",
]

#: The two-tower's training: a few epochs of small batches, one torch thread.
TOWER_TRAINING = TrainingConfig(
    epochs=4, batch_size=512, lr=3e-3, patience=2, progress=False, num_threads=1
)
#: The ranker's training: two epochs, one torch thread.
RANKER_TRAINING = TrainingConfig(
    epochs=2, batch_size=2048, lr=3e-3, patience=1, progress=False, num_threads=1
)
#: The index: HNSW (M=32), wide enough at search time for the 500 retrieved.
INDEX_SPEC = IndexSpec("hnsw", hnsw_m=32, ef_construction=80, ef_search=500)


@dataclass(frozen=True)
class QuickRelease:
    """What :func:`build_quick_release` made: the world and its log, the fold,
    the registry holding release ``release``, the feed's tables, and "now"."""

    world: RecsysWorld
    log: RecsysLog
    events: pd.DataFrame
    fold: HistoryFold
    registry: ModelRegistry
    release: FeedRelease
    tables: FeedTables
    item_features: pd.DataFrame
    world_now: float

    @property
    def epoch(self) -> float:
        """World day 0 in seconds since the Unix epoch (the history's clock)."""
        return RECSYS_EPOCH.timestamp()

    @property
    def now(self) -> float:
        """ "Now" on the history's clock."""
        return self.epoch + self.world_now

    def load_histories(self, client: redis.Redis, max_runtime_s: float = 120.0) -> int:
        """Stream the feature events through the real processor into ``client``'s
        Redis; returns how many were applied. The stream is deleted after."""
        publish_events(client, self.fold.stream, self.events)
        processor = StreamProcessor(
            client, self.fold.stream, "feed-features", "one", fold=self.fold,
            batch_size=500, block_ms=20,
        )  # fmt: skip
        processor.run(idle_exit_s=0.3, max_runtime_s=max_runtime_s)
        client.delete(self.fold.stream)
        return processor.counts.applied

    def clear_histories(self, client: redis.Redis) -> int:
        """Delete every key :meth:`load_histories` wrote (a shared Redis stays
        clean); returns how many."""
        fold = self.fold
        patterns = [
            f"fs:{fold.name}@v{fold.version}:*",
            f"fs:seen:{fold.stream}:*",
        ]
        if fold.counts is not None:
            patterns.append(f"{view_prefix(fold.counts.view)}:*")
        deleted = sum(delete_matching(client, pattern) for pattern in patterns)
        return deleted + client.delete(fold.stream, dead_letter_stream(fold.stream))

    def save_bundle(self, folder: str | Path) -> Path:
        """What a feed server process loads (:mod:`~mlsd_lib.recsys.feed_bundle`),
        with the clock frozen at this release's "now"."""
        return save_bundle(
            folder,
            registry=self.registry,
            fold=self.fold,
            tables=self.tables,
            item_features=self.item_features,
            world_epoch=self.epoch,
            frozen_now=self.now,
        )

    def user_profiles(self) -> pd.DataFrame:
        """Region and maturity limit of every user (what a client app sends)."""
        users = self.world.users
        return pd.DataFrame(
            {"region": users.region, "maturity_limit": users.maturity_limit}
        )


def item_tower_features(item_features: pd.DataFrame) -> tuple[EntityFeatures, list]:
    """The item tower's inputs for every item, and its registered schema.

    Dense: the description embedding and log duration; categorical: genre and
    kind.
    """
    content = sorted(
        (c for c in item_features.columns if c.startswith("content_")),
        key=lambda c: int(c.removeprefix("content_")),
    )
    dense = np.column_stack(
        [item_features[content].to_numpy(np.float32),
         np.log(item_features["duration"].to_numpy(np.float32))]
    )  # fmt: skip
    kind = pd.Categorical(item_features["kind"], categories=list(ITEM_KINDS)).codes
    genre = item_features["genre"].to_numpy(np.int64)
    features = EntityFeatures.from_arrays(
        dense,
        np.column_stack([genre, kind]),
        (int(genre.max()) + 1, len(ITEM_KINDS)),
    )
    schema = (
        [("item_id:item_id", "int64")]
        + [(f"dense:{c}", "float32") for c in [*content, "log_duration"]]
        + [("categorical:genre", "int64"), ("categorical:kind", "int64")]
    )
    return features, schema


def _retrieval_data(world: RecsysWorld, log: RecsysLog, states, items) -> TwoTowerData:
    """Engaged plays with the user tower's inputs: the request's history, log1p
    of its windowed counts, and the user's region and maturity limit."""
    users = world.users
    profile = EntityFeatures.from_arrays(
        categorical=np.column_stack([users.region, users.maturity_limit]),
        cardinalities=(world.config.n_regions, world.config.n_maturity),
    )
    data = retrieval_examples(log, states, items, profile)
    positives = np.flatnonzero(log.engaged)
    rows = states.rows_of(log.request_id[positives])
    counts = np.log1p(states.histories.counts[rows].astype(np.float32))
    assert len(USER_CATEGORICAL) == data.user_categorical.shape[1]
    return dataclasses.replace(data, user_dense=counts.astype(np.float32))


@torch.no_grad()
def request_user_embeddings(
    two_tower: TwoTower, world: RecsysWorld, states: RequestStates, history_len: int
) -> np.ndarray:
    """The user tower's vector of every request of ``states``: its history,
    log1p counts and profile as of the request, the user tower's served inputs
    (:func:`~mlsd_lib.recsys.feed_features.user_tower_inputs`)."""
    users = world.users
    history = torch.as_tensor(states.histories.items[:, :history_len].astype(np.int64))
    dense = torch.as_tensor(np.log1p(states.histories.counts.astype(np.float32)))
    categorical = torch.as_tensor(
        np.column_stack(
            [users.region[states.user], users.maturity_limit[states.user]]
        ).astype(np.int64)
    )
    tower = two_tower.user_tower.eval()
    with torch_threads(1):
        parts = [
            tower(history[lo : lo + 8192], dense[lo : lo + 8192],
                  categorical[lo : lo + 8192])
            for lo in range(0, len(history), 8192)
        ]  # fmt: skip
    if not parts:
        return np.zeros((0, two_tower.user_tower.dim), np.float32)
    return torch.cat(parts).numpy().astype(np.float32)


def _samples(inputs: tuple[torch.Tensor, ...]) -> list[tuple[torch.Tensor, ...]]:
    """Real rows at batch sizes 1, 8 and 37 (random ids could leave a table)."""
    return [tuple(t[:size] for t in inputs) for size in (1, 8, 37)]


def build_quick_release(
    folder: str | Path,
    *,
    days: int = 7,
    seed: int = 0,
    config: RecsysWorldConfig | None = None,
    stream: str = "recs_feed_events",
    history_name: str = "recs_feed_history",
    tower_training: TrainingConfig = TOWER_TRAINING,
    ranker_training: TrainingConfig = RANKER_TRAINING,
) -> QuickRelease:
    """Simulate, train, export, index and register a release under ``folder``
    (the registry and the exported files); see the module notes. The fold
    reads ``stream`` and writes keys named after ``history_name``. ``config``
    defaults to the quick world of ``seed``; the training settings to
    :data:`TOWER_TRAINING` and :data:`RANKER_TRAINING` (their seeds replaced by
    ``seed``)."""
    # Two days at least: the models train on the first and validate on the last.
    require_int("days", days, at_least=2)
    require_seed("seed", seed)
    if not isinstance(stream, str) or not stream:
        raise ParameterError(f"stream must be a non-empty key name (got {stream!r}).")
    world = RecsysWorld(config or RecsysWorldConfig.quick(seed=seed))
    log = world.simulate(LegacyPolicy(world), 0, days)
    fold = interaction_history(
        stream, n_categories=world.config.n_genres, name=history_name
    )
    return release_from_log(
        folder,
        world,
        log,
        fold,
        seed=seed,
        tower_training=tower_training,
        ranker_training=ranker_training,
    )


def release_from_log(
    folder: str | Path,
    world: RecsysWorld,
    log: RecsysLog,
    fold: HistoryFold,
    *,
    train_days: int | None = None,
    registry: ModelRegistry | None = None,
    seed: int = 0,
    tower_training: TrainingConfig = TOWER_TRAINING,
    ranker_training: TrainingConfig = RANKER_TRAINING,
) -> QuickRelease:
    """Train, export, index and register the next release from ``log``.

    ``log`` holds the world's days ``0 .. now - 1`` ("now" is the start of the
    day after its last row); the models train on its last ``train_days`` days
    (all of them when None), the last of which validates, while every
    request's features come from the whole event log, as online. The release
    gets the registry's next version (``registry`` defaults to
    ``<folder>/registry``), is promoted to production, and its index holds the
    item tower's embedding of every item launched by "now", stamped with the
    user tower's version. :func:`build_quick_release` is this after simulating
    the legacy feed; a retrain is this on the log the served release produced.
    """
    folder = Path(folder)
    if not len(log):
        raise ReleaseError("release_from_log needs a log with impressions to train on.")
    days = int(np.floor(log.time[-1] / SECONDS_PER_DAY)) + 1
    first_day = 0 if train_days is None else max(days - train_days, 0)
    if days - first_day < 2:
        raise ReleaseError(
            f"train_days={train_days} leaves {days - first_day} day(s) of the "
            "log: training needs two at least (the last one validates)."
        )
    events = interaction_log(log, world.items.genre)
    window = (
        log if first_day == 0 else log.subset(log.time >= first_day * SECONDS_PER_DAY)
    )
    states = states_at_requests(window, events, fold)
    item_features = world.item_features()
    items, item_schema = item_tower_features(item_features)
    world_now = days * SECONDS_PER_DAY

    data = _retrieval_data(world, window, states, items)
    train, valid = data.split_at(world_now - SECONDS_PER_DAY)
    two_tower = TwoTower.from_data(train, seed=seed)
    tower_result = train_two_tower(
        two_tower,
        train,
        valid,
        dataclasses.replace(tower_training, seed=seed),
        log_q="exact",
        recall_k=100,
    )
    two_tower.eval()
    embeddings = embed_items(two_tower, items, num_threads=1)
    ranker_data = served_ranking_examples(
        window, states, item_features, past_log=log,
        user_embeddings=request_user_embeddings(
            two_tower, world, states, data.history_len
        ),
        item_embeddings=embeddings,
    )  # fmt: skip
    ranker = TwoHeadRanker.from_data(ranker_data, seed=seed)
    train_ranker(
        ranker, ranker_data, None, dataclasses.replace(ranker_training, seed=seed)
    )

    folder.mkdir(parents=True, exist_ok=True)
    two_tower.eval()
    user_inputs = (
        torch.as_tensor(valid.history.astype(np.int64)),
        torch.as_tensor(valid.user_dense.astype(np.float32)),
        torch.as_tensor(valid.user_categorical.astype(np.int64)),
    )
    user_file = export_model(
        two_tower.user_tower, tuple(t[:8] for t in user_inputs),
        folder / "user_tower.pt", sample_inputs=_samples(user_inputs),
    ).path  # fmt: skip
    ids = torch.arange(len(items), dtype=torch.int64)
    item_inputs = (
        ids,
        torch.as_tensor(items.dense),
        torch.as_tensor(items.categorical),
    )
    item_file = export_model(
        two_tower.item_tower, tuple(t[:8] for t in item_inputs),
        folder / "item_tower.pt", sample_inputs=_samples(item_inputs),
    ).path  # fmt: skip
    scorer = RankerScorer(ranker.eval()).eval()
    ranker_inputs = (
        torch.as_tensor(ranker_data.features.dense.astype(np.float32)),
        torch.as_tensor(ranker_data.features.categorical.astype(np.int64)),
    )
    ranker_file = export_model(
        scorer, tuple(t[:8] for t in ranker_inputs), folder / "ranker.pt",
        sample_inputs=_samples(ranker_inputs),
    ).path  # fmt: skip

    launched = np.flatnonzero(world.items.launch_day <= days)
    index = AnnIndex(INDEX_SPEC, embeddings.shape[1])
    with faiss_threads(1):  # one thread: the same graph on every run
        index.build(embeddings[launched], launched)
    registry = registry or ModelRegistry(folder / "registry")
    recall = -(tower_result.best_valid_loss or 0.0)
    release = register_release(
        registry,
        user_tower=user_file,
        item_tower=item_file,
        ranker=ranker_file,
        index=index,
        item_embeddings=embeddings,
        item_tower_schema=item_schema,
        history_len=data.history_len,
        training_window=(
            (RECSYS_EPOCH + pd.Timedelta(days=first_day)).date().isoformat(),
            (RECSYS_EPOCH + pd.Timedelta(days=days)).date().isoformat(),
        ),
        metrics={"recall_at_100": recall},
    )
    promote_release(registry, release.version, "production")
    catalogue = FeedCatalogue.from_item_features(item_features, embeddings)
    tables = build_feed_tables(
        log, catalogue, world.users.region, now=world_now,
        n_maturity=world.config.n_maturity,
    )  # fmt: skip
    return QuickRelease(
        world=world,
        log=log,
        events=events,
        fold=fold,
        registry=registry,
        release=release,
        tables=tables,
        item_features=item_features,
        world_now=world_now,
    )
