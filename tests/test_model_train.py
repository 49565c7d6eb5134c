"""AutoRec, its masked objective, fit() and the predictors, on tiny matrices."""

import numpy as np
import pandas as pd
import pytest
import torch

from autorec_utils.evaluate import AutoRecPredictor, BiasBaseline, GlobalMean, mae, rmse, score
from autorec_utils.matrix import rating_matrix
from autorec_utils.model import AutoRec, autorec_objective, masked_squared_error
from autorec_utils.train import fit, pick_device, seed_everything


@pytest.fixture
def toy():
    """4 users x 5 movies, 11 ratings."""
    return pd.DataFrame({
        "user_id": [1, 1, 1, 2, 2, 2, 3, 3, 4, 4, 4],
        "item_id": [1, 2, 4, 1, 2, 3, 3, 5, 2, 4, 5],
        "rating": [5, 4, 1, 5, 5, 2, 1, 5, 4, 1, 4],
    }).astype({"rating": "float32"})


# ---------------------------------------------------------------- model and objective

def test_shapes_and_parameter_count():
    model = AutoRec(1682, hidden=500)
    assert model(torch.zeros(3, 1682)).shape == (3, 1682)
    assert model.encode(torch.zeros(3, 1682)).shape == (3, 500)
    assert model.n_parameters == 1682 * 500 + 500 + 500 * 1682 + 1682


def test_mask_really_excludes_unobserved_entries():
    torch.manual_seed(0)
    target = torch.tensor([[5.0, 0.0, 3.0], [0.0, 2.0, 0.0]])
    mask = target > 0
    prediction = torch.randn(2, 3, requires_grad=True)
    masked_squared_error(prediction, target, mask).backward()
    assert torch.all(prediction.grad[~mask] == 0) and torch.all(prediction.grad[mask] != 0)
    # what sits behind the mask changes nothing
    other = target.clone()
    other[~mask] = 4.0
    assert masked_squared_error(prediction, other, mask) == masked_squared_error(prediction, target, mask)
    expected = ((prediction.detach() - target)[mask] ** 2).sum()
    assert torch.isclose(masked_squared_error(prediction.detach(), target, mask), expected)


def test_l2_term_matches_the_formula():
    torch.manual_seed(0)
    model = AutoRec(5, hidden=3)
    x = torch.tensor([[5.0, 0.0, 3.0, 0.0, 1.0]])
    prediction = model(x)
    w, v = model.encoder.weight, model.decoder.weight
    expected = ((prediction - x)[x > 0] ** 2).sum() + 0.7 / 2 * ((w**2).sum() + (v**2).sum())
    assert torch.isclose(autorec_objective(model, prediction, x, x > 0, l2=0.7), expected)
    # biases are not regularised
    with torch.no_grad():
        model.encoder.bias.add_(100.0)
    assert torch.isclose(model.weight_norm(), (w**2).sum() + (v**2).sum())


@pytest.mark.parametrize("kwargs, message", [
    ({"n_inputs": 0}, "n_inputs must be a positive integer"),
    ({"n_inputs": 5, "hidden": 0}, "hidden must be a positive integer, got 0"),
    ({"n_inputs": 5, "hidden": -3}, "hidden must be a positive integer"),
    ({"n_inputs": 5, "hidden": 2.5}, "hidden must be a positive integer"),
    ({"n_inputs": 5, "activation": "tanhh"}, "activation='tanhh' is not one of"),
    ({"n_inputs": 5, "dropout": 1.0}, r"dropout must be in \[0, 1\)"),
])
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoRec(**kwargs)


def test_wrong_input_length_says_how_to_fix():
    with pytest.raises(ValueError, match=r"length 5, got shape \(2, 4\).*transpose"):
        AutoRec(5, hidden=2)(torch.zeros(2, 4))


# ---------------------------------------------------------------- fit

def test_tiny_matrix_is_fitted_to_near_zero_training_error(toy):
    seed_everything(0)
    matrix = rating_matrix(toy)
    model = AutoRec(matrix.shape[1], hidden=8, activation="sigmoid")
    history = fit(model, matrix, epochs=3000, lr=0.03, l2=0.0, validation_fraction=0, patience=3000, progress=False)
    assert history.best["train_rmse"] < 0.05
    predicted = AutoRecPredictor(model, matrix).predict(toy.user_id, toy.item_id)
    assert rmse(predicted, toy.rating) < 0.05


@pytest.mark.parametrize("options", [{"lr": 0.05}, {"batch_size": 2, "lr": 0.05}, {"optimizer": "rprop", "lr": 0.01}, {"optimizer": "lbfgs", "lr": 1.0}])
def test_same_seed_same_history(toy, options):
    def run(seed):
        seed_everything(seed)
        model = AutoRec(5, hidden=4, dropout=0.1)
        return fit(model, rating_matrix(toy), epochs=15, validation_fraction=0.2, seed=seed, progress=False, **options).to_frame()

    first, second = run(1), run(1)
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), second.drop(columns="seconds"))
    assert not first.drop(columns="seconds").equals(run(2).drop(columns="seconds"))
    assert first.loss.iloc[-1] < first.loss.iloc[0]  # every optimiser makes progress


def test_early_stopping_restores_the_best_epoch(toy):
    seed_everything(0)
    model = AutoRec(5, hidden=16)
    history = fit(model, rating_matrix(toy), epochs=400, lr=0.05, l2=0.0, validation_fraction=0.3, patience=5, progress=False)
    frame = history.to_frame()
    assert history.stopped_early and len(frame) == history.best_epoch + 5
    assert frame.val_rmse.idxmin() == history.best_epoch


def test_validation_ratings_are_hidden_from_training(toy):
    matrix = rating_matrix(toy)
    seed_everything(0)
    model = AutoRec(5, hidden=4)
    history = fit(model, matrix, epochs=2, validation_fraction=0.3, progress=False)
    assert np.isfinite(history.best["val_rmse"])
    assert history.best["loss_per_rating"] * 8 == pytest.approx(history.best["loss"], rel=1e-6)  # 11 - round(3.3) = 8 fitted


@pytest.mark.parametrize("kwargs, error, message", [
    ({"epochs": 0}, ValueError, "epochs must be a positive integer, got 0"),
    ({"patience": -1}, ValueError, "patience must be a positive integer"),
    ({"lr": 0}, ValueError, "lr must be positive"),
    ({"l2": -1.0}, ValueError, r"l2 \(lambda\) must be >= 0, got -1.0"),
    ({"batch_size": 0}, ValueError, "batch_size must be a positive integer or None"),
    ({"optimizer": "sgd"}, ValueError, "optimizer='sgd' is not one of"),
    ({"optimizer": "lbfgs", "batch_size": 2}, ValueError, "lbfgs is a full-batch method"),
    ({"validation_fraction": 1.0}, ValueError, r"validation_fraction must be in \[0, 1\)"),
])
def test_bad_fit_arguments(toy, kwargs, error, message):
    with pytest.raises(error, match=message):
        fit(AutoRec(5, hidden=2), rating_matrix(toy), progress=False, **kwargs)


def test_shape_mismatch_between_model_and_matrix(toy):
    with pytest.raises(ValueError, match=r"reads vectors of length 4 but each row of the matrix has 5 entries \(by='user'\)"):
        fit(AutoRec(4, hidden=2), rating_matrix(toy), progress=False)
    with pytest.raises(TypeError, match="must be a RatingMatrix"):
        fit(AutoRec(4, hidden=2), toy, progress=False)


def test_device_choice():
    assert pick_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    assert pick_device().type == expected


# ---------------------------------------------------------------- predictions, metrics, baselines

def test_cold_start_gets_the_documented_fallback(toy):
    train = toy[toy.item_id != 3]  # movie 3 has no training rating
    matrix = rating_matrix(train, user_ids=[1, 2, 3, 4, 9], item_ids=[1, 2, 3, 4, 5])  # user 9 has none either
    seed_everything(0)
    model = AutoRec(5, hidden=3)
    predictor = AutoRecPredictor(model, matrix)
    assert predictor.fallback == pytest.approx(train.rating.mean())
    predicted = predictor.predict([1, 9, 2, 77], [3, 1, 1, 1])  # cold movie, cold user, known, unknown id
    assert predicted[0] == predicted[1] == predicted[3] == pytest.approx(train.rating.mean())
    assert AutoRecPredictor(model, matrix, fallback=3.0).predict([9], [1])[0] == 3.0
    assert 1 <= predicted[2] <= 5


def test_item_based_predictor_reads_the_same_entries(toy):
    seed_everything(0)
    items = rating_matrix(toy, by="item")
    model = AutoRec(items.shape[1], hidden=3)
    predicted = AutoRecPredictor(model, items).predict([1, 4], [2, 5])
    with torch.no_grad():
        reconstruction = model(items.values).clamp(1, 5)
    expected = [reconstruction[items.item_index[2], items.user_index[1]], reconstruction[items.item_index[5], items.user_index[4]]]
    assert np.allclose(predicted, expected)
    with pytest.raises(ValueError, match="reads vectors of length 4 but the matrix has 5 columns"):
        AutoRecPredictor(model, rating_matrix(toy))


def test_metrics_by_hand():
    assert rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(np.sqrt(4 / 3))
    assert mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one shape"):
        rmse([1, 2], [1, 2, 3])


def test_baselines(toy):
    mean = GlobalMean().fit(toy)
    assert score(mean, toy)["RMSE"] == pytest.approx(toy.rating.std(ddof=0), rel=1e-5)
    bias = BiasBaseline(reg_user=0, reg_item=0, n_epochs=50).fit(toy)
    unregularised = score(bias, toy)["RMSE"]
    assert unregularised < score(mean, toy)["RMSE"]
    regularised = BiasBaseline(reg_user=100, reg_item=100).fit(toy)
    assert abs(regularised.user_bias_).max() < abs(bias.user_bias_).max()  # shrunk towards 0
    assert regularised.predict([99], [1])[0] == pytest.approx(regularised.mean_ + regularised.item_bias_[0])
    with pytest.raises(ValueError, match="reg_user and reg_item must be >= 0"):
        BiasBaseline(reg_user=-1)


def test_residual_learning_adds_the_baseline_back(toy):
    matrix = rating_matrix(toy)
    bias = BiasBaseline().fit(toy)
    baseline = bias.predict_matrix(matrix)
    assert baseline.shape == matrix.shape
    assert np.allclose(baseline[matrix.user_index[1], matrix.item_index[3]], bias.predict([1], [3]))
    assert torch.equal(bias.predict_matrix(matrix.transpose()), baseline.T)
    seed_everything(0)
    model = AutoRec(5, hidden=3)
    history = fit(model, matrix, epochs=5, baseline=baseline, validation_fraction=0, progress=False)
    predictor = AutoRecPredictor(model, matrix, baseline=baseline)
    with torch.no_grad():
        expected = (model((matrix.values - baseline) * matrix.mask) + baseline).clamp(1, 5)
    assert np.allclose(predictor.predict([2], [5]), expected[matrix.user_index[2], matrix.item_index[5]])
    assert history.best["train_rmse"] == pytest.approx(rmse(predictor.predict(toy.user_id, toy.item_id), toy.rating), abs=1e-5)
    with pytest.raises(ValueError, match=r"baseline has shape \(5, 4\), the matrix \(4, 5\)"):
        fit(model, matrix, baseline=baseline.T, progress=False)


@pytest.mark.parametrize("decay", [0, 1.5])
def test_lr_decay_must_be_a_factor(toy, decay):
    with pytest.raises(ValueError, match=r"lr_decay must be in \(0, 1\]"):
        fit(AutoRec(5, hidden=2), rating_matrix(toy), lr_decay=decay, progress=False)


# ---------------------------------------------------------------- recipes

def test_train_autorec_runs_a_recipe_with_overrides(ml_folder):
    from autorec_utils.load import load_users
    from autorec_utils.splits import load_split
    from autorec_utils.train import RECIPES, train_autorec

    train, test = load_split("u1", ml_folder)
    trained = train_autorec(train, "I-AutoRec", user_ids=load_users(ml_folder).user_id, progress=False, epochs=3, hidden=6)
    assert trained.model.config["hidden"] == 6 and trained.matrix.by == "item"
    assert trained.recipe["epochs"] == 3 and RECIPES["I-AutoRec"]["hidden"] == 500  # the recipe itself is untouched
    assert len(trained.history.records) == 3 and trained.seconds > 0
    assert trained.predictor.fallback is trained.bias  # I-AutoRec falls back on the bias baseline
    assert np.isfinite(score(trained.predictor, test)["RMSE"])


def test_refit_trains_again_on_every_training_rating(ml_folder):
    from autorec_utils.splits import load_split
    from autorec_utils.train import train_autorec

    train, _ = load_split("u1", ml_folder)
    once = train_autorec(train, "U-AutoRec (residual)", progress=False, epochs=4, hidden=3, refit=False)
    twice = train_autorec(train, "U-AutoRec (residual)", progress=False, epochs=4, hidden=3, refit=True)
    assert once.history.best_epoch == twice.history.best_epoch  # the first pass is the same
    assert not torch.equal(once.model.decoder.weight, twice.model.decoder.weight)  # then retrained on all ratings


@pytest.mark.parametrize("kwargs, message", [
    ({"recipe": "V-AutoRec"}, r"recipe 'V-AutoRec' is not one of \['U-AutoRec', 'U-AutoRec \(residual\)'"),
    ({"recipe": "I-AutoRec", "hiden": 5}, r"unknown setting\(s\) \['hiden'\]"),
    ({"recipe": "I-AutoRec", "fallback": "zero"}, "fallback='zero': use 'mean' or 'bias'"),
])
def test_train_autorec_bad_arguments(toy, kwargs, message):
    from autorec_utils.train import train_autorec

    with pytest.raises(ValueError, match=message):
        train_autorec(toy, progress=False, **kwargs)


def test_the_validation_ratings_cannot_move_the_residual_baseline(ml_folder):
    """Early stopping watches the validation ratings, so nothing the model starts from may have seen them."""
    from autorec_utils.splits import load_split, validation_entries
    from autorec_utils.train import train_autorec

    train, _ = load_split("u1", ml_folder)
    train = train.sort_values(["user_id", "item_id"], ignore_index=True)  # row-major order of a users x movies matrix
    held_out = validation_entries(len(train), 0.05, seed=0).numpy()
    assert held_out.sum() > 0
    changed = train.assign(rating=np.where(held_out, 6 - train.rating, train.rating))  # 1 <-> 5, 2 <-> 4
    settings = {"epochs": 3, "hidden": 3, "progress": False}

    def biases(ratings, refit):
        bias = train_autorec(ratings, "U-AutoRec (residual)", refit=refit, **settings).bias
        return np.concatenate([[bias.mean_], bias.user_bias_, bias.item_bias_])

    assert np.array_equal(biases(train, refit=False), biases(changed, refit=False))
    assert not np.array_equal(biases(train, refit=True), biases(changed, refit=True))  # the refit sees every rating


def test_hold_out_draws_what_fit_validates_on(toy):
    from autorec_utils.train import hold_out

    matrix = rating_matrix(toy)
    fit_mask, validation = hold_out(matrix, fraction=0.3, seed=4)
    assert not (fit_mask & validation).any() and torch.equal(fit_mask | validation, matrix.mask)
    assert int(validation.sum()) == round(0.3 * 11)
    seed_everything(0)
    model = AutoRec(5, hidden=3)
    history = fit(model, matrix, epochs=1, validation_fraction=0.3, seed=4, progress=False)
    with torch.no_grad():
        predicted = model(matrix.values * fit_mask).clamp(1, 5)
    expected = (predicted - matrix.values)[validation].square().mean().sqrt()
    assert history.records[0]["val_rmse"] == pytest.approx(float(expected), rel=1e-5)
