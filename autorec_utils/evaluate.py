"""Rating-prediction metrics and the baselines AutoRec must beat, behind one small API.

Every predictor has ``predict(user_ids, item_ids) -> np.ndarray`` of ratings clipped to [1, 5], so
``score(predictor, test)`` treats AutoRec and the baselines alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .data import RatingMatrix
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
        for _ in range(self.n_epochs):
            residual = ratings - self.mean_ - self.item_bias_[items]
            self.user_bias_ = np.bincount(users, residual, len(self.user_ids_)) / (self.reg_user + user_count)
            residual = ratings - self.mean_ - self.user_bias_[users]
            self.item_bias_ = np.bincount(items, residual, len(self.item_ids_)) / (self.reg_item + item_count)
        return self

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
        model_inputs = model.config["n_inputs"]
        if train.shape[1] != model_inputs:
            raise ValueError(f"the model reads vectors of length {model_inputs} but the matrix has {train.shape[1]} columns; "
                             "pass the matrix the model was trained on.")
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        offset = torch.zeros(()) if baseline is None else baseline.cpu()
        with torch.no_grad():
            reconstruction = model(((train.values - offset) * train.mask).to(device)).cpu() + offset
        model.train(was_training)
        self.matrix = train
        self.reconstruction = reconstruction if train.by == "user" else reconstruction.T  # users x movies
        self.fallback = float(train.values[train.mask].mean()) if fallback is None else fallback
        user_mask = train.mask if train.by == "user" else train.mask.T
        self.known_users = user_mask.any(dim=1).numpy()
        self.known_items = user_mask.any(dim=0).numpy()

    def predict(self, user_ids, item_ids) -> np.ndarray:
        users = np.array([self.matrix.user_index.get(int(u), -1) for u in np.asarray(user_ids)])
        items = np.array([self.matrix.item_index.get(int(i), -1) for i in np.asarray(item_ids)])
        known = (users >= 0) & (items >= 0)
        known[known] &= self.known_users[users[known]] & self.known_items[items[known]]
        if hasattr(self.fallback, "predict"):
            prediction = np.asarray(self.fallback.predict(np.asarray(user_ids), np.asarray(item_ids)), dtype=np.float64)
        else:
            prediction = np.full(len(users), float(self.fallback))
        prediction[known] = self.reconstruction[users[known], items[known]].numpy()
        return np.clip(prediction, *RATING_RANGE)
