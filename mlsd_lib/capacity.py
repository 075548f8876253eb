"""Back-of-the-envelope capacity estimates, with the derivation shown.

Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb`` and used by every
case study's "requirements and scale" step. An interviewer wants the chain of reasoning
(users → requests → model inferences → memory, storage, bandwidth), not only the final
number, so :func:`estimate` returns an :class:`Estimate`: rows of (quantity, formula as
text, value), displayable as a pandas DataFrame.

Conventions: a day has 86,400 s; sizes are decimal SI (1 GB = 10⁹ bytes), as
capacity plans usually are; :func:`format_si` prints 1.2M, 3.4 GB/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import pandas as pd

from mlsd_lib.errors import MlsdError

SECONDS_PER_DAY = 86_400
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

    * traffic: ``daily_active_users``, ``requests_per_user_per_day``,
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

    daily_active_users: float
    requests_per_user_per_day: float
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

    def __post_init__(self) -> None:
        positive = ("daily_active_users", "requests_per_user_per_day")
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


def estimate(req: Requirements) -> Estimate:
    """Derive QPS, inferences, memory, storage and bandwidth from ``req``.

    Introduced in ``casestudies/ad_click/01_requirements_and_scale.ipynb``. Rows whose
    inputs are zero (no logging, no catalog) are left out.
    """
    e = Estimate()
    daily = e.add(
        "requests per day",
        "daily_active_users × requests_per_user_per_day",
        req.daily_active_users * req.requests_per_user_per_day,
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
