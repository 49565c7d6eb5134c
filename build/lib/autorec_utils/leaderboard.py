"""Reading a leaderboard (chapter 07): what choosing the epoch on the *test* ratings is worth, and the
published numbers for MovieLens-100K's u1 split with how each was chosen.

``TestWatch`` wraps a problem of ``fit`` so that every epoch's record also holds the test RMSE; it only
reads -- early stopping still watches the validation ratings, so training is exactly what it would be
without it. ``selection_optimism`` then compares the test RMSE at the epoch validation picks with the
lowest test RMSE over the epochs: what a paper that keeps its best test epoch would report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import cast

import pandas as pd
import torch

from .evaluate import score
from .recipes import AutoRecRecipe, get_recipe
from .train import History, Problem, Trained, autorec_problem, autorec_setup, fit, predictor_for

__all__ = ["PUBLISHED", "TestWatch", "selection_optimism", "train_watching_test"]


# The published u1 numbers this chapter reads, each with how its epoch and settings were chosen, as far as the
# released code or the paper shows it ("read in": what we read to say so).
PUBLISHED = [
    {"model": "GLocal-K", "u1 RMSE": 0.8889, "paper": "Han, Lim, Long, Burgstaller, Poon, CIKM 2021",
     "source": "https://arxiv.org/abs/2108.12184",
     "epoch chosen on": "test: the lowest test RMSE over 60 fine-tuning epochs",
     "settings chosen on": "not stated; one setting per data set in the notebook",
     "read in": "the official notebook, github.com/usydnlp/Glocal_K (best_rmse over the fine-tuning loop)"},
    {"model": "Sparse FC (kernelNet)", "u1 RMSE": 0.895, "paper": "Muller, Martel, Indiveri, ICML 2018",
     "source": "https://proceedings.mlr.press/v80/muller18a.html",
     "epoch chosen on": "its only held-out split: the script prints that RMSE as it trains (fixed L-BFGS budget)",
     "settings chosen on": "the same held-out split (lambdas are command-line arguments)",
     "read in": "github.com/lorenzMuller/kernelNet_MovieLens (the ML-1M script; the u1 figure as GLocal-K's table lists it)"},
    {"model": "IGMC", "u1 RMSE": 0.905, "paper": "Zhang, Chen, ICLR 2020",
     "source": "https://arxiv.org/abs/1904.12058",
     "epoch chosen on": "fixed: 80 epochs, the average of the snapshots at epochs 50-80",
     "settings chosen on": "validation mode of the code (20 % of u1.base); test mode trains on all of it",
     "read in": "github.com/muhanzhang/IGMC, Main.py (--testing, --ensemble)"},
    {"model": "GC-MC", "u1 RMSE": 0.910, "paper": "van den Berg, Kipf, Welling, KDD 2018 Deep Learning Day",
     "source": "https://arxiv.org/abs/1706.02263",
     "epoch chosen on": "fixed: 1000 epochs, scored once at the end (Polyak-averaged weights)",
     "settings chosen on": "validation mode of the code (part of u1.base)",
     "read in": "github.com/riannevdberg/gc-mc, gcmc/train.py and run_experiments.sh"},
]


class TestWatch:
    """A problem for ``fit`` that is ``problem`` plus, in every epoch's record, ``test_rmse()`` -- read,
    never used: ``watch`` stays the problem's (the validation RMSE), so training and early stopping are
    unchanged (chapter 07)."""

    __test__ = False  # not a test class, whatever pytest thinks of its name

    def __init__(self, problem: Problem, test_rmse: Callable[[], float]):
        self.problem, self.test_rmse = problem, test_rmse
        self.model, self.watch, self.mode = problem.model, problem.watch, problem.mode
        self.seconds = 0.0  # spent scoring the test ratings: not part of training

    def optimizer(self, name: str, lr: float) -> torch.optim.Optimizer:
        return self.problem.optimizer(name, lr)

    def batches(self, generator: torch.Generator) -> list:
        return self.problem.batches(generator)

    def batch_loss(self, rows) -> torch.Tensor:
        return self.problem.batch_loss(rows)

    def evaluate(self) -> dict[str, float]:
        started = time.perf_counter()
        test_rmse = self.test_rmse()
        self.seconds += time.perf_counter() - started
        return {**self.problem.evaluate(), "test_rmse": test_rmse}


def train_watching_test(train: pd.DataFrame, test: pd.DataFrame, recipe: str | AutoRecRecipe = "I-AutoRec",
                        user_ids=None, item_ids=None, seed: int = 0, progress: bool = True, make_problem=None,
                        **changes) -> Trained:
    """``train.train_autorec`` with the test RMSE of every epoch in its history (``test_rmse``), scored as
    ``evaluate.score`` would score the model of that epoch (chapter 07). The same steps in the same order, so
    the training is the same; a test checks that the validation curves agree. ``seconds`` leaves out the
    time spent scoring the test ratings. ``make_problem`` (default ``train.autorec_problem``, same arguments)
    builds another problem, for changes to the training that no recipe setting makes (benchmarks/leaderboard.py)."""
    recipe = cast(AutoRecRecipe, get_recipe(recipe, family="ratings", **changes))
    started = time.perf_counter()
    matrix, validation, bias, model, baseline = autorec_setup(train, recipe, user_ids, item_ids, seed, sparse=False)
    problem = (make_problem or autorec_problem)(model, matrix, validation, recipe.l2, recipe.batch_size, baseline)

    def test_rmse() -> float:  # the predictor of this epoch's weights, as evaluate.score scores the final one
        return score(predictor_for(model, matrix, bias, recipe), test)["RMSE"]

    watched = TestWatch(problem, test_rmse)
    history = fit(watched, recipe.epochs, recipe.lr, recipe.optimizer, recipe.patience, recipe.lr_decay, seed, progress)
    return Trained(model, matrix, predictor_for(model, matrix, bias, recipe), recipe, history,
                   time.perf_counter() - started - watched.seconds, seed, bias=bias)


def selection_optimism(history: History) -> dict:
    """For a history with ``test_rmse`` in its records: the epoch validation chose and its test RMSE (the
    honest number), the epoch with the lowest test RMSE and that RMSE (the number a paper that keeps its
    best test epoch reports), and the difference between the two (chapter 07)."""
    frame = history.to_frame()
    if "test_rmse" not in frame:
        raise ValueError("this history has no test_rmse column: train with train_watching_test (or wrap the problem in "
                         "TestWatch).")
    honest = float(frame.test_rmse.loc[history.best_epoch])
    best_epoch = int(frame.test_rmse.idxmin())
    best = float(frame.test_rmse.min())
    return {"validation's epoch": history.best_epoch, "test at validation's epoch": honest, "test's epoch": best_epoch,
            "best test": best, "optimism": honest - best}
