"""The Criteo loader on hand-written files: values, hashing, missing ids, errors."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest

from mlsd_lib.datasets import CTRData, hash_ids
from mlsd_lib.datasets.criteo import (
    MISSING_ID,
    CriteoFormatError,
    read_criteo,
    write_criteo_sample,
)

INTS_1 = ["1", "", "5", "0", "-2", "", "", "3", "", "", "", "", "7"]
INTS_2 = [""] * 12 + ["100"]
CATS_1 = ["68fd1e64", "", "0000000a"] + ["ffffffff"] * 23
CATS_2 = [""] * 26
LINES = [
    "\t".join(["1", *INTS_1, *CATS_1]),
    "\t".join(["0", *INTS_2, *CATS_2]),
]


def _write(path: Path, lines: list[str]) -> Path:
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)
    return path


@pytest.mark.parametrize("name", ["tiny.tsv", "tiny.tsv.gz"])
def test_values_exactly(tmp_path: Path, name: str) -> None:
    data = read_criteo(_write(tmp_path / name, LINES), num_buckets=1000, chunk_size=1)
    assert isinstance(data, CTRData) and len(data) == 2
    np.testing.assert_array_equal(data.labels, np.array([1, 0], np.float32))
    assert data.labels.dtype == np.float32 and data.dense.dtype == np.float32
    expected = [math.log1p(max(int(x), 0)) if x else 0.0 for x in INTS_1]
    np.testing.assert_allclose(data.dense[0], expected, rtol=1e-6)
    assert data.dense[0, 4] == 0.0  # -2 clipped to 0 before log1p
    np.testing.assert_allclose(data.dense[1, -1], math.log(101), rtol=1e-6)
    cats = data.categorical
    assert cats[0, 0] == hash_ids(np.array([0x68FD1E64]), 999, salt=0)[0] + 1
    assert cats[0, 2] == hash_ids(np.array([10]), 999, salt=2)[0] + 1
    assert cats[0, 1] == MISSING_ID and (cats[1] == MISSING_ID).all()
    # Same raw id in different fields: different salts, independent buckets.
    assert len(set(cats[0, 3:].tolist())) > 1
    assert ((cats[0] >= 0) & (cats[0] < 1000)).all()
    assert data.cardinalities == (1000,) * 26
    assert data.dense_names[0] == "I1" and data.categorical_names[-1] == "C26"


def test_missing_indicators_and_determinism(tmp_path: Path) -> None:
    path = _write(tmp_path / "tiny.tsv", LINES)
    data = read_criteo(path, missing_indicators=True)
    assert data.dense.shape == (2, 26)
    assert data.dense_names[13] == "I1_missing"
    np.testing.assert_array_equal(data.dense[0, 13:], [x == "" for x in INTS_1])
    again = read_criteo(path, missing_indicators=True)
    np.testing.assert_array_equal(data.categorical, again.categorical)


def test_max_rows_and_chunking_agree(tmp_path: Path) -> None:
    path = write_criteo_sample(tmp_path / "sample.tsv.gz", 300, seed=1)
    whole = read_criteo(path, chunk_size=1000)
    chunked = read_criteo(path, chunk_size=7)
    np.testing.assert_array_equal(whole.categorical, chunked.categorical)
    np.testing.assert_array_equal(whole.dense, chunked.dense)
    assert len(read_criteo(path, max_rows=10)) == 10
    assert 0.05 < whole.ctr < 0.95
    assert (whole.categorical == MISSING_ID).mean() == pytest.approx(0.1, abs=0.03)


def test_sample_is_exact_format(tmp_path: Path) -> None:
    path = write_criteo_sample(tmp_path / "s.tsv", 50, seed=2)
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        assert len(fields) == 40 and fields[0] in ("0", "1")
        assert all(f == "" or len(f) == 8 for f in fields[14:])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("\t".join(["1", *INTS_1, *CATS_1[:-1]]), "line 2: 39 tab-separated columns"),
        ("\t".join(["2", *INTS_1, *CATS_1]), "line 2: label '2' is not 0 or 1"),
        ("\t".join(["x", *INTS_1, *CATS_1]), "line 2: label 'x'"),
        ("\t".join(["1", "1.5", *INTS_1[1:], *CATS_1]), "line 2: I1 = '1.5'"),
        ("\t".join(["1", *INTS_1, "zz", *CATS_1[1:]]), "line 2: C1 = 'zz'"),
    ],
)
def test_malformed_lines_name_the_line(tmp_path: Path, bad: str, message: str) -> None:
    path = _write(tmp_path / "bad.tsv", [LINES[0], bad, LINES[1]])
    with pytest.raises(CriteoFormatError, match=message):
        read_criteo(path, chunk_size=2)
    # The line number is right when the bad line opens a later chunk too.
    with pytest.raises(CriteoFormatError, match=message):
        read_criteo(path, chunk_size=1)


def test_the_case_study_models_train_on_criteo_data_unchanged(tmp_path: Path) -> None:
    """The same recipes that fit the synthetic world fit a Criteo-format file."""
    from mlsd_lib.adclick.recipes import Budget, fit_model
    from mlsd_lib.evaluation import roc_auc

    path = write_criteo_sample(tmp_path / "train.txt.gz", 6_000, seed=1)
    data = read_criteo(path, num_buckets=2**10)
    assert len(data.categorical_names) == 26 and data.dense.shape[1] == 13
    train_part, test_part = (
        data.subset(slice(0, 5_000)),
        data.subset(slice(5_000, None)),
    )
    budget = Budget(epochs=2, num_trees=10, gbdt_lr_epochs=1, batch_size=512)
    for name in ("lr", "gbdt_lr", "deepfm", "dcn_v2"):
        fitted = fit_model(name, train_part, test_part, budget)
        p = fitted.predict(test_part)
        assert p.shape == (1_000,) and np.isfinite(p).all()
        assert roc_auc(test_part.labels, p) > 0.55, (
            name
        )  # the sample's label is learnable
