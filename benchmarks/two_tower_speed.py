"""How long the two-tower model takes to train at the recommender's notebook scale.

    python benchmarks/two_tower_speed.py [--quick] [--epochs 3] [--threads 1]

Generates 300,000 engaged events over a 10,000-item catalogue (6,000 users with
50 plays each, drawn from a seeded latent-factor model with Zipf popularity; 16
dense content features and a genre per item, 8 dense features and a region per
user), builds the point-in-time examples (history of 50) and trains
:class:`~mlsd_lib.models.two_tower.TwoTower` through
:func:`~mlsd_lib.models.two_tower.train_two_tower` for a fixed number of epochs,
once with in-batch negatives and exact logQ and once with mixed negatives and the
streaming estimate; then embeds the catalogue. The target is under 60 s of
training on a 2-core CPU. ``--quick`` uses a tenth of the events.

The last line on stdout is one JSON object with the seconds of each phase, wall
clock and, for training, the process's CPU seconds too: with one torch thread the
two agree on an idle machine, and on a shared one the CPU figure is what the
training itself cost.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.models import (
    EntityFeatures,
    TrainingConfig,
    TwoTower,
    embed_items,
    train_two_tower,
    two_tower_examples,
)


def synthetic(n_users: int, n_items: int, plays: int, seed: int = 0):
    """Latent-factor plays with Zipf popularity, by inverse-CDF sampling per user."""
    rng = np.random.default_rng(seed)
    dim, genres = 16, 20
    centroids = rng.normal(size=(genres, dim))
    genre = rng.integers(0, genres, n_items)
    items = centroids[genre] + 0.5 * rng.normal(size=(n_items, dim))
    users = rng.normal(size=(n_users, dim))
    log_pop = -0.8 * np.log(rng.permutation(n_items) + 1.0)
    user, item = [], []
    for start in range(0, n_users, 500):
        block = np.arange(start, min(start + 500, n_users))
        logits = log_pop + 0.3 * users[block] @ items.T
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
        # Offsetting row r's distribution by r: one searchsorted draws for all.
        offset = np.arange(len(block))[:, None]
        draws = rng.random((len(block), plays)) + offset
        found = np.searchsorted((cum + offset).ravel(), draws.ravel(), side="right")
        picked = found.reshape(len(block), plays) - offset * n_items
        user.append(np.repeat(block, plays))
        item.append(np.clip(picked, 0, n_items - 1).ravel())
    user, item = np.concatenate(user), np.concatenate(item)
    time_ = rng.random(len(user))
    log = Interactions.from_arrays(
        user, item, time_, np.ones(len(user), bool), n_users=n_users, n_items=n_items
    )
    item_features = EntityFeatures.from_arrays(
        items + 0.3 * rng.normal(size=items.shape), genre[:, None], (genres,)
    )
    user_features = EntityFeatures.from_arrays(
        rng.normal(size=(n_users, 8)), rng.integers(0, 5, (n_users, 1)), (5,)
    )
    return log, item_features, user_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the events")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    n_users = 600 if args.quick else 6_000

    start = time.perf_counter()
    log, items, users = synthetic(n_users, 10_000, 50)
    data = two_tower_examples(log, items, users, history_len=50)
    prepare_s = time.perf_counter() - start
    config = TrainingConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=3e-3,
        progress=False,
        num_threads=args.threads,
    )
    result = {
        "positives": len(data),
        "items": data.n_items,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "prepare_s": round(prepare_s, 2),
    }
    for negatives, log_q in (("in_batch", "exact"), ("mixed", "streaming")):
        model = TwoTower.from_data(data, seed=0)
        start, cpu_start = time.perf_counter(), time.process_time()
        train_two_tower(model, data, None, config, negatives=negatives, log_q=log_q)
        seconds = time.perf_counter() - start
        cpu = time.process_time() - cpu_start
        result[f"train_{negatives}_{log_q}_s"] = round(seconds, 2)
        result[f"train_{negatives}_{log_q}_cpu_s"] = round(cpu, 2)
        print(
            f"{negatives} + {log_q} logQ: {len(data)} positives x {args.epochs} "
            f"epochs in {seconds:.1f} s ({cpu:.1f} s of CPU)"
        )
    start = time.perf_counter()
    embed_items(model, items, num_threads=args.threads)
    result["embed_catalogue_s"] = round(time.perf_counter() - start, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
