"""One interface for every model: each chapter-04 function on every kind of trained model the package makes -- the
list models (EASE, Mult-DAE, Mult-VAE), U- and I-AutoRec on the dense and the sparse path, the deep variants and the
ensemble -- either works or says, in a ValueError, what to use instead. Then a saved list model and a saved ensemble
load through the core's checkpoint module, which imports their elective only then."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from autorec_utils.checkpoint import load_checkpoint, save_checkpoint
from autorec_utils.load import load_movies, load_users
from autorec_utils.recipes import RECIPES
from autorec_utils.recommend import (
    movie_embeddings,
    recommend_for_new_user,
    recommend_from_liked,
    similar_movies,
    top_k,
    user_embeddings,
)
from autorec_utils.splits import load_split
from autorec_utils.train import train_autorec

from conftest import make_movielens

QUICK = {"epochs": 3, "hidden": 4}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_movielens(tmp_path_factory.mktemp("interface") / "raw" / "ml-100k")


@pytest.fixture(scope="module")
def every_model(folder):
    """Every kind of trained model, each small, trained once for the module."""
    from autorec_utils.ensemble import train_ensemble
    from autorec_utils.topn import train_list_model

    train, _ = load_split("u1", folder)
    ids = {"user_ids": load_users(folder).user_id, "item_ids": load_movies(folder).item_id, "progress": False}
    members = (RECIPES["I-AutoRec"].replace(**QUICK), RECIPES["U-AutoRec (residual)"].replace(**QUICK))
    return {
        "U-AutoRec": train_autorec(train, "U-AutoRec", **QUICK, **ids),
        "I-AutoRec": train_autorec(train, "I-AutoRec", **QUICK, **ids),
        "U-AutoRec (sparse)": train_autorec(train, "U-AutoRec", sparse=True, batch_size=4, **QUICK, **ids),
        "I-AutoRec (sparse)": train_autorec(train, "I-AutoRec", sparse=True, batch_size=4, **QUICK, **ids),
        "U-AutoRec (deep)": train_autorec(train, "U-AutoRec (deep)", **QUICK, **ids),
        "I-AutoRec (local kernel)": train_autorec(train, "I-AutoRec (local kernel)", **QUICK, **ids),
        "AutoRec ensemble": train_ensemble(train, RECIPES["AutoRec ensemble"].replace(members=members), **ids),
        "EASE": train_list_model(train, "EASE", l2=10.0, **ids),
        "Mult-DAE": train_list_model(train, "Mult-DAE", hidden=4, epochs=3, batch_size=4, **ids),
        "Mult-VAE": train_list_model(train, "Mult-VAE", hidden=4, epochs=3, batch_size=4, **ids),
    }


CALLS = {
    "top_k": lambda t, m: top_k(t, 1, m, k=3),
    "similar_movies": lambda t, m: similar_movies(t, 7, m, k=3, min_ratings=1),
    "user_embeddings": lambda t, m: user_embeddings(t),
    "movie_embeddings": lambda t, m: movie_embeddings(t),
    "recommend_for_new_user": lambda t, m: recommend_for_new_user(t, {1: 5, 3: 2}, m, k=3),
    "recommend_from_liked": lambda t, m: recommend_from_liked(t, [1, 3], m, k=3),
}
I_AUTOREC = ("I-AutoRec", "I-AutoRec (sparse)", "I-AutoRec (local kernel)")
RATING_MODELS = ("U-AutoRec", "U-AutoRec (sparse)", "U-AutoRec (deep)", *I_AUTOREC, "AutoRec ensemble")
EXPECTED_REFUSALS = {  # (model, function): what the ValueError says to do instead
    **{(model, "recommend_for_new_user"): "use a U-AutoRec model" for model in I_AUTOREC},
    **{(model, "recommend_from_liked"): "use recommend_for_new_user" for model in RATING_MODELS if model not in I_AUTOREC},
    **{(model, "recommend_from_liked"): "no new person's stars either: .* use a U-AutoRec model" for model in I_AUTOREC},
    ("AutoRec ensemble", "recommend_from_liked"): "no new person's stars either: .* one U-AutoRec member",
    ("AutoRec ensemble", "recommend_for_new_user"): "fold a new person in with one U-AutoRec member",
    ("AutoRec ensemble", "user_embeddings"): "take one member's",
    ("AutoRec ensemble", "movie_embeddings"): "take one member's",
    ("AutoRec ensemble", "similar_movies"): "take one member's",
    ("EASE", "user_embeddings"): "EASE has no hidden layer",
    **{(model, "recommend_for_new_user"): "use recommend_from_liked" for model in ("EASE", "Mult-DAE", "Mult-VAE")},
}
MODELS = [*RATING_MODELS, "EASE", "Mult-DAE", "Mult-VAE"]


@pytest.mark.parametrize("function", CALLS)
@pytest.mark.parametrize("model", MODELS)
def test_every_chapter_04_function_works_on_every_model_or_says_what_to_use(every_model, folder, model, function):
    movies, train = load_movies(folder), load_split("u1", folder)[0]
    trained = every_model[model]
    refusal = EXPECTED_REFUSALS.get((model, function))
    if refusal:
        with pytest.raises(ValueError, match=refusal):
            CALLS[function](trained, movies)
        return
    result = CALLS[function](trained, movies)
    if isinstance(result, pd.DataFrame):
        rated = {"top_k": set(train.item_id[train.user_id == 1]), "similar_movies": {7}}.get(function, {1, 3})
        assert len(result) == 3 and not rated & set(result.item_id)
    else:
        rows = {"user_embeddings": 12, "movie_embeddings": 30}[function]
        assert result.shape[0] == rows and np.isfinite(result).all()


@pytest.mark.parametrize("model", MODELS)
def test_every_model_predicts_through_its_predictor(every_model, model):
    predictor = every_model[model].predictor
    assert predictor.scores.shape == (12, 30) and np.isfinite(predictor.scores).all()
    assert np.allclose(predictor.user_scores(1), predictor.scores[0])
    if predictor.rates:
        predicted = predictor.predict(np.array([1, 2]), np.array([3, 4]))
        assert ((predicted >= 1) & (predicted <= 5)).all()
    else:
        with pytest.raises(ValueError, match="does not predict ratings"):
            predictor.predict(np.array([1]), np.array([3]))


@pytest.mark.parametrize("model", ["Mult-VAE", "AutoRec ensemble", "I-AutoRec (sparse)"])
def test_an_electives_checkpoint_loads_through_the_core_which_imports_it_only_then(every_model, folder, tmp_path, model):
    path = save_checkpoint(every_model[model], tmp_path / "model.pt", split="u1")
    elective = {"Mult-VAE": "topn", "AutoRec ensemble": "ensemble", "I-AutoRec (sparse)": "sparse"}[model]
    code = (f"import sys, numpy as np; from autorec_utils.checkpoint import load_checkpoint; "
            f"before = 'autorec_utils.{elective}' in sys.modules; "
            f"t = load_checkpoint({str(path)!r}, data_path={str(folder)!r}); "
            f"print(before, 'autorec_utils.{elective}' in sys.modules, type(t.predictor).__name__, "
            f"float(np.abs(t.predictor.scores).sum()))")
    before, after, predictor, total = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                     check=True).stdout.split()
    assert (before, after) == ("False", "True")
    assert predictor == type(every_model[model].predictor).__name__
    loaded = load_checkpoint(path, data_path=folder)
    assert np.allclose(loaded.predictor.scores, every_model[model].predictor.scores)
    assert np.isclose(float(total), np.abs(every_model[model].predictor.scores).sum(), rtol=1e-6)
