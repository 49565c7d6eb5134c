"""Chapter 02's checks: the forward pass h(r) = W g(V r + mu) + b, and the masked objective with its (λ/2) penalty,
each compared with ``AutoRec`` and ``autorec_objective``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from autorec_utils.model import AutoRec, autorec_objective

from .common import call, close, fail, fail_first, isolated, matches, name_of, passed, scalar_loss, tensor_result

__all__ = ["check_forward_pass", "check_masked_objective"]

Activation = Callable[[torch.Tensor], torch.Tensor]
Example = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # r, V, mu, W, b


def _forward_example() -> Example:
    generator = torch.Generator().manual_seed(2)
    n, d, k = 3, 5, 2  # three rows, five movies, two hidden units: every shape differs
    r = torch.randint(0, 6, (n, d), generator=generator).double()  # 0: not rated
    V = torch.randn(k, d, generator=generator, dtype=torch.float64)
    mu = torch.randn(k, generator=generator, dtype=torch.float64)
    W = torch.randn(d, k, generator=generator, dtype=torch.float64)
    b = torch.randn(d, generator=generator, dtype=torch.float64)
    return r, V, mu, W, b


@isolated
def check_forward_pass(forward_pass: Callable[..., Any]) -> None:
    """Chapter 02: ``forward_pass(r, V, mu, W, b, g)`` must return h(r) = W g(V r + mu) + b for every row of ``r``, as
    ``AutoRec`` computes it (checked with the sigmoid, and with the ELU passed as ``g``)."""
    example = _forward_example()
    r, V = example[:2]
    n, d = r.shape
    k = V.shape[0]
    name = name_of(forward_pass)
    for activation, g in (("sigmoid", torch.sigmoid), ("elu", F.elu)):
        _check_forward_with(forward_pass, name, example, activation, g)
    passed(f"{name} computes AutoRec's forward pass h(r) = W g(V r + mu) + b (checked with {n} rows, d = {d}, k = {k}, "
           "the sigmoid and the ELU).")


def _check_forward_with(forward_pass: Callable[..., Any], name: str, example: Example, activation: str,
                        g: Activation) -> None:
    """One activation's part of ``check_forward_pass``."""
    r, V, mu, W, b = example
    n, d = r.shape
    k = V.shape[0]
    model = AutoRec(d, k, activation=activation).double()
    model.load_state_dict({"encoder.weight": V, "encoder.bias": mu, "decoder.weight": W, "decoder.bias": b})
    with torch.no_grad():
        expected = model(r)
        result = call(forward_pass, r.clone(), V.clone(), mu.clone(), W.clone(), b.clone(), g)
        got = tensor_result(result, name).detach()
    shape = tuple(got.shape)
    if shape != (n, d):
        fail_first([
            (lambda: shape == (d, n),
             f"{name} returns shape {(d, n)}, the transpose of the expected {(n, d)}: one row of d reconstructed "
             "entries for each row r of the input."),
            (lambda: shape == (n, k),
             f"{name} returns the hidden code (shape {(n, k)}), not the reconstruction: decode it with W and b."),
        ])
        fail(f"{name} returns shape {shape}; expected {(n, d)}: one row of d = {d} reconstructed entries for each of "
             f"the {n} rows of r.")
    if close(got, expected):
        return
    code = g(r @ V.T + mu)
    fail_first([
        (matches(got, None if activation == "sigmoid" else torch.sigmoid(r @ V.T + mu) @ W.T + b),
         f"{name} ignores its argument g (it always uses the sigmoid): apply the g it is given."),
        (matches(got, (r @ V.T + mu) @ W.T + b),
         "g is missing: the hidden code is g(V r + mu), the activation applied to V r + mu."),
        (matches(got, g(code @ W.T + b)),
         "the output went through g as well: the output function f is the identity, h(r) = W g(V r + mu) + b."),
        (matches(got, g(r @ V.T) @ W.T + b),
         "mu is missing: the hidden code is g(V r + mu), with the hidden bias mu added before g."),
        (matches(got, code @ W.T), "b is missing: add the output bias b after the decoder, h(r) = W g(V r + mu) + b."),
        (matches(got, g(r @ W + mu) @ V + b),
         "the encoder and the decoder are swapped: V (k x d) and mu encode, W (d x k) and b decode."),
    ])
    fail(f"h(r) differs from AutoRec's forward pass by up to {float((got - expected).abs().max()):.3g}: compute the "
         "code g(r @ V.T + mu) for every row, then code @ W.T + b.")


def _objective_example() -> tuple[AutoRec, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(3)
    model = AutoRec(6, 3).double()
    with torch.no_grad():
        for parameter in model.parameters():  # biases far from 0, so that penalising them shows
            parameter.copy_(torch.randn(parameter.shape, dtype=torch.float64))
    generator = torch.Generator().manual_seed(3)
    target = torch.randint(1, 6, (4, 6), generator=generator).double()
    mask = torch.rand(4, 6, generator=generator) < 0.5
    mask[:, 0] = True  # every row has a rating
    mask[0, 1], mask[1, 1] = False, True  # and some are missing
    prediction = model(target * mask)
    return model, prediction, target, mask


@isolated
def check_masked_objective(masked_objective: Callable[..., Any]) -> None:
    """Chapter 02: ``masked_objective(model, prediction, target, mask, l2)`` must return the paper's objective,
    sum over mask of (target - prediction)^2 + (l2 / 2)(‖W‖² + ‖V‖²), as ``model.autorec_objective``."""
    model, prediction, target, mask = _objective_example()
    name = name_of(masked_objective)
    error = (prediction - target)[mask].square().sum()

    def student(l2: float, prediction: torch.Tensor = prediction, target: torch.Tensor = target) -> torch.Tensor:
        return scalar_loss(call(masked_objective, model, prediction, target.clone(), mask.clone(), l2), name)

    got = student(0.0)  # the error term alone
    if not close(got.detach(), error.detach()):
        _diagnose_error_term(student, got.detach(), prediction, target, mask)
        fail(f"with l2 = 0 {name} gives {got.item():.6g}, but the sum of squared errors on the observed entries is "
             f"{error.item():.6g}: add (prediction - target)^2 over the entries where mask is True.")

    l2 = 0.7
    got = student(l2)
    expected = autorec_objective(model, prediction, target, mask, l2)
    if not close(got.detach(), expected.detach()):
        _diagnose_penalty((got - error).detach(), model, l2)
        fail(f"with l2 = {l2} the penalty part of {name} is {(got - error).item():.6g}, but (λ/2)(‖W‖² + ‖V‖²) "
             f"= {(expected - error).item():.6g}: square and sum the entries of model.encoder.weight (V) and "
             "model.decoder.weight (W).")
    weights = [model.encoder.weight, model.decoder.weight]
    mine = torch.autograd.grad(got, weights, retain_graph=True)
    theirs = torch.autograd.grad(expected, weights, retain_graph=True)
    if not all(close(a, b) for a, b in zip(mine, theirs, strict=True)):
        fail(f"the value of {name} is right but not its gradient: compute the penalty from the weights with torch "
             "operations (no .item(), .detach() or numpy), so that backward() reaches them.")
    passed(f"{name} is the masked squared error + (λ/2)(‖W‖² + ‖V‖²), with its gradient (checked on a "
           f"{tuple(target.shape)} matrix with {int(mask.sum())} ratings, λ = 0 and {l2}).")


def _diagnose_error_term(student: Callable[..., torch.Tensor], got: torch.Tensor, prediction: torch.Tensor,
                         target: torch.Tensor, mask: torch.Tensor) -> None:
    """The mistakes in the squared-error term (``got``: the student's objective with l2 = 0)."""
    moved = target.clone()
    moved[~mask] += 2.5  # an unobserved entry changes: the objective must not
    shifted = prediction + torch.where(mask, 0.0, 1.5)  # with prediction's gradient, as a student's loss needs
    prediction = prediction.detach()
    difference = (prediction - target)[mask]
    fail_first([
        (lambda: not close(student(0.0, target=moved).detach(), got) or not close(student(0.0, shifted).detach(), got),
         "the mask is ignored: the loss changed when an entry outside the mask changed; count only the entries where "
         "mask is True (apply the mask to the error prediction - target)."),
        (matches(got, difference.square().mean()),
         "the squared errors are averaged (a mean); the objective sums them over the observed entries."),
        (matches(got, torch.where(mask, prediction - target, 0.0).square().mean()),
         "the errors are averaged over every entry, the unobserved ones included; the objective sums them over the "
         "observed entries only."),
        (matches(got, difference.abs().sum()),
         "the errors are not squared: add (prediction - target)^2 over the observed entries."),
        (matches(got, difference.square().sum().sqrt()),
         "the square root was taken; the objective is the plain sum of squared errors."),
        (matches(got, -difference.square().sum()),
         "the sign is flipped: the error term is a sum of squares, so it is never negative."),
    ])


def _diagnose_penalty(penalty: torch.Tensor, model: AutoRec, l2: float) -> None:
    """The mistakes in the (λ/2)(‖W‖² + ‖V‖²) term (``penalty``: the student's objective less the squared error)."""
    with torch.no_grad():
        V, W = model.encoder.weight, model.decoder.weight
        weights = V.square().sum() + W.square().sum()
        biases = model.encoder.bias.square().sum() + model.decoder.bias.square().sum()
        fail_first([
            (matches(penalty, torch.zeros(())), "the penalty is missing: add (λ/2)(‖W‖² + ‖V‖²) to the squared error."),
            (matches(penalty, l2 * weights),
             "λ/2 is missing: you used λ(‖W‖² + ‖V‖²); the paper's penalty is (λ/2)(‖W‖² + ‖V‖²)."),
            (matches(penalty, l2 / 2 * (weights + biases)),
             "the biases are in the penalty: only the weight matrices W and V are penalised, not mu and b."),
            (matches(penalty, l2 * (weights + biases)),
             "λ/2 is missing and the biases are in the penalty: use (λ/2)(‖W‖² + ‖V‖²), the two weight matrices only."),
            (matches(penalty, l2 / 2 * (V.norm() + W.norm())),
             "the norms are not squared: the penalty is (λ/2)(‖W‖² + ‖V‖²), sums of squared weights."),
            (matches(penalty, l2 / 2 * V.square().sum(), l2 / 2 * W.square().sum()),
             "one weight matrix is missing from the penalty: it is (λ/2)(‖W‖² + ‖V‖²), both W and V."),
        ])
