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

from .data import RatingMatrix, SparseRatingMatrix, csr_rows, random_split, rating_matrix, sparse_rating_matrix
from .evaluate import AutoRecPredictor, BiasBaseline, SparseAutoRecPredictor, score
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


DENSE_LIMIT = 50_000_000  # cells: above this a SparseRatingMatrix trains on the sparse path


def carve_validation(matrix: RatingMatrix, fraction: float, seed: int) -> torch.Tensor:
    """A random ``fraction`` of the observed entries, as a mask, to validate on."""
    observed = matrix.mask.flatten().nonzero().squeeze(1)
    validation = torch.zeros(matrix.mask.numel(), dtype=torch.bool)
    validation[observed[_validation_entries(len(observed), fraction, seed)]] = True
    return validation.view_as(matrix.mask)


def _validation_entries(n_observed: int, fraction: float, seed: int) -> torch.Tensor:
    """Which of the observed entries (in row-major order) to validate on, as a bool per entry. The
    dense and the sparse path draw the same ones for the same seed."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction!r}.")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.zeros(n_observed, dtype=torch.bool)
    chosen[torch.randperm(n_observed, generator=generator)[: int(round(fraction * n_observed))]] = True
    return chosen


def fit(
    model: AutoRec,
    train: RatingMatrix | SparseRatingMatrix,
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
    sparse: bool | None = None,
) -> History:
    """Minimise the AutoRec objective on the observed entries of ``train`` (rows = what the model reads).

    ``l2`` is the paper's lambda: the objective of an epoch is
    sum_observed (r - h(r))^2 + (l2 / 2)(||W||^2 + ||V||^2); a mini-batch of rows carries its share of
    the penalty. ``batch_size=None`` trains full-batch. ``validation_fraction`` of the training ratings
    is hidden from the model and used for early stopping (``patience`` epochs without a better
    validation RMSE); the best epoch's weights are restored. ``lr_decay`` multiplies the learning rate
    after every epoch. Rprop and L-BFGS (the paper's optimisers) are full-batch only.

    ``baseline`` (a tensor shaped like the matrix, e.g. ``BiasBaseline.predict_matrix``) makes the model
    learn the *residuals* r - baseline instead of the ratings; predictions are then
    baseline + h(r - baseline). The reported RMSEs are always on the rating scale.

    ``sparse``: the dense path computes every entry of every reconstructed row; the sparse path (a
    ``SparseRatingMatrix`` in, sparse-dense products in the encoder, the decoder evaluated only at the
    observed entries) costs time and memory in proportion to the ratings -- give it a ``batch_size``.
    ``None`` picks sparse for a ``SparseRatingMatrix`` of more than ``DENSE_LIMIT`` cells, else dense;
    True or False forces a path (converting the matrix if needed). Both minimise the same objective;
    with Adam, the sparse path lets the optimiser add the penalty's gradient (its weight_decay). The
    sparse path runs on CUDA or the CPU (PyTorch has no sparse kernels for Apple's MPS).
    """
    _check_fit_arguments(model, train, epochs, lr, l2, batch_size, optimizer, patience)
    if not 0 < lr_decay <= 1:
        raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay!r}.")
    if baseline is not None and tuple(baseline.shape) != train.shape:
        raise ValueError(f"baseline has shape {tuple(baseline.shape)}, the matrix {train.shape}: predict it for this matrix.")
    if sparse is None:
        sparse = isinstance(train, SparseRatingMatrix) and train.shape[0] * train.shape[1] > DENSE_LIMIT
    if sparse and isinstance(train, RatingMatrix):
        train = SparseRatingMatrix.from_dense(train)
    elif not sparse and isinstance(train, SparseRatingMatrix):
        train = train.to_dense()
    device = _sparse_device(device) if sparse else pick_device(device)
    model.to(device)
    data = (_SparseProblem if sparse else _DenseProblem)(model, train, validation_fraction, seed, baseline, device)
    n_rows = train.shape[0]
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    # On the sparse path Adam adds the penalty's gradient, share * l2 * W, itself (its weight_decay, in
    # one fused pass over the weights): autograd would take several passes over these big matrices.
    penalty_by_optimizer = sparse and optimizer == "adam"
    optim = _make_optimizer(optimizer, model, lr, fused=penalty_by_optimizer)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=lr_decay)

    def objective(rows: torch.Tensor | None) -> torch.Tensor:
        share = (n_rows if rows is None else len(rows)) / n_rows  # of the penalty, for this batch of rows
        if not penalty_by_optimizer:
            return data.squared_error(rows) + share * 0.5 * l2 * model.weight_norm()
        optim.param_groups[0]["weight_decay"] = share * l2
        with torch.no_grad():  # the penalty's value, for the reported loss
            penalty = share * 0.5 * l2 * sum(torch.linalg.vector_norm(w).square() for w in optim.param_groups[0]["params"])
        return data.squared_error(rows) + penalty

    history, best_rmse, best_state, waited = History(), float("inf"), None, 0
    bar = tqdm(range(1, epochs + 1), desc="training", unit="epoch", disable=not progress)
    for epoch in bar:
        started = time.perf_counter()
        model.train()
        if batch_size is None:
            def closure():
                optim.zero_grad()
                loss = objective(None)
                loss.backward()
                return loss
            epoch_loss = float(optim.step(closure).detach())
        else:
            epoch_loss = 0.0
            for rows in torch.randperm(n_rows, generator=generator).split(batch_size):
                optim.zero_grad()
                loss = objective(rows.to(device))
                loss.backward()
                optim.step()
                epoch_loss += float(loss.detach())
        schedule.step()
        train_rmse, val_rmse = data.rmse()
        record = {"epoch": epoch, "loss": epoch_loss, "loss_per_rating": epoch_loss / max(data.n_fit, 1),
                  "train_rmse": train_rmse, "val_rmse": val_rmse, "seconds": time.perf_counter() - started}
        history.records.append(record)
        bar.set_postfix(loss=f"{record['loss_per_rating']:.3f}", train=f"{train_rmse:.4f}", val=f"{val_rmse:.4f}")
        score = val_rmse if validation_fraction > 0 else train_rmse
        if not np.isfinite(epoch_loss):
            raise FloatingPointError(f"the loss became {epoch_loss} at epoch {epoch}; lower the learning rate (lr={lr}).")
        if score < best_rmse:
            best_rmse, waited, history.best_epoch = score, 0, epoch
            if best_state is None:
                best_state = copy.deepcopy(model.state_dict())
            else:  # in place: a second copy of a big model's weights would double this memory for a moment
                for name, tensor in model.state_dict().items():
                    best_state[name].copy_(tensor)
        else:
            waited += 1
            if waited >= patience:
                history.stopped_early = True
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return history


class _DenseProblem:
    """The whole matrix on the device: simple and fast while it fits."""

    def __init__(self, model, train: RatingMatrix, fraction, seed, baseline, device):
        self.model = model
        validation = carve_validation(train, fraction, seed)
        self.fit_mask = (train.mask & ~validation).to(device)
        self.validation = validation.to(device)
        self.offset = (torch.zeros(()) if baseline is None else baseline).to(device)
        self.targets = (train.values.to(device) - self.offset) * train.mask.to(device)
        self.inputs = self.targets * self.fit_mask  # validation ratings are hidden from the input too
        self.n_fit = int(self.fit_mask.sum())

    def squared_error(self, rows: torch.Tensor | None) -> torch.Tensor:
        rows = slice(None) if rows is None else rows
        return masked_squared_error(self.model(self.inputs[rows]), self.targets[rows], self.fit_mask[rows])

    def rmse(self) -> list[float]:
        """RMSE on the rating scale (clipped to [1, 5]) on the fitted and the validation entries."""
        self.model.eval()
        with torch.no_grad():
            error = (self.model(self.inputs) + self.offset).clamp(1, 5) - (self.targets + self.offset)
        return [float(error[m].square().mean().sqrt()) if m.any() else float("nan") for m in (self.fit_mask, self.validation)]


class _SparseProblem:
    """Only the observed entries, row by row (CSR): the encoder is a sparse-dense product and the
    decoder is evaluated only where there is a rating to compare with. As on the dense path, the
    validation ratings are zeros in the input and count in no loss."""

    EVAL_ROWS = 1024  # rows per chunk when measuring the RMSEs

    def __init__(self, model, train: SparseRatingMatrix, fraction, seed, baseline, device):
        self.model, self.n_rows, self.n_cols, self.device = model, train.shape[0], train.shape[1], device
        validation = _validation_entries(train.n_observed, fraction, seed)
        offset = None if baseline is None else baseline[train.entry_rows, train.col]
        targets = train.value if offset is None else train.value - offset
        self.crow, self.col = train.crow.to(device), train.col.to(device)
        self.targets, self.validation = targets.to(device), validation.to(device)
        self.inputs = torch.where(self.validation, 0.0, self.targets)
        self.offset = None if offset is None else offset.to(device)
        self.n_fit = int((~validation).sum())

    def _batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return csr_rows(self.crow, self.col, self.inputs, rows, self.n_cols)

    def squared_error(self, rows: torch.Tensor | None) -> torch.Tensor:
        rows = torch.arange(self.n_rows, device=self.device) if rows is None else rows
        inputs, index = self._batch(rows)
        predicted = self.model.decode_at(self.model.encode_sparse(inputs), inputs)
        return torch.where(self.validation[index], 0.0, predicted - self.targets[index]).square().sum()

    def rmse(self) -> list[float]:
        self.model.eval()
        sums, counts = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.long)
        with torch.no_grad():
            for rows in torch.arange(self.n_rows, device=self.device).split(self.EVAL_ROWS):  # bounded memory
                inputs, index = self._batch(rows)
                predicted, actual = self.model.decode_at(self.model.encode_sparse(inputs), inputs), self.targets[index]
                if self.offset is not None:
                    predicted, actual = predicted + self.offset[index], actual + self.offset[index]
                squared = (predicted.clamp(1, 5) - actual).square().double().cpu()
                held_out = self.validation[index].long().cpu()  # 0: fitted, 1: validation
                sums += torch.bincount(held_out, squared, minlength=2)
                counts += torch.bincount(held_out, minlength=2)
        return [float((s / c).sqrt()) if c else float("nan") for s, c in zip(sums, counts, strict=True)]


def _make_optimizer(name: str, model: AutoRec, lr: float, fused: bool = False) -> torch.optim.Optimizer:
    if fused:
        return _FusedAdam(model, lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    if name == "rprop":
        return torch.optim.Rprop(model.parameters(), lr=lr)
    return torch.optim.LBFGS(model.parameters(), lr=lr, max_iter=1, history_size=20, line_search_fn="strong_wolfe")


class _FusedAdam(torch.optim.Adam):
    """Adam in one fused kernel per step, for the sparse path: the weights (W and V, not the biases) form
    the first parameter group, whose weight_decay carries the L2 penalty (Adam's coupled kind, exactly
    the gradient of (l2 / 2)||W||^2; AdamW's decoupled decay would be a different objective). The fused kernel wants
    contiguous tensors, so V, stored input by input (``AutoRec.store_encoder_by_input``), is updated
    through V^T: the same memory, read in order."""

    def __init__(self, model: AutoRec, lr: float):
        model.store_encoder_by_input()
        self.model, self.encoder_t = model, model.encoder.weight.detach().T
        super().__init__([{"params": [self.encoder_t, model.decoder.weight], "weight_decay": 0.0},
                          {"params": [model.encoder.bias, model.decoder.bias]}], lr=lr, fused=True)

    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if self.encoder_t.data_ptr() != self.model.encoder.weight.data_ptr():
            raise RuntimeError("the encoder's weights were replaced after this optimiser was made; make a new one.")
        grad = self.model.encoder.weight.grad
        self.encoder_t.grad = None if grad is None else grad.T
        super().step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        super().zero_grad(set_to_none)
        self.model.encoder.weight.grad = None


def _sparse_device(device: str | torch.device | None) -> torch.device:
    """CUDA or the CPU: PyTorch's sparse CSR kernels are not available on Apple's MPS."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "mps":
        raise ValueError("the sparse path runs on CUDA or the CPU (PyTorch has no sparse CSR kernels for MPS); "
                         "pass device='cpu', or sparse=False if the dense matrix fits in memory.")
    return device


def _check_fit_arguments(model, train, epochs, lr, l2, batch_size, optimizer, patience) -> None:
    if not isinstance(train, (RatingMatrix, SparseRatingMatrix)):
        raise TypeError(f"train must be a RatingMatrix (see data.rating_matrix) or a SparseRatingMatrix, got {type(train).__name__}.")
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
    matrix: RatingMatrix | SparseRatingMatrix
    predictor: AutoRecPredictor | SparseAutoRecPredictor
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
    sparse: bool | None = None,
    **overrides,
) -> TrainedAutoRec:
    """Train a recipe (a name from ``RECIPES`` or a dict like them) on the ratings in ``train``.

    ``overrides`` change single settings, e.g. ``train_autorec(train, "I-AutoRec", hidden=200)``.
    Pass the full ``user_ids``/``item_ids`` so that test users and movies have a place in the matrix.
    ``sparse``: build a ``SparseRatingMatrix`` and train on the sparse path (give a ``batch_size``); the
    predictor is then a ``SparseAutoRecPredictor``. ``None`` decides by size (``DENSE_LIMIT`` cells).
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
    if sparse is None:
        n_users = len(np.unique(train.user_id)) if user_ids is None else len(np.unique(user_ids))
        n_items = len(np.unique(train.item_id)) if item_ids is None else len(np.unique(item_ids))
        sparse = n_users * n_items > DENSE_LIMIT
    if sparse and recipe.get("residual"):
        raise ValueError("a residual recipe needs the bias baseline as a dense users x movies matrix, which the sparse "
                         "path avoids; use 'I-AutoRec' or 'U-AutoRec (paper)', or sparse=False.")
    started = time.perf_counter()
    build = sparse_rating_matrix if sparse else rating_matrix
    matrix = build(train, by=recipe.get("by", "user"), user_ids=user_ids, item_ids=item_ids)
    bias = BiasBaseline().fit(train)
    baseline = bias.predict_matrix(matrix) if recipe.get("residual") else None
    model_settings = {k: recipe[k] for k in _MODEL_KEYS if k in recipe}
    fit_settings = {k: recipe[k] for k in _FIT_KEYS if k in recipe}

    seed_everything(seed)
    model = AutoRec(matrix.shape[1], **model_settings)
    history = fit(model, matrix, baseline=baseline, seed=seed, device=device, progress=progress, sparse=sparse, **fit_settings)
    if recipe.get("refit"):  # same epochs, now on every training rating (no validation part held back)
        seed_everything(seed)
        model = AutoRec(matrix.shape[1], **model_settings)
        fit(model, matrix, baseline=baseline, seed=seed, device=device, progress=progress, sparse=sparse,
            **{**fit_settings, "epochs": history.best_epoch, "validation_fraction": 0.0, "patience": history.best_epoch})
    predictor = predictor_for(model, matrix, bias, recipe)
    return TrainedAutoRec(model, matrix, predictor, bias, history, recipe, time.perf_counter() - started)


def predictor_for(model: AutoRec, matrix: RatingMatrix | SparseRatingMatrix, bias: BiasBaseline,
                  recipe: dict) -> AutoRecPredictor | SparseAutoRecPredictor:
    """The predictor of a model trained by ``recipe``: with its baseline when it learned residuals,
    and its fallback for users and movies without training ratings."""
    fallback = bias if recipe.get("fallback") == "bias" else None
    if isinstance(matrix, SparseRatingMatrix):
        return SparseAutoRecPredictor(model, matrix, fallback=fallback)
    baseline = bias.predict_matrix(matrix) if recipe.get("residual") else None
    return AutoRecPredictor(model, matrix, fallback=fallback, baseline=baseline)


def random_splits_rmse(ratings: pd.DataFrame, recipe: str | dict = "I-AutoRec", repeats: int = 5,
                       test_fraction: float = 0.1, seed: int = 0, progress: bool = True, **options) -> pd.DataFrame:
    """The paper's protocol: ``repeats`` random splits (90 % train, 10 % test by default), a model
    trained on each, its test RMSE and MAE. ``options`` go to ``train_autorec`` (``sparse=True``,
    ``batch_size=...``, ``epochs=...``, settings of the recipe). One row per split."""
    if not isinstance(repeats, int) or repeats <= 0:
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
