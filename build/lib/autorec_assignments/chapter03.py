"""Chapter 03's checks: the RMSE on a mask, and the training loop, compared epoch by epoch with the grader's own
``_reference_loop`` (the tests hold it equal to ``DenseProblem.evaluate`` and ``fit(DenseProblem(...))``: a task cell
that patches the package cannot move the reference), each on two examples. Each of the loop's mistakes is recognised
by running ``_reference_loop`` with that one thing changed."""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.nn import functional as F

from autorec_utils.model import AutoRec

# common.py read anew whenever this module is (re)loaded, found by its name (not as an attribute a task cell could
# replace): a check cell's importlib.reload of this module undoes a task cell's patches of the helpers
importlib.reload(importlib.import_module(".common", __package__))
from .common import (  # noqa: E402
    Test,
    call,
    close,
    fail,
    fail_first,
    fail_if_same,
    isolated,
    matches,
    name_of,
    number_result,
    passed,
)

__all__ = ["check_masked_rmse", "check_training_loop"]

RMSE_NAMES = "prediction ratings mask"
LOOP_NAMES = "model ratings fit_mask l2 lr epochs"


def _rmse_example(seed: int, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ratings = torch.randint(1, 6, (n, d), generator=generator).float()
    mask = torch.rand(n, d, generator=generator) < 0.5
    mask[0, :2] = True
    prediction = 3 + 2.2 * torch.randn(n, d, generator=generator)  # some below 1 and above 5 stars
    prediction[0, 0], prediction[0, 1] = -0.5, 6.5
    return prediction, ratings, mask


def _rmse_examples() -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    return [_rmse_example(4, 4, 5), _rmse_example(14, 5, 6)]


def _rmse(prediction: torch.Tensor, ratings: torch.Tensor, mask: torch.Tensor) -> float:
    """The reference, as ``DenseProblem.evaluate`` measures it."""
    return float((prediction.clamp(1, 5) - ratings)[mask].square().mean().sqrt())


@isolated
def check_masked_rmse(masked_rmse: Callable[..., Any]) -> None:
    """Chapter 03: ``masked_rmse(prediction, ratings, mask)`` must return the RMSE in stars on the entries of ``mask``,
    predictions clipped to the 1-5 scale, as ``DenseProblem.evaluate`` measures it (checked on two examples)."""
    name = name_of(masked_rmse)
    previous: float | None = None
    for prediction, ratings, mask in _rmse_examples():
        got = number_result(call(masked_rmse, prediction.clone(), ratings.clone(), mask.clone(), names=RMSE_NAMES),
                            name)
        fail_if_same(got, previous, name)
        if not close(got, _rmse(prediction, ratings, mask)):
            _diagnose_rmse(masked_rmse, name, got, prediction, ratings, mask)
        previous = got
    _, ratings, mask = _rmse_examples()[0]
    passed(f"{name} is the RMSE on the masked entries with predictions clipped to 1-5 stars "
           f"(checked on two examples, the first {int(mask.sum())} of {mask.numel()} entries).")


def _diagnose_rmse(masked_rmse: Callable[..., Any], name: str, got: float, prediction: torch.Tensor,
                   ratings: torch.Tensor, mask: torch.Tensor) -> None:
    squared = (prediction.clamp(1, 5) - ratings)[mask].square()
    moved = ratings.clone()
    moved[~mask] += 1.0

    def with_moved() -> float:
        return number_result(call(masked_rmse, prediction.clone(), moved, mask.clone(), names=RMSE_NAMES), name)

    fail_first([
        (lambda: not close(with_moved(), got),
         "the mask is ignored: the RMSE changed when a rating outside the mask changed; average over the entries "
         "where mask is True only."),
        (matches(got, (prediction - ratings)[mask].square().mean().sqrt()),
         "the predictions are not clipped: clamp them to the rating scale first, prediction.clamp(1, 5)."),
        (matches(got, squared.mean()),
         "the root is missing: that is the mean squared error; the RMSE is its square root."),
        (matches(got, squared.sum().sqrt()),
         "the squared errors are summed, not averaged: the RMSE is the root of their mean."),
        (matches(got, (prediction - ratings.clamp(1, 5))[mask].square().mean().sqrt()),
         "the ratings were clipped instead of the predictions: clamp the prediction to 1-5 stars."),
    ])
    fail(f"{name} gives {got:.6g}, which is not the RMSE on the masked entries: the root of the mean of "
         "(prediction.clamp(1, 5) - ratings)^2 over the entries where mask is True.")


class LoopExample(NamedTuple):
    model: AutoRec
    ratings: torch.Tensor  # 0: not rated
    observed: torch.Tensor
    validation: torch.Tensor  # one per observed entry (in observed.nonzero() order): held back
    fit_mask: torch.Tensor
    l2: float
    lr: float
    epochs: int


def _loop_example(seed: int, n: int, d: int, hidden: int, l2: float, lr: float, epochs: int) -> LoopExample:
    generator = torch.Generator().manual_seed(seed)
    ratings = torch.randint(1, 6, (n, d), generator=generator).float()
    observed = torch.rand(n, d, generator=generator) < 0.6
    observed[:, 0] = True
    ratings = ratings * observed  # 0: not rated
    rows, cols = observed.nonzero(as_tuple=True)
    validation = torch.zeros(len(rows), dtype=torch.bool)
    held_back = torch.randperm(len(rows), generator=generator)[:4]  # not in the input, not in the loss
    validation[held_back] = True
    validation[0] = False
    fit_mask = observed.clone()
    fit_mask[rows[validation], cols[validation]] = False
    torch.manual_seed(seed)
    return LoopExample(AutoRec(d, hidden), ratings, observed, validation, fit_mask, l2, lr, epochs)


def _loop_examples() -> list[LoopExample]:
    return [_loop_example(5, 8, 6, 3, l2=0.5, lr=0.05, epochs=6), _loop_example(15, 7, 5, 2, l2=0.3, lr=0.03, epochs=4)]


def _reference_loop(example: LoopExample, zero_grad: bool = True, input_mask: torch.Tensor | None = None,
                    loss_mask: torch.Tensor | None = None, penalty: float = 0.5, biases: bool = False,
                    reduce: str = "sum", optimizer: str = "adam",
                    fresh_optimizer: bool = False) -> tuple[list[float], AutoRec]:
    """Chapter 03's loop (as ``fit(DenseProblem(...))`` runs it), or with one thing changed, to recognise a mistake by
    its numbers. The forward pass and the penalty are written out here, not read from ``AutoRec``."""
    model, ratings, fit_mask = copy.deepcopy(example.model), example.ratings, example.fit_mask
    encoder, decoder = model.encoder, model.decoder
    inputs = ratings * (fit_mask if input_mask is None else input_mask)
    loss_mask = fit_mask if loss_mask is None else loss_mask
    kind = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    optim, losses = kind(model.parameters(), lr=example.lr), []
    for _ in range(example.epochs):
        if fresh_optimizer:
            optim = kind(model.parameters(), lr=example.lr)
        if zero_grad:
            optim.zero_grad()
        prediction = F.linear(torch.sigmoid(F.linear(inputs, encoder.weight, encoder.bias)), decoder.weight,
                              decoder.bias)
        squared = torch.where(loss_mask, prediction - ratings, 0.0).square()
        error = squared.sum() if reduce == "sum" else squared.sum() / loss_mask.sum()
        norm = encoder.weight.square().sum() + decoder.weight.square().sum()
        if biases:
            norm = norm + (encoder.bias.square().sum() + decoder.bias.square().sum())
        loss = error + penalty * example.l2 * norm
        loss.backward()
        optim.step()
        losses.append(loss.item())
    return losses, model


def _loop_mistakes(ratings: torch.Tensor, fit_mask: torch.Tensor) -> list[tuple[dict[str, Any], str]]:
    """(what ``_reference_loop`` changes, the sentence for a loop that does the same), in the order they are tried."""
    every_rating, everything = ratings > 0, torch.ones_like(fit_mask)
    return [
        ({"zero_grad": False},
         "gradients pile up across epochs: call optimizer.zero_grad() at the start of every epoch."),
        ({"input_mask": every_rating},
         "the model read the held-back ratings: its input must be ratings * fit_mask, so that the validation ratings "
         "stay unseen."),
        ({"loss_mask": every_rating},
         "the loss counts the held-back ratings: use fit_mask in the loss, not every rating."),
        ({"input_mask": every_rating, "loss_mask": every_rating},
         "the held-back ratings were used, in the input and in the loss: the model reads ratings * fit_mask and the "
         "loss counts the entries of fit_mask only."),
        ({"loss_mask": everything},
         "the mask is missing from the loss: count only the entries where fit_mask is True."),
        ({"input_mask": everything, "loss_mask": everything},
         "there is no mask at all: the model must read ratings * fit_mask, and the loss count only the entries where "
         "fit_mask is True."),
        ({"penalty": 1.0}, "λ/2 is missing: the penalty is (λ/2)(‖W‖² + ‖V‖²), not λ(...)."),
        ({"penalty": 0.0}, "the penalty is missing: the loss is the masked squared error plus (λ/2)(‖W‖² + ‖V‖²)."),
        ({"biases": True}, "the biases are in the penalty: only W and V are penalised (model.weight_norm())."),
        ({"reduce": "mean"}, "the squared errors are averaged; the objective sums them over the entries of fit_mask."),
        ({"optimizer": "sgd"}, "this is not Adam: use torch.optim.Adam(model.parameters(), lr=lr), as fit does."),
        ({"fresh_optimizer": True}, "the optimiser is created anew in every epoch, which resets Adam's running "
                                    "averages: create it once, before the loop."),
    ]


@isolated
def check_training_loop(training_loop: Callable[..., Any]) -> None:
    """Chapter 03: ``training_loop(model, ratings, fit_mask, l2, lr, epochs)`` must train ``model`` in place with
    full-batch Adam on the masked objective, the model reading ``ratings * fit_mask``, and return each epoch's loss
    (before its step): the same numbers as ``fit(DenseProblem(model, matrix, validation, l2))`` for the same model
    (checked on two examples)."""
    name = name_of(training_loop)
    previous: list[float] | None = None
    for example in _loop_examples():
        previous = _check_loop_on(training_loop, name, example, previous)
    first = _loop_examples()[0]
    passed(f"{name} reproduces fit(DenseProblem(...)): the same loss in every epoch, and the same weights after them "
           f"(checked on two examples, the first a {tuple(first.ratings.shape)} matrix, {first.epochs} epochs, "
           f"{int(first.validation.sum())} ratings held back, λ = {first.l2}).")


def _check_loop_on(training_loop: Callable[..., Any], name: str, example: LoopExample,
                   previous: list[float] | None) -> list[float]:
    """One example's part of ``check_training_loop``: returns the losses, for the next example."""
    model, ratings, fit_mask, epochs = example.model, example.ratings, example.fit_mask, example.epochs
    expected, trained = _reference_loop(example)
    student_model = copy.deepcopy(model)
    result = call(training_loop, student_model, ratings.clone(), fit_mask.clone(), example.l2, example.lr, epochs,
                  names=LOOP_NAMES, may_change="model")
    losses = _losses(result, name, epochs)
    if previous is not None and len(previous) == len(losses):
        fail_if_same(losses, previous, name)
    if _same_weights(student_model, model, exact=True):
        fail("the model's weights did not change: train the model you are given, with optimizer.step() after "
             "loss.backward() in every epoch, the optimiser built on model.parameters().")
    if not close(losses, expected):
        _diagnose_loop(losses, expected, example)
    if not _same_weights(student_model, trained):
        fail("the losses are right but the model does not hold the weights after the last step: train the model you "
             "are given in place, and do not restore an earlier copy.")
    return losses


def _diagnose_loop(losses: list[float], expected: list[float], example: LoopExample) -> None:
    """The loop's mistakes, recognised by the losses ``_reference_loop`` gives with that one thing changed."""
    def gives(change: dict[str, Any]) -> Test:
        return lambda: close(losses, _reference_loop(example, **change)[0])

    fail_first([
        (lambda: close(losses[:-1], expected[1:]),
         "each loss is one epoch late: record the loss computed in the epoch, before optimizer.step() changes the "
         "weights."),
        *[(gives(change), sentence) for change, sentence in _loop_mistakes(example.ratings, example.fit_mask)],
        (lambda: not close(losses[0], expected[0]),
         f"the first epoch's loss, {losses[0]:.6g}, is not the objective of the untrained model: the masked squared "
         "error on fit_mask plus (λ/2)(‖W‖² + ‖V‖²), the model reading ratings * fit_mask."),
    ])
    agree = next(i for i, (a, b) in enumerate(zip(losses, expected, strict=True)) if not close(a, b))
    fail(f"the losses agree with fit()'s for {agree} epoch(s), then drift ({losses[agree]:.6g} in epoch {agree + 1}): "
         "one full-batch Adam step per epoch with learning rate lr, gradients zeroed first.")
def _losses(result: Any, name: str, epochs: int) -> list[float]:
    """The losses a training loop returned, as numbers: one per epoch."""
    if isinstance(result, (int, float, np.number)) or (isinstance(result, torch.Tensor) and result.dim() == 0):
        fail(f"{name} returns one number; return a list with every epoch's loss ({epochs} of them here).")
    try:
        losses = [float(loss) for loss in result]
    except (TypeError, ValueError):
        fail(f"{name} returns {type(result).__name__}; return a list of the {epochs} epochs' losses (numbers).")
    if len(losses) != epochs:
        fail(f"{name} returned {len(losses)} losses for {epochs} epochs: one loss per epoch, each computed before "
             "that epoch's optimiser step.")
    return losses


def _same_weights(model: torch.nn.Module, other: torch.nn.Module, exact: bool = False) -> bool:
    pairs = zip(model.state_dict().values(), other.state_dict().values(), strict=True)
    if exact:
        return all(torch.equal(a, b) for a, b in pairs)
    return all(close(a, b, rtol=1e-4, atol=1e-6) for a, b in pairs)
