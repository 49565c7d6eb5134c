"""Chapter 06: autoencoders trained for lists, not for ratings.

The question changes from "what rating would this user give?" to "which movies will this user pick?".
The input becomes *implicit*: 1 where the user rated a movie (whatever the stars), 0 elsewhere, and the
zeros now mean something ("not picked"), so there is **no mask**. Three models, one small API:

- ``MultDAE``: Liang et al. (WWW 2018). Input dropout (a denoising autoencoder), one tanh hidden layer,
  a softmax over all movies trained with the multinomial log-likelihood.
- ``MultVAE``: the same with a variational hidden layer and a KL term that is annealed in.
- ``EASE``: Steck (WWW 2019), a linear autoencoder with a zero diagonal, fitted in closed form:
  B = I - P diag(1 / diag P), P = (X^T X + lambda I)^-1.

``train_list_model`` fits one of them and returns a ``TrainedLists`` whose predictor has the interface
chapter 04's ``top_k`` uses (``user_scores``); ``recommend_from_liked`` folds in a new person.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from .evaluate import check_k, ranking_metrics
from .matrix import RatingMatrix, rating_matrix
from .recommend import find_movie, rank_movies

__all__ = ["EASE", "LIST_MODELS", "LIST_RECIPES", "ListPredictor", "MultDAE", "MultVAE", "TrainedLists", "multinomial_loss",
           "recommend_from_liked", "train_list_model"]


class MultDAE(nn.Module):
    """x (0/1 per movie) -> dropout -> L2-normalise -> tanh(hidden) -> one logit per movie (chapter 06)."""

    def __init__(self, n_items: int, hidden: int = 200, dropout: float = 0.5):
        super().__init__()
        _check_sizes(n_items, hidden, dropout)
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = nn.Linear(n_items, hidden)
        self.decoder = nn.Linear(hidden, n_items)

    def forward(self, picked: torch.Tensor) -> torch.Tensor:
        code = torch.tanh(self.encoder(F.normalize(self.input_dropout(picked), dim=1)))
        return self.decoder(code)  # logits: softmax gives the probability of each movie being the next pick


class MultVAE(nn.Module):
    """Mult-DAE with a variational code: the encoder gives a mean and a log-variance per hidden unit, a
    sample z = mean + std * noise is decoded while training, the mean itself when predicting (chapter 06)."""

    def __init__(self, n_items: int, hidden: int = 200, dropout: float = 0.5):
        super().__init__()
        _check_sizes(n_items, hidden, dropout)
        self.input_dropout = nn.Dropout(dropout)
        self.encoder = nn.Linear(n_items, 2 * hidden)
        self.decoder = nn.Linear(hidden, n_items)
        self.kl = torch.zeros(())

    def forward(self, picked: torch.Tensor) -> torch.Tensor:
        mean, log_variance = self.encoder(F.normalize(self.input_dropout(picked), dim=1)).chunk(2, dim=1)
        mean, log_variance = torch.tanh(mean), torch.clamp(log_variance, -10, 10)
        # KL(q(z|x) || N(0, I)), per user, kept for the loss
        self.kl = 0.5 * (log_variance.exp() + mean.square() - 1 - log_variance).sum(dim=1).mean()
        code = mean + torch.randn_like(mean) * (0.5 * log_variance).exp() if self.training else mean
        return self.decoder(code)


def multinomial_loss(logits: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """The negative multinomial log-likelihood of the picked movies under softmax(logits), per user
    (chapter 06): -sum_i x_i log softmax(logits)_i, averaged over the users of the batch."""
    return -(F.log_softmax(logits, dim=1) * picked).sum(dim=1).mean()


class EASE:
    """Embarrassingly Shallow Autoencoder (Steck 2019, chapter 06): scores = X B, with the item-item matrix
    B that minimises ||X - X B||^2 + lambda ||B||^2 subject to diag(B) = 0, in closed form."""

    def __init__(self, l2: float = 300.0):
        if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not l2 > 0:
            raise ValueError(f"l2 (lambda) must be a positive number, got {l2!r}.")
        self.l2 = float(l2)

    def fit(self, picked: torch.Tensor) -> EASE:
        gram = picked.double().T @ picked.double()
        gram.diagonal().add_(self.l2)
        inverse = torch.linalg.inv(gram)
        self.weights = (-inverse / inverse.diagonal()).float()  # B = I - P diag(1/diag P): off-diagonal -P_ij / P_jj
        self.weights.diagonal().zero_()
        return self

    def __call__(self, picked: torch.Tensor) -> torch.Tensor:
        return picked @ self.weights


LIST_MODELS = {"mult-dae": MultDAE, "mult-vae": MultVAE, "ease": EASE}
# Settings chosen on a validation part of u1's training ratings (benchmarks/topn.py prints the grid).
LIST_RECIPES = {
    "ease": {"l2": 200.0},
    "mult-dae": {"hidden": 200, "dropout": 0.0, "lr": 1e-3, "epochs": 45},
    "mult-vae": {"hidden": 600, "dropout": 0.2, "beta": 0.2, "lr": 1e-3, "epochs": 70},
}


class ListPredictor:
    """Scores of a list model for every user x movie of its training matrix; higher means "more likely
    to be picked". Not ratings: ``predict`` refuses, ``user_scores`` and ``scores`` rank (chapter 06)."""

    score_name = "score"

    def __init__(self, scores: torch.Tensor, matrix: RatingMatrix):
        self.matrix = matrix
        self.scores = scores.double().numpy()

    def user_scores(self, user_id) -> np.ndarray:
        return self.scores[self.matrix.position_of_user(user_id)].copy()

    def predict(self, user_ids, item_ids):
        raise ValueError("a list model ranks movies, it does not predict ratings: use top_k or user_scores, or a "
                         "rating model (chapter 03) for RMSE.")


@dataclass
class TrainedLists:
    """A fitted list model (chapter 06): the model, the training matrix it reads (users x movies; its mask
    is the 0/1 input), its predictor, the settings, how long it took, and the validation NDCG per epoch."""

    model: nn.Module | EASE
    matrix: RatingMatrix
    predictor: ListPredictor
    settings: dict
    seconds: float
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    split: str | None = None  # the canonical split it was trained on ("all": every rating), when known

    def scores_for(self, picked: torch.Tensor) -> torch.Tensor:
        """Scores of every movie for rows of 0/1 picks (users x movies), e.g. a new person's."""
        if isinstance(self.model, EASE):
            return self.model(picked)
        self.model.eval()
        with torch.no_grad():
            return F.log_softmax(self.model(picked), dim=1)


def train_list_model(train: pd.DataFrame, kind: str = "mult-dae", user_ids=None, item_ids=None, seed: int = 0,
                     validation: pd.DataFrame | None = None, threshold: float = 4.0, **settings) -> TrainedLists:
    """Fit a list model on the movies each user rated in ``train`` (chapter 06).

    ``kind``: "mult-dae", "mult-vae" or "ease". Settings: ``l2`` for EASE; ``hidden``, ``dropout``, ``epochs``,
    ``lr``, ``batch_size``, ``weight_decay`` (and ``beta``, the KL weight reached after ``anneal_epochs``,
    for Mult-VAE) for the others. With ``validation`` (held-out ratings of the same users, never the test
    set), the NDCG@10 on it is recorded every ``eval_every`` epochs and the best epoch's weights kept.
    """
    if kind not in LIST_MODELS:
        raise ValueError(f"kind={kind!r} is not one of {list(LIST_MODELS)}.")
    started = time.perf_counter()
    matrix = rating_matrix(train, user_ids=user_ids, item_ids=item_ids)
    picked = matrix.mask.float()
    if kind == "ease":
        unknown = set(settings) - {"l2"}
        if unknown:
            raise ValueError(f"EASE takes only l2, not {sorted(unknown)}.")
        model = EASE(**settings).fit(picked)
        history = pd.DataFrame()
    else:
        model, history = _fit_autoencoder(kind, picked, matrix, train, validation, threshold, seed, **settings)
    trained = TrainedLists(model, matrix, None, {"kind": kind, **settings}, 0.0, history)
    trained.predictor = ListPredictor(trained.scores_for(picked), matrix)
    trained.seconds = time.perf_counter() - started
    return trained


def _fit_autoencoder(kind, picked, matrix, train, validation, threshold, seed, hidden=200, dropout=0.5, epochs=100,
                     lr=1e-3, batch_size=128, weight_decay=0.0, beta=0.2, anneal_epochs=50, eval_every=5):
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("anneal_epochs", anneal_epochs),
                        ("eval_every", eval_every)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not lr > 0 or not weight_decay >= 0 or not beta >= 0:
        raise ValueError(f"lr must be > 0 and weight_decay, beta >= 0; got lr={lr!r}, weight_decay={weight_decay!r}, beta={beta!r}.")
    torch.manual_seed(seed)
    model = LIST_MODELS[kind](picked.shape[1], hidden=hidden, dropout=dropout)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    rows, best, best_state = [], -1.0, None
    for epoch in range(1, epochs + 1):
        model.train()
        for batch in torch.randperm(len(picked), generator=generator).split(batch_size):
            optimizer.zero_grad()
            loss = multinomial_loss(model(picked[batch]), picked[batch])
            if kind == "mult-vae":  # the KL term, annealed in from 0 to beta
                loss = loss + beta * min(1.0, epoch / anneal_epochs) * model.kl
            loss.backward()
            optimizer.step()
        if validation is not None and (epoch % eval_every == 0 or epoch == epochs):
            model.eval()
            with torch.no_grad():
                scores = model(picked).double().numpy()
            ndcg = ranking_metrics(scores, train, validation, matrix.user_ids, matrix.item_ids, k=10, threshold=threshold)["NDCG@10"]
            rows.append({"epoch": epoch, "validation NDCG@10": ndcg})
            if ndcg > best:
                best, best_state = ndcg, {k: v.clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, pd.DataFrame(rows).set_index("epoch") if rows else pd.DataFrame()


def recommend_from_liked(trained: TrainedLists, liked, movies: pd.DataFrame, k: int = 10,
                         include_unknown: bool = False) -> pd.DataFrame:
    """Top-``k`` for a new person from the movies they liked (ids or titles), with no retraining: the list
    model reads their 0/1 vector as it reads a training user's (chapter 06)."""
    check_k(k)
    if isinstance(liked, (str, int)) or not liked:
        raise ValueError("give at least one movie, as a list of ids or titles, e.g. ['Star Wars (1977)', 1].")
    items = []
    for movie in liked:
        item = find_movie(movies, movie)
        if item not in trained.matrix.item_index:
            raise ValueError(f"movie {item} is not among the model's {len(trained.matrix.item_ids)} movies.")
        if item in items:
            raise ValueError(f"{movie!r} is movie {item}, which is already in the list; name each movie once.")
        items.append(item)
    picked = torch.zeros(1, len(trained.matrix.item_ids))
    picked[0, [trained.matrix.item_index[i] for i in items]] = 1.0
    scores = trained.scores_for(picked)[0].double().numpy()
    return rank_movies(scores, picked[0].bool().numpy(), trained.matrix.item_ids, movies, k, include_unknown,
                       "this person", score_name="score")


def _check_sizes(n_items: int, hidden: int, dropout: float) -> None:
    for name, value in (("n_items", n_items), ("hidden", hidden)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout!r}.")
