"""The checks every public function runs on its arguments at the edge, each with one message that names
the value and what was expected (used by every chapter)."""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
import torch

__all__ = ["check_choice", "check_number", "check_positive_int", "check_problem", "is_whole", "positive_int_argument"]


def is_whole(value) -> bool:
    """A whole number, not a bool (``True`` is an int in Python, but never meant as a count)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_positive_int(name: str, value, none_means: str | None = None) -> None:
    """``value`` must be a whole number > 0 (or None, when ``none_means`` says what None does)."""
    if value is None and none_means is not None:
        return
    if not is_whole(value) or value <= 0:
        alternative = f" or None ({none_means})" if none_means else ""
        raise ValueError(f"{name} must be a positive whole number{alternative}, got {value!r}.")


def check_number(name: str, value, low: float | None = None, high: float | None = None, low_open: bool = False,
                 high_open: bool = False) -> None:
    """``value`` must be a finite real number within the given bounds (``*_open``: the bound itself excluded)."""
    real = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    too_low = low is not None and real and (value <= low if low_open else value < low)
    too_high = high is not None and real and (value >= high if high_open else value > high)
    if not real or not math.isfinite(value) or too_low or too_high:
        left = "" if low is None else f"{'>' if low_open else '>='} {low:g}"
        right = "" if high is None else f"{'<' if high_open else '<='} {high:g}"
        bounds = " and ".join(part for part in (left, right) if part)
        raise ValueError(f"{name} must be a finite number{' ' + bounds if bounds else ''}, got {value!r}.")


def check_choice(name: str, value, choices) -> None:
    """``value`` must be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {list(choices)}.")


def check_problem(model, matrix, validation, l2, batch_size, matrix_type: type[Any]) -> None:
    """What AutoRec's problems (dense, chapter 03, and sparse, chapter 05) check before training: the
    matrix's kind and width, the validation draw, lambda and the batch size."""
    if not isinstance(matrix, matrix_type):
        raise TypeError(f"the matrix must be a {matrix_type.__name__}, got {type(matrix).__name__}.")
    if matrix.shape[1] != model.config["n_inputs"]:
        raise ValueError(f"the model reads vectors of length {model.config['n_inputs']} but each row of the matrix has "
                         f"{matrix.shape[1]} entries (by={matrix.by!r}); build AutoRec(n_inputs=matrix.shape[1]) or "
                         "transpose the matrix.")
    if validation is not None and (not isinstance(validation, torch.Tensor) or validation.dtype != torch.bool
                                   or tuple(validation.shape) != (matrix.n_observed,)):
        raise ValueError(f"validation must be a bool tensor with one entry per rating ({matrix.n_observed:,}), as "
                         "splits.validation_part draws it.")
    check_number("l2 (lambda)", l2, 0)
    check_positive_int("batch_size", batch_size, none_means="full batch")


def positive_int_argument(text: str) -> int:
    """An argparse ``type`` for a positive whole number: the command lines' one check (``--epochs 0`` is refused
    with the reason, before anything starts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value
