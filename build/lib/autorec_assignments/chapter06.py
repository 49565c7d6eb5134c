"""Chapter 06's checks: Mult-DAE's multinomial loss and EASE's closed form, each compared on two examples with the
grader's own formula (the tests hold them equal to ``topn.multinomial_loss`` and ``topn.EASE(...).fit``: a task cell
that patches the package cannot move the reference)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

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

__all__ = ["check_ease_weights", "check_multinomial_nll"]

NLL_NAMES = "logits picked"
EASE_NAMES = "X l2"


def _picks_example(seed: int, n: int, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, d, generator=generator, dtype=torch.float64)
    picked = (torch.rand(n, d, generator=generator) < 0.4).double()
    picked[:, 0] = 1.0  # every user picked something
    picked[0, 1:5] = 1.0  # and they picked different numbers of movies
    return logits, picked


def _picks_examples() -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [_picks_example(6, 4, 7), _picks_example(16, 5, 9)]


def _multinomial(logits: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """The reference, as ``topn.multinomial_loss``."""
    return -(F.log_softmax(logits, dim=1) * picked).sum(dim=1).mean()


@isolated
def check_multinomial_nll(multinomial_nll: Callable[..., Any]) -> None:
    """Chapter 06: ``multinomial_nll(logits, picked)`` must return -sum_i x_i log softmax(logits)_i, averaged over the
    users (rows), as ``topn.multinomial_loss`` (checked on two examples)."""
    name = name_of(multinomial_nll)
    previous: torch.Tensor | None = None
    for logits, picked in _picks_examples():
        leaf = logits.clone().requires_grad_()  # a tensor the loss's gradient can reach
        got = scalar_loss(call(multinomial_nll, leaf, picked.clone(), names=NLL_NAMES), name).detach()
        fail_if_same(got, previous, name)
        if not close(got, _multinomial(logits, picked)):
            _diagnose_multinomial(got, logits, picked, name)
        previous = got
    picked = _picks_examples()[0][1]
    passed(f"{name} is the multinomial negative log-likelihood per user, as topn.multinomial_loss (checked on two "
           f"examples, the first {len(picked)} users with {int(picked.sum(1).min())} to {int(picked.sum(1).max())} "
           "picks each).")


def _diagnose_multinomial(got: torch.Tensor, logits: torch.Tensor, picked: torch.Tensor, name: str) -> None:
    log_p = F.log_softmax(logits, dim=1)
    fail_first([
        (matches(got, (log_p * picked).sum(1).mean()),
         "the sign is flipped: the loss is the negative log-likelihood, -sum x_i log pi_i, which is positive."),
        (matches(got, -(F.softmax(logits, dim=1) * picked).sum(1).mean()),
         "softmax was used where its logarithm belongs: -sum x_i log pi_i needs log_softmax(logits, dim=1)."),
        (matches(got, -(logits * picked).sum(1).mean()),
         "the logits were used as log-probabilities: apply log_softmax first, so that the movies compete for one "
         "unit of probability."),
        (matches(got, -(F.log_softmax(logits, dim=0) * picked).sum(1).mean()),
         "the softmax runs over the users (dim=0): each user's row is a distribution over the movies (dim=1)."),
        (matches(got, -(log_p * picked).sum()),
         "the loss is summed over the users: average it over the rows of the batch (a loss per user)."),
        (matches(got, -(log_p * picked).mean()),
         "the loss is averaged over the movies as well: sum over each user's movies, then average over the users."),
        (matches(got, -log_p.sum(1).mean()),
         "every movie's log-probability was counted: multiply by picked, so that only the picked movies count."),
        (matches(got, -((log_p * picked).sum(1) / picked.sum(1)).mean()),
         "each user's loss was divided by their number of picks: Mult-DAE's loss sums over the picks."),
    ])
    fail(f"{name} gives {got.item():.6g}, which is not -sum_i x_i log softmax(logits)_i averaged over the users: take "
         "log_softmax over each row, multiply by picked, sum each row, then average the rows.")


def _ease_example(seed: int, n: int, d: int, l2: float) -> tuple[torch.Tensor, float]:
    generator = torch.Generator().manual_seed(seed)
    picked = (torch.rand(n, d, generator=generator) < 0.45).float()
    picked[torch.arange(d), torch.arange(d)] = 1.0  # every movie picked at least once
    return picked, l2


def _ease_examples() -> list[tuple[torch.Tensor, float]]:
    return [_ease_example(7, 12, 5, 3.0), _ease_example(17, 15, 6, 2.0)]


def _closed_form(matrix: torch.Tensor, by_row: bool = False, sign: float = -1.0, zero: bool = True) -> torch.Tensor:
    """EASE's B from ``matrix`` (X^T X + λI when right: the reference, as ``topn.EASE``) or with one thing changed,
    to recognise a mistake by its numbers."""
    P = torch.linalg.inv(matrix)
    B = sign * (P / P.diagonal()[:, None] if by_row else P / P.diagonal())
    return B - torch.diag(B.diagonal()) if zero else B


@isolated
def check_ease_weights(ease_weights: Callable[..., Any]) -> None:
    """Chapter 06: ``ease_weights(X, l2)`` must return EASE's item-item matrix B = I - P diag(1 / diag P) with
    P = (X^T X + λI)^-1: off the diagonal B_ij = -P_ij / P_jj, on it 0, as ``topn.EASE(...).fit(X)`` (checked on two
    examples)."""
    name = name_of(ease_weights)
    previous: torch.Tensor | None = None
    for picked, l2 in _ease_examples():
        previous = _check_ease_on(ease_weights, name, picked, l2, previous)
    picked, l2 = _ease_examples()[0]
    passed(f"{name} is EASE's closed form: B_ij = -P_ij / P_jj with P = (X^T X + λI)^-1, zero diagonal "
           f"(checked on two examples, the first {picked.shape[0]} users x {picked.shape[1]} movies, λ = {l2:g}).")


def _check_ease_on(ease_weights: Callable[..., Any], name: str, picked: torch.Tensor, l2: float,
                   previous: torch.Tensor | None) -> torch.Tensor:
    """One example's part of ``check_ease_weights``: returns B, for the next example."""
    n_users, n_items = picked.shape
    X = picked.double()
    gram = X.T @ X
    regularised = gram + l2 * torch.eye(n_items, dtype=torch.float64)
    expected = _closed_form(regularised)
    got = tensor_result(call(ease_weights, picked.clone(), l2, names=EASE_NAMES), name).detach().double()
    fail_if_same(got, previous, name)
    shape = tuple(got.shape)
    if shape != (n_items, n_items):
        fail_first([
            (lambda: shape == (n_users, n_users),
             f"B is users x users ({n_users} x {n_users}): it must be movies x movies ({n_items} x {n_items}), built "
             "from X^T X, not X X^T."),
        ])
        fail(f"B has shape {shape}; it must be movies x movies, {(n_items, n_items)}.")
    tolerance = {"rtol": 1e-4, "atol": 1e-6}
    if close(got, expected, **tolerance):
        return got
    fail_first([
        (matches(got, _closed_form(gram), **tolerance),
         "λ is missing: P = (X^T X + λI)^-1, with λ added to the diagonal."),
        (matches(got, _closed_form(gram + l2), **tolerance),
         "λ was added to every entry of X^T X; add it to the diagonal only (X^T X + λI)."),
        (matches(got, _closed_form(regularised, by_row=True), **tolerance),
         "each entry was divided by the wrong diagonal element (or B is transposed): B_ij = -P_ij / P_jj, column j "
         "divided by P_jj."),
        (matches(got, _closed_form(regularised, sign=1.0), **tolerance),
         "the sign is wrong: B_ij = -P_ij / P_jj, that is B = I - P diag(1 / diag P)."),
        (matches(got, _closed_form(regularised, zero=False), **tolerance),
         "the diagonal of B is not zero: set B_jj = 0, so that no movie predicts itself (B = I - P diag(1 / diag P) "
         "does it)."),
        (matches(got, torch.linalg.solve(regularised, gram), **tolerance),
         "this is ridge regression without the zero-diagonal constraint: use B = I - P diag(1 / diag P) with "
         "P = (X^T X + λI)^-1."),
        (lambda: got.diagonal().abs().max() > 1e-6,
         "the diagonal of B is not zero: set B_jj = 0, so that no movie predicts itself."),
    ])
    fail("B differs from EASE's: B_ij = -P_ij / P_jj with P = (X^T X + λI)^-1, and B_jj = 0.")
