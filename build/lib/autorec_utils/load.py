"""Read MovieLens files into typed DataFrames (chapter 01).

One reader serves every release (the formats come from ``releases.RELEASES``), and there is one loader
per kind of file: ratings, movies, users. A bad line is reported with its file and line number.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .releases import GENRES, SPLITS, DataError, Table, display_path, release_dir, release_info

__all__ = ["MAX_ID", "MAX_TIMESTAMP", "check_movielens_100k", "load_movies", "load_ratings", "load_users"]

MAX_ID = 2**31 - 1  # ids are stored as int32
MAX_TIMESTAMP = 2**32 - 1  # seconds since 1970, up to the year 2106
_REFETCH = "Fix the file, or delete the folder and fetch it again (fetch_movielens())."


def load_ratings(path: str | Path | None = None, release: str = "ml-100k", file: str | None = None) -> pd.DataFrame:
    """Ratings ``user_id, item_id, rating, timestamp`` of a release (chapter 01).

    ``path`` is the release's folder (default ``<data_dir>/raw/<release>``, where ``fetch_movielens``
    puts it); ``file`` another ratings file of it, such as ML-100K's ``u1.base``."""
    info = release_info(release)
    source = _file(path, release, file or info.ratings.file)
    table = _read_table(source, info.ratings)
    first_line = 2 if info.ratings.header else 1
    users = _as_int(table, "user_id", source, 1, MAX_ID, first_line).astype("int32")
    items = _as_int(table, "item_id", source, 1, MAX_ID, first_line).astype("int32")
    rating = pd.to_numeric(table.rating.str.strip(), errors="coerce")
    steps = rating * (2 if info.half_stars else 1)  # a whole number of (half) stars
    low = 0.5 if info.half_stars else 1
    bad = rating.isna() | (rating < low) | (rating > 5) | (steps != steps.round())
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        allowed = "0.5-5 in half stars" if info.half_stars else "whole stars 1-5"
        raise DataError(f"{display_path(source)} line {row + first_line}: rating is {table.rating.iloc[row]!r} "
                        f"(allowed: {allowed}). {_REFETCH}")
    seconds = _as_int(table, "timestamp", source, 0, MAX_TIMESTAMP, first_line)
    ratings = pd.DataFrame({"user_id": users, "item_id": items, "rating": rating.astype("float32"),
                            "timestamp": pd.to_datetime(seconds, unit="s").astype("datetime64[s]")})
    repeated = ratings.duplicated(["user_id", "item_id"], keep=False).to_numpy()
    if repeated.any():
        lines = np.flatnonzero(repeated)[:2] + first_line
        first = ratings.iloc[lines[0] - first_line]
        raise DataError(f"{display_path(source)} lines {lines[0]} and {lines[1]}: user {first.user_id} rated movie "
                        f"{first.item_id} twice. Keep one line. {_REFETCH}")
    return ratings


def load_movies(path: str | Path | None = None, release: str = "ml-100k") -> pd.DataFrame:
    """Movies ``item_id, title, year, genres`` (chapter 01): ``title`` as "Title (Year)", ``year`` a
    nullable integer, ``genres`` the genre names joined by ``|``."""
    info = release_info(release)
    source = _file(path, release, info.movies.file)
    table = _read_table(source, info.movies)
    first_line = 2 if info.movies.header else 1
    if "genres" in table:  # the larger releases: "Action|Comedy", or "(no genres listed)"
        genres = table.genres.replace("(no genres listed)", "")
        year = table.title.str.extract(r"\((\d{4})\)\s*$")[0]
    else:  # ML-100K: 19 columns of 0/1 flags, and a release date
        flags = np.column_stack([_as_int(table, g, source, 0, 1, first_line).to_numpy() for g in GENRES]).astype(bool)
        genres = pd.Series(["|".join(g for g, on in zip(GENRES, row, strict=True) if on) for row in flags])
        year = table.title.str.extract(r"\((\d{4})\)\s*$")[0].fillna(table.release_date.str.extract(r"(\d{4})$")[0])
    return pd.DataFrame({
        "item_id": _as_int(table, "item_id", source, 1, MAX_ID, first_line).astype("int32"),
        "title": table.title.str.strip().astype("string"),
        "year": pd.to_numeric(year).astype("Int16"),
        "genres": genres.astype("string"),
    })


def load_users(path: str | Path | None = None) -> pd.DataFrame:
    """ML-100K's users ``user_id, age, gender, occupation, zip_code`` (chapter 01)."""
    source = _file(path, "ml-100k", "u.user")
    users = release_info("ml-100k").users
    assert users is not None  # ML-100K's row of RELEASES has its users table
    table = _read_table(source, users)
    return pd.DataFrame({
        "user_id": _as_int(table, "user_id", source, 1, MAX_ID).astype("int32"),
        "age": _as_int(table, "age", source, 0, 130).astype("int16"),
        "gender": table.gender.astype("category"),
        "occupation": table.occupation.astype("category"),
        "zip_code": table.zip_code.astype("string"),  # not a number: some are Canadian ("T8H1N")
    })


def check_movielens_100k(folder: str | Path) -> None:
    """Raise ``DataError`` unless ``folder`` holds a complete, consistent MovieLens-100K: its counts,
    contiguous ids, movie 267 titled "unknown", and every canonical split a partition of the ratings (chapter 01)."""
    folder = Path(folder)
    info = release_info("ml-100k")
    n_users, n_items, n_ratings = info.shape
    ratings, movies, users = load_ratings(folder), load_movies(folder), load_users(folder)
    problems = []
    if len(ratings) != n_ratings:
        problems.append(f"{len(ratings):,} ratings instead of {n_ratings:,}")
    for name, ids, n in (("users", users.user_id, n_users), ("movies", movies.item_id, n_items)):
        if not np.array_equal(np.sort(ids.to_numpy()), np.arange(1, n + 1)):
            problems.append(f"{name} ids are not exactly 1..{n}")
    if ratings.user_id.nunique() != n_users or ratings.item_id.nunique() != n_items:
        problems.append("not every user and movie has a rating")
    if movies.set_index("item_id").title.get(267) != "unknown":
        problems.append("movie 267 is not titled 'unknown'")
    everything = _pairs(ratings)
    for split in SPLITS:
        train, test = (_pairs(load_ratings(folder, file=f"{split}.{part}")) for part in ("base", "test"))
        if len(train) + len(test) != n_ratings or train.isin(test).any() or not everything.isin(train.append(test)).all():
            problems.append(f"split {split} does not partition the ratings")
    if problems:
        raise DataError(f"{display_path(folder)} is not a valid MovieLens-100K: " + "; ".join(problems))


def _pairs(ratings: pd.DataFrame) -> pd.Index:
    return pd.MultiIndex.from_arrays([ratings.user_id, ratings.item_id])


def _file(path: str | Path | None, release: str, name: str) -> Path:
    folder = Path(path).expanduser() if path is not None else release_dir(release=release)
    file = folder / name
    if not file.is_file():
        raise FileNotFoundError(
            f"{display_path(file)} does not exist. Run autorec_utils.fetch.fetch_movielens(release={release!r}) first "
            "(or point $AUTOREC_DATA_DIR or the path argument at the folder holding it)."
        )
    return file


def _read_table(file: Path, table: Table) -> pd.DataFrame:
    """A text table as strings, one column per field; a line with the wrong number of fields, an empty
    file or bytes that are not text are errors that name the file."""
    source: Path | io.BytesIO = file
    encoding = table.encoding
    if table.sep == "::" or encoding == "latin-1":  # small files, or ones the C parser cannot split as they are
        raw = file.read_bytes()
        if encoding == "latin-1":  # a file re-saved as UTF-8 is read as UTF-8, not turned into mojibake
            try:
                raw.decode("utf-8")
                encoding = "utf-8"
            except UnicodeDecodeError:
                pass
        source = io.BytesIO(raw.replace(b"::", b"\t") if table.sep == "::" else raw)
    try:
        frame = pd.read_csv(source, sep="\t" if table.sep == "::" else table.sep, header=0 if table.header else None,
                            dtype=str, encoding=encoding, keep_default_na=False, skip_blank_lines=False,
                            quoting=csv.QUOTE_MINIMAL if table.header else csv.QUOTE_NONE)
    except pd.errors.ParserError as error:
        binary = _first_undecodable_line(file, encoding)
        if binary:  # bytes that are not text confuse the parser's own count
            raise DataError(f"{display_path(file)} line {binary}: bytes that are not {encoding} text. {_REFETCH}") from error
        found = re.search(r"line (\d+), saw (\d+)", str(error))
        where = f"line {found.group(1)} has {found.group(2)} fields" if found else str(error)
        raise DataError(f"{display_path(file)}: {where}; expected {len(table.columns)} separated by {table.sep!r}. "
                        f"{_REFETCH}") from error
    except pd.errors.EmptyDataError as error:
        raise DataError(f"{display_path(file)} is empty. {_REFETCH}") from error
    except UnicodeDecodeError as error:
        raise DataError(f"{display_path(file)} line {_first_undecodable_line(file, encoding)}: bytes that are not "
                        f"{encoding} text. {_REFETCH}") from error
    if frame.shape[1] != len(table.columns):
        raise DataError(f"{display_path(file)} has {frame.shape[1]} fields per line; expected {len(table.columns)} "
                        f"separated by {table.sep!r}. {_REFETCH}")
    frame.columns = list(table.columns)
    return frame


def _first_undecodable_line(file: Path, encoding: str) -> int:
    """The number of the first line that is not text (undecodable, or with a NUL byte); 0 if none."""
    with open(file, "rb") as lines:
        for number, line in enumerate(lines, 1):
            try:
                line.decode(encoding)
            except UnicodeDecodeError:
                return number
            if b"\x00" in line:
                return number
    return 0


def _as_int(table: pd.DataFrame, column: str, file: Path, low: int, high: int, first_line: int = 1) -> pd.Series:
    """A column as integers in [low, high]; the first value that is not is reported with its line."""
    text = table[column].str.strip()
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() | (values != values.round()) | (values < low) | (values > high)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{display_path(file)} line {row + first_line}: {column} is {table[column].iloc[row]!r}, "
                        f"not a whole number from {low:,} to {high:,}. {_REFETCH}")
    return values.astype("int64")
