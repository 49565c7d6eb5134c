"""What every check shares: running a check apart from the notebook's state (``isolated``), calling the student's
function and turning what it returns into a tensor, a loss or a number (``call``, ``tensor_result``,
``scalar_loss``, ``number_result``), and walking a check's table of diagnoses (``fail_first``): a list of
(test, sentence) pairs in the order the mistakes are looked for, the first test that holds failing with its
sentence. ``matches`` makes the test "the student's result is the result of this mistake"."""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import numpy as np
import torch

__all__ = ["NOT_WRITTEN", "Check", "Diagnoses", "Test", "call", "close", "fail", "fail_first", "isolated", "matches",
           "name_of", "number_result", "passed", "scalar_loss", "tensor_result"]

NOT_WRITTEN = ("not written yet: fill in the function above (where it says # YOUR CODE HERE), run its cell, then this "
               "one.")

Check = Callable[[Any], None]  # a check: it takes the student's function, prints "Correct: ..." or raises
Test = Callable[[], object]  # one diagnosis's test: truthy when the student made that mistake
Diagnoses = Sequence[tuple[Test, str]]  # (test, sentence), in the order the mistakes are looked for


def isolated(check: Check) -> Check:
    """Run a check without touching the caller's random state (it seeds its own examples, and fit seeds too), and
    without warnings: nbgrader gives a check cell no points when anything reaches stderr, and a warning about the
    student's style (float() of a tensor that has a gradient, say) is not a wrong answer."""

    @functools.wraps(check)
    def run(function: Any) -> None:
        numpy_state = np.random.get_state()
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return check(function)
            finally:
                np.random.set_state(numpy_state)

    return run


def fail(sentence: str) -> NoReturn:
    raise AssertionError(sentence) from None


def passed(sentence: str) -> None:
    print(f"Correct: {sentence}")


def fail_first(diagnoses: Diagnoses) -> None:
    """Fail with the sentence of the first diagnosis whose test holds; return when none does."""
    for test, sentence in diagnoses:
        if test():
            fail(sentence)


def name_of(function: object) -> str:
    return getattr(function, "__name__", "your function")


def call(function: object, *args: Any) -> Any:
    """The student's result, or the sentence for a blank function or one that raised."""
    if not callable(function):
        fail(f"expected the function you wrote, got {type(function).__name__}: pass the function itself, without "
             "calling it.")
    name = name_of(function)
    try:
        result = function(*args)
    except NotImplementedError:
        fail(NOT_WRITTEN)
    except Exception as error:  # one sentence about it, not a traceback through the check
        if isinstance(error, RuntimeError) and "shapes cannot be multiplied" in str(error):
            fail(f"{name} multiplies matrices of mismatched shapes ({error}): V is k x d and W is d x k as in the "
                 "paper, so the rows of r are encoded by r @ V.T and the codes decoded by code @ W.T.")
        fail(f"{name} raised {type(error).__name__}: {error}")
    if result is None:
        fail(NOT_WRITTEN)
    return result


def tensor_result(result: object, name: str) -> torch.Tensor:
    if isinstance(result, torch.Tensor):
        return result
    if isinstance(result, np.ndarray):
        return torch.from_numpy(result)
    fail(f"{name} returns a {type(result).__name__}; return a tensor.")


def scalar_loss(result: object, name: str) -> torch.Tensor:
    """A loss must stay a one-number tensor that autograd can follow."""
    if isinstance(result, (int, float, np.number)):
        fail(f"{name} returns a plain number ({type(result).__name__}); return the tensor itself (no .item() or "
             "float()), so that loss.backward() can follow it.")
    loss = tensor_result(result, name)
    if loss.numel() != 1:
        fail(f"{name} returns a tensor of shape {tuple(loss.shape)}, not one number: sum (or average) it as the "
             "formula says.")
    if not loss.requires_grad:
        fail(f"{name}'s result has no gradient (it was detached, or rebuilt with torch.tensor or numpy): compute it "
             "from the inputs with torch operations only.")
    return loss.reshape(())


def number_result(result: object, name: str) -> float:
    if isinstance(result, torch.Tensor):
        result = result.detach().cpu().numpy()
    if isinstance(result, np.ndarray) and result.size == 1:
        return float(result.reshape(-1)[0])
    if isinstance(result, (int, float, np.number)) and not isinstance(result, bool):
        return float(result)
    size = f" of {result.size} values" if isinstance(result, np.ndarray) else ""
    fail(f"{name} returns {type(result).__name__}{size}; return one number.")


def close(a: Any, b: Any, rtol: float = 1e-5, atol: float = 1e-7) -> bool:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def matches(value: Any, *results: Any, rtol: float = 1e-5, atol: float = 1e-7) -> Test:
    """The test that ``value`` is one of the results a mistake can give (None: not applicable here)."""
    return lambda: any(result is not None and close(value, result, rtol, atol) for result in results)
