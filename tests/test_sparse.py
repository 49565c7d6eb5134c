"""Chapter 05's sparse path: a SparseRatingMatrix holds only the observed ratings, fit() trains on it with
the same objective as on the dense matrix, and everything chapter 04 does works on the model it trains."""

import numpy as np
import pandas as pd
import pytest
import torch

from autorec_utils import train as training
from autorec_utils.checkpoint import load_checkpoint, save_checkpoint
from autorec_utils.evaluate import AutoRecPredictor, BiasBaseline, score
from autorec_utils.generate import generate_ratings
from autorec_utils.load import load_movies
from autorec_utils.matrix import rating_matrix
from autorec_utils.model import AutoRec
from autorec_utils.recommend import movie_embeddings, similar_movies, top_k, user_embeddings
from autorec_utils.sparse import (
    SparseAutoRecPredictor,
    SparseRatingMatrix,
    decode_at,
    encode,
    sparse_rating_matrix,
    store_encoder_by_input,
)
from autorec_utils.splits import load_split, validation_entries
from autorec_utils.train import Trained, autorec_problem, fit, random_splits_rmse, seed_everything, train_autorec

IDS = {"user_ids": np.arange(1, 13), "item_ids": np.arange(1, 31)}  # the fixture's users and movies


@pytest.fixture
def small_ratings():
    return pd.DataFrame({"user_id": [1, 1, 2, 5, 5], "item_id": [10, 30, 20, 10, 20], "rating": [5.0, 3.0, 4.0, 1.0, 0.5]})


@pytest.mark.parametrize("by", ["user", "item"])
def test_sparse_matrix_holds_the_same_ratings(small_ratings, by):
    ids = {"user_ids": [1, 2, 5, 7], "item_ids": [10, 20, 30]}
    sparse, dense = sparse_rating_matrix(small_ratings, by=by, **ids), rating_matrix(small_ratings, by=by, **ids)
    assert sparse.shape == dense.shape and sparse.by == by and sparse.n_observed == 5
    assert sparse.density == pytest.approx(5 / 12)
    assert torch.equal(sparse.to_dense().values, dense.values) and torch.equal(sparse.to_dense().mask, dense.mask)
    assert torch.equal(sparse.transpose().to_dense().values, dense.transpose().values)
    assert np.array_equal(sparse.user_ids, dense.user_ids) and np.array_equal(sparse.item_ids, dense.item_ids)
    again = SparseRatingMatrix.from_dense(dense)
    assert torch.equal(again.crow, sparse.crow) and torch.equal(again.col, sparse.col) and torch.equal(again.value, sparse.value)
    for a, b in zip(sparse.entries(), dense.entries(), strict=True):  # the same row-major order of the ratings
        assert torch.equal(a, b)
    (sparse_users, sparse_items), (dense_users, _) = sparse.rating_counts(), dense.rating_counts()
    assert np.array_equal(sparse_users, dense_users) and list(sparse_items) == [2, 2, 1]
    for user in (1, 5, 7):
        assert np.array_equal(sparse.rated_items(user), dense.rated_items(user))
    pd.testing.assert_frame_equal(sparse.to_frame(), dense.to_frame())


def test_sparse_matrix_rejects_what_the_dense_one_rejects(small_ratings):
    with pytest.raises(ValueError, match="more than one rating of movie 10 by user 1"):
        sparse_rating_matrix(pd.concat([small_ratings, small_ratings.iloc[:1]]))
    with pytest.raises(ValueError, match=r"user id 5 is not among the matrix's user ids"):
        sparse_rating_matrix(small_ratings, user_ids=[1, 2])
    with pytest.raises(ValueError, match=r"user 3 is not in the training data \(valid ids: 1\.\.\.5\)"):
        sparse_rating_matrix(small_ratings).rated_items(3)


def run(matrix, batch_size=None, **options):
    seed_everything(3)
    model = AutoRec(matrix.shape[1], hidden=6)
    problem = autorec_problem(model, matrix, validation_entries(matrix.n_observed, 0.2, 3), l2=0.5, batch_size=batch_size)
    history = fit(problem, progress=False, seed=3, **{"epochs": 25, "lr": 0.02, "patience": 25, **options})
    return model, history.to_frame().drop(columns="seconds")


@pytest.mark.parametrize("by", ["user", "item"])
@pytest.mark.parametrize("options", [{}, {"batch_size": 4}, {"batch_size": 5, "lr_decay": 0.9}])
def test_sparse_and_dense_paths_minimise_the_same_objective(ml_folder, by, options):
    train, _ = load_split("u1", ml_folder)
    dense_model, dense_history = run(rating_matrix(train, by=by), **options)
    sparse_model, sparse_history = run(sparse_rating_matrix(train, by=by), **options)
    pd.testing.assert_frame_equal(dense_history, sparse_history, rtol=1e-4)  # the losses include the penalty
    for a, b in zip(dense_model.parameters(), sparse_model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_the_path_follows_the_matrix_and_the_recipe_decides_by_size(ml_folder, monkeypatch):
    from autorec_utils import matrix as matrix_module
    from autorec_utils import sparse as sparse_module

    train, _ = load_split("u1", ml_folder)
    used = []
    for module, name in ((training, "DenseProblem"), (sparse_module, "SparseProblem")):  # train imports the sparse one lazily
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, _original=original, _name=name: used.append(_name) or _original(*a))
    run(rating_matrix(train))
    run(sparse_rating_matrix(train))
    settings = {"epochs": 2, "hidden": 3, "batch_size": 4, "progress": False}
    assert isinstance(train_autorec(train, "I-AutoRec", **settings).matrix, training.RatingMatrix)
    monkeypatch.setattr(matrix_module, "DENSE_LIMIT", 10)  # 12 users x 30 movies is now "too big"
    assert isinstance(train_autorec(train, "I-AutoRec", **settings).matrix, SparseRatingMatrix)
    assert used == ["DenseProblem", "SparseProblem", "DenseProblem", "SparseProblem"]


def test_what_the_sparse_path_refuses(ml_folder):
    train, _ = load_split("u1", ml_folder)
    matrix = sparse_rating_matrix(train)
    model = AutoRec(matrix.shape[1], hidden=4)
    with pytest.raises(ValueError, match=r"the sparse path trains with Adam \(optimizer='adam'\), not rprop"):
        fit(autorec_problem(model, matrix), optimizer="rprop", progress=False)
    with pytest.raises(ValueError, match="the sparse path trains on the ratings themselves: use no baseline"):
        autorec_problem(model, matrix, baseline=torch.zeros(matrix.shape))
    with pytest.raises(ValueError, match="sparse path runs on CUDA or the CPU"):
        autorec_problem(model, matrix, batch_size=64, device="mps")
    with pytest.raises(ValueError, match="residual recipe needs the bias baseline as a dense"):
        train_autorec(train, "U-AutoRec (residual)", sparse=True, batch_size=256)


# ---------------------------------------------------------------- the sparse products and their gradients

def toy_batch(seed=0, rows=5, cols=7):
    generator = torch.Generator().manual_seed(seed)
    dense = torch.randint(1, 6, (rows, cols), generator=generator).float()
    dense[torch.rand(rows, cols, generator=generator) < 0.6] = 0.0
    dense[2] = 0.0  # a row without ratings
    return dense, dense.to_sparse_csr()


@pytest.mark.parametrize("by_input", [False, True])
def test_sparse_products_equal_the_dense_model_and_its_gradients(by_input):
    dense, batch = toy_batch()
    torch.manual_seed(0)
    model = AutoRec(7, hidden=4)
    if by_input:
        store_encoder_by_input(model)
        assert model.encoder.weight.T.is_contiguous()
    mask = dense > 0

    def gradients(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    dense_out = model(dense)
    expected = gradients(((dense_out - dense)[mask]).square().sum())
    codes = encode(model, batch)
    sparse_out = decode_at(model, codes, batch)
    assert torch.allclose(codes, model.encode(dense), atol=1e-6)
    assert torch.allclose(sparse_out, dense_out[mask], atol=1e-6)  # CSR order is row-major, as mask indexing
    got = gradients((sparse_out - batch.values()).square().sum())
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, atol=1e-5)


def test_sparse_products_reject_what_they_cannot_read():
    dense, batch = toy_batch()
    model = AutoRec(7, hidden=4)
    with pytest.raises(TypeError, match="must be a sparse CSR tensor"):
        encode(model, dense)
    with pytest.raises(ValueError, match="reads vectors of length 7"):
        encode(model, dense[:, :6].to_sparse_csr())
    with pytest.raises(ValueError, match="pattern has 5 rows for 3 codes"):
        decode_at(model, torch.zeros(3, 4), batch)


# ---------------------------------------------------------------- predictions, recommendations, checkpoints

@pytest.mark.parametrize("by", ["user", "item"])
def test_sparse_predictor_equals_the_dense_one(ml_folder, by):
    train, test = load_split("u1", ml_folder)
    sparse = sparse_rating_matrix(train, by=by, **IDS)
    model, _ = run(sparse, batch_size=4)
    bias = BiasBaseline().fit(train)
    dense_predictor = AutoRecPredictor(model, rating_matrix(train, by=by, **IDS), fallback=bias)
    sparse_predictor = SparseAutoRecPredictor(model, sparse, fallback=bias)
    users = np.concatenate([test.user_id, [1, 99999]])  # and a user the matrix does not know
    items = np.concatenate([test.item_id, [99999, 1]])
    assert np.allclose(sparse_predictor.predict(users, items), dense_predictor.predict(users, items), atol=1e-5)
    assert np.allclose(sparse_predictor.scores, dense_predictor.scores, atol=1e-5)
    assert np.allclose(sparse_predictor.codes, dense_predictor.codes, atol=1e-6)
    for user in (1, 7):
        assert np.allclose(sparse_predictor.user_scores(user), dense_predictor.user_scores(user), atol=1e-5)
    with pytest.raises(ValueError, match="user 99999 is not in the training data"):
        sparse_predictor.user_scores(99999)


def twins(ml_folder, recipe):
    """The same trained model, once with its sparse matrix and predictor, once with dense ones."""
    train, _ = load_split("u1", ml_folder)
    sparse = train_autorec(train, recipe, sparse=True, batch_size=4, epochs=10, hidden=5, progress=False, **IDS)
    matrix = rating_matrix(train, by=sparse.matrix.by, **IDS)
    dense_predictor = AutoRecPredictor(sparse.model, matrix, fallback=sparse.predictor.fallback)
    dense = Trained(sparse.model, matrix, dense_predictor, sparse.recipe, sparse.history, 0.0, bias=sparse.bias)
    return sparse, dense


@pytest.mark.parametrize("recipe", ["I-AutoRec", "U-AutoRec"])
def test_chapter_04_works_on_a_sparse_trained_model(ml_folder, recipe):
    movies = load_movies(ml_folder)
    sparse, dense = twins(ml_folder, recipe)
    assert isinstance(sparse.predictor, SparseAutoRecPredictor)
    for user in (1, 6, 12):
        a, b = top_k(sparse, user, movies, k=5), top_k(dense, user, movies, k=5)
        # the same list, up to the order of movies whose scores tie to within rounding (the paths sum in other orders)
        assert np.allclose(a.predicted_rating, b.predicted_rating, atol=1e-5)
        for x, y in ((a, b), (b, a)):
            for item, rating in zip(x.item_id, x.predicted_rating, strict=True):
                assert item in set(y.item_id) or abs(rating - y.predicted_rating.iloc[-1]) < 1e-5
    a, b = similar_movies(sparse, 1, movies, k=4, min_ratings=0), similar_movies(dense, 1, movies, k=4, min_ratings=0)
    assert np.allclose(a.similarity, b.similarity, atol=1e-5) and set(a.item_id) == set(b.item_id)  # ties may swap
    assert np.allclose(user_embeddings(sparse), user_embeddings(dense), atol=1e-6)
    assert np.allclose(movie_embeddings(sparse), movie_embeddings(dense), atol=1e-6)


@pytest.mark.parametrize("recipe", ["I-AutoRec", "U-AutoRec"])
def test_a_sparse_trained_checkpoint_loads_back_sparse(ml_folder, tmp_path, recipe):
    train, test = load_split("u1", ml_folder)
    sparse, _ = twins(ml_folder, recipe)
    loaded = load_checkpoint(save_checkpoint(sparse, tmp_path / "model.pt", split="u1"), data_path=ml_folder)
    assert isinstance(loaded.matrix, SparseRatingMatrix) and isinstance(loaded.predictor, SparseAutoRecPredictor)
    assert np.allclose(loaded.predictor.predict(test.user_id, test.item_id), sparse.predictor.predict(test.user_id, test.item_id))
    assert list(top_k(loaded, 3, load_movies(ml_folder), k=5).item_id) == list(top_k(sparse, 3, load_movies(ml_folder), k=5).item_id)


def test_the_sparse_predictor_never_builds_a_huge_matrix(monkeypatch, ml_folder):
    from autorec_utils import matrix as matrix_module

    sparse, _ = twins(ml_folder, "I-AutoRec")
    monkeypatch.setattr(matrix_module, "DENSE_LIMIT", 100)
    with pytest.raises(ValueError, match=r"scores for all 12 x 30 pairs would take .* user_scores\(user_id\)"):
        _ = sparse.predictor.scores
    assert len(sparse.predictor.user_scores(1)) == 30  # one user at a time still works


def test_train_autorec_on_the_sparse_path(ml_folder):
    train, test = load_split("u1", ml_folder)
    settings = {"batch_size": 4, "epochs": 30, "hidden": 8, "progress": False}
    trained = train_autorec(train, "I-AutoRec", sparse=True, **settings)
    assert isinstance(trained.matrix, SparseRatingMatrix) and isinstance(trained.predictor, SparseAutoRecPredictor)
    dense = train_autorec(train, "I-AutoRec", sparse=False, **settings)
    assert score(trained.predictor, test)["RMSE"] == pytest.approx(score(dense.predictor, test)["RMSE"], abs=1e-4)


# ---------------------------------------------------------------- at scale: generated data, the paper's protocol

def test_generated_ratings_look_like_movielens():
    ratings = generate_ratings(500, 300, 20_000, seed=1)
    assert len(ratings) == 20_000 and not ratings.duplicated(["user_id", "item_id"]).any()
    assert set(ratings.rating.unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0} and 3.0 < ratings.rating.mean() < 4.0
    counts = ratings.item_id.value_counts()
    assert counts.max() > 5 * counts.median()  # a long tail of popularity
    assert ratings.equals(generate_ratings(500, 300, 20_000, seed=1))
    with pytest.raises(ValueError, match="do not fit in 10 users x 10 movies"):
        generate_ratings(10, 10, 101)
    with pytest.raises(ValueError, match="n_users must be a positive whole number"):
        generate_ratings(0, 10, 5)


def test_random_splits_rmse_runs_the_papers_protocol():
    ratings = generate_ratings(300, 200, 12_000, seed=2)
    results = random_splits_rmse(ratings, "I-AutoRec", repeats=2, sparse=True, batch_size=64, epochs=5, hidden=20,
                                 progress=False)
    assert list(results.index) == [1, 2] and set(results.columns) >= {"RMSE", "MAE", "epochs", "seconds"}
    assert results.RMSE.between(0.5, 1.5).all() and results.RMSE.iloc[0] != results.RMSE.iloc[1]
    with pytest.raises(ValueError, match="repeats must be a positive whole number"):
        random_splits_rmse(ratings, repeats=0)


def test_sparse_training_is_reproducible_with_several_threads():
    matrix = sparse_rating_matrix(generate_ratings(2000, 1000, 150_000, seed=0), by="item")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # summing in parallel must not change the order of the sums
    try:
        runs = []
        for _ in range(2):
            torch.manual_seed(0)
            model = AutoRec(matrix.shape[1], hidden=50)
            fit(autorec_problem(model, matrix, l2=100.0, batch_size=256), epochs=2, lr=0.01, progress=False)
            runs.append(model.state_dict())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])
