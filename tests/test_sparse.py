"""The sparse path: a SparseRatingMatrix holds only the observed ratings, and fit() trains on it with
the same objective as on the dense matrix."""

import numpy as np
import pandas as pd
import pytest
import torch

from autorec_utils import train as training
from autorec_utils.data import SparseRatingMatrix, load_split, rating_matrix, sparse_rating_matrix
from autorec_utils.evaluate import AutoRecPredictor
from autorec_utils.model import AutoRec
from autorec_utils.train import fit, seed_everything


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
    assert sparse.user_index == dense.user_index and sparse.item_index == dense.item_index
    again = SparseRatingMatrix.from_dense(dense)
    assert torch.equal(again.crow, sparse.crow) and torch.equal(again.col, sparse.col) and torch.equal(again.value, sparse.value)
    assert np.all(np.diff(sparse.crow.numpy()) >= 0) and sparse.crow[-1] == 5


def test_sparse_matrix_rejects_what_the_dense_one_rejects(small_ratings):
    with pytest.raises(ValueError, match="more than one rating of movie 10 by user 1"):
        sparse_rating_matrix(pd.concat([small_ratings, small_ratings.iloc[:1]]))
    with pytest.raises(ValueError, match=r"user id 5 is not among the matrix's user ids"):
        sparse_rating_matrix(small_ratings, user_ids=[1, 2])


def run(matrix, sparse, **options):
    seed_everything(3)
    model = AutoRec(matrix.shape[1], hidden=6)
    settings = {"epochs": 25, "lr": 0.02, "l2": 0.5, "validation_fraction": 0.2, "patience": 25, **options}
    history = fit(model, matrix, progress=False, sparse=sparse, seed=3, **settings)
    return model, history.to_frame().drop(columns="seconds")


@pytest.mark.parametrize("by", ["user", "item"])
@pytest.mark.parametrize("options", [{}, {"batch_size": 4}])
def test_sparse_and_dense_paths_minimise_the_same_objective(ml_folder, by, options):
    train, test = load_split("u1", ml_folder)
    dense = rating_matrix(train, by=by)
    dense_model, dense_history = run(dense, False, **options)
    sparse_model, sparse_history = run(sparse_rating_matrix(train, by=by), True, **options)
    pd.testing.assert_frame_equal(dense_history, sparse_history, rtol=1e-4)
    for a, b in zip(dense_model.parameters(), sparse_model.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-4)


def test_residuals_on_the_sparse_path(ml_folder):
    from autorec_utils.evaluate import BiasBaseline

    train, _ = load_split("u1", ml_folder)
    dense = rating_matrix(train)
    baseline = BiasBaseline().fit(train).predict_matrix(dense)
    _, dense_history = run(dense, False, baseline=baseline)
    _, sparse_history = run(sparse_rating_matrix(train), True, baseline=baseline)
    pd.testing.assert_frame_equal(dense_history, sparse_history, rtol=1e-4)


def test_fit_picks_the_path_by_size(ml_folder, monkeypatch):
    train, _ = load_split("u1", ml_folder)
    sparse = sparse_rating_matrix(train)
    used = []
    for name in ("_DenseProblem", "_SparseProblem"):
        original = getattr(training, name)
        monkeypatch.setattr(training, name, lambda *a, _original=original, _name=name: used.append(_name) or _original(*a))
    run(sparse, None)
    monkeypatch.setattr(training, "DENSE_LIMIT", 10)
    run(sparse, None)
    run(rating_matrix(train), True)  # forced: a dense matrix trained on the sparse path
    assert used == ["_DenseProblem", "_SparseProblem", "_SparseProblem"]


def test_predictions_after_sparse_training(ml_folder):
    train, test = load_split("u1", ml_folder)
    model, _ = run(sparse_rating_matrix(train), True)
    predicted = AutoRecPredictor(model, rating_matrix(train)).predict(test.user_id, test.item_id)
    assert predicted.shape == (len(test),) and np.all((predicted >= 1) & (predicted <= 5))


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
        model.store_encoder_by_input()
        assert model.encoder.weight.T.is_contiguous()
    mask = dense > 0

    def gradients(loss):
        model.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in model.parameters()]

    dense_out = model(dense)
    expected = gradients(((dense_out - dense)[mask]).square().sum())
    codes = model.encode_sparse(batch)
    sparse_out = model.decode_at(codes, batch)
    assert torch.allclose(codes, model.encode(dense), atol=1e-6)
    assert torch.allclose(sparse_out, dense_out[mask], atol=1e-6)  # CSR order is row-major, as mask indexing
    got = gradients((sparse_out - batch.values()).square().sum())
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, atol=1e-5)


def test_sparse_products_reject_what_they_cannot_read():
    dense, batch = toy_batch()
    model = AutoRec(7, hidden=4)
    with pytest.raises(TypeError, match="must be a sparse CSR tensor"):
        model.encode_sparse(dense)
    with pytest.raises(ValueError, match="reads vectors of length 7"):
        model.encode_sparse(dense[:, :6].to_sparse_csr())
    with pytest.raises(ValueError, match="pattern has 5 rows for 3 codes"):
        model.decode_at(torch.zeros(3, 4), batch)


def test_the_sparse_path_says_it_does_not_run_on_mps(ml_folder):
    train, _ = load_split("u1", ml_folder)
    matrix = sparse_rating_matrix(train)
    with pytest.raises(ValueError, match="sparse path runs on CUDA or the CPU"):
        fit(AutoRec(matrix.shape[1], hidden=4), matrix, epochs=1, batch_size=64, sparse=True, device="mps", progress=False)


def test_sparse_paths_agree_with_rprop_and_lbfgs(ml_folder):
    train, _ = load_split("u1", ml_folder)
    for options in ({"optimizer": "rprop"}, {"optimizer": "lbfgs", "lr": 0.5}):
        _, dense_history = run(rating_matrix(train, by="item"), False, **options)
        _, sparse_history = run(sparse_rating_matrix(train, by="item"), True, **options)
        pd.testing.assert_frame_equal(dense_history, sparse_history, rtol=1e-3)


@pytest.mark.parametrize("by", ["user", "item"])
def test_sparse_predictor_equals_the_dense_one(ml_folder, by):
    from autorec_utils.evaluate import BiasBaseline, SparseAutoRecPredictor

    train, test = load_split("u1", ml_folder)
    ids = {"user_ids": np.arange(1, 944), "item_ids": np.arange(1, 1683)}
    sparse = sparse_rating_matrix(train, by=by, **ids)
    model, _ = run(sparse, True, batch_size=128)
    bias = BiasBaseline().fit(train)
    dense_predictor = AutoRecPredictor(model, rating_matrix(train, by=by, **ids), fallback=bias)
    sparse_predictor = SparseAutoRecPredictor(model, sparse, fallback=bias)
    users = np.concatenate([test.user_id, [1, 99999]])  # and a user the matrix does not know
    items = np.concatenate([test.item_id, [99999, 1]])
    assert np.allclose(sparse_predictor.predict(users, items), dense_predictor.predict(users, items), atol=1e-5)
    for user in (1, 405):
        assert np.allclose(sparse_predictor.user_scores(user), dense_predictor.scores[user - 1], atol=1e-4)
    with pytest.raises(ValueError, match="user 99999 is not in the training matrix"):
        sparse_predictor.user_scores(99999)


def test_train_autorec_on_the_sparse_path(ml_folder):
    from autorec_utils.evaluate import SparseAutoRecPredictor, score
    from autorec_utils.train import train_autorec

    train, test = load_split("u1", ml_folder)
    settings = {"batch_size": 4, "epochs": 30, "hidden": 8, "progress": False}
    trained = train_autorec(train, "I-AutoRec", sparse=True, **settings)
    assert isinstance(trained.matrix, SparseRatingMatrix) and isinstance(trained.predictor, SparseAutoRecPredictor)
    dense = train_autorec(train, "I-AutoRec", sparse=False, **settings)
    assert score(trained.predictor, test)["RMSE"] == pytest.approx(score(dense.predictor, test)["RMSE"], abs=1e-4)
    with pytest.raises(ValueError, match="residual recipe needs the bias baseline as a dense"):
        train_autorec(train, "U-AutoRec (best)", sparse=True, batch_size=256)


def test_generated_ratings_look_like_movielens():
    from autorec_utils.data import generate_ratings

    ratings = generate_ratings(500, 300, 20_000, seed=1)
    assert len(ratings) == 20_000 and not ratings.duplicated(["user_id", "item_id"]).any()
    assert set(ratings.rating.unique()) <= {1.0, 2.0, 3.0, 4.0, 5.0} and 3.0 < ratings.rating.mean() < 4.0
    counts = ratings.item_id.value_counts()
    assert counts.max() > 5 * counts.median()  # a long tail of popularity
    assert ratings.equals(generate_ratings(500, 300, 20_000, seed=1))
    with pytest.raises(ValueError, match="do not fit in 10 users x 10 movies"):
        generate_ratings(10, 10, 101)
    with pytest.raises(ValueError, match="n_users must be a positive integer"):
        generate_ratings(0, 10, 5)


def test_random_splits_rmse_runs_the_papers_protocol():
    from autorec_utils.data import generate_ratings
    from autorec_utils.train import random_splits_rmse

    ratings = generate_ratings(300, 200, 12_000, seed=2)
    results = random_splits_rmse(ratings, "I-AutoRec", repeats=2, sparse=True, batch_size=64, epochs=5, hidden=20,
                                 progress=False)
    assert list(results.index) == [1, 2] and set(results.columns) >= {"RMSE", "MAE", "epochs", "seconds"}
    assert results.RMSE.between(0.5, 1.5).all() and results.RMSE.iloc[0] != results.RMSE.iloc[1]
    with pytest.raises(ValueError, match="repeats must be a positive integer"):
        random_splits_rmse(ratings, repeats=0)


def test_sparse_training_is_reproducible_with_several_threads():
    from autorec_utils.data import generate_ratings

    matrix = sparse_rating_matrix(generate_ratings(2000, 1000, 150_000, seed=0), by="item")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # summing in parallel must not change the order of the sums
    try:
        runs = []
        for _ in range(2):
            torch.manual_seed(0)
            model = AutoRec(matrix.shape[1], hidden=50)
            fit(model, matrix, epochs=2, lr=0.01, l2=100.0, batch_size=256, sparse=True, progress=False)
            runs.append(model.state_dict())
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(runs[0][name], runs[1][name]) for name in runs[0])
