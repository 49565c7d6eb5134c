"""The checks of the assignments (``autorec_assignments``): every check passes the correct code, says "not written
yet" for a blank function, and names each common mistake in its own sentence -- a check that cannot fail checks
nothing. Fast, and no nbgrader needed: the quick tier runs them. tests/test_assignments.py runs the notebooks."""

import ast
import copy
import importlib
import logging
import pkgutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from tqdm import tqdm

import autorec_assignments as checks
from autorec_utils import evaluate
from autorec_utils.evaluate import list_metrics, top_k_columns
from autorec_utils.evaluate import top_k_columns as ranker
from autorec_utils.matrix import RatingMatrix
from autorec_utils.model import AutoRec, autorec_objective
from autorec_utils.recommend import best_positions
from autorec_utils.topn import EASE, multinomial_loss
from autorec_utils.train import DenseProblem, fit

ROOT = Path(__file__).resolve().parent.parent
NOT_WRITTEN = "not written yet"


def blank(*args):
    """The student version of every task: a docstring and a comment."""


def not_implemented(*args):
    raise NotImplementedError


# ---------------------------------------------------------------- the correct code and the common mistakes

def forward_pass(r, V, mu, W, b, g=torch.sigmoid):
    return g(r @ V.T + mu) @ W.T + b


def masked_objective(model, prediction, target, mask, l2):
    error = torch.where(mask, prediction - target, 0.0).square().sum()
    return error + l2 / 2 * (model.encoder.weight.square().sum() + model.decoder.weight.square().sum())


def masked_rmse(prediction, ratings, mask):
    return (prediction.clamp(1, 5) - ratings)[mask].square().mean().sqrt().item()


def training_loop(model, ratings, fit_mask, l2, lr, epochs, *, zero_grad=True, inputs_masked=True, late=False, step=True,
                  fresh=False, penalty=0.5, loss_mask=None):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    inputs = ratings * fit_mask if inputs_masked else ratings
    fit_mask = fit_mask if loss_mask is None else loss_mask(ratings, fit_mask)
    losses = []
    for _ in range(epochs):
        if fresh:
            optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        if zero_grad:
            optimizer.zero_grad()
        loss = torch.where(fit_mask, model(inputs) - ratings, 0.0).square().sum() + penalty * l2 * model.weight_norm()
        loss.backward()
        if step:
            optimizer.step()
        if late:
            with torch.no_grad():
                loss = torch.where(fit_mask, model(inputs) - ratings, 0.0).square().sum() + penalty * l2 * model.weight_norm()
        losses.append(loss.item())
    return losses


def top_k_unrated(scores, rated, unknown, k):
    candidates = np.flatnonzero(~rated & ~unknown)
    order = np.argsort(-scores[candidates], kind="stable")
    return candidates[order[:k]]


def ndcg_at_k(scores, candidate, relevant, k, *, everybody=False, ideal_all=False, no_ideal=False, exclude=True,
              fill=-np.inf, by_size=False, sort=lambda row: np.argsort(-row, kind="stable")):
    discount = 1 / np.log2(np.arange(2, scores.shape[1] + 2))  # position j (from 1) counts 1/log2(j + 1)
    values = []
    for user in range(len(scores)):
        n_relevant = int(relevant[user].sum())
        if n_relevant == 0:
            if everybody:
                values.append(0.0)
            continue
        row = np.abs(scores[user]) if by_size else scores[user]
        row = np.where(candidate[user], row, fill) if exclude else row
        top = sort(row)[:k]
        dcg = (relevant[user, top] * discount[: len(top)]).sum()
        ideal = discount[: n_relevant if ideal_all else min(k, n_relevant)].sum()
        values.append(dcg if no_ideal else dcg / ideal)
    return float(np.mean(values))


def stable_top(row, k):
    """A row's k highest scores, best first, ties to the lower column (the package's top_k_columns, written out)."""
    return np.argsort(-row, kind="stable")[:k]


def multinomial_nll(logits, picked):
    return -(torch.log_softmax(logits, dim=1) * picked).sum(dim=1).mean()


def ease_weights(X, l2):
    P = torch.linalg.inv(X.T @ X + l2 * torch.eye(X.shape[1]))
    B = -P / P.diagonal()
    B.fill_diagonal_(0.0)
    return B


CASES = {  # check -> (the correct function, [(a mistaken function, words of the sentence it must get)])
    "check_forward_pass": (forward_pass, [
        (lambda r, V, mu, W, b, g=torch.sigmoid: (r @ V.T + mu) @ W.T + b, "g is missing"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: g(g(r @ V.T + mu) @ W.T + b), "output went through g"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: g(r @ V.T) @ W.T + b, "mu is missing"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: g(r @ V.T + mu) @ W.T, "b is missing"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: torch.sigmoid(r @ V.T + mu) @ W.T + b, "ignores its argument g"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: g(r @ W + mu) @ V + b, "encoder and the decoder are swapped"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: g(r @ V + mu) @ W + b, "mismatched shapes"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: (g(r @ V.T + mu) @ W.T + b).T, "the transpose"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: g(r @ V.T + mu), "hidden code"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: (g(r @ V.T + mu) @ W.T + b).numpy().tolist(), "return a tensor"),
        (lambda r, V, mu, W, b, g=torch.sigmoid: g(r @ V.T + mu) @ W.T + 2 * b, "differs from AutoRec's forward pass"),
    ]),
    "check_masked_objective": (masked_objective, [
        (lambda m, p, t, mask, l2: (p - t).square().sum() + l2 / 2 * m.weight_norm(), "mask is ignored"),
        (lambda m, p, t, mask, l2: (p * mask - t).square().sum() + l2 / 2 * m.weight_norm(), "mask is ignored"),
        (lambda m, p, t, mask, l2: (p - t)[mask].square().sum() + l2 * m.weight_norm(), "λ/2 is missing"),
        (lambda m, p, t, mask, l2: (p - t)[mask].square().sum(), "penalty is missing"),
        (lambda m, p, t, mask, l2: (p - t)[mask].square().sum() + l2 / 2 * sum(q.square().sum() for q in m.parameters()),
         "biases are in the penalty"),
        (lambda m, p, t, mask, l2: (p - t)[mask].square().sum() + l2 * sum(q.square().sum() for q in m.parameters()),
         "missing and the biases"),
        (lambda m, p, t, mask, l2: (p - t)[mask].square().mean() + l2 / 2 * m.weight_norm(), "averaged (a mean)"),
        (lambda m, p, t, mask, l2: torch.where(mask, p - t, 0.0).square().mean() + l2 / 2 * m.weight_norm(),
         "unobserved ones included"),
        (lambda m, p, t, mask, l2: (p - t)[mask].abs().sum() + l2 / 2 * m.weight_norm(), "not squared"),
        (lambda m, p, t, mask, l2: (p - t)[mask].square().sum() + l2 / 2 * (m.encoder.weight.norm() + m.decoder.weight.norm()),
         "norms are not squared"),
        (lambda m, p, t, mask, l2: (p - t)[mask].square().sum() + l2 / 2 * m.decoder.weight.square().sum(),
         "one weight matrix is missing"),
        (lambda m, p, t, mask, l2: ((p - t)[mask].square().sum() + l2 / 2 * m.weight_norm()).item(), "plain number"),
        (lambda m, p, t, mask, l2: ((p - t)[mask].square().sum() + l2 / 2 * m.weight_norm()).detach(), "has no gradient"),
        (lambda m, p, t, mask, l2: torch.where(mask, p - t, 0.0).square().sum(dim=1) + l2 / 2 * m.weight_norm(),
         "not one number"),
        (lambda m, p, t, mask, l2: (p - t)[mask].square().sum() + l2 / 2 * m.weight_norm().item(), "not its gradient"),
    ]),
    "check_masked_rmse": (masked_rmse, [
        (lambda p, r, mask: (p - r)[mask].square().mean().sqrt(), "not clipped"),
        (lambda p, r, mask: (p.clamp(1, 5) - r).square().mean().sqrt(), "mask is ignored"),
        (lambda p, r, mask: (p.clamp(1, 5) - r)[mask].square().mean(), "root is missing"),
        (lambda p, r, mask: (p.clamp(1, 5) - r)[mask].square().sum().sqrt(), "summed, not averaged"),
        (lambda p, r, mask: (p.clamp(1, 5) - r)[mask].abs().mean(), "which is not the RMSE on the masked entries"),
        (lambda p, r, mask: (p.clamp(1, 5) - r)[mask], "return one number"),
    ]),
    "check_training_loop": (training_loop, [
        (lambda *a: training_loop(*a, zero_grad=False), "zero_grad"),
        (lambda *a: training_loop(*a, inputs_masked=False), "read the held-back ratings"),
        (lambda *a: training_loop(*a, late=True), "one epoch late"),
        (lambda *a: training_loop(*a, step=False), "weights did not change"),
        (lambda *a: training_loop(*a, fresh=True), "created anew in every epoch"),
        (lambda *a: training_loop(*a, penalty=1.0), "λ/2 is missing"),
        (lambda *a: training_loop(*a, penalty=0.0), "penalty is missing"),
        (lambda *a: training_loop(*a)[:-1], "5 losses for 6 epochs"),
        (lambda *a: sum(training_loop(*a)), "returns one number"),
        (lambda *a: training_loop(*a, loss_mask=lambda ratings, fit_mask: ratings > 0), "counts the held-back ratings"),
        (lambda model, ratings, fit_mask, l2, lr, epochs: training_loop(model, ratings, ratings > 0, l2, lr, epochs),
         "used, in the input and in the loss"),
        (lambda *a: training_loop(*a, loss_mask=lambda ratings, fit_mask: torch.ones_like(fit_mask)),
         "mask is missing from the loss"),
        (lambda model, ratings, fit_mask, l2, lr, epochs: training_loop(
            model, ratings, torch.ones_like(fit_mask), l2, lr, epochs), "no mask at all"),
        (lambda model, ratings, fit_mask, l2, lr, epochs: training_loop(copy.deepcopy(model), ratings, fit_mask, l2, lr,
                                                                        epochs), "weights did not change"),
        (lambda model, ratings, fit_mask, l2, lr, epochs: _sgd_loop(model, ratings, fit_mask, l2, lr, epochs), "not Adam"),
        (lambda model, ratings, fit_mask, l2, lr, epochs: training_loop(model, ratings, fit_mask, l2, 2 * lr, epochs),
         "drift"),
        (lambda model, ratings, fit_mask, l2, lr, epochs: _restores_first(model, ratings, fit_mask, l2, lr, epochs),
         "does not hold the weights after the last step"),
    ]),
    "check_top_k_unrated": (top_k_unrated, [
        (lambda s, rated, unknown, k: np.argsort(-np.where(unknown, -np.inf, s), kind="stable")[:k], "already rated"),
        (lambda s, rated, unknown, k: np.argsort(-np.where(rated, -np.inf, s), kind="stable")[:k], "'unknown' title"),
        (lambda s, rated, unknown, k: stable_top(np.where(rated | unknown, 0.0, s), k), "score of 0"),
        (lambda s, rated, unknown, k: top_k_unrated(s, rated, unknown, k)[::-1], "worst first"),
        (lambda s, rated, unknown, k: np.flatnonzero(~rated & ~unknown)[np.argsort(s[~rated & ~unknown])[::-1][:k]],
         "ties are broken differently"),
        (lambda s, rated, unknown, k: np.argsort(-np.where(rated | unknown, -1e9, s), kind="stable")[:k], "padding"),
        (lambda s, rated, unknown, k: np.argsort(-s[~rated & ~unknown], kind="stable")[:k], "positions among the candidates"),
        (lambda s, rated, unknown, k: top_k_unrated(s, rated, unknown, k)[: k - 1], "it should have 3"),
        (lambda s, rated, unknown, k: np.isin(np.arange(len(s)), top_k_unrated(s, rated, unknown, k)), "yes/no per movie"),
        (lambda s, rated, unknown, k: s[top_k_unrated(s, rated, unknown, k)], "returns the scores"),
        (lambda s, rated, unknown, k: np.sort(top_k_unrated(s, rated, unknown, k)), "wrong order"),
        (lambda s, rated, unknown, k: np.flatnonzero(~rated & ~unknown)[:k], "highest-scoring candidates"),
        (lambda s, rated, unknown, k: np.flatnonzero(~rated & ~unknown)[np.argsort(-s[~rated & ~unknown])[:k]],
         "ties are broken differently"),  # numpy's default sort: stable on short rows only
        (lambda s, rated, unknown, k: np.flatnonzero(~rated & ~unknown)[
            torch.topk(torch.from_numpy(s[~rated & ~unknown]), min(k, int((~rated & ~unknown).sum()))).indices.numpy()],
         "ties are broken differently"),
    ]),
    "check_ndcg_at_k": (ndcg_at_k, [
        (lambda *a: ndcg_at_k(*a, everybody=True), "no relevant movie were averaged in"),
        (lambda *a: ndcg_at_k(*a, ideal_all=True), "ideal DCG must stop at position k"),
        (lambda *a: ndcg_at_k(*a, no_ideal=True), "not normalised"),
        (lambda *a: ndcg_at_k(*a, exclude=False), "already rated were ranked"),
        (lambda s, c, r, k: float(np.mean([((r[u, stable_top(np.where(c[u], s[u], -np.inf), k)]
                                              / np.arange(1, k + 1)).sum() / (1 / np.arange(1, min(k, r[u].sum()) + 1)).sum())
                                             for u in range(len(s)) if r[u].any()])), "not 1/rank"),
        (lambda s, c, r, k: float(np.mean([((r[u, stable_top(np.where(c[u], s[u], -np.inf), k)]
                                              / np.log2(np.arange(3, k + 3))).sum()
                                             / (1 / np.log2(np.arange(3, min(k, r[u].sum()) + 3))).sum())
                                            for u in range(len(s)) if r[u].any()])), "off by one"),
        (lambda s, c, r, k: float(np.mean([((r[u, stable_top(np.where(c[u], s[u], -np.inf), k)]
                                              / np.log2(np.arange(2, k + 2))).sum() / (1 / np.log2(np.arange(2, k + 2))).sum())
                                            for u in range(len(s)) if r[u].any()])), "assumes k relevant movies"),
        (lambda s, c, r, k: ndcg_at_k(s[:, ::-1], c[:, ::-1], r[:, ::-1], k), "ties are broken differently"),
        (lambda s, c, r, k: ndcg_at_k(s, c, r, k + 1), "which is not the mean NDCG@3"),
        (lambda *a: ndcg_at_k(*a, fill=0.0), "non-candidates were scored 0"),
        (lambda *a: ndcg_at_k(*a, fill=-1.0), "instead of left out"),  # above every log-probability, like 0
        (lambda *a: ndcg_at_k(*a, by_size=True), "on all-negative scores"),
        (lambda *a: ndcg_at_k(*a, sort=lambda row: np.argsort(-row)), "an unstable sort among tied scores"),
        (lambda *a: ndcg_at_k(*a, sort=lambda row: torch.topk(torch.from_numpy(row), len(row)).indices.numpy()),
         "an unstable sort among tied scores"),
    ]),
    "check_multinomial_nll": (multinomial_nll, [
        (lambda logits, x: (torch.log_softmax(logits, 1) * x).sum(1).mean(), "sign is flipped"),
        (lambda logits, x: -(torch.softmax(logits, 1) * x).sum(1).mean(), "softmax was used"),
        (lambda logits, x: -(logits * x).sum(1).mean(), "logits were used as log-probabilities"),
        (lambda logits, x: -(torch.log_softmax(logits, 0) * x).sum(1).mean(), "dim=0"),
        (lambda logits, x: -(torch.log_softmax(logits, 1) * x).sum(), "summed over the users"),
        (lambda logits, x: -(torch.log_softmax(logits, 1) * x).mean(), "averaged over the movies as well"),
        (lambda logits, x: -torch.log_softmax(logits, 1).sum(1).mean(), "every movie's log-probability"),
        (lambda logits, x: -((torch.log_softmax(logits, 1) * x).sum(1) / x.sum(1)).mean(), "number of picks"),
        (lambda logits, x: -(torch.log_softmax(logits, 1) * x).sum(1), "not one number"),
        (lambda logits, x: -(torch.log_softmax(logits, 1) * x).sum(1).mean().item(), "plain number"),
        (lambda logits, x: F.binary_cross_entropy_with_logits(logits, x), "which is not -sum_i x_i log softmax"),
    ]),
    "check_ease_weights": (ease_weights, [
        (lambda X, l2: _ease(X.T @ X), "λ is missing"),
        (lambda X, l2: _ease(X.T @ X + l2), "added to every entry"),
        (lambda X, l2: _ease(X.T @ X + l2 * torch.eye(X.shape[1]), by_row=True), "wrong diagonal element"),
        (lambda X, l2: ease_weights(X, l2).T, "wrong diagonal element"),
        (lambda X, l2: -ease_weights(X, l2), "sign is wrong"),
        (lambda X, l2: _ease(X.T @ X + l2 * torch.eye(X.shape[1]), zero=False), "diagonal of B is not zero"),
        (lambda X, l2: torch.linalg.solve(X.T @ X + l2 * torch.eye(X.shape[1]), X.T @ X), "ridge regression"),
        (lambda X, l2: ease_weights(X.T, l2), "users x users"),
        (lambda X, l2: ease_weights(X, l2)[:, :-1], "must be movies x movies"),
        (lambda X, l2: ease_weights(X, 2 * l2), "B differs from EASE's"),
        (lambda X, l2: ease_weights(X, l2) + torch.eye(X.shape[1]) * 0.5, "diagonal of B is not zero"),
    ]),
}


def _sgd_loop(model, ratings, fit_mask, l2, lr, epochs):
    optimizer, losses = torch.optim.SGD(model.parameters(), lr=lr), []
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.where(fit_mask, model(ratings * fit_mask) - ratings, 0.0).square().sum() + l2 / 2 * model.weight_norm()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _restores_first(model, ratings, fit_mask, l2, lr, epochs):
    first = copy.deepcopy(model.state_dict())
    losses = training_loop(model, ratings, fit_mask, l2, lr, epochs)
    model.load_state_dict(first)
    with torch.no_grad():
        model.decoder.bias.add_(0.01)  # still "changed", but not the trained weights
    return losses


def _ease(matrix, by_row=False, zero=True):
    P = torch.linalg.inv(matrix)
    B = -(P / P.diagonal()[:, None] if by_row else P / P.diagonal())
    return B - torch.diag(B.diagonal()) if zero else B


MISTAKES = [(name, function, words) for name, (_, mistakes) in CASES.items() for function, words in mistakes]


@pytest.mark.parametrize("name", sorted(CASES))
def test_check_passes_the_correct_code(name, capsys):
    getattr(checks, name)(CASES[name][0])
    assert capsys.readouterr().out.startswith("Correct: ")


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("function", [blank, not_implemented], ids=["returns None", "raises NotImplementedError"])
def test_check_says_a_blank_is_not_written_yet(name, function):
    with pytest.raises(AssertionError) as failed:
        getattr(checks, name)(function)
    assert str(failed.value) == checks.NOT_WRITTEN


@pytest.mark.parametrize(("name", "function", "words"), MISTAKES,
                         ids=[f"{name}-{i}-{words}" for i, (name, _, words) in enumerate(MISTAKES)])
def test_check_names_the_mistake(name, function, words):
    with pytest.raises(AssertionError) as failed:
        getattr(checks, name)(function)
    sentence = str(failed.value)
    assert words in sentence, sentence
    assert "\n" not in sentence and sentence.endswith("."), sentence  # one sentence, said plainly


def test_a_passing_check_writes_nothing_to_stderr(capfd):
    """nbgrader gives a check cell no points when anything reaches stderr: a warning from correct code must not."""
    def noisy_loop(model, ratings, fit_mask, l2, lr, epochs):
        warnings.warn("a student's own warning", UserWarning, stacklevel=1)
        return [torch.tensor(loss, requires_grad=True) for loss in training_loop(model, ratings, fit_mask, l2, lr, epochs)]

    checks.check_training_loop(noisy_loop)
    out, err = capfd.readouterr()
    assert out.startswith("Correct: ") and err == ""


def test_a_check_says_what_an_exception_was():
    def broken(*args):
        raise KeyError("user 7")

    with pytest.raises(AssertionError, match="raised KeyError: 'user 7'"):
        checks.check_top_k_unrated(broken)
    with pytest.raises(AssertionError, match="pass the function itself"):
        checks.check_ease_weights(ease_weights(torch.ones(3, 3), 1.0))


def test_checks_leave_the_random_state_alone():
    torch.manual_seed(123)
    np.random.seed(123)
    expected = torch.rand(3), np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    for name, (function, _) in CASES.items():
        getattr(checks, name)(function)
    assert torch.equal(torch.rand(3), expected[0]) and np.array_equal(np.random.rand(3), expected[1])


def _grader_modules():
    return {info.name: importlib.import_module(f"autorec_assignments.{info.name}")
            for info in pkgutil.iter_modules(checks.__path__)}


def test_every_module_has_all_and_the_package_re_exports_every_check():
    """The checks live in one module per chapter (and common.py); the notebooks import them from the package."""
    modules = _grader_modules()
    assert {"common", "chapter02", "chapter03", "chapter04", "chapter06"} <= set(modules)
    for name, module in [("__init__", checks), *modules.items()]:
        assert isinstance(getattr(module, "__all__", None), list), f"autorec_assignments/{name}.py has no __all__"
        assert all(hasattr(module, export) for export in module.__all__), name
    defined = {export: getattr(module, export) for module in modules.values() for export in module.__all__
               if export.startswith("check_")}
    assert set(defined) == set(CASES)  # and each is tested above
    assert set(checks.__all__) == {*defined, "NOT_WRITTEN"}
    assert all(getattr(checks, name) is check for name, check in defined.items())


def test_no_grader_module_imports_a_private_name():
    for path in Path(checks.__file__).parent.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in (node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)):
            if node.level or (node.module or "").startswith("autorec_assignments"):  # from one of the grader's modules
                assert not [alias.name for alias in node.names if alias.name.startswith("_")], path.name


# ---------------------------------------------------------------- a right answer always gets its marks

def test_what_the_function_prints_warns_or_logs_does_not_change_the_grade(capfd):
    """nbgrader gives 0 to a graded cell that writes to stderr: a right loop with a tqdm bar, prints, a warning and a
    log line still passes, and the cell shows the check's line only."""
    def chatty_loop(model, ratings, fit_mask, l2, lr, epochs):
        print("training...")
        print("to stderr", file=sys.stderr)
        warnings.warn("a student's own warning", UserWarning, stacklevel=1)
        logging.getLogger("student").warning("a log line")
        optimizer, losses = torch.optim.Adam(model.parameters(), lr=lr), []
        for _ in tqdm(range(epochs), desc="epochs"):  # tqdm writes to sys.stderr
            optimizer.zero_grad()
            loss = torch.where(fit_mask, model(ratings * fit_mask) - ratings, 0.0).square().sum() + l2 / 2 * model.weight_norm()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses

    checks.check_training_loop(chatty_loop)
    out, err = capfd.readouterr()
    assert err == "" and out.startswith("Correct: ") and out.count("\n") == 1, (out, err)


def test_a_failing_check_shows_only_its_sentence(capfd):
    def chatty_and_wrong(prediction, ratings, mask):
        print("my rmse", file=sys.stderr)
        return 1.0

    with pytest.raises(AssertionError):
        checks.check_masked_rmse(chatty_and_wrong)
    assert capfd.readouterr() == ("", "")


# ---------------------------------------------------------------- no marks without the work

def _module_of(check):
    return {"check_forward_pass": "chapter02", "check_masked_objective": "chapter02", "check_masked_rmse": "chapter03",
            "check_training_loop": "chapter03", "check_top_k_unrated": "chapter04", "check_ndcg_at_k": "chapter04",
            "check_multinomial_nll": "chapter06", "check_ease_weights": "chapter06"}[check]


def check_cell(check, function="answer"):
    """The solutions' check cell: the chapter module reloaded, so that what a task cell replaced is read anew."""
    return (f"import importlib\nimport autorec_assignments.{_module_of(check)} as checks\n"
            f"checks = importlib.reload(checks)\nchecks.{check}({function})\n")


@pytest.fixture
def fresh_grader():
    """After a test that reloads grader modules or patches them: every module read anew, and the package's
    re-exports pointing at the checks again (as a fresh kernel would have them)."""
    yield
    sys.modules["autorec_assignments"].common = sys.modules["autorec_assignments.common"]
    for module in ("chapter02", "chapter03", "chapter04", "chapter06"):
        importlib.reload(sys.modules[f"autorec_assignments.{module}"])
    importlib.reload(checks)


PATCHES = {  # what a task cell may do to get the marks without the work
    "the package's check replaced": "import autorec_assignments\nautorec_assignments.{check} = lambda f: print('Correct')",
    "the chapter's check replaced": ("import autorec_assignments.{module} as m\n"
                                     "m.{check} = lambda f: print('Correct')"),
    "fail and fail_first disarmed": ("import autorec_assignments.common as c\nc.fail = lambda sentence: None\n"
                                     "c.fail_first = lambda diagnoses: None"),
    "close always true, call a constant": ("import autorec_assignments.common as c\n"
                                           "c.close = lambda *a, **k: True\nc.call = lambda *a, **k: 0.5"),
    "isolated replaced": "import autorec_assignments.common as c\nc.isolated = lambda check: lambda f: print('Correct')",
    "common replaced on the package": ("import types, autorec_assignments\nfake = types.ModuleType('fake')\n"
                                       "autorec_assignments.common = fake"),
}


@pytest.mark.parametrize("check", sorted(CASES))
@pytest.mark.parametrize("patch", sorted(PATCHES))
def test_a_task_cell_that_patches_the_grader_gets_no_marks(check, patch, fresh_grader, capsys):
    task_cell = PATCHES[patch].format(check=check, module=_module_of(check))
    wrong = CASES[check][1][0][0]
    for function, sentence in ((blank, NOT_WRITTEN), (wrong, None)):
        namespace = {"__name__": "__main__", "answer": function}
        exec(task_cell, namespace)
        with pytest.raises(AssertionError) as failed:
            exec(check_cell(check), namespace)
        assert sentence is None or str(failed.value) == checks.NOT_WRITTEN
        assert "Correct" not in capsys.readouterr().out
    namespace = {"__name__": "__main__", "answer": CASES[check][0]}
    exec(task_cell + "\n" + check_cell(check), namespace)  # and the right answer still passes
    assert capsys.readouterr().out.startswith("Correct: ")


def _no_penalty_loop(*args):
    return training_loop(*args, penalty=0.0)


PACKAGE_PATCHES = [  # (what is patched, to what, the check, a wrong answer it must still fail)
    ("autorec_utils.model.AutoRec.weight_norm", lambda self: torch.zeros(()), "check_training_loop", _no_penalty_loop),
    ("autorec_utils.model.AutoRec.weight_norm", lambda self: torch.zeros(()), "check_masked_objective",
     lambda m, p, t, mask, l2: (p - t)[mask].square().sum() + l2 / 2 * m.weight_norm()),
    ("autorec_utils.train.fit", lambda *a, **k: None, "check_training_loop", _no_penalty_loop),
    ("autorec_utils.model.autorec_objective", lambda *a: torch.zeros((), requires_grad=True), "check_masked_objective",
     lambda *a: torch.zeros((), requires_grad=True)),
    ("autorec_utils.evaluate.list_metrics", lambda *a, **k: {"NDCG@3": 0.5, "NDCG@5": 0.5}, "check_ndcg_at_k",
     lambda *a: 0.5),
    ("autorec_utils.evaluate.top_k_columns", lambda scores, k: np.atleast_2d(np.arange(k)), "check_top_k_unrated",
     lambda s, rated, unknown, k: np.arange(k)),
    ("autorec_utils.recommend.best_positions", lambda scores, keep, k: np.arange(k), "check_top_k_unrated",
     lambda s, rated, unknown, k: np.arange(k)),
    ("autorec_utils.topn.multinomial_loss", lambda logits, picked: logits.sum(), "check_multinomial_nll",
     lambda logits, picked: logits.sum()),
]


@pytest.mark.parametrize(("target", "replacement", "check", "wrong"), PACKAGE_PATCHES,
                         ids=[f"{target}-{check}" for target, _, check, _ in PACKAGE_PATCHES])
def test_patching_the_package_cannot_move_the_reference(target, replacement, check, wrong, monkeypatch):
    monkeypatch.setattr(target, replacement)
    with pytest.raises(AssertionError):
        getattr(checks, check)(wrong)


def _expected_values():
    """check -> the values the function must return on each example: numbers, or a top-k list's repr."""
    ch02, ch03, ch04, ch06 = (importlib.import_module(f"autorec_assignments.chapter{n}") for n in ("02", "03", "04", "06"))
    objectives = [(ch02._objective(*e[:4], 0.0).detach(), ch02._objective(*e).detach()) for e in ch02._objective_examples()]
    return {
        "check_forward_pass": [v for e in ch02._forward_examples() for g in (torch.sigmoid, F.elu)
                               for v in ch02._forward(e, g).flatten().tolist()],
        "check_masked_objective": [v.item() for pair in objectives for v in pair],
        "check_masked_rmse": [ch03._rmse(*e) for e in ch03._rmse_examples()],
        "check_training_loop": [v for e in ch03._loop_examples() for v in ch03._reference_loop(e)[0]],
        "check_top_k_unrated": [str(ch04._best(s, ~r & ~u, k).tolist()) for _, s, r, u, k in ch04._top_k_cases()],
        "check_ndcg_at_k": [ch04._ndcg_variant(*e) for e in ch04._ndcg_examples()],
        "check_multinomial_nll": [float(ch06._multinomial(*e)) for e in ch06._picks_examples()],
        "check_ease_weights": [v for X, l2 in ch06._ease_examples()
                               for v in ch06._closed_form(X.double().T @ X.double() + l2 * torch.eye(X.shape[1],
                                                          dtype=torch.float64)).flatten().tolist()],
    }


def _spellings(value):
    if isinstance(value, str):
        return {value}
    if abs(value) < 1e-3:  # a zero (EASE's diagonal) is spelt in every sentence
        return set()
    return {f"{value:.{digits}{kind}}" for digits in range(3, 7) for kind in "gf"}


def test_no_failure_sentence_shows_a_value_the_function_must_return():
    expected = _expected_values()
    for name, function, _ in MISTAKES + MUTATIONS + CONSTANTS:
        with pytest.raises(AssertionError) as failed:
            getattr(checks, name)(function)
        sentence = str(failed.value)
        leaked = {spelling for value in expected[name] for spelling in _spellings(value) if spelling in sentence}
        assert not leaked, f"{name}: {sentence!r} shows {leaked}"


def _constants():
    """Functions that return what the first example must give (a number copied from an old failure sentence)."""
    expected = _expected_values()
    return [
        ("check_masked_rmse", lambda *a: 1.33555, "same value for a different example"),
        ("check_masked_rmse", lambda *a: expected["check_masked_rmse"][0], "same value for a different example"),
        ("check_ndcg_at_k", lambda *a: expected["check_ndcg_at_k"][0], "same value for a different example"),
        ("check_multinomial_nll",
         lambda *a: torch.tensor(expected["check_multinomial_nll"][0], requires_grad=True),
         "same value for a different example"),
        ("check_masked_objective",
         lambda m, p, t, mask, l2: torch.tensor(expected["check_masked_objective"][0 if l2 == 0 else 1], requires_grad=True),
         "not its gradient"),
        ("check_top_k_unrated", lambda s, *a: np.array([9, 4, 8])[: len(s)], ""),
        ("check_training_loop",
         lambda model, *a: (training_loop(model, *a), expected["check_training_loop"][:6])[1], "6 losses for 4 epochs"),
        ("check_forward_pass", lambda r, *a: torch.zeros(3, 5) if len(r) == 3 else None, ""),
    ]


CONSTANTS = _constants()


@pytest.mark.parametrize(("name", "function", "words"), CONSTANTS,
                         ids=[f"{name}-{i}" for i, (name, _, _) in enumerate(CONSTANTS)])
def test_a_copied_constant_gets_no_marks(name, function, words):
    with pytest.raises(AssertionError) as failed:
        getattr(checks, name)(function)
    assert words in str(failed.value)


def _top_k_by_helper(s, rated, unknown, k):
    return best_positions(s, ~rated & ~unknown, k)


def _top_k_by_nested_helper(s, rated, unknown, k):
    def rank(row):
        return top_k_columns(row, k)[0]

    listed = rank(np.where(rated | unknown, -np.inf, s))
    return listed[: int((~rated & ~unknown).sum())]


def _with_closure():
    helper = best_positions
    return lambda s, rated, unknown, k: helper(s, ~rated & ~unknown, k)


def top_k(row, k):  # a student's own helper may share a name with the package's
    return np.argsort(-row, kind="stable")[:k]


REFUSED = [
    ("check_top_k_unrated", lambda s, rated, unknown, k: best_positions(s, ~rated & ~unknown, k), "best_positions"),
    ("check_top_k_unrated", lambda s, rated, unknown, k: _top_k_by_helper(s, rated, unknown, k), "best_positions"),
    ("check_top_k_unrated", _top_k_by_nested_helper, "top_k_columns"),
    ("check_top_k_unrated", lambda s, rated, unknown, k: ranker(np.where(rated | unknown, -np.inf, s), k)[0][
        : int((~rated & ~unknown).sum())], "top_k_columns"),
    ("check_top_k_unrated", lambda s, rated, unknown, k: evaluate.top_k_columns(
        np.where(rated | unknown, -np.inf, s), k)[0][: int((~rated & ~unknown).sum())], "top_k_columns"),
    ("check_top_k_unrated", _with_closure(), "best_positions"),
    ("check_ndcg_at_k", lambda s, c, r, k: list_metrics(s, c, r, k)[f"NDCG@{k}"], "list_metrics"),
    ("check_ndcg_at_k", lambda s, c, r, k: ndcg_at_k(s, c, r, k, sort=lambda row: top_k_columns(row, len(row))[0]),
     "top_k_columns"),
]


@pytest.mark.parametrize(("name", "function", "helper"), REFUSED, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(REFUSED)])
def test_a_ranking_built_on_the_package_s_helpers_is_refused(name, function, helper):
    with pytest.raises(AssertionError) as failed:
        getattr(checks, name)(function)
    assert str(failed.value) == (f"write the ranking yourself: calling autorec_utils' {helper} is what the task asks "
                                 "you to build.")


def test_a_student_s_own_helper_named_like_the_package_s_is_not_refused(capsys):
    checks.check_top_k_unrated(lambda s, rated, unknown, k: np.flatnonzero(~rated & ~unknown)[
        top_k(s[~rated & ~unknown], k)])
    assert capsys.readouterr().out.startswith("Correct: ")


# ---------------------------------------------------------------- the missing cases

def _forward_zeroing_r(r, V, mu, W, b, g=torch.sigmoid):
    out = forward_pass(r, V, mu, W, b, g)
    r.zero_()
    return out


def _objective_zeroing_target(model, prediction, target, mask, l2):
    target[~mask] = 0.0  # "the unobserved entries do not count", written into the caller's tensor
    return masked_objective(model, prediction, target, mask, l2)


def _objective_zeroing_a_bias(model, prediction, target, mask, l2):
    with torch.no_grad():
        model.decoder.bias.zero_()
    return masked_objective(model, prediction, target, mask, l2)


def _rmse_clamping_in_place(prediction, ratings, mask):
    prediction.clamp_(1, 5)
    return (prediction - ratings)[mask].square().mean().sqrt().item()


def _loop_zeroing_the_ratings(model, ratings, fit_mask, l2, lr, epochs):
    ratings *= fit_mask  # the held-back ratings zeroed in the caller's tensor
    return training_loop(model, ratings, fit_mask, l2, lr, epochs)


def _top_k_writing_inf(scores, rated, unknown, k):
    scores[rated | unknown] = -np.inf
    return np.argsort(-scores, kind="stable")[: min(k, int((~rated & ~unknown).sum()))]


def _ndcg_writing_inf(scores, candidate, relevant, k):
    scores[~candidate] = -np.inf
    return ndcg_at_k(scores, candidate, relevant, k)


def _nll_shifting_the_logits(logits, picked):
    with torch.no_grad():
        logits -= logits.max(dim=1, keepdim=True).values  # "for numerical stability", in place
    return multinomial_nll(logits, picked)


def _ease_clearing_x(X, l2):
    B = ease_weights(X, l2)
    X.zero_()
    return B


MUTATIONS = [  # (check, a right answer that changes an input, the sentence's words)
    ("check_forward_pass", _forward_zeroing_r, "changed its input r "),
    ("check_masked_objective", _objective_zeroing_target, "changed its input target "),
    ("check_masked_objective", _objective_zeroing_a_bias, "changed its input model "),
    ("check_masked_rmse", _rmse_clamping_in_place, "changed its input prediction "),
    ("check_training_loop", _loop_zeroing_the_ratings, "changed its input ratings "),
    ("check_top_k_unrated", _top_k_writing_inf, "changed its input scores "),
    ("check_ndcg_at_k", _ndcg_writing_inf, "changed its input scores "),
    ("check_multinomial_nll", _nll_shifting_the_logits, "changed its input logits "),
    ("check_ease_weights", _ease_clearing_x, "changed its input X "),
]


@pytest.mark.parametrize(("name", "function", "words"), MUTATIONS, ids=[f"{n}-{w}" for n, _, w in MUTATIONS])
def test_a_function_that_changes_its_inputs_fails(name, function, words):
    with pytest.raises(AssertionError) as failed:
        getattr(checks, name)(function)
    assert words in str(failed.value) and "work on a copy" in str(failed.value)


def test_every_check_watches_its_inputs():
    assert {name for name, _, _ in MUTATIONS} == set(CASES)


def test_the_ndcg_examples_have_negative_scores_non_candidates_and_long_ties():
    ch04 = importlib.import_module("autorec_assignments.chapter04")
    scores, candidate, relevant, k = ch04._ndcg_examples()[1]
    assert scores.max() < 0 and (~candidate).any() and not (relevant & ~candidate).any()
    assert scores.shape[1] > 16  # numpy's default sort is an insertion sort, stable, below 17 elements
    assert ch04._ndcg_variant(scores, candidate, relevant, k, fill=0.0) == 0.0  # the background's bug


# ---------------------------------------------------------------- the grader's references are the package's

def test_the_grader_s_references_agree_with_the_package():
    ch02, ch03, ch04, ch06 = (importlib.import_module(f"autorec_assignments.chapter{n}") for n in ("02", "03", "04", "06"))
    for example in ch02._forward_examples():
        r, V, mu, W, b = example
        for activation, g in (("sigmoid", torch.sigmoid), ("elu", F.elu)):
            model = AutoRec(r.shape[1], V.shape[0], activation=activation).double()
            model.load_state_dict({"encoder.weight": V, "encoder.bias": mu, "decoder.weight": W, "decoder.bias": b})
            assert torch.allclose(model(r), ch02._forward(example, g))
    for model, prediction, target, mask, l2 in ch02._objective_examples():
        assert torch.allclose(prediction, model(target * mask))
        assert torch.allclose(autorec_objective(model, prediction, target, mask, l2),
                              ch02._objective(model, prediction, target, mask, l2))
    for example in ch03._loop_examples():
        n, d = example.ratings.shape
        matrix = RatingMatrix(example.ratings, example.observed, np.arange(1, n + 1), np.arange(1, d + 1), "user")
        model = copy.deepcopy(example.model)
        history = fit(DenseProblem(model, matrix, example.validation, l2=example.l2, device="cpu"), epochs=example.epochs,
                      lr=example.lr, patience=example.epochs, seed=0, progress=False)
        losses, trained = ch03._reference_loop(example)  # (fit keeps the best epoch's weights, not the last)
        assert np.allclose([record["loss"] for record in history.records], losses, rtol=1e-5)
        student = copy.deepcopy(example.model)
        training_loop(student, example.ratings, example.fit_mask, example.l2, example.lr, example.epochs)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(student.state_dict().values(),
                                                                   trained.state_dict().values(), strict=True))
    for _, scores, rated, unknown, k in ch04._top_k_cases():
        assert np.array_equal(ch04._best(scores, ~rated & ~unknown, k), best_positions(scores, ~rated & ~unknown, k))
    for scores, candidate, relevant, k in ch04._ndcg_examples():
        assert np.isclose(ch04._ndcg_variant(scores, candidate, relevant, k),
                          list_metrics(scores, candidate, relevant, k)[f"NDCG@{k}"])
    for logits, picked in ch06._picks_examples():
        assert torch.allclose(ch06._multinomial(logits, picked), multinomial_loss(logits, picked))
    for X, l2 in ch06._ease_examples():
        reference = ch06._closed_form(X.double().T @ X.double() + l2 * torch.eye(X.shape[1], dtype=torch.float64))
        assert torch.allclose(EASE(X.shape[1], l2).fit(X).get_buffer("weights").double(), reference, atol=1e-5)
    expected = _expected_values()
    for name in ("check_masked_rmse", "check_ndcg_at_k", "check_multinomial_nll"):  # the two examples differ
        assert not np.isclose(expected[name][0], expected[name][1]), name
