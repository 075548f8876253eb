"""Loader for the MovieLens rating files (GroupLens; Harper & Konstan 2015).

Introduced in ``casestudies/recommender/index.md``. MovieLens publishes the same
four columns (user id, movie id, star rating, Unix timestamp) in three layouts:

==================  =================================  ===========================
format              releases                           a line
==================  =================================  ===========================
``"u.data"``        ML-100K (also ``u1.base`` ...)     ``196\\t242\\t3\\t881250949``
``"ratings.dat"``   ML-1M, ML-10M                      ``1::1193::5::978300760``
``"ratings.csv"``   ML-20M, ML-25M, ML-32M, latest     ``1,296,5.0,1147880044``
==================  =================================  ===========================

``ratings.csv`` opens with the header ``userId,movieId,rating,timestamp``; the
other two have none. Ratings are whole stars 1-5 (ML-100K, ML-1M) or half stars
0.5-5 (later releases). :func:`read_movielens` turns any of them (gzipped too)
into :class:`~mlsd_lib.datasets.interactions.Interactions`: ``time`` is the
timestamp, ``engaged`` is ``rating >= engaged_min_rating`` (4 stars by default,
the usual way to read explicit ratings as implicit positives), ``minutes`` is
NaN and ``position`` -1 (MovieLens knows neither). :func:`read_movielens_ratings`
stops one step earlier and keeps the star ratings themselves, the graded gains
NDCG wants.

Why the loader is written the way it is:

* **Streamed.** The file is read ``chunk_lines`` lines at a time and each chunk
  is parsed by numpy's C reader (``np.loadtxt``) into four compact columns
  (28 bytes a rating), so memory grows with the ratings kept, never with the
  file's text: ML-32M is 32 M lines, about 0.9 GB as text.
* **Errors name the file and line.** A chunk that numpy rejects, or whose values
  break a rule (a rating off the star scale, a negative id), is read again line
  by line to say exactly which line is wrong and why, e.g.
  ``ratings.csv line 7: expected 4 fields separated by ',', got 3: '1,2,3.5'``.
  The fast path stays fast; only a broken file pays for the diagnosis.
* **Dense indices in sorted raw-id order.** User index ``k`` is the ``k``-th
  smallest raw user id (``user_ids[k]`` gives it back), likewise for items. The
  map depends only on which ids occur, not on line order, so the same ratings
  in any layout or order get the same indices; MovieLens user ids run 1..N, so
  there ``index = id - 1``. Movie ids have gaps (ML-1M's run to 3952 for 3706
  movies), which is why the map is needed at all.

:func:`write_movielens_sample` writes a small synthetic file in the exact
layout, for tests and for the notebooks, because nothing in this book's sandbox
downloads the real data. :func:`read_movielens_items` reads the movie files
(``u.item``, ``movies.dat``, ``movies.csv``) for their genres, the content
features an item tower needs for a title with no ratings yet.
"""

from __future__ import annotations

import csv
import gzip
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import IO

import numpy as np

from mlsd_lib.datasets.interactions import Interactions
from mlsd_lib.errors import MlsdError

__all__ = [
    "MovieLensFormatError",
    "MovieLensItems",
    "MovieLensRatings",
    "read_movielens",
    "read_movielens_items",
    "read_movielens_ratings",
    "write_movielens_items_sample",
    "write_movielens_sample",
]

#: The three rating layouts: field separator and header line (None: no header).
RATING_FORMATS: dict[str, tuple[str, str | None]] = {
    "u.data": ("\t", None),
    "ratings.dat": ("::", None),
    "ratings.csv": (",", "userId,movieId,rating,timestamp"),
}
#: Release names accepted as ``format`` too.
RELEASES = {
    "ml-100k": "u.data",
    "ml-1m": "ratings.dat",
    "ml-10m": "ratings.dat",
    "ml-20m": "ratings.csv",
    "ml-25m": "ratings.csv",
    "ml-32m": "ratings.csv",
    "ml-latest": "ratings.csv",
    "ml-latest-small": "ratings.csv",
}
FIELDS = ("user id", "movie id", "rating", "timestamp")
MIN_RATING, MAX_RATING = 0.5, 5.0
_ROW = np.dtype([("user", "i8"), ("item", "i8"), ("rating", "f8"), ("time", "i8")])
#: ML-100K's ``u.item`` has 19 genre flags in this order (``u.genre``).
U_ITEM_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
ITEM_FORMATS = ("u.item", "movies.dat", "movies.csv")


class MovieLensFormatError(MlsdError, ValueError):
    """A MovieLens file is not in the layout it claims; names the file and line."""


# --------------------------------------------------------------------------
# Reading ratings


@dataclass(frozen=True)
class MovieLensRatings:
    """The raw ratings, in time order (stable: ties keep file order).

    ``user_id``/``item_id`` are MovieLens' own ids (int64), ``rating`` the stars
    (float32), ``timestamp`` Unix seconds (int64). Time order is the order
    :class:`~mlsd_lib.datasets.interactions.Interactions` keeps, so ``rating[i]`` is the
    star rating of row ``i`` of :meth:`to_interactions`: the graded gain of that
    event.
    """

    user_id: np.ndarray
    item_id: np.ndarray
    rating: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return len(self.user_id)

    def to_interactions(self, engaged_min_rating: float = 4.0) -> Interactions:
        """Dense indices (sorted raw-id order) and ``engaged = rating >= min``."""
        user_ids, user = np.unique(self.user_id, return_inverse=True)
        item_ids, item = np.unique(self.item_id, return_inverse=True)
        return Interactions.from_arrays(
            user=user.reshape(-1),
            item=item.reshape(-1),
            time=self.timestamp.astype(np.float64),
            engaged=self.rating >= engaged_min_rating,
            n_users=len(user_ids),
            n_items=len(item_ids),
            user_ids=user_ids,
            item_ids=item_ids,
        )


def _canonical_format(
    path: Path, format: str | None, known: Sequence[str], aliases: dict[str, str]
) -> str:
    if format is not None:
        name = aliases.get(format.lower(), format)
        if name not in known:
            raise MovieLensFormatError(
                f"unknown MovieLens format {format!r}: pass one of {list(known)} "
                f"or a release name ({', '.join(sorted(aliases))})."
            )
        return name
    stem = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    for name in known:
        if stem.endswith(Path(name).suffix):
            return name
    if list(known) == list(RATING_FORMATS) and stem.endswith((".base", ".test")):
        return "u.data"  # ML-100K's ready-made splits: u1.base, ua.test, ...
    raise MovieLensFormatError(
        f"cannot tell the MovieLens format of '{path.name}' from its name: pass "
        f"format= one of {list(known)} (the name of the file it was saved as)."
    )


def _open_text(
    path: Path, mode: str, encoding: str = "utf-8", newline: str | None = None
) -> IO[str]:
    # errors="replace": a stray byte becomes U+FFFD, which the parser then
    # reports with its line number instead of a UnicodeDecodeError with none.
    errors = "replace" if mode == "r" else "strict"
    if path.name.endswith(".gz"):
        return gzip.open(
            path, mode + "t", encoding=encoding, errors=errors, newline=newline
        )
    return open(path, mode, encoding=encoding, errors=errors, newline=newline)


def _diagnose(lines: list[str], first_line: int, name: str, sep: str) -> None:
    """Read a rejected chunk line by line and raise at the first bad line."""
    for offset, line in enumerate(lines):
        where = f"{name} line {first_line + offset}"
        text = line.rstrip("\r\n")
        fields = text.split(sep)
        if len(fields) != 4:
            raise MovieLensFormatError(
                f"{where}: expected 4 fields separated by {sep!r}, got "
                f"{len(fields)}: {text!r}"
            )
        for field, value in zip(FIELDS, fields, strict=True):
            if field == "rating":
                try:
                    stars = float(value)
                except ValueError:
                    raise MovieLensFormatError(
                        f"{where}: rating {value!r} is not a number."
                    ) from None
                if not (MIN_RATING <= stars <= MAX_RATING and stars * 2 % 1 == 0):
                    raise MovieLensFormatError(
                        f"{where}: rating {value!r} is off the MovieLens scale "
                        f"(whole or half stars from {MIN_RATING} to {MAX_RATING})."
                    )
                continue
            try:
                number = int(value)
            except ValueError:
                raise MovieLensFormatError(
                    f"{where}: {field} {value!r} is not an integer."
                ) from None
            if not 0 <= number < 2**63:
                raise MovieLensFormatError(
                    f"{where}: {field} {value!r} is out of range; MovieLens ids and "
                    "timestamps are non-negative 64-bit integers."
                )


def _parse_chunk(lines: list[str], first_line: int, name: str, sep: str) -> np.ndarray:
    """Rows of one chunk as a structured array; raises naming the bad line."""
    source = lines if sep != "::" else [line.replace("::", "\t") for line in lines]
    try:
        with warnings.catch_warnings():
            # numpy reads "1.0" into an int column with a DeprecationWarning;
            # an id written as a float is an error here.
            warnings.simplefilter("error", DeprecationWarning)
            # A chunk of blank lines: the row count check below reports it.
            warnings.filterwarnings("ignore", "loadtxt: input contained no data")
            rows = np.loadtxt(
                source,
                delimiter="\t" if sep == "::" else sep,
                dtype=_ROW,
                comments=None,
                ndmin=1,
            )
    except (ValueError, DeprecationWarning) as error:
        _diagnose(lines, first_line, name, sep)
        raise _unexplained(name, first_line, lines, error) from error
    rating = rows["rating"]
    valid = (
        (len(rows) == len(lines))  # numpy skips blank lines; we do not
        and np.all((rating >= MIN_RATING) & (rating <= MAX_RATING))
        and np.all(rating * 2 == np.round(rating * 2))
        and np.all(rows["user"] >= 0)
        and np.all(rows["item"] >= 0)
        and np.all(rows["time"] >= 0)
    )
    if not valid:
        _diagnose(lines, first_line, name, sep)
        raise _unexplained(name, first_line, lines, None)
    return rows


def _unexplained(
    name: str, first_line: int, lines: list[str], error: BaseException | None
) -> MovieLensFormatError:
    """The chunk failed but no single line did (should not happen): say where."""
    return MovieLensFormatError(
        f"{name} lines {first_line}-{first_line + len(lines) - 1} could not be "
        f"read as MovieLens ratings ({error or 'values out of range'})."
    )


def _chunks(handle: IO[str], chunk_lines: int) -> Iterator[list[str]]:
    while chunk := list(islice(handle, chunk_lines)):
        yield chunk


def read_movielens_ratings(
    path: str | Path, *, format: str | None = None, chunk_lines: int = 100_000
) -> MovieLensRatings:
    """Read a MovieLens rating file (``.gz`` too) into raw columns, time-ordered.

    ``format`` is ``"u.data"``, ``"ratings.dat"``, ``"ratings.csv"`` or a release
    name (``"ml-1m"``); by default it is read from the file name (``u.data``,
    ``*.dat``, ``*.csv``, ``*.base``/``*.test``, optionally ``.gz``). The file is
    parsed ``chunk_lines`` lines at a time. Raises :class:`MovieLensFormatError`
    naming the file and 1-based line of the first malformed line.
    """
    path = Path(path)
    if chunk_lines < 1:
        raise MovieLensFormatError(f"chunk_lines must be >= 1, got {chunk_lines}.")
    layout = _canonical_format(path, format, list(RATING_FORMATS), RELEASES)
    sep, header = RATING_FORMATS[layout]
    parts = []
    line_number = 1
    with _open_text(path, "r") as handle:
        if header is not None:
            first = handle.readline().rstrip("\r\n")
            if first.replace(" ", "") != header:
                raise MovieLensFormatError(
                    f"{path.name} line 1: expected the header {header!r} of "
                    f"{layout}, got {first!r}. Pass format= if this is another "
                    "layout saved under a .csv name."
                )
            line_number = 2
        for lines in _chunks(handle, chunk_lines):
            parts.append(_parse_chunk(lines, line_number, path.name, sep))
            line_number += len(lines)
    rows = np.concatenate(parts) if parts else np.empty(0, _ROW)
    parts.clear()
    order = np.argsort(rows["time"], kind="stable")
    rows = rows[order]
    return MovieLensRatings(
        user_id=np.ascontiguousarray(rows["user"]),
        item_id=np.ascontiguousarray(rows["item"]),
        rating=rows["rating"].astype(np.float32),
        timestamp=np.ascontiguousarray(rows["time"]),
    )


def read_movielens(
    path: str | Path,
    *,
    format: str | None = None,
    engaged_min_rating: float = 4.0,
    chunk_lines: int = 100_000,
) -> Interactions:
    """Read a MovieLens rating file into
    :class:`~mlsd_lib.datasets.interactions.Interactions`.

    Introduced in ``casestudies/recommender/index.md``. ``engaged`` is
    ``rating >= engaged_min_rating``; ``user_ids``/``item_ids`` map dense
    indices (sorted raw-id order) back to MovieLens ids. See
    :func:`read_movielens_ratings` for ``format`` and ``chunk_lines``.
    """
    ratings = read_movielens_ratings(path, format=format, chunk_lines=chunk_lines)
    return ratings.to_interactions(engaged_min_rating)


# --------------------------------------------------------------------------
# Writing a synthetic sample

_T0 = 946_684_800  # 2000-01-01 UTC, when ML-1M's ratings were collected
_SPAN = 3 * 365 * 86_400


def _sample_pairs(
    rng: np.random.Generator, user_w: np.ndarray, item_w: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distinct (user, item) pairs, drawn in proportion to activity x
    popularity; a pair is rated at most once, as in MovieLens."""
    n_users, n_items = len(user_w), len(item_w)
    keys = np.empty(0, np.int64)
    for _ in range(50):
        if len(keys) >= n:
            break
        draw = 2 * (n - len(keys)) + 16
        new = rng.choice(n_users, draw, p=user_w) * n_items + rng.choice(
            n_items, draw, p=item_w
        )
        merged = np.concatenate([keys, new])
        _, first = np.unique(merged, return_index=True)
        keys = merged[np.sort(first)]
    if len(keys) < n:  # nearly every pair is rated: fill from the unused ones
        unused = np.setdiff1d(np.arange(n_users * n_items), keys)
        keys = np.concatenate([keys, rng.choice(unused, n - len(keys), replace=False)])
    keys = keys[:n]
    return keys // n_items, keys % n_items


def write_movielens_sample(
    path: str | Path,
    format: str | None = None,
    n_users: int = 100,
    n_items: int = 200,
    n_ratings: int = 2_000,
    seed: int = 0,
) -> Path:
    """Write ``n_ratings`` synthetic ratings in the exact MovieLens layout.

    Introduced in ``casestudies/recommender/index.md``, to run the loader where
    the real files cannot be downloaded. ``format`` as for
    :func:`read_movielens_ratings` (read from the name when omitted; ``.gz``
    compresses). The same arguments give the same ratings in every layout, so
    the three files read back to identical
    :class:`~mlsd_lib.datasets.interactions.Interactions`.

    What makes it look like MovieLens: user ids 1..``n_users``; movie ids a
    sorted random subset of 1..3``n_items`` (ids with gaps); users' activity
    log-normal and movies' popularity Zipf-like, each (user, movie) rated at
    most once; whole stars 1-5 from a 4-factor taste model (so a recommender
    has something to learn), timestamps over three years from 2000, lines
    sorted by user then time as in ML-1M.
    """
    path = Path(path)
    layout = _canonical_format(path, format, list(RATING_FORMATS), RELEASES)
    if min(n_users, n_items) < 1 or n_ratings < 0:
        raise MovieLensFormatError(
            f"need n_users >= 1, n_items >= 1 and n_ratings >= 0, got "
            f"{n_users}, {n_items}, {n_ratings}."
        )
    if n_ratings > n_users * n_items:
        raise MovieLensFormatError(
            f"n_ratings={n_ratings} exceeds the {n_users} x {n_items} = "
            f"{n_users * n_items} distinct (user, movie) pairs; each pair is rated "
            "at most once. Ask for fewer ratings or more users or movies."
        )
    rng = np.random.default_rng(seed)
    movie_ids = np.sort(rng.choice(3 * n_items, n_items, replace=False) + 1)
    activity = rng.lognormal(0.0, 1.0, n_users)
    popularity = 1.0 / (1.0 + rng.permutation(n_items)) ** 0.8
    user, item = _sample_pairs(
        rng, activity / activity.sum(), popularity / popularity.sum(), n_ratings
    )
    taste_u = rng.normal(0, 0.5, (n_users, 4))
    taste_i = rng.normal(0, 0.5, (n_items, 4))
    quality = rng.normal(0, 0.5, n_items)
    raw = 3.5 + quality[item] + np.sum(taste_u[user] * taste_i[item], axis=1)
    stars = np.clip(np.rint(raw + rng.normal(0, 0.7, n_ratings)), 1, 5)
    time = _T0 + rng.integers(0, _SPAN, n_ratings)
    order = np.lexsort((time, user))
    table = np.column_stack(
        [user[order] + 1, movie_ids[item[order]], stars[order], time[order]]
    )
    sep, header = RATING_FORMATS[layout]
    star = "%.1f" if layout == "ratings.csv" else "%d"
    with _open_text(path, "w") as handle:
        if header is not None:
            handle.write(header + "\n")
        np.savetxt(handle, table, fmt=sep.join(["%d", "%d", star, "%d"]))
    return path


# --------------------------------------------------------------------------
# Movies and their genres


@dataclass(frozen=True)
class MovieLensItems:
    """Movies with their titles and genres.

    ``item_id`` (int64 MovieLens ids, file order), ``title`` (str array),
    ``genres`` (the genre names, columns of ``genre_matrix``) and
    ``genre_matrix`` (bool, one row per movie; a movie has one or more genres).
    """

    item_id: np.ndarray
    title: np.ndarray
    genres: tuple[str, ...]
    genre_matrix: np.ndarray

    def __len__(self) -> int:
        return len(self.item_id)

    def genres_for(
        self, item_ids: np.ndarray, *, allow_missing: bool = False
    ) -> np.ndarray:
        """The genre rows for ``item_ids`` in that order, e.g. the item table of
        :class:`~mlsd_lib.datasets.interactions.Interactions`
        (``interactions.item_ids``): row ``k`` belongs to item index ``k``. A
        movie missing from the file is an error, or an all-False row with
        ``allow_missing=True``."""
        item_ids = np.asarray(item_ids, dtype=np.int64)
        order = np.argsort(self.item_id, kind="stable")
        where = np.searchsorted(self.item_id, item_ids, sorter=order)
        where = np.minimum(where, max(len(order) - 1, 0))
        found = (
            self.item_id[order[where]] == item_ids
            if len(order)
            else np.zeros(len(item_ids), bool)
        )
        if not allow_missing and not found.all():
            missing = item_ids[~found]
            raise MovieLensFormatError(
                f"{len(missing)} movie ids are not in the movie file (first "
                f"{missing[:5].tolist()}); pass allow_missing=True to give them "
                "no genre, or read the movie file of the same release."
            )
        rows = np.zeros((len(item_ids), len(self.genres)), dtype=bool)
        if len(order):
            rows[found] = self.genre_matrix[order[where[found]]]
        return rows


def _item_rows(
    handle: IO[str], layout: str, name: str
) -> Iterator[tuple[int, int, str, list[str]]]:
    """(line number, movie id, title, genre names) for each movie line."""
    if layout == "movies.csv":
        reader = csv.reader(handle)
        header = next(reader, None)
        if header != ["movieId", "title", "genres"]:
            raise MovieLensFormatError(
                f"{name} line 1: expected the header 'movieId,title,genres', got "
                f"{','.join(header or [])!r}."
            )
        records: Iterator[tuple[int, list[str]]] = (
            (reader.line_num, fields) for fields in reader
        )
        expected, sep = 3, ","
    else:
        sep = "|" if layout == "u.item" else "::"
        records = (
            (number, line.rstrip("\r\n").split(sep))
            for number, line in enumerate(handle, start=1)
        )
        expected = 5 + len(U_ITEM_GENRES) if layout == "u.item" else 3
    for number, fields in records:
        if len(fields) != expected:
            raise MovieLensFormatError(
                f"{name} line {number}: expected {expected} fields separated by "
                f"{sep!r}, got {len(fields)}: {sep.join(fields)!r}"
            )
        try:
            movie = int(fields[0])
        except ValueError:
            raise MovieLensFormatError(
                f"{name} line {number}: movie id {fields[0]!r} is not an integer."
            ) from None
        if layout == "u.item":
            flags = fields[5:]
            if any(flag not in ("0", "1") for flag in flags):
                raise MovieLensFormatError(
                    f"{name} line {number}: genre flags must be 0 or 1, got "
                    f"{'|'.join(flags)!r}."
                )
            names = [g for g, f in zip(U_ITEM_GENRES, flags, strict=True) if f == "1"]
        else:
            names = [g for g in fields[2].split("|") if g]
        yield number, movie, fields[1], names


def read_movielens_items(
    path: str | Path, *, format: str | None = None, encoding: str | None = None
) -> MovieLensItems:
    """Read ``u.item`` (ML-100K), ``movies.dat`` (ML-1M/10M) or ``movies.csv``
    (ML-20M and later) into titles and a genre matrix.

    Introduced in ``casestudies/recommender/index.md``: genres are the content
    features that let the item tower embed a movie nobody has rated. Genre
    columns are the 19 of ``u.genre`` for ``u.item`` and, for the other two, the
    sorted genre names that occur (``(no genres listed)`` is no genre).
    ``encoding`` defaults to Latin-1 for ``u.item`` and ``movies.dat`` (as
    GroupLens wrote them) and UTF-8 for ``movies.csv``. Movie files are small
    (at most ~90 k movies), so they are read line by line into lists.
    """
    path = Path(path)
    aliases = {"ml-100k": "u.item", "ml-1m": "movies.dat", "ml-10m": "movies.dat"}
    aliases |= {r: "movies.csv" for r, f in RELEASES.items() if f == "ratings.csv"}
    layout = _canonical_format(path, format, ITEM_FORMATS, aliases)
    if encoding is None:
        encoding = "utf-8" if layout == "movies.csv" else "latin-1"
    ids, titles, genre_lists = [], [], []
    with _open_text(path, "r", encoding, newline="") as handle:  # csv wants ""
        for _, movie, title, names in _item_rows(handle, layout, path.name):
            ids.append(movie)
            titles.append(title)
            genre_lists.append([g for g in names if g != "(no genres listed)"])
    if layout == "u.item":
        genres = U_ITEM_GENRES
    else:
        genres = tuple(sorted({g for names in genre_lists for g in names}))
    column = {g: j for j, g in enumerate(genres)}
    flat = [column[g] for names in genre_lists for g in names]
    row = np.repeat(np.arange(len(ids)), [len(names) for names in genre_lists])
    matrix = np.zeros((len(ids), len(genres)), dtype=bool)
    matrix[row, np.asarray(flat, dtype=np.int64)] = True
    return MovieLensItems(
        item_id=np.asarray(ids, dtype=np.int64),
        title=np.asarray(titles, dtype=str),
        genres=genres,
        genre_matrix=matrix,
    )


def write_movielens_items_sample(
    path: str | Path,
    item_ids: np.ndarray,
    format: str | None = None,
    seed: int = 0,
) -> Path:
    """Write a movie file in the exact layout for ``item_ids``, 1-3 genres each.

    Introduced in ``casestudies/recommender/index.md``, beside
    :func:`write_movielens_sample`: pass the ``item_ids`` a sample's
    :class:`~mlsd_lib.datasets.interactions.Interactions` holds, and
    :meth:`MovieLensItems.genres_for` lines the genres up with its item indices.
    Titles are ``"Movie <id> (<year>)"``.
    """
    path = Path(path)
    aliases = {"ml-100k": "u.item", "ml-1m": "movies.dat", "ml-10m": "movies.dat"}
    layout = _canonical_format(path, format, ITEM_FORMATS, aliases)
    rng = np.random.default_rng(seed)
    item_ids = np.asarray(item_ids, dtype=np.int64)
    real = U_ITEM_GENRES[1:]  # "unknown" is a flag only u.item has
    n_genres = rng.integers(1, 4, len(item_ids))
    keys = rng.random((len(item_ids), len(real)))
    chosen = np.argsort(keys, axis=1) < n_genres[:, None]  # n random genres a row
    years = rng.integers(1930, 2001, len(item_ids))
    encoding = "utf-8" if layout == "movies.csv" else "latin-1"
    with _open_text(path, "w", encoding) as handle:
        if layout == "movies.csv":
            handle.write("movieId,title,genres\n")
        for movie, year, flags in zip(item_ids, years, chosen, strict=True):
            title = f"Movie {movie} ({year})"
            names = "|".join(g for g, f in zip(real, flags, strict=True) if f)
            if layout == "u.item":
                bits = "|".join(str(int(f)) for f in (False, *flags))
                handle.write(f"{movie}|{title}|01-Jan-{year}||http://x/{movie}|")
                handle.write(bits + "\n")
            elif layout == "movies.dat":
                handle.write(f"{movie}::{title}::{names}\n")
            else:
                handle.write(f'{movie},"{title}",{names}\n')
    return path
