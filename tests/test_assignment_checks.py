"""The checks of the assignments (``autorec_assignments``): every check passes the correct code, says "not written
yet" for a blank function, and names each common mistake in its own sentence -- a check that cannot fail checks
nothing. Fast, and no nbgrader needed: the quick tier runs them. tests/test_assignments.py runs the notebooks."""

import ast
import copy
import importlib
import pkgutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import autorec_assignments as checks
from autorec_utils.evaluate import top_k_columns

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


def ndcg_at_k(scores, candidate, relevant, k, *, everybody=False, ideal_all=False, no_ideal=False, exclude=True):
    discount = 1 / np.log2(np.arange(2, scores.shape[1] + 2))  # position j (from 1) counts 1/log2(j + 1)
    values = []
    for user in range(len(scores)):
        n_relevant = int(relevant[user].sum())
        if n_relevant == 0:
            if everybody:
                values.append(0.0)
            continue
        row = np.where(candidate[user], scores[user], -np.inf) if exclude else scores[user]
        top = np.argsort(-row, kind="stable")[:k]
        dcg = (relevant[user, top] * discount[: len(top)]).sum()
        ideal = discount[: n_relevant if ideal_all else min(k, n_relevant)].sum()
        values.append(dcg if no_ideal else dcg / ideal)
    return float(np.mean(values))


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
        (lambda p, r, mask: (p.clamp(1, 5) - r)[mask].abs().mean(), "but the RMSE on the masked entries is"),
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
        (lambda s, rated, unknown, k: top_k_columns(np.where(rated | unknown, 0.0, s), k)[0], "score of 0"),
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
    ]),
    "check_ndcg_at_k": (ndcg_at_k, [
        (lambda *a: ndcg_at_k(*a, everybody=True), "no relevant movie were averaged in"),
        (lambda *a: ndcg_at_k(*a, ideal_all=True), "ideal DCG must stop at position k"),
        (lambda *a: ndcg_at_k(*a, no_ideal=True), "not normalised"),
        (lambda *a: ndcg_at_k(*a, exclude=False), "already rated were ranked"),
        (lambda s, c, r, k: float(np.mean([((r[u, top_k_columns(np.where(c[u], s[u], -np.inf), k)[0]]
                                              / np.arange(1, k + 1)).sum() / (1 / np.arange(1, min(k, r[u].sum()) + 1)).sum())
                                             for u in range(len(s)) if r[u].any()])), "not 1/rank"),
        (lambda s, c, r, k: float(np.mean([((r[u, top_k_columns(np.where(c[u], s[u], -np.inf), k)[0]]
                                              / np.log2(np.arange(3, k + 3))).sum()
                                             / (1 / np.log2(np.arange(3, min(k, r[u].sum()) + 3))).sum())
                                            for u in range(len(s)) if r[u].any()])), "off by one"),
        (lambda s, c, r, k: float(np.mean([((r[u, top_k_columns(np.where(c[u], s[u], -np.inf), k)[0]]
                                              / np.log2(np.arange(2, k + 2))).sum() / (1 / np.log2(np.arange(2, k + 2))).sum())
                                            for u in range(len(s)) if r[u].any()])), "assumes k relevant movies"),
        (lambda s, c, r, k: ndcg_at_k(s[:, ::-1], c[:, ::-1], r[:, ::-1], k), "ties are broken differently"),
        (lambda s, c, r, k: ndcg_at_k(s, c, r, k + 1), "but the mean NDCG@3 is"),
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
        (lambda logits, x: F.binary_cross_entropy_with_logits(logits, x), "averaged over the users is"),
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
