"""Chapter 07's models: the deeper AutoRec and its local kernel layer, ensembles of rating models (their
blend, predictor and checkpoint), and the test-watching run that measures what choosing on test is worth."""

import numpy as np
import pandas as pd
import pytest
import torch

from autorec_utils.checkpoint import CheckpointError, load_checkpoint, load_or_train, save_checkpoint
from autorec_utils.ensemble import AutoRecEnsemble, blend_weights, member_columns, train_ensemble
from autorec_utils.evaluate import rmse, score
from autorec_utils.leaderboard import PUBLISHED, selection_optimism, train_watching_test
from autorec_utils.load import load_movies, load_users
from autorec_utils.model import AutoRec, autorec_objective
from autorec_utils.recipes import RECIPES, AutoRecRecipe, DeepAutoRecRecipe, EnsembleRecipe, Recipe, get_recipe
from autorec_utils.splits import load_split
from autorec_utils.train import chosen_on_validation, train_autorec
from autorec_utils.variants import DeepAutoRec, KernelLinear, local_kernel

QUICK = {"epochs": 4, "hidden": 5}


@pytest.fixture
def data(ml_folder):
    train, test = load_split("u1", ml_folder)
    ids = {"user_ids": load_users(ml_folder).user_id, "item_ids": load_movies(ml_folder).item_id}
    return train, test, ids


# ---------------------------------------------------------------- the deeper model and its kernel layer

def test_one_layer_deep_autorec_is_autorec():
    torch.manual_seed(0)
    plain = AutoRec(7, hidden=3, activation="elu")
    torch.manual_seed(0)
    deep = DeepAutoRec(7, hidden=[3], activation="elu")
    x = torch.rand(4, 7)
    assert torch.equal(plain(x), deep(x)) and torch.equal(plain.encode(x), deep.encode(x))
    assert torch.equal(plain.weight_norm(), deep.weight_norm())
    assert torch.equal(plain.decoder.weight, deep.decoder.weight)


def test_deep_autorec_shapes_and_penalty():
    model = DeepAutoRec(9, hidden=[6, 4], activation="selu", dropout=0.5)
    x = torch.rand(3, 9)
    assert model.encode(x).shape == (3, 4) and model.eval()(x).shape == (3, 9)
    squares = sum(layer.weight.square().sum() for layer in [*model.layers, model.decoder])
    assert torch.allclose(model.weight_norm(), squares)
    assert len(model.state_dict()) == 6  # three layers, each a weight and a bias
    with pytest.raises(ValueError, match="reads vectors of length 9"):
        model(torch.rand(3, 8))


def test_local_kernel_is_the_formula():
    u, v = torch.tensor([[0.0, 0.0], [0.5, 0.0]]), torch.tensor([[0.0, 0.0], [0.0, 0.5], [2.0, 0.0]])
    expected = torch.tensor([[1.0, 0.75, 0.0], [0.75, 0.5, 0.0]])  # max(0, 1 - |u_i - v_j|^2)
    assert torch.allclose(local_kernel(u, v), expected)
    layer = KernelLinear(2, 3, kernel=2)
    with torch.no_grad():
        layer.u.copy_(u)
        layer.v.copy_(v)
    assert torch.allclose(layer.weight, layer.raw_weight * expected.T)  # out x in, like nn.Linear
    x = torch.rand(5, 2)
    assert torch.allclose(layer(x), x @ (layer.raw_weight * expected.T).T + layer.bias)
    assert layer.weight[2].abs().sum() == 0  # output 2 is too far from both inputs: its weights are exactly 0


def test_kernel_penalty_counts_the_kernels():
    model = DeepAutoRec(6, hidden=[4], kernel=3, kernel_penalty=0.25)
    layers = [*model.layers, model.decoder]
    expected = sum(layer.raw_weight.square().sum() + 0.25 * layer.kernel().square().sum() for layer in layers)
    assert torch.allclose(model.weight_norm(), expected)
    prediction = model(torch.rand(2, 6))
    loss = autorec_objective(model, prediction, torch.ones(2, 6), torch.ones(2, 6, dtype=torch.bool), l2=2.0)
    loss.backward()
    assert all(layer.u.grad is not None and layer.v.grad is not None for layer in layers)  # the kernel learns


@pytest.mark.parametrize("settings, message", [
    ({"hidden": []}, "non-empty list"), ({"hidden": [4, 0]}, "each hidden size"), ({"kernel": -1}, "kernel must be 0"),
    ({"activation": "tanh"}, "not one of"), ({"kernel_penalty": -1.0}, "kernel_penalty"), ({"dropout": 1.0}, "dropout"),
])
def test_deep_autorec_refuses_bad_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        DeepAutoRec(5, **settings)


def test_recipes_build_their_models_and_refuse_what_they_do_not_take():
    assert type(RECIPES["I-AutoRec"].build_model(8)) is AutoRec
    deep = DeepAutoRecRecipe(by="item", hidden=6, depth=3, kernel=2, activation="selu")
    model = deep.build_model(8)
    assert type(model) is DeepAutoRec and model.config["hidden"] == [6, 6, 6] and model.config["kernel"] == 2
    with pytest.raises(ValueError, match="selu"):
        AutoRecRecipe(activation="selu")  # chapter 02's AutoRec has no SELU
    with pytest.raises(ValueError, match="no setting"):
        RECIPES["I-AutoRec"].replace(depth=2)
    with pytest.raises(ValueError, match="depth"):
        DeepAutoRecRecipe(depth=0)
    assert Recipe.from_settings("DeepAutoRecRecipe", deep.settings()) == deep


def test_a_deep_kernel_model_trains_and_round_trips(data, ml_folder, tmp_path):
    train, test, ids = data
    recipe = DeepAutoRecRecipe(by="item", hidden=6, kernel=2, kernel_penalty=0.1, optimizer="lbfgs", lr=1.0, epochs=3)
    trained = train_autorec(train, recipe, progress=False, **ids)
    assert type(trained.model) is DeepAutoRec and len(trained.history.records) == 3
    path = save_checkpoint(trained, tmp_path / "deep.pt", split="u1")
    loaded = load_checkpoint(path, data_path=ml_folder)
    assert loaded.recipe == recipe and type(loaded.model) is DeepAutoRec
    assert np.array_equal(loaded.predictor.predict(test.user_id, test.item_id), trained.predictor.predict(test.user_id, test.item_id))
    payload = torch.load(path, weights_only=True)
    payload["model"]["config"]["hidden"] = [7]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="weights that do not match|altered"):
        load_checkpoint(tmp_path / "bad.pt", data_path=ml_folder)


# ---------------------------------------------------------------- ensembles

def test_validation_seed_holds_back_the_same_ratings(data):
    train, _, ids = data
    a = train_autorec(train, "I-AutoRec", seed=0, progress=False, **QUICK, **ids)
    b = train_autorec(train, "I-AutoRec", seed=1, validation_seed=0, progress=False, **QUICK, **ids)
    c = train_autorec(train, "I-AutoRec", seed=1, progress=False, **QUICK, **ids)
    assert np.array_equal(a.bias.user_bias_, b.bias.user_bias_)  # the bias baseline saw the same ratings
    assert not np.array_equal(a.bias.user_bias_, c.bias.user_bias_)
    assert not torch.equal(a.model.encoder.weight, b.model.encoder.weight)  # but the models started apart


def test_blend_weights_find_the_best_mix():
    rng = np.random.default_rng(0)
    truth = rng.uniform(1, 5, 400)
    good, noisy = truth + rng.normal(0, 0.1, 400), truth + rng.normal(0, 1.0, 400)
    weights, error = blend_weights(np.column_stack([noisy, good]), truth, step=0.1)
    assert weights.sum() == pytest.approx(1) and weights[1] >= 0.9
    assert error == pytest.approx(rmse(np.clip(np.column_stack([noisy, good]) @ weights, 1, 5), truth))
    a, b = truth + 0.3, truth - 0.3  # errors that cancel half and half
    weights, error = blend_weights(np.column_stack([a, b]), truth, step=0.25)
    assert np.allclose(weights, [0.5, 0.5]) and error == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="divide 1"):
        blend_weights(np.column_stack([a, b]), truth, step=0.3)


def test_ensemble_recipe_checks_its_members():
    recipe = EnsembleRecipe(members=("I-AutoRec", RECIPES["U-AutoRec (residual)"]), seeds=2)
    assert all(isinstance(member, AutoRecRecipe) for member in recipe.members)
    assert Recipe.from_settings("EnsembleRecipe", recipe.settings()) == recipe  # what a checkpoint stores
    with pytest.raises(ValueError, match="rating recipes"):
        EnsembleRecipe(members=("I-AutoRec", "EASE"))
    with pytest.raises(ValueError, match="1 to 4"):
        EnsembleRecipe(members=())
    with pytest.raises(ValueError, match="different shares"):
        EnsembleRecipe(members=("I-AutoRec", RECIPES["U-AutoRec (residual)"].replace(validation_fraction=0.1)))
    with pytest.raises(ValueError, match="no setting"):
        recipe.replace(hidden=3)
    with pytest.raises(ValueError, match="seeds"):
        recipe.replace(seeds=0)
    assert recipe.replace(seeds=(3, 1)).seed_counts == (3, 1) and recipe.seed_counts == (2, 2)
    assert Recipe.from_settings("EnsembleRecipe", recipe.replace(seeds=(3, 1)).settings()) == recipe.replace(seeds=(3, 1))
    with pytest.raises(ValueError, match="one per member"):
        recipe.replace(seeds=(1, 2, 3))


def test_an_ensemble_predicts_the_weighted_average(data):
    train, test, ids = data
    recipe = EnsembleRecipe(members=(RECIPES["I-AutoRec"].replace(**QUICK),
                                     RECIPES["U-AutoRec (residual)"].replace(**QUICK)), seeds=(3, 1), blend_step=0.5)
    trained = train_ensemble(train, recipe, progress=False, **ids)
    members = trained.predictor.members
    assert sum(weight for _, weight in members) == pytest.approx(1)
    assert [run.seed for run in trained.runs] == [0, 1, 2, 0]
    assert len(trained.runs) == 4 and trained.seconds == pytest.approx(sum(run.seconds for run in trained.runs))
    users, items = test.user_id.to_numpy(), test.item_id.to_numpy()
    average = sum(weight * predictor.predict(users, items) for predictor, weight in members)
    assert np.allclose(trained.predictor.predict(users, items), average)
    assert np.allclose(trained.predictor.scores, sum(weight * predictor.scores for predictor, weight in members))
    user = trained.matrix.user_ids[0]
    assert np.allclose(trained.predictor.user_scores(user), trained.predictor.scores[0])
    for method in ("user_vectors", "movie_vectors"):
        with pytest.raises(ValueError, match="no single embedding"):
            getattr(trained.predictor, method)()
    with pytest.raises(ValueError, match="fold a new person in"):
        trained.predictor.fold_in(np.array([0]), np.array([5.0]))
    with pytest.raises(ValueError, match=r"train_ensemble \(autorec_utils.ensemble\)"):
        train_autorec(train, recipe, **ids)  # an ensemble is not one AutoRec
    assert chosen_on_validation({"one": trained, "other": trained.runs[0]}) in ("one", "other")


def test_the_blend_is_chosen_on_the_shared_validation_ratings(data):
    train, _, ids = data
    recipe = EnsembleRecipe(members=(RECIPES["I-AutoRec"].replace(**QUICK), RECIPES["U-AutoRec"].replace(**QUICK)),
                            seeds=1, blend_step=0.1)
    trained = train_ensemble(train, recipe, seed=3, progress=False, **ids)
    from autorec_utils.ensemble import validation_ratings
    from autorec_utils.splits import validation_part
    parts = [validation_ratings(run, validation_part(run.matrix, 0.05, 3)) for run in trained.runs]
    assert parts[0][["user_id", "item_id"]].equals(parts[1][["user_id", "item_id"]])
    weights, error = blend_weights(np.column_stack([p.prediction for p in parts]), parts[0].rating.to_numpy(), 0.1)
    assert trained.history.score == pytest.approx(error)
    kept = {spec["member"]: w for spec, w in zip(trained.model.config["members"], trained.model.config["weights"], strict=True)}
    assert all(kept.get(i, 0.0) == pytest.approx(w) for i, w in enumerate(weights))
    own_draw = train_autorec(train, RECIPES["U-AutoRec"].replace(**QUICK), seed=4, progress=False, **ids)
    assert own_draw.held_back_with == 4 and trained.runs[1].held_back_with == 3
    with pytest.raises(ValueError, match="held back different validation ratings"):
        member_columns([trained.runs[:1], [own_draw]])  # it may have fitted ratings the blend would be chosen on


def test_an_ensemble_round_trips_through_a_checkpoint(data, ml_folder, tmp_path):
    train, test, ids = data
    recipe = EnsembleRecipe(members=(RECIPES["I-AutoRec"].replace(**QUICK),
                                     DeepAutoRecRecipe(by="user", hidden=4, epochs=3)), seeds=2, blend_step=0.5)
    trained = train_ensemble(train, recipe, progress=False, **ids)
    path = save_checkpoint(trained, tmp_path / "ensemble.pt", split="u1")
    loaded = load_checkpoint(path, data_path=ml_folder)
    assert loaded.recipe == recipe and type(loaded.model) is AutoRecEnsemble
    assert np.array_equal(loaded.predictor.predict(test.user_id, test.item_id), trained.predictor.predict(test.user_id, test.item_id))
    again, how = load_or_train(path, train, recipe, "u1", **ids)
    assert how.startswith("loaded")
    payload = torch.load(path, weights_only=True)
    payload["model"]["config"]["weights"] = [2.0] + payload["model"]["config"]["weights"][1:]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="invalid model configuration"):
        load_checkpoint(tmp_path / "bad.pt", data_path=ml_folder)


def test_named_ensemble_recipe(data):
    named = [name for name, recipe in RECIPES.items() if isinstance(recipe, EnsembleRecipe)]
    assert named, "chapter 07's ensemble is a named recipe"
    for name in named:
        recipe = get_recipe(name)
        assert recipe.family == "ensembles" and recipe.seeds >= 1
        with pytest.raises(ValueError, match=r"train_ensemble \(autorec_utils.ensemble\)"):
            get_recipe(name, family="ratings")


# ---------------------------------------------------------------- choosing on test: reading only

def test_watching_the_test_ratings_steers_nothing(data):
    train, test, ids = data
    recipe = RECIPES["I-AutoRec"].replace(hidden=5, epochs=6)
    watched = train_watching_test(train, test, recipe, progress=False, **ids)
    honest = train_autorec(train, recipe, progress=False, **ids)
    frame, plain = watched.history.to_frame(), honest.history.to_frame()
    assert np.allclose(frame.val_rmse, plain.val_rmse) and watched.history.best_epoch == honest.history.best_epoch
    best = watched.history.best_epoch
    assert frame.test_rmse.loc[best] == pytest.approx(score(honest.predictor, test)["RMSE"])
    numbers = selection_optimism(watched.history)
    assert numbers["test at validation's epoch"] == pytest.approx(frame.test_rmse.loc[best])
    assert numbers["best test"] == pytest.approx(frame.test_rmse.min()) and numbers["optimism"] >= 0


def test_selection_optimism_reads_a_history():
    from autorec_utils.train import History
    history = History(records=[{"epoch": e, "val_rmse": v, "test_rmse": t}
                               for e, v, t in ((1, 1.0, 0.95), (2, 0.9, 0.93), (3, 0.92, 0.91))], best_epoch=2)
    numbers = selection_optimism(history)
    assert numbers == {"validation's epoch": 2, "test at validation's epoch": 0.93, "test's epoch": 3, "best test": 0.91,
                       "optimism": pytest.approx(0.02)}


def test_published_numbers_say_how_they_were_chosen():
    frame = pd.DataFrame(PUBLISHED)
    assert {"model", "u1 RMSE", "epoch chosen on", "settings chosen on", "source"} <= set(frame.columns)
    assert frame["u1 RMSE"].between(0.85, 1.0).all() and frame.source.str.startswith("http").all()
