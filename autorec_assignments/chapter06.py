"""Chapter 06's checks: Mult-DAE's multinomial loss, compared with ``topn.multinomial_loss``, and EASE's closed form,
compared with ``topn.EASE(...).fit``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from autorec_utils.topn import EASE, multinomial_loss

from .common import call, close, fail, fail_first, isolated, matches, name_of, passed, scalar_loss, tensor_result

__all__ = ["check_ease_weights", "check_multinomial_nll"]


def _picks_example() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(6)
    logits = torch.randn(4, 7, generator=generator, dtype=torch.float64).requires_grad_()
    picked = (torch.rand(4, 7, generator=generator) < 0.4).double()
    picked[:, 0] = 1.0  # every user picked something
    picked[0, 1:5] = 1.0  # and they picked different numbers of movies
    return logits, picked


@isolated
def check_multinomial_nll(multinomial_nll: Callable[..., Any]) -> None:
    """Chapter 06: ``multinomial_nll(logits, picked)`` must return -sum_i x_i log softmax(logits)_i, averaged over the
    users (rows), as ``topn.multinomial_loss``."""
    logits, picked = _picks_example()
    name = name_of(multinomial_nll)
    expected = multinomial_loss(logits, picked)
    got = scalar_loss(call(multinomial_nll, logits, picked.clone()), name).detach()
    if close(got, expected.detach()):
        passed(f"{name} is the multinomial negative log-likelihood per user, as topn.multinomial_loss (checked on "
               f"{len(picked)} users with {int(picked.sum(1).min())} to {int(picked.sum(1).max())} picks each).")
        return
    logits = logits.detach()
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
    fail(f"{name} gives {got.item():.6g}, but -sum_i x_i log softmax(logits)_i averaged over the users is "
         f"{expected.item():.6g}.")


def _ease_example() -> tuple[torch.Tensor, float]:
    generator = torch.Generator().manual_seed(7)
    picked = (torch.rand(12, 5, generator=generator) < 0.45).float()
    picked[torch.arange(5), torch.arange(5)] = 1.0  # every movie picked at least once
    return picked, 3.0


def _closed_form(matrix: torch.Tensor, by_row: bool = False, sign: float = -1.0, zero: bool = True) -> torch.Tensor:
    """EASE's B from ``matrix`` (X^T X + λI when right) with one thing changed, to recognise a mistake by its
    numbers."""
    P = torch.linalg.inv(matrix)
    B = sign * (P / P.diagonal()[:, None] if by_row else P / P.diagonal())
    return B - torch.diag(B.diagonal()) if zero else B


@isolated
def check_ease_weights(ease_weights: Callable[..., Any]) -> None:
    """Chapter 06: ``ease_weights(X, l2)`` must return EASE's item-item matrix B = I - P diag(1 / diag P) with
    P = (X^T X + λI)^-1: off the diagonal B_ij = -P_ij / P_jj, on it 0, as ``topn.EASE(...).fit(X)``."""
    picked, l2 = _ease_example()
    n_users, n_items = picked.shape
    name = name_of(ease_weights)
    expected = EASE(n_items, l2).fit(picked).get_buffer("weights").double()
    got = tensor_result(call(ease_weights, picked.clone(), l2), name).detach().double()
    shape = tuple(got.shape)
    if shape != (n_items, n_items):
        fail_first([
            (lambda: shape == (n_users, n_users),
             f"B is users x users ({n_users} x {n_users}): it must be movies x movies ({n_items} x {n_items}), built "
             "from X^T X, not X X^T."),
        ])
        fail(f"B has shape {shape}; it must be movies x movies, {(n_items, n_items)}.")
    if close(got, expected, rtol=1e-4, atol=1e-6):
        passed(f"{name} is EASE's closed form: B_ij = -P_ij / P_jj with P = (X^T X + λI)^-1, zero diagonal "
               f"(checked on {n_users} users x {n_items} movies, λ = {l2:g}).")
        return
    X = picked.double()
    gram = X.T @ X
    regularised = gram + l2 * torch.eye(n_items, dtype=torch.float64)
    tolerance = {"rtol": 1e-4, "atol": 1e-6}
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
    fail(f"B differs from EASE's by up to {float((got - expected).abs().max()):.3g}: B_ij = -P_ij / P_jj with "
         "P = (X^T X + λI)^-1, and B_jj = 0.")
