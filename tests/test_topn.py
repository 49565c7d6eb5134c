"""Chapter 06's list models: the closed form of EASE, the multinomial loss, the autoencoders, and the
list API (top-K, fold-in of a new person) with its bad inputs."""

import numpy as np
import pandas as pd
import pytest
import torch

from autorec_utils.load import load_movies
from autorec_utils.recommend import top_k
from autorec_utils.splits import load_split, per_user_split
from autorec_utils.topn import EASE, MultDAE, MultVAE, multinomial_loss, recommend_from_liked, train_list_model

QUICK = {"hidden": 8, "epochs": 4, "batch_size": 4}


def test_ease_solves_its_constrained_least_squares():
    generator = torch.Generator().manual_seed(0)
    picked = (torch.rand(30, 6, generator=generator) < 0.4).float()
    l2 = 2.0
    weights = EASE(l2).fit(picked).weights.double()
    assert torch.all(weights.diagonal() == 0)
    x = picked.double()
    for j in range(6):  # column j: ridge regression of x_j on the other columns
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        solution = torch.linalg.solve(a.T @ a + l2 * torch.eye(5, dtype=torch.float64), a.T @ x[:, j])
        assert torch.allclose(weights[others, j], solution, atol=1e-5)


def test_multinomial_loss_by_hand():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    picked = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    log_p = torch.log_softmax(logits, dim=1)
    expected = -((log_p[0, 0] + log_p[0, 2]) + log_p[1, 1]) / 2
    assert torch.isclose(multinomial_loss(logits, picked), expected)


@pytest.mark.parametrize("cls", [MultDAE, MultVAE])
def test_autoencoders_map_picks_to_one_logit_per_movie(cls):
    torch.manual_seed(0)
    model = cls(7, hidden=3).eval()
    picked = torch.tensor([[1.0, 0, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1]])
    assert model(picked).shape == (2, 7)
    assert torch.equal(model(picked), model(picked))  # eval mode: no dropout, no sampling
    with pytest.raises(ValueError, match="dropout must be in"):
        cls(7, hidden=3, dropout=1.0)


@pytest.mark.parametrize("kind, settings", [("ease", {"l2": 10.0}), ("mult-dae", QUICK), ("mult-vae", QUICK)])
def test_list_models_rank_unrated_movies(ml_folder, kind, settings):
    train, test = load_split("u1", ml_folder)
    movies = load_movies(ml_folder)
    trained = train_list_model(train, kind, **settings)
    found = top_k(trained, 6, movies, k=5)
    assert list(found.columns) == ["rank", "item_id", "title", "year", "genres", "score"]
    assert not set(found.item_id) & set(train.item_id[train.user_id == 6]) and 4 not in set(found.item_id)
    assert np.all(np.diff(found.score) <= 0)
    liked = recommend_from_liked(trained, [1, "Movie 3 (1963)"], movies, k=3)
    assert len(liked) == 3 and not {1, 3} & set(liked.item_id)
    with pytest.raises(ValueError, match="ranks movies, it does not predict ratings"):
        trained.predictor.predict([1], [1])


def test_the_autoencoders_keep_the_best_validation_epoch(ml_folder):
    train, _ = load_split("u1", ml_folder)
    fit_part, validation = per_user_split(train, test_fraction=0.3, seed=0)
    trained = train_list_model(fit_part, "mult-dae", validation=validation, threshold=1.0, hidden=8, epochs=6,
                               batch_size=4, eval_every=2)
    assert list(trained.history.index) == [2, 4, 6]
    again = train_list_model(fit_part, "mult-dae", validation=validation, threshold=1.0, hidden=8, epochs=6, batch_size=4,
                             eval_every=2)
    assert np.array_equal(trained.predictor.scores, again.predictor.scores)  # same seed, same model


@pytest.mark.parametrize("call, message", [
    (lambda t, m: recommend_from_liked(t, [], m), "give at least one movie"),
    (lambda t, m: recommend_from_liked(t, ["No Such Movie"], m), "no movie title contains 'No Such Movie'"),
    (lambda t, m: recommend_from_liked(t, [1, 1], m), "already in the list"),
    (lambda t, m: recommend_from_liked(t, [1], m, k=0), "k must be a positive whole number, got 0"),
    (lambda t, m: top_k(t, 6, m, k=-3), "k must be a positive whole number, got -3"),
    (lambda t, m: top_k(t, 99, m), "user 99 is not in the training data"),
])
def test_list_api_bad_inputs(ml_folder, call, message):
    train, _ = load_split("u1", ml_folder)
    trained = train_list_model(train, "ease", l2=10.0)
    with pytest.raises(ValueError, match=message):
        call(trained, load_movies(ml_folder))


@pytest.mark.parametrize("l2", [0, -1.0, True, "300"])
def test_ease_needs_a_positive_lambda(l2):
    with pytest.raises(ValueError, match="l2 \\(lambda\\) must be a positive number"):
        EASE(l2)


def test_bad_settings_are_named(ml_folder):
    train, _ = load_split("u1", ml_folder)
    with pytest.raises(ValueError, match="kind='svd' is not one of"):
        train_list_model(train, "svd")
    with pytest.raises(ValueError, match=r"EASE takes only l2, not \['hidden'\]"):
        train_list_model(train, "ease", hidden=3)
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        train_list_model(train, "mult-dae", epochs=0)


def test_a_person_who_picked_every_movie_gets_an_explained_empty_list(ml_folder):
    train, _ = load_split("u1", ml_folder)
    movies = load_movies(ml_folder)
    trained = train_list_model(train, "ease", l2=10.0)
    with pytest.warns(UserWarning, match="this person has rated every movie"):
        found = recommend_from_liked(trained, list(movies.item_id), movies, k=5, include_unknown=True)
    assert found.empty


def test_scores_follow_the_users_and_movies_of_the_matrix(ml_folder):
    train, _ = load_split("u1", ml_folder)
    trained = train_list_model(train, "ease", l2=10.0, user_ids=range(1, 13), item_ids=range(1, 31))
    assert trained.predictor.scores.shape == (12, 30)
    row = trained.predictor.user_scores(5)
    assert np.allclose(row, (trained.matrix.mask[4].float() @ trained.model.weights).numpy())
    assert isinstance(trained.history, pd.DataFrame)
