"""Autoencoders trained for lists (chapter 06): settings chosen on validation, fold by fold; top-10 on the test ratings.

    python benchmarks/topn.py              # every fold tuned on its own validation part (about 30 minutes on 2 cores)
    python benchmarks/topn.py --folds u1

Protocol (as benchmarks/ranking.py): relevance = a held-out rating of 4+ stars; candidates = the movies a
user did not rate in training, minus "unknown" titles; K = 10. On every fold, each model's settings are
chosen on a validation part of *that fold's* training ratings (5 %, drawn as for the rating models; never
the test ratings): the autoencoders are trained with early stopping on its NDCG@10 and the best run is kept
as it is; EASE's lambda is chosen the same way, then EASE is fitted on all the training ratings (a closed
form: no epochs to choose). Each chosen model is scored once on the fold's test ratings. Mult-VAE's KL
weight beta is fixed at 0.2 (Liang et al.'s annealing cap), not tuned. Bars: the best list model's
NDCG@10 >= 0.43 on u1; a list autoencoder's >= 0.40 and precision@10 >= 0.33, trained in <= 30 s.
Writes benchmarks/results/topn.json.
"""

import argparse
import itertools
import json
from pathlib import Path

import pandas as pd

from autorec_utils.evaluate import popularity_scores, ranking_metrics
from autorec_utils.fetch import fetch_movielens
from autorec_utils.load import load_movies, load_users
from autorec_utils.recipes import RECIPES
from autorec_utils.releases import SPLITS
from autorec_utils.splits import load_split
from autorec_utils.topn import train_list_model
from autorec_utils.train import chosen_on_validation

RESULTS = Path(__file__).parent / "results"
GRIDS = {
    "EASE": {"l2": [50.0, 100.0, 200.0, 300.0, 500.0, 1000.0]},
    "Mult-DAE": {"hidden": [200, 600], "dropout": [0.0, 0.2, 0.5]},
    "Mult-VAE": {"hidden": [200, 600], "dropout": [0.2, 0.5]},
}
BAR_BEST, BAR_NDCG, BAR_PRECISION, BAR_SECONDS = 0.43, 0.40, 0.33, 30.0


def tune_and_test(split: str, path, ids, unknown) -> tuple[list[dict], list[dict]]:
    """Every grid point of every model on the fold's validation part; the chosen ones on its test ratings."""
    train, test = load_split(split, path)

    def test_metrics(scores) -> dict:
        return ranking_metrics(scores, train, test, ids["user_ids"], ids["item_ids"], k=10, exclude_items=unknown)

    grid_rows, rows = [], [{"fold": split, "model": "popularity", "seconds": 0.0,
                            **test_metrics(popularity_scores(train, ids["user_ids"], ids["item_ids"]))}]
    for name, grid in GRIDS.items():
        runs = {}
        for values in itertools.product(*grid.values()):
            settings = dict(zip(grid, values, strict=True))
            validated = {"validation_fraction": 0.05} if name == "EASE" else {}
            runs[values] = train_list_model(train, name, progress=False, **ids, **settings, **validated)
            grid_rows.append({"fold": split, "model": name, **settings, "validation NDCG@10": runs[values].history.score,
                              "best epoch": runs[values].history.best_epoch, "seconds": round(runs[values].seconds, 1)})
            print(f"  {split} {name} {settings}: validation NDCG@10 {grid_rows[-1]['validation NDCG@10']:.4f} "
                  f"(epoch {grid_rows[-1]['best epoch']}, {runs[values].seconds:.1f} s)", flush=True)
        key = chosen_on_validation(runs)
        chosen = runs[key]
        if name == "EASE":  # lambda chosen; now fitted on every training rating
            chosen = train_list_model(train, name, **ids, **dict(zip(grid, key, strict=True)))
        rows.append({"fold": split, "model": name, **dict(zip(grid, key, strict=True)), "best epoch": chosen.history.best_epoch,
                     "seconds": chosen.seconds, **test_metrics(chosen.predictor.scores)})
        print(f"  {split} {name}: chosen {dict(zip(grid, key, strict=True))} -> test NDCG@10 {rows[-1]['NDCG@10']:.4f}",
              flush=True)
    return grid_rows, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", nargs="+", default=["u1", "u2", "u3", "u4", "u5"], choices=SPLITS)
    args = parser.parse_args()
    path = fetch_movielens(progress=False, verbose=False).path
    movies = load_movies(path)
    ids = {"user_ids": load_users(path).user_id, "item_ids": movies.item_id}
    unknown = movies.item_id[movies.title == "unknown"]
    grid, rows = [], []
    for split in args.folds:
        fold_grid, fold_rows = tune_and_test(split, path, ids, unknown)
        grid += fold_grid
        rows += fold_rows
    folds = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    first = folds[folds.fold == args.folds[0]].set_index("model").drop(columns=["fold", "users"])
    print(f"\nTop-10 on {args.folds[0]} (settings chosen on {args.folds[0]}'s validation part):")
    print(first.to_string(float_format=lambda v: f"{v:.4f}"))
    best = first.drop("popularity")["NDCG@10"].idxmax()
    print(f"bar, best list model ({best}): NDCG@10 {first.loc[best, 'NDCG@10']:.4f} >= {BAR_BEST} -> "
          f"{'PASS' if first.loc[best, 'NDCG@10'] >= BAR_BEST else 'FAIL'}")
    for name in ("Mult-DAE", "Mult-VAE"):  # the list autoencoders' bar: accurate enough, and trained in time
        row = first.loc[name]
        ok = row["NDCG@10"] >= BAR_NDCG and row["precision@10"] >= BAR_PRECISION and row.seconds <= BAR_SECONDS
        print(f"bar, list autoencoder {name}: NDCG@10 {row['NDCG@10']:.4f} >= {BAR_NDCG}, precision@10 "
              f"{row['precision@10']:.4f} >= {BAR_PRECISION}, {row.seconds:.1f} s <= {BAR_SECONDS:.0f} s -> "
              f"{'PASS' if ok else 'FAIL'}; {row['NDCG@10'] / first.loc['popularity', 'NDCG@10']:.2f}x popularity's NDCG@10")
    spread = folds.groupby("model", sort=False)[["precision@10", "NDCG@10", "coverage"]].agg(["mean", "std"])
    print(f"\nOver folds {', '.join(args.folds)}, each tuned on its own validation part (mean, std):")
    print(spread.to_string(float_format=lambda v: f"{v:.4f}"))
    by_fold = folds.pivot(index="fold", columns="model", values="NDCG@10")
    pairs = {"EASE - Mult-VAE": ("EASE", "Mult-VAE"), "EASE - Mult-DAE": ("EASE", "Mult-DAE"),
             "Mult-VAE - Mult-DAE": ("Mult-VAE", "Mult-DAE"), "Mult-DAE - popularity": ("Mult-DAE", "popularity")}
    differences = pd.DataFrame({name: by_fold[a] - by_fold[b] for name, (a, b) in pairs.items()})
    print("\nNDCG@10 differences, fold by fold (a difference within its spread is no win):")
    print(differences.agg(["mean", "std", "min", "max"]).T.to_string(float_format=lambda v: f"{v:+.4f}"))
    chosen = folds[folds.model != "popularity"].dropna(axis=1, how="all")
    print("\nChosen settings per fold (the recipes in autorec_utils/recipes.py are u1's):")
    print(chosen[["fold", "model", *[c for c in ("l2", "hidden", "dropout", "best epoch") if c in chosen]]]
          .to_string(index=False))
    RESULTS.mkdir(exist_ok=True)
    recipes = {name: RECIPES[name].settings() for name in GRIDS}
    (RESULTS / "topn.json").write_text(json.dumps({"grid": grid, "folds": rows, "recipes": recipes}, indent=1,
                                                  default=float) + "\n")
    print(f"\nwrote {RESULTS / 'topn.json'}")


if __name__ == "__main__":
    main()
