"""Chapter 06: autoencoders trained for lists, not for ratings.

The question changes from "what rating would this user give?" to "which movies will this user pick?".
The input becomes *implicit*: 1 where the user rated a movie (whatever the stars), 0 elsewhere, and the
zeros now mean something ("not picked"), so there is **no mask**. Three models, each owning its loss:

- ``MultDAE``: Liang et al. (WWW 2018). Input dropout (a denoising autoencoder), one tanh hidden layer,
  a softmax over all movies trained with the multinomial log-likelihood.
- ``MultVAE``: the same with a variational hidden layer and a KL term that is annealed in.
- ``EASE``: Steck (WWW 2019), a linear autoencoder with a zero diagonal, fitted in closed form:
  B = I - P diag(1 / diag P), P = (X^T X + lambda I)^-1.

``train_list_model`` trains a recipe with the package's one loop (``train.fit``, fed by ``ListProblem``)
and returns a ``train.Trained`` whose ``ListPredictor`` has the interface chapter 04's functions use.
"""

from __future__ import annotations

import time
from typing import cast

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from .checks import check_number, check_positive_int
from .evaluate import list_metrics
from .matrix import RatingMatrix, rating_matrix
from .model import pick_device
from .recipes import RECIPES, EASERecipe, MultDAERecipe, MultVAERecipe, get_recipe
from .splits import validation_part
from .train import History, Trained, fit, hold_out, seed_everything

__all__ = ["EASE", "ListPredictor", "ListProblem", "MultDAE", "MultVAE", "list_predictor", "multinomial_loss",
           "train_list_model"]


def multinomial_loss(logits: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """The negative multinomial log-likelihood of the picked movies under softmax(logits), per user
    (chapter 06): -sum_i x_i log softmax(logits)_i, averaged over the users of the batch."""
    return -(F.log_softmax(logits, dim=1) * picked).sum(dim=1).mean()


class MultDAE(nn.Module):
    """x (0/1 per movie) -> dropout -> L2-normalise -> tanh(hidden) -> one logit per movie (chapter 06)."""

    codes_per_unit = 1  # the encoder's outputs per hidden unit (Mult-VAE: a mean and a log-variance)

    def __init__(self, n_items: int, hidden: int = 200, dropout: float = 0.5):
        super().__init__()
        _check_sizes(n_items, hidden, dropout)
        self.config = {"n_items": int(n_items), "hidden": int(hidden), "dropout": float(dropout)}
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = nn.Linear(n_items, self.codes_per_unit * hidden)
        self.decoder = nn.Linear(hidden, n_items)

    def encode(self, picked: torch.Tensor) -> torch.Tensor:
        """The hidden code of each row of picks: a learned vector per user."""
        return torch.tanh(self.encoder(F.normalize(self.input_dropout(picked), dim=1)))

    def forward(self, picked: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(picked))  # logits: softmax gives the probability of each movie being the next pick

    def loss(self, picked: torch.Tensor) -> torch.Tensor:
        """The model's training loss on a batch of pick rows: the multinomial loss."""
        return multinomial_loss(self(picked), picked)

    def scores(self, picked: torch.Tensor) -> torch.Tensor:
        """Ranking scores of every movie: the log-probabilities of being picked."""
        return F.log_softmax(self(picked), dim=1)

    def user_vectors(self, picked: torch.Tensor) -> torch.Tensor:
        return self.encode(picked)

    def movie_vectors(self) -> torch.Tensor:
        return self.decoder.weight


class MultVAE(MultDAE):
    """Mult-DAE with a variational code (chapter 06): the encoder gives a mean and a log-variance per hidden
    unit; training decodes a sample z = mean + std * noise, predicting decodes the mean. The loss adds
    beta times the KL divergence of q(z|x) from N(0, I), with beta raised linearly from 0 over the first
    ``anneal_steps`` updates (Liang et al.'s annealing)."""

    codes_per_unit = 2

    def __init__(self, n_items: int, hidden: int = 200, dropout: float = 0.5, beta: float = 0.2, anneal_steps: int = 1):
        super().__init__(n_items, hidden, dropout)
        check_number("beta", beta, 0)
        check_positive_int("anneal_steps", anneal_steps)
        self.config.update(beta=float(beta), anneal_steps=int(anneal_steps))
        self.beta, self.anneal_steps, self.updates = beta, anneal_steps, 0

    def encode(self, picked: torch.Tensor) -> torch.Tensor:
        return self._posterior(picked)[0]

    def _posterior(self, picked: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_variance = self.encoder(F.normalize(self.input_dropout(picked), dim=1)).chunk(2, dim=1)
        return torch.tanh(mean), torch.clamp(log_variance, -10, 10)

    def forward(self, picked: torch.Tensor) -> torch.Tensor:
        mean, log_variance = self._posterior(picked)
        code = mean + torch.randn_like(mean) * (0.5 * log_variance).exp() if self.training else mean
        return self.decoder(code)

    def loss(self, picked: torch.Tensor) -> torch.Tensor:
        """-ELBO with a weighted KL: multinomial loss + beta_t KL(q(z|x) || N(0, I)), per user."""
        mean, log_variance = self._posterior(picked)
        code = mean + torch.randn_like(mean) * (0.5 * log_variance).exp()
        kl = 0.5 * (log_variance.exp() + mean.square() - 1 - log_variance).sum(dim=1).mean()
        weight = self.beta * min(1.0, self.updates / self.anneal_steps)
        self.updates += 1
        return multinomial_loss(self.decoder(code), picked) + weight * kl


class EASE(nn.Module):
    """Embarrassingly Shallow Autoencoder (Steck 2019, chapter 06): scores = X B, with the item-item matrix
    B that minimises ||X - X B||^2 + lambda ||B||^2 subject to diag(B) = 0, in closed form (``fit``)."""

    weights: torch.Tensor  # B, a registered buffer

    def __init__(self, n_items: int, l2: float = 200.0):
        super().__init__()
        check_positive_int("n_items", n_items)
        check_number("l2 (lambda)", l2, 0, low_open=True)
        self.config = {"n_items": int(n_items), "l2": float(l2)}
        self.register_buffer("weights", torch.zeros(n_items, n_items))  # B

    def fit(self, picked: torch.Tensor) -> EASE:
        gram = picked.double().T @ picked.double()
        gram.diagonal().add_(self.config["l2"])
        try:
            inverse = torch.linalg.inv(gram)
        except torch.linalg.LinAlgError:
            inverse = torch.full_like(gram, float("nan"))
        identity = torch.eye(len(gram), dtype=gram.dtype)
        if not torch.isfinite(inverse).all() or not torch.allclose(gram @ inverse, identity, atol=1e-6):
            raise ValueError(f"EASE's lambda = {self.config['l2']:g} is too small to invert X^T X + lambda I (movies that "
                             "nobody picked make it singular); use a lambda of 1 or more (the tuned one is "
                             f"{cast(EASERecipe, RECIPES['EASE']).l2:g}).")
        weights = -inverse / inverse.diagonal()  # B = I - P diag(1/diag P): off-diagonal -P_ij / P_jj
        weights.diagonal().zero_()
        self.weights.copy_(weights.float())
        return self

    def loss(self, picked: torch.Tensor) -> torch.Tensor:
        raise ValueError("EASE is fitted in closed form (EASE.fit): it has no loss for fit() to step; "
                         "train it with train_list_model.")

    def forward(self, picked: torch.Tensor) -> torch.Tensor:
        return picked @ self.weights

    def scores(self, picked: torch.Tensor) -> torch.Tensor:
        return self(picked)

    def user_vectors(self, picked: torch.Tensor) -> torch.Tensor:
        raise ValueError("EASE has no hidden layer, so it has no user vectors: it scores movies straight from the "
                         "item-item matrix B. Use a Mult-DAE or an AutoRec for user embeddings; similar_movies works on EASE.")

    def movie_vectors(self) -> torch.Tensor:
        return self.weights  # row i: how much picking movie i raises every other movie's score


class ListProblem:
    """The list autoencoders' problem for ``train.fit`` (chapter 06): rows are users' 0/1 pick vectors,
    shuffled into batches of ``batch_size`` users; the loss is the model's own (``model.loss``); Adam with
    ``weight_decay``. ``validation`` (a bool per rating of ``matrix``, as ``splits.validation_part``
    draws it) marks the ratings held back from the input; early stopping watches the NDCG@10 of every
    user's list against the held-back ratings of ``relevant_from`` stars or more."""

    def __init__(self, model: MultDAE | EASE, matrix: RatingMatrix, validation: torch.Tensor | None = None,
                 batch_size: int = 128, weight_decay: float = 0.0, relevant_from: float = 4.0,
                 device: str | torch.device | None = None):
        if not isinstance(matrix, RatingMatrix) or matrix.by != "user":
            raise ValueError("a list model reads users' rows: pass a users x movies RatingMatrix (rating_matrix(..., by='user')).")
        check_positive_int("batch_size", batch_size)
        check_number("weight_decay", weight_decay, 0)
        self.device = device = pick_device(device)
        self.model, self.batch_size, self.weight_decay = model.to(device), batch_size, weight_decay
        picked, held = hold_out(matrix, torch.zeros(matrix.n_observed, dtype=torch.bool) if validation is None else validation)
        self.inputs = picked.float().to(device)
        self.candidate, self.relevant = (~picked).numpy(), (held & (matrix.values >= relevant_from)).numpy()
        self.watch, self.mode = ("val_ndcg", "max") if self.relevant.any() else ("loss", "min")

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        if name != "adam":
            raise ValueError(f"the list autoencoders train with Adam (optimizer='adam'), not {name}.")
        return torch.optim.Adam(self.model.parameters(), lr=lr, weight_decay=self.weight_decay)

    def batches(self, generator: torch.Generator) -> list:
        return [rows.to(self.device) for rows in torch.randperm(len(self.inputs), generator=generator).split(self.batch_size)]

    def batch_loss(self, rows) -> torch.Tensor:
        return self.model.loss(self.inputs[rows])

    def evaluate(self) -> dict[str, float]:
        """NDCG@10 on the held-back ratings (none without a validation part)."""
        if self.watch == "loss":
            return {}
        with torch.no_grad():
            scores = self.model.scores(self.inputs).double().cpu().numpy()
        return {"val_ndcg": list_metrics(scores, self.candidate, self.relevant, k=10)["NDCG@10"]}


class ListPredictor:
    """The ``Predictor`` of a list model (chapter 06): scores of every movie for every user of its training
    matrix, read from all their training picks; higher means "more likely to be picked". Not ratings:
    ``predict`` refuses. A user without training picks gets popularity (the number of training picks)."""

    rates = False
    cold_start = "the most-picked movies (popularity)"

    def __init__(self, model: MultDAE | EASE, matrix: RatingMatrix):
        self.model, self.matrix = model, matrix
        self._picks = matrix.user_mask.float()
        scores = self._scores_of(self._picks)
        cold = ~self._picks.any(dim=1).numpy()
        scores[cold] = self._picks.sum(dim=0).double().numpy()
        self._scores = scores

    def _scores_of(self, picks: torch.Tensor) -> np.ndarray:
        self.model.eval()
        with torch.no_grad():
            return self.model.scores(picks.to(_device_of(self.model))).double().cpu().numpy()

    @property
    def scores(self) -> np.ndarray:
        return self._scores

    def user_scores(self, user_id) -> np.ndarray:
        return self._scores[self.matrix.position_of_user(user_id)].copy()

    def predict(self, user_ids, item_ids):
        raise ValueError("a list model ranks movies, it does not predict ratings: use top_k or user_scores, or a "
                         "rating model (chapter 03) for RMSE.")

    def fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores for a new person who picked the movies at positions ``items`` (``values`` are ignored: a
        pick is a pick); the model reads their 0/1 vector as it reads a training user's."""
        picks = torch.zeros(1, len(self.matrix.item_ids))
        picks[0, torch.as_tensor(items, dtype=torch.long)] = 1.0
        return self._scores_of(picks)[0]

    def user_vectors(self) -> np.ndarray:
        with torch.no_grad():
            return self.model.eval().user_vectors(self._picks.to(_device_of(self.model))).cpu().numpy()

    def movie_vectors(self) -> np.ndarray:
        return self.model.movie_vectors().detach().cpu().numpy().copy()


def train_list_model(train: pd.DataFrame, recipe: str | MultDAERecipe | EASERecipe = "Mult-DAE", user_ids=None,
                     item_ids=None, seed: int = 0, device: str | torch.device | None = None, progress: bool = True,
                     **changes) -> Trained:
    """Train a list recipe (a name from ``recipes.RECIPES``: "Mult-DAE", "Mult-VAE", "EASE", or a recipe object)
    on the movies each user rated in ``train`` (chapter 06); ``changes`` change single settings.

    The autoencoders are trained by ``train.fit`` with early stopping on the NDCG@10 of a validation part of
    the training ratings (the recipe's ``validation_fraction``), drawn as for the rating models; they keep
    their best epoch's weights. EASE is fitted in closed form, by default on every training rating; give it a
    ``validation_fraction`` to score a lambda on held-back ratings (``history.best["val_ndcg"]``).
    """
    recipe = cast("MultDAERecipe | EASERecipe", get_recipe(recipe, family="lists", **changes))
    started = time.perf_counter()
    matrix = rating_matrix(train, user_ids=user_ids, item_ids=item_ids)
    validation = validation_part(matrix, recipe.validation_fraction, seed)
    seed_everything(seed)
    model: MultDAE | EASE
    if isinstance(recipe, EASERecipe):
        model = EASE(matrix.shape[1], recipe.l2)
        problem = ListProblem(model, matrix, validation, relevant_from=recipe.relevant_from, device="cpu")
        model.fit(problem.inputs)  # closed form: no loop, no epochs
        history = History(watch=problem.watch, mode=problem.mode)
        if problem.watch == "val_ndcg":  # its one "epoch", scored on the held-back ratings
            history.records.append({"epoch": 1, **problem.evaluate(), "seconds": time.perf_counter() - started})
            history.best_epoch = 1
    else:
        steps_per_epoch = -(-matrix.shape[0] // recipe.batch_size)
        model = (MultVAE(matrix.shape[1], recipe.hidden, recipe.dropout, recipe.beta, recipe.anneal_epochs * steps_per_epoch)
                 if isinstance(recipe, MultVAERecipe) else MultDAE(matrix.shape[1], recipe.hidden, recipe.dropout))
        problem = ListProblem(model, matrix, validation, recipe.batch_size, recipe.weight_decay, recipe.relevant_from, device)
        history = fit(problem, recipe.epochs, recipe.lr, "adam", recipe.patience, seed=seed, progress=progress)
    return Trained(model, matrix, ListPredictor(model, matrix), recipe, history, time.perf_counter() - started, seed)


def list_predictor(model: MultDAE | EASE, matrix: RatingMatrix, bias: object, recipe: object) -> ListPredictor:
    """The predictor of a list model loaded from a checkpoint (the list family's entry in ``recipes.FAMILIES``):
    a list model reads picks only, so it takes no bias baseline and no recipe setting (chapter 06)."""
    return ListPredictor(model, matrix)


def _device_of(model: nn.Module) -> torch.device:
    return next(iter(model.state_dict().values())).device


def _check_sizes(n_items: int, hidden: int, dropout: float) -> None:
    check_positive_int("n_items", n_items)
    check_positive_int("hidden", hidden)
    check_number("dropout", dropout, 0, 1, high_open=True)
