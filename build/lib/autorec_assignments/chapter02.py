"""Chapter 02's checks: the forward pass h(r) = W g(V r + mu) + b, and the masked objective with its (λ/2) penalty,
each compared on two examples with the grader's own formula (the tests hold it equal to ``AutoRec`` and
``autorec_objective``: a task cell that patches the package cannot move the reference)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from autorec_utils.model import AutoRec

# common.py read anew whenever this module is (re)loaded, found by its name (not as an attribute a task cell could
# replace): a check cell's importlib.reload of this module undoes a task cell's patches of the helpers
importlib.reload(importlib.import_module(".common", __package__))
from .common import (  # noqa: E402
    call,
    close,
    fail,
    fail_first,
    fail_if_same,
    isolated,
    matches,
    name_of,
    passed,
    scalar_loss,
    tensor_result,
)

__all__ = ["check_forward_pass", "check_masked_objective"]

Activation = Callable[[torch.Tensor], torch.Tensor]
Example = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # r, V, mu, W, b
FORWARD_NAMES = "r V mu W b g"
OBJECTIVE_NAMES = "model prediction target mask l2"


def _forward_example(seed: int, n: int, d: int, k: int) -> Example:
    generator = torch.Generator().manual_seed(seed)
    r = torch.randint(0, 6, (n, d), generator=generator).double()  # 0: not rated
    V = torch.randn(k, d, generator=generator, dtype=torch.float64)
    mu = torch.randn(k, generator=generator, dtype=torch.float64)
    W = torch.randn(d, k, generator=generator, dtype=torch.float64)
    b = torch.randn(d, generator=generator, dtype=torch.float64)
    return r, V, mu, W, b


def _forward_examples() -> list[Example]:
    """Three rows, five movies, two hidden units (every shape differs); then a second example never shown."""
    return [_forward_example(2, 3, 5, 2), _forward_example(12, 4, 6, 3)]


def _forward(example: Example, g: Activation) -> torch.Tensor:
    """The reference: AutoRec's forward pass with these weights."""
    r, V, mu, W, b = example
    return g(r @ V.T + mu) @ W.T + b


@isolated
def check_forward_pass(forward_pass: Callable[..., Any]) -> None:
    """Chapter 02: ``forward_pass(r, V, mu, W, b, g)`` must return h(r) = W g(V r + mu) + b for every row of ``r``, as
    ``AutoRec`` computes it (checked with the sigmoid, and with the ELU passed as ``g``, on two examples)."""
    name = name_of(forward_pass)
    examples = _forward_examples()
    previous: torch.Tensor | None = None
    for example in examples:  # the second example's sigmoid result is compared with the first's
        previous = [_check_forward_with(forward_pass, name, example, g, previous if g is torch.sigmoid else None)
                    for g in (torch.sigmoid, F.elu)][0]
    n, d = examples[0][0].shape
    passed(f"{name} computes AutoRec's forward pass h(r) = W g(V r + mu) + b (checked on two examples, {n} rows and "
           f"d = {d} the first, with the sigmoid and the ELU).")


def _check_forward_with(forward_pass: Callable[..., Any], name: str, example: Example, g: Activation,
                        previous: torch.Tensor | None) -> torch.Tensor:
    """One example's and one activation's part of ``check_forward_pass``; ``previous``: the last example's result."""
    r, V, mu, W, b = example
    n, d = r.shape
    k = V.shape[0]
    with torch.no_grad():
        expected = _forward(example, g)
        result = call(forward_pass, r.clone(), V.clone(), mu.clone(), W.clone(), b.clone(), g, names=FORWARD_NAMES)
        got = tensor_result(result, name).detach()
    fail_if_same(got, previous, name)
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
        return got
    code = g(r @ V.T + mu)
    fail_first([
        (matches(got, None if g is torch.sigmoid else torch.sigmoid(r @ V.T + mu) @ W.T + b),
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
    fail("h(r) differs from AutoRec's forward pass: compute the code g(r @ V.T + mu) for every row, then "
         "code @ W.T + b.")


ObjectiveExample = tuple[AutoRec, torch.Tensor, torch.Tensor, torch.Tensor, float]  # model, prediction, target, mask, λ


def _objective_example(seed: int, n: int, d: int, k: int, l2: float) -> ObjectiveExample:
    torch.manual_seed(seed)
    model = AutoRec(d, k).double()
    with torch.no_grad():
        for parameter in model.parameters():  # biases far from 0, so that penalising them shows
            parameter.copy_(torch.randn(parameter.shape, dtype=torch.float64))
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(1, 6, (n, d), generator=generator).double()
    mask = torch.rand(n, d, generator=generator) < 0.5
    mask[:, 0] = True  # every row has a rating
    mask[0, 1], mask[1, 1] = False, True  # and some are missing
    V, mu, W, b = model.encoder.weight, model.encoder.bias, model.decoder.weight, model.decoder.bias
    prediction = torch.sigmoid((target * mask) @ V.T + mu) @ W.T + b  # AutoRec's forward pass, with its gradient
    return model, prediction, target, mask, l2


def _objective_examples() -> list[ObjectiveExample]:
    return [_objective_example(3, 4, 6, 3, 0.7), _objective_example(13, 5, 7, 2, 0.4)]


def _objective(model: AutoRec, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               l2: float) -> torch.Tensor:
    """The reference: the masked squared error + (l2 / 2)(‖W‖² + ‖V‖²), as ``autorec_objective``."""
    error = torch.where(mask, prediction - target, 0.0).square().sum()
    return error + l2 / 2 * (model.encoder.weight.square().sum() + model.decoder.weight.square().sum())


@isolated
def check_masked_objective(masked_objective: Callable[..., Any]) -> None:
    """Chapter 02: ``masked_objective(model, prediction, target, mask, l2)`` must return the paper's objective,
    sum over mask of (target - prediction)^2 + (l2 / 2)(‖W‖² + ‖V‖²), as ``model.autorec_objective`` (checked on two
    examples, each with l2 = 0 and l2 > 0, and its gradient)."""
    name = name_of(masked_objective)
    previous: torch.Tensor | None = None
    for example in _objective_examples():
        previous = _check_objective_on(masked_objective, name, example, previous)
    _, _, target, mask, l2 = _objective_examples()[0]
    passed(f"{name} is the masked squared error + (λ/2)(‖W‖² + ‖V‖²), with its gradient (checked on two examples, "
           f"the first a {tuple(target.shape)} matrix with {int(mask.sum())} ratings, λ = 0 and {l2}).")


def _check_objective_on(masked_objective: Callable[..., Any], name: str, example: ObjectiveExample,
                        previous: torch.Tensor | None) -> torch.Tensor:
    """One example's part of ``check_masked_objective``: returns the objective with l2 = 0, for the next example."""
    model, prediction, target, mask, l2 = example
    error = _objective(model, prediction, target, mask, 0.0)

    def student(l2: float, prediction: torch.Tensor = prediction, target: torch.Tensor = target) -> torch.Tensor:
        result = call(masked_objective, model, prediction.clone(), target.clone(), mask.clone(), l2,
                      names=OBJECTIVE_NAMES)
        return scalar_loss(result, name)

    got = student(0.0)  # the error term alone
    first = got.detach()
    fail_if_same(first, previous, name)
    if not close(got.detach(), error.detach()):
        _diagnose_error_term(student, got.detach(), prediction, target, mask)
        fail(f"with l2 = 0 {name} is not the sum of squared errors on the observed entries: add (prediction - "
             "target)^2 over the entries where mask is True.")
    got = student(l2)
    expected = _objective(model, prediction, target, mask, l2)
    if not close(got.detach(), expected.detach()):
        _diagnose_penalty((got - error).detach(), model, l2)
        fail(f"with l2 = {l2} the penalty part of {name} is not (λ/2)(‖W‖² + ‖V‖²): square and sum the entries of "
             "model.encoder.weight (V) and model.decoder.weight (W), and multiply by l2 / 2.")
    weights = [model.encoder.weight, model.decoder.weight]
    mine = torch.autograd.grad(got, weights, retain_graph=True, allow_unused=True)  # None: not reached
    theirs = torch.autograd.grad(expected, weights, retain_graph=True)
    if not all(a is not None and close(a, b) for a, b in zip(mine, theirs, strict=True)):
        fail(f"the value of {name} is right but not its gradient: compute the penalty from the weights with torch "
             "operations (no .item(), .detach() or numpy), so that backward() reaches them.")
    return first
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
