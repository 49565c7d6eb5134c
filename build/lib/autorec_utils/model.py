"""AutoRec (Sedhain et al., WWW 2015) and its masked objective: chapter 02.

    h(r) = f(W g(V r + mu) + b)        g: sigmoid (the paper), ReLU, ELU or identity;  f: identity

In the paper's letters: V (hidden x n_inputs) and mu encode, W (n_inputs x hidden) and b decode.
One class serves both variants; the orientation of the rating matrix decides which. U-AutoRec reads a
user's ratings of every movie (rows of a users x movies matrix), I-AutoRec a movie's ratings by every
user (rows of a movies x users matrix).
"""

from __future__ import annotations

import torch
from torch import nn

from .checks import check_choice, check_number, check_positive_int

__all__ = ["ACTIVATIONS", "AutoRec", "autorec_objective", "masked_squared_error", "pick_device"]

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "elu": nn.ELU, "identity": nn.Identity}


class AutoRec(nn.Module):
    """``n_inputs`` -> ``hidden`` (activation g) -> ``n_inputs`` (identity), with optional dropout on
    the input (a denoising autoencoder) and on the hidden code (chapter 02)."""

    def __init__(self, n_inputs: int, hidden: int = 500, activation: str = "sigmoid",
                 dropout: float = 0.0, input_dropout: float = 0.0):
        super().__init__()
        check_positive_int("n_inputs", n_inputs)
        check_positive_int("hidden", hidden)
        check_choice("activation", activation, ACTIVATIONS)
        check_number("dropout", dropout, 0, 1, high_open=True)
        check_number("input_dropout", input_dropout, 0, 1, high_open=True)
        self.config = {"n_inputs": int(n_inputs), "hidden": int(hidden), "activation": activation,
                       "dropout": float(dropout), "input_dropout": float(input_dropout)}
        self.input_dropout = nn.Dropout(input_dropout)
        self.encoder = nn.Linear(n_inputs, hidden)  # V and mu
        self.activation = ACTIVATIONS[activation]()  # g
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(hidden, n_inputs)  # W and b

    def encode(self, ratings: torch.Tensor) -> torch.Tensor:
        """The hidden code g(V r + mu): for U-AutoRec, a learned embedding of the user."""
        return self.activation(self.encoder(self.input_dropout(ratings)))

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        """h(r): the reconstruction of every entry of each row of ``ratings``, the blanks included."""
        if ratings.shape[-1] != self.encoder.in_features:
            raise ValueError(
                f"this AutoRec reads vectors of length {self.encoder.in_features}, got shape {tuple(ratings.shape)}: "
                "U-AutoRec wants a users x movies matrix, I-AutoRec a movies x users one (matrix.transpose())."
            )
        return self.decoder(self.dropout(self.encode(ratings)))

    def weight_norm(self) -> torch.Tensor:
        """||W||^2 + ||V||^2: the two weight matrices only, not the biases (the paper's regulariser)."""
        return self.encoder.weight.square().sum() + self.decoder.weight.square().sum()

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def masked_squared_error(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The sum over observed entries of (r - h(r))^2: unobserved entries contribute nothing, not even
    a gradient (chapter 02)."""
    return torch.where(mask, prediction - target, 0.0).square().sum()


def autorec_objective(model: AutoRec, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      l2: float) -> torch.Tensor:
    """The paper's objective: sum_observed (r - h(r))^2 + (l2 / 2)(||W||^2 + ||V||^2) (chapter 02)."""
    return masked_squared_error(prediction, target, mask) + 0.5 * l2 * model.weight_norm()


def pick_device(device: str | torch.device | None = None, sparse: bool = False) -> torch.device:
    """``device`` if given, else CUDA, else Apple's MPS (not for the sparse path: PyTorch has no sparse
    kernels there), else the CPU (chapter 03)."""
    if device is not None:
        device = torch.device(device)
        if sparse and device.type == "mps":
            raise ValueError("the sparse path runs on CUDA or the CPU (PyTorch has no sparse CSR kernels for MPS); "
                             "pass device='cpu', or a dense RatingMatrix if it fits in memory.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available() and not sparse:
        return torch.device("mps")
    return torch.device("cpu")
