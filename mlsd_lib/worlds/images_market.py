"""The image world's market: shoppers who photograph products, and a catalogue
whose stock and prices move.

Introduced in ``casestudies/visual_search/03_data_and_features.ipynb`` (the synthetic
world: "shoppers issue queries for products they saw and click results according to
their true relevance"). :class:`~mlsd_lib.worlds.images.ImageWorld` knows products and
how they look; :class:`ImageMarket` adds the people and the time, over ``days``
simulated days (world time: seconds since day 0):

* **Shoppers** each live in one of ``len(region_shares)`` regions and are
  heavy-tailed in activity (lognormal weights). A **query** is a shopper
  photographing a product she saw: which product by popularity (a Zipf law
  over a seeded order of the listed items; a merchant's duplicate listing is
  never the thing photographed, its original is), when by a fixed daily
  profile (quiet at night, peaks at lunch and in the evening). The photo is
  drawn by :meth:`~mlsd_lib.worlds.images.ImageWorld.queries` in chunks of
  :data:`PHOTO_CHUNK` queries, so :meth:`ImageMarket.photos` renders only the
  chunks a caller asks for and a query's photo never depends on which others
  are asked for with it.
* **Clicks and saves** on any shown list (:meth:`ImageMarket.respond`), so any
  search policy can be run inside the world. A result at slot ``p`` is
  examined with probability ``(1 + p) ** -examination_decay`` (position bias)
  and, if examined, clicked with probability ``click_max * sigmoid((s -
  click_mid) / click_width)`` of its TRUE graded similarity ``s`` to the
  photographed product (:meth:`~mlsd_lib.worlds.images.ImageWorld.similarity`).
  A clicked product is saved with probability ``save_max * s **
  save_sharpness``, but only if it is in stock in the shopper's region at that
  moment: a click on a sold-out product lands on a "sold out" page, a click
  and never a save. Every draw is a hashed uniform of (seed, query, slot), so
  two policies shown the same queries with the same seed share their random
  numbers (common random numbers for an A/B test) and a query's outcome does
  not depend on the other queries of the call.
* **Stock**: each product is sold in a subset of the regions; in each, it
  alternates between in stock (spells of mean ``in_stock_days``) and out of
  stock (mean ``out_of_stock_hours``), starting from the stationary mix.
  :attr:`~ImageMarket.stock_changes` lists every change as the product's
  whole availability after it: a bit mask of the regions it is in stock in
  (bit ``r`` for region ``r``), with a snapshot row per product at time 0.
* **Prices**: a per-product random walk in log price, ``price_changes_per_day``
  changes a day on average, steps of standard deviation ``price_step``,
  rounded to cents; :attr:`~ImageMarket.price_changes`, snapshot included.

:meth:`ImageMarket.stock_at` and :meth:`ImageMarket.price_at` answer "what
was true at time ``t``" from those tables, for tests of what a feature store
serves. :meth:`ImageMarket.legacy_results` is a stand-in for the system in
production before ours: it ranks every product by true similarity plus noise
and knows nothing of stock, so its log shows what an unfiltered result list
costs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlsd_lib.datasets.image_sets import ImageSet
from mlsd_lib.errors import MlsdError
from mlsd_lib.worlds.images import ImageWorld, QuerySet
from mlsd_lib.worlds.images_config import QueryStyle
from mlsd_lib.worlds.images_render import hashed_uniform

__all__ = [
    "DAY_SECONDS",
    "HOURLY_PROFILE",
    "PHOTO_CHUNK",
    "QUERY_ID_STRIDE",
    "Engagement",
    "ImageMarket",
    "MarketConfig",
    "MarketError",
]

DAY_SECONDS = 86_400.0
#: Query ids are ``day * QUERY_ID_STRIDE + i`` (``i``: the query's rank in its
#: day, by time), so a day's ids never depend on the days drawn with it.
QUERY_ID_STRIDE = 10_000_000
#: Queries rendered together by :meth:`ImageMarket.photos` (one world seed each).
PHOTO_CHUNK = 64
#: Relative query rate by hour of day (0 = midnight): quiet nights, a lunch
#: bump and an evening peak, as shopping apps see.
HOURLY_PROFILE = np.array(
    [
        *(0.25, 0.15, 0.10, 0.08, 0.08, 0.12, 0.25, 0.45, 0.60, 0.70, 0.80, 0.90),
        *(1.00, 0.95, 0.85, 0.80, 0.85, 0.95, 1.10, 1.30, 1.45, 1.40, 1.00, 0.55),
    ]
)
#: Seconds a shopper spends per result before clicking one further down.
SCAN_SECONDS = 2.0
#: Stream tags of the market's draws (the world's own use 11-15).
_SHOPPERS, _POPULARITY, _QUERIES, _RESPONSE, _STOCK, _PRICE, _LEGACY = range(21, 28)
#: World seeds per day for photos: day ``d``'s chunk ``c`` is photographed with
#: seed ``1 + d * _CHUNKS_PER_DAY + c`` (the world takes seeds below 10,000).
_CHUNKS_PER_DAY = 128
_MAX_WORLD_SEED = 10_000


class MarketError(MlsdError, ValueError):
    """A market setting or request the market cannot honour; says what to change."""


@dataclass(frozen=True)
class MarketConfig:
    """Shoppers, their clicks, and how stock and prices move.

    ``days``: the simulated horizon of stock and prices (queries may be drawn
    for any day in ``range(days)``). ``queries_per_day``: the mean of a Poisson
    count. ``region_shares``: the share of shoppers per region (their number is
    the number of regions, at most 24: a product's stock is a float32-exact bit
    mask). ``sold_in_region``: the chance a product is sold in each region
    (every product in at least one). ``popularity_exponent``: of the Zipf law
    over items. Clicks and saves: the formulas in the module docstring. Stock:
    ``in_stock_days`` and ``out_of_stock_hours`` are the mean spells. Prices:
    ``price_changes_per_day`` and ``price_step`` (log-price standard deviation).
    """

    days: int = 2
    queries_per_day: int = 2_000
    n_shoppers: int = 3_000
    region_shares: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    sold_in_region: float = 0.85
    popularity_exponent: float = 0.9
    examination_decay: float = 0.8
    click_max: float = 0.6
    click_mid: float = 0.65
    click_width: float = 0.08
    save_max: float = 0.35
    save_sharpness: float = 6.0
    in_stock_days: float = 8.0
    out_of_stock_hours: float = 18.0
    price_changes_per_day: float = 0.15
    price_step: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        def whole(name: str, low: int, high: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise MarketError(
                    f"MarketConfig.{name} must be an integer in [{low}, {high}], "
                    f"got {value!r}."
                )
            if not low <= value <= high:
                raise MarketError(
                    f"MarketConfig.{name} must be in [{low}, {high}], got {value}."
                )

        def number(name: str, low: float, high: float) -> None:
            value = getattr(self, name)
            if not low <= value <= high:
                raise MarketError(
                    f"MarketConfig.{name} must be in [{low}, {high}], got {value}."
                )

        whole("days", 1, 365)
        whole("queries_per_day", 1, 7_000)
        whole("n_shoppers", 1, 10_000_000)
        whole("seed", 0, 2**31 - 1)
        shares = self.region_shares
        if (
            not isinstance(shares, tuple)
            or not 1 <= len(shares) <= 24
            or any(s <= 0 for s in shares)
            or abs(sum(shares) - 1.0) > 1e-6
        ):
            raise MarketError(
                "MarketConfig.region_shares must be 1 to 24 positive shares summing "
                f"to 1 (one per region), got {shares!r}."
            )
        number("sold_in_region", 0.0, 1.0)
        number("popularity_exponent", 0.0, 3.0)
        number("examination_decay", 0.0, 3.0)
        number("click_max", 0.0, 1.0)
        number("click_mid", 0.0, 1.0)
        number("click_width", 1e-3, 1.0)
        number("save_max", 0.0, 1.0)
        number("save_sharpness", 0.0, 50.0)
        number("in_stock_days", 0.01, 1e4)
        number("out_of_stock_hours", 0.01, 1e5)
        number("price_changes_per_day", 0.0, 100.0)
        number("price_step", 0.0, 1.0)

    @property
    def n_regions(self) -> int:
        return len(self.region_shares)

    @property
    def horizon_seconds(self) -> float:
        return self.days * DAY_SECONDS


@dataclass(frozen=True)
class Engagement:
    """What shoppers did with the lists shown to them; arrays ``(n_queries, k)``.

    ``shown`` are the product ids (-1: an empty slot); ``p_click`` the true
    click probability of each slot (0 for an empty one); ``clicked`` and
    ``saved`` the outcomes, ``click_time`` and ``save_time`` when (world
    seconds, NaN where none); ``available`` whether the product was in stock
    in the shopper's region at the query's time.
    """

    shown: np.ndarray
    p_click: np.ndarray
    clicked: np.ndarray
    saved: np.ndarray
    click_time: np.ndarray
    save_time: np.ndarray
    available: np.ndarray

    @property
    def clicks_per_query(self) -> float:
        return float(self.clicked.sum(axis=1).mean()) if len(self.shown) else 0.0

    @property
    def saves_per_query(self) -> float:
        return float(self.saved.sum(axis=1).mean()) if len(self.shown) else 0.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class ImageMarket:
    """Shoppers, queries, clicks, stock and prices around one
    :class:`~mlsd_lib.worlds.images.ImageWorld`."""

    def __init__(self, world: ImageWorld, config: MarketConfig | None = None) -> None:
        self.world = world
        self.config = config or MarketConfig()
        c = self.config
        rng = np.random.default_rng([c.seed, _SHOPPERS])
        self.shopper_region = rng.choice(
            c.n_regions, c.n_shoppers, p=np.asarray(c.region_shares)
        ).astype(np.int8)
        """Home region of each shopper (her queries' region)."""
        self._activity = rng.lognormal(0.0, 1.0, c.n_shoppers)
        self._activity /= self._activity.sum()
        self.popularity = self._draw_popularity()
        """Probability that a query photographs each product (0 for duplicates)."""
        self.sold_in = self._draw_sold_in()
        """Bit mask of the regions each product is sold in (int64, never 0)."""
        self.stock_changes = self._draw_stock()
        """Every stock change, by product then time: ``time`` (world seconds),
        ``product_id``, ``region`` (the one that changed; -1 for the snapshot
        at time 0), ``stock`` (the in-stock region mask after it), ``change``
        (the product's change number, 0 for the snapshot)."""
        self.price_changes = self._draw_prices()
        """Every price change, by product then time: ``time``, ``product_id``,
        ``price`` (after it, in cents), ``change`` (0 for the snapshot)."""

    # -- who photographs what -----------------------------------------------------

    def _draw_popularity(self) -> np.ndarray:
        products = self.world.products
        listed = products["duplicate_of"].to_numpy() < 0
        rng = np.random.default_rng([self.config.seed, _POPULARITY])
        rank = np.zeros(len(products))
        rank[listed] = rng.permutation(int(listed.sum()))
        weight = np.where(listed, (rank + 1.0) ** -self.config.popularity_exponent, 0.0)
        return weight / weight.sum()

    def queries(self, days: int | range | list[int]) -> pd.DataFrame:
        """The queries of ``days`` in time order: one row per photo a shopper took.

        Columns: ``query_id``, ``day``, ``time`` (world seconds), ``shopper_id``,
        ``region`` (hers), ``product_id`` (the photographed product: the truth a
        search system never sees), ``photo_seed`` and ``photo_row`` (where
        :meth:`photos` finds its photo). A day's queries are a function of
        (seed, day) alone.
        """
        day_list = [days] if isinstance(days, (int, np.integer)) else list(days)
        bad = [d for d in day_list if not 0 <= int(d) < self.config.days]
        if bad:
            raise MarketError(
                f"days {bad} are outside the market's horizon [0, "
                f"{self.config.days}): raise MarketConfig.days."
            )
        parts = [self._day_queries(int(d)) for d in day_list]
        return (
            pd.concat(parts, ignore_index=True) if parts else self._day_queries(0)[:0]
        )

    def _day_queries(self, day: int) -> pd.DataFrame:
        c = self.config
        rng = np.random.default_rng([c.seed, _QUERIES, day])
        n = min(int(rng.poisson(c.queries_per_day)), _CHUNKS_PER_DAY * PHOTO_CHUNK)
        hour = rng.choice(24, n, p=HOURLY_PROFILE / HOURLY_PROFILE.sum())
        time = day * DAY_SECONDS + (hour + rng.random(n)) * 3600.0
        time = np.sort(np.round(time, 3))
        shopper = rng.choice(c.n_shoppers, n, p=self._activity)
        product = rng.choice(self.popularity.size, n, p=self.popularity)
        i = np.arange(n)
        return pd.DataFrame(
            {
                "query_id": (day * QUERY_ID_STRIDE + i).astype(np.int64),
                "day": np.full(n, day, dtype=np.int32),
                "time": time,
                "shopper_id": shopper.astype(np.int64),
                "region": self.shopper_region[shopper],
                "product_id": product.astype(np.int64),
                "photo_seed": (1 + day * _CHUNKS_PER_DAY + i // PHOTO_CHUNK).astype(
                    np.int64
                ),
                "photo_row": (i % PHOTO_CHUNK).astype(np.int64),
            }
        )

    def photos(
        self, queries: pd.DataFrame, style: QueryStyle | None = None
    ) -> QuerySet:
        """The shoppers' photos of ``queries`` (rows of :meth:`queries`), in order.

        Each :data:`PHOTO_CHUNK` of a day's queries is photographed by one
        :meth:`~mlsd_lib.worlds.images.ImageWorld.queries` call; only the chunks
        holding the asked queries are rendered. ``style`` defaults to the world's
        (a camera shift: pass
        :meth:`~mlsd_lib.worlds.images_config.QueryStyle.camera_shift`).
        """
        if len(queries) == 0:
            raise MarketError("no queries to photograph; pass rows of queries().")
        if int(queries["photo_seed"].max()) >= _MAX_WORLD_SEED:
            raise MarketError(
                f"photo seeds reach {int(queries['photo_seed'].max())}, but the world "
                f"takes seeds below {_MAX_WORLD_SEED}: photograph at most "
                f"{(_MAX_WORLD_SEED - 1) // _CHUNKS_PER_DAY} days."
            )
        pieces: list[tuple[np.ndarray, QuerySet]] = []
        for seed in np.unique(queries["photo_seed"].to_numpy()):
            day = int((seed - 1) // _CHUNKS_PER_DAY)
            chunk = int((seed - 1) % _CHUNKS_PER_DAY)
            day_products = self._day_queries(day)["product_id"].to_numpy()
            products = day_products[chunk * PHOTO_CHUNK : (chunk + 1) * PHOTO_CHUNK]
            shot = self.world.queries(products, seed=int(seed), style=style)
            wanted = np.flatnonzero(queries["photo_seed"].to_numpy() == seed)
            rows = queries["photo_row"].to_numpy()[wanted]
            pieces.append((wanted, _take(shot, rows)))
        order = np.argsort(np.concatenate([w for w, _ in pieces]), kind="stable")
        sets = [s for _, s in pieces]
        joined = QuerySet(
            images=ImageSet.concat([s.images for s in sets]),
            boxes=np.concatenate([s.boxes for s in sets]),
            details=pd.concat([s.details for s in sets], ignore_index=True),
            style=sets[0].style,
        )
        return _take(joined, order)

    # -- what shoppers do with a result list ---------------------------------------

    def position_bias(self, k: int) -> np.ndarray:
        """The chance a shopper examines slot ``0..k-1``: ``(1 + p) ** -decay``."""
        return (1.0 + np.arange(k)) ** -self.config.examination_decay

    def click_probability(self, queries: pd.DataFrame, shown: np.ndarray) -> np.ndarray:
        """The true P(click) of each shown slot, ``(n, k)`` (0 for -1 slots)."""
        shown = self._checked_lists(queries, shown)
        c = self.config
        valid = shown >= 0
        target = queries["product_id"].to_numpy()[:, None]
        sim = np.where(
            valid, self.world.similarity(target, np.where(valid, shown, 0)), 0.0
        )
        attract = c.click_max * _sigmoid((sim - c.click_mid) / c.click_width)
        return np.where(valid, self.position_bias(shown.shape[1]) * attract, 0.0)

    def respond(
        self, queries: pd.DataFrame, shown: np.ndarray, *, seed: int = 0
    ) -> Engagement:
        """Clicks and saves of shoppers shown ``shown[i]`` for query ``i``.

        ``shown`` is int ``(n_queries, k)`` product ids, best first, -1 for an
        empty slot. Draws are hashed from (market seed, ``seed``, query id,
        slot): the same queries, lists and seed give the same outcomes, and two
        lists that put one product in one slot share its draws.
        """
        shown = self._checked_lists(queries, shown)
        c = self.config
        k = shown.shape[1]
        valid = shown >= 0
        p_click = self.click_probability(queries, shown)
        target = queries["product_id"].to_numpy()[:, None]
        sim = np.where(
            valid, self.world.similarity(target, np.where(valid, shown, 0)), 0.0
        )
        qid = queries["query_id"].to_numpy()[:, None]
        slot = np.arange(k)[None, :]
        u = hashed_uniform(
            c.seed, _RESPONSE, int(seed), qid[..., None], slot[..., None], np.arange(4)
        )
        t = queries["time"].to_numpy()[:, None]
        region = queries["region"].to_numpy()
        available = valid & self.in_stock(
            np.where(valid, shown, 0), region[:, None], np.broadcast_to(t, shown.shape)
        )
        clicked = valid & (u[..., 0] < p_click)
        p_save = c.save_max * sim**c.save_sharpness
        saved = clicked & available & (u[..., 1] < p_save)
        click_time = t + SCAN_SECONDS * (slot + 1) * (1.0 + u[..., 2])
        save_time = click_time + 5.0 + 55.0 * u[..., 3]
        return Engagement(
            shown=shown,
            p_click=p_click,
            clicked=clicked,
            saved=saved,
            click_time=np.where(clicked, np.round(click_time, 3), np.nan),
            save_time=np.where(saved, np.round(save_time, 3), np.nan),
            available=available,
        )

    def _checked_lists(self, queries: pd.DataFrame, shown: np.ndarray) -> np.ndarray:
        shown = np.asarray(shown)
        if shown.ndim != 2 or shown.shape[0] != len(queries):
            raise MarketError(
                f"shown must be (n_queries, k) = ({len(queries)}, k) product ids, one "
                f"list per query, got shape {shown.shape}."
            )
        if not np.issubdtype(shown.dtype, np.integer):
            raise MarketError(
                f"shown must hold integer product ids, got {shown.dtype}."
            )
        if shown.size and (shown.max() >= self.world.n_products or shown.min() < -1):
            raise MarketError(
                f"shown holds ids outside [-1, {self.world.n_products}): product ids "
                "are rows of world.products, -1 an empty slot."
            )
        return shown.astype(np.int64)

    # -- the system in production before ours ---------------------------------------

    def legacy_results(
        self, queries: pd.DataFrame, k: int = 20, *, noise: float = 0.2, seed: int = 0
    ) -> np.ndarray:
        """The legacy system's lists: ``k`` products by true similarity + noise.

        A stand-in with a known quality (uniform noise of standard deviation
        ``noise`` on the [0, 1] similarity), so chapter 3 has a realistic log
        before any model exists. It knows nothing of stock and shows a
        product and its duplicate listings side by side, as an unfiltered,
        undeduplicated system does.
        """
        if not 1 <= k <= self.world.n_products:
            raise MarketError(
                f"k={k} must be in [1, {self.world.n_products}] (the catalogue)."
            )
        all_ids = np.arange(self.world.n_products)
        targets = queries["product_id"].to_numpy()
        qid = queries["query_id"].to_numpy()
        lists = np.empty((len(queries), k), dtype=np.int64)
        for start in range(0, len(queries), 256):
            part = slice(start, start + 256)
            sim = self.world.similarity(targets[part, None], all_ids[None, :])
            u = hashed_uniform(
                self.config.seed, _LEGACY, int(seed), qid[part, None], all_ids[None, :]
            )
            score = sim + noise * np.sqrt(12.0) * (u - 0.5)
            top = np.argpartition(-score, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(score, top, axis=1), axis=1)
            lists[part] = np.take_along_axis(top, order, axis=1)
        return lists

    # -- stock --------------------------------------------------------------------

    def _draw_sold_in(self) -> np.ndarray:
        c = self.config
        rng = np.random.default_rng([c.seed, _STOCK, 0])
        n = self.world.n_products
        sold = rng.random((n, c.n_regions)) < c.sold_in_region
        nowhere = ~sold.any(axis=1)
        sold[np.flatnonzero(nowhere), rng.integers(0, c.n_regions, nowhere.sum())] = (
            True
        )
        return (sold * (1 << np.arange(c.n_regions))).sum(axis=1).astype(np.int64)

    def _draw_stock(self) -> pd.DataFrame:
        """Every stock change, as the product's region mask after it (+ snapshot)."""
        c = self.config
        rng = np.random.default_rng([c.seed, _STOCK, 1])
        n, regions = self.world.n_products, c.n_regions
        bits = (self.sold_in[:, None] >> np.arange(regions)) & 1
        product, region = np.nonzero(bits)  # (product, region) pairs, sold there
        mean_in, mean_out = c.in_stock_days * DAY_SECONDS, c.out_of_stock_hours * 3600.0
        in_stock = rng.random(product.size) < mean_in / (mean_in + mean_out)
        initial = np.zeros(n, dtype=np.int64)
        np.bitwise_or.at(initial, product, in_stock.astype(np.int64) << region)
        # Alternating spells from the stationary state (exponential, memoryless).
        spells = 4
        while True:
            state = in_stock[:, None] ^ (np.arange(spells) % 2 == 1)[None, :]
            means = np.where(state, mean_in, mean_out)
            ends = np.cumsum(rng.exponential(1.0, means.shape) * means, axis=1)
            if (ends[:, -1] >= c.horizon_seconds).all():
                break
            spells *= 2
        pair, spell = np.nonzero(ends < c.horizon_seconds)
        time = np.round(ends[pair, spell], 3)
        changed_product, changed_region = product[pair], region[pair]
        order = np.lexsort((changed_region, time, changed_product))
        time, changed_product = time[order], changed_product[order]
        changed_region = changed_region[order]
        # The mask after each change: the product's initial mask XOR every bit
        # flipped so far (a prefix XOR, restarted per product).
        flips = (np.int64(1) << changed_region.astype(np.int64)).astype(np.int64)
        prefix = np.bitwise_xor.accumulate(flips) if flips.size else flips
        starts = np.searchsorted(changed_product, changed_product, side="left")
        before = np.where(starts > 0, prefix[np.maximum(starts - 1, 0)], 0)
        mask = initial[changed_product] ^ prefix ^ before
        change = np.arange(time.size) - starts + 1
        table = pd.DataFrame(
            {
                "time": np.concatenate([np.zeros(n), time]),
                "product_id": np.concatenate([np.arange(n), changed_product]),
                "region": np.concatenate([np.full(n, -1), changed_region]).astype(
                    np.int8
                ),
                "stock": np.concatenate([initial, mask]).astype(np.int64),
                "change": np.concatenate([np.zeros(n), change]).astype(np.int64),
            }
        )
        return _by_product_and_time(table)

    def stock_at(self, products: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Each product's in-stock region mask at world time ``times`` (broadcast)."""
        return self._as_of(self.stock_changes, "stock", products, times)

    def in_stock(
        self, products: np.ndarray, regions: np.ndarray, times: np.ndarray
    ) -> np.ndarray:
        """Whether each product is in stock in ``regions`` at ``times`` (broadcast)."""
        mask = self.stock_at(products, times)
        return ((mask >> np.asarray(regions, dtype=np.int64)) & 1).astype(bool)

    # -- prices -------------------------------------------------------------------

    def _draw_prices(self) -> pd.DataFrame:
        c = self.config
        rng = np.random.default_rng([c.seed, _PRICE])
        products = self.world.products
        n = len(products)
        category_level = rng.uniform(2.5, 4.5, int(products["category"].max()) + 1)
        log_price = category_level[products["category"].to_numpy()] + rng.normal(
            0.0, 0.4, n
        )
        duplicate = products["duplicate_of"].to_numpy()
        listed = duplicate >= 0  # another merchant: the original's price, +-10 %
        log_price[listed] = log_price[duplicate[listed]] + rng.uniform(
            -0.1, 0.1, listed.sum()
        )
        count = rng.poisson(c.price_changes_per_day * c.days, n)
        product = np.repeat(np.arange(n), count)
        time = np.round(rng.uniform(0.0, c.horizon_seconds, product.size), 3)
        order = np.lexsort((time, product))
        product, time = product[order], time[order]
        steps = rng.normal(0.0, c.price_step, product.size)
        starts = np.searchsorted(product, product, side="left")
        walk = np.cumsum(steps)
        walk -= np.where(starts > 0, walk[np.maximum(starts - 1, 0)], 0.0)
        table = pd.DataFrame(
            {
                "time": np.concatenate([np.zeros(n), time]),
                "product_id": np.concatenate([np.arange(n), product]),
                "price": np.round(
                    np.exp(np.concatenate([log_price, log_price[product] + walk])), 2
                ),
                "change": np.concatenate(
                    [np.zeros(n), np.arange(product.size) - starts + 1]
                ).astype(np.int64),
            }
        )
        return _by_product_and_time(table)

    def price_at(self, products: np.ndarray, times: np.ndarray) -> np.ndarray:
        """Each product's price at world time ``times`` (broadcast)."""
        return self._as_of(self.price_changes, "price", products, times)

    # -- shared ---------------------------------------------------------------------

    def _as_of(
        self, table: pd.DataFrame, column: str, products: np.ndarray, times: np.ndarray
    ) -> np.ndarray:
        """The last value of ``column`` at or before each time, per product."""
        products, times = np.broadcast_arrays(
            np.asarray(products, dtype=np.int64), np.asarray(times, dtype=np.float64)
        )
        if products.size and (
            products.min() < 0 or products.max() >= self.world.n_products
        ):
            raise MarketError(
                f"product ids must be in [0, {self.world.n_products}), got "
                f"{products.min()} to {products.max()}."
            )
        if times.size and (
            times.min() < 0 or times.max() > self.config.horizon_seconds
        ):
            raise MarketError(
                f"times must be in [0, {self.config.horizon_seconds:.0f}] s (the "
                f"market's {self.config.days} days), got {times.min()} to "
                f"{times.max()}."
            )
        span = self.config.horizon_seconds + 1.0
        keys = table["product_id"].to_numpy() * span + table["time"].to_numpy()
        row = np.searchsorted(keys, products * span + times, side="right") - 1
        return table[column].to_numpy()[row]

    def with_config(self, **changes: object) -> ImageMarket:
        """The same world with a market of other settings (a new draw)."""
        return ImageMarket(self.world, dataclasses.replace(self.config, **changes))


def _by_product_and_time(table: pd.DataFrame) -> pd.DataFrame:
    order = np.lexsort((table["change"].to_numpy(), table["product_id"].to_numpy()))
    return table.iloc[order].reset_index(drop=True)


def _take(shot: QuerySet, rows: np.ndarray) -> QuerySet:
    """The photos of ``shot`` at ``rows``, in that order."""
    return QuerySet(
        images=shot.images.subset(rows),
        boxes=shot.boxes[rows],
        details=shot.details.iloc[rows].reset_index(drop=True),
        style=shot.style,
    )
