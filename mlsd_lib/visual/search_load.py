"""Visual search under load: request bodies, answers kept, stage latencies read back.

Introduced in ``casestudies/visual_search/06_serving.ipynb`` (panel B's p99 column: each
stage measured against its budget). A load generator (:mod:`~mlsd_lib.serving.loadgen`)
measures what the *client* sees; every answer also carries what the *gateway* saw, the
milliseconds of each stage. This module makes the bodies and reads the answers:

* :func:`photo_bodies`: one request per user photo, the photo PNG-encoded
  (lossless, so the gateway decodes exactly the world's pixels) and base64,
  with its box and the shopper's region; :func:`region_bodies`: the same
  queries as precomputed regions;
* :class:`~mlsd_lib.serving.loadgen.rotating.RecordingSender` (the generic
  load generator's, importable from here): the ``send`` a load loop calls,
  keeping every answer's raw body, parsed only after the run so no JSON work
  is timed;
* :func:`stage_samples`, :func:`stage_table` and ``percentiles``
  (:func:`~mlsd_lib.serving.loadgen.results.stage_percentiles`): each
  stage's milliseconds over the answers that ran the stages (degraded ones are
  left out), p50 and p99 against the budget, per load level.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from PIL import Image

from mlsd_lib.errors import MlsdError
from mlsd_lib.serving.loadgen.results import stage_percentiles
from mlsd_lib.serving.loadgen.rotating import RecordingSender

__all__ = [
    "RecordingSender",
    "SearchLoadError",
    "encode_png",
    "percentiles",
    "photo_bodies",
    "region_bodies",
    "stage_samples",
    "stage_table",
]


class SearchLoadError(MlsdError, ValueError):
    """Inputs a load summary cannot use; the message says which and why."""


def encode_png(pixels: np.ndarray) -> bytes:
    """``uint8 (H, W, 3)`` pixels as PNG bytes (lossless)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _regions(regions: ArrayLike, n: int) -> np.ndarray:
    values = np.asarray(regions, dtype=np.int64)
    if values.shape != (n,):
        raise SearchLoadError(
            f"pass one shopper region per query ({n}), got shape {values.shape}."
        )
    return values


def photo_bodies(
    images: np.ndarray,
    boxes: ArrayLike | None,
    regions: ArrayLike,
    n_products: int = 20,
) -> list[dict[str, Any]]:
    """One ``POST /v1/visual/search`` body per photo: ``images`` ``uint8 (n,
    H, W, 3)``, ``boxes`` ``(n, 4)`` (None: whole photos), ``regions`` ``(n,)``."""
    pixels = np.asarray(images)
    if pixels.ndim != 4 or pixels.shape[-1] != 3 or pixels.dtype != np.uint8:
        raise SearchLoadError(
            f"images must be uint8 (n, H, W, 3), got {pixels.dtype} {pixels.shape}."
        )
    n = len(pixels)
    shopper = _regions(regions, n)
    corners = None if boxes is None else np.asarray(boxes, dtype=np.int64)
    if corners is not None and corners.shape != (n, 4):
        raise SearchLoadError(f"boxes must be ({n}, 4), got {corners.shape}.")
    bodies = []
    for i in range(n):
        body: dict[str, Any] = {
            "image": base64.b64encode(encode_png(pixels[i])).decode(),
            "region": int(shopper[i]),
            "n_products": n_products,
        }
        if corners is not None:
            body["box"] = corners[i].tolist()
        bodies.append(body)
    return bodies


def region_bodies(
    region_ids: ArrayLike, regions: ArrayLike, n_products: int = 20
) -> list[dict[str, Any]]:
    """One body per precomputed region: its id and the shopper's region."""
    ids = np.asarray(region_ids, dtype=np.int64)
    shopper = _regions(regions, ids.size)
    return [
        {"region_id": int(r), "region": int(s), "n_products": n_products}
        for r, s in zip(ids.tolist(), shopper.tolist(), strict=True)
    ]


def stage_samples(
    answers: Iterable[Mapping[str, Any]], path: str | None = None
) -> dict[str, np.ndarray]:
    """Milliseconds of each stage over the answers that were served (degraded
    ones skipped) and, with ``path``, came that way (``"image"``,
    ``"region"``); stages in the order of the first answer, then ``total``."""
    served = [
        a["timings"]
        for a in answers
        if not a["degraded"] and (path is None or a["path"] == path)
    ]
    if not served:
        return {}
    names = list(served[0])
    return {
        name: np.array([t.get(name, np.nan) for t in served], dtype=np.float64)
        for name in names
    }


def stage_table(
    samples: Mapping[str, Mapping[str, np.ndarray]],
    budgets_ms: Mapping[str, float],
) -> pd.DataFrame:
    """One row per stage: its budget, and per load level (the keys of
    ``samples``, e.g. ``"1 client"``) p50 and p99 in ms and whether the p99
    is within the budget (no check for ``total`` unless it has one)."""
    if not samples or any(not by_stage for by_stage in samples.values()):
        raise SearchLoadError(
            "a load level has no served answer: every request degraded, so no "
            "stage ran; look at the answers' degraded_reason."
        )
    stages: list[str] = []
    for by_stage in samples.values():
        stages += [s for s in by_stage if s not in stages]
    rows = []
    for stage in stages:
        budget = budgets_ms.get(stage, float("nan"))
        row: dict[str, Any] = {"stage": stage, "budget p99 ms": budget}
        for level, by_stage in samples.items():
            values = np.asarray(by_stage.get(stage, []), dtype=np.float64)
            values = values[np.isfinite(values)]
            p50 = float(np.percentile(values, 50)) if values.size else float("nan")
            p99 = float(np.percentile(values, 99)) if values.size else float("nan")
            row[f"{level} p50"], row[f"{level} p99"] = p50, p99
            if stage in budgets_ms:
                row[f"{level} within"] = bool(values.size and p99 <= budget)
        rows.append(row)
    return pd.DataFrame(rows).set_index("stage")


#: The ``q``-th percentile of each stage (moved to the generic load generator).
percentiles = stage_percentiles
