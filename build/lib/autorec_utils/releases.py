"""The MovieLens releases, described once as a table, and where their files live (chapters 01 and 05).

ML-100K is one row of ``RELEASES``; the larger releases are rows too, read by the same fetch and the
same loaders. Every row says where the zip is, its published checksum, its shape and the format of
each file inside it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TypedDict

__all__ = [  # what the notebooks, the command line and users call
    "DATA_DIR_ENV", "GENRES", "RELEASES", "SPLITS", "ChecksumError", "DataError", "DownloadError", "Release",
    "Table", "data_root", "default_data_dir", "display_path", "missing_files", "release_dir", "release_info",
    "replace_readable", "written_atomically",
]

DATA_DIR_ENV = "AUTOREC_DATA_DIR"
SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")  # ML-100K's canonical splits (GroupLens' mku.sh)
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # the order of the 19 flags in ML-100K's u.item (and of u.genre)

RATING_COLUMNS = ("user_id", "item_id", "rating", "timestamp")


class DataError(ValueError):
    """A data file or archive is not what the MovieLens release should be (chapter 01)."""


class ChecksumError(DataError):
    """A download's checksum is not the published one (chapter 01)."""


class DownloadError(DataError):
    """The download did not complete (no connection, an HTTP error, a transfer cut short) (chapter 01)."""


@dataclass(frozen=True)
class Table:
    """One file of a release: its name, separator and columns (chapter 01)."""

    file: str
    sep: str  # "\t" or "|" (ML-100K), "::" (.dat files), "," (CSV files, with a header line)
    columns: tuple[str, ...]
    encoding: str = "utf-8"

    @property
    def header(self) -> bool:
        return self.sep == ","


@dataclass(frozen=True)
class Release:
    """One row of the table: a MovieLens release (chapter 05)."""
    name: str  # "ml-100k": also the zip's name and the folder under <data_dir>/raw/
    folder: str  # the folder inside the zip
    algorithm: str  # of the published checksum
    checksum: str
    shape: tuple[int, int, int]  # users, movies, ratings (GroupLens' README)
    ratings: Table
    movies: Table
    users: Table | None = None
    half_stars: bool = False  # ratings 0.5 ... 5 in half stars, else whole stars 1 ... 5
    split_files: tuple[str, ...] = ()  # canonical train/test files that ship with the release

    @property
    def url(self) -> str:
        return f"https://files.grouplens.org/datasets/movielens/{self.name}.zip"

    @property
    def required_files(self) -> tuple[str, ...]:
        tables = (self.ratings, self.movies) + ((self.users,) if self.users else ())
        return tuple(table.file for table in tables) + self.split_files


class _Format(TypedDict):
    """The separator and columns shared by the ratings files of several releases."""

    sep: str
    columns: tuple[str, ...]


_ITEM_COLUMNS = ("item_id", "title", "genres")
_DAT: _Format = {"sep": "::", "columns": RATING_COLUMNS}
_CSV: _Format = {"sep": ",", "columns": RATING_COLUMNS}

RELEASES = {release.name: release for release in (
    Release("ml-100k", "ml-100k", "sha1", "cd4dcac4241c8a4ad7badc7ca635da8a69dddb83", (943, 1_682, 100_000),
            ratings=Table("u.data", "\t", RATING_COLUMNS),
            movies=Table("u.item", "|", ("item_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES),
                         encoding="latin-1"),
            users=Table("u.user", "|", ("user_id", "age", "gender", "occupation", "zip_code")),
            split_files=tuple(f"{split}.{part}" for split in SPLITS for part in ("base", "test"))),
    Release("ml-1m", "ml-1m", "sha256", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            (6_040, 3_706, 1_000_209), ratings=Table("ratings.dat", **_DAT, encoding="latin-1"),
            movies=Table("movies.dat", "::", _ITEM_COLUMNS, encoding="latin-1")),
    Release("ml-10m", "ml-10M100K", "md5", "ce571fd55effeba0271552578f2648bd", (69_878, 10_677, 10_000_054),
            ratings=Table("ratings.dat", **_DAT), movies=Table("movies.dat", "::", _ITEM_COLUMNS), half_stars=True),
    Release("ml-20m", "ml-20m", "sha256", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            (138_493, 26_744, 20_000_263), ratings=Table("ratings.csv", **_CSV),
            movies=Table("movies.csv", ",", _ITEM_COLUMNS), half_stars=True),
    Release("ml-25m", "ml-25m", "sha256", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            (162_541, 59_047, 25_000_095), ratings=Table("ratings.csv", **_CSV),
            movies=Table("movies.csv", ",", _ITEM_COLUMNS), half_stars=True),
    # MD5 from one public source quoting GroupLens' ml-32m.zip.md5; re-check when GroupLens is reachable.
    Release("ml-32m", "ml-32m", "md5", "d472be332d4daa821edc399621853b57", (200_948, 84_432, 32_000_204),
            ratings=Table("ratings.csv", **_CSV), movies=Table("movies.csv", ",", _ITEM_COLUMNS), half_stars=True),
)}


def release_info(name: str) -> Release:
    """The row of ``RELEASES`` called ``name`` (chapter 05), with a clear error for anything else."""
    if name not in RELEASES:
        raise ValueError(f"There is no MovieLens release {name!r} here; use one of {', '.join(RELEASES)}.")
    return RELEASES[name]


def default_data_dir() -> Path:
    """``$AUTOREC_DATA_DIR`` if set, else ``data/`` of this repository (or a user cache folder when
    ``autorec_utils`` is installed outside a checkout). Chapter 01."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "data"
    return Path.home() / ".cache" / "autorec_utils"


def data_root(data_dir: str | Path | None = None) -> Path:
    """The data folder: ``data_dir`` if given (``~`` expanded), else ``default_data_dir()`` (chapter 01)."""
    return Path(data_dir if data_dir is not None else default_data_dir()).expanduser()


def release_dir(data_dir: str | Path | None = None, release: str = "ml-100k") -> Path:
    """The folder holding a release's files, ``<data_dir>/raw/<release>`` (chapter 01)."""
    return data_root(data_dir) / "raw" / release


def display_path(path: str | Path) -> str:
    """A path relative to the repository when inside it (for messages and notebook output), else as
    given (chapter 01)."""
    path = Path(path).expanduser().resolve()
    for root in (Path.cwd(), *Path.cwd().parents):
        if (root / "pyproject.toml").is_file():
            try:
                return str(path.relative_to(root))
            except ValueError:
                break
    return str(path)


def missing_files(folder: str | Path, release: str = "ml-100k") -> list[str]:
    """The files of ``release`` that ``folder`` lacks (empty files count as missing) (chapter 01)."""
    folder = Path(folder)
    return [name for name in release_info(release).required_files
            if not (folder / name).is_file() or (folder / name).stat().st_size == 0]


def replace_readable(temporary: str | Path, final: str | Path) -> None:
    """Rename a finished temporary file or folder into place, readable as the user's umask allows
    (temporary files start private: 0600 / 0700), so that classmates on a shared machine can read it (chapter 01)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, (0o777 if Path(temporary).is_dir() else 0o666) & ~umask)
    os.replace(temporary, final)


@contextmanager
def written_atomically(final: Path, prefix: str) -> Iterator[BinaryIO]:
    """A binary file to write ``final`` through: a hidden temporary file beside it (named ``prefix``...``.part``),
    renamed into place only when the block ends without an error, and removed otherwise -- so a half-written
    file never takes the place of a good one (chapters 01 and 03)."""
    fd, temporary = tempfile.mkstemp(dir=final.parent, prefix=prefix, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
        replace_readable(temporary, final)
    finally:
        Path(temporary).unlink(missing_ok=True)
