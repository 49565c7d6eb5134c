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
    history = fit(model, matrix, epochs=25, lr=0.02, l2=0.5, validation_fraction=0.2, patience=25, progress=False,
                  sparse=sparse, seed=3, **options)
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
