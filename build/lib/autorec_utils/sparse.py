"""Chapter 05: AutoRec when the users x movies matrix does not fit in memory.

Everything the sparse path needs is here, and it takes the one ``AutoRec`` of ``model.py`` (one model,
one checkpoint format):

- ``SparseRatingMatrix``: only the observed ratings, row by row (CSR);
- ``encode`` and ``decode_at``: the model's two layers as products whose cost grows with the ratings --
  the encoder a sparse x dense product (``F.embedding_bag``), the decoder evaluated only at the rated
  entries (a sampled product, with its backward pass written out: twice as fast as PyTorch's own here);
- ``SparseProblem``: batches, batch loss and optimiser for ``train.fit``, the same objective as the dense path;
- ``SparseAutoRecPredictor``: predictions that never build users x movies.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import ClassVar, cast

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from .checks import check_number, check_positive_int, check_problem
from .evaluate import RATING_RANGE, AutoRecPredictor
from .matrix import MatrixAxes, RatingMatrix, fits_dense, scatter_plan
from .model import AutoRec, masked_squared_error, pick_device

__all__ = [  # what the notebooks, the command line and users call
    "SparseAutoRecPredictor", "SparseProblem", "SparseRatingMatrix", "csr_rows", "decode_at", "encode",
    "sparse_rating_matrix", "store_encoder_by_input",
]


# ---------------------------------------------------------------- the matrix

@dataclass(frozen=True, eq=False)
class SparseRatingMatrix(MatrixAxes):
    """The observed ratings only, row by row (CSR): what a large release needs, where the dense matrix
    would not fit in memory (ML-20M: 138,493 x 26,744 cells, 15 GB as float32). Same ids, maps and
    orientation as ``RatingMatrix``; ``fit`` trains on it in mini-batches of rows (chapter 05)."""

    sparse: ClassVar[bool] = True
    crow: torch.Tensor  # int64, rows + 1: row r's entries are crow[r]:crow[r + 1]
    col: torch.Tensor  # int64, the column of each entry, sorted within a row
    value: torch.Tensor  # float32, the rating of each entry
    row_ids: np.ndarray
    col_ids: np.ndarray
    by: str

    @property
    def n_observed(self) -> int:
        return int(self.value.numel())

    @property
    def density(self) -> float:
        return self.n_observed / (len(self.row_ids) * len(self.col_ids))

    @property
    def entry_rows(self) -> torch.Tensor:
        """The row of each entry."""
        return torch.repeat_interleave(torch.arange(len(self.row_ids)), self.crow.diff())

    @property
    def row_counts(self) -> np.ndarray:
        return self.crow.diff().numpy()

    @property
    def col_counts(self) -> np.ndarray:
        return torch.bincount(self.col, minlength=len(self.col_ids)).numpy()

    def entries(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The observed ratings in row-major order: their rows, columns and values."""
        return self.entry_rows, self.col, self.value

    def rated_items(self, user_id) -> np.ndarray:
        """Which movies (in ``item_ids`` order) ``user_id`` rated: a bool per movie."""
        user = self.position_of_user(user_id)
        rated = np.zeros(len(self.item_ids), dtype=bool)
        if self.by == "user":
            rated[self.col[self.crow[user]:self.crow[user + 1]].numpy()] = True
        else:
            rated[self.entry_rows[self.col == user].numpy()] = True
        return rated

    def transpose(self) -> SparseRatingMatrix:
        return _csr(self.col, self.entry_rows, self.value, self.col_ids, self.row_ids, "item" if self.by == "user" else "user")

    def to_dense(self) -> RatingMatrix:
        values = torch.zeros(self.shape)
        values[self.entry_rows, self.col] = self.value
        return RatingMatrix(values, values > 0, self.row_ids, self.col_ids, self.by)

    @classmethod
    def from_dense(cls, matrix: RatingMatrix) -> SparseRatingMatrix:
        rows, cols, values = matrix.entries()
        return _csr(rows, cols, values, matrix.row_ids, matrix.col_ids, matrix.by)


def sparse_rating_matrix(ratings: pd.DataFrame, by: str = "user", user_ids=None, item_ids=None) -> SparseRatingMatrix:
    """Like ``matrix.rating_matrix``, but only the observed ratings are stored: memory grows with the
    number of ratings, not with users x movies (chapter 05)."""
    users, items, rows, cols, values = scatter_plan(ratings, by, user_ids, item_ids)
    rows, cols = torch.from_numpy(rows).long(), torch.from_numpy(cols).long()
    return _csr(rows, cols, values, users, items, "user") if by == "user" else _csr(cols, rows, values, items, users, "item")


def _csr(rows, cols, values, row_ids, col_ids, by: str) -> SparseRatingMatrix:
    order = torch.argsort(rows * len(col_ids) + cols)
    crow = torch.cat([torch.zeros(1, dtype=torch.int64), torch.bincount(rows, minlength=len(row_ids)).cumsum(0)])
    return SparseRatingMatrix(crow, cols[order].long(), values[order].float(), np.asarray(row_ids), np.asarray(col_ids), by)


def csr_rows(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, rows: torch.Tensor,
             n_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Some rows of a CSR matrix (``crow``, ``col``, one value per entry) as a torch CSR tensor of
    len(rows) x ``n_cols`` -- a mini-batch for ``encode`` -- and the indices of their entries (chapter 05)."""
    starts, counts = crow[rows], crow[rows + 1] - crow[rows]
    first_of_row = torch.repeat_interleave(counts.cumsum(0) - counts, counts)
    index = torch.repeat_interleave(starts, counts) + torch.arange(len(first_of_row), device=rows.device) - first_of_row
    batch_crow = torch.zeros(len(rows) + 1, dtype=crow.dtype, device=crow.device)
    batch_crow[1:] = counts.cumsum(0)
    return _csr_tensor(batch_crow, col[index], values[index], (len(rows), n_cols)), index


# ---------------------------------------------------------------- the model's two layers, sparsely

def store_encoder_by_input(model: AutoRec) -> None:
    """Lay V out input by input in memory (V^T contiguous; the same values, and nn.Linear computes the
    same products), so that ``encode`` reads one contiguous row of V^T per rating instead of 500
    scattered numbers. Measured at the ML-20M shape: I-AutoRec's epoch takes 23 s instead of 42 s (chapter 05)."""
    weight = model.encoder.weight
    if not weight.T.is_contiguous():
        weight.data = weight.data.T.contiguous().T


def encode(model: AutoRec, ratings: torch.Tensor, encoder_t: torch.Tensor | None = None) -> torch.Tensor:
    """``model.encode`` for a sparse CSR batch of rating vectors: g(mu + sum over the ratings of r_j V[:, j]),
    a sparse x dense product whose cost grows with the ratings stored, not with the vectors' length.
    ``encoder_t``: V^T to read (and send the gradient to); by default the model's own V, transposed (chapter 05)."""
    _check_csr(ratings, model.encoder.in_features, "ratings")
    values = model.input_dropout(ratings.values())
    encoder_t = model.encoder.weight.T if encoder_t is None else encoder_t
    summed = F.embedding_bag(ratings.col_indices(), encoder_t, ratings.crow_indices()[:-1], mode="sum",
                             per_sample_weights=values)
    return model.activation(summed + model.encoder.bias)


def decode_at(model: AutoRec, codes: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """h(r) only at the entries of the CSR matrix ``pattern`` (len(codes) x n_inputs; its values are
    ignored), in the pattern's order: codes[i] . W[j] + b[j] for each entry (i, j). Nothing else of the
    reconstruction is computed, neither forward nor backward (chapter 05)."""
    _check_csr(pattern, model.decoder.out_features, "pattern")
    if pattern.shape[0] != len(codes):
        raise ValueError(f"pattern has {pattern.shape[0]} rows for {len(codes)} codes.")
    return _SampledProduct.apply(pattern, model.dropout(codes), model.decoder.weight, model.decoder.bias)


class _SampledProduct(torch.autograd.Function):
    """(codes @ weight^T + bias) at the entries of a CSR ``pattern`` only (an SDDMM), as a vector of
    values. Its backward is written out because each gradient is again a sparse x dense product (with the
    pattern transposed for the weights); PyTorch's generic backward of sampled_addmm took twice as long
    per step at the ML-20M shape."""

    @staticmethod
    def forward(ctx, pattern, codes, weight, bias):
        ctx.pattern = pattern
        ctx.save_for_backward(codes, weight)
        return torch.sparse.sampled_addmm(pattern, codes, weight.T, beta=0.0).values() + bias[pattern.col_indices()]

    @staticmethod
    def backward(ctx, grad):
        codes, weight = ctx.saved_tensors
        upstream = _csr_like(ctx.pattern, grad.contiguous())  # d loss / d prediction, at the entries
        # index_add_ sums in a fixed order (indexing's own backward may not, with several threads)
        bias_grad = torch.zeros(weight.shape[0], dtype=grad.dtype, device=grad.device).index_add_(
            0, ctx.pattern.col_indices(), upstream.values())
        return None, _csr_times_dense(upstream, weight), _csr_times_dense(_transpose_csr(upstream), codes), bias_grad


def _csr_times_dense(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """A CSR matrix times a dense one: row i is the sum of value * dense[j] over row i's entries (i, j),
    which is what embedding_bag computes, in one fused kernel."""
    return F.embedding_bag(matrix.col_indices(), dense, matrix.crow_indices()[:-1], mode="sum",
                           per_sample_weights=matrix.values())


def _csr_like(pattern: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A CSR matrix with ``pattern``'s entries and new values."""
    return _csr_tensor(pattern.crow_indices(), pattern.col_indices(), values, pattern.shape)


def _transpose_csr(matrix: torch.Tensor) -> torch.Tensor:
    """The transpose of a CSR matrix, again in CSR (its entries sorted by column, then row)."""
    crow, col, (n_rows, n_cols) = matrix.crow_indices(), matrix.col_indices(), matrix.shape
    rows = torch.repeat_interleave(torch.arange(n_rows, device=col.device, dtype=col.dtype), crow.diff())
    order = torch.argsort(col, stable=True)
    crow_t = torch.zeros(n_cols + 1, dtype=crow.dtype, device=col.device)
    crow_t[1:] = torch.bincount(col, minlength=n_cols).cumsum(0)
    return _csr_tensor(crow_t, rows[order], matrix.values()[order], (n_cols, n_rows))


def _csr_tensor(crow, col, values, shape) -> torch.Tensor:
    """``torch.sparse_csr_tensor`` for indices that are valid by construction (so unchecked)."""
    with warnings.catch_warnings():  # PyTorch labels CSR tensors "beta"; the products used here are tested
        warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _check_csr(matrix: torch.Tensor, n_inputs: int, name: str) -> None:
    if matrix.layout != torch.sparse_csr:
        raise TypeError(f"{name} must be a sparse CSR tensor (torch.sparse_csr_tensor or .to_sparse_csr()), got {matrix.layout}.")
    if matrix.shape[1] != n_inputs:
        raise ValueError(f"this AutoRec reads vectors of length {n_inputs}, got a {name} batch of shape {tuple(matrix.shape)}.")


# ---------------------------------------------------------------- training: what fit() needs

class SparseProblem:
    """The sparse path of ``train.fit``: batches of rows as CSR tensors, the loss only at their ratings (chapter 05).

    As on the dense path, the validation ratings are zeros in the input and count in no loss, and each
    of the n mini-batches of an epoch carries 1/n of the penalty (l2 / 2)(||W||^2 + ||V||^2). Two
    arrangements make an ML-20M-shaped epoch fast (measured per I-AutoRec step, 2 CPU cores):

    - Adam applies the penalty's gradient itself, as its ``weight_decay`` (Adam's coupled kind: exactly
      l2 / n * W). Autograd's own pass over these big matrices made a step 2.5x slower.
    - The optimiser updates V^T, a contiguous view of V's memory (``store_encoder_by_input``), which is
      also what ``encode`` reads and sends the gradient to. A fused Adam step over the non-contiguous V
      took 0.93 s per step instead of 0.70 s, and 270 MB more memory. V^T is a Parameter of its own
      (``encoder_t``), so that chapter 05b's DDP can hold it.

    ``penalty_share`` and ``n_batches`` are ``train.DenseProblem``'s (chapter 05b: each of W processes trains a
    share of the rows, its loss carrying 1/W of the penalty). Adam's weight decay is the gradient of the whole
    step's penalty whatever the share: it acts after DDP has averaged the processes' gradients, in every one alike.
    """

    EVAL_ROWS = 1024  # rows per chunk when measuring the RMSEs: bounded memory

    mode = "min"

    def __init__(self, model: AutoRec, matrix: SparseRatingMatrix, validation: torch.Tensor | None = None,
                 l2: float = 1.0, batch_size: int | None = None, device: str | torch.device | None = None,
                 penalty_share: float = 1.0, n_batches: int | None = None):
        check_problem(model, matrix, validation, l2, batch_size, SparseRatingMatrix)
        check_number("penalty_share", penalty_share, 0, 1, low_open=True)
        check_positive_int("n_batches", n_batches, none_means="from batch_size")
        self.device = device = pick_device(device, sparse=True)
        store_encoder_by_input(model.to(device))
        self.encoder_t = torch.nn.Parameter(model.encoder.weight.detach().T)  # V^T: the same memory as V
        self.model, self.l2, self.penalty_share = model, l2, penalty_share
        self.n_rows, self.n_cols = matrix.shape
        if n_batches is None:
            n_batches = 1 if batch_size is None else -(-self.n_rows // batch_size)
        self.n_batches = n_batches
        validation = torch.zeros(matrix.n_observed, dtype=torch.bool) if validation is None else validation
        self.watch = "val_rmse" if validation.any() else "train_rmse"
        self.crow, self.col = matrix.crow.to(device), matrix.col.to(device)
        self.targets, self.validation = matrix.value.to(device), validation.to(device)
        self.inputs = torch.where(self.validation, 0.0, self.targets)  # validation ratings hidden from the input

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        """Adam, in one fused kernel per step, with the penalty's gradient as its weight decay."""
        if name != "adam":
            raise ValueError(f"the sparse path trains with Adam (optimizer='adam'), not {name}; or use a dense "
                             "RatingMatrix (SparseRatingMatrix.to_dense()) if it fits in memory.")
        weights = [self.encoder_t, self.model.decoder.weight]
        biases = [self.model.encoder.bias, self.model.decoder.bias]
        return torch.optim.Adam([{"params": weights, "weight_decay": self.l2 / self.n_batches},
                                 {"params": biases, "weight_decay": 0.0}], lr=lr, fused=True)

    def batches(self, generator: torch.Generator):
        rows = torch.arange(self.n_rows) if self.n_batches == 1 else torch.randperm(self.n_rows, generator=generator)
        return [batch.to(self.device) for batch in rows.tensor_split(self.n_batches)]

    def batch_loss(self, rows: torch.Tensor) -> torch.Tensor:
        inputs, index = csr_rows(self.crow, self.col, self.inputs, rows, self.n_cols)
        predicted = decode_at(self.model, encode(self.model, inputs, self.encoder_t), inputs)
        squared_error = masked_squared_error(predicted, self.targets[index], ~self.validation[index])
        with torch.no_grad():  # the penalty's value, for the history (its gradient is Adam's weight_decay)
            weights = (self.encoder_t, self.model.decoder.weight)
            penalty = self.l2 * self.penalty_share / self.n_batches / 2 * sum(torch.linalg.vector_norm(w).square() for w in weights)
        return squared_error + penalty

    def evaluate(self) -> dict[str, float]:
        """RMSE on the rating scale (predictions clipped to 1-5 stars) on the fitted and the validation ratings."""
        sums, counts = torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.long)
        with torch.no_grad():
            for rows in torch.arange(self.n_rows, device=self.device).split(self.EVAL_ROWS):
                inputs, index = csr_rows(self.crow, self.col, self.inputs, rows, self.n_cols)
                predicted = decode_at(self.model, encode(self.model, inputs), inputs)
                squared = (predicted.clamp(*RATING_RANGE) - self.targets[index]).square().double().cpu()
                held_out = self.validation[index].long().cpu()  # 0: fitted, 1: validation
                sums += torch.bincount(held_out, squared, minlength=2)
                counts += torch.bincount(held_out, minlength=2)
        train_rmse, val_rmse = (float((s / c).sqrt()) if c else float("nan") for s, c in zip(sums, counts, strict=True))
        return {"train_rmse": train_rmse, "val_rmse": val_rmse}


# ---------------------------------------------------------------- predictions

class SparseAutoRecPredictor(AutoRecPredictor):
    """The predictor of an AutoRec trained on a ``SparseRatingMatrix`` (chapter 05), with the interface of
    ``evaluate.AutoRecPredictor``: the hidden code of every row once (rows x hidden numbers), then
    codes[row] . W[column] + b[column] for each entry asked for. Memory grows with rows x hidden, never
    with users x movies (the dense reconstruction of ML-20M would take 15 GB)."""

    ROWS, ENTRIES = 4096, 16384  # chunk sizes: bounded memory (ENTRIES x hidden floats, twice)

    model: AutoRec  # the sparse path trains chapter 02's AutoRec only

    def __init__(self, model: AutoRec, train: SparseRatingMatrix, fallback=None):
        super().__init__(model, train, fallback=fallback)

    def _hidden_codes(self) -> torch.Tensor:
        store_encoder_by_input(self.model)
        device, train = next(self.model.parameters()).device, cast(SparseRatingMatrix, self.matrix)
        return torch.cat([encode(self.model, csr_rows(train.crow, train.col, train.value, rows, train.shape[1])[0].to(device))
                          for rows in torch.arange(train.shape[0]).split(self.ROWS)])

    def _prepare(self) -> None:
        pass  # nothing more: entries are decoded when asked for

    def _entries(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        rows, cols = (users, items) if self.matrix.by == "user" else (items, users)
        weight, bias = self.model.decoder.weight, self.model.decoder.bias
        values = np.empty(len(rows))
        with torch.no_grad():
            for chunk in np.array_split(np.arange(len(rows)), max(1, -(-len(rows) // self.ENTRIES))):
                r = torch.as_tensor(rows[chunk], device=self.codes.device)
                c = torch.as_tensor(cols[chunk], device=self.codes.device)
                values[chunk] = ((self.codes[r] * weight[c]).sum(1) + bias[c]).double().cpu().numpy()
        return values

    def _user_row(self, user: int) -> np.ndarray:
        weight, bias = self.model.decoder.weight, self.model.decoder.bias
        with torch.no_grad():
            if self.matrix.by == "user":  # the user's row, decoded in full
                scores = self.codes[user] @ weight.T + bias
            else:  # the user's column: every movie's code against the user's decoder row
                scores = self.codes @ weight[user] + bias[user]
        return scores.double().cpu().numpy()

    @property
    def scores(self) -> np.ndarray:
        n_users, n_items = len(self.matrix.user_ids), len(self.matrix.item_ids)
        if not fits_dense(n_users, n_items):
            raise ValueError(f"scores for all {n_users:,} x {n_items:,} pairs would take {n_users * n_items * 8 / 1e9:.0f} GB; "
                             "rank one user at a time with user_scores(user_id) (top_k does).")
        return np.stack([self.user_scores(user) for user in self.matrix.user_ids])
