"""The checks of the assignments (chapters 02, 03, 04 and 06): a student writes a function, the check cell under it
calls one of these with that function. A package of its own beside ``autorec_utils``: the grader is not part
of the lesson, and the training loops it runs to recognise students' mistakes are not the package's loop.

Each check runs the student's function on a small example made up here, compares the result with the package's
own code (``AutoRec``, ``fit(DenseProblem(...))``, ``top_k_columns``, ``list_metrics``, ``multinomial_loss``,
``EASE``) and, when they differ, raises ``AssertionError`` with one sentence that says what is wrong. To find
that sentence it compares the result with the mistakes students make most (the mask ignored, lambda instead of
lambda/2, ties broken the other way, ...). A function that is still blank (it returns None or raises
``NotImplementedError``) gets ``NOT_WRITTEN``. A check that passes prints one line saying what was checked.

The examples are tiny and seeded, so a check takes milliseconds and always says the same. The student versions
in ``assignments/`` are generated from ``solutions/`` (``python assignments/make.py``); nbgrader grades a check
cell by whether it raises, and without nbgrader the sentence is the feedback.
"""

from __future__ import annotations

import copy
import functools
import math
import warnings

import numpy as np
import torch
from torch.nn import functional as F

from autorec_utils.evaluate import list_metrics, top_k_columns
from autorec_utils.matrix import RatingMatrix
from autorec_utils.model import AutoRec, autorec_objective
from autorec_utils.topn import EASE, multinomial_loss
from autorec_utils.train import DenseProblem, fit

__all__ = ["NOT_WRITTEN", "check_ease_weights", "check_forward_pass", "check_masked_objective", "check_masked_rmse",
           "check_multinomial_nll", "check_ndcg_at_k", "check_top_k_unrated", "check_training_loop"]

NOT_WRITTEN = "not written yet: fill in the function above (where it says # YOUR CODE HERE), run its cell, then this one."


def _isolated(check):
    """Run a check without touching the caller's random state (it seeds its own examples, and fit seeds too), and
    without warnings: nbgrader gives a check cell no points when anything reaches stderr, and a warning about the
    student's style (float() of a tensor that has a gradient, say) is not a wrong answer."""

    @functools.wraps(check)
    def run(function) -> None:
        numpy_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return check(function)
            finally:
                np.random.set_state(numpy_state)

    return run


def _fail(sentence: str):
    raise AssertionError(sentence) from None


def _passed(sentence: str) -> None:
    print(f"Correct: {sentence}")


def _call(function, *args):
    """The student's result, or the sentence for a blank function or one that raised."""
    if not callable(function):
        _fail(f"expected the function you wrote, got {type(function).__name__}: pass the function itself, without calling it.")
    name = getattr(function, "__name__", "your function")
    try:
        result = function(*args)
    except NotImplementedError:
        _fail(NOT_WRITTEN)
    except Exception as error:  # one sentence about it, not a traceback through the check
        if isinstance(error, RuntimeError) and "shapes cannot be multiplied" in str(error):
            _fail(f"{name} multiplies matrices of mismatched shapes ({error}): V is k x d and W is d x k as in the paper, "
                  "so the rows of r are encoded by r @ V.T and the codes decoded by code @ W.T.")
        _fail(f"{name} raised {type(error).__name__}: {error}")
    if result is None:
        _fail(NOT_WRITTEN)
    return result


def _tensor(result, name: str) -> torch.Tensor:
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, np.ndarray):
        return torch.from_numpy(result)
    _fail(f"{name} returns a {type(result).__name__}; return a tensor.")


def _scalar_loss(result, name: str) -> torch.Tensor:
    """A loss must stay a one-number tensor that autograd can follow."""
    if isinstance(result, (int, float, np.number)):
        _fail(f"{name} returns a plain number ({type(result).__name__}); return the tensor itself (no .item() or float()), "
              "so that loss.backward() can follow it.")
    result = _tensor(result, name)
    if result.numel() != 1:
        _fail(f"{name} returns a tensor of shape {tuple(result.shape)}, not one number: sum (or average) it as the formula says.")
    if not result.requires_grad:
        _fail(f"{name}'s result has no gradient (it was detached, or rebuilt with torch.tensor or numpy): compute it "
              "from the inputs with torch operations only.")
    return result.reshape(())


def _number(result, name: str) -> float:
    if isinstance(result, torch.Tensor):
        result = result.detach().cpu().numpy()
    if isinstance(result, np.ndarray) and result.size == 1:
        return float(result.reshape(-1)[0])
    if isinstance(result, (int, float, np.number)) and not isinstance(result, bool):
        return float(result)
    size = f" of {result.size} values" if isinstance(result, np.ndarray) else ""
    _fail(f"{name} returns {type(result).__name__}{size}; return one number.")


def _close(a, b, rtol: float = 1e-5, atol: float = 1e-7) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def _diagnose(value, variants: dict, rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Fail with the sentence of the first known mistake whose result ``value`` matches (a mistake may list
    several results that it can give; None: not applicable here)."""
    for sentence, results in variants.items():
        for expected in results if isinstance(results, list) else [results]:
            if expected is not None and _close(value, expected, rtol, atol):
                _fail(sentence)


# ---------------------------------------------------------------- chapter 02

def _forward_example():
    generator = torch.Generator().manual_seed(2)
    n, d, k = 3, 5, 2  # three rows, five movies, two hidden units: every shape differs
    r = torch.randint(0, 6, (n, d), generator=generator).double()  # 0: not rated
    V, mu = torch.randn(k, d, generator=generator, dtype=torch.float64), torch.randn(k, generator=generator, dtype=torch.float64)
    W, b = torch.randn(d, k, generator=generator, dtype=torch.float64), torch.randn(d, generator=generator, dtype=torch.float64)
    return r, V, mu, W, b


@_isolated
def check_forward_pass(forward_pass) -> None:
    """Chapter 02: ``forward_pass(r, V, mu, W, b, g)`` must return h(r) = W g(V r + mu) + b for every row of ``r``, as
    ``AutoRec`` computes it (checked with the sigmoid, and with the ELU passed as ``g``)."""
    r, V, mu, W, b = _forward_example()
    n, d = r.shape
    k = V.shape[0]
    name = getattr(forward_pass, "__name__", "your function")
    for activation, g in (("sigmoid", torch.sigmoid), ("elu", F.elu)):
        model = AutoRec(d, k, activation=activation).double()
        model.load_state_dict({"encoder.weight": V, "encoder.bias": mu, "decoder.weight": W, "decoder.bias": b})
        with torch.no_grad():
            expected = model(r)
            got = _tensor(_call(forward_pass, r.clone(), V.clone(), mu.clone(), W.clone(), b.clone(), g), name).detach()
        if tuple(got.shape) != (n, d):
            if tuple(got.shape) == (d, n):
                _fail(f"{name} returns shape {(d, n)}, the transpose of the expected {(n, d)}: one row of d reconstructed "
                      "entries for each row r of the input.")
            if tuple(got.shape) == (n, k):
                _fail(f"{name} returns the hidden code (shape {(n, k)}), not the reconstruction: decode it with W and b.")
            _fail(f"{name} returns shape {tuple(got.shape)}; expected {(n, d)}: one row of d = {d} reconstructed entries "
                  f"for each of the {n} rows of r.")
        if _close(got, expected):
            continue
        code = g(r @ V.T + mu)
        _diagnose(got, {
            f"{name} ignores its argument g (it always uses the sigmoid): apply the g it is given.":
                None if activation == "sigmoid" else torch.sigmoid(r @ V.T + mu) @ W.T + b,
            "g is missing: the hidden code is g(V r + mu), the activation applied to V r + mu.": (r @ V.T + mu) @ W.T + b,
            "the output went through g as well: the output function f is the identity, h(r) = W g(V r + mu) + b.":
                g(code @ W.T + b),
            "mu is missing: the hidden code is g(V r + mu), with the hidden bias mu added before g.": g(r @ V.T) @ W.T + b,
            "b is missing: add the output bias b after the decoder, h(r) = W g(V r + mu) + b.": code @ W.T,
            "the encoder and the decoder are swapped: V (k x d) and mu encode, W (d x k) and b decode.":
                g(r @ W + mu) @ V + b,
        })
        _fail(f"h(r) differs from AutoRec's forward pass by up to {float((got - expected).abs().max()):.3g}: compute the "
              "code g(r @ V.T + mu) for every row, then code @ W.T + b.")
    _passed(f"{name} computes AutoRec's forward pass h(r) = W g(V r + mu) + b (checked with {n} rows, d = {d}, k = {k}, "
            "the sigmoid and the ELU).")


def _objective_example():
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


@_isolated
def check_masked_objective(masked_objective) -> None:
    """Chapter 02: ``masked_objective(model, prediction, target, mask, l2)`` must return the paper's objective,
    sum over mask of (target - prediction)^2 + (l2 / 2)(‖W‖² + ‖V‖²), as ``model.autorec_objective``."""
    model, prediction, target, mask = _objective_example()
    name = getattr(masked_objective, "__name__", "your function")
    error = (prediction - target)[mask].square().sum()

    def student(l2, prediction=prediction, target=target):
        return _scalar_loss(_call(masked_objective, model, prediction, target.clone(), mask.clone(), l2), name)

    got = student(0.0)  # the error term alone
    if not _close(got.detach(), error.detach()):
        moved = target.clone()
        moved[~mask] += 2.5  # an unobserved entry changes: the objective must not
        shifted = prediction + torch.where(mask, 0.0, 1.5)
        if not _close(student(0.0, target=moved).detach(), got.detach()) or not _close(student(0.0, shifted).detach(), got.detach()):
            _fail("the mask is ignored: the loss changed when an entry outside the mask changed; count only the entries "
                  "where mask is True (apply the mask to the error prediction - target).")
        with torch.no_grad():
            difference = (prediction - target)[mask]
            _diagnose(got.detach(), {
                "the squared errors are averaged (a mean); the objective sums them over the observed entries.":
                    difference.square().mean(),
                "the errors are averaged over every entry, the unobserved ones included; the objective sums them over "
                "the observed entries only.": torch.where(mask, prediction - target, 0.0).square().mean(),
                "the errors are not squared: add (prediction - target)^2 over the observed entries.": difference.abs().sum(),
                "the square root was taken; the objective is the plain sum of squared errors.": difference.square().sum().sqrt(),
                "the sign is flipped: the error term is a sum of squares, so it is never negative.": -difference.square().sum(),
            })
        _fail(f"with l2 = 0 {name} gives {got.item():.6g}, but the sum of squared errors on the observed entries is "
              f"{error.item():.6g}: add (prediction - target)^2 over the entries where mask is True.")

    l2 = 0.7
    got = student(l2)
    weights = model.encoder.weight.square().sum() + model.decoder.weight.square().sum()
    biases = model.encoder.bias.square().sum() + model.decoder.bias.square().sum()
    expected = autorec_objective(model, prediction, target, mask, l2)
    if not _close(got.detach(), expected.detach()):
        with torch.no_grad():
            penalty = got - error
            _diagnose(penalty, {
                "the penalty is missing: add (λ/2)(‖W‖² + ‖V‖²) to the squared error.": torch.zeros(()),
                "λ/2 is missing: you used λ(‖W‖² + ‖V‖²); the paper's penalty is (λ/2)(‖W‖² + ‖V‖²).":
                    l2 * weights,
                "the biases are in the penalty: only the weight matrices W and V are penalised, not mu and b.":
                    l2 / 2 * (weights + biases),
                "λ/2 is missing and the biases are in the penalty: use (λ/2)(‖W‖² + ‖V‖²), the two "
                "weight matrices only.": l2 * (weights + biases),
                "the norms are not squared: the penalty is (λ/2)(‖W‖² + ‖V‖²), sums of squared weights.":
                    l2 / 2 * (model.encoder.weight.norm() + model.decoder.weight.norm()),
                "one weight matrix is missing from the penalty: it is (λ/2)(‖W‖² + ‖V‖²), both W and V.":
                    [l2 / 2 * model.encoder.weight.square().sum(), l2 / 2 * model.decoder.weight.square().sum()],
            })
        _fail(f"with l2 = {l2} the penalty part of {name} is {(got - error).item():.6g}, but (λ/2)(‖W‖² + ‖V‖²) "
              f"= {(expected - error).item():.6g}: square and sum the entries of model.encoder.weight (V) and "
              "model.decoder.weight (W).")
    mine = torch.autograd.grad(got, [model.encoder.weight, model.decoder.weight], retain_graph=True)
    theirs = torch.autograd.grad(expected, [model.encoder.weight, model.decoder.weight], retain_graph=True)
    if not all(_close(a, b) for a, b in zip(mine, theirs, strict=True)):
        _fail(f"the value of {name} is right but not its gradient: compute the penalty from the weights with torch "
              "operations (no .item(), .detach() or numpy), so that backward() reaches them.")
    _passed(f"{name} is the masked squared error + (λ/2)(‖W‖² + ‖V‖²), with its gradient (checked on a "
            f"{tuple(target.shape)} matrix with {int(mask.sum())} ratings, λ = 0 and {l2}).")


# ---------------------------------------------------------------- chapter 03

@_isolated
def check_masked_rmse(masked_rmse) -> None:
    """Chapter 03: ``masked_rmse(prediction, ratings, mask)`` must return the RMSE in stars on the entries of ``mask``,
    predictions clipped to the 1-5 scale, as ``DenseProblem.evaluate`` measures it."""
    generator = torch.Generator().manual_seed(4)
    ratings = torch.randint(1, 6, (4, 5), generator=generator).float()
    mask = torch.rand(4, 5, generator=generator) < 0.5
    mask[0, :2] = True
    prediction = 3 + 2.2 * torch.randn(4, 5, generator=generator)  # some below 1 and above 5 stars
    prediction[0, 0], prediction[0, 1] = -0.5, 6.5
    name = getattr(masked_rmse, "__name__", "your function")
    got = _number(_call(masked_rmse, prediction.clone(), ratings.clone(), mask.clone()), name)
    squared = (prediction.clamp(1, 5) - ratings)[mask].square()
    expected = float(squared.mean().sqrt())
    if _close(got, expected):
        _passed(f"{name} is the RMSE on the masked entries with predictions clipped to 1-5 stars "
                f"(checked on {int(mask.sum())} of {mask.numel()} entries).")
        return
    moved = ratings.clone()
    moved[~mask] += 1.0
    if not _close(_number(_call(masked_rmse, prediction.clone(), moved, mask.clone()), name), got):
        _fail("the mask is ignored: the RMSE changed when a rating outside the mask changed; average over the entries "
              "where mask is True only.")
    raw = (prediction - ratings)[mask].square()
    _diagnose(got, {
        "the predictions are not clipped: clamp them to the rating scale first, prediction.clamp(1, 5).": raw.mean().sqrt(),
        "the root is missing: that is the mean squared error; the RMSE is its square root.": squared.mean(),
        "the squared errors are summed, not averaged: the RMSE is the root of their mean.": squared.sum().sqrt(),
        "the ratings were clipped instead of the predictions: clamp the prediction to 1-5 stars.":
            (prediction - ratings.clamp(1, 5))[mask].square().mean().sqrt(),
    })
    _fail(f"{name} gives {got:.6g}, but the RMSE on the masked entries is {expected:.6g}: the root of the mean of "
          "(prediction.clamp(1, 5) - ratings)^2 over the entries where mask is True.")


def _loop_example():
    generator = torch.Generator().manual_seed(5)
    n, d = 8, 6
    ratings = torch.randint(1, 6, (n, d), generator=generator).float()
    observed = torch.rand(n, d, generator=generator) < 0.6
    observed[:, 0] = True
    ratings = ratings * observed  # 0: not rated
    rows, cols = observed.nonzero(as_tuple=True)
    validation = torch.zeros(len(rows), dtype=torch.bool)
    validation[torch.randperm(len(rows), generator=generator)[:4]] = True  # held back: not in the input, not in the loss
    validation[0] = False
    fit_mask = observed.clone()
    fit_mask[rows[validation], cols[validation]] = False
    matrix = RatingMatrix(ratings, observed, np.arange(1, n + 1), np.arange(1, d + 1), "user")
    torch.manual_seed(5)
    model = AutoRec(d, 3)
    return model, matrix, validation, ratings, fit_mask


def _reference_loop(model, ratings, fit_mask, l2, lr, epochs, zero_grad=True, input_mask=None, loss_mask=None,
                    penalty=0.5, biases=False, reduce="sum", optimizer="adam", fresh_optimizer=False):
    """Chapter 03's loop with one thing changed, to recognise a mistake by its numbers."""
    model = copy.deepcopy(model)
    inputs = ratings * (fit_mask if input_mask is None else input_mask)
    loss_mask = fit_mask if loss_mask is None else loss_mask
    make = (lambda: torch.optim.Adam(model.parameters(), lr=lr)) if optimizer == "adam" else (
        lambda: torch.optim.SGD(model.parameters(), lr=lr))
    optim, losses = make(), []
    for _ in range(epochs):
        if fresh_optimizer:
            optim = make()
        if zero_grad:
            optim.zero_grad()
        squared = torch.where(loss_mask, model(inputs) - ratings, 0.0).square()
        error = squared.sum() if reduce == "sum" else squared.sum() / loss_mask.sum()
        norm = model.weight_norm() + (model.encoder.bias.square().sum() + model.decoder.bias.square().sum() if biases else 0)
        loss = error + penalty * l2 * norm
        loss.backward()
        optim.step()
        losses.append(loss.item())
    return losses, model


@_isolated
def check_training_loop(training_loop) -> None:
    """Chapter 03: ``training_loop(model, ratings, fit_mask, l2, lr, epochs)`` must train ``model`` in place with
    full-batch Adam on the masked objective, the model reading ``ratings * fit_mask``, and return each epoch's loss
    (before its step): the same numbers as ``fit(DenseProblem(model, matrix, validation, l2))`` for the same model."""
    model, matrix, validation, ratings, fit_mask = _loop_example()
    l2, lr, epochs = 0.5, 0.05, 6
    name = getattr(training_loop, "__name__", "your function")
    reference = copy.deepcopy(model)
    history = fit(DenseProblem(reference, matrix, validation, l2=l2, device="cpu"), epochs=epochs, lr=lr, patience=epochs,
                  seed=0, progress=False)
    expected = [record["loss"] for record in history.records]
    correct, trained = _reference_loop(model, ratings, fit_mask, l2, lr, epochs)
    assert np.allclose(correct, expected, rtol=1e-5), "the reference loop no longer matches fit(): tell the teacher"

    student_model = copy.deepcopy(model)
    result = _call(training_loop, student_model, ratings.clone(), fit_mask.clone(), l2, lr, epochs)
    if isinstance(result, (int, float, np.number)) or (isinstance(result, torch.Tensor) and result.dim() == 0):
        _fail(f"{name} returns one number; return a list with every epoch's loss ({epochs} of them here).")
    try:
        losses = [float(loss) for loss in result]
    except (TypeError, ValueError):
        _fail(f"{name} returns {type(result).__name__}; return a list of the {epochs} epochs' losses (numbers).")
    if len(losses) != epochs:
        _fail(f"{name} returned {len(losses)} losses for {epochs} epochs: one loss per epoch, each computed before "
              "that epoch's optimiser step.")
    unchanged = all(torch.equal(a, b) for a, b in zip(student_model.state_dict().values(), model.state_dict().values(),
                                                      strict=True))
    if unchanged:
        _fail("the model's weights did not change: train the model you are given, with optimizer.step() after "
              "loss.backward() in every epoch, the optimiser built on model.parameters().")
    if not _close(losses, expected):
        if _close(losses[:-1], expected[1:]):
            _fail("each loss is one epoch late: record the loss computed in the epoch, before optimizer.step() changes "
                  "the weights.")
        mistakes = {
            "gradients pile up across epochs: call optimizer.zero_grad() at the start of every epoch.": {"zero_grad": False},
            "the model read the held-back ratings: its input must be ratings * fit_mask, so that the validation "
            "ratings stay unseen.": {"input_mask": ratings > 0},
            "the loss counts the held-back ratings: use fit_mask in the loss, not every rating.": {"loss_mask": ratings > 0},
            "the held-back ratings were used, in the input and in the loss: the model reads ratings * fit_mask and the "
            "loss counts the entries of fit_mask only.": {"input_mask": ratings > 0, "loss_mask": ratings > 0},
            "the mask is missing from the loss: count only the entries where fit_mask is True.":
                {"loss_mask": torch.ones_like(fit_mask)},
            "there is no mask at all: the model must read ratings * fit_mask, and the loss count only the entries "
            "where fit_mask is True.": {"input_mask": torch.ones_like(fit_mask), "loss_mask": torch.ones_like(fit_mask)},
            "λ/2 is missing: the penalty is (λ/2)(‖W‖² + ‖V‖²), not λ(...).": {"penalty": 1.0},
            "the penalty is missing: the loss is the masked squared error plus (λ/2)(‖W‖² + ‖V‖²).":
                {"penalty": 0.0},
            "the biases are in the penalty: only W and V are penalised (model.weight_norm()).": {"biases": True},
            "the squared errors are averaged; the objective sums them over the entries of fit_mask.": {"reduce": "mean"},
            "this is not Adam: use torch.optim.Adam(model.parameters(), lr=lr), as fit does.": {"optimizer": "sgd"},
            "the optimiser is created anew in every epoch, which resets Adam's running averages: create it once, "
            "before the loop.": {"fresh_optimizer": True},
        }
        for sentence, change in mistakes.items():
            if _close(losses, _reference_loop(model, ratings, fit_mask, l2, lr, epochs, **change)[0]):
                _fail(sentence)
        if not _close(losses[0], expected[0]):
            _fail(f"the first epoch's loss is {losses[0]:.6g}, but the objective of the untrained model is "
                  f"{expected[0]:.6g}: the masked squared error on fit_mask plus (λ/2)(‖W‖² + ‖V‖²), the "
                  "model reading ratings * fit_mask.")
        agree = next(i for i, (a, b) in enumerate(zip(losses, expected, strict=True)) if not _close(a, b))
        _fail(f"the losses agree with fit()'s for {agree} epoch(s), then drift ({losses[agree]:.6g} against "
              f"{expected[agree]:.6g}): one full-batch Adam step per epoch with learning rate lr, gradients zeroed first.")
    if not all(_close(a, b, rtol=1e-4, atol=1e-6) for a, b in zip(student_model.state_dict().values(),
                                                                  trained.state_dict().values(), strict=True)):
        _fail("the losses are right but the model does not hold the weights after the last step: train the model you "
              "are given in place, and do not restore an earlier copy.")
    _passed(f"{name} reproduces fit(DenseProblem(...)): the same loss in all {epochs} epochs, and the same weights "
            f"after them (a {tuple(ratings.shape)} matrix, {int(validation.sum())} ratings held back, λ = {l2}).")


# ---------------------------------------------------------------- chapter 04

def _expected_top_k(scores, rated, unknown, k) -> np.ndarray:
    allowed = np.flatnonzero(~rated & ~unknown)
    if allowed.size == 0:
        return allowed
    return allowed[top_k_columns(scores[allowed], min(k, allowed.size))[0]]


def _top_k_cases():
    """(what the case shows, scores, rated, unknown, k)."""
    scores = np.array([3.1, 4.8, 2.2, 4.9, 3.7, 1.5, 4.1, 2.9, 3.3, 4.4])
    rated = np.zeros(10, dtype=bool)
    rated[[1, 6]] = True
    unknown = np.zeros(10, dtype=bool)
    unknown[3] = True
    ties = np.array([2.0, 4.0, 3.0, 4.0, 1.0, 4.0, 3.0, 2.5, 4.0, 1.0])
    tie_rated = np.zeros(10, dtype=bool)
    tie_rated[5] = True
    negative = np.array([-4.2, -1.3, -6.0, -2.2, -0.7, -3.1, -5.5, -2.8])  # a list model's log-probabilities
    negative_rated = np.zeros(8, dtype=bool)
    negative_rated[[0, 2, 6]] = True
    few = np.array([4.0, 3.0, 5.0, 2.0, 1.0])
    few_rated = np.array([True, False, True, True, False])
    few_unknown = np.array([False, False, False, False, True])
    return [("distinct scores", scores, rated, unknown, 3),
            ("tied scores", ties, tie_rated, np.zeros(10, dtype=bool), 4),
            ("negative scores", negative, negative_rated, np.zeros(8, dtype=bool), 3),
            ("fewer candidates than k", few, few_rated, few_unknown, 3)]


@_isolated
def check_top_k_unrated(top_k_unrated) -> None:
    """Chapter 04: ``top_k_unrated(scores, rated, unknown, k)`` must return the columns of the ``k`` highest scores
    among the movies neither rated nor "unknown", best first, ties to the lower column (as ``top_k_columns``), and
    fewer than ``k`` when fewer are left."""
    name = getattr(top_k_unrated, "__name__", "your function")
    for case, scores, rated, unknown, k in _top_k_cases():
        expected = _expected_top_k(scores, rated, unknown, k)
        result = _call(top_k_unrated, scores.copy(), rated.copy(), unknown.copy(), k)
        got = np.asarray(result.detach().cpu() if isinstance(result, torch.Tensor) else result).reshape(-1)
        if got.dtype == bool:
            _fail(f"{name} returns a yes/no per movie; return the columns of the chosen movies, best first.")
        if not np.issubdtype(got.dtype, np.integer):
            if got.size and np.all(np.isin(got, scores)) and not np.allclose(got, np.round(got)):
                _fail(f"{name} returns the scores; return the columns (positions) of the chosen movies.")
            if not np.allclose(got, np.round(got)):
                _fail(f"{name} returns {got.dtype} values; return whole column numbers, e.g. an array of ints.")
            got = got.astype(int)
        if np.array_equal(got, expected):
            continue
        if got.size and (got.min() < 0 or got.max() >= len(scores)):
            _fail(f"{name} returns column {got.max() if got.max() >= len(scores) else got.min()}, outside the "
                  f"{len(scores)} movies: return positions in the score row.")
        allowed = np.flatnonzero(~rated & ~unknown)
        if got.size and got.max() < allowed.size and np.array_equal(allowed[got], expected):
            _fail(f"{name} returns positions among the candidates, not columns of the score row: map them back "
                  "(candidates[positions]).")
        if case == "negative scores" and np.array_equal(got, top_k_columns(np.where(rated, 0.0, scores), k)[0]):
            _fail("rated movies were given a score of 0, but scores can be negative (a list model's log-probabilities): "
                  "leave rated movies out, or give them -inf.")
        if expected.size < k and got.size > expected.size and np.array_equal(got[: expected.size], expected):
            _fail(f"only {expected.size} movie(s) are left to recommend but the list has {got.size}: return the "
                  "candidates there are, fewer than k, without padding.")
        if rated[got].any():
            _fail(f"a movie the user already rated (column {got[rated[got]][0]}) is in the list: only unrated movies "
                  "are candidates.")
        if unknown[got].any():
            _fail(f"an 'unknown' title (column {got[unknown[got]][0]}) is in the list: leave out the movies that "
                  "unknown marks.")
        if len(set(got.tolist())) < got.size:
            _fail(f"{name} lists a movie twice: each column at most once.")
        if got.size != expected.size:
            _fail(f"the list has {got.size} movies; it should have {expected.size}, k = {k} or all the candidates "
                  "when fewer are left.")
        if set(got.tolist()) == set(expected.tolist()):
            if np.array_equal(got, expected[::-1]):
                _fail("the list is worst first: put the highest score first.")
            if case == "tied scores":
                _fail("ties are broken differently: among equal scores the lower column comes first (as "
                      "np.argsort(-scores, kind='stable') orders them).")
            _fail("the right movies in the wrong order: sort them by score, best first.")
        if case == "tied scores":
            _fail(f"with tied scores the list should be columns {expected.tolist()}, got {got.tolist()}: among equal "
                  "scores the lower column comes first (np.argsort(-scores, kind='stable')).")
        _fail(f"the list should be the {k} highest-scoring candidates, columns {expected.tolist()}, best first; "
              f"got {got.tolist()}.")
    _passed(f"{name} lists the top-k unrated movies, best first, ties to the lower column, 'unknown' titles left out "
            "and fewer than k when fewer are left (checked on 4 score rows).")


def _ndcg_example():
    scores = np.array([
        [0.9, 0.1, 0.8, 0.3, 0.7, 0.2, 0.6, 0.4, 0.5],
        [0.5, 0.5, 0.9, 0.5, 0.1, 0.8, 0.5, 0.2, 0.3],  # ties
        [0.2, 0.9, 0.4, 0.8, 0.6, 0.1, 0.7, 0.3, 0.5],
        [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.9, 0.8],
        [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9],
        [0.3, 0.3, 0.3, 0.9, 0.3, 0.3, 0.1, 0.3, 0.2],  # ties
    ])
    candidate = np.ones(scores.shape, dtype=bool)
    candidate[0, [0, 2]] = False  # rated in training, with the highest scores
    candidate[2, 1] = False
    candidate[3, 7] = False
    candidate[5, 3] = False
    relevant = np.zeros(scores.shape, dtype=bool)
    relevant[0, [4, 8]] = True
    relevant[1, [0, 1, 3, 8]] = True  # more than k relevant movies
    relevant[2, [3, 7]] = True
    relevant[3, [0]] = True
    # user 4: nothing relevant, left out of the mean
    relevant[5, [1, 4]] = True
    return scores, candidate, relevant, 3


def _ndcg_variant(scores, candidate, relevant, k, all_users=False, ideal="min", offset=2, reciprocal=False,
                  exclude=True, ties="low", cut=True) -> float:
    values = []
    for user in range(len(scores)):
        n_relevant = int(relevant[user].sum())
        if n_relevant == 0:
            if all_users:
                values.append(0.0)
            continue
        row = np.where(candidate[user], scores[user], -np.inf) if exclude else scores[user]
        columns = np.arange(len(row))
        order = np.lexsort((columns if ties == "low" else -columns, -row))  # by score, then column
        listed = order if not cut else order[:k]
        ranks = np.arange(1, len(listed) + 1)
        discount = 1 / ranks if reciprocal else 1 / np.log2(ranks + offset - 1)
        dcg = float((relevant[user, listed] * discount).sum())
        n_ideal = {"min": min(k, n_relevant), "all": n_relevant, "k": k}[ideal] if ideal else 0
        ideal_ranks = np.arange(1, n_ideal + 1)
        idcg = float((1 / ideal_ranks if reciprocal else 1 / np.log2(ideal_ranks + offset - 1)).sum()) if ideal else 1.0
        values.append(dcg / idcg)
    return float(np.mean(values))


@_isolated
def check_ndcg_at_k(ndcg_at_k) -> None:
    """Chapter 04: ``ndcg_at_k(scores, candidate, relevant, k)`` must return the mean NDCG@k with binary gains over the
    users with at least one relevant movie, each user's list the top-k candidates (ties to the lower column), as
    ``evaluate.list_metrics`` (and so ``ranking_metrics``) computes it."""
    scores, candidate, relevant, k = _ndcg_example()
    name = getattr(ndcg_at_k, "__name__", "your function")
    expected = list_metrics(scores, candidate, relevant, k)[f"NDCG@{k}"]
    assert math.isclose(_ndcg_variant(scores, candidate, relevant, k), expected), "the reference NDCG moved: tell the teacher"
    got = _number(_call(ndcg_at_k, scores.copy(), candidate.copy(), relevant.copy(), k), name)
    if _close(got, expected):
        _passed(f"{name} is the mean NDCG@{k} with binary gains of the users with a relevant movie, as list_metrics "
                f"computes it (checked on {len(scores)} users, ties and rated movies included).")
        return
    _diagnose(got, {
        "users with no relevant movie were averaged in (as 0): leave them out, they have nothing to find.":
            _ndcg_variant(scores, candidate, relevant, k, all_users=True),
        "movies the user already rated were ranked: only candidates (candidate is True) may be listed.":
            _ndcg_variant(scores, candidate, relevant, k, exclude=False),
        "the ideal DCG must stop at position k: sum 1/log2(j + 1) for j = 1 ... min(k, |T_u|), not over all |T_u| "
        "relevant movies.": _ndcg_variant(scores, candidate, relevant, k, ideal="all"),
        "the ideal DCG assumes k relevant movies; a user with fewer can fill only min(k, |T_u|) positions.":
            _ndcg_variant(scores, candidate, relevant, k, ideal="k"),
        "the DCG is not normalised: divide each user's DCG by their ideal DCG.":
            _ndcg_variant(scores, candidate, relevant, k, ideal=None),
        "the discount is off by one: the first position counts 1/log2(1 + 1) = 1, the j-th 1/log2(j + 1).":
            _ndcg_variant(scores, candidate, relevant, k, offset=3),
        "the discount is 1/log2(rank + 1), not 1/rank.": _ndcg_variant(scores, candidate, relevant, k, reciprocal=True),
        "hits below position k were counted: the DCG sums over the top k of the list only.":
            _ndcg_variant(scores, candidate, relevant, k, cut=False),
        "ties are broken differently: among equal scores the lower column comes first (np.argsort(-scores, "
        "kind='stable'), or evaluate.top_k_columns).": _ndcg_variant(scores, candidate, relevant, k, ties="high"),
    })
    _fail(f"{name} gives {got:.6g}, but the mean NDCG@{k} is {expected:.6g}: for each user with a relevant movie, the "
          "sum of 1/log2(j + 1) over the hits at positions j = 1 ... k of their top-k candidates, divided by the same "
          "sum over the first min(k, |T_u|) positions; then the mean over those users.")


# ---------------------------------------------------------------- chapter 06

def _picks_example():
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 7, generator=generator, dtype=torch.float64).requires_grad_()
    picked = (torch.rand(4, 7, generator=generator) < 0.4).double()
    picked[:, 0] = 1.0  # every user picked something
    picked[0, 1:5] = 1.0  # and they picked different numbers of movies
    return logits, picked


@_isolated
def check_multinomial_nll(multinomial_nll) -> None:
    """Chapter 06: ``multinomial_nll(logits, picked)`` must return -sum_i x_i log softmax(logits)_i, averaged over the
    users (rows), as ``topn.multinomial_loss``."""
    logits, picked = _picks_example()
    name = getattr(multinomial_nll, "__name__", "your function")
    expected = multinomial_loss(logits, picked)
    got = _scalar_loss(_call(multinomial_nll, logits, picked.clone()), name)
    if _close(got.detach(), expected.detach()):
        _passed(f"{name} is the multinomial negative log-likelihood per user, as topn.multinomial_loss (checked on "
                f"{len(picked)} users with {int(picked.sum(1).min())} to {int(picked.sum(1).max())} picks each).")
        return
    with torch.no_grad():
        log_p = F.log_softmax(logits, dim=1)
        _diagnose(got.detach(), {
            "the sign is flipped: the loss is the negative log-likelihood, -sum x_i log pi_i, which is positive.":
                (log_p * picked).sum(1).mean(),
            "softmax was used where its logarithm belongs: -sum x_i log pi_i needs log_softmax(logits, dim=1).":
                -(F.softmax(logits, dim=1) * picked).sum(1).mean(),
            "the logits were used as log-probabilities: apply log_softmax first, so that the movies compete for one "
            "unit of probability.": -(logits * picked).sum(1).mean(),
            "the softmax runs over the users (dim=0): each user's row is a distribution over the movies (dim=1).":
                -(F.log_softmax(logits, dim=0) * picked).sum(1).mean(),
            "the loss is summed over the users: average it over the rows of the batch (a loss per user).":
                -(log_p * picked).sum(),
            "the loss is averaged over the movies as well: sum over each user's movies, then average over the users.":
                -(log_p * picked).mean(),
            "every movie's log-probability was counted: multiply by picked, so that only the picked movies count.":
                -log_p.sum(1).mean(),
            "each user's loss was divided by their number of picks: Mult-DAE's loss sums over the picks.":
                -((log_p * picked).sum(1) / picked.sum(1)).mean(),
        })
    _fail(f"{name} gives {got.item():.6g}, but -sum_i x_i log softmax(logits)_i averaged over the users is "
          f"{expected.item():.6g}.")


def _ease_example():
    generator = torch.Generator().manual_seed(7)
    picked = (torch.rand(12, 5, generator=generator) < 0.45).float()
    picked[torch.arange(5), torch.arange(5)] = 1.0  # every movie picked at least once
    return picked, 3.0


@_isolated
def check_ease_weights(ease_weights) -> None:
    """Chapter 06: ``ease_weights(X, l2)`` must return EASE's item-item matrix B = I - P diag(1 / diag P) with
    P = (X^T X + λI)^-1: off the diagonal B_ij = -P_ij / P_jj, on it 0, as ``topn.EASE(...).fit(X)``."""
    picked, l2 = _ease_example()
    n_users, n_items = picked.shape
    name = getattr(ease_weights, "__name__", "your function")
    expected = EASE(n_items, l2).fit(picked).weights.double()
    got = _tensor(_call(ease_weights, picked.clone(), l2), name).detach().double()
    if tuple(got.shape) != (n_items, n_items):
        if tuple(got.shape) == (n_users, n_users):
            _fail(f"B is users x users ({n_users} x {n_users}): it must be movies x movies ({n_items} x {n_items}), built "
                  "from X^T X, not X X^T.")
        _fail(f"B has shape {tuple(got.shape)}; it must be movies x movies, {(n_items, n_items)}.")
    if _close(got, expected, rtol=1e-4, atol=1e-6):
        _passed(f"{name} is EASE's closed form: B_ij = -P_ij / P_jj with P = (X^T X + λI)^-1, zero diagonal "
                f"(checked on {n_users} users x {n_items} movies, λ = {l2:g}).")
        return
    X = picked.double()
    gram = X.T @ X
    eye = torch.eye(n_items, dtype=torch.float64)

    def closed_form(matrix, by_row=False, sign=-1.0, zero=True):
        P = torch.linalg.inv(matrix)
        B = sign * (P / P.diagonal()[:, None] if by_row else P / P.diagonal())
        return B - torch.diag(B.diagonal()) if zero else B

    _diagnose(got, {
        "λ is missing: P = (X^T X + λI)^-1, with λ added to the diagonal.": closed_form(gram),
        "λ was added to every entry of X^T X; add it to the diagonal only (X^T X + λI).": closed_form(gram + l2),
        "each entry was divided by the wrong diagonal element (or B is transposed): B_ij = -P_ij / P_jj, column j "
        "divided by P_jj.": closed_form(gram + l2 * eye, by_row=True),
        "the sign is wrong: B_ij = -P_ij / P_jj, that is B = I - P diag(1 / diag P).": closed_form(gram + l2 * eye, sign=1.0),
        "the diagonal of B is not zero: set B_jj = 0, so that no movie predicts itself (B = I - P diag(1 / diag P) "
        "does it).": closed_form(gram + l2 * eye, zero=False),
        "this is ridge regression without the zero-diagonal constraint: use B = I - P diag(1 / diag P) with "
        "P = (X^T X + λI)^-1.": torch.linalg.solve(gram + l2 * eye, gram),
    }, rtol=1e-4, atol=1e-6)
    if got.diagonal().abs().max() > 1e-6:
        _fail("the diagonal of B is not zero: set B_jj = 0, so that no movie predicts itself.")
    _fail(f"B differs from EASE's by up to {float((got - expected).abs().max()):.3g}: B_ij = -P_ij / P_jj with "
          "P = (X^T X + λI)^-1, and B_jj = 0.")
