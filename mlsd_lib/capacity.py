"""Back-of-the-envelope capacity estimates, with the derivation shown.

Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb`` and used by every
case study's "requirements and scale" step. An interviewer wants the chain of reasoning
(users → requests → model inferences → memory, storage, bandwidth), not only the final
number, so :func:`estimate` returns an :class:`Estimate`: rows of (quantity, formula as
text, value), displayable as a pandas DataFrame.

Traffic is given either per user (``daily_active_users`` x
``requests_per_user_per_day``, the usual prompt) or as ``requests_per_day`` when the
prompt counts requests and not users ("100 M visual queries a day").

Four helpers serve every case study's estimate: :func:`replicas_needed` (servers
for a measured throughput, planned below full utilization), :func:`fleet_size`
(the same, said the way the framework chapter says it: replicas at the load,
then a headroom on top), :func:`integer_bytes`
(the narrowest integer id for a count) and :func:`sensitivity` (how much each
derived figure moves when one assumption doubles: the question an interviewer asks
next).

Conventions: a day has 86,400 s; sizes are decimal SI (1 GB = 10⁹ bytes), as
capacity plans usually are; :func:`format_si` prints 1.2M, 3.4 GB/s.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import pandas as pd

from mlsd_lib.errors import MlsdError

SECONDS_PER_DAY = 86_400
#: Share of peak capacity a fleet is planned to run at (room for a failed
#: replica, and queues that stay short; they grow sharply as utilization nears 1).
TARGET_UTILIZATION = 0.6
_PREFIXES = ["", "k", "M", "G", "T", "P", "E"]


class CapacityInputError(MlsdError, ValueError):
    """A requirement is missing or impossible (negative, zero); says which."""


def format_si(value: float, unit: str = "", *, digits: int = 3) -> str:
    """``value`` with an SI prefix and ``digits`` significant digits.

    ``format_si(1_234_567)`` is ``"1.23M"``; ``format_si(3.4e9, "B/s")`` is
    ``"3.4 GB/s"`` (byte and bit units take the prefix); other units follow the
    number: ``format_si(69_444, "QPS")`` is ``"69.4k QPS"``. Trailing zeros are
    dropped.
    """
    if not math.isfinite(value):
        return f"{value} {unit}".strip()
    if value == 0:
        return f"0 {unit}".strip() if unit else "0"
    power = min(max(math.floor(math.log10(abs(value)) / 3), 0), len(_PREFIXES) - 1)
    text = _significant(value / 1000**power, digits)
    # Rounding can carry into the next prefix: 999,999 is "1M", not "1000k".
    if abs(float(text)) >= 1000 and power < len(_PREFIXES) - 1:
        power += 1
        text = _significant(value / 1000**power, digits)
    prefix = _PREFIXES[power]
    if not unit:
        return f"{text}{prefix}"
    if unit.startswith(("B", "bit")):  # byte and bit units take the prefix
        return f"{text} {prefix}{unit}"
    return f"{text}{prefix} {unit}"


def _significant(x: float, digits: int) -> str:
    decimals = max(digits - 1 - math.floor(math.log10(abs(x))), 0) if x else 0
    text = f"{x:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


@dataclass(frozen=True)
class EstimateRow:
    quantity: str
    formula: str
    value: float
    unit: str = ""

    @property
    def pretty(self) -> str:
        return format_si(self.value, self.unit)


@dataclass
class Estimate:
    """An ordered derivation: each row names a quantity, its formula and value."""

    rows: list[EstimateRow] = field(default_factory=list)

    def add(self, quantity: str, formula: str, value: float, unit: str = "") -> float:
        """Append a row (a notebook can extend the derivation) and return value."""
        if quantity in self:
            raise CapacityInputError(f"quantity {quantity!r} is already estimated.")
        self.rows.append(EstimateRow(quantity, formula, float(value), unit))
        return float(value)

    def __contains__(self, quantity: object) -> bool:
        return any(row.quantity == quantity for row in self.rows)

    def __getitem__(self, quantity: str) -> float:
        for row in self.rows:
            if row.quantity == quantity:
                return row.value
        known = [row.quantity for row in self.rows]
        raise KeyError(f"{quantity!r} is not estimated (known: {known})")

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "quantity": [r.quantity for r in self.rows],
                "formula": [r.formula for r in self.rows],
                "value": [r.value for r in self.rows],
                "pretty": [r.pretty for r in self.rows],
            }
        )

    def _repr_html_(self) -> str:
        return self.to_frame().to_html(index=False)


@dataclass(frozen=True)
class Requirements:
    """The numbers a design starts from. Sizes in bytes; zero turns a row off.

    * traffic: ``daily_active_users`` and ``requests_per_user_per_day``, or
      ``requests_per_day`` alone (then ``requests_per_user_per_day`` stays
      unset; ``daily_active_users`` may still be given for the feature store);
      ``peak_to_average`` (peak QPS / average QPS), ``candidates_per_request``
      (items scored per request: ads, videos, images);
    * online features: ``feature_entities`` (users + items kept online; defaults
      to the daily active users), ``bytes_per_entity``, ``replication``;
      ``bytes_per_feature_vector`` fetched per scored candidate;
    * logging: ``events_per_request`` (impressions logged), ``bytes_per_event``,
      ``retention_days``;
    * network: ``bytes_per_request`` and ``bytes_per_response`` at the edge;
    * catalog: ``catalog_items``, ``bytes_per_item`` (an image, a video
      thumbnail), ``embedding_dim`` and ``bytes_per_embedding_value`` for an
      embedding index.
    """

    daily_active_users: float | None = None
    requests_per_user_per_day: float | None = None
    peak_to_average: float = 3.0
    candidates_per_request: float = 1.0
    feature_entities: float | None = None
    bytes_per_entity: float = 0.0
    replication: float = 1.0
    bytes_per_feature_vector: float = 0.0
    events_per_request: float = 1.0
    bytes_per_event: float = 0.0
    retention_days: float = 0.0
    bytes_per_request: float = 0.0
    bytes_per_response: float = 0.0
    catalog_items: float = 0.0
    bytes_per_item: float = 0.0
    embedding_dim: int = 0
    bytes_per_embedding_value: float = 4.0
    requests_per_day: float | None = None

    def __post_init__(self) -> None:
        positive = (
            "daily_active_users",
            "requests_per_user_per_day",
            "requests_per_day",
        )
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise CapacityInputError(
                    f"{f.name} must be a finite number, got {value!r}."
                )
            if f.name in positive and value <= 0:
                raise CapacityInputError(f"{f.name} must be > 0, got {value}.")
            if value < 0:
                raise CapacityInputError(f"{f.name} must be >= 0, got {value}.")
        if self.peak_to_average < 1:
            raise CapacityInputError(
                f"peak_to_average must be >= 1 (peak is at least the average), got "
                f"{self.peak_to_average}."
            )
        if self.candidates_per_request < 1:
            raise CapacityInputError(
                f"candidates_per_request must be >= 1, got "
                f"{self.candidates_per_request}."
            )
        if self.replication < 1:
            raise CapacityInputError(
                f"replication must be >= 1, got {self.replication}."
            )
        self._check_traffic()

    def _check_traffic(self) -> None:
        if self.requests_per_day is None:
            missing = [
                name
                for name in ("daily_active_users", "requests_per_user_per_day")
                if getattr(self, name) is None
            ]
            if missing:
                raise CapacityInputError(
                    f"traffic is missing ({', '.join(missing)}): give "
                    "daily_active_users and requests_per_user_per_day, or "
                    "requests_per_day."
                )
        elif self.requests_per_user_per_day is not None:
            raise CapacityInputError(
                "give requests_per_user_per_day or requests_per_day, not both: "
                "requests per day would be defined twice."
            )
        if (
            self.bytes_per_entity
            and self.feature_entities is None
            and self.daily_active_users is None
        ):
            raise CapacityInputError(
                "bytes_per_entity needs feature_entities (the users or items kept "
                "online): it defaults to daily_active_users, which is not given."
            )

    @property
    def daily_requests(self) -> float:
        """Requests per day, however the traffic was given."""
        if self.requests_per_day is not None:
            return self.requests_per_day
        assert self.daily_active_users is not None  # checked in __post_init__
        assert self.requests_per_user_per_day is not None
        return self.daily_active_users * self.requests_per_user_per_day


def estimate(req: Requirements) -> Estimate:
    """Derive QPS, inferences, memory, storage and bandwidth from ``req``.

    Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb``. Rows whose
    inputs are zero (no logging, no catalog) are left out.
    """
    e = Estimate()
    daily = e.add(
        "requests per day",
        "requests_per_day (given)"
        if req.requests_per_day is not None
        else "daily_active_users × requests_per_user_per_day",
        req.daily_requests,
    )
    avg = e.add(
        "average QPS", "requests per day / 86,400 s", daily / SECONDS_PER_DAY, "QPS"
    )
    peak = e.add(
        "peak QPS", "average QPS × peak_to_average", avg * req.peak_to_average, "QPS"
    )
    e.add(
        "peak inferences per second",
        "peak QPS × candidates_per_request",
        peak * req.candidates_per_request,
        "/s",
    )
    if req.bytes_per_entity:
        entities = (
            req.daily_active_users
            if req.feature_entities is None
            else req.feature_entities
        )
        e.add(
            "online feature store memory",
            "feature_entities × bytes_per_entity × replication",
            entities * req.bytes_per_entity * req.replication,
            "B",
        )
    if req.bytes_per_feature_vector:
        e.add(
            "feature fetch bandwidth at peak",
            "peak QPS × candidates_per_request × bytes_per_feature_vector",
            peak * req.candidates_per_request * req.bytes_per_feature_vector,
            "B/s",
        )
    if req.bytes_per_event:
        per_day = e.add(
            "event log per day",
            "requests per day × events_per_request × bytes_per_event",
            daily * req.events_per_request * req.bytes_per_event,
            "B",
        )
        if req.retention_days:
            e.add(
                "event log for retention",
                "event log per day × retention_days",
                per_day * req.retention_days,
                "B",
            )
    if req.bytes_per_request or req.bytes_per_response:
        e.add(
            "edge bandwidth at peak",
            "peak QPS × (bytes_per_request + bytes_per_response)",
            peak * (req.bytes_per_request + req.bytes_per_response),
            "B/s",
        )
    if req.catalog_items and req.bytes_per_item:
        e.add(
            "catalog storage",
            "catalog_items × bytes_per_item",
            req.catalog_items * req.bytes_per_item,
            "B",
        )
    if req.catalog_items and req.embedding_dim:
        e.add(
            "embedding index memory",
            "catalog_items × embedding_dim × bytes_per_embedding_value",
            req.catalog_items * req.embedding_dim * req.bytes_per_embedding_value,
            "B",
        )
    return e


def _check_load_and_rate(
    load_per_s: float, rate_name: str, rate: float, why_positive: str
) -> None:
    """The inputs every replica count shares: a finite load >= 0, a finite rate > 0."""
    for name, value in (("load_per_s", load_per_s), (rate_name, rate)):
        if not math.isfinite(value):
            raise CapacityInputError(f"{name} must be finite, got {value}.")
    if load_per_s < 0:
        raise CapacityInputError(f"load_per_s must be >= 0, got {load_per_s}.")
    if rate <= 0:
        raise CapacityInputError(
            f"{rate_name} must be > 0 ({why_positive}), got {rate}."
        )


def replicas_needed(
    load_per_s: float,
    capacity_per_replica_s: float,
    target_utilization: float = TARGET_UTILIZATION,
) -> int:
    """Replicas (servers, cores, GPUs) to carry ``load_per_s`` when each one
    sustains ``capacity_per_replica_s`` and is planned at ``target_utilization``.

    ``ceil(load / (capacity x utilization))``, at least 1: planning at 60% of a
    replica's *measured* throughput leaves room for a failed replica and for
    queueing, which grows sharply as utilization nears 1.
    """
    _check_load_and_rate(
        load_per_s,
        "capacity_per_replica_s",
        capacity_per_replica_s,
        "a replica that serves nothing carries no load",
    )
    if not 0.0 < target_utilization <= 1.0:
        raise CapacityInputError(
            f"target_utilization must be in (0, 1], got {target_utilization}."
        )
    return max(1, math.ceil(load_per_s / (capacity_per_replica_s * target_utilization)))


@dataclass(frozen=True)
class FleetSize:
    """Replicas for a load: ``at_load`` just carries it, ``planned`` adds headroom."""

    load_per_s: float
    per_replica_s: float
    headroom: float
    at_load: int
    planned: int

    def formula(self) -> str:
        """The arithmetic, with this fleet's numbers, for a notebook to print."""
        return (
            f"ceil({format_si(self.load_per_s)}/s / "
            f"{format_si(self.per_replica_s)}/s per replica) = {self.at_load:,}; "
            f"x {1 + self.headroom:g} headroom = {self.planned:,} replicas"
        )


def fleet_size(
    load_per_s: float, per_replica_s: float, headroom: float = 0.3
) -> FleetSize:
    """Replicas to carry ``load_per_s`` when one replica sustains
    ``per_replica_s`` (measured within the latency budget), plus ``headroom``.

    ``at_load = ceil(load / per_replica)`` (at least 1) and ``planned =
    ceil(at_load x (1 + headroom))``: the framework chapter's "926 replicas at
    peak, about 1,200 with 30% headroom for failures and deploys". Headroom 0.3
    is planning at 1/1.3 = 77% of measured capacity; :func:`replicas_needed`
    states the same idea as a target utilization.
    """
    _check_load_and_rate(
        load_per_s,
        "per_replica_s",
        per_replica_s,
        "measure what one replica sustains within its latency budget",
    )
    if not 0 <= headroom <= 10 or not math.isfinite(headroom):
        raise CapacityInputError(
            f"headroom must be a fraction in [0, 10] (0.3 = 30% spare), got {headroom}."
        )
    # Rounded before ceil so that 1,000 x 1.3 is 1,300 and not 1,301.
    at_load = max(1, math.ceil(round(load_per_s / per_replica_s, 9)))
    planned = max(at_load, math.ceil(round(at_load * (1 + headroom), 9)))
    return FleetSize(load_per_s, per_replica_s, headroom, at_load, planned)


def integer_bytes(count: float) -> int:
    """Bytes of the narrowest signed integer (1, 2, 4 or 8) that numbers
    ``count`` ids ``0 .. count - 1``.

    An image-to-product map over 50 M products needs int32 (``5 x 10^7 <
    2^31``), half of int64: at 200 M images that is 0.8 GB instead of 1.6 GB.
    """
    if not math.isfinite(count) or count < 1:
        raise CapacityInputError(f"count must be a finite number >= 1, got {count}.")
    for size in (1, 2, 4, 8):
        if count <= 2 ** (8 * size - 1):
            return size
    raise CapacityInputError(
        f"{count:.3g} ids do not fit a signed 64-bit integer; use two ids."
    )


_Assumptions = TypeVar("_Assumptions")


def sensitivity(
    derive: Callable[[_Assumptions], Estimate],
    base: _Assumptions,
    fields_: Sequence[str],
    quantities: Sequence[str],
    factor: float = 2.0,
) -> pd.DataFrame:
    """How each of ``quantities`` moves when one assumption is scaled by ``factor``.

    ``base`` is a dataclass of assumptions (:class:`Requirements`, or a case
    study's own) and ``derive`` turns one into an :class:`Estimate`. For each
    name in ``fields_`` the field is multiplied by ``factor`` (integer fields
    are rounded), the estimate derived again, and each quantity divided by its
    base value: 2 means "doubles with it", 1 "does not depend on it", 0.5
    "halves". Rows are ``fields_``, columns ``quantities``; a quantity whose
    base value is 0 gives NaN. This is the interviewer's "what if that number
    is off by two?", answered for every figure at once.
    """
    if not dataclasses.is_dataclass(base) or isinstance(base, type):
        raise CapacityInputError(
            f"base must be a dataclass instance of assumptions, got "
            f"{type(base).__name__}."
        )
    if not math.isfinite(factor) or factor <= 0 or factor == 1:
        raise CapacityInputError(
            f"factor must be a finite number > 0 other than 1, got {factor}."
        )
    known = {f.name for f in fields(base)}
    unknown = [name for name in fields_ if name not in known]
    if unknown:
        raise CapacityInputError(
            f"unknown assumptions {unknown}: choose from {sorted(known)}."
        )
    reference = derive(base)
    before = [reference[q] for q in quantities]
    table: dict[str, list[float]] = {q: [] for q in quantities}
    for name in fields_:
        value: Any = getattr(base, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CapacityInputError(
                f"{name}={value!r} is not a number and cannot be scaled."
            )
        scaled = round(value * factor) if isinstance(value, int) else value * factor
        after = derive(dataclasses.replace(base, **{name: scaled}))  # type: ignore[type-var]
        for q, b in zip(quantities, before, strict=True):
            table[q].append(after[q] / b if b else math.nan)
    return pd.DataFrame(table, index=pd.Index(list(fields_), name="assumption"))
