"""fit(): train an AutoRec on the observed entries of a rating matrix, with early stopping on a
validation part carved from the *training* ratings (never the test set); and ``train_autorec``, which
runs a whole named recipe (U-AutoRec or I-AutoRec, baseline, fallback) from a ratings DataFrame."""

from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .data import RatingMatrix, rating_matrix
from .evaluate import AutoRecPredictor, BiasBaseline
from .model import AutoRec, masked_squared_error

OPTIMIZERS = ("adam", "rprop", "lbfgs")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch, so that building and training a model gives the same numbers."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA, else Apple's MPS, else the CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class History:
    """What happened in each epoch, and which epoch's weights the model was left with."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records).set_index("epoch")

    @property
    def best(self) -> dict:
        return self.records[self.best_epoch - 1]


def carve_validation(matrix: RatingMatrix, fraction: float, seed: int) -> torch.Tensor:
    """A random ``fraction`` of the observed entries, as a mask, to validate on."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction!r}.")
    observed = matrix.mask.flatten().nonzero().squeeze(1)
    generator = torch.Generator().manual_seed(seed)
    chosen = observed[torch.randperm(len(observed), generator=generator)[: int(round(fraction * len(observed)))]]
    validation = torch.zeros(matrix.mask.numel(), dtype=torch.bool)
    validation[chosen] = True
    return validation.view_as(matrix.mask)


def fit(
    model: AutoRec,
    train: RatingMatrix,
    epochs: int = 200,
    lr: float = 1e-3,
    l2: float = 1.0,
    batch_size: int | None = None,
    optimizer: str = "adam",
    validation_fraction: float = 0.05,
    patience: int = 20,
    lr_decay: float = 1.0,
    baseline: torch.Tensor | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> History:
    """Minimise the AutoRec objective on the observed entries of ``train`` (rows = what the model reads).

    ``l2`` is the paper's lambda: the objective of an epoch is
    sum_observed (r - h(r))^2 + (l2 / 2)(||W||^2 + ||V||^2); a mini-batch of rows carries its share of
    the penalty. ``batch_size=None`` trains full-batch. ``validation_fraction`` of the training ratings
    is hidden from the model and used for early stopping (``patience`` epochs without a better
    validation RMSE); the best epoch's weights are restored. ``lr_decay`` multiplies the learning rate
    after every epoch. Rprop and L-BFGS (the paper's optimisers) are full-batch only.

    ``baseline`` (a tensor shaped like ``train.values``, e.g. ``BiasBaseline.predict_matrix``) makes
    the model learn the *residuals* r - baseline instead of the ratings; predictions are then
    baseline + h(r - baseline). The reported RMSEs are always on the rating scale.
    """
    _check_fit_arguments(model, train, epochs, lr, l2, batch_size, optimizer, patience)
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay!r}.")
    if baseline is not None and baseline.shape != train.values.shape:
        raise ValueError(f"baseline has shape {tuple(baseline.shape)}, the matrix {tuple(train.values.shape)}: predict it for this matrix.")
    device = pick_device(device)
    model.to(device)
    validation = carve_validation(train, validation_fraction, seed)
    fit_mask = (train.mask & ~validation).to(device)
    offset = torch.zeros(()) if baseline is None else baseline
    offset = offset.to(device)
    targets = (train.values.to(device) - offset) * train.mask.to(device)
    inputs = targets * fit_mask  # validation ratings are hidden from the input too
    validation = validation.to(device)
    n_rows = inputs.shape[0]
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    optim = _make_optimizer(optimizer, model.parameters(), lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=lr_decay)

    def objective(rows: torch.Tensor | slice) -> torch.Tensor:
        batch_rows = n_rows if isinstance(rows, slice) else len(rows)
        error = masked_squared_error(model(inputs[rows]), targets[rows], fit_mask[rows])
        return error + (batch_rows / n_rows) * 0.5 * l2 * model.weight_norm()

    history, best_rmse, best_state, waited = History(), float("inf"), None, 0
    bar = tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        if batch_size is None:
            def closure():
                optim.zero_grad()
                loss = objective(slice(None))
                loss.backward()
                return loss
            epoch_loss = float(optim.step(closure).detach())
        else:
            epoch_loss = 0.0
            for rows in torch.randperm(n_rows, generator=generator).split(batch_size):
                rows = rows.to(device)
                optim.zero_grad()
                loss = objective(rows)
                loss.backward()
                optim.step()
                epoch_loss += float(loss.detach())
        schedule.step()
        train_rmse, val_rmse = _rmse_on(model, inputs, targets, offset, [fit_mask, validation])
        record = {"epoch": epoch, "loss": epoch_loss, "loss_per_rating": epoch_loss / max(int(fit_mask.sum()), 1),
                  "train_rmse": train_rmse, "val_rmse": val_rmse, "seconds": time.perf_counter() - started}
        history.records.append(record)
        bar.set_postfix(loss=f"{record['loss_per_rating']:.3f}", train=f"{train_rmse:.4f}", val=f"{val_rmse:.4f}")
        score = val_rmse if validation_fraction > 0 else train_rmse
        if not np.isfinite(epoch_loss):
            raise FloatingPointError(f"the loss became {epoch_loss} at epoch {epoch}; lower the learning rate (lr={lr}).")
        if score < best_rmse:
            best_rmse, best_state, waited, history.best_epoch = score, copy.deepcopy(model.state_dict()), 0, epoch
        else:
            waited += 1
            if waited >= patience:
                history.stopped_early = True
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return history


def _rmse_on(model: AutoRec, inputs: torch.Tensor, targets: torch.Tensor, offset: torch.Tensor,
             masks: list[torch.Tensor]) -> list[float]:
    """RMSE on the rating scale (clipped to [1, 5]) on each mask's entries (NaN for an empty mask)."""
    model.eval()
    with torch.no_grad():
        error = (model(inputs) + offset).clamp(1, 5) - (targets + offset)
    return [float(error[m].square().mean().sqrt()) if m.any() else float("nan") for m in masks]


def _make_optimizer(name: str, parameters, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(parameters, lr=lr)
    if name == "rprop":
        return torch.optim.Rprop(parameters, lr=lr)
    return torch.optim.LBFGS(parameters, lr=lr, max_iter=1, history_size=20, line_search_fn="strong_wolfe")


def _check_fit_arguments(model, train, epochs, lr, l2, batch_size, optimizer, patience) -> None:
    if not isinstance(train, RatingMatrix):
        raise TypeError(f"train must be a RatingMatrix (see data.rating_matrix), got {type(train).__name__}.")
    if train.shape[1] != model.config["n_inputs"]:
        raise ValueError(
            f"the model reads vectors of length {model.config['n_inputs']} but each row of the matrix has "
            f"{train.shape[1]} entries (by={train.by!r}); build AutoRec(n_inputs=matrix.shape[1]) or transpose the matrix."
        )
    for name, value in (("epochs", epochs), ("patience", patience)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}.")
    if not l2 >= 0:
        raise ValueError(f"l2 (lambda) must be >= 0, got {l2!r}.")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is not one of {OPTIMIZERS}.")
    if batch_size is not None:
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer or None (full batch), got {batch_size!r}.")
        if optimizer != "adam":
            raise ValueError(f"{optimizer} is a full-batch method: use batch_size=None, or optimizer='adam'.")



# Recipes measured on the canonical u1 split; benchmarks/rmse.py prints their figures. "by" picks the
# variant (rows are users or movies); "residual" learns the residuals of the bias baseline; "refit"
# trains a second time on *all* training ratings for the number of epochs early stopping chose;
# "fallback" is what a user or movie without training ratings gets ("mean" or "bias").
RECIPES = {
    "U-AutoRec (paper)": {"by": "user", "hidden": 500, "activation": "sigmoid", "l2": 100.0, "lr": 3e-3,
                          "lr_decay": 1.0, "patience": 30, "residual": False, "refit": False, "fallback": "mean"},
    "U-AutoRec (best)": {"by": "user", "hidden": 200, "activation": "sigmoid", "l2": 100.0, "lr": 3e-3,
                         "lr_decay": 1.0, "patience": 30, "residual": True, "refit": True, "fallback": "bias"},
    "I-AutoRec": {"by": "item", "hidden": 500, "activation": "sigmoid", "l2": 100.0, "lr": 1e-2,
                  "lr_decay": 0.99, "patience": 20, "residual": False, "refit": False, "fallback": "bias"},
}
_MODEL_KEYS = ("hidden", "activation", "dropout", "input_dropout")
_FIT_KEYS = ("epochs", "lr", "l2", "batch_size", "optimizer", "validation_fraction", "patience", "lr_decay")


@dataclass
class TrainedAutoRec:
    """Everything a trained recipe produced: the model, the training matrix it reads (its
    orientation), its predictor, the bias baseline (fitted on the training ratings), and how it went."""

    model: AutoRec
    matrix: RatingMatrix
    predictor: AutoRecPredictor
    bias: BiasBaseline
    history: History
    recipe: dict
    seconds: float


def train_autorec(
    train: pd.DataFrame,
    recipe: str | dict = "I-AutoRec",
    user_ids=None,
    item_ids=None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = True,
    **overrides,
) -> TrainedAutoRec:
    """Train a recipe (a name from ``RECIPES`` or a dict like them) on the ratings in ``train``.

    ``overrides`` change single settings, e.g. ``train_autorec(train, "I-AutoRec", hidden=200)``.
    Pass the full ``user_ids``/``item_ids`` so that test users and movies have a place in the matrix.
    """
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"recipe {recipe!r} is not one of {list(RECIPES)}; or pass a dict of settings.")
        recipe = RECIPES[recipe]
    recipe = {"epochs": 2000, **recipe, **overrides}
    unknown = set(recipe) - {"by", "residual", "refit", "fallback", *_MODEL_KEYS, *_FIT_KEYS}
    if unknown:
        raise ValueError(f"unknown setting(s) {sorted(unknown)}; known: by, residual, refit, fallback, "
                         f"{', '.join(_MODEL_KEYS + _FIT_KEYS)}.")
    if recipe.get("fallback", "mean") not in ("mean", "bias"):
        raise ValueError(f"fallback={recipe['fallback']!r}: use 'mean' or 'bias'.")
    started = time.perf_counter()
    matrix = rating_matrix(train, by=recipe.get("by", "user"), user_ids=user_ids, item_ids=item_ids)
    bias = BiasBaseline().fit(train)
    baseline = bias.predict_matrix(matrix) if recipe.get("residual") else None
    model_settings = {k: recipe[k] for k in _MODEL_KEYS if k in recipe}
    fit_settings = {k: recipe[k] for k in _FIT_KEYS if k in recipe}

    seed_everything(seed)
    model = AutoRec(matrix.shape[1], **model_settings)
    history = fit(model, matrix, baseline=baseline, seed=seed, device=device, progress=progress, **fit_settings)
    if recipe.get("refit"):  # same epochs, now on every training rating (no validation part held back)
        seed_everything(seed)
        model = AutoRec(matrix.shape[1], **model_settings)
        fit(model, matrix, baseline=baseline, seed=seed, device=device, progress=progress,
            **{**fit_settings, "epochs": history.best_epoch, "validation_fraction": 0.0, "patience": history.best_epoch})
    fallback = bias if recipe.get("fallback") == "bias" else None
    predictor = AutoRecPredictor(model, matrix, fallback=fallback, baseline=baseline)
    return TrainedAutoRec(model, matrix, predictor, bias, history, recipe, time.perf_counter() - started)
