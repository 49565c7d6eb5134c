"""Deeper AutoRecs, beside chapter 02's one-screen model (chapter 07): more hidden layers, SELU, dropout on
the code, and the *local kernel* layer of Sparse FC / kernelNet (Muller et al., ICML 2018) and GLocal-K
(Han et al., CIKM 2021).

    h(r) = W_L g( ... g(W_2 g(W_1 r + b_1) + b_2) ... ) + b_L        g: sigmoid, ReLU, ELU, SELU or identity

``DeepAutoRec`` has ``AutoRec``'s interface -- ``config``, ``encode`` (the last hidden code), ``decoder``
(the output layer), ``forward``, ``weight_norm`` -- so ``DenseProblem``, ``autorec_objective``,
``AutoRecPredictor`` and checkpoints take it unchanged. With one hidden layer and no kernel it computes
exactly what ``AutoRec`` computes.

The local kernel layer multiplies each weight by a learned closeness of its two ends,

    W_eff[j, i] = W[j, i] * max(0, 1 - ||u_i - v_j||^2),    u_i, v_j in R^d,

(W is out x in, as in ``nn.Linear``; u_i is input unit i's point, v_j output unit j's), so that a weight
whose input and output are far apart (in a learned d-dimensional space) is exactly 0: a sparse layer whose
sparsity pattern is learned. ``kernel_penalty`` adds sum K^2 (times it) to the penalty,
which pulls the kernel towards sparsity.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checks import check_choice, check_number, check_positive_int, is_whole
from .model import ACTIVATIONS

__all__ = ["DEEP_ACTIVATIONS", "DeepAutoRec", "KernelLinear", "local_kernel"]

DEEP_ACTIVATIONS = {**ACTIVATIONS, "selu": nn.SELU}  # SELU: the NVIDIA deep autoencoder's choice


def local_kernel(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """K[i, j] = max(0, 1 - ||u_i - v_j||^2) for the rows u_i of ``u`` (n x d) and v_j of ``v`` (m x d), an
    n x m matrix: 1 where the two points coincide, 0 from distance 1 on (chapter 07)."""
    return (1 - torch.cdist(u, v).square()).clamp(min=0)


class KernelLinear(nn.Module):
    """A linear layer whose weight is ``raw_weight * local_kernel(u, v)`` (chapter 07). ``weight`` is that
    product, shaped like ``nn.Linear``'s (out x in), so code that reads ``layer.weight`` reads what is used."""

    def __init__(self, in_features: int, out_features: int, kernel: int = 5):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        linear = nn.Linear(in_features, out_features)  # its initialisation, for the raw weight and the bias
        self.raw_weight, self.bias = nn.Parameter(linear.weight.detach().clone()), nn.Parameter(linear.bias.detach().clone())
        self.u = nn.Parameter(1e-3 * torch.randn(in_features, kernel))  # near 0: the kernel starts near 1 everywhere
        self.v = nn.Parameter(1e-3 * torch.randn(out_features, kernel))

    def kernel(self) -> torch.Tensor:
        """K, out x in (so the output units' points come first): how much of each raw weight is used."""
        return local_kernel(self.v, self.u)

    @property
    def weight(self) -> torch.Tensor:
        return self.raw_weight * self.kernel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.weight, self.bias)


class DeepAutoRec(nn.Module):
    """``n_inputs`` -> ``hidden[0]`` -> ... -> ``hidden[-1]`` (activation g after each) -> ``n_inputs``
    (identity), with optional dropout on the input and on the last hidden code, and optional local kernel
    layers of dimension ``kernel`` (0: plain dense layers) weighted by ``kernel_penalty`` in the penalty
    (chapter 07)."""

    def __init__(self, n_inputs: int, hidden=(500, 500), activation: str = "sigmoid", dropout: float = 0.0,
                 input_dropout: float = 0.0, kernel: int = 0, kernel_penalty: float = 0.0):
        super().__init__()
        check_positive_int("n_inputs", n_inputs)
        hidden = [hidden] if is_whole(hidden) else list(hidden) if isinstance(hidden, (list, tuple)) else hidden
        if not isinstance(hidden, list) or not hidden:
            raise ValueError(f"hidden must be a size or a non-empty list of sizes, e.g. [500, 500], got {hidden!r}.")
        for size in hidden:
            check_positive_int("each hidden size", size)
        check_choice("activation", activation, DEEP_ACTIVATIONS)
        check_number("dropout", dropout, 0, 1, high_open=True)
        check_number("input_dropout", input_dropout, 0, 1, high_open=True)
        if not is_whole(kernel) or kernel < 0:
            raise ValueError(f"kernel must be 0 (plain layers) or the kernel's dimension d > 0, got {kernel!r}.")
        check_number("kernel_penalty", kernel_penalty, 0)
        self.config: dict[str, Any]
        self.config = {"n_inputs": int(n_inputs), "hidden": [int(size) for size in hidden], "activation": activation,
                       "dropout": float(dropout), "input_dropout": float(input_dropout), "kernel": int(kernel),
                       "kernel_penalty": float(kernel_penalty)}

        def layer(n_in: int, n_out: int) -> KernelLinear | nn.Linear:
            return KernelLinear(n_in, n_out, kernel) if kernel else nn.Linear(n_in, n_out)

        sizes = [int(n_inputs), *self.config["hidden"]]
        self.input_dropout = nn.Dropout(input_dropout)
        self.layers = nn.ModuleList(layer(n_in, n_out) for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True))
        self.activation = DEEP_ACTIVATIONS[activation]()
        self.dropout = nn.Dropout(dropout)
        self.decoder = layer(sizes[-1], int(n_inputs))

    def encode(self, ratings: torch.Tensor) -> torch.Tensor:
        """The last hidden code: for a deep U-AutoRec, a learned embedding of the user."""
        code = self.input_dropout(ratings)
        for layer in self.layers:
            code = self.activation(layer(code))
        return code

    def forward(self, ratings: torch.Tensor) -> torch.Tensor:
        if ratings.shape[-1] != self.config["n_inputs"]:
            raise ValueError(f"this DeepAutoRec reads vectors of length {self.config['n_inputs']}, got shape "
                             f"{tuple(ratings.shape)}: U-AutoRec wants a users x movies matrix, I-AutoRec a movies x users one.")
        return self.decoder(self.dropout(self.encode(ratings)))

    def weight_norm(self) -> torch.Tensor:
        """The sum of the squared (raw) weights of every layer, biases excluded, plus ``kernel_penalty`` times
        the sum of the squared kernels."""
        layers = [*self.layers, self.decoder]
        if not self.config["kernel"]:
            return sum(layer.weight.square().sum() for layer in layers)
        return sum(layer.raw_weight.square().sum() + self.config["kernel_penalty"] * layer.kernel().square().sum()
                   for layer in layers)

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
