"""The MovieLens loader: three layouts, one result; errors that name the line;
streaming in bounded chunks; the movie files' genres."""

from __future__ import annotations

import gzip
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from mlsd_lib.datasets import Interactions
from mlsd_lib.datasets import movielens as ml
from mlsd_lib.datasets.movielens import (
    MovieLensFormatError,
    read_movielens,
    read_movielens_items,
    read_movielens_ratings,
    write_movielens_items_sample,
    write_movielens_sample,
)

LAYOUTS = ["u.data", "ratings.dat", "ratings.csv"]
HEADER = "userId,movieId,rating,timestamp"


def _same(a: Interactions, b: Interactions) -> None:
    for name in ("user", "item", "time", "engaged", "position", "user_ids"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), name)
    np.testing.assert_array_equal(a.item_ids, b.item_ids)
    assert (a.n_users, a.n_items) == (b.n_users, b.n_items)
    assert np.isnan(a.minutes).all() and np.isnan(b.minutes).all()


def test_hand_written_lines_read_exactly(tmp_path: Path) -> None:
    """Sorted raw-id order for indices, time order for rows, 4 stars engaged."""
    path = tmp_path / "ratings.csv"
    path.write_text(
        f"{HEADER}\n7,300,4.5,20\n3,100,3.0,10\n7,100,0.5,30\n3,20,4.0,10\n"
    )
    log = read_movielens(path)
    assert log.user_ids.tolist() == [3, 7] and log.item_ids.tolist() == [20, 100, 300]
    # Rows by time; the two events at t=10 keep file order (3->100 before 3->20).
    assert log.time.tolist() == [10.0, 10.0, 20.0, 30.0]
    assert log.user.tolist() == [0, 0, 1, 1]
    assert log.item.tolist() == [1, 0, 2, 1]
    assert log.engaged.tolist() == [False, True, True, False]
    assert (log.position == -1).all() and log.position.dtype == np.int16
    ratings = read_movielens_ratings(path)
    assert ratings.rating.tolist() == [3.0, 4.0, 4.5, 0.5]  # aligned with the rows
    strict = read_movielens(path, engaged_min_rating=4.5)
    assert strict.engaged.tolist() == [False, False, True, False]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_round_trips_the_generated_events(
    tmp_path: Path, layout: str
) -> None:
    path = write_movielens_sample(
        tmp_path / layout, n_users=40, n_items=60, n_ratings=700, seed=5
    )
    text = path.read_text().splitlines()
    sep = ml.RATING_FORMATS[layout][0]
    body = text[1:] if layout == "ratings.csv" else text
    assert len(body) == 700 and all(len(line.split(sep)) == 4 for line in body)
    raw = np.array([line.split(sep) for line in body], dtype=float)
    log = read_movielens(path)
    ratings = read_movielens_ratings(path)
    # The same multiset of (user, movie, stars, time) comes back.
    back = np.column_stack(
        [ratings.user_id, ratings.item_id, ratings.rating, ratings.timestamp]
    )
    assert sorted(map(tuple, back.tolist())) == sorted(map(tuple, raw.tolist()))
    # Indices map back to the raw ids of the same rows.
    np.testing.assert_array_equal(log.user_ids[log.user], ratings.user_id)
    np.testing.assert_array_equal(log.item_ids[log.item], ratings.item_id)
    np.testing.assert_array_equal(log.engaged, ratings.rating >= 4)
    assert np.all(np.diff(log.time) >= 0)
    # Each (user, movie) pair once; movie ids have gaps, as in ML-1M.
    assert len(np.unique(log.user * log.n_items + log.item)) == 700
    assert log.item_ids.max() > log.n_items


def test_the_three_layouts_of_the_same_events_give_identical_interactions(
    tmp_path: Path,
) -> None:
    logs = [
        read_movielens(write_movielens_sample(tmp_path / f, seed=11))
        for f in (*LAYOUTS, "ratings.csv.gz")
    ]
    for other in logs[1:]:
        _same(logs[0], other)
    # A different seed is a different sample (the comparison can fail).
    other_seed = read_movielens(write_movielens_sample(tmp_path / "x.csv", seed=12))
    assert not np.array_equal(other_seed.time, logs[0].time)


def test_format_from_name_release_names_and_gzip(tmp_path: Path) -> None:
    lines = "1\t2\t3\t4\n5\t6\t4\t8\n"
    (tmp_path / "u1.base").write_text(lines)
    with gzip.open(tmp_path / "u.data.gz", "wt") as handle:
        handle.write(lines)
    (tmp_path / "mine.txt").write_text(lines)
    a = read_movielens(tmp_path / "u1.base")
    b = read_movielens(tmp_path / "u.data.gz")
    c = read_movielens(tmp_path / "mine.txt", format="ml-100k")
    _same(a, b)
    _same(a, c)
    with pytest.raises(
        MovieLensFormatError, match=r"cannot tell the MovieLens format of 'mine.txt'"
    ):
        read_movielens(tmp_path / "mine.txt")
    with pytest.raises(MovieLensFormatError, match=r"unknown MovieLens format 'tsv'"):
        read_movielens(tmp_path / "mine.txt", format="tsv")


def test_half_stars_and_the_dat_layout_of_ml_10m(tmp_path: Path) -> None:
    path = tmp_path / "ratings.dat"
    path.write_text("1::122::5::838985046\n1::185::4.5::838983525\n2::122::0.5::1\n")
    ratings = read_movielens_ratings(path)
    assert ratings.rating.tolist() == [0.5, 4.5, 5.0]
    assert ratings.timestamp.tolist() == [1, 838983525, 838985046]


@pytest.mark.parametrize(
    ("layout", "bad", "message"),
    [
        (
            "ratings.csv",
            "1,2,3.5",
            r"ratings.csv line 7: expected 4 fields separated by ',', got 3: "
            r"'1,2,3.5'",
        ),
        ("ratings.csv", "1,2,3.5,9,9", "line 7: expected 4 fields.*got 5"),
        ("ratings.csv", "", r"line 7: expected 4 fields .*got 1: ''"),
        ("ratings.csv", "1,2,6,9", r"line 7: rating '6' is off the MovieLens scale"),
        ("ratings.csv", "1,2,0,9", r"line 7: rating '0' is off"),
        ("ratings.csv", "1,2,3.7,9", r"line 7: rating '3.7' is off"),
        ("ratings.csv", "1,2,nan,9", r"line 7: rating 'nan' is off"),
        ("ratings.csv", "1,2,good,9", r"line 7: rating 'good' is not a number"),
        ("ratings.csv", "u1,2,3,9", r"line 7: user id 'u1' is not an integer"),
        ("ratings.csv", "1,2.0,3,9", r"line 7: movie id '2.0' is not an integer"),
        ("ratings.csv", "1,2,3,-9", r"line 7: timestamp '-9' is out of range"),
        ("u.data", "1\t2\t3", r"u.data line 6: expected 4 fields separated by '\\t'"),
        ("ratings.dat", "1:2::3::4", r"ratings.dat line 6: expected 4 fields .*'::'"),
        ("ratings.dat", "1::x::3::4", r"ratings.dat line 6: movie id 'x' is not"),
    ],
)
def test_errors_name_the_file_and_line(
    tmp_path: Path, layout: str, bad: str, message: str
) -> None:
    sep = ml.RATING_FORMATS[layout][0]
    good = [sep.join(["1", str(i), "4", "100"]) for i in range(5)]
    lines = ([HEADER] if layout == "ratings.csv" else []) + good + [bad, good[0]]
    path = tmp_path / layout
    path.write_text("\n".join(lines) + "\n")
    # The line number is right whether the bad line opens, ends or sits
    # inside a chunk.
    for chunk_lines in (1, 2, 3, 100):
        with pytest.raises(MovieLensFormatError, match=message):
            read_movielens(path, chunk_lines=chunk_lines)


def test_a_missing_header_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ratings.csv"
    path.write_text("1,2,3.5,4\n")
    with pytest.raises(
        MovieLensFormatError,
        match=r"ratings.csv line 1: expected the header "
        r"'userId,movieId,rating,timestamp' of ratings.csv, got '1,2,3.5,4'",
    ):
        read_movielens(path)
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(MovieLensFormatError, match="got ''"):
        read_movielens(tmp_path / "empty.csv")
    (tmp_path / "only_header.csv").write_text(HEADER + "\n")
    assert len(read_movielens(tmp_path / "only_header.csv")) == 0


def test_sample_arguments_are_checked(tmp_path: Path) -> None:
    with pytest.raises(MovieLensFormatError, match=r"exceeds the 2 x 3 = 6 distinct"):
        write_movielens_sample(tmp_path / "u.data", n_users=2, n_items=3, n_ratings=7)
    # Every pair rated: the dense corner of the sampler still gives distinct pairs.
    log = read_movielens(
        write_movielens_sample(tmp_path / "u.data", n_users=3, n_items=4, n_ratings=12)
    )
    assert len(np.unique(log.user * 4 + log.item)) == 12


def test_reading_is_chunked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parser never sees more than ``chunk_lines`` lines at once."""
    path = write_movielens_sample(tmp_path / "ratings.dat", n_ratings=1_000, seed=1)
    seen: list[int] = []
    parse = ml._parse_chunk

    def spy(lines: list[str], *args: object) -> np.ndarray:
        seen.append(len(lines))
        return parse(lines, *args)

    monkeypatch.setattr(ml, "_parse_chunk", spy)
    chunked = read_movielens(path, chunk_lines=64)
    assert max(seen) == 64 and len(seen) == 16 and sum(seen) == 1_000
    monkeypatch.undo()
    _same(chunked, read_movielens(path, chunk_lines=10_000))


def test_peak_memory_follows_the_rows_kept_not_the_text(tmp_path: Path) -> None:
    """200 k lines: the file's lines held at once would cost about 80 bytes a
    line (a str object each). Read in chunks, the peak stays near the compact
    columns kept (32 bytes a row, and a sorted copy); read in one chunk, it is
    about twice that."""
    n = 200_000
    path = write_movielens_sample(
        tmp_path / "ratings.csv", n_users=2_000, n_items=3_000, n_ratings=n, seed=2
    )
    peaks = []
    for chunk_lines in (2_000, n):
        tracemalloc.start()
        try:
            read_movielens_ratings(path, chunk_lines=chunk_lines)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    chunked, one_chunk = peaks
    assert chunked < 90 * n  # bytes (measured: about 73 a row)
    assert chunked < 0.7 * one_chunk  # (measured: about 150 a row)


def test_movie_files_give_the_same_genres_in_every_layout(tmp_path: Path) -> None:
    log = read_movielens(write_movielens_sample(tmp_path / "u.data", seed=4))
    tables = {}
    for layout in ("u.item", "movies.dat", "movies.csv"):
        path = write_movielens_items_sample(tmp_path / layout, log.item_ids, seed=4)
        items = read_movielens_items(path)
        assert len(items) == log.n_items
        rows = items.genres_for(log.item_ids)
        assert rows.shape[0] == log.n_items and rows.sum(axis=1).min() >= 1
        names = np.array(items.genres)
        tables[layout] = [tuple(names[row]) for row in rows]
        assert items.title[0] == f"Movie {log.item_ids[0]} " + items.title[0][-6:]
    assert tables["u.item"] == tables["movies.dat"] == tables["movies.csv"]


def test_real_movie_lines_read(tmp_path: Path) -> None:
    csv_path = tmp_path / "movies.csv"
    csv_path.write_text(
        "movieId,title,genres\n"
        "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        "9,Sudden Death (1995),(no genres listed)\n"
    )
    items = read_movielens_items(csv_path)
    assert items.title[1] == "American President, The (1995)"
    assert "(no genres listed)" not in items.genres
    rows = items.genres_for(np.array([11, 9]))
    assert [np.array(items.genres)[r].tolist() for r in rows] == [
        ["Comedy", "Drama", "Romance"],
        [],
    ]
    dat = tmp_path / "movies.dat"
    dat.write_bytes("1::Toy Story (1995)::Animation|Children's\n".encode("latin-1"))
    dat.write_bytes(dat.read_bytes() + "2::Amélie (2001)::Comedy\n".encode("latin-1"))
    items = read_movielens_items(dat)
    assert items.title[1] == "Amélie (2001)"
    assert items.genres == ("Animation", "Children's", "Comedy")
    uitem = tmp_path / "u.item"
    flags = ["0"] * 19
    flags[3] = flags[4] = "1"
    uitem.write_text("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags))
    assert read_movielens_items(uitem).genre_matrix[0].nonzero()[0].tolist() == [3, 4]


def test_movie_file_errors(tmp_path: Path) -> None:
    items_path = tmp_path / "movies.dat"
    items_path.write_text("1::A (1990)::Drama\n2::B (1991)\n")
    with pytest.raises(
        MovieLensFormatError,
        match=r"movies.dat line 2: expected 3 fields separated by '::', got 2",
    ):
        read_movielens_items(items_path)
    items_path.write_text("1::A (1990)::Drama\n")
    items = read_movielens_items(items_path)
    with pytest.raises(MovieLensFormatError, match=r"1 movie ids are not in .*\[5\]"):
        items.genres_for(np.array([1, 5]))
    rows = items.genres_for(np.array([5, 1]), allow_missing=True)
    assert rows.tolist() == [[False], [True]]
    (tmp_path / "m.csv").write_text("id,title,genres\n")
    with pytest.raises(
        MovieLensFormatError, match=r"m.csv line 1: expected the header"
    ):
        read_movielens_items(tmp_path / "m.csv", format="movies.csv")
