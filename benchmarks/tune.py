"""Choose each recipe's settings on the validation ratings, and measure what else was tried.

    python benchmarks/tune.py                        # about 20 minutes on an idle 2-core CPU
    python benchmarks/tune.py --recipes I-AutoRec    # one recipe again; the others' rows stay as stored
    python benchmarks/tune.py --recipes I-AutoRec --changes-only   # only the changes, from rmse.json's choice

For each of chapter 03's rating recipes (``--recipes`` names others of ``autorec_utils.recipes.RECIPES``), a small
grid (λ, learning rate) is trained on u1's training ratings; early stopping and the choice both use the validation part (5 % of the *training*
ratings, the same draw for every run). The test RMSE is printed beside it for reading only: it chooses
nothing. Then one change at a time to each chosen recipe (another activation, dropout, input dropout,
mini-batches, residuals for I-AutoRec) shows what did and did not help, again on validation.
Writes benchmarks/results/tuning.json, which notebook 03 shows (with ``--recipes``, the rows of the recipes not
named are kept from the file as it was). The validation ratings are those of ``benchmarks/rmse.py``'s seed 0 on u1,
so the chosen runs' validation RMSEs are the ones rmse.json holds for u1 (tests/test_quoted_numbers.py checks).
``--changes-only`` skips the grid (I-AutoRec's takes some 18 of its 20 minutes: at lr 3e-3 a run trains over 1,000
epochs): each recipe starts from the λ and learning rate that benchmarks/rmse.py chose on the same validation
ratings of u1 (rmse.json), and the recipe's stored grid rows are kept, marked with the run that wrote them.
"""

import argparse
import itertools
import json
from pathlib import Path

import pandas as pd

from autorec_utils.evaluate import score
from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_users
from autorec_utils.recipes import RECIPES
from autorec_utils.splits import load_split
from autorec_utils.train import train_autorec

RESULTS = Path(__file__).parent / "results"
CHAPTER_03 = ["U-AutoRec", "U-AutoRec (residual)", "I-AutoRec"]  # the recipes notebook 03 compares: the default
GRID = {"l2": [1.0, 10.0, 100.0, 1000.0], "lr": [3e-3, 1e-2]}
CHANGES = {  # one change at a time to a chosen recipe
    "activation relu": {"activation": "relu"},
    "activation elu": {"activation": "elu"},
    "activation identity": {"activation": "identity"},
    "hidden dropout 0.2": {"dropout": 0.2},
    "input dropout 0.2": {"input_dropout": 0.2},
    "mini-batches of 128 rows": {"batch_size": 128},
    "residuals of the bias baseline": {"residual": True, "fallback": "bias"},
}


def run(train, test, ids, recipe: str, settings: dict) -> dict:
    trained = train_autorec(train, recipe, progress=False, **ids, **settings)
    return {"recipe": recipe, **settings, "validation RMSE": trained.history.best["val_rmse"],
            "test RMSE": score(trained.predictor, test)["RMSE"], "epochs": trained.history.best_epoch,
            "seconds": round(trained.seconds, 1)}


def chosen_by_rmse_benchmark(recipe: str) -> dict:
    """The λ and learning rate that benchmarks/rmse.py chose for ``recipe`` on u1 with seed 0 (its results file)."""
    folds = json.loads((RESULTS / "rmse.json").read_text())["folds"]
    found = [row for row in folds if row["model"] == recipe and row["fold"] == "u1" and row["seed"] == 0]
    if len(found) != 1:
        raise SystemExit(f"benchmarks/results/rmse.json holds no u1 run of {recipe!r}: run python benchmarks/rmse.py "
                         "first, or tune.py without --changes-only")
    return {key: found[0][key] for key in GRID}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    rating_recipes = [name for name, recipe in RECIPES.items() if recipe.family == "ratings"]
    parser.add_argument("--recipes", nargs="+", default=CHAPTER_03, choices=rating_recipes)
    parser.add_argument("--changes-only", action="store_true",
                        help="no grid: start from the settings rmse.py chose on u1 (benchmarks/results/rmse.json)")
    args = parser.parse_args()
    path = fetch_movielens(progress=False, verbose=False).path
    train, test = load_split("u1", path)
    ids = {"user_ids": load_users(path).user_id, "item_ids": load_movies(path).item_id}
    grid_rows, change_rows = [], []
    for recipe in args.recipes:
        if args.changes_only:
            chosen = chosen_by_rmse_benchmark(recipe)
            print(f"{recipe}: chosen on validation by benchmarks/rmse.py {chosen}", flush=True)
        else:
            for values in itertools.product(*GRID.values()):
                grid_rows.append(run(train, test, ids, recipe, dict(zip(GRID, values, strict=True))))
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in grid_rows[-1].items()}, flush=True)
            tried = pd.DataFrame([row for row in grid_rows if row["recipe"] == recipe])
            chosen = tried.loc[tried["validation RMSE"].idxmin(), list(GRID)].to_dict()
            print(f"{recipe}: chosen on validation {chosen}", flush=True)
        change_rows.append({**run(train, test, ids, recipe, chosen), "change": "none (the chosen recipe)"})
        for name, change in CHANGES.items():
            if all(getattr(RECIPES[recipe], key) == value for key, value in change.items()):
                continue  # the recipe does this already
            change_rows.append({**run(train, test, ids, recipe, {**chosen, **change}), "change": name})
            print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in change_rows[-1].items()}, flush=True)
    pd.set_option("display.width", 150)
    grid, changes = pd.DataFrame(grid_rows), pd.DataFrame(change_rows)
    if grid_rows:
        print("\nThe grid (chosen by validation RMSE; test RMSE for reading only):")
        print(grid.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    print("\nOne change at a time to the chosen recipe:")
    print(changes[["recipe", "change", "validation RMSE", "test RMSE", "epochs", "seconds"]]
          .to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    RESULTS.mkdir(exist_ok=True)
    stored = RESULTS / "tuning.json"
    if stored.is_file() and (args.changes_only or set(args.recipes) != set(CHAPTER_03)):  # keep what was not run
        old = json.loads(stored.read_text())
        kept_grid = [row for row in old["grid"] if args.changes_only or row["recipe"] not in args.recipes]
        for row in kept_grid:  # a grid run before the changes were re-run says so
            if row["recipe"] in args.recipes:
                row.setdefault("note", "from an earlier run of tune.py than the changes (re-run with --changes-only): "
                                       "its validation ratings may differ")
        grid_rows = kept_grid + grid_rows
        change_rows = [row for row in old["changes"] if row["recipe"] not in args.recipes] + change_rows
        order = {name: position for position, name in enumerate(rating_recipes)}
        grid_rows.sort(key=lambda row: order[row["recipe"]])  # stable: each recipe's rows in the order they ran
        change_rows.sort(key=lambda row: order[row["recipe"]])
    stored.write_text(json.dumps({"split": "u1", "grid": grid_rows, "changes": change_rows}, indent=1) + "\n")
    print(f"\nwrote {stored}")


if __name__ == "__main__":
    main()
