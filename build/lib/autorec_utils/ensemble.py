"""Averaging rating models (chapter 07): an ``EnsembleRecipe`` trains its members with several seeds, all
holding back the same validation ratings, and blends them with weights chosen on those ratings.

The blend is one model of the package: ``train_ensemble`` returns a ``Trained`` whose predictor is an
``EnsemblePredictor`` (the ``Predictor`` interface: ratings, scores, top-k), whose model is an
``AutoRecEnsemble`` (every member's weights in one module, so one checkpoint holds them all) and whose
recipe is the ``EnsembleRecipe``.
"""

from __future__ import annotations

import itertools
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from torch import nn

from .evaluate import RATING_RANGE, BiasBaseline, rmse
from .matrix import RatingMatrix, rating_matrix
from .model import AutoRec
from .recipes import AutoRecRecipe, EnsembleRecipe, get_recipe
from .splits import validation_part
from .train import History, Trained, predictor_for, train_autorec
from .variants import DeepAutoRec

__all__ = ["AutoRecEnsemble", "EnsemblePredictor", "blend_weights", "member_columns", "train_ensemble"]

MEMBER_MODELS = {cls.__name__: cls for cls in (AutoRec, DeepAutoRec)}


class AutoRecEnsemble(nn.Module):
    """The trained runs of an ensemble in one module (chapter 07): ``members`` lists each run's model class,
    configuration, orientation (``by``), which recipe of the ensemble it is (``member``) and its seed;
    ``weights`` (one per run, summing to 1) are the blend. ``n_users`` and ``n_items`` fix the layout."""

    def __init__(self, n_users: int, n_items: int, members: list, weights: list):
        super().__init__()
        if not isinstance(members, list) or not members or not isinstance(weights, list) or len(weights) != len(members):
            raise ValueError("an AutoRecEnsemble needs a non-empty list of members and one weight per member.")
        if any(not isinstance(w, float) or not np.isfinite(w) or w < 0 for w in weights) or abs(sum(weights) - 1) > 1e-6:
            raise ValueError(f"the blend weights must be non-negative numbers summing to 1, got {weights!r}.")
        models = []
        for spec in members:
            if not isinstance(spec, dict) or set(spec) != {"class", "config", "by", "member", "seed"} \
                    or spec["class"] not in MEMBER_MODELS or spec["by"] not in ("user", "item"):
                raise ValueError(f"an ensemble member is a dict of class ({', '.join(MEMBER_MODELS)}), config, by, member "
                                 f"and seed, got {spec!r}.")
            wanted = n_items if spec["by"] == "user" else n_users
            if spec["config"].get("n_inputs") != wanted:
                raise ValueError(f"a member reading {spec['by']} rows must read vectors of length {wanted}, "
                                 f"not {spec['config'].get('n_inputs')}.")
            models.append(MEMBER_MODELS[spec["class"]](**spec["config"]))
        self.config: dict[str, Any] = {"n_users": int(n_users), "n_items": int(n_items), "members": members,
                                       "weights": weights}
        self.members = nn.ModuleList(models)


class EnsemblePredictor:
    """The weighted average of its members' predictors (chapter 07): ratings, scores and top-k lists as
    every ``Predictor``. ``members`` is a list of (predictor, weight); ``matrix`` the users x movies
    training matrix. Fold-in and embeddings belong to single models: ask a member."""

    rates = True

    def __init__(self, model: AutoRecEnsemble, matrix: RatingMatrix, members: list):
        if matrix.by != "user":
            raise ValueError("an ensemble's matrix is the users x movies one (by='user').")
        self.model, self.matrix, self.members = model, matrix, members
        self.weights = np.array([weight for _, weight in members])
        colds = sorted({predictor.cold_start for predictor, _ in members})
        self.cold_start = colds[0] if len(colds) == 1 else "the average of the members' fallbacks (" + "; ".join(colds) + ")"

    def _average(self, each) -> np.ndarray:
        return sum(weight * np.asarray(each(predictor), dtype=np.float64) for predictor, weight in self.members)

    def predict(self, user_ids, item_ids) -> np.ndarray:
        """The weighted average of the members' predicted ratings, clipped to [1, 5]."""
        return np.clip(self._average(lambda p: p.predict(user_ids, item_ids)), *RATING_RANGE)

    def user_scores(self, user_id) -> np.ndarray:
        return self._average(lambda p: p.user_scores(user_id))

    @property
    def scores(self) -> np.ndarray:
        return self._average(lambda p: p.scores)

    def fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        raise ValueError("an ensemble averages models that read the ratings in different ways; fold a new person in with "
                         "one U-AutoRec member (trained.predictor.members[k][0]) or a U-AutoRec recipe.")

    def user_vectors(self) -> np.ndarray:
        raise ValueError("an ensemble has no single embedding of the users; take one member's "
                         "(trained.predictor.members[k][0].user_vectors()).")

    def movie_vectors(self) -> np.ndarray:
        raise ValueError("an ensemble has no single embedding of the movies; take one member's "
                         "(trained.predictor.members[k][0].movie_vectors()).")


def blend_weights(predictions: np.ndarray, ratings: np.ndarray, step: float = 0.05) -> tuple[np.ndarray, float]:
    """The weights (multiples of ``step``, non-negative, summing to 1) for the columns of ``predictions`` (one
    column per model, one row per rating) whose weighted average has the lowest RMSE on ``ratings``, and that
    RMSE (chapter 07). Ties go to the first in order, which puts weight on the earlier models."""
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim != 2 or predictions.shape[0] != len(ratings) or predictions.shape[1] == 0:
        raise ValueError(f"predictions must be ratings x models, got shape {predictions.shape} for {len(ratings)} ratings.")
    if not np.isfinite(predictions).all():
        raise ValueError(f"model {int(np.flatnonzero(~np.isfinite(predictions).all(axis=0))[0]) + 1} of the blend predicts "
                         "numbers that are not finite (NaN or infinity): it diverged; train it again (a lower learning "
                         "rate), or leave it out of the blend.")
    units = int(round(1 / step))
    if not np.isclose(units * step, 1):
        raise ValueError(f"the blend step (an EnsembleRecipe's blend_step) must divide 1 (0.05, 0.1, 0.25, ...), "
                         f"got {step!r}.")
    best, best_rmse = np.zeros(predictions.shape[1]), np.inf  # every blend's RMSE is finite: the first replaces it
    for split in itertools.product(range(units + 1), repeat=predictions.shape[1] - 1):
        if sum(split) > units:
            continue
        weights = np.array([*split, units - sum(split)], dtype=np.float64)[::-1] / units
        error = rmse(np.clip(predictions @ weights, *RATING_RANGE), ratings)
        if error < best_rmse - 1e-12:
            best, best_rmse = weights, error
    return best, best_rmse


def validation_ratings(trained: Trained, validation: torch.Tensor) -> pd.DataFrame:
    """The ratings ``validation`` held back from ``trained``'s matrix, user by user, with the model's
    predictions for them from the ratings it fitted only (the way early stopping saw them; chapter 07)."""
    matrix = trained.matrix
    held = matrix.to_frame(keep=validation).sort_values(["user_id", "item_id"], kind="stable").reset_index(drop=True)
    fitted = rating_matrix(matrix.to_frame(keep=~validation), by=matrix.by, user_ids=matrix.user_ids,
                           item_ids=matrix.item_ids)
    predictor = predictor_for(cast("AutoRec | DeepAutoRec", trained.model), fitted, trained.bias, trained.recipe)
    return held.assign(prediction=predictor.predict(held.user_id.to_numpy(), held.item_id.to_numpy()))


def member_columns(members: list[list[Trained]]) -> tuple[pd.DataFrame, np.ndarray]:
    """The validation ratings that every run of ``members`` (a list of runs per member) held back, and one
    column per member: the mean of its runs' predictions for them (chapter 07). Runs that held back different
    ratings cannot be blended on them: that raises."""
    held, columns = None, []
    for runs in members:
        predictions = []
        for run in runs:
            fraction = cast(AutoRecRecipe, run.recipe).validation_fraction  # the members are rating runs
            part = validation_ratings(run, validation_part(run.matrix, fraction, run.held_back_with))
            if held is None:
                held = part
            elif not held[["user_id", "item_id"]].equals(part[["user_id", "item_id"]]):
                raise ValueError("these runs held back different validation ratings, so no blend can be chosen on them: "
                                 "train them with one validation_seed (train_autorec(..., validation_seed=...)) and one "
                                 "validation_fraction, as train_ensemble does.")
            predictions.append(part.prediction.to_numpy())
        columns.append(np.mean(predictions, axis=0))
    return held, np.column_stack(columns)


def train_ensemble(train: pd.DataFrame, recipe: str | EnsembleRecipe, user_ids=None, item_ids=None, seed: int = 0,
                   device: str | torch.device | None = None, progress: bool = True, **changes) -> Trained:
    """Train an ``EnsembleRecipe`` (a name from ``recipes.RECIPES`` or the recipe) on ``train`` (chapter 07): every
    member ``recipe.seeds`` times with seeds ``seed``, ``seed + 1``, ..., all holding back the validation ratings
    of ``seed``; then the blend weights on those ratings. ``changes`` change the ensemble's settings
    (``seeds=3``, or one number per member). Returns a ``Trained`` with an ``EnsemblePredictor``; its history has one record, the blend's
    validation RMSE, and ``seconds`` is the sum of the runs' training times."""
    recipe = cast(EnsembleRecipe, get_recipe(recipe, family="ensembles", **changes))
    users = np.unique(train.user_id if user_ids is None else user_ids)
    items = np.unique(train.item_id if item_ids is None else item_ids)
    member_runs = [[train_autorec(train, member, user_ids=users, item_ids=items, seed=seed + offset, validation_seed=seed,
                                  device=device, progress=progress) for offset in range(count)]
                   for member, count in zip(recipe.members, recipe.seed_counts, strict=True)]
    held, columns = member_columns(member_runs)
    blend, val_rmse = blend_weights(columns, held.rating.to_numpy(), recipe.blend_step)
    every_run = [run for runs in member_runs for run in runs]
    seconds = sum(run.seconds for run in every_run)  # every run's cost, kept or not
    # a member blended with weight 0 is dropped
    runs = [(index, run) for index, member in enumerate(member_runs) if blend[index] > 0 for run in member]
    specs = [{"class": type(run.model).__name__, "config": dict(cast("AutoRec | DeepAutoRec", run.model).config),
              "by": run.matrix.by, "member": index, "seed": run.seed} for index, run in runs]
    model = AutoRecEnsemble(len(users), len(items), specs,
                            [float(blend[index] / recipe.seed_counts[index]) for index, _ in runs])
    for module, (_, run) in zip(model.members, runs, strict=True):
        module.load_state_dict(run.model.state_dict())
    matrix = rating_matrix(train, by="user", user_ids=users, item_ids=items)
    bias = runs[0][1].bias  # every run fitted it on the same ratings: the training ratings less the validation part
    history = History(records=[{"epoch": 1, "val_rmse": val_rmse, "runs": len(runs), "seconds": seconds}], best_epoch=1)
    trained = Trained(model, matrix, ensemble_predictor(model, matrix, bias, recipe), recipe, history, seconds, seed,
                      bias=bias)
    trained.runs = every_run  # every run as trained (those blended with weight 0 too), each with its own history
    return trained


def ensemble_predictor(model: AutoRecEnsemble, matrix: RatingMatrix, bias: BiasBaseline | None,
                       recipe: EnsembleRecipe) -> EnsemblePredictor:
    """The predictor of a trained ensemble, from its module, the users x movies training matrix, the bias
    baseline its members share and its recipe (chapter 07; what loading a checkpoint calls)."""
    if matrix.by != "user":
        matrix = matrix.transpose()
    members = []
    for module, spec, weight in zip(model.members, model.config["members"], model.config["weights"], strict=True):
        if not 0 <= spec["member"] < len(recipe.members):
            raise ValueError(f"the ensemble has {len(recipe.members)} member recipes; a run names member {spec['member']}.")
        member_matrix = matrix if spec["by"] == "user" else matrix.transpose()
        member = cast("AutoRec | DeepAutoRec", module)  # MEMBER_MODELS built it
        members.append((predictor_for(member, member_matrix, bias, recipe.members[spec["member"]]), weight))
    return EnsemblePredictor(model, matrix, members)
