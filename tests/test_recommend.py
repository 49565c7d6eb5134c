"""Recommendations, fold-in, similar movies, ranking metrics and the command line, on small fixtures."""

import numpy as np
import pandas as pd
import pytest

from autorec_utils import __main__ as cli
from autorec_utils.evaluate import popularity_scores, random_scores, ranking_metrics, top_k_columns
from autorec_utils.load import load_movies, load_users
from autorec_utils.recommend import (
    find_movie,
    project_2d,
    recommend_for_new_user,
    similar_movies,
    top_k,
    user_embeddings,
)
from autorec_utils.splits import load_split
from autorec_utils.train import train_autorec

QUICK = {"epochs": 5, "hidden": 4}


@pytest.fixture
def setting(ml_folder):
    train, test = load_split("u1", ml_folder)
    users, movies = load_users(ml_folder), load_movies(ml_folder)
    return train, test, users, movies


def trained_on(setting, recipe="U-AutoRec (residual)", **overrides):
    train, _, users, movies = setting
    return train_autorec(train, recipe, user_ids=users.user_id, item_ids=movies.item_id, progress=False, **{**QUICK, **overrides})


# ---------------------------------------------------------------- top-K

@pytest.mark.filterwarnings("ignore:only .* movies are left")  # k = every movie, on purpose
@pytest.mark.parametrize("recipe", ["U-AutoRec (residual)", "I-AutoRec"])
def test_top_k_never_recommends_rated_or_unknown_movies(setting, recipe):
    train, _, _, movies = setting
    trained = trained_on(setting, recipe)
    for user in (1, 5, 12):
        rated = set(train.item_id[train.user_id == user])
        everything = top_k(trained, user, movies, k=len(movies))
        assert not rated & set(everything.item_id) and 4 not in set(everything.item_id)  # movie 4 is 'unknown'
        assert set(everything.item_id) == set(movies.item_id) - rated - {4}
        assert list(everything["rank"]) == list(range(1, len(everything) + 1))
        assert list(everything.columns) == ["rank", "item_id", "title", "year", "genres", "predicted_rating"]
        scores = trained.predictor.scores[trained.matrix.user_positions(user)]
        ordered = scores[trained.matrix.item_positions(everything.item_id)]
        assert np.all(np.diff(ordered) <= 0)  # best first
        assert np.array_equal(everything.predicted_rating, np.clip(ordered, 1, 5))  # the model's own scores, shown as stars
    with_unknown = top_k(trained, 1, movies, k=len(movies), include_unknown=True)
    assert 4 in set(with_unknown.item_id) or 4 in set(train.item_id[train.user_id == 1])


def test_top_k_bad_inputs(setting):
    _, _, _, movies = setting
    trained = trained_on(setting)
    with pytest.raises(ValueError, match=r"user 999 is not in the training data \(valid ids: 1\.\.\.12\)"):
        top_k(trained, 999, movies)
    for k in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="k must be a positive whole number"):
            top_k(trained, 1, movies, k=k)


def test_k_larger_than_the_candidates_returns_what_exists_and_says_so(setting):
    train, _, _, movies = setting
    trained = trained_on(setting)
    n_left = len(movies) - train[train.user_id == 2].item_id.nunique() - (0 if 4 in set(train.item_id[train.user_id == 2]) else 1)
    with pytest.warns(UserWarning, match=f"only {n_left} movies are left that user 2 has not rated; returning all of them, not 500"):
        found = top_k(trained, 2, movies, k=500)
    assert len(found) == n_left


def test_a_user_who_rated_everything_gets_an_explained_empty_list(setting):
    train, _, users, movies = setting
    everything = pd.DataFrame({"user_id": 1, "item_id": movies.item_id, "rating": 4.0})
    train = pd.concat([train[train.user_id != 1], everything], ignore_index=True)
    trained = train_autorec(train, "U-AutoRec (residual)", user_ids=users.user_id, item_ids=movies.item_id, progress=False, **QUICK)
    with pytest.warns(UserWarning, match="user 1 has rated every movie: there is nothing left to recommend"):
        found = top_k(trained, 1, movies, k=5, include_unknown=True)
    assert found.empty and list(found.columns)[:3] == ["rank", "item_id", "title"]


# ---------------------------------------------------------------- a new person

@pytest.mark.parametrize("overrides", [{}, {"fallback": "mean"}, {"residual": False}])
def test_fold_in_of_a_known_users_ratings_reproduces_its_predictions(setting, overrides):
    train, _, _, movies = setting
    # no validation part: then the baseline's b_u saw all of the user's ratings, as the fold-in's does
    trained = trained_on(setting, validation_fraction=0.0, **overrides)
    for user in (3, 7):
        own = train[train.user_id == user]
        as_new = recommend_for_new_user(trained, dict(zip(own.item_id.tolist(), own.rating.tolist(), strict=True)), movies, k=5)
        as_known = top_k(trained, user, movies, k=5)
        assert as_new.item_id.tolist() == as_known.item_id.tolist()
        assert np.allclose(as_new.predicted_rating, as_known.predicted_rating, atol=1e-5)


def test_new_person_by_titles(setting):
    _, _, _, movies = setting
    trained = trained_on(setting)
    found = recommend_for_new_user(trained, {"misérables": 5, "Movie 10 (1970)": 1, 11: 4}, movies, k=3)
    assert len(found) == 3 and not {2, 10, 11} & set(found.item_id)


@pytest.mark.parametrize("ratings, message", [
    ({}, "give at least one rating"),
    ({1: 6}, r"the rating of 1 is 6; ratings run from 1 to 5"),
    ({1: 0.5}, "ratings run from 1 to 5"),
    ({1: "five"}, "ratings run from 1 to 5"),
    ({"Movie 1": 4}, r"'Movie 1' matches \d+ movies: Movie 1 \(1961\) \(id 1\); Movie 10"),
    ({"Star Wars": 5}, "no movie title contains 'Star Wars'"),
    ({999: 5}, r"there is no movie with id 999 \(ids run 1\.\.\.30\)"),
])
def test_new_person_bad_inputs(setting, ratings, message):
    _, _, _, movies = setting
    with pytest.raises(ValueError, match=message):
        recommend_for_new_user(trained_on(setting), ratings, movies)


def test_i_autorec_cannot_fold_in_and_says_why(setting):
    _, _, _, movies = setting
    with pytest.raises(ValueError, match="I-AutoRec .* needs retraining; use a U-AutoRec model"):
        recommend_for_new_user(trained_on(setting, "I-AutoRec"), {1: 5}, movies)


def test_find_movie(setting):
    _, _, _, movies = setting
    assert find_movie(movies, 7) == 7
    assert find_movie(movies, "movie 7 (1967)") == 7  # exact, any case
    assert find_movie(movies, "MISÉRABLES") == 2  # part of a title
    with pytest.raises(ValueError, match=r"Did you mean .*'Movie 7 \(1967\)'"):
        find_movie(movies, "Movie 7 (1968)")
    with pytest.raises(ValueError, match="an id or a non-empty title"):
        find_movie(movies, "  ")


# ---------------------------------------------------------------- similar movies and embeddings

@pytest.mark.parametrize("recipe", ["U-AutoRec (residual)", "I-AutoRec"])
def test_similar_movies(setting, recipe):
    _, _, _, movies = setting
    trained = trained_on(setting, recipe)
    found = similar_movies(trained, 7, movies, k=5, min_ratings=1)
    assert len(found) == 5 and 7 not in set(found.item_id) and 4 not in set(found.item_id)
    assert np.all(np.diff(found.similarity) <= 0) and found.similarity.between(-1, 1).all()


@pytest.mark.parametrize("k, message", [(-1, "k must be a positive whole number, got -1"), (0, "got 0"), (2.5, "got 2.5"),
                                        (True, "got True")])
def test_similar_movies_checks_k_as_top_k_does(setting, k, message):
    _, _, _, movies = setting
    trained = trained_on(setting)
    with pytest.raises(ValueError, match=message):
        similar_movies(trained, 7, movies, k=k)
    with pytest.raises(ValueError, match="min_ratings must be a whole number >= 0"):
        similar_movies(trained, 7, movies, min_ratings=-2)


def test_user_embeddings_and_their_2d_map(setting):
    trained = trained_on(setting)
    vectors = user_embeddings(trained)
    assert vectors.shape == (12, 4)
    coordinates, explained = project_2d(vectors)
    assert coordinates.shape == (12, 2) and np.all(explained[:-1] >= explained[1:]) and explained.sum() <= 1 + 1e-9
    assert np.allclose(coordinates.mean(axis=0), 0, atol=1e-6)


# ---------------------------------------------------------------- ranking metrics

def test_ranking_metrics_by_hand():
    train = pd.DataFrame({"user_id": [1, 2], "item_id": [1, 2], "rating": [4.0, 4.0]})
    test = pd.DataFrame({"user_id": [1, 1, 2, 2], "item_id": [2, 3, 1, 4], "rating": [5.0, 2.0, 4.0, 4.0]})
    scores = np.array([[9.0, 3, 2, 1], [1, 9, 2, 3]])
    got = ranking_metrics(scores, train, test, user_ids=[1, 2], item_ids=[1, 2, 3, 4], k=2)
    # user 1: top-2 of {2,3,4} = 2,3 -> one hit of one relevant; user 2: top-2 of {1,3,4} = 4,3 -> one of two
    ndcg_user2 = 1 / (1 + 1 / np.log2(3))
    assert got == pytest.approx({"precision@2": 0.5, "recall@2": 0.75, "NDCG@2": (1 + ndcg_user2) / 2,
                                 "hit rate@2": 1.0, "coverage": 0.75, "users": 2})
    # without movie 4, user 2's list becomes 3, 1: every candidate movie is in somebody's list
    assert ranking_metrics(scores, train, test, [1, 2], [1, 2, 3, 4], k=2, exclude_items=[4])["coverage"] == 1.0
    with pytest.raises(ValueError, match="k must be a positive whole number"):
        ranking_metrics(scores, train, test, [1, 2], [1, 2, 3, 4], k=0)
    with pytest.raises(ValueError, match=r"scores has shape \(2, 4\), expected"):
        ranking_metrics(scores, train, test, [1, 2, 3], [1, 2, 3, 4])


@pytest.mark.parametrize("k", [1, 3, 10, 40])
def test_top_columns_is_the_head_of_a_stable_sort(k):
    # whole-star scores tie a lot, -inf marks non-candidates (some rows have fewer than k candidates), NaN ranks last
    rng = np.random.default_rng(k)
    scores = rng.integers(0, 4, (50, 30)).astype(float)
    scores[rng.random(scores.shape) < 0.5] = -np.inf
    scores[5, :] = -np.inf
    scores[7, 3] = np.nan
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    got = top_k_columns(scores, k)
    finite = np.isfinite(np.take_along_axis(scores, expected, axis=1))
    assert got.shape == expected.shape and np.array_equal(got[finite], expected[finite])
    assert np.array_equal(finite, np.isfinite(np.take_along_axis(scores, got, axis=1)))


def test_popularity_and_random_baselines(setting):
    train, test, users, movies = setting
    popular = popularity_scores(train, users.user_id, movies.item_id)
    assert popular.shape == (12, 30) and (popular == popular[0]).all()
    assert popular[0, 0] == (train.item_id == 1).sum()
    assert np.array_equal(random_scores(users.user_id, movies.item_id, seed=1), random_scores(users.user_id, movies.item_id, seed=1))
    metrics = ranking_metrics(popular, train, test, users.user_id, movies.item_id, k=3)
    assert 0 <= metrics["precision@3"] <= 1 and 0 < metrics["coverage"] <= 1


# ---------------------------------------------------------------- command line

@pytest.fixture
def cli_data(ml_folder, monkeypatch):
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(ml_folder.parent.parent))
    return ml_folder.parent.parent


def test_cli_trains_saves_then_loads(cli_data, capsys):
    assert cli.main(["--user", "6", "-k", "4", "--epochs", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Top 4 for user 6 (I-AutoRec, trained on all ratings):") and len(out.strip().splitlines()) == 6
    assert (cli_data / "checkpoints" / "i_autorec_all.pt").is_file()
    assert cli.main(["--user", "6", "-k", "4", "--epochs", "3"]) == 0  # now from the checkpoint
    captured = capsys.readouterr()
    assert "loaded" in captured.err and captured.out == out


@pytest.mark.parametrize("argv, message", [
    (["--user", "99", "--epochs", "2", "--quiet"], "error: user 99 is not in the training data (valid ids: 1...12)."),
    (["-k", "0"], "python -m autorec_utils: error: argument -k/--top: 0 is not positive (see --help)"),
    (["--user", "abc"], "argument --user: 'abc' is not a whole number"),
    (["--variant", "X"], "argument --variant: invalid choice: 'X'"),
    (["--split", "u9"], "argument --split: invalid choice: 'u9'"),
])
def test_cli_bad_input_exits_non_zero_with_one_line(cli_data, capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        code = cli.main(argv)
        raise SystemExit(code)
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and len([line for line in err if "error" in line]) == 1


def test_cli_says_when_the_list_is_shorter_than_k(cli_data, capsys):
    assert cli.main(["--user", "3", "-k", "500", "--epochs", "2", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("note: only ") and "returning all of them, not 500" in captured.err
    assert captured.out.startswith("Top ") and "Top 500" not in captured.out


def test_cli_corrupt_checkpoint(cli_data, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert cli.main(["--checkpoint", str(bad), "--quiet"]) == 2
    assert "is not a readable checkpoint" in capsys.readouterr().err


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--help"])
    assert stopped.value.code == 0 and "--variant" in capsys.readouterr().out


def test_embeddings_of_a_residual_model_read_residuals(setting):
    import torch

    trained = trained_on(setting)  # U-AutoRec (residual) learns residuals of the bias baseline
    matrix = trained.matrix
    residuals = (matrix.values - trained.bias.predict_matrix(matrix)) * matrix.mask
    with torch.no_grad():
        expected = trained.model.encode(residuals).numpy()
    assert np.allclose(user_embeddings(trained), expected)


def test_cli_recommends_with_the_list_model(cli_data, capsys):
    assert cli.main(["--variant", "L", "--user", "6", "-k", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Top 3 for user 6 (EASE, trained on all ratings):") and "score" in out.splitlines()[1]
    assert (cli_data / "checkpoints" / "ease_all.pt").is_file()
    assert cli.main(["--variant", "L", "--user", "6", "-k", "3"]) == 0  # the second run loads it, not refits
    captured = capsys.readouterr()
    assert "loaded" in captured.err and captured.out == out
    assert cli.main(["--variant", "L", "--epochs", "5", "--quiet"]) == 2
    assert "EASE) is fitted in closed form: it takes no --epochs" in capsys.readouterr().err


def test_cli_help_says_which_model_for_what(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "makes the best lists" in text and "makes the best rating predictions" in text


# ---------------------------------------------------------------- every model (tests/test_interface.py runs each
# chapter-04 function on every kind of model)

@pytest.mark.parametrize("model", ["I-AutoRec", "EASE", "Mult-DAE"])
def test_a_user_without_training_ratings_gets_the_fallback_with_a_note(setting, model):
    from autorec_utils.topn import train_list_model

    train, _, users, movies = setting
    ids = {"user_ids": users.user_id, "item_ids": movies.item_id}
    without_user_1 = train[train.user_id != 1]
    trained = (train_list_model(without_user_1, model, **({"l2": 10.0} if model == "EASE" else {"hidden": 4, "epochs": 2}),
                                progress=False, **ids) if model != "I-AutoRec" else
               train_autorec(without_user_1, model, progress=False, **ids, **QUICK))
    with pytest.warns(UserWarning, match="user 1 has no training ratings: .* gets (the bias baseline|the most-picked movies)"):
        found = top_k(trained, 1, movies, k=3)
    if model != "I-AutoRec":  # a list model falls back on popularity: the most-picked movies come first
        counts = without_user_1.item_id.value_counts()
        assert found.item_id.tolist() == counts[counts.index != 4].sort_index().sort_values(ascending=False, kind="stable").index[:3].tolist()
