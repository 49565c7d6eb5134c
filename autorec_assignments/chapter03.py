"""Chapter 03's checks: the RMSE on a mask, compared with ``DenseProblem.evaluate``'s, and the training loop,
compared epoch by epoch with ``fit(DenseProblem(...))``; each of the loop's mistakes is recognised by running
``_reference_loop`` with that one thing changed."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import torch

from autorec_utils.matrix import RatingMatrix
from autorec_utils.model import AutoRec
from autorec_utils.train import DenseProblem, Problem, fit

from .common import Test, call, close, fail, fail_first, isolated, matches, name_of, number_result, passed

__all__ = ["check_masked_rmse", "check_training_loop"]


@isolated
def check_masked_rmse(masked_rmse: Callable[..., Any]) -> None:
    """Chapter 03: ``masked_rmse(prediction, ratings, mask)`` must return the RMSE in stars on the entries of ``mask``,
    predictions clipped to the 1-5 scale, as ``DenseProblem.evaluate`` measures it."""
    generator = torch.Generator().manual_seed(4)
    ratings = torch.randint(1, 6, (4, 5), generator=generator).float()
    mask = torch.rand(4, 5, generator=generator) < 0.5
    mask[0, :2] = True
    prediction = 3 + 2.2 * torch.randn(4, 5, generator=generator)  # some below 1 and above 5 stars
    prediction[0, 0], prediction[0, 1] = -0.5, 6.5
    name = name_of(masked_rmse)
    got = number_result(call(masked_rmse, prediction.clone(), ratings.clone(), mask.clone()), name)
    squared = (prediction.clamp(1, 5) - ratings)[mask].square()
    expected = float(squared.mean().sqrt())
    if close(got, expected):
        passed(f"{name} is the RMSE on the masked entries with predictions clipped to 1-5 stars "
               f"(checked on {int(mask.sum())} of {mask.numel()} entries).")
        return
    moved = ratings.clone()
    moved[~mask] += 1.0
    fail_first([
        (lambda: not close(number_result(call(masked_rmse, prediction.clone(), moved, mask.clone()), name), got),
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
    fail(f"{name} gives {got:.6g}, but the RMSE on the masked entries is {expected:.6g}: the root of the mean of "
         "(prediction.clamp(1, 5) - ratings)^2 over the entries where mask is True.")


def _loop_example() -> tuple[AutoRec, RatingMatrix, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(5)
    n, d = 8, 6
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
    matrix = RatingMatrix(ratings, observed, np.arange(1, n + 1), np.arange(1, d + 1), "user")
    torch.manual_seed(5)
    model = AutoRec(d, 3)
    return model, matrix, validation, ratings, fit_mask


def _reference_loop(model: AutoRec, ratings: torch.Tensor, fit_mask: torch.Tensor, l2: float, lr: float, epochs: int,
                    zero_grad: bool = True, input_mask: torch.Tensor | None = None,
                    loss_mask: torch.Tensor | None = None, penalty: float = 0.5, biases: bool = False,
                    reduce: str = "sum", optimizer: str = "adam",
                    fresh_optimizer: bool = False) -> tuple[list[float], AutoRec]:
    """Chapter 03's loop with one thing changed, to recognise a mistake by its numbers."""
    model = copy.deepcopy(model)
    inputs = ratings * (fit_mask if input_mask is None else input_mask)
    loss_mask = fit_mask if loss_mask is None else loss_mask
    kind = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    optim, losses = kind(model.parameters(), lr=lr), []
    for _ in range(epochs):
        if fresh_optimizer:
            optim = kind(model.parameters(), lr=lr)
        if zero_grad:
            optim.zero_grad()
        squared = torch.where(loss_mask, model(inputs) - ratings, 0.0).square()
        error = squared.sum() if reduce == "sum" else squared.sum() / loss_mask.sum()
        norm = model.weight_norm()
        if biases:
            norm = norm + (model.encoder.bias.square().sum() + model.decoder.bias.square().sum())
        loss = error + penalty * l2 * norm
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
    (before its step): the same numbers as ``fit(DenseProblem(model, matrix, validation, l2))`` for the same model."""
    model, matrix, validation, ratings, fit_mask = _loop_example()
    l2, lr, epochs = 0.5, 0.05, 6
    name = name_of(training_loop)
    reference = copy.deepcopy(model)
    problem = cast(Problem, DenseProblem(reference, matrix, validation, l2=l2, device="cpu"))
    history = fit(problem, epochs=epochs, lr=lr, patience=epochs, seed=0, progress=False)
    expected = [record["loss"] for record in history.records]
    correct, trained = _reference_loop(model, ratings, fit_mask, l2, lr, epochs)
    assert np.allclose(correct, expected, rtol=1e-5), "the reference loop no longer matches fit(): tell the teacher"

    student_model = copy.deepcopy(model)
    result = call(training_loop, student_model, ratings.clone(), fit_mask.clone(), l2, lr, epochs)
    losses = _losses(result, name, epochs)
    if _same_weights(student_model, model, exact=True):
        fail("the model's weights did not change: train the model you are given, with optimizer.step() after "
             "loss.backward() in every epoch, the optimiser built on model.parameters().")
    if not close(losses, expected):
        def gives(change: dict[str, Any]) -> Test:
            return lambda: close(losses, _reference_loop(model, ratings, fit_mask, l2, lr, epochs, **change)[0])

        fail_first([
            (lambda: close(losses[:-1], expected[1:]),
             "each loss is one epoch late: record the loss computed in the epoch, before optimizer.step() changes the "
             "weights."),
            *[(gives(change), sentence) for change, sentence in _loop_mistakes(ratings, fit_mask)],
            (lambda: not close(losses[0], expected[0]),
             f"the first epoch's loss is {losses[0]:.6g}, but the objective of the untrained model is "
             f"{expected[0]:.6g}: the masked squared error on fit_mask plus (λ/2)(‖W‖² + ‖V‖²), the model reading "
             "ratings * fit_mask."),
        ])
        agree = next(i for i, (a, b) in enumerate(zip(losses, expected, strict=True)) if not close(a, b))
        fail(f"the losses agree with fit()'s for {agree} epoch(s), then drift ({losses[agree]:.6g} against "
             f"{expected[agree]:.6g}): one full-batch Adam step per epoch with learning rate lr, gradients zeroed "
             "first.")
    if not _same_weights(student_model, trained):
        fail("the losses are right but the model does not hold the weights after the last step: train the model you "
             "are given in place, and do not restore an earlier copy.")
    passed(f"{name} reproduces fit(DenseProblem(...)): the same loss in all {epochs} epochs, and the same weights "
           f"after them (a {tuple(ratings.shape)} matrix, {int(validation.sum())} ratings held back, λ = {l2}).")


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
