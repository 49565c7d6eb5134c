"""What every check shares: running a check apart from the notebook's state (``isolated``), calling the student's
function with what it prints captured and its inputs watched (``call``), turning what it returns into a tensor, a
loss or a number (``tensor_result``, ``scalar_loss``, ``number_result``), refusing the package's own ranking code in
a ranking answer (``refuse_ranking_helpers``), and walking a check's table of diagnoses (``fail_first``): a list of
(test, sentence) pairs in the order the mistakes are looked for, the first test that holds failing with its
sentence. ``matches`` makes the test "the student's result is the result of this mistake".

Two rules hold for every check. A right answer gets its marks: what the student's function prints, warns or writes
to stderr (a ``tqdm`` bar, say) is captured by ``call``, so the grade is the check's alone (nbgrader gives 0 to a
graded cell that writes to stderr). And no marks without the work: no failure sentence shows a value the function
must return (it names the mistake instead), every check runs the function on a second example after the first
(``fail_if_same`` catches a number copied from somewhere), and each chapter module reloads this one when it is itself
(re)loaded, so that the check cell's ``importlib.reload`` of the chapter module undoes a task cell's patch of a
helper here."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import numpy as np
import torch

__all__ = ["NOT_WRITTEN", "RANKING_HELPERS", "Check", "Diagnoses", "Test", "call", "close", "fail", "fail_first",
           "fail_if_same", "fail_same", "isolated", "matches", "name_of", "number_result", "passed", "quiet",
           "ranking_helper_used", "refuse_ranking_helpers", "scalar_loss", "tensor_result"]

NOT_WRITTEN = ("not written yet: fill in the function above (where it says # YOUR CODE HERE), run its cell, then this "
               "one.")
# the package's ranking code: what the top-K and NDCG tasks ask the student to write
RANKING_HELPERS = frozenset({"top_k_columns", "best_positions", "list_metrics", "ranking_metrics", "top_k",
                             "rank_movies"})

Check = Callable[[Any], None]  # a check: it takes the student's function, prints "Correct: ..." or raises
Test = Callable[[], object]  # one diagnosis's test: truthy when the student made that mistake
Diagnoses = Sequence[tuple[Test, str]]  # (test, sentence), in the order the mistakes are looked for


def isolated(check: Check) -> Check:
    """Run a check without touching the caller's random state (it seeds its own examples), and without warnings:
    nbgrader gives a check cell no points when anything reaches stderr, and a warning about the student's style
    (float() of a tensor that has a gradient, say) is not a wrong answer."""

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


def fail_if_same(got: Any, previous: Any, name: str) -> None:
    """Fail when a later example gives what an earlier, different one gave (``previous``; None for the first)."""
    if previous is not None and close(got, previous):
        fail_same(name)


def fail_same(name: str) -> NoReturn:
    fail(f"{name} returns the same value for a different example: compute the result from the inputs it is given, "
         "not from a number copied from somewhere.")


def name_of(function: object) -> str:
    return getattr(function, "__name__", "your function")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """What runs inside writes nowhere visible: stdout and stderr go to a buffer (a ``tqdm`` bar takes sys.stderr
    when it is created, so it goes there too), warnings are ignored, logging is off, and IPython's displays (a
    notebook ``tqdm`` widget) are captured."""
    previous = logging.root.manager.disable
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        stack.enter_context(_displays_captured())
        logging.disable(logging.CRITICAL)
        stack.callback(logging.disable, previous)
        yield


def _displays_captured() -> contextlib.AbstractContextManager[Any]:
    try:
        from IPython.utils.capture import capture_output
    except ImportError:  # no IPython: nothing displays
        return contextlib.nullcontext()
    return capture_output(stdout=False, stderr=False, display=True)


def call(function: object, *args: Any, names: str, may_change: str = "") -> Any:
    """The student's result, with what it prints captured, or the sentence for a blank function, one that raised,
    or one that changed an input (``names``: the arguments' names in the task's signature, one per argument;
    ``may_change``: those it is meant to change, as a training loop its model)."""
    if not callable(function):
        fail(f"expected the function you wrote, got {type(function).__name__}: pass the function itself, without "
             "calling it.")
    name = name_of(function)
    labels = names.split()
    kept = [None if label in may_change.split() else _kept(arg) for label, arg in zip(labels, args, strict=True)]
    try:
        with quiet():
            result = function(*args)
    except NotImplementedError:
        fail(NOT_WRITTEN)
    except Exception as error:  # one sentence about it, not a traceback through the check
        if isinstance(error, RuntimeError) and "shapes cannot be multiplied" in str(error):
            fail(f"{name} multiplies matrices of mismatched shapes ({error}): V is k x d and W is d x k as in the "
                 "paper, so the rows of r are encoded by r @ V.T and the codes decoded by code @ W.T.")
        fail(f"{name} raised {type(error).__name__}: {error}")
    changed = next((label for label, arg, copy in zip(labels, args, kept, strict=True)
                    if copy is not None and not _unchanged(arg, copy)), None)
    if changed is not None:
        fail(f"{name} changed its input {changed} in place (as writing -inf into scores, or prediction.clamp_(1, 5), "
             "would): work on a copy (.clone() of a tensor, .copy() of an array) and leave what you are given as it "
             "was.")
    if result is None:
        fail(NOT_WRITTEN)
    return result


def _kept(value: Any) -> Any:
    """A copy of an input to compare it with after the call (None: nothing the function could change)."""
    if isinstance(value, torch.nn.Module):
        return {key: tensor.detach().clone() for key, tensor in value.state_dict().items()}
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, np.ndarray):
        return value.copy()
    return None


def _unchanged(value: Any, kept: Any) -> bool:
    if isinstance(value, torch.nn.Module):
        now = value.state_dict()
        return now.keys() == kept.keys() and all(_unchanged(now[key], kept[key]) for key in kept)
    if isinstance(value, torch.Tensor):
        return value.shape == kept.shape and value.dtype == kept.dtype and torch.equal(value.detach(), kept)
    if isinstance(value, np.ndarray):
        return value.shape == kept.shape and value.dtype == kept.dtype and bool(np.array_equal(value, kept))
    return True


def refuse_ranking_helpers(function: object) -> None:
    """Fail when a ranking answer calls the package's ranking code (``RANKING_HELPERS``) instead of ranking."""
    helper = ranking_helper_used(function)
    if helper is not None:
        fail(f"write the ranking yourself: calling autorec_utils' {helper} is what the task asks you to build.")


def ranking_helper_used(function: object) -> str | None:
    """The first of the package's ranking helpers that ``function`` calls, looking through its code (nested
    functions and lambdas included), its closure, and the functions of its own module (the notebook) it calls."""
    seen: set[int] = set()
    todo = [function]
    while todo:
        current = todo.pop()
        code = getattr(current, "__code__", None)
        if not isinstance(code, types.CodeType) or id(code) in seen:
            continue
        seen.add(id(code))
        namespace = getattr(current, "__globals__", {})
        cells = [cell.cell_contents for cell in getattr(current, "__closure__", None) or () if _filled(cell)]
        used = [(name, namespace.get(name)) for name in _names(code)] + [(name_of(value), value) for value in cells]
        for name, target in used:
            if (helper := _helper(name, target)) is not None:
                return helper
            if isinstance(target, types.FunctionType) and target.__module__ == getattr(current, "__module__", None):
                todo.append(target)  # the student's own helper, defined beside the function: look into it too
    return None


def _names(code: types.CodeType) -> set[str]:
    """The global and attribute names a code object uses, its nested functions' and lambdas' included."""
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, types.CodeType):
            names |= _names(constant)
    return names


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018 (an empty cell raises)
    except ValueError:
        return False
    return True


def _helper(name: str, target: object) -> str | None:
    """The helper's name when ``name`` (bound to ``target`` in the function's globals, None when it is not a global:
    an attribute such as evaluate.top_k_columns) is one of the package's ranking helpers."""
    module = getattr(target, "__module__", None) or ""
    if callable(target) and module.startswith("autorec_utils") and name_of(target) in RANKING_HELPERS:
        return name_of(target)
    if name in RANKING_HELPERS and (target is None or module.startswith("autorec_utils")):
        return name
    return None


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
