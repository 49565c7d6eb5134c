"""Chapter 04's checks: a user's top-k among the unrated movies, compared with the grader's ``_best`` (the tests hold
it equal to ``recommend.best_positions``, what every list of the chapter is made of), and NDCG@k, compared with the
grader's ``_ndcg_variant`` (held equal to ``evaluate.list_metrics``): a task cell that patches the package cannot move
the reference. A ranking answer that calls the package's ranking code is refused (``refuse_ranking_helpers``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

# common.py read anew whenever this module is (re)loaded, found by its name (not as an attribute a task cell could
# replace): a check cell's importlib.reload of this module undoes a task cell's patches of the helpers
importlib.reload(importlib.import_module(".common", __package__))
from .common import (  # noqa: E402
    Diagnoses,
    Test,
    call,
    close,
    fail,
    fail_first,
    fail_if_same,
    fail_same,
    isolated,
    matches,
    name_of,
    number_result,
    passed,
    refuse_ranking_helpers,
)

__all__ = ["check_ndcg_at_k", "check_top_k_unrated"]

TopKCase = tuple[str, np.ndarray, np.ndarray, np.ndarray, int]  # what the case shows, scores, rated, unknown, k
NdcgExample = tuple[np.ndarray, np.ndarray, np.ndarray, int]  # scores, candidate, relevant, k
TOP_K_NAMES = "scores rated unknown k"
NDCG_NAMES = "scores candidate relevant k"
TIES = ("ties are broken differently: among equal scores the lower column comes first (np.argsort(-scores, "
        "kind='stable') keeps that order; the default sort, torch.topk and a reversed ascending sort do not).")


def _top_k_cases() -> list[TopKCase]:
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
            ("fewer candidates than k", few, few_rated, few_unknown, 3),
            *_hidden_top_k_cases()]


def _hidden_top_k_cases() -> list[TopKCase]:
    """Two more rows, never shown: random scores, and a long row of tied scores that only a stable sort orders
    right (numpy's default sort and torch.topk scramble ties on rows this long)."""
    generator = np.random.default_rng(9)
    scores = generator.normal(3.0, 1.0, 12).round(3)
    rated, unknown = generator.random(12) < 0.3, np.zeros(12, dtype=bool)
    unknown[int(np.argmax(np.where(rated, -np.inf, scores)))] = True  # the best candidate is an 'unknown' title
    ties = generator.integers(1, 5, 48).astype(float)
    tie_rated = generator.random(48) < 0.25
    return [("random scores", scores, rated, unknown, 4),
            ("many tied scores", ties, tie_rated, np.zeros(48, dtype=bool), 6)]


def _best(scores: np.ndarray, keep: np.ndarray, k: int) -> np.ndarray:
    """The reference: the columns of the ``k`` highest scores among those ``keep`` allows, best first, ties to the
    lower column (as ``best_positions``)."""
    allowed = np.flatnonzero(keep)
    return allowed[np.argsort(-scores[allowed], kind="stable")[:k]]


@isolated
def check_top_k_unrated(top_k_unrated: Callable[..., Any]) -> None:
    """Chapter 04: ``top_k_unrated(scores, rated, unknown, k)`` must return the columns of the ``k`` highest scores
    among the movies neither rated nor "unknown", best first, ties to the lower column (as ``top_k_columns``), and
    fewer than ``k`` when fewer are left; without calling the package's ranking helpers."""
    refuse_ranking_helpers(top_k_unrated)
    name = name_of(top_k_unrated)
    previous: tuple[np.ndarray, np.ndarray] | None = None
    for case in _top_k_cases():
        _, scores, rated, unknown, k = case
        result = call(top_k_unrated, scores.copy(), rated.copy(), unknown.copy(), k, names=TOP_K_NAMES)
        got = _columns(result, scores, name)
        expected = _best(scores, ~rated & ~unknown, k)
        if previous is not None and np.array_equal(got, previous[0]) and not np.array_equal(expected, previous[1]):
            fail_same(name)
        if not np.array_equal(got, expected):
            fail_first(_top_k_mistakes(case, got, expected, name))
            fail(f"on the row with {case[0]} the list is not the {k} highest-scoring candidates, best first: sort "
                 "the candidates by score, highest first, and keep the first k.")
        previous = got, expected
    passed(f"{name} lists the top-k unrated movies, best first, ties to the lower column, 'unknown' titles left out "
           f"and fewer than k when fewer are left (checked on {len(_top_k_cases())} score rows).")


def _columns(result: Any, scores: np.ndarray, name: str) -> np.ndarray:
    """The columns a top-k function returned, as one row of ints."""
    got = np.asarray(result.detach().cpu() if isinstance(result, torch.Tensor) else result).reshape(-1)
    integer = np.issubdtype(got.dtype, np.integer)

    def whole() -> bool:
        return bool(np.allclose(got, np.round(got)))

    fail_first([
        (lambda: got.dtype == bool,
         f"{name} returns a yes/no per movie; return the columns of the chosen movies, best first."),
        (lambda: not integer and got.size and np.all(np.isin(got, scores)) and not whole(),
         f"{name} returns the scores; return the columns (positions) of the chosen movies."),
        (lambda: not integer and not whole(),
         f"{name} returns {got.dtype} values; return whole column numbers, e.g. an array of ints."),
    ])
    return got if integer else got.astype(int)


def _top_k_mistakes(case: TopKCase, got: np.ndarray, expected: np.ndarray, name: str) -> Diagnoses:
    """The mistakes a top-k list ``got`` that is not ``expected`` may show, in the order they are looked for."""
    what, scores, rated, unknown, k = case
    n = len(scores)
    candidates = np.flatnonzero(~rated & ~unknown)
    outside = _outside(got, n)
    listed_rated, listed_unknown = _first_marked(got, rated), _first_marked(got, unknown)
    same_movies = set(got.tolist()) == set(expected.tolist())
    tied = "tied" in what
    return [
        (lambda: outside is not None,
         f"{name} returns column {outside}, outside the {n} movies: return positions in the score row."),
        (lambda: got.size and got.max() < candidates.size and np.array_equal(candidates[got], expected),
         f"{name} returns positions among the candidates, not columns of the score row: map them back "
         "(candidates[positions])."),
        (lambda: what == "negative scores" and np.array_equal(got, _best(np.where(rated | unknown, 0.0, scores),
                                                                         np.ones(n, dtype=bool), k)),
         "rated movies were given a score of 0, but scores can be negative (a list model's log-probabilities): leave "
         "rated movies out, or give them -inf."),
        (lambda: expected.size < k and got.size > expected.size and np.array_equal(got[: expected.size], expected),
         f"only {expected.size} movie(s) are left to recommend but the list has {got.size}: return the candidates "
         "there are, fewer than k, without padding."),
        (lambda: listed_rated is not None,
         f"a movie the user already rated (column {listed_rated}) is in the list: only unrated movies are candidates."),
        (lambda: listed_unknown is not None,
         f"an 'unknown' title (column {listed_unknown}) is in the list: leave out the movies that unknown marks."),
        (lambda: len(set(got.tolist())) < got.size, f"{name} lists a movie twice: each column at most once."),
        (lambda: got.size != expected.size,
         f"the list has {got.size} movies; it should have {expected.size}, k = {k} or all the candidates when fewer "
         "are left."),
        (lambda: same_movies and np.array_equal(got, expected[::-1]),
         "the list is worst first: put the highest score first."),
        (lambda: same_movies and tied, TIES),
        (lambda: same_movies, "the right movies in the wrong order: sort them by score, best first."),
        (lambda: tied, TIES),
    ]


def _outside(got: np.ndarray, n: int) -> int | None:
    """A column of ``got`` outside the ``n`` movies (the highest, when one is too high), or None."""
    if got.size == 0 or (got.min() >= 0 and got.max() < n):
        return None
    return int(got.max() if got.max() >= n else got.min())


def _first_marked(got: np.ndarray, marked: np.ndarray) -> int | None:
    """The first column of ``got`` that ``marked`` marks, or None."""
    return next((column for column in got.tolist() if 0 <= column < len(marked) and marked[column]), None)


def _ndcg_example() -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
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


def _log_probability_example() -> NdcgExample:
    """The second example, never shown: a list model's log-probabilities (every score negative, as chapter 06's),
    with long runs of tied scores that only a stable sort orders right, rated movies among the best scores, and a
    user with fewer candidates than k."""
    generator = np.random.default_rng(8)
    n, d, k = 6, 40, 5
    logits = generator.integers(0, 4, (n, d)).astype(float)
    scores = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # equal logits, equal log-probabilities
    candidate = generator.random((n, d)) < 0.7
    candidate[5] = False
    candidate[5, [3, 17, 30]] = True  # three candidates for a list of five
    relevant = np.zeros((n, d), dtype=bool)
    for user in (0, 1, 2, 3, 5):  # user 4: nothing relevant
        top = np.flatnonzero(candidate[user] & (logits[user] == logits[user][candidate[user]].max()))
        relevant[user, top[-2:]] = True  # the last of the tied best candidates: found only with ties kept in order
        others = np.flatnonzero(candidate[user] & ~relevant[user])
        relevant[user, generator.choice(others, min(2, others.size), replace=False)] = True
    return scores, candidate, relevant, k


def _ndcg_examples() -> list[NdcgExample]:
    return [_ndcg_example(), _log_probability_example()]


def _ndcg_variant(scores: np.ndarray, candidate: np.ndarray, relevant: np.ndarray, k: int, all_users: bool = False,
                  ideal: str | None = "min", offset: int = 2, reciprocal: bool = False, exclude: bool = True,
                  fill: float = -np.inf, ties: str = "low", cut: bool = True) -> float:
    """The reference (as ``list_metrics``), or the mean NDCG@k with one thing changed, to recognise a mistake by its
    number (``fill``: the score non-candidates get; they are never hits)."""

    def discount(ranks: np.ndarray) -> np.ndarray:
        return 1 / ranks if reciprocal else 1 / np.log2(ranks + offset - 1)

    values = []
    for user in range(len(scores)):
        n_relevant = int(relevant[user].sum())
        if n_relevant == 0:
            if all_users:
                values.append(0.0)
            continue
        row = np.where(candidate[user], scores[user], fill) if exclude else scores[user]
        columns = np.arange(len(row))
        order = np.lexsort((columns if ties == "low" else -columns, -row))  # by score, then column
        listed = order[:k] if cut else order
        hits = relevant[user, listed] & (candidate[user, listed] | (not exclude))
        dcg = float((hits * discount(np.arange(1, len(listed) + 1))).sum())
        if ideal is None:
            values.append(dcg)
            continue
        n_ideal = {"min": min(k, n_relevant), "all": n_relevant, "k": k}[ideal]
        values.append(dcg / float(discount(np.arange(1, n_ideal + 1)).sum()))
    return float(np.mean(values))


def _ndcg_result(ndcg_at_k: Callable[..., Any], name: str, example: NdcgExample) -> float:
    scores, candidate, relevant, k = example
    result = call(ndcg_at_k, scores.copy(), candidate.copy(), relevant.copy(), k, names=NDCG_NAMES)
    return number_result(result, name)


@isolated
def check_ndcg_at_k(ndcg_at_k: Callable[..., Any]) -> None:
    """Chapter 04: ``ndcg_at_k(scores, candidate, relevant, k)`` must return the mean NDCG@k with binary gains over the
    users with at least one relevant movie, each user's list the top-k candidates (ties to the lower column), as
    ``evaluate.list_metrics`` (and so ``ranking_metrics``) computes it; checked on two examples, the second with
    negative scores, and without calling the package's ranking helpers."""
    refuse_ranking_helpers(ndcg_at_k)
    name = name_of(ndcg_at_k)
    previous: float | None = None
    for example in _ndcg_examples():
        got = _ndcg_result(ndcg_at_k, name, example)
        fail_if_same(got, previous, name)
        if not close(got, _ndcg_variant(*example)):
            _diagnose_ndcg(ndcg_at_k, name, got, example)
        previous = got
    k = _ndcg_examples()[0][3]
    passed(f"{name} is the mean NDCG@{k} with binary gains of the users with a relevant movie, as list_metrics "
           "computes it (checked on two examples: ties, rated movies, all-negative scores).")


def _diagnose_ndcg(ndcg_at_k: Callable[..., Any], name: str, got: float, example: NdcgExample) -> None:
    scores, candidate, relevant, k = example
    expected = _ndcg_variant(*example)

    def variant(**change: Any) -> float:
        return _ndcg_variant(scores, candidate, relevant, k, **change)

    def right_on(changed: np.ndarray) -> Test:  # the function is right once the scores are changed so
        return lambda: close(_ndcg_result(ndcg_at_k, name, (changed, candidate, relevant, k)), expected)

    untied = scores - 1e-6 * np.arange(scores.shape[1]) / scores.shape[1]  # the same order, ties to the lower column
    fail_first([
        (matches(got, variant(all_users=True)),
         "users with no relevant movie were averaged in (as 0): leave them out, they have nothing to find."),
        (matches(got, variant(exclude=False)),
         "movies the user already rated were ranked: only candidates (candidate is True) may be listed."),
        (matches(got, variant(fill=0.0)),
         "non-candidates were scored 0 (or another finite number) instead of left out: with negative scores "
         "(log-probabilities) they then top the list; rank the candidates only (or give the others -inf)."),
        (matches(got, variant(ideal="all")),
         "the ideal DCG must stop at position k: sum 1/log2(j + 1) for j = 1 ... min(k, |T_u|), not over all |T_u| "
         "relevant movies."),
        (matches(got, variant(ideal="k")),
         "the ideal DCG assumes k relevant movies; a user with fewer can fill only min(k, |T_u|) positions."),
        (matches(got, variant(ideal=None)), "the DCG is not normalised: divide each user's DCG by their ideal DCG."),
        (matches(got, variant(offset=3)),
         "the discount is off by one: the first position counts 1/log2(1 + 1) = 1, the j-th 1/log2(j + 1)."),
        (matches(got, variant(reciprocal=True)), "the discount is 1/log2(rank + 1), not 1/rank."),
        (matches(got, variant(cut=False)),
         "hits below position k were counted: the DCG sums over the top k of the list only."),
        (matches(got, variant(ties="high")), TIES),
        (right_on(untied),
         "an unstable sort among tied scores: the list is right once the ties are broken, so order equal scores by "
         "column, the lower first (np.argsort(-scores, kind='stable'); the default sort and torch.topk do not)."),
        (lambda: scores.max() < 0 and right_on(scores - scores.min() + 1.0)(),
         "on all-negative scores (log-probabilities, as chapter 06's) the ranking goes wrong, though it is right once "
         "the scores are shifted above 0: rank by the score itself, highest first (not by its size), and leave the "
         "non-candidates out (or give them -inf) rather than a finite score."),
    ])
    fail(f"{name} gives {got:.6g}, which is not the mean NDCG@{k}: for each user with a relevant movie, the sum of "
         "1/log2(j + 1) over the hits at positions j = 1 ... k of their top-k candidates, divided by the same sum over "
         "the first min(k, |T_u|) positions; then the mean over those users.")
