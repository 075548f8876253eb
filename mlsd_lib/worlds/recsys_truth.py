r"""The ground truth of the recsys world: who the users and items are, and the
true probability of an engaged play.

Introduced in ``casestudies/recommender/index.md`` (the synthetic world). Every
model of the case study is measured against the formulas below, so they are
written down in full. For user :math:`u`, item :math:`i`, the day :math:`t` of
the request (time enters at day resolution) and feed position :math:`p`
(0 = top):

.. math::

    z_{ui}(t) = b
      + w_\tau \langle \theta_u(t), v_i \rangle
      + w_g A_{u, g_i}
      + w_q q_i + w_a a_i
      + w_f \, e^{-(t - \ell_i) / \tau_f}
      + w_d \exp\!\Big(-\frac{(\log D_i - \mu_u)^2}{2 \sigma_d^2}\Big)
      + \textstyle\sum_{\text{trends}} \beta \, 1[i \text{ trends on } t]
      + \sum_{\text{shifts}} \delta \, 1[g_i = g, t \ge t_0]

.. math::

    e_u(p) = (1 + p)^{-\eta} \, 1[p < P_u], \qquad
    P(\text{click}) = e_u(p) \, r_{ui} \, \sigma(z_{ui} + w_{cb} c_i),

.. math::

    P(\text{engaged} \mid \text{click}) = \sigma(k_0 + k_q q_i - k_{cb} c_i),
    \qquad
    P(\text{engaged}) = P(\text{click}) \, P(\text{engaged} \mid \text{click}),

.. math::

    m_{ui} = \sigma\big(c_0 + c_\tau \langle \theta_u, v_i \rangle + c_q q_i
             - c_\ell (\log D_i - \log 10) - c_{cb} c_i\big), \qquad
    \mathbb{E}[\text{minutes} \mid \text{engaged}] = 0.5 + (D_i - 0.5)\, m_{ui}.

* :math:`\theta_u(t)` is the user's taste (unit vector, ``latent_dim``): it
  drifts by a small random step every day and moves toward the latent vector
  :math:`v_i` (unit) of each item the user engages with. Taste and latent
  vectors lean toward genre centroids, so they agree with the genre affinity
  :math:`A_{u,g}` (high for the 1-3 genres a user loves, negative elsewhere).
* :math:`q_i` quality and :math:`a_i` mass appeal are standard normal;
  :math:`\ell_i` is the launch day, so a new item gets a freshness bonus
  fading over ``freshness_days``; :math:`D_i` the duration in minutes and
  :math:`\mu_u` the user's preferred log duration (short-form, episode or film
  people): the duration term is a Gaussian kernel, which no inner product of
  fixed vectors reproduces exactly.
* :math:`c_i \in \{0, 1\}` marks clickbait: more clicks, far fewer engaged
  plays, shorter watches (and a lower quality).
* :math:`e_u(p)` is the examination probability (position bias) and
  :math:`P_u` the user's patience: nothing at or below slot :math:`P_u` is
  ever seen. :math:`r_{ui}` is ``rewatch`` if the user already had an engaged
  play of the item, else 1. An item unavailable in the user's region, above
  their maturity limit or not yet launched has probability 0.
* Minutes of an engaged play: ``0.5 + (D - 0.5) * U ** ((1 - m) / m)`` with
  :math:`U` uniform, a completion share in (0, 1) whose mean is exactly
  :math:`m` (so the closed form above is the truth, not an approximation);
  a click that is not engaged watches ``0.5 * U`` minutes (under 30 s).

The weights (:math:`w_\cdot, k_\cdot, c_\cdot`, :math:`\eta`, :math:`\sigma_d`)
are :class:`~mlsd_lib.worlds.recsys_config.TruthWeights`; the intercept
:math:`b` is solved so that a random eligible item's mean p(click | examined)
on day 0 is ``random_click_rate``.

Observable and hidden: a model may use an item's genre, series, duration,
kind, maturity rating, regions, launch day and its *description embedding*
:math:`x_i = \Pi v_i + \text{noise}` (a fixed random projection of the latent
vector, ``content_noise`` noise-to-signal), and a user's region, maturity limit
and signup day; tastes, affinities, quality, appeal, clickbait and patience
are hidden, to be learned from behaviour. The content embedding is what lets
an item tower place a brand-new item near its true position, imperfectly.

Everything is drawn from the config's seed in separate streams (users, base
items, each launch), so adding an event never changes the other entities.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.recsys_config import RecsysWorldConfig, TruthWeights
from mlsd_lib.worlds.recsys_events import GenreShift, Trend

__all__ = [
    "ITEM_KINDS",
    "RecsysItems",
    "RecsysQueryError",
    "RecsysState",
    "RecsysUsers",
    "available",
    "build_state",
    "day_of",
    "eligible",
    "examination",
    "impression_probabilities",
    "item_day_logit",
    "lean_toward",
    "pair_cells",
    "seeded_rng",
    "sorted_union",
    "top_k_rows",
    "true_click_p",
    "true_engaged_p",
    "true_expected_minutes",
    "true_score_matrix",
    "unit_vectors",
]

SECONDS_PER_DAY = 86_400.0
#: Item kinds, by code.
ITEM_KINDS: tuple[str, ...] = ("short", "episode", "film")
#: Typical length (minutes) of each kind, and the spread of its log.
_KIND_MINUTES = (4.0, 40.0, 105.0)
_KIND_LOG_SD = (0.5, 0.3, 0.2)
#: Engaged plays last at least this many minutes (30 s).
ENGAGED_MINUTES = 0.5
#: Completion's reference length: the length term is 0 at 10 minutes.
_REFERENCE_MINUTES = 10.0
#: Rows of a pairwise computation done at once (bounds temporary memory).
_PAIR_CHUNK = 1 << 18

# Seed-stream keys: each kind of draw has its own stream.
_USERS, _ITEMS, _CENTROIDS, _LAUNCH, _DRIFT, _CALIBRATION = range(6)


class RecsysQueryError(MlsdError, ValueError):
    """A question to the truth is malformed (an unknown objective, k < 1, ...)."""


@dataclass(frozen=True)
class RecsysUsers:
    """The population, as arrays indexed by user (the hidden and the observable).

    Observable: ``region``, ``maturity_limit``, ``signup_day`` (<= 0 for users
    who exist before day 0). Hidden: ``taste0`` (initial taste, unit rows),
    ``genre_affinity`` (U, G), ``activity`` (mean sessions per day),
    ``patience`` (slots examined at most), ``duration_pref`` (log minutes).
    """

    taste0: np.ndarray
    genre_affinity: np.ndarray
    activity: np.ndarray
    patience: np.ndarray
    duration_pref: np.ndarray
    region: np.ndarray
    maturity_limit: np.ndarray
    signup_day: np.ndarray

    def __len__(self) -> int:
        return len(self.region)


@dataclass(frozen=True)
class RecsysItems:
    """The catalogue, as arrays indexed by item.

    Observable: ``genre``, ``series`` (-1 for items in no series), ``kind``
    (code into :data:`ITEM_KINDS`), ``duration`` (minutes), ``maturity``,
    ``regions`` (N, R) bool, ``launch_day``, ``content`` (the description
    embedding). Hidden: ``latent`` (unit rows), ``quality``, ``appeal``,
    ``clickbait``.
    """

    latent: np.ndarray
    content: np.ndarray
    genre: np.ndarray
    series: np.ndarray
    kind: np.ndarray
    duration: np.ndarray
    quality: np.ndarray
    appeal: np.ndarray
    clickbait: np.ndarray
    maturity: np.ndarray
    regions: np.ndarray
    launch_day: np.ndarray

    def __len__(self) -> int:
        return len(self.genre)

    @classmethod
    def concat(cls, parts: list[RecsysItems]) -> RecsysItems:
        """Catalogues one after another; series ids stay distinct."""
        offset, series = 0, []
        for part in parts:
            series.append(np.where(part.series >= 0, part.series + offset, -1))
            offset += int(part.series.max()) + 1 if len(part) else 0
        columns = {
            f.name: np.concatenate([getattr(p, f.name) for p in parts])
            for f in dataclasses.fields(cls)
        }
        columns["series"] = np.concatenate(series).astype(np.int32)
        return cls(**columns)


@dataclass
class RecsysState:
    """Everything the truth depends on: static entities plus what changes.

    ``taste`` (U, d) float32 unit rows is the current taste; ``watched`` holds
    the sorted keys ``user * n_items + item`` of every engaged play so far
    (for the re-watch factor); ``day`` is the last day whose taste drift has
    been applied. Only the world mutates a state; :meth:`copy` forks one.
    """

    config: RecsysWorldConfig
    users: RecsysUsers
    items: RecsysItems
    centroids: np.ndarray
    projection: np.ndarray
    intercept: float
    taste: np.ndarray
    watched: np.ndarray
    day: int

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def weights(self) -> TruthWeights:
        return self.config.weights

    def copy(self) -> RecsysState:
        """A state with its own taste and watch history (entities shared)."""
        return dataclasses.replace(
            self, taste=self.taste.copy(), watched=self.watched.copy()
        )

    # -- dynamics -----------------------------------------------------------------

    def drift_to(self, day: int) -> None:
        """Apply the daily taste steps of days ``self.day + 1 .. day``.

        Day ``t``'s step is drawn from ``(seed, t)`` alone, so a world that
        reaches day 10 in one call or in ten has the same drift.
        """
        s = self.config.taste_drift_per_day
        while self.day < day:
            self.day += 1
            if s == 0.0:
                continue
            rng = seeded_rng(self.config.seed, _DRIFT, self.day)
            step = rng.standard_normal(self.taste.shape, dtype=np.float32)
            step *= np.float32(s / np.sqrt(self.taste.shape[1]))
            self.taste += step
            _normalize_rows(self.taste)

    def record_engaged(self, users: np.ndarray, items: np.ndarray) -> None:
        """Engaged plays: pull tastes toward the items, remember what was watched."""
        if len(users) == 0:
            return
        keys = users.astype(np.int64) * self.n_items + items
        self.watched = sorted_union(self.watched, keys)
        lam = self.config.taste_pull
        if lam == 0.0:
            return
        pull = np.float32(lam) * (self.items.latent[items] - self.taste[users])
        np.add.at(self.taste, users, pull)
        touched = np.unique(users)
        block = self.taste[touched]
        _normalize_rows(block)
        self.taste[touched] = block

    def has_watched(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Whether each (user, item) pair already had an engaged play."""
        keys = np.asarray(users, np.int64) * self.n_items + np.asarray(items)
        if self.watched.size == 0:
            return np.zeros(keys.shape, dtype=bool)
        at = np.searchsorted(self.watched, keys)
        at = np.minimum(at, self.watched.size - 1)
        return self.watched[at] == keys


# -- drawing the world --------------------------------------------------------------


def seeded_rng(seed: int, *key: int) -> np.random.Generator:
    """The generator of stream ``key`` of world ``seed`` (one stream per kind of
    draw, so adding draws of one kind never shifts another)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 0x5EC5, *key]))


def _normalize_rows(x: np.ndarray) -> np.ndarray:
    """Scale rows to unit length in place (and return ``x``)."""
    norm = np.sqrt(np.einsum("ij,ij->i", x, x))
    x /= np.maximum(norm, 1e-12)[:, None].astype(x.dtype)
    return x


def unit_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` random directions in ``d`` dimensions (float64 unit rows)."""
    return _normalize_rows(rng.standard_normal((n, d)))


def _zipf(n: int, exponent: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


def lean_toward(toward: np.ndarray, noise: np.ndarray, coherence: float) -> np.ndarray:
    """Unit vectors leaning toward ``toward`` by ``coherence`` (0: pure noise)."""
    mixed = coherence * toward + np.sqrt(1.0 - coherence**2) * noise
    return _normalize_rows(mixed)


def _draw_users(
    config: RecsysWorldConfig, rng: np.random.Generator, centroids: np.ndarray
) -> RecsysUsers:
    c = config
    n, g, d = c.n_users, c.n_genres, c.latent_dim
    # Loved genres: 1..max per user, popular genres loved more often (the
    # Gumbel top-k trick draws them without replacement, vectorized).
    n_loved = rng.integers(1, c.max_loved_genres + 1, n)
    keys = np.log(_zipf(g, 0.7))[None, :] + rng.gumbel(size=(n, g))
    rank = np.argsort(np.argsort(-keys, axis=1), axis=1)
    loved = rank < n_loved[:, None]
    affinity = np.where(
        loved,
        rng.uniform(1.0, 2.0, (n, g)),
        np.clip(rng.normal(-0.5, 0.4, (n, g)), -2.0, 0.5),
    )
    mix = _normalize_rows((affinity * loved) @ centroids)
    taste = lean_toward(mix, unit_vectors(rng, n, d), c.taste_coherence)

    activity = c.sessions_per_day * rng.lognormal(
        -0.5 * c.activity_sigma**2, c.activity_sigma, n
    )
    patience = np.clip(
        np.round(rng.lognormal(np.log(c.patience_median), 0.6, n)), 2, c.feed_size
    )
    kind_share = np.array(
        [c.short_share, c.series_share, 1.0 - c.short_share - c.series_share]
    )
    kind = rng.choice(3, n, p=_positive_shares(kind_share))
    duration_pref = np.log(np.asarray(_KIND_MINUTES))[kind] + rng.normal(0, 0.3, n)
    region = rng.choice(c.n_regions, n, p=_zipf(c.n_regions, 1.0))
    limit_share = np.arange(1, c.n_maturity + 1, dtype=np.float64)
    maturity_limit = rng.choice(c.n_maturity, n, p=limit_share / limit_share.sum())
    is_new = rng.random(n) < c.new_user_share
    signup_day = np.where(
        is_new, rng.integers(0, c.horizon_days, n), -rng.integers(1, 1000, n)
    )
    return RecsysUsers(
        taste0=taste.astype(np.float32),
        genre_affinity=affinity.astype(np.float32),
        activity=activity,
        patience=patience.astype(np.int16),
        duration_pref=duration_pref.astype(np.float32),
        region=region.astype(np.int8),
        maturity_limit=maturity_limit.astype(np.int8),
        signup_day=signup_day.astype(np.int32),
    )


def _positive_shares(p: np.ndarray) -> np.ndarray:
    p = np.maximum(p, 0.0) + 1e-9
    return p / p.sum()


def _draw_items(
    config: RecsysWorldConfig,
    n: int,
    rng: np.random.Generator,
    centroids: np.ndarray,
    projection: np.ndarray,
    *,
    launch_day: int | None = None,
    genre: int | None = None,
) -> RecsysItems:
    """``n`` items: short-form, series episodes and films.

    ``launch_day`` (an event) launches all of them that day; ``None`` draws the
    base catalogue's launch days (most before day 0). ``genre`` forces a genre.
    """
    c = config
    d = c.latent_dim
    n_episodes = round(c.series_share * n)
    n_series = max(1, round(n_episodes / c.episodes_per_series)) if n_episodes else 0
    n_solo = n - n_episodes
    # A "title" is a solo item or a series; episodes copy their series' title.
    n_titles = n_solo + n_series
    solo_kind = np.where(
        rng.random(n_solo) < c.short_share / max(1.0 - c.series_share, 1e-9), 0, 2
    )
    title_kind = np.concatenate([solo_kind, np.ones(n_series, dtype=np.int64)])
    title_genre = (
        np.full(n_titles, genre)
        if genre is not None
        else rng.choice(c.n_genres, n_titles, p=_zipf(c.n_genres, 0.7))
    )
    title_latent = lean_toward(
        centroids[title_genre], unit_vectors(rng, n_titles, d), c.genre_coherence
    )
    log_minutes = (
        np.log(np.asarray(_KIND_MINUTES))[title_kind]
        + rng.normal(0.0, 1.0, n_titles) * np.asarray(_KIND_LOG_SD)[title_kind]
    )
    title_clickbait = rng.random(n_titles) < c.clickbait_share
    title_quality = rng.standard_normal(n_titles) - 0.8 * title_clickbait
    title_appeal = rng.standard_normal(n_titles)
    m = c.n_maturity
    rating_share = np.arange(m, 0, -1, dtype=np.float64)
    title_maturity = rng.choice(m, n_titles, p=rating_share / rating_share.sum())
    regions = rng.random((n_titles, c.n_regions)) < 0.8
    nowhere = ~regions.any(axis=1)
    regions[nowhere, rng.integers(0, c.n_regions, int(nowhere.sum()))] = True
    if launch_day is None:
        is_new = rng.random(n_titles) < c.new_item_share
        title_launch = np.where(
            is_new,
            rng.integers(0, c.horizon_days, n_titles),
            -rng.integers(1, 1000, n_titles),
        )
    else:
        title_launch = np.full(n_titles, launch_day)

    # Episodes: each joins a random series and varies a little around it.
    title = np.arange(n_solo)
    if n_episodes:
        joins = n_solo + rng.integers(0, n_series, n_episodes)
        title = np.concatenate([title, joins])
    episode = title >= n_solo
    latent = title_latent[title].copy()
    latent[episode] = _normalize_rows(
        latent[episode] + 0.3 * unit_vectors(rng, int(episode.sum()), d)
    )
    log_minutes_item = log_minutes[title] + episode * rng.normal(0.0, 0.1, n)
    duration = np.clip(np.exp(log_minutes_item), 1.0, 240.0)
    quality = title_quality[title] + episode * rng.normal(0.0, 0.2, n)
    series = np.where(episode, title - n_solo, -1)

    signal = latent @ projection.T
    noise = rng.standard_normal(signal.shape) / np.sqrt(projection.shape[0])
    content = signal + c.content_noise * noise
    return RecsysItems(
        latent=latent.astype(np.float32),
        content=content.astype(np.float32),
        genre=title_genre[title].astype(np.int16),
        series=series.astype(np.int32),
        kind=title_kind[title].astype(np.int8),
        duration=duration.astype(np.float32),
        quality=quality.astype(np.float32),
        appeal=title_appeal[title].astype(np.float32),
        clickbait=title_clickbait[title],
        maturity=title_maturity[title].astype(np.int8),
        regions=regions[title],
        launch_day=title_launch[title].astype(np.int32),
    )


def _random_isometry(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A random (rows x cols) matrix with orthonormal columns (or rows, if fewer).

    Norm-preserving, so the description embedding's signal has norm 1 like the
    latent vector and ``content_noise`` reads as a noise-to-signal ratio; a
    plain Gaussian matrix would have tiny singular values that bury some
    latent directions in noise for no reason the book could explain.
    """
    q, _ = np.linalg.qr(rng.standard_normal((max(rows, cols), min(rows, cols))))
    return q if rows >= cols else q.T


def build_state(config: RecsysWorldConfig) -> RecsysState:
    """Draw every entity from ``config.seed`` and calibrate the intercept."""
    c = config
    centroid_rng = seeded_rng(c.seed, _CENTROIDS)
    centroids = unit_vectors(centroid_rng, c.n_genres, c.latent_dim)
    projection = _random_isometry(centroid_rng, c.content_dim, c.latent_dim)
    users = _draw_users(c, seeded_rng(c.seed, _USERS), centroids)
    parts = [
        _draw_items(c, c.n_items, seeded_rng(c.seed, _ITEMS), centroids, projection)
    ]
    for k, launch in enumerate(c.launches):
        parts.append(
            _draw_items(
                c,
                launch.n_items,
                seeded_rng(c.seed, _LAUNCH, k),
                centroids,
                projection,
                launch_day=launch.day,
                genre=launch.genre,
            )
        )
    items = parts[0] if len(parts) == 1 else RecsysItems.concat(parts)
    for entity in (users, items):  # shared by forks: nobody may edit them
        for field in dataclasses.fields(entity):
            getattr(entity, field.name).flags.writeable = False
    state = RecsysState(
        config=c,
        users=users,
        items=items,
        centroids=centroids,
        projection=projection,
        intercept=0.0,
        taste=users.taste0.copy(),
        watched=np.empty(0, dtype=np.int64),
        day=0,
    )
    state.intercept = _calibrate_intercept(state)
    return state


def _calibrate_intercept(state: RecsysState) -> float:
    """The intercept making a random eligible item's mean p(click | seen) on day 0
    equal ``random_click_rate`` (bisection: the mean rises with the intercept)."""
    c, w = state.config, state.weights
    rng = seeded_rng(c.seed, _CALIBRATION)
    n = 200_000
    users = rng.integers(0, c.n_users, n)
    items = rng.integers(0, state.n_items, n)
    keep = eligible(state, users, items) & (state.items.launch_day[items] <= 0)
    users, items = users[keep], items[keep]
    z = _logit(state, users, items, np.zeros(len(users), dtype=np.int64))
    z = z + w.clickbait_click * state.items.clickbait[items]
    lo, hi = -30.0, 30.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.mean(_sigmoid(z + mid)) < w.random_click_rate:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


# -- the truth, pair by pair ------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free and exact enough


def day_of(t: np.ndarray | float) -> np.ndarray:
    """The integer day of times ``t`` (seconds since day 0 started)."""
    return np.floor(np.asarray(t, dtype=np.float64) / SECONDS_PER_DAY).astype(np.int64)


def eligible(state: RecsysState, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Whether each item may be shown to each user: region and maturity (broadcast).

    Launch dates are separate (:func:`available`): an unlaunched item is
    eligible but not yet available.
    """
    u, i = np.broadcast_arrays(np.asarray(users), np.asarray(items))
    us, it = state.users, state.items
    return it.regions[i, us.region[u]] & (it.maturity[i] <= us.maturity_limit[u])


def available(
    state: RecsysState, items: np.ndarray, day: np.ndarray | int
) -> np.ndarray:
    """Whether each item is launched by ``day`` (broadcast)."""
    return state.items.launch_day[np.asarray(items)] <= np.asarray(day)


def item_day_logit(
    state: RecsysState, items: np.ndarray, day: np.ndarray | int
) -> np.ndarray:
    r"""The user-independent part of :math:`z` on ``day``: quality, appeal,
    freshness, trends and genre shifts (broadcast over ``items`` and ``day``)."""
    it, w = state.items, state.weights
    i, t = np.broadcast_arrays(np.asarray(items), np.asarray(day))
    age = (t - it.launch_day[i]).astype(np.float64)
    out = w.quality * it.quality[i] + w.appeal * it.appeal[i]
    out = out + w.freshness * np.exp(-np.maximum(age, 0.0) / w.freshness_days)
    for event in state.config.events:
        if isinstance(event, Trend):
            on = (t >= event.start_day) & (t < event.end_day)
            if event.genre is not None:
                hit = it.genre[i] == event.genre
            else:
                hit = np.isin(i, np.asarray(event.items))
            out = out + event.boost * (on & hit)
        elif isinstance(event, GenreShift):
            out = out + event.delta * ((t >= event.day) & (it.genre[i] == event.genre))
    return out


def _duration_kernel(state: RecsysState, pref: np.ndarray, duration: np.ndarray):
    bandwidth = state.weights.duration_bandwidth
    gap = np.log(duration) - pref
    return np.exp(-(gap * gap) / (2.0 * bandwidth * bandwidth))


def _logit(
    state: RecsysState, u: np.ndarray, i: np.ndarray, day: np.ndarray
) -> np.ndarray:
    """:math:`z` for 1-D arrays of equal length (clickbait boost not included)."""
    cos = np.einsum("nd,nd->n", state.taste[u], state.items.latent[i])
    return _logit_from_cos(state, u, i, day, cos.astype(np.float64))


def _logit_from_cos(
    state: RecsysState, u: np.ndarray, i: np.ndarray, day: np.ndarray, cos: np.ndarray
) -> np.ndarray:
    w, us, it = state.weights, state.users, state.items
    return (
        state.intercept
        + w.taste * cos
        + w.genre * us.genre_affinity[u, it.genre[i]]
        + item_day_logit(state, i, day)
        + w.duration * _duration_kernel(state, us.duration_pref[u], it.duration[i])
    )


def examination(
    state: RecsysState, users: np.ndarray, position: np.ndarray | int
) -> np.ndarray:
    """:math:`e_u(p)`: the chance the user looks at slot ``position`` at all."""
    u, p = np.broadcast_arrays(np.asarray(users), np.asarray(position))
    bias = (1.0 + p) ** -state.weights.position_decay
    return np.where(p < state.users.patience[u], bias, 0.0)


def _engage_given_click(state: RecsysState, i: np.ndarray) -> np.ndarray:
    w, it = state.weights, state.items
    return _sigmoid(
        w.engage_base
        + w.engage_quality * it.quality[i]
        - w.clickbait_engage * it.clickbait[i]
    )


def _completion_item_logit(state: RecsysState, i: np.ndarray) -> np.ndarray:
    """The completion logit without its taste term (it depends on the item only)."""
    w, it = state.weights, state.items
    length = np.log(it.duration[i]) - np.log(_REFERENCE_MINUTES)
    return (
        w.completion_base
        + w.completion_quality * it.quality[i]
        - w.completion_length * length
        - w.clickbait_completion * it.clickbait[i]
    )


def _pairwise(state, users, items, t, position, what: str) -> np.ndarray:
    """Evaluate one true quantity over broadcast arrays, in bounded chunks."""
    u, i, tt, p = np.broadcast_arrays(
        np.asarray(users, dtype=np.int64),
        np.asarray(items, dtype=np.int64),
        np.asarray(t, dtype=np.float64),
        np.asarray(position, dtype=np.int64),
    )
    shape = u.shape
    u, i, tt, p = (a.reshape(-1) for a in (u, i, tt, p))
    out = np.empty(u.size, dtype=np.float64)
    for lo in range(0, u.size, _PAIR_CHUNK):
        s = slice(lo, lo + _PAIR_CHUNK)
        out[s] = _pairwise_chunk(state, u[s], i[s], day_of(tt[s]), p[s], what)
    return out.reshape(shape)


def _pairwise_chunk(state, u, i, day, p, what: str) -> np.ndarray:
    w, it = state.weights, state.items
    if what == "minutes":
        cos = np.einsum("nd,nd->n", state.taste[u], it.latent[i]).astype(np.float64)
        m = _sigmoid(_completion_item_logit(state, i) + w.completion_taste * cos)
        return ENGAGED_MINUTES + (it.duration[i] - ENGAGED_MINUTES) * m
    z = _logit(state, u, i, day) + w.clickbait_click * it.clickbait[i]
    rewatch = np.where(state.has_watched(u, i), w.rewatch, 1.0)
    live = eligible(state, u, i) & available(state, i, day)
    click = examination(state, u, p) * rewatch * _sigmoid(z) * live
    if what == "click":
        return click
    return click * _engage_given_click(state, i)


def true_click_p(
    state: RecsysState,
    users: np.ndarray,
    items: np.ndarray,
    t: np.ndarray | float,
    position: np.ndarray | int = 0,
) -> np.ndarray:
    """P(click) for items shown at ``position`` at times ``t`` (seconds), broadcast.

    Includes position bias and patience, the re-watch factor (from the
    state's watch history) and the clickbait boost; 0 for an item the user may
    not see (region, maturity, not launched).
    """
    return _pairwise(state, users, items, t, position, "click")


def true_engaged_p(
    state: RecsysState,
    users: np.ndarray,
    items: np.ndarray,
    t: np.ndarray | float,
    position: np.ndarray | int = 0,
) -> np.ndarray:
    """P(engaged play: clicked and watched >= 30 s) at ``position``, broadcast."""
    return _pairwise(state, users, items, t, position, "engaged")


def true_expected_minutes(
    state: RecsysState,
    users: np.ndarray,
    items: np.ndarray,
    t: np.ndarray | float = 0.0,
) -> np.ndarray:
    """E[minutes watched | engaged play] (position does not change how long
    someone watches once they play), broadcast."""
    return _pairwise(state, users, items, t, 0, "minutes")


def impression_probabilities(
    state: RecsysState,
    users: np.ndarray,
    items: np.ndarray,
    day: np.ndarray | int,
    position: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What the simulator draws from, for 1-D arrays of impressions.

    Returns P(click) (position, re-watch and availability included),
    P(engaged | click) and the mean completion share :math:`m` of an engaged
    play, so that minutes are ``0.5 + (D - 0.5) * U ** ((1 - m) / m)``.
    """
    w, it = state.weights, state.items
    u = np.asarray(users, dtype=np.int64)
    i = np.asarray(items, dtype=np.int64)
    d = np.broadcast_to(np.asarray(day, dtype=np.int64), u.shape)
    cos = np.einsum("nd,nd->n", state.taste[u], it.latent[i]).astype(np.float64)
    z = _logit_from_cos(state, u, i, d, cos) + w.clickbait_click * it.clickbait[i]
    rewatch = np.where(state.has_watched(u, i), w.rewatch, 1.0)
    live = eligible(state, u, i) & available(state, i, d)
    click = examination(state, u, position) * rewatch * _sigmoid(z) * live
    m = _sigmoid(_completion_item_logit(state, i) + w.completion_taste * cos)
    return click, _engage_given_click(state, i), m


# -- the truth as a (users x items) matrix, for top-K and oracle feeds ---------------


def true_score_matrix(
    state: RecsysState,
    users: np.ndarray,
    items: np.ndarray,
    day: int,
    objective: str = "engaged",
) -> np.ndarray:
    """(B, n) float32 true scores at position 0 of ``items`` for ``users`` on ``day``.

    ``objective="engaged"``: P(engaged play); ``"minutes"``: P(engaged play) x
    E[minutes | engaged] (expected minutes per impression). Items the user may
    not see (ineligible, not launched) score ``-inf``, so a top-K never picks
    them. Computed as dense matrix algebra (one matmul for the taste term),
    which is how the oracle scores a whole catalogue per request; a test holds
    it equal to :func:`true_engaged_p`.
    """
    if objective not in ("engaged", "minutes"):
        raise RecsysQueryError(
            f"objective must be 'engaged' (P(engaged play)) or 'minutes' "
            f"(P(engaged play) x E[minutes | engaged]), got {objective!r}."
        )
    w, us, it = state.weights, state.users, state.items
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    f32 = np.float32
    cos = state.taste[users] @ it.latent[items].T  # (B, n) float32
    z = cos * f32(w.taste)
    z += us.genre_affinity[users][:, it.genre[items]] * f32(w.genre)
    item_part = (
        item_day_logit(state, items, day) + w.clickbait_click * it.clickbait[items]
    )
    z += (item_part + state.intercept).astype(f32)[None, :]
    gap = np.log(it.duration[items])[None, :] - us.duration_pref[users][:, None]
    gap *= gap
    gap *= f32(-1.0 / (2.0 * w.duration_bandwidth**2))
    z += np.exp(gap, out=gap) * f32(w.duration)
    p = _sigmoid(z).astype(f32, copy=False)
    p *= _engage_given_click(state, items).astype(f32)[None, :]
    if state.watched.size and w.rewatch != 1.0:
        rows, cols = _watched_cells(state, users, items)
        p[rows, cols] *= f32(w.rewatch)
    if objective == "minutes":
        cos *= f32(w.completion_taste)
        cos += _completion_item_logit(state, items).astype(f32)[None, :]
        m = _sigmoid(cos)
        m *= (it.duration[items] - f32(ENGAGED_MINUTES))[None, :]
        m += f32(ENGAGED_MINUTES)
        p *= m
    live = eligible(state, users[:, None], items[None, :])
    live &= available(state, items, day)[None, :]
    p[~live] = -np.inf
    return p


def _watched_cells(
    state: RecsysState, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    return pair_cells(state.watched, state.n_items, users, items)


def sorted_union(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``sorted_keys`` (sorted, unique) with ``keys`` added: sorted and unique.

    Inserting a few new keys costs one pass over the old ones, where
    ``np.union1d`` would sort everything again (a watch history grows by a
    few thousand keys an hour and holds hundreds of thousands).
    """
    new = np.unique(keys)
    if sorted_keys.size:
        at = np.minimum(np.searchsorted(sorted_keys, new), sorted_keys.size - 1)
        new = new[sorted_keys[at] != new]
    return np.insert(sorted_keys, np.searchsorted(sorted_keys, new), new)


def pair_cells(
    keys: np.ndarray, n_items: int, users: np.ndarray, items: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of every pair ``user * n_items + item`` in ``keys`` (sorted,
    unique) that falls inside the block ``users`` x ``items``.

    Keys sorted by user make each user's pairs one contiguous run: two binary
    searches per row find it, with no loop over users.
    """
    users = np.asarray(users, dtype=np.int64)
    lo = np.searchsorted(keys, users * n_items)
    hi = np.searchsorted(keys, (users + 1) * n_items)
    counts = hi - lo
    rows = np.repeat(np.arange(len(users)), counts)
    within = np.arange(int(counts.sum())) - np.repeat(
        np.cumsum(counts) - counts, counts
    )
    found = keys[np.repeat(lo, counts) + within]
    column_of = np.full(n_items, -1, dtype=np.int64)
    column_of[np.asarray(items)] = np.arange(len(items))
    cols = column_of[found % n_items]
    inside = cols >= 0
    return rows[inside], cols[inside]


def top_k_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row, sorted: (values, column indices).

    ``torch.topk`` rather than ``np.argpartition``: on a (2,000 x 10,000) block
    it is about 10x faster, and the simulator's speed is bounded by this call.
    """
    import torch  # deferred: importing torch costs a second the world rarely needs

    k = min(k, scores.shape[1])
    values, index = torch.topk(torch.from_numpy(np.ascontiguousarray(scores)), k, dim=1)
    return values.numpy(), index.numpy().astype(np.int64)
