"""Loader for the Criteo display-advertising format (Kaggle 2014 and Terabyte).

Introduced in ``casestudies/ad_click/02_data_and_features.ipynb``. Each line is
``label \\t I1 … I13 \\t C1 … C26``: a 0/1 click label, 13 integer count features
and 26 categorical features given as 8-hex-digit hashes; any feature may be empty
(missing). :func:`read_criteo` turns a file (optionally gzipped) into
:class:`~mlsd_lib.datasets.ctr.CTRData`, streaming in chunks so a large file is
never held in memory as text.

Transforms, as in the DLRM (Naumov et al. 2019) and DCN (Wang et al. 2017)
reference pipelines:

* dense: ``log(1 + max(x, 0))``, missing → 0 (some integer columns hold small
  negative values, which are clipped to 0 first). With ``missing_indicators=True``
  13 more 0/1 columns ``I1_missing`` … say which values were absent, so a model
  can tell "missing" from "zero".
* categorical: the hex string is parsed to an integer and hashed into field ``j``'s
  buckets with ``hash_ids(values, num_buckets - 1, salt=j) + 1``. Id 0 is reserved
  for "missing" in every field, so cardinality is ``num_buckets`` per field.

The real data cannot be downloaded in this book's sandbox, so
:func:`write_criteo_sample` writes a small synthetic file in the exact format.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import IO

import numpy as np

from mlsd_lib.datasets.ctr import CTRData, CTRDataError, hash_ids
from mlsd_lib.errors import MlsdError

NUM_DENSE = 13
NUM_CATEGORICAL = 26
NUM_COLUMNS = 1 + NUM_DENSE + NUM_CATEGORICAL
DENSE_NAMES = tuple(f"I{i}" for i in range(1, NUM_DENSE + 1))
CATEGORICAL_NAMES = tuple(f"C{i}" for i in range(1, NUM_CATEGORICAL + 1))
MISSING_ID = 0


class CriteoFormatError(MlsdError, ValueError):
    """A line of the file is not in the Criteo format; names the line and why."""


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="ascii", newline="")
    return open(path, mode, encoding="ascii", newline="")


def _chunks(handle: IO[str], chunk_size: int) -> Iterator[list[str]]:
    while chunk := list(islice(handle, chunk_size)):
        yield chunk


def _is_hex_id(text: str) -> bool:
    try:
        _hex_id(text)
    except ValueError:
        return False
    return True


def _hex_id(text: str) -> int:
    """The id of a categorical value; -1 when missing (empty)."""
    if text == "":
        return -1
    if text.startswith(("0x", "0X", "-", "+", " ")) or len(text) > 15:
        raise ValueError(text)
    return int(text, 16)


def _parse_chunk(
    lines: list[str], first_line: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, integer values, missing mask, categorical ints (-1 = missing)."""
    rows = []
    for offset, line in enumerate(lines):
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != NUM_COLUMNS:
            raise CriteoFormatError(
                f"line {first_line + offset}: {len(fields)} tab-separated columns, "
                f"expected {NUM_COLUMNS} (label, I1-I13, C1-C26)."
            )
        rows.append(fields)
    table = np.array(rows, dtype=str).reshape(len(rows), NUM_COLUMNS)
    label_text = table[:, 0]
    bad = np.flatnonzero((label_text != "0") & (label_text != "1"))
    if len(bad):
        raise CriteoFormatError(
            f"line {first_line + bad[0]}: label {label_text[bad[0]]!r} is not 0 or 1."
        )
    labels = (label_text == "1").astype(np.float32)
    int_text = table[:, 1 : 1 + NUM_DENSE]
    missing = int_text == ""
    try:
        ints = np.where(missing, "0", int_text).astype(np.int64)
    except ValueError:
        for r, c in zip(*np.nonzero(~missing), strict=True):
            try:
                int(int_text[r, c])
            except ValueError:
                raise CriteoFormatError(
                    f"line {first_line + r}: {DENSE_NAMES[c]} = "
                    f"{int_text[r, c]!r} is not an integer."
                ) from None
        raise
    cats = np.empty((len(rows), NUM_CATEGORICAL), dtype=np.int64)
    for c in range(NUM_CATEGORICAL):
        column = table[:, 1 + NUM_DENSE + c]
        try:
            cats[:, c] = [_hex_id(text) for text in column]
        except ValueError:
            bad_row = next(r for r, t in enumerate(column) if not _is_hex_id(t))
            raise CriteoFormatError(
                f"line {first_line + bad_row}: {CATEGORICAL_NAMES[c]} = "
                f"{column[bad_row]!r} is not a hexadecimal id."
            ) from None
    return labels, ints, missing, cats


def read_criteo(
    path: str | Path,
    *,
    num_buckets: int = 2**20,
    max_rows: int | None = None,
    chunk_size: int = 100_000,
    missing_indicators: bool = False,
) -> CTRData:
    """Read a Criteo TSV (``.gz`` too) into :class:`~mlsd_lib.datasets.ctr.CTRData`.

    Introduced in ``casestudies/ad_click``. ``num_buckets`` is the per-field
    embedding-table size, id 0 included (reserved for missing). ``max_rows``
    stops early (the first rows, in file order). Raises
    :class:`CriteoFormatError` naming the 1-based line of a malformed row.
    """
    if num_buckets < 2:
        raise CTRDataError(
            f"num_buckets must be >= 2 (id 0 is reserved for missing), "
            f"got {num_buckets}."
        )
    if chunk_size < 1:
        raise CTRDataError(f"chunk_size must be >= 1, got {chunk_size}.")
    path = Path(path)
    labels, dense, categorical = [], [], []
    line_number = 1
    with _open_text(path, "r") as handle:
        source = handle if max_rows is None else islice(handle, max_rows)
        for lines in _chunks(source, chunk_size):  # type: ignore[arg-type]
            y, ints, missing, cats = _parse_chunk(lines, line_number)
            line_number += len(lines)
            features = np.log1p(np.maximum(ints, 0).astype(np.float64))
            if missing_indicators:
                features = np.hstack([features, missing.astype(np.float64)])
            ids = np.full(cats.shape, MISSING_ID, dtype=np.int64)
            for j in range(NUM_CATEGORICAL):
                present = cats[:, j] >= 0
                ids[present, j] = (
                    hash_ids(cats[present, j], num_buckets - 1, salt=j) + 1
                )
            labels.append(y)
            dense.append(features.astype(np.float32))
            categorical.append(ids)
    dense_names = DENSE_NAMES + (
        tuple(f"{n}_missing" for n in DENSE_NAMES) if missing_indicators else ()
    )
    if not labels:
        labels = [np.empty(0, np.float32)]
        dense.append(np.empty((0, len(dense_names)), np.float32))
        categorical.append(np.empty((0, NUM_CATEGORICAL), np.int64))
    return CTRData(
        dense=np.concatenate(dense),
        categorical=np.concatenate(categorical),
        labels=np.concatenate(labels),
        dense_names=dense_names,
        categorical_names=CATEGORICAL_NAMES,
        cardinalities=(num_buckets,) * NUM_CATEGORICAL,
        meta={"source": "criteo", "path": str(path), "missing_id": MISSING_ID},
    )


def write_criteo_sample(
    path: str | Path, n: int, seed: int = 0, *, missing_rate: float = 0.1
) -> Path:
    """Write ``n`` synthetic rows in the exact Criteo format (gzipped for ``.gz``).

    Introduced in ``casestudies/ad_click``, to show :func:`read_criteo` working
    where the real data cannot be downloaded. Integers are Poisson counts (some
    negative in ``I2``, as in the real data), categoricals are Zipf-distributed
    8-hex-digit ids, about ``missing_rate`` of values are empty, and the label
    depends on ``I1`` and ``C1`` so a model has something to learn.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    rng = np.random.default_rng(seed)
    path = Path(path)
    ints = rng.poisson(rng.uniform(0.5, 50, NUM_DENSE), size=(n, NUM_DENSE))
    ints[:, 1] -= rng.integers(0, 3, n)  # I2 has small negative values
    vocab = rng.integers(0, 2**32, size=(NUM_CATEGORICAL, 1000))
    ranks = np.minimum(rng.zipf(1.3, size=(n, NUM_CATEGORICAL)) - 1, 999)
    cats = vocab[np.arange(NUM_CATEGORICAL), ranks]
    effect = rng.normal(0, 1, 1000)
    logit = -1.5 + 0.4 * (np.log1p(ints[:, 0]) - 2) + effect[ranks[:, 0]]
    labels = rng.random(n) < 1 / (1 + np.exp(-logit))
    int_missing = rng.random((n, NUM_DENSE)) < missing_rate
    cat_missing = rng.random((n, NUM_CATEGORICAL)) < missing_rate
    with _open_text(path, "w") as handle:
        for i in range(n):
            dense_text = [
                "" if int_missing[i, j] else str(ints[i, j]) for j in range(NUM_DENSE)
            ]
            cat_text = [
                "" if cat_missing[i, j] else f"{cats[i, j]:08x}"
                for j in range(NUM_CATEGORICAL)
            ]
            handle.write("\t".join([str(int(labels[i])), *dense_text, *cat_text]))
            handle.write("\n")
    return path
