"""Small seeded latent-factor recommender data for the retrieval and ranking tests.

Not a test module (pytest collects ``test_*.py`` only): the tests import it. The
recsys world (:mod:`mlsd_lib.worlds.recsys`) is the book's simulator; these
tests generate their own data so that each planted property (popularity skew,
content that predicts taste, a new item) is explicit and the tests do not move
when the world does.

Items belong to genres; an item's latent vector is its genre's centroid plus
noise, and its content features are a noisy copy of that vector plus the genre.
A user's taste is a mix of genre centroids. A user's engaged items are drawn from
``p(i | u) ~ popularity(i)^beta * exp(affinity * <u, v_i>)``, so ``beta`` sets
how much of the signal is popularity (what logQ correction is about) and
``affinity`` how much is taste.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.models.two_tower_data import EntityFeatures


@dataclass(frozen=True)
class SyntheticRecsys:
    interactions: Interactions
    items: EntityFeatures
    users: EntityFeatures
    user_latent: np.ndarray
    item_latent: np.ndarray
    popularity: np.ndarray
    genre: np.ndarray
    new_items: np.ndarray  # items whose events are all after the split time
    split_time: float

    def true_scores(self, beta: float, affinity: float) -> np.ndarray:
        """Log of the unnormalized engagement probability, ``(users, items)``."""
        return beta * np.log(self.popularity)[None, :] + affinity * (
            self.user_latent @ self.item_latent.T
        )


def draw_rows(rng: np.random.Generator, logits: np.ndarray, draws: int) -> np.ndarray:
    """``draws`` samples per row from ``softmax(logits[row])``, vectorized.

    Offsetting each row's cumulative distribution by its row index turns one
    ``searchsorted`` over the flattened table into a per-row inverse-CDF draw.
    """
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cum = np.cumsum(p / p.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    rows, cols = logits.shape
    offset = np.arange(rows)[:, None]
    flat = (cum + offset).ravel()
    u = rng.random((rows, draws)) + offset
    found = np.searchsorted(flat, u.ravel(), side="right").reshape(rows, draws)
    return found - offset * cols


def make_recsys(
    *,
    n_users: int = 2000,
    n_items: int = 1000,
    events_per_user: int = 40,
    n_genres: int = 10,
    latent_dim: int = 8,
    beta: float = 1.0,
    affinity: float = 4.0,
    zipf: float = 1.0,
    new_item_share: float = 0.0,
    seed: int = 0,
) -> SyntheticRecsys:
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(n_genres, latent_dim))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    genre = rng.integers(0, n_genres, n_items)
    item_latent = centroids[genre] + 0.35 * rng.normal(size=(n_items, latent_dim))
    item_latent /= np.linalg.norm(item_latent, axis=1, keepdims=True)
    mix = rng.dirichlet(np.full(n_genres, 0.3), size=n_users)
    user_latent = mix @ centroids + 0.2 * rng.normal(size=(n_users, latent_dim))
    user_latent /= np.linalg.norm(user_latent, axis=1, keepdims=True)
    popularity = 1.0 / np.arange(1, n_items + 1) ** zipf
    popularity = popularity[rng.permutation(n_items)]
    popularity /= popularity.sum()

    split_time = 0.8
    new_items = (
        rng.choice(n_items, int(new_item_share * n_items), replace=False)
        if new_item_share > 0
        else np.zeros(0, np.int64)
    )
    logits = beta * np.log(popularity)[None, :] + affinity * (
        user_latent @ item_latent.T
    )
    item = draw_rows(rng, logits, events_per_user)
    time = np.sort(rng.random((n_users, events_per_user)), axis=1)
    user = np.repeat(np.arange(n_users), events_per_user).reshape(n_users, -1)
    item, time, user = item.ravel(), time.ravel(), user.ravel()
    if len(new_items):
        # A new item launches at the split: its events before then are dropped.
        early_new = np.isin(item, new_items) & (time < split_time)
        item, time, user = item[~early_new], time[~early_new], user[~early_new]
    interactions = Interactions.from_arrays(
        user, item, time, np.ones(len(user), bool), n_users=n_users, n_items=n_items
    )
    content = item_latent + 0.2 * rng.normal(size=item_latent.shape)
    log_duration = rng.normal(3.0, 0.5, size=(n_items, 1))
    items = EntityFeatures.from_arrays(
        np.hstack([content, log_duration]), genre[:, None], (n_genres,)
    )
    region = rng.integers(0, 4, n_users)
    genre_mix = mix + 0.05 * rng.random(mix.shape)
    users = EntityFeatures.from_arrays(genre_mix, region[:, None], (4,))
    return SyntheticRecsys(
        interactions=interactions,
        items=items,
        users=users,
        user_latent=user_latent,
        item_latent=item_latent,
        popularity=popularity,
        genre=genre,
        new_items=np.sort(new_items),
        split_time=split_time,
    )
