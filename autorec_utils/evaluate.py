"""Rating-prediction metrics and the baselines AutoRec must beat, behind one small API.

Every predictor has ``predict(user_ids, item_ids) -> np.ndarray`` of ratings clipped to [1, 5], so
``score(predictor, test)`` treats AutoRec and the baselines alike.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd
import torch

from .data import RatingMatrix, SparseRatingMatrix, csr_rows
from .model import AutoRec

RATING_RANGE = (1.0, 5.0)


def rmse(predicted, actual) -> float:
    """Root-mean-square error."""
    predicted, actual = _pair(predicted, actual)
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def mae(predicted, actual) -> float:
    """Mean absolute error."""
    predicted, actual = _pair(predicted, actual)
    return float(np.mean(np.abs(predicted - actual)))


def score(predictor, test: pd.DataFrame) -> dict[str, float]:
    """RMSE and MAE of ``predictor`` on the ratings in ``test``."""
    predicted = predictor.predict(test.user_id.to_numpy(), test.item_id.to_numpy())
    return {"RMSE": rmse(predicted, test.rating), "MAE": mae(predicted, test.rating)}


def _pair(predicted, actual) -> tuple[np.ndarray, np.ndarray]:
    predicted = np.asarray(predicted.cpu() if isinstance(predicted, torch.Tensor) else predicted, dtype=np.float64)
    actual = np.asarray(actual.cpu() if isinstance(actual, torch.Tensor) else actual, dtype=np.float64)
    if predicted.shape != actual.shape or predicted.size == 0:
        raise ValueError(f"need two non-empty arrays of one shape, got {predicted.shape} and {actual.shape}.")
    return predicted, actual


class GlobalMean:
    """Predicts the mean training rating for everything: the bar every model must clear."""

    def fit(self, train: pd.DataFrame) -> GlobalMean:
        self.mean_ = float(train.rating.mean())
        return self

    def predict(self, user_ids, item_ids) -> np.ndarray:
        return np.full(len(np.asarray(user_ids)), self.mean_)


class BiasBaseline:
    """r_ui ~ mu + b_u + b_i, regularised; fitted by alternating least squares (as Surprise's
    ``BaselineOnly``). A user or movie without training ratings gets a bias of 0."""

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

    def predict_matrix(self, matrix: RatingMatrix) -> torch.Tensor:
        """Predictions for every cell of ``matrix`` (its orientation), e.g. as AutoRec's ``baseline``."""
        users = torch.as_tensor(_lookup(self.user_ids_, self.user_bias_, matrix.user_ids), dtype=torch.float32)
        items = torch.as_tensor(_lookup(self.item_ids_, self.item_bias_, matrix.item_ids), dtype=torch.float32)
        grid = (self.mean_ + users[:, None] + items[None, :]).clamp(*RATING_RANGE)
        return grid if matrix.by == "user" else grid.T.contiguous()

    def predict(self, user_ids, item_ids) -> np.ndarray:
        prediction = self.mean_ + _lookup(self.user_ids_, self.user_bias_, user_ids) + _lookup(self.item_ids_, self.item_bias_, item_ids)
        return np.clip(prediction, *RATING_RANGE)


def _lookup(ids: np.ndarray, values: np.ndarray, wanted) -> np.ndarray:
    """values[ids == wanted] for each wanted id, 0 where the id is unknown."""
    wanted = np.asarray(wanted)
    position = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return np.where(ids[position] == wanted, values[position], 0.0)


class AutoRecPredictor:
    """Predictions of a trained AutoRec: reconstruct every row of the *training* matrix once, then read
    the requested (user, movie) entries, clipped to [1, 5].

    Fallback: a user or movie with no training rating gets ``fallback`` -- by default the training
    mean (the paper used 3); a number, or another predictor such as a fitted ``BiasBaseline``. AutoRec
    has nothing to reconstruct such an entry from. A model trained on residuals needs the same
    ``baseline`` it was trained with.
    """

    def __init__(self, model: AutoRec, train: RatingMatrix, fallback=None, baseline: torch.Tensor | None = None):
        _check_width(model, train)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        offset = torch.zeros(()) if baseline is None else baseline.cpu()
        self.inputs = (train.values - offset) * train.mask  # what the model reads: ratings, or residuals
        with torch.no_grad():
            reconstruction = model(self.inputs.to(device)).cpu() + offset
        model.train(was_training)
        self.matrix = train
        self.reconstruction = reconstruction if train.by == "user" else reconstruction.T  # users x movies
        self.fallback = float(train.values[train.mask].mean()) if fallback is None else fallback
        self.known_users = train.user_mask.any(dim=1).numpy()
        self.known_items = train.user_mask.any(dim=0).numpy()

    def predict(self, user_ids, item_ids) -> np.ndarray:
        users, items, known = _known_entries(self, user_ids, item_ids)
        prediction = self._fallback(np.asarray(user_ids), np.asarray(item_ids))
        prediction[known] = self.reconstruction[users[known], items[known]].numpy()
        return np.clip(prediction, *RATING_RANGE)

    @cached_property
    def scores(self) -> np.ndarray:
        """Predicted ratings for every user x movie, *unclipped* so that rankings keep their order, with
        the fallback where the model has nothing to go on."""
        scores = self.reconstruction.numpy().astype(np.float64)
        cold = ~(self.known_users[:, None] & self.known_items[None, :])
        if cold.any():
            users, items = np.nonzero(cold)
            scores[cold] = self._fallback(self.matrix.user_ids[users], self.matrix.item_ids[items])
        return scores

    def _fallback(self, user_ids: np.ndarray, item_ids: np.ndarray) -> np.ndarray:
        if hasattr(self.fallback, "predict"):
            return np.asarray(self.fallback.predict(user_ids, item_ids), dtype=np.float64)
        return np.full(len(user_ids), float(self.fallback))


def _check_width(model: AutoRec, train: RatingMatrix | SparseRatingMatrix) -> None:
    if train.shape[1] != model.config["n_inputs"]:
        raise ValueError(f"the model reads vectors of length {model.config['n_inputs']} but the matrix has "
                         f"{train.shape[1]} columns; pass the matrix the model was trained on.")


def _known_entries(predictor, user_ids, item_ids) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of the users and movies in the predictor's matrix (-1: not in it), and which entries
    the model can predict (both in the matrix, both with training ratings)."""
    index = predictor.matrix
    users = np.array([index.user_index.get(int(u), -1) for u in np.asarray(user_ids)], dtype=np.int64)
    items = np.array([index.item_index.get(int(i), -1) for i in np.asarray(item_ids)], dtype=np.int64)
    known = (users >= 0) & (items >= 0)
    known[known] &= predictor.known_users[users[known]] & predictor.known_items[items[known]]
    return users, items, known


class SparseAutoRecPredictor:
    """Predictions of an AutoRec trained on a ``SparseRatingMatrix``, computed only where asked: the
    hidden code of every row once (rows x hidden numbers), then codes[row] . W[column] + b[column] for
    each requested entry. Memory grows with rows x hidden, never with users x movies (the dense
    reconstruction of ML-20M would take 15 GB). Same ``predict`` and fallback as ``AutoRecPredictor``."""

    ROWS, ENTRIES = 4096, 16384  # chunk sizes: bounded memory (ENTRIES x hidden floats, twice)

    def __init__(self, model: AutoRec, train: SparseRatingMatrix, fallback=None):
        _check_width(model, train)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        with torch.no_grad():
            self.codes = torch.cat([
                model.encode_sparse(csr_rows(train.crow, train.col, train.value, rows, train.shape[1])[0].to(device))
                for rows in torch.arange(train.shape[0]).split(self.ROWS)
            ])
        model.train(was_training)
        self.model, self.matrix = model, train
        self.fallback = float(train.value.mean()) if fallback is None else fallback
        rated_rows = (train.crow.diff() > 0).numpy()
        rated_cols = (torch.bincount(train.col, minlength=train.shape[1]) > 0).numpy()
        self.known_users, self.known_items = (rated_rows, rated_cols) if train.by == "user" else (rated_cols, rated_rows)

    def predict(self, user_ids, item_ids) -> np.ndarray:
        users, items, known = _known_entries(self, user_ids, item_ids)
        rows, cols = (users, items) if self.matrix.by == "user" else (items, users)
        prediction = self._fallback(np.asarray(user_ids), np.asarray(item_ids))
        weight, bias = self.model.decoder.weight, self.model.decoder.bias
        where = np.flatnonzero(known)
        with torch.no_grad():
            for chunk in np.array_split(where, max(1, -(-len(where) // self.ENTRIES))):
                r = torch.as_tensor(rows[chunk], device=self.codes.device)
                c = torch.as_tensor(cols[chunk], device=self.codes.device)
                prediction[chunk] = ((self.codes[r] * weight[c]).sum(1) + bias[c]).double().cpu().numpy()
        return np.clip(prediction, *RATING_RANGE)

    def user_scores(self, user_id) -> np.ndarray:
        """Predicted ratings of every movie (in ``matrix.item_ids`` order) for one user, unclipped so that
        rankings keep their order, with the fallback where the model has nothing to go on."""
        if int(user_id) not in self.matrix.user_index:
            raise ValueError(f"user {user_id} is not in the training matrix.")
        user = self.matrix.user_index[int(user_id)]
        weight, bias = self.model.decoder.weight, self.model.decoder.bias
        with torch.no_grad():
            if self.matrix.by == "user":  # the user's row, decoded in full
                scores = self.codes[user] @ weight.T + bias
            else:  # the user's column: every movie's code against the user's decoder row
                scores = self.codes @ weight[user] + bias[user]
        scores = scores.double().cpu().numpy()
        cold = ~(self.known_items & self.known_users[user])
        scores[cold] = self._fallback(np.full(cold.sum(), user_id), self.matrix.item_ids[cold])
        return scores

    _fallback = AutoRecPredictor._fallback


# ---------------------------------------------------------------- ranking

def check_k(k) -> None:
    """A list length must be a positive whole number."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive whole number, got {k!r}.")


def ranking_metrics(scores: np.ndarray, train: pd.DataFrame, test: pd.DataFrame, user_ids, item_ids,
                    k: int = 10, threshold: float = 4.0, exclude_items=()) -> dict[str, float]:
    """Top-``k`` quality of ``scores`` (users x movies, in ``user_ids`` x ``item_ids`` order).

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
    user_pos = {int(u): i for i, u in enumerate(user_ids)}
    item_pos = {int(m): i for i, m in enumerate(item_ids)}

    def grid(frame: pd.DataFrame) -> np.ndarray:
        cells = np.zeros(scores.shape, dtype=bool)
        cells[[user_pos[int(u)] for u in frame.user_id], [item_pos[int(m)] for m in frame.item_id]] = True
        return cells

    candidate = ~grid(train)
    candidate[:, np.isin(item_ids, np.asarray(exclude_items))] = False
    relevant = grid(test[test.rating >= threshold]) & candidate
    users = np.flatnonzero(relevant.any(axis=1))
    if users.size == 0:
        raise ValueError(f"no test user has a rating >= {threshold} among their candidates; nothing to rank.")
    masked = np.where(candidate[users], scores[users], -np.inf)
    top = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(relevant[users], top, axis=1) & np.isfinite(np.take_along_axis(masked, top, axis=1))
    n_relevant = relevant[users].sum(axis=1)
    discount = 1 / np.log2(np.arange(2, k + 2))
    ideal = np.array([discount[: min(n, k)].sum() for n in n_relevant])
    listed = np.unique(top[np.isfinite(np.take_along_axis(masked, top, axis=1))])
    return {
        f"precision@{k}": float((hits.sum(axis=1) / k).mean()),
        f"recall@{k}": float((hits.sum(axis=1) / n_relevant).mean()),
        f"NDCG@{k}": float(((hits * discount).sum(axis=1) / ideal).mean()),
        f"hit rate@{k}": float(hits.any(axis=1).mean()),
        "coverage": float(len(listed) / candidate.any(axis=0).sum()),
        "users": int(users.size),
    }


def popularity_scores(train: pd.DataFrame, user_ids, item_ids) -> np.ndarray:
    """Score every movie by its number of training ratings, the same for everybody."""
    counts = train.item_id.value_counts().reindex(np.asarray(item_ids), fill_value=0).to_numpy(dtype=np.float64)
    return np.tile(counts, (len(np.asarray(user_ids)), 1))


def random_scores(user_ids, item_ids, seed: int = 0) -> np.ndarray:
    """Random scores: what a ranking is worth by chance."""
    return np.random.default_rng(seed).random((len(np.asarray(user_ids)), len(np.asarray(item_ids))))
