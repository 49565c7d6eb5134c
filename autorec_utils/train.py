"""Training (chapter 03): ``fit`` is *the* training loop of this package -- forward, loss, backward, step,
early stopping on validation, history, progress bar -- for every model: AutoRec on the dense matrix of
chapters 02-04 and the sparse one of chapter 05, and the list autoencoders of chapter 06.

``fit`` never asks what kind of model it trains. It takes a *problem*: the model together with its data,
which supplies the batches, the loss of a batch, the optimiser and the validation metric (``DenseProblem``
here, ``sparse.SparseProblem``, ``topn.ListProblem``), as D2L's models supply ``training_step``.
``train_autorec`` runs a whole named recipe (U- or I-AutoRec, baseline, fallback) from a ratings DataFrame,
and ``random_splits_rmse`` the paper's protocol (chapter 05). The sparse path (chapter 05) is an elective:
it is imported only where a ``SparseRatingMatrix`` is trained or predicted from.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .checks import check_choice, check_number, check_positive_int, check_problem
from .evaluate import RATING_RANGE, AutoRecPredictor, BiasBaseline, Predictor, RatingModel, score
from .matrix import MatrixAxes, RatingMatrix, fits_dense, rating_matrix
from .model import AutoRec, autorec_objective, pick_device
from .recipes import AutoRecRecipe, Recipe, get_recipe
from .splits import random_split, validation_part

if TYPE_CHECKING:  # for the type checker only: the core never imports an elective when it is loaded
    from .sparse import SparseProblem, SparseRatingMatrix

__all__ = [  # what the notebooks, the command line and users call
    "OPTIMIZERS", "DenseProblem", "History", "Problem", "Trained", "autorec_problem", "autorec_setup",
    "chosen_on_validation", "fit", "hold_out", "matrix_for", "pick_device", "predictor_for", "random_splits_rmse",
    "seed_everything", "train_autorec",
]


OPTIMIZERS = ("adam", "rprop", "lbfgs")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch, so that building and training a model gives the same numbers (chapter 02)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class Problem(Protocol):
    """What ``fit`` needs from a model and its data (chapter 03): the problem owns the loss and the metric."""

    @property
    def model(self) -> torch.nn.Module: ...

    @property
    def watch(self) -> str: ...  # the history column that early stopping watches, e.g. "val_rmse"

    @property
    def mode(self) -> str: ...  # "min" (lower is better, e.g. RMSE) or "max" (e.g. NDCG)

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer: ...
    def batches(self, generator: torch.Generator) -> list: ...
    def batch_loss(self, rows) -> torch.Tensor: ...
    def evaluate(self) -> dict[str, float]: ...


@dataclass
class History:
    """What happened in each epoch, and which epoch's weights the model was left with (chapter 03).
    ``watch`` names the column that chose the epoch; ``mode`` says whether lower ("min") or higher ("max") is better."""

    records: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    watch: str = "val_rmse"
    mode: str = "min"

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.records).set_index("epoch")

    @property
    def best(self) -> dict:
        return self.records[self.best_epoch - 1]

    @property
    def score(self) -> float:
        """The watched value at the best epoch: what comparing runs on validation compares."""
        return self.best[self.watch]

    def improves(self, record: dict) -> bool:
        """Whether ``record`` beats the best epoch so far on the watched column."""
        if not self.best_epoch:
            return True
        new, old = record[self.watch], self.best[self.watch]
        return new < old if self.mode == "min" else new > old


def fit(problem: Problem, epochs: int = 200, lr: float = 1e-3, optimizer: str = "adam", patience: int = 20,
        lr_decay: float = 1.0, seed: int = 0, progress: bool = True) -> History:
    """Train ``problem.model`` on ``problem``'s data (chapter 03). Returns the per-epoch history; the model
    keeps the weights of its best epoch on the watched metric (the validation ratings').

    Each epoch takes one optimiser step per batch the problem gives; the loss of a batch is the problem's.
    Training stops after ``patience`` epochs without a better validation metric, or after ``epochs``.
    ``optimizer``: "adam", or the paper's full-batch "rprop" and "lbfgs" (where the problem offers them);
    ``lr_decay`` multiplies the learning rate after every epoch. ``seed`` fixes the order of the
    mini-batches and the dropout masks.
    """
    check_positive_int("epochs", epochs)
    check_positive_int("patience", patience)
    check_number("lr", lr, 0, low_open=True)
    check_number("lr_decay", lr_decay, 0, 1, low_open=True)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    model = problem.model
    optim = problem.optimizer(optimizer, lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optim, gamma=lr_decay)
    generator = torch.Generator().manual_seed(seed)  # the order of the mini-batches
    torch.manual_seed(seed)  # dropout masks
    history, best_state, waited = History(watch=problem.watch, mode=problem.mode), None, 0
    # no total: early stopping, not the cap, ends it; a with block, so the bar ends its line even when training fails
    with tqdm(desc="training", unit="epoch", disable=not progress) as bar:
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            model.train()
            epoch_loss = 0.0
            for rows in problem.batches(generator):
                def closure(rows=rows):  # L-BFGS may evaluate the loss several times per step
                    optim.zero_grad()
                    loss = problem.batch_loss(rows)
                    loss.backward()
                    return loss
                epoch_loss += float(cast(torch.Tensor, optim.step(closure)).detach())  # the batch's loss, before the step
            if not np.isfinite(epoch_loss):
                raise FloatingPointError(f"the loss became {epoch_loss} at epoch {epoch}; lower the learning rate (lr={lr}).")
            schedule.step()
            model.eval()
            record = {"epoch": epoch, "loss": epoch_loss, **problem.evaluate(), "seconds": time.perf_counter() - started}
            history.records.append(record)
            if history.improves(record):
                history.best_epoch, waited = epoch, 0
                best_state = _copy_into(best_state, model.state_dict())
            else:
                waited += 1
            bar.update()  # the metrics, the best epoch so far, and the epochs left unless the watched metric improves
            bar.set_postfix({**{k: f"{v:.4f}" for k, v in record.items() if k not in ("epoch", "loss", "seconds")},
                             "best epoch": history.best_epoch, "left": min(patience - waited, epochs - epoch)})
            if waited >= patience:
                history.stopped_early = True
                break
    if best_state is not None:  # always: the first epoch is the best so far
        model.load_state_dict(best_state)
    return history


def chosen_on_validation(runs: dict) -> object:
    """The key of the run (a ``Trained``, or a ``History``) that scored best on its validation ratings: the
    lowest RMSE, or the highest NDCG (chapters 03 and 06). Never the test ratings."""
    histories = {key: getattr(run, "history", run) for key, run in runs.items()}
    modes = {history.mode for history in histories.values()}
    if len(modes) != 1:
        raise ValueError("the runs watch different kinds of metric (RMSE and NDCG); compare like with like.")
    pick = min if modes.pop() == "min" else max
    return pick(histories, key=lambda key: histories[key].score)


def _copy_into(saved: dict | None, state: dict) -> dict:
    """A copy of ``state``, written into ``saved`` when there is one: no second copy of a large model."""
    if saved is None:
        return {name: tensor.detach().clone() for name, tensor in state.items()}
    for name, tensor in state.items():
        saved[name].copy_(tensor)
    return saved


def hold_out(matrix: RatingMatrix, validation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The masks of the ratings to fit and of those held back, for ``validation`` (a bool per rating, as
    ``splits.validation_part`` draws it): what the problems of ``fit`` use (chapter 03)."""
    held_out = matrix.entry_mask(validation)
    return matrix.mask & ~held_out, held_out


def autorec_problem(model: AutoRec, matrix: MatrixAxes, validation: torch.Tensor | None = None,
                    l2: float = 1.0, batch_size: int | None = None, baseline: torch.Tensor | None = None,
                    device: str | torch.device | None = None, penalty_share: float = 1.0,
                    n_batches: int | None = None) -> DenseProblem | SparseProblem:
    """AutoRec's problem for ``fit`` on ``matrix``: the dense path for a ``RatingMatrix``, chapter 05's sparse
    one for a ``SparseRatingMatrix`` -- the path follows the matrix (chapter 03). ``penalty_share`` and
    ``n_batches``: see ``DenseProblem`` (chapter 05b's processes each train a share of the rows)."""
    if not matrix.sparse:
        return DenseProblem(model, cast(RatingMatrix, matrix), validation, l2, batch_size, baseline, device, penalty_share, n_batches)
    if baseline is not None:
        raise ValueError("the sparse path trains on the ratings themselves: use no baseline, or a dense RatingMatrix "
                         "(sparse.SparseRatingMatrix.to_dense()) if it fits in memory.")
    from .sparse import SparseProblem  # chapter 05's elective, loaded for the sparse path only

    return SparseProblem(model, cast("SparseRatingMatrix", matrix), validation, l2, batch_size, device, penalty_share,
                         n_batches)


class DenseProblem:
    """AutoRec on the dense path (chapters 02-04): the whole matrix on the device, every row reconstructed
    in full, the loss masked to the observed ratings. ``validation`` (a bool per rating, row-major, as
    ``splits.validation_part`` draws it) marks the ratings held back: zeros in the input, in no loss,
    and the RMSE that early stopping watches.

    The loss of a batch is the paper's objective on its rows: sum_observed (r - h(r))^2 +
    (l2 / 2)(||W||^2 + ||V||^2), where each of the n mini-batches of an epoch (``batch_size`` rows; None: all
    rows) carries 1/n of the penalty. ``baseline`` (shaped like the matrix, e.g.
    ``BiasBaseline.predict_matrix``) makes the model learn the residuals r - baseline; the RMSEs are on
    the rating scale.

    Chapter 05b trains a share of the rows in each of W processes: ``penalty_share`` (1/W there; 1: the whole
    penalty) is the part of each step's penalty this problem's loss carries, and ``n_batches`` the steps per
    epoch of the whole run (None: from ``batch_size`` and this matrix's rows).
    """

    mode = "min"

    def __init__(self, model: AutoRec, matrix: RatingMatrix, validation: torch.Tensor | None = None, l2: float = 1.0,
                 batch_size: int | None = None, baseline: torch.Tensor | None = None,
                 device: str | torch.device | None = None, penalty_share: float = 1.0, n_batches: int | None = None):
        check_problem(model, matrix, validation, l2, batch_size, RatingMatrix)
        check_number("penalty_share", penalty_share, 0, 1, low_open=True)
        check_positive_int("n_batches", n_batches, none_means="from batch_size")
        if baseline is not None and tuple(baseline.shape) != matrix.shape:
            raise ValueError(f"baseline has shape {tuple(baseline.shape)}, the matrix {matrix.shape}: predict it for this matrix.")
        self.device = device = pick_device(device)
        self.model, self.l2, self.penalty_share = model.to(device), l2, penalty_share
        validation = torch.zeros(matrix.n_observed, dtype=torch.bool) if validation is None else validation
        self.fit_mask, self.validation_mask = (mask.to(device) for mask in hold_out(matrix, validation))
        self.watch = "val_rmse" if validation.any() else "train_rmse"
        self.offset = (torch.zeros(()) if baseline is None else baseline).to(device)
        self.targets = (matrix.values.to(device) - self.offset) * matrix.mask.to(device)  # residuals, with a baseline
        self.inputs = self.targets * self.fit_mask
        # where the fitted and the validation ratings sit in the flattened matrix, and the ratings: found once
        ratings = (self.targets + self.offset).flatten()
        positions = {"train_rmse": self.fit_mask.flatten().nonzero()[:, 0],
                     "val_rmse": self.validation_mask.flatten().nonzero()[:, 0]}
        self.scored = {name: (at, ratings[at]) for name, at in positions.items()}
        self.n_rows = matrix.shape[0]
        if n_batches is None:
            n_batches = 1 if batch_size is None else -(-self.n_rows // batch_size)
        self.n_batches = n_batches

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        """Adam, or the paper's Rprop or L-BFGS, over all the model's parameters."""
        if name != "adam" and self.n_batches > 1:
            raise ValueError(f"{name} is a full-batch method: use batch_size=None, or optimizer='adam'.")
        if name == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=lr)
        if name == "rprop":
            return torch.optim.Rprop(self.model.parameters(), lr=lr)
        # one L-BFGS iteration per epoch, whose line search may evaluate the loss up to 25 times (PyTorch's default,
        # 1.25 x max_iter, leaves it one evaluation: L-BFGS then stalls after its first, tiny step)
        return torch.optim.LBFGS(self.model.parameters(), lr=lr, max_iter=1, max_eval=25, history_size=20,
                                 line_search_fn="strong_wolfe")

    def batches(self, generator: torch.Generator) -> list:
        if self.n_batches == 1:
            return [slice(None)]  # every row, in order
        return [rows.to(self.device) for rows in torch.randperm(self.n_rows, generator=generator).tensor_split(self.n_batches)]

    def batch_loss(self, rows) -> torch.Tensor:
        """The masked squared error of these rows, plus their share of the penalty."""
        prediction = self.model(self.inputs[rows])
        l2 = self.l2 * self.penalty_share / self.n_batches
        return autorec_objective(self.model, prediction, self.targets[rows], self.fit_mask[rows], l2)

    def evaluate(self) -> dict[str, float]:
        """RMSE on the rating scale (predictions clipped to 1-5 stars) on the fitted and the validation ratings."""
        with torch.no_grad():
            predicted = (self.model(self.inputs) + self.offset).clamp(*RATING_RANGE).flatten()
        return {name: float((predicted[at] - rating).square().mean().sqrt()) if len(at) else float("nan")
                for name, (at, rating) in self.scored.items()}


# ---------------------------------------------------------------- recipes

@dataclass
class Trained:
    """A trained model of either family, with everything it came from (chapters 03 and 06): the model, the
    training matrix it reads (its orientation), its ``predictor`` (the interface chapter 04 uses), the
    recipe, how training went, the seed, and the canonical split it was trained on when known ("all":
    every rating). ``bias`` is the bias baseline of a rating model (fitted on the ratings it was fitted on);
    ``validation_seed`` drew the validation ratings it held back, when not ``seed``, and ``runs`` are an ensemble's
    runs as trained, blended or not, each with its own history (chapter 07's ensembles; empty for one model)."""

    model: torch.nn.Module
    matrix: MatrixAxes  # a RatingMatrix, or chapter 05's SparseRatingMatrix
    predictor: Predictor
    recipe: Recipe
    history: History
    seconds: float
    seed: int = 0
    split: str | None = None
    bias: BiasBaseline | None = None
    validation_seed: int | None = None
    runs: list[Trained] = field(default_factory=list, repr=False, compare=False)  # an ensemble's every run (chapter 07)

    @property
    def settings(self) -> dict:
        return self.recipe.settings()

    @property
    def held_back_with(self) -> int:
        """The seed that drew the validation ratings this run held back."""
        return self.seed if self.validation_seed is None else self.validation_seed


def train_autorec(train: pd.DataFrame, recipe: str | AutoRecRecipe = "I-AutoRec", user_ids=None, item_ids=None,
                  seed: int = 0, device: str | torch.device | None = None, progress: bool = True,
                  sparse: bool | None = None, validation_seed: int | None = None, **changes) -> Trained:
    """Train a rating recipe (a name from ``recipes.RECIPES`` or an ``AutoRecRecipe``) on ``train`` (chapter 03).

    ``changes`` change single settings, e.g. ``train_autorec(train, "I-AutoRec", hidden=200)``. Pass the
    full ``user_ids``/``item_ids`` so that test users and movies have a place in the matrix.
    ``sparse``: train on chapter 05's sparse path (give a ``batch_size``); None decides by size
    (``matrix.fits_dense``). The validation ratings are drawn once, here: early stopping watches them, and
    the bias baseline (the residual recipe's, and the fallback) never sees them. ``validation_seed`` (default:
    ``seed``) draws them, so that runs of several seeds can hold back the same ratings (chapter 07's ensembles).
    """
    recipe = cast(AutoRecRecipe, get_recipe(recipe, family="ratings", **changes))  # or its DeepAutoRecRecipe
    started = time.perf_counter()
    matrix, validation, bias, model, baseline = autorec_setup(train, recipe, user_ids, item_ids, seed, validation_seed,
                                                              sparse)
    problem = autorec_problem(model, matrix, validation, recipe.l2, recipe.batch_size, baseline, device)
    history = fit(problem, recipe.epochs, recipe.lr, recipe.optimizer, recipe.patience, recipe.lr_decay, seed, progress)
    predictor = predictor_for(model, matrix, bias, recipe)
    return Trained(model, matrix, predictor, recipe, history, time.perf_counter() - started, seed, bias=bias,
                   validation_seed=validation_seed)


def autorec_setup(train: pd.DataFrame, recipe: AutoRecRecipe, user_ids=None, item_ids=None, seed: int = 0,
                  validation_seed: int | None = None, sparse: bool | None = None) -> tuple:
    """What ``train_autorec`` trains on, before the first step: the rating matrix in the recipe's orientation,
    its validation ratings (drawn with ``validation_seed``, default ``seed``), the bias baseline fitted
    without them, the untrained model (initialised with ``seed``) and the residual recipe's baseline matrix
    (None for the others). Chapter 07's ``train_watching_test`` starts from the same."""
    users = np.unique(train.user_id if user_ids is None else user_ids)
    items = np.unique(train.item_id if item_ids is None else item_ids)
    if sparse is None:
        sparse = not fits_dense(len(users), len(items))
    if sparse and recipe.residual:
        raise ValueError("a residual recipe needs the bias baseline as a dense users x movies matrix, which the sparse "
                         "path avoids; use 'I-AutoRec' or 'U-AutoRec', or sparse=False.")
    matrix = matrix_for(train, by=recipe.by, user_ids=users, item_ids=items, sparse=sparse)
    validation = validation_part(matrix, recipe.validation_fraction, seed if validation_seed is None else validation_seed)
    bias = BiasBaseline().fit(matrix.to_frame(keep=~validation))  # never the validation ratings
    seed_everything(seed)
    model = recipe.build_model(matrix.shape[1])  # an AutoRec, or chapter 07's DeepAutoRec
    baseline = bias.predict_matrix(matrix) if recipe.residual else None
    return matrix, validation, bias, model, baseline


def matrix_for(ratings: pd.DataFrame, by: str = "user", user_ids=None, item_ids=None,
               sparse: bool = False) -> MatrixAxes:
    """``rating_matrix``, or with ``sparse`` chapter 05's ``sparse_rating_matrix`` (only the observed ratings):
    the one place that builds either, so the core imports the sparse elective only when it is asked for."""
    if not sparse:
        return rating_matrix(ratings, by, user_ids, item_ids)
    from .sparse import sparse_rating_matrix  # chapter 05's elective, loaded for the sparse path only

    return sparse_rating_matrix(ratings, by, user_ids, item_ids)


def predictor_for(model: RatingModel, matrix: MatrixAxes, bias: BiasBaseline | None,
                  recipe: Recipe) -> AutoRecPredictor:
    """The predictor of a model trained by ``recipe`` (a rating recipe): the sparse one for chapter 05's
    ``SparseRatingMatrix``, with its baseline when it learned residuals, and its fallback for users and movies
    without training ratings (chapter 03). What ``checkpoint.load_checkpoint`` calls for the rating family."""
    if not isinstance(recipe, AutoRecRecipe):
        raise ValueError(f"predictor_for makes the predictor of a rating model, not of a {type(recipe).__name__}.")
    fallback = bias if recipe.fallback == "bias" else None
    if isinstance(matrix, RatingMatrix):
        return AutoRecPredictor(model, matrix, fallback=fallback, baseline=bias if recipe.residual else None)
    from .sparse import SparseAutoRecPredictor  # chapter 05's elective, loaded for the sparse path only

    if not isinstance(model, AutoRec):
        raise ValueError(f"the sparse path predicts with chapter 02's AutoRec, not a {type(model).__name__}.")
    return SparseAutoRecPredictor(model, cast("SparseRatingMatrix", matrix), fallback=fallback)


def random_splits_rmse(ratings: pd.DataFrame, recipe: str | AutoRecRecipe = "I-AutoRec", repeats: int = 5,
                       test_fraction: float = 0.1, seed: int = 0, progress: bool = True, **options) -> pd.DataFrame:
    """The paper's protocol (chapter 05): ``repeats`` random splits (90 % train, 10 % test by default), a
    model trained on each, its test RMSE and MAE. ``options`` go to ``train_autorec`` (``sparse=True``,
    ``batch_size=...``, ``epochs=...``, settings of the recipe). One row per split."""
    check_positive_int("repeats", repeats)
    user_ids, item_ids = np.unique(ratings.user_id), np.unique(ratings.item_id)
    rows = []
    for split in range(repeats):
        train, test = random_split(ratings, test_fraction=test_fraction, seed=seed + split)
        trained = train_autorec(train, recipe, user_ids=user_ids, item_ids=item_ids, seed=seed + split,
                                progress=progress, **options)
        rows.append({"split": split + 1, **score(trained.predictor, test), "epochs": trained.history.best_epoch,
                     "seconds": round(trained.seconds, 1)})
    return pd.DataFrame(rows).set_index("split")
