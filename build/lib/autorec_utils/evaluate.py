"""How good are the predictions? Rating metrics and the baselines AutoRec must beat (chapter 03), the
predictor of a trained AutoRec, and ranking metrics for recommendation lists (chapter 04).

Every rating predictor has ``predict(user_ids, item_ids) -> np.ndarray`` of ratings clipped to [1, 5], so
``score(predictor, test)`` treats AutoRec and the baselines alike. ``Predictor`` writes down the interface
that every trained model of the package offers, and that chapter 04's functions use.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Protocol, TypeAlias, cast, runtime_checkable

import numpy as np
import pandas as pd
import torch

from .checks import check_positive_int
from .matrix import MatrixAxes, RatingMatrix, positions
from .model import AutoRec

if TYPE_CHECKING:  # for the type checker only: chapter 07's deeper model, which the core never imports
    from .variants import DeepAutoRec

__all__ = [  # what the notebooks, the command line and users call
    "RATING_RANGE", "AutoRecPredictor", "BiasBaseline", "GlobalMean", "HasPredictor", "Predictor", "RatingModel",
    "check_k", "list_metrics", "mae", "popularity_scores", "random_scores", "ranking_metrics", "rmse", "score",
    "top_k_columns",
]

RATING_RANGE = (1.0, 5.0)
RatingModel: TypeAlias = "AutoRec | DeepAutoRec"  # what reconstructs ratings: chapter 02's AutoRec or chapter 07's deeper one


def rmse(predicted, actual) -> float:
    """Root-mean-square error (chapter 03)."""
    predicted, actual = _pair(predicted, actual)
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def mae(predicted, actual) -> float:
    """Mean absolute error (chapter 03)."""
    predicted, actual = _pair(predicted, actual)
    return float(np.mean(np.abs(predicted - actual)))


def score(predictor, test: pd.DataFrame) -> dict[str, float]:
    """RMSE and MAE of ``predictor`` on the ratings in ``test`` (chapter 03)."""
    predicted = predictor.predict(test.user_id.to_numpy(), test.item_id.to_numpy())
    return {"RMSE": rmse(predicted, test.rating), "MAE": mae(predicted, test.rating)}


def _pair(predicted, actual) -> tuple[np.ndarray, np.ndarray]:
    predicted = np.asarray(predicted.cpu() if isinstance(predicted, torch.Tensor) else predicted, dtype=np.float64)
    actual = np.asarray(actual.cpu() if isinstance(actual, torch.Tensor) else actual, dtype=np.float64)
    if predicted.shape != actual.shape or predicted.size == 0:
        raise ValueError(f"need two non-empty arrays of one shape, got {predicted.shape} and {actual.shape}.")
    return predicted, actual


class GlobalMean:
    """Predicts the mean training rating for everything: the bar every model must clear (chapter 03)."""

    def fit(self, train: pd.DataFrame) -> GlobalMean:
        self.mean_ = float(train.rating.mean())
        return self

    def predict(self, user_ids, item_ids) -> np.ndarray:
        return np.full(len(np.asarray(user_ids)), self.mean_)


class BiasBaseline:
    """r_ui ~ mu + b_u + b_i, regularised; fitted by alternating least squares (as Surprise's
    ``BaselineOnly``). A user or movie without training ratings gets a bias of 0 (chapter 03)."""

    def __init__(self, reg_user: float = 15.0, reg_item: float = 10.0, n_epochs: int = 10):
        if reg_user < 0 or reg_item < 0 or n_epochs <= 0:
            raise ValueError("reg_user and reg_item must be >= 0 and n_epochs > 0.")
        self.reg_user, self.reg_item, self.n_epochs = reg_user, reg_item, n_epochs

    def fit(self, train: pd.DataFrame) -> BiasBaseline:
        self.user_ids_, users = np.unique(train.user_id.to_numpy(), return_inverse=True)
        self.item_ids_, items = np.unique(train.item_id.to_numpy(), return_inverse=True)
        ratings = train.rating.to_numpy(dtype=np.float64)
        self.mean_ = ratings.mean()
        self.user_bias_, self.item_bias_ = np.zeros(len(self.user_ids_)), np.zeros(len(self.item_ids_))
        user_count = np.bincount(users, minlength=len(self.user_ids_))
        item_count = np.bincount(items, minlength=len(self.item_ids_))
        for _ in range(self.n_epochs):  # movies first, so that the final user biases fit the final movie biases
            residual = ratings - self.mean_ - self.user_bias_[users]
            self.item_bias_ = np.bincount(items, residual, len(self.item_ids_)) / (self.reg_item + item_count)
            residual = ratings - self.mean_ - self.item_bias_[items]
            self.user_bias_ = np.bincount(users, residual, len(self.user_ids_)) / (self.reg_user + user_count)
        return self

    def predict_new_user(self, user_bias: float, item_ids) -> np.ndarray:
        """mu + b_u + b_i for a user who is not in the training data, with bias ``user_bias``."""
        return np.clip(self.mean_ + user_bias + _lookup(self.item_ids_, self.item_bias_, item_ids), *RATING_RANGE)

    def user_bias_for(self, item_ids, ratings) -> float:
        """b_u of a new user from their ratings, by the same update as in ``fit`` (no refitting)."""
        ratings = np.asarray(ratings, dtype=np.float64)
        residual = ratings - self.mean_ - _lookup(self.item_ids_, self.item_bias_, item_ids)
        return float(residual.sum() / (self.reg_user + len(ratings)))

    def predict_matrix(self, matrix: MatrixAxes) -> torch.Tensor:
        """Predictions for every cell of ``matrix`` (its orientation), e.g. as AutoRec's ``baseline``."""
        users = torch.as_tensor(_lookup(self.user_ids_, self.user_bias_, matrix.user_ids), dtype=torch.float32)
        items = torch.as_tensor(_lookup(self.item_ids_, self.item_bias_, matrix.item_ids), dtype=torch.float32)
        grid = (self.mean_ + users[:, None] + items[None, :]).clamp(*RATING_RANGE)
        return grid if matrix.by == "user" else grid.T.contiguous()

    def predict(self, user_ids, item_ids) -> np.ndarray:
        prediction = self.mean_ + _lookup(self.user_ids_, self.user_bias_, user_ids) + _lookup(self.item_ids_, self.item_bias_, item_ids)
        return np.clip(prediction, *RATING_RANGE)


def _lookup(ids: np.ndarray, values: np.ndarray, wanted) -> np.ndarray:
    """values at each wanted id's position in ``ids``, 0 where the id is unknown."""
    found = positions(ids, wanted)
    return np.where(found >= 0, values[found], 0.0)


class Predictor(Protocol):
    """What every trained model of this package offers, rating and list models alike (chapters 03, 04, 06):
    chapter 04's functions (``top_k``, ``similar_movies``, the embeddings, the fold-ins) are written against
    it and nothing else, and the type checker (mypy, in the tests) holds every predictor class to it. A
    method that does not apply to a model raises ``ValueError`` saying what to use."""

    # read-only members (properties), so that a predictor may hold a subclass: an AutoRec, a SparseRatingMatrix
    @property
    def model(self) -> torch.nn.Module: ...

    @property
    def matrix(self) -> MatrixAxes:
        """The training matrix: its ids, which movies each user rated, how many ratings each has."""
        ...

    @property
    def rates(self) -> bool:
        """True: scores are predicted ratings (shown clipped to 1-5 stars); False: list scores."""
        ...

    @property
    def cold_start(self) -> str:
        """What a user without training ratings gets, in words."""
        ...

    def user_scores(self, user_id) -> np.ndarray:
        """One training user's score of every movie (``matrix.item_ids`` order); higher is better."""
        ...

    @property
    def scores(self) -> np.ndarray:
        """``user_scores`` of every user at once: users x movies (for the ranking metrics)."""
        ...

    def predict(self, user_ids, item_ids) -> np.ndarray:
        """Predicted ratings of (user, movie) pairs, clipped to 1-5 (rating models only)."""
        ...

    def fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of every movie for a new person from a few (movie position, value) pairs, no retraining."""
        ...

    def user_vectors(self) -> np.ndarray:
        """One learned vector per training user (``matrix.user_ids`` order)."""
        ...

    def movie_vectors(self) -> np.ndarray:
        """One learned vector per movie (``matrix.item_ids`` order)."""
        ...


@runtime_checkable
class HasPredictor(Protocol):
    """A trained model that carries its predictor: ``train.Trained``, what every trainer of the package returns
    (chapter 04's functions take it or the predictor itself)."""

    @property
    def predictor(self) -> Predictor: ...


class AutoRecPredictor:
    """Predictions of a trained AutoRec (chapters 03 and 04): the hidden code of every row of the
    *training* matrix once, the reconstruction h(r) from it, read at the requested (user, movie) entries.
    It is a ``Predictor``; chapter 05's ``sparse.SparseAutoRecPredictor`` computes only what is asked for.

    Fallback: a user or movie with no training rating gets ``fallback`` -- by default the training mean
    (the paper used 3); a number, or a fitted ``BiasBaseline``. AutoRec has nothing to reconstruct such
    an entry from. A model trained on the residuals of a ``BiasBaseline`` needs it as ``baseline``.
    """

    rates = True

    def __init__(self, model: RatingModel, train: MatrixAxes, fallback=None, baseline: BiasBaseline | None = None):
        if train.shape[1] != model.config["n_inputs"]:
            raise ValueError(f"the model reads vectors of length {model.config['n_inputs']} but the matrix has "
                             f"{train.shape[1]} columns; pass the matrix the model was trained on.")
        self.model, self.matrix, self.baseline = model, train, baseline
        self.fallback = fallback if fallback is not None else self._training_mean()
        self.cold_start = ("the bias baseline" if isinstance(self.fallback, BiasBaseline)
                           else f"the mean training rating ({float(self.fallback):.2f})")
        per_user, per_item = train.rating_counts()
        self.known_users, self.known_items = per_user > 0, per_item > 0
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.codes = self._hidden_codes()
            self._prepare()
        model.train(was_training)

    def _training_mean(self) -> float:
        return float(self.matrix.entries()[2].mean())

    def _baseline_matrix(self) -> torch.Tensor | None:
        return None if self.baseline is None else self.baseline.predict_matrix(self.matrix)

    def _hidden_codes(self) -> torch.Tensor:
        """g(V r + mu) for every row, from what the model reads: ratings, or residuals of the baseline."""
        matrix, baseline = cast(RatingMatrix, self.matrix), self._baseline_matrix()  # SparseAutoRecPredictor has its own
        inputs = matrix.values if baseline is None else (matrix.values - baseline) * matrix.mask
        return self.model.encode(inputs.to(next(self.model.parameters()).device))

    def _prepare(self) -> None:
        reconstruction = self.model.decoder(self.codes).cpu()
        baseline = self._baseline_matrix()
        if baseline is not None:
            reconstruction += baseline
        self.reconstruction = reconstruction if self.matrix.by == "user" else reconstruction.T  # users x movies

    def _entries(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Raw scores at (user position, movie position) pairs."""
        return self.reconstruction[users, items].double().numpy()

    def _user_row(self, user: int) -> np.ndarray:
        return self.reconstruction[user].double().numpy()

    def predict(self, user_ids, item_ids) -> np.ndarray:
        """Predicted ratings of the (user, movie) pairs, clipped to [1, 5]; the fallback where the model
        has nothing to go on (a user or movie without training ratings, or not in the matrix)."""
        user_ids, item_ids = np.asarray(user_ids), np.asarray(item_ids)
        users, items = self.matrix.user_positions(user_ids), self.matrix.item_positions(item_ids)
        known = (users >= 0) & (items >= 0)
        known[known] &= self.known_users[users[known]] & self.known_items[items[known]]
        prediction = self._fallback(user_ids, item_ids)
        if known.any():
            prediction[known] = self._entries(users[known], items[known])
        return np.clip(prediction, *RATING_RANGE)

    def user_scores(self, user_id) -> np.ndarray:
        """Scores of every movie (in ``matrix.item_ids`` order) for one training user, unclipped so that
        rankings keep their order, with the fallback where the model has nothing to go on."""
        user = self.matrix.position_of_user(user_id)
        scores = self._user_row(user)
        cold = ~(self.known_items & self.known_users[user])
        scores[cold] = self._fallback(np.full(cold.sum(), user_id), self.matrix.item_ids[cold])
        return scores

    @cached_property
    def scores(self) -> np.ndarray:
        """``user_scores`` of every user at once: users x movies (for the ranking metrics of chapter 04)."""
        scores = self.reconstruction.double().numpy().copy()
        cold = ~(self.known_users[:, None] & self.known_items[None, :])
        if cold.any():
            users, items = np.nonzero(cold)
            scores[cold] = self._fallback(self.matrix.user_ids[users], self.matrix.item_ids[items])
        return scores

    def fold_in(self, items: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Scores of every movie for a new person who gave ``values`` (stars) to the movies at positions
        ``items``: U-AutoRec reads the new rating vector as it reads a training user's row, no retraining
        (chapter 04). I-AutoRec cannot: a new person would be a new *input* of every movie vector."""
        if self.matrix.by != "user":
            raise ValueError("I-AutoRec reads movie vectors over the training users, so a new person needs retraining; "
                             "use a U-AutoRec model (rows are users) for fold-in recommendations.")
        all_items = self.matrix.item_ids
        offset = torch.zeros(len(all_items))
        if self.baseline is not None:  # the baseline with this person's own user bias
            user_bias = self.baseline.user_bias_for(all_items[items], values)
            offset = torch.as_tensor(self.baseline.predict_new_user(user_bias, all_items), dtype=torch.float32)
        vector = torch.zeros(len(all_items))
        vector[items] = torch.as_tensor(values, dtype=torch.float32) - offset[items]
        with torch.no_grad():
            scores = self.model.eval()(vector[None].to(next(self.model.parameters()).device)).cpu()[0] + offset
        scores = scores.double().numpy()
        cold = ~self.known_items
        if isinstance(self.fallback, BiasBaseline):  # the bias baseline, with this person's own b_u
            user_bias = self.fallback.user_bias_for(all_items[items], values)
            scores[cold] = self.fallback.predict_new_user(user_bias, all_items[cold])
        else:
            scores[cold] = float(self.fallback)
        return scores

    def user_vectors(self) -> np.ndarray:
        """U-AutoRec: the hidden codes g(V r + mu), from the input the model reads (residuals, for a residual
        model); I-AutoRec: the decoder's rows, one per user (chapter 04)."""
        return self._codes_or_decoder("user")

    def movie_vectors(self) -> np.ndarray:
        """U-AutoRec: the decoder's rows, one per movie; I-AutoRec: the hidden codes (chapter 04)."""
        return self._codes_or_decoder("item")

    def _codes_or_decoder(self, axis: str) -> np.ndarray:
        if self.matrix.by == axis:
            return self.codes.cpu().numpy()
        return self.model.decoder.weight.detach().cpu().numpy().copy()

    def _fallback(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        if isinstance(self.fallback, BiasBaseline) or hasattr(self.fallback, "predict"):
            return np.asarray(self.fallback.predict(user_ids, item_ids), dtype=np.float64)
        return np.full(len(user_ids), float(self.fallback))


# ---------------------------------------------------------------- ranking

def check_k(k) -> None:
    """A list length must be a positive whole number (chapter 04)."""
    check_positive_int("k", k)


def ranking_metrics(scores: np.ndarray, train: pd.DataFrame, test: pd.DataFrame, user_ids, item_ids,
                    k: int = 10, threshold: float = 4.0, exclude_items=()) -> dict[str, float]:
    """Top-``k`` quality of ``scores`` (users x movies, in ``user_ids`` x ``item_ids`` order; chapter 04).

    For every user with at least one relevant test rating (>= ``threshold``), the candidates are the
    movies they did not rate in training (minus ``exclude_items``); the top-``k`` by score is compared
    with their relevant test movies. Returns the means of precision@k, recall@k, NDCG@k (binary gains)
    and hit rate (at least one relevant movie in the list), and the catalogue coverage (the share of
    candidate movies that appear in anybody's list).
    """
    check_k(k)
    user_ids, item_ids = np.asarray(user_ids), np.asarray(item_ids)
    if scores.shape != (len(user_ids), len(item_ids)):
        raise ValueError(f"scores has shape {scores.shape}, expected (users, movies) = {(len(user_ids), len(item_ids))}.")
    order_u, order_i = np.argsort(user_ids, kind="stable"), np.argsort(item_ids, kind="stable")
    user_ids, item_ids = user_ids[order_u], item_ids[order_i]  # sorted, as positions() needs; scores follow

    def grid(frame: pd.DataFrame, name: str) -> np.ndarray:
        rows, cols = positions(user_ids, frame.user_id.to_numpy()), positions(item_ids, frame.item_id.to_numpy())
        if (rows < 0).any() or (cols < 0).any():
            raise ValueError(f"{name} has users or movies that are not among user_ids / item_ids; pass the full id lists.")
        cells = np.zeros(scores.shape, dtype=bool)
        cells[rows, cols] = True
        return cells

    candidate = ~grid(train, "train")
    candidate[:, np.isin(item_ids, np.asarray(exclude_items))] = False
    relevant = grid(test[test.rating >= threshold], "test") & candidate
    return list_metrics(scores[np.ix_(order_u, order_i)], candidate, relevant, k)


def list_metrics(scores: np.ndarray, candidate: np.ndarray, relevant: np.ndarray, k: int = 10) -> dict[str, float]:
    """``ranking_metrics`` on masks: ``candidate`` (may be listed) and ``relevant`` (a hit), both users x
    movies like ``scores``. Users with no relevant movie are left out (chapters 04 and 06)."""
    users = np.flatnonzero(relevant.any(axis=1))
    if users.size == 0:
        raise ValueError("no user has a relevant held-out rating among their candidates; nothing to rank.")
    masked = np.where(candidate[users], scores[users], -np.inf)
    top = top_k_columns(masked, k)
    listed = np.isfinite(np.take_along_axis(masked, top, axis=1))  # a non-candidate is never a hit
    hits = np.take_along_axis(relevant[users], top, axis=1) & listed
    n_relevant = relevant[users].sum(axis=1)
    discount = 1 / np.log2(np.arange(2, k + 2))
    ideal = np.cumsum(discount)[np.minimum(n_relevant, k) - 1]
    return {
        f"precision@{k}": float((hits.sum(axis=1) / k).mean()),
        f"recall@{k}": float((hits.sum(axis=1) / n_relevant).mean()),
        f"NDCG@{k}": float(((hits * discount[: top.shape[1]]).sum(axis=1) / ideal).mean()),
        f"hit rate@{k}": float(hits.any(axis=1).mean()),
        "coverage": float(len(np.unique(top[listed])) / candidate.any(axis=0).sum()),
        "users": int(users.size),
    }


def top_k_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Each row's ``k`` highest-scoring columns, best first, ties to the lower column: the first ``k`` of
    ``np.argsort(-scores, axis=1, kind="stable")``, without sorting whole rows (chapter 06 ranks every
    user after every epoch). NaN scores rank last, like -inf. The one top-k of this package (chapter 04)."""
    scores = np.atleast_2d(scores)
    k = min(k, scores.shape[1])
    order = np.where(np.isnan(scores), np.inf, -scores)  # ascending order = best first
    kth = np.partition(order, k - 1, axis=1)[:, k - 1 : k]  # each row's k-th best value
    rows, cols = np.nonzero(order <= kth)  # the k best and any ties with the k-th, row by row
    ranked = np.lexsort((cols, order[rows, cols], rows))  # by row, then score, then column
    starts = np.searchsorted(rows, np.arange(len(scores)))
    return cols[ranked][starts[:, None] + np.arange(k)]


def popularity_scores(train: pd.DataFrame, user_ids, item_ids) -> np.ndarray:
    """Score every movie by its number of training ratings, the same for everybody (chapter 04)."""
    counts = train.item_id.value_counts().reindex(np.asarray(item_ids), fill_value=0).to_numpy(dtype=np.float64)
    return np.tile(counts, (len(np.asarray(user_ids)), 1))


def random_scores(user_ids, item_ids, seed: int = 0) -> np.ndarray:
    """Random scores: what a ranking is worth by chance (chapter 04)."""
    return np.random.default_rng(seed).random((len(np.asarray(user_ids)), len(np.asarray(item_ids))))
