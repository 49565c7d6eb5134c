"""Chapter 06's list models: the closed form of EASE, the multinomial loss, the autoencoders, and the
list API (top-K, fold-in of a new person) with its bad inputs."""

import numpy as np
import pytest
import torch

from autorec_utils.load import load_movies
from autorec_utils.matrix import rating_matrix
from autorec_utils.recommend import recommend_from_liked, top_k
from autorec_utils.splits import load_split, validation_entries
from autorec_utils.topn import EASE, ListProblem, MultDAE, MultVAE, multinomial_loss, train_list_model
from autorec_utils.train import fit

QUICK = {"hidden": 8, "epochs": 4, "batch_size": 4, "progress": False}


def test_ease_solves_its_constrained_least_squares():
    generator = torch.Generator().manual_seed(0)
    picked = (torch.rand(30, 6, generator=generator) < 0.4).float()
    l2 = 2.0
    weights = EASE(6, l2).fit(picked).weights.double()
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
    with pytest.raises(ValueError, match="dropout must be a finite number >= 0 and < 1"):
        cls(7, hidden=3, dropout=1.0)


def test_mult_vae_owns_its_loss_with_the_annealed_kl_term():
    torch.manual_seed(0)
    model = MultVAE(7, hidden=3, dropout=0.0, beta=0.5, anneal_steps=2)
    picked = torch.tensor([[1.0, 0, 1, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0, 1]])
    losses = []
    for _ in range(3):
        torch.manual_seed(1)  # the same noise each time: only the KL weight moves (0, 0.25, 0.5)
        losses.append(float(model.loss(picked).detach()))
    mean, log_variance = model._posterior(picked)
    kl = float(0.5 * (log_variance.exp() + mean.square() - 1 - log_variance).sum(dim=1).mean().detach())
    assert losses[1] - losses[0] == pytest.approx(0.25 * kl, rel=1e-4) and losses[2] - losses[1] == pytest.approx(0.25 * kl, rel=1e-4)


@pytest.mark.parametrize("kind, settings", [("EASE", {"l2": 10.0}), ("Mult-DAE", QUICK), ("Mult-VAE", QUICK)])
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


def test_the_autoencoders_are_trained_by_fit_and_keep_the_best_validation_epoch(ml_folder):
    train, _ = load_split("u1", ml_folder)
    settings = {"hidden": 8, "epochs": 6, "batch_size": 4, "validation_fraction": 0.3, "relevant_from": 1.0, "progress": False}
    trained = train_list_model(train, "Mult-DAE", **settings)
    frame = trained.history.to_frame()
    assert list(frame.index) == [1, 2, 3, 4, 5, 6] and trained.history.watch == "val_ndcg" and trained.history.mode == "max"
    assert frame.val_ndcg.idxmax() == trained.history.best_epoch  # the highest NDCG, first epoch among ties
    again = train_list_model(train, "Mult-DAE", **settings)
    assert np.array_equal(trained.predictor.scores, again.predictor.scores)  # same seed, same model


def test_the_list_problem_hides_the_validation_picks_and_scores_ndcg_on_them(ml_folder):
    train, _ = load_split("u1", ml_folder)
    matrix = rating_matrix(train)
    validation = validation_entries(matrix.n_observed, 0.3, seed=0)
    torch.manual_seed(0)
    problem = ListProblem(MultDAE(matrix.shape[1], hidden=4), matrix, validation, batch_size=4, relevant_from=1.0)
    held = matrix.entry_mask(validation)
    assert torch.equal(problem.inputs.bool(), matrix.mask & ~held)  # the model never reads a held-back pick
    assert np.array_equal(problem.relevant, held.numpy())
    history = fit(problem, epochs=2, progress=False)
    assert 0 <= history.best["val_ndcg"] <= 1
    with pytest.raises(ValueError, match="the list autoencoders train with Adam"):
        fit(problem, optimizer="rprop", progress=False)


@pytest.mark.parametrize("call, message", [
    (lambda t, m: recommend_from_liked(t, [], m), "give at least one movie"),
    (lambda t, m: recommend_from_liked(t, "No Such Movie", m), "no movie title contains 'No Such Movie'"),
    (lambda t, m: recommend_from_liked(t, ["No Such Movie"], m), "no movie title contains 'No Such Movie'"),
    (lambda t, m: recommend_from_liked(t, [1, 1], m), "already in the list"),
    (lambda t, m: recommend_from_liked(t, [1], m, k=0), "k must be a positive whole number, got 0"),
    (lambda t, m: top_k(t, 6, m, k=-3), "k must be a positive whole number, got -3"),
    (lambda t, m: top_k(t, 99, m), "user 99 is not in the training data"),
])
def test_list_api_bad_inputs(ml_folder, call, message):
    train, _ = load_split("u1", ml_folder)
    trained = train_list_model(train, "EASE", l2=10.0)
    with pytest.raises(ValueError, match=message):
        call(trained, load_movies(ml_folder))


@pytest.mark.parametrize("l2", [0, -1.0, True, "300", float("inf"), float("nan")])
def test_ease_needs_a_finite_positive_lambda(l2):
    with pytest.raises(ValueError, match="l2 \\(lambda\\) must be a finite number > 0"):
        EASE(5, l2)


def test_bad_settings_are_named(ml_folder):
    train, _ = load_split("u1", ml_folder)
    with pytest.raises(ValueError, match="there is no recipe 'svd'; the named ones are"):
        train_list_model(train, "svd")
    with pytest.raises(ValueError, match=r"EASERecipe has no setting\(s\) \['hidden'\]; its settings are l2"):
        train_list_model(train, "EASE", hidden=3)
    with pytest.raises(ValueError, match="epochs must be a positive whole number"):
        train_list_model(train, "Mult-DAE", epochs=0)
    with pytest.raises(ValueError, match="AutoRecRecipe is a recipe for a ratings model: train it with train_autorec"):
        train_list_model(train, "I-AutoRec")


def test_a_person_who_picked_every_movie_gets_an_explained_empty_list(ml_folder):
    train, _ = load_split("u1", ml_folder)
    movies = load_movies(ml_folder)
    trained = train_list_model(train, "EASE", l2=10.0)
    with pytest.warns(UserWarning, match="this person has rated every movie"):
        found = recommend_from_liked(trained, list(movies.item_id), movies, k=5, include_unknown=True)
    assert found.empty


def test_scores_follow_the_users_and_movies_of_the_matrix(ml_folder):
    train, _ = load_split("u1", ml_folder)
    trained = train_list_model(train, "EASE", l2=10.0, user_ids=range(1, 13), item_ids=range(1, 31))
    assert trained.predictor.scores.shape == (12, 30)
    row = trained.predictor.user_scores(5)
    assert np.allclose(row, (trained.matrix.mask[4].float() @ trained.model.weights).numpy())
    assert trained.history.records == [] and trained.recipe.l2 == 10.0
