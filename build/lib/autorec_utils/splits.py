"""Train/test splits that leak nothing (chapter 01), and the validation draw that early stopping uses
(chapter 03): the ratings held back from training, always taken from the *training* ratings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .load import load_ratings
from .releases import SPLITS

__all__ = ["load_split", "per_user_split", "random_split", "validation_entries", "validation_part"]


def load_split(name: str, path: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The canonical ``(train, test)`` of fold ``u1`` ... ``u5``, ``ua`` or ``ub``: GroupLens' own files
    (chapter 01). ``name="all"`` gives every rating for training and an empty test set."""
    if name == "all":
        ratings = load_ratings(path)
        return ratings, ratings.iloc[:0]
    if name not in SPLITS:
        raise ValueError(f"There is no split {name!r}; MovieLens-100K has {', '.join(SPLITS)} (or 'all').")
    return load_ratings(path, file=f"{name}.base"), load_ratings(path, file=f"{name}.test")


def random_split(ratings: pd.DataFrame, test_fraction: float = 0.1, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A seeded random holdout of ``test_fraction`` of the ratings (the AutoRec paper used 90/10;
    chapters 01 and 05)."""
    _check_fraction(test_fraction)
    order = np.random.default_rng(seed).permutation(len(ratings))
    n_test = int(round(test_fraction * len(ratings)))
    return ratings.iloc[np.sort(order[n_test:])], ratings.iloc[np.sort(order[:n_test])]


def per_user_split(ratings: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0,
                   latest: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``test_fraction`` of *each user's* ratings, at random or their latest ones when
    ``latest=True``; every user keeps at least one training rating (chapter 01)."""
    _check_fraction(test_fraction)
    order = ratings.timestamp.rank(method="first").to_numpy() if latest else np.random.default_rng(seed).permutation(len(ratings))
    # the rank of each rating within its user, 0 = the first to keep for training
    position = pd.Series(order, index=ratings.index).groupby(ratings.user_id).rank(method="first") - 1
    count = ratings.groupby("user_id").user_id.transform("size")
    n_test = np.minimum(np.round(count * test_fraction), count - 1)
    is_test = (position >= count - n_test).to_numpy()
    return ratings[~is_test], ratings[is_test]


def validation_part(matrix, fraction: float, seed: int) -> torch.Tensor:
    """Which of ``matrix``'s ratings to hold back for validation: a bool per rating, in the matrix's row-major
    order (as its ``entries()`` list them), drawn by ``validation_entries`` over the ratings in user-major
    order -- so a users x movies matrix and its transpose hold back the *same* ratings, and U-AutoRec,
    I-AutoRec and the list models of one seed can be compared on one validation part (chapter 03)."""
    chosen = validation_entries(matrix.n_observed, fraction, seed)
    if matrix.by == "user":
        return chosen
    items, users, _ = matrix.entries()  # rows are movies: the entries come movie by movie
    user_major = torch.argsort(users * matrix.shape[0] + items)  # the k-th rating in user-major order
    in_row_order = torch.empty_like(chosen)
    in_row_order[user_major] = chosen
    return in_row_order


def validation_entries(n_observed: int, fraction: float, seed: int) -> torch.Tensor:
    """Which of ``n_observed`` ratings (in user-major order, as a users x movies matrix lists them) to hold
    back for validation: a bool per rating, ``round(fraction * n_observed)`` of them True, drawn with
    ``seed`` (chapter 03). ``validation_part`` applies it to a matrix of either orientation."""
    if not 0 <= fraction < 1:
        raise ValueError(f"validation_fraction must be in [0, 1), got {fraction!r}.")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.zeros(n_observed, dtype=torch.bool)
    chosen[torch.randperm(n_observed, generator=generator)[: int(round(fraction * n_observed))]] = True
    return chosen


def _check_fraction(test_fraction: float) -> None:
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), got {test_fraction!r}.")
