"""The feed under load, read stage by stage: request bodies, answers kept, stage
latencies against the budget, and what the answers say about sources and filters.

Introduced in ``casestudies/recommender/06_serving.ipynb`` (panel B, whose right-hand
column splits the p99 into stage budgets). A load generator
(:mod:`~mlsd_lib.serving.loadgen`) measures what the *client* sees: end-to-end latency,
throughput, failures. Each feed answer also carries what the
*gateway* saw, the milliseconds of each of its five stages, and the impression
log says which source proposed each candidate and how many survived each
filter. This module turns many answers into those figures:

* :func:`feed_bodies`: one request per user, users in a seeded order (a fixed
  body would measure one user's cached history over and over);
* :class:`~mlsd_lib.serving.loadgen.rotating.RecordingSender` (the generic
  load generator's, importable from here): the ``send`` a load loop calls,
  keeping every answer's body, parsed only after the run so no JSON work is
  timed;
* :func:`stage_samples` and :func:`stage_table`: each stage's milliseconds
  over the served answers (degraded ones skipped: they did not run the
  stages), p50 and p99 against the budget;
* :func:`source_mix` and :func:`filter_survival`: where the shown items came
  from, and the traffic-weighted share of candidates each filter let through
  (summed :class:`~mlsd_lib.reranking.filters.FilterReport` of the impression
  log), which is what tells retrieval how much to over-fetch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from mlsd_lib.errors import MlsdError
from mlsd_lib.recsys.feed import FEED_STAGE_BUDGETS_MS
from mlsd_lib.reranking.filters import FilterReport
from mlsd_lib.serving.loadgen.rotating import RecordingSender
from mlsd_lib.validation import (
    require_int,
)

__all__ = [
    "STAGES",
    "FeedLoadError",
    "RecordingSender",
    "feed_bodies",
    "filter_survival",
    "source_mix",
    "stage_samples",
    "stage_table",
]

#: The stages an answer times, in the order they run, and the gateway's total.
STAGES = (*FEED_STAGE_BUDGETS_MS, "total")


class FeedLoadError(MlsdError, ValueError):
    """Inputs a feed load summary cannot use; the message says which and why."""


def feed_bodies(
    profiles: pd.DataFrame, n: int, seed: int, page_size: int = 20
) -> list[dict[str, Any]]:
    """``n`` feed requests of distinct users in a seeded order.

    ``profiles`` has one row per user id (``region``, ``maturity_limit``: what
    the client app sends with the request); ``n`` at most its length.
    """
    require_int("n", n, at_least=1, error=FeedLoadError)
    require_int("page_size", page_size, at_least=1, error=FeedLoadError)
    missing = {"region", "maturity_limit"} - set(profiles.columns)
    if missing:
        raise FeedLoadError(
            f"profiles lack columns {sorted(missing)}: pass one row per user with "
            "region and maturity_limit (QuickRelease.user_profiles() has them)."
        )
    if not 1 <= n <= len(profiles):
        raise FeedLoadError(
            f"n={n} requests of distinct users, but there are {len(profiles)} "
            "users: ask for 1 to that many."
        )
    users = np.random.default_rng(seed).permutation(len(profiles))[:n]
    region = profiles["region"].to_numpy()
    limit = profiles["maturity_limit"].to_numpy()
    return [
        {
            "user_id": int(u),
            "context": {"region": int(region[u]), "maturity_limit": int(limit[u])},
            "page_size": page_size,
        }
        for u in users
    ]


def stage_samples(answers: Iterable[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Milliseconds of each of :data:`STAGES` over the answers that were served
    (degraded answers did not run the stages and are left out)."""
    served = [a["timings"] for a in answers if not a["degraded"]]
    return {
        stage: np.array([t[stage] for t in served], dtype=np.float64)
        for stage in STAGES
    }


def stage_table(
    samples: Mapping[str, Mapping[str, np.ndarray]],
    budgets_ms: Mapping[str, float] = FEED_STAGE_BUDGETS_MS,
) -> pd.DataFrame:
    """One row per stage: its budget, and per load level (the keys of
    ``samples``, e.g. ``"1 client"``) the p50 and p99 in ms and whether the
    p99 is within the budget (NaN budget and check for ``total``)."""
    rows = []
    for stage in STAGES:
        budget = budgets_ms.get(stage, float("nan"))
        row: dict[str, Any] = {"stage": stage, "budget p99 ms": budget}
        for level, by_stage in samples.items():
            values = np.asarray(by_stage[stage])
            if values.size == 0:
                raise FeedLoadError(
                    f"no served answer at {level!r}: every request degraded, so no "
                    "stage ran; look at the answers' degraded_reason."
                )
            p99 = float(np.percentile(values, 99))
            row[f"{level} p50"] = float(np.percentile(values, 50))
            row[f"{level} p99"] = p99
            if stage in budgets_ms:
                row[f"{level} within"] = bool(p99 <= budget)
        rows.append(row)
    return pd.DataFrame(rows).set_index("stage")


def source_mix(answers: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """How many shown items each candidate source contributed, most first."""
    counts: dict[str, int] = {}
    for answer in answers:
        for item in answer["items"]:
            counts[item["source"]] = counts.get(item["source"], 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def filter_survival(lines: Sequence[Mapping[str, Any]]) -> FilterReport:
    """The impression log's filter reports summed over ``lines`` (feed lines
    that were filtered; degraded ones carry none): survival weighted by traffic."""
    total = FilterReport()
    for line in lines:
        report = line.get("filters")
        if line.get("kind") == "feed" and report is not None:
            total = total + FilterReport(
                report["n_candidates"], dict(report["passed"]), report["n_kept"]
            )
    if total.n_candidates == 0:
        raise FeedLoadError(
            "no impression-log line carries a filter report: pass the feed lines "
            "of served (not degraded) requests."
        )
    return total
