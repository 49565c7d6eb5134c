"""AutoRec (Sedhain et al., WWW 2015): an autoencoder that reconstructs partially observed rating vectors.

    h(r) = f(W · g(V r + mu) + b)        g: sigmoid (paper) / ReLU / ELU / identity,  f: identity

in the paper's letters: V (hidden x n_inputs) and mu encode, W (n_inputs x hidden) and b decode.

One class serves both variants; the orientation of the rating matrix decides which:
U-AutoRec reads a user's ratings of every movie (rows of a users x movies matrix), I-AutoRec a movie's
ratings by every user (rows of a movies x users matrix).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F

# PyTorch labels its CSR tensors "beta"; the products used here are stable and tested in tests/test_sparse.py.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "elu": nn.ELU, "identity": nn.Identity}


class AutoRec(nn.Module):
    """``n_inputs`` -> ``hidden`` (activation) -> ``n_inputs`` (identity), with optional dropout on
    the input (as in a denoising autoencoder) and on the hidden layer."""

    def __init__(self, n_inputs: int, hidden: int = 500, activation: str = "sigmoid",
                 dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__()
        for name, value in (("n_inputs", n_inputs), ("hidden", hidden)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {sorted(ACTIVATIONS)}.")
        for name, value in (("dropout", dropout), ("input_dropout", input_dropout)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}.")
        self.config = {"n_inputs": n_inputs, "hidden": hidden, "activation": activation,
                       "dropout": dropout, "input_dropout": input_dropout}
        self.input_dropout = nn.Dropout(input_dropout)
        self.encoder = nn.Linear(n_inputs, hidden)  # V (hidden x n_inputs) and mu
        self.activation = ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, n_inputs)  # W (n_inputs x hidden) and b

    def encode(self, ratings: torch.Tensor) -> torch.Tensor:
        """The hidden code g(V r + mu): for U-AutoRec, a learned embedding of the user."""
        return self.activation(self.encoder(self.input_dropout(ratings)))

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        if ratings.shape[-1] != self.encoder.in_features:
            raise ValueError(
                f"this AutoRec reads vectors of length {self.encoder.in_features}, got shape {tuple(ratings.shape)}: "
                "U-AutoRec wants a users x movies matrix, I-AutoRec a movies x users one (matrix.transpose())."
            )
        return self.decoder(self.dropout(self.encode(ratings)))

    def store_encoder_by_input(self) -> None:
        """Keep V column by column in memory (V^T contiguous, same values), so that ``encode_sparse``
        reads one whole row of V^T per rating instead of 500 scattered numbers. nn.Linear computes the
        same products with either layout; ``fit`` does this for its sparse path with Adam."""
        weight = self.encoder.weight
        if not weight.T.is_contiguous():
            weight.data = weight.data.T.contiguous().T

    def encode_sparse(self, ratings: torch.Tensor) -> torch.Tensor:
        """``encode`` for a sparse CSR batch of rating vectors (``torch.sparse_csr_tensor``): the cost grows
        with the ratings stored, not with the length of the vectors."""
        _check_csr(ratings, self.encoder.in_features, "ratings")
        if self.training and self.input_dropout.p > 0:
            ratings = _csr_like(ratings, self.input_dropout(ratings.values()))
        return self.activation(_SparseTimesDense.apply(ratings, self.encoder.weight.T) + self.encoder.bias)

    def decode_at(self, codes: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
        """h(r) only at the entries of the CSR matrix ``pattern`` (len(codes) x n_inputs; its values are
        ignored), in the pattern's order: for each entry (i, j), codes[i] . W[j] + b[j]. Nothing else of
        the reconstruction is computed, neither forward nor backward."""
        _check_csr(pattern, self.decoder.out_features, "pattern")
        if pattern.shape[0] != len(codes):
            raise ValueError(f"pattern has {pattern.shape[0]} rows for {len(codes)} codes.")
        return _SampledProduct.apply(pattern, self.dropout(codes), self.decoder.weight, self.decoder.bias)

    def weight_norm(self) -> torch.Tensor:
        """||W||^2 + ||V||^2: the two weight matrices only, not the biases (the paper's regulariser)."""
        return self.encoder.weight.square().sum() + self.decoder.weight.square().sum()

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def masked_squared_error(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sum over observed entries of (r - h(r))^2 -- unobserved entries contribute nothing, not even
    a gradient."""
    return torch.where(mask, prediction - target, 0.0).square().sum()


def autorec_objective(model: AutoRec, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      l2: float) -> torch.Tensor:
    """The paper's objective: sum_observed (r - h(r))^2 + (l2 / 2) (||W||^2 + ||V||^2)."""
    return masked_squared_error(prediction, target, mask) + 0.5 * l2 * model.weight_norm()


# ---------------------------------------------------------------- the sparse path's two products
# Their backward passes are written out because each is again a sparse x dense product (with the batch
# transposed); PyTorch's generic backward of these products is two to three times slower here.

class _SparseTimesDense(torch.autograd.Function):
    """ratings @ dense for a constant CSR matrix ``ratings`` (the gradient goes to ``dense`` only)."""

    @staticmethod
    def forward(ctx, ratings, dense):
        ctx.ratings = ratings
        return _csr_times_dense(ratings, dense)

    @staticmethod
    def backward(ctx, grad):
        return None, _csr_times_dense(_transpose_csr(ctx.ratings), grad)


class _SampledProduct(torch.autograd.Function):
    """(codes @ weight^T + bias) at the entries of a CSR ``pattern`` only (an SDDMM), as a vector of values."""

    @staticmethod
    def forward(ctx, pattern, codes, weight, bias):
        ctx.pattern = pattern
        ctx.save_for_backward(codes, weight)
        columns = pattern.col_indices()
        return torch.sparse.sampled_addmm(pattern, codes, weight.T, beta=0.0).values() + bias[columns]

    @staticmethod
    def backward(ctx, grad):
        codes, weight = ctx.saved_tensors
        grad = grad.contiguous()
        upstream = _csr_like(ctx.pattern, grad)  # d loss / d prediction, at the entries
        # index_add_ sums in a fixed order (indexing's own backward may not, with several threads)
        bias_grad = torch.zeros(weight.shape[0], dtype=grad.dtype, device=grad.device).index_add_(0, ctx.pattern.col_indices(), grad)
        return None, _csr_times_dense(upstream, weight), _csr_times_dense(_transpose_csr(upstream), codes), bias_grad


def _csr_times_dense(matrix: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
    """A CSR matrix times a dense one. Row i of the result is the sum of dense[j] * value over row i's
    entries (i, j): exactly what embedding_bag computes, in one fused kernel (on the CPU about twice as
    fast as ``matrix @ dense``, which zero-fills and copies its result)."""
    return F.embedding_bag(matrix.col_indices(), dense, matrix.crow_indices()[:-1], mode="sum",
                           per_sample_weights=matrix.values())


def _csr_like(pattern: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """A CSR matrix with ``pattern``'s entries and new values."""
    return _csr_tensor(pattern.crow_indices(), pattern.col_indices(), values, pattern.shape)


def _transpose_csr(matrix: torch.Tensor) -> torch.Tensor:
    """The transpose of a CSR matrix, again in CSR (its entries sorted by column, then row)."""
    crow, col, n_rows, n_cols = matrix.crow_indices(), matrix.col_indices(), *matrix.shape
    rows = torch.repeat_interleave(torch.arange(n_rows, device=col.device, dtype=col.dtype), crow.diff())
    order = torch.argsort(col, stable=True)
    crow_t = torch.zeros(n_cols + 1, dtype=crow.dtype, device=col.device)
    crow_t[1:] = torch.bincount(col, minlength=n_cols).cumsum(0)
    return _csr_tensor(crow_t, rows[order], matrix.values()[order], (n_cols, n_rows))


def _csr_tensor(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape) -> torch.Tensor:
    """``torch.sparse_csr_tensor`` for indices that are valid by construction (so unchecked)."""
    return torch.sparse_csr_tensor(crow, col, values, shape, check_invariants=False)


def _check_csr(matrix: torch.Tensor, n_inputs: int, name: str) -> None:
    if matrix.layout != torch.sparse_csr:
        raise TypeError(f"{name} must be a sparse CSR tensor (torch.sparse_csr_tensor or .to_sparse_csr()), got {matrix.layout}.")
    if matrix.shape[1] != n_inputs:
        raise ValueError(f"this AutoRec reads vectors of length {n_inputs}, got a {name} batch of shape {tuple(matrix.shape)}.")
