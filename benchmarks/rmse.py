"""Held-out RMSE of AutoRec and the baselines on MovieLens-100K's canonical folds, each fold tuned on its own
validation part, and the noise; prints tables.

    python benchmarks/rmse.py                       # u1..u5, three seeds on u1 (about 35 minutes on 2 cores)
    python benchmarks/rmse.py --folds u1 --seeds 0 --recipes I-AutoRec

Protocol: on every fold, each recipe's lambda and learning rate are chosen from a small grid by the
validation RMSE (5 % of *that fold's* training ratings, held back; early stopping watches them too) --
settings tuned on u1 are never reused on u2..u5, whose test ratings are u1's training ratings. The chosen
run is scored once on the fold's test ratings; the other seeds on u1 train the settings chosen with the
first. Ensembles (chapter 07) have no grid: their members take the settings chosen for them on the same fold.

Bars, on u1: U-AutoRec (residual) <= 0.925 and I-AutoRec <= 0.900, each trained in <= 30 s (the chosen run);
the AutoRec ensemble <= 0.893 in <= 120 s (all its runs). Seconds are wall-clock training time including the
baseline fit; this machine's load changes them, so run it on an idle machine. The noise table (writes
benchmarks/results/rmse.json, which notebooks 03 and 07 show): each model's test RMSE over the folds and over
seeds, and its difference to the bias baseline fold by fold -- a difference smaller than its spread is not a win.
"""

import argparse
import itertools
import json
from pathlib import Path

import pandas as pd
import torch

from autorec_utils.ensemble import train_ensemble
from autorec_utils.evaluate import BiasBaseline, GlobalMean, score
from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_users
from autorec_utils.recipes import RECIPES, EnsembleRecipe
from autorec_utils.releases import SPLITS
from autorec_utils.splits import load_split
from autorec_utils.train import chosen_on_validation, train_autorec

# Tried on every fold; the recipe's other settings stay as autorec_utils/recipes.py has them. The plain U- and
# I-AutoRec keep lr 1e-2: at 3e-3 they train 2-7x longer and never won on u1's validation part
# (benchmarks/tune.py's grid, results/tuning.json).
GRIDS = {
    "U-AutoRec": {"l2": [30.0, 100.0, 300.0], "lr": [1e-2]},
    "U-AutoRec (residual)": {"l2": [30.0, 100.0, 300.0], "lr": [3e-3, 1e-2]},
    "I-AutoRec": {"l2": [30.0, 100.0, 300.0], "lr": [1e-2]},
}
ENSEMBLES = [name for name, recipe in RECIPES.items() if isinstance(recipe, EnsembleRecipe)]  # chapter 07
# An ensemble has no grid of its own: on every fold its members take the settings chosen for them on that fold.
BARS = {"U-AutoRec (residual)": 0.925, "I-AutoRec": 0.900, **dict.fromkeys(ENSEMBLES, 0.893)}
MAX_SECONDS = {"U-AutoRec (residual)": 30.0, "I-AutoRec": 30.0, **dict.fromkeys(ENSEMBLES, 120.0)}
RESULTS = Path(__file__).parent / "results"


def run_fold(split: str, path, recipes, seed: int = 0, baselines: bool = True,
             settled: dict | None = None) -> tuple[list[dict], list[dict]]:
    """The grid of every recipe on the fold's validation part, and the chosen runs on its test ratings.
    ``settled`` (recipe name -> settings) replaces a recipe's grid by the settings already chosen on this fold:
    more seeds of the chosen run, for the seed noise."""
    train, test = load_split(split, path)
    ids = {"user_ids": load_users(path).user_id, "item_ids": load_movies(path).item_id}
    rows, grid_rows, tuned = [], [], {}
    if baselines:
        for name, baseline in (("global mean", GlobalMean()), ("bias baseline", BiasBaseline())):
            rows.append({"fold": split, "seed": seed, "model": name, **score(baseline.fit(train), test)})
    for name in recipes:
        if name in ENSEMBLES:
            rows.append(run_ensemble(split, name, train, test, ids, tuned, seed))
            continue
        grid = {key: [value] for key, value in settled[name].items()} if settled else GRIDS[name]
        runs = {}
        for values in itertools.product(*grid.values()):
            settings = dict(zip(grid, values, strict=True))
            runs[values] = train_autorec(train, name, seed=seed, progress=False, **ids, **settings)
            grid_rows.append({"fold": split, "seed": seed, "model": name, **settings,
                              "validation RMSE": runs[values].history.score, "epochs": runs[values].history.best_epoch,
                              "seconds": round(runs[values].seconds, 1)})
        chosen = chosen_on_validation(runs)
        trained = runs[chosen]
        tuned[name] = trained.recipe
        rows.append({"fold": split, "seed": seed, "model": name, **dict(zip(grid, chosen, strict=True)),
                     **score(trained.predictor, test), "validation RMSE": trained.history.score,
                     "seconds": trained.seconds, "epochs": trained.history.best_epoch})
        print(f"  {split} seed {seed} {name}: chosen {dict(zip(grid, chosen, strict=True))}, validation "
              f"{trained.history.score:.4f}, test RMSE {rows[-1]['RMSE']:.4f} in {trained.seconds:.1f} s", flush=True)
    return rows, grid_rows


def run_ensemble(split: str, name: str, train, test, ids, tuned: dict, seed: int) -> dict:
    """An ensemble recipe whose members take the settings chosen for them on this fold (``tuned``: recipe name ->
    the chosen recipe), trained and blended on the fold's validation part, scored once on its test ratings."""
    names = {recipe: known for known, recipe in RECIPES.items()}
    # members with a grid take the settings chosen for them on this fold; the others (the local kernel model) keep
    # their recipe, whose settings come from the paper that uses it (GLocal-K's for u1)
    members = tuple(tuned.get(names[member], member) for member in RECIPES[name].members)
    trained = train_ensemble(train, RECIPES[name].replace(members=members), seed=seed, progress=False, **ids)
    weights = {names[member]: 0.0 for member in RECIPES[name].members}
    for spec, weight in zip(trained.model.config["members"], trained.model.config["weights"], strict=True):
        weights[names[RECIPES[name].members[spec["member"]]]] += weight
    row = {"fold": split, "seed": seed, "model": name, **score(trained.predictor, test),
           "validation RMSE": trained.history.score, "seconds": trained.seconds,
           "blend": ", ".join(f"{member} {weight:.2f}" for member, weight in weights.items())}
    print(f"  {split} seed {seed} {name}: blend {row['blend']}, validation {trained.history.score:.4f}, test RMSE "
          f"{row['RMSE']:.4f} in {trained.seconds:.1f} s (the sum of its {len(trained.runs)} runs)", flush=True)
    return row


def with_members(recipes: list[str]) -> list[str]:
    """The recipes in an order that tunes every ensemble's members (on the same fold) before the ensemble."""
    names = {recipe: known for known, recipe in RECIPES.items()}
    singles = [name for name in recipes if name not in ENSEMBLES]
    for name in recipes:
        if name in ENSEMBLES:
            singles += [names[member] for member in RECIPES[name].members if names[member] in GRIDS
                        and names[member] not in singles]
    return singles + [name for name in recipes if name in ENSEMBLES]


def spread(folds: pd.DataFrame, seeds: pd.DataFrame) -> pd.DataFrame:
    """Per model: the first fold, mean and std over the folds and seeds, and the fold-by-fold difference to the bias baseline."""
    by_fold = folds.pivot(index="fold", columns="model", values="RMSE")
    difference = by_fold.sub(by_fold["bias baseline"], axis=0)
    table = pd.DataFrame({"u1 test RMSE": by_fold.loc["u1"] if "u1" in by_fold.index else by_fold.iloc[0],
                          "mean over folds": by_fold.mean(), "std over folds": by_fold.std(),
                          "std over seeds (u1)": seeds.groupby("model").RMSE.std() if len(seeds) else float("nan"),
                          "minus bias baseline: mean": difference.mean(), "minus bias baseline: std": difference.std()})
    return table.loc[[m for m in folds.model.unique()]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"], choices=SPLITS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="seeds on the first fold")
    parser.add_argument("--recipes", nargs="+", default=[*GRIDS, *ENSEMBLES], choices=[*GRIDS, *ENSEMBLES])
    args = parser.parse_args()
    args.recipes = with_members(args.recipes)
    path = fetch_movielens(progress=False, verbose=False).path
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device: CPU")

    rows, grid = [], []
    for split in args.folds:
        fold_rows, fold_grid = run_fold(split, path, args.recipes, seed=args.seeds[0])
        rows, grid = rows + fold_rows, grid + fold_grid
    settled = {row["model"]: {key: row[key] for key in GRIDS[row["model"]]} for row in rows
               if row["fold"] == args.folds[0] and row["model"] in GRIDS}
    for seed in args.seeds[1:]:  # the settings chosen with the first seed, trained with other seeds
        seed_rows, seed_grid = run_fold(args.folds[0], path, args.recipes, seed, baselines=False, settled=settled)
        rows, grid = rows + seed_rows, grid + seed_grid
    everything = pd.DataFrame(rows)
    folds = everything[everything.seed == args.seeds[0]]
    seeds = everything[(everything.fold == args.folds[0]) & everything.model.isin(args.recipes)]
    first = folds[folds.fold == args.folds[0]].set_index("model").drop(columns=["fold", "seed"])
    pd.set_option("display.width", 160)
    print(f"\nHeld-out test on {args.folds[0]} (lambda, lr and epoch chosen on 5% of its training ratings):")
    print(first.to_string(float_format=lambda v: f"{v:.4f}"))
    if args.folds[0] == "u1":
        for name, bar in BARS.items():
            if name in first.index:
                row = first.loc[name]
                ok = row.RMSE <= bar and row.seconds <= MAX_SECONDS[name]
                print(f"bar {name}: RMSE {row.RMSE:.4f} <= {bar} and {row.seconds:.1f} s <= {MAX_SECONDS[name]:.0f} s -> "
                      f"{'PASS' if ok else 'FAIL'}")
    table = spread(folds, seeds)
    print(f"\nNoise: test RMSE over folds {', '.join(args.folds)} (each tuned on its own validation part) and seeds "
          f"{args.seeds} on {args.folds[0]}:")
    print(table.to_string(float_format=lambda v: f"{v:.4f}"))
    chosen = folds[folds.model.isin(args.recipes)]
    print("\nChosen per fold:")
    print(chosen[[column for column in ("fold", "model", "l2", "lr", "epochs", "blend") if column in chosen]]
          .to_string(index=False, na_rep=""))
    RESULTS.mkdir(exist_ok=True)
    payload = {"folds": folds.to_dict("records"), "seeds": seeds.to_dict("records"), "grid": grid,
               "spread": table.reset_index(names="model").to_dict("records")}
    (RESULTS / "rmse.json").write_text(json.dumps(payload, indent=1) + "\n")
    print(f"\nwrote {RESULTS / 'rmse.json'}")


if __name__ == "__main__":
    main()
