"""The rating matrix AutoRec reads (chapter 01): dense values, a mask of the observed entries, and the
MovieLens ids of its rows and columns.

MovieLens ids (1-based) stay at the edges; a matrix keeps the id <-> position maps next to the tensor,
so nobody recomputes them differently elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from .checks import is_whole

__all__ = [  # what the notebooks, the command line and users call
    "DENSE_LIMIT", "MatrixAxes", "RatingMatrix", "fits_dense", "positions", "rating_matrix", "scatter_plan",
]

DENSE_LIMIT = 50_000_000  # cells: above this, train_autorec builds chapter 05's SparseRatingMatrix (dense float32: 200 MB)


def fits_dense(n_rows: int, n_cols: int) -> bool:
    """Whether a dense matrix of this many cells stays within ``DENSE_LIMIT``: the one place that decides
    between the dense path and chapter 05's sparse one (chapter 05)."""
    return n_rows * n_cols <= DENSE_LIMIT


class MatrixAxes:
    """What every rating matrix, dense or sparse, has: the MovieLens ids along both axes, the maps back to
    positions, and which movies each user rated. ``by`` says what a row is: "user" (U-AutoRec reads users)
    or "item" (I-AutoRec). ``RatingMatrix`` here and chapter 05's ``sparse.SparseRatingMatrix`` fill it in (chapter 01)."""

    sparse: ClassVar[bool] = False  # True for chapter 05's SparseRatingMatrix
    row_ids: np.ndarray
    col_ids: np.ndarray
    by: str

    @property
    def n_observed(self) -> int:
        raise NotImplementedError

    @property
    def row_counts(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def col_counts(self) -> np.ndarray:
        raise NotImplementedError

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The observed ratings in row-major order: their rows, columns and values."""
        raise NotImplementedError

    def rated_items(self, user_id) -> np.ndarray:
        """Which movies (in ``item_ids`` order) ``user_id`` rated: a bool per movie."""
        raise NotImplementedError

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.row_ids), len(self.col_ids)

    @property
    def user_ids(self) -> np.ndarray:
        return self.row_ids if self.by == "user" else self.col_ids

    @property
    def item_ids(self) -> np.ndarray:
        return self.col_ids if self.by == "user" else self.row_ids

    def user_positions(self, user_ids) -> np.ndarray:
        """The 0-based position of each MovieLens user id along the user axis; -1 where it is not there."""
        return positions(self.user_ids, user_ids)

    def item_positions(self, item_ids) -> np.ndarray:
        """The 0-based position of each MovieLens movie id along the movie axis; -1 where it is not there."""
        return positions(self.item_ids, item_ids)

    def position_of_user(self, user_id) -> int:
        """The position of ``user_id`` along the user axis, or a ValueError that gives the valid ids."""
        if not is_whole(user_id):
            raise ValueError(f"a user id is a whole number, got {user_id!r}.")
        position = int(self.user_positions(user_id))
        if position < 0:
            ids = self.user_ids
            raise ValueError(f"user {user_id} is not in the training data (valid ids: {ids.min()}...{ids.max()}).")
        return position

    def rating_counts(self) -> tuple[np.ndarray, np.ndarray]:
        """How many training ratings each user and each movie has (in ``user_ids`` and ``item_ids`` order)."""
        per_row, per_col = self.row_counts, self.col_counts
        return (per_row, per_col) if self.by == "user" else (per_col, per_row)

    def to_frame(self, keep: torch.Tensor | None = None) -> pd.DataFrame:
        """The observed ratings (those where ``keep``, a bool per rating in row-major order, is True) as
        ``user_id, item_id, rating`` rows sorted by user, then movie."""
        rows, cols, values = self.entries()
        if keep is not None:
            rows, cols, values = rows[keep], cols[keep], values[keep]
        row, col = rows.numpy(), cols.numpy()
        users, items = (self.row_ids[row], self.col_ids[col]) if self.by == "user" else (self.col_ids[col], self.row_ids[row])
        frame = pd.DataFrame({"user_id": users.astype("int32"), "item_id": items.astype("int32"), "rating": values.numpy()})
        return frame.sort_values(["user_id", "item_id"], ignore_index=True)


@dataclass(frozen=True, eq=False)
class RatingMatrix(MatrixAxes):
    """A dense rating matrix with its observed-entry mask and the MovieLens ids of rows and columns (chapter 01).

    ``by="user"``: rows are users, each row a user's ratings of every movie (U-AutoRec's input).
    ``by="item"``: rows are movies (I-AutoRec's input). Unrated entries are 0 and ``mask`` is False.
    """

    values: torch.Tensor  # float32, rows x cols
    mask: torch.Tensor  # bool, True where a rating was observed
    row_ids: np.ndarray  # MovieLens ids of the rows
    col_ids: np.ndarray  # MovieLens ids of the columns
    by: str  # "user" or "item": what a row is

    @property
    def n_observed(self) -> int:
        return int(self.mask.sum())

    @property
    def density(self) -> float:
        return self.n_observed / self.mask.numel()

    @property
    def user_mask(self) -> torch.Tensor:
        """The mask as users x movies, whatever the orientation."""
        return self.mask if self.by == "user" else self.mask.T

    @property
    def row_counts(self) -> np.ndarray:
        return self.mask.sum(dim=1).numpy()

    @property
    def col_counts(self) -> np.ndarray:
        return self.mask.sum(dim=0).numpy()

    def rated_items(self, user_id) -> np.ndarray:
        """Which movies (in ``item_ids`` order) ``user_id`` rated: a bool per movie."""
        return self.user_mask[self.position_of_user(user_id)].numpy()

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The observed ratings in row-major order: their rows, columns and values."""
        rows, cols = self.mask.nonzero(as_tuple=True)
        return rows, cols, self.values[rows, cols]

    def entry_mask(self, chosen: torch.Tensor) -> torch.Tensor:
        """A mask shaped like the matrix that is True at the observed entries where ``chosen`` (a bool
        per rating, in row-major order, as ``splits.validation_part`` draws) is True."""
        mask = torch.zeros_like(self.mask)
        rows, cols = self.mask.nonzero(as_tuple=True)
        mask[rows[chosen], cols[chosen]] = True
        return mask

    def transpose(self) -> RatingMatrix:
        """The same ratings the other way round (users x movies <-> movies x users)."""
        return RatingMatrix(self.values.T.contiguous(), self.mask.T.contiguous(), self.col_ids,
                            self.row_ids, "item" if self.by == "user" else "user")

    def to_sparse_coo(self) -> torch.Tensor:
        """The observed entries as PyTorch's sparse COO tensor (same shape; absent entries are unrated). Chapter
        05's ``SparseRatingMatrix`` is another thing: the package's own row-by-row (CSR) matrix."""
        rows, cols, values = self.entries()
        return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, self.shape, is_coalesced=True,
                                       check_invariants=False)


def rating_matrix(ratings: pd.DataFrame, by: str = "user", user_ids=None, item_ids=None) -> RatingMatrix:
    """Scatter ``ratings`` into a dense ``RatingMatrix`` (chapter 01).

    Pass the full ``user_ids``/``item_ids`` (e.g. ``users.user_id``, ``movies.item_id``, or another
    matrix's ids) so that a train and a test matrix share one layout; by default they are the sorted
    ids present in ``ratings``.
    """
    users, items, rows, cols, values = scatter_plan(ratings, by, user_ids, item_ids)
    grid = torch.zeros(len(users), len(items))
    grid[torch.from_numpy(rows), torch.from_numpy(cols)] = values
    matrix = RatingMatrix(grid, grid > 0, users, items, "user")
    return matrix if by == "user" else matrix.transpose()


def scatter_plan(ratings: pd.DataFrame, by: str, user_ids, item_ids):
    """Check ``ratings`` and say where each one goes: (user ids, movie ids, user positions, movie
    positions, values). Shared by the dense and the sparse matrix (chapter 01)."""
    if by not in ("user", "item"):
        raise ValueError(f"by={by!r}: use 'user' (rows are users, U-AutoRec) or 'item' (rows are movies, I-AutoRec).")
    missing_columns = {"user_id", "item_id", "rating"} - set(ratings.columns)
    if missing_columns:
        raise ValueError(f"ratings lacks the column(s) {sorted(missing_columns)}; it needs user_id, item_id, rating.")
    duplicated = ratings.duplicated(["user_id", "item_id"])
    if duplicated.any():
        first = ratings[duplicated].iloc[0]
        raise ValueError(f"ratings has more than one rating of movie {int(first.item_id)} by user {int(first.user_id)}; "
                         "keep one (e.g. ratings.drop_duplicates(['user_id', 'item_id'], keep='last')).")
    if not pd.api.types.is_numeric_dtype(ratings.rating) or pd.api.types.is_bool_dtype(ratings.rating):
        raise ValueError(f"the rating column holds {ratings.rating.dtype} values, not numbers; convert it first, "
                         "e.g. ratings.assign(rating=pd.to_numeric(ratings.rating)).")
    bad_rating = ~ratings.rating.between(0.5, 5)
    if bad_rating.any():
        raise ValueError(f"rating {float(ratings.rating[bad_rating].iloc[0])} is outside 0.5-5 (0 is reserved for 'unrated').")
    users = _ids(ratings.user_id if user_ids is None else user_ids, "user_ids")
    items = _ids(ratings.item_id if item_ids is None else item_ids, "item_ids")
    rows = _positions(ratings.user_id.to_numpy(), users, "user")
    cols = _positions(ratings.item_id.to_numpy(), items, "movie")
    return users, items, rows, cols, torch.tensor(ratings.rating.to_numpy(), dtype=torch.float32)


def _ids(ids, name: str) -> np.ndarray:
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    if ids.size == 0:
        raise ValueError(f"{name} is empty: there is nothing to build a matrix from.")
    return ids


def positions(ids: np.ndarray, wanted) -> np.ndarray:
    """The position of each ``wanted`` id in ``ids`` (sorted, as every matrix and baseline keeps them), -1
    where it is not there: the one way this package maps MovieLens ids to rows and columns (chapter 01)."""
    wanted = np.asarray(wanted)
    if len(ids) == 0:
        return np.full(wanted.shape, -1, dtype=np.int64)
    found = np.minimum(np.searchsorted(ids, wanted), len(ids) - 1)
    return np.where(ids[found] == wanted, found, -1)


def _positions(values: np.ndarray, ids: np.ndarray, what: str) -> np.ndarray:
    found = positions(ids, values)
    if (found < 0).any():
        raise ValueError(f"{what} id {values[found < 0][0]} is not among the matrix's {what} ids ({ids[0]}...{ids[-1]}, "
                         f"{len(ids)} of them); build both matrices from the same full id lists.")
    return found
