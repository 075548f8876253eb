"""Every parameter a reader can set in a notebook's parameters cell is checked.

Issue 15, item 5: a value outside its domain fails at the library function that
receives it, before any work, with a message that names the parameter and the
allowed range. :data:`CHECKED` holds one row per (notebook, parameter): the call
that receives the reader's value, a value outside its domain and the message
fragment expected. :data:`NOT_CHECKED` lists, with the reason, the parameters
that no library function receives (the notebook's own loop counts, slices,
arithmetic or plot lines) or whose any value is fine. A test parses every
notebook's parameters cell with ``ast`` and fails on a name in neither table,
so a new parameter needs a row.
"""

from __future__ import annotations

import ast
import functools
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlsd_lib.errors import MlsdError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(
    [*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("casestudies/*/*.ipynb")]
)

#: The notebook's own code uses it (a loop count, a slice, arithmetic, a plot
#: line): no library function receives the value.
LOCAL = "only the notebook's own code uses it; no library function receives it"


def _get(path: str) -> Any:
    """``"pkg.mod:attr.sub"`` imported lazily (the table stays cheap to build)."""
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def call(path: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """A call of ``path`` with the reader's value put where ``...`` stands."""

    def run(value: Any) -> Any:
        fill = lambda x: value if x is ... else x  # noqa: E731
        return _get(path)(
            *(fill(a) for a in args), **{k: fill(v) for k, v in kwargs.items()}
        )

    return run


@functools.cache
def ads_world() -> Any:
    """A small ads world (the checks run before any of its work)."""
    config = _get("mlsd_lib.worlds.ads_config:AdsWorldConfig")(
        num_users=200, num_advertisers=5, num_campaigns=10, num_ads=20
    )
    return _get("mlsd_lib.worlds.ads:AdsWorld")(config, seed=0)


def on_world(method: str, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
    """A call of ``ads_world().<method>`` with the value where ``...`` stands."""

    def run(value: Any) -> Any:
        fill = lambda x: value if x is ... else x  # noqa: E731
        return getattr(ads_world(), method)(
            *(fill(a) for a in args), **{k: fill(v) for k, v in kwargs.items()}
        )

    return run


@dataclass(frozen=True)
class Checked:
    notebook: str
    name: str
    receive: Callable[[Any], Any]
    bad: Any
    match: str


def rows(notebook: str, **entries: tuple[Callable[[Any], Any], Any, str] | str):
    """``name=(call, bad value, message)`` or ``name="reason it is not checked"``."""
    return notebook, entries


SEED_MSG = r"seed must be an integer >= 0 \(got -1\)"


@functools.cache
def ivf_index() -> Any:
    """A tiny IVF index (its search parameters are what a row checks)."""
    spec = _get("mlsd_lib.index.spec:IndexSpec")("ivf", nlist=4)
    vectors = np.random.default_rng(0).standard_normal((200, 8), dtype=np.float32)
    return _get("mlsd_lib.index.ann:AnnIndex")(spec, 8).build(vectors)


@functools.cache
def market() -> Any:
    """A two-week image market on the quick world (queries are drawn lazily)."""
    world = _get("mlsd_lib.worlds.images:ImageWorld")(
        _get("mlsd_lib.worlds.images_config:ImageWorldConfig").quick(seed=0)
    )
    config = _get("mlsd_lib.worlds.images_market:MarketConfig")(days=14)
    return _get("mlsd_lib.worlds.images_market:ImageMarket")(world, config)


AD = "casestudies/ad_click/"
WORLD_SEED = (call("mlsd_lib.worlds.ads:AdsWorld", seed=...), -1, SEED_MSG)
DAYS = (
    on_world("simulate", days=..., impressions_per_day=10),
    0,
    r"days must be an integer >= 1 \(got 0\)",
)
PER_DAY = (
    on_world("simulate", days=1, impressions_per_day=...),
    0,
    r"impressions_per_day must be an integer in \[1, \d+\] \(got 0\)",
)
BUCKETS = (
    lambda n: _get("mlsd_lib.adclick.features:feature_tables")(
        ads_world(), None, num_buckets=n
    ),
    0,
    r"num_buckets must be >= 1, got 0",
)
LABEL_WINDOW = (
    lambda hours: _get("mlsd_lib.adclick.features:training_data")(
        ads_world(), None, {}, label_window_s=hours * 3600
    ),
    0,
    r"label_window_s must be a finite number > 0 \(got 0\)",
)
ADS_PER_DAY_TABLE = {"SEED": WORLD_SEED, "DAYS": DAYS, "IMPRESSIONS_PER_DAY": PER_DAY}
BUDGET = "mlsd_lib.adclick.recipes:Budget"
AD_REQ = "mlsd_lib.adclick.scale:production_requirements"

TABLE: dict[str, dict[str, tuple[Callable[[Any], Any], Any, str] | str]] = {
    AD + "01_requirements_and_scale.ipynb": {
        "SEED": WORLD_SEED,
        "IMPRESSIONS": PER_DAY,
        "DAU": (
            call(AD_REQ, daily_active_users=...),
            0,
            "daily_active_users must be > 0",
        ),
        "REQUESTS_PER_USER": (
            call(AD_REQ, requests_per_user_per_day=...),
            0,
            "requests_per_user_per_day must be > 0",
        ),
        "CANDIDATES": (
            call(AD_REQ, candidates_per_request=...),
            0,
            "candidates_per_request must be >= 1",
        ),
        "PRODUCTION_CTR": LOCAL,
    },
    AD + "02_data_and_features.ipynb": {
        **ADS_PER_DAY_TABLE,
        "NUM_BUCKETS": BUCKETS,
        "LABEL_WINDOW_H": LABEL_WINDOW,
    },
    AD + "03_models.ipynb": {
        **ADS_PER_DAY_TABLE,
        "NUM_BUCKETS": BUCKETS,
        "LABEL_WINDOW_H": LABEL_WINDOW,
        "EPOCHS": (call(BUDGET, epochs=...), 0, r"epochs must be an integer >= 1"),
        "NUM_TREES": (
            call(BUDGET, num_trees=...),
            0,
            r"num_trees must be an integer >= 1",
        ),
        "GBDT_LR_EPOCHS": (
            call(BUDGET, gbdt_lr_epochs=...),
            0,
            r"gbdt_lr_epochs must be an integer >= 1",
        ),
        "DOWNSAMPLE_RATE": (
            call("mlsd_lib.models.downsampling:downsample_negatives", None, ...),
            1.5,
            r"rate w is the fraction of negatives kept, in \(0, 1\]; got 1.5",
        ),
        "CANDIDATES": (
            call(
                "mlsd_lib.adclick.model_report:scoring_seconds",
                None,
                None,
                candidates=...,
            ),
            0,
            r"candidates must be an integer >= 1 \(got 0\)",
        ),
        "SWEEP_BUCKETS": (
            lambda sizes: _get("mlsd_lib.adclick.bucket_sweep:sweep_buckets")(
                None, None, sizes, train_mask=None, valid_mask=None, test_mask=None
            ),
            [2**8, 0],
            r"num_buckets must be an integer >= 1 \(got 0\)",
        ),
        "COLLISION_BUCKETS": (
            call("mlsd_lib.adclick.bucket_sweep:collision_table", None, ...),
            [0],
            r"num_buckets must be an integer >= 1 \(got 0\)",
        ),
    },
    AD + "04_evaluation.ipynb": {
        **ADS_PER_DAY_TABLE,
        "NUM_BUCKETS": BUCKETS,
        "FRESH_DAYS": DAYS,
        "DRIFT_PER_DAY": (
            call("mlsd_lib.worlds.ads_config:AdsWorldConfig", drift_per_day=...),
            -0.1,
            r"drift_per_day must be a finite number >= 0 \(got -0.1\)",
        ),
        "WINDOW_DAYS": (
            call(
                "mlsd_lib.adclick.evaluation:freshness_study",
                None,
                eval_days=[7],
                schedules={"daily": 1},
                window_days=...,
            ),
            1,
            r"window_days must be an integer >= 2 \(got 1\)",
        ),
        "TEMPERATURE": (
            call(
                "mlsd_lib.adclick.evaluation:distort", np.array([0.5]), temperature=...
            ),
            0,
            r"temperature must be a finite number > 0 \(got 0\)",
        ),
    },
    AD + "05_serving_and_ab_test.ipynb": {
        **ADS_PER_DAY_TABLE,
        "NUM_BUCKETS": BUCKETS,
        "CANDIDATES": (
            lambda n: _get("mlsd_lib.adclick.experiment:sample_requests")(
                ads_world(), 10, num_candidates=n, day=8
            ),
            0,
            r"num_candidates must be an integer in \[1, 20\] \(got 0\)",
        ),
        "SLOTS": (
            lambda s: _get("mlsd_lib.adclick.experiment:run_experiment")(
                ads_world(), None, {}, None, slots=s
            ),
            0,
            r"slots must be an integer >= 1 \(got 0\)",
        ),
        "GATEWAY_REQUESTS": (
            lambda n: _get("mlsd_lib.adclick.experiment:sample_requests")(
                ads_world(), n, day=8
            ),
            0,
            r"n must be an integer >= 1 \(got 0\)",
        ),
        "SCALE_REQUESTS": (
            lambda n: _get("mlsd_lib.adclick.experiment:sample_requests")(
                ads_world(), n, day=8
            ),
            -5,
            r"n must be an integer >= 1 \(got -5\)",
        ),
        "BATCH_USERS": (
            lambda n: _get("mlsd_lib.adclick.batch_scores:batch_score_users")(
                None, None, np.arange(n), np.arange(n), 20, None
            ),
            0,
            r"users must hold at least one user id",
        ),
    },
    AD + "06_monitoring_and_retraining.ipynb": {
        "SEED": WORLD_SEED,
        "IMPRESSIONS_PER_DAY": PER_DAY,
        "TRAIN_DAYS": (
            call(
                "mlsd_lib.adclick.monitoring:simulate_days",
                None,
                first_day=...,
                last_day=27,
            ),
            0,
            r"first_day must be an integer >= 2 \(got 0\)",
        ),
        "LAST_DAY": (
            call(
                "mlsd_lib.adclick.monitoring:simulate_days",
                None,
                first_day=7,
                last_day=...,
            ),
            6,
            r"last_day must be an integer >= 7 \(got 6\)",
        ),
        "DRIFT_PER_DAY": (
            call("mlsd_lib.worlds.ads_config:AdsWorldConfig", drift_per_day=...),
            -1,
            r"drift_per_day must be a finite number >= 0 \(got -1\)",
        ),
        "SURGE_CATEGORY": (
            lambda c: _get("mlsd_lib.adclick.monitoring:seasonal_surge")(
                ads_world(), None, category=c, from_day=1
            ),
            99,
            r"category must be an integer in \[0, \d+\] \(got 99\)",
        ),
        "SURGE_FROM_DAY": (
            lambda d: _get("mlsd_lib.adclick.monitoring:seasonal_surge")(
                ads_world(), None, category=0, from_day=d
            ),
            -1,
            r"from_day must be an integer >= 0 \(got -1\)",
        ),
        "SURGE_TRAFFIC": (
            lambda f: _get("mlsd_lib.adclick.monitoring:seasonal_surge")(
                ads_world(), None, category=0, from_day=1, traffic_factor=f
            ),
            0,
            r"traffic_factor must be a finite number > 0 \(got 0\)",
        ),
        "SURGE_CTR": (
            lambda f: _get("mlsd_lib.adclick.monitoring:seasonal_surge")(
                ads_world(), None, category=0, from_day=1, ctr_factor=f
            ),
            -2,
            r"ctr_factor must be a finite number > 0 \(got -2\)",
        ),
        "BROKEN_DAY": (
            lambda d: _get("mlsd_lib.adclick.monitoring:Traffic").with_broken_feature(
                None, d, "device", 0
            ),
            -1,
            r"day must be an integer >= 0 \(got -1\)",
        ),
        "NE_DEGRADATION": (
            call(
                "mlsd_lib.monitoring.retraining:RetrainingTrigger", ne_degradation=...
            ),
            -0.1,
            r"ne_degradation must be > 0, got -0.1",
        ),
        "MIN_INTERVAL_DAYS": (
            call(
                "mlsd_lib.monitoring.retraining:RetrainingTrigger",
                min_interval_days=...,
            ),
            -1,
            r"min_interval_days must be >= 0, got -1",
        ),
        "PROBE_SHARE": (
            call("mlsd_lib.adclick.warm_vs_scratch:probe_mask", None, [0], ...),
            1.0,
            r"probe share must be in \(0, 1\), got 1.0",
        ),
        "WARM_LR": (
            call("mlsd_lib.adclick.warm_vs_scratch:warm_training", 7, lr=...),
            0,
            r"lr must be a finite number > 0 \(got 0\)",
        ),
    },
    AD + "07_interview_followups.ipynb": {
        "SEED": WORLD_SEED,
        "IMPRESSIONS_PER_DAY": PER_DAY,
        "NUM_BUCKETS": (
            on_world("to_ctr_data", None, num_buckets=...),
            0,
            r"num_buckets must be an integer >= 1 \(got 0\)",
        ),
        "EPOCHS": (
            call("mlsd_lib.models.training:TrainingConfig", epochs=...),
            0,
            r"epochs, batch_size and patience must be >= 1 \(got 0,",
        ),
        "BATCH_SIZE": (
            call("mlsd_lib.models.training:TrainingConfig", batch_size=...),
            0,
            r"epochs, batch_size and patience must be >= 1 \(got \d+, 0,",
        ),
        "LR": (
            call("mlsd_lib.models.training:TrainingConfig", lr=...),
            0,
            r"lr must be a finite number > 0 \(got 0\)",
        ),
        "NUM_AUCTIONS": LOCAL + " (the size of the notebook's own random draws)",
        "ADS_PER_AUCTION": LOCAL + " (the size of the notebook's own random draws)",
        "STREAM_REQUESTS": (
            call("mlsd_lib.reranking.bandit_stream:StreamConfig", requests=...),
            0,
            r"requests and batch_size must be >= 1, got 0",
        ),
        "NEW_ADS": (
            lambda n: _get("mlsd_lib.adclick.cold_start:cold_start_arms")(
                ads_world(), None, None, num_new=n, requests=100
            ),
            0,
            r"num_new must be between 1 and 19 .* got 0",
        ),
        "TOLERANCE": (
            call("mlsd_lib.reranking.bandit_stream:StreamConfig", tolerance=...),
            0,
            r"tolerance must be > 0, got 0",
        ),
    },
}

NB = "notebooks/"
NUMPY_SEED = (
    "passed straight to numpy's default_rng / torch.manual_seed, which refuse a "
    "negative seed themselves (MLSD_SEED is read by load_settings)"
)
EXAMPLE = "mlsd_lib.features.examples:make_ads_example"
WORKED = "mlsd_lib.capacity_worked:"
SHIFTS = "mlsd_lib.worlds.injected_shifts:"
CANARY = "mlsd_lib.serving.canary_rollback:"
START_MSG = r"start must be a finite number >= 0 \(got -86400.0\)"
PSI_Q = "mlsd_lib.monitoring.window_stats:psi_null_quantile"
SCALING = (
    "notebooks/scaling_out.ipynb is being written for issue 14 (its library: "
    "cluster_*, batch/); its checks belong to that work"
)
STREAM_PROC = (
    "received by the stream processor (features/stream_processor.py), which "
    "issue 14's helpers are editing; its check belongs to that work"
)


def _mix(**kwargs: Any) -> Callable[[Any], Any]:
    base = {"column": "device", "weights": {2: 3.0}, "start": 0.0}
    return call(SHIFTS + "mix_shift", None, **{**base, **kwargs})


def _concept(**kwargs: Any) -> Callable[[Any], Any]:
    base = {"column": "ad_category", "values": (2,), "odds_factor": 3.0, "start": 0.0}
    return call(SHIFTS + "concept_shift", None, **{**base, **kwargs})


TABLE.update(
    {
        NB + "00_environment.ipynb": {"SEED": NUMPY_SEED, "NUM_PINGS": LOCAL},
        NB + "capacity.ipynb": {
            "SEED": NUMPY_SEED,
            "AD_CLICK": (
                call(WORKED + "AdClickAssumptions", daily_active_users=...),
                0,
                r"daily_active_users must be a number > 0, got 0",
            ),
            "EMBEDDINGS": (
                call(WORKED + "EmbeddingRetrievalAssumptions", catalog_items=...),
                -1,
                r"catalog_items must be a number > 0, got -1",
            ),
            "AB_TEST": (
                call(WORKED + "ABTestAssumptions", baseline_rate=...),
                1.5,
                r"baseline_rate must be in \(0, 1\), got 1.5",
            ),
            "FAN_OUT": (
                call(WORKED + "FanOutAssumptions", shards=...),
                0,
                r"shards must be a number > 0, got 0",
            ),
            "P99_BUDGET_MS": (
                call("mlsd_lib.capacity_measured:rate_within_budget", [], ...),
                0,
                r"p99_budget_ms must be > 0, got 0",
            ),
            "CANDIDATES": LOCAL + " (derived from AD_CLICK, which is checked)",
            "CONCURRENCIES": (
                call(
                    "mlsd_lib.serving.loadgen.loops:sweep",
                    None,
                    ...,
                    max_requests=10,
                    max_seconds=1.0,
                ),
                (1, 0),
                r"concurrency=0 is outside \(0, 256\]",
            ),
            "SECONDS_PER_LEVEL": (
                call(
                    "mlsd_lib.serving.loadgen.loops:sweep",
                    None,
                    (1,),
                    max_requests=10,
                    max_seconds=...,
                ),
                0,
                r"max_seconds=0 is outside \(0, 300\]",
            ),
        },
        NB + "evaluation.ipynb": {
            "SEED": WORLD_SEED,
            "IMPRESSIONS_PER_DAY": PER_DAY,
            "NUM_BUCKETS": (
                on_world("to_ctr_data", None, num_buckets=...),
                0,
                r"num_buckets must be an integer >= 1 \(got 0\)",
            ),
            "REQUESTS": LOCAL + " (the size of the notebook's own random draws)",
            "CANDIDATES": LOCAL + " (a slice of the notebook's own permutations)",
            "K": (
                call("mlsd_lib.evaluation.ranking:rank_top_k", np.ones((2, 3)), ...),
                0,
                r"k must be a positive integer, got 0",
            ),
            "EXPERIMENTS": (
                call(
                    "mlsd_lib.evaluation.ab_simulation:simulate_proportion_tests",
                    0.05,
                    0.0,
                    100,
                    experiments=...,
                    seed=0,
                ),
                0,
                r"experiments must be an integer >= 1, got 0",
            ),
            "ALPHA": (
                call(
                    "mlsd_lib.evaluation.ab_test:sample_size_per_arm",
                    0.05,
                    0.05,
                    alpha=...,
                ),
                1.5,
                r"alpha must be in \(0, 1\), got 1.5",
            ),
            "BASE_CTR": (
                call("mlsd_lib.evaluation.ab_test:sample_size_per_arm", ..., 0.05),
                0,
                r"baseline_rate must be in \(0, 1\), got 0",
            ),
            "MDE": (
                call("mlsd_lib.evaluation.ab_test:sample_size_per_arm", 0.05, ...),
                -2,
                r"relative_mde=-2 .* keep the rate inside \(0, 1\)",
            ),
            "DAYS": (
                call("mlsd_lib.evaluation.sequential:obrien_fleming_boundary", ...),
                0,
                r"looks must be .*>= 1",
            ),
        },
        NB + "failure_drills.ipynb": {
            **ADS_PER_DAY_TABLE,
            "NUM_BUCKETS": BUCKETS,
            "CANDIDATES": (
                lambda n: _get("mlsd_lib.adclick.experiment:sample_requests")(
                    ads_world(), 10, num_candidates=n, day=3
                ),
                -1,
                r"num_candidates must be an integer in \[1, 20\] \(got -1\)",
            ),
            "DRILL_CLIENTS": (
                call(
                    "mlsd_lib.serving.fault_drill:DrillLoad",
                    "http://127.0.0.1:9",
                    {},
                    [{}],
                    clients=...,
                ),
                0,
                r"clients must be an integer >= 1 \(got 0\)",
            ),
            "DRILL_PACE_S": (
                call(
                    "mlsd_lib.serving.fault_drill:DrillLoad",
                    "http://127.0.0.1:9",
                    {},
                    [{}],
                    pace_s=...,
                ),
                -0.1,
                r"pace_s must be a finite number >= 0 \(got -0.1\)",
            ),
            "BUCKET_S": (
                call("mlsd_lib.serving.fault_drill:drill_timeline", None, ...),
                0,
                r"bucket_s must be positive, got 0",
            ),
            "CANARY_FRACTION": (
                call(
                    "mlsd_lib.serving.gateway.deploy:RegistryDeployer",
                    None,
                    "ads",
                    None,
                    canary_fraction=...,
                ),
                1.5,
                r"canary_fraction must be .*\[0, 1\]",
            ),
            "MAX_RELATIVE_EXCESS": (
                call(CANARY + "CanaryRule", max_relative_excess=...),
                -1,
                r"max_relative_excess must be >= 0",
            ),
            "MIN_SAMPLES": (
                call(CANARY + "CanaryRule", min_samples=...),
                0,
                r"min_samples >= 1",
            ),
            "WINDOW_S": (
                call(CANARY + "CanaryGuard", None, None, None, window_s=...),
                0,
                r"window_s and check_every_s must be positive; got 0",
            ),
        },
        NB + "feature_store.ipynb": {
            "SEED": (call(EXAMPLE, seed=...), -1, SEED_MSG),
            "NUM_USERS": (
                call(EXAMPLE, num_users=...),
                0,
                r"num_users must be an integer >= 1 \(got 0\)",
            ),
            "NUM_ADS": (
                call(EXAMPLE, num_ads=...),
                0,
                r"num_ads must be an integer >= 1 \(got 0\)",
            ),
            "DAYS": (
                call(EXAMPLE, days=...),
                0,
                r"days must be an integer >= 1 \(got 0\)",
            ),
            "IMPRESSIONS_PER_USER_DAY": (
                call(EXAMPLE, impressions_per_user_day=...),
                0,
                r"impressions_per_user_day must be a finite number > 0 \(got 0\)",
            ),
            "TRAIN_DAYS": LOCAL + " (the notebook's own split timestamp)",
            "NUM_LATENCY_SAMPLES": LOCAL,
        },
        NB + "model_serving.ipynb": {
            "SEED": (call(EXAMPLE, seed=...), -1, SEED_MSG),
            "NUM_USERS": (
                call(EXAMPLE, num_users=...),
                0,
                r"num_users must be an integer >= 1 \(got 0\)",
            ),
            "NUM_ADS": (
                call(EXAMPLE, num_ads=...),
                -3,
                r"num_ads must be an integer >= 1 \(got -3\)",
            ),
            "CANDIDATES": LOCAL + " (a slice of the notebook's own feature rows)",
            "LATENCY_REQUESTS": LOCAL,
            "BINDING_CALLS": LOCAL,
            "SWEEP_SECONDS": (
                call(
                    "mlsd_lib.serving.loadgen.loops:sweep",
                    None,
                    (1,),
                    max_requests=10,
                    max_seconds=...,
                ),
                -1.5,
                r"max_seconds=-1.5 is outside \(0, 300\]",
            ),
        },
        NB + "monitoring.ipynb": {
            "SEED": WORLD_SEED,
            "IMPRESSIONS_PER_DAY": PER_DAY,
            "REFERENCE_DAYS": (
                lambda d: _get(PSI_Q)(0.01, 2, d * 30_000, 300),
                0,
                r"n_reference must be an integer >= 1 \(got 0\)",
            ),
            "SCENARIO_DAYS": LOCAL + " (the notebook's simulate_frame loops over it)",
            "MIX_SHIFT_DAY": (lambda d: _mix(start=d * 86_400.0)(None), -1, START_MSG),
            "TABLET_WEIGHT": (
                lambda w: _mix(weights={2: w})(None),
                -1,
                r"weights must be a non-empty .* weight >= 0, got \{2: -1\}",
            ),
            "CONCEPT_SHIFT_DAY": (
                lambda d: _concept(start=d * 86_400.0)(None),
                -1,
                START_MSG,
            ),
            "CONCEPT_CATEGORIES": (
                lambda v: _concept(values=v)(None),
                (),
                r"values must name at least one value of ad_category",
            ),
            "ODDS_FACTOR": (
                lambda f: _concept(odds_factor=f)(None),
                0,
                r"odds_factor must be > 0, got 0",
            ),
            "WINDOW_ROWS": (
                call(
                    "mlsd_lib.monitoring.window_stats:tumbling_windows",
                    np.zeros(4),
                    ...,
                ),
                0,
                r"size must be an integer >= 1 \(got 0\)",
            ),
            "REPETITIONS": LOCAL,
            "TRADEOFF_DAYS": LOCAL + " (the notebook's simulate_frame loops over it)",
            "CHANGE_DAY": (lambda d: _mix(start=d * 86_400.0)(None), -1, START_MSG),
            "SMALL_TABLET_WEIGHT": (
                lambda w: _mix(weights={2: w})(None),
                -1.3,
                r"weights must be .* weight >= 0, got \{2: -1.3\}",
            ),
            "ROWS_PER_HOUR": (
                lambda n: _get(PSI_Q)(0.01, 2, 90_000, n),
                0,
                r"n_current must be an integer >= 1 \(got 0\)",
            ),
            "WINDOW_HOURS": (
                lambda hours: [_get(PSI_Q)(0.01, 2, 90_000, 300 * h) for h in hours],
                (1, 0),
                r"n_current must be an integer >= 1 \(got 0\)",
            ),
            "REPLAY_DAYS": LOCAL + " (the notebook's simulate_frame loops over it)",
            "REPLAY_IMPRESSIONS_PER_DAY": PER_DAY,
            "TRAIN_DAYS": (
                call(
                    "mlsd_lib.monitoring.retraining_replay:replay_retraining",
                    [],
                    None,
                    None,
                    train_days=...,
                ),
                0,
                r"train_days must be an integer >= 1 \(got 0\)",
            ),
            "REPLAY_MIX_DAY": (lambda d: _mix(start=d * 86_400.0)(None), -1, START_MSG),
            "REPLAY_CONCEPT_DAY": (
                lambda d: _concept(start=d * 86_400.0)(None),
                -1,
                START_MSG,
            ),
        },
        NB + "streaming_features.ipynb": {
            "NUM_IMPRESSIONS": (
                call("mlsd_lib.features.event_stream:synthetic_events", ...),
                -1,
                r"num_impressions must be an integer >= 0 \(got -1\)",
            ),
            "NUM_USERS": (
                call(
                    "mlsd_lib.features.event_stream:synthetic_events", 10, num_users=...
                ),
                0,
                r"num_users must be an integer >= 1 \(got 0\)",
            ),
            "NUM_ADS": (
                call(
                    "mlsd_lib.features.event_stream:synthetic_events", 10, num_ads=...
                ),
                0,
                r"num_ads must be an integer >= 1 \(got 0\)",
            ),
            "SEED": (
                call("mlsd_lib.features.event_stream:synthetic_events", 10, seed=...),
                -1,
                SEED_MSG,
            ),
            "CRASH_AFTER": STREAM_PROC,
            "BATCH_SIZE": STREAM_PROC,
            "FRESHNESS_EVENTS": (
                lambda n: _get("mlsd_lib.features.event_stream:synthetic_events")(
                    n + 5
                ),
                -6,
                r"num_impressions must be an integer >= 0 \(got -1\)",
            ),
        },
    }
)

RS = "casestudies/recommender/"
#: A folder that cannot be created (its parent is a file): a release whose
#: checks failed to refuse a value could not write anything there.
NOT_A_FOLDER = Path(__file__) / "release"
RS_CONFIG = "mlsd_lib.worlds.recsys_config:RecsysWorldConfig"
PRESET_NAME = (
    "a preset's name, looked up by the notebook with getattr(RecsysWorldConfig, "
    "...): an unknown name fails there, naming it"
)
RS_SEED = (call(RS_CONFIG + ".small", seed=...), -1, r"seed must be >= 0, got -1")
RS_USERS = (call(RS_CONFIG, n_users=...), 0, r"n_users must be >= 1, got 0")
RS_ITEMS = (call(RS_CONFIG, n_items=...), 0, r"n_items must be >= 1, got 0")
SPLIT_DAYS = (
    call("mlsd_lib.recsys.evaluation:simulate_split", None, None, train_days=...),
    1,
    r"a split needs train_days >= 2 .*got 1",
)
TOWER_EPOCHS = (
    call("mlsd_lib.recsys.recipes:fit_two_tower", None, None, epochs=...),
    0,
    r"epochs must be an integer >= 1 \(got 0\)",
)
RANKER_EPOCHS = (
    call("mlsd_lib.recsys.recipes:fit_ranker", None, None, None, None, epochs=...),
    0,
    r"epochs must be an integer >= 1 \(got 0\)",
)
RANKER_TRAINING_EPOCHS = (
    call("mlsd_lib.models.training:TrainingConfig", epochs=...),
    0,
    r"epochs, batch_size and patience must be >= 1 \(got 0,",
)
RETRIEVAL_KS = (
    call("mlsd_lib.recsys.evaluation:retrieval_table", {}, None, ...),
    (50, 0),
    r"ks must be an integer >= 1 \(got 0\)",
)
RANKER_DAYS = LOCAL + " (a day range the notebook cuts out of the log)"
RS_REQ = "mlsd_lib.recsys.scale:production_requirements"
EMB = "mlsd_lib.index.synthetic:clustered_embeddings"
SPEC = "mlsd_lib.index.spec:IndexSpec"
RELEASE = "mlsd_lib.recsys.quick_release:build_quick_release"
CLOSED = "mlsd_lib.serving.loadgen.loops:run_closed_loop"
FEED_TRAFFIC = "mlsd_lib.recsys.feed_traffic:FeedTraffic"
LOOPBACK = "http://127.0.0.1:9"
SHARDS = (
    call("mlsd_lib.index.sharded:ShardedIndex", None, 8, ...),
    0,
    r"n_shards=0: pass a positive integer",
)


def _closed(**kwargs: Any) -> Callable[[Any], Any]:
    base = {"concurrency": 1, "max_requests": 10, "max_seconds": 1.0}
    return call(CLOSED, None, **{**base, **kwargs})


def _plan(**kwargs: Any) -> Callable[[Any], Any]:
    base = {
        "ram_per_shard_bytes": 1e9,
        "shard_ms": lambda items: 1.0,
        "latency_budget_ms": 15.0,
        "peak_qps": 100.0,
    }
    return call("mlsd_lib.index.scaling:plan_shards", 10**6, 1e9, **{**base, **kwargs})


RAM_BUDGET = r"ram_per_shard_bytes must be .*> 0"
#: A serving chapter's closed-loop load: warm-up, one client, many clients.
CLOSED_LOOP = {
    name: (_closed(max_requests=...), 0, r"max_requests=0 is outside \(0, ")
    for name in ("WARMUP_REQUESTS", "SINGLE_REQUESTS", "MULTI_REQUESTS")
} | {"CLIENTS": (_closed(concurrency=...), 0, r"concurrency=0 is outside \(0, 256\]")}


def paced_traffic(traffic: str, clients: str, pace: str) -> dict[str, Any]:
    """Rows for a background load's client count and pace (a drill, a swap)."""
    return {
        clients: (
            call(traffic, LOOPBACK, {}, [{}], clients=...),
            0,
            r"clients must be an integer >= 1 \(got 0\)",
        ),
        pace: (
            call(traffic, LOOPBACK, {}, [{}], pace_s=...),
            -1,
            r"pace_s must be a finite number >= 0 \(got -1\)",
        ),
    }


TABLE.update(
    {
        RS + "01_requirements_and_scale.ipynb": {
            "SEED": RS_SEED,
            "TRAIN_DAYS": LOCAL + " (the notebook loops over the days it simulates)",
            "DEPTHS": (
                call("mlsd_lib.recsys.ceilings:ranking_report", {}, None, ...),
                (50, 0),
                r"ks must be an integer >= 1 \(got 0\)",
            ),
            "FEED": (
                call("mlsd_lib.recsys.ceilings:ranking_report", {}, None, (50,), ...),
                0,
                r"ndcg_k must be an integer >= 1 \(got 0\)",
            ),
            "TRUE_TOP": (
                call(
                    "mlsd_lib.recsys.ceilings:true_top_relevance", np.zeros((2, 3)), ...
                ),
                0,
                r"top must be in \[1, 3\] \(the oracle's depth\), got 0",
            ),
            "DAU": (
                call(RS_REQ, daily_active_users=...),
                0,
                "daily_active_users must be > 0",
            ),
            "CANDIDATES": (
                call(RS_REQ, candidates_per_request=...),
                0,
                "candidates_per_request must be >= 1",
            ),
        },
        RS + "02_data_and_features.ipynb": {
            "SEED": RS_SEED,
            "PRESET": PRESET_NAME,
            "DAYS": LOCAL + " (the notebook loops over the days it simulates)",
            "HISTORY_LENGTH": (
                call(
                    "mlsd_lib.features.history_fold:interaction_history",
                    "s",
                    length=...,
                ),
                0,
                r"length=0 must be a whole number from 1 to 1000",
            ),
            "FRESHNESS_EVENTS": LOCAL + " (the size of the notebook's own random draw)",
        },
        RS + "03_models.ipynb": {
            "SEED": RS_SEED,
            "N_USERS": RS_USERS,
            "N_ITEMS": RS_ITEMS,
            "TRAIN_DAYS": SPLIT_DAYS,
            "EPOCHS": TOWER_EPOCHS,
            "RANKER_EPOCHS": RANKER_EPOCHS,
            "RANKER_DAYS": RANKER_DAYS,
            "KS": RETRIEVAL_KS,
        },
        RS + "04_retrieval_index.ipynb": {
            "SEED": (call(EMB, 10, 10, 8, seed=...), -1, SEED_MSG),
            "N_ITEMS": (
                call(EMB, ..., 10, 8),
                0,
                r"n must be an integer >= 1 \(got 0\)",
            ),
            "N_NEW": LOCAL + " (added to N_ITEMS, whose sum is checked as n)",
            "D": (call(EMB, 10, 10, ...), 0, r"d must be an integer >= 1 \(got 0\)"),
            "N_QUERIES": (
                call(EMB, 10, ...),
                0,
                r"n_queries must be an integer >= 1 \(got 0\)",
            ),
            "N_TIMED": LOCAL + " (a slice of the queries)",
            "REPEATS": (
                call(
                    "mlsd_lib.index.measure:latency_profile",
                    None,
                    np.zeros((2, 8)),
                    10,
                    repeats=...,
                ),
                0,
                r"repeats=0: pass a positive integer",
            ),
            "K": (
                call(
                    "mlsd_lib.index.measure:latency_profile",
                    None,
                    np.zeros((2, 8)),
                    ...,
                ),
                0,
                r"k must be an integer >= 1 \(got 0\)",
            ),
            "TARGET_RECALL": (
                call("mlsd_lib.index.measure:cheapest_reaching", [], ...),
                1.5,
                r"min_recall must be a fraction in \[0, 1\] \(got 1.5\)",
            ),
            "NLIST": (
                call(SPEC, "ivf", nlist=...),
                0,
                r"nlist=0 is not allowed: pass a positive integer",
            ),
            "HNSW_M": (
                call(SPEC, "hnsw", hnsw_m=...),
                0,
                r"hnsw_m=0 is not allowed: pass a positive integer",
            ),
            "PQ_BYTES": (
                call(SPEC, "ivfpq", pq_bytes=...),
                0,
                r"pq_bytes=0 is not allowed: pass a positive integer",
            ),
            "REFINE": (
                call(SPEC, "ivfpq", refine=...),
                0,
                r"refine=0 is not allowed: pass a positive integer",
            ),
            "NPROBES": (
                call("mlsd_lib.index.measure:sweep", None, None, None, 10, ...),
                (1, 0),
                r"values must be an integer >= 1 \(got 0\)",
            ),
            "EF_SEARCHES": (
                call("mlsd_lib.index.measure:sweep", None, None, None, 10, ...),
                (16, -1),
                r"values must be an integer >= 1 \(got -1\)",
            ),
            "LAUNCH_SHARE": LOCAL + " (the notebook turns it into a count of items)",
            "LAUNCH_CLUSTERS": (
                call("mlsd_lib.index.synthetic:EmbeddingMixture.random", 8, ...),
                0,
                r"n_clusters must be an integer >= 1 \(got 0\)",
            ),
            "N_SHARDS": SHARDS,
            "PEAK_QPS": LOCAL + " (arithmetic in the notebook's printout)",
            "MACHINE_RAM_GB": LOCAL + " (arithmetic in the notebook's budget line)",
            "INDEX_RAM_SHARE": LOCAL + " (arithmetic in the notebook's budget line)",
        },
        RS + "05_evaluation.ipynb": {
            "SEED": RS_SEED,
            "N_USERS": RS_USERS,
            "N_ITEMS": RS_ITEMS,
            "TRAIN_DAYS": SPLIT_DAYS,
            "EPOCHS": TOWER_EPOCHS,
            "RANKER_DAYS": RANKER_DAYS,
            "RANKER_EPOCHS": RANKER_TRAINING_EPOCHS,
            "KS": RETRIEVAL_KS,
            "EPSILON": (
                call("mlsd_lib.worlds.recsys_policies:LegacyPolicy", None, epsilon=...),
                1.5,
                r"epsilon .* must be in \[0, 1\], got 1.5",
            ),
            "SHARES": (
                lambda shares: [
                    _get("mlsd_lib.recsys.online_evaluation:mixture_probability")(
                        np.ones(2), np.ones(2, bool), s
                    )
                    for s in shares
                ],
                (0.0, 1.5),
                r"share must be in \[0, 1\], got 1.5",
            ),
            "CLIP": (
                call(
                    "mlsd_lib.evaluation.off_policy:off_policy_table",
                    np.ones(2),
                    np.ones(2),
                    np.ones(2),
                    clip=...,
                ),
                0,
                r"clip must be a positive weight cap, got 0",
            ),
            "REPLICATES": LOCAL,
        },
        RS + "06_serving.ipynb": {
            "SEED": (
                call(RS_CONFIG + ".quick", seed=...),
                -1,
                r"seed must be >= 0, got -1",
            ),
            "WORLD": PRESET_NAME,
            "DAYS": (
                call(RELEASE, NOT_A_FOLDER, days=...),
                1,
                r"days must be an integer >= 2 \(got 1\)",
            ),
            "PAGE_SIZE": (
                call(
                    "mlsd_lib.recsys.feed_load:feed_bodies", None, 10, 0, page_size=...
                ),
                0,
                r"page_size must be an integer >= 1 \(got 0\)",
            ),
            **CLOSED_LOOP,
            "FRESHNESS_USERS": LOCAL + " (a slice of the notebook's users)",
            **paced_traffic(FEED_TRAFFIC, "DRILL_CLIENTS", "DRILL_PACE_S"),
        },
        RS + "07_feedback_loop.ipynb": {
            "SEED": (
                call("mlsd_lib.recsys.feedback_loop:LoopConfig", seed=...),
                -1,
                r"seed must be an integer >= 0, got -1",
            ),
            "N_USERS": RS_USERS,
            "N_ITEMS": RS_ITEMS,
            "WEEKS": (
                call("mlsd_lib.recsys.feedback_loop:LoopConfig", weeks=...),
                0,
                r"weeks must be >= 1",
            ),
            "LAUNCHES": (
                call("mlsd_lib.recsys.feedback_loop:weekly_launches", 7, 5, ...),
                0,
                r"n_items and days_per_week >= 1, got 5, 0",
            ),
            "WINDOW_DAYS": (
                call("mlsd_lib.recsys.feedback_loop:LoopConfig", window_days=...),
                0,
                r"window_days must be >= 1 or None, got 0",
            ),
            "EPOCHS": (
                call("mlsd_lib.recsys.feedback_loop:LoopConfig", epochs=...),
                0,
                r"epochs must be >= 1, got 0",
            ),
            "EXPLORE_SLOTS": (
                call("mlsd_lib.reranking.exploration:ExplorationConfig", n_slots=...),
                -1,
                r"n_slots must be .*>= 0",
            ),
            "EXPLORE_AT": (
                call("mlsd_lib.reranking.exploration:ExplorationConfig", positions=...),
                (-1,),
                r"positions \(-1,\) must be >= 0",
            ),
        },
        RS + "08_monitoring_and_retraining.ipynb": {
            "SEED": (
                call(RS_CONFIG + ".quick", seed=...),
                -1,
                r"seed must be >= 0, got -1",
            ),
            "WORLD": PRESET_NAME,
            "TRAIN_DAYS": (
                call(RELEASE, NOT_A_FOLDER, days=...),
                0,
                r"days must be an integer >= 2 \(got 0\)",
            ),
            "LAUNCH_DAY": (
                call(
                    "mlsd_lib.worlds.recsys_events:CatalogueLaunch", day=..., n_items=10
                ),
                -1,
                r"day must be an integer >= 0 \(got -1\)",
            ),
            "N_LAUNCH": (
                call(
                    "mlsd_lib.worlds.recsys_events:CatalogueLaunch", day=10, n_items=...
                ),
                0,
                r"needs n_items >= 1, got -?\d",
            ),
            "TREND_GENRE": (
                call(
                    "mlsd_lib.worlds.recsys_events:CatalogueLaunch",
                    day=10,
                    n_items=10,
                    genre=...,
                ),
                -1,
                r"genre must be an integer >= 0 \(got -1\)",
            ),
            "TREND_BOOST": (
                call("mlsd_lib.worlds.recsys_events:Trend", 10, 20, ..., genre=5),
                float("nan"),
                r"boost must be a finite number",
            ),
            "TREND_DAYS": (
                lambda days: _get("mlsd_lib.worlds.recsys_events:Trend")(
                    10, 10 + days, 2.0, genre=5
                ),
                0,
                r"Trend must end after it starts, got start_day=10, end_day=10",
            ),
            "MIN_INTERVAL_DAYS": (
                call(
                    "mlsd_lib.monitoring.retraining:RetrainingTrigger",
                    min_interval_days=...,
                ),
                -3,
                r"min_interval_days must be >= 0, got -3",
            ),
            "AFTER_DAYS": LOCAL + " (a day range the notebook measures)",
            "LOAD_USERS": (
                call("mlsd_lib.recsys.feed_load:feed_bodies", None, ..., 0),
                0,
                r"n must be an integer >= 1 \(got 0\)",
            ),
            "LOAD_CLIENTS": (
                call(FEED_TRAFFIC, LOOPBACK, {}, [{}], clients=...),
                0,
                r"clients must be an integer >= 1 \(got 0\)",
            ),
            "STREAM": (
                call(RELEASE, NOT_A_FOLDER, stream=...),
                "",
                r"stream must be a non-empty key name",
            ),
            "HISTORY": (
                call(RELEASE, NOT_A_FOLDER, history_name=...),
                "",
                r"history name '' must be non-empty",
            ),
        },
        RS + "09_interview_followups.ipynb": {
            "SEED": (call(RS_CONFIG, seed=...), -1, r"seed must be >= 0, got -1"),
            "N_USERS": RS_USERS,
            "N_ITEMS": RS_ITEMS,
            "TRAIN_DAYS": SPLIT_DAYS,
            "N_LAUNCHED": (
                call(
                    "mlsd_lib.worlds.recsys_events:CatalogueLaunch", day=10, n_items=...
                ),
                -5,
                r"needs n_items >= 1, got -?\d",
            ),
            "EPOCHS": TOWER_EPOCHS,
            "RANKER_DAYS": RANKER_DAYS,
            "RANKER_EPOCHS": RANKER_EPOCHS,
            "K": (
                call("mlsd_lib.recsys.evaluation:held_out", None, ...),
                0,
                r"max_k must be an integer >= 1 \(got 0\)",
            ),
            "DEPTH": (
                call(
                    "mlsd_lib.recsys.evaluation:rank_catalogue",
                    None,
                    10,
                    None,
                    None,
                    None,
                    ...,
                ),
                0,
                r"k must be an integer >= 1 \(got 0\)",
            ),
            "LAMBDAS": (
                call(
                    "mlsd_lib.recsys.diversity_sweep:diversity_sweep",
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    ...,
                ),
                (1.0, 1.5),
                r"lambdas must be a fraction in \[0, 1\] \(got 1.5\)",
            ),
            "DIVERSITY_USERS": LOCAL + " (a slice of the notebook's users)",
            "INDEX_ITEMS": (
                call(EMB, ..., 10, 8),
                0,
                r"n must be an integer >= 1 \(got 0\)",
            ),
            "N_QUERIES": (
                call(EMB, 10, ...),
                0,
                r"n_queries must be an integer >= 1 \(got 0\)",
            ),
            "D": (call(EMB, 10, 10, ...), 0, r"d must be an integer >= 1 \(got 0\)"),
            "REFINE": (
                call(SPEC, "ivfpq", refine=...),
                0,
                r"refine=0 is not allowed: pass a positive integer",
            ),
            "NPROBE": (
                call(SPEC, "ivfpq", nprobe=...),
                0,
                r"nprobe=0 is not allowed: pass a positive integer",
            ),
            "NPROBES": (
                lambda probes: [
                    ivf_index().set_search_params(nprobe=p) for p in probes
                ],
                (1, 0),
                r"nprobe=0 is not allowed",
            ),
            "N_SHARDS": SHARDS,
            "PEAK_QPS": (_plan(peak_qps=...), 0, r"peak_qps must be .*> 0"),
            "ANN_BUDGET_MS": (
                _plan(latency_budget_ms=...),
                0,
                r"latency_budget_ms must be .*> 0",
            ),
            "MACHINE_RAM_GB": (
                lambda gb: _plan(ram_per_shard_bytes=...)(gb * 0.5 * 1e9),
                0,
                RAM_BUDGET,
            ),
            "INDEX_RAM_SHARE": (
                lambda share: _plan(ram_per_shard_bytes=...)(256 * share * 1e9),
                -0.5,
                RAM_BUDGET,
            ),
        },
    }
)

VS = "casestudies/visual_search/"
IMG_CONFIG = "mlsd_lib.worlds.images_config:ImageWorldConfig"
TRAINING = "mlsd_lib.models.embedder_training:EmbedderTrainingConfig"
VIS_ASSUME = "mlsd_lib.visual.scale:VisualAssumptions"
EMBEDDER = "mlsd_lib.models.image_embedder:ImageEmbedder"
MARKET = "mlsd_lib.worlds.images_market:MarketConfig"
TIMELINE = "mlsd_lib.visual.shift_timeline:ShiftTimeline"
SEARCH_TRAFFIC = "mlsd_lib.visual.search_traffic:SearchTraffic"
QUALITY = "mlsd_lib.visual.retrieval_quality:list_quality"
IMG_SEED = r"ImageWorldConfig.seed must be an integer >= 0, got -1"
WORLD_OBJECT = (call(IMG_CONFIG + ".small", seed=...), -1, IMG_SEED)
STEPS = (
    call(TRAINING, steps=...),
    0,
    r"steps, k and dim must be >= 1 and p >= 2, got steps=0",
)
WIDTHS = (
    call(TRAINING, widths=...),
    (16, 0),
    r"widths must be an integer >= 1 \(got 0\)",
)
EXAM_SEED = (
    call("mlsd_lib.visual.offline_report:held_out_queries", None, seed=...),
    -1,
    SEED_MSG,
)
VIS_PRESET = (
    call("mlsd_lib.visual.recipes:visual_recipe", ...),
    "huge",
    r"unknown recipe scale 'huge': choose one of tiny, quick, small",
)
DEDUP_PRECISION = (
    call(
        "mlsd_lib.visual.offline_report:dedup_study",
        None,
        None,
        None,
        None,
        target_precision=...,
    ),
    1.5,
    r"target_precision must be a fraction in \(0, 1\] \(got 1.5\)",
)
IVF_NPROBES = (
    lambda probes: [ivf_index().set_search_params(nprobe=p) for p in probes],
    (1, 0),
    r"nprobe=0 is not allowed",
)


def _quality(**kwargs: Any) -> Callable[[Any], Any]:
    return call(QUALITY, np.zeros((2, 3), np.int64), np.zeros(2, np.int64), **kwargs)


TABLE.update(
    {
        VS + "01_requirements_and_scale.ipynb": {
            "SEED": (call(EMBEDDER, seed=...), -1, SEED_MSG),
            "QUERIES_PER_DAY": (
                call(VIS_ASSUME, queries_per_day=...),
                0,
                r"queries_per_day must be .*> 0",
            ),
            "PRODUCTS": (
                call(VIS_ASSUME, products=...),
                -1,
                r"VisualAssumptions.products must be a finite number >= 0, got -1",
            ),
            "EMBEDDING_DIM": (
                call(VIS_ASSUME, embedding_dim=...),
                0,
                r"VisualAssumptions.embedding_dim must be > 0, got 0",
            ),
            "MACHINE_RAM": LOCAL + " (a line on the notebook's plot)",
            "BATCH": (
                call(
                    "mlsd_lib.models.compute_cost:measure_throughput",
                    None,
                    (3, 8, 8),
                    batch_size=...,
                ),
                0,
                r"batch_size must be .*>= 1",
            ),
            "INDEX_VECTORS": LOCAL + " (the size of the notebook's own random draw)",
            "NLIST": (
                call(SPEC, "ivfpq", nlist=...),
                0,
                r"nlist=0 is not allowed: pass a positive integer",
            ),
            "NPROBES": IVF_NPROBES,
        },
        VS + "02_framing_and_baselines.ipynb": {
            "SEED": WORLD_OBJECT,
            "KS": (_quality(ks=...), (1, 0), r"ks must be an integer >= 1 \(got 0\)"),
            "NDCG_K": (
                _quality(ndcg_k=...),
                0,
                r"ndcg_k must be an integer >= 1 \(got 0\)",
            ),
            "PRODUCTS": LOCAL + " (arithmetic in the notebook's printout)",
            "EMBEDDING_DIM": LOCAL + " (arithmetic in the notebook's printout)",
            "SHOW": LOCAL + " (the size of the notebook's own random draw)",
            "GAP_POINTS": LOCAL + " (np.linspace's count in the notebook)",
            "GAP_PRODUCTS": LOCAL + " (the size of the notebook's own random draw)",
        },
        VS + "03_data_and_features.ipynb": {
            "SEED": WORLD_OBJECT,
            "PRESET": (
                "a preset's name, looked up by the notebook with "
                "getattr(ImageWorldConfig, ...): an unknown name fails there"
            ),
            "QUERIES_PER_DAY": (
                call(MARKET, queries_per_day=...),
                0,
                r"MarketConfig.queries_per_day must be in \[1, 7000\], got 0",
            ),
            "RESULTS": (
                lambda k: market().legacy_results(market().queries(0), k),
                0,
                r"k=0 must be in \[1, \d+\] \(the catalogue\)",
            ),
            "FRESHNESS_EVENTS": LOCAL + " (a slice of the notebook's product ids)",
            "P": (
                call("mlsd_lib.models.pk_sampler:PKSampler", np.arange(10), p=..., k=2),
                1,
                r"p must be >= 2 .* got p=1",
            ),
            "K": (
                call("mlsd_lib.models.pk_sampler:PKSampler", np.arange(10), p=2, k=...),
                0,
                r"k >= 1, got p=2, k=0",
            ),
        },
        VS + "04_models.ipynb": {
            "SEED": (call(EMBEDDER, seed=...), -1, SEED_MSG),
            "WORLD": WORLD_OBJECT,
            "LOSSES": (
                lambda losses: _get("mlsd_lib.models.loss_comparison:compare_losses")(
                    None, losses, _get(TRAINING)()
                ),
                ("multi_similarity", "triplet_of_doom"),
                r"unknown loss 'triplet_of_doom': known losses are",
            ),
            "STEPS": STEPS,
            "PROXY_LR_SCALE": (
                call(TRAINING, proxy_lr_scale=...),
                0,
                r"proxy_lr_scale must be .*> 0",
            ),
            "P": (call(TRAINING, p=...), 1, r"p >= 2, got steps=300, p=1"),
            "K": (call(TRAINING, k=...), 0, r"steps, k and dim must be >= 1 .* k=0"),
            "WIDTHS": (
                call(EMBEDDER, 128, ...),
                (16, 0),
                r"dim and every width must be >= 1",
            ),
            "DIM": (call(EMBEDDER, ...), 0, r"dim and every width must be >= 1"),
            "EXAM_SEED": EXAM_SEED,
            "N_GRID": LOCAL + " (np.linspace's count in the notebook)",
        },
        VS + "05_evaluation.ipynb": {
            "SEED": (
                call(TRAINING, seed=...),
                -1,
                r"seed must be an integer >= 0 \(got -1\)",
            ),
            "WORLD": WORLD_OBJECT,
            "STEPS": STEPS,
            "WIDTHS": WIDTHS,
            "EXAM_SEED": EXAM_SEED,
            "TARGET_PRECISION": (
                call(
                    "mlsd_lib.visual.offline_report:offline_report",
                    None,
                    {},
                    served="x",
                    target_precision=...,
                ),
                0,
                r"target_precision must be a fraction in \(0, 1\] \(got 0\)",
            ),
            "NPROBES": (
                call(
                    "mlsd_lib.visual.offline_report:offline_report",
                    None,
                    {},
                    served="x",
                    sweep_values=...,
                ),
                (1, 0),
                r"sweep_values must be an integer >= 1 \(got 0\)",
            ),
            "N_GRID": LOCAL + " (np.linspace's count in the notebook)",
        },
        VS + "06_serving.ipynb": {
            "SEED": (
                call("mlsd_lib.visual.recipes:visual_recipe", "quick", seed=...),
                -1,
                IMG_SEED,
            ),
            "SCALE": VIS_PRESET,
            "N_PHOTOS": LOCAL + " (np.resize's length in the notebook)",
            **CLOSED_LOOP,
            "NPROBES": IVF_NPROBES,
            "SWEEP_QUERIES": LOCAL + " (a slice of the notebook's requests)",
            **paced_traffic(SEARCH_TRAFFIC, "DRILL_CLIENTS", "DRILL_PACE_S"),
        },
        VS + "07_online_evaluation.ipynb": {
            "SEED": (
                call(MARKET, seed=...),
                -1,
                r"MarketConfig.seed must be in \[0, 2147483647\], got -1",
            ),
            "WORLD": WORLD_OBJECT,
            "SHORT_STEPS": STEPS,
            "LONG_STEPS": STEPS,
            "WIDTHS": WIDTHS,
            "QUERIES_PER_DAY": (
                call(MARKET, queries_per_day=...),
                -1,
                r"MarketConfig.queries_per_day must be in \[1, 7000\], got -1",
            ),
            "WEEK_1": (
                lambda days: market().queries(days),
                range(-1, 6),
                r"days \[-1\] are outside the market's horizon \[0, 14\)",
            ),
            "WEEK_2": (
                lambda days: market().queries(days),
                range(7, 15),
                r"days \[14\] are outside the market's horizon \[0, 14\)",
            ),
            "MAX_DISTANCE": (
                call("mlsd_lib.visual.click_reranker:ClickReranker", None, ...),
                float("nan"),
                r"max_distance must be a finite number \(got nan\)",
            ),
            "DISTANCES": (
                lambda distances: [
                    _get("mlsd_lib.visual.click_reranker:ClickReranker")(None, d)
                    for d in distances
                ],
                (None, 0.5, float("inf")),
                r"max_distance must be a finite number \(got inf\)",
            ),
        },
        VS + "08_monitoring_and_retraining.ipynb": {
            "SEED": (
                call("mlsd_lib.visual.recipes:visual_recipe", "quick", seed=...),
                -1,
                IMG_SEED,
            ),
            "SCALE": VIS_PRESET,
            "WINDOWS": (
                call(TIMELINE, n_windows=...),
                0,
                r"n_windows must be an integer >= 1 \(got 0\)",
            ),
            "SEARCHES": (
                call(TIMELINE, searches=...),
                0,
                r"searches must be an integer >= 1 \(got 0\)",
            ),
            "REFERENCE": LOCAL + " (a band on the notebook's plot)",
            "INJECT_AT": (
                call(TIMELINE, style_at=...),
                -1,
                r"style_at=-1 is outside the timeline's 20 windows",
            ),
            "STYLE_SHARE": (
                call(TIMELINE, style_share=...),
                1.5,
                r"style_share must be a share in \[0, 1\], got 1.5",
            ),
            "CATEGORY_SHARE": (
                call(TIMELINE, category_share=...),
                -0.3,
                r"category_share must be a share in \[0, 1\], got -0.3",
            ),
            "RETRAIN_STEPS": STEPS,
            **paced_traffic(SEARCH_TRAFFIC, "LOAD_CLIENTS", "LOAD_PACE_S"),
        },
        VS + "09_interview_followups.ipynb": {
            "SEED": (call(TRAINING, seed=...), -1, SEED_MSG),
            "WORLD": (call(IMG_CONFIG + ".quick", seed=...), -1, IMG_SEED),
            "WIDTHS": WIDTHS,
            "DIM": (
                call(TRAINING, dim=...),
                0,
                r"steps, k and dim must be >= 1 .* dim=0",
            ),
            "STEPS": STEPS,
            "BATCHES": (
                lambda batches: [_get(TRAINING)(p=p, k=k) for p, k in batches],
                ((32, 2), (1, 64)),
                r"p >= 2, got steps=300, p=1, k=64",
            ),
            "EXAM_SEED": EXAM_SEED,
            "GAP_TS": (
                call(
                    "mlsd_lib.visual.photo_gap:recall_along_gap",
                    None,
                    None,
                    None,
                    {},
                    ...,
                ),
                (0.0, 1.5),
                r"ts must be a fraction in \[0, 1\] \(got 1.5\)",
            ),
            "N_QUERIES": LOCAL + " (the head of the notebook's query table)",
            "OVERFETCH": (
                lambda ks: [
                    _get("mlsd_lib.visual.search:VisualSearcher").search_batch(
                        None, None, embedder_version="v", k_images=k
                    )
                    for k in ks
                ],
                (0, 50),
                r"k_images=0: pass a positive integer",
            ),
            "PAGE": LOCAL + " (a cut of the notebook's own page arrays)",
            "TARGET_PRECISION": DEDUP_PRECISION,
            "N_SHARDS": (
                call(
                    "mlsd_lib.index.trained_shards:shard_trained_index",
                    None,
                    None,
                    None,
                    ...,
                ),
                0,
                r"n_shards=0: pass a positive integer",
            ),
            "NPROBE": (
                call(SPEC, "ivfpq", nprobe=...),
                0,
                r"nprobe=0 is not allowed: pass a positive integer",
            ),
            "RAM_PER_SHARD_GB": LOCAL + " (arithmetic in the notebook's shard count)",
            "SOP_PRODUCTS": (
                call(
                    "mlsd_lib.datasets.stanford_online_products:write_sop_sample",
                    NOT_A_FOLDER,
                    n_products=...,
                ),
                1,
                r"n_products must be an integer >= 2 .* got 1",
            ),
            "SOP_IMAGES": (
                call(
                    "mlsd_lib.datasets.stanford_online_products:write_sop_sample",
                    NOT_A_FOLDER,
                    images_per_product=...,
                ),
                0,
                r"images_per_product must be a positive integer, got 0",
            ),
            "SOP_STEPS": STEPS,
        },
    }
)

TABLE[NB + "scaling_out.ipynb"] = dict.fromkeys(
    (
        "SEED",
        "NUM_USERS",
        "NUM_CANDIDATES",
        "NUM_LATENCY_SAMPLES",
        "WARMUP",
        "NUM_CPU_SAMPLES",
        "NAMESPACE",
        "NUM_EVENTS",
        "NUM_IMAGES",
        "JOIN_SIZES",
        "WINDOW_SIZES",
    ),
    SCALING,
)
#: Notebooks another piece of work is still writing: their parameters must all
#: have a row, but a row for a parameter they dropped again is not an error.
IN_FLUX = {NB + "scaling_out.ipynb"}

CHECKED = [
    Checked(notebook, name, *entry)
    for notebook, entries in TABLE.items()
    for name, entry in entries.items()
    if not isinstance(entry, str)
]


def parameters_cell(path: Path) -> str:
    """The source of the notebook's parameters cell: tagged ``parameters`` or
    starting with a ``# Parameters`` comment (the first code cells are searched)."""
    cells = [
        c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"
    ]
    for cell in cells[:3]:
        source = "".join(cell["source"])
        tags = cell.get("metadata", {}).get("tags", [])
        if "parameters" in tags or source.lstrip().lower().startswith("# parameters"):
            return source
    raise AssertionError(f"{path.relative_to(ROOT)} has no parameters cell")


def assigned_names(source: str) -> list[str]:
    """Every name a top-level assignment binds (``A, B = 1, 2`` binds both)."""
    names = []
    for node in ast.parse(source).body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        for target in targets:
            names += [n.id for n in ast.walk(target) if isinstance(n, ast.Name)]
    return names


@pytest.mark.parametrize(
    "path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS]
)
def test_every_parameter_of_the_notebook_is_in_the_table(path: Path) -> None:
    names = assigned_names(parameters_cell(path))
    assert names, "a parameters cell assigns at least one parameter"
    entries = TABLE.get(str(path.relative_to(ROOT)), {})
    missing = [n for n in names if n not in entries]
    assert not missing, (
        f"{path.relative_to(ROOT)}: parameters {missing} have no row in "
        "tests/test_parameter_domains.py: add the call that receives each, a "
        "value outside its domain and the message, or the reason none does"
    )
    stale = sorted(set(entries) - set(names))
    assert not stale or str(path.relative_to(ROOT)) in IN_FLUX, (
        f"rows for parameters the notebook no longer has: {stale}"
    )


def test_the_table_covers_only_existing_notebooks() -> None:
    known = {str(p.relative_to(ROOT)) for p in NOTEBOOKS}
    assert set(TABLE) <= known, sorted(set(TABLE) - known)


@pytest.mark.parametrize(
    "row", CHECKED, ids=[f"{Path(r.notebook).stem}-{r.name}" for r in CHECKED]
)
def test_a_value_outside_the_domain_is_refused_naming_the_parameter(
    row: Checked,
) -> None:
    with pytest.raises(MlsdError, match=row.match) as caught:
        row.receive(row.bad)
    assert isinstance(caught.value, ValueError), (
        f"{type(caught.value).__name__} should also be a ValueError"
    )


def test_the_shared_checks_name_the_parameter_and_the_range() -> None:
    from mlsd_lib.validation import (
        ParameterError,
        require_fraction,
        require_int,
        require_number,
        require_seed,
    )

    with pytest.raises(
        ParameterError, match=r"n_users must be an integer >= 1 \(got 0\)"
    ):
        require_int("n_users", 0, at_least=1)
    with pytest.raises(
        ParameterError, match=r"k must be an integer in \[1, 5\] \(got 6\)"
    ):
        require_int("k", 6, at_least=1, at_most=5)
    with pytest.raises(
        ParameterError, match=r"days must be an integer >= 1 \(got True\)"
    ):
        require_int("days", True, at_least=1)
    with pytest.raises(ParameterError, match=r"n must be an integer >= 1 \(got 2.5\)"):
        require_int("n", 2.5, at_least=1)
    with pytest.raises(
        ParameterError, match=r"lr must be a finite number > 0 \(got nan\)"
    ):
        require_number("lr", float("nan"), above=0)
    with pytest.raises(ParameterError, match=r"share must be a fraction in \(0, 1\)"):
        require_fraction("share", 1.0, one=False)
    with pytest.raises(
        ParameterError, match=r"seed must be an integer >= 0 \(got -1\)"
    ):
        require_seed("seed", -1)
    assert require_int("n", 3.0, at_least=1) == 3
    assert isinstance(require_int("n", np.int64(3)), int)
    assert require_number("x", 0, at_least=0) == 0.0
    assert require_fraction("p", 0.0, zero=True) == 0.0
    assert require_fraction("p", 1) == 1.0
