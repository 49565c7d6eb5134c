"""AutoRec, its masked objective, fit() and the predictors, on tiny matrices."""

import sys

import numpy as np
import pandas as pd
import pytest
import torch

from autorec_utils.evaluate import AutoRecPredictor, BiasBaseline, GlobalMean, mae, rmse, score
from autorec_utils.matrix import rating_matrix
from autorec_utils.model import AutoRec, autorec_objective, masked_squared_error
from autorec_utils.splits import load_split, validation_entries
from autorec_utils.train import DenseProblem, fit, pick_device, seed_everything, train_autorec


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
    ({"n_inputs": 0}, "n_inputs must be a positive whole number"),
    ({"n_inputs": 5, "hidden": 0}, "hidden must be a positive whole number, got 0"),
    ({"n_inputs": 5, "hidden": -3}, "hidden must be a positive whole number"),
    ({"n_inputs": 5, "hidden": 2.5}, "hidden must be a positive whole number"),
    ({"n_inputs": 5, "activation": "tanhh"}, "activation='tanhh' is not one of"),
    ({"n_inputs": 5, "dropout": 1.0}, "dropout must be a finite number >= 0 and < 1"),
])
def test_bad_model_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AutoRec(**kwargs)


def test_wrong_input_length_says_how_to_fix():
    with pytest.raises(ValueError, match=r"length 5, got shape \(2, 4\).*transpose"):
        AutoRec(5, hidden=2)(torch.zeros(2, 4))


# ---------------------------------------------------------------- fit

def fit_toy(model, matrix, validation_fraction=0.0, seed=0, l2=1.0, batch_size=None, baseline=None, **loop):
    """The dense problem on a toy matrix, with its validation part drawn as train_autorec draws it, then fit()."""
    validation = validation_entries(matrix.n_observed, validation_fraction, seed)
    problem = DenseProblem(model, matrix, validation, l2=l2, batch_size=batch_size, baseline=baseline)
    return fit(problem, seed=seed, progress=False, **loop)


def test_tiny_matrix_is_fitted_to_near_zero_training_error(toy):
    seed_everything(0)
    matrix = rating_matrix(toy)
    model = AutoRec(matrix.shape[1], hidden=8, activation="sigmoid")
    history = fit_toy(model, matrix, epochs=3000, lr=0.03, l2=0.0, patience=3000)
    assert history.best["train_rmse"] < 0.05 and history.watch == "train_rmse"  # nothing held out: it watches training
    predicted = AutoRecPredictor(model, matrix).predict(toy.user_id, toy.item_id)
    assert rmse(predicted, toy.rating) < 0.05


@pytest.mark.parametrize("options", [{"lr": 0.05}, {"batch_size": 2, "lr": 0.05}, {"optimizer": "rprop", "lr": 0.01}, {"optimizer": "lbfgs", "lr": 1.0}])
def test_same_seed_same_history(toy, options):
    def run(seed):
        seed_everything(seed)
        model = AutoRec(5, hidden=4, dropout=0.1)
        return fit_toy(model, rating_matrix(toy), epochs=15, validation_fraction=0.2, seed=seed, **options).to_frame()

    first, second = run(1), run(1)
    pd.testing.assert_frame_equal(first.drop(columns="seconds"), second.drop(columns="seconds"))
    assert not first.drop(columns="seconds").equals(run(2).drop(columns="seconds"))
    assert first.loss.iloc[-1] < first.loss.iloc[0]  # every optimiser makes progress


def test_early_stopping_restores_the_best_epoch(toy):
    seed_everything(0)
    model = AutoRec(5, hidden=16)
    history = fit_toy(model, rating_matrix(toy), epochs=400, lr=0.05, l2=0.0, validation_fraction=0.3, patience=5)
    frame = history.to_frame()
    assert history.stopped_early and len(frame) == history.best_epoch + 5
    assert frame.val_rmse.idxmin() == history.best_epoch
    with torch.no_grad():  # the weights are the best epoch's, not the last one's
        assert DenseProblem(model, rating_matrix(toy), validation_entries(11, 0.3, 0)).evaluate() == pytest.approx(
            {k: history.best[k] for k in ("train_rmse", "val_rmse")})


def test_validation_ratings_are_hidden_from_training(toy):
    matrix = rating_matrix(toy)
    validation = validation_entries(matrix.n_observed, 0.3, seed=0)
    seed_everything(0)
    model = AutoRec(5, hidden=4)
    problem = DenseProblem(model, matrix, validation)
    changed = rating_matrix(toy.assign(rating=np.where(matrix.entry_mask(validation)[matrix.mask].numpy(), 1.0, toy.rating)))
    other = DenseProblem(model, changed, validation)  # the same ratings but for the validation ones
    assert torch.equal(problem.inputs, other.inputs)
    assert torch.equal(problem.batch_loss(slice(None)), other.batch_loss(slice(None)))
    assert problem.evaluate()["val_rmse"] != other.evaluate()["val_rmse"]


@pytest.mark.parametrize("kwargs, message", [
    ({"epochs": 0}, "epochs must be a positive whole number, got 0"),
    ({"patience": -1}, "patience must be a positive whole number"),
    ({"lr": 0}, "lr must be a finite number > 0"),
    ({"lr": float("nan")}, "lr must be a finite number > 0"),
    ({"optimizer": "sgd"}, "optimizer='sgd' is not one of"),
    ({"lr_decay": 0}, r"lr_decay must be a finite number > 0 and <= 1"),
    ({"lr_decay": 1.5}, r"lr_decay must be a finite number > 0 and <= 1"),
])
def test_bad_fit_arguments(toy, kwargs, message):
    with pytest.raises(ValueError, match=message):
        fit(DenseProblem(AutoRec(5, hidden=2), rating_matrix(toy)), progress=False, **kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"l2": -1.0}, r"l2 \(lambda\) must be a finite number >= 0, got -1.0"),
    ({"batch_size": 0}, r"batch_size must be a positive whole number or None \(full batch\)"),
    ({"validation": torch.zeros(3, dtype=torch.bool)}, "validation must be a bool tensor with one entry per rating"),
])
def test_bad_problem_arguments(toy, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DenseProblem(AutoRec(5, hidden=2), rating_matrix(toy), **kwargs)


def test_a_full_batch_optimiser_on_mini_batches_is_refused(toy):
    with pytest.raises(ValueError, match="lbfgs is a full-batch method"):
        fit(DenseProblem(AutoRec(5, hidden=2), rating_matrix(toy), batch_size=2), optimizer="lbfgs", progress=False)


def test_shape_mismatch_between_model_and_matrix(toy):
    with pytest.raises(ValueError, match=r"reads vectors of length 4 but each row of the matrix has 5 entries \(by='user'\)"):
        DenseProblem(AutoRec(4, hidden=2), rating_matrix(toy))
    with pytest.raises(TypeError, match="must be a RatingMatrix"):
        DenseProblem(AutoRec(4, hidden=2), toy)


def test_a_diverging_run_stops_with_a_clear_error(toy):
    seed_everything(0)
    with pytest.raises(FloatingPointError, match="the loss became (nan|inf) at epoch \\d+; lower the learning rate"):
        fit_toy(AutoRec(5, hidden=4, activation="identity"), rating_matrix(toy), epochs=20, lr=1e20)


def test_a_failed_run_ends_its_progress_bar_line(toy, capsys):
    """The bar is closed when training fails, so what reports the failure (a traceback, the distributed command
    line's one line) starts a line of its own instead of running on after the bar."""
    seed_everything(0)
    problem = DenseProblem(AutoRec(5, hidden=4, activation="identity"), rating_matrix(toy))
    with pytest.raises(FloatingPointError) as failure:  # kept, as a traceback keeps fit's frame (and its bar)
        fit(problem, epochs=20, lr=1e20, progress=True)
    print(f"error: {failure.value}", file=sys.stderr)
    shown = capsys.readouterr().err
    assert "training" in shown and shown.endswith(f"]\nerror: {failure.value}\n")


def test_device_choice(monkeypatch):
    assert pick_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")  # CUDA first, where there is one
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == torch.device("mps") and pick_device(sparse=True) == torch.device("cpu")  # no sparse kernels on MPS
    with pytest.raises(ValueError, match="the sparse path runs on CUDA or the CPU"):
        pick_device("mps", sparse=True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")


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
    with torch.no_grad():  # a known pair gets the model's own reconstruction, clipped
        assert predicted[2] == pytest.approx(float(model(matrix.values)[1, 0].clamp(1, 5)))


def test_item_based_predictor_reads_the_same_entries(toy):
    seed_everything(0)
    items = rating_matrix(toy, by="item")
    model = AutoRec(items.shape[1], hidden=3)
    predicted = AutoRecPredictor(model, items).predict([1, 4], [2, 5])
    with torch.no_grad():
        reconstruction = model(items.values).clamp(1, 5)
    expected = [reconstruction[items.item_positions(2), items.user_positions(1)],
                reconstruction[items.item_positions(5), items.user_positions(4)]]
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
    assert np.allclose(baseline[matrix.user_positions(1), matrix.item_positions(3)], bias.predict([1], [3]))
    assert torch.equal(bias.predict_matrix(matrix.transpose()), baseline.T)
    seed_everything(0)
    model = AutoRec(5, hidden=3)
    history = fit_toy(model, matrix, epochs=5, baseline=baseline)
    predictor = AutoRecPredictor(model, matrix, baseline=bias)
    with torch.no_grad():
        expected = (model((matrix.values - baseline) * matrix.mask) + baseline).clamp(1, 5)
    assert np.allclose(predictor.predict([2], [5]), expected[matrix.user_positions(2), matrix.item_positions(5)])
    assert history.best["train_rmse"] == pytest.approx(rmse(predictor.predict(toy.user_id, toy.item_id), toy.rating), abs=1e-5)
    with pytest.raises(ValueError, match=r"baseline has shape \(5, 4\), the matrix \(4, 5\)"):
        DenseProblem(model, matrix, baseline=baseline.T)


# ---------------------------------------------------------------- recipes

def test_train_autorec_runs_a_recipe_with_changes(ml_folder):
    from autorec_utils.load import load_users
    from autorec_utils.recipes import RECIPES
    from autorec_utils.splits import load_split
    from autorec_utils.train import train_autorec

    train, test = load_split("u1", ml_folder)
    trained = train_autorec(train, "I-AutoRec", user_ids=load_users(ml_folder).user_id, progress=False, epochs=3, hidden=6)
    assert trained.model.config["hidden"] == 6 and trained.matrix.by == "item"
    assert trained.recipe == RECIPES["I-AutoRec"].replace(epochs=3, hidden=6) and RECIPES["I-AutoRec"].hidden == 500
    assert trained.settings["lr_decay"] == 0.99  # the tuned settings that were not changed
    assert len(trained.history.records) == 3 and trained.seconds > 0
    assert trained.predictor.fallback is trained.bias  # I-AutoRec falls back on the bias baseline
    assert np.isfinite(score(trained.predictor, test)["RMSE"])


@pytest.mark.parametrize("kwargs, message", [
    ({"recipe": "V-AutoRec"}, r"there is no recipe 'V-AutoRec'; the named ones are 'U-AutoRec', 'U-AutoRec \(residual\)'"),
    ({"recipe": "I-AutoRec", "hiden": 5}, r"AutoRecRecipe has no setting\(s\) \['hiden'\]; its settings are by, hidden"),
    ({"recipe": "I-AutoRec", "fallback": "zero"}, r"fallback='zero' is not one of \['mean', 'bias'\]"),
    ({"recipe": "I-AutoRec", "epochs": 2.5}, "epochs must be a positive whole number, got 2.5"),
    ({"recipe": "I-AutoRec", "l2": float("inf")}, "l2 must be a finite number >= 0, got inf"),
    ({"recipe": "I-AutoRec", "optimizer": "lbfgs", "batch_size": 64}, "lbfgs is a full-batch method"),
    ({"recipe": "EASE"}, "EASERecipe is a recipe for a lists model: train it with train_list_model"),
])
def test_train_autorec_bad_arguments(toy, kwargs, message):
    from autorec_utils.train import train_autorec

    with pytest.raises(ValueError, match=message):
        train_autorec(toy, progress=False, **kwargs)


def test_recipes_have_one_meaning_in_both_families():
    from autorec_utils.recipes import RECIPES, MultDAERecipe, Recipe, get_recipe

    assert get_recipe("mult-vae") is RECIPES["Mult-VAE"]  # names in any case
    for name, recipe in RECIPES.items():  # what a checkpoint stores rebuilds the same recipe
        assert Recipe.from_settings(type(recipe).__name__, recipe.settings()) == recipe, name
    with pytest.raises(ValueError, match=r"MultDAERecipe has no setting\(s\) \['beta', 'l2'\]"):
        MultDAERecipe().replace(l2=1.0, beta=0.2)  # settings a model does not take are refused, by name
    assert RECIPES["Mult-DAE"].replace(epochs=np.int64(7)).epochs == 7 and isinstance(
        RECIPES["Mult-DAE"].replace(epochs=np.int64(7)).epochs, int)  # numpy numbers are stored as plain ones


def test_the_validation_ratings_cannot_move_the_residual_baseline(ml_folder):
    """Early stopping watches the validation ratings, so nothing the model starts from may have seen them."""
    from autorec_utils.splits import load_split
    from autorec_utils.train import train_autorec

    train, _ = load_split("u1", ml_folder)
    train = train.sort_values(["user_id", "item_id"], ignore_index=True)  # row-major order of a users x movies matrix
    held_out = validation_entries(len(train), 0.05, seed=0).numpy()
    assert held_out.sum() > 0
    changed = train.assign(rating=np.where(held_out, 6 - train.rating, train.rating))  # 1 <-> 5, 2 <-> 4
    settings = {"epochs": 3, "hidden": 3, "progress": False}

    def biases(ratings, **change):
        bias = train_autorec(ratings, "U-AutoRec (residual)", **settings, **change).bias
        return np.concatenate([[bias.mean_], bias.user_bias_, bias.item_bias_])

    assert np.array_equal(biases(train), biases(changed))
    assert not np.array_equal(biases(train, validation_fraction=0.0), biases(changed, validation_fraction=0.0))


def test_hold_out_gives_the_masks_fit_validates_on(toy):
    from autorec_utils.train import hold_out

    matrix = rating_matrix(toy)
    validation = validation_entries(matrix.n_observed, 0.3, seed=4)
    fit_mask, validation_mask = hold_out(matrix, validation)
    assert not (fit_mask & validation_mask).any() and torch.equal(fit_mask | validation_mask, matrix.mask)
    assert int(validation_mask.sum()) == round(0.3 * 11)
    seed_everything(0)
    model = AutoRec(5, hidden=3)
    history = fit_toy(model, matrix, epochs=1, validation_fraction=0.3, seed=4)
    with torch.no_grad():
        predicted = model(matrix.values * fit_mask).clamp(1, 5)
    expected = (predicted - matrix.values)[validation_mask].square().mean().sqrt()
    assert history.records[0]["val_rmse"] == pytest.approx(float(expected), rel=1e-5)


def test_a_matrix_and_its_transpose_hold_back_the_same_ratings(toy):
    from autorec_utils.splits import validation_part

    users = rating_matrix(toy)
    movies = users.transpose()
    held_users = users.to_frame(keep=validation_part(users, 0.4, seed=3))
    held_movies = movies.to_frame(keep=validation_part(movies, 0.4, seed=3))
    pd.testing.assert_frame_equal(held_users, held_movies)  # U- and I-AutoRec validate on the same ratings
    assert len(held_users) == round(0.4 * 11)


def test_the_progress_bar_counts_down_to_early_stopping_not_to_the_epoch_cap(ml_folder, capsys):
    train, _ = load_split("u1", ml_folder)
    trained = train_autorec(train, "I-AutoRec", hidden=4, epochs=500, patience=3, progress=True)
    shown = capsys.readouterr().err.replace("\r", "\n").strip().splitlines()[-1]
    assert f"best epoch={trained.history.best_epoch}" in shown and "left=" in shown
    assert "/500" not in shown and "<" not in shown.split("]")[0]  # no total and no ETA to the cap
