"""Training AutoRec (chapter 03): ``fit`` runs the training loop -- forward, masked loss + L2 penalty,
backward, step -- with early stopping on a validation part carved from the *training* ratings (never
the test set). ``train_autorec`` runs a whole named recipe (U- or I-AutoRec, baseline, fallback) from a
ratings DataFrame, and ``random_splits_rmse`` the paper's protocol (chapter 05).

The loop is the same for the dense matrix of chapters 02-04 and the sparse one of chapter 05; the path
(``DenseProblem`` here, ``sparse.SparseProblem``) supplies the batches, the batch loss and the optimiser.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .evaluate import AutoRecPredictor, BiasBaseline, score
from .matrix import RatingMatrix, rating_matrix
from .model import AutoRec, autorec_objective
from .sparse import DENSE_LIMIT, SparseAutoRecPredictor, SparseProblem, SparseRatingMatrix, sparse_rating_matrix
from .splits import random_split, validation_entries

__all__ = [  # what the notebooks, the command line and users call
    "OPTIMIZERS", "RECIPES", "History", "TrainedAutoRec", "fit", "hold_out", "pick_device",
    "random_splits_rmse", "seed_everything", "train_autorec",
]


OPTIMIZERS = ("adam", "rprop", "lbfgs")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch, so that building and training a model gives the same numbers (chapter 02)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(device: str | torch.device | None = None, sparse: bool = False) -> torch.device:
    """``device`` if given, else CUDA, else Apple's MPS (not for the sparse path: PyTorch has no sparse
    kernels there), else the CPU (chapter 03)."""
    if device is not None:
        device = torch.device(device)
        if sparse and device.type == "mps":
            raise ValueError("the sparse path runs on CUDA or the CPU (PyTorch has no sparse CSR kernels for MPS); "
                             "pass device='cpu', or a dense RatingMatrix if it fits in memory.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available() and not sparse:
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class History:
    """What happened in each epoch, and which epoch's weights the model was left with (chapter 03)."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records).set_index("epoch")

    @property
    def best(self) -> dict:
        return self.records[self.best_epoch - 1]


def fit(model: AutoRec, train: RatingMatrix | SparseRatingMatrix, epochs: int = 200, lr: float = 1e-3,
        l2: float = 1.0, batch_size: int | None = None, optimizer: str = "adam", validation_fraction: float = 0.05,
        patience: int = 20, lr_decay: float = 1.0, baseline: torch.Tensor | None = None, seed: int = 0,
        device: str | torch.device | None = None, progress: bool = True) -> History:
    """Minimise the AutoRec objective on the observed ratings of ``train`` (its rows are what the model
    reads), chapter 03. Returns the per-epoch history; the model keeps its best epoch's weights.

    ``l2`` is the paper's lambda: an epoch minimises sum_observed (r - h(r))^2 + (l2 / 2)(||W||^2 + ||V||^2).
    ``batch_size=None`` trains full-batch; otherwise the rows are shuffled into n near-equal mini-batches
    of at most ``batch_size`` rows, each carrying 1/n of the penalty. ``validation_fraction`` of the
    training ratings is hidden from the model and used for early stopping (``patience`` epochs without a
    better validation RMSE). ``lr_decay`` multiplies the learning rate after every epoch. ``optimizer``:
    "adam", or the paper's full-batch "rprop" and "lbfgs". ``baseline`` (shaped like the matrix, e.g.
    ``BiasBaseline.predict_matrix``) makes the model learn the residuals r - baseline; the reported
    RMSEs are on the rating scale. A ``SparseRatingMatrix`` trains on chapter 05's sparse path.
    """
    _check_fit_arguments(model, train, epochs, lr, l2, batch_size, optimizer, patience, lr_decay, baseline)
    path = SparseProblem if isinstance(train, SparseRatingMatrix) else DenseProblem  # the path follows the matrix
    device = pick_device(device, sparse=path is SparseProblem)
    validation = validation_entries(train.n_observed, validation_fraction, seed)
    problem = path(model.to(device), train, validation, l2, batch_size, baseline, device)
    optim = problem.optimizer(optimizer, lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=lr_decay)
    generator = torch.Generator().manual_seed(seed)  # the order of the mini-batches
    torch.manual_seed(seed)  # dropout masks
    history, best_state, best_rmse, waited = History(), None, float("inf"), 0
    bar = tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        epoch_loss = 0.0
        for rows in problem.batches(generator):
            def closure(rows=rows):  # L-BFGS may evaluate the loss several times per step
                optim.zero_grad()
                loss = problem.batch_loss(rows)
                loss.backward()
                return loss
            epoch_loss += float(optim.step(closure).detach())
        if not np.isfinite(epoch_loss):
            raise FloatingPointError(f"the loss became {epoch_loss} at epoch {epoch}; lower the learning rate (lr={lr}).")
        schedule.step()
        model.eval()
        train_rmse, val_rmse = problem.rmse()
        history.records.append({"epoch": epoch, "loss": epoch_loss, "loss_per_rating": epoch_loss / max(problem.n_fit, 1),
                                "train_rmse": train_rmse, "val_rmse": val_rmse, "seconds": time.perf_counter() - started})
        bar.set_postfix(train=f"{train_rmse:.4f}", val=f"{val_rmse:.4f}")
        watched = train_rmse if np.isnan(val_rmse) else val_rmse  # early stopping watches the validation ratings
        if watched < best_rmse:
            best_rmse, history.best_epoch, waited = watched, epoch, 0
            best_state = _copy_into(best_state, model.state_dict())
        else:
            waited += 1
            if waited >= patience:
                history.stopped_early = True
                break
    bar.close()
    model.load_state_dict(best_state)
    return history


def _copy_into(saved: dict | None, state: dict) -> dict:
    """A copy of ``state``, written into ``saved`` when there is one: no second copy of a large model."""
    if saved is None:
        return {name: tensor.detach().clone() for name, tensor in state.items()}
    for name, tensor in state.items():
        saved[name].copy_(tensor)
    return saved


def hold_out(matrix: RatingMatrix, fraction: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The masks of the ratings to fit and of those held back for validation: ``fit`` draws the same
    ones for the same ``fraction`` and ``seed`` (chapter 03)."""
    validation = matrix.entry_mask(validation_entries(matrix.n_observed, fraction, seed))
    return matrix.mask & ~validation, validation


class DenseProblem:
    """The dense path of ``fit`` (chapters 02-04): the whole matrix on the device, every row
    reconstructed in full, the loss masked to the observed ratings. The validation ratings are zeros in
    the input and count in no loss."""

    def __init__(self, model: AutoRec, train: RatingMatrix, validation: torch.Tensor, l2: float,
                 batch_size: int | None, baseline: torch.Tensor | None, device: torch.device):
        self.model, self.l2, self.device = model, l2, device
        self.validation_mask = train.entry_mask(validation).to(device)
        self.fit_mask = train.mask.to(device) & ~self.validation_mask
        self.offset = (torch.zeros(()) if baseline is None else baseline).to(device)
        self.targets = (train.values.to(device) - self.offset) * train.mask.to(device)  # residuals, with a baseline
        self.inputs = self.targets * self.fit_mask
        self.n_rows, self.n_fit = train.shape[0], int(self.fit_mask.sum())
        self.n_batches = 1 if batch_size is None else -(-self.n_rows // batch_size)

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        """Adam, or the paper's Rprop or L-BFGS, over all the model's parameters."""
        if name == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=lr)
        if name == "rprop":
            return torch.optim.Rprop(self.model.parameters(), lr=lr)
        return torch.optim.LBFGS(self.model.parameters(), lr=lr, max_iter=1, history_size=20, line_search_fn="strong_wolfe")

    def batches(self, generator: torch.Generator) -> list:
        if self.n_batches == 1:
            return [slice(None)]  # every row, in order
        return [rows.to(self.device) for rows in torch.randperm(self.n_rows, generator=generator).tensor_split(self.n_batches)]

    def batch_loss(self, rows) -> torch.Tensor:
        """The masked squared error of these rows, plus their share of the penalty."""
        prediction = self.model(self.inputs[rows])
        return autorec_objective(self.model, prediction, self.targets[rows], self.fit_mask[rows], self.l2 / self.n_batches)

    def rmse(self) -> tuple[float, float]:
        """RMSE on the rating scale (predictions clipped to [1, 5]) on the fitted and the validation ratings."""
        with torch.no_grad():
            error = (self.model(self.inputs) + self.offset).clamp(1, 5) - (self.targets + self.offset)
        train_rmse, val_rmse = (float(error[m].square().mean().sqrt()) if m.any() else float("nan")
                                for m in (self.fit_mask, self.validation_mask))
        return train_rmse, val_rmse


def _check_fit_arguments(model, train, epochs, lr, l2, batch_size, optimizer, patience, lr_decay, baseline) -> None:
    if not isinstance(train, (RatingMatrix, SparseRatingMatrix)):
        raise TypeError(f"train must be a RatingMatrix (matrix.rating_matrix) or a SparseRatingMatrix, got {type(train).__name__}.")
    if train.shape[1] != model.config["n_inputs"]:
        raise ValueError(f"the model reads vectors of length {model.config['n_inputs']} but each row of the matrix has "
                         f"{train.shape[1]} entries (by={train.by!r}); build AutoRec(n_inputs=matrix.shape[1]) or transpose the matrix.")
    for name, value in (("epochs", epochs), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}.")
    if not l2 >= 0:
        raise ValueError(f"l2 (lambda) must be >= 0, got {l2!r}.")
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay!r}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not one of {OPTIMIZERS}.")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0):
        raise ValueError(f"batch_size must be a positive integer or None (full batch), got {batch_size!r}.")
    if batch_size is not None and optimizer != "adam":
        raise ValueError(f"{optimizer} is a full-batch method: use batch_size=None, or optimizer='adam'.")
    if isinstance(train, SparseRatingMatrix) and (optimizer != "adam" or baseline is not None):
        raise ValueError("the sparse path trains with Adam on the ratings themselves: use optimizer='adam' and no "
                         "baseline, or a dense RatingMatrix (sparse.SparseRatingMatrix.to_dense()) if it fits in memory.")
    if baseline is not None and tuple(baseline.shape) != train.shape:
        raise ValueError(f"baseline has shape {tuple(baseline.shape)}, the matrix {train.shape}: predict it for this matrix.")


# ---------------------------------------------------------------- recipes

# Recipes chosen on the validation ratings of the canonical u1 split (benchmarks/tune.py prints the grid;
# benchmarks/rmse.py their test figures). "by" picks the variant (rows are users or movies); "residual"
# learns the residuals of the bias baseline; "fallback" is what a user or movie without training ratings
# gets ("mean" or "bias"); "refit" (off in all three) trains a second time on *all* training ratings.
RECIPES = {
    "U-AutoRec": {"by": "user", "hidden": 500, "activation": "sigmoid", "l2": 100.0, "lr": 1e-2, "lr_decay": 1.0,
                  "patience": 10, "residual": False, "refit": False, "fallback": "mean"},
    "U-AutoRec (residual)": {"by": "user", "hidden": 200, "activation": "sigmoid", "l2": 100.0, "lr": 3e-3, "lr_decay": 1.0,
                             "patience": 10, "residual": True, "refit": False, "fallback": "bias"},
    "I-AutoRec": {"by": "item", "hidden": 500, "activation": "sigmoid", "l2": 100.0, "lr": 1e-2, "lr_decay": 0.99,
                  "patience": 10, "residual": False, "refit": False, "fallback": "bias"},
}
MODEL_SETTINGS = ("hidden", "activation", "dropout", "input_dropout")
FIT_SETTINGS = ("epochs", "lr", "l2", "batch_size", "optimizer", "validation_fraction", "patience", "lr_decay")
RECIPE_SETTINGS = ("by", "residual", "refit", "fallback")
RECIPE_DEFAULTS = {"by": "user", "residual": False, "refit": False, "fallback": "mean", "hidden": 500, "activation": "sigmoid",
                   "dropout": 0.0, "input_dropout": 0.0, "epochs": 2000, "lr": 1e-3, "l2": 1.0, "batch_size": None,
                   "optimizer": "adam", "validation_fraction": 0.05, "patience": 20, "lr_decay": 1.0}


@dataclass
class TrainedAutoRec:
    """Everything a trained recipe produced: the model, the training matrix it reads (its orientation),
    its predictor, the bias baseline (fitted on the ratings the final model was fitted on), and how it
    went (chapter 03)."""

    model: AutoRec
    matrix: RatingMatrix | SparseRatingMatrix
    predictor: AutoRecPredictor
    bias: BiasBaseline
    history: History
    recipe: dict
    seconds: float
    seed: int = 0
    split: str | None = None  # the canonical split it was trained on ("all": every rating), when known


def train_autorec(train: pd.DataFrame, recipe: str | dict = "I-AutoRec", user_ids=None, item_ids=None, seed: int = 0,
                  device: str | torch.device | None = None, progress: bool = True, sparse: bool | None = None,
                  **overrides) -> TrainedAutoRec:
    """Train a recipe (a name from ``RECIPES`` or a dict like them) on the ratings in ``train`` (chapter 03).

    ``overrides`` change single settings, e.g. ``train_autorec(train, "I-AutoRec", hidden=200)``. Pass the
    full ``user_ids``/``item_ids`` so that test users and movies have a place in the matrix. ``sparse``:
    train on chapter 05's sparse path (give a ``batch_size``); ``None`` decides by size (``DENSE_LIMIT`` cells).
    The bias baseline of a residual recipe is fitted on the ratings the model is fitted on: the validation
    ratings cannot move it (on all of them when the recipe refits).
    """
    recipe = resolve_recipe(recipe, overrides)
    started = time.perf_counter()
    users = np.unique(train.user_id if user_ids is None else user_ids)
    items = np.unique(train.item_id if item_ids is None else item_ids)
    if sparse is None:
        sparse = len(users) * len(items) > DENSE_LIMIT
    if sparse and recipe["residual"]:
        raise ValueError("a residual recipe needs the bias baseline as a dense users x movies matrix, which the sparse "
                         "path avoids; use 'I-AutoRec' or 'U-AutoRec', or sparse=False.")
    matrix = (sparse_rating_matrix if sparse else rating_matrix)(train, by=recipe["by"], user_ids=users, item_ids=items)
    model_settings = {k: recipe[k] for k in MODEL_SETTINGS}
    fit_settings = {k: recipe[k] for k in FIT_SETTINGS}
    options = {"seed": seed, "device": device, "progress": progress}

    held_out = validation_entries(matrix.n_observed, recipe["validation_fraction"], seed)
    bias = BiasBaseline().fit(matrix.to_frame(keep=~held_out))  # never the validation ratings
    seed_everything(seed)
    model = AutoRec(matrix.shape[1], **model_settings)
    baseline = bias.predict_matrix(matrix) if recipe["residual"] else None
    history = fit(model, matrix, baseline=baseline, **fit_settings, **options)
    if recipe["refit"]:  # as many epochs again, now on every training rating (no validation part)
        bias = BiasBaseline().fit(train)
        seed_everything(seed)
        model = AutoRec(matrix.shape[1], **model_settings)
        baseline = bias.predict_matrix(matrix) if recipe["residual"] else None
        fit(model, matrix, baseline=baseline, **{**fit_settings, "epochs": history.best_epoch, "validation_fraction": 0.0,
                                                 "patience": history.best_epoch}, **options)
    predictor = predictor_for(model, matrix, bias, recipe)
    return TrainedAutoRec(model, matrix, predictor, bias, history, recipe, time.perf_counter() - started, seed)


def resolve_recipe(recipe: str | dict, overrides: dict) -> dict:
    """A recipe by name (or a dict of settings) with ``overrides`` applied and every setting checked (chapter 03)."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"recipe {recipe!r} is not one of {list(RECIPES)}; or pass a dict of settings.")
        recipe = RECIPES[recipe]
    recipe = {**RECIPE_DEFAULTS, **recipe, **overrides}
    unknown = set(recipe) - {*RECIPE_SETTINGS, *MODEL_SETTINGS, *FIT_SETTINGS}
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; known: {', '.join(RECIPE_SETTINGS + MODEL_SETTINGS + FIT_SETTINGS)}.")
    if recipe["fallback"] not in ("mean", "bias"):
        raise ValueError(f"fallback={recipe['fallback']!r}: use 'mean' or 'bias'.")
    return recipe


def predictor_for(model: AutoRec, matrix: RatingMatrix | SparseRatingMatrix, bias: BiasBaseline,
                  recipe: dict) -> AutoRecPredictor:
    """The predictor of a model trained by ``recipe``: the sparse one for a ``SparseRatingMatrix``, with its
    baseline when it learned residuals, and its fallback for users and movies without training ratings (chapter 03)."""
    fallback = bias if recipe.get("fallback") == "bias" else None
    if isinstance(matrix, SparseRatingMatrix):
        return SparseAutoRecPredictor(model, matrix, fallback=fallback)
    baseline = bias.predict_matrix(matrix) if recipe.get("residual") else None
    return AutoRecPredictor(model, matrix, fallback=fallback, baseline=baseline)


def random_splits_rmse(ratings: pd.DataFrame, recipe: str | dict = "I-AutoRec", repeats: int = 5,
                       test_fraction: float = 0.1, seed: int = 0, progress: bool = True, **options) -> pd.DataFrame:
    """The paper's protocol (chapter 05): ``repeats`` random splits (90 % train, 10 % test by default), a
    model trained on each, its test RMSE and MAE. ``options`` go to ``train_autorec`` (``sparse=True``,
    ``batch_size=...``, ``epochs=...``, settings of the recipe). One row per split."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats <= 0:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}.")
    user_ids, item_ids = np.unique(ratings.user_id), np.unique(ratings.item_id)
    rows = []
    for split in range(repeats):
        train, test = random_split(ratings, test_fraction=test_fraction, seed=seed + split)
        trained = train_autorec(train, recipe, user_ids=user_ids, item_ids=item_ids, seed=seed + split,
                                progress=progress, **options)
        rows.append({"split": split + 1, **score(trained.predictor, test), "epochs": trained.history.best_epoch,
                     "seconds": round(trained.seconds, 1)})
    return pd.DataFrame(rows).set_index("split")
