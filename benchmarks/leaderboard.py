"""Reading a leaderboard (chapter 07): what choosing on the test ratings is worth, and what really lowers the
error of AutoRec on MovieLens-100K's canonical folds. Writes benchmarks/results/leaderboard.json, which
notebook 07 shows.

    python benchmarks/leaderboard.py                       # optimism and the ladder on u1..u5 (about an hour)
    python benchmarks/leaderboard.py --ladder-folds u1     # optimism on u1..u5, the ladder on u1 only
    python benchmarks/leaderboard.py --folds u1 --changes "I-AutoRec" "+ local kernel (GLocal-K's pre-training)"

1. Optimism. On every fold, I-AutoRec's grid (benchmarks/rmse.py's GRIDS) is trained with the test RMSE of
   every epoch recorded -- read only: early stopping and every choice use the fold's validation part
   (5 % of its training ratings). Epoch: the test RMSE at the epoch validation picks against the lowest test
   RMSE over the epochs of the same run. Grid: the test RMSE of the grid point validation picks against that
   of the grid point the test ratings would pick (each at its own validation epoch), and with both the
   grid point and the epoch picked on test -- what a paper reports when it keeps its best test number.
2. The ladder. One change at a time to the I-AutoRec chosen on the fold's validation part (its lambda and
   learning rate), each change's own settings from the papers that use it, scored once on the test ratings;
   the test RMSE at its best test epoch is recorded too. Averaging (seeds; U + I, blend weight chosen on the
   validation ratings that every run of one fold holds back) is computed from the runs it averages.
   Seconds are training time (this machine's load changes them: run it on an idle machine), without the
   time spent scoring the test ratings for part 1.
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rmse import GRIDS  # benchmarks/rmse.py, next to this file

from autorec_utils.ensemble import blend_weights, member_columns
from autorec_utils.evaluate import RATING_RANGE, BiasBaseline, rmse, score
from autorec_utils.fetch import fetch_movielens
from autorec_utils.leaderboard import selection_optimism, train_watching_test
from autorec_utils.load import load_movies, load_users
from autorec_utils.recipes import RECIPES, DeepAutoRecRecipe
from autorec_utils.releases import SPLITS
from autorec_utils.splits import load_split
from autorec_utils.train import DenseProblem, chosen_on_validation, train_autorec

RESULTS = Path(__file__).parent / "results"
SEEDS = 5  # runs averaged per recipe
HONEST = "test at validation's epoch"


# ---------------------------------------------------------------- changes that are not recipe settings

class MeanFilledProblem(DenseProblem):
    """U-AutoRec reading each user's row with the blanks filled by the movie's mean fitted rating instead of
    0 (the loss still counts observed ratings only)."""

    def __init__(self, model, matrix, validation=None, l2=1.0, batch_size=None, baseline=None, device=None):
        super().__init__(model, matrix, validation, l2, batch_size, baseline, device)
        counts = self.fit_mask.sum(0).clamp(min=1)
        column_mean = (self.targets * self.fit_mask).sum(0) / counts
        self.inputs = torch.where(self.fit_mask, self.targets, column_mean.expand_as(self.targets))


class RefeedingProblem(DenseProblem):
    """NVIDIA's dense re-feeding (Kuchaiev & Ginsburg 2017): after each step on the observed ratings, a second
    step feeds the model's own dense output f(x) back in and fits f(f(x)) to it on every entry."""

    def batches(self, generator):
        return [("ratings", rows) for rows in super().batches(generator)] + [("refeed", slice(None))]

    def batch_loss(self, step):
        kind, rows = step
        if kind == "ratings":
            return super().batch_loss(rows)
        with torch.no_grad():
            dense = self.model(self.inputs[rows])
        return (self.model(dense) - dense).square().sum() + 0.5 * self.l2 * self.model.weight_norm()


# one change at a time to the fold's chosen I-AutoRec: (recipe changes, a problem class or None, base recipe)
LBFGS = {"optimizer": "lbfgs", "lr": 1.0, "lr_decay": 1.0, "patience": 20}
GLOCAL = {"depth": 2, "hidden": 500, "l2": 40.0, "kernel": 5, "kernel_penalty": 0.006 / 20}  # GLocal-K's u1 lambdas
CHANGES = {
    "I-AutoRec": ({}, None, "I-AutoRec"),
    "depth: 2 x 500 (Adam)": ({"depth": 2}, None, "I-AutoRec"),
    "L-BFGS, full batch": (LBFGS, None, "I-AutoRec"),
    "2 x 500, L-BFGS (Sparse FC without kernel)": ({**GLOCAL, "kernel": 0, "kernel_penalty": 0.0, **LBFGS}, None, "I-AutoRec"),
    "+ local kernel (GLocal-K's pre-training)": ({**GLOCAL, **LBFGS}, None, "I-AutoRec"),
    "dropout 0.5 on the code": ({"dropout": 0.5}, None, "I-AutoRec"),
    "ELU": ({"activation": "elu"}, None, "I-AutoRec"),
    "SELU": ({"activation": "selu", "depth": 1}, None, "I-AutoRec"),
    "dense re-feeding": ({}, RefeedingProblem, "I-AutoRec"),
    "U-AutoRec": ({}, None, "U-AutoRec"),
    "U-AutoRec, mean-filled inputs + ELU": ({"activation": "elu"}, MeanFilledProblem, "U-AutoRec"),
    "U-AutoRec (residual)": ({}, None, "U-AutoRec (residual)"),
    "U-AutoRec, 2 x 500, L-BFGS": ({}, None, "U-AutoRec (deep)"),
}
AVERAGES = {  # name: {recipe: number of seeds}
    "I-AutoRec, 5 seeds averaged": {"I-AutoRec": SEEDS},
    "U (residual) + I, blended": {"I-AutoRec": 1, "U-AutoRec (residual)": 1},
    "U (residual) + I, 5 seeds each, blended": {"I-AutoRec": SEEDS, "U-AutoRec (residual)": SEEDS},
}
DEEP_SETTINGS = {"depth", "kernel", "kernel_penalty"}


def tuned(train, test, ids, name: str, seed: int, fold: str) -> tuple[dict, list[dict], object]:
    """The recipe's grid on the fold's validation part, every run watching the test ratings (read only).
    Returns the chosen settings, one row per grid point, and the chosen run."""
    grid, runs, rows = GRIDS[name], {}, []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values, strict=True))
        run = runs[values] = train_watching_test(train, test, name, seed=seed, progress=False, **ids, **settings)
        rows.append({"fold": fold, "recipe": name, **settings, "validation RMSE": run.history.score,
                     **selection_optimism(run.history), "seconds": run.seconds})
        print(f"  {fold} {name} {settings}: validation {run.history.score:.4f}, test {rows[-1][HONEST]:.4f}",
              flush=True)
    chosen = chosen_on_validation(runs)
    return dict(zip(grid, chosen, strict=True)), rows, runs[chosen]


def grid_optimism(rows: list[dict]) -> dict:
    """The grid point validation picks against the one the test ratings pick, and with the epoch picked on test too."""
    frame = pd.DataFrame(rows)
    honest = frame.loc[frame["validation RMSE"].idxmin()]
    on_test = frame.loc[frame["test at validation's epoch"].idxmin()]
    return {"fold": honest.fold, "recipe": honest.recipe, "honest: l2": honest.l2, "honest: lr": honest.lr,
            "honest test RMSE": honest["test at validation's epoch"], "grid on test: l2": on_test.l2,
            "grid on test: lr": on_test.lr, "grid on test": on_test["test at validation's epoch"],
            "grid and epoch on test": frame["best test"].min(),
            "optimism: grid": honest["test at validation's epoch"] - on_test["test at validation's epoch"],
            "optimism: grid and epoch": honest["test at validation's epoch"] - frame["best test"].min()}


def run_change(train, test, ids, name: str, chosen: dict, seed: int):
    changes, problem, base = CHANGES[name]
    recipe = RECIPES[base].replace(**chosen.get(base, {}))
    if DEEP_SETTINGS & set(changes) or changes.get("activation") == "selu":
        recipe = DeepAutoRecRecipe(**{**recipe.settings(), "depth": 1})
    recipe = recipe.replace(**changes)
    return train_watching_test(train, test, recipe, seed=seed, progress=False, make_problem=problem, **ids)


def averaged(runs: dict, test: pd.DataFrame) -> dict:
    """Validation and test RMSE of each blend in AVERAGES, from the runs (recipe name -> list of runs, all
    holding back the same validation ratings), blended as ensemble.train_ensemble blends its members."""
    rows = {}
    for blend_name, wanted in AVERAGES.items():
        if any(len(runs.get(name, [])) < count for name, count in wanted.items()):
            continue
        members = [runs[name][:count] for name, count in wanted.items()]
        held, columns = member_columns(members)
        weights, val_rmse = blend_weights(columns, held.rating.to_numpy(), 0.05)
        on_test = np.column_stack([np.mean([run.predictor.predict(test.user_id.to_numpy(), test.item_id.to_numpy())
                                            for run in member], axis=0) for member in members])
        rows[blend_name] = {"validation RMSE": val_rmse, "test RMSE": rmse(np.clip(on_test @ weights, *RATING_RANGE),
                                                                           test.rating),
                            "seconds": sum(run.seconds for member in members for run in member),
                            "weights": dict(zip(wanted, weights.round(2).tolist(), strict=True))}
    return rows


def run_fold(fold: str, path, changes: list[str], seed: int = 0, ladder: bool = True) -> dict:
    train, test = load_split(fold, path)
    ids = {"user_ids": load_users(path).user_id, "item_ids": load_movies(path).item_id}
    out = {"grid": [], "epoch": [], "ladder": [], "seeds": [], "curves": {}}
    out["ladder"].append({"fold": fold, "change": "bias baseline", "test RMSE": score(BiasBaseline().fit(train), test)["RMSE"]})
    chosen, members = {}, {}
    for name in ("I-AutoRec", "U-AutoRec (residual)"):
        settings, rows, run = tuned(train, test, ids, name, seed, fold)
        chosen[name], members[name] = settings, [run]
        out["grid"] += rows
        out["epoch"].append({"fold": fold, "recipe": name, **settings, **selection_optimism(run.history)})
        out["curves"][name] = run.history.to_frame()[["val_rmse", "test_rmse"]].reset_index().to_dict("list")
    for name in changes if ladder else []:
        started = time.perf_counter()
        if name in ("I-AutoRec", "U-AutoRec (residual)"):
            run = members[name][0]
        else:
            run = run_change(train, test, ids, name, chosen, seed)
        numbers = selection_optimism(run.history)
        out["ladder"].append({"fold": fold, "change": name, "validation RMSE": run.history.score,
                              "test RMSE": numbers["test at validation's epoch"], "best test": numbers["best test"],
                              "epochs": run.history.best_epoch, "seconds": run.seconds})
        print(f"  {fold} {name}: validation {run.history.score:.4f}, test {numbers[HONEST]:.4f}"
              f" (best test {numbers['best test']:.4f}), {run.seconds:.0f} s [{time.perf_counter() - started:.0f} s]", flush=True)
    if not ladder:
        return out
    for name in members:  # more seeds of the two chosen runs, holding back the same validation ratings
        recipe = RECIPES[name].replace(**chosen[name])
        members[name] += [train_autorec(train, recipe, seed=seed + k, validation_seed=seed, progress=False, **ids)
                          for k in range(1, SEEDS)]
        out["seeds"] += [{"fold": fold, "recipe": name, "seed": run.seed, "validation RMSE": run.history.score,
                          "test RMSE": score(run.predictor, test)["RMSE"], "seconds": run.seconds} for run in members[name]]
    for name, row in averaged(members, test).items():
        out["ladder"].append({"fold": fold, "change": name, **{k: v for k, v in row.items() if k != "weights"},
                              "weights": json.dumps(row["weights"])})
        print(f"  {fold} {name}: validation {row['validation RMSE']:.4f}, test {row['test RMSE']:.4f}, weights "
              f"{row['weights']}, {row['seconds']:.0f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"], choices=SPLITS)
    parser.add_argument("--changes", nargs="+", default=list(CHANGES), choices=list(CHANGES))
    parser.add_argument("--ladder-folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"], choices=SPLITS,
                        help="the folds (among --folds) that also run the ladder of changes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    path = fetch_movielens(progress=False, verbose=False).path
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device: CPU", flush=True)
    results = {"grid": [], "epoch": [], "ladder": [], "seeds": [], "curves": {},
               "changes": {name: {"base": base, **changes, **({"problem": problem.__name__} if problem else {})}
                           for name, (changes, problem, base) in CHANGES.items()},
               "averages": AVERAGES}
    for fold in args.folds:
        out = run_fold(fold, path, args.changes, args.seed, ladder=fold in args.ladder_folds)
        for key in ("grid", "epoch", "ladder", "seeds"):
            results[key] += out[key]
        results["curves"][fold] = out["curves"]
    grid = pd.DataFrame(results["grid"])
    results["grid optimism"] = [grid_optimism(rows.to_dict("records")) for _, rows in grid.groupby(["fold", "recipe"], sort=False)]
    pd.set_option("display.width", 180)
    print("\nEpoch chosen on validation vs on test (the chosen grid point's run):")
    print(pd.DataFrame(results["epoch"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\nGrid point (and epoch) chosen on validation vs on test:")
    print(pd.DataFrame(results["grid optimism"]).to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    ladder = pd.DataFrame(results["ladder"])
    table = ladder.groupby("change", sort=False).agg(**{
        "u1 validation": ("validation RMSE", "first"), "u1 test": ("test RMSE", "first"),
        "mean test": ("test RMSE", "mean"), "std test": ("test RMSE", "std"), "seconds (mean)": ("seconds", "mean")})
    laddered = ladder[ladder.fold.isin(ladder.fold[ladder.change == "I-AutoRec"])]  # the folds that ran the ladder
    by_fold = laddered.pivot(index="change", columns="fold", values="test RMSE")
    difference = by_fold.sub(by_fold.loc["I-AutoRec"], axis=1)  # fold by fold: the folds' own noise cancels
    table["minus I-AutoRec: mean"], table["minus I-AutoRec: std"] = difference.mean(axis=1), difference.std(axis=1)
    print(f"\nOne change at a time (folds {', '.join(args.folds)}; first fold's numbers first):")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "leaderboard.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    print(f"\nwrote {RESULTS / 'leaderboard.json'}")


if __name__ == "__main__":
    main()
